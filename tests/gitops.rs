//! The Argo CD and Flux objects generated into the deploy repo: layout, settings from
//! `starmap.yaml`, template overrides from the source's `templates/`, and errors.

mod common;

use std::path::Path;

use common::{copy_dir, fixtures, kustomize_build_ok, starmap, tree_files};

fn render_ok(src: &Path, deploy: &Path, extra: &[&str]) -> String {
    let out = starmap()
        .args(["render", "--source"])
        .arg(src)
        .arg("--deploy")
        .arg(deploy)
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The fixtures with `starmap.yaml` replaced.
fn fixtures_with_config(tmp: &Path, config: &str) -> std::path::PathBuf {
    let src = tmp.join("src");
    copy_dir(&fixtures(), &src);
    // The fixtures' own ignore globs stay; the rest is the test's.
    std::fs::write(
        src.join("starmap.yaml"),
        format!("ignore: [drafts/**, .github/**]\n{config}"),
    )
    .unwrap();
    src
}

#[test]
fn every_cluster_gets_a_flux_directory_that_builds() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    render_ok(&fixtures(), &deploy, &[]);
    let files = tree_files(&deploy, "main");
    let clusters: Vec<String> = files
        .keys()
        .filter_map(|p| {
            p.strip_prefix("clusters/")?
                .strip_suffix("/kustomization.yaml")
                .map(String::from)
        })
        .collect();
    assert_eq!(clusters.len(), 14);
    for c in &clusters {
        let sync = &files[&format!("flux/{c}/gotk-sync.yaml")];
        assert!(sync.contains(&format!("path: \"./clusters/{c}\"")), "{sync}");
        assert!(
            sync.contains("url: https://git.example.com/retail/fleet-deploy.git"),
            "deploy.url from starmap.yaml"
        );
        assert!(
            sync.contains("secretRef:\n    name: flux-system"),
            "flux.secretRef from starmap.yaml"
        );
        assert_eq!(
            files[&format!("flux/{c}/kustomization.yaml")],
            "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n- gotk-sync.yaml\n"
        );
        kustomize_build_ok(&deploy.join(format!("flux/{c}")), &format!("flux/{c}"));
        kustomize_build_ok(&deploy.join(format!("clusters/{c}")), &format!("clusters/{c}"));
    }
    // The default Argo CD mode: one ApplicationSet with the cluster generator.
    let appset = &files["argocd/applicationset.yaml"];
    assert!(
        appset.contains("kind: ApplicationSet") && appset.contains("starmap.dev/managed: \"true\""),
        "{appset}"
    );
    assert!(
        appset.contains("path: \"clusters/{{ .name }}\""),
        "Argo CD's own template kept raw: {appset}"
    );
    kustomize_build_ok(&deploy.join("argocd"), "argocd");
}

#[test]
fn argocd_applications_mode_writes_one_application_per_cluster_and_a_root() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures_with_config(
        tmp.path(),
        "deploy: {url: https://git.example.com/deploy.git, branch: prod}\n\
         flux: {enabled: false}\n\
         argocd: {mode: applications, project: retail, syncPolicy: {selfHeal: false}}\n",
    );
    let deploy = tmp.path().join("deploy");
    render_ok(&src, &deploy, &[]);
    let files = tree_files(&deploy, "main");
    assert!(!files.keys().any(|p| p.starts_with("flux/")), "flux disabled");
    let app = &files["argocd/applications/store-0042.yaml"];
    assert!(
        app.contains("name: starmap-store-0042") && app.contains("project: retail"),
        "{app}"
    );
    assert!(
        app.contains("targetRevision: prod") && app.contains("path: clusters/store-0042"),
        "{app}"
    );
    assert!(
        app.contains("server: https://10.42.0.1:6443"),
        "destination from spec.server: {app}"
    );
    assert!(app.contains("selfHeal: false") && app.contains("prune: true"), "{app}");
    let no_server = &files["argocd/applications/store-0107.yaml"];
    assert!(
        no_server.contains("destination:\n    name: store-0107"),
        "no spec.server: the Argo CD cluster name: {no_server}"
    );
    assert_eq!(
        files.keys().filter(|p| p.starts_with("argocd/applications/")).count(),
        14
    );
    assert!(files["argocd/root.yaml"].contains("path: argocd/applications"));
    assert!(files["argocd/kustomization.yaml"].contains("- root.yaml"));
    kustomize_build_ok(&deploy.join("argocd"), "argocd");
}

