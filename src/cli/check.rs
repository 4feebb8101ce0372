//! `driftwatch check`: validate the config and the rule files without starting anything;
//! every error names the file, line, rule and field (exit code 2).

use std::path::PathBuf;

use super::{load_or_default, Failure};
use crate::config::Config;

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Config file (TOML) [default: built-in defaults plus DRIFTWATCH_* variables].
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Rules directory [default: detection.rules_dir].
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Check this model registry file (`models.yaml`); alone, unless --config is given too
    /// [default: registry.file of the config].
    #[arg(long)]
    registry: Option<PathBuf>,
}

const EXAMPLES: &str = r#"Examples:
  driftwatch check
  driftwatch check --config driftwatch.toml --rules rules/
  driftwatch check --registry models.yaml      # the registry file alone"#;

pub async fn run(args: Args) -> Result<(), Failure> {
    let Args {
        config,
        rules,
        registry,
    } = args;
    // A registry file on its own: nothing else is read.
    let registry_file = match (&registry, &config) {
        (Some(r), None) => return check_registry(r).map(drop),
        (Some(r), Some(_)) => Some(r.clone()),
        (None, _) => None,
    };
    let c = load_or_default(config.as_deref())?;
    let registry = match registry_file.as_ref().or(c.registry.file.as_ref()) {
        Some(r) => Some(check_registry(r)?),
        None => None,
    };
    let name = config
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "defaults".into());
    let dir = rules.unwrap_or_else(|| c.detection.rules_dir.clone());
    let set =
        crate::daemon::detection::load_rules(&c, &dir).map_err(|e| Failure::Config(e.into()))?;
    println!(
        "{}: ok ({} rules in {} files)",
        dir.display(),
        set.rules.len(),
        set.files.len()
    );
    for r in &set.rules {
        println!(
            "  {:<28} {:<8} {} over {} every {}",
            r.name,
            r.severity.as_str(),
            r.signal.describe(),
            humantime::format_duration(std::time::Duration::from_millis(r.over_ms as u64)),
            humantime::format_duration(std::time::Duration::from_millis(r.every_ms as u64)),
        );
    }
    println!(
        "{}: ok (kafka {} topics {:?} group {}; series by {:?}; {} s windows; data in {})",
        name,
        c.kafka.bootstrap_servers,
        c.kafka.topics,
        c.kafka.group_id,
        c.series.labels,
        c.windows.width.as_secs(),
        c.storage.data_dir.display()
    );
    for line in notify_summary(&c, &set) {
        println!("{line}");
    }
    for line in fallback_warnings(&c, registry.as_ref()) {
        println!("{line}");
    }
    for line in analyses_summary(&c) {
        println!("{line}");
    }
    Ok(())
}

/// One line per analysis, and a warning for rollback channels that are not configured.
fn analyses_summary(c: &crate::config::Config) -> Vec<String> {
    use crate::detect::analysis::AnalysisKind;
    let mut out = Vec::new();
    for a in &c.analyses {
        let what = match a.kind {
            AnalysisKind::Canary => format!("deployment={} vs {}", a.candidate(), a.baseline()),
            AnalysisKind::Ab => format!("each variant vs {}", a.control()),
            AnalysisKind::Shadow => "deployment=shadow vs its primary, paired by trace_id".into(),
        };
        let metrics: Vec<&str> = a.metrics.iter().map(|m| m.metric.as_str()).collect();
        out.push(format!(
            "analysis {}: {} {what} of service {}, by {:?}, runs {}, metrics {}, rollback to {:?}",
            a.name,
            a.kind.as_str(),
            a.service,
            a.group_by(),
            humantime::format_duration(a.duration),
            if metrics.is_empty() {
                "default".to_string()
            } else {
                metrics.join(", ")
            },
            a.rollback_channels
        ));
        for ch in &a.rollback_channels {
            if !c.notify.channels.contains_key(ch) {
                out.push(format!(
                    "analysis {}: rollback channel {ch:?} is not in [notify.channels]: a failed run is reported but nobody is told to roll back (warning)",
                    a.name
                ));
            }
        }
    }
    out
}

