//! `driftwatch demo`: the whole pipeline on an embedded Kafka (librdkafka's mock cluster).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

use crate::config::Config;
use crate::daemon::health::Health;
use crate::daemon::ingest::{run, RunError, RunOptions, RunReport};
use crate::metrics::Metrics;
use crate::storage::layout as sink;
use crate::traffic::produce::{produce_paced, Backpressure, ProduceError};
use crate::traffic::synth::SynthTally;

pub const DEMO_TOPIC: &str = "llm-logs";
pub const DEMO_PARTITIONS: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("starting the embedded Kafka mock cluster: {0}")]
    Mock(rdkafka::error::KafkaError),
    #[error("{0} holds files driftwatch did not write; pick an empty or new --data-dir")]
    ForeignDataDir(PathBuf),
    #[error("clearing the previous demo output in {path}: {source}")]
    Clear {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("producing demo traffic: {0}")]
    Produce(#[from] ProduceError),
    #[error(transparent)]
    Run(#[from] RunError),
    #[error("starting the HTTP endpoint: {0}")]
    Http(std::io::Error),
    #[error("internal: {0}")]
    Join(#[from] tokio::task::JoinError),
}

#[derive(Debug, Clone)]
pub struct DemoOptions {
    pub data_dir: PathBuf,
    pub events: u64,
    pub seed: u64,
    /// Requests per second the embedded producer sends.
    pub rate: f64,
}

/// What the demo did, printed by `driftwatch demo`.
#[derive(Debug, Clone)]
pub struct DemoReport {
    pub data_dir: PathBuf,
    pub produced: SynthTally,
    pub produce_time: Duration,
    pub consume_time: Duration,
    pub run: RunReport,
    pub http: std::net::SocketAddr,
}

/// Removes the tables of an earlier demo run; refuses a directory with anything else in it.
fn prepare_data_dir(dir: &Path) -> Result<(), DemoError> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    let mut ours = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if [
            sink::EVENTS,
            sink::WINDOWS,
            sink::QUARANTINE,
            "alerts",
            "state",
            crate::storage::registry_log::TABLE,
        ]
        .contains(&name.as_ref())
        {
            ours.push(e.path());
        } else {
            return Err(DemoError::ForeignDataDir(dir.to_path_buf()));
        }
    }
    for p in ours {
        std::fs::remove_dir_all(&p).map_err(|source| DemoError::Clear {
            path: p.clone(),
            source,
        })?;
    }
    Ok(())
}

/// Runs the demo: mock cluster, synthetic traffic with incidents, the real pipeline.
pub async fn demo(opts: &DemoOptions) -> Result<DemoReport, DemoError> {
    prepare_data_dir(&opts.data_dir)?;
    let cluster = mock_cluster(DEMO_TOPIC, DEMO_PARTITIONS)?;
    let mut config = Config::default();
    config.kafka.bootstrap_servers = cluster.bootstrap_servers();
    config.kafka.topics = vec![DEMO_TOPIC.into()];
    config.kafka.group_id = "driftwatch-demo".into();
    config.kafka.statistics_interval = Duration::from_secs(1);
    config.storage.data_dir = opts.data_dir.clone();
    // The example model registry: prices cache savings, names the fallbacks.
    let state = opts.data_dir.join(crate::storage::layout::STATE_DIR);
    let models = state.join("models.yaml");
    std::fs::create_dir_all(&state)
        .and_then(|()| std::fs::write(&models, crate::registry::EXAMPLE))
        .map_err(|source| DemoError::Write {
            path: models.clone(),
            source,
        })?;
    config.registry.file = Some(models);
    config.produce.events = opts.events;
    config.produce.seed = opts.seed;
    // One hour: enough requests per series and 5 minutes for the default rules' minimums.
    config.produce.span = Duration::from_secs(3600);
    config.produce.rate = opts.rate;
    let report = produce_and_consume(&config).await?;
    drop(cluster);
    Ok(report)
}

/// An in-process Kafka (librdkafka's mock cluster, one broker) with `topic` created.
pub fn mock_cluster(
    topic: &str,
    partitions: i32,
) -> Result<MockCluster<'static, DefaultProducerContext>, DemoError> {
    let cluster = MockCluster::new(1).map_err(DemoError::Mock)?;
    cluster
        .create_topic(topic, partitions, 1)
        .map_err(DemoError::Mock)?;
    Ok(cluster)
}

