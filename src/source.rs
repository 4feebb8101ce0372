//! The Kafka source and the run loop that wires source → pipeline → commits.
//!
//! Exactly-once output: each partition's events, quarantined messages, closed windows and
//! open-window checkpoint are committed together by [`crate::commit`]; only then is the
//! partition's offset stored (`enable.auto.offset.store=false`; librdkafka auto-commits
//! stored offsets). On a rebalance, a revoked partition is committed — files, checkpoint and
//! a synchronous offset commit — inside the rebalance callback, before librdkafka hands it
//! to another member; an assigned partition resumes from its checkpoint. Shutdown commits
//! every partition and its offsets synchronously.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::commit::{CommitError, Committer};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::pipeline::{CommitJob, Pipeline, PipelineStats, Resume};
use crate::sink::{ParquetSink, SinkError};
use crate::window::WindowStats;

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("kafka client: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Detection(#[from] crate::replay::SetupError),
    #[error(transparent)]
    Notify(#[from] crate::notify::service::NotifyError),
    #[error(transparent)]
    Compact(#[from] crate::compact::CompactError),
    #[error("starting the compaction thread: {0}")]
    Thread(std::io::Error),
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
    /// Alert instances as of the last evaluation, for `GET /api/v1/alerts`.
    pub alerts: std::sync::RwLock<AlertsView>,
    /// The delivery stage, when channels are configured (silences and outbox API).
    pub notify: std::sync::OnceLock<Arc<crate::notify::service::Shared>>,
}

/// What `GET /api/v1/alerts` shows.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct AlertsView {
    /// Detection runs (rules loaded).
    pub enabled: bool,
    pub rules: usize,
    /// Last evaluated tick of window rules / slice rules (ms since the epoch).
    pub evaluated_window_ms: Option<i64>,
    pub evaluated_slice_ms: Option<i64>,
    pub alerts: Vec<crate::alerts::Alert>,
    /// Circuit breakers (every one that ever opened since the state was created).
    pub breakers: Vec<crate::breaker::Breaker>,
}

impl Health {
    fn publish_alerts(&self, d: &crate::detector::Detector) {
        let (w, s) = d.evaluated_through();
        let view = AlertsView {
            enabled: true,
            rules: d.rules().rules.len(),
            evaluated_window_ms: w,
            evaluated_slice_ms: s,
            // Like Prometheus: pending and firing, plus recently resolved for context.
            alerts: d
                .alerts()
                .into_iter()
                .filter(|a| a.state != crate::alerts::AlertState::Inactive)
                .collect(),
            breakers: d.breakers().iter().cloned().collect(),
        };
        *self.alerts.write().unwrap_or_else(|e| e.into_inner()) = view;
    }
}

/// How a run ends besides a shutdown signal.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Once this flag is set (the input is complete), stop as soon as every assigned
    /// partition has been read to its end, closing every open window (demo, tests, replays).
    pub stop_when_caught_up: Option<Arc<AtomicBool>>,
    /// How often the loop advances the watermark and checks commits.
    pub tick: Option<Duration>,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct RunReport {
    pub pipeline: PipelineStats,
    pub windows: WindowStats,
    /// Table → (files, rows) committed.
    pub written: BTreeMap<&'static str, (u64, u64)>,
    /// Distinct series in committed windows.
    pub series: usize,
    /// (topic, partition) → next offset committed.
    pub committed: BTreeMap<(String, i32), i64>,
    /// The same, for partitions still owned: what shutdown commits to Kafka.
    owned: BTreeMap<(String, i32), i64>,
    /// Alert transitions written to the `alerts` table.
    pub transitions: Vec<crate::alerts::Transition>,
}

/// The state the run loop and the rebalance callback share.
struct Core {
    pipeline: Pipeline,
    committer: Committer,
    metrics: Metrics,
    report: RunReport,
    series: BTreeSet<Vec<String>>,
    /// A failure the callback could not return; the run loop stops on it.
    fatal: Option<RunError>,
}

impl Core {
    /// Resumes a partition from its checkpoint.
    fn assign(&mut self, topic: &str, partition: i32, now: i64) {
        if self.pipeline.is_assigned(topic, partition) {
            return;
        }
        match self.committer.load(topic, partition) {
            Ok(ckpt) => {
                let resume = ckpt.as_ref().map(|c| Resume {
                    next_offset: c.next_offset,
                    seq: c.seq,
                    windows: &c.windows,
                });
                if let Some(c) = &ckpt {
                    tracing::info!(
                        topic,
                        partition,
                        next_offset = c.next_offset,
                        "resuming from checkpoint"
                    );
                }
                self.pipeline
                    .assign((Arc::from(topic), partition), resume, now);
            }
            Err(e) => {
                tracing::error!(topic, partition, error = %e, "cannot resume partition");
                self.fatal.get_or_insert(e.into());
            }
        }
    }

    /// Commits jobs; returns the offsets that may now go to Kafka.
    fn commit(&mut self, jobs: Vec<CommitJob>) -> Result<TopicPartitionList, RunError> {
        if let Some(alerts) = self.pipeline.take_alerts_job() {
            let mut delay = Duration::from_millis(100);
            let mut attempt = 1;
            let written = loop {
                match self.committer.commit_alerts(&alerts) {
                    Ok(w) => break w,
                    Err(e) if attempt < 10 => {
                        self.metrics.sink_errors.inc();
                        tracing::warn!(error = %e, attempt, "writing alerts failed; retrying");
                        std::thread::sleep(delay);
                        delay = (delay * 2).min(Duration::from_secs(30));
                        attempt += 1;
                    }
                    Err(e) => return Err(e.into()),
                }
            };
            for w in &written {
                self.metrics.record_written(w.table, w.rows);
                let e = self.report.written.entry(w.table).or_default();
                e.0 += 1;
                e.1 += w.rows as u64;
            }
            self.report.transitions.extend(alerts.transitions);
        }
        let mut tpl = TopicPartitionList::new();
        for job in jobs {
            if job.is_empty() {
                continue;
            }
            let committed = commit_with_retry(&self.committer, &self.metrics, &job)?;
            for w in &committed.written {
                self.metrics.record_written(w.table, w.rows);
                let e = self.report.written.entry(w.table).or_default();
                e.0 += 1;
                e.1 += w.rows as u64;
            }
            for w in &job.windows {
                self.series
                    .extend(w.series.iter().map(|(k, _)| k.values().to_vec()));
            }
            let key = (job.topic.to_string(), job.partition);
            self.report
                .committed
                .insert(key.clone(), committed.next_offset);
            self.report.owned.insert(key, committed.next_offset);
            tpl.add_partition_offset(
                &job.topic,
                job.partition,
                Offset::Offset(committed.next_offset),
            )?;
        }
        Ok(tpl)
    }
}

/// Retries transient write failures (disk full, permissions being fixed) with exponential
/// backoff for about two minutes; a commit is idempotent, so retrying is safe.
fn commit_with_retry(
    committer: &Committer,
    metrics: &Metrics,
    job: &CommitJob,
) -> Result<crate::commit::Committed, RunError> {
    let mut delay = Duration::from_millis(100);
    for attempt in 1.. {
        match committer.commit(job) {
            Ok(c) => return Ok(c),
            Err(e) if attempt < 10 => {
                metrics.sink_errors.inc();
                tracing::warn!(error = %e, attempt, "commit failed; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            Err(e) => return Err(e.into()),
        }
    }
    unreachable!("the loop returns")
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

struct SourceContext {
    core: Arc<Mutex<Core>>,
    metrics: Metrics,
    health: Arc<Health>,
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
    /// Before partitions go away: commit them (files, checkpoint, offsets) so the next owner
    /// starts exactly where this instance stopped.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let now = now_ms();
        let mut core = lock(&self.core);
        let mut jobs = Vec::new();
        for e in tpl.elements() {
            if let Some(job) = core.pipeline.revoke(e.topic(), e.partition(), now) {
                jobs.push(job);
            }
        }
        if consumer.assignment_lost() {
            // The group already gave these partitions to someone else (session lost): writing
            // now could overwrite the new owner's checkpoint. Drop the work; it is re-read.
            jobs.clear();
            tracing::warn!(partitions = ?partitions_of(tpl), "assignment lost; discarding uncommitted work");
        }
        let result = core.commit(jobs);
        for e in tpl.elements() {
            core.report
                .owned
                .remove(&(e.topic().to_string(), e.partition()));
        }
        match result {
            Ok(offsets) if offsets.count() > 0 => {
                if let Err(e) = consumer.commit(&offsets, CommitMode::Sync) {
                    tracing::warn!(error = %e, "offset commit on revoke failed; the checkpoint still guards against double counting");
                }
            }
            Ok(_) => {}
            Err(e) => {
                tracing::error!(error = %e, "commit on revoke failed; the next owner replays from the last checkpoint");
            }
        }
        self.metrics
            .assigned_partitions
            .set(core.pipeline.assigned().len() as i64);
        tracing::info!(partitions = ?partitions_of(tpl), "partitions revoked and committed");
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                let now = now_ms();
                let mut core = lock(&self.core);
                for e in tpl.elements() {
                    core.assign(e.topic(), e.partition(), now);
                }
                self.metrics
                    .assigned_partitions
                    .set(core.pipeline.assigned().len() as i64);
                tracing::info!(partitions = ?partitions_of(tpl), "partitions assigned");
                self.health.ready.store(true, Ordering::SeqCst);
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
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
/// `stop_when_caught_up`, until the input is complete and read to its end), then commits
/// every partition and exits. Open windows stay in the checkpoints, except when the input is
/// complete, where they are closed and written.
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
    let mut committer = Committer::new(sink)?;
    // Delivery runs beside ingest; the committer hands it transitions through `state/`.
    let notifier = if config.detection.enabled {
        crate::notify::service::Notifier::start(
            config,
            &config.storage.data_dir.join(crate::commit::STATE_DIR),
            metrics.clone(),
        )?
    } else {
        None
    };
    if let Some(n) = &notifier {
        committer.set_notify(true);
        let _ = health.notify.set(n.shared.clone());
    }
    let mut pipeline = Pipeline::new(config, metrics.clone())?;
    if config.detection.enabled {
        // Interrupted commits first: their windows must not enter the detector's history.
        committer.recover_all()?;
        let rules = crate::replay::load_rules(config, &config.detection.rules_dir)?;
        let snapshot = committer.load_detector()?;
        let detector =
            tokio::task::block_in_place(|| crate::replay::resume(config, rules, snapshot))?;
        health.publish_alerts(&detector);
        pipeline.set_detector(detector);
    }
    // Interrupted compactions are settled before any partition's commits are looked at.
    crate::compact::recover(&config.storage.data_dir)?;
    let compaction = if config.storage.compaction.enabled {
        let c = crate::compact::Compactor::new(
            &config.storage.data_dir,
            config.storage.zstd_level,
            config.storage.compaction.clone(),
            config
                .series
                .parsed_labels()?
                .iter()
                .map(|l| l.as_str().to_string())
                .collect(),
        )?;
        Some(crate::compact::Background::start(c, metrics.clone()).map_err(RunError::Thread)?)
    } else {
        None
    };
    let core = Arc::new(Mutex::new(Core {
        pipeline,
        committer,
        metrics: metrics.clone(),
        report: RunReport::default(),
        series: BTreeSet::new(),
        fatal: None,
    }));

    let consumer: StreamConsumer<SourceContext> =
        consumer_config(config).create_with_context(SourceContext {
            core: core.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
        })?;
    let topics: Vec<&str> = config.kafka.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics)?;
    tracing::info!(topics = ?topics, group = %config.kafka.group_id, "subscribed");

    let mut intake = Intake::default();
    let mut idle_ticks = 0u32;
    let mut input_complete = false;
    let mut tick = tokio::time::interval(opts.tick.unwrap_or(Duration::from_millis(250)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut stream = consumer.stream();
    let mut hangup = Hangup::new();

    let result: Result<(), RunError> = loop {
        health.last_loop_ms.store(now_ms(), Ordering::Relaxed);
        tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
            _ = hangup.recv() => {
                if !config.detection.enabled {
                    continue;
                }
                match crate::replay::load_rules(config, &config.detection.rules_dir) {
                    Ok(rules) => {
                        let n = rules.rules.len();
                        let mut c = lock(&core);
                        c.pipeline.reload_rules(rules);
                        if let Some(d) = c.pipeline.detector() {
                            health.publish_alerts(d);
                        }
                        tracing::info!(rules = n, dir = %config.detection.rules_dir.display(), "rules reloaded (SIGHUP)");
                    }
                    Err(e) => tracing::error!(error = %e, "SIGHUP: rules not reloaded; the previous rules stay active"),
                }
            }
            _ = tick.tick() => {
                let now = now_ms();
                let offsets = {
                    let mut c = lock(&core);
                    if let Some(e) = c.fatal.take() {
                        break Err(e);
                    }
                    c.pipeline.advance(now);
                    if c.pipeline.take_alerts_changed() {
                        if let Some(d) = c.pipeline.detector() {
                            health.publish_alerts(d);
                        }
                    }
                    if c.pipeline.commit_due(now) || c.pipeline.alerts_pending() {
                        let jobs = c.pipeline.cut_commits(now);
                        match tokio::task::block_in_place(|| c.commit(jobs)) {
                            Ok(o) => o,
                            Err(e) => break Err(e),
                        }
                    } else {
                        TopicPartitionList::new()
                    }
                };
                store(&consumer, &metrics, &offsets);
                idle_ticks += 1;
                input_complete = opts.stop_when_caught_up.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
                if input_complete && idle_ticks >= 2 && caught_up(&consumer, &intake.consumed) {
                    tracing::info!("every assigned partition read to its end");
                    break Ok(());
                }
            }
            msg = stream.next() => match msg {
                Some(Ok(m)) => {
                    idle_ticks = 0;
                    let now = now_ms();
                    let mut full = intake.accept(&m, &core, now);
                    drop(m);
                    // Take whatever else is already fetched without another trip through
                    // the select (one per message costs more than decoding it). The lock is
                    // never held while polling: rebalance callbacks run inside the poll.
                    for _ in 0..1024 {
                        match stream.next().now_or_never() {
                            Some(Some(Ok(m))) => full |= intake.accept(&m, &core, now),
                            Some(Some(Err(e))) => {
                                metrics.kafka_errors.inc();
                                tracing::warn!(error = %e, "consume error");
                                break;
                            }
                            _ => break,
                        }
                    }
                    if full {
                        let jobs = lock(&core).pipeline.cut_commits(now);
                        let committed = tokio::task::block_in_place(|| lock(&core).commit(jobs));
                        match committed {
                            Ok(offsets) => store(&consumer, &metrics, &offsets),
                            Err(e) => break Err(e),
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
    if let Some(c) = compaction {
        tokio::task::block_in_place(|| c.stop());
    }

    tracing::info!("draining: committing every partition");
    let final_commit = {
        let mut c = lock(&core);
        if input_complete && result.is_ok() {
            c.pipeline.close_all_windows();
        }
        let jobs = c.pipeline.cut_commits(now_ms());
        tokio::task::block_in_place(|| c.commit(jobs))
    };
    if let Err(e) = final_commit {
        tracing::error!(error = %e, "final commit failed; uncommitted data is re-read on restart");
        return Err(e);
    }
    // Everything committed in this run, periodic commits included, goes to Kafka at once.
    // Only partitions still owned: a partition given away may be further on at its new owner.
    let mut all = TopicPartitionList::new();
    for ((t, p), o) in &lock(&core).report.owned {
        all.add_partition_offset(t, *p, Offset::Offset(*o))?;
    }
    if all.count() > 0 {
        match consumer.commit(&all, CommitMode::Sync) {
            Ok(()) => tracing::info!(partitions = all.count(), "offsets committed"),
            Err(e) => {
                tracing::warn!(error = %e, "final offset commit failed; the checkpoints still guard against double counting")
            }
        }
    }
    result?;
    let mut c = lock(&core);
    let mut report = std::mem::take(&mut c.report);
    report.pipeline = c.pipeline.stats().clone();
    report.windows = c.pipeline.window_stats();
    report.series = c.series.len();
    Ok(report)
}

fn store(
    consumer: &StreamConsumer<SourceContext>,
    metrics: &Metrics,
    offsets: &TopicPartitionList,
) {
    if offsets.count() == 0 {
        return;
    }
    match consumer.store_offsets(offsets) {
        Ok(()) => {
            metrics.offsets_stored.inc();
        }
        // A partition revoked meanwhile: its revoke commit already covered it.
        Err(e) => tracing::debug!(error = %e, "storing offsets"),
    }
}

/// Hands Kafka messages to the pipeline and remembers how far each partition was read.
#[derive(Default)]
struct Intake {
    topics: BTreeMap<String, Arc<str>>,
    /// (topic, partition) → next offset to read, for the caught-up check.
    consumed: BTreeMap<(Arc<str>, i32), i64>,
}

impl Intake {
    /// Returns true when a partition's buffers are full.
    fn accept(&mut self, m: &BorrowedMessage<'_>, core: &Mutex<Core>, now_ms: i64) -> bool {
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
        // A message of a partition this instance no longer owns (fetched before a revoke) is
        // ignored by the pipeline: its new owner reads it from the committed offset.
        lock(core).pipeline.ingest(raw, now_ms)
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
    // Where each partition will read next when nothing was consumed in this run.
    let positions = consumer.position().ok();
    let position = |t: &str, p: i32| -> Option<i64> {
        match positions.as_ref()?.find_partition(t, p)?.offset() {
            Offset::Offset(o) => Some(o),
            _ => None,
        }
    };
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
                .or_else(|| position(e.topic(), e.partition()))
                .unwrap_or(low);
            next >= high
        })
    })
}

/// SIGHUP as a stream; never fires where there is no SIGHUP.
struct Hangup(Option<tokio::signal::unix::Signal>);

impl Hangup {
    fn new() -> Self {
        let s = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
        if let Err(e) = &s {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; rules reload only on restart");
        }
        Self(s.ok())
    }

    async fn recv(&mut self) {
        match self.0.as_mut() {
            Some(s) => {
                s.recv().await;
            }
            None => std::future::pending().await,
        }
    }
}
