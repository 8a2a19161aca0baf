//! Hostile input costs bounded work: a `kustomize` that never finishes, and a git remote that
//! accepts a connection and never answers. Real processes and real sockets: the hung tool is a
//! shell script that sleeps (and starts a child that sleeps, which must die with it); the
//! silent remote is a TCP listener of this test that accepts and reads, and writes nothing.

mod common;
mod controller_support;

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{copy_dir, data};

/// A source of `_good/` plus a kustomize directory, and a `kustomize` that hangs: it starts a
/// `sleep` of its own (which would keep its output open) and sleeps itself.
fn source_with_a_kustomize_dir(tmp: &Path) -> (PathBuf, PathBuf) {
    let source = tmp.join("source");
    copy_dir(&data("bad-inputs/_good"), &source);
    let dir = source.join("workloads/web/extra");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("kustomization.yaml"), "resources: [cm.yaml]\n").unwrap();
    std::fs::write(
        dir.join("cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: web}\n",
    )
    .unwrap();
    let tool = tmp.join("hung-kustomize");
    let pid_file = tmp.join("grandchild.pid");
    std::fs::write(
        &tool,
        format!("#!/bin/sh\nsleep 600 &\necho $! > {}\nsleep 600\n", pid_file.display()),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (source, tool)
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

#[test]
fn a_hung_kustomize_is_stopped_at_the_tool_timeout_with_everything_it_started() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, tool) = source_with_a_kustomize_dir(tmp.path());
    let deploy = tmp.path().join("deploy");
    common::render(&data("bad-inputs/_good"), &deploy);
    let before = common::snapshot(&deploy);
    let started = Instant::now();
    let out = common::starmap()
        .env("STARMAP_KUSTOMIZE", &tool)
        .args(["render", "--tool-timeout", "2s", "--source"])
        .arg(&source)
        .arg("--deploy")
        .arg(&deploy)
        .timeout(Duration::from_secs(60))
        .output()
        .unwrap();
    let took = started.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr.trim(),
        "error: workloads/web/extra: kustomize build did not finish within 2s and was stopped (--tool-timeout)"
    );
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert_eq!(common::snapshot(&deploy), before, "the deploy repo is as it was");
    // The sleep the script started went with it (its process group was killed).
    let pid: i32 = std::fs::read_to_string(tmp.path().join("grandchild.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        controller_support::wait_for(Duration::from_secs(5), || !alive(pid)),
        "the tool's child {pid} still runs"
    );
}

/// A listener that accepts every connection and reads what comes, answering nothing.
fn silent_remote() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {}
            });
        }
    });
    port
}

#[test]
fn a_git_remote_that_never_answers_fails_at_the_git_timeout() {
    let port = silent_remote();
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache");
    let url = format!("http://127.0.0.1:{port}/fleet.git");
    for (what, args) in [
        ("source", vec!["validate", "--source", url.as_str()]),
        (
            "deploy",
            vec!["render", "--source", "SOURCE", "--deploy", url.as_str(), "--push"],
        ),
    ] {
        let good = data("bad-inputs/_good");
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "SOURCE" { good.to_str().unwrap() } else { a })
            .collect();
        let started = Instant::now();
        let out = common::starmap()
            .env("STARMAP_CACHE_DIR", &cache)
            .args(["--git-timeout", "2s"])
            .args(&args)
            .timeout(Duration::from_secs(120))
            .output()
            .unwrap();
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(&format!("127.0.0.1:{port}")),
            "{what}: {stderr}"
        );
        assert!(stderr.to_lowercase().contains("timed out"), "{what}: {stderr}");
        // libgit2 asks twice (its smart-HTTP probe and the request); each waits 2 s.
        assert!(took < Duration::from_secs(20), "{what}: took {took:?}");
    }
}

/// The controller's `/healthz` fails while a round is stuck past `--round-timeout`, and
/// recovers when the round ends (here: when the tool timeout stops the hung kustomize).
#[test]
fn healthz_fails_while_a_round_is_stuck_and_recovers() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, tool) = source_with_a_kustomize_dir(tmp.path());
    let deploy = tmp.path().join("deploy");
    let port = controller_support::free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut c = controller_support::start(
        &[
            "--source",
            source.to_str().unwrap(),
            "--deploy",
            deploy.to_str().unwrap(),
            "--listen",
            &listen,
            "--interval",
            "1h",
            "--status-interval",
            "0",
            "--round-timeout",
            "1s",
            "--tool-timeout",
            "6s",
        ],
        port,
        &[("STARMAP_KUSTOMIZE", tool.to_str().unwrap())],
    );
    let health = |c: &controller_support::Controller| c.get("/healthz").unwrap_or((0, String::new()));
    assert!(
        controller_support::wait_for(Duration::from_secs(5), || health(&c).0 == 503),
        "/healthz never failed: {:?}",
        health(&c)
    );
    let (_, body) = health(&c);
    assert!(
        body.contains("the render round has run for") && body.contains("past its deadline of 1s"),
        "{body}"
    );
    assert!(
        controller_support::wait_for(Duration::from_secs(20), || health(&c).0 == 200),
        "/healthz did not recover: {:?}",
        health(&c)
    );
    assert_eq!(health(&c).1, "ok\n");
    // The round failed on the tool timeout, and said so.
    let (code, ready) = c.get("/readyz").unwrap();
    assert_eq!(code, 503);
    assert!(ready.contains("did not finish within 6s"), "{ready}");
    c.signal(libc::SIGTERM);
    assert!(c.wait_exit(Duration::from_secs(30)).is_some_and(|s| s.success()));
}
