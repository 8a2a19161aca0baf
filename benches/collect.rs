//! Status collection benchmark: one status round over N kubeconfig contexts (default 10,000),
//! 20 objects each, served by the real kube-apiservers of the e2e fleet, several rounds in a
//! row as the controller runs them.
//!
//! ```text
//! STARMAP_E2E_RUN=/tmp/starmap-e2e-collect STARMAP_E2E_PORT_BASE=24000 STARMAP_E2E_NO_FLUX=1 \
//!     tests/e2e/up.sh 2
//! STARMAP_E2E_KUBECONFIG=/tmp/starmap-e2e-collect/kubeconfig cargo bench --bench collect
//! STARMAP_E2E_KUBECONFIG=... cargo bench --bench collect -- --contexts 2000 --rounds 2 --fresh
//! ```
//!
//! Every context has its own `clusters` and `users` entries (named like a store, with the
//! certificates of one of the fleet's API servers), so the kubeconfig has the size of a real
//! fleet's and every context is its own client with its own TLS connections. The API servers
//! run on the same 2 cores as starmap: their CPU is part of each number.
//!
//! Modes: by default one [`Connections`] is kept across the rounds, as `starmap run` does;
//! `--fresh` starts each round with new clients, as `starmap status collect` in CI does;
//! `--list-at 0` reads every object with its own GET (no list per kind and namespace).
//! Without `STARMAP_E2E_KUBECONFIG` it prints that it was skipped and exits 0.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Instant;

use serde_json::{Value, json};
use starmap::formats::index::IndexEntry;
use starmap::health::Health;
use starmap::status::collect::{ClusterOutcome, Connections, Options, Target, collect_with};

const NAMESPACE: &str = "collect-bench";

struct Args {
    contexts: usize,
    rounds: usize,
    concurrency: usize,
    object_concurrency: usize,
    fresh: bool,
    list_at: Option<usize>,
}

fn parse_args() -> Args {
    let mut a = Args {
        contexts: 10_000,
        rounds: 3,
        concurrency: starmap::status::collect::DEFAULT_CONCURRENCY,
        object_concurrency: starmap::status::collect::DEFAULT_OBJECT_CONCURRENCY,
        fresh: false,
        list_at: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> usize {
            it.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("{name} needs a number"))
        };
        match arg.as_str() {
            "--contexts" => a.contexts = number("--contexts"),
            "--rounds" => a.rounds = number("--rounds"),
            "--concurrency" => a.concurrency = number("--concurrency"),
            "--object-concurrency" => a.object_concurrency = number("--object-concurrency"),
            "--list-at" => a.list_at = Some(number("--list-at")),
            "--fresh" => a.fresh = true,
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    a
}

fn kubectl(kubeconfig: &str, context: &str, args: &[&str], stdin: Option<&str>) {
    let mut child = Command::new("kubectl")
        .args(["--kubeconfig", kubeconfig, "--context", context])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl runs");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or("").as_bytes()).expect("kubectl reads");
    drop(input);
    let out = child.wait_with_output().expect("kubectl ends");
    assert!(
        out.status.success(),
        "kubectl --context {context} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// 5 Deployments, 5 Services and 10 ConfigMaps in one namespace, and their index entries.
fn objects() -> (String, Vec<IndexEntry>) {
    let mut yaml = format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {NAMESPACE}}}\n");
    let mut entries = vec![];
    for i in 0..5 {
        yaml += &format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: d-{i}, namespace: {NAMESPACE}}}\n\
             spec: {{replicas: 1, selector: {{matchLabels: {{app: d-{i}}}}}, template: {{metadata: {{labels: {{app: d-{i}}}}}, \
             spec: {{containers: [{{name: c, image: nginx}}]}}}}}}\n\
             ---\napiVersion: v1\nkind: Service\nmetadata: {{name: s-{i}, namespace: {NAMESPACE}}}\n\
             spec: {{selector: {{app: d-{i}}}, ports: [{{port: 80}}]}}\n"
        );
        entries.push(IndexEntry::new(
            "apps/v1",
            "Deployment",
            Some(NAMESPACE),
            &format!("d-{i}"),
        ));
        entries.push(IndexEntry::new("v1", "Service", Some(NAMESPACE), &format!("s-{i}")));
    }
    for i in 0..10 {
        yaml += &format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: cm-{i}, namespace: {NAMESPACE}}}\ndata: {{i: \"{i}\"}}\n"
        );
        entries.push(IndexEntry::new("v1", "ConfigMap", Some(NAMESPACE), &format!("cm-{i}")));
    }
    (yaml, entries)
}

