//! Rollout analyses through the real pipeline (JSON lines → decode → windows → detector)
//! with simulated event time and fixed seeds: a canary like stable passes, a worse canary
//! fails and its `rollback` reaches a webhook receiver signed (verified by the
//! `standardwebhooks` package), a trickle of canary traffic stays "not enough data", and a
//! shadow is judged on requests paired by `trace_id`. The API answers as Argo Rollouts and
//! Flagger read it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use driftwatch::config::Config;
use driftwatch::detect::analysis::{AnalysisReport, RollbackEvent};
use driftwatch::event::{Deployment, RequestEvent};
use driftwatch::traffic::scenario::Traffic;

use crate::detection::T0;
use crate::registry_scenarios::PipeSim;

const CANARY: &str = r#"
[[analyses]]
name = "chat-canary"
kind = "canary"
service = "chat"
duration = "1h"
expected_share = 0.05
"#;

fn analyses_of(text: &str) -> Vec<driftwatch::detect::analysis::AnalysisConfig> {
    Config::from_toml_and_env(text, "test.toml", Vec::new())
        .unwrap()
        .analyses
}

fn sim(seed: u64, text: &'static str) -> PipeSim {
    PipeSim::configured(seed, &|c: &mut Config| c.analyses = analyses_of(text))
}

/// 19 requests/s on stable and 1 on the canary (5 %), `canary` changing the canary arm.
fn rollout(canary: impl Fn(&mut Traffic) + 'static) -> impl Fn(i64) -> Vec<Traffic> {
    move |_t| {
        let mut stable = Traffic::new("chat", "gpt-4o");
        stable.rate = 19.0;
        let mut c = Traffic::new("chat", "gpt-4o");
        c.rate = 1.0;
        c.deployment = Deployment::Canary;
        canary(&mut c);
        vec![stable, c, Traffic::new("search", "gpt-4o-mini")]
    }
}

fn no_shape(_: &mut RequestEvent, _: i64, _: &mut rand_chacha::ChaCha8Rng) {}

fn report(sim: &PipeSim, name: &str) -> AnalysisReport {
    sim.detector()
        .analyses()
        .reports()
        .into_iter()
        .find(|a| a.name == name)
        .expect("the analysis is configured")
}

/// Serves the daemon's HTTP API over what `sim`'s detector holds; returns its address.
async fn api(sim: &PipeSim) -> (String, tokio::task::JoinHandle<std::io::Result<()>>) {
    let health = Arc::new(driftwatch::daemon::health::Health::default());
    health.publish_alerts(sim.detector());
    let (_, registry) = driftwatch::metrics::Metrics::new();
    let (addr, task) = driftwatch::daemon::http::serve(
        "127.0.0.1:0".parse().unwrap(),
        registry,
        health,
        None,
        None,
        std::future::pending(),
    )
    .await
    .unwrap();
    (addr.to_string(), task)
}

