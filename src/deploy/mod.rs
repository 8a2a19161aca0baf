//! Writing the deploy repository: the owned paths of the new tree, the changes against
//! the branch tip, and one commit (or none) moved in with a compare-and-swap, pushed with
//! fetch-rebuild-retry.
//!
//! Layout (contract section 3):
//! ```text
//! clusters/<cluster>/kustomization.yaml   lists every file below, sorted
//! clusters/<cluster>/<ns|_cluster>/<kind>[.<group>]_<name>.yaml
//! .starmap/render.yaml                   source, source commit, starmap version, counts
//! .starmap/digests.yaml                  per cluster: digest of its inputs, id of its tree
//! .starmap/clusters/<cluster>.yaml       index: each object, its file, source, placements
//! .starmap/rollouts/<placement>.yaml     where a placement's rollout stands (gated placements)
//! README.md                              generated
//! ```

pub mod changes;
mod hold;
mod layout;
pub mod objects;
pub mod repo;
pub mod rollouts;
pub mod tree;

use std::collections::BTreeMap;

use git2::Oid;

use crate::error::{Error, Result};
use crate::model::Model;
use crate::plan::Plan;
use crate::render::{RenderedCluster, Renderer};
pub use changes::Changes;
pub use repo::DeployRepo;

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
    pub commit: Option<Oid>,
    pub pushed: bool,
    pub message: String,
    /// Clusters rendered, and clusters whose inputs were unchanged and whose directory was
    /// kept from the tip as it was.
    pub rendered: usize,
    pub reused: usize,
    /// Objects newly stored.
    pub objects_written: usize,
    /// Every placement with `spec.rollout` or `spec.suspend`, as this render left it.
    pub rollouts: Vec<crate::rollout::Progress>,
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
        }
    }
}

/// Render `plan` into the deploy repo: commit unless `options.dry_run`, push if asked.
pub fn write(
    model: &Model,
    plan: &Plan,
    renderer: &Renderer<'_>,
    deploy: &DeployRepo,
    options: &WriteOptions,
) -> Result<Outcome> {
    let mut memo: BTreeMap<String, RenderedCluster> = BTreeMap::new();
    let mut attempt = 0;
    loop {
        deploy.fetch()?;
        let tip = deploy.tip()?;
        let built = layout::build(model, plan, renderer, &deploy.repo, tip, options, &mut memo)?;
        let mut outcome = Outcome {
            message: changes::commit_message(model, &built.changes),
            changes: built.changes,
            commit: None,
            pushed: false,
            rendered: built.rendered,
            reused: built.reused,
            objects_written: 0,
            rollouts: built.rollouts,
        };
        if outcome.changes.is_empty() || options.dry_run {
            return Ok(outcome);
        }
        let root = built.root;
        outcome.objects_written = built.objects.write(&deploy.repo)?;
        let commit = deploy.commit_object(root, tip.map(|t| t.commit), &outcome.message)?;
        if !deploy.advance(tip.map(|t| t.commit), commit, &outcome.message)? {
            // Another writer (status collection, a second render) moved the branch.
            attempt += 1;
            if attempt >= repo::MAX_ATTEMPTS {
                return Err(Error::msg(format!(
                    "the branch {} kept moving; gave up after {attempt} attempts",
                    deploy.branch
                )));
            }
            tracing::info!(attempt, "branch moved while committing; rebuilding on the new tip");
            std::thread::sleep(repo::backoff(attempt));
            continue;
        }
        if options.push {
            if !deploy.push()? {
                attempt += 1;
                if attempt >= repo::MAX_ATTEMPTS {
                    return Err(Error::msg(format!(
                        "push to {} rejected {attempt} times (the branch keeps moving); nothing was lost, try again",
                        deploy.display
                    )));
                }
                tracing::info!(
                    attempt,
                    "push rejected (someone else pushed); fetching and rebuilding on their commit"
                );
                std::thread::sleep(repo::backoff(attempt));
                continue;
            }
            outcome.pushed = true;
        }
        deploy.update_work_tree(commit)?;
        outcome.commit = Some(commit);
        return Ok(outcome);
    }
}

/// Render every cluster in memory and report the changes against the tip, writing
/// nothing: `plan`.
pub fn plan(
    model: &Model,
    plan: &Plan,
    renderer: &Renderer<'_>,
    deploy: Option<&DeployRepo>,
    keep_content: bool,
) -> Result<Changes> {
    let options = WriteOptions {
        dry_run: true,
        keep_content,
        ..Default::default()
    };
    match deploy {
        Some(deploy) => Ok(write(model, plan, renderer, deploy, &options)?.changes),
        None => {
            // No deploy repo yet: everything is new.
            let clusters: Vec<_> = plan.clusters.iter().collect();
            let rendered = renderer.render(&clusters)?;
            Ok(changes::all_new(rendered))
        }
    }
}
