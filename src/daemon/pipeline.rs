//! The synchronous core between a source and the commit step: decode → per-partition
//! window state → buffers → [`CommitJob`]s.
//!
//! No I/O: messages, checkpoints and the wall clock come in, commit jobs come out. The Kafka
//! runner, replays and tests drive the same code.
//!
//! State is kept per Kafka partition, so a partition can move to another instance with
//! exactly its own windows, buffers and offsets. Everything a partition received since its
//! last commit — events, quarantined messages, windows closed meanwhile, the open windows and
//! the next offset — leaves in one [`CommitJob`], written atomically by [`crate::storage::commit`].

use std::collections::BTreeMap;

use crate::config::Config;
use crate::decode::{Decoded, Decoder, Reject, RejectReason};
use crate::event::SeriesLabel;
use crate::metrics::Metrics;
use crate::source::{PartitionId, RawMessage};
use crate::storage::commit::{CommitJob, Resume};
use crate::storage::tables::{EventRow, QuarantineRow};
use crate::window::series::SeriesRegistry;
use crate::window::state::{
    AfterTicks, ClosedWindow, Observed, ScoreJoin, WindowState, WindowStats,
};

/// Counters of the pipeline itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub messages: u64,
    /// Messages below a partition's checkpoint offset (already counted before a restart).
    pub skipped_replayed: u64,
    pub requests: u64,
    /// Late scores joined to an open window or written as a correction row.
    pub scores: u64,
    /// Late scores whose request was unknown or whose window closed past `scores.late_ttl`.
    pub scores_unmatched: u64,
    pub quarantined: BTreeMap<RejectReason, u64>,
}

struct PartitionState {
    windows: WindowState,
    events: Vec<EventRow>,
    quarantine: Vec<QuarantineRow>,
    closed: Vec<ClosedWindow>,
    /// Next offset to process; messages below it are already in the checkpoint.
    next_offset: Option<i64>,
    /// First offset not yet committed.
    uncommitted_from: Option<i64>,
    /// Sequence number of the last commit cut for this partition.
    seq: u64,
    /// Window stats already added to the pipeline totals.
    published: WindowStats,
}

/// Emptied event buffers kept for reuse (see [`Pipeline::recycle_events`]).
const SPARE_EVENT_BUFFERS: usize = 2;

pub struct Pipeline {
    decoder: Decoder,
    windows_config: crate::config::WindowsConfig,
    labels: Vec<SeriesLabel>,
    max_series: usize,
    scores: crate::window::state::ScoresConfig,
    partitions: BTreeMap<PartitionId, PartitionState>,
    flush_rows: usize,
    /// Event buffers of committed jobs, emptied, for the next cuts: a buffer grown to
    /// `flush_rows` is reused instead of grown again from nothing (each growth copies every
    /// row and touches fresh pages — a sixth of a replay's time before).
    spare_events: Vec<Vec<EventRow>>,
    flush_interval_ms: i64,
    last_commit_ms: Option<i64>,
    stats: PipelineStats,
    window_totals: WindowStats,
    metrics: Metrics,
    detector: Option<crate::detect::detector::Detector>,
    /// Transitions not yet written.
    transitions: Vec<crate::detect::alerts::Transition>,
    breaker_transitions: Vec<crate::detect::breaker::BreakerTransition>,
    /// Last evaluated ticks written with the detector state.
    saved_ticks: (Option<i64>, Option<i64>),
    /// Alert instances changed since [`Pipeline::take_alerts_changed`].
    alerts_changed: bool,
    /// The model registry in use (decoder prices, detector fallbacks).
    registry: Option<std::sync::Arc<crate::registry::Registry>>,
    /// Shadow pairs, when a shadow analysis is configured.
    pairs: Option<crate::window::pairs::PairIndex>,
    /// Rollback commands of failed analysis runs not yet written.
    rollbacks: Vec<crate::detect::analysis::RollbackEvent>,
}

