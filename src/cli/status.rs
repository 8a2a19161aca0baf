//! `status collect`, `status summarize`, `status show`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::args::{CollectArgs, DeployArgs, OutputFormat, ShowArgs, SummarizeArgs};
use super::{load, output};
use starmap::config::DEFAULT_STATUS_BRANCH;
use starmap::deploy::publish;
use starmap::formats::status::ClusterStatus;
use starmap::formats::{PLACEMENT_SUMMARIES_DIR, RENDER_FILE, meta};
use starmap::gitstore::{DeployRepo, blob_text, entries_at, entry_at};
use starmap::health::{Health, severity};
use starmap::snapshot::{StatusBranches, read_states, status_root};
use starmap::status::collect::ClusterOutcome;
use starmap::status::store::{self, RoundOutcome};
use starmap::{Error, Result, pipeline};

pub fn collect_cmd(a: CollectArgs) -> Result<ExitCode> {
    let (model, _plan) = load(&a.source)?;
    let target = pipeline::RenderTarget {
        deploy: a.deploy.deploy.clone(),
        branch: a.deploy.branch.clone(),
        push: a.push,
        dry_run: a.dry_run,
        no_cache: false,
    };
    let settings = pipeline::CollectSettings {
        kubeconfig: a.kubeconfig.clone(),
        argocd_hub: a.argocd_hub.clone(),
        clusters: a.clusters.clone(),
        concurrency: a.concurrency,
        timeout: a.timeout,
        retries: a.retries,
        connections: Default::default(),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(crate::cli::THREAD_STACK)
        .enable_all()
        .build()
        .map_err(|e| Error::msg(format!("cannot start the async runtime: {e}")))?;
    let done = pipeline::collect_status(&model, &target, &settings, runtime.handle())?;
    drop(runtime);
    print_round(
        &done.display,
        &done.branch,
        &done.round,
        &done.outcomes,
        a.dry_run,
        a.output,
    );
    Ok(ExitCode::SUCCESS)
}

pub fn summarize_cmd(a: SummarizeArgs) -> Result<ExitCode> {
    let (model, _plan) = load(&a.source)?;
    let branches = StatusBranches::open(&a.deploy.deploy, &a.deploy.branch, model.config.status_branch(), a.push)?;
    let round = store::write_round(&branches, None, &pipeline::summarizer(&model), a.push, a.dry_run)?;
    print_round(
        &branches.status.display,
        &branches.status.branch,
        &round,
        &[],
        a.dry_run,
        a.output,
    );
    Ok(ExitCode::SUCCESS)
}

/// The status branch `status show` reads: the flag, else what the last render recorded.
fn status_branch_of(deploy: &DeployArgs, flag: Option<&str>) -> Result<StatusBranches> {
    let repo = DeployRepo::open(&deploy.deploy, &deploy.branch, false, false)?;
    repo.fetch()?;
    let recorded = || {
        let tree = repo.tip().ok()??.tree;
        let oid = entry_at(&repo.repo, Some(tree), RENDER_FILE)?;
        meta::status_branch_of(&blob_text(&repo.repo, oid).ok()?)
    };
    let branch = match flag {
        Some(b) => b.to_string(),
        None => recorded().unwrap_or_else(|| DEFAULT_STATUS_BRANCH.to_string()),
    };
    let status = repo.on_branch(&branch)?;
    Ok(StatusBranches { deploy: repo, status })
}

fn print_round(
    display: &str,
    branch: &str,
    round: &RoundOutcome,
    outcomes: &[ClusterOutcome],
    dry_run: bool,
    format: OutputFormat,
) {
    let errors: BTreeMap<&str, &str> = outcomes
        .iter()
        .filter_map(|o| Some((o.cluster(), o.error()?)))
        .collect();
    if format.is_data() {
        let clusters: Vec<Value> = round
            .statuses
            .iter()
            .map(|s| {
                json!({
                    "cluster": s.cluster,
                    "reachable": s.reachable,
                    "stale": s.stale,
                    "health": s.worst_health(),
                    "appliedRevision": s.applied_revision,
                    "current": s.current,
                    "objects": s.objects.len(),
                    "error": s.error,
                })
            })
            .collect();
        output::print_data(
            format,
            &json!({
                "deploy": display,
                "branch": branch,
                "commit": round.commit.map(|c| c.to_string()),
                "pushed": round.pushed,
                "dryRun": dry_run,
                "changed": round.changed,
                "clusters": clusters,
            }),
        );
        return;
    }
    if !outcomes.is_empty() {
        outln!(
            "{:<24} {:<12} {:<9} {:<8} {:>7}  NOTE",
            "CLUSTER",
            "HEALTH",
            "APPLIED",
            "CURRENT",
            "OBJECTS"
        );
        let collected: std::collections::HashSet<&str> = outcomes.iter().map(|o| o.cluster()).collect();
        for s in round.statuses.iter().filter(|s| collected.contains(s.cluster.as_str())) {
            let note = match errors.get(s.cluster.as_str()) {
                Some(e) => format!("stale (last seen {}): {e}", s.last_seen.as_deref().unwrap_or("never")),
                None => String::new(),
            };
            outln!(
                "{:<24} {:<12} {:<9} {:<8} {:>7}  {note}",
                s.cluster,
                if s.stale {
                    "-".to_string()
                } else {
                    s.worst_health().to_string()
                },
                s.applied_revision
                    .as_deref()
                    .map(|r| &r[..r.len().min(8)])
                    .unwrap_or("-"),
                if s.current { "yes" } else { "no" },
                s.objects.len(),
            );
        }
    }
    match (round.commit, dry_run) {
        (_, true) => outln!(
            "dry run: {} status file(s) would change; nothing written",
            round.changed.len()
        ),
        (Some(c), _) => outln!(
            "committed {} to {} ({}){}",
            &c.to_string()[..12],
            branch,
            round.message.lines().next().unwrap_or(""),
            if round.pushed { ", pushed" } else { "" }
        ),
        (None, _) => outln!("no change: nothing committed"),
    }
}

/// `status show`: the per-placement summaries and the cluster files at the tip.
pub fn show_cmd(a: ShowArgs) -> Result<ExitCode> {
    let branches = status_branch_of(&a.deploy, a.status_branch.as_deref())?;
    let deploy = &branches.deploy;
    let (state, status_tip) = branches.read()?;
    let tip = state.tip;
    let mut placements = Vec::new();
    let summaries_root = status_root(tip, status_tip);
    for (file, oid) in entries_at(&deploy.repo, summaries_root, PLACEMENT_SUMMARIES_DIR) {
        let path = format!("{PLACEMENT_SUMMARIES_DIR}/{file}");
        let blob = deploy.repo.find_blob(oid)?;
        let text = String::from_utf8_lossy(blob.content()).into_owned();
        if let Some(doc) = starmap::yaml::parse_documents(&text, &path)?.into_iter().next() {
            placements.push(doc.value);
        }
    }
    let rollouts = read_states(&deploy.repo, tip.map(|t| t.tree));
    let artifacts = publish::behind(deploy)?;
    let mut clusters: Vec<&ClusterStatus> = state.statuses.values().map(|(s, _)| s).collect();
    clusters.sort_by_key(|s| {
        (
            std::cmp::Reverse(severity(s.worst_health())),
            !s.stale,
            s.cluster.clone(),
        )
    });
    if a.output.is_data() {
        let worst_clusters: Vec<Value> = clusters
            .iter()
            .filter(|s| s.stale || s.worst_health() != Health::Healthy)
            .take(a.worst)
            .map(|s| cluster_line(s))
            .collect();
        output::print_data(
            a.output,
            &json!({
                "commit": tip.map(|t| t.commit.to_string()),
                "clusters": state.statuses.len(),
                "placements": placements,
                "worstClusters": worst_clusters,
                "rollouts": rollouts.values().collect::<Vec<_>>(),
                "artifacts": artifacts.as_ref().map(|(record, behind)| json!({
                    "repository": record.repository,
                    "tag": record.tag,
                    "complete": record.complete,
                    "behind": behind,
                })),
            }),
        );
        return Ok(ExitCode::SUCCESS);
    }
    print_rollouts(&rollouts);
    if let Some((record, behind)) = &artifacts {
        if behind.is_empty() {
            outln!(
                "ARTIFACTS: every cluster's artifact in {} is the deploy tip's\n",
                record.repository
            );
        } else {
            let shown: Vec<&str> = behind.iter().take(10).map(String::as_str).collect();
            let more = behind.len().saturating_sub(shown.len());
            outln!(
                "ARTIFACTS: {} cluster(s) whose artifact is behind the deploy tip (the next render pushes them): {}{}\n",
                behind.len(),
                shown.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            );
        }
    }
    if state.statuses.is_empty() {
        outln!(
            "no status in {} (branch {}): run `starmap status collect`",
            deploy.display,
            branches.status.branch
        );
        return Ok(ExitCode::SUCCESS);
    }
    let healths = ["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"];
    out!("{:<28} {:>8} {:>8} {:>6}", "PLACEMENT", "CLUSTERS", "CURRENT", "STALE");
    for h in healths {
        out!(" {:>11}", h.to_uppercase());
    }
    outln!();
    for p in &placements {
        let n = |v: &Value| v.as_u64().unwrap_or(0);
        out!(
            "{:<28} {:>8} {:>8} {:>6}",
            p["placement"].as_str().unwrap_or("?"),
            n(&p["clusters"]),
            n(&p["current"]),
            n(&p["stale"])
        );
        for h in healths {
            out!(" {:>11}", n(&p["health"][h]));
        }
        outln!();
    }
    let worst_clusters: Vec<&&ClusterStatus> = clusters
        .iter()
        .filter(|s| s.stale || s.worst_health() != Health::Healthy)
        .take(a.worst)
        .collect();
    if worst_clusters.is_empty() {
        outln!("\nall {} clusters Healthy", state.statuses.len());
    } else {
        outln!("\nworst clusters:");
        for s in worst_clusters {
            let line = cluster_line(s);
            outln!(
                "  {:<24} {:<12} {}",
                s.cluster,
                line["health"].as_str().unwrap_or(""),
                line["reason"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A cluster's worst object and why, for `show`.
fn cluster_line(s: &ClusterStatus) -> Value {
    let worst_object = s.objects.iter().max_by_key(|o| severity(o.health));
    let reason = if s.stale {
        format!(
            "stale since {}: {}",
            s.last_seen.as_deref().unwrap_or("never seen"),
            s.error.as_deref().unwrap_or("")
        )
    } else {
        worst_object
            .map(|o| {
                let id = match &o.namespace {
                    Some(ns) => format!("{}/{ns}/{}", o.kind, o.name),
                    None => format!("{}/{}", o.kind, o.name),
                };
                format!("{id}: {}", o.message).trim_end_matches(": ").to_string()
            })
            .unwrap_or_default()
    };
    json!({
        "cluster": s.cluster,
        "health": if s.stale { "Stale".to_string() } else { s.worst_health().to_string() },
        "current": s.current,
        "reason": reason,
    })
}

/// The rollout of each gated placement, before the health table.
fn print_rollouts(rollouts: &BTreeMap<String, starmap::rollout::State>) {
    if rollouts.is_empty() {
        return;
    }
    outln!("{:<28} {:<12} {:>6}  MESSAGE", "ROLLOUT", "PHASE", "WAVES");
    for r in rollouts.values() {
        let open: Vec<&str> = r.waves.iter().filter(|w| w.open).map(|w| w.name.as_str()).collect();
        outln!(
            "{:<28} {:<12} {:>6}  {}",
            r.placement,
            r.phase.to_string(),
            format!("{}/{}", r.open_waves, r.waves.len()),
            if r.message.is_empty() {
                format!("open: {}", open.join(", "))
            } else {
                r.message.clone()
            }
        );
    }
    outln!();
}
