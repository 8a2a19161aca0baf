//! StatusSummary objects and the default placement summaries, offline: a small source repo
//! and hand-written status files under `tests/data/status/` (see its README for what each
//! cluster reports), summarized through the library; and bad StatusSummary objects, which
//! must fail `starmap validate` with one `error: <file>:<line>: ...` line.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};
use starmap::Model;
use starmap::formats::status::{ClusterStatus, ObjectStatus, parse_cluster_statuses};
use starmap::health::Health;
use starmap::source::{Inventory, SourceFile, SourceTree, load_model};
use starmap::summary::{Inputs, PlacementSummary, SummaryResult, no_objects, summarize};

fn source_dir() -> PathBuf {
    common::data("status/source")
}

fn tree(dir: &Path) -> SourceTree {
    SourceTree::open(dir.to_str().unwrap()).unwrap()
}

/// The test source, with extra files (path, text) added.
fn model_with(extra: &[(&str, &str)]) -> starmap::Result<Model> {
    let mut t = tree(&source_dir());
    for (path, text) in extra {
        t.files.push(SourceFile {
            path: path.to_string(),
            text: text.to_string(),
        });
    }
    t.files.sort_by(|a, b| a.path.cmp(&b.path));
    load_model(&t, &Inventory::SourceOnly)
}

fn statuses() -> Vec<ClusterStatus> {
    let dir = common::data("status/clusters");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            (
                format!("status/clusters/{}", p.file_name().unwrap().to_string_lossy()),
                std::fs::read_to_string(&p).unwrap(),
            )
        })
        .collect();
    files.sort();
    parse_cluster_statuses(&files).unwrap()
}

fn summary<'a>(all: &'a [SummaryResult], name: &str) -> &'a SummaryResult {
    all.iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no summary {name}"))
}

/// Rows as mappings, the way the file writes them.
fn rows(s: &SummaryResult) -> Vec<Value> {
    s.to_json()["rows"].as_array().unwrap().clone()
}

#[test]
fn groups_with_every_aggregate_and_a_reported_error_row() {
    let model = model_with(&[]).unwrap();
    let out = summarize(&Inputs::from_model(&model), &statuses(), &no_objects).unwrap();
    let s = summary(&out.summaries, "by-region");
    assert_eq!(
        s.columns,
        ["region", "rows", "ready", "avgReady", "minReady", "maxReady"]
    );
    assert_eq!(
        rows(s),
        vec![
            json!({"region": "east", "rows": 2, "ready": 3, "avgReady": 1.5, "minReady": 1, "maxReady": 2}),
            // north: store-d has no status file; west: store-c's only row failed.
            json!({"region": "north", "rows": 0, "ready": 0, "avgReady": null, "minReady": null, "maxReady": null}),
            json!({"region": "west", "rows": 0, "ready": 0, "avgReady": null, "minReady": null, "maxReady": null}),
        ]
    );
    assert_eq!((s.objects, s.matched, s.truncated), (3, 2, 0));
    // store-c's Deployment has no readyReplicas: reported, not dropped silently.
    assert_eq!(s.error_count, 1);
    let e = &s.errors[0];
    assert_eq!(e.cluster, "store-c");
    assert_eq!(e.object, "Deployment/web/web");
    assert_eq!(e.field, "aggregate[1] (ready)");
    assert_eq!(e.expression, "status.readyReplicas");
    assert!(e.message.contains("readyReplicas"), "{}", e.message);
    // The cluster that is not in the inventory is skipped, and said so.
    assert_eq!(out.warnings.len(), 1, "{:?}", out.warnings);
    assert!(out.warnings[0].contains("store-zz"), "{:?}", out.warnings);
}

#[test]
fn select_rows_sorted_by_cluster_then_object_with_limit() {
    let model = model_with(&[]).unwrap();
    let out = summarize(&Inputs::from_model(&model), &statuses(), &no_objects).unwrap();
    let s = summary(&out.summaries, "not-healthy");
    assert_eq!(
        s.columns,
        ["cluster", "kind", "namespace", "name", "health", "store", "stale"]
    );
    // store-c has two: the Service (core group) before the Deployment (apps); limit 2.
    assert_eq!(
        rows(s),
        vec![
            json!({"cluster": "store-b", "kind": "Deployment", "namespace": "web", "name": "web",
                   "health": "Progressing", "store": "0002", "stale": false}),
            json!({"cluster": "store-c", "kind": "Service", "namespace": "web", "name": "web",
                   "health": "Missing", "store": "0003", "stale": true}),
        ]
    );
    assert_eq!((s.objects, s.matched, s.truncated, s.error_count), (9, 3, 1, 0));
}

