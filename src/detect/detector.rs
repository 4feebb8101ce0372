//! The detection stage: closed windows and fast slices in, alert transitions out.
//!
//! Owns the rules, the [`History`] and the [`AlertBook`]. Evaluation is driven by event
//! time: each rule runs at every multiple of its `every` up to the detector clock (the end of
//! the newest window closed on every partition), so a replay, a backtest and the live daemon
//! evaluate the same ticks over the same windows. What was evaluated last is part of the
//! snapshot, so a restart neither re-fires nor skips a tick.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::detect::alerts::{Alert, AlertBook, AlertState, Lifecycle, Transition};
use crate::detect::analysis::{Analyses, AnalysesSnapshot, AnalysisConfig, RollbackEvent};
use crate::detect::breaker::{BreakerSettings, BreakerTransition, Breakers};
use crate::detect::changes::what_changed;
use crate::detect::evaluate::{evaluate_cached, BaselineCache, EvalContext};
use crate::detect::history::{History, Summary};
use crate::detect::rules::{Resolution, RuleSet};
use crate::window::sketch::{SliceSketch, WindowSketch};
use crate::window::state::WindowsConfig;

/// Detector settings that are not in the rules.
#[derive(Debug, Clone, Copy)]
pub struct DetectorSettings {
    pub window_ms: i64,
    pub slice_ms: i64,
    /// Windows younger than this stay at window resolution; older ones roll up to hours.
    pub fine_history_ms: i64,
    pub lifecycle: Lifecycle,
}

/// What a restart needs: the alert instances and the last evaluated ticks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DetectorSnapshot {
    pub book: AlertBook,
    pub evaluated_window_ms: Option<i64>,
    pub evaluated_slice_ms: Option<i64>,
    /// Circuit breakers (absent in snapshots written before breakers existed).
    #[serde(default)]
    pub breakers: Breakers,
    /// Rollout analysis runs (absent before analyses existed).
    #[serde(default, skip_serializing_if = "AnalysesSnapshot::is_empty")]
    pub analyses: AnalysesSnapshot,
}

#[derive(Debug)]
pub struct Detector {
    rules: RuleSet,
    label_names: Vec<&'static str>,
    settings: DetectorSettings,
    metrics: BTreeSet<usize>,
    /// Histogram metrics kept in fast slices: those the slice rules read.
    slice_metrics: BTreeSet<usize>,
    history: History,
    book: AlertBook,
    evaluated_window_ms: Option<i64>,
    evaluated_slice_ms: Option<i64>,
    evaluations: u64,
    /// Earliest window start observed: a fresh detector evaluates from the end of its first
    /// window, as a backtest does.
    first_data_ms: Option<i64>,
    breakers: Breakers,
    /// `None`: breaker rules alert but trip nothing (`breaker.enabled = false`).
    breaker_settings: Option<BreakerSettings>,
    breaker_out: Vec<BreakerTransition>,
    /// Transitions made outside an evaluation (a restore ending alerts of removed rules),
    /// handed out with the next [`Self::evaluate`].
    pending_out: Vec<Transition>,
    /// Per rule name: its trailing baselines, reused between steps.
    baseline_caches: std::collections::HashMap<String, BaselineCache>,
    /// The model registry the deprecation and unknown-model signals read.
    registry: Option<std::sync::Arc<crate::registry::Registry>>,
    /// `[budgets]`: USD per service and UTC day.
    budgets: std::collections::BTreeMap<String, f64>,
    /// `[[analyses]]`: canary, A/B and shadow runs.
    analyses: Analyses,
    /// See [`Self::record_digest`].
    digest: Option<u64>,
}

