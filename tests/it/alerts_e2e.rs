//! Detection end to end on a real broker (tansu): an hour of traffic with injected incidents
//! goes in; the alerts appear in `GET /api/v1/alerts` and in the `alerts` table with the
//! numbers that caused them, and resolve after the incident ends; a restart neither re-fires
//! nor forgets; SIGHUP reloads the rules; `driftwatch backtest` over the written windows finds
//! the same firings.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn alerts_api(http: &str) -> Option<serde_json::Value> {
    let (code, body) = http_get(http, "/api/v1/alerts").ok()?;
    (code == 200).then(|| serde_json::from_str(&body).ok())?
}

/// The alert of `rule` whose labels include all of `labels`.
fn find<'a>(
    view: &'a serde_json::Value,
    rule: &str,
    labels: &[(&str, &str)],
) -> Option<&'a serde_json::Value> {
    view["alerts"].as_array()?.iter().find(|a| {
        a["rule"] == rule
            && labels.iter().all(|(k, v)| {
                a["labels"]
                    .as_array()
                    .is_some_and(|l| l.iter().any(|kv| kv[0] == *k && kv[1] == *v))
            })
    })
}

/// (rule, fingerprint, at, from, to, service) of every row of the `alerts` table, by time.
fn alert_rows(data: &std::path::Path) -> Vec<(String, String, i64, String, String, String)> {
    let b = read_table(data, "alerts");
    let col = |c: &str| strings(&b, c).into_iter().map(|s| s.unwrap_or_default());
    let at = timestamps(&b, "evaluated_at");
    let mut rows: Vec<_> = col("rule")
        .zip(col("fingerprint"))
        .zip(at)
        .zip(col("from_state"))
        .zip(col("to_state"))
        .zip(col("service"))
        .map(|(((((r, f), a), fr), to), s)| (r, f, a, fr, to, s))
        .collect();
    rows.sort_by_key(|r| (r.2, r.0.clone(), r.1.clone()));
    rows
}

