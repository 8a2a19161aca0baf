//! Kustomize and Helm sources (contract section 1), built by the real tools: the podinfo
//! kustomize base from ../shared/data, a Helm chart rendered once per distinct set of
//! per-cluster values, and Flux's example fleet read as a source.

mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use common::{copy_dir, data, git_init_commit, shared_data, starmap, tree_files};

/// The real `helm`: on PATH, or where `.ci/run` installs it. Without it the Helm tests
/// say they are skipped; `.ci/run` sets STARMAP_REQUIRE_TOOLS=1 so that CI never skips.
fn helm() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("helm"))
            .find(|p| p.is_file())
    });
    let cached = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/starmap-tools/bin/helm"));
    let found = on_path.or(cached.filter(|p| p.is_file()));
    if found.is_none() {
        assert!(
            std::env::var_os("STARMAP_REQUIRE_TOOLS").is_none(),
            "helm is required (STARMAP_REQUIRE_TOOLS) but not found"
        );
        println!("skipped: helm is not installed here (bash .ci/run installs it into ~/.cache/starmap-tools/bin)");
    }
    found
}

fn podinfo_source(dir: &Path) {
    copy_dir(&data("sources/kustomize"), dir);
    copy_dir(&shared_data("examples/podinfo/kustomize"), &dir.join("apps/podinfo"));
}

#[test]
fn podinfo_kustomize_base_renders_with_per_cluster_customizations() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    podinfo_source(&src);
    // Read from git at a ref: the tree is written out for kustomize, no work tree used.
    git_init_commit(&src);
    let deploy = tmp.path().join("deploy");
    let out = starmap()
        .args(["render", "--source", &format!("{}@main", src.display()), "--deploy"])
        .arg(&deploy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = tree_files(&deploy, "main");
    for (cluster, max) in [("store-1", 3), ("store-2", 6)] {
        let deployment = &files[&format!("clusters/{cluster}/_cluster/deployment.apps_podinfo.yaml")];
        assert!(
            deployment.contains(&format!("retail.example.com/store: {cluster}")),
            "{deployment}"
        );
        assert!(
            deployment.contains(&format!("- name: STORE\n          value: {cluster}")),
            "{deployment}"
        );
        assert!(
            deployment.contains("image: ghcr.io/stefanprodan/podinfo:"),
            "from the podinfo base: {deployment}"
        );
        let hpa = &files[&format!("clusters/{cluster}/_cluster/horizontalpodautoscaler.autoscaling_podinfo.yaml")];
        assert!(hpa.contains(&format!("maxReplicas: {max}")), "{hpa}");
        assert!(files.contains_key(&format!("clusters/{cluster}/_cluster/service_podinfo.yaml")));
        let index = &files[&format!(".starmap/clusters/{cluster}.yaml")];
        assert!(
            index.contains("source: apps/podinfo\n"),
            "the directory is the source path: {index}"
        );
    }
    assert!(
        !files.keys().any(|f| f.starts_with("clusters/hub/_cluster")),
        "hub is not an edge"
    );
    // The rendered directories build with the real kustomize too.
    for cluster in ["store-1", "store-2", "hub"] {
        common::kustomize_build_ok(
            &deploy.join(format!("clusters/{cluster}")),
            &format!("clusters/{cluster}"),
        );
    }
}

#[test]
fn kustomize_source_without_the_tool_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    podinfo_source(&src);
    let empty_path = tmp.path().join("no-tools");
    std::fs::create_dir(&empty_path).unwrap();
    let out = starmap()
        .env("PATH", &empty_path)
        .args(["validate", "--source"])
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: ")
            && stderr.contains("apps/podinfo")
            && stderr.contains("kustomize")
            && stderr.contains("kubectl"),
        "names the directory and the tools: {stderr}"
    );
}

/// A script that runs `real` and logs each run's arguments, one line per run: (script, log).
fn counting_wrapper(dir: &Path, real: &Path) -> (PathBuf, PathBuf) {
    let name = real.file_name().unwrap().to_string_lossy();
    let log = dir.join(format!("{name}-runs.log"));
    let wrapper = dir.join(format!("{name}-wrapper"));
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$@\" >> {}\nexec {} \"$@\"\n",
            log.display(),
            real.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    (wrapper, log)
}

