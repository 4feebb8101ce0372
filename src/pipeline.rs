//! The synchronous core between a source and the sink: decode → window state → buffers.
//!
//! No I/O: messages and the wall clock come in, [`SinkJob`]s come out. The Kafka runner,
//! file replay and tests drive the same code.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::config::Config;
use crate::decode::{Decoded, Decoder, Reject, RejectReason};
use crate::metrics::Metrics;
use crate::series::SeriesRegistry;
use crate::tables::{EventRow, QuarantineRow};
use crate::window::{ClosedWindow, Observed, ScoreMiss, WindowState, WindowStats};

/// One message as the source delivers it.
#[derive(Debug, Clone, Copy)]
pub struct RawMessage<'a> {
    pub topic: &'a Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Broker timestamp, ms.
    pub timestamp_ms: Option<i64>,
    pub payload: Option<&'a [u8]>,
}

/// Work for the sink, in the order it must be done.
#[derive(Debug)]
pub enum SinkJob {
    /// Buffered events and quarantined messages; once written, `next_offsets` may be stored.
    Flush(FlushJob),
    /// Windows the watermark closed.
    Windows(Vec<ClosedWindow>),
}

#[derive(Debug, Default)]
pub struct FlushJob {
    pub events: Vec<EventRow>,
    pub quarantine: Vec<QuarantineRow>,
    /// (topic, partition) → next offset to consume, covering everything in this job.
    pub next_offsets: BTreeMap<(Arc<str>, i32), i64>,
    /// Wall clock when the job was cut, for quarantine rows without a broker timestamp.
    pub now_ms: i64,
}

/// Counters of the pipeline itself (the window state keeps its own).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PipelineStats {
    pub messages: u64,
    pub requests: u64,
    pub scores: u64,
    pub quarantined: BTreeMap<RejectReason, u64>,
}

pub struct Pipeline {
    decoder: Decoder,
    windows: WindowState,
    events: Vec<EventRow>,
    quarantine: Vec<QuarantineRow>,
    next_offsets: BTreeMap<(Arc<str>, i32), i64>,
    flush_rows: usize,
    flush_interval_ms: i64,
    last_flush_ms: Option<i64>,
    stats: PipelineStats,
    published: WindowStats,
    metrics: Metrics,
}

impl Pipeline {
    pub fn new(config: &Config, metrics: Metrics) -> Result<Self, crate::config::ConfigError> {
        let labels = config.series.parsed_labels()?;
        let registry = SeriesRegistry::new(labels, config.series.max_active);
        Ok(Self {
            decoder: Decoder::new(config.limits.clone(), config.prices.clone()),
            windows: WindowState::new(&config.windows, registry, config.scores.join_capacity),
            events: Vec::new(),
            quarantine: Vec::new(),
            next_offsets: BTreeMap::new(),
            flush_rows: config.storage.flush_rows,
            flush_interval_ms: config.storage.flush_interval.as_millis() as i64,
            last_flush_ms: None,
            stats: PipelineStats::default(),
            published: WindowStats::default(),
            metrics,
        })
    }

    pub fn stats(&self) -> &PipelineStats {
        &self.stats
    }

    pub fn window_stats(&self) -> WindowStats {
        self.windows.stats()
    }

    pub fn windows(&self) -> &WindowState {
        &self.windows
    }

    /// Rows waiting for the next flush.
    pub fn buffered(&self) -> usize {
        self.events.len() + self.quarantine.len()
    }

    /// Partitions assigned to this instance (they hold the watermark until they deliver).
    pub fn assign(&mut self, partitions: &[i32], now_ms: i64) {
        for p in partitions {
            self.windows.assign_partition(*p, now_ms);
        }
    }

    /// Partitions taken away from this instance.
    pub fn revoke(&mut self, partitions: &[i32]) {
        for p in partitions {
            self.windows.revoke_partition(*p);
        }
    }

