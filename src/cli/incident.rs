//! `driftwatch incident`: the post-mortem report of one alert firing, as Markdown (or JSON).

use std::path::PathBuf;

use super::{config_and_data, Failure};
use crate::daemon::incident::{build, markdown, IncidentQuery};

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// The alert's fingerprint (16 hex digits: the `fingerprint` column of `alerts`, the
    /// API's alerts, every notification).
    #[arg(value_name = "ALERT_FINGERPRINT")]
    fingerprint: String,
    /// Data directory [default: storage.data_dir, ./driftwatch-data].
    #[arg(long = "data-dir", visible_alias = "data", value_name = "DATA_DIR")]
    data: Option<PathBuf>,
    /// Config file (TOML) for the series labels [default: built-in defaults].
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// The firing that started at this time (RFC 3339 or epoch ms) [default: the latest].
    #[arg(long = "fired-at", value_parser = super::backtest::parse_time)]
    fired_at: Option<i64>,
    /// Start of the span the timeline and the changes are read over [default: an hour
    /// before the estimated onset].
    #[arg(long, value_parser = super::backtest::parse_time)]
    from: Option<i64>,
    /// End of the span (exclusive) [default: 10 minutes after the resolution].
    #[arg(long, value_parser = super::backtest::parse_time)]
    to: Option<i64>,
    /// Print the report as JSON (what `GET /api/v1/incidents/{fingerprint}` returns).
    #[arg(long)]
    json: bool,
}

const EXAMPLES: &str = r#"Examples:
  driftwatch incident 3f9a1c0d5e7b2a64
  driftwatch incident 3f9a1c0d5e7b2a64 --fired-at 2026-12-04T13:14:00Z --data-dir /var/lib/driftwatch
  driftwatch incident 3f9a1c0d5e7b2a64 --json

Exit codes: 0 printed, 2 unknown fingerprint (or one that never fired) or bad flags,
1 the data directory could not be read."#;

pub async fn run(args: Args) -> Result<(), Failure> {
    let (c, data) = config_and_data(args.config.as_deref(), args.data.as_ref())?;
    let labels = c
        .series
        .parsed_labels()
        .map_err(|e| Failure::Config(e.into()))?;
    let names: Vec<&str> = labels.iter().map(|l| l.as_str()).collect();
    let engine = crate::query::QueryEngine::open(&data, &names)
        .map_err(|e| Failure::Runtime(anyhow::anyhow!("{}: {e}", data.display())))?;
    let q = IncidentQuery {
        fingerprint: args.fingerprint.clone(),
        fired_at_ms: args.fired_at,
        from_ms: args.from,
        to_ms: args.to,
        outbox_dir: c.notify.outbox_dir.clone(),
    };
    let report = build(&engine, &names, &data, &q)
        .await
        .map_err(|e| match e.is_not_found() {
            true => Failure::Config(e.into()),
            false => Failure::Runtime(e.into()),
        })?;
    if args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::Runtime(anyhow::anyhow!("encoding the report: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", markdown(&report));
    }
    Ok(())
}
