//! `starmap run --leader-elect` on a real kube-apiserver: two replicas, one Lease; exactly
//! one works, the other stands by (Ready: it reads the Lease) and takes over when the leader
//! is killed; SIGTERM releases the Lease; a push webhook sent to the standby is relayed through
//! the Lease and the leader renders it.
//!
//! Needs the fleet of `tests/e2e/up.sh` (one cluster is enough; it only holds the Lease):
//!
//! ```text
//! STARMAP_E2E_RUN=/tmp/starmap-e2e-lease STARMAP_E2E_PORT_BASE=26000 STARMAP_E2E_NO_FLUX=1 tests/e2e/up.sh 1
//! STARMAP_E2E_KUBECONFIG=/tmp/starmap-e2e-lease/kubeconfig cargo test --test controller_lease
//! STARMAP_E2E_RUN=/tmp/starmap-e2e-lease tests/e2e/down.sh
//! ```
//!
//! Without `STARMAP_E2E_KUBECONFIG` the test says it was skipped and passes.

mod common;
mod controller_support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use controller_support::{
    Controller, commit_change, deploy_commits, deploy_file, free_port, source_repo, start, wait_for,
};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use starmap::controller::relay::{RENDER_REQUESTED_AT, RENDER_REQUESTED_BY};
use starmap::controller::webhook::github_signature;

const LEASE_SECONDS: u64 = 4;

