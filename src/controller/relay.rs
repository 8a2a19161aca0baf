//! The Lease as a mailbox between replicas. A standby that receives an authentic push webhook
//! cannot render (only the leader works), so it **relays** it: a JSON merge patch of
//! `metadata.annotations` alone on the Lease sets [`RENDER_REQUESTED_AT`] to the current time.
//! Every replica reads the Lease every [`LeaseSettings::poll_period`] ([`observe`]): the
//! leader starts a render round when that annotation's value changes, exactly as for a local
//! webhook; a standby uses the same read to know that it can reach the Lease API, i.e. that it
//! is ready to take over (`/readyz`), and, when it sees the lease free (released by a leader
//! that shut down), to take it at once.
//!
//! The relay never writes `spec` (holder, renew time, transitions), never sends a
//! `resourceVersion` and never replaces the object, so it cannot conflict with the holder's
//! renewals; it uses its own field manager, which owns only the two annotations.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};
use tokio::sync::{Notify, watch};

use super::Shared;
use super::leader::{LeaseSettings, chain};

/// Annotation on the Lease: when a standby last relayed a push webhook (RFC 3339, UTC,
/// nanoseconds). The leader renders when its value changes.
pub const RENDER_REQUESTED_AT: &str = "starmap.dev/render-requested-at";
/// Annotation on the Lease: which replica relayed it (its Lease identity), for people.
pub const RENDER_REQUESTED_BY: &str = "starmap.dev/render-requested-by";
/// The field manager of the relay's patches.
pub const FIELD_MANAGER: &str = "starmap-webhook-relay";

/// Writes render requests onto the Lease.
pub struct Relay {
    api: Api<Lease>,
    pub name: String,
    pub namespace: String,
    identity: String,
    /// Each request's time limit (the client has no read timeout, see leader::hub_clients).
    timeout: Duration,
}

impl Relay {
    pub fn new(client: Client, settings: &LeaseSettings) -> Relay {
        Relay {
            api: Api::namespaced(client, &settings.namespace),
            name: settings.name.clone(),
            namespace: settings.namespace.clone(),
            identity: settings.identity.clone(),
            timeout: settings.request_timeout(),
        }
    }

