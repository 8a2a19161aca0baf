//! The HTTP face: `/metrics`, `/healthz`, `/readyz`, `/webhook`, and the dashboard: `/`,
//! `/clusters/<name>`, `/placements/<name>` and its JSON under `/api/v1/` (axum).

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
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
        .route("/", get(overview))
        .route("/clusters/{name}", get(cluster_page))
        .route("/placements/{name}", get(placement_page))
        .route("/api/v1/status", get(api_status))
        .route("/api/v1/clusters/{name}", get(api_cluster))
        .route("/api/v1/placements/{name}", get(api_placement))
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

/// The fleet read from the deploy repo's local copy (the rounds keep it fresh), off the
/// async threads; read again only when a branch moved.
async fn fleet(shared: &Arc<Shared>) -> Result<Arc<crate::dashboard::Fleet>, Response> {
    let status_branch = shared
        .model
        .borrow()
        .as_ref()
        .map(|m| m.config.status_branch().to_string());
    let shared = shared.clone();
    let read = tokio::task::spawn_blocking(move || {
        let (deploy, branch) = &shared.deploy;
        shared.fleet.get(deploy, branch, status_branch.as_deref())
    })
    .await;
    match read {
        Ok(Ok(fleet)) => Ok(fleet),
        Ok(Err(e)) => Err((
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot read the deploy repo: {e}\n"),
        )
            .into_response()),
        Err(e) => Err((StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()),
    }
}

fn html(page: crate::Result<String>) -> Response {
    match page {
        Ok(body) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

fn not_found(what: &str) -> Response {
    (StatusCode::NOT_FOUND, format!("{what} not found\n")).into_response()
}

#[derive(serde::Deserialize)]
struct MapQuery {
    group: Option<String>,
    label: Option<String>,
}

async fn overview(State(shared): State<Arc<Shared>>, Query(q): Query<MapQuery>) -> Response {
    let fleet = match fleet(&shared).await {
        Ok(f) => f,
        Err(r) => return r,
    };
    let view = crate::dashboard::html::View {
        group: q.group,
        label: q.label.filter(|l| !l.is_empty()),
    };
    let now = crate::time::now_rfc3339();
    html(crate::dashboard::html::overview(
        &fleet,
        &view,
        &crate::dashboard::html::SERVED,
        Some(&now),
        false,
    ))
}

async fn cluster_page(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match fleet(&shared).await {
        Ok(fleet) => match crate::dashboard::html::cluster(&fleet, &name, &crate::dashboard::html::SERVED) {
            Some(page) => html(page),
            None => not_found(&format!("cluster {name:?}")),
        },
        Err(r) => r,
    }
}

async fn placement_page(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match fleet(&shared).await {
        Ok(fleet) => match crate::dashboard::html::placement(&fleet, &name, &crate::dashboard::html::SERVED) {
            Some(page) => html(page),
            None => not_found(&format!("placement {name:?}")),
        },
        Err(r) => r,
    }
}

#[derive(serde::Deserialize)]
struct WorstQuery {
    worst: Option<usize>,
}

/// `status show -o json`, `?worst=N` clusters (default 5).
async fn api_status(State(shared): State<Arc<Shared>>, Query(q): Query<WorstQuery>) -> Response {
    match fleet(&shared).await {
        Ok(fleet) => axum::Json(fleet.summary(q.worst.unwrap_or(5))).into_response(),
        Err(r) => r,
    }
}

async fn api_cluster(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match fleet(&shared).await {
        Ok(fleet) => match fleet.cluster_json(&name) {
            Some(v) => axum::Json(v).into_response(),
            None => not_found(&format!("cluster {name:?}")),
        },
        Err(r) => r,
    }
}

async fn api_placement(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    match fleet(&shared).await {
        Ok(fleet) => match fleet.placement_json(&name) {
            Some(v) => axum::Json(v).into_response(),
            None => not_found(&format!("placement {name:?}")),
        },
        Err(r) => r,
    }
}
