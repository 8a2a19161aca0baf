//! `status::collect` against real kube-apiservers: the local fleet of `tests/e2e/up.sh`
//! (kube-apiserver, controller-manager, scheduler and kwok, whose fake node makes pods ready).
//!
//! Needs a fleet of at least one cluster (two are better) and its kubeconfig:
//!
//! ```text
//! STARMAP_E2E_RUN=/tmp/starmap-e2e-collect STARMAP_E2E_PORT_BASE=24000 STARMAP_E2E_NO_FLUX=1 \
//!     tests/e2e/up.sh 2
//! STARMAP_E2E_KUBECONFIG=/tmp/starmap-e2e-collect/kubeconfig cargo test --test status_collect
//! STARMAP_E2E_RUN=/tmp/starmap-e2e-collect tests/e2e/down.sh
//! ```
//!
//! Without `STARMAP_E2E_KUBECONFIG` every test says it was skipped and passes. The tests use
//! the first two contexts of the kubeconfig (or the one twice) and namespaces of their own
//! (`collect-*`). Neither Flux nor Argo CD needs to run: the tests install the Flux
//! Kustomization and Argo CD Application CRDs from `../shared/data/crds` and write those
//! objects' status themselves.

mod common;

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use starmap::formats::index::{IndexEntry, parse_index};
use starmap::formats::status::ClusterStatus;
use starmap::health::Health;
use starmap::status::collect::{
    ArgoCdHub, ClusterOutcome, Connections, FluxObject, Options, Target, collect, collect_argocd, collect_with,
};

const SHA: &str = "0123456789abcdef0123456789abcdef01234567";

fn data(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/collect")
        .join(name)
}

fn shared_crd(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/crds")
        .join(path)
}

struct Fleet {
    kubeconfig: PathBuf,
    /// The kubeconfig, parsed.
    doc: Value,
    /// Two contexts (the same one twice on a fleet of one).
    contexts: [String; 2],
}

impl Fleet {
    fn from_env() -> Option<Fleet> {
        let kubeconfig = common::fleet_kubeconfig("`STARMAP_E2E_NO_FLUX=1 tests/e2e/up.sh 2`")?;
        let text = std::fs::read_to_string(&kubeconfig).expect("STARMAP_E2E_KUBECONFIG is readable");
        let doc = starmap::yaml::parse_documents(&text, "kubeconfig")
            .unwrap()
            .remove(0)
            .value;
        let mut names: Vec<String> = doc["contexts"]
            .as_array()
            .expect("contexts")
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        names.sort();
        assert!(!names.is_empty(), "no context in {}", kubeconfig.display());
        let second = names.get(1).unwrap_or(&names[0]).clone();
        Some(Fleet {
            kubeconfig,
            doc,
            contexts: [names[0].clone(), second],
        })
    }

    fn kubectl(&self, context: &str, args: &[&str], stdin: Option<&str>) -> String {
        self.try_kubectl(context, args, stdin).unwrap_or_else(|e| panic!("{e}"))
    }

