//! `.starmap/rollouts/<placement>.yaml`: where a placement's rollout stands, as `render`
//! leaves it. Written in the same commit as the files it decided, so a crash never separates
//! the two. The state machine that moves it is `rollout`.

use serde::{Deserialize, Serialize};

use super::ROLLOUTS_DIR;
use crate::error::{Error, Location, Result};
use crate::yaml;

/// Where a placement's rollout stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Phase {
    /// Waves are opening as their gates pass.
    Progressing,
    /// No wave opens: the progress deadline passed or too many clusters failed; `message`
    /// says why. It goes on by itself once the open waves pass the gate.
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

/// One placement's rollout, as a render leaves it (for the CLI and the controller's metrics).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    pub placement: String,
    pub phase: Phase,
    /// Waves open (1 = only the first wave gets the new revision).
    pub open_waves: usize,
    pub waves: usize,
    /// Why it waits or stopped; empty when complete.
    pub message: String,
}

/// `.starmap/rollouts/<placement>.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct State {
    pub placement: String,
    /// Digest of what the placement renders on each of its clusters: a new value starts a
    /// new rollout. Absent while suspended before any rollout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The source commit the revision was first seen in, when the source is a git repo.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_commit: Option<String>,
    pub phase: Phase,
    pub open_waves: usize,
    pub waves: Vec<WaveState>,
    /// When the rollout of this revision started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    /// When the last wave opened.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wave_opened_at: Option<String>,
    /// Since when the open waves pass their gate (absent: they do not).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_since: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub message: String,
    /// Clusters of the open waves keeping the gate closed (the first few), and why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocking: Vec<Blocking>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WaveState {
    pub name: String,
    pub clusters: usize,
    pub open: bool,
    /// Its clusters, by name (the dashboard's placement page lists them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Blocking {
    pub cluster: String,
    pub state: GateState,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

impl State {
    pub fn progress(&self) -> Progress {
        Progress {
            placement: self.placement.clone(),
            phase: self.phase,
            open_waves: self.open_waves,
            waves: self.waves.len(),
            message: self.message.clone(),
        }
    }

    /// Path of its file in the deploy repo.
    pub fn file(placement: &str) -> String {
        super::cluster_file(ROLLOUTS_DIR, placement)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GateState {
    /// Runs the deploy commit holding its files, every object of the placement Healthy.
    Healthy,
    /// Runs it; objects still Progressing, Missing, Suspended or Unknown.
    Progressing,
    /// Does not run it yet, or no fresh status says so (stale, never collected).
    Pending,
    /// Runs it and an object of the placement is Degraded.
    Failed,
}

impl State {
    /// The file's text.
    pub fn to_yaml(&self) -> String {
        yaml::to_yaml_string(&serde_json::to_value(self).unwrap_or_default())
    }

    /// Read a state file; `path` names it in errors.
    pub fn parse(text: &str, path: &str) -> Result<State> {
        let doc = yaml::parse_documents(text, path)?
            .into_iter()
            .next()
            .ok_or_else(|| Error::at(Location::new(path, 0), "empty rollout state"))?;
        let line = doc.line();
        serde_json::from_value::<State>(doc.value).map_err(|e| Error::at(Location::new(path, line), e.to_string()))
    }
}
