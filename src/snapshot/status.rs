//! The deploy repo as status reads it: the index of every cluster at the deploy branch's tip,
//! its status file (on the status branch), and which deploy commit holds what a cluster runs.
//! Collection rounds, the rollout gate and `status show` read it.

use std::collections::BTreeMap;

use git2::{Oid, Repository};
use serde_json::Value;

use crate::error::Result;
use crate::formats::index::{ClusterIndex, parse_index};
use crate::formats::status::{ClusterStatus, ObjectStatus, parse_cluster_statuses};
use crate::formats::{CLUSTERS_DIR, INDEX_DIR, STATUS_CLUSTERS_DIR};
use crate::gitstore::{DeployRepo, Tip, blob_text, tree};
use crate::rollout::Observed;
use crate::yaml;

/// The tree whose `status/` holds the status files: the status branch's tip or, while that
/// branch does not exist yet (a deploy repo from before status had a branch of its own), the
/// deploy branch's tip. With the single-branch layout both are the same commit.
pub fn status_root(deploy_tip: Option<Tip>, status_tip: Option<Tip>) -> Option<Oid> {
    status_tip.or(deploy_tip).map(|t| t.tree)
}

/// The two branches status works with: the deploy branch (indexes, cluster directories; only
/// read) and the status branch (status files; written by status rounds). With the
/// single-branch layout they are one branch.
pub struct StatusBranches {
    pub deploy: DeployRepo,
    pub status: DeployRepo,
}

impl StatusBranches {
    /// Open the deploy repo `spec` for its `deploy_branch` and `status_branch`.
    pub fn open(spec: &str, deploy_branch: &str, status_branch: &str, push: bool) -> Result<StatusBranches> {
        let deploy = DeployRepo::open(spec, deploy_branch, push, false)?;
        let status = deploy.on_branch(status_branch)?;
        Ok(StatusBranches { deploy, status })
    }

    /// Status files live on the deploy branch itself.
    pub fn single_branch(&self) -> bool {
        self.deploy.branch == self.status.branch
    }

    /// The deploy branch's tip, fetched first when the repo is remote.
    pub fn deploy_tip(&self) -> Result<Option<Tip>> {
        self.deploy.fetch()?;
        self.deploy.tip()
    }

    /// The status branch's tip, fetched first when the repo is remote.
    pub fn status_tip(&self) -> Result<Option<Tip>> {
        if self.single_branch() {
            return self.deploy_tip();
        }
        self.status.fetch()?;
        self.status.tip()
    }

    /// Both, read now: the deploy branch's indexes and the status files.
    pub fn read(&self) -> Result<(DeployState<'_>, Option<Tip>)> {
        let deploy_tip = self.deploy_tip()?;
        let status_tip = if self.single_branch() {
            deploy_tip
        } else {
            self.status_tip()?
        };
        let state = DeployState::read(&self.deploy.repo, deploy_tip, status_root(deploy_tip, status_tip))?;
        Ok((state, status_tip))
    }
}

/// The deploy repo as status reads it.
pub struct DeployState<'r> {
    pub repo: &'r Repository,
    /// The deploy branch's tip: indexes and cluster directories.
    pub tip: Option<Tip>,
    /// Per cluster, what the render placed there.
    pub indexes: BTreeMap<String, ClusterIndex>,
    /// The status files (under `status_root`), with their blob ids (kept when nothing but times
    /// changed).
    pub statuses: BTreeMap<String, (ClusterStatus, Oid)>,
    /// Per root tree, the entries of its `clusters/`: read once each. At 10,000 clusters that
    /// tree is half a megabyte, and libgit2 does not cache trees that large, so looking up
    /// `clusters/<c>` from the root for every cluster would inflate it again each time.
    cluster_dirs: std::sync::Mutex<std::collections::HashMap<Oid, std::sync::Arc<BTreeMap<String, Oid>>>>,
}

