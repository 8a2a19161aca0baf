//! Bad inputs: every realistic mistake a user can commit to a source repo must end in one
//! clear `error: ...` line on stderr, exit code 1, and a deploy repo left exactly as it was.
//!
//! Each case is a small source repo under `tests/data/bad-inputs/<case>/`: a copy of the
//! valid `_good/` source (two clusters, one placement, one customization, three workload
//! objects) with exactly one defect. The few defects that cannot sanely be committed (a
//! symlink leaving the source, a non-UTF-8 file, 100,000 nested brackets) are added by the
//! test to a copy of `_good/` in a temporary directory.
//!
//! Every test:
//! 1. renders `_good/` into a fresh deploy repo, so the repo has a commit;
//! 2. snapshots the deploy repo (refs and work tree);
//! 3. renders the bad source into it;
//! 4. checks exit code 1, empty stdout, and exactly one `error: ` line on stderr naming the
//!    culprit, with no panic, backtrace or internal error;
//! 5. checks the snapshot did not change.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Far above anything a bad input should take; only there so a hang fails instead of
/// blocking the suite.
const TIMEOUT: Duration = Duration::from_secs(120);

/// The clusters of `_good/` (and of every case), in name order.
const CLUSTERS: [&str; 2] = ["lab-1", "store-0001"];

fn case(name: &str) -> PathBuf {
    common::data(&format!("bad-inputs/{name}"))
}

fn good() -> PathBuf {
    case("_good")
}

/// A copy of `_good/` in a temporary directory, for defects built at run time. The
/// temporary directory also has room beside the source (`outside/`) for files that must not
/// be part of it.
fn good_copy() -> (TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    common::copy_dir(&good(), &source);
    (tmp, source)
}

/// Run `starmap <args>` with backtraces requested, so that a panic would show one.
fn run(args: &[&str], source: &Path, deploy: Option<&Path>) -> Output {
    let mut cmd = common::starmap();
    cmd.env("RUST_BACKTRACE", "1")
        .timeout(TIMEOUT)
        .args(args)
        .arg("--source")
        .arg(source);
    if let Some(deploy) = deploy {
        cmd.arg("--deploy").arg(deploy);
    }
    cmd.output().unwrap()
}

/// Exit code 1, nothing on stdout, exactly one line on stderr that starts with `error: `
/// and is not a panic. Returns that line.
fn one_error_line(out: &Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{what}: exit code must be 1\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stdout.trim().is_empty(),
        "{what}: stdout must be empty on an error, got:\n{stdout}"
    );
    for bad in ["panicked", "RUST_BACKTRACE", "internal error", "stack backtrace"] {
        assert!(!stderr.contains(bad), "{what}: stderr contains {bad:?}:\n{stderr}");
    }
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{what}: stderr must be exactly one line, got {}:\n{stderr}",
        lines.len()
    );
    assert!(
        stderr.ends_with('\n'),
        "{what}: the error line must end with a newline: {stderr:?}"
    );
    let line = lines[0].to_string();
    assert!(
        line.starts_with("error: "),
        "{what}: stderr must start with `error: `: {line}"
    );
    line
}

/// Render `_good/` into a fresh deploy repo, then render `source` into it: it must fail
/// cleanly and change nothing. Returns the error line.
fn render_fails(source: &Path) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    common::render(&good(), &deploy);
    assert_eq!(
        common::commit_count(&deploy, "refs/heads/main"),
        1,
        "the good render made one commit"
    );
    let before = common::snapshot(&deploy);
    assert!(
        !before.refs.is_empty() && !before.files.is_empty(),
        "the good render wrote something"
    );

    let out = run(&["render"], source, Some(&deploy));
    let line = one_error_line(&out, &format!("render --source {}", source.display()));

    let after = common::snapshot(&deploy);
    assert!(
        after.refs == before.refs,
        "a failed render moved refs: {:?} -> {:?}",
        before.refs,
        after.refs
    );
    assert!(
        after.files == before.files,
        "a failed render changed the work tree: {:?} -> {:?}",
        before.files.keys().collect::<Vec<_>>(),
        after.files.keys().collect::<Vec<_>>()
    );
    line
}

/// `line` starts with `prefix` (the location, cluster and object part of the error).
#[track_caller]
fn assert_prefix(line: &str, prefix: &str) {
    assert!(
        line.starts_with(prefix),
        "expected the error to start with\n  {prefix}\ngot\n  {line}"
    );
}

#[track_caller]
fn assert_contains(line: &str, parts: &[&str]) {
    for part in parts {
        assert!(line.contains(part), "expected the error to contain {part:?}:\n  {line}");
    }
}

/// The error is `error: <path>:<line>: ...` for this path, with some line number; returns
/// the line (for errors where the contract asks for a line but not which one).
#[track_caller]
fn assert_path_with_line(line: &str, path: &str) -> u32 {
    let prefix = format!("error: {path}:");
    assert_prefix(line, &prefix);
    let rest = &line[prefix.len()..];
    let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    assert!(
        !digits.is_empty() && rest[digits.len()..].starts_with(": "),
        "expected `{path}:<line>: ` at the start of:\n  {line}"
    );
    let n: u32 = digits.parse().unwrap();
    assert!(n >= 1, "line numbers are 1-based: {line}");
    n
}

