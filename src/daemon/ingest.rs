//! The ingest loop: source → pipeline → commits → stored offsets.
//!
//! Exactly-once output: each partition's events, quarantined messages, closed windows and
//! open-window checkpoint are committed together by [`crate::storage::commit`]; only then is
//! the partition's offset handed back to the source to store. On a rebalance the source asks
//! [`Owner`] (its [`Partitions`]) to commit the partitions it is about to lose — files,
//! checkpoint, then a synchronous offset commit — before they go to another member; an
//! assigned partition resumes from its checkpoint. Shutdown commits every partition and its
//! offsets synchronously.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rdkafka::error::KafkaError;

use super::health::Health;
use super::pipeline::{Pipeline, PipelineStats};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::source::kafka::KafkaSource;
use crate::source::{Offsets, PartitionId, Partitions, Source};
use crate::storage::commit::{AlertsHook, CommitError, CommitJob, Committer, Resume};
use crate::storage::sink::{ParquetSink, SinkError};
use crate::time::now_ms;
use crate::window::state::WindowStats;

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
    Detection(#[from] super::detection::SetupError),
    #[error(transparent)]
    Notify(#[from] crate::notify::service::NotifyError),
    #[error(transparent)]
    Compact(#[from] crate::storage::compact::CompactError),
    #[error("starting the compaction thread: {0}")]
    Thread(std::io::Error),
    #[error(transparent)]
    Registry(#[from] super::registry::RegistrySetupError),
    #[error(transparent)]
    File(#[from] crate::source::file::FileSourceError),
}

/// How a run ends besides a shutdown signal.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Once this flag is set (the input is complete), stop as soon as every assigned
    /// partition has been read to its end, closing every open window (demo, tests, replays).
    pub stop_when_caught_up: Option<Arc<AtomicBool>>,
    /// How often the loop advances the watermark and checks commits.
    pub tick: Option<Duration>,
    /// The wall clock the pipeline sees, fixed (replays: no partition ever looks idle, and
    /// commits are cut by size, so the output depends on the input only). `None`: the
    /// real clock.
    pub frozen_clock_ms: Option<i64>,
    /// Deliver notifications for the alerts raised (with detection on). Off for replays
    /// unless asked for.
    pub notify: bool,
}

impl RunOptions {
    /// The options of `driftwatch run`: the real clock, notifications on.
    pub fn daemon() -> Self {
        Self {
            notify: true,
            ..Self::default()
        }
    }
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
    pub transitions: Vec<crate::detect::alerts::Transition>,
}

impl RunReport {
    /// Transitions written to `state` (firing, resolved, ...).
    pub fn transitions_to(&self, state: crate::detect::alerts::AlertState) -> usize {
        self.transitions.iter().filter(|t| t.to == state).count()
    }
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
                let log = match ckpt.as_ref().and_then(|c| c.windows.response_log) {
                    Some(at) => match self.committer.load_responses(topic, partition, at) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!(topic, partition, error = %e, "cannot read the late-score index log");
                            self.fatal.get_or_insert(e.into());
                            return;
                        }
                    },
                    None => None,
                };
                let resume = ckpt.as_ref().map(|c| Resume {
                    next_offset: c.next_offset,
                    seq: c.seq,
                    windows: &c.windows,
                    responses: log.as_deref(),
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

    /// Commits jobs (and the detector's alerts first); returns the offsets that may now go
    /// to the source.
    fn commit(&mut self, jobs: Vec<CommitJob>) -> Result<Offsets, RunError> {
        if let Some(alerts) = self.pipeline.take_alerts_job() {
            let written = with_retry(&self.metrics, "writing alerts", || {
                self.committer.commit_alerts(&alerts)
            })?;
            for w in &written {
                self.record_written(w.table, w.rows);
            }
            self.report.transitions.extend(alerts.transitions);
        }
        let mut offsets = Offsets::new();
        for job in jobs {
            if job.is_empty() {
                continue;
            }
            let committed = with_retry(&self.metrics, "commit", || self.committer.commit(&job))?;
            for w in &committed.written {
                self.record_written(w.table, w.rows);
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
            offsets.insert((job.topic.clone(), job.partition), committed.next_offset);
            self.pipeline.recycle_events(job.events);
        }
        Ok(offsets)
    }

    fn record_written(&mut self, table: &'static str, rows: usize) {
        self.metrics.record_written(table, rows);
        let e = self.report.written.entry(table).or_default();
        e.0 += 1;
        e.1 += rows as u64;
    }

    /// Cuts whatever is due and commits it.
    fn cut_and_commit(&mut self, now: i64) -> Result<Offsets, RunError> {
        let jobs = self.pipeline.cut_commits(now);
        tokio::task::block_in_place(|| self.commit(jobs))
    }
}

/// Retries transient write failures (disk full, permissions being fixed) with exponential
/// backoff for about two minutes; commits are idempotent, so retrying is safe.
fn with_retry<T, E: std::fmt::Display>(
    metrics: &Metrics,
    what: &str,
    mut attempt_once: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let mut delay = Duration::from_millis(100);
    let mut attempt = 1;
    loop {
        match attempt_once() {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 10 => {
                metrics.sink_errors.inc();
                tracing::warn!(error = %e, attempt, "{what} failed; retrying");
                std::thread::sleep(delay);
                delay = (delay * 2).min(Duration::from_secs(30));
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

fn lock(core: &Mutex<Core>) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the source calls on a rebalance: the pipeline and committer behind the lock.
struct Owner {
    core: Arc<Mutex<Core>>,
    metrics: Metrics,
    health: Arc<Health>,
    clock: Option<i64>,
}

impl Owner {
    fn now(&self) -> i64 {
        self.clock.unwrap_or_else(now_ms)
    }
}

impl Partitions for Owner {
    fn assigned(&self, partitions: &[PartitionId]) {
        let now = self.now();
        let mut core = lock(&self.core);
        for (topic, partition) in partitions {
            core.assign(topic, *partition, now);
        }
        self.metrics
            .assigned_partitions
            .set(core.pipeline.assigned().len() as i64);
        self.health.ready.store(true, Ordering::SeqCst);
    }

    fn revoking(&self, partitions: &[PartitionId], lost: bool) -> Offsets {
        let now = self.now();
        let mut core = lock(&self.core);
        let mut jobs = Vec::new();
        for (topic, partition) in partitions {
            if let Some(job) = core.pipeline.revoke(topic, *partition, now) {
                jobs.push(job);
            }
        }
        if lost {
            // The group already gave these partitions to someone else: writing now could
            // overwrite the new owner's checkpoint. Drop the work; it is re-read.
            jobs.clear();
        }
        let result = core.commit(jobs);
        for (topic, partition) in partitions {
            core.report.owned.remove(&(topic.to_string(), *partition));
        }
        self.metrics
            .assigned_partitions
            .set(core.pipeline.assigned().len() as i64);
        match result {
            Ok(offsets) => offsets,
            Err(e) => {
                tracing::error!(error = %e, "commit on revoke failed; the next owner replays from the last checkpoint");
                Offsets::new()
            }
        }
    }

    fn finished(&self, partition: &PartitionId) {
        let now = self.now();
        let mut core = lock(&self.core);
        core.pipeline.close_windows_of(partition);
        let job = core.pipeline.revoke(&partition.0, partition.1, now);
        if let Err(e) = core.commit(job.into_iter().collect()) {
            tracing::error!(error = %e, "commit at the end of an input failed");
            core.fatal.get_or_insert(e);
        }
        core.report
            .owned
            .remove(&(partition.0.to_string(), partition.1));
        self.metrics
            .assigned_partitions
            .set(core.pipeline.assigned().len() as i64);
    }
}

/// Delivery's inbox behind storage's hook: storage hands committed transitions on without
/// knowing who takes them.
#[derive(Debug)]
struct DeliveryInbox(std::path::PathBuf);

impl AlertsHook for DeliveryInbox {
    fn committed(
        &self,
        transitions: &[crate::detect::alerts::Transition],
        breakers: &[crate::detect::breaker::BreakerTransition],
        rollbacks: &[crate::detect::analysis::RollbackEvent],
    ) -> Result<(), crate::durable::IoError> {
        crate::notify::inbox::write_inbox(&self.0, transitions, breakers, rollbacks)
    }
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
    let kafka = config.kafka.clone();
    let m = metrics.clone();
    run_source(config, metrics, health, shutdown, opts, move |owner| {
        KafkaSource::subscribe(&kafka, owner, m)
    })
    .await
}

/// [`run`] on the source `open` makes, given the owner of its partitions.
pub async fn run_source<S>(
    config: &Config,
    metrics: Metrics,
    health: Arc<Health>,
    shutdown: impl Future<Output = ()>,
    opts: RunOptions,
    open: impl FnOnce(Arc<dyn Partitions>) -> Result<S, S::Error>,
) -> Result<RunReport, RunError>
where
    S: Source,
    RunError: From<S::Error>,
{
    let clock = opts.frozen_clock_ms;
    let now_ms = move || clock.unwrap_or_else(now_ms);
    let labels = config
        .series
        .parsed_labels()?
        .iter()
        .map(|l| l.as_str())
        .collect();
    let sink = ParquetSink::new(&config.storage.data_dir, config.storage.zstd_level, labels)?;
    let mut committer = Committer::new(sink)?;
    // Delivery runs beside ingest; the committer hands it transitions through `state/`.
    let state_dir = config
        .storage
        .data_dir
        .join(crate::storage::layout::STATE_DIR);
    let notifier = if config.detection.enabled && opts.notify {
        crate::notify::service::Notifier::start(config, &state_dir, metrics.clone())?
    } else {
        None
    };
    if let Some(n) = &notifier {
        committer.set_alerts_hook(Box::new(DeliveryInbox(state_dir.clone())));
        let _ = health.notify.set(n.shared.clone());
    }
    let mut pipeline = Pipeline::new(config, metrics.clone())?;
    pipeline.set_registry(super::registry::start(config, &metrics)?);
    if config.detection.enabled {
        // Interrupted commits first: their windows must not enter the detector's history.
        committer.recover_all()?;
        let rules = super::detection::load_rules(config, &config.detection.rules_dir)?;
        let snapshot = committer.load_detector()?;
        let detector =
            tokio::task::block_in_place(|| super::detection::resume(config, rules, snapshot))?;
        health.publish_alerts(&detector);
        pipeline.set_detector(detector);
    }
    // Interrupted compactions are settled before any partition's commits are looked at.
    crate::storage::compact::recover(&config.storage.data_dir)?;
    let compaction = if config.storage.compaction.enabled {
        let c = crate::storage::compact::Compactor::new(
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
        Some(
            crate::storage::compact::Background::start(c, metrics.clone())
                .map_err(RunError::Thread)?,
        )
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

    let owner = Arc::new(Owner {
        core: core.clone(),
        metrics: metrics.clone(),
        health: health.clone(),
        clock,
    });
    let mut source = open(owner)?;

    let mut idle_ticks = 0u32;
    let mut input_complete = false;
    let mut tick = tokio::time::interval(opts.tick.unwrap_or(Duration::from_millis(250)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    let mut hangup = Hangup::new();

    let result: Result<(), RunError> = loop {
        health
            .last_loop_ms
            .store(crate::time::now_ms(), Ordering::Relaxed);
        let mut batch_now: Option<i64> = None;
        tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
            _ = hangup.recv() => {
                if config.registry.file.is_some() {
                    if let Some(r) = super::registry::reload(config, &metrics) {
                        lock(&core).pipeline.set_registry(Some(r));
                    }
                }
                if !config.detection.enabled {
                    continue;
                }
                match super::detection::load_rules(config, &config.detection.rules_dir) {
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
                        match c.cut_and_commit(now) {
                            Ok(o) => o,
                            Err(e) => break Err(e),
                        }
                    } else {
                        Offsets::new()
                    }
                };
                source.store(&offsets);
                idle_ticks += 1;
                input_complete = opts.stop_when_caught_up.as_ref().is_some_and(|f| f.load(Ordering::SeqCst));
                if input_complete && idle_ticks >= 2 && source.caught_up() {
                    tracing::info!("every assigned partition read to its end");
                    break Ok(());
                }
            }
            // The lock is never held while the source polls: rebalance callbacks run inside
            // the poll. A message of a partition this instance no longer owns (fetched before
            // a revoke) is ignored by the pipeline: its new owner reads it from the committed
            // offset. One wall-clock reading per batch, taken when its first message arrives.
            full = source.recv_batch(1024, |raw| {
                let now = *batch_now.get_or_insert_with(now_ms);
                lock(&core).pipeline.ingest(raw, now)
            }) => {
                if let Some(e) = source.take_failure() {
                    break Err(e.into());
                }
                idle_ticks = 0;
                if full {
                    match lock(&core).cut_and_commit(now_ms()) {
                        Ok(offsets) => source.store(&offsets),
                        Err(e) => break Err(e),
                    }
                }
            }
        }
    };
    health.draining.store(true, Ordering::SeqCst);
    health.ready.store(false, Ordering::SeqCst);
    if let Some(c) = compaction {
        tokio::task::block_in_place(|| c.stop());
    }

    tracing::info!("draining: committing every partition");
    let final_commit = {
        let mut c = lock(&core);
        if input_complete && result.is_ok() {
            c.pipeline.close_all_windows();
        }
        c.cut_and_commit(now_ms())
    };
    if let Err(e) = final_commit {
        tracing::error!(error = %e, "final commit failed; uncommitted data is re-read on restart");
        return Err(e);
    }
    // Everything committed in this run, periodic commits included, goes to Kafka at once.
    // Only partitions still owned: a partition given away may be further on at its new owner.
    let all: Offsets = lock(&core)
        .report
        .owned
        .iter()
        .map(|((t, p), o)| ((Arc::from(t.as_str()), *p), *o))
        .collect();
    if !all.is_empty() {
        match source.commit_sync(&all) {
            Ok(()) => tracing::info!(partitions = all.len(), "offsets committed"),
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
