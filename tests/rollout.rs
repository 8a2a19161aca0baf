//! Rollout waves in the deploy repo: a new revision reaches the clusters of the open waves
//! only, the next wave opens when status shows the open ones applied and Healthy, a failing
//! canary pauses the rollout, `spec.suspend` freezes a placement (real git repos, the real
//! CLI).
//!
//! The status files these tests gate on are written through starmap's own status store
//! (`common::reported`, as `status collect` writes them), with the health a test chooses
//! standing in for the live clusters: that makes every gate decision here deterministic. The same flow on real clusters, with Flux applying each wave and real
//! collection, is `tests/e2e_rollout.rs`.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::reported::report_status;
use common::waves::{PLACEMENT, WAVES, set_image, source};
use common::{commit_count, git, render, starmap, tree_files};
use starmap::health::Health;

const CANARY: [&str; 3] = ["store-0042", "store-0350", "store-1001"];
const EARLY: [&str; 2] = ["store-0107", "store-0311"];
const MAIN: [&str; 2] = ["store-0213", "store-1017"];
const DEPLOYMENT: &str = "storefront/deployment.apps_storefront.yaml";

fn file_at(deploy: &Path, path: &str) -> Option<String> {
    tree_files(deploy, "refs/heads/main").get(path).cloned()
}

fn deployment(deploy: &Path, cluster: &str) -> Option<String> {
    file_at(deploy, &format!("clusters/{cluster}/{DEPLOYMENT}"))
}

fn state(deploy: &Path) -> serde_json::Value {
    let text = file_at(deploy, ".starmap/rollouts/storefront.yaml").expect("a rollout state file");
    starmap::yaml::parse_documents(&text, "state").unwrap().remove(0).value
}

fn healthy(_: &str) -> Health {
    Health::Healthy
}

#[test]
fn a_revision_goes_wave_by_wave_as_status_proves_each_one() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path(), WAVES);
    let deploy = tmp.path().join("deploy");

    // The first render opens the canary wave only.
    let out = render(&src, &deploy);
    assert!(out.contains("rollout storefront: Progressing, 1/3 waves open"), "{out}");
    let st = state(&deploy);
    assert_eq!(st["phase"], "Progressing");
    assert_eq!(st["openWaves"], 1);
    for c in CANARY {
        assert!(deployment(&deploy, c).is_some(), "{c} is in the open canary wave");
    }
    for c in EARLY.iter().chain(&MAIN) {
        assert!(deployment(&deploy, c).is_none(), "{c} waits for its wave");
        assert!(file_at(&deploy, &format!("clusters/{c}/kustomization.yaml")).is_some());
    }
    let message = git(&deploy, &["log", "-1", "--format=%B", "main"]);
    assert!(
        message.contains("Rollouts:\n  storefront: Progressing, 1/3 waves open"),
        "{message}"
    );

    // Nothing new, no status: no commit.
    let commits = commit_count(&deploy, "main");
    render(&src, &deploy);
    assert_eq!(commit_count(&deploy, "main"), commits);

    // explain tells where a waiting cluster stands.
    let out = starmap()
        .args(["explain", "--cluster", "store-0107", "--source"])
        .arg(&src)
        .arg("--deploy")
        .arg(&deploy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("storefront: wave early (2 of 3)"), "{text}");
    assert!(text.contains("waiting: wave early is not open yet"), "{text}");
    assert!(text.contains("waiting for wave canary"), "{text}");

    // Only some canaries are Healthy: the gate stays closed.
    report_status(&deploy, &CANARY[..2], &healthy);
    render(&src, &deploy);
    assert_eq!(state(&deploy)["openWaves"], 1);
    assert!(
        state(&deploy)["message"]
            .as_str()
            .unwrap()
            .contains("store-1001 (pending: has not applied this revision yet)")
    );
    assert!(deployment(&deploy, "store-0107").is_none());

    // Every canary applied and Healthy: the early wave opens (plan says so first).
    report_status(&deploy, &CANARY, &healthy);
    let out = starmap()
        .args(["plan", "--source"])
        .arg(&src)
        .arg("--deploy")
        .arg(&deploy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("~ rollout storefront: Progressing, 2/3 waves open"),
        "{text}"
    );
    assert!(text.contains("~ cluster store-0107"), "{text}");
    render(&src, &deploy);
    assert_eq!(state(&deploy)["openWaves"], 2);
    for c in EARLY {
        assert!(deployment(&deploy, c).is_some(), "{c}: its wave opened");
    }
    for c in MAIN {
        assert!(deployment(&deploy, c).is_none(), "{c} still waits");
    }

    // The early clusters still run the previous deploy commit: their status says so.
    render(&src, &deploy);
    assert_eq!(state(&deploy)["openWaves"], 2);
    report_status(&deploy, &EARLY, &healthy);
    render(&src, &deploy);
    let st = state(&deploy);
    assert_eq!(
        (st["phase"].as_str(), st["openWaves"].as_u64()),
        (Some("Complete"), Some(3))
    );
    for c in MAIN {
        assert!(deployment(&deploy, c).is_some());
    }
}

