//! Pushing to a remote deploy repo: a real bare repository and a real second writer.
//!
//! The second writer's push happens "between our clone and our push" through the test
//! hook `STARMAP_TEST_HOOK_BEFORE_PUSH` (a shell command starmap runs before each push);
//! that is the only seam: both pushes are real git pushes to a real bare repository. The
//! hook exists in debug builds only (the profile `cargo test` builds by default).

mod common;

use std::path::Path;

use common::{commit_count, git, starmap, tree_files};

/// Whether the binary under test runs the hook: a test built with debug assertions runs a
/// binary built with them.
fn hook_available() -> bool {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: STARMAP_TEST_HOOK_BEFORE_PUSH exists in debug builds only (this is a release test run)");
    }
    cfg!(debug_assertions)
}

/// A bare "remote" with one commit by someone else, and a clone of it for that writer.
fn remote_with_other_writer(tmp: &Path) -> (String, std::path::PathBuf) {
    let remote = tmp.join("deploy.git");
    git(tmp, &["init", "-q", "--bare", "-b", "main", remote.to_str().unwrap()]);
    let other = tmp.join("other");
    git(tmp, &["clone", "-q", remote.to_str().unwrap(), other.to_str().unwrap()]);
    std::fs::create_dir_all(other.join("docs")).unwrap();
    std::fs::write(other.join("docs/runbook.md"), "# runbook\n").unwrap();
    git(&other, &["checkout", "-q", "-b", "main"]);
    git(&other, &["add", "-A"]);
    git(&other, &["commit", "-q", "-m", "runbook"]);
    git(&other, &["push", "-q", "origin", "main"]);
    (format!("file://{}", remote.display()), other)
}

/// A hook that makes the other writer push a new commit; `once` makes it do so only the
/// first time it runs.
fn second_writer_hook(other: &Path, once: bool) -> String {
    let marker = other.join(".pushed-once");
    let guard = if once {
        format!("[ -e {m} ] && exit 0; touch {m};", m = marker.display())
    } else {
        String::new()
    };
    format!(
        "{guard} cd {dir} && date +%s%N >> docs/log.txt && git add docs/log.txt && \
         GIT_AUTHOR_NAME=other GIT_AUTHOR_EMAIL=other@example.invalid GIT_COMMITTER_NAME=other GIT_COMMITTER_EMAIL=other@example.invalid git commit -q -m 'other writer' && git push -q origin main",
        dir = other.display()
    )
}

#[test]
fn push_conflict_keeps_both_writers_changes() {
    if !hook_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (url, other) = remote_with_other_writer(tmp.path());
    let out = starmap()
        .env("STARMAP_CACHE_DIR", tmp.path().join("cache"))
        .env("STARMAP_TEST_HOOK_BEFORE_PUSH", second_writer_hook(&other, true))
        .args(["render", "--source"])
        .arg(common::fixtures())
        .args(["--deploy", &url, "--push"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "render --push failed: {stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("pushed main"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let remote = tmp.path().join("deploy.git");
    let files = tree_files(&remote, "main");
    assert!(
        files.contains_key("docs/runbook.md"),
        "the first commit of the other writer is kept"
    );
    assert!(
        files.contains_key("docs/log.txt"),
        "the commit the other writer pushed in between is kept"
    );
    assert!(
        files.contains_key("clusters/store-0042/kustomization.yaml"),
        "our render is there"
    );
    // runbook, the other writer's commit in between, then ours on top of it.
    assert_eq!(commit_count(&remote, "main"), 3);
    let log = git(&remote, &["log", "--format=%an %s", "main"]);
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines[0].starts_with("starmap-test starmap:"), "{log}");
    assert_eq!(lines[1], "other other writer", "{log}");
}

#[test]
fn push_gives_up_after_bounded_retries_and_loses_nothing() {
    if !hook_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (url, other) = remote_with_other_writer(tmp.path());
    let remote = tmp.path().join("deploy.git");
    let out = starmap()
        .env("STARMAP_CACHE_DIR", tmp.path().join("cache"))
        // The other writer pushes before every one of our attempts.
        .env("STARMAP_TEST_HOOK_BEFORE_PUSH", second_writer_hook(&other, false))
        .args(["render", "--source"])
        .arg(common::fixtures())
        .args(["--deploy", &url, "--push"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: push to") && stderr.contains("rejected"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    // Every push of the other writer landed; none of ours did.
    let files = tree_files(&remote, "main");
    assert!(!files.contains_key("clusters/store-0042/kustomization.yaml"));
    let log = git(&remote, &["log", "--format=%an", "main"]);
    assert!(log.lines().all(|l| l == "other" || l == "test"), "{log}");
}

#[test]
fn render_into_remote_twice_pushes_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _other) = remote_with_other_writer(tmp.path());
    let run = || {
        starmap()
            .env("STARMAP_CACHE_DIR", tmp.path().join("cache"))
            .args(["render", "--source"])
            .arg(common::fixtures())
            .args(["--deploy", &url, "--push"])
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    let second = run();
    assert!(second.status.success());
    assert!(String::from_utf8_lossy(&second.stdout).contains("no changes"));
    assert_eq!(commit_count(&tmp.path().join("deploy.git"), "main"), 2);
}

#[test]
fn render_into_a_url_without_push_commits_only_in_the_cache_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (url, _other) = remote_with_other_writer(tmp.path());
    let out = starmap()
        .env("STARMAP_CACHE_DIR", tmp.path().join("cache"))
        .args(["render", "--source"])
        .arg(common::fixtures())
        .args(["--deploy", &url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("note: committed in the local cache only; add --push"),
        "{stdout}"
    );
    assert_eq!(
        commit_count(&tmp.path().join("deploy.git"), "main"),
        1,
        "the remote is untouched"
    );
}
