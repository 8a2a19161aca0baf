//! `starmap::schema` against real schemas: the Argo CD and Flux CRDs and the Kubernetes
//! v1.30 JSON schemas of /work/shared/data, objects written for these tests
//! (tests/data/schemas/) and the fixture workloads.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use rayon::prelude::*;
use serde_json::{Value, json};
use starmap::schema::{MAX_ERRORS, SchemaSet, Verdict};

fn shared_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data")
}

fn test_data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/schemas")
}

const CRD_DIRS: &[&str] = &[
    "crds/argo-cd-v3.5.1",
    "crds/flux-source-controller-v1.9.1",
    "crds/flux-kustomize-controller-v1.9.4",
    "crds/flux-helm-controller-v1.6.3",
];

const K8S_SCHEMAS: &str = "k8s-json-schema/v1.30.10-standalone-strict";

/// Every CRD of CRD_DIRS and every Kubernetes JSON schema, loaded once for all tests.
fn all_schemas() -> &'static SchemaSet {
    static SET: OnceLock<SchemaSet> = OnceLock::new();
    SET.get_or_init(|| {
        let mut set = SchemaSet::new();
        for dir in CRD_DIRS {
            set.load_dir(&shared_data().join(dir)).unwrap();
        }
        set.load_dir(&shared_data().join(K8S_SCHEMAS)).unwrap();
        set
    })
}

/// The documents of a YAML file, as values.
fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    starmap::yaml::parse_documents(&text, &path.display().to_string())
        .unwrap()
        .into_iter()
        .map(|d| d.value)
        .collect()
}

fn single_document(path: &Path) -> Value {
    let mut docs = documents(path);
    assert_eq!(docs.len(), 1, "{}", path.display());
    docs.remove(0)
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap().into_path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_crd_directory_loads() {
    let expected: &[(&str, &[(&str, &str)])] = &[
        (
            "crds/argo-cd-v3.5.1",
            &[
                ("argoproj.io/v1alpha1", "Application"),
                ("argoproj.io/v1alpha1", "ApplicationSet"),
                ("argoproj.io/v1alpha1", "AppProject"),
            ],
        ),
        (
            "crds/flux-source-controller-v1.9.1",
            &[
                ("source.toolkit.fluxcd.io/v1", "GitRepository"),
                ("source.toolkit.fluxcd.io/v1", "OCIRepository"),
                ("source.toolkit.fluxcd.io/v1", "HelmRepository"),
                ("source.toolkit.fluxcd.io/v1", "HelmChart"),
                ("source.toolkit.fluxcd.io/v1", "Bucket"),
            ],
        ),
        (
            "crds/flux-kustomize-controller-v1.9.4",
            &[("kustomize.toolkit.fluxcd.io/v1", "Kustomization")],
        ),
        (
            "crds/flux-helm-controller-v1.6.3",
            &[("helm.toolkit.fluxcd.io/v2", "HelmRelease")],
        ),
    ];
    for (dir, kinds) in expected {
        let mut set = SchemaSet::new();
        // The Argo CD directory also holds a kustomization.yaml: not a CRD, skipped.
        let count = set.load_dir(&shared_data().join(dir)).unwrap();
        assert!(count > 0, "{dir}: no schema loaded");
        assert_eq!(count, set.len(), "{dir}");
        for (api_version, kind) in *kinds {
            assert!(set.contains(api_version, kind), "{dir}: no {api_version} {kind}");
        }
        // Every converted schema compiles (patterns included).
        set.compile_all().unwrap();
    }
}

#[test]
fn crd_files_load_one_by_one() {
    let mut set = SchemaSet::new();
    let path = shared_data().join("crds/flux-source-controller-v1.9.1/source.toolkit.fluxcd.io_gitrepositories.yaml");
    assert_eq!(set.load_crd_file(&path).unwrap(), 1);
    assert_eq!(
        set.kinds(),
        vec![("source.toolkit.fluxcd.io/v1".to_owned(), "GitRepository".to_owned())]
    );
    // The compat release still serves v1beta2 next to v1.
    let path = shared_data()
        .join("crds/flux-source-controller-v1.7.4-compat-v1beta2/source.toolkit.fluxcd.io_gitrepositories.yaml");
    assert_eq!(set.load_crd_file(&path).unwrap(), 2);
    assert!(set.contains("source.toolkit.fluxcd.io/v1beta2", "GitRepository"));
}

#[test]
fn kubernetes_json_schemas_load() {
    let mut set = SchemaSet::new();
    let count = set.load_dir(&shared_data().join(K8S_SCHEMAS)).unwrap();
    // 21 files, minus _definitions.json and all.json.
    assert_eq!(count, 19);
    for (api_version, kind) in [
        ("apps/v1", "Deployment"),
        ("v1", "Service"),
        ("v1", "ConfigMap"),
        ("batch/v1", "CronJob"),
        ("autoscaling/v2", "HorizontalPodAutoscaler"),
        // The file is clusterrole-rbac-v1.json: the group comes from the schema.
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
        ("networking.k8s.io/v1", "Ingress"),
        ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ] {
        assert!(set.contains(api_version, kind), "no {api_version} {kind}");
    }
    assert!(!set.contains("rbac/v1", "ClusterRole"));
}

#[test]
fn correct_gitops_objects_are_valid() {
    let set = all_schemas();
    for name in [
        "flux-gitrepository.yaml",
        "flux-kustomization.yaml",
        "argocd-application.yaml",
        "argocd-applicationset.yaml",
    ] {
        let object = single_document(&test_data().join(name));
        assert_eq!(set.validate(&object), Verdict::Valid, "{name}");
    }
}

/// Each file of tests/data/schemas/broken/ breaks one field of a correct object and says, in
/// `# expect: ` comment lines, which messages it must get.
#[test]
fn broken_objects_are_invalid_and_the_message_names_the_field() {
    let set = all_schemas();
    let files = yaml_files(&test_data().join("broken"));
    assert_eq!(files.len(), 14);
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let expected: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# expect: ")).collect();
        assert!(!expected.is_empty(), "{}: no `# expect:` line", path.display());
        let object = single_document(&path);
        let Verdict::Invalid(errors) = set.validate(&object) else {
            panic!("{}: not invalid", path.display());
        };
        for message in expected {
            assert!(
                errors.iter().any(|e| e == message),
                "{}: expected {message:?} among {errors:#?}",
                path.display()
            );
        }
    }
}

