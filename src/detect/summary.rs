//! What one closed window (or a merge of several) leaves the detector: a [`Summary`] of the
//! metrics some rule reads, its request [`Totals`], and the [`Parts`] a merge carries.
//! Mergeable and exact: sparse HDR bucket lists on the same boundaries, so any range of
//! windows merges exactly and two histograms align bucket by bucket for the rank tests.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::window::sketch::{Counts, Metric, Moments, SliceSketch, WindowSketch};

pub use crate::window::sketch::SparseHist;

/// Two histograms' counts on their union of buckets, bucket i meaning the same in both.
pub fn align(a: &SparseHist, b: &SparseHist) -> (Vec<u64>, Vec<u64>) {
    let mut ca = Vec::with_capacity(a.buckets.len() + b.buckets.len());
    let mut cb = Vec::with_capacity(ca.capacity());
    let (mut i, mut j) = (0, 0);
    let (x, y) = (&a.buckets, &b.buckets);
    while i < x.len() || j < y.len() {
        let vx = x.get(i).map(|b| b.0).unwrap_or(u64::MAX);
        let vy = y.get(j).map(|b| b.0).unwrap_or(u64::MAX);
        if i < x.len() && (vx < vy || j >= y.len()) {
            ca.push(x[i].1);
            cb.push(0);
            i += 1;
        } else if j < y.len() && (vy < vx || i >= x.len()) {
            ca.push(0);
            cb.push(y[j].1);
            j += 1;
        } else {
            ca.push(x[i].1);
            cb.push(y[j].1);
            i += 1;
            j += 1;
        }
    }
    (ca, cb)
}

/// Two categorical counters on their union of keys.
pub fn align_counts(a: &Counts, b: &Counts) -> (Vec<u64>, Vec<u64>) {
    let keys: BTreeSet<&String> = a.0.keys().chain(b.0.keys()).collect();
    keys.into_iter().map(|k| (a.get(k), b.get(k))).unzip()
}

/// Which parts of a [`Summary`] a merge carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// Bit i: the histogram of `Metric` i.
    pub hists: u8,
    /// The categorical counters.
    pub counts: bool,
    pub judge: bool,
}

impl Parts {
    pub const ALL: Parts = Parts {
        hists: 0b1_1111,
        counts: true,
        judge: true,
    };
    pub const COUNTS_ONLY: Parts = Parts {
        hists: 0,
        counts: false,
        judge: false,
    };
}

/// What the detector keeps of one series over one window (or a merged range of windows).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub requests: u64,
    pub errors: u64,
    /// Indexed by [`Metric`]; `None` for metrics no rule reads.
    pub hists: [Option<SparseHist>; 5],
    pub error_types: Counts,
    pub http_statuses: Counts,
    pub finish_reasons: Counts,
    pub query_types: Counts,
    pub response_models: Counts,
    /// `system_fingerprint` counts (windows only: no rule reads them per slice).
    #[serde(default, skip_serializing_if = "Counts::is_empty")]
    pub system_fingerprints: Counts,
    pub judge: BTreeMap<String, Moments>,
    /// Feedback counts: negative, neutral, positive.
    pub feedback: [u64; 3],
    /// Sums the cost and cache signals read (exact, whatever histograms are kept).
    #[serde(default)]
    pub totals: Totals,
    /// The start of the earliest window or slice with requests merged into this summary
    /// (set by the range reads): how long an instance has had traffic inside a range, so
    /// rates of a series younger than the range are not diluted over all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since_ms: Option<i64>,
}

/// Exact per-window sums for the cost, budget, context and cache signals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Totals {
    pub cost_usd: f64,
    pub input_tokens: u64,
    pub cached_input_tokens: u64,
    pub cache_savings_usd: f64,
    /// Requests near their model's context window.
    pub near_context: u64,
    /// Per-request cached / input token shares.
    pub cache_read_share: Moments,
}

impl Totals {
    pub fn of_sketch(w: &WindowSketch) -> Self {
        Self {
            cost_usd: w.metric(Metric::CostUsd).sum,
            input_tokens: w.metric(Metric::InputTokens).sum.max(0.0) as u64,
            cached_input_tokens: w.cached_input_tokens_total,
            cache_savings_usd: w.cache_savings_usd,
            near_context: w.near_context_count,
            cache_read_share: w.cache_read_share,
        }
    }

    pub fn merge(&mut self, o: &Totals) {
        self.cost_usd += o.cost_usd;
        self.input_tokens += o.input_tokens;
        self.cached_input_tokens += o.cached_input_tokens;
        self.cache_savings_usd += o.cache_savings_usd;
        self.near_context += o.near_context;
        self.cache_read_share.merge(&o.cache_read_share);
    }

