//! JSON schemas for Kubernetes kinds, and validation of rendered objects against them.
//!
//! Two sources of schemas:
//!
//! - the Kubernetes JSON schemas of yannh/kubernetes-json-schema, "standalone-strict" flavour
//!   (every `$ref` inlined, `additionalProperties: false`), one file per kind, used as they
//!   are (descriptions and other annotations are dropped to save memory and compile time);
//! - CustomResourceDefinitions: one schema per served version, converted from OpenAPI v3 to
//!   JSON Schema by [`openapi::crd_schema_to_json_schema`].
//!
//! Schemas are compiled lazily, on the first object of their kind (a Deployment schema is
//! 650 KB of JSON), and once: a [`SchemaSet`] is `Send + Sync` and validates in parallel.
//! Formats (`int32`, `date-time`, ...) are annotations only, never errors; patterns use the
//! `regex` crate's syntax, close to the Go RE2 syntax Kubernetes uses. CEL rules
//! (`x-kubernetes-validations`) are not evaluated.

pub mod openapi;

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use jsonschema::{Draft, PatternOptions, ValidationError, Validator};
use serde_json::Value;

use crate::error::{Error, IoContext, Location, Result};
use crate::yaml::{Doc, Step, parse_documents};

/// At most this many messages per invalid object.
pub const MAX_ERRORS: usize = 10;
/// A message longer than this (it quotes the offending value) is cut.
const MAX_MESSAGE_CHARS: usize = 240;
/// Errors looked at per object before sorting (a wildly wrong object can have thousands).
const MAX_COLLECTED: usize = 1000;

/// The outcome of validating one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The object matches the schema of its apiVersion and kind.
    Valid,
    /// It does not: at most [`MAX_ERRORS`] messages `<JSON pointer>: <message>`, sorted by
    /// pointer then message (the root is `/`). When there were more, the last message says
    /// how many were left out.
    Invalid(Vec<String>),
    /// No schema is loaded for its apiVersion and kind.
    Unchecked,
}

/// One schema, compiled on first use.
struct Entry {
    /// Where it comes from (`path` or `path:line`), for messages about the schema itself.
    source: String,
    raw: Value,
    compiled: OnceLock<std::result::Result<Validator, String>>,
}

impl Entry {
    fn new(raw: Value, source: String) -> Arc<Entry> {
        Arc::new(Entry {
            source,
            raw,
            compiled: OnceLock::new(),
        })
    }

    fn validator(&self) -> std::result::Result<&Validator, &str> {
        self.compiled
            .get_or_init(|| compile(&self.raw))
            .as_ref()
            .map_err(String::as_str)
    }
}

fn compile(raw: &Value) -> std::result::Result<Validator, String> {
    jsonschema::options()
        .with_draft(Draft::Draft7)
        .should_validate_formats(false)
        .should_ignore_unknown_formats(true)
        .with_pattern_options(PatternOptions::regex())
        .build(raw)
        .map_err(|e| {
            let at = e.instance_path().as_str();
            if at.is_empty() {
                e.to_string()
            } else {
                format!("{at}: {e}")
            }
        })
}

/// JSON schemas for Kubernetes kinds, keyed by (apiVersion, kind).
#[derive(Default)]
pub struct SchemaSet {
    schemas: HashMap<(String, String), Arc<Entry>>,
    /// Versions served by the loaded CRDs, by (group, kind): an object of a CRD's kind in a
    /// version the CRD does not serve is invalid rather than unchecked.
    crd_versions: HashMap<(String, String), BTreeSet<String>>,
}

impl fmt::Debug for SchemaSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaSet").field("kinds", &self.kinds()).finish()
    }
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<SchemaSet>();
};

impl SchemaSet {
    pub fn new() -> SchemaSet {
        SchemaSet::default()
    }

    /// How many (apiVersion, kind) have a schema.
    pub fn len(&self) -> usize {
        self.schemas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.schemas.is_empty()
    }

