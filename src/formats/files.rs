//! The files of one cluster's directory: how objects are named, and the
//! `kustomization.yaml` that lists them.
//!
//! Naming: `<namespace>/<kind>[.<group>]_<name>.yaml`, with `_cluster/` for objects that
//! have no namespace. Kind is lowercased; the group is added for non-core groups. Names
//! keep `[a-z0-9.-]` and percent-encode anything else (`system:foo` → `system%3Afoo`).
//! `_` never appears in a kind, a group, a namespace or an encoded name, so two objects
//! share a file only if their kinds differ in case alone; the renderer reports that as an
//! error rather than overwrite one with the other.
//!
//! A file name longer than 255 bytes (a CRD's 253-character name after its kind and group, or
//! a name with many encoded characters) keeps its first bytes and ends in `~` and 16 hex
//! digits of the SHA-256 of the whole name: `~` is never in an encoded name, so a shortened
//! name cannot equal an unshortened one.

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

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
    let stem = format!("{}_{}", encode(&kind), encode(&id.name));
    format!("{dir}/{}.yaml", fit_file_name(stem))
}

/// The longest file name starmap writes (ext4, XFS, APFS and NTFS take 255 bytes).
const MAX_FILE_NAME: usize = crate::spec::MAX_FILE_NAME;

/// `stem` if `<stem>.yaml` fits in a file name, else its start, `~` and a hash of all of it.
fn fit_file_name(stem: String) -> String {
    const SUFFIX: usize = ".yaml".len();
    if stem.len() + SUFFIX <= MAX_FILE_NAME {
        return stem;
    }
    let hash = hex::encode(&Sha256::digest(stem.as_bytes())[..8]);
    // The stem is ASCII (encoded), so any byte is a character boundary.
    let keep = MAX_FILE_NAME - SUFFIX - 1 - hash.len();
    format!("{}~{hash}", &stem[..keep])
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

    #[test]
    fn long_names_are_shortened_to_distinct_file_names() {
        let crd = |name: &str| id("apiextensions.k8s.io", "CustomResourceDefinition", None, name);
        let long = format!("{}.example.com", "a".repeat(241));
        assert_eq!(long.len(), 253);
        let file = object_file(&crd(&long));
        let base = file.strip_prefix("_cluster/").unwrap();
        assert_eq!(base.len(), 255, "{file}");
        assert!(base.ends_with(".yaml") && base.contains('~'), "{file}");
        let other = object_file(&crd(&format!("{}.example.org", "a".repeat(241))));
        assert_ne!(file, other, "names that differ only past the cut differ by their hash");
        // Upper case triples in the encoding.
        let upper = object_file(&id("rbac.authorization.k8s.io", "Role", Some("ns"), &"A".repeat(200)));
        assert_eq!(upper.strip_prefix("ns/").unwrap().len(), 255);
        // What fits is left alone.
        let fits = object_file(&crd(&"a".repeat(200)));
        assert!(!fits.contains('~'), "{fits}");
    }
}
