//! The dashboard's pages: server-rendered HTML with inline CSS and one small script (no fonts,
//! scripts or stylesheets from elsewhere: hubs are often air-gapped). Every value is
//! HTML-escaped by minijinja's auto-escaping.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use minijinja::{AutoEscape, Environment};
use serde_json::{Value, json};

use super::{ClusterView, Fleet};
use crate::error::{Error, Result};
use crate::health::{HEALTH_ORDER, Health};

const TEMPLATES: &[(&str, &str)] = &[
    ("layout.html", include_str!("../../templates/dashboard/layout.html")),
    ("overview.html", include_str!("../../templates/dashboard/overview.html")),
    ("cluster.html", include_str!("../../templates/dashboard/cluster.html")),
    (
        "cluster-body.html",
        include_str!("../../templates/dashboard/cluster-body.html"),
    ),
    (
        "placement.html",
        include_str!("../../templates/dashboard/placement.html"),
    ),
];

/// Where links point: the server's paths, or anchors within one exported file.
pub struct Links {
    pub root: &'static str,
    pub cluster: &'static str,
    pub placement: &'static str,
}

/// The server's pages: `/`, `/clusters/<name>`, `/placements/<name>`.
pub const SERVED: Links = Links {
    root: "/",
    cluster: "/clusters/",
    placement: "/placements/",
};

/// One self-contained file: clusters are sections of it, placements rows of its table.
pub const EXPORTED: Links = Links {
    root: "#",
    cluster: "#cluster-",
    placement: "#placement-",
};

/// The map's grouping and filtering (`?group=region&label=tier=edge`).
#[derive(Debug, Default, Clone)]
pub struct View {
    /// Group clusters by this label; `None`: `region` when clusters have it, else no groups.
    pub group: Option<String>,
    /// Only clusters with this `key=value` label.
    pub label: Option<String>,
}

/// The templates, compiled once per process (every page of the controller renders one).
fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        for (name, text) in TEMPLATES {
            // The templates are part of the binary and tested: a broken one is a bug.
            env.add_template(name, text).expect("dashboard templates compile");
        }
        env
    })
}

/// `template` with what `layout.html` shows on every page, plus the page's own `fields`.
fn render(
    template: &str,
    fleet: &Fleet,
    links: &Links,
    title: &str,
    generated: Option<&str>,
    fields: Value,
) -> Result<String> {
    let mut ctx = json!({
        "title": title,
        "root": links.root,
        "cluster_link": links.cluster,
        "placement_link": links.placement,
        "commit": short(&fleet.commit),
        "clusters": fleet.clusters.len(),
        "generated": generated,
    });
    if let (Some(ctx), Value::Object(fields)) = (ctx.as_object_mut(), fields) {
        ctx.extend(fields);
    }
    environment()
        .get_template(template)
        .and_then(|t| t.render(minijinja::Value::from(minijinja::value::Serde(&ctx))))
        .map_err(|e| Error::msg(format!("dashboard: {e}")))
}

fn short(commit: &Option<String>) -> Option<String> {
    commit.as_ref().map(|c| c.chars().take(12).collect())
}

/// The cluster's facts and objects. `healthy_objects`: list the Healthy ones too (the
/// export lists only the others, to stay small at 10,000 clusters).
fn cluster_context(c: &ClusterView, healthy_objects: bool) -> Value {
    let s = c.status.as_ref();
    let objects: Vec<Value> = s
        .map(|s| {
            s.objects
                .iter()
                .filter(|o| healthy_objects || o.health != Health::Healthy)
                .map(|o| json!({"kind": o.kind, "namespace": o.namespace, "name": o.name, "health": o.health, "message": o.message}))
                .collect()
        })
        .unwrap_or_default();
    let total = s.map_or(0, |s| s.objects.len());
    json!({
        "name": c.name,
        "health": c.health(),
        "stale": c.stale(),
        "labels": c.labels,
        "placements": c.placements,
        "appliedRevision": s.and_then(|s| s.applied_revision.clone()),
        "current": s.is_some_and(|s| s.current),
        "lastSeen": s.and_then(|s| s.last_seen.clone()),
        "error": s.and_then(|s| s.error.clone()).unwrap_or_default(),
        "sync": s.and_then(|s| s.sync.as_ref()).map(|y| json!({"object": y.object, "health": y.health, "message": y.message})),
        "objects": objects,
        "hidden": total - objects.len(),
    })
}

