//! The dashboard at fleet scale: the synthetic fleet of `benches/fleet.rs` (N clusters × 20
//! objects) rendered by the release binary into a bare deploy repo, one status round written
//! through starmap's status store (about 5% of the clusters Degraded, 1% stale) and
//! summarized; then the time to read the fleet, to draw the overview and the export, their
//! weight, and how long headless Chromium takes to load each (when it is installed).
//!
//! ```text
//! cargo bench --bench dashboard                    # 10,000 clusters
//! cargo bench --bench dashboard -- --clusters 1000
//! ```

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use starmap::dashboard::{Fleet, FleetCache, html};
use starmap::formats::index::parse_index;
use starmap::formats::status::{ClusterStatus, ObjectStatus};
use starmap::gitstore::{DeployRepo, blob_text, entries_at};
use starmap::health::Health;
use starmap::snapshot::StatusBranches;
use starmap::status::collect::ClusterOutcome;
use starmap::status::store;
use support::{git, inventory, specs, workloads, write_files};

fn main() {
    let mut clusters = 10_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--clusters" => clusters = args.next().and_then(|v| v.parse().ok()).expect("--clusters N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let starmap = env!("CARGO_BIN_EXE_starmap");
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("source");
    let mut files = inventory(clusters, None);
    files.extend(workloads(20));
    files.extend(specs());
    write_files(&src, &files);
    git(&src, &["init", "-q", "-b", "main"]);
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "fleet"]);
    let deploy = tmp.path().join("deploy.git");
    git(tmp.path(), &["init", "-q", "--bare", "-b", "main", "deploy.git"]);
    let ok = Command::new(starmap)
        .args(["render", "--source"])
        .arg(&src)
        .arg("--deploy")
        .arg(&deploy)
        .env("STARMAP_BUILD_CACHE", "off")
        .status()
        .unwrap()
        .success();
    assert!(ok, "render");

    // One status round: every object as its index says, ~5% of clusters Degraded, 1% stale.
    let deploy_str = deploy.to_str().unwrap();
    let repo = DeployRepo::open(deploy_str, "main", false, false).unwrap();
    let tip = repo.tip().unwrap().unwrap();
    let outcomes: Vec<ClusterOutcome> = entries_at(&repo.repo, Some(tip.tree), ".starmap/clusters")
        .into_iter()
        .enumerate()
        .map(|(i, (file, oid))| {
            let index = parse_index(&blob_text(&repo.repo, oid).unwrap(), &file).unwrap();
            let degraded = i % 20 == 7;
            ClusterOutcome::Seen(ClusterStatus {
                cluster: index.cluster.clone(),
                reachable: true,
                stale: false,
                last_seen: Some("2026-12-05T12:00:00Z".into()),
                error: None,
                source: "kubeconfig".into(),
                deploy_commit: Some(tip.commit.to_string()),
                applied_revision: Some(tip.commit.to_string()),
                current: true,
                sync: None,
                objects: index
                    .objects
                    .iter()
                    .map(|e| {
                        let bad = degraded && e.kind == "Deployment";
                        ObjectStatus {
                            api_version: e.api_version.clone(),
                            kind: e.kind.clone(),
                            namespace: e.namespace.clone(),
                            name: e.name.clone(),
                            placements: e.placements.clone(),
                            health: if bad { Health::Degraded } else { Health::Healthy },
                            message: if bad {
                                "ProgressDeadlineExceeded: ReplicaSet has timed out progressing".into()
                            } else {
                                String::new()
                            },
                            applied: true,
                            generation: Some(1),
                            observed_generation: Some(1),
                            status: None,
                        }
                    })
                    .collect(),
            })
        })
        .collect();
    let branches = StatusBranches::open(deploy_str, "main", "starmap-status", false).unwrap();
    let none = |_: &starmap::snapshot::DeployState<'_>, _: &[ClusterStatus]| Ok(vec![]);
    store::write_round(&branches, Some(&outcomes), &none, false, false).unwrap();
    let stale: Vec<ClusterOutcome> = (0..clusters / 100)
        .map(|i| ClusterOutcome::Unreachable {
            cluster: format!("store-{:05}", i * 100 + 3),
            error: "https://10.0.0.1:6443: connection refused (3 attempts)".into(),
        })
        .collect();
    store::write_round(&branches, Some(&stale), &none, false, false).unwrap();
    let ok = Command::new(starmap)
        .args(["status", "summarize", "--source"])
        .arg(&src)
        .arg("--deploy")
        .arg(&deploy)
        .status()
        .unwrap()
        .success();
    assert!(ok, "summarize");

    let started = Instant::now();
    let fleet = Fleet::open(deploy_str, "main", None, false).unwrap();
    let read = started.elapsed();
    // What `starmap run` does per page: the fleet from its cache while no branch moved.
    let cache = FleetCache::default();
    cache.get(deploy_str, "main", None).unwrap();
    let started = Instant::now();
    cache.get(deploy_str, "main", None).unwrap();
    let cached = started.elapsed();
    let started = Instant::now();
    let overview = html::overview(&fleet, &html::View::default(), &html::SERVED, None, false).unwrap();
    let drawn = started.elapsed();
    let started = Instant::now();
    let export = html::overview(&fleet, &html::View::default(), &html::EXPORTED, None, true).unwrap();
    let exported = started.elapsed();
    let started = Instant::now();
    let page = html::cluster(&fleet, "store-00007", &html::SERVED).unwrap().unwrap();
    let cluster_page = started.elapsed();
    eprintln!(
        "{clusters} clusters: read the fleet {:.2} s (from the cache while no branch moved: {:.1} ms); overview {:.0} ms, {:.2} MiB; export {:.0} ms, {:.2} MiB; \
         a cluster page {:.1} ms, {:.1} KiB",
        read.as_secs_f64(),
        cached.as_secs_f64() * 1000.0,
        drawn.as_secs_f64() * 1000.0,
        overview.len() as f64 / 1048576.0,
        exported.as_secs_f64() * 1000.0,
        export.len() as f64 / 1048576.0,
        cluster_page.as_secs_f64() * 1000.0,
        page.len() as f64 / 1024.0
    );
    let browser = ["chromium", "chromium-browser", "google-chrome"].iter().find_map(|b| {
        std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(b)).find(|p| p.is_file()))
    });
    let Some(browser) = browser else {
        eprintln!("skipped: page load times (no chromium)");
        return;
    };
    for (name, text) in [("overview", &overview), ("export", &export)] {
        let file = tmp.path().join(format!("{name}.html"));
        std::fs::write(&file, text).unwrap();
        let profile = tmp.path().join(format!("profile-{name}"));
        let load = |file: &Path| {
            let started = Instant::now();
            let out = Command::new(&browser)
                .args([
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--no-first-run",
                    "--dump-dom",
                ])
                .arg(format!("--user-data-dir={}", profile.display()))
                .arg(format!("file://{}", file.display()))
                .output()
                .unwrap();
            assert!(out.status.success());
            (started.elapsed(), out.stdout.len())
        };
        let _warm = load(&file);
        let (t, dom) = load(&file);
        let blank = tmp.path().join("blank.html");
        std::fs::write(&blank, "<!doctype html><title>x</title>").unwrap();
        let (base, _) = load(&blank);
        eprintln!(
            "chromium --dump-dom of the {name}: {:.2} s ({:.2} s for an empty page: {:.2} s for this one), DOM {:.2} MiB",
            t.as_secs_f64(),
            base.as_secs_f64(),
            (t.saturating_sub(base)).as_secs_f64(),
            dom as f64 / 1048576.0
        );
    }
}
