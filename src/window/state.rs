//! Event-time tumbling windows per series, closed by a watermark.
//!
//! Pure and deterministic: the wall clock comes in as an argument, so the live daemon,
//! replays and tests run the same code. Open windows sit in a `BTreeMap` keyed by start and
//! are popped in order once the watermark passes their end (cf. Arroyo's tumbling window).
//!
//! Watermark: each partition tracks the newest event time it delivered. The watermark is the
//! oldest of those among partitions that delivered an event within `idle_timeout`, minus the
//! allowed lateness; when every partition is idle it advances with the wall clock, so a quiet
//! topic still closes its windows. It never moves backwards. An event whose window already
//! closed is late: it is still written to `events`, counted, and left out of `windows`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::event::{RequestEvent, ScoreEvent, ScoreValue};
use crate::window::responses::{LogAppend, LogError, LogRef, ResponseIndex};
use crate::window::series::{SeriesKey, SeriesMap, SeriesRegistry};
use crate::window::sketch::{SliceSketch, WindowSketch};

/// What happened to an observed request event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Observed {
    /// Counted in its window.
    Windowed,
    /// Its window had already closed.
    Late,
}

/// Why a late score could not be joined to its request: it counts as `scores_unmatched`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScoreMiss {
    /// No recent request with that `response_id` (never seen, or past `scores.join_capacity`).
    UnknownResponse,
    /// The request's window closed more than `scores.late_ttl` ago.
    Expired,
}

impl ScoreMiss {
    pub fn as_str(self) -> &'static str {
        match self {
            ScoreMiss::UnknownResponse => "unknown_response",
            ScoreMiss::Expired => "expired",
        }
    }
}

/// Where a late score went.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreJoin {
    /// Into its request's window, still open, and into its slice, not yet handed to the
    /// detector.
    Open,
    /// Into its request's open window; its slice was already handed to the detector, which
    /// adds `delta` to that slice from now on.
    OpenSliceClosed {
        slice_start_ms: i64,
        series: SeriesKey,
        delta: Box<SliceSketch>,
    },
    /// Into a correction row of its request's closed window (written with the next commit,
    /// see [`WindowState::take_corrections`]); `delta` is what the score adds, to the window
    /// and to the request's slice.
    Correction {
        start_ms: i64,
        series: SeriesKey,
        delta: Box<WindowSketch>,
    },
}

/// The detector ticks a late score counts after: the last window and slice ticks the
/// detector had evaluated when it arrived. `None` (nothing evaluated yet, or no detector):
/// every tick that reads the score's window and slice counts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct AfterTicks {
    pub window_ms: Option<i64>,
    pub slice_ms: Option<i64>,
}

/// One closed window: every series that had events in `[start_ms, end_ms)`.
#[derive(Debug, Clone)]
pub struct ClosedWindow {
    pub start_ms: i64,
    pub end_ms: i64,
    /// Sorted by series key.
    pub series: Vec<(SeriesKey, WindowSketch)>,
    /// Set for correction rows: late scores of a window already written, which count for
    /// detector ticks after this time (see [`WindowState::observe_score`]).
    pub correction_after: Option<i64>,
    /// For correction rows: the slice tick after which their slices count.
    pub correction_after_slice: Option<i64>,
}

#[derive(Debug, Clone, Copy)]
struct PartitionClock {
    /// Newest event time delivered; `None` for an assigned partition that has not delivered.
    max_event_ms: Option<i64>,
    /// Wall clock of the last event, or of the assignment.
    last_seen_wall_ms: i64,
}

/// One series in one slice whose end the fast watermark passed.
#[derive(Debug, Clone, PartialEq)]
pub struct ClosedSlice {
    pub series: SeriesKey,
    pub start_ms: i64,
    pub sketch: SliceSketch,
}

/// Counters kept by the window state, read by the metrics endpoint and the demo summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WindowStats {
    pub windowed_events: u64,
    pub late_events: u64,
    pub scores_joined: u64,
    /// Late scores of closed windows, written as correction rows.
    pub scores_corrected: u64,
    /// Late scores whose request was not found or whose window closed too long ago.
    pub scores_unmatched: u64,
    pub windows_closed: u64,
    pub series_windows_closed: u64,
}

/// The series of one window: (label values, sketch), sorted by labels.
pub type SeriesRows = Vec<(Vec<String>, WindowSketch)>;

/// Everything needed to resume a [`WindowState`] after a restart: open windows, the
/// watermark, partition clocks and the late-score index entries of open windows.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct WindowSnapshot {
    pub watermark_ms: Option<i64>,
    /// (partition, newest event time delivered).
    pub clocks: Vec<(i32, Option<i64>)>,
    /// (window start, [(series label values, sketch)]).
    pub open: Vec<(i64, SeriesRows)>,
    /// (response id hash, window start, series label values), oldest first: the join index
    /// as checkpoints before the index log saved it (read, no longer written).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub responses: Vec<(u64, i64, Vec<String>)>,
    /// How far the partition's response index log belongs to this checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_log: Option<LogRef>,
    /// Slices ending at or before this were handed to the detector.
    #[serde(default)]
    pub fast_watermark_ms: Option<i64>,
}

impl PartialEq for WindowSketch {
    fn eq(&self, other: &Self) -> bool {
        // Compared in tests through their serialized form.
        serde_json::to_string(self).ok() == serde_json::to_string(other).ok()
    }
}

/// Open windows of every series, the watermark and the series registry.
#[derive(Debug)]
pub struct WindowState {
    width_ms: i64,
    lateness_ms: i64,
    idle_ms: i64,
    open: BTreeMap<i64, SeriesMap<WindowSketch>>,
    watermark_ms: i64,
    slice_ms: i64,
    slice_lateness_ms: i64,
    /// Slices ending at or before this are closed for fast rules.
    fast_watermark_ms: i64,
    closed_slices: Vec<ClosedSlice>,
    clocks: BTreeMap<i32, PartitionClock>,
    series: SeriesRegistry,
    responses: ResponseIndex,
    responses_capacity: usize,
    /// Where the index log stood at the last [`Self::take_response_log`] (or restore).
    response_log: Option<LogRef>,
    late_ttl_ms: i64,
    /// Correction rows of this commit: (window tick, slice tick they count after, window
    /// start) → series → late scores.
    corrections: BTreeMap<(i64, i64, i64), BTreeMap<SeriesKey, WindowSketch>>,
    stats: WindowStats,
}