/// The error names one of the source's clusters (any of them: used where every cluster fails
/// alike; which one is reported is checked by
/// `an_error_on_several_clusters_names_the_first_cluster_every_time`).
#[track_caller]
fn assert_names_a_cluster(line: &str) {
    assert!(
        CLUSTERS
            .iter()
            .any(|c| line.contains(&format!("cluster {c}, ")) || line.contains(&format!("cluster {c}: "))),
        "expected the error to name the cluster (`cluster <name>`):\n  {line}"
    );
}

// ---------------------------------------------------------------------------------------
// YAML that does not parse, or parses into something that is not an object.

#[test]
fn malformed_yaml_names_file_and_line() {
    // `image: nginx: 1.27` (line 20): a second `: ` in a plain scalar.
    let line = render_fails(&case("malformed-yaml"));
    assert_prefix(&line, "error: workloads/web/deployment.yaml:20: ");
    assert_contains(&line, &["invalid YAML"]);
}

#[test]
fn duplicate_keys_in_one_mapping_name_the_second_key_line() {
    // `labels: {app: web, app: storefront}`, the second `app` on line 8.
    let line = render_fails(&case("duplicate-keys"));
    assert_prefix(&line, "error: workloads/web/deployment.yaml:8: ");
    assert_contains(&line, &["duplicate", "app"]);
}

#[test]
fn yaml_alias_bomb_is_rejected_quickly_with_a_readable_message() {
    // Nine levels of anchors, each nine times the one before: 9^9 "lol"s if expanded.
    let started = Instant::now();
    let line = render_fails(&case("alias-bomb"));
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_secs(30),
        "an alias bomb must be rejected, not expanded ({elapsed:?})"
    );
    assert_path_with_line(&line, "workloads/web/lol.yaml");
    assert_contains(&line, &["invalid YAML"]);
    // The message must not be cut off in the middle (a dangling "(used" and the like).
    let opened = line.matches('(').count();
    let closed = line.matches(')').count();
    assert_eq!(
        opened, closed,
        "unbalanced parentheses: the message was cut off:\n  {line}"
    );
}

#[test]
fn deeply_nested_yaml_fails_fast_naming_file_and_line() {
    // 100,000 `[` on one line: built at run time, as a 100 KB line of brackets is not a
    // file anyone would read in a review.
    let (_tmp, source) = good_copy();
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\n  namespace: web\ndata:\n  x: {}\n",
        "[".repeat(100_000)
    );
    std::fs::write(source.join("workloads/web/deep.yaml"), text).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    common::render(&good(), &deploy);
    let before = common::snapshot(&deploy);
    let started = Instant::now();
    let out = run(&["render"], &source, Some(&deploy));
    let elapsed = started.elapsed();
    let line = one_error_line(&out, "render of 100,000 nested brackets");
    assert!(
        elapsed < Duration::from_secs(5),
        "deep nesting must fail fast, took {elapsed:?}"
    );
    assert_prefix(&line, "error: workloads/web/deep.yaml:7: ");
    assert_contains(&line, &["invalid YAML"]);
    assert_eq!(
        common::snapshot(&deploy),
        before,
        "a failed render changed the deploy repo"
    );
}

#[test]
fn non_utf8_file_names_file_and_line() {
    // Latin-1 "Café crème" on line 7: built at run time, as an invalid UTF-8 file in the
    // repository would be mangled by editors and tools.
    let (_tmp, source) = good_copy();
    let mut bytes = b"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: menu\n  namespace: web\ndata:\n".to_vec();
    bytes.extend_from_slice(b"  TODAY: \"Caf\xe9 cr\xe8me\"\n");
    std::fs::write(source.join("workloads/web/menu.yaml"), bytes).unwrap();
    let line = render_fails(&source);
    assert_prefix(&line, "error: workloads/web/menu.yaml:7: ");
    assert_contains(&line, &["UTF-8"]);
}