/// A copy of the fleet's kubeconfig whose current context is its first cluster: the "hub"
/// the replicas find through KUBECONFIG, as a pod finds its own API server.
fn hub_kubeconfig(fleet: &Path, dir: &Path) -> PathBuf {
    let text = std::fs::read_to_string(fleet).unwrap();
    let mut doc = starmap::yaml::parse_documents(&text, "kubeconfig")
        .unwrap()
        .remove(0)
        .value;
    let mut contexts: Vec<String> = doc["contexts"]
        .as_array()
        .expect("contexts")
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    contexts.sort();
    doc["current-context"] = serde_json::Value::String(contexts[0].clone());
    let path = dir.join("hub-kubeconfig");
    std::fs::write(&path, serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    path
}

struct Hub {
    runtime: tokio::runtime::Runtime,
    leases: Api<Lease>,
}

impl Hub {
    fn new(kubeconfig: &Path) -> Hub {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let leases = runtime.block_on(async {
            let kc = Kubeconfig::read_from(kubeconfig).unwrap();
            let config = kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .unwrap();
            Api::namespaced(kube::Client::try_from(config).unwrap(), "default")
        });
        Hub { runtime, leases }
    }

    /// The Lease's holder (`None`: released or no such Lease).
    fn holder(&self, name: &str) -> Option<String> {
        self.lease(name)?.spec?.holder_identity
    }

    fn lease(&self, name: &str) -> Option<Lease> {
        self.runtime.block_on(self.leases.get_opt(name)).unwrap()
    }

    /// Another holder takes the Lease, as a replica would after this one's lease expired.
    fn steal(&self, name: &str) {
        let patch = serde_json::json!({"spec": {
            "holderIdentity": "thief",
            "renewTime": "2099-01-01T00:00:00.000000Z",
            "leaseDurationSeconds": 3600,
        }});
        let params = kube::api::PatchParams::default();
        self.runtime
            .block_on(self.leases.patch(name, &params, &kube::api::Patch::Merge(&patch)))
            .unwrap();
    }

    fn delete(&self, name: &str) {
        let _ = self.runtime.block_on(self.leases.delete(name, &Default::default()));
    }
}

fn start_replica(source: &str, deploy: &str, lease: &str, kubeconfig: &Path, port: u16) -> Controller {
    start_replica_with(source, deploy, lease, kubeconfig, port, &[])
}

fn start_replica_with(
    source: &str,
    deploy: &str,
    lease: &str,
    kubeconfig: &Path,
    port: u16,
    env: &[(&str, &str)],
) -> Controller {
    let listen = format!("127.0.0.1:{port}");
    let duration = format!("{LEASE_SECONDS}s");
    start(
        &[
            "--source",
            source,
            "--deploy",
            deploy,
            "--listen",
            &listen,
            "--interval",
            "1h",
            "--status-interval",
            "0",
            "--leader-elect",
            "--lease-name",
            lease,
            "--lease-namespace",
            "default",
            "--lease-duration",
            &duration,
        ],
        port,
        &[&[("KUBECONFIG", kubeconfig.to_str().unwrap())], env].concat(),
    )
}

fn ready(c: &Controller) -> Option<bool> {
    c.get("/readyz").map(|(code, _)| code == 200)
}

/// `starmap_leader` of a replica (`None`: no answer).
fn leading(c: &Controller) -> Option<bool> {
    let (code, text) = c.get("/metrics")?;
    (code == 200).then(|| controller_support::Metrics::parse(&text).value("starmap_leader", &[]) == Some(1.0))
}

/// Wait until both replicas are Ready and exactly one leads; the leader's index.
fn settled(replicas: &[Controller]) -> Option<usize> {
    let mut leader = None;
    let ok = wait_for(Duration::from_secs(30), || {
        let leads: Vec<Option<bool>> = replicas.iter().map(leading).collect();
        leader = leads.iter().position(|l| *l == Some(true));
        leads.iter().filter(|l| **l == Some(true)).count() == 1 && replicas.iter().all(|c| ready(c) == Some(true))
    });
    if ok { leader } else { None }
}

/// Render rounds of a replica, whatever their result.
fn render_rounds(c: &Controller) -> f64 {
    let m = c.metrics();
    ["committed", "unchanged", "error"]
        .iter()
        .map(|r| m.value("starmap_render_rounds_total", &[("result", r)]).unwrap())
        .sum()
}

#[test]
fn one_replica_leads_and_a_standby_takes_over_when_it_dies() {
    let Some(fleet) = common::fleet_kubeconfig("`STARMAP_E2E_NO_FLUX=1 tests/e2e/up.sh 1`") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = hub_kubeconfig(&fleet, tmp.path());
    let hub = Hub::new(&kubeconfig);
    let lease = format!("starmap-test-{}", std::process::id());
    hub.delete(&lease);
    let source = source_repo(tmp.path());
    let deploy = tmp.path().join("deploy");
    let (source_spec, deploy_path) = (format!("{}@main", source.display()), deploy.display().to_string());
    let replica = |port: u16| start_replica(&source_spec, &deploy_path, &lease, &kubeconfig, port);
    let mut replicas = vec![replica(free_port()), replica(free_port())];

    // Both become Ready (the leader after its first render, the standby once it read the
    // Lease) and exactly one leads.
    let logs = |replicas: &[Controller]| replicas.iter().map(|c| c.logs()).collect::<Vec<_>>().join("\n---\n");
    let leader_at = settled(&replicas);
    assert!(leader_at.is_some(), "not settled; logs:\n{}", logs(&replicas));
    // Once the holder has renewed the Lease again (a new lease period): still one leader,
    // both Ready.
    let renewed = hub.lease(&lease).and_then(|l| l.spec?.renew_time);
    assert!(
        wait_for(Duration::from_secs(3 * LEASE_SECONDS), || {
            hub.lease(&lease).and_then(|l| l.spec?.renew_time) > renewed
        }),
        "the holder never renewed; logs:\n{}",
        logs(&replicas)
    );
    let leads: Vec<Option<bool>> = replicas.iter().map(leading).collect();
    assert_eq!(leads.iter().filter(|l| **l == Some(true)).count(), 1, "{leads:?}");
    assert_eq!(leads.iter().position(|l| *l == Some(true)), leader_at);
    let mut leader = replicas.remove(leader_at.unwrap());
    let standby = replicas.remove(0);
    let (code, why) = leader.get("/readyz").unwrap();
    assert_eq!((code, why.trim()), (200, "ready"));
    let (code, why) = standby.get("/readyz").unwrap();
    assert_eq!(code, 200, "{why}");
    assert!(why.starts_with("ready: standby, "), "{why}");
    assert_eq!(leader.metrics().value("starmap_leader", &[]), Some(1.0));
    assert_eq!(standby.metrics().value("starmap_leader", &[]), Some(0.0));
    let standby_rounds = standby
        .metrics()
        .value("starmap_render_rounds_total", &[("result", "committed")]);
    assert_eq!(standby_rounds, Some(0.0), "a standby renders nothing");
    assert_eq!(deploy_commits(&deploy), 1);

    // The Lease in the API server names the leader.
    let holder = hub.holder(&lease).expect("the Lease has a holder");
    assert!(holder.ends_with(&format!("_{}", leader.child.id())), "holder {holder}");

    // Kill the leader (no release): the standby takes over when the Lease expires, and renders.
    commit_change(
        &source,
        "workloads/storefront/deployment.yaml",
        "nginx:1.27.3",
        "nginx:1.27.4",
    );
    leader.child.kill().unwrap();
    let killed = Instant::now();
    let took_over = wait_for(Duration::from_secs(LEASE_SECONDS * 3), || {
        leading(&standby) == Some(true) && ready(&standby) == Some(true)
    });
    let took = killed.elapsed();
    assert!(took_over, "no takeover in {took:?}; logs:\n{}", standby.logs());
    eprintln!("standby leading and ready {took:?} after the leader was killed (lease {LEASE_SECONDS}s)");
    assert!(took <= Duration::from_secs(2 * LEASE_SECONDS + 2), "took {took:?}");
    assert_eq!(deploy_commits(&deploy), 2, "the new leader rendered the change");
    let rendered = deploy_file(
        &deploy,
        "clusters/store-0042/storefront/deployment.apps_storefront.yaml",
    )
    .unwrap();
    assert!(rendered.contains("nginx:1.27.4"));
    assert_eq!(standby.metrics().value("starmap_leader", &[]), Some(1.0));
    let holder = hub.holder(&lease).expect("the Lease has a holder");
    assert!(holder.ends_with(&format!("_{}", standby.child.id())), "holder {holder}");

    // SIGTERM: exit 0 and release the Lease for the next replica.
    let mut last = standby;
    last.signal(libc::SIGTERM);
    let status = last.wait_exit(Duration::from_secs(30)).expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "logs:\n{}", last.logs());
    assert_eq!(hub.holder(&lease), None, "released; logs:\n{}", last.logs());
    hub.delete(&lease);
}

