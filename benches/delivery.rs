//! Delivery at fleet scale: what an edge downloads for one change, with git delivery and with
//! one OCI artifact per cluster, and the time and memory of rendering and publishing the
//! artifacts of a whole fleet into a real registry (CNCF Distribution, from the e2e build
//! cache: `tests/e2e/build.sh`), with the real release binary.
//!
//! ```text
//! cargo bench --bench delivery                          # 1,000 and 10,000 clusters × 20 objects
//! cargo bench --bench delivery -- --sizes 1000 --objects 20
//! ```
//!
//! Bytes an edge downloads for one change:
//! - git delivery: Flux's source-controller clones the deploy branch at depth 1 on every new
//!   commit (go-git has no partial clone), so each edge downloads a depth-1 pack of the whole
//!   tree; measured as the pack `git clone --depth 1` receives over the git protocol.
//!   `GitRepository.spec.ignore` (which starmap sets) and `spec.sparseCheckout` only trim
//!   what source-controller stores and kustomize-controller reads afterwards, in the cluster.
//! - OCI delivery: only the edge whose artifact changed downloads anything: its manifest and
//!   its layer (the config blob, 2 bytes, once).

#[path = "../tests/common/registry.rs"]
#[allow(dead_code)]
mod registry;
#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::{git, inventory, measure, mib, specs, workloads, write_files};

struct Args {
    sizes: Vec<usize>,
    objects: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        sizes: vec![1_000, 10_000],
        objects: 20,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--sizes" => {
                a.sizes = value("--sizes")
                    .split(',')
                    .map(|s| s.parse().expect("a number"))
                    .collect()
            }
            "--objects" => a.objects = value("--objects").parse().expect("a number"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

/// The size of the pack a depth-1 clone of `branch` receives over the git protocol.
fn shallow_clone_bytes(repo: &Path, scratch: &Path) -> u64 {
    let dest = scratch.join("edge-clone");
    let _ = std::fs::remove_dir_all(&dest);
    let url = format!("file://{}", repo.display());
    let ok = Command::new("git")
        .args(["clone", "-q", "--bare", "--depth", "1", "--branch", "main", &url])
        .arg(&dest)
        .status()
        .unwrap()
        .success();
    assert!(ok, "git clone --depth 1");
    let packs = dest.join("objects/pack");
    let bytes = std::fs::read_dir(&packs)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "pack"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let _ = std::fs::remove_dir_all(&dest);
    bytes
}

/// `tar | gzip -6` of one cluster's directory at the tip: its own compressed size.
fn compressed_dir_bytes(repo: &Path, cluster: &str) -> u64 {
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "git -C '{}' archive main clusters/{cluster} | gzip -6 | wc -c",
            repo.display()
        ))
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

/// CPU seconds the registry process has used so far (user + system, from /proc).
fn registry_cpu_seconds(reg: &registry::Registry) -> f64 {
    let Some(pid) = reg.pid() else { return 0.0 };
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the command.
    (ticks(11) + ticks(12)) / 100.0
}

fn kib(bytes: u64) -> String {
    if bytes >= 1 << 20 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    }
}

