//! From a CustomResourceDefinition's `openAPIV3Schema` (OpenAPI v3.0 with Kubernetes
//! extensions) to a plain JSON Schema (draft 7) that rejects what the API server, with strict
//! field validation, would reject.
//!
//! The rules, node by node (see [`crd_schema_to_json_schema`]):
//!
//! - `nullable: true` adds `"null"` to the node's type (and to its `enum`, if it has one);
//! - `x-kubernetes-int-or-string: true` means `type: [integer, string]`;
//! - `x-kubernetes-preserve-unknown-fields: true` admits fields the node does not list;
//! - `x-kubernetes-embedded-resource: true` adds `apiVersion` and `kind` (required, strings)
//!   and an ObjectMeta `metadata`;
//! - an object node (`type: object`, or `properties` without a type) that says nothing about
//!   `additionalProperties` and does not preserve unknown fields gets
//!   `additionalProperties: false`: a structural schema prunes such fields, and strict field
//!   validation rejects them. Branches of `allOf`/`anyOf`/`oneOf`/`not` only add value
//!   constraints in a structural schema, so they never get it;
//! - OpenAPI's boolean `exclusiveMinimum`/`exclusiveMaximum` become the numeric draft 7 form;
//! - `x-kubernetes-list-type: set` means `uniqueItems: true`;
//! - only validation keywords are kept: descriptions, defaults, examples, `$ref` (not allowed
//!   in a CRD), and the other extensions (CEL `x-kubernetes-validations`, list-map keys, ...)
//!   are dropped. `format` is kept as an annotation: the validator does not assert formats.
//!
//! The root also gets `apiVersion` and `kind` (strings) and `metadata` (ObjectMeta, merged
//! with what the CRD says of it, which can only narrow `name` and `generateName`).

use serde_json::{Map, Value, json};

/// Keywords copied as they are.
const PLAIN_KEYWORDS: &[&str] = &[
    "format",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
    "required",
    "enum",
    "const",
];

/// Convert the `openAPIV3Schema` of one CRD version into the JSON Schema of the whole object.
pub fn crd_schema_to_json_schema(openapi: &Value) -> Value {
    let mut root = convert(openapi, false);
    let preserve = flag(openapi, "x-kubernetes-preserve-unknown-fields");
    let crd_metadata = openapi.get("properties").and_then(|p| p.get("metadata"));
    if let Value::Object(map) = &mut root {
        map.entry("type").or_insert_with(|| json!("object"));
        add_resource_fields(map, crd_metadata);
        if !preserve {
            map.entry("additionalProperties").or_insert(Value::Bool(false));
        }
    }
    root
}

/// The schema of `metadata`: Kubernetes' ObjectMeta (v1.30), strict. `name`, `generateName`
/// and `namespace` must be strings; elsewhere null is accepted (the API server reads it as
/// "not set"), as in the Kubernetes JSON schemas.
pub fn object_meta_schema() -> Value {
    let string = json!({"type": ["string", "null"]});
    let name = json!({"type": "string"});
    let integer = json!({"type": ["integer", "null"]});
    let string_map = json!({"type": ["object", "null"], "additionalProperties": {"type": ["string", "null"]}});
    let string_list = json!({"type": ["array", "null"], "items": {"type": ["string", "null"]}});
    json!({
        "type": "object",
        "properties": {
            "annotations": string_map,
            "creationTimestamp": string,
            "deletionGracePeriodSeconds": integer,
            "deletionTimestamp": string,
            "finalizers": string_list,
            "generateName": name,
            "generation": integer,
            "labels": string_map,
            "managedFields": {
                "type": ["array", "null"],
                "items": {
                    "type": ["object", "null"],
                    "properties": {
                        "apiVersion": string,
                        "fieldsType": string,
                        "fieldsV1": {"type": ["object", "null"]},
                        "manager": string,
                        "operation": string,
                        "subresource": string,
                        "time": string,
                    },
                    "additionalProperties": false,
                },
            },
            "name": name,
            "namespace": name,
            "ownerReferences": {
                "type": ["array", "null"],
                "items": {
                    "type": ["object", "null"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "blockOwnerDeletion": {"type": ["boolean", "null"]},
                        "controller": {"type": ["boolean", "null"]},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "uid": {"type": "string"},
                    },
                    "required": ["apiVersion", "kind", "name", "uid"],
                    "additionalProperties": false,
                },
            },
            "resourceVersion": string,
            "selfLink": string,
            "uid": string,
        },
        "additionalProperties": false,
    })
}

/// Add `apiVersion`, `kind` and `metadata` to the properties of a resource's schema.
fn add_resource_fields(map: &mut Map<String, Value>, declared_metadata: Option<&Value>) {
    let properties = map.entry("properties").or_insert_with(|| json!({}));
    if let Value::Object(properties) = properties {
        properties
            .entry("apiVersion")
            .or_insert_with(|| json!({"type": "string"}));
        properties.entry("kind").or_insert_with(|| json!({"type": "string"}));
        let metadata = match declared_metadata {
            // What the CRD says of metadata only narrows ObjectMeta: convert it like a
            // junctor branch (no unknown-field rejection of its own), and require both.
            Some(declared) => json!({"allOf": [object_meta_schema(), convert(declared, true)]}),
            None => object_meta_schema(),
        };
        properties.insert("metadata".to_owned(), metadata);
    }
}

