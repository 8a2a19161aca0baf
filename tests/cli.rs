//! The command line (contract section 4): `plan`, `explain`, `validate`, `render -o json`,
//! `render --dry-run`, `--help` and `--version`, run as a user would, on real git repos in
//! temp dirs. Sources are the YAML files under `tests/data/render/` and `fixtures/`.

mod common;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{commit_count, copy_dir, data, fixtures, git, snapshot, starmap, tree_files};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    starmap().args(args).output().unwrap()
}

fn describe<S: AsRef<OsStr>>(args: &[S], out: &Output) -> String {
    format!(
        "starmap {:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Run and expect this exit code; returns stdout.
fn run_code<S: AsRef<OsStr>>(code: i32, args: &[S]) -> String {
    let out = run(args);
    assert_eq!(out.status.code(), Some(code), "{}", describe(args, &out));
    text(&out.stdout)
}

fn run_ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    run_code(0, args)
}

fn args(items: &[&dyn AsRef<OsStr>]) -> Vec<OsString> {
    items.iter().map(|a| a.as_ref().to_os_string()).collect()
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{stdout}"))
}

/// A copy of `tests/data/render/plan/v1` rendered into a deploy repo, then the source
/// moved to v2: c-one gets `added`, `changes` changes, `removed` goes; c-two leaves the
/// inventory and c-three joins.
struct Planned {
    tmp: tempfile::TempDir,
    src: PathBuf,
    deploy: PathBuf,
}

fn planned() -> Planned {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("source");
    std::fs::create_dir_all(&src).unwrap();
    copy_dir(&data("render/plan/v1"), &src);
    let deploy = tmp.path().join("deploy");
    run_ok(&args(&[&"render", &"--source", &src, &"--deploy", &deploy]));
    copy_dir(&data("render/plan/v2"), &src);
    Planned { tmp, src, deploy }
}

impl Planned {
    fn plan(&self, extra: &[&str]) -> Vec<OsString> {
        let mut a = args(&[&"plan", &"--source", &self.src, &"--deploy", &self.deploy]);
        a.extend(extra.iter().map(OsString::from));
        a
    }
}

// ---------------------------------------------------------------------------------------
// plan
// ---------------------------------------------------------------------------------------

#[test]
fn plan_lists_added_changed_and_removed_objects_per_cluster() {
    let p = planned();
    let out = run_ok(&p.plan(&[]));
    assert!(
        out.contains("Plan: 3 clusters to change: 4 objects added, 1 changed, 4 removed"),
        "{out}"
    );
    let lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    let line = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    assert!(line("~ cluster c-one"), "{out}");
    assert!(line("+ cluster c-three"), "{out}");
    assert!(line("- cluster c-two"), "{out}");
    let object = |sign: char, id: &str, file: &str| {
        lines.iter().any(|l| {
            let t = l.trim_start();
            t.starts_with(sign) && t.split_whitespace().collect::<Vec<_>>() == [&sign.to_string()[..], id, file]
        })
    };
    assert!(
        object('+', "ConfigMap/demo/added", "demo/configmap_added.yaml"),
        "{out}"
    );
    assert!(
        object('~', "ConfigMap/demo/changes", "demo/configmap_changes.yaml"),
        "{out}"
    );
    assert!(
        object('-', "ConfigMap/demo/removed", "demo/configmap_removed.yaml"),
        "{out}"
    );
    // c-one's section lists what changed there, not the object that stayed the same.
    let c_one: Vec<&str> = lines
        .iter()
        .skip_while(|l| !l.starts_with("~ cluster c-one"))
        .skip(1)
        .take_while(|l| l.starts_with(' '))
        .copied()
        .collect();
    assert_eq!(c_one.len(), 3, "{out}");
    assert!(!c_one.iter().any(|l| l.contains("ConfigMap/demo/stays")), "{out}");
    insta::assert_snapshot!("plan__text", out);
}

#[test]
fn plan_writes_nothing() {
    let p = planned();
    let before = snapshot(&p.deploy);
    for extra in [&[][..], &["--diff"], &["-o", "json"], &["-o", "markdown"]] {
        run_ok(&p.plan(extra));
    }
    run_code(2, &p.plan(&["--detailed-exitcode"]));
    assert_eq!(snapshot(&p.deploy), before, "plan changed the deploy repo");

    // A deploy repo that does not exist yet: everything is new, and it is not created.
    let missing = p.tmp.path().join("not-yet");
    let out = run_code(
        2,
        &args(&[
            &"plan",
            &"--source",
            &p.src,
            &"--deploy",
            &missing,
            &"--detailed-exitcode",
        ]),
    );
    assert!(out.contains("+ cluster c-one"), "{out}");
    assert!(!missing.exists(), "plan created {}", missing.display());
}

#[test]
fn plan_detailed_exitcode_is_2_with_changes_and_0_without() {
    let p = planned();
    let out = run_code(2, &p.plan(&["--detailed-exitcode"]));
    assert!(out.contains("Plan:"), "{out}");
    run_ok(&args(&[&"render", &"--source", &p.src, &"--deploy", &p.deploy]));
    let out = run_code(0, &p.plan(&["--detailed-exitcode"]));
    assert!(out.contains("No changes"), "{out}");
    // Without the flag, changes are still exit 0.
    copy_dir(&data("render/plan/v1"), &p.src);
    run_code(0, &p.plan(&[]));
    // An error is 1, never 2.
    let out = run(&args(&[
        &"plan",
        &"--source",
        &p.tmp.path().join("no-such-source"),
        &"--deploy",
        &p.deploy,
        &"--detailed-exitcode",
    ]));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}

#[test]
fn plan_diff_prints_a_unified_diff_that_git_applies() {
    let p = planned();
    let out = run_ok(&p.plan(&["--diff"]));
    // A changed object: a/ is the tip, b/ the render.
    assert!(
        out.contains(
            "--- a/clusters/c-one/demo/configmap_changes.yaml\n+++ b/clusters/c-one/demo/configmap_changes.yaml\n"
        ),
        "{out}"
    );
    assert!(out.contains("\n-  version: \"1\"\n+  version: \"2\"\n"), "{out}");
    // Added and removed objects against /dev/null.
    assert!(
        out.contains("--- /dev/null\n+++ b/clusters/c-one/demo/configmap_added.yaml\n"),
        "{out}"
    );
    assert!(
        out.contains("--- a/clusters/c-one/demo/configmap_removed.yaml\n+++ /dev/null\n"),
        "{out}"
    );
    assert!(
        out.contains("--- a/clusters/c-two/demo/configmap_stays.yaml\n+++ /dev/null\n"),
        "{out}"
    );
    assert!(out.contains("@@ "), "{out}");

    // git itself accepts it as a patch of the deploy repo's tip.
    let patch = p.tmp.path().join("plan.diff");
    std::fs::write(&patch, &out).unwrap();
    git(&p.deploy, &["apply", "--check", patch.to_str().unwrap()]);
    insta::assert_snapshot!("plan__diff", out);
}

#[test]
fn plan_diff_covers_every_changed_file_including_kustomizations() {
    // `plan --help`: "Print a unified diff of every changed file". Applying the diff to the
    // tip must give the cluster directories the render writes, kustomization.yaml included
    // (a reviewer must see that a cluster's resource list changes).
    let p = planned();
    let out = run_ok(&p.plan(&["--diff"]));
    let patch = p.tmp.path().join("plan.diff");
    std::fs::write(&patch, &out).unwrap();
    git(&p.deploy, &["apply", patch.to_str().unwrap()]);
    let applied: BTreeMap<String, Vec<u8>> = snapshot(&p.deploy)
        .files
        .into_iter()
        .filter(|(k, _)| k.starts_with("clusters/"))
        .collect();

    let rendered = p.tmp.path().join("rendered");
    run_ok(&args(&[&"render", &"--source", &p.src, &"--deploy", &rendered]));
    let expected: BTreeMap<String, Vec<u8>> = tree_files(&rendered, "refs/heads/main")
        .into_iter()
        .filter(|(k, _)| k.starts_with("clusters/"))
        .map(|(k, v)| (k, v.into_bytes()))
        .collect();
    let differing: std::collections::BTreeSet<&String> = applied
        .keys()
        .chain(expected.keys())
        .filter(|k| applied.get(*k) != expected.get(*k))
        .collect();
    assert!(
        differing.is_empty(),
        "after `git apply` of plan --diff these files differ from the render: {differing:?}\n--- plan --diff:\n{out}"
    );
}

#[test]
fn plan_json_parses_and_has_counts() {
    let p = planned();
    let v = json_of(&run_ok(&p.plan(&["-o", "json"])));
    assert_eq!(v["changed"], json!(true));
    assert_eq!(v["objects"], json!({"added": 4, "changed": 1, "removed": 4}));
    let clusters = v["clusters"].as_array().unwrap();
    let summary: Vec<(String, String, usize)> = clusters
        .iter()
        .map(|c| {
            (
                c["cluster"].as_str().unwrap().into(),
                c["change"].as_str().unwrap().into(),
                c["objects"].as_array().unwrap().len(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("c-one".into(), "changed".into(), 3),
            ("c-three".into(), "added".into(), 3),
            ("c-two".into(), "removed".into(), 3)
        ]
    );
    assert_eq!(
        clusters[0]["objects"][1],
        json!({"change": "changed", "object": "ConfigMap/demo/changes", "file": "demo/configmap_changes.yaml"})
    );
    assert!(v["warnings"].is_array());

    // Up to date: changed false, zero counts.
    run_ok(&args(&[&"render", &"--source", &p.src, &"--deploy", &p.deploy]));
    let v = json_of(&run_ok(&p.plan(&["-o", "json"])));
    assert_eq!(v["changed"], json!(false));
    assert_eq!(v["objects"], json!({"added": 0, "changed": 0, "removed": 0}));
    assert_eq!(v["clusters"], json!([]));
}

#[test]
fn plan_markdown_has_a_table() {
    let p = planned();
    let md = run_ok(&p.plan(&["-o", "markdown"]));
    assert!(md.starts_with("### starmap plan\n"), "{md}");
    assert!(
        md.contains("| cluster | | added | changed | removed |\n|---|---|---:|---:|---:|\n"),
        "{md}"
    );
    assert!(md.contains("| `c-one` |  | 1 | 1 | 1 |"), "{md}");
    assert!(md.contains("| `c-three` | new cluster | 3 | 0 | 0 |"), "{md}");
    assert!(md.contains("| `c-two` | removed cluster | 0 | 0 | 3 |"), "{md}");
    // With --diff, a fenced diff block.
    let md = run_ok(&p.plan(&["-o", "markdown", "--diff"]));
    assert!(md.contains("```diff\n--- "), "{md}");
}

#[test]
fn plan_markdown_keeps_the_added_and_removed_signs_visible() {
    // In CommonMark, a list item whose text starts with `+ ` or `- ` is a nested list: the
    // sign disappears and added and removed objects look the same in a pull-request comment
    // (checked with markdown-it: `  - + \`x\`` renders as <li><ul><li>x</li></ul></li>).
    let p = planned();
    let md = run_ok(&p.plan(&["-o", "markdown"]));
    let swallowed: Vec<&str> = md
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            ["- ", "* ", "+ "]
                .iter()
                .any(|m| t.starts_with(m) && ["- ", "+ ", "* "].iter().any(|n| t[2..].starts_with(n)))
        })
        .collect();
    assert!(
        swallowed.is_empty(),
        "list items whose sign Markdown reads as another list marker:\n{}",
        swallowed.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// explain
// ---------------------------------------------------------------------------------------

fn explain(cluster: &str, extra: &[&str]) -> String {
    let mut a = args(&[&"explain", &"--source", &fixtures(), &"--cluster", &cluster]);
    a.extend(extra.iter().map(OsString::from));
    run_ok(&a)
}

#[test]
fn explain_names_placement_clause_selector_and_customizations() {
    let out = explain("store-1001", &["--object", "ConfigMap/pos/pos-config"]);
    assert!(
        out.contains("ConfigMap/pos/pos-config  (workloads/pos/pos-config.yaml:4)"),
        "{out}"
    );
    assert!(
        out.contains("file: clusters/store-1001/pos/configmap_pos-config.yaml"),
        "{out}"
    );
    assert!(
        out.contains("placed by pos: workloads[0] {\"paths\":[\"workloads/pos/**\"]}"),
        "the clause that matched:\n{out}"
    );
    assert!(
        out.contains("cluster selected by clusterSelectors[0] {\"matchLabels\":{\"tier\":\"edge\"},\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"In\",\"values\":[\"prod\",\"staging\"]}]}"),
        "which selector picked the cluster:\n{out}"
    );
    // The customizations in the order applied, each with what it changed.
    let at = |s: &str| out.find(s).unwrap_or_else(|| panic!("no {s:?} in:\n{out}"));
    assert!(at("customized by pos-config-baseline:") < at("customized by pos-config-eu:"));
    assert!(at("customized by pos-config-eu:") < at("customized by pos-config-store-1001:"));
    assert!(out.contains("merge /data/STORE_ID = \"1001\""), "{out}");
    assert!(out.contains("merge /data/SALES_TAX_MODE = null"), "{out}");
    assert!(
        out.contains("merge /data/RECEIPT_FOOTER = \"Danke für Ihren Besuch am Marienplatz! Filiale 1001\""),
        "{out}"
    );
    assert!(!out.contains("Not on this cluster"), "{out}");

    // JSON patches are listed one by one.
    let out = explain("store-0042", &["--object", "CronJob/inventory-sync/inventory-sync"]);
    assert!(out.contains("customized by inventory-sync-store:"), "{out}");
    assert!(
        out.contains("replace /spec/jobTemplate/spec/template/spec/containers/0/env/0/value = \"0042\""),
        "{out}"
    );
    assert!(out.contains("replace /spec/timeZone = \"America/New_York\""), "{out}");

    // A cluster picked by name, and a second clause of a placement.
    let out = explain("lab-1", &["--object", "Namespace/pos"]);
    assert!(
        out.contains("placed by pos: workloads[1] {\"kinds\":[\"Namespace\"],\"names\":[\"pos\"]}"),
        "{out}"
    );
    assert!(out.contains("cluster selected by named in spec.clusters"), "{out}");
    assert!(out.contains("no customization"), "{out}");
}

#[test]
fn explain_lists_every_placement_of_an_object_placed_twice() {
    let out = run_ok(&args(&[
        &"explain",
        &"--source",
        &data("render/selection"),
        &"--cluster",
        &"alpha",
        &"--object",
        &"ConfigMap/sel/shared",
    ]));
    assert!(
        out.contains("placed by add-east: workloads[0] {\"names\":[\"shared\"]}"),
        "{out}"
    );
    assert!(
        out.contains("cluster selected by clusterSelectors[0] {\"matchLabels\":{\"region\":\"east\"}}"),
        "{out}"
    );
    assert!(
        out.contains("placed by add-edge: workloads[0] {\"kinds\":[\"ConfigMap\"],\"names\":[\"shared\"]}"),
        "{out}"
    );
    assert!(
        out.contains("cluster selected by clusterSelectors[0] {\"matchLabels\":{\"tier\":\"edge\"}}"),
        "{out}"
    );
}

#[test]
fn explain_says_why_an_object_is_not_placed() {
    // The storefront placement excludes store-2001 by name; the lab preview only picks lab-1.
    let out = explain("store-2001", &["--object", "Deployment/storefront/storefront"]);
    assert!(out.contains("Not on this cluster:"), "{out}");
    assert!(
        out.contains("placements lab-storefront-preview, storefront select this object but not this cluster"),
        "{out}"
    );

    // The lab gets the storefront but not its Ingress: the lab's own placement has no
    // clause for it.
    let out = explain("lab-1", &["--object", "Ingress/storefront/storefront"]);
    assert!(
        out.contains("Ingress/storefront/storefront  (workloads/storefront/ingress.yaml:4)"),
        "{out}"
    );
    assert!(
        out.contains("placement storefront selects this object but not this cluster"),
        "{out}"
    );

    // The retired store: nothing at all.
    let out = explain("store-0099", &[]);
    assert!(out.contains("Nothing is placed on this cluster."), "{out}");
    assert!(out.contains("ConfigMap/pos/pos-config  (workloads/pos/pos-config.yaml:4)\n    placement pos selects this object but not this cluster"), "{out}");
}

#[test]
fn explain_with_object_does_not_claim_the_cluster_is_empty() {
    // store-2001 runs 14 objects; asking about one that is not there must not say the
    // cluster has nothing.
    let out = explain("store-2001", &["--object", "Deployment/storefront/storefront"]);
    assert!(
        !out.contains("Nothing is placed on this cluster"),
        "false statement about store-2001 (14 objects):\n{out}"
    );
    let out = explain("lab-1", &["--object", "Ingress/storefront/storefront"]);
    assert!(
        !out.contains("Nothing is placed on this cluster"),
        "false statement about lab-1 (14 objects):\n{out}"
    );
}

#[test]
fn explain_json() {
    let v = json_of(&explain(
        "store-1001",
        &["--object", "ConfigMap/pos/pos-config", "-o", "json"],
    ));
    assert_eq!(v["cluster"], "store-1001");
    assert_eq!(
        v["labels"]["starmap.dev/cluster"], "store-1001",
        "the implicit label is shown"
    );
    assert_eq!(v["labels"]["region"], "eu-central");
    let placed = v["placed"].as_array().unwrap();
    assert_eq!(placed.len(), 1);
    let o = &placed[0];
    assert_eq!(o["object"], "ConfigMap/pos/pos-config");
    assert_eq!(o["source"], "workloads/pos/pos-config.yaml:4");
    assert_eq!(o["file"], "clusters/store-1001/pos/configmap_pos-config.yaml");
    let by = o["placedBy"].as_array().unwrap();
    assert_eq!(by.len(), 1);
    assert_eq!(by[0]["placement"], "pos");
    assert!(
        by[0]["clause"].as_str().unwrap().starts_with("workloads[0] "),
        "{}",
        by[0]
    );
    assert!(
        by[0]["clusterBy"].as_str().unwrap().starts_with("clusterSelectors[0] "),
        "{}",
        by[0]
    );
    assert_eq!(
        o["customizations"],
        json!(["pos-config-baseline", "pos-config-eu", "pos-config-store-1001"])
    );
    let changes = o["changes"].as_array().unwrap();
    assert!(changes.contains(&json!({"customization": "pos-config-store-1001", "what": "merge /data/RECEIPT_FOOTER = \"Danke für Ihren Besuch am Marienplatz! Filiale 1001\""})), "{changes:?}");
    assert!(
        changes
            .iter()
            .all(|c| c["customization"].is_string() && c["what"].is_string())
    );
    assert_eq!(v["notPlaced"], json!([]));

    let v = json_of(&explain(
        "store-2001",
        &["--object", "Deployment/storefront/storefront", "-o", "json"],
    ));
    assert_eq!(v["placed"], json!([]));
    assert_eq!(
        v["notPlaced"],
        json!([{"object": "Deployment/storefront/storefront", "source": "workloads/storefront/deployment.yaml:4", "why": "placements lab-storefront-preview, storefront select this object but not this cluster"}])
    );

    // Without --object: every object of the source is either placed or not placed.
    let v = json_of(&explain("store-2001", &["-o", "json"]));
    assert_eq!(v["placed"].as_array().unwrap().len(), 14);
    assert_eq!(
        v["placed"].as_array().unwrap().len() + v["notPlaced"].as_array().unwrap().len(),
        25
    );
}

#[test]
fn explain_errors_name_what_is_wrong() {
    let out = run(&args(&[
        &"explain",
        &"--source",
        &fixtures(),
        &"--cluster",
        &"store-9999",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr).trim(),
        "error: cluster \"store-9999\" is not in the inventory"
    );
    let out = run(&args(&[
        &"explain",
        &"--source",
        &fixtures(),
        &"--cluster",
        &"lab-1",
        &"--object",
        &"ConfigMap/pos/nope",
    ]));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("error: --object \"ConfigMap/pos/nope\""),
        "{}",
        text(&out.stderr)
    );
}

// ---------------------------------------------------------------------------------------
// validate, --help, --version
// ---------------------------------------------------------------------------------------

#[test]
fn validate_fixtures_reports_counts() {
    let out = run_ok(&args(&[&"validate", &"--source", &fixtures()]));
    assert_eq!(
        out.trim_end(),
        "valid: 14 clusters, 6 placements, 7 customizations, 25 workload objects; 200 objects rendered"
    );
    let v = json_of(&run_ok(&args(&[&"validate", &"--source", &fixtures(), &"-o", &"json"])));
    assert_eq!(
        v,
        json!({"valid": true, "clusters": 14, "placements": 6, "customizations": 7, "workloads": 25, "renderedObjects": 200, "warnings": []})
    );
}

#[test]
fn validate_writes_nothing_and_fails_with_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("source");
    std::fs::create_dir_all(&src).unwrap();
    copy_dir(&fixtures(), &src);
    let before = snapshot(&src);
    run_ok(&args(&[&"validate", &"--source", &src]));
    assert_eq!(snapshot(&src), before);
    // Without starmap.yaml the drafts are read, and the first problem is named by file:line.
    std::fs::remove_file(src.join("starmap.yaml")).unwrap();
    let out = run(&args(&[&"validate", &"--source", &src]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    let located = stderr.strip_prefix("error: ").unwrap();
    let (path, rest) = located.split_once(':').unwrap();
    assert!(path.starts_with(".github/") || path.starts_with("drafts/"), "{stderr}");
    assert!(
        rest.split(':').next().unwrap().parse::<u32>().is_ok(),
        "a line number after the path: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn help_of_each_command_shows_examples() {
    for cmd in ["render", "plan", "explain", "validate"] {
        let out = run_ok(&[cmd, "--help"]);
        assert!(out.contains("Examples:"), "{cmd} --help:\n{out}");
        assert!(
            out.contains(&format!("starmap {cmd} --source")),
            "{cmd} --help shows a full command:\n{out}"
        );
        assert!(out.contains("--source"), "{out}");
    }
    let out = run_ok(&["--help"]);
    for cmd in ["render", "plan", "explain", "validate"] {
        assert!(out.contains(cmd), "{out}");
    }
    let out = run_ok(&["plan", "--help"]);
    assert!(out.contains("--detailed-exitcode") && out.contains("--diff"), "{out}");
}

#[test]
fn version() {
    let out = run_ok(&["--version"]);
    assert_eq!(out, format!("starmap {}\n", env!("CARGO_PKG_VERSION")));
}

// ---------------------------------------------------------------------------------------
// render -o json, render --dry-run
// ---------------------------------------------------------------------------------------

#[test]
fn render_json_output() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    let render = |extra: &[&str]| {
        let mut a = args(&[
            &"render",
            &"--source",
            &fixtures(),
            &"--deploy",
            &deploy,
            &"-o",
            &"json",
        ]);
        a.extend(extra.iter().map(OsString::from));
        json_of(&run_ok(&a))
    };
    let v = render(&[]);
    let head = git(&deploy, &["rev-parse", "main"]);
    assert_eq!(v["commit"], json!(head));
    assert_eq!(v["pushed"], json!(false));
    assert_eq!(v["dryRun"], json!(false));
    assert_eq!(v["branch"], json!("main"));
    assert_eq!(v["clustersRendered"], json!(14));
    assert_eq!(v["clustersUnchanged"], json!(0));
    let clusters = v["changes"]["clusters"].as_array().unwrap();
    assert_eq!(clusters.len(), 14);
    let objects: usize = clusters.iter().map(|c| c["objects"].as_array().unwrap().len()).sum();
    assert_eq!(objects, 200);
    assert!(clusters.iter().all(|c| c["change"] == "added"));
    let store = clusters.iter().find(|c| c["cluster"] == "store-0042").unwrap();
    assert!(store["objects"].as_array().unwrap().contains(
        &json!({"change": "added", "object": "ConfigMap/pos/pos-config", "file": "pos/configmap_pos-config.yaml"})
    ));

    // Again: no commit, every cluster reused.
    let v = render(&[]);
    assert_eq!(v["commit"], Value::Null);
    assert_eq!(v["clustersRendered"], json!(0));
    assert_eq!(v["clustersUnchanged"], json!(14));
    assert_eq!(v["changes"]["clusters"], json!([]));
    assert_eq!(commit_count(&deploy, "refs/heads/main"), 1);
}

#[test]
fn render_dry_run_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("source");
    std::fs::create_dir_all(&src).unwrap();
    copy_dir(&data("render/plan/v1"), &src);
    let deploy = tmp.path().join("deploy");
    run_ok(&args(&[&"render", &"--source", &src, &"--deploy", &deploy]));
    copy_dir(&data("render/plan/v2"), &src);
    let before = snapshot(&deploy);

    let out = run_ok(&args(&[
        &"render",
        &"--source",
        &src,
        &"--deploy",
        &deploy,
        &"--dry-run",
    ]));
    assert!(
        out.contains("dry run: would commit 3 clusters to change: 4 objects added, 1 changed, 4 removed"),
        "{out}"
    );
    let v = json_of(&run_ok(&args(&[
        &"render",
        &"--source",
        &src,
        &"--deploy",
        &deploy,
        &"--dry-run",
        &"-o",
        &"json",
    ])));
    assert_eq!(v["dryRun"], json!(true));
    assert_eq!(v["commit"], Value::Null);
    assert_eq!(v["changes"]["clusters"].as_array().unwrap().len(), 3);
    assert_eq!(snapshot(&deploy), before, "dry run changed the deploy repo");
    // No loose objects were stored either.
    let objects = Command::new("git")
        .args(["count-objects", "-v"])
        .current_dir(&deploy)
        .output()
        .unwrap();
    let before_objects = text(&objects.stdout);
    run_ok(&args(&[
        &"render",
        &"--source",
        &src,
        &"--deploy",
        &deploy,
        &"--dry-run",
    ]));
    let objects = Command::new("git")
        .args(["count-objects", "-v"])
        .current_dir(&deploy)
        .output()
        .unwrap();
    assert_eq!(text(&objects.stdout), before_objects);
}

#[test]
fn render_dry_run_into_a_new_deploy_path_creates_nothing() {
    // `render --dry-run` before the first render: the render would create the repo, so a
    // dry run reports what it would commit (like `plan`), and creates nothing.
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    let out = run(&args(&[
        &"render",
        &"--source",
        &fixtures(),
        &"--deploy",
        &deploy,
        &"--dry-run",
    ]));
    assert!(!deploy.exists(), "dry run created {}", deploy.display());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        describe(&["render", "--dry-run", "<new path>"], &out)
    );
    assert!(text(&out.stdout).contains("would commit"), "{}", text(&out.stdout));
}

#[test]
fn errors_are_one_line_with_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("source");
    std::fs::create_dir_all(&src).unwrap();
    copy_dir(&data("render/plan/v1"), &src);
    // A deploy path that is a non-empty directory but not a repository.
    let not_repo = tmp.path().join("not-a-repo");
    std::fs::create_dir_all(&not_repo).unwrap();
    std::fs::write(not_repo.join("file.txt"), "x").unwrap();
    let out = run(&args(&[&"render", &"--source", &src, &"--deploy", &not_repo]));
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: --deploy "), "{stderr}");
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(!Path::new(&not_repo.join(".git")).exists());
}

#[test]
fn status_health_prints_each_objects_health_and_message() {
    let data = |f: &str| common::shared_data(&format!("health/testdata/{f}"));
    let out = starmap()
        .args(["status", "health", "-o", "json"])
        .arg(data("deployment-degraded.yaml"))
        .arg(data("pvc-pending.yaml"))
        .arg(data("job-succeeded.yaml"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rows: Value = serde_json::from_slice(&out.stdout).unwrap();
    let summary: Vec<(String, String)> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["kind"].as_str().unwrap().to_string(),
                r["health"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("Deployment".to_string(), "Degraded".to_string()),
            ("PersistentVolumeClaim".to_string(), "Progressing".to_string()),
            ("Job".to_string(), "Healthy".to_string())
        ]
    );
    assert!(
        rows[0]["message"]
            .as_str()
            .unwrap()
            .contains("exceeded its progress deadline"),
        "{rows}"
    );
    let text = starmap()
        .args(["status", "health"])
        .arg(data("pvc-pending.yaml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.starts_with("KIND") && stdout.contains("PersistentVolumeClaim") && stdout.contains("Progressing"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------
// -o yaml, build, completion, man
// ---------------------------------------------------------------------------------------

fn yaml_of(stdout: &str) -> Value {
    let mut docs =
        starmap::yaml::parse_documents(stdout, "stdout").unwrap_or_else(|e| panic!("not YAML ({e}):\n{stdout}"));
    assert_eq!(docs.len(), 1, "one document:\n{stdout}");
    docs.remove(0).value
}

#[test]
fn yaml_output_is_the_json_output_in_yaml() {
    let p = planned();
    let fixtures = fixtures();
    let commands: Vec<Vec<OsString>> = vec![
        p.plan(&[]),
        args(&[&"explain", &"--source", &fixtures, &"--cluster", &"store-0042"]),
        args(&[&"validate", &"--source", &fixtures]),
        args(&[
            &"status",
            &"health",
            &common::shared_data("health/testdata/deployment-degraded.yaml"),
            &common::shared_data("health/testdata/pvc-pending.yaml"),
        ]),
    ];
    for command in commands {
        let with = |format: &str| {
            let mut a = command.clone();
            a.extend(["-o".into(), format.into()]);
            run_ok(&a)
        };
        let (json, yaml) = (with("json"), with("yaml"));
        assert_eq!(yaml_of(&yaml), json_of(&json), "{command:?}");
        assert!(!yaml.trim_start().starts_with('{'), "block YAML, not JSON:\n{yaml}");
    }
}

#[test]
fn build_prints_the_files_a_render_writes_for_the_cluster() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    let fixtures = fixtures();
    run_ok(&args(&[&"render", &"--source", &fixtures, &"--deploy", &deploy]));
    let files = tree_files(&deploy, "main");
    let dir = "clusters/store-0042";
    let kustomization = yaml_of(&files[&format!("{dir}/kustomization.yaml")]);
    let resources: Vec<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert!(resources.len() > 3, "{resources:?}");
    let expected: Vec<&str> = resources
        .iter()
        .map(|r| files[&format!("{dir}/{r}")].as_str())
        .collect();

    // `starmap build --source fixtures` with `extra` flags.
    let build = |extra: &[&str]| {
        let mut a = args(&[&"build", &"--source", &fixtures]);
        a.extend(extra.iter().map(OsString::from));
        a
    };
    let built = run_ok(&build(&["--cluster", "store-0042"]));
    assert_eq!(built, expected.join("---\n"));
    // Every document of the stream is an object kubectl reads.
    let docs = starmap::yaml::parse_documents(&built, "build").unwrap();
    assert_eq!(docs.len(), resources.len());
    assert!(docs.iter().all(|d| d.value["kind"].is_string()));

    // One object: exactly its file.
    let deployment = resources
        .iter()
        .find(|r| r.contains("deployment.apps_"))
        .expect("a Deployment on store-0042");
    let object = yaml_of(&files[&format!("{dir}/{deployment}")]);
    let filter = format!(
        "Deployment/{}/{}",
        object["metadata"]["namespace"].as_str().unwrap(),
        object["metadata"]["name"].as_str().unwrap()
    );
    let one = run_ok(&build(&["--cluster", "store-0042", "--object", &filter]));
    assert_eq!(one, files[&format!("{dir}/{deployment}")]);

    let err = text(&run_code_err(&build(&["--cluster", "nowhere"])));
    assert!(err.contains("cluster \"nowhere\" is not in the inventory"), "{err}");
    let err = text(&run_code_err(&build(&[
        "--cluster",
        "store-0042",
        "--object",
        "Deployment/x/none",
    ])));
    assert!(
        err.contains("--object \"Deployment/x/none\": not on cluster store-0042"),
        "{err}"
    );
}

/// Exit 1, nothing on stdout; returns stderr.
fn run_code_err<S: AsRef<OsStr>>(args: &[S]) -> Vec<u8> {
    let out = run(args);
    assert_eq!(out.status.code(), Some(1), "{}", describe(args, &out));
    assert!(out.stdout.is_empty(), "{}", describe(args, &out));
    out.stderr
}

#[test]
fn completion_scripts_and_the_manual_page() {
    let bash = run_ok(&["completion", "bash"]);
    assert!(bash.contains("_starmap()") && bash.contains("build"), "{bash}");
    // The real bash reads it.
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("starmap.bash");
    std::fs::write(&script, &bash).unwrap();
    let checked = Command::new("bash").arg("-n").arg(&script).output().unwrap();
    assert!(checked.status.success(), "{}", text(&checked.stderr));
    assert!(run_ok(&["completion", "zsh"]).starts_with("#compdef starmap"));
    assert!(run_ok(&["completion", "fish"]).contains("complete -c starmap"));
    let man = run_ok(&["man"]);
    assert!(man.contains(".TH starmap 1"), "{man}");
    assert!(man.contains("render") && man.contains("status"), "{man}");
    let err = text(&run_code_err(&["completion", "powershell"]));
    assert!(err.contains("invalid value"), "{err}");
}

#[test]
fn plan_and_explain_narrow_to_clusters_named_or_globbed() {
    let p = planned();
    let clusters_of = |extra: &[&str]| -> Vec<String> {
        let mut a = vec!["-o", "json"];
        a.extend(extra);
        let v = json_of(&run_ok(&p.plan(&a)));
        v["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["cluster"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(clusters_of(&[]), ["c-one", "c-three", "c-two"]);
    assert_eq!(clusters_of(&["--cluster", "c-t*"]), ["c-three", "c-two"]);
    assert_eq!(clusters_of(&["-c", "c-one", "-c", "c-two"]), ["c-one", "c-two"]);
    let err = text(&run_code_err(&p.plan(&["--cluster", "c-nine"])));
    assert!(err.contains("cluster \"c-nine\" is not in the inventory"), "{err}");
    let err = text(&run_code_err(&p.plan(&["--cluster", "x-*"])));
    assert!(err.contains("--cluster \"x-*\": matches no cluster"), "{err}");
    assert!(!run_code(2, &p.plan(&["--detailed-exitcode", "-c", "c-one"])).is_empty());

    let fixtures = fixtures();
    let explain = |clusters: &[&str]| {
        let mut a = args(&[&"explain", &"--source", &fixtures, &"-o", &"json"]);
        for c in clusters {
            a.extend(["--cluster".into(), OsString::from(c)]);
        }
        json_of(&run_ok(&a))
    };
    let one = explain(&["store-0042"]);
    assert_eq!(one["cluster"], json!("store-0042"), "one cluster named: one object");
    let stores = explain(&["store-*"]);
    let names: Vec<&str> = stores
        .as_array()
        .expect("a glob: a list")
        .iter()
        .map(|e| e["cluster"].as_str().unwrap())
        .collect();
    assert!(
        names.len() > 2 && names.iter().all(|n| n.starts_with("store-")),
        "{names:?}"
    );
    assert!(names.windows(2).all(|w| w[0] < w[1]), "{names:?}");
    assert_eq!(stores[0], explain(&[names[0]]));
    let text_out = run_ok(&args(&[
        &"explain",
        &"--source",
        &fixtures,
        &"-c",
        &"store-0042",
        &"-c",
        &names[1],
    ]));
    assert_eq!(
        text_out.matches("\ncluster ").count() + usize::from(text_out.starts_with("cluster ")),
        2,
        "{text_out}"
    );
}

/// Progress bars appear on a terminal (a real pseudo-terminal from util-linux `script`), and
/// never in a pipe or with `-o json`.
#[test]
fn progress_bars_on_a_terminal_never_in_a_pipe() {
    let bin = assert_cmd::cargo::cargo_bin("starmap");
    let tmp = tempfile::tempdir().unwrap();
    let fixtures = fixtures();
    let on_a_terminal = |deploy: &str, extra: &str| -> String {
        let command = format!(
            "{} render --source {} --deploy {} {extra}",
            bin.display(),
            fixtures.display(),
            tmp.path().join(deploy).display()
        );
        let out = Command::new("script")
            .args(["-q", "-e", "-c", &command, "/dev/null"])
            .env("STARMAP_PROGRESS_AFTER_MS", "0")
            .env("STARMAP_BUILD_CACHE", "off")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@starmap.invalid")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@starmap.invalid")
            .output()
            .expect("util-linux `script` runs");
        assert!(out.status.success(), "{}{}", text(&out.stdout), text(&out.stderr));
        text(&out.stdout)
    };
    let terminal = on_a_terminal("tty", "");
    assert!(terminal.contains("rendering clusters"), "{terminal}");
    assert!(terminal.contains("committed"), "{terminal}");
    let json = on_a_terminal("tty-json", "-o json");
    assert!(!json.contains("rendering clusters"), "{json}");

    let piped = starmap()
        .env("STARMAP_PROGRESS_AFTER_MS", "0")
        .args(["render", "--source"])
        .arg(&fixtures)
        .arg("--deploy")
        .arg(tmp.path().join("piped"))
        .output()
        .unwrap();
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    for stream in [&piped.stdout, &piped.stderr] {
        assert!(!text(stream).contains("rendering clusters"), "{}", text(stream));
    }
}