impl<'r> DeployState<'r> {
    /// Indexes from the deploy branch's `tip`, status files from the tree `status_root` (see
    /// [`status_root`]).
    pub fn read(repo: &'r Repository, tip: Option<Tip>, status_root: Option<Oid>) -> Result<DeployState<'r>> {
        let tree = tip.map(|t| t.tree);
        let mut index_files = Vec::new();
        for (file, oid) in tree::entries_at(repo, tree, INDEX_DIR) {
            if let Some(cluster) = file.strip_suffix(".yaml") {
                index_files.push((
                    cluster.to_string(),
                    format!("{INDEX_DIR}/{file}"),
                    blob_text(repo, oid)?,
                ));
            }
        }
        let indexes = {
            use rayon::prelude::*;
            index_files
                .par_iter()
                .map(|(cluster, path, text)| Ok((cluster.clone(), parse_index(text, path)?)))
                .collect::<Result<BTreeMap<_, _>>>()?
        };
        // At 10,000 clusters this is the expensive part: parsed in parallel, by the reader
        // tuned for what starmap itself writes (anything else falls back to the full parser).
        let mut files = Vec::new();
        let mut ids = Vec::new();
        for (file, oid) in tree::entries_at(repo, status_root, STATUS_CLUSTERS_DIR) {
            if file.ends_with(".yaml") {
                files.push((format!("{STATUS_CLUSTERS_DIR}/{file}"), blob_text(repo, oid)?));
                ids.push(oid);
            }
        }
        let parsed = parse_cluster_statuses(&files)?;
        let statuses = parsed
            .into_iter()
            .zip(ids)
            .map(|(status, oid)| (status.cluster.clone(), (status, oid)))
            .collect();
        Ok(DeployState {
            repo,
            tip,
            indexes,
            statuses,
            cluster_dirs: Default::default(),
        })
    }

    /// The id of `clusters/<cluster>` in the root tree `root`.
    fn cluster_dir(&self, root: Oid, cluster: &str) -> Option<Oid> {
        let dirs = {
            let mut cache = self.cluster_dirs.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .entry(root)
                .or_insert_with(|| std::sync::Arc::new(tree::entries_at(self.repo, Some(root), CLUSTERS_DIR)))
                .clone()
        };
        dirs.get(cluster).copied()
    }

    /// The id of `clusters/<cluster>` at a commit given by its sha.
    fn cluster_dir_at(&self, sha: &str, cluster: &str) -> Option<Oid> {
        let commit = self.repo.find_commit(Oid::from_str(sha).ok()?).ok()?;
        self.cluster_dir(commit.tree_id(), cluster)
    }

    /// A thread-safe reader of the rendered objects behind status entries, for the `obj`
    /// variable of summaries (read lazily: most summaries never ask).
    pub fn object_reader(&self) -> Result<ObjectReader> {
        let files = self
            .indexes
            .iter()
            .flat_map(|(cluster, ix)| {
                ix.objects.iter().map(move |e| {
                    (
                        (cluster.clone(), e.kind.clone(), e.namespace.clone(), e.name.clone()),
                        e.file.clone(),
                    )
                })
            })
            .collect();
        Ok(ObjectReader {
            repo: std::sync::Mutex::new(Repository::open(self.repo.path())?),
            tree: self.tip.map(|t| t.tree),
            files,
        })
    }

    /// Keeps the previous `appliedRevision` and `deployCommit` when the cluster's directory is
    /// the same at the new ones: they name the deploy commit that holds what the cluster
    /// runs, not the newest commit on the branch. Without this, every status commit would be
    /// a new revision for Flux to apply and report back, and each round would commit again.
    pub fn keep_revisions(&self, status: &mut ClusterStatus, previous: Option<&ClusterStatus>) {
        let Some(previous) = previous else { return };
        let dir_at = |sha: &str| self.cluster_dir_at(sha, &status.cluster);
        let same = |old: &Option<String>, new: &Option<String>| match (old, new) {
            (Some(old), Some(new)) if old != new => dir_at(old).is_some() && dir_at(old) == dir_at(new),
            _ => false,
        };
        if same(&previous.applied_revision, &status.applied_revision) {
            status.applied_revision = previous.applied_revision.clone();
        }
        if same(&previous.deploy_commit, &status.deploy_commit) {
            status.deploy_commit = previous.deploy_commit.clone();
        }
    }

    /// Sets `current` and each object's `applied`: the cluster's directory (or the object's
    /// file in it) at `appliedRevision` equals the one at the tip. A revision this repo does
    /// not have (yet) counts as not applied.
    pub fn mark_applied(&self, status: &mut ClusterStatus) {
        status.current = false;
        for o in &mut status.objects {
            o.applied = false;
        }
        let (Some(tip), Some(revision)) = (self.tip, status.applied_revision.as_deref()) else {
            return;
        };
        let now = self.cluster_dir(tip.tree, &status.cluster);
        let then = self.cluster_dir_at(revision, &status.cluster);
        if now.is_some() && now == then {
            status.current = true;
            for o in &mut status.objects {
                o.applied = true;
            }
            return;
        }
        let files: BTreeMap<(String, Option<String>, String), String> = self
            .indexes
            .get(&status.cluster)
            .map(|ix| {
                ix.objects
                    .iter()
                    .map(|e| ((e.kind.clone(), e.namespace.clone(), e.name.clone()), e.file.clone()))
                    .collect()
            })
            .unwrap_or_default();
        let (Some(now), Some(then)) = (now, then) else { return };
        for o in &mut status.objects {
            let Some(file) = files.get(&(o.kind.clone(), o.namespace.clone(), o.name.clone())) else {
                continue;
            };
            let now = tree::entry_at(self.repo, Some(now), file);
            o.applied = now.is_some() && now == tree::entry_at(self.repo, Some(then), file);
        }
    }
}

type ObjectKey = (String, String, Option<String>, String);

/// See [`DeployState::object_reader`].
pub struct ObjectReader {
    repo: std::sync::Mutex<Repository>,
    tree: Option<Oid>,
    files: std::collections::HashMap<ObjectKey, String>,
}

impl ObjectReader {
    /// The rendered object of `cluster` that `object` reports on, if the tip has it.
    pub fn get(&self, cluster: &str, object: &ObjectStatus) -> Option<Value> {
        let key = (
            cluster.to_string(),
            object.kind.clone(),
            object.namespace.clone(),
            object.name.clone(),
        );
        let path = format!("{CLUSTERS_DIR}/{cluster}/{}", self.files.get(&key)?);
        let text = {
            let repo = self.repo.lock().ok()?;
            let oid = tree::entry_at(&repo, self.tree, &path)?;
            blob_text(&repo, oid).ok()?
        };
        let doc = yaml::parse_documents(&text, &path).ok()?.into_iter().next()?;
        Some(doc.value)
    }
}

/// The rollout gate reads indexes and status files as a render sees them at its tip.
impl Observed for DeployState<'_> {
    fn index(&self, cluster: &str) -> Option<&ClusterIndex> {
        self.indexes.get(cluster)
    }

    fn status(&self, cluster: &str) -> Option<ClusterStatus> {
        let mut status = self.statuses.get(cluster).map(|(s, _)| s.clone())?;
        self.mark_applied(&mut status);
        Some(status)
    }
}
