//! The fallback circuit breaker: closed → open → half-open → closed, per primary model (or
//! per series), driven by the evaluations of the rules with `action: circuit_breaker`.
//!
//! - **closed → open** when the breaker rule fires (its `for` and minimum samples already
//!   passed). The transition names the primary and the fallback model; the delivery stage
//!   POSTs it to the gateway, which moves traffic to the fallback.
//! - **open → half-open** after the cooldown: the gateway is told to restore the primary, and
//!   the breaker watches the evaluations whose whole range lies after the restore.
//! - **half-open → open** when those breach the rule's threshold (and test) again for the
//!   rule's `for`, as the first trip did, with the cooldown doubled up to `max_cooldown`.
//! - **half-open → closed** once they have stayed below the rule's *recovery* threshold for
//!   `probe`. Between the recovery and the firing threshold the breaker stays half-open: a
//!   rate hovering at the firing threshold neither closes nor re-opens it on noise.
//! - A breaker that trips again within `reset_after` of closing starts from the doubled
//!   cooldown, so a flapping primary backs off instead of bouncing every minute.
//!
//! Pure and deterministic: time is the evaluation time (event time) the detector passes in,
//! so a backtest replays the same transitions, and the state is part of the detector snapshot.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::alerts::{fingerprint, AlertState, Transition};
use crate::detect::evaluate::{Evaluation, InstanceLabels, Outcome};
use crate::detect::rules::{Action, Direction, Rule, Severity, Signal};

/// A breaker rule's number for a transition's reason: `7.12 % of 340 requests` for a rate,
/// `0.612 over 250 samples` for a judge mean, `2380 over 300 samples` for a latency.
fn measured_text(rule: &Rule, value: f64, n: u64) -> String {
    match rule.signal {
        Signal::ErrorRate
        | Signal::ErrorTypeRate(_)
        | Signal::NegativeFeedbackRate
        | Signal::FinishReasonRate(_)
        | Signal::NearContextRate => format!("{:.2} % of {n} requests", value * 100.0),
        _ => {
            let v = if value.abs() >= 100.0 {
                format!("{value:.0}")
            } else {
                format!("{value:.3}")
            };
            format!("{v} over {n} samples")
        }
    }
}

/// The label a model-scoped breaker is keyed by.
pub const MODEL_LABEL: &str = "request_model";

/// What one breaker guards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One breaker per primary model (`request_model`): any series of the model trips it.
    #[default]
    Model,
    /// One breaker per alert instance of the breaker rule (its series, or its `by` labels).
    Series,
}

/// `[breaker]`: how breakers open, back off and close.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Run breakers for rules with `action: circuit_breaker`. Default `true`.
    pub enabled: bool,
    /// `model` (default) or `series`.
    pub scope: Scope,
    /// First time an open breaker waits before probing the primary. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub cooldown: Duration,
    /// Each re-open doubles the cooldown, up to this. Default `10m`.
    #[serde(with = "humantime_serde")]
    pub max_cooldown: Duration,
    /// A half-open breaker closes after the primary stayed below the rule's recovery
    /// threshold this long. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub probe: Duration,
    /// A breaker closed for this long forgets its backoff. Default `15m`.
    #[serde(with = "humantime_serde")]
    pub reset_after: Duration,
    /// Fallback model per primary model (`request_model` value).
    pub fallbacks: BTreeMap<String, String>,
    /// Fallback for primaries not in `fallbacks`. Default none: the webhook then carries
    /// `"fallback_model": null` and the gateway picks.
    pub default_fallback: Option<String>,
    /// Notification channels (webhooks) that receive `fallback` and `restore`. Default
    /// `["fallback"]`.
    pub channels: Vec<String>,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            scope: Scope::Model,
            cooldown: Duration::from_secs(60),
            max_cooldown: Duration::from_secs(600),
            probe: Duration::from_secs(60),
            reset_after: Duration::from_secs(900),
            fallbacks: BTreeMap::new(),
            default_fallback: None,
            channels: vec!["fallback".to_string()],
        }
    }
}

