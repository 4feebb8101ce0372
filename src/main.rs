//! The `driftwatch` command: a thin edge that parses arguments, loads config, runs a
//! command and maps errors to exit codes in one place.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

/// The daemon allocates a few small strings per event; mimalloc keeps that cheap.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;
use driftwatch::config::{Config, EventTimeMode};

/// Drift detection for LLM products: consumes LLM request logs from Kafka, keeps event-time
/// window sketches per series and writes them to Parquet.
#[derive(Parser, Debug)]
#[command(name = "driftwatch", version, about, long_about = None)]
struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "DRIFTWATCH_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Consume from Kafka until SIGINT/SIGTERM, then drain and exit.
    Run {
        /// Config file (TOML). Every key can be overridden with DRIFTWATCH_<SECTION>__<KEY>.
        #[arg(long, env = "DRIFTWATCH_CONFIG")]
        config: PathBuf,
    },
    /// Publish synthetic LLM traffic (with injected incidents) to a topic.
    Produce {
        /// Config file (TOML): [kafka] and [produce] are used.
        #[arg(long, env = "DRIFTWATCH_CONFIG")]
        config: PathBuf,
        /// Request events to publish [default: produce.events].
        #[arg(long)]
        events: Option<u64>,
        /// Events per second, 0 = as fast as possible [default: produce.rate].
        #[arg(long)]
        rate: Option<f64>,
        /// Publish for this long at --rate instead of a fixed --events count, e.g. 10m.
        #[arg(long, value_parser = humantime::parse_duration)]
        duration: Option<std::time::Duration>,
        /// RNG seed [default: produce.seed].
        #[arg(long)]
        seed: Option<u64>,
        /// Topic [default: produce.topic, else the first of kafka.topics].
        #[arg(long)]
        topic: Option<String>,
        /// Event time: backfill (spread over --span, ending now) or realtime.
        #[arg(long)]
        event_time: Option<EventTime>,
        /// Simulated span in backfill mode, e.g. 3h [default: produce.span].
        #[arg(long, value_parser = humantime::parse_duration)]
        span: Option<std::time::Duration>,
        /// Turn off the injected latency spike.
        #[arg(long)]
        no_latency_spike: bool,
        /// Turn off the injected error burst.
        #[arg(long)]
        no_error_burst: bool,
        /// Turn off the injected judge-score drop.
        #[arg(long)]
        no_judge_drop: bool,
        /// Fraction of malformed messages [default: produce.malformed_ratio].
        #[arg(long)]
        malformed_ratio: Option<f64>,
    },
    /// Validate the config and the rule files without starting anything; every error names
    /// the file, line, rule and field. Exit code 2 on any error.
    Check {
        /// Config file (TOML) [default: built-in defaults plus DRIFTWATCH_* variables].
        #[arg(long, env = "DRIFTWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// Rules directory [default: detection.rules_dir].
        #[arg(long)]
        rules: Option<PathBuf>,
    },
    /// Replay the stored `windows` history through rules and print, per rule, what would
    /// have fired and when (same code as the live daemon).
    Backtest {
        /// Rules directory to test [default: detection.rules_dir].
        #[arg(long)]
        rules: Option<PathBuf>,
        /// Data directory holding the `windows` table [default: storage.data_dir].
        #[arg(long)]
        data: Option<PathBuf>,
        /// Config file (TOML) for series labels and window sizes [default: built-in defaults].
        #[arg(long, env = "DRIFTWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// Start of the replay (RFC 3339, e.g. 2026-11-20T00:00:00Z, or epoch ms).
        #[arg(long, value_parser = parse_time)]
        from: Option<i64>,
        /// End of the replay (exclusive).
        #[arg(long, value_parser = parse_time)]
        to: Option<i64>,
        /// Print every transition, not only firing and resolved.
        #[arg(long)]
        all: bool,
    },
    /// Run one read-only SQL query over the Parquet history (tables events, windows, alerts,
    /// quarantine; functions hist_merge and hist_quantile).
    Query {
        /// The SQL (SELECT, WITH, EXPLAIN, SHOW); anything that could change or read
        /// outside the data directory is refused.
        sql: String,
        /// Data directory to query.
        #[arg(long, env = "DRIFTWATCH_DATA_DIR", default_value = "./driftwatch-data")]
        data_dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
        /// Write to this file instead of standard output (required for parquet).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Config file (TOML) for the series labels and query limits [default: built-in
        /// defaults].
        #[arg(long, env = "DRIFTWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// Run the query this many times and print the best execution time to stderr
        /// (benchmarks).
        #[arg(long, default_value_t = 1)]
        repeat: u32,
    },
    /// Write synthetic history straight through the real decoder, windows and Parquet
    /// writer, without Kafka (for benchmarks and trying SQL at scale).
    Generate {
        /// Data directory to write to.
        #[arg(long, env = "DRIFTWATCH_DATA_DIR", default_value = "./driftwatch-data")]
        data_dir: PathBuf,
        /// Request events to generate.
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Simulated time they cover, ending now.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        span: std::time::Duration,
        /// Partitions the messages are spread over (by series key).
        #[arg(long, default_value_t = 4)]
        partitions: i32,
        /// RNG seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Config file (TOML) for series labels, windows and storage [default: built-in
        /// defaults].
        #[arg(long, env = "DRIFTWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Compact closed hours now: rewrite each hour's many small Parquet files (one per Kafka
    /// partition per commit) as one. The daemon does this in the background; this is for
    /// data written while it was off, or by `generate`. Safe beside a running daemon.
    Compact {
        /// Data directory to compact.
        #[arg(long, env = "DRIFTWATCH_DATA_DIR", default_value = "./driftwatch-data")]
        data_dir: PathBuf,
        /// Compact an hour once it ended, and its newest file was written, this long ago
        /// [default: `storage.compaction.after`, 1h].
        #[arg(long, value_parser = humantime::parse_duration)]
        after: Option<std::time::Duration>,
        /// Config file (TOML) for the zstd level and compaction settings [default: built-in
        /// defaults].
        #[arg(long, env = "DRIFTWATCH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Run everything on an embedded Kafka with synthetic traffic, then print a summary.
    Demo {
        /// Where the Parquet tables go.
        #[arg(long, env = "DRIFTWATCH_DATA_DIR", default_value = "./driftwatch-data")]
        data_dir: PathBuf,
        /// Request events to generate.
        #[arg(long, default_value_t = 60_000)]
        events: u64,
        /// RNG seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Requests per second sent to the embedded broker; 0 = as fast as the pipeline reads.
        #[arg(long, default_value_t = 0.0)]
        rate: f64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    /// JSON lines: one object per row.
    Json,
    Parquet,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EventTime {
    Backfill,
    Realtime,
}

/// Exit codes: 0 success, 1 runtime failure, 2 bad config or usage.
enum Failure {
    Config(anyhow::Error),
    Runtime(anyhow::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
        Err(Failure::Runtime(e)) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rdkafka=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn load(path: &std::path::Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| Failure::Config(e.into()))
}

fn load_or_default(path: Option<&std::path::Path>) -> Result<Config, Failure> {
    match path {
        Some(p) => load(p),
        None => Config::from_env_only().map_err(|e| Failure::Config(e.into())),
    }
}

fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is neither RFC 3339 (2026-11-20T00:00:00Z) nor epoch ms: {e}"))
}

/// What `check` says about delivery: channels, routes, silences, the breaker, and what
/// would fail at start (a secret's environment variable not set here) or be skipped (a rule
/// naming a channel that is not configured).
fn notify_summary(c: &Config, rules: &driftwatch::rules::RuleSet) -> Vec<String> {
    use driftwatch::notify::config::ChannelConfig;
    let n = &c.notify;
    let mut out = Vec::new();
    if !n.enabled || n.channels.is_empty() {
        out.push("notify: no channels configured: alerts are recorded, not sent".to_string());
    } else {
        let names: Vec<String> = n
            .channels
            .iter()
            .map(|(k, v)| format!("{k} ({})", v.kind()))
            .collect();
        out.push(format!(
            "notify: ok ({}; {} routes; {} silences; group_wait {} group_interval {} repeat_interval {})",
            names.join(", "),
            n.routes.len(),
            n.silences.len(),
            humantime::format_duration(n.group_wait),
            humantime::format_duration(n.group_interval),
            humantime::format_duration(n.repeat_interval),
        ));
        for (name, ch) in &n.channels {
            let vars: Vec<&String> = match ch {
                ChannelConfig::Webhook { secret_env, .. } => secret_env.iter().collect(),
                ChannelConfig::Pagerduty {
                    routing_key_env, ..
                } => vec![routing_key_env],
                ChannelConfig::Email {
                    username_env,
                    password_env,
                    ..
                } => username_env.iter().chain(password_env.iter()).collect(),
            };
            for v in vars {
                if std::env::var(v).map_or(true, |x| x.is_empty()) {
                    out.push(format!(
                        "  warning: channel {name}: environment variable {v} is not set here; `run` refuses to start without it"
                    ));
                }
            }
        }
        for r in &rules.rules {
            for ch in &r.channels {
                if !n.channels.contains_key(ch) {
                    out.push(format!(
                        "  note: rule {} names channel {ch:?}, which is not configured: skipped",
                        r.name
                    ));
                }
            }
        }
    }
    let b = &c.breaker;
    let breaker_rules = rules
        .rules
        .iter()
        .filter(|r| r.action == Some(driftwatch::rules::Action::CircuitBreaker))
        .count();
    out.push(format!(
        "breaker: {} ({} rule(s); per {}; cooldown {} doubling to {}; probe {}; gateway channels {:?}{})",
        if b.enabled { "on" } else { "off" },
        breaker_rules,
        match b.scope {
            driftwatch::breaker::Scope::Model => "model",
            driftwatch::breaker::Scope::Series => "series",
        },
        humantime::format_duration(b.cooldown),
        humantime::format_duration(b.max_cooldown),
        humantime::format_duration(b.probe),
        b.channels,
        if b.channels.iter().any(|ch| n.channels.contains_key(ch)) {
            ""
        } else {
            ", none configured: transitions are recorded, no gateway is called"
        }
    ));
    out
}

fn fmt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

async fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Check { config, rules } => {
            let c = load_or_default(config.as_deref())?;
            let name = config
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "defaults".into());
            let dir = rules.unwrap_or_else(|| c.detection.rules_dir.clone());
            let set =
                driftwatch::replay::load_rules(&c, &dir).map_err(|e| Failure::Config(e.into()))?;
            println!(
                "{}: ok ({} rules in {} files)",
                dir.display(),
                set.rules.len(),
                set.files.len()
            );
            for r in &set.rules {
                println!(
                    "  {:<28} {:<8} {} over {} every {}",
                    r.name,
                    r.severity.as_str(),
                    r.signal.describe(),
                    humantime::format_duration(std::time::Duration::from_millis(r.over_ms as u64)),
                    humantime::format_duration(std::time::Duration::from_millis(r.every_ms as u64)),
                );
            }
            println!(
                "{}: ok (kafka {} topics {:?} group {}; series by {:?}; {} s windows; data in {})",
                name,
                c.kafka.bootstrap_servers,
                c.kafka.topics,
                c.kafka.group_id,
                c.series.labels,
                c.windows.width.as_secs(),
                c.storage.data_dir.display()
            );
            for line in notify_summary(&c, &set) {
                println!("{line}");
            }
            Ok(())
        }
        Command::Backtest {
            rules,
            data,
            config,
            from,
            to,
            all,
        } => {
            let c = load_or_default(config.as_deref())?;
            let dir = rules.unwrap_or_else(|| c.detection.rules_dir.clone());
            let set =
                driftwatch::replay::load_rules(&c, &dir).map_err(|e| Failure::Config(e.into()))?;
            let data = data.unwrap_or_else(|| c.storage.data_dir.clone());
            let names: Vec<String> = set.rules.iter().map(|r| r.name.clone()).collect();
            let report = tokio::task::block_in_place(|| {
                driftwatch::replay::backtest(&c, set, &data, from, to)
            })
            .map_err(|e| Failure::Runtime(e.into()))?;
            print!("{}", render_backtest(&names, &data, &report, all));
            Ok(())
        }
        Command::Run { config } => {
            let c = load(&config)?;
            run(c).await.map_err(Failure::Runtime)
        }
        Command::Produce {
            config,
            events,
            rate,
            duration,
            seed,
            topic,
            event_time,
            span,
            no_latency_spike,
            no_error_burst,
            no_judge_drop,
            malformed_ratio,
        } => {
            let mut c = load(&config)?;
            let p = &mut c.produce;
            p.events = events.unwrap_or(p.events);
            p.rate = rate.unwrap_or(p.rate);
            p.duration = duration.or(p.duration);
            p.seed = seed.unwrap_or(p.seed);
            p.topic = topic.or(p.topic.take());
            if let Some(t) = event_time {
                p.event_time = match t {
                    EventTime::Backfill => EventTimeMode::Backfill,
                    EventTime::Realtime => EventTimeMode::Realtime,
                };
            }
            p.span = span.unwrap_or(p.span);
            p.latency_spike &= !no_latency_spike;
            p.error_burst &= !no_error_burst;
            p.judge_drop &= !no_judge_drop;
            p.malformed_ratio = malformed_ratio.unwrap_or(p.malformed_ratio);
            c.validate().map_err(|e| Failure::Config(e.into()))?;
            let topic = c.produce_topic().to_string();
            let report = tokio::task::spawn_blocking(move || driftwatch::produce::produce(&c))
                .await
                .map_err(|e| Failure::Runtime(e.into()))?
                .map_err(|e| Failure::Runtime(e.into()))?;
            let t = &report.tally;
            println!(
                "produced {} messages to {topic} in {:.1} s: {} requests, {} late scores, {} malformed",
                t.messages(),
                report.elapsed.as_secs_f64(),
                t.requests,
                t.scores,
                t.malformed.values().sum::<u64>()
            );
            Ok(())
        }
        Command::Query {
            sql,
            data_dir,
            format,
            output,
            config,
            repeat,
        } => {
            let c = load_or_default(config.as_deref())?;
            let labels: Vec<&str> = c
                .series
                .parsed_labels()
                .map_err(|e| Failure::Config(e.into()))?
                .iter()
                .map(|l| l.as_str())
                .collect();
            let format = match format {
                OutputFormat::Table => driftwatch::query::Format::Table,
                OutputFormat::Csv => driftwatch::query::Format::Csv,
                OutputFormat::Json => driftwatch::query::Format::Json,
                OutputFormat::Parquet => driftwatch::query::Format::Parquet,
            };
            if format == driftwatch::query::Format::Parquet && output.is_none() {
                return Err(Failure::Config(anyhow::anyhow!(
                    "--format parquet needs --output FILE"
                )));
            }
            let engine = driftwatch::query::QueryEngine::open(&data_dir, &labels)
                .map_err(|e| Failure::Config(e.into()))?;
            let mut best = std::time::Duration::MAX;
            let mut result = None;
            for _ in 0..repeat.max(1) {
                let started = std::time::Instant::now();
                let out = engine.run(&sql, &c.query.limits()).await.map_err(|e| {
                    if e.is_client_error() {
                        Failure::Config(e.into())
                    } else {
                        Failure::Runtime(e.into())
                    }
                })?;
                best = best.min(started.elapsed());
                result = Some(out);
            }
            let out = result.expect("ran at least once");
            if repeat > 1 {
                eprintln!(
                    "query: best {:.1} ms of {repeat} runs, {} rows",
                    best.as_secs_f64() * 1000.0,
                    out.rows()
                );
            }
            let bytes = driftwatch::query::encode_output(&out, format)
                .map_err(|e| Failure::Runtime(e.into()))?;
            match output {
                Some(path) => std::fs::write(&path, &bytes).map_err(|e| {
                    Failure::Runtime(anyhow::anyhow!("writing {}: {e}", path.display()))
                })?,
                None => {
                    use std::io::Write;
                    std::io::stdout()
                        .write_all(&bytes)
                        .map_err(|e| Failure::Runtime(e.into()))?;
                }
            }
            Ok(())
        }
        Command::Generate {
            data_dir,
            events,
            span,
            partitions,
            seed,
            config,
        } => {
            let mut c = load_or_default(config.as_deref())?;
            c.storage.data_dir = data_dir;
            c.produce.events = events;
            c.produce.span = span;
            c.produce.seed = seed;
            let r = tokio::task::block_in_place(|| driftwatch::generate::generate(&c, partitions))
                .map_err(|e| Failure::Runtime(e.into()))?;
            println!(
                "generated {} messages in {:.1} s ({:.0}/s) into {}",
                r.messages,
                r.elapsed.as_secs_f64(),
                r.messages as f64 / r.elapsed.as_secs_f64().max(1e-9),
                c.storage.data_dir.display()
            );
            for (table, (files, rows)) in &r.written {
                println!("  {table:<10} {rows:>10} rows in {files} files");
            }
            Ok(())
        }
        Command::Compact {
            data_dir,
            after,
            config,
        } => {
            let c = load_or_default(config.as_deref())?;
            let mut cfg = c.storage.compaction.clone();
            if let Some(a) = after {
                cfg.after = a;
            }
            if !data_dir.join(driftwatch::commit::STATE_DIR).is_dir() {
                return Err(Failure::Config(anyhow::anyhow!(
                    "{} is not a driftwatch data directory (it has no state/); pass --data-dir",
                    data_dir.display()
                )));
            }
            let started = std::time::Instant::now();
            let labels = c
                .series
                .parsed_labels()
                .map_err(|e| Failure::Config(e.into()))?
                .iter()
                .map(|l| l.as_str().to_string())
                .collect();
            let compactor =
                driftwatch::compact::Compactor::new(&data_dir, c.storage.zstd_level, cfg, labels)
                    .map_err(|e| Failure::Runtime(e.into()))?;
            let now = chrono::Utc::now().timestamp_millis();
            let report = tokio::task::block_in_place(|| compactor.run_pass(now, &|| false))
                .map_err(|e| Failure::Runtime(e.into()))?
                .ok_or_else(|| {
                    Failure::Runtime(anyhow::anyhow!(
                        "another process is compacting {}; try again when it is done",
                        data_dir.display()
                    ))
                })?;
            let done = &report.compacted;
            let mut by_table: std::collections::BTreeMap<&str, (usize, usize, u64, u64, u64)> =
                std::collections::BTreeMap::new();
            for h in done {
                let e = by_table.entry(h.table).or_default();
                e.0 += 1;
                e.1 += h.files_in;
                e.2 += h.rows;
                e.3 += h.bytes_in;
                e.4 += h.bytes_out;
            }
            println!(
                "compacted {} hours in {:.1} s",
                done.len(),
                started.elapsed().as_secs_f64()
            );
            for (table, (hours, files, rows, bin, bout)) in by_table {
                println!(
                    "  {table:<10} {files:>6} files -> {hours} ({rows} rows, {:.1} MB -> {:.1} MB)",
                    bin as f64 / 1e6,
                    bout as f64 / 1e6
                );
            }
            if report.rolled_up > 0 {
                println!(
                    "  {:<10} {} hours rolled up from windows",
                    driftwatch::rollup::TABLE,
                    report.rolled_up
                );
            }
            Ok(())
        }
        Command::Demo {
            data_dir,
            events,
            seed,
            rate,
        } => {
            let opts = driftwatch::demo::DemoOptions {
                data_dir,
                events,
                seed,
                rate,
            };
            eprintln!("driftwatch demo: starting an embedded Kafka and producing {events} requests of synthetic traffic...");
            let report = driftwatch::demo::demo(&opts)
                .await
                .map_err(|e| Failure::Runtime(e.into()))?;
            print!("{}", report.render());
            Ok(())
        }
    }
}

