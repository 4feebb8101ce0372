//! `driftwatch gate` on generated histories: request-log lines of the event contract through
//! the daemon's own pipeline (decoder, windows) and Parquet writer into a data directory,
//! then the binary, as a CI job runs it. Known regression → exit 1, known non-regression →
//! exit 0, too little data → exit 3, unknown prompt or version → exit 2; an eval suite's
//! results file as the candidate; the JUnit XML read back by junitparser.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use driftwatch::config::Config;
use driftwatch::daemon::pipeline::Pipeline;
use driftwatch::event::{Feedback, RequestEvent};
use driftwatch::source::RawMessage;
use driftwatch::traffic::scenario::{to_json_line, Generator, Traffic, T0};

use crate::support::*;

const MIN: i64 = 60_000;

/// One stretch of traffic of prompt `answer` at one version.
struct Stretch {
    version: &'static str,
    minutes: i64,
    rate: f64,
    judge_mean: f64,
    latency_median_ms: f64,
}

/// What every request gets beyond [`Generator`]'s draws: the prompt id, feedback (70 %
/// positive, 10 % neutral, 20 % negative on a third of the requests) and a cost.
fn shape(ev: &mut RequestEvent, rng: &mut ChaCha8Rng) {
    ev.prompt_id = Some("answer".into());
    if rng.random_bool(1.0 / 3.0) {
        let u: f64 = rng.random();
        ev.feedback = Some(if u < 0.7 {
            Feedback::Positive
        } else if u < 0.8 {
            Feedback::Neutral
        } else {
            Feedback::Negative
        });
    }
    ev.cost_usd = Some(0.002 + rng.random::<f64>() * 0.001);
}

/// Writes the stretches one after the other (from T0) into `dir` as `driftwatch run` would:
/// decoder, windows, Parquet commits every simulated minute, every window closed at the end.
fn write_history(dir: &Path, seed: u64, stretches: &[Stretch]) {
    let mut config = Config::default();
    config.storage.data_dir = dir.to_path_buf();
    let committer = parquet_committer(dir);
    let (metrics, _) = driftwatch::metrics::Metrics::new();
    let mut pipeline = Pipeline::new(&config, metrics).unwrap();
    let topic: Arc<str> = Arc::from("llm-logs");
    pipeline.assign((topic.clone(), 0), None, T0);
    let mut generator = Generator::new(seed);
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let (mut now, mut offset) = (T0, 0i64);
    let commit = |pipeline: &mut Pipeline, now: i64| {
        for job in pipeline.cut_commits(now) {
            if !job.is_empty() {
                committer.commit(&job).unwrap();
            }
        }
    };
    for s in stretches {
        let mut t = Traffic::new("chat", "gpt-4o");
        t.prompt_version = s.version;
        t.rate = s.rate;
        t.judge_mean = s.judge_mean;
        t.latency_median_ms = s.latency_median_ms;
        for _ in 0..s.minutes * 60 {
            for mut ev in generator.second(now, std::slice::from_ref(&t)) {
                shape(&mut ev, &mut rng);
                let line = to_json_line(&ev);
                pipeline.ingest(
                    RawMessage {
                        topic: &topic,
                        partition: 0,
                        offset,
                        timestamp_ms: Some(ev.timestamp_ms),
                        payload: Some(line.as_bytes()),
                    },
                    now + 1000,
                );
                offset += 1;
            }
            now += 1000;
            pipeline.advance(now);
            if (now - T0) % MIN == 0 {
                commit(&mut pipeline, now);
            }
        }
    }
    pipeline.close_all_windows();
    commit(&mut pipeline, now);
}

/// Prompt `answer`: v12 for 40 minutes (judge 0.80), then v13 (judge 0.72, a 10 % drop),
/// v14 (as v12), v15 (as v12 but 20 requests), 40 minutes each but v15.
fn data() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let s = |version, minutes, rate, judge_mean| Stretch {
            version,
            minutes,
            rate,
            judge_mean,
            latency_median_ms: 800.0,
        };
        write_history(
            dir.path(),
            41,
            &[
                s("v12", 40, 4.0, 0.80),
                s("v13", 40, 4.0, 0.72),
                s("v14", 40, 4.0, 0.80),
                s("v15", 1, 0.33, 0.80),
            ],
        );
        dir
    })
    .path()
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn gate(data: &Path, args: &[&str]) -> Run {
    let out = Command::new(bin())
        .arg("gate")
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `gate` of prompt `answer`, `candidate` against `baseline`, with more arguments.
fn versions(data: &Path, candidate: &str, baseline: &str, more: &[&str]) -> Run {
    let mut args = vec!["--prompt-id", "answer", "--candidate", candidate];
    args.extend(["--baseline", baseline]);
    args.extend(more);
    gate(data, &args)
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn metric<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["metric"] == name)
        .unwrap_or_else(|| panic!("no metric {name} in {report}"))
}

fn out_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    (
        dir.join("gate.json"),
        dir.join("gate.xml"),
        dir.join("gate.md"),
    )
}