#[test]
fn misspelled_deployment_field_is_invalid_at_spec() {
    let set = all_schemas();
    let object = single_document(&test_data().join("broken/deployment-misspelled-field.yaml"));
    assert_eq!(
        set.validate(&object),
        Verdict::Invalid(vec![
            "/spec: Additional properties are not allowed ('replica' was unexpected)".to_owned()
        ])
    );
}

/// The fixture workloads, as they are in the source repo. Documents annotated
/// `starmap.dev/template: "true"` are skipped: their strings are rendered per cluster (a
/// `replicas: "{{ ... }}"` becomes a number), so only the rendered object can be judged, and
/// the renderer is not available to a library test.
#[test]
fn fixture_workloads_are_valid_or_unchecked() {
    let set = all_schemas();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/workloads");
    let (mut valid, mut unchecked, mut templates) = (Vec::new(), Vec::new(), 0);
    for path in yaml_files(&root) {
        for object in documents(&path) {
            let is_template = object.pointer("/metadata/annotations/starmap.dev~1template") == Some(&json!("true"));
            if is_template {
                templates += 1;
                continue;
            }
            let what = format!("{} {} ({})", object["kind"], object["metadata"]["name"], path.display());
            match set.validate(&object) {
                Verdict::Valid => valid.push(what),
                Verdict::Unchecked => unchecked.push(object["kind"].as_str().unwrap().to_owned()),
                Verdict::Invalid(errors) => panic!("{what}: {errors:#?}"),
            }
        }
    }
    assert!(
        templates >= 1,
        "the Ingress and the pos-backend Deployment are templates"
    );
    assert!(valid.len() >= 15, "{valid:#?}");
    // PodDisruptionBudget has no schema file: reported as Unchecked, not passed as Valid.
    assert!(unchecked.iter().any(|k| k == "PodDisruptionBudget"), "{unchecked:?}");
}

