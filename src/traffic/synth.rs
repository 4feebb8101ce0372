//! Deterministic synthetic LLM traffic: several services, models, prompt versions and
//! deployments, with injectable incidents and every kind of malformed message.
//!
//! The same seed gives the same messages, so tests know exactly what went in. Incidents sit
//! at fixed fractions of the simulated span:
//! - latency spike: `claude-sonnet-4` latency ×3 during 30–40 % of the span;
//! - error burst: `code-assist` returns 25 % errors (429 rate limits, 500s) during 55–60 %;
//! - judge drop: `support-bot` moves from prompt `v12` to `v13` at 70 %, and `v13` scores
//!   about 12 % lower on faithfulness;
//! - silent model update: `gpt-4o` starts answering as a newer `response_model` at 50 %.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal};
use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::section::client_options;

use crate::decode::RejectReason;

/// One message to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthMessage {
    /// Partitioning key: the series, so one series lives in one partition.
    pub key: Option<String>,
    pub payload: Option<Vec<u8>>,
    pub kind: SynthKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthKind {
    Request,
    /// A late judge score or feedback about an earlier request.
    Score,
    /// A malformed message and the reason driftwatch must give.
    Malformed(RejectReason),
    /// A well-formed score for a request nobody sent: counted as `scores_unmatched`.
    UnmatchedScore,
}

struct Profile {
    service: &'static str,
    provider: &'static str,
    model: &'static str,
    response_model: &'static str,
    prompt_id: &'static str,
    prompt_version: &'static str,
    deployment: &'static str,
    weight: f64,
    latency_median_ms: f64,
    input_median: f64,
    output_median: f64,
    faithfulness: f64,
    price_in: f64,
    price_out: f64,
}

const PROFILES: &[Profile] = &[
    Profile {
        service: "support-bot",
        provider: "openai",
        model: "gpt-4o",
        response_model: "gpt-4o-2024-08-06",
        prompt_id: "answer",
        prompt_version: "v12",
        deployment: "stable",
        weight: 0.30,
        latency_median_ms: 1400.0,
        input_median: 1800.0,
        output_median: 250.0,
        faithfulness: 0.87,
        price_in: 2.5,
        price_out: 10.0,
    },
    Profile {
        service: "support-bot",
        provider: "openai",
        model: "gpt-4o-mini",
        response_model: "gpt-4o-mini-2024-07-18",
        prompt_id: "answer",
        prompt_version: "v12",
        deployment: "canary",
        weight: 0.06,
        latency_median_ms: 700.0,
        input_median: 1800.0,
        output_median: 240.0,
        faithfulness: 0.84,
        price_in: 0.15,
        price_out: 0.6,
    },
    Profile {
        service: "search-summarizer",
        provider: "anthropic",
        model: "claude-sonnet-4",
        response_model: "claude-sonnet-4-20250514",
        prompt_id: "summarize",
        prompt_version: "v3",
        deployment: "stable",
        weight: 0.28,
        latency_median_ms: 2100.0,
        input_median: 5200.0,
        output_median: 400.0,
        faithfulness: 0.91,
        price_in: 3.0,
        price_out: 15.0,
    },
    Profile {
        service: "code-assist",
        provider: "self-hosted",
        model: "llama-3.1-70b",
        response_model: "llama-3.1-70b-instruct",
        prompt_id: "complete",
        prompt_version: "v5",
        deployment: "stable",
        weight: 0.26,
        latency_median_ms: 900.0,
        input_median: 3000.0,
        output_median: 120.0,
        faithfulness: 0.80,
        price_in: 0.6,
        price_out: 0.8,
    },
    Profile {
        service: "code-assist",
        provider: "self-hosted",
        model: "llama-3.1-70b",
        response_model: "llama-3.1-70b-instruct",
        prompt_id: "complete",
        prompt_version: "v6",
        deployment: "canary",
        weight: 0.10,
        latency_median_ms: 950.0,
        input_median: 3100.0,
        output_median: 130.0,
        faithfulness: 0.81,
        price_in: 0.6,
        price_out: 0.8,
    },
];

