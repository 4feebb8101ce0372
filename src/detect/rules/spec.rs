//! The rule language's types: the file format as written (serde definitions, private to the
//! rules) and the compiled, validated [`Rule`] the rest of the daemon evaluates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::event::SeriesLabel;
use crate::window::sketch::Metric;

/// The extra instance label of `judge_score` rules without `signal.judge`: every judge name
/// is evaluated separately and its alerts carry the name under this label.
pub const JUDGE_LABEL: &str = "judge";

/// What rule validation needs to know about the daemon's configuration.
#[derive(Debug, Clone)]
pub struct RuleContext {
    /// The series labels, in key order.
    pub labels: Vec<SeriesLabel>,
    /// Width of the closed windows.
    pub window: Duration,
    /// Width of the fast slices inside a window.
    pub slice: Duration,
    /// How long a window stays open after its end (`windows.allowed_lateness`): a fast rule's
    /// trailing baseline must end before windows that may still be open.
    pub lateness: Duration,
}

impl RuleContext {
    /// One-minute windows, 10 s slices, 30 s lateness: the defaults, for tests.
    #[cfg(test)]
    pub fn for_tests(labels: Vec<SeriesLabel>) -> Self {
        Self {
            labels,
            window: Duration::from_secs(60),
            slice: Duration::from_secs(10),
            lateness: Duration::from_secs(30),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The file format, as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleFileSpec {
    pub(super) rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleSpec {
    pub(super) name: Spanned<String>,
    #[serde(default)]
    pub(super) description: String,
    #[serde(default, rename = "match")]
    pub(super) matchers: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    pub(super) by: Option<Vec<String>>,
    pub(super) signal: SignalSpec,
    #[serde(with = "humantime_serde")]
    pub(super) over: Duration,
    /// Shorter current ranges evaluated with `over` at every step (e.g. `[1m, 2m]`).
    #[serde(default)]
    pub(super) horizons: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    pub(super) every: Option<Duration>,
    pub(super) baseline: BaselineSpec,
    /// Required except for `new_error_code`.
    #[serde(default)]
    pub(super) condition: Option<ConditionSpec>,
    #[serde(default)]
    pub(super) test: Option<TestSpec>,
    #[serde(default)]
    pub(super) min_samples: MinSamplesSpec,
    #[serde(default, rename = "for", with = "humantime_serde")]
    pub(super) for_: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) keep_firing_for: Option<Duration>,
    pub(super) severity: Severity,
    #[serde(default)]
    pub(super) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) channels: Vec<String>,
    #[serde(default)]
    pub(super) action: Option<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SignalSpec {
    pub(super) metric: String,
    #[serde(default)]
    pub(super) stat: Option<String>,
    #[serde(default)]
    pub(super) error_type: Option<String>,
    #[serde(default)]
    pub(super) judge: Option<String>,
    #[serde(default)]
    pub(super) of: Option<String>,
    #[serde(default)]
    pub(super) finish_reason: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BaselineSpec {
    #[serde(default, with = "humantime_serde")]
    pub(super) trailing: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub(super) offset: Option<Duration>,
    #[serde(default)]
    pub(super) across: Vec<String>,
    #[serde(default)]
    pub(super) peer: BTreeMap<String, String>,
    #[serde(default)]
    pub(super) value: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConditionSpec {
    pub(super) effect: EffectKind,
    #[serde(default)]
    pub(super) above: Option<f64>,
    #[serde(default)]
    pub(super) below: Option<f64>,
    #[serde(default)]
    pub(super) recover: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TestSpec {
    pub(super) kind: TestKind,
    #[serde(default)]
    pub(super) alpha: Option<f64>,
    #[serde(default)]
    pub(super) confidence: Option<f64>,
    /// What the test rejects: `baseline` (no change, the default) or `threshold`.
    #[serde(default, rename = "against")]
    pub(super) null: Option<Null>,
    /// Exceedance only: also significant when the share above τ rose against the
    /// baseline's own share at this level (fast on large jumps).
    #[serde(default)]
    pub(super) change_alpha: Option<f64>,
}

/// The null hypothesis of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Null {
    /// Current and baseline are the same (the default, `against: baseline`).
    #[serde(rename = "baseline")]
    NoChange,
    /// The effect is at most the threshold (for `welch_t`: the current mean is within the
    /// threshold's relative change or difference of the baseline's).
    Threshold,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct MinSamplesSpec {
    #[serde(default)]
    pub(super) current: Option<u64>,
    #[serde(default)]
    pub(super) baseline: Option<u64>,
    #[serde(default)]
    pub(super) events: Option<u64>,
}

// ---------------------------------------------------------------------------------------------
// The compiled rule.

/// How loud an alert is; mapped to PagerDuty severities by the delivery stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Alert,
    Page,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Alert => "alert",
            Severity::Page => "page",
        }
    }
}

/// What firing does beyond notifying.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Opens the fallback circuit breaker of the series (wired by the delivery stage).
    CircuitBreaker,
}

/// The quantity compared between current and baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectKind {
    /// The current statistic itself.
    Value,
    /// current / baseline.
    Ratio,
    /// (current − baseline) / baseline.
    RelativeChange,
    /// current − baseline.
    Difference,
    /// Population stability index of the current distribution against the baseline.
    Psi,
    /// Jensen–Shannon distance (base 2, in [0, 1]).
    JensenShannon,
}

impl EffectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EffectKind::Value => "value",
            EffectKind::Ratio => "ratio",
            EffectKind::RelativeChange => "relative_change",
            EffectKind::Difference => "difference",
            EffectKind::Psi => "psi",
            EffectKind::JensenShannon => "jensen_shannon",
        }
    }

    pub(super) fn is_distance(self) -> bool {
        matches!(self, EffectKind::Psi | EffectKind::JensenShannon)
    }
}