/// Runs the real pipeline on `config` while `driftwatch produce` publishes
/// `config.produce` traffic to it; returns when everything produced has been consumed and
/// written. The HTTP endpoint is served on a free loopback port meanwhile.
///
/// librdkafka's mock broker keeps only the newest 5 MB of each partition, so the traffic is
/// produced while the pipeline consumes it, at `produce.rate`, and production starts once the
/// consumer owns its partitions.
pub async fn produce_and_consume(config: &Config) -> Result<DemoReport, DemoError> {
    let (metrics, registry) = Metrics::new();
    let health = Arc::new(Health::default());
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let (http, server) = crate::daemon::http::serve(
        "127.0.0.1:0".parse().expect("literal address"),
        registry,
        health.clone(),
        None,
        None,
        async {
            let _ = http_stopped.await;
        },
    )
    .await
    .map_err(DemoError::Http)?;
    let started = Instant::now();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let interrupted = async {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            // A dropped sender (production succeeded) is not a stop request.
            Ok(()) = stopped => {}
        }
    };
    let complete = Arc::new(AtomicBool::new(false));
    let opts_run = RunOptions {
        stop_when_caught_up: Some(complete.clone()),
        tick: Some(Duration::from_millis(100)),
        ..RunOptions::daemon()
    };
    let consumed_counter = metrics.messages_consumed.clone();
    let run_ended = Arc::new(AtomicBool::new(false));
    let running = async {
        let r = run(config, metrics, health.clone(), interrupted, opts_run).await;
        run_ended.store(true, Ordering::SeqCst);
        r
    };
    let producing = async {
        while !health.ready.load(Ordering::SeqCst) {
            if run_ended.load(Ordering::SeqCst) {
                // The consumer failed to start; its error is what the demo reports.
                complete.store(true, Ordering::SeqCst);
                return (Ok(Ok(Default::default())), Duration::ZERO);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let produce_config = config.clone();
        let consumed = consumed_counter;
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            let consumed = move || consumed.get();
            let bp = Backpressure {
                consumed: &consumed,
                max_ahead: 3_000,
            };
            // The simulated span ends at a fixed place on the clock's hour grid — 30 min 30 s
            // past the hour, before now — so windows, hourly baselines and therefore the alerts
            // are the same on every run (and in the README), while the hour still straddles
            // two clock hours and its ends fall inside windows, as real traffic does.
            let hour = crate::time::HOUR_MS;
            let end_ms = crate::time::now_ms().div_euclid(hour) * hour - hour / 2 + 30_000;
            produce_paced(
                &produce_config.kafka,
                &produce_config.produce,
                Some(bp),
                end_ms,
            )
        })
        .await;
        complete.store(true, Ordering::SeqCst);
        if !matches!(result, Ok(Ok(_))) {
            let _ = stop.send(());
        }
        (result, started.elapsed())
    };
    let (report, (produced, produce_time)) = tokio::join!(running, producing);
    let report = report?;
    let produced = produced??;
    let consume_time = started.elapsed();
    let _ = stop_http.send(());
    let _ = server.await;
    Ok(DemoReport {
        data_dir: config.storage.data_dir.clone(),
        produced: produced.tally,
        produce_time,
        consume_time,
        run: report,
        http,
    })
}

