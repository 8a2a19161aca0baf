//! Sources and inventories given as git URLs: cloned into the cache and read at a ref,
//! without a work tree. Real repositories served through git's file:// transport.

mod common;

use common::{copy_dir, git, git_init_commit, starmap, tree_files};

#[test]
fn source_url_at_tag_reads_the_tag_not_the_branch_head() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("fleet");
    copy_dir(&common::fixtures(), &src);
    let tagged = git_init_commit(&src);
    git(&src, &["tag", "v1"]);
    // After the tag, the branch drops the pos placement (and the status summary about it).
    std::fs::remove_file(src.join("placements/pos.yaml")).unwrap();
    let summaries = src.join("status/summaries.yaml");
    let text = std::fs::read_to_string(&summaries).unwrap();
    let (kept, _pos) = text.split_once("\n---\n").expect("two summaries");
    std::fs::write(&summaries, kept).unwrap();
    git(&src, &["commit", "-q", "-am", "drop pos"]);

    let deploy = tmp.path().join("deploy");
    let url = format!("file://{}", src.display());
    let out = starmap()
        .env("STARMAP_CACHE_DIR", tmp.path().join("cache"))
        .args(["render", "--source", &format!("{url}@v1"), "--deploy"])
        .arg(&deploy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = tree_files(&deploy, "main");
    assert!(
        files.contains_key("clusters/store-0042/pos/deployment.apps_pos-backend.yaml"),
        "the tag has the pos placement"
    );
    let log = git(&deploy, &["log", "-1", "--format=%B"]);
    assert!(log.contains(&format!("Starmap-Source: {url}@v1")), "{log}");
    assert!(log.contains(&format!("Starmap-Source-Commit: {tagged}")), "{log}");
    assert!(
        tmp.path().join("cache/sources").read_dir().unwrap().count() == 1,
        "cloned into the cache"
    );

    // The branch head (default branch of the remote) no longer places pos.
    let out = starmap()
        .env("STARMAP_CACHE_DIR", tmp.path().join("cache"))
        .args(["render", "--source", &url, "--deploy"])
        .arg(&deploy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = tree_files(&deploy, "main");
    assert!(
        !files.contains_key("clusters/store-0042/pos/deployment.apps_pos-backend.yaml"),
        "pruned at the branch head"
    );
}

#[test]
fn inventory_from_a_git_url_is_merged_with_the_source() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("fleet");
    copy_dir(&common::fixtures(), &src);
    // Move the inventory out of the source into a repo of its own.
    let inv = tmp.path().join("inventory");
    std::fs::rename(src.join("inventory"), &inv).unwrap();
    git_init_commit(&inv);
    let deploy = tmp.path().join("deploy");
    let out = starmap()
        .env("STARMAP_CACHE_DIR", tmp.path().join("cache"))
        .args(["render", "--source"])
        .arg(&src)
        .args(["--inventory", &format!("file://{}@main", inv.display()), "--deploy"])
        .arg(&deploy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let clusters: std::collections::BTreeSet<String> = tree_files(&deploy, "main")
        .keys()
        .filter_map(|p| {
            p.strip_prefix("clusters/")
                .and_then(|r| r.split('/').next())
                .map(String::from)
        })
        .collect();
    assert_eq!(clusters.len(), 14, "{clusters:?}");
}

#[test]
fn unknown_ref_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("fleet");
    copy_dir(&common::fixtures(), &src);
    git_init_commit(&src);
    let out = starmap()
        .env("STARMAP_CACHE_DIR", tmp.path().join("cache"))
        .args(["validate", "--source", &format!("file://{}@no-such-tag", src.display())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ") && stderr.contains("no-such-tag"),
        "{stderr}"
    );
}
