//! End to end on the real Flux fleet (api.md §7): a Secret encrypted with the real `sops` for a
//! fresh age key (both built from the Go module proxy by `tests/e2e/build.sh`) is rendered and
//! committed as ciphertext; each cluster's real kustomize-controller decrypts it with the key
//! (`flux.decryption` in starmap.yaml); the live Secret holds the plaintext, and no byte of
//! the deploy repo does, status branch included.
//!
//! Needs the harness with Flux: `tests/e2e/up.sh 3 store-0042 store-1001 store-2001` and
//! `STARMAP_E2E_KUBECONFIG=$STARMAP_E2E_RUN/kubeconfig` (docs/testing.md). Without it the test
//! says it was skipped and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::fleet::Fleet;
use common::{copy_dir, every_git_object, git, starmap_ok as starmap};

const CLUSTERS: [&str; 3] = ["store-0042", "store-1001", "store-2001"];
const PASSWORD: &str = "scrape-password-e2e-Yh62";

fn tool(name: &str) -> PathBuf {
    common::registry::tool(name)
        .unwrap_or_else(|| panic!("`{name}` is needed with the fleet: tests/e2e/build.sh builds it"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().expect("the tool runs");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh age key: (the key file, its public key).
fn age_key(dir: &Path) -> (PathBuf, String) {
    let key = dir.join("age.agekey");
    run(Command::new(tool("age-keygen")).arg("-o").arg(&key));
    let text = std::fs::read_to_string(&key).unwrap();
    let public = text
        .lines()
        .find_map(|l| l.strip_prefix("# public key: "))
        .expect("age-keygen writes the public key")
        .to_string();
    (key, public)
}

#[test]
fn flux_decrypts_a_sops_secret_that_git_only_ever_holds_encrypted() {
    let Some(fleet) = Fleet::from_env(&format!("`tests/e2e/up.sh 3 {}`", CLUSTERS.join(" "))) else {
        return;
    };
    let scratch = tempfile::tempdir().unwrap();
    let (key, public) = age_key(scratch.path());

    // The source: the fixtures, decryption on, and a Secret encrypted by the real sops.
    let source = scratch.path().join("source");
    copy_dir(&common::fixtures(), &source);
    let repo_name = format!("deploy-secrets-{}.git", std::process::id());
    std::fs::write(
        source.join("starmap.yaml"),
        format!(
            "ignore: [drafts/**, .github/**]\ndeploy:\n  url: {}/{repo_name}\n  branch: main\n\
             flux:\n  interval: 3s\n  syncInterval: 30s\n  timeout: 2m\n  decryption: {{provider: sops, secretRef: sops-age}}\n",
            fleet.git_url
        ),
    )
    .unwrap();
    let plain = scratch.path().join("plain.yaml");
    std::fs::write(
        &plain,
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: scrape-credentials\n  namespace: monitoring\n\
             type: Opaque\nstringData:\n  username: prometheus\n  password: {PASSWORD}\n"
        ),
    )
    .unwrap();
    let encrypted = run(Command::new(tool("sops"))
        .args([
            "--encrypt",
            "--age",
            &public,
            "--encrypted-regex",
            "^(data|stringData)$",
        ])
        .arg(&plain));
    assert!(encrypted.contains("ENC[AES256_GCM") && !encrypted.contains(PASSWORD));
    std::fs::write(source.join("workloads/monitoring/scrape-credentials.yaml"), &encrypted).unwrap();

    // The key, where each cluster's kustomize-controller looks for it.
    for cluster in CLUSTERS {
        let manifest = fleet
            .kubectl(
                cluster,
                &[
                    "create",
                    "secret",
                    "generic",
                    "sops-age",
                    "-n",
                    "flux-system",
                    "--dry-run=client",
                    "-o",
                    "yaml",
                    &format!("--from-file=age.agekey={}", key.display()),
                ],
            )
            .unwrap();
        let file = scratch.path().join(format!("sops-age-{cluster}.yaml"));
        std::fs::write(&file, manifest).unwrap();
        fleet
            .kubectl(cluster, &["apply", "-f", file.to_str().unwrap()])
            .unwrap_or_else(|e| panic!("{cluster}: {e}"));
    }

    // Render, bootstrap each cluster's Flux, wait until it applied the commit.
    let repo = fleet.git_root.join(&repo_name);
    git(&fleet.git_root, &["init", "-q", "--bare", "-b", "main", &repo_name]);
    let (src, deploy) = (source.to_str().unwrap(), repo.to_str().unwrap());
    starmap(&["render", "--source", src, "--deploy", deploy]);
    let commit = git(&repo, &["rev-parse", "main"]);
    fleet.bootstrap_flux(&repo, "main", &CLUSTERS, scratch.path());
    let want = format!("main@sha1:{commit}");
    fleet.wait_kustomizations(
        &CLUSTERS,
        "flux-system",
        "starmap",
        Duration::from_secs(180),
        &want,
        |ks| ks["status"]["lastAppliedRevision"].as_str() == Some(want.as_str()),
    );

    // Live: the plaintext, decrypted on the edge.
    for cluster in CLUSTERS {
        let secret = fleet
            .kubectl_json(
                cluster,
                &["get", "secret", "-n", "monitoring", "scrape-credentials", "-o", "json"],
            )
            .unwrap_or_else(|e| panic!("{cluster}: {e}"));
        let decode = |k: &str| {
            let b64 = secret["data"][k]
                .as_str()
                .unwrap_or_else(|| panic!("{cluster}: no data.{k}"));
            String::from_utf8(base64::engine::general_purpose::STANDARD.decode(b64).unwrap()).unwrap()
        };
        assert_eq!(decode("password"), PASSWORD, "{cluster}");
        assert_eq!(decode("username"), "prometheus", "{cluster}");
        assert!(
            secret.get("sops").is_none(),
            "{cluster}: the sops metadata is not applied"
        );
        eprintln!("{cluster}: the live Secret holds the decrypted value");
    }

    // Status of the live Secret back into git: health only.
    let out = common::starmap()
        .args(["status", "collect", "--source", src, "--deploy", deploy, "--kubeconfig"])
        .arg(&fleet.kubeconfig)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let status = git(&repo, &["show", "starmap-status:status/clusters/store-0042.yaml"]);
    assert!(status.contains("name: scrape-credentials"), "{status}");

    // Git: ciphertext only, on every branch, in every object.
    let objects = every_git_object(&repo);
    assert!(objects.len() > 100_000);
    let encoded = base64::engine::general_purpose::STANDARD.encode(PASSWORD);
    for needle in [PASSWORD, encoded.as_str()] {
        assert!(
            !objects.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle} is in the deploy repo"
        );
    }
}
