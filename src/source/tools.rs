//! Running the external tools that build kustomize and Helm sources. They are found on
//! `PATH`, or named by `STARMAP_KUSTOMIZE` / `STARMAP_HELM` (a command, e.g. a wrapper).
//!
//! Each run is bounded: it is killed (with every process it started) after the tool timeout
//! (`--tool-timeout`, default 5 minutes), and its output may not pass [`MAX_TOOL_OUTPUT`].

use std::ffi::OsString;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Location, Result};

/// The most a tool may print: 256 MiB (the largest public Helm charts render to a few MB).
pub const MAX_TOOL_OUTPUT: u64 = 256 << 20;

/// The default of `--tool-timeout`.
pub const DEFAULT_TOOL_TIMEOUT: Duration = Duration::from_secs(300);

static TIMEOUT_MS: AtomicU64 = AtomicU64::new(DEFAULT_TOOL_TIMEOUT.as_millis() as u64);

/// How long one run of kustomize or helm may take (process-wide; the CLI sets it once).
pub fn set_timeout(timeout: Duration) {
    TIMEOUT_MS.store(timeout.as_millis().max(1) as u64, Ordering::Relaxed);
}

fn timeout() -> Duration {
    Duration::from_millis(TIMEOUT_MS.load(Ordering::Relaxed))
}

/// A tool as this machine runs it: the program and the subcommand.
pub struct Tool {
    program: OsString,
    subcommand: &'static str,
}

impl Tool {
    /// `kustomize build`, or `kubectl kustomize` where only kubectl is installed
    /// (`STARMAP_KUSTOMIZE` names a command that takes `build DIR`).
    pub fn kustomize(shown: &str) -> Result<Tool> {
        let (program, subcommand) = if let Some(tool) = std::env::var_os("STARMAP_KUSTOMIZE") {
            (tool, "build")
        } else if which("kustomize") {
            ("kustomize".into(), "build")
        } else if which("kubectl") {
            ("kubectl".into(), "kustomize")
        } else {
            return Err(Error::at(
                Location::new(shown, 0),
                "kustomize source: neither `kustomize` nor `kubectl` is installed (one is needed to build it)",
            ));
        };
        Ok(Tool { program, subcommand })
    }

    /// `helm template` (`STARMAP_HELM` names the command).
    pub fn helm(shown: &str) -> Result<Tool> {
        let program = std::env::var_os("STARMAP_HELM").unwrap_or_else(|| "helm".into());
        if std::env::var_os("STARMAP_HELM").is_none() && !which("helm") {
            return Err(Error::at(
                Location::new(shown, 0),
                "Helm source: `helm` is not installed (it is needed to render the chart)",
            ));
        }
        Ok(Tool {
            program,
            subcommand: "template",
        })
    }

    /// Who the tool is, for the build cache's keys: a different executable (an upgrade) or
    /// subcommand is a different tool.
    pub fn identity(&self) -> String {
        format!(
            "{} {}",
            super::build_cache::tool_identity(Path::new(&self.program)),
            self.subcommand
        )
    }

    /// `kustomize build DIR`.
    pub fn kustomize_build(&self, dir: &Path, shown: &str) -> Result<String> {
        let mut cmd = Command::new(&self.program);
        cmd.arg(self.subcommand).arg(dir);
        run(cmd, shown, "kustomize build")
    }

    /// `helm template RELEASE DIR --namespace NS --values FILE`.
    pub fn helm_template(
        &self,
        dir: &Path,
        release: &str,
        namespace: &str,
        values: &Path,
        shown: &str,
    ) -> Result<String> {
        let mut cmd = Command::new(&self.program);
        cmd.arg(self.subcommand)
            .arg(release)
            .arg(dir)
            .arg("--namespace")
            .arg(namespace)
            .arg("--values")
            .arg(values);
        run(cmd, shown, "helm template")
    }
}

/// Helm's own library in one long-lived process (`tools/helm-library`, named by
/// `STARMAP_HELM_LIBRARY`): renders many value sets of a chart at once, each byte for byte as
/// `helm template` prints it, without a helm process per set.
pub struct HelmLibrary {
    program: OsString,
}

