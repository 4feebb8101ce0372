//! Prometheus metrics of the daemon. Hot-path counters are pre-created handles (one atomic
//! add each); families keyed by dynamic labels are touched only off the hot path.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

type Labels = Vec<(String, String)>;

/// Every metric driftwatch exports. Clones share the same counters.
#[derive(Clone)]
pub struct Metrics {
    pub messages_consumed: Counter,
    pub events_decoded_request: Counter,
    pub events_decoded_score: Counter,
    quarantined: Family<Labels, Counter>,
    pub late_events: Counter,
    pub windowed_events: Counter,
    pub scores_joined: Counter,
    pub scores_corrected: Counter,
    scores_unmatched: Family<Labels, Counter>,
    pub series_overflow_events: Counter,
    pub windows_closed: Counter,
    pub series_windows_closed: Counter,
    pub active_series: Gauge,
    pub open_sketches: Gauge,
    pub watermark_seconds: Gauge<f64, AtomicU64>,
    pub files_written: Family<Labels, Counter>,
    pub rows_written: Family<Labels, Counter>,
    pub sink_errors: Counter,
    pub offsets_stored: Counter,
    pub consumer_lag: Family<Labels, Gauge>,
    pub assigned_partitions: Gauge,
    pub skipped_replayed: Counter,
    pub kafka_errors: Counter,
    alert_transitions: Family<Labels, Counter>,
    pub alerts_firing: Gauge,
    pub alerts_pending: Gauge,
    pub detector_history_series: Gauge,
    /// Wall time spent evaluating rules, seconds.
    pub detector_seconds: Counter<f64, AtomicU64>,
    /// Notifications by channel and outcome (enqueued, delivered, retried, dead,
    /// rate_limited).
    pub notifications: Family<Labels, Counter>,
    /// Alerts left out of a notification because a silence matched.
    pub notifications_silenced: Counter,
    pub outbox_pending: Gauge,
    pub outbox_dead: Gauge,
    /// Per breaker: 0 closed, 1 half-open, 2 open.
    pub breaker_state: Family<Labels, Gauge>,
    breaker_transitions: Family<Labels, Counter>,
    /// Hours compacted and the files they had, by table.
    compacted_hours: Family<Labels, Counter>,
    compacted_files: Family<Labels, Counter>,
    pub compaction_errors: Counter,
    /// Models in the registry in use.
    pub registry_models: Gauge,
    /// Registry reloads that were refused (the previous registry stays in use).
    pub registry_reload_failures: Counter,
    /// Registry entry fields changed by reloads (rows of `registry_changes`).
    pub registry_changes: Counter,
}

impl Metrics {
    /// Creates the metrics and registers them in a new registry.
    /// Counter of transitions into `state`.
    pub fn alert_transitions(&self, state: &str) -> Counter {
        let c = self
            .alert_transitions
            .get_or_create(&vec![("to".to_string(), state.to_string())])
            .clone();
        c
    }

    /// Counts a notification outcome of `channel`.
    pub fn notification(&self, channel: &str, outcome: &str) {
        self.notifications
            .get_or_create(&vec![
                ("channel".to_string(), channel.to_string()),
                ("outcome".to_string(), outcome.to_string()),
            ])
            .inc();
    }

    /// Records a breaker transition into state `to` (`open`, `half_open`, `closed`; `gauge`
    /// its numeric form) and sets the breaker's state gauge.
    pub fn breaker_transition(&self, key: &str, primary: Option<&str>, to: &str, gauge: i64) {
        self.breaker_transitions
            .get_or_create(&vec![("to".to_string(), to.to_string())])
            .inc();
        self.set_breaker_state(key, primary, gauge);
    }

    /// Sets a breaker's state gauge: 0 closed, 1 half-open, 2 open.
    pub fn set_breaker_state(&self, key: &str, primary: Option<&str>, gauge: i64) {
        self.breaker_state
            .get_or_create(&vec![
                ("breaker".to_string(), key.to_string()),
                (
                    "primary_model".to_string(),
                    primary.unwrap_or("").to_string(),
                ),
            ])
            .set(gauge);
    }

