//! `driftwatch demo`: everything on an embedded Kafka with synthetic traffic, then a summary.

use std::path::PathBuf;

use super::Failure;

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
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
}

const EXAMPLES: &str = r#"Examples:
  driftwatch demo
  driftwatch demo --events 20000 --seed 7 --data-dir /tmp/demo
  driftwatch demo --rate 200    # paced, to watch /metrics while it runs"#;

pub async fn run(args: Args) -> Result<(), Failure> {
    let Args {
        data_dir,
        events,
        seed,
        rate,
    } = args;
    let opts = crate::daemon::demo::DemoOptions {
        data_dir,
        events,
        seed,
        rate,
    };
    eprintln!("driftwatch demo: starting an embedded Kafka and producing {events} requests of synthetic traffic...");
    let report = crate::daemon::demo::demo(&opts)
        .await
        .map_err(|e| Failure::Runtime(e.into()))?;
    print!("{}", report.render());
    Ok(())
}
