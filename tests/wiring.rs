//! The deployment files of this project, checked with real tools and real files:
//!
//! - every kustomize directory (`install/starmap`, `argocd/hub`, `argocd/starmap`, `flux/edge`,
//!   `flux/starmap`) builds with the real `kubectl kustomize` (or `kustomize build`), and every
//!   object it yields is valid against the strict Kubernetes JSON schemas, or, for Argo CD and
//!   Flux kinds, against their CRDs' openAPIV3Schema made strict (`../shared/data`);
//! - the patches that `argocd/starmap` and `flux/starmap` put on `install/starmap` apply, with
//!   the real kustomize;
//! - the CI examples in `docs/ci/` parse as YAML, and their plan and render scripts, run by the
//!   real shell with a stand-in `starmap`, pass on exit 0 and 2 and fail on exit 1;
//! - every `starmap <command>` written in the docs and CI examples uses flags that the real
//!   binary's `--help` lists;
//! - the Dockerfile's stages, target, paths and binary names agree with Cargo.toml and with each
//!   other (no Docker engine here to build it).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{root, shared_data, starmap};
use serde_json::{Value, json};

/// Every kustomize directory this project ships.
const KUSTOMIZE_DIRS: [&str; 5] = [
    "install/starmap",
    "argocd/hub",
    "argocd/starmap",
    "flux/edge",
    "flux/starmap",
];

/// Objects kept beside a kustomization but not listed in it (examples to copy).
const EXAMPLE_FILES: [&str; 1] = ["argocd/hub/cluster-example.yaml"];

const IMAGE: &str = "ghcr.io/starmap-dev/starmap:0.1.0";
const MUSL: &str = "x86_64-unknown-linux-musl";

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

fn read(rel: &str) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Documents of a YAML text, read with starmap's own parser.
fn documents(text: &str, name: &str) -> Vec<Value> {
    starmap::yaml::parse_documents(text, name)
        .unwrap_or_else(|e| panic!("{name} is not valid YAML: {e}"))
        .into_iter()
        .map(|d| d.value)
        .filter(|v| !v.is_null())
        .collect()
}

/// `kubectl kustomize DIR` (the real kubectl, /usr/bin/kubectl here), or `kustomize build DIR`
/// where only kustomize is installed (as .ci/run arranges). Panics with kustomize's error.
fn kustomize(dir: &Path) -> Vec<Value> {
    let out = common::kustomize_build(dir);
    assert!(
        out.status.success(),
        "kustomize build of {} failed:\n{}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    documents(&String::from_utf8_lossy(&out.stdout), &dir.display().to_string())
}

fn build(rel: &str) -> Vec<Value> {
    kustomize(&root().join(rel))
}

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| {
            let have: Vec<String> = objects.iter().map(identity).collect();
            panic!("no {kind}/{name}; have: {have:?}")
        })
}

fn identity(o: &Value) -> String {
    format!(
        "{} {}/{}",
        o["apiVersion"].as_str().unwrap_or("?"),
        o["kind"].as_str().unwrap_or("?"),
        o["metadata"]["name"].as_str().unwrap_or("?")
    )
}

fn str_list(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().unwrap_or_else(|| panic!("not a string: {s}")))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Kustomize directories: they build, and yield objects
// ---------------------------------------------------------------------------------------

#[test]
fn every_kustomize_directory_builds_and_yields_named_objects() {
    for dir in KUSTOMIZE_DIRS {
        let objects = build(dir);
        assert!(!objects.is_empty(), "{dir} builds to nothing");
        for o in &objects {
            for (field, v) in [
                ("apiVersion", &o["apiVersion"]),
                ("kind", &o["kind"]),
                ("metadata.name", &o["metadata"]["name"]),
            ] {
                assert!(
                    v.as_str().is_some_and(|s| !s.is_empty()),
                    "{dir}: an object has no {field}: {o}"
                );
            }
        }
        let ids: BTreeSet<String> = objects
            .iter()
            .map(|o| format!("{} {}", identity(o), o["metadata"]["namespace"]))
            .collect();
        assert_eq!(ids.len(), objects.len(), "{dir}: an object is there twice");
    }
}

