//! The Kafka source and the run loop that wires source → pipeline → sink.
//!
//! Offsets are stored (`enable.auto.offset.store=false`) only after the sink reports that
//! the Parquet files covering them are committed; librdkafka auto-commits stored offsets,
//! and shutdown commits them synchronously.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{Pipeline, PipelineStats, SinkJob};
use crate::sink::{self, ParquetSink, SinkError};
use crate::window::WindowStats;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error("the parquet writer thread stopped unexpectedly")]
    SinkGone,
}

/// Liveness and readiness, shared with the HTTP endpoint.
#[derive(Debug, Default)]
pub struct Health {
    /// Partitions are assigned and the loop is consuming.
    pub ready: AtomicBool,
    /// Wall clock (ms) of the last run-loop turn; `/healthz` fails when it goes stale.
    pub last_loop_ms: AtomicI64,
    /// Set once shutdown has begun.
    pub draining: AtomicBool,
}

/// How a run ends besides a shutdown signal.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Once this flag is set (the input is complete), stop as soon as every assigned
    /// partition has been read to its end (demo, tests, replays).
    pub stop_when_caught_up: Option<Arc<AtomicBool>>,
    /// How often the loop advances the watermark and checks flushes.
    pub tick: Option<Duration>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub pipeline: PipelineStats,
    pub windows: WindowStats,
    /// Table → (files, rows) committed.
    pub written: BTreeMap<&'static str, (u64, u64)>,
    /// Distinct series seen in closed windows.
    pub series: usize,
    /// (topic, partition) → next offset committed.
    pub committed: BTreeMap<(String, i32), i64>,
}

struct SourceContext {
    metrics: Metrics,
    health: Arc<Health>,
    rebalances: mpsc::UnboundedSender<RebalanceEvent>,
}

/// Partition changes, passed from librdkafka's callback to the run loop.
#[derive(Debug)]
enum RebalanceEvent {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (p, part) in &t.partitions {
                if *p < 0 {
                    continue;
                }
                // Lag against the stored (durable) offset when there is one.
                let lag = if part.consumer_lag_stored >= 0 {
                    part.consumer_lag_stored
                } else {
                    part.consumer_lag
                };
                if lag >= 0 {
                    self.metrics.set_lag(topic, *p, lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.kafka_errors.inc();
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for SourceContext {
    fn post_rebalance(
        &self,
        _c: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?partitions_of(tpl), "partitions assigned");
                let _ = self
                    .rebalances
                    .send(RebalanceEvent::Assigned(partitions_of(tpl)));
                self.health.ready.store(true, Ordering::SeqCst);
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?partitions_of(tpl), "partitions revoked");
                let _ = self
                    .rebalances
                    .send(RebalanceEvent::Revoked(partitions_of(tpl)));
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

/// The consumer's client config: our settings first, the user's `librdkafka` map last.
pub fn consumer_config(config: &Config) -> ClientConfig {
    let k = &config.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers)
        .set("group.id", &k.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &k.auto_offset_reset)
        .set(
            "statistics.interval.ms",
            k.statistics_interval.as_millis().to_string(),
        )
        .set("client.id", "driftwatch");
    for (key, v) in &k.librdkafka {
        c.set(key, v);
    }
    c
}

fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// Consumes `config.kafka.topics` until `shutdown` resolves (or, with
/// `stop_when_caught_up`, until the input is complete and read to its end), then drains:
/// closes open windows, writes everything, commits offsets.
pub async fn run(
    config: &Config,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
    opts: RunOptions,
) -> Result<RunReport, RunError> {
    let labels = config
        .series
        .parsed_labels()?
        .iter()
        .map(|l| l.as_str())
        .collect();
    let sink = ParquetSink::new(&config.storage.data_dir, config.storage.zstd_level, labels)?;
    let mut pipeline = Pipeline::new(config, metrics.clone())?;

    let (rebalance_tx, mut rebalance_rx) = mpsc::unbounded_channel();
    let consumer: StreamConsumer<SourceContext> =
        consumer_config(config).create_with_context(SourceContext {
            metrics: metrics.clone(),
            health: health.clone(),
            rebalances: rebalance_tx,
        })?;
    let topics: Vec<&str> = config.kafka.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(topics = ?topics, group = %config.kafka.group_id, "subscribed");

    let (job_tx, job_rx) = mpsc::channel::<SinkJob>(4);
    let (ack_tx, mut ack_rx) = mpsc::unbounded_channel::<SinkAck>();
    let writer = SinkWriter {
        sink,
        metrics: metrics.clone(),
        acks: ack_tx,
    };
    let sink_thread = std::thread::Builder::new()
        .name("parquet-sink".into())
        .spawn(move || writer.run(job_rx))
        .map_err(|_| RunError::SinkGone)?;

    let mut report = RunReport::default();
    let mut durable: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut intake = Intake::default();
    let mut idle_ticks = 0u32;
    let mut tick = tokio::time::interval(opts.tick.unwrap_or(Duration::from_millis(250)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut stream = consumer.stream();

    let result: Result<(), RunError> = loop {
        health.last_loop_ms.store(now_ms(), Ordering::Relaxed);
        tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
                        Some(ack) = ack_rx.recv() => {
                apply_ack(&consumer, &metrics, ack, &mut durable, &mut report);
            }
            Some(change) = rebalance_rx.recv() => match change {
                RebalanceEvent::Assigned(ps) => pipeline.assign(&ps, now_ms()),
                RebalanceEvent::Revoked(ps) => pipeline.revoke(&ps),
            },
            _ = tick.tick() => {
                for job in pipeline.tick(now_ms()) {
                    if job_tx.send(job).await.is_err() { break; }
                }
                if job_tx.is_closed() { break Err(RunError::SinkGone); }
                idle_ticks += 1;
                let input_complete = opts.stop_when_caught_up.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
                if input_complete && idle_ticks >= 2 && caught_up(&consumer, &intake.consumed) {
                    tracing::info!("every assigned partition read to its end");
                    break Ok(());
                }
            }
            msg = stream.next() => match msg {
                Some(Ok(m)) => {
                    idle_ticks = 0;
                    let now = now_ms();
                    let mut full = intake.accept(&m, &mut pipeline, now);
                    drop(m);
                    // Take whatever else is already fetched without another trip through
                    // the select (one per message costs more than decoding it).
                    for _ in 0..1024 {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(m))) => full |= intake.accept(&m, &mut pipeline, now),
                            Some(Some(Err(e))) => {
                                metrics.kafka_errors.inc();
                                tracing::warn!(error = %e, "consume error");
                                break;
                            }
                            _ => break,
                        }
                    }
                    if full {
                        for job in pipeline.tick(now_ms()) {
                            if job_tx.send(job).await.is_err() { break; }
                        }
                    }
                }
                Some(Err(e)) => {
                    metrics.kafka_errors.inc();
                    tracing::warn!(error = %e, "consume error");
                }
                None => break Ok(()),
            },
        }
    };
    health.draining.store(true, Ordering::SeqCst);
    health.ready.store(false, Ordering::SeqCst);
    drop(stream);

