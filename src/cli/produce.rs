//! `driftwatch produce`: publish synthetic LLM traffic (with injected incidents) to a topic.

use std::path::PathBuf;

use super::{load_or_default, Failure};
use crate::config::EventTimeMode;
use clap::ValueEnum;

#[derive(clap::Args, Debug)]
#[command(after_help = EXAMPLES)]
pub struct Args {
    /// Config file (TOML): [kafka] and [produce] are used [default: built-in defaults].
    #[arg(long, env = "DRIFTWATCH_CONFIG")]
    config: Option<PathBuf>,
    /// Write the messages as JSON lines to this file (`-`: standard output) instead of
    /// publishing them, e.g. for `driftwatch replay`. Messages that cannot be one line
    /// (no payload, a line break inside) are left out.
    #[arg(long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Request events to publish [default: produce.events].
    #[arg(long)]
    events: Option<u64>,
    /// Events per second, 0 = as fast as possible [default: produce.rate].
    #[arg(long)]
    rate: Option<f64>,
    /// Publish for this long at --rate instead of a fixed --events count, e.g. 10m.
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<std::time::Duration>,
    /// RNG seed [default: produce.seed].
    #[arg(long)]
    seed: Option<u64>,
    /// Topic [default: produce.topic, else the first of kafka.topics].
    #[arg(long)]
    topic: Option<String>,
    /// Event time: backfill (spread over --span, ending now) or realtime.
    #[arg(long)]
    event_time: Option<EventTime>,
    /// Simulated span in backfill mode, e.g. 3h [default: produce.span].
    #[arg(long, value_parser = humantime::parse_duration)]
    span: Option<std::time::Duration>,
    /// Turn off the injected latency spike.
    #[arg(long)]
    no_latency_spike: bool,
    /// Turn off the injected error burst.
    #[arg(long)]
    no_error_burst: bool,
    /// Turn off the injected judge-score drop.
    #[arg(long)]
    no_judge_drop: bool,
    /// Fraction of malformed messages [default: produce.malformed_ratio].
    #[arg(long)]
    malformed_ratio: Option<f64>,
}

const EXAMPLES: &str = r#"Examples:
  driftwatch produce --config driftwatch.toml --events 50000
  driftwatch produce --output day.jsonl --events 1000000 --span 24h
  driftwatch produce --config driftwatch.toml --rate 20 --duration 10m --event-time realtime
  driftwatch produce --config driftwatch.toml --no-latency-spike --no-error-burst --no-judge-drop"#;

pub async fn run(args: Args) -> Result<(), Failure> {
    let Args {
        config,
        output,
        events,
        rate,
        duration,
        seed,
        topic,
        event_time,
        span,
        no_latency_spike,
        no_error_burst,
        no_judge_drop,
        malformed_ratio,
    } = args;
    let mut c = load_or_default(config.as_deref())?;
    let p = &mut c.produce;
    p.events = events.unwrap_or(p.events);
    p.rate = rate.unwrap_or(p.rate);
    p.duration = duration.or(p.duration);
    p.seed = seed.unwrap_or(p.seed);
    p.topic = topic.or(p.topic.take());
    if let Some(t) = event_time {
        p.event_time = match t {
            EventTime::Backfill => EventTimeMode::Backfill,
            EventTime::Realtime => EventTimeMode::Realtime,
        };
    }
    p.span = span.unwrap_or(p.span);
    p.latency_spike &= !no_latency_spike;
    p.error_burst &= !no_error_burst;
    p.judge_drop &= !no_judge_drop;
    p.malformed_ratio = malformed_ratio.unwrap_or(p.malformed_ratio);
    c.validate().map_err(|e| Failure::Config(e.into()))?;
    if let Some(path) = output {
        let shown = path.display().to_string();
        let name = shown.clone();
        let report = tokio::task::spawn_blocking(move || {
            let end = chrono::Utc::now().timestamp_millis();
            if path.as_os_str() == "-" {
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                crate::traffic::produce::write_lines(&c.produce, &mut out, "-", end)
            } else {
                let file = std::fs::File::create(&path).map_err(|source| {
                    crate::traffic::produce::ProduceError::Write {
                        path: path.display().to_string(),
                        source,
                    }
                })?;
                let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
                crate::traffic::produce::write_lines(&c.produce, &mut out, &name, end)
            }
        })
        .await
        .map_err(|e| Failure::Runtime(e.into()))?
        .map_err(|e| Failure::Runtime(e.into()))?;
        let head = format!("wrote {} lines to {shown}", report.tally.messages());
        eprintln!("{}", summary(&head, &report));
        return Ok(());
    }
    let topic = c.produce_topic().to_string();
    let report =
        tokio::task::spawn_blocking(move || crate::traffic::produce::produce(&c.kafka, &c.produce))
            .await
            .map_err(|e| Failure::Runtime(e.into()))?
            .map_err(|e| Failure::Runtime(e.into()))?;
    let head = format!("produced {} messages to {topic}", report.tally.messages());
    println!("{}", summary(&head, &report));
    Ok(())
}

/// `head`, then the time taken and what the messages were.
fn summary(head: &str, report: &crate::traffic::produce::ProduceReport) -> String {
    let t = &report.tally;
    format!(
        "{head} in {:.1} s: {} requests, {} late scores ({} of unknown requests), {} malformed",
        report.elapsed.as_secs_f64(),
        t.requests,
        t.scores + t.unmatched_scores,
        t.unmatched_scores,
        t.malformed.values().sum::<u64>()
    )
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EventTime {
    Backfill,
    Realtime,
}
