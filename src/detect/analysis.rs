//! Rollout analyses: a canary arm against stable, each A/B variant against the control, a
//! shadow deployment against the primary on the same requests — judged the way automated
//! canary analysis does it (Kayenta's judge).
//!
//! Every configured metric is compared with [`crate::detect::compare`] (Welch's t for means,
//! a proportion test for error rates and quantile tails, Mann–Whitney U for token and cost
//! distributions; paired tests for a shadow) and classified **High**, **Low** or **Pass**
//! (**NoData** below the sample minimums). A metric *fails* when it moved in the direction
//! configured as bad (`increase`, `decrease` or `either`). The run's score is the weight of
//! the passing metrics over the weight of every metric with data, × 100; it classifies the
//! run **Pass** (≥ `thresholds.pass`), **Marginal** (≥ `thresholds.marginal`) or **Fail**.
//! A failing `critical` metric fails the run outright. While a metric lacks data the run is
//! **NotEnoughData**, unless it already fails whatever the missing metrics turn out to be.
//! A Fail is final for the run and sends one `rollback` webhook.
//!
//! A run starts with the first window in which the candidate arm has traffic and lasts
//! `duration` (24 h by default). It ends early when the candidate has had no traffic for
//! `end_after_idle` (rolled back or promoted). Windows enter a run at the tick after they
//! close, so a backtest and the live daemon judge the same data at the same ticks. Pure and
//! deterministic: no I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::compare::{self, Classification, CompareMetric, CompareOptions, MetricResult};
use crate::detect::history::Summary;
use crate::window::sketch::Metric;

pub use crate::window::pairs::{PairedStats, PairedWindow};

/// What an analysis compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnalysisKind {
    /// `deployment = candidate` (default `canary`) vs `deployment = baseline` (`stable`).
    Canary,
    /// Each `variant` vs `variant = control`.
    Ab,
    /// `deployment = shadow` vs the primary that served the same `trace_id`.
    Shadow,
}

impl AnalysisKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AnalysisKind::Canary => "canary",
            AnalysisKind::Ab => "ab",
            AnalysisKind::Shadow => "shadow",
        }
    }
}

/// Which movement of a metric fails it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Increase,
    Decrease,
    Either,
}

/// One metric of an analysis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricConfig {
    /// `judge:NAME`, `feedback`, `error_rate`, `latency_p50`, `latency_p99`,
    /// `output_tokens` or `cost`.
    pub metric: String,
    /// Share of the score. Default 1.
    #[serde(default = "one")]
    pub weight: f64,
    /// Which movement fails it. Default: `decrease` for judge scores and feedback,
    /// `increase` for everything else.
    #[serde(default)]
    pub direction: Option<Direction>,
    /// A failing critical metric fails the run whatever the score. Default `false`.
    #[serde(default)]
    pub critical: bool,
}

fn one() -> f64 {
    1.0
}

/// Score thresholds (0–100).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    /// Default 95.
    pub pass: f64,
    /// Default 75.
    pub marginal: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            pass: 95.0,
            marginal: 75.0,
        }
    }
}

/// `[[analyses]]`: one rollout analysis of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnalysisConfig {
    /// The analysis id in the API (`/api/v1/analyses/{name}`).
    pub name: String,
    pub kind: AnalysisKind,
    /// The `service` label value analysed.
    pub service: String,
    /// How long a run lasts from the candidate's first traffic. Default `24h`.
    #[serde(default = "day", with = "humantime_serde")]
    pub duration: Duration,
    /// A run whose candidate has had no traffic this long ends (rolled back or promoted).
    /// Default `30m`.
    #[serde(default = "half_hour", with = "humantime_serde")]
    pub end_after_idle: Duration,
    /// Canary and shadow: the `deployment` of the candidate. Default `canary` (`shadow`
    /// for a shadow analysis).
    #[serde(default)]
    pub candidate: Option<String>,
    /// Canary: the `deployment` compared against. Default `stable`.
    #[serde(default)]
    pub baseline: Option<String>,
    /// A/B: the control `variant`. Default `control`.
    #[serde(default)]
    pub control: Option<String>,
    /// Series labels a run is split by (each value its own run). Default
    /// `["request_model"]` (a shadow: none, it is often another model).
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Metrics with weights; default: every judge score, feedback, error rate, P99
    /// latency, output tokens and cost that either side has, weight 1 each (a shadow:
    /// every paired judge score, P50 and P99 latency, output tokens).
    #[serde(default)]
    pub metrics: Vec<MetricConfig>,
    #[serde(default)]
    pub thresholds: Thresholds,
    /// Largest relative change that still passes (0.05 = 5 %). Default 0.05.
    #[serde(default = "five_percent")]
    pub tolerance: f64,
    /// Family significance level, split over the metrics. Default 0.01.
    #[serde(default = "one_percent")]
    pub alpha: f64,
    /// Fewest requests (scores, pairs) per side before a metric is judged. Default 100.
    #[serde(default = "hundred")]
    pub min_samples: u64,
    /// The candidate's planned share of traffic (0.05 = 5 %), reported next to the observed
    /// one. Optional.
    #[serde(default)]
    pub expected_share: Option<f64>,
    /// Consecutive window ticks a run must judge Fail before it fails (and rolls back):
    /// the run is re-tested at every tick, and one noisy look must not roll back. Until
    /// then it shows Marginal. Default 3.
    #[serde(default = "three")]
    pub fail_after: u32,
    /// Webhook channels that get the `rollback` command when a run fails. Default
    /// `["rollback"]` (a channel of that name, when configured).
    #[serde(default = "rollback_channels")]
    pub rollback_channels: Vec<String>,
}

