//! Two populations compared metric by metric: a candidate (a new prompt version, a new
//! response model, a canary arm) against a baseline, with the same sketch-based tests as the
//! rules. Pure and deterministic; `driftwatch gate`, the change signals and the rollout
//! analyses share it.
//!
//! Each metric gets the candidate's and the baseline's value, the relative effect
//! (candidate / baseline − 1), a confidence interval of that effect, one-sided p-values in
//! both directions and a classification in the manner of automated canary analysis
//! (Kayenta's judge): **High** when the candidate is higher by more than the tolerance and
//! the test says so, **Low** for the mirror case, **Pass** otherwise, **NoData** below the
//! sample minimums. Whether High is a regression depends on the metric's direction (higher
//! judge scores are good, higher latency is bad).
//!
//! | metric | value | test | interval of the effect |
//! |---|---|---|---|
//! | `judge:NAME`, `feedback` | mean | Welch's t | Welch's, relative to the baseline mean |
//! | `error_rate` | errors / requests | two-proportion z (exact conditional test when sparse) | Newcombe's hybrid score, relative to the baseline rate |
//! | `latency_p50`, `latency_p99` | quantile of the histogram | two-proportion test of the share above the other side's quantile | order-statistic interval of the candidate's quantile over the baseline's |
//! | `output_tokens`, `cost` | mean (exact sum / count) | Mann–Whitney U on the aligned histogram buckets | Welch's on the bucket moments, relative to the baseline mean |
//!
//! Feedback (−1 / 0 / 1) is scored 0 / ½ / 1, so its mean is a satisfaction in [0, 1] whose
//! relative drop means what a judge score's does. The family level `alpha` is split over the
//! compared metrics (Bonferroni), so a gate over seven metrics is not seven chances of a
//! false block.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::detect::history::{align, Summary};
use crate::detect::stats::{self, two_proportions, Alternative};
use crate::window::sketch::{Metric, Moments, SparseHist};

/// A metric two populations are compared on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CompareMetric {
    /// Mean of one judge score.
    Judge(String),
    /// User feedback scored 0 / ½ / 1.
    Feedback,
    ErrorRate,
    LatencyP50,
    LatencyP99,
    /// Mean output tokens per request.
    OutputTokens,
    /// Mean cost per request (USD).
    Cost,
}

/// What `--metric` accepts, for messages.
pub const METRIC_NAMES: &str =
    "judge:NAME, feedback, error_rate, latency_p50, latency_p99, output_tokens, cost";

impl CompareMetric {
    /// Parses `judge:NAME`, `feedback`, `error_rate`, `latency_p50`, `latency_p99`,
    /// `output_tokens` or `cost`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Some(name) = s.strip_prefix("judge:") {
            if name.is_empty() {
                return Err("judge: needs the judge name, e.g. judge:faithfulness".into());
            }
            return Ok(CompareMetric::Judge(name.to_string()));
        }
        Ok(match s {
            "feedback" => CompareMetric::Feedback,
            "error_rate" => CompareMetric::ErrorRate,
            "latency_p50" => CompareMetric::LatencyP50,
            "latency_p99" => CompareMetric::LatencyP99,
            "output_tokens" => CompareMetric::OutputTokens,
            "cost" => CompareMetric::Cost,
            other => {
                return Err(format!(
                    "unknown metric {other:?}; use one of {METRIC_NAMES}"
                ))
            }
        })
    }

    pub fn name(&self) -> String {
        match self {
            CompareMetric::Judge(n) => format!("judge:{n}"),
            CompareMetric::Feedback => "feedback".into(),
            CompareMetric::ErrorRate => "error_rate".into(),
            CompareMetric::LatencyP50 => "latency_p50".into(),
            CompareMetric::LatencyP99 => "latency_p99".into(),
            CompareMetric::OutputTokens => "output_tokens".into(),
            CompareMetric::Cost => "cost".into(),
        }
    }

    /// Higher is better (judge scores, feedback); for every other metric higher is worse.
    pub fn higher_is_better(&self) -> bool {
        matches!(self, CompareMetric::Judge(_) | CompareMetric::Feedback)
    }

    /// The histogram metric it reads, if any.
    pub fn histogram(&self) -> Option<Metric> {
        match self {
            CompareMetric::LatencyP50 | CompareMetric::LatencyP99 => Some(Metric::LatencyMs),
            CompareMetric::OutputTokens => Some(Metric::OutputTokens),
            CompareMetric::Cost => Some(Metric::CostUsd),
            _ => None,
        }
    }

    /// The default metric set for two populations: every judge name either side has, then
    /// feedback, error rate, P99 latency, output tokens and cost.
    pub fn defaults(candidate: &Summary, baseline: &Summary) -> Vec<CompareMetric> {
        let judges: BTreeSet<&String> = candidate
            .judge
            .keys()
            .chain(baseline.judge.keys())
            .collect();
        let mut out: Vec<CompareMetric> = judges
            .into_iter()
            .map(|j| CompareMetric::Judge(j.clone()))
            .collect();
        out.extend([
            CompareMetric::Feedback,
            CompareMetric::ErrorRate,
            CompareMetric::LatencyP99,
            CompareMetric::OutputTokens,
            CompareMetric::Cost,
        ]);
        out
    }
}

