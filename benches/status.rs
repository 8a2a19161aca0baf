//! Status summary benchmark: N clusters × M objects of status (`status/clusters/*.yaml`),
//! three StatusSummary rules and the default placement summaries, through the library.
//! Reports wall times of reading and parsing the status files, of summarizing them, and the
//! peak RSS (`VmHWM`). The target (issue 5): 10,000 × 20 with three rules in ≤ 2 s and
//! ≤ 1 GiB.
//!
//! ```text
//! cargo bench --bench status                              # 10,000 × 20
//! cargo bench --bench status -- --clusters 1000 --objects 20 --runs 5
//! cargo bench --bench status -- --no-compare               # skip the general-parser comparison
//! ```
//!
//! The rules: ready replicas of Deployments per region (groupBy `cluster.labels.region`,
//! COUNT and SUM of `status.readyReplicas`); every object that is not Healthy (a filter on
//! `health` and a `select` with a limit); and ready replicas per `cluster.properties.replicas`
//! (AVG, MIN, MAX). About 5% of the objects are not Healthy.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use starmap::error::Location;
use starmap::formats::status::{ClusterStatus, ObjectStatus, parse_cluster_statuses};
use starmap::health::Health;
use starmap::model::{Cluster, Placement};
use starmap::spec::{ClusterSpec, LabelSelector, ObjectTest, PlacementSpec, StatusSummary, StatusSummarySpec};
use starmap::summary::{Inputs, Summaries, no_objects, summarize};

