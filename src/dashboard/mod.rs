//! The fleet as `status show` and the dashboard see it, from the deploy repo alone: the index
//! of each cluster (its objects and labels), the status branch (status files and placement
//! summaries) and the rollout state. [`Fleet::summary`] is `status show -o json`;
//! [`html`] draws the pages `starmap run` serves at `/` and `status show -o html` exports.

pub mod html;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use crate::config::DEFAULT_STATUS_BRANCH;
use crate::deploy::publish;
use crate::error::Result;
use crate::formats::status::ClusterStatus;
use crate::formats::{PLACEMENT_SUMMARIES_DIR, RENDER_FILE, meta};
use crate::gitstore::{DeployRepo, blob_text, entries_at, entry_at};
use crate::health::{Health, severity};
use crate::rollout::State;
use crate::snapshot::{StatusBranches, read_states, status_root};

/// Everything the views show, read once.
pub struct Fleet {
    /// The deploy branch's tip commit.
    pub commit: Option<String>,
    /// Every cluster of the deploy repo's index, by name.
    pub clusters: BTreeMap<String, ClusterView>,
    /// The default summary of each placement (`status/summaries/placements/*.yaml`).
    pub placements: Vec<Value>,
    pub rollouts: BTreeMap<String, State>,
    /// With OCI delivery: the record of pushed artifacts, and the clusters whose artifact is
    /// behind the deploy tip.
    pub artifacts: Option<Value>,
    /// The deploy repo as messages name it, and the status branch read.
    pub deploy_display: String,
    pub status_branch: String,
}

/// One cluster: its labels and placements from the index, its status file if any.
pub struct ClusterView {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub placements: Vec<String>,
    pub status: Option<ClusterStatus>,
}

impl ClusterView {
    /// The worst health of its objects; Unknown without a status file.
    pub fn health(&self) -> Health {
        self.status
            .as_ref()
            .map_or(Health::Unknown, ClusterStatus::worst_health)
    }

    pub fn stale(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.stale)
    }

    /// Its health and why, in one line: `stale since …: error`, or the worst object.
    pub fn reason(&self) -> String {
        let Some(s) = &self.status else {
            return "no status file".into();
        };
        if s.stale {
            return format!(
                "stale since {}: {}",
                s.last_seen.as_deref().unwrap_or("never seen"),
                s.error.as_deref().unwrap_or("")
            );
        }
        s.objects
            .iter()
            .filter(|o| o.health != Health::Healthy)
            .max_by_key(|o| severity(o.health))
            .map(|o| {
                let id = match &o.namespace {
                    Some(ns) => format!("{}/{ns}/{}", o.kind, o.name),
                    None => format!("{}/{}", o.kind, o.name),
                };
                format!("{id}: {}", o.message).trim_end_matches(": ").to_string()
            })
            .unwrap_or_default()
    }

    /// `status show`'s line for it.
    pub fn line(&self) -> Value {
        let s = self.status.as_ref();
        json!({
            "cluster": self.name,
            "health": if self.stale() { "Stale".to_string() } else { self.health().to_string() },
            "stale": self.stale(),
            "reachable": s.map(|s| s.reachable),
            "current": s.is_some_and(|s| s.current),
            "appliedRevision": s.and_then(|s| s.applied_revision.clone()),
            "lastSeen": s.and_then(|s| s.last_seen.clone()),
            "reason": self.reason(),
        })
    }
}

impl Fleet {
    /// Opens the deploy repo at `branch`, with status from `status_branch` (default: the one
    /// the last render recorded, else `starmap-status`), and reads the fleet. `fetch`: fetch a
    /// remote deploy repo first (the controller's pages read its cache, which its rounds keep
    /// fresh).
    pub fn open(deploy: &str, branch: &str, status_branch: Option<&str>, fetch: bool) -> Result<Fleet> {
        Fleet::read(&branches(deploy, branch, status_branch, fetch)?)
    }

    pub fn read(branches: &StatusBranches) -> Result<Fleet> {
        let deploy = &branches.deploy;
        let (mut state, status_tip) = branches.read()?;
        let tip = state.tip;
        let mut placements = Vec::new();
        for (file, oid) in entries_at(&deploy.repo, status_root(tip, status_tip), PLACEMENT_SUMMARIES_DIR) {
            let path = format!("{PLACEMENT_SUMMARIES_DIR}/{file}");
            let text = blob_text(&deploy.repo, oid)?;
            if let Some(doc) = crate::yaml::parse_documents(&text, &path)?.into_iter().next() {
                placements.push(doc.value);
            }
        }
        let mut statuses: BTreeMap<String, ClusterStatus> = std::mem::take(&mut state.statuses)
            .into_iter()
            .map(|(c, (s, _))| (c, s))
            .collect();
        let mut clusters: BTreeMap<String, ClusterView> = state
            .indexes
            .iter()
            .map(|(name, index)| {
                let mut placed: Vec<String> = index.objects.iter().flat_map(|o| o.placements.clone()).collect();
                placed.sort();
                placed.dedup();
                let view = ClusterView {
                    name: name.clone(),
                    labels: index.labels.clone(),
                    placements: placed,
                    status: statuses.remove(name),
                };
                (name.clone(), view)
            })
            .collect();
        // A status file of a cluster the index no longer has: shown, without labels.
        for (name, status) in statuses {
            clusters.insert(
                name.clone(),
                ClusterView {
                    name,
                    labels: BTreeMap::new(),
                    placements: vec![],
                    status: Some(status),
                },
            );
        }
        let artifacts = publish::behind(deploy)?.map(|(record, behind)| {
            json!({
                "repository": record.repository,
                "tag": record.tag,
                "complete": record.complete,
                "behind": behind,
            })
        });
        Ok(Fleet {
            deploy_display: deploy.display.clone(),
            status_branch: branches.status.branch.clone(),
            commit: tip.map(|t| t.commit.to_string()),
            clusters,
            placements,
            rollouts: read_states(&deploy.repo, tip.map(|t| t.tree)),
            artifacts,
        })
    }

