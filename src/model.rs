//! The validated model of a source: what `load` produces and everything downstream reads.
//! Plain data; no I/O.

use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;

use crate::config::Config;
use crate::error::Location;
use crate::spec::{ClusterSpec, CompiledObjectTest, CustomizationSpec, LabelSelector, PlacementSpec, StatusSummary};
use crate::yaml::LineTree;

#[derive(Debug, Clone)]
pub struct Model {
    pub source: SourceInfo,
    pub config: Config,
    /// Sorted by name.
    pub clusters: Vec<Cluster>,
    /// Sorted by name.
    pub placements: Vec<Placement>,
    /// In application order: `order`, then name.
    pub customizations: Vec<Customization>,
    /// StatusSummary objects, sorted by name.
    pub summaries: Vec<StatusSummary>,
    /// Sorted by source path, then line.
    pub workloads: Vec<Workload>,
    /// Template overrides from the source's `templates/`, by file name.
    pub templates: BTreeMap<String, TemplateOverride>,
    /// Things worth saying while loading that are not errors.
    pub warnings: Vec<String>,
}

impl Model {
    /// Per cluster of the model (in its order): whether placement `placement` selects it.
    pub fn destinations(&self, placement: usize) -> Vec<bool> {
        let p = &self.placements[placement];
        self.clusters.iter().map(|c| p.selects(c)).collect()
    }
}

/// A template of the source repo that replaces a built-in one.
#[derive(Debug, Clone)]
pub struct TemplateOverride {
    /// Where it is, for error messages.
    pub path: String,
    pub text: String,
}

#[derive(Debug, Clone, Default)]
pub struct SourceInfo {
    /// As the user named it: `Starmap-Source` trailer.
    pub display: String,
    /// `Starmap-Source-Commit` trailer, when the source is a git repository.
    pub commit: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    /// Including the implicit `starmap.dev/cluster: <name>`.
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub spec: ClusterSpec,
    pub location: Location,
}

impl Cluster {
    /// `cluster` in templates: name, labels (with the implicit one), annotations, properties.
    pub fn template_context(&self) -> Value {
        serde_json::json!({
            "name": self.name,
            "labels": self.labels,
            "annotations": self.annotations,
            "properties": self.spec.properties,
        })
    }
}

#[derive(Debug, Clone)]
pub struct Placement {
    pub name: String,
    pub spec: PlacementSpec,
    pub workloads: Vec<CompiledObjectTest>,
    pub location: Location,
}

impl Placement {
    /// Whether `cluster` is a destination: any selector matches it, or it is named.
    pub fn selects(&self, cluster: &Cluster) -> bool {
        self.spec.cluster_selectors.iter().any(|s| s.matches(&cluster.labels))
            || self.spec.clusters.contains(&cluster.name)
    }
}

#[derive(Debug, Clone)]
pub struct Customization {
    pub name: String,
    pub spec: CustomizationSpec,
    pub targets: Vec<CompiledObjectTest>,
    pub location: Location,
    /// Lines of the whole document, to point at a failing patch or template.
    pub lines: LineTree,
}

impl Customization {
    /// Whether this customization reaches `cluster` (selectors ORed with names; both left
    /// out means every cluster).
    pub fn selects_cluster(&self, cluster: &Cluster) -> bool {
        let (selectors, names) = (&self.spec.cluster_selectors, &self.spec.clusters);
        if selectors.is_none() && names.is_none() {
            return true;
        }
        selectors
            .iter()
            .flatten()
            .any(|s: &LabelSelector| s.matches(&cluster.labels))
            || names.iter().flatten().any(|n| *n == cluster.name)
    }
}

/// A workload object as read from the source.
#[derive(Debug, Clone)]
pub struct Workload {
    pub object: Value,
    pub id: ObjectId,
    /// File (relative to the source root, or the kustomize/helm directory) and line.
    pub source: Location,
    pub lines: LineTree,
    /// Annotated `starmap.dev/template: "true"`.
    pub templated: bool,
    /// SOPS-encrypted (`secrets::is_sops_encrypted`): written exactly as it came, never
    /// customized or normalized.
    pub sops: bool,
    /// For objects of a Helm chart rendered with per-cluster values: the clusters (by
    /// index into `Model::clusters`) whose values produced this object. `None`: every cluster.
    pub only_clusters: Option<std::sync::Arc<Vec<bool>>>,
}

impl Workload {
    /// Whether this object exists for cluster `i` at all (see `only_clusters`).
    pub fn exists_for(&self, i: usize) -> bool {
        self.only_clusters.as_ref().is_none_or(|mask| mask[i])
    }
}

/// Identity of an object on a cluster: group, kind, namespace, name (not the version).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectId {
    pub group: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
}

impl ObjectId {
    /// Identity of a Kubernetes object value, if it has `apiVersion`, `kind` and `metadata.name`.
    pub fn of(object: &Value) -> Option<ObjectId> {
        let api_version = object.get("apiVersion")?.as_str()?;
        let kind = object.get("kind")?.as_str()?;
        let meta = object.get("metadata")?;
        let name = meta.get("name")?.as_str()?;
        // `namespace: ""` is no namespace, as kubectl and the API server read it.
        let namespace = meta
            .get("namespace")
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .map(String::from);
        Some(ObjectId {
            group: group_of(api_version).to_string(),
            kind: kind.to_string(),
            namespace,
            name: name.to_string(),
        })
    }
}

/// The API group of an `apiVersion` (`""` for the core group).
pub fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// `Kind/namespace/name`, or `Kind/name` for objects without a namespace; the group is
/// added (`Deployment.apps/...`) only where two kinds could be confused, which we avoid by
/// printing it for non-core groups in `long` form.
impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}
