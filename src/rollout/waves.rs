//! Which wave each destination of a placement is in.

use crate::model::Cluster;
use crate::spec::{REMAINING_WAVE, RolloutSpec};

/// A wave and its clusters, by name, sorted.
#[derive(Debug, Clone, PartialEq)]
pub struct Wave {
    pub name: String,
    pub clusters: Vec<String>,
    /// How the wave chooses its clusters, for `explain`.
    pub chosen_by: String,
}

/// The waves of `destinations` (a placement's clusters), in order. Each wave takes, from
/// the clusters no earlier wave took, those its selector or names match, or `percent` of
/// them (rounded up, in name order), or all of them. Clusters left after the last wave
/// form one more wave, `remaining`. Without a rollout, all clusters are one wave.
pub fn assign(rollout: Option<&RolloutSpec>, destinations: &[&Cluster]) -> Vec<Wave> {
    let mut remaining: Vec<&Cluster> = destinations.to_vec();
    remaining.sort_by(|a, b| a.name.cmp(&b.name));
    let names = |cs: &[&Cluster]| cs.iter().map(|c| c.name.clone()).collect::<Vec<_>>();
    let Some(rollout) = rollout else {
        return vec![Wave {
            name: "all".into(),
            clusters: names(&remaining),
            chosen_by: "every cluster of the placement".into(),
        }];
    };
    let mut waves = Vec::new();
    for w in &rollout.waves {
        let (taken, chosen_by): (Vec<&Cluster>, String) = if let Some(p) = w.percent {
            let n = (remaining.len() * p as usize).div_ceil(100);
            (
                remaining.iter().take(n).copied().collect(),
                format!("{p}% of the clusters not in an earlier wave, in name order"),
            )
        } else if w.cluster_selector.is_some() || !w.clusters.is_empty() {
            let picked = remaining
                .iter()
                .filter(|c| {
                    w.cluster_selector.as_ref().is_some_and(|s| s.matches(&c.labels)) || w.clusters.contains(&c.name)
                })
                .copied()
                .collect();
            let mut by = Vec::new();
            if let Some(s) = &w.cluster_selector {
                by.push(format!(
                    "clusterSelector {}",
                    serde_json::to_string(s).unwrap_or_default()
                ));
            }
            if !w.clusters.is_empty() {
                by.push(format!("clusters {}", w.clusters.join(", ")));
            }
            (picked, by.join(" or "))
        } else {
            (remaining.clone(), "every cluster not in an earlier wave".into())
        };
        let taken_names: std::collections::HashSet<&str> = taken.iter().map(|c| c.name.as_str()).collect();
        remaining.retain(|c| !taken_names.contains(c.name.as_str()));
        waves.push(Wave {
            name: w.name.clone(),
            clusters: names(&taken),
            chosen_by,
        });
    }
    if !remaining.is_empty() {
        waves.push(Wave {
            name: REMAINING_WAVE.into(),
            clusters: names(&remaining),
            chosen_by: "no wave chose it".into(),
        });
    }
    waves
}