/// What the renderer made of the fixtures, templates included (the pos-backend Deployment):
/// the objects of the render tests' insta snapshots (`render__fixtures__*.snap`).
#[test]
fn rendered_fixture_snapshots_are_valid() {
    let set = all_schemas();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots");
    let mut valid = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !(name.starts_with("render__fixtures__") && name.ends_with(".snap")) {
            continue;
        }
        // The insta header is a YAML document of its own; objects have a kind and metadata.
        for object in documents(&path) {
            if object.get("kind").is_none() || object.get("metadata").is_none() {
                continue;
            }
            match set.validate(&object) {
                Verdict::Valid => valid.push(format!("{} {}", object["kind"], object["metadata"]["name"])),
                Verdict::Unchecked => {}
                Verdict::Invalid(errors) => panic!("{name}: {errors:#?}"),
            }
        }
    }
    assert!(valid.iter().any(|v| v == r#""Deployment" "pos-backend""#), "{valid:?}");
}

#[test]
fn unserved_crd_version_is_invalid() {
    let set = all_schemas();
    // source-controller v1.9 dropped v1beta2: an object in that version would be rejected.
    let mut object = single_document(&test_data().join("flux-gitrepository.yaml"));
    object["apiVersion"] = json!("source.toolkit.fluxcd.io/v1beta2");
    let Verdict::Invalid(errors) = set.validate(&object) else {
        panic!("v1beta2 accepted");
    };
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("/apiVersion: source.toolkit.fluxcd.io/v1beta2 is not a version of GitRepository")
            && errors[0].ends_with("(served: source.toolkit.fluxcd.io/v1)"),
        "{errors:?}"
    );
    // With the CRDs of a release that serves it, it is checked against that version.
    let mut compat = SchemaSet::new();
    compat
        .load_dir(&shared_data().join("crds/flux-source-controller-v1.7.4-compat-v1beta2"))
        .unwrap();
    assert_eq!(compat.validate(&object), Verdict::Valid);
    // A kind no CRD defines is unchecked.
    object["kind"] = json!("GitRepositoryy");
    assert_eq!(set.validate(&object), Verdict::Unchecked);
}

/// Real manifests: the Flux example repositories (Flux objects, Deployments, Namespaces,
/// RBAC, ...) and live objects dumped from clusters (status, managedFields, ...).
#[test]
fn upstream_manifests_are_valid_or_unchecked() {
    let set = all_schemas();
    let mut valid = 0;
    for dir in [
        "examples/flux2-kustomize-helm-example",
        "examples/flux2-multi-tenancy",
        "examples/podinfo",
        "status-samples/argo-cd",
        "status-samples/k9s",
    ] {
        let mut files = yaml_files(&shared_data().join(dir));
        files.extend(
            walkdir::WalkDir::new(shared_data().join(dir))
                .into_iter()
                .map(|e| e.unwrap().into_path())
                .filter(|p| p.extension().is_some_and(|e| e == "json")),
        );
        for path in files {
            let name = path.file_name().unwrap().to_string_lossy();
            // Kustomize patches (`*-values.yaml`, `*-patch.yaml`) are not whole objects.
            if name.ends_with("-values.yaml") || name.ends_with("-patch.yaml") {
                continue;
            }
            for object in documents(&path) {
                match set.validate(&object) {
                    Verdict::Valid => valid += 1,
                    Verdict::Unchecked => {}
                    Verdict::Invalid(errors)
                        if path.ends_with("flux2-multi-tenancy/infrastructure/kyverno/source.yaml") =>
                    {
                        // source.toolkit.fluxcd.io/v1beta2: not served by source-controller v1.9.
                        assert!(
                            errors[0].contains("v1beta2 is not a version of OCIRepository"),
                            "{errors:?}"
                        );
                    }
                    Verdict::Invalid(errors) => panic!("{}: {} {errors:#?}", path.display(), object["kind"]),
                }
            }
        }
    }
    assert!(valid >= 40, "{valid}");
}

