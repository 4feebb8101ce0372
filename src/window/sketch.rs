//! Mergeable per-window sketches: HDR histograms, counters and exact moments.
//!
//! A [`WindowSketch`] summarises every event of one series in one window. Its size depends on
//! the spread of values, never on how many events it saw, and two sketches of the same series
//! and window (from two instances, or two windows) merge exactly with [`WindowSketch::merge`].

use std::collections::BTreeMap;

use hdrhistogram::serialization::{Deserializer, Serializer, V2Serializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::event::{Feedback, RequestEvent, Status};

/// Distinct keys kept per categorical counter; further keys are counted under [`OTHER_KEY`].
pub const MAX_CATEGORIES: usize = 100;
/// The bucket for categorical values past [`MAX_CATEGORIES`].
pub const OTHER_KEY: &str = "__other__";
/// Distinct judge names kept per window; scores under further names are counted in
/// [`WindowSketch::judge_names_dropped`].
pub const MAX_JUDGE_NAMES: usize = 64;
/// Significant decimal digits of every histogram: values are resolved to better than 1 %.
pub const HIST_SIGFIG: u8 = 2;
/// Worst-case relative error of a quantile read from a histogram with [`HIST_SIGFIG`] digits
/// (one sub-bucket: 1/128), on top of the unit's resolution.
pub const HIST_RELATIVE_ERROR: f64 = 1.0 / 128.0;

/// The measured quantities that get a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    LatencyMs,
    TtftMs,
    InputTokens,
    OutputTokens,
    CostUsd,
}

impl Metric {
    pub const ALL: [Metric; 5] = [
        Metric::LatencyMs,
        Metric::TtftMs,
        Metric::InputTokens,
        Metric::OutputTokens,
        Metric::CostUsd,
    ];

