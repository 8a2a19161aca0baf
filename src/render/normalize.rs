//! Normalization: what a manifest exported from a live cluster carries but a deploy repo
//! must not (server-set fields, status, kubectl's bookkeeping), and our own annotation.

use serde_json::Value;

use crate::spec::TEMPLATE_ANNOTATION;

const SERVER_FIELDS: [&str; 6] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
];
const DROPPED_ANNOTATIONS: [&str; 2] = ["kubectl.kubernetes.io/last-applied-configuration", TEMPLATE_ANNOTATION];

pub fn normalize(object: &mut Value) {
    let Some(map) = object.as_object_mut() else { return };
    // shift_remove keeps the order of the remaining keys (the source's order).
    map.shift_remove("status");
    let Some(Value::Object(meta)) = map.get_mut("metadata") else {
        return;
    };
    for field in SERVER_FIELDS {
        meta.shift_remove(field);
    }
    if meta.get("namespace").is_some_and(|ns| ns.as_str() == Some("")) {
        meta.shift_remove("namespace");
    }
    if let Some(Value::Object(annotations)) = meta.get_mut("annotations") {
        let before = annotations.len();
        for a in DROPPED_ANNOTATIONS {
            annotations.shift_remove(a);
        }
        if annotations.is_empty() && before > 0 {
            meta.shift_remove("annotations");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn drops_server_fields_and_keeps_order() {
        let mut o = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "a", "uid": "x", "resourceVersion": "1", "generation": 2,
                "creationTimestamp": null, "managedFields": [], "selfLink": "/x", "labels": {"z": "1"},
                "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}", "starmap.dev/template": "true"}},
            "data": {"k": "v"}, "status": {"phase": "x"}
        });
        normalize(&mut o);
        assert_eq!(
            o,
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"z": "1"}}, "data": {"k": "v"}})
        );
        let keys: Vec<_> = o.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["apiVersion", "kind", "metadata", "data"]);
    }
}
