//! OCI delivery end to end on the real fleet: starmap renders the fixtures and pushes one
//! artifact per cluster to the harness's registry (CNCF Distribution), and each cluster's Flux
//! (`OCIRepository` + `Kustomization` from `flux/<cluster>/`) pulls only its own artifact into
//! a real kube-apiserver. Then one cluster's property changes: exactly one artifact is pushed
//! and only that cluster's revision changes. Status maps the artifact each cluster runs back to
//! the deploy commit, and a status round moves no edge's revision.
//!
//! Needs the harness with Flux: `tests/e2e/up.sh 3 store-0042 store-1001 store-2001` and
//! `STARMAP_E2E_KUBECONFIG` (docs/testing.md). Without it the test says it was skipped.

mod common;

use common::fleet::{Fleet, set_store_0042_replicas};
use common::{git, starmap_ok as starmap};

use std::time::Duration;

use serde_json::Value;

const CLUSTERS: [&str; 3] = ["store-0042", "store-1001", "store-2001"];
const FLUX_NS: &str = "flux-system";
const FLUX_NAME: &str = "starmap";
const TIMEOUT: Duration = Duration::from_secs(180);

/// The revision each cluster's OCIRepository last fetched (`latest@sha256:…`).
fn source_revisions(fleet: &Fleet) -> Vec<String> {
    CLUSTERS
        .iter()
        .map(|c| {
            let o = fleet
                .kubectl_json(c, &["get", "ocirepository", "-n", FLUX_NS, FLUX_NAME, "-o", "json"])
                .unwrap_or_else(|e| panic!("{c}: OCIRepository: {e}"));
            o["status"]["artifact"]["revision"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect()
}

/// Every cluster's Kustomization applied the artifact of `commit`'s directory.
fn wait_applied(fleet: &Fleet, clusters: &[&str], commit: &str) {
    let want = format!("main@sha1:{commit}");
    fleet.wait_kustomizations(clusters, FLUX_NS, FLUX_NAME, TIMEOUT, &want, |ks| {
        ks["status"]["lastAppliedOriginRevision"].as_str() == Some(want.as_str())
            && ks["status"]["lastAppliedRevision"]
                .as_str()
                .is_some_and(|r| r.starts_with("latest@sha256:"))
    });
}

#[test]
fn flux_pulls_each_clusters_own_artifact_and_one_change_moves_one_edge() {
    let Some(fleet) = Fleet::from_env(&format!("`tests/e2e/up.sh 3 {}`", CLUSTERS.join(" "))) else {
        return;
    };
    let registry = fleet
        .registry
        .clone()
        .expect("the harness runs a registry (registry-host)");
    let scratch = tempfile::tempdir().unwrap();
    let repo_name = format!("deploy-oci-{}.git", std::process::id());
    let repo = fleet.git_root.join(&repo_name);
    git(&fleet.git_root, &["init", "-q", "--bare", "-b", "main", &repo_name]);
    let source = scratch.path().join("fixtures");
    common::copy_dir(&common::fixtures(), &source);
    std::fs::write(
        source.join("starmap.yaml"),
        format!(
            "ignore: [drafts/**, .github/**]\ndeploy:\n  url: {}/{repo_name}\n  branch: main\n\
             flux:\n  interval: 3s\n  syncInterval: 30s\n  timeout: 2m\n\
             oci:\n  repository: {registry}/e2e-{}\n  insecure: true\n",
            fleet.git_url,
            std::process::id()
        ),
    )
    .unwrap();
    let (src, deploy) = (source.to_str().unwrap(), repo.to_str().unwrap());

    // 1. Render and push; each cluster's Flux follows its own artifact.
    let out = starmap(&["render", "--source", src, "--deploy", deploy]);
    assert!(out.contains("pushed 14 artifacts"), "{out}");
    let first = git(&repo, &["rev-parse", "main"]);
    fleet.bootstrap_flux(&repo, "main", &CLUSTERS, scratch.path());
    wait_applied(&fleet, &CLUSTERS, &first);
    fleet.assert_live_matches(&repo, "main", &CLUSTERS, scratch.path());
    for cluster in CLUSTERS {
        let o = fleet
            .kubectl_json(
                cluster,
                &["get", "ocirepository", "-n", FLUX_NS, FLUX_NAME, "-o", "json"],
            )
            .unwrap();
        let artifact = &o["status"]["artifact"];
        assert_eq!(
            artifact["metadata"]["org.opencontainers.image.revision"],
            format!("main@sha1:{first}"),
            "{cluster}: {artifact}"
        );
        eprintln!(
            "{cluster}: its OCIRepository artifact is {} bytes (the cluster's directory only)",
            artifact["size"]
        );
    }

    // 2. One cluster's property: one artifact pushed, one edge's revision changes.
    let before = source_revisions(&fleet);
    set_store_0042_replicas(&source, 3);
    let out = starmap(&["render", "--source", src, "--deploy", deploy]);
    assert!(out.contains("pushed 1 artifact to"), "{out}");
    let second = git(&repo, &["rev-parse", "main"]);
    wait_applied(&fleet, &["store-0042"], &second);
    // Two more intervals: the other edges still run what they ran.
    std::thread::sleep(Duration::from_secs(7));
    let after = source_revisions(&fleet);
    assert_ne!(after[0], before[0], "store-0042 got a new revision");
    assert_eq!(after[1..], before[1..], "the other edges' revisions did not change");
    let live = fleet.storefront("store-0042").unwrap();
    assert_eq!(live["spec"]["replicas"], 3, "the new property is live");
    fleet.assert_live_matches(&repo, "main", &["store-0042"], scratch.path());

    // 3. Status: each cluster runs the deploy commit holding its directory (mapped from the
    // artifact's revision), and a status round, which commits to its own branch, gives no
    // edge a new revision.
    let report: Value = serde_json::from_str(&starmap(&[
        "status",
        "collect",
        "--source",
        src,
        "--deploy",
        deploy,
        "--kubeconfig",
        fleet.kubeconfig.to_str().unwrap(),
        "--cluster",
        "store-0042",
        "--cluster",
        "store-1001",
        "--cluster",
        "store-2001",
        "-o",
        "json",
    ]))
    .unwrap();
    assert!(report["commit"].is_string(), "the round committed: {report}");
    for entry in report["clusters"].as_array().unwrap() {
        assert_eq!(entry["current"], true, "{entry}");
        let applied = entry["appliedRevision"].as_str().expect("an applied revision");
        let cluster = entry["cluster"].as_str().unwrap();
        assert_eq!(
            git(&repo, &["rev-parse", &format!("{applied}:clusters/{cluster}")]),
            git(&repo, &["rev-parse", &format!("main:clusters/{cluster}")]),
            "{cluster}: its applied revision holds its directory"
        );
    }
    assert_eq!(git(&repo, &["rev-parse", "main"]), second, "status never moves main");
    std::thread::sleep(Duration::from_secs(7));
    assert_eq!(
        source_revisions(&fleet),
        after,
        "a status round moves no edge's revision"
    );
}