    /// Column prefix in `windows` (`latency_ms_p99`, `latency_ms_hist`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Metric::LatencyMs => "latency_ms",
            Metric::TtftMs => "ttft_ms",
            Metric::InputTokens => "input_tokens",
            Metric::OutputTokens => "output_tokens",
            Metric::CostUsd => "cost_usd",
        }
    }

    /// Histogram units per unit of the field: latency is recorded in integer microseconds,
    /// cost in micro-USD, tokens as they are.
    pub fn scale(self) -> f64 {
        match self {
            Metric::LatencyMs | Metric::TtftMs => 1_000.0,
            Metric::InputTokens | Metric::OutputTokens => 1.0,
            Metric::CostUsd => 1_000_000.0,
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    fn value(self, ev: &RequestEvent) -> Option<f64> {
        match self {
            Metric::LatencyMs => Some(ev.latency_ms),
            Metric::TtftMs => ev.ttft_ms,
            Metric::InputTokens => ev.input_tokens.map(|v| v as f64),
            Metric::OutputTokens => ev.output_tokens.map(|v| v as f64),
            Metric::CostUsd => ev.cost_usd,
        }
    }
}

/// One histogram plus exact count, sum, min and max in the field's own unit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MetricSketch {
    #[serde(with = "hist_base64")]
    pub hist: Histogram<u64>,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Default for MetricSketch {
    fn default() -> Self {
        Self {
            hist: new_hist(),
            sum: 0.0,
            min: f64::MAX,
            max: f64::MIN,
        }
    }
}

/// The bucket value (as in [`SparseHist::buckets`]) holding `units` in every metric's
/// histogram.
pub fn bucket_of(units: u64) -> u64 {
    thread_local! {
        static TEMPLATE: Histogram<u64> = new_hist();
    }
    TEMPLATE.with(|h| h.highest_equivalent(units))
}

fn new_hist() -> Histogram<u64> {
    // new() only fails for sigfig > 5.
    Histogram::new(HIST_SIGFIG).expect("HIST_SIGFIG is a valid significant-figure count")
}

impl MetricSketch {
    pub fn count(&self) -> u64 {
        self.hist.len()
    }

    fn record(&mut self, metric: Metric, v: f64) {
        let units = (v * metric.scale()).round() as u64;
        // Auto-resizing grows to any value the decoder let through; saturating is the
        // fallback for values past what a histogram can ever track.
        if self.hist.record(units).is_err() {
            self.hist.saturating_record(units);
        }
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    fn merge(&mut self, other: &MetricSketch) {
        // Auto-resizing histograms of the same precision always add.
        let _ = self.hist.add(&other.hist);
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    pub fn mean(&self) -> Option<f64> {
        (self.count() > 0).then(|| self.sum / self.count() as f64)
    }

    /// Quantile in the field's unit: the upper end of the bucket holding the value of rank
    /// ⌈q·n⌉ (the inverted-CDF definition), so it is ≥ the exact value and within
    /// [`HIST_RELATIVE_ERROR`] of it (plus one histogram unit).
    pub fn quantile(&self, metric: Metric, q: f64) -> Option<f64> {
        (self.count() > 0).then(|| self.hist.value_at_quantile(q) as f64 / metric.scale())
    }

    /// HDR V2 encoding of the histogram (see `schemas/windows.md`).
    pub fn serialize_hist(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // Writing to a Vec cannot fail for a valid histogram.
        let _ = V2Serializer::new().serialize(&self.hist, &mut out);
        out
    }
}

/// Decodes a `*_hist` column value written by [`MetricSketch::serialize_hist`].
pub fn deserialize_hist(
    bytes: &[u8],
) -> Result<Histogram<u64>, hdrhistogram::serialization::DeserializeError> {
    Deserializer::new().deserialize(&mut std::io::Cursor::new(bytes))
}

/// Exact running moments (Welford), mergeable with Chan et al.'s formula.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Moments {
    pub n: u64,
    pub mean: f64,
    /// Sum of squared deviations from the mean.
    pub m2: f64,
}

impl Moments {
    pub fn push(&mut self, x: f64) {
        self.n += 1;
        let delta = x - self.mean;
        self.mean += delta / self.n as f64;
        self.m2 += delta * (x - self.mean);
    }

    pub fn merge(&mut self, o: &Moments) {
        if o.n == 0 {
            return;
        }
        if self.n == 0 {
            *self = *o;
            return;
        }
        let n = self.n + o.n;
        let delta = o.mean - self.mean;
        self.mean += delta * o.n as f64 / n as f64;
        self.m2 += o.m2 + delta * delta * (self.n as f64 * o.n as f64) / n as f64;
        self.n = n;
    }

    /// Sample variance (n − 1 denominator).
    pub fn variance(&self) -> Option<f64> {
        (self.n > 1).then(|| self.m2 / (self.n - 1) as f64)
    }
}

/// Counts by key with a cap on distinct keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Counts(pub BTreeMap<String, u64>);

impl Counts {
    pub fn add(&mut self, key: &str, n: u64) {
        if let Some(c) = self.0.get_mut(key) {
            *c += n;
        } else if self.0.len() < MAX_CATEGORIES || key == OTHER_KEY {
            self.0.insert(key.to_string(), n);
        } else {
            *self.0.entry(OTHER_KEY.to_string()).or_insert(0) += n;
        }
    }

    pub fn merge(&mut self, o: &Counts) {
        for (k, n) in &o.0 {
            self.add(k, *n);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or(0)
    }
}

/// Everything known about one series in one window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct WindowSketch {
    pub event_count: u64,
    pub error_count: u64,
    pub metrics: [MetricSketch; 5],
    pub error_types: Counts,
    pub http_statuses: Counts,
    pub finish_reasons: Counts,
    pub query_types: Counts,
    pub response_models: Counts,
    /// OpenAI's `system_fingerprint` of the requests that sent one (the backend
    /// configuration; a change under the same response model is a silent update too).
    #[serde(default)]
    pub system_fingerprints: Counts,
    pub retries_total: u64,
    pub cached_input_tokens_total: u64,
    #[serde(default)]
    pub cache_creation_tokens_total: u64,
    #[serde(default)]
    pub reasoning_tokens_total: u64,
    /// What cache reads saved against the input rate (USD, from the registry's prices).
    #[serde(default)]
    pub cache_savings_usd: f64,
    /// Requests whose input was near their model's context window (`near_context_limit`).
    #[serde(default)]
    pub near_context_count: u64,
    /// Per request with input tokens: cached / input tokens (the cache-read signal's test).
    #[serde(default)]
    pub cache_read_share: Moments,
    pub cost_estimated_count: u64,
    pub judge: BTreeMap<String, Moments>,
    /// Categorical judge results (`gen_ai.evaluation.score.label`), `name=label` → count.
    #[serde(default)]
    pub judge_labels: Counts,
    pub judge_names_dropped: u64,
    /// Feedback counts: negative, neutral, positive.
    pub feedback: [u64; 3],
    /// Scores and feedback that arrived as their own message and joined this window.
    pub late_scores: u64,
    /// Kafka partition → (lowest, highest) offset that contributed.
    pub offsets: BTreeMap<i32, (i64, i64)>,
    /// Per slice of the window (`windows.slice`): the events that arrived while their slice
    /// was open, summarised for the fast path — exactly what fast rules saw.
    #[serde(default, deserialize_with = "slices_compat")]
    pub slices: Vec<SliceSketch>,
}

/// What a fast rule sees of one series in one slice (`windows.slice`, 10 s): counts, sparse
/// histograms on the window histograms' bucket boundaries, inline judge scores and feedback,
/// and the categorical counters. Events that arrive after their slice closed count in their
/// window only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SliceSketch {
    pub requests: u64,
    pub errors: u64,
    /// Indexed by [`Metric`].
    #[serde(default)]
    pub hists: [SparseHist; 5],
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub judge: BTreeMap<String, Moments>,
    #[serde(default)]
    pub feedback: [u64; 3],
    #[serde(default, skip_serializing_if = "Counts::is_empty")]
    pub error_types: Counts,
    #[serde(default, skip_serializing_if = "Counts::is_empty")]
    pub http_statuses: Counts,
    #[serde(default, skip_serializing_if = "Counts::is_empty")]
    pub finish_reasons: Counts,
    #[serde(default, skip_serializing_if = "Counts::is_empty")]
    pub query_types: Counts,
    #[serde(default, skip_serializing_if = "Counts::is_empty")]
    pub response_models: Counts,
}

impl SliceSketch {
    /// A slice known only by its counts (windows stored before slice sketches existed).
    pub fn counts(requests: u64, errors: u64) -> Self {
        Self {
            requests,
            errors,
            ..Self::default()
        }
    }

    pub fn merge(&mut self, o: &SliceSketch) {
        self.requests += o.requests;
        self.errors += o.errors;
        for (a, b) in self.hists.iter_mut().zip(&o.hists) {
            a.merge(b);
        }
        for (name, m) in &o.judge {
            self.judge.entry(name.clone()).or_default().merge(m);
        }
        for i in 0..3 {
            self.feedback[i] += o.feedback[i];
        }
        self.error_types.merge(&o.error_types);
        self.http_statuses.merge(&o.http_statuses);
        self.finish_reasons.merge(&o.finish_reasons);
        self.query_types.merge(&o.query_types);
        self.response_models.merge(&o.response_models);
    }
}

/// Checkpoints written before slice sketches held `[requests, errors]` pairs.
pub(crate) fn slices_compat<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<SliceSketch>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Pair(u64, u64),
        Sketch(Box<SliceSketch>),
    }
    let v: Vec<Repr> = Vec::deserialize(d)?;
    Ok(v.into_iter()
        .map(|r| match r {
            Repr::Pair(r, e) => SliceSketch::counts(r, e),
            Repr::Sketch(s) => *s,
        })
        .collect())
}

