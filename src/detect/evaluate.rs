//! Evaluates one rule at one time over the [`History`]: current and baseline aggregates per
//! alert instance, the effect, the significance test and the sample counts.
//!
//! Pure and deterministic: the live daemon and `driftwatch backtest` call the same function
//! with the same history and get the same answer.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::detect::history::{align, align_counts, History, Parts, Summary};
use crate::detect::rules::{
    Baseline, Category, Direction, EffectKind, Null, Resolution, Rule, Signal, Test, TestKind,
};
use crate::detect::stats::{self, Alternative};
use crate::window::sketch::{Metric, Moments};

/// Label name added to instances of a judge rule that watches every judge name.
pub use crate::detect::rules::JUDGE_LABEL;

/// An alert instance's labels: (name, value) in series-label order.
pub type InstanceLabels = Vec<(String, String)>;

/// The result of evaluating one rule for one alert instance at one time.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub labels: InstanceLabels,
    pub n_current: u64,
    pub n_baseline: u64,
    pub outcome: Outcome,
    /// Length of the current range the outcome comes from (one of the rule's horizons).
    pub horizon_ms: i64,
    /// When the outcome fires (breached and significant): the estimated change point, the
    /// start of the step from which the data fit the changed level best (CUSUM argmax over
    /// the longest horizon).
    pub onset_ms: Option<i64>,
    /// Named values beyond the numbers (`{{ details.successor }}`), see
    /// [`Signal::details`].
    pub details: BTreeMap<String, String>,
}

/// What evaluation reads besides the history: the model registry and the budgets.
#[derive(Debug, Clone, Copy, Default)]
pub struct EvalContext<'a> {
    pub registry: Option<&'a crate::registry::Registry>,
    pub budgets: Option<&'a BTreeMap<String, f64>>,
}

/// One UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// A budget projection needs this much of the day first.
pub const PROJECTION_MIN_ELAPSED_MS: i64 = 3_600_000;

/// Start of the UTC day the window ending at `t_ms` belongs to.
pub fn day_start(t_ms: i64) -> i64 {
    (t_ms - 1).div_euclid(DAY_MS) * DAY_MS
}

/// Per group of instances (their labels without the model): the group's requests and the
/// start of its earliest window with traffic ([`Summary::since_ms`]).
type ShareTotals = HashMap<Vec<String>, (u64, Option<i64>)>;

/// Per evaluation step: what measuring an instance needs besides its summaries.
struct Env<'a> {
    ctx: EvalContext<'a>,
    t_ms: i64,
    horizon_ms: i64,
    /// Requests of the traffic an instance's share is taken of (same `by` labels but the
    /// model), for deprecation and unknown-model signals.
    /// Per group of instances (the labels without the model): requests and the earliest
    /// window with traffic ([`Summary::since_ms`]).
    share_totals: Option<&'a ShareTotals>,
}

/// What an evaluation found.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Too few samples (or no baseline) to say anything; the reason says which.
    NoData(&'static str),
    Measured(Measured),
}

/// The numbers of a conclusive evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Measured {
    /// The current statistic (for a distribution signal: the distance).
    pub value: f64,
    /// The baseline statistic (NaN for a distribution signal).
    pub baseline: f64,
    pub effect: f64,
    /// p-value of the test; NaN for bound-based tests and when there is no test.
    pub p_value: f64,
    /// Effect past the firing threshold.
    pub breached: bool,
    /// Effect past the recovery threshold.
    pub still_breached: bool,
    /// The test agrees (true when the rule has none).
    pub significant: bool,
}

impl Evaluation {
    fn fires(&self) -> bool {
        matches!(self.outcome, Outcome::Measured(m) if m.breached && m.significant)
    }
}

/// The rule's test at the level of one of its `k` horizons (Bonferroni: the family level
/// per evaluation is the rule's `alpha` / `confidence`).
fn per_horizon(rule: &Rule) -> Option<Test> {
    let k = rule.horizons_ms.len().max(1) as f64;
    rule.test.map(|t| Test {
        alpha: t.alpha / k,
        confidence: 1.0 - (1.0 - t.confidence) / k,
        change_alpha: t.change_alpha.map(|a| a / k),
        ..t
    })
}

/// Current aggregates of one horizon: per instance key, the merged summary and the series
/// it merges.
type Current<'h> = BTreeMap<Vec<String>, (Summary, Vec<&'h Vec<String>>)>;

/// A rule's trailing baselines from its last evaluation, reused while the baseline range
/// and the windows of the history are the same (a fast rule steps every 10 s; its baseline
/// range moves once a window). Valid for one rule and one history.
#[derive(Debug, Default)]
pub struct BaselineCache {
    /// (from, to, history windows version) the groups were computed for.
    key: Option<(i64, i64, u64)>,
    groups: HashMap<Vec<String>, Summary>,
}

/// Evaluates `rule` at `t_ms` (the end of the current ranges) for every instance with data.
pub fn evaluate(
    rule: &Rule,
    label_names: &[&str],
    history: &History,
    t_ms: i64,
    ctx: EvalContext<'_>,
) -> Vec<Evaluation> {
    evaluate_cached(
        rule,
        label_names,
        history,
        t_ms,
        &mut BaselineCache::default(),
        ctx,
    )
}

/// [`evaluate`] reusing the trailing baselines of the previous call in `cache` when they
/// cannot have changed: the same answer, computed once a window instead of every step.
///
/// Each horizon `h` of the rule (its `horizons` and `over`) is a current range
/// `[t − h, t)`, tested at the rule's level divided by the number of horizons; an instance
/// fires when any horizon is breached and significant (the most significant one is
/// reported), and stays firing while any horizon with data is still past the recovery
/// threshold.
pub fn evaluate_cached(
    rule: &Rule,
    label_names: &[&str],
    history: &History,
    t_ms: i64,
    cache: &mut BaselineCache,
    ctx: EvalContext<'_>,
) -> Vec<Evaluation> {
    if rule.signal == Signal::NewErrorCode {
        return new_error_codes(rule, label_names, history, t_ms);
    }
    if rule.signal == Signal::PromptVersionRegression {
        return prompt_regressions(rule, label_names, history, t_ms);
    }
    let parts = parts_for(&rule.signal);
    let by_day = matches!(rule.signal, Signal::BudgetSpend | Signal::BudgetProjection);
    let test = per_horizon(rule);
    let matches = |labels: &[String], skip: &[usize]| {
        rule.matchers
            .iter()
            .all(|(i, vals)| skip.contains(i) || vals.iter().any(|v| labels.get(*i) == Some(v)))
    };
    let range = |labels: &[String], from: i64, to: i64| match rule.resolution {
        Resolution::Window => history.range_of(labels, from, to, parts),
        Resolution::Slice => history.slice_range(labels, from, to, parts),
    };
    fn add<'h>(by: &[usize], current: &mut Current<'h>, labels: &'h Vec<String>, s: &Summary) {
        if s.requests == 0 && s.judge.is_empty() {
            return;
        }
        let key: Vec<String> = by.iter().map(|i| labels[*i].clone()).collect();
        let e = current.entry(key).or_default();
        e.0.merge(s);
        e.1.push(labels);
    }
    // Current aggregates per horizon (ascending, as `horizons_ms`). Slices are merged once,
    // newest first, for all horizons at the same time.
    let mut currents: Vec<Current<'_>> = vec![BTreeMap::new(); rule.horizons_ms.len()];
    for labels in history.series().filter(|l| alertable(rule, l)) {
        match rule.resolution {
            Resolution::Slice => {
                let nested = history.nested_slice_ranges(labels, t_ms, &rule.horizons_ms, parts);
                for (current, s) in currents.iter_mut().zip(nested) {
                    if let Some(s) = s {
                        add(&rule.by, current, labels, &s);
                    }
                }
            }
            Resolution::Window => {
                for (current, h) in currents.iter_mut().zip(&rule.horizons_ms) {
                    // Budgets: the UTC day so far.
                    let from = if by_day { day_start(t_ms) } else { t_ms - h };
                    if let Some(s) = history.range_of(labels, from, t_ms, parts) {
                        add(&rule.by, current, labels, &s);
                    }
                }
            }
        }
    }

    // Baselines are grouped: a series belongs to the group of an instance when it agrees on
    // every `by` label the baseline does not vary (`across` / `peer` labels).
    let vary: Vec<usize> = match &rule.baseline {
        Baseline::Value(_) => Vec::new(),
        Baseline::Trailing { across, .. } => across.clone(),
        Baseline::Peer { set } => set.iter().map(|(i, _)| *i).collect(),
    };
    let group_of_key = |key: &[String]| -> Vec<String> {
        rule.by
            .iter()
            .zip(key)
            .filter(|(i, _)| !vary.contains(i))
            .map(|(_, v)| v.clone())
            .collect()
    };
    let baselines_of = |wanted: &HashSet<Vec<String>>, from: i64, to: i64, fast: bool| {
        let mut out: HashMap<Vec<String>, Summary> = HashMap::new();
        for labels in history.series() {
            let is_peer = match &rule.baseline {
                Baseline::Peer { set } => set.iter().all(|(i, v)| &labels[*i] == v),
                _ => true,
            };
            if !is_peer || !matches(labels, &vary) {
                continue;
            }
            let group: Vec<String> = rule
                .by
                .iter()
                .filter(|i| !vary.contains(i))
                .map(|i| labels[*i].clone())
                .collect();
            if !wanted.contains(&group) {
                continue;
            }
            let r = if fast {
                range(labels, from, to)
            } else {
                history.range_of(labels, from, to, parts)
            };
            if let Some(r) = r {
                out.entry(group).or_default().merge(&r);
            }
        }
        out
    };

    let longest = rule.over_ms;
    let longest_current = currents.last().expect("a rule has at least one horizon");
    let wanted: HashSet<Vec<String>> = longest_current.keys().map(|k| group_of_key(k)).collect();
    // A trailing baseline ends `offset` before the longest horizon starts and is read from
    // closed windows; it is the same for every horizon.
    let trailing = match &rule.baseline {
        Baseline::Trailing {
            range_ms,
            offset_ms,
            ..
        } => {
            let to = t_ms - longest - offset_ms;
            // Ranges holding the same windows share the entry: a slice rule's baseline
            // moves every slice tick but changes once a window.
            let key = (
                history.align_up(to - range_ms),
                history.align_up(to),
                history.windows_version(),
            );
            if cache.key != Some(key) {
                cache.key = Some(key);
                cache.groups.clear();
            }
            // Groups not computed yet for this range (new instances): computed once; a group
            // without baseline data is remembered as empty.
            let missing: HashSet<Vec<String>> = wanted
                .iter()
                .filter(|g| !cache.groups.contains_key(*g))
                .cloned()
                .collect();
            if !missing.is_empty() {
                let mut fresh = baselines_of(&missing, to - range_ms, to, false);
                for g in missing {
                    let b = fresh.remove(&g).unwrap_or_default();
                    cache.groups.insert(g, b);
                }
            }
            Some(&cache.groups)
        }
        _ => None,
    };

    let mut by_instance: BTreeMap<InstanceLabels, Vec<Evaluation>> = BTreeMap::new();
    let mut members: HashMap<Vec<String>, Vec<&Vec<String>>> = HashMap::new();
    for (i, h) in rule.horizons_ms.iter().enumerate() {
        let is_longest = i + 1 == rule.horizons_ms.len();
        let current = &currents[i];
        let peer = match &rule.baseline {
            Baseline::Peer { .. } => Some(baselines_of(&wanted, t_ms - h, t_ms, true)),
            _ => None,
        };
        let baselines = trailing.or(peer.as_ref());
        let model_pos = rule.signal.keyed_by().and_then(|need| {
            rule.by
                .iter()
                .position(|i| label_names[*i] == need.as_str())
        });
        let share_totals = match (&rule.signal, model_pos) {
            (Signal::DaysToDeprecation | Signal::UnknownModel, Some(pos)) => {
                let mut totals: ShareTotals = HashMap::new();
                for (key, (cur, _)) in current {
                    let t = totals.entry(without(key, pos)).or_default();
                    t.0 += cur.requests;
                    t.1 = match (t.1, cur.since_ms) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                }
                Some(totals)
            }
            _ => None,
        };
        let env = Env {
            ctx,
            t_ms,
            horizon_ms: if by_day { t_ms - day_start(t_ms) } else { *h },
            share_totals: share_totals.as_ref(),
        };
        for (key, (cur, series)) in current {
            let base = baselines.map(|b| b.get(&group_of_key(key)));
            let base: Option<&Summary> = match (&rule.baseline, base) {
                (Baseline::Value(_), _) => None,
                (_, Some(Some(b))) => Some(b),
                _ => Some(&EMPTY_SUMMARY),
            };
            let labels = instance_labels(rule, label_names, key);
            if is_longest {
                members.insert(key.clone(), series.clone());
            }
            for mut e in measure_instance(rule, test, labels, cur, base, &env) {
                e.horizon_ms = env.horizon_ms;
                by_instance.entry(e.labels.clone()).or_default().push(e);
            }
        }
    }

    let mut out = Vec::with_capacity(by_instance.len());
    for (_, evals) in by_instance {
        let mut e = combine(evals);
        if e.fires() {
            let key: Vec<String> = e
                .labels
                .iter()
                .take(rule.by.len())
                .map(|(_, v)| v.clone())
                .collect();
            let base = match (&rule.baseline, trailing) {
                (Baseline::Trailing { .. }, Some(b)) => b.get(&group_of_key(&key)),
                _ => None,
            };
            let series = members.get(&key).map(Vec::as_slice).unwrap_or(&[]);
            e.onset_ms = Some(
                onset(rule, history, series, &e, base, t_ms, parts, ctx)
                    .unwrap_or(t_ms - e.horizon_ms),
            );
            if rule.signal.served_field().is_some() {
                model_change_report(
                    &rule.signal,
                    history,
                    series,
                    &mut e,
                    t_ms,
                    rule.over_ms,
                    parts,
                );
            }
        }
        out.push(e);
    }
    out
}

