//! The deployment files of this project, checked with real tools and real files:
//!
//! - every kustomize directory (`install/starmap`, `install/edge-reader`, `argocd/hub`,
//!   `argocd/starmap`, `flux/edge`, `flux/starmap`) builds with the real `kubectl kustomize` (or
//!   `kustomize build`), and every object it yields, and every object shown in
//!   `docs/deploy-controller.md`, is valid against the strict Kubernetes JSON schemas, or, for
//!   Argo CD and Flux kinds, against their CRDs' openAPIV3Schema made strict (`../shared/data`);
//! - `install/starmap` runs the controller `starmap run` as the contract says: one Deployment of
//!   two replicas with leader election (POD_NAME/POD_NAMESPACE from the downward API, a Role on
//!   its Lease only), updated by a rolling update that keeps both pods Ready and guarded by a
//!   PodDisruptionBudget of one, a config file of known keys whose every path is mounted, probes
//!   and a Service on its HTTP port, non-root with a read-only root and a writable cache;
//!   `install/edge-reader` grants `get` and nothing more;
//! - the patches that `argocd/starmap` and `flux/starmap` put on `install/starmap` apply, with
//!   the real kustomize, both in place (as Argo CD and Flux apply them) and from an overlay, and
//!   change only the repos (and argocdHub) of the config file and protect every Secret;
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
const KUSTOMIZE_DIRS: [&str; 6] = [
    "install/starmap",
    "install/edge-reader",
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

// ---------------------------------------------------------------------------------------
// install/starmap: the controller `starmap run`
// ---------------------------------------------------------------------------------------

/// The keys of `starmap run --config FILE` (the long flags in camelCase; any other key is an
/// error there).
const CONFIG_KEYS: [&str; 18] = [
    "source",
    "inventory",
    "deploy",
    "branch",
    "push",
    "interval",
    "statusInterval",
    "listen",
    "kubeconfig",
    "argocdHub",
    "concurrency",
    "timeout",
    "retries",
    "webhookSecretFile",
    "leaderElect",
    "leaseName",
    "leaseNamespace",
    "leaseDuration",
];

/// The config file's path in the container, as the command line gives it.
const CONFIG_PATH: &str = "/etc/starmap/config.yaml";

/// Where Kubernetes mounts a pod's ServiceAccount token.
const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The controller of a build of install/starmap: its one Deployment, the pod spec and the
/// one container.
struct Controller<'a> {
    objects: &'a [Value],
    deployment: &'a Value,
    pod: &'a Value,
    container: &'a Value,
}

impl<'a> Controller<'a> {
    fn of(objects: &'a [Value]) -> Controller<'a> {
        let deployments: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Deployment").collect();
        let [deployment] = deployments.as_slice() else {
            panic!("one Deployment, got {}", deployments.len())
        };
        let pod = &deployment["spec"]["template"]["spec"];
        let containers = pod["containers"].as_array().expect("containers");
        assert_eq!(containers.len(), 1, "one container");
        Controller {
            objects,
            deployment,
            pod,
            container: &containers[0],
        }
    }

    fn volume(&self, name: &str) -> &'a Value {
        self.pod["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name}"))
    }

    /// The volume a file at `path` in the container comes from, and the file's key in that
    /// volume's ConfigMap or Secret.
    fn file_source(&self, path: &str) -> (&'a Value, String) {
        for m in self.container["volumeMounts"].as_array().unwrap() {
            let mount = m["mountPath"].as_str().unwrap();
            let key = match m["subPath"].as_str() {
                Some(sub) if mount == path => sub.to_string(),
                Some(_) => continue,
                None => match path.strip_prefix(&format!("{}/", mount.trim_end_matches('/'))) {
                    Some(rest) => rest.to_string(),
                    None => continue,
                },
            };
            let volume = self.volume(m["name"].as_str().unwrap());
            // `items` maps keys to other file names; none of ours does.
            assert!(
                volume["configMap"]["items"].is_null() && volume["secret"]["items"].is_null(),
                "{volume}"
            );
            return (volume, key);
        }
        panic!("nothing is mounted at {path}")
    }

    /// The text of the file at `path`, from the ConfigMap or Secret mounted there.
    fn file(&self, path: &str) -> String {
        let (volume, key) = self.file_source(path);
        let (kind, name) = if let Some(name) = volume["configMap"]["name"].as_str() {
            ("ConfigMap", name)
        } else if let Some(name) = volume["secret"]["secretName"].as_str() {
            ("Secret", name)
        } else {
            panic!("{path} is on {volume}, not a ConfigMap or Secret")
        };
        let o = find(self.objects, kind, name);
        o["data"][&key]
            .as_str()
            .or_else(|| o["stringData"][&key].as_str())
            .unwrap_or_else(|| panic!("{kind}/{name} has no key {key} (for {path})"))
            .to_string()
    }

    /// The parsed config file, checked (see [`check_config`]).
    fn config(&self) -> serde_json::Map<String, Value> {
        check_config(&self.file(CONFIG_PATH), CONFIG_PATH)
    }

    /// The container port `port` (a number or a port name) stands for.
    fn container_port(&self, port: &Value) -> u64 {
        let ports = self.container["ports"].as_array().expect("container ports");
        ports
            .iter()
            .find(|p| p["containerPort"] == *port || (port.is_string() && p["name"] == *port))
            .unwrap_or_else(|| panic!("port {port} is not a port of the container: {ports:?}"))["containerPort"]
            .as_u64()
            .unwrap()
    }

    fn env(&self, name: &str) -> &'a Value {
        self.container["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("no env {name}"))
    }

    /// The volume mounted at exactly `path`.
    fn volume_at(&self, path: &str) -> &'a Value {
        let m = self.container["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["mountPath"] == path)
            .unwrap_or_else(|| panic!("no volume at {path}"));
        self.volume(m["name"].as_str().unwrap())
    }
}