/// A histogram as (bucket value, count) pairs, ascending, on HDR's bucket boundaries: the
/// value is the highest value equivalent to the bucket, in histogram units.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseHist {
    pub buckets: Vec<(u64, u64)>,
    /// Sum of the recorded values in the field's unit (exact, for the mean).
    pub sum: f64,
}

impl SparseHist {
    pub fn from_metric(m: &MetricSketch) -> Self {
        let buckets = m
            .hist
            .iter_recorded()
            .map(|v| (v.value_iterated_to(), v.count_at_value()))
            .collect();
        Self {
            buckets,
            sum: if m.count() > 0 { m.sum } else { 0.0 },
        }
    }

    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.1).sum()
    }

    /// Adds one value already resolved to its bucket (`bucket` as in [`Self::buckets`]).
    pub fn add(&mut self, bucket: u64, value: f64) {
        self.sum += value;
        match self.buckets.binary_search_by_key(&bucket, |b| b.0) {
            Ok(i) => self.buckets[i].1 += 1,
            Err(i) => self.buckets.insert(i, (bucket, 1)),
        }
    }

    pub fn merge(&mut self, o: &SparseHist) {
        self.sum += o.sum;
        if o.buckets.is_empty() {
            return;
        }
        if self.buckets.is_empty() {
            self.buckets = o.buckets.clone();
            return;
        }
        let mut out = Vec::with_capacity(self.buckets.len() + o.buckets.len());
        let (mut i, mut j) = (0, 0);
        let (a, b) = (&self.buckets, &o.buckets);
        while i < a.len() && j < b.len() {
            match a[i].0.cmp(&b[j].0) {
                std::cmp::Ordering::Less => {
                    out.push(a[i]);
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    out.push(b[j]);
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    out.push((a[i].0, a[i].1 + b[j].1));
                    i += 1;
                    j += 1;
                }
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&b[j..]);
        self.buckets = out;
    }

    /// The bucket value holding the sample of 1-based `rank`.
    pub fn value_at_rank(&self, rank: u64) -> Option<u64> {
        let mut seen = 0;
        for (v, c) in &self.buckets {
            seen += c;
            if seen >= rank {
                return Some(*v);
            }
        }
        None
    }

    /// Quantile in histogram units, HDR's definition: the bucket holding rank ⌈q·n⌉ (≥ 1).
    pub fn quantile_units(&self, q: f64) -> Option<u64> {
        let n = self.count();
        if n == 0 {
            return None;
        }
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        self.value_at_rank(rank)
    }

    /// Samples certainly above `units`: those in buckets whose lowest value is above it. A
    /// bucket spans at most [`HIST_RELATIVE_ERROR`] of its highest value, so a bucket counts
    /// when `highest · (1 − 1/128) > units` — conservative by at most one bucket width.
    pub fn count_above(&self, units: f64) -> u64 {
        self.buckets
            .iter()
            .rev()
            .take_while(|(v, _)| *v as f64 * (1.0 - HIST_RELATIVE_ERROR) > units)
            .map(|(_, c)| c)
            .sum()
    }
}