fn day() -> Duration {
    Duration::from_secs(24 * 3600)
}
fn half_hour() -> Duration {
    Duration::from_secs(1800)
}
fn five_percent() -> f64 {
    0.05
}
fn one_percent() -> f64 {
    0.01
}
fn three() -> u32 {
    3
}
fn hundred() -> u64 {
    100
}
fn rollback_channels() -> Vec<String> {
    vec!["rollback".into()]
}

/// Why an analysis config is refused.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("analyses[{index}].{field}: {message}")]
pub struct AnalysisConfigError {
    pub index: usize,
    pub field: String,
    pub message: String,
}

impl AnalysisConfig {
    pub fn candidate(&self) -> &str {
        self.candidate.as_deref().unwrap_or(match self.kind {
            AnalysisKind::Shadow => "shadow",
            _ => "canary",
        })
    }

    pub fn baseline(&self) -> &str {
        self.baseline.as_deref().unwrap_or("stable")
    }

    pub fn control(&self) -> &str {
        self.control.as_deref().unwrap_or("control")
    }

    pub fn group_by(&self) -> Vec<String> {
        match (&self.group_by, self.kind) {
            (Some(g), _) => g.clone(),
            (None, AnalysisKind::Shadow) => Vec::new(),
            (None, _) => vec!["request_model".into()],
        }
    }

    /// The label the arms differ in.
    pub fn arm_label(&self) -> &'static str {
        match self.kind {
            AnalysisKind::Ab => "variant",
            _ => "deployment",
        }
    }

    /// Checks the analysis against the configured series labels.
    pub fn validate(&self, index: usize, labels: &[&str]) -> Result<(), AnalysisConfigError> {
        let err = |field: &str, message: String| AnalysisConfigError {
            index,
            field: field.into(),
            message,
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(err(
                "name",
                format!(
                    "{:?} is not an id; use letters, digits, '-', '_' or '.', e.g. chat-canary",
                    self.name
                ),
            ));
        }
        for (field, v) in [("candidate", &self.candidate), ("baseline", &self.baseline)] {
            if let Some(v) = v {
                if self.kind == AnalysisKind::Ab {
                    return Err(err(
                        field,
                        "an A/B analysis compares variants; set control instead".into(),
                    ));
                }
                if !["stable", "canary", "shadow"].contains(&v.as_str()) {
                    return Err(err(
                        field,
                        format!("{v:?} is not a deployment; use stable, canary or shadow"),
                    ));
                }
            }
        }
        if self.control.is_some() && self.kind != AnalysisKind::Ab {
            return Err(err(
                "control",
                "only an A/B analysis has a control variant".into(),
            ));
        }
        if self.kind == AnalysisKind::Canary && self.candidate() == self.baseline() {
            return Err(err("baseline", "must differ from candidate".into()));
        }
        let mut needed = vec!["service"];
        if self.kind != AnalysisKind::Shadow {
            needed.push(self.arm_label());
        }
        for l in &needed {
            if !labels.contains(l) {
                return Err(err(
                    "kind",
                    format!(
                        "a {} analysis reads the series label {l:?}, which series.labels does not have; add it there",
                        self.kind.as_str()
                    ),
                ));
            }
        }
        for l in self.group_by() {
            if !labels.contains(&l.as_str()) {
                return Err(err(
                    "group_by",
                    format!("{l:?} is not a series label; use some of {labels:?}"),
                ));
            }
            if l == self.arm_label() || l == "service" {
                return Err(err(
                    "group_by",
                    format!("{l:?} is what the analysis compares; leave it out"),
                ));
            }
        }
        if self.duration.is_zero() {
            return Err(err("duration", "must be positive, e.g. 24h".into()));
        }
        if self.end_after_idle.is_zero() {
            return Err(err("end_after_idle", "must be positive, e.g. 30m".into()));
        }
        let t = self.thresholds;
        if !(0.0..=100.0).contains(&t.marginal) || !(t.marginal..=100.0).contains(&t.pass) {
            return Err(err(
                "thresholds",
                format!(
                    "need 0 ≤ marginal ≤ pass ≤ 100, got pass {} and marginal {}; e.g. {{ pass = 95, marginal = 75 }}",
                    t.pass, t.marginal
                ),
            ));
        }
        if !(self.tolerance >= 0.0 && self.tolerance < 10.0) {
            return Err(err(
                "tolerance",
                format!(
                    "{} is not a relative change; use e.g. 0.05 for 5 %",
                    self.tolerance
                ),
            ));
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(err(
                "alpha",
                format!("{} is not a significance level; use e.g. 0.01", self.alpha),
            ));
        }
        if self.min_samples < 2 {
            return Err(err("min_samples", "needs at least 2".into()));
        }
        if let Some(s) = self.expected_share {
            if !(s > 0.0 && s < 1.0) {
                return Err(err(
                    "expected_share",
                    format!("{s} is not a share; use e.g. 0.05 for 5 %"),
                ));
            }
        }
        let mut seen = BTreeSet::new();
        for (i, m) in self.metrics.iter().enumerate() {
            let field = format!("metrics[{i}]");
            let parsed = CompareMetric::parse(&m.metric).map_err(|e| err(&field, e))?;
            if self.kind == AnalysisKind::Shadow && !paired_metric(&parsed) {
                return Err(err(
                    &field,
                    format!(
                        "a shadow analysis compares paired requests on judge:NAME, latency_p50, latency_p99 and output_tokens; {} is not paired",
                        m.metric
                    ),
                ));
            }
            if !seen.insert(parsed.name()) {
                return Err(err(&field, format!("{} is listed twice", m.metric)));
            }
            if !(m.weight.is_finite() && m.weight > 0.0) {
                return Err(err(
                    &format!("{field}.weight"),
                    format!("{} is not a weight; use a positive number", m.weight),
                ));
            }
        }
        Ok(())
    }

    /// The configured metrics, or the defaults for what the two sides hold.
    fn metric_set(
        &self,
        candidate: &Summary,
        baseline: &Summary,
    ) -> Vec<(CompareMetric, MetricConfig)> {
        if self.metrics.is_empty() {
            // Defaults leave out what a side lacks (no feedback, no costs): it would
            // keep the run at "not enough data" for ever.
            let has = |s: &Summary, m: &CompareMetric| match m {
                CompareMetric::Feedback => s.feedback.iter().sum::<u64>() > 0,
                other => other
                    .histogram()
                    .is_none_or(|h| s.hist(h).is_some_and(|x| x.count() > 0)),
            };
            return CompareMetric::defaults(candidate, baseline)
                .into_iter()
                .filter(|m| has(candidate, m) && has(baseline, m))
                .map(|m| {
                    let c = MetricConfig {
                        metric: m.name(),
                        weight: 1.0,
                        direction: None,
                        critical: false,
                    };
                    (m, c)
                })
                .collect();
        }
        self.metrics
            .iter()
            .filter_map(|c| CompareMetric::parse(&c.metric).ok().map(|m| (m, c.clone())))
            .collect()
    }

    fn options(&self) -> CompareOptions {
        CompareOptions {
            tolerance: self.tolerance,
            alpha: self.alpha,
            min_samples: self.min_samples,
            ..CompareOptions::default()
        }
    }
}

