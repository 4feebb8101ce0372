//! `driftwatch run`: consume from Kafka until SIGINT/SIGTERM, then drain and exit.

use std::path::PathBuf;

use super::{load, Failure};

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Config file (TOML). Every key can be overridden with DRIFTWATCH_<SECTION>__<KEY>.
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    config: PathBuf,
}

const EXAMPLES: &str = r#"Examples:
  driftwatch run --config driftwatch.toml
  DRIFTWATCH_KAFKA__BOOTSTRAP_SERVERS=broker:9092 driftwatch run --config driftwatch.toml
  kill -HUP $(pidof driftwatch)    # reload the rules without a restart"#;

pub async fn run(args: Args) -> Result<(), Failure> {
    let Args { config } = args;
    let c = load(&config)?;
    crate::daemon::run(c, crate::daemon::shutdown_signal())
        .await
        .map_err(Failure::Runtime)
}
