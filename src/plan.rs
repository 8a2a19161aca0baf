//! Selection: which workload object goes to which cluster, through which placement clause,
//! and which customizations apply to it there. Pure: a `Model` in, a `Plan` out.
//! `render`, `plan`, `explain` and `validate` are all views of this one `Plan`.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::model::{Model, ObjectId, group_of};
use crate::spec::ObjectFacts;
use crate::spec::ObjectTest;

/// Why an object is on a cluster: placement `placement` (index into `Model::placements`)
/// selected the cluster and its workload clause `clause` matched the object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlacedBy {
    pub placement: usize,
    pub clause: usize,
}

/// One object on one cluster.
#[derive(Debug, Clone)]
pub struct PlacedObject {
    /// Index into `Model::workloads`.
    pub workload: usize,
    pub placed_by: Vec<PlacedBy>,
    /// Indices into `Model::customizations`, in application order.
    pub customizations: Vec<usize>,
}

#[derive(Debug, Clone)]
pub struct ClusterPlan {
    /// Index into `Model::clusters`.
    pub cluster: usize,
    /// In workload order (source path, then line).
    pub objects: Vec<PlacedObject>,
}

#[derive(Debug, Clone)]
pub struct Plan {
    /// One per cluster of the inventory, in name order.
    pub clusters: Vec<ClusterPlan>,
    /// Things worth saying that are not errors (a placement that matches no cluster).
    pub warnings: Vec<String>,
}

/// What an ObjectTest sees of a workload.
pub fn facts(model: &Model, workload: usize) -> ObjectFacts<'_> {
    let w = &model.workloads[workload];
    let api_version = w.object.get("apiVersion").and_then(|v| v.as_str()).unwrap_or("");
    ObjectFacts {
        source_path: &w.source.path,
        group: group_of(api_version),
        kind: &w.id.kind,
        namespace: w.id.namespace.as_deref(),
        name: &w.id.name,
        labels: w.object.pointer("/metadata/labels").and_then(|l| l.as_object()),
    }
}

pub fn build(model: &Model) -> Result<Plan> {
    let mut warnings = model.warnings.clone();
    let workload_facts: Vec<ObjectFacts<'_>> = (0..model.workloads.len()).map(|i| facts(model, i)).collect();

    // Per placement: selected clusters, and the first matching clause of each workload.
    let mut placement_hits: Vec<(Vec<bool>, Vec<Option<usize>>)> = Vec::new();
    for (pi, p) in model.placements.iter().enumerate() {
        let clusters = model.destinations(pi);
        if !clusters.iter().any(|x| *x) {
            warnings.push(format!("{}: placement {:?} selects no cluster", p.location, p.name));
        }
        let objects: Vec<Option<usize>> = workload_facts
            .iter()
            .map(|f| p.workloads.iter().position(|t| t.matches(f)))
            .collect();
        if !objects.iter().any(Option::is_some) {
            warnings.push(format!(
                "{}: placement {:?} selects no workload object",
                p.location, p.name
            ));
        }
        placement_hits.push((clusters, objects));
    }

    // Per customization: selected clusters and targeted workloads.
    let custom_hits: Vec<(Vec<bool>, Vec<bool>)> = model
        .customizations
        .iter()
        .map(|c| {
            let clusters = model.clusters.iter().map(|cl| c.selects_cluster(cl)).collect();
            let objects = workload_facts
                .iter()
                .map(|f| c.targets.iter().any(|t| t.matches(f)))
                .collect();
            (clusters, objects)
        })
        .collect();

    let mut clusters = Vec::with_capacity(model.clusters.len());
    for (ci, cluster) in model.clusters.iter().enumerate() {
        // Workload index → reasons, in workload order.
        let mut placed: Vec<Option<Vec<PlacedBy>>> = vec![None; model.workloads.len()];
        for (pi, (sel_clusters, sel_objects)) in placement_hits.iter().enumerate() {
            if !sel_clusters[ci] {
                continue;
            }
            for (wi, clause) in sel_objects.iter().enumerate() {
                if !model.workloads[wi].exists_for(ci) {
                    continue;
                }
                if let Some(clause) = clause {
                    placed[wi].get_or_insert_with(Vec::new).push(PlacedBy {
                        placement: pi,
                        clause: *clause,
                    });
                }
            }
        }
        let mut objects = Vec::new();
        let mut ids: HashMap<&ObjectId, usize> = HashMap::new();
        for (wi, reasons) in placed.into_iter().enumerate() {
            let Some(placed_by) = reasons else { continue };
            let w = &model.workloads[wi];
            if let Some(other) = ids.insert(&w.id, wi) {
                let first = &model.workloads[other];
                return Err(Error::at(
                    w.source.clone(),
                    format!(
                        "defined twice for this cluster: here and at {} (one identity must come from one definition)",
                        first.source
                    ),
                )
                .with_cluster(&cluster.name)
                .with_object(w.id.to_string()));
            }
            let customizations = custom_hits
                .iter()
                .enumerate()
                .filter(|(_, (cs, os))| cs[ci] && os[wi])
                .map(|(i, _)| i)
                .collect();
            objects.push(PlacedObject {
                workload: wi,
                placed_by,
                customizations,
            });
        }
        clusters.push(ClusterPlan { cluster: ci, objects });
    }
    Ok(Plan { clusters, warnings })
}

/// Short description of an object test, for `explain`.
pub fn describe_test(t: &ObjectTest) -> String {
    serde_json::to_string(t).unwrap_or_default()
}