/// A duration the controller takes: whole seconds as a number, or what starmap's own duration
/// parser (`starmap::time::parse_duration`) reads.
fn is_duration(v: &Value) -> bool {
    v.is_u64() || v.as_str().is_some_and(|s| starmap::time::parse_duration(s).is_ok())
}

/// The controller's config file: one YAML mapping, only keys of [`CONFIG_KEYS`], each of the
/// type the controller reads.
fn check_config(text: &str, name: &str) -> serde_json::Map<String, Value> {
    let docs = documents(text, name);
    let [doc] = docs.as_slice() else {
        panic!("{name}: one document, got {}", docs.len())
    };
    let config = doc
        .as_object()
        .unwrap_or_else(|| panic!("{name}: not a mapping"))
        .clone();
    for (key, value) in &config {
        assert!(CONFIG_KEYS.contains(&key.as_str()), "{name}: unknown key {key}");
        let ok = match key.as_str() {
            "push" | "leaderElect" => value.is_boolean(),
            "concurrency" | "retries" => value.is_u64(),
            "interval" | "statusInterval" | "timeout" | "leaseDuration" => is_duration(value),
            _ => value.as_str().is_some_and(|s| !s.is_empty()),
        };
        assert!(ok, "{name}: {key}: {value} is not what the controller reads there");
    }
    config
}

