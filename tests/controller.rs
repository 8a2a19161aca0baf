//! `starmap run`, the controller, as a real process: real git repos, real HTTP on a free
//! port, real signals. Status collection is off (`--status-interval 0`): these tests need no
//! cluster (tests/controller_lease.rs runs on the real fleet).

mod common;
mod controller_support;

use std::path::Path;
use std::time::{Duration, Instant};

use controller_support::{
    Controller, branch_file, commit_change, deploy_commits, deploy_file, free_port, source_repo, start, wait_for,
};
use starmap::controller::webhook::github_signature;

const STOREFRONT: &str = "workloads/storefront/deployment.yaml";
const RENDERED_STOREFRONT: &str = "clusters/store-0042/storefront/deployment.apps_storefront.yaml";
const SECRET: &str = "webhook-s3cret";

struct Setup {
    _tmp: tempfile::TempDir,
    source: std::path::PathBuf,
    deploy: std::path::PathBuf,
    port: u16,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let source = source_repo(tmp.path());
    let deploy = tmp.path().join("deploy");
    Setup {
        source,
        deploy,
        port: free_port(),
        _tmp: tmp,
    }
}

impl Setup {
    /// The source at `main` (a git tree, so only committed changes count).
    fn source_spec(&self) -> String {
        format!("{}@main", self.source.display())
    }

    fn run(&self, extra: &[&str], env: &[(&str, &str)]) -> Controller {
        let (source, deploy, listen) = (
            self.source_spec(),
            self.deploy.display().to_string(),
            format!("127.0.0.1:{}", self.port),
        );
        let mut args = vec![
            "--source",
            &source,
            "--deploy",
            &deploy,
            "--listen",
            &listen,
            "--status-interval",
            "0",
        ];
        args.extend_from_slice(extra);
        start(&args, self.port, env)
    }
}

/// Every cluster directory of the tip has its kustomization.yaml; returns how many there are.
fn complete_clusters(deploy: &Path) -> usize {
    let repo = git2::Repository::open(deploy).unwrap();
    let tree = repo.revparse_single("refs/heads/main").unwrap().peel_to_tree().unwrap();
    let clusters = tree.get_path(Path::new("clusters")).unwrap().to_object(&repo).unwrap();
    let clusters = clusters.as_tree().unwrap();
    for entry in clusters.iter() {
        let name = entry.name().unwrap();
        assert!(
            tree.get_path(&Path::new("clusters").join(name).join("kustomization.yaml"))
                .is_ok(),
            "clusters/{name}/kustomization.yaml missing"
        );
    }
    clusters.len()
}

#[test]
fn renders_at_start_then_ready_and_healthy() {
    let s = setup();
    let mut c = s.run(&["--interval", "1h"], &[]);
    c.wait_ready(Duration::from_secs(30));
    assert_eq!(deploy_commits(&s.deploy), 1, "one render commit at start");
    assert_eq!(complete_clusters(&s.deploy), 14, "every fixture cluster rendered");
    assert_eq!(c.get("/healthz").map(|r| r.0), Some(200));
    let (code, body) = c.get("/readyz").unwrap();
    assert_eq!((code, body.trim()), (200, "ready"));
    assert_eq!(c.get("/nothing").map(|r| r.0), Some(404));
}