/// Metrics a shadow pair is compared on.
pub fn paired_metric(m: &CompareMetric) -> bool {
    matches!(
        m,
        CompareMetric::Judge(_)
            | CompareMetric::LatencyP50
            | CompareMetric::LatencyP99
            | CompareMetric::OutputTokens
    )
}

/// Kayenta's run classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RunClass {
    Pass,
    NotEnoughData,
    Marginal,
    Fail,
}

impl RunClass {
    pub fn as_str(self) -> &'static str {
        match self {
            RunClass::Pass => "Pass",
            RunClass::NotEnoughData => "NotEnoughData",
            RunClass::Marginal => "Marginal",
            RunClass::Fail => "Fail",
        }
    }
}

/// One metric in a judged run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgedMetric {
    pub metric: String,
    pub weight: f64,
    pub direction: Direction,
    pub critical: bool,
    /// `High`, `Low`, `Pass` or `NoData`.
    pub classification: String,
    /// `pass`, `fail` or `nodata`.
    pub outcome: String,
    /// candidate / baseline (null without data or with a zero baseline).
    pub ratio: Option<f64>,
    pub candidate: Option<f64>,
    pub baseline: Option<f64>,
    pub p_value: Option<f64>,
    /// Interval of candidate / baseline − 1.
    pub ci: Option<(f64, f64)>,
    pub n_candidate: u64,
    pub n_baseline: u64,
    /// The test used.
    pub test: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The judgement of a run at one tick.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Judgement {
    /// 0–100 over the metrics with data; null while none has data.
    pub score: Option<f64>,
    pub classification: RunClass,
    pub metrics: Vec<JudgedMetric>,
    /// Why the classification is what it is, in words.
    pub reason: String,
}

fn opt(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

fn default_direction(m: &CompareMetric) -> Direction {
    if m.higher_is_better() {
        Direction::Decrease
    } else {
        Direction::Increase
    }
}

fn test_name(m: &CompareMetric, paired: bool) -> &'static str {
    match (m, paired) {
        (CompareMetric::Judge(_), true) => "paired t",
        (_, true) => "Wilcoxon signed-rank",
        (CompareMetric::Judge(_) | CompareMetric::Feedback, false) => "Welch's t",
        (CompareMetric::ErrorRate, false) => "two-proportion z",
        (CompareMetric::LatencyP50 | CompareMetric::LatencyP99, false) => {
            "two-proportion (tail above the baseline quantile)"
        }
        (_, false) => "Mann-Whitney U",
    }
}

