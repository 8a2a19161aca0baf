//! What a render changes in the deploy repo, per cluster and per object: the report of
//! `plan`, and the body of the commit message.

use std::collections::BTreeMap;
use std::fmt::Write;

use git2::{Oid, Repository};
use serde::Serialize;

use crate::error::Result;
use crate::formats::files::KUSTOMIZATION_FILE;
use crate::gitstore::{hash_object, list_blobs};
use crate::model::{Model, ObjectId};
use crate::render::RenderedCluster;
use crate::yaml;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Changed,
    Removed,
}

#[derive(Debug, Clone, Serialize)]
pub struct ObjectChange {
    pub change: ChangeKind,
    /// `Kind/namespace/name`.
    pub object: String,
    /// Path inside the cluster directory.
    pub file: String,
    #[serde(skip)]
    pub old: Option<Oid>,
    /// The new content (kept for `plan --diff`).
    #[serde(skip)]
    pub new: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterChange {
    pub cluster: String,
    pub change: ChangeKind,
    pub objects: Vec<ObjectChange>,
    /// The cluster's `kustomization.yaml` when it changed: old blob, new content.
    #[serde(skip)]
    pub kustomization: Option<(Option<Oid>, Option<String>)>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Changes {
    /// Clusters whose directory changed, in name order.
    pub clusters: Vec<ClusterChange>,
    /// The generated Argo CD or Flux objects (`argocd/`, `flux/`) changed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sync_changed: bool,
    /// Only starmap's metadata (`.starmap/`) changed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub metadata_changed: bool,
    /// Rollouts whose state changed: `<placement>: <phase>, <open>/<waves> waves open[: why]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<String>,
    /// The single-branch layout's `status/` left the deploy branch: status lives on this branch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_moved_to: Option<String>,
    /// The status commit the rollout gates read (the `Starmap-Status-Commit` trailer), so that
    /// every wave that opens can be traced to the status that opened it.
    #[serde(skip)]
    pub status_read: Option<String>,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        self.clusters.is_empty() && !self.metadata_changed && !self.sync_changed
    }

    pub fn clear(&mut self) {
        self.clusters.clear();
        self.rollouts.clear();
        self.sync_changed = false;
        self.metadata_changed = false;
        self.status_moved_to = None;
    }

    /// Objects added, changed, removed.
    pub fn counts(&self) -> (usize, usize, usize) {
        let mut n = (0, 0, 0);
        for o in self.clusters.iter().flat_map(|c| &c.objects) {
            match o.change {
                ChangeKind::Added => n.0 += 1,
                ChangeKind::Changed => n.1 += 1,
                ChangeKind::Removed => n.2 += 1,
            }
        }
        n
    }

    pub fn clusters_with(&self, kind: ChangeKind) -> Vec<&str> {
        self.clusters
            .iter()
            .filter(|c| c.change == kind)
            .map(|c| c.cluster.as_str())
            .collect()
    }
}

impl ClusterChange {
    /// Objects added, changed, removed on this cluster.
    pub fn counts(&self) -> (usize, usize, usize) {
        let n = |k| self.objects.iter().filter(|o| o.change == k).count();
        (n(ChangeKind::Added), n(ChangeKind::Changed), n(ChangeKind::Removed))
    }
}

/// A cluster directory rendered in this run.
pub struct NewCluster<'a> {
    pub rendered: &'a RenderedCluster,
    pub tree: Oid,
    pub files: &'a [(String, Oid)],
    pub old_tree: Option<Oid>,
}

