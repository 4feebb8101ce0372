//! Rule files: the YAML rule language, its validation and the compiled [`Rule`].
//!
//! A rule file holds `rules:`, a list of rules. Each rule names a signal (a statistic of a
//! series over a range of closed windows), the current range (`over`), a baseline (a trailing
//! range, a peer series or a fixed value), a condition on the effect with a recovery
//! threshold, an optional significance test, minimum sample counts, `for` /
//! `keep_firing_for`, severity, labels, annotation templates and channels. See the README's
//! "Rules" section for the language and `rules/` for the defaults.
//!
//! Loading never stops at the first problem: every error names the file, line, rule and
//! field, and says what to write instead.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::event::SeriesLabel;
use crate::sketch::Metric;

/// A problem with a rule file.
#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    Syntax { file: PathBuf, message: String },
    #[error("{file}:{line}: rule {rule:?}: {field}: {message}")]
    Invalid {
        file: PathBuf,
        line: u64,
        rule: String,
        field: String,
        message: String,
    },
}

/// What rule validation needs to know about the daemon's configuration.
#[derive(Debug, Clone)]
pub struct RuleContext {
    /// The series labels, in key order.
    pub labels: Vec<SeriesLabel>,
    /// Width of the closed windows.
    pub window: Duration,
    /// Width of the fast error-count slices inside a window.
    pub slice: Duration,
}

// ---------------------------------------------------------------------------------------------
// The file format, as written.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFileSpec {
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    #[serde(default, rename = "match")]
    matchers: BTreeMap<String, OneOrMany>,
    #[serde(default)]
    by: Option<Vec<String>>,
    signal: SignalSpec,
    #[serde(with = "humantime_serde")]
    over: Duration,
    #[serde(default, with = "humantime_serde")]
    every: Option<Duration>,
    baseline: BaselineSpec,
    condition: ConditionSpec,
    #[serde(default)]
    test: Option<TestSpec>,
    #[serde(default)]
    min_samples: MinSamplesSpec,
    #[serde(default, rename = "for", with = "humantime_serde")]
    for_: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    keep_firing_for: Option<Duration>,
    severity: Severity,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    channels: Vec<String>,
    #[serde(default)]
    action: Option<Action>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignalSpec {
    metric: String,
    #[serde(default)]
    stat: Option<String>,
    #[serde(default)]
    error_type: Option<String>,
    #[serde(default)]
    judge: Option<String>,
    #[serde(default)]
    of: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BaselineSpec {
    #[serde(default, with = "humantime_serde")]
    trailing: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    offset: Option<Duration>,
    #[serde(default)]
    across: Vec<String>,
    #[serde(default)]
    peer: BTreeMap<String, String>,
    #[serde(default)]
    value: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConditionSpec {
    effect: EffectKind,
    #[serde(default)]
    above: Option<f64>,
    #[serde(default)]
    below: Option<f64>,
    #[serde(default)]
    recover: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestSpec {
    kind: TestKind,
    #[serde(default)]
    alpha: Option<f64>,
    #[serde(default)]
    confidence: Option<f64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct MinSamplesSpec {
    #[serde(default)]
    current: Option<u64>,
    #[serde(default)]
    baseline: Option<u64>,
    #[serde(default)]
    events: Option<u64>,
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

    fn is_distance(self) -> bool {
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
        }
    }

    /// Tests judged by a confidence bound rather than a p-value.
    fn uses_confidence(self) -> bool {
        matches!(self, TestKind::Wilson | TestKind::QuantileCi)
    }
}

/// A test with its level: significant when p < `alpha`, or, for bound-based tests, when the
/// `confidence` bounds separate current from baseline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Test {
    pub kind: TestKind,
    pub alpha: f64,
    pub confidence: f64,
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
    const ALL: [(&'static str, Category); 5] = [
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
}

impl Signal {
    /// What the signal yields, for validating tests and effects.
    fn shape(&self) -> Shape {
        match self {
            Signal::Quantile { .. } => Shape::Quantile,
            Signal::Mean { .. } => Shape::HistMean,
            Signal::Distribution { .. } => Shape::HistDistribution,
            Signal::ErrorRate | Signal::ErrorTypeRate(_) | Signal::NegativeFeedbackRate => {
                Shape::Rate
            }
            Signal::JudgeMean(_) => Shape::Moments,
            Signal::Categorical(_) => Shape::Categorical,
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
        }
    }
}

fn quantile_name(q: f64) -> String {
    let p = q * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("p{}", p.round() as u64)
    } else {
        format!("p{}", (q * 1000.0).round() as u64)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Quantile,
    HistMean,
    HistDistribution,
    Rate,
    Moments,
    Categorical,
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
    /// Fast error-count slices (`windows.slice`), for error-rate rules that must react fast.
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
    /// The longest history any rule reads.
    pub fn lookback_ms(&self) -> i64 {
        self.rules.iter().map(Rule::lookback_ms).max().unwrap_or(0)
    }

    /// Histogram metrics some rule reads (the detector keeps only those).
    pub fn metrics(&self) -> BTreeSet<usize> {
        self.rules
            .iter()
            .filter_map(|r| match r.signal {
                Signal::Quantile { metric, .. }
                | Signal::Mean { metric }
                | Signal::Distribution { metric } => Some(metric as usize),
                _ => None,
            })
            .collect()
    }
}

/// Variables annotation templates may use (`{{ value }}`, `{{ labels.request_model }}`).
pub const TEMPLATE_VARS: [&str; 12] = [
    "rule",
    "signal",
    "value",
    "baseline",
    "effect",
    "threshold",
    "p_value",
    "n_current",
    "n_baseline",
    "over",
    "severity",
    "series",
];
/// Formatters: `{{ value | pct }}`.
pub const TEMPLATE_FORMATS: [&str; 4] = ["pct", "ms", "round", "usd"];

/// Loads every `*.yaml` / `*.yml` file of `dir` (sorted by name). Returns every problem found.
pub fn load_dir(dir: &Path, ctx: &RuleContext) -> Result<RuleSet, Vec<RuleError>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(source) => {
            return Err(vec![RuleError::Io {
                file: dir.to_path_buf(),
                source,
            }])
        }
    };
    let files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml") | Some("yml")
                )
        })
        .collect();
    let mut files = files;
    files.sort();
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => texts.push((f, text)),
            Err(source) => errors.push(RuleError::Io { file: f, source }),
        }
    }
    match load_texts(&texts, ctx) {
        Ok(set) if errors.is_empty() => Ok(set),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.extend(e);
            Err(errors)
        }
    }
}

