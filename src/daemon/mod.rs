//! The composition root: the only code that knows every stage.
//!
//! [`run`] wires the daemon: the HTTP endpoints ([`http`]: health, metrics, alerts,
//! silences, SQL) beside the [`ingest`] loop, which builds the stages — source, the
//! synchronous [`pipeline`] (decode → windows → detector), storage's committer with
//! delivery's inbox behind its hook, the notifier and the compactor — and drives them until
//! shutdown. [`detection`] sets up the detector from rules and stored history (also for
//! `backtest`), [`generate`] writes synthetic history without Kafka, and [`demo`] runs the
//! whole thing on an embedded broker.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Config;

pub mod analyze;
pub mod demo;
pub mod detection;
pub mod gate;
pub mod generate;
pub mod health;
pub mod http;
pub mod incident;
pub mod ingest;
pub mod pipeline;
pub mod registry;
pub mod replay;

/// `driftwatch run`: serves HTTP and consumes until `shutdown` resolves, then drains.
pub async fn run(
    config: Config,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    let (metrics, registry) = crate::metrics::Metrics::new();
    let health = Arc::new(health::Health::default());
    let addr: SocketAddr = config.http.listen.parse()?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let token = match &config.http.api_token_env {
        None => None,
        Some(var) => Some(std::env::var(var).ok().filter(|t| !t.is_empty()).ok_or_else(|| {
            anyhow::anyhow!(
                "http.api_token_env: environment variable {var} is not set; export the token or remove the setting"
            )
        })?),
    };
    let query = config.query.enabled.then(|| http::QueryApi {
        data_dir: config.storage.data_dir.clone(),
        labels: config
            .series
            .parsed_labels()
            .map(|l| l.iter().map(|l| l.as_str()).collect())
            .unwrap_or_default(),
        limits: config.query.limits(),
    });
    let (bound, server) = http::serve(addr, registry, health.clone(), token, query, async {
        let _ = http_stopped.await;
    })
    .await
    .map_err(|e| anyhow::anyhow!("binding http.listen {addr}: {e}"))?;
    tracing::info!(%bound, "serving /healthz /readyz /metrics /api/v1/alerts /api/v1/breakers /api/v1/silences");
    let report = ingest::run(
        &config,
        metrics,
        health,
        shutdown,
        ingest::RunOptions::daemon(),
    )
    .await?;
    let _ = stop_http.send(());
    let _ = server.await;
    tracing::info!(
        messages = report.pipeline.messages,
        events = report.pipeline.requests,
        windows = report.windows.windows_closed,
        "stopped cleanly"
    );
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: draining"),
        _ = term => tracing::info!("SIGTERM: draining"),
    }
}