/// How a comparison decides.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CompareOptions {
    /// Largest tolerated relative change (0.05 = 5 %): a metric is High / Low only past it.
    pub tolerance: f64,
    /// Family significance level over the compared metrics (split evenly, Bonferroni).
    pub alpha: f64,
    /// Level of the reported intervals.
    pub confidence: f64,
    /// Fewest samples per side for a mean or a rate (judge scores, feedback, requests).
    pub min_samples: u64,
    /// Quantiles: fewest samples expected above the quantile per side (P99 with 5 → 500).
    pub min_tail: u64,
}

impl Default for CompareOptions {
    fn default() -> Self {
        Self {
            tolerance: 0.05,
            alpha: 0.05,
            confidence: 0.95,
            min_samples: 30,
            min_tail: 5,
        }
    }
}

/// Kayenta's per-metric classification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Classification {
    High,
    Low,
    Pass,
    NoData,
}

/// What a classification means for the candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Pass,
    Regression,
    Improvement,
    NotEnoughData,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Regression => "regression",
            Verdict::Improvement => "improvement",
            Verdict::NotEnoughData => "not enough data",
        }
    }
}

/// One metric's comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricResult {
    pub metric: String,
    pub higher_is_better: bool,
    pub n_candidate: u64,
    pub n_baseline: u64,
    #[serde(serialize_with = "finite")]
    pub candidate: f64,
    #[serde(serialize_with = "finite")]
    pub baseline: f64,
    /// candidate / baseline − 1 (infinite when the baseline is 0 and the candidate is not;
    /// null in JSON).
    #[serde(serialize_with = "finite")]
    pub effect: f64,
    /// Interval of the effect at `confidence`.
    #[serde(serialize_with = "finite_pair")]
    pub ci: Option<(f64, f64)>,
    /// One-sided p-value of "the candidate is worse" (in the metric's bad direction).
    #[serde(serialize_with = "finite")]
    pub p_value: f64,
    /// One-sided p-value of "the candidate is better" (the other direction).
    #[serde(skip)]
    pub p_better: f64,
    /// The level each metric is tested at (`alpha` / metrics).
    pub alpha: f64,
    pub classification: Classification,
    pub verdict: Verdict,
    /// Why there is not enough data, or what else limits the result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl MetricResult {
    /// Worse than the baseline by more than `tolerance` in the metric's bad direction, at
    /// the level it was tested at: a regression had the comparison used that tolerance.
    pub fn worse_beyond(&self, tolerance: f64) -> bool {
        let worse = if self.higher_is_better {
            -self.effect
        } else {
            self.effect
        };
        self.verdict != Verdict::NotEnoughData && worse > tolerance && self.p_value < self.alpha
    }

    /// One line for a notification: `judge:faithfulness: 0.8 → 0.72 (-10.0 %, p=1.2e-9,
    /// regression)` — baseline → candidate.
    pub fn line(&self) -> String {
        let v = |x: f64| {
            if x.is_finite() {
                format!("{x:.4}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string()
            } else {
                "-".into()
            }
        };
        format!(
            "{}: {} → {} ({:+.1} %, p={:.2e}, {})",
            self.metric,
            v(self.baseline),
            v(self.candidate),
            self.effect * 100.0,
            self.p_value,
            self.verdict.as_str()
        )
    }
}

