//! Delivery end to end on a real broker (tansu) with the real daemon and a real HTTP
//! receiver that misbehaves: an hour of traffic with incidents (including a 25 % error burst
//! that trips the breaker) goes in while the receiver is slow (the daemon still consumes
//! everything), then answers 503, then 429 with `Retry-After`, then is down; the daemon is
//! killed with -9 while its outbox holds notifications, restarted while the receiver is
//! still down, and the receiver comes back: every notification ever attempted arrives, each
//! exactly once per `webhook-id`; the breaker's fallback left within 75 s of the burst start
//! and its transitions are in the `alerts` table, `/metrics` and `GET /api/v1/breakers`. The
//! silences API refuses a request without the bearer token.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;

use crate::support::*;

const SLOW: u8 = 0;
const UNAVAILABLE: u8 = 1;
const TOO_MANY: u8 = 2;
const OK: u8 = 3;

#[derive(Default)]
struct Receiver {
    mode: AtomicU8,
    /// (path, webhook-id, status answered, body) of every request.
    log: Mutex<Vec<(String, String, u16, String)>>,
}

impl Receiver {
    fn answered(&self, status: u16) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.2 == status)
            .count()
    }
}

fn serve(rt: &tokio::runtime::Runtime, port: u16, r: Arc<Receiver>) -> tokio::task::JoinHandle<()> {
    rt.spawn(async move {
        let app = axum::Router::new().fallback(
            move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
                let r = r.clone();
                async move {
                    let id = headers
                        .get("webhook-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string();
                    let mode = r.mode.load(Ordering::SeqCst);
                    if mode == SLOW {
                        // Longer than the client timeout: the daemon gives up and retries.
                        tokio::time::sleep(Duration::from_secs(4)).await;
                    }
                    let status = match mode {
                        SLOW | UNAVAILABLE => 503,
                        TOO_MANY => 429,
                        _ => 200,
                    };
                    r.log
                        .lock()
                        .unwrap()
                        .push((uri.path().to_string(), id, status, body));
                    let mut h = HeaderMap::new();
                    // No keep-alive: once the listener is gone, the receiver is down.
                    h.insert("connection", HeaderValue::from_static("close"));
                    if status == 429 {
                        h.insert("retry-after", HeaderValue::from_static("1"));
                    }
                    (StatusCode::from_u16(status).unwrap(), h, String::new())
                }
            },
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        axum::serve(listener, app).await.unwrap();
    })
}

fn outbox_files(data: &std::path::Path) -> BTreeSet<String> {
    std::fs::read_dir(data.join("state/outbox"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter_map(|n| n.strip_suffix(".json").map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn notifications_survive_a_bad_receiver_and_kill_9_and_the_breaker_calls_the_gateway() {
    let broker = Tansu::start();
    broker.create_topic("llm-logs", 3);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = format!("127.0.0.1:{}", free_port());
    let port = free_port();
    let cfg = tansu_config(
        dir.path(),
        &broker.bootstrap(),
        "delivery-e2e",
        &data,
        &http,
        &format!(
            r#"api_token_env = "DW_API_TOKEN"
[detection]
keep_resolved = "3h"
rules_dir = "{rules}"
[notify]
group_wait = "0s"
group_interval = "1s"
default_channels = ["hook"]
[notify.retry]
base = "200ms"
max = "2s"
timeout = "2s"
[notify.channels.hook]
type = "webhook"
url = "http://127.0.0.1:{port}/hook"
secret_env = "HOOK_SECRET"
[notify.channels.gateway]
type = "webhook"
url = "http://127.0.0.1:{port}/gateway"
secret_env = "HOOK_SECRET"
[breaker]
channels = ["gateway"]
fallbacks = {{ "llama-3.1-70b" = "gpt-4o-mini" }}
default_fallback = "claude-haiku"
"#,
            rules = repo_root().join("rules").display()
        ),
    );
    let env = [
        ("HOOK_SECRET", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ("DW_API_TOKEN", "t0ken"),
    ];
    let produced = produce(&cfg, &["--events", "60000", "--seed", "7", "--span", "1h"]);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let receiver = Arc::new(Receiver::default());
    receiver.mode.store(SLOW, Ordering::SeqCst);
    let server = serve(&rt, port, receiver.clone());

    // 1. A receiver slower than the timeout does not slow consumption.
    let mut daemon = Daemon::start(&cfg, &http, &env);
    wait_for(
        "every message consumed while the receiver hangs",
        Duration::from_secs(120),
        || (daemon.consumed() >= produced).then_some(()),
    );
    assert_eq!(
        receiver.answered(200),
        0,
        "nothing can have been delivered yet"
    );
    // The last commit's alerts reach the outbox through the router a moment after the
    // messages are consumed.
    wait_for(
        "notifications to wait in the outbox",
        Duration::from_secs(30),
        || {
            let (_, outbox) = http_get(&http, "/api/v1/outbox").ok()?;
            let outbox: Value = serde_json::from_str(&outbox).ok()?;
            (outbox["pending"]["hook"].as_u64().unwrap_or(0) > 0).then_some(())
        },
    );

    // 2. 503, then 429 with Retry-After, then down.
    receiver.mode.store(UNAVAILABLE, Ordering::SeqCst);
    wait_for("a 503", Duration::from_secs(30), || {
        (receiver.answered(503) > 0).then_some(())
    });
    receiver.mode.store(TOO_MANY, Ordering::SeqCst);
    wait_for("a 429", Duration::from_secs(30), || {
        (receiver.answered(429) > 0).then_some(())
    });
    server.abort();
    std::thread::sleep(Duration::from_secs(2));

    // 3. kill -9 with a non-empty outbox.
    let pending = outbox_files(&data);
    assert!(!pending.is_empty());
    daemon.child.kill().unwrap();
    daemon.wait(Duration::from_secs(10));
    let after_kill = outbox_files(&data);
    assert!(!after_kill.is_empty(), "the outbox survives kill -9");

    // 4. Restart while the receiver is still down, then bring it back.
    let daemon = Daemon::start(&cfg, &http, &env);
    std::thread::sleep(Duration::from_secs(3));
    receiver.mode.store(OK, Ordering::SeqCst);
    let _server = serve(&rt, port, receiver.clone());
    // The restarted daemon first evaluates what the killed one had not (the last ticks close
    // as the idle watermark follows the wall clock), then its notifications drain.
    let last_event = timestamps(&read_table(&data, "events"), "timestamp")
        .into_iter()
        .max()
        .unwrap();
    let last_window_end = (last_event.div_euclid(60_000) + 1) * 60_000;
    wait_for("every tick evaluated", Duration::from_secs(120), || {
        let (_, body) = http_get(&http, "/api/v1/alerts").ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let w = v["evaluated_window_ms"].as_i64()?;
        let s = v["evaluated_slice_ms"].as_i64()?;
        (w >= last_window_end && s >= last_window_end).then_some(())
    });
    wait_for(
        "an empty inbox and outbox",
        Duration::from_secs(120),
        || {
            let inbox = std::fs::read_dir(data.join("state/notify-inbox"))
                .map(|d| d.count())
                .unwrap_or(0);
            let (code, body) = http_get(&http, "/api/v1/outbox").ok()?;
            let v: Value = serde_json::from_str(&body).ok()?;
            (inbox == 0 && code == 200 && v["pending"].as_object()?.is_empty() && v["dead"] == 0)
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));

    // Every notification ever attempted — and every one the killed daemon left on disk —
    // was delivered, each exactly once per idempotency key.
    let log = receiver.log.lock().unwrap().clone();
    let attempted: BTreeSet<&str> = log.iter().map(|r| r.1.as_str()).collect();
    let mut delivered: BTreeMap<&str, usize> = BTreeMap::new();
    for r in log.iter().filter(|r| r.2 == 200) {
        *delivered.entry(r.1.as_str()).or_default() += 1;
    }
    assert!(!attempted.is_empty());
    for id in &attempted {
        assert_eq!(
            delivered.get(id),
            Some(&1),
            "{id} delivered {:?} times",
            delivered.get(id)
        );
    }
    for id in &after_kill {
        assert_eq!(
            delivered.get(id.as_str()),
            Some(&1),
            "{id} (left by kill -9)"
        );
    }
    eprintln!(
        "{} requests, {} notifications delivered once each ({} were in the outbox at kill -9)",
        log.len(),
        delivered.len(),
        after_kill.len()
    );

    // The alerts that fired reached the receiver.
    let alerts = read_table(&data, "alerts");
    let fired: BTreeSet<String> = strings(&alerts, "fingerprint")
        .into_iter()
        .zip(strings(&alerts, "to_state"))
        .zip(strings(&alerts, "rule"))
        .filter(|((_, to), r)| {
            to.as_deref() == Some("firing") && r.as_deref() == Some("error_rate_high")
        })
        .map(|((f, _), _)| f.unwrap())
        .collect();
    assert!(!fired.is_empty());
    let mut notified = BTreeSet::new();
    for r in log.iter().filter(|r| r.2 == 200 && r.0 == "/hook") {
        let v: Value = serde_json::from_str(&r.3).unwrap();
        for a in v["alerts"].as_array().unwrap() {
            notified.insert(a["fingerprint"].as_str().unwrap().to_string());
        }
    }
    for f in &fired {
        if !notified.contains(f) {
            let at = timestamps(&alerts, "evaluated_at");
            let rows: Vec<String> = strings(&alerts, "fingerprint")
                .into_iter()
                .zip(strings(&alerts, "to_state"))
                .zip(strings(&alerts, "summary"))
                .zip(at)
                .filter(|(((fp, _), _), _)| fp.as_deref() == Some(f.as_str()))
                .map(|(((_, to), sm), at)| format!("{at} {to:?} {sm:?}"))
                .collect();
            let hooks: Vec<String> = log
                .iter()
                .filter(|r| r.0 == "/hook")
                .map(|r| format!("{} {}", r.2, &r.3[..r.3.len().min(300)]))
                .collect();
            panic!("firing {f} never notified: {rows:#?}\nhook log: {hooks:#?}");
        }
    }

    // The incident report lists when each notification of a firing was delivered.
    let f = fired.iter().next().unwrap();
    let out = std::process::Command::new(bin())
        .args(["incident", f, "--json", "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let hook: Vec<&Value> = report["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["channel"] == "hook")
        .collect();
    // (A firing resolved before the next flush is notified once, as resolved.)
    assert!(!hook.is_empty(), "{:#}", report["notifications"]);
    println!(
        "incident {f}: {} delivered to hook at {} after {} attempt(s)",
        hook[0]["state"], hook[0]["delivered_at"], hook[0]["attempts"]
    );
    assert!(hook[0]["delivered_at"].is_string());
    assert!(hook[0]["after_ms"].is_i64());
    let what = format!("notified hook ({})", hook[0]["state"].as_str().unwrap());
    assert!(report["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["what"] == what.as_str()));

    // The breaker: fallback within 75 s of the burst start (code-assist, 25 % errors from
    // 55 % of the hour), then restore, each delivered once.
    let events = read_table(&data, "events");
    let ts = timestamps(&events, "timestamp");
    let t0 = *ts.iter().min().unwrap();
    let t_end = *ts.iter().max().unwrap();
    let burst_start = t0 + ((t_end - t0) as f64 * 0.55) as i64;
    let gateway: Vec<Value> = log
        .iter()
        .filter(|r| r.2 == 200 && r.0 == "/gateway")
        .map(|r| serde_json::from_str(&r.3).unwrap())
        .collect();
    let commands: Vec<&str> = gateway
        .iter()
        .map(|v| v["command"].as_str().unwrap())
        .collect();
    assert!(
        commands.starts_with(&["fallback", "restore"]),
        "{commands:?}"
    );
    let fallback = &gateway[0];
    let at = chrono::DateTime::parse_from_rfc3339(fallback["at"].as_str().unwrap())
        .unwrap()
        .timestamp_millis();
    // The webhook leaves when the 10 s slice closes, 5 s after its end.
    let reaction = at + 5_000 - burst_start;
    eprintln!(
        "fallback POST {} s after the burst started: {fallback}",
        reaction / 1000
    );
    assert!(reaction <= 75_000, "fallback {reaction} ms after the burst");
    assert_eq!(fallback["primary_model"], "llama-3.1-70b");
    assert_eq!(fallback["fallback_model"], "gpt-4o-mini");
    assert_eq!(fallback["state"], "open");

    let rows: Vec<(Option<String>, Option<String>)> = strings(&alerts, "signal")
        .into_iter()
        .zip(strings(&alerts, "to_state"))
        .filter(|(s, _)| s.as_deref() == Some("circuit_breaker"))
        .collect();
    let states: Vec<&str> = rows.iter().map(|r| r.1.as_deref().unwrap()).collect();
    assert!(
        states.contains(&"open") && states.contains(&"half_open"),
        "{states:?}"
    );

    let (_, breakers) = http_get(&http, "/api/v1/breakers").unwrap();
    let breakers: Value = serde_json::from_str(&breakers).unwrap();
    assert!(
        !breakers["breakers"].as_array().unwrap().is_empty(),
        "{breakers}"
    );
    let (_, metrics) = http_get(&http, "/metrics").unwrap();
    assert!(metrics.contains("driftwatch_breaker_state{"), "{metrics}");

    // Silences: refused without the token, accepted with it, listed.
    let silence = r#"{"matchers":[{"name":"service","value":"code-assist"}],"endsAt":"2099-01-01T00:00:00Z","createdBy":"test","comment":"deploy"}"#;
    let (code, body) = http_send(&http, "POST", "/api/v1/silences", &[], silence).unwrap();
    assert_eq!(code, 401, "{body}");
    let (code, body) = http_send(
        &http,
        "POST",
        "/api/v1/silences",
        &[("Authorization", "Bearer t0ken")],
        silence,
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["silenceID"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, list) = http_get(&http, "/api/v1/silences").unwrap();
    assert!(
        list.contains(&id) && list.contains("\"status\":\"active\""),
        "{list}"
    );
    let (code, body) = http_send(
        &http,
        "POST",
        "/api/v1/silences",
        &[("Authorization", "Bearer t0ken")],
        r#"{"matchers":[],"endsAt":"2099-01-01T00:00:00Z"}"#,
    )
    .unwrap();
    assert_eq!(code, 400, "{body}");
    drop(daemon);
}