#[test]
fn install_starmap_runs_render_every_five_minutes_without_privileges() {
    let objects = build("install/starmap");
    for o in &objects {
        let kind = o["kind"].as_str().unwrap();
        if !["Namespace", "ClusterRole", "ClusterRoleBinding"].contains(&kind) {
            assert_eq!(
                o["metadata"]["namespace"],
                "starmap",
                "{} is not in namespace starmap",
                identity(o)
            );
        }
    }
    find(&objects, "Namespace", "starmap");
    let sa = find(&objects, "ServiceAccount", "starmap");
    assert_eq!(sa["automountServiceAccountToken"], false);

    // Read-only: get/list/watch, nothing else, bound to that ServiceAccount only.
    let role = find(&objects, "ClusterRole", "starmap-read-only");
    for rule in role["rules"].as_array().unwrap() {
        let verbs: BTreeSet<&str> = str_list(&rule["verbs"]).into_iter().collect();
        assert_eq!(verbs, BTreeSet::from(["get", "list", "watch"]), "rule {rule}");
    }
    let binding = find(&objects, "ClusterRoleBinding", "starmap-read-only");
    assert_eq!(binding["roleRef"]["name"], "starmap-read-only");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "starmap", "namespace": "starmap"}])
    );

    let config = find(&objects, "ConfigMap", "starmap-config");
    for key in ["STARMAP_SOURCE", "STARMAP_DEPLOY"] {
        assert!(
            config["data"][key].as_str().is_some_and(|u| u.contains("://")),
            "{key}: {config}"
        );
    }
    let secret = find(&objects, "Secret", "starmap-git");
    for key in ["GIT_USERNAME", "GIT_TOKEN"] {
        assert!(secret["stringData"][key].is_string(), "{key} missing in {secret}");
    }

    let cron = find(&objects, "CronJob", "starmap-render");
    assert_eq!(cron["spec"]["schedule"], "*/5 * * * *");
    assert_eq!(cron["spec"]["concurrencyPolicy"], "Forbid");
    let pod = &cron["spec"]["jobTemplate"]["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "starmap");
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    assert_eq!(c["image"], IMAGE);
    assert_eq!(
        str_list(&c["args"]),
        [
            "render",
            "--source",
            "$(STARMAP_SOURCE)",
            "--deploy",
            "$(STARMAP_DEPLOY)",
            "--push"
        ]
    );
    // $(VAR) in args expands only variables the container has: both come from the ConfigMap.
    assert_eq!(c["envFrom"][0]["configMapRef"]["name"], "starmap-config");
    assert_eq!(c["envFrom"][1]["secretRef"]["name"], "starmap-git");
    assert!(
        c["env"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "STARMAP_CACHE_DIR", "value": "/cache"})),
        "STARMAP_CACHE_DIR=/cache: {}",
        c["env"]
    );
    let sc = &c["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][kind][resource].is_string(),
                "resources.{kind}.{resource} not set"
            );
        }
    }
    // /cache is a writable emptyDir (the root file system is read-only).
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["mountPath"] == "/cache")
        .expect("a volume at /cache");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .expect("the /cache volume");
    assert!(volume["emptyDir"].is_object(), "/cache is not an emptyDir: {volume}");
}