#[test]
fn zero_row_groups_for_every_destination_value() {
    let model = model_with(&[]).unwrap();
    let out = summarize(&Inputs::from_model(&model), &statuses(), &no_objects).unwrap();
    let s = summary(&out.summaries, "nothing-left");
    assert_eq!(s.matched, 0);
    assert_eq!(
        rows(s),
        vec![
            json!({"region": "east", "rows": 0, "ready": 0, "maxReady": null}),
            json!({"region": "north", "rows": 0, "ready": 0, "maxReady": null}),
            json!({"region": "west", "rows": 0, "ready": 0, "maxReady": null}),
        ],
        "hub-1 is in east too but no destination; every store region is a group"
    );
}

#[test]
fn cluster_properties_and_source_facts_in_targets() {
    let model = model_with(&[]).unwrap();
    let out = summarize(&Inputs::from_model(&model), &statuses(), &no_objects).unwrap();
    let s = summary(&out.summaries, "by-replicas");
    // Deployment and Service (label app: web), applied, on clusters with replicas >= 2:
    // store-a (2) both; store-b (3) only the Service (its Deployment is not applied).
    assert_eq!(
        rows(s),
        vec![
            json!({"replicas": "2", "health": "Healthy", "objects": 2}),
            json!({"replicas": "3", "health": "Healthy", "objects": 1}),
        ]
    );
    assert_eq!(s.objects, 6, "the ConfigMap has no app label");
}

#[test]
fn default_placement_summary() {
    let model = model_with(&[]).unwrap();
    let out = summarize(&Inputs::from_model(&model), &statuses(), &no_objects).unwrap();
    assert_eq!(out.placements.len(), 1);
    let p: &PlacementSummary = &out.placements[0];
    assert_eq!(p.placement, "web");
    assert_eq!(p.clusters, 4);
    assert_eq!(
        p.health,
        vec![
            (Health::Healthy, 1),
            (Health::Suspended, 0),
            (Health::Progressing, 1),
            (Health::Missing, 0),
            (Health::Degraded, 1),
            (Health::Unknown, 1),
        ]
    );
    assert_eq!((p.current, p.stale, p.no_status, p.truncated), (2, 1, 1, 0));
    let listed: Vec<(&str, Health, Option<&str>)> = p
        .not_healthy
        .iter()
        .map(|c| (c.cluster.as_str(), c.health, c.object.as_deref()))
        .collect();
    // Worst first (Unknown > Degraded > Progressing); store-c's Service is Missing, but its
    // Deployment is Degraded, which is worse.
    assert_eq!(
        listed,
        vec![
            ("store-d", Health::Unknown, None),
            ("store-c", Health::Degraded, Some("Deployment/web/web")),
            ("store-b", Health::Progressing, Some("Deployment/web/web")),
        ]
    );
    assert!(p.not_healthy[1].stale && p.not_healthy[1].message.contains("progress deadline"));
    assert_eq!(p.not_healthy[0].message, "no status file");
}

#[test]
fn files_are_deterministic_and_named_by_summary_and_placement() {
    let model = model_with(&[]).unwrap();
    let inputs = Inputs::from_model(&model);
    let mut reversed = statuses();
    let files = summarize(&inputs, &reversed, &no_objects).unwrap().files();
    reversed.reverse();
    let again = summarize(&inputs, &reversed, &no_objects).unwrap().files();
    assert_eq!(files, again, "the order of the status files does not matter");
    let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "status/summaries/by-region.yaml",
            "status/summaries/by-replicas.yaml",
            "status/summaries/not-healthy.yaml",
            "status/summaries/nothing-left.yaml",
            "status/summaries/placements/web.yaml",
        ]
    );
    let text: Vec<String> = files.iter().map(|(_, v)| starmap::yaml::to_yaml_string(v)).collect();
    assert!(text.iter().all(|t| !t.contains("2026-")), "no times in summary files");
    let placement = &files[4].1;
    assert_eq!(placement["health"]["Degraded"], json!(1));
    assert_eq!(placement["noStatus"], json!(1));
    assert_eq!(files[0].1["errorCount"], json!(1));
}