/// A kubeconfig of `n` contexts `store-NNNNN`, each with its own cluster and user entries,
/// copied from the fleet's contexts in turn.
fn fleet_kubeconfig(doc: &Value, fleet_contexts: &[String], n: usize) -> Value {
    let find = |list: &str, name: &str| -> Value {
        doc[list]
            .as_array()
            .and_then(|l| l.iter().find(|e| e["name"] == name))
            .unwrap_or_else(|| panic!("no {list} entry {name:?} in the kubeconfig"))
            .clone()
    };
    let (mut clusters, mut users, mut contexts) = (vec![], vec![], vec![]);
    for i in 0..n {
        let name = format!("store-{i:05}");
        let of = find("contexts", &fleet_contexts[i % fleet_contexts.len()]);
        let mut cluster = find("clusters", of["context"]["cluster"].as_str().expect("cluster"));
        let mut user = find("users", of["context"]["user"].as_str().expect("user"));
        cluster["name"] = json!(name);
        user["name"] = json!(name);
        clusters.push(cluster);
        users.push(user);
        contexts.push(json!({"name": name, "context": {"cluster": name, "user": name}}));
    }
    json!({"apiVersion": "v1", "kind": "Config", "clusters": clusters, "users": users, "contexts": contexts})
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn open_files() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

fn main() {
    let args = parse_args();
    let Some(path) = std::env::var_os("STARMAP_E2E_KUBECONFIG") else {
        eprintln!(
            "skipped: no real fleet; start one with `STARMAP_E2E_NO_FLUX=1 tests/e2e/up.sh 2` and set \
             STARMAP_E2E_KUBECONFIG (see the head of benches/collect.rs)"
        );
        return;
    };
    let path = path.to_str().expect("a UTF-8 path").to_string();
    let text = std::fs::read_to_string(&path).expect("the fleet's kubeconfig is readable");
    let doc = starmap::yaml::parse_documents(&text, &path)
        .expect("the kubeconfig parses")
        .remove(0)
        .value;
    let mut fleet_contexts: Vec<String> = doc["contexts"]
        .as_array()
        .expect("contexts")
        .iter()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect();
    fleet_contexts.sort();

    let (yaml, entries) = objects();
    for c in &fleet_contexts {
        let apply = ["apply", "--server-side", "--field-manager=collect-bench", "-f", "-"];
        kubectl(&path, c, &apply, Some(&yaml));
        for i in 0..5 {
            let d = format!("deployment/d-{i}");
            kubectl(
                &path,
                c,
                &["rollout", "status", "-n", NAMESPACE, &d, "--timeout=120s"],
                None,
            );
        }
    }

    let kubeconfig = tempfile::NamedTempFile::new().expect("a temporary file");
    let generated = fleet_kubeconfig(&doc, &fleet_contexts, args.contexts);
    std::fs::write(kubeconfig.path(), starmap::yaml::to_yaml_string(&generated)).expect("kubeconfig written");
    let size = std::fs::metadata(kubeconfig.path()).map_or(0, |m| m.len());
    let targets: Vec<Target> = (0..args.contexts)
        .map(|i| Target::new(format!("store-{i:05}"), entries.clone()))
        .collect();
    let mut options = Options {
        kubeconfig: Some(kubeconfig.path().to_path_buf()),
        concurrency: args.concurrency,
        object_concurrency: args.object_concurrency,
        flux: None,
        ..Options::default()
    };
    if let Some(n) = args.list_at {
        options.list_at = n;
    }
    println!(
        "{} contexts ({} API servers, kubeconfig {:.1} MiB) x {} objects; concurrency {} x {} per cluster; \
         list from {} objects of a kind; {}",
        args.contexts,
        fleet_contexts.len(),
        size as f64 / 1048576.0,
        entries.len(),
        args.concurrency,
        args.object_concurrency,
        options.list_at,
        if args.fresh {
            "new clients every round"
        } else {
            "clients kept across rounds"
        }
    );

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let mut connections = Connections::default();
    for round in 1..=args.rounds {
        if args.fresh {
            connections = Connections::default();
        }
        let (built, requests) = (connections.built(), connections.requests());
        let started = Instant::now();
        let outcomes = runtime
            .block_on(collect_with(targets.clone(), &options, &connections))
            .expect("the kubeconfig reads");
        let elapsed = started.elapsed().as_secs_f64();
        let unreachable: Vec<&ClusterOutcome> = outcomes.iter().filter(|o| o.seen().is_none()).collect();
        let healthy = outcomes
            .iter()
            .filter_map(ClusterOutcome::seen)
            .flat_map(|s| &s.objects)
            .filter(|o| o.health == Health::Healthy)
            .count();
        println!(
            "round {round}: {elapsed:.2} s ({:.0} clusters/s); {healthy} of {} objects Healthy, {} unreachable; \
             {} clients built, {} requests; peak RSS {:.0} MiB, {} open files",
            args.contexts as f64 / elapsed,
            args.contexts * entries.len(),
            unreachable.len(),
            connections.built() - built,
            connections.requests() - requests,
            peak_rss_mib(),
            open_files()
        );
        if let Some(first) = unreachable.first() {
            println!(
                "  first unreachable: {} {}",
                first.cluster(),
                first.error().unwrap_or("")
            );
        }
        assert_eq!(
            healthy,
            args.contexts * entries.len(),
            "every object is read and Healthy"
        );
    }
}