const QUERY_TYPES: [&str; 5] = ["billing", "how-to", "troubleshooting", "account", "other"];

/// The request-log line as producers write it (contract field names).
#[derive(Serialize)]
struct WireEvent<'a> {
    event_id: String,
    timestamp: String,
    schema_version: &'static str,
    service: &'a str,
    route: String,
    environment: &'static str,
    provider: &'a str,
    request_model: &'a str,
    response_model: &'a str,
    prompt_id: &'a str,
    prompt_version: &'a str,
    deployment: &'a str,
    latency_ms: f64,
    ttft_ms: f64,
    input_tokens: u64,
    output_tokens: u64,
    cached_input_tokens: u64,
    cost_usd: f64,
    status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    error_type: Option<&'static str>,
    http_status: u16,
    retries: u32,
    finish_reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    judge_scores: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    feedback: Option<i8>,
    query_type: &'static str,
    prompt_chars: u64,
    trace_id: String,
    response_id: String,
}

/// Generates the messages of one `produce` run.
pub struct Synth {
    cfg: ProduceConfig,
    rng: ChaCha8Rng,
    start_ms: i64,
    span_ms: i64,
    /// Requests generated so far.
    i: u64,
    /// Late scores waiting to be sent a few messages after their request.
    pending: std::collections::VecDeque<(u64, SynthMessage)>,
    malformed_seq: u64,
    lognormal: LogNormal<f64>,
    std_normal: Normal<f64>,
}

impl Synth {
    /// `end_ms` is the event time of the last request in backfill mode.
    pub fn new(cfg: &ProduceConfig, end_ms: i64) -> Self {
        let span_ms = cfg.span.as_millis() as i64;
        Self {
            cfg: cfg.clone(),
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            start_ms: end_ms - span_ms,
            span_ms,
            i: 0,
            pending: Default::default(),
            malformed_seq: 0,
            lognormal: LogNormal::new(0.0, 0.45).expect("valid lognormal"),
            std_normal: Normal::new(0.0, 1.0).expect("valid normal"),
        }
    }

    /// Requests still to generate.
    pub fn remaining(&self) -> u64 {
        self.cfg.events.saturating_sub(self.i)
    }

    /// The next message, or `None` when every request (and its late scores) is out.
    /// `now_ms` stamps requests in realtime mode.
    pub fn next_message(&mut self, now_ms: i64) -> Option<SynthMessage> {
        if let Some((due, _)) = self.pending.front() {
            if *due <= self.i || self.i >= self.cfg.events {
                return self.pending.pop_front().map(|(_, m)| m);
            }
        }
        if self.i >= self.cfg.events {
            return None;
        }
        if self.cfg.malformed_ratio > 0.0 && self.rng.random_bool(self.cfg.malformed_ratio) {
            return Some(self.malformed());
        }
        let ts = match self.cfg.event_time {
            EventTimeMode::Realtime => now_ms,
            EventTimeMode::Backfill => {
                let base = self.start_ms
                    + (self.i as i128 * self.span_ms as i128 / self.cfg.events.max(1) as i128)
                        as i64;
                // a little out-of-order jitter, well within the default lateness
                (base - self.rng.random_range(0..2_000)).max(self.start_ms)
            }
        };
        let msg = self.request(ts);
        self.i += 1;
        Some(msg)
    }

    fn phase(&self, ts: i64) -> f64 {
        if self.span_ms <= 0 {
            return 0.0;
        }
        ((ts - self.start_ms) as f64 / self.span_ms as f64).clamp(0.0, 1.0)
    }

