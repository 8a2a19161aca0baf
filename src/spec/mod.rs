//! The spec objects a user commits to the source repo (`starmap.dev/v1alpha1`), as serde
//! types with strict validation: unknown fields are errors everywhere, so typos are caught.

mod names;
mod rollout;
mod selector;
mod summary;

pub use names::{MAX_FILE_NAME, validate_cluster_name, validate_k8s_name, validate_object_name};
pub use rollout::{REMAINING_WAVE, RolloutSpec, WaveSpec};
pub use selector::{CompiledObjectTest, LabelSelector, Labels, ObjectFacts, ObjectTest, Operator, Requirement};
pub use summary::{
    Aggregate, AggregateColumn, AggregateOp, Column, DEFAULT_SUMMARY_LIMIT, NamedExpr, SELECT_IDENTITY_COLUMNS,
    SpecError, StatusSummary, StatusSummaryDoc, StatusSummarySpec, SummaryMode,
};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

pub const API_VERSION: &str = "starmap.dev/v1alpha1";
/// Every cluster carries this label, set to its name, so selectors can pick clusters by name.
pub const CLUSTER_NAME_LABEL: &str = "starmap.dev/cluster";
/// A workload annotated with this (value `"true"`) has every string leaf templated.
pub const TEMPLATE_ANNOTATION: &str = "starmap.dev/template";

/// `metadata` of a spec object.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpecMeta {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterDoc {
    pub api_version: String,
    pub kind: String,
    pub metadata: SpecMeta,
    #[serde(default)]
    pub spec: ClusterSpec,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ClusterSpec {
    /// Any YAML values, for templates.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub properties: serde_json::Map<String, Value>,
    /// API server URL: Argo CD destination, status collection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    /// Context for status collection; default: the cluster's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kubeconfig_context: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlacementDoc {
    pub api_version: String,
    pub kind: String,
    pub metadata: SpecMeta,
    pub spec: PlacementSpec,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlacementSpec {
    /// ORed: a cluster is a destination if any selector matches it.
    #[serde(default)]
    pub cluster_selectors: Vec<LabelSelector>,
    /// Also destinations, by name.
    #[serde(default)]
    pub clusters: Vec<String>,
    /// ORed ObjectTests: an object is placed if any clause matches it.
    pub workloads: Vec<ObjectTest>,
    /// Waves a new revision goes through, gated on status (docs/rollouts.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rollout: Option<RolloutSpec>,
    /// Freeze the placement: no cluster's files of it change.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspend: bool,
}

impl PlacementSpec {
    /// Whether its clusters' files are governed by a rollout (waves or suspension).
    pub fn is_gated(&self) -> bool {
        self.rollout.is_some() || self.suspend
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CustomizationDoc {
    pub api_version: String,
    pub kind: String,
    pub metadata: SpecMeta,
    pub spec: CustomizationSpec,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CustomizationSpec {
    /// Omitted together with `clusters`: every cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_selectors: Option<Vec<LabelSelector>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clusters: Option<Vec<String>>,
    pub targets: Vec<ObjectTest>,
    /// Lower applies first; ties by name.
    #[serde(default)]
    pub order: i64,
    /// RFC 6902 operations; each `value` is templated. Kept as JSON and checked at load;
    /// parsed into operations per cluster once the values are expanded.
    #[serde(default)]
    pub patches: Vec<Value>,
    /// RFC 7386 merge patch; every string leaf is templated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<Value>,
}
