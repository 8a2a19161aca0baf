//! Leader election on a `coordination.k8s.io/v1` Lease, with kube-lease-manager (kube-runtime
//! 5 has no lease module). One task holds the manager: it acquires, renews and, when told to
//! stop, releases; the controller watches its role. A leader that cannot renew, or sees
//! another holder, reports `Lost` and never becomes leader again in this process: the
//! controller then exits 1 and the pod restarts as a standby. The election task also reports
//! its last error, which `/readyz` of a standby shows when nobody holds the lease.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use kube::{Client, Config};
use kube_lease_manager::LeaseManagerBuilder;
use tokio::sync::{Notify, oneshot, watch};
use tokio::task::JoinHandle;

use crate::{Error, Result};

#[derive(Debug, Clone)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    /// Whole seconds, at least 2 (the Lease's `leaseDurationSeconds`).
    pub duration: Duration,
    /// This replica in the Lease's `holderIdentity`.
    pub identity: String,
}

/// This replica's role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    Standby,
    Leader,
    /// Was leader and is no more: why.
    Lost(String),
}

pub struct Election {
    pub role: watch::Receiver<Role>,
    /// The last error of the election (acquiring, renewing, creating the Lease); cleared when
    /// this replica acquires the lease.
    pub error: watch::Receiver<Option<String>>,
    /// Tells a standby that the lease is free (relay.rs reads it every few seconds).
    pub nudge: Arc<Notify>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl LeaseSettings {
    /// How long before expiry the holder renews. Requests to the API server time out after
    /// half of it, so a leader that cannot renew learns it before another may take over.
    fn grace(&self) -> Duration {
        Duration::from_secs((self.duration.as_secs() / 2).max(1))
    }

    /// How long a request to the API server may take: half the renewal grace.
    pub fn request_timeout(&self) -> Duration {
        self.grace() / 2
    }

    /// How often every replica reads the Lease (relay.rs): a relayed webhook reaches the
    /// leader well within one renewal period (3.5 s with the default 15 s lease, 1 s with 4 s).
    pub fn poll_period(&self) -> Duration {
        self.request_timeout().max(Duration::from_millis(500))
    }
}

/// `POD_NAME` (or the host name) and the process id: unique per process, readable in
/// `kubectl get lease`.
pub fn default_identity() -> String {
    let name = std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "starmap".into());
    format!("{name}_{}", std::process::id())
}

/// The hub's clients: in-cluster, else `KUBECONFIG`/`~/.kube/config` (not `--kubeconfig`,
/// which names the edge clusters). Two clients of the same config:
/// - the election's, whose reads and writes time out after [`LeaseSettings::request_timeout`]
///   (kube-lease-manager sets no timeout of its own);
/// - the relay's (relay.rs), which bounds each request itself: a read timeout on the stream
///   would also close its idle pooled connection just as the next read, one poll period
///   later, picks it up, and fail that read.
pub async fn hub_clients(settings: &LeaseSettings) -> Result<(Client, Client)> {
    let mut config = Config::infer().await.map_err(|e| {
        Error::msg(format!(
            "leader election: no Kubernetes API to hold the lease in: {}",
            chain(&e)
        ))
    })?;
    let timeout = settings.request_timeout();
    config.connect_timeout = Some(timeout);
    let relay = Client::try_from(config.clone());
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    let election = Client::try_from(config);
    let fail = |e: kube::Error| Error::msg(format!("leader election: {}", chain(&e)));
    Ok((election.map_err(fail)?, relay.map_err(fail)?))
}

impl Election {
    pub fn start(client: Client, settings: LeaseSettings) -> Election {
        let (role_tx, role) = watch::channel(Role::Standby);
        let (error_tx, error) = watch::channel(None);
        let (stop, stop_rx) = oneshot::channel();
        let nudge = Arc::new(Notify::new());
        let task = tokio::spawn(elect(client, settings, role_tx, error_tx, nudge.clone(), stop_rx));
        Election {
            role,
            error,
            nudge,
            stop,
            task,
        }
    }

    /// Stop campaigning; a leader releases the lease so a standby takes over within a few
    /// seconds (as soon as its next read of the Lease sees it free) instead of at its expiry.
    pub async fn release(self) {
        let _ = self.stop.send(());
        if tokio::time::timeout(Duration::from_secs(5), self.task).await.is_err() {
            tracing::warn!("leader election: releasing the lease timed out; it expires by itself");
        }
    }
}

async fn elect(
    client: Client,
    settings: LeaseSettings,
    role: watch::Sender<Role>,
    error: watch::Sender<Option<String>>,
    nudge: Arc<Notify>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let build = LeaseManagerBuilder::new(client.clone(), &settings.name)
            .with_namespace(&settings.namespace)
            .with_identity(&settings.identity)
            .with_duration(settings.duration.as_secs())
            .with_grace(settings.grace().as_secs())
            .build();
        let manager = tokio::select! {
            _ = &mut stop => return,
            built = build => built,
        };
        let manager = match manager {
            Ok(m) => m,
            Err(e) => {
                let why = format!(
                    "cannot use Lease {}/{}: {}",
                    settings.namespace,
                    settings.name,
                    chain(&e)
                );
                tracing::warn!("leader election: {why}; retrying in {}s", backoff.as_secs());
                error.send_replace(Some(why));
                tokio::select! {
                    _ = &mut stop => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
                continue;
            }
        };
        backoff = Duration::from_secs(1);
        // `changed` resolves when this replica gains or loses the lease; while it holds the
        // lease, awaiting it is what renews it.
        loop {
            let changed = tokio::select! {
                _ = &mut stop => {
                    if *role.borrow() == Role::Leader {
                        if let Err(e) = manager.release().await {
                            tracing::warn!("leader election: releasing the lease: {}", chain(&e));
                        } else {
                            tracing::info!("leader election: released the lease");
                        }
                    }
                    return;
                }
                changed = manager.changed() => changed,
                // A standby's manager sleeps until the expiry it last read, even when the
                // holder released the lease meanwhile; a fresh manager reads it now and takes
                // it. (Dropping `changed` mid-way is safe: whatever it wrote names this
                // identity, and the fresh manager starts from the Lease as it is.)
                _ = nudge.notified(), if *role.borrow() == Role::Standby => {
                    tracing::debug!("leader election: the lease is free: trying it now");
                    break;
                }
            };
            let leading = *role.borrow() == Role::Leader;
            match changed {
                Ok(true) => {
                    tracing::info!(identity = %settings.identity, "leader election: acquired the lease");
                    error.send_replace(None);
                    role.send_replace(Role::Leader);
                }
                Ok(false) if leading => {
                    role.send_replace(Role::Lost("another replica holds the lease".into()));
                    return;
                }
                Ok(false) => {}
                Err(e) if leading => {
                    role.send_replace(Role::Lost(format!("cannot renew the lease: {}", chain(&e))));
                    return;
                }
                Err(e) => {
                    // A fresh manager starts from the Lease as it is; the old one's view may
                    // be stale after an error.
                    tracing::warn!("leader election: {}", chain(&e));
                    error.send_replace(Some(chain(&e)));
                    tokio::select! {
                        _ = &mut stop => return,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    break;
                }
            }
        }
    }
}

/// `outer: inner: innermost` on one line.
pub(super) fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(e);
    while let Some(err) = cur {
        let text = err.to_string().split_whitespace().collect::<Vec<_>>().join(" ");
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}