struct Args {
    clusters: usize,
    objects: usize,
    runs: usize,
    /// Also compare with the general parser (slow: ~10 s more at 10,000 clusters).
    compare: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        clusters: 10_000,
        objects: 20,
        runs: 3,
        compare: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--clusters" => a.clusters = value("--clusters").parse().expect("a number"),
            "--objects" => a.objects = value("--objects").parse().expect("a number"),
            "--runs" => a.runs = value("--runs").parse().expect("a number"),
            "--no-compare" => a.compare = false,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

const REGIONS: [&str; 4] = ["us-east", "us-west", "eu-central", "ap-southeast"];

fn cluster_name(i: usize) -> String {
    format!("store-{i:05}")
}

fn inventory(n: usize) -> Vec<Cluster> {
    (0..n)
        .map(|i| {
            let name = cluster_name(i);
            let labels = BTreeMap::from([
                ("region".to_string(), REGIONS[i % REGIONS.len()].to_string()),
                ("tier".to_string(), "edge".to_string()),
                ("ring".to_string(), (i % 10).to_string()),
                ("starmap.dev/cluster".to_string(), name.clone()),
            ]);
            let properties = json!({
                "storeId": format!("{i:05}"),
                "replicas": 1 + i % 3,
                "ingress": {"host": format!("{name}.example.com")},
            });
            Cluster {
                name,
                labels,
                annotations: BTreeMap::new(),
                spec: ClusterSpec {
                    properties: properties.as_object().cloned().unwrap_or_default(),
                    server: None,
                    kubeconfig_context: None,
                },
                location: Location::new("inventory.yaml", 1),
            }
        })
        .collect()
}

fn placement() -> Placement {
    let test = ObjectTest {
        paths: Some(vec!["workloads/**".into()]),
        ..Default::default()
    };
    Placement {
        name: "fleet".into(),
        spec: PlacementSpec {
            cluster_selectors: vec![LabelSelector::default()],
            clusters: vec![],
            workloads: vec![test.clone()],
            rollout: None,
            suspend: false,
        },
        workloads: vec![test.compile().expect("valid test")],
        location: Location::new("placements/fleet.yaml", 1),
    }
}

fn rules() -> Vec<StatusSummary> {
    let specs = [
        (
            "ready-by-region",
            json!({
                "placement": "fleet",
                "targets": [{"kinds": ["Deployment"]}],
                "groupBy": [{"name": "region", "expr": "cluster.labels.region"}],
                "aggregate": [{"name": "deployments", "op": "COUNT"},
                              {"name": "ready", "op": "SUM", "expr": "status.readyReplicas"}],
            }),
        ),
        (
            "not-healthy",
            json!({
                "placement": "fleet",
                "filter": "health != \"Healthy\"",
                "select": [{"name": "health", "expr": "health"},
                           {"name": "store", "expr": "cluster.properties.storeId"},
                           {"name": "ready", "expr": "has(status.readyReplicas) ? status.readyReplicas : 0"}],
                "limit": 100,
            }),
        ),
        (
            "ready-by-replicas",
            json!({
                "placement": "fleet",
                "targets": [{"kinds": ["Deployment"]}],
                "groupBy": [{"name": "replicas", "expr": "cluster.properties.replicas"}],
                "aggregate": [{"name": "avg", "op": "AVG", "expr": "status.readyReplicas"},
                              {"name": "min", "op": "MIN", "expr": "status.readyReplicas"},
                              {"name": "max", "op": "MAX", "expr": "status.readyReplicas"}],
            }),
        ),
    ];
    specs
        .into_iter()
        .map(|(name, spec)| {
            let spec: StatusSummarySpec = serde_json::from_value(spec).expect("a spec");
            StatusSummary::compile(name, &spec, Location::new("summaries.yaml", 1)).expect("valid rule")
        })
        .collect()
}

/// A cheap deterministic hash, to spread unhealthy objects over the fleet.
fn mix(a: usize, b: usize) -> u64 {
    let mut x = (a as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (b as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    x ^= x >> 31;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^ (x >> 29)
}

fn status(i: usize, objects: usize) -> ClusterStatus {
    let replicas = 1 + i % 3;
    let objects = (0..objects)
        .map(|j| {
            let app = format!("app-{:02}", j / 3);
            let roll = mix(i, j) % 100;
            let health = match roll {
                0..=2 => Health::Progressing,
                3 => Health::Degraded,
                4 => Health::Missing,
                _ => Health::Healthy,
            };
            let (api_version, kind, name, status) = match j % 3 {
                0 => {
                    let ready = if health == Health::Healthy {
                        replicas
                    } else {
                        replicas - 1
                    };
                    let status = json!({
                        "observedGeneration": 3,
                        "replicas": replicas,
                        "updatedReplicas": replicas,
                        "readyReplicas": ready,
                        "availableReplicas": ready,
                        "conditions": [
                            {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable",
                             "message": "Deployment has minimum availability.",
                             "lastTransitionTime": "2026-11-01T10:00:00Z"},
                            {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable",
                             "message": format!("ReplicaSet \"{app}-5d8f9c7b6\" has successfully progressed."),
                             "lastTransitionTime": "2026-11-01T10:00:00Z"},
                        ],
                    });
                    ("apps/v1", "Deployment", app.clone(), Some(status))
                }
                1 => ("v1", "ConfigMap", format!("{app}-config"), None),
                _ => ("v1", "Service", app.clone(), Some(json!({"loadBalancer": {}}))),
            };
            let message = match health {
                Health::Healthy => String::new(),
                h => format!("{kind} {name} is {h}"),
            };
            ObjectStatus {
                api_version: api_version.into(),
                kind: kind.into(),
                namespace: Some(app),
                name,
                placements: vec!["fleet".into()],
                health: if status.is_none() && health != Health::Missing {
                    Health::Healthy
                } else {
                    health
                },
                message,
                applied: roll != 7,
                generation: Some(3),
                observed_generation: Some(3),
                status,
            }
        })
        .collect();
    ClusterStatus {
        cluster: cluster_name(i),
        reachable: !i.is_multiple_of(500),
        stale: i.is_multiple_of(500),
        last_seen: Some("2026-11-02T10:00:00Z".into()),
        error: i.is_multiple_of(500).then(|| "dial tcp: i/o timeout".to_string()),
        source: "kubeconfig".into(),
        deploy_commit: Some("4b825dc642cb6eb9a060e54bf8d69288fbee4904".into()),
        applied_revision: Some("main@sha1:4b825dc642cb6eb9a060e54bf8d69288fbee4904".into()),
        current: !i.is_multiple_of(97),
        sync: None,
        objects,
    }
}

/// Peak resident set size so far, from /proc/self/status.
fn vm_hwm() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l["VmHWM:".len()..].trim().to_string())
        })
        .unwrap_or_else(|| "?".into())
}