/// Significance tests a rule can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    WelchT,
    MannWhitney,
    Ks,
    AndersonDarling,
    TwoProportionZ,
    Binomial,
    Wilson,
    ChiSquare,
    QuantileCi,
    /// "Quantile q above τ": the share of current samples above τ exceeds 1 − q (binomial).
    Exceedance,
    /// Each metric's test of [`crate::detect::compare`] (`driftwatch gate`'s).
    Compare,
}

impl TestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TestKind::WelchT => "welch_t",
            TestKind::MannWhitney => "mann_whitney",
            TestKind::Ks => "ks",
            TestKind::AndersonDarling => "anderson_darling",
            TestKind::TwoProportionZ => "two_proportion_z",
            TestKind::Binomial => "binomial",
            TestKind::Wilson => "wilson",
            TestKind::ChiSquare => "chi_square",
            TestKind::QuantileCi => "quantile_ci",
            TestKind::Exceedance => "exceedance",
            TestKind::Compare => "compare",
        }
    }

    /// Tests judged by a confidence bound rather than a p-value.
    pub(super) fn uses_confidence(self) -> bool {
        matches!(self, TestKind::Wilson | TestKind::QuantileCi)
    }
}

/// A test with its level: significant when p < `alpha`, or, for bound-based tests, when the
/// `confidence` bounds separate current from baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    pub kind: TestKind,
    /// Family level per evaluation; each of the rule's horizons is tested at `alpha / K`.
    pub alpha: f64,
    /// Family confidence per evaluation; each horizon uses `1 − (1 − confidence) / K`.
    pub confidence: f64,
    pub null: Null,
    /// Exceedance: the level of the second, "changed against the baseline" test.
    pub change_alpha: Option<f64>,
}

/// Categorical fields with a distribution in every window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Category {
    QueryType,
    ErrorType,
    FinishReason,
    ResponseModel,
    HttpStatus,
}

