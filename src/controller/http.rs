//! The HTTP face: `/metrics`, `/healthz`, `/readyz`, `/webhook` (axum).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::webhook::{self, Verdict};
use super::{Shared, relay};

/// GitHub sends push payloads of up to 25 MB.
const MAX_WEBHOOK_BODY: usize = 25 << 20;

pub(super) async fn serve(listener: TcpListener, shared: Arc<Shared>, stop: oneshot::Receiver<()>) {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/webhook", post(hook))
        .layer(DefaultBodyLimit::max(MAX_WEBHOOK_BODY))
        .layer(axum::middleware::map_response(scrubbed))
        .with_state(shared);
    let stopped = async {
        let _ = stop.await;
    };
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(stopped).await {
        tracing::error!("http server: {e}");
    }
}

/// Every response, scrubbed of credentials (`redact::scrub`): the HTTP chokepoint.
async fn scrubbed(response: Response) -> Response {
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let clean = crate::redact::scrub(&text).into_owned();
            Response::from_parts(parts, axum::body::Body::from(clean))
        }
        Err(_) => Response::from_parts(parts, axum::body::Body::empty()),
    }
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let (text, content_type) = shared.metrics.encode();
    ([(header::CONTENT_TYPE, content_type)], text).into_response()
}

/// Alive unless a round is stuck past its deadline (`--round-timeout`): a liveness probe on
/// this restarts a controller whose round hangs.
async fn healthz(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    match shared.liveness() {
        Ok(()) => (StatusCode::OK, "ok\n".into()),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")),
    }
}

async fn readyz(State(shared): State<Arc<Shared>>) -> (StatusCode, String) {
    match shared.readiness() {
        Ok(body) => (StatusCode::OK, format!("{body}\n")),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}

async fn hook(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let verdict = webhook::judge(&headers, &body, shared.webhook_secret.as_deref());
    let mut label = verdict.label();
    let (code, text) = match verdict {
        Verdict::Push if shared.active() => {
            tracing::info!("webhook: push event, render round triggered");
            shared.trigger.notify_one();
            (StatusCode::ACCEPTED, "render round triggered".into())
        }
        // A standby, or a leader shutting down: the leader (the next one) renders.
        Verdict::Push => match &shared.relay {
            Some(lease) => match lease.request_render().await {
                Ok(at) => {
                    label = "relayed";
                    tracing::info!(
                        "webhook: push event on a replica that does not render: relayed to the leader through Lease {}/{} ({}={at})",
                        lease.namespace,
                        lease.name,
                        relay::RENDER_REQUESTED_AT
                    );
                    (
                        StatusCode::ACCEPTED,
                        format!(
                            "relayed to the leader through Lease {}/{}: render round requested",
                            lease.namespace, lease.name
                        ),
                    )
                }
                Err(e) => {
                    label = "relay_failed";
                    tracing::warn!("webhook: cannot relay a push event to the leader: {e}");
                    (
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("standby: cannot relay to the leader through the lease: {e}"),
                    )
                }
            },
            None => {
                label = "shutting_down";
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting down: this replica starts no more rounds".into(),
                )
            }
        },
        Verdict::Ping => (StatusCode::OK, "pong".into()),
        Verdict::Ignored(event) => (StatusCode::OK, format!("ignored: event {event:?} is not a push")),
        Verdict::Unauthorized(why) => {
            tracing::warn!("webhook: refused: {why}");
            (StatusCode::UNAUTHORIZED, why.into())
        }
        Verdict::BadRequest(why) => (StatusCode::BAD_REQUEST, why.into()),
    };
    shared.metrics.webhook(label);
    (code, format!("{text}\n"))
}