#[test]
fn git_directory_generator_and_no_url_means_no_sync_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures_with_config(
        tmp.path(),
        "deploy: {url: ssh://git@git.example.com/deploy.git}\nargocd: {generator: git-directory}\n",
    );
    let deploy = tmp.path().join("deploy");
    render_ok(&src, &deploy, &[]);
    let appset = &tree_files(&deploy, "main")["argocd/applicationset.yaml"];
    assert!(
        appset.contains("- path: \"clusters/*\"") && appset.contains("name: \"{{ .path.basename }}\""),
        "{appset}"
    );

    // Without deploy.url (and a --deploy that is a path) nothing is generated, and the
    // directories are not owned: files someone put there stay.
    let src2 = fixtures_with_config(&tmp.path().join("b"), "");
    let deploy2 = tmp.path().join("deploy2");
    render_ok(&src2, &deploy2, &[]);
    assert!(
        !tree_files(&deploy2, "main")
            .keys()
            .any(|p| p.starts_with("flux/") || p.starts_with("argocd/"))
    );
}

#[test]
fn changing_a_sync_setting_commits_only_the_sync_objects() {
    let tmp = tempfile::tempdir().unwrap();
    let src = fixtures_with_config(tmp.path(), "deploy: {url: https://git.example.com/deploy.git}\n");
    let deploy = tmp.path().join("deploy");
    render_ok(&src, &deploy, &[]);
    let before = tree_files(&deploy, "main");
    std::fs::write(
        src.join("starmap.yaml"),
        "ignore: [drafts/**, .github/**]\ndeploy: {url: https://git.example.com/deploy.git}\nflux: {interval: 30s}\n",
    )
    .unwrap();
    let out = render_ok(&src, &deploy, &[]);
    assert!(out.contains("committed"), "{out}");
    let after = tree_files(&deploy, "main");
    let changed: Vec<&String> = after.keys().filter(|k| before.get(*k) != after.get(*k)).collect();
    assert!(
        changed
            .iter()
            .all(|p| p.starts_with("flux/") || p.starts_with(".starmap/")),
        "{changed:?}"
    );
    assert!(after["flux/store-0042/gotk-sync.yaml"].contains("interval: 30s"));
    let log = common::git(&deploy, &["log", "-1", "--format=%s"]);
    assert_eq!(log, "starmap: update the Argo CD and Flux objects");
}

#[test]
fn a_source_template_overrides_the_built_in_one() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&fixtures(), &src);
    std::fs::create_dir_all(src.join("templates")).unwrap();
    let built_in = std::fs::read_to_string(common::root().join("templates/flux-sync.yaml.j2")).unwrap();
    // Our own twist: a longer retry interval and a label from the cluster's region.
    let ours = built_in
        .replace("  interval: {{ flux.interval | tojson }}\n  url:", "  interval: 2m\n  url:")
        .replace("    starmap.dev/cluster: {{ cluster.name }}\nspec:\n  interval: {{ flux.syncInterval", "    starmap.dev/cluster: {{ cluster.name }}\n    region: {{ cluster.labels.region | default(\"none\") }}\nspec:\n  interval: {{ flux.syncInterval");
    assert_ne!(ours, built_in, "the override differs");
    std::fs::write(src.join("templates/flux-sync.yaml.j2"), ours).unwrap();
    let deploy = tmp.path().join("deploy");
    render_ok(&src, &deploy, &[]);
    let sync = &tree_files(&deploy, "main")["flux/store-1001/gotk-sync.yaml"];
    assert!(
        sync.contains("interval: 2m") && sync.contains("region: eu-central"),
        "{sync}"
    );
}