    pub fn new() -> (Metrics, Registry) {
        let label = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        // Hot-path handles are taken out of the families once; they share the atomics.
        let decoded = Family::<Labels, Counter>::default();
        let quarantined = Family::<Labels, Counter>::default();
        // Each get_or_create guard must drop before the next call takes the write lock.
        let handle = |f: &Family<Labels, Counter>, k: &str, v: &str| -> Counter {
            let c = f.get_or_create(&label(k, v)).clone();
            c
        };
        let m = Metrics {
            messages_consumed: Counter::default(),
            events_decoded_request: handle(&decoded, "kind", "request"),
            events_decoded_score: handle(&decoded, "kind", "score"),
            quarantined: quarantined.clone(),
            late_events: Counter::default(),
            windowed_events: Counter::default(),
            scores_joined: Counter::default(),
            scores_corrected: Counter::default(),
            scores_unmatched: Family::default(),
            series_overflow_events: Counter::default(),
            windows_closed: Counter::default(),
            series_windows_closed: Counter::default(),
            active_series: Gauge::default(),
            open_sketches: Gauge::default(),
            watermark_seconds: Gauge::default(),
            files_written: Family::default(),
            rows_written: Family::default(),
            sink_errors: Counter::default(),
            offsets_stored: Counter::default(),
            consumer_lag: Family::default(),
            assigned_partitions: Gauge::default(),
            skipped_replayed: Counter::default(),
            kafka_errors: Counter::default(),
            alert_transitions: Family::default(),
            alerts_firing: Gauge::default(),
            alerts_pending: Gauge::default(),
            detector_history_series: Gauge::default(),
            detector_seconds: Counter::default(),
            notifications: Family::default(),
            notifications_silenced: Counter::default(),
            outbox_pending: Gauge::default(),
            outbox_dead: Gauge::default(),
            breaker_state: Family::default(),
            breaker_transitions: Family::default(),
            compacted_hours: Family::default(),
            compacted_files: Family::default(),
            compaction_errors: Counter::default(),
            registry_models: Gauge::default(),
            registry_reload_failures: Counter::default(),
            registry_changes: Counter::default(),
        };
        let mut r = Registry::with_prefix("driftwatch");
        r.register(
            "messages_consumed",
            "Kafka messages received",
            m.messages_consumed.clone(),
        );
        r.register(
            "events_decoded",
            "Messages decoded into valid events, by kind (request, score)",
            decoded,
        );
        r.register(
            "quarantined",
            "Messages refused and written to quarantine, by reason",
            quarantined,
        );
        r.register(
            "late_events",
            "Events whose window had already closed (written to events, not windowed)",
            m.late_events.clone(),
        );
        r.register(
            "windowed_events",
            "Events counted in a window",
            m.windowed_events.clone(),
        );
        r.register(
            "scores_joined",
            "Late scores and feedback joined to their request's window",
            m.scores_joined.clone(),
        );
        r.register(
            "scores_corrected",
            "Late scores and feedback of a window already written, written as correction rows",
            m.scores_corrected.clone(),
        );
        for reason in ["unknown_response", "expired"] {
            m.scores_unmatched(reason);
        }
        r.register(
            "scores_unmatched",
            "Late scores and feedback that joined no window, by reason (unknown_response: no recent request with that response_id; expired: its window closed more than scores.late_ttl ago)",
            m.scores_unmatched.clone(),
        );
        r.register(
            "series_overflow_events",
            "Events routed to the overflow series because series.max_active was reached",
            m.series_overflow_events.clone(),
        );
        r.register("windows_closed", "Windows closed", m.windows_closed.clone());
        r.register(
            "alert_transitions",
            "Alert state changes, by the state entered (pending, firing, resolved, inactive)",
            m.alert_transitions.clone(),
        );
        r.register(
            "alerts_firing",
            "Alert instances firing",
            m.alerts_firing.clone(),
        );
        r.register(
            "alerts_pending",
            "Alert instances pending",
            m.alerts_pending.clone(),
        );
        r.register(
            "detector_evaluation_seconds",
            "Wall time spent evaluating rules (on the ingest thread)",
            m.detector_seconds.clone(),
        );
        r.register(
            "detector_history_series",
            "Series in the detector's history",
            m.detector_history_series.clone(),
        );
        r.register(
            "series_windows_closed",
            "Series × window rows closed",
            m.series_windows_closed.clone(),
        );
        r.register(
            "active_series",
            "Series with an open window",
            m.active_series.clone(),
        );
        r.register(
            "open_sketches",
            "Open series × window sketches held in memory",
            m.open_sketches.clone(),
        );
        r.register(
            "watermark_seconds",
            "Event-time watermark, Unix seconds",
            m.watermark_seconds.clone(),
        );
        r.register(
            "parquet_files_written",
            "Parquet files committed, by table",
            m.files_written.clone(),
        );
        r.register(
            "parquet_rows_written",
            "Rows committed to Parquet, by table",
            m.rows_written.clone(),
        );
        r.register(
            "sink_errors",
            "Failed Parquet writes (retried)",
            m.sink_errors.clone(),
        );
        r.register(
            "offsets_stored",
            "Kafka offset stores after durable writes",
            m.offsets_stored.clone(),
        );
        r.register(
            "consumer_lag",
            "Messages behind the partition end, per topic and partition",
            m.consumer_lag.clone(),
        );
        r.register(
            "skipped_replayed",
            "Messages below a partition's checkpoint offset, skipped because the checkpoint already holds them",
            m.skipped_replayed.clone(),
        );
        r.register(
            "assigned_partitions",
            "Kafka partitions this instance owns (0 for a standby member of the group)",
            m.assigned_partitions.clone(),
        );
        r.register(
            "kafka_errors",
            "Errors reported by the Kafka client",
            m.kafka_errors.clone(),
        );
        r.register(
            "notifications",
            "Notifications by channel and outcome (enqueued, delivered, retried, dead, rate_limited)",
            m.notifications.clone(),
        );
        r.register(
            "notifications_silenced",
            "Alerts left out of notifications by a silence",
            m.notifications_silenced.clone(),
        );
        r.register(
            "outbox_pending",
            "Notifications waiting in the outbox",
            m.outbox_pending.clone(),
        );
        r.register(
            "outbox_dead",
            "Notifications given up on (outbox/dead)",
            m.outbox_dead.clone(),
        );
        r.register(
            "breaker_state",
            "Circuit breaker state per breaker: 0 closed, 1 half-open, 2 open",
            m.breaker_state.clone(),
        );
        r.register(
            "breaker_transitions",
            "Circuit breaker transitions, by the state entered (open, half_open, closed)",
            m.breaker_transitions.clone(),
        );
        r.register(
            "compacted_hours",
            "Hour partitions whose files were rewritten as one, by table",
            m.compacted_hours.clone(),
        );
        r.register(
            "compacted_files",
            "Files replaced by compaction, by table",
            m.compacted_files.clone(),
        );
        r.register(
            "compaction_errors",
            "Compaction passes that failed (the hour keeps its files)",
            m.compaction_errors.clone(),
        );
        r.register(
            "registry_models",
            "Models in the model registry in use",
            m.registry_models.clone(),
        );
        r.register(
            "registry_reload_failures",
            "Registry reloads refused (bad file; the previous registry stays in use)",
            m.registry_reload_failures.clone(),
        );
        r.register(
            "registry_changes",
            "Registry entry fields changed by a reload or a start with an edited file",
            m.registry_changes.clone(),
        );
        (m, r)
    }

