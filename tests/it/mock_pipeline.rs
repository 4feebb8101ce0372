//! The pipeline through librdkafka's in-process mock cluster: ≥ 50,000 events over three
//! partitions, each written exactly once, windows summing to the event count, and DuckDB
//! agreeing with the window P99s.

use std::collections::BTreeSet;
use std::time::Duration;

use driftwatch::config::Config;
use driftwatch::daemon::demo::{mock_cluster, produce_and_consume};
use driftwatch::window::sketch::HIST_RELATIVE_ERROR;

use crate::support::*;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

pub fn mock_config(
    bootstrap: String,
    data_dir: &std::path::Path,
    events: u64,
    seed: u64,
) -> Config {
    let mut c = Config::default();
    c.kafka.bootstrap_servers = bootstrap;
    c.kafka.topics = vec!["llm-logs".into()];
    c.kafka.group_id = format!("it-{seed}");
    c.storage.data_dir = data_dir.to_path_buf();
    c.storage.flush_interval = Duration::from_secs(1);
    c.produce.events = events;
    c.produce.seed = seed;
    c.produce.rate = 0.0;
    c.produce.span = Duration::from_secs(3600);
    c
}

#[test]
fn fifty_thousand_events_exactly_once_and_duckdb_agrees_on_p99() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = mock_cluster("llm-logs", 3).unwrap();
    let config = mock_config(cluster.bootstrap_servers(), dir.path(), 50_000, 7);
    let report = runtime().block_on(produce_and_consume(&config)).unwrap();
    let run = &report.run;
    assert_eq!(
        run.pipeline.messages,
        report.produced.messages(),
        "every produced message consumed"
    );

    // every event exactly once
    let events = read_table(dir.path(), "events");
    let ids: Vec<String> = strings(&events, "event_id")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), 50_000, "rows in events");
    assert_eq!(
        unique,
        expected_event_ids(7, 50_000),
        "exactly the produced event ids, once each"
    );
    let partitions: BTreeSet<i32> = i32s(&events, "kafka_partition").into_iter().collect();
    assert_eq!(partitions.len(), 3, "traffic spread over three partitions");

    // window counts sum to the event count
    let late = bools(&events, "late").iter().filter(|l| **l).count() as i64;
    assert_eq!(
        late, 0,
        "backfilled traffic is never later than the allowed lateness"
    );
    let windows = read_table(dir.path(), "windows");
    assert_eq!(
        i64s(&windows, "event_count").iter().sum::<i64>(),
        50_000 - late
    );
    let window_rows = windows.iter().map(|b| b.num_rows()).sum::<usize>();
    assert!(
        window_rows > 60 * 5,
        "one row per series per minute: {window_rows} rows, {} distinct window starts",
        timestamps(&windows, "window_start")
            .into_iter()
            .collect::<BTreeSet<_>>()
            .len()
    );

    // offsets committed up to the end of every partition
    let committed: i64 = run.committed.values().sum();
    assert_eq!(
        committed as u64,
        report.produced.messages(),
        "committed offsets = end offsets (one topic, offsets from 0)"
    );

    // the quarantine holds exactly the malformed messages, by reason
    let quarantine = read_table(dir.path(), "quarantine");
    let mut by_reason = std::collections::BTreeMap::new();
    for r in strings(&quarantine, "reason") {
        *by_reason.entry(r.unwrap()).or_insert(0u64) += 1;
    }
    let expected: std::collections::BTreeMap<String, u64> = report
        .produced
        .malformed
        .iter()
        .map(|(r, n)| (r.as_str().to_string(), *n))
        .collect();
    assert_eq!(by_reason, expected);

    // DuckDB reads the directory as is and computes P99 exactly from events
    let out = python("tests/duckdb_p99.py", &[dir.path().to_str().unwrap()]);
    let rows: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    assert!(rows.len() > 300, "{} series × windows compared", rows.len());
    let mut checked_large = 0;
    for r in &rows {
        let exact = r["exact_p99"].as_f64().unwrap();
        let ours = r["windows_p99"].as_f64().unwrap();
        let n = r["n"].as_i64().unwrap();
        assert_eq!(n, r["event_count"].as_i64().unwrap(), "{r}");
        // ours is the top of the HDR bucket holding the exact value (1 µs resolution)
        assert!(ours >= exact - 0.001, "{r}");
        assert!(ours <= exact * (1.0 + HIST_RELATIVE_ERROR) + 0.001, "{r}");
        if n >= 100 {
            checked_large += 1;
        }
    }
    assert!(checked_large > 50, "enough windows with ≥ 100 events");
    drop(cluster);
}

/// The demo's traffic through the default rules: every injected incident raises its alert,
/// in the summary and in the `alerts` table DuckDB reads.
#[test]
fn demo_incidents_raise_their_alerts() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = mock_cluster("llm-logs", 3).unwrap();
    let config = mock_config(cluster.bootstrap_servers(), dir.path(), 60_000, 42);
    let report = runtime().block_on(produce_and_consume(&config)).unwrap();
    let summary = report.render();
    let rows = python("tests/duckdb_alerts.py", &[dir.path().to_str().unwrap()]);
    let fired: Vec<(String, String, String, String)> = serde_json::from_str(&rows).unwrap();
    for (rule, service, model) in [
        (
            "p99_latency_regression",
            "search-summarizer",
            "claude-sonnet-4",
        ),
        ("error_rate_high", "code-assist", "llama-3.1-70b"),
        ("error_rate_breaker", "code-assist", "llama-3.1-70b"),
        ("judge_score_drop", "support-bot", "gpt-4o"),
        // The injected silent update: gpt-4o answers as gpt-4o-2024-11-20 from mid-run.
        ("silent_model_update", "support-bot", "gpt-4o"),
    ] {
        assert!(
            fired
                .iter()
                .any(|f| f.0 == rule && f.1 == service && f.2 == model),
            "{rule} on {service}/{model} missing: {fired:?}\n{summary}"
        );
        assert!(
            summary.contains(rule),
            "{rule} missing from the summary:\n{summary}"
        );
    }
    assert!(
        fired
            .iter()
            .any(|f| f.0 == "judge_score_drop" && f.3 == "v13"),
        "{fired:?}"
    );
    // Nothing fires on the series without an incident.
    assert!(
        fired
            .iter()
            .all(|f| f.1 != "search-summarizer" || f.0 == "p99_latency_regression"),
        "{fired:?}"
    );
    drop(cluster);
    incident_report_of_the_latency_spike(dir.path());
}