/// Scores compared metrics the way Kayenta's weighted-sum scorer does.
pub fn judge(
    results: Vec<(MetricConfig, CompareMetric, MetricResult)>,
    thresholds: Thresholds,
    paired: bool,
) -> Judgement {
    let mut metrics = Vec::new();
    let (mut pass_w, mut fail_w, mut nodata_w) = (0.0, 0.0, 0.0);
    let mut critical_failed = Vec::new();
    let mut failed = Vec::new();
    for (cfg, m, r) in results {
        let direction = cfg.direction.unwrap_or_else(|| default_direction(&m));
        let fails = match r.classification {
            Classification::High => direction != Direction::Decrease,
            Classification::Low => direction != Direction::Increase,
            _ => false,
        };
        let outcome = match (r.classification, fails) {
            (Classification::NoData, _) => {
                nodata_w += cfg.weight;
                "nodata"
            }
            (_, true) => {
                fail_w += cfg.weight;
                failed.push(r.line());
                if cfg.critical {
                    critical_failed.push(r.metric.clone());
                }
                "fail"
            }
            _ => {
                pass_w += cfg.weight;
                "pass"
            }
        };
        metrics.push(JudgedMetric {
            metric: r.metric.clone(),
            weight: cfg.weight,
            direction,
            critical: cfg.critical,
            classification: format!("{:?}", r.classification),
            outcome: outcome.into(),
            ratio: opt(r.effect + 1.0).filter(|_| r.baseline.is_finite() && r.baseline != 0.0),
            candidate: opt(r.candidate),
            baseline: opt(r.baseline),
            // In the direction that fails the metric.
            p_value: (r.classification != Classification::NoData).then(|| {
                match (direction == default_direction(&m), direction) {
                    (_, Direction::Either) => r.p_value.min(r.p_better),
                    (true, _) => r.p_value,
                    (false, _) => r.p_better,
                }
            }),
            ci: r.ci.filter(|(a, b)| a.is_finite() && b.is_finite()),
            n_candidate: r.n_candidate,
            n_baseline: r.n_baseline,
            test: test_name(&m, paired).into(),
            note: r.note.clone(),
        });
    }
    let judged = pass_w + fail_w;
    let score = (judged > 0.0).then(|| 100.0 * pass_w / judged);
    let best = 100.0 * (pass_w + nodata_w) / (judged + nodata_w).max(f64::MIN_POSITIVE);
    let (classification, reason) = if !critical_failed.is_empty() {
        (
            RunClass::Fail,
            format!("critical metric failed: {}", critical_failed.join(", ")),
        )
    } else if nodata_w > 0.0 && best < thresholds.marginal {
        (
            RunClass::Fail,
            format!(
                "fails whatever the metrics without data show: at most {best:.0} < marginal {}; {}",
                thresholds.marginal,
                failed.join("; ")
            ),
        )
    } else if nodata_w > 0.0 || metrics.is_empty() {
        let missing: Vec<&str> = metrics
            .iter()
            .filter(|m| m.outcome == "nodata")
            .map(|m| m.metric.as_str())
            .collect();
        (
            RunClass::NotEnoughData,
            if missing.is_empty() {
                "no metric to judge yet".into()
            } else {
                format!("not enough data for {}", missing.join(", "))
            },
        )
    } else {
        let s = score.unwrap_or(0.0);
        let c = if s >= thresholds.pass {
            RunClass::Pass
        } else if s >= thresholds.marginal {
            RunClass::Marginal
        } else {
            RunClass::Fail
        };
        let why = if failed.is_empty() {
            format!("score {s:.0}: every metric passed")
        } else {
            format!("score {s:.0}: {}", failed.join("; "))
        };
        (c, why)
    };
    Judgement {
        score,
        classification,
        metrics,
        reason,
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    /// Its `duration` is over.
    Completed,
    /// The candidate had no traffic for `end_after_idle`.
    Ended,
}

/// One run: one candidate arm (per group) over one span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// `{analysis}/{group values…}/{arm}@{start}`.
    pub id: String,
    /// `group_by` label values.
    pub group: BTreeMap<String, String>,
    /// The candidate arm (deployment or variant value) and what it is compared with.
    pub candidate: String,
    pub baseline: String,
    pub started_ms: i64,
    pub ends_ms: i64,
    pub status: RunStatus,
    /// End of the newest window with candidate traffic.
    pub last_candidate_ms: i64,
    /// Tick of the latest judgement.
    pub judged_ms: Option<i64>,
    pub judgement: Option<Judgement>,
    /// Tick it failed at (a Fail is final).
    pub failed_ms: Option<i64>,
    /// Consecutive judgements classified Fail.
    #[serde(default)]
    pub fail_streak: u32,
    pub candidate_side: Summary,
    pub baseline_side: Summary,
    #[serde(default)]
    pub paired: PairedStats,
}

impl Run {
    pub fn classification(&self) -> RunClass {
        self.judgement
            .as_ref()
            .map_or(RunClass::NotEnoughData, |j| j.classification)
    }

    /// Candidate requests over both sides' requests.
    pub fn traffic_share(&self) -> Option<f64> {
        let (c, b) = (self.candidate_side.requests, self.baseline_side.requests);
        (c + b > 0).then(|| c as f64 / (c + b) as f64)
    }
}

/// A failed run's command to the deployment tooling, sent through delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackEvent {
    pub analysis: String,
    pub kind: AnalysisKind,
    pub service: String,
    pub run_id: String,
    pub group: BTreeMap<String, String>,
    pub candidate: String,
    pub baseline: String,
    pub started_ms: i64,
    pub at_ms: i64,
    pub score: Option<f64>,
    pub reason: String,
    /// One line per failed metric.
    pub failed: Vec<String>,
    pub channels: Vec<String>,
}

/// One analysis's state: its runs, newest last.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalysisState {
    pub runs: Vec<Run>,
}

/// What is kept of the analyses across restarts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AnalysesSnapshot {
    pub states: BTreeMap<String, AnalysisState>,
    pub ticked_ms: Option<i64>,
}

impl AnalysesSnapshot {
    pub fn is_empty(&self) -> bool {
        self.states.is_empty() && self.ticked_ms.is_none()
    }
}

/// Ended runs kept per analysis (for the API), newest.
const KEEP_RUNS: usize = 20;

/// A window waiting for its tick.
#[derive(Debug, Clone)]
struct Pending {
    labels: Vec<String>,
    summary: Summary,
    paired: Option<PairedWindow>,
}

/// Every configured analysis, fed closed windows, judged at window ticks.
#[derive(Debug, Clone)]
pub struct Analyses {
    configs: Vec<AnalysisConfig>,
    label_names: Vec<&'static str>,
    window_ms: i64,
    states: BTreeMap<String, AnalysisState>,
    /// Windows by start, entering the runs at the tick after they close.
    pending: BTreeMap<i64, Vec<Pending>>,
    ticked_ms: Option<i64>,
    out: Vec<RollbackEvent>,
}

