//! `.starmap/digests.yaml`: for each cluster, what its files were rendered from (the digest of
//! its inputs) and the git id of each of its *slots* as written. A render reuses a cluster's
//! files, without rendering it, when its inputs digest is unchanged and every slot at the tip
//! still has the recorded id.
//!
//! Each cluster owns these slots: its directory `clusters/<c>/`, its index
//! `.starmap/clusters/<c>.yaml` and, when generated, `flux/<c>/` and
//! `argocd/applications/<c>.yaml`.

use std::collections::BTreeMap;

use rayon::prelude::*;
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
        if self.clusters.is_empty() {
            return yaml::to_yaml_string(&serde_json::to_value(self).unwrap_or_default());
        }
        // The bytes of the whole document written at once, one cluster per task: at 100,000
        // clusters (33 MB) this took 0.5 s through one `Value` of the whole file.
        let entries: Vec<(&String, &ClusterDigest)> = self.clusters.iter().collect();
        let parts: Vec<String> = entries
            .par_iter()
            .map(|(name, digest)| {
                let entry =
                    serde_json::Map::from_iter([(name.to_string(), serde_json::to_value(digest).unwrap_or_default())]);
                let mut out = String::with_capacity(400);
                yaml::emit::write_entries(&mut out, &entry, 2);
                out
            })
            .collect();
        let mut out = String::with_capacity(10 + parts.iter().map(String::len).sum::<usize>());
        out.push_str("clusters:\n");
        parts.iter().for_each(|p| out.push_str(p));
        out
    }

    /// Read the file. It is a cache: one that does not read costs a full render, not an error.
    /// The fast reader of the emitter's style reads it (the general parser spent about 3 s on
    /// the 33 MB of 100,000 clusters); the general parser only a hand-edited file.
    pub fn parse(text: &str) -> Digests {
        super::read_one(text, DIGESTS_FILE, "digests file").unwrap_or_default()
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
        let whole = |d: &Digests| yaml::to_yaml_string(&serde_json::to_value(d).unwrap());
        assert_eq!(text, whole(&d), "written per cluster as the whole document would be");
        let mut more = d.clone();
        for name in ["c0", "yes", "0123", "a: b", "x\"y", "z"] {
            let mut entry = d.clusters["c1"].clone();
            entry.slots.tree = "0123456789abcdef0123456789abcdef01234567".into();
            entry.slots.index = "de899c38a25a77ef71e27f00bee1b51717705ad6".into();
            more.clusters.insert(name.into(), entry);
        }
        assert_eq!(more.to_yaml(), whole(&more));
        assert_eq!(Digests::parse(&more.to_yaml()), more);
        assert_eq!(Digests::default().to_yaml(), whole(&Digests::default()));
        assert!(text.contains("tree: t\n"), "slots are flattened:\n{text}");
        assert_eq!(Digests::parse(&text), d);
        assert_eq!(Digests::parse("clusters: [1, 2]"), Digests::default());
        assert_eq!(Digests::parse(": :"), Digests::default());
        assert_eq!(d.total_objects(), 3);
    }
}
