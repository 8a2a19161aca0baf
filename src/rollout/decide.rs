//! One render's rollout decisions: each gated placement's revision and waves, the gate of
//! every cluster of its open waves, and the clusters that keep the tip's files of it.

use std::collections::{BTreeMap, HashMap};

use sha2::{Digest, Sha256};

use super::gate::{self, ClusterGate, cluster_gate};
use super::waves::{self, Wave};
use super::{Inputs, State, advance, held_clusters};
use crate::formats::index::ClusterIndex;
use crate::formats::status::ClusterStatus;
use crate::model::{Cluster, Model};

/// A placement with `spec.rollout` or `spec.suspend`, and its clusters.
pub struct Gated {
    /// Index into `Model::placements`.
    pub placement: usize,
    /// Per cluster of the model: a destination of the placement.
    pub destinations: Vec<bool>,
}

pub fn gated_placements(model: &Model) -> Vec<Gated> {
    model
        .placements
        .iter()
        .enumerate()
        .filter(|(_, p)| p.spec.is_gated())
        .map(|(i, _)| Gated {
            placement: i,
            destinations: model.destinations(i),
        })
        .collect()
}

/// A gated placement ready to be decided: its revision and its waves.
pub struct Prepared<'g> {
    pub gated: &'g Gated,
    /// Digest of what the placement renders on each of its clusters now.
    pub revision: String,
    pub waves: Vec<Wave>,
}

/// The revision and waves of every gated placement. `fresh_digest(cluster, placement)` is
/// what the placement renders on a destination now (`RenderedCluster::placement_digest`).
pub fn prepare<'g>(
    model: &Model,
    gated: &'g [Gated],
    fresh_digest: &dyn Fn(usize, &str) -> String,
) -> Vec<Prepared<'g>> {
    gated
        .iter()
        .map(|g| {
            let placement = &model.placements[g.placement];
            let name = placement.name.as_str();
            // Clusters in name order, however the model was built.
            let mut destinations: Vec<usize> = (0..model.clusters.len()).filter(|&i| g.destinations[i]).collect();
            destinations.sort_by(|a, b| model.clusters[*a].name.cmp(&model.clusters[*b].name));
            let mut h = Sha256::new();
            for &i in &destinations {
                h.update(model.clusters[i].name.as_bytes());
                h.update(b"\0");
                h.update(fresh_digest(i, name).as_bytes());
                h.update(b"\n");
            }
            let members: Vec<&Cluster> = destinations.iter().map(|&i| &model.clusters[i]).collect();
            let waves = waves::assign(placement.spec.rollout.as_ref(), &members);
            for w in waves.iter().filter(|w| w.clusters.is_empty()) {
                tracing::warn!(
                    "placement {name}: rollout wave {} chooses no cluster; it opens together with the wave before it",
                    w.name
                );
            }
            Prepared {
                gated: g,
                revision: format!("sha256:{}", hex::encode(h.finalize())),
                waves,
            }
        })
        .collect()
}

/// Whether some gate must read status: a rollout in progress (not suspended, not complete for
/// its current revision). Reading every cluster's status costs time at fleet scale, so a
/// render whose rollouts all stand still does not.
pub fn needs_status(model: &Model, prepared: &[Prepared<'_>], previous: &BTreeMap<String, State>) -> bool {
    prepared.iter().any(|p| {
        let placement = &model.placements[p.gated.placement];
        let prev = previous.get(&placement.name);
        !placement.spec.suspend
            && placement.spec.rollout.is_some()
            && !prev
                .is_some_and(|s| s.revision.as_deref() == Some(p.revision.as_str()) && s.open_waves >= p.waves.len())
    })
}

/// What the gate reads about a cluster, from the deploy repo.
pub trait Observed {
    /// The tip's index of the cluster.
    fn index(&self, cluster: &str) -> Option<&ClusterIndex>;
    /// Its status file, with `applied` and `current` judged against the tip.
    fn status(&self, cluster: &str) -> Option<ClusterStatus>;
}

/// What the rollouts decided for one render.
#[derive(Debug)]
pub struct Decision {
    /// One state per gated placement, in placement order.
    pub states: Vec<State>,
    /// Per cluster of the model: the placements whose files it keeps from the tip, sorted.
    pub held: Vec<Vec<String>>,
    /// Rollouts whose state differs from the tip's, described for the commit message.
    pub changed: Vec<String>,
}

/// Advance every gated placement from its state at the tip (`previous`).
///
/// `fresh_digest(cluster, placement)` is what the placement renders on a cluster now;
/// `tip_digest` what the tip has there, when known: a cluster whose files change in this very
/// commit does not run them yet. `observed` is the status the gates read (`None` when
/// [`needs_status`] said no gate would ask).
#[allow(clippy::too_many_arguments)]
pub fn decide(
    model: &Model,
    prepared: &[Prepared<'_>],
    previous: &BTreeMap<String, State>,
    fresh_digest: &dyn Fn(usize, &str) -> String,
    tip_digest: &dyn Fn(usize, &str) -> Option<String>,
    observed: Option<&dyn Observed>,
    now: i64,
) -> Decision {
    let index_of: HashMap<&str, usize> = model
        .clusters
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let mut decision = Decision {
        states: Vec::new(),
        held: vec![Vec::new(); model.clusters.len()],
        changed: Vec::new(),
    };
    for p in prepared {
        let placement = &model.placements[p.gated.placement];
        let name = placement.name.as_str();
        let gate = |cluster: &str| -> ClusterGate {
            let i = index_of.get(cluster).copied();
            if i.is_some_and(|i| tip_digest(i, name) != Some(fresh_digest(i, name))) {
                return gate::not_applied();
            }
            let Some(observed) = observed else {
                return gate::not_applied();
            };
            let placed: Vec<_> = observed
                .index(cluster)
                .map(|ix| ix.placed_by(name).collect())
                .unwrap_or_default();
            cluster_gate(name, &placed, observed.status(cluster).as_ref())
        };
        let prev = previous.get(name);
        let next = advance(
            &Inputs {
                placement: name,
                rollout: placement.spec.rollout.as_ref(),
                suspend: placement.spec.suspend,
                revision: &p.revision,
                source_commit: model.source.commit.as_deref(),
                waves: &p.waves,
                previous: prev,
                now,
            },
            &gate,
        );
        for cluster in held_clusters(&next, &p.waves) {
            if let Some(&i) = index_of.get(cluster) {
                decision.held[i].push(name.to_string());
            }
        }
        if prev != Some(&next) {
            let mut line = format!(
                "{name}: {}, {}/{} waves open",
                next.phase,
                next.open_waves,
                p.waves.len()
            );
            if !next.message.is_empty() {
                line.push_str(": ");
                line.push_str(&next.message);
            }
            decision.changed.push(line);
        }
        decision.states.push(next);
    }
    for held in &mut decision.held {
        held.sort();
    }
    decision
}
