//! The status files of the deploy repo (api.md section 5): what collection writes and what
//! summaries, the rollout gate and `status show` read.
//!
//! ```text
//! status/clusters/<cluster>.yaml              one ClusterStatus
//! status/summaries/<StatusSummary name>.yaml  one SummaryReport per StatusSummary
//! status/summaries/placements/<placement>.yaml  the default summary of each placement
//! ```
//!
//! Only `lastSeen` and `lastAttempt` carry times, so a round that saw the same state as the
//! last one can keep the old file (see [`ClusterStatus::same_state`]) and make no commit.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::STATUS_CLUSTERS_DIR;
use crate::error::Result;
use crate::health::{Health, severity};
use crate::yaml;

/// `status/clusters/<cluster>.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClusterStatus {
    pub cluster: String,
    /// Whether the last attempt reached the cluster (or the hub that reports it).
    pub reachable: bool,
    /// The objects below are from an earlier round: the last attempt failed.
    #[serde(default, skip_serializing_if = "is_false")]
    pub stale: bool,
    /// When the objects below were read (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<String>,
    /// Why the last attempt failed (only when it did).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Where the status came from: `kubeconfig` or `argocd`.
    pub source: String,
    /// The deploy commit whose index (`.starmap/clusters/<cluster>.yaml`) said what to read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deploy_commit: Option<String>,
    /// The deploy commit the cluster's GitOps agent last applied (Flux Kustomization
    /// `status.lastAppliedRevision`, Argo CD `status.sync.revision`), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied_revision: Option<String>,
    /// The cluster runs what the deploy commit holds for it: its directory at
    /// `appliedRevision` equals its directory at `deployCommit`.
    #[serde(default)]
    pub current: bool,
    /// The GitOps agent's own view: Flux Kustomization or Argo CD Application.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sync: Option<SyncStatus>,
    #[serde(default)]
    pub objects: Vec<ObjectStatus>,
}

/// The agent that applies the cluster's directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyncStatus {
    /// `Kustomization/flux-system/<name>` or `Application/argocd/<name>`.
    pub object: String,
    pub health: Health,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
}

/// One object the deploy repo places on the cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectStatus {
    pub api_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// The placements that put it there (from the index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placements: Vec<String>,
    pub health: Health,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// The cluster runs the deploy commit that holds this version of the object.
    #[serde(default)]
    pub applied: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// The live `.status`, without fields that change on every heartbeat.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<Value>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl ClusterStatus {
    /// Equal but for the times: a round that finds this needs no new file.
    pub fn same_state(&self, other: &ClusterStatus) -> bool {
        let strip = |s: &ClusterStatus| ClusterStatus {
            last_seen: None,
            ..s.clone()
        };
        strip(self) == strip(other)
    }

    /// The worst health of its objects (Argo CD's order); Healthy with none.
    pub fn worst_health(&self) -> Health {
        self.objects
            .iter()
            .map(|o| o.health)
            .max_by_key(|h| severity(*h))
            .unwrap_or(Health::Healthy)
    }

    /// Path of this cluster's file in the deploy repo.
    pub fn path(cluster: &str) -> String {
        super::cluster_file(STATUS_CLUSTERS_DIR, cluster)
    }

    /// The file's text.
    pub fn to_yaml(&self) -> String {
        yaml::to_yaml_string(&serde_json::to_value(self).unwrap_or_default())
    }
}

/// Drops what changes without the object changing: heartbeat and probe times of conditions.
/// Transition times stay: they change only when the condition does.
pub fn stable_status(status: &Value) -> Value {
    let mut status = status.clone();
    if let Some(conditions) = status.get_mut("conditions").and_then(Value::as_array_mut) {
        for c in conditions.iter_mut().filter_map(Value::as_object_mut) {
            c.remove("lastHeartbeatTime");
            c.remove("lastProbeTime");
            c.remove("lastUpdateTime");
        }
    }
    status
}

/// Parse one status file (`status/clusters/<cluster>.yaml`); errors name the file and line.
pub fn parse_cluster_status(text: &str, path: &str) -> Result<ClusterStatus> {
    super::read_one(text, path, "status file")
}

/// Parse many status files (path, text) in parallel, in the order given.
pub fn parse_cluster_statuses(files: &[(String, String)]) -> Result<Vec<ClusterStatus>> {
    use rayon::prelude::*;
    files
        .par_iter()
        .map(|(path, text)| parse_cluster_status(text, path))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn same_state_ignores_last_seen_only() {
        let a = ClusterStatus {
            cluster: "c".into(),
            reachable: true,
            stale: false,
            last_seen: Some("2026-01-01T00:00:00Z".into()),
            error: None,
            source: "kubeconfig".into(),
            deploy_commit: Some("abc".into()),
            applied_revision: Some("abc".into()),
            current: true,
            sync: None,
            objects: vec![],
        };
        let mut b = a.clone();
        b.last_seen = Some("2026-01-01T00:01:00Z".into());
        assert!(a.same_state(&b));
        b.reachable = false;
        assert!(!a.same_state(&b));
    }

    #[test]
    fn stable_status_drops_heartbeats_keeps_transitions() {
        let s = json!({"conditions": [{"type": "Available", "lastUpdateTime": "x", "lastTransitionTime": "y"}]});
        assert_eq!(
            stable_status(&s),
            json!({"conditions": [{"type": "Available", "lastTransitionTime": "y"}]})
        );
    }
}
