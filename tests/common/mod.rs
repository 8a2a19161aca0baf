//! Helpers shared by the integration tests: running the real binary, real git repos in
//! temporary directories, and snapshots of a deploy repo to prove it did not change.
#![allow(dead_code)]

pub mod fleet;
pub mod registry;
pub mod reported;
pub mod waves;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The `starmap` binary built by cargo for this test run.
pub fn starmap() -> assert_cmd::Command {
    let mut cmd = assert_cmd::Command::cargo_bin("starmap").expect("starmap binary");
    // Deterministic commit identity, and no user config leaking in. The build cache is off
    // (each test counts its own tool runs); tests of the cache name a directory of their own.
    cmd.env("GIT_AUTHOR_NAME", "starmap-test")
        .env("STARMAP_BUILD_CACHE", "off")
        .env("GIT_AUTHOR_EMAIL", "test@starmap.invalid")
        .env("GIT_COMMITTER_NAME", "starmap-test")
        .env("GIT_COMMITTER_EMAIL", "test@starmap.invalid")
        .env_remove("STARMAP_LOG")
        .env_remove("STARMAP_SOURCE")
        .env_remove("STARMAP_DEPLOY")
        .env_remove("STARMAP_INVENTORY");
    cmd
}

/// Run `starmap args…`; its stdout, or a panic with its stderr.
pub fn starmap_ok(args: &[&str]) -> String {
    let out = starmap().args(args).output().expect("starmap runs");
    assert!(
        out.status.success(),
        "starmap {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The bundled example source repo.
pub fn fixtures() -> PathBuf {
    root().join("fixtures")
}

/// Test inputs written as real files under `tests/data/`.
pub fn data(rel: &str) -> PathBuf {
    root().join("tests").join("data").join(rel)
}

/// `../shared/data` beside the project: real files written by others.
pub fn shared_data(rel: &str) -> PathBuf {
    root().join("..").join("shared").join("data").join(rel)
}

/// Copy a directory tree (files and directories; symlinks as symlinks).
pub fn copy_dir(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from).follow_links(false) {
        let entry = entry.unwrap();
        let rel = entry.path().strip_prefix(from).unwrap();
        let dest = to.join(rel);
        let ft = entry.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
        } else if ft.is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap();
            std::os::unix::fs::symlink(target, &dest).unwrap();
        } else {
            std::fs::copy(entry.path(), &dest).unwrap();
        }
    }
}

/// Run the real `git` in `dir`, panicking with its output on failure.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "test")
        .env("GIT_AUTHOR_EMAIL", "test@example.invalid")
        .env("GIT_COMMITTER_NAME", "test")
        .env("GIT_COMMITTER_EMAIL", "test@example.invalid")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// Make `dir` a git repository with everything in it committed on `main`.
