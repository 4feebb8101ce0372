//! Scenario streams: simulated LLM traffic per series, second by second, with one known
//! incident (its onset) or none. The detection tests, the River benchmark
//! (`benches/detection/`) and anyone reproducing a delay use the same streams: the same seed
//! gives the same events.
//!
//! Latency is log-normal (σ 0.45 around a median), errors Bernoulli, judge scores normal
//! (sd 0.12, clamped to [0, 1]) on a share of the successful requests, arrivals Poisson per
//! second with uniform offsets inside it.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal, Poisson};

use crate::event::{Deployment, RequestEvent, Status};

/// Tuesday 2026-11-10 00:00 UTC: simulated streams start here.
pub const T0: i64 = 1_794_268_800_000;

/// One series' traffic at a moment: requests/s and how they look.
#[derive(Debug, Clone)]
pub struct Traffic {
    pub service: &'static str,
    pub model: &'static str,
    pub prompt_version: &'static str,
    pub deployment: Deployment,
    /// Requests per second (Poisson).
    pub rate: f64,
    pub latency_median_ms: f64,
    pub error_rate: f64,
    pub judge_mean: f64,
    /// Share of successful requests carrying an inline judge score.
    pub judge_share: f64,
}

impl Traffic {
    /// 10 requests/s, 800 ms median latency, 0.3 % errors, judge mean 0.8 on half of them.
    pub fn new(service: &'static str, model: &'static str) -> Self {
        Self {
            service,
            model,
            prompt_version: "v1",
            deployment: Deployment::Stable,
            rate: 10.0,
            latency_median_ms: 800.0,
            error_rate: 0.003,
            judge_mean: 0.8,
            judge_share: 0.5,
        }
    }
}

/// Draws the events of each simulated second.
#[derive(Debug)]
pub struct Generator {
    rng: ChaCha8Rng,
    seq: u64,
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: ChaCha8Rng::seed_from_u64(seed),
            seq: 0,
        }
    }

    /// Events generated so far.
    pub fn count(&self) -> u64 {
        self.seq
    }

    /// The events of the second starting at `second_ms`, in time order.
    pub fn second(&mut self, second_ms: i64, traffic: &[Traffic]) -> Vec<RequestEvent> {
        let mut events = Vec::new();
        for tr in traffic {
            let n = match Poisson::new(tr.rate) {
                Ok(p) if tr.rate > 0.0 => p.sample(&mut self.rng) as u64,
                _ => 0,
            };
            for _ in 0..n {
                events.push(self.event(tr, second_ms));
            }
        }
        events.sort_by_key(|e| e.timestamp_ms);
        events
    }

    fn event(&mut self, tr: &Traffic, second: i64) -> RequestEvent {
        let ts = second + self.rng.random_range(0..1000);
        let median = tr.latency_median_ms.max(1e-3);
        let lat = LogNormal::new(median.ln(), 0.45)
            .map(|d| d.sample(&mut self.rng))
            .unwrap_or(median);
        let error = self.rng.random_bool(tr.error_rate.clamp(0.0, 1.0));
        let mut judge_scores = Vec::new();
        if !error && self.rng.random_bool(tr.judge_share.clamp(0.0, 1.0)) {
            let s: f64 = Normal::new(tr.judge_mean, 0.12)
                .map(|d| d.sample(&mut self.rng))
                .unwrap_or(tr.judge_mean);
            judge_scores.push(("faithfulness".to_string(), s.clamp(0.0, 1.0)));
        }
        let id = self.seq;
        self.seq += 1;
        RequestEvent {
            event_id: format!("e{id}"),
            timestamp_ms: ts,
            service: tr.service.to_string(),
            request_model: tr.model.to_string(),
            prompt_version: Some(tr.prompt_version.to_string()),
            deployment: Some(tr.deployment),
            latency_ms: lat,
            ttft_ms: Some(lat * 0.2),
            input_tokens: Some(500),
            output_tokens: Some(200),
            status: if error { Status::Error } else { Status::Ok },
            error_type: error.then(|| "server_error".to_string()),
            judge_scores,
            ..Default::default()
        }
    }
}

/// A stream with one incident: the traffic before and from `onset_ms` on.
#[derive(Debug, Clone, Copy)]
pub struct Scenario {
    pub name: &'static str,
    pub description: &'static str,
    /// Event time the change starts.
    pub onset_ms: i64,
    /// Event time the stream ends.
    pub end_ms: i64,
    pub seed: u64,
    /// The shipped rule that must fire, and the goal for its delay after the onset.
    pub rule: &'static str,
    pub goal_ms: i64,
    pub traffic: fn(i64, i64) -> Vec<Traffic>,
}

impl Scenario {
    /// The traffic at `t_ms`.
    pub fn traffic_at(&self, t_ms: i64) -> Vec<Traffic> {
        (self.traffic)(t_ms, self.onset_ms)
    }
}

const HOUR_MS: i64 = 3_600_000;
const MIN_MS: i64 = 60_000;

fn one(service: &'static str, rate: f64) -> Traffic {
    let mut t = Traffic::new(service, "model-a");
    t.rate = rate;
    t
}