fn finite<S: serde::Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
    match x.is_finite() {
        true => s.serialize_f64(*x),
        false => s.serialize_none(),
    }
}

fn finite_pair<S: serde::Serializer>(x: &Option<(f64, f64)>, s: S) -> Result<S::Ok, S::Error> {
    match x {
        Some((a, b)) if a.is_finite() && b.is_finite() => serde::Serialize::serialize(&[*a, *b], s),
        _ => s.serialize_none(),
    }
}

/// Compares `candidate` with `baseline` on each of `metrics`, at `alpha / metrics.len()` each.
pub fn compare_all(
    metrics: &[CompareMetric],
    candidate: &Summary,
    baseline: &Summary,
    opts: &CompareOptions,
) -> Vec<MetricResult> {
    let per = CompareOptions {
        alpha: opts.alpha / metrics.len().max(1) as f64,
        ..*opts
    };
    metrics
        .iter()
        .map(|m| compare(m, candidate, baseline, &per))
        .collect()
}

/// The numbers of one side-by-side before classification.
pub(crate) struct Raw {
    pub n: (u64, u64),
    pub values: (f64, f64),
    /// Interval of candidate − baseline in the metric's unit (`relative: false`) or of the
    /// effect directly (`relative: true`).
    pub ci: Option<(f64, f64)>,
    pub relative_ci: bool,
    pub p_higher: f64,
    pub p_lower: f64,
    /// Why the minimums are not met.
    pub short: Option<String>,
}

/// Compares one metric at `opts.alpha` (no further split).
pub fn compare(
    metric: &CompareMetric,
    candidate: &Summary,
    baseline: &Summary,
    opts: &CompareOptions,
) -> MetricResult {
    let raw = match metric {
        CompareMetric::Judge(name) => {
            let c = candidate.judge.get(name).copied().unwrap_or_default();
            let b = baseline.judge.get(name).copied().unwrap_or_default();
            means(&c, &b, opts, "judge scores")
        }
        CompareMetric::Feedback => means(
            &feedback_moments(candidate.feedback),
            &feedback_moments(baseline.feedback),
            opts,
            "feedback",
        ),
        CompareMetric::ErrorRate => rates(
            (candidate.errors, candidate.requests),
            (baseline.errors, baseline.requests),
            opts,
        ),
        CompareMetric::LatencyP50 | CompareMetric::LatencyP99 => {
            let q = if *metric == CompareMetric::LatencyP50 {
                0.5
            } else {
                0.99
            };
            quantiles(
                candidate.hist(Metric::LatencyMs),
                baseline.hist(Metric::LatencyMs),
                q,
                Metric::LatencyMs.scale(),
                opts,
            )
        }
        CompareMetric::OutputTokens => hist_means(
            candidate.hist(Metric::OutputTokens),
            baseline.hist(Metric::OutputTokens),
            Metric::OutputTokens.scale(),
            opts,
        ),
        CompareMetric::Cost => hist_means(
            candidate.hist(Metric::CostUsd),
            baseline.hist(Metric::CostUsd),
            Metric::CostUsd.scale(),
            opts,
        ),
    };
    classify(metric, raw, opts)
}

fn relative(c: f64, b: f64) -> f64 {
    if b == 0.0 {
        if c == 0.0 {
            0.0
        } else {
            f64::INFINITY * c.signum()
        }
    } else {
        c / b - 1.0
    }
}