/// Where a breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// 0 closed, 1 half-open, 2 open (the `/metrics` gauge).
    pub fn gauge(self) -> i64 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// One breaker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Breaker {
    pub rule: String,
    /// Fingerprint of the rule and the key labels.
    pub key: String,
    pub labels: InstanceLabels,
    pub state: BreakerState,
    /// When the current state began (evaluation time, ms).
    pub since_ms: i64,
    /// The cooldown of the current (or last) open period.
    pub cooldown_ms: i64,
    /// Opens since the backoff was last reset.
    pub opens: u32,
    pub closed_at_ms: Option<i64>,
    /// Half-open: first evaluation of the current healthy run.
    pub healthy_since_ms: Option<i64>,
    /// Half-open: first evaluation of the current breaching run.
    #[serde(default)]
    pub breach_since_ms: Option<i64>,
    pub primary_model: Option<String>,
    pub fallback_model: Option<String>,
    /// The last numbers seen (error rate, requests).
    pub value: Option<f64>,
    pub requests: u64,
}

/// One breaker state change: a row of the `alerts` table and, for `open` and `half_open`,
/// a `fallback` / `restore` webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BreakerTransition {
    pub at_ms: i64,
    pub rule: String,
    pub key: String,
    pub labels: InstanceLabels,
    pub from: BreakerState,
    pub to: BreakerState,
    pub severity: Severity,
    pub primary_model: Option<String>,
    pub fallback_model: Option<String>,
    /// Cooldown of the open period this transition starts (or ended).
    pub cooldown_ms: i64,
    pub opens: u32,
    /// What the breaker rule watches (`error rate`, `mean judge score faithfulness`, …);
    /// empty when the rule is gone.
    #[serde(default)]
    pub signal: String,
    /// The rule's number (an error rate, a judge mean, a latency in ms).
    pub value: Option<f64>,
    pub threshold: f64,
    pub requests: u64,
    pub range_start_ms: i64,
    pub range_end_ms: i64,
    pub reason: String,
    pub channels: Vec<String>,
}

impl BreakerTransition {
    /// What the gateway is asked to do: `fallback` on open, `restore` on half-open (and on
    /// an open breaker closed because its rule went away), none on a half-open breaker
    /// closing (traffic is already on the primary).
    pub fn command(&self) -> Option<&'static str> {
        match (self.from, self.to) {
            (_, BreakerState::Open) => Some("fallback"),
            (_, BreakerState::HalfOpen) | (BreakerState::Open, BreakerState::Closed) => {
                Some("restore")
            }
            _ => None,
        }
    }
}

/// Timing of every breaker, in ms.
#[derive(Debug, Clone)]
pub struct BreakerSettings {
    pub scope: Scope,
    pub cooldown_ms: i64,
    pub max_cooldown_ms: i64,
    pub probe_ms: i64,
    pub reset_after_ms: i64,
    pub config: BreakerConfig,
    /// The model registry, for fallbacks `[breaker.fallbacks]` does not name.
    pub registry: Option<std::sync::Arc<crate::registry::Registry>>,
}

impl BreakerSettings {
    /// The fallback of `primary`: `[breaker.fallbacks]`, then the registry entry's
    /// `fallback`, then `breaker.default_fallback`.
    pub fn fallback_for(&self, primary: Option<&str>) -> Option<String> {
        primary
            .and_then(|p| {
                self.config.fallbacks.get(p).cloned().or_else(|| {
                    self.registry
                        .as_ref()
                        .and_then(|r| r.fallback(p))
                        .map(str::to_string)
                })
            })
            .or_else(|| self.config.default_fallback.clone())
    }
}

impl From<&BreakerConfig> for BreakerSettings {
    fn from(c: &BreakerConfig) -> Self {
        let ms = |d: Duration| d.as_millis() as i64;
        Self {
            scope: c.scope,
            cooldown_ms: ms(c.cooldown),
            max_cooldown_ms: ms(c.max_cooldown).max(ms(c.cooldown)),
            probe_ms: ms(c.probe),
            reset_after_ms: ms(c.reset_after),
            config: c.clone(),
            registry: None,
        }
    }
}