impl Analyses {
    pub fn new(
        configs: Vec<AnalysisConfig>,
        label_names: Vec<&'static str>,
        window_ms: i64,
    ) -> Self {
        Self {
            configs,
            label_names,
            window_ms,
            states: BTreeMap::new(),
            pending: BTreeMap::new(),
            ticked_ms: None,
            out: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.configs.is_empty()
    }

    pub fn configs(&self) -> &[AnalysisConfig] {
        &self.configs
    }

    /// Histogram metrics the analyses read (latency, output tokens, cost).
    pub fn metrics(&self) -> BTreeSet<usize> {
        if self.configs.is_empty() {
            return BTreeSet::new();
        }
        [Metric::LatencyMs, Metric::OutputTokens, Metric::CostUsd]
            .into_iter()
            .map(|m| m as usize)
            .collect()
    }

    /// Longest run span, for how much history a rebuild reads.
    pub fn span_ms(&self) -> i64 {
        self.configs
            .iter()
            .map(|c| c.duration.as_millis() as i64)
            .max()
            .unwrap_or(0)
    }

    fn position(&self, label: &str) -> Option<usize> {
        self.label_names.iter().position(|l| *l == label)
    }

    /// A closed window of one series. Windows a previous life already judged (ending at or
    /// before the snapshot's tick) are ignored, so a rebuild can feed them again.
    pub fn observe(&mut self, labels: &[String], start_ms: i64, summary: &Summary) {
        if self.configs.is_empty() || self.done(start_ms) {
            return;
        }
        let Some(sp) = self.position("service") else {
            return;
        };
        let service = labels.get(sp).map(String::as_str).unwrap_or("");
        if !self
            .configs
            .iter()
            .any(|c| c.kind != AnalysisKind::Shadow && c.service == service)
        {
            return;
        }
        self.pending.entry(start_ms).or_default().push(Pending {
            labels: labels.to_vec(),
            summary: summary.clone(),
            paired: None,
        });
    }

    /// The shadow pairs completed in the window starting at `start_ms`, for `service` and
    /// the shadow's series labels.
    pub fn observe_pairs(&mut self, labels: &[String], start_ms: i64, pairs: PairedWindow) {
        if self.configs.is_empty() || self.done(start_ms) {
            return;
        }
        self.pending.entry(start_ms).or_default().push(Pending {
            labels: labels.to_vec(),
            summary: Summary::default(),
            paired: Some(pairs),
        });
    }

    /// Treats ticks up to `t_ms` as judged (a first start on stored data: history before it
    /// is for `driftwatch analyze`, not for live rollbacks).
    pub fn skip_until(&mut self, t_ms: i64) {
        if self.configs.is_empty() {
            return;
        }
        self.ticked_ms = Some(self.ticked_ms.map_or(t_ms, |x| x.max(t_ms)));
        let w = self.window_ms;
        self.pending.retain(|s, _| s + w > t_ms);
    }

    fn done(&self, start_ms: i64) -> bool {
        self.ticked_ms
            .is_some_and(|t| start_ms + self.window_ms <= t)
    }

    /// Rollback commands since the last call.
    pub fn take_rollbacks(&mut self) -> Vec<RollbackEvent> {
        std::mem::take(&mut self.out)
    }

    /// Judges every tick up to `clock` (the end of the newest window closed everywhere).
    pub fn advance(&mut self, clock: i64) {
        if self.configs.is_empty() {
            return;
        }
        let due = clock.div_euclid(self.window_ms) * self.window_ms;
        let first = match self.ticked_ms {
            Some(t) => t + self.window_ms,
            None => match self.pending.keys().next() {
                Some(s) => s + self.window_ms,
                None => return,
            },
        };
        let mut t = first;
        while t <= due {
            self.tick(t);
            t += self.window_ms;
        }
        if self.ticked_ms.is_none_or(|x| x < due) && first <= due {
            self.ticked_ms = Some(due);
        }
    }

    fn tick(&mut self, t: i64) {
        let w = self.window_ms;
        let mut ready = Vec::new();
        while let Some(e) = self.pending.first_entry() {
            if *e.key() + w > t {
                break;
            }
            let (start, list) = e.remove_entry();
            ready.push((start, list));
        }
        for (start, list) in ready {
            for i in 0..self.configs.len() {
                self.apply(i, start, &list);
            }
        }
        for i in 0..self.configs.len() {
            self.judge_runs(i, t);
        }
        self.ticked_ms = Some(t);
    }

    fn apply(&mut self, i: usize, start: i64, list: &[Pending]) {
        let c = self.configs[i].clone();
        let w = self.window_ms;
        let state = self.states.entry(c.name.clone()).or_default();
        // Candidate windows first: they start runs the baseline windows of the same start
        // then join.
        let mut baselines = Vec::new();
        for p in list {
            if p.paired.is_some() != (c.kind == AnalysisKind::Shadow) {
                continue;
            }
            let Some((group, arm)) = classify_with(&self.label_names, &c, &p.labels) else {
                continue;
            };
            let is_candidate = match c.kind {
                AnalysisKind::Canary => arm == c.candidate(),
                AnalysisKind::Ab => !arm.is_empty() && arm != c.control(),
                AnalysisKind::Shadow => p.paired.is_some(),
            };
            let is_baseline = match c.kind {
                AnalysisKind::Canary => arm == c.baseline(),
                AnalysisKind::Ab => arm == c.control(),
                AnalysisKind::Shadow => false,
            };
            if is_baseline {
                baselines.push((group, p));
                continue;
            }
            if !is_candidate {
                continue;
            }
            let has_traffic = match &p.paired {
                Some(pw) => pw.pairs > 0,
                None => p.summary.requests > 0,
            };
            let run = match state
                .runs
                .iter_mut()
                .rev()
                .find(|r| r.group == group && r.candidate == arm)
            {
                Some(r) if r.status == RunStatus::Running => Some(r),
                // The same rollout still going after its run: no new run until it stopped
                // (a failed one: until it paused for a window, as a rollback does).
                Some(r)
                    if start
                        < r.last_candidate_ms
                            + if r.failed_ms.is_some() {
                                w
                            } else {
                                c.end_after_idle.as_millis() as i64
                            } =>
                {
                    if has_traffic {
                        r.last_candidate_ms = r.last_candidate_ms.max(start + w);
                    }
                    None
                }
                _ if has_traffic => {
                    let baseline = match c.kind {
                        AnalysisKind::Canary => c.baseline().to_string(),
                        AnalysisKind::Ab => c.control().to_string(),
                        AnalysisKind::Shadow => "primary".to_string(),
                    };
                    let mut id = vec![c.name.clone()];
                    id.extend(group.values().cloned());
                    id.push(arm.clone());
                    state.runs.push(Run {
                        id: format!("{}@{}", id.join("/"), start),
                        group: group.clone(),
                        candidate: arm.clone(),
                        baseline,
                        started_ms: start,
                        ends_ms: start + c.duration.as_millis() as i64,
                        status: RunStatus::Running,
                        last_candidate_ms: start + w,
                        judged_ms: None,
                        judgement: None,
                        failed_ms: None,
                        fail_streak: 0,
                        candidate_side: Summary::default(),
                        baseline_side: Summary::default(),
                        paired: PairedStats::default(),
                    });
                    if state.runs.len() > KEEP_RUNS {
                        // The oldest ended run that a newer run of its group and arm follows.
                        let runs = &state.runs;
                        let k = runs.iter().enumerate().position(|(i, r)| {
                            r.status != RunStatus::Running
                                && runs[i + 1..]
                                    .iter()
                                    .any(|n| n.group == r.group && n.candidate == r.candidate)
                        });
                        if let Some(k) = k {
                            state.runs.remove(k);
                        }
                    }
                    state.runs.last_mut()
                }
                _ => None,
            };
            let Some(run) = run else { continue };
            if start >= run.ends_ms {
                continue;
            }
            if has_traffic {
                run.last_candidate_ms = run.last_candidate_ms.max(start + w);
            }
            match &p.paired {
                Some(pw) => run.paired.merge(pw),
                None => run.candidate_side.merge(&p.summary),
            }
        }
        for (group, p) in baselines {
            for run in state.runs.iter_mut().filter(|r| {
                r.status == RunStatus::Running
                    && start >= r.started_ms
                    && start < r.ends_ms
                    && r.group == group
            }) {
                run.baseline_side.merge(&p.summary);
            }
        }
    }

    fn judge_runs(&mut self, i: usize, t: i64) {
        let c = &self.configs[i];
        let Some(state) = self.states.get_mut(&c.name) else {
            return;
        };
        for run in state
            .runs
            .iter_mut()
            .filter(|r| r.status == RunStatus::Running)
        {
            let mut judgement = judge_run(c, run);
            if judgement.classification == RunClass::Fail {
                run.fail_streak += 1;
                if run.fail_streak < c.fail_after.max(1) {
                    judgement.reason = format!(
                        "failing ({} of {} judgements in a row before it fails): {}",
                        run.fail_streak, c.fail_after, judgement.reason
                    );
                    judgement.classification = RunClass::Marginal;
                }
            } else {
                run.fail_streak = 0;
            }
            let failed_now = judgement.classification == RunClass::Fail;
            run.judgement = Some(judgement);
            run.judged_ms = Some(t);
            if failed_now {
                run.failed_ms = Some(t);
                let j = run.judgement.as_ref();
                self.out.push(RollbackEvent {
                    analysis: c.name.clone(),
                    kind: c.kind,
                    service: c.service.clone(),
                    run_id: run.id.clone(),
                    group: run.group.clone(),
                    candidate: run.candidate.clone(),
                    baseline: run.baseline.clone(),
                    started_ms: run.started_ms,
                    at_ms: t,
                    score: j.and_then(|j| j.score),
                    reason: j.map(|j| j.reason.clone()).unwrap_or_default(),
                    failed: j
                        .map(|j| {
                            j.metrics
                                .iter()
                                .filter(|m| m.outcome == "fail")
                                .map(|m| m.metric.clone())
                                .collect()
                        })
                        .unwrap_or_default(),
                    channels: c.rollback_channels.clone(),
                });
                // A Fail is final: the run ends; candidate traffic after a pause starts
                // the next one.
                run.status = RunStatus::Ended;
                continue;
            }
            if t >= run.ends_ms {
                run.status = RunStatus::Completed;
            } else if t - run.last_candidate_ms >= c.end_after_idle.as_millis() as i64 {
                run.status = RunStatus::Ended;
            }
        }
    }

    /// Every analysis as the API shows it, at the last tick.
    pub fn reports(&self) -> Vec<AnalysisReport> {
        self.configs
            .iter()
            .map(|c| AnalysisReport::new(c, self.states.get(&c.name), self.ticked_ms))
            .collect()
    }

    pub fn snapshot(&self) -> AnalysesSnapshot {
        AnalysesSnapshot {
            states: self.states.clone(),
            ticked_ms: self.ticked_ms,
        }
    }

    /// Restores runs; windows ending at or before the snapshot's tick are then ignored.
    pub fn restore(&mut self, snap: AnalysesSnapshot, evaluated_window_ms: Option<i64>) {
        if snap.ticked_ms.is_none() {
            // A state from before analyses were configured: what it evaluated is past.
            if let Some(t) = evaluated_window_ms {
                self.skip_until(t);
            }
            return;
        }
        self.states = snap
            .states
            .into_iter()
            .filter(|(name, _)| self.configs.iter().any(|c| &c.name == name))
            .collect();
        self.ticked_ms = snap.ticked_ms;
        let w = self.window_ms;
        if let Some(t) = self.ticked_ms {
            self.pending.retain(|s, _| s + w > t);
        }
    }

    /// Analyses of another config (a reload): runs of analyses still configured stay.
    pub fn reconfigure(&mut self, configs: Vec<AnalysisConfig>, label_names: Vec<&'static str>) {
        self.configs = configs;
        self.label_names = label_names;
        let names: BTreeSet<String> = self.configs.iter().map(|c| c.name.clone()).collect();
        self.states.retain(|n, _| names.contains(n));
    }
}

fn classify_with(
    label_names: &[&'static str],
    c: &AnalysisConfig,
    labels: &[String],
) -> Option<(BTreeMap<String, String>, String)> {
    let get = |name: &str| {
        label_names
            .iter()
            .position(|l| *l == name)
            .and_then(|p| labels.get(p))
            .map(String::as_str)
    };
    if get("service")? != c.service {
        return None;
    }
    let mut group = BTreeMap::new();
    for g in c.group_by() {
        group.insert(g.clone(), get(&g).unwrap_or("").to_string());
    }
    let arm = match c.kind {
        AnalysisKind::Shadow => c.candidate().to_string(),
        _ => get(c.arm_label()).unwrap_or("").to_string(),
    };
    Some((group, arm))
}

/// Judges a run on what it holds.
pub fn judge_run(c: &AnalysisConfig, run: &Run) -> Judgement {
    let opts = c.options();
    if c.kind == AnalysisKind::Shadow {
        let metrics = if c.metrics.is_empty() {
            paired_defaults(&run.paired)
                .into_iter()
                .map(|m| {
                    let cfg = MetricConfig {
                        metric: m.name(),
                        weight: 1.0,
                        direction: None,
                        critical: false,
                    };
                    (m, cfg)
                })
                .collect()
        } else {
            c.metric_set(&Summary::default(), &Summary::default())
        };
        let per = CompareOptions {
            alpha: opts.alpha / metrics.len().max(1) as f64,
            ..opts
        };
        let results = metrics
            .into_iter()
            .map(|(m, cfg)| {
                let r = compare_paired(&run.paired, &m, &per);
                (cfg, m, r)
            })
            .collect();
        return judge(results, c.thresholds, true);
    }
    if run.baseline_side.requests == 0 {
        let group: Vec<String> = run.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
        return Judgement {
            score: None,
            classification: RunClass::NotEnoughData,
            metrics: Vec::new(),
            reason: format!(
                "not enough data: no {} traffic{} to compare with (a candidate on another model? set group_by = [])",
                run.baseline,
                if group.is_empty() {
                    String::new()
                } else {
                    format!(" with {}", group.join(", "))
                }
            ),
        };
    }
    let metrics = c.metric_set(&run.candidate_side, &run.baseline_side);
    let names: Vec<CompareMetric> = metrics.iter().map(|(m, _)| m.clone()).collect();
    let results = compare::compare_all(&names, &run.candidate_side, &run.baseline_side, &opts);
    let results = metrics
        .into_iter()
        .zip(results)
        .map(|((m, cfg), r)| (cfg, m, r))
        .collect();
    judge(results, c.thresholds, false)
}

/// One run as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunReport {
    pub id: String,
    pub group: BTreeMap<String, String>,
    pub candidate: String,
    pub baseline: String,
    pub status: RunStatus,
    pub started_at: String,
    pub ends_at: String,
    pub judged_at: Option<String>,
    pub failed_at: Option<String>,
    pub score: Option<f64>,
    pub classification: RunClass,
    pub reason: String,
    pub candidate_requests: u64,
    pub baseline_requests: u64,
    /// Shadow: requests paired by `trace_id`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pairs: Option<u64>,
    pub traffic_share: Option<f64>,
    pub expected_share: Option<f64>,
    pub metrics: Vec<JudgedMetric>,
}

/// An analysis as `GET /api/v1/analyses/{id}` shows it. `classification` and `score` are
/// those of the worst current run (the newest run of each group and arm), for Argo
/// Rollouts' jsonPath and Flagger.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AnalysisReport {
    pub name: String,
    pub kind: AnalysisKind,
    pub service: String,
    /// `idle` (no run yet), `running`, `completed` or `ended`: of the newest run.
    pub status: String,
    pub classification: RunClass,
    pub score: Option<f64>,
    /// Why, in words (of the run classified).
    pub reason: String,
    pub thresholds: Thresholds,
    pub evaluated_at: Option<String>,
    pub runs: Vec<RunReport>,
}