impl WindowState {
    pub fn new(cfg: &WindowsConfig, series: SeriesRegistry, scores: &ScoresConfig) -> Self {
        Self {
            width_ms: cfg.width.as_millis() as i64,
            lateness_ms: cfg.allowed_lateness.as_millis() as i64,
            idle_ms: cfg.idle_timeout.as_millis() as i64,
            open: BTreeMap::new(),
            watermark_ms: i64::MIN,
            slice_ms: (cfg.slice.as_millis() as i64).clamp(1, cfg.width.as_millis().max(1) as i64),
            slice_lateness_ms: cfg.slice_lateness.as_millis() as i64,
            fast_watermark_ms: i64::MIN,
            closed_slices: Vec::new(),
            clocks: BTreeMap::new(),
            series,
            responses: ResponseIndex::new(scores.join_capacity),
            responses_capacity: scores.join_capacity,
            response_log: None,
            late_ttl_ms: scores.late_ttl.as_millis() as i64,
            corrections: BTreeMap::new(),
            stats: WindowStats::default(),
        }
    }

    /// Event time up to which every window is closed; `None` before the first advance.
    pub fn watermark_ms(&self) -> Option<i64> {
        (self.watermark_ms != i64::MIN).then_some(self.watermark_ms)
    }

    pub fn stats(&self) -> WindowStats {
        self.stats
    }

    /// Event time up to which every slice is closed; `None` before the first advance.
    pub fn fast_watermark_ms(&self) -> Option<i64> {
        (self.fast_watermark_ms != i64::MIN).then_some(self.fast_watermark_ms)
    }

    /// Whether this state may still deliver data older than every other partition's: it has
    /// no watermark yet but a partition assigned within `idle_timeout`. The detector waits
    /// for such a partition rather than evaluate ticks its windows belong to.
    pub fn holds_detector(&self, now_ms: i64) -> bool {
        self.watermark_ms().is_none()
            && self
                .clocks
                .values()
                .any(|c| now_ms - c.last_seen_wall_ms < self.idle_ms)
    }

    /// Slices closed since the last call, oldest first.
    pub fn take_closed_slices(&mut self) -> Vec<ClosedSlice> {
        std::mem::take(&mut self.closed_slices)
    }

    pub fn series(&self) -> &SeriesRegistry {
        &self.series
    }

    pub fn open_windows(&self) -> usize {
        self.open.len()
    }

    /// Open series × window sketches: what memory is proportional to.
    pub fn open_sketches(&self) -> usize {
        self.open.values().map(HashMap::len).sum()
    }

    pub fn window_start(&self, ts_ms: i64) -> i64 {
        ts_ms.div_euclid(self.width_ms) * self.width_ms
    }

    /// Adds a request event from `partition` at `offset`; `now_ms` is the wall clock.
    pub fn observe(
        &mut self,
        ev: &RequestEvent,
        partition: i32,
        offset: i64,
        now_ms: i64,
    ) -> Observed {
        let clock = self.clocks.entry(partition).or_insert(PartitionClock {
            max_event_ms: None,
            last_seen_wall_ms: now_ms,
        });
        clock.max_event_ms = Some(
            clock
                .max_event_ms
                .map_or(ev.timestamp_ms, |m| m.max(ev.timestamp_ms)),
        );
        clock.last_seen_wall_ms = now_ms;

        let start = self.window_start(ev.timestamp_ms);
        if start + self.width_ms <= self.watermark_ms {
            self.stats.late_events += 1;
            return Observed::Late;
        }
        let key = self.series.key_for(ev);
        if let Some(id) = &ev.response_id {
            self.responses.insert(id, ev.timestamp_ms, &key);
        }
        let slice_start = ev.timestamp_ms.div_euclid(self.slice_ms) * self.slice_ms;
        let sketch = self.open.entry(start).or_default().entry(key).or_default();
        sketch.observe(ev, partition, offset);
        if slice_start + self.slice_ms > self.fast_watermark_ms {
            let index = ((slice_start - start) / self.slice_ms) as usize;
            sketch.add_to_slice(index, ev);
        }
        self.stats.windowed_events += 1;
        Observed::Windowed
    }

    /// The state to save in a checkpoint.
    pub fn snapshot(&self) -> WindowSnapshot {
        let mut open = Vec::with_capacity(self.open.len());
        for (start, series) in &self.open {
            let mut rows: SeriesRows = series
                .iter()
                .map(|(k, s)| (k.values().to_vec(), s.clone()))
                .collect();
            rows.sort_by(|a, b| a.0.cmp(&b.0));
            open.push((*start, rows));
        }
        WindowSnapshot {
            watermark_ms: self.watermark_ms(),
            clocks: self
                .clocks
                .iter()
                .map(|(p, c)| (*p, c.max_event_ms))
                .collect(),
            open,
            responses: Vec::new(),
            response_log: self.response_log,
            fast_watermark_ms: self.fast_watermark_ms(),
        }
    }

    /// Resumes from a checkpoint taken with [`WindowState::snapshot`]. Partition clocks count
    /// as just seen at `now_ms`.
    pub fn restore(&mut self, snap: &WindowSnapshot, now_ms: i64) {
        self.watermark_ms = snap.watermark_ms.unwrap_or(i64::MIN);
        self.fast_watermark_ms = snap
            .fast_watermark_ms
            .or(snap.watermark_ms)
            .unwrap_or(i64::MIN);
        for (p, max) in &snap.clocks {
            self.clocks.insert(
                *p,
                PartitionClock {
                    max_event_ms: *max,
                    last_seen_wall_ms: now_ms,
                },
            );
        }
        for (start, rows) in &snap.open {
            let window = self.open.entry(*start).or_default();
            for (values, sketch) in rows {
                let key = self.series.register(SeriesKey::new(values.clone()));
                window.insert(key, sketch.clone());
            }
        }
        // Slices the detector was handed before the checkpoint: hand them over again (the
        // detector keys slices by partition, so a detector that has them keeps one copy).
        let fast = self.fast_watermark_ms;
        for (start, series) in &self.open {
            for (key, sketch) in series {
                for (i, slice) in sketch.slices.iter().enumerate() {
                    let slice_start = start + i as i64 * self.slice_ms;
                    if slice.requests > 0 && slice_start + self.slice_ms <= fast {
                        self.closed_slices.push(ClosedSlice {
                            series: key.clone(),
                            start_ms: slice_start,
                            sketch: slice.clone(),
                        });
                    }
                }
            }
        }
        self.closed_slices.sort_by_key(|s| s.start_ms);
        // A checkpoint from before the index log: its entries (open windows only, by window
        // start, which stands for the request time) go into the log with the next commit.
        for (id, start, values) in &snap.responses {
            self.responses
                .insert_id(*id, *start, &SeriesKey::new(values.clone()));
        }
    }

