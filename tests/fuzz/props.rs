//! What the fuzz targets check, shared by the coverage-guided targets (`fuzz/fuzz_targets/`,
//! cargo-fuzz, on stable with `--sanitizer none`) and `tests/fuzz_corpus.rs`, which runs every input of the corpus and
//! every past crash through the same checks in `cargo test` (stable).
//!
//! Each check takes any bytes. Beyond "does not panic" (a panic is what libFuzzer reports),
//! each asserts what must hold of what starmap accepts: lines within the text, emitter and
//! readers agreeing, templates within their output cap, errors on one line.

#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use starmap::source::{Inventory, SourceFile, SourceTree, load_model};
use starmap::spec::{LabelSelector, ObjectTest};
use starmap::yaml::{self, LineTree};

/// A property checked of one input: returns if it holds, panics (so the fuzzer saves the
/// input) if it does not.
pub type Check = fn(&[u8]);

/// The checks, by target name (the names of `fuzz/fuzz_targets/*.rs` and of the corpus
/// directories).
pub const TARGETS: &[(&str, Check)] = &[
    ("yaml_loader", yaml_loader),
    ("spec_validation", spec_validation),
    ("selectors", selectors),
    ("templates", templates),
    ("patches", patches),
    ("status_reader", status_reader),
];

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// An error starmap prints is one line.
fn one_line(e: &starmap::Error) {
    let shown = e.to_string();
    assert!(!shown.trim().is_empty(), "an empty error");
    assert!(!shown.contains('\n'), "an error of several lines: {shown:?}");
}

fn lines_within(tree: &LineTree, max: u32) {
    assert!(
        tree.max_line() <= max,
        "line {} in a text of {max} lines",
        tree.max_line()
    );
}

/// The YAML loader: every line it reports (of nodes, keys, errors) is in the text; what it
/// reads, the emitter writes back so that it reads the same again.
pub fn yaml_loader(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let max = yaml_lines(text) + 1;
    match yaml::parse_documents(text, "f.yaml") {
        Ok(docs) => {
            for doc in docs {
                lines_within(&doc.lines, max);
                let written = yaml::to_yaml_string(&doc.value);
                let again = yaml::parse_documents(&written, "again.yaml")
                    .unwrap_or_else(|e| panic!("the emitter wrote what the loader refuses: {e}\n{written}"));
                assert_eq!(again.len(), 1, "{written}");
                assert!(
                    same(&again[0].value, &doc.value),
                    "{:?} came back as {:?}",
                    doc.value,
                    again[0].value
                );
            }
        }
        Err(e) => {
            one_line(&e);
            let line = e.location.as_ref().map(|l| l.line).unwrap_or(0);
            assert!(line <= max, "error at line {line} of {max}: {e}");
        }
    }
}

/// Lines as YAML counts them: a line break is `\n`, `\r\n` or a lone `\r`.
fn yaml_lines(text: &str) -> u32 {
    let lone_cr = text
        .as_bytes()
        .windows(2)
        .filter(|w| w[0] == b'\r' && w[1] != b'\n')
        .count()
        + usize::from(text.ends_with('\r'));
    (text.matches('\n').count() + lone_cr) as u32 + 1
}

/// Values equal, numbers by their value (the emitter may write `1.0` for a float `1`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|((ka, a), (kb, b))| ka == kb && same(a, b))
        }
        _ => a == b,
    }
}

/// The files of a fuzzed source: the input split at lines `%%`, in this order.
const SOURCE_FILES: [&str; 8] = [
    "inventory/clusters.yaml",
    "placements/p.yaml",
    "customizations/c.yaml",
    "workloads/a.yaml",
    "workloads/b.yaml",
    "starmap.yaml",
    "status/summaries.yaml",
    "templates/flux-sync.yaml.j2",
];

/// A source from the input, loaded, planned, rendered for every cluster with its Flux and
/// Argo CD objects: an error is one line; success renders every cluster.
pub fn spec_validation(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let mut files: Vec<SourceFile> = SOURCE_FILES
        .iter()
        .zip(text.split("\n%%\n"))
        .map(|(path, text)| SourceFile {
            path: path.to_string(),
            text: text.to_string(),
        })
        .collect();
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let tree = SourceTree {
        display: "fuzz".into(),
        files,
        ..SourceTree::default()
    };
    if let Err(e) = load_and_render(&tree) {
        one_line(&e);
    }
}

