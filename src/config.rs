//! Configuration: one TOML file, every key overridable from the environment.
//!
//! The structs below are their own documentation: every field has a documented default,
//! unknown keys are refused, and [`Config::validate`] names the offending field and the fix.
//!
//! Environment overrides: `DRIFTWATCH_<SECTION>__<KEY>` sets `<section>.<key>`, e.g.
//! `DRIFTWATCH_KAFKA__BOOTSTRAP_SERVERS=broker:9092` or `DRIFTWATCH_WINDOWS__WIDTH=30s`.
//! Values are read as TOML when they parse as a TOML value (`["a","b"]`, `42`, `true`) and as a
//! plain string otherwise. Inside the `librdkafka` maps, underscores become dots:
//! `DRIFTWATCH_KAFKA__LIBRDKAFKA__SASL_PASSWORD` sets `kafka.librdkafka."sasl.password"` —
//! the way to keep secrets out of the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::SeriesLabel;

/// Prefix of environment variables that override config keys.
pub const ENV_PREFIX: &str = "DRIFTWATCH_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    #[error("config field `{field}`: {message}")]
    Invalid { field: String, message: String },
}

fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub kafka: KafkaConfig,
    pub series: SeriesConfig,
    pub windows: WindowsConfig,
    pub limits: LimitsConfig,
    pub storage: StorageConfig,
    pub http: HttpConfig,
    pub scores: ScoresConfig,
    /// Prices per model (`request_model` or `response_model`), used when an event has no
    /// `cost_usd`. Keys are model names.
    pub prices: BTreeMap<String, ModelPrice>,
    pub produce: ProduceConfig,
    pub detection: DetectionConfig,
    /// Alert delivery: channels, routes, grouping, silences, retries.
    pub notify: crate::notify::config::NotifyConfig,
    /// The fallback circuit breaker.
    pub breaker: crate::breaker::BreakerConfig,
    /// SQL over the history (`driftwatch query`, `POST /api/v1/query`).
    pub query: QueryConfig,
}

/// Limits of `POST /api/v1/query` and `driftwatch query`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Serve `POST /api/v1/query`. Default `true`.
    pub enabled: bool,
    /// Most rows a result may have. Default `100000`.
    pub max_rows: usize,
    /// Most bytes (in memory, Arrow) a result may have. Default `67108864` (64 MiB).
    pub max_bytes: usize,
    /// Longest a query may run. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_rows: 100_000,
            max_bytes: 64 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

impl QueryConfig {
    pub fn limits(&self) -> crate::query::Limits {
        crate::query::Limits {
            max_rows: self.max_rows,
            max_bytes: self.max_bytes,
            timeout: self.timeout,
        }
    }
}

/// Kafka client settings shared by `run` (consumer) and `produce` (producer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list. Default `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// Topics to consume. Default `["llm-logs"]`.
    pub topics: Vec<String>,
    /// Consumer group id. Default `driftwatch`.
    pub group_id: String,
    /// Where a group with no committed offset starts: `earliest` or `latest`. Default `earliest`.
    pub auto_offset_reset: String,
    /// How often librdkafka emits statistics (consumer lag). Default `5s`.
    #[serde(with = "humantime_serde")]
    pub statistics_interval: Duration,
    /// Raw librdkafka client options, applied last (SASL, SSL, timeouts, ...), e.g.
    /// `"security.protocol" = "SASL_SSL"`. See librdkafka's CONFIGURATION.md. Numbers and
    /// booleans are accepted and passed as their text.
    #[serde(deserialize_with = "client_options")]
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topics: vec!["llm-logs".into()],
            group_id: "driftwatch".into(),
            auto_offset_reset: "earliest".into(),
            statistics_interval: Duration::from_secs(5),
            librdkafka: BTreeMap::new(),
        }
    }
}

/// How events are grouped into series.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesConfig {
    /// Event fields whose values form the series key.
    /// Default `["service", "request_model", "prompt_version", "deployment"]`.
    pub labels: Vec<String>,
    /// Cap on series with an open window; events of further series go to one overflow series
    /// (every label `__overflow__`) and are counted. Default 10000.
    pub max_active: usize,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        Self {
            labels: ["service", "request_model", "prompt_version", "deployment"]
                .map(String::from)
                .to_vec(),
            max_active: 10_000,
        }
    }
}

