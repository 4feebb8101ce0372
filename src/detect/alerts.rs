//! The alert lifecycle: inactive → pending → firing → resolved per (rule, instance labels)
//! fingerprint, with Prometheus semantics for `for` and `keep_firing_for`, hysteresis through
//! the rule's recovery threshold, and one [`Transition`] record per state change.
//!
//! A firing alert whose series stops sending data neither resolves nor re-fires at once: it
//! resolves as stale after `stale_after` without data. Pure: time comes in as an argument.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::detect::evaluate::{Evaluation, InstanceLabels, Outcome};
use crate::detect::rules::{template_parts, Baseline, Rule, Severity, TemplatePart};

/// Where an alert instance is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
    Resolved,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// The last numbers an instance was evaluated with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Numbers {
    pub value: Option<f64>,
    pub baseline: Option<f64>,
    pub effect: Option<f64>,
    pub p_value: Option<f64>,
    pub n_current: u64,
    pub n_baseline: u64,
}

/// One alert instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub rule: String,
    /// Stable 64-bit FNV-1a of the rule name and instance labels, as 16 hex digits.
    pub fingerprint: String,
    pub labels: InstanceLabels,
    pub state: AlertState,
    pub severity: Severity,
    /// Evaluation time the condition became active (pending since).
    pub active_at_ms: Option<i64>,
    pub fired_at_ms: Option<i64>,
    pub resolved_at_ms: Option<i64>,
    /// Last evaluation the condition held.
    pub last_active_ms: Option<i64>,
    /// First evaluation the condition failed while firing (`keep_firing_for` counts from it).
    #[serde(default)]
    pub keep_firing_since_ms: Option<i64>,
    /// Last evaluation with enough data.
    pub last_data_ms: Option<i64>,
    pub last_eval_ms: i64,
    pub numbers: Numbers,
    pub summary: String,
    /// The estimated change point of the current (or last) firing, made once by the
    /// evaluation that fired it; every later report of this firing uses it.
    #[serde(default)]
    pub onset_ms: Option<i64>,
    /// How long detection took: from `onset_ms` to `fired_at_ms` (event time).
    #[serde(default)]
    pub detection_delay_ms: Option<i64>,
    /// Length of the current range of the last conclusive evaluation (the horizon).
    #[serde(default)]
    pub horizon_ms: Option<i64>,
    /// The last conclusive evaluation's details (deprecation date, money lost, …).
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

/// One state change, written as a row of the `alerts` table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    /// Evaluation time (end of the current range), ms since the epoch.
    pub at_ms: i64,
    pub rule: String,
    pub fingerprint: String,
    pub from: AlertState,
    pub to: AlertState,
    pub severity: Severity,
    pub labels: InstanceLabels,
    /// Rule labels merged over instance labels.
    pub rule_labels: BTreeMap<String, String>,
    pub signal: String,
    pub numbers: Numbers,
    pub threshold: f64,
    /// `[start, end)` of the current range.
    pub range_start_ms: i64,
    pub range_end_ms: i64,
    pub baseline_desc: String,
    pub reason: String,
    pub summary: String,
    pub description: String,
    pub runbook_url: String,
    pub channels: Vec<String>,
    pub action: Option<crate::detect::rules::Action>,
    /// When the alert last started firing (for resolved ones: the firing they end).
    #[serde(default)]
    pub fired_at_ms: Option<i64>,
    /// The estimated change point of that firing (see [`Alert::onset_ms`]).
    #[serde(default)]
    pub onset_ms: Option<i64>,
    /// `fired_at_ms − onset_ms`: how long detection took, in event time.
    #[serde(default)]
    pub detection_delay_ms: Option<i64>,
    /// The signal's details (`{{ details.NAME }}`): a deprecation's date and successor, the
    /// money a cache drop loses per day, a budget's spend.
    #[serde(default)]
    pub details: BTreeMap<String, String>,
}

pub use crate::time::fnv_hex;

/// Stable fingerprint (FNV-1a 64) of a rule and an instance's labels.
pub fn fingerprint(rule: &str, labels: &InstanceLabels) -> String {
    fnv_hex(
        std::iter::once(rule.as_bytes()).chain(
            labels
                .iter()
                .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()]),
        ),
    )
}

/// Every alert instance, by (rule, fingerprint). Saved as a list of instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Vec<Alert>", into = "Vec<Alert>")]
pub struct AlertBook {
    instances: BTreeMap<(String, String), Alert>,
}