#[test]
fn install_starmap_runs_the_controller_as_one_deployment_of_two_replicas() {
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
        assert!(
            !["CronJob", "Job", "Pod", "StatefulSet", "DaemonSet"].contains(&kind),
            "{} runs starmap besides the controller",
            identity(o)
        );
    }
    find(&objects, "Namespace", "starmap");
    let c = Controller::of(&objects);
    assert_eq!(c.deployment["metadata"]["name"], "starmap");
    assert_eq!(c.deployment["spec"]["replicas"], 2);
    // Both replicas are Ready (the standby once it reads the Lease), so a rolling update
    // finishes: one new pod at a time (a Ready standby) before an old one stops, so two pods
    // stay Ready throughout and the old leader releases the Lease to a Ready standby.
    assert_eq!(
        c.deployment["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    );
    assert!(
        c.deployment["spec"]["minReadySeconds"].is_null(),
        "a standby is Ready within seconds; no need to wait"
    );
    assert_eq!(c.pod["terminationGracePeriodSeconds"], 30);
    assert_eq!(c.container["image"], IMAGE);

    // `starmap run --config ...`: the image's entrypoint is starmap, the args its command.
    assert!(
        c.container["command"].is_null(),
        "command replaces the image's entrypoint"
    );
    assert!(read("Dockerfile").contains("ENTRYPOINT [\"/usr/local/bin/starmap\"]"));
    assert_eq!(str_list(&c.container["args"]), ["run", "--config", CONFIG_PATH]);

    // Git credentials from the Secret starmap-git, as environment variables.
    let from: Vec<&Value> = c.container["envFrom"].as_array().unwrap().iter().collect();
    assert!(
        from.iter().any(|f| f["secretRef"]["name"] == "starmap-git"),
        "envFrom: {from:?}"
    );
    let secret = find(&objects, "Secret", "starmap-git");
    for key in ["GIT_USERNAME", "GIT_TOKEN"] {
        assert!(secret["stringData"][key].is_string(), "{key} missing in {secret}");
    }
    // No KUBECONFIG: the Lease is in this cluster, found the in-cluster way.
    assert!(
        !c.container["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "KUBECONFIG"),
        "KUBECONFIG would point the leader election elsewhere"
    );
    for key in [
        "STARMAP_SOURCE",
        "STARMAP_DEPLOY",
        "STARMAP_INVENTORY",
        "STARMAP_BRANCH",
    ] {
        assert!(
            !c.container["env"].as_array().unwrap().iter().any(|e| e["name"] == key),
            "{key}: the config file is the one place for the repos"
        );
    }
}

#[test]
fn the_controller_config_file_is_yaml_with_known_keys_and_every_path_exists() {
    let objects = build("install/starmap");
    let c = Controller::of(&objects);
    // The ConfigMap is generated from config.yaml with a hash suffix, and the pod mounts
    // that very name: a changed config makes a new pod template.
    let (volume, key) = c.file_source(CONFIG_PATH);
    assert_eq!(key, "config.yaml");
    let name = volume["configMap"]["name"].as_str().expect("a ConfigMap volume");
    assert!(name.starts_with("starmap-config-"), "not a generated name: {name}");
    let cm = find(&objects, "ConfigMap", name);
    assert_eq!(
        cm["data"].as_object().unwrap().keys().collect::<Vec<_>>(),
        ["config.yaml"]
    );

    let config = c.config();
    // The base's file is install/starmap/config.yaml itself.
    assert_eq!(
        config,
        check_config(&read("install/starmap/config.yaml"), "install/starmap/config.yaml")
    );
    for key in ["source", "deploy"] {
        assert!(
            config[key].as_str().is_some_and(|u| u.contains("://")),
            "{key}: {}",
            config[key]
        );
    }
    assert_eq!(config["push"], true);
    assert_eq!(config["leaderElect"], true);

    // listen: every interface, on the port the probes and the Service use.
    let listen = config["listen"].as_str().unwrap();
    let (host, port) = listen.rsplit_once(':').expect("listen is host:port");
    assert!(
        ["0.0.0.0", "[::]"].contains(&host),
        "listen {listen}: the kubelet and the Service reach the pod on its IP"
    );
    let port: u64 = port.parse().unwrap();
    assert_eq!(c.container_port(&json!("http")), port);

    // Every file the config names is mounted, from a Secret that has that key.
    for (key, secret) in [
        ("kubeconfig", "starmap-kubeconfig"),
        ("webhookSecretFile", "starmap-webhook"),
    ] {
        let path = config[key].as_str().unwrap_or_else(|| panic!("{key} is not set"));
        let (volume, _) = c.file_source(path);
        assert_eq!(volume["secret"]["secretName"], secret, "{key}: {path}");
        assert!(!c.file(path).is_empty(), "{key}: {path} is empty");
        // Secret files are 0400 by default, root's: the group fsGroup gives must read them.
        let mode = volume["secret"]["defaultMode"].as_u64().unwrap_or(0o644);
        assert!(mode & 0o040 != 0, "{secret}: mode {mode:o} is not group-readable");
    }
    assert!(c.pod["securityContext"]["fsGroup"].is_u64());
}

#[test]
fn the_config_keys_are_flags_of_starmap_run() {
    let out = starmap().args(["run", "--help"]).output().unwrap();
    assert!(
        out.status.success(),
        "starmap run --help failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let help = String::from_utf8_lossy(&out.stdout);
    let mut flags = vec!["--config".to_string()];
    for key in CONFIG_KEYS {
        let mut flag = String::from("--");
        for ch in key.chars() {
            if ch.is_ascii_uppercase() {
                flag.push('-');
                flag.push(ch.to_ascii_lowercase());
            } else {
                flag.push(ch);
            }
        }
        flags.push(flag);
    }
    let missing: Vec<&String> = flags
        .iter()
        .filter(|f| {
            ![" ", ",", "\n", "="]
                .iter()
                .any(|end| help.contains(&format!("{f}{end}")))
        })
        .collect();
    assert!(missing.is_empty(), "`starmap run --help` lacks {missing:?}:\n{help}");
}

/// What the real `starmap run` says of `config` (the text of a config file): `None` when it
/// accepted the file (it went on, to fail at leader election without a cluster here, or was
/// still running after 20 s), else its error about the file. The file's paths and repos are
/// pointed into a temporary directory first, so that nothing is fetched or bound outside it;
/// every key stays, with a value of the same type.
fn rejected_by_starmap_run(config: &serde_json::Map<String, Value>) -> Option<String> {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("secret"), "s3cret\n").unwrap();
    let mut config = config.clone();
    let local = [
        ("source", common::fixtures().display().to_string()),
        ("deploy", dir.join("deploy").display().to_string()),
        ("kubeconfig", dir.join("kubeconfig").display().to_string()),
        ("webhookSecretFile", dir.join("secret").display().to_string()),
        ("listen", "127.0.0.1:0".to_string()),
    ];
    for (key, value) in local {
        if config.contains_key(key) {
            config.insert(key.to_string(), json!(value));
        }
    }
    let path = dir.join("config.yaml");
    std::fs::write(&path, Value::Object(config).to_string()).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_starmap"))
        .args(["run", "--config"])
        .arg(&path)
        .current_dir(dir)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env_remove("STARMAP_SOURCE")
        .env_remove("STARMAP_DEPLOY")
        .env_remove("STARMAP_INVENTORY")
        .env_remove("STARMAP_BRANCH")
        .env_remove("STARMAP_KUBECONFIG")
        .env_remove("STARMAP_WEBHOOK_SECRET")
        .env("KUBECONFIG", dir.join("no-kubeconfig"))
        .env("STARMAP_CACHE_DIR", dir.join("cache"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    if child.try_wait().unwrap().is_none() {
        child.kill().unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    // The controller's errors about its config file name the file (and the line).
    stderr.contains(&format!("{}:", path.display())).then_some(stderr)
}

#[test]
fn the_real_controller_accepts_each_config_file() {
    let argocd = build("argocd/starmap");
    let flux = build("flux/starmap");
    let configs = [
        ("install/starmap", Controller::of(&build("install/starmap")).config()),
        (
            "argocd/starmap",
            Controller::of(&install_starmap_patched(
                &find(&argocd, "Application", "starmap-install")["spec"]["source"]["kustomize"]["patches"],
            ))
            .config(),
        ),
        (
            "flux/starmap",
            Controller::of(&install_starmap_patched(
                &find(&flux, "Kustomization", "starmap-install")["spec"]["patches"],
            ))
            .config(),
        ),
    ];
    for (what, config) in &configs {
        if let Some(error) = rejected_by_starmap_run(config) {
            panic!("starmap run rejects the config file of {what}:\n{error}");
        }
    }
    // And the check sees a bad file.
    let mut bad = configs[0].1.clone();
    bad.insert("intervall".into(), json!("30s"));
    let error = rejected_by_starmap_run(&bad).expect("an unknown key is rejected");
    assert!(error.contains("intervall"), "{error}");
    let mut bad = configs[0].1.clone();
    bad.insert("leaseDuration".into(), json!("soon"));
    assert!(rejected_by_starmap_run(&bad).is_some(), "a bad duration is rejected");
}

#[test]
fn probes_and_the_service_reach_the_controllers_http_port() {
    let objects = build("install/starmap");
    let c = Controller::of(&objects);
    let port = c.container_port(&json!("http"));
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        let get = &c.container[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert_eq!(c.container_port(&get["port"]), port, "{probe}");
        assert!(get["scheme"].is_null() || get["scheme"] == "HTTP", "{probe}");
    }
    assert!(c.container["startupProbe"].is_null());

    // The Deployment selects its own pods, and the Service those pods, on the port.
    let labels = c.deployment["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .unwrap();
    let selects = |selector: &Value| {
        let selector = selector.as_object().expect("a selector");
        !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    };
    assert!(selects(&c.deployment["spec"]["selector"]["matchLabels"]));
    let services: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Service").collect();
    let [service] = services.as_slice() else {
        panic!("one Service")
    };
    assert!(selects(&service["spec"]["selector"]), "{service}");
    let ports = service["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["name"], "http");
    assert_eq!(ports[0]["port"], 8080);
    assert_eq!(c.container_port(&ports[0]["targetPort"]), port);
    // Only Ready pods (the leader, and a standby that can relay to it) behind it.
    assert!(
        service["spec"]["publishNotReadyAddresses"].is_null() || service["spec"]["publishNotReadyAddresses"] == false
    );

    // One PodDisruptionBudget over the same pods: a drain evicts one of the two Ready pods at
    // a time (never the last one), and a pod that is not Ready at all.
    let budgets: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "PodDisruptionBudget").collect();
    let [budget] = budgets.as_slice() else {
        panic!("one PodDisruptionBudget: {budgets:?}")
    };
    assert_eq!(budget["apiVersion"], "policy/v1");
    assert_eq!(budget["spec"]["minAvailable"], 1);
    assert!(budget["spec"]["maxUnavailable"].is_null());
    assert!(
        budget["spec"]["minAvailable"].as_u64().unwrap() < c.deployment["spec"]["replicas"].as_u64().unwrap(),
        "a budget of all replicas would block every drain"
    );
    assert_eq!(budget["spec"]["unhealthyPodEvictionPolicy"], "AlwaysAllow");
    assert!(selects(&budget["spec"]["selector"]["matchLabels"]), "{budget}");
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"], c.deployment["spec"]["selector"]["matchLabels"],
        "exactly the Deployment's pods"
    );
}

#[test]
fn leader_election_has_its_identity_and_a_role_on_its_lease_only() {
    let objects = build("install/starmap");
    let c = Controller::of(&objects);
    let config = c.config();
    // POD_NAME and POD_NAMESPACE from the downward API.
    for (name, field) in [("POD_NAME", "metadata.name"), ("POD_NAMESPACE", "metadata.namespace")] {
        assert_eq!(
            c.env(name)["valueFrom"]["fieldRef"]["fieldPath"],
            field,
            "{name}: {}",
            c.env(name)
        );
    }
    let lease_name = config.get("leaseName").and_then(Value::as_str).unwrap_or("starmap");
    // Without leaseNamespace the Lease is in POD_NAMESPACE: the pod's, where the Role is.
    let lease_namespace = config
        .get("leaseNamespace")
        .and_then(Value::as_str)
        .unwrap_or("starmap");
    assert_eq!(lease_namespace, c.deployment["metadata"]["namespace"]);

    // The token is mounted: the controller talks to this cluster's API for the Lease.
    assert_eq!(c.pod["automountServiceAccountToken"], true);
    assert_eq!(c.pod["serviceAccountName"], "starmap");
    find(&objects, "ServiceAccount", "starmap");

    let roles: Vec<&Value> = objects.iter().filter(|o| o["kind"] == "Role").collect();
    let [role] = roles.as_slice() else { panic!("one Role") };
    assert_eq!(role["metadata"]["namespace"], lease_namespace);
    let mut verbs = BTreeSet::new();
    for rule in role["rules"].as_array().unwrap() {
        assert_eq!(rule["apiGroups"], json!(["coordination.k8s.io"]), "rule {rule}");
        assert_eq!(rule["resources"], json!(["leases"]), "rule {rule}");
        let rule_verbs = str_list(&rule["verbs"]);
        for v in &rule_verbs {
            // create cannot be limited by name; everything else is, to the one Lease.
            if *v != "create" {
                assert_eq!(rule["resourceNames"], json!([lease_name]), "{v} in rule {rule}");
            }
        }
        verbs.extend(rule_verbs);
    }
    // What kube-lease-manager does (get, create, patch) and a client-go style lock (update);
    // no list, watch, delete or "*".
    assert_eq!(verbs, BTreeSet::from(["create", "get", "patch", "update"]));
    let binding = find(&objects, "RoleBinding", role["metadata"]["name"].as_str().unwrap());
    assert_eq!(binding["metadata"]["namespace"], lease_namespace);
    assert_eq!(binding["roleRef"]["kind"], "Role");
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "starmap", "namespace": "starmap"}])
    );

    // Cluster-wide, only reading Argo CD Applications (for argocdHub): no Lease, no write.
    for o in objects.iter().filter(|o| o["kind"] == "ClusterRole") {
        for rule in o["rules"].as_array().unwrap() {
            assert_eq!(rule["apiGroups"], json!(["argoproj.io"]), "{}: {rule}", identity(o));
            assert_eq!(rule["resources"], json!(["applications"]), "{}: {rule}", identity(o));
            let verbs: BTreeSet<&str> = str_list(&rule["verbs"]).into_iter().collect();
            assert!(
                verbs.is_subset(&BTreeSet::from(["get", "list", "watch"])),
                "{}: {rule}",
                identity(o)
            );
        }
    }
    for o in objects.iter().filter(|o| o["kind"] == "ClusterRoleBinding") {
        assert_eq!(o["roleRef"]["kind"], "ClusterRole");
        find(&objects, "ClusterRole", o["roleRef"]["name"].as_str().unwrap());
        assert_eq!(
            o["subjects"],
            json!([{"kind": "ServiceAccount", "name": "starmap", "namespace": "starmap"}])
        );
    }
}

#[test]
fn the_controller_runs_unprivileged_with_a_read_only_root_and_writable_cache() {
    let objects = build("install/starmap");
    let c = Controller::of(&objects);
    let pod_sc = &c.pod["securityContext"];
    assert_eq!(pod_sc["runAsNonRoot"], true);
    // The image's user.
    let user = read("Dockerfile")
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("USER in the Dockerfile")
        .split(':')
        .next()
        .unwrap()
        .parse::<u64>()
        .unwrap();
    assert_eq!(pod_sc["runAsUser"], user);
    assert_eq!(pod_sc["seccompProfile"]["type"], "RuntimeDefault");
    let sc = &c.container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["capabilities"]["drop"], json!(["ALL"]));
    assert!(sc["privileged"].is_null() || sc["privileged"] == false);

    // The git cache and every directory helm writes to are on writable emptyDirs, and so is
    // /tmp (kustomize and helm builds).
    assert_eq!(c.env("STARMAP_CACHE_DIR")["value"], "/cache");
    let writable: Vec<&str> = c.container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| c.volume(m["name"].as_str().unwrap())["emptyDir"].is_object())
        .map(|m| {
            assert!(m["readOnly"] != true, "{m}");
            m["mountPath"].as_str().unwrap()
        })
        .collect();
    for name in [
        "STARMAP_CACHE_DIR",
        "HELM_CACHE_HOME",
        "HELM_CONFIG_HOME",
        "HELM_DATA_HOME",
    ] {
        let path = c.env(name)["value"].as_str().unwrap();
        assert!(
            writable
                .iter()
                .any(|w| path == *w || path.starts_with(&format!("{w}/"))),
            "{name}={path} is not on a writable volume ({writable:?})"
        );
    }
    assert!(c.volume_at("/tmp")["emptyDir"].is_object());
    assert!(c.volume_at("/cache")["emptyDir"]["sizeLimit"].is_string());
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c.container["resources"][kind][resource].is_string(),
                "resources.{kind}.{resource} not set"
            );
        }
    }
}