pub fn git_init_commit(dir: &Path) -> String {
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "initial", "--allow-empty"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Everything observable about a deploy repo: every ref, and every file of the work tree
/// (outside `.git`) with its bytes. Equal snapshots mean nothing changed.
#[derive(Debug, PartialEq, Eq)]
pub struct RepoSnapshot {
    pub refs: BTreeMap<String, String>,
    pub files: BTreeMap<String, Vec<u8>>,
}

pub fn snapshot(dir: &Path) -> RepoSnapshot {
    let mut refs = BTreeMap::new();
    if let Ok(repo) = git2::Repository::open(dir) {
        for r in repo.references().unwrap() {
            let r = r.unwrap();
            if let (Ok(name), Some(target)) = (r.name(), r.target()) {
                refs.insert(name.to_string(), target.to_string());
            }
        }
    }
    let mut files = BTreeMap::new();
    if dir.exists() {
        for entry in walkdir::WalkDir::new(dir)
            .into_iter()
            .filter_entry(|e| e.file_name() != ".git")
        {
            let entry = entry.unwrap();
            if entry.file_type().is_file() {
                let rel = entry.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                files.insert(rel, std::fs::read(entry.path()).unwrap());
            }
        }
    }
    RepoSnapshot { refs, files }
}

/// Files of the tree at `refname` in a repo (path → content), read with git2.
pub fn tree_files(dir: &Path, refname: &str) -> BTreeMap<String, String> {
    let repo = git2::Repository::open(dir).unwrap();
    let tree = repo.revparse_single(refname).unwrap().peel_to_tree().unwrap();
    let mut files = BTreeMap::new();
    tree.walk(git2::TreeWalkMode::PreOrder, |parent, e| {
        if e.kind() == Some(git2::ObjectType::Blob) {
            let blob = repo.find_blob(e.id()).unwrap();
            files.insert(
                format!("{parent}{}", e.name().unwrap()),
                String::from_utf8_lossy(blob.content()).into_owned(),
            );
        }
        git2::TreeWalkResult::Ok
    })
    .unwrap();
    files
}

/// Every object of a git repository (bare or not: `repo` is its git dir), decompressed and
/// concatenated, so that a test can search everything the repository holds.
pub fn every_git_object(repo: &Path) -> Vec<u8> {
    let out = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["cat-file", "--batch-all-objects", "--batch"])
        .output()
        .unwrap();
    assert!(out.status.success(), "git cat-file in {}", repo.display());
    out.stdout
}

/// Number of commits on `refname`.
pub fn commit_count(dir: &Path, refname: &str) -> usize {
    let repo = git2::Repository::open(dir).unwrap();
    let mut walk = repo.revwalk().unwrap();
    walk.push(repo.revparse_single(refname).unwrap().id()).unwrap();
    walk.count()
}

/// Render `source` into `deploy` and return stdout; panics unless it exits 0.
pub fn render(source: &Path, deploy: &Path) -> String {
    render_with(source, deploy, &[])
}

/// [`render`] with environment variables set (a tool, the build cache).
pub fn render_with(source: &Path, deploy: &Path, env: &[(&str, &std::ffi::OsStr)]) -> String {
    let out = starmap()
        .envs(env.iter().copied())
        .args(["render", "--source"])
        .arg(source)
        .arg("--deploy")
        .arg(deploy)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The file `name` in the first directory of PATH that has one.
pub fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    })
}

/// Run the real kustomize on a directory: `kubectl kustomize DIR`, or `kustomize build DIR`
/// where only kustomize is installed (as `.ci/run` arranges on a machine without kubectl).
pub fn kustomize_build(dir: &Path) -> std::process::Output {
    match on_path("kubectl") {
        Some(kubectl) => Command::new(kubectl).arg("kustomize").arg(dir).output(),
        None => Command::new(on_path("kustomize").expect("the tests need kubectl or kustomize"))
            .arg("build")
            .arg(dir)
            .output(),
    }
    .expect("kustomize runs")
}

/// Build a directory with the real kustomize and assert it succeeds.
pub fn kustomize_build_ok(dir: &Path, what: &str) {
    let out = kustomize_build(dir);
    assert!(
        out.status.success(),
        "kustomize build of {what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The kubeconfig of the real test fleet (`STARMAP_E2E_KUBECONFIG`, written by
/// `tests/e2e/up.sh`). Without it: `None`, after saying the test was skipped and how to run
/// it (`how`), unless `STARMAP_REQUIRE_FLEET` is set (CI), where a missing fleet fails.
pub fn fleet_kubeconfig(how: &str) -> Option<PathBuf> {
    let kubeconfig = std::env::var_os("STARMAP_E2E_KUBECONFIG").map(PathBuf::from);
    if kubeconfig.is_none() {
        assert!(
            std::env::var_os("STARMAP_REQUIRE_FLEET").is_none(),
            "STARMAP_REQUIRE_FLEET is set but STARMAP_E2E_KUBECONFIG is not"
        );
        eprintln!(
            "skipped: no real fleet; set STARMAP_E2E_KUBECONFIG to the kubeconfig written by {how} (docs/testing.md)"
        );
    }
    kubeconfig
}
