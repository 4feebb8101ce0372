//! What the detector remembers of closed windows: compact, mergeable [`Summary`]s per series.
//!
//! A closed window's [`WindowSketch`](crate::window::sketch::WindowSketch) holds dense HDR histograms (kilobytes each); the
//! detector keeps only the metrics some rule reads, as sparse bucket lists on the same HDR
//! bucket boundaries, so any range of windows merges exactly and two histograms align bucket
//! by bucket for the rank tests. Recent windows stay at window resolution; older ones are
//! rolled up into hourly summaries (a baseline range reaching past the fine retention is
//! resolved to whole hours). Error counts per slice (`windows.slice`) feed fast rules.

use std::collections::BTreeMap;

use crate::detect::codes::{CodeField, CodeMemory};
use crate::detect::packed::{Interner, Merger, Packed};

/// Rolled-up summaries cover one hour.
pub const COARSE_MS: i64 = 3_600_000;

pub use crate::detect::summary::{align, align_counts, Parts, SparseHist, Summary, Totals};

/// Per series: recent windows, hourly roll-ups of older ones, and fast slices, each a
/// [`Packed`] summary (see [`crate::detect::packed`]: a few bytes per histogram bucket).
#[derive(Debug, Clone, Default)]
struct SeriesHistory {
    fine: BTreeMap<i64, Packed>,
    coarse: BTreeMap<i64, Packed>,
    /// Slice start → (Kafka partition, the slice's summary), by partition. Keyed by
    /// partition so a slice handed over twice (a restored checkpoint, the stored window)
    /// counts once; mostly one entry, so a vector.
    slices: BTreeMap<i64, Vec<(i32, Packed)>>,
}

impl SeriesHistory {
    fn is_empty(&self) -> bool {
        self.fine.is_empty() && self.coarse.is_empty() && self.slices.is_empty()
    }
}

/// The detector's memory of closed windows, keyed by series label values.
#[derive(Debug, Clone)]
pub struct History {
    /// Windows newer than this (behind the newest closed window) stay at window resolution.
    fine_ms: i64,
    /// Nothing older than this behind the newest closed window is kept.
    retain_ms: i64,
    /// Slices are kept this long.
    slice_retain_ms: i64,
    /// Windows starting before this were rolled up (hour aligned).
    rolled_floor: i64,
    /// Bumped whenever a window is added, rolled up or forgotten (not for slices).
    windows_version: u64,
    series: BTreeMap<Vec<String>, SeriesHistory>,
    window_ms: i64,
    /// Error codes and requests per hour over the new-code rules' baseline span.
    codes: CodeMemory,
    /// The category and judge names of the packed summaries.
    names: Interner,
    /// How long hourly roll-ups keep each histogram (by [`Metric`](crate::window::sketch::Metric)) and the judge moments
    /// (index 5); counts, totals and categories stay for `retain_ms`. See
    /// [`Self::with_part_retention`].
    part_retain_ms: Option<[i64; 6]>,
    /// Roll-ups with their midpoint before `stripped_before[p]` no longer hold part `p`.
    stripped_before: [i64; 6],
}

/// Part `p` of [`History::with_part_retention`]: a histogram (0–4) or the judge moments (5).
fn strip(s: &mut Summary, p: usize) {
    if p < 5 {
        s.hists[p] = None;
    } else {
        s.judge.clear();
    }
}

/// `into` ← `into` merged with `s`, packed again.
fn merge_packed(into: &mut Packed, s: &Summary, names: &mut Interner) {
    let mut u = into.unpack_all(names);
    u.merge(s);
    *into = Packed::pack(&u, names);
}

impl History {
    pub fn new(window_ms: i64, fine_ms: i64, retain_ms: i64, slice_retain_ms: i64) -> Self {
        Self {
            fine_ms: fine_ms.max(window_ms),
            retain_ms: retain_ms.max(window_ms),
            slice_retain_ms,
            rolled_floor: i64::MIN,
            windows_version: 0,
            series: BTreeMap::new(),
            window_ms,
            codes: CodeMemory::default(),
            names: Interner::default(),
            part_retain_ms: None,
            stripped_before: [i64::MIN; 6],
        }
    }

    /// Also remembers error codes for `retain_ms` (the new-code rules' baseline spans),
    /// merging occurrences closer than `gap_ms` (the shortest of them); see [`CodeMemory`].
    pub fn with_codes(mut self, gap_ms: i64, retain_ms: i64) -> Self {
        self.codes = CodeMemory::new(gap_ms, retain_ms);
        self
    }