impl SeriesConfig {
    /// The validated label list.
    pub fn parsed_labels(&self) -> Result<Vec<SeriesLabel>, ConfigError> {
        let mut out = Vec::with_capacity(self.labels.len());
        for l in &self.labels {
            let label = SeriesLabel::parse(l).ok_or_else(|| {
                let known: Vec<_> = SeriesLabel::ALL.iter().map(|l| l.as_str()).collect();
                invalid(
                    "series.labels",
                    format!("unknown label {l:?}; use one of {}", known.join(", ")),
                )
            })?;
            if out.contains(&label) {
                return Err(invalid(
                    "series.labels",
                    format!("label {l:?} is listed twice"),
                ));
            }
            out.push(label);
        }
        Ok(out)
    }
}

/// Default `detection.rules_dir`; when it does not exist the built-in copy of the shipped
/// rules is used.
pub const DEFAULT_RULES_DIR: &str = "rules";

/// Rules, alert lifecycle and the detector's memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// Run the rules. Default `true`.
    pub enabled: bool,
    /// Directory of rule files (`*.yaml`), reloaded on SIGHUP. Default `rules`.
    pub rules_dir: PathBuf,
    /// Windows younger than this stay at window resolution in the detector's memory; older
    /// ones are rolled up into hours. Default `2h`.
    #[serde(with = "humantime_serde")]
    pub fine_history: Duration,
    /// A firing alert whose series sends no data for this long resolves. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// Resolved alerts stay visible in `GET /api/v1/alerts` this long. Default `15m`.
    #[serde(with = "humantime_serde")]
    pub keep_resolved: Duration,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rules_dir: PathBuf::from(DEFAULT_RULES_DIR),
            fine_history: Duration::from_secs(2 * 3600),
            stale_after: Duration::from_secs(3600),
            keep_resolved: Duration::from_secs(15 * 60),
        }
    }
}

impl DetectionConfig {
    /// The detector settings for windows of `windows`.
    pub fn settings(&self, windows: &WindowsConfig) -> crate::detector::DetectorSettings {
        crate::detector::DetectorSettings {
            window_ms: windows.width.as_millis() as i64,
            slice_ms: windows.slice.as_millis() as i64,
            fine_history_ms: self.fine_history.as_millis() as i64,
            lifecycle: crate::alerts::Lifecycle {
                stale_after_ms: self.stale_after.as_millis() as i64,
                forget_after_ms: self.keep_resolved.as_millis() as i64,
            },
        }
    }
}

/// Event-time tumbling windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// Window width. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub width: Duration,
    /// How far behind the newest event time a window stays open for late events. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A partition with no event for this long no longer holds the watermark back, and when
    /// every partition is idle the watermark advances with the wall clock. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Width of the fast error-count slices inside a window, for rules that must react
    /// faster than a window closes (the circuit breaker). Must divide `width`. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub slice: Duration,
    /// How far behind the newest event time a slice stays open. Events arriving later still
    /// count in their window, not in the slice. At most `allowed_lateness`. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub slice_lateness: Duration,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        Self {
            width: Duration::from_secs(60),
            allowed_lateness: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10),
            slice: Duration::from_secs(10),
            slice_lateness: Duration::from_secs(5),
        }
    }
}

/// Bounds beyond which an input is refused as absurd and quarantined.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest message accepted, in bytes. Default 262144 (256 KiB).
    pub max_message_bytes: usize,
    /// Largest `latency_ms` / `ttft_ms`. Default 3600000 (1 h).
    pub max_latency_ms: f64,
    /// Largest token count in any `*_tokens` field. Default 10000000.
    pub max_tokens: u64,
    /// Largest `cost_usd` of one call. Default 1000.
    pub max_cost_usd: f64,
    /// How far ahead of the wall clock an event time may be. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Most judge scores in one event. Default 32.
    pub max_judge_scores: usize,
    /// Longest string field, in bytes. Default 1024.
    pub max_string_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 * 1024,
            max_latency_ms: 3_600_000.0,
            max_tokens: 10_000_000,
            max_cost_usd: 1000.0,
            max_future_skew: Duration::from_secs(300),
            max_judge_scores: 32,
            max_string_bytes: 1024,
        }
    }
}

