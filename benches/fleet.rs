//! Fleet-scale benchmark: renders and commits N clusters × M objects with per-cluster
//! templates and patches, by running the real release binary, and reports wall time, peak
//! RSS and objects/s. Then the baseline a user would otherwise script: one kustomize overlay
//! per cluster built with `kubectl kustomize`.
//!
//! ```text
//! cargo bench --bench fleet                                  # 10,000 × 20, baseline 200
//! cargo bench --bench fleet -- --clusters 1000 --objects 20 --baseline 50
//! cargo bench --bench fleet -- --generate-only /tmp/fleet --clusters 500
//! cargo bench --bench fleet -- --clusters 100000 --baseline 20 --no-work-tree   # ~3 min
//! ```

#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use support::{REGIONS, git, inventory, measure, mib, specs, workloads, write_files};

struct Args {
    clusters: usize,
    objects: usize,
    baseline: usize,
    generate_only: Option<PathBuf>,
    /// Skip the work-tree rows (at 100,000 clusters they write 2.5 million files).
    work_tree: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        clusters: 10_000,
        objects: 20,
        baseline: 200,
        generate_only: None,
        work_tree: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--clusters" => a.clusters = value("--clusters").parse().expect("a number"),
            "--objects" => a.objects = value("--objects").parse().expect("a number"),
            "--baseline" => a.baseline = value("--baseline").parse().expect("a number"),
            "--generate-only" => a.generate_only = Some(PathBuf::from(value("--generate-only"))),
            "--no-work-tree" => a.work_tree = false,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn main() {
    let args = parse_args();
    if let Some(dir) = &args.generate_only {
        write_files(dir, &inventory(args.clusters, None));
        write_files(dir, &workloads(args.objects));
        write_files(dir, &specs());
        println!(
            "generated {} clusters × {} objects in {}",
            args.clusters,
            args.objects,
            dir.display()
        );
        return;
    }
    let starmap = env!("CARGO_BIN_EXE_starmap");
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    write_files(&source, &inventory(args.clusters, None));
    write_files(&source, &workloads(args.objects));
    write_files(&source, &specs());
    git(&source, &["init", "-q", "-b", "main"]);
    git(&source, &["add", "-A"]);
    git(&source, &["commit", "-q", "-m", "fleet"]);
    let deploy = tmp.path().join("deploy.git");
    git(tmp.path(), &["init", "-q", "--bare", "-b", "main", "deploy.git"]);

    // A local deploy repo with a work tree, as a user who renders into `./deploy` has.
    let work_tree = tmp.path().join("deploy");
    git(tmp.path(), &["init", "-q", "-b", "main", "deploy"]);

    let render_into = |label: &str, deploy: &std::path::Path| {
        let (t, rss, out) = measure(
            Command::new(starmap)
                .arg("render")
                .arg("--source")
                .arg(&source)
                .arg("--deploy")
                .arg(deploy),
        );
        eprintln!(
            "{label}: {:.2} s, {} — {}",
            t.as_secs_f64(),
            mib(rss),
            out.lines().last().unwrap_or("")
        );
        (t, rss, out)
    };
    let render = |label: &str| render_into(label, &deploy);
    let total_objects = args.clusters * args.objects;
    let full = render("full render + commit");
    let full_wt = args
        .work_tree
        .then(|| render_into("full render + commit, work tree", &work_tree));
    let noop = render("nothing changed");
    assert!(noop.2.contains("no changes"), "second render must make no commit");
    let noop_wt = args
        .work_tree
        .then(|| render_into("nothing changed, work tree", &work_tree));
    if let Some(noop_wt) = &noop_wt {
        assert!(noop_wt.2.contains("no changes"), "second render must make no commit");
    }
    write_files(&source, &inventory(args.clusters, Some(args.clusters / 2)));
    git(&source, &["commit", "-q", "-am", "one property"]);
    let one = render("one cluster's property changed");
    assert!(
        one.2.contains("1 cluster changed"),
        "only one cluster must change: {}",
        one.2
    );
    let one_wt = args
        .work_tree
        .then(|| render_into("one cluster's property changed, work tree", &work_tree));
    if let Some(one_wt) = &one_wt {
        assert!(one_wt.2.contains("1 cluster changed"), "{}", one_wt.2);
        let status = Command::new("git")
            .args(["status", "--porcelain"])
            .current_dir(&work_tree)
            .output()
            .unwrap();
        assert!(
            status.stdout.is_empty(),
            "the work tree must equal the commit: {}",
            String::from_utf8_lossy(&status.stdout)
        );
    }

    // Rollout waves: ring 0 (a tenth of the fleet) first, then the rest. Adding the rollout
    // is not a new revision; a new image is, and reaches ring 0 only; with the rollout in
    // progress, a render with nothing new reads the (absent) status and makes no commit.
    let placement = specs()
        .into_iter()
        .find(|(p, _)| p == "placements/all.yaml")
        .map(|(p, text)| {
            (
                p,
                format!("{text}  rollout:\n    waves:\n    - name: ring-0\n      clusterSelector: {{matchLabels: {{ring: \"0\"}}}}\n    - name: rest\n"),
            )
        })
        .expect("the placement");
    write_files(&source, &[placement]);
    git(&source, &["commit", "-q", "-am", "rollout"]);
    let gated = render("rollout added (no new revision)");
    let bumped: Vec<(String, String)> = workloads(args.objects)
        .into_iter()
        .map(|(p, t)| (p, t.replace("podinfo:6.14.1", "podinfo:6.14.2")))
        .collect();
    write_files(&source, &bumped);
    git(&source, &["commit", "-q", "-am", "new image"]);
    let wave = render("new revision: wave ring-0 gets it");
    let ring0 = args.clusters.div_ceil(10);
    assert!(
        wave.2.contains(&format!("{ring0} clusters changed")),
        "only ring 0 must change: {}",
        wave.2
    );
    let waiting = render("rollout in progress, nothing new (no commit)");
    assert!(waiting.2.contains("no changes"), "{}", waiting.2);

    // Baseline: a kustomize overlay per cluster (the same objects, replicas and a label
    // patched per cluster), built one by one with `kubectl kustomize` as a script would.
    let base = tmp.path().join("kustomize");
    let mut files = Vec::new();
    let mut resources = String::new();
    for (rel, text) in workloads(args.objects) {
        let plain = text
            .replace("  annotations:\n    starmap.dev/template: \"true\"\n", "")
            .replace("\"{{ cluster.properties.replicas }}\"", "1");
        let name = rel.replace('/', "-");
        let _ = writeln!(resources, "- {name}");
        files.push((format!("base/{name}"), plain));
    }
    files.push(("base/kustomization.yaml".into(), format!("resources:\n{resources}")));
    for i in 0..args.baseline {
        files.push((
            format!("overlays/store-{i:05}/kustomization.yaml"),
            format!(
                "resources:\n- ../../base\nlabels:\n- pairs:\n    region: {}\npatches:\n- target:\n    kind: Deployment\n  patch: |\n    - op: replace\n      path: /spec/replicas\n      value: {}\n",
                REGIONS[i % 4],
                1 + i % 3
            ),
        ));
    }
    write_files(&base, &files);
    let started = Instant::now();
    for i in 0..args.baseline {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(base.join(format!("overlays/store-{i:05}")))
            .output()
            .expect("kubectl runs");
        assert!(
            out.status.success(),
            "kubectl kustomize failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let baseline = started.elapsed();
    let per_cluster_kustomize = baseline.as_secs_f64() / args.baseline as f64;
    let per_cluster_starmap = full.0.as_secs_f64() / args.clusters as f64;

    let row = |what: &str, r: &(Duration, u64, String), objects: usize| {
        format!(
            "| {what} | {:.2} s | {} | {} |\n",
            r.0.as_secs_f64(),
            mib(r.1),
            if objects > 0 {
                format!("{:.0}", objects as f64 / r.0.as_secs_f64())
            } else {
                "–".into()
            }
        )
    };
    let mut table = format!(
        "{} clusters × {} objects ({} objects), {} cores\n\n| step | wall time | peak RSS | objects/s |\n|---|---:|---:|---:|\n",
        args.clusters,
        args.objects,
        total_objects,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    table += &row("full render + commit into an empty deploy repo", &full, total_objects);
    table += &row("again, nothing changed (no commit)", &noop, 0);
    table += &row("one cluster's property changed", &one, 0);
    if let (Some(full_wt), Some(noop_wt), Some(one_wt)) = (&full_wt, &noop_wt, &one_wt) {
        table += &row(
            "full render + commit, local deploy repo with a work tree",
            full_wt,
            total_objects,
        );
        table += &row("again, nothing changed, work tree", noop_wt, 0);
        table += &row("one cluster's property changed, work tree", one_wt, 0);
    } else {
        table += "| work-tree rows | skipped (`--no-work-tree`) | | |\n";
    }
    table += &row("a rollout added to the placement (state file only)", &gated, 0);
    table += &row(
        &format!("new revision, first wave ({ring0} clusters) gets it"),
        &wave,
        0,
    );
    table += &row("rollout in progress, nothing new (gate read, no commit)", &waiting, 0);
    let _ = writeln!(
        table,
        "| baseline: `kubectl kustomize` of one overlay per cluster, {} clusters | {:.2} s | – | {:.0} |",
        args.baseline,
        baseline.as_secs_f64(),
        (args.baseline * args.objects) as f64 / baseline.as_secs_f64()
    );
    let _ = writeln!(
        table,
        "\nPer cluster: starmap {:.2} ms, kubectl kustomize {:.1} ms: starmap is {:.0}× faster per cluster.",
        per_cluster_starmap * 1000.0,
        per_cluster_kustomize * 1000.0,
        per_cluster_kustomize / per_cluster_starmap
    );
    println!("{table}");
}