    /// Replays the response index log the checkpoint points at (see
    /// [`crate::window::responses`]); call after [`Self::restore`].
    pub fn restore_responses(&mut self, at: LogRef, bytes: &[u8]) -> Result<(), LogError> {
        let mut index = ResponseIndex::new(self.responses_capacity());
        index.restore_log(at, bytes)?;
        // Entries of an old-format checkpoint (none when it had a log) come after.
        for (id, start, key) in self.responses.entries() {
            index.insert_id(id, start, key);
        }
        self.responses = index;
        self.response_log = Some(at);
        Ok(())
    }

    /// The log the checkpoint points at is lost or unreadable: the index starts empty (late
    /// scores of earlier requests count as unmatched) and the next commit writes a new
    /// generation, so the old file is never appended to.
    pub fn abandon_response_log(&mut self, at: LogRef) {
        self.responses.start_after_generation(at.generation);
        self.response_log = None;
    }

    fn responses_capacity(&self) -> usize {
        self.responses_capacity
    }

    /// The index log bytes for the next commit; the snapshot taken after this names them.
    pub fn take_response_log(&mut self) -> Option<LogAppend> {
        let a = self.responses.take_log()?;
        self.response_log = Some(a.log_ref());
        Some(a)
    }

    /// Correction rows gathered since the last call (late scores of closed windows), one
    /// [`ClosedWindow`] per (window, detector tick), oldest window first.
    pub fn take_corrections(&mut self) -> Vec<ClosedWindow> {
        let mut out: Vec<ClosedWindow> = std::mem::take(&mut self.corrections)
            .into_iter()
            .map(|((after, after_slice, start), series)| ClosedWindow {
                start_ms: start,
                end_ms: start + self.width_ms,
                series: series.into_iter().collect(),
                correction_after: Some(after),
                correction_after_slice: Some(after_slice),
            })
            .collect();
        out.sort_by_key(|w| (w.start_ms, w.correction_after));
        out
    }

    /// A partition was assigned: it holds the watermark back from now until it delivers an
    /// event or stays silent for `idle_timeout`.
    pub fn assign_partition(&mut self, partition: i32, now_ms: i64) {
        self.clocks.entry(partition).or_insert(PartitionClock {
            max_event_ms: None,
            last_seen_wall_ms: now_ms,
        });
    }

    /// A partition was revoked: it no longer counts toward the watermark.
    pub fn revoke_partition(&mut self, partition: i32) {
        self.clocks.remove(&partition);
    }

    /// Joins a late judge score or feedback to the window of the request it scores, and to
    /// the request's slice (what fast rules read). When that window has closed (within
    /// `scores.late_ttl`), the score goes into a correction row instead, which counts for
    /// detector ticks after `after` (see [`AfterTicks`]).
    pub fn observe_score(
        &mut self,
        s: &ScoreEvent,
        partition: i32,
        offset: i64,
        after: AfterTicks,
    ) -> Result<ScoreJoin, ScoreMiss> {
        let Some((ts, key)) = self.responses.get(&s.response_id).cloned() else {
            self.stats.scores_unmatched += 1;
            return Err(ScoreMiss::UnknownResponse);
        };
        let start = self.window_start(ts);
        let slice_start = ts.div_euclid(self.slice_ms) * self.slice_ms;
        let index = ((slice_start - start) / self.slice_ms) as usize;
        let mut slice = SliceSketch::default();
        match &s.value {
            ScoreValue::Judge { name, value, .. } => {
                if let Some(v) = value {
                    slice.judge.entry(name.clone()).or_default().push(*v);
                }
            }
            ScoreValue::Feedback(f) => {
                slice.feedback[crate::window::sketch::feedback_index(*f)] += 1
            }
        }
        let add_to_window = |sketch: &mut WindowSketch| match &s.value {
            ScoreValue::Judge { name, value, label } => {
                sketch.add_late_judge(name, *value, label.as_deref(), partition, offset)
            }
            ScoreValue::Feedback(f) => sketch.add_late_feedback(*f, partition, offset),
        };
        let add_to_slice = |sketch: &mut WindowSketch| {
            if sketch.slices.len() <= index {
                sketch.slices.resize(index + 1, SliceSketch::default());
            }
            sketch.slices[index].merge(&slice);
        };
        // Before the detector's first tick (held back by partitions that have not delivered
        // yet, or no detector at all) the score counts for every tick that reads its window
        // and slice: stored as their starts, which come before the first such tick.
        let window_tick = after.window_ms.unwrap_or(start);
        let slice_tick = after.slice_ms.unwrap_or(slice_start);
        if let Some(sketch) = self.open.get_mut(&start).and_then(|w| w.get_mut(&key)) {
            add_to_window(sketch);
            self.stats.scores_joined += 1;
            if slice_start + self.slice_ms <= self.fast_watermark_ms {
                // The slice was handed to the detector as it was: the score's slice part
                // counts from now on, so it is stored apart — in a correction row of the
                // window with only that slice part, counting after the current slice tick —
                // for a backtest to apply between the same ticks. Its window part is in the
                // window's own row.
                let mut delta = WindowSketch::default();
                add_to_slice(&mut delta);
                // The row names the score's message: its partition is the slice's, which a
                // backtest needs to add the slice part to the same slice.
                delta.note_offset(partition, offset);
                self.add_correction((window_tick, slice_tick, start), &key, &delta);
                return Ok(ScoreJoin::OpenSliceClosed {
                    slice_start_ms: slice_start,
                    series: key,
                    delta: Box::new(slice),
                });
            }
            add_to_slice(sketch);
            return Ok(ScoreJoin::Open);
        }
        let end = start + self.width_ms;
        if end.saturating_add(self.late_ttl_ms) <= self.watermark_ms {
            self.stats.scores_unmatched += 1;
            return Err(ScoreMiss::Expired);
        }
        let mut delta = WindowSketch::default();
        add_to_window(&mut delta);
        add_to_slice(&mut delta);
        self.add_correction((window_tick, slice_tick, start), &key, &delta);
        self.stats.scores_corrected += 1;
        Ok(ScoreJoin::Correction {
            start_ms: start,
            series: key,
            delta: Box::new(delta),
        })
    }

