//! Sending outbox entries over HTTP: one POST per notification, its outcome classified for
//! the [`Outbox`] (delivered, retry with backoff or `Retry-After`, or given up).

use std::time::Duration;

use rand::Rng;

use super::outbox::{classify, Backoff, Notification, Outbox, OutboxError, Outcome};

/// Response bodies are read up to this many bytes (for the log and dead letters).
const BODY_LIMIT: usize = 4096;

/// An HTTP client for receivers.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
}

impl Sender {
    /// `timeout` bounds each request, connect included.
    pub fn new(timeout: Duration) -> Result<Sender, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("driftwatch/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Sender { client })
    }

    /// POSTs `body` (JSON) with `headers`; never fails, the outcome says what happened.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: &str,
        now_ms: i64,
    ) -> Outcome {
        let mut req = self
            .client
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string());
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        match req.send().await {
            // Only the origin: a path or query may carry a token (Slack-style URLs), and the
            // reason is logged and kept in the outbox.
            Err(e) => Outcome::Retry {
                reason: format!("{}: {}", origin(url), e.without_url()),
                after: None,
            },
            Ok(resp) => {
                let status = resp.status().as_u16();
                let retry_after = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let text = resp.text().await.unwrap_or_default();
                let text: String = text.chars().take(BODY_LIMIT).collect();
                classify(status, retry_after.as_deref(), &text, now_ms)
            }
        }
    }
}

/// `scheme://host:port` of a URL, for messages.
pub fn origin(url: &str) -> String {
    reqwest::Url::parse(url)
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_else(|_| "<invalid url>".to_string())
}

/// How a delivery round went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Round {
    pub delivered: usize,
    pub retried: usize,
    pub given_up: usize,
}

/// Turns a notification into (url, headers) for its channel.
pub type RequestFn<'a> = dyn Fn(&Notification) -> (String, Vec<(&'static str, String)>) + 'a;

