//! Rollout waves: a placement's new revision reaches its clusters wave by wave, each wave
//! opening only when the clusters of the open ones run the new revision and are Healthy
//! (contract: docs/rollouts.md).
//!
//! Everything here is pure: given the states at the branch tip (`formats::rollout`), what each
//! gated placement renders now, the index and status of each cluster and the time, [`decide`]
//! tells where every rollout goes next and which clusters keep which placements' files from
//! the tip (`desired` composes them). The state is written to
//! `.starmap/rollouts/<placement>.yaml` in the same commit as the files it decided, so a crash
//! never separates the two.

mod decide;
pub mod gate;
pub mod waves;

pub use decide::{Decision, Gated, Observed, Prepared, decide, gated_placements, needs_status, prepare};
pub use gate::ClusterGate;
pub use waves::Wave;

pub use crate::formats::rollout::{Blocking, GateState, Phase, Progress, State, WaveState};
use crate::spec::RolloutSpec;
use crate::time::{human, parse_rfc3339, rfc3339};

/// Clusters named in a state file's `blocking` list, at most.
const BLOCKING_SHOWN: usize = 10;

/// What [`advance`] needs to know about one placement.
pub struct Inputs<'a> {
    pub placement: &'a str,
    pub rollout: Option<&'a RolloutSpec>,
    pub suspend: bool,
    /// The placement's revision now (see [`State::revision`]).
    pub revision: &'a str,
    pub source_commit: Option<&'a str>,
    /// The waves, with their clusters, in order.
    pub waves: &'a [Wave],
    /// The state at the branch tip.
    pub previous: Option<&'a State>,
    /// Unix seconds.
    pub now: i64,
}