#[test]
fn a_new_revision_changes_only_the_open_wave_and_a_failing_canary_pauses_it() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path(), WAVES);
    let deploy = tmp.path().join("deploy");
    render(&src, &deploy);
    let all: Vec<&str> = CANARY.iter().chain(&EARLY).chain(&MAIN).copied().collect();
    // Walk the first revision out everywhere.
    for _ in 0..3 {
        report_status(&deploy, &all, &healthy);
        render(&src, &deploy);
    }
    assert_eq!(state(&deploy)["phase"], "Complete");
    let before: BTreeMap<&str, String> = all.iter().map(|c| (*c, deployment(&deploy, c).unwrap())).collect();

    set_image(&src, "2.0.0");
    let out = render(&src, &deploy);
    // The canaries, and lab-1 where another placement (not rolled out) puts the Deployment.
    assert!(out.contains("4 clusters changed"), "{out}");
    assert!(deployment(&deploy, "lab-1").unwrap().contains("storefront:2.0.0"));
    for c in CANARY {
        let now = deployment(&deploy, c).unwrap();
        assert!(now.contains("storefront:2.0.0"), "{c}: {now}");
    }
    for c in EARLY.iter().chain(&MAIN) {
        assert_eq!(
            deployment(&deploy, c).unwrap(),
            before[c],
            "{c} keeps the previous revision, byte for byte"
        );
    }
    // The held clusters were rendered again, but their files, which the tip has, were not
    // stored again: every object the commit names must still be in the repository.
    git(&deploy, &["fsck", "--full", "--strict", "--no-dangling"]);
    // `plan` agrees: nothing more to do until status moves.
    starmap()
        .args(["plan", "--detailed-exitcode", "--source"])
        .arg(&src)
        .arg("--deploy")
        .arg(&deploy)
        .assert()
        .code(0);

    // The canary runs it and its Deployment is Degraded: the rollout pauses and says why.
    report_status(&deploy, &all, &|c| {
        if c == "store-0042" {
            Health::Degraded
        } else {
            Health::Healthy
        }
    });
    render(&src, &deploy);
    let st = state(&deploy);
    assert_eq!(
        (st["phase"].as_str(), st["openWaves"].as_u64()),
        (Some("Paused"), Some(1))
    );
    let message = st["message"].as_str().unwrap();
    assert!(
        message.contains("store-0042") && message.contains("Deployment/storefront/storefront Degraded"),
        "{message}"
    );
    assert_eq!(st["blocking"][0]["cluster"], "store-0042");
    assert_eq!(st["blocking"][0]["state"], "Failed");
    for c in EARLY.iter().chain(&MAIN) {
        assert_eq!(
            deployment(&deploy, c).unwrap(),
            before[c],
            "{c} stays on the previous revision"
        );
    }
    let out = starmap()
        .args(["status", "show", "--deploy"])
        .arg(&deploy)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ROLLOUT") && text.contains("Paused"), "{text}");
    let json = starmap()
        .args(["status", "show", "-o", "json", "--deploy"])
        .arg(&deploy)
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["rollouts"][0]["phase"], "Paused");
}

#[test]
fn suspend_freezes_every_cluster_of_the_placement() {
    let tmp = tempfile::tempdir().unwrap();
    let src = source(tmp.path(), "  suspend: true\n");
    let deploy = tmp.path().join("deploy");
    render(&src, &deploy);
    assert_eq!(state(&deploy)["phase"], "Suspended");
    for c in CANARY {
        assert!(
            deployment(&deploy, c).is_none(),
            "{c}: suspended before anything was written"
        );
    }
    // Unsuspended, without a rollout: every cluster gets it and the state file goes.
    std::fs::write(src.join("placements/storefront.yaml"), PLACEMENT).unwrap();
    render(&src, &deploy);
    assert!(file_at(&deploy, ".starmap/rollouts/storefront.yaml").is_none());
    let before = deployment(&deploy, "store-0213").unwrap();
    // Suspended again, a change reaches nobody.
    std::fs::write(
        src.join("placements/storefront.yaml"),
        format!("{PLACEMENT}  suspend: true\n"),
    )
    .unwrap();
    set_image(&src, "3.0.0");
    render(&src, &deploy);
    assert_eq!(deployment(&deploy, "store-0213").unwrap(), before);
    assert_eq!(state(&deploy)["phase"], "Suspended");
}

#[test]
fn bad_rollout_specs_name_the_file_and_line() {
    for (extra, expected) in [
        (
            "  rollout:\n    minHealthyTime: soon\n    waves: [{name: a}]\n",
            "minHealthyTime",
        ),
        ("  rollout:\n    waves: []\n", "at least one wave"),
        (
            "  rollout:\n    waves: [{name: a, percent: 0}]\n",
            "percent must be 1 to 100",
        ),
        (
            "  rollout:\n    waves: [{name: a, percent: 10, clusterSelector: {matchLabels: {ring: canary}}}]\n",
            "not both",
        ),
        ("  rollout:\n    waves: [{name: a}, {name: a}]\n", "used twice"),
        (
            "  rollout:\n    waves: [{name: a, clusters: [nowhere]}]\n",
            "not in the inventory",
        ),
        ("  rollout:\n    wave: []\n", "unknown field"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let src = source(tmp.path(), extra);
        let deploy = tmp.path().join("deploy");
        let out = starmap()
            .args(["render", "--source"])
            .arg(&src)
            .arg("--deploy")
            .arg(&deploy)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra}: {err}");
        assert!(err.contains("placements/storefront.yaml:"), "{extra}: {err}");
        assert!(err.contains(expected), "{extra}: expected {expected:?} in {err}");
        assert!(!deploy.exists(), "nothing created");
    }
}
