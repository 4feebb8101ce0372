//! `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /api/v1/alerts`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::registry::Registry;

use crate::source::Health;

/// A run loop silent for longer than this is reported unhealthy.
const STALE_LOOP_MS: i64 = 30_000;

struct AppState {
    registry: Registry,
    health: Arc<Health>,
}

pub fn router(registry: Registry, health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/alerts", get(alerts))
        .with_state(Arc::new(AppState { registry, health }))
}

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound address (port 0
/// picks a free one) and the server task.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    health: Arc<Health>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(registry, health);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await
    });
    Ok((bound, task))
}

async fn healthz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let last = s.health.last_loop_ms.load(Ordering::Relaxed);
    let age = chrono::Utc::now().timestamp_millis() - last;
    if last == 0 || age < STALE_LOOP_MS || s.health.draining.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n".to_string())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("run loop stalled for {} s\n", age / 1000),
        )
    }
}

async fn readyz(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    if s.health.draining.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if s.health.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for partition assignment\n",
        )
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::render(&s.registry),
    )
}

/// Alert instances (pending, firing, recently resolved) with their numbers, as JSON.
async fn alerts(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let view = s
        .health
        .alerts
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    axum::Json(view)
}
