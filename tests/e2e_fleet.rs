//! End to end on a real fleet: starmap renders the fixtures into a deploy repo served over
//! smart HTTP, Flux (source-controller + kustomize-controller, built from the Go module proxy)
//! pulls each cluster's directory into a real kube-apiserver, and the live objects are
//! compared with the rendered files. Then the source changes (one cluster property, one
//! placement), and the live state must follow, pruning included.
//!
//! Needs the harness: `tests/e2e/up.sh 3 store-0042 store-1001 store-2001` and
//! `STARMAP_E2E_KUBECONFIG=$STARMAP_E2E_RUN/kubeconfig` (see docs/testing.md). Without it the
//! test says it was skipped and passes.

mod common;

use common::fleet::{Fleet, set_store_0042_replicas, take_the_storefront_off_store_1001};
use common::{git, starmap_ok as starmap};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The fixture clusters the harness runs (contexts named like them).
const CLUSTERS: [&str; 3] = ["store-0042", "store-1001", "store-2001"];
/// Flux's objects as starmap generates them by default.
const FLUX_NS: &str = "flux-system";
const FLUX_NAME: &str = "starmap";
const APPLY_TIMEOUT: Duration = Duration::from_secs(180);
/// Where status rounds commit (the default `status.branch`).
const STATUS: &str = "starmap-status";

/// The fixtures, pointed at the harness's git server with short intervals.
fn source_for(fleet: &Fleet, repo_name: &str, dir: &Path) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let status = Command::new("cp").arg("-r").arg(&fixtures).arg(dir).status().unwrap();
    assert!(status.success());
    let config = format!(
        "ignore: [drafts/**, .github/**]\n\
         deploy:\n  url: {}/{repo_name}\n  branch: main\n\
         flux:\n  interval: 3s\n  syncInterval: 30s\n  timeout: 2m\n",
        fleet.git_url
    );
    std::fs::write(dir.join("fixtures/starmap.yaml"), config).unwrap();
}

/// Waits until every cluster's Kustomization applied `commit` and is Ready.
fn wait_applied(fleet: &Fleet, commit: &str) {
    let want = format!("main@sha1:{commit}");
    fleet.wait_kustomizations(&CLUSTERS, FLUX_NS, FLUX_NAME, APPLY_TIMEOUT, &want, |ks| {
        ks["status"]["lastAppliedRevision"].as_str() == Some(want.as_str())
    });
}

fn assert_live_matches(fleet: &Fleet, repo: &Path, scratch: &Path) {
    fleet.assert_live_matches(repo, "main", &CLUSTERS, scratch);
}

fn assert_deployments_available(fleet: &Fleet) {
    for cluster in CLUSTERS {
        let out = fleet
            .kubectl(
                cluster,
                &[
                    "wait",
                    "--for=condition=Available",
                    "deployments",
                    "--all",
                    "--all-namespaces",
                    "--timeout=120s",
                ],
            )
            .unwrap_or_else(|e| panic!("{cluster}: Deployments not Available: {e}"));
        assert!(out.contains("condition met"), "{cluster}: {out}");
    }
}