fn secs(d: Duration) -> String {
    format!("{:.3} s", d.as_secs_f64())
}

fn write_status_files(dir: &Path, clusters: usize, objects: usize) -> u64 {
    use rayon::prelude::*;
    (0..clusters)
        .into_par_iter()
        .map(|i| {
            let value = serde_json::to_value(status(i, objects)).expect("serializable");
            let text = starmap::yaml::to_yaml_string(&value);
            std::fs::write(dir.join(format!("{}.yaml", cluster_name(i))), &text).expect("write");
            text.len() as u64
        })
        .sum()
}

fn read_status_files(dir: &Path) -> Vec<(String, String)> {
    use rayon::prelude::*;
    let mut paths: Vec<_> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .collect();
    paths.sort();
    paths
        .par_iter()
        .map(|p| {
            let shown = format!(
                "status/clusters/{}",
                p.file_name().unwrap_or_default().to_string_lossy()
            );
            (shown, std::fs::read_to_string(p).expect("read"))
        })
        .collect()
}

/// Parsing with the general parser (`crate::yaml`: every node's line kept, then typed
/// reading), which `parse_cluster_status` falls back to, over all files in parallel; and on
/// the first `n` files, one thread: that parser, serde-saphyr reading `ClusterStatus`
/// directly, and `parse_cluster_status` (the fast reader of the emitter's style).
fn parse_compare(files: &[(String, String)], n: usize) {
    use rayon::prelude::*;
    let t = Instant::now();
    let all: Vec<ClusterStatus> = files
        .par_iter()
        .map(|(p, text)| {
            let docs = starmap::yaml::parse_documents(text, p).expect("parses");
            starmap::yaml::from_doc(&docs[0], p).expect("typed")
        })
        .collect();
    println!(
        "general parser (crate::yaml), all {} files, {} threads: {}",
        all.len(),
        rayon::current_num_threads(),
        secs(t.elapsed())
    );
    drop(all);
    let sample = &files[..n.min(files.len())];
    let t = Instant::now();
    for (p, text) in sample {
        let docs = starmap::yaml::parse_documents(text, p).expect("parses");
        let _: ClusterStatus = starmap::yaml::from_doc(&docs[0], p).expect("typed");
    }
    let t_general = t.elapsed();
    let t = Instant::now();
    for (_, text) in sample {
        let _: ClusterStatus = serde_saphyr::from_str(text).expect("typed");
    }
    let t_direct = t.elapsed();
    let t = Instant::now();
    for (p, text) in sample {
        let _ = starmap::formats::status::parse_cluster_status(text, p).expect("typed");
    }
    let t_fast = t.elapsed();
    println!(
        "  per file, {} files, 1 thread: crate::yaml {:.0} µs, serde_saphyr::from_str {:.0} µs, parse_cluster_status {:.0} µs",
        sample.len(),
        t_general.as_secs_f64() * 1e6 / sample.len() as f64,
        t_direct.as_secs_f64() * 1e6 / sample.len() as f64,
        t_fast.as_secs_f64() * 1e6 / sample.len() as f64,
    );
}