    // Drain: everything buffered and every open window goes to disk, then offsets.
    tracing::info!("draining");
    for job in pipeline.drain(now_ms()) {
        if job_tx.send(job).await.is_err() {
            break;
        }
    }
    drop(job_tx);
    let sink_result = tokio::task::spawn_blocking(move || sink_thread.join())
        .await
        .map_err(|_| RunError::SinkGone)?
        .map_err(|_| RunError::SinkGone)?;
    while let Ok(ack) = ack_rx.try_recv() {
        apply_ack(&consumer, &metrics, ack, &mut durable, &mut report);
    }
    if !durable.is_empty() {
        let mut tpl = TopicPartitionList::new();
        for ((t, p), o) in &durable {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => tracing::info!(partitions = durable.len(), "offsets committed"),
            Err(e) => {
                tracing::warn!(error = %e, "final offset commit failed; stored offsets are re-read on restart")
            }
        }
    }
    report.committed = durable;
    report.pipeline = pipeline.stats().clone();
    report.windows = pipeline.window_stats();
    report.series = sink_result.series_seen;
    result?;
    if let Some(e) = sink_result.error {
        return Err(e.into());
    }
    Ok(report)
}

/// Hands Kafka messages to the pipeline and remembers how far each partition was read.
#[derive(Default)]
struct Intake {
    topics: BTreeMap<String, Arc<str>>,
    /// (topic, partition) → next offset to read, for the caught-up check.
    consumed: BTreeMap<(Arc<str>, i32), i64>,
}

impl Intake {
    /// Returns true when the pipeline's buffers are full.
    fn accept(&mut self, m: &BorrowedMessage<'_>, pipeline: &mut Pipeline, now_ms: i64) -> bool {
        let topic = match self.topics.get(m.topic()) {
            Some(t) => t.clone(),
            None => {
                let t: Arc<str> = Arc::from(m.topic());
                self.topics.insert(m.topic().to_string(), t.clone());
                t
            }
        };
        self.consumed
            .insert((topic.clone(), m.partition()), m.offset() + 1);
        let raw = crate::pipeline::RawMessage {
            topic: &topic,
            partition: m.partition(),
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            payload: m.payload(),
        };
        pipeline.ingest(raw, now_ms)
    }
}

/// True when every assigned partition has been read up to its high watermark. Asks the
/// broker (blocking, briefly); only used when the loop has gone quiet.
fn caught_up(
    consumer: &StreamConsumer<SourceContext>,
    consumed: &BTreeMap<(Arc<str>, i32), i64>,
) -> bool {
    let Ok(assignment) = consumer.assignment() else {
        return false;
    };
    let parts = assignment.elements();
    if parts.is_empty() {
        return false;
    }
    tokio::task::block_in_place(|| {
        parts.iter().all(|e| {
            let Ok((low, high)) =
                consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))
            else {
                return false;
            };
            let next = consumed
                .get(&(Arc::from(e.topic()), e.partition()))
                .copied()
                .unwrap_or(low);
            tracing::debug!(
                topic = e.topic(),
                partition = e.partition(),
                next,
                low,
                high,
                "caught-up check"
            );
            next >= high
        })
    })
}