#[test]
fn argocd_hub_follows_the_deploy_repos_argocd_directory() {
    let objects = build("argocd/hub");
    let app = find(&objects, "Application", "starmap-fleet");
    assert_eq!(app["apiVersion"], "argoproj.io/v1alpha1");
    assert_eq!(app["metadata"]["namespace"], "argocd");
    assert_eq!(app["spec"]["source"]["path"], "argocd");
    assert_eq!(app["spec"]["destination"]["server"], "https://kubernetes.default.svc");
    assert_eq!(app["spec"]["destination"]["namespace"], "argocd");
    let repo = objects
        .iter()
        .find(|o| o["kind"] == "Secret" && o["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "repository")
        .expect("a repository Secret");
    // Argo CD matches repository credentials by URL: the same repo the Application syncs.
    assert_eq!(repo["stringData"]["url"], app["spec"]["source"]["repoURL"]);
    assert_eq!(repo["metadata"]["namespace"], "argocd");

    // The example cluster is not applied (a placeholder cluster would get an Application).
    assert!(
        !objects
            .iter()
            .any(|o| o["metadata"]["labels"]["argocd.argoproj.io/secret-type"] == "cluster"),
        "argocd/hub applies a placeholder cluster"
    );
    let example = documents(&read(EXAMPLE_FILES[0]), EXAMPLE_FILES[0]);
    let [cluster] = example.as_slice() else {
        panic!("one object in {}", EXAMPLE_FILES[0])
    };
    let labels = &cluster["metadata"]["labels"];
    assert_eq!(labels["argocd.argoproj.io/secret-type"], "cluster");
    assert_eq!(
        labels["starmap.dev/managed"], "true",
        "the label value must be the string \"true\""
    );
    assert_eq!(cluster["metadata"]["namespace"], "argocd");
    let config: Value = serde_json::from_str(cluster["stringData"]["config"].as_str().unwrap())
        .expect("the cluster Secret's config is JSON");
    assert!(config["tlsClientConfig"].is_object());
    assert!(cluster["stringData"]["name"].is_string() && cluster["stringData"]["server"].is_string());
}

#[test]
fn argocd_starmap_deploys_install_starmap_and_its_patches_apply() {
    let objects = build("argocd/starmap");
    let app = find(&objects, "Application", "starmap-install");
    assert_eq!(app["metadata"]["namespace"], "argocd");
    let source = &app["spec"]["source"];
    assert_eq!(source["path"], "install/starmap");
    assert!(source["repoURL"].as_str().unwrap().contains("starmap-dev/starmap"));
    assert_eq!(app["spec"]["destination"]["namespace"], "starmap");
    // The real token put into the Secret is never overwritten by the placeholder.
    assert!(str_list(&app["spec"]["syncPolicy"]["syncOptions"]).contains(&"RespectIgnoreDifferences=true"));
    assert_eq!(app["spec"]["ignoreDifferences"][0]["name"], "starmap-git");

    let built = overlay_of_install_starmap(&source["kustomize"]["patches"]);
    let config = find(&built, "ConfigMap", "starmap-config");
    assert_eq!(config["data"]["STARMAP_SOURCE"], "https://patched.example/source.git");
    assert_eq!(config["data"]["STARMAP_DEPLOY"], "https://patched.example/deploy.git");
}

#[test]
fn flux_starmap_applies_install_starmap_and_its_patches_apply() {
    let objects = build("flux/starmap");
    // Not `starmap`: the deploy repo's flux/<hub>/ brings GitRepository and Kustomization
    // `starmap` into flux-system on a hub that is in the inventory.
    let repo = find(&objects, "GitRepository", "starmap-install");
    let ks = find(&objects, "Kustomization", "starmap-install");
    assert_eq!(repo["apiVersion"], "source.toolkit.fluxcd.io/v1");
    assert_eq!(ks["apiVersion"], "kustomize.toolkit.fluxcd.io/v1");
    assert!(repo["spec"]["url"].as_str().unwrap().contains("starmap-dev/starmap"));
    assert!(repo["spec"]["ignore"].as_str().unwrap().contains("!/install/"));
    assert_eq!(ks["spec"]["path"], "./install/starmap");
    assert_eq!(
        ks["spec"]["sourceRef"],
        json!({"kind": "GitRepository", "name": "starmap-install"})
    );
    for o in [repo, ks] {
        assert_eq!(o["metadata"]["namespace"], "flux-system");
    }

    let built = overlay_of_install_starmap(&ks["spec"]["patches"]);
    let config = find(&built, "ConfigMap", "starmap-config");
    assert_eq!(config["data"]["STARMAP_SOURCE"], "https://patched.example/source.git");
    assert_eq!(config["data"]["STARMAP_DEPLOY"], "https://patched.example/deploy.git");
    let secret = find(&built, "Secret", "starmap-git");
    assert_eq!(
        secret["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/ssa"],
        "IfNotPresent"
    );
    assert_eq!(secret["metadata"]["namespace"], "starmap");
}

/// Build `install/starmap` with `patches` (as Argo CD's `kustomize.patches` and Flux's
/// `spec.patches` apply them: kustomize patches), after pointing the URLs they set somewhere
/// recognizable, so that the result shows the patches did apply.
fn overlay_of_install_starmap(patches: &Value) -> Vec<Value> {
    let tmp = tempfile::tempdir().unwrap();
    common::copy_dir(&root().join("install/starmap"), &tmp.path().join("base"));
    let mut patches = patches.clone();
    for p in patches.as_array_mut().expect("patches is a list") {
        if let Some(text) = p["patch"].as_str() {
            let text = text
                .replace(
                    "https://git.example.com/retail/fleet-source.git",
                    "https://patched.example/source.git",
                )
                .replace(
                    "https://git.example.com/retail/fleet-deploy.git",
                    "https://patched.example/deploy.git",
                );
            p["patch"] = json!(text);
        }
    }
    let overlay = tmp.path().join("overlay");
    std::fs::create_dir(&overlay).unwrap();
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": ["../base"],
        "patches": patches,
    });
    // JSON is YAML: kustomize reads it as it is.
    std::fs::write(overlay.join("kustomization.yaml"), kustomization.to_string()).unwrap();
    kustomize(&overlay)
}

#[test]
fn flux_edge_holds_the_secret_that_flux_secret_ref_names() {
    let objects = build("flux/edge");
    let [secret] = objects.as_slice() else {
        panic!("flux/edge: one Secret, got {objects:?}")
    };
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["namespace"], "flux-system");
    // The name the docs put in starmap.yaml's flux.secretRef.
    let name = secret["metadata"]["name"].as_str().unwrap();
    assert!(read("docs/flux.md").contains(&format!("secretRef: {name}")));
    // The keys Flux's source-controller reads for HTTPS basic auth.
    assert!(secret["stringData"]["username"].is_string() && secret["stringData"]["password"].is_string());
}

// ---------------------------------------------------------------------------------------
// Strict schemas
// ---------------------------------------------------------------------------------------

/// Validates objects: built-in kinds against `k8s-json-schema/v1.30.10-standalone-strict`,
/// Argo CD and Flux kinds against their CRDs' openAPIV3Schema with `additionalProperties: false`
/// added wherever properties are listed (what the API server's strict field validation does),
/// and their metadata against ObjectMeta.
struct Schemas {
    k8s: PathBuf,
    crds: BTreeMap<(String, String), Value>,
    object_meta: Value,
}

