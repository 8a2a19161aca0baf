//! End to end with Argo CD as the delivery: starmap renders the fixtures into a deploy repo
//! served over smart HTTP; on the hub (store-0042), `kubectl apply -k argocd/` creates the
//! ApplicationSet; Argo CD v3.6.2 (built from the Go module proxy, run out of cluster by the
//! harness) makes one Application per cluster and syncs each cluster's directory into its
//! real kube-apiserver. The live objects are compared with the rendered files; then the
//! source changes (one property, one placement) and the live state must follow, pruning
//! included; finally `status collect --argocd-hub` reads what Argo CD reported.
//!
//! Needs the harness with its Argo CD hub:
//! `STARMAP_E2E_ARGOCD=1 STARMAP_E2E_NO_FLUX=1 tests/e2e/up.sh 3 store-0042 store-1001 store-2001`
//! and `STARMAP_E2E_KUBECONFIG=$STARMAP_E2E_RUN/kubeconfig` (docs/testing.md). Without it the
//! test says it was skipped and passes.

mod common;

use common::fleet::Fleet;
use common::{git, starmap_ok as starmap};

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

const CLUSTERS: [&str; 3] = ["store-0042", "store-1001", "store-2001"];
const SYNC_TIMEOUT: Duration = Duration::from_secs(240);

/// The hub the harness runs Argo CD on, or `None` after saying why the test is skipped.
fn hub(fleet: &Fleet) -> Option<String> {
    let file = fleet.kubeconfig.parent().unwrap().join("argocd-hub");
    match std::fs::read_to_string(&file) {
        Ok(hub) => Some(hub.trim().to_string()),
        Err(_) if std::env::var_os("STARMAP_REQUIRE_ARGOCD").is_some() => {
            panic!(
                "STARMAP_REQUIRE_ARGOCD is set but the fleet has no Argo CD hub ({} is missing)",
                file.display()
            )
        }
        Err(_) => {
            eprintln!(
                "SKIPPED: the fleet has no Argo CD hub; start it with STARMAP_E2E_ARGOCD=1 tests/e2e/up.sh 3 {}",
                CLUSTERS.join(" ")
            );
            None
        }
    }
}

/// The fixtures, delivered by Argo CD only, from the harness's git server.
fn source_for(fleet: &Fleet, repo_name: &str, dir: &Path, generator: &str) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let status = Command::new("cp").arg("-r").arg(&fixtures).arg(dir).status().unwrap();
    assert!(status.success());
    let config = format!(
        "ignore: [drafts/**, .github/**]\n\
         deploy:\n  url: {}/{repo_name}\n  branch: main\n\
         flux:\n  enabled: false\n\
         argocd:\n  mode: applicationset\n  generator: {generator}\n",
        fleet.git_url
    );
    std::fs::write(dir.join("fixtures/starmap.yaml"), config).unwrap();
}

/// The Application of each cluster, by cluster.
fn applications(fleet: &Fleet, hub: &str) -> Vec<Value> {
    fleet
        .kubectl_json(hub, &["get", "applications.argoproj.io", "-n", "argocd", "-o", "json"])
        .map(|list| list["items"].as_array().cloned().unwrap_or_default())
        .unwrap_or_default()
}

fn summary(apps: &[Value]) -> String {
    apps.iter()
        .map(|a| {
            format!(
                "{}: sync {} at {}, health {} ({}), conditions {}",
                a["metadata"]["name"],
                a["status"]["sync"]["status"],
                a["status"]["sync"]["revision"],
                a["status"]["health"]["status"],
                a["status"]["operationState"]["message"],
                a["status"]["conditions"]
            )
        })
        .collect::<Vec<_>>()
        .join("\n  ")
}