#[test]
fn a_ten_percent_judge_drop_blocks_the_merge_with_junit_and_markdown() {
    let out = tempfile::tempdir().unwrap();
    let (j, x, m) = out_files(out.path());
    let r = versions(
        data(),
        "v13",
        "v12",
        &[
            "--json",
            j.to_str().unwrap(),
            "--junit",
            x.to_str().unwrap(),
            "--markdown",
            m.to_str().unwrap(),
        ],
    );
    println!("{}", r.stdout);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let report = json(&j);
    assert_eq!(report["verdict"], "regression");
    assert_eq!(report["exit_code"], 1);
    let judge = metric(&report, "judge:faithfulness");
    assert_eq!(judge["verdict"], "regression");
    assert_eq!(judge["classification"], "Low");
    let effect = judge["effect"].as_f64().unwrap();
    assert!((-0.13..-0.07).contains(&effect), "{effect}");
    let ci = judge["ci"].as_array().unwrap();
    assert!(ci[0].as_f64().unwrap() < effect && effect < ci[1].as_f64().unwrap());
    assert!(judge["p_value"].as_f64().unwrap() < 1e-10);
    // Only the judge score changed: the other default metrics pass.
    for name in [
        "feedback",
        "error_rate",
        "latency_p99",
        "output_tokens",
        "cost",
    ] {
        assert_eq!(metric(&report, name)["verdict"], "pass", "{name}: {report}");
    }
    assert!(r
        .stdout
        .lines()
        .any(|l| l.starts_with("judge:faithfulness") && l.ends_with("regression")));
    // A CI system's JUnit reader sees one failed case per regressed metric.
    let junit: Value =
        serde_json::from_str(&python("tests/parse_junit.py", &[x.to_str().unwrap()])).unwrap();
    assert_eq!(junit["tests"], 6, "{junit}");
    assert_eq!(junit["failures"], 1, "{junit}");
    assert_eq!(junit["skipped"], 0, "{junit}");
    let failed: Vec<&Value> = junit["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "failure")
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["name"], "judge:faithfulness");
    assert!(failed[0]["message"]
        .as_str()
        .unwrap()
        .contains("regressed by -"));
    let md = std::fs::read_to_string(&m).unwrap();
    assert!(
        md.contains("prompt `answer` v13 vs v12: **regression**"),
        "{md}"
    );
    assert!(md.contains("| `judge:faithfulness` |"), "{md}");
}

