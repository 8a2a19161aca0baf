//! The deploy repo a render wants: for every cluster, its files rendered now or reused from the
//! tip, the rollouts' decisions and the files they hold back, and the fleet's generated files.
//! Pure: what the tip recorded comes in through [`Recorded`] (read from git by `snapshot`),
//! the time as a number; a [`DesiredTree`] goes out, for `deploy` to turn into git objects and
//! one commit.
//!
//! A cluster's files depend only on its cluster and the source, so a cluster whose inputs
//! digest equals the one recorded in `.starmap/digests.yaml`, whose slots at the tip still have
//! the recorded ids and whose held placements did not change is reused as it is, unrendered:
//! that is what makes a no-op render of 10,000 clusters fast.

mod hold;

use std::collections::BTreeMap;
use std::sync::Arc;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::formats::artifact::{self, Layer};
use crate::formats::digests::{ClusterDigest, Digests};
use crate::formats::rollout::{Progress, State};
use crate::gitops::{ClusterSyncFiles, SyncObjects};
use crate::model::Model;
use crate::plan::Plan;
use crate::render::{self, RenderedCluster, RenderedObject, Renderer};
use crate::rollout::{self, Observed};

pub use hold::compose;

/// What the deploy repo recorded at the tip a render builds on.
pub trait Recorded {
    /// `.starmap/digests.yaml`.
    fn digests(&self) -> &Digests;
    /// Whether every slot of `cluster` at the tip still has the id the digests file recorded
    /// (no one changed its files since).
    fn intact(&self, cluster: &str) -> bool;
    /// The rollout states (`.starmap/rollouts/`).
    fn rollout_states(&self) -> &BTreeMap<String, State>;
    /// The indexes and status files the rollout gate reads (read on first use).
    fn observed(&self) -> Result<&dyn Observed>;
    /// The objects that `placements` put on `cluster` at the tip, as they are there.
    fn held_objects(&self, cluster: &str, placements: &[String]) -> Result<Vec<RenderedObject>>;
}

/// One cluster's files as rendered: its directory and its Argo CD and Flux files.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub cluster: RenderedCluster,
    pub sync: ClusterSyncFiles,
}

/// Clusters rendered earlier in this run, by inputs digest: a render that lost a race to
/// another writer builds again on the new tip without rendering the same cluster twice.
pub type Memo = BTreeMap<String, Arc<Rendered>>;

/// The deploy repo a render wants, less what only git can say (object ids). Fresh clusters
/// share their files with the [`Memo`] and the objects to store (at 10,000 clusters each
/// copy would cost ~150 MB).
#[derive(Debug)]
pub struct DesiredTree {
    /// Every cluster of the model, in the model's (name) order.
    pub clusters: Vec<DesiredCluster>,
    /// One state per gated placement: `.starmap/rollouts/`.
    pub rollout_states: Vec<State>,
    /// Rollouts whose state differs from the tip's, for the commit message.
    pub rollouts_changed: Vec<String>,
    /// `argocd/` files about the whole fleet: (path below `argocd/`, content).
    pub argocd_fleet_files: Vec<(String, String)>,
    /// The top-level directories the generated Argo CD and Flux objects own.
    pub sync_dirs: Vec<&'static str>,
}

#[derive(Debug)]
pub enum DesiredCluster {
    /// The tip's files, as the digests file recorded them.
    Reuse { name: String, digest: ClusterDigest },
    /// Files rendered now (composed with the tip's held objects where a rollout holds some
    /// back). `digest.slots` is empty: the ids are git's to compute.
    Fresh {
        files: Arc<Rendered>,
        digest: ClusterDigest,
        /// Its OCI artifact layer, with `oci:` in starmap.yaml (also in `digest.artifact`).
        artifact: Option<Layer>,
    },
}

impl DesiredCluster {
    pub fn name(&self) -> &str {
        match self {
            DesiredCluster::Reuse { name, .. } => name,
            DesiredCluster::Fresh { files, .. } => &files.cluster.name,
        }
    }

    pub fn digest(&self) -> &ClusterDigest {
        match self {
            DesiredCluster::Reuse { digest, .. } | DesiredCluster::Fresh { digest, .. } => digest,
        }
    }
}