#[test]
fn a_leader_that_loses_the_lease_stops_and_exits_1() {
    let Some(fleet) = common::fleet_kubeconfig("`STARMAP_E2E_NO_FLUX=1 tests/e2e/up.sh 1`") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = hub_kubeconfig(&fleet, tmp.path());
    let hub = Hub::new(&kubeconfig);
    let lease = format!("starmap-test-lost-{}", std::process::id());
    hub.delete(&lease);
    let source = source_repo(tmp.path());
    let deploy = tmp.path().join("deploy");
    let source_spec = format!("{}@main", source.display());
    let mut c = start_replica(
        &source_spec,
        &deploy.display().to_string(),
        &lease,
        &kubeconfig,
        free_port(),
    );
    // Ready alone is not enough: a standby is Ready too.
    let leads = wait_for(Duration::from_secs(30), || {
        leading(&c) == Some(true) && ready(&c) == Some(true)
    });
    assert!(leads, "not leading; logs:\n{}", c.logs());
    hub.steal(&lease);
    let stolen = Instant::now();
    let status = c.wait_exit(Duration::from_secs(3 * LEASE_SECONDS));
    let Some(status) = status else {
        panic!(
            "still running {:?} after losing the lease; logs:\n{}",
            stolen.elapsed(),
            c.logs()
        );
    };
    eprintln!("exited {:?} after the lease was taken", stolen.elapsed());
    assert_eq!(status.code(), Some(1), "logs:\n{}", c.logs());
    let logs = c.logs();
    let last = logs.lines().last().unwrap_or("");
    assert!(
        last.starts_with("error: lost the lease: another replica holds the lease"),
        "{logs}"
    );
    assert_eq!(
        hub.holder(&lease).as_deref(),
        Some("thief"),
        "the loser does not release another's lease"
    );
    hub.delete(&lease);
}