/// The backtest report: per rule, what fired and resolved when.
fn render_backtest(
    rules: &[String],
    data: &std::path::Path,
    r: &driftwatch::replay::BacktestReport,
    all: bool,
) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let span = match (r.first_ms, r.last_ms) {
        (Some(a), Some(b)) => format!("{} .. {} UTC", fmt_time(a), fmt_time(b)),
        _ => "no windows".into(),
    };
    let _ = writeln!(
        out,
        "backtest over {} window rows in {} ({span}); {} evaluations",
        r.windows,
        data.display(),
        r.evaluations
    );
    for name in rules {
        let ts: Vec<_> = r.transitions.iter().filter(|t| &t.rule == name).collect();
        let fired = ts
            .iter()
            .filter(|t| t.to == driftwatch::alerts::AlertState::Firing)
            .count();
        let _ = writeln!(out, "\n{name}: fired {fired} time(s)");
        for t in ts {
            let shown = all
                || matches!(
                    t.to,
                    driftwatch::alerts::AlertState::Firing
                        | driftwatch::alerts::AlertState::Resolved
                );
            if !shown {
                continue;
            }
            let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "  {} {:<8} {{{}}} {}",
                fmt_time(t.at_ms),
                t.to.as_str(),
                labels.join(","),
                if t.to == driftwatch::alerts::AlertState::Firing {
                    t.summary.clone()
                } else {
                    t.reason.clone()
                }
            );
        }
    }
    if !r.breakers.is_empty() {
        let _ = writeln!(
            out,
            "\ncircuit breakers: {} transition(s)",
            r.breakers.len()
        );
        for b in &r.breakers {
            let _ = writeln!(
                out,
                "  {} breaker {:<9} {} -> {} {}",
                fmt_time(b.at_ms),
                b.primary_model.as_deref().unwrap_or(&b.key),
                b.from.as_str(),
                b.to.as_str(),
                b.reason
            );
        }
    }
    out
}

