//! Shadow pairs: a `deployment = shadow` request and the primary request it mirrors, matched
//! by `service`, `trace_id` and `prompt_id`, reduced to the differences the paired tests of
//! a shadow analysis read.
//!
//! The index holds the first half of each pair until the other arrives (bounded: the oldest
//! halves go first past `capacity`). A completed pair counts in the window of the later of
//! its two requests, under the shadow's series labels, and is handed out once the watermark
//! passes that window, as closed windows are. Judge scores pair when both requests carry
//! them inline; scores sent later as their own message join the windows, not the pairs.
//! Pure and deterministic: no I/O.

use std::collections::{BTreeMap, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::event::{Deployment, RequestEvent, SeriesLabel};
use crate::window::sketch::{Metric, Moments, SparseHist};

/// Differences of one measure (shadow − primary) in classes of |d| for the signed-rank
/// test, and both sides' distributions for the effect.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairedMeasure {
    /// Primary (baseline) and shadow (candidate) values, in histogram units.
    pub primary: SparseHist,
    pub shadow: SparseHist,
    /// `class of |d|` → (positive, negative) counts; zero differences are not kept.
    pub diffs: BTreeMap<u32, (u64, u64)>,
    pub zeros: u64,
}

/// |d| classes: exact integers up to 1024, then 1 % wide (ties within a class share a
/// mid-rank, which keeps the test valid under the null hypothesis).
pub fn diff_class(abs: u64) -> u32 {
    if abs <= 1024 {
        abs as u32
    } else {
        1024 + ((abs as f64 / 1024.0).ln() / 1.01f64.ln()) as u32 + 1
    }
}

impl PairedMeasure {
    fn add(&mut self, primary: f64, shadow: f64, metric: Metric) {
        let scale = metric.scale();
        let units = |v: f64| (v.max(0.0) * scale).round() as u64;
        let bucket = crate::window::sketch::bucket_of;
        self.primary.add(bucket(units(primary)), primary);
        self.shadow.add(bucket(units(shadow)), shadow);
        let d = (shadow - primary).round() as i64;
        if d == 0 {
            self.zeros += 1;
            return;
        }
        let e = self.diffs.entry(diff_class(d.unsigned_abs())).or_default();
        if d > 0 {
            e.0 += 1;
        } else {
            e.1 += 1;
        }
    }

    pub fn merge(&mut self, o: &PairedMeasure) {
        self.primary.merge(&o.primary);
        self.shadow.merge(&o.shadow);
        for (k, (p, n)) in &o.diffs {
            let e = self.diffs.entry(*k).or_default();
            e.0 += p;
            e.1 += n;
        }
        self.zeros += o.zeros;
    }

    /// Pairs with both values.
    pub fn count(&self) -> u64 {
        self.primary.count()
    }

    /// The classes in ascending |d|.
    pub fn classes(&self) -> Vec<(u64, u64)> {
        self.diffs.values().copied().collect()
    }
}

/// One judge score on both sides of pairs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct PairedMoments {
    pub primary: Moments,
    pub shadow: Moments,
    /// Of shadow − primary.
    pub diff: Moments,
}

impl PairedMoments {
    pub fn merge(&mut self, o: &PairedMoments) {
        self.primary.merge(&o.primary);
        self.shadow.merge(&o.shadow);
        self.diff.merge(&o.diff);
    }
}

/// Paired statistics of a window (or, merged, of a run).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PairedStats {
    pub pairs: u64,
    pub latency: PairedMeasure,
    pub output_tokens: PairedMeasure,
    pub judge: BTreeMap<String, PairedMoments>,
}

/// What a window of pairs is handed out as (the same as a run's sum).
pub type PairedWindow = PairedStats;

impl PairedStats {
    pub fn merge(&mut self, o: &PairedStats) {
        self.pairs += o.pairs;
        self.latency.merge(&o.latency);
        self.output_tokens.merge(&o.output_tokens);
        for (k, m) in &o.judge {
            self.judge.entry(k.clone()).or_default().merge(m);
        }
    }