/// The rules shipped in `rules/`, compiled in: used when the configured rules directory is
/// the default `rules` and does not exist (e.g. `driftwatch demo` run from elsewhere).
pub const BUILTIN_RULES: [(&str, &str); 3] = [
    ("rules/errors.yaml", include_str!("../rules/errors.yaml")),
    ("rules/latency.yaml", include_str!("../rules/latency.yaml")),
    ("rules/quality.yaml", include_str!("../rules/quality.yaml")),
];

/// Parses and validates rule files given as (name, text); every problem is returned.
pub fn load_texts(
    files: &[(PathBuf, String)],
    ctx: &RuleContext,
) -> Result<RuleSet, Vec<RuleError>> {
    let mut set = RuleSet::default();
    let mut errors = Vec::new();
    for (f, text) in files {
        match parse_file(f, text, ctx) {
            Ok(rules) => set.rules.extend(rules),
            Err(e) => errors.extend(e),
        }
    }
    let mut seen: BTreeMap<&str, &Rule> = BTreeMap::new();
    for r in &set.rules {
        if let Some(first) = seen.insert(&r.name, r) {
            errors.push(RuleError::Invalid {
                file: r.file.clone(),
                line: r.line,
                rule: r.name.clone(),
                field: "name".into(),
                message: format!(
                    "duplicate rule name; also defined at {}:{}",
                    first.file.display(),
                    first.line
                ),
            });
        }
    }
    if errors.is_empty() {
        set.files = files.iter().map(|(f, _)| f.clone()).collect();
        Ok(set)
    } else {
        Err(errors)
    }
}

