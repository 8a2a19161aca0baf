//! End to end with Argo CD as the delivery: starmap renders the fixtures into a deploy repo
//! served over smart HTTP; on the hub (store-0042), `kubectl apply -k argocd/` creates the
//! ApplicationSet (either generator) or the root Application; Argo CD v3.6.2 (built from the
//! Go module proxy, run out of cluster by the harness) makes one Application per cluster and
//! syncs each cluster's directory into its real kube-apiserver. The live objects are compared
//! with the rendered files; then the source changes (one property, one placement) and the
//! live state must follow, pruning included; `status collect --argocd-hub` reads what Argo CD
//! reported, a Degraded revision included.
//!
//! Needs the harness with its Argo CD hub:
//! `STARMAP_E2E_ARGOCD=1 STARMAP_E2E_NO_FLUX=1 tests/e2e/up.sh 3 store-0042 store-1001 store-2001`
//! and `STARMAP_E2E_KUBECONFIG=$STARMAP_E2E_RUN/kubeconfig` (docs/testing.md). Without it the
//! tests say they were skipped and pass.

mod common;

use common::fleet::{
    Fleet, make_pos_backend_unschedulable, set_store_0042_replicas, take_the_storefront_off_store_1001,
};
use common::{git, starmap_ok as starmap};

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

const CLUSTERS: [&str; 3] = ["store-0042", "store-1001", "store-2001"];
const SYNC_TIMEOUT: Duration = Duration::from_secs(240);

/// How starmap.yaml asks for Argo CD: `argocd:` below the deploy repo's settings.
const CLUSTER_GENERATOR: &str = "mode: applicationset\n  generator: cluster";
const GIT_DIRECTORY_GENERATOR: &str = "mode: applicationset\n  generator: git-directory";
const APPLICATIONS: &str = "mode: applications";

/// One test's source (the fixtures, delivered by Argo CD only) and deploy repo, on the
/// harness's git server, with the hub to itself while it lives.
struct Case {
    fleet: Fleet,
    hub: String,
    scratch: tempfile::TempDir,
    source: PathBuf,
    repo: PathBuf,
    _one: MutexGuard<'static, ()>,
}

/// Every test points the same clusters' Applications at its own deploy repo: one at a time.
static HUB: Mutex<()> = Mutex::new(());

impl Case {
    /// `oci`: deliver one OCI artifact per cluster through the harness's registry.
    fn new(name: &str, argocd: &str, oci: bool) -> Option<Case> {
        let fleet = Fleet::from_env(&format!(
            "`STARMAP_E2E_ARGOCD=1 tests/e2e/up.sh 3 {}`",
            CLUSTERS.join(" ")
        ))?;
        let hub = fleet.argocd_hub()?;
        let one = HUB.lock().unwrap_or_else(|e| e.into_inner());
        let scratch = tempfile::tempdir().unwrap();
        let repo_name = format!("deploy-argocd-{name}-{}.git", std::process::id());
        let repo = fleet.git_root.join(&repo_name);
        git(&fleet.git_root, &["init", "-q", "--bare", "-b", "main", &repo_name]);
        let source = scratch.path().join("fixtures");
        common::copy_dir(&common::fixtures(), &source);
        let config = format!(
            "ignore: [drafts/**, .github/**]\n\
             deploy:\n  url: {}/{repo_name}\n  branch: main\n\
             flux:\n  enabled: false\n\
             argocd:\n  {argocd}\n{}",
            fleet.git_url,
            match (oci, &fleet.registry) {
                (false, _) => String::new(),
                (true, Some(registry)) => format!(
                    "oci:\n  repository: {registry}/argocd-{name}-{}\n  insecure: true\n",
                    std::process::id()
                ),
                (true, None) => panic!("the harness runs no OCI registry"),
            }
        );
        std::fs::write(source.join("starmap.yaml"), config).unwrap();
        Some(Case {
            fleet,
            hub,
            scratch,
            source,
            repo,
            _one: one,
        })
    }

