//! `status collect`, `status summarize`, `status show`.

use std::collections::BTreeMap;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::args::{CollectArgs, OutputFormat, ShowArgs, SummarizeArgs};
use super::{load, output};
use starmap::dashboard::{Fleet, html};
use starmap::health::Health;
use starmap::snapshot::StatusBranches;
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
    let fleet = Fleet::open(&a.deploy.deploy, &a.deploy.branch, a.status_branch.as_deref(), true)?;
    if a.output.is_data() {
        output::print_data(a.output, &fleet.summary(a.worst));
        return Ok(ExitCode::SUCCESS);
    }
    if a.output == OutputFormat::Html {
        let view = html::View {
            group: a.group.clone(),
            label: a.label.clone(),
        };
        let now = starmap::time::now_rfc3339();
        out!("{}", html::overview(&fleet, &view, &html::EXPORTED, Some(&now), true)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rollouts = &fleet.rollouts;
    print_rollouts(rollouts);
    if let Some(artifacts) = &fleet.artifacts {
        let behind: Vec<String> = serde_json::from_value(artifacts["behind"].clone()).unwrap_or_default();
        if behind.is_empty() {
            outln!(
                "ARTIFACTS: every cluster's artifact in {} is the deploy tip's\n",
                artifacts["repository"].as_str().unwrap_or("")
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
    let seen = fleet.worst_first();
    if seen.is_empty() {
        outln!(
            "no status in {} (branch {}): run `starmap status collect`",
            fleet.deploy_display,
            fleet.status_branch
        );
        return Ok(ExitCode::SUCCESS);
    }
    let healths = ["Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"];
    out!("{:<28} {:>8} {:>8} {:>6}", "PLACEMENT", "CLUSTERS", "CURRENT", "STALE");
    for h in healths {
        out!(" {:>11}", h.to_uppercase());
    }
    outln!();
    for p in &fleet.placements {
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
    let worst_clusters: Vec<_> = seen
        .iter()
        .filter(|c| c.stale() || c.health() != Health::Healthy)
        .take(a.worst)
        .collect();
    if worst_clusters.is_empty() {
        outln!("\nall {} clusters Healthy", seen.len());
    } else {
        outln!("\nworst clusters:");
        for c in worst_clusters {
            let line = c.line();
            outln!(
                "  {:<24} {:<12} {}",
                c.name,
                line["health"].as_str().unwrap_or(""),
                line["reason"].as_str().unwrap_or("")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A cluster's worst object and why, for `show`.
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