/// Runs logged since the last call (the log is emptied).
fn take_runs(log: &Path) -> Vec<String> {
    let runs = std::fs::read_to_string(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    runs.lines().map(str::to_string).collect()
}

/// A hundred clusters with three sizes; their values differ only by size.
fn hundred_clusters() -> String {
    let mut inventory = String::new();
    for i in 0..100 {
        let (size, replicas) = [("small", 1), ("medium", 2), ("large", 3)][i % 3];
        let _ = write!(
            inventory,
            "---\napiVersion: starmap.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: store-{i:03}\n  labels: {{size: {size}}}\nspec:\n  properties: {{replicas: {replicas}}}\n"
        );
    }
    inventory
}

#[test]
fn helm_chart_runs_helm_template_once_per_distinct_values() {
    let Some(helm) = helm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&data("sources/helm"), &src);
    // Generated, not committed: a hundred near-identical Cluster objects.
    std::fs::write(src.join("clusters.yaml"), hundred_clusters()).unwrap();
    let (wrapper, log) = counting_wrapper(tmp.path(), &helm);

    let deploy = tmp.path().join("deploy");
    common::render_with(&src, &deploy, &[("STARMAP_HELM", wrapper.as_os_str())]);
    let runs = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        runs.lines().count(),
        3,
        "one `helm template` per distinct values, not per cluster:\n{runs}"
    );
    assert!(
        runs.lines()
            .all(|l| l.starts_with("template web ") && l.contains("--namespace web")),
        "{runs}"
    );

    let files = tree_files(&deploy, "main");
    for (i, (size, replicas)) in [
        (0, ("small", 1)),
        (1, ("medium", 2)),
        (2, ("large", 3)),
        (98, ("large", 3)),
    ] {
        let deployment = &files[&format!("clusters/store-{i:03}/web/deployment.apps_web.yaml")];
        assert!(
            deployment.contains(&format!("replicas: {replicas}\n")),
            "store-{i:03}: {deployment}"
        );
        assert!(
            deployment.contains(&format!("size: {size}\n")),
            "store-{i:03}: {deployment}"
        );
        let index = &files[&format!(".starmap/clusters/store-{i:03}.yaml")];
        assert!(index.contains("source: charts/web\n"), "{index}");
    }
    common::kustomize_build_ok(&deploy.join("clusters/store-000"), "clusters/store-000");
}

/// `tools/helm-library` (Helm's own library in one process): `STARMAP_HELM_LIBRARY`, or where
/// `.ci/run` builds it. Skipped, saying so, when missing, unless STARMAP_REQUIRE_TOOLS is set.
fn helm_library() -> Option<PathBuf> {
    let found = std::env::var_os("STARMAP_HELM_LIBRARY")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/starmap-tools/bin/helm-library")))
        .filter(|p| p.is_file());
    if found.is_none() {
        assert!(
            std::env::var_os("STARMAP_REQUIRE_TOOLS").is_none(),
            "helm-library is required (STARMAP_REQUIRE_TOOLS) but not found"
        );
        println!(
            "skipped: tools/helm-library is not built here (bash .ci/run builds it into ~/.cache/starmap-tools/bin)"
        );
    }
    found
}

