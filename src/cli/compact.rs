//! `driftwatch compact`: compact closed hours now (the daemon does it in the background).

use std::path::PathBuf;

use super::{load_or_default, Failure};

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
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
}

const EXAMPLES: &str = r#"Examples:
  driftwatch compact --data-dir ./driftwatch-data
  driftwatch compact --data-dir /tmp/dw --after 0s    # every closed hour, now"#;

pub async fn run(args: Args) -> Result<(), Failure> {
    let Args {
        data_dir,
        after,
        config,
    } = args;
    let c = load_or_default(config.as_deref())?;
    let mut cfg = c.storage.compaction.clone();
    if let Some(a) = after {
        cfg.after = a;
    }
    if !data_dir.join(crate::storage::commit::STATE_DIR).is_dir() {
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
        crate::storage::compact::Compactor::new(&data_dir, c.storage.zstd_level, cfg, labels)
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
            crate::storage::rollup::TABLE,
            report.rolled_up
        );
    }
    Ok(())
}