impl DesiredTree {
    pub fn progress(&self) -> Vec<Progress> {
        self.rollout_states.iter().map(State::progress).collect()
    }

    /// Clusters rendered now, and reused from the tip.
    pub fn counts(&self) -> (usize, usize) {
        let fresh = self
            .clusters
            .iter()
            .filter(|c| matches!(c, DesiredCluster::Fresh { .. }))
            .count();
        (fresh, self.clusters.len() - fresh)
    }
}

/// What a render is made of: the model, its plan, the renderer and the generators of Argo CD
/// and Flux objects (when any are generated).
pub struct Sources<'a, 'm> {
    pub model: &'m Model,
    pub plan: &'a Plan,
    pub renderer: &'a Renderer<'m>,
    pub sync: Option<&'a SyncObjects<'m>>,
}

impl Sources<'_, '_> {
    /// Digest of everything that shapes every cluster's files: the source (see
    /// `render::global_digest`) and the Argo CD and Flux settings and templates.
    fn global_digest(&self) -> Sha256 {
        let mut h = render::global_digest(self.model);
        if let Some(sync) = self.sync {
            h.update(serde_json::to_vec(&sync.fingerprint()).unwrap_or_default());
        }
        // With OCI delivery each index records its artifact: turning it on renders again.
        if let Some(oci) = &self.model.config.oci {
            h.update(serde_json::to_vec(oci).unwrap_or_default());
        }
        h
    }

    /// Render the given clusters (by index into the model) in parallel; the first error in
    /// cluster order wins, so errors are deterministic too.
    fn render(&self, clusters: &[usize]) -> Result<Vec<Rendered>> {
        let step = crate::progress::step("rendering clusters", clusters.len());
        let results: Vec<Result<Rendered>> = clusters
            .par_iter()
            .map(|&i| {
                let cluster = self.renderer.render_cluster(&self.plan.clusters[i])?;
                let sync = match self.sync {
                    Some(sync) => sync.cluster_files(&self.model.clusters[i])?,
                    None => ClusterSyncFiles::default(),
                };
                step.advance(1);
                Ok(Rendered { cluster, sync })
            })
            .collect();
        results.into_iter().collect()
    }

    /// Every cluster rendered, with nothing to compare with (a deploy repo that does not exist).
    pub fn render_all(&self) -> Result<Vec<Rendered>> {
        let all: Vec<usize> = self.plan.clusters.iter().map(|p| p.cluster).collect();
        self.render(&all)
    }
}