fn load_and_render(tree: &SourceTree) -> starmap::Result<()> {
    let model = load_model(tree, &Inventory::SourceOnly)?;
    // Bounded work per input: a fuzzer's inventory of thousands of clusters says nothing new.
    if model.clusters.len() > 64 || model.workloads.len() > 256 {
        return Ok(());
    }
    let plan = starmap::plan::build(&model)?;
    let env = starmap::render::environment();
    let renderer = starmap::render::Renderer::new(&model, &env)?;
    let plans: Vec<_> = plan.clusters.iter().collect();
    let rendered = renderer.render(&plans)?;
    assert_eq!(rendered.len(), model.clusters.len());
    for cluster in &rendered {
        for (path, bytes) in cluster.files() {
            assert!(
                !path.starts_with('/') && !path.split('/').any(|p| p == ".." || p.is_empty()),
                "{path}"
            );
            assert!(path.split('/').all(|p| p.len() <= 255), "{path}");
            assert!(std::str::from_utf8(bytes).is_ok());
        }
    }
    if let Some(sync) = starmap::gitops::SyncObjects::new(&model, Some("https://git.example.com/d.git"), "main")? {
        for cluster in &model.clusters {
            sync.cluster_files(cluster)?;
        }
        sync.fleet_files()?;
    }
    Ok(())
}

/// Label selectors and ObjectTests from the input (`selector`, `labels`, `test`, `object`):
/// they compile or say why; a selector matches the labels it was built from; `{}` matches
/// everything; In and NotIn of the same values disagree on a label that is there.
pub fn selectors(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(docs) = yaml::parse_documents(text, "s.yaml") else {
        return;
    };
    let Some(doc) = docs.first() else { return };
    let labels: BTreeMap<String, String> = doc
        .value
        .get("labels")
        .and_then(|l| serde_json::from_value(l.clone()).ok())
        .unwrap_or_default();
    assert!(LabelSelector::default().matches(&labels));
    let own = LabelSelector {
        match_labels: labels.clone(),
        ..LabelSelector::default()
    };
    assert!(own.matches(&labels));
    if let Some(Ok(selector)) = doc
        .value
        .get("selector")
        .map(|s| serde_json::from_value::<LabelSelector>(s.clone()))
        && selector.validate().is_ok()
    {
        let matched = selector.matches(&labels);
        // Requirements are ANDed: each alone matches whenever the whole does.
        for r in &selector.match_expressions {
            let alone = LabelSelector {
                match_expressions: vec![r.clone()],
                ..LabelSelector::default()
            };
            assert!(!matched || alone.matches(&labels));
            if labels.contains_key(&r.key) && !r.values.is_empty() {
                use starmap::spec::Operator::{In, NotIn};
                let flip = |op| LabelSelector {
                    match_expressions: vec![starmap::spec::Requirement {
                        operator: op,
                        ..r.clone()
                    }],
                    ..LabelSelector::default()
                };
                assert_ne!(flip(In).matches(&labels), flip(NotIn).matches(&labels));
            }
        }
    }
    if let Some(Ok(test)) = doc
        .value
        .get("test")
        .map(|t| serde_json::from_value::<ObjectTest>(t.clone()))
    {
        match test.compile() {
            Ok(compiled) => {
                let object = doc.value.get("object").cloned().unwrap_or(Value::Null);
                let facts = starmap::spec::ObjectFacts {
                    source_path: object.get("path").and_then(Value::as_str).unwrap_or("workloads/a.yaml"),
                    group: object.get("group").and_then(Value::as_str).unwrap_or(""),
                    kind: object.get("kind").and_then(Value::as_str).unwrap_or("ConfigMap"),
                    namespace: object.get("namespace").and_then(Value::as_str),
                    name: object.get("name").and_then(Value::as_str).unwrap_or("x"),
                    labels: object.get("labels").and_then(Value::as_object),
                };
                let _ = compiled.matches(&facts);
            }
            Err(e) => assert!(!e.is_empty()),
        }
    }
}