    /// Messages quarantined for `reason` (decode's reason names). Calling it once per reason
    /// at start makes every reason show, at 0, before the first bad message.
    pub fn quarantined(&self, reason: &str) -> Counter {
        self.quarantined
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .clone()
    }

    /// Late scores that joined no window, by [`crate::window::state::ScoreMiss`] name.
    pub fn scores_unmatched(&self, reason: &str) -> Counter {
        self.scores_unmatched
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .clone()
    }

    /// An hour of `table` compacted from `files_in` files.
    pub fn record_compaction(&self, table: &str, files_in: usize) {
        let l = vec![("table".to_string(), table.to_string())];
        self.compacted_hours.get_or_create(&l).inc();
        self.compacted_files
            .get_or_create(&l)
            .inc_by(files_in as u64);
    }

    pub fn record_written(&self, table: &str, rows: usize) {
        let l = vec![("table".to_string(), table.to_string())];
        self.files_written.get_or_create(&l).inc();
        self.rows_written.get_or_create(&l).inc_by(rows as u64);
    }

    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        let l = vec![
            ("topic".to_string(), topic.to_string()),
            ("partition".to_string(), partition.to_string()),
        ];
        self.consumer_lag.get_or_create(&l).set(lag);
    }
}

/// Renders the registry in the Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, registry);
    out
}