    fn request(&mut self, ts: i64) -> SynthMessage {
        let seq = self.i;
        let phase = self.phase(ts);
        let total: f64 = PROFILES.iter().map(|p| p.weight).sum();
        let mut pick = self.rng.random::<f64>() * total;
        let mut prof = &PROFILES[0];
        for p in PROFILES {
            if pick < p.weight {
                prof = p;
                break;
            }
            pick -= p.weight;
        }
        let mut prompt_version = prof.prompt_version;
        let mut faithfulness = prof.faithfulness;
        if self.cfg.judge_drop && prof.service == "support-bot" && phase >= 0.70 {
            prompt_version = "v13";
            faithfulness *= 0.88;
        }
        let response_model = if prof.model == "gpt-4o" && phase >= 0.5 {
            "gpt-4o-2024-11-20"
        } else {
            prof.response_model
        };
        let mut latency = prof.latency_median_ms * self.lognormal.sample(&mut self.rng);
        if self.rng.random_bool(0.01) {
            latency *= 2.5; // a natural tail
        }
        if self.cfg.latency_spike
            && prof.model == "claude-sonnet-4"
            && (0.30..0.40).contains(&phase)
        {
            latency *= 3.0;
        }
        let latency = latency.min(600_000.0);
        let ttft = latency * self.rng.random_range(0.08..0.3);
        let input = (prof.input_median * self.lognormal.sample(&mut self.rng))
            .round()
            .max(1.0) as u64;
        let output = (prof.output_median * self.lognormal.sample(&mut self.rng))
            .round()
            .max(1.0) as u64;
        let cached = if self.rng.random_bool(0.3) {
            input / 2
        } else {
            0
        };
        let burst =
            self.cfg.error_burst && prof.service == "code-assist" && (0.55..0.60).contains(&phase);
        let err_p = if burst { 0.25 } else { 0.005 };
        let (status, error_type, http_status, finish) = if self.rng.random_bool(err_p) {
            let (t, h) = match self.rng.random_range(0..4) {
                0 | 1 if burst => ("rate_limit", 429),
                0 => ("timeout", 504),
                1 | 2 => ("server_error", 500),
                _ => ("rate_limit", 429),
            };
            ("error", Some(t), h, "error")
        } else if self.rng.random_bool(0.03) {
            ("ok", None, 200, "length")
        } else {
            ("ok", None, 200, "stop")
        };
        let cost = ((input - cached) as f64 * prof.price_in
            + cached as f64 * prof.price_in * 0.5
            + output as f64 * prof.price_out)
            / 1e6;
        let response_id = format!("resp-{:x}-{seq}", self.cfg.seed);
        let key = format!(
            "{}|{}|{}|{}",
            prof.service, prof.model, prompt_version, prof.deployment
        );

        // 30 % of requests are judged; some judgements arrive later as their own message.
        let mut judge_scores = None;
        if status == "ok" && self.rng.random_bool(0.3) {
            let f = (faithfulness + 0.08 * self.std_normal.sample(&mut self.rng)).clamp(0.0, 1.0);
            let r = (0.9 + 0.06 * self.std_normal.sample(&mut self.rng)).clamp(0.0, 1.0);
            if self.rng.random_bool(self.cfg.late_score_ratio) {
                for (name, v) in [("faithfulness", f), ("relevance", r)] {
                    let body = serde_json::json!({"kind": "score", "response_id": response_id, "name": name, "value": v});
                    self.defer(seq, key.clone(), body);
                }
            } else {
                let mut m = serde_json::Map::new();
                m.insert("faithfulness".into(), f.into());
                m.insert("relevance".into(), r.into());
                judge_scores = Some(m);
            }
        }
        let mut feedback = None;
        if self.rng.random_bool(0.05) {
            let neg_p = if faithfulness < prof.faithfulness {
                0.3
            } else {
                0.15
            };
            let v: i8 = if self.rng.random_bool(neg_p) {
                -1
            } else if self.rng.random_bool(0.06) {
                0
            } else {
                1
            };
            if self.rng.random_bool(self.cfg.late_score_ratio) {
                let body =
                    serde_json::json!({"kind": "feedback", "response_id": response_id, "value": v});
                self.defer(seq, key.clone(), body);
            } else {
                feedback = Some(v);
            }
        }
        let ev = WireEvent {
            event_id: format!("evt-{:x}-{seq:09}", self.cfg.seed),
            timestamp: chrono::DateTime::from_timestamp_millis(ts)
                .unwrap_or_default()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            schema_version: "1.0",
            service: prof.service,
            route: format!("/v1/{}", prof.prompt_id),
            environment: "prod",
            provider: prof.provider,
            request_model: prof.model,
            response_model,
            prompt_id: prof.prompt_id,
            prompt_version,
            deployment: prof.deployment,
            latency_ms: (latency * 1000.0).round() / 1000.0,
            ttft_ms: (ttft * 1000.0).round() / 1000.0,
            input_tokens: input,
            output_tokens: if status == "error" { 0 } else { output },
            cached_input_tokens: cached,
            cost_usd: (cost * 1e8).round() / 1e8,
            status,
            error_type,
            http_status,
            retries: if status == "error" {
                self.rng.random_range(0..3)
            } else {
                u32::from(self.rng.random_bool(0.02))
            },
            finish_reason: finish,
            judge_scores,
            feedback,
            query_type: QUERY_TYPES[self.rng.random_range(0..QUERY_TYPES.len())],
            prompt_chars: input * 4,
            trace_id: format!("trace-{:x}-{seq}", self.cfg.seed),
            response_id,
        };
        SynthMessage {
            key: Some(key),
            // Serializing a struct of plain fields cannot fail.
            payload: Some(serde_json::to_vec(&ev).unwrap_or_default()),
            kind: SynthKind::Request,
        }
    }

