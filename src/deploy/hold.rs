//! Holding a cluster back: the objects of placements whose rollout has not reached the
//! cluster keep the files they have at the branch tip, while everything else on the cluster
//! is rendered as usual.

use std::collections::BTreeSet;

use git2::{Oid, Repository};
use sha2::{Digest, Sha256};

use super::layout::{CLUSTERS_DIR, INDEX_DIR};
use crate::error::{Error, Result};
use crate::model::ObjectId;
use crate::render::{RenderedCluster, RenderedObject, output};
use crate::status::collect::parse_index;
use crate::yaml;

/// Digest of what `placement` puts on a rendered cluster: its objects' files and contents.
/// Two renders giving the same digest give the cluster the same files of the placement.
pub fn placement_digest(rendered: &RenderedCluster, placement: &str) -> String {
    let mut h = Sha256::new();
    for o in rendered
        .objects
        .iter()
        .filter(|o| o.placements.iter().any(|p| p == placement))
    {
        h.update((o.file.len() as u64).to_le_bytes());
        h.update(o.file.as_bytes());
        h.update((o.content.len() as u64).to_le_bytes());
        h.update(o.content.as_bytes());
    }
    format!("sha256:{}", hex::encode(h.finalize()))
}

/// `fresh` with the objects of the `held` placements replaced by those the tip has for
/// them. An object placed by a held placement waits with it, even when another placement
/// places it too; an object new in a held placement is not written yet.
///
/// `tip_dir` and `tip_index` are the cluster's directory and index at the tip (looked up
/// once by the caller: resolving paths from the root would inflate the large `clusters/`
/// tree again for every file).
pub fn compose(
    repo: &Repository,
    tip_dir: Option<Oid>,
    tip_index: Option<Oid>,
    fresh: &RenderedCluster,
    held: &[String],
) -> Result<RenderedCluster> {
    let is_held = |placements: &[String]| placements.iter().any(|p| held.contains(p));
    let mut objects: Vec<RenderedObject> = Vec::new();
    let mut held_files = BTreeSet::new();
    let index_path = format!("{INDEX_DIR}/{}.yaml", fresh.name);
    if let (Some(dir), Some(oid)) = (tip_dir, tip_index) {
        let blob = repo.find_blob(oid)?;
        let text = std::str::from_utf8(blob.content()).map_err(|_| Error::msg(format!("{index_path}: not UTF-8")))?;
        let index = parse_index(text, &index_path)?;
        let dir = repo.find_tree(dir)?;
        for entry in index.objects.into_iter().filter(|e| is_held(&e.placements)) {
            let path = format!("{CLUSTERS_DIR}/{}/{}", fresh.name, entry.file);
            let Some(oid) = dir.get_path(std::path::Path::new(&entry.file)).ok().map(|e| e.id()) else {
                tracing::warn!(cluster = %fresh.name, file = %entry.file, "indexed file missing at the tip; not kept");
                continue;
            };
            let content = String::from_utf8(repo.find_blob(oid)?.content().to_vec())
                .map_err(|_| Error::msg(format!("{path}: not UTF-8")))?;
            let group = entry
                .api_version
                .rsplit_once('/')
                .map(|(g, _)| g.to_string())
                .unwrap_or_default();
            held_files.insert(entry.file.clone());
            objects.push(RenderedObject {
                file: entry.file,
                content,
                api_version: entry.api_version,
                id: ObjectId {
                    group,
                    kind: entry.kind,
                    namespace: entry.namespace,
                    name: entry.name,
                },
                workload: usize::MAX,
                placements: entry.placements,
                customizations: entry.customizations,
                changes: Vec::new(),
                held_from: Some(entry.source.unwrap_or_default()),
            });
        }
    }
    objects.extend(
        fresh
            .objects
            .iter()
            .filter(|o| !is_held(&o.placements) && !held_files.contains(&o.file))
            .cloned(),
    );
    objects.sort_by(|a, b| a.file.cmp(&b.file));
    let files: Vec<&str> = objects.iter().map(|o| o.file.as_str()).collect();
    let kustomization = yaml::to_yaml_string(&output::kustomization(&files));
    Ok(RenderedCluster {
        name: fresh.name.clone(),
        objects,
        kustomization,
        sync: fresh.sync.clone(),
    })
}