/// The tree a render wants on top of `recorded`. `no_cache` renders every cluster even when
/// its inputs did not change; `now` (seconds since 1970) is the rollout gate's clock.
pub fn build(
    sources: &Sources<'_, '_>,
    recorded: &dyn Recorded,
    memo: &mut Memo,
    no_cache: bool,
    now: i64,
) -> Result<DesiredTree> {
    let model = sources.model;
    let previous = recorded.digests();
    let global = sources.global_digest();
    let inputs: Vec<String> = model
        .clusters
        .par_iter()
        .map(|c| render::cluster_digest(&global, c))
        .collect();

    // Gated placements need, for each of their clusters, the digest of what they render
    // now: from the digests file when the cluster's inputs did not change, else rendered.
    let gated = rollout::gated_placements(model);
    let gated_here = |i: usize| -> Vec<&str> {
        gated
            .iter()
            .filter(|g| g.destinations[i])
            .map(|g| model.placements[g.placement].name.as_str())
            .collect()
    };
    let known = |i: usize| -> Option<&ClusterDigest> {
        let d = previous.clusters.get(&model.clusters[i].name)?;
        let complete = gated_here(i).iter().all(|p| d.rollouts.contains_key(*p));
        (!no_cache && d.inputs == inputs[i] && complete).then_some(d)
    };
    render_missing(sources, &inputs, memo, |i| known(i).is_none())?;
    // Once per cluster: the revision, the gate and the digests file all read these.
    let rollout_digests: Vec<BTreeMap<String, String>> = (0..model.clusters.len())
        .into_par_iter()
        .map(|i| {
            gated_here(i)
                .into_iter()
                .map(|p| {
                    let digest = match memo.get(&inputs[i]) {
                        Some(r) => r.cluster.placement_digest(p),
                        None => known(i).and_then(|d| d.rollouts.get(p).cloned()).unwrap_or_default(),
                    };
                    (p.to_string(), digest)
                })
                .collect()
        })
        .collect();
    let fresh_digest = |i: usize, p: &str| -> String { rollout_digests[i].get(p).cloned().unwrap_or_default() };
    let tip_digest = |i: usize, p: &str| -> Option<String> {
        let name = &model.clusters[i].name;
        let d = previous.clusters.get(name)?;
        recorded.intact(name).then(|| d.written.get(p).cloned())?
    };
    let prepared = rollout::prepare(model, &gated, &fresh_digest);
    let states = recorded.rollout_states();
    let observed = if rollout::needs_status(model, &prepared, states) {
        Some(recorded.observed()?)
    } else {
        None
    };
    let decision = rollout::decide(model, &prepared, states, &fresh_digest, &tip_digest, observed, now);

    let reusable = |i: usize| -> Option<&ClusterDigest> {
        let d = known(i)?;
        (d.held == decision.held[i] && recorded.intact(&model.clusters[i].name)).then_some(d)
    };
    render_missing(sources, &inputs, memo, |i| reusable(i).is_none())?;

    let mut clusters = Vec::with_capacity(model.clusters.len());
    for (i, cluster) in model.clusters.iter().enumerate() {
        if let Some(d) = reusable(i) {
            clusters.push(DesiredCluster::Reuse {
                name: cluster.name.clone(),
                digest: d.clone(),
            });
            continue;
        }
        let fresh = Arc::clone(&memo[&inputs[i]]);
        // A cluster holding placements back gets those objects from the tip.
        let files = if decision.held[i].is_empty() {
            fresh
        } else {
            let held = recorded.held_objects(&cluster.name, &decision.held[i])?;
            let composed = Rendered {
                cluster: compose(&fresh.cluster, held, &decision.held[i]),
                sync: fresh.sync.clone(),
            };
            // Its fresh render is not kept for another attempt: a rollout that holds back
            // most of a fleet would keep the fleet in memory twice (9.6 GiB at 100,000
            // clusters). An attempt after a lost race renders it again.
            memo.remove(&inputs[i]);
            Arc::new(composed)
        };
        let digest = ClusterDigest {
            inputs: inputs[i].clone(),
            objects: files.cluster.objects.len(),
            artifact: None,
            slots: Default::default(),
            written: rollout_digests[i]
                .keys()
                .map(|p| (p.clone(), files.cluster.placement_digest(p)))
                .collect(),
            rollouts: rollout_digests[i].clone(),
            held: decision.held[i].clone(),
        };
        clusters.push(DesiredCluster::Fresh {
            files,
            digest,
            artifact: None,
        });
    }
    if model.config.oci.is_some() {
        // The layer of each fresh cluster, from exactly the files the commit will hold.
        clusters.par_iter_mut().for_each(|c| {
            if let DesiredCluster::Fresh {
                files,
                digest,
                artifact,
            } = c
            {
                let layer = artifact::layer(files.cluster.files());
                digest.artifact = Some(layer.digest.clone());
                *artifact = Some(layer);
            }
        });
    }
    Ok(DesiredTree {
        clusters,
        rollout_states: decision.states,
        rollouts_changed: decision.changed,
        argocd_fleet_files: match sources.sync {
            Some(sync) => sync.fleet_files()?,
            None => Vec::new(),
        },
        sync_dirs: sources.sync.map(|s| s.owned_dirs()).unwrap_or_default(),
    })
}

/// Render, into `memo`, every planned cluster that `wanted` and that is not there yet.
fn render_missing(
    sources: &Sources<'_, '_>,
    inputs: &[String],
    memo: &mut Memo,
    wanted: impl Fn(usize) -> bool,
) -> Result<()> {
    let to_render: Vec<usize> = sources
        .plan
        .clusters
        .iter()
        .map(|p| p.cluster)
        .filter(|&i| wanted(i) && !memo.contains_key(&inputs[i]))
        .collect();
    for (i, r) in to_render.iter().zip(sources.render(&to_render)?) {
        memo.insert(inputs[*i].clone(), Arc::new(r));
    }
    Ok(())
}