    /// Keeps the histogram of metric `m` in hourly roll-ups only for `hists_ms[m]` behind the
    /// detector's clock, and the judge moments for `judge_ms`: no rule reads them further
    /// back, while counts and totals are read for the whole retention (budgets over a day,
    /// what changed since the first window). Only roll-ups are trimmed: a span shorter than
    /// the fine history and an hour is raised to that, so a roll-up never mixes trimmed and
    /// whole windows and every range a rule reads is what it was without the trimming.
    pub fn with_part_retention(mut self, hists_ms: [i64; 5], judge_ms: i64) -> Self {
        let floor = self.fine_ms + COARSE_MS;
        let mut r = [0; 6];
        for (i, v) in hists_ms
            .iter()
            .chain(std::iter::once(&judge_ms))
            .enumerate()
        {
            r[i] = (*v).max(floor);
        }
        self.part_retain_ms = Some(r);
        self
    }

    /// The error-code memory.
    pub fn codes(&self) -> &CodeMemory {
        &self.codes
    }

    /// Records the codes and requests of `s`, a window or hour `[start, end)` of `labels`,
    /// in the code memory only: the part of the history older than the windows kept.
    pub fn add_codes(&mut self, labels: &[String], start_ms: i64, end_ms: i64, s: &Summary) {
        let codes = s
            .error_types
            .0
            .keys()
            .map(|c| (CodeField::ErrorType, c.as_str()))
            .chain(
                s.http_statuses
                    .0
                    .keys()
                    .map(|c| (CodeField::HttpStatus, c.as_str())),
            );
        self.codes
            .observe(labels, start_ms, end_ms, s.requests, codes);
    }

    /// Takes the retention settings of `other` (a rule reload), keeping the data.
    pub fn set_retention_like(&mut self, other: &History) {
        self.fine_ms = other.fine_ms;
        self.retain_ms = other.retain_ms;
        self.slice_retain_ms = other.slice_retain_ms;
        self.part_retain_ms = other.part_retain_ms;
        if self.part_retain_ms.is_none() {
            self.stripped_before = [i64::MIN; 6];
        }
        self.codes.set_retention_like(&other.codes);
    }

    /// Adds a closed window of one series (partial rows of one window merge).
    pub fn add_window(&mut self, labels: &[String], start_ms: i64, s: Summary) {
        self.windows_version += 1;
        self.add_codes(labels, start_ms, start_ms + self.window_ms, &s);
        let h = self.series.entry(labels.to_vec()).or_default();
        let (map, key) = if start_ms < self.rolled_floor {
            (&mut h.coarse, start_ms.div_euclid(COARSE_MS) * COARSE_MS)
        } else {
            (&mut h.fine, start_ms)
        };
        let mut s = s;
        let coarse = start_ms < self.rolled_floor;
        if coarse {
            // A late window into a roll-up already trimmed: the trimmed parts are never read.
            let mid = key + COARSE_MS / 2;
            for (p, before) in self.stripped_before.iter().enumerate() {
                if mid < *before {
                    strip(&mut s, p);
                }
            }
        }
        match map.get_mut(&key) {
            Some(e) => merge_packed(e, &s, &mut self.names),
            None => {
                map.insert(key, Packed::pack(&s, &mut self.names));
            }
        }
    }

    /// Adds a fast slice of one series.
    pub fn add_slice(&mut self, labels: &[String], start_ms: i64, partition: i32, s: Summary) {
        let h = self.series.entry(labels.to_vec()).or_default();
        let p = Packed::pack(&s, &mut self.names);
        let parts = h.slices.entry(start_ms).or_default();
        match parts.binary_search_by_key(&partition, |e| e.0) {
            Ok(i) => parts[i].1 = p,
            Err(i) => parts.insert(i, (partition, p)),
        }
    }

    /// Adds late scores to a slice kept from `partition` (nothing when it is no longer kept).
    pub fn merge_slice(&mut self, labels: &[String], start_ms: i64, partition: i32, s: &Summary) {
        if let Some(slice) = self
            .series
            .get_mut(labels)
            .and_then(|h| h.slices.get_mut(&start_ms))
            // A row without a partition (-1: slice-only corrections written before they
            // named theirs) goes to the slice's first partition, mostly its only one.
            .and_then(|p| {
                let i = if partition < 0 {
                    Some(0)
                } else {
                    p.iter().position(|e| e.0 == partition)
                };
                i.and_then(|i| p.get_mut(i))
            })
        {
            merge_packed(&mut slice.1, s, &mut self.names);
        }
    }

