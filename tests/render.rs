//! `starmap render` end to end: real sources (the YAML files under `tests/data/render/<case>/`,
//! copied into a temp dir), real git repositories, the real binary, and an independent reader
//! of the result (`kubectl kustomize`, git itself, a YAML parser that is not starmap's).
//!
//! One test per concern of the contract (shared/design/api.md, sections 1–4).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::{commit_count, copy_dir, data, fixtures, git, git_init_commit, snapshot, starmap, tree_files};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// A temp dir holding a copy of a test source (`source/`) and room for deploy repos.
struct Work {
    tmp: tempfile::TempDir,
    src: PathBuf,
    deploy: PathBuf,
}

impl Work {
    /// Copy `tests/data/render/<case>` to `<tmp>/source`. The temp dir is outside any git
    /// work tree, so a plain directory source has no source commit.
    fn new(case: &str) -> Work {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("source");
        std::fs::create_dir_all(&src).unwrap();
        copy_dir(&data(&format!("render/{case}")), &src);
        let deploy = tmp.path().join("deploy");
        Work { tmp, src, deploy }
    }

    /// Copy the files of `tests/data/render/<case>` over the source (a new version of it).
    fn overlay(&self, case: &str) {
        copy_dir(&data(&format!("render/{case}")), &self.src);
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }
}