    fn defer(&mut self, seq: u64, key: String, body: serde_json::Value) {
        let mut due = seq + 1 + self.rng.random_range(0..20);
        // In backfill, the scores of every fourth such request come 3 to 4 minutes of event
        // time later, after their request's window was written (correction rows).
        if seq.is_multiple_of(4)
            && self.cfg.event_time == EventTimeMode::Backfill
            && self.span_ms > 0
        {
            let delay_ms = 180_000 + (seq % 60) as i64 * 1000;
            let per_ms = self.cfg.events as f64 / self.span_ms as f64;
            due = seq + 1 + (delay_ms as f64 * per_ms).ceil() as u64;
        }
        let msg = SynthMessage {
            key: Some(key),
            payload: Some(body.to_string().into_bytes()),
            kind: SynthKind::Score,
        };
        let pos = self.pending.partition_point(|(d, _)| *d <= due);
        self.pending.insert(pos, (due, msg));
    }

    /// The next malformed message, cycling through every kind of bad input.
    fn malformed(&mut self) -> SynthMessage {
        use RejectReason::*;
        let n = self.malformed_seq;
        self.malformed_seq += 1;
        let good = r#""event_id":"bad","timestamp":"2026-01-01T00:00:00Z","service":"s","request_model":"m""#;
        if n % 12 == 11 && n % 600 != 11 {
            return SynthMessage {
                key: None,
                payload: Some(
                    br#"{"kind":"score","response_id":"never-seen","name":"faithfulness","value":0.5}"#
                        .to_vec(),
                ),
                kind: SynthKind::UnmatchedScore,
            };
        }
        let (reason, payload): (RejectReason, Option<Vec<u8>>) = match n % 12 {
            0 => (
                InvalidJson,
                Some(format!("{{{good},\"latency_ms\":12").into_bytes()),
            ),
            1 => (
                InvalidUtf8,
                Some([b"{\"event_id\":\"".as_slice(), &[0xff, 0xfe, 0xfd], b"\"}"].concat()),
            ),
            2 => (NotAnObject, Some(b"[1,2,3]".to_vec())),
            3 => (MissingField, Some(format!("{{{good}}}").into_bytes())),
            4 => (
                WrongType,
                Some(format!("{{{good},\"latency_ms\":\"fast\"}}").into_bytes()),
            ),
            5 => (
                InvalidValue,
                Some(format!("{{{good},\"latency_ms\":-5}}").into_bytes()),
            ),
            6 => (
                InvalidValue,
                Some(format!("{{{good},\"latency_ms\":5,\"input_tokens\":1e15}}").into_bytes()),
            ),
            7 => (EmptyMessage, None),
            8 => (
                DuplicateField,
                Some(
                    format!("{{{good},\"latency_ms\":5,\"gen_ai.request.model\":\"x\"}}")
                        .into_bytes(),
                ),
            ),
            9 => (
                UnsupportedVersion,
                Some(
                    format!("{{{good},\"latency_ms\":5,\"schema_version\":\"9.0\"}}").into_bytes(),
                ),
            ),
            10 => (InvalidJson, Some(b"{\"latency_ms\": NaN}".to_vec())),
            _ => (
                Oversize,
                Some(format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024)).into_bytes()),
            ),
        };
        SynthMessage {
            key: None,
            payload,
            kind: SynthKind::Malformed(reason),
        }
    }
}

