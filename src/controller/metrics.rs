//! The controller's Prometheus metrics. Names and labels are part of the contract
//! (docs/controller.md); counters get their `_total` suffix from the encoder.

use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::formats::status::ClusterStatus;
use crate::rollout::Progress;

type Label = [(&'static str, &'static str); 1];
type PlacementLabel = [(&'static str, String); 1];
type PhaseLabels = [(&'static str, String); 2];

/// What a round did, as the `result` label says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoundResult {
    Committed,
    Unchanged,
    Error,
}

impl RoundResult {
    fn as_str(self) -> &'static str {
        match self {
            RoundResult::Committed => "committed",
            RoundResult::Unchanged => "unchanged",
            RoundResult::Error => "error",
        }
    }
}

/// Which loop a round belongs to (the `loop` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    Render,
    Status,
}

impl Loop {
    pub fn as_str(self) -> &'static str {
        match self {
            Loop::Render => "render",
            Loop::Status => "status",
        }
    }
}

/// The `health` label values of `starmap_clusters`, in severity order with `Stale` last.
pub const CLUSTER_HEALTH: [&str; 7] = [
    "Healthy",
    "Progressing",
    "Degraded",
    "Suspended",
    "Missing",
    "Unknown",
    "Stale",
];

pub struct Metrics {
    registry: Registry,
    render_rounds: Family<Label, Counter>,
    render_duration: Histogram,
    status_rounds: Family<Label, Counter>,
    status_duration: Histogram,
    errors: Family<Label, Counter>,
    clusters: Family<Label, Gauge>,
    rollout_open_waves: Family<PlacementLabel, Gauge>,
    rollout_waves: Family<PlacementLabel, Gauge>,
    rollout_phase: Family<PhaseLabels, Gauge>,
    last_success: Family<Label, Gauge<f64, AtomicU64>>,
    leader: Gauge,
    webhook_requests: Family<Label, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        // Rounds take from milliseconds (a no-op render) to minutes (a slow fleet).
        let buckets = || Histogram::new(exponential_buckets(0.01, 2.0, 16));
        let m = Metrics {
            registry: Registry::default(),
            render_rounds: Family::default(),
            render_duration: buckets(),
            status_rounds: Family::default(),
            status_duration: buckets(),
            errors: Family::default(),
            clusters: Family::default(),
            rollout_open_waves: Family::default(),
            rollout_waves: Family::default(),
            rollout_phase: Family::default(),
            last_success: Family::default(),
            leader: Gauge::default(),
            webhook_requests: Family::default(),
        };
        // Every known series exists from the start, at 0, so rates and alerts work before
        // the first event.
        for result in [RoundResult::Committed, RoundResult::Unchanged, RoundResult::Error] {
            m.render_rounds.get_or_create_owned(&[("result", result.as_str())]);
            m.status_rounds.get_or_create_owned(&[("result", result.as_str())]);
        }
        for l in [Loop::Render, Loop::Status] {
            m.errors.get_or_create_owned(&[("loop", l.as_str())]);
            m.last_success.get_or_create_owned(&[("loop", l.as_str())]);
        }
        for health in CLUSTER_HEALTH {
            m.clusters.get_or_create_owned(&[("health", health)]);
        }
        m.register()
    }

    fn register(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            "starmap_render_rounds",
            "Render rounds by result",
            self.render_rounds.clone(),
        );
        r.register(
            "starmap_render_duration_seconds",
            "Duration of render rounds (load, render, commit, push)",
            self.render_duration.clone(),
        );
        r.register(
            "starmap_status_rounds",
            "Status rounds by result",
            self.status_rounds.clone(),
        );
        r.register(
            "starmap_status_duration_seconds",
            "Duration of status rounds (read clusters, commit, push)",
            self.status_duration.clone(),
        );
        r.register("starmap_errors", "Failed rounds by loop", self.errors.clone());
        r.register(
            "starmap_clusters",
            "Clusters by health in the last status round (Stale: not reached)",
            self.clusters.clone(),
        );
        r.register(
            "starmap_rollout_open_waves",
            "Open waves of each placement's rollout after the last render",
            self.rollout_open_waves.clone(),
        );
        r.register(
            "starmap_rollout_waves",
            "Waves of each placement's rollout",
            self.rollout_waves.clone(),
        );
        r.register(
            "starmap_rollout_phase",
            "1 for the current phase of each placement's rollout",
            self.rollout_phase.clone(),
        );
        r.register(
            "starmap_last_success_timestamp_seconds",
            "Unix time of the last successful round by loop",
            self.last_success.clone(),
        );
        r.register(
            "starmap_leader",
            "1 while this replica does the work (leader, or leader election off)",
            self.leader.clone(),
        );
        r.register(
            "starmap_webhook_requests",
            "Webhook requests by result",
            self.webhook_requests.clone(),
        );
        self
    }

    /// The Prometheus text exposition and its content type.
    pub fn encode(&self) -> (String, &'static str) {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        (out, prometheus_text::CONTENT_TYPE)
    }

    pub fn round(&self, l: Loop, result: RoundResult, took: Duration) {
        let (rounds, duration) = match l {
            Loop::Render => (&self.render_rounds, &self.render_duration),
            Loop::Status => (&self.status_rounds, &self.status_duration),
        };
        rounds.get_or_create(&[("result", result.as_str())]).inc();
        duration.observe(took.as_secs_f64());
        if result == RoundResult::Error {
            self.errors.get_or_create(&[("loop", l.as_str())]).inc();
        } else {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0);
            self.last_success.get_or_create(&[("loop", l.as_str())]).set(now);
        }
    }

    /// Clusters by health, from a status round's statuses: stale ones count as `Stale`,
    /// the others by their worst object.
    pub fn clusters(&self, statuses: &[ClusterStatus]) {
        for health in CLUSTER_HEALTH {
            let n = statuses
                .iter()
                .filter(|s| {
                    if s.stale {
                        health == "Stale"
                    } else {
                        s.worst_health().as_str() == health
                    }
                })
                .count();
            self.clusters.get_or_create(&[("health", health)]).set(n as i64);
        }
    }

    /// The rollouts as the last render left them; placements gone from the source vanish.
    pub fn rollouts(&self, rollouts: &[Progress]) {
        self.rollout_open_waves.clear();
        self.rollout_waves.clear();
        self.rollout_phase.clear();
        for p in rollouts {
            let placement = [("placement", p.placement.clone())];
            self.rollout_open_waves
                .get_or_create(&placement)
                .set(p.open_waves as i64);
            self.rollout_waves.get_or_create(&placement).set(p.waves as i64);
            self.rollout_phase
                .get_or_create(&[("placement", p.placement.clone()), ("phase", p.phase.to_string())])
                .set(1);
        }
    }

    pub fn leader(&self, leading: bool) {
        self.leader.set(leading as i64);
    }

    pub fn webhook(&self, result: &'static str) {
        self.webhook_requests.get_or_create(&[("result", result)]).inc();
    }
}
