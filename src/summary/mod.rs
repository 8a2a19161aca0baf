//! Summaries of status files (api.md section 5): the results of each `StatusSummary`, and a
//! default summary of every placement.
//!
//! [`summarize`] reads the cluster status files (`status/clusters/<cluster>.yaml`, parsed with
//! `formats::status::parse_cluster_statuses`) together with the inventory, the placements and the
//! StatusSummary objects of the source, and returns [`Summaries`]: typed results for a
//! terminal table or `-o json`, and [`Summaries::files`], the files to write under
//! `status/summaries/`.
//!
//! # Rows and variables
//!
//! A StatusSummary has one **row** per (cluster status file, object in it) where the object's
//! `placements` holds the summary's placement and the object matches one of `targets` (all
//! objects when `targets` is left out). `targets` are the ObjectTests of
//! `Placement.spec.workloads`: `apiGroups`, `kinds`, `namespaces` and `names` are checked
//! against the status entry; `paths` and `objectSelector` against the source workload of the
//! same identity (no such workload: they do not match). Status files of clusters that are not
//! in the inventory are skipped, with a warning.
//!
//! The CEL variables of a row:
//!
//! | variable | value |
//! |---|---|
//! | `cluster` | `{name, labels, properties}` of the cluster, from the inventory (labels include `starmap.dev/cluster`) |
//! | `obj` | the rendered object from the deploy repo, from the caller's lookup; `null` when it has none |
//! | `status` | the live `.status` as collected; `{}` when there is none |
//! | `health` | `"Healthy"`, `"Progressing"`, `"Degraded"`, `"Suspended"`, `"Missing"` or `"Unknown"` |
//! | `applied` | bool: the cluster runs the deploy commit that holds this version of the object |
//! | `stale` | bool: the cluster's status is from an earlier round (the last attempt failed) |
//! | `current` | bool: the cluster runs what the deploy commit holds for it (the status file's `current`) |
//!
//! # Semantics
//!
//! - `filter` false: the row is left out. A filter that gives no bool is an error.
//! - An expression that fails on a row (no such key, wrong type, a `groupBy` value that is
//!   `null`, an aggregate value that is not a number) makes the row an **error row**: it is
//!   listed in `errors` (cluster, object, field, expression, message) and takes no part in
//!   any group or in the selected rows. Only its first failing expression is listed.
//! - `groupBy` values are strings (numbers and bools are written as CEL writes them, lists and
//!   maps as JSON). Groups are sorted by their values, column by column; a value that reads as
//!   a number sorts numerically, and before any other value.
//! - `COUNT` counts the rows of a group; `SUM`, `AVG`, `MIN`, `MAX` take an `int` or `double`
//!   (a `uint` is read as a number too). `SUM` of ints is an int (a double once any value is
//!   a double or the sum leaves the int range); `AVG` is a double; `MIN` and `MAX` keep the
//!   value as it was. Over zero rows: `COUNT` and `SUM` are 0, `AVG`, `MIN`, `MAX` null.
//! - **Zero-row groups.** Without `groupBy` there is always the one group. When every `groupBy`
//!   expression reads only `cluster`, each value it gives on any destination cluster of the
//!   placement (from the inventory, whether or not the cluster has a status file) is a group,
//!   even when no row of it is left: a region whose every row was filtered out still shows
//!   `COUNT 0`. A destination on which such an expression fails adds no group (it adds no
//!   rows either). When some `groupBy` expression reads anything else, only groups with rows
//!   exist.
//! - `select`: one row per (cluster, object) with `cluster`, `kind`, `namespace`, `name`
//!   and the named columns, sorted by cluster, then by object (API group, kind, namespace,
//!   name).
//! - `limit` (default 100) caps the groups or the selected rows; `truncated` says how many
//!   more there were. At most [`ERRORS_LIMIT`] error rows are listed; `errorCount` counts all.
//!
//! # Default summary per placement
//!
//! For every placement, over its destination clusters (from the inventory): how many there
//! are; how many have each health, a cluster's health for the placement being the worst health
//! of the placement's objects in its status file, in Argo CD's order ([`HEALTH_ORDER`]:
//! Healthy < Suspended < Progressing < Missing < Degraded < Unknown); how many are `current`
//! for the placement (it has objects of the placement and every one is `applied`); how many
//! have a `stale` status file; how many have none (`noStatus`, counted Unknown); and the
//! clusters that are not Healthy, worst first, then by name, with their worst object and its
//! message, up to [`PLACEMENT_LIST_LIMIT`], plus how many more (`truncated`). A status file
//! that lists no object of the placement makes the cluster Unknown for it.
//!
//! # Speed
//!
//! Evaluating CEL costs microseconds, so an expression runs only as often as its inputs
//! change: one that reads only `health`, `applied`, `stale`, `current` (or nothing) once per
//! value tuple for the whole fleet; one that also reads `cluster` once per cluster and tuple;
//! only one that reads `status` or `obj` once per row. CEL values of a cluster are built once
//! per cluster, and only the fields the expressions read are converted. Clusters are
//! summarized in parallel (rayon); the results do not depend on the number of threads.
//! `formats::status::parse_cluster_status` reads files in the emitter's style with a reader of
//! exactly that style. `cargo bench --bench status` measures 10,000 clusters × 20 objects.