    /// Whether the newest event moved event time past a slice end or a window's closing
    /// point, so [`Self::advance`] now would close something. Checked after every event,
    /// so slices and windows close at the same place in the partition's stream however
    /// fast it is read (a replay, a catch-up) — not only on the wall-clock tick.
    pub fn advance_due(&self) -> bool {
        let mut newest = None;
        for c in self.clocks.values() {
            match c.max_event_ms {
                // A partition of this state that has not delivered holds the watermark.
                None => return false,
                Some(m) => newest = Some(newest.map_or(m, |n: i64| n.min(m))),
            }
        }
        let Some(c) = newest else {
            return false;
        };
        let fast = c
            .saturating_sub(self.slice_lateness_ms)
            .div_euclid(self.slice_ms)
            * self.slice_ms;
        let window_due = self
            .open
            .first_key_value()
            .is_some_and(|(start, _)| start + self.width_ms <= c.saturating_sub(self.lateness_ms));
        fast > self.fast_watermark_ms || window_due
    }

    /// Adds `delta` to the correction row of `key` for (window tick, slice tick, window).
    fn add_correction(&mut self, at: (i64, i64, i64), key: &SeriesKey, delta: &WindowSketch) {
        self.corrections
            .entry(at)
            .or_default()
            .entry(key.clone())
            .or_default()
            .merge(delta);
    }

    /// Recomputes the watermark at wall time `now_ms` and returns the windows it closed,
    /// oldest first.
    pub fn advance(&mut self, now_ms: i64) -> Vec<ClosedWindow> {
        let active: Vec<Option<i64>> = self
            .clocks
            .values()
            .filter(|c| now_ms - c.last_seen_wall_ms < self.idle_ms)
            .map(|c| c.max_event_ms)
            .collect();
        let candidate = if active.is_empty() {
            // Every partition idle: event time follows the wall clock from the newest event.
            self.clocks
                .values()
                .filter_map(|c| {
                    c.max_event_ms
                        .map(|m| m.saturating_add(now_ms - c.last_seen_wall_ms))
                })
                .max()
        } else if active.contains(&None) {
            // A partition was just assigned and has not delivered yet: it may hold older
            // events than anyone else, so hold the watermark until it does or goes idle.
            None
        } else {
            active.into_iter().flatten().min()
        };
        if let Some(c) = candidate {
            self.watermark_ms = self.watermark_ms.max(c.saturating_sub(self.lateness_ms));
            let fast = c
                .saturating_sub(self.slice_lateness_ms)
                .max(self.watermark_ms);
            self.close_slices_through(fast);
        }
        let mut closed = Vec::new();
        while let Some(entry) = self.open.first_entry() {
            if *entry.key() + self.width_ms > self.watermark_ms {
                break;
            }
            let (start, sketches) = entry.remove_entry();
            closed.push(self.finish(start, sketches));
        }
        if !closed.is_empty() {
            self.forget_closed();
        }
        closed
    }

    /// Hands every slice ending in `(fast watermark, to]` to [`Self::take_closed_slices`].
    fn close_slices_through(&mut self, to: i64) {
        let to = to.div_euclid(self.slice_ms) * self.slice_ms;
        if to <= self.fast_watermark_ms {
            return;
        }
        let from = self.fast_watermark_ms;
        for (start, series) in self.open.range(..to) {
            let mut rows: Vec<_> = series.iter().collect();
            rows.sort_by(|a, b| a.0.cmp(b.0));
            for (i, slice_start) in (*start..*start + self.width_ms)
                .step_by(self.slice_ms as usize)
                .enumerate()
            {
                let end = slice_start + self.slice_ms;
                if end <= from || end > to {
                    continue;
                }
                for (key, sketch) in &rows {
                    if let Some(slice) = sketch.slices.get(i) {
                        if slice.requests > 0 {
                            self.closed_slices.push(ClosedSlice {
                                series: (*key).clone(),
                                start_ms: slice_start,
                                sketch: slice.clone(),
                            });
                        }
                    }
                }
            }
        }
        self.closed_slices.sort_by_key(|s| s.start_ms);
        self.fast_watermark_ms = to;
    }

    /// Closes every open window regardless of the watermark (end of a replay or the demo).
    pub fn close_all(&mut self) -> Vec<ClosedWindow> {
        if let Some((last, _)) = self.open.last_key_value() {
            let end = *last + self.width_ms;
            self.close_slices_through(end);
        }
        let open = std::mem::take(&mut self.open);
        let closed: Vec<_> = open.into_iter().map(|(s, w)| self.finish(s, w)).collect();
        if let Some(last) = closed.last() {
            self.watermark_ms = self.watermark_ms.max(last.end_ms);
        }
        self.forget_closed();
        closed
    }

    fn finish(&mut self, start: i64, sketches: SeriesMap<WindowSketch>) -> ClosedWindow {
        let mut series: Vec<_> = sketches.into_iter().collect();
        series.sort_by(|a, b| a.0.cmp(&b.0));
        self.stats.windows_closed += 1;
        self.stats.series_windows_closed += series.len() as u64;
        ClosedWindow {
            start_ms: start,
            end_ms: start + self.width_ms,
            series,
            correction_after: None,
            correction_after_slice: None,
        }
    }

    /// Drops series with no open window from the registry, freeing room under the cap.
    fn forget_closed(&mut self) {
        let open = &self.open;
        self.series
            .retain(|k| open.values().any(|w| w.contains_key(k)));
    }
}

