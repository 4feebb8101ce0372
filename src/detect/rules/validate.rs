//! Checks of a parsed rule against the daemon's configuration ([`RuleContext`]): label names,
//! durations against the window and slice widths, signal / baseline / condition / test
//! combinations, minimum samples and templates. Every problem becomes a [`RuleError`] naming
//! the file, line, rule and field; a rule without errors compiles into a [`Rule`].

use std::fmt;
use std::path::Path;
use std::time::Duration;

use super::error::RuleError;
use super::spec::{
    quantile_name, Action, Baseline, BaselineSpec, Category, Condition, ConditionSpec, Direction,
    EffectKind, Null, OneOrMany, Resolution, Rule, RuleContext, RuleSpec, Shape, Signal,
    SignalSpec, Test, TestKind, TestSpec, BASELINE_VERSION_LABEL, CODE_FIELD_LABEL, CODE_LABEL,
    JUDGE_LABEL, NEW_CODE_MIN_BASELINE, NEW_CODE_MIN_EVENTS,
};
use super::template::check_template;
use crate::window::sketch::Metric;

/// Validates one parsed rule of `file`: the compiled rule, or every problem found.
pub(super) fn rule(file: &Path, r: RuleSpec, ctx: &RuleContext) -> Result<Rule, Vec<RuleError>> {
    let mut v = Validator {
        file,
        line: r.name.referenced.line(),
        rule: r.name.value.clone(),
        errors: Vec::new(),
    };
    match v.rule(r, ctx) {
        Some(rule) if v.errors.is_empty() => Ok(rule),
        _ => Err(v.errors),
    }
}

struct Validator<'a> {
    file: &'a Path,
    line: u64,
    rule: String,
    errors: Vec<RuleError>,
}