/// Waits until each cluster's Application is Synced to `commit` and Healthy; `on_wait` runs
/// between polls (to give the Ingress the address no ingress controller gives it here).
fn wait_synced(fleet: &Fleet, hub: &str, commit: &str, mut on_wait: impl FnMut()) {
    let start = Instant::now();
    loop {
        let apps = applications(fleet, hub);
        let done = CLUSTERS.iter().all(|c| {
            apps.iter().any(|a| {
                a["metadata"]["name"] == format!("starmap-{c}").as_str()
                    && a["status"]["sync"]["status"] == "Synced"
                    && a["status"]["sync"]["revision"] == commit
                    && a["status"]["health"]["status"] == "Healthy"
            })
        });
        if done {
            eprintln!(
                "Argo CD: every Application Synced to {commit} and Healthy after {:?}",
                start.elapsed()
            );
            return;
        }
        assert!(
            start.elapsed() < SYNC_TIMEOUT,
            "Argo CD did not sync {commit} everywhere:\n  {}",
            summary(&apps)
        );
        on_wait();
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn argocd_syncs_what_starmap_renders_and_follows_changes() {
    let Some(fleet) = Fleet::from_env(&format!(
        "`STARMAP_E2E_ARGOCD=1 tests/e2e/up.sh 3 {}`",
        CLUSTERS.join(" ")
    )) else {
        return;
    };
    let Some(hub) = hub(&fleet) else { return };
    let scratch = tempfile::tempdir().unwrap();
    let repo_name = format!("deploy-argocd-{}.git", std::process::id());
    let repo = fleet.git_root.join(&repo_name);
    git(&fleet.git_root, &["init", "-q", "--bare", "-b", "main", &repo_name]);
    source_for(&fleet, &repo_name, scratch.path(), "cluster");
    let source = scratch.path().join("fixtures");
    let (src, deploy) = (source.to_str().unwrap(), repo.to_str().unwrap());

    // 1. Render; on the hub, apply argocd/ once (what a platform team does once).
    starmap(&["render", "--source", src, "--deploy", deploy]);
    let first = git(&repo, &["rev-parse", "main"]);
    let checkout = scratch.path().join("deploy");
    git(scratch.path(), &["clone", "-q", deploy, checkout.to_str().unwrap()]);
    fleet
        .kubectl(&hub, &["apply", "-k", checkout.join("argocd").to_str().unwrap()])
        .expect("kubectl apply -k argocd/ on the hub");
    wait_synced(&fleet, &hub, &first, || {
        // It exists once the first sync has created it.
        let _ = fleet.give_ingress_an_address("store-0042");
    });
    fleet.assert_live_matches(&repo, "main", &CLUSTERS, scratch.path());
    let storefront = fleet
        .kubectl_json(
            "store-0042",
            &["get", "deploy", "-n", "storefront", "storefront", "-o", "json"],
        )
        .unwrap();
    assert_eq!(storefront["metadata"]["labels"]["retail.example.com/store-id"], "0042");
    assert!(
        fleet
            .kubectl("store-2001", &["get", "deploy", "-n", "storefront", "storefront"])
            .is_err(),
        "store-2001 is excluded from the storefront"
    );

    // 2. One property of one cluster and one placement change; Argo CD follows, pruning.
    let inventory = source.join("inventory/us-east.yaml");
    let text = std::fs::read_to_string(&inventory).unwrap();
    let (before, after) = text.split_once("name: store-0042").expect("store-0042 in us-east.yaml");
    let after = after.replacen("replicas: 2", "replicas: 4", 1);
    std::fs::write(&inventory, format!("{before}name: store-0042{after}")).unwrap();
    let placement = source.join("placements/storefront.yaml");
    let text = std::fs::read_to_string(&placement).unwrap();
    let changed = text.replace("values: [store-2001]", "values: [store-2001, store-1001]");
    assert_ne!(changed, text);
    std::fs::write(&placement, changed).unwrap();
    starmap(&["render", "--source", src, "--deploy", deploy]);
    let second = git(&repo, &["rev-parse", "main"]);
    assert_ne!(first, second, "the change made a commit");
    wait_synced(&fleet, &hub, &second, || {
        // It exists once the first sync has created it.
        let _ = fleet.give_ingress_an_address("store-0042");
    });
    fleet.assert_live_matches(&repo, "main", &CLUSTERS, scratch.path());
    let storefront = fleet
        .kubectl_json(
            "store-0042",
            &["get", "deploy", "-n", "storefront", "storefront", "-o", "json"],
        )
        .unwrap();
    assert_eq!(storefront["spec"]["replicas"], 4, "the new property is live");
    let start = Instant::now();
    while fleet
        .kubectl("store-1001", &["get", "deploy", "-n", "storefront", "storefront"])
        .is_ok()
    {
        assert!(
            start.elapsed() < SYNC_TIMEOUT,
            "store-1001: the storefront was not pruned"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    // 3. Status from Argo CD alone: each cluster runs the second commit, Healthy.
    let report: Value = serde_json::from_str(&starmap(&[
        "status",
        "collect",
        "--source",
        src,
        "--deploy",
        deploy,
        "--kubeconfig",
        fleet.kubeconfig.to_str().unwrap(),
        "--argocd-hub",
        &hub,
        "-o",
        "json",
    ]))
    .expect("collect -o json");
    for cluster in CLUSTERS {
        let entry = report["clusters"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["cluster"] == cluster))
            .unwrap_or_else(|| panic!("{cluster} not in {report}"));
        assert_eq!(entry["appliedRevision"], second.as_str(), "{cluster}: {entry}");
        assert_eq!(entry["current"], true, "{entry}");
        assert_eq!(entry["health"], "Healthy", "{entry}");
    }
}