static EMPTY_SUMMARY: std::sync::LazyLock<Summary> = std::sync::LazyLock::new(Summary::default);

/// `key` without the element at `pos`.
fn without(key: &[String], pos: usize) -> Vec<String> {
    key.iter()
        .enumerate()
        .filter(|(i, _)| *i != pos)
        .map(|(_, v)| v.clone())
        .collect()
}

/// One instance's evaluations at one horizon (several for a judge rule over every name).
fn measure_instance(
    rule: &Rule,
    test: Option<Test>,
    base_labels: InstanceLabels,
    cur: &Summary,
    base: Option<&Summary>,
    env: &Env<'_>,
) -> Vec<Evaluation> {
    match &rule.signal {
        Signal::CacheReadRatio => vec![cache_read(rule, test, base_labels, cur, base, env)],
        Signal::ResponseModelChange | Signal::SystemFingerprintChange => {
            vec![model_change(rule, test, base_labels, cur, base)]
        }
        Signal::DaysToDeprecation
        | Signal::UnknownModel
        | Signal::BudgetSpend
        | Signal::BudgetProjection => fact(rule, base_labels, cur, env).into_iter().collect(),
        Signal::JudgeMean(None) => cur
            .judge
            .iter()
            .map(|(name, m)| {
                let mut labels = base_labels.clone();
                labels.push((JUDGE_LABEL.to_string(), name.clone()));
                let b = base.map(|b| b.judge.get(name).copied().unwrap_or_default());
                judge(rule, test, labels, m, b.as_ref())
            })
            .collect(),
        Signal::JudgeMean(Some(name)) => match cur.judge.get(name) {
            Some(m) => {
                let b = base.map(|b| b.judge.get(name).copied().unwrap_or_default());
                vec![judge(rule, test, base_labels, m, b.as_ref())]
            }
            None => Vec::new(),
        },
        _ => vec![measure(rule, test, base_labels, cur, base)],
    }
}

/// One instance's outcome from its horizons (ascending): the most significant firing
/// horizon; else the longest measured one, still past the recovery threshold while any
/// measured horizon is; else the longest (no data).
fn combine(mut evals: Vec<Evaluation>) -> Evaluation {
    let firing = evals
        .iter()
        .enumerate()
        .filter(|(_, e)| e.fires())
        .min_by(|(ia, a), (ib, b)| {
            let p = |e: &Evaluation| match e.outcome {
                Outcome::Measured(m) if !m.p_value.is_nan() => m.p_value,
                _ => f64::INFINITY,
            };
            p(a).total_cmp(&p(b)).then(ia.cmp(ib))
        })
        .map(|(i, _)| i);
    if let Some(i) = firing {
        return evals.swap_remove(i);
    }
    let still = evals
        .iter()
        .any(|e| matches!(e.outcome, Outcome::Measured(m) if m.still_breached));
    match evals
        .iter()
        .rposition(|e| matches!(e.outcome, Outcome::Measured(_)))
    {
        Some(i) => {
            let mut e = evals.swap_remove(i);
            if let Outcome::Measured(m) = &mut e.outcome {
                m.still_breached = still;
            }
            e
        }
        None => evals.pop().expect("a rule has at least one horizon"),
    }
}

/// The estimated change point of a firing evaluation `e`: over the steps (slices or
/// windows) of the longest horizon, each step's log-likelihood ratio of "changed to the
/// level the firing horizon measured" against "at the baseline's level" (Bernoulli for rates
/// and for samples past the exceedance threshold, normal for judge means), and the start of
/// the step that maximises the summed ratio from it to now (Page's CUSUM estimate). `None`
/// when the signal has no such model (distributions) or the levels do not differ.
#[allow(clippy::too_many_arguments)]
fn onset(
    rule: &Rule,
    history: &History,
    series: &[&Vec<String>],
    e: &Evaluation,
    base: Option<&Summary>,
    t_ms: i64,
    parts: Parts,
    ctx: EvalContext<'_>,
) -> Option<i64> {
    let Outcome::Measured(m) = e.outcome else {
        return None;
    };
    let from = t_ms - e.horizon_ms.max(rule.over_ms);
    let mut steps: BTreeMap<i64, Summary> = BTreeMap::new();
    for labels in series {
        let slices = rule.resolution == Resolution::Slice;
        let v = history.steps(labels, from, t_ms, parts, slices);
        for (start, s) in v {
            steps.entry(start).or_default().merge_parts(&s, parts);
        }
    }
    let horizon_from = t_ms - e.horizon_ms;
    let bernoulli = |p0: f64, p1: f64, counts: &dyn Fn(&Summary) -> (u64, u64)| {
        let clamp = |p: f64| p.clamp(1e-9, 1.0 - 1e-9);
        let (p0, p1) = (clamp(p0), clamp(p1));
        if !(p0 - p1).is_normal() {
            return None;
        }
        Some(
            steps
                .iter()
                .map(|(start, s)| {
                    let (k, n) = counts(s);
                    (*start, stats::bernoulli_llr(k, n, p0, p1))
                })
                .collect::<Vec<_>>(),
        )
    };
    let llr = match &rule.signal {
        Signal::ErrorRate
        | Signal::ErrorTypeRate(_)
        | Signal::NegativeFeedbackRate
        | Signal::FinishReasonRate(_)
        | Signal::NearContextRate => bernoulli(m.baseline, m.value, &|s| rate(&rule.signal, s))?,
        // The day's spend crossed the threshold in the first window where the running sum
        // passed it.
        Signal::BudgetSpend => {
            let service = e.labels.iter().find(|(k, _)| k == "service")?;
            let budget = ctx.budgets?.get(&service.1)?;
            let mut spent = 0.0;
            return steps.iter().find_map(|(start, s)| {
                spent += s.totals.cost_usd;
                (spent / budget > rule.condition.threshold).then_some(*start)
            });
        }
        // The first step the new response model (or fingerprint) answered at least half the
        // requests.
        Signal::ResponseModelChange | Signal::SystemFingerprintChange => {
            let after = e.details.get("after")?;
            return steps
                .iter()
                .find(|(_, s)| {
                    served_share(served(&rule.signal, s), after).is_some_and(|x| x >= 0.5)
                })
                .map(|(start, _)| *start);
        }
        // Facts about the traffic: from its first window in the range.
        Signal::DaysToDeprecation | Signal::UnknownModel => {
            return steps
                .iter()
                .find(|(_, s)| s.requests > 0)
                .map(|(start, _)| *start)
        }
        Signal::Quantile { metric, q } => {
            let bh = base.and_then(|b| b.hist(*metric));
            let tau = exceedance_threshold(rule, *metric, bh, *q)?;
            let p0 = match bh {
                Some(b) if b.count() > 0 => (b.count_above(tau) as f64).max(0.5) / b.count() as f64,
                _ => 1.0 - q,
            };
            let above = |s: &Summary| {
                s.hist(*metric)
                    .map(|h| (h.count_above(tau), h.count()))
                    .unwrap_or((0, 0))
            };
            let (c, n) = steps
                .range(horizon_from..)
                .map(|(_, s)| above(s))
                .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1));
            if n == 0 {
                return None;
            }
            bernoulli(p0, c as f64 / n as f64, &above)?
        }
        Signal::JudgeMean(_) => {
            let name = match &rule.signal {
                Signal::JudgeMean(Some(n)) => n.clone(),
                _ => e
                    .labels
                    .iter()
                    .find(|(k, _)| k == JUDGE_LABEL)
                    .map(|(_, v)| v.clone())?,
            };
            let var = base
                .and_then(|b| b.judge.get(&name))
                .and_then(Moments::variance)
                .or_else(|| {
                    let mut all = Moments::default();
                    steps
                        .values()
                        .filter_map(|s| s.judge.get(&name))
                        .for_each(|x| all.merge(x));
                    all.variance()
                })
                .filter(|v| *v > 0.0)?;
            let (m0, m1) = (m.baseline, m.value);
            if !(m0.is_finite() && m1.is_finite()) || m0 == m1 {
                return None;
            }
            steps
                .iter()
                .map(|(start, s)| {
                    let l = s.judge.get(&name).map_or(0.0, |x| {
                        x.n as f64 / var * ((m1 - m0) * x.mean - (m1 * m1 - m0 * m0) / 2.0)
                    });
                    (*start, l)
                })
                .collect()
        }
        _ => return None,
    };
    stats::cusum_onset(&llr)
}