impl Schemas {
    fn load() -> Schemas {
        let k8s = shared_data("k8s-json-schema/v1.30.10-standalone-strict");
        assert!(k8s.is_dir(), "no schemas at {}", k8s.display());
        let mut crds = BTreeMap::new();
        for dir in [
            "argo-cd-v3.5.1",
            "flux-kustomize-controller-v1.9.4",
            "flux-source-controller-v1.9.1",
        ] {
            let dir = shared_data(&format!("crds/{dir}"));
            for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
                let path = entry.unwrap().path();
                let text = std::fs::read_to_string(&path).unwrap();
                for crd in documents(&text, &path.display().to_string()) {
                    if crd["kind"] != "CustomResourceDefinition" {
                        continue;
                    }
                    let group = crd["spec"]["group"].as_str().unwrap();
                    let kind = crd["spec"]["names"]["kind"].as_str().unwrap();
                    for v in crd["spec"]["versions"].as_array().unwrap() {
                        let api = format!("{group}/{}", v["name"].as_str().unwrap());
                        let schema = strict(v["schema"]["openAPIV3Schema"].clone());
                        crds.insert((api, kind.to_string()), schema);
                    }
                }
            }
        }
        let configmap: Value = serde_json::from_str(&std::fs::read_to_string(k8s.join("configmap-v1.json")).unwrap())
            .expect("configmap-v1.json");
        let object_meta = configmap["properties"]["metadata"].clone();
        Schemas { k8s, crds, object_meta }
    }

    /// Errors of one object; panics when no schema knows its kind.
    fn errors(&self, o: &Value) -> Vec<String> {
        let api = o["apiVersion"].as_str().unwrap();
        let kind = o["kind"].as_str().unwrap();
        let (group, version) = api.rsplit_once('/').unwrap_or(("", api));
        let group = group.split('.').next().unwrap();
        let file = if group.is_empty() {
            format!("{}-{version}.json", kind.to_lowercase())
        } else {
            format!("{}-{group}-{version}.json", kind.to_lowercase())
        };
        let mut errors = Vec::new();
        let schema = match std::fs::read_to_string(self.k8s.join(&file)) {
            Ok(text) => serde_json::from_str(&text).unwrap(),
            Err(_) => {
                let schema = self
                    .crds
                    .get(&(api.to_string(), kind.to_string()))
                    .unwrap_or_else(|| panic!("no schema for {api} {kind}"));
                errors.extend(validate(&self.object_meta, &o["metadata"], "metadata"));
                schema.clone()
            }
        };
        errors.extend(validate(&schema, o, ""));
        errors
    }
}

fn validate(schema: &Value, instance: &Value, prefix: &str) -> Vec<String> {
    let validator = jsonschema::draft7::new(schema).expect("a valid schema");
    validator
        .iter_errors(instance)
        .map(|e| format!("{prefix}{}: {e}", e.instance_path()))
        .collect()
}

/// `additionalProperties: false` on every object schema that lists properties and does not
/// keep unknown fields.
fn strict(mut schema: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for child in map.values_mut() {
                    walk(child);
                }
                if map.get("type") == Some(&json!("object"))
                    && map.contains_key("properties")
                    && !map.contains_key("additionalProperties")
                    && map.get("x-kubernetes-preserve-unknown-fields") != Some(&json!(true))
                {
                    map.insert("additionalProperties".into(), json!(false));
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut schema);
    schema
}

#[test]
fn every_object_is_valid_against_the_strict_schemas() {
    let schemas = Schemas::load();
    let mut checked = Vec::new();
    let mut failures = Vec::new();
    let mut all: Vec<(String, Value)> = Vec::new();
    for dir in KUSTOMIZE_DIRS {
        all.extend(build(dir).into_iter().map(|o| (dir.to_string(), o)));
    }
    for file in EXAMPLE_FILES {
        all.extend(documents(&read(file), file).into_iter().map(|o| (file.to_string(), o)));
    }
    for (place, o) in &all {
        for e in schemas.errors(o) {
            failures.push(format!("{place}: {}: {e}", identity(o)));
        }
        checked.push(identity(o));
    }
    assert!(failures.is_empty(), "invalid objects:\n{}", failures.join("\n"));
    for kind in [
        "CronJob",
        "ClusterRole",
        "Secret",
        "argoproj.io/v1alpha1 Application",
        "GitRepository",
        "kustomize.toolkit.fluxcd.io/v1 Kustomization",
    ] {
        assert!(
            checked.iter().any(|c| c.contains(kind)),
            "no {kind} was checked: {checked:?}"
        );
    }
}

#[test]
fn the_strict_schemas_reject_unknown_and_mistyped_fields() {
    let schemas = Schemas::load();
    let bad = [
        json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "x"},
               "spec": {"schedule": "* * * * *", "concurrencyPolicy": "Forbid", "bogus": 1,
                        "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "b"}]}}}}}}),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "y"},
               "spec": {"project": "default", "destination": {"server": "s"}, "source": {"repoURL": "u", "pathx": "p"}}}),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "y", "labelz": {}},
               "spec": {"project": "default", "destination": {"server": "s"}, "source": {"repoURL": "u"}}}),
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "z"},
               "spec": {"interval": "1m", "prune": "yes", "sourceRef": {"kind": "GitRepository", "name": "s"}}}),
    ];
    for o in &bad {
        assert!(!schemas.errors(o).is_empty(), "accepted: {o}");
    }
}

// ---------------------------------------------------------------------------------------
// CI examples
// ---------------------------------------------------------------------------------------