impl Category {
    pub(super) const ALL: [(&'static str, Category); 5] = [
        ("query_type", Category::QueryType),
        ("error_type", Category::ErrorType),
        ("finish_reason", Category::FinishReason),
        ("response_model", Category::ResponseModel),
        ("http_status", Category::HttpStatus),
    ];

    pub fn as_str(self) -> &'static str {
        Self::ALL
            .iter()
            .find(|(_, c)| *c == self)
            .map(|(s, _)| *s)
            .unwrap_or("?")
    }
}

/// The statistic a rule watches.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// A quantile (0 < q < 1) of a histogram metric.
    Quantile { metric: Metric, q: f64 },
    /// The mean of a histogram metric (exact: from the sum).
    Mean { metric: Metric },
    /// The whole distribution of a histogram metric.
    Distribution { metric: Metric },
    /// errors / requests.
    ErrorRate,
    /// requests with this `error_type` / requests.
    ErrorTypeRate(String),
    /// feedback −1 / all feedback.
    NegativeFeedbackRate,
    /// Mean judge score; `None` evaluates every judge name separately (label `judge`).
    JudgeMean(Option<String>),
    /// Distribution of a categorical field.
    Categorical(Category),
    /// requests with this `finish_reason` / requests (`length`: truncated answers).
    FinishReasonRate(String),
    /// requests whose input is above `registry.near_context` of the model's
    /// `max_input_tokens` / requests.
    NearContextRate,
    /// Cached / input tokens (tested on the per-request shares).
    CacheReadRatio,
    /// Days from the evaluation to the registry's deprecation date of the instance's
    /// `request_model` (models without a date are not evaluated).
    DaysToDeprecation,
    /// 1 for traffic to a `request_model` the registry does not list (only with a registry).
    UnknownModel,
    /// The service's spend since UTC midnight / its `[budgets]` entry.
    BudgetSpend,
    /// The day's spend projected to midnight at the rate so far / the budget (from 1 h into
    /// the day).
    BudgetProjection,
    /// A silent model update: the share of the current range's requests answered by the
    /// `response_model` whose share rose most against the trailing baseline (the provider
    /// swapped the model behind the requested name). Tested as a rate against the baseline's
    /// share of that model.
    ResponseModelChange,
    /// A silent backend update: as [`Signal::ResponseModelChange`] on OpenAI's
    /// `system_fingerprint` (the backend configuration), when the response model did not
    /// change too (then `response_model_change` tells it).
    SystemFingerprintChange,
    /// An error code (`error_type`, or `http_status` from 400) absent from the series'
    /// trailing baseline span (days, from the [`crate::detect::codes::CodeMemory`]) that
    /// occurred at least `min_samples.events` times in the current range; one alert instance
    /// per code (labels [`CODE_FIELD_LABEL`], [`CODE_LABEL`]).
    NewErrorCode,
    /// A new `prompt_version` of a prompt (first request within `over`) against the version
    /// it replaced (the one with most requests in the trailing range before it): judge
    /// scores, feedback, error rate, P99 latency, output tokens and cost, with the tests of
    /// [`crate::detect::compare`]; over the same span while both take traffic (a rollout),
    /// else against the replaced version's trailing range. Instance labels add
    /// `prompt_version` (the new one) and [`BASELINE_VERSION_LABEL`].
    PromptVersionRegression,
}

/// Instance label of a `prompt_version_regression` alert: the version compared against.
pub const BASELINE_VERSION_LABEL: &str = "baseline_version";

/// Instance label of a `new_error_code` alert: the field the code was found in.
pub const CODE_FIELD_LABEL: &str = "code_field";
/// Instance label of a `new_error_code` alert: the code.
pub const CODE_LABEL: &str = "code";

/// `new_error_code`'s default `min_samples`: occurrences in the current range, and
/// requests in the baseline span (a code is only new against a baseline with traffic).
pub const NEW_CODE_MIN_EVENTS: u64 = 5;
pub const NEW_CODE_MIN_BASELINE: u64 = 1000;