const OBJ_SUMMARIES: &str = r#"
apiVersion: starmap.dev/v1alpha1
kind: StatusSummary
metadata: {name: images}
spec:
  placement: web
  targets: [{kinds: [Deployment]}]
  select:
  - {name: image, expr: 'obj.spec.template.spec.containers[0].image'}
---
apiVersion: starmap.dev/v1alpha1
kind: StatusSummary
metadata: {name: degraded-images}
spec:
  placement: web
  targets: [{kinds: [Deployment]}]
  filter: 'health == "Degraded"'
  select:
  - {name: image, expr: 'obj.spec.template.spec.containers[0].image'}
"#;

#[test]
fn obj_is_looked_up_lazily() {
    let model = model_with(&[]).unwrap();
    let calls = AtomicUsize::new(0);
    let lookup = |_cluster: &str, o: &ObjectStatus| {
        calls.fetch_add(1, Ordering::SeqCst);
        model
            .workloads
            .iter()
            .find(|w| w.id.kind == o.kind && w.id.name == o.name)
            .map(|w| w.object.clone())
    };
    summarize(&Inputs::from_model(&model), &statuses(), &lookup).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0, "no expression reads obj");

    let model_obj = model_with(&[("summaries/obj.yaml", OBJ_SUMMARIES)]).unwrap();
    let mut inputs = Inputs::from_model(&model_obj);
    let only_images: Vec<_> = model_obj
        .summaries
        .iter()
        .filter(|s| s.name == "images")
        .cloned()
        .collect();
    inputs.summaries = &only_images;
    let out = summarize(&inputs, &statuses(), &lookup).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 3, "once per row: three Deployments");
    let s = summary(&out.summaries, "images");
    assert!(
        rows(s).iter().all(|r| r["image"] == json!("nginx:1.27")),
        "{:?}",
        rows(s)
    );

    // Rows the filter (which does not read obj) drops never look it up.
    calls.store(0, Ordering::SeqCst);
    let only_degraded: Vec<_> = model_obj
        .summaries
        .iter()
        .filter(|s| s.name == "degraded-images")
        .cloned()
        .collect();
    inputs.summaries = &only_degraded;
    let out = summarize(&inputs, &statuses(), &lookup).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 1, "only store-c's Deployment is Degraded");
    assert_eq!(summary(&out.summaries, "degraded-images").rows.len(), 1);

    // Without a lookup, obj is null and each row reports its error.
    let out = summarize(&inputs, &statuses(), &no_objects).unwrap();
    let s = summary(&out.summaries, "degraded-images");
    assert_eq!((s.rows.len(), s.error_count), (0, 1));
}

#[test]
fn fixture_summaries_load() {
    let model = load_model(&tree(&common::fixtures()), &Inventory::SourceOnly).unwrap();
    let names: Vec<&str> = model.summaries.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["pos-not-healthy", "storefront-by-region"]);
    // With no status files at all: every placement is Unknown everywhere, and the regions
    // of the storefront's stores are groups with COUNT 0 (ap-southeast has none: its only
    // store, store-2001, is left out of the storefront).
    let out = summarize(&Inputs::from_model(&model), &[], &no_objects).unwrap();
    let by_region = summary(&out.summaries, "storefront-by-region");
    let regions: Vec<&Value> = by_region.rows.iter().map(|r| &r[0]).collect();
    assert_eq!(regions, [&json!("eu-central"), &json!("us-east"), &json!("us-west")]);
    assert!(by_region.rows.iter().all(|r| r[1] == json!(0)), "{:?}", by_region.rows);
    let pos = out.placements.iter().find(|p| p.placement == "pos").unwrap();
    assert_eq!(pos.count(Health::Unknown), pos.clusters);
    assert_eq!(pos.no_status, pos.clusters);
}

