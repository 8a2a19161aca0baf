//! The git side of status: what the deploy repo says to read on each cluster, which deploy
//! commit a cluster runs, and one commit per collection round written with the same
//! compare-and-swap and fetch-rebuild-retry as render, so that render and status never lose
//! each other's commits.
//!
//! Each attempt starts again from the branch tip: the previous status files, the indexes and
//! the `applied`/`current` flags are read there, so a render that lands between two attempts
//! is neither overwritten nor judged against an old tree.

use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository};
use serde_json::Value;

use crate::deploy::DeployRepo;
use crate::deploy::objects::{MODE_BLOB, MODE_TREE, ObjectSet};
use crate::deploy::repo::{self, Tip};
use crate::deploy::tree::{self, Change};
use crate::error::{Error, Result};
use crate::status::Health;
use crate::status::collect::{ClusterIndex, ClusterOutcome, parse_index};
use crate::status::report::{CLUSTERS_DIR, ClusterStatus, SUMMARIES_DIR};
use crate::yaml;

/// `.starmap/clusters/`: the render's per-cluster object index.
const INDEX_DIR: &str = ".starmap/clusters";

/// The deploy repo as status reads it at one commit.
pub struct DeployState<'r> {
    pub repo: &'r Repository,
    pub tip: Option<Tip>,
    /// Per cluster, what the render placed there.
    pub indexes: BTreeMap<String, ClusterIndex>,
    /// The status files at the tip, with their blob ids (kept when nothing but times changed).
    pub statuses: BTreeMap<String, (ClusterStatus, Oid)>,
    /// Per root tree, the entries of its `clusters/`: read once each. At 10,000 clusters that
    /// tree is half a megabyte, and libgit2 does not cache trees that large, so looking up
    /// `clusters/<c>` from the root for every cluster would inflate it again each time.
    cluster_dirs: std::sync::Mutex<std::collections::HashMap<Oid, std::sync::Arc<BTreeMap<String, Oid>>>>,
}

