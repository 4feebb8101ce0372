//! `driftwatch gate`: the prompt CI gate. A candidate prompt version against its baseline,
//! metric by metric, over the stored history or an eval suite's results file; a table on
//! standard output, JSON, JUnit XML and Markdown files for the CI system, and the verdict as
//! the exit code.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use super::{config_and_data, Failure};
use crate::daemon::gate::{GateError, GateQuery, Populations};
use crate::detect::compare::{
    compare_all, overall, CompareMetric, CompareOptions, MetricResult, Verdict,
};

/// Exit code: a metric regressed.
pub const EXIT_REGRESSION: u8 = 1;
/// Exit code: no metric regressed but some lack the samples to say.
pub const EXIT_NOT_ENOUGH_DATA: u8 = 3;
/// Exit code: the gate could not run (unreadable history, unwritable report).
pub const EXIT_RUNTIME: u8 = 4;

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Data directory holding the window history [default: storage.data_dir, ./driftwatch-data].
    #[arg(long = "data-dir", visible_alias = "data", value_name = "DATA_DIR")]
    data: Option<PathBuf>,
    /// Config file (TOML) for series labels, prices and the registry [default: built-in
    /// defaults].
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// The prompt (`prompt_id`) whose versions are compared.
    #[arg(long = "prompt-id", value_name = "ID")]
    prompt_id: String,
    /// The candidate `prompt_version` (the change under review).
    #[arg(long, value_name = "VERSION")]
    candidate: String,
    /// The baseline `prompt_version` it replaces.
    #[arg(long, value_name = "VERSION")]
    baseline: String,
    /// The candidate's results from an eval suite instead of the history: JSON lines of the
    /// event contract (requests, and score/feedback lines joined by response_id or trace_id).
    #[arg(long = "candidate-file", value_name = "FILE")]
    candidate_file: Option<PathBuf>,
    /// Largest tolerated change in each metric's bad direction (lower judge scores and
    /// feedback; higher latency, errors, tokens, cost): `5%` or `0.05`.
    #[arg(long = "max-drop", default_value = "5%", value_parser = parse_fraction)]
    max_drop: f64,
    /// Family significance level, split evenly over the metrics (Bonferroni).
    #[arg(long, default_value_t = 0.05, value_parser = parse_alpha)]
    alpha: f64,
    /// A metric to compare (repeatable): judge:NAME, feedback, error_rate, latency_p50,
    /// latency_p99, output_tokens, cost [default: every judge score, feedback, error_rate,
    /// latency_p99, output_tokens, cost].
    #[arg(long = "metric", value_name = "METRIC", value_parser = CompareMetric::parse)]
    metrics: Vec<CompareMetric>,
    /// Only series with this label value (repeatable), e.g. `--match service=chat`.
    #[arg(long = "match", value_name = "LABEL=VALUE", value_parser = parse_matcher)]
    matchers: Vec<(String, String)>,
    /// Start of the history read (RFC 3339 or epoch ms) [default: all of it].
    #[arg(long, value_parser = super::backtest::parse_time)]
    from: Option<i64>,
    /// End of the history read (exclusive).
    #[arg(long, value_parser = super::backtest::parse_time)]
    to: Option<i64>,
    /// Write the report as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write the report as JUnit XML to this file (one test case per metric).
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write a Markdown summary (for a pull-request comment) to this file.
    #[arg(long, value_name = "FILE")]
    markdown: Option<PathBuf>,
}

const EXAMPLES: &str = r#"Examples:
  driftwatch gate --prompt-id answer --candidate v13 --baseline v12
  driftwatch gate --prompt-id answer --candidate v13 --baseline v12 --junit gate.xml
  driftwatch gate --prompt-id answer --candidate v13 --baseline v12 --max-drop 3% --metric judge:faithfulness
  driftwatch gate --prompt-id answer --candidate v13 --baseline v12 --candidate-file eval.jsonl

Exit codes: 0 pass, 1 a metric regressed, 2 usage (unknown prompt id or version, bad
flags), 3 not enough data (and no regression), 4 run-time error."#;

fn parse_fraction(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a fraction; write 5% or 0.05"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("{s:?} must be 0 or more, e.g. 5% or 0.05"));
    }
    Ok(v)
}

