//! Helm at fleet scale: a chart rendered with per-cluster values (every cluster's values
//! differ), by the real release binary and the real `helm`, through the build cache. Reports
//! the cold render (with each degree of parallelism tried), the render with nothing new, one
//! cluster's values changed, and the cold render with the cache off.
//!
//! ```text
//! cargo bench --bench helm                       # 1,000 clusters, 1,000 distinct value sets
//! cargo bench --bench helm -- --clusters 200
//! ```
//!
//! `helm` is taken from STARMAP_HELM, PATH, or `~/.cache/starmap-tools/bin` (where `.ci/run`
//! installs it); `tools/helm-library` from STARMAP_HELM_LIBRARY or the same directory (where
//! `.ci/run` builds it): with it, the cold render with Helm's library in one process is
//! measured too, and its output compared with helm's.

#[path = "support/mod.rs"]
mod support;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::{REGIONS, git, measure, mib, write_files};

fn helm() -> PathBuf {
    if let Some(h) = std::env::var_os("STARMAP_HELM") {
        return h.into();
    }
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("helm"))
            .find(|p| p.is_file())
    });
    let cached = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/starmap-tools/bin/helm"));
    on_path
        .or(cached.filter(|p| p.is_file()))
        .expect("the Helm benchmark needs helm (bash .ci/run installs it into ~/.cache/starmap-tools/bin)")
}