/// Event-time tumbling windows.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// Window width. Default `60s`.
    #[serde(with = "humantime_serde")]
    pub width: Duration,
    /// How far behind the newest event time a window stays open for late events. Default `30s`.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// A partition with no event for this long no longer holds the watermark back, and when
    /// every partition is idle the watermark advances with the wall clock. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Width of the fast error-count slices inside a window, for rules that must react
    /// faster than a window closes (the circuit breaker). Must divide `width`. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub slice: Duration,
    /// How far behind the newest event time a slice stays open. Events arriving later still
    /// count in their window, not in the slice. At most `allowed_lateness`. Default `5s`.
    #[serde(with = "humantime_serde")]
    pub slice_lateness: Duration,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        Self {
            width: Duration::from_secs(60),
            allowed_lateness: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(10),
            slice: Duration::from_secs(10),
            slice_lateness: Duration::from_secs(5),
        }
    }
}

/// Late judge scores and feedback.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScoresConfig {
    /// How many recent `response_id`s are remembered so that a late score can find the window
    /// of its request (about 100 bytes each in memory, 21 in the index log). Default 200000.
    pub join_capacity: usize,
    /// How long after its request's window closed (in event time, by the watermark) a late
    /// score still counts, as a correction row of that window. Default `24h`.
    #[serde(with = "humantime_serde")]
    pub late_ttl: Duration,
}

impl Default for ScoresConfig {
    fn default() -> Self {
        Self {
            join_capacity: 200_000,
            late_ttl: Duration::from_secs(24 * 3600),
        }
    }
}