/// Sends every due notification once; `request` turns one into (url, headers).
pub async fn deliver_due(
    outbox: &mut Outbox,
    sender: &Sender,
    request: &RequestFn<'_>,
    now_ms: i64,
    backoff: &Backoff,
    rng: &mut impl Rng,
) -> Result<Round, OutboxError> {
    let mut round = Round::default();
    for n in outbox.due(now_ms) {
        let (url, headers) = request(&n);
        let outcome = sender.post(&url, &headers, &n.body, now_ms).await;
        match &outcome {
            Outcome::Delivered => round.delivered += 1,
            Outcome::Retry { reason, .. } => {
                round.retried += 1;
                tracing::warn!(id = %n.id, channel = %n.channel, attempt = n.attempts + 1, %reason, "delivery failed; will retry");
            }
            Outcome::Permanent { reason } => {
                round.given_up += 1;
                tracing::error!(id = %n.id, channel = %n.channel, %reason, "delivery refused; not retried (kept in outbox/dead)");
            }
        }
        outbox.record(&n.id, &outcome, now_ms, backoff, rng)?;
    }
    Ok(round)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::http::{HeaderMap, StatusCode};
    use axum::routing::post;
    use rand::SeedableRng;

    use super::*;
    use crate::notify::signing::{self, Secret};

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[derive(Default)]
    struct Receiver {
        /// Answer 503 (with Retry-After: 0) this many more times.
        fail: AtomicU32,
        /// webhook-id → bodies received with a valid signature.
        got: Mutex<BTreeMap<String, Vec<String>>>,
    }

    async fn serve(listener: tokio::net::TcpListener, r: Arc<Receiver>) {
        let app = axum::Router::new().route(
            "/hook",
            post(move |headers: HeaderMap, body: String| {
                let r = r.clone();
                async move {
                    let h = |k: &str| {
                        headers
                            .get(k)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or("")
                            .to_string()
                    };
                    let id = h(signing::HEADER_ID);
                    let ts: i64 = h(signing::HEADER_TIMESTAMP).parse().unwrap_or(0);
                    let secret = Secret::parse(SECRET).unwrap();
                    let now = chrono::Utc::now().timestamp();
                    if signing::verify(
                        &[secret],
                        &id,
                        ts,
                        &h(signing::HEADER_SIGNATURE),
                        body.as_bytes(),
                        now,
                        300,
                    )
                    .is_err()
                    {
                        return (
                            StatusCode::UNAUTHORIZED,
                            HeaderMap::new(),
                            "bad signature".to_string(),
                        );
                    }
                    if body.contains("\"reject\"") {
                        return (
                            StatusCode::BAD_REQUEST,
                            HeaderMap::new(),
                            "schema mismatch".to_string(),
                        );
                    }
                    if r.fail.load(Ordering::SeqCst) > 0 {
                        r.fail.fetch_sub(1, Ordering::SeqCst);
                        let mut hm = HeaderMap::new();
                        hm.insert("retry-after", "0".parse().unwrap());
                        return (StatusCode::SERVICE_UNAVAILABLE, hm, "busy".to_string());
                    }
                    r.got.lock().unwrap().entry(id).or_default().push(body);
                    (StatusCode::OK, HeaderMap::new(), String::new())
                }
            }),
        );
        axum::serve(listener, app).await.unwrap();
    }

    fn n(id: &str, body: &str) -> Notification {
        Notification {
            id: id.into(),
            channel: "webhook".into(),
            created_ms: chrono::Utc::now().timestamp_millis(),
            attempts: 0,
            next_attempt_ms: 0,
            body: body.into(),
            last_error: None,
            order_key: None,
            seq: 0,
            alerts: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_receiver_that_was_down_gets_every_notification_once() {
        let dir = tempfile::tempdir().unwrap();
        // Reserve a port, and keep nothing listening on it: the receiver is down.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("http://127.0.0.1:{port}/hook");
        let secrets = vec![Secret::parse(SECRET).unwrap()];
        let request = move |n: &Notification| {
            let ts = chrono::Utc::now().timestamp();
            let h = signing::headers(&secrets, &n.id, ts, n.body.as_bytes());
            (url.clone(), h.to_vec())
        };
        let sender = Sender::new(Duration::from_secs(2)).unwrap();
        let backoff = Backoff {
            base: Duration::from_millis(20),
            cap: Duration::from_millis(100),
            max_retry_after: Duration::from_secs(1),
            give_up_after: Duration::from_secs(3600),
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let mut outbox = Outbox::open(dir.path()).unwrap();
        for i in 0..5 {
            outbox
                .enqueue(n(&format!("msg_{i}"), &format!("{{\"i\":{i}}}")))
                .unwrap();
        }
        outbox.enqueue(n("msg_bad", "{\"reject\":true}")).unwrap();

        let now = || chrono::Utc::now().timestamp_millis();
        let r = deliver_due(&mut outbox, &sender, &request, now(), &backoff, &mut rng)
            .await
            .unwrap();
        assert_eq!(
            r,
            Round {
                delivered: 0,
                retried: 6,
                given_up: 0
            },
            "receiver down: all retried"
        );
        // A restart while the receiver is down: nothing is lost.
        drop(outbox);
        let mut outbox = Outbox::open(dir.path()).unwrap();
        assert_eq!(outbox.len(), 6);

        // The receiver comes back, busy for its first two requests.
        let receiver = Arc::new(Receiver::default());
        receiver.fail.store(2, Ordering::SeqCst);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        tokio::spawn(serve(listener, receiver.clone()));
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !outbox.is_empty() && std::time::Instant::now() < deadline {
            deliver_due(&mut outbox, &sender, &request, now(), &backoff, &mut rng)
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(outbox.is_empty(), "{} left", outbox.len());
        let got = receiver.got.lock().unwrap().clone();
        assert_eq!(got.len(), 5, "{got:?}");
        for (id, bodies) in &got {
            assert_eq!(bodies.len(), 1, "{id} delivered {} times", bodies.len());
        }
        // The refused one is a dead letter with the receiver's explanation.
        let dead = std::fs::read_to_string(dir.path().join("dead/msg_bad.json")).unwrap();
        assert!(dead.contains("HTTP 400: schema mismatch"), "{dead}");
    }
}
