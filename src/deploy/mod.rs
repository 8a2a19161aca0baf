//! Writing a render into the deploy repository: the tree `desired` decided turned into git
//! objects, the changes against the branch tip, and one commit (or none) moved in with a
//! compare-and-swap, pushed with fetch-rebuild-retry. The layout is `formats`'.

mod build;
pub mod changes;
pub mod publish;

use std::collections::BTreeMap;

use crate::desired::{self, DesiredCluster, Memo, Sources};
use crate::error::Result;
use crate::formats::STATUS_DIR;
use crate::formats::artifact::Layer;
use crate::gitstore::{DeployRepo, Proposal, entry_at};
use crate::model::Model;
use crate::rollout::Progress;
use crate::snapshot::RenderBase;
pub use changes::Changes;

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// Push the branch to `origin` (retrying on rejection).
    pub push: bool,
    /// Everything but storing objects, moving the branch and pushing.
    pub dry_run: bool,
    /// Render every cluster even when its inputs are unchanged.
    pub no_cache: bool,
    /// Keep new file contents in the change report (`plan --diff`).
    pub keep_content: bool,
}

/// What a render did to the deploy repo.
#[derive(Debug)]
pub struct Outcome {
    pub changes: Changes,
    /// The new commit, unless nothing changed or this was a dry run.
    pub commit: Option<git2::Oid>,
    pub pushed: bool,
    pub message: String,
    /// Clusters rendered, and clusters whose inputs were unchanged and whose directory was
    /// kept from the tip as it was.
    pub rendered: usize,
    pub reused: usize,
    /// Objects newly stored.
    pub objects_written: usize,
    /// Every placement with `spec.rollout` or `spec.suspend`, as this render left it.
    pub rollouts: Vec<Progress>,
    /// With OCI delivery, the artifact layers of the clusters rendered now, by cluster (the
    /// others' are rebuilt from git when they must be pushed).
    pub artifacts: BTreeMap<String, Layer>,
}

impl Outcome {
    /// The outcome of a dry run with no deploy repo to compare with.
    pub fn not_written(model: &Model, changes: Changes) -> Outcome {
        Outcome {
            message: changes::commit_message(model, &changes),
            rendered: model.clusters.len(),
            changes,
            commit: None,
            pushed: false,
            reused: 0,
            objects_written: 0,
            rollouts: Vec::new(),
            artifacts: BTreeMap::new(),
        }
    }
}

/// Render into the deploy repo: commit unless `options.dry_run`, push if asked. Each attempt
/// reads the tip, decides the tree (`desired`, pure) and builds its objects; an attempt that
/// lost a race to another writer starts again on the new tip. `before_commit` runs once, before
/// the first commit is made (OCI delivery checks its registry there: nothing is committed that
/// could not be published).
pub fn write(
    sources: &Sources<'_, '_>,
    deploy: &DeployRepo,
    options: &WriteOptions,
    before_commit: &dyn Fn() -> Result<()>,
) -> Result<Outcome> {
    let model = sources.model;
    let status_branch = model.config.status_branch();
    let status = (status_branch != deploy.branch)
        .then(|| deploy.on_branch(status_branch))
        .transpose()?;
    let mut memo = Memo::new();
    let mut checked = false;
    let done = deploy.commit_retrying(options.push, "", |tip| {
        let base = RenderBase::read(&deploy.repo, tip, status.as_ref());
        let started = std::time::Instant::now();
        let desired = desired::build(sources, &base, &mut memo, options.no_cache, crate::time::now())?;
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "clusters rendered");
        let started = std::time::Instant::now();
        // The old single-branch `status/` leaves the deploy branch once the status branch has
        // taken it over (its first round does that).
        let status_moved = match &status {
            Some(status) if entry_at(&deploy.repo, tip.map(|t| t.tree), STATUS_DIR).is_some() => {
                status.fetch()?;
                status.tip()?.is_some().then(|| status.branch.clone())
            }
            _ => None,
        };
        let built = build::build(
            &deploy.repo,
            model,
            tip,
            &base.slots,
            &desired,
            status_moved,
            options.keep_content,
        )?;
        tracing::debug!(elapsed_ms = started.elapsed().as_millis() as u64, "trees built");
        let (rendered, reused) = desired.counts();
        let mut built = built;
        built.changes.status_read = base.status_read().map(|c| c.to_string());
        let outcome = Outcome {
            message: changes::commit_message(model, &built.changes),
            changes: built.changes,
            commit: None,
            pushed: false,
            rendered,
            reused,
            objects_written: 0,
            rollouts: desired.progress(),
            artifacts: desired
                .clusters
                .iter()
                .filter_map(|c| match c {
                    DesiredCluster::Fresh {
                        artifact: Some(layer), ..
                    } => Some((c.name().to_string(), layer.clone())),
                    _ => None,
                })
                .collect(),
        };
        let proposal = (!outcome.changes.is_empty() && !options.dry_run).then(|| Proposal {
            root: built.root,
            objects: built.objects,
            message: outcome.message.clone(),
        });
        if proposal.is_some() && !checked {
            before_commit()?;
            checked = true;
        }
        Ok((outcome, proposal))
    })?;
    // Freeing the rendered objects' strings took 0.17 s at 10,000 clusters:
    // nobody needs to wait for it (where no thread can be made, they are freed here).
    let _ = std::thread::Builder::new().spawn(move || drop(memo));
    Ok(Outcome {
        commit: done.commit,
        pushed: done.pushed,
        objects_written: done.objects_written,
        ..done.value
    })
}

/// Render every cluster and report the changes against the tip, writing nothing: `plan`.
pub fn plan(sources: &Sources<'_, '_>, deploy: Option<&DeployRepo>, keep_content: bool) -> Result<Changes> {
    match deploy {
        Some(deploy) => {
            let options = WriteOptions {
                dry_run: true,
                keep_content,
                ..Default::default()
            };
            Ok(write(sources, deploy, &options, &|| Ok(()))?.changes)
        }
        // No deploy repo yet: everything is new.
        None => Ok(changes::all_new(
            sources.render_all()?.into_iter().map(|r| r.cluster).collect(),
        )),
    }
}