pub(crate) fn classify(metric: &CompareMetric, raw: Raw, opts: &CompareOptions) -> MetricResult {
    let (c, b) = raw.values;
    let effect = relative(c, b);
    let ci = match (raw.ci, raw.relative_ci) {
        (Some(ci), true) => Some(ci),
        (Some((lo, hi)), false) if b != 0.0 => Some((lo / b.abs(), hi / b.abs())),
        _ => None,
    };
    // Every metric but a judge score is non-negative: it cannot fall by more than 100 %.
    let ci = match metric {
        CompareMetric::Judge(_) => ci,
        _ => ci.map(|(lo, hi)| (lo.max(-1.0), hi)),
    };
    let better = metric.higher_is_better();
    let (p_worse, p_better) = if better {
        (raw.p_lower, raw.p_higher)
    } else {
        (raw.p_higher, raw.p_lower)
    };
    let classification = if raw.short.is_some() {
        Classification::NoData
    } else if effect > opts.tolerance && raw.p_higher < opts.alpha {
        Classification::High
    } else if effect < -opts.tolerance && raw.p_lower < opts.alpha {
        Classification::Low
    } else {
        Classification::Pass
    };
    let verdict = match (classification, better) {
        (Classification::NoData, _) => Verdict::NotEnoughData,
        (Classification::Pass, _) => Verdict::Pass,
        (Classification::High, true) | (Classification::Low, false) => Verdict::Improvement,
        (Classification::High, false) | (Classification::Low, true) => Verdict::Regression,
    };
    MetricResult {
        metric: metric.name(),
        higher_is_better: better,
        n_candidate: raw.n.0,
        n_baseline: raw.n.1,
        candidate: c,
        baseline: b,
        effect,
        ci,
        p_value: p_worse,
        p_better,
        alpha: opts.alpha,
        classification,
        verdict,
        note: raw.short,
    }
}

pub(crate) fn short_of(n: (u64, u64), min: u64, what: &str) -> Option<String> {
    (n.0 < min || n.1 < min).then(|| {
        format!(
            "{what}: {} candidate and {} baseline samples, at least {min} each needed",
            n.0, n.1
        )
    })
}

/// Feedback counts (negative, neutral, positive) as moments of 0 / ½ / 1.
pub fn feedback_moments(f: [u64; 3]) -> Moments {
    let n = f.iter().sum::<u64>();
    if n == 0 {
        return Moments::default();
    }
    let values = [0.0, 0.5, 1.0];
    let mean = (0.5 * f[1] as f64 + f[2] as f64) / n as f64;
    let m2 = values
        .iter()
        .zip(f)
        .map(|(v, c)| c as f64 * (v - mean) * (v - mean))
        .sum();
    Moments { n, mean, m2 }
}

/// Welch's test of two means, both directions; two constant samples that differ are a sure
/// difference.
fn mean_tests(c: &Moments, b: &Moments) -> (f64, f64) {
    let t = |alt| stats::welch_t(c, b, alt).map(|r| r.p_value);
    match (t(Alternative::Greater), t(Alternative::Less)) {
        (Some(h), Some(l)) => (h, l),
        _ if c.n >= 2 && b.n >= 2 && c.m2 == 0.0 && b.m2 == 0.0 => {
            match c.mean.partial_cmp(&b.mean) {
                Some(std::cmp::Ordering::Greater) => (0.0, 1.0),
                Some(std::cmp::Ordering::Less) => (1.0, 0.0),
                _ => (1.0, 1.0),
            }
        }
        _ => (1.0, 1.0),
    }
}

fn means(c: &Moments, b: &Moments, opts: &CompareOptions, what: &str) -> Raw {
    let n = (c.n, b.n);
    let (p_higher, p_lower) = mean_tests(c, b);
    Raw {
        n,
        values: (
            if c.n > 0 { c.mean } else { f64::NAN },
            if b.n > 0 { b.mean } else { f64::NAN },
        ),
        ci: stats::welch_ci(c, b, opts.confidence),
        relative_ci: false,
        p_higher,
        p_lower,
        short: short_of(n, opts.min_samples.max(2), what),
    }
}

fn rates(c: (u64, u64), b: (u64, u64), opts: &CompareOptions) -> Raw {
    let n = (c.1, b.1);
    let rate = |(k, n): (u64, u64)| {
        if n == 0 {
            f64::NAN
        } else {
            k as f64 / n as f64
        }
    };
    let p = |alt| two_proportions(c.0, c.1, b.0, b.1, alt).unwrap_or(1.0);
    Raw {
        n,
        values: (rate(c), rate(b)),
        ci: stats::newcombe_interval(c.0, c.1, b.0, b.1, opts.confidence),
        relative_ci: false,
        p_higher: p(Alternative::Greater),
        p_lower: p(Alternative::Less),
        short: short_of(n, opts.min_samples, "requests"),
    }
}

