//! Status commits in git: one commit per round on the status branch (the deploy branch never
//! moves), none when only times changed, stale clusters keep their last status, a repo of the
//! single-branch layout moves its `status/` to the status branch without losing a file, and
//! render and status sharing one branch (`status.branch: main`) never lose each other's
//! commits (real git, a real bare remote, real concurrent pushes).

mod common;

use std::path::Path;

use common::{commit_count, copy_dir, fixtures, git, starmap, tree_files};
use starmap::formats::status::{ClusterStatus, ObjectStatus};
use starmap::health::Health;
use starmap::snapshot::{DeployState, StatusBranches};
use starmap::status::collect::ClusterOutcome;
use starmap::status::store;

fn seen(cluster: &str, last_seen: &str, ready: u64) -> ClusterOutcome {
    ClusterOutcome::Seen(ClusterStatus {
        cluster: cluster.into(),
        reachable: true,
        stale: false,
        last_seen: Some(last_seen.into()),
        error: None,
        source: "kubeconfig".into(),
        deploy_commit: None,
        applied_revision: None,
        current: false,
        sync: None,
        objects: vec![ObjectStatus {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("storefront".into()),
            name: "storefront".into(),
            placements: vec!["storefront".into()],
            health: Health::Healthy,
            message: String::new(),
            applied: false,
            generation: Some(1),
            observed_generation: Some(1),
            status: Some(serde_json::json!({"readyReplicas": ready})),
        }],
    })
}

fn no_summaries(_: &DeployState<'_>, _: &[ClusterStatus]) -> starmap::Result<Vec<(String, serde_json::Value)>> {
    Ok(vec![])
}

/// A deploy repo rendered from the fixtures.
fn rendered_deploy(dir: &Path) -> std::path::PathBuf {
    let deploy = dir.join("deploy");
    starmap()
        .args(["render", "--source"])
        .arg(fixtures())
        .arg("--deploy")
        .arg(&deploy)
        .assert()
        .success();
    deploy
}

/// The deploy branch `main` and the status branch `status` of the repo at `path`.
fn branches(path: &Path, status: &str, push: bool) -> StatusBranches {
    StatusBranches::open(path.to_str().unwrap(), "main", status, push).unwrap()
}

const STATUS: &str = "starmap-status";

#[test]
fn one_commit_per_round_none_when_only_times_change_and_stale_keeps_status() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy_path = rendered_deploy(tmp.path());
    let repo = branches(&deploy_path, STATUS, false);
    let main_tip = git(&deploy_path, &["rev-parse", "main"]);

    let round = |outcomes: &[ClusterOutcome]| store::write_round(&repo, Some(outcomes), &no_summaries, false, false);
    let first = round(&[
        seen("store-0042", "2026-01-01T00:00:00Z", 2),
        seen("store-1001", "2026-01-01T00:00:00Z", 1),
    ])
    .unwrap();
    assert!(first.commit.is_some());
    assert_eq!(commit_count(&deploy_path, STATUS), 1, "one commit for the round");
    let files = tree_files(&deploy_path, STATUS);
    assert!(files["status/clusters/store-0042.yaml"].contains("readyReplicas: 2"));
    assert!(files.contains_key("status/clusters/store-1001.yaml"));
    // The status branch holds status only; the deploy branch, which edges sync, did not move.
    assert!(files.keys().all(|f| f.starts_with("status/")), "{:?}", files.keys());
    assert_eq!(git(&deploy_path, &["rev-parse", "main"]), main_tip);

    // Same state a minute later: no commit, the old timestamp stays.
    let again = round(&[seen("store-0042", "2026-01-01T00:01:00Z", 2)]).unwrap();
    assert_eq!(again.commit, None);
    assert_eq!(commit_count(&deploy_path, STATUS), 1);

    // Unreachable: stale, with the last known objects and lastSeen kept.
    let stale = round(&[ClusterOutcome::Unreachable {
        cluster: "store-1001".into(),
        error: "https://127.0.0.1:1: connection refused".into(),
    }])
    .unwrap();
    assert!(stale.commit.is_some());
    let text = &tree_files(&deploy_path, STATUS)["status/clusters/store-1001.yaml"];
    assert!(text.contains("stale: true"), "{text}");
    assert!(text.contains("reachable: false"), "{text}");
    assert!(text.contains("lastSeen: \"2026-01-01T00:00:00Z\""), "{text}");
    assert!(text.contains("readyReplicas: 1"), "last known status kept: {text}");
    assert!(text.contains("connection refused"), "{text}");
    // store-0042's file did not change in that round.
    assert!(tree_files(&deploy_path, STATUS)["status/clusters/store-0042.yaml"].contains("2026-01-01T00:00:00Z"));
    assert_eq!(
        git(&deploy_path, &["rev-parse", "main"]),
        main_tip,
        "no round moved main"
    );
}