impl Pipeline {
    pub fn new(config: &Config, metrics: Metrics) -> Result<Self, crate::config::ConfigError> {
        // Every reason shows on /metrics, at 0, before the first bad message.
        for r in RejectReason::ALL {
            metrics.quarantined(r.as_str());
        }
        let shadow_services: Vec<String> = config
            .analyses
            .iter()
            .filter(|a| a.kind == crate::detect::analysis::AnalysisKind::Shadow)
            .map(|a| a.service.clone())
            .collect();
        let pairs = (!shadow_services.is_empty()).then(|| {
            crate::window::pairs::PairIndex::new(
                shadow_services,
                config.series.parsed_labels().unwrap_or_default(),
                config.windows.width.as_millis() as i64,
                config.scores.join_capacity,
            )
        });
        Ok(Self {
            pairs,
            rollbacks: Vec::new(),
            decoder: Decoder::new(config.limits.clone(), config.prices.clone())
                .with_near_context(config.registry.near_context),
            windows_config: config.windows.clone(),
            labels: config.series.parsed_labels()?,
            max_series: config.series.max_active,
            scores: config.scores.clone(),
            partitions: BTreeMap::new(),
            flush_rows: config.storage.flush_rows,
            spare_events: Vec::new(),
            flush_interval_ms: config.storage.flush_interval.as_millis() as i64,
            last_commit_ms: None,
            stats: PipelineStats::default(),
            window_totals: WindowStats::default(),
            metrics,
            detector: None,
            transitions: Vec::new(),
            breaker_transitions: Vec::new(),
            saved_ticks: (None, None),
            alerts_changed: false,
            registry: None,
        })
    }

    /// Uses `registry` from the next message on (prices, fallbacks); a reload swaps it.
    pub fn set_registry(&mut self, registry: Option<std::sync::Arc<crate::registry::Registry>>) {
        self.decoder.set_registry(registry.clone());
        if let Some(d) = self.detector.as_mut() {
            d.set_registry(registry.clone());
        }
        self.registry = registry;
    }

    pub fn registry(&self) -> Option<&crate::registry::Registry> {
        self.registry.as_deref()
    }

    /// Runs `detector` on every window and slice this pipeline closes from now on.
    pub fn set_detector(&mut self, mut detector: crate::detect::detector::Detector) {
        detector.set_registry(self.registry.clone());
        for b in detector.breakers().iter() {
            self.metrics
                .set_breaker_state(&b.key, b.primary_model.as_deref(), b.state.gauge());
        }
        self.saved_ticks = detector.evaluated_through();
        self.detector = Some(detector);
        self.alerts_changed = true;
    }

    pub fn detector(&self) -> Option<&crate::detect::detector::Detector> {
        self.detector.as_ref()
    }

    /// Replaces the detector's rules; alerts of removed rules end with a transition that is
    /// written with the next commit.
    pub fn reload_rules(&mut self, rules: crate::detect::rules::RuleSet) {
        if let Some(d) = self.detector.as_mut() {
            let ended = d.reload(rules);
            for t in &ended {
                self.metrics.alert_transitions(t.to.as_str()).inc();
                tracing::info!(rule = %t.rule, fingerprint = %t.fingerprint, to = t.to.as_str(), "alert ended: rule removed");
            }
            self.transitions.extend(ended);
            let closed = d.take_breaker_transitions();
            self.record_breakers(closed);
            self.alerts_changed = true;
        }
    }

    /// Transitions are waiting to be written (they go out with the next commit cycle, at
    /// once, so an alert is in the table within one tick).
    pub fn alerts_pending(&self) -> bool {
        !self.transitions.is_empty()
            || !self.breaker_transitions.is_empty()
            || !self.rollbacks.is_empty()
    }

    fn record_breakers(&mut self, bt: Vec<crate::detect::breaker::BreakerTransition>) {
        for b in &bt {
            self.metrics.breaker_transition(
                &b.key,
                b.primary_model.as_deref(),
                b.to.as_str(),
                b.to.gauge(),
            );
            tracing::warn!(
                rule = %b.rule, breaker = %b.key, primary = ?b.primary_model,
                fallback = ?b.fallback_model, from = b.from.as_str(), to = b.to.as_str(),
                at_ms = b.at_ms, cooldown_s = b.cooldown_ms / 1000,
                "circuit breaker {}: {}", b.to.as_str(), b.reason
            );
        }
        self.breaker_transitions.extend(bt);
    }

    /// True once after alert instances changed (for the HTTP view).
    pub fn take_alerts_changed(&mut self) -> bool {
        std::mem::take(&mut self.alerts_changed)
    }

