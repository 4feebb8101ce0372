//! `driftwatch analyze`: the configured canary, A/B and shadow analyses judged over the
//! stored history; the verdict as the exit code.

use std::fmt::Write as _;
use std::path::PathBuf;

use super::{config_and_data, Failure};
use crate::daemon::analyze::{analyze, AnalyzeError, AnalyzeQuery};
use crate::detect::analysis::{AnalysisReport, RunClass};

/// Exit code: a run failed.
pub const EXIT_FAIL: u8 = 1;
/// Exit code: no run failed or lacks data, but some are marginal.
pub const EXIT_MARGINAL: u8 = 5;
// Not enough data (or no run started) and run-time errors exit as the gate's do.
use super::gate::{EXIT_NOT_ENOUGH_DATA, EXIT_RUNTIME};

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Analyses to judge, by name [default: every `[[analyses]]` of the config].
    #[arg(value_name = "NAME")]
    names: Vec<String>,
    /// Config file (TOML) with the `[[analyses]]`.
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory [default: storage.data_dir, ./driftwatch-data].
    #[arg(long = "data-dir", visible_alias = "data", value_name = "DATA_DIR")]
    data: Option<PathBuf>,
    /// Start of the history read (RFC 3339 or epoch ms) [default: all of it].
    #[arg(long, value_parser = super::backtest::parse_time)]
    from: Option<i64>,
    /// End of the history read (exclusive).
    #[arg(long, value_parser = super::backtest::parse_time)]
    to: Option<i64>,
    /// Print the reports as JSON (what `GET /api/v1/analyses` returns).
    #[arg(long)]
    json: bool,
}

const EXAMPLES: &str = r#"Examples:
  driftwatch analyze --config driftwatch.toml
  driftwatch analyze chat-canary --config driftwatch.toml --from 2026-12-04T00:00:00Z
  driftwatch analyze --config driftwatch.toml --json

Exit codes: 0 every run passed, 1 a run failed, 3 not enough data (or no run yet),
5 marginal, 2 bad flags or config (no analyses, an unknown name), 4 the history could not
be read."#;

pub async fn run(args: Args) -> Result<(), Failure> {
    let (c, data) = config_and_data(args.config.as_deref(), args.data.as_ref())?;
    let q = AnalyzeQuery {
        names: args.names.clone(),
        from_ms: args.from,
        to_ms: args.to,
    };
    let reports = match analyze(&c, &data, &q).await {
        Ok(r) => r,
        Err(e @ (AnalyzeError::Usage(_) | AnalyzeError::Config(_))) => {
            return Err(Failure::Config(e.into()))
        }
        Err(e) => {
            return Err(Failure::Code(
                EXIT_RUNTIME,
                Some(anyhow::anyhow!("{}: {e}", data.display())),
            ))
        }
    };
    if args.json {
        let v = serde_json::json!({ "analyses": reports });
        println!("{}", serde_json::to_string_pretty(&v).expect("plain data"));
    } else {
        print!("{}", text(&reports));
    }
    let worst = reports
        .iter()
        .map(|r| match r.classification {
            RunClass::Fail => (3, EXIT_FAIL),
            RunClass::Marginal => (2, EXIT_MARGINAL),
            RunClass::NotEnoughData => (1, EXIT_NOT_ENOUGH_DATA),
            RunClass::Pass => (0, 0),
        })
        .max()
        .map_or(0, |w| w.1);
    match worst {
        0 => Ok(()),
        code => Err(Failure::Code(code, None)),
    }
}

fn num(x: Option<f64>) -> String {
    match x {
        Some(v) if v.abs() >= 100.0 => format!("{v:.0}"),
        Some(v) => format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string(),
        None => "-".into(),
    }
}

/// The reports as text: one block per analysis, a table per run.
pub fn text(reports: &[AnalysisReport]) -> String {
    let mut out = String::new();
    for a in reports {
        let _ = writeln!(
            out,
            "{} ({}, service {}): {}{} — {}",
            a.name,
            a.kind.as_str(),
            a.service,
            a.classification.as_str(),
            a.score
                .map(|s| format!(", score {s:.0}"))
                .unwrap_or_default(),
            a.status
        );
        if a.runs.is_empty() {
            let _ = writeln!(out, "  no run: the candidate had no traffic in the span\n");
            continue;
        }
        for r in &a.runs {
            let group: Vec<String> = r.group.iter().map(|(k, v)| format!("{k}={v}")).collect();
            let _ = writeln!(
                out,
                "  run {} {} vs {}{}: {}{} ({}, {} – {}{})",
                r.id,
                r.candidate,
                r.baseline,
                if group.is_empty() {
                    String::new()
                } else {
                    format!(" [{}]", group.join(", "))
                },
                r.classification.as_str(),
                r.score
                    .map(|s| format!(", score {s:.0}"))
                    .unwrap_or_default(),
                match r.status {
                    crate::detect::analysis::RunStatus::Running => "running",
                    crate::detect::analysis::RunStatus::Completed => "completed",
                    crate::detect::analysis::RunStatus::Ended => "ended",
                },
                r.started_at,
                r.ends_at,
                r.failed_at
                    .as_deref()
                    .map(|f| format!(", failed at {f}"))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                out,
                "    {} candidate / {} baseline requests{}{}",
                r.candidate_requests,
                r.baseline_requests,
                r.pairs.map(|p| format!(", {p} pairs")).unwrap_or_default(),
                r.traffic_share
                    .map(|s| format!(", candidate share {:.1} %", s * 100.0))
                    .unwrap_or_default()
            );
            let _ = writeln!(
                out,
                "    {:<22} {:>6} {:>10} {:>10} {:>7} {:>9} {:<7} {:<7}",
                "metric", "weight", "candidate", "baseline", "ratio", "p", "class", "result"
            );
            for m in &r.metrics {
                let _ = writeln!(
                    out,
                    "    {:<22} {:>6} {:>10} {:>10} {:>7} {:>9} {:<7} {:<7}",
                    m.metric,
                    num(Some(m.weight)),
                    num(m.candidate),
                    num(m.baseline),
                    m.ratio
                        .map(|r| format!("{r:.3}"))
                        .unwrap_or_else(|| "-".into()),
                    m.p_value
                        .map(|p| format!("{p:.1e}"))
                        .unwrap_or_else(|| "-".into()),
                    m.classification,
                    m.outcome
                );
            }
            let _ = writeln!(out, "    {}\n", r.reason);
        }
    }
    out
}