impl Default for BreakerSettings {
    fn default() -> Self {
        Self::from(&BreakerConfig::default())
    }
}

/// Every breaker, by key.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Breakers {
    breakers: BTreeMap<String, Breaker>,
}

impl Breakers {
    pub fn iter(&self) -> impl Iterator<Item = &Breaker> {
        self.breakers.values()
    }

    pub fn get(&self, key: &str) -> Option<&Breaker> {
        self.breakers.get(key)
    }

    /// The key labels of an instance: the model label for model scope (all labels when the
    /// rule aggregates the model away), the instance labels for series scope.
    fn key_labels(scope: Scope, labels: &InstanceLabels) -> InstanceLabels {
        match scope {
            Scope::Series => labels.clone(),
            Scope::Model => {
                let m: InstanceLabels = labels
                    .iter()
                    .filter(|(k, _)| k == MODEL_LABEL)
                    .cloned()
                    .collect();
                if m.is_empty() {
                    labels.clone()
                } else {
                    m
                }
            }
        }
    }

    /// Feeds one tick of a breaker rule: its evaluations at `t_ms` and the alert transitions
    /// they caused. Returns the breaker transitions, in key order per step.
    pub fn observe(
        &mut self,
        rule: &Rule,
        t_ms: i64,
        evals: &[Evaluation],
        transitions: &[Transition],
        s: &BreakerSettings,
    ) -> Vec<BreakerTransition> {
        if rule.action != Some(Action::CircuitBreaker) {
            return Vec::new();
        }
        let mut out = Vec::new();
        let range_start = t_ms - rule.over_ms;
        let threshold = rule.condition.threshold;
        let mk = |b: &Breaker, from: BreakerState, reason: String| BreakerTransition {
            at_ms: t_ms,
            rule: b.rule.clone(),
            key: b.key.clone(),
            labels: b.labels.clone(),
            from,
            to: b.state,
            severity: rule.severity,
            primary_model: b.primary_model.clone(),
            fallback_model: b.fallback_model.clone(),
            cooldown_ms: b.cooldown_ms,
            opens: b.opens,
            signal: rule.signal.describe(),
            value: b.value,
            threshold,
            requests: b.requests,
            range_start_ms: range_start,
            range_end_ms: t_ms,
            reason,
            channels: s.config.channels.clone(),
        };

        // 1. Open breakers whose cooldown is over probe the primary.
        for b in self.breakers.values_mut().filter(|b| b.rule == rule.name) {
            if b.state == BreakerState::Open && t_ms >= b.since_ms + b.cooldown_ms {
                b.state = BreakerState::HalfOpen;
                b.since_ms = t_ms;
                b.healthy_since_ms = None;
                b.breach_since_ms = None;
                out.push(mk(
                    b,
                    BreakerState::Open,
                    format!(
                        "cooldown of {} over: restoring the primary and watching the next windows",
                        humantime::format_duration(Duration::from_millis(b.cooldown_ms as u64))
                    ),
                ));
            }
        }

        // 2. Half-open breakers judge the evaluations whose range lies after the restore.
        let mut per_key: BTreeMap<String, Vec<&Evaluation>> = BTreeMap::new();
        for e in evals {
            let kl = Self::key_labels(s.scope, &e.labels);
            per_key
                .entry(fingerprint(&rule.name, &kl))
                .or_default()
                .push(e);
        }
        for b in self.breakers.values_mut().filter(|b| b.rule == rule.name) {
            if b.state != BreakerState::HalfOpen || range_start < b.since_ms {
                continue;
            }
            let Some(es) = per_key.get(&b.key) else {
                continue;
            };
            let measured: Vec<_> = es
                .iter()
                .filter_map(|e| match &e.outcome {
                    Outcome::Measured(m) => Some((m, e.n_current)),
                    Outcome::NoData(_) => None,
                })
                .collect();
            if measured.is_empty() {
                continue;
            }
            // The worst in the rule's bad direction: the highest error rate or latency, the
            // lowest judge score.
            let worst = measured
                .iter()
                .max_by(|a, b| match rule.condition.direction {
                    Direction::Above => a.0.value.total_cmp(&b.0.value),
                    Direction::Below => b.0.value.total_cmp(&a.0.value),
                })
                .expect("not empty");
            b.value = Some(worst.0.value);
            b.requests = worst.1;
            if measured.iter().any(|(m, _)| m.breached && m.significant) {
                b.healthy_since_ms = None;
                let since = *b.breach_since_ms.get_or_insert(t_ms);
                if t_ms - since < rule.for_ms {
                    continue;
                }
                b.breach_since_ms = None;
                b.state = BreakerState::Open;
                b.since_ms = t_ms;
                b.opens += 1;
                b.cooldown_ms = (b.cooldown_ms * 2).min(s.max_cooldown_ms);
                b.healthy_since_ms = None;
                out.push(mk(
                    b,
                    BreakerState::HalfOpen,
                    format!(
                        "{} recurs after the restore ({}): open again for {}",
                        rule.signal.describe(),
                        measured_text(rule, worst.0.value, worst.1),
                        humantime::format_duration(Duration::from_millis(b.cooldown_ms as u64))
                    ),
                ));
            } else if measured.iter().all(|(m, _)| !m.still_breached) {
                b.breach_since_ms = None;
                let since = *b.healthy_since_ms.get_or_insert(t_ms);
                if t_ms - since >= s.probe_ms {
                    b.state = BreakerState::Closed;
                    b.since_ms = t_ms;
                    b.closed_at_ms = Some(t_ms);
                    b.healthy_since_ms = None;
                    out.push(mk(
                        b,
                        BreakerState::HalfOpen,
                        format!(
                            "primary healthy for {} (below the recovery threshold): closed",
                            humantime::format_duration(Duration::from_millis(
                                (t_ms - since) as u64
                            ))
                        ),
                    ));
                }
            } else {
                // Between recovery and firing threshold: not healthy, not tripping.
                b.healthy_since_ms = None;
                b.breach_since_ms = None;
            }
        }

        // 3. Closed breakers trip when the rule fires.
        for tr in transitions.iter().filter(|t| t.to == AlertState::Firing) {
            let labels = Self::key_labels(s.scope, &tr.labels);
            let key = fingerprint(&rule.name, &labels);
            let primary = labels
                .iter()
                .chain(tr.labels.iter())
                .find(|(k, _)| k == MODEL_LABEL)
                .map(|(_, v)| v.clone());
            let b = self.breakers.entry(key.clone()).or_insert_with(|| Breaker {
                rule: rule.name.clone(),
                key,
                labels,
                state: BreakerState::Closed,
                since_ms: t_ms,
                cooldown_ms: s.cooldown_ms,
                opens: 0,
                closed_at_ms: None,
                healthy_since_ms: None,
                breach_since_ms: None,
                fallback_model: s.fallback_for(primary.as_deref()),
                primary_model: primary,
                value: None,
                requests: 0,
            });
            if b.state != BreakerState::Closed {
                continue;
            }
            let recent = b.closed_at_ms.is_some_and(|c| t_ms - c < s.reset_after_ms);
            if recent {
                b.cooldown_ms = (b.cooldown_ms * 2).min(s.max_cooldown_ms);
                b.opens += 1;
            } else {
                b.cooldown_ms = s.cooldown_ms;
                b.opens = 1;
            }
            b.fallback_model = s.fallback_for(b.primary_model.as_deref());
            b.state = BreakerState::Open;
            b.since_ms = t_ms;
            b.value = tr.numbers.value;
            b.requests = tr.numbers.n_current;
            out.push(mk(
                b,
                BreakerState::Closed,
                format!(
                    "{} fired ({}): falling back to {} for {}",
                    rule.name,
                    tr.numbers
                        .value
                        .map(|v| measured_text(rule, v, tr.numbers.n_current))
                        .unwrap_or_default(),
                    b.fallback_model
                        .as_deref()
                        .unwrap_or("the gateway's fallback"),
                    humantime::format_duration(Duration::from_millis(b.cooldown_ms as u64))
                ),
            ));
        }
        out
    }

