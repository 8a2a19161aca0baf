//! Running the external tools that build kustomize and Helm sources. They are found on
//! `PATH`, or named by `STARMAP_KUSTOMIZE` / `STARMAP_HELM` (a command, e.g. a wrapper).

use std::path::Path;
use std::process::Command;

use crate::error::{Error, Location, Result};

/// `kustomize build DIR`, or `kubectl kustomize DIR` where only kubectl is installed.
pub fn kustomize_build(dir: &Path, shown: &str) -> Result<String> {
    let mut cmd = if let Some(tool) = std::env::var_os("STARMAP_KUSTOMIZE") {
        let mut c = Command::new(tool);
        c.arg("build");
        c
    } else if which("kustomize") {
        let mut c = Command::new("kustomize");
        c.arg("build");
        c
    } else if which("kubectl") {
        let mut c = Command::new("kubectl");
        c.arg("kustomize");
        c
    } else {
        return Err(Error::at(
            Location::new(shown, 0),
            "kustomize source: neither `kustomize` nor `kubectl` is installed (one is needed to build it)",
        ));
    };
    cmd.arg(dir);
    run(cmd, shown, "kustomize build")
}

/// `helm template RELEASE DIR --namespace NS --values FILE`.
pub fn helm_template(dir: &Path, release: &str, namespace: &str, values: &Path, shown: &str) -> Result<String> {
    let tool = std::env::var_os("STARMAP_HELM").unwrap_or_else(|| "helm".into());
    if std::env::var_os("STARMAP_HELM").is_none() && !which("helm") {
        return Err(Error::at(
            Location::new(shown, 0),
            "Helm source: `helm` is not installed (it is needed to render the chart)",
        ));
    }
    let mut cmd = Command::new(tool);
    cmd.arg("template")
        .arg(release)
        .arg(dir)
        .arg("--namespace")
        .arg(namespace)
        .arg("--values")
        .arg(values);
    run(cmd, shown, "helm template")
}

fn run(mut cmd: Command, shown: &str, what: &str) -> Result<String> {
    let out = cmd
        .output()
        .map_err(|e| Error::at(Location::new(shown, 0), format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("no message")
            .trim();
        return Err(Error::at(Location::new(shown, 0), format!("{what} failed: {first}")));
    }
    String::from_utf8(out.stdout)
        .map_err(|_| Error::at(Location::new(shown, 0), format!("{what} printed non-UTF-8 output")))
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()))
        .unwrap_or(false)
}
