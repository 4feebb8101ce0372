//! Liveness, readiness and the alerts view the HTTP endpoints serve.

use std::sync::atomic::{AtomicBool, AtomicI64};
use std::sync::Arc;

/// Liveness and readiness, shared with the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Health {
    /// Partitions are assigned and the loop is consuming.
    pub ready: AtomicBool,
    /// Wall clock (ms) of the last run-loop turn; `/healthz` fails when it goes stale.
    pub last_loop_ms: AtomicI64,
    /// Set once shutdown has begun.
    pub draining: AtomicBool,
    /// Alert instances as of the last evaluation, for `GET /api/v1/alerts`.
    pub alerts: std::sync::RwLock<AlertsView>,
    /// Rollout analyses as of the last window tick, for `GET /api/v1/analyses`.
    pub analyses: std::sync::RwLock<Vec<crate::detect::analysis::AnalysisReport>>,
    /// The delivery stage, when channels are configured (silences and outbox API).
    pub notify: std::sync::OnceLock<Arc<crate::notify::service::Shared>>,
}

/// What `GET /api/v1/alerts` shows.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AlertsView {
    /// Detection runs (rules loaded).
    pub enabled: bool,
    pub rules: usize,
    /// Last evaluated tick of window rules / slice rules (ms since the epoch).
    pub evaluated_window_ms: Option<i64>,
    pub evaluated_slice_ms: Option<i64>,
    pub alerts: Vec<crate::detect::alerts::Alert>,
    /// Circuit breakers (every one that ever opened since the state was created).
    pub breakers: Vec<crate::detect::breaker::Breaker>,
}

impl Health {
    pub fn publish_alerts(&self, d: &crate::detect::detector::Detector) {
        let (w, s) = d.evaluated_through();
        let view = AlertsView {
            enabled: true,
            rules: d.rules().rules.len(),
            evaluated_window_ms: w,
            evaluated_slice_ms: s,
            // Like Prometheus: pending and firing, plus recently resolved for context.
            alerts: d
                .alerts()
                .into_iter()
                .filter(|a| a.state != crate::detect::alerts::AlertState::Inactive)
                .collect(),
            breakers: d.breakers().iter().cloned().collect(),
        };
        *self.alerts.write().unwrap_or_else(|e| e.into_inner()) = view;
        *self.analyses.write().unwrap_or_else(|e| e.into_inner()) = d.analyses().reports();
    }
}