#[test]
fn incidents_fire_resolve_survive_restart_and_match_backtest() {
    let broker = Tansu::start();
    broker.create_topic("llm-logs", 3);
    // DRIFTWATCH_KEEP_TEST_DIRS=1 keeps the data and configs for a post-mortem.
    let dir = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("DRIFTWATCH_KEEP_TEST_DIRS").is_some())
        .tempdir()
        .unwrap();
    eprintln!("alerts e2e files in {}", dir.path().display());
    let data = dir.path().join("data");
    let http = format!("127.0.0.1:{}", free_port());
    // A copy of the shipped rules (the test edits it for SIGHUP); resolved alerts stay in
    // the API for the whole replayed hour.
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    for f in [
        "errors.yaml",
        "latency.yaml",
        "quality.yaml",
        "changes.yaml",
    ] {
        std::fs::copy(repo_root().join("rules").join(f), rules.join(f)).unwrap();
    }
    let cfg = tansu_config(
        dir.path(),
        &broker.bootstrap(),
        "alerts-e2e",
        &data,
        &http,
        &format!(
            "[detection]\nkeep_resolved = \"3h\"\nrules_dir = \"{}\"\n",
            rules.display()
        ),
    );
    produce(&cfg, &["--events", "60000", "--seed", "7", "--span", "1h"]);

    let mut daemon = Daemon::start(&cfg, &http, &[]);
    // The error burst (code-assist, 25 % errors during 55-60 % of the hour) fires and
    // resolves; the judge drop (support-bot prompt v13 from 70 %) fires and stays.
    let view = wait_for(
        "the incidents in /api/v1/alerts",
        Duration::from_secs(120),
        || {
            let v = alerts_api(&http)?;
            let burst = find(
                &v,
                "error_rate_high",
                &[("service", "code-assist"), ("deployment", "stable")],
            )?;
            let judge = find(
                &v,
                "judge_score_drop",
                &[("prompt_version", "v13"), ("deployment", "stable")],
            )?;
            (burst["state"] == "resolved" && judge["state"] == "firing").then_some(v)
        },
    );
    assert_eq!(view["enabled"], true);
    assert_eq!(view["rules"], 9);
    let burst = find(
        &view,
        "error_rate_high",
        &[("service", "code-assist"), ("deployment", "stable")],
    )
    .unwrap();
    assert!(burst["fired_at_ms"].as_i64().unwrap() < burst["resolved_at_ms"].as_i64().unwrap());
    // The estimated onset and the detection delay from it: the burst starts at 55 % of the
    // replayed hour and is found within a few minutes.
    let (fired, onset) = (
        burst["fired_at_ms"].as_i64().unwrap(),
        burst["onset_ms"]
            .as_i64()
            .expect("a fired alert has an onset"),
    );
    assert_eq!(burst["detection_delay_ms"].as_i64(), Some(fired - onset));
    assert!((0..=300_000).contains(&(fired - onset)), "{burst}");
    let breaker = find(
        &view,
        "error_rate_breaker",
        &[("service", "code-assist"), ("deployment", "stable")],
    )
    .expect("the breaker fired on the 25 % burst");
    assert!(breaker["fired_at_ms"].is_i64(), "{breaker}");
    let judge = find(
        &view,
        "judge_score_drop",
        &[("prompt_version", "v13"), ("deployment", "stable")],
    )
    .unwrap();
    assert_eq!(judge["severity"], "page");
    assert!(
        judge["numbers"]["effect"].as_f64().unwrap() < -0.05,
        "{judge}"
    );
    assert!(
        judge["numbers"]["p_value"].as_f64().unwrap() < 0.001,
        "{judge}"
    );

    // The alerts table holds every transition with its numbers (rows are committed after
    // the API shows the state: wait for the judge firing and the burst's resolved row).
    let rows = wait_for("the alerts table", Duration::from_secs(30), || {
        let rows = alert_rows(&data);
        let judge = rows
            .iter()
            .any(|r| r.0 == "judge_score_drop" && r.4 == "firing");
        let burst = rows
            .iter()
            .any(|r| r.0 == "error_rate_high" && r.5 == "code-assist" && r.4 == "resolved");
        (judge && burst).then_some(rows)
    });
    let burst_states: Vec<&str> = rows
        .iter()
        .filter(|r| r.0 == "error_rate_high" && r.5 == "code-assist")
        .map(|r| r.4.as_str())
        .collect();
    assert!(
        burst_states.contains(&"firing") && burst_states.contains(&"resolved"),
        "{burst_states:?}"
    );
    let b = read_table(&data, "alerts");
    for c in [
        "value",
        "baseline",
        "p_value",
        "n_current",
        "summary",
        "runbook_url",
    ] {
        assert!(b[0].column_by_name(c).is_some(), "alerts table lacks {c}");
    }

    // Restart: no transition is written twice and none re-fires an alert already firing.
    daemon.signal("-TERM");
    assert!(daemon.wait(Duration::from_secs(60)).success());
    let before = alert_rows(&data);
    let daemon = Daemon::start(&cfg, &http, &[]);
    let view = wait_for(
        "the restarted daemon's alerts",
        Duration::from_secs(60),
        || {
            let v = alerts_api(&http)?;
            find(
                &v,
                "judge_score_drop",
                &[("prompt_version", "v13"), ("deployment", "stable")],
            )
            .is_some()
            .then_some(v)
        },
    );
    assert_eq!(
        find(
            &view,
            "judge_score_drop",
            &[("prompt_version", "v13"), ("deployment", "stable")]
        )
        .unwrap()["state"],
        "firing",
        "forgotten after restart"
    );
    std::thread::sleep(Duration::from_secs(5));

    // SIGHUP with the quality rules removed: the rule goes, and its firing alert ends with a
    // resolved row instead of staying firing downstream forever.
    std::fs::remove_file(rules.join("quality.yaml")).unwrap();
    daemon.signal("-HUP");
    wait_for("the reload", Duration::from_secs(30), || {
        let v = alerts_api(&http)?;
        (v["rules"] == 8).then_some(())
    });
    let removed = wait_for("the rule-removed row", Duration::from_secs(30), || {
        alert_rows(&data)
            .into_iter()
            .find(|r| r.0 == "judge_score_drop" && r.4 == "resolved")
    });
    assert_eq!(removed.3, "firing");
    drop(daemon);
    let after = alert_rows(&data);
    assert!(after.len() >= before.len());
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "rows changed across the restart"
    );
    let mut chain: BTreeMap<&str, &str> = BTreeMap::new();
    let mut seen = std::collections::BTreeSet::new();
    for r in &after {
        assert!(seen.insert((&r.1, r.2, &r.4)), "duplicate transition {r:?}");
        if let Some(prev) = chain.insert(&r.1, &r.4) {
            assert_eq!(prev, r.3, "transition {r:?} does not continue from {prev}");
        }
    }

    // The backtest over the written windows fires the same alerts at the same times.
    let out = Command::new(bin())
        .args([
            "backtest",
            "--data",
            data.to_str().unwrap(),
            "--config",
            cfg.to_str().unwrap(),
            "--rules",
        ])
        .arg(repo_root().join("rules"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Every firing row carries its onset and delay; the backtest estimates the same onset.
    let b = read_table(&data, "alerts");
    let to: Vec<String> = strings(&b, "to_state")
        .into_iter()
        .map(|s| s.unwrap_or_default())
        .collect();
    let at = timestamps(&b, "evaluated_at");
    let onsets = nullable_timestamps(&b, "onset");
    let fmt = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .unwrap()
            .format("%Y-%m-%d %H:%M:%S")
            .to_string()
    };
    for i in (0..to.len()).filter(|i| to[*i] == "firing") {
        let onset = onsets[i].expect("firing rows have an onset");
        assert!(onset <= at[i], "onset after the firing");
        assert!(
            text.lines().any(|l| l.contains(&fmt(at[i]))
                && l.contains("firing")
                && l.contains(&format!("[onset {}", fmt(onset)))),
            "live firing at {} (onset {}) missing from the backtest:\n{text}",
            fmt(at[i]),
            fmt(onset)
        );
    }
    let live_firings = after.iter().filter(|r| r.4 == "firing").count();
    let backtest_firings = text.lines().filter(|l| l.contains(" firing ")).count();
    assert_eq!(live_firings, backtest_firings, "{text}");
}
