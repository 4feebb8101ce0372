//! Detection delay of the shipped rules on the scenario streams (`benches/detection/run.sh`
//! runs this, then River on the same files).
//!
//! For every scenario of `driftwatch::traffic::scenario::scenarios()`: writes the stream as
//! JSON lines of the event contract (`<dir>/<name>.jsonl`), reads the file back through the
//! daemon's decoder, the window state (watermark, slices) and the detector with the shipped
//! rules, and records when the scenario's rule first fired after the onset (event time, when
//! the evaluation could run) and every alert before it. `<dir>/manifest.json` lists the
//! files, their onsets and driftwatch's results for `river_bench.py`.
//!
//! Usage: `cargo bench --bench detection -- [DIR]` (default `target/detection`).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use driftwatch::config::Config;
use driftwatch::decode::{Decoded, Decoder};
use driftwatch::detect::alerts::AlertState;
use driftwatch::detect::detector::Detector;
use driftwatch::traffic::scenario::{scenarios, to_json_line, Generator, Scenario, T0};
use driftwatch::window::series::SeriesRegistry;
use driftwatch::window::state::WindowState;

fn main() -> anyhow::Result<()> {
    let dir = std::env::args()
        .skip(1)
        .find(|a| !a.starts_with("--"))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/detection"));
    std::fs::create_dir_all(&dir)?;
    let mut manifest = Vec::new();
    for sc in scenarios() {
        let file = dir.join(format!("{}.jsonl", sc.name));
        let events = write_stream(&sc, &file)?;
        let r = detect(&sc, &file)?;
        eprintln!(
            "{:<34} {:>7} events  {} fired {}  false alarms before onset: {}",
            sc.name,
            events,
            sc.rule,
            r.delay_ms.map_or("never".to_string(), |d| format!(
                "{} s after onset",
                d / 1000
            )),
            r.false_alarms.len()
        );
        manifest.push(serde_json::json!({
            "name": sc.name,
            "description": sc.description,
            "file": file.file_name().and_then(|f| f.to_str()),
            "onset_ms": sc.onset_ms,
            "start_ms": T0,
            "end_ms": sc.end_ms,
            "events": events,
            "rule": sc.rule,
            "goal_s": sc.goal_ms / 1000,
            "signal": signal_of(sc.rule),
            "driftwatch": {
                "delay_s": r.delay_ms.map(|d| d as f64 / 1000.0),
                "estimated_onset_offset_s": r.onset_error_ms.map(|d| d as f64 / 1000.0),
                "false_alarms": r.false_alarms,
            },
        }));
    }
    let path = dir.join("manifest.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest)?)?;
    eprintln!("wrote {}", path.display());
    Ok(())
}

/// Which raw value River is fed for the scenario's signal.
fn signal_of(rule: &str) -> &'static str {
    match rule {
        "p99_latency_regression" => "latency_ms",
        "judge_score_drop" => "judge_score",
        _ => "error",
    }
}

fn write_stream(sc: &Scenario, file: &Path) -> anyhow::Result<u64> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    let mut g = Generator::new(sc.seed);
    let mut t = T0;
    while t < sc.end_ms {
        for ev in g.second(t, &sc.traffic_at(t)) {
            writeln!(out, "{}", to_json_line(&ev))?;
        }
        t += 1000;
    }
    out.flush()?;
    Ok(g.count())
}

struct Outcome {
    delay_ms: Option<i64>,
    onset_error_ms: Option<i64>,
    false_alarms: Vec<String>,
}

fn detect(sc: &Scenario, file: &Path) -> anyhow::Result<Outcome> {
    let config = Config::default();
    let labels = config.series.parsed_labels()?;
    let names: Vec<&'static str> = labels.iter().map(|l| l.as_str()).collect();
    let rules = driftwatch::daemon::detection::load_rules(&config, Path::new("rules"))?;
    let mut state = WindowState::new(
        &config.windows,
        SeriesRegistry::new(labels, 10_000),
        &driftwatch::window::state::ScoresConfig {
            join_capacity: 0,
            ..Default::default()
        },
    );
    let mut detector = Detector::new(rules, names, config.detection.settings(&config.windows));
    let decoder = Decoder::new(config.limits.clone(), config.prices.clone());
    let slice_lateness = config.windows.slice_lateness.as_millis() as i64;
    let mut transitions = Vec::new();
    let mut second = T0;
    let advance = |state: &mut WindowState, detector: &mut Detector, now: i64, out: &mut Vec<_>| {
        let closed = state.advance(now);
        for s in state.take_closed_slices() {
            detector.observe_slice(s.series.values(), s.start_ms, 0, &s.sketch);
        }
        for w in &closed {
            for (k, sk) in &w.series {
                detector.observe_window(k.values(), w.start_ms, sk);
            }
        }
        out.extend(detector.evaluate(state.watermark_ms(), state.fast_watermark_ms()));
    };
    let reader = std::io::BufReader::new(std::fs::File::open(file)?);
    for (offset, line) in reader.lines().enumerate() {
        let line = line?;
        let Ok(Decoded::Request(ev)) = decoder.decode(Some(line.as_bytes()), sc.end_ms + 3_600_000)
        else {
            anyhow::bail!("{}:{}: not a request event", file.display(), offset + 1);
        };
        // Time moves on a second at a time, as in the detection tests.
        while ev.timestamp_ms >= second + 1000 {
            second += 1000;
            advance(&mut state, &mut detector, second, &mut transitions);
        }
        state.observe(&ev, 0, offset as i64, ev.timestamp_ms);
    }
    while second < sc.end_ms {
        second += 1000;
        advance(&mut state, &mut detector, second, &mut transitions);
    }
    let fired: Vec<_> = transitions
        .iter()
        .filter(|t| t.to == AlertState::Firing)
        .collect();
    let false_alarms = fired
        .iter()
        .filter(|t| t.at_ms < sc.onset_ms)
        .map(|t| format!("{} at {}", t.rule, driftwatch::time::rfc3339(t.at_ms)))
        .collect();
    let first = fired
        .iter()
        .find(|t| t.rule == sc.rule && t.at_ms >= sc.onset_ms);
    Ok(Outcome {
        delay_ms: first.map(|t| t.at_ms + slice_lateness - sc.onset_ms),
        onset_error_ms: first.and_then(|t| t.onset_ms).map(|o| o - sc.onset_ms),
        false_alarms,
    })
}
