//! Judge scores that arrive after their request's window was written: they still count —
//! as correction rows of that window in `windows`, merged by SQL, by the `windows_1h`
//! roll-up and by the detector from the tick they arrived, in a backtest exactly as live.
//! Scores of unknown requests, or past `scores.late_ttl`, are counted as unmatched, not
//! quarantined.

use std::path::Path;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use driftwatch::config::Config;
use driftwatch::detect::alerts::AlertState;
use driftwatch::traffic::scenario::{Traffic, T0};

use crate::registry_scenarios::PipeSim;
use crate::support::*;

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn edit(c: &mut Config) {
    c.scores.late_ttl = Duration::from_secs(20 * 60);
}

fn sum_i64(batches: &[arrow::record_batch::RecordBatch], col: &str) -> i64 {
    i64s(batches, col).iter().sum()
}

#[test]
fn judge_scores_after_their_window_closed_count_in_sql_the_rollup_and_the_detector_as_in_a_backtest(
) {
    let data = tempfile::tempdir().unwrap();
    let mut sim = PipeSim::writing_with(61, data.path(), T0, "late-scores", &edit);
    let onset = T0 + 2 * HOUR;
    // Every judge score is sent 3 minutes after its request (its window closes after 90 s);
    // one request in 40 is judged 30 minutes later (past the 20-minute TTL), and one in 40
    // gets a score for a response id nobody sent.
    sim.late = Some(Box::new(|ev, _rng| {
        let id = ev.event_id.clone();
        ev.response_id = Some(id.clone());
        let n: u64 = id.trim_start_matches('e').parse().unwrap_or(0);
        let mut out = Vec::new();
        for (name, v) in std::mem::take(&mut ev.judge_scores) {
            let delay = if n % 40 == 7 { 30 * MIN } else { 3 * MIN };
            let line =
                serde_json::json!({"kind": "score", "response_id": id, "name": name, "value": v});
            out.push((delay, line.to_string()));
        }
        if n % 40 == 9 {
            let line = serde_json::json!({"kind": "score", "response_id": format!("nobody-{n}"), "name": "faithfulness", "value": 0.5});
            out.push((MIN, line.to_string()));
        }
        out
    }));
    let traffic = move |t: i64| {
        let mut tr = Traffic::new("support", "gpt-4o-mini");
        tr.rate = 4.0;
        tr.judge_share = 0.8;
        tr.judge_mean = if t >= onset { 0.70 } else { 0.85 };
        vec![tr]
    };
    sim.run(3 * HOUR / 1000, &traffic, &|_, _, _| {});
    // Ten quiet minutes: the last scores arrive, the windows close.
    sim.run(10 * 60, &|_| Vec::new(), &|_, _, _| {});
    sim.finish();

    let w = sim.pipeline().window_stats();
    let stats = sim.pipeline().stats();
    eprintln!(
        "late scores: {} joined open windows, {} corrections, {} unmatched",
        w.scores_joined, w.scores_corrected, w.scores_unmatched
    );
    assert_eq!(
        w.scores_joined, 0,
        "every score came after its window closed"
    );
    assert!(w.scores_corrected > 25_000, "{w:?}");
    assert!(w.scores_unmatched > 1000, "{w:?}");
    assert_eq!(stats.scores_unmatched, w.scores_unmatched);
    assert_eq!(stats.scores, w.scores_corrected);
    // Counted, not refused: the quarantine stays empty (PipeSim asserts it per commit).
    assert!(parquet_files(&data.path().join("quarantine")).is_empty());

    // The detector saw the drop through correction rows alone.
    let fired: Vec<_> = sim
        .transitions
        .iter()
        .filter(|t| t.rule == "judge_score_drop" && t.to == AlertState::Firing)
        .collect();
    assert_eq!(fired.len(), 1, "{:#?}", sim.firing());
    let at = fired[0].at_ms;
    eprintln!(
        "judge_score_drop fired {} s after the onset, on late scores only",
        (at - onset) / 1000
    );
    assert!(
        at > onset && at - onset < 30 * MIN,
        "fired at +{} min",
        (at - T0) / MIN
    );

    // In `windows`: the windows' own rows carry no late score; the correction rows carry
    // every one, with the tick they count after.
    let windows = read_table(data.path(), "windows");
    let after = nullable_timestamps(&windows, "correction_after");
    let events = i64s(&windows, "event_count");
    let late = i64s(&windows, "late_scores");
    let starts = timestamps(&windows, "window_start");
    let mut own_late = 0;
    let mut corrections = 0;
    for i in 0..after.len() {
        match after[i] {
            None => own_late += late[i],
            Some(a) => {
                corrections += 1;
                assert_eq!(events[i], 0, "a correction row counts no request");
                assert!(a >= starts[i] + MIN, "counts after its window closed");
            }
        }
    }
    assert_eq!(own_late, 0);
    assert!(corrections > 150, "{corrections} correction rows");
    assert_eq!(sum_i64(&windows, "late_scores") as u64, w.scores_corrected);

    // SQL merges them like any partial row: the judged count and mean of one window after
    // the onset, over its own row and its correction rows.
    let labels = default_labels();
    let engine = driftwatch::query::QueryEngine::open(data.path(), &labels).unwrap();
    let (_, r) = crate::query::rows(
        &engine,
        "SELECT sum(late_scores) AS late, count(correction_after) AS corrections, sum(event_count) AS requests FROM windows",
    );
    assert_eq!(r[0][0].as_i64().unwrap() as u64, w.scores_corrected);
    assert_eq!(r[0][1].as_i64().unwrap(), corrections);
    // DuckDB reads the same rows, and merges the judge moments of each hour over the
    // windows' rows and their corrections: every judged request, and the drop.
    let duck = std::process::Command::new("python3")
        .args([
            "-c",
            "import duckdb,sys; print(duckdb.sql(f\"SELECT sum(late_scores), count(correction_after) FROM read_parquet('{sys.argv[1]}/windows/**/*.parquet', hive_partitioning = true)\").fetchall()[0]); \
             [print(r) for r in duckdb.sql(f\"SELECT sum(judge_n['faithfulness']), round(sum(judge_n['faithfulness'] * judge_mean['faithfulness']) / sum(judge_n['faithfulness']), 2) FROM read_parquet('{sys.argv[1]}/windows/**/*.parquet', hive_partitioning = true) GROUP BY date_trunc('hour', window_start) ORDER BY date_trunc('hour', window_start)\").fetchall()]",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(
        duck.status.success(),
        "{}",
        String::from_utf8_lossy(&duck.stderr)
    );
    let out = String::from_utf8_lossy(&duck.stdout).into_owned();
    eprintln!("DuckDB over windows (totals, then n and judge mean per hour):\n{out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], format!("({}, {corrections})", w.scores_corrected));
    let hours: Vec<(u64, f64)> = lines[1..]
        .iter()
        .map(|l| {
            let (n, m) = l
                .trim_matches(|c| c == '(' || c == ')')
                .split_once(", ")
                .unwrap();
            (n.parse().unwrap(), m.parse().unwrap())
        })
        .collect();
    assert_eq!(hours.iter().map(|h| h.0).sum::<u64>(), w.scores_corrected);
    assert_eq!((hours[0].1, hours[2].1), (0.85, 0.70), "{hours:?}");

    // The roll-up merges the corrections into the hour.
    compact_now(data.path());
    let hourly = read_table(data.path(), "windows_1h");
    assert_eq!(sum_i64(&hourly, "late_scores") as u64, w.scores_corrected);
    assert!(nullable_timestamps(&hourly, "correction_after")
        .iter()
        .all(Option::is_none));

    // A backtest over what was written applies each correction after the tick it arrived
    // after, and finds the same alert at the same tick.
    let mut config = Config::default();
    edit(&mut config);
    config.storage.data_dir = data.path().to_path_buf();
    let rules = driftwatch::daemon::detection::load_rules(&config, Path::new("rules")).unwrap();
    let report =
        driftwatch::daemon::detection::backtest(&config, rules, data.path(), None, None).unwrap();
    let key = |t: &driftwatch::detect::alerts::Transition| {
        (t.rule.clone(), t.fingerprint.clone(), t.at_ms, t.to)
    };
    let judged = |ts: &mut dyn Iterator<Item = &driftwatch::detect::alerts::Transition>| {
        ts.filter(|t| t.rule == "judge_score_drop")
            .map(key)
            .collect::<Vec<_>>()
    };
    let live = judged(&mut sim.transitions.iter());
    assert!(!live.is_empty());
    assert_eq!(judged(&mut report.transitions.iter()), live);
}

fn send(bootstrap: &str, lines: &[String]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for line in lines {
        // One message per batch: a resumed consumer starts inside no batch.
        loop {
            match p.send(BaseRecord::to("llm-logs").key("k").payload(line)) {
                Ok(()) => break,
                Err(_) => {
                    p.poll(Duration::from_millis(50));
                }
            }
        }
        p.flush(Duration::from_secs(10)).unwrap();
    }
}

/// Requests are consumed and their windows written; the daemon is killed (-9); their judge
/// scores arrive while it is down. The restarted daemon still knows the requests (the
/// late-score index log beside the checkpoint) and writes every score as a correction row;
/// scores of unknown requests are counted as unmatched.
#[test]
fn scores_arriving_while_the_daemon_is_down_correct_the_windows_it_wrote_before() {
    let broker = Tansu::start();
    broker.create_topic("llm-logs", 1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = tansu_config(dir.path(), &broker.bootstrap(), "late", &data, &http, "");
    let now = driftwatch::time::now_ms();
    let t0 = (now - 10 * MIN).div_euclid(MIN) * MIN;
    let mut requests: Vec<String> = (0..240)
        .map(|i| {
            serde_json::json!({
                "event_id": format!("req-{i}"), "timestamp": t0 + i * 1000, "service": "support",
                "request_model": "gpt-4o-mini", "latency_ms": 800.0, "response_id": format!("r{i}"),
            })
            .to_string()
        })
        .collect();
    // A request at the wall clock: the watermark passes every earlier window.
    requests.push(
        serde_json::json!({"event_id": "req-now", "timestamp": now, "service": "support",
            "request_model": "gpt-4o-mini", "latency_ms": 800.0})
        .to_string(),
    );
    send(&broker.bootstrap(), &requests);
    let mut d = Daemon::start(&cfg, &http, &[]);
    wait_for(
        "the four windows of the requests written",
        Duration::from_secs(120),
        || {
            (d.metric("driftwatch_parquet_rows_written_total{table=\"windows\"}") >= Some(4.0))
                .then_some(())
        },
    );
    d.signal("-KILL");
    d.wait(Duration::from_secs(60));

    let scores: Vec<String> = (0..240)
        .map(|i| {
            serde_json::json!({"kind": "score", "response_id": format!("r{i}"),
                "name": "faithfulness", "value": if i < 120 { 0.9 } else { 0.6 }})
            .to_string()
        })
        .chain((0..10).map(|i| {
            serde_json::json!({"kind": "feedback", "response_id": format!("nobody-{i}"), "value": -1})
                .to_string()
        }))
        .collect();
    send(&broker.bootstrap(), &scores);
    let mut d = Daemon::start(&cfg, &http, &[]);
    wait_for(
        "every score corrected or counted",
        Duration::from_secs(120),
        || {
            let corrected = d.metric("driftwatch_scores_corrected_total")?;
            let unknown =
                d.metric("driftwatch_scores_unmatched_total{reason=\"unknown_response\"}")?;
            eprintln!("after the restart: {corrected} corrected, {unknown} unmatched");
            (corrected + unknown >= 250.0).then_some((corrected, unknown))
        },
    );
    assert_eq!(
        d.metric("driftwatch_scores_corrected_total"),
        Some(240.0),
        "the restarted daemon knew every request"
    );
    wait_for(
        "the correction rows written",
        Duration::from_secs(60),
        || {
            let w = read_table(&data, "windows");
            (i64s(&w, "late_scores").iter().sum::<i64>() == 240).then_some(())
        },
    );
    d.signal("-TERM");
    assert!(d.wait(Duration::from_secs(60)).success());

    // Each of the four windows got its 60 scores, in correction rows; the requests' own
    // rows are as the first daemon wrote them.
    let w = read_table(&data, "windows");
    let after = nullable_timestamps(&w, "correction_after");
    let starts = timestamps(&w, "window_start");
    let late = i64s(&w, "late_scores");
    let mut per_window = std::collections::BTreeMap::<i64, i64>::new();
    for i in 0..after.len() {
        if after[i].is_some() {
            *per_window.entry(starts[i]).or_default() += late[i];
        } else {
            assert_eq!(late[i], 0);
        }
    }
    let expected: std::collections::BTreeMap<i64, i64> =
        (0..4).map(|k| (t0 + k * MIN, 60)).collect();
    assert_eq!(per_window, expected);
    assert!(
        parquet_files(&data.join("quarantine")).is_empty(),
        "nothing refused"
    );
    let files: Vec<String> = std::fs::read_dir(data.join("state"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().any(|f| f == "llm-logs-0.responses.0.log"),
        "{files:?}"
    );
}
