//! Rollout waves on a real fleet, driven by the controller: `starmap run` renders into a
//! deploy repo served over smart HTTP, Flux applies each cluster's directory into a real
//! kube-apiserver, the controller collects status from those API servers, and the next wave
//! opens only when that status shows the open one applied and Healthy.
//!
//! 1. Waves: the `pos` placement rolls out to a canary wave (store-0042) and then the rest
//!    (store-1001, store-2001). A new revision lands on the canary only; the second wave opens
//!    only after a status commit shows the canary running it, Healthy; a revision whose canary
//!    never becomes Healthy stops at the canary and the rollout file says why.
//! 2. Crashes: the controller is killed with SIGKILL at random points 20+ times while a
//!    rollout is in progress and restarted: the branch always holds a complete commit, and the
//!    rollout never goes back.
//!
//! Needs the harness with Flux: `tests/e2e/up.sh 3 store-0042 store-1001 store-2001` and
//! `STARMAP_E2E_KUBECONFIG` (docs/testing.md). Without it the test says it was skipped.

mod common;

use common::fleet::{Fleet, make_pos_backend_unschedulable};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

const CLUSTERS: [&str; 3] = ["store-0042", "store-1001", "store-2001"];
const REST: [&str; 2] = ["store-1001", "store-2001"];
const POS_BACKEND: &str = "pos/deployment.apps_pos-backend.yaml";
const DEADLINE: Duration = Duration::from_secs(240);
const FLUX: &str = "flux:\n  interval: 3s\n  syncInterval: 30s\n  timeout: 2m\n";
/// Both tests re-point the same clusters' Flux at their own deploy repo: one at a time.
static FLEET: Mutex<()> = Mutex::new(());

fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .expect("git runs");
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn show(repo: &Path, rev: &str, path: &str) -> Option<String> {
    git(repo, &["show", &format!("{rev}:{path}")]).ok()
}

fn yaml(text: &str) -> Value {
    serde_saphyr::from_str(text).expect("starmap writes YAML")
}

fn rollout(repo: &Path, rev: &str) -> Value {
    show(repo, rev, ".starmap/rollouts/pos.yaml")
        .map(|t| yaml(&t))
        .unwrap_or(Value::Null)
}

/// A test's own source (the fixtures, `pos` rolled out in two waves) and deploy repo.
struct Setup {
    scratch: tempfile::TempDir,
    source: PathBuf,
    repo: PathBuf,
}

/// How the deploy repo reaches the edges.
#[derive(Clone, Copy, PartialEq)]
enum Delivery {
    Git,
    /// One OCI artifact per cluster in the harness's registry.
    Oci,
    /// Argo CD on the harness's hub (an ApplicationSet, the `cluster` generator); status
    /// from the hub's Applications.
    ArgoCd,
}

fn setup(fleet: &Fleet, name: &str, delivery: Delivery) -> Setup {
    let scratch = tempfile::tempdir().unwrap();
    let repo_name = format!("deploy-{name}-{}.git", std::process::id());
    let repo = fleet.git_root.join(&repo_name);
    git(&fleet.git_root, &["init", "-q", "--bare", "-b", "main", &repo_name]).unwrap();
    let source = scratch.path().join("fixtures");
    common::copy_dir(&common::fixtures(), &source);
    std::fs::write(
        source.join("starmap.yaml"),
        format!(
            "ignore: [drafts/**, .github/**]\ndeploy:\n  url: {}/{repo_name}\n  branch: main\n{}",
            fleet.git_url,
            match delivery {
                Delivery::Git => FLUX.to_string(),
                Delivery::ArgoCd =>
                    "flux:\n  enabled: false\nargocd:\n  mode: applicationset\n  generator: cluster\n".into(),
                Delivery::Oci => format!(
                    "{FLUX}oci:\n  repository: {}/{name}-{}\n  insecure: true\n",
                    fleet.registry.as_deref().expect("the harness runs a registry"),
                    std::process::id()
                ),
            }
        ),
    )
    .unwrap();
    let placement = source.join("placements/pos.yaml");
    let text = std::fs::read_to_string(&placement).unwrap();
    std::fs::write(
        &placement,
        format!(
            "{text}  rollout:\n    minHealthyTime: 3s\n    progressDeadline: 90s\n    waves:\n\
             \x20   - name: canary\n      clusters: [store-0042]\n    - name: rest\n"
        ),
    )
    .unwrap();
    Setup { scratch, source, repo }
}