/// Parses and validates one rule file.
pub fn parse_file(file: &Path, text: &str, ctx: &RuleContext) -> Result<Vec<Rule>, Vec<RuleError>> {
    let spec: RuleFileSpec = serde_saphyr::from_str(text).map_err(|e| {
        vec![RuleError::Syntax {
            file: file.to_path_buf(),
            message: syntax_message(&e),
        }]
    })?;
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for r in spec.rules {
        let mut v = Validator {
            file,
            line: r.name.referenced.line(),
            rule: r.name.value.clone(),
            errors: Vec::new(),
        };
        if let Some(rule) = v.rule(r, ctx) {
            if v.errors.is_empty() {
                rules.push(rule);
            }
        }
        errors.extend(v.errors);
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// serde-saphyr renders a code snippet; the first line with the location is what a log wants.
fn syntax_message(e: &serde_saphyr::Error) -> String {
    let loc = e
        .location()
        .map(|l| format!("line {} column {}: ", l.line(), l.column()))
        .unwrap_or_default();
    let text = e.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid YAML")
        .trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if first.starts_with("line ") {
        first.to_string()
    } else {
        format!("{loc}{first}")
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

        // Resolution: slices carry request and error counts only.
        let window_ms = ctx.window.as_millis() as i64;
        let every = r.every.unwrap_or(ctx.window);
        let resolution = if every.as_millis() as i64 % window_ms == 0 {
            Resolution::Window
        } else {
            if signal != Signal::ErrorRate {
                self.err(
                    "every",
                    format!(
                        "evaluating more often than windows.width ({}) works only for metric error_rate (from the {} slices); use a multiple of {}",
                        humantime::format_duration(ctx.window),
                        humantime::format_duration(ctx.slice),
                        humantime::format_duration(ctx.window)
                    ),
                );
            }
            Resolution::Slice
        };
        let (step, step_name) = match resolution {
            Resolution::Window => (ctx.window, "windows.width"),
            Resolution::Slice => (ctx.slice, "windows.slice"),
        };
        let every_ms = self.duration_ms("every", every, step, step_name);
        let over_ms = self.duration_ms("over", r.over, step, step_name);

        let baseline = self.baseline(&r.baseline, ctx, step, step_name);
        let condition = self.condition(&r.condition, shape, baseline.as_ref());
        let test = r
            .test
            .as_ref()
            .and_then(|t| self.test(t, shape, baseline.as_ref()));

        // Minimum samples: a quantile needs ten samples beyond it to mean something.
        let default_min = match &signal {
            Signal::Quantile { q, .. } => crate::stats::min_samples_for_quantile(*q, 10),
            Signal::ErrorRate | Signal::ErrorTypeRate(_) | Signal::NegativeFeedbackRate => 100,
            _ => 30,
        };
        let min_current = r.min_samples.current.unwrap_or(default_min);
        let min_baseline = r.min_samples.baseline.unwrap_or(default_min);
        let min_events = r.min_samples.events.unwrap_or(0);
        if r.min_samples.events.is_some() && shape != Shape::Rate {
            self.err(
                "min_samples.events",
                "applies to rate signals (error_rate, error_type_rate, negative_feedback_rate) only",
            );
        }
        if let Signal::Quantile { q, .. } = &signal {
            let need = crate::stats::min_samples_for_quantile(*q, 10);
            if min_current < need {
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
                        r.condition.effect,
                        EffectKind::Ratio | EffectKind::RelativeChange
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
            instance_labels.push(crate::detect::JUDGE_LABEL);
        }

        for (k, v) in &r.labels {
            if !valid_label_name(k) {
                self.err(
                    &format!("labels.{k}"),
                    "label names use letters, digits and `_`",
                );
            }
            self.template(&format!("labels.{k}"), v, ctx, &instance_labels);
        }
        for (k, v) in &r.annotations {
            self.template(&format!("annotations.{k}"), v, ctx, &instance_labels);
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
        if r.action == Some(Action::CircuitBreaker) && shape != Shape::Rate {
            self.err(
                "action",
                "circuit_breaker rules watch a rate (metric error_rate or error_type_rate)",
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
                self.err("signal.metric", format!("unknown metric {other:?}; use latency_ms, ttft_ms, input_tokens, output_tokens, cost_usd, error_rate, error_type_rate, negative_feedback_rate, judge_score or distribution"));
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

    fn test(&mut self, t: &TestSpec, shape: Shape, baseline: Option<&Baseline>) -> Option<Test> {
        use TestKind::*;
        let fits = match t.kind {
            WelchT => shape == Shape::Moments,
            MannWhitney | Ks | AndersonDarling => {
                matches!(
                    shape,
                    Shape::Quantile | Shape::HistMean | Shape::HistDistribution
                )
            }
            QuantileCi => shape == Shape::Quantile,
            TwoProportionZ | Binomial | Wilson => shape == Shape::Rate,
            ChiSquare => matches!(shape, Shape::Categorical | Shape::HistDistribution),
        };
        if !fits {
            let hint = match shape {
                Shape::Quantile => "quantile_ci, mann_whitney, ks or anderson_darling",
                Shape::HistMean => "mann_whitney, ks or anderson_darling",
                Shape::HistDistribution => "ks, anderson_darling, mann_whitney or chi_square",
                Shape::Rate => "two_proportion_z, binomial or wilson",
                Shape::Moments => "welch_t",
                Shape::Categorical => "chi_square",
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
        if fixed && !matches!(t.kind, Binomial | Wilson) {
            self.err("test.kind", format!("{} compares two samples; against a fixed baseline value use binomial or wilson", t.kind.as_str()));
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
        Some(Test {
            kind: t.kind,
            alpha,
            confidence,
        })
    }

    fn template(&mut self, field: &str, text: &str, ctx: &RuleContext, instance: &[&str]) {
        if let Err(e) = check_template(text, ctx, instance) {
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

/// The `{{ var | format }}` pieces of a template.
pub(crate) fn template_parts(text: &str) -> Result<Vec<TemplatePart<'_>>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        if open > 0 {
            out.push(TemplatePart::Text(&rest[..open]));
        }
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| "unclosed `{{` (close it with `}}`)".to_string())?;
        let inner = after[..close].trim();
        let (var, fmt) = match inner.split_once('|') {
            Some((v, f)) => (v.trim(), Some(f.trim())),
            None => (inner, None),
        };
        out.push(TemplatePart::Var { var, fmt });
        rest = &after[close + 2..];
    }
    if !rest.is_empty() {
        out.push(TemplatePart::Text(rest));
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum TemplatePart<'a> {
    Text(&'a str),
    Var { var: &'a str, fmt: Option<&'a str> },
}

fn check_template(text: &str, ctx: &RuleContext, instance: &[&str]) -> Result<(), String> {
    for p in template_parts(text)? {
        if let TemplatePart::Var { var, fmt } = p {
            if let Some(l) = var.strip_prefix("labels.") {
                if !instance.contains(&l)
                    && (ctx.labels.iter().any(|x| x.as_str() == l)
                        || l == crate::detect::JUDGE_LABEL)
                {
                    return Err(format!(
                        "{{{{ {var} }}}} would be empty: alerts of this rule carry the labels [{}] (see `by`; `judge` only when signal.judge is not set)",
                        instance.join(", ")
                    ));
                }
            }
            let ok = TEMPLATE_VARS.contains(&var)
                || var
                    .strip_prefix("labels.")
                    .is_some_and(|l| instance.contains(&l));
            if !ok {
                let labels: Vec<_> = ctx.labels.iter().map(|l| format!("labels.{l}")).collect();
                return Err(format!(
                    "unknown template variable {var:?}; use {} or {}",
                    TEMPLATE_VARS.join(", "),
                    labels.join(", ")
                ));
            }
            if let Some(f) = fmt {
                if !TEMPLATE_FORMATS.contains(&f) {
                    return Err(format!(
                        "unknown format {f:?} in {{{{ {var} | {f} }}}}; use {}",
                        TEMPLATE_FORMATS.join(", ")
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> RuleContext {
        RuleContext {
            labels: vec![
                SeriesLabel::Service,
                SeriesLabel::RequestModel,
                SeriesLabel::PromptVersion,
                SeriesLabel::Deployment,
            ],
            window: Duration::from_secs(60),
            slice: Duration::from_secs(10),
        }
    }

    const GOOD: &str = r#"
rules:
  - name: p99
    signal: { metric: latency_ms, stat: p99 }
    over: 5m
    baseline: { trailing: 1h, offset: 5m }
    condition: { effect: ratio, above: 2.0, recover: 1.5 }
    test: { kind: quantile_ci, confidence: 0.95 }
    for: 2m
    severity: alert
    annotations:
      summary: "P99 {{ value | ms }} is {{ effect | round }}x {{ baseline | ms }} on {{ labels.request_model }}"
      runbook_url: https://example.com/rb
"#;

    #[test]
    fn parses_a_rule() {
        let rules = parse_file(Path::new("r.yaml"), GOOD, &ctx()).unwrap();
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert_eq!(r.line, 3);
        assert_eq!(
            r.signal,
            Signal::Quantile {
                metric: Metric::LatencyMs,
                q: 0.99
            }
        );
        assert_eq!(r.over_ms, 300_000);
        assert_eq!(r.min_current, 1000);
        assert_eq!(r.lookback_ms(), 300_000 + 300_000 + 3_600_000);
        assert_eq!(r.by, vec![0, 1, 2, 3]);
        assert_eq!(r.resolution, Resolution::Window);
    }

    #[test]
    fn quantile_names() {
        assert_eq!(parse_quantile("p99"), Some(0.99));
        assert_eq!(parse_quantile("p50"), Some(0.5));
        assert_eq!(parse_quantile("p999"), Some(0.999));
        assert_eq!(parse_quantile("p100"), None);
        assert_eq!(parse_quantile("p"), None);
        assert_eq!(quantile_name(0.99), "p99");
        assert_eq!(quantile_name(0.999), "p999");
    }
}