mod eval;
mod placement;

use serde::Serialize;
use serde_json::{Map, Value as Json, json};

use crate::error::{Error, Result};
use crate::formats::status::{ClusterStatus, ObjectStatus};
use crate::formats::{PLACEMENT_SUMMARIES_DIR, SUMMARIES_DIR};
use crate::health::Health;
use crate::model::{Cluster, Model, Placement, Workload};
use crate::spec::{StatusSummary, SummaryMode};

/// Most error rows listed per summary (all are counted).
pub const ERRORS_LIMIT: usize = 100;
/// Most non-healthy clusters listed in a placement's default summary.
pub const PLACEMENT_LIST_LIMIT: usize = 20;
/// What [`summarize`] reads besides the status files; [`Inputs::from_model`] takes them from
/// a loaded source.
#[derive(Debug, Clone, Copy)]
pub struct Inputs<'a> {
    /// The inventory: `cluster` variables and placement destinations.
    pub clusters: &'a [Cluster],
    pub placements: &'a [Placement],
    pub summaries: &'a [StatusSummary],
    /// Source workloads, for `targets` that test `paths` or `objectSelector`.
    pub workloads: &'a [Workload],
}

impl<'a> Inputs<'a> {
    pub fn from_model(model: &'a Model) -> Self {
        Inputs {
            clusters: &model.clusters,
            placements: &model.placements,
            summaries: &model.summaries,
            workloads: &model.workloads,
        }
    }
}

/// The rendered object (from the deploy repo) for a cluster's status entry, for the `obj`
/// variable. Called only for summaries whose expressions read `obj`, at most once per row.
pub type ObjectLookup<'a> = dyn Fn(&str, &ObjectStatus) -> Option<Json> + Sync + 'a;

/// An [`ObjectLookup`] that has no objects (`obj` is null).
pub fn no_objects(_cluster: &str, _object: &ObjectStatus) -> Option<Json> {
    None
}

/// Everything [`summarize`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Summaries {
    /// One per StatusSummary, by name.
    pub summaries: Vec<SummaryResult>,
    /// One per placement, by name.
    pub placements: Vec<PlacementSummary>,
    /// Status files that were skipped, and why.
    pub warnings: Vec<String>,
}

/// The result of one StatusSummary: a table.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryResult {
    pub name: String,
    pub placement: String,
    pub mode: SummaryMode,
    /// Header of the table: groupBy then aggregate names, or cluster, kind, namespace, name
    /// then select names.
    pub columns: Vec<String>,
    /// At most `limit` rows, each as long as `columns`.
    pub rows: Vec<Vec<Json>>,
    /// Rows (cluster, object) of the placement that match `targets`.
    pub objects: usize,
    /// Of those, the rows that passed the filter and evaluated without error.
    pub matched: usize,
    /// Groups or rows beyond `limit`.
    pub truncated: usize,
    /// The first [`ERRORS_LIMIT`] error rows, in cluster and object order.
    pub errors: Vec<RowError>,
    /// All error rows.
    pub error_count: usize,
}