impl AnalysisReport {
    fn new(c: &AnalysisConfig, state: Option<&AnalysisState>, ticked: Option<i64>) -> Self {
        let runs: Vec<&Run> = state.map(|s| s.runs.iter().collect()).unwrap_or_default();
        // Current: the newest run of each group and arm while it runs or if it failed (a
        // failed arm stays failed until its next rollout starts; a passed one that ended no
        // longer counts); when there is none, the newest run.
        let mut newest: BTreeMap<(&BTreeMap<String, String>, &str), &Run> = BTreeMap::new();
        for r in &runs {
            newest.insert((&r.group, r.candidate.as_str()), r);
        }
        let mut current: Vec<&Run> = newest
            .into_values()
            .filter(|r| r.status == RunStatus::Running || r.failed_ms.is_some())
            .collect();
        if current.is_empty() {
            current.extend(
                runs.iter()
                    .max_by_key(|r| (r.started_ms, r.judged_ms))
                    .copied(),
            );
        }
        let worst = current
            .iter()
            .max_by(|a, b| {
                a.classification().cmp(&b.classification()).then(
                    b.judgement
                        .as_ref()
                        .and_then(|j| j.score)
                        .unwrap_or(100.0)
                        .total_cmp(&a.judgement.as_ref().and_then(|j| j.score).unwrap_or(100.0)),
                )
            })
            .copied();
        let status = match runs.iter().max_by_key(|r| r.started_ms) {
            None => "idle".to_string(),
            Some(_) if current.iter().any(|r| r.status == RunStatus::Running) => "running".into(),
            Some(r) => match r.status {
                RunStatus::Running => "running".into(),
                RunStatus::Completed => "completed".into(),
                RunStatus::Ended => "ended".into(),
            },
        };
        let rfc = crate::time::rfc3339;
        AnalysisReport {
            name: c.name.clone(),
            kind: c.kind,
            service: c.service.clone(),
            status,
            classification: worst.map_or(RunClass::NotEnoughData, |r| r.classification()),
            score: worst.and_then(|r| r.judgement.as_ref().and_then(|j| j.score)),
            reason: worst
                .and_then(|r| r.judgement.as_ref().map(|j| j.reason.clone()))
                .unwrap_or_else(|| "no run yet: the candidate has had no traffic".into()),
            thresholds: c.thresholds,
            evaluated_at: ticked.map(rfc),
            runs: runs
                .iter()
                .rev()
                .map(|r| {
                    let j = r.judgement.as_ref();
                    RunReport {
                        id: r.id.clone(),
                        group: r.group.clone(),
                        candidate: r.candidate.clone(),
                        baseline: r.baseline.clone(),
                        status: r.status,
                        started_at: rfc(r.started_ms),
                        ends_at: rfc(r.ends_ms),
                        judged_at: r.judged_ms.map(rfc),
                        failed_at: r.failed_ms.map(rfc),
                        score: j.and_then(|j| j.score),
                        classification: r.classification(),
                        reason: j
                            .map(|j| j.reason.clone())
                            .unwrap_or_else(|| "not judged yet".into()),
                        candidate_requests: if c.kind == AnalysisKind::Shadow {
                            r.paired.pairs
                        } else {
                            r.candidate_side.requests
                        },
                        baseline_requests: if c.kind == AnalysisKind::Shadow {
                            r.paired.pairs
                        } else {
                            r.baseline_side.requests
                        },
                        pairs: (c.kind == AnalysisKind::Shadow).then_some(r.paired.pairs),
                        traffic_share: if c.kind == AnalysisKind::Shadow {
                            None
                        } else {
                            r.traffic_share()
                        },
                        expected_share: c.expected_share,
                        metrics: j.map(|j| j.metrics.clone()).unwrap_or_default(),
                    }
                })
                .collect(),
        }
    }
}

