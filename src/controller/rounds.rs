//! The two loops: render rounds (every interval, on a webhook, after a status commit) and
//! status rounds (every status interval). Each round is the library's pipeline on a blocking
//! thread; a round in flight is never cancelled, only no new one starts once told to stop.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::watch;

use super::metrics::{Loop, RoundResult};
use super::{Settings, Shared};
use crate::{Error, pipeline, retry};

/// Run both loops until `stop` turns true; returns when the rounds in flight are done.
pub(super) async fn run(settings: Arc<Settings>, shared: Arc<Shared>, stop: watch::Receiver<bool>) {
    let render = render_loop(settings.clone(), shared.clone(), stop.clone());
    if settings.status_interval.is_zero() {
        render.await;
    } else {
        tokio::join!(render, status_loop(settings, shared, stop));
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // A dropped sender also means stop.
    let _ = stop.wait_for(|s| *s).await;
}

async fn render_loop(settings: Arc<Settings>, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut failures = 0;
    let mut warned: Vec<String> = Vec::new();
    loop {
        if *stop.borrow() {
            return;
        }
        failures = if render_round(&settings, &shared, &mut warned).await {
            0
        } else {
            failures + 1
        };
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(retry::after_failures(settings.interval, failures)) => {}
            // A webhook or a status commit (rollout gates are evaluated by render).
            _ = shared.trigger.notified() => {}
        }
    }
}

/// One render round; `true` if it succeeded (committed or found nothing to change).
async fn render_round(settings: &Settings, shared: &Shared, warned: &mut Vec<String>) -> bool {
    let started = Instant::now();
    let (source, inventory, target) = (
        settings.source.clone(),
        settings.inventory.clone(),
        settings.target.clone(),
    );
    let runtime = tokio::runtime::Handle::current();
    shared.round_running(Loop::Render, Some(started));
    let joined = tokio::task::spawn_blocking(move || {
        let (model, plan) = pipeline::load(&source, inventory.as_deref())?;
        let rendered = pipeline::render(&model, &plan, &target, &runtime);
        Ok::<_, Error>((Arc::new(model), plan.warnings, rendered))
    })
    .await;
    shared.round_running(Loop::Render, None);
    let rendered = match joined {
        Ok(Ok((model, warnings, rendered))) => {
            // Plan warnings once per change, not every interval.
            if warnings != *warned {
                for w in warnings.iter().filter(|w| !warned.contains(w)) {
                    tracing::warn!("{w}");
                }
                *warned = warnings;
            }
            shared.model.send_replace(Some(model));
            rendered
        }
        Ok(Err(e)) => Err(e),
        Err(e) => Err(Error::msg(format!("the render round stopped: {e}"))),
    };
    let took = started.elapsed();
    match rendered {
        Ok(done) => {
            let result = match done.outcome.commit {
                Some(commit) => {
                    let summary = done.outcome.message.lines().next().unwrap_or("");
                    tracing::info!(
                        commit = %commit,
                        pushed = done.outcome.pushed,
                        elapsed_ms = took.as_millis() as u64,
                        "render round: committed to {} {}: {summary}",
                        done.display,
                        done.branch
                    );
                    RoundResult::Committed
                }
                None => {
                    tracing::info!(elapsed_ms = took.as_millis() as u64, "render round: nothing changed");
                    RoundResult::Unchanged
                }
            };
            shared.metrics.rollouts(&done.outcome.rollouts);
            shared.metrics.round(Loop::Render, result, took);
            shared.rendered();
            true
        }
        Err(e) => {
            tracing::error!("render round failed: {e}");
            shared.metrics.round(Loop::Render, RoundResult::Error, took);
            shared.render_failed(&e);
            false
        }
    }
}

async fn status_loop(settings: Arc<Settings>, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut models = shared.model.subscribe();
    // Status needs a model: wait for the first successful load.
    tokio::select! {
        _ = stopped(&mut stop) => return,
        loaded = models.wait_for(|m| m.is_some()) => if loaded.is_err() { return },
    }
    let mut failures = 0;
    loop {
        if *stop.borrow() {
            return;
        }
        let model = models.borrow().clone();
        let Some(model) = model else { return };
        failures = if status_round(&settings, &shared, model).await {
            0
        } else {
            failures + 1
        };
        tokio::select! {
            _ = stopped(&mut stop) => return,
            _ = tokio::time::sleep(retry::after_failures(settings.status_interval, failures)) => {}
        }
    }
}

async fn status_round(settings: &Settings, shared: &Shared, model: Arc<crate::Model>) -> bool {
    let started = Instant::now();
    let (target, collect) = (settings.target.clone(), settings.collect.clone());
    let runtime = tokio::runtime::Handle::current();
    shared.round_running(Loop::Status, Some(started));
    let joined =
        tokio::task::spawn_blocking(move || pipeline::collect_status(&model, &target, &collect, &runtime)).await;
    shared.round_running(Loop::Status, None);
    let collected = joined.unwrap_or_else(|e| Err(Error::msg(format!("the status round stopped: {e}"))));
    let took = started.elapsed();
    match collected {
        Ok(done) => {
            shared.metrics.clusters(&done.round.statuses);
            let unreachable = done.outcomes.iter().filter(|o| o.seen().is_none()).count();
            let result = match done.round.commit {
                Some(commit) => {
                    tracing::info!(
                        commit = %commit,
                        clusters = done.outcomes.len(),
                        unreachable,
                        elapsed_ms = took.as_millis() as u64,
                        "status round: committed to {} {}",
                        done.display,
                        done.branch
                    );
                    // New status may open a rollout wave: render now.
                    shared.trigger.notify_one();
                    RoundResult::Committed
                }
                None => {
                    tracing::info!(
                        clusters = done.outcomes.len(),
                        unreachable,
                        elapsed_ms = took.as_millis() as u64,
                        "status round: nothing changed"
                    );
                    RoundResult::Unchanged
                }
            };
            shared.metrics.round(Loop::Status, result, took);
            true
        }
        Err(e) => {
            tracing::error!("status round failed: {e}");
            shared.metrics.round(Loop::Status, RoundResult::Error, took);
            false
        }
    }
}