impl From<Vec<Alert>> for AlertBook {
    fn from(v: Vec<Alert>) -> Self {
        Self {
            instances: v
                .into_iter()
                .map(|a| ((a.rule.clone(), a.fingerprint.clone()), a))
                .collect(),
        }
    }
}

impl From<AlertBook> for Vec<Alert> {
    fn from(b: AlertBook) -> Self {
        b.instances.into_values().collect()
    }
}

/// Knobs of the lifecycle that are not per rule.
#[derive(Debug, Clone, Copy)]
pub struct Lifecycle {
    /// A firing alert without data for this long resolves (reason `no data`).
    pub stale_after_ms: i64,
    /// Resolved and inactive instances are forgotten after this long.
    pub forget_after_ms: i64,
}

impl AlertBook {
    /// Instances of every state, ordered by rule then fingerprint.
    pub fn alerts(&self) -> impl Iterator<Item = &Alert> {
        self.instances.values()
    }

    pub fn len(&self) -> usize {
        self.instances.len()
    }

    pub fn is_empty(&self) -> bool {
        self.instances.is_empty()
    }

    /// Drops instances of rules that no longer exist (after a reload). Pending and firing
    /// ones of the `old` rules end with a transition to resolved ("rule removed"), so nothing
    /// downstream stays firing forever.
    pub fn retain_rules(&mut self, names: &[&str], old: &[Rule]) -> Vec<Transition> {
        let mut out = Vec::new();
        self.instances.retain(|(r, _), a| {
            if names.contains(&r.as_str()) {
                return true;
            }
            if matches!(a.state, AlertState::Pending | AlertState::Firing) {
                match old.iter().find(|x| &x.name == r) {
                    Some(rule) => {
                        let to = if a.state == AlertState::Firing {
                            AlertState::Resolved
                        } else {
                            AlertState::Inactive
                        };
                        out.push(transition(
                            rule,
                            a,
                            a.last_eval_ms,
                            a.state,
                            to,
                            "rule removed".to_string(),
                        ));
                    }
                    // Restored state whose rule is gone (edited while stopped): the alert
                    // still ends with a row and a notification, so no receiver keeps an
                    // incident open for a rule that no longer exists.
                    None => {
                        tracing::warn!(
                            rule = %r,
                            fingerprint = %a.fingerprint,
                            "the rule of a {} alert no longer exists; ending it",
                            a.state.as_str()
                        );
                        let to = if a.state == AlertState::Firing {
                            AlertState::Resolved
                        } else {
                            AlertState::Inactive
                        };
                        out.push(Transition {
                            at_ms: a.last_eval_ms,
                            rule: a.rule.clone(),
                            fingerprint: a.fingerprint.clone(),
                            from: a.state,
                            to,
                            severity: a.severity,
                            labels: a.labels.clone(),
                            rule_labels: BTreeMap::new(),
                            signal: String::new(),
                            numbers: a.numbers,
                            threshold: f64::NAN,
                            range_start_ms: a.last_eval_ms,
                            range_end_ms: a.last_eval_ms,
                            baseline_desc: String::new(),
                            reason: "rule removed".to_string(),
                            summary: a.summary.clone(),
                            description: String::new(),
                            runbook_url: String::new(),
                            channels: Vec::new(),
                            action: None,
                            fired_at_ms: a.fired_at_ms,
                            onset_ms: a.fired_at_ms.and(a.onset_ms),
                            detection_delay_ms: a.fired_at_ms.and(a.detection_delay_ms),
                            details: a.details.clone(),
                        });
                    }
                }
            }
            false
        });
        out
    }