/// Where and how Parquet is written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Root of the `events/`, `windows/` and `quarantine/` tables. Default `./driftwatch-data`.
    pub data_dir: PathBuf,
    /// Buffered event rows that trigger a flush of the `events` table. Default 100000.
    pub flush_rows: usize,
    /// Longest time an event stays buffered before it is written. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// zstd level for every table (1-22). Default 3.
    pub zstd_level: i32,
    /// Rewriting each closed hour's many small files as one (`[storage.compaction]`).
    pub compaction: crate::compact::CompactionConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./driftwatch-data"),
            flush_rows: 100_000,
            flush_interval: Duration::from_secs(10),
            zstd_level: 3,
            compaction: Default::default(),
        }
    }
}

/// The health and metrics endpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of `/healthz`, `/readyz`, `/metrics` and the API. Default `127.0.0.1:9464`.
    pub listen: String,
    /// Environment variable holding a bearer token that changing requests (`POST` and
    /// `DELETE` of silences) must present. Unset (default): no token is asked for — keep
    /// `listen` on a private interface then.
    pub api_token_env: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
            api_token_env: None,
        }
    }
}

/// Late judge scores and feedback.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoresConfig {
    /// How many recent `response_id`s are remembered so that a late score can find the window
    /// of its request (about 100 bytes each). Default 200000.
    pub join_capacity: usize,
}

impl Default for ScoresConfig {
    fn default() -> Self {
        Self {
            join_capacity: 200_000,
        }
    }
}

/// USD per million tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Price of cached input tokens; defaults to `input_per_mtok`.
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
}

/// `driftwatch produce`: synthetic traffic for demos, tests and load.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProduceConfig {
    /// Topic to publish to. Default: the first of `kafka.topics`.
    pub topic: Option<String>,
    /// Request events to publish. Default 10000. Ignored when `duration` is set.
    pub events: u64,
    /// Events per second; 0 publishes as fast as the broker takes them. Default 0.
    pub rate: f64,
    /// Publish for this long at `rate` (events = rate × duration) instead of a fixed
    /// `events` count. Requires `rate` > 0. Default: unset.
    #[serde(with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// RNG seed; the same seed gives the same traffic. Default 42.
    pub seed: u64,
    /// Event time: `backfill` spreads the events over `span` ending now; `realtime` stamps each
    /// event with the wall clock when it is sent. Default `backfill`.
    pub event_time: EventTimeMode,
    /// Simulated time covered in `backfill` mode. Default `3h`.
    #[serde(with = "humantime_serde")]
    pub span: Duration,
    /// Inject a latency spike (P99 ×3 on one model). Default true.
    pub latency_spike: bool,
    /// Inject an error burst (20 % errors on one service). Default true.
    pub error_burst: bool,
    /// Inject a judge-score drop (−10 % after a prompt-version change). Default true.
    pub judge_drop: bool,
    /// Fraction of messages that are malformed, of every kind. Default 0.005.
    pub malformed_ratio: f64,
    /// Fraction of judge scores sent later as their own `score` message. Default 0.1.
    pub late_score_ratio: f64,
    /// Producer-only librdkafka options, applied after `kafka.librdkafka`.
    /// Default `{"linger.ms" = "0"}`.
    #[serde(deserialize_with = "client_options")]
    pub librdkafka: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EventTimeMode {
    Backfill,
    Realtime,
}

impl Default for ProduceConfig {
    fn default() -> Self {
        Self {
            topic: None,
            events: 10_000,
            rate: 0.0,
            duration: None,
            seed: 42,
            event_time: EventTimeMode::Backfill,
            span: Duration::from_secs(3 * 3600),
            latency_spike: true,
            error_burst: true,
            judge_drop: true,
            malformed_ratio: 0.005,
            late_score_ratio: 0.1,
            librdkafka: BTreeMap::from([("linger.ms".to_string(), "0".to_string())]),
        }
    }
}