/// The share of the requests counted in `c` (those that sent the field) served by `value`.
fn served_share(c: &crate::window::sketch::Counts, value: &str) -> Option<f64> {
    let n: u64 = c.0.values().sum();
    (n > 0).then(|| c.get(value) as f64 / n as f64)
}

/// What served `s`'s requests, in the field a change signal watches.
fn served<'a>(signal: &Signal, s: &'a Summary) -> &'a crate::window::sketch::Counts {
    match signal {
        Signal::SystemFingerprintChange => &s.system_fingerprints,
        _ => &s.response_models,
    }
}

/// What a firing silent-model-update alert says beyond the share: the new model's share
/// per step of the current range, when it took over (the onset), and the metrics of both
/// sides over the same span — the `L` since the takeover against the `L` before it — with
/// each test's p-value (see [`crate::detect::compare`]).
fn model_change_report(
    signal: &Signal,
    history: &History,
    series: &[&Vec<String>],
    e: &mut Evaluation,
    t_ms: i64,
    over_ms: i64,
    parts: Parts,
) {
    use crate::detect::compare::{compare_all, CompareMetric, CompareOptions};
    let Some(after) = e.details.get("after").cloned() else {
        return;
    };
    let from = t_ms - over_ms;
    let mut steps: BTreeMap<i64, Summary> = BTreeMap::new();
    for labels in series {
        for (start, s) in history.steps(labels, from, t_ms, parts, false) {
            steps.entry(start).or_default().merge_parts(&s, parts);
        }
    }
    let shares: Vec<String> = steps
        .iter()
        .filter_map(|(start, s)| {
            let x = served_share(served(signal, s), &after)?;
            Some(format!("{} {x:.2}", &crate::time::rfc3339(*start)[11..16]))
        })
        .collect();
    e.details.insert("shares".into(), shares.join(", "));
    let took = e.onset_ms.unwrap_or(from);
    e.details
        .insert("took_over_at".into(), crate::time::rfc3339(took));
    let span = (t_ms - took).max(1);
    let merged = |a: i64, b: i64| {
        let mut m = Summary::default();
        for labels in series {
            if let Some(s) = history.range_of(labels, a, b, parts) {
                m.merge(&s);
            }
        }
        m
    };
    let (before_s, after_s) = (merged(took - span, took), merged(took, t_ms));
    let mut metrics = vec![
        CompareMetric::LatencyP50,
        CompareMetric::LatencyP99,
        CompareMetric::OutputTokens,
        CompareMetric::ErrorRate,
    ];
    let judges: std::collections::BTreeSet<&String> =
        before_s.judge.keys().chain(after_s.judge.keys()).collect();
    metrics.extend(judges.into_iter().map(|j| CompareMetric::Judge(j.clone())));
    let lines: Vec<String> = compare_all(&metrics, &after_s, &before_s, &CompareOptions::default())
        .iter()
        .map(|r| r.line())
        .collect();
    e.details.insert("comparison".into(), lines.join("\n"));
}

/// What a signal reads of the summaries.
/// The parts of the history `rule` reads (its signal's, and what its alerts report).
pub fn parts_read(rule: &Rule) -> Parts {
    parts_for(&rule.signal)
}

fn parts_for(signal: &Signal) -> Parts {
    match signal {
        Signal::Quantile { metric, .. }
        | Signal::Mean { metric }
        | Signal::Distribution { metric } => Parts {
            hists: 1 << (*metric as u8),
            ..Parts::COUNTS_ONLY
        },
        Signal::ErrorRate
        | Signal::NegativeFeedbackRate
        | Signal::NearContextRate
        | Signal::CacheReadRatio
        | Signal::DaysToDeprecation
        | Signal::UnknownModel
        | Signal::BudgetSpend
        | Signal::BudgetProjection => Parts::COUNTS_ONLY,
        Signal::ErrorTypeRate(_)
        | Signal::NewErrorCode
        | Signal::FinishReasonRate(_)
        | Signal::Categorical(_) => Parts {
            counts: true,
            ..Parts::COUNTS_ONLY
        },
        Signal::JudgeMean(_) => Parts {
            judge: true,
            ..Parts::COUNTS_ONLY
        },
        Signal::PromptVersionRegression => Parts {
            hists: 1 << (Metric::LatencyMs as u8)
                | 1 << (Metric::OutputTokens as u8)
                | 1 << (Metric::CostUsd as u8),
            counts: false,
            judge: true,
        },
        // The alert compares latency, output tokens and judge scores before and after.
        Signal::ResponseModelChange | Signal::SystemFingerprintChange => Parts {
            hists: 1 << (Metric::LatencyMs as u8) | 1 << (Metric::OutputTokens as u8),
            counts: true,
            judge: true,
        },
    }
}

fn alternative(rule: &Rule) -> Alternative {
    match rule.condition.direction {
        Direction::Above => Alternative::Greater,
        Direction::Below => Alternative::Less,
    }
}

fn effect(kind: EffectKind, cur: f64, base: f64) -> Option<f64> {
    let e = match kind {
        EffectKind::Value => cur,
        EffectKind::Ratio => {
            if base == 0.0 {
                if cur == 0.0 {
                    1.0
                } else {
                    f64::INFINITY
                }
            } else {
                cur / base
            }
        }
        EffectKind::RelativeChange => {
            if base == 0.0 {
                return None;
            }
            (cur - base) / base
        }
        EffectKind::Difference => cur - base,
        EffectKind::Psi | EffectKind::JensenShannon => return None,
    };
    (!e.is_nan()).then_some(e)
}

fn finish(
    rule: &Rule,
    test: Option<Test>,
    labels: InstanceLabels,
    (n_current, n_baseline): (u64, u64),
    (value, baseline): (f64, f64),
    effect: Option<f64>,
    significance: Option<(bool, f64)>,
) -> Evaluation {
    let no_data = |why| Evaluation {
        labels: labels.clone(),
        n_current,
        n_baseline,
        outcome: Outcome::NoData(why),
        horizon_ms: rule.over_ms,
        onset_ms: None,
        details: BTreeMap::new(),
    };
    if n_current < rule.min_current {
        return no_data("too few current samples");
    }
    if !matches!(rule.baseline, Baseline::Value(_)) && n_baseline < rule.min_baseline {
        return no_data("too few baseline samples");
    }
    let Some(effect) = effect else {
        return no_data("effect undefined (zero baseline)");
    };
    let (significant, p_value) = match (test, significance) {
        (None, _) => (true, f64::NAN),
        (Some(_), Some(s)) => s,
        (Some(_), None) => (false, f64::NAN),
    };
    Evaluation {
        labels,
        n_current,
        n_baseline,
        outcome: Outcome::Measured(Measured {
            value,
            baseline,
            effect,
            p_value,
            breached: rule.condition.breached(effect),
            still_breached: rule.condition.still_breached(effect),
            significant,
        }),
        horizon_ms: rule.over_ms,
        onset_ms: None,
        details: BTreeMap::new(),
    }
}

/// The baseline's moments moved onto the threshold: `(1 + θ)·X` for a relative change θ,
/// `X + θ` for a difference. Welch's test of current against them tests "the change is at
/// most the threshold".
fn moments_at_threshold(b: &Moments, effect: EffectKind, threshold: f64) -> Moments {
    match effect {
        EffectKind::RelativeChange => stats::affine_moments(b, 1.0 + threshold, 0.0),
        EffectKind::Difference => stats::affine_moments(b, 1.0, threshold),
        _ => *b,
    }
}