    /// Applies the evaluations of `rule` at `t_ms` and returns the transitions, in
    /// fingerprint order.
    pub fn apply(
        &mut self,
        rule: &Rule,
        t_ms: i64,
        evals: Vec<Evaluation>,
        life: Lifecycle,
    ) -> Vec<Transition> {
        let mut out = Vec::new();
        let mut seen = std::collections::BTreeSet::new();
        for ev in evals {
            let fp = fingerprint(&rule.name, &ev.labels);
            seen.insert(fp.clone());
            let key = (rule.name.clone(), fp.clone());
            let alert = self.instances.entry(key).or_insert_with(|| Alert {
                rule: rule.name.clone(),
                fingerprint: fp,
                labels: ev.labels.clone(),
                state: AlertState::Inactive,
                severity: rule.severity,
                active_at_ms: None,
                fired_at_ms: None,
                resolved_at_ms: None,
                last_active_ms: None,
                keep_firing_since_ms: None,
                last_data_ms: None,
                last_eval_ms: t_ms,
                numbers: Numbers::default(),
                summary: String::new(),
                onset_ms: None,
                detection_delay_ms: None,
                horizon_ms: None,
                details: BTreeMap::new(),
            });
            alert.last_eval_ms = t_ms;
            alert.severity = rule.severity;
            let (active, reason) = match &ev.outcome {
                Outcome::NoData(why) => {
                    alert.numbers.n_current = ev.n_current;
                    alert.numbers.n_baseline = ev.n_baseline;
                    (None, *why)
                }
                Outcome::Measured(m) => {
                    alert.last_data_ms = Some(t_ms);
                    alert.horizon_ms = Some(ev.horizon_ms);
                    alert.details = ev.details.clone();
                    // The estimate of the evaluation that fires the alert is kept.
                    if alert.state != AlertState::Firing && ev.onset_ms.is_some() {
                        alert.onset_ms = ev.onset_ms;
                    }
                    alert.numbers = Numbers {
                        value: finite(m.value),
                        baseline: finite(m.baseline),
                        effect: finite_or_inf(m.effect),
                        p_value: finite(m.p_value),
                        n_current: ev.n_current,
                        n_baseline: ev.n_baseline,
                    };
                    if alert.state == AlertState::Firing {
                        (
                            Some(m.still_breached),
                            if m.still_breached {
                                "still past the recovery threshold"
                            } else {
                                "back past the recovery threshold"
                            },
                        )
                    } else if m.breached && m.significant {
                        (Some(true), "threshold breached and significant")
                    } else if m.breached {
                        (Some(false), "threshold breached but not significant")
                    } else {
                        (Some(false), "within threshold")
                    }
                }
            };
            if let Some(tr) = step(rule, alert, t_ms, active, reason, life) {
                out.push(tr);
            }
        }
        // Instances without data in the current range this time.
        for ((r, fp), alert) in self.instances.iter_mut() {
            if r != &rule.name || seen.contains(fp) {
                continue;
            }
            alert.last_eval_ms = t_ms;
            if let Some(tr) = step(
                rule,
                alert,
                t_ms,
                None,
                "no data in the current range",
                life,
            ) {
                out.push(tr);
            }
        }
        // Like Prometheus: inactive instances go at once, resolved ones after a while.
        self.instances.retain(|(r, _), a| {
            r != &rule.name
                || match a.state {
                    AlertState::Pending | AlertState::Firing => true,
                    AlertState::Inactive => false,
                    AlertState::Resolved => {
                        t_ms - a.resolved_at_ms.unwrap_or(t_ms) < life.forget_after_ms
                    }
                }
        });
        out.sort_by(|a, b| a.fingerprint.cmp(&b.fingerprint));
        out
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

fn finite_or_inf(v: f64) -> Option<f64> {
    (!v.is_nan()).then_some(v)
}

/// Moves one instance; `active` is `None` when there was not enough data to decide.
fn step(
    rule: &Rule,
    a: &mut Alert,
    t: i64,
    active: Option<bool>,
    reason: &str,
    life: Lifecycle,
) -> Option<Transition> {
    use AlertState::*;
    let from = a.state;
    let to = match (from, active) {
        (Inactive | Resolved, Some(true)) => {
            a.active_at_ms = Some(t);
            a.last_active_ms = Some(t);
            if rule.for_ms == 0 {
                a.fired_at_ms = Some(t);
                a.detection_delay_ms = a.onset_ms.map(|o| t - o);
                Firing
            } else {
                Pending
            }
        }
        (Pending, Some(true)) => {
            a.last_active_ms = Some(t);
            if t - a.active_at_ms.unwrap_or(t) >= rule.for_ms {
                a.fired_at_ms = Some(t);
                a.detection_delay_ms = a.onset_ms.map(|o| t - o);
                Firing
            } else {
                Pending
            }
        }
        (Pending, _) => Inactive,
        (Firing, Some(true)) => {
            a.last_active_ms = Some(t);
            a.keep_firing_since_ms = None;
            Firing
        }
        (Firing, Some(false)) => {
            let since = *a.keep_firing_since_ms.get_or_insert(t);
            if t - since >= rule.keep_firing_for_ms {
                a.resolved_at_ms = Some(t);
                Resolved
            } else {
                Firing
            }
        }
        (Firing, None) => {
            if t - a.last_data_ms.unwrap_or(t) >= life.stale_after_ms {
                a.resolved_at_ms = Some(t);
                Resolved
            } else {
                Firing
            }
        }
        (s, _) => s,
    };
    a.state = to;
    if to == from {
        return None;
    }
    if to == Inactive {
        a.active_at_ms = None;
        a.onset_ms = None;
    }
    if to != Firing {
        a.keep_firing_since_ms = None;
    }
    let reason = if from == Firing && to == Resolved && active.is_none() {
        format!(
            "no data for {}",
            humantime::format_duration(std::time::Duration::from_millis(
                life.stale_after_ms as u64
            ))
        )
    } else {
        reason.to_string()
    };
    let tr = transition(rule, a, t, from, to, reason);
    a.summary = tr.summary.clone();
    Some(tr)
}

/// The record of `a` moving `from` → `to` at `t`, with rendered labels and annotations.
fn transition(
    rule: &Rule,
    a: &Alert,
    t: i64,
    from: AlertState,
    to: AlertState,
    reason: String,
) -> Transition {
    let mut tr = Transition {
        at_ms: t,
        rule: rule.name.clone(),
        fingerprint: a.fingerprint.clone(),
        from,
        to,
        severity: rule.severity,
        labels: a.labels.clone(),
        rule_labels: BTreeMap::new(),
        signal: rule.signal.describe(),
        numbers: a.numbers,
        threshold: rule.condition.threshold,
        range_start_ms: t - a.horizon_ms.unwrap_or(rule.over_ms),
        range_end_ms: t,
        baseline_desc: baseline_desc(rule),
        reason,
        summary: String::new(),
        description: rule.description.clone(),
        runbook_url: String::new(),
        channels: rule.channels.clone(),
        action: rule.action,
        fired_at_ms: a.fired_at_ms,
        onset_ms: a.fired_at_ms.and(a.onset_ms),
        detection_delay_ms: a.fired_at_ms.and(a.detection_delay_ms),
        details: a.details.clone(),
    };
    for (k, v) in &rule.labels {
        tr.rule_labels.insert(k.clone(), render(v, rule, &tr));
    }
    tr.summary = rule
        .annotations
        .get("summary")
        .map(|s| render(s, rule, &tr))
        .unwrap_or_default();
    tr.runbook_url = rule
        .annotations
        .get("runbook_url")
        .map(|s| render(s, rule, &tr))
        .unwrap_or_default();
    // A `description` annotation (e.g. what changed, `{{ details.comparison }}`) replaces
    // the rule's static description in notifications.
    if let Some(d) = rule.annotations.get("description") {
        tr.description = render(d, rule, &tr);
    }
    tr
}

/// Human description of where the baseline comes from.
pub fn baseline_desc(rule: &Rule) -> String {
    match &rule.baseline {
        Baseline::Value(v) => format!("fixed {v}"),
        Baseline::Trailing {
            range_ms,
            offset_ms,
            ..
        } => {
            let d =
                |ms: &i64| humantime::format_duration(std::time::Duration::from_millis(*ms as u64));
            if *offset_ms == 0 {
                format!("trailing {} before the current range", d(range_ms))
            } else {
                format!(
                    "trailing {} ending {} before the current range",
                    d(range_ms),
                    d(offset_ms)
                )
            }
        }
        Baseline::Peer { set } => {
            let parts: Vec<String> = set.iter().map(|(_, v)| v.clone()).collect();
            format!("peer series ({})", parts.join(", "))
        }
    }
}

/// Fills a template (`{{ value | pct }}`, `{{ labels.request_model }}`) from a transition.
pub fn render(template: &str, rule: &Rule, tr: &Transition) -> String {
    let Ok(parts) = template_parts(template) else {
        return template.to_string();
    };
    let mut out = String::new();
    for p in parts {
        match p {
            TemplatePart::Text(t) => out.push_str(t),
            TemplatePart::Var { var, fmt } => {
                let num = |v: Option<f64>| format_number(v, fmt);
                let s = match var {
                    "rule" => rule.name.clone(),
                    "signal" => tr.signal.clone(),
                    "value" => num(tr.numbers.value),
                    "baseline" => num(tr.numbers.baseline),
                    "effect" => num(tr.numbers.effect),
                    "threshold" => num(Some(tr.threshold)),
                    "p_value" => tr
                        .numbers
                        .p_value
                        .map(|p| format!("{p:.3e}"))
                        .unwrap_or_else(|| "n/a".into()),
                    "n_current" => tr.numbers.n_current.to_string(),
                    "n_baseline" => tr.numbers.n_baseline.to_string(),
                    // The current range the numbers come from (the horizon that fired).
                    "over" => humantime::format_duration(std::time::Duration::from_millis(
                        (tr.range_end_ms - tr.range_start_ms).max(0) as u64,
                    ))
                    .to_string(),
                    "severity" => rule.severity.as_str().to_string(),
                    "series" => tr
                        .labels
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect::<Vec<_>>()
                        .join(","),
                    other if other.starts_with("details.") => {
                        let d = tr.details.get(&other["details.".len()..]);
                        match (d, d.and_then(|v| v.parse::<f64>().ok()), fmt) {
                            (Some(_), Some(v), Some(_)) => num(Some(v)),
                            (Some(v), _, _) => v.clone(),
                            (None, _, _) => "n/a".into(),
                        }
                    }
                    other => other
                        .strip_prefix("labels.")
                        .and_then(|l| tr.labels.iter().find(|(k, _)| k == l))
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default(),
                };
                out.push_str(&s);
            }
        }
    }
    out
}

fn format_number(v: Option<f64>, fmt: Option<&str>) -> String {
    let Some(v) = v else {
        return "n/a".into();
    };
    if v.is_infinite() {
        return "∞".into();
    }
    match fmt {
        Some("pct") => format!("{:.2}%", v * 100.0),
        Some("ms") => {
            if v.abs() >= 1000.0 {
                format!("{:.2} s", v / 1000.0)
            } else {
                format!("{v:.0} ms")
            }
        }
        Some("round") => format!("{v:.2}"),
        Some("usd") => format!("${v:.4}"),
        _ => {
            // Four significant digits.
            if v == 0.0 {
                "0".into()
            } else {
                let digits = (3 - v.abs().log10().floor() as i32).clamp(0, 12) as usize;
                format!("{v:.digits$}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::evaluate::Measured;
    use std::path::Path;

    fn rule(for_s: i64, keep_s: i64) -> Rule {
        let text = format!(
            "rules:
  - name: r
    signal: {{ metric: error_rate }}
    over: 1m
    baseline: {{ value: 0.01 }}
    condition: {{ effect: value, above: 0.05, recover: 0.03 }}
    for: {for_s}s
    keep_firing_for: {keep_s}s
    severity: page
    annotations: {{ summary: \"rate {{{{ value | pct }}}} on {{{{ labels.service }}}}\", runbook_url: https://x }}
"
        );
        let ctx =
            crate::detect::rules::RuleContext::for_tests(vec![crate::event::SeriesLabel::Service]);
        crate::detect::rules::parse_file(Path::new("r.yaml"), &text, &ctx)
            .unwrap()
            .remove(0)
    }

    fn eval(rate: Option<f64>) -> Vec<Evaluation> {
        vec![Evaluation {
            labels: vec![("service".into(), "chat".into())],
            n_current: 1000,
            n_baseline: 0,
            outcome: match rate {
                None => Outcome::NoData("too few current samples"),
                Some(v) => Outcome::Measured(Measured {
                    value: v,
                    baseline: 0.01,
                    effect: v,
                    p_value: f64::NAN,
                    breached: v > 0.05,
                    still_breached: v > 0.03,
                    significant: true,
                }),
            },
            horizon_ms: 300_000,
            onset_ms: rate.map(|_| 1_000),
            details: Default::default(),
        }]
    }

    const LIFE: Lifecycle = Lifecycle {
        stale_after_ms: 600_000,
        forget_after_ms: 900_000,
    };
    const M: i64 = 60_000;

    fn states(book: &mut AlertBook, r: &Rule, seq: &[Option<f64>]) -> Vec<(i64, AlertState)> {
        let mut out = Vec::new();
        for (i, v) in seq.iter().enumerate() {
            for t in book.apply(r, i as i64 * M, eval(*v), LIFE) {
                out.push((i as i64, t.to));
            }
        }
        out
    }

    #[test]
    fn for_holds_pending_then_fires_and_hysteresis_resolves() {
        use AlertState::*;
        let r = rule(120, 0);
        let mut book = AlertBook::default();
        // 6 % at minutes 1..=3 → pending at 1, firing at 3; 4 % stays firing (above the
        // 3 % recovery threshold); 2 % resolves.
        let seq = [
            Some(0.01),
            Some(0.06),
            Some(0.06),
            Some(0.06),
            Some(0.04),
            Some(0.02),
        ];
        assert_eq!(
            states(&mut book, &r, &seq),
            vec![(1, Pending), (3, Firing), (5, Resolved)]
        );
    }

    #[test]
    fn pending_that_clears_goes_inactive_and_no_data_never_fires() {
        use AlertState::*;
        let r = rule(120, 0);
        let mut book = AlertBook::default();
        let seq = [
            Some(0.06),
            Some(0.02),
            Some(0.06),
            None,
            Some(0.06),
            Some(0.06),
        ];
        assert_eq!(
            states(&mut book, &r, &seq),
            vec![
                (0, Pending),
                (1, Inactive),
                (2, Pending),
                (3, Inactive),
                (4, Pending)
            ]
        );
    }

    #[test]
    fn keep_firing_for_and_stale_series() {
        use AlertState::*;
        let r = rule(0, 180);
        let mut book = AlertBook::default();
        // for: 0 fires at once; keep_firing_for 3m counts from the first healthy evaluation
        // (minute 4, after the relapse at 3), so it resolves at 7, as Prometheus does.
        let seq = [
            Some(0.06),
            Some(0.01),
            Some(0.01),
            Some(0.06),
            Some(0.01),
            Some(0.01),
            Some(0.01),
            Some(0.01),
        ];
        assert_eq!(
            states(&mut book, &r, &seq),
            vec![(0, Firing), (7, Resolved)]
        );
        // A firing alert without data resolves only after stale_after (10 minutes).
        let mut book = AlertBook::default();
        let mut seq = vec![Some(0.06)];
        seq.extend(std::iter::repeat_n(None, 12));
        assert_eq!(
            states(&mut book, &r, &seq),
            vec![(0, Firing), (10, Resolved)]
        );
    }

    #[test]
    fn inactive_instances_are_dropped_and_resolved_ones_after_keep_resolved() {
        let r = rule(0, 0);
        let mut book = AlertBook::default();
        book.apply(&r, 0, eval(Some(0.01)), LIFE);
        assert!(book.is_empty(), "an instance that never fired is not kept");
        book.apply(&r, M, eval(Some(0.07)), LIFE);
        book.apply(&r, 2 * M, eval(Some(0.01)), LIFE);
        assert_eq!(book.alerts().next().unwrap().state, AlertState::Resolved);
        // Still sending healthy data: kept for keep_resolved (15 min), then dropped.
        for m in 3..17 {
            book.apply(&r, m * M, eval(Some(0.01)), LIFE);
        }
        assert_eq!(book.len(), 1);
        book.apply(&r, 17 * M, eval(Some(0.01)), LIFE);
        assert!(book.is_empty());
    }

    #[test]
    fn removing_a_rule_resolves_its_firing_alerts() {
        let r = rule(0, 0);
        let mut book = AlertBook::default();
        book.apply(&r, 0, eval(Some(0.07)), LIFE);
        let ended = book.retain_rules(&[], std::slice::from_ref(&r));
        assert_eq!(ended.len(), 1);
        assert_eq!(
            (ended[0].from, ended[0].to),
            (AlertState::Firing, AlertState::Resolved)
        );
        assert_eq!(ended[0].reason, "rule removed");
        assert!(book.is_empty());
    }

    #[test]
    fn book_survives_a_json_round_trip_and_renders_summaries() {
        let r = rule(0, 0);
        let mut book = AlertBook::default();
        let t = book.apply(&r, 0, eval(Some(0.07)), LIFE);
        assert_eq!(t[0].summary, "rate 7.00% on chat");
        assert_eq!(t[0].fingerprint, fingerprint("r", &t[0].labels));
        let json = serde_json::to_string(&book).unwrap();
        let back: AlertBook = serde_json::from_str(&json).unwrap();
        assert_eq!(back, book);
        // Restored, the same evaluation is no transition: a restart does not re-fire.
        let mut back = back;
        assert!(back.apply(&r, M, eval(Some(0.07)), LIFE).is_empty());
    }
}