/// With `STARMAP_HELM_LIBRARY`, one helm-library process renders every value set the cache
/// lacks, byte for byte as `helm template` does, and runs no helm; a set it cannot render goes
/// to `helm template`, so the error is helm's own, word for word.
#[test]
fn helm_library_renders_what_helm_template_renders() {
    let (Some(helm), Some(library)) = (helm(), helm_library()) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&data("sources/helm"), &src);
    std::fs::write(src.join("clusters.yaml"), hundred_clusters()).unwrap();
    let (wrapper, log) = counting_wrapper(tmp.path(), &helm);
    let render = |deploy: &str, with_library: bool| {
        let mut cmd = starmap();
        cmd.env("STARMAP_HELM", &wrapper).env("STARMAP_BUILD_CACHE", "off");
        if with_library {
            cmd.env("STARMAP_HELM_LIBRARY", &library);
        }
        let deploy = tmp.path().join(deploy);
        let out = cmd
            .args(["render", "--source"])
            .arg(&src)
            .arg("--deploy")
            .arg(&deploy)
            .output()
            .unwrap();
        (out, deploy)
    };

    let (out, by_helm) = render("by-helm", false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(take_runs(&log).len(), 3);
    let (out, by_library) = render("by-library", true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        take_runs(&log),
        Vec::<String>::new(),
        "the library rendered every set: no helm run"
    );
    assert_eq!(tree_files(&by_library, "main"), tree_files(&by_helm, "main"));

    // Large stores fail the chart: the library renders the other two sets, helm the failing one.
    std::fs::write(
        src.join("charts/web/templates/guard.yaml"),
        "{{ if eq .Values.size \"large\" }}{{ fail \"large stores are not supported yet\" }}{{ end }}\n",
    )
    .unwrap();
    let (by_helm, _) = render("failing-by-helm", false);
    assert_eq!(take_runs(&log).len(), 3);
    let (by_library, _) = render("failing-by-library", true);
    assert_eq!(take_runs(&log).len(), 1, "only the failing set runs helm");
    let stderr = String::from_utf8_lossy(&by_library.stderr);
    assert_eq!(by_library.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("large stores are not supported yet"), "{stderr}");
    assert_eq!(stderr, String::from_utf8_lossy(&by_helm.stderr));
}

/// The build cache (README, "Build cache"): a render with nothing new runs no `helm template`,
/// one cluster with new values runs one, a damaged entry is rebuilt rather than trusted, and
/// `STARMAP_BUILD_CACHE=off` runs every set again. The output is the same throughout.
#[test]
fn helm_builds_are_reused_until_their_inputs_change() {
    let Some(helm) = helm() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&data("sources/helm"), &src);
    std::fs::write(src.join("clusters.yaml"), hundred_clusters()).unwrap();
    let (wrapper, log) = counting_wrapper(tmp.path(), &helm);
    let cache = tmp.path().join("cache");
    let deploy = tmp.path().join("deploy");
    let render = |cache_setting: &Path| {
        let env = [
            ("STARMAP_HELM", wrapper.as_os_str()),
            ("STARMAP_BUILD_CACHE", cache_setting.as_os_str()),
        ];
        common::render_with(&src, &deploy, &env);
        tree_files(&deploy, "main")
    };

    let first = render(&cache);
    assert_eq!(take_runs(&log).len(), 3, "cold: one run per distinct values");
    let head = common::git(&deploy, &["rev-parse", "main"]);

    assert_eq!(render(&cache), first);
    assert_eq!(take_runs(&log), Vec::<String>::new(), "nothing new: no helm run");
    assert_eq!(common::git(&deploy, &["rev-parse", "main"]), head, "and no commit");

    // One cluster gets values of its own: one run, for it alone.
    let inventory = hundred_clusters().replacen("properties: {replicas: 1}", "properties: {replicas: 7}", 1);
    std::fs::write(src.join("clusters.yaml"), inventory).unwrap();
    let changed = render(&cache);
    assert_eq!(take_runs(&log).len(), 1, "one cluster's values changed: one run");
    let deployment = &changed["clusters/store-000/web/deployment.apps_web.yaml"];
    assert!(deployment.contains("replicas: 7\n"), "{deployment}");

    // Damage every entry: each is rebuilt, and the output does not change.
    let mut damaged = 0;
    for entry in walkdir::WalkDir::new(&cache).into_iter().filter_map(Result::ok) {
        if entry.file_type().is_file() {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            std::fs::write(entry.path(), text.replace("replicas", "replicaz")).unwrap();
            damaged += 1;
        }
    }
    assert_eq!(damaged, 4);
    assert_eq!(render(&cache), changed);
    assert_eq!(take_runs(&log).len(), 4, "damaged entries are rebuilt, never trusted");

    assert_eq!(render(Path::new("off")), changed);
    assert_eq!(take_runs(&log).len(), 4, "off: every set is run");
}

