//! The real test fleet started by `tests/e2e/up.sh` (docs/testing.md): its kubeconfig, its
//! smart-HTTP git server, and kubectl against one of its clusters.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

pub struct Fleet {
    pub kubeconfig: PathBuf,
    /// `http://127.0.0.1:<port>/git`, served from `git_root`.
    pub git_url: String,
    pub git_root: PathBuf,
    /// `127.0.0.1:<port>` of the fleet's OCI registry (CNCF Distribution, plain HTTP).
    pub registry: Option<String>,
}

impl Fleet {
    /// The fleet of `STARMAP_E2E_KUBECONFIG`, or `None` after saying the test was skipped
    /// and how to start the fleet (`how`); see [`super::fleet_kubeconfig`].
    pub fn from_env(how: &str) -> Option<Fleet> {
        let kubeconfig = super::fleet_kubeconfig(how)?;
        let run = kubeconfig.parent().expect("kubeconfig in the run dir").to_path_buf();
        let git_url = std::fs::read_to_string(run.join("git-url"))
            .expect("the harness writes git-url next to its kubeconfig")
            .trim()
            .to_string();
        let registry = std::fs::read_to_string(run.join("registry-host"))
            .ok()
            .map(|h| h.trim().to_string());
        Some(Fleet {
            kubeconfig,
            git_url,
            git_root: run.join("git"),
            registry,
        })
    }