/// A temp dir with stand-ins for `starmap`, `curl` and `gh` on PATH: each records its
/// arguments in `<name>.args`; `starmap` prints a plan and exits with $FAKE_RC (an error line
/// on stderr for 1).
struct FakeTools {
    dir: tempfile::TempDir,
}

impl FakeTools {
    fn new() -> FakeTools {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let scripts = [
            (
                "starmap",
                "#!/bin/sh\necho \"$@\" > \"$FAKE_DIR/starmap.args\"\n\
                 if [ \"$FAKE_RC\" = 1 ]; then echo 'error: workloads/x.yaml:3: boom' >&2; exit 1; fi\n\
                 echo '### starmap plan'\nexit \"$FAKE_RC\"\n",
            ),
            ("curl", "#!/bin/sh\necho \"$@\" > \"$FAKE_DIR/curl.args\"\n"),
            ("gh", "#!/bin/sh\necho \"$@\" > \"$FAKE_DIR/gh.args\"\n"),
        ];
        for (name, script) in scripts {
            let path = bin.join(name);
            std::fs::write(&path, script).unwrap();
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        FakeTools { dir }
    }

    /// Run `script` with `shell` (e.g. `["bash", "-eo", "pipefail", "-c"]`) in the temp dir:
    /// (exit code, stderr).
    fn run(&self, shell: &[&str], script: &str, rc: i32, env: &[(&str, &str)]) -> (i32, String) {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let out = Command::new(shell[0])
            .args(&shell[1..])
            .arg(script)
            .current_dir(self.dir.path())
            .env("PATH", path)
            .env("FAKE_DIR", self.dir.path())
            .env("FAKE_RC", rc.to_string())
            .envs(env.iter().copied())
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }
}

/// The `run` of the step named `name` in a GitHub Actions job.
fn gh_step<'a>(workflow: &'a Value, job: &str, name: &str) -> &'a Value {
    workflow["jobs"][job]["steps"]
        .as_array()
        .unwrap_or_else(|| panic!("no steps in job {job}"))
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no step {name:?} in job {job}"))
}

#[test]
fn github_actions_example_plans_on_pull_requests_and_renders_on_main() {
    let file = "docs/ci/github-actions.yaml";
    let docs = documents(&read(file), file);
    let [wf] = docs.as_slice() else {
        panic!("{file}: one document")
    };
    assert!(
        wf["on"]["pull_request"].is_object() && wf["on"]["push"].is_object(),
        "triggers: {}",
        wf["on"]
    );
    let deploy = wf["env"]["DEPLOY_URL"].as_str().expect("env.DEPLOY_URL");
    assert_eq!(wf["env"]["STARMAP_IMAGE"], IMAGE);
    assert_eq!(wf["jobs"]["plan"]["permissions"]["pull-requests"], "write");

    let plan = gh_step(wf, "plan", "starmap plan")["run"].as_str().unwrap();
    assert!(plan.contains("starmap plan") && plan.contains("-o markdown") && plan.contains("--detailed-exitcode"));
    let comment = gh_step(wf, "plan", "Comment on the pull request");
    assert!(comment["if"].as_str().unwrap().contains("always()"));
    let comment = comment["run"].as_str().unwrap();
    assert!(comment.contains("gh pr comment") && comment.contains("--body-file plan.md"));
    let render = gh_step(wf, "render", "starmap render --push")["run"].as_str().unwrap();
    assert!(render.contains("starmap render") && render.contains("--push"));

    // The scripts as GitHub runs them (`shell: bash`): exit 2 ("changes") passes, 1 fails and
    // still leaves a comment with the error.
    let bash = ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"];
    for (rc, want) in [(0, 0), (2, 0), (1, 1)] {
        let tools = FakeTools::new();
        let output = tools.dir.path().join("github_output");
        let env = [("DEPLOY_URL", deploy), ("GITHUB_OUTPUT", output.to_str().unwrap())];
        let (code, err) = tools.run(&bash, plan, rc, &env);
        assert_eq!(code, want, "plan step with starmap exiting {rc}: {err}");
        assert_eq!(
            tools.file("starmap.args").trim(),
            format!("plan --source . --deploy {deploy} -o markdown --detailed-exitcode")
        );
        assert_eq!(tools.file("github_output").trim(), format!("exitcode={rc}"));
        let md = tools.file("plan.md");
        if rc == 1 {
            assert!(md.contains("starmap plan failed") && md.contains("boom"), "{md}");
        } else {
            assert!(md.contains("### starmap plan"), "{md}");
        }
        let env = [("PR", "7"), ("GITHUB_REPOSITORY", "retail/fleet-source")];
        let (code, err) = tools.run(&bash, comment, 0, &env);
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            tools.file("gh.args").trim(),
            "pr comment 7 --repo retail/fleet-source --body-file plan.md"
        );
    }
    for (rc, want) in [(0, 0), (1, 1)] {
        let tools = FakeTools::new();
        let (code, err) = tools.run(&bash, render, rc, &[("DEPLOY_URL", deploy)]);
        assert_eq!(code, want, "render step with starmap exiting {rc}: {err}");
        assert_eq!(
            tools.file("starmap.args").trim(),
            format!("render --source . --deploy {deploy} --push")
        );
    }
}