    /// Takes one message. Returns true when the buffers are full and [`Pipeline::tick`]
    /// should run now.
    pub fn ingest(&mut self, msg: RawMessage<'_>, now_ms: i64) -> bool {
        self.stats.messages += 1;
        self.metrics.messages_consumed.inc();
        self.next_offsets
            .insert((msg.topic.clone(), msg.partition), msg.offset + 1);
        match self.decoder.decode(msg.payload, now_ms) {
            Ok(Decoded::Request(ev)) => {
                self.stats.requests += 1;
                self.metrics.events_decoded_request.inc();
                let late =
                    self.windows.observe(&ev, msg.partition, msg.offset, now_ms) == Observed::Late;
                if late {
                    self.metrics.late_events.inc();
                }
                self.events.push(EventRow {
                    event: *ev,
                    topic: msg.topic.clone(),
                    partition: msg.partition,
                    offset: msg.offset,
                    late,
                });
            }
            Ok(Decoded::Score(s)) => {
                match self.windows.observe_score(&s, msg.partition, msg.offset) {
                    Ok(()) => {
                        self.stats.scores += 1;
                        self.metrics.events_decoded_score.inc();
                    }
                    Err(miss) => {
                        let detail = match miss {
                        ScoreMiss::UnknownResponse => format!(
                            "no recent request with response_id {:?} (unknown, or older than scores.join_capacity requests)",
                            s.response_id
                        ),
                        ScoreMiss::WindowClosed => {
                            format!("the window of request {:?} has already closed", s.response_id)
                        }
                    };
                        self.reject(
                            msg,
                            Reject::new(RejectReason::ScoreUnmatched, Some("response_id"), detail),
                        );
                    }
                }
            }
            Err(reject) => self.reject(msg, reject),
        }
        self.events.len() + self.quarantine.len() >= self.flush_rows
    }

    fn reject(&mut self, msg: RawMessage<'_>, reject: Reject) {
        *self.stats.quarantined.entry(reject.reason).or_insert(0) += 1;
        self.metrics.quarantined(reject.reason).inc();
        self.quarantine.push(QuarantineRow {
            topic: msg.topic.clone(),
            partition: msg.partition,
            offset: msg.offset,
            kafka_timestamp_ms: msg.timestamp_ms,
            reject,
            payload: msg.payload.map(<[u8]>::to_vec),
        });
    }

    /// Advances the watermark and cuts a flush when one is due.
    pub fn tick(&mut self, now_ms: i64) -> Vec<SinkJob> {
        let mut jobs = Vec::new();
        let closed = self.windows.advance(now_ms);
        let last = *self.last_flush_ms.get_or_insert(now_ms);
        let due = self.buffered() >= self.flush_rows
            || (now_ms - last >= self.flush_interval_ms && !self.next_offsets.is_empty());
        if due {
            jobs.push(SinkJob::Flush(self.cut(now_ms)));
        }
        if !closed.is_empty() {
            jobs.push(SinkJob::Windows(closed));
        }
        self.publish();
        jobs
    }

    /// Closes every window and flushes everything: the end of a run.
    pub fn drain(&mut self, now_ms: i64) -> Vec<SinkJob> {
        let mut jobs = Vec::new();
        if !self.next_offsets.is_empty() {
            jobs.push(SinkJob::Flush(self.cut(now_ms)));
        }
        let closed = self.windows.close_all();
        if !closed.is_empty() {
            jobs.push(SinkJob::Windows(closed));
        }
        self.publish();
        jobs
    }

    fn cut(&mut self, now_ms: i64) -> FlushJob {
        self.last_flush_ms = Some(now_ms);
        FlushJob {
            events: std::mem::take(&mut self.events),
            quarantine: std::mem::take(&mut self.quarantine),
            next_offsets: std::mem::take(&mut self.next_offsets),
            now_ms,
        }
    }

    /// Copies window-state counters into the metrics.
    fn publish(&mut self) {
        let s = self.windows.stats();
        let m = &self.metrics;
        m.windowed_events
            .inc_by(s.windowed_events - self.published.windowed_events);
        m.scores_joined
            .inc_by(s.scores_joined - self.published.scores_joined);
        m.windows_closed
            .inc_by(s.windows_closed - self.published.windows_closed);
        m.series_windows_closed
            .inc_by(s.series_windows_closed - self.published.series_windows_closed);
        let overflow = self.windows.series().overflow_events;
        m.series_overflow_events
            .inc_by(overflow.saturating_sub(m.series_overflow_events.get()));
        m.active_series.set(self.windows.series().active() as i64);
        m.open_sketches.set(self.windows.open_sketches() as i64);
        if let Some(w) = self.windows.watermark_ms() {
            m.watermark_seconds.set(w as f64 / 1000.0);
        }
        self.published = s;
    }
}
