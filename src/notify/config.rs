//! `[notify]`: channels, routes, grouping, silences and retries.
//!
//! ```toml
//! [notify.channels.oncall]
//! type = "pagerduty"
//! routing_key_env = "PAGERDUTY_ROUTING_KEY"
//!
//! [notify.channels.team-mail]
//! type = "email"
//! smtp_host = "smtp.example.com"
//! from = "driftwatch@example.com"
//! to = ["llm-oncall@example.com"]
//!
//! [[notify.routes]]
//! matchers = ['severity="page"']
//! channels = ["oncall"]
//! ```
//!
//! Secrets never live in the file: each channel names the environment variable that holds
//! its secret (`secret_env`, `routing_key_env`, `password_env`), and header values may use
//! `${VAR}`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::silence::Matcher;
use crate::section::{invalid, ConfigError};

/// `[notify]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Deliver notifications. Default `true` (with no channels nothing is sent).
    pub enabled: bool,
    /// Outbox directory. Default `<storage.data_dir>/state/outbox`.
    pub outbox_dir: Option<PathBuf>,
    /// Link to this driftwatch in notifications (`externalURL` of Alertmanager payloads).
    /// Default `http://<http.listen>`.
    pub external_url: Option<String>,
    /// Named channels.
    pub channels: BTreeMap<String, ChannelConfig>,
    /// Routes, tried in order; the first that matches decides (unless it says `continue`).
    pub routes: Vec<RouteConfig>,
    /// Channels for alerts no route matches (in addition to the rule's own `channels`).
    /// Default none.
    pub default_channels: Vec<String>,
    /// Labels alerts are grouped by into one notification. Default `["alertname"]`: an
    /// incident of one rule across 50 series is one notification.
    pub group_by: Vec<String>,
    /// Wait this long after a group's first alert before notifying, to collect the rest.
    /// Default `30s`.
    #[serde(with = "humantime_serde")]
    pub group_wait: Duration,
    /// Wait this long between notifications about changes in a group. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub group_interval: Duration,
    /// Re-send a group that is still firing, unchanged, this often. Default `4h`.
    #[serde(with = "humantime_serde")]
    pub repeat_interval: Duration,
    /// Silences from the configuration (more come from `POST /api/v1/silences`).
    pub silences: Vec<SilenceConfig>,
    /// Retry timing of the outbox.
    pub retry: RetryConfig,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            outbox_dir: None,
            external_url: None,
            channels: BTreeMap::new(),
            routes: Vec::new(),
            default_channels: Vec::new(),
            group_by: vec!["alertname".to_string()],
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
            silences: Vec::new(),
            retry: RetryConfig::default(),
        }
    }
}

/// How the outbox retries.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// First backoff (full jitter up to it). Default `1s`.
    #[serde(with = "humantime_serde")]
    pub base: Duration,
    /// Longest backoff. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub max: Duration,
    /// A receiver's `Retry-After` is honoured up to this. Default `10m`.
    #[serde(with = "humantime_serde")]
    pub max_retry_after: Duration,
    /// Per-request timeout, connect included. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Give up (move to `dead/`) after this long. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub give_up_after: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            max: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(600),
            timeout: Duration::from_secs(10),
            give_up_after: Duration::from_secs(86_400),
        }
    }
}

/// A per-channel token bucket: at most `per_minute` notifications a minute on average,
/// `burst` at once. Notifications over the limit wait in the outbox; none is dropped.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_minute: f64,
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_burst() -> u32 {
    10
}

/// Webhook payload shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WebhookFormat {
    /// driftwatch's own JSON (documented in docs/alerting.md).
    #[default]
    Driftwatch,
    /// Alertmanager's webhook payload, version "4".
    Alertmanager,
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain connection upgraded with STARTTLS (required). Port 587 by default.
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS). Port 465 by default.
    Tls,
    /// No encryption (a relay on localhost). Port 25 by default.
    None,
}

