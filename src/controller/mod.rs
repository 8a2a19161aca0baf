//! `starmap run`: the controller. The render and status pipeline on timers, woken by
//! webhooks, behind an optional Lease, with metrics and health endpoints. It calls
//! [`crate::pipeline`] for every round and re-implements none of it (docs/controller.md).
//!
//! Lifecycle: bind the listener, (wait for the lease,) run the loops; on SIGTERM/SIGINT stop
//! starting rounds, give a round in flight `grace` to finish, release the lease, return.
//! Losing the lease returns an error at once (the process exits 1): the deploy branch moves
//! only by compare-and-swap, so a round abandoned mid-way leaves no partial commit.

pub mod config;
mod http;
pub mod leader;
pub mod metrics;
mod rounds;
pub mod webhook;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{Notify, oneshot, watch};

use crate::pipeline::{CollectSettings, RenderTarget};
use crate::{Error, Model, Result};
use leader::{Election, LeaseSettings, Role};
use metrics::Metrics;

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
}

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
    /// The model of the last successful load, for status rounds.
    model: watch::Sender<Option<Arc<Model>>>,
}

#[derive(Default)]
struct Readiness {
    leader: bool,
    stopping: bool,
    rendered: bool,
    last_error: Option<String>,
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

    /// Why `/readyz` is not 200, in one line.
    fn not_ready(&self) -> Option<String> {
        let r = self.lock();
        if r.stopping {
            Some("shutting down".into())
        } else if !r.leader {
            Some("standby: another replica holds the lease".into())
        } else if !r.rendered {
            Some(match &r.last_error {
                Some(e) => format!("no render round has succeeded yet: {}", e.replace('\n', " ")),
                None => "no render round has succeeded yet".into(),
            })
        } else {
            None
        }
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
    let client = match &settings.lease {
        Some(lease) => Some(leader::hub_client(lease).await?),
        None => None,
    };
    if settings.webhook_secret.is_none() {
        tracing::warn!(
            "no webhook secret (--webhook-secret-file or STARMAP_WEBHOOK_SECRET): POST /webhook accepts any push event unauthenticated"
        );
    }
    let shared = Arc::new(Shared {
        metrics: Metrics::new(),
        trigger: Notify::new(),
        active: AtomicBool::new(false),
        readiness: Mutex::new(Readiness::default()),
        webhook_secret: settings.webhook_secret.clone(),
        model: watch::Sender::new(None),
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
    let outcome = lead(
        settings,
        shared.clone(),
        &mut signals,
        election.as_ref().map(|e| e.role.clone()),
    )
    .await;
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
