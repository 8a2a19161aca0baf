//! Rollout waves: a placement's new revision reaches its clusters wave by wave, each wave
//! opening only when the clusters of the open ones run the new revision and are Healthy
//! (contract: docs/rollouts.md).

use serde::{Deserialize, Serialize};

/// Where a placement's rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Waves are opening as their gates pass.
    Progressing,
    /// Stopped: the progress deadline passed or too many clusters failed; `message` says why.
    Paused,
    /// Every wave is open.
    Complete,
    /// `spec.suspend`: no cluster's files of this placement change.
    Suspended,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// One placement's rollout, as a render leaves it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub placement: String,
    pub phase: Phase,
    /// Waves open (1-based count: 1 = only the first wave gets the new revision).
    pub open_waves: usize,
    pub waves: usize,
    /// Why it waits or stopped; empty when complete.
    pub message: String,
}