/// One channel.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChannelConfig {
    Webhook {
        url: String,
        /// `driftwatch` (default) or `alertmanager`.
        #[serde(default)]
        format: WebhookFormat,
        /// Environment variable with the Standard Webhooks secret(s) (`whsec_…`, several
        /// separated by spaces during a rotation). Unset: requests are not signed.
        #[serde(default)]
        secret_env: Option<String>,
        /// Extra headers; `${VAR}` in a value is replaced from the environment.
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// Send resolved alerts too. Default `true`.
        #[serde(default = "yes")]
        send_resolved: bool,
        /// Breaker and analysis channels: body templates for `fallback`, `restore` and
        /// `rollback` (replacing the driftwatch JSON; `{{primary_model}}`,
        /// `{{fallback_model}}`, `{{breaker}}`, `{{state}}`, `{{at}}` — for `rollback`
        /// `{{analysis}}`, `{{service}}`, `{{candidate}}`, `{{baseline}}`, `{{run_id}}`,
        /// `{{at}}` — are filled in, JSON-escaped).
        #[serde(default)]
        templates: BTreeMap<String, String>,
        #[serde(default)]
        rate_limit: Option<RateLimit>,
    },
    Pagerduty {
        /// Events API v2 endpoint. Default `https://events.pagerduty.com/v2/enqueue` (EU:
        /// `https://events.eu.pagerduty.com/v2/enqueue`).
        #[serde(default = "pagerduty_url")]
        url: String,
        /// Environment variable with the integration's routing key.
        routing_key_env: String,
        /// `payload.source`. Default the host name.
        #[serde(default)]
        source: Option<String>,
        #[serde(default = "yes")]
        send_resolved: bool,
        #[serde(default)]
        rate_limit: Option<RateLimit>,
    },
    Email {
        smtp_host: String,
        /// Default by `tls`: 587 (starttls), 465 (tls), 25 (none).
        #[serde(default)]
        smtp_port: Option<u16>,
        #[serde(default)]
        tls: SmtpTls,
        /// PEM file of an extra CA to trust (a private relay).
        #[serde(default)]
        ca_file: Option<PathBuf>,
        /// Environment variables with the SMTP login; unset: no AUTH.
        #[serde(default)]
        username_env: Option<String>,
        #[serde(default)]
        password_env: Option<String>,
        from: String,
        to: Vec<String>,
        /// Mail when a group resolves too. Default `false`.
        #[serde(default)]
        send_resolved: bool,
        #[serde(default)]
        rate_limit: Option<RateLimit>,
    },
}

fn yes() -> bool {
    true
}

fn pagerduty_url() -> String {
    "https://events.pagerduty.com/v2/enqueue".to_string()
}

impl ChannelConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            ChannelConfig::Webhook { .. } => "webhook",
            ChannelConfig::Pagerduty { .. } => "pagerduty",
            ChannelConfig::Email { .. } => "email",
        }
    }

    pub fn rate_limit(&self) -> Option<RateLimit> {
        match self {
            ChannelConfig::Webhook { rate_limit, .. }
            | ChannelConfig::Pagerduty { rate_limit, .. }
            | ChannelConfig::Email { rate_limit, .. } => *rate_limit,
        }
    }

    pub fn send_resolved(&self) -> bool {
        match self {
            ChannelConfig::Webhook { send_resolved, .. }
            | ChannelConfig::Pagerduty { send_resolved, .. }
            | ChannelConfig::Email { send_resolved, .. } => *send_resolved,
        }
    }
}

/// One route.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// All must match: `name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"`
    /// over the alert's labels (`alertname`, `severity`, series labels, rule labels).
    #[serde(default)]
    pub matchers: Vec<String>,
    pub channels: Vec<String>,
    /// Keep trying the next routes after this one matched. Default `false`.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Override the `[notify]` grouping and timing for this route.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default, with = "humantime_serde")]
    pub group_wait: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub group_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub repeat_interval: Option<Duration>,
}

/// A silence from the configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SilenceConfig {
    pub matchers: Vec<String>,
    /// RFC 3339; default: always.
    #[serde(default)]
    pub starts_at: Option<String>,
    #[serde(default)]
    pub ends_at: Option<String>,
    #[serde(default)]
    pub comment: String,
    #[serde(default)]
    pub created_by: String,
}

/// Parses an RFC 3339 time to ms.
pub fn parse_time(field: &str, v: &str) -> Result<i64, ConfigError> {
    chrono::DateTime::parse_from_rfc3339(v)
        .map(|t| t.timestamp_millis())
        .map_err(|e| {
            invalid(
                field,
                format!("{v:?} is not an RFC 3339 time ({e}), e.g. 2026-11-28T09:00:00Z"),
            )
        })
}

