//! Every channel against a real receiver: the delivery stage (inbox → router → outbox →
//! senders) runs as in the daemon and sends to
//! - HTTP receivers on loopback whose captured requests the `standardwebhooks` Python package
//!   verifies (with the rotated secret only), one of them in Alertmanager's v4 format;
//! - a PagerDuty Events v2 receiver that enforces the API's field rules;
//! - three real SMTP servers (Python aiosmtpd): STARTTLS with AUTH, implicit TLS, plain;
//!   the mails are parsed by Python's `email` package and the numbers checked.
//!
//! Fifty series of one incident are one mail and one webhook; PagerDuty gets one event per
//! alert and the resolve shares the trigger's dedup key; a silenced series is left out; a
//! rate-limited channel spaces its deliveries; the breaker's fallback/restore go to the
//! gateway channel.

use std::collections::{BTreeMap, BTreeSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use driftwatch::detect::alerts::{fingerprint, AlertState, Numbers, Transition};
use driftwatch::detect::breaker::{BreakerState, BreakerTransition};
use driftwatch::detect::rules::Severity;
use driftwatch::notify::inbox::write_inbox;
use driftwatch::notify::service::{Notifier, SilenceRequest};

use crate::support::{python, repo_root};

const SECRET_OLD: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const SECRET_NEW: &str = "whsec_dGhlIG5ldyBzZWNyZXQgYWZ0ZXIgcm90YXRpb24=";
const PD_KEY: &str = "R0UTINGKEY0123456789abcdefABCDEF";

/// One captured request.
#[derive(Debug, Clone)]
pub(crate) struct Got {
    path: String,
    pub(crate) headers: BTreeMap<String, String>,
    pub(crate) body: String,
    at: Instant,
}

#[derive(Default)]
pub(crate) struct Receiver {
    got: Mutex<Vec<Got>>,
    /// PagerDuty requests refused, with the reasons.
    pd_refused: Mutex<Vec<String>>,
}

impl Receiver {
    pub(crate) fn on(&self, path: &str) -> Vec<Got> {
        self.got
            .lock()
            .unwrap()
            .iter()
            .filter(|g| g.path == path)
            .cloned()
            .collect()
    }
}

/// The Events API v2 field rules
/// (<https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>).
fn pagerduty_errors(v: &Value) -> Vec<String> {
    let mut e = Vec::new();
    match v["routing_key"].as_str() {
        Some(k) if k.len() == 32 => {}
        _ => e.push("routing_key must be a 32-character integration key".to_string()),
    }
    let action = v["event_action"].as_str().unwrap_or("");
    if !matches!(action, "trigger" | "acknowledge" | "resolve") {
        e.push(format!("event_action {action:?} is invalid"));
    }
    match v.get("dedup_key") {
        None if action != "trigger" => e.push("dedup_key is required to resolve".into()),
        Some(k) if k.as_str().is_none_or(|k| k.is_empty() || k.len() > 255) => {
            e.push("dedup_key must be a string of at most 255 characters".into())
        }
        _ => {}
    }
    if action == "trigger" {
        let p = &v["payload"];
        match p["summary"].as_str() {
            Some(s) if !s.is_empty() && s.chars().count() <= 1024 => {}
            _ => e.push("payload.summary is required, at most 1024 characters".into()),
        }
        if p["source"].as_str().is_none_or(str::is_empty) {
            e.push("payload.source is required".into());
        }
        if !matches!(
            p["severity"].as_str(),
            Some("critical" | "error" | "warning" | "info")
        ) {
            e.push("payload.severity must be critical, error, warning or info".into());
        }
        if let Some(ts) = p.get("timestamp").filter(|t| !t.is_null()) {
            if ts
                .as_str()
                .is_none_or(|t| chrono::DateTime::parse_from_rfc3339(t).is_err())
            {
                e.push("payload.timestamp must be ISO 8601".into());
            }
        }
        if p.get("custom_details").is_some_and(|d| !d.is_object()) {
            e.push("payload.custom_details must be an object".into());
        }
        if let Some(links) = v.get("links") {
            let ok = links
                .as_array()
                .is_some_and(|l| l.iter().all(|x| x["href"].is_string()));
            if !ok {
                e.push("links must be objects with href".into());
            }
        }
    }
    e
}

pub(crate) async fn serve(listener: tokio::net::TcpListener, r: Arc<Receiver>) {
    let app = axum::Router::new().fallback(
        move |uri: axum::http::Uri, headers: HeaderMap, body: String| {
            let r = r.clone();
            async move {
                let path = uri.path().to_string();
                let headers: BTreeMap<String, String> = headers
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                    .collect();
                if path == "/pd" {
                    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
                    let errors = pagerduty_errors(&v);
                    if !errors.is_empty() {
                        r.pd_refused.lock().unwrap().extend(errors.clone());
                        return (
                            StatusCode::BAD_REQUEST,
                            json!({"status": "invalid event", "message": "Event object is invalid", "errors": errors}).to_string(),
                        );
                    }
                    r.got.lock().unwrap().push(Got {
                        path,
                        headers,
                        body,
                        at: Instant::now(),
                    });
                    return (
                        StatusCode::ACCEPTED,
                        json!({"status": "success", "message": "Event processed", "dedup_key": v["dedup_key"]}).to_string(),
                    );
                }
                r.got.lock().unwrap().push(Got {
                    path,
                    headers,
                    body,
                    at: Instant::now(),
                });
                (StatusCode::OK, String::new())
            }
        },
    );
    axum::serve(listener, app).await.unwrap();
}

/// A real SMTP server (tests/smtp_sink.py).
struct Smtp {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Smtp {
    fn start(
        dir: &Path,
        mode: &str,
        tls: Option<(&Path, &Path)>,
        login: Option<(&str, &str)>,
    ) -> Smtp {
        std::fs::create_dir_all(dir).unwrap();
        let mut cmd = Command::new("python3");
        cmd.arg(repo_root().join("tests/smtp_sink.py"))
            .args(["--port", "0", "--mode", mode, "--maildir"])
            .arg(dir)
            .stdout(Stdio::piped());
        if let Some((cert, key)) = tls {
            cmd.arg("--cert").arg(cert).arg("--key").arg(key);
        }
        if let Some((u, p)) = login {
            cmd.args(["--user", u, "--password", p]);
        }
        let mut child = cmd
            .spawn()
            .expect("python3 with aiosmtpd (pip install -r tests/requirements.txt)");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line
            .trim()
            .strip_prefix("READY ")
            .unwrap_or_else(|| panic!("smtp_sink.py did not start: {line:?}"))
            .parse()
            .unwrap();
        Smtp {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    fn mails(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "eml"))
            .collect();
        v.sort_by_key(|p| {
            p.file_stem()
                .and_then(|s| s.to_str())
                .and_then(|s| s.parse::<u32>().ok())
                .unwrap_or(0)
        });
        v
    }
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn transition(rule: &str, service: &str, i: usize, to: AlertState, at_ms: i64) -> Transition {
    let labels = vec![
        ("service".to_string(), service.to_string()),
        ("request_model".to_string(), "gpt-4o".to_string()),
        ("deployment".to_string(), "stable".to_string()),
    ];
    Transition {
        at_ms,
        rule: rule.into(),
        fingerprint: fingerprint(rule, &labels),
        from: if to == AlertState::Firing {
            AlertState::Pending
        } else {
            AlertState::Firing
        },
        to,
        severity: Severity::Alert,
        labels,
        rule_labels: [("team".to_string(), "llm-platform".to_string())].into(),
        signal: "error_rate".into(),
        numbers: Numbers {
            value: Some(0.02 + i as f64 / 10_000.0),
            baseline: Some(0.01),
            effect: Some(2.0 + i as f64 / 100.0),
            p_value: Some(1e-6),
            n_current: 3000 + i as u64,
            n_baseline: 0,
        },
        threshold: 0.01,
        range_start_ms: at_ms - 300_000,
        range_end_ms: at_ms,
        baseline_desc: "fixed 0.01".into(),
        reason: "threshold breached and significant".into(),
        summary: format!(
            "Error rate of {service}/gpt-4o is {:.2} %",
            (0.02 + i as f64 / 10_000.0) * 100.0
        ),
        description: "Error rate above 1 %".into(),
        runbook_url: "https://runbooks.example/error-rate".into(),
        channels: vec![],
        action: None,
        fired_at_ms: Some(at_ms - if to == AlertState::Firing { 0 } else { 600_000 }),
        onset_ms: Some(at_ms - 95_000),
        detection_delay_ms: Some(95_000),
        details: Default::default(),
    }
}

fn breaker(from: BreakerState, to: BreakerState, at_ms: i64) -> BreakerTransition {
    BreakerTransition {
        at_ms,
        rule: "error_rate_breaker".into(),
        key: "b0b0b0b0b0b0b0b0".into(),
        labels: vec![("request_model".into(), "gpt-4o".into())],
        from,
        to,
        severity: Severity::Page,
        primary_model: Some("gpt-4o".into()),
        fallback_model: Some("claude-haiku".into()),
        cooldown_ms: 60_000,
        opens: 1,
        signal: "error rate".into(),
        value: Some(0.12),
        threshold: 0.05,
        requests: 300,
        range_start_ms: at_ms - 30_000,
        range_end_ms: at_ms,
        reason: "error_rate_breaker fired".into(),
        channels: vec!["gateway".into()],
    }
}

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn verify_signatures(
    requests: &[Got],
    secrets: &str,
    dir: &Path,
) -> std::process::Output {
    let captured: Vec<Value> = requests
        .iter()
        .map(|g| json!({"headers": g.headers, "body": g.body}))
        .collect();
    let path = dir.join(format!("captured-{}.json", secrets.len()));
    std::fs::write(&path, serde_json::to_vec(&captured).unwrap()).unwrap();
    Command::new("python3")
        .arg(repo_root().join("tests/verify_webhooks.py"))
        .arg(&path)
        .arg(secrets)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_channel_delivers_to_a_real_receiver() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A certificate for the TLS SMTP servers, trusted through the channel's ca_file.
    let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .args([
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ])
        .stderr(Stdio::null())
        .status()
        .expect("the openssl command line tool (see .ci/run)");
    assert!(ok.success());
    let starttls = Smtp::start(
        &d.join("mail-starttls"),
        "starttls",
        Some((&cert, &key)),
        Some(("dw-user", "dw-pass")),
    );
    let implicit = Smtp::start(&d.join("mail-tls"), "tls", Some((&cert, &key)), None);
    let plain = Smtp::start(&d.join("mail-plain"), "plain", None, None);

    let receiver = Arc::new(Receiver::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(serve(listener, receiver.clone()));

    let text = format!(
        r#"
[notify]
group_wait = "1s"
group_interval = "2s"
repeat_interval = "1h"
default_channels = ["hook", "am", "pd", "mail_starttls", "mail_tls", "mail_plain"]
[notify.retry]
base = "100ms"
max = "1s"
[notify.channels.hook]
type = "webhook"
url = "{base}/hook"
secret_env = "HOOK_SECRETS"
[notify.channels.am]
type = "webhook"
url = "{base}/am"
format = "alertmanager"
secret_env = "HOOK_SECRETS"
[notify.channels.gateway]
type = "webhook"
url = "{base}/gateway"
secret_env = "HOOK_SECRETS"
headers = {{ Authorization = "Bearer ${{GATEWAY_TOKEN}}" }}
[notify.channels.limited]
type = "webhook"
url = "{base}/limited"
rate_limit = {{ per_minute = 60, burst = 1 }}
[notify.channels.pd]
type = "pagerduty"
url = "{base}/pd"
routing_key_env = "PD_KEY"
source = "driftwatch-test"
[notify.channels.mail_starttls]
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {p1}
tls = "starttls"
ca_file = "{cert}"
username_env = "SMTP_USER"
password_env = "SMTP_PASS"
from = "driftwatch <dw@example.com>"
to = ["oncall@example.com", "ml@example.com"]
send_resolved = true
[notify.channels.mail_tls]
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {p2}
tls = "tls"
ca_file = "{cert}"
from = "dw@example.com"
to = ["oncall@example.com"]
send_resolved = true
[notify.channels.mail_plain]
type = "email"
smtp_host = "127.0.0.1"
smtp_port = {p3}
tls = "none"
from = "dw@example.com"
to = ["oncall@example.com"]
[[notify.routes]]
matchers = ['alertname="latency_high"']
channels = ["limited"]
group_by = ["alertname", "service"]
group_wait = "0s"
[breaker]
channels = ["gateway"]
"#,
        p1 = starttls.port,
        p2 = implicit.port,
        p3 = plain.port,
        cert = cert.display(),
    );
    let config =
        driftwatch::config::Config::from_toml_and_env(&text, "test.toml", Vec::new()).unwrap();
    let secrets = format!("{SECRET_OLD} {SECRET_NEW}");
    let env = move |k: &str| -> Option<String> {
        match k {
            "HOOK_SECRETS" => Some(secrets.clone()),
            "PD_KEY" => Some(PD_KEY.into()),
            "SMTP_USER" => Some("dw-user".into()),
            "SMTP_PASS" => Some("dw-pass".into()),
            "GATEWAY_TOKEN" => Some("gw-token".into()),
            _ => None,
        }
    };
    let state = d.join("state");
    std::fs::create_dir_all(&state).unwrap();
    let (metrics, registry) = driftwatch::metrics::Metrics::new();
    let notifier = Notifier::start_with_env(&config, &state, metrics, &env)
        .unwrap()
        .expect("channels are configured");
    // A silence for one series, through the API's request type.
    let silence: SilenceRequest = serde_json::from_value(json!({
        "matchers": [{"name": "service", "value": "svc-muted", "isRegex": false}],
        "endsAt": "2099-01-01T00:00:00Z",
        "createdBy": "test",
        "comment": "known issue",
    }))
    .unwrap();
    notifier.shared.add_silence(silence).unwrap();

    // One incident across 50 series (+ one silenced), five latency alerts routed to the
    // rate-limited channel, and the breaker opening.
    let t1 = 1_795_000_000_000;
    let mut firing: Vec<Transition> = (0..50)
        .map(|i| {
            transition(
                "error_rate_high",
                &format!("svc{i:02}"),
                i,
                AlertState::Firing,
                t1,
            )
        })
        .collect();
    firing.push(transition(
        "error_rate_high",
        "svc-muted",
        99,
        AlertState::Firing,
        t1,
    ));
    for i in 0..5 {
        firing.push(transition(
            "latency_high",
            &format!("lat{i}"),
            i,
            AlertState::Firing,
            t1,
        ));
    }
    write_inbox(
        &state,
        &firing,
        &[breaker(BreakerState::Closed, BreakerState::Open, t1)],
        &[],
    )
    .unwrap();

    let r = receiver.clone();
    wait_until("the firing notifications", Duration::from_secs(30), || {
        r.on("/hook").len() == 1
            && r.on("/am").len() == 1
            && r.on("/pd").len() == 50
            && r.on("/gateway").len() == 1
            && r.on("/limited").len() == 5
            && starttls.mails().len() == 1
            && implicit.mails().len() == 1
            && plain.mails().len() == 1
    })
    .await;

    // Resolve: the 50 (and the silenced one), the breaker probes the primary.
    let t2 = t1 + 600_000;
    let resolved: Vec<Transition> = (0..50)
        .map(|i| {
            transition(
                "error_rate_high",
                &format!("svc{i:02}"),
                i,
                AlertState::Resolved,
                t2,
            )
        })
        .chain([transition(
            "error_rate_high",
            "svc-muted",
            99,
            AlertState::Resolved,
            t2,
        )])
        .collect();
    write_inbox(
        &state,
        &resolved,
        &[breaker(BreakerState::Open, BreakerState::HalfOpen, t2)],
        &[],
    )
    .unwrap();
    wait_until(
        "the resolved notifications",
        Duration::from_secs(30),
        || {
            r.on("/hook").len() == 2
                && r.on("/am").len() == 2
                && r.on("/pd").len() == 100
                && r.on("/gateway").len() == 2
                && starttls.mails().len() == 2
                && implicit.mails().len() == 2
        },
    )
    .await;
    // Let the outbox settle: nothing else may arrive (mail_plain does not send resolved).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (pending, dead) = notifier.shared.outbox_status();
    assert!(pending.is_empty() && dead == 0, "{pending:?} dead {dead}");
    assert_eq!(
        plain.mails().len(),
        1,
        "mail_plain has send_resolved = false"
    );
    assert_eq!(receiver.on("/hook").len(), 2);

    // --- Webhooks: one per group notification, signed; the receiver knows only the new
    // secret after a rotation, and an independent implementation verifies every request.
    let hooks: Vec<Got> = ["/hook", "/am", "/gateway"]
        .iter()
        .flat_map(|p| receiver.on(p))
        .collect();
    let out = verify_signatures(&hooks, SECRET_NEW, d);
    assert!(
        out.status.success(),
        "standardwebhooks refused a signature:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        hooks.len()
    );
    let wrong = verify_signatures(&hooks, "whsec_d3Jvbmcgc2VjcmV0IGZvciB0aGUgdGVzdA==", d);
    assert!(!wrong.status.success(), "a wrong secret must not verify");
    let ids: BTreeSet<&str> = hooks
        .iter()
        .map(|g| g.headers["webhook-id"].as_str())
        .collect();
    assert_eq!(
        ids.len(),
        hooks.len(),
        "one idempotency key per notification"
    );

    let first: Value = serde_json::from_str(&receiver.on("/hook")[0].body).unwrap();
    assert_eq!(first["status"], "firing");
    assert_eq!(first["group_key"], "{alertname=\"error_rate_high\"}");
    let alerts = first["alerts"].as_array().unwrap();
    assert_eq!(alerts.len(), 50, "the silenced series is left out");
    assert!(alerts.iter().all(|a| a["labels"]["service"] != "svc-muted"));
    let a7 = alerts
        .iter()
        .find(|a| a["labels"]["service"] == "svc07")
        .unwrap();
    assert_eq!(a7["value"], 0.0207);
    assert_eq!(a7["p_value"], 1e-6);
    assert_eq!(a7["n_current"], 3007);
    assert_eq!(a7["runbook_url"], "https://runbooks.example/error-rate");
    // The estimated onset and how long detection took reach the receiver.
    assert_eq!(a7["detection_delay_seconds"], 95.0);
    assert!(
        a7["onset"].as_str().is_some_and(|s| s.ends_with('Z')),
        "{a7}"
    );
    let second: Value = serde_json::from_str(&receiver.on("/hook")[1].body).unwrap();
    assert_eq!(second["status"], "resolved");
    assert_eq!(second["alerts"].as_array().unwrap().len(), 50);

    let am: Value = serde_json::from_str(&receiver.on("/am")[0].body).unwrap();
    assert_eq!(am["version"], "4");
    assert_eq!(am["status"], "firing");
    assert_eq!(am["receiver"], "am");
    assert_eq!(am["groupLabels"]["alertname"], "error_rate_high");
    assert_eq!(am["commonLabels"]["team"], "llm-platform");
    assert_eq!(am["alerts"].as_array().unwrap().len(), 50);
    assert_eq!(am["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    let am2: Value = serde_json::from_str(&receiver.on("/am")[1].body).unwrap();
    assert_eq!(am2["status"], "resolved");

    // --- Breaker: fallback, then restore, to the gateway, with its bearer header.
    let gw = receiver.on("/gateway");
    let fallback: Value = serde_json::from_str(&gw[0].body).unwrap();
    assert_eq!(fallback["command"], "fallback");
    assert_eq!(fallback["primary_model"], "gpt-4o");
    assert_eq!(fallback["fallback_model"], "claude-haiku");
    assert_eq!(gw[0].headers["authorization"], "Bearer gw-token");
    let restore: Value = serde_json::from_str(&gw[1].body).unwrap();
    assert_eq!(restore["command"], "restore");

    // --- Rate limit: burst 1, then one a second.
    let lim = receiver.on("/limited");
    let span = lim.last().unwrap().at - lim[0].at;
    assert!(
        span >= Duration::from_millis(3500),
        "5 deliveries in {span:?}"
    );

    // --- PagerDuty: every event passed the field rules; resolve shares the trigger's key.
    assert!(receiver.pd_refused.lock().unwrap().is_empty());
    let pd: Vec<Value> = receiver
        .on("/pd")
        .iter()
        .map(|g| serde_json::from_str(&g.body).unwrap())
        .collect();
    let keys = |action: &str| -> BTreeSet<String> {
        pd.iter()
            .filter(|v| v["event_action"] == action)
            .map(|v| v["dedup_key"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(keys("trigger").len(), 50);
    assert_eq!(keys("trigger"), keys("resolve"));
    let t = pd
        .iter()
        .find(|v| v["event_action"] == "trigger" && v["payload"]["group"] == "svc07")
        .unwrap();
    assert_eq!(t["routing_key"], PD_KEY);
    assert_eq!(t["payload"]["severity"], "error");
    assert_eq!(t["payload"]["source"], "driftwatch-test");
    assert_eq!(t["payload"]["custom_details"]["value"], 0.0207);
    assert_eq!(t["payload"]["custom_details"]["n_current"], 3007);
    assert_eq!(t["links"][0]["href"], "https://runbooks.example/error-rate");

    // --- Mail: parsed by Python's email package.
    let parsed = |p: &Path| -> Value {
        serde_json::from_str(python("tests/parse_mail.py", &[p.to_str().unwrap()]).trim()).unwrap()
    };
    let m = parsed(&starttls.mails()[0]);
    assert_eq!(m["subject"], "[FIRING:50] alertname=error_rate_high");
    assert_eq!(m["content_type"], "multipart/alternative");
    assert_eq!(m["to"], "oncall@example.com, ml@example.com");
    assert!(m["message_id"].as_str().unwrap().ends_with("@driftwatch>"));
    let text = m["text"].as_str().unwrap();
    assert!(text.contains("Firing (50):"), "{text}");
    assert!(
        text.contains("Error rate of svc07/gpt-4o is 2.07 %"),
        "{text}"
    );
    assert!(text.contains("Value: 0.0207"), "{text}");
    assert!(text.contains("p-value: 1.000e-6"), "{text}");
    assert!(text.contains("Samples: 3007 current"), "{text}");
    assert!(text.contains("(detected 95 s after)"), "{text}");
    assert!(!text.contains("svc-muted"));
    let html = m["html"].as_str().unwrap();
    assert!(
        html.contains("<a href=\"https://runbooks.example/error-rate\">"),
        "{html}"
    );
    assert!(html.contains("<td>0.0207</td>"), "{html}");
    let envelope: Value =
        serde_json::from_slice(&std::fs::read(starttls.mails()[0].with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(envelope["auth_user"], "dw-user");
    assert_eq!(envelope["tls"], true);
    assert_eq!(envelope["rcpt_tos"].as_array().unwrap().len(), 2);
    let r2 = parsed(&starttls.mails()[1]);
    assert_eq!(r2["subject"], "[RESOLVED] alertname=error_rate_high");
    assert!(r2["text"].as_str().unwrap().contains("Resolved (50):"));
    let tls_env: Value =
        serde_json::from_slice(&std::fs::read(implicit.mails()[0].with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(tls_env["tls"], true);
    let plain_mail = parsed(&plain.mails()[0]);
    assert_eq!(
        plain_mail["subject"],
        "[FIRING:50] alertname=error_rate_high"
    );

    // --- Metrics.
    let text = driftwatch::metrics::render(&registry);
    let silenced =
        crate::support::metric_value(&text, "driftwatch_notifications_silenced_total").unwrap();
    assert!(silenced >= 1.0, "{silenced}");
    assert!(
        text.contains("driftwatch_notifications_total{channel=\"pd\",outcome=\"delivered\"} 100"),
        "{text}"
    );
}