    pub fn contains(&self, api_version: &str, kind: &str) -> bool {
        self.schemas.contains_key(&(api_version.to_owned(), kind.to_owned()))
    }

    /// Every (apiVersion, kind) with a schema, sorted.
    pub fn kinds(&self) -> Vec<(String, String)> {
        let mut kinds: Vec<_> = self.schemas.keys().cloned().collect();
        kinds.sort();
        kinds
    }

    /// Add a JSON Schema (read as draft 7) for an apiVersion and kind, replacing
    /// any schema it had. `source` names it in messages about the schema itself.
    pub fn insert_json_schema(&mut self, api_version: &str, kind: &str, mut schema: Value, source: &str) {
        strip_annotations(&mut schema);
        self.schemas.insert(
            (api_version.to_owned(), kind.to_owned()),
            Entry::new(schema, source.to_owned()),
        );
    }

    /// Add the schema of a CRD version, given as its `openAPIV3Schema`.
    pub fn insert_openapi_v3(&mut self, api_version: &str, kind: &str, openapi: &Value, source: &str) {
        let schema = openapi::crd_schema_to_json_schema(openapi);
        self.schemas.insert(
            (api_version.to_owned(), kind.to_owned()),
            Entry::new(schema, source.to_owned()),
        );
    }

    /// Load every schema file under `dir`, recursively, in file name order (a later schema
    /// for the same apiVersion and kind replaces an earlier one). Hidden entries are skipped.
    ///
    /// - `*.json`: a Kubernetes JSON schema (yannh/kubernetes-json-schema standalone-strict,
    ///   e.g. `deployment-apps-v1.json`); apiVersion and kind are read from the schema's
    ///   `x-kubernetes-group-version-kind` (else from the single value of its `apiVersion` and
    ///   `kind` enums; a file with neither is skipped). `_definitions.json` and `all.json` are
    ///   skipped. A JSON CustomResourceDefinition is read as one.
    /// - `*.yaml`, `*.yml`: CustomResourceDefinitions, as [`SchemaSet::load_crd_file`]; other
    ///   documents (a kustomization.yaml, say) are skipped.
    ///
    /// Returns how many schemas were loaded. A file that cannot be read or parsed is an error
    /// naming it.
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize> {
        let mut count = 0;
        let walker = walkdir::WalkDir::new(dir)
            .follow_links(true)
            .sort_by_file_name()
            .into_iter()
            .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'));
        for entry in walker {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(dir);
                let cause = e.io_error().map_or_else(|| e.to_string(), ToString::to_string);
                Error::msg(format!("{}: cannot read: {cause}", path.display()))
            })?;
            if !entry.file_type().is_file() {
                continue;
            }
            let path = entry.path();
            let name = entry.file_name().to_string_lossy();
            if name.ends_with(".json") {
                if name == "_definitions.json" || name == "all.json" {
                    continue;
                }
                count += self.load_json_file(path)?;
            } else if name.ends_with(".yaml") || name.ends_with(".yml") {
                count += self.load_crd_file(path)?;
            }
        }
        Ok(count)
    }

    /// Load the CustomResourceDefinitions (apiextensions.k8s.io/v1) of a YAML or JSON file,
    /// possibly multi-document: one schema per served version, from
    /// `spec.versions[].schema.openAPIV3Schema`. Other documents are skipped, as are versions
    /// without a schema. Returns how many schemas were loaded.
    pub fn load_crd_file(&mut self, path: &Path) -> Result<usize> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).io_context(|| format!("{shown}: cannot read"))?;
        let docs = parse_documents(&text, &shown)?;
        let mut count = 0;
        for doc in &docs {
            if is_crd(&doc.value) {
                count += self.add_crd(doc, &shown)?;
            }
        }
        Ok(count)
    }

    fn load_json_file(&mut self, path: &Path) -> Result<usize> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).io_context(|| format!("{shown}: cannot read"))?;
        let schema: Value = serde_json::from_str(&text).map_err(|e| {
            let line = u32::try_from(e.line()).unwrap_or(0);
            Error::at(Location::new(shown.as_str(), line), format!("invalid JSON: {e}"))
        })?;
        if is_crd(&schema) {
            return self.load_crd_file(path);
        }
        let keys = group_version_kinds(&schema);
        if keys.is_empty() {
            tracing::debug!(file = %shown, "no apiVersion/kind in JSON schema, skipped");
            return Ok(0);
        }
        let mut schema = schema;
        strip_annotations(&mut schema);
        let entry = Entry::new(schema, shown);
        for key in &keys {
            self.schemas.insert(key.clone(), Arc::clone(&entry));
        }
        Ok(keys.len())
    }

    fn add_crd(&mut self, doc: &Doc, path: &str) -> Result<usize> {
        let crd = &doc.value;
        let at = |steps: &[Step<'_>]| Location::new(path, line_of(doc, steps));
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::at(at(&[Step::Key("spec")]), "CustomResourceDefinition without spec.group"))?;
        let kind = crd.pointer("/spec/names/kind").and_then(Value::as_str).ok_or_else(|| {
            Error::at(
                at(&[Step::Key("spec"), Step::Key("names")]),
                "CustomResourceDefinition without spec.names.kind",
            )
        })?;
        let versions = crd.pointer("/spec/versions").and_then(Value::as_array).ok_or_else(|| {
            Error::at(
                at(&[Step::Key("spec"), Step::Key("versions")]),
                "CustomResourceDefinition without a spec.versions list",
            )
        })?;
        let mut count = 0;
        for (i, version) in versions.iter().enumerate() {
            let steps = [Step::Key("spec"), Step::Key("versions"), Step::Index(i)];
            let name = version.get("name").and_then(Value::as_str).ok_or_else(|| {
                Error::at(
                    at(&steps),
                    format!("CustomResourceDefinition {kind}: spec.versions[{i}] without a name"),
                )
            })?;
            // `served` is required; a missing one reads as false, as in the API server.
            if version.get("served").and_then(Value::as_bool) != Some(true) {
                continue;
            }
            self.crd_versions
                .entry((group.to_owned(), kind.to_owned()))
                .or_default()
                .insert(name.to_owned());
            let Some(openapi) = version.pointer("/schema/openAPIV3Schema") else {
                continue;
            };
            let schema_steps = [
                Step::Key("spec"),
                Step::Key("versions"),
                Step::Index(i),
                Step::Key("schema"),
                Step::Key("openAPIV3Schema"),
            ];
            if !openapi.is_object() {
                return Err(Error::at(
                    at(&schema_steps),
                    format!("CustomResourceDefinition {kind} {name}: openAPIV3Schema is not a mapping"),
                ));
            }
            let source = at(&schema_steps).to_string();
            self.insert_openapi_v3(&format!("{group}/{name}"), kind, openapi, &source);
            count += 1;
        }
        Ok(count)
    }

    /// Compile every schema now (in parallel) rather than on first use; the first schema that
    /// does not compile is an error naming its file.
    pub fn compile_all(&self) -> Result<()> {
        use rayon::prelude::*;
        let mut entries: Vec<&Arc<Entry>> = self.schemas.values().collect();
        entries.sort_by(|a, b| a.source.cmp(&b.source));
        entries.dedup_by(|a, b| Arc::ptr_eq(a, b));
        entries.par_iter().try_for_each(|entry| {
            entry
                .validator()
                .map(|_| ())
                .map_err(|e| Error::msg(format!("{}: schema does not compile: {e}", entry.source)))
        })
    }

    /// Validate one object (a Kubernetes object with `apiVersion` and `kind`).
    pub fn validate(&self, object: &Value) -> Verdict {
        let Some(fields) = object.as_object() else {
            return Verdict::Invalid(vec!["/: a Kubernetes object must be a mapping".to_owned()]);
        };
        let api_version = fields.get("apiVersion").and_then(Value::as_str);
        let kind = fields.get("kind").and_then(Value::as_str);
        let (Some(api_version), Some(kind)) = (api_version, kind) else {
            let mut errors = Vec::new();
            if api_version.is_none() {
                errors.push("/apiVersion: missing, or not a string".to_owned());
            }
            if kind.is_none() {
                errors.push("/kind: missing, or not a string".to_owned());
            }
            return Verdict::Invalid(errors);
        };
        let Some(entry) = self.schemas.get(&(api_version.to_owned(), kind.to_owned())) else {
            return self.unknown_version(api_version, kind);
        };
        let validator = match entry.validator() {
            Ok(v) => v,
            Err(e) => {
                return Verdict::Invalid(vec![cut(format!(
                    "/: cannot check {kind} {api_version}: its schema ({}) does not compile: {e}",
                    entry.source
                ))]);
            }
        };
        // A SOPS-encrypted object reaches the API server decrypted and without its `sops:`
        // metadata (Flux removes it): validate what will be applied.
        let without_sops;
        let object = if crate::secrets::is_sops_encrypted(object) {
            let mut copy = fields.clone();
            copy.shift_remove("sops");
            without_sops = Value::Object(copy);
            &without_sops
        } else {
            object
        };
        let mut errors: Vec<(String, String)> = validator
            .iter_errors(object)
            .take(MAX_COLLECTED)
            .map(|e| describe(&e))
            .collect();
        if errors.is_empty() {
            return Verdict::Valid;
        }
        errors.sort();
        errors.dedup();
        let total = errors.len();
        let shown = if total > MAX_ERRORS { MAX_ERRORS - 1 } else { total };
        let mut messages: Vec<String> = errors
            .into_iter()
            .take(shown)
            .map(|(pointer, message)| format!("{pointer}: {message}"))
            .collect();
        if total > shown {
            messages.push(format!("... and {} more errors", total - shown));
        }
        Verdict::Invalid(messages)
    }

    /// No schema for this apiVersion: invalid if a loaded CRD defines the kind in other
    /// versions only, unchecked otherwise.
    fn unknown_version(&self, api_version: &str, kind: &str) -> Verdict {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        match self.crd_versions.get(&(group.to_owned(), kind.to_owned())) {
            Some(served) if !served.contains(version) => {
                let served: Vec<String> = served.iter().map(|v| format!("{group}/{v}")).collect();
                Verdict::Invalid(vec![format!(
                    "/apiVersion: {api_version} is not a version of {kind} served by its \
                     CustomResourceDefinition (served: {})",
                    served.join(", ")
                )])
            }
            _ => Verdict::Unchecked,
        }
    }
}