impl DemoReport {
    /// The summary `driftwatch demo` prints.
    pub fn render(&self) -> String {
        use std::fmt::Write;
        let r = &self.run;
        let p = &r.pipeline;
        let mut s = String::new();
        let dir = self.data_dir.display();
        let _ = writeln!(s, "\ndriftwatch demo: done");
        let _ = writeln!(
            s,
            "  produced   {} messages to the embedded Kafka ({} partitions) in {:.1} s: {} requests, {} late scores, {} malformed",
            self.produced.messages(),
            DEMO_PARTITIONS,
            self.produce_time.as_secs_f64(),
            self.produced.requests,
            self.produced.scores,
            self.produced.malformed.values().sum::<u64>()
        );
        let _ = writeln!(
            s,
            "  consumed   {} messages in {:.1} s: {} events ({} late), {} late scores joined ({} to windows already written), {} unmatched",
            p.messages,
            self.consume_time.as_secs_f64(),
            p.requests,
            r.windows.late_events,
            p.scores,
            r.windows.scores_corrected,
            p.scores_unmatched
        );
        let _ = writeln!(
            s,
            "  windows    {} rows (series × one-minute windows) over {} series",
            r.windows.series_windows_closed, r.series
        );
        if p.messages < self.produced.messages() {
            let _ = writeln!(
                s,
                "  WARNING    {} messages were dropped by the embedded broker before they were read \
                 (it keeps 5 MB per partition); re-run with a lower --rate",
                self.produced.messages() - p.messages
            );
        }
        let q: u64 = p.quarantined.values().sum();
        let _ = writeln!(s, "  quarantine {q} messages");
        for (reason, n) in &p.quarantined {
            let _ = writeln!(s, "               {n:>6}  {reason}");
        }
        let _ = writeln!(s, "  injected   latency spike (claude-sonnet-4, 30-40 % of the hour), error burst (code-assist, 55-60 %),");
        let _ = writeln!(s, "             judge-score drop (support-bot prompt v13 from 70 %), silent model update (gpt-4o at 50 %)");
        let mut fired: Vec<_> = r
            .transitions
            .iter()
            .filter(|t| t.to == crate::detect::alerts::AlertState::Firing)
            .collect();
        // Alerts of the same tick in a stable order (window and slice ticks interleave).
        fired.sort_by(|a, b| {
            (a.at_ms, &a.rule, &a.fingerprint).cmp(&(b.at_ms, &b.rule, &b.fingerprint))
        });
        let resolved = r.transitions_to(crate::detect::alerts::AlertState::Resolved);
        let _ = writeln!(
            s,
            "  alerts     {} fired, {resolved} resolved (default rules in rules/; every transition in {dir}/alerts/)",
            fired.len()
        );
        for t in fired {
            let at = chrono::DateTime::from_timestamp_millis(t.at_ms)
                .map(|d| d.format("%H:%M:%S").to_string())
                .unwrap_or_default();
            let _ = writeln!(
                s,
                "             {at} {:<7} {}: {}",
                t.severity.as_str(),
                t.rule,
                t.summary
            );
        }
        let _ = writeln!(s, "  files      {dir}/");
        for (table, (files, rows)) in &r.written {
            let _ = writeln!(
                s,
                "               {table:<11} {files:>4} files {rows:>8} rows"
            );
        }
        let _ = writeln!(
            s,
            "  metrics    were served at http://{}/metrics during the run",
            self.http
        );
        let _ = writeln!(s, "\nTry it with DuckDB (pip install duckdb):\n");
        let _ = writeln!(s, "  python3 - <<'EOF'\nimport duckdb\nd = '{dir}'");
        for (title, sql) in example_sql() {
            let _ = writeln!(
                s,
                "print('-- {title}')\nduckdb.sql(f\"\"\"{sql}\"\"\").show()"
            );
        }
        let _ = writeln!(s, "EOF");
        s
    }
}

/// Example queries over the demo output (`{d}` is the data directory).
pub fn example_sql() -> Vec<(&'static str, &'static str)> {
    vec![
        (
            "P99 latency per model and 10 minutes: the spike on claude-sonnet-4",
            "SELECT time_bucket(INTERVAL 10 MINUTE, window_start) AS t, request_model, round(max(latency_ms_p99)) AS p99_ms FROM read_parquet('{d}/windows/**/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY request_model, t",
        ),
        (
            "Error rate of code-assist per 5 minutes: the burst",
            "SELECT time_bucket(INTERVAL 5 MINUTE, window_start) AS t, round(100.0 * sum(error_count) / sum(event_count), 2) AS error_pct FROM read_parquet('{d}/windows/**/*.parquet', hive_partitioning = true) WHERE service = 'code-assist' GROUP BY ALL ORDER BY t",
        ),
        (
            "Faithfulness by prompt version: the drop after v13",
            "SELECT service, prompt_version, round(avg(judge_scores['faithfulness']), 3) AS faithfulness, count(*) AS judged FROM read_parquet('{d}/events/**/*.parquet', hive_partitioning = true) WHERE judge_scores['faithfulness'] IS NOT NULL GROUP BY ALL ORDER BY ALL",
        ),
        (
            "Alert transitions with the numbers that caused them",
            "SELECT strftime(evaluated_at, '%H:%M') AS t, rule, to_state, service, request_model, round(value, 4) AS value, round(baseline, 4) AS baseline, p_value, n_current FROM read_parquet('{d}/alerts/**/*.parquet', hive_partitioning = true) WHERE to_state IN ('firing', 'resolved') ORDER BY evaluated_at",
        ),
        (
            "Quarantined messages by reason",
            "SELECT reason, field, count(*) AS n, any_value(detail) AS example FROM read_parquet('{d}/quarantine/**/*.parquet', hive_partitioning = true) GROUP BY ALL ORDER BY n DESC",
        ),
    ]
}