impl Signal {
    /// What the signal yields, for validating tests and effects.
    pub(super) fn shape(&self) -> Shape {
        match self {
            Signal::Quantile { .. } => Shape::Quantile,
            Signal::Mean { .. } => Shape::HistMean,
            Signal::Distribution { .. } => Shape::HistDistribution,
            Signal::ErrorRate | Signal::ErrorTypeRate(_) | Signal::NegativeFeedbackRate => {
                Shape::Rate
            }
            Signal::JudgeMean(_) | Signal::CacheReadRatio => Shape::Moments,
            Signal::Categorical(_) => Shape::Categorical,
            Signal::FinishReasonRate(_) | Signal::NearContextRate => Shape::Rate,
            Signal::ResponseModelChange | Signal::SystemFingerprintChange => Shape::Rate,
            Signal::NewErrorCode => Shape::Novelty,
            Signal::PromptVersionRegression => Shape::Comparison,
            Signal::DaysToDeprecation
            | Signal::UnknownModel
            | Signal::BudgetSpend
            | Signal::BudgetProjection => Shape::Fact,
        }
    }

    /// Human name, e.g. `latency_ms p99`.
    pub fn describe(&self) -> String {
        match self {
            Signal::Quantile { metric, q } => format!("{} {}", metric.name(), quantile_name(*q)),
            Signal::Mean { metric } => format!("{} mean", metric.name()),
            Signal::Distribution { metric } => format!("{} distribution", metric.name()),
            Signal::ErrorRate => "error rate".into(),
            Signal::ErrorTypeRate(t) => format!("rate of error_type {t}"),
            Signal::NegativeFeedbackRate => "negative feedback rate".into(),
            Signal::JudgeMean(Some(j)) => format!("mean judge score {j}"),
            Signal::JudgeMean(None) => "mean judge score".into(),
            Signal::Categorical(c) => format!("{} distribution", c.as_str()),
            Signal::FinishReasonRate(f) => format!("rate of finish_reason {f}"),
            Signal::NearContextRate => "share of requests near the context window".into(),
            Signal::CacheReadRatio => "cache-read ratio".into(),
            Signal::DaysToDeprecation => "days to deprecation".into(),
            Signal::UnknownModel => "traffic to a model the registry does not list".into(),
            Signal::BudgetSpend => "share of the day's budget spent".into(),
            Signal::BudgetProjection => "projected share of the day's budget".into(),
            Signal::ResponseModelChange => "share of traffic on a new response model".into(),
            Signal::SystemFingerprintChange => {
                "share of traffic on a new system fingerprint".into()
            }
            Signal::NewErrorCode => "occurrences of an error code new to the series".into(),
            Signal::PromptVersionRegression => {
                "metrics of a new prompt version against the version it replaced".into()
            }
        }
    }

