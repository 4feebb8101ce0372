//! The model registry: `check --registry` (FILE:LINE:COL errors, exit 2), `registry import
//! litellm`, and on a real broker (tansu) with the real daemon: costs computed from the
//! registry at event time across a price change at midnight, a bad reload refused and
//! counted while the previous registry keeps pricing, a good reload recorded in
//! `registry_changes` and used from then on, and DuckDB agreeing with the new `windows`
//! cost columns.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use arrow::array::Array;
use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

use crate::support::*;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn check_registry_names_file_line_column_and_field_and_exits_2() {
    let example = repo_root().join("models.example.yaml");
    let (code, out, err) = run(&["check", "--registry", example.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("models.example.yaml: ok (6 models, 6 with prices, 1 with a deprecation date, 4 with a fallback; 0 warning(s))"), "{out}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("models.yaml");
    std::fs::write(
        &bad,
        "models:\n  - id: a\n    fallback: b\n    prices:\n      - from: 2026-01-01\n        to: 2026-03-01\n        per_million: { input: 1, output: 2 }\n      - from: 2026-02-01\n        per_million: { input: -1, output: 2 }\n  - id: b\n    fallback: a\n",
    )
    .unwrap();
    let (code, out, err) = run(&["check", "--registry", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    let f = bad.display().to_string();
    for line in [
        format!("{f}:8:9: models[a].prices[1].per_million.input: -1 is not a price; write USD per million tokens, 0 or more"),
        format!("{f}:3:15: models[a].fallback: fallbacks form a cycle (a → … → a); end the chain at a model without a fallback"),
    ] {
        assert!(err.lines().any(|l| l == line), "missing {line:?} in:\n{err}");
    }
    assert!(err.contains("error(s); fix them and check again"), "{err}");

    // With --config too: the config's breaker fallbacks are checked against the registry.
    let cfg = dir.path().join("driftwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "[registry]\nfile = \"{}\"\n[breaker]\ndefault_fallback = \"gpt-4-turbo\"\nfallbacks = {{ \"gpt-4o\" = \"mystery-model\" }}\n",
            example.display()
        ),
    )
    .unwrap();
    let (code, out, err) = run(&["check", "--config", cfg.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("warning: breaker.fallbacks.gpt-4o: \"mystery-model\" is not in the registry"),
        "{out}"
    );
    assert!(out.contains("warning: breaker.default_fallback: the fallback gpt-4-turbo was deprecated on 2025-07-14; fall back to gpt-4o instead"), "{out}");
}

#[test]
fn registry_import_litellm_writes_a_registry_that_checks() {
    let dir = tempfile::tempdir().unwrap();
    let into = dir.path().join("conf/models.yaml");
    let fixture = repo_root().join("tests/fixtures/litellm_model_prices.json");
    let (code, out, err) = run(&[
        "registry",
        "import",
        "litellm",
        fixture.to_str().unwrap(),
        "--into",
        into.to_str().unwrap(),
        "--effective",
        "2024-08-06",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("4 added, 0 updated, 0 unchanged, 1 skipped (no per-token prices); prices effective 2024-08-06"), "{out}");
    let (code, out, err) = run(&["check", "--registry", into.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("ok (4 models, 4 with prices, 2 with a deprecation date"),
        "{out}"
    );
    // Hand-written fields survive a second import.
    let text = std::fs::read_to_string(&into).unwrap();
    std::fs::write(
        &into,
        text.replacen(
            "- id: gpt-4o\n",
            "- id: gpt-4o\n  fallback: gpt-4o-mini\n",
            1,
        ),
    )
    .unwrap();
    let (code, out, err) = run(&[
        "registry",
        "import",
        "litellm",
        fixture.to_str().unwrap(),
        "--into",
        into.to_str().unwrap(),
        "--effective",
        "2024-09-01",
    ]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 added, 0 updated, 4 unchanged"), "{out}");
    assert!(std::fs::read_to_string(&into)
        .unwrap()
        .contains("fallback: gpt-4o-mini"));
    // A bad entry: exit 2, naming it.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"m1": {"input_cost_per_token": "cheap", "output_cost_per_token": 1e-06}}"#,
    )
    .unwrap();
    let (code, _, err) = run(&[
        "registry",
        "import",
        "litellm",
        bad.to_str().unwrap(),
        "--into",
        into.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("entry \"m1\": input_cost_per_token: \"cheap\" is not a number"),
        "{err}"
    );
}

const DAY: i64 = 86_400_000;

fn registry_text(today_input: f64, bad: bool) -> String {
    format!(
        r#"models:
  - id: gpt-4o
    aliases: [gpt-4o-2024-08-06]
    fallback: gpt-4o-mini
    prices:
      - from: {yesterday}
        per_million: {{ input: 2.0, output: 8.0, cached_input: 0.5 }}
      - from: {today}
        per_million: {{ input: {today_input}, output: 4.0, cached_input: 0.25 }}
  - id: gpt-4o-mini
    prices:
      - from: {yesterday}
        per_million: {{ input: {mini}, output: 0.6 }}
"#,
        yesterday = driftwatch::registry::Date::of_ms(driftwatch::time::now_ms() - DAY),
        today = driftwatch::registry::Date::of_ms(driftwatch::time::now_ms()),
        mini = if bad { "-0.15" } else { "0.15" },
    )
}

fn event(i: usize, ts: i64, model: &str) -> String {
    serde_json::json!({
        "event_id": format!("reg-{i}"), "timestamp": ts, "service": "support-bot",
        "request_model": model, "deployment": "stable", "latency_ms": 800.0,
        "input_tokens": 1000, "cached_input_tokens": 400, "output_tokens": 200,
        "cache_creation_input_tokens": if i.is_multiple_of(3) { 100 } else { 0 },
        "reasoning_tokens": 50,
    })
    .to_string()
}

fn send(bootstrap: &str, events: &[String]) {
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for (i, e) in events.iter().enumerate() {
        let key = format!("k{i}");
        loop {
            match p.send(BaseRecord::to("llm-logs").key(&key).payload(e)) {
                Ok(()) => break,
                Err((_, _)) => {
                    p.poll(Duration::from_millis(50));
                }
            }
        }
        p.poll(Duration::ZERO);
    }
    p.flush(Duration::from_secs(30)).unwrap();
}

/// (event_id, cost_usd, cost_estimated, cache_savings_usd) of every stored event.
fn costs(data: &Path) -> Vec<(String, Option<f64>, bool, Option<f64>)> {
    let b = read_table(data, "events");
    let ids = strings(&b, "event_id");
    let mut cost = Vec::new();
    let mut saved = Vec::new();
    for batch in &b {
        let c = batch
            .column_by_name("cost_usd")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap();
        let s = batch
            .column_by_name("cache_savings_usd")
            .unwrap()
            .as_any()
            .downcast_ref::<arrow::array::Float64Array>()
            .unwrap();
        for i in 0..batch.num_rows() {
            cost.push(c.is_valid(i).then(|| c.value(i)));
            saved.push(s.is_valid(i).then(|| s.value(i)));
        }
    }
    let est = bools(&b, "cost_estimated");
    let mut rows: Vec<_> = ids
        .into_iter()
        .zip(cost)
        .zip(est)
        .zip(saved)
        .map(|(((id, c), e), s)| (id.unwrap_or_default(), c, e, s))
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 + 1e-9 * b.abs()
}

#[test]
fn the_daemon_prices_from_the_registry_keeps_the_last_good_one_and_records_changes() {
    let broker = Tansu::start();
    broker.create_topic("llm-logs", 1);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = format!("127.0.0.1:{}", free_port());
    let models = dir.path().join("models.yaml");
    std::fs::write(&models, registry_text(1.0, false)).unwrap();
    let cfg = tansu_config(
        dir.path(),
        &broker.bootstrap(),
        "registry-e2e",
        &data,
        &http,
        &format!(
            "[registry]\nfile = \"{}\"\n[detection]\nenabled = false\n",
            models.display()
        ),
    );
    let midnight = driftwatch::time::now_ms() / DAY * DAY;
    // 20 requests in the ten minutes before midnight, 20 after; one unpriced model, last (in
    // event-time order: one sent minutes behind the others would be late).
    let mut first: Vec<String> = (0..40)
        .map(|i| {
            event(
                i,
                midnight - 600_000 + i as i64 * 30_000,
                "gpt-4o-2024-08-06",
            )
        })
        .collect();
    first.push(event(40, midnight + 585_000, "some-unknown-model"));
    send(&broker.bootstrap(), &first);
    let daemon = Daemon::start(&cfg, &http, &[]);
    wait_for("the first events", Duration::from_secs(60), || {
        (costs(&data).len() == 41).then_some(())
    });
    // Before midnight: 600 × 2.0 + 400 × 0.5 + 200 × 8.0 (+ 100 cache writes at the input rate
    // every third request, out of the 600); after: the new day's prices.
    let hand = |i: usize, input: f64, output: f64, cached: f64| {
        let (plain, written) = if i.is_multiple_of(3) {
            (500.0, 100.0)
        } else {
            (600.0, 0.0)
        };
        (plain * input + written * input + 400.0 * cached + 200.0 * output) / 1e6
    };
    let rows = costs(&data);
    for (id, cost, estimated, saved) in &rows {
        let i: usize = id.trim_start_matches("reg-").parse().unwrap();
        if i == 40 {
            assert_eq!(
                (*cost, *estimated, *saved),
                (None, false, None),
                "unknown model"
            );
            continue;
        }
        let (want, want_saved) = if i < 20 {
            (hand(i, 2.0, 8.0, 0.5), 400.0 * 1.5 / 1e6)
        } else {
            (hand(i, 1.0, 4.0, 0.25), 400.0 * 0.75 / 1e6)
        };
        assert!(close(cost.unwrap(), want), "{id}: {cost:?} vs {want}");
        assert!(*estimated);
        assert!(close(saved.unwrap(), want_saved), "{id}: {saved:?}");
    }

    // A bad registry on SIGHUP: refused, counted, and the last good one keeps pricing.
    std::fs::write(&models, registry_text(3.0, true)).unwrap();
    daemon.signal("-HUP");
    wait_for("the refused reload", Duration::from_secs(30), || {
        (daemon.metric("driftwatch_registry_reload_failures_total")? == 1.0).then_some(())
    });
    send(
        &broker.bootstrap(),
        &[event(41, midnight + 16 * 60_000, "gpt-4o")],
    );
    wait_for("event 41", Duration::from_secs(30), || {
        (costs(&data).len() == 42).then_some(())
    });
    let c41 = costs(&data).into_iter().find(|r| r.0 == "reg-41").unwrap();
    assert!(close(c41.1.unwrap(), hand(41, 1.0, 4.0, 0.25)), "{c41:?}");

    // A good one: today's input price rises to 3.0; the change is recorded and used.
    std::fs::write(&models, registry_text(3.0, false)).unwrap();
    daemon.signal("-HUP");
    wait_for("the reload", Duration::from_secs(30), || {
        (daemon.metric("driftwatch_registry_changes_total")? >= 1.0).then_some(())
    });
    send(
        &broker.bootstrap(),
        &[
            event(42, midnight + 17 * 60_000, "gpt-4o"),
            // Far enough ahead to close every window before it.
            event(43, midnight + 30 * 60_000, "gpt-4o"),
        ],
    );
    wait_for("events 42, 43", Duration::from_secs(30), || {
        (costs(&data).len() == 44).then_some(())
    });
    let c42 = costs(&data).into_iter().find(|r| r.0 == "reg-42").unwrap();
    assert!(close(c42.1.unwrap(), hand(42, 3.0, 4.0, 0.25)), "{c42:?}");
    let changes = read_table(&data, "registry_changes");
    let fields: Vec<(Option<String>, Option<String>)> = strings(&changes, "model")
        .into_iter()
        .zip(strings(&changes, "field"))
        .collect();
    assert_eq!(fields, vec![(Some("gpt-4o".into()), Some("prices".into()))]);
    let new = strings(&changes, "new_value")[0].clone().unwrap();
    assert!(new.contains("\"input\":3.0"), "{new}");
    // SQL sees the table too.
    let (code, out, err) = run(&[
        "query",
        "--data-dir",
        data.to_str().unwrap(),
        "--config",
        cfg.to_str().unwrap(),
        "SELECT model, field FROM registry_changes",
    ]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("gpt-4o") && out.contains("prices"), "{out}");

    // The windows' cost columns equal what DuckDB computes from the events.
    wait_for(
        "the windows through event 42",
        Duration::from_secs(60),
        || {
            let b = read_table(&data, "windows");
            (i64s(&b, "event_count").iter().sum::<i64>() >= 43).then_some(())
        },
    );
    drop(daemon);
    let rows: Vec<Value> = serde_json::from_str(&python(
        "tests/duckdb_registry.py",
        &[data.to_str().unwrap()],
    ))
    .unwrap();
    assert!(rows.len() >= 20, "{rows:?}");
    let f = |r: &Value, k: &str| r[k].as_f64();
    for r in &rows {
        assert_eq!(r["n"], r["w_events"], "{r}");
        for (ours, theirs) in [
            ("w_cost_total", "cost_total"),
            ("w_cost_per_request", "cost_per_request"),
            ("w_cache_read_ratio", "cache_read_ratio"),
            ("w_cache_savings", "cache_savings"),
            ("w_cache_written", "cache_written"),
            ("w_reasoning", "reasoning"),
        ] {
            match (f(r, ours), f(r, theirs)) {
                (Some(a), Some(b)) => assert!(close(a, b), "{ours}: {a} vs DuckDB {b} in {r}"),
                (a, b) => assert_eq!(a, b, "{ours} in {r}"),
            }
        }
    }
}
