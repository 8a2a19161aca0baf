//! The deploy repo's object index of one cluster, `.starmap/clusters/<cluster>.yaml`: which
//! objects a render put on the cluster, from which source, through which placements. Status
//! collection reads it to know what to look for; the rollout gate, to know what a placement
//! put where.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::status::ObjectStatus;
use crate::error::Result;
use crate::health::HealthStatus;
use crate::yaml;

/// `.starmap/clusters/<cluster>.yaml`: the objects the deploy repo places on one cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterIndex {
    pub cluster: String,
    /// The cluster's labels in the inventory, for grouping and filtering clusters (the
    /// dashboard) from the deploy repo alone.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The digest of the cluster's OCI artifact layer (with `oci:` in starmap.yaml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    #[serde(default)]
    pub objects: Vec<IndexEntry>,
}

/// One object of a cluster's index, in the order its keys are written. Unknown keys are
/// ignored, so an index written by a newer starmap still reads.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IndexEntry {
    /// Its file inside the cluster's directory.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file: String,
    pub api_version: String,
    pub kind: String,
    /// Absent for cluster-scoped objects (and for namespaced ones written without a
    /// namespace, which land in `default`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
    /// The source file it was rendered from (the path, not the line: moving an object within
    /// its file must not change the deploy repo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The placements that put the object on the cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub placements: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub customizations: Vec<String>,
}

impl IndexEntry {
    /// An entry with only the object's identity (placements, file and source empty).
    pub fn new(api_version: &str, kind: &str, namespace: Option<&str>, name: &str) -> Self {
        IndexEntry {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: namespace.map(Into::into),
            name: name.into(),
            placements: vec![],
            file: String::new(),
            source: None,
            customizations: vec![],
        }
    }

    /// `Kind namespace/name` (or `Kind name`), as errors name objects.
    pub fn display(&self) -> String {
        match &self.namespace {
            Some(ns) => format!("{} {ns}/{}", self.kind, self.name),
            None => format!("{} {}", self.kind, self.name),
        }
    }

    /// The API group: `""` for the core group (`apiVersion: v1`).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }
}

impl IndexEntry {
    /// The status of this object with `health`; no generation or live `.status` yet, and not
    /// `applied` (decided later, in git).
    pub fn status(&self, health: HealthStatus) -> ObjectStatus {
        ObjectStatus {
            api_version: self.api_version.clone(),
            kind: self.kind.clone(),
            namespace: self.namespace.clone(),
            name: self.name.clone(),
            placements: self.placements.clone(),
            health: health.health,
            message: health.message,
            applied: false,
            generation: None,
            observed_generation: None,
            status: None,
        }
    }
}

impl ClusterIndex {
    /// The file's text.
    pub fn to_yaml(&self) -> String {
        yaml::to_yaml_string(&serde_json::to_value(self).unwrap_or_default())
    }

    /// The entries of the objects that `placement` put on the cluster.
    pub fn placed_by<'a>(&'a self, placement: &'a str) -> impl Iterator<Item = &'a IndexEntry> + 'a {
        self.objects
            .iter()
            .filter(move |e| e.placements.iter().any(|p| p == placement))
    }
}

/// Parses the text of `.starmap/clusters/<cluster>.yaml`; `path` names it in errors
/// (`path:line: ...`).
pub fn parse_index(text: &str, path: &str) -> Result<ClusterIndex> {
    super::read_one(text, path, "cluster index")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_what_render_writes() {
        let text = "\
cluster: c1
objects:
- file: apps-v1.deployment.web.yaml
  apiVersion: apps/v1
  kind: Deployment
  namespace: shop
  name: web
  source: workloads/web.yaml
  placements: [edge, all]
  customizations: [replicas]
- file: v1.namespace.shop.yaml
  apiVersion: v1
  kind: Namespace
  name: shop
  source: workloads/ns.yaml
  placements: [all]
  futureKey: ignored
";
        let index = parse_index(text, ".starmap/clusters/c1.yaml").unwrap();
        assert_eq!(index.cluster, "c1");
        assert_eq!(index.objects.len(), 2);
        let web = &index.objects[0];
        assert_eq!(
            (
                web.api_version.as_str(),
                web.kind.as_str(),
                web.namespace.as_deref(),
                web.name.as_str()
            ),
            ("apps/v1", "Deployment", Some("shop"), "web")
        );
        assert_eq!(web.placements, ["edge", "all"]);
        assert_eq!(web.group(), "apps");
        assert_eq!(index.objects[1].namespace, None);
        assert_eq!(index.objects[1].group(), "");
        assert_eq!(index.objects[1].display(), "Namespace shop");
    }

    #[test]
    fn empty_objects_and_errors() {
        assert!(parse_index("cluster: c1\n", "i.yaml").unwrap().objects.is_empty());
        let e = parse_index("cluster: c1\nobjects:\n- kind: ConfigMap\n  name: x\n", "i.yaml").unwrap_err();
        assert!(e.to_string().contains("apiVersion"), "{e}");
        assert!(e.to_string().contains("i.yaml:3"), "{e}");
        assert!(parse_index("", "i.yaml").is_err());
        assert!(parse_index("cluster: a\n---\ncluster: b\n", "i.yaml").is_err());
    }
}