impl WindowsConfig {
    /// Checks the section; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), crate::section::ConfigError> {
        let w = self;
        if w.width < Duration::from_secs(1) {
            return Err(crate::section::invalid(
                "windows.width",
                "must be at least 1s",
            ));
        }
        if w.width.as_millis() > 86_400_000 || 86_400_000 % w.width.as_millis() != 0 {
            return Err(crate::section::invalid(
                "windows.width",
                "must divide a day evenly (e.g. 10s, 1m, 5m, 1h)",
            ));
        }
        if w.slice < Duration::from_secs(1)
            || !w.width.as_millis().is_multiple_of(w.slice.as_millis())
        {
            return Err(crate::section::invalid(
                "windows.slice",
                "must be at least 1s and divide windows.width evenly (e.g. 10s for 1m windows)",
            ));
        }
        if w.slice_lateness > w.allowed_lateness {
            return Err(crate::section::invalid(
                "windows.slice_lateness",
                "must not exceed windows.allowed_lateness",
            ));
        }
        if w.idle_timeout.is_zero() {
            return Err(crate::section::invalid(
                "windows.idle_timeout",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::event::{Feedback, SeriesLabel, Status};

    const MIN: i64 = 60_000;
    const T0: i64 = 1_790_000_000_000 / MIN * MIN; // a window boundary

    fn state(lateness_s: u64, idle_s: u64) -> WindowState {
        let cfg = WindowsConfig {
            width: Duration::from_secs(60),
            allowed_lateness: Duration::from_secs(lateness_s),
            idle_timeout: Duration::from_secs(idle_s),
            ..WindowsConfig::default()
        };
        WindowState::new(
            &cfg,
            SeriesRegistry::new(vec![SeriesLabel::Service], 100),
            &ScoresConfig {
                join_capacity: 1000,
                late_ttl: Duration::from_secs(3600),
            },
        )
    }

    fn ev(service: &str, ts: i64) -> RequestEvent {
        RequestEvent {
            event_id: format!("{service}-{ts}"),
            timestamp_ms: ts,
            service: service.into(),
            request_model: "m".into(),
            latency_ms: 100.0,
            status: Status::Ok,
            ..Default::default()
        }
    }

    #[test]
    fn slices_close_early_and_are_handed_over_again_after_a_restore() {
        let mut w = state(30, 3600);
        w.observe(&ev("a", T0 + 1_000), 0, 0, 0);
        let mut err = ev("a", T0 + 2_000);
        err.status = Status::Error;
        w.observe(&err, 0, 1, 0);
        w.observe(&ev("a", T0 + 12_000), 0, 2, 0);
        // The newest event at +20 s: slices ending by +15 s (slice lateness 5 s) are closed,
        // the window (lateness 30 s) is not.
        w.observe(&ev("a", T0 + 20_000), 0, 3, 0);
        assert!(w.advance(0).is_empty());
        let slices = w.take_closed_slices();
        assert_eq!(
            slices
                .iter()
                .map(|s| (s.start_ms - T0, s.sketch.requests, s.sketch.errors))
                .collect::<Vec<_>>(),
            vec![(0, 2, 1)]
        );
        // An event for the closed slice still counts in the window, not in the slice.
        w.observe(&ev("a", T0 + 3_000), 0, 4, 0);
        let snap = w.snapshot();
        assert_eq!(snap.fast_watermark_ms, Some(T0 + 10_000));
        let mut back = state(30, 3600);
        back.restore(&snap, 0);
        assert_eq!(back.take_closed_slices(), slices);
        let (_, rows) = &snap.open[0];
        assert_eq!(rows[0].1.event_count, 5);
        let first = &rows[0].1.slices[0];
        assert_eq!((first.requests, first.errors), (2, 1));
        // The slice's latency histogram holds what its two events recorded.
        let lat = &first.hists[crate::window::sketch::Metric::LatencyMs.index()];
        assert_eq!(lat.count(), 2);
    }

    #[test]
    fn a_slice_only_correction_names_the_partition_of_its_slice() {
        let mut w = state(30, 3600);
        let mut e = ev("a", T0 + 1_000);
        e.response_id = Some("r1".into());
        w.observe(&e, 2, 7, 0);
        // The slice [T0, T0 + 10 s) closes, the window does not.
        w.observe(&ev("a", T0 + 20_000), 2, 8, 0);
        assert!(w.advance(0).is_empty());
        assert_eq!(w.take_closed_slices().len(), 1);
        let join = w.observe_score(&judge("r1", 0.4), 2, 9, at(T0));
        assert!(
            matches!(join, Ok(ScoreJoin::OpenSliceClosed { .. })),
            "{join:?}"
        );
        let rows = w.take_corrections();
        assert_eq!(rows.len(), 1);
        let delta = &rows[0].series[0].1;
        assert_eq!(delta.event_count, 0);
        assert_eq!(delta.slices[0].judge["faith"].n, 1);
        // kafka_partition of the row (the first offsets key) is the slice's partition.
        assert_eq!(delta.offsets.get(&2), Some(&(9, 9)));
    }

    #[test]
    fn slice_histograms_merge_to_the_window_histogram() {
        let mut w = state(30, 3600);
        for i in 0..200 {
            let mut e = ev("a", T0 + i * 250);
            e.latency_ms = 100.0 + (i as f64 * 37.0) % 4_000.0;
            e.judge_scores = vec![("faithfulness".into(), (i % 10) as f64 / 10.0)];
            w.observe(&e, 0, i, 0);
        }
        let snap = w.snapshot();
        let (_, rows) = &snap.open[0];
        let sketch = &rows[0].1;
        let mut merged = crate::window::sketch::SliceSketch::default();
        for s in &sketch.slices {
            merged.merge(s);
        }
        let m = crate::window::sketch::Metric::LatencyMs;
        let whole = crate::window::sketch::SparseHist::from_metric(sketch.metric(m));
        assert_eq!(merged.hists[m.index()].buckets, whole.buckets);
        assert!((merged.hists[m.index()].sum - whole.sum).abs() < 1e-6);
        assert_eq!(merged.judge["faithfulness"].n, 200);
        assert_eq!(merged.requests, sketch.event_count);
    }

    #[test]
    fn checkpoints_with_count_only_slices_still_load() {
        let old = r#"[[3, 1], [0, 0]]"#;
        #[derive(serde::Deserialize)]
        struct W {
            #[serde(deserialize_with = "crate::window::sketch::slices_compat")]
            slices: Vec<crate::window::sketch::SliceSketch>,
        }
        let w: W = serde_json::from_str(&format!(r#"{{"slices": {old}}}"#)).unwrap();
        assert_eq!(
            w.slices[0],
            crate::window::sketch::SliceSketch::counts(3, 1)
        );
    }

    #[test]
    fn tumbling_windows_close_when_watermark_passes_end() {
        let mut w = state(10, 3600);
        let now = 0;
        assert_eq!(
            w.observe(&ev("a", T0 + 1_000), 0, 0, now),
            Observed::Windowed
        );
        assert_eq!(
            w.observe(&ev("b", T0 + 59_999), 0, 1, now),
            Observed::Windowed
        );
        assert_eq!(
            w.observe(&ev("a", T0 + MIN + 5_000), 0, 2, now),
            Observed::Windowed
        );
        // newest = T0+65s, lateness 10 s → watermark T0+55s: nothing closes yet
        assert!(w.advance(now).is_empty());
        assert_eq!(w.watermark_ms(), Some(T0 + 55_000));
        w.observe(&ev("a", T0 + MIN + 10_000), 0, 3, now);
        let closed = w.advance(now);
        assert_eq!(closed.len(), 1);
        let c = &closed[0];
        assert_eq!((c.start_ms, c.end_ms), (T0, T0 + MIN));
        let names: Vec<_> = c
            .series
            .iter()
            .map(|(k, s)| (k.values()[0].clone(), s.event_count))
            .collect();
        assert_eq!(names, vec![("a".to_string(), 1), ("b".to_string(), 1)]);
        assert_eq!(c.series[0].1.offsets.get(&0), Some(&(0, 0)));
        assert_eq!(w.open_windows(), 1);
    }

    #[test]
    fn events_within_lateness_count_and_later_ones_are_late() {
        let mut w = state(30, 3600);
        w.observe(&ev("a", T0 + MIN + 20_000), 0, 0, 0);
        w.advance(0); // watermark T0+50s: window T0 open
        assert_eq!(
            w.observe(&ev("a", T0 + 5_000), 0, 1, 0),
            Observed::Windowed,
            "within lateness"
        );
        w.observe(&ev("a", T0 + MIN + 40_000), 0, 2, 0);
        let closed = w.advance(0); // watermark T0+70s
        assert_eq!(closed.len(), 1);
        assert_eq!(closed[0].start_ms, T0);
        assert_eq!(
            closed[0].series[0].1.event_count, 1,
            "the event within lateness was counted"
        );
        assert_eq!(w.observe(&ev("a", T0 + 59_000), 0, 3, 0), Observed::Late);
        assert_eq!(w.stats().late_events, 1);
        assert_eq!(w.stats().windowed_events, 3);
    }

    #[test]
    fn slowest_active_partition_holds_the_watermark() {
        let mut w = state(0, 10);
        w.observe(&ev("a", T0 + 5 * MIN), 0, 0, 0);
        w.observe(&ev("a", T0 + 10_000), 1, 0, 0);
        assert!(
            w.advance(1_000).is_empty(),
            "partition 1 is still in window T0"
        );
        assert_eq!(w.watermark_ms(), Some(T0 + 10_000));
        // partition 0 keeps delivering, partition 1 goes quiet: after idle_timeout it no
        // longer holds the watermark back
        w.observe(&ev("a", T0 + 5 * MIN + 1), 0, 1, 11_000);
        let closed = w.advance(11_000);
        assert_eq!(closed.len(), 1);
        assert_eq!(w.watermark_ms(), Some(T0 + 5 * MIN + 1));
    }

    #[test]
    fn an_assigned_partition_holds_the_watermark_until_it_delivers_or_idles() {
        let mut w = state(0, 10);
        w.assign_partition(0, 0);
        w.assign_partition(1, 0);
        w.observe(&ev("a", T0 + 5 * MIN), 0, 0, 100);
        assert!(w.advance(1_000).is_empty());
        assert_eq!(w.watermark_ms(), None, "partition 1 has not delivered yet");
        assert_eq!(
            w.observe(&ev("b", T0 + 1_000), 1, 0, 2_000),
            Observed::Windowed,
            "not late"
        );
        w.advance(2_000);
        assert_eq!(w.watermark_ms(), Some(T0 + 1_000));
        w.revoke_partition(1);
        w.advance(3_000);
        assert_eq!(w.watermark_ms(), Some(T0 + 5 * MIN));
        // a silent assigned partition stops holding once idle
        w.assign_partition(2, 3_000);
        w.observe(&ev("a", T0 + 6 * MIN), 0, 1, 3_500);
        w.advance(4_000);
        assert_eq!(w.watermark_ms(), Some(T0 + 5 * MIN));
        w.observe(&ev("a", T0 + 6 * MIN), 0, 2, 13_500);
        w.advance(13_500);
        assert_eq!(w.watermark_ms(), Some(T0 + 6 * MIN));
    }

    #[test]
    fn idle_ticks_advance_the_watermark_with_the_wall_clock() {
        let mut w = state(5, 10);
        w.observe(&ev("a", T0 + 30_000), 0, 0, 1_000_000);
        assert!(w.advance(1_005_000).is_empty());
        assert_eq!(w.watermark_ms(), Some(T0 + 25_000));
        // no more events; 40 s of wall time later the watermark has moved 40 s
        let closed = w.advance(1_040_000);
        assert_eq!(w.watermark_ms(), Some(T0 + 30_000 + 40_000 - 5_000));
        assert_eq!(
            closed.len(),
            1,
            "the quiet window closed on idle ticks alone"
        );
        // the watermark never goes backwards
        w.observe(&ev("a", T0 + 61_000), 0, 1, 1_041_000);
        w.advance(1_041_000);
        assert_eq!(w.watermark_ms(), Some(T0 + 65_000));
    }

    #[test]
    fn late_scores_join_the_request_window() {
        let mut w = state(30, 3600);
        let mut e = ev("a", T0 + 1_000);
        e.response_id = Some("r1".into());
        w.observe(&e, 0, 0, 0);
        let judge = ScoreEvent {
            event_id: None,
            response_id: "r1".into(),
            timestamp_ms: None,
            value: ScoreValue::Judge {
                name: "faith".into(),
                value: Some(0.5),
                label: Some("grounded".into()),
            },
        };
        assert_eq!(
            w.observe_score(&judge, 2, 9, AfterTicks::default()),
            Ok(ScoreJoin::Open)
        );
        let fb = ScoreEvent {
            value: ScoreValue::Feedback(Feedback::Negative),
            ..judge.clone()
        };
        assert_eq!(
            w.observe_score(&fb, 2, 10, AfterTicks::default()),
            Ok(ScoreJoin::Open)
        );
        let unknown = ScoreEvent {
            response_id: "nope".into(),
            ..judge.clone()
        };
        assert_eq!(
            w.observe_score(&unknown, 2, 11, AfterTicks::default()),
            Err(ScoreMiss::UnknownResponse)
        );
        let closed = w.close_all();
        let s = &closed[0].series[0].1;
        assert_eq!(s.judge["faith"].n, 1);
        assert_eq!(s.judge_labels.get("faith=grounded"), 1);
        assert_eq!(s.feedback_count(Feedback::Negative), 1);
        assert_eq!(s.late_scores, 2);
        assert_eq!(s.offsets.get(&2), Some(&(9, 10)));
        assert!(w.take_corrections().is_empty());
        assert_eq!(w.stats().scores_joined, 2);
        assert_eq!(w.stats().scores_unmatched, 1);
    }

    fn at(window_tick: i64) -> AfterTicks {
        AfterTicks {
            window_ms: Some(window_tick),
            slice_ms: Some(window_tick + 20_000),
        }
    }

    fn judge(response_id: &str, v: f64) -> ScoreEvent {
        ScoreEvent {
            event_id: None,
            response_id: response_id.into(),
            timestamp_ms: None,
            value: ScoreValue::Judge {
                name: "faith".into(),
                value: Some(v),
                label: None,
            },
        }
    }

    #[test]
    fn a_late_score_of_a_closed_window_becomes_a_correction_row_until_the_ttl() {
        let mut w = state(0, 3600);
        for (i, id) in ["r1", "r2"].iter().enumerate() {
            let mut e = ev("a", T0 + 1_000 + i as i64);
            e.response_id = Some((*id).into());
            w.observe(&e, 0, i as i64, 0);
        }
        // The window closes without its scores.
        w.observe(&ev("a", T0 + MIN + 1), 0, 2, 0);
        let closed = w.advance(0);
        assert_eq!(closed[0].series[0].1.late_scores, 0);
        assert_eq!(closed[0].correction_after, None);
        // Two scores arrive after the detector evaluated the tick T0 + 60 s, one later.
        let j = w
            .observe_score(&judge("r1", 0.4), 0, 3, at(T0 + MIN))
            .unwrap();
        let ScoreJoin::Correction {
            start_ms,
            series,
            delta,
        } = j
        else {
            panic!("expected a correction, got {j:?}");
        };
        assert_eq!((start_ms, series.values()), (T0, &["a".to_string()][..]));
        assert_eq!((delta.event_count, delta.late_scores), (0, 1));
        // The request at T0 + 1 s is in the window's first 10-second slice.
        assert_eq!(delta.slices.len(), 1);
        assert_eq!(delta.slices[0].judge["faith"].n, 1);
        w.observe_score(&judge("r2", 0.6), 0, 4, at(T0 + MIN))
            .unwrap();
        w.observe_score(&judge("r2", 0.8), 0, 5, at(T0 + 2 * MIN))
            .unwrap();
        let rows = w.take_corrections();
        assert_eq!(rows.len(), 2, "one row per detector tick: {rows:?}");
        let (first, second) = (&rows[0], &rows[1]);
        assert_eq!(
            (first.start_ms, first.end_ms, first.correction_after),
            (T0, T0 + MIN, Some(T0 + MIN))
        );
        assert_eq!(first.correction_after_slice, Some(T0 + MIN + 20_000));
        let s = &first.series[0].1;
        assert_eq!((s.event_count, s.late_scores), (0, 2));
        assert!((s.judge["faith"].mean - 0.5).abs() < 1e-12);
        assert_eq!(s.offsets.get(&0), Some(&(3, 4)));
        assert_eq!(second.correction_after, Some(T0 + 2 * MIN));
        assert!(w.take_corrections().is_empty(), "taken once");
        // Before the detector's first tick it counts for every tick reading the window.
        w.observe_score(&judge("r1", 0.1), 0, 6, AfterTicks::default())
            .unwrap();
        assert_eq!(w.take_corrections()[0].correction_after, Some(T0));
        // An hour after the window closed, the request's scores no longer count.
        w.observe(&ev("a", T0 + 61 * MIN), 0, 7, 0);
        w.advance(0);
        assert_eq!(
            w.observe_score(&judge("r1", 0.1), 0, 8, AfterTicks::default()),
            Err(ScoreMiss::Expired)
        );
        let st = w.stats();
        assert_eq!((st.scores_corrected, st.scores_unmatched), (4, 1));
    }

    #[test]
    fn a_late_score_before_the_detectors_first_tick_counts_for_every_tick() {
        // A partition read ahead while the detector is held back by another (nothing
        // evaluated yet): a live detector adds the score at once, so every tick sees it — the
        // row must say so, or a backtest applies it ticks later than the live run did.
        let mut w = state(0, 3600);
        let mut e = ev("a", T0 + 25_000);
        e.response_id = Some("r1".into());
        w.observe(&e, 0, 0, 0);
        w.observe(&ev("a", T0 + MIN + 1), 0, 1, 0);
        w.advance(0);
        let mut e = ev("a", T0 + MIN + 5_000);
        e.response_id = Some("r2".into());
        w.observe(&e, 0, 2, 0);
        w.observe(&ev("a", T0 + MIN + 40_000), 0, 3, 0);
        w.advance(0);
        // r1's window closed; r2's window is open but its slice was handed over.
        assert!(matches!(
            w.observe_score(&judge("r1", 0.4), 0, 4, AfterTicks::default()),
            Ok(ScoreJoin::Correction { .. })
        ));
        assert!(matches!(
            w.observe_score(&judge("r2", 0.6), 0, 5, AfterTicks::default()),
            Ok(ScoreJoin::OpenSliceClosed { .. })
        ));
        let rows = w.take_corrections();
        let ticks: Vec<_> = rows
            .iter()
            .map(|r| (r.start_ms, r.correction_after, r.correction_after_slice))
            .collect();
        assert_eq!(
            ticks,
            [
                // the window's start and the score's slice start: before any tick reading them
                (T0, Some(T0), Some(T0 + 20_000)),
                (T0 + MIN, Some(T0 + MIN), Some(T0 + MIN)),
            ]
        );
    }

    #[test]
    fn closing_frees_series_under_the_cap() {
        let cfg = WindowsConfig {
            width: Duration::from_secs(60),
            allowed_lateness: Duration::ZERO,
            idle_timeout: Duration::from_secs(3600),
            ..WindowsConfig::default()
        };
        let mut w = WindowState::new(
            &cfg,
            SeriesRegistry::new(vec![SeriesLabel::Service], 2),
            &ScoresConfig::default(),
        );
        w.observe(&ev("a", T0), 0, 0, 0);
        w.observe(&ev("b", T0), 0, 1, 0);
        w.observe(&ev("c", T0), 0, 2, 0);
        assert_eq!(w.series().overflow_events, 1);
        w.observe(&ev("a", T0 + MIN), 0, 3, 0);
        let closed = w.advance(0);
        let keys: Vec<_> = closed[0]
            .series
            .iter()
            .map(|(k, _)| k.values()[0].clone())
            .collect();
        assert_eq!(keys, ["__overflow__", "a", "b"]);
        assert_eq!(w.series().active(), 1, "only a has an open window");
        w.observe(&ev("c", T0 + MIN + 1), 0, 4, 0);
        assert_eq!(
            w.series().overflow_events,
            1,
            "c found room once b's window closed"
        );
        assert_eq!(w.series().active(), 2);
    }

    #[test]
    fn snapshot_and_restore_resume_exactly() {
        // Two runs over the same events: one straight through, one restored from a
        // snapshot half way. Closed windows must be identical.
        let events: Vec<RequestEvent> = (0..3000i64)
            .map(|i| {
                let mut e = ev(["a", "b", "c"][(i % 3) as usize], T0 + i * 97);
                e.latency_ms = (i % 1000) as f64 + 0.5;
                e.response_id = Some(format!("r{i}"));
                e.judge_scores = vec![("f".into(), (i % 10) as f64 / 10.0)];
                e
            })
            .collect();
        let score = |i: i64| ScoreEvent {
            event_id: None,
            response_id: format!("r{i}"),
            timestamp_ms: None,
            value: ScoreValue::Judge {
                name: "late".into(),
                value: Some(0.25),
                label: None,
            },
        };
        let run = |split: Option<usize>| {
            let mut w = state(30, 3600);
            let mut closed = Vec::new();
            // The index log as the committer would have written it.
            let mut log: Vec<u8> = Vec::new();
            for (i, e) in events.iter().enumerate() {
                if i % 250 == 0 || Some(i) == split {
                    // A commit: the log bytes, then the checkpoint.
                    let a = w.take_response_log().unwrap();
                    assert_eq!(a.base_len, log.len() as u64);
                    log.extend_from_slice(&a.bytes);
                    closed.extend(w.take_corrections());
                }
                if Some(i) == split {
                    let snap = w.snapshot();
                    let json = serde_json::to_string(&snap).unwrap();
                    let back: WindowSnapshot = serde_json::from_str(&json).unwrap();
                    assert_eq!(back, snap);
                    w = state(30, 3600);
                    w.restore(&back, 0);
                    let at = back.response_log.unwrap();
                    w.restore_responses(at, &log[..at.len as usize]).unwrap();
                }
                w.observe(e, 0, i as i64, 0);
                if i >= 5 {
                    // Scores of requests 5 and 400 events back: the older ones are corrections.
                    let _ =
                        w.observe_score(&score(i as i64 - 5), 0, i as i64, AfterTicks::default());
                }
                if i >= 400 && i % 3 == 0 {
                    let _ =
                        w.observe_score(&score(i as i64 - 400), 0, i as i64, AfterTicks::default());
                }
                if i % 100 == 0 {
                    closed.extend(w.advance(0));
                }
            }
            closed.extend(w.close_all());
            closed.extend(w.take_corrections());
            assert!(closed.iter().any(|c| c.correction_after.is_some()));
            closed
                .into_iter()
                .map(|c| {
                    (
                        c.start_ms,
                        c.series
                            .into_iter()
                            .map(|(k, s)| (k.values().to_vec(), serde_json::to_string(&s).unwrap()))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect::<Vec<_>>()
        };
        let straight = run(None);
        let restored = run(Some(1750));
        assert_eq!(straight.len(), restored.len());
        assert_eq!(straight, restored);
    }

    #[test]
    fn memory_is_bounded_by_series_and_open_windows() {
        let mut w = state(0, 3600);
        for i in 0..200_000i64 {
            let ts = T0 + i * 30; // 100 minutes of traffic
            w.observe(&ev(["a", "b", "c"][(i % 3) as usize], ts), 0, i, 0);
            if i % 1000 == 0 {
                w.advance(0);
            }
            assert!(w.open_sketches() <= 3 * 2);
        }
    }
}