#[test]
fn a_single_branch_repo_moves_its_status_to_the_status_branch_and_loses_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy_path = rendered_deploy(tmp.path());
    // A repo of the single-branch layout: status rounds committed to main.
    let single = branches(&deploy_path, "main", false);
    store::write_round(
        &single,
        Some(&[seen("store-1001", "2026-01-01T00:00:00Z", 1)]),
        &no_summaries,
        false,
        false,
    )
    .unwrap();
    assert!(tree_files(&deploy_path, "main").contains_key("status/clusters/store-1001.yaml"));
    let main_tip = git(&deploy_path, &["rev-parse", "main"]);

    // Before the first round on the status branch, `status show` still finds the old files.
    let show = || {
        let out = starmap()
            .args(["status", "show", "-o", "json", "--deploy"])
            .arg(&deploy_path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(show()["clusters"], 1);

    // The first round on the status branch starts it from main's status/ and adds its own.
    let split = branches(&deploy_path, STATUS, false);
    let round = store::write_round(
        &split,
        Some(&[seen("store-0042", "2026-01-01T00:00:00Z", 2)]),
        &no_summaries,
        false,
        false,
    )
    .unwrap();
    assert!(round.commit.is_some());
    let files = tree_files(&deploy_path, STATUS);
    assert!(files.contains_key("status/clusters/store-1001.yaml"), "moved over");
    assert!(files.contains_key("status/clusters/store-0042.yaml"), "this round's");
    assert_eq!(
        git(&deploy_path, &["rev-parse", "main"]),
        main_tip,
        "status never moves main"
    );
    assert_eq!(show()["clusters"], 2);

    // The next render takes status/ off the deploy branch, once, and says so.
    let render = || {
        starmap()
            .args(["render", "--source"])
            .arg(fixtures())
            .arg("--deploy")
            .arg(&deploy_path)
            .output()
            .unwrap()
    };
    let out = render();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let main = tree_files(&deploy_path, "main");
    assert!(!main.keys().any(|f| f.starts_with("status/")), "status/ left main");
    assert!(main.contains_key("clusters/store-0042/kustomization.yaml"));
    let subject = git(&deploy_path, &["log", "-1", "--format=%s", "main"]);
    assert_eq!(subject.trim(), "starmap: status files moved to branch starmap-status");
    assert!(
        main[".starmap/render.yaml"].contains("statusBranch: starmap-status"),
        "{}",
        main[".starmap/render.yaml"]
    );
    let again = render();
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("no changes"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(show()["clusters"], 2);
}

#[test]
fn render_and_status_committing_concurrently_lose_nothing() {
    const ROUNDS: usize = 100;
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    copy_dir(&fixtures(), &source);
    // The shared remote, and one clone per writer (as two CI jobs or pods would have).
    let seed = rendered_deploy(tmp.path());
    let origin = tmp.path().join("origin.git");
    git(
        tmp.path(),
        &[
            "clone",
            "-q",
            "--bare",
            seed.to_str().unwrap(),
            origin.to_str().unwrap(),
        ],
    );
    let render_clone = tmp.path().join("render-clone");
    let status_clone = tmp.path().join("status-clone");
    for clone in [&render_clone, &status_clone] {
        git(
            tmp.path(),
            &["clone", "-q", origin.to_str().unwrap(), clone.to_str().unwrap()],
        );
    }
    let start = commit_count(&origin, "main");
    // The single-branch layout: render and status share main, the race this test is about.
    let config = source.join("starmap.yaml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}status:\n  branch: main\n")).unwrap();

    let inventory = source.join("inventory/us-east.yaml");
    let original = std::fs::read_to_string(&inventory).unwrap();
    assert!(
        original.contains("storeName: Boston Back Bay"),
        "fixture changed; update this test"
    );
    let renderer = std::thread::spawn({
        let (source, render_clone) = (source.clone(), render_clone.clone());
        move || {
            for i in 0..ROUNDS {
                // A new store name each round: a real change to one cluster's files.
                let text = original.replace("storeName: Boston Back Bay", &format!("storeName: Boston Back Bay {i}"));
                std::fs::write(&inventory, text).unwrap();
                starmap()
                    .args(["render", "--push", "--source"])
                    .arg(&source)
                    .arg("--deploy")
                    .arg(&render_clone)
                    .assert()
                    .success();
            }
        }
    });
    let deploy = branches(&status_clone, "main", true);
    for i in 0..ROUNDS {
        // A collection round reads the clusters before it writes (at least 100 ms for even a
        // small fleet; a minute between rounds in practice); without that pause this loop
        // would hold the branch nearly all the time and starve render's retries, a race
        // neither side sees in practice. Still far tighter than any real schedule.
        std::thread::sleep(std::time::Duration::from_millis(100));
        let outcome = seen("store-0042", "2026-01-01T00:00:00Z", i as u64);
        let round = store::write_round(&deploy, Some(&[outcome]), &no_summaries, true, false).unwrap();
        assert!(
            round.commit.is_some() && round.pushed,
            "status round {i} committed and pushed"
        );
    }
    renderer.join().expect("every render succeeded");

    assert_eq!(
        commit_count(&origin, "main"),
        start + 2 * ROUNDS,
        "every render and every status round is a commit on the remote branch"
    );
    let log = git(&origin, &["log", "--format=%s", "main"]);
    assert_eq!(log.lines().filter(|l| l.starts_with("status: ")).count(), ROUNDS);
    let files = tree_files(&origin, "main");
    assert!(files["status/clusters/store-0042.yaml"].contains(&format!("readyReplicas: {}", ROUNDS - 1)));
    let last_name = format!("Boston Back Bay {}", ROUNDS - 1);
    assert!(
        files.values().any(|text| text.contains(&last_name)),
        "the last render is in the tip"
    );
}

#[test]
fn summarize_commits_summaries_once_and_show_prints_them() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy_path = rendered_deploy(tmp.path());
    let deploy = branches(&deploy_path, STATUS, false);
    store::write_round(
        &deploy,
        Some(&[seen("store-0042", "2026-01-01T00:00:00Z", 2)]),
        &no_summaries,
        false,
        false,
    )
    .unwrap();
    let summarize = || {
        let out = starmap()
            .args(["status", "summarize", "--source"])
            .arg(fixtures())
            .arg("--deploy")
            .arg(&deploy_path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = summarize();
    assert!(first.starts_with("committed "), "{first}");
    assert!(first.contains(" to starmap-status "), "{first}");
    let files = tree_files(&deploy_path, STATUS);
    let storefront = &files["status/summaries/placements/storefront.yaml"];
    assert!(storefront.contains("placement: storefront"), "{storefront}");
    // store-0042 reported its storefront Deployment Healthy; the other stores have no file.
    assert!(storefront.contains("Healthy: 1"), "{storefront}");
    assert!(files.contains_key("status/summaries/storefront-by-region.yaml"));
    let by_region = &files["status/summaries/storefront-by-region.yaml"];
    assert!(by_region.contains("region: us-east"), "{by_region}");
    // Offline and deterministic: the same status files give the same summaries, no commit.
    let before = commit_count(&deploy_path, STATUS);
    assert!(summarize().contains("no change"));
    assert_eq!(commit_count(&deploy_path, STATUS), before);

    let out = starmap()
        .args(["status", "show", "--deploy"])
        .arg(&deploy_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("PLACEMENT") && text.contains("storefront"), "{text}");
    let out = starmap()
        .args(["status", "show", "-o", "json", "--deploy"])
        .arg(&deploy_path)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let placements = json["placements"].as_array().unwrap();
    assert!(
        placements
            .iter()
            .any(|p| p["placement"] == "storefront" && p["health"]["Healthy"] == 1)
    );
}
