//! `explain`: why each object is or is not on a cluster, and what customized it there.
//! A view of the same `Plan` and `Renderer` that render uses; it re-implements no selection.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::model::{Cluster, Model};
use crate::plan::{Plan, describe_test, facts};
use crate::render::{Change, Renderer};
use crate::rollout::{Phase, State, held_clusters, waves};

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Explanation {
    pub cluster: String,
    /// The `--object` filter, when one was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub placed: Vec<PlacedExplanation>,
    pub not_placed: Vec<NotPlacedExplanation>,
    /// The waves this cluster is in, one per placement with a rollout or suspension.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<RolloutExplanation>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutExplanation {
    pub placement: String,
    pub wave: String,
    /// 1-based position of the wave.
    pub wave_number: usize,
    pub waves: usize,
    /// How the wave chose this cluster.
    pub chosen_by: String,
    /// Whether this cluster gets the placement's current revision, and if not, why.
    pub status: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PlacedExplanation {
    pub object: String,
    pub source: String,
    /// Path in the deploy repo.
    pub file: String,
    pub placed_by: Vec<Reason>,
    pub customizations: Vec<String>,
    pub changes: Vec<Change>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reason {
    pub placement: String,
    /// Which `spec.workloads` clause matched the object, as written.
    pub clause: String,
    /// How the placement picked this cluster.
    pub cluster_by: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NotPlacedExplanation {
    pub object: String,
    pub source: String,
    pub why: String,
}

/// `KIND/[NS/]NAME` as given to `--object`.
pub fn object_matches(filter: &str, kind: &str, namespace: Option<&str>, name: &str) -> bool {
    let parts: Vec<&str> = filter.split('/').collect();
    match parts.as_slice() {
        [k, n] => k.eq_ignore_ascii_case(kind) && *n == name,
        [k, ns, n] => k.eq_ignore_ascii_case(kind) && Some(*ns) == namespace && *n == name,
        _ => false,
    }
}

/// `--object`'s shape: `KIND/NAME` or `KIND/NAMESPACE/NAME` (matched by [`object_matches`]).
pub fn check_object_filter(filter: &str) -> Result<()> {
    if (2..=3).contains(&filter.split('/').count()) {
        Ok(())
    } else {
        Err(Error::msg(format!(
            "--object {filter:?}: expected KIND/NAME or KIND/NAMESPACE/NAME"
        )))
    }
}

pub fn explain(
    model: &Model,
    plan: &Plan,
    renderer: &Renderer<'_>,
    cluster: &str,
    object: Option<&str>,
    rollout_states: Option<&std::collections::BTreeMap<String, State>>,
) -> Result<Explanation> {
    let ci = model
        .clusters
        .iter()
        .position(|c| c.name == cluster)
        .ok_or_else(|| Error::msg(format!("cluster {cluster:?} is not in the inventory")))?;
    if let Some(filter) = object {
        check_object_filter(filter)?;
        let exists = model
            .workloads
            .iter()
            .any(|w| object_matches(filter, &w.id.kind, w.id.namespace.as_deref(), &w.id.name));
        if !exists {
            return Err(Error::msg(format!("--object {filter:?}: no such object in the source")));
        }
    }
    let wanted = |wi: usize| {
        let w = &model.workloads[wi];
        object.is_none_or(|f| object_matches(f, &w.id.kind, w.id.namespace.as_deref(), &w.id.name))
    };
    let c = &model.clusters[ci];
    let cluster_plan = &plan.clusters[ci];
    let rendered = renderer.render_cluster(cluster_plan)?;

    let cluster_by = |pi: usize| -> String {
        let p = &model.placements[pi];
        let mut how: Vec<String> = p
            .spec
            .cluster_selectors
            .iter()
            .enumerate()
            .filter(|(_, s)| s.matches(&c.labels))
            .map(|(i, s)| format!("clusterSelectors[{i}] {}", serde_json::to_string(s).unwrap_or_default()))
            .collect();
        if p.spec.clusters.contains(&c.name) {
            how.push("named in spec.clusters".into());
        }
        how.join(" and ")
    };

    let mut placed = Vec::new();
    for o in &rendered.objects {
        let Some(wi) = o.workload.filter(|wi| wanted(*wi)) else {
            continue;
        };
        let po = cluster_plan
            .objects
            .iter()
            .find(|p| p.workload == wi)
            .expect("rendered from this plan");
        let placed_by = po
            .placed_by
            .iter()
            .map(|r| Reason {
                placement: model.placements[r.placement].name.clone(),
                clause: format!(
                    "workloads[{}] {}",
                    r.clause,
                    describe_test(&model.placements[r.placement].workloads[r.clause].test)
                ),
                cluster_by: cluster_by(r.placement),
            })
            .collect();
        placed.push(PlacedExplanation {
            object: o.id.to_string(),
            source: model.workloads[wi].source.to_string(),
            file: format!("clusters/{}/{}", c.name, o.file),
            placed_by,
            customizations: o.customizations.clone(),
            changes: o.changes.clone(),
        });
    }

    // Objects not here: is there a placement that wants the object, or one that wants
    // the cluster?
    let selects_cluster: Vec<bool> = model.placements.iter().map(|p| p.selects(c)).collect();
    let mut not_placed = Vec::new();
    for wi in 0..model.workloads.len() {
        let other_variant = !model.workloads[wi].exists_for(ci);
        if !wanted(wi) || other_variant || cluster_plan.objects.iter().any(|p| p.workload == wi) {
            continue;
        }
        let f = facts(model, wi);
        let wanting: Vec<&str> = model
            .placements
            .iter()
            .filter(|p| p.workloads.iter().any(|t| t.matches(&f)))
            .map(|p| p.name.as_str())
            .collect();
        let why = if wanting.is_empty() {
            let here: Vec<&str> = model
                .placements
                .iter()
                .enumerate()
                .filter(|(i, _)| selects_cluster[*i])
                .map(|(_, p)| p.name.as_str())
                .collect();
            if here.is_empty() {
                "no placement selects this object (and no placement selects this cluster)".to_string()
            } else {
                format!(
                    "no placement selects this object; the placements that select this cluster ({}) have no clause matching it",
                    here.join(", ")
                )
            }
        } else {
            format!(
                "placement{} {} select{} this object but not this cluster",
                if wanting.len() > 1 { "s" } else { "" },
                wanting.join(", "),
                if wanting.len() > 1 { "" } else { "s" }
            )
        };
        let w = &model.workloads[wi];
        not_placed.push(NotPlacedExplanation {
            object: w.id.to_string(),
            source: w.source.to_string(),
            why,
        });
    }
    Ok(Explanation {
        cluster: c.name.clone(),
        object: object.map(String::from),
        labels: c.labels.clone(),
        placed,
        not_placed,
        rollouts: rollouts_of(model, ci, &selects_cluster, rollout_states),
    })
}

/// The wave of cluster `ci` in each gated placement that selects it, and where that wave is.
fn rollouts_of(
    model: &Model,
    ci: usize,
    selects_cluster: &[bool],
    states: Option<&std::collections::BTreeMap<String, State>>,
) -> Vec<RolloutExplanation> {
    let c = &model.clusters[ci];
    let mut out = Vec::new();
    for (pi, p) in model.placements.iter().enumerate() {
        if !p.spec.is_gated() || !selects_cluster[pi] {
            continue;
        }
        let members: Vec<&Cluster> = model.clusters.iter().filter(|c| p.selects(c)).collect();
        let waves = waves::assign(p.spec.rollout.as_ref(), &members);
        let Some((i, wave)) = waves.iter().enumerate().find(|(_, w)| w.clusters.contains(&c.name)) else {
            continue;
        };
        let status = match states.map(|s| s.get(&p.name)) {
            None => "give --deploy to see where the rollout stands".to_string(),
            Some(None) => "no rollout recorded in the deploy repo yet: the next render starts one".to_string(),
            Some(Some(state)) => {
                let held = held_clusters(state, &waves).contains(&c.name.as_str());
                match (state.phase, held) {
                    (Phase::Suspended, _) => {
                        format!("{}; this cluster keeps its files of the placement", state.message)
                    }
                    (Phase::Complete, _) => "rollout complete: this cluster has the current revision".to_string(),
                    (_, false) => format!(
                        "wave {} is open: this cluster gets the new revision ({})",
                        wave.name, state.message
                    ),
                    (_, true) => format!(
                        "waiting: wave {} is not open yet, the cluster keeps the previous revision; {}",
                        wave.name, state.message
                    ),
                }
            }
        };
        out.push(RolloutExplanation {
            placement: p.name.clone(),
            wave: wave.name.clone(),
            wave_number: i + 1,
            waves: waves.len(),
            chosen_by: wave.chosen_by.clone(),
            status,
        });
    }
    out
}