impl WindowSketch {
    pub fn metric(&self, m: Metric) -> &MetricSketch {
        &self.metrics[m.index()]
    }

    pub fn ok_count(&self) -> u64 {
        self.event_count - self.error_count
    }

    pub fn error_rate(&self) -> f64 {
        if self.event_count == 0 {
            0.0
        } else {
            self.error_count as f64 / self.event_count as f64
        }
    }

    /// Cache reads / input tokens (both summed over the window's requests).
    pub fn cache_read_ratio(&self) -> Option<f64> {
        let input = self.metrics[Metric::InputTokens.index()].sum;
        (self.metrics[Metric::InputTokens.index()].count() > 0 && input > 0.0)
            .then(|| self.cached_input_tokens_total as f64 / input)
    }

    /// Cost per request that has a cost.
    pub fn cost_per_request(&self) -> Option<f64> {
        self.metrics[Metric::CostUsd.index()].mean()
    }

    pub fn feedback_count(&self, f: Feedback) -> u64 {
        self.feedback[feedback_index(f)]
    }

    /// Adds one request event. `partition`/`offset` record provenance.
    pub fn observe(&mut self, ev: &RequestEvent, partition: i32, offset: i64) {
        self.event_count += 1;
        if ev.status == Status::Error {
            self.error_count += 1;
        }
        for m in Metric::ALL {
            if let Some(v) = m.value(ev) {
                self.metrics[m.index()].record(m, v);
            }
        }
        if let Some(t) = &ev.error_type {
            self.error_types.add(t, 1);
        }
        if let Some(s) = ev.http_status {
            let mut buf = itoa_u16(s);
            self.http_statuses.add(buf.as_str(), 1);
            buf.clear();
        }
        if let Some(f) = &ev.finish_reason {
            self.finish_reasons.add(f, 1);
        }
        if let Some(q) = &ev.query_type {
            self.query_types.add(q, 1);
        }
        if let Some(m) = &ev.response_model {
            self.response_models.add(m, 1);
        }
        if let Some(f) = &ev.system_fingerprint {
            self.system_fingerprints.add(f, 1);
        }
        self.retries_total += u64::from(ev.retries.unwrap_or(0));
        self.cached_input_tokens_total += ev.cached_input_tokens.unwrap_or(0);
        self.cache_creation_tokens_total += ev.cache_creation_input_tokens.unwrap_or(0);
        self.reasoning_tokens_total += ev.reasoning_tokens.unwrap_or(0);
        self.cache_savings_usd += ev.cache_savings_usd.unwrap_or(0.0);
        self.near_context_count += u64::from(ev.near_context_limit);
        if let Some(input) = ev.input_tokens.filter(|n| *n > 0) {
            let cached = ev.cached_input_tokens.unwrap_or(0).min(input);
            self.cache_read_share.push(cached as f64 / input as f64);
        }
        self.cost_estimated_count += u64::from(ev.cost_estimated);
        for (name, v) in &ev.judge_scores {
            self.add_judge(name, *v);
        }
        if let Some(f) = ev.feedback {
            self.feedback[feedback_index(f)] += 1;
        }
        self.note_offset(partition, offset);
    }