#[test]
fn the_placeholder_kubeconfig_reaches_this_cluster_with_the_pods_own_token() {
    let objects = build("install/starmap");
    let c = Controller::of(&objects);
    let config = c.config();
    let text = c.file(config["kubeconfig"].as_str().unwrap());
    // Read by kube-rs itself, as status collection reads it.
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text).expect("a kubeconfig kube-rs reads");
    let hub = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == "hub")
        .and_then(|c| c.context.clone())
        .expect("a context `hub`");
    let cluster = kubeconfig
        .clusters
        .iter()
        .find(|c| c.name == hub.cluster)
        .and_then(|c| c.cluster.clone())
        .expect("the hub context's cluster");
    assert_eq!(cluster.server.as_deref(), Some("https://kubernetes.default.svc"));
    assert_eq!(
        cluster.certificate_authority.as_deref(),
        Some(format!("{SA_DIR}/ca.crt").as_str())
    );
    let user = kubeconfig
        .auth_infos
        .iter()
        .find(|a| Some(a.name.as_str()) == hub.user.as_deref())
        .and_then(|a| a.auth_info.clone())
        .expect("the hub context's user");
    assert_eq!(user.token_file.as_deref(), Some(format!("{SA_DIR}/token").as_str()));
    // Those files exist in the pod only with the token mounted.
    assert_eq!(c.pod["automountServiceAccountToken"], true);
}