/// A row whose expression failed: reported, and left out of groups and selected rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RowError {
    pub cluster: String,
    /// `Kind/namespace/name` or `Kind/name`.
    pub object: String,
    /// `filter`, `groupBy[0] (region)`, `aggregate[1] (ready)`, `select[0] (image)`.
    pub field: String,
    pub expression: String,
    pub message: String,
}

/// The default summary of one placement.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementSummary {
    pub placement: String,
    /// Destination clusters.
    pub clusters: usize,
    /// Clusters per health, in [`HEALTH_ORDER`]; every health is there, zero or not.
    pub health: Vec<(Health, usize)>,
    /// Clusters where every object of the placement is applied.
    pub current: usize,
    /// Clusters whose status file is stale.
    pub stale: usize,
    /// Clusters without a status file (counted Unknown).
    pub no_status: usize,
    /// Clusters that are not Healthy, worst first, then by name; at most
    /// [`PLACEMENT_LIST_LIMIT`].
    pub not_healthy: Vec<ClusterHealth>,
    /// Non-healthy clusters beyond the list.
    pub truncated: usize,
}

/// A cluster's health for one placement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterHealth {
    pub cluster: String,
    pub health: Health,
    /// The worst object (the first of them by identity); none without objects.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    pub message: String,
    pub current: bool,
    pub stale: bool,
}

impl Summaries {
    /// The files to write into the deploy repo, sorted by path:
    /// `status/summaries/<summary>.yaml` and `status/summaries/placements/<placement>.yaml`.
    /// Deterministic: no times, rows and keys in a fixed order.
    pub fn files(&self) -> Vec<(String, Json)> {
        let mut files: Vec<(String, Json)> = self
            .summaries
            .iter()
            .map(|s| (s.path(), s.to_json()))
            .chain(self.placements.iter().map(|p| (p.path(), p.to_json())))
            .collect();
        files.sort_by(|a, b| a.0.cmp(&b.0));
        files
    }

    /// Everything as one JSON document (for `-o json`).
    pub fn to_json(&self) -> Json {
        json!({
            "summaries": self.summaries.iter().map(SummaryResult::to_json).collect::<Vec<_>>(),
            "placements": self.placements.iter().map(PlacementSummary::to_json).collect::<Vec<_>>(),
            "warnings": self.warnings,
        })
    }
}

impl SummaryResult {
    pub fn path(&self) -> String {
        format!("{SUMMARIES_DIR}/{}.yaml", self.name)
    }

    /// The file's content: rows as mappings in column order.
    pub fn to_json(&self) -> Json {
        let rows: Vec<Json> = self
            .rows
            .iter()
            .map(|r| {
                Json::Object(
                    self.columns
                        .iter()
                        .cloned()
                        .zip(r.iter().cloned())
                        .collect::<Map<_, _>>(),
                )
            })
            .collect();
        json!({
            "summary": self.name,
            "placement": self.placement,
            "mode": self.mode,
            "objects": self.objects,
            "matched": self.matched,
            "columns": self.columns,
            "rows": rows,
            "truncated": self.truncated,
            "errorCount": self.error_count,
            "errors": self.errors,
        })
    }
}

impl PlacementSummary {
    pub fn path(&self) -> String {
        format!("{PLACEMENT_SUMMARIES_DIR}/{}.yaml", self.placement)
    }

    /// How many destination clusters have health `h`.
    pub fn count(&self, h: Health) -> usize {
        self.health.iter().find(|(x, _)| *x == h).map_or(0, |(_, n)| *n)
    }

    pub fn to_json(&self) -> Json {
        let health: Map<String, Json> = self
            .health
            .iter()
            .map(|(h, n)| (h.as_str().to_string(), Json::from(*n)))
            .collect();
        json!({
            "placement": self.placement,
            "clusters": self.clusters,
            "health": health,
            "current": self.current,
            "stale": self.stale,
            "noStatus": self.no_status,
            "notHealthy": self.not_healthy,
            "truncated": self.truncated,
        })
    }
}