/// FNV-1a 64 of `bytes` continuing from `h`.
fn fnv(mut h: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// Numbers to 10 significant digits: summation order may move a float's last bits.
fn digits(x: f64) -> String {
    format!("{x:.9e}")
}

impl Detector {
    pub fn new(rules: RuleSet, label_names: Vec<&'static str>, settings: DetectorSettings) -> Self {
        let history = Self::history_for(&rules, &settings);
        let analyses = Analyses::new(Vec::new(), label_names.clone(), settings.window_ms);
        Self {
            metrics: rules.metrics(),
            slice_metrics: rules.slice_metrics(),
            rules,
            label_names,
            settings,
            history,
            book: AlertBook::default(),
            evaluated_window_ms: None,
            evaluated_slice_ms: None,
            evaluations: 0,
            first_data_ms: None,
            breakers: Breakers::default(),
            breaker_settings: Some(BreakerSettings::default()),
            breaker_out: Vec::new(),
            pending_out: Vec::new(),
            baseline_caches: std::collections::HashMap::new(),
            registry: None,
            budgets: Default::default(),
            analyses,
            digest: None,
        }
    }

    /// From now on, folds every evaluation — rule, tick, instance, sample counts, horizon,
    /// outcome with its numbers, onset and details — into [`Self::digest`]: a check that a
    /// rework of the history or of evaluation changed no result, not only no alert.
    pub fn record_digest(&mut self) {
        self.digest = Some(0xcbf2_9ce4_8422_2325);
    }

    /// See [`Self::record_digest`]; `None` when not recording.
    pub fn digest(&self) -> Option<u64> {
        self.digest
    }

    /// The rollout analyses (`[[analyses]]`); runs of analyses still configured stay.
    pub fn set_analyses(&mut self, configs: Vec<AnalysisConfig>) {
        self.analyses.reconfigure(configs, self.label_names.clone());
        self.metrics = self
            .metrics
            .union(&self.analyses.metrics())
            .copied()
            .collect();
    }

    pub fn analyses(&self) -> &Analyses {
        &self.analyses
    }

    /// Shadow pairs completed in the window starting at `start_ms` (shadow series labels).
    pub fn observe_pairs(
        &mut self,
        labels: &[String],
        start_ms: i64,
        pairs: crate::window::pairs::PairedStats,
    ) {
        self.analyses.observe_pairs(labels, start_ms, pairs);
    }

    /// Rollback commands of runs that failed since the last call.
    pub fn take_rollbacks(&mut self) -> Vec<RollbackEvent> {
        self.analyses.take_rollbacks()
    }

    /// The model registry (fallbacks, deprecations, unknown models; a reload swaps it).
    pub fn set_registry(&mut self, registry: Option<std::sync::Arc<crate::registry::Registry>>) {
        if let Some(b) = self.breaker_settings.as_mut() {
            b.registry = registry.clone();
        }
        self.registry = registry;
    }

    /// Daily budgets per service (`[budgets]`).
    pub fn set_budgets(&mut self, budgets: std::collections::BTreeMap<String, f64>) {
        self.budgets = budgets;
    }

    /// Breaker timing and fallbacks; `None` turns breakers off. The registry set before
    /// stays unless `s` brings one.
    pub fn set_breaker_settings(&mut self, mut s: Option<BreakerSettings>) {
        if let (Some(new), Some(old)) = (s.as_mut(), self.breaker_settings.as_ref()) {
            if new.registry.is_none() {
                new.registry = old.registry.clone();
            }
        }
        self.breaker_settings = s;
    }

    /// Breaker transitions since the last call, in time order.
    pub fn take_breaker_transitions(&mut self) -> Vec<BreakerTransition> {
        let mut v = std::mem::take(&mut self.breaker_out);
        v.sort_by_key(|t| t.at_ms);
        v
    }

    pub fn breakers(&self) -> &Breakers {
        &self.breakers
    }

    fn history_for(rules: &RuleSet, s: &DetectorSettings) -> History {
        let slice_lookback = rules
            .rules
            .iter()
            .filter(|r| r.resolution == Resolution::Slice)
            // The current ranges (and a peer's, over the same ranges) read slices; a
            // trailing baseline reads closed windows.
            .map(|r| r.over_ms)
            .max()
            .unwrap_or(0);
        let codes = rules.code_lookback_ms();
        // How far back some rule reads each histogram and the judge moments (its lookback,
        // plus its range again: a model-change report compares the span before the takeover).
        let (mut hists, mut judge) = ([0i64; 5], 0i64);
        for r in &rules.rules {
            let parts = crate::detect::evaluate::parts_read(r);
            let reach = r.lookback_ms() + r.over_ms + s.window_ms;
            for (m, h) in hists.iter_mut().enumerate() {
                if parts.hists & (1 << m) != 0 {
                    *h = (*h).max(reach);
                }
            }
            if parts.judge {
                judge = judge.max(reach);
            }
        }
        History::new(
            s.window_ms,
            s.fine_history_ms,
            rules.lookback_ms() + s.window_ms,
            slice_lookback + s.slice_ms,
        )
        .with_codes(
            rules.code_gap_ms(),
            if codes > 0 { codes + s.window_ms } else { 0 },
        )
        .with_part_retention(hists, judge)
    }

    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// Replaces the rules (SIGHUP). History is kept; instances of removed rules are dropped.
    pub fn reload(&mut self, rules: RuleSet) -> Vec<Transition> {
        let names: Vec<&str> = rules.rules.iter().map(|r| r.name.as_str()).collect();
        let ended = self.book.retain_rules(&names, &self.rules.rules);
        let breaker_names: Vec<&str> = rules
            .rules
            .iter()
            .filter(|r| r.action == Some(crate::detect::rules::Action::CircuitBreaker))
            .map(|r| r.name.as_str())
            .collect();
        self.close_orphan_breakers(&breaker_names);
        // History is kept and its retention follows the new rules: a longer lookback fills up
        // from now on; a newly read metric is missing from older windows (those evaluate as
        // "too few samples" until the range has filled).
        let sized = Self::history_for(&rules, &self.settings);
        self.history.set_retention_like(&sized);
        self.metrics = self.metrics.union(&rules.metrics()).copied().collect();
        self.slice_metrics = self
            .slice_metrics
            .union(&rules.slice_metrics())
            .copied()
            .collect();
        self.rules = rules;
        self.baseline_caches.clear();
        ended
    }

    /// Histogram metrics kept (indices of [`crate::window::sketch::Metric`]).
    pub fn metrics(&self) -> &BTreeSet<usize> {
        &self.metrics
    }

    /// Adds one closed window row (several rows of one series and window merge).
    pub fn observe_window(&mut self, labels: &[String], start_ms: i64, sketch: &WindowSketch) {
        self.note_start(start_ms);
        let s = Summary::from_sketch(sketch, &self.metrics);
        self.analyses.observe(labels, start_ms, &s);
        self.history.add_window(labels, start_ms, s);
    }

    /// Adds late scores of a window already closed (a correction row) to the history, the
    /// window's and its slices' (from `partition`): ticks evaluated from now on see them.
    /// Analyses judged the window when it closed and keep their verdicts.
    pub fn observe_correction(
        &mut self,
        labels: &[String],
        start_ms: i64,
        partition: i32,
        delta: &WindowSketch,
    ) {
        self.observe_correction_window(
            labels,
            start_ms,
            Summary::from_sketch(delta, &self.metrics),
        );
        self.observe_correction_slices(labels, start_ms, partition, &delta.slices);
    }

    /// The window part of a correction row.
    pub fn observe_correction_window(&mut self, labels: &[String], start_ms: i64, s: Summary) {
        self.history.add_window(labels, start_ms, s);
    }

    /// The slice part of a correction row (its slices, from the window's start).
    pub fn observe_correction_slices(
        &mut self,
        labels: &[String],
        start_ms: i64,
        partition: i32,
        slices: &[SliceSketch],
    ) {
        for (i, slice) in slices.iter().enumerate() {
            if !slice.judge.is_empty() || slice.feedback.iter().any(|f| *f > 0) {
                let at = start_ms + i as i64 * self.settings.slice_ms;
                self.observe_late_slice(labels, at, partition, slice);
            }
        }
    }

    /// Adds a late score to a slice already handed over (fast rules see it from now on).
    pub fn observe_late_slice(
        &mut self,
        labels: &[String],
        slice_start_ms: i64,
        partition: i32,
        delta: &SliceSketch,
    ) {
        let s = Summary::from_slice(delta, &self.slice_metrics);
        self.history
            .merge_slice(labels, slice_start_ms, partition, &s);
    }

    /// Adds a summary directly (history rebuilt from Parquet).
    pub fn observe_summary(&mut self, labels: &[String], start_ms: i64, s: Summary) {
        self.note_start(start_ms);
        self.analyses.observe(labels, start_ms, &s);
        self.history.add_window(labels, start_ms, s);
    }

    /// Adds the error codes and requests of a stored window or hour `[start, end)` older than
    /// the windows the rules read (the new-code rules' baseline span, rebuilt from Parquet).
    pub fn observe_codes(&mut self, labels: &[String], start_ms: i64, end_ms: i64, s: &Summary) {
        self.history.add_codes(labels, start_ms, end_ms, s);
    }

    fn note_start(&mut self, start_ms: i64) {
        let f = self.first_data_ms.get_or_insert(start_ms);
        *f = (*f).min(start_ms);
    }

    /// Treats every tick up to `t_ms` as evaluated: stored history serves as baseline only
    /// (a detector starting on old data does not replay old incidents).
    pub fn skip_until(&mut self, t_ms: i64) {
        let w = t_ms.div_euclid(self.settings.window_ms) * self.settings.window_ms;
        let s = t_ms.div_euclid(self.settings.slice_ms) * self.settings.slice_ms;
        self.evaluated_window_ms = Some(self.evaluated_window_ms.map_or(w, |e| e.max(w)));
        self.analyses.skip_until(w);
        self.evaluated_slice_ms = Some(self.evaluated_slice_ms.map_or(s, |e| e.max(s)));
    }

    /// Rolls up and forgets history as of `t_ms` (after a rebuild).
    pub fn maintain(&mut self, t_ms: i64) {
        self.history.maintain(t_ms);
    }

    /// Adds one fast slice of one series.
    pub fn observe_slice(
        &mut self,
        labels: &[String],
        start_ms: i64,
        partition: i32,
        slice: &SliceSketch,
    ) {
        if slice.requests > 0 {
            self.note_start(start_ms);
            let s = Summary::from_slice(slice, &self.slice_metrics);
            self.history.add_slice(labels, start_ms, partition, s);
        }
    }

    /// Evaluates every due tick: window rules up to `window_clock` (every window ending at or
    /// before it is closed), slice rules up to `slice_clock`. Transitions come out in time
    /// order.
    pub fn evaluate(
        &mut self,
        window_clock: Option<i64>,
        slice_clock: Option<i64>,
    ) -> Vec<Transition> {
        let mut out = std::mem::take(&mut self.pending_out);
        if let Some(c) = window_clock {
            let step = self.settings.window_ms;
            self.evaluated_window_ms = self.run(
                Resolution::Window,
                c,
                step,
                self.evaluated_window_ms,
                &mut out,
            );
        }
        if let Some(c) = slice_clock {
            let step = self.settings.slice_ms;
            self.evaluated_slice_ms = self.run(
                Resolution::Slice,
                c,
                step,
                self.evaluated_slice_ms,
                &mut out,
            );
        }
        if let Some(c) = window_clock {
            self.analyses.advance(c);
        }
        // Forget only after both resolutions evaluated everything due: a clock that jumps
        // (a backlog, a backtest) must not drop slices its own ticks still read.
        let done = match (window_clock, slice_clock) {
            (Some(w), Some(s)) => Some(w.min(s)),
            (w, s) => w.or(s),
        };
        if let Some(c) = done {
            self.history.maintain(c);
        }
        out.sort_by_key(|t| t.at_ms);
        out
    }

    fn run(
        &mut self,
        res: Resolution,
        clock: i64,
        step: i64,
        last: Option<i64>,
        out: &mut Vec<Transition>,
    ) -> Option<i64> {
        let due = clock.div_euclid(step) * step;
        // First evaluation: the end of the first step after the earliest data.
        let first = self
            .first_data_ms
            .map(|f| (f.div_euclid(step) + 1) * step)
            .unwrap_or(due);
        let mut t = match last {
            Some(l) => l + step,
            None => first.min(due),
        };
        if !self.rules.rules.iter().any(|r| r.resolution == res) {
            return Some(due.max(last.unwrap_or(i64::MIN)));
        }
        while t <= due {
            for rule in self.rules.rules.iter().filter(|r| r.resolution == res) {
                if t.rem_euclid(rule.every_ms) != 0 {
                    continue;
                }
                let cache = self.baseline_caches.entry(rule.name.clone()).or_default();
                let ctx = EvalContext {
                    registry: self.registry.as_deref(),
                    budgets: Some(&self.budgets),
                };
                let evals = evaluate_cached(rule, &self.label_names, &self.history, t, cache, ctx);
                if let Some(d) = &mut self.digest {
                    for e in &evals {
                        let outcome = match &e.outcome {
                            crate::detect::evaluate::Outcome::NoData(r) => r.to_string(),
                            crate::detect::evaluate::Outcome::Measured(m) => format!(
                                "{} {} {} {} {} {} {}",
                                digits(m.value),
                                digits(m.baseline),
                                digits(m.effect),
                                digits(m.p_value),
                                m.breached,
                                m.still_breached,
                                m.significant
                            ),
                        };
                        let line = format!(
                            "{} {t} {:?} {} {} {} {outcome} {:?} {:?}\n",
                            rule.name,
                            e.labels,
                            e.n_current,
                            e.n_baseline,
                            e.horizon_ms,
                            e.onset_ms,
                            e.details
                        );
                        *d = fnv(*d, line.as_bytes());
                    }
                }
                let before = out.len();
                self.evaluations += evals.len() as u64;
                match (&rule.action, &self.breaker_settings) {
                    (Some(crate::detect::rules::Action::CircuitBreaker), Some(bs)) => {
                        let trs = self
                            .book
                            .apply(rule, t, evals.clone(), self.settings.lifecycle);
                        let changed = self.breakers.observe(rule, t, &evals, &trs, bs);
                        self.breaker_out.extend(changed);
                        out.extend(trs);
                    }
                    _ => out.extend(self.book.apply(rule, t, evals, self.settings.lifecycle)),
                }
                // What changed around every new firing, for its notifications.
                for tr in out[before..]
                    .iter_mut()
                    .filter(|tr| tr.to == AlertState::Firing)
                {
                    let lines = what_changed(&self.history, &self.label_names, &tr.labels, t);
                    if !lines.is_empty() {
                        tr.details.insert("what_changed".into(), lines.join("\n"));
                    }
                }
            }
            t += step;
        }
        Some(due.max(last.unwrap_or(i64::MIN)))
    }

    pub fn snapshot(&self) -> DetectorSnapshot {
        DetectorSnapshot {
            book: self.book.clone(),
            evaluated_window_ms: self.evaluated_window_ms,
            evaluated_slice_ms: self.evaluated_slice_ms,
            breakers: self.breakers.clone(),
            analyses: self.analyses.snapshot(),
        }
    }

    pub fn restore(&mut self, snap: DetectorSnapshot) {
        let names: Vec<&str> = self.rules.rules.iter().map(|r| r.name.as_str()).collect();
        self.book = snap.book;
        let ended = self.book.retain_rules(&names, &[]);
        self.pending_out.extend(ended);
        self.evaluated_window_ms = snap.evaluated_window_ms;
        self.evaluated_slice_ms = snap.evaluated_slice_ms;
        self.breakers = snap.breakers;
        self.analyses
            .restore(snap.analyses, self.evaluated_window_ms);
        let breaker_names: Vec<String> = self
            .rules
            .rules
            .iter()
            .filter(|r| r.action == Some(crate::detect::rules::Action::CircuitBreaker))
            .map(|r| r.name.clone())
            .collect();
        let breaker_names: Vec<&str> = breaker_names.iter().map(String::as_str).collect();
        self.close_orphan_breakers(&breaker_names);
    }

    /// Closes (with a `restore` to the gateway) breakers whose rule is gone, or all of them
    /// when breakers are turned off: traffic must not stay on a fallback nobody watches.
    fn close_orphan_breakers(&mut self, breaker_rules: &[&str]) {
        let at = self
            .evaluated_slice_ms
            .or(self.evaluated_window_ms)
            .unwrap_or(0);
        let keep: &[&str] = if self.breaker_settings.is_some() {
            breaker_rules
        } else {
            &[]
        };
        let channels = self
            .breaker_settings
            .as_ref()
            .map(|s| s.config.channels.clone())
            .unwrap_or_else(|| crate::detect::breaker::BreakerConfig::default().channels);
        let closed = self.breakers.retain_rules(keep, at, &channels);
        self.breaker_out.extend(closed);
    }

    /// Every alert instance (pending, firing, recently resolved).
    pub fn alerts(&self) -> Vec<Alert> {
        self.book.alerts().cloned().collect()
    }

    /// (firing, pending) instances.
    pub fn state_counts(&self) -> (usize, usize) {
        let mut f = 0;
        let mut p = 0;
        for a in self.book.alerts() {
            match a.state {
                crate::detect::alerts::AlertState::Firing => f += 1,
                crate::detect::alerts::AlertState::Pending => p += 1,
                _ => {}
            }
        }
        (f, p)
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Evaluations done (instances × ticks), for metrics.
    pub fn evaluations(&self) -> u64 {
        self.evaluations
    }

    pub fn evaluated_through(&self) -> (Option<i64>, Option<i64>) {
        (self.evaluated_window_ms, self.evaluated_slice_ms)
    }
}

/// Default `detection.rules_dir`; when it does not exist the built-in copy of the shipped
/// rules is used.
pub const DEFAULT_RULES_DIR: &str = "rules";

/// Rules, alert lifecycle and the detector's memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    /// Run the rules. Default `true`.
    pub enabled: bool,
    /// Directory of rule files (`*.yaml`), reloaded on SIGHUP. Default `rules`.
    pub rules_dir: PathBuf,
    /// Windows younger than this stay at window resolution in the detector's memory; older
    /// ones are rolled up into hours. Default `2h`.
    #[serde(with = "humantime_serde")]
    pub fine_history: Duration,
    /// A firing alert whose series sends no data for this long resolves. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// Resolved alerts stay visible in `GET /api/v1/alerts` this long. Default `15m`.
    #[serde(with = "humantime_serde")]
    pub keep_resolved: Duration,
}

impl Default for DetectionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            rules_dir: PathBuf::from(DEFAULT_RULES_DIR),
            fine_history: Duration::from_secs(2 * 3600),
            stale_after: Duration::from_secs(3600),
            keep_resolved: Duration::from_secs(15 * 60),
        }
    }
}

