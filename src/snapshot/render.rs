//! What a render reads at the tip it builds on: the digests file, the ids each cluster's slots
//! have, the rollout states, and (only when a rollout needs them) the indexes and status files
//! for the gate and the files of held placements.

use std::cell::OnceCell;
use std::collections::BTreeMap;

use git2::{Oid, Repository};

use super::status::{DeployState, status_root};
use crate::desired::Recorded;
use crate::error::{Error, Result};
use crate::formats::digests::{Digests, Slots};
use crate::formats::index::parse_index;
use crate::formats::rollout::State;
use crate::formats::{APPLICATIONS_DIR, CLUSTERS_DIR, DIGESTS_FILE, FLUX_DIR, INDEX_DIR, ROLLOUTS_DIR, cluster_file};
use crate::gitstore::{DeployRepo, Tip, blob_text, entries_at, entry_at};
use crate::model::ObjectId;
use crate::render::RenderedObject;
use crate::rollout::Observed;

/// What each slot directory holds at the tip, by cluster.
#[derive(Debug, Default)]
pub struct TipSlots {
    pub trees: BTreeMap<String, Oid>,
    pub index: BTreeMap<String, Oid>,
    pub flux: BTreeMap<String, Oid>,
    pub applications: BTreeMap<String, Oid>,
}

impl TipSlots {
    fn read(repo: &Repository, tree: Option<Oid>) -> TipSlots {
        let strip = |m: BTreeMap<String, Oid>| {
            m.into_iter()
                .map(|(k, v)| (k.strip_suffix(".yaml").map(String::from).unwrap_or(k), v))
                .collect()
        };
        TipSlots {
            trees: entries_at(repo, tree, CLUSTERS_DIR),
            index: strip(entries_at(repo, tree, INDEX_DIR)),
            flux: entries_at(repo, tree, FLUX_DIR),
            applications: strip(entries_at(repo, tree, APPLICATIONS_DIR)),
        }
    }

    /// The tip's slots of `name`, as the digests file writes them.
    pub fn of(&self, name: &str) -> Slots {
        let id = |m: &BTreeMap<String, Oid>| m.get(name).map(|o| o.to_string());
        Slots {
            tree: id(&self.trees).unwrap_or_default(),
            index: id(&self.index).unwrap_or_default(),
            flux: id(&self.flux),
            application: id(&self.applications),
        }
    }
}

/// The deploy repo at the tip a render builds on.
pub struct RenderBase<'r> {
    repo: &'r Repository,
    tip: Option<Tip>,
    /// The status branch, when it is not the deploy branch.
    status_branch: Option<&'r DeployRepo>,
    pub digests: Digests,
    pub slots: TipSlots,
    pub states: BTreeMap<String, State>,
    status: OnceCell<(DeployState<'r>, Option<Tip>)>,
}

impl<'r> RenderBase<'r> {
    /// The deploy branch's `tip` in `repo`; `status_branch` is where status lives when that is
    /// a branch of its own.
    pub fn read(repo: &'r Repository, tip: Option<Tip>, status_branch: Option<&'r DeployRepo>) -> RenderBase<'r> {
        let tree = tip.map(|t| t.tree);
        let started = std::time::Instant::now();
        // An unreadable digests file only costs a full render.
        let digests = entry_at(repo, tree, DIGESTS_FILE)
            .and_then(|oid| blob_text(repo, oid).ok())
            .map(|text| Digests::parse(&text))
            .unwrap_or_default();
        let base = RenderBase {
            repo,
            tip,
            status_branch,
            slots: TipSlots::read(repo, tree),
            states: read_states(repo, tree),
            digests,
            status: OnceCell::new(),
        };
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "deploy tip read");
        base
    }
}

impl RenderBase<'_> {
    /// The status commit the rollout gates read, if they read one (on the status branch, or
    /// the deploy tip in the single-branch layout).
    pub fn status_read(&self) -> Option<Oid> {
        let (_, tip) = self.status.get()?;
        tip.map(|t| t.commit)
    }
}

/// The rollout states at a tree, by placement. An unreadable file counts as absent (the
/// rollout starts over), with a warning.
pub fn read_states(repo: &Repository, tree: Option<Oid>) -> BTreeMap<String, State> {
    let mut states = BTreeMap::new();
    for (file, oid) in entries_at(repo, tree, ROLLOUTS_DIR) {
        let Some(name) = crate::formats::cluster_of_file(&file) else {
            continue;
        };
        let path = format!("{ROLLOUTS_DIR}/{file}");
        match blob_text(repo, oid).and_then(|text| State::parse(&text, &path)) {
            Ok(state) => {
                states.insert(name.to_string(), state);
            }
            Err(e) => tracing::warn!("unreadable rollout state, starting over: {e}"),
        }
    }
    states
}

impl Recorded for RenderBase<'_> {
    fn digests(&self) -> &Digests {
        &self.digests
    }

    fn intact(&self, cluster: &str) -> bool {
        self.digests
            .clusters
            .get(cluster)
            .is_some_and(|d| d.slots == self.slots.of(cluster))
    }

    fn rollout_states(&self) -> &BTreeMap<String, State> {
        &self.states
    }

    fn observed(&self) -> Result<&dyn Observed> {
        if self.status.get().is_none() {
            let status_tip = match self.status_branch {
                Some(branch) => {
                    branch.fetch()?;
                    branch.tip()?
                }
                None => self.tip,
            };
            let state = DeployState::read(self.repo, self.tip, status_root(self.tip, status_tip))?;
            let _ = self.status.set((state, status_tip));
        }
        Ok(&self.status.get().expect("set above").0)
    }

    fn held_objects(&self, cluster: &str, placements: &[String]) -> Result<Vec<RenderedObject>> {
        // Looked up once per cluster: resolving paths from the root would inflate the large
        // `clusters/` tree again for every file.
        let (Some(dir), Some(index_oid)) = (self.slots.trees.get(cluster), self.slots.index.get(cluster)) else {
            return Ok(Vec::new());
        };
        let index_path = cluster_file(INDEX_DIR, cluster);
        let index = parse_index(&blob_text(self.repo, *index_oid)?, &index_path)?;
        let dir = self.repo.find_tree(*dir)?;
        let mut kept = Vec::new();
        for entry in index.objects {
            if !entry.placements.iter().any(|p| placements.contains(p)) {
                continue;
            }
            let path = format!("{CLUSTERS_DIR}/{cluster}/{}", entry.file);
            let Some(oid) = dir.get_path(std::path::Path::new(&entry.file)).ok().map(|e| e.id()) else {
                tracing::warn!(%cluster, file = %entry.file, "indexed file missing at the tip; not kept");
                continue;
            };
            let content = String::from_utf8(self.repo.find_blob(oid)?.content().to_vec())
                .map_err(|_| Error::msg(format!("{path}: not UTF-8")))?;
            let group = crate::model::group_of(&entry.api_version).to_string();
            kept.push(RenderedObject {
                file: entry.file,
                content,
                api_version: entry.api_version,
                id: ObjectId {
                    group,
                    kind: entry.kind,
                    namespace: entry.namespace,
                    name: entry.name,
                },
                workload: None,
                source: entry.source.unwrap_or_default(),
                placements: entry.placements,
                customizations: entry.customizations,
                changes: Vec::new(),
            });
        }
        Ok(kept)
    }
}
