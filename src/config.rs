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
use std::path::Path;

use serde::{Deserialize, Serialize};

pub use crate::decode::{LimitsConfig, ModelPrice};
pub use crate::detect::breaker::BreakerConfig;
pub use crate::detect::detector::{DetectionConfig, DEFAULT_RULES_DIR};
pub use crate::notify::config::NotifyConfig;
pub use crate::query::QueryConfig;
pub use crate::section::{invalid, ConfigError, ENV_PREFIX};
pub use crate::source::kafka::KafkaConfig;
pub use crate::storage::StorageConfig;
pub use crate::traffic::synth::{EventTimeMode, ProduceConfig};
pub use crate::window::series::SeriesConfig;
pub use crate::window::state::{ScoresConfig, WindowsConfig};

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
    /// `cost_usd` and the model registry does not list its model. Keys are model names.
    pub prices: BTreeMap<String, ModelPrice>,
    /// The model registry file (`models.yaml`): prices with dates and tiers, deprecations,
    /// context windows, fallbacks.
    pub registry: crate::registry::RegistryConfig,
    /// Daily cost budgets in USD per `service` (UTC days), for the `budget_spend` and
    /// `budget_projection` signals. Default none.
    pub budgets: BTreeMap<String, f64>,
    pub produce: ProduceConfig,
    pub detection: DetectionConfig,
    /// Alert delivery: channels, routes, grouping, silences, retries.
    pub notify: crate::notify::config::NotifyConfig,
    /// The fallback circuit breaker.
    pub breaker: crate::detect::breaker::BreakerConfig,
    /// SQL over the history (`driftwatch query`, `POST /api/v1/query`).
    pub query: QueryConfig,
    /// Rollout analyses: canary vs stable, A/B variants vs control, shadow vs primary.
    /// Default none.
    pub analyses: Vec<crate::detect::analysis::AnalysisConfig>,
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
    /// Checks every section (in file order), then what spans sections.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.notify.validate()?;
        self.breaker.validate()?;
        for c in &self.breaker.channels {
            if let Some(ch) = self.notify.channels.get(c) {
                if ch.kind() != "webhook" {
                    return Err(invalid(
                        "breaker.channels",
                        format!("{c:?} is a {} channel; breakers call webhooks", ch.kind()),
                    ));
                }
            }
        }
        self.kafka.validate()?;
        crate::source::kafka::check_managed(self.produce.librdkafka.keys())?;
        self.series.validate()?;
        self.windows.validate()?;
        self.limits.validate()?;
        self.storage.validate()?;
        self.http.validate()?;
        for (model, p) in &self.prices {
            p.validate(model)?;
        }
        for (service, usd) in &self.budgets {
            if !(usd.is_finite() && *usd > 0.0) {
                return Err(invalid(
                    &format!("budgets.{service}"),
                    format!("{usd} is not a budget; write the day's budget in USD, e.g. {service} = 250.0"),
                ));
            }
        }
        let nc = self.registry.near_context;
        if !(nc > 0.0 && nc <= 1.0) {
            return Err(invalid(
                "registry.near_context",
                format!(
                    "{nc} is not a share of the context window; use a number in (0, 1], e.g. 0.9"
                ),
            ));
        }
        self.produce.validate()?;
        self.validate_analyses()?;
        Ok(())
    }

    fn validate_analyses(&self) -> Result<(), ConfigError> {
        let labels: Vec<&str> = self
            .series
            .parsed_labels()?
            .iter()
            .map(|l| l.as_str())
            .collect();
        let mut names = std::collections::BTreeSet::new();
        for (i, a) in self.analyses.iter().enumerate() {
            a.validate(i, &labels)
                .map_err(|e| invalid(&format!("analyses[{i}].{}", e.field), e.message))?;
            if !names.insert(a.name.as_str()) {
                return Err(invalid(
                    &format!("analyses[{i}].name"),
                    format!(
                        "{:?} names another analysis too; names are the API ids",
                        a.name
                    ),
                ));
            }
            for c in &a.rollback_channels {
                if let Some(ch) = self.notify.channels.get(c) {
                    if ch.kind() != "webhook" {
                        return Err(invalid(
                            &format!("analyses[{i}].rollback_channels"),
                            format!("{c:?} is a {} channel; rollbacks call webhooks", ch.kind()),
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn produce_events(&self) -> u64 {
        self.produce.events_to_send()
    }

    pub fn produce_topic(&self) -> &str {
        self.produce.topic_or(&self.kafka)
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

impl HttpConfig {
    /// Checks the section; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.listen.parse::<SocketAddr>().map_err(|e| {
            invalid(
                "http.listen",
                format!("{:?} is not an ip:port address ({e})", self.listen),
            )
        })?;
        Ok(())
    }
}

impl<'a> From<&'a Config> for crate::notify::service::Settings<'a> {
    fn from(c: &'a Config) -> Self {
        Self {
            notify: &c.notify,
            breaker: &c.breaker,
            http_listen: &c.http.listen,
        }
    }
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
    use std::time::Duration;

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
        assert_eq!(c.series.labels.len(), 6);
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
