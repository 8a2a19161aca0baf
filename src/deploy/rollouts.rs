//! Deciding, while a render builds its tree, where each gated placement's rollout stands
//! and which clusters are held back: read the rollout states and the status files at the
//! tip, compute each placement's revision, and advance (`crate::rollout`).

use std::collections::BTreeMap;

use git2::{Oid, Repository};
use sha2::{Digest, Sha256};

use super::objects::{Entry, ObjectSet};
use super::repo::Tip;
use super::tree;
use crate::error::Result;
use crate::model::Model;
use crate::rollout::{self, ClusterGate, Inputs, ROLLOUTS_DIR, State, Wave, gate::cluster_gate};
use crate::status::store::DeployState;
use crate::yaml;

/// A placement with `spec.rollout` or `spec.suspend`, and its clusters.
pub struct Gated {
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
            destinations: crate::plan::placement_clusters(model, i),
        })
        .collect()
}

/// What the rollouts decided for one render.
pub struct Decision {
    /// One state per gated placement, in placement order.
    pub states: Vec<State>,
    /// Per cluster of the model: the placements whose files it keeps from the tip.
    pub held: Vec<Vec<String>>,
    /// Rollouts whose state differs from the tip's, described for the commit message.
    pub changed: Vec<String>,
}

/// The rollout states at the tip, by placement. An unreadable file counts as absent (the
/// rollout starts over), with a warning.
pub fn read_states(repo: &Repository, tip_tree: Option<Oid>) -> BTreeMap<String, State> {
    let mut states = BTreeMap::new();
    for (file, oid) in tree::entries_at(repo, tip_tree, ROLLOUTS_DIR) {
        let Some(name) = file.strip_suffix(".yaml") else {
            continue;
        };
        let path = format!("{ROLLOUTS_DIR}/{file}");
        let parsed = repo
            .find_blob(oid)
            .ok()
            .and_then(|b| String::from_utf8(b.content().to_vec()).ok())
            .ok_or_else(|| "not UTF-8 text".to_string())
            .and_then(|text| {
                let doc = yaml::parse_documents(&text, &path)
                    .map_err(|e| e.to_string())?
                    .into_iter()
                    .next()
                    .ok_or("empty")?;
                serde_json::from_value::<State>(doc.value).map_err(|e| e.to_string())
            });
        match parsed {
            Ok(state) => {
                states.insert(name.to_string(), state);
            }
            Err(e) => tracing::warn!("{path}: unreadable rollout state, starting over: {e}"),
        }
    }
    states
}

/// Advance every gated placement. `fresh_digest(cluster, placement)` is what the placement
/// renders on a destination now (`hold::placement_digest`); `tip_digest` what the tip has
/// there, when known.
pub fn decide(
    model: &Model,
    gated: &[Gated],
    repo: &Repository,
    tip: Option<Tip>,
    fresh_digest: &dyn Fn(usize, &str) -> String,
    tip_digest: &dyn Fn(usize, &str) -> Option<String>,
    now: i64,
) -> Result<Decision> {
    let tip_tree = tip.map(|t| t.tree);
    let previous = read_states(repo, tip_tree);
    let mut status: Option<DeployState<'_>> = None;
    let index_of: std::collections::HashMap<&str, usize> = model
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
    for g in gated {
        let placement = &model.placements[g.placement];
        let name = placement.name.as_str();
        let destinations: Vec<usize> = (0..model.clusters.len()).filter(|&i| g.destinations[i]).collect();
        let revision = {
            // Clusters in name order (the model's order is the inventory's).
            let mut by_name: Vec<usize> = destinations.clone();
            by_name.sort_by(|a, b| model.clusters[*a].name.cmp(&model.clusters[*b].name));
            let mut h = Sha256::new();
            for &i in &by_name {
                h.update(model.clusters[i].name.as_bytes());
                h.update(b"\0");
                h.update(fresh_digest(i, name).as_bytes());
                h.update(b"\n");
            }
            format!("sha256:{}", hex::encode(h.finalize()))
        };
        let members: Vec<&crate::model::Cluster> = destinations.iter().map(|&i| &model.clusters[i]).collect();
        let waves: Vec<Wave> = rollout::waves::assign(placement.spec.rollout.as_ref(), &members);
        for w in waves.iter().filter(|w| w.clusters.is_empty()) {
            tracing::warn!(
                "placement {name}: rollout wave {} chooses no cluster; it opens together with the wave before it",
                w.name
            );
        }
        let prev = previous.get(name);
        // The gate reads status unless the rollout is suspended or already complete.
        let needs_status = !placement.spec.suspend
            && placement.spec.rollout.is_some()
            && !prev.is_some_and(|p| p.revision.as_deref() == Some(revision.as_str()) && p.open_waves >= waves.len());
        if needs_status && status.is_none() {
            status = Some(DeployState::read(repo, tip)?);
        }
        let gate = |cluster: &str| -> ClusterGate {
            // Files that change in this very commit are not running anywhere yet.
            let i = index_of.get(cluster).copied();
            if i.is_some_and(|i| tip_digest(i, name) != Some(fresh_digest(i, name))) {
                return rollout::gate::not_applied();
            }
            let Some(state) = status.as_ref() else {
                return rollout::gate::not_applied();
            };
            let placed: Vec<&crate::status::collect::IndexEntry> = state
                .indexes
                .get(cluster)
                .map(|ix| {
                    ix.objects
                        .iter()
                        .filter(|e| e.placements.iter().any(|p| p == name))
                        .collect()
                })
                .unwrap_or_default();
            let mut cluster_status = state.statuses.get(cluster).map(|(s, _)| s.clone());
            if let Some(s) = cluster_status.as_mut() {
                state.mark_applied(s);
            }
            cluster_gate(name, &placed, cluster_status.as_ref())
        };
        let next = rollout::advance(
            &Inputs {
                placement: name,
                rollout: placement.spec.rollout.as_ref(),
                suspend: placement.spec.suspend,
                revision: &revision,
                source_commit: model.source.commit.as_deref(),
                waves: &waves,
                previous: prev,
                now,
            },
            &gate,
        );
        for cluster in rollout::held_clusters(&next, &waves) {
            if let Some(&i) = index_of.get(cluster) {
                decision.held[i].push(name.to_string());
            }
        }
        if prev != Some(&next) {
            let mut line = format!("{name}: {}, {}/{} waves open", next.phase, next.open_waves, waves.len());
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
    Ok(decision)
}

/// The `.starmap/rollouts/` tree of `states` (none when there are none).
pub fn states_tree(objects: &mut ObjectSet, states: &[State]) -> Option<Oid> {
    let entries: Vec<Entry> = states
        .iter()
        .map(|s| {
            let value = serde_json::to_value(s).unwrap_or_default();
            let blob = objects.add(git2::ObjectType::Blob, yaml::to_yaml_string(&value).into_bytes());
            Entry::blob(format!("{}.yaml", s.placement), blob)
        })
        .collect();
    (!entries.is_empty()).then(|| objects.add_tree(entries))
}
