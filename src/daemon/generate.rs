//! `driftwatch generate`: history without Kafka. Synthetic traffic (the `produce`
//! generator) goes through the real decoder, windows and Parquet writer into a data
//! directory, as fast as one core turns it — for benchmarks (`benches/sql.sh`) and for trying
//! SQL at scale. Messages are spread over `partitions` by their series key, as a producer
//! keyed like `driftwatch produce` would.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::daemon::pipeline::Pipeline;
use crate::metrics::Metrics;
use crate::source::RawMessage;
use crate::storage::commit::{CommitError, Committer};
use crate::storage::sink::{ParquetSink, SinkError};
use crate::traffic::synth::Synth;

/// Why generating stopped.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Commit(#[from] CommitError),
    #[error(transparent)]
    Rules(#[from] crate::daemon::detection::SetupError),
    #[error(transparent)]
    Registry(#[from] crate::daemon::registry::RegistrySetupError),
}

/// What a run wrote.
#[derive(Debug, Clone, Default)]
pub struct GenerateReport {
    pub messages: u64,
    pub elapsed: Duration,
    /// Table → (files, rows).
    pub written: BTreeMap<&'static str, (u64, u64)>,
}

/// Generates `config.produce.events` requests (plus late scores and malformed messages at
/// the configured ratios) over `config.produce.span` ending now, into
/// `config.storage.data_dir`.
pub fn generate(config: &Config, partitions: i32) -> Result<GenerateReport, GenerateError> {
    let started = Instant::now();
    let labels = config
        .series
        .parsed_labels()?
        .iter()
        .map(|l| l.as_str())
        .collect();
    let sink = ParquetSink::new(&config.storage.data_dir, config.storage.zstd_level, labels)?;
    let committer = Committer::new(sink)?;
    let (metrics, _) = Metrics::new();
    let mut pipeline = Pipeline::new(config, metrics.clone())?;
    pipeline.set_registry(super::registry::start(config, &metrics)?);
    let topic: Arc<str> = Arc::from("generated");
    let partitions = partitions.max(1);
    let now = chrono::Utc::now().timestamp_millis();
    for p in 0..partitions {
        pipeline.assign((topic.clone(), p), None, now);
    }
    // The rules too, so the `alerts` table fills as it would live.
    if config.detection.enabled {
        let rules = crate::daemon::detection::load_rules(config, &config.detection.rules_dir)?;
        let mut d = crate::detect::detector::Detector::new(
            rules,
            config
                .series
                .parsed_labels()?
                .iter()
                .map(|l| l.as_str())
                .collect(),
            config.detection.settings(&config.windows),
        );
        d.set_breaker_settings(crate::daemon::detection::breaker_settings(config));
        d.set_budgets(config.budgets.clone());
        pipeline.set_detector(d);
    }
    let mut synth = Synth::new(&config.produce, now);
    let mut offsets = vec![0i64; partitions as usize];
    let mut report = GenerateReport::default();
    let commit =
        |pipeline: &mut Pipeline, report: &mut GenerateReport| -> Result<(), GenerateError> {
            for job in pipeline.cut_commits(chrono::Utc::now().timestamp_millis()) {
                if job.is_empty() {
                    continue;
                }
                for w in committer.commit(&job)?.written {
                    let e = report.written.entry(w.table).or_default();
                    e.0 += 1;
                    e.1 += w.rows as u64;
                }
            }
            if let Some(a) = pipeline.take_alerts_job() {
                for w in committer.commit_alerts(&a)? {
                    let e = report.written.entry(w.table).or_default();
                    e.0 += 1;
                    e.1 += w.rows as u64;
                }
            }
            Ok(())
        };
    while let Some(m) = synth.next_message(now) {
        let p = match &m.key {
            Some(k) => {
                let h = u64::from_str_radix(&crate::time::fnv_hex([k.as_bytes()]), 16).unwrap_or(0);
                (h % partitions as u64) as i32
            }
            None => 0,
        };
        let offset = offsets[p as usize];
        offsets[p as usize] += 1;
        pipeline.ingest(
            RawMessage {
                topic: &topic,
                partition: p,
                offset,
                timestamp_ms: None,
                payload: m.payload.as_deref(),
            },
            now,
        );
        report.messages += 1;
        if report.messages.is_multiple_of(50_000) {
            let wall = chrono::Utc::now().timestamp_millis();
            pipeline.advance(wall);
            if pipeline.commit_due(wall) {
                commit(&mut pipeline, &mut report)?;
            }
        }
    }
    pipeline.close_all_windows();
    commit(&mut pipeline, &mut report)?;
    report.elapsed = started.elapsed();
    Ok(report)
}
