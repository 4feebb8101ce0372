//! `driftwatch query`: one read-only SQL query over the Parquet history.

use std::path::PathBuf;

use super::{load_or_default, Failure};
use clap::ValueEnum;

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
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
}

const EXAMPLES: &str = r#"Examples:
  driftwatch query "SELECT count(*) FROM events"
  driftwatch query --format csv "SELECT model, hist_quantile(hist_merge(latency_ms_hist), 0.99) AS p99 FROM windows GROUP BY model"
  driftwatch query --format parquet --output errors.parquet "SELECT * FROM events WHERE status = 'error'""#;

pub async fn run(args: Args) -> Result<(), Failure> {
    let Args {
        sql,
        data_dir,
        format,
        output,
        config,
        repeat,
    } = args;
    let c = load_or_default(config.as_deref())?;
    let labels: Vec<&str> = c
        .series
        .parsed_labels()
        .map_err(|e| Failure::Config(e.into()))?
        .iter()
        .map(|l| l.as_str())
        .collect();
    let format = match format {
        OutputFormat::Table => crate::query::Format::Table,
        OutputFormat::Csv => crate::query::Format::Csv,
        OutputFormat::Json => crate::query::Format::Json,
        OutputFormat::Parquet => crate::query::Format::Parquet,
    };
    if format == crate::query::Format::Parquet && output.is_none() {
        return Err(Failure::Config(anyhow::anyhow!(
            "--format parquet needs --output FILE"
        )));
    }
    let engine = crate::query::QueryEngine::open(&data_dir, &labels)
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
    let bytes =
        crate::query::encode_output(&out, format).map_err(|e| Failure::Runtime(e.into()))?;
    match output {
        Some(path) => std::fs::write(&path, &bytes)
            .map_err(|e| Failure::Runtime(anyhow::anyhow!("writing {}: {e}", path.display())))?,
        None => {
            use std::io::Write;
            std::io::stdout()
                .write_all(&bytes)
                .map_err(|e| Failure::Runtime(e.into()))?;
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OutputFormat {
    Table,
    Csv,
    /// JSON lines: one object per row.
    Json,
    Parquet,
}
