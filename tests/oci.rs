//! OCI delivery against a real registry (CNCF Distribution, built from the Go module proxy by
//! `tests/e2e/build.sh`): one artifact per cluster in the format `flux push artifact` makes,
//! pushed only when its layer changed, tags moved only after the render commit lands, a
//! registry that is down or stops mid-push and a render killed mid-push repaired by the next
//! render, and the same deploy commit giving the same digests in two fresh registries.
//!
//! Without the registry binary these tests print `skipped: ...` and pass (with
//! `STARMAP_REQUIRE_TOOLS` set, as in CI, they fail instead).

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::registry::{self, Registry, layer_files};
use common::{copy_dir, fixtures, git, starmap, tree_files};
use serde_json::Value;

const REPO: &str = "retail/fleet";

/// A source: the fixtures, or a generated fleet of `n` clusters, delivering to `registry`.
fn source(dir: &Path, registry: &Registry, generated: Option<usize>) -> PathBuf {
    let src = dir.join("src");
    match generated {
        None => copy_dir(&fixtures(), &src),
        Some(n) => generate(&src, n),
    }
    let config = src.join("starmap.yaml");
    let mut text = std::fs::read_to_string(&config).unwrap_or_default();
    if generated.is_some() {
        text.push_str("deploy: {url: https://git.example.com/fleet.git}\n");
    }
    let _ = writeln!(text, "oci: {{repository: {}/{REPO}, insecure: true}}", registry.host());
    std::fs::write(&config, text).unwrap();
    src
}