    /// Adds a judge score that arrived on its own message.
    pub fn add_late_judge(
        &mut self,
        name: &str,
        v: Option<f64>,
        label: Option<&str>,
        partition: i32,
        offset: i64,
    ) {
        if let Some(v) = v {
            self.add_judge(name, v);
        }
        if let Some(l) = label {
            self.judge_labels.add(&format!("{name}={l}"), 1);
        }
        self.late_scores += 1;
        self.note_offset(partition, offset);
    }

    /// Adds feedback that arrived on its own message.
    pub fn add_late_feedback(&mut self, f: Feedback, partition: i32, offset: i64) {
        self.feedback[feedback_index(f)] += 1;
        self.late_scores += 1;
        self.note_offset(partition, offset);
    }

    fn add_judge(&mut self, name: &str, v: f64) {
        if let Some(m) = self.judge.get_mut(name) {
            m.push(v);
        } else if self.judge.len() < MAX_JUDGE_NAMES {
            let mut m = Moments::default();
            m.push(v);
            self.judge.insert(name.to_string(), m);
        } else {
            self.judge_names_dropped += 1;
        }
    }

    /// Counts a request, already [`Self::observe`]d, in slice `index` of the window.
    pub fn add_to_slice(&mut self, index: usize, ev: &RequestEvent) {
        if self.slices.len() <= index {
            self.slices.resize(index + 1, SliceSketch::default());
        }
        let slice = &mut self.slices[index];
        slice.requests += 1;
        slice.errors += u64::from(ev.status == Status::Error);
        for m in Metric::ALL {
            if let Some(v) = m.value(ev) {
                let units = (v * m.scale()).round() as u64;
                let h = &self.metrics[m.index()].hist;
                let bucket = h.highest_equivalent(units.min(h.max()));
                slice.hists[m.index()].add(bucket, v);
            }
        }
        for (name, v) in &ev.judge_scores {
            if slice.judge.len() < MAX_JUDGE_NAMES || slice.judge.contains_key(name) {
                slice.judge.entry(name.clone()).or_default().push(*v);
            }
        }
        if let Some(f) = ev.feedback {
            slice.feedback[feedback_index(f)] += 1;
        }
        if let Some(t) = &ev.error_type {
            slice.error_types.add(t, 1);
        }
        if let Some(s) = ev.http_status {
            slice.http_statuses.add(itoa_u16(s).as_str(), 1);
        }
        if let Some(f) = &ev.finish_reason {
            slice.finish_reasons.add(f, 1);
        }
        if let Some(q) = &ev.query_type {
            slice.query_types.add(q, 1);
        }
        if let Some(m) = &ev.response_model {
            slice.response_models.add(m, 1);
        }
    }

    pub fn note_offset(&mut self, partition: i32, offset: i64) {
        let e = self.offsets.entry(partition).or_insert((offset, offset));
        e.0 = e.0.min(offset);
        e.1 = e.1.max(offset);
    }

