//! What every config section shares: the error that names the offending field and the fix,
//! the environment-variable prefix, and the librdkafka option-map reader.
//!
//! Each stage owns its section (`source::kafka::KafkaConfig`, `window::state::WindowsConfig`,
//! `storage::StorageConfig`, …) and validates it; [`crate::config`] assembles them into the
//! one config file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

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

pub fn invalid(field: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.to_string(),
        message: message.into(),
    }
}

/// A librdkafka option map: values may be strings, numbers or booleans.
pub fn client_options<'de, D: serde::Deserializer<'de>>(
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
