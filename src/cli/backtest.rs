//! `driftwatch backtest`: replay the stored `windows` history through rules and print, per
//! rule, what would have fired and when.

use std::path::PathBuf;

use super::{load_or_default, Failure};

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Rules directory to test [default: detection.rules_dir].
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Data directory holding the `windows` table [default: storage.data_dir].
    #[arg(long = "data-dir", visible_alias = "data", value_name = "DATA_DIR")]
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
}

const EXAMPLES: &str = r#"Examples:
  driftwatch backtest --data-dir ./driftwatch-data
  driftwatch backtest --rules rules/ --from 2026-11-20T00:00:00Z --to 2026-11-21T00:00:00Z --all"#;

pub async fn run(args: Args) -> Result<(), Failure> {
    let Args {
        rules,
        data,
        config,
        from,
        to,
        all,
    } = args;
    let c = load_or_default(config.as_deref())?;
    let dir = rules.unwrap_or_else(|| c.detection.rules_dir.clone());
    let set =
        crate::daemon::detection::load_rules(&c, &dir).map_err(|e| Failure::Config(e.into()))?;
    let data = data.unwrap_or_else(|| c.storage.data_dir.clone());
    let names: Vec<String> = set.rules.iter().map(|r| r.name.clone()).collect();
    let report = tokio::task::block_in_place(|| {
        crate::daemon::detection::backtest(&c, set, &data, from, to)
    })
    .map_err(|e| Failure::Runtime(e.into()))?;
    print!("{}", render_backtest(&names, &data, &report, all));
    Ok(())
}

fn fmt_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_else(|| ms.to_string())
}

/// The backtest report: per rule, what fired and resolved when.
pub fn render_backtest(
    rules: &[String],
    data: &std::path::Path,
    r: &crate::daemon::detection::BacktestReport,
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
            .filter(|t| t.to == crate::detect::alerts::AlertState::Firing)
            .count();
        let _ = writeln!(out, "\n{name}: fired {fired} time(s)");
        for t in ts {
            let shown = all
                || matches!(
                    t.to,
                    crate::detect::alerts::AlertState::Firing
                        | crate::detect::alerts::AlertState::Resolved
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
                if t.to == crate::detect::alerts::AlertState::Firing {
                    match (t.onset_ms, t.detection_delay_ms) {
                        (Some(o), Some(d)) => format!(
                            "{} [onset {}, detected after {} s]",
                            t.summary,
                            fmt_time(o),
                            d / 1000
                        ),
                        _ => t.summary.clone(),
                    }
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

pub(crate) fn parse_time(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is neither RFC 3339 (2026-11-20T00:00:00Z) nor epoch ms: {e}"))
}