    /// Rolls up and forgets by the detector's clock (the end of the newest closed window).
    pub fn maintain(&mut self, now_ms: i64) {
        let floor = (now_ms - self.fine_ms).div_euclid(COARSE_MS) * COARSE_MS;
        let keep_from = now_ms - self.retain_ms;
        let slices_from = now_ms - self.slice_retain_ms;
        if floor > self.rolled_floor {
            self.rolled_floor = floor;
        }
        let rolled_floor = self.rolled_floor;
        let mut changed = false;
        let names = &mut self.names;
        for h in self.series.values_mut() {
            while let Some(e) = h.fine.first_entry() {
                if *e.key() >= rolled_floor {
                    break;
                }
                let (start, s) = e.remove_entry();
                let hour = start.div_euclid(COARSE_MS) * COARSE_MS;
                let s = s.unpack_all(names);
                match h.coarse.get_mut(&hour) {
                    Some(c) => merge_packed(c, &s, names),
                    None => {
                        let mut c = Summary::default();
                        c.merge(&s);
                        h.coarse.insert(hour, Packed::pack(&c, names));
                    }
                }
                changed = true;
            }
            while let Some(e) = h.coarse.first_entry() {
                if *e.key() + COARSE_MS > keep_from {
                    break;
                }
                e.remove();
                changed = true;
            }
            while let Some(e) = h.slices.first_entry() {
                if *e.key() >= slices_from {
                    break;
                }
                e.remove();
            }
        }
        if let Some(retain) = self.part_retain_ms {
            for (p, r) in retain.iter().enumerate() {
                let before = now_ms - r;
                let from = self.stripped_before[p];
                if before <= from {
                    continue;
                }
                // Roll-ups whose midpoint crossed `now − r` since the last trim.
                let lo = from.saturating_sub(COARSE_MS / 2);
                let hi = before - COARSE_MS / 2;
                for h in self.series.values_mut() {
                    for (_, c) in h.coarse.range_mut(lo..hi) {
                        let mut u = c.unpack_all(names);
                        strip(&mut u, p);
                        *c = Packed::pack(&u, names);
                    }
                }
                self.stripped_before[p] = before;
            }
        }
        self.series.retain(|_, h| !h.is_empty());
        self.codes.maintain(now_ms);
        if changed {
            self.windows_version += 1;
        }
    }

    /// Windows starting before this go straight into hourly roll-ups.
    pub fn rolled_floor(&self) -> i64 {
        self.rolled_floor
    }

    /// The first window start at or after `t`: ranges `[from, to)` of windows (and of
    /// roll-ups, counted at their midpoints) hold the same ones as `[align_up(from),
    /// align_up(to))`. `t` itself when roll-up midpoints are not window starts.
    pub fn align_up(&self, t: i64) -> i64 {
        let w = self.window_ms;
        if w <= 0 || (COARSE_MS / 2) % w != 0 {
            return t;
        }
        t.div_euclid(w) * w + if t.rem_euclid(w) == 0 { 0 } else { w }
    }

    /// Changes whenever the windows (not the slices) change: what a cached baseline keys on.
    pub fn windows_version(&self) -> u64 {
        self.windows_version
    }