fn parse_alpha(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number; write e.g. 0.05"))?;
    if !(v > 0.0 && v < 1.0) {
        return Err(format!("{s:?} must be between 0 and 1, e.g. 0.05"));
    }
    Ok(v)
}

fn parse_matcher(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("{s:?}: write LABEL=VALUE, e.g. service=chat")),
    }
}

/// The gate's report, as written to `--json`.
#[derive(Debug, Clone, Serialize)]
pub struct GateReport {
    pub prompt_id: String,
    pub candidate: String,
    pub baseline: String,
    pub candidate_source: String,
    pub baseline_source: String,
    pub candidate_requests: u64,
    pub baseline_requests: u64,
    pub max_drop: f64,
    pub alpha: f64,
    pub verdict: Verdict,
    pub exit_code: u8,
    pub metrics: Vec<MetricResult>,
    /// Results file only: score lines for responses not in the file.
    pub unmatched_scores: u64,
    /// Results file only: lines that did not decode.
    pub rejected_lines: Vec<RejectedLine>,
    /// Results file only: requests of another prompt id or version.
    pub skipped_requests: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct RejectedLine {
    pub line: u64,
    pub reason: String,
}

pub async fn run(args: Args) -> Result<(), Failure> {
    let (c, data) = config_and_data(args.config.as_deref(), args.data.as_ref())?;
    let q = GateQuery {
        prompt_id: args.prompt_id.clone(),
        candidate: args.candidate.clone(),
        baseline: args.baseline.clone(),
        matchers: args.matchers.clone(),
        from_ms: args.from,
        to_ms: args.to,
    };
    if q.candidate == q.baseline {
        return Err(Failure::Config(anyhow::anyhow!(
            "--candidate and --baseline are both {:?}; compare two different versions",
            q.candidate
        )));
    }
    let fail = |e: GateError| match e.is_usage() {
        true => Failure::Config(e.into()),
        false => Failure::Code(EXIT_RUNTIME, Some(e.into())),
    };
    let pops = tokio::task::block_in_place(|| match &args.candidate_file {
        Some(f) => crate::daemon::gate::with_candidate_file(&c, &data, f, &q),
        None => crate::daemon::gate::from_history(&c, &data, &q).and_then(|p| {
            crate::daemon::gate::require_candidate(&p, &q, &data)?;
            Ok(p)
        }),
    })
    .map_err(fail)?;
    for (line, reason) in pops.rejected.iter().take(10) {
        eprintln!("warning: {}:{line}: {reason}", pops.candidate_source);
    }
    let report = gate(&args, &q, pops);
    print!("{}", render_table(&report));
    let write = |path: &PathBuf, text: String| {
        std::fs::write(path, text).map_err(|e| {
            Failure::Code(
                EXIT_RUNTIME,
                Some(anyhow::anyhow!("writing {}: {e}", path.display())),
            )
        })
    };
    if let Some(p) = &args.json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| Failure::Code(EXIT_RUNTIME, Some(e.into())))?;
        write(p, text + "\n")?;
    }
    if let Some(p) = &args.junit {
        write(p, render_junit(&report))?;
    }
    if let Some(p) = &args.markdown {
        write(p, render_markdown(&report))?;
    }
    match report.exit_code {
        0 => Ok(()),
        code => Err(Failure::Code(code, None)),
    }
}

/// Compares the populations and decides.
pub fn gate(args: &Args, q: &GateQuery, pops: Populations) -> GateReport {
    let metrics = if args.metrics.is_empty() {
        CompareMetric::defaults(&pops.candidate, &pops.baseline)
    } else {
        args.metrics.clone()
    };
    let opts = CompareOptions {
        tolerance: args.max_drop,
        alpha: args.alpha,
        ..CompareOptions::default()
    };
    let results = compare_all(&metrics, &pops.candidate, &pops.baseline, &opts);
    let verdict = overall(&results);
    GateReport {
        prompt_id: q.prompt_id.clone(),
        candidate: q.candidate.clone(),
        baseline: q.baseline.clone(),
        candidate_source: pops.candidate_source,
        baseline_source: pops.baseline_source,
        candidate_requests: pops.candidate.requests,
        baseline_requests: pops.baseline.requests,
        max_drop: args.max_drop,
        alpha: args.alpha,
        exit_code: exit_code(verdict),
        verdict,
        metrics: results,
        unmatched_scores: pops.unmatched_scores,
        rejected_lines: pops
            .rejected
            .into_iter()
            .map(|(line, reason)| RejectedLine { line, reason })
            .collect(),
        skipped_requests: pops.skipped,
    }
}