/// Run starmap with these arguments.
fn run<S: AsRef<OsStr>>(args: &[S]) -> Output {
    starmap().args(args).output().unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Run starmap and return stdout; fail with stderr unless it exits 0.
fn run_ok<S: AsRef<OsStr>>(args: &[S]) -> String {
    let out = run(args);
    assert!(
        out.status.success(),
        "starmap {:?} exited {:?}\nstdout:\n{}\nstderr:\n{}",
        args.iter()
            .map(|a| a.as_ref().to_string_lossy().into_owned())
            .collect::<Vec<_>>(),
        out.status.code(),
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

/// `starmap render --source SRC --deploy DEPLOY EXTRA...`, which must succeed.
fn render(src: impl AsRef<OsStr>, deploy: &Path, extra: &[&str]) -> String {
    let mut args: Vec<std::ffi::OsString> = vec![
        "render".into(),
        "--source".into(),
        src.as_ref().into(),
        "--deploy".into(),
        deploy.into(),
    ];
    args.extend(extra.iter().map(Into::into));
    run_ok(&args)
}

/// Parse YAML with serde-saphyr's own defaults (not starmap's reader).
fn yaml(text: &str) -> Value {
    serde_saphyr::from_str::<Value>(text).unwrap_or_else(|e| panic!("not YAML: {e}\n{text}"))
}

/// Every document of a multi-document stream (as `kubectl kustomize` prints it).
fn yaml_stream(text: &str) -> Vec<Value> {
    let mut docs = Vec::new();
    for part in format!("\n{text}").split("\n---\n") {
        if part.trim().is_empty() {
            continue;
        }
        docs.push(yaml(part));
    }
    docs
}

/// The files of the deploy branch tip.
fn tip(deploy: &Path) -> BTreeMap<String, String> {
    tree_files(deploy, "refs/heads/main")
}

fn file<'a>(files: &'a BTreeMap<String, String>, path: &str) -> &'a str {
    files.get(path).unwrap_or_else(|| {
        panic!(
            "no {path} in the deploy repo; it has:\n{}",
            files.keys().cloned().collect::<Vec<_>>().join("\n")
        )
    })
}

/// `resources:` of `clusters/<cluster>/kustomization.yaml`.
fn resources(files: &BTreeMap<String, String>, cluster: &str) -> Vec<String> {
    let k = yaml(file(files, &format!("clusters/{cluster}/kustomization.yaml")));
    assert_eq!(k["apiVersion"], "kustomize.config.k8s.io/v1beta1");
    assert_eq!(k["kind"], "Kustomization");
    k["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("resources of {cluster} is not a list: {k}"))
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

/// Object files under `clusters/<cluster>/` (relative to it), without the kustomization.
fn object_files(files: &BTreeMap<String, String>, cluster: &str) -> Vec<String> {
    let prefix = format!("clusters/{cluster}/");
    files
        .keys()
        .filter_map(|p| p.strip_prefix(&prefix))
        .filter(|p| *p != "kustomization.yaml")
        .map(String::from)
        .collect()
}

/// Objects of `.starmap/clusters/<cluster>.yaml`.
fn index(files: &BTreeMap<String, String>, cluster: &str) -> Vec<Value> {
    let idx = yaml(file(files, &format!(".starmap/clusters/{cluster}.yaml")));
    assert_eq!(idx["cluster"], cluster);
    idx["objects"].as_array().cloned().unwrap_or_default()
}

/// Object name → its placements, from the index of a cluster.
fn placements_by_name(files: &BTreeMap<String, String>, cluster: &str) -> BTreeMap<String, BTreeSet<String>> {
    index(files, cluster)
        .iter()
        .map(|o| {
            let placements = o["placements"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect();
            (o["name"].as_str().unwrap().to_string(), placements)
        })
        .collect()
}

/// The kustomization lists exactly the object files of the directory, sorted, and the
/// index lists the same files.
fn assert_cluster_consistent(files: &BTreeMap<String, String>, cluster: &str) {
    let listed = resources(files, cluster);
    let mut sorted = listed.clone();
    sorted.sort();
    assert_eq!(listed, sorted, "resources of {cluster} are sorted");
    assert_eq!(
        listed,
        object_files(files, cluster),
        "kustomization of {cluster} lists every object file and nothing else"
    );
    let indexed: Vec<String> = index(files, cluster)
        .iter()
        .map(|o| o["file"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(indexed, listed, "index of {cluster} lists the same files");
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The branch tip written out to a temp dir (what Argo CD or Flux would check out).
fn checkout(deploy: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, content) in tip(deploy) {
        let dest = dir.path().join(&path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, content).unwrap();
    }
    dir
}

/// `kubectl kustomize DIR` (the real kubectl, /usr/bin/kubectl here), or `kustomize build
/// DIR` where only kustomize is installed (as .ci/run arranges): (success, stdout, stderr).
fn kubectl_kustomize(dir: &Path) -> (bool, String, String) {
    let out = common::kustomize_build(dir);
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

/// The objects `kubectl kustomize` builds from a cluster directory of the deploy tip.
fn kustomize_cluster(deploy: &Path, cluster: &str) -> Vec<Value> {
    let tree = checkout(deploy);
    let (ok, out, err) = kubectl_kustomize(&tree.path().join("clusters").join(cluster));
    assert!(ok, "kubectl kustomize clusters/{cluster} failed:\n{err}");
    yaml_stream(&out)
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name} among {} objects", objects.len()))
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    git(dir, args)
}

// ---------------------------------------------------------------------------------------
// Selection: label selectors, names, placements adding up
// ---------------------------------------------------------------------------------------

#[test]
fn selection_uses_every_label_selector_operator_and_cluster_names() {
    let w = Work::new("selection");
    render(&w.src, &w.deploy, &[]);
    let files = tip(&w.deploy);

    let expected: BTreeMap<&str, BTreeSet<String>> = BTreeMap::from([
        // alpha: region=east, tier=edge, ring=canary
        (
            "alpha",
            set(&["by-in", "by-exists", "by-matchlabels", "by-everything", "shared"]),
        ),
        // bravo: region=west, tier=edge
        (
            "bravo",
            set(&[
                "by-notin",
                "by-doesnotexist",
                "by-matchlabels",
                "by-implicit-exclude",
                "by-or",
                "by-everything",
                "shared",
            ]),
        ),
        // charlie: region=east, tier=hub, legacy=true
        (
            "charlie",
            set(&[
                "by-in",
                "by-doesnotexist",
                "by-implicit-label",
                "by-or",
                "by-and",
                "by-everything",
                "shared",
            ]),
        ),
        // delta: no labels (NotIn and DoesNotExist match a missing key), named by by-name and by-or
        (
            "delta",
            set(&["by-notin", "by-doesnotexist", "by-name", "by-or", "by-everything"]),
        ),
    ]);
    for (cluster, want) in &expected {
        let got: BTreeSet<String> = placements_by_name(&files, cluster).into_keys().collect();
        assert_eq!(&got, want, "objects placed on {cluster}");
        assert_cluster_consistent(&files, cluster);
    }
    // Each object's placement is the one it is named after (or add-* for `shared`).
    for cluster in expected.keys() {
        for (name, placements) in placements_by_name(&files, cluster) {
            if name != "shared" {
                assert_eq!(placements, set(&[&name]), "{name} on {cluster}");
            }
        }
    }
    let clusters: BTreeSet<&str> = files
        .keys()
        .filter_map(|p| p.strip_prefix("clusters/")?.split('/').next())
        .collect();
    assert_eq!(clusters, expected.keys().copied().collect());
}

#[test]
fn placements_add_up_and_one_definition_placed_twice_is_written_once() {
    let w = Work::new("selection");
    render(&w.src, &w.deploy, &[]);
    let files = tip(&w.deploy);

    let shared = "sel/configmap_shared.yaml";
    // alpha is east (add-east) and edge (add-edge): both placements, one file, listed once.
    assert_eq!(
        placements_by_name(&files, "alpha")["shared"],
        set(&["add-east", "add-edge"])
    );
    assert_eq!(resources(&files, "alpha").iter().filter(|r| *r == shared).count(), 1);
    assert_eq!(
        index(&files, "alpha").iter().filter(|o| o["name"] == "shared").count(),
        1
    );
    let content = file(&files, &format!("clusters/alpha/{shared}"));
    assert_eq!(yaml_stream(content).len(), 1, "one document:\n{content}");
    // Each placement alone elsewhere.
    assert_eq!(placements_by_name(&files, "bravo")["shared"], set(&["add-edge"]));
    assert_eq!(placements_by_name(&files, "charlie")["shared"], set(&["add-east"]));
    assert!(!placements_by_name(&files, "delta").contains_key("shared"));
    // The same bytes wherever it lands (nothing customizes it).
    assert_eq!(content, file(&files, &format!("clusters/bravo/{shared}")));
    insta::assert_snapshot!("selection__alpha__shared", content);
}

// ---------------------------------------------------------------------------------------
// ObjectTest fields
// ---------------------------------------------------------------------------------------

#[test]
fn object_tests_match_paths_groups_kinds_namespaces_names_and_labels() {
    let w = Work::new("object-tests");
    render(&w.src, &w.deploy, &[]);
    let files = tip(&w.deploy);
    let got = placements_by_name(&files, "only");

    let expected: BTreeMap<String, BTreeSet<String>> = [
        // paths: `*` stays in apps/, `**` crosses directories (and `**/` matches none), `?` is one character
        ("top", &["paths-star", "paths-globstar", "paths-globstar-middle"][..]),
        ("a1", &["paths-star", "paths-globstar", "paths-question"]),
        ("a22", &["paths-star", "paths-globstar"]),
        ("deep", &["paths-globstar", "paths-star-dir"]),
        ("deeper", &["paths-globstar", "paths-globstar-middle"]),
        // apiGroups: "" is the core group
        ("grp-core", &["group-core"]),
        ("grp-apps", &["group-apps"]),
        // kinds are exact: kind-role does not take the ClusterRole
        ("grp-rbac", &["group-rbac", "kind-role"]),
        ("team-a-reader", &["group-rbac"]),
        // namespaces: the ConfigMap in team-a, never the cluster-scoped Namespace team-a
        ("in-team-a", &["namespace-team-a", "namespace-and-kind"]),
        ("in-team-b", &["and-or"]),
        // names: exact and glob ("web-*" does not take "web")
        ("api-gateway", &["name-exact"]),
        ("web", &["name-exact"]),
        ("web-frontend", &["name-glob"]),
        ("web-backend", &["name-glob"]),
        // objectSelector
        ("lbl-pay-web", &["selector-labels", "selector-expressions"]),
        ("lbl-pay-db", &["selector-labels"]),
        ("lbl-ops", &["selector-expressions", "and-or"]),
        ("lbl-none", &["selector-unlabelled"]),
    ]
    .into_iter()
    .map(|(name, ps)| (name.to_string(), set(ps)))
    .collect();
    assert_eq!(got, expected);

    // The Namespace team-a matched no test at all (namespace-and-kind names its kind, but a
    // cluster-scoped object never matches `namespaces`).
    assert!(
        !object_files(&files, "only")
            .iter()
            .any(|f| f.starts_with("_cluster/namespace_")),
        "{:?}",
        object_files(&files, "only")
    );
    assert!(
        object_files(&files, "only")
            .contains(&"_cluster/clusterrole.rbac.authorization.k8s.io_team-a-reader.yaml".to_string())
    );
    assert_cluster_consistent(&files, "only");
}

// ---------------------------------------------------------------------------------------
// Customizations
// ---------------------------------------------------------------------------------------

fn container_args(files: &BTreeMap<String, String>, cluster: &str) -> Vec<String> {
    let d = yaml(file(files, &format!("clusters/{cluster}/app/deployment.apps_web.yaml")));
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn customizations_apply_by_order_then_name_and_everywhere_without_cluster_selectors() {
    let w = Work::new("customizations");
    render(&w.src, &w.deploy, &[]);
    let files = tip(&w.deploy);

    // Lower order first (zz-lowest at -5 before mm-default at 0), ties by name (aa before bb);
    // customizations without clusterSelectors/clusters apply on both clusters.
    assert_eq!(
        container_args(&files, "east-1"),
        ["start", "zz-lowest", "mm-default", "aa-tie", "bb-tie", "east-only"]
    );
    assert_eq!(
        container_args(&files, "west-1"),
        ["start", "zz-lowest", "mm-default", "aa-tie", "bb-tie", "named-west"]
    );

    // The index records them in the order applied.
    let web = index(&files, "east-1")
        .into_iter()
        .find(|o| o["name"] == "web")
        .unwrap();
    assert_eq!(
        web["customizations"],
        json!(["zz-lowest", "mm-default", "aa-tie", "bb-tie", "east-only"])
    );
    insta::assert_snapshot!(
        "customizations__east-1__web",
        file(&files, "clusters/east-1/app/deployment.apps_web.yaml")
    );
}

#[test]
fn later_customizations_overwrite_earlier_ones_and_patches_run_before_merge() {
    let w = Work::new("customizations");
    render(&w.src, &w.deploy, &[]);
    let files = tip(&w.deploy);
    for cluster in ["east-1", "west-1"] {
        let cm = yaml(file(&files, &format!("clusters/{cluster}/app/configmap_settings.yaml")));
        let data = &cm["data"];
        assert_eq!(
            data["LEVEL"], "high",
            "level-high (order 2) overwrites level-low (order 1)"
        );
        assert_eq!(data["ONLY_LOW"], "kept", "keys only the earlier one set stay");
        assert_eq!(
            data["FOOTER"], "from-footer-b",
            "same order: footer-b is applied after footer-a"
        );
        assert!(
            data.get("DROP_ME").is_none(),
            "a null in a merge patch removes the key: {data}"
        );
        assert_eq!(
            data["STEP"], "from-merge",
            "patches run first, then the merge of the same customization"
        );
        assert_eq!(data["PATCH_ONLY"], "yes");
        let order: Vec<&str> = data.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            order,
            ["LEVEL", "FOOTER", "ONLY_LOW", "STEP", "PATCH_ONLY"],
            "source keys first, added keys after"
        );
    }
    let settings = index(&files, "west-1")
        .into_iter()
        .find(|o| o["name"] == "settings")
        .unwrap();
    assert_eq!(
        settings["customizations"],
        json!(["level-low", "level-high", "footer-a", "footer-b", "patch-then-merge"])
    );
    insta::assert_snapshot!(
        "customizations__east-1__settings",
        file(&files, "clusters/east-1/app/configmap_settings.yaml")
    );
}

// ---------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------

#[test]
fn templates_keep_types_and_leave_other_strings_alone() {
    let w = Work::new("templates");
    render(&w.src, &w.deploy, &[]);
    let files = tip(&w.deploy);

    let widget = yaml(file(&files, "clusters/zone-a/tpl/widget.example.com_types.yaml"));
    assert_eq!(
        widget["spec"],
        json!({
            "number": 3,
            "spaced": 3,
            "float": 0.5,
            "boolean": true,
            "list": ["a.example.com", "b.example.com"],
            "map": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
            "string": "0042",
            "arithmetic": 6,
            "mixed": "x3",
            "two": "33",
            "statement": "flagged",
            "untouched": "${VAR} $(date) {not: a template}",
        })
    );
    assert_eq!(
        widget["metadata"]["annotations"],
        json!({"example.com/kept": "yes"}),
        "the template annotation is removed, others stay"
    );

    for (cluster, replicas, zone, store) in [("zone-a", 3, "east-1a", "0042"), ("no-zone", 1, "none", "0107")] {
        let d = yaml(file(
            &files,
            &format!("clusters/{cluster}/tpl/deployment.apps_templated.yaml"),
        ));
        assert_eq!(
            d["spec"]["replicas"],
            json!(replicas),
            "{cluster}: a single expression renders a number"
        );
        let annotations = &d["metadata"]["annotations"];
        assert!(
            annotations.get("starmap.dev/template").is_none(),
            "{cluster}: template annotation removed: {annotations}"
        );
        assert_eq!(
            annotations["example.com/zone"], zone,
            "{cluster}: cluster.labels[\"topology.kubernetes.io/zone\"]"
        );
        assert_eq!(
            annotations["example.com/self"],
            format!("Deployment tpl/templated (apps/v1) on {cluster}"),
            "object.* and cluster.name"
        );
        assert_eq!(
            d["metadata"]["labels"]["example.com/store-id"], store,
            "a string property stays a string"
        );
        let c = &d["spec"]["template"]["spec"]["containers"][0];
        assert!(
            c["resources"].is_object(),
            "{cluster}: a map property renders a map: {}",
            c["resources"]
        );
        let env: BTreeMap<&str, &Value> = c["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap(), &e["value"]))
            .collect();
        assert_eq!(
            env["REPLICAS_TEXT"],
            &json!(format!("{replicas} replicas")),
            "mixed text renders a string"
        );
        assert_eq!(
            env["REPLICAS_STRING"],
            &json!(replicas.to_string()),
            "| string gives a string"
        );
        assert_eq!(env["STORE_ID"], &json!(store));
        assert_eq!(
            env["FLUX_SUBST"],
            &json!("${cluster_env:=prod}"),
            "Flux substitution untouched"
        );
        assert_eq!(env["POD_IP_REF"], &json!("$(POD_IP)"), "Kubernetes' $(VAR) untouched");
        assert_eq!(
            c["command"][2],
            json!("echo \"${GREETING} from $(hostname) at $(date +%s)\"; awk \"{ print $1 }\" /etc/hosts")
        );
        assert_eq!(
            c["args"],
            json!(["--store=${STORE_ID}", format!("--replicas={replicas}")])
        );
    }
    let no_zone_widget = yaml(file(&files, "clusters/no-zone/tpl/widget.example.com_types.yaml"));
    assert_eq!(no_zone_widget["spec"]["boolean"], json!(false));
    assert_eq!(no_zone_widget["spec"]["list"], json!([]));

    // Objects without the annotation are not templates; "false" is not one either.
    let plain = yaml(file(&files, "clusters/zone-a/tpl/deployment.apps_plain.yaml"));
    assert_eq!(
        plain["metadata"]["annotations"]["example.com/literal"],
        "{{ cluster.name }}"
    );
    // ...but customization values are: typed patches, templated merge strings.
    assert_eq!(plain["spec"]["replicas"], json!(3));
    assert_eq!(plain["metadata"]["labels"]["region"], "east");
    assert_eq!(plain["metadata"]["annotations"]["example.com/store"], "store 0042");
    assert_eq!(
        plain["metadata"]["annotations"]["example.com/hosts"],
        "a.example.com,b.example.com"
    );
    let cm = yaml(file(&files, "clusters/zone-a/tpl/configmap_not-a-template.yaml"));
    assert_eq!(cm["data"]["jinja"], "{{ not.expanded }}");
    assert!(
        cm["metadata"].get("annotations").is_none(),
        "starmap.dev/template: \"false\" is dropped too: {}",
        cm["metadata"]
    );

    insta::assert_snapshot!(
        "templates__zone-a__templated",
        file(&files, "clusters/zone-a/tpl/deployment.apps_templated.yaml")
    );
    insta::assert_snapshot!(
        "templates__zone-a__widget",
        file(&files, "clusters/zone-a/tpl/widget.example.com_types.yaml")
    );
}

// ---------------------------------------------------------------------------------------
// Normalization
// ---------------------------------------------------------------------------------------

#[test]
fn normalization_drops_server_fields_and_keeps_source_key_order() {
    let w = Work::new("normalize");
    render(&w.src, &w.deploy, &[]);
    let files = tip(&w.deploy);

    let svc_text = file(&files, "clusters/live/shop/service_web.yaml");
    let svc = yaml(svc_text);
    assert!(svc.get("status").is_none());
    let meta = svc["metadata"].as_object().unwrap();
    for gone in [
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "managedFields",
        "selfLink",
    ] {
        assert!(!meta.contains_key(gone), "metadata.{gone} is dropped:\n{svc_text}");
    }
    assert_eq!(
        svc["metadata"]["annotations"],
        json!({"example.com/owner": "team-web"}),
        "only last-applied is dropped"
    );
    // Source order, at every level.
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&svc), ["kind", "apiVersion", "spec", "metadata"]);
    assert_eq!(keys(&svc["metadata"]), ["annotations", "labels", "name", "namespace"]);
    assert_eq!(keys(&svc["metadata"]["labels"]), ["zeta", "app"]);
    assert_eq!(
        keys(&svc["spec"]["ports"][0]),
        ["port", "targetPort", "protocol", "name"]
    );

    let cm = yaml(file(&files, "clusters/live/shop/configmap_exported.yaml"));
    assert_eq!(
        keys(&cm["metadata"]),
        ["name", "namespace"],
        "an annotations map left empty is removed"
    );
    assert_eq!(keys(&cm["data"]), ["zeta", "alpha", "mid"]);

    insta::assert_snapshot!("normalize__service", svc_text);
}

// ---------------------------------------------------------------------------------------
// YAML output safety
// ---------------------------------------------------------------------------------------

#[test]
fn strings_that_look_like_other_types_stay_strings_for_kubectl() {
    let w = Work::new("yaml-safety");
    render(&w.src, &w.deploy, &[]);

    // What kubectl reads from the source file, on its own.
    let source_dir = w.path("kubectl-source");
    std::fs::create_dir_all(&source_dir).unwrap();
    std::fs::copy(w.src.join("app/tricky.yaml"), source_dir.join("tricky.yaml")).unwrap();
    std::fs::write(source_dir.join("kustomization.yaml"), "resources: [tricky.yaml]\n").unwrap();
    let (ok, out, err) = kubectl_kustomize(&source_dir);
    assert!(ok, "{err}");
    let from_source = yaml_stream(&out).remove(0);

    // What kubectl reads from the rendered cluster directory.
    let objects = kustomize_cluster(&w.deploy, "strings");
    let rendered = find(&objects, "ConfigMap", "tricky");
    let mut expected = from_source["data"].as_object().unwrap().clone();
    expected.insert("FROM_TEMPLATE_OCTAL".into(), json!("0644"));
    expected.insert("FROM_TEMPLATE_BOOL".into(), json!("no"));
    expected.insert("FROM_TEMPLATE_TRUE".into(), json!("true"));
    let got = rendered["data"].as_object().unwrap();
    for (k, v) in &expected {
        assert_eq!(got.get(k), Some(v), "data.{k} as kubectl reads the rendered file");
    }
    assert_eq!(got.len(), expected.len());

    // A few explicitly, in case kubectl and the source disagreed with the contract.
    for (k, v) in [
        ("V_YES", "yes"),
        ("V_ON", "on"),
        ("OCTAL", "0777"),
        ("EXP", "1e3"),
        ("SEXAGESIMAL", "12:30"),
        ("TILDE", "~"),
        ("EMPTY", ""),
        ("NULL_WORD", "null"),
    ] {
        assert_eq!(got[k], json!(v), "data.{k}");
    }
    assert!(
        got["script.sh"]
            .as_str()
            .unwrap()
            .starts_with("#!/bin/sh\nset -eu\n# a comment inside the script\n"),
        "{}",
        got["script.sh"]
    );
    assert_eq!(got["script.sh"], expected["script.sh"]);
    assert_eq!(got["crlf"], json!("a\r\nb"));

    // Every value is a string for a YAML 1.1 reader too (yes/on/off booleans), straight from
    // the rendered file.
    let files = tip(&w.deploy);
    let raw = yaml(file(&files, "clusters/strings/app/configmap_tricky.yaml"));
    for (k, v) in raw["data"].as_object().unwrap() {
        assert!(v.is_string(), "data.{k} is {v} for a YAML 1.1 reader");
    }

    // YAML 1.1 octal in the source is a number: 0644 → 420, 0755 → 493, as kubectl reads it.
    let cron = find(&objects, "CronJob", "mode");
    let volume = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["volumes"][0]["configMap"];
    assert_eq!(volume["defaultMode"], json!(420));
    assert_eq!(volume["items"][0]["mode"], json!(493));
    let raw_cron = file(&files, "clusters/strings/app/cronjob.batch_mode.yaml");
    assert!(raw_cron.contains("defaultMode: 420"), "{raw_cron}");

    insta::assert_snapshot!(
        "yaml-safety__tricky",
        file(&files, "clusters/strings/app/configmap_tricky.yaml")
    );
}

// ---------------------------------------------------------------------------------------
// Pruning and owned paths
// ---------------------------------------------------------------------------------------

#[test]
fn pruning_removes_what_is_no_longer_placed_and_keeps_what_others_committed() {
    let w = Work::new("pruning/v1");
    render(&w.src, &w.deploy, &[]);
    let before = tip(&w.deploy);
    assert!(before.contains_key("clusters/p-two/goes/configmap_narrowed.yaml"));
    assert!(before.contains_key("clusters/p-three/kustomization.yaml"));

    // Someone else commits files starmap does not own.
    std::fs::create_dir_all(w.deploy.join("status")).unwrap();
    std::fs::create_dir_all(w.deploy.join("docs")).unwrap();
    std::fs::write(w.deploy.join("status/x.yaml"), "reachable: true\n").unwrap();
    std::fs::write(w.deploy.join("docs/notes.md"), "# Notes\n").unwrap();
    git_in(&w.deploy, &["add", "status/x.yaml", "docs/notes.md"]);
    git_in(&w.deploy, &["commit", "-q", "-m", "status and notes"]);

    w.overlay("pruning/v2");
    render(&w.src, &w.deploy, &[]);
    let after = tip(&w.deploy);

    // An object no longer placed on p-two: its file (and the emptied directory) is gone, and
    // the kustomization no longer lists it.
    assert!(!after.contains_key("clusters/p-two/goes/configmap_narrowed.yaml"));
    assert!(!after.keys().any(|p| p.starts_with("clusters/p-two/goes/")));
    assert_eq!(resources(&after, "p-two"), ["stays/configmap_keep.yaml"]);
    assert_eq!(
        resources(&after, "p-one"),
        ["goes/configmap_narrowed.yaml", "stays/configmap_keep.yaml"]
    );
    // A cluster removed from the inventory loses its directory and its index.
    assert!(
        !after.keys().any(|p| p.starts_with("clusters/p-three/")),
        "{:?}",
        after.keys().collect::<Vec<_>>()
    );
    assert!(!after.contains_key(".starmap/clusters/p-three.yaml"));
    assert!(!file(&after, ".starmap/digests.yaml").contains("p-three"));
    // Files outside owned paths are kept, byte for byte.
    assert_eq!(file(&after, "status/x.yaml"), "reachable: true\n");
    assert_eq!(file(&after, "docs/notes.md"), "# Notes\n");
    for c in ["p-one", "p-two"] {
        assert_cluster_consistent(&after, c);
    }
    // The work tree of the (non-bare) deploy repo shows the new commit.
    let work_tree: BTreeMap<String, String> = snapshot(&w.deploy)
        .files
        .into_iter()
        .map(|(k, v)| (k, text(&v)))
        .collect();
    assert_eq!(work_tree, after, "work tree equals the branch tip");
    assert_eq!(commit_count(&w.deploy, "refs/heads/main"), 3);
}

#[test]
fn the_work_tree_gets_only_the_changed_files_and_never_loses_a_local_edit() {
    let w = Work::new("one-cluster/v1");
    render(&w.src, &w.deploy, &[]);
    assert_eq!(
        git_in(&w.deploy, &["status", "--porcelain"]),
        "",
        "index and files agree with the commit"
    );
    let web = w.deploy.join("clusters/beta/web/deployment.apps_web.yaml");
    let kustomization = w.deploy.join("clusters/beta/kustomization.yaml");
    let modified = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let kustomization_written = modified(&kustomization);
    std::fs::write(w.deploy.join("scratch.txt"), "mine\n").unwrap();

    // beta's replicas change: that file is written, an unchanged one is not touched, an
    // untracked file stays, and git sees nothing else changed.
    w.overlay("one-cluster/v2");
    render(&w.src, &w.deploy, &[]);
    assert_eq!(
        yaml(&std::fs::read_to_string(&web).unwrap())["spec"]["replicas"],
        json!(5)
    );
    assert_eq!(
        modified(&kustomization),
        kustomization_written,
        "an unchanged file was rewritten"
    );
    assert_eq!(git_in(&w.deploy, &["status", "--porcelain"]), "?? scratch.txt");

    // A hand edit to a file the next render changes: the commit lands, the work tree is left
    // as it is (edit included), and the warning names the file.
    std::fs::write(&web, "hand: edited\n").unwrap();
    w.overlay("one-cluster/v1");
    let out = run(&[
        "render".as_ref(),
        "--source".as_ref(),
        w.src.as_os_str(),
        "--deploy".as_ref(),
        w.deploy.as_os_str(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("local changes (clusters/beta/web/deployment.apps_web.yaml)"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(std::fs::read_to_string(&web).unwrap(), "hand: edited\n");
    assert_eq!(
        yaml(&tip(&w.deploy)["clusters/beta/web/deployment.apps_web.yaml"])["spec"]["replicas"],
        json!(2)
    );
    assert_eq!(commit_count(&w.deploy, "refs/heads/main"), 3);
}

#[test]
fn an_index_in_a_form_of_its_own_is_updated_by_libgit2() {
    // Version 4 (prefix-compressed paths, `feature.manyFiles`) is not the form starmap's own
    // index writer writes: the files are still written, and libgit2 updates the index.
    let w = Work::new("one-cluster/v1");
    render(&w.src, &w.deploy, &[]);
    git_in(&w.deploy, &["update-index", "--index-version", "4"]);
    w.overlay("one-cluster/v2");
    render(&w.src, &w.deploy, &[]);
    let web = w.deploy.join("clusters/beta/web/deployment.apps_web.yaml");
    assert_eq!(
        yaml(&std::fs::read_to_string(&web).unwrap())["spec"]["replicas"],
        json!(5)
    );
    assert_eq!(
        git_in(&w.deploy, &["diff-files", "--name-only"]),
        "",
        "stat data current"
    );
    assert_eq!(git_in(&w.deploy, &["status", "--porcelain"]), "");
    let index = std::fs::read(w.deploy.join(".git/index")).unwrap();
    assert_eq!(index[4..8], 4u32.to_be_bytes(), "libgit2 kept the index's version");
}

#[test]
fn a_work_tree_with_line_ending_conversion_is_checked_out_by_libgit2() {
    let w = Work::new("one-cluster/v1");
    render(&w.src, &w.deploy, &[]);
    git_in(&w.deploy, &["config", "core.autocrlf", "true"]);
    w.overlay("one-cluster/v2");
    render(&w.src, &w.deploy, &[]);
    // Written by libgit2's checkout, which converts line endings as git would.
    let web = std::fs::read_to_string(w.deploy.join("clusters/beta/web/deployment.apps_web.yaml")).unwrap();
    assert!(web.contains("replicas: 5\r\n"), "{web:?}");
}

#[test]
fn hand_edits_inside_a_cluster_directory_are_replaced_on_the_next_render() {
    let w = Work::new("pruning/v1");
    render(&w.src, &w.deploy, &[]);
    let rendered = tip(&w.deploy);
    // Someone edits a rendered file and adds one, by hand.
    std::fs::write(
        w.deploy.join("clusters/p-one/stays/configmap_keep.yaml"),
        "hand: edited\n",
    )
    .unwrap();
    std::fs::write(
        w.deploy.join("clusters/p-one/stays/extra.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra}\n",
    )
    .unwrap();
    git_in(&w.deploy, &["add", "-A"]);
    git_in(&w.deploy, &["commit", "-q", "-m", "hand edits"]);

    // The source did not change, yet the owned paths are put back as starmap renders them.
    let out = render(&w.src, &w.deploy, &[]);
    assert!(!out.contains("no changes"), "{out}");
    assert_eq!(tip(&w.deploy), rendered);
    assert_eq!(commit_count(&w.deploy, "refs/heads/main"), 3);
}

#[test]
fn a_hand_edited_object_index_is_replaced_on_the_next_render() {
    // `.starmap/` is owned too, and the index is what status collection reads to know what
    // to look for on each cluster: a stale or edited index must not survive a render.
    let w = Work::new("pruning/v1");
    render(&w.src, &w.deploy, &[]);
    let rendered = tip(&w.deploy);
    std::fs::write(
        w.deploy.join(".starmap/clusters/p-two.yaml"),
        "cluster: p-two\nobjects: []\n",
    )
    .unwrap();
    git_in(&w.deploy, &["commit", "-q", "-am", "hand-edited index"]);

    let out = render(&w.src, &w.deploy, &[]);
    let index_now = tip(&w.deploy)[".starmap/clusters/p-two.yaml"].clone();
    assert_eq!(
        index_now,
        rendered[".starmap/clusters/p-two.yaml"],
        "the index of p-two was left as edited by hand (render said: {})",
        out.trim()
    );
}

// ---------------------------------------------------------------------------------------
// No-op renders
// ---------------------------------------------------------------------------------------

#[test]
fn rendering_the_same_source_again_makes_no_commit() {
    let w = Work::new("one-cluster/v1");
    render(&w.src, &w.deploy, &[]);
    let before = snapshot(&w.deploy);
    let out = render(&w.src, &w.deploy, &[]);
    assert!(out.contains("no changes"), "stdout says so:\n{out}");
    assert_eq!(commit_count(&w.deploy, "refs/heads/main"), 1);
    assert_eq!(snapshot(&w.deploy), before, "nothing at all changed in the deploy repo");
    // Also when every cluster is rendered again instead of reused.
    let out = render(&w.src, &w.deploy, &["--no-cache"]);
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(snapshot(&w.deploy), before);
}

#[test]
fn a_new_source_commit_that_changes_nothing_makes_no_commit() {
    let w = Work::new("one-cluster/v1");
    let first = git_init_commit(&w.src);
    render(&w.src, &w.deploy, &[]);
    assert!(file(&tip(&w.deploy), ".starmap/render.yaml").contains(&first));

    // Docs, a text file and a YAML file holding only comments.
    w.overlay("one-cluster/unrelated-change");
    std::fs::write(
        w.src.join("docs/comments-only.yaml"),
        "# nothing but a comment\n---\n# and another\n",
    )
    .unwrap();
    git(&w.src, &["add", "-A"]);
    git(&w.src, &["commit", "-q", "-m", "docs"]);
    let before = snapshot(&w.deploy);
    let out = render(&w.src, &w.deploy, &[]);
    assert!(out.contains("no changes"), "{out}");
    // The same through git (main@ref) rather than the work tree.
    let out = render(format!("{}@main", w.src.display()), &w.deploy, &[]);
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(commit_count(&w.deploy, "refs/heads/main"), 1);
    assert_eq!(snapshot(&w.deploy), before);
}

#[test]
fn a_json_file_holds_one_workload_object() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&fixtures(), &src);
    std::fs::write(
        src.join("workloads/pos/feature-flags.json"),
        r#"{"apiVersion": "v1", "kind": "ConfigMap",
  "metadata": {"name": "feature-flags", "namespace": "pos"},
  "data": {"SELF_CHECKOUT": "on", "LIMIT": "0777"}}
"#,
    )
    .unwrap();
    let deploy = tmp.path().join("deploy");
    render(&src, &deploy, &[]);
    let files = tree_files(&deploy, "main");
    let cm = &files["clusters/store-0042/pos/configmap_feature-flags.yaml"];
    assert!(
        cm.contains("SELF_CHECKOUT: \"on\"") && cm.contains("LIMIT: \"0777\""),
        "{cm}"
    );
}

#[test]
fn moving_objects_within_their_files_makes_no_commit() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&fixtures(), &src);
    let deploy = tmp.path().join("deploy");
    render(&src, &deploy, &[]);
    let before = snapshot(&deploy);
    // Comment lines above objects shift every line below them: the output and its index
    // record source paths, not lines, so nothing changes in the deploy repo.
    for rel in ["workloads/pos/pos-backend.yaml", "workloads/monitoring/rbac.yaml"] {
        let path = src.join(rel);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("# reviewed\n# by the platform team\n{text}")).unwrap();
    }
    let out = render(&src, &deploy, &[]);
    assert!(out.contains("no changes"), "{out}");
    assert_eq!(snapshot(&deploy), before);
}

// ---------------------------------------------------------------------------------------
// Changes are local to the cluster that changed; output is deterministic
// ---------------------------------------------------------------------------------------

#[test]
fn changing_one_clusters_property_touches_only_that_cluster() {
    let w = Work::new("one-cluster/v1");
    render(&w.src, &w.deploy, &[]);
    w.overlay("one-cluster/v2");
    render(&w.src, &w.deploy, &[]);
    assert_eq!(commit_count(&w.deploy, "refs/heads/main"), 2);

    let changed = git_in(&w.deploy, &["diff", "--name-only", "main~1", "main"]);
    let changed: Vec<&str> = changed.lines().collect();
    for path in &changed {
        assert!(
            path.starts_with("clusters/beta/")
                || *path == ".starmap/clusters/beta.yaml"
                || path.starts_with(".starmap/") && !path.starts_with(".starmap/clusters/")
                || *path == "README.md",
            "{path} changed although only beta's properties changed; all changes: {changed:?}"
        );
    }
    assert!(
        changed.contains(&"clusters/beta/web/deployment.apps_web.yaml"),
        "{changed:?}"
    );
    assert!(!changed.contains(&"clusters/beta/web/service_web.yaml"), "{changed:?}");
    for other in ["alpha", "gamma"] {
        assert_eq!(
            git_in(&w.deploy, &["rev-parse", &format!("main~1:clusters/{other}")]),
            git_in(&w.deploy, &["rev-parse", &format!("main:clusters/{other}")]),
            "{other}'s directory is the same tree"
        );
    }
    let d = yaml(file(&tip(&w.deploy), "clusters/beta/web/deployment.apps_web.yaml"));
    assert_eq!(d["spec"]["replicas"], json!(5));
}

#[test]
fn two_fresh_renders_give_identical_trees() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("deploy-a"), tmp.path().join("deploy-b"));
    render(fixtures(), &a, &[]);
    render(fixtures(), &b, &["--no-cache"]);
    let tree = |d: &Path| git(d, &["rev-parse", "main^{tree}"]);
    assert_eq!(tree(&a), tree(&b), "same inputs, same root tree id");
}

// ---------------------------------------------------------------------------------------
// Empty clusters, commit message, branch
// ---------------------------------------------------------------------------------------

#[test]
fn a_cluster_with_nothing_placed_gets_an_empty_kustomization() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    render(fixtures(), &deploy, &[]);
    let files = tip(&deploy);
    let k = file(&files, "clusters/store-0099/kustomization.yaml");
    assert_eq!(yaml(k)["resources"], json!([]), "resources: []\n{k}");
    assert!(k.contains("resources: []"), "written as `resources: []`:\n{k}");
    assert!(object_files(&files, "store-0099").is_empty());
    assert!(index(&files, "store-0099").is_empty());
    // kubectl builds it, to nothing.
    let tree = checkout(&deploy);
    let (ok, out, err) = kubectl_kustomize(&tree.path().join("clusters/store-0099"));
    assert!(ok, "{err}");
    assert!(yaml_stream(&out).is_empty(), "{out}");
}

/// Trailers of a commit message, as git itself parses them.
fn trailers(repo: &Path, message: &str) -> Vec<(String, String)> {
    let mut child = Command::new("git")
        .args(["interpret-trailers", "--parse"])
        .current_dir(repo)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(message.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    text(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_commit_message_lists_counts_and_ends_with_source_trailers() {
    let w = Work::new("one-cluster/v1");
    let head = git_init_commit(&w.src);
    render(&w.src, &w.deploy, &[]);
    let message = git_in(&w.deploy, &["log", "-1", "--format=%B", "main"]);
    let lines: Vec<&str> = message.lines().collect();
    assert_eq!(
        lines[0], "starmap: 3 clusters changed: 6 objects added, 0 changed, 0 removed",
        "{message}"
    );
    assert!(message.contains("Clusters added: alpha, beta, gamma"), "{message}");
    for c in ["alpha", "beta", "gamma"] {
        assert!(lines.contains(&format!("  {c}: +2 ~0 -0").as_str()), "{message}");
    }
    let source = w.src.display().to_string();
    assert_eq!(
        trailers(&w.deploy, &message),
        [
            ("Starmap-Source".to_string(), source.clone()),
            ("Starmap-Source-Commit".to_string(), head.clone())
        ],
        "git reads these trailers:\n{message}"
    );
    assert_eq!(lines.last(), Some(&format!("Starmap-Source-Commit: {head}").as_str()));
    let render_file = yaml(file(&tip(&w.deploy), ".starmap/render.yaml"));
    assert_eq!(render_file["sourceCommit"], json!(head));
    assert_eq!(render_file["source"], json!(source));
    assert_eq!(render_file["clusters"], json!(3));
    assert_eq!(render_file["objects"], json!(6));
    assert!(file(&tip(&w.deploy), "README.md").contains(&head));

    // A change: one cluster, one object changed, and the new source commit.
    w.overlay("one-cluster/v2");
    git(&w.src, &["commit", "-q", "-am", "beta: 5 replicas"]);
    let head2 = git(&w.src, &["rev-parse", "HEAD"]);
    render(&w.src, &w.deploy, &[]);
    let message = git_in(&w.deploy, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.starts_with("starmap: 1 cluster changed: 0 objects added, 1 changed, 0 removed\n"),
        "{message}"
    );
    assert!(message.contains("\n  beta: +0 ~1 -0\n"), "{message}");
    assert!(
        message.trim_end().ends_with(&format!("Starmap-Source-Commit: {head2}")),
        "{message}"
    );
}

#[test]
fn a_plain_directory_source_has_no_source_commit_trailer() {
    let w = Work::new("one-cluster/v1");
    render(&w.src, &w.deploy, &[]);
    let message = git_in(&w.deploy, &["log", "-1", "--format=%B", "main"]);
    assert_eq!(
        trailers(&w.deploy, &message),
        [("Starmap-Source".to_string(), w.src.display().to_string())],
        "{message}"
    );
    assert!(
        yaml(file(&tip(&w.deploy), ".starmap/render.yaml"))
            .get("sourceCommit")
            .is_none()
    );
}

#[test]
fn branch_flag_writes_that_branch() {
    let w = Work::new("one-cluster/v1");
    render(&w.src, &w.deploy, &["--branch", "release"]);
    let refs = snapshot(&w.deploy).refs;
    assert!(refs.contains_key("refs/heads/release"), "{refs:?}");
    assert!(!refs.contains_key("refs/heads/main"), "{refs:?}");
    // A new repo's HEAD is that branch, and its work tree shows the render.
    assert!(w.deploy.join("clusters/beta/kustomization.yaml").is_file());
    let release = tree_files(&w.deploy, "refs/heads/release");
    assert_cluster_consistent(&release, "beta");

    // Another branch of the same repo: a commit there, the work tree (on release) untouched.
    w.overlay("one-cluster/v2");
    let work_before = snapshot(&w.deploy).files;
    render(&w.src, &w.deploy, &["--branch", "staging"]);
    assert_eq!(snapshot(&w.deploy).files, work_before);
    let staging = tree_files(&w.deploy, "refs/heads/staging");
    assert_eq!(
        yaml(&staging["clusters/beta/web/deployment.apps_web.yaml"])["spec"]["replicas"],
        json!(5)
    );
    assert_eq!(
        yaml(&release["clusters/beta/web/deployment.apps_web.yaml"])["spec"]["replicas"],
        json!(2)
    );
}

// ---------------------------------------------------------------------------------------
// Sources and inventories from git
// ---------------------------------------------------------------------------------------

fn version_on(deploy: &Path) -> String {
    let files = tip(deploy);
    yaml(file(&files, "clusters/git-cluster/default/configmap_version.yaml"))["data"]["version"]
        .as_str()
        .unwrap()
        .to_string()
}

fn source_commit(deploy: &Path) -> String {
    let message = git(deploy, &["log", "-1", "--format=%B", "main"]);
    trailers(deploy, &message)
        .into_iter()
        .find(|(k, _)| k == "Starmap-Source-Commit")
        .map(|(_, v)| v)
        .unwrap_or_default()
}

/// A source repo: v1 tagged (annotated) `v1`, then v2 on main; `feature` branches from v1;
/// an uncommitted edit in the work tree.
fn source_repo(w: &Work) -> (PathBuf, String, String, String) {
    let repo = w.path("repo");
    std::fs::create_dir_all(&repo).unwrap();
    copy_dir(&data("render/git-source/v1"), &repo);
    let v1 = git_init_commit(&repo);
    git(&repo, &["tag", "-a", "v1", "-m", "release v1"]);
    copy_dir(&data("render/git-source/v2"), &repo);
    git(&repo, &["commit", "-q", "-am", "v2"]);
    let v2 = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["checkout", "-q", "-b", "feature", "v1"]);
    copy_dir(&data("render/git-source/feature"), &repo);
    git(&repo, &["commit", "-q", "-am", "feature"]);
    let feature = git(&repo, &["rev-parse", "HEAD"]);
    git(&repo, &["checkout", "-q", "main"]);
    copy_dir(&data("render/git-source/work-tree"), &repo);
    (repo, v1, v2, feature)
}

#[test]
fn source_at_a_tag_reads_the_tags_tree_not_the_work_tree() {
    let w = Work::new("git-source/v1");
    let (repo, v1, _, _) = source_repo(&w);
    let deploy = w.path("deploy-tag");
    render(format!("{}@v1", repo.display()), &deploy, &[]);
    assert_eq!(version_on(&deploy), "v1");
    assert_eq!(
        source_commit(&deploy),
        v1,
        "the tag's commit (the annotated tag peeled)"
    );
}

#[test]
fn source_at_a_branch_and_the_work_tree() {
    let w = Work::new("git-source/v1");
    let (repo, _, v2, feature) = source_repo(&w);

    let deploy = w.path("deploy-feature");
    render(format!("{}@feature", repo.display()), &deploy, &[]);
    assert_eq!(version_on(&deploy), "feature");
    assert_eq!(source_commit(&deploy), feature);

    let deploy = w.path("deploy-main");
    render(format!("{}@main", repo.display()), &deploy, &[]);
    assert_eq!(version_on(&deploy), "v2");
    assert_eq!(source_commit(&deploy), v2);

    // Without @REF a work tree is read as it is, uncommitted edits included, and the commit
    // says so.
    let deploy = w.path("deploy-work-tree");
    render(&repo, &deploy, &[]);
    assert_eq!(version_on(&deploy), "uncommitted");
    assert_eq!(source_commit(&deploy), format!("{v2}-dirty"));
}

#[test]
fn source_as_a_bare_repository() {
    let w = Work::new("git-source/v1");
    let (repo, _, v2, _) = source_repo(&w);
    let bare = w.path("source.git");
    git(
        w.tmp.path(),
        &["clone", "-q", "--bare", repo.to_str().unwrap(), bare.to_str().unwrap()],
    );
    let deploy = w.path("deploy-bare");
    render(&bare, &deploy, &[]);
    assert_eq!(version_on(&deploy), "v2", "HEAD of the bare repo (main)");
    assert_eq!(source_commit(&deploy), v2);
    let deploy = w.path("deploy-bare-feature");
    render(format!("{}@feature", bare.display()), &deploy, &[]);
    assert_eq!(version_on(&deploy), "feature");
}

fn cluster_dirs(deploy: &Path) -> BTreeSet<String> {
    tip(deploy)
        .keys()
        .filter_map(|p| p.strip_prefix("clusters/")?.split('/').next().map(String::from))
        .collect()
}

#[test]
fn inventory_from_a_file_a_directory_and_a_git_repo_merges_with_the_source() {
    let w = Work::new("inventory/source");
    let all = set(&["inv-eu", "inv-hub", "inv-us", "src-cluster"]);
    let extra = data("render/inventory/extra");

    // A file: its clusters and the source's.
    let deploy = w.path("deploy-file");
    render(
        &w.src,
        &deploy,
        &["--inventory", extra.join("us.yaml").to_str().unwrap()],
    );
    assert_eq!(cluster_dirs(&deploy), set(&["inv-us", "src-cluster"]));

    // A directory.
    let deploy = w.path("deploy-dir");
    render(&w.src, &deploy, &["--inventory", extra.to_str().unwrap()]);
    assert_eq!(cluster_dirs(&deploy), all);
    let files = tip(&deploy);
    for c in ["inv-eu", "inv-us", "src-cluster"] {
        assert_eq!(resources(&files, c), ["default/configmap_app.yaml"], "{c} (tier=edge)");
    }
    assert_eq!(resources(&files, "inv-hub"), Vec::<String>::new(), "inv-hub (tier=hub)");

    // A git repo: its work tree, and a ref of it.
    let inv = w.path("inventory-repo");
    std::fs::create_dir_all(&inv).unwrap();
    copy_dir(&extra, &inv);
    git_init_commit(&inv);
    let deploy = w.path("deploy-git");
    render(&w.src, &deploy, &["--inventory", inv.to_str().unwrap()]);
    assert_eq!(cluster_dirs(&deploy), all);
    let deploy_ref = w.path("deploy-git-ref");
    render(
        &w.src,
        &deploy_ref,
        &["--inventory", &format!("{}@main", inv.display())],
    );
    assert_eq!(cluster_dirs(&deploy_ref), all);
    let tree = |d: &Path| git(d, &["rev-parse", "main:clusters"]);
    assert_eq!(
        tree(&deploy),
        tree(&w.path("deploy-dir")),
        "the same clusters, however the inventory is given"
    );
    assert_eq!(tree(&deploy_ref), tree(&deploy));
}

#[test]
fn a_cluster_in_both_source_and_inventory_is_an_error() {
    let w = Work::new("inventory/source");
    let dup = data("render/inventory/duplicate/clusters.yaml");
    let out = run(&[
        OsStr::new("render"),
        OsStr::new("--source"),
        w.src.as_os_str(),
        OsStr::new("--inventory"),
        dup.as_os_str(),
        OsStr::new("--deploy"),
        w.deploy.as_os_str(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr:\n{stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("duplicate cluster \"src-cluster\""), "{stderr}");
    // The line of the duplicate's metadata (name), in both files.
    assert!(
        stderr.contains("duplicate/clusters.yaml:8: "),
        "names the inventory file and line: {stderr}"
    );
    assert!(stderr.contains("app.yaml:4"), "names the source definition: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!w.deploy.exists(), "nothing written");
}

// ---------------------------------------------------------------------------------------
// starmap.yaml ignore
// ---------------------------------------------------------------------------------------

#[test]
fn ignore_globs_exclude_files() {
    let w = Work::new("ignore");
    render(&w.src, &w.deploy, &[]);
    let files = tip(&w.deploy);
    // drafts/broken.yaml (invalid), apps/scratch.tmp.yaml (not YAML), .github (not
    // Kubernetes) are not read; drafts/valid.yaml would be placed by "**" but is ignored;
    // "!drafts/keep.yaml" brings one file back, gitignore-style.
    assert_eq!(
        resources(&files, "ign"),
        ["default/configmap_app.yaml", "default/configmap_kept-draft.yaml"]
    );

    // Without starmap.yaml every file is read, and the broken draft is an error naming it.
    std::fs::remove_file(w.src.join("starmap.yaml")).unwrap();
    let out = run(&[OsStr::new("validate"), OsStr::new("--source"), w.src.as_os_str()]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
}

// ---------------------------------------------------------------------------------------
// The bundled example
// ---------------------------------------------------------------------------------------

#[test]
fn fixture_render_builds_with_kubectl_and_has_the_documented_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    render(fixtures(), &deploy, &[]);
    let files = tip(&deploy);

    let expected: BTreeMap<&str, usize> = BTreeMap::from([
        ("hub-ap-southeast", 13),
        ("hub-eu-central", 13),
        ("hub-us-east", 13),
        ("hub-us-west", 13),
        ("lab-1", 14),
        ("store-0042", 18),
        ("store-0099", 0),
        ("store-0107", 18),
        ("store-0213", 18),
        ("store-0311", 18),
        ("store-0350", 15),
        ("store-1001", 18),
        ("store-1017", 15),
        ("store-2001", 14),
    ]);
    let got: BTreeMap<String, usize> = cluster_dirs(&deploy)
        .into_iter()
        .map(|c| {
            let n = resources(&files, &c).len();
            (c, n)
        })
        .collect();
    let expected_owned: BTreeMap<String, usize> = expected.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    assert_eq!(got, expected_owned, "objects per cluster (fixtures/README.md)");

    let tree = checkout(&deploy);
    for (cluster, count) in &expected {
        assert_cluster_consistent(&files, cluster);
        let (ok, out, err) = kubectl_kustomize(&tree.path().join("clusters").join(cluster));
        assert!(ok, "kubectl kustomize clusters/{cluster} failed:\n{err}");
        assert_eq!(
            yaml_stream(&out).len(),
            *count,
            "kubectl builds {count} objects for {cluster}"
        );
    }
    let render_file = yaml(file(&files, ".starmap/render.yaml"));
    assert_eq!(render_file["clusters"], json!(14));
    assert_eq!(render_file["objects"], json!(200));

    // A few rendered files of one cluster, reviewed as snapshots.
    for (name, path) in [
        ("kustomization", "clusters/store-1001/kustomization.yaml"),
        ("pos-config", "clusters/store-1001/pos/configmap_pos-config.yaml"),
        (
            "pos-backend",
            "clusters/store-1001/pos/deployment.apps_pos-backend.yaml",
        ),
        (
            "inventory-sync-cronjob",
            "clusters/store-1001/inventory-sync/cronjob.batch_inventory-sync.yaml",
        ),
        (
            "node-exporter-service",
            "clusters/store-1001/monitoring/service_node-exporter.yaml",
        ),
        ("index", ".starmap/clusters/store-1001.yaml"),
    ] {
        insta::assert_snapshot!(format!("fixtures__store-1001__{name}"), file(&files, path));
    }
}

#[test]
fn fixture_customizations_and_templates_as_documented() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    render(fixtures(), &deploy, &[]);
    let files = tip(&deploy);
    let footer = |c: &str| {
        yaml(file(&files, &format!("clusters/{c}/pos/configmap_pos-config.yaml")))["data"]["RECEIPT_FOOTER"].clone()
    };
    assert_eq!(footer("store-0042"), "Thank you for shopping at Northwind!");
    assert_eq!(footer("lab-1"), "Thank you for shopping at Northwind!");
    assert_eq!(footer("store-1017"), "Vielen Dank für Ihren Einkauf!");
    assert_eq!(
        footer("store-1001"),
        "Danke für Ihren Besuch am Marienplatz! Filiale 1001"
    );
    let eu = yaml(file(&files, "clusters/store-1017/pos/configmap_pos-config.yaml"));
    assert!(
        eu["data"].get("SALES_TAX_MODE").is_none(),
        "null in a merge removes the key"
    );
    assert_eq!(eu["data"]["VAT_INCLUDED"], "yes");
    let backend = yaml(file(&files, "clusters/store-0042/pos/deployment.apps_pos-backend.yaml"));
    assert!(backend["spec"]["replicas"].is_number());
    assert_eq!(backend["metadata"]["labels"]["retail.example.com/store-id"], "0042");
    let cron = yaml(file(
        &files,
        "clusters/store-0042/inventory-sync/cronjob.batch_inventory-sync.yaml",
    ));
    assert_eq!(
        cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
        "0042"
    );
}