fn main() {
    let args = parse_args();
    let Some(registry_bin) = registry::binary() else {
        println!("skipped: no `registry` binary (CNCF Distribution); run tests/e2e/build.sh to build it");
        return;
    };
    let starmap = env!("CARGO_BIN_EXE_starmap");
    let mut report = format!(
        "{} objects per cluster, {} cores\n\n",
        args.objects,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let mut bytes_table = String::from(
        "| clusters | git delivery: depth-1 clone per edge per change | edges downloading | OCI: manifest + layer | edges downloading | cluster's own directory (tar.gz) | OCI ÷ own directory |\n|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let mut time_table = String::from(
        "| clusters | registry | step | wall time | starmap peak RSS | artifacts pushed | registry CPU |\n|---:|---|---|---:|---:|---:|---:|\n",
    );
    let crane = registry::tool("crane");
    for &clusters in &args.sizes {
        let mut kinds = vec!["Distribution (filesystem)"];
        if crane.is_some() {
            kinds.push("crane (in memory)");
        }
        for kind in kinds {
            let tmp = tempfile::tempdir().unwrap();
            let reg = match kind {
                "crane (in memory)" => {
                    registry::Registry::start_crane(crane.as_ref().unwrap(), &tmp.path().join("crane"))
                }
                _ => registry::Registry::start(&registry_bin, &tmp.path().join("registry")),
            };
            let source = tmp.path().join("source");
            write_files(&source, &inventory(clusters, None));
            write_files(&source, &workloads(args.objects));
            let mut spec_files = specs();
            for (path, text) in &mut spec_files {
                if path == "starmap.yaml" {
                    let _ = writeln!(
                        text,
                        "oci: {{repository: {}/retail/fleet, insecure: true, concurrency: 32}}",
                        reg.host()
                    );
                }
            }
            write_files(&source, &spec_files);
            git(&source, &["init", "-q", "-b", "main"]);
            git(&source, &["add", "-A"]);
            git(&source, &["commit", "-q", "-m", "fleet"]);
            let deploy = tmp.path().join("deploy.git");
            git(tmp.path(), &["init", "-q", "--bare", "-b", "main", "deploy.git"]);
            let registry_cpu = || registry_cpu_seconds(&reg);
            let mut render = |label: &str| {
                let cpu_before = registry_cpu();
                let (t, rss, out) = measure(
                    Command::new(starmap)
                        .arg("render")
                        .arg("--source")
                        .arg(&source)
                        .arg("--deploy")
                        .arg(&deploy),
                );
                let cpu = registry_cpu() - cpu_before;
                let pushed = out
                    .lines()
                    .find_map(|l| l.strip_prefix("pushed ")?.split(' ').next()?.parse::<usize>().ok())
                    .unwrap_or(0);
                eprintln!(
                    "{clusters}, {kind}: {label}: {:.2} s, {}, {pushed} pushed, registry CPU {cpu:.1} s",
                    t.as_secs_f64(),
                    mib(rss)
                );
                let _ = writeln!(
                    time_table,
                    "| {clusters} | {kind} | {label} | {:.2} s | {} | {pushed} | {cpu:.1} s |",
                    t.as_secs_f64(),
                    mib(rss)
                );
                (t, pushed, out)
            };
            let full = render("full render + commit + push of every artifact");
            assert_eq!(full.1, clusters, "every cluster's artifact pushed: {}", full.2);
            let noop = render("nothing changed (no commit, no push)");
            assert_eq!(noop.1, 0);
            let changed = clusters / 2;
            write_files(&source, &inventory(clusters, Some(changed)));
            git(&source, &["commit", "-q", "-am", "one property"]);
            let one = render("one cluster's property changed");
            assert_eq!(one.1, 1, "exactly one artifact pushed: {}", one.2);

            if kind.starts_with("Distribution") {
                // What one change costs the edges.
                let git_bytes = shallow_clone_bytes(&deploy, tmp.path());
                let name = format!("store-{changed:05}");
                let repo = format!("retail/fleet/{name}");
                let (manifest, _) = reg.manifest(&repo, "latest").expect("the changed cluster's artifact");
                let manifest_bytes = serde_json::to_vec(&manifest).unwrap().len() as u64;
                let layer_bytes = manifest["layers"][0]["size"].as_u64().unwrap();
                let oci_bytes = manifest_bytes + layer_bytes;
                let own = compressed_dir_bytes(&deploy, &name);
                let _ = writeln!(
                    bytes_table,
                    "| {clusters} | {} | all {clusters} | {} | 1 | {} | {:.2}× |",
                    kib(git_bytes),
                    kib(oci_bytes),
                    kib(own),
                    oci_bytes as f64 / own as f64
                );
            }
            drop(reg);
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    report += "Bytes an edge downloads for one change (one cluster's property):\n\n";
    report += &bytes_table;
    report += "\nRender and publish (release binary; the registry on the same machine, its CPU shown):\n\n";
    report += &time_table;
    println!("{report}");
}