    /// Transitions and detector state to write, when anything changed since the last call.
    pub fn take_alerts_job(&mut self) -> Option<crate::storage::commit::AlertsJob> {
        let d = self.detector.as_ref()?;
        let ticks = d.evaluated_through();
        if self.transitions.is_empty()
            && self.breaker_transitions.is_empty()
            && self.rollbacks.is_empty()
            && ticks == self.saved_ticks
        {
            return None;
        }
        self.saved_ticks = ticks;
        Some(crate::storage::commit::AlertsJob {
            transitions: std::mem::take(&mut self.transitions),
            breakers: std::mem::take(&mut self.breaker_transitions),
            rollbacks: std::mem::take(&mut self.rollbacks),
            snapshot: d.snapshot(),
        })
    }

    /// Feeds what the partitions closed to the detector and evaluates every due tick.
    fn detect(&mut self, closed: &[(usize, usize)], now_ms: i64) {
        let Some(d) = self.detector.as_mut() else {
            for part in self.partitions.values_mut() {
                part.windows.take_closed_slices();
            }
            return;
        };
        let mut window_clock: Option<i64> = None;
        let mut slice_clock: Option<i64> = None;
        let mut held = false;
        for (i, ((_, partition), part)) in self.partitions.iter_mut().enumerate() {
            for s in part.windows.take_closed_slices() {
                d.observe_slice(s.series.values(), s.start_ms, *partition, &s.sketch);
            }
            if let Some((_, from)) = closed.iter().find(|(p, _)| *p == i) {
                for w in &part.closed[*from..] {
                    for (key, sketch) in &w.series {
                        d.observe_window(key.values(), w.start_ms, sketch);
                    }
                }
            }
            held |= part.windows.holds_detector(now_ms);
            if let Some(w) = part.windows.watermark_ms() {
                window_clock = Some(window_clock.map_or(w, |c| c.min(w)));
            }
            if let Some(f) = part.windows.fast_watermark_ms() {
                slice_clock = Some(slice_clock.map_or(f, |c| c.min(f)));
            }
        }
        if let Some(pairs) = self.pairs.as_mut() {
            let done = if now_ms == i64::MAX {
                pairs.take_all()
            } else {
                window_clock
                    .map(|c| pairs.take_closed(c))
                    .unwrap_or_default()
            };
            for (labels, start, stats) in done {
                d.observe_pairs(&labels, start, stats);
            }
        }
        if held {
            // A partition that has not delivered yet may still close windows of these ticks.
            return;
        }
        let before = d.evaluations();
        let ticked_before = d.evaluated_through().0;
        let started = std::time::Instant::now();
        let transitions = d.evaluate(window_clock, slice_clock);
        let breakers = d.take_breaker_transitions();
        let rollbacks = d.take_rollbacks();
        self.metrics
            .detector_seconds
            .inc_by(started.elapsed().as_secs_f64());
        if d.evaluations() != before || !transitions.is_empty() {
            self.alerts_changed = true;
            let (firing, pending) = d.state_counts();
            self.metrics.alerts_firing.set(firing as i64);
            self.metrics.alerts_pending.set(pending as i64);
            self.metrics
                .detector_history_series
                .set(d.history().series_count() as i64);
        }
        for t in &transitions {
            self.metrics.alert_transitions(t.to.as_str()).inc();
            let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let labels = labels.join(",");
            match t.to {
                crate::detect::alerts::AlertState::Firing => tracing::warn!(
                    rule = %t.rule, fingerprint = %t.fingerprint, labels = %labels,
                    severity = t.severity.as_str(), at_ms = t.at_ms, value = ?t.numbers.value,
                    baseline = ?t.numbers.baseline, p_value = ?t.numbers.p_value,
                    "alert firing: {}", t.summary
                ),
                _ => tracing::info!(
                    rule = %t.rule, fingerprint = %t.fingerprint, labels = %labels,
                    from = t.from.as_str(), to = t.to.as_str(), at_ms = t.at_ms,
                    reason = %t.reason, "alert {}", t.to.as_str()
                ),
            }
        }
        self.transitions.extend(transitions);
        if !rollbacks.is_empty() {
            self.alerts_changed = true;
            for r in &rollbacks {
                tracing::warn!(
                    analysis = %r.analysis, run = %r.run_id, candidate = %r.candidate,
                    score = ?r.score, at_ms = r.at_ms, failed = ?r.failed,
                    "analysis failed, rollback: {}", r.reason
                );
            }
            self.rollbacks.extend(rollbacks);
        }
        if !d.analyses().is_empty() && d.evaluated_through().0 != ticked_before {
            // Analyses are judged at every window tick: their view changes with it.
            self.alerts_changed = true;
        }
        if !breakers.is_empty() {
            self.alerts_changed = true;
            self.record_breakers(breakers);
        }
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    /// Window counters summed over every partition this instance has held.
    pub fn window_stats(&self) -> WindowStats {
        self.window_totals
    }

    pub fn is_assigned(&self, topic: &str, partition: i32) -> bool {
        self.partitions
            .keys()
            .any(|(t, p)| &**t == topic && *p == partition)
    }

    pub fn assigned(&self) -> Vec<PartitionId> {
        self.partitions.keys().cloned().collect()
    }

    /// Takes ownership of a partition, resuming from its checkpoint when there is one:
    /// `next_offset`, the commit sequence number and the window snapshot it saved.
    pub fn assign(&mut self, id: PartitionId, checkpoint: Option<Resume<'_>>, now_ms: i64) {
        let registry = SeriesRegistry::new(self.labels.clone(), self.max_series);
        let mut windows = WindowState::new(&self.windows_config, registry, &self.scores);
        let partition = id.1;
        let (next_offset, seq) = match checkpoint {
            Some(r) => {
                windows.restore(r.windows, now_ms);
                if let Some(at) = r.windows.response_log {
                    let restored = match r.responses {
                        Some(bytes) => windows
                            .restore_responses(at, bytes)
                            .map_err(|e| e.to_string()),
                        None => Err(
                            "the log file is missing or shorter than the checkpoint says".into(),
                        ),
                    };
                    if let Err(e) = restored {
                        tracing::warn!(
                            topic = %id.0, partition, error = %e,
                            "late-score index not restored: scores of requests before the restart count as scores_unmatched"
                        );
                        windows.abandon_response_log(at);
                    }
                }
                (Some(r.next_offset), r.seq)
            }
            None => (None, 0),
        };
        windows.assign_partition(partition, now_ms);
        self.partitions.insert(
            id,
            PartitionState {
                windows,
                events: Vec::new(),
                quarantine: Vec::new(),
                closed: Vec::new(),
                next_offset,
                uncommitted_from: None,
                seq,
                published: WindowStats::default(),
            },
        );
    }

    /// Gives a partition up: returns its last commit job (to be written before the
    /// partition is released) and forgets it.
    pub fn revoke(&mut self, topic: &str, partition: i32, now_ms: i64) -> Option<CommitJob> {
        let id = self
            .partitions
            .keys()
            .find(|(t, p)| &**t == topic && *p == partition)?
            .clone();
        let job = self.cut_partition(&id, now_ms);
        self.partitions.remove(&id);
        self.publish();
        job
    }

    /// Takes one message of an assigned partition. Returns true when the buffers are full
    /// and a commit should be cut now.
    pub fn ingest(&mut self, msg: RawMessage<'_>, now_ms: i64) -> bool {
        self.stats.messages += 1;
        self.metrics.messages_consumed.inc();
        let id = (msg.topic.clone(), msg.partition);
        let Some(part) = self.partitions.get_mut(&id) else {
            // Not ours (revoked meanwhile): the new owner reads it.
            return false;
        };
        if part.next_offset.is_some_and(|next| msg.offset < next) {
            self.stats.skipped_replayed += 1;
            self.metrics.skipped_replayed.inc();
            return false;
        }
        part.next_offset = Some(msg.offset + 1);
        part.uncommitted_from.get_or_insert(msg.offset);
        match self.decoder.decode(msg.payload, now_ms) {
            Ok(Decoded::Request(ev)) => {
                self.stats.requests += 1;
                self.metrics.events_decoded_request.inc();
                let late =
                    part.windows.observe(&ev, msg.partition, msg.offset, now_ms) == Observed::Late;
                if late {
                    self.metrics.late_events.inc();
                } else if let Some(p) = self.pairs.as_mut() {
                    // Late requests miss their window's tick; they do not pair either.
                    p.observe(&ev);
                }
                part.events.push(EventRow {
                    event: *ev,
                    topic: msg.topic.clone(),
                    partition: msg.partition,
                    offset: msg.offset,
                    late,
                });
                if part.windows.advance_due() {
                    let full = part.events.len() + part.quarantine.len() >= self.flush_rows;
                    self.advance_partition(&id, now_ms);
                    return full;
                }
            }
            Ok(Decoded::Score(s)) => {
                // A late score counts for the detector's ticks after the last ones it evaluated.
                let after = self
                    .detector
                    .as_ref()
                    .map_or_else(AfterTicks::default, |d| {
                        let (window_ms, slice_ms) = d.evaluated_through();
                        AfterTicks {
                            window_ms,
                            slice_ms,
                        }
                    });
                match part
                    .windows
                    .observe_score(&s, msg.partition, msg.offset, after)
                {
                    Ok(join) => {
                        self.stats.scores += 1;
                        self.metrics.events_decoded_score.inc();
                        if let Some(d) = self.detector.as_mut() {
                            match join {
                                ScoreJoin::Open => {}
                                ScoreJoin::OpenSliceClosed {
                                    slice_start_ms,
                                    series,
                                    delta,
                                } => d.observe_late_slice(
                                    series.values(),
                                    slice_start_ms,
                                    msg.partition,
                                    &delta,
                                ),
                                ScoreJoin::Correction {
                                    start_ms,
                                    series,
                                    delta,
                                } => d.observe_correction(
                                    series.values(),
                                    start_ms,
                                    msg.partition,
                                    &delta,
                                ),
                            }
                        }
                    }
                    Err(miss) => {
                        // Not refused input: counted, and the message is covered by the commit.
                        self.stats.scores_unmatched += 1;
                        self.metrics.scores_unmatched(miss.as_str()).inc();
                    }
                }
            }
            Err(reject) => Self::quarantine(&mut self.stats, &self.metrics, part, msg, reject),
        }
        part.events.len() + part.quarantine.len() >= self.flush_rows
    }

    fn quarantine(
        stats: &mut PipelineStats,
        metrics: &Metrics,
        part: &mut PartitionState,
        msg: RawMessage<'_>,
        reject: Reject,
    ) {
        *stats.quarantined.entry(reject.reason).or_insert(0) += 1;
        metrics.quarantined(reject.reason.as_str()).inc();
        part.quarantine.push(QuarantineRow {
            topic: msg.topic.clone(),
            partition: msg.partition,
            offset: msg.offset,
            kafka_timestamp_ms: msg.timestamp_ms,
            reject,
            payload: msg.payload.map(<[u8]>::to_vec),
        });
    }

    /// Advances every partition's watermark; closed windows wait for the next commit.
    pub fn advance(&mut self, now_ms: i64) {
        let mut fresh = Vec::new();
        for (i, part) in self.partitions.values_mut().enumerate() {
            let closed = part.windows.advance(now_ms);
            fresh.push((i, part.closed.len()));
            part.closed.extend(closed);
        }
        self.detect(&fresh, now_ms);
        self.publish();
    }

    /// [`Self::advance`] for one partition, when its own events moved event time on.
    fn advance_partition(&mut self, id: &PartitionId, now_ms: i64) {
        self.close_in(id, now_ms, |w| w.advance(now_ms));
    }

    /// Closes what `close` closes of one partition's windows, then lets the detector at them.
    fn close_in(
        &mut self,
        id: &PartitionId,
        now_ms: i64,
        close: impl FnOnce(&mut WindowState) -> Vec<ClosedWindow>,
    ) {
        let Some(i) = self.partitions.keys().position(|k| k == id) else {
            return;
        };
        let Some(part) = self.partitions.get_mut(id) else {
            return;
        };
        let closed = close(&mut part.windows);
        let fresh = [(i, part.closed.len())];
        part.closed.extend(closed);
        self.detect(&fresh, now_ms);
        self.publish();
    }

    /// True when a commit is due: `storage.flush_interval` passed or a buffer is full.
    pub fn commit_due(&mut self, now_ms: i64) -> bool {
        let last = *self.last_commit_ms.get_or_insert(now_ms);
        let pending = self
            .partitions
            .values()
            .any(|p| p.uncommitted_from.is_some() || !p.closed.is_empty());
        let full = self
            .partitions
            .values()
            .any(|p| p.events.len() + p.quarantine.len() >= self.flush_rows);
        pending && (full || now_ms - last >= self.flush_interval_ms)
    }

    /// One commit job per partition with anything new.
    pub fn cut_commits(&mut self, now_ms: i64) -> Vec<CommitJob> {
        self.last_commit_ms = Some(now_ms);
        let ids: Vec<PartitionId> = self.partitions.keys().cloned().collect();
        let jobs = ids
            .iter()
            .filter_map(|id| self.cut_partition(id, now_ms))
            .collect();
        self.publish();
        jobs
    }

    /// Closes every open window (the input is complete: demo, replay).
    pub fn close_all_windows(&mut self) {
        let mut fresh = Vec::new();
        for (i, part) in self.partitions.values_mut().enumerate() {
            let closed = part.windows.close_all();
            fresh.push((i, part.closed.len()));
            part.closed.extend(closed);
        }
        self.detect(&fresh, i64::MAX);
        self.publish();
    }

    /// Closes every open window of one partition (its input is complete: the end of a
    /// replayed file) and evaluates what that lets the detector evaluate.
    pub fn close_windows_of(&mut self, id: &PartitionId) {
        // Shadow pairs of this input are complete too (replays hold one partition at a time).
        self.close_in(id, i64::MAX, WindowState::close_all);
    }

    /// Takes back the event buffer of a committed job (emptied, capacity kept) for a later
    /// cut. Two at most: a buffer can hold `flush_rows` rows (tens of MB), and with many
    /// partitions keeping one each would hold that much per partition for good.
    pub fn recycle_events(&mut self, mut events: Vec<EventRow>) {
        if self.spare_events.len() < SPARE_EVENT_BUFFERS && events.capacity() > 0 {
            events.clear();
            self.spare_events.push(events);
        }
    }

    fn cut_partition(&mut self, id: &PartitionId, now_ms: i64) -> Option<CommitJob> {
        let part = self.partitions.get_mut(id)?;
        let next_offset = part.next_offset?;
        if part.uncommitted_from.is_none() && part.closed.is_empty() {
            return None;
        }
        let first_offset = part.uncommitted_from.take().unwrap_or(next_offset);
        part.seq += 1;
        let mut windows = std::mem::take(&mut part.closed);
        windows.extend(part.windows.take_corrections());
        // The index log before the snapshot, which records how far the log goes.
        let responses = part.windows.take_response_log();
        Some(CommitJob {
            topic: id.0.clone(),
            partition: id.1,
            seq: part.seq,
            first_offset,
            next_offset,
            events: std::mem::replace(
                &mut part.events,
                self.spare_events.pop().unwrap_or_default(),
            ),
            quarantine: std::mem::take(&mut part.quarantine),
            windows,
            responses,
            snapshot: part.windows.snapshot(),
            now_ms,
        })
    }

    /// Copies window-state counters into the totals and the metrics.
    fn publish(&mut self) {
        let mut active = 0;
        let mut sketches = 0;
        let mut watermark: Option<i64> = None;
        let mut overflow = 0;
        for part in self.partitions.values_mut() {
            let s = part.windows.stats();
            let p = &part.published;
            let d = WindowStats {
                windowed_events: s.windowed_events - p.windowed_events,
                late_events: s.late_events - p.late_events,
                scores_joined: s.scores_joined - p.scores_joined,
                scores_corrected: s.scores_corrected - p.scores_corrected,
                scores_unmatched: s.scores_unmatched - p.scores_unmatched,
                windows_closed: s.windows_closed - p.windows_closed,
                series_windows_closed: s.series_windows_closed - p.series_windows_closed,
            };
            part.published = s;
            let t = &mut self.window_totals;
            t.windowed_events += d.windowed_events;
            t.late_events += d.late_events;
            t.scores_joined += d.scores_joined;
            t.scores_corrected += d.scores_corrected;
            t.scores_unmatched += d.scores_unmatched;
            t.windows_closed += d.windows_closed;
            t.series_windows_closed += d.series_windows_closed;
            let m = &self.metrics;
            m.windowed_events.inc_by(d.windowed_events);
            m.scores_joined.inc_by(d.scores_joined);
            m.scores_corrected.inc_by(d.scores_corrected);
            m.windows_closed.inc_by(d.windows_closed);
            m.series_windows_closed.inc_by(d.series_windows_closed);
            active += part.windows.series().active();
            sketches += part.windows.open_sketches();
            overflow += part.windows.series().overflow_events;
            if let Some(w) = part.windows.watermark_ms() {
                watermark = Some(watermark.map_or(w, |m: i64| m.min(w)));
            }
        }
        let m = &self.metrics;
        m.series_overflow_events
            .inc_by(overflow.saturating_sub(m.series_overflow_events.get()));
        m.active_series.set(active as i64);
        m.open_sketches.set(sketches as i64);
        if let Some(w) = watermark {
            m.watermark_seconds.set(w as f64 / 1000.0);
        }
    }
}