#[test]
fn a_broken_template_override_is_reported_like_other_template_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&fixtures(), &src);
    std::fs::create_dir_all(src.join("templates")).unwrap();
    std::fs::write(
        src.join("templates/argocd-applicationset.yaml.j2"),
        "apiVersion: argoproj.io/v1alpha1\nkind: ApplicationSet\nmetadata:\n  name: {{ argocd.nam }}\n",
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
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error: templates/argocd-applicationset.yaml.j2:4: template error"),
        "{stderr}"
    );
    assert!(stderr.contains("argocd.nam"), "{stderr}");
    assert!(!deploy.exists(), "nothing written");

    std::fs::write(src.join("templates/argocd-applicationset.yaml.j2"), "{% for x in %}\n").unwrap();
    let out = starmap().args(["validate", "--source"]).arg(&src).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr.starts_with("error: templates/argocd-applicationset.yaml.j2:1: template error: syntax error"),
        "{stderr}"
    );
}

/// `--schemas` directories: the real Kubernetes JSON schemas and the Argo CD and Flux CRDs.
fn schema_args() -> Vec<String> {
    [
        "k8s-json-schema/v1.30.10-standalone-strict",
        "crds/argo-cd-v3.5.1",
        "crds/flux-source-controller-v1.9.1",
        "crds/flux-kustomize-controller-v1.9.4",
    ]
    .iter()
    .flat_map(|d| ["--schemas".to_string(), common::shared_data(d).display().to_string()])
    .collect()
}

fn validate_with_schemas(src: &Path) -> std::process::Output {
    starmap()
        .args(["validate", "-o", "json", "--source"])
        .arg(src)
        .args(schema_args())
        .output()
        .unwrap()
}

#[test]
fn generated_sync_objects_and_workloads_validate_against_the_real_schemas() {
    for (mode, objects) in [("applicationset", 1), ("applications", 15)] {
        let tmp = tempfile::tempdir().unwrap();
        let src = fixtures_with_config(
            tmp.path(),
            &format!(
                "deploy: {{url: https://git.example.com/deploy.git}}\nflux: {{secretRef: flux-system}}\nargocd: {{mode: {mode}}}\n"
            ),
        );
        let out = validate_with_schemas(&src);
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let schemas = &report["schemas"];
        assert_eq!(schemas["invalid"], serde_json::json!([]));
        // 200 workload objects, 2 Flux objects per cluster, and the Argo CD objects.
        assert_eq!(
            schemas["checked"].as_u64().unwrap() as usize,
            200 - 4 + 28 + objects,
            "{schemas}"
        );
        // Kinds without a schema are reported, not passed silently.
        assert_eq!(
            schemas["unchecked"],
            serde_json::json!([{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "objects": 4}])
        );
    }
}

#[test]
fn a_broken_field_in_a_generated_flux_object_fails_crd_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&fixtures(), &src);
    std::fs::create_dir_all(src.join("templates")).unwrap();
    let broken = std::fs::read_to_string(common::root().join("templates/flux-sync.yaml.j2"))
        .unwrap()
        .replace(
            "  interval: {{ flux.interval | tojson }}",
            "  intervall: {{ flux.interval | tojson }}",
        );
    std::fs::write(src.join("templates/flux-sync.yaml.j2"), broken).unwrap();
    let out = starmap()
        .args(["validate", "--source"])
        .arg(&src)
        .args(schema_args())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let first = stderr.lines().next().unwrap_or("");
    assert!(
        first.starts_with(
            "error: flux/hub-ap-southeast/gotk-sync.yaml: cluster hub-ap-southeast, GitRepository/flux-system/starmap: "
        ),
        "{stderr}"
    );
    assert!(
        first.contains("'intervall' was unexpected") && first.contains("\"interval\" is a required property"),
        "{first}"
    );
    assert_eq!(stderr.lines().count(), 14, "one line per cluster: {stderr}");
}

