//! `starmap run`: the controller. The render and status pipeline on timers, woken by
//! webhooks, behind an optional Lease, with metrics and health endpoints. It calls
//! [`crate::pipeline`] for every round and re-implements none of it (docs/controller.md).
//!
//! Lifecycle: bind the listener, (wait for the lease,) run the loops; on SIGTERM/SIGINT stop
//! starting rounds, give a round in flight `grace` to finish, release the lease, return.
//! Losing the lease returns an error at once (the process exits 1): the deploy branch moves
//! only by compare-and-swap, so a round abandoned mid-way leaves no partial commit.
//!
//! With leader election every replica reads the Lease every few seconds (relay.rs): a
//! standby that can is ready to take over, and so Ready; a standby relays push webhooks to the
//! leader through an annotation of the Lease, which the leader's read picks up.

pub mod config;
mod http;
pub mod leader;
pub mod metrics;
pub mod relay;
mod rounds;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Notify, oneshot, watch};

use crate::pipeline::{CollectSettings, RenderTarget};
use crate::{Error, Model, Result};
use leader::{Election, LeaseSettings, Role};
use metrics::Metrics;
use relay::Relay;

/// Everything `starmap run` needs, resolved from flags, environment and config file. (No
/// `Debug`: it holds the webhook secret.)
#[derive(Clone)]
pub struct Settings {
    pub source: String,
    pub inventory: Option<String>,
    pub target: RenderTarget,
    pub interval: Duration,
    /// Zero: no status rounds.
    pub status_interval: Duration,
    pub collect: CollectSettings,
    pub listen: SocketAddr,
    pub webhook_secret: Option<Vec<u8>>,
    /// `None`: leader election off, this replica works alone.
    pub lease: Option<LeaseSettings>,
    /// How long a round in flight may run after SIGTERM.
    pub grace: Duration,
    /// A round running longer than this makes `/healthz` fail (a liveness probe then restarts
    /// the process); the round itself is not abandoned.
    pub round_timeout: Duration,
}

/// Default of `--round-timeout`: far above a 10,000-cluster render (about 15 s), room for a
/// status round through many unreachable clusters.
pub const DEFAULT_ROUND_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// Default grace period: under Kubernetes' default 30 s between SIGTERM and SIGKILL.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(25);

/// State shared by the loops and the HTTP handlers.
struct Shared {
    metrics: Metrics,
    /// Wakes the render loop (webhook, status commit); a wake-up during a round is kept.
    trigger: Notify,
    /// Rounds may run here: leader (or election off) and not shutting down.
    active: AtomicBool,
    readiness: Mutex<Readiness>,
    webhook_secret: Option<Vec<u8>>,
    /// With leader election: where a replica that does not work relays webhooks.
    relay: Option<Arc<Relay>>,
    /// The model of the last successful load, for status rounds.
    model: watch::Sender<Option<Arc<Model>>>,
    /// When the round of each loop in flight started (`/healthz`).
    in_flight: Mutex<RoundsInFlight>,
    /// The deploy repo and branch the dashboard reads, and the last fleet it read.
    deploy: (String, String),
    fleet: crate::dashboard::FleetCache,
}

/// The rounds running now, for `/healthz`.
#[derive(Default)]
struct RoundsInFlight {
    render: Option<Instant>,
    status: Option<Instant>,
    deadline: Duration,
}

impl RoundsInFlight {
    fn slot(&mut self, which: metrics::Loop) -> &mut Option<Instant> {
        match which {
            metrics::Loop::Render => &mut self.render,
            metrics::Loop::Status => &mut self.status,
        }
    }

    /// `Err(why)` when a round has run past its deadline.
    fn verdict(&self, now: Instant) -> std::result::Result<(), String> {
        for (name, started) in [("render", self.render), ("status", self.status)] {
            if let Some(started) = started {
                let running = now.saturating_duration_since(started);
                if running > self.deadline {
                    return Err(format!(
                        "the {name} round has run for {}, past its deadline of {} (--round-timeout)",
                        crate::time::human(Duration::from_secs(running.as_secs())),
                        crate::time::human(self.deadline)
                    ));
                }
            }
        }
        Ok(())
    }
}

/// What `/readyz` answers from.
#[derive(Default)]
struct Readiness {
    /// Leader election is on (else this replica works alone).
    elect: bool,
    leader: bool,
    stopping: bool,
    rendered: bool,
    last_error: Option<String>,
    lease: LeaseCheck,
}

