//! Running the real `starmap run` in tests: the process (killed on drop, stderr kept), a free
//! port, a plain HTTP/1.1 client over a TCP socket, and the Prometheus text parsed with
//! prometheus-parse. A test that uses it declares `mod common;` too (git and fixtures come from there).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Controller {
    pub child: Child,
    pub port: u16,
    pub stderr: PathBuf,
    _stderr_dir: tempfile::TempDir,
}

/// `starmap run` with `args` (and `-v`); `port` is where it is expected to listen.
pub fn start(args: &[&str], port: u16, env: &[(&str, &str)]) -> Controller {
    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("stderr");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_starmap"));
    cmd.arg("-v")
        .arg("run")
        .args(args)
        .env("GIT_AUTHOR_NAME", "starmap-test")
        .env("GIT_AUTHOR_EMAIL", "test@starmap.invalid")
        .env("GIT_COMMITTER_NAME", "starmap-test")
        .env("GIT_COMMITTER_EMAIL", "test@starmap.invalid")
        .env("NO_COLOR", "1")
        .env_remove("STARMAP_LOG")
        .env_remove("STARMAP_SOURCE")
        .env_remove("STARMAP_DEPLOY")
        .env_remove("STARMAP_INVENTORY")
        .env_remove("STARMAP_BRANCH")
        .env_remove("STARMAP_WEBHOOK_SECRET")
        .env_remove("POD_NAMESPACE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    Controller {
        child: cmd.spawn().expect("starmap runs"),
        port,
        stderr,
        _stderr_dir: dir,
    }
}

impl Controller {
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        http(self.port, "GET", path, &[], b"").ok()
    }

    pub fn post(&self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
        http(self.port, "POST", path, headers, body).unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.logs()))
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Wait until `/readyz` answers 200, panicking with the logs after `within`.
    pub fn wait_ready(&mut self, within: Duration) {
        let ok = wait_for(within, || self.get("/readyz").is_some_and(|(code, _)| code == 200));
        if !ok {
            let _ = self.child.kill();
            panic!("not ready within {within:?}; logs:\n{}", self.logs());
        }
    }

    pub fn metrics(&self) -> Metrics {
        let (code, text) = self
            .get("/metrics")
            .unwrap_or_else(|| panic!("no /metrics; logs:\n{}", self.logs()));
        assert_eq!(code, 200, "{text}");
        Metrics::parse(&text)
    }

    pub fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Wait for the process to exit, up to `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Poll `check` every 100 ms until it holds or `within` passed.
pub fn wait_for(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One HTTP/1.1 request with `Connection: close`; the status code and body.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes())?;
    s.write_all(body)?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let bad = || std::io::Error::other(format!("not an HTTP response: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(bad)?;
    Ok((code, body.to_string()))
}

/// A scrape, parsed by prometheus-parse.
pub struct Metrics(pub prometheus_parse::Scrape);

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let lines = text.lines().map(|l| Ok(l.to_string()));
        Metrics(prometheus_parse::Scrape::parse(lines).expect("Prometheus text format"))
    }

    /// The value of the counter, gauge or untyped sample `name` with exactly these labels.
    pub fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .find_map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => Some(v),
                _ => None,
            })
    }

    /// Observations of histogram `name` (its `+Inf` bucket).
    pub fn histogram_count(&self, name: &str) -> Option<f64> {
        self.0
            .samples
            .iter()
            .filter(|s| s.metric == name)
            .find_map(|s| match &s.value {
                prometheus_parse::Value::Histogram(buckets) => {
                    buckets.iter().find(|b| b.less_than.is_infinite()).map(|b| b.count)
                }
                _ => None,
            })
    }
}

/// The fixtures as a git repo (one commit on `main`) at `dir/source`.
pub fn source_repo(dir: &Path) -> PathBuf {
    let source = dir.join("source");
    crate::common::copy_dir(&crate::common::fixtures(), &source);
    git(&source, &["init", "-q", "-b", "main"]);
    git(&source, &["add", "-A"]);
    git(&source, &["commit", "-q", "-m", "initial"]);
    source
}

/// Run the real `git` in `dir` (the shared test helper).
pub use crate::common::git;

/// Replace `from` by `to` in `file` of the source repo and commit it.
pub fn commit_change(source: &Path, file: &str, from: &str, to: &str) {
    let path = source.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{file} has no {from:?}");
    std::fs::write(&path, text.replace(from, to)).unwrap();
    git(source, &["commit", "-q", "-am", &format!("{from} -> {to}")]);
}

/// Commits on `main` of the deploy repo (0 while it does not exist).
pub fn deploy_commits(deploy: &Path) -> usize {
    let Ok(repo) = git2::Repository::open(deploy) else {
        return 0;
    };
    let Ok(tip) = repo.revparse_single("refs/heads/main") else {
        return 0;
    };
    let mut walk = repo.revwalk().unwrap();
    walk.push(tip.id()).unwrap();
    walk.count()
}

/// A file of the deploy repo's `main` tip.
pub fn deploy_file(deploy: &Path, path: &str) -> Option<String> {
    branch_file(deploy, "main", path)
}

/// A file at the tip of a branch of the deploy repo (`starmap-status` holds status).
pub fn branch_file(deploy: &Path, branch: &str, path: &str) -> Option<String> {
    let repo = git2::Repository::open(deploy).ok()?;
    let tree = repo
        .revparse_single(&format!("refs/heads/{branch}"))
        .ok()?
        .peel_to_tree()
        .ok()?;
    let entry = tree.get_path(Path::new(path)).ok()?;
    let blob = repo.find_blob(entry.id()).ok()?;
    Some(String::from_utf8_lossy(blob.content()).into_owned())
}