/// Welch's test of `cur` against the baseline's moments (moved onto the threshold for
/// `against: threshold`); `None` without a baseline or for another test.
fn welch(
    rule: &Rule,
    test: Option<Test>,
    cur: &Moments,
    base: Option<&Moments>,
) -> Option<(bool, f64)> {
    let (t, b) = test.zip(base)?;
    if t.kind != TestKind::WelchT {
        return None;
    }
    let b = match t.null {
        Null::NoChange => *b,
        Null::Threshold => moments_at_threshold(b, rule.condition.effect, rule.condition.threshold),
    };
    stats::welch_t(cur, &b, alternative(rule)).map(|r| (r.p_value < t.alpha, r.p_value))
}

fn judge(
    rule: &Rule,
    test: Option<Test>,
    labels: InstanceLabels,
    cur: &Moments,
    base: Option<&Moments>,
) -> Evaluation {
    let (bv, bn) = match (&rule.baseline, base) {
        (Baseline::Value(v), _) => (*v, 0),
        (_, Some(b)) => (b.mean, b.n),
        (_, None) => (f64::NAN, 0),
    };
    let sig = welch(rule, test, cur, base);
    let eff = if bn == 0 && !matches!(rule.baseline, Baseline::Value(_)) {
        None
    } else {
        effect(rule.condition.effect, cur.mean, bv)
    };
    finish(rule, test, labels, (cur.n, bn), (cur.mean, bv), eff, sig)
}

/// The cache-read ratio (cached / input tokens of the range) against its baseline; the
/// test is Welch's on the per-request shares. An alert carries what the lost cache reads
/// cost per day at the current traffic: the ratio's drop × the input tokens per day × what
/// a cached token saved in the baseline (input rate − cached rate).
fn cache_read(
    rule: &Rule,
    test: Option<Test>,
    labels: InstanceLabels,
    cur: &Summary,
    base: Option<&Summary>,
    env: &Env<'_>,
) -> Evaluation {
    let c = &cur.totals;
    let value = c.cache_read_ratio().unwrap_or(f64::NAN);
    let (bv, bn, bm) = match (&rule.baseline, base) {
        (Baseline::Value(v), _) => (*v, 0, None),
        (_, Some(b)) => (
            b.totals.cache_read_ratio().unwrap_or(f64::NAN),
            b.totals.cache_read_share.n,
            Some(b.totals.cache_read_share),
        ),
        (_, None) => (f64::NAN, 0, None),
    };
    let sig = welch(rule, test, &c.cache_read_share, bm.as_ref());
    let eff = if value.is_nan() || bv.is_nan() {
        None
    } else {
        effect(rule.condition.effect, value, bv)
    };
    let n = c.cache_read_share.n;
    let mut e = finish(rule, test, labels, (n, bn), (value, bv), eff, sig);
    if env.horizon_ms > 0 && !value.is_nan() && !bv.is_nan() {
        // What one cached token saved: the baseline's savings per cached token, else the
        // current range's.
        let per_token = base
            .map(|b| &b.totals)
            .into_iter()
            .chain(std::iter::once(c))
            .find(|t| t.cached_input_tokens > 0)
            .map(|t| t.cache_savings_usd / t.cached_input_tokens as f64)
            .unwrap_or(0.0);
        // Per day of the time the instance had traffic in the range: a prompt version
        // minutes old is not diluted over the whole range.
        let per_day = DAY_MS as f64 / active_ms(cur.since_ms, env) as f64;
        let input_per_day = c.input_tokens as f64 * per_day;
        let lost = ((bv - value) * input_per_day * per_token).max(0.0);
        e.details
            .insert("usd_lost_per_day".into(), format!("{lost}"));
        e.details.insert(
            "input_tokens_per_day".into(),
            format!("{}", input_per_day.round()),
        );
    }
    e
}

/// How long, within the current range, an instance (or group) has had traffic: from the
/// start of its first window or slice with requests (`since_ms`) to now, at most the range.
fn active_ms(since_ms: Option<i64>, env: &Env<'_>) -> i64 {
    let h = env.horizon_ms.max(1);
    since_ms.map_or(h, |s| (env.t_ms - s.max(env.t_ms - h)).clamp(1, h))
}

/// A fact about an instance (days to its model's deprecation, a model the registry does not
/// list, the day's spend against the budget); `None` when it does not apply (no registry,
/// no date, no budget), so such instances never exist.
fn fact(rule: &Rule, labels: InstanceLabels, cur: &Summary, env: &Env<'_>) -> Option<Evaluation> {
    let label = |name: &str| {
        labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let share = || {
        let model_pos = labels.iter().position(|(k, _)| k == "request_model")?;
        let key: Vec<String> = labels.iter().map(|(_, v)| v.clone()).collect();
        let (total, group_since) = *env.share_totals?.get(&without(&key, model_pos))?;
        // The others' requests counted over the time this model had traffic in the range
        // (at their rate since the group's first traffic), so a model that appeared a
        // minute ago is compared with a minute of the rest.
        let others = total.saturating_sub(cur.requests) as f64;
        let others =
            others * active_ms(cur.since_ms, env) as f64 / active_ms(group_since, env) as f64;
        let all = cur.requests as f64 + others;
        (all > 0.0).then(|| cur.requests as f64 / all)
    };
    let mut details = BTreeMap::new();
    let mut no_data: Option<&'static str> = None;
    let value = match &rule.signal {
        Signal::DaysToDeprecation => {
            let reg = env.ctx.registry?;
            let model = reg.lookup(&label("request_model")?)?;
            let dep = model.deprecation.as_ref()?;
            details.insert("model".into(), model.id.clone());
            details.insert("deprecation_date".into(), dep.date.to_string());
            details.insert(
                "retirement_date".into(),
                dep.retirement
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "not announced".into()),
            );
            details.insert(
                "successor".into(),
                dep.successor
                    .clone()
                    .unwrap_or_else(|| "none listed".into()),
            );
            if let Some(s) = share() {
                details.insert("share".into(), format!("{s}"));
            }
            (dep.date.start_ms() - env.t_ms) as f64 / DAY_MS as f64
        }
        Signal::UnknownModel => {
            let reg = env.ctx.registry?;
            let model = label("request_model")?;
            if model.is_empty() || reg.lookup(&model).is_some() {
                return None;
            }
            if let Some(s) = share() {
                details.insert("share".into(), format!("{s}"));
            }
            1.0
        }
        Signal::BudgetSpend | Signal::BudgetProjection => {
            let budget = *env.ctx.budgets?.get(&label("service")?)?;
            let spend = cur.totals.cost_usd;
            let day = day_start(env.t_ms);
            let elapsed = env.t_ms - day;
            let projected = spend * DAY_MS as f64 / elapsed.max(1) as f64;
            details.insert("spend_usd".into(), format!("{spend}"));
            details.insert("budget_usd".into(), format!("{budget}"));
            details.insert("projected_usd".into(), format!("{projected}"));
            details.insert("day".into(), crate::registry::Date::of_ms(day).to_string());
            if rule.signal == Signal::BudgetSpend {
                spend / budget
            } else {
                if elapsed < PROJECTION_MIN_ELAPSED_MS {
                    no_data = Some("too early in the day to project the spend");
                }
                projected / budget
            }
        }
        _ => return None,
    };
    let mut e = finish(
        rule,
        None,
        labels.clone(),
        (cur.requests, 0),
        (value, rule.condition.threshold),
        Some(value),
        None,
    );
    if let Some(why) = no_data {
        e.outcome = Outcome::NoData(why);
    }
    e.details = details;
    Some(e)
}

pub use crate::detect::stats::{two_proportions, Z_TEST_MIN_EXPECTED};

/// (successes, trials) of a rate signal.
fn rate(signal: &Signal, s: &Summary) -> (u64, u64) {
    match signal {
        Signal::ErrorRate => (s.errors, s.requests),
        Signal::ErrorTypeRate(t) => (s.error_types.get(t), s.requests),
        Signal::NegativeFeedbackRate => (s.feedback[0], s.feedback.iter().sum()),
        Signal::FinishReasonRate(f) => (s.finish_reasons.get(f), s.requests),
        Signal::NearContextRate => (s.totals.near_context, s.requests),
        _ => (0, 0),
    }
}

fn category(c: Category, s: &Summary) -> &crate::window::sketch::Counts {
    match c {
        Category::QueryType => &s.query_types,
        Category::ErrorType => &s.error_types,
        Category::FinishReason => &s.finish_reasons,
        Category::ResponseModel => &s.response_models,
        Category::HttpStatus => &s.http_statuses,
    }
}

/// The significance of a rate k/n against the baseline's bk/bn (or the value `bv`).
fn rate_test(
    rule: &Rule,
    test: Option<Test>,
    (k, n): (u64, u64),
    (bk, bn): (u64, u64),
    bv: f64,
) -> Option<(bool, f64)> {
    let alt = alternative(rule);
    test.and_then(|t| match t.kind {
        TestKind::TwoProportionZ => two_proportions(k, n, bk, bn, alt).map(|p| (p < t.alpha, p)),
        TestKind::Binomial => {
            stats::binom_test(k, n, bv.clamp(0.0, 1.0), alt).map(|p| (p < t.alpha, p))
        }
        TestKind::Wilson => stats::wilson_interval(k, n, t.confidence).map(|(lo, hi)| {
            let sig = match rule.condition.direction {
                Direction::Above => lo > bv,
                Direction::Below => hi < bv,
            };
            (sig, f64::NAN)
        }),
        _ => None,
    })
}

/// The response model whose share rose most from `base` to `cur` (ties: the larger current
/// count, then the name), with its counts: (model, k, n, bk, bn). `None` without response
/// models in the current range.
pub fn rising_response_model(
    cur: &Summary,
    base: &Summary,
) -> Option<(String, u64, u64, u64, u64)> {
    rising(&cur.response_models, &base.response_models)
}

