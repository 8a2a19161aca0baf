//! Secrets (api.md §7): a plaintext Secret is refused unless `secrets.allowPlaintext`; a
//! SOPS-encrypted one passes through exactly as written (and still decrypts with the real
//! `sops`), and a customization that would change it is an error; `flux.decryption` reaches
//! every generated Kustomization, valid against the real Flux CRD.
//!
//! `tests/data/sops/secret.enc.yaml` was encrypted with the real sops (v3.13.2) for the age
//! key beside it, a key made for these tests and for nothing else.

mod common;

use std::path::{Path, PathBuf};

use common::{copy_dir, data, starmap, tree_files};
use serde_json::Value;

/// What the encrypted Secret holds, in plaintext.
const PASSWORD: &str = "plaintext-in-the-source-Kd83";
const TOKEN: &str = "plaintext-token-Rt55";

/// `_good/` (two clusters; `workloads/web/**` placed on both) with `starmap.yaml` set to
/// `config` and the SOPS-encrypted Secret among the workloads.
fn source_with_sops_secret(tmp: &Path, config: &str) -> PathBuf {
    let source = tmp.join("source");
    copy_dir(&data("bad-inputs/_good"), &source);
    std::fs::write(source.join("starmap.yaml"), config).unwrap();
    std::fs::copy(
        data("sops/secret.enc.yaml"),
        source.join("workloads/web/secret.enc.yaml"),
    )
    .unwrap();
    source
}

fn render(source: &Path, deploy: &Path) -> std::process::Output {
    starmap()
        .args(["render", "--source"])
        .arg(source)
        .arg("--deploy")
        .arg(deploy)
        .output()
        .unwrap()
}

/// A YAML document as JSON text with its keys in document order: equal texts mean the same
/// keys in the same order and the same values.
fn ordered(yaml: &str) -> String {
    let value: Value = serde_saphyr::from_str(yaml).unwrap();
    serde_json::to_string(&value).unwrap()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle.as_bytes())
}

#[test]
fn a_sops_secret_is_committed_exactly_as_written_and_still_decrypts() {
    let tmp = tempfile::tempdir().unwrap();
    let source = source_with_sops_secret(
        tmp.path(),
        "deploy: {url: https://git.example.com/deploy.git}\nflux: {decryption: {provider: sops, secretRef: sops-age}}\n",
    );
    let deploy = tmp.path().join("deploy");
    let out = render(&source, &deploy);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = tree_files(&deploy, "main");
    let written = std::fs::read_to_string(data("sops/secret.enc.yaml")).unwrap();
    for cluster in ["lab-1", "store-0001"] {
        let committed = &files[&format!("clusters/{cluster}/pos/secret_db-credentials.yaml")];
        assert_eq!(
            ordered(committed),
            ordered(&written),
            "{cluster}: same keys, same order, same values"
        );
        // Every generated Kustomization decrypts with the key Secret.
        let sync = &files[&format!("flux/{cluster}/gotk-sync.yaml")];
        assert!(
            sync.contains("  decryption:\n    provider: sops\n    secretRef:\n      name: sops-age\n"),
            "{sync}"
        );
    }
    // Git holds ciphertext only: no plaintext in any object of the deploy repo.
    let objects = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(deploy.join(".git"))
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .output()
        .unwrap();
    assert!(objects.stdout.len() > 1000);
    for plain in [PASSWORD, TOKEN, "cGxhaW50ZXh0LXRva2VuLVJ0NTU="] {
        assert!(!contains(&objects.stdout, plain), "{plain} is in the deploy repo");
    }
    // The real sops still decrypts what was committed: its MAC over every value holds.
    let Some(sops) = common::registry::tool("sops") else {
        assert!(
            std::env::var_os("STARMAP_REQUIRE_TOOLS").is_none(),
            "sops is required (STARMAP_REQUIRE_TOOLS is set): run tests/e2e/build.sh"
        );
        eprintln!("skipped the decryption check: no `sops` binary (tests/e2e/build.sh builds it)");
        return;
    };
    let committed = tmp.path().join("committed.yaml");
    std::fs::write(&committed, &files["clusters/store-0001/pos/secret_db-credentials.yaml"]).unwrap();
    let out = std::process::Command::new(sops)
        .env("SOPS_AGE_KEY_FILE", data("sops/age.agekey"))
        .args(["--decrypt", "--input-type", "yaml", "--output-type", "yaml"])
        .arg(&committed)
        .output()
        .unwrap();
    let plain = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        plain.contains(PASSWORD) && plain.contains("cGxhaW50ZXh0LXRva2VuLVJ0NTU="),
        "{plain}"
    );
}