    /// The start of the oldest window (or hour) kept of `labels`.
    pub fn first_window(&self, labels: &[String]) -> Option<i64> {
        let h = self.series.get(labels)?;
        let fine = h.fine.keys().next().copied();
        let coarse = h.coarse.keys().next().copied();
        match (fine, coarse) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Every series with history.
    pub fn series(&self) -> impl Iterator<Item = &Vec<String>> {
        self.series.keys()
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// The merged summary of `labels` over windows starting in `[from, to)`; hourly roll-ups
    /// count when their midpoint is in the range. `None` when nothing is recorded there.
    pub fn range(&self, labels: &[String], from: i64, to: i64) -> Option<Summary> {
        self.range_of(labels, from, to, Parts::ALL)
    }

    /// [`Self::range`] merging only `parts` (counts of requests, errors and feedback always):
    /// a rule reads one histogram or the judge moments, not everything.
    pub fn range_of(&self, labels: &[String], from: i64, to: i64, parts: Parts) -> Option<Summary> {
        let h = self.series.get(labels)?;
        let mut out = Merger::default();
        for (start, s) in h.coarse.range(..to) {
            let mid = start + COARSE_MS / 2;
            if mid >= from && mid < to {
                out.add(*start, s, parts, &self.names);
            }
        }
        for (start, s) in h.fine.range(from..to) {
            out.add(*start, s, parts, &self.names);
        }
        out.finish()
    }

    /// The merged `parts` of `labels` over slices starting in `[from, to)`.
    pub fn slice_range(
        &self,
        labels: &[String],
        from: i64,
        to: i64,
        parts: Parts,
    ) -> Option<Summary> {
        let h = self.series.get(labels)?;
        let mut out = Merger::default();
        for (start, p) in h.slices.range(from..to) {
            for (_, s) in p {
                out.add(*start, s, parts, &self.names);
            }
        }
        out.finish()
    }

    /// [`Self::slice_range`] for the nested ranges `[to − h, to)` of every `h` in `horizons`
    /// (ascending), merging each slice once: newest first, the running sum is taken at each
    /// horizon's start.
    pub fn nested_slice_ranges(
        &self,
        labels: &[String],
        to: i64,
        horizons: &[i64],
        parts: Parts,
    ) -> Vec<Option<Summary>> {
        let mut out = vec![None; horizons.len()];
        let (Some(h), Some(longest)) = (self.series.get(labels), horizons.last()) else {
            return out;
        };
        let mut acc = Merger::default();
        let mut next = 0;
        for (start, p) in h.slices.range(to - longest..to).rev() {
            while next < horizons.len() && *start < to - horizons[next] {
                out[next] = acc.current();
                next += 1;
            }
            for (_, s) in p {
                acc.add(*start, s, parts, &self.names);
            }
        }
        while next + 1 < horizons.len() {
            out[next] = acc.current();
            next += 1;
        }
        // The longest range takes the sum itself (no copy).
        if next < horizons.len() {
            out[next] = acc.finish();
        }
        out
    }

    /// The steps of `labels` starting in `[from, to)` in time order — slices (merged over
    /// partitions) or fine windows — each with only `parts` (for the change-point estimate).
    pub fn steps(
        &self,
        labels: &[String],
        from: i64,
        to: i64,
        parts: Parts,
        slices: bool,
    ) -> Vec<(i64, Summary)> {
        let Some(h) = self.series.get(labels) else {
            return Vec::new();
        };
        let merged = |start: &i64, xs: &mut dyn Iterator<Item = &Packed>| {
            let mut s = Summary::default();
            xs.for_each(|x| s.merge_parts(&x.unpack(parts, &self.names), parts));
            (*start, s)
        };
        if slices {
            h.slices
                .range(from..to)
                .map(|(start, p)| merged(start, &mut p.iter().map(|e| &e.1)))
                .collect()
        } else {
            h.fine
                .range(from..to)
                .map(|(start, x)| merged(start, &mut std::iter::once(x)))
                .collect()
        }
    }

    /// Approximate heap use: the packed summaries, their map entries (key and box, with a
    /// third for B-tree slack), the series keys and the names.
    pub fn approx_bytes(&self) -> usize {
        let mut b = self.codes.approx_bytes() + self.names.approx_bytes();
        for (key, h) in &self.series {
            b += 64 + key.iter().map(|k| 24 + k.len()).sum::<usize>();
            for p in h.fine.values().chain(h.coarse.values()) {
                b += 32 + p.len();
            }
            for parts in h.slices.values() {
                b += 32 + 24 * parts.capacity();
                b += parts.iter().map(|(_, p)| p.len()).sum::<usize>();
            }
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::RequestEvent;
    use crate::window::sketch::{Metric, WindowSketch};
    use std::collections::BTreeSet;

    fn sketch(latencies: &[f64], errors: u64) -> WindowSketch {
        let mut w = WindowSketch::default();
        for (i, l) in latencies.iter().enumerate() {
            let ev = RequestEvent {
                latency_ms: *l,
                status: if (i as u64) < errors {
                    crate::event::Status::Error
                } else {
                    crate::event::Status::Ok
                },
                ..Default::default()
            };
            w.observe(&ev, 0, i as i64);
        }
        w
    }

    #[test]
    fn nested_slice_ranges_equal_each_range_merged_alone() {
        let mut h = History::new(60_000, 7_200_000, 7_200_000, 600_000);
        let labels = vec!["chat".to_string()];
        for k in 0..40i64 {
            for part in 0..2 {
                let lat: Vec<f64> = (0..(k % 5 + 1))
                    .map(|i| 100.0 + (k * 37 + i) as f64)
                    .collect();
                let s = Summary::from_sketch(&sketch(&lat, (k % 3) as u64), &[0usize].into());
                h.add_slice(&labels, k * 10_000, part, s);
            }
        }
        let horizons = [30_000, 60_000, 120_000, 300_000, 600_000];
        for to in [250_000, 400_000, 405_000] {
            let nested = h.nested_slice_ranges(&labels, to, &horizons, Parts::ALL);
            for (hz, got) in horizons.iter().zip(nested) {
                let want = h.slice_range(&labels, to - hz, to, Parts::ALL);
                let (got, want) = (
                    got.map(|s| (s.requests, s.errors, s.hists[0].clone().map(|x| x.buckets))),
                    want.map(|s| (s.requests, s.errors, s.hists[0].clone().map(|x| x.buckets))),
                );
                assert_eq!(got, want, "horizon {hz} ending {to}");
            }
        }
        assert_eq!(
            h.nested_slice_ranges(&["x".into()], 0, &horizons, Parts::ALL),
            vec![None; 5]
        );
    }

    #[test]
    fn sparse_quantiles_match_hdr() {
        let lat: Vec<f64> = (1..=1000).map(|i| i as f64 * 1.7).collect();
        let w = sketch(&lat, 0);
        let keep: BTreeSet<usize> = [0].into();
        let s = Summary::from_sketch(&w, &keep);
        let h = s.hist(Metric::LatencyMs).unwrap();
        assert_eq!(h.count(), 1000);
        for q in [0.5, 0.9, 0.99, 0.999] {
            let hdr = w.metric(Metric::LatencyMs).hist.value_at_quantile(q);
            assert_eq!(h.quantile_units(q), Some(hdr), "q={q}");
        }
    }

    #[test]
    fn merge_equals_sketch_merge() {
        let a = sketch(&[1.0, 5.0, 100.0, 100.0], 1);
        let b = sketch(&[5.0, 7.0, 2000.0], 2);
        let keep: BTreeSet<usize> = [0].into();
        let mut sa = Summary::from_sketch(&a, &keep);
        sa.merge(&Summary::from_sketch(&b, &keep));
        let mut ab = a.clone();
        ab.merge(&b);
        assert_eq!(sa, Summary::from_sketch(&ab, &keep));
        assert_eq!((sa.requests, sa.errors), (7, 3));
        let (x, y) = align(
            Summary::from_sketch(&a, &keep)
                .hist(Metric::LatencyMs)
                .unwrap(),
            Summary::from_sketch(&b, &keep)
                .hist(Metric::LatencyMs)
                .unwrap(),
        );
        assert_eq!(x.len(), y.len());
        assert_eq!(x.iter().sum::<u64>(), 4);
        assert_eq!(y.iter().sum::<u64>(), 3);
    }

    #[test]
    fn parts_past_their_retention_leave_the_roll_ups_and_nothing_else_changes() {
        let keep: BTreeSet<usize> = [0, 3].into();
        let labels = vec!["svc".to_string()];
        let t0 = 1_790_000_000_000 / COARSE_MS * COARSE_MS;
        let mut whole = History::new(60_000, 2 * COARSE_MS, 26 * COARSE_MS, 600_000);
        let mut trimmed = History::new(60_000, 2 * COARSE_MS, 26 * COARSE_MS, 600_000)
            .with_part_retention([4 * COARSE_MS, 0, 0, 0, 0], 0);
        for i in 0..(30 * 60) {
            let mut w = sketch(&[10.0 + (i % 7) as f64, 300.0], u64::from(i % 9 == 0));
            w.judge
                .entry("faithfulness".into())
                .or_default()
                .push(0.5 + (i % 5) as f64 / 10.0);
            for h in [&mut whole, &mut trimmed] {
                h.add_window(&labels, t0 + i * 60_000, Summary::from_sketch(&w, &keep));
                h.maintain(t0 + (i + 1) * 60_000);
            }
        }
        let now = t0 + 30 * COARSE_MS;
        // Latency is kept for 4 h, output tokens and the judge for the floor (fine history
        // and an hour): every range inside those reads the same.
        for (from, parts) in [
            (now - 4 * COARSE_MS, Parts::ALL),
            (now - 3 * COARSE_MS, Parts::ALL),
            (now - 26 * COARSE_MS, Parts::COUNTS_ONLY),
        ] {
            let (a, b) = (
                whole.range_of(&labels, from, now, parts).unwrap(),
                trimmed.range_of(&labels, from, now, parts).unwrap(),
            );
            if from >= now - 3 * COARSE_MS {
                assert_eq!(a, b, "from {}", (now - from) / COARSE_MS);
            } else {
                assert_eq!((a.requests, a.errors), (b.requests, b.errors));
                assert_eq!(a.hist(Metric::LatencyMs), b.hist(Metric::LatencyMs));
            }
        }
        // Older than that: counts and totals stay for the whole retention, the trimmed
        // parts are gone.
        let old = |h: &History| h.range(&labels, now - 20 * COARSE_MS, now - 10 * COARSE_MS);
        let (a, b) = (old(&whole).unwrap(), old(&trimmed).unwrap());
        assert_eq!(
            (a.requests, a.errors, a.totals),
            (b.requests, b.errors, b.totals)
        );
        assert!(a.hist(Metric::LatencyMs).is_some() && a.judge.contains_key("faithfulness"));
        assert!(b.hist(Metric::LatencyMs).is_none() && b.hist(Metric::OutputTokens).is_none());
        assert!(b.judge.is_empty());
        assert!(trimmed.approx_bytes() < whole.approx_bytes());
    }

    #[test]
    fn ranges_aligned_up_to_window_starts_hold_the_same_windows() {
        let keep = BTreeSet::new();
        let mut h = History::new(60_000, 2 * COARSE_MS, 26 * COARSE_MS, 600_000);
        let labels = vec!["svc".to_string()];
        let t0 = 1_790_000_000_000 / COARSE_MS * COARSE_MS;
        for i in 0..(5 * 60) {
            let w = sketch(&[10.0 + i as f64], (i % 3) as u64);
            h.add_window(&labels, t0 + i * 60_000, Summary::from_sketch(&w, &keep));
            h.maintain(t0 + (i + 1) * 60_000);
        }
        assert_eq!(h.align_up(t0 + 60_000), t0 + 60_000);
        assert_eq!(h.align_up(t0 + 60_001), t0 + 120_000);
        assert_eq!(h.align_up(t0 - 1), t0);
        // Ranges over roll-ups (midpoints) and fine windows, at every 10-second offset.
        for from in (t0..t0 + 3 * COARSE_MS).step_by(10_000 * 97) {
            for len in [600_000, COARSE_MS, 2 * COARSE_MS + 10_000] {
                let to = from + len;
                assert_eq!(
                    h.range(&labels, from, to),
                    h.range(&labels, h.align_up(from), h.align_up(to)),
                    "[{from}, {to})"
                );
            }
        }
        // Widths that do not divide half an hour are left alone.
        let odd = History::new(7 * 60_000, 2 * COARSE_MS, 26 * COARSE_MS, 600_000);
        assert_eq!(odd.align_up(t0 + 1), t0 + 1);
    }

    #[test]
    fn rolls_up_and_forgets() {
        let keep = BTreeSet::new();
        let mut h = History::new(60_000, 2 * COARSE_MS, 26 * COARSE_MS, 600_000);
        let labels = vec!["svc".to_string()];
        let t0 = 1_790_000_000_000 / COARSE_MS * COARSE_MS;
        for i in 0..(30 * 60) {
            let w = sketch(&[10.0], 0);
            h.add_window(&labels, t0 + i * 60_000, Summary::from_sketch(&w, &keep));
            h.maintain(t0 + (i + 1) * 60_000);
        }
        let now = t0 + 30 * COARSE_MS;
        // Last 10 minutes: fine windows.
        assert_eq!(h.range(&labels, now - 600_000, now).unwrap().requests, 10);
        // 24 h ending 1 h ago: hourly roll-ups by midpoint.
        let s = h
            .range(&labels, now - 25 * COARSE_MS, now - COARSE_MS)
            .unwrap();
        assert_eq!(s.requests, 24 * 60);
        // Older than the retention: gone.
        assert!(h.range(&labels, t0, t0 + COARSE_MS).is_none());
    }
}