#[test]
fn an_unchanged_version_passes_and_a_narrower_metric_set_is_honoured() {
    let out = tempfile::tempdir().unwrap();
    let (j, x, _) = out_files(out.path());
    let r = versions(
        data(),
        "v14",
        "v12",
        &[
            "--json",
            j.to_str().unwrap(),
            "--junit",
            x.to_str().unwrap(),
        ],
    );
    println!("{}", r.stdout);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let report = json(&j);
    assert_eq!(report["verdict"], "pass");
    let all: Vec<&str> = report["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(all, ["pass"; 6]);
    let junit: Value =
        serde_json::from_str(&python("tests/parse_junit.py", &[x.to_str().unwrap()])).unwrap();
    assert_eq!(
        (junit["tests"].as_u64(), junit["failures"].as_u64()),
        (Some(6), Some(0))
    );

    // A 5 % latency tolerance can be tightened to 0 without flagging noise, and the metric
    // set narrowed: only what was asked for is compared.
    let r = versions(
        data(),
        "v14",
        "v12",
        &[
            "--metric",
            "latency_p50",
            "--metric",
            "judge:faithfulness",
            "--max-drop",
            "0",
            "--json",
            j.to_str().unwrap(),
        ],
    );
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    let report = json(&j);
    let names: Vec<&str> = report["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["metric"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["latency_p50", "judge:faithfulness"]);
}

#[test]
fn too_little_data_exits_3_and_unknown_prompts_or_versions_exit_2() {
    let out = tempfile::tempdir().unwrap();
    let (j, x, _) = out_files(out.path());
    let r = versions(
        data(),
        "v15",
        "v12",
        &[
            "--json",
            j.to_str().unwrap(),
            "--junit",
            x.to_str().unwrap(),
        ],
    );
    println!("{}", r.stdout);
    assert_eq!(r.code, 3, "{}{}", r.stdout, r.stderr);
    let report = json(&j);
    assert_eq!(report["verdict"], "not_enough_data");
    assert_eq!(metric(&report, "latency_p99")["verdict"], "not_enough_data");
    assert!(
        r.stdout.contains("at least 500 each needed"),
        "{}",
        r.stdout
    );
    let junit: Value =
        serde_json::from_str(&python("tests/parse_junit.py", &[x.to_str().unwrap()])).unwrap();
    assert_eq!(junit["failures"], 0, "{junit}");
    assert!(junit["skipped"].as_u64().unwrap() >= 1, "{junit}");

    let r = gate(
        data(),
        &[
            "--prompt-id",
            "summarize",
            "--candidate",
            "v2",
            "--baseline",
            "v1",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("prompt id \"summarize\" has no windows")
            && r.stderr.contains("\"answer\""),
        "{}",
        r.stderr
    );
    let r = versions(data(), "v13", "v11", &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("baseline version \"v11\"") && r.stderr.contains("\"v12\", \"v13\""),
        "{}",
        r.stderr
    );
    let r = versions(data(), "v99", "v12", &[]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("--candidate-file"), "{}", r.stderr);
    let r = versions(data(), "v13", "v12", &["--metric", "latency"]);
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("latency_p99"), "{}", r.stderr);
}

/// An eval suite's results: `n` requests of prompt `answer` (no version: the candidate's),
/// each scored on a separate line joined by `response_id`, plus one broken line and one
/// score for a response that is not in the file.
fn results_file(dir: &Path, n: usize, judge_mean: f64, seed: u64) -> PathBuf {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut lines = Vec::new();
    for i in 0..n {
        let mut ev = RequestEvent {
            event_id: format!("eval-{i}"),
            timestamp_ms: T0 + 3 * 3_600_000 + i as i64 * 1000,
            service: "chat".into(),
            request_model: "gpt-4o".into(),
            prompt_id: Some("answer".into()),
            response_id: Some(format!("resp-{i}")),
            latency_ms: 700.0 + rng.random::<f64>() * 300.0,
            output_tokens: Some(200),
            ..RequestEvent::default()
        };
        ev.prompt_version = None;
        lines.push(to_json_line(&ev));
        let score: f64 = (judge_mean + (rng.random::<f64>() - 0.5) * 0.3).clamp(0.0, 1.0);
        lines.push(
            serde_json::json!({"kind": "score", "response_id": format!("resp-{i}"),
                "name": "faithfulness", "value": score})
            .to_string(),
        );
    }
    lines.push("{not json".into());
    lines.push(
        serde_json::json!({"kind": "score", "response_id": "resp-elsewhere",
            "name": "faithfulness", "value": 0.1})
        .to_string(),
    );
    let path = dir.join(format!("results-{seed}.jsonl"));
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

#[test]
fn an_eval_suite_results_file_is_gated_against_the_history() {
    let out = tempfile::tempdir().unwrap();
    let (j, _, _) = out_files(out.path());
    let worse = results_file(out.path(), 300, 0.70, 7);
    let args = |file: &Path| {
        vec![
            "--prompt-id".to_string(),
            "answer".into(),
            "--candidate".into(),
            "v16".into(),
            "--baseline".into(),
            "v12".into(),
            "--candidate-file".into(),
            file.display().to_string(),
            "--metric".into(),
            "judge:faithfulness".into(),
            "--json".into(),
            j.display().to_string(),
        ]
    };
    let a = args(&worse);
    let r = gate(data(), &a.iter().map(String::as_str).collect::<Vec<_>>());
    println!("{}", r.stdout);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let report = json(&j);
    let judge = metric(&report, "judge:faithfulness");
    assert_eq!(judge["n_candidate"], 300);
    assert_eq!(judge["verdict"], "regression");
    assert_eq!(report["unmatched_scores"], 1);
    assert_eq!(report["rejected_lines"][0]["line"], 601);
    assert!(r.stderr.contains(":601: "), "{}", r.stderr);
    assert_eq!(report["candidate_source"], worse.display().to_string());

    let same = results_file(out.path(), 300, 0.80, 8);
    let a = args(&same);
    let r = gate(data(), &a.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(json(&j)["verdict"], "pass");
}

/// After compaction rolls the closed hours up into `windows_1h`, the gate reads those hours
/// from the roll-up (and only the rest from `windows`): the same populations, the same
/// numbers.
#[test]
fn the_gate_gives_the_same_answer_over_the_hourly_rollup() {
    let copy = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(format!("{}/.", data().display()))
        .arg(copy.path())
        .status()
        .unwrap();
    assert!(status.success());
    compact_now(copy.path());
    assert!(
        !parquet_files(&copy.path().join("windows_1h")).is_empty(),
        "compaction wrote no windows_1h"
    );
    let json_of = |dir: &Path, file: &Path| {
        let r = versions(dir, "v13", "v12", &["--json", file.to_str().unwrap()]);
        assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
        json(file)["metrics"].clone()
    };
    let out_dir = tempfile::tempdir().unwrap();
    let fine = json_of(data(), &out_dir.path().join("a.json"));
    let rolled = json_of(copy.path(), &out_dir.path().join("b.json"));
    // Counts and verdicts exactly; means and p-values up to the order sums were merged in.
    fn same(a: &Value, b: &Value) -> bool {
        match (a, b) {
            (Value::Array(x), Value::Array(y)) => {
                x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b))
            }
            (Value::Object(x), Value::Object(y)) => {
                x.len() == y.len() && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same(a, b)))
            }
            (Value::Number(x), Value::Number(y)) if x.is_f64() || y.is_f64() => {
                let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) || (x - y).abs() < 1e-300
            }
            _ => a == b,
        }
    }
    assert!(same(&fine, &rolled), "{fine}\n{rolled}");
}