    fn try_kubectl(&self, context: &str, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--context", context])
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl runs");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.unwrap_or("").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        if !out.status.success() {
            return Err(format!(
                "kubectl --context {context} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(String::from_utf8(out.stdout).unwrap())
    }

    fn apply_file(&self, context: &str, file: &Path) {
        let file = file.to_str().unwrap();
        self.kubectl(
            context,
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=status-collect-test",
                "-f",
                file,
            ],
            None,
        );
    }

    fn apply(&self, context: &str, yaml: &str) {
        self.kubectl(
            context,
            &[
                "apply",
                "--server-side",
                "--force-conflicts",
                "--field-manager=status-collect-test",
                "-f",
                "-",
            ],
            Some(yaml),
        );
    }

    fn install_crd(&self, context: &str, file: &Path, name: &str) {
        self.apply_file(context, file);
        // Right after creation `kubectl wait` fails on the missing status.conditions: retry.
        let wait = [
            "wait",
            "--for=condition=Established",
            &format!("crd/{name}"),
            "--timeout=60s",
        ];
        for _ in 0..20 {
            if self.try_kubectl(context, &wait, None).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        self.kubectl(context, &wait, None);
    }

    fn basic_objects(&self, context: &str) {
        self.apply_file(context, &data("basic-objects.yaml"));
        self.fresh_pods(context, "collect-basic");
    }

    /// Restarts the Deployments of `namespace` and waits until they are Available again.
    ///
    /// kwok sets a pod's readiness only once: if the fake node ever went NotReady (late
    /// heartbeats on a loaded machine; the harness before kwok node leases flapped every ~55 s),
    /// the node lifecycle controller has marked its pods not Ready for good. Restarting just
    /// before collecting makes the tests independent of the fleet's history; a rollout stuck by
    /// such a flap is restarted again (3 tries).
    fn fresh_pods(&self, context: &str, namespace: &str) {
        let deployments = self.kubectl(context, &["get", "deployment", "-n", namespace, "-o", "name"], None);
        let mut last = String::new();
        for _ in 0..3 {
            self.kubectl(context, &["rollout", "restart", "deployment", "-n", namespace], None);
            let rolled = deployments.lines().try_for_each(|d| {
                self.try_kubectl(
                    context,
                    &["rollout", "status", "-n", namespace, d, "--timeout=30s"],
                    None,
                )
                .map(drop)
            });
            match rolled {
                Ok(()) => return,
                Err(e) => {
                    eprintln!("rollout stuck (the fake node flapped NotReady?), restarting again: {e}");
                    last = e;
                }
            }
        }
        panic!("{last}");
    }

    /// The context named `name`.
    fn context(&self, name: &str) -> &Value {
        self.doc["contexts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
    }

    /// A copy of the kubeconfig with more contexts: `(alias, existing context)` pairs, and
    /// `(name, server URL)` pairs for contexts to servers that are not API servers (with the
    /// user of the first context).
    fn kubeconfig_with(&self, aliases: &[(String, String)], fake: &[(&str, String)]) -> tempfile::NamedTempFile {
        let mut doc = self.doc.clone();
        let user = self.context(&self.contexts[0])["context"]["user"].clone();
        let contexts = doc["contexts"].as_array_mut().unwrap();
        for (alias, of) in aliases {
            let mut c = self.context(of).clone();
            c["name"] = json!(alias);
            contexts.push(c);
        }
        for (name, _) in fake {
            contexts.push(json!({"name": name, "context": {"cluster": format!("fake-{name}"), "user": user}}));
        }
        let clusters = doc["clusters"].as_array_mut().unwrap();
        for (name, server) in fake {
            clusters.push(json!({"name": format!("fake-{name}"), "cluster": {"server": server, "insecure-skip-tls-verify": true}}));
        }
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(starmap::yaml::to_yaml_string(&doc).as_bytes()).unwrap();
        file
    }

    fn options(&self) -> Options {
        Options {
            kubeconfig: Some(self.kubeconfig.clone()),
            flux: None,
            ..Options::default()
        }
    }
}

fn seen(outcome: &ClusterOutcome) -> &ClusterStatus {
    match outcome {
        ClusterOutcome::Seen(s) => s,
        ClusterOutcome::Unreachable { cluster, error } => panic!("{cluster} unreachable: {error}"),
    }
}

fn healths(status: &ClusterStatus) -> Vec<(String, Health, String)> {
    status
        .objects
        .iter()
        .map(|o| (format!("{}/{}", o.kind, o.name), o.health, o.message.clone()))
        .collect()
}

fn basic_index() -> Vec<IndexEntry> {
    let path = data("basic-index.yaml");
    parse_index(&std::fs::read_to_string(&path).unwrap(), &path.display().to_string())
        .unwrap()
        .objects
}

/// A port on 127.0.0.1 where nothing listens.
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_health_missing_and_the_flux_kustomization() {
    let Some(fleet) = Fleet::from_env() else { return };
    let [c1, c2] = fleet.contexts.clone();
    for c in [&c1, &c2] {
        fleet.basic_objects(c);
        fleet.install_crd(
            c,
            &shared_crd("flux-kustomize-controller-v1.9.4/kustomize.toolkit.fluxcd.io_kustomizations.yaml"),
            "kustomizations.kustomize.toolkit.fluxcd.io",
        );
    }
    // Only c1 has the Kustomization. No kustomize-controller runs here: the test writes the
    // status a controller would (Ready, lastAppliedRevision) through the status subresource.
    fleet.apply_file(&c1, &data("flux-kustomization.yaml"));
    let status = json!({"status": {
        "observedGeneration": 1,
        "lastAppliedRevision": format!("main@sha1:{SHA}"),
        "lastAttemptedRevision": format!("main@sha1:{SHA}"),
        "conditions": [{"type": "Ready", "status": "True", "reason": "ReconciliationSucceeded",
                        "message": format!("Applied revision: main@sha1:{SHA}"),
                        "lastTransitionTime": "2026-11-22T00:00:00Z", "observedGeneration": 1}]
    }});
    fleet.kubectl(
        &c1,
        &[
            "patch",
            "kustomization",
            "starmap",
            "-n",
            "collect-flux",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ],
        None,
    );

    let mut targets = vec![
        Target::new("edge-1", basic_index()),
        Target::new("edge-2", basic_index()),
    ];
    targets[0].context = c1.clone();
    targets[1].context = c2.clone();
    let options = Options {
        flux: Some(FluxObject {
            namespace: "collect-flux".into(),
            name: "starmap".into(),
        }),
        deploy_commit: Some("fedcba9876543210fedcba9876543210fedcba98".into()),
        ..fleet.options()
    };
    let mut outcomes = vec![];
    for attempt in 1..=3 {
        if attempt > 1 {
            eprintln!("the fake node flapped NotReady (see fresh_pods); restarting the Deployments");
            for c in [&c1, &c2] {
                fleet.fresh_pods(c, "collect-basic");
            }
        }
        let started = Instant::now();
        outcomes = collect(targets.clone(), &options).await.unwrap();
        eprintln!("collected 2 clusters in {:?}", started.elapsed());
        if outcomes
            .iter()
            .all(|o| o.seen().is_some_and(|s| s.objects[1].health == Health::Healthy))
        {
            break;
        }
    }

    assert_eq!(
        outcomes.iter().map(ClusterOutcome::cluster).collect::<Vec<_>>(),
        ["edge-1", "edge-2"]
    );
    for outcome in &outcomes {
        let s = seen(outcome);
        assert!(s.reachable && !s.stale && s.error.is_none());
        assert_eq!(s.source, "kubeconfig");
        assert_eq!(
            s.deploy_commit.as_deref(),
            Some("fedcba9876543210fedcba9876543210fedcba98")
        );
        assert!(!s.current, "current is the caller's to compute");
        let seen_at = s.last_seen.as_deref().unwrap();
        assert!(
            seen_at.len() == 20 && seen_at.ends_with('Z') && seen_at.as_bytes()[10] == b'T',
            "{seen_at}"
        );
        // Index order, identity and placements from the index.
        let expected = [
            ("Namespace/collect-basic", Health::Healthy, ""),
            ("Deployment/web", Health::Healthy, ""),
            ("ConfigMap/settings", Health::Healthy, ""),
            ("Service/web", Health::Healthy, ""),
            ("ConfigMap/absent", Health::Missing, ""),
            (
                "Widget/w",
                Health::Missing,
                "the cluster does not serve widgets.example.com/v1",
            ),
            ("Gizmo/g", Health::Missing, "the cluster serves no Gizmo in v1"),
        ];
        let got = healths(s);
        let got: Vec<(&str, Health, &str)> = got.iter().map(|(o, h, m)| (o.as_str(), *h, m.as_str())).collect();
        assert_eq!(got, expected, "{}", s.cluster);
        let deployment = &s.objects[1];
        assert_eq!(deployment.placements, ["everywhere", "web"]);
        assert_eq!(deployment.namespace.as_deref(), Some("collect-basic"));
        assert!(!deployment.applied);
        assert!(deployment.generation.is_some());
        assert_eq!(deployment.generation, deployment.observed_generation);
        let live = deployment.status.as_ref().expect("the Deployment's status");
        assert_eq!(live["readyReplicas"], 2);
        let conditions = live["conditions"].as_array().unwrap();
        assert!(
            conditions.iter().all(|c| c.get("lastUpdateTime").is_none()),
            "stable_status applied"
        );
        assert!(
            conditions
                .iter()
                .any(|c| c["type"] == "Available" && c.get("lastTransitionTime").is_some())
        );
        assert_eq!(s.objects[3].status, Some(json!({"loadBalancer": {}})), "Service status");
        assert_eq!(s.objects[2].status, None, "a ConfigMap has no status");
        assert!(s.objects[4].status.is_none() && s.objects[4].generation.is_none());
    }

    let (s1, s2) = (seen(&outcomes[0]), seen(&outcomes[1]));
    let sync = s1.sync.as_ref().unwrap();
    assert_eq!(sync.object, "Kustomization/collect-flux/starmap");
    // A fleet running Flux would rewrite the hand-written status: check it is still ours.
    let revision = fleet.kubectl(
        &c1,
        &[
            "get",
            "kustomization",
            "starmap",
            "-n",
            "collect-flux",
            "-o",
            "jsonpath={.status.lastAppliedRevision}",
        ],
        None,
    );
    if revision == format!("main@sha1:{SHA}") {
        assert_eq!(s1.applied_revision.as_deref(), Some(SHA));
        assert_eq!(
            (sync.health, sync.message.as_str()),
            (Health::Healthy, "ReconciliationSucceeded")
        );
    } else {
        eprintln!("skipped the Kustomization status checks: a kustomize-controller rewrote it ({revision})");
    }
    if c1 != c2 {
        let sync2 = s2.sync.as_ref().unwrap();
        assert_eq!(sync2.health, Health::Missing, "{}", sync2.message);
        assert_eq!(s2.applied_revision, None);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_and_hung_clusters_do_not_hold_up_the_others() {
    let Some(fleet) = Fleet::from_env() else { return };
    let [c1, c2] = fleet.contexts.clone();
    for c in [&c1, &c2] {
        // (Not restarted: the other test may be collecting them.)
        fleet.apply_file(c, &data("basic-objects.yaml"));
    }
    // A port where nothing listens (connection refused), and a listener that accepts TCP but
    // never answers the TLS handshake (a hung API server).
    let refused = format!("https://127.0.0.1:{}", closed_port());
    let hung = TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_url = format!("https://127.0.0.1:{}", hung.local_addr().unwrap().port());
    let kubeconfig = fleet.kubeconfig_with(&[], &[("refused", refused.clone()), ("hung", hung_url.clone())]);

    let index = basic_index();
    let target = |name: &str, context: &str| Target {
        context: context.into(),
        ..Target::new(name, index.clone())
    };
    let targets = vec![
        target("dead", "refused"),
        target("live-1", &c1),
        target("stuck", "hung"),
        target("nowhere", "no-such-context"),
        target("live-2", &c2),
    ];
    let timeout = Duration::from_secs(3);
    let options = Options {
        kubeconfig: Some(kubeconfig.path().to_path_buf()),
        timeout,
        concurrency: 2,
        ..fleet.options()
    };
    let started = Instant::now();
    let outcomes = collect(targets, &options).await.unwrap();
    let elapsed = started.elapsed();
    eprintln!("collected in {elapsed:?}");
    for o in &outcomes {
        eprintln!("{}: {:?}", o.cluster(), o.error());
    }

    let names: Vec<&str> = outcomes.iter().map(ClusterOutcome::cluster).collect();
    assert_eq!(names, ["dead", "live-1", "stuck", "nowhere", "live-2"]);
    assert_eq!(
        outcomes[0].error(),
        Some(format!("{refused}: connection refused (3 attempts)").as_str())
    );
    assert_eq!(
        outcomes[2].error(),
        Some(format!("timed out after 3s ({hung_url})").as_str())
    );
    assert_eq!(
        outcomes[3].error(),
        Some("no context \"no-such-context\" in the kubeconfig")
    );
    for live in [&outcomes[1], &outcomes[4]] {
        let h: Vec<Health> = seen(live).objects.iter().map(|o| o.health).collect();
        // The Namespace, ConfigMap and Service; the Deployment exists (its health depends on the
        // fake node, see fresh_pods); the last three are missing.
        assert_eq!([h[0], h[2], h[3]], [Health::Healthy; 3], "{:?}", healths(seen(live)));
        assert_ne!(h[1], Health::Missing);
        assert_eq!(h[4..], [Health::Missing; 3]);
    }
    // Two at a time: the hung cluster holds one slot for its 3 s while the rest pass through the
    // other; nothing waits for more than one timeout.
    assert!(elapsed < timeout + Duration::from_secs(5), "{elapsed:?}");
    drop(hung);
}

/// api.md §7: status collection never stores a Secret's data. starmap reads a Secret's
/// metadata only (the data never reaches it), and the status it keeps is health alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secrets_data_never_reaches_status() {
    let Some(fleet) = Fleet::from_env() else { return };
    let c1 = fleet.contexts[0].clone();
    const PLAIN: &str = "s3cret-live-value-Qv19";
    fleet.apply(
        &c1,
        &format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: collect-secret}}\n---\napiVersion: v1\nkind: Secret\n\
             metadata: {{name: db, namespace: collect-secret, annotations: {{note: kept}}}}\nstringData: {{password: {PLAIN}}}\n"
        ),
    );
    let mut target = Target::new(
        "edge-1",
        vec![
            IndexEntry::new("v1", "Secret", Some("collect-secret"), "db"),
            IndexEntry::new("v1", "Secret", Some("collect-secret"), "absent"),
        ],
    );
    target.context = c1;
    // A GET per Secret, and one metadata-only list for both.
    for list_at in [0, 2] {
        let options = Options {
            list_at,
            ..fleet.options()
        };
        let outcomes = collect(vec![target.clone()], &options).await.unwrap();
        let s = seen(&outcomes[0]);
        assert_eq!(
            healths(s),
            [
                ("Secret/db".to_string(), Health::Healthy, String::new()),
                ("Secret/absent".to_string(), Health::Missing, String::new())
            ]
        );
        assert_eq!(s.objects[0].status, None);
        let written = serde_json::to_string(s).unwrap();
        let encoded = base64_of(PLAIN);
        for needle in [PLAIN, encoded.as_str()] {
            assert!(!written.contains(needle), "{needle} in {written}");
        }
    }
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_targets_on_two_clusters() {
    let Some(fleet) = Fleet::from_env() else { return };
    let [c1, c2] = fleet.contexts.clone();
    let mut yaml = String::from("apiVersion: v1\nkind: Namespace\nmetadata: {name: collect-many}\n");
    for i in 0..4 {
        yaml += &format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: collect-many}}\ndata: {{i: \"{i}\"}}\n"
        );
    }
    yaml += "---\napiVersion: v1\nkind: Service\nmetadata: {name: svc, namespace: collect-many}\nspec: {ports: [{port: 80}]}\n";
    for c in [&c1, &c2] {
        fleet.apply(c, &yaml);
    }
    let mut objects: Vec<IndexEntry> = (0..4)
        .map(|i| IndexEntry::new("v1", "ConfigMap", Some("collect-many"), &format!("cm-{i}")))
        .collect();
    objects.push(IndexEntry::new("v1", "Service", Some("collect-many"), "svc"));

    let aliases: Vec<(String, String)> = (0..50)
        .map(|i| (format!("alias-{i:02}"), fleet.contexts[i % 2].clone()))
        .collect();
    let kubeconfig = fleet.kubeconfig_with(&aliases, &[]);
    let targets: Vec<Target> = aliases
        .iter()
        .map(|(alias, _)| Target {
            context: alias.clone(),
            ..Target::new(format!("cluster-{alias}"), objects.clone())
        })
        .collect();
    let options = Options {
        kubeconfig: Some(kubeconfig.path().to_path_buf()),
        concurrency: 16,
        ..fleet.options()
    };
    let started = Instant::now();
    let outcomes = collect(targets, &options).await.unwrap();
    eprintln!("50 targets x 5 objects, concurrency 16: {:?}", started.elapsed());
    assert_eq!(outcomes.len(), 50);
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o.cluster(), format!("cluster-alias-{i:02}"));
        let s = seen(o);
        assert_eq!(s.objects.len(), 5);
        assert!(
            s.objects.iter().all(|o| o.health == Health::Healthy),
            "{:?}",
            healths(s)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argocd_hub_applications() {
    let Some(fleet) = Fleet::from_env() else { return };
    let hub = fleet.contexts[1].clone();
    fleet.install_crd(
        &hub,
        &shared_crd("argo-cd-v3.5.1/application-crd.yaml"),
        "applications.argoproj.io",
    );
    // No Argo CD controller runs: the Applications' status is written by this test (the CRD
    // has no status subresource, so it is created with the objects).
    fleet.apply_file(&hub, &data("argocd-applications.yaml"));

    let index = basic_index();
    let targets: Vec<Target> = ["edge-a", "edge-b", "edge-c"]
        .iter()
        .map(|c| Target {
            context: "not-used".into(),
            ..Target::new(*c, index.clone())
        })
        .collect();
    let hub_at = ArgoCdHub {
        namespace: "collect-argocd".into(),
        ..ArgoCdHub::new(hub.clone())
    };
    let options = Options {
        deploy_commit: Some(SHA.into()),
        ..fleet.options()
    };
    let outcomes = collect_argocd(&hub_at, &targets, &options).await.unwrap();
    assert_eq!(
        outcomes.iter().map(ClusterOutcome::cluster).collect::<Vec<_>>(),
        ["edge-a", "edge-b", "edge-c"]
    );

    let a = seen(&outcomes[0]);
    assert_eq!((a.source.as_str(), a.reachable), ("argocd", true));
    assert_eq!(a.applied_revision.as_deref(), Some(SHA));
    assert_eq!(a.deploy_commit.as_deref(), Some(SHA));
    let sync = a.sync.as_ref().unwrap();
    assert_eq!(sync.object, "Application/collect-argocd/starmap-edge-a");
    assert_eq!((sync.health, sync.message.as_str()), (Health::Healthy, ""));
    let missing = "not among the Application's resources";
    assert_eq!(
        healths(a),
        [
            ("Namespace/collect-basic", Health::Healthy, ""),
            ("Deployment/web", Health::Healthy, ""),
            ("ConfigMap/settings", Health::Healthy, ""),
            ("Service/web", Health::Healthy, ""),
            ("ConfigMap/absent", Health::Missing, missing),
            ("Widget/w", Health::Missing, missing),
            ("Gizmo/g", Health::Missing, missing),
        ]
        .map(|(o, h, m)| (o.to_string(), h, m.to_string()))
    );
    assert_eq!(a.objects[1].placements, ["everywhere", "web"]);

    let b = seen(&outcomes[1]);
    assert_eq!(
        b.applied_revision.as_deref(),
        Some("89abcdef0123456789abcdef0123456789abcdef")
    );
    let sync = b.sync.as_ref().unwrap();
    assert_eq!(
        (sync.health, sync.message.as_str()),
        (Health::Degraded, "sync status OutOfSync")
    );
    assert_eq!(b.objects[1].health, Health::Degraded);
    assert_eq!(
        b.objects[1].message,
        "Deployment \"web\" exceeded its progress deadline"
    );
    assert_eq!(b.objects[3].health, Health::Missing);
    assert_eq!(b.objects[0].health, Health::Missing);

    assert_eq!(
        outcomes[2].error(),
        Some("no Argo CD Application labelled starmap.dev/cluster=edge-c in namespace collect-argocd of the hub")
    );

    // A hub that refuses connections: every cluster is unreachable, with the hub's error.
    let refused = format!("https://127.0.0.1:{}", closed_port());
    let kubeconfig = fleet.kubeconfig_with(&[], &[("dead-hub", refused.clone())]);
    let options = Options {
        kubeconfig: Some(kubeconfig.path().to_path_buf()),
        ..options
    };
    let outcomes = collect_argocd(&ArgoCdHub::new("dead-hub"), &targets, &options)
        .await
        .unwrap();
    for o in &outcomes {
        assert_eq!(
            o.error(),
            Some(format!("Argo CD hub (context \"dead-hub\"): {refused}: connection refused (3 attempts)").as_str())
        );
    }
}

/// A status without the time it was read, to compare two reads.
fn timeless(mut s: ClusterStatus) -> ClusterStatus {
    s.last_seen = None;
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_per_kind_reads_what_a_get_per_object_reads() {
    let Some(fleet) = Fleet::from_env() else { return };
    let c1 = fleet.contexts[0].clone();
    fleet.basic_objects(&c1);
    let mut target = Target::new("edge-1", basic_index());
    target.context = c1;
    let read = |list_at: usize| {
        let options = Options {
            list_at,
            ..fleet.options()
        };
        let target = target.clone();
        async move {
            let connections = Connections::default();
            let outcomes = collect_with(vec![target], &options, &connections).await.unwrap();
            (timeless(seen(&outcomes[0]).clone()), connections.requests())
        }
    };
    // list_at 1 lists every kind the cluster serves (the Namespace too: cluster-scoped);
    // list_at 0 is a GET per object.
    let ((listed, list_requests), (got, get_requests)) = (read(1).await, read(0).await);
    assert_eq!(listed, got);
    // Two ConfigMaps in one namespace: one list instead of two GETs, at least.
    assert!(
        list_requests < get_requests,
        "{list_requests} requests with lists, {get_requests} without"
    );
    assert!(
        healths(&listed).contains(&("Deployment/web".into(), Health::Healthy, String::new())),
        "{:?}",
        healths(&listed)
    );
    assert!(
        healths(&listed)
            .iter()
            .any(|(o, h, _)| o == "ConfigMap/absent" && *h == Health::Missing)
    );
}

/// A namespace with more ConfigMaps than one list page, and a user RBAC lets `get` but not
/// `list`: both fall back to a GET per object and read the same status. Clients are kept
/// across rounds and rebuilt when the credential changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crowded_namespaces_and_users_who_may_not_list_fall_back_to_gets() {
    let Some(fleet) = Fleet::from_env() else { return };
    let c1 = fleet.contexts[0].clone();
    let ns = "collect-crowded";
    let mut yaml = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}}}\n---\napiVersion: v1\nkind: ServiceAccount\n\
         metadata: {{name: getter, namespace: {ns}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\n\
         metadata: {{name: get-only, namespace: {ns}}}\nrules: [{{apiGroups: [''], resources: [configmaps], verbs: [get]}}]\n\
         ---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: getter, namespace: {ns}}}\n\
         roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: get-only}}\n\
         subjects: [{{kind: ServiceAccount, name: getter, namespace: {ns}}}]\n"
    );
    // 520 ConfigMaps: more than the 500 of one list page.
    for i in 0..520 {
        yaml += &format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i:03}, namespace: {ns}}}\n");
    }
    fleet.apply(&c1, &yaml);
    let objects: Vec<IndexEntry> = ["cm-000", "cm-250", "cm-519", "cm-absent"]
        .iter()
        .map(|n| IndexEntry::new("v1", "ConfigMap", Some(ns), n))
        .chain([IndexEntry::new("v1", "Secret", Some(ns), "not-allowed")])
        .collect();
    let expected = |as_getter: bool| {
        let mut e: Vec<(String, Health)> = ["cm-000", "cm-250", "cm-519"]
            .iter()
            .map(|n| (format!("ConfigMap/{n}"), Health::Healthy))
            .collect();
        e.push(("ConfigMap/cm-absent".into(), Health::Missing));
        // The getter may not read Secrets at all: Unknown. The admin finds none: Missing.
        e.push((
            "Secret/not-allowed".into(),
            if as_getter { Health::Unknown } else { Health::Missing },
        ));
        e
    };
    let token = |fleet: &Fleet| {
        fleet
            .kubectl(&c1, &["create", "token", "getter", "-n", ns], None)
            .trim()
            .to_string()
    };
    let kubeconfig_for = |token: &str| {
        let mut doc = fleet.doc.clone();
        let cluster = fleet.context(&c1)["context"]["cluster"].clone();
        doc["users"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "getter", "user": {"token": token}}));
        doc["contexts"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "getter", "context": {"cluster": cluster, "user": "getter"}}));
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(starmap::yaml::to_yaml_string(&doc).as_bytes()).unwrap();
        file
    };
    let kubeconfig = kubeconfig_for(&token(&fleet));
    let targets: Vec<Target> = [c1.as_str(), "getter"]
        .iter()
        .map(|context| Target {
            context: context.to_string(),
            ..Target::new(format!("as-{context}"), objects.clone())
        })
        .collect();
    let options = Options {
        kubeconfig: Some(kubeconfig.path().to_path_buf()),
        list_at: 1,
        ..fleet.options()
    };
    let connections = Connections::default();
    let check = |outcomes: &[ClusterOutcome]| {
        for (o, as_getter) in outcomes.iter().zip([false, true]) {
            let got: Vec<(String, Health)> = healths(seen(o)).into_iter().map(|(n, h, _)| (n, h)).collect();
            assert_eq!(got, expected(as_getter), "{}", o.cluster());
        }
        let secret = &seen(&outcomes[1]).objects[4];
        assert!(secret.message.contains("forbidden"), "{}", secret.message);
    };
    check(&collect_with(targets.clone(), &options, &connections).await.unwrap());
    assert_eq!((connections.len(), connections.built()), (2, 2));
    let first_round = connections.requests();
    // The next round reuses both clients, and what they discovered.
    check(&collect_with(targets.clone(), &options, &connections).await.unwrap());
    assert_eq!((connections.len(), connections.built()), (2, 2));
    let second_round = connections.requests() - first_round;
    assert!(
        second_round < first_round,
        "{second_round} requests, {first_round} in the first round"
    );
    // A new token for the getter: its client is rebuilt, the other one kept.
    let rotated = kubeconfig_for(&token(&fleet));
    let options = Options {
        kubeconfig: Some(rotated.path().to_path_buf()),
        ..options
    };
    check(&collect_with(targets.clone(), &options, &connections).await.unwrap());
    assert_eq!((connections.len(), connections.built()), (2, 3));
    // A round without the getter drops its client.
    collect_with(targets[..1].to_vec(), &options, &connections)
        .await
        .unwrap();
    assert_eq!((connections.len(), connections.built()), (1, 3));
}