/// `driftwatch incident` on the demo's latency spike: the estimated onset recorded with
/// the alert is within two windows of the injected one (30 % into the demo's hour, counted
/// from its first request), the report has the literal onset and delay lines, the runbook
/// and the timeline; `--json` and `GET /api/v1/incidents/{fp}` return the same report; an
/// unknown fingerprint exits 2 (404 over HTTP).
fn incident_report_of_the_latency_spike(data: &std::path::Path) {
    use driftwatch::query::{Limits, QueryEngine};
    let labels = default_labels();
    let engine = QueryEngine::open(data, &labels).unwrap();
    let one = |sql: &str| -> serde_json::Value {
        let out = runtime()
            .block_on(engine.run(sql, &Limits::default()))
            .unwrap();
        let bytes =
            driftwatch::query::encode_output(&out, driftwatch::query::Format::JsonArray).unwrap();
        serde_json::from_slice::<Vec<serde_json::Value>>(&bytes).unwrap()[0].clone()
    };
    let first_request = one("SELECT CAST(MIN(timestamp) AS BIGINT) AS t FROM events")["t"]
        .as_i64()
        .unwrap();
    let injected = first_request + 3_600_000 * 3 / 10;
    let fp = one(
        "SELECT fingerprint FROM alerts WHERE rule = 'p99_latency_regression' AND to_state = 'firing'",
    )["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let out = std::process::Command::new(bin())
        .args(["incident", &fp, "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{md}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{md}");
    let line = |prefix: &str| -> String {
        md.lines()
            .find_map(|l| l.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no {prefix:?} line in\n{md}"))
            .trim()
            .to_string()
    };
    let onset = chrono::DateTime::parse_from_rfc3339(&line("Estimated onset:"))
        .unwrap()
        .timestamp_millis();
    assert!(
        (onset - injected).abs() <= 2 * 60_000,
        "estimated onset {} vs injected {}",
        driftwatch::time::rfc3339(onset),
        driftwatch::time::rfc3339(injected)
    );
    let delay = line("Detection delay:");
    assert!(humantime::parse_duration(&delay).is_ok(), "{delay}");
    assert!(
        md.starts_with("# Incident: p99_latency_regression (alert)"),
        "{md}"
    );
    assert!(md.contains("docs/runbooks/p99-latency.md"), "{md}");
    assert!(md.contains("| alert inactive → firing |"), "{md}");
    assert!(md.contains("| alert firing → resolved |"), "{md}");
    // JSON, from the command and from the API.
    let out = std::process::Command::new(bin())
        .args(["incident", &fp, "--json", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["rule"], "p99_latency_regression");
    assert_eq!(json["estimated_onset"], driftwatch::time::rfc3339(onset));
    assert_eq!(json["labels"]["request_model"], "claude-sonnet-4");
    let rt = runtime();
    let (_, registry) = driftwatch::metrics::Metrics::new();
    let app = driftwatch::daemon::http::router(
        registry,
        std::sync::Arc::new(driftwatch::daemon::health::Health::default()),
        None,
        Some(driftwatch::daemon::http::QueryApi {
            data_dir: data.to_path_buf(),
            labels: labels.to_vec(),
            limits: Limits::default(),
        }),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (code, body) =
        http_send(&addr, "GET", &format!("/api/v1/incidents/{fp}"), &[], "").unwrap();
    assert_eq!(code, 200, "{body}");
    let api: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(api, json);
    let (code, _) = http_send(&addr, "GET", "/api/v1/incidents/0000000000000000", &[], "").unwrap();
    assert_eq!(code, 404);
    let (code, _) = http_send(&addr, "GET", "/api/v1/incidents/nope", &[], "").unwrap();
    assert_eq!(code, 400);
    // The judge-score drop on gpt-4o fired with what changed before it: the silent model
    // update and prompt v13 (details.what_changed, in every channel's notification).
    let judge = one(
        "SELECT fingerprint FROM alerts WHERE rule = 'judge_score_drop' AND request_model = 'gpt-4o' AND to_state = 'firing'",
    )["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let out = std::process::Command::new(bin())
        .args(["incident", &judge, "--json", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let changed = report["details"]["what_changed"]
        .as_str()
        .unwrap_or_default();
    assert!(
        changed.contains("response_model gpt-4o-2024-11-20 first seen")
            && changed.contains("prompt_version v13 first seen"),
        "{report:#}"
    );
    let fields: Vec<&str> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["field"].as_str().unwrap())
        .collect();
    assert!(
        fields.contains(&"response_model") && fields.contains(&"prompt_version"),
        "{report:#}"
    );
    // Unknown and malformed fingerprints are usage errors.
    for bad in ["0000000000000000", "not-a-fingerprint"] {
        let out = std::process::Command::new(bin())
            .args(["incident", bad, "--data-dir"])
            .arg(data)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{bad}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
