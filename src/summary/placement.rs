//! The default summary of each placement: health of its destination clusters (see the
//! parent module for the rules).

use rayon::prelude::*;

use super::{ClusterHealth, Inputs, PLACEMENT_LIST_LIMIT, PlacementSummary, object_key, object_name};
use crate::formats::status::ClusterStatus;
use crate::health::{HEALTH_ORDER, Health, severity};
use crate::model::{Cluster, Placement};

/// One summary per placement of `inputs`, by name. `known` is sorted by cluster.
pub(super) fn run(inputs: &Inputs<'_>, known: &[(&ClusterStatus, &Cluster)]) -> Vec<PlacementSummary> {
    let mut placements: Vec<&Placement> = inputs.placements.iter().collect();
    placements.sort_by(|a, b| a.name.cmp(&b.name));
    placements
        .into_iter()
        .map(|p| summarize(p, inputs.clusters, known))
        .collect()
}

fn status_of<'a>(known: &[(&'a ClusterStatus, &Cluster)], cluster: &str) -> Option<&'a ClusterStatus> {
    known
        .binary_search_by(|(cs, _)| cs.cluster.as_str().cmp(cluster))
        .ok()
        .map(|i| known[i].0)
}

fn summarize(p: &Placement, clusters: &[Cluster], known: &[(&ClusterStatus, &Cluster)]) -> PlacementSummary {
    let destinations: Vec<&Cluster> = clusters.iter().filter(|c| p.selects(c)).collect();
    let mut entries: Vec<(ClusterHealth, bool)> = destinations
        .par_iter()
        .map(|c| cluster_health(p, c, status_of(known, &c.name)))
        .collect();
    let mut summary = PlacementSummary {
        placement: p.name.clone(),
        clusters: destinations.len(),
        health: HEALTH_ORDER.iter().map(|h| (*h, 0)).collect(),
        current: 0,
        stale: 0,
        no_status: 0,
        not_healthy: Vec::new(),
        truncated: 0,
    };
    for (e, has_status) in &entries {
        if let Some(slot) = summary.health.iter_mut().find(|(h, _)| *h == e.health) {
            slot.1 += 1;
        }
        summary.current += usize::from(e.current);
        summary.stale += usize::from(e.stale);
        summary.no_status += usize::from(!has_status);
    }
    entries.retain(|(e, _)| e.health != Health::Healthy);
    entries.sort_by(|(a, _), (b, _)| {
        severity(b.health)
            .cmp(&severity(a.health))
            .then_with(|| a.cluster.cmp(&b.cluster))
    });
    summary.truncated = entries.len().saturating_sub(PLACEMENT_LIST_LIMIT);
    summary.not_healthy = entries.into_iter().take(PLACEMENT_LIST_LIMIT).map(|(e, _)| e).collect();
    summary
}

/// A destination's health for the placement, and whether it has a status file.
fn cluster_health(p: &Placement, c: &Cluster, status: Option<&ClusterStatus>) -> (ClusterHealth, bool) {
    let Some(cs) = status else {
        let entry = ClusterHealth {
            cluster: c.name.clone(),
            health: Health::Unknown,
            object: None,
            message: "no status file".into(),
            current: false,
            stale: false,
        };
        return (entry, false);
    };
    let mut objects: Vec<_> = cs.objects.iter().filter(|o| o.placements.contains(&p.name)).collect();
    objects.sort_by(|a, b| object_key(a).cmp(&object_key(b)));
    // The first of the worst, in identity order.
    let worst = objects
        .iter()
        .copied()
        .fold(None, |w: Option<&crate::formats::status::ObjectStatus>, o| match w {
            Some(w) if severity(w.health) >= severity(o.health) => Some(w),
            _ => Some(o),
        });
    let entry = match worst {
        None => ClusterHealth {
            cluster: c.name.clone(),
            health: Health::Unknown,
            object: None,
            message: match &cs.error {
                Some(e) => format!("no object of this placement in the status file: {e}"),
                None => "no object of this placement in the status file".into(),
            },
            current: false,
            stale: cs.stale,
        },
        Some(w) => ClusterHealth {
            cluster: c.name.clone(),
            health: w.health,
            object: Some(object_name(w)),
            message: w.message.clone(),
            current: objects.iter().all(|o| o.applied),
            stale: cs.stale,
        },
    };
    (entry, true)
}