    /// Ask the leader for a render round; the annotation's new value, or why it failed.
    pub async fn request_render(&self) -> Result<String, String> {
        let value = k8s_openapi::jiff::Timestamp::now().to_string();
        let patch = request_patch(&value, &self.identity);
        let params = PatchParams {
            field_manager: Some(FIELD_MANAGER.into()),
            ..Default::default()
        };
        let patch = Patch::Merge(&patch);
        match tokio::time::timeout(self.timeout, self.api.patch(&self.name, &params, &patch)).await {
            Ok(Ok(_)) => Ok(value),
            Ok(Err(e)) => Err(chain(&e)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// Read the Lease; one quick retry, so that one dropped connection does not count as
    /// "cannot reach the API".
    async fn read(&self) -> Result<Option<Lease>, String> {
        let once = || async {
            match tokio::time::timeout(self.timeout, self.api.get_opt(&self.name)).await {
                Ok(read) => read.map_err(|e| chain(&e)),
                Err(_) => Err(self.timed_out()),
            }
        };
        match once().await {
            Ok(lease) => Ok(lease),
            Err(e) => {
                tracing::debug!("reading the lease: {e}; retrying once");
                tokio::time::sleep(Duration::from_millis(200)).await;
                once().await
            }
        }
    }

    fn timed_out(&self) -> String {
        format!("no answer from the API server within {:?}", self.timeout)
    }
}

/// The merge patch of a render request: two annotations, nothing else.
pub fn request_patch(value: &str, identity: &str) -> serde_json::Value {
    serde_json::json!({"metadata": {"annotations": {
        RENDER_REQUESTED_AT: value,
        RENDER_REQUESTED_BY: identity,
    }}})
}

/// What one read of the Lease says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LeaseView {
    /// The holder, if its lease has not expired (by this replica's clock, as
    /// kube-lease-manager judges it too).
    pub holder: Option<String>,
    /// The value of [`RENDER_REQUESTED_AT`].
    pub requested: Option<String>,
    /// The value of [`RENDER_REQUESTED_BY`].
    pub requested_by: Option<String>,
}

impl LeaseView {
    /// `None`: the Lease does not exist (yet: the election task creates it).
    pub fn of(lease: Option<&Lease>, now: SystemTime) -> LeaseView {
        let Some(lease) = lease else {
            return LeaseView::default();
        };
        let annotation = |key: &str| lease.metadata.annotations.as_ref().and_then(|a| a.get(key)).cloned();
        let holder = lease.spec.as_ref().and_then(|spec| {
            let holder = spec.holder_identity.clone()?;
            let renewed: SystemTime = spec.renew_time.as_ref()?.0.into();
            let duration = Duration::from_secs(u64::try_from(spec.lease_duration_seconds?).ok()?);
            (renewed + duration > now).then_some(holder)
        });
        LeaseView {
            holder,
            requested: annotation(RENDER_REQUESTED_AT),
            requested_by: annotation(RENDER_REQUESTED_BY),
        }
    }
}

/// Read the Lease every `period` until aborted: record the result for `/readyz`; while this
/// replica is the leader, trigger a render round when a standby requested one; while it is a
/// standby and nobody holds the lease, nudge the election to take it now.
/// `election_error` is the election task's last error, shown when a standby is not ready.
pub(super) async fn observe(
    relay: Arc<Relay>,
    period: Duration,
    shared: Arc<Shared>,
    election_error: watch::Receiver<Option<String>>,
    nudge: Arc<Notify>,
) {
    // `None`: not read yet. The first value read is where this replica starts from: a
    // request made before then is covered by the render round every leader runs first.
    let mut seen: Option<Option<String>> = None;
    let mut failing = false;
    loop {
        let read = relay.read().await;
        let error = election_error.borrow().clone();
        match read {
            Ok(lease) => {
                let view = LeaseView::of(lease.as_ref(), SystemTime::now());
                if failing {
                    tracing::info!(lease = %format!("{}/{}", relay.namespace, relay.name), "the lease can be read again");
                    failing = false;
                }
                if seen.as_ref().is_some_and(|before| *before != view.requested) && shared.active() {
                    tracing::info!(
                        by = view.requested_by.as_deref().unwrap_or("?"),
                        at = view.requested.as_deref().unwrap_or("?"),
                        "webhook relayed by a standby through the lease: render round triggered"
                    );
                    shared.trigger.notify_one();
                }
                seen = Some(view.requested.clone());
                if view.holder.is_none() && !shared.active() {
                    nudge.notify_one();
                }
                shared.lease_read(Ok(view.holder), error, Instant::now());
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        lease = %format!("{}/{}", relay.namespace, relay.name),
                        "cannot read the lease: {e}"
                    );
                    failing = true;
                }
                shared.lease_read(Err(e), error, Instant::now());
            }
        }
        tokio::time::sleep(period).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(holder: Option<&str>, renewed_ago: Option<u64>, seconds: i32, requested: Option<&str>) -> Lease {
        let now = k8s_openapi::jiff::Timestamp::now();
        Lease {
            metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
                annotations: requested.map(|r| [(RENDER_REQUESTED_AT.to_string(), r.to_string())].into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder.map(str::to_string),
                renew_time: renewed_ago
                    .map(|s| MicroTime(now - k8s_openapi::jiff::SignedDuration::from_secs(s as i64))),
                lease_duration_seconds: Some(seconds),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn a_live_holder_and_the_request() {
        let now = SystemTime::now();
        let v = LeaseView::of(Some(&lease(Some("a_1"), Some(1), 15, Some("t1"))), now);
        assert_eq!(v.holder.as_deref(), Some("a_1"));
        assert_eq!(v.requested.as_deref(), Some("t1"));
        // Expired, released (no holder), never renewed, or no Lease at all: nobody holds it.
        let expired = LeaseView::of(Some(&lease(Some("a_1"), Some(20), 15, None)), now);
        assert_eq!(expired.holder, None);
        assert_eq!(LeaseView::of(Some(&lease(None, None, 15, None)), now).holder, None);
        assert_eq!(
            LeaseView::of(Some(&lease(Some("a_1"), None, 15, None)), now).holder,
            None
        );
        assert_eq!(LeaseView::of(None, now), LeaseView::default());
    }

    #[test]
    fn the_request_patch_touches_annotations_only() {
        let p = request_patch("2026-01-02T03:04:05.123456789Z", "pod-a_1");
        assert_eq!(p.as_object().unwrap().keys().collect::<Vec<_>>(), ["metadata"]);
        let metadata = p["metadata"].as_object().unwrap();
        assert_eq!(metadata.keys().collect::<Vec<_>>(), ["annotations"]);
        assert_eq!(
            p["metadata"]["annotations"][RENDER_REQUESTED_AT],
            "2026-01-02T03:04:05.123456789Z"
        );
        assert_eq!(p["metadata"]["annotations"][RENDER_REQUESTED_BY], "pod-a_1");
    }
}