/// The next state of one placement's rollout. `gate` tells how a cluster of an open wave
/// stands (it is asked only while a rollout is in progress).
pub fn advance(inputs: &Inputs<'_>, gate: &dyn Fn(&str) -> ClusterGate) -> State {
    let waves = inputs.waves;
    let wave_states = |open: usize| -> Vec<WaveState> {
        waves
            .iter()
            .enumerate()
            .map(|(i, w)| WaveState {
                name: w.name.clone(),
                clusters: w.clusters.len(),
                open: i < open,
                members: w.clusters.clone(),
            })
            .collect()
    };
    let now = rfc3339(inputs.now);
    let previous = inputs.previous.filter(|p| p.placement == inputs.placement);

    if inputs.suspend {
        // Frozen as it is: the revision it was rolling out, and how far, are kept so that
        // resuming goes on (or starts over, if the revision changed meanwhile).
        let open = previous.map(|p| p.open_waves.min(waves.len())).unwrap_or(0);
        return State {
            placement: inputs.placement.into(),
            revision: previous.and_then(|p| p.revision.clone()),
            source_commit: previous.and_then(|p| p.source_commit.clone()),
            phase: Phase::Suspended,
            open_waves: open,
            waves: wave_states(open),
            started_at: previous.and_then(|p| p.started_at.clone()),
            wave_opened_at: previous.and_then(|p| p.wave_opened_at.clone()),
            healthy_since: None,
            message: "spec.suspend is true: no cluster's files of this placement change".into(),
            blocking: Vec::new(),
        };
    }
    let Some(spec) = inputs.rollout else {
        // Neither rollout nor suspension: every cluster gets the revision at once.
        return State {
            placement: inputs.placement.into(),
            revision: Some(inputs.revision.into()),
            source_commit: inputs.source_commit.map(String::from),
            phase: Phase::Complete,
            open_waves: waves.len(),
            waves: wave_states(waves.len()),
            started_at: None,
            wave_opened_at: None,
            healthy_since: None,
            message: String::new(),
            blocking: Vec::new(),
        };
    };

    let same_revision = previous.is_some_and(|p| p.revision.as_deref() == Some(inputs.revision));
    let mut state = match previous {
        Some(p) if same_revision => State {
            waves: wave_states(p.open_waves.min(waves.len())),
            open_waves: p.open_waves.min(waves.len()),
            ..p.clone()
        },
        _ => State {
            placement: inputs.placement.into(),
            revision: Some(inputs.revision.into()),
            source_commit: inputs.source_commit.map(String::from),
            phase: Phase::Progressing,
            open_waves: open_past_empty(waves, 1),
            waves: Vec::new(),
            started_at: Some(now.clone()),
            wave_opened_at: Some(now.clone()),
            healthy_since: None,
            message: String::new(),
            blocking: Vec::new(),
        },
    };
    state.waves = wave_states(state.open_waves);
    if state.open_waves >= waves.len() {
        return complete(state);
    }

    // The gate: every cluster of the open waves applied and Healthy, but `maxFailures`.
    let open_clusters: Vec<&str> = waves[..state.open_waves]
        .iter()
        .flat_map(|w| w.clusters.iter().map(String::as_str))
        .collect();
    let mut not_ready: Vec<(String, ClusterGate)> = Vec::new();
    for c in &open_clusters {
        let g = gate(c);
        if g.state != GateState::Healthy {
            not_ready.push((c.to_string(), g));
        }
    }
    let failed = not_ready.iter().filter(|(_, g)| g.state == GateState::Failed).count();
    let max = spec.max_failures as usize;
    let open_names = waves[..state.open_waves]
        .iter()
        .map(|w| w.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    let next = &waves[state.open_waves].name;
    state.blocking = not_ready
        .iter()
        .take(BLOCKING_SHOWN)
        .map(|(c, g)| Blocking {
            cluster: c.clone(),
            state: g.state,
            reason: g.reason.clone(),
        })
        .collect();
    let list = |only_failed: bool| -> String {
        let picked: Vec<String> = not_ready
            .iter()
            .filter(|(_, g)| !only_failed || g.state == GateState::Failed)
            .take(3)
            .map(|(c, g)| format!("{c} ({})", g.describe()))
            .collect();
        let more = if only_failed { failed } else { not_ready.len() }.saturating_sub(picked.len());
        let more = if more > 0 {
            format!(" and {more} more")
        } else {
            String::new()
        };
        format!("{}{more}", picked.join(", "))
    };

    if failed > max {
        state.phase = Phase::Paused;
        state.healthy_since = None;
        state.message = format!(
            "paused: {failed} cluster(s) of wave {open_names} failed (maxFailures {max}): {}; wave {next} stays closed",
            list(true)
        );
        return state;
    }
    if not_ready.len() > max {
        state.healthy_since = None;
        let opened = state
            .wave_opened_at
            .as_deref()
            .and_then(parse_rfc3339)
            .unwrap_or(inputs.now);
        let deadline = spec.progress_deadline();
        if inputs.now - opened > deadline.as_secs() as i64 {
            state.phase = Phase::Paused;
            state.message = format!(
                "paused: wave {open_names} did not pass its gate within the progress deadline ({}): {}; wave {next} stays closed",
                human(deadline),
                list(false)
            );
        } else {
            state.phase = Phase::Progressing;
            state.message = format!(
                "waiting for wave {open_names}: {} of {} cluster(s) not applied and Healthy: {}",
                not_ready.len(),
                open_clusters.len(),
                list(false)
            );
        }
        return state;
    }
    // The gate passes; it must keep passing for minHealthyTime.
    let since = match state.healthy_since.as_deref().and_then(parse_rfc3339) {
        Some(t) => t,
        None => {
            state.healthy_since = Some(now.clone());
            inputs.now
        }
    };
    let min = spec.min_healthy_time();
    if inputs.now - since >= min.as_secs() as i64 {
        state.open_waves = open_past_empty(waves, state.open_waves + 1);
        state.waves = wave_states(state.open_waves);
        state.wave_opened_at = Some(now);
        state.healthy_since = None;
        state.blocking.clear();
        if state.open_waves >= waves.len() {
            return complete(state);
        }
        state.phase = Phase::Progressing;
        state.message = format!(
            "wave {} opened: its clusters get the new revision",
            waves[state.open_waves - 1].name
        );
        return state;
    }
    state.phase = Phase::Progressing;
    state.message = format!(
        "wave {open_names} applied and Healthy since {}; wave {next} opens after {} (minHealthyTime)",
        rfc3339(since),
        human(min)
    );
    state
}

fn complete(mut state: State) -> State {
    state.phase = Phase::Complete;
    state.healthy_since = None;
    state.message = String::new();
    state.blocking.clear();
    state
}

/// `open` waves, plus every empty wave right after them (an empty wave has nothing to prove).
fn open_past_empty(waves: &[Wave], open: usize) -> usize {
    let mut open = open.min(waves.len());
    while open < waves.len() && open > 0 && waves[open - 1].clusters.is_empty() {
        open += 1;
    }
    open
}

/// Which clusters of a placement keep its files from the tip: every destination while the
/// placement is suspended, else those whose wave is not open.
pub fn held_clusters<'a>(state: &State, waves: &'a [Wave]) -> Vec<&'a str> {
    let open = if state.phase == Phase::Suspended {
        0
    } else {
        state.open_waves
    };
    waves
        .iter()
        .skip(open)
        .flat_map(|w| w.clusters.iter().map(String::as_str))
        .collect()
}

#[cfg(test)]
mod tests;