/// Whether the export gives the cluster a section: not Healthy, stale, or without status. A
/// Healthy cluster's cell says all there is (at 10,000 clusters, sections for all of them made
/// a 9 MiB file that took Chromium 6.6 s to load).
fn detailed(c: &ClusterView) -> bool {
    c.status.is_none() || c.stale() || c.health() != Health::Healthy
}

/// A placement summary's row: counts in health order and the stacked bar's segments.
fn placement_row(p: &Value) -> Value {
    let total = p["clusters"].as_u64().unwrap_or(0).max(1) as f64;
    let counts: Vec<u64> = HEALTH_ORDER
        .iter()
        .map(|h| p["health"][h.as_str()].as_u64().unwrap_or(0))
        .collect();
    let segments: Vec<Value> = HEALTH_ORDER
        .iter()
        .zip(&counts)
        .filter(|(_, n)| **n > 0)
        .map(|(h, n)| json!({"health": h.as_str(), "count": n, "percent": format!("{:.2}", *n as f64 * 100.0 / total)}))
        .collect();
    json!({
        "name": p["placement"],
        "clusters": p["clusters"],
        "current": p["current"],
        "stale": p["stale"],
        "noStatus": p["noStatus"],
        "counts": counts,
        "segments": segments,
    })
}

/// The overview: rollouts, placements, the map of every cluster. `details`: append every
/// cluster's section (the export).
pub fn overview(fleet: &Fleet, view: &View, links: &Links, generated: Option<&str>, details: bool) -> Result<String> {
    let label_keys: BTreeSet<&str> = fleet
        .clusters
        .values()
        .flat_map(|c| c.labels.keys().map(String::as_str))
        .collect();
    let group = match &view.group {
        Some(g) if g.is_empty() => None,
        Some(g) => Some(g.clone()),
        None => label_keys.contains("region").then(|| "region".to_string()),
    };
    let wanted = view.label.as_deref().and_then(|l| l.split_once('='));
    let mut groups: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let mut shown: Vec<&ClusterView> = vec![];
    for c in fleet.clusters.values() {
        if let Some((k, v)) = wanted
            && c.labels.get(k).map(String::as_str) != Some(v)
        {
            continue;
        }
        let key = group
            .as_ref()
            .map(|g| c.labels.get(g).cloned().unwrap_or_default())
            .unwrap_or_default();
        // The export has a section only for the clusters worth one (see `detailed`).
        let linked = !details || detailed(c);
        groups.entry(key).or_default().push(json!({
            "name": c.name,
            "health": c.health(),
            "stale": c.stale(),
            "reason": c.reason(),
            "linked": linked,
        }));
        shown.push(c);
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|(value, cells)| json!({"value": value, "cells": cells}))
        .collect();
    let details: Vec<Value> = if details {
        shown
            .iter()
            .filter(|c| detailed(c))
            .map(|c| cluster_context(c, false))
            .collect()
    } else {
        vec![]
    };
    render(
        "overview.html",
        fleet,
        links,
        "Fleet",
        generated,
        json!({
            "healths": HEALTH_ORDER.iter().map(|h| h.as_str()).collect::<Vec<_>>(),
            "rollouts": fleet.rollouts.values().collect::<Vec<_>>(),
            "placements": fleet.placements.iter().map(placement_row).collect::<Vec<_>>(),
            "artifacts": fleet.artifacts,
            "label_keys": label_keys,
            "group": group,
            "label": view.label.clone().unwrap_or_default(),
            "groups": groups,
            // The export has no server to regroup or filter by label.
            "served": links.root == SERVED.root,
            "details": details,
        }),
    )
}

/// A cluster's page; `None` for a cluster the deploy repo does not have.
pub fn cluster(fleet: &Fleet, name: &str, links: &Links) -> Option<Result<String>> {
    let c = fleet.clusters.get(name)?;
    Some(render(
        "cluster.html",
        fleet,
        links,
        name,
        None,
        json!({
            "c": cluster_context(c, true),
        }),
    ))
}

/// A placement's page; `None` for a placement without a summary.
pub fn placement(fleet: &Fleet, name: &str, links: &Links) -> Option<Result<String>> {
    let data = fleet.placement_json(name)?;
    Some(render(
        "placement.html",
        fleet,
        links,
        name,
        None,
        json!({
            "p": placement_row(&data["summary"]),
            "cells": fleet
                .clusters
                .values()
                .map(|c| (c.name.clone(), json!({"health": c.health(), "stale": c.stale()})))
                .collect::<serde_json::Map<String, Value>>(),
            "rollout": data["rollout"],
            "members": data["clusters"],
        }),
    ))
}