impl Config {
    /// Reads `path`, applies environment overrides from the process environment, validates.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_and_env(&text, &path.display().to_string(), std::env::vars())
    }

    /// Defaults plus environment overrides, for commands run without a config file.
    pub fn from_env_only() -> Result<Config, ConfigError> {
        Self::from_toml_and_env("", "<defaults>", std::env::vars())
    }

    /// Parses `text` (named `origin` in errors), applies `env` overrides and validates.
    pub fn from_toml_and_env(
        text: &str,
        origin: &str,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        // First pass on the text alone: errors carry line, column and key.
        let parsed: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })?;
        let overrides = collect_env_overrides(env)?;
        let config = if overrides.is_empty() {
            parsed
        } else {
            let mut table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::Parse {
                path: origin.to_string(),
                message: e.to_string(),
            })?;
            for (var, path, value) in &overrides {
                set_path(&mut table, path, value.clone()).map_err(|message| ConfigError::Env {
                    var: var.clone(),
                    message,
                })?;
            }
            let de = toml::Value::Table(table);
            serde_path_to_error::deserialize::<_, Config>(de).map_err(|e| {
                let field = e.path().to_string();
                let var = overrides
                    .iter()
                    .find(|(_, p, _)| {
                        field.starts_with(&p.join(".")) || p.join(".").starts_with(&field)
                    })
                    .map(|(v, _, _)| v.clone())
                    .unwrap_or_else(|| "DRIFTWATCH_*".into());
                ConfigError::Env {
                    var,
                    message: format!("field `{field}`: {}", e.inner()),
                }
            })?
        };
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; the error names the field and what to do.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.notify.validate()?;
        let b = &self.breaker;
        if b.cooldown.is_zero() || b.max_cooldown < b.cooldown {
            return Err(invalid(
                "breaker.cooldown",
                "must be > 0 and at most breaker.max_cooldown",
            ));
        }
        for c in &b.channels {
            if let Some(ch) = self.notify.channels.get(c) {
                if ch.kind() != "webhook" {
                    return Err(invalid(
                        "breaker.channels",
                        format!("{c:?} is a {} channel; breakers call webhooks", ch.kind()),
                    ));
                }
            }
        }
        let k = &self.kafka;
        if k.bootstrap_servers.trim().is_empty() {
            return Err(invalid(
                "kafka.bootstrap_servers",
                "must not be empty; set it to host:port[,host:port]",
            ));
        }
        if k.topics.is_empty() || k.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid(
                "kafka.topics",
                "list at least one non-empty topic name",
            ));
        }
        if k.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "must not be empty"));
        }
        if !matches!(k.auto_offset_reset.as_str(), "earliest" | "latest") {
            return Err(invalid(
                "kafka.auto_offset_reset",
                format!("{:?} is not `earliest` or `latest`", k.auto_offset_reset),
            ));
        }
        for key in k.librdkafka.keys().chain(self.produce.librdkafka.keys()) {
            if matches!(
                key.as_str(),
                "enable.auto.offset.store" | "group.id" | "bootstrap.servers"
            ) {
                return Err(invalid(
                    &format!("kafka.librdkafka.\"{key}\""),
                    "is managed by driftwatch; use the dedicated field (kafka.group_id, kafka.bootstrap_servers) or remove it",
                ));
            }
        }
        self.series.parsed_labels()?;
        if self.series.labels.is_empty() {
            return Err(invalid(
                "series.labels",
                "list at least one label, e.g. [\"service\"]",
            ));
        }
        if self.series.max_active == 0 {
            return Err(invalid("series.max_active", "must be at least 1"));
        }
        let w = &self.windows;
        if w.width < Duration::from_secs(1) {
            return Err(invalid("windows.width", "must be at least 1s"));
        }
        if w.width.as_millis() > 86_400_000 || 86_400_000 % w.width.as_millis() != 0 {
            return Err(invalid(
                "windows.width",
                "must divide a day evenly (e.g. 10s, 1m, 5m, 1h)",
            ));
        }
        if w.slice < Duration::from_secs(1)
            || !w.width.as_millis().is_multiple_of(w.slice.as_millis())
        {
            return Err(invalid(
                "windows.slice",
                "must be at least 1s and divide windows.width evenly (e.g. 10s for 1m windows)",
            ));
        }
        if w.slice_lateness > w.allowed_lateness {
            return Err(invalid(
                "windows.slice_lateness",
                "must not exceed windows.allowed_lateness",
            ));
        }
        if w.idle_timeout.is_zero() {
            return Err(invalid("windows.idle_timeout", "must be greater than 0"));
        }
        let l = &self.limits;
        if l.max_message_bytes < 256 {
            return Err(invalid("limits.max_message_bytes", "must be at least 256"));
        }
        if !(l.max_latency_ms.is_finite() && l.max_latency_ms > 0.0) {
            return Err(invalid(
                "limits.max_latency_ms",
                "must be a positive number",
            ));
        }
        if l.max_latency_ms > 86_400_000.0 {
            return Err(invalid(
                "limits.max_latency_ms",
                "must be at most 86400000 (one day); histograms are sized from it",
            ));
        }
        if l.max_tokens == 0 || l.max_tokens > 1_000_000_000 {
            return Err(invalid(
                "limits.max_tokens",
                "must be between 1 and 1000000000",
            ));
        }
        if !(l.max_cost_usd.is_finite() && l.max_cost_usd > 0.0 && l.max_cost_usd <= 1_000_000.0) {
            return Err(invalid(
                "limits.max_cost_usd",
                "must be a positive number at most 1000000",
            ));
        }
        if self.storage.flush_rows == 0 {
            return Err(invalid("storage.flush_rows", "must be at least 1"));
        }
        if self.storage.flush_interval.is_zero() {
            return Err(invalid("storage.flush_interval", "must be greater than 0"));
        }
        if !(1..=22).contains(&self.storage.zstd_level) {
            return Err(invalid("storage.zstd_level", "must be between 1 and 22"));
        }
        if self.storage.data_dir.as_os_str().is_empty() {
            return Err(invalid("storage.data_dir", "must not be empty"));
        }
        self.http.listen.parse::<SocketAddr>().map_err(|e| {
            invalid(
                "http.listen",
                format!("{:?} is not an ip:port address ({e})", self.http.listen),
            )
        })?;
        for (model, p) in &self.prices {
            let ok = |v: f64| v.is_finite() && v >= 0.0;
            if !ok(p.input_per_mtok)
                || !ok(p.output_per_mtok)
                || !p.cached_input_per_mtok.is_none_or(ok)
            {
                return Err(invalid(
                    &format!("prices.\"{model}\""),
                    "prices must be finite and ≥ 0",
                ));
            }
        }
        let p = &self.produce;
        if !(p.rate.is_finite() && p.rate >= 0.0) {
            return Err(invalid(
                "produce.rate",
                "must be ≥ 0 (0 = as fast as possible)",
            ));
        }
        for (name, v) in [
            ("produce.malformed_ratio", p.malformed_ratio),
            ("produce.late_score_ratio", p.late_score_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(invalid(name, "must be between 0 and 1"));
            }
        }
        if p.duration.is_some() && p.rate <= 0.0 {
            return Err(invalid(
                "produce.duration",
                "needs produce.rate > 0 (events = rate × duration)",
            ));
        }
        if p.span.is_zero() {
            return Err(invalid("produce.span", "must be greater than 0"));
        }
        Ok(())
    }

    /// Request events `produce` publishes: `events`, or `rate × duration` when a duration is set.
    pub fn produce_events(&self) -> u64 {
        match self.produce.duration {
            Some(d) => (self.produce.rate * d.as_secs_f64()).ceil() as u64,
            None => self.produce.events,
        }
    }

    pub fn produce_topic(&self) -> &str {
        self.produce.topic.as_deref().unwrap_or_else(|| {
            self.kafka
                .topics
                .first()
                .map(String::as_str)
                .unwrap_or("llm-logs")
        })
    }
}