    /// Cached / input tokens; `None` without input tokens.
    pub fn cache_read_ratio(&self) -> Option<f64> {
        (self.input_tokens > 0).then(|| self.cached_input_tokens as f64 / self.input_tokens as f64)
    }
}

impl Summary {
    /// Keeps the histograms of `metrics` (indices of [`Metric`]) and everything else.
    pub fn from_sketch(w: &WindowSketch, metrics: &BTreeSet<usize>) -> Self {
        let mut hists: [Option<SparseHist>; 5] = Default::default();
        for m in Metric::ALL {
            if metrics.contains(&(m as usize)) {
                hists[m as usize] = Some(SparseHist::from_metric(w.metric(m)));
            }
        }
        Self {
            requests: w.event_count,
            errors: w.error_count,
            hists,
            error_types: w.error_types.clone(),
            http_statuses: w.http_statuses.clone(),
            finish_reasons: w.finish_reasons.clone(),
            query_types: w.query_types.clone(),
            response_models: w.response_models.clone(),
            system_fingerprints: w.system_fingerprints.clone(),
            judge: w.judge.clone(),
            feedback: w.feedback,
            totals: Totals::of_sketch(w),
            since_ms: None,
        }
    }

    /// What the detector keeps of a fast slice: the histograms of `metrics` and the rest.
    pub fn from_slice(s: &SliceSketch, metrics: &BTreeSet<usize>) -> Self {
        let mut hists: [Option<SparseHist>; 5] = Default::default();
        for m in Metric::ALL {
            if metrics.contains(&(m as usize)) {
                hists[m as usize] = Some(s.hists[m as usize].clone());
            }
        }
        Self {
            requests: s.requests,
            errors: s.errors,
            hists,
            error_types: s.error_types.clone(),
            http_statuses: s.http_statuses.clone(),
            finish_reasons: s.finish_reasons.clone(),
            query_types: s.query_types.clone(),
            response_models: s.response_models.clone(),
            system_fingerprints: Counts::default(),
            judge: s.judge.clone(),
            feedback: s.feedback,
            totals: Totals {
                cost_usd: s.hists[Metric::CostUsd as usize].sum,
                input_tokens: s.hists[Metric::InputTokens as usize].sum.max(0.0) as u64,
                ..Totals::default()
            },
            since_ms: None,
        }
    }

    /// Request and error counts only.
    pub fn counts(requests: u64, errors: u64) -> Self {
        Self {
            requests,
            errors,
            ..Self::default()
        }
    }

    pub fn merge(&mut self, o: &Summary) {
        self.merge_parts(o, Parts::ALL);
    }

    /// [`Self::merge_parts`] of the window or slice starting at `start`, which counts
    /// towards [`Self::since_ms`] when it has requests.
    pub fn merge_at(&mut self, start: i64, o: &Summary, parts: Parts) {
        self.merge_parts(o, parts);
        if o.requests > 0 {
            self.since_ms = Some(self.since_ms.map_or(start, |s| s.min(start)));
        }
    }

    /// Merges the request, error and feedback counts and the chosen `parts` of `o`.
    pub fn merge_parts(&mut self, o: &Summary, parts: Parts) {
        self.requests += o.requests;
        self.errors += o.errors;
        for i in 0..3 {
            self.feedback[i] += o.feedback[i];
        }
        self.totals.merge(&o.totals);
        self.since_ms = match (self.since_ms, o.since_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        for (m, (a, b)) in self.hists.iter_mut().zip(&o.hists).enumerate() {
            if parts.hists & (1 << m) == 0 {
                continue;
            }
            match (a.as_mut(), b) {
                (Some(a), Some(b)) => a.merge(b),
                (None, Some(b)) => *a = Some(b.clone()),
                _ => {}
            }
        }
        if parts.judge {
            for (name, m) in &o.judge {
                self.judge.entry(name.clone()).or_default().merge(m);
            }
        }
        if !parts.counts {
            return;
        }
        for (a, b) in [
            (&mut self.error_types, &o.error_types),
            (&mut self.http_statuses, &o.http_statuses),
            (&mut self.finish_reasons, &o.finish_reasons),
            (&mut self.query_types, &o.query_types),
            (&mut self.response_models, &o.response_models),
            (&mut self.system_fingerprints, &o.system_fingerprints),
        ] {
            for (k, n) in &b.0 {
                a.add(k, *n);
            }
        }
    }

    pub fn hist(&self, m: Metric) -> Option<&SparseHist> {
        self.hists[m as usize].as_ref()
    }
}