/// A template text (the whole input) compiled and evaluated against a cluster's context:
/// an error, or a value within the output cap, in bounded time (the fuel).
pub fn templates(data: &[u8]) {
    let Some(text) = text(data) else { return };
    if !starmap::template::is_template(text) {
        return;
    }
    let env = starmap::template::environment();
    let Ok(templates) = starmap::template::Templates::compile(&env, [text]) else {
        return;
    };
    let context = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({
        "cluster": {
            "name": "store-0042",
            "labels": {"region": "us-east", "tier": "edge"},
            "annotations": {},
            "properties": {"storeId": "0042", "replicas": 2, "list": [1, 2, 3], "map": {"a": "b"}},
        },
        "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "web"}},
    })));
    let started = std::time::Instant::now();
    if let Ok(value) = templates.expand(text, &context) {
        // The cap is on the text a template writes; a value of a lone expression is capped
        // on its JSON (measuring a text by its JSON would count `\u0000` as six bytes).
        let size = match &value {
            Value::String(s) => s.len(),
            other => serde_json::to_vec(other).map(|v| v.len()).unwrap_or(0),
        };
        assert!(size <= starmap::template::MAX_OUTPUT_BYTES, "{size} bytes");
    }
    assert!(
        started.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
}

/// A Customization's patches and merge (the input, YAML: `object`, `patches`, `merge`) applied
/// to one workload object on one cluster, through the renderer: an error names the place, in
/// one line; success is an object of the same identity or a clear error.
pub fn patches(data: &[u8]) {
    let Some(text) = text(data) else { return };
    let Ok(docs) = yaml::parse_documents(text, "p.yaml") else {
        return;
    };
    let Some(doc) = docs.first() else { return };
    let object = doc.value.get("object").cloned().unwrap_or_else(
        || serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x", "namespace": "web"}}),
    );
    let mut spec = serde_json::json!({"targets": [{"kinds": [object.get("kind").cloned().unwrap_or(Value::Null)]}]});
    for key in ["patches", "merge"] {
        if let Some(v) = doc.value.get(key) {
            spec[key] = v.clone();
        }
    }
    let customization = serde_json::json!({
        "apiVersion": "starmap.dev/v1alpha1", "kind": "Customization",
        "metadata": {"name": "c"}, "spec": spec,
    });
    let source = [
        "apiVersion: starmap.dev/v1alpha1\nkind: Cluster\nmetadata:\n  name: c1\n  labels: {env: prod}\nspec:\n  properties: {n: 3, s: x}\n".to_string(),
        "apiVersion: starmap.dev/v1alpha1\nkind: Placement\nmetadata:\n  name: p\nspec:\n  clusterSelectors: [{}]\n  workloads:\n  - paths: [\"workloads/**\"]\n".to_string(),
        yaml::to_yaml_string(&customization),
        yaml::to_yaml_string(&object),
    ]
    .join("\n%%\n");
    spec_validation(source.as_bytes());
}

/// The fast reader of status files: whatever it accepts, the general parser reads the same;
/// what the emitter writes of any JSON value (the input, as JSON), it reads back.
pub fn status_reader(data: &[u8]) {
    if let Some(text) = text(data)
        && let Some(fast) = yaml::fast::read(text)
    {
        let general = yaml::parse_documents(text, "s.yaml").expect("the fast reader accepted what the parser refuses");
        // A document that is only `null` is no document to the parser (as an empty one is).
        if fast.is_null() {
            assert!(general.is_empty(), "{general:?}");
            return;
        }
        assert_eq!(general.len(), 1);
        assert_eq!(
            general[0].value, fast,
            "the fast reader and the parser disagree on {text:?}"
        );
    }
    if let Ok(value) = serde_json::from_slice::<Value>(data) {
        let written = yaml::to_yaml_string(&value);
        if let Some(read) = yaml::fast::read(&written) {
            assert!(same(&read, &value), "{value:?} came back as {read:?}");
        }
        let general = yaml::parse_documents(&written, "w.yaml").expect("the parser reads what the emitter wrote");
        // A document that is only `null` is no document (as an empty one is).
        let expected = usize::from(!value.is_null());
        assert!(
            general.len() == expected && general.iter().all(|d| same(&d.value, &value)),
            "{value:?} came back as {general:?}"
        );
    }
}
