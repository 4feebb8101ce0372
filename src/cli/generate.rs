//! `driftwatch generate`: synthetic history written straight through the real decoder,
//! windows and Parquet writer, without Kafka.

use std::path::PathBuf;

use super::{load_or_default, Failure};

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
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
}

const EXAMPLES: &str = r#"Examples:
  driftwatch generate --data-dir /tmp/dw --events 10000000 --span 24h
  driftwatch generate --data-dir /tmp/dw --events 100000 --partitions 1 --seed 7"#;

pub async fn run(args: Args) -> Result<(), Failure> {
    let Args {
        data_dir,
        events,
        span,
        partitions,
        seed,
        config,
    } = args;
    let mut c = load_or_default(config.as_deref())?;
    c.storage.data_dir = data_dir;
    c.produce.events = events;
    c.produce.span = span;
    c.produce.seed = seed;
    let r = tokio::task::block_in_place(|| crate::daemon::generate::generate(&c, partitions))
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