#[test]
fn webhooks_render_at_once_only_when_authentic() {
    let s = setup();
    let secret_file = s.source.parent().unwrap().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let secret_path = secret_file.display().to_string();
    let mut c = s.run(&["--interval", "1h", "--webhook-secret-file", &secret_path], &[]);
    c.wait_ready(Duration::from_secs(30));
    assert_eq!(deploy_commits(&s.deploy), 1);
    let rounds = |c: &Controller| {
        let m = c.metrics();
        ["committed", "unchanged", "error"]
            .iter()
            .map(|r| m.value("starmap_render_rounds_total", &[("result", r)]).unwrap())
            .sum::<f64>()
    };
    assert_eq!(rounds(&c), 1.0);

    // A signed ping answers and renders nothing.
    let ping = br#"{"zen":"Keep it logically awesome."}"#;
    let sig = github_signature(SECRET.as_bytes(), ping);
    let (code, _) = c.post(
        "/webhook",
        &[("X-GitHub-Event", "ping"), ("X-Hub-Signature-256", &sig)],
        ping,
    );
    assert_eq!(code, 200);

    // A push with a wrong signature: 401, no render although the source changed.
    commit_change(&s.source, STOREFRONT, "nginx:1.27.3", "nginx:1.27.4");
    let push = br#"{"ref":"refs/heads/main"}"#;
    let wrong = github_signature(b"not-the-secret", push);
    let (code, _) = c.post(
        "/webhook",
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &wrong)],
        push,
    );
    assert_eq!(code, 401);
    let (code, _) = c.post("/webhook", &[("X-GitHub-Event", "push")], push);
    assert_eq!(code, 401, "unsigned");
    // An absence can only be watched for a while: a round would start within milliseconds.
    let rendered = wait_for(Duration::from_millis(1500), || {
        rounds(&c) > 1.0 || deploy_commits(&s.deploy) > 1
    });
    assert!(
        !rendered,
        "neither the ping nor a refused push renders; logs:\n{}",
        c.logs()
    );

    // The right signature renders the change at once.
    let sig = github_signature(SECRET.as_bytes(), push);
    let sent = Instant::now();
    let (code, _) = c.post(
        "/webhook",
        &[("X-GitHub-Event", "push"), ("X-Hub-Signature-256", &sig)],
        push,
    );
    assert_eq!(code, 202);
    assert!(
        wait_for(Duration::from_secs(15), || deploy_commits(&s.deploy) == 2),
        "no commit after a signed push; logs:\n{}",
        c.logs()
    );
    eprintln!("signed push to deploy commit: {:?}", sent.elapsed());
    assert!(
        deploy_file(&s.deploy, RENDERED_STOREFRONT)
            .unwrap()
            .contains("nginx:1.27.4")
    );

    // GitLab: a wrong token is refused, the right one renders.
    commit_change(&s.source, STOREFRONT, "nginx:1.27.4", "nginx:1.27.5");
    let gitlab = br#"{"object_kind":"push","ref":"refs/heads/main"}"#;
    let (code, _) = c.post(
        "/webhook",
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", "guess")],
        gitlab,
    );
    assert_eq!(code, 401);
    let (code, _) = c.post(
        "/webhook",
        &[("X-Gitlab-Event", "Push Hook"), ("X-Gitlab-Token", SECRET)],
        gitlab,
    );
    assert_eq!(code, 202);
    assert!(
        wait_for(Duration::from_secs(15), || deploy_commits(&s.deploy) == 3),
        "no commit after a GitLab push; logs:\n{}",
        c.logs()
    );
    assert!(
        deploy_file(&s.deploy, RENDERED_STOREFRONT)
            .unwrap()
            .contains("nginx:1.27.5")
    );

    // Not a webhook at all.
    let (code, _) = c.post("/webhook", &[], b"{}");
    assert_eq!(code, 400);

    let m = c.metrics();
    let webhook = |result| m.value("starmap_webhook_requests_total", &[("result", result)]);
    assert_eq!(webhook("accepted"), Some(2.0));
    assert_eq!(webhook("unauthorized"), Some(3.0));
    assert_eq!(webhook("ping"), Some(1.0));
    assert_eq!(webhook("bad_request"), Some(1.0));
    // The round counts itself just after its commit lands: give it that moment.
    let committed = || {
        c.metrics()
            .value("starmap_render_rounds_total", &[("result", "committed")])
    };
    assert!(
        wait_for(Duration::from_secs(5), || committed() == Some(3.0)),
        "committed rounds: {:?}",
        committed()
    );
}

