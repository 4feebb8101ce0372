//! `GET /healthz`, `GET /readyz`, `GET /metrics`, `GET /api/v1/alerts`,
//! `GET /api/v1/breakers`, `GET|POST /api/v1/silences`, `DELETE /api/v1/silences/{id}`,
//! `GET /api/v1/outbox`, `POST /api/v1/query`, `GET /api/v1/incidents/{fingerprint}`,
//! `GET /api/v1/analyses`, `GET /api/v1/analyses/{id}`, `POST /api/v1/analyses/{id}/flagger`.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get};
use axum::Router;
use prometheus_client::registry::Registry;

use crate::daemon::health::Health;

/// A run loop silent for longer than this is reported unhealthy.
const STALE_LOOP_MS: i64 = 30_000;

struct AppState {
    registry: Registry,
    health: Arc<Health>,
    /// Bearer token changing requests (and queries) need, when configured.
    token: Option<String>,
    query: Option<QueryApi>,
}

/// What `POST /api/v1/query` queries, and within which limits.
#[derive(Debug, Clone)]
pub struct QueryApi {
    pub data_dir: std::path::PathBuf,
    pub labels: Vec<&'static str>,
    pub limits: crate::query::Limits,
}

pub fn router(
    registry: Registry,
    health: Arc<Health>,
    token: Option<String>,
    query: Option<QueryApi>,
) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/breakers", get(breakers))
        .route("/api/v1/silences", get(list_silences).post(add_silence))
        .route("/api/v1/silences/{id}", delete(expire_silence))
        .route("/api/v1/outbox", get(outbox))
        .route("/api/v1/query", axum::routing::post(run_query))
        .route("/api/v1/incidents/{fingerprint}", get(incident))
        .route("/api/v1/analyses", get(analyses))
        .route("/api/v1/analyses/{id}", get(analysis))
        .route(
            "/api/v1/analyses/{id}/flagger",
            axum::routing::post(flagger).get(flagger),
        )
        .with_state(Arc::new(AppState {
            registry,
            health,
            token,
            query,
        }))
}

/// Binds `addr` and serves until `shutdown` resolves. Returns the bound address (port 0
/// picks a free one) and the server task.
pub async fn serve(
    addr: SocketAddr,
    registry: Registry,
    health: Arc<Health>,
    token: Option<String>,
    query: Option<QueryApi>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let app = router(registry, health, token, query);
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

/// Every configured rollout analysis with its runs.
async fn analyses(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let list = s
        .health
        .analyses
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    axum::Json(serde_json::json!({ "analyses": list }))
}

fn find_analysis(
    s: &AppState,
    id: &str,
) -> Result<crate::detect::analysis::AnalysisReport, Box<Response>> {
    let list = s.health.analyses.read().unwrap_or_else(|e| e.into_inner());
    list.iter().find(|a| a.name == id).cloned().ok_or_else(|| {
        let names: Vec<&str> = list.iter().map(|a| a.name.as_str()).collect();
        Box::new(error(
            StatusCode::NOT_FOUND,
            format!("no analysis {id:?}; configured: {names:?} ([[analyses]] in the config)"),
        ))
    })
}

/// One analysis: its classification and score (of the worst current run) and its runs,
/// for Argo Rollouts' `web` metric provider (`jsonPath: "{$.classification}"`).
async fn analysis(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    match find_analysis(&s, &id) {
        Ok(a) => axum::Json(a).into_response(),
        Err(r) => *r,
    }
}

/// Flagger's webhook gate: 200 while the analysis passes, is marginal or lacks data, 409
/// once it fails. The body says why either way.
async fn flagger(State(s): State<Arc<AppState>>, Path(id): Path<String>) -> Response {
    use crate::detect::analysis::RunClass;
    let a = match find_analysis(&s, &id) {
        Ok(a) => a,
        Err(r) => return *r,
    };
    let body = serde_json::json!({
        "analysis": a.name,
        "classification": a.classification,
        "score": a.score,
        "status": a.status,
        "reason": a.reason,
    });
    let code = if a.classification == RunClass::Fail {
        StatusCode::CONFLICT
    } else {
        StatusCode::OK
    };
    (code, axum::Json(body)).into_response()
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": message.into() })),
    )
        .into_response()
}

/// Checks the bearer token of a changing request: `Some` is the refusal.
fn unauthorized(s: &AppState, headers: &HeaderMap) -> Option<Response> {
    let Some(want) = &s.token else {
        return None;
    };
    let got = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    // Constant-time comparison.
    let same = got.len() == want.len()
        && got
            .bytes()
            .zip(want.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    (!same).then(|| {
        error(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (Authorization: Bearer <token from http.api_token_env>)",
        )
    })
}

fn delivery_off() -> Response {
    error(
        StatusCode::NOT_FOUND,
        "delivery is off: configure [notify.channels] to use silences and the outbox",
    )
}

/// Circuit breakers and their states.
async fn breakers(State(s): State<Arc<AppState>>) -> impl IntoResponse {
    let view = s.health.alerts.read().unwrap_or_else(|e| e.into_inner());
    axum::Json(serde_json::json!({ "breakers": view.breakers }))
}

async fn list_silences(State(s): State<Arc<AppState>>) -> Response {
    match s.health.notify.get() {
        Some(n) => axum::Json(serde_json::json!({ "silences": n.silences() })).into_response(),
        None => delivery_off(),
    }
}

/// Adds a silence: `{"matchers":[{"name","value","isRegex","isEqual"}], "startsAt"?,
/// "endsAt", "createdBy", "comment"}` → `{"silenceID": …}`.
async fn add_silence(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let Some(n) = s.health.notify.get() else {
        return delivery_off();
    };
    let req: crate::notify::service::SilenceRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid silence: {e}")),
    };
    match n.add_silence(req) {
        Ok(id) => axum::Json(serde_json::json!({ "silenceID": id })).into_response(),
        Err(crate::notify::service::SilenceApiError::Save(e)) => {
            error(StatusCode::INTERNAL_SERVER_ERROR, e)
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

async fn expire_silence(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let Some(n) = s.health.notify.get() else {
        return delivery_off();
    };
    match n.expire_silence(&id) {
        Ok(()) => axum::Json(serde_json::json!({ "expired": id })).into_response(),
        Err(crate::notify::service::SilenceApiError::Silence(
            crate::notify::silence::SilenceError::NotFound(_),
        )) => error(StatusCode::NOT_FOUND, format!("no silence {id:?}")),
        Err(e) => error(StatusCode::BAD_REQUEST, e.to_string()),
    }
}

/// Pending notifications per channel and dead letters.
async fn outbox(State(s): State<Arc<AppState>>) -> Response {
    match s.health.notify.get() {
        Some(n) => {
            let (pending, dead) = n.outbox_status();
            axum::Json(serde_json::json!({ "pending": pending, "dead": dead })).into_response()
        }
        None => delivery_off(),
    }
}

/// The runtime queries run on: one worker thread, so a query uses at most one core.
fn query_runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("driftwatch-query")
            .enable_all()
            .build()
            .expect("a tokio runtime for queries")
    })
}