#[test]
fn a_customization_that_would_change_a_sops_secret_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let source = source_with_sops_secret(tmp.path(), "");
    // A label on everything in namespace pos: the encrypted Secret included.
    std::fs::write(
        source.join("customizations/pos-labels.yaml"),
        "apiVersion: starmap.dev/v1alpha1\nkind: Customization\nmetadata:\n  name: pos-labels\nspec:\n  targets:\n  - namespaces: [pos]\n  merge:\n    metadata:\n      labels:\n        store: \"{{ cluster.properties.storeId }}\"\n",
    )
    .unwrap();
    let deploy = tmp.path().join("deploy");
    let out = render(&source, &deploy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for part in [
        "error: customizations/pos-labels.yaml:",
        "cluster lab-1",
        "Secret/pos/db-credentials",
        "customization \"pos-labels\"",
        "encrypted with SOPS",
    ] {
        assert!(stderr.contains(part), "{part:?} not in {stderr}");
    }
    assert!(!deploy.exists(), "nothing was written");
    // Leaving the Secret out with the target's kinds makes it fine.
    std::fs::write(
        source.join("customizations/pos-labels.yaml"),
        "apiVersion: starmap.dev/v1alpha1\nkind: Customization\nmetadata:\n  name: pos-labels\nspec:\n  targets:\n  - namespaces: [pos]\n    kinds: [ConfigMap, Deployment]\n  merge:\n    metadata:\n      labels:\n        store: \"{{ cluster.properties.storeId }}\"\n",
    )
    .unwrap();
    let out = render(&source, &deploy);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_plaintext_secret_is_refused_unless_allowed_and_then_each_is_a_warning() {
    let tmp = tempfile::tempdir().unwrap();
    let source = tmp.path().join("source");
    copy_dir(&data("bad-inputs/_good"), &source);
    std::fs::write(
        source.join("workloads/web/secret.yaml"),
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: api-key\n  namespace: web\nstringData:\n  key: hunter2\n",
    )
    .unwrap();
    let deploy = tmp.path().join("deploy");
    let out = render(&source, &deploy);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: workloads/web/secret.yaml:6: Secret/web/api-key: a Secret with plaintext in stringData"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("encrypt it with SOPS") && stderr.contains("allowPlaintext"),
        "{stderr}"
    );
    assert!(!deploy.exists());

    std::fs::write(source.join("starmap.yaml"), "secrets: {allowPlaintext: true}\n").unwrap();
    let out = render(&source, &deploy);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr
            .matches("workloads/web/secret.yaml:6: Secret/web/api-key is committed in plaintext")
            .count(),
        1,
        "one warning for the Secret, not one per cluster: {stderr}"
    );
    let files = tree_files(&deploy, "main");
    assert!(files["clusters/lab-1/web/secret_api-key.yaml"].contains("hunter2"));
}

#[test]
fn a_sops_secret_validates_against_the_kubernetes_schema_without_its_sops_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let source = source_with_sops_secret(tmp.path(), "");
    let out = starmap()
        .args(["validate", "-o", "json", "--source"])
        .arg(&source)
        .arg("--schemas")
        .arg(common::shared_data("k8s-json-schema/v1.30.10-standalone-strict"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["schemas"]["invalid"], serde_json::json!([]), "{report}");
}