/// The value whose share rose most from `base` to `cur`; see [`rising_response_model`].
fn rising(
    cur: &crate::window::sketch::Counts,
    base: &crate::window::sketch::Counts,
) -> Option<(String, u64, u64, u64, u64)> {
    let n: u64 = cur.0.values().sum();
    let bn: u64 = base.0.values().sum();
    if n == 0 {
        return None;
    }
    let share = |k: u64, n: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
    cur.0
        .iter()
        .map(|(m, k)| {
            let bk = base.get(m);
            (share(*k, n) - share(bk, bn), *k, m)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(b.2.cmp(a.2)))
        .map(|(_, k, m)| (m.clone(), k, n, base.get(m), bn))
}

/// The most frequent value of `c` (ties: the smaller name).
fn most_frequent(c: &crate::window::sketch::Counts) -> Option<&String> {
    c.0.iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(k, _)| k)
}

/// A silent model update: the share of the current range answered by the response model
/// whose share rose most, against its share in the trailing baseline (the rule's effect is
/// the difference: how far it rose, so the alert resolves as the baseline fills with the new
/// model). Carries the model before (the baseline's most frequent) and after, and the share.
fn model_change(
    rule: &Rule,
    test: Option<Test>,
    labels: InstanceLabels,
    cur: &Summary,
    base: Option<&Summary>,
) -> Evaluation {
    let base = base.unwrap_or(&EMPTY_SUMMARY);
    let Some((model, k, n, bk, bn)) = rising(served(&rule.signal, cur), served(&rule.signal, base))
    else {
        return finish(rule, test, labels, (0, 0), (f64::NAN, f64::NAN), None, None);
    };
    let value = k as f64 / n as f64;
    let bv = if bn == 0 {
        f64::NAN
    } else {
        bk as f64 / bn as f64
    };
    let sig = rate_test(rule, test, (k, n), (bk, bn), bv);
    let eff = if bv.is_nan() {
        None
    } else {
        effect(rule.condition.effect, value, bv)
    };
    let mut e = finish(rule, test, labels, (n, bn), (value, bv), eff, sig);
    if let Some(before) = most_frequent(served(&rule.signal, base)) {
        e.details.insert("before".into(), before.clone());
    }
    e.details.insert("after".into(), model);
    e.details.insert("share".into(), format!("{value}"));
    if rule.signal == Signal::SystemFingerprintChange {
        if let Some(m) = most_frequent(&cur.response_models) {
            e.details.insert("response_model".into(), m.clone());
        }
        // A new fingerprint that came with a new response model is that model's update:
        // `response_model_change` tells it, with the model names.
        let model_rose = rising_response_model(cur, base).is_some_and(|(_, k, n, bk, bn)| {
            let share = |k: u64, n: u64| if n == 0 { 0.0 } else { k as f64 / n as f64 };
            share(k, n) - share(bk, bn) > rule.condition.threshold
        });
        if model_rose {
            if let Outcome::Measured(m) = &mut e.outcome {
                m.breached = false;
            }
        }
    }
    e
}

fn measure(
    rule: &Rule,
    test: Option<Test>,
    labels: InstanceLabels,
    cur: &Summary,
    base: Option<&Summary>,
) -> Evaluation {
    match &rule.signal {
        Signal::ErrorRate
        | Signal::ErrorTypeRate(_)
        | Signal::NegativeFeedbackRate
        | Signal::FinishReasonRate(_)
        | Signal::NearContextRate => {
            let (k, n) = rate(&rule.signal, cur);
            let value = if n == 0 {
                f64::NAN
            } else {
                k as f64 / n as f64
            };
            let (bk, bn, bv) = match (&rule.baseline, base) {
                (Baseline::Value(v), _) => (0, 0, *v),
                (_, Some(b)) => {
                    let (bk, bn) = rate(&rule.signal, b);
                    (
                        bk,
                        bn,
                        if bn == 0 {
                            f64::NAN
                        } else {
                            bk as f64 / bn as f64
                        },
                    )
                }
                (_, None) => (0, 0, f64::NAN),
            };
            let sig = rate_test(rule, test, (k, n), (bk, bn), bv);
            let eff = if n == 0 || bv.is_nan() {
                None
            } else {
                effect(rule.condition.effect, value, bv)
            };
            let mut e = finish(rule, test, labels, (n, bn), (value, bv), eff, sig);
            // Too few events to breach: measured (so a firing alert can recover), not breached.
            if let Outcome::Measured(m) = &mut e.outcome {
                if k < rule.min_events {
                    m.breached = false;
                }
            }
            e
        }
        Signal::Quantile { metric, q } => {
            let q = *q;
            let scale = metric.scale();
            hist_scalar(rule, test, labels, *metric, cur, base, Some(q), move |h| {
                h.quantile_units(q)
                    .map(|u| u as f64 / scale)
                    .unwrap_or(f64::NAN)
            })
        }
        Signal::Mean { metric } => hist_scalar(rule, test, labels, *metric, cur, base, None, |h| {
            let n = h.count();
            if n == 0 {
                f64::NAN
            } else {
                h.sum / n as f64
            }
        }),
        Signal::Distribution { metric } => {
            let empty = crate::detect::history::SparseHist::default();
            let ch = cur.hist(*metric).unwrap_or(&empty);
            let bh = base.and_then(|b| b.hist(*metric)).unwrap_or(&empty);
            let (a, b) = align(ch, bh);
            // Hundreds of HDR buckets would make PSI, Jensen-Shannon and chi-square see
            // noise: compare on the baseline's deciles.
            let (a, b) = rebin_by_baseline(&a, &b, DISTRIBUTION_BINS);
            distribution(rule, test, labels, &a, &b, Some((ch, bh)))
        }
        Signal::Categorical(c) => {
            let empty = crate::window::sketch::Counts::default();
            let bc = base.map(|b| category(*c, b)).unwrap_or(&empty);
            let (a, b) = align_counts(category(*c, cur), bc);
            distribution(rule, test, labels, &a, &b, None)
        }
        Signal::JudgeMean(_)
        | Signal::CacheReadRatio
        | Signal::DaysToDeprecation
        | Signal::UnknownModel
        | Signal::BudgetSpend
        | Signal::BudgetProjection
        | Signal::ResponseModelChange
        | Signal::SystemFingerprintChange
        | Signal::NewErrorCode
        | Signal::PromptVersionRegression => {
            unreachable!(
                "measured by judge(), cache_read(), fact(), model_change() and new_error_codes()"
            )
        }
    }
}

/// A scalar statistic of a histogram metric (a quantile, the mean) against its baseline.
#[allow(clippy::too_many_arguments)]
fn hist_scalar(
    rule: &Rule,
    test: Option<Test>,
    labels: InstanceLabels,
    metric: crate::window::sketch::Metric,
    cur: &Summary,
    base: Option<&Summary>,
    q: Option<f64>,
    stat: impl Fn(&crate::detect::history::SparseHist) -> f64,
) -> Evaluation {
    let empty = crate::detect::history::SparseHist::default();
    let ch = cur.hist(metric).unwrap_or(&empty);
    let value = stat(ch);
    let (bv, bn, bh) = match (&rule.baseline, base) {
        (Baseline::Value(v), _) => (*v, 0, None),
        (_, Some(b)) => {
            let bh = b.hist(metric).unwrap_or(&empty);
            (stat(bh), bh.count(), Some(bh))
        }
        (_, None) => (f64::NAN, 0, None),
    };
    let mut exceeding = None;
    let sig = match (test, bh) {
        (Some(t), _) if t.kind == TestKind::Exceedance => {
            let q = q.unwrap_or(0.5);
            let tau = exceedance_threshold(rule, metric, bh, q);
            tau.and_then(|tau| {
                let (c, n) = (ch.count_above(tau), ch.count());
                exceeding = Some(c);
                let p = stats::exceedance_test(c, n, q)?;
                if p < t.alpha {
                    return Some((true, p));
                }
                // Fast path for large jumps: the share above τ rose against the baseline's
                // own share above τ (exact conditional test when counts are small).
                let change = t.change_alpha.zip(bh).and_then(|(a, b)| {
                    let pc =
                        two_proportions(c, n, b.count_above(tau), b.count(), Alternative::Greater)?;
                    (pc < a).then_some(pc)
                });
                Some(match change {
                    Some(pc) => (true, pc),
                    None => (false, p),
                })
            })
        }
        (Some(t), Some(bh)) => hist_test(t, alternative(rule), ch, bh, q, rule.condition.direction),
        _ => None,
    };
    let eff = if value.is_nan() || bv.is_nan() {
        None
    } else {
        effect(rule.condition.effect, value, bv)
    };
    let mut e = finish(rule, test, labels, (ch.count(), bn), (value, bv), eff, sig);
    // Fewer samples past the threshold than `min_samples.events`: measured, not breached.
    if let (Outcome::Measured(m), Some(c)) = (&mut e.outcome, exceeding) {
        if c < rule.min_events {
            m.breached = false;
        }
    }
    e
}

fn distribution(
    rule: &Rule,
    test: Option<Test>,
    labels: InstanceLabels,
    a: &[u64],
    b: &[u64],
    hists: Option<(
        &crate::detect::history::SparseHist,
        &crate::detect::history::SparseHist,
    )>,
) -> Evaluation {
    let n: u64 = a.iter().sum();
    let bn: u64 = b.iter().sum();
    let eff = match rule.condition.effect {
        EffectKind::Psi => stats::psi(a, b, PSI_EPSILON),
        EffectKind::JensenShannon => stats::jensen_shannon(a, b),
        _ => None,
    };
    let sig = test.and_then(|t| match (t.kind, hists) {
        (TestKind::ChiSquare, _) => {
            stats::chi_square(a, b).map(|r| (r.p_value < t.alpha, r.p_value))
        }
        (_, Some((ch, bh))) => hist_test(
            t,
            Alternative::TwoSided,
            ch,
            bh,
            None,
            rule.condition.direction,
        ),
        _ => None,
    });
    let v = eff.unwrap_or(f64::NAN);
    finish(rule, test, labels, (n, bn), (v, f64::NAN), eff, sig)
}