impl Validator<'_> {
    fn err(&mut self, field: &str, message: impl fmt::Display) {
        self.errors.push(RuleError::Invalid {
            file: self.file.to_path_buf(),
            line: self.line,
            rule: self.rule.clone(),
            field: field.to_string(),
            message: message.to_string(),
        });
    }

    fn label(&mut self, field: &str, name: &str, ctx: &RuleContext) -> Option<usize> {
        let found = ctx.labels.iter().position(|l| l.as_str() == name);
        if found.is_none() {
            let known: Vec<_> = ctx.labels.iter().map(|l| l.as_str()).collect();
            self.err(
                field,
                format!(
                    "{name:?} is not a series label; series.labels is [{}]",
                    known.join(", ")
                ),
            );
        }
        found
    }

    fn duration_ms(&mut self, field: &str, d: Duration, step: Duration, step_name: &str) -> i64 {
        let ms = d.as_millis() as i64;
        let step_ms = step.as_millis().max(1) as i64;
        if ms <= 0 {
            self.err(field, "must be greater than 0");
        } else if ms % step_ms != 0 {
            self.err(
                field,
                format!(
                    "{} is not a multiple of {step_name} ({}); rules read whole closed windows",
                    humantime::format_duration(d),
                    humantime::format_duration(step)
                ),
            );
        }
        ms
    }

    fn rule(&mut self, r: RuleSpec, ctx: &RuleContext) -> Option<Rule> {
        let name = r.name.value.clone();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            self.err(
                "name",
                "use letters, digits, `_` and `-` only (it names files and alert fingerprints)",
            );
        }
        let mut matchers = Vec::new();
        for (k, v) in r.matchers {
            if let Some(i) = self.label(&format!("match.{k}"), &k, ctx) {
                let values = match v {
                    OneOrMany::One(s) => vec![s],
                    OneOrMany::Many(v) => v,
                };
                if values.is_empty() {
                    self.err(&format!("match.{k}"), "list at least one value");
                }
                matchers.push((i, values));
            }
        }
        let by = match r.by {
            None => (0..ctx.labels.len()).collect(),
            Some(list) => {
                let mut out = Vec::new();
                for l in &list {
                    if let Some(i) = self.label("by", l, ctx) {
                        if out.contains(&i) {
                            self.err("by", format!("label {l:?} is listed twice"));
                        }
                        out.push(i);
                    }
                }
                out.sort_unstable();
                out
            }
        };
        let signal = self.signal(&r.signal)?;
        let shape = signal.shape();

        // Resolution: rules stepping faster than a window read the fast slices.
        let window_ms = ctx.window.as_millis() as i64;
        let every = r.every.unwrap_or(ctx.window);
        let resolution = if every.as_millis() as i64 % window_ms == 0 {
            Resolution::Window
        } else {
            Resolution::Slice
        };
        let (step, step_name) = match resolution {
            Resolution::Window => (ctx.window, "windows.width"),
            Resolution::Slice => (ctx.slice, "windows.slice"),
        };
        let every_ms = self.duration_ms("every", every, step, step_name);
        let over_ms = self.duration_ms("over", r.over, step, step_name);
        let mut horizons_ms = Vec::new();
        for (i, h) in r.horizons.iter().enumerate() {
            let field = format!("horizons[{i}]");
            match humantime::parse_duration(h) {
                Ok(d) => {
                    let ms = self.duration_ms(&field, d, step, step_name);
                    if ms > over_ms {
                        self.err(
                            &field,
                            format!(
                                "{h} is longer than over ({}); over is the longest horizon",
                                humantime::format_duration(r.over)
                            ),
                        );
                    } else if horizons_ms.contains(&ms) || ms == over_ms {
                        self.err(
                            &field,
                            format!("{h} is listed twice (over is always a horizon)"),
                        );
                    } else {
                        horizons_ms.push(ms);
                    }
                }
                Err(e) => self.err(
                    &field,
                    format!("{h:?} is not a duration ({e}); write e.g. 1m or 30s"),
                ),
            }
        }
        horizons_ms.push(over_ms);
        horizons_ms.sort_unstable();

        let baseline = self.baseline(&r.baseline, ctx, step, step_name);
        let novelty = shape == Shape::Novelty;
        let condition = match &r.condition {
            Some(_) if novelty => {
                self.err("condition", format!("{} fires on min_samples.events occurrences (default {NEW_CODE_MIN_EVENTS}) of a code absent from the baseline; remove condition", signal.describe()));
                None
            }
            // Set from min_samples.events below.
            None if novelty => None,
            Some(c) => self.condition(c, shape, baseline.as_ref()),
            None => {
                self.err(
                    "condition",
                    "missing; write e.g. condition: { effect: relative_change, above: 0.05 }",
                );
                None
            }
        };
        let test = r
            .test
            .as_ref()
            .and_then(|t| self.test(t, shape, baseline.as_ref(), condition.as_ref()));
        if let (Resolution::Slice, Some(Baseline::Trailing { offset_ms, .. })) =
            (resolution, &baseline)
        {
            // A fast rule runs before windows close: its trailing baseline must end before
            // the windows that may still be open, or live and backtest would see different
            // baselines.
            let need = window_ms + ctx.lateness.as_millis() as i64;
            if over_ms + offset_ms < need {
                self.err(
                    "baseline.offset",
                    format!(
                        "over + offset must be at least windows.width + windows.allowed_lateness ({}) for a rule stepping every {}: the baseline would read windows that are still open",
                        humantime::format_duration(std::time::Duration::from_millis(need as u64)),
                        humantime::format_duration(every)
                    ),
                );
            }
        }

        // Minimum samples: a quantile estimate needs ten samples beyond it to mean something;
        // the exceedance test counts samples beyond the threshold instead and needs far fewer.
        let exceedance = test.is_some_and(|t| t.kind == TestKind::Exceedance);
        let default_min = match &signal {
            Signal::Quantile { .. } if exceedance => 50,
            Signal::Quantile { q, .. } => crate::detect::stats::min_samples_for_quantile(*q, 10),
            Signal::ErrorRate
            | Signal::ErrorTypeRate(_)
            | Signal::NegativeFeedbackRate
            | Signal::FinishReasonRate(_)
            | Signal::NearContextRate => 100,
            _ if shape == Shape::Fact => 1,
            _ if novelty => 1,
            Signal::PromptVersionRegression => 100,
            _ => 30,
        };
        let min_current = r.min_samples.current.unwrap_or(default_min);
        let default_min_baseline = match &signal {
            Signal::Quantile { q, .. } => crate::detect::stats::min_samples_for_quantile(*q, 10),
            _ if novelty => NEW_CODE_MIN_BASELINE,
            _ => default_min,
        };
        let min_baseline = r.min_samples.baseline.unwrap_or(default_min_baseline);
        let min_events =
            r.min_samples
                .events
                .unwrap_or(if novelty { NEW_CODE_MIN_EVENTS } else { 0 });
        if r.min_samples.events.is_some() && shape != Shape::Rate && !exceedance && !novelty {
            self.err(
                "min_samples.events",
                "applies to rate signals (error_rate, error_type_rate, negative_feedback_rate, finish_reason_rate, near_context_rate), new_error_code and the exceedance test only",
            );
        }
        let condition = if novelty {
            if min_events == 0 {
                self.err("min_samples.events", "must be at least 1");
            }
            if !matches!(baseline, Some(Baseline::Trailing { .. })) {
                self.err("baseline", format!("{} looks for codes absent from a span before the current range; write baseline: {{ trailing: 7d }}", signal.describe()));
            }
            if r.test.is_some() {
                self.err(
                    "test",
                    "a code absent from the baseline needs no test; remove test",
                );
            }
            if !r.horizons.is_empty() {
                self.err(
                    "horizons",
                    "new_error_code counts over `over` only; remove horizons",
                );
            }
            // Fires on at least min_events occurrences; holds while the code still occurs
            // and is still new.
            Some(Condition {
                effect: EffectKind::Value,
                direction: Direction::Above,
                threshold: min_events as f64 - 0.5,
                recover: 0.5,
            })
        } else {
            condition
        };
        if let Signal::Quantile { q, .. } = &signal {
            let need = crate::detect::stats::min_samples_for_quantile(*q, 10);
            if min_current < need && !exceedance {
                self.err(
                    "min_samples.current",
                    format!(
                        "{min_current} is too few for {}: fewer than 10 samples would lie beyond it; use at least {need}",
                        quantile_name(*q)
                    ),
                );
            }
            let fixed = matches!(baseline, Some(Baseline::Value(_)));
            if !fixed && min_baseline < need {
                self.err(
                    "min_samples.baseline",
                    format!(
                        "{min_baseline} is too few for the baseline's {}; use at least {need}",
                        quantile_name(*q)
                    ),
                );
            }
        }
        if min_current == 0 {
            self.err("min_samples.current", "must be at least 1");
        }

        let for_ms = r.for_.map(|d| d.as_millis() as i64).unwrap_or(0);
        let keep_firing_for_ms = r.keep_firing_for.map(|d| d.as_millis() as i64).unwrap_or(0);

        // Combinations that validate field by field but could never work.
        match &baseline {
            Some(Baseline::Value(v)) if shape == Shape::Rate && !(0.0..=1.0).contains(v) => {
                self.err(
                    "baseline.value",
                    format!("{v} is not a rate; rates are proportions between 0 and 1 (1 % = 0.01)"),
                )
            }
            Some(Baseline::Value(v))
                if *v == 0.0
                    && matches!(
                        r.condition.as_ref().map(|c| c.effect),
                        Some(EffectKind::Ratio | EffectKind::RelativeChange)
                    ) =>
            {
                self.err(
                    "condition.effect",
                    "a ratio or relative change against a baseline value of 0 is undefined; use effect value or difference",
                )
            }
            Some(Baseline::Peer { set }) => {
                for (i, v) in set {
                    if !matchers.iter().any(|(m, _)| m == i) {
                        let l = ctx.labels[*i].as_str();
                        self.err(
                            &format!("baseline.peer.{l}"),
                            format!("add match: {{ {l}: <the other value> }} so the peer series ({l}={v}) is not compared with itself"),
                        );
                    }
                }
            }
            _ => {}
        }
        // Template labels must be labels of the alert instance.
        let mut instance_labels: Vec<&str> = by.iter().map(|i| ctx.labels[*i].as_str()).collect();
        if signal == Signal::JudgeMean(None) {
            instance_labels.push(JUDGE_LABEL);
        }
        if signal == Signal::NewErrorCode {
            instance_labels.extend([CODE_FIELD_LABEL, CODE_LABEL]);
        }
        if signal == Signal::PromptVersionRegression {
            let pv = crate::event::SeriesLabel::PromptVersion;
            if !ctx.labels.contains(&pv) {
                self.err(
                    "signal.metric",
                    "prompt_version_regression compares prompt versions; add prompt_version to series.labels",
                );
            } else if by.iter().any(|i| ctx.labels[*i] == pv) {
                self.err(
                    "by",
                    "remove prompt_version: the alert compares the versions of each instance (its labels add prompt_version and baseline_version)",
                );
            } else {
                instance_labels.extend([pv.as_str(), BASELINE_VERSION_LABEL]);
            }
            if !matches!(baseline, Some(Baseline::Trailing { .. })) {
                self.err("baseline", "prompt_version_regression reads the replaced version's traffic before the new one started; write baseline: { trailing: 2h }");
            }
            if let Some(c) = &r.condition {
                if c.effect != EffectKind::RelativeChange || c.above.is_none() {
                    self.err("condition", "prompt_version_regression fires when a metric is worse by more than a relative tolerance; write condition: { effect: relative_change, above: 0.05 }");
                }
            }
        }
        if let Some(need) = signal.keyed_by() {
            let has = by.iter().any(|i| ctx.labels[*i] == need);
            if !has {
                let why = if ctx.labels.contains(&need) {
                    format!("add {need} to by: the signal looks up each alert's {need}")
                } else {
                    format!("the signal needs the series label {need}; add it to series.labels")
                };
                self.err("by", why);
            }
        }
        if shape == Shape::Fact {
            if r.condition
                .as_ref()
                .is_some_and(|c| c.effect != EffectKind::Value)
            {
                self.err("condition.effect", "this signal is a fact, not a measurement against a baseline; use effect: value");
            }
            if !matches!(baseline, Some(Baseline::Value(_))) {
                self.err(
                    "baseline",
                    "this signal has no baseline; write baseline: { value: <the threshold> }",
                );
            }
        }
        if signal.window_only() && resolution == Resolution::Slice {
            self.err(
                "every",
                format!(
                    "{} is evaluated on closed windows; step every windows.width ({}) or a multiple",
                    signal.describe(),
                    humantime::format_duration(ctx.window)
                ),
            );
        }
        if let Some(field) = signal.served_field() {
            if !matches!(baseline, Some(Baseline::Trailing { .. })) {
                self.err(
                    "baseline",
                    format!("{field}_change compares what served the requests with what did before; write baseline: {{ trailing: 1h }}"),
                );
            }
            if r.condition
                .as_ref()
                .is_some_and(|c| c.effect != EffectKind::Difference)
            {
                self.err(
                    "condition.effect",
                    format!("{field}_change measures how much the new {field}'s share rose against the baseline; use effect: difference"),
                );
            }
        }
        if matches!(signal, Signal::BudgetSpend | Signal::BudgetProjection)
            && over_ms != crate::detect::evaluate::DAY_MS
        {
            self.err(
                "over",
                "budget signals read the UTC day so far; write over: 24h",
            );
        }
        let details = signal.details();

        for (k, v) in &r.labels {
            if !valid_label_name(k) {
                self.err(
                    &format!("labels.{k}"),
                    "label names use letters, digits and `_`",
                );
            }
            self.template(&format!("labels.{k}"), v, ctx, &instance_labels, details);
        }
        for (k, v) in &r.annotations {
            self.template(
                &format!("annotations.{k}"),
                v,
                ctx,
                &instance_labels,
                details,
            );
        }
        if !r.annotations.contains_key("summary") {
            self.err(
                "annotations.summary",
                "every rule needs a summary (a template with the numbers, e.g. \"{{ signal }} is {{ value }}\")",
            );
        }
        if !r.annotations.contains_key("runbook_url") {
            self.err(
                "annotations.runbook_url",
                "every rule needs a runbook link: what the first responder checks and does",
            );
        }
        let breaker_shapes = [Shape::Rate, Shape::Moments, Shape::Quantile];
        if r.action == Some(Action::CircuitBreaker)
            && (!breaker_shapes.contains(&shape) || signal.served_field().is_some())
        {
            self.err(
                "action",
                "circuit_breaker rules watch a rate (error_rate, error_type_rate, …), a judge score or a latency quantile",
            );
        }
        Some(Rule {
            name,
            file: self.file.to_path_buf(),
            line: self.line,
            description: r.description,
            matchers,
            by,
            signal,
            over_ms,
            horizons_ms,
            every_ms,
            resolution,
            baseline: baseline?,
            condition: condition?,
            test,
            min_current,
            min_baseline,
            min_events,
            for_ms,
            keep_firing_for_ms,
            severity: r.severity,
            labels: r.labels,
            annotations: r.annotations,
            channels: r.channels,
            action: r.action,
        })
    }

    fn signal(&mut self, s: &SignalSpec) -> Option<Signal> {
        let metric = match s.metric.as_str() {
            "latency_ms" => Some(Metric::LatencyMs),
            "ttft_ms" => Some(Metric::TtftMs),
            "input_tokens" => Some(Metric::InputTokens),
            "output_tokens" => Some(Metric::OutputTokens),
            "cost_usd" => Some(Metric::CostUsd),
            _ => None,
        };
        let unused = |v: &mut Self, field: &str, set: bool, metric: &str| {
            if set {
                v.err(
                    &format!("signal.{field}"),
                    format!("does not apply to metric {metric}; remove it"),
                );
            }
        };
        if s.metric != "finish_reason_rate" {
            unused(self, "finish_reason", s.finish_reason.is_some(), &s.metric);
        }
        if let Some(metric) = metric {
            unused(self, "error_type", s.error_type.is_some(), &s.metric);
            unused(self, "judge", s.judge.is_some(), &s.metric);
            unused(self, "of", s.of.is_some(), &s.metric);
            let Some(stat) = s.stat.as_deref() else {
                self.err(
                    "signal.stat",
                    format!(
                        "metric {} needs a stat: p50, p90, p95, p99, p999, mean or distribution",
                        s.metric
                    ),
                );
                return None;
            };
            return match stat {
                "mean" => Some(Signal::Mean { metric }),
                "distribution" => Some(Signal::Distribution { metric }),
                p => match parse_quantile(p) {
                    Some(q) => Some(Signal::Quantile { metric, q }),
                    None => {
                        self.err(
                            "signal.stat",
                            format!("{p:?} is not a stat; use p50, p90, p95, p99, p999 (any pNN / pNNN), mean or distribution"),
                        );
                        None
                    }
                },
            };
        }
        let m = s.metric.as_str();
        if s.stat.is_some() && m != "judge_score" {
            unused(self, "stat", true, m);
        }
        if m != "error_type_rate" {
            unused(self, "error_type", s.error_type.is_some(), m);
        }
        if m != "judge_score" {
            unused(self, "judge", s.judge.is_some(), m);
        }
        if m != "distribution" {
            unused(self, "of", s.of.is_some(), m);
        }
        match m {
            "error_rate" => Some(Signal::ErrorRate),
            "error_type_rate" => match &s.error_type {
                Some(t) if !t.is_empty() => Some(Signal::ErrorTypeRate(t.clone())),
                _ => {
                    self.err("signal.error_type", "metric error_type_rate needs the error_type to watch, e.g. error_type: rate_limit");
                    None
                }
            },
            "negative_feedback_rate" => Some(Signal::NegativeFeedbackRate),
            "finish_reason_rate" => match &s.finish_reason {
                Some(f) if !f.is_empty() => Some(Signal::FinishReasonRate(f.clone())),
                _ => {
                    self.err("signal.finish_reason", "metric finish_reason_rate needs the finish_reason to watch, e.g. finish_reason: length");
                    None
                }
            },
            "near_context_rate" => Some(Signal::NearContextRate),
            "cache_read_ratio" => Some(Signal::CacheReadRatio),
            "days_to_deprecation" => Some(Signal::DaysToDeprecation),
            "unknown_model" => Some(Signal::UnknownModel),
            "budget_spend" => Some(Signal::BudgetSpend),
            "budget_projection" => Some(Signal::BudgetProjection),
            "response_model_change" => Some(Signal::ResponseModelChange),
            "system_fingerprint_change" => Some(Signal::SystemFingerprintChange),
            "new_error_code" => Some(Signal::NewErrorCode),
            "prompt_version_regression" => Some(Signal::PromptVersionRegression),
            "judge_score" => {
                if let Some(st) = s.stat.as_deref() {
                    if st != "mean" {
                        self.err(
                            "signal.stat",
                            format!("judge_score supports stat mean only (got {st:?})"),
                        );
                    }
                }
                Some(Signal::JudgeMean(s.judge.clone()))
            }
            "distribution" => {
                let of = s.of.as_deref().unwrap_or("");
                match Category::ALL.iter().find(|(n, _)| *n == of) {
                    Some((_, c)) => Some(Signal::Categorical(*c)),
                    None => {
                        let names: Vec<_> = Category::ALL.iter().map(|(n, _)| *n).collect();
                        self.err("signal.of", format!("metric distribution needs of: one of {} (got {of:?}); for a histogram metric use its stat: distribution", names.join(", ")));
                        None
                    }
                }
            }
            other => {
                self.err("signal.metric", format!("unknown metric {other:?}; use latency_ms, ttft_ms, input_tokens, output_tokens, cost_usd, error_rate, error_type_rate, negative_feedback_rate, finish_reason_rate, near_context_rate, cache_read_ratio, judge_score, days_to_deprecation, unknown_model, budget_spend, budget_projection, response_model_change, system_fingerprint_change, new_error_code, prompt_version_regression or distribution"));
                None
            }
        }
    }

    fn baseline(
        &mut self,
        b: &BaselineSpec,
        ctx: &RuleContext,
        step: Duration,
        step_name: &str,
    ) -> Option<Baseline> {
        let kinds = [b.trailing.is_some(), !b.peer.is_empty(), b.value.is_some()];
        if kinds.iter().filter(|k| **k).count() != 1 {
            self.err(
                "baseline",
                "give exactly one of trailing (a range before the current one), peer (label values of a peer series) or value (a constant)",
            );
            return None;
        }
        if let Some(t) = b.trailing {
            let range_ms = self.duration_ms("baseline.trailing", t, step, step_name);
            let offset_ms = match b.offset {
                Some(o) if o.is_zero() => 0,
                Some(o) => self.duration_ms("baseline.offset", o, step, step_name),
                None => 0,
            };
            let mut across = Vec::new();
            for l in &b.across {
                if let Some(i) = self.label("baseline.across", l, ctx) {
                    across.push(i);
                }
            }
            return Some(Baseline::Trailing {
                range_ms,
                offset_ms,
                across,
            });
        }
        if b.offset.is_some() || !b.across.is_empty() {
            self.err(
                "baseline",
                "offset and across apply to a trailing baseline only",
            );
        }
        if let Some(v) = b.value {
            if !v.is_finite() {
                self.err("baseline.value", "must be a finite number");
            }
            return Some(Baseline::Value(v));
        }
        let mut set = Vec::new();
        for (k, v) in &b.peer {
            if let Some(i) = self.label(&format!("baseline.peer.{k}"), k, ctx) {
                set.push((i, v.clone()));
            }
        }
        Some(Baseline::Peer { set })
    }

    fn condition(
        &mut self,
        c: &ConditionSpec,
        shape: Shape,
        baseline: Option<&Baseline>,
    ) -> Option<Condition> {
        let (direction, threshold) = match (c.above, c.below) {
            (Some(a), None) => (Direction::Above, a),
            (None, Some(b)) => (Direction::Below, b),
            _ => {
                self.err(
                    "condition",
                    "give exactly one of above: <threshold> or below: <threshold>",
                );
                return None;
            }
        };
        if !threshold.is_finite() {
            self.err("condition", "the threshold must be a finite number");
        }
        let distribution = matches!(shape, Shape::HistDistribution | Shape::Categorical);
        if distribution != c.effect.is_distance() {
            if distribution {
                self.err("condition.effect", format!("{} compares single values; a distribution signal needs effect psi or jensen_shannon", c.effect.as_str()));
            } else {
                self.err("condition.effect", format!("{} compares distributions; use value, ratio, relative_change or difference", c.effect.as_str()));
            }
        }
        if c.effect.is_distance() && direction == Direction::Below {
            self.err(
                "condition",
                "a distance between distributions alerts when above a threshold",
            );
        }
        if matches!(baseline, Some(Baseline::Value(_))) && c.effect.is_distance() {
            self.err(
                "baseline.value",
                "a distribution needs a trailing or peer baseline",
            );
        }
        let recover = c.recover.unwrap_or(threshold);
        let inverted = match direction {
            Direction::Above => recover > threshold,
            Direction::Below => recover < threshold,
        };
        if inverted {
            self.err(
                "condition.recover",
                format!(
                    "must be on the healthy side of the threshold ({} {threshold}) so the alert cannot flap",
                    if direction == Direction::Above { "≤" } else { "≥" }
                ),
            );
        }
        Some(Condition {
            effect: c.effect,
            direction,
            threshold,
            recover,
        })
    }

    fn test(
        &mut self,
        t: &TestSpec,
        shape: Shape,
        baseline: Option<&Baseline>,
        condition: Option<&Condition>,
    ) -> Option<Test> {
        use TestKind::*;
        let fits = match t.kind {
            WelchT => shape == Shape::Moments,
            MannWhitney | Ks | AndersonDarling => {
                matches!(
                    shape,
                    Shape::Quantile | Shape::HistMean | Shape::HistDistribution
                )
            }
            QuantileCi | Exceedance => shape == Shape::Quantile,
            TwoProportionZ | Binomial | Wilson => shape == Shape::Rate,
            ChiSquare => matches!(shape, Shape::Categorical | Shape::HistDistribution),
            Compare => shape == Shape::Comparison,
        } && shape != Shape::Fact
            && shape != Shape::Novelty;
        if !fits {
            let hint = match shape {
                Shape::Quantile => "exceedance, quantile_ci, mann_whitney, ks or anderson_darling",
                Shape::HistMean => "mann_whitney, ks or anderson_darling",
                Shape::HistDistribution => "ks, anderson_darling, mann_whitney or chi_square",
                Shape::Rate => "two_proportion_z, binomial or wilson",
                Shape::Moments => "welch_t",
                Shape::Categorical => "chi_square",
                Shape::Fact | Shape::Novelty => "no test (remove test:)",
                Shape::Comparison => "compare",
            };
            self.err(
                "test.kind",
                format!(
                    "{} does not apply to this signal; use {hint}",
                    t.kind.as_str()
                ),
            );
            return None;
        }
        let fixed = matches!(baseline, Some(Baseline::Value(_)));
        if fixed && !matches!(t.kind, Binomial | Wilson | Exceedance) {
            self.err("test.kind", format!("{} compares two samples; against a fixed baseline value use binomial or wilson (exceedance for a quantile)", t.kind.as_str()));
        }
        if t.kind == Exceedance {
            if let Some(c) = condition {
                let effect_ok = match c.effect {
                    EffectKind::Ratio => !fixed,
                    EffectKind::Value => true,
                    _ => false,
                };
                if !effect_ok || c.direction != Direction::Above {
                    self.err("test.kind", "exceedance tests \"the quantile is above threshold × baseline\" (effect ratio, above) or \"above a value\" (effect value, above)");
                }
            }
        }
        let null = t.null.unwrap_or(Null::NoChange);
        if null == Null::Threshold {
            let effect_ok = condition.is_some_and(|c| {
                matches!(
                    c.effect,
                    EffectKind::RelativeChange | EffectKind::Difference
                )
            });
            if t.kind != WelchT || !effect_ok || fixed {
                self.err("test.against", "threshold applies to welch_t with effect relative_change or difference against a trailing or peer baseline (binomial, wilson and exceedance test the threshold already)");
            }
        }
        if !fixed && matches!(t.kind, Binomial | Wilson) && baseline.is_some() {
            self.err("test.kind", format!("{} tests a rate against a fixed baseline value; against a trailing or peer baseline use two_proportion_z", t.kind.as_str()));
        }
        let alpha = t.alpha.unwrap_or(0.01);
        let confidence = t.confidence.unwrap_or(0.95);
        if t.kind.uses_confidence() {
            if t.alpha.is_some() {
                self.err(
                    "test.alpha",
                    format!("{} uses confidence, not alpha", t.kind.as_str()),
                );
            }
            if !(confidence > 0.5 && confidence < 1.0) {
                self.err("test.confidence", "must be between 0.5 and 1 (e.g. 0.95)");
            }
        } else {
            if t.confidence.is_some() {
                self.err(
                    "test.confidence",
                    format!("{} uses alpha, not confidence", t.kind.as_str()),
                );
            }
            if !(alpha > 0.0 && alpha < 0.5) {
                self.err("test.alpha", "must be between 0 and 0.5 (e.g. 0.01)");
            }
        }
        if let Some(a) = t.change_alpha {
            if t.kind != Exceedance || fixed {
                self.err(
                    "test.change_alpha",
                    "applies to the exceedance test against a trailing or peer baseline",
                );
            } else if !(a > 0.0 && a < 0.5) {
                self.err("test.change_alpha", "must be between 0 and 0.5 (e.g. 1e-6)");
            }
        }
        Some(Test {
            kind: t.kind,
            alpha,
            confidence,
            null,
            change_alpha: t.change_alpha,
        })
    }

    fn template(
        &mut self,
        field: &str,
        text: &str,
        ctx: &RuleContext,
        instance: &[&str],
        details: &[&str],
    ) {
        if let Err(e) = check_template(text, ctx, instance, details) {
            self.err(field, e);
        }
    }
}

fn valid_label_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_quantile(s: &str) -> Option<f64> {
    let digits = s.strip_prefix('p')?;
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) || digits.len() > 4 {
        return None;
    }
    // p50 → 0.5; three or four digits are tail quantiles: p999 → 0.999, p9999 → 0.9999.
    if digits.len() != 2 && !digits.starts_with("99") {
        return None;
    }
    let v: f64 = digits.parse().ok()?;
    let q = v / 10f64.powi(digits.len() as i32);
    (q > 0.0 && q < 1.0).then_some(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_names() {
        assert_eq!(parse_quantile("p99"), Some(0.99));
        assert_eq!(parse_quantile("p50"), Some(0.5));
        assert_eq!(parse_quantile("p999"), Some(0.999));
        assert_eq!(parse_quantile("p100"), None);
        assert_eq!(parse_quantile("p"), None);
    }
}