/// What a standby's reads of the Lease said (relay::observe).
#[derive(Default)]
struct LeaseCheck {
    /// The last read: `None` before the first; `Err` says why it failed.
    last: Option<std::result::Result<(), String>>,
    /// The holder the last read saw, if its lease was live.
    holder: Option<String>,
    /// Since when the reads have seen nobody hold the lease.
    unheld_since: Option<Instant>,
    /// How long the lease may stay unheld (a takeover takes about a second) before a standby
    /// that has not taken it counts as unable to: the lease duration.
    takeover: Duration,
    /// The election task's last error, for the message.
    election_error: Option<String>,
}

impl Readiness {
    /// `Ok(body)`: `/readyz` answers 200; `Err(why)`: 503, with one line saying why.
    fn verdict(&self, now: Instant) -> std::result::Result<String, String> {
        if self.stopping {
            return Err("shutting down".into());
        }
        if self.leader {
            return if self.rendered {
                Ok("ready".into())
            } else {
                Err(match &self.last_error {
                    Some(e) => format!("no render round has succeeded yet: {}", e.replace('\n', " ")),
                    None => "no render round has succeeded yet".into(),
                })
            };
        }
        if !self.elect {
            return Err("starting".into());
        }
        let lease = &self.lease;
        match &lease.last {
            None => Err("standby: the lease has not been read yet".into()),
            Some(Err(e)) => Err(format!("standby: cannot read the lease: {}", e.replace('\n', " "))),
            Some(Ok(())) => match (lease.unheld_since, &lease.holder) {
                (Some(since), _) if now.saturating_duration_since(since) > lease.takeover => Err(format!(
                    "standby: nobody has held the lease for {}s and this replica has not taken it{}",
                    now.saturating_duration_since(since).as_secs(),
                    match &lease.election_error {
                        Some(e) => format!(" (leader election: {})", e.replace('\n', " ")),
                        None => String::new(),
                    }
                )),
                (_, Some(holder)) => Ok(format!("ready: standby, {holder} holds the lease")),
                (_, None) => Ok("ready: standby, taking over the lease".into()),
            },
        }
    }
}