    /// The field whose served value a change signal watches (`response_model`,
    /// `system_fingerprint`).
    pub fn served_field(&self) -> Option<&'static str> {
        match self {
            Signal::ResponseModelChange => Some("response_model"),
            Signal::SystemFingerprintChange => Some("system_fingerprint"),
            _ => None,
        }
    }

    /// The series label the signal needs in `by` (what it looks up in the registry or in
    /// `[budgets]`).
    pub fn keyed_by(&self) -> Option<crate::event::SeriesLabel> {
        use crate::event::SeriesLabel;
        match self {
            Signal::DaysToDeprecation | Signal::UnknownModel => Some(SeriesLabel::RequestModel),
            Signal::BudgetSpend | Signal::BudgetProjection => Some(SeriesLabel::Service),
            _ => None,
        }
    }

    /// Signals read from closed windows only (their sums are not kept per slice).
    pub fn window_only(&self) -> bool {
        matches!(
            self,
            Signal::NearContextRate
                | Signal::CacheReadRatio
                | Signal::ResponseModelChange
                | Signal::SystemFingerprintChange
                | Signal::NewErrorCode
                | Signal::PromptVersionRegression
                | Signal::DaysToDeprecation
                | Signal::UnknownModel
                | Signal::BudgetSpend
                | Signal::BudgetProjection
        )
    }

    /// `{{ details.NAME }}` values its alerts carry.
    pub fn details(&self) -> &'static [&'static str] {
        match self {
            Signal::CacheReadRatio => &["usd_lost_per_day", "input_tokens_per_day"],
            Signal::DaysToDeprecation => &[
                "model",
                "deprecation_date",
                "retirement_date",
                "successor",
                "share",
            ],
            Signal::UnknownModel => &["share"],
            Signal::BudgetSpend | Signal::BudgetProjection => {
                &["spend_usd", "budget_usd", "projected_usd", "day"]
            }
            Signal::NearContextRate => &["max_input_tokens"],
            Signal::ResponseModelChange => &[
                "before",
                "after",
                "share",
                "took_over_at",
                "shares",
                "comparison",
            ],
            Signal::SystemFingerprintChange => &[
                "before",
                "after",
                "share",
                "took_over_at",
                "shares",
                "comparison",
                "response_model",
            ],
            Signal::NewErrorCode => &["first_seen", "count", "requests", "share", "absent_for"],
            Signal::PromptVersionRegression => &["mode", "since", "regressed", "comparison"],
            _ => &[],
        }
    }
}

pub(super) fn quantile_name(q: f64) -> String {
    let p = q * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("p{}", p.round() as u64)
    } else {
        format!("p{}", (q * 1000.0).round() as u64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
    Quantile,
    HistMean,
    HistDistribution,
    Rate,
    Moments,
    Categorical,
    /// A fact from the registry or the budgets (days left, unknown model, share of budget):
    /// compared with `effect: value` against the threshold, no test.
    Fact,
    /// Occurrences of something absent from the baseline: no condition, no test.
    Novelty,
    /// Two populations compared metric by metric (`test: compare`).
    Comparison,
}

/// Where the baseline comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum Baseline {
    /// The same series (merged across the `across` labels) over `range_ms`, ending `offset_ms`
    /// before the current range starts.
    Trailing {
        range_ms: i64,
        offset_ms: i64,
        /// Label indices ignored when picking baseline series.
        across: Vec<usize>,
    },
    /// The series with these label values replaced, over the current range.
    Peer { set: Vec<(usize, String)> },
    /// A constant.
    Value(f64),
}

/// Which side of the threshold is bad.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Above,
    Below,
}

/// Fire when the effect is past `threshold` (and significant, with enough samples); once
/// firing, the condition holds until the effect is back past `recover`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    pub effect: EffectKind,
    pub direction: Direction,
    pub threshold: f64,
    pub recover: f64,
}

impl Condition {
    /// Is `effect` past the firing threshold?
    pub fn breached(&self, effect: f64) -> bool {
        match self.direction {
            Direction::Above => effect > self.threshold,
            Direction::Below => effect < self.threshold,
        }
    }

    /// Is `effect` still past the recovery threshold (i.e. not yet recovered)?
    pub fn still_breached(&self, effect: f64) -> bool {
        match self.direction {
            Direction::Above => effect > self.recover,
            Direction::Below => effect < self.recover,
        }
    }
}

/// Time resolution a rule is evaluated at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Closed windows (`windows.width`).
    Window,
    /// Fast slices (`windows.slice`), for rules that must react within seconds.
    Slice,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    pub file: PathBuf,
    pub line: u64,
    pub description: String,
    /// (label index, accepted values).
    pub matchers: Vec<(usize, Vec<String>)>,
    /// Label indices an alert instance is keyed by (all series labels by default).
    pub by: Vec<usize>,
    pub signal: Signal,
    pub over_ms: i64,
    /// The current ranges evaluated at every step, ascending; the last is `over_ms`.
    pub horizons_ms: Vec<i64>,
    pub every_ms: i64,
    pub resolution: Resolution,
    pub baseline: Baseline,
    pub condition: Condition,
    pub test: Option<Test>,
    pub min_current: u64,
    pub min_baseline: u64,
    /// Rate signals: fewest events (errors, …) in the current range for the condition to
    /// hold — "5 errors in 144 requests" is not an incident however the interval falls.
    pub min_events: u64,
    pub for_ms: i64,
    pub keep_firing_for_ms: i64,
    pub severity: Severity,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub channels: Vec<String>,
    pub action: Option<Action>,
}

