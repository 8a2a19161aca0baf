//! What a render says about itself: `.starmap/render.yaml` (source, source commit, starmap
//! version, counts) and the generated `README.md`.

use serde_json::{Value, json};

use super::digests::Digests;
use crate::error::{Error, Result};
use crate::yaml;

/// `.starmap/render.yaml`.
pub fn render_file(source: &str, source_commit: Option<&str>, clusters: usize, objects: usize) -> String {
    let mut v = serde_json::Map::new();
    v.insert("source".into(), json!(source));
    if let Some(commit) = source_commit {
        v.insert("sourceCommit".into(), json!(commit));
    }
    v.insert("starmapVersion".into(), json!(env!("CARGO_PKG_VERSION")));
    v.insert("clusters".into(), json!(clusters));
    v.insert("objects".into(), json!(objects));
    yaml::to_yaml_string(&Value::Object(v))
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