/// The incidents of the detection goals (issue 13): each after two quiet hours (the
/// baseline), with 20 minutes of stream after the onset.
pub fn scenarios() -> Vec<Scenario> {
    let onset = T0 + 2 * HOUR_MS;
    let end = onset + 20 * MIN_MS;
    vec![
        Scenario {
            name: "p99_x2.5_at_3rps",
            description: "every latency ×2.5 (so P99 ×2.5) on a series at 3 requests/s",
            onset_ms: onset,
            end_ms: end,
            seed: 31,
            rule: "p99_latency_regression",
            goal_ms: 120_000,
            traffic: |t, onset| {
                let mut a = one("chat", 3.0);
                if t >= onset {
                    a.latency_median_ms *= 2.5;
                }
                vec![a]
            },
        },
        Scenario {
            name: "p99_x3_at_1rps",
            description: "every latency ×3 on a series at 1 request/s",
            onset_ms: onset,
            end_ms: end,
            seed: 32,
            rule: "p99_latency_regression",
            goal_ms: 300_000,
            traffic: |t, onset| {
                let mut a = one("chat", 1.0);
                if t >= onset {
                    a.latency_median_ms *= 3.0;
                }
                vec![a]
            },
        },
        Scenario {
            name: "errors_0.3_to_4pct_at_2rps",
            description: "error rate 0.3 % → 4 % on a series at 2 requests/s",
            onset_ms: onset,
            end_ms: end,
            seed: 33,
            rule: "error_rate_high",
            goal_ms: 120_000,
            traffic: |t, onset| {
                let mut a = one("search", 2.0);
                if t >= onset {
                    a.error_rate = 0.04;
                }
                vec![a]
            },
        },
        Scenario {
            name: "judge_-10pct_at_5_scores_per_s",
            description: "judge mean −10 % (0.80 → 0.72) at 5 scores/s",
            onset_ms: onset,
            end_ms: end,
            seed: 34,
            rule: "judge_score_drop",
            goal_ms: 120_000,
            traffic: |t, onset| {
                let mut a = one("support-bot", 10.05);
                a.judge_share = 0.5;
                if t >= onset {
                    a.judge_mean *= 0.9;
                }
                vec![a]
            },
        },
    ]
}

/// One event as a request-log line of the event contract (`schemas/llm-request.v1`).
pub fn to_json_line(ev: &RequestEvent) -> String {
    let mut o = serde_json::Map::new();
    let mut put = |k: &str, v: serde_json::Value| {
        o.insert(k.to_string(), v);
    };
    put("event_id", ev.event_id.clone().into());
    put("timestamp", crate::time::rfc3339(ev.timestamp_ms).into());
    put("schema_version", "1.0".into());
    put("service", ev.service.clone().into());
    put("request_model", ev.request_model.clone().into());
    let opt = |v: &Option<String>| v.clone().map(serde_json::Value::from);
    for (k, v) in [
        ("response_model", &ev.response_model),
        ("prompt_id", &ev.prompt_id),
        ("prompt_version", &ev.prompt_version),
        ("variant", &ev.variant),
        ("trace_id", &ev.trace_id),
        ("response_id", &ev.response_id),
        ("system_fingerprint", &ev.system_fingerprint),
        ("query_type", &ev.query_type),
    ] {
        if let Some(v) = opt(v) {
            put(k, v);
        }
    }
    if let Some(d) = ev.deployment {
        put("deployment", d.as_str().into());
    }
    if let Some(s) = ev.http_status {
        put("http_status", s.into());
    }
    if let Some(f) = ev.feedback {
        let v: i64 = match f {
            crate::event::Feedback::Negative => -1,
            crate::event::Feedback::Neutral => 0,
            crate::event::Feedback::Positive => 1,
        };
        put("feedback", v.into());
    }
    put("latency_ms", ev.latency_ms.into());
    if let Some(t) = ev.ttft_ms {
        put("ttft_ms", t.into());
    }
    if let Some(t) = ev.input_tokens {
        put("input_tokens", t.into());
    }
    if let Some(t) = ev.output_tokens {
        put("output_tokens", t.into());
    }
    if let Some(c) = ev.prompt_chars {
        put("prompt_chars", c.into());
    }
    if let Some(t) = ev.cached_input_tokens {
        put("cached_input_tokens", t.into());
    }
    if let Some(t) = ev.cache_creation_input_tokens {
        put("cache_creation_input_tokens", t.into());
    }
    if let Some(t) = ev.reasoning_tokens {
        put("reasoning_tokens", t.into());
    }
    if let Some(c) = ev.cost_usd {
        put("cost_usd", c.into());
    }
    if let Some(f) = &ev.finish_reason {
        put("finish_reason", f.clone().into());
    }
    let error = ev.status == Status::Error;
    put("status", if error { "error" } else { "ok" }.into());
    if let Some(t) = &ev.error_type {
        put("error_type", t.clone().into());
    }
    if !ev.judge_scores.is_empty() {
        let scores: serde_json::Map<String, serde_json::Value> = ev
            .judge_scores
            .iter()
            .map(|(k, v)| (k.clone(), (*v).into()))
            .collect();
        put("judge_scores", scores.into());
    }
    serde_json::Value::Object(o).to_string()
}