impl DetectionConfig {
    /// The detector settings for windows of `windows`.
    pub fn settings(&self, windows: &WindowsConfig) -> crate::detect::detector::DetectorSettings {
        crate::detect::detector::DetectorSettings {
            window_ms: windows.width.as_millis() as i64,
            slice_ms: windows.slice.as_millis() as i64,
            fine_history_ms: self.fine_history.as_millis() as i64,
            lifecycle: crate::detect::alerts::Lifecycle {
                stale_after_ms: self.stale_after.as_millis() as i64,
                forget_after_ms: self.keep_resolved.as_millis() as i64,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::summary::Parts;
    use crate::event::RequestEvent;
    use crate::window::sketch::Metric;

    #[test]
    fn slices_keep_only_the_histograms_the_slice_rules_read() {
        let windows = crate::window::state::WindowsConfig::default();
        let ctx = crate::detect::rules::RuleContext::for_tests(
            crate::window::series::SeriesConfig::default()
                .parsed_labels()
                .unwrap(),
        );
        let rules = crate::detect::rules::load_dir(std::path::Path::new("rules"), &ctx).unwrap();
        let labels: Vec<&'static str> = ctx.labels.iter().map(|l| l.as_str()).collect();
        let settings = DetectionConfig::default().settings(&windows);
        let mut det = Detector::new(rules, labels, settings);
        let mut w = WindowSketch::default();
        for k in 0..50 {
            let ev = RequestEvent {
                latency_ms: 500.0 + k as f64,
                output_tokens: Some(100 + k),
                ..Default::default()
            };
            w.observe(&ev, 0, k as i64);
            w.add_to_slice(0, &ev);
        }
        let key: Vec<String> = ["svc", "m", "p", "v1", "stable", ""]
            .map(String::from)
            .into();
        let t0 = 1_794_268_800_000;
        det.observe_slice(&key, t0, 0, &w.slices[0]);
        det.observe_window(&key, t0, &w);
        let slice = det
            .history()
            .slice_range(&key, t0, t0 + 10_000, Parts::ALL)
            .unwrap();
        let window = det.history().range(&key, t0, t0 + 60_000).unwrap();
        // The shipped fast rules read latency; output tokens only window rules read.
        assert!(slice.hist(Metric::LatencyMs).is_some());
        assert!(slice.hist(Metric::OutputTokens).is_none());
        assert!(window.hist(Metric::OutputTokens).is_some());
        assert_eq!(slice.requests, 50);
    }
}
