//! What a render says about itself: `.starmap/render.yaml` (source, source commit, starmap
//! version, counts) and the generated `README.md`.

use serde_json::{Value, json};

use super::digests::Digests;
use crate::error::{Error, Result};
use crate::yaml;

/// `.starmap/render.yaml`: where the render came from, what it holds, and where status lives
/// (`statusBranch`, for readers that have only the deploy repo, like `status show`).
pub fn render_file(
    source: &str,
    source_commit: Option<&str>,
    status_branch: &str,
    clusters: usize,
    objects: usize,
) -> String {
    let mut v = serde_json::Map::new();
    v.insert("source".into(), json!(source));
    if let Some(commit) = source_commit {
        v.insert("sourceCommit".into(), json!(commit));
    }
    v.insert("starmapVersion".into(), json!(env!("CARGO_PKG_VERSION")));
    v.insert("statusBranch".into(), json!(status_branch));
    v.insert("clusters".into(), json!(clusters));
    v.insert("objects".into(), json!(objects));
    yaml::to_yaml_string(&Value::Object(v))
}

/// The `statusBranch` a render recorded in `.starmap/render.yaml`'s text, if any.
pub fn status_branch_of(render_file: &str) -> Option<String> {
    let doc = yaml::parse_documents(render_file, super::RENDER_FILE)
        .ok()?
        .into_iter()
        .next()?;
    doc.value.get("statusBranch")?.as_str().map(String::from)
}

/// `README.md`: what the repo is, where it comes from, the clusters and their object counts.
pub fn readme(source: &str, source_commit: Option<&str>, digests: &Digests) -> Result<String> {
    let env = minijinja::Environment::new();
    let clusters: Vec<_> = digests
        .clusters
        .iter()
        .map(|(name, d)| json!({"name": name, "objects": d.objects}))
        .collect();
    env.render_str(
        include_str!("../../templates/deploy-readme.md.j2"),
        minijinja::value::Serde(json!({
            "source": source,
            "source_commit": source_commit,
            "clusters": clusters,
            "total_objects": digests.total_objects(),
            "version": env!("CARGO_PKG_VERSION"),
            "max_rows": 200,
        })),
    )
    .map_err(|e| Error::msg(format!("templates/deploy-readme.md.j2: {e}")))
}