#[test]
fn flux_applies_what_starmap_renders_and_follows_changes() {
    let Some(fleet) = Fleet::from_env(&format!("`tests/e2e/up.sh 3 {}`", CLUSTERS.join(" "))) else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let repo_name = format!("deploy-e2e-{}.git", std::process::id());
    let repo = fleet.git_root.join(&repo_name);
    git(&fleet.git_root, &["init", "-q", "--bare", "-b", "main", &repo_name]);
    source_for(&fleet, &repo_name, scratch.path());
    let source = scratch.path().join("fixtures");
    let (src, deploy) = (source.to_str().unwrap(), repo.to_str().unwrap());

    // 1. Render, then point each cluster's Flux at its directory with the objects starmap
    // generated for it (the bootstrap a platform team does once per cluster).
    starmap(&["render", "--source", src, "--deploy", deploy]);
    let first = git(&repo, &["rev-parse", "main"]);
    fleet.bootstrap_flux(&repo, "main", &CLUSTERS, scratch.path());
    wait_applied(&fleet, &first);
    assert_live_matches(&fleet, &repo, scratch.path());
    assert_deployments_available(&fleet);

    // Customizations are visible live: per-store replicas and store id on the storefront.
    let storefront = fleet.storefront("store-0042").unwrap();
    assert_eq!(storefront["metadata"]["labels"]["retail.example.com/store-id"], "0042");
    // store-2001 is excluded from the storefront by name.
    assert!(fleet.storefront("store-2001").is_none());

    // 2. Change one property of one cluster and one placement, render again.
    set_store_0042_replicas(&source, 4);
    take_the_storefront_off_store_1001(&source);
    starmap(&["render", "--source", src, "--deploy", deploy]);
    let second = git(&repo, &["rev-parse", "main"]);
    assert_ne!(first, second, "the change made a commit");

    wait_applied(&fleet, &second);
    assert_live_matches(&fleet, &repo, scratch.path());
    let storefront = fleet.storefront("store-0042").unwrap();
    assert_eq!(storefront["spec"]["replicas"], 4, "the new property is live");
    // Pruned: the storefront left store-1001 (its namespace may take a moment to go).
    let start = Instant::now();
    loop {
        let deploy = fleet.kubectl("store-1001", &["get", "deploy", "-n", "storefront", "storefront"]);
        let ns = fleet.kubectl("store-1001", &["get", "namespace", "storefront"]);
        if deploy.is_err() && ns.is_err() {
            break;
        }
        assert!(
            start.elapsed() < APPLY_TIMEOUT,
            "store-1001: storefront not pruned: {deploy:?} {ns:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_deployments_available(&fleet);

    // 3. Status back into git (api.md section 5).
    status_round_trip(&fleet, &scratch, &source, &repo, &second);
}

/// Stops (SIGSTOP) a component's process group and resumes it when dropped, so the fleet
/// survives a failing test. A stopped API server accepts no requests: a real outage.
struct Paused(i32);

impl Paused {
    fn component(fleet: &Fleet, name: &str) -> Paused {
        let pid_file = fleet.kubeconfig.parent().unwrap().join(format!("pids/{name}.pid"));
        let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
        // The PID is the session and group leader (`setsid timeout ...`): signal the group.
        assert!(
            Command::new("kill")
                .args(["-STOP", "--", &format!("-{pid}")])
                .status()
                .unwrap()
                .success()
        );
        Paused(pid)
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-CONT", "--", &format!("-{}", self.0)])
            .status();
    }
}

fn collect(fleet: &Fleet, source: &Path, repo: &Path, timeout: &str) -> Value {
    let mut args = vec![
        "status",
        "collect",
        "--source",
        source.to_str().unwrap(),
        "--deploy",
        repo.to_str().unwrap(),
        "--kubeconfig",
        fleet.kubeconfig.to_str().unwrap(),
        "--timeout",
        timeout,
        "-o",
        "json",
    ];
    for c in CLUSTERS {
        args.extend(["--cluster", c]);
    }
    serde_json::from_str(&starmap(&args)).expect("collect -o json")
}

fn cluster_entry<'a>(report: &'a Value, cluster: &str) -> &'a Value {
    report["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["cluster"] == cluster))
        .unwrap_or_else(|| panic!("{cluster} not in {report}"))
}

fn status_round_trip(fleet: &Fleet, scratch: &tempfile::TempDir, source: &Path, repo: &Path, rendered: &str) {
    fleet
        .give_ingress_an_address("store-0042")
        .expect("set the Ingress address");

    // Every object Healthy, and each cluster runs the render commit.
    let start = Instant::now();
    let report = loop {
        let report = collect(fleet, source, repo, "20s");
        if CLUSTERS
            .iter()
            .all(|c| cluster_entry(&report, c)["health"] == "Healthy")
        {
            break report;
        }
        assert!(start.elapsed() < APPLY_TIMEOUT, "not all Healthy: {report}");
        std::thread::sleep(Duration::from_secs(2));
    };
    for cluster in CLUSTERS {
        let entry = cluster_entry(&report, cluster);
        assert_eq!(entry["reachable"], true, "{entry}");
        assert_eq!(entry["current"], true, "{entry}");
        assert_eq!(
            entry["appliedRevision"], rendered,
            "{cluster} runs the render commit: {entry}"
        );
        let file = git(repo, &["show", &format!("{STATUS}:status/clusters/{cluster}.yaml")]);
        assert!(
            file.contains("health: Healthy") && !file.contains("health: Progressing"),
            "{file}"
        );
        assert!(
            file.contains("applied: true") && !file.contains("applied: false"),
            "{file}"
        );
    }
    eprintln!("status: all 3 clusters Healthy, running {rendered}");

    // The status rounds committed to their own branch: the deploy branch the edges sync did
    // not move, and no edge got a new revision (their GitRepository still has the render's).
    assert_eq!(
        git(repo, &["rev-parse", "main"]),
        rendered,
        "status rounds never move main"
    );
    std::thread::sleep(Duration::from_secs(7)); // two GitRepository intervals (3 s)
    for cluster in CLUSTERS {
        let source = fleet
            .kubectl_json(
                cluster,
                &["get", "gitrepository", "-n", FLUX_NS, FLUX_NAME, "-o", "json"],
            )
            .unwrap();
        assert_eq!(
            source["status"]["artifact"]["revision"],
            format!("main@sha1:{rendered}"),
            "{cluster}: a status round is no new revision for the edge"
        );
        eprintln!(
            "{cluster}: its GitRepository artifact (spec.ignore keeps only its directory) is {} bytes",
            source["status"]["artifact"]["size"]
        );
    }

    // Nothing changed: no commit.
    let before = git(repo, &["rev-parse", STATUS]);
    let again = collect(fleet, source, repo, "20s");
    assert_eq!(again["commit"], Value::Null, "nothing changed, yet a commit: {again}");
    assert_eq!(git(repo, &["rev-parse", STATUS]), before);

    // A revision that never becomes ready on store-0042: its pods cannot be scheduled and
    // the Deployment's progress deadline passes.
    std::fs::write(
        source.join("customizations/e2e-broken-storefront.yaml"),
        "apiVersion: starmap.dev/v1alpha1\nkind: Customization\nmetadata: {name: e2e-broken-storefront}\n\
         spec:\n  clusters: [store-0042]\n  targets: [{kinds: [Deployment], names: [storefront]}]\n  order: 50\n\
         \x20 merge:\n    spec:\n      progressDeadlineSeconds: 5\n      template:\n        spec:\n\
         \x20         nodeSelector: {e2e.starmap.dev/node: none}\n",
    )
    .unwrap();
    starmap(&[
        "render",
        "--source",
        source.to_str().unwrap(),
        "--deploy",
        repo.to_str().unwrap(),
    ]);
    let start = Instant::now();
    let report = loop {
        let report = collect(fleet, source, repo, "20s");
        if cluster_entry(&report, "store-0042")["health"] == "Degraded" {
            break report;
        }
        assert!(start.elapsed() < APPLY_TIMEOUT, "store-0042 never Degraded: {report}");
        std::thread::sleep(Duration::from_secs(2));
    };
    assert_eq!(cluster_entry(&report, "store-1001")["health"], "Healthy");
    assert_eq!(cluster_entry(&report, "store-2001")["health"], "Healthy");
    let summary = git(
        repo,
        &["show", &format!("{STATUS}:status/summaries/placements/storefront.yaml")],
    );
    assert!(summary.contains("Degraded: 1"), "{summary}");
    assert!(summary.contains("cluster: store-0042"), "{summary}");
    let show: Value = serde_json::from_str(&starmap(&[
        "status",
        "show",
        "--deploy",
        repo.to_str().unwrap(),
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(show["worstClusters"][0]["cluster"], "store-0042", "{show}");
    eprintln!("status: store-0042 Degraded after {:.1?}", start.elapsed());

    // One API server stops answering: that cluster is stale with its last status kept, the
    // others are collected.
    let last = git(repo, &["show", &format!("{STATUS}:status/clusters/store-2001.yaml")]);
    let paused = Paused::component(fleet, "store-2001-kube-apiserver");
    let started = Instant::now();
    let report = collect(fleet, source, repo, "5s");
    let took = started.elapsed();
    drop(paused);
    let entry = cluster_entry(&report, "store-2001");
    assert_eq!(entry["reachable"], false, "{entry}");
    assert_eq!(entry["stale"], true, "{entry}");
    assert_eq!(cluster_entry(&report, "store-1001")["reachable"], true);
    assert_eq!(cluster_entry(&report, "store-0042")["health"], "Degraded");
    let now = git(repo, &["show", &format!("{STATUS}:status/clusters/store-2001.yaml")]);
    assert!(now.contains("stale: true"), "{now}");
    let objects = |text: &str| text.split("objects:").nth(1).map(String::from);
    assert_eq!(objects(&now), objects(&last), "the last known objects are kept");
    assert!(
        took < Duration::from_secs(30),
        "a dead cluster held collection up for {took:?}"
    );
    eprintln!("status: store-2001 stale after a {took:.1?} round; others collected");
    let _ = scratch;
}