/// Summarize the status files `statuses` (any order; one per cluster): every StatusSummary
/// of `inputs`, and the default summary of every placement. `obj` supplies the `obj`
/// variable; pass [`no_objects`] when no deploy repo is at hand.
///
/// Failing expressions do not fail the call: they make error rows (see the module docs).
/// Errors: two status files for one cluster, or a summary whose placement is not in
/// `inputs` (which `source::load` already rejects).
///
/// ```no_run
/// # use starmap::summary::{summarize, Inputs, no_objects};
/// # fn f(model: &starmap::Model, statuses: &[starmap::formats::status::ClusterStatus]) -> starmap::Result<()> {
/// let summaries = summarize(&Inputs::from_model(model), statuses, &no_objects)?;
/// for (path, value) in summaries.files() {
///     println!("{path}:\n{}", starmap::yaml::to_yaml_string(&value));
/// }
/// # Ok(()) }
/// ```
pub fn summarize(inputs: &Inputs<'_>, statuses: &[ClusterStatus], obj: &ObjectLookup<'_>) -> Result<Summaries> {
    for s in inputs.summaries {
        if !inputs.placements.iter().any(|p| p.name == s.spec.placement) {
            return Err(Error::at(
                s.location.clone(),
                format!(
                    "StatusSummary {:?}: placement {:?} does not exist",
                    s.name, s.spec.placement
                ),
            ));
        }
    }
    let mut sorted: Vec<&ClusterStatus> = statuses.iter().collect();
    sorted.sort_by(|a, b| a.cluster.cmp(&b.cluster));
    if let Some(w) = sorted.windows(2).find(|w| w[0].cluster == w[1].cluster) {
        return Err(Error::msg(format!("two status files for cluster {:?}", w[0].cluster)));
    }
    let mut warnings = Vec::new();
    let mut known: Vec<(&ClusterStatus, &Cluster)> = Vec::with_capacity(sorted.len());
    for cs in sorted {
        match find_cluster(inputs.clusters, &cs.cluster) {
            Some(c) => known.push((cs, c)),
            None => warnings.push(format!(
                "{}: cluster {:?} is not in the inventory; its status is not summarized",
                ClusterStatus::path(&cs.cluster),
                cs.cluster
            )),
        }
    }
    let summaries = eval::run(inputs, &known, obj);
    let placements = placement::run(inputs, &known);
    Ok(Summaries {
        summaries,
        placements,
        warnings,
    })
}

/// The cluster named `name` of an inventory sorted by name (as the model keeps it), or of
/// any inventory.
fn find_cluster<'a>(clusters: &'a [Cluster], name: &str) -> Option<&'a Cluster> {
    match clusters.binary_search_by(|c| c.name.as_str().cmp(name)) {
        Ok(i) => Some(&clusters[i]),
        Err(_) => clusters.iter().find(|c| c.name == name),
    }
}

/// `Kind/namespace/name` or `Kind/name`, as `ObjectId` shows objects.
fn object_name(o: &ObjectStatus) -> String {
    match &o.namespace {
        Some(ns) => format!("{}/{ns}/{}", o.kind, o.name),
        None => format!("{}/{}", o.kind, o.name),
    }
}