#[test]
fn metrics_parse_as_prometheus_text() {
    let s = setup();
    let mut c = s.run(&["--interval", "1h"], &[]);
    c.wait_ready(Duration::from_secs(30));
    let m = c.metrics();
    let committed = m.value("starmap_render_rounds_total", &[("result", "committed")]);
    assert!(committed.is_some_and(|v| v >= 1.0), "{committed:?}");
    assert_eq!(
        m.value("starmap_render_rounds_total", &[("result", "error")]),
        Some(0.0)
    );
    assert_eq!(m.value("starmap_errors_total", &[("loop", "render")]), Some(0.0));
    let count = m.histogram_count("starmap_render_duration_seconds");
    assert!(count.is_some_and(|n| n >= 1.0), "{count:?}");
    let last = m
        .value("starmap_last_success_timestamp_seconds", &[("loop", "render")])
        .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        last > now - 120.0 && last <= now + 1.0,
        "last success {last}, now {now}"
    );
    assert_eq!(
        m.value("starmap_last_success_timestamp_seconds", &[("loop", "status")]),
        Some(0.0)
    );
    assert_eq!(
        m.value("starmap_leader", &[]),
        Some(1.0),
        "election off: this replica works"
    );
    for health in [
        "Healthy",
        "Progressing",
        "Degraded",
        "Suspended",
        "Missing",
        "Unknown",
        "Stale",
    ] {
        assert_eq!(
            m.value("starmap_clusters", &[("health", health)]),
            Some(0.0),
            "{health}"
        );
    }
}

#[test]
fn sigterm_exits_0_leaving_a_complete_commit() {
    let s = setup();
    let mut c = s.run(&["--interval", "1h"], &[]);
    c.wait_ready(Duration::from_secs(30));
    // A round in flight when the signal comes: a change and a push event.
    commit_change(&s.source, STOREFRONT, "nginx:1.27.3", "nginx:1.27.4");
    let (code, _) = c.post("/webhook", &[("X-GitHub-Event", "push")], b"{}");
    assert_eq!(code, 202);
    c.signal(libc::SIGTERM);
    let started = Instant::now();
    let status = c.wait_exit(Duration::from_secs(30));
    let Some(status) = status else {
        panic!("still running 30s after SIGTERM; logs:\n{}", c.logs());
    };
    assert_eq!(status.code(), Some(0), "logs:\n{}", c.logs());
    eprintln!("exited {:?} after SIGTERM", started.elapsed());
    assert!(c.logs().contains("SIGTERM: stopping"), "{}", c.logs());

    let fsck = std::process::Command::new("git")
        .args(["fsck", "--full", "--strict"])
        .current_dir(&s.deploy)
        .output()
        .unwrap();
    assert!(fsck.status.success(), "{}", String::from_utf8_lossy(&fsck.stderr));
    assert_eq!(complete_clusters(&s.deploy), 14);
    // The tip is one render or the other, never a mix: every store has the same image.
    let images: std::collections::BTreeSet<String> = ["store-0042", "store-0107", "store-1001"]
        .iter()
        .filter_map(|c| {
            deploy_file(
                &s.deploy,
                &format!("clusters/{c}/storefront/deployment.apps_storefront.yaml"),
            )
        })
        .map(|text| {
            let at = text.find("nginx:").unwrap();
            text[at..].split_whitespace().next().unwrap().to_string()
        })
        .collect();
    assert_eq!(images.len(), 1, "{images:?}");
}

