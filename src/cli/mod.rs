//! The `driftwatch` command line: one module per subcommand, each with its arguments
//! (`Args`, examples in `--help`) and one `run` function. `main.rs` only parses and maps a
//! [`Failure`] to an exit code; everything a command wires lives in [`crate::daemon`].

use clap::{Parser, Subcommand, ValueEnum};

use crate::config::Config;

pub mod analyze;
pub mod backtest;
pub mod check;
pub mod compact;
pub mod demo;
pub mod gate;
pub mod generate;
pub mod incident;
pub mod produce;
pub mod query;
pub mod registry;
pub mod replay;
pub mod run;

/// Drift detection for LLM products: consumes LLM request logs from Kafka, keeps event-time
/// window sketches per series and writes them to Parquet.
#[derive(Parser, Debug)]
#[command(name = "driftwatch", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "DRIFTWATCH_LOG_FORMAT",
        default_value = "text"
    )]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Consume from Kafka until SIGINT/SIGTERM, then drain and exit.
    Run(run::Args),
    /// Publish synthetic LLM traffic (with injected incidents) to a topic.
    Produce(produce::Args),
    /// Validate the config and the rule files without starting anything; every error names
    /// the file, line, rule and field. Exit code 2 on any error.
    Check(check::Args),
    /// Replay the stored `windows` history through rules and print, per rule, what would
    /// have fired and when (same code as the live daemon).
    Backtest(backtest::Args),
    /// Run one read-only SQL query over the Parquet history (tables events, windows, alerts,
    /// quarantine; functions hist_merge and hist_quantile).
    Query(query::Args),
    /// Write synthetic history straight through the real decoder, windows and Parquet
    /// writer, without Kafka (for benchmarks and trying SQL at scale).
    Generate(generate::Args),
    /// Compact closed hours now: rewrite each hour's many small Parquet files (one per Kafka
    /// partition per commit) as one. The daemon does this in the background; this is for
    /// data written while it was off, or by `generate`. Safe beside a running daemon.
    Compact(compact::Args),
    /// Run everything on an embedded Kafka with synthetic traffic, then print a summary.
    Demo(demo::Args),
    /// The model registry: import prices, context windows and deprecations from LiteLLM's
    /// table into `models.yaml`.
    Registry(registry::Args),
    /// Prompt CI gate: compare a candidate prompt version with its baseline over the stored
    /// history (or an eval suite's results file) metric by metric; exit 0 pass, 1 regression,
    /// 2 usage, 3 not enough data, 4 run-time error.
    Gate(gate::Args),
    /// Incident report of one alert firing, for the post-mortem: its timeline, the
    /// estimated onset and detection delay, what changed around it, the runbook (Markdown,
    /// or JSON with --json).
    Incident(incident::Args),
    /// Canary, A/B and shadow analyses (`[[analyses]]`) judged over the stored history, as
    /// the daemon judges them live; exit 0 pass, 1 fail, 3 not enough data, 5 marginal.
    Analyze(analyze::Args),
    /// Replay JSON-lines files (plain, .gz, .zst, or - for standard input) through the same
    /// decode → windows → Parquet → detector → alerts path as `run`, with the same config;
    /// for backfills from log archives and for CI. Notifications only with --notify.
    Replay(replay::Args),
}

/// Why a command failed: bad config or usage (exit code 2), at run time (exit code 1), or
/// a command's own outcome code (`gate`: 1 regression, 3 not enough data, 4 run-time error),
/// with or without a message.
#[derive(Debug)]
pub enum Failure {
    Config(anyhow::Error),
    Runtime(anyhow::Error),
    Code(u8, Option<anyhow::Error>),
}

impl Failure {
    /// 2 for bad config or usage, 1 for a failure at run time, else the command's code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) => 2,
            Failure::Runtime(_) => 1,
            Failure::Code(c, _) => *c,
        }
    }

    /// What to print on standard error (`None`: the command printed its outcome already).
    pub fn message(&self) -> Option<String> {
        match self {
            Failure::Config(e) | Failure::Runtime(e) | Failure::Code(_, Some(e)) => {
                Some(format!("{e:#}"))
            }
            Failure::Code(_, None) => None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message().unwrap_or_default())
    }
}

const EXAMPLES: &str = r#"Examples:
  driftwatch demo                              # everything on an embedded Kafka
  driftwatch check --config driftwatch.toml    # validate config and rules, start nothing
  driftwatch run --config driftwatch.toml      # the daemon
  driftwatch query "SELECT count(*) FROM events"
  driftwatch <COMMAND> --help                  # examples for each command"#;

/// Sets up logging and the runtime, then runs the command.
pub fn execute(cli: Cli) -> Result<(), Failure> {
    init_logging(cli.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("starting the async runtime: {e}")))?;
    runtime.block_on(dispatch(cli.command))
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

pub(crate) fn load(path: &std::path::Path) -> Result<Config, Failure> {
    Config::load(path).map_err(|e| Failure::Config(e.into()))
}

/// The config (or the defaults) and the data directory: `data` when given, else
/// `storage.data_dir`.
pub(crate) fn config_and_data(
    config: Option<&std::path::Path>,
    data: Option<&std::path::PathBuf>,
) -> Result<(Config, std::path::PathBuf), Failure> {
    let c = load_or_default(config)?;
    let data = data.cloned().unwrap_or_else(|| c.storage.data_dir.clone());
    Ok((c, data))
}

pub(crate) fn load_or_default(path: Option<&std::path::Path>) -> Result<Config, Failure> {
    match path {
        Some(p) => load(p),
        None => Config::from_env_only().map_err(|e| Failure::Config(e.into())),
    }
}

async fn dispatch(command: Command) -> Result<(), Failure> {
    match command {
        Command::Run(args) => run::run(args).await,
        Command::Produce(args) => produce::run(args).await,
        Command::Check(args) => check::run(args).await,
        Command::Backtest(args) => backtest::run(args).await,
        Command::Query(args) => query::run(args).await,
        Command::Generate(args) => generate::run(args).await,
        Command::Compact(args) => compact::run(args).await,
        Command::Demo(args) => demo::run(args).await,
        Command::Registry(args) => registry::run(args).await,
        Command::Gate(args) => gate::run(args).await,
        Command::Incident(args) => incident::run(args).await,
        Command::Analyze(args) => analyze::run(args).await,
        Command::Replay(args) => replay::run(args).await,
    }
}