// ---------------------------------------------------------------------------------------------
// Bad StatusSummary objects: one error line naming the file and line.

/// `starmap validate` of the test source plus `summaries/bad.yaml`: exit 1 and one line.
fn validate_fails(bad: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("source");
    common::copy_dir(&source_dir(), &src);
    std::fs::write(src.join("summaries/bad.yaml"), bad).unwrap();
    let out = common::starmap()
        .args(["validate", "--source"])
        .arg(&src)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "exactly one line: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    lines[0].to_string()
}

const HEAD: &str = "apiVersion: starmap.dev/v1alpha1\nkind: StatusSummary\nmetadata:\n  name: bad\nspec:\n";

#[test]
fn bad_cel_names_the_expression_line() {
    let line = validate_fails(&format!(
        "{HEAD}  placement: web\n  groupBy:\n  - name: region\n    expr: 'cluster.labels.region =='\n  aggregate:\n  - {{name: n, op: COUNT}}\n"
    ));
    assert!(
        line.starts_with("error: summaries/bad.yaml:9: spec.groupBy[0].expr: invalid CEL at column"),
        "{line}"
    );
}

#[test]
fn unknown_variable_is_a_load_error() {
    let line = validate_fails(&format!(
        "{HEAD}  placement: web\n  filter: 'clster.name == \"a\"'\n  select:\n  - {{name: h, expr: health}}\n"
    ));
    assert!(
        line.starts_with("error: summaries/bad.yaml:7: spec.filter: unknown variable `clster`"),
        "{line}"
    );
}

#[test]
fn unknown_placement_names_spec_placement() {
    let line = validate_fails(&format!(
        "{HEAD}  placement: nginx-edge\n  aggregate:\n  - {{name: n, op: COUNT}}\n"
    ));
    assert_eq!(
        line,
        "error: summaries/bad.yaml:6: spec.placement: placement \"nginx-edge\" does not exist"
    );
}

#[test]
fn sum_without_expr_and_count_with_one() {
    let line = validate_fails(&format!(
        "{HEAD}  placement: web\n  aggregate:\n  - {{name: n, op: COUNT}}\n  - {{name: ready, op: SUM}}\n"
    ));
    assert!(
        line.starts_with("error: summaries/bad.yaml:9: spec.aggregate[1]: SUM needs an expr"),
        "{line}"
    );
    let line = validate_fails(&format!(
        "{HEAD}  placement: web\n  aggregate:\n  - name: n\n    op: COUNT\n    expr: status.replicas\n"
    ));
    assert!(
        line.starts_with("error: summaries/bad.yaml:10: spec.aggregate[0]: COUNT counts rows and takes no expr"),
        "{line}"
    );
}

#[test]
fn aggregate_and_select_exclude_each_other_and_names_are_unique() {
    let line = validate_fails(&format!(
        "{HEAD}  placement: web\n  aggregate:\n  - {{name: n, op: COUNT}}\n  select:\n  - {{name: h, expr: health}}\n"
    ));
    assert!(
        line.starts_with("error: summaries/bad.yaml:10: spec.aggregate and spec.select exclude each other"),
        "{line}"
    );
    let line = validate_fails(&format!(
        "{HEAD}  placement: web\n  groupBy:\n  - {{name: r, expr: cluster.name}}\n  - {{name: r, expr: health}}\n  aggregate:\n  - {{name: n, op: COUNT}}\n"
    ));
    assert!(
        line.starts_with("error: summaries/bad.yaml:9: spec.groupBy[1].name: duplicate column name \"r\""),
        "{line}"
    );
}

#[test]
fn duplicate_summary_names_and_typos_in_fields() {
    let twice = format!("{HEAD}  placement: web\n  aggregate: [{{name: n, op: COUNT}}]\n");
    let line = validate_fails(&format!("{twice}---\n{twice}"));
    assert!(
        line.starts_with("error: summaries/bad.yaml:12: duplicate StatusSummary \"bad\""),
        "{line}"
    );
    let line = validate_fails(&format!("{HEAD}  placement: web\n  groupby: []\n"));
    assert!(line.starts_with("error: summaries/bad.yaml:7:"), "{line}");
    assert!(line.contains("groupby"), "{line}");
}