/// Bins a histogram distribution is compared on (baseline quantiles).
pub const DISTRIBUTION_BINS: usize = 10;

/// Merges aligned bins into at most `k` bins holding about equal shares of the baseline
/// `b` (its quantiles), the usual binning for PSI; bins past the baseline's last value merge
/// into the last bin. With an empty baseline the bins are left as they are.
pub fn rebin_by_baseline(a: &[u64], b: &[u64], k: usize) -> (Vec<u64>, Vec<u64>) {
    let total: u64 = b.iter().sum();
    if total == 0 || k == 0 || a.len() <= k {
        return (a.to_vec(), b.to_vec());
    }
    let (mut ra, mut rb) = (Vec::with_capacity(k), Vec::with_capacity(k));
    let (mut ca, mut cb, mut cum) = (0u64, 0u64, 0u64);
    let mut next_cut = 1usize;
    for (x, y) in a.iter().zip(b) {
        ca += x;
        cb += y;
        cum += y;
        // Close a bin once the baseline passed the next k-quantile (the last bin takes the rest).
        if ra.len() + 1 < k && cum * k as u64 >= next_cut as u64 * total {
            ra.push(ca);
            rb.push(cb);
            ca = 0;
            cb = 0;
            while next_cut as u64 * total <= cum * k as u64 {
                next_cut += 1;
            }
        }
    }
    if ca > 0 || cb > 0 || ra.is_empty() {
        ra.push(ca);
        rb.push(cb);
    }
    (ra, rb)
}

/// τ of the exceedance test in histogram units: threshold × the baseline's q-quantile
/// (effect ratio), or the threshold itself (effect value, in the field's unit).
fn exceedance_threshold(
    rule: &Rule,
    metric: crate::window::sketch::Metric,
    base: Option<&crate::detect::history::SparseHist>,
    q: f64,
) -> Option<f64> {
    match rule.condition.effect {
        EffectKind::Value => Some(rule.condition.threshold * metric.scale()),
        EffectKind::Ratio => base
            .and_then(|b| b.quantile_units(q))
            .map(|u| u as f64 * rule.condition.threshold),
        _ => None,
    }
}

/// Proportion used for an empty bin in PSI (the usual convention).
pub const PSI_EPSILON: f64 = 1e-4;

fn hist_test(
    t: crate::detect::rules::Test,
    alt: Alternative,
    cur: &crate::detect::history::SparseHist,
    base: &crate::detect::history::SparseHist,
    q: Option<f64>,
    direction: Direction,
) -> Option<(bool, f64)> {
    match t.kind {
        TestKind::QuantileCi => {
            let q = q?;
            let (n, bn) = (cur.count(), base.count());
            let (clo, chi) = stats::quantile_ci_ranks(n, q, t.confidence)?;
            let (blo, bhi) = stats::quantile_ci_ranks(bn, q, t.confidence)?;
            let sig = match direction {
                Direction::Above => cur.value_at_rank(clo)? > base.value_at_rank(bhi)?,
                Direction::Below => cur.value_at_rank(chi)? < base.value_at_rank(blo)?,
            };
            Some((sig, f64::NAN))
        }
        TestKind::ChiSquare => {
            let (a, b) = align(cur, base);
            stats::chi_square(&a, &b).map(|r| (r.p_value < t.alpha, r.p_value))
        }
        TestKind::MannWhitney | TestKind::Ks | TestKind::AndersonDarling => {
            let (a, b) = align(cur, base);
            let r = match t.kind {
                TestKind::MannWhitney => stats::mann_whitney_u(&a, &b, alt),
                // stats::ks_2samp maps the direction onto scipy's CDF-named alternatives.
                TestKind::Ks => stats::ks_2samp(&a, &b, alt),
                _ => stats::anderson_ksamp(&a, &b),
            }?;
            Some((r.p_value < t.alpha, r.p_value))
        }
        _ => None,
    }
}

/// May `rule` alert on the series `labels`? Its matchers hold, and it is not the overflow
/// series (that mixes whatever did not fit under `series.max_active`: no alert, nor circuit
/// breaker, can be about it).
fn alertable(rule: &Rule, labels: &[String]) -> bool {
    let overflow = labels
        .first()
        .is_some_and(|v| v == crate::window::series::OVERFLOW_LABEL);
    !overflow
        && rule.by.iter().all(|i| *i < labels.len())
        && rule
            .matchers
            .iter()
            .all(|(i, vals)| vals.iter().any(|v| labels.get(*i) == Some(v)))
}

/// The series of `series` that `rule` may alert on, per alert instance (`by` key).
fn instances<'h>(
    rule: &Rule,
    series: impl Iterator<Item = &'h Vec<String>>,
) -> BTreeMap<Vec<String>, Vec<&'h Vec<String>>> {
    let mut out: BTreeMap<Vec<String>, Vec<&Vec<String>>> = BTreeMap::new();
    for labels in series.filter(|l| alertable(rule, l)) {
        let key = rule.by.iter().map(|i| labels[*i].clone()).collect();
        out.entry(key).or_default().push(labels);
    }
    out
}

/// An instance's labels: the rule's `by` labels with the values of `key`.
fn instance_labels(rule: &Rule, label_names: &[&str], key: &[String]) -> InstanceLabels {
    rule.by
        .iter()
        .zip(key)
        .map(|(i, v)| (label_names[*i].to_string(), v.clone()))
        .collect()
}

/// `new_error_code`: per instance and code (`error_type`, `http_status` ≥ 400) in the
/// current range or the one before it, the code's occurrences in the current range, and
/// whether any series of the instance returned it in the baseline span (the code memory).
/// Fires on at least `min_events` occurrences of a code not seen in the baseline span, with
/// at least `min_baseline` requests in that span; holds while the code still occurs and is
/// still new — `over` after its first occurrence it is part of the baseline, and stays so
/// until it has been absent for the whole span.
fn new_error_codes(
    rule: &Rule,
    label_names: &[&str],
    history: &History,
    t_ms: i64,
) -> Vec<Evaluation> {
    use crate::detect::codes::CodeField;
    use crate::detect::rules::{CODE_FIELD_LABEL, CODE_LABEL};
    let Baseline::Trailing {
        range_ms,
        offset_ms,
        ..
    } = rule.baseline
    else {
        return Vec::new();
    };
    let parts = parts_for(&rule.signal);
    let cur_from = t_ms - rule.over_ms;
    let (base_from, base_to) = (cur_from - offset_ms - range_ms, cur_from - offset_ms);
    let current = instances(rule, history.series());
    // The baseline span is read from every series the code memory holds — also those gone
    // quiet since (a retired prompt version), which the window history no longer has.
    let remembered = instances(rule, history.codes().series());
    fn field_counts(s: &Summary, f: CodeField) -> &crate::window::sketch::Counts {
        match f {
            CodeField::ErrorType => &s.error_types,
            CodeField::HttpStatus => &s.http_statuses,
        }
    }
    let mut out = Vec::new();
    for (key, members) in current {
        let mut cur = Summary::default();
        let mut prev = Summary::default();
        for l in &members {
            if let Some(s) = history.range_of(l, cur_from, t_ms, parts) {
                cur.merge_parts(&s, parts);
            }
            if let Some(s) = history.range_of(l, cur_from - rule.over_ms, cur_from, parts) {
                prev.merge_parts(&s, parts);
            }
        }
        let in_memory = remembered.get(&key).map(Vec::as_slice).unwrap_or(&[]);
        let base_requests: u64 = in_memory
            .iter()
            .map(|l| history.codes().requests(l, base_from, base_to))
            .sum();
        let base_labels = instance_labels(rule, label_names, &key);
        for field in CodeField::ALL {
            let now = field_counts(&cur, field);
            let before = field_counts(&prev, field);
            let codes: BTreeSet<&String> = now.0.keys().chain(before.0.keys()).collect();
            for code in codes.into_iter().filter(|c| field.is_code(c)) {
                let count = now.get(code);
                let mut labels = base_labels.clone();
                labels.push((CODE_FIELD_LABEL.to_string(), field.as_str().to_string()));
                labels.push((CODE_LABEL.to_string(), code.clone()));
                let mut e = Evaluation {
                    labels,
                    n_current: cur.requests,
                    n_baseline: base_requests,
                    outcome: Outcome::NoData("too few requests in the baseline span"),
                    horizon_ms: rule.over_ms,
                    onset_ms: None,
                    details: BTreeMap::new(),
                };
                if base_requests >= rule.min_baseline && cur.requests >= rule.min_current {
                    let seen = in_memory
                        .iter()
                        .any(|l| history.codes().seen(l, field, code, base_from, base_to));
                    let new = !seen;
                    let c = count as f64;
                    e.outcome = Outcome::Measured(Measured {
                        value: c,
                        baseline: f64::NAN,
                        effect: c,
                        p_value: f64::NAN,
                        breached: new && rule.condition.breached(c),
                        still_breached: new && rule.condition.still_breached(c),
                        significant: true,
                    });
                }
                if count > 0 {
                    // The first window of the current range the code occurred in.
                    let first = members
                        .iter()
                        .filter_map(|l| {
                            history
                                .steps(l, cur_from, t_ms, parts, false)
                                .into_iter()
                                .find(|(_, s)| field_counts(s, field).get(code) > 0)
                                .map(|(start, _)| start)
                        })
                        .min();
                    if let Some(f) = first {
                        e.details
                            .insert("first_seen".into(), crate::time::rfc3339(f));
                    }
                    if e.fires() {
                        e.onset_ms = first;
                    }
                    e.details.insert("count".into(), count.to_string());
                    e.details
                        .insert("requests".into(), cur.requests.to_string());
                    let share = count as f64 / cur.requests.max(1) as f64;
                    e.details
                        .insert("share".into(), format!("{:.2} %", share * 100.0));
                    e.details.insert("absent_for".into(), span(range_ms));
                }
                out.push(e);
            }
        }
    }
    out
}