/// Compare rendered directories (and clusters that disappeared) with the tip.
pub fn compare(
    repo: &Repository,
    new: &[NewCluster<'_>],
    removed: &[(String, Oid)],
    keep_content: bool,
) -> Result<Changes> {
    let mut clusters = Vec::new();
    for n in new {
        if n.old_tree == Some(n.tree) {
            continue;
        }
        let mut old: BTreeMap<String, Oid> = match n.old_tree {
            Some(t) => list_blobs(repo, t)?.into_iter().collect(),
            None => BTreeMap::new(),
        };
        let old_kustomization = old.remove(KUSTOMIZATION_FILE);
        let new_kustomization = &n.rendered.kustomization;
        let new_kustomization_id = hash_object(git2::ObjectType::Blob, new_kustomization.as_bytes());
        let kustomization = (old_kustomization != Some(new_kustomization_id))
            .then(|| (old_kustomization, Some(new_kustomization.clone())));
        let mut objects = Vec::new();
        let rendered: BTreeMap<&str, _> = n.rendered.objects.iter().map(|o| (o.file.as_str(), o)).collect();
        for (file, oid) in n.files {
            let change = match old.get(file) {
                None => ChangeKind::Added,
                Some(o) if o != oid => ChangeKind::Changed,
                Some(_) => continue,
            };
            let r = rendered[file.as_str()];
            objects.push(ObjectChange {
                change,
                object: r.id.to_string(),
                file: file.clone(),
                old: old.get(file).copied(),
                new: keep_content.then(|| r.content.clone()),
            });
        }
        for (file, oid) in &old {
            if !rendered.contains_key(file.as_str()) {
                objects.push(removed_object(repo, file, *oid));
            }
        }
        objects.sort_by(|a, b| a.file.cmp(&b.file));
        let change = if n.old_tree.is_some() {
            ChangeKind::Changed
        } else {
            ChangeKind::Added
        };
        clusters.push(ClusterChange {
            cluster: n.rendered.name.clone(),
            change,
            objects,
            kustomization,
        });
    }
    for (name, tree_oid) in removed {
        let mut old: BTreeMap<String, Oid> = list_blobs(repo, *tree_oid)?.into_iter().collect();
        let kustomization = old.remove(KUSTOMIZATION_FILE).map(|k| (Some(k), None));
        let objects = old
            .into_iter()
            .map(|(file, oid)| removed_object(repo, &file, oid))
            .collect();
        clusters.push(ClusterChange {
            cluster: name.clone(),
            change: ChangeKind::Removed,
            objects,
            kustomization,
        });
    }
    clusters.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    Ok(Changes {
        clusters,
        ..Changes::default()
    })
}

fn removed_object(repo: &Repository, file: &str, oid: Oid) -> ObjectChange {
    ObjectChange {
        change: ChangeKind::Removed,
        object: describe_blob(repo, oid).unwrap_or_else(|| file.to_string()),
        file: file.into(),
        old: Some(oid),
        new: None,
    }
}

/// The identity of an object stored in the deploy repo, read back from its file.
fn describe_blob(repo: &Repository, oid: Oid) -> Option<String> {
    let blob = repo.find_blob(oid).ok()?;
    let text = std::str::from_utf8(blob.content()).ok()?;
    let doc = yaml::parse_documents(text, "").ok()?.into_iter().next()?;
    ObjectId::of(&doc.value).map(|id| id.to_string())
}

/// Every rendered cluster as new (no deploy repo to compare with).
pub fn all_new(rendered: Vec<RenderedCluster>) -> Changes {
    let clusters = rendered
        .into_iter()
        .map(|r| ClusterChange {
            objects: r
                .objects
                .iter()
                .map(|o| ObjectChange {
                    change: ChangeKind::Added,
                    object: o.id.to_string(),
                    file: o.file.clone(),
                    old: None,
                    new: Some(o.content.clone()),
                })
                .collect(),
            kustomization: Some((None, Some(r.kustomization.clone()))),
            cluster: r.name,
            change: ChangeKind::Added,
        })
        .collect();
    Changes {
        clusters,
        ..Changes::default()
    }
}

/// The commit message: a summary line, what changed, and the provenance trailers.
pub fn commit_message(model: &Model, changes: &Changes) -> String {
    let (added, changed, removed) = changes.counts();
    let mut m = String::new();
    let n = changes.clusters.len();
    if n == 0 && changes.sync_changed {
        let _ = writeln!(m, "starmap: update the Argo CD and Flux objects");
    } else if let (0, Some(branch)) = (n, &changes.status_moved_to) {
        let _ = writeln!(m, "starmap: status files moved to branch {branch}");
    } else if n == 0 && !changes.rollouts.is_empty() {
        let _ = writeln!(m, "starmap: rollout {}", changes.rollouts[0]);
    } else if n == 0 {
        let _ = writeln!(m, "starmap: update render metadata");
    } else {
        let _ = writeln!(
            m,
            "starmap: {n} cluster{} changed: {added} object{} added, {changed} changed, {removed} removed",
            if n == 1 { "" } else { "s" },
            if added == 1 { "" } else { "s" },
        );
    }
    let _ = writeln!(m);
    for (kind, label) in [
        (ChangeKind::Added, "Clusters added"),
        (ChangeKind::Removed, "Clusters removed"),
    ] {
        let names = changes.clusters_with(kind);
        if !names.is_empty() {
            let _ = writeln!(m, "{label}: {}", list(&names, 20));
        }
    }
    if !changes.rollouts.is_empty() {
        let _ = writeln!(m, "Rollouts:");
        for r in &changes.rollouts {
            let _ = writeln!(m, "  {r}");
        }
    }
    if changes.sync_changed && n > 0 {
        let _ = writeln!(m, "Argo CD and Flux objects updated.");
    }
    const SHOWN: usize = 50;
    for c in changes.clusters.iter().take(SHOWN) {
        let (added, changed, removed) = c.counts();
        let _ = writeln!(m, "  {}: +{added} ~{changed} -{removed}", c.cluster);
    }
    if n > SHOWN {
        let _ = writeln!(m, "  ... and {} more clusters", n - SHOWN);
    }
    let _ = writeln!(m);
    let _ = writeln!(m, "Starmap-Source: {}", model.source.display);
    if let Some(commit) = &model.source.commit {
        let _ = writeln!(m, "Starmap-Source-Commit: {commit}");
    }
    if let Some(commit) = &changes.status_read {
        let _ = writeln!(m, "Starmap-Status-Commit: {commit}");
    }
    m
}

fn list(names: &[&str], max: usize) -> String {
    let mut s = names.iter().take(max).copied().collect::<Vec<_>>().join(", ");
    if names.len() > max {
        let _ = write!(s, " (+{} more)", names.len() - max);
    }
    s
}