fn apply_ack(
    consumer: &StreamConsumer<SourceContext>,
    metrics: &Metrics,
    ack: SinkAck,
    durable: &mut BTreeMap<(String, i32), i64>,
    report: &mut RunReport,
) {
    for (table, rows) in &ack.written {
        let e = report.written.entry(table).or_default();
        e.0 += 1;
        e.1 += *rows as u64;
    }
    if ack.next_offsets.is_empty() {
        return;
    }
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in &ack.next_offsets {
        durable.insert((t.to_string(), *p), *o);
        if tpl.add_partition_offset(t, *p, Offset::Offset(*o)).is_err() {
            continue;
        }
    }
    match consumer.store_offsets(&tpl) {
        Ok(()) => {
            metrics.offsets_stored.inc();
        }
        // A partition revoked meanwhile: its new owner re-reads from the last commit.
        Err(e) => tracing::debug!(error = %e, "storing offsets"),
    }
}

/// What the writer thread reports back after a job is durable.
#[derive(Debug, Default)]
struct SinkAck {
    next_offsets: BTreeMap<(Arc<str>, i32), i64>,
    written: Vec<(&'static str, usize)>,
}

struct SinkWriter {
    sink: ParquetSink,
    metrics: Metrics,
    acks: mpsc::UnboundedSender<SinkAck>,
}

struct SinkOutcome {
    series_seen: usize,
    error: Option<SinkError>,
}

impl SinkWriter {
    fn run(self, mut jobs: mpsc::Receiver<SinkJob>) -> SinkOutcome {
        let mut series = BTreeSet::new();
        while let Some(job) = jobs.blocking_recv() {
            if let SinkJob::Windows(ws) = &job {
                for w in ws {
                    series.extend(w.series.iter().map(|(k, _)| k.clone()));
                }
            }
            match self.execute_with_retry(&job) {
                Ok(ack) => {
                    let _ = self.acks.send(ack);
                }
                Err(e) => {
                    tracing::error!(error = %e, "giving up on a parquet write; offsets not stored, data is re-read on restart");
                    return SinkOutcome {
                        series_seen: series.len(),
                        error: Some(e),
                    };
                }
            }
        }
        SinkOutcome {
            series_seen: series.len(),
            error: None,
        }
    }

    /// Retries transient failures (disk full, permissions fixed by an operator) with
    /// exponential backoff, for about two minutes, before giving up.
    fn execute_with_retry(&self, job: &SinkJob) -> Result<SinkAck, SinkError> {
        let mut delay = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            match self.execute(job) {
                Ok(ack) => return Ok(ack),
                Err(e) if attempt < 10 => {
                    attempt += 1;
                    self.metrics.sink_errors.inc();
                    tracing::warn!(error = %e, attempt, "parquet write failed; retrying");
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn execute(&self, job: &SinkJob) -> Result<SinkAck, SinkError> {
        let mut ack = SinkAck::default();
        let note = |ws: Vec<sink::Written>, ack: &mut SinkAck| {
            for w in ws {
                self.metrics.record_written(w.table, w.rows);
                ack.written.push((w.table, w.rows));
            }
        };
        match job {
            SinkJob::Flush(f) => {
                if !f.events.is_empty() {
                    note(self.sink.write_events(&f.events)?, &mut ack);
                }
                if !f.quarantine.is_empty() {
                    note(
                        self.sink.write_quarantine(&f.quarantine, f.now_ms)?,
                        &mut ack,
                    );
                }
                ack.next_offsets = f.next_offsets.clone();
            }
            SinkJob::Windows(ws) => {
                note(self.sink.write_windows(ws)?, &mut ack);
            }
        }
        Ok(ack)
    }
}