/// What a whole synthetic run contains, for tests and the demo summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynthTally {
    pub requests: u64,
    pub scores: u64,
    pub malformed: std::collections::BTreeMap<RejectReason, u64>,
    pub unmatched_scores: u64,
}

impl SynthTally {
    pub fn add(&mut self, kind: SynthKind) {
        match kind {
            SynthKind::Request => self.requests += 1,
            SynthKind::Score => self.scores += 1,
            SynthKind::Malformed(r) => *self.malformed.entry(r).or_insert(0) += 1,
            SynthKind::UnmatchedScore => self.unmatched_scores += 1,
        }
    }

    pub fn messages(&self) -> u64 {
        self.requests + self.scores + self.unmatched_scores + self.malformed.values().sum::<u64>()
    }
}

/// `driftwatch produce`: synthetic traffic for demos, tests and load.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProduceConfig {
    /// Topic to publish to. Default: the first of `kafka.topics`.
    pub topic: Option<String>,
    /// Request events to publish. Default 10000. Ignored when `duration` is set.
    pub events: u64,
    /// Events per second; 0 publishes as fast as the broker takes them. Default 0.
    pub rate: f64,
    /// Publish for this long at `rate` (events = rate × duration) instead of a fixed
    /// `events` count. Requires `rate` > 0. Default: unset.
    #[serde(with = "humantime_serde")]
    pub duration: Option<Duration>,
    /// RNG seed; the same seed gives the same traffic. Default 42.
    pub seed: u64,
    /// Event time: `backfill` spreads the events over `span` ending now; `realtime` stamps each
    /// event with the wall clock when it is sent. Default `backfill`.
    pub event_time: EventTimeMode,
    /// Simulated time covered in `backfill` mode. Default `3h`.
    #[serde(with = "humantime_serde")]
    pub span: Duration,
    /// Inject a latency spike (P99 ×3 on one model). Default true.
    pub latency_spike: bool,
    /// Inject an error burst (20 % errors on one service). Default true.
    pub error_burst: bool,
    /// Inject a judge-score drop (−10 % after a prompt-version change). Default true.
    pub judge_drop: bool,
    /// Fraction of messages that are malformed, of every kind. Default 0.005.
    pub malformed_ratio: f64,
    /// Fraction of judge scores and feedback sent later as their own message. Default 0.1.
    /// Most follow their request within 20 messages; in `backfill`, those of every fourth
    /// request come 3 to 4 minutes of event time later, after the request's window closed.
    pub late_score_ratio: f64,
    /// Producer-only librdkafka options, applied after `kafka.librdkafka`.
    /// Default `{"linger.ms" = "0"}`.
    #[serde(deserialize_with = "client_options")]
    pub librdkafka: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EventTimeMode {
    Backfill,
    Realtime,
}