    pub fn kubectl(&self, context: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(["--context", context])
            .args(args)
            .output()
            .expect("kubectl runs");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    pub fn kubectl_json(&self, context: &str, args: &[&str]) -> Result<Value, String> {
        let text = self.kubectl(context, args)?;
        serde_json::from_str(&text).map_err(|e| format!("kubectl output is not JSON: {e}"))
    }
}

/// Rewrite the file at `path` with `edit`, which must change it (a fixture that moved on would
/// otherwise make a test pass without the edit it relies on).
fn edit_file(path: &std::path::Path, what: &str, edit: impl FnOnce(&str) -> String) {
    let text = std::fs::read_to_string(path).unwrap();
    let changed = edit(&text);
    assert_ne!(changed, text, "{what} changed");
    std::fs::write(path, changed).unwrap();
}

/// The fleet tests' property change: store-0042's `replicas` property (2 in the fixtures)
/// becomes `replicas`, in the source at `source`.
#[allow(dead_code)]
pub fn set_store_0042_replicas(source: &std::path::Path, replicas: u32) {
    edit_file(&source.join("inventory/us-east.yaml"), "the property", |text| {
        let (head, tail) = text.split_once("name: store-0042").expect("store-0042 in us-east.yaml");
        format!(
            "{head}name: store-0042{}",
            tail.replacen("replicas: 2", &format!("replicas: {replicas}"), 1)
        )
    });
}

/// The fleet tests' placement change: the storefront excludes store-1001 too.
#[allow(dead_code)]
pub fn take_the_storefront_off_store_1001(source: &std::path::Path) {
    edit_file(&source.join("placements/storefront.yaml"), "the placement", |text| {
        text.replace("values: [store-2001]", "values: [store-2001, store-1001]")
    });
}

/// A pos-backend that never becomes Healthy: its pods fit no node and its progress deadline
/// is 5 s, so the Deployment turns Degraded (ProgressDeadlineExceeded).
#[allow(dead_code)]
pub fn make_pos_backend_unschedulable(source: &std::path::Path) {
    edit_file(&source.join("workloads/pos/pos-backend.yaml"), "pos-backend", |text| {
        assert!(
            text.contains("spec:\n  replicas:") && text.contains("      tolerations:\n"),
            "pos-backend.yaml changed shape"
        );
        text.replacen(
            "spec:\n  replicas:",
            "spec:\n  progressDeadlineSeconds: 5\n  replicas:",
            1,
        )
        .replacen(
            "      tolerations:\n",
            "      nodeSelector: {e2e.starmap.dev/node: none}\n      tolerations:\n",
            1,
        )
    });
}

/// Every file of `dir` (a directory of the deploy repo at `rev`), by path.
pub fn files_at(repo: &std::path::Path, rev: &str, dir: &str) -> Vec<(String, String)> {
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let list = git(&["ls-tree", "-r", "--name-only", rev, dir]);
    list.lines()
        .map(|p| (p.to_string(), git(&["show", &format!("{rev}:{p}")])))
        .collect()
}

/// `expected` is contained in `live`: every field the deploy repo sets has that value live
/// (the API server adds defaults, status, and Flux its labels).
pub fn subset_diffs(expected: &Value, live: &Value, path: &str, out: &mut Vec<String>) {
    match (expected, live) {
        (Value::Object(e), Value::Object(l)) => {
            for (k, v) in e {
                match l.get(k) {
                    Some(lv) => subset_diffs(v, lv, &format!("{path}.{k}"), out),
                    None => out.push(format!("{path}.{k}: missing live")),
                }
            }
        }
        (Value::Array(e), Value::Array(l)) => {
            if l.len() < e.len() {
                out.push(format!("{path}: {} items live, {} rendered", l.len(), e.len()));
            }
            for (i, (ev, lv)) in e.iter().zip(l).enumerate() {
                subset_diffs(ev, lv, &format!("{path}[{i}]"), out);
            }
        }
        (e, l) if e == l => {}
        // Quantities and int-or-strings come back in canonical form ("1" vs 1).
        (e, l) if e.to_string().trim_matches('"') == l.to_string().trim_matches('"') => {}
        (e, l) => out.push(format!("{path}: rendered {e}, live {l}")),
    }
}

impl Fleet {
    /// Waits until the Kustomization `namespace/name` of every cluster is Ready and `applied`
    /// says it applied what is wanted (`what`, for messages).
    pub fn wait_kustomizations(
        &self,
        clusters: &[&str],
        namespace: &str,
        name: &str,
        timeout: std::time::Duration,
        what: &str,
        applied: impl Fn(&Value) -> bool,
    ) {
        let start = std::time::Instant::now();
        for cluster in clusters {
            loop {
                let ks = self.kubectl_json(cluster, &["get", "kustomization", "-n", namespace, name, "-o", "json"]);
                let (done, ready, message) = match &ks {
                    Ok(ks) => {
                        let ready = ks["status"]["conditions"]
                            .as_array()
                            .and_then(|cs| cs.iter().find(|c| c["type"] == "Ready"));
                        (
                            applied(ks),
                            ready.is_some_and(|c| c["status"] == "True"),
                            format!(
                                "last applied {}, ready: {}",
                                ks["status"]["lastAppliedRevision"],
                                ready.and_then(|c| c["message"].as_str()).unwrap_or("")
                            ),
                        )
                    }
                    Err(e) => (false, false, e.clone()),
                };
                if done && ready {
                    eprintln!("{cluster}: Flux applied {what} after {:.1?}", start.elapsed());
                    break;
                }
                assert!(
                    start.elapsed() < timeout,
                    "{cluster}: Flux did not apply {what} within {timeout:?} ({message}); logs in the harness's logs/ folder"
                );
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        }
    }

    /// The cluster the harness runs Argo CD on (`STARMAP_E2E_ARGOCD=1 tests/e2e/up.sh`), or
    /// `None` after saying why the test is skipped; a panic instead when
    /// `STARMAP_REQUIRE_ARGOCD` is set (CI).
    #[allow(dead_code)] // not every test binary that includes this module uses Argo CD
    pub fn argocd_hub(&self) -> Option<String> {
        let file = self.kubeconfig.parent().unwrap().join("argocd-hub");
        match std::fs::read_to_string(&file) {
            Ok(hub) => Some(hub.trim().to_string()),
            Err(_) if std::env::var_os("STARMAP_REQUIRE_ARGOCD").is_some() => panic!(
                "STARMAP_REQUIRE_ARGOCD is set but the fleet has no Argo CD hub ({} is missing)",
                file.display()
            ),
            Err(_) => {
                eprintln!(
                    "SKIPPED: the fleet has no Argo CD hub; start one with STARMAP_E2E_ARGOCD=1 tests/e2e/up.sh \
                     (docs/argocd.md)"
                );
                None
            }
        }
    }

    /// The fixtures' storefront Deployment on `cluster`, or `None` where there is none.
    #[allow(dead_code)]
    pub fn storefront(&self, cluster: &str) -> Option<Value> {
        self.kubectl_json(
            cluster,
            &["get", "deploy", "-n", "storefront", "storefront", "-o", "json"],
        )
        .ok()
    }

    /// What a platform team does once on the hub: `kubectl apply -k argocd/` of the deploy
    /// repo at `rev`, after clearing what earlier tests left there.
    #[allow(dead_code)]
    pub fn bootstrap_argocd(&self, hub: &str, repo: &std::path::Path, rev: &str, scratch: &std::path::Path) {
        self.clear_argocd_hub(hub);
        let dir = scratch.join("argocd");
        let _ = std::fs::remove_dir_all(&dir);
        for (path, text) in files_at(repo, rev, "argocd") {
            let file = scratch.join(path);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(file, text).unwrap();
        }
        self.kubectl(hub, &["apply", "-k", dir.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("kubectl apply -k argocd/ on the hub: {e}"));
    }

    /// The Applications in the hub's `argocd` namespace.
    #[allow(dead_code)]
    pub fn argocd_applications(&self, hub: &str) -> Vec<Value> {
        self.kubectl_json(hub, &["get", "applications.argoproj.io", "-n", "argocd", "-o", "json"])
            .map(|list| list["items"].as_array().cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    /// One line per Application: sync status and revision, health, the last operation's
    /// message and the conditions (what a failed wait shows).
    #[allow(dead_code)]
    pub fn describe_applications(apps: &[Value]) -> String {
        apps.iter()
            .map(|a| {
                format!(
                    "{}: sync {} at {}, health {} ({}), conditions {}",
                    a["metadata"]["name"],
                    a["status"]["sync"]["status"],
                    a["status"]["sync"]["revision"],
                    a["status"]["health"]["status"],
                    a["status"]["operationState"]["message"],
                    a["status"]["conditions"]
                )
            })
            .collect::<Vec<_>>()
            .join("\n  ")
    }

    /// Removes what an earlier test (or run) left on the hub: ApplicationSets, and
    /// Applications without their finalizers, so that the edges keep their objects and the
    /// next test's Applications adopt them (starmap names them the same in every mode).
    #[allow(dead_code)]
    pub fn clear_argocd_hub(&self, hub: &str) {
        let _ = self.kubectl(
            hub,
            &[
                "delete",
                "applicationsets.argoproj.io",
                "-n",
                "argocd",
                "--all",
                "--wait",
            ],
        );
        // The root Application first, or it would bring back the Applications it syncs.
        let mut apps = self.argocd_applications(hub);
        apps.sort_by_key(|a| a["metadata"]["name"] != "starmap-root");
        for app in apps {
            let name = app["metadata"]["name"].as_str().unwrap_or_default().to_string();
            let no_finalizers = r#"{"metadata":{"finalizers":null}}"#;
            let _ = self.kubectl(
                hub,
                &[
                    "patch",
                    "applications.argoproj.io",
                    "-n",
                    "argocd",
                    &name,
                    "--type=merge",
                    "-p",
                    no_finalizers,
                ],
            );
            let _ = self.kubectl(
                hub,
                &["delete", "applications.argoproj.io", "-n", "argocd", &name, "--wait"],
            );
        }
        let start = std::time::Instant::now();
        while !self.argocd_applications(hub).is_empty() {
            assert!(
                start.elapsed() < std::time::Duration::from_secs(120),
                "the hub still has Applications:\n  {}",
                Self::describe_applications(&self.argocd_applications(hub))
            );
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
    }

    /// No ingress controller runs in the fleet: give the fixtures' storefront Ingress on
    /// `cluster` the address one would, or health rules (Argo CD's and starmap's) rightly
    /// keep it Progressing.
    pub fn give_ingress_an_address(&self, cluster: &str) -> Result<String, String> {
        self.kubectl(
            cluster,
            &[
                "patch",
                "ingress",
                "-n",
                "storefront",
                "storefront",
                "--subresource=status",
                "--type=merge",
                "-p",
                r#"{"status":{"loadBalancer":{"ingress":[{"ip":"10.255.0.10"}]}}}"#,
            ],
        )
    }

    /// The live objects of each cluster equal its directory in the deploy repo at `rev`.
    pub fn assert_live_matches(&self, repo: &std::path::Path, rev: &str, clusters: &[&str], scratch: &std::path::Path) {
        for cluster in clusters {
            let files = files_at(repo, rev, &format!("clusters/{cluster}"));
            let dir = scratch.join(format!("live-{cluster}"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            let mut rendered = Vec::new();
            for (path, text) in &files {
                if path.ends_with("/kustomization.yaml") {
                    continue;
                }
                let file = dir.join(path.replace('/', "__"));
                std::fs::write(&file, text).unwrap();
                let value: Value = serde_saphyr::from_str(text).expect("rendered files are YAML");
                rendered.push((path.clone(), value));
            }
            assert!(!rendered.is_empty(), "{cluster}: nothing rendered");
            // One call per cluster: kubectl reads the files and fetches the live objects.
            let live = self
                .kubectl_json(cluster, &["get", "-f", dir.to_str().unwrap(), "-o", "json"])
                .unwrap_or_else(|e| panic!("{cluster}: reading the live objects: {e}"));
            let items = live["items"].as_array().cloned().unwrap_or_else(|| vec![live.clone()]);
            assert_eq!(items.len(), rendered.len(), "{cluster}: live object count");
            // kubectl returns them in file-name order, which is the order above after sorting.
            let mut sorted = rendered.clone();
            sorted.sort_by_key(|(p, _)| p.replace('/', "__"));
            for ((path, expected), live) in sorted.iter().zip(&items) {
                let mut diffs = Vec::new();
                subset_diffs(expected, live, "", &mut diffs);
                assert!(
                    diffs.is_empty(),
                    "{cluster}: {path} differs live:\n  {}",
                    diffs.join("\n  ")
                );
            }
            eprintln!("{cluster}: {} live objects equal the deploy repo", rendered.len());
        }
    }

    /// Apply `flux/<cluster>/` of the deploy repo at `rev` to each cluster (the bootstrap a
    /// platform team does once per cluster).
    pub fn bootstrap_flux(&self, repo: &std::path::Path, rev: &str, clusters: &[&str], scratch: &std::path::Path) {
        for cluster in clusters {
            let dir = scratch.join(format!("flux-{cluster}"));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            for (path, text) in files_at(repo, rev, &format!("flux/{cluster}")) {
                let name = path.rsplit('/').next().unwrap();
                std::fs::write(dir.join(name), text).unwrap();
            }
            self.kubectl(cluster, &["apply", "-k", dir.to_str().unwrap()])
                .unwrap_or_else(|e| panic!("{cluster}: applying flux/{cluster}: {e}"));
        }
    }
}