    /// Folds `other` (same series, same or adjacent window) into `self`, exactly.
    pub fn merge(&mut self, other: &WindowSketch) {
        self.event_count += other.event_count;
        self.error_count += other.error_count;
        for (a, b) in self.metrics.iter_mut().zip(&other.metrics) {
            a.merge(b);
        }
        self.error_types.merge(&other.error_types);
        self.http_statuses.merge(&other.http_statuses);
        self.finish_reasons.merge(&other.finish_reasons);
        self.query_types.merge(&other.query_types);
        self.response_models.merge(&other.response_models);
        self.system_fingerprints.merge(&other.system_fingerprints);
        self.retries_total += other.retries_total;
        self.cached_input_tokens_total += other.cached_input_tokens_total;
        self.cache_creation_tokens_total += other.cache_creation_tokens_total;
        self.reasoning_tokens_total += other.reasoning_tokens_total;
        self.cache_savings_usd += other.cache_savings_usd;
        self.near_context_count += other.near_context_count;
        self.cache_read_share.merge(&other.cache_read_share);
        self.judge_labels.merge(&other.judge_labels);
        self.cost_estimated_count += other.cost_estimated_count;
        for (name, m) in &other.judge {
            if let Some(mine) = self.judge.get_mut(name) {
                mine.merge(m);
            } else if self.judge.len() < MAX_JUDGE_NAMES {
                self.judge.insert(name.clone(), *m);
            } else {
                self.judge_names_dropped += m.n;
            }
        }
        self.judge_names_dropped += other.judge_names_dropped;
        for i in 0..3 {
            self.feedback[i] += other.feedback[i];
        }
        self.late_scores += other.late_scores;
        if self.slices.len() < other.slices.len() {
            self.slices
                .resize(other.slices.len(), SliceSketch::default());
        }
        for (a, b) in self.slices.iter_mut().zip(&other.slices) {
            a.merge(b);
        }
        for (p, (lo, hi)) in &other.offsets {
            self.note_offset(*p, *lo);
            self.note_offset(*p, *hi);
        }
    }
}

/// Checkpoints carry histograms as base64 of their HDR V2 encoding.
mod hist_base64 {
    use base64::Engine;
    use hdrhistogram::serialization::{Serializer as _, V2Serializer};
    use hdrhistogram::Histogram;
    use serde::{de, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(h: &Histogram<u64>, s: S) -> Result<S::Ok, S::Error> {
        let mut bytes = Vec::new();
        V2Serializer::new()
            .serialize(h, &mut bytes)
            .map_err(serde::ser::Error::custom)?;
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Histogram<u64>, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(de::Error::custom)?;
        let mut h: Histogram<u64> = super::deserialize_hist(&bytes).map_err(de::Error::custom)?;
        // Restored histograms keep growing like fresh ones.
        h.auto(true);
        Ok(h)
    }
}

pub(crate) fn feedback_index(f: Feedback) -> usize {
    match f {
        Feedback::Negative => 0,
        Feedback::Neutral => 1,
        Feedback::Positive => 2,
    }
}

/// Formats an HTTP status without allocating on the heap.
fn itoa_u16(v: u16) -> SmallStr {
    let mut s = SmallStr::default();
    let mut buf = [0u8; 5];
    let mut i = buf.len();
    let mut v = v;
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    s.len = buf.len() - i;
    s.buf[..s.len].copy_from_slice(&buf[i..]);
    s
}

#[derive(Default)]
struct SmallStr {
    buf: [u8; 5],
    len: usize,
}

impl SmallStr {
    fn as_str(&self) -> &str {
        // Only ASCII digits are written.
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
    fn clear(&mut self) {
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn ev(latency: f64, status: Status) -> RequestEvent {
        RequestEvent {
            event_id: "e".into(),
            service: "s".into(),
            request_model: "m".into(),
            latency_ms: latency,
            status,
            ..Default::default()
        }
    }

    #[test]
    fn quantiles_are_within_stated_precision_of_exact() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let mut s = WindowSketch::default();
        let mut xs = Vec::new();
        for i in 0..10_000 {
            let x: f64 = (rng.random::<f64>() * 8.0).exp() * 1.7; // 1.7 ms .. 5 s, skewed
            xs.push((x * 1000.0).round() / 1000.0);
            s.observe(&ev(*xs.last().unwrap(), Status::Ok), 0, i);
        }
        xs.sort_by(f64::total_cmp);
        let m = s.metric(Metric::LatencyMs);
        for q in [0.5, 0.9, 0.99, 0.999] {
            let rank = ((q * xs.len() as f64).ceil() as usize).max(1);
            let exact = xs[rank - 1];
            let got = m.quantile(Metric::LatencyMs, q).unwrap();
            assert!(got >= exact - 1e-9, "q={q}: {got} < exact {exact}");
            assert!(
                got <= exact * (1.0 + HIST_RELATIVE_ERROR) + 0.001,
                "q={q}: {got} vs exact {exact}"
            );
        }
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        assert!((m.mean().unwrap() - mean).abs() < 1e-9);
        assert_eq!(m.min, xs[0]);
        assert_eq!(m.max, xs[xs.len() - 1]);
    }

    #[test]
    fn merge_equals_observing_everything_in_one() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let (mut a, mut b, mut all) = (
            WindowSketch::default(),
            WindowSketch::default(),
            WindowSketch::default(),
        );
        for i in 0..5000 {
            let mut e = ev(
                rng.random_range(1.0..3000.0),
                if rng.random_bool(0.05) {
                    Status::Error
                } else {
                    Status::Ok
                },
            );
            e.input_tokens = Some(rng.random_range(1..50_000));
            e.cost_usd = Some(rng.random_range(0.0..0.5));
            e.error_type =
                (e.status == Status::Error).then(|| format!("err{}", rng.random_range(0..3)));
            e.judge_scores = vec![("faith".into(), rng.random())];
            e.feedback = Some(Feedback::from_i64(rng.random_range(-1..=1)).unwrap());
            e.http_status = Some(if e.status == Status::Error { 500 } else { 200 });
            let target = if i % 3 == 0 { &mut a } else { &mut b };
            target.observe(&e, (i % 3) as i32, i);
            all.observe(&e, (i % 3) as i32, i);
        }
        a.merge(&b);
        assert_eq!(a.event_count, all.event_count);
        assert_eq!(a.error_count, all.error_count);
        assert_eq!(a.error_types, all.error_types);
        assert_eq!(a.http_statuses, all.http_statuses);
        assert_eq!(a.feedback, all.feedback);
        assert_eq!(a.offsets, all.offsets);
        for m in Metric::ALL {
            assert_eq!(a.metric(m).hist, all.metric(m).hist, "{m:?}");
            assert!((a.metric(m).sum - all.metric(m).sum).abs() < 1e-6);
        }
        let (ja, jall) = (a.judge["faith"], all.judge["faith"]);
        assert_eq!(ja.n, jall.n);
        assert!((ja.mean - jall.mean).abs() < 1e-12);
        assert!((ja.m2 - jall.m2).abs() < 1e-9);
    }