/// Expands `${VAR}` from `env`.
pub fn expand_env(v: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = v;
    while let Some(i) = rest.find("${") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(j) = after.find('}') else {
            return Err(format!("unclosed `${{` in {v:?}"));
        };
        let name = &after[..j];
        match env(name) {
            Some(val) => out.push_str(&val),
            None => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[j + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl NotifyConfig {
    /// Checks names, URLs, matchers and times; `rule_channels` are the channel names rules
    /// use (an unknown one is an error only when channels are configured at all).
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, c) in &self.channels {
            let field = |k: &str| format!("notify.channels.{name}.{k}");
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
            {
                return Err(invalid(
                    &format!("notify.channels.{name:?}"),
                    "channel names use letters, digits, `-` and `_`",
                ));
            }
            let check_url = |k: &str, u: &str| -> Result<(), ConfigError> {
                match reqwest::Url::parse(u) {
                    Ok(p) if matches!(p.scheme(), "http" | "https") => Ok(()),
                    Ok(_) => Err(invalid(&field(k), format!("{u:?} is not an http(s) URL"))),
                    Err(e) => Err(invalid(&field(k), format!("{u:?}: {e}"))),
                }
            };
            if let Some(r) = c.rate_limit() {
                if !(r.per_minute.is_finite() && r.per_minute > 0.0) || r.burst == 0 {
                    return Err(invalid(
                        &field("rate_limit"),
                        "per_minute must be > 0 and burst ≥ 1",
                    ));
                }
            }
            match c {
                ChannelConfig::Webhook { url, templates, .. } => {
                    check_url("url", url)?;
                    for k in templates.keys() {
                        if !matches!(k.as_str(), "fallback" | "restore" | "rollback") {
                            return Err(invalid(
                                &field("templates"),
                                format!("{k:?}: templates exist for `fallback`, `restore` and `rollback`"),
                            ));
                        }
                    }
                }
                ChannelConfig::Pagerduty {
                    url,
                    routing_key_env,
                    ..
                } => {
                    check_url("url", url)?;
                    if routing_key_env.trim().is_empty() {
                        return Err(invalid(
                            &field("routing_key_env"),
                            "name the environment variable holding the routing key",
                        ));
                    }
                }
                ChannelConfig::Email {
                    smtp_host,
                    from,
                    to,
                    username_env,
                    password_env,
                    ..
                } => {
                    if smtp_host.trim().is_empty() {
                        return Err(invalid(&field("smtp_host"), "must not be empty"));
                    }
                    if from.parse::<lettre::message::Mailbox>().is_err() {
                        return Err(invalid(
                            &field("from"),
                            format!("{from:?} is not a mail address"),
                        ));
                    }
                    if to.is_empty() {
                        return Err(invalid(&field("to"), "list at least one recipient"));
                    }
                    for t in to {
                        if t.parse::<lettre::message::Mailbox>().is_err() {
                            return Err(invalid(
                                &field("to"),
                                format!("{t:?} is not a mail address"),
                            ));
                        }
                    }
                    if username_env.is_some() != password_env.is_some() {
                        return Err(invalid(
                            &field("username_env"),
                            "set both username_env and password_env, or neither",
                        ));
                    }
                }
            }
        }
        let known = |field: &str, names: &[String]| -> Result<(), ConfigError> {
            for n in names {
                if !self.channels.contains_key(n) {
                    return Err(invalid(
                        field,
                        format!(
                            "channel {n:?} is not defined; define [notify.channels.{n}] or remove it (defined: {})",
                            self.channels.keys().cloned().collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
            }
            Ok(())
        };
        known("notify.default_channels", &self.default_channels)?;
        for (i, r) in self.routes.iter().enumerate() {
            known(&format!("notify.routes[{i}].channels"), &r.channels)?;
            for m in &r.matchers {
                Matcher::parse(m)
                    .map_err(|e| invalid(&format!("notify.routes[{i}].matchers"), e))?;
            }
            if r.group_interval.is_some_and(|d| d.is_zero()) {
                return Err(invalid(
                    &format!("notify.routes[{i}].group_interval"),
                    "must be greater than 0",
                ));
            }
        }
        if self.group_interval.is_zero() || self.repeat_interval.is_zero() {
            return Err(invalid(
                "notify.group_interval",
                "group_interval and repeat_interval must be greater than 0",
            ));
        }
        for (i, s) in self.silences.iter().enumerate() {
            let f = format!("notify.silences[{i}]");
            if s.matchers.is_empty() {
                return Err(invalid(
                    &format!("{f}.matchers"),
                    "a silence needs at least one matcher",
                ));
            }
            for m in &s.matchers {
                Matcher::parse(m).map_err(|e| invalid(&format!("{f}.matchers"), e))?;
            }
            let start = s
                .starts_at
                .as_deref()
                .map(|v| parse_time(&format!("{f}.starts_at"), v))
                .transpose()?;
            let end = s
                .ends_at
                .as_deref()
                .map(|v| parse_time(&format!("{f}.ends_at"), v))
                .transpose()?;
            if let (Some(a), Some(b)) = (start, end) {
                if b <= a {
                    return Err(invalid(&format!("{f}.ends_at"), "must be after starts_at"));
                }
            }
        }
        if let Some(u) = &self.external_url {
            reqwest::Url::parse(u)
                .map_err(|e| invalid("notify.external_url", format!("{u:?}: {e}")))?;
        }
        if self.retry.base.is_zero() || self.retry.max < self.retry.base {
            return Err(invalid(
                "notify.retry.base",
                "must be > 0 and at most notify.retry.max",
            ));
        }
        if self.retry.timeout.is_zero() {
            return Err(invalid("notify.retry.timeout", "must be greater than 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NotifyConfig, String> {
        toml::from_str::<NotifyConfig>(text).map_err(|e| e.to_string())
    }

    #[test]
    fn channels_parse_by_type_and_refuse_unknown_keys() {
        let c = parse(
            r#"
[channels.hook]
type = "webhook"
url = "http://127.0.0.1:9/x"
format = "alertmanager"
secret_env = "HOOK_SECRET"
[channels.pd]
type = "pagerduty"
routing_key_env = "PD_KEY"
[channels.mail]
type = "email"
smtp_host = "127.0.0.1"
tls = "none"
from = "dw@example.com"
to = ["oncall@example.com"]
[[routes]]
matchers = ['severity="page"']
channels = ["pd"]
"#,
        )
        .unwrap();
        c.validate().unwrap();
        assert_eq!(c.channels["hook"].kind(), "webhook");
        assert!(matches!(
            &c.channels["pd"],
            ChannelConfig::Pagerduty { url, .. } if url == "https://events.pagerduty.com/v2/enqueue"
        ));
        let e = parse("[channels.x]\ntype = \"webhook\"\nurl = \"http://a\"\nsecret = \"s\"\n")
            .unwrap_err();
        assert!(e.contains("unknown field `secret`"), "{e}");
        let e = parse("[channels.x]\ntype = \"sms\"\n").unwrap_err();
        assert!(e.contains("unknown variant `sms`"), "{e}");
    }

    #[test]
    fn validation_names_the_field() {
        let bad = |text: &str, field: &str| {
            let e = parse(text).unwrap().validate().unwrap_err().to_string();
            assert!(e.contains(field), "{e}");
        };
        bad(
            "[[routes]]\nchannels = [\"nope\"]\n",
            "notify.routes[0].channels",
        );
        bad(
            "[channels.h]\ntype = \"webhook\"\nurl = \"ftp://x\"\n",
            "notify.channels.h.url",
        );
        bad(
            "[[silences]]\nmatchers = ['rule=~\"(\"']\n",
            "notify.silences[0].matchers",
        );
        bad(
            "[[silences]]\nmatchers = ['a=\"b\"']\nends_at = \"tomorrow\"\n",
            "notify.silences[0].ends_at",
        );
        bad(
            "[channels.m]\ntype = \"email\"\nsmtp_host = \"h\"\nfrom = \"not an address\"\nto = [\"a@b.c\"]\n",
            "notify.channels.m.from",
        );
    }

    #[test]
    fn env_expansion() {
        let env = |k: &str| (k == "TOKEN").then(|| "s3cret".to_string());
        assert_eq!(
            expand_env("Bearer ${TOKEN}", &env).unwrap(),
            "Bearer s3cret"
        );
        assert!(expand_env("${MISSING}", &env)
            .unwrap_err()
            .contains("MISSING"));
    }
}