pub fn exit_code(v: Verdict) -> u8 {
    match v {
        Verdict::Regression => EXIT_REGRESSION,
        Verdict::NotEnoughData => EXIT_NOT_ENOUGH_DATA,
        Verdict::Pass | Verdict::Improvement => 0,
    }
}

/// A value with four significant digits.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let digits = (3 - x.abs().log10().floor() as i32).clamp(0, 8) as usize;
    format!("{x:.digits$}")
}

fn pct(x: f64) -> String {
    if x.is_infinite() {
        return if x > 0.0 {
            "+inf".into()
        } else {
            "-inf".into()
        };
    }
    if !x.is_finite() {
        return "-".into();
    }
    format!("{:+.1} %", x * 100.0)
}

fn ci(r: &MetricResult) -> String {
    match r.ci {
        Some((lo, hi)) if lo.is_finite() && hi.is_finite() => {
            format!("[{}, {}]", pct(lo), pct(hi))
        }
        _ => "-".into(),
    }
}

fn p(x: f64) -> String {
    if x.is_finite() {
        format!("{x:.2e}")
    } else {
        "-".into()
    }
}

fn header(r: &GateReport) -> String {
    format!(
        "gate: prompt {:?} {} ({}, {} requests) vs {} ({}, {} requests); max drop {}, alpha {} over {} metrics",
        r.prompt_id,
        r.candidate,
        r.candidate_source,
        r.candidate_requests,
        r.baseline,
        r.baseline_source,
        r.baseline_requests,
        pct(r.max_drop).trim_start_matches('+'),
        r.alpha,
        r.metrics.len()
    )
}