impl Rule {
    /// How far back before an evaluation time the rule reads history.
    pub fn lookback_ms(&self) -> i64 {
        if self.signal == Signal::NewErrorCode {
            // The current range and the one before it (codes leaving the current range are
            // evaluated once more, so their alerts resolve); the baseline span is read from
            // the code memory.
            return 2 * self.over_ms;
        }
        match &self.baseline {
            Baseline::Trailing {
                range_ms,
                offset_ms,
                ..
            } => self.over_ms + offset_ms + range_ms,
            Baseline::Peer { .. } | Baseline::Value(_) => self.over_ms,
        }
    }
}

/// Every rule of a rules directory, in file then position order.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<Rule>,
    /// The files they came from.
    pub files: Vec<PathBuf>,
}

impl RuleSet {
    /// The longest history of window summaries any rule reads.
    pub fn lookback_ms(&self) -> i64 {
        self.rules.iter().map(Rule::lookback_ms).max().unwrap_or(0)
    }

    /// The baseline spans of the `new_error_code` rules (trailing range, offset): what the
    /// code memory keeps (longest) and merges occurrences by (shortest range).
    fn code_spans(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.rules
            .iter()
            .filter_map(|r| match (&r.signal, &r.baseline) {
                (
                    Signal::NewErrorCode,
                    Baseline::Trailing {
                        range_ms,
                        offset_ms,
                        ..
                    },
                ) => Some((*range_ms, r.over_ms + offset_ms + range_ms)),
                _ => None,
            })
    }

    /// How far back the error-code memory reaches (0: no rule reads it).
    pub fn code_lookback_ms(&self) -> i64 {
        self.code_spans().map(|(_, l)| l).max().unwrap_or(0)
    }

    /// The shortest baseline span of the `new_error_code` rules.
    pub fn code_gap_ms(&self) -> i64 {
        self.code_spans().map(|(r, _)| r).min().unwrap_or(0)
    }

    /// Histogram metrics some rule reads (the detector keeps only those).
    pub fn metrics(&self) -> BTreeSet<usize> {
        self.rules.iter().flat_map(metrics_of).collect()
    }

    /// Histogram metrics some slice-resolution rule reads: a fast slice keeps only those
    /// (slices are read by those rules' current ranges only).
    pub fn slice_metrics(&self) -> BTreeSet<usize> {
        self.rules
            .iter()
            .filter(|r| r.resolution == Resolution::Slice)
            .flat_map(metrics_of)
            .collect()
    }
}

/// Histogram metrics `r` reads.
fn metrics_of(r: &Rule) -> Vec<usize> {
    match r.signal {
        Signal::Quantile { metric, .. }
        | Signal::Mean { metric }
        | Signal::Distribution { metric } => {
            vec![metric as usize]
        }
        // Its alerts compare latency and output tokens before and after the change.
        Signal::ResponseModelChange | Signal::SystemFingerprintChange => {
            vec![Metric::LatencyMs as usize, Metric::OutputTokens as usize]
        }
        Signal::PromptVersionRegression => vec![
            Metric::LatencyMs as usize,
            Metric::OutputTokens as usize,
            Metric::CostUsd as usize,
        ],
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantile_display_names() {
        assert_eq!(quantile_name(0.99), "p99");
        assert_eq!(quantile_name(0.999), "p999");
    }
}
