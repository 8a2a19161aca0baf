//! `.starmap/digests.yaml`: for each cluster, what its files were rendered from (the digest of
//! its inputs) and the git id of each of its *slots* as written. A render reuses a cluster's
//! files, without rendering it, when its inputs digest is unchanged and every slot at the tip
//! still has the recorded id.
//!
//! Each cluster owns these slots: its directory `clusters/<c>/`, its index
//! `.starmap/clusters/<c>.yaml` and, when generated, `flux/<c>/` and
//! `argocd/applications/<c>.yaml`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::DIGESTS_FILE;
use crate::yaml;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Digests {
    pub clusters: BTreeMap<String, ClusterDigest>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterDigest {
    /// Digest of everything the cluster's files depend on.
    pub inputs: String,
    /// Objects in its directory.
    pub objects: usize,
    /// The digest of its OCI artifact layer (with `oci:` in starmap.yaml).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    #[serde(flatten)]
    pub slots: Slots,
    /// Per gated placement (rollout or suspension) placing objects here: the digest of
    /// what it renders now, whether or not the cluster got it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub rollouts: BTreeMap<String, String>,
    /// The gated placements whose files this cluster kept from the tip.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub held: Vec<String>,
    /// Per gated placement: the digest of what was written (differs from `rollouts`
    /// while held).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub written: BTreeMap<String, String>,
}

/// Git ids of a cluster's slots, as hex strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Slots {
    /// `clusters/<c>/` (a tree).
    pub tree: String,
    /// `.starmap/clusters/<c>.yaml`.
    pub index: String,
    /// `flux/<c>/` (a tree), when generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flux: Option<String>,
    /// `argocd/applications/<c>.yaml`, when generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application: Option<String>,
}

impl Digests {
    /// The file's text.
    pub fn to_yaml(&self) -> String {
        yaml::to_yaml_string(&serde_json::to_value(self).unwrap_or_default())
    }

    /// Read the file. It is a cache: one that does not read costs a full render, not an error.
    pub fn parse(text: &str) -> Digests {
        yaml::parse_documents(text, DIGESTS_FILE)
            .ok()
            .and_then(|docs| docs.into_iter().next())
            .and_then(|doc| serde_json::from_value(doc.value).ok())
            .unwrap_or_default()
    }

    /// Objects in every cluster directory.
    pub fn total_objects(&self) -> usize {
        self.clusters.values().map(|d| d.objects).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_tolerates_garbage() {
        let mut d = Digests::default();
        d.clusters.insert(
            "c1".into(),
            ClusterDigest {
                inputs: "sha256:ab".into(),
                objects: 3,
                artifact: Some("sha256:ee".into()),
                slots: Slots {
                    tree: "t".into(),
                    index: "i".into(),
                    flux: Some("f".into()),
                    application: None,
                },
                rollouts: BTreeMap::from([("p".into(), "sha256:cd".into())]),
                held: vec!["p".into()],
                written: BTreeMap::new(),
            },
        );
        let text = d.to_yaml();
        assert!(text.contains("tree: t\n"), "slots are flattened:\n{text}");
        assert_eq!(Digests::parse(&text), d);
        assert_eq!(Digests::parse("clusters: [1, 2]"), Digests::default());
        assert_eq!(Digests::parse(": :"), Digests::default());
        assert_eq!(d.total_objects(), 3);
    }
}