    fn add(&mut self, primary: &Half, shadow: &Half) {
        self.pairs += 1;
        self.latency
            .add(primary.latency_ms, shadow.latency_ms, Metric::LatencyMs);
        if let (Some(p), Some(s)) = (primary.output_tokens, shadow.output_tokens) {
            self.output_tokens
                .add(p as f64, s as f64, Metric::OutputTokens);
        }
        for (name, s) in &shadow.judge {
            if let Some((_, p)) = primary.judge.iter().find(|(n, _)| n == name) {
                let m = self.judge.entry(name.clone()).or_default();
                m.primary.push(*p);
                m.shadow.push(*s);
                m.diff.push(s - p);
            }
        }
    }
}

/// The half of a pair that arrived first.
#[derive(Debug, Clone)]
struct Half {
    shadow: bool,
    timestamp_ms: i64,
    latency_ms: f64,
    output_tokens: Option<u64>,
    judge: Vec<(String, f64)>,
    /// The shadow's series labels (empty for a primary).
    labels: Vec<String>,
}

type PairKey = (String, String, String);

/// Matches shadow requests with their primaries and sums the pairs per window.
#[derive(Debug)]
pub struct PairIndex {
    /// Services some shadow analysis watches.
    services: Vec<String>,
    labels: Vec<SeriesLabel>,
    window_ms: i64,
    capacity: usize,
    open: HashMap<PairKey, Half>,
    order: VecDeque<PairKey>,
    /// Completed pairs by (window start, shadow labels).
    done: BTreeMap<(i64, Vec<String>), PairedStats>,
    /// Halves dropped unpaired past the capacity.
    pub evicted: u64,
    /// A second request with the same role and key (the first stays).
    pub duplicates: u64,
}

impl PairIndex {
    pub fn new(
        services: Vec<String>,
        labels: Vec<SeriesLabel>,
        window_ms: i64,
        capacity: usize,
    ) -> Self {
        Self {
            services,
            labels,
            window_ms,
            capacity: capacity.max(1),
            open: HashMap::new(),
            order: VecDeque::new(),
            done: BTreeMap::new(),
            evicted: 0,
            duplicates: 0,
        }
    }

    /// Halves waiting for their other half.
    pub fn open(&self) -> usize {
        self.open.len()
    }

    /// Takes in one request; returns true when it completed a pair.
    pub fn observe(&mut self, ev: &RequestEvent) -> bool {
        let Some(trace) = ev.trace_id.as_deref() else {
            return false;
        };
        if !self.services.contains(&ev.service) {
            return false;
        }
        let shadow = ev.deployment == Some(Deployment::Shadow);
        let key = (
            ev.service.clone(),
            trace.to_string(),
            ev.prompt_id.clone().unwrap_or_default(),
        );
        let half = Half {
            shadow,
            timestamp_ms: ev.timestamp_ms,
            latency_ms: ev.latency_ms,
            output_tokens: ev.output_tokens,
            judge: ev.judge_scores.clone(),
            labels: if shadow {
                self.labels
                    .iter()
                    .map(|l| ev.label(*l).to_string())
                    .collect()
            } else {
                Vec::new()
            },
        };
        match self.open.get(&key) {
            Some(first) if first.shadow != shadow => {
                let first = self.open.remove(&key).expect("present");
                let (p, s) = if shadow {
                    (&first, &half)
                } else {
                    (&half, &first)
                };
                let t = p.timestamp_ms.max(s.timestamp_ms);
                let start = t.div_euclid(self.window_ms) * self.window_ms;
                self.done
                    .entry((start, s.labels.clone()))
                    .or_default()
                    .add(p, s);
                true
            }
            Some(_) => {
                self.duplicates += 1;
                false
            }
            None => {
                self.open.insert(key.clone(), half);
                self.order.push_back(key);
                while self.open.len() > self.capacity {
                    match self.order.pop_front() {
                        Some(k) => {
                            if self.open.remove(&k).is_some() {
                                self.evicted += 1;
                            }
                        }
                        None => break,
                    }
                }
                // Keys paired meanwhile linger in `order`; drop them when it grows.
                if self.order.len() > 2 * self.capacity {
                    let open = &self.open;
                    self.order.retain(|k| open.contains_key(k));
                }
                false
            }
        }
    }