/// The default metrics of a shadow: every judge score both sides carry, P50 and P99
/// latency, output tokens.
pub fn paired_defaults(p: &PairedStats) -> Vec<CompareMetric> {
    let mut out: Vec<CompareMetric> = p
        .judge
        .keys()
        .map(|j| CompareMetric::Judge(j.clone()))
        .collect();
    out.extend([
        CompareMetric::LatencyP50,
        CompareMetric::LatencyP99,
        CompareMetric::OutputTokens,
    ]);
    out
}

/// Compares the shadow side of pairs with the primary side on one metric: a paired t-test
/// of the differences for judge scores, Wilcoxon's signed-rank test for latency and output
/// tokens; the effect is the shadow's mean (judge, tokens) or quantile (latency) over the
/// primary's.
pub fn compare_paired(p: &PairedStats, m: &CompareMetric, opts: &CompareOptions) -> MetricResult {
    use crate::detect::compare::{classify, short_of, Raw};
    use crate::detect::stats::{paired_t, wilcoxon_signed_rank, Alternative};
    let raw = match m {
        CompareMetric::Judge(name) => {
            let j = p.judge.get(name).copied().unwrap_or_default();
            let n = j.diff.n;
            let t = |alt| paired_t(&j.diff, alt).map(|r| r.p_value);
            let (ph, pl) = match (t(Alternative::Greater), t(Alternative::Less)) {
                (Some(h), Some(l)) => (h, l),
                _ => match j.diff.mean.partial_cmp(&0.0) {
                    Some(std::cmp::Ordering::Greater) if n >= 2 => (0.0, 1.0),
                    Some(std::cmp::Ordering::Less) if n >= 2 => (1.0, 0.0),
                    _ => (1.0, 1.0),
                },
            };
            let ci = crate::detect::stats::paired_t_ci(&j.diff, opts.confidence);
            Raw {
                n: (n, n),
                values: (
                    if n > 0 { j.shadow.mean } else { f64::NAN },
                    if n > 0 { j.primary.mean } else { f64::NAN },
                ),
                ci,
                relative_ci: false,
                p_higher: ph,
                p_lower: pl,
                short: short_of((n, n), opts.min_samples.max(2), "paired judge scores"),
            }
        }
        CompareMetric::LatencyP50 | CompareMetric::LatencyP99 | CompareMetric::OutputTokens => {
            let (measure, metric) = match m {
                CompareMetric::OutputTokens => (&p.output_tokens, Metric::OutputTokens),
                _ => (&p.latency, Metric::LatencyMs),
            };
            let classes = measure.classes();
            let w = |alt| {
                wilcoxon_signed_rank(&classes, alt)
                    .map(|r| r.p_value)
                    .unwrap_or(1.0)
            };
            let n = measure.count();
            let scale = metric.scale();
            let value = |h: &crate::window::sketch::SparseHist| match m {
                CompareMetric::LatencyP50 => h.quantile_units(0.5).map(|u| u as f64 / scale),
                CompareMetric::LatencyP99 => h.quantile_units(0.99).map(|u| u as f64 / scale),
                _ => (h.count() > 0).then(|| h.sum / h.count() as f64),
            };
            let min = match m {
                CompareMetric::LatencyP99 => {
                    crate::detect::stats::min_samples_for_quantile(0.99, opts.min_tail)
                        .max(opts.min_samples)
                }
                _ => opts.min_samples,
            };
            Raw {
                n: (n, n),
                values: (
                    value(&measure.shadow).unwrap_or(f64::NAN),
                    value(&measure.primary).unwrap_or(f64::NAN),
                ),
                ci: None,
                relative_ci: true,
                p_higher: w(Alternative::Greater),
                p_lower: w(Alternative::Less),
                short: short_of((n, n), min, "pairs"),
            }
        }
        other => Raw {
            n: (0, 0),
            values: (f64::NAN, f64::NAN),
            ci: None,
            relative_ci: true,
            p_higher: 1.0,
            p_lower: 1.0,
            short: Some(format!("{} is not compared on pairs", other.name())),
        },
    };
    classify(m, raw, opts)
}

#[cfg(test)]
#[path = "analysis_tests.rs"]
mod tests;