    /// Drops breakers of rules that no longer exist (a reload, a restart with other rules);
    /// open ones are closed with a `restore` to `channels`, so traffic is not left on the
    /// fallback.
    pub fn retain_rules(
        &mut self,
        names: &[&str],
        t_ms: i64,
        channels: &[String],
    ) -> Vec<BreakerTransition> {
        let mut out = Vec::new();
        self.breakers.retain(|_, b| {
            if names.contains(&b.rule.as_str()) {
                return true;
            }
            if b.state != BreakerState::Closed {
                out.push(BreakerTransition {
                    at_ms: t_ms,
                    rule: b.rule.clone(),
                    key: b.key.clone(),
                    labels: b.labels.clone(),
                    from: b.state,
                    to: BreakerState::Closed,
                    severity: Severity::Page,
                    primary_model: b.primary_model.clone(),
                    fallback_model: b.fallback_model.clone(),
                    cooldown_ms: b.cooldown_ms,
                    opens: b.opens,
                    signal: String::new(),
                    value: b.value,
                    threshold: f64::NAN,
                    requests: b.requests,
                    range_start_ms: t_ms,
                    range_end_ms: t_ms,
                    reason: "rule removed: restoring the primary".into(),
                    channels: channels.to_vec(),
                });
            }
            false
        });
        out
    }
}