/// Point the delivery at the deploy repo: each cluster's Flux, or the Argo CD hub.
fn bootstrap(fleet: &Fleet, s: &Setup, hub: Option<&str>) {
    match hub {
        Some(hub) => fleet.bootstrap_argocd(hub, &s.repo, "main", s.scratch.path()),
        None => fleet.bootstrap_flux(&s.repo, "main", &CLUSTERS, s.scratch.path()),
    }
}

/// `starmap run` against the fleet; killed (SIGKILL) when dropped.
struct Controller(Child);

impl Controller {
    /// Status from the clusters, or from the Argo CD `hub`'s Applications.
    fn start(fleet: &Fleet, s: &Setup, hub: Option<&str>) -> Controller {
        let child = Command::new(env!("CARGO_BIN_EXE_starmap"))
            .args(["run", "--source"])
            .arg(&s.source)
            .arg("--deploy")
            .arg(&s.repo)
            .arg("--kubeconfig")
            .arg(&fleet.kubeconfig)
            .args(["--interval", "1s", "--status-interval", "2s", "--timeout", "10s"])
            .args(["--listen", "127.0.0.1:0"])
            .args(hub.map(|h| ["--argocd-hub", h]).into_iter().flatten())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starmap run starts");
        Controller(child)
    }

    fn kill(mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for `what` to hold on the deploy repo's tip; returns the tip it held on.
fn wait_for(repo: &Path, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        if let Ok(tip) = git(repo, &["rev-parse", "main"])
            && ok(&tip)
        {
            eprintln!("{what}: after {:.1?} at {}", start.elapsed(), &tip[..12]);
            return tip;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "{what}: not within {DEADLINE:?}; rollout state: {}",
            rollout(repo, "main")
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn complete(repo: &Path, rev: &str) -> bool {
    rollout(repo, rev)["phase"] == "Complete"
}

/// The live pos-backend's pod template annotation `retail.example.com/release`.
fn live_release(fleet: &Fleet, cluster: &str) -> Option<String> {
    fleet
        .kubectl(
            cluster,
            &[
                "get",
                "deploy",
                "-n",
                "pos",
                "pos-backend",
                "-o",
                "jsonpath={.spec.template.metadata.annotations.retail\\.example\\.com/release}",
            ],
        )
        .ok()
        .filter(|s| !s.is_empty())
}

/// A new revision of pos-backend: a release annotation on its pods.
fn new_revision(s: &Setup, release: &str) {
    let path = s.source.join("workloads/pos/pos-backend.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let marker = "        prometheus.io/port: \"9797\"\n";
    let base = match text.find("        retail.example.com/release:") {
        Some(_) => text
            .lines()
            .filter(|l| !l.contains("retail.example.com/release:"))
            .map(|l| format!("{l}\n"))
            .collect(),
        None => text,
    };
    assert!(base.contains(marker), "pos-backend.yaml changed shape");
    let next = base.replace(
        marker,
        &format!("{marker}        retail.example.com/release: \"{release}\"\n"),
    );
    std::fs::write(&path, next).unwrap();
}

fn release_in(repo: &Path, rev: &str, cluster: &str) -> Option<String> {
    let text = show(repo, rev, &format!("clusters/{cluster}/{POS_BACKEND}"))?;
    let v = yaml(&text);
    v["spec"]["template"]["metadata"]["annotations"]["retail.example.com/release"]
        .as_str()
        .map(String::from)
}

/// Waits until `cluster` runs pos-backend with `release` live (Flux applied it).
fn wait_live(fleet: &Fleet, cluster: &str, release: &str) {
    let start = Instant::now();
    while live_release(fleet, cluster).as_deref() != Some(release) {
        assert!(
            start.elapsed() < DEADLINE,
            "{cluster}: release {release} not live (live: {:?})",
            live_release(fleet, cluster)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn waves_open_on_real_status_and_a_failing_canary_stops_the_rollout() {
    waves(Delivery::Git);
}

#[test]
fn waves_open_on_real_status_with_oci_delivery_too() {
    waves(Delivery::Oci);
}

/// The same waves with Argo CD delivering (the harness's hub: `STARMAP_E2E_ARGOCD=1`), gated
/// on the sync revision and health Argo CD reports; skipped on a fleet without a hub.
#[test]
fn waves_open_on_the_revision_and_health_argo_cd_reports() {
    waves(Delivery::ArgoCd);
}

fn waves(delivery: Delivery) {
    let Some(fleet) = Fleet::from_env(&format!("`tests/e2e/up.sh 3 {}`", CLUSTERS.join(" "))) else {
        return;
    };
    let hub = match delivery {
        Delivery::ArgoCd => match fleet.argocd_hub() {
            Some(hub) => Some(hub),
            None => return,
        },
        Delivery::Git | Delivery::Oci => None,
    };
    let hub = hub.as_deref();
    let _one = FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let name = match delivery {
        Delivery::Git => "rollout",
        Delivery::Oci => "rollout-oci",
        Delivery::ArgoCd => "rollout-argocd",
    };
    let s = setup(&fleet, name, delivery);
    new_revision(&s, "1");

    // The first revision: rendered once by hand to bootstrap the delivery, then the
    // controller takes it through both waves.
    common::render(&s.source, &s.repo);
    assert_eq!(rollout(&s.repo, "main")["openWaves"], 1);
    bootstrap(&fleet, &s, hub);
    let controller = Controller::start(&fleet, &s, hub);
    wait_for(&s.repo, "release 1 complete", |tip| complete(&s.repo, tip));
    for c in CLUSTERS {
        wait_live(&fleet, c, "1");
    }

    // 2. A new revision lands on the canary only.
    new_revision(&s, "2");
    let canary_commit = wait_for(&s.repo, "release 2 on the canary", |tip| {
        release_in(&s.repo, tip, "store-0042").as_deref() == Some("2")
    });
    let st = rollout(&s.repo, &canary_commit);
    assert_eq!(
        (st["phase"].as_str(), st["openWaves"].as_u64()),
        (Some("Progressing"), Some(1)),
        "{st}"
    );
    for c in REST {
        assert_eq!(
            release_in(&s.repo, &canary_commit, c).as_deref(),
            Some("1"),
            "{c} waits"
        );
    }
    wait_live(&fleet, "store-0042", "2");
    assert_eq!(
        live_release(&fleet, "store-1001").as_deref(),
        Some("1"),
        "the rest keep release 1 live"
    );

    // The rest wave opens only after a status commit shows the canary running release 2,
    // Healthy: find the commit that opened it and read the status its gate read (the status
    // branch commit its `Starmap-Status-Commit` trailer names).
    let opened = wait_for(&s.repo, "wave rest opened", |tip| {
        rollout(&s.repo, tip)["openWaves"].as_u64() == Some(2)
    });
    let history = git(
        &s.repo,
        &["rev-list", "--first-parent", &format!("{canary_commit}..{opened}")],
    )
    .unwrap();
    let opening = history
        .lines()
        .find(|c| {
            rollout(&s.repo, c)["openWaves"].as_u64() == Some(2)
                && rollout(&s.repo, &format!("{c}^"))["openWaves"].as_u64() == Some(1)
        })
        .expect("the commit that opened the wave");
    let before = format!("{opening}^");
    let read = git(
        &s.repo,
        &[
            "log",
            "-1",
            "--format=%(trailers:key=Starmap-Status-Commit,valueonly)",
            opening,
        ],
    )
    .unwrap();
    let status =
        yaml(&show(&s.repo, read.trim(), "status/clusters/store-0042.yaml").expect("the status the gate read"));
    let applied = status["appliedRevision"].as_str().expect("an applied revision");
    assert_eq!(
        git(&s.repo, &["rev-parse", &format!("{applied}:clusters/store-0042")]).unwrap(),
        git(&s.repo, &["rev-parse", &format!("{before}:clusters/store-0042")]).unwrap(),
        "the canary ran release 2's files when the wave opened"
    );
    assert_eq!(release_in(&s.repo, applied, "store-0042").as_deref(), Some("2"));
    for o in status["objects"].as_array().unwrap() {
        if o["placements"].as_array().is_some_and(|p| p.iter().any(|p| p == "pos")) {
            assert_eq!(o["health"], "Healthy", "{o}");
        }
    }
    for c in REST {
        assert_eq!(
            release_in(&s.repo, opening, c).as_deref(),
            Some("2"),
            "{c} gets release 2 with the wave"
        );
    }
    wait_for(&s.repo, "release 2 complete", |tip| complete(&s.repo, tip));
    for c in REST {
        wait_live(&fleet, c, "2");
    }

    // 3. A revision whose canary never becomes Healthy: its pods cannot be scheduled and the
    // Deployment's progress deadline passes. It stops at the canary, saying why.
    new_revision(&s, "3");
    make_pos_backend_unschedulable(&s.source);
    let paused = wait_for(&s.repo, "release 3 paused at the canary", |tip| {
        rollout(&s.repo, tip)["phase"] == "Paused"
    });
    let st = rollout(&s.repo, &paused);
    let message = st["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("store-0042") && message.contains("Degraded") && message.contains("wave rest stays closed"),
        "{st}"
    );
    assert_eq!(st["blocking"][0]["cluster"], "store-0042", "{st}");
    assert_eq!(release_in(&s.repo, &paused, "store-0042").as_deref(), Some("3"));
    for c in REST {
        assert_eq!(
            release_in(&s.repo, &paused, c).as_deref(),
            Some("2"),
            "{c} stays on release 2"
        );
        assert_eq!(live_release(&fleet, c).as_deref(), Some("2"));
    }
    let shown = Command::new(env!("CARGO_BIN_EXE_starmap"))
        .args(["status", "show", "--deploy"])
        .arg(&s.repo)
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(shown.contains("pos") && shown.contains("Paused"), "{shown}");
    eprintln!("{shown}");
    controller.kill();
}

/// A small deterministic generator (no dependency): kill points differ per run and are
/// printed, so a failure can be replayed with STARMAP_KILL_SEED.
struct Lcg(u64);

impl Lcg {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        lo + (self.0 >> 33) % (hi - lo)
    }
}

/// The branch's tip is a whole render: every cluster directory its digests name, every
/// file its kustomization lists, and git finds nothing broken.
fn assert_complete_commit(repo: &Path) {
    git(repo, &["fsck", "--no-progress", "--no-dangling"]).unwrap_or_else(|e| panic!("git fsck: {e}"));
    let digests = yaml(&show(repo, "main", ".starmap/digests.yaml").expect("digests"));
    for (cluster, d) in digests["clusters"].as_object().expect("clusters in digests") {
        let tree = git(repo, &["rev-parse", &format!("main:clusters/{cluster}")]).unwrap();
        assert_eq!(
            Some(tree.as_str()),
            d["tree"].as_str(),
            "{cluster}: its directory is the one recorded"
        );
        let k = yaml(&show(repo, "main", &format!("clusters/{cluster}/kustomization.yaml")).unwrap());
        for file in k["resources"].as_array().unwrap() {
            let path = format!("clusters/{cluster}/{}", file.as_str().unwrap());
            assert!(show(repo, "main", &path).is_some(), "{path} listed but missing");
        }
    }
}

#[test]
fn sigkill_at_random_points_never_leaves_a_partial_commit_and_the_rollout_resumes() {
    let Some(fleet) = Fleet::from_env(&format!("`tests/e2e/up.sh 3 {}`", CLUSTERS.join(" "))) else {
        return;
    };
    let _one = FLEET.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup(&fleet, "sigkill", Delivery::Git);
    new_revision(&s, "1");
    common::render(&s.source, &s.repo);
    bootstrap(&fleet, &s, None);
    let controller = Controller::start(&fleet, &s, None);
    wait_for(&s.repo, "release 1 complete", |tip| complete(&s.repo, tip));
    controller.kill();

    new_revision(&s, "2");
    let seed = std::env::var("STARMAP_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("kill points from STARMAP_KILL_SEED={seed}");
    let mut rng = Lcg(seed);
    let mut furthest: BTreeMap<String, u64> = BTreeMap::new();
    let mut kills = 0;
    let mut windows_with_commits = 0;
    let start = Instant::now();
    while kills < 20 || !complete(&s.repo, "main") {
        let tip_before = git(&s.repo, &["rev-parse", "main"]).unwrap();
        let controller = Controller::start(&fleet, &s, None);
        let after = rng.next_ms(150, 2500);
        std::thread::sleep(Duration::from_millis(after));
        controller.kill();
        kills += 1;
        assert_complete_commit(&s.repo);
        let tip_after = git(&s.repo, &["rev-parse", "main"]).unwrap();
        windows_with_commits += usize::from(tip_after != tip_before);
        eprintln!(
            "kill {kills} after {after} ms: {}",
            if tip_after == tip_before {
                "no commit in this run"
            } else {
                "committed in this run"
            }
        );
        // The rollout of a revision never goes back a wave.
        let st = rollout(&s.repo, "main");
        let revision = st["revision"].as_str().unwrap_or_default().to_string();
        let open = st["openWaves"].as_u64().unwrap_or(0);
        let was = furthest.entry(revision).or_insert(0);
        assert!(
            open >= *was,
            "kill {kills} ({after} ms): the rollout went back from {was} to {open} open waves"
        );
        *was = open;
        assert!(
            start.elapsed() < DEADLINE * 2,
            "the rollout did not complete through {kills} kills: {st}"
        );
    }
    eprintln!(
        "{kills} kills ({windows_with_commits} of the runs committed before being killed); \
         rollout of release 2 complete after {:.1?}",
        start.elapsed()
    );
    // The kills must have hit working rounds, not only idle start-ups.
    assert!(
        windows_with_commits >= 3,
        "only {windows_with_commits} runs committed anything"
    );
    for c in CLUSTERS {
        assert_eq!(release_in(&s.repo, "main", c).as_deref(), Some("2"), "{c}");
        wait_live(&fleet, c, "2");
    }
}