fn quantiles(
    c: Option<&SparseHist>,
    b: Option<&SparseHist>,
    q: f64,
    scale: f64,
    opts: &CompareOptions,
) -> Raw {
    let empty = SparseHist::default();
    let (c, b) = (c.unwrap_or(&empty), b.unwrap_or(&empty));
    let n = (c.count(), b.count());
    let min = stats::min_samples_for_quantile(q, opts.min_tail).max(opts.min_samples);
    let short = short_of(n, min, "latencies");
    let (cq, bq) = (c.quantile_units(q), b.quantile_units(q));
    let values = (
        cq.map_or(f64::NAN, |v| v as f64 / scale),
        bq.map_or(f64::NAN, |v| v as f64 / scale),
    );
    let (Some(cq), Some(bq)) = (cq, bq) else {
        return Raw {
            n,
            values,
            ci: None,
            relative_ci: true,
            p_higher: 1.0,
            p_lower: 1.0,
            short: short.or_else(|| Some("no latencies".into())),
        };
    };
    // Higher: more of the candidate above the baseline's quantile than the baseline has;
    // lower: more of the baseline above the candidate's.
    let p_higher = two_proportions(
        c.count_above(bq as f64),
        n.0,
        b.count_above(bq as f64),
        n.1,
        Alternative::Greater,
    )
    .unwrap_or(1.0);
    let p_lower = two_proportions(
        b.count_above(cq as f64),
        n.1,
        c.count_above(cq as f64),
        n.0,
        Alternative::Greater,
    )
    .unwrap_or(1.0);
    let ci = stats::quantile_ci_ranks(n.0, q, opts.confidence).and_then(|(lo, hi)| {
        let (lo, hi) = (c.value_at_rank(lo)?, c.value_at_rank(hi)?);
        (bq > 0).then(|| (lo as f64 / bq as f64 - 1.0, hi as f64 / bq as f64 - 1.0))
    });
    Raw {
        n,
        values,
        ci,
        relative_ci: true,
        p_higher,
        p_lower,
        short,
    }
}

/// Moments of a histogram's values (each sample at its bucket's value, in the field's unit;
/// the mean is replaced by the exact one from the sum).
fn hist_moments(h: &SparseHist, scale: f64) -> Moments {
    let n = h.count();
    if n == 0 {
        return Moments::default();
    }
    let mean = h.sum / n as f64;
    let m2 = h
        .buckets
        .iter()
        .map(|(v, c)| {
            let d = *v as f64 / scale - mean;
            *c as f64 * d * d
        })
        .sum();
    Moments { n, mean, m2 }
}

fn hist_means(
    c: Option<&SparseHist>,
    b: Option<&SparseHist>,
    scale: f64,
    opts: &CompareOptions,
) -> Raw {
    let empty = SparseHist::default();
    let (c, b) = (c.unwrap_or(&empty), b.unwrap_or(&empty));
    let (mc, mb) = (hist_moments(c, scale), hist_moments(b, scale));
    let n = (mc.n, mb.n);
    let (ac, ab) = align(c, b);
    let p = |alt| {
        stats::mann_whitney_u(&ac, &ab, alt)
            .map(|r| r.p_value)
            .unwrap_or(1.0)
    };
    Raw {
        n,
        values: (
            if mc.n > 0 { mc.mean } else { f64::NAN },
            if mb.n > 0 { mb.mean } else { f64::NAN },
        ),
        ci: stats::welch_ci(&mc, &mb, opts.confidence),
        relative_ci: false,
        p_higher: p(Alternative::Greater),
        p_lower: p(Alternative::Less),
        short: short_of(n, opts.min_samples, "samples"),
    }
}

