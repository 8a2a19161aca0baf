//! `starmap run --leader-elect` on a real kube-apiserver: two replicas, one Lease; exactly
//! one works, the other stands by and takes over when the leader is killed; SIGTERM releases
//! the Lease.
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
        let lease = self.runtime.block_on(self.leases.get_opt(name)).unwrap()?;
        lease.spec?.holder_identity
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
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    )
}

fn ready(c: &Controller) -> Option<bool> {
    c.get("/readyz").map(|(code, _)| code == 200)
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

    // Exactly one becomes ready; the other stays a standby.
    let one_ready = wait_for(Duration::from_secs(30), || {
        replicas.iter().filter(|c| ready(c) == Some(true)).count() == 1
    });
    let logs = || replicas.iter().map(|c| c.logs()).collect::<Vec<_>>().join("\n---\n");
    assert!(one_ready, "no leader; logs:\n{}", logs());
    // Let a second lease period pass: still one leader.
    std::thread::sleep(Duration::from_secs(LEASE_SECONDS + 1));
    let states: Vec<Option<bool>> = replicas.iter().map(ready).collect();
    assert_eq!(states.iter().filter(|r| **r == Some(true)).count(), 1, "{states:?}");
    let leader_at = states.iter().position(|r| *r == Some(true)).unwrap();
    let mut leader = replicas.remove(leader_at);
    let standby = replicas.remove(0);
    let (code, why) = standby.get("/readyz").unwrap();
    assert_eq!((code, why.trim()), (503, "standby: another replica holds the lease"));
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
    let took_over = wait_for(Duration::from_secs(LEASE_SECONDS * 3), || ready(&standby) == Some(true));
    let took = killed.elapsed();
    assert!(took_over, "no takeover in {took:?}; logs:\n{}", standby.logs());
    eprintln!("standby ready {took:?} after the leader was killed (lease {LEASE_SECONDS}s)");
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
    c.wait_ready(Duration::from_secs(30));
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
