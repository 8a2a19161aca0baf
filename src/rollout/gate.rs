//! How one cluster of an open wave stands against the gate, from its status file.

use crate::formats::index::IndexEntry;
use crate::formats::rollout::GateState;
use crate::formats::status::ClusterStatus;
use crate::health::{Health, severity};

#[derive(Debug, Clone, PartialEq)]
pub struct ClusterGate {
    pub state: GateState,
    pub reason: String,
}

impl ClusterGate {
    fn new(state: GateState, reason: impl Into<String>) -> Self {
        ClusterGate {
            state,
            reason: reason.into(),
        }
    }

    pub fn describe(&self) -> String {
        let state = match self.state {
            GateState::Healthy => "healthy",
            GateState::Progressing => "progressing",
            GateState::Pending => "pending",
            GateState::Failed => "failed",
        };
        if self.reason.is_empty() {
            state.into()
        } else {
            format!("{state}: {}", self.reason)
        }
    }
}

/// A cluster that does not run its files of the revision yet (the same words whether its
/// files change in this very commit or it has not applied an earlier one: a render that
/// has nothing new to say must write the same state).
pub fn not_applied() -> ClusterGate {
    ClusterGate::new(GateState::Pending, "has not applied this revision yet")
}

/// The gate of `placement` on one cluster. `placed` is what the branch tip's index puts
/// there through the placement; `status` is the cluster's status file with `applied` and
/// `current` computed against the tip (`DeployState::mark_applied`).
pub fn cluster_gate(placement: &str, placed: &[&IndexEntry], status: Option<&ClusterStatus>) -> ClusterGate {
    let Some(status) = status else {
        return not_applied();
    };
    if status.stale || !status.reachable {
        return ClusterGate::new(
            GateState::Pending,
            format!(
                "status is stale (last seen {})",
                status.last_seen.as_deref().unwrap_or("never")
            ),
        );
    }
    if !status.current {
        return not_applied();
    }
    let mut worst: Option<(Health, String)> = None;
    for entry in placed {
        let found = status.objects.iter().find(|o| {
            o.kind == entry.kind
                && o.name == entry.name
                && o.namespace == entry.namespace
                && o.placements.iter().any(|p| p == placement)
        });
        let id = match &entry.namespace {
            Some(ns) => format!("{}/{ns}/{}", entry.kind, entry.name),
            None => format!("{}/{}", entry.kind, entry.name),
        };
        let (health, message) = match found {
            Some(o) => (o.health, o.message.clone()),
            None => (Health::Unknown, "not in the status file yet".to_string()),
        };
        if health == Health::Healthy {
            continue;
        }
        // Degraded decides the state (a failure), whatever else is not Healthy.
        let rank = |h: Health| (h == Health::Degraded, severity(h));
        if worst.as_ref().is_none_or(|(w, _)| rank(health) > rank(*w)) {
            let text = if message.is_empty() {
                format!("{id} {health}")
            } else {
                format!("{id} {health}: {message}")
            };
            worst = Some((health, text));
        }
    }
    match worst {
        None => ClusterGate::new(GateState::Healthy, ""),
        Some((Health::Degraded, why)) => ClusterGate::new(GateState::Failed, why),
        Some((_, why)) => ClusterGate::new(GateState::Progressing, why),
    }
}