    fn render(&self) -> String {
        starmap(&["render", "--source", self.src(), "--deploy", self.deploy()]);
        git(&self.repo, &["rev-parse", "main"])
    }

    fn src(&self) -> &str {
        self.source.to_str().unwrap()
    }

    fn deploy(&self) -> &str {
        self.repo.to_str().unwrap()
    }

    /// Every Application Synced to `commit` (any revision when it is empty) and Healthy; then
    /// each edge's live objects equal its directory.
    fn assert_delivered(&self, commit: &str) {
        // An OCI source reports the artifact's digest, not the commit: `commit` is empty then.
        let what = match commit {
            "" => "every Application Synced to its artifact and Healthy".to_string(),
            _ => format!("every Application Synced to {commit} and Healthy"),
        };
        wait_for_applications(&self.fleet, &self.hub, &CLUSTERS, &what, |a| {
            a["status"]["sync"]["status"] == "Synced"
                && (commit.is_empty() || a["status"]["sync"]["revision"] == commit)
                && a["status"]["health"]["status"] == "Healthy"
        });
        self.fleet
            .assert_live_matches(&self.repo, "main", &CLUSTERS, self.scratch.path());
    }
}

/// Waits until the Application `starmap-<c>` of each of `clusters` satisfies `ok`, giving the
/// Ingresses their addresses between polls; `what` names the wait in messages.
fn wait_for_applications(fleet: &Fleet, hub: &str, clusters: &[&str], what: &str, ok: impl Fn(&Value) -> bool) {
    let start = Instant::now();
    loop {
        let apps = fleet.argocd_applications(hub);
        let done = clusters.iter().all(|c| {
            apps.iter()
                .any(|a| a["metadata"]["name"] == format!("starmap-{c}").as_str() && ok(a))
        });
        if done {
            eprintln!("Argo CD: {what} after {:?}", start.elapsed());
            return;
        }
        assert!(
            start.elapsed() < SYNC_TIMEOUT,
            "Argo CD: not {what}:\n  {}",
            Fleet::describe_applications(&apps)
        );
        give_ingresses_addresses(fleet);
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// Argo CD counts an Ingress without an address as Progressing, and no ingress controller runs
/// here to give one. Each storefront Ingress exists once a sync has created it; until then the
/// patch fails, which is why its error is ignored.
fn give_ingresses_addresses(fleet: &Fleet) {
    for cluster in CLUSTERS {
        let _ = fleet.give_ingress_an_address(cluster);
    }
}

fn collect(case: &Case) -> Value {
    let out = starmap(&[
        "status",
        "collect",
        "--source",
        case.src(),
        "--deploy",
        case.deploy(),
        "--kubeconfig",
        case.fleet.kubeconfig.to_str().unwrap(),
        "--argocd-hub",
        &case.hub,
        "-o",
        "json",
    ]);
    serde_json::from_str(&out).expect("collect -o json")
}

fn cluster_entry<'a>(report: &'a Value, cluster: &str) -> &'a Value {
    report["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["cluster"] == cluster))
        .unwrap_or_else(|| panic!("{cluster} not in {report}"))
}

/// The clusters among the fleet's whose directory holds `pos/` at the branch tip.
fn clusters_with_pos(repo: &std::path::Path) -> Vec<&'static str> {
    CLUSTERS
        .into_iter()
        .filter(|c| {
            std::process::Command::new("git")
                .args(["cat-file", "-e", &format!("main:clusters/{c}/pos")])
                .current_dir(repo)
                .status()
                .unwrap()
                .success()
        })
        .collect()
}