impl BreakerConfig {
    /// Checks the section; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), crate::section::ConfigError> {
        let b = self;
        if b.cooldown.is_zero() || b.max_cooldown < b.cooldown {
            return Err(crate::section::invalid(
                "breaker.cooldown",
                "must be > 0 and at most breaker.max_cooldown",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::evaluate::Measured;

    fn rule() -> Rule {
        let text = r#"
rules:
  - name: brk
    signal: { metric: error_rate }
    over: 30s
    every: 10s
    baseline: { value: 0.05 }
    condition: { effect: value, above: 0.05, recover: 0.03 }
    for: 30s
    severity: page
    annotations: { summary: "rate {{ value }}", runbook_url: https://x }
    action: circuit_breaker
"#;
        let ctx = crate::detect::rules::RuleContext::for_tests(vec![
            crate::event::SeriesLabel::Service,
            crate::event::SeriesLabel::RequestModel,
            crate::event::SeriesLabel::Deployment,
        ]);
        crate::detect::rules::parse_file(std::path::Path::new("t.yaml"), text, &ctx)
            .unwrap()
            .remove(0)
    }

    fn labels(model: &str, dep: &str) -> InstanceLabels {
        vec![
            ("service".into(), "chat".into()),
            (MODEL_LABEL.into(), model.into()),
            ("deployment".into(), dep.into()),
        ]
    }

    fn eval(model: &str, rate: f64) -> Evaluation {
        Evaluation {
            labels: labels(model, "stable"),
            n_current: 300,
            n_baseline: 0,
            outcome: Outcome::Measured(Measured {
                value: rate,
                baseline: 0.05,
                effect: rate,
                p_value: f64::NAN,
                breached: rate > 0.05,
                still_breached: rate > 0.03,
                significant: true,
            }),
            horizon_ms: 30_000,
            onset_ms: None,
            details: Default::default(),
        }
    }

    fn firing(rule: &Rule, model: &str, t: i64) -> Transition {
        Transition {
            at_ms: t,
            rule: rule.name.clone(),
            fingerprint: fingerprint(&rule.name, &labels(model, "stable")),
            from: AlertState::Pending,
            to: AlertState::Firing,
            severity: rule.severity,
            labels: labels(model, "stable"),
            rule_labels: BTreeMap::new(),
            signal: "error_rate".into(),
            numbers: crate::detect::alerts::Numbers {
                value: Some(0.1),
                n_current: 300,
                ..Default::default()
            },
            threshold: 0.05,
            range_start_ms: t - 30_000,
            range_end_ms: t,
            baseline_desc: String::new(),
            reason: String::new(),
            summary: String::new(),
            description: String::new(),
            runbook_url: String::new(),
            channels: vec![],
            action: Some(Action::CircuitBreaker),
            fired_at_ms: Some(t),
            onset_ms: None,
            detection_delay_ms: None,
            details: Default::default(),
        }
    }

    fn settings() -> BreakerSettings {
        let mut c = BreakerConfig::default();
        c.fallbacks.insert("gpt-4o".into(), "claude-haiku".into());
        BreakerSettings::from(&c)
    }

    /// Drives ticks every 10 s with the given error rate per tick; fires the alert at
    /// `fire_at`. Returns (tick, transition) pairs.
    fn drive(
        b: &mut Breakers,
        rule: &Rule,
        s: &BreakerSettings,
        rates: impl Fn(i64) -> f64,
        fire_at: &[i64],
        until: i64,
    ) -> Vec<BreakerTransition> {
        let mut out = Vec::new();
        let mut t = 10_000;
        while t <= until {
            let trs: Vec<_> = if fire_at.contains(&t) {
                vec![firing(rule, "gpt-4o", t)]
            } else {
                vec![]
            };
            out.extend(b.observe(rule, t, &[eval("gpt-4o", rates(t))], &trs, s));
            t += 10_000;
        }
        out
    }

    fn path(out: &[BreakerTransition]) -> Vec<(i64, &'static str, i64)> {
        out.iter()
            .map(|t| (t.at_ms / 1000, t.to.as_str(), t.cooldown_ms / 1000))
            .collect()
    }

    #[test]
    fn the_fallback_comes_from_the_config_then_the_registry_then_the_default() {
        let (reg, _) = crate::registry::Registry::parse(
            std::path::Path::new("models.yaml"),
            "models:\n  - id: gpt-4o\n    aliases: [gpt-4o-2024-08-06]\n    fallback: gpt-4o-mini\n  - id: o3\n    fallback: o4-mini\n",
            0,
        )
        .unwrap();
        let mut c = BreakerConfig::default();
        c.fallbacks.insert("o3".into(), "claude-sonnet".into());
        c.default_fallback = Some("llama-3.1-70b".into());
        let mut s = BreakerSettings::from(&c);
        s.registry = Some(std::sync::Arc::new(reg));
        assert_eq!(
            s.fallback_for(Some("o3")).as_deref(),
            Some("claude-sonnet"),
            "config first"
        );
        assert_eq!(
            s.fallback_for(Some("gpt-4o-2024-08-06")).as_deref(),
            Some("gpt-4o-mini"),
            "registry, by alias"
        );
        assert_eq!(
            s.fallback_for(Some("mistral-large")).as_deref(),
            Some("llama-3.1-70b"),
            "default"
        );
        s.registry = None;
        assert_eq!(
            s.fallback_for(Some("gpt-4o")).as_deref(),
            Some("llama-3.1-70b")
        );
    }

    #[test]
    fn opens_on_fire_probes_after_cooldown_and_closes_when_healthy() {
        let r = rule();
        let s = settings();
        let mut b = Breakers::default();
        // Errors 10 % until 100 s, then 1 %.
        let out = drive(
            &mut b,
            &r,
            &s,
            |t| if t <= 100_000 { 0.1 } else { 0.01 },
            &[60_000],
            400_000,
        );
        assert_eq!(
            path(&out),
            vec![
                (60, "open", 60),
                (120, "half_open", 60),
                (210, "closed", 60)
            ],
            "{out:#?}"
        );
        assert_eq!(out[0].primary_model.as_deref(), Some("gpt-4o"));
        assert_eq!(out[0].fallback_model.as_deref(), Some("claude-haiku"));
        assert_eq!(out[0].command(), Some("fallback"));
        assert_eq!(out[1].command(), Some("restore"));
        assert_eq!(out[2].command(), None);
    }

    #[test]
    fn errors_during_half_open_reopen_with_a_doubled_capped_cooldown() {
        let r = rule();
        let s = settings();
        let mut b = Breakers::default();
        // Errors never stop: every probe fails, the cooldown doubles up to 10 min.
        let out = drive(&mut b, &r, &s, |_| 0.2, &[60_000], 3_600_000);
        let p = path(&out);
        assert_eq!(p[0], (60, "open", 60));
        assert_eq!(p[1], (120, "half_open", 60));
        // Breaching for the rule's `for` (30 s) from the first evaluation whose range lies
        // after the restore re-opens it.
        assert_eq!(p[2], (180, "open", 120));
        assert_eq!(p[3], (300, "half_open", 120));
        assert_eq!(p[4], (360, "open", 240));
        let cooldowns: Vec<i64> = p.iter().filter(|x| x.1 == "open").map(|x| x.2).collect();
        assert_eq!(&cooldowns[..6], &[60, 120, 240, 480, 600, 600]);
    }

    #[test]
    fn a_rate_between_recovery_and_threshold_keeps_it_half_open() {
        let r = rule();
        let s = settings();
        let mut b = Breakers::default();
        // After the restore the rate hovers at 4-5 %: neither healthy nor tripping.
        let out = drive(
            &mut b,
            &r,
            &s,
            |t| {
                if t <= 100_000 {
                    0.1
                } else if (t / 10_000) % 2 == 0 {
                    0.049
                } else {
                    0.041
                }
            },
            &[60_000],
            1_200_000,
        );
        assert_eq!(path(&out), vec![(60, "open", 60), (120, "half_open", 60)]);
    }

    #[test]
    fn tripping_again_soon_after_closing_keeps_the_backoff() {
        let r = rule();
        let s = settings();
        let mut b = Breakers::default();
        let rates = |t: i64| {
            if t <= 100_000 || (300_000..=400_000).contains(&t) {
                0.1
            } else {
                0.0
            }
        };
        let out = drive(
            &mut b,
            &r,
            &s,
            rates,
            &[60_000, 350_000, 2_500_000],
            2_600_000,
        );
        let p = path(&out);
        assert_eq!(p[2], (210, "closed", 60));
        assert_eq!(p[3], (350, "open", 120), "re-tripped 140 s after closing");
        // Long after closing (> reset_after), the backoff starts over.
        let last = p.iter().rfind(|x| x.1 == "open").unwrap();
        assert_eq!(*last, (2_500, "open", 60));
    }

    #[test]
    fn removing_the_rule_closes_open_breakers_with_a_restore() {
        let r = rule();
        let s = settings();
        let mut b = Breakers::default();
        drive(&mut b, &r, &s, |_| 0.2, &[60_000], 60_000);
        assert_eq!(b.iter().next().unwrap().state, BreakerState::Open);
        let out = b.retain_rules(&[], 70_000, &["gw".to_string()]);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].from, out[0].to),
            (BreakerState::Open, BreakerState::Closed)
        );
        assert_eq!(out[0].command(), Some("restore"));
        assert_eq!(out[0].channels, vec!["gw".to_string()]);
        assert_eq!(b.iter().count(), 0);
        // A half-open one closes silently: traffic is already on the primary.
        let mut b = Breakers::default();
        drive(&mut b, &r, &s, |_| 0.2, &[60_000], 120_000);
        assert_eq!(b.iter().next().unwrap().state, BreakerState::HalfOpen);
        let out = b.retain_rules(&[], 130_000, &["gw".to_string()]);
        assert_eq!(out[0].command(), None);
        // Kept rules keep their breakers.
        let mut b = Breakers::default();
        drive(&mut b, &r, &s, |_| 0.2, &[60_000], 60_000);
        assert!(b.retain_rules(&["brk"], 70_000, &[]).is_empty());
        assert_eq!(b.iter().count(), 1);
    }

    #[test]
    fn series_scope_keys_by_instance_and_model_scope_by_model() {
        let r = rule();
        let mut s = settings();
        let mut b = Breakers::default();
        let mut t1 = firing(&r, "gpt-4o", 10_000);
        t1.labels = labels("gpt-4o", "canary");
        let t2 = firing(&r, "gpt-4o", 10_000);
        let out = b.observe(&r, 10_000, &[], &[t1.clone(), t2.clone()], &s);
        assert_eq!(out.len(), 1, "one breaker per model");
        assert_eq!(
            out[0].labels,
            vec![(MODEL_LABEL.to_string(), "gpt-4o".to_string())]
        );
        s.scope = Scope::Series;
        let mut b = Breakers::default();
        assert_eq!(b.observe(&r, 10_000, &[], &[t1, t2], &s).len(), 2);
    }
}