#[test]
fn errors_are_capped_sorted_and_deterministic() {
    let set = all_schemas();
    let mut object = single_document(&test_data().join("flux-kustomization.yaml"));
    // Twelve wrong types (unknown fields would make one message: they are listed together).
    for field in [
        "interval",
        "retryInterval",
        "timeout",
        "path",
        "targetNamespace",
        "serviceAccountName",
        "namePrefix",
        "nameSuffix",
    ] {
        object["spec"][field] = json!(5);
    }
    for field in ["prune", "wait", "force", "suspend"] {
        object["spec"][field] = json!("yes");
    }
    let first = set.validate(&object);
    let Verdict::Invalid(errors) = &first else {
        panic!("valid");
    };
    assert_eq!(errors.len(), MAX_ERRORS);
    assert_eq!(errors[0], r#"/spec/force: "yes" is not of type "boolean""#);
    assert_eq!(errors.last().unwrap(), "... and 3 more errors");
    let mut sorted = errors[..MAX_ERRORS - 1].to_vec();
    sorted.sort();
    assert_eq!(sorted, errors[..MAX_ERRORS - 1]);
    assert_eq!(set.validate(&object), first);
}

#[test]
fn validation_runs_in_parallel() {
    let set = all_schemas();
    let deployment = single_document(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/workloads/storefront/deployment.yaml"),
    );
    let broken = single_document(&test_data().join("broken/deployment-misspelled-field.yaml"));
    let verdicts: Vec<Verdict> = (0..64)
        .into_par_iter()
        .map(|i| set.validate(if i % 2 == 0 { &deployment } else { &broken }))
        .collect();
    for (i, verdict) in verdicts.iter().enumerate() {
        assert_eq!(matches!(verdict, Verdict::Valid), i % 2 == 0, "{verdict:?}");
    }
}

#[test]
fn unreadable_or_unparsable_files_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = dir.path().join("broken-crd.yaml");
    std::fs::write(&yaml, "apiVersion: apiextensions.k8s.io/v1\nkind: [\n").unwrap();
    let err = SchemaSet::new().load_dir(dir.path()).unwrap_err();
    let shown = err.to_string();
    assert!(shown.starts_with(&format!("{}:", yaml.display())), "{shown}");
    assert!(err.location.unwrap().line > 0);
    std::fs::remove_file(&yaml).unwrap();

    let json = dir.path().join("thing-v1.json");
    std::fs::write(&json, "{\n  \"type\": \"object\",\n  oops\n}\n").unwrap();
    let err = SchemaSet::new().load_dir(dir.path()).unwrap_err();
    assert_eq!(err.location.as_ref().unwrap().line, 3, "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("{}:3: invalid JSON", json.display())),
        "{err}"
    );
    std::fs::remove_file(&json).unwrap();

    // A CRD without spec.versions: error at its line.
    let crd = dir.path().join("crd.yaml");
    std::fs::write(
        &crd,
        "apiVersion: v1\nkind: ConfigMap\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n\
         spec:\n  group: example.com\n  names:\n    kind: Widget\n",
    )
    .unwrap();
    let err = SchemaSet::new().load_crd_file(&crd).unwrap_err();
    assert!(err.message.contains("spec.versions"), "{err}");
    assert_eq!(err.location.unwrap().line, 6);

    let missing = dir.path().join("nope");
    let err = SchemaSet::new().load_dir(&missing).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
    let err = SchemaSet::new().load_crd_file(&missing).unwrap_err();
    assert!(err.to_string().contains("nope"), "{err}");
}

#[test]
fn fixture_deployment_validation_timing() {
    // Not a benchmark: prints the cost of the first use (compile) and of later validations,
    // and fails only if something is off by orders of magnitude.
    let mut set = SchemaSet::new();
    let start = Instant::now();
    set.load_dir(&shared_data().join(K8S_SCHEMAS)).unwrap();
    let load = start.elapsed();
    let deployment = single_document(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/workloads/retail-api/deployment.yaml"),
    );
    let start = Instant::now();
    assert_eq!(set.validate(&deployment), Verdict::Valid);
    let first = start.elapsed();
    let n = 2000;
    let start = Instant::now();
    for _ in 0..n {
        assert_eq!(set.validate(&deployment), Verdict::Valid);
    }
    let each = start.elapsed() / n;
    let broken = single_document(&test_data().join("broken/deployment-misspelled-field.yaml"));
    let start = Instant::now();
    for _ in 0..n {
        assert!(matches!(set.validate(&broken), Verdict::Invalid(_)));
    }
    let each_invalid = start.elapsed() / n;
    let start = Instant::now();
    set.compile_all().unwrap();
    let compile_all = start.elapsed();
    eprintln!(
        "k8s schemas: load_dir {load:?}, compile_all (18 left) {compile_all:?}; Deployment: first validation \
         (compile) {first:?}, then {each:?} per valid object, {each_invalid:?} per invalid one"
    );
    assert!(each.as_millis() < 50, "{each:?}");
}
