//! `driftwatch replay`: JSON-lines files (plain, .gz, .zst) through the same path as `run`.

use std::io::IsTerminal;
use std::path::PathBuf;

use super::{load_or_default, Failure};

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Config file (TOML), as for `run` [default: built-in defaults].
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Where the tables go [default: storage.data_dir].
    #[arg(long = "data-dir", value_name = "DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Send notifications for the alerts the replay raises (off: a backfill must not page
    /// anyone about last month; the alerts are in the `alerts` table either way).
    #[arg(long)]
    notify: bool,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    quiet: bool,
    /// JSON-lines files of the event contract, read in this order (gzip and zstd are told
    /// by their first bytes); `-` reads standard input.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
}

const EXAMPLES: &str = r#"Examples:
  driftwatch replay --config driftwatch.toml logs/2026-11-30.jsonl.gz logs/2026-12-01.jsonl.zst
  zcat archive/*.gz | driftwatch replay --data-dir ./backfill -
  driftwatch replay --notify --config driftwatch.toml today.jsonl

Each file is a partition of topic <file name>; rows carry offset = line number. A rerun
over the same file goes on from what was committed (nothing new after a complete run);
standard input has no rerun identity (topic stdin-<start ms>, new each time)."#;

pub async fn run(args: Args) -> Result<(), Failure> {
    let Args {
        config,
        data_dir,
        notify,
        quiet,
        files,
    } = args;
    let mut c = load_or_default(config.as_deref())?;
    if let Some(d) = data_dir {
        c.storage.data_dir = d;
    }
    let opts = crate::daemon::replay::ReplayOptions {
        inputs: files,
        notify,
        progress: !quiet && std::io::stderr().is_terminal(),
    };
    let report = crate::daemon::replay::replay(&c, &opts, crate::daemon::shutdown_signal())
        .await
        .map_err(|e| match e {
            crate::daemon::replay::ReplayError::Input(e) => Failure::Config(e.into()),
            e => Failure::Runtime(e.into()),
        })?;
    print!("{}", report.render(&c.storage.data_dir));
    Ok(())
}