/// The source: N clusters, each with its own store id (so N distinct value sets), and one chart.
fn source(clusters: usize, changed: Option<usize>) -> Vec<(String, String)> {
    let mut inventory = String::new();
    for i in 0..clusters {
        let replicas = if Some(i) == changed { 7 } else { 1 + i % 3 };
        let _ = write!(
            inventory,
            "---\napiVersion: starmap.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: store-{i:05}\n  labels: {{region: {}}}\nspec:\n  properties: {{storeId: \"{i:05}\", replicas: {replicas}}}\n",
            REGIONS[i % REGIONS.len()]
        );
    }
    let chart = "charts/store-app";
    vec![
        ("inventory/clusters.yaml".into(), inventory),
        ("placements/store-app.yaml".into(), format!("apiVersion: starmap.dev/v1alpha1\nkind: Placement\nmetadata:\n  name: store-app\nspec:\n  clusterSelectors:\n  - matchExpressions:\n    - {{key: region, operator: Exists}}\n  workloads:\n  - paths: [\"{chart}\"]\n")),
        (format!("{chart}/Chart.yaml"), "apiVersion: v2\nname: store-app\nversion: 0.1.0\nappVersion: \"6.14.1\"\nannotations:\n  starmap.dev/release-name: store-app\n  starmap.dev/namespace: store\n".into()),
        (format!("{chart}/values.yaml"), "replicas: 1\nstoreId: \"0\"\nregion: none\nimage: ghcr.io/stefanprodan/podinfo:6.14.1\n".into()),
        (format!("{chart}/starmap-values.yaml"), "replicas: \"{{ cluster.properties.replicas }}\"\nstoreId: \"{{ cluster.properties.storeId }}\"\nregion: \"{{ cluster.labels.region }}\"\n".into()),
        (format!("{chart}/templates/deployment.yaml"), "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n  namespace: {{ .Release.Namespace }}\n  labels: {app: {{ .Release.Name }}, region: {{ .Values.region | quote }}}\nspec:\n  replicas: {{ .Values.replicas }}\n  selector:\n    matchLabels: {app: {{ .Release.Name }}}\n  template:\n    metadata:\n      labels: {app: {{ .Release.Name }}}\n    spec:\n      containers:\n      - name: app\n        image: {{ .Values.image }}\n        env:\n        - {name: STORE_ID, value: {{ .Values.storeId | quote }}}\n".into()),
        (format!("{chart}/templates/configmap.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-config\n  namespace: {{ .Release.Namespace }}\ndata:\n  store: {{ .Values.storeId | quote }}\n  region: {{ .Values.region | quote }}\n".into()),
        (format!("{chart}/templates/service.yaml"), "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\n  namespace: {{ .Release.Namespace }}\nspec:\n  selector: {app: {{ .Release.Name }}}\n  ports:\n  - port: 80\n".into()),
    ]
}

fn main() {
    let mut clusters = 1000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--clusters" => clusters = args.next().and_then(|v| v.parse().ok()).expect("--clusters N"),
            "--bench" => {}
            other => panic!("unknown argument {other}"),
        }
    }
    let starmap = env!("CARGO_BIN_EXE_starmap");
    let helm = helm();
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("source");
    write_files(&src, &source(clusters, None));
    git(&src, &["init", "-q", "-b", "main"]);
    git(&src, &["add", "-A"]);
    git(&src, &["commit", "-q", "-m", "fleet"]);

    let fresh_deploy = |name: &str| {
        git(tmp.path(), &["init", "-q", "--bare", "-b", "main", name]);
        tmp.path().join(name)
    };
    let library = std::env::var_os("STARMAP_HELM_LIBRARY")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/starmap-tools/bin/helm-library")))
        .filter(|p| p.is_file());
    let render_with = |label: &str, deploy: &Path, cache: &Path, threads: Option<usize>, library: Option<&Path>| {
        let mut cmd = Command::new(starmap);
        cmd.env("STARMAP_HELM", &helm)
            .env_remove("STARMAP_HELM_LIBRARY")
            .env("STARMAP_BUILD_CACHE", cache)
            .args(["render", "--source"])
            .arg(&src)
            .arg("--deploy")
            .arg(deploy);
        if let Some(n) = threads {
            cmd.env("RAYON_NUM_THREADS", n.to_string());
        }
        if let Some(library) = library {
            cmd.env("STARMAP_HELM_LIBRARY", library);
        }
        let (t, rss, out) = measure(&mut cmd);
        eprintln!(
            "{label}: {:.2} s, {} — {}",
            t.as_secs_f64(),
            mib(rss),
            out.lines().last().unwrap_or("")
        );
        (t, out)
    };
    let render = |label: &str, deploy: &Path, cache: &Path, threads: Option<usize>| -> (Duration, String) {
        render_with(label, deploy, cache, threads, None)
    };

    eprintln!(
        "{clusters} clusters, {clusters} distinct value sets, helm {}",
        helm.display()
    );
    // Cold: an empty cache, with each degree of parallelism (helm processes at once).
    for threads in [1, 2, 4, 8] {
        let cache = tmp.path().join(format!("cache-{threads}"));
        let deploy = fresh_deploy(&format!("deploy-{threads}.git"));
        render(
            &format!("cold, {threads} helm processes at a time"),
            &deploy,
            &cache,
            Some(threads),
        );
    }
    match &library {
        Some(library) => {
            let deploy = fresh_deploy("deploy-library.git");
            let cache = tmp.path().join("cache-library");
            render_with(
                "cold, Helm's library in one process",
                &deploy,
                &cache,
                None,
                Some(library),
            );
            let tree_of = |repo: &str| {
                let out = Command::new("git")
                    .args(["--git-dir", repo, "rev-parse", "main^{tree}"])
                    .current_dir(tmp.path())
                    .output()
                    .unwrap();
                String::from_utf8_lossy(&out.stdout).trim().to_string()
            };
            assert_eq!(
                tree_of("deploy-library.git"),
                tree_of("deploy-1.git"),
                "Helm's library renders what helm template renders"
            );
        }
        None => {
            eprintln!("skipped: cold with Helm's library (tools/helm-library is not built; bash .ci/run builds it)")
        }
    }
    let deploy = fresh_deploy("deploy.git");
    let cache = tmp.path().join("cache");
    render("cold (default parallelism: one per core)", &deploy, &cache, None);
    let noop = render("nothing new", &deploy, &cache, None);
    assert!(noop.1.contains("no changes"), "{}", noop.1);
    write_files(&src, &source(clusters, Some(clusters / 2)));
    git(&src, &["commit", "-q", "-am", "one cluster's values"]);
    let one = render("one cluster's values changed", &deploy, &cache, None);
    assert!(one.1.contains("1 cluster changed"), "{}", one.1);
    let off = fresh_deploy("deploy-off.git");
    render(
        "cache off (every render before the cache)",
        &off,
        Path::new("off"),
        None,
    );
    render("cache off, nothing new", &off, Path::new("off"), None);
}