/// The line of the field at `steps` (of its key), or of its closest ancestor that exists.
fn line_of(doc: &Doc, steps: &[Step<'_>]) -> u32 {
    for k in (1..=steps.len()).rev() {
        match &steps[k - 1] {
            Step::Key(key) => {
                if let Some(line) = doc.lines.key_line(&steps[..k - 1], key) {
                    return line;
                }
            }
            Step::Index(_) => {
                if doc.lines.subtree(&steps[..k]).is_some() {
                    return doc.lines.line_at(&steps[..k]);
                }
            }
        }
    }
    doc.line()
}

fn is_crd(value: &Value) -> bool {
    value.get("kind").and_then(Value::as_str) == Some("CustomResourceDefinition")
        && value.get("apiVersion").and_then(Value::as_str) == Some("apiextensions.k8s.io/v1")
}

/// (apiVersion, kind) of a Kubernetes JSON schema: from `x-kubernetes-group-version-kind`,
/// else from the `apiVersion` and `kind` enums of its properties when they have one value.
fn group_version_kinds(schema: &Value) -> Vec<(String, String)> {
    let mut keys = Vec::new();
    if let Some(Value::Array(gvks)) = schema.get("x-kubernetes-group-version-kind") {
        for gvk in gvks {
            let group = gvk.get("group").and_then(Value::as_str).unwrap_or("");
            let (Some(version), Some(kind)) = (
                gvk.get("version").and_then(Value::as_str),
                gvk.get("kind").and_then(Value::as_str),
            ) else {
                continue;
            };
            let api_version = if group.is_empty() {
                version.to_owned()
            } else {
                format!("{group}/{version}")
            };
            keys.push((api_version, kind.to_owned()));
        }
    }
    if keys.is_empty() {
        let single = |field: &str| -> Option<String> {
            let values = schema.pointer(&format!("/properties/{field}/enum"))?.as_array()?;
            match values.as_slice() {
                [Value::String(v)] => Some(v.clone()),
                _ => None,
            }
        };
        if let (Some(api_version), Some(kind)) = (single("apiVersion"), single("kind")) {
            keys.push((api_version, kind));
        }
    }
    keys.sort();
    keys.dedup();
    keys
}

/// Drop what only documents a JSON schema (`description`, `x-kubernetes-*` extensions) and
/// `$schema` (the validator is told the draft), walking only through subschema positions so
/// that a property named `description` stays.
fn strip_annotations(schema: &mut Value) {
    let Value::Object(map) = schema else { return };
    map.remove("description");
    map.remove("$schema");
    map.retain(|k, _| !k.starts_with("x-kubernetes-"));
    for key in ["properties", "patternProperties", "definitions", "$defs"] {
        if let Some(Value::Object(subs)) = map.get_mut(key) {
            subs.values_mut().for_each(strip_annotations);
        }
    }
    for key in [
        "items",
        "additionalItems",
        "additionalProperties",
        "not",
        "contains",
        "propertyNames",
        "if",
        "then",
        "else",
        "allOf",
        "anyOf",
        "oneOf",
    ] {
        match map.get_mut(key) {
            Some(Value::Array(subs)) => subs.iter_mut().for_each(strip_annotations),
            Some(sub) => strip_annotations(sub),
            None => {}
        }
    }
}

/// `(JSON pointer, message)` of one error; the root is `/`.
fn describe(error: &ValidationError<'_>) -> (String, String) {
    let pointer = match error.instance_path().as_str() {
        "" => "/".to_owned(),
        p => p.to_owned(),
    };
    (pointer, cut(error.to_string()))
}

/// Cut a message to [`MAX_MESSAGE_CHARS`] characters.
fn cut(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((end, _)) => format!("{}...", &message[..end]),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const API: &str = "example.com/v1";

    /// A set with one CRD kind, Widget, whose openAPIV3Schema has `spec` = `spec_schema`.
    fn widgets(spec_schema: Value) -> SchemaSet {
        let openapi = json!({
            "type": "object",
            "properties": {"spec": spec_schema},
        });
        let mut set = SchemaSet::new();
        set.insert_openapi_v3(API, "Widget", &openapi, "test");
        set
    }

    fn widget(spec: Value) -> Value {
        json!({"apiVersion": API, "kind": "Widget", "metadata": {"name": "w"}, "spec": spec})
    }

    fn errors(verdict: Verdict) -> Vec<String> {
        match verdict {
            Verdict::Invalid(errors) => errors,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn nullable_admits_null() {
        let set = widgets(json!({
            "type": "object",
            "properties": {
                "size": {"type": "integer", "nullable": true},
                "mode": {"type": "string", "enum": ["a", "b"], "nullable": true},
                "count": {"type": "integer"},
            },
        }));
        assert_eq!(
            set.validate(&widget(json!({"size": null, "mode": null}))),
            Verdict::Valid
        );
        assert_eq!(set.validate(&widget(json!({"size": 3, "mode": "a"}))), Verdict::Valid);
        let e = errors(set.validate(&widget(json!({"count": null}))));
        assert_eq!(e, vec![r#"/spec/count: null is not of type "integer""#]);
    }

    #[test]
    fn nullable_with_junctors_admits_null() {
        let set = widgets(json!({
            "type": "object",
            "properties": {
                "ref": {
                    "type": "object",
                    "nullable": true,
                    "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                    "oneOf": [{"required": ["a"]}, {"required": ["b"]}],
                },
            },
        }));
        assert_eq!(set.validate(&widget(json!({"ref": null}))), Verdict::Valid);
        assert_eq!(set.validate(&widget(json!({"ref": {"a": "x"}}))), Verdict::Valid);
        assert!(matches!(set.validate(&widget(json!({"ref": {}}))), Verdict::Invalid(_)));
    }

    #[test]
    fn int_or_string_admits_both() {
        let set = widgets(json!({
            "type": "object",
            "properties": {
                "port": {
                    "x-kubernetes-int-or-string": true,
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                },
                "surge": {"x-kubernetes-int-or-string": true},
            },
        }));
        assert_eq!(
            set.validate(&widget(json!({"port": 8080, "surge": "25%"}))),
            Verdict::Valid
        );
        assert_eq!(
            set.validate(&widget(json!({"port": "http", "surge": 1}))),
            Verdict::Valid
        );
        let e = errors(set.validate(&widget(json!({"surge": true}))));
        assert_eq!(e.len(), 1);
        assert!(e[0].starts_with("/spec/surge: true is not of types"), "{e:?}");
        assert!(matches!(
            set.validate(&widget(json!({"port": 1.5}))),
            Verdict::Invalid(_)
        ));
    }

    #[test]
    fn preserve_unknown_fields_admits_any_field() {
        let set = widgets(json!({
            "type": "object",
            "properties": {
                "values": {
                    "type": "object",
                    "x-kubernetes-preserve-unknown-fields": true,
                    "properties": {"known": {"type": "string"}},
                },
                "anything": {"x-kubernetes-preserve-unknown-fields": true},
            },
        }));
        let spec = json!({
            "values": {"known": "k", "free": {"deep": [1, 2]}},
            "anything": [{"x": 1}],
        });
        assert_eq!(set.validate(&widget(spec)), Verdict::Valid);
        // Listed fields are still checked.
        let e = errors(set.validate(&widget(json!({"values": {"known": 1}}))));
        assert_eq!(e, vec![r#"/spec/values/known: 1 is not of type "string""#]);
    }

    #[test]
    fn unknown_field_is_rejected() {
        let set = widgets(json!({
            "type": "object",
            "properties": {
                "interval": {"type": "string"},
                "nested": {"type": "object", "properties": {"a": {"type": "string"}}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        }));
        let e = errors(set.validate(&widget(json!({"intervall": "5m"}))));
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("/spec: ") && e[0].contains("'intervall' was unexpected"),
            "{e:?}"
        );
        let e = errors(set.validate(&widget(json!({"nested": {"b": "x"}}))));
        assert!(e[0].starts_with("/spec/nested: ") && e[0].contains("'b'"), "{e:?}");
        // additionalProperties given: a map, any key.
        assert_eq!(set.validate(&widget(json!({"labels": {"x": "y"}}))), Verdict::Valid);
        // Unknown top-level field.
        let mut object = widget(json!({}));
        object["spek"] = json!({});
        let e = errors(set.validate(&object));
        assert!(e[0].starts_with("/: ") && e[0].contains("'spek'"), "{e:?}");
    }

    #[test]
    fn junctor_branches_do_not_reject_fields() {
        // Structural schemas: anyOf branches only add value validations.
        let set = widgets(json!({
            "type": "object",
            "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
            "anyOf": [
                {"properties": {"a": {"minLength": 1}}, "required": ["a"]},
                {"required": ["b"]},
            ],
        }));
        assert_eq!(set.validate(&widget(json!({"a": "x", "b": "y"}))), Verdict::Valid);
        assert!(matches!(set.validate(&widget(json!({}))), Verdict::Invalid(_)));
    }

    #[test]
    fn unknown_format_is_not_an_error() {
        let set = widgets(json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer", "format": "int32"},
                "t": {"type": "string", "format": "date-time"},
                "q": {"type": "string", "format": "quantity-of-widgets"},
                "d": {"type": "string", "format": "duration"},
            },
        }));
        let spec = json!({"n": 5, "t": "not a date", "q": "12 widgets", "d": "5m"});
        assert_eq!(set.validate(&widget(spec)), Verdict::Valid);
    }

    #[test]
    fn openapi_exclusive_bounds_and_sets() {
        let set = widgets(json!({
            "type": "object",
            "properties": {
                "ratio": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            },
        }));
        assert_eq!(
            set.validate(&widget(json!({"ratio": 0.5, "tags": ["a", "b"]}))),
            Verdict::Valid
        );
        assert!(matches!(
            set.validate(&widget(json!({"ratio": 0}))),
            Verdict::Invalid(_)
        ));
        assert!(matches!(
            set.validate(&widget(json!({"tags": ["a", "a"]}))),
            Verdict::Invalid(_)
        ));
    }

    #[test]
    fn root_gets_api_version_kind_and_object_meta() {
        let set = widgets(json!({"type": "object"}));
        let mut object = widget(json!({}));
        object["metadata"] = json!({
            "name": "w", "namespace": "ns", "labels": {"a": "b"}, "annotations": {"c": "d"},
        });
        assert_eq!(set.validate(&object), Verdict::Valid);
        object["metadata"]["name"] = json!(5);
        let e = errors(set.validate(&object));
        assert_eq!(e, vec![r#"/metadata/name: 5 is not of type "string""#]);
        object["metadata"] = json!({"name": "w", "lables": {}});
        let e = errors(set.validate(&object));
        assert!(e[0].starts_with("/metadata: ") && e[0].contains("'lables'"), "{e:?}");
        object["metadata"] = json!({"name": "w", "labels": {"a": 1}});
        assert!(matches!(set.validate(&object), Verdict::Invalid(_)));
    }

    #[test]
    fn crd_metadata_schema_narrows_object_meta() {
        let openapi = json!({
            "type": "object",
            "properties": {
                "metadata": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 3}}},
            },
        });
        let mut set = SchemaSet::new();
        set.insert_openapi_v3(API, "Widget", &openapi, "test");
        let object = json!({"apiVersion": API, "kind": "Widget", "metadata": {"name": "abc", "namespace": "x"}});
        assert_eq!(set.validate(&object), Verdict::Valid);
        let object = json!({"apiVersion": API, "kind": "Widget", "metadata": {"name": "abcd"}});
        let e = errors(set.validate(&object));
        assert!(e[0].starts_with("/metadata/name: "), "{e:?}");
    }

    #[test]
    fn embedded_resource_gets_api_version_kind_metadata() {
        let set = widgets(json!({
            "type": "object",
            "properties": {
                "template": {
                    "type": "object",
                    "x-kubernetes-embedded-resource": true,
                    "properties": {"spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}},
                },
            },
        }));
        let template = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}});
        assert_eq!(set.validate(&widget(json!({"template": template}))), Verdict::Valid);
        let e = errors(set.validate(&widget(json!({"template": {"spec": {}}}))));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e.iter().all(|m| m.starts_with("/spec/template: ")), "{e:?}");
        let bad = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": 1}});
        let e = errors(set.validate(&widget(json!({"template": bad}))));
        assert!(e[0].starts_with("/spec/template/metadata/name: "), "{e:?}");
    }

    #[test]
    fn errors_are_sorted_capped_and_deterministic() {
        let properties: serde_json::Map<String, Value> = (0..15)
            .map(|i| (format!("f{i:02}"), json!({"type": "string"})))
            .collect();
        let set = widgets(json!({"type": "object", "properties": properties}));
        let spec: serde_json::Map<String, Value> = (0..15).rev().map(|i| (format!("f{i:02}"), json!(i))).collect();
        let object = widget(Value::Object(spec));
        let e = errors(set.validate(&object));
        assert_eq!(e.len(), MAX_ERRORS);
        assert_eq!(e[0], r#"/spec/f00: 0 is not of type "string""#);
        assert_eq!(e[8], r#"/spec/f08: 8 is not of type "string""#);
        assert_eq!(e[9], "... and 6 more errors");
        assert_eq!(set.validate(&object), Verdict::Invalid(e));
    }

    #[test]
    fn objects_without_schema_or_identity() {
        let set = widgets(json!({"type": "object"}));
        assert_eq!(
            set.validate(&json!({"apiVersion": "v1", "kind": "Pod"})),
            Verdict::Unchecked
        );
        let e = errors(set.validate(&json!({"kind": "Widget"})));
        assert_eq!(e, vec!["/apiVersion: missing, or not a string"]);
        assert!(matches!(set.validate(&json!([1])), Verdict::Invalid(_)));
        assert!(matches!(set.validate(&json!(null)), Verdict::Invalid(_)));
    }

    #[test]
    fn a_schema_that_does_not_compile_is_reported() {
        let mut set = SchemaSet::new();
        set.insert_json_schema(API, "Widget", json!({"type": 12}), "broken.json");
        let e = errors(set.validate(&widget(json!({}))));
        assert!(
            e[0].contains("broken.json") && e[0].contains("does not compile"),
            "{e:?}"
        );
        let err = set.compile_all().unwrap_err();
        assert!(err.message.starts_with("broken.json: schema does not compile"), "{err}");
    }

    /// JSON values built from schema keywords and Kubernetes field names, for fuzzing.
    fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        const WORDS: &[&str] = &[
            "type",
            "properties",
            "items",
            "additionalProperties",
            "nullable",
            "required",
            "enum",
            "anyOf",
            "allOf",
            "oneOf",
            "not",
            "pattern",
            "minimum",
            "exclusiveMinimum",
            "maxLength",
            "format",
            "x-kubernetes-int-or-string",
            "x-kubernetes-preserve-unknown-fields",
            "x-kubernetes-embedded-resource",
            "x-kubernetes-list-type",
            "object",
            "string",
            "integer",
            "array",
            "number",
            "boolean",
            "null",
            "set",
            "apiVersion",
            "kind",
            "metadata",
            "name",
            "spec",
            "([",
            "^a+$",
            "int32",
            "",
        ];
        let word = proptest::sample::select(WORDS).prop_map(str::to_owned);
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (-3i64..300).prop_map(|n| json!(n)),
            word.clone().prop_map(Value::String),
        ];
        leaf.prop_recursive(5, 64, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                proptest::collection::vec((word.clone(), inner), 0..6)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]
        #[test]
        fn any_openapi_and_any_object_do_not_panic(openapi in arbitrary_json(), spec in arbitrary_json()) {
            let mut set = SchemaSet::new();
            set.insert_openapi_v3(API, "Widget", &openapi, "fuzz");
            let _ = set.validate(&widget(spec.clone()));
            let _ = set.validate(&spec);
            let _ = set.compile_all();
        }
    }

    #[test]
    fn odd_openapi_does_not_panic() {
        for odd in [
            json!(null),
            json!(true),
            json!([1, 2]),
            json!({"type": 5, "properties": [1], "items": "x", "anyOf": {}, "not": 3}),
            json!({"type": ["object", 3], "nullable": true, "enum": "x", "additionalProperties": 3}),
            json!({"x-kubernetes-embedded-resource": true, "required": "x"}),
        ] {
            let mut set = SchemaSet::new();
            set.insert_openapi_v3(API, "Widget", &odd, "odd");
            let _ = set.validate(&widget(json!({"a": 1})));
            let _ = openapi::crd_schema_to_json_schema(&odd);
        }
    }
}