impl<'r> DeployState<'r> {
    pub fn read(repo: &'r Repository, tip: Option<Tip>) -> Result<DeployState<'r>> {
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
        for (file, oid) in tree::entries_at(repo, tree, CLUSTERS_DIR) {
            if file.ends_with(".yaml") {
                files.push((format!("{CLUSTERS_DIR}/{file}"), blob_text(repo, oid)?));
                ids.push(oid);
            }
        }
        let parsed = crate::status::summary::parse_cluster_statuses(&files)?;
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
                .or_insert_with(|| std::sync::Arc::new(tree::entries_at(self.repo, Some(root), "clusters")))
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
    pub fn get(&self, cluster: &str, object: &crate::status::report::ObjectStatus) -> Option<Value> {
        let key = (
            cluster.to_string(),
            object.kind.clone(),
            object.namespace.clone(),
            object.name.clone(),
        );
        let path = format!("clusters/{cluster}/{}", self.files.get(&key)?);
        let text = {
            let repo = self.repo.lock().ok()?;
            let oid = tree::entry_at(&repo, self.tree, &path)?;
            blob_text(&repo, oid).ok()?
        };
        let doc = yaml::parse_documents(&text, &path).ok()?.into_iter().next()?;
        Some(doc.value)
    }
}

fn blob_text(repo: &Repository, oid: Oid) -> Result<String> {
    let blob = repo.find_blob(oid)?;
    Ok(String::from_utf8_lossy(blob.content()).into_owned())
}

/// The status a round gives a cluster: what was seen, or the last known status marked stale
/// (never wiped) with the error of this attempt.
pub fn merge(previous: Option<&ClusterStatus>, outcome: &ClusterOutcome) -> ClusterStatus {
    match outcome {
        ClusterOutcome::Seen(status) => status.clone(),
        ClusterOutcome::Unreachable { cluster, error } => match previous {
            Some(p) => ClusterStatus {
                reachable: false,
                stale: true,
                error: Some(error.clone()),
                ..p.clone()
            },
            None => ClusterStatus {
                cluster: cluster.clone(),
                reachable: false,
                stale: true,
                last_seen: None,
                error: Some(error.clone()),
                source: String::new(),
                deploy_commit: None,
                applied_revision: None,
                current: false,
                sync: None,
                objects: Vec::new(),
            },
        },
    }
}

/// What a round wrote.
#[derive(Debug, Default)]
pub struct RoundOutcome {
    pub commit: Option<Oid>,
    pub pushed: bool,
    pub message: String,
    /// Clusters whose file changed (beyond times).
    pub changed: Vec<String>,
    pub statuses: Vec<ClusterStatus>,
}

/// Builds the summary files (path under `status/summaries/`, content) of a round from the
/// state at the tip and the round's statuses (every cluster with a status, sorted).
pub type Summarize<'a> = dyn Fn(&DeployState<'_>, &[ClusterStatus]) -> Result<Vec<(String, Value)>> + 'a;

/// One status commit: the outcomes of a collection merged into the status files at the tip,
/// `applied`/`current` judged against the tip, summaries recomputed; no commit when nothing
/// but times changed. `outcomes: None` only recomputes the summaries (`status summarize`).
pub fn write_round(
    deploy: &DeployRepo,
    outcomes: Option<&[ClusterOutcome]>,
    summarize: &Summarize<'_>,
    push: bool,
    dry_run: bool,
) -> Result<RoundOutcome> {
    let mut attempt = 0;
    loop {
        deploy.fetch()?;
        let tip = deploy.tip()?;
        let state = DeployState::read(&deploy.repo, tip)?;
        let mut objects = ObjectSet::default();
        let mut changes = Vec::new();
        let mut changed = Vec::new();
        let mut statuses: BTreeMap<String, ClusterStatus> = state
            .statuses
            .iter()
            .map(|(c, (s, _))| (c.clone(), s.clone()))
            .collect();
        for outcome in outcomes.unwrap_or_default() {
            let cluster = outcome.cluster().to_string();
            let previous = state.statuses.get(&cluster).map(|(s, _)| s);
            let mut status = merge(previous, outcome);
            state.keep_revisions(&mut status, previous);
            state.mark_applied(&mut status);
            match state.statuses.get(&cluster) {
                // Only times changed: the file stays as it is (and so does the commit).
                Some((old, _)) if old.same_state(&status) => {
                    statuses.insert(cluster, old.clone());
                    continue;
                }
                _ => {}
            }
            let text = yaml::to_yaml_string(&serde_json::to_value(&status).unwrap_or_default());
            let oid = objects.add(ObjectType::Blob, text.into_bytes());
            changes.push(Change {
                path: ClusterStatus::path(&cluster),
                entry: Some((MODE_BLOB, oid)),
            });
            changed.push(cluster.clone());
            statuses.insert(cluster, status);
        }
        // A cluster no longer in the deploy repo loses its status file.
        if outcomes.is_some() {
            for cluster in state.statuses.keys().filter(|c| !state.indexes.contains_key(*c)) {
                changes.push(Change {
                    path: ClusterStatus::path(cluster),
                    entry: None,
                });
                changed.push(cluster.clone());
                statuses.remove(cluster);
            }
        }
        let statuses: Vec<ClusterStatus> = statuses.into_values().collect();
        // Summaries are replaced whole: a tree of their own.
        let summary_files = summarize(&state, &statuses)?;
        let mut by_path: BTreeMap<String, Oid> = BTreeMap::new();
        for (path, value) in &summary_files {
            let rel = path
                .strip_prefix(SUMMARIES_DIR)
                .and_then(|p| p.strip_prefix('/'))
                .ok_or_else(|| Error::msg(format!("summary file {path} is not under {SUMMARIES_DIR}/")))?;
            let oid = objects.add(ObjectType::Blob, yaml::to_yaml_string(value).into_bytes());
            by_path.insert(rel.to_string(), oid);
        }
        let summaries_tree = build_tree(&deploy.repo, &mut objects, &by_path)?;
        changes.push(Change {
            path: SUMMARIES_DIR.to_string(),
            entry: summaries_tree.map(|t| (MODE_TREE, t)),
        });
        let root = tree::overlay(&deploy.repo, &mut objects, tip.map(|t| t.tree), &changes)?;
        let message = round_message(&statuses, &changed);
        let mut outcome = RoundOutcome {
            message,
            changed,
            statuses,
            ..Default::default()
        };
        let Some(root) = root else {
            return Ok(outcome);
        };
        if tip.map(|t| t.tree) == Some(root) || dry_run {
            return Ok(outcome);
        }
        objects.write(&deploy.repo)?;
        let commit = deploy.commit_object(root, tip.map(|t| t.commit), &outcome.message)?;
        let moved = !deploy.advance(tip.map(|t| t.commit), commit, &outcome.message)? || (push && !deploy.push()?);
        if moved {
            attempt += 1;
            if attempt >= repo::MAX_ATTEMPTS {
                return Err(Error::msg(format!(
                    "the branch {} kept moving; gave up writing status after {attempt} attempts",
                    deploy.branch
                )));
            }
            tracing::info!(attempt, "branch moved while writing status; rebuilding on the new tip");
            std::thread::sleep(repo::backoff(attempt));
            continue;
        }
        outcome.pushed = push;
        deploy.update_work_tree(commit)?;
        outcome.commit = Some(commit);
        return Ok(outcome);
    }
}

/// A tree of nested blobs (`a/b.yaml`), or `None` when empty.
fn build_tree(repo: &Repository, objects: &mut ObjectSet, files: &BTreeMap<String, Oid>) -> Result<Option<Oid>> {
    let changes: Vec<Change> = files
        .iter()
        .map(|(path, oid)| Change {
            path: path.clone(),
            entry: Some((MODE_BLOB, *oid)),
        })
        .collect();
    tree::overlay(repo, objects, None, &changes)
}

/// `status: 14 clusters: 12 Healthy, 1 Degraded, 1 stale` and the clusters that changed.
fn round_message(statuses: &[ClusterStatus], changed: &[String]) -> String {
    let mut by_health: BTreeMap<Health, usize> = BTreeMap::new();
    let mut stale = 0;
    for s in statuses {
        if s.stale {
            stale += 1;
            continue;
        }
        *by_health.entry(s.worst_health()).or_default() += 1;
    }
    let mut parts: Vec<String> = by_health.iter().map(|(h, n)| format!("{n} {h}")).collect();
    if stale > 0 {
        parts.push(format!("{stale} stale"));
    }
    let mut message = format!("status: {} clusters: {}\n", statuses.len(), parts.join(", "));
    if !changed.is_empty() {
        message.push_str(&format!("\nChanged: {}\n", changed.join(", ")));
    }
    message
}