#[test]
fn both_replicas_are_ready_and_a_webhook_to_the_standby_is_relayed_to_the_leader() {
    let Some(fleet) = common::fleet_kubeconfig("`STARMAP_E2E_NO_FLUX=1 tests/e2e/up.sh 1`") else {
        return;
    };
    const SECRET: &str = "relay-s3cret";
    let tmp = tempfile::tempdir().unwrap();
    let kubeconfig = hub_kubeconfig(&fleet, tmp.path());
    let hub = Hub::new(&kubeconfig);
    let lease = format!("starmap-test-relay-{}", std::process::id());
    hub.delete(&lease);
    let source = source_repo(tmp.path());
    let deploy = tmp.path().join("deploy");
    let (source_spec, deploy_path) = (format!("{}@main", source.display()), deploy.display().to_string());
    let secret = [("STARMAP_WEBHOOK_SECRET", SECRET)];
    let replica = |port: u16| start_replica_with(&source_spec, &deploy_path, &lease, &kubeconfig, port, &secret);
    let mut replicas = vec![replica(free_port()), replica(free_port())];
    let leader_at = settled(&replicas);
    let logs = |replicas: &[Controller]| replicas.iter().map(|c| c.logs()).collect::<Vec<_>>().join("\n---\n");
    assert!(leader_at.is_some(), "not settled; logs:\n{}", logs(&replicas));
    let leader = replicas.remove(leader_at.unwrap());
    let standby = replicas.remove(0);
    let (code, why) = standby.get("/readyz").unwrap();
    assert_eq!(code, 200, "{why}");
    assert_eq!(deploy_commits(&deploy), 1);
    let before = hub.lease(&lease).expect("the Lease exists");
    let before_spec = before.spec.clone().unwrap();
    let rounds_before = render_rounds(&leader);

    // A push signed with another secret: refused by the standby, nothing relayed.
    commit_change(
        &source,
        "workloads/storefront/deployment.yaml",
        "nginx:1.27.3",
        "nginx:1.27.4",
    );
    let push = br#"{"ref":"refs/heads/main"}"#;
    let wrong = github_signature(b"not-the-secret", push);
    let (code, _) = standby.post(
        "/webhook",
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &wrong)],
        push,
    );
    assert_eq!(code, 401);
    let annotations = |l: &Lease| l.metadata.annotations.clone().unwrap_or_default();
    assert!(
        !annotations(&hub.lease(&lease).unwrap()).contains_key(RENDER_REQUESTED_AT),
        "a refused webhook is not relayed"
    );

    // The same push, signed right, to the standby: 202 relayed; the leader renders it.
    let sig = github_signature(SECRET.as_bytes(), push);
    let sent = Instant::now();
    let (code, body) = standby.post(
        "/webhook",
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
        push,
    );
    assert_eq!(code, 202, "{body}; logs:\n{}", standby.logs());
    assert!(body.contains("relayed to the leader"), "{body}");
    let rendered = wait_for(Duration::from_secs(3 * LEASE_SECONDS), || deploy_commits(&deploy) == 2);
    let latency = sent.elapsed();
    assert!(
        rendered,
        "no render {latency:?} after a relayed webhook; logs:\n{}",
        logs(&[leader, standby])
    );
    eprintln!("relayed webhook to deploy commit: {latency:?} (lease {LEASE_SECONDS}s)");
    // Within one renewal period (the holder renews every LEASE_SECONDS / 2), not the 1h
    // interval.
    assert!(latency <= Duration::from_secs(LEASE_SECONDS), "took {latency:?}");
    let file = deploy_file(
        &deploy,
        "clusters/store-0042/storefront/deployment.apps_storefront.yaml",
    )
    .unwrap();
    assert!(file.contains("nginx:1.27.4"), "{file}");
    assert!(
        leader.logs().contains("webhook relayed by a standby through the lease"),
        "{}",
        leader.logs()
    );

    // The round is counted just after its commit.
    assert!(
        wait_for(Duration::from_secs(5), || render_rounds(&leader) > rounds_before),
        "the leader's render rounds went up"
    );
    assert_eq!(
        leader
            .metrics()
            .value("starmap_render_rounds_total", &[("result", "committed")]),
        Some(2.0)
    );
    let standby_metrics = standby.metrics();
    let webhook = |result| standby_metrics.value("starmap_webhook_requests_total", &[("result", result)]);
    assert_eq!(webhook("relayed"), Some(1.0));
    assert_eq!(webhook("unauthorized"), Some(1.0));
    assert_eq!(webhook("accepted"), None, "the standby triggered nothing itself");
    assert_eq!(
        standby_metrics.value("starmap_render_rounds_total", &[("result", "committed")]),
        Some(0.0),
        "the standby rendered nothing"
    );

    // The relay wrote two annotations and nothing else: same holder, same acquire time and
    // transitions; the holder goes on renewing.
    let after = hub.lease(&lease).unwrap();
    let after_annotations = annotations(&after);
    assert!(
        after_annotations.contains_key(RENDER_REQUESTED_AT),
        "{after_annotations:?}"
    );
    assert!(
        after_annotations[RENDER_REQUESTED_BY].ends_with(&format!("_{}", standby.child.id())),
        "{after_annotations:?}"
    );
    let after_spec = after.spec.clone().unwrap();
    assert_eq!(after_spec.holder_identity, before_spec.holder_identity);
    assert!(
        after_spec
            .holder_identity
            .as_deref()
            .unwrap()
            .ends_with(&format!("_{}", leader.child.id()))
    );
    assert_eq!(after_spec.acquire_time, before_spec.acquire_time);
    assert_eq!(after_spec.lease_transitions, before_spec.lease_transitions);
    assert_eq!(after_spec.lease_duration_seconds, before_spec.lease_duration_seconds);
    assert!(
        wait_for(Duration::from_secs(3 * LEASE_SECONDS), || {
            hub.lease(&lease).and_then(|l| l.spec?.renew_time) > after_spec.renew_time
        }),
        "the holder still renews"
    );
    let later = hub.lease(&lease).unwrap().spec.unwrap();
    assert_eq!(later.holder_identity, before_spec.holder_identity);
    assert_eq!(leading(&leader), Some(true));
    assert_eq!(leading(&standby), Some(false));
    assert_eq!(ready(&standby), Some(true));
    // A second relayed push is picked up too (the value changes every time).
    commit_change(
        &source,
        "workloads/storefront/deployment.yaml",
        "nginx:1.27.4",
        "nginx:1.27.5",
    );
    let (code, _) = standby.post(
        "/webhook",
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
        push,
    );
    assert_eq!(code, 202);
    let sent = Instant::now();
    assert!(
        wait_for(Duration::from_secs(3 * LEASE_SECONDS), || deploy_commits(&deploy) == 3),
        "no render after the second relayed webhook; logs:\n{}",
        leader.logs()
    );
    eprintln!("second relayed webhook to deploy commit: {:?}", sent.elapsed());

    // SIGTERM to the leader, as a rolling update does: it releases the Lease, and the standby
    // (which reads the Lease every second here) takes it at once, not at the old expiry.
    let mut leader = leader;
    leader.signal(libc::SIGTERM);
    let stopped = Instant::now();
    assert!(
        wait_for(Duration::from_secs(3 * LEASE_SECONDS), || {
            leading(&standby) == Some(true) && ready(&standby) == Some(true)
        }),
        "no takeover after SIGTERM; logs:\n{}",
        standby.logs()
    );
    let took = stopped.elapsed();
    eprintln!("standby leading and ready {took:?} after SIGTERM to the leader (lease {LEASE_SECONDS}s)");
    assert!(took <= Duration::from_secs(3), "took {took:?}");
    assert_eq!(
        leader.wait_exit(Duration::from_secs(10)).and_then(|s| s.code()),
        Some(0)
    );
    drop((leader, standby));
    hub.delete(&lease);
}