fn check(out: &Summaries, clusters: usize) {
    let by_region = &out.summaries[1];
    assert_eq!(by_region.name, "ready-by-region");
    assert_eq!(by_region.rows.len(), REGIONS.len().min(clusters));
    assert_eq!(by_region.error_count, 0);
    let not_healthy = &out.summaries[0];
    assert!(not_healthy.rows.len() <= 100);
    assert!(not_healthy.matched > 0);
    assert_eq!(out.placements[0].clusters, clusters);
}

fn main() {
    let args = parse_args();
    let threads = rayon::current_num_threads();
    println!(
        "status summary benchmark: {} clusters × {} objects, 3 rules, {threads} threads",
        args.clusters, args.objects
    );
    let clusters = inventory(args.clusters);
    let placements = [placement()];
    let summaries = rules();
    let inputs = Inputs {
        clusters: &clusters,
        placements: &placements,
        summaries: &summaries,
        workloads: &[],
    };

    let tmp = tempfile::tempdir().expect("temp dir");
    let t = Instant::now();
    let bytes = write_status_files(tmp.path(), args.clusters, args.objects);
    println!(
        "generated and wrote {} status files ({:.1} MiB of YAML) in {}",
        args.clusters,
        bytes as f64 / 1048576.0,
        secs(t.elapsed())
    );
    println!("peak RSS after generating: {}", vm_hwm());

    // Offline: read and parse the status files, then summarize.
    let t = Instant::now();
    let files = read_status_files(tmp.path());
    let t_read = t.elapsed();
    let statuses = parse_cluster_statuses(&files).expect("status files parse");
    let t_parse = t.elapsed() - t_read;
    drop(files);
    let t_sum = Instant::now();
    let out = summarize(&inputs, &statuses, &no_objects).expect("summarize");
    let t_summarize = t_sum.elapsed();
    check(&out, args.clusters);
    println!(
        "offline (files → summaries): read {}, parse (parse_cluster_statuses) {}, summarize {}, total {}",
        secs(t_read),
        secs(t_parse),
        secs(t_summarize),
        secs(t.elapsed())
    );
    println!("peak RSS after offline run: {}", vm_hwm());

    // In memory: the same statuses, summarized again (best and median of the runs).
    let mut times = Vec::new();
    for _ in 0..args.runs.max(1) {
        let t = Instant::now();
        let again = summarize(&inputs, &statuses, &no_objects).expect("summarize");
        times.push(t.elapsed());
        assert!(again == out, "summaries are deterministic");
    }
    times.sort();
    println!(
        "in memory (3 rules + default placement summary): best {}, median {} over {} runs",
        secs(times[0]),
        secs(times[times.len() / 2]),
        times.len()
    );
    for (k, name) in ["not-healthy", "ready-by-region", "ready-by-replicas"]
        .iter()
        .enumerate()
    {
        let one = [summaries[[1, 0, 2][k]].clone()];
        let inputs_one = Inputs {
            summaries: &one,
            ..inputs
        };
        let t = Instant::now();
        let r = summarize(&inputs_one, &statuses, &no_objects).expect("summarize");
        println!(
            "  rule {name}: {} ({} rows considered, {} matched)",
            secs(t.elapsed()),
            r.summaries[0].objects,
            r.summaries[0].matched
        );
    }
    for s in &out.summaries {
        let shown: Vec<String> = s
            .rows
            .iter()
            .take(4)
            .map(|r| Value::Array(r.clone()).to_string())
            .collect();
        println!(
            "  {}: {} rows (+{} truncated), first: {}",
            s.name,
            s.rows.len(),
            s.truncated,
            shown.join(" ")
        );
    }
    let p = &out.placements[0];
    println!(
        "  placement {}: {} clusters, health {:?}, current {}, stale {}",
        p.placement, p.clusters, p.health, p.current, p.stale
    );
    println!("peak RSS (VmHWM): {}", vm_hwm());
    drop(statuses);
    if args.compare {
        parse_compare(&read_status_files(tmp.path()), 1000);
        println!("peak RSS after the parser comparison: {}", vm_hwm());
    }
}