// ---------------------------------------------------------------------------------------
// install/edge-reader
// ---------------------------------------------------------------------------------------

#[test]
fn install_edge_reader_lets_one_service_account_get_and_nothing_more() {
    let objects = build("install/edge-reader");
    for o in &objects {
        let kind = o["kind"].as_str().unwrap();
        assert!(
            [
                "Namespace",
                "ServiceAccount",
                "Secret",
                "ClusterRole",
                "ClusterRoleBinding"
            ]
            .contains(&kind),
            "{}",
            identity(o)
        );
        assert!(o["kind"] != "Secret" || o["stringData"].is_null(), "a placeholder: {o}");
    }
    let role = find(&objects, "ClusterRole", "starmap-edge-reader");
    let rules = role["rules"].as_array().unwrap();
    for rule in rules {
        assert_eq!(rule["verbs"], json!(["get"]), "read by name only: {rule}");
        assert!(rule["nonResourceURLs"].is_null(), "{rule}");
    }
    let covers = |group: &str, resource: &str| {
        rules.iter().any(|r| {
            let groups = str_list(&r["apiGroups"]);
            let resources = str_list(&r["resources"]);
            (groups.contains(&"*") || groups.contains(&group))
                && (resources.contains(&"*") || resources.contains(&resource))
        })
    };
    // Anything the deploy repo places, and Flux's Kustomization `starmap` on its own.
    assert!(covers("apps", "deployments") && covers("", "configmaps") && covers("example.com", "widgets"));
    assert!(rules.iter().any(
        |r| r["apiGroups"] == json!(["kustomize.toolkit.fluxcd.io"]) && r["resources"] == json!(["kustomizations"])
    ));

    let sa = find(&objects, "ServiceAccount", "starmap-reader");
    let namespace = sa["metadata"]["namespace"].as_str().unwrap();
    find(&objects, "Namespace", namespace);
    let binding = find(&objects, "ClusterRoleBinding", "starmap-edge-reader");
    assert_eq!(
        binding["roleRef"],
        json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "starmap-edge-reader"})
    );
    assert_eq!(
        binding["subjects"],
        json!([{"kind": "ServiceAccount", "name": "starmap-reader", "namespace": namespace}])
    );
    // The token Secret Kubernetes fills in for that ServiceAccount.
    let token = find(&objects, "Secret", "starmap-reader-token");
    assert_eq!(token["type"], "kubernetes.io/service-account-token");
    assert_eq!(token["metadata"]["namespace"], namespace);
    assert_eq!(
        token["metadata"]["annotations"]["kubernetes.io/service-account.name"],
        "starmap-reader"
    );
}