#[test]
fn gitlab_ci_example_plans_on_merge_requests_and_renders_on_main() {
    let file = "docs/ci/gitlab-ci.yml";
    let docs = documents(&read(file), file);
    let [ci] = docs.as_slice() else {
        panic!("{file}: one document")
    };
    let deploy = ci["variables"]["DEPLOY_URL"].as_str().expect("variables.DEPLOY_URL");
    assert_eq!(ci["variables"]["STARMAP_IMAGE"], IMAGE);
    let plan_job = &ci["starmap-plan"];
    let render_job = &ci["starmap-render"];
    assert!(
        plan_job["rules"][0]["if"]
            .as_str()
            .unwrap()
            .contains("merge_request_event")
    );
    assert!(
        render_job["rules"][0]["if"]
            .as_str()
            .unwrap()
            .contains("CI_DEFAULT_BRANCH")
    );
    for job in [plan_job, render_job] {
        assert_eq!(job["extends"], ".starmap");
    }
    let script = |job: &Value| str_list(&job["script"]).join("\n");
    let plan = script(plan_job);
    assert!(plan.contains("starmap plan") && plan.contains("-o markdown") && plan.contains("--detailed-exitcode"));
    let render = script(render_job);
    assert!(render.contains("starmap render") && render.contains("--push"));

    // The plan script as the runner runs it (sh, stopping at the first failing command),
    // without the `apk add` line: exit 2 passes, 1 fails; the note is posted either way.
    let block = str_list(&plan_job["script"])
        .into_iter()
        .find(|s| s.contains("starmap plan"))
        .unwrap();
    let env = [
        ("DEPLOY_URL", deploy),
        ("GITLAB_API_TOKEN", "glpat-test"),
        ("CI_API_V4_URL", "https://gitlab.example.com/api/v4"),
        ("CI_PROJECT_ID", "42"),
        ("CI_MERGE_REQUEST_IID", "7"),
    ];
    for (rc, want) in [(0, 0), (2, 0), (1, 1)] {
        let tools = FakeTools::new();
        let (code, err) = tools.run(&["sh", "-e", "-c"], block, rc, &env);
        assert_eq!(code, want, "plan script with starmap exiting {rc}: {err}");
        assert_eq!(
            tools.file("starmap.args").trim(),
            format!("plan --source . --deploy {deploy} -o markdown --detailed-exitcode")
        );
        let curl = tools.file("curl.args");
        assert!(curl.contains("--data-urlencode body@plan.md"), "{curl}");
        assert!(curl.contains("PRIVATE-TOKEN: glpat-test"), "{curl}");
        assert!(
            curl.contains("https://gitlab.example.com/api/v4/projects/42/merge_requests/7/notes"),
            "{curl}"
        );
        let md = tools.file("plan.md");
        assert!(
            md.contains(if rc == 1 {
                "starmap plan failed"
            } else {
                "### starmap plan"
            }),
            "{md}"
        );
    }
    let render_line = str_list(&render_job["script"])
        .into_iter()
        .find(|s| s.contains("starmap render"))
        .unwrap();
    for (rc, want) in [(0, 0), (1, 1)] {
        let tools = FakeTools::new();
        let (code, err) = tools.run(&["sh", "-e", "-c"], render_line, rc, &[("DEPLOY_URL", deploy)]);
        assert_eq!(code, want, "render with starmap exiting {rc}: {err}");
        assert_eq!(
            tools.file("starmap.args").trim(),
            format!("render --source . --deploy {deploy} --push")
        );
    }
}

#[test]
fn ci_examples_copy_starmap_from_where_the_image_has_it() {
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("COPY --from=build /starmap /usr/local/bin/starmap"));
    assert!(dockerfile.contains("ENTRYPOINT [\"/usr/local/bin/starmap\"]"));
    for file in ["docs/ci/github-actions.yaml", "docs/ci/gitlab-ci.yml"] {
        let text = read(file);
        assert!(text.contains("docker cp \"$id:/usr/local/bin/starmap\""), "{file}");
        assert!(text.contains(IMAGE), "{file}");
    }
}

// ---------------------------------------------------------------------------------------
// Docs: commands and paths that exist
// ---------------------------------------------------------------------------------------

const DOC_FILES: [&str; 6] = [
    "docs/argocd.md",
    "docs/flux.md",
    "docs/ci/github-actions.yaml",
    "docs/ci/gitlab-ci.yml",
    "argocd/README.md",
    "flux/README.md",
];

