//! The whole jobs, as the CLI commands and the controller (`starmap run`) both run them:
//! load the source, render into the deploy repo, collect status. The controller is this
//! pipeline on a timer; it must not re-implement any of it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::deploy::publish::{self, PublishOutcome};
use crate::deploy::{self, Outcome, WriteOptions};
use crate::desired::Sources;
use crate::formats::status::{ClusterStatus, ObjectStatus};
use crate::gitops::SyncObjects;
use crate::gitstore::{DeployRepo, is_url};
use crate::model::Model;
use crate::plan::{self, Plan};
use crate::render::{self, Renderer};
use crate::snapshot::{DeployState, StatusBranches};
use crate::source::{Inventory, SourceTree, load_model};
use crate::status::collect::{self, ArgoCdHub, ClusterOutcome, Connections, FluxObject, Options, Target};
use crate::status::store::{self, RoundOutcome};
use crate::summary;
use crate::{Error, Result};

/// Load and validate the source and inventory, then plan.
pub fn load(source: &str, inventory: Option<&str>) -> Result<(Model, Plan)> {
    let started = Instant::now();
    let source = SourceTree::open(source)?;
    let inventory = match inventory {
        Some(spec) => {
            let mut tree = SourceTree::open(spec)?;
            // Files of an inventory directory or repo are named under it in messages (a
            // single file already carries its own path).
            if tree.path_prefix.is_empty() && !std::path::Path::new(spec).is_file() {
                tree.path_prefix = format!("{}/", spec.trim_end_matches('/'));
            }
            Inventory::Extra(tree)
        }
        None => Inventory::SourceOnly,
    };
    let model = load_model(&source, &inventory)?;
    let plan = plan::build(&model)?;
    tracing::info!(
        clusters = model.clusters.len(),
        placements = model.placements.len(),
        customizations = model.customizations.len(),
        workloads = model.workloads.len(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "loaded source"
    );
    Ok((model, plan))
}

/// Where and how a render writes.
#[derive(Debug, Clone)]
pub struct RenderTarget {
    /// A local path (created with `git init` if missing) or a URL (cloned into a cache).
    pub deploy: String,
    pub branch: String,
    pub push: bool,
    pub dry_run: bool,
    pub no_cache: bool,
}

/// What [`render`] did.
pub struct Rendered {
    pub outcome: Outcome,
    /// The deploy repo as messages name it.
    pub display: String,
    pub branch: String,
    /// The deploy repo is a URL (committed into a local cache, pushed only with `push`).
    pub remote: bool,
    /// With OCI delivery: the artifacts pushed now (`None`: not published, as in a dry run, or
    /// a remote deploy repo committed without `--push`).
    pub published: Option<PublishOutcome>,
}

/// Render `plan` into the deploy repo: one commit (or none), pushed if asked; with `oci:` in
/// starmap.yaml, then each cluster's artifact whose registry copy is behind (`runtime` runs
/// the pushes). A failed render leaves the deploy repo as it was (and removes a repo it had
/// just created); the one failure that comes after the commit is a registry that stopped
/// answering during the pushes, and the next render pushes what is missing.
pub fn render(model: &Model, plan: &Plan, target: &RenderTarget, runtime: &tokio::runtime::Handle) -> Result<Rendered> {
    let env = render::environment();
    let deploy_url = is_url(&target.deploy).then_some(target.deploy.as_str());
    let sync = SyncObjects::new(model, deploy_url, &target.branch)?;
    let renderer = Renderer::new(model, &env)?;
    let sources = Sources {
        model,
        plan,
        renderer: &renderer,
        sync: sync.as_ref(),
    };
    let fresh_path = deploy_url.is_none() && !std::path::Path::new(&target.deploy).exists();
    if target.dry_run && fresh_path {
        // Nothing to compare with and nothing to create: everything would be new.
        let changes = deploy::plan(&sources, None, false)?;
        return Ok(Rendered {
            outcome: Outcome::not_written(model, changes),
            display: target.deploy.clone(),
            branch: target.branch.clone(),
            remote: false,
            published: None,
        });
    }
    let repo = DeployRepo::open(&target.deploy, &target.branch, target.push, !target.dry_run)?;
    let options = WriteOptions {
        push: target.push,
        dry_run: target.dry_run,
        no_cache: target.no_cache,
        keep_content: false,
    };
    let started = Instant::now();
    // Artifacts are published only where the commit is the truth: a local deploy repo, or a
    // remote one the commit was pushed to.
    let oci = model
        .config
        .oci
        .as_ref()
        .filter(|_| !target.dry_run && (!repo.remote || target.push));
    let registry_answers = || match oci {
        Some(oci) => {
            let registry = crate::oci::Registry::new(oci)?;
            let first = model.clusters.first().map(|c| c.name.as_str()).unwrap_or("_");
            runtime
                .block_on(registry.ping(first))
                .map_err(|e| e.context("nothing was committed"))
        }
        None => Ok(()),
    };
    let outcome =
        deploy::write(&sources, &repo, &options, &registry_answers).inspect_err(|_| repo.discard_if_created())?;
    tracing::info!(
        rendered = outcome.rendered,
        reused = outcome.reused,
        objects_written = outcome.objects_written,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "render done"
    );
    let published = match oci {
        Some(oci) => {
            let source = match model.config.deploy.url.as_deref().or(deploy_url) {
                Some(url) => crate::redact::shown(url),
                None => publish::path_source(std::path::Path::new(&target.deploy)),
            };
            let started = Instant::now();
            let done = publish::publish(&repo, oci, &source, &outcome.artifacts, runtime)?;
            if !done.pushed.is_empty() || !done.failed.is_empty() {
                tracing::info!(
                    pushed = done.pushed.len(),
                    failed = done.failed.len(),
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "artifacts published"
                );
            }
            if let Some((cluster, why)) = done.failed.first() {
                let committed = match outcome.commit {
                    Some(c) => format!("the render commit {} landed, but ", &c.to_string()[..12]),
                    None => String::new(),
                };
                return Err(Error::msg(format!(
                    "{committed}{} of {} artifacts were not pushed (the next render pushes them): cluster {cluster}: {why}",
                    done.failed.len(),
                    done.failed.len() + done.pushed.len()
                )));
            }
            Some(done)
        }
        None => None,
    };
    Ok(Rendered {
        outcome,
        display: repo.display.clone(),
        branch: repo.branch.clone(),
        remote: repo.remote,
        published,
    })
}

/// How status is read from the clusters.
#[derive(Debug, Clone)]
pub struct CollectSettings {
    /// `None`: `KUBECONFIG`, else `~/.kube/config`.
    pub kubeconfig: Option<PathBuf>,
    /// Read Argo CD Applications from this hub context instead of the clusters.
    pub argocd_hub: Option<String>,
    /// Only these clusters (empty: all).
    pub clusters: Vec<String>,
    pub concurrency: usize,
    pub timeout: Duration,
    pub retries: u32,
    /// Clients kept from one round to the next; clones of the settings share them, so the
    /// controller's rounds reuse their connections.
    pub connections: Connections,
}

impl Default for CollectSettings {
    fn default() -> Self {
        CollectSettings {
            kubeconfig: None,
            argocd_hub: None,
            clusters: Vec::new(),
            concurrency: collect::DEFAULT_CONCURRENCY,
            timeout: Duration::from_secs(20),
            retries: 2,
            connections: Connections::default(),
        }
    }
}

/// What a status round did.
pub struct Collected {
    pub round: RoundOutcome,
    pub outcomes: Vec<ClusterOutcome>,
    pub display: String,
    pub branch: String,
}

/// One status round: read every cluster the deploy branch's tip places objects on, then
/// commit the status files and summaries to the status branch (`status.branch` of
/// `starmap.yaml`; no commit when only times changed). The reading is async and runs on
/// `runtime`; the git work is blocking and runs on the calling thread.
pub fn collect_status(
    model: &Model,
    deploy: &RenderTarget,
    settings: &CollectSettings,
    runtime: &tokio::runtime::Handle,
) -> Result<Collected> {
    let branches = status_branches(model, deploy)?;
    let repo = &branches.deploy;
    let tip = branches.deploy_tip()?;
    // Only the indexes: what to read on each cluster.
    let state = DeployState::read(&repo.repo, tip, None)?;
    if state.indexes.is_empty() {
        return Err(Error::msg(format!(
            "{}: no clusters in .starmap/clusters/ on branch {}; render first",
            repo.display, repo.branch
        )));
    }
    for c in &settings.clusters {
        if !state.indexes.contains_key(c) {
            return Err(Error::msg(format!("--cluster {c}: not in the deploy repo")));
        }
    }
    let inventory: HashMap<&str, &crate::model::Cluster> =
        model.clusters.iter().map(|c| (c.name.as_str(), c)).collect();
    let targets: Vec<Target> = state
        .indexes
        .iter()
        .filter(|(name, _)| settings.clusters.is_empty() || settings.clusters.contains(name))
        .map(|(name, index)| match inventory.get(name.as_str()) {
            Some(cluster) => Target::for_cluster(cluster, index.objects.clone()),
            None => Target::new(name.clone(), index.objects.clone()),
        })
        .collect();
    drop(state);
    let options = Options {
        kubeconfig: settings.kubeconfig.clone(),
        concurrency: settings.concurrency.max(1),
        timeout: settings.timeout,
        retries: settings.retries,
        flux: model
            .config
            .flux
            .enabled
            .then(|| FluxObject::from_settings(&model.config.flux)),
        deploy_commit: tip.map(|t| t.commit.to_string()),
        artifact_revisions: match &model.config.oci {
            Some(oci) => artifact_revisions(&publish::read_record(repo, oci)?.1),
            None => Default::default(),
        },
        ..Options::default()
    };
    let started = Instant::now();
    let outcomes = runtime.block_on(async {
        match &settings.argocd_hub {
            Some(hub) => collect::collect_argocd(&ArgoCdHub::from_config(hub, &model.config), &targets, &options).await,
            None => collect::collect_with(targets, &options, &settings.connections).await,
        }
    })?;
    let unreachable = outcomes.iter().filter(|o| o.seen().is_none()).count();
    tracing::info!(
        clusters = outcomes.len(),
        unreachable,
        clients_built = settings.connections.built(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "collected"
    );
    let round = store::write_round(
        &branches,
        Some(&outcomes),
        &summarizer(model),
        deploy.push,
        deploy.dry_run,
    )?;
    Ok(Collected {
        round,
        outcomes,
        display: repo.display.clone(),
        branch: branches.status.branch.clone(),
    })
}

/// The deploy commit of each pushed manifest, from the record of published artifacts.
fn artifact_revisions(record: &crate::formats::artifact::Published) -> std::collections::HashMap<String, String> {
    record
        .clusters
        .values()
        .filter_map(|a| {
            let commit = crate::formats::artifact::revision_commit(&a.revision)?;
            Some((a.manifest.clone(), commit.to_string()))
        })
        .collect()
}

/// The deploy repo's deploy branch and the status branch `starmap.yaml` names.
pub fn status_branches(model: &Model, deploy: &RenderTarget) -> Result<StatusBranches> {
    StatusBranches::open(
        &deploy.deploy,
        &deploy.branch,
        model.config.status_branch(),
        deploy.push,
    )
}

/// The summaries of a round: the default one per placement and every StatusSummary.
pub fn summarizer(model: &Model) -> impl Fn(&DeployState<'_>, &[ClusterStatus]) -> Result<Vec<(String, Value)>> + '_ {
    move |state, statuses| {
        let objects = state.object_reader()?;
        let lookup = |cluster: &str, object: &ObjectStatus| objects.get(cluster, object);
        let summaries = summary::summarize(&summary::Inputs::from_model(model), statuses, &lookup)?;
        for w in &summaries.warnings {
            tracing::warn!("{w}");
        }
        Ok(summaries.files())
    }
}