/// Validates one registry file: warnings and a summary on stdout, or every error as
/// `FILE:LINE:COL: field: the fix` (exit code 2).
fn check_registry(file: &std::path::Path) -> Result<crate::registry::Registry, Failure> {
    match crate::registry::Registry::load(file) {
        Ok((r, warnings)) => {
            for w in &warnings {
                println!("{w} (warning)");
            }
            let priced = r.models().iter().filter(|m| !m.prices.is_empty()).count();
            let deprecated = r
                .models()
                .iter()
                .filter(|m| m.deprecation.is_some())
                .count();
            let fallbacks = r.models().iter().filter(|m| m.fallback.is_some()).count();
            println!(
                "{}: ok ({} models, {priced} with prices, {deprecated} with a deprecation date, {fallbacks} with a fallback; {} warning(s))",
                file.display(),
                r.models().len(),
                warnings.len()
            );
            Ok(r)
        }
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            Err(Failure::Config(anyhow::anyhow!(
                "{}: {} error(s); fix them and check again",
                file.display(),
                errors.len()
            )))
        }
    }
}

/// Warnings about the breaker's configured fallbacks against the registry: a fallback the
/// registry does not know, or one that is deprecated itself.
fn fallback_warnings(c: &Config, r: Option<&crate::registry::Registry>) -> Vec<String> {
    let Some(r) = r else {
        return Vec::new();
    };
    let today = crate::time::now_ms();
    let named = c
        .breaker
        .fallbacks
        .iter()
        .map(|(p, f)| (format!("breaker.fallbacks.{p}"), f))
        .chain(
            c.breaker
                .default_fallback
                .iter()
                .map(|f| ("breaker.default_fallback".to_string(), f)),
        );
    let mut out = Vec::new();
    for (field, f) in named {
        match r.lookup(f) {
            None => out.push(format!(
                "  warning: {field}: {f:?} is not in the registry {}; add an entry so its prices, context and deprecation are known",
                r.file().display()
            )),
            Some(m) => {
                if let Some(d) = &m.deprecation {
                    out.push(format!("  warning: {field}: {}", d.as_fallback(f, today)));
                }
            }
        }
    }
    out
}

/// What `check` says about delivery: channels, routes, silences, the breaker, and what
/// would fail at start (a secret's environment variable not set here) or be skipped (a rule
/// naming a channel that is not configured).
fn notify_summary(c: &Config, rules: &crate::detect::rules::RuleSet) -> Vec<String> {
    use crate::notify::config::ChannelConfig;
    let n = &c.notify;
    let mut out = Vec::new();
    if !n.enabled || n.channels.is_empty() {
        out.push("notify: no channels configured: alerts are recorded, not sent".to_string());
    } else {
        let names: Vec<String> = n
            .channels
            .iter()
            .map(|(k, v)| format!("{k} ({})", v.kind()))
            .collect();
        out.push(format!(
            "notify: ok ({}; {} routes; {} silences; group_wait {} group_interval {} repeat_interval {})",
            names.join(", "),
            n.routes.len(),
            n.silences.len(),
            humantime::format_duration(n.group_wait),
            humantime::format_duration(n.group_interval),
            humantime::format_duration(n.repeat_interval),
        ));
        for (name, ch) in &n.channels {
            let vars: Vec<&String> = match ch {
                ChannelConfig::Webhook { secret_env, .. } => secret_env.iter().collect(),
                ChannelConfig::Pagerduty {
                    routing_key_env, ..
                } => vec![routing_key_env],
                ChannelConfig::Email {
                    username_env,
                    password_env,
                    ..
                } => username_env.iter().chain(password_env.iter()).collect(),
            };
            for v in vars {
                if std::env::var(v).map_or(true, |x| x.is_empty()) {
                    out.push(format!(
                        "  warning: channel {name}: environment variable {v} is not set here; `run` refuses to start without it"
                    ));
                }
            }
        }
        for r in &rules.rules {
            for ch in &r.channels {
                if !n.channels.contains_key(ch) {
                    out.push(format!(
                        "  note: rule {} names channel {ch:?}, which is not configured: skipped",
                        r.name
                    ));
                }
            }
        }
    }
    let b = &c.breaker;
    let breaker_rules = rules
        .rules
        .iter()
        .filter(|r| r.action == Some(crate::detect::rules::Action::CircuitBreaker))
        .count();
    out.push(format!(
        "breaker: {} ({} rule(s); per {}; cooldown {} doubling to {}; probe {}; gateway channels {:?}{})",
        if b.enabled { "on" } else { "off" },
        breaker_rules,
        match b.scope {
            crate::detect::breaker::Scope::Model => "model",
            crate::detect::breaker::Scope::Series => "series",
        },
        humantime::format_duration(b.cooldown),
        humantime::format_duration(b.max_cooldown),
        humantime::format_duration(b.probe),
        b.channels,
        if b.channels.iter().any(|ch| n.channels.contains_key(ch)) {
            ""
        } else {
            ", none configured: transitions are recorded, no gateway is called"
        }
    ));
    out
}