/// Flags of `starmap <command> ...` written in `text`: (command, flag, line number). A line
/// ending in `\` continues on the next.
fn documented_flags(text: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    let mut i = 0;
    while i < lines.len() {
        let start = i;
        let mut line = lines[i].to_string();
        while line.trim_end().ends_with('\\') && i + 1 < lines.len() {
            i += 1;
            line = format!("{} {}", line.trim_end().trim_end_matches('\\'), lines[i]);
        }
        i += 1;
        for command in ["render", "plan", "explain", "validate"] {
            let needle = format!("starmap {command} ");
            let Some(at) = line.find(&needle) else { continue };
            let rest = &line[at + needle.len()..];
            // The command ends where markdown code, a comment or another command starts.
            let end = rest.find(['`', '#', '|', ';', '>', '(']).unwrap_or(rest.len());
            for word in rest[..end].split_whitespace() {
                if word.starts_with('-') && word.len() > 1 {
                    let flag = word.split('=').next().unwrap();
                    let flag = flag.trim_end_matches(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
                    out.push((command.to_string(), flag.to_string(), start + 1));
                }
            }
        }
    }
    out
}

#[test]
fn documented_starmap_commands_use_flags_the_binary_has() {
    let mut help = BTreeMap::new();
    let mut unknown = Vec::new();
    let mut count = 0;
    for file in DOC_FILES {
        for (command, flag, line) in documented_flags(&read(file)) {
            let text = help.entry(command.clone()).or_insert_with(|| {
                let out = starmap().args([command.as_str(), "--help"]).output().unwrap();
                assert!(out.status.success());
                String::from_utf8_lossy(&out.stdout).into_owned()
            });
            let known = [" ", ",", "\n"]
                .iter()
                .any(|end| text.contains(&format!("{flag}{end}")));
            if !known {
                unknown.push(format!("{file}:{line}: starmap {command} {flag}"));
            }
            count += 1;
        }
    }
    assert!(
        unknown.is_empty(),
        "flags that `starmap <command> --help` does not list:\n{}",
        unknown.join("\n")
    );
    assert!(count > 30, "only {count} flags found in the docs: is the scan broken?");
}

#[test]
fn the_extraction_of_documented_flags_sees_what_it_should() {
    let text = "run `starmap plan --source . -o markdown --diff` now\n\
                starmap render --source . \\\n  --deploy x --push   # comment --nope\n";
    let flags: Vec<(String, String, usize)> = documented_flags(text);
    let got: Vec<(&str, &str, usize)> = flags.iter().map(|(c, f, l)| (c.as_str(), f.as_str(), *l)).collect();
    assert_eq!(
        got,
        [
            ("plan", "--source", 1),
            ("plan", "-o", 1),
            ("plan", "--diff", 1),
            ("render", "--source", 2),
            ("render", "--deploy", 2),
            ("render", "--push", 2),
        ]
    );
}

#[test]
fn paths_of_this_project_named_in_the_docs_exist() {
    let prefixes = [
        "install/starmap",
        "argocd/hub",
        "argocd/starmap",
        "flux/edge",
        "flux/starmap",
        "docs/ci",
    ];
    let mut missing = Vec::new();
    let mut seen = 0;
    for file in DOC_FILES.iter().chain(&["install/starmap/kustomization.yaml"]) {
        let text = read(file);
        for word in text.split(|c: char| c.is_whitespace() || "`()[],:|\"'".contains(c)) {
            let word = word.trim_end_matches('.');
            let word = word.strip_prefix("../").unwrap_or(word);
            if prefixes
                .iter()
                .any(|p| word == *p || word.starts_with(&format!("{p}/")))
            {
                seen += 1;
                if !root().join(word).exists() {
                    missing.push(format!("{file}: {word}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "named but missing:\n{}", missing.join("\n"));
    assert!(seen > 10, "only {seen} paths found");
}

// ---------------------------------------------------------------------------------------
// Dockerfile (no Docker engine here: checked by reading)
// ---------------------------------------------------------------------------------------

/// Cargo.toml's value of `key = "..."` (first occurrence).
fn cargo_value(cargo: &str, key: &str) -> String {
    cargo
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key} = ")))
        .unwrap_or_else(|| panic!("no {key} in Cargo.toml"))
        .trim_matches('"')
        .to_string()
}

fn version_tuple(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.parse().unwrap()).collect()
}

#[test]
fn dockerfile_stages_target_and_paths_agree() {
    let dockerfile = read("Dockerfile");
    let cargo = read("Cargo.toml");
    let froms: Vec<&str> = dockerfile.lines().filter_map(|l| l.strip_prefix("FROM ")).collect();
    assert_eq!(
        froms,
        [
            "golang:${GO_VERSION}-bookworm AS tools",
            "rust:${RUST_VERSION}-bookworm AS build",
            "gcr.io/distroless/static-debian12:nonroot",
        ]
    );
    let arg = |name: &str| {
        dockerfile
            .lines()
            .find_map(|l| l.strip_prefix(&format!("ARG {name}=")))
            .unwrap_or_else(|| panic!("no ARG {name}=... default"))
            .to_string()
    };
    // The Rust image is new enough for the crate, and Go for helm (go.mod: go 1.23.0).
    let rust = arg("RUST_VERSION");
    assert!(
        version_tuple(&rust) >= version_tuple(&cargo_value(&cargo, "rust-version")),
        "rust:{rust} is older than Cargo.toml's rust-version"
    );
    assert!(version_tuple(&arg("GO_VERSION")) >= vec![1, 23]);
    assert_eq!(arg("KUSTOMIZE_VERSION"), "v5.5.0");
    assert_eq!(arg("HELM_VERSION"), "v3.17.3");

    // Stage 1: static Go builds into /out, which stage 3 copies from.
    for needle in [
        "ENV CGO_ENABLED=0 GOBIN=/out",
        "sigs.k8s.io/kustomize/kustomize/v5@${KUSTOMIZE_VERSION}",
        "helm.sh/helm/v3/cmd/helm@${HELM_VERSION}",
        "COPY --from=tools /out/kustomize /out/helm /usr/local/bin/",
    ] {
        assert!(dockerfile.contains(needle), "Dockerfile lacks {needle:?}");
    }

    // Stage 2: the musl target is installed, built, and its binary (Cargo.toml's [[bin]]) copied.
    let bin = cargo
        .split("[[bin]]")
        .nth(1)
        .map(|section| cargo_value(section, "name"))
        .expect("a [[bin]] in Cargo.toml");
    assert_eq!(bin, "starmap");
    for needle in [
        format!("rustup target add {MUSL}"),
        format!("cargo build --release --locked --target {MUSL} --features vendored-openssl"),
        format!("cp target/{MUSL}/release/{bin} /{bin}"),
        "apt-get install -y --no-install-recommends musl-tools".to_string(),
        "OPENSSL_STATIC=1".to_string(),
    ] {
        assert!(dockerfile.contains(&needle), "Dockerfile lacks {needle:?}");
    }
    assert!(
        !dockerfile.contains("OPENSSL_NO_VENDOR="),
        "OPENSSL_NO_VENDOR turns the vendored build off"
    );
    for feature_of_git2 in ["vendored-libgit2", "https", "ssh"] {
        assert!(
            cargo.contains(&format!("\"{feature_of_git2}\"")),
            "git2 feature {feature_of_git2}"
        );
    }
    // `--features vendored-openssl` needs `vendored-openssl = ["git2/vendored-openssl"]` in
    // Cargo.toml (and openssl-src in Cargo.lock, for --locked).
    if cargo.contains("vendored-openssl") {
        assert!(
            cargo.contains("vendored-openssl = [\"git2/vendored-openssl\"]"),
            "the feature's definition"
        );
        assert!(
            read("Cargo.lock").contains("name = \"openssl-src\""),
            "Cargo.lock lacks openssl-src"
        );
    } else {
        eprintln!(
            "note: Cargo.toml has no feature vendored-openssl yet; the Dockerfile's build needs \
             `[features] vendored-openssl = [\"git2/vendored-openssl\"]`"
        );
    }

    // Every stage named in --from is defined.
    let stages: BTreeSet<&str> = froms.iter().filter_map(|f| f.split(" AS ").nth(1)).collect();
    for line in dockerfile.lines().filter(|l| l.starts_with("COPY --from=")) {
        let stage = line["COPY --from=".len()..].split_whitespace().next().unwrap();
        assert!(stages.contains(stage), "COPY from undefined stage {stage}");
    }

    // .dockerignore leaves out target/ and keeps what the build reads.
    let ignore = read(".dockerignore");
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        patterns.contains(&"target/") || patterns.contains(&"target"),
        ".dockerignore: {patterns:?}"
    );
    for needed in ["Cargo.toml", "Cargo.lock", "src", "templates", "benches"] {
        assert!(
            !patterns.iter().any(|p| p.trim_end_matches('/') == needed),
            ".dockerignore leaves out {needed}, which the build needs"
        );
        assert!(root().join(needed).exists(), "{needed} does not exist");
    }
}

// ---------------------------------------------------------------------------------------
// The starmap.yaml of the guides
// ---------------------------------------------------------------------------------------

/// The first ```yaml block of a markdown file that sets `deploy:`.
fn starmap_yaml_of(doc: &str) -> String {
    let text = read(doc);
    text.split("```yaml\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .find(|block| block.contains("deploy:"))
        .unwrap_or_else(|| panic!("{doc} shows no starmap.yaml"))
        .to_string()
}

#[test]
fn the_starmap_yaml_of_each_guide_is_accepted_by_starmap() {
    for doc in ["docs/flux.md", "docs/argocd.md"] {
        let snippet = starmap_yaml_of(doc);
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("source");
        common::copy_dir(&common::fixtures(), &src);
        // The guide's keys, and the example fleet's `ignore:` (its drafts/ and .github/ are not specs).
        let config = format!("ignore:\n- drafts/**\n- .github/**\n{snippet}");
        std::fs::write(src.join("starmap.yaml"), &config).unwrap();
        let out = starmap().arg("validate").arg("--source").arg(&src).output().unwrap();
        assert!(
            out.status.success(),
            "{doc}: starmap validate rejects the guide's starmap.yaml:\n{}\n{config}",
            String::from_utf8_lossy(&out.stderr)
        );
        // And a misspelt key is an error, so the check above means something.
        std::fs::write(src.join("starmap.yaml"), config.replace("deploy:", "deploi:")).unwrap();
        let out = starmap().arg("validate").arg("--source").arg(&src).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{doc}: a misspelt key was accepted");
    }
}