/// A kustomize build is reused while the source does not change, and runs again once it does.
#[test]
fn kustomize_builds_are_reused_until_the_source_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    podinfo_source(&src);
    let (real, subcommand) = match common::on_path("kubectl") {
        Some(kubectl) => (kubectl, "kustomize"),
        None => (
            common::on_path("kustomize").expect("the tests need kubectl or kustomize"),
            "build",
        ),
    };
    let (wrapper, log) = counting_wrapper(tmp.path(), &real);
    // `STARMAP_KUSTOMIZE` takes `build DIR`; kubectl takes `kustomize DIR`.
    let shim = tmp.path().join("kustomize-shim");
    std::fs::write(
        &shim,
        format!("#!/bin/sh\nshift\nexec {} {subcommand} \"$@\"\n", wrapper.display()),
    )
    .unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let cache = tmp.path().join("cache");
    let deploy = tmp.path().join("deploy");
    let render = || {
        let env = [
            ("STARMAP_KUSTOMIZE", shim.as_os_str()),
            ("STARMAP_BUILD_CACHE", cache.as_os_str()),
        ];
        common::render_with(&src, &deploy, &env);
        tree_files(&deploy, "main")
    };
    let first = render();
    assert_eq!(take_runs(&log).len(), 1);
    assert_eq!(render(), first);
    assert_eq!(take_runs(&log).len(), 0, "nothing new: no kustomize run");
    let hpa = src.join("apps/podinfo/hpa.yaml");
    let text = std::fs::read_to_string(&hpa).unwrap();
    std::fs::write(&hpa, text.replace("maxReplicas: 4", "maxReplicas: 5")).unwrap();
    render();
    assert_eq!(take_runs(&log).len(), 1, "the source changed: built again");
}

#[test]
fn helm_source_without_helm_is_a_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&data("sources/helm"), &src);
    std::fs::write(src.join("clusters.yaml"), hundred_clusters()).unwrap();
    let empty_path = tmp.path().join("no-tools");
    std::fs::create_dir(&empty_path).unwrap();
    let out = starmap()
        .env("PATH", &empty_path)
        .args(["validate", "--source"])
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: charts/web") && stderr.contains("`helm` is not installed"),
        "{stderr}"
    );
}

#[test]
fn flux_example_fleet_is_read_as_a_source() {
    let out = starmap()
        .args(["validate", "-o", "json", "--source"])
        .arg(shared_data("examples/flux2-kustomize-helm-example"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // Its kustomize directories are built; Flux objects are workloads like any other.
    assert!(report["workloads"].as_u64().unwrap() > 20, "{report}");
    let warnings = report["warnings"].to_string();
    assert!(
        warnings.contains(".fluxschema.yml:1: skipped: Config has no metadata.name"),
        "{warnings}"
    );
    // Place its production overlay on a cluster: the HelmRelease comes out of kustomize
    // with the overlay's patch applied, as any other workload.
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("fleet");
    copy_dir(&shared_data("examples/flux2-kustomize-helm-example"), &src);
    std::fs::write(
        src.join("starmap-placement.yaml"),
        "apiVersion: starmap.dev/v1alpha1\nkind: Cluster\nmetadata: {name: production}\n---\n\
         apiVersion: starmap.dev/v1alpha1\nkind: Placement\nmetadata: {name: apps}\n\
         spec:\n  clusters: [production]\n  workloads: [{paths: [apps/production]}]\n",
    )
    .unwrap();
    let deploy = tmp.path().join("deploy");
    let out = starmap()
        .args(["render", "--source"])
        .arg(&src)
        .arg("--deploy")
        .arg(&deploy)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let files = tree_files(&deploy, "main");
    let release = files
        .iter()
        .find(|(path, _)| {
            path.starts_with("clusters/production/") && path.contains("helmrelease.helm.toolkit.fluxcd.io_podinfo")
        })
        .map(|(_, text)| text)
        .unwrap_or_else(|| panic!("no HelmRelease in {:?}", files.keys().collect::<Vec<_>>()));
    assert!(
        release.contains("kind: HelmRelease") && release.contains("- podinfo.production"),
        "overlay patch applied: {release}"
    );
}