impl Default for ProduceConfig {
    fn default() -> Self {
        Self {
            topic: None,
            events: 10_000,
            rate: 0.0,
            duration: None,
            seed: 42,
            event_time: EventTimeMode::Backfill,
            span: Duration::from_secs(3 * 3600),
            latency_spike: true,
            error_burst: true,
            judge_drop: true,
            malformed_ratio: 0.005,
            late_score_ratio: 0.1,
            librdkafka: BTreeMap::from([("linger.ms".to_string(), "0".to_string())]),
        }
    }
}

impl ProduceConfig {
    /// Request events to publish: `rate × duration` when a duration is set, else `events`.
    pub fn events_to_send(&self) -> u64 {
        match self.duration {
            Some(d) => (self.rate * d.as_secs_f64()).ceil() as u64,
            None => self.events,
        }
    }

    /// `produce.topic`, else the first of `kafka.topics`.
    pub fn topic_or<'a>(&'a self, kafka: &'a crate::source::kafka::KafkaConfig) -> &'a str {
        self.topic.as_deref().unwrap_or_else(|| {
            kafka
                .topics
                .first()
                .map(String::as_str)
                .unwrap_or("llm-logs")
        })
    }

    /// Checks the section; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), crate::section::ConfigError> {
        let p = self;
        if !(p.rate.is_finite() && p.rate >= 0.0) {
            return Err(crate::section::invalid(
                "produce.rate",
                "must be ≥ 0 (0 = as fast as possible)",
            ));
        }
        for (name, v) in [
            ("produce.malformed_ratio", p.malformed_ratio),
            ("produce.late_score_ratio", p.late_score_ratio),
        ] {
            if !(0.0..=1.0).contains(&v) {
                return Err(crate::section::invalid(name, "must be between 0 and 1"));
            }
        }
        if p.duration.is_some() && p.rate <= 0.0 {
            return Err(crate::section::invalid(
                "produce.duration",
                "needs produce.rate > 0 (events = rate × duration)",
            ));
        }
        if p.span.is_zero() {
            return Err(crate::section::invalid(
                "produce.span",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::LimitsConfig;
    use crate::decode::{Decoded, Decoder};

    fn cfg(events: u64) -> ProduceConfig {
        ProduceConfig {
            events,
            malformed_ratio: 0.05,
            ..Default::default()
        }
    }

    #[test]
    fn same_seed_same_traffic() {
        let end = 1_790_000_000_000;
        let a: Vec<_> = std::iter::from_fn({
            let mut s = Synth::new(&cfg(500), end);
            move || s.next_message(0)
        })
        .collect();
        let mut s = Synth::new(&cfg(500), end);
        let b: Vec<_> = std::iter::from_fn(|| s.next_message(0)).collect();
        assert_eq!(a, b);
        assert_eq!(
            a.iter().filter(|m| m.kind == SynthKind::Request).count(),
            500
        );
    }

    #[test]
    fn every_message_decodes_as_labelled() {
        let end = 1_790_000_000_000;
        let d = Decoder::new(LimitsConfig::default(), Default::default());
        let mut s = Synth::new(&cfg(5000), end);
        let mut tally = SynthTally::default();
        while let Some(m) = s.next_message(0) {
            tally.add(m.kind);
            let got = d.decode(m.payload.as_deref(), end);
            match m.kind {
                SynthKind::Request => assert!(matches!(got, Ok(Decoded::Request(_))), "{got:?}"),
                SynthKind::Score => assert!(matches!(got, Ok(Decoded::Score(_))), "{got:?}"),
                // unmatched is decided by the window state, not the decoder
                SynthKind::UnmatchedScore => assert!(matches!(got, Ok(Decoded::Score(_)))),
                SynthKind::Malformed(r) => assert_eq!(got.unwrap_err().reason, r),
            }
        }
        assert_eq!(tally.requests, 5000);
        assert!(tally.scores > 50);
        assert!(tally.malformed.len() >= 10, "{:?}", tally.malformed);
    }
}