async fn flagger(addr: &str, name: &str) -> (u16, Value) {
    let url = format!("http://{addr}/api/v1/analyses/{name}/flagger");
    let body = r#"{"name":"chat","namespace":"prod","phase":"Progressing","metadata":{}}"#;
    let r = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let code = r.status().as_u16();
    (
        code,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

async fn get(addr: &str, path: &str) -> (u16, Value) {
    let r = reqwest::get(format!("http://{addr}{path}")).await.unwrap();
    let code = r.status().as_u16();
    (
        code,
        serde_json::from_str(&r.text().await.unwrap()).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_canary_like_stable_passes_its_run_and_flagger_proceeds() {
    let mut s = sim(41, CANARY);
    tokio::task::block_in_place(|| s.run(65 * 60, &rollout(|_| {}), &no_shape));
    let r = report(&s, "chat-canary");
    let run = &r.runs[0];
    println!(
        "canary like stable: {} score {:?} after {} min ({}), share {:.3}",
        r.classification.as_str(),
        r.score,
        60,
        run.reason,
        run.traffic_share.unwrap()
    );
    for m in &run.metrics {
        println!(
            "  {} ratio {:?} p {:?} {}",
            m.metric, m.ratio, m.p_value, m.outcome
        );
    }
    assert_eq!(r.classification.as_str(), "Pass", "{}", run.reason);
    assert_eq!(r.score, Some(100.0));
    assert_eq!((r.status.as_str(), r.runs.len()), ("completed", 1));
    assert_eq!(run.group["request_model"], "gpt-4o");
    assert!(
        (run.traffic_share.unwrap() - 0.05).abs() < 0.01,
        "{:?}",
        run.traffic_share
    );
    // The metrics the defaults found: judge, error rate, P99, output tokens, cost.
    let names: Vec<&str> = run.metrics.iter().map(|m| m.metric.as_str()).collect();
    assert_eq!(
        names,
        [
            "judge:faithfulness",
            "error_rate",
            "latency_p99",
            "output_tokens",
            "cost"
        ]
    );
    assert!(s.rollbacks.is_empty());

    let (addr, _task) = api(&s).await;
    let (code, one) = get(&addr, "/api/v1/analyses/chat-canary").await;
    assert_eq!(code, 200);
    // What an Argo Rollouts `web` metric reads with jsonPath "{$.classification}".
    assert_eq!(one["classification"], "Pass");
    assert_eq!(one["runs"][0]["metrics"][0]["test"], "Welch's t");
    let (code, all) = get(&addr, "/api/v1/analyses").await;
    assert_eq!(
        (code, all["analyses"][0]["name"].as_str()),
        (200, Some("chat-canary"))
    );
    let (code, body) = flagger(&addr, "chat-canary").await;
    assert_eq!((code, body["classification"].as_str()), (200, Some("Pass")));
    let (code, body) = get(&addr, "/api/v1/analyses/nope").await;
    assert_eq!(code, 404);
    assert!(
        body["error"].as_str().unwrap().contains("chat-canary"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worse_canary_fails_and_its_signed_rollback_reaches_the_deployer() {
    let mut s = sim(42, CANARY);
    let started = T0;
    tokio::task::block_in_place(|| {
        s.run(
            20 * 60,
            &rollout(|c| {
                c.judge_mean = 0.70;
                c.latency_median_ms = 1150.0;
            }),
            &no_shape,
        )
    });
    let r = report(&s, "chat-canary");
    let run = &r.runs[0];
    assert_eq!(r.classification.as_str(), "Fail", "{}", run.reason);
    let failed_ms = ms(run.failed_at.as_deref().unwrap());
    let delay_s = (failed_ms - started) / 1000;
    println!(
        "worse canary: Fail after {delay_s} s of event time, score {:?}: {}",
        run.score, run.reason
    );
    assert!(
        delay_s <= 12 * 60,
        "fails within 12 minutes at 1 request/s: {delay_s} s"
    );
    let failed: Vec<&str> = run
        .metrics
        .iter()
        .filter(|m| m.outcome == "fail")
        .map(|m| m.metric.as_str())
        .collect();
    assert!(failed.contains(&"judge:faithfulness"), "{failed:?}");
    assert_eq!(s.rollbacks.len(), 1, "one rollback per failed run");
    let rb: RollbackEvent = s.rollbacks[0].clone();
    assert_eq!(
        (rb.candidate.as_str(), rb.baseline.as_str()),
        ("canary", "stable")
    );

    let (addr, _task) = api(&s).await;
    let (code, body) = flagger(&addr, "chat-canary").await;
    assert_eq!((code, body["classification"].as_str()), (409, Some("Fail")));

    // Delivery: the committed rollback goes through inbox → router → outbox → signed POST.
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let receiver = Arc::new(crate::notify_channels::Receiver::default());
    tokio::spawn(crate::notify_channels::serve(listener, receiver.clone()));
    let text = format!(
        "[notify]\n[notify.retry]\nbase = \"100ms\"\nmax = \"1s\"\n\
         [notify.channels.rollback]\ntype = \"webhook\"\nurl = \"{base}/deploy\"\nsecret_env = \"DEPLOY_SECRET\"\n{CANARY}"
    );
    let config = Config::from_toml_and_env(&text, "test.toml", Vec::new()).unwrap();
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let env = move |k: &str| (k == "DEPLOY_SECRET").then(|| secret.to_string());
    let state = dir.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let (metrics, _) = driftwatch::metrics::Metrics::new();
    let notifier =
        driftwatch::notify::service::Notifier::start_with_env(&config, &state, metrics, &env)
            .unwrap()
            .expect("a channel is configured");
    driftwatch::notify::inbox::write_inbox(&state, &[], &[], &s.rollbacks).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while receiver.on("/deploy").is_empty() {
        if std::time::Instant::now() > deadline {
            let files: Vec<_> = std::fs::read_dir(state.join("notify-inbox"))
                .map(|d| d.flatten().map(|e| e.file_name()).collect())
                .unwrap_or_default();
            let outbox: Vec<String> = walk(&state);
            panic!(
                "no rollback webhook; outbox {:?}, inbox {files:?}, state {outbox:?}",
                notifier.shared.outbox_status()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A commit redone after a crash hands the same rollback in again: not sent twice.
    driftwatch::notify::inbox::write_inbox(&state, &[], &[], &s.rollbacks).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let got = receiver.on("/deploy");
    assert_eq!(got.len(), 1);
    let body: Value = serde_json::from_str(&got[0].body).unwrap();
    assert_eq!(body["command"], "rollback");
    assert_eq!(body["analysis"], "chat-canary");
    assert_eq!(body["candidate"], "canary");
    assert_eq!(body["group"]["request_model"], "gpt-4o");
    assert!(body["failed_metrics"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m == "judge:faithfulness"));
    assert!(body["report_url"]
        .as_str()
        .unwrap()
        .ends_with("/api/v1/analyses/chat-canary"));
    let out = crate::notify_channels::verify_signatures(&got, secret, dir.path());
    assert!(
        out.status.success(),
        "standardwebhooks refused the rollback:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    drop(notifier);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickle_of_canary_traffic_stays_not_enough_data() {
    let mut s = sim(43, CANARY);
    // One canary request every 50 s, much worse: too few to say anything.
    tokio::task::block_in_place(|| {
        s.run(
            30 * 60,
            &rollout(|c| {
                c.rate = 0.02;
                c.judge_mean = 0.5;
            }),
            &no_shape,
        )
    });
    let r = report(&s, "chat-canary");
    println!(
        "trickle: {} ({})",
        r.classification.as_str(),
        r.runs[0].reason
    );
    assert_eq!(r.classification.as_str(), "NotEnoughData");
    assert!(
        r.runs[0].reason.starts_with("not enough data for"),
        "{}",
        r.runs[0].reason
    );
    assert!(r.runs[0].metrics.iter().all(|m| m.outcome == "nodata"));
    assert!(s.rollbacks.is_empty());
    let (addr, _task) = api(&s).await;
    let (code, body) = flagger(&addr, "chat-canary").await;
    assert_eq!(
        (code, body["classification"].as_str()),
        (200, Some("NotEnoughData"))
    );
}

const SHADOW: &str = r#"
[[analyses]]
name = "chat-shadow"
kind = "shadow"
service = "chat"
duration = "1h"
"#;

/// Primary traffic with trace ids; every primary request is mirrored to a shadow model
/// whose latency is the primary's × `slowdown` (± 3 %) and whose judge score is the
/// primary's + `judge_shift`.
fn shadowed(seed: u64, slowdown: f64, judge_shift: f64) -> PipeSim {
    let mut s = sim(seed, SHADOW);
    s.mirror = Some(mirror(slowdown, judge_shift));
    s
}

fn mirror(slowdown: f64, judge_shift: f64) -> Box<crate::registry_scenarios::Mirror> {
    Box::new(move |ev: &RequestEvent, rng| {
        use rand::Rng;
        if ev.deployment == Some(Deployment::Shadow) {
            return None;
        }
        let mut m = ev.clone();
        m.event_id = format!("{}-shadow", ev.event_id);
        m.deployment = Some(Deployment::Shadow);
        m.request_model = "gpt-4.1".into();
        m.response_model = Some("gpt-4.1".into());
        m.latency_ms = ev.latency_ms * slowdown * rng.random_range(0.97..1.03);
        m.judge_scores = ev
            .judge_scores
            .iter()
            .map(|(n, v)| (n.clone(), (v + judge_shift).clamp(0.0, 1.0)))
            .collect();
        Some(m)
    })
}

fn with_trace(ev: &mut RequestEvent, _t: i64, _: &mut rand_chacha::ChaCha8Rng) {
    ev.trace_id = Some(format!("trace-{}", ev.event_id));
}

fn primary(_t: i64) -> Vec<Traffic> {
    vec![Traffic::new("chat", "gpt-4o")]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shadow_is_judged_on_requests_paired_by_trace_id() {
    // 25 % slower on the same requests, judge within 1 %.
    let mut slow = shadowed(44, 1.25, -0.005);
    tokio::task::block_in_place(|| slow.run(15 * 60, &primary, &with_trace));
    let r = report(&slow, "chat-shadow");
    let run = &r.runs[0];
    for m in &run.metrics {
        println!(
            "slow shadow {}: {:?} vs {:?} ratio {:?} p {:?} {} ({})",
            m.metric, m.candidate, m.baseline, m.ratio, m.p_value, m.outcome, m.test
        );
    }
    assert_eq!(r.classification.as_str(), "Fail", "{}", run.reason);
    let pairs = run.pairs.unwrap();
    let failed_ms = ms(run.failed_at.as_deref().unwrap());
    println!(
        "slow shadow: Fail after {} s on {pairs} pairs",
        (failed_ms - T0) / 1000
    );
    // Every request of the run's span up to the failure is paired (10 requests/s).
    let span_s = (failed_ms - T0) / 1000;
    assert!(
        pairs as i64 > 8 * span_s && pairs as i64 <= 12 * span_s,
        "{pairs} pairs in {span_s} s"
    );
    let m = |name: &str| run.metrics.iter().find(|m| m.metric == name).unwrap();
    for name in ["latency_p50", "latency_p99"] {
        assert_eq!(
            (m(name).outcome.as_str(), m(name).test.as_str()),
            ("fail", "Wilcoxon signed-rank")
        );
        assert!(
            (m(name).ratio.unwrap() - 1.25).abs() < 0.05,
            "{:?}",
            m(name).ratio
        );
    }
    let j = m("judge:faithfulness");
    assert_eq!((j.outcome.as_str(), j.test.as_str()), ("pass", "paired t"));
    // Paired, a shift this small is still certain; it is within the tolerance.
    assert!(j.p_value.unwrap() < 1e-6, "{:?}", j.p_value);
    assert_eq!(m("output_tokens").outcome, "pass");
    assert_eq!(slow.rollbacks.len(), 1);
    assert_eq!(slow.rollbacks[0].baseline, "primary");

    // The same model mirrored: passes.
    let mut same = shadowed(45, 1.0, 0.0);
    tokio::task::block_in_place(|| same.run(15 * 60, &primary, &with_trace));
    let r = report(&same, "chat-shadow");
    assert_eq!(r.classification.as_str(), "Pass", "{}", r.runs[0].reason);
    assert!(same.rollbacks.is_empty());
}

fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(format!(
                "{}: {}",
                e.path().display(),
                std::fs::read_to_string(e.path())
                    .unwrap_or_default()
                    .chars()
                    .take(600)
                    .collect::<String>()
            ));
        }
    }
    out
}

#[test]
fn analyze_over_the_stored_history_judges_what_the_daemon_judged() {
    const BOTH: &str = r#"
[[analyses]]
name = "chat-canary"
kind = "canary"
service = "chat"
duration = "1h"

[[analyses]]
name = "chat-shadow"
kind = "shadow"
service = "chat"
duration = "1h"
"#;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut s = PipeSim::writing_with(46, &data, T0, "llm-logs", &|c: &mut Config| {
        c.analyses = analyses_of(BOTH)
    });
    s.mirror = Some(mirror(1.3, 0.0));
    s.run(
        20 * 60,
        &rollout(|c| {
            c.judge_mean = 0.70;
            c.latency_median_ms = 1150.0;
        }),
        &with_trace,
    );
    s.finish();
    let live = serde_json::to_value(s.detector().analyses().reports()).unwrap();
    let config = dir.path().join("driftwatch.toml");
    std::fs::write(
        &config,
        format!("[storage]\ndata_dir = \"{}\"\n{BOTH}", data.display()),
    )
    .unwrap();
    let out = std::process::Command::new(crate::support::bin())
        .args(["analyze", "--json", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed run exits 1: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stored: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        stored["analyses"], live,
        "the history judges as the daemon judged"
    );
    assert_eq!(live[0]["classification"], "Fail");
    assert_eq!(live[1]["classification"], "Fail");
    assert_eq!(live[1]["runs"][0]["metrics"][1]["metric"], "latency_p50");
    assert_eq!(live[1]["runs"][0]["metrics"][1]["outcome"], "fail");
    // The text report, one analysis by name.
    let out = std::process::Command::new(crate::support::bin())
        .args(["analyze", "chat-canary", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(
        text.starts_with("chat-canary (canary, service chat): Fail, score"),
        "{text}"
    );
    assert!(text.contains("judge:faithfulness"), "{text}");
    // Unknown names are usage errors.
    let out = std::process::Command::new(crate::support::bin())
        .args(["analyze", "nope", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("chat-canary, chat-shadow"));
}

/// Milliseconds since the epoch of an RFC 3339 time the API reported.
fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}