#[test]
fn settings_from_a_config_file_and_flags_over_it() {
    let s = setup();
    let file_port = free_port();
    let config = s.source.parent().unwrap().join("run.yaml");
    std::fs::write(
        &config,
        format!(
            "# starmap run settings\nsource: {}\ndeploy: {}\ninterval: 1h\nstatusInterval: 0\nlisten: 127.0.0.1:{file_port}\n",
            s.source_spec(),
            s.deploy.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    let listen = format!("127.0.0.1:{}", s.port);
    // The flag's address wins over the file's.
    let mut c = start(&["--config", &config, "--listen", &listen], s.port, &[]);
    c.wait_ready(Duration::from_secs(30));
    assert_eq!(
        deploy_commits(&s.deploy),
        1,
        "rendered the file's source into its deploy repo"
    );
    assert!(
        controller_support::http(file_port, "GET", "/healthz", &[], b"").is_err(),
        "nothing listens on the file's address"
    );
}

#[test]
fn unknown_config_key_exits_1_naming_file_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("run.yaml");
    std::fs::write(&config, "deploy: /tmp/x\ninterval: 30s\nstatusIntervall: 1m\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_starmap"))
        .args(["run", "--config"])
        .arg(&config)
        .env_remove("STARMAP_DEPLOY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let expected = format!("error: {}:3: ", config.display());
    assert!(stderr.starts_with(&expected), "{stderr}");
    assert!(stderr.contains("statusIntervall"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
}

#[test]
fn a_bad_source_after_start_is_logged_and_counted_and_serving_goes_on() {
    let s = setup();
    let mut c = s.run(&["--interval", "1s"], &[]);
    c.wait_ready(Duration::from_secs(30));
    std::fs::write(s.source.join("workloads/storefront/broken.yaml"), "kind: [unclosed\n").unwrap();
    controller_support::git(&s.source, &["add", "-A"]);
    controller_support::git(&s.source, &["commit", "-q", "-m", "broken"]);
    let errors = |c: &Controller| {
        c.metrics()
            .value("starmap_errors_total", &[("loop", "render")])
            .unwrap_or(0.0)
    };
    assert!(
        wait_for(Duration::from_secs(15), || errors(&c) >= 1.0),
        "no render error counted; logs:\n{}",
        c.logs()
    );
    let logs = c.logs();
    let line = logs
        .lines()
        .find(|l| l.contains("render round failed:"))
        .unwrap_or_else(|| panic!("no error line; logs:\n{logs}"));
    assert!(line.contains("workloads/storefront/broken.yaml"), "{line}");
    assert!(c.child.try_wait().unwrap().is_none(), "the process keeps running");
    assert_eq!(c.get("/healthz").map(|r| r.0), Some(200));
    assert_eq!(
        c.get("/readyz").map(|r| r.0),
        Some(200),
        "it rendered once: still ready"
    );
    let m = c.metrics();
    assert!(m.value("starmap_render_rounds_total", &[("result", "error")]).unwrap() >= 1.0);
    assert_eq!(deploy_commits(&s.deploy), 1, "a bad source commits nothing");
}

#[test]
fn a_bad_source_at_start_is_not_ready_and_says_why() {
    let s = setup();
    std::fs::write(s.source.join("workloads/storefront/broken.yaml"), "kind: [unclosed\n").unwrap();
    controller_support::git(&s.source, &["add", "-A"]);
    controller_support::git(&s.source, &["commit", "-q", "-m", "broken"]);
    let c = s.run(&["--interval", "1h"], &[]);
    let ok = wait_for(Duration::from_secs(30), || {
        c.get("/readyz")
            .is_some_and(|(code, body)| code == 503 && body.contains("broken.yaml"))
    });
    assert!(ok, "readyz: {:?}; logs:\n{}", c.get("/readyz"), c.logs());
    assert_eq!(c.get("/healthz").map(|r| r.0), Some(200));
    assert_eq!(deploy_commits(&s.deploy), 0);
}

/// A kubeconfig whose API server is a port nobody listens on.
fn unreachable_hub(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("unreachable-kubeconfig");
    let port = free_port();
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: hub\n\
             clusters:\n- name: hub\n  cluster:\n    server: https://127.0.0.1:{port}\n    insecure-skip-tls-verify: true\n\
             users:\n- name: u\n  user:\n    token: t\n\
             contexts:\n- name: hub\n  context:\n    cluster: hub\n    user: u\n"
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_standby_that_cannot_reach_the_lease_api_is_not_ready_and_relays_nothing() {
    let s = setup();
    let kubeconfig = unreachable_hub(s.source.parent().unwrap());
    let c = s.run(
        &["--interval", "1h", "--leader-elect", "--lease-duration", "4s"],
        &[("KUBECONFIG", kubeconfig.to_str().unwrap())],
    );
    let ok = wait_for(Duration::from_secs(15), || {
        c.get("/readyz")
            .is_some_and(|(code, body)| code == 503 && body.starts_with("standby: cannot read the lease: "))
    });
    assert!(ok, "readyz: {:?}; logs:\n{}", c.get("/readyz"), c.logs());
    assert_eq!(c.get("/healthz").map(|r| r.0), Some(200), "alive all the same");
    let m = c.metrics();
    assert_eq!(m.value("starmap_leader", &[]), Some(0.0));
    // An authentic push cannot be relayed: 503, so the sender retries or the next poll renders.
    let (code, body) = c.post("/webhook", &[("X-GitHub-Event", "push")], b"{}");
    assert_eq!(code, 503, "{body}");
    assert!(body.starts_with("standby: cannot relay to the leader"), "{body}");
    let m = c.metrics();
    assert_eq!(
        m.value("starmap_webhook_requests_total", &[("result", "relay_failed")]),
        Some(1.0)
    );
    assert_eq!(deploy_commits(&s.deploy), 0, "a standby renders nothing");
}

#[test]
fn a_status_round_that_commits_is_followed_by_a_render_round() {
    let s = setup();
    // A kubeconfig with no context for any fixture cluster: every cluster is unreachable,
    // so the first status round commits them as stale and later rounds change nothing.
    let kubeconfig = s.source.parent().unwrap().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: []\ncontexts: []\nusers: []\n",
    )
    .unwrap();
    let kubeconfig = kubeconfig.display().to_string();
    let (source, deploy, listen) = (
        s.source_spec(),
        s.deploy.display().to_string(),
        format!("127.0.0.1:{}", s.port),
    );
    let mut c = start(
        &[
            "--source",
            &source,
            "--deploy",
            &deploy,
            "--listen",
            &listen,
            "--interval",
            "1h",
            "--status-interval",
            "1s",
            "--kubeconfig",
            &kubeconfig,
            "--timeout",
            "2s",
        ],
        s.port,
        &[],
    );
    c.wait_ready(Duration::from_secs(30));
    let value = |c: &Controller, name: &str, label: (&str, &str)| c.metrics().value(name, &[label]).unwrap_or(0.0);
    let status_rounds = |c: &Controller| {
        value(c, "starmap_status_rounds_total", ("result", "committed"))
            + value(c, "starmap_status_rounds_total", ("result", "unchanged"))
    };
    assert!(
        wait_for(Duration::from_secs(20), || status_rounds(&c) >= 3.0),
        "fewer than 3 status rounds; logs:\n{}",
        c.logs()
    );
    assert_eq!(value(&c, "starmap_status_rounds_total", ("result", "committed")), 1.0);
    assert_eq!(value(&c, "starmap_clusters", ("health", "Stale")), 14.0);
    assert_eq!(value(&c, "starmap_clusters", ("health", "Healthy")), 0.0);
    assert!(value(&c, "starmap_last_success_timestamp_seconds", ("loop", "status")) > 0.0);
    // Start, and once after the one status commit; none after the rounds that changed nothing.
    assert_eq!(value(&c, "starmap_render_rounds_total", ("result", "committed")), 1.0);
    assert_eq!(
        value(&c, "starmap_render_rounds_total", ("result", "unchanged")),
        1.0,
        "logs:\n{}",
        c.logs()
    );
    assert_eq!(
        deploy_commits(&s.deploy),
        1,
        "the render commit: status rounds never move main"
    );
    assert!(deploy_file(&s.deploy, "status/clusters/store-0042.yaml").is_none());
    assert!(branch_file(&s.deploy, "starmap-status", "status/clusters/store-0042.yaml").is_some());
}