async fn run(config: Config) -> anyhow::Result<()> {
    let (metrics, registry) = driftwatch::metrics::Metrics::new();
    let health = Arc::new(driftwatch::source::Health::default());
    let addr: SocketAddr = config.http.listen.parse()?;
    let (stop_http, http_stopped) = tokio::sync::oneshot::channel::<()>();
    let token = match &config.http.api_token_env {
        None => None,
        Some(var) => Some(std::env::var(var).ok().filter(|t| !t.is_empty()).ok_or_else(|| {
            anyhow::anyhow!(
                "http.api_token_env: environment variable {var} is not set; export the token or remove the setting"
            )
        })?),
    };
    let query = config.query.enabled.then(|| driftwatch::http::QueryApi {
        data_dir: config.storage.data_dir.clone(),
        labels: config
            .series
            .parsed_labels()
            .map(|l| l.iter().map(|l| l.as_str()).collect())
            .unwrap_or_default(),
        limits: config.query.limits(),
    });
    let (bound, server) =
        driftwatch::http::serve(addr, registry, health.clone(), token, query, async {
            let _ = http_stopped.await;
        })
        .await
        .map_err(|e| anyhow::anyhow!("binding http.listen {addr}: {e}"))?;
    tracing::info!(%bound, "serving /healthz /readyz /metrics /api/v1/alerts /api/v1/breakers /api/v1/silences");
    let report = driftwatch::source::run(
        &config,
        metrics,
        health,
        shutdown_signal(),
        Default::default(),
    )
    .await?;
    let _ = stop_http.send(());
    let _ = server.await;
    tracing::info!(
        messages = report.pipeline.messages,
        events = report.pipeline.requests,
        windows = report.windows.windows_closed,
        "stopped cleanly"
    );
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT: draining"),
        _ = term => tracing::info!("SIGTERM: draining"),
    }
}