impl Shared {
    fn active(&self) -> bool {
        self.active.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Readiness> {
        // A panic while holding this lock leaves plain data behind: keep using it.
        self.readiness.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn set_leader(&self, leader: bool) {
        self.lock().leader = leader;
        self.active.store(leader, Ordering::SeqCst);
        self.metrics.leader(leader);
    }

    fn stopping(&self) {
        self.lock().stopping = true;
        self.active.store(false, Ordering::SeqCst);
    }

    fn rendered(&self) {
        let mut r = self.lock();
        r.rendered = true;
        r.last_error = None;
    }

    fn render_failed(&self, e: &Error) {
        self.lock().last_error = Some(e.to_string());
    }

    /// A read of the Lease: `Ok(live holder)` or why it failed.
    fn lease_read(
        &self,
        read: std::result::Result<Option<String>, String>,
        election_error: Option<String>,
        now: Instant,
    ) {
        let mut r = self.lock();
        let lease = &mut r.lease;
        lease.election_error = election_error;
        match read {
            Ok(holder) => {
                match (&holder, lease.unheld_since) {
                    (Some(_), _) => lease.unheld_since = None,
                    (None, None) => lease.unheld_since = Some(now),
                    (None, Some(_)) => {}
                }
                lease.holder = holder;
                lease.last = Some(Ok(()));
            }
            Err(e) => lease.last = Some(Err(e)),
        }
    }

    /// `/readyz`: `Ok(body)` for 200, `Err(why)` for 503.
    fn readiness(&self) -> std::result::Result<String, String> {
        self.lock().verdict(Instant::now())
    }

    fn rounds(&self) -> std::sync::MutexGuard<'_, RoundsInFlight> {
        self.in_flight.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A round of `which` starts (`Some(now)`) or ends (`None`).
    fn round_running(&self, which: metrics::Loop, since: Option<Instant>) {
        *self.rounds().slot(which) = since;
    }

    /// `/healthz`: `Err(why)` when a round is stuck past its deadline.
    fn liveness(&self) -> std::result::Result<(), String> {
        self.rounds().verdict(Instant::now())
    }
}

/// SIGTERM and SIGINT, listened to from the start so that a signal is never missed.
struct Signals {
    term: Signal,
    int: Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        let listen = |kind| signal(kind).map_err(|e| Error::msg(format!("cannot listen for signals: {e}")));
        Ok(Signals {
            term: listen(SignalKind::terminate())?,
            int: listen(SignalKind::interrupt())?,
        })
    }

    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}

/// Run the controller until SIGTERM/SIGINT (`Ok`) or until this replica loses the lease or
/// cannot start (`Err`).
pub async fn run(settings: Settings) -> Result<()> {
    let mut signals = Signals::new()?;
    let listener = TcpListener::bind(settings.listen)
        .await
        .map_err(|e| Error::msg(format!("--listen {}: {e}", settings.listen)))?;
    let clients = match &settings.lease {
        Some(lease) => Some(leader::hub_clients(lease).await?),
        None => None,
    };
    if settings.webhook_secret.is_none() {
        tracing::warn!(
            "no webhook secret (--webhook-secret-file or STARMAP_WEBHOOK_SECRET): POST /webhook accepts any push event unauthenticated"
        );
    }
    let (client, relay) = match (clients, &settings.lease) {
        (Some((election, relay)), Some(lease)) => (Some(election), Some(Arc::new(Relay::new(relay, lease)))),
        _ => (None, None),
    };
    let readiness = Readiness {
        elect: settings.lease.is_some(),
        lease: LeaseCheck {
            takeover: settings.lease.as_ref().map(|l| l.duration).unwrap_or_default(),
            ..LeaseCheck::default()
        },
        ..Readiness::default()
    };
    let shared = Arc::new(Shared {
        metrics: Metrics::new(),
        trigger: Notify::new(),
        active: AtomicBool::new(false),
        readiness: Mutex::new(readiness),
        webhook_secret: settings.webhook_secret.clone(),
        relay: relay.clone(),
        model: watch::Sender::new(None),
        deploy: (settings.target.deploy.clone(), settings.target.branch.clone()),
        fleet: Default::default(),
        in_flight: Mutex::new(RoundsInFlight {
            deadline: settings.round_timeout,
            ..RoundsInFlight::default()
        }),
    });
    let (http_stop, http_stop_rx) = oneshot::channel();
    let server = tokio::spawn(http::serve(listener, shared.clone(), http_stop_rx));
    tracing::info!(listen = %settings.listen, "serving /metrics, /healthz, /readyz, /webhook");

    let election = match (client, &settings.lease) {
        (Some(client), Some(lease)) => {
            tracing::info!(
                lease = %format!("{}/{}", lease.namespace, lease.name),
                identity = %lease.identity,
                "standby: waiting for the lease"
            );
            Some(Election::start(client, lease.clone()))
        }
        _ => None,
    };
    let observer = match (&election, relay, &settings.lease) {
        (Some(election), Some(relay), Some(lease)) => Some(tokio::spawn(relay::observe(
            relay,
            lease.poll_period(),
            shared.clone(),
            election.error.clone(),
            election.nudge.clone(),
        ))),
        _ => None,
    };
    let outcome = lead(
        settings,
        shared.clone(),
        &mut signals,
        election.as_ref().map(|e| e.role.clone()),
    )
    .await;
    if let Some(observer) = observer {
        observer.abort();
    }
    if let (Some(election), Ok(())) = (election, &outcome) {
        election.release().await;
    }
    let _ = http_stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    outcome
}

/// Wait for the lease (if any), run the loops, and stop them on a signal; `Err` when the
/// lease is lost.
async fn lead(
    settings: Settings,
    shared: Arc<Shared>,
    signals: &mut Signals,
    role: Option<watch::Receiver<Role>>,
) -> Result<()> {
    if let Some(mut role) = role.clone() {
        tokio::select! {
            sig = signals.next() => {
                tracing::info!("{sig}: stopping (standby)");
                shared.stopping();
                return Ok(());
            }
            _ = role.wait_for(|r| *r != Role::Standby) => {}
        }
    }
    shared.set_leader(true);
    let grace = settings.grace;
    let (stop, stop_rx) = watch::channel(false);
    let mut loops = tokio::spawn(rounds::run(Arc::new(settings), shared.clone(), stop_rx));
    let lost = async {
        match role {
            Some(mut role) => {
                let lost = role.wait_for(|r| matches!(r, Role::Lost(_))).await;
                match lost.as_deref() {
                    Ok(Role::Lost(why)) => why.clone(),
                    _ => "leader election stopped".into(),
                }
            }
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        sig = signals.next() => {
            tracing::info!("{sig}: stopping: no new rounds; a round in flight has {}s to finish", grace.as_secs());
        }
        why = lost => {
            shared.set_leader(false);
            return Err(Error::msg(format!("lost the lease: {why}; rounds stopped, exiting")));
        }
        _ = &mut loops => {
            return Err(Error::msg("internal error: the rounds stopped by themselves"));
        }
    }
    shared.stopping();
    let _ = stop.send(true);
    tokio::select! {
        done = tokio::time::timeout(grace, &mut loops) => if done.is_err() {
            tracing::warn!("the round in flight did not finish within {}s; exiting without it", grace.as_secs());
        },
        sig = signals.next() => tracing::warn!("{sig} again: exiting without waiting for the round in flight"),
    }
    shared.metrics.leader(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(elect: bool) -> Shared {
        Shared {
            metrics: Metrics::new(),
            trigger: Notify::new(),
            active: AtomicBool::new(false),
            readiness: Mutex::new(Readiness {
                elect,
                lease: LeaseCheck {
                    takeover: Duration::from_secs(15),
                    ..LeaseCheck::default()
                },
                ..Readiness::default()
            }),
            webhook_secret: None,
            relay: None,
            model: watch::Sender::new(None),
            deploy: ("/nowhere".into(), "main".into()),
            fleet: Default::default(),
            in_flight: Mutex::new(RoundsInFlight {
                deadline: Duration::from_secs(60),
                ..RoundsInFlight::default()
            }),
        }
    }

    #[test]
    fn a_round_past_its_deadline_fails_liveness_until_it_ends() {
        let s = shared(false);
        let t0 = Instant::now();
        assert_eq!(s.rounds().verdict(t0), Ok(()));
        s.round_running(metrics::Loop::Status, Some(t0));
        assert_eq!(s.rounds().verdict(t0 + Duration::from_secs(60)), Ok(()));
        assert_eq!(
            s.rounds().verdict(t0 + Duration::from_secs(90)),
            Err("the status round has run for 1m30s, past its deadline of 1m (--round-timeout)".into())
        );
        s.round_running(metrics::Loop::Status, None);
        assert_eq!(s.rounds().verdict(t0 + Duration::from_secs(90)), Ok(()));
    }

    #[test]
    fn a_standby_is_ready_while_it_can_read_the_lease() {
        let s = shared(true);
        let t0 = Instant::now();
        let verdict = |at: Duration| s.lock().verdict(t0 + at);
        assert_eq!(
            verdict(Duration::ZERO),
            Err("standby: the lease has not been read yet".into())
        );
        s.lease_read(Ok(Some("pod-a_1".into())), None, t0);
        assert_eq!(
            verdict(Duration::ZERO),
            Ok("ready: standby, pod-a_1 holds the lease".into())
        );
        s.lease_read(Err("connection refused".into()), None, t0);
        assert_eq!(
            verdict(Duration::ZERO),
            Err("standby: cannot read the lease: connection refused".into())
        );
        s.lease_read(Ok(Some("pod-a_1".into())), None, t0);
        assert!(verdict(Duration::ZERO).is_ok());
        s.stopping();
        assert_eq!(verdict(Duration::ZERO), Err("shutting down".into()));
    }

    #[test]
    fn a_standby_that_does_not_take_an_unheld_lease_stops_being_ready() {
        let s = shared(true);
        let t0 = Instant::now();
        let verdict = |at: u64| s.lock().verdict(t0 + Duration::from_secs(at));
        // Released: a takeover takes a second or two; within the lease duration it is fine.
        s.lease_read(Ok(None), None, t0);
        assert_eq!(verdict(1), Ok("ready: standby, taking over the lease".into()));
        s.lease_read(
            Ok(None),
            Some("cannot use Lease ns/l: forbidden".into()),
            t0 + Duration::from_secs(10),
        );
        assert!(verdict(15).is_ok());
        assert_eq!(
            verdict(20),
            Err(
                "standby: nobody has held the lease for 20s and this replica has not taken it \
                 (leader election: cannot use Lease ns/l: forbidden)"
                    .into()
            )
        );
        // Another replica took it.
        s.lease_read(Ok(Some("pod-b_1".into())), None, t0 + Duration::from_secs(21));
        assert!(verdict(22).is_ok());
    }

    #[test]
    fn a_leader_is_ready_after_its_first_render() {
        let s = shared(true);
        s.lease_read(Ok(Some("me".into())), None, Instant::now());
        s.set_leader(true);
        assert_eq!(s.readiness(), Err("no render round has succeeded yet".into()));
        s.render_failed(&Error::msg("workloads/a.yaml:3: bad\nsecond line"));
        assert_eq!(
            s.readiness(),
            Err("no render round has succeeded yet: workloads/a.yaml:3: bad\\nsecond line".into())
        );
        s.rendered();
        assert_eq!(s.readiness(), Ok("ready".into()));
        s.render_failed(&Error::msg("later failure"));
        assert_eq!(s.readiness(), Ok("ready".into()), "stays ready after the first success");
        // Without election, the one replica is the leader.
        let alone = shared(false);
        assert_eq!(alone.readiness(), Err("starting".into()));
        alone.set_leader(true);
        alone.rendered();
        assert_eq!(alone.readiness(), Ok("ready".into()));
    }
}