/// The table printed on standard output.
pub fn render_table(r: &GateReport) -> String {
    let mut rows = vec![[
        "metric".to_string(),
        "n cand".into(),
        "n base".into(),
        "candidate".into(),
        "baseline".into(),
        "effect".into(),
        "95% CI".into(),
        "p-value".into(),
        "verdict".into(),
    ]];
    for m in &r.metrics {
        rows.push([
            m.metric.clone(),
            m.n_candidate.to_string(),
            m.n_baseline.to_string(),
            num(m.candidate),
            num(m.baseline),
            pct(m.effect),
            ci(m),
            p(m.p_value),
            m.verdict.as_str().into(),
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = header(r);
    out.push('\n');
    for row in &rows {
        let mut line = String::new();
        for (i, cell) in row.iter().enumerate() {
            let w = widths[i];
            if i == 0 || i == 8 {
                let _ = write!(line, "{cell:<w$}  ");
            } else {
                let _ = write!(line, "{cell:>w$}  ");
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    for m in r
        .metrics
        .iter()
        .filter_map(|m| m.note.as_ref().map(|n| (m, n)))
    {
        let _ = writeln!(out, "  {}: {}", m.0.metric, m.1);
    }
    if r.unmatched_scores > 0 || !r.rejected_lines.is_empty() || r.skipped_requests > 0 {
        let _ = writeln!(
            out,
            "results file: {} unmatched score lines, {} rejected lines, {} requests of other prompts or versions left out",
            r.unmatched_scores,
            r.rejected_lines.len(),
            r.skipped_requests
        );
    }
    let _ = writeln!(
        out,
        "verdict: {} (exit {})",
        r.verdict.as_str(),
        r.exit_code
    );
    out
}

fn xml(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

fn line_of(m: &MetricResult) -> String {
    format!(
        "{}: candidate {} vs baseline {} (n {} / {}), effect {}, 95% CI {}, p {} (level {:.2e})",
        m.metric,
        num(m.candidate),
        num(m.baseline),
        m.n_candidate,
        m.n_baseline,
        pct(m.effect),
        ci(m),
        p(m.p_value),
        m.alpha
    )
}

/// JUnit XML: one test suite, one test case per metric; a regression is a failure, not
/// enough data is skipped.
pub fn render_junit(r: &GateReport) -> String {
    let failures = r
        .metrics
        .iter()
        .filter(|m| m.verdict == Verdict::Regression)
        .count();
    let skipped = r
        .metrics
        .iter()
        .filter(|m| m.verdict == Verdict::NotEnoughData)
        .count();
    let suite = format!(
        "driftwatch gate: prompt {} {} vs {}",
        r.prompt_id, r.candidate, r.baseline
    );
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"driftwatch gate\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">",
        r.metrics.len()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\" time=\"0\">",
        xml(&suite),
        r.metrics.len()
    );
    let classname = format!("driftwatch.gate.{}", r.prompt_id);
    for m in &r.metrics {
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"0\">",
            xml(&m.metric),
            xml(&classname)
        );
        match m.verdict {
            Verdict::Regression => {
                let _ = write!(
                    out,
                    "\n      <failure type=\"regression\" message=\"{}\">{}</failure>\n    ",
                    xml(&format!(
                        "{} regressed by {} (max drop {})",
                        m.metric,
                        pct(m.effect),
                        pct(r.max_drop).trim_start_matches('+')
                    )),
                    xml(&line_of(m))
                );
            }
            Verdict::NotEnoughData => {
                let _ = write!(
                    out,
                    "\n      <skipped message=\"{}\"/>\n    ",
                    xml(m.note.as_deref().unwrap_or("not enough data"))
                );
            }
            Verdict::Pass | Verdict::Improvement => {
                let _ = write!(
                    out,
                    "\n      <system-out>{}</system-out>\n    ",
                    xml(&format!("{}: {}", m.verdict.as_str(), line_of(m)))
                );
            }
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

/// A Markdown summary for a pull-request comment.
pub fn render_markdown(r: &GateReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### driftwatch gate: prompt `{}` {} vs {}: **{}**\n",
        r.prompt_id,
        r.candidate,
        r.baseline,
        r.verdict.as_str()
    );
    out.push_str(
        "| metric | n (candidate / baseline) | candidate | baseline | effect | 95% CI | p-value | verdict |\n",
    );
    out.push_str("|---|---:|---:|---:|---:|---|---:|---|\n");
    for m in &r.metrics {
        let verdict = match m.verdict {
            Verdict::Regression => "**regression**".to_string(),
            v => v.as_str().to_string(),
        };
        let _ = writeln!(
            out,
            "| `{}` | {} / {} | {} | {} | {} | {} | {} | {} |",
            m.metric,
            m.n_candidate,
            m.n_baseline,
            num(m.candidate),
            num(m.baseline),
            pct(m.effect),
            ci(m),
            p(m.p_value),
            verdict
        );
    }
    let _ = writeln!(
        out,
        "\nMax drop {} in each metric's bad direction; alpha {} split over {} metrics. \
         Candidate: {} ({} requests); baseline: {} ({} requests).",
        pct(r.max_drop).trim_start_matches('+'),
        r.alpha,
        r.metrics.len(),
        r.candidate_source,
        r.candidate_requests,
        r.baseline_source,
        r.baseline_requests
    );
    for m in r
        .metrics
        .iter()
        .filter_map(|m| m.note.as_ref().map(|n| (m, n)))
    {
        let _ = writeln!(out, "- `{}`: {}", m.0.metric, m.1);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_drop_takes_a_percentage_or_a_fraction() {
        assert_eq!(parse_fraction("5%").unwrap(), 0.05);
        assert_eq!(parse_fraction("0.05").unwrap(), 0.05);
        assert_eq!(parse_fraction(" 2.5 % ").unwrap(), 0.025);
        assert!(parse_fraction("-1%").is_err());
        assert!(parse_fraction("five").unwrap_err().contains("5%"));
        assert!(parse_alpha("1").is_err());
        assert_eq!(
            parse_matcher("service=chat").unwrap(),
            ("service".into(), "chat".into())
        );
        assert!(parse_matcher("=x").is_err());
    }

    #[test]
    fn numbers_keep_four_significant_digits() {
        assert_eq!(num(0.81234), "0.8123");
        assert_eq!(num(1234.567), "1235");
        assert_eq!(num(0.000123456), "0.0001235");
        assert_eq!(pct(-0.0873), "-8.7 %");
        assert_eq!(pct(f64::INFINITY), "+inf");
        assert_eq!(xml("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }
}
