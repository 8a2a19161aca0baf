//! What the fleet benchmarks share: a synthetic retail fleet (inventory, workloads, placement,
//! customizations), real git, and timing a command with its peak RSS.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

pub const REGIONS: [&str; 4] = ["us-east", "us-west", "eu-central", "ap-southeast"];

/// The inventory: one file per region, like a platform team would keep it.
pub fn inventory(clusters: usize, changed: Option<usize>) -> Vec<(String, String)> {
    let mut files: Vec<String> = vec![String::new(); REGIONS.len()];
    for i in 0..clusters {
        let region = REGIONS[i % REGIONS.len()];
        let tier = if i % 50 == 0 { "regional" } else { "edge" };
        let replicas = if Some(i) == changed { 7 } else { 1 + i % 3 };
        let _ = write!(
            files[i % REGIONS.len()],
            "---\napiVersion: starmap.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: store-{i:05}\n  labels:\n    region: {region}\n    tier: {tier}\n    ring: \"{}\"\nspec:\n  properties:\n    storeId: \"{i:05}\"\n    replicas: {replicas}\n    ingress:\n      host: store-{i:05}.example.com\n",
            i % 10
        );
    }
    REGIONS
        .iter()
        .zip(files)
        .map(|(r, text)| (format!("inventory/{r}.yaml"), text))
        .collect()
}

/// M workload objects: templated Deployments, ConfigMaps, Services.
pub fn workloads(objects: usize) -> Vec<(String, String)> {
    (0..objects)
        .map(|i| {
            let app = format!("app-{:02}", i / 3);
            let text = match i % 3 {
                0 => format!(
                    "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {app}\n  namespace: {app}\n  annotations:\n    starmap.dev/template: \"true\"\n  labels:\n    app: {app}\nspec:\n  replicas: \"{{{{ cluster.properties.replicas }}}}\"\n  selector:\n    matchLabels:\n      app: {app}\n  template:\n    metadata:\n      labels:\n        app: {app}\n    spec:\n      containers:\n      - name: app\n        image: ghcr.io/stefanprodan/podinfo:6.14.1\n        env:\n        - name: STORE_ID\n          value: \"{{{{ cluster.properties.storeId }}}}\"\n        - name: REGION\n          value: \"{{{{ cluster.labels.region }}}}\"\n        ports:\n        - containerPort: 9898\n        resources:\n          requests:\n            cpu: 10m\n            memory: 32Mi\n"
                ),
                1 => format!(
                    "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {app}-config\n  namespace: {app}\n  annotations:\n    starmap.dev/template: \"true\"\ndata:\n  STORE: \"store {{{{ cluster.properties.storeId }}}} in {{{{ cluster.labels.region }}}}\"\n  HOST: \"{{{{ cluster.properties.ingress.host }}}}\"\n  FEATURE_X: \"on\"\n  script.sh: |\n    #!/bin/sh\n    echo \"${{STORE_ID}} $(date)\"\n"
                ),
                _ => format!(
                    "apiVersion: v1\nkind: Service\nmetadata:\n  name: {app}\n  namespace: {app}\nspec:\n  selector:\n    app: {app}\n  ports:\n  - port: 80\n    targetPort: 9898\n"
                ),
            };
            (format!("workloads/{app}/{i:03}.yaml"), text)
        })
        .collect()
}

pub fn specs() -> Vec<(String, String)> {
    vec![
        // Flux objects per cluster and an Argo CD Application per cluster are generated too.
        (
            "starmap.yaml".into(),
            "deploy: {url: https://git.example.com/fleet-deploy.git}\nargocd: {mode: applications}\n".into(),
        ),
        ("placements/all.yaml".into(), "apiVersion: starmap.dev/v1alpha1\nkind: Placement\nmetadata:\n  name: everything\nspec:\n  clusterSelectors:\n  - matchExpressions:\n    - {key: tier, operator: In, values: [edge, regional]}\n  workloads:\n  - paths: [\"workloads/**\"]\n".into()),
        ("customizations/region-label.yaml".into(), "apiVersion: starmap.dev/v1alpha1\nkind: Customization\nmetadata:\n  name: region-label\nspec:\n  targets:\n  - kinds: [Deployment]\n  patches:\n  - {op: add, path: /metadata/labels/region, value: \"{{ cluster.labels.region }}\"}\n  - {op: add, path: /spec/template/metadata/labels/ring, value: \"ring-{{ cluster.labels.ring }}\"}\n".into()),
        ("customizations/store-annotations.yaml".into(), "apiVersion: starmap.dev/v1alpha1\nkind: Customization\nmetadata:\n  name: store-annotations\nspec:\n  order: 10\n  clusterSelectors:\n  - matchLabels: {tier: edge}\n  targets:\n  - kinds: [Deployment, Service]\n  merge:\n    metadata:\n      annotations:\n        retail.example.com/store: \"{{ cluster.properties.storeId }}\"\n        retail.example.com/host: \"{{ cluster.properties.ingress.host }}\"\n".into()),
    ]
}

pub fn write_files(root: &Path, files: &[(String, String)]) {
    for (rel, text) in files {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}

pub fn git(dir: &Path, args: &[&str]) {
    let ok = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.invalid")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.invalid")
        .status()
        .unwrap()
        .success();
    assert!(ok, "git {args:?}");
}

/// Run a command; wall time and the child's peak RSS (from wait4's rusage).
pub fn measure(cmd: &mut Command) -> (Duration, u64, String) {
    let started = Instant::now();
    // Reaped by wait4 below, which also hands over the child's resource usage.
    #[allow(clippy::zombie_processes)]
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as libc::pid_t;
    // Read output on threads so a full pipe never blocks the child.
    let mut stdout = child.stdout.unwrap();
    let mut stderr = child.stderr.unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stdout, &mut s).ok();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut stderr, &mut s).ok();
        s
    });
    let mut status = 0;
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: pid is our child, status and usage are valid out-pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(r, pid, "wait4");
    let elapsed = started.elapsed();
    let stdout = out.join().unwrap();
    let stderr = err.join().unwrap();
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "command failed: {stdout}\n{stderr}"
    );
    (elapsed, usage.ru_maxrss as u64 * 1024, stdout)
}

pub fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / (1024.0 * 1024.0))
}