/// `prompt_version_regression`: per instance (the rule's `by`, which leaves out
/// `prompt_version`), every version whose first request is within `over` of `t_ms` and
/// which had a predecessor — the version with most requests in the trailing range before it
/// — compared with that predecessor over the same span when the predecessor still took at
/// least `min_baseline` requests since (a rollout), else with the predecessor's trailing
/// range (a replacement). Fires when any metric regressed past the tolerance
/// (`condition.above`) at the test's level; holds while any regressed past `recover`.
fn prompt_regressions(
    rule: &Rule,
    label_names: &[&str],
    history: &History,
    t_ms: i64,
) -> Vec<Evaluation> {
    use crate::detect::compare::{compare_all, CompareMetric, CompareOptions, Verdict};
    use crate::detect::rules::BASELINE_VERSION_LABEL;
    let Baseline::Trailing { range_ms, .. } = rule.baseline else {
        return Vec::new();
    };
    let version_label = crate::event::SeriesLabel::PromptVersion.as_str();
    let Some(pv) = label_names.iter().position(|n| *n == version_label) else {
        return Vec::new();
    };
    let parts = parts_for(&rule.signal);
    let watch_from = t_ms - rule.over_ms;
    // Instance → version → its series.
    type Versions<'h> = BTreeMap<&'h String, Vec<&'h Vec<String>>>;
    let mut groups: BTreeMap<Vec<String>, Versions<'_>> = BTreeMap::new();
    for (key, series) in instances(rule, history.series()) {
        let versions = groups.entry(key).or_default();
        for labels in series.into_iter().filter(|l| pv < l.len()) {
            versions.entry(&labels[pv]).or_default().push(labels);
        }
    }
    let merged = |series: &[&Vec<String>], from: i64, to: i64| {
        let mut m = Summary::default();
        for l in series {
            if let Some(s) = history.range_of(l, from, to, parts) {
                m.merge_parts(&s, parts);
            }
        }
        m
    };
    let opts = CompareOptions {
        tolerance: rule.condition.threshold,
        alpha: rule.test.map_or(0.001, |t| t.alpha),
        min_samples: rule.min_current,
        ..CompareOptions::default()
    };
    let mut out = Vec::new();
    for (key, versions) in &groups {
        for (version, series) in versions {
            // New: its first request within the watch period (the history reaches `range`
            // further back, so an older version shows an earlier start).
            let Some(first) = merged(series, watch_from - range_ms, t_ms).since_ms else {
                continue;
            };
            // Just past the watch period: one more evaluation, not breached, so a firing alert
            // resolves when the watch ends instead of going stale.
            let expired = first < watch_from;
            if expired && first < watch_from - 5 * rule.every_ms {
                continue;
            }
            let predecessor = versions
                .iter()
                .filter(|(v, _)| *v != version)
                .map(|(v, s)| (merged(s, first - range_ms, first).requests, *v, s))
                .filter(|(n, _, _)| *n > 0)
                .max_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(a.1)));
            let Some((_, before, before_series)) = predecessor else {
                continue;
            };
            let mut labels = instance_labels(rule, label_names, key);
            labels.push((version_label.to_string(), (*version).clone()));
            labels.push((BASELINE_VERSION_LABEL.to_string(), before.clone()));
            if expired {
                let mut details = BTreeMap::new();
                details.insert("mode".into(), "watch period over".to_string());
                details.insert("since".into(), crate::time::rfc3339(first));
                out.push(Evaluation {
                    labels,
                    n_current: 0,
                    n_baseline: 0,
                    outcome: Outcome::Measured(Measured {
                        value: 0.0,
                        baseline: f64::NAN,
                        effect: 0.0,
                        p_value: f64::NAN,
                        breached: false,
                        still_breached: false,
                        significant: true,
                    }),
                    horizon_ms: rule.over_ms,
                    onset_ms: None,
                    details,
                });
                continue;
            }
            let candidate = merged(series, first, t_ms);
            let alongside = merged(before_series, first, t_ms);
            let (baseline, mode) = if alongside.requests >= rule.min_baseline {
                (alongside, "overlap")
            } else {
                (
                    merged(before_series, first - range_ms, first),
                    "replacement",
                )
            };
            let metrics = CompareMetric::defaults(&candidate, &baseline);
            let results = compare_all(&metrics, &candidate, &baseline, &opts);
            let still = results
                .iter()
                .any(|r| r.worse_beyond(rule.condition.recover));
            let regressed: Vec<_> = results
                .iter()
                .filter(|r| r.verdict == Verdict::Regression)
                .collect();
            let worst = results
                .iter()
                .filter(|r| r.verdict != Verdict::NotEnoughData)
                .min_by(|a, b| a.p_value.total_cmp(&b.p_value));
            let outcome = match worst {
                None => Outcome::NoData("too few samples on either version"),
                Some(w) => Outcome::Measured(Measured {
                    value: regressed.len() as f64,
                    baseline: f64::NAN,
                    effect: w.effect,
                    p_value: w.p_value,
                    breached: !regressed.is_empty(),
                    still_breached: still,
                    significant: true,
                }),
            };
            let mut details = BTreeMap::new();
            details.insert("mode".into(), mode.to_string());
            details.insert("since".into(), crate::time::rfc3339(first));
            let names: Vec<String> = regressed
                .iter()
                .map(|r| format!("{} {:+.1} %", r.metric, r.effect * 100.0))
                .collect();
            details.insert(
                "regressed".into(),
                if names.is_empty() {
                    "nothing".into()
                } else {
                    names.join(", ")
                },
            );
            let lines: Vec<String> = results.iter().map(|r| r.line()).collect();
            details.insert("comparison".into(), lines.join("\n"));
            let fires = !regressed.is_empty();
            out.push(Evaluation {
                labels,
                n_current: candidate.requests,
                n_baseline: baseline.requests,
                outcome,
                horizon_ms: (t_ms - first).max(1),
                onset_ms: fires.then_some(first),
                details,
            });
        }
    }
    out
}