/// A librdkafka option map: values may be strings, numbers or booleans.
fn client_options<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Opt {
        S(String),
        I(i64),
        F(f64),
        B(bool),
    }
    let raw = BTreeMap::<String, Opt>::deserialize(d)?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Opt::S(s) => s,
                Opt::I(i) => i.to_string(),
                Opt::F(f) => f.to_string(),
                Opt::B(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

type EnvOverride = (String, Vec<String>, toml::Value);

fn collect_env_overrides(
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Vec<EnvOverride>, ConfigError> {
    let mut out = Vec::new();
    for (var, raw) in env {
        let Some(rest) = var.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        if !rest.contains("__") {
            continue; // a CLI flag variable such as DRIFTWATCH_CONFIG
        }
        let mut path: Vec<String> = rest.split("__").map(|s| s.to_ascii_lowercase()).collect();
        if path.iter().any(|p| p.is_empty()) {
            return Err(ConfigError::Env {
                var,
                message: "empty key segment; use DRIFTWATCH_<SECTION>__<KEY>".into(),
            });
        }
        // Keys of the raw librdkafka maps are dotted, and their values are text.
        let value = if path.len() == 3 && path[1] == "librdkafka" {
            path[2] = path[2].replace('_', ".");
            toml::Value::String(raw)
        } else {
            parse_env_value(&raw)
        };
        out.push((var, path, value));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(out)
}

fn parse_env_value(raw: &str) -> toml::Value {
    let doc = format!("v = {raw}");
    match toml::from_str::<toml::Table>(&doc) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_string())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().ok_or("empty path")?;
    let mut cur = table;
    for p in parents {
        let entry = cur
            .entry(p.clone())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        cur = entry
            .as_table_mut()
            .ok_or_else(|| format!("`{p}` is not a table in the config file"))?;
    }
    // A string value for a key whose file value is not a string: keep the string and let
    // deserialization report the type error with the field name.
    cur.insert(last.clone(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_toml_and_env(
            text,
            "test.toml",
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    #[test]
    fn defaults_are_valid() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.windows.width, Duration::from_secs(60));
        assert_eq!(c.series.labels.len(), 4);
        assert_eq!(c.produce_topic(), "llm-logs");
    }

    #[test]
    fn unknown_key_names_the_key_and_line() {
        let err = load(
            "[kafka]\nbootstrap_servers = \"x:1\"\ntopicz = [\"a\"]\n",
            &[],
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("topicz"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
    }

    #[test]
    fn invalid_value_names_the_field() {
        let err = load("[windows]\nwidth = \"7s\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("windows.width"), "{err}");
        let err = load("[series]\nlabels = [\"service\", \"colour\"]\n", &[]).unwrap_err();
        assert!(
            err.to_string().contains("series.labels") && err.to_string().contains("colour"),
            "{err}"
        );
        let err = load("[http]\nlisten = \"nowhere\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("http.listen"), "{err}");
        let err = load("[kafka.librdkafka]\n\"group.id\" = \"x\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("group.id"), "{err}");
    }

    #[test]
    fn env_overrides_every_kind_of_key() {
        let c = load(
            "[kafka]\nbootstrap_servers = \"file:1\"\n",
            &[
                ("DRIFTWATCH_KAFKA__BOOTSTRAP_SERVERS", "env:2"),
                ("DRIFTWATCH_KAFKA__TOPICS", "[\"a\", \"b\"]"),
                ("DRIFTWATCH_KAFKA__LIBRDKAFKA__SASL_PASSWORD", "s3cret"),
                ("DRIFTWATCH_KAFKA__LIBRDKAFKA__FETCH_WAIT_MAX_MS", "10"),
                ("DRIFTWATCH_WINDOWS__WIDTH", "30s"),
                ("DRIFTWATCH_SERIES__MAX_ACTIVE", "12"),
                ("DRIFTWATCH_CONFIG", "ignored.toml"),
                ("OTHER", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.kafka.bootstrap_servers, "env:2");
        assert_eq!(c.kafka.topics, vec!["a", "b"]);
        assert_eq!(
            c.kafka.librdkafka.get("sasl.password").map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(c.windows.width, Duration::from_secs(30));
        assert_eq!(c.series.max_active, 12);
    }

    #[test]
    fn produce_duration_sets_the_event_count_and_needs_a_rate() {
        let c = load("[produce]\nrate = 250.0\nduration = \"2m\"\n", &[]).unwrap();
        assert_eq!(c.produce_events(), 30_000);
        let err = load("[produce]\nduration = \"2m\"\n", &[]).unwrap_err();
        assert!(err.to_string().contains("produce.duration"), "{err}");
    }

    #[test]
    fn bad_env_override_names_the_variable() {
        let err = load("", &[("DRIFTWATCH_SERIES__MAX_ACTIVE", "lots")]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("DRIFTWATCH_SERIES__MAX_ACTIVE") && msg.contains("max_active"),
            "{msg}"
        );
        let err = load("", &[("DRIFTWATCH_KAFKA__NOPE", "1")]).unwrap_err();
        assert!(err.to_string().contains("DRIFTWATCH_KAFKA__NOPE"), "{err}");
    }
}