/// The `cluster` generator: one Application per registered cluster Secret. Then a property
/// and a placement change, pruning, status from Argo CD alone, and a Degraded revision in
/// the placement summary.
#[test]
fn cluster_generator_syncs_each_directory_and_follows_changes() {
    let Some(case) = Case::new("cluster", CLUSTER_GENERATOR, false) else {
        return;
    };
    let fleet = &case.fleet;

    // 1. Render; on the hub, apply argocd/ once.
    let first = case.render();
    case.fleet
        .bootstrap_argocd(&case.hub, &case.repo, "main", case.scratch.path());
    case.assert_delivered(&first);
    let storefront = fleet.storefront("store-0042").unwrap();
    assert_eq!(storefront["metadata"]["labels"]["retail.example.com/store-id"], "0042");
    assert!(
        fleet.storefront("store-2001").is_none(),
        "store-2001 is excluded from the storefront"
    );

    // 2. One property of one cluster and one placement change; Argo CD follows, pruning.
    set_store_0042_replicas(&case.source, 4);
    take_the_storefront_off_store_1001(&case.source);
    let second = case.render();
    assert_ne!(first, second, "the change made a commit");
    case.assert_delivered(&second);
    let storefront = fleet.storefront("store-0042").unwrap();
    assert_eq!(storefront["spec"]["replicas"], 4, "the new property is live");
    let start = Instant::now();
    while fleet.storefront("store-1001").is_some() {
        assert!(
            start.elapsed() < SYNC_TIMEOUT,
            "store-1001: the storefront was not pruned"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // 3. Status from Argo CD alone: each cluster runs the second commit, Healthy.
    let report = collect(&case);
    for cluster in CLUSTERS {
        let entry = cluster_entry(&report, cluster);
        assert_eq!(entry["appliedRevision"], second.as_str(), "{cluster}: {entry}");
        assert_eq!(entry["current"], true, "{entry}");
        assert_eq!(entry["health"], "Healthy", "{entry}");
    }

    // 4. A revision whose pos-backend cannot be scheduled: its progress deadline passes, Argo
    // CD reports the Applications Degraded, and the pos placement's summary says so.
    make_pos_backend_unschedulable(&case.source);
    let third = case.render();
    let with_pos = clusters_with_pos(&case.repo);
    assert!(!with_pos.is_empty(), "pos is placed on the fleet");
    wait_for_applications(
        fleet,
        &case.hub,
        &with_pos,
        &format!("{with_pos:?} Degraded at {third}"),
        |a| a["status"]["sync"]["revision"] == third.as_str() && a["status"]["health"]["status"] == "Degraded",
    );
    let report = collect(&case);
    for cluster in &with_pos {
        let entry = cluster_entry(&report, cluster);
        assert_eq!(entry["health"], "Degraded", "{entry}");
        assert_eq!(entry["appliedRevision"], third.as_str(), "{entry}");
    }
    let shown: Value = serde_json::from_str(&starmap(&["status", "show", "--deploy", case.deploy(), "-o", "json"]))
        .expect("status show -o json");
    let pos = shown["placements"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["placement"] == "pos"))
        .unwrap_or_else(|| panic!("no pos placement in {shown}"));
    for cluster in &with_pos {
        let row = pos["notHealthy"]
            .as_array()
            .and_then(|rows| rows.iter().find(|r| r["cluster"] == *cluster))
            .unwrap_or_else(|| panic!("{cluster} not among pos's unhealthy clusters: {pos}"));
        assert_eq!(row["health"], "Degraded", "{row}");
    }
    eprintln!("the pos placement, as Argo CD reports it: {pos}");
}

/// The `git-directory` generator: one Application per `clusters/*` directory, its destination
/// the cluster Secret of the same name.
#[test]
fn git_directory_generator_syncs_each_directory() {
    let Some(case) = Case::new("git-directory", GIT_DIRECTORY_GENERATOR, false) else {
        return;
    };
    let commit = case.render();
    case.fleet
        .bootstrap_argocd(&case.hub, &case.repo, "main", case.scratch.path());
    case.assert_delivered(&commit);
}

/// Sets `cluster`'s spec.server in the inventory to its API server in the harness (the
/// fixtures name addresses of a real fleet; store-2001 has none and is reached by name).
fn point_inventory_at_the_harness(case: &Case, cluster: &str) {
    let server = case
        .fleet
        .kubectl(
            cluster,
            &[
                "config",
                "view",
                "--minify",
                "-o",
                "jsonpath={.clusters[0].cluster.server}",
            ],
        )
        .expect("the cluster's server in the kubeconfig");
    for file in std::fs::read_dir(case.source.join("inventory")).unwrap() {
        let path = file.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        let Some((before, after)) = text.split_once(&format!("name: {cluster}\n")) else {
            continue;
        };
        // The server line of this cluster's document, if it has one.
        let document_end = after.find("\n---").unwrap_or(after.len());
        if let Some(at) = after[..document_end].find("  server: ") {
            let line_end = at + after[at..].find('\n').unwrap();
            let after = format!("{}  server: {}{}", &after[..at], server.trim(), &after[line_end..]);
            std::fs::write(&path, format!("{before}name: {cluster}\n{after}")).unwrap();
        }
    }
}

/// Mode `applications`: argocd/ holds the root Application, which syncs one Application per
/// cluster from argocd/applications/ onto the hub.
#[test]
fn applications_mode_with_the_root_application_syncs_each_directory() {
    let Some(case) = Case::new("applications", APPLICATIONS, false) else {
        return;
    };
    // Each Application's destination is its Cluster's spec.server: the harness's API servers.
    for cluster in CLUSTERS {
        point_inventory_at_the_harness(&case, cluster);
    }
    let commit = case.render();
    case.fleet
        .bootstrap_argocd(&case.hub, &case.repo, "main", case.scratch.path());
    case.assert_delivered(&commit);
    let root = case
        .fleet
        .kubectl_json(
            &case.hub,
            &[
                "get",
                "applications.argoproj.io",
                "-n",
                "argocd",
                "starmap-root",
                "-o",
                "json",
            ],
        )
        .expect("the root Application");
    assert_eq!(root["status"]["sync"]["status"], "Synced", "{}", root["status"]);
}

/// OCI delivery: each cluster's Application follows its own artifact,
/// `oci://<registry>/<repository>/<cluster>`, which starmap pushed with the render; Argo CD
/// reaches the plain-HTTP registry through a credential template (`repo-creds`) for its
/// address, and status maps the digest Argo CD reports back to the deploy commit.
#[test]
fn oci_artifacts_sync_each_cluster() {
    let Some(case) = Case::new("oci", CLUSTER_GENERATOR, true) else {
        return;
    };
    let registry = case.fleet.registry.clone().unwrap();
    let creds = case.scratch.path().join("oci-repo-creds.yaml");
    std::fs::write(
        &creds,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: starmap-e2e-oci\n  namespace: argocd\n  labels:\n\
             \x20   argocd.argoproj.io/secret-type: repo-creds\nstringData:\n  type: oci\n  url: oci://{registry}\n\
             \x20 insecureOCIForceHttp: \"true\"\n"
        ),
    )
    .unwrap();
    case.fleet
        .kubectl(&case.hub, &["apply", "-f", creds.to_str().unwrap()])
        .expect("the registry's credential template on the hub");
    let commit = case.render();
    case.fleet
        .bootstrap_argocd(&case.hub, &case.repo, "main", case.scratch.path());
    for app in case.fleet.argocd_applications(&case.hub) {
        let url = app["spec"]["source"]["repoURL"].as_str().unwrap_or_default();
        assert!(url.starts_with(&format!("oci://{registry}/")), "{url}");
    }
    case.assert_delivered("");
    for app in case.fleet.argocd_applications(&case.hub) {
        let revision = app["status"]["sync"]["revision"].as_str().unwrap_or_default();
        assert!(
            revision.starts_with("sha256:"),
            "an artifact's digest, not {revision:?}"
        );
    }
    let report = collect(&case);
    for cluster in CLUSTERS {
        let entry = cluster_entry(&report, cluster);
        assert_eq!(entry["appliedRevision"], commit.as_str(), "{cluster}: {entry}");
        assert_eq!(entry["health"], "Healthy", "{entry}");
    }
}