#[test]
fn symlink_pointing_outside_the_source_is_rejected() {
    // Built at run time: a committed symlink would point at a path of the machine it was
    // made on. The target is a valid ConfigMap beside the source, so only the link is wrong.
    let (tmp, source) = good_copy();
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let target = outside.join("secret.yaml");
    std::fs::write(
        &target,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: smuggled\n  namespace: web\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(&target, source.join("workloads/web/extra.yaml")).unwrap();
    let line = render_fails(&source);
    assert_prefix(&line, "error: workloads/web/extra.yaml");
    assert_contains(&line, &["symlink", "outside the source"]);
}

#[test]
fn document_that_is_not_a_mapping_names_file_and_line() {
    // The second document of namespace.yaml (line 6) is a sequence.
    let line = render_fails(&case("not-a-mapping"));
    assert_prefix(&line, "error: workloads/web/namespace.yaml:6: ");
    assert_contains(&line, &["mapping", "sequence"]);
}

#[test]
fn document_without_kind_names_file_and_line() {
    let line = render_fails(&case("no-kind"));
    assert_prefix(&line, "error: workloads/web/service.yaml:1: ");
    assert_contains(&line, &["kind"]);
}

/// A document with a kind but no `metadata.name` is not a Kubernetes object (tool
/// configuration such as `.fluxschema.yml` looks like that): it is skipped, never silently,
/// with a warning naming the file and line, so a misspelled `metadata` is still seen.
#[test]
fn workload_without_metadata_name_is_skipped_with_a_warning_naming_file_and_line() {
    let out = common::starmap()
        .args(["validate", "--source"])
        .arg(case("no-metadata-name"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("warning: workloads/web/service.yaml:1: skipped: Service has no metadata.name"),
        "{stdout}"
    );
}

// ---------------------------------------------------------------------------------------
// Spec objects: unknown fields, bad names, references to nothing.

#[test]
fn unknown_field_in_placement_spec_names_the_field_line() {
    // `suspnd: true` (line 13), a typo of `suspend`.
    let line = render_fails(&case("placement-unknown-field"));
    assert_prefix(&line, "error: placements/web.yaml:13: ");
    assert_contains(&line, &["unknown field", "suspnd"]);
}

#[test]
fn unknown_field_in_cluster_names_the_field_line() {
    // `propertes:` (line 10), a typo of `properties:`, whose value is a mapping on lines 11-12.
    let line = render_fails(&case("cluster-unknown-field"));
    assert_prefix(&line, "error: inventory/stores.yaml:10: ");
    assert_contains(&line, &["unknown field", "propertes"]);
}

#[test]
fn unknown_key_in_starmap_yaml_names_the_key_line() {
    let line = render_fails(&case("starmap-yaml-unknown-key"));
    assert_prefix(&line, "error: starmap.yaml:4: ");
    assert_contains(&line, &["unknown field", "ignoreMissing"]);
}

#[test]
fn cluster_name_with_slash_is_rejected() {
    let line = render_fails(&case("cluster-name-slash"));
    assert_path_with_line(&line, "inventory/stores.yaml");
    assert_contains(
        &line,
        &["inventory/stores.yaml:4:", "\"us-east/store-0001\"", "RFC 1123"],
    );
}

#[test]
fn cluster_name_dotdot_is_rejected() {
    let line = render_fails(&case("cluster-name-dotdot"));
    assert_path_with_line(&line, "inventory/stores.yaml");
    assert_contains(&line, &["inventory/stores.yaml:4:", "\"..\"", "RFC 1123"]);
}

#[test]
fn duplicate_cluster_name_across_files_names_both_files() {
    // store-0001 in inventory/stores.yaml and again in inventory/us-east.yaml (its name on line 18).
    let line = render_fails(&case("duplicate-cluster-name"));
    assert_path_with_line(&line, "inventory/us-east.yaml");
    assert_contains(
        &line,
        &[
            "inventory/us-east.yaml:18",
            "inventory/stores.yaml:4",
            "\"store-0001\"",
            "duplicate",
        ],
    );
}

#[test]
fn unknown_api_version_is_rejected() {
    let line = render_fails(&case("unknown-api-version"));
    assert_prefix(&line, "error: placements/web.yaml:2: ");
    assert_contains(&line, &["starmap.dev/v2", "starmap.dev/v1alpha1"]);
}

#[test]
fn placement_naming_unknown_cluster_is_rejected() {
    // `clusters: [lab-1, lab-2]`: lab-2 is not in the inventory.
    let line = render_fails(&case("placement-unknown-cluster"));
    assert_path_with_line(&line, "placements/web.yaml");
    assert_contains(
        &line,
        &[
            "placements/web.yaml:10:",
            "\"lab-2\"",
            "not in the inventory",
            "spec.clusters[1]",
        ],
    );
}

#[test]
fn customization_naming_unknown_cluster_is_rejected() {
    // `clusters: [store-0001, store-0002]`: store-0002 is not in the inventory.
    let line = render_fails(&case("customization-unknown-cluster"));
    assert_path_with_line(&line, "customizations/web-replicas.yaml");
    assert_contains(
        &line,
        &[
            "customizations/web-replicas.yaml:6:",
            "\"store-0002\"",
            "not in the inventory",
            "spec.clusters[1]",
        ],
    );
}

#[test]
fn object_test_with_no_field_is_rejected() {
    // `workloads: [{paths: [...]}, {}]`: the `{}` would place every object.
    let line = render_fails(&case("empty-object-test"));
    assert_path_with_line(&line, "placements/web.yaml");
    assert_contains(
        &line,
        &["placements/web.yaml:13:", "spec.workloads[1]", "at least one field"],
    );
}

#[test]
fn label_selector_in_without_values_is_rejected() {
    let line = render_fails(&case("selector-in-without-values"));
    assert_path_with_line(&line, "placements/web.yaml");
    assert_contains(
        &line,
        &[
            "placements/web.yaml:8:",
            "spec.clusterSelectors[0]",
            "matchExpressions[0]",
            "In",
            "at least one value",
        ],
    );
}

#[test]
fn duplicate_identity_from_two_files_names_both_source_paths() {
    // Deployment web/web in workloads/web/deployment.yaml and workloads/web/legacy/deployment.yaml,
    // both placed by `workloads/web/**` on both clusters.
    let line = render_fails(&case("duplicate-identity"));
    assert_names_a_cluster(&line);
    assert_contains(
        &line,
        &[
            "workloads/web/deployment.yaml",
            "workloads/web/legacy/deployment.yaml",
            "Deployment/web/web",
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Templates and customizations: errors found while rendering one cluster.

#[test]
fn undefined_template_variable_names_object_cluster_and_text() {
    // `cluster.properties.displayName` is set on store-0001 only, so lab-1 fails (line 11).
    let line = render_fails(&case("undefined-template-variable"));
    assert_prefix(
        &line,
        "error: workloads/web/configmap.yaml:11: cluster lab-1, ConfigMap/web/web-config: ",
    );
    assert_contains(&line, &["Northwind {{ cluster.properties.displayName }}", "undefined"]);
}

#[test]
fn template_syntax_error_names_object_and_text() {
    // `{{ cluster.properties.storeId | }}`: a pipe with no filter (line 10). It fails on
    // every cluster alike, so no cluster needs naming.
    let line = render_fails(&case("template-syntax-error"));
    assert_prefix(&line, "error: workloads/web/configmap.yaml:10: ");
    assert_contains(
        &line,
        &[
            "ConfigMap/web/web-config",
            "Welcome to store {{ cluster.properties.storeId | }}",
            "syntax error",
        ],
    );
}

#[test]
fn runaway_template_is_stopped_by_fuel() {
    // Nested loops of 100,000 each (line 10).
    let started = Instant::now();
    let line = render_fails(&case("runaway-template"));
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "the fuel limit must stop the loop"
    );
    assert_prefix(&line, "error: workloads/web/configmap.yaml:10: cluster ");
    assert_names_a_cluster(&line);
    assert_contains(
        &line,
        &[
            "ConfigMap/web/web-config",
            "{% for i in range(100000) %}{% for j in range(100000) %}",
            "fuel",
        ],
    );
}

#[test]
fn template_output_too_large_is_rejected() {
    // `{{ 'x' * 5000000 }} tail` (line 10): 5 MB from one string leaf.
    let line = render_fails(&case("template-output-too-large"));
    assert_prefix(&line, "error: workloads/web/configmap.yaml:10: cluster ");
    assert_names_a_cluster(&line);
    assert_contains(
        &line,
        &["ConfigMap/web/web-config", "{{ 'x' * 5000000 }} tail", "larger than"],
    );
}

#[test]
fn failing_replace_patch_names_customization_index_object_and_cluster() {
    // patches[1] (line 16) replaces /spec/template/spec/nodeSelector/zone, which does not
    // exist; the customization reaches the edge store only.
    let line = render_fails(&case("patch-replace-missing-path"));
    assert_prefix(
        &line,
        "error: customizations/web-replicas.yaml:16: cluster store-0001, Deployment/web/web: ",
    );
    assert_contains(
        &line,
        &[
            "customization \"web-replicas\"",
            "patches[1]",
            "/spec/template/spec/nodeSelector/zone",
        ],
    );
}

#[test]
fn failing_test_op_names_customization_index_object_and_cluster() {
    // patches[0] (line 13) tests /spec/replicas == 3; the Deployment says 1.
    let line = render_fails(&case("patch-test-fails"));
    assert_prefix(
        &line,
        "error: customizations/web-replicas.yaml:13: cluster store-0001, Deployment/web/web: ",
    );
    assert_contains(
        &line,
        &["customization \"web-replicas\"", "patches[0]", "test", "/spec/replicas"],
    );
}

#[test]
fn an_error_on_several_clusters_names_the_first_cluster_every_time() {
    // `cluster.properties.displayName` is set on no cluster, so both fail. lab-1 renders a
    // slow lab-only ConfigMap first (workloads/lab/fixtures.yaml), so store-0001 fails
    // sooner in wall time. The renderer promises "the error of the first cluster (in name
    // order)": lab-1, every time, whatever the thread timing, or CI logs and `plan` comments
    // flap between runs.
    let source = case("fails-on-every-cluster");
    let expected = "error: workloads/web/configmap.yaml:10: cluster lab-1, ConfigMap/web/web-config: \
                    template \"Northwind {{ cluster.properties.displayName }}\": ";
    let mut seen = std::collections::BTreeSet::new();
    seen.insert(render_fails(&source));
    for _ in 0..8 {
        seen.insert(one_error_line(&run(&["validate"], &source, None), "validate"));
    }
    assert_eq!(
        seen.len(),
        1,
        "the same bad input gave different errors across runs: {seen:#?}"
    );
    assert_prefix(seen.first().unwrap(), expected);
}

// ---------------------------------------------------------------------------------------
// `validate` and `plan` report the same errors.

/// `validate` fails with exactly the line `render` printed.
fn validate_gives(source: &Path, render_line: &str) {
    let out = run(&["validate"], source, None);
    let line = one_error_line(&out, "validate");
    assert_eq!(line, render_line, "validate and render must report the same error");
}

#[test]
fn validate_reports_malformed_yaml_like_render() {
    let source = case("malformed-yaml");
    validate_gives(&source, &render_fails(&source));
}

#[test]
fn validate_reports_undefined_template_variable_like_render() {
    let source = case("undefined-template-variable");
    validate_gives(&source, &render_fails(&source));
}

#[test]
fn validate_reports_duplicate_identity_like_render() {
    let source = case("duplicate-identity");
    validate_gives(&source, &render_fails(&source));
}

#[test]
fn plan_exits_1_not_2_on_an_error_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    common::render(&good(), &deploy);
    let before = common::snapshot(&deploy);
    for source in [case("patch-replace-missing-path"), case("malformed-yaml")] {
        let render_line = render_fails(&source);
        for args in [
            &["plan"][..],
            &["plan", "--detailed-exitcode"][..],
            &["plan", "--diff"][..],
        ] {
            let out = run(args, &source, Some(&deploy));
            let line = one_error_line(&out, &format!("{args:?} --source {}", source.display()));
            assert_eq!(line, render_line, "{args:?} and render must report the same error");
        }
    }
    assert_eq!(
        common::snapshot(&deploy),
        before,
        "a failed plan changed the deploy repo"
    );
}

#[test]
fn plan_without_a_deploy_repo_exits_1_on_an_error() {
    // `plan` against a deploy path that does not exist yet must not create it either.
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("no-deploy-yet");
    let out = run(
        &["plan", "--detailed-exitcode"],
        &case("undefined-template-variable"),
        Some(&deploy),
    );
    let line = one_error_line(&out, "plan against a missing deploy repo");
    assert_prefix(
        &line,
        "error: workloads/web/configmap.yaml:11: cluster lab-1, ConfigMap/web/web-config: ",
    );
    assert!(!deploy.exists(), "plan must not create the deploy repo");
}

#[test]
fn render_failing_at_load_does_not_create_the_deploy_repo() {
    // An input error is found before anything is written: a deploy path that does not exist
    // is not created for a render that fails at load.
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    let out = run(&["render"], &case("malformed-yaml"), Some(&deploy));
    let line = one_error_line(&out, "render into a missing deploy path");
    assert_prefix(&line, "error: workloads/web/deployment.yaml:20: ");
    assert!(
        !deploy.exists(),
        "a render that failed at load created {}",
        deploy.display()
    );
}

// ---------------------------------------------------------------------------------------
// Hostile inputs (api.md §7): bytes no editor shows, sizes no review catches, names that
// would escape or collide, templates that try to run away, Secrets in plaintext. Built at run
// time from `_good/` (with `files` written over it), so each case is one readable line here.

/// `_good/` with `files` (path, bytes) written over it, rendered into a deploy repo that has a
/// commit: it must fail cleanly and leave the repo as it was. Returns the error line.
fn render_fails_with(files: &[(&str, &[u8])]) -> String {
    let (_tmp, source) = good_copy();
    for (path, bytes) in files {
        let path = source.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    render_fails(&source)
}

/// A ConfigMap in namespace web whose `data` is `body` (indented by the caller).
fn config_map(name: &str, body: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: web\ndata:\n{body}")
}

const TEMPLATED: &str = "  annotations:\n    starmap.dev/template: \"true\"\n";

/// A templated ConfigMap whose `data.value` is `template` (line 9 of its file).
fn templated(template: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: t\n  namespace: web\n{TEMPLATED}data:\n  value: {}\n",
        serde_json::to_string(template).unwrap()
    )
}

#[test]
fn crlf_file_with_a_duplicate_key_names_the_right_line() {
    let text = config_map("crlf", "  a: \"1\"\n  b: \"2\"\n  a: \"3\"\n").replace('\n', "\r\n");
    let line = render_fails_with(&[("workloads/web/crlf.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/crlf.yaml:9: ");
    assert_contains(&line, &["duplicate", "a"]);
}

#[test]
fn file_with_a_byte_order_mark_and_an_error_names_the_right_line() {
    let text = format!("\u{feff}{}", config_map("bom", "  ok: \"1\"\n  bad: [unclosed\n"));
    let line = render_fails_with(&[("workloads/web/bom.yaml", text.as_bytes())]);
    assert_path_with_line(&line, "workloads/web/bom.yaml");
    assert_contains(&line, &["invalid YAML"]);
}

#[test]
fn nul_byte_in_a_scalar_is_an_error_naming_file_and_line() {
    let text = config_map("nul", "  ok: \"1\"\n  bad: a\0b\n");
    let line = render_fails_with(&[("workloads/web/nul.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/nul.yaml:8: ");
    assert_contains(&line, &["invalid YAML"]);
}

#[test]
fn tab_indentation_names_file_and_line() {
    let text = config_map("tabs", "  a: \"1\"\n\tb: \"2\"\n");
    let line = render_fails_with(&[("workloads/web/tabs.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/tabs.yaml:8: ");
    assert_contains(&line, &["invalid YAML"]);
}

#[test]
fn unterminated_quoted_string_names_file_and_line() {
    let text = config_map("quote", "  a: \"1\"\n  b: \"never closed\n  c: \"3\"\n");
    let line = render_fails_with(&[("workloads/web/quote.yaml", text.as_bytes())]);
    assert_path_with_line(&line, "workloads/web/quote.yaml");
    assert_contains(&line, &["invalid YAML"]);
}

#[test]
fn invalid_escape_in_a_double_quoted_string_names_file_and_line() {
    let text = config_map("escape", "  a: \"1\"\n  b: \"bad \\q escape\"\n");
    let line = render_fails_with(&[("workloads/web/escape.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/escape.yaml:8: ");
    assert_contains(&line, &["invalid YAML"]);
}

#[test]
fn quadratic_alias_expansion_is_rejected_quickly() {
    // One anchor of 1,000 items referenced 10,000 times: 10 million nodes if expanded.
    let mut text = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: q\n  namespace: web\nx: &a [");
    text.push_str(&vec!["x"; 1000].join(", "));
    text.push_str("]\ny: [");
    text.push_str(&vec!["*a"; 10_000].join(", "));
    text.push_str("]\n");
    let started = Instant::now();
    let line = render_fails_with(&[("workloads/web/q.yaml", text.as_bytes())]);
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    assert_path_with_line(&line, "workloads/web/q.yaml");
    assert_contains(&line, &["invalid YAML"]);
}

#[test]
fn deeply_nested_block_mappings_fail_fast() {
    let mut text = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deep\n  namespace: web\ndata:\n");
    for depth in 0..5_000 {
        text.push_str(&" ".repeat(depth + 1));
        text.push_str("k:\n");
    }
    let started = Instant::now();
    let line = render_fails_with(&[("workloads/web/deep.yaml", text.as_bytes())]);
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    assert_path_with_line(&line, "workloads/web/deep.yaml");
    assert_contains(&line, &["invalid YAML"]);
}

#[test]
fn a_source_file_over_the_size_limit_is_refused_before_it_is_read() {
    // 17 MiB of comment: any YAML reader would take it; starmap does not read it at all.
    let mut text = config_map("huge", "  a: \"1\"\n").into_bytes();
    let padding = format!("#{}\n", "p".repeat(30));
    text.extend(std::iter::repeat_n(padding.as_bytes(), 17 << 15).flatten());
    let line = render_fails_with(&[("workloads/web/huge.yaml", &text)]);
    assert_prefix(&line, "error: workloads/web/huge.yaml: file is 17.0 MiB");
    assert_contains(&line, &["at most 16 MiB", "ignore:"]);
}

#[test]
fn a_huge_scalar_makes_an_object_the_api_server_would_refuse() {
    let text = config_map("big", &format!("  blob: {}\n", "x".repeat(4 << 20)));
    let line = render_fails_with(&[("workloads/web/big.yaml", text.as_bytes())]);
    assert_prefix(
        &line,
        "error: workloads/web/big.yaml:1: cluster lab-1, ConfigMap/web/big: ",
    );
    assert_contains(&line, &["4.0 MiB", "at most 3 MiB"]);
}

#[test]
fn a_duplicate_key_in_a_json_file_names_file_and_line() {
    let text = "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"ConfigMap\",\n  \"metadata\": {\"name\": \"j\", \"namespace\": \"web\"},\n  \"kind\": \"Secret\"\n}\n";
    let line = render_fails_with(&[("workloads/web/dup.json", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/dup.json:5: ");
    assert_contains(&line, &["duplicate", "kind"]);
}

#[test]
fn trailing_garbage_after_json_names_file_and_line() {
    let text = "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"j\", \"namespace\": \"web\"}}\n}\n";
    let line = render_fails_with(&[("workloads/web/garbage.json", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/garbage.json:2: ");
    assert_contains(&line, &["invalid YAML"]);
}

#[test]
fn invalid_utf8_in_starmap_yaml_names_the_file() {
    let line = render_fails_with(&[("starmap.yaml", b"# caf\xe9\nignore: []\n")]);
    assert_prefix(&line, "error: starmap.yaml:1: ");
    assert_contains(&line, &["UTF-8"]);
}

#[test]
fn an_invalid_file_left_out_by_ignore_is_not_read() {
    // The counterpart of the cases above: what `ignore:` leaves out cannot fail a render.
    let (_tmp, source) = good_copy();
    std::fs::create_dir_all(source.join("drafts")).unwrap();
    std::fs::write(source.join("drafts/latin1.yaml"), b"name: caf\xe9\n").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    common::render(&source, &tmp.path().join("deploy"));
}

// Names: too long, not strings, escaping their directory, colliding once encoded.

#[test]
fn an_object_name_over_253_characters_is_refused_before_anything_is_written() {
    let text = config_map(&"n".repeat(300), "  a: \"1\"\n");
    let line = render_fails_with(&[("workloads/web/long.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/long.yaml:4: ");
    assert_contains(&line, &["300 characters", "at most 253"]);
}

#[test]
fn a_namespace_that_is_not_a_dns_label_is_refused() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: Web_Team\n";
    let line = render_fails_with(&[("workloads/web/ns.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/ns.yaml:5: ConfigMap/Web_Team/cm: ");
    assert_contains(&line, &["metadata.namespace", "Web_Team", "RFC 1123"]);
}

#[test]
fn a_name_that_is_a_number_is_an_error_not_a_skip() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: 123\n  namespace: web\n";
    let line = render_fails_with(&[("workloads/web/num.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/num.yaml:1: ");
    assert_contains(&line, &["metadata.name", "must be a string", "number"]);
}

#[test]
fn a_namespace_that_is_a_mapping_is_an_error() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm\n  namespace: {a: b}\n";
    let line = render_fails_with(&[("workloads/web/nsmap.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/nsmap.yaml:1: ");
    assert_contains(&line, &["metadata.namespace", "must be a string"]);
}

#[test]
fn a_name_with_a_slash_cannot_escape_its_directory() {
    let text = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ../../etc/passwd\n  namespace: web\n";
    let line = render_fails_with(&[("workloads/web/slash.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/slash.yaml:4: ");
    assert_contains(&line, &["not a valid object name"]);
}

#[test]
fn a_templated_name_that_would_escape_its_directory_is_refused() {
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"{{{{ '../' ~ cluster.name }}}}\"\n  namespace: web\n{TEMPLATED}"
    );
    let line = render_fails_with(&[("workloads/web/tname.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/tname.yaml:1: cluster lab-1, ");
    assert_contains(&line, &["not a valid object name", "../lab-1"]);
}

#[test]
fn kinds_that_differ_only_in_case_collide_after_file_name_encoding() {
    let a = "apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n  namespace: web\n";
    let b = "apiVersion: example.com/v1\nkind: WIDGET\nmetadata:\n  name: w\n  namespace: web\n";
    let line = render_fails_with(&[
        ("workloads/web/widget-a.yaml", a.as_bytes()),
        ("workloads/web/widget-b.yaml", b.as_bytes()),
    ]);
    assert_path_with_line(&line, "workloads/web/widget-b.yaml");
    assert_contains(
        &line,
        &[
            "Widget/web/w",
            "WIDGET/web/w",
            "same file",
            "web/widget.example.com_w.yaml",
        ],
    );
}

#[test]
fn two_templated_names_that_meet_on_a_cluster_collide() {
    // Distinct in the source, equal once rendered for lab-1 (storeId 9001).
    let one = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: \"store-{{{{ cluster.properties.storeId }}}}\"\n  namespace: web\n{TEMPLATED}"
    );
    let two = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: store-9001\n  namespace: web\n";
    let line = render_fails_with(&[
        ("workloads/web/one.yaml", one.as_bytes()),
        ("workloads/web/two.yaml", two.as_bytes()),
    ]);
    assert_contains(&line, &["cluster lab-1", "ConfigMap/web/store-9001", "same file"]);
}

#[test]
fn a_placement_name_too_long_for_its_file_is_refused() {
    let name = format!(
        "{}.{}.{}.{}",
        "a".repeat(63),
        "b".repeat(63),
        "c".repeat(63),
        "d".repeat(62)
    );
    let text = std::fs::read_to_string(good().join("placements/web.yaml"))
        .unwrap()
        .replace("name: web", &format!("name: {name}"));
    let line = render_fails_with(&[("placements/web.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: placements/web.yaml:5: ");
    assert_contains(&line, &["254 characters", "at most 250"]);
}

// Templates hostile to the engine: valid YAML, every one, and each stopped with its place.

#[test]
fn a_string_repeated_a_hundred_million_times_is_stopped_by_the_budget() {
    let text = templated("{{ 'x' * 100000000 }}");
    let line = render_fails_with(&[("workloads/web/t.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/t.yaml:9: cluster lab-1, ConfigMap/web/t: ");
    assert_contains(&line, &["budget"]);
}

#[test]
fn a_string_doubled_in_a_loop_is_stopped_while_it_grows() {
    let text = templated(
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
    );
    let started = Instant::now();
    let line = render_fails_with(&[("workloads/web/t.yaml", text.as_bytes())]);
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    assert_prefix(&line, "error: workloads/web/t.yaml:9: cluster lab-1, ConfigMap/web/t: ");
    assert_contains(&line, &["budget"]);
}

#[test]
fn a_recursive_macro_is_stopped() {
    let text = templated("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
    let line = render_fails_with(&[("workloads/web/t.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/t.yaml:9: cluster lab-1, ConfigMap/web/t: ");
    assert_contains(&line, &["recursion limit"]);
}

#[test]
fn a_template_that_includes_a_file_is_refused() {
    let text = templated("{% include '/etc/passwd' %}");
    let line = render_fails_with(&[("workloads/web/t.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/t.yaml:9: cluster lab-1, ConfigMap/web/t: ");
    assert_contains(&line, &["template not found"]);
}

#[test]
fn a_division_by_zero_in_a_template_names_its_place() {
    let text = templated("{{ (cluster.properties.storeId | int) // 0 }}");
    let line = render_fails_with(&[("workloads/web/t.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/t.yaml:9: cluster lab-1, ConfigMap/web/t: ");
    assert_contains(&line, &["template"]);
}

#[test]
fn a_huge_range_in_a_template_is_refused() {
    let text = templated("{% for i in range(1000000000) %}x{% endfor %}");
    let line = render_fails_with(&[("workloads/web/t.yaml", text.as_bytes())]);
    assert_prefix(&line, "error: workloads/web/t.yaml:9: cluster lab-1, ConfigMap/web/t: ");
    assert_contains(&line, &["range has too many elements"]);
}

#[test]
fn a_runaway_flux_template_override_is_stopped() {
    let text =
        "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}\n";
    let line = render_fails_with(&[
        ("starmap.yaml", b"deploy: {url: https://git.example.com/deploy.git}\n"),
        ("templates/flux-sync.yaml.j2", text.as_bytes()),
    ]);
    assert_prefix(&line, "error: templates/flux-sync.yaml.j2:1: cluster lab-1: ");
    assert_contains(&line, &["fuel"]);
}

#[test]
fn an_argocd_template_override_with_too_much_output_is_stopped() {
    // 1.1 MB in one step: within the fuel (a unit per 64 bytes), past the output cap.
    let text = "{{ 'x' * 1100000 }}\n";
    let line = render_fails_with(&[
        ("starmap.yaml", b"deploy: {url: https://git.example.com/deploy.git}\n"),
        ("templates/argocd-applicationset.yaml.j2", text.as_bytes()),
    ]);
    assert_prefix(&line, "error: templates/argocd-applicationset.yaml.j2:");
    assert_contains(&line, &["output is larger than"]);
}

// Secrets (api.md §7).

#[test]
fn a_plaintext_secret_is_refused_naming_its_data() {
    let text =
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: web\ndata:\n  password: aHVudGVyMg==\n";
    let line = render_fails_with(&[("workloads/web/secret.yaml", text.as_bytes())]);
    assert_prefix(
        &line,
        "error: workloads/web/secret.yaml:6: Secret/web/db: a Secret with plaintext in data",
    );
    assert_contains(&line, &["encrypt it with SOPS", "allowPlaintext"]);
}

#[test]
fn a_plaintext_secret_in_a_list_names_its_item() {
    let text = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {name: a, namespace: web}\n- apiVersion: v1\n  kind: Secret\n  metadata: {name: b, namespace: web}\n  stringData:\n    token: abc\n";
    let line = render_fails_with(&[("workloads/web/list.yaml", text.as_bytes())]);
    assert_prefix(
        &line,
        "error: workloads/web/list.yaml:10: Secret/web/b: a Secret with plaintext in stringData",
    );
}

#[test]
fn a_customization_that_fills_a_secret_with_plaintext_is_refused() {
    let secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: filled\n  namespace: web\n";
    let customization = "apiVersion: starmap.dev/v1alpha1\nkind: Customization\nmetadata:\n  name: fill\nspec:\n  targets:\n  - kinds: [Secret]\n  merge:\n    stringData:\n      token: \"{{ cluster.properties.storeId }}\"\n";
    let line = render_fails_with(&[
        ("workloads/web/filled.yaml", secret.as_bytes()),
        ("customizations/fill.yaml", customization.as_bytes()),
    ]);
    assert_prefix(
        &line,
        "error: workloads/web/filled.yaml:1: cluster lab-1, Secret/web/filled: ",
    );
    assert_contains(&line, &["customizations [\"fill\"]", "plaintext in stringData"]);
}

#[test]
fn a_sops_secret_marked_as_a_template_is_refused() {
    let encrypted = std::fs::read_to_string(common::data("sops/secret.enc.yaml"))
        .unwrap()
        .replacen(
            "    labels:\n",
            "    annotations:\n        starmap.dev/template: \"true\"\n    labels:\n",
            1,
        );
    let line = render_fails_with(&[("workloads/web/secret.enc.yaml", encrypted.as_bytes())]);
    assert_prefix(
        &line,
        "error: workloads/web/secret.enc.yaml:1: Secret/pos/db-credentials: ",
    );
    assert_contains(&line, &["encrypted with SOPS", "starmap.dev/template"]);
}

#[test]
fn a_patch_that_would_change_a_sops_secret_is_refused() {
    let encrypted = std::fs::read(common::data("sops/secret.enc.yaml")).unwrap();
    let customization = "apiVersion: starmap.dev/v1alpha1\nkind: Customization\nmetadata:\n  name: rename\nspec:\n  targets:\n  - kinds: [Secret]\n  patches:\n  - op: replace\n    path: /metadata/labels/app\n    value: till\n";
    let line = render_fails_with(&[
        ("workloads/web/secret.enc.yaml", &encrypted),
        ("customizations/rename.yaml", customization.as_bytes()),
    ]);
    assert_prefix(&line, "error: customizations/rename.yaml:");
    assert_contains(
        &line,
        &[
            "cluster lab-1, Secret/pos/db-credentials",
            "customization \"rename\"",
            "encrypted with SOPS",
        ],
    );
}

#[test]
fn allow_plaintext_that_is_not_a_boolean_names_its_line() {
    let line = render_fails_with(&[("starmap.yaml", b"ignore: []\nsecrets:\n  allowPlaintext: sometimes\n")]);
    assert_prefix(&line, "error: starmap.yaml:3: ");
    assert_contains(&line, &["allowPlaintext"]);
}

#[test]
fn an_unknown_decryption_provider_names_its_line() {
    let line = render_fails_with(&[("starmap.yaml", b"flux:\n  decryption:\n    provider: vault\n")]);
    assert_prefix(&line, "error: starmap.yaml:3: ");
    assert_contains(&line, &["vault", "sops"]);
}
