//! The files of one cluster's directory: how objects are named, and the
//! `kustomization.yaml` that lists them.
//!
//! Naming: `<namespace>/<kind>[.<group>]_<name>.yaml`, with `_cluster/` for objects that
//! have no namespace. Kind is lowercased; the group is added for non-core groups. Names
//! keep `[a-z0-9.-]` and percent-encode anything else (`system:foo` → `system%3Afoo`).
//! `_` never appears in a kind, a group, a namespace or an encoded name, so two objects
//! share a file only if their kinds differ in case alone; the renderer reports that as an
//! error rather than overwrite one with the other.

use serde_json::{Value, json};

use crate::model::ObjectId;
use crate::yaml;

pub const KUSTOMIZATION_FILE: &str = "kustomization.yaml";
/// Directory of objects without a namespace (`_` is not valid in namespace names).
pub const CLUSTER_SCOPED_DIR: &str = "_cluster";

pub fn object_file(id: &ObjectId) -> String {
    let dir = id
        .namespace
        .as_deref()
        .map(encode)
        .unwrap_or_else(|| CLUSTER_SCOPED_DIR.to_string());
    let kind = id.kind.to_ascii_lowercase();
    let kind = if id.group.is_empty() {
        kind
    } else {
        format!("{kind}.{}", encode(&id.group))
    };
    format!("{dir}/{}_{}.yaml", encode(&kind), encode(&id.name))
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    // `.` and `..` alone would be special directory names.
    if out == "." || out == ".." {
        out = out.replace('.', "%2E");
    }
    out
}

/// The text of [`kustomization`].
pub fn kustomization_yaml(files: &[&str]) -> String {
    yaml::to_yaml_string(&kustomization(files))
}

/// `kustomization.yaml` listing `files` (already sorted). An empty list is written as
/// `resources: []` so that Argo CD and Flux prune everything from the cluster.
pub fn kustomization(files: &[&str]) -> Value {
    json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": files,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(group: &str, kind: &str, ns: Option<&str>, name: &str) -> ObjectId {
        ObjectId {
            group: group.into(),
            kind: kind.into(),
            namespace: ns.map(String::from),
            name: name.into(),
        }
    }

    #[test]
    fn names_are_readable_and_collision_free() {
        assert_eq!(
            object_file(&id("apps", "Deployment", Some("pos"), "api")),
            "pos/deployment.apps_api.yaml"
        );
        assert_eq!(
            object_file(&id("", "Namespace", None, "pos")),
            "_cluster/namespace_pos.yaml"
        );
        assert_eq!(
            object_file(&id("rbac.authorization.k8s.io", "ClusterRole", None, "system:metrics")),
            "_cluster/clusterrole.rbac.authorization.k8s.io_system%3Ametrics.yaml"
        );
        assert_ne!(
            object_file(&id("a", "K", None, "x")),
            object_file(&id("", "K", None, "x"))
        );
        assert_eq!(encode(".."), "%2E%2E");
        assert_eq!(encode("A_b/c"), "%41%5Fb%2Fc");
    }
}