/// `GET /api/v1/incidents/{fingerprint}[?fired_at=MS]`: the incident report of the alert's
/// latest firing (or the one that fired at `fired_at`, epoch ms) as JSON — what
/// `driftwatch incident --json` prints. 404 for a fingerprint that never fired, 400 for one
/// that is not 16 hex digits; needs the query API (`query.enabled`).
async fn incident(
    State(s): State<Arc<AppState>>,
    headers: HeaderMap,
    axum::extract::Path(fingerprint): axum::extract::Path<String>,
    uri: axum::http::Uri,
) -> Response {
    use crate::daemon::incident::{build, IncidentError, IncidentQuery};
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let Some(api) = &s.query else {
        return error(
            StatusCode::NOT_FOUND,
            "incident reports read the data directory through the query API (query.enabled = false)",
        );
    };
    let fired_at = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|kv| kv.strip_prefix("fired_at="));
    let fired_at_ms = match fired_at.map(|v| v.parse::<i64>()) {
        None => None,
        Some(Ok(v)) => Some(v),
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "fired_at is the firing's time in epoch milliseconds",
            )
        }
    };
    let engine = match crate::query::QueryEngine::open(&api.data_dir, &api.labels) {
        Ok(e) => e,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let (dir, labels) = (api.data_dir.clone(), api.labels.clone());
    let q = IncidentQuery {
        fingerprint,
        fired_at_ms,
        ..IncidentQuery::default()
    };
    let ran = query_runtime()
        .spawn(async move { build(&engine, &labels, &dir, &q).await })
        .await;
    match ran {
        Ok(Ok(report)) => axum::Json(report).into_response(),
        Ok(Err(e @ IncidentError::BadFingerprint(_))) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        Ok(Err(e)) if e.is_not_found() => error(StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e)) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("incident task: {e}"),
        ),
    }
}

/// `POST /api/v1/query`: the body is the SQL (or `{"sql": "..."}` with a JSON content
/// type); the response is JSON (an array of row objects), CSV (`Accept: text/csv`) or Arrow
/// IPC (`Accept: application/vnd.apache.arrow.stream`). Refused statements get 403, bad SQL
/// 400, results past the row or byte limit 413, a query past the time limit 504.
async fn run_query(State(s): State<Arc<AppState>>, headers: HeaderMap, body: String) -> Response {
    if let Some(r) = unauthorized(&s, &headers) {
        return r;
    }
    let Some(api) = &s.query else {
        return error(
            StatusCode::NOT_FOUND,
            "queries are off (query.enabled = false)",
        );
    };
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let sql = if is_json {
        match serde_json::from_str::<serde_json::Value>(&body) {
            Ok(v) => match v.get("sql").and_then(|x| x.as_str()) {
                Some(sql) => sql.to_string(),
                None => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "expected {\"sql\": \"SELECT ...\"}",
                    )
                }
            },
            Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid JSON body: {e}")),
        }
    } else {
        body
    };
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let (format, content_type) = if accept.contains("text/csv") {
        (crate::query::Format::Csv, "text/csv; charset=utf-8")
    } else if accept.contains("application/vnd.apache.arrow.stream") {
        (
            crate::query::Format::Arrow,
            "application/vnd.apache.arrow.stream",
        )
    } else {
        (crate::query::Format::JsonArray, "application/json")
    };
    let engine = match crate::query::QueryEngine::open(&api.data_dir, &api.labels) {
        Ok(e) => e,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    // Queries run on their own small runtime: a heavy scan must not take the threads the
    // ingest loop, delivery and health checks run on.
    let limits = api.limits;
    let ran = query_runtime()
        .spawn(async move { engine.run(&sql, &limits).await })
        .await;
    let ran = match ran {
        Ok(r) => r,
        Err(e) => {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("query task: {e}"),
            )
        }
    };
    let out = match ran {
        Ok(o) => o,
        Err(e) => {
            use crate::query::QueryError as Q;
            let status = match &e {
                Q::Refused(_) => StatusCode::FORBIDDEN,
                Q::Invalid(_) => StatusCode::BAD_REQUEST,
                Q::TooManyRows(_) | Q::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                Q::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                Q::Execution(_) | Q::DataDir(..) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            return error(status, e.to_string());
        }
    };
    let bytes = match crate::query::encode_output(&out, format) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    ([(header::CONTENT_TYPE, content_type)], bytes).into_response()
}