/// Sort key of an object: API group, kind, namespace, name.
fn object_key(o: &ObjectStatus) -> (&str, &str, &str, &str) {
    (
        crate::model::group_of(&o.api_version),
        &o.kind,
        o.namespace.as_deref().unwrap_or(""),
        &o.name,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Location;
    use crate::spec::{ClusterSpec, LabelSelector, ObjectTest, PlacementSpec, StatusSummarySpec};
    use std::collections::BTreeMap;

    fn cluster(name: &str, region: &str) -> Cluster {
        let labels = BTreeMap::from([
            ("region".to_string(), region.to_string()),
            (crate::spec::CLUSTER_NAME_LABEL.to_string(), name.to_string()),
        ]);
        Cluster {
            name: name.into(),
            labels,
            annotations: BTreeMap::new(),
            spec: ClusterSpec::default(),
            location: Location::new("inventory.yaml", 1),
        }
    }

    fn placement(name: &str) -> Placement {
        let test = ObjectTest {
            kinds: Some(vec!["ConfigMap".into()]),
            ..Default::default()
        };
        Placement {
            name: name.into(),
            spec: PlacementSpec {
                cluster_selectors: vec![LabelSelector::default()],
                clusters: vec![],
                workloads: vec![test.clone()],
                rollout: None,
                suspend: false,
            },
            workloads: vec![test.compile().unwrap()],
            location: Location::new("placement.yaml", 1),
        }
    }

    fn status(cluster: &str, objects: &[(&str, Health, bool)]) -> ClusterStatus {
        ClusterStatus {
            cluster: cluster.into(),
            reachable: true,
            stale: false,
            last_seen: None,
            error: None,
            source: "kubeconfig".into(),
            deploy_commit: None,
            applied_revision: None,
            current: true,
            sync: None,
            objects: objects
                .iter()
                .map(|(name, health, applied)| ObjectStatus {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    namespace: Some("ns".into()),
                    name: name.to_string(),
                    placements: vec!["p".into()],
                    health: *health,
                    message: format!("{name} is {health}"),
                    applied: *applied,
                    generation: None,
                    observed_generation: None,
                    status: Some(serde_json::json!({"n": name.len()})),
                })
                .collect(),
        }
    }

    fn compile(spec: serde_json::Value) -> StatusSummary {
        let spec: StatusSummarySpec = serde_json::from_value(spec).unwrap();
        StatusSummary::compile("s", &spec, Location::new("s.yaml", 1)).unwrap()
    }

    #[test]
    fn placement_list_is_worst_first_and_limited() {
        let clusters: Vec<Cluster> = (0..25).map(|i| cluster(&format!("c{i:02}"), "r")).collect();
        let statuses: Vec<ClusterStatus> = (0..24)
            .map(|i| {
                let h = if i % 2 == 0 {
                    Health::Degraded
                } else {
                    Health::Suspended
                };
                status(
                    &format!("c{i:02}"),
                    &[("a", Health::Healthy, true), ("b", h, i % 3 != 0)],
                )
            })
            .collect();
        let placements = [placement("p")];
        let inputs = Inputs {
            clusters: &clusters,
            placements: &placements,
            summaries: &[],
            workloads: &[],
        };
        let out = summarize(&inputs, &statuses, &no_objects).unwrap();
        let p = &out.placements[0];
        assert_eq!(p.clusters, 25);
        assert_eq!(
            (
                p.count(Health::Degraded),
                p.count(Health::Suspended),
                p.count(Health::Unknown)
            ),
            (12, 12, 1)
        );
        assert_eq!(p.current, 16, "objects of clusters 0, 3, 6, ... are not all applied");
        assert_eq!(p.no_status, 1);
        assert_eq!(p.not_healthy.len(), PLACEMENT_LIST_LIMIT);
        assert_eq!(p.truncated, 5);
        let first: Vec<(&str, Health)> = p.not_healthy[..3]
            .iter()
            .map(|c| (c.cluster.as_str(), c.health))
            .collect();
        assert_eq!(
            first,
            [
                ("c24", Health::Unknown),
                ("c00", Health::Degraded),
                ("c02", Health::Degraded)
            ]
        );
        assert_eq!(p.not_healthy[1].object.as_deref(), Some("ConfigMap/ns/b"));
        assert_eq!(p.not_healthy[19].health, Health::Suspended);
    }

    #[test]
    fn memoized_expressions_see_each_rows_health_and_applied() {
        let clusters = vec![cluster("a", "east"), cluster("b", "west")];
        let statuses = vec![
            status(
                "a",
                &[
                    ("x", Health::Healthy, true),
                    ("y", Health::Degraded, true),
                    ("z", Health::Degraded, false),
                ],
            ),
            status("b", &[("x", Health::Healthy, false), ("y", Health::Missing, true)]),
        ];
        let placements = [placement("p")];
        // Per cluster and tuple (groupBy), per tuple (filter), per row (aggregate).
        let summaries = [compile(serde_json::json!({
            "placement": "p",
            "filter": "health != 'Missing' || current",
            "groupBy": [{"name": "k", "expr": "cluster.name + ':' + health + ':' + (applied ? 'true' : 'false')"}],
            "aggregate": [{"name": "n", "op": "COUNT"}, {"name": "len", "op": "SUM", "expr": "status.n"}]
        }))];
        let inputs = Inputs {
            clusters: &clusters,
            placements: &placements,
            summaries: &summaries,
            workloads: &[],
        };
        let out = summarize(&inputs, &statuses, &no_objects).unwrap();
        let got: Vec<(String, Json, Json)> = out.summaries[0]
            .rows
            .iter()
            .map(|r| (r[0].as_str().unwrap().to_string(), r[1].clone(), r[2].clone()))
            .collect();
        let want = [
            ("a:Degraded:false", 1, 1),
            ("a:Degraded:true", 1, 1),
            ("a:Healthy:true", 1, 1),
            ("b:Healthy:false", 1, 1),
            ("b:Missing:true", 1, 1),
        ];
        let want: Vec<(String, Json, Json)> = want
            .iter()
            .map(|(k, n, l)| (k.to_string(), Json::from(*n), Json::from(*l)))
            .collect();
        assert_eq!(got, want);
        // The same with `current` false drops the Missing row: the filter's table is per tuple.
        let mut statuses = statuses;
        statuses[1].current = false;
        let out = summarize(&inputs, &statuses, &no_objects).unwrap();
        assert_eq!(out.summaries[0].rows.len(), 4);
        assert_eq!(out.summaries[0].matched, 4);
    }

    #[test]
    fn error_rows_are_counted_beyond_the_list() {
        let clusters: Vec<Cluster> = (0..3).map(|i| cluster(&format!("c{i}"), "r")).collect();
        let names: Vec<String> = (0..60).map(|i| format!("o{i:02}")).collect();
        let objects: Vec<(&str, Health, bool)> = names.iter().map(|n| (n.as_str(), Health::Healthy, true)).collect();
        let statuses: Vec<ClusterStatus> = clusters.iter().map(|c| status(&c.name, &objects)).collect();
        let placements = [placement("p")];
        let summaries = [compile(serde_json::json!({
            "placement": "p",
            "select": [{"name": "v", "expr": "status.missing"}]
        }))];
        let inputs = Inputs {
            clusters: &clusters,
            placements: &placements,
            summaries: &summaries,
            workloads: &[],
        };
        let out = summarize(&inputs, &statuses, &no_objects).unwrap();
        let s = &out.summaries[0];
        assert_eq!((s.error_count, s.errors.len(), s.matched), (180, ERRORS_LIMIT, 0));
        assert_eq!(
            (s.errors[0].cluster.as_str(), s.errors[0].object.as_str()),
            ("c0", "ConfigMap/ns/o00")
        );
        assert_eq!(s.errors[99].cluster, "c1");
    }

    #[test]
    fn duplicate_status_files_and_unknown_placements_are_errors() {
        let clusters = vec![cluster("a", "r")];
        let placements = [placement("p")];
        let inputs = Inputs {
            clusters: &clusters,
            placements: &placements,
            summaries: &[],
            workloads: &[],
        };
        let twice = vec![status("a", &[]), status("a", &[])];
        assert!(summarize(&inputs, &twice, &no_objects).is_err());
        let mut s = compile(serde_json::json!({"placement": "p", "aggregate": [{"name": "n", "op": "COUNT"}]}));
        s.spec.placement = "gone".into();
        let summaries = [s];
        let inputs = Inputs {
            summaries: &summaries,
            ..inputs
        };
        let e = summarize(&inputs, &[], &no_objects).unwrap_err();
        assert!(e.to_string().contains("\"gone\""), "{e}");
    }
}