/// The overall verdict of a set of results: regression if any metric regressed, else not
/// enough data if any lacks it, else pass.
pub fn overall(results: &[MetricResult]) -> Verdict {
    if results.iter().any(|r| r.verdict == Verdict::Regression) {
        Verdict::Regression
    } else if results.iter().any(|r| r.verdict == Verdict::NotEnoughData) {
        Verdict::NotEnoughData
    } else {
        Verdict::Pass
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::window::sketch::WindowSketch;

    fn judge(values: impl IntoIterator<Item = f64>) -> Summary {
        let mut m = Moments::default();
        values.into_iter().for_each(|v| m.push(v));
        let mut s = Summary {
            requests: m.n,
            ..Summary::default()
        };
        s.judge.insert("faithfulness".into(), m);
        s
    }

    /// Deterministic pseudo-uniform values in [0, 1).
    fn uniform(seed: u64, n: usize) -> Vec<f64> {
        let mut x = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (x >> 11) as f64 / (1u64 << 53) as f64
            })
            .collect()
    }

    fn opts() -> CompareOptions {
        CompareOptions::default()
    }

    #[test]
    fn a_judge_score_ten_percent_lower_is_a_regression() {
        let base = judge(uniform(1, 400).into_iter().map(|u| 0.7 + 0.2 * u));
        let cand = judge(uniform(2, 400).into_iter().map(|u| 0.62 + 0.2 * u));
        let m = CompareMetric::Judge("faithfulness".into());
        let r = compare(&m, &cand, &base, &opts());
        assert_eq!(r.classification, Classification::Low);
        assert_eq!(r.verdict, Verdict::Regression);
        assert!((r.effect - (0.72 / 0.8 - 1.0)).abs() < 0.01, "{}", r.effect);
        let (lo, hi) = r.ci.unwrap();
        assert!(lo < r.effect && r.effect < hi && hi < 0.0, "{lo} {hi}");
        assert!(r.p_value < 1e-10);
    }

    #[test]
    fn worse_beyond_a_tolerance_is_the_verdict_at_that_tolerance() {
        let base = judge(uniform(1, 5000).into_iter().map(|u| 0.7 + 0.2 * u));
        let m = CompareMetric::Judge("faithfulness".into());
        for (seed, shift) in [(2, -0.016), (3, -0.04), (4, -0.06), (5, 0.05), (6, 0.0)] {
            let cand = judge(
                uniform(seed, 5000)
                    .into_iter()
                    .map(|u| 0.7 + shift + 0.2 * u),
            );
            let at_five = compare(&m, &cand, &base, &opts());
            for tolerance in [0.0, 0.01, 0.03, 0.05, 0.08] {
                let o = CompareOptions {
                    tolerance,
                    ..opts()
                };
                let direct = compare(&m, &cand, &base, &o).verdict == Verdict::Regression;
                assert_eq!(
                    at_five.worse_beyond(tolerance),
                    direct,
                    "shift {shift}, tolerance {tolerance}"
                );
            }
        }
        // Not enough data is never worse.
        let few = compare(&m, &judge([0.1; 5]), &base, &opts());
        assert!(!few.worse_beyond(0.0));
    }

    #[test]
    fn a_judge_score_two_percent_lower_passes_a_five_percent_tolerance() {
        let base = judge(uniform(1, 5000).into_iter().map(|u| 0.7 + 0.2 * u));
        let cand = judge(uniform(2, 5000).into_iter().map(|u| 0.684 + 0.2 * u));
        let m = CompareMetric::Judge("faithfulness".into());
        let r = compare(&m, &cand, &base, &opts());
        // Significant but within the tolerance.
        assert!(r.p_value < 1e-6);
        assert_eq!(r.verdict, Verdict::Pass);
        // Higher scores are an improvement, never a regression.
        let r = compare(&m, &base, &judge([0.5; 40]), &opts());
        assert_eq!(r.verdict, Verdict::Improvement);
    }

    #[test]
    fn too_few_scores_are_not_enough_data() {
        let m = CompareMetric::Judge("faithfulness".into());
        let r = compare(&m, &judge([0.1; 10]), &judge([0.9; 100]), &opts());
        assert_eq!(r.verdict, Verdict::NotEnoughData);
        assert!(r.note.unwrap().contains("10 candidate"));
    }

    #[test]
    fn error_rate_up_from_one_to_three_percent_regresses() {
        let s = |k, n| Summary {
            requests: n,
            errors: k,
            ..Summary::default()
        };
        let r = compare(
            &CompareMetric::ErrorRate,
            &s(30, 1000),
            &s(10, 1000),
            &opts(),
        );
        assert_eq!(r.verdict, Verdict::Regression);
        assert!((r.effect - 2.0).abs() < 1e-12);
        // Newcombe's interval of 0.03 − 0.01, relative to 0.01.
        let (lo, hi) = stats::newcombe_interval(30, 1000, 10, 1000, 0.95).unwrap();
        assert_eq!(r.ci, Some((lo / 0.01, hi / 0.01)));
        // A zero baseline: infinite effect, decided by the exact test.
        let r = compare(&CompareMetric::ErrorRate, &s(9, 300), &s(0, 300), &opts());
        assert!(r.effect.is_infinite());
        assert_eq!(r.verdict, Verdict::Regression);
        let r = compare(&CompareMetric::ErrorRate, &s(1, 300), &s(0, 300), &opts());
        assert_eq!(r.verdict, Verdict::Pass);
    }

    fn latencies(values: impl IntoIterator<Item = f64>) -> Summary {
        let mut w = WindowSketch::default();
        for v in values {
            let ev = crate::event::RequestEvent {
                latency_ms: v,
                output_tokens: Some((v / 10.0) as u64),
                ..crate::event::RequestEvent::default()
            };
            w.observe(&ev, 0, 0);
        }
        Summary::from_sketch(&w, &(0..5).collect())
    }

    #[test]
    fn a_doubled_tail_is_a_p99_regression_and_the_same_distribution_passes() {
        let base = latencies(uniform(3, 4000).into_iter().map(|u| 200.0 + 800.0 * u * u));
        let same = latencies(uniform(4, 4000).into_iter().map(|u| 200.0 + 800.0 * u * u));
        let slow = latencies(
            uniform(5, 4000)
                .into_iter()
                .enumerate()
                .map(|(i, u)| 200.0 + 800.0 * u * u + if i % 25 == 0 { 1500.0 } else { 0.0 }),
        );
        let r = compare(&CompareMetric::LatencyP99, &slow, &base, &opts());
        assert_eq!(r.verdict, Verdict::Regression, "{r:?}");
        assert!(r.effect > 0.5, "{}", r.effect);
        let r = compare(&CompareMetric::LatencyP99, &same, &base, &opts());
        assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
        let (lo, hi) = r.ci.unwrap();
        assert!(lo <= 0.0 && hi >= 0.0, "{lo} {hi}");
        // Output tokens follow latency here: the slow arm's mean is higher too.
        let r = compare(&CompareMetric::OutputTokens, &slow, &base, &opts());
        assert_eq!(r.verdict, Verdict::Regression, "{r:?}");
        let r = compare(&CompareMetric::OutputTokens, &same, &base, &opts());
        assert_eq!(r.verdict, Verdict::Pass, "{r:?}");
        // 400 latencies cannot say anything about a P99 at a tail of 5.
        let few = latencies(uniform(6, 400).into_iter().map(|u| 300.0 * u));
        let r = compare(&CompareMetric::LatencyP99, &few, &base, &opts());
        assert_eq!(r.verdict, Verdict::NotEnoughData);
    }

    #[test]
    fn feedback_is_scored_zero_half_one() {
        let m = feedback_moments([1, 2, 1]);
        assert_eq!(m.n, 4);
        assert!((m.mean - 0.5).abs() < 1e-12);
        // Σ (v − 0.5)² = 0.25 + 0 + 0 + 0.25.
        assert!((m.m2 - 0.5).abs() < 1e-12);
    }

    #[test]
    fn alpha_is_split_over_the_metrics_and_the_overall_verdict_orders_them() {
        let base = judge([0.8, 0.9].repeat(50));
        let cand = judge([0.5, 0.6].repeat(50));
        let ms = CompareMetric::defaults(&cand, &base);
        assert_eq!(ms.len(), 6);
        let rs = compare_all(&ms, &cand, &base, &opts());
        assert!(rs.iter().all(|r| (r.alpha - 0.05 / 6.0).abs() < 1e-15));
        assert_eq!(rs[0].verdict, Verdict::Regression);
        // The rest have no data (no requests with latencies, feedback, …).
        assert_eq!(overall(&rs), Verdict::Regression);
        assert_eq!(overall(&rs[1..]), Verdict::NotEnoughData);
        assert_eq!(overall(&[]), Verdict::Pass);
    }

    #[test]
    fn metric_names_round_trip_and_unknown_ones_say_what_exists() {
        for n in [
            "judge:faithfulness",
            "feedback",
            "error_rate",
            "latency_p50",
            "latency_p99",
            "output_tokens",
            "cost",
        ] {
            assert_eq!(CompareMetric::parse(n).unwrap().name(), n);
        }
        let e = CompareMetric::parse("latency").unwrap_err();
        assert!(e.contains("latency_p99"), "{e}");
        assert!(CompareMetric::parse("judge:").is_err());
    }
}