fn flag(node: &Value, name: &str) -> bool {
    node.get(name) == Some(&Value::Bool(true))
}

/// Convert one schema node. `in_junctor`: the node is (inside) a branch of
/// allOf/anyOf/oneOf/not, where unknown fields are not this node's business.
fn convert(node: &Value, in_junctor: bool) -> Value {
    let src = match node {
        Value::Object(src) => src,
        // `true`/`false` are schemas too; anything else is not a schema: accept anything
        // rather than fail to compile.
        Value::Bool(b) => return Value::Bool(*b),
        _ => return json!({}),
    };
    let mut out = Map::new();
    let nullable = flag(node, "nullable");
    let int_or_string = flag(node, "x-kubernetes-int-or-string");
    let preserve = flag(node, "x-kubernetes-preserve-unknown-fields");
    let embedded = flag(node, "x-kubernetes-embedded-resource");

    // type
    let mut types: Vec<Value> = if int_or_string {
        vec![json!("integer"), json!("string")]
    } else {
        match src.get("type") {
            Some(Value::String(t)) => vec![Value::String(t.clone())],
            Some(Value::Array(ts)) => ts.iter().filter(|t| t.is_string()).cloned().collect(),
            _ => Vec::new(),
        }
    };
    let typed = !types.is_empty();
    let is_object = types.iter().any(|t| t == "object") || (!typed && src.contains_key("properties"));
    if typed {
        if nullable && !types.iter().any(|t| t == "null") {
            types.push(json!("null"));
        }
        out.insert(
            "type".to_owned(),
            if types.len() == 1 {
                types.remove(0)
            } else {
                Value::Array(types)
            },
        );
    }

    for keyword in PLAIN_KEYWORDS {
        if let Some(v) = src.get(*keyword) {
            out.insert((*keyword).to_owned(), v.clone());
        }
    }
    if nullable
        && typed
        && let Some(Value::Array(values)) = out.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
    // OpenAPI 3.0 (like draft 4): `exclusiveMinimum: true` qualifies `minimum`.
    for (exclusive, bound) in [("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")] {
        match src.get(exclusive) {
            Some(Value::Bool(true)) => {
                if let Some(limit) = out.remove(bound) {
                    out.insert(exclusive.to_owned(), limit);
                }
            }
            Some(n @ Value::Number(_)) => {
                out.insert(exclusive.to_owned(), n.clone());
            }
            _ => {}
        }
    }
    if src.get("x-kubernetes-list-type").and_then(Value::as_str) == Some("set") {
        out.insert("uniqueItems".to_owned(), Value::Bool(true));
    }

    // Nested schemas.
    if let Some(Value::Object(properties)) = src.get("properties") {
        let converted: Map<String, Value> = properties
            .iter()
            .map(|(name, sub)| (name.clone(), convert(sub, in_junctor)))
            .collect();
        out.insert("properties".to_owned(), Value::Object(converted));
    }
    match src.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            out.insert("additionalProperties".to_owned(), Value::Bool(*b));
        }
        Some(sub @ Value::Object(_)) => {
            out.insert("additionalProperties".to_owned(), convert(sub, in_junctor));
        }
        _ => {
            if is_object && !preserve && !in_junctor {
                out.insert("additionalProperties".to_owned(), Value::Bool(false));
            }
        }
    }
    match src.get("items") {
        Some(Value::Array(items)) => {
            let converted = items.iter().map(|i| convert(i, in_junctor)).collect();
            out.insert("items".to_owned(), Value::Array(converted));
        }
        Some(sub @ (Value::Object(_) | Value::Bool(_))) => {
            out.insert("items".to_owned(), convert(sub, in_junctor));
        }
        _ => {}
    }
    for junctor in ["allOf", "anyOf", "oneOf"] {
        if let Some(Value::Array(branches)) = src.get(junctor)
            && !branches.is_empty()
        {
            let converted = branches.iter().map(|b| convert(b, true)).collect();
            out.insert(junctor.to_owned(), Value::Array(converted));
        }
    }
    if let Some(sub) = src.get("not") {
        out.insert("not".to_owned(), convert(sub, true));
    }

    if embedded {
        let declared_metadata = src.get("properties").and_then(|p| p.get("metadata"));
        add_resource_fields(&mut out, declared_metadata);
        let required = out.entry("required").or_insert_with(|| json!([]));
        if let Value::Array(required) = required {
            for field in ["apiVersion", "kind"] {
                if !required.iter().any(|r| r == field) {
                    required.push(json!(field));
                }
            }
        }
    }

    // A nullable node with logic junctors: the junctors would also judge null, which the
    // API server accepts before looking at them.
    if nullable && typed && ["allOf", "anyOf", "oneOf", "not"].iter().any(|j| out.contains_key(*j)) {
        return json!({"anyOf": [{"type": "null"}, Value::Object(out)]});
    }
    Value::Object(out)
}