    #[test]
    fn moments_match_two_pass_formula() {
        let xs = [0.2, 0.9, 0.4, 0.4, 1.0, 0.75, 0.1];
        let mut m = Moments::default();
        xs.iter().for_each(|x| m.push(*x));
        let mean = xs.iter().sum::<f64>() / 7.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 6.0;
        assert!((m.mean - mean).abs() < 1e-15);
        assert!((m.variance().unwrap() - var).abs() < 1e-15);
    }

    #[test]
    fn histogram_serialization_round_trips() {
        let mut s = WindowSketch::default();
        for i in 0..1000 {
            s.observe(&ev(i as f64 * 1.5, Status::Ok), 0, i);
        }
        let m = s.metric(Metric::LatencyMs);
        let bytes = m.serialize_hist();
        let back = deserialize_hist(&bytes).unwrap();
        assert_eq!(back, m.hist);
        assert!(bytes.len() < 4096, "{} bytes", bytes.len());
    }

    #[test]
    fn categorical_counts_are_capped() {
        let mut c = Counts::default();
        for i in 0..(MAX_CATEGORIES + 50) {
            c.add(&format!("k{i}"), 1);
        }
        assert_eq!(c.0.len(), MAX_CATEGORIES + 1);
        assert_eq!(c.get(OTHER_KEY), 50);
        assert_eq!(c.0.values().sum::<u64>(), (MAX_CATEGORIES + 50) as u64);
    }

    #[test]
    fn memory_does_not_grow_with_events() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut s = WindowSketch::default();
        let mut sizes = Vec::new();
        for round in 0..3 {
            for i in 0..100_000 {
                let mut e = ev(rng.random_range(1.0..30_000.0), Status::Ok);
                e.error_type = Some(format!("t{}", i % 500));
                s.observe(&e, 0, round * 100_000 + i);
            }
            sizes.push(s.metric(Metric::LatencyMs).hist.distinct_values());
        }
        assert_eq!(
            sizes[1], sizes[2],
            "histogram storage grew with event count: {sizes:?}"
        );
        assert!(s.error_types.0.len() <= MAX_CATEGORIES + 1);
    }

    #[test]
    fn http_status_formats() {
        assert_eq!(itoa_u16(200).as_str(), "200");
        assert_eq!(itoa_u16(7).as_str(), "7");
        assert_eq!(itoa_u16(599).as_str(), "599");
    }
}