#[test]
fn a_misspelled_field_in_a_workload_fails_schema_validation() {
    let tmp = tempfile::tempdir().unwrap();
    let src = tmp.path().join("src");
    copy_dir(&fixtures(), &src);
    let path = src.join("workloads/storefront/service.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.replacen("  selector:", "  selektor:", 1)).unwrap();
    let out = starmap()
        .args(["validate", "--source"])
        .arg(&src)
        .args(schema_args())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: workloads/storefront/service.yaml: cluster lab-1, Service/storefront/storefront: /spec: Additional properties are not allowed ('selektor' was unexpected)"), "{stderr}");
}

#[test]
fn oci_delivery_objects_follow_each_clusters_artifact_and_validate_against_the_crds() {
    // A render with `oci:` pushes: a real registry takes the artifacts (tests/oci.rs checks them).
    let Some(registry_bin) = common::registry::available() else {
        return;
    };
    let registry_dir = tempfile::tempdir().unwrap();
    let registry = common::registry::Registry::start(&registry_bin, registry_dir.path());
    for (argocd, objects) in [
        ("{mode: applicationset}", 1),
        ("{mode: applicationset, generator: git-directory}", 1),
        ("{mode: applications}", 15),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let src = fixtures_with_config(
            tmp.path(),
            &format!(
                "deploy: {{url: https://git.example.com/deploy.git}}\nflux: {{secretRef: registry-creds}}\nargocd: {argocd}\n\
                 oci: {{repository: oci://{}/retail/fleet, tag: stable, insecure: true}}\n",
                registry.host()
            ),
        );
        let out = validate_with_schemas(&src);
        assert!(
            out.status.success(),
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(report["schemas"]["invalid"], serde_json::json!([]));
        assert_eq!(
            report["schemas"]["checked"].as_u64().unwrap() as usize,
            200 - 4 + 28 + objects,
            "{argocd}"
        );

        let deploy = tmp.path().join("deploy");
        render_ok(&src, &deploy, &[]);
        let files = tree_files(&deploy, "main");
        let sync = &files["flux/store-0042/gotk-sync.yaml"];
        let url = format!("url: oci://{}/retail/fleet/store-0042", registry.host());
        for line in [
            "kind: OCIRepository",
            url.as_str(),
            "tag: stable",
            "mediaType: application/vnd.oci.image.layer.v1.tar+gzip",
            "insecure: true",
            "name: registry-creds",
            "path: \"./\"\n",
            "kind: OCIRepository\n    name: starmap",
        ] {
            assert!(sync.contains(line), "{line:?} in:\n{sync}");
        }
        assert!(!sync.contains("GitRepository"), "{sync}");
        kustomize_build_ok(&deploy.join("flux/store-0042"), "flux/store-0042");
        // The index records the layer of the artifact the cluster's tag will point to.
        let index = &files[".starmap/clusters/store-0042.yaml"];
        assert!(index.starts_with("cluster: store-0042\n"), "{index}");
        assert!(index.contains("\nartifact: sha256:"), "{index}");
        let argo: String = files
            .iter()
            .filter(|(p, _)| p.starts_with("argocd/"))
            .map(|(_, t)| t.as_str())
            .collect();
        assert!(argo.contains("targetRevision: stable"), "{argo}");
        assert!(argo.contains("path: \".\"\n"), "{argo}");
        assert!(
            argo.contains(&format!("oci://{}/retail/fleet/", registry.host())),
            "{argo}"
        );
        kustomize_build_ok(&deploy.join("argocd"), "argocd");
    }
}

#[test]
fn git_delivery_keeps_only_the_clusters_directory_in_its_flux_artifact() {
    let tmp = tempfile::tempdir().unwrap();
    let deploy = tmp.path().join("deploy");
    render_ok(&fixtures(), &deploy, &[]);
    let files = tree_files(&deploy, "main");
    let sync = &files["flux/store-0042/gotk-sync.yaml"];
    assert!(
        sync.contains("ignore: |\n    /*\n    !/clusters/store-0042/\n"),
        "spec.ignore limits the artifact to the cluster's directory:\n{sync}"
    );
    assert!(!files[".starmap/clusters/store-0042.yaml"].contains("artifact:"));
}

#[test]
fn a_bad_oci_setting_names_its_line() {
    for (oci, line, what) in [
        ("oci: {repository: justahost}", 2, "must be REGISTRY/PATH"),
        (
            "oci:\n  repository: r.example.com/fleet\n  tag: \"a:b\"",
            4,
            "is not an OCI tag",
        ),
        (
            "oci: {repository: r.example.com/fleet, tagg: x}",
            2,
            "unknown field `tagg`",
        ),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let src = fixtures_with_config(tmp.path(), &format!("{oci}\n"));
        let deploy = tmp.path().join("deploy");
        let out = starmap()
            .args(["render", "--source"])
            .arg(&src)
            .arg("--deploy")
            .arg(&deploy)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.starts_with(&format!("error: starmap.yaml:{line}: ")), "{stderr}");
        assert!(stderr.contains(what), "{stderr}");
        assert!(!deploy.exists(), "nothing written");
    }
}
