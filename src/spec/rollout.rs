//! `Placement.spec.rollout`: the waves a new revision of a placement goes through, and the
//! gate between them (docs/rollouts.md).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::LabelSelector;
use crate::time::parse_duration;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RolloutSpec {
    /// In order. Clusters no wave chooses form an implicit last wave.
    pub waves: Vec<WaveSpec>,
    /// The open waves must be applied and Healthy this long before the next one opens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_healthy_time: Option<String>,
    /// Clusters of the open waves that may be failing (not Healthy, or Degraded) while the
    /// rollout goes on.
    #[serde(default)]
    pub max_failures: u32,
    /// Time a wave may take to pass its gate before the rollout pauses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress_deadline: Option<String>,
}

/// One wave: chosen by a selector, by names, by a percentage of the clusters not chosen by
/// an earlier wave, or (none of these) all of them.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WaveSpec {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selector: Option<LabelSelector>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u32>,
}

pub const DEFAULT_MIN_HEALTHY_TIME: Duration = Duration::from_secs(60);
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
/// The name of the wave holding the clusters no wave chooses.
pub const REMAINING_WAVE: &str = "remaining";

impl RolloutSpec {
    pub fn min_healthy_time(&self) -> Duration {
        self.min_healthy_time
            .as_deref()
            .and_then(|s| parse_duration(s).ok())
            .unwrap_or(DEFAULT_MIN_HEALTHY_TIME)
    }

    pub fn progress_deadline(&self) -> Duration {
        self.progress_deadline
            .as_deref()
            .and_then(|s| parse_duration(s).ok())
            .unwrap_or(DEFAULT_PROGRESS_DEADLINE)
    }

    /// Problems with the spec, as (field path below `spec.rollout`, message).
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.waves.is_empty() {
            return Err(("waves".into(), "needs at least one wave".into()));
        }
        for (field, value) in [
            ("minHealthyTime", &self.min_healthy_time),
            ("progressDeadline", &self.progress_deadline),
        ] {
            if let Some(v) = value {
                parse_duration(v).map_err(|e| (field.to_string(), e))?;
            }
        }
        let mut seen = std::collections::HashSet::new();
        for (i, w) in self.waves.iter().enumerate() {
            let at = |f: &str| format!("waves[{i}]{f}");
            super::validate_object_name("wave", &w.name).map_err(|e| (at(".name"), e))?;
            if w.name == REMAINING_WAVE || !seen.insert(w.name.as_str()) {
                return Err((
                    at(".name"),
                    format!("wave name {:?} is used twice (or reserved)", w.name),
                ));
            }
            let ways = usize::from(w.cluster_selector.is_some()) + usize::from(!w.clusters.is_empty());
            if ways > 0 && w.percent.is_some() {
                return Err((
                    at(""),
                    "choose a wave's clusters by clusterSelector/clusters or by percent, not both".into(),
                ));
            }
            if let Some(p) = w.percent
                && !(1..=100).contains(&p)
            {
                return Err((at(".percent"), format!("percent must be 1 to 100, not {p}")));
            }
            if let Some(s) = &w.cluster_selector {
                s.validate().map_err(|e| (at(".clusterSelector"), e))?;
            }
        }
        Ok(())
    }
}