// ---------------------------------------------------------------------------------------
// argocd/starmap and flux/starmap deliver install/starmap
// ---------------------------------------------------------------------------------------

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

    let built = install_starmap_patched(&source["kustomize"]["patches"]);
    let config = patched_config(&built);
    // Status from the Argo CD Applications of the hub, through a context the kubeconfig has.
    let hub = config["argocdHub"].as_str().expect("argocdHub");
    let c = Controller::of(&built);
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&c.file(config["kubeconfig"].as_str().unwrap())).unwrap();
    assert!(kubeconfig.contexts.iter().any(|k| k.name == hub), "no context {hub}");

    // Every Secret keeps the data put into it: Argo CD creates it, then ignores its data.
    assert!(str_list(&app["spec"]["syncPolicy"]["syncOptions"]).contains(&"RespectIgnoreDifferences=true"));
    let ignored: BTreeSet<&str> = app["spec"]["ignoreDifferences"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "Secret" && d["namespace"] == "starmap")
        .map(|d| {
            assert_eq!(d["jsonPointers"], json!(["/data", "/stringData"]), "{d}");
            d["name"].as_str().unwrap()
        })
        .collect();
    let secrets: BTreeSet<&str> = built
        .iter()
        .filter(|o| o["kind"] == "Secret")
        .map(|o| o["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(ignored, secrets);
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
    // Both replicas are Ready when the controller works: Flux waits for that.
    assert_eq!(ks["spec"]["wait"], true);
    assert!(ks["spec"]["timeout"].is_string(), "a timeout for the first render");

    let built = install_starmap_patched(&ks["spec"]["patches"]);
    let config = patched_config(&built);
    assert!(config.get("argocdHub").is_none(), "Flux: status from the clusters");
    // Every Secret is applied only if it does not exist, and nothing else is.
    for o in &built {
        let annotation = &o["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/ssa"];
        if o["kind"] == "Secret" {
            assert_eq!(*annotation, "IfNotPresent", "{}", identity(o));
            assert_eq!(o["metadata"]["namespace"], "starmap");
        } else {
            assert!(annotation.is_null(), "{}", identity(o));
        }
    }
}

/// The config file of a patched build of install/starmap: the patches set the URLs (which
/// [`install_starmap_patched`] pointed at patched.example), replaced the ConfigMap (new
/// hash, which the Deployment follows), and changed nothing else than the repos and
/// argocdHub.
fn patched_config(built: &[Value]) -> serde_json::Map<String, Value> {
    let base = build("install/starmap");
    let c = Controller::of(built);
    let config = c.config();
    assert_eq!(config["source"], "https://patched.example/source.git");
    assert_eq!(config["deploy"], "https://patched.example/deploy.git");
    let base_c = Controller::of(&base);
    assert_ne!(
        c.file_source(CONFIG_PATH).0["configMap"]["name"],
        base_c.file_source(CONFIG_PATH).0["configMap"]["name"],
        "the patched ConfigMap keeps the base's name: the pods would not restart"
    );
    let base_config = base_c.config();
    let keys: BTreeSet<&String> = config.keys().chain(base_config.keys()).collect();
    for key in keys {
        if !["source", "deploy", "argocdHub"].contains(&key.as_str()) {
            assert_eq!(
                config.get(key),
                base_config.get(key),
                "{key}: the overlay's config.yaml differs from install/starmap/config.yaml"
            );
        }
    }
    // Nothing but the ConfigMap and the Secrets' annotations changed.
    assert_eq!(built.len(), base.len());
    config
}

/// Build `install/starmap` with `patches` (as Argo CD's `kustomize.patches` and Flux's
/// `spec.patches` apply them: kustomize patches), after pointing the URLs they set somewhere
/// recognizable, so that the result shows the patches did apply. Built twice: with the
/// patches added to install/starmap's own kustomization.yaml (what Argo CD and Flux do), and
/// from an overlay using it as a base (what your own overlay does); both give the same.
fn install_starmap_patched(patches: &Value) -> Vec<Value> {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("base");
    common::copy_dir(&root().join("install/starmap"), &base);
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
    let from_overlay = kustomize(&overlay);

    let in_place = tmp.path().join("in-place");
    common::copy_dir(&base, &in_place);
    let file = in_place.join("kustomization.yaml");
    let docs = documents(&std::fs::read_to_string(&file).unwrap(), "kustomization.yaml");
    let [own] = docs.as_slice() else {
        panic!("one kustomization")
    };
    let mut own = own.clone();
    assert!(own["patches"].is_null(), "install/starmap has patches of its own");
    own["patches"] = patches;
    std::fs::write(&file, own.to_string()).unwrap();
    let from_in_place = kustomize(&in_place);
    assert_eq!(from_overlay, from_in_place, "an overlay and in-place patches differ");
    from_overlay
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
    /// `_definitions.json` of the same schemas (already strict), for kinds without a file of
    /// their own (PodDisruptionBudget).
    definitions: Value,
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
        let definitions: Value = serde_json::from_str(&std::fs::read_to_string(k8s.join("_definitions.json")).unwrap())
            .expect("_definitions.json");
        Schemas {
            k8s,
            crds,
            object_meta,
            definitions,
        }
    }

    /// The schema of a built-in kind from `_definitions.json`: the definition whose
    /// `x-kubernetes-group-version-kind` names it, with every definition to resolve its refs.
    fn built_in(&self, group: &str, version: &str, kind: &str) -> Option<Value> {
        let definitions = self.definitions["definitions"].as_object()?;
        let name = definitions.iter().find_map(|(name, d)| {
            let gvks = d["x-kubernetes-group-version-kind"].as_array()?;
            gvks.iter()
                .any(|g| g["group"] == group && g["version"] == version && g["kind"] == kind)
                .then_some(name)
        })?;
        Some(json!({"$ref": format!("#/definitions/{name}"), "definitions": definitions}))
    }

    /// Errors of one object; panics when no schema knows its kind.
    fn errors(&self, o: &Value) -> Vec<String> {
        let api = o["apiVersion"].as_str().unwrap();
        let kind = o["kind"].as_str().unwrap();
        let (full_group, version) = api.rsplit_once('/').unwrap_or(("", api));
        let group = full_group.split('.').next().unwrap();
        let file = if group.is_empty() {
            format!("{}-{version}.json", kind.to_lowercase())
        } else {
            format!("{}-{group}-{version}.json", kind.to_lowercase())
        };
        let mut errors = Vec::new();
        let schema = match std::fs::read_to_string(self.k8s.join(&file)) {
            Ok(text) => serde_json::from_str(&text).unwrap(),
            Err(_) => match self.crds.get(&(api.to_string(), kind.to_string())) {
                Some(schema) => {
                    errors.extend(validate(&self.object_meta, &o["metadata"], "metadata"));
                    schema.clone()
                }
                None => self
                    .built_in(full_group, version, kind)
                    .unwrap_or_else(|| panic!("no schema for {api} {kind}")),
            },
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

/// The Kubernetes objects in the ```yaml blocks of a markdown file (documents with a `kind`
/// and `metadata.name`; a block of other YAML, a config file say, is skipped).
fn objects_shown_in(doc: &str) -> Vec<Value> {
    let text = read(doc);
    text.split("```yaml\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap())
        .flat_map(|block| documents(block, doc))
        .filter(|o| o["kind"].is_string() && o["metadata"]["name"].is_string())
        .collect()
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
    let examples = objects_shown_in("docs/deploy-controller.md");
    assert!(
        examples.iter().any(|o| o["kind"] == "Ingress"),
        "docs/deploy-controller.md shows no Ingress"
    );
    all.extend(
        examples
            .into_iter()
            .map(|o| ("docs/deploy-controller.md".to_string(), o)),
    );
    for (place, o) in &all {
        for e in schemas.errors(o) {
            failures.push(format!("{place}: {}: {e}", identity(o)));
        }
        checked.push(identity(o));
    }
    assert!(failures.is_empty(), "invalid objects:\n{}", failures.join("\n"));
    for kind in [
        "apps/v1 Deployment",
        "policy/v1 PodDisruptionBudget/",
        "v1 Service/",
        "v1 ConfigMap",
        "rbac.authorization.k8s.io/v1 Role/",
        "rbac.authorization.k8s.io/v1 RoleBinding/",
        "ClusterRole/",
        "ClusterRoleBinding/",
        "ServiceAccount",
        "Secret",
        "networking.k8s.io/v1 Ingress",
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
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
               "spec": {"selector": {"matchLabels": {"a": "b"}}, "bogus": 1,
                        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "a", "image": "b"}]}}}}),
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
               "spec": {"selector": {"matchLabels": {"a": "b"}}, "replicas": "2",
                        "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "a", "image": "b"}]}}}}),
        json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "r"},
               "rules": [{"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verb": ["get"]}]}),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "y"},
               "spec": {"project": "default", "destination": {"server": "s"}, "source": {"repoURL": "u", "pathx": "p"}}}),
        json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", "metadata": {"name": "y", "labelz": {}},
               "spec": {"project": "default", "destination": {"server": "s"}, "source": {"repoURL": "u"}}}),
        json!({"apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization", "metadata": {"name": "z"},
               "spec": {"interval": "1m", "prune": "yes", "sourceRef": {"kind": "GitRepository", "name": "s"}}}),
        // A kind checked against _definitions.json: unknown, misplaced and mistyped fields.
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
               "spec": {"minAvailble": 1, "selector": {"matchLabels": {"a": "b"}}}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p", "labelz": {}},
               "spec": {"minAvailable": 1}}),
        json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
               "spec": {"minAvailable": 1, "selector": {"matchLabels": "a=b"}}}),
    ];
    for o in &bad {
        assert!(!schemas.errors(o).is_empty(), "accepted: {o}");
    }
    let good = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
                      "spec": {"minAvailable": 1, "selector": {"matchLabels": {"a": "b"}}}});
    assert_eq!(schemas.errors(&good), Vec::<String>::new());
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

const DOC_FILES: [&str; 7] = [
    "docs/argocd.md",
    "docs/flux.md",
    "docs/deploy-controller.md",
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
        "install/edge-reader",
        "argocd/hub",
        "argocd/starmap",
        "flux/edge",
        "flux/starmap",
        "docs/ci",
    ];
    let mut missing = Vec::new();
    let mut seen = 0;
    for file in DOC_FILES.iter().chain(&[
        "install/starmap/kustomization.yaml",
        "install/edge-reader/kustomization.yaml",
    ]) {
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