    /// Clusters with a status file, worst first (then stale ones first, then by name).
    pub fn worst_first(&self) -> Vec<&ClusterView> {
        let mut seen: Vec<&ClusterView> = self.clusters.values().filter(|c| c.status.is_some()).collect();
        seen.sort_by_key(|c| (std::cmp::Reverse(severity(c.health())), !c.stale(), c.name.clone()));
        seen
    }

    /// `status show -o json` (and `/api/v1/status`): placements, the `worst` worst clusters,
    /// rollouts, artifacts.
    pub fn summary(&self, worst: usize) -> Value {
        let worst_clusters: Vec<Value> = self
            .worst_first()
            .into_iter()
            .filter(|c| c.stale() || c.health() != Health::Healthy)
            .take(worst)
            .map(ClusterView::line)
            .collect();
        json!({
            "commit": self.commit,
            "clusters": self.clusters.values().filter(|c| c.status.is_some()).count(),
            "placements": self.placements,
            "worstClusters": worst_clusters,
            "rollouts": self.rollouts.values().collect::<Vec<_>>(),
            "artifacts": self.artifacts,
        })
    }

    /// `/api/v1/clusters/<name>`: the cluster's labels, placements and status file.
    pub fn cluster_json(&self, name: &str) -> Option<Value> {
        let c = self.clusters.get(name)?;
        let mut v = c.line();
        v["labels"] = json!(c.labels);
        v["placements"] = json!(c.placements);
        v["status"] = serde_json::to_value(&c.status).unwrap_or_default();
        Some(v)
    }

    /// `/api/v1/placements/<name>`: its summary, its rollout and its clusters' lines.
    pub fn placement_json(&self, name: &str) -> Option<Value> {
        let summary = self.placements.iter().find(|p| p["placement"] == name)?;
        let clusters: Vec<Value> = self
            .clusters
            .values()
            .filter(|c| c.placements.iter().any(|p| p == name))
            .map(ClusterView::line)
            .collect();
        Some(json!({
            "summary": summary,
            "rollout": self.rollouts.get(name),
            "clusters": clusters,
        }))
    }
}

/// The deploy repo at `branch` and its status branch (see [`Fleet::open`]).
fn branches(deploy: &str, branch: &str, status_branch: Option<&str>, fetch: bool) -> Result<StatusBranches> {
    let repo = DeployRepo::open(deploy, branch, false, false)?;
    if fetch {
        repo.fetch()?;
    }
    let recorded = || {
        let tree = repo.tip().ok()??.tree;
        let oid = entry_at(&repo.repo, Some(tree), RENDER_FILE)?;
        meta::status_branch_of(&blob_text(&repo.repo, oid).ok()?)
    };
    let status_branch = match status_branch {
        Some(b) => b.to_string(),
        None => recorded().unwrap_or_else(|| DEFAULT_STATUS_BRANCH.to_string()),
    };
    let status = repo.on_branch(&status_branch)?;
    Ok(StatusBranches { deploy: repo, status })
}

/// The last fleet read, kept while neither the deploy branch nor the status branch moves: at
/// 10,000 clusters reading takes about 1.4 s, and every page of the dashboard needs it.
#[derive(Default)]
pub struct FleetCache {
    last: Mutex<Option<(Tips, Arc<Fleet>)>>,
}

type Tips = (Option<git2::Oid>, Option<git2::Oid>);

impl FleetCache {
    pub fn get(&self, deploy: &str, branch: &str, status_branch: Option<&str>) -> Result<Arc<Fleet>> {
        let branches = branches(deploy, branch, status_branch, false)?;
        let tips = (
            branches.deploy.tip()?.map(|t| t.commit),
            branches.status.tip()?.map(|t| t.commit),
        );
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, fleet)) = &*last
            && *at == tips
        {
            return Ok(fleet.clone());
        }
        let fleet = Arc::new(Fleet::read(&branches)?);
        *last = Some((tips, fleet.clone()));
        Ok(fleet)
    }
}