    /// Pairs of every window ending at or before `watermark_ms`: (shadow labels, window
    /// start, pairs), in window order.
    pub fn take_closed(&mut self, watermark_ms: i64) -> Vec<(Vec<String>, i64, PairedStats)> {
        let w = self.window_ms;
        let mut out = Vec::new();
        while let Some(e) = self.done.first_entry() {
            if e.key().0 + w > watermark_ms {
                break;
            }
            let ((start, labels), stats) = e.remove_entry();
            out.push((labels, start, stats));
        }
        out
    }

    /// Every completed pair (end of input).
    pub fn take_all(&mut self) -> Vec<(Vec<String>, i64, PairedStats)> {
        self.take_closed(i64::MAX - self.window_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(trace: &str, shadow: bool, ts: i64, latency: f64, judge: f64) -> RequestEvent {
        RequestEvent {
            service: "chat".into(),
            request_model: if shadow { "gpt-4.1" } else { "gpt-4o" }.into(),
            trace_id: Some(trace.into()),
            deployment: Some(if shadow {
                Deployment::Shadow
            } else {
                Deployment::Stable
            }),
            timestamp_ms: ts,
            latency_ms: latency,
            output_tokens: Some(100),
            judge_scores: vec![("faithfulness".into(), judge)],
            ..RequestEvent::default()
        }
    }

    #[test]
    fn pairs_match_by_trace_in_either_order_and_count_in_the_later_window() {
        let labels = vec![
            SeriesLabel::Service,
            SeriesLabel::RequestModel,
            SeriesLabel::Deployment,
        ];
        let mut ix = PairIndex::new(vec!["chat".into()], labels, 60_000, 100);
        assert!(!ix.observe(&ev("t1", false, 1_000, 500.0, 0.8)));
        assert!(ix.observe(&ev("t1", true, 2_000, 650.0, 0.7)));
        // Shadow first, primary in the next window.
        assert!(!ix.observe(&ev("t2", true, 59_000, 400.0, 0.9)));
        assert!(ix.observe(&ev("t2", false, 61_000, 400.0, 0.85)));
        // Unpaired, other service, no trace.
        assert!(!ix.observe(&ev("t3", false, 3_000, 1.0, 0.1)));
        let mut other = ev("t4", true, 3_000, 1.0, 0.1);
        other.service = "search".into();
        assert!(!ix.observe(&other));
        assert_eq!(ix.open(), 1);
        assert!(ix.take_closed(59_999).is_empty());
        let first = ix.take_closed(60_000);
        assert_eq!(first.len(), 1);
        let (l, start, s) = &first[0];
        assert_eq!(
            (l.as_slice(), *start),
            (
                &["chat".to_string(), "gpt-4.1".into(), "shadow".into()][..],
                0
            )
        );
        assert_eq!(s.pairs, 1);
        assert_eq!(s.latency.diffs.get(&150), Some(&(1, 0)));
        let j = s.judge["faithfulness"];
        assert!((j.diff.mean + 0.1).abs() < 1e-12);
        let second = ix.take_all();
        assert_eq!((second.len(), second[0].1), (1, 60_000));
        assert_eq!(second[0].2.latency.zeros, 1);
    }

    #[test]
    fn the_oldest_halves_are_evicted_past_the_capacity() {
        let labels = vec![SeriesLabel::Service];
        let mut ix = PairIndex::new(vec!["chat".into()], labels, 60_000, 2);
        for t in ["a", "b", "c"] {
            ix.observe(&ev(t, false, 0, 1.0, 0.5));
        }
        assert_eq!((ix.open(), ix.evicted), (2, 1));
        assert!(ix.observe(&ev("c", true, 0, 1.0, 0.5)));
        assert!(!ix.observe(&ev("b", false, 0, 1.0, 0.5)));
        assert_eq!(ix.duplicates, 1);
        assert!(!ix.observe(&ev("a", true, 0, 1.0, 0.5)), "a was evicted");
        assert_eq!(ix.open(), 2);
    }

    #[test]
    fn large_differences_share_one_percent_classes() {
        assert_eq!(diff_class(1024), 1024);
        assert!(diff_class(1025) > 1024);
        assert_eq!(diff_class(100_000), diff_class(100_500));
        assert!(diff_class(100_000) < diff_class(102_000));
    }
}