/// A span as rules write it: `7d`, `36h`, `90m`, `45s`.
fn span(ms: i64) -> String {
    const UNITS: [(i64, &str); 3] = [(DAY_MS, "d"), (3_600_000, "h"), (60_000, "m")];
    UNITS
        .iter()
        .find(|(u, _)| ms > 0 && ms % u == 0)
        .map(|(u, name)| format!("{}{name}", ms / u))
        .unwrap_or_else(|| format!("{}s", ms / 1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(yaml_body: &str) -> crate::detect::rules::Rule {
        let text = format!(
            "rules:\n  - name: r\n{yaml_body}    severity: info\n    annotations: {{ summary: s, runbook_url: https://x }}\n"
        );
        let ctx = crate::detect::rules::RuleContext::for_tests(vec![
            crate::event::SeriesLabel::Service,
            crate::event::SeriesLabel::PromptVersion,
            crate::event::SeriesLabel::Deployment,
        ]);
        crate::detect::rules::parse_file(std::path::Path::new("r.yaml"), &text, &ctx)
            .unwrap()
            .remove(0)
    }

    fn labels(v: [&str; 3]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    const T: i64 = 1_794_268_800_000;

    /// History: `series` × minutes `[from, to)` with `requests`/`errors` per window.
    fn fill(h: &mut History, series: [&str; 3], from: i64, to: i64, requests: u64, errors: u64) {
        for m in from..to {
            h.add_window(
                &labels(series),
                T + m * 60_000,
                Summary::counts(requests, errors),
            );
        }
    }

    const NAMES: [&str; 3] = ["service", "prompt_version", "deployment"];

    #[test]
    fn peer_baseline_is_the_other_deployment_over_the_same_range() {
        let r = rule("    match: { deployment: canary }\n    signal: { metric: error_rate }\n    over: 10m\n    baseline: { peer: { deployment: stable } }\n    condition: { effect: ratio, above: 2 }\n    min_samples: { current: 1, baseline: 1 }\n");
        let mut h = History::new(60_000, 7_200_000, 7_200_000, 60_000);
        fill(&mut h, ["chat", "v1", "canary"], 0, 10, 100, 3);
        fill(&mut h, ["chat", "v1", "stable"], 0, 10, 1000, 10);
        // Another service's stable must not count.
        fill(&mut h, ["search", "v1", "stable"], 0, 10, 1000, 500);
        let e = evaluate(&r, &NAMES, &h, T + 10 * 60_000, EvalContext::default());
        assert_eq!(e.len(), 1, "only the canary is an instance: {e:?}");
        assert_eq!(
            e[0].labels[2],
            ("deployment".to_string(), "canary".to_string())
        );
        assert_eq!((e[0].n_current, e[0].n_baseline), (1000, 10_000));
        let Outcome::Measured(m) = e[0].outcome else {
            panic!("{e:?}")
        };
        assert!((m.effect - 3.0).abs() < 1e-12, "{m:?}");
    }

    #[test]
    fn trailing_baseline_with_across_merges_prompt_versions_and_by_aggregates() {
        // v1 ran for an hour, v2 the last 10 minutes; across prompt_version: v2's baseline is
        // the hour of v1 (and nothing of another service).
        let r = rule("    signal: { metric: error_rate }\n    over: 10m\n    baseline: { trailing: 1h, across: [prompt_version] }\n    condition: { effect: ratio, above: 2 }\n    min_samples: { current: 1, baseline: 1 }\n");
        let mut h = History::new(60_000, 7_200_000, 7_200_000, 60_000);
        fill(&mut h, ["chat", "v1", "stable"], 0, 60, 100, 1);
        fill(&mut h, ["chat", "v2", "stable"], 60, 70, 100, 5);
        fill(&mut h, ["search", "v1", "stable"], 0, 70, 100, 50);
        let e = evaluate(&r, &NAMES, &h, T + 70 * 60_000, EvalContext::default());
        let v2 = e
            .iter()
            .find(|e| e.labels[1].1 == "v2")
            .expect("v2 evaluated");
        assert_eq!((v2.n_current, v2.n_baseline), (1000, 6000));
        let Outcome::Measured(m) = v2.outcome else {
            panic!()
        };
        assert!((m.effect - 5.0).abs() < 1e-12, "{m:?}");
        // by: [service] aggregates the versions into one instance per service.
        let r = rule("    by: [service]\n    signal: { metric: error_rate }\n    over: 10m\n    baseline: { value: 0.01 }\n    condition: { effect: value, above: 0.02 }\n    min_samples: { current: 1 }\n");
        let e = evaluate(&r, &NAMES, &h, T + 70 * 60_000, EvalContext::default());
        assert_eq!(e.len(), 2);
        let chat = e.iter().find(|e| e.labels[0].1 == "chat").unwrap();
        assert_eq!(chat.labels.len(), 1);
        assert_eq!(chat.n_current, 1000);
    }

    /// A summary of `n` latencies: `above` of them at `high_ms`, the rest at 800 ms.
    fn latencies(n: u64, above: u64, high_ms: f64) -> Summary {
        let mut w = crate::window::sketch::WindowSketch::default();
        for i in 0..n {
            let ev = crate::event::RequestEvent {
                latency_ms: if i < above { high_ms } else { 800.0 },
                ..Default::default()
            };
            w.observe(&ev, 0, i as i64);
        }
        Summary::from_sketch(&w, &[0usize].into())
    }

    #[test]
    fn exceedance_fires_on_a_few_slow_requests_and_horizons_split_alpha() {
        let r = rule("    signal: { metric: latency_ms, stat: p99 }\n    over: 2m\n    horizons: [1m]\n    every: 10s\n    baseline: { trailing: 1h }\n    condition: { effect: ratio, above: 2 }\n    test: { kind: exceedance, alpha: 0.02 }\n    min_samples: { current: 50, baseline: 1000, events: 3 }\n");
        assert_eq!(r.horizons_ms, vec![60_000, 120_000]);
        assert_eq!(per_horizon(&r).unwrap().alpha, 0.01);
        let series = ["chat", "v1", "stable"];
        let mut h = History::new(60_000, 7_200_000, 7_200_000, 600_000);
        // The baseline hour: 3,600 requests at 800 ms (P99 = 800 ms).
        for m in 0..60 {
            h.add_window(&labels(series), T + m * 60_000, latencies(60, 0, 800.0));
        }
        // The last minute: six 10 s slices of 10 requests, 1 in 10 at 2.5 s (> 2 × 800 ms).
        let now = T + 62 * 60_000;
        for k in 0..6 {
            let s = latencies(10, 1, 2_500.0);
            h.add_slice(&labels(series), now - 60_000 + k * 10_000, 0, s);
        }
        let e = evaluate(&r, &NAMES, &h, now, EvalContext::default());
        assert_eq!(e.len(), 1);
        // 6 of 60 above τ: p = P(Bin(60, 0.01) ≥ 6) ≈ 2e-5 < 0.01 on the 1-minute horizon.
        assert_eq!(e[0].horizon_ms, 60_000);
        let Outcome::Measured(m) = e[0].outcome else {
            panic!("{e:?}")
        };
        assert!(m.breached && m.significant, "{m:?}");
        let p = stats::exceedance_test(6, 60, 0.99).unwrap();
        assert!((m.p_value - p).abs() < 1e-15, "{} vs {p}", m.p_value);
        // The change point: the first slow slice.
        assert_eq!(e[0].onset_ms, Some(now - 60_000));
        // Two slow requests of 60, below the event minimum of 3: not breached.
        let mut h2 = History::new(60_000, 7_200_000, 7_200_000, 600_000);
        for m in 0..60 {
            h2.add_window(&labels(series), T + m * 60_000, latencies(60, 0, 800.0));
        }
        for k in 0..6 {
            let s = latencies(10, u64::from(k < 2), 2_500.0);
            h2.add_slice(&labels(series), now - 60_000 + k * 10_000, 0, s);
        }
        let e = evaluate(&r, &NAMES, &h2, now, EvalContext::default());
        let Outcome::Measured(m) = e[0].outcome else {
            panic!("{e:?}")
        };
        assert!(!(m.breached && m.significant), "{m:?}");
        assert_eq!(e[0].onset_ms, None);
    }

    #[test]
    fn cached_baselines_give_the_same_evaluations_as_fresh_ones() {
        let r = rule("    signal: { metric: latency_ms, stat: p99 }\n    over: 2m\n    horizons: [1m]\n    every: 10s\n    baseline: { trailing: 30m }\n    condition: { effect: ratio, above: 2 }\n    test: { kind: exceedance, alpha: 0.02, change_alpha: 0.001 }\n    min_samples: { current: 20, baseline: 1000, events: 2 }\n");
        let mut h = History::new(60_000, 7_200_000, 7_200_000, 600_000);
        let s1 = labels(["chat", "v1", "stable"]);
        let s2 = labels(["chat", "v2", "stable"]);
        for m in 0..40 {
            h.add_window(&s1, T + m * 60_000, latencies(60, m as u64 % 3, 1_500.0));
        }
        let mut cache = BaselineCache::default();
        for step in 0..30 {
            let t = T + 40 * 60_000 + step * 10_000;
            let slow = u64::from(step % 4 == 0) * 3;
            h.add_slice(&s1, t - 10_000, 0, latencies(10, slow, 2_500.0));
            if step == 7 {
                // A new instance appears, and a late window lands inside the baseline range.
                h.add_slice(&s2, t - 10_000, 0, latencies(30, 5, 2_500.0));
                h.add_window(&s1, T + 10 * 60_000, latencies(60, 1, 1_500.0));
            }
            let cached = evaluate_cached(&r, &NAMES, &h, t, &mut cache, EvalContext::default());
            assert_eq!(
                cached,
                evaluate(&r, &NAMES, &h, t, EvalContext::default()),
                "step {step}"
            );
        }
    }

    #[test]
    fn count_above_leaves_out_the_bucket_straddling_the_threshold() {
        let s = latencies(100, 10, 2_000.0);
        let h = s.hist(crate::window::sketch::Metric::LatencyMs).unwrap();
        assert_eq!(h.count_above(1_600_000.0), 10);
        assert_eq!(h.count_above(2_000_000.0), 0);
        assert_eq!(h.count_above(700_000.0), 100);
    }

    #[test]
    fn rare_events_use_the_exact_conditional_test() {
        // 8 errors in 687 canary requests vs 17 in 5,599 stable: 2.8 expected, exact test.
        let p = two_proportions(8, 687, 17, 5_599, Alternative::Greater).unwrap();
        let exact =
            stats::binom_test(8, 25, 687.0 / (687.0 + 5_599.0), Alternative::Greater).unwrap();
        assert_eq!(p, exact);
        assert!(p > 0.001, "{p}");
        let z = stats::two_proportion_z(8, 687, 17, 5_599, Alternative::Greater).unwrap();
        assert!(
            z.p_value < 0.001,
            "the z-test alone would call it significant: {}",
            z.p_value
        );
        // Plenty of events: the z-test.
        let p = two_proportions(90, 3_000, 300, 30_000, Alternative::Greater).unwrap();
        let z = stats::two_proportion_z(90, 3_000, 300, 30_000, Alternative::Greater).unwrap();
        assert_eq!(p, z.p_value);
    }

    #[test]
    fn rebinning_keeps_totals_and_cuts_at_baseline_quantiles() {
        let b: Vec<u64> = vec![10; 100];
        let a: Vec<u64> = (0..100).map(|i| i as u64).collect();
        let (ra, rb) = rebin_by_baseline(&a, &b, 10);
        assert_eq!(rb, vec![100; 10]);
        assert_eq!(ra.iter().sum::<u64>(), a.iter().sum::<u64>());
        assert_eq!(ra[0], (0..10).sum::<u64>());
        // Current mass past the baseline's range lands in the last bin.
        let (ra, rb) = rebin_by_baseline(
            &[0, 5, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7],
            &[0, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 0],
            5,
        );
        assert_eq!(ra.iter().sum::<u64>(), 12);
        assert_eq!(rb.iter().sum::<u64>(), 50);
        assert_eq!(*ra.last().unwrap(), 7);
    }

    #[test]
    fn psi_of_two_samples_of_one_distribution_is_small_after_rebinning() {
        use rand::SeedableRng;
        use rand_distr::Distribution;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let ln = rand_distr::LogNormal::new(6.5, 0.45).unwrap();
        let sketch = |n: usize, rng: &mut rand_chacha::ChaCha8Rng| {
            let mut w = crate::window::sketch::WindowSketch::default();
            for i in 0..n {
                let ev = crate::event::RequestEvent {
                    latency_ms: ln.sample(rng),
                    ..Default::default()
                };
                w.observe(&ev, 0, i as i64);
            }
            Summary::from_sketch(&w, &[0usize].into())
        };
        let cur = sketch(1_000, &mut rng);
        let base = sketch(12_000, &mut rng);
        let m = crate::window::sketch::Metric::LatencyMs;
        let (a, b) = align(cur.hist(m).unwrap(), base.hist(m).unwrap());
        assert!(a.len() > 100, "{} buckets", a.len());
        let raw = stats::psi(&a, &b, PSI_EPSILON).unwrap();
        let (ra, rb) = rebin_by_baseline(&a, &b, DISTRIBUTION_BINS);
        let binned = stats::psi(&ra, &rb, PSI_EPSILON).unwrap();
        assert!(
            binned < 0.05,
            "PSI {binned} on deciles (raw buckets: {raw})"
        );
        assert!(raw > binned);
    }
}

#[cfg(test)]
#[path = "registry_signal_tests.rs"]
mod registry_signal_tests;

#[cfg(test)]
#[path = "new_code_tests.rs"]
mod new_code_tests;

#[cfg(test)]
#[path = "prompt_regression_tests.rs"]
mod prompt_regression_tests;