/// `n` clusters, each with a Namespace and a ConfigMap that names its store.
fn generate(src: &Path, n: usize) {
    std::fs::create_dir_all(src.join("workloads")).unwrap();
    let mut inventory = String::new();
    for i in 0..n {
        let _ = write!(
            inventory,
            "---\napiVersion: starmap.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: edge-{i:04}\n  labels: {{tier: edge}}\nspec:\n  properties: {{store: \"{i:04}\", release: \"1\"}}\n"
        );
    }
    std::fs::write(src.join("inventory.yaml"), inventory).unwrap();
    std::fs::write(
        src.join("workloads/app.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: app\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: store\n  namespace: app\n  annotations:\n    starmap.dev/template: \"true\"\ndata:\n  store: \"{{ cluster.properties.store }}\"\n  release: \"{{ cluster.properties.release }}\"\n",
    )
    .unwrap();
    std::fs::write(
        src.join("placement.yaml"),
        "apiVersion: starmap.dev/v1alpha1\nkind: Placement\nmetadata:\n  name: app\nspec:\n  clusterSelectors: [{matchLabels: {tier: edge}}]\n  workloads: [{paths: [\"workloads/**\"]}]\n",
    )
    .unwrap();
}

/// Set every generated cluster's `release` property.
fn set_release(src: &Path, release: usize) {
    let path = src.join("inventory.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let mut out = String::new();
    for line in text.lines() {
        match line.find("release: \"") {
            Some(at) => {
                let _ = writeln!(out, "{}release: \"{release}\"}}", &line[..at]);
            }
            None => {
                let _ = writeln!(out, "{line}");
            }
        }
    }
    std::fs::write(&path, out).unwrap();
}

fn render(src: &Path, deploy: &Path) -> std::process::Output {
    starmap()
        .args(["render", "--source"])
        .arg(src)
        .arg("--deploy")
        .arg(deploy)
        .output()
        .unwrap()
}

/// `starmap render` as a process the test can kill.
fn render_process(src: &Path, deploy: &Path) -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_starmap"));
    cmd.env("GIT_AUTHOR_NAME", "starmap-test")
        .env("GIT_AUTHOR_EMAIL", "test@starmap.invalid")
        .env("GIT_COMMITTER_NAME", "starmap-test")
        .env("GIT_COMMITTER_EMAIL", "test@starmap.invalid")
        .args(["render", "--source"])
        .arg(src)
        .arg("--deploy")
        .arg(deploy);
    cmd
}

fn render_ok(src: &Path, deploy: &Path) -> String {
    let out = render(src, deploy);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The digest of the manifest each cluster's `latest` points to.
fn tags(registry: &Registry, clusters: &[String]) -> BTreeMap<String, Option<String>> {
    clusters
        .iter()
        .map(|c| {
            (
                c.clone(),
                registry.manifest(&format!("{REPO}/{c}"), "latest").map(|(_, d)| d),
            )
        })
        .collect()
}

fn clusters_of(deploy: &Path) -> Vec<String> {
    let files = tree_files(deploy, "main");
    files
        .keys()
        .filter_map(|p| {
            p.strip_prefix(".starmap/clusters/")?
                .strip_suffix(".yaml")
                .map(String::from)
        })
        .collect()
}

/// Every cluster's tag points at an artifact whose layer is the one the tip's index records,
/// whose files are the cluster's directory at the tip, and whose revision is a deploy commit
/// holding that same directory.
fn assert_every_tag_serves_the_tip(registry: &Registry, deploy: &Path) {
    let files = tree_files(deploy, "main");
    for cluster in clusters_of(deploy) {
        let repo = format!("{REPO}/{cluster}");
        let (manifest, _) = registry
            .manifest(&repo, "latest")
            .unwrap_or_else(|| panic!("{cluster}: no tag"));
        let index = &files[&format!(".starmap/clusters/{cluster}.yaml")];
        let layer = manifest["layers"][0]["digest"].as_str().unwrap();
        assert!(
            index.contains(&format!("artifact: {layer}\n")),
            "{cluster}: {layer} not in\n{index}"
        );
        let served = layer_files(&registry.blob(&repo, layer));
        let prefix = format!("clusters/{cluster}/");
        let dir: BTreeMap<String, String> = files
            .iter()
            .filter_map(|(p, t)| Some((p.strip_prefix(&prefix)?.to_string(), t.clone())))
            .collect();
        assert_eq!(
            served, dir,
            "{cluster}: the artifact's files are its directory at the tip"
        );
        let revision = manifest["annotations"]["org.opencontainers.image.revision"]
            .as_str()
            .unwrap();
        let sha = revision.strip_prefix("main@sha1:").expect("main@sha1:<commit>");
        assert_eq!(
            git(deploy, &["rev-parse", &format!("{sha}:clusters/{cluster}")]),
            git(deploy, &["rev-parse", &format!("main:clusters/{cluster}")]),
            "{cluster}: its revision holds the same directory"
        );
    }
}

#[test]
fn each_cluster_gets_its_own_artifact_in_flux_format_and_a_change_pushes_only_its_own() {
    let Some(bin) = registry::available() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&bin, &tmp.path().join("registry"));
    let src = source(tmp.path(), &reg, None);
    let deploy = tmp.path().join("deploy");

    let out = render_ok(&src, &deploy);
    assert!(out.contains("pushed 14 artifacts to"), "{out}");
    let clusters = clusters_of(&deploy);
    assert_eq!(clusters.len(), 14);
    let mut catalog = reg.catalog();
    catalog.sort();
    let expected: Vec<String> = clusters.iter().map(|c| format!("{REPO}/{c}")).collect();
    assert_eq!(catalog, expected, "one repository per cluster");

    // The manifest is what `flux push artifact` writes.
    let (m, _) = reg.manifest(&format!("{REPO}/store-0042"), "latest").unwrap();
    assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
    assert_eq!(m["config"]["mediaType"], "application/vnd.cncf.flux.config.v1+json");
    assert_eq!(m["layers"].as_array().unwrap().len(), 1);
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let tip = git(&deploy, &["rev-parse", "main"]);
    let annotations = &m["annotations"];
    assert_eq!(
        annotations["org.opencontainers.image.revision"],
        format!("main@sha1:{tip}")
    );
    assert_eq!(
        annotations["org.opencontainers.image.source"],
        "https://git.example.com/retail/fleet-deploy.git"
    );
    assert!(
        annotations["org.opencontainers.image.created"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );
    assert_every_tag_serves_the_tip(&reg, &deploy);

    // Nothing new: nothing pushed, no tag moved.
    let before = tags(&reg, &clusters);
    let again = render_ok(&src, &deploy);
    assert!(again.contains("no changes") && !again.contains("pushed"), "{again}");
    assert_eq!(tags(&reg, &clusters), before);

    // One cluster's property: exactly one artifact pushed, one tag moved.
    let inventory = src.join("inventory/us-east.yaml");
    let text = std::fs::read_to_string(&inventory).unwrap();
    std::fs::write(
        &inventory,
        text.replace("storeName: Boston Back Bay", "storeName: Boston Seaport"),
    )
    .unwrap();
    let out = render_ok(&src, &deploy);
    assert!(out.contains("pushed 1 artifact to"), "{out}");
    let after = tags(&reg, &clusters);
    let moved: Vec<&String> = clusters.iter().filter(|c| before[*c] != after[*c]).collect();
    assert_eq!(moved, ["store-0042"], "only the changed cluster's tag moved");
    assert_every_tag_serves_the_tip(&reg, &deploy);

    // status show: nothing behind.
    let show = starmap()
        .args(["status", "show", "-o", "json", "--deploy"])
        .arg(&deploy)
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(json["artifacts"]["behind"], serde_json::json!([]), "{json}");
    assert_eq!(
        json["artifacts"]["complete"],
        git(&deploy, &["rev-parse", "main"]).as_str()
    );
}

#[test]
fn a_registry_that_is_down_before_the_commit_gets_no_commit_and_the_next_render_delivers() {
    let Some(bin) = registry::available() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut reg = Registry::start(&bin, &tmp.path().join("registry"));
    let src = source(tmp.path(), &reg, Some(20));
    let deploy = tmp.path().join("deploy");
    render_ok(&src, &deploy);
    let tip = git(&deploy, &["rev-parse", "main"]);

    reg.stop();
    set_release(&src, 2);
    let out = render(&src, &deploy);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: nothing was committed: OCI registry 127.0.0.1:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("is not reachable") && stderr.contains("onnection refused"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert_eq!(
        git(&deploy, &["rev-parse", "main"]),
        tip,
        "the deploy repo is as it was"
    );

    reg.resume();
    let out = render_ok(&src, &deploy);
    assert!(out.contains("pushed 20 artifacts"), "{out}");
    assert_every_tag_serves_the_tip(&reg, &deploy);
}

#[test]
fn a_registry_that_stops_during_the_pushes_fails_the_render_after_its_commit_and_the_next_render_completes() {
    let Some(bin) = registry::available() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let mut reg = Registry::start(&bin, &tmp.path().join("registry"));
    let src = source(tmp.path(), &reg, Some(400));
    let deploy = tmp.path().join("deploy");
    render_ok(&src, &deploy);

    // Stop the registry the moment the render commit lands, while its 400 pushes run. A render
    // quicker than the kill passes the round; the test tries again until one is caught mid-push.
    let mut caught = None;
    for release in 2..8 {
        set_release(&src, release);
        let before = git(&deploy, &["rev-parse", "main"]);
        let child = render_process(&src, &deploy)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while git(&deploy, &["rev-parse", "main"]) == before && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        reg.stop();
        let out = child.wait_with_output().unwrap();
        reg.resume();
        if !out.status.success() {
            caught = Some(String::from_utf8_lossy(&out.stderr).into_owned());
            break;
        }
    }
    let stderr = caught.expect("no render was caught with its pushes half done in 6 tries");
    assert!(stderr.starts_with("error: the render commit "), "{stderr}");
    assert!(
        stderr.contains(" landed, but ") && stderr.contains("artifacts were not pushed (the next render pushes them)"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let show = starmap()
        .args(["status", "show", "-o", "json", "--deploy"])
        .arg(&deploy)
        .output()
        .unwrap();
    let json: Value = serde_json::from_slice(&show.stdout).unwrap();
    let behind = json["artifacts"]["behind"].as_array().unwrap().len();
    assert!(
        behind > 0,
        "status show lists the clusters whose artifact is behind: {json}"
    );

    // The next render (nothing new in git) pushes exactly what is missing.
    let out = render_ok(&src, &deploy);
    assert!(out.contains("no changes"), "{out}");
    assert!(out.contains(&format!("pushed {behind} artifact")), "{out}");
    assert_every_tag_serves_the_tip(&reg, &deploy);
}

#[test]
fn a_render_killed_during_its_pushes_ten_times_is_repaired_by_the_next_render() {
    let Some(bin) = registry::available() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start(&bin, &tmp.path().join("registry"));
    let src = source(tmp.path(), &reg, Some(300));
    let deploy = tmp.path().join("deploy");
    render_ok(&src, &deploy);
    let seed: u64 = std::env::var("STARMAP_KILL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::process::id() as u64);
    eprintln!("kill seed {seed} (STARMAP_KILL_SEED={seed} replays it)");
    let mut rng = seed;
    let mut next = || {
        rng = rng.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        rng >> 33
    };
    let mut killed_after_commit = 0;
    for release in 2..12 {
        set_release(&src, release);
        let before = git(&deploy, &["rev-parse", "main"]);
        let mut child = render_process(&src, &deploy)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(100 + next() % 1200));
        let _ = child.kill();
        let _ = child.wait();
        if git(&deploy, &["rev-parse", "main"]) != before {
            killed_after_commit += 1;
        }
        // Whatever the kill interrupted, git stays whole.
        git(&deploy, &["fsck", "--no-progress"]);
    }
    eprintln!("{killed_after_commit} of 10 killed renders had committed");
    render_ok(&src, &deploy);
    assert_every_tag_serves_the_tip(&reg, &deploy);
    let again = render_ok(&src, &deploy);
    assert!(!again.contains("pushed"), "a second render pushes nothing: {again}");
}

#[test]
fn the_same_deploy_commit_gives_the_same_digests_in_two_fresh_registries() {
    let Some(bin) = registry::available() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let first = Registry::start(&bin, &tmp.path().join("registry-a"));
    let port = first.port;
    let src = source(tmp.path(), &first, None);
    let render_at = |deploy: &Path| {
        let out = starmap()
            .env("GIT_AUTHOR_DATE", "@1767225600 +0000")
            .env("GIT_COMMITTER_DATE", "@1767225600 +0000")
            .args(["render", "--source"])
            .arg(&src)
            .arg("--deploy")
            .arg(deploy)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    let (deploy_a, deploy_b) = (tmp.path().join("deploy-a"), tmp.path().join("deploy-b"));
    render_at(&deploy_a);
    let clusters = clusters_of(&deploy_a);
    let digests = |reg: &Registry| -> Vec<(String, String, String)> {
        clusters
            .iter()
            .map(|c| {
                let (m, digest) = reg.manifest(&format!("{REPO}/{c}"), "latest").unwrap();
                (
                    c.clone(),
                    digest,
                    m["layers"][0]["digest"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let in_a = digests(&first);
    drop(first);
    // A second, empty registry where the first was (the repository is part of the source).
    let second = Registry::start_on(&bin, &tmp.path().join("registry-b"), port);
    assert!(second.catalog().is_empty());
    render_at(&deploy_b);
    assert_eq!(
        git(&deploy_a, &["rev-parse", "main"]),
        git(&deploy_b, &["rev-parse", "main"]),
        "the same deploy commit"
    );
    assert_eq!(digests(&second), in_a, "identical manifest and layer digests");
}

#[test]
fn a_registry_that_leaves_out_the_location_header_still_takes_the_artifacts() {
    // go-containerregistry's registry answers a finished blob upload without `Location`.
    let Some(crane) = registry::tool("crane") else {
        assert!(
            std::env::var_os("STARMAP_REQUIRE_TOOLS").is_none(),
            "crane is required (STARMAP_REQUIRE_TOOLS is set): run tests/e2e/build.sh"
        );
        eprintln!("skipped: no `crane` binary; run tests/e2e/build.sh to build it");
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let reg = Registry::start_crane(&crane, &tmp.path().join("crane"));
    let src = source(tmp.path(), &reg, Some(5));
    let deploy = tmp.path().join("deploy");
    let out = render_ok(&src, &deploy);
    assert!(out.contains("pushed 5 artifacts"), "{out}");
    assert_every_tag_serves_the_tip(&reg, &deploy);
}
