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
        Some(Fleet {
            kubeconfig,
            git_url,
            git_root: run.join("git"),
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
