//! Status into git: one commit per collection round, written with the same compare-and-swap
//! and fetch-rebuild-retry as render (`DeployRepo::commit_retrying`), so that render and status
//! never lose each other's commits.
//!
//! Each attempt starts again from the branch tip: the previous status files, the indexes and
//! the `applied`/`current` flags are read there (`snapshot::DeployState`), so a render that
//! lands between two attempts is neither overwritten nor judged against an old tree.

use std::collections::BTreeMap;

use git2::{ObjectType, Oid, Repository};
use serde_json::Value;

use super::collect::ClusterOutcome;
use crate::error::{Error, Result};
use crate::formats::status::ClusterStatus;
use crate::formats::{STATUS_DIR, SUMMARIES_DIR};
use crate::gitstore::{Change, MODE_BLOB, MODE_TREE, ObjectSet, Proposal, entry_at, overlay};
use crate::health::Health;
use crate::snapshot::{DeployState, StatusBranches, status_root};
use crate::yaml;

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

/// One status commit on the status branch: the outcomes of a collection merged into the status
/// files at its tip, `applied`/`current` judged against the deploy branch's tip, summaries
/// recomputed; no commit when nothing but times changed. `outcomes: None` only recomputes the
/// summaries (`status summarize`). The deploy branch is only read.
///
/// The first round on a status branch of its own starts it from the `status/` the deploy
/// branch holds (a repo from before status had its own branch), so no status is lost.
pub fn write_round(
    branches: &StatusBranches,
    outcomes: Option<&[ClusterOutcome]>,
    summarize: &Summarize<'_>,
    push: bool,
    dry_run: bool,
) -> Result<RoundOutcome> {
    let single = branches.single_branch();
    let repo = &branches.deploy.repo;
    let done = branches.status.commit_retrying(push, "writing status", |tip| {
        let deploy_tip = if single { tip } else { branches.deploy_tip()? };
        let state = DeployState::read(repo, deploy_tip, status_root(deploy_tip, tip))?;
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
            let oid = objects.add(ObjectType::Blob, status.to_yaml().into_bytes());
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
        let summaries_tree = build_tree(repo, &mut objects, &by_path)?;
        changes.push(Change {
            path: SUMMARIES_DIR.to_string(),
            entry: summaries_tree.map(|t| (MODE_TREE, t)),
        });
        let base = match tip {
            Some(t) => Some(t.tree),
            // A new status branch: only `status/`, taken over from the deploy branch.
            None if !single => {
                let old = entry_at(repo, deploy_tip.map(|t| t.tree), STATUS_DIR);
                let moved = old.map(|oid| Change {
                    path: STATUS_DIR.to_string(),
                    entry: Some((MODE_TREE, oid)),
                });
                overlay(repo, &mut objects, None, moved.as_slice())?
            }
            None => None,
        };
        let root = overlay(repo, &mut objects, base, &changes)?;
        let outcome = RoundOutcome {
            message: round_message(&statuses, &changed),
            changed,
            statuses,
            ..Default::default()
        };
        let proposal = root
            .filter(|root| tip.map(|t| t.tree) != Some(*root) && !dry_run)
            .map(|root| Proposal {
                root,
                objects,
                message: outcome.message.clone(),
            });
        Ok((outcome, proposal))
    })?;
    Ok(RoundOutcome {
        commit: done.commit,
        pushed: done.pushed,
        ..done.value
    })
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
    overlay(repo, objects, None, &changes)
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