impl HelmLibrary {
    pub fn from_env() -> Option<HelmLibrary> {
        std::env::var_os("STARMAP_HELM_LIBRARY")
            .filter(|p| !p.is_empty())
            .map(|program| HelmLibrary { program })
    }

    /// Who renders, for the build cache's keys.
    pub fn identity(&self) -> String {
        format!(
            "{} helm-library",
            super::build_cache::tool_identity(Path::new(&self.program))
        )
    }

    /// Each value set's output (`values` are YAML or JSON texts), `None` for a set it could not
    /// render: `helm template` then runs for that set, so its error is helm's own. `Err` when
    /// the helper cannot run at all.
    pub fn render_many(
        &self,
        dir: &Path,
        release: &str,
        namespace: &str,
        values: &[&str],
        shown: &str,
    ) -> Result<Vec<Option<String>>> {
        let io = |e: std::io::Error| Error::at(Location::new(shown, 0), format!("helm-library: {e}"));
        let work = tempfile::tempdir().map_err(io)?;
        let (inputs, outputs) = (work.path().join("values"), work.path().join("out"));
        std::fs::create_dir(&inputs).map_err(io)?;
        std::fs::create_dir(&outputs).map_err(io)?;
        let name = |i: usize| format!("{i:07}.yaml");
        for (i, v) in values.iter().enumerate() {
            std::fs::write(inputs.join(name(i)), v).map_err(io)?;
        }
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
        let mut cmd = Command::new(&self.program);
        cmd.arg("-workers")
            .arg(workers.to_string())
            .arg(release)
            .arg(namespace)
            .arg(dir)
            .arg(&inputs)
            .arg(&outputs);
        run(cmd, shown, "helm-library")?;
        Ok((0..values.len())
            .map(|i| {
                let file: PathBuf = outputs.join(name(i));
                let small = std::fs::metadata(&file).is_ok_and(|m| m.len() <= MAX_TOOL_OUTPUT);
                small.then(|| std::fs::read_to_string(&file).ok()).flatten()
            })
            .collect())
    }
}

fn run(mut cmd: Command, shown: &str, what: &str) -> Result<String> {
    let at = || Location::new(shown, 0);
    // A process group of its own, so a timeout kills what the tool started too (a wrapper
    // script's children would otherwise keep its output open).
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::at(at(), format!("cannot run {what}: {e}")))?;
    let read = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(pipe) = pipe {
                // One byte past the limit tells "too much" from "exactly the limit".
                let _ = pipe.take(MAX_TOOL_OUTPUT + 1).read_to_end(&mut buf);
            }
            buf
        })
    };
    let stdout = read(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = read(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let limit = timeout();
    let deadline = Instant::now() + limit;
    // Polled from 1 ms, doubling to 20: most runs take well under a second, and a fixed
    // 20 ms sleep would add 10 ms on average to each of a thousand `helm template` runs.
    let mut pause = Duration::from_millis(1);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Ok(None) => {
                kill_group(&mut child);
                return Err(Error::at(
                    at(),
                    format!(
                        "{what} did not finish within {} and was stopped (--tool-timeout)",
                        crate::time::human(limit)
                    ),
                ));
            }
            Err(e) => {
                kill_group(&mut child);
                return Err(Error::at(at(), format!("{what}: {e}")));
            }
        }
    };
    // The tool is gone; whatever it started in its group goes with it, so the pipes close.
    kill_group(&mut child);
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        let stderr = String::from_utf8_lossy(&stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .trim();
        return Err(Error::at(at(), format!("{what} failed: {first}")));
    }
    if stdout.len() as u64 > MAX_TOOL_OUTPUT {
        return Err(Error::at(
            at(),
            format!("{what} printed more than {} MiB", MAX_TOOL_OUTPUT >> 20),
        ));
    }
    String::from_utf8(stdout).map_err(|_| Error::at(at(), format!("{what} printed non-UTF-8 output")))
}

/// Kill the child's whole process group (it leads one of its own) and reap the child.
fn kill_group(child: &mut std::process::Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
    let _ = child.wait();
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}
