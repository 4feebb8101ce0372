//! Decode stage: bytes from a source → validated [`Decoded`] events, or a [`Reject`] with a
//! reason (the pipeline writes rejects to the quarantine table). Owns the `[limits]` and
//! `[prices]` config sections (cost is computed from prices when an event has none).
//!
//! Never panics on input. One pass of serde_json over the message into lenient scalars,
//! then field-by-field validation, so every refusal names the field and why. Unknown fields
//! are ignored (forward compatibility); OTel GenAI flat names are accepted as aliases.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::event::{
    Deployment, Feedback, RequestEvent, ScoreEvent, ScoreValue, Status, SCHEMA_MAJOR,
};

/// Why a message was refused. The string form is the `reason` column of `quarantine` and
/// the `reason` label of `driftwatch_quarantined_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectReason {
    /// Null or empty payload (e.g. a tombstone).
    EmptyMessage,
    /// Larger than `limits.max_message_bytes`.
    Oversize,
    InvalidUtf8,
    /// Not parseable as JSON (syntax error, trailing data, NaN literal, number out of range).
    InvalidJson,
    /// Valid JSON but not an object.
    NotAnObject,
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A field has the right type but an impossible value: negative, non-finite, out of
    /// range, unknown enum value, timestamp too far in the future.
    InvalidValue,
    /// The same field given twice (e.g. under its name and an OTel alias).
    DuplicateField,
    /// `schema_version` with a major this build does not know.
    UnsupportedVersion,
}

impl RejectReason {
    pub const ALL: [RejectReason; 10] = [
        RejectReason::EmptyMessage,
        RejectReason::Oversize,
        RejectReason::InvalidUtf8,
        RejectReason::InvalidJson,
        RejectReason::NotAnObject,
        RejectReason::MissingField,
        RejectReason::WrongType,
        RejectReason::InvalidValue,
        RejectReason::DuplicateField,
        RejectReason::UnsupportedVersion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::EmptyMessage => "empty_message",
            RejectReason::Oversize => "oversize",
            RejectReason::InvalidUtf8 => "invalid_utf8",
            RejectReason::InvalidJson => "invalid_json",
            RejectReason::NotAnObject => "not_an_object",
            RejectReason::MissingField => "missing_field",
            RejectReason::WrongType => "wrong_type",
            RejectReason::InvalidValue => "invalid_value",
            RejectReason::DuplicateField => "duplicate_field",
            RejectReason::UnsupportedVersion => "unsupported_version",
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refused message: the reason, the field at fault (when there is one) and a human detail.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}{}: {detail}", field.as_ref().map(|f| format!(" ({f})")).unwrap_or_default())]
pub struct Reject {
    pub reason: RejectReason,
    pub field: Option<String>,
    pub detail: String,
}

impl Reject {
    pub fn new(reason: RejectReason, field: Option<&str>, detail: impl Into<String>) -> Self {
        Self {
            reason,
            field: field.map(str::to_string),
            detail: detail.into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Request(Box<RequestEvent>),
    Score(ScoreEvent),
}

/// Earliest and latest event times accepted at all (2000-01-01, 2100-01-01).
const MIN_TS_MS: i64 = 946_684_800_000;
const MAX_TS_MS: i64 = 4_102_444_800_000;
const MAX_RETRIES: u64 = 1000;
const MAX_PROMPT_CHARS: u64 = 1_000_000_000;

/// Decodes and validates messages. Cheap to clone; holds the limits and the price table.
#[derive(Debug, Clone)]
pub struct Decoder {
    limits: LimitsConfig,
    prices: BTreeMap<String, ModelPrice>,
    registry: Option<std::sync::Arc<crate::registry::Registry>>,
    /// Share of `max_input_tokens` past which a request counts as near the context limit.
    near_context: f64,
}

impl Decoder {
    pub fn new(limits: LimitsConfig, prices: BTreeMap<String, ModelPrice>) -> Self {
        Self {
            limits,
            prices,
            registry: None,
            near_context: crate::registry::DEFAULT_NEAR_CONTEXT,
        }
    }

    /// The share of the context window past which a request is near the limit
    /// (`registry.near_context`).
    pub fn with_near_context(mut self, fraction: f64) -> Self {
        self.near_context = fraction;
        self
    }

    /// Prices from `registry` first (models it lists), `[prices]` for the others.
    pub fn with_registry(
        mut self,
        registry: Option<std::sync::Arc<crate::registry::Registry>>,
    ) -> Self {
        self.registry = registry;
        self
    }

    /// Swaps the registry (a reload).
    pub fn set_registry(&mut self, registry: Option<std::sync::Arc<crate::registry::Registry>>) {
        self.registry = registry;
    }

    /// Decodes one message payload. `now_ms` is the wall clock, for the future-skew check.
    pub fn decode(&self, payload: Option<&[u8]>, now_ms: i64) -> Result<Decoded, Reject> {
        let bytes = match payload {
            None => {
                return Err(Reject::new(
                    RejectReason::EmptyMessage,
                    None,
                    "message has no payload",
                ))
            }
            Some(b) if b.iter().all(u8::is_ascii_whitespace) => {
                return Err(Reject::new(
                    RejectReason::EmptyMessage,
                    None,
                    "message payload is empty",
                ))
            }
            Some(b) => b,
        };
        if bytes.len() > self.limits.max_message_bytes {
            return Err(Reject::new(
                RejectReason::Oversize,
                None,
                format!(
                    "{} bytes exceeds limits.max_message_bytes = {}",
                    bytes.len(),
                    self.limits.max_message_bytes
                ),
            ));
        }
        // Strict: invalid UTF-8 anywhere, even in a field we would ignore, is refused.
        let text = std::str::from_utf8(bytes).map_err(|e| {
            Reject::new(
                RejectReason::InvalidUtf8,
                None,
                format!("invalid UTF-8 at byte {}", e.valid_up_to()),
            )
        })?;
        let mut raw = Raw {
            fields: std::array::from_fn(|_| None),
        };
        parse_into(text, &mut raw)?;
        match raw.kind()? {
            Kind::Request => self
                .build_request(&raw, now_ms)
                .map(|e| Decoded::Request(Box::new(e))),
            Kind::Score => self.build_score(&raw, now_ms, false).map(Decoded::Score),
            Kind::Feedback => self.build_score(&raw, now_ms, true).map(Decoded::Score),
        }
    }

    fn build_request(&self, raw: &Raw<'_>, now_ms: i64) -> Result<RequestEvent, Reject> {
        let l = &self.limits;
        raw.check_version()?;
        let mut ev = RequestEvent {
            event_id: raw.req_str(Slot::EventId, l)?,
            timestamp_ms: raw
                .timestamp(now_ms, l)?
                .ok_or_else(|| raw.missing(Slot::Timestamp))?,
            schema_version: raw.opt_str(Slot::SchemaVersion, l)?,
            service: raw.req_str(Slot::Service, l)?,
            route: raw.opt_str(Slot::Route, l)?,
            environment: raw.opt_str(Slot::Environment, l)?,
            provider: raw.opt_str(Slot::Provider, l)?,
            request_model: raw.req_str(Slot::RequestModel, l)?,
            response_model: raw.opt_str(Slot::ResponseModel, l)?,
            prompt_id: raw.opt_str(Slot::PromptId, l)?,
            prompt_version: raw.opt_str(Slot::PromptVersion, l)?,
            deployment: match raw.opt_str(Slot::Deployment, l)? {
                None => None,
                Some(d) => Some(Deployment::parse(&d).ok_or_else(|| {
                    raw.invalid(
                        Slot::Deployment,
                        format!("{d:?} is not one of stable, canary, shadow"),
                    )
                })?),
            },
            variant: raw.opt_str(Slot::Variant, l)?,
            latency_ms: raw
                .opt_f64(Slot::LatencyMs, l.max_latency_ms)?
                .ok_or_else(|| raw.missing(Slot::LatencyMs))?,
            ttft_ms: raw.opt_f64(Slot::TtftMs, l.max_latency_ms)?,
            input_tokens: raw.opt_u64(Slot::InputTokens, l.max_tokens)?,
            output_tokens: raw.opt_u64(Slot::OutputTokens, l.max_tokens)?,
            cached_input_tokens: raw.opt_u64(Slot::CachedInputTokens, l.max_tokens)?,
            cache_creation_input_tokens: raw
                .opt_u64(Slot::CacheCreationInputTokens, l.max_tokens)?,
            reasoning_tokens: raw.opt_u64(Slot::ReasoningTokens, l.max_tokens)?,
            cost_usd: raw.opt_f64(Slot::CostUsd, l.max_cost_usd)?,
            cost_estimated: false,
            cache_savings_usd: None,
            context_utilization: None,
            near_context_limit: false,
            status: Status::Ok,
            error_type: raw.opt_str(Slot::ErrorType, l)?,
            http_status: raw
                .opt_u64(Slot::HttpStatus, 599)?
                .map(|s| {
                    if s < 100 {
                        Err(raw.invalid(
                            Slot::HttpStatus,
                            format!("{s} is not an HTTP status (100-599)"),
                        ))
                    } else {
                        Ok(s as u16)
                    }
                })
                .transpose()?,
            retries: raw.opt_u64(Slot::Retries, MAX_RETRIES)?.map(|r| r as u32),
            finish_reason: raw.opt_str(Slot::FinishReason, l)?,
            judge_scores: raw.judge_scores(l)?,
            feedback: raw.feedback(Slot::Feedback)?,
            query_type: raw.opt_str(Slot::QueryType, l)?,
            prompt_chars: raw.opt_u64(Slot::PromptChars, MAX_PROMPT_CHARS)?,
            trace_id: raw.opt_str(Slot::TraceId, l)?,
            response_id: raw.opt_str(Slot::ResponseId, l)?,
            operation_name: raw.opt_str(Slot::OperationName, l)?,
            conversation_id: raw.opt_str(Slot::ConversationId, l)?,
            system_fingerprint: raw.opt_str(Slot::SystemFingerprint, l)?,
        };
        ev.status = match raw.opt_str(Slot::Status, l)?.as_deref() {
            None if ev.error_type.is_some() => Status::Error,
            None => Status::Ok,
            Some("ok") => Status::Ok,
            Some("error") => Status::Error,
            Some(other) => {
                return Err(raw.invalid(Slot::Status, format!("{other:?} is not `ok` or `error`")))
            }
        };
        if let Some(ttft) = ev.ttft_ms {
            if ttft > ev.latency_ms {
                return Err(raw.invalid(
                    Slot::TtftMs,
                    format!("ttft_ms {ttft} exceeds latency_ms {}", ev.latency_ms),
                ));
            }
        }
        if let Some(input) = ev.input_tokens {
            let cached = ev.cached_input_tokens.unwrap_or(0);
            let written = ev.cache_creation_input_tokens.unwrap_or(0);
            if cached > input {
                return Err(raw.invalid(
                    Slot::CachedInputTokens,
                    format!("cached_input_tokens {cached} exceeds input_tokens {input}"),
                ));
            }
            if cached + written > input {
                return Err(raw.invalid(
                    Slot::CacheCreationInputTokens,
                    format!("cached_input_tokens {cached} + cache_creation_input_tokens {written} exceed input_tokens {input} (input_tokens counts cache reads and writes)"),
                ));
            }
        }
        if let (Some(r), Some(out)) = (ev.reasoning_tokens, ev.output_tokens) {
            if r > out {
                return Err(raw.invalid(
                    Slot::ReasoningTokens,
                    format!("reasoning_tokens {r} exceeds output_tokens {out} (output_tokens counts reasoning)"),
                ));
            }
        }
        self.price(&mut ev);
        Ok(ev)
    }

    /// Fills `cost_usd` when the event has none (`cost_estimated`) and `cache_savings_usd`:
    /// from the registry entry of its response (else request) model at its event time,
    /// else from `[prices]`.
    pub fn price(&self, ev: &mut RequestEvent) {
        let Some(usage) = crate::registry::Usage::of(ev) else {
            return;
        };
        let model = self.registry.as_ref().and_then(|r| r.model_for(ev));
        if let (Some(max), Some(input)) = (model.and_then(|m| m.max_input_tokens), ev.input_tokens)
        {
            if max > 0 {
                let u = input as f64 / max as f64;
                ev.context_utilization = Some(u);
                ev.near_context_limit = u > self.near_context;
            }
        }
        let cost = match model {
            Some(m) => m.cost(ev.timestamp_ms, &usage),
            None => self.flat_rates(ev).map(|r| r.cost(&usage)),
        };
        if let Some(c) = cost {
            if ev.cost_usd.is_none() {
                ev.cost_usd = Some(c.usd.min(self.limits.max_cost_usd));
                ev.cost_estimated = true;
            }
            if ev.cached_input_tokens.is_some_and(|n| n > 0) {
                ev.cache_savings_usd = Some(c.cache_savings_usd);
            }
        }
    }

    /// The `[prices]` entry of the response model, else the request model, as rates.
    fn flat_rates(&self, ev: &RequestEvent) -> Option<crate::registry::Rates> {
        let p = ev
            .response_model
            .as_ref()
            .and_then(|m| self.prices.get(m))
            .or_else(|| self.prices.get(&ev.request_model))?;
        Some(crate::registry::Rates {
            input: p.input_per_mtok,
            output: p.output_per_mtok,
            cached_input: p.cached_input_per_mtok.unwrap_or(p.input_per_mtok),
            cache_write: p.input_per_mtok,
            reasoning: p.output_per_mtok,
        })
    }

    fn build_score(
        &self,
        raw: &Raw<'_>,
        now_ms: i64,
        feedback: bool,
    ) -> Result<ScoreEvent, Reject> {
        let l = &self.limits;
        raw.check_version()?;
        let response_id = match raw.opt_str(Slot::ResponseId, l)? {
            Some(id) => id,
            None => raw
                .opt_str(Slot::TraceId, l)?
                .ok_or_else(|| raw.missing(Slot::ResponseId))?,
        };
        let value = if feedback {
            let slot = if raw.has(Slot::Value) {
                Slot::Value
            } else {
                Slot::Feedback
            };
            ScoreValue::Feedback(
                raw.feedback(slot)?
                    .ok_or_else(|| raw.missing(Slot::Value))?,
            )
        } else {
            let name = raw.req_str(Slot::Name, l)?;
            let value = raw.finite(Slot::Value)?;
            let label = raw.opt_str(Slot::ScoreLabel, l)?;
            if value.is_none() && label.is_none() {
                return Err(raw.missing(Slot::Value));
            }
            ScoreValue::Judge { name, value, label }
        };
        Ok(ScoreEvent {
            event_id: raw.opt_str(Slot::EventId, l)?,
            response_id,
            timestamp_ms: raw.timestamp(now_ms, l)?,
            value,
        })
    }
}

enum Kind {
    Request,
    Score,
    Feedback,
}

/// A JSON value, kept lenient so that type errors are ours to word.
#[derive(Debug, Clone, PartialEq)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    /// An array of strings (OTel `gen_ai.response.finish_reasons`).
    StrList(Vec<Cow<'a, str>>),
    /// Any other array.
    List,
    Map(Vec<(Cow<'a, str>, Scalar<'a>)>),
}

impl Scalar<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Scalar::Null => "null",
            Scalar::Bool(_) => "a boolean",
            Scalar::U64(_) | Scalar::I64(_) => "an integer",
            Scalar::F64(_) => "a number",
            Scalar::Str(_) => "a string",
            Scalar::StrList(_) | Scalar::List => "an array",
            Scalar::Map(_) => "an object",
        }
    }
}

/// Every field the contract knows, by storage slot; aliases map to the same slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Slot {
    EventId,
    Timestamp,
    Kind,
    SchemaVersion,
    Service,
    Route,
    Environment,
    Provider,
    RequestModel,
    ResponseModel,
    PromptId,
    PromptVersion,
    Deployment,
    Variant,
    LatencyMs,
    TtftMs,
    InputTokens,
    OutputTokens,
    CachedInputTokens,
    CacheCreationInputTokens,
    ReasoningTokens,
    CostUsd,
    Status,
    ErrorType,
    HttpStatus,
    Retries,
    FinishReason,
    JudgeScores,
    Feedback,
    QueryType,
    PromptChars,
    TraceId,
    ResponseId,
    Name,
    Value,
    OperationName,
    ConversationId,
    SystemFingerprint,
    EventName,
    ScoreLabel,
}
const SLOTS: usize = Slot::ScoreLabel as usize + 1;

impl Slot {
    fn canonical(self) -> &'static str {
        match self {
            Slot::EventId => "event_id",
            Slot::Timestamp => "timestamp",
            Slot::Kind => "kind",
            Slot::SchemaVersion => "schema_version",
            Slot::Service => "service",
            Slot::Route => "route",
            Slot::Environment => "environment",
            Slot::Provider => "provider",
            Slot::RequestModel => "request_model",
            Slot::ResponseModel => "response_model",
            Slot::PromptId => "prompt_id",
            Slot::PromptVersion => "prompt_version",
            Slot::Deployment => "deployment",
            Slot::Variant => "variant",
            Slot::LatencyMs => "latency_ms",
            Slot::TtftMs => "ttft_ms",
            Slot::InputTokens => "input_tokens",
            Slot::OutputTokens => "output_tokens",
            Slot::CachedInputTokens => "cached_input_tokens",
            Slot::CacheCreationInputTokens => "cache_creation_input_tokens",
            Slot::ReasoningTokens => "reasoning_tokens",
            Slot::CostUsd => "cost_usd",
            Slot::Status => "status",
            Slot::ErrorType => "error_type",
            Slot::HttpStatus => "http_status",
            Slot::Retries => "retries",
            Slot::FinishReason => "finish_reason",
            Slot::JudgeScores => "judge_scores",
            Slot::Feedback => "feedback",
            Slot::QueryType => "query_type",
            Slot::PromptChars => "prompt_chars",
            Slot::TraceId => "trace_id",
            Slot::ResponseId => "response_id",
            Slot::Name => "name",
            Slot::Value => "value",
            Slot::OperationName => "operation_name",
            Slot::ConversationId => "conversation_id",
            Slot::SystemFingerprint => "system_fingerprint",
            Slot::EventName => "event.name",
            Slot::ScoreLabel => "label",
        }
    }
}

/// How an alias's value converts to the canonical unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Same,
    /// OTel durations are in seconds; ours in milliseconds.
    SecondsToMs,
}

/// Field name (canonical or alias) → slot and unit. The alias table is documented in
/// `schemas/llm-request.v1.schema.json` and docs/events.md.
fn lookup(key: &str) -> Option<(Slot, Unit)> {
    use Slot::*;
    let slot = match key {
        "event_id" => EventId,
        "timestamp" => Timestamp,
        "kind" => Kind,
        "schema_version" => SchemaVersion,
        "service" | "service.name" => Service,
        "route" | "http.route" => Route,
        "environment" | "deployment.environment.name" => Environment,
        "provider" | "gen_ai.provider.name" | "gen_ai.system" => Provider,
        "request_model" | "gen_ai.request.model" => RequestModel,
        "response_model" | "gen_ai.response.model" => ResponseModel,
        "prompt_id" | "gen_ai.prompt.name" => PromptId,
        "prompt_version" => PromptVersion,
        "deployment" => Deployment,
        "variant" => Variant,
        "latency_ms" => LatencyMs,
        "gen_ai.client.operation.duration" => return Some((LatencyMs, Unit::SecondsToMs)),
        "ttft_ms" => TtftMs,
        "gen_ai.server.time_to_first_token" | "gen_ai.response.time_to_first_chunk" => {
            return Some((TtftMs, Unit::SecondsToMs))
        }
        "input_tokens" | "gen_ai.usage.input_tokens" => InputTokens,
        "output_tokens" | "gen_ai.usage.output_tokens" => OutputTokens,
        "cached_input_tokens" | "gen_ai.usage.cache_read.input_tokens" => CachedInputTokens,
        "cache_creation_input_tokens" | "gen_ai.usage.cache_creation.input_tokens" => {
            CacheCreationInputTokens
        }
        "reasoning_tokens" | "gen_ai.usage.reasoning.output_tokens" => ReasoningTokens,
        "cost_usd" => CostUsd,
        "status" => Status,
        "error_type" | "error.type" => ErrorType,
        "http_status" | "http.response.status_code" => HttpStatus,
        "retries" => Retries,
        "finish_reason" | "gen_ai.response.finish_reasons" => FinishReason,
        "judge_scores" => JudgeScores,
        "feedback" => Feedback,
        "query_type" => QueryType,
        "prompt_chars" => PromptChars,
        "trace_id" => TraceId,
        "response_id" | "gen_ai.response.id" => ResponseId,
        "name" | "gen_ai.evaluation.name" => Name,
        "value" | "gen_ai.evaluation.score.value" => Value,
        "label" | "gen_ai.evaluation.score.label" => ScoreLabel,
        "operation_name" | "gen_ai.operation.name" => OperationName,
        "conversation_id" | "gen_ai.conversation.id" => ConversationId,
        "system_fingerprint" | "gen_ai.openai.response.system_fingerprint" => SystemFingerprint,
        "event.name" => EventName,
        _ => return None,
    };
    Some((slot, Unit::Same))
}

/// One message's fields, as given.
struct Raw<'a> {
    fields: [Option<(Scalar<'a>, Unit, Cow<'a, str>)>; SLOTS],
}

/// Parses `text` into `raw` in place (a `Raw` is a few KB; moving it costs more than
/// filling it).
fn parse_into<'a>(text: &'a str, raw: &mut Raw<'a>) -> Result<(), Reject> {
    let mut de = serde_json::Deserializer::from_str(text);
    let mut reject = None;
    let result = RawSeed {
        raw,
        reject: &mut reject,
    }
    .deserialize(&mut de);
    if let Some(r) = reject {
        return Err(r);
    }
    result
        .and_then(|()| de.end())
        .map_err(|e| Reject::new(RejectReason::InvalidJson, None, e.to_string()))
}

struct RawSeed<'r, 'a> {
    raw: &'r mut Raw<'a>,
    reject: &'r mut Option<Reject>,
}

impl<'de> DeserializeSeed<'de> for RawSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RawSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Key<'de>>()? {
            let Some((slot, unit)) = lookup(&key.0) else {
                map.next_value::<IgnoredAny>()?;
                continue;
            };
            let value = map.next_value::<Scalar<'de>>()?;
            let entry = &mut self.raw.fields[slot as usize];
            if let Some((_, _, first)) = entry {
                *self.reject = Some(Reject::new(
                    RejectReason::DuplicateField,
                    Some(slot.canonical()),
                    format!("given twice, as {first:?} and {:?}", key.0),
                ));
                return Err(de::Error::custom("duplicate field"));
            }
            *entry = Some((value, unit, key.0));
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.not_object("an array")
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_object("a string")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_object("a boolean")
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_object("a number")
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_object("a number")
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_object("a number")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_object("null")
    }
}

impl RawSeed<'_, '_> {
    fn not_object<T, E: de::Error>(self, what: &str) -> Result<T, E> {
        *self.reject = Some(Reject::new(
            RejectReason::NotAnObject,
            None,
            format!("expected a JSON object, got {what}"),
        ));
        Err(E::custom("not an object"))
    }
}

/// A map key, borrowed from the input when it has no escapes.
struct Key<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(CowStrVisitor).map(Key)
    }
}

struct CowStrVisitor;
impl<'de> Visitor<'de> for CowStrVisitor {
    type Value = Cow<'de, str>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(v.to_string()))
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ScalarVisitor)
    }
}

struct ScalarVisitor;
impl<'de> Visitor<'de> for ScalarVisitor {
    type Value = Scalar<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Bool(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::U64(v))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::I64(v))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Scalar::F64(v))
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Str(Cow::Owned(v.to_string())))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut strs = Vec::new();
        let mut all_str = true;
        while let Some(item) = seq.next_element::<Scalar<'de>>()? {
            match item {
                Scalar::Str(s) if all_str => strs.push(s),
                _ => all_str = false,
            }
        }
        Ok(if all_str {
            Scalar::StrList(strs)
        } else {
            Scalar::List
        })
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut entries = Vec::new();
        while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
            entries.push((k, map.next_value::<Scalar<'de>>()?));
        }
        Ok(Scalar::Map(entries))
    }
}

impl<'a> Raw<'a> {
    fn get(&self, slot: Slot) -> Option<(&Scalar<'a>, Unit, &str)> {
        match &self.fields[slot as usize] {
            Some((Scalar::Null, _, _)) | None => None,
            Some((v, u, k)) => Some((v, *u, k)),
        }
    }

    fn has(&self, slot: Slot) -> bool {
        self.get(slot).is_some()
    }

    fn field_name(&self, slot: Slot) -> String {
        match &self.fields[slot as usize] {
            Some((_, _, k)) => k.to_string(),
            None => slot.canonical().to_string(),
        }
    }

    fn missing(&self, slot: Slot) -> Reject {
        Reject::new(
            RejectReason::MissingField,
            Some(slot.canonical()),
            "required field is absent or null",
        )
    }

    fn invalid(&self, slot: Slot, detail: String) -> Reject {
        Reject::new(
            RejectReason::InvalidValue,
            Some(&self.field_name(slot)),
            detail,
        )
    }

    fn wrong_type(&self, slot: Slot, expected: &str, got: &Scalar<'_>) -> Reject {
        Reject::new(
            RejectReason::WrongType,
            Some(&self.field_name(slot)),
            format!("expected {expected}, got {}", got.type_name()),
        )
    }

    fn kind(&self) -> Result<Kind, Reject> {
        // An OTel event `gen_ai.evaluation.result` is a late score.
        let otel_evaluation = matches!(
            self.get(Slot::EventName),
            Some((Scalar::Str(s), _, _)) if s == "gen_ai.evaluation.result"
        );
        match self.get(Slot::Kind) {
            None if otel_evaluation => Ok(Kind::Score),
            None => Ok(Kind::Request),
            Some((Scalar::Str(s), _, _)) => match s.as_ref() {
                "request" => Ok(Kind::Request),
                "score" => Ok(Kind::Score),
                "feedback" => Ok(Kind::Feedback),
                other => Err(self.invalid(
                    Slot::Kind,
                    format!("{other:?} is not request, score or feedback"),
                )),
            },
            Some((v, _, _)) => Err(self.wrong_type(Slot::Kind, "a string", v)),
        }
    }

    fn check_version(&self) -> Result<(), Reject> {
        let Some((v, _, _)) = self.get(Slot::SchemaVersion) else {
            return Ok(());
        };
        let major = match v {
            Scalar::Str(s) => s.split('.').next().and_then(|m| m.parse::<u32>().ok()),
            Scalar::U64(n) => u32::try_from(*n).ok(),
            other => {
                return Err(self.wrong_type(Slot::SchemaVersion, "a string such as \"1.0\"", other))
            }
        };
        match major {
            Some(SCHEMA_MAJOR) => Ok(()),
            Some(m) => Err(Reject::new(
                RejectReason::UnsupportedVersion,
                Some("schema_version"),
                format!("major version {m}; this build reads version {SCHEMA_MAJOR}"),
            )),
            None => Err(self.invalid(Slot::SchemaVersion, "not a version such as \"1.0\"".into())),
        }
    }

    fn opt_str(&self, slot: Slot, l: &LimitsConfig) -> Result<Option<String>, Reject> {
        let Some((v, _, _)) = self.get(slot) else {
            return Ok(None);
        };
        let s = match v {
            Scalar::Str(s) => s.as_ref(),
            Scalar::StrList(list) if slot == Slot::FinishReason => match list.first() {
                Some(s) => s.as_ref(),
                None => return Ok(None),
            },
            other => return Err(self.wrong_type(slot, "a string", other)),
        };
        if s.len() > l.max_string_bytes {
            return Err(self.invalid(
                slot,
                format!(
                    "{} bytes exceeds limits.max_string_bytes = {}",
                    s.len(),
                    l.max_string_bytes
                ),
            ));
        }
        Ok(Some(s.to_string()))
    }

    fn req_str(&self, slot: Slot, l: &LimitsConfig) -> Result<String, Reject> {
        match self.opt_str(slot, l)? {
            Some(s) if !s.is_empty() => Ok(s),
            Some(_) => Err(self.invalid(slot, "must not be empty".into())),
            None => Err(self.missing(slot)),
        }
    }

    /// A finite number of any sign, converted to the canonical unit.
    fn finite(&self, slot: Slot) -> Result<Option<f64>, Reject> {
        let Some((v, unit, _)) = self.get(slot) else {
            return Ok(None);
        };
        let x = match v {
            Scalar::U64(n) => *n as f64,
            Scalar::I64(n) => *n as f64,
            Scalar::F64(f) => *f,
            other => return Err(self.wrong_type(slot, "a number", other)),
        };
        if !x.is_finite() {
            return Err(self.invalid(slot, "must be finite".into()));
        }
        Ok(Some(if unit == Unit::SecondsToMs {
            x * 1000.0
        } else {
            x
        }))
    }

    /// A number in `[0, max]`.
    fn opt_f64(&self, slot: Slot, max: f64) -> Result<Option<f64>, Reject> {
        let Some(x) = self.finite(slot)? else {
            return Ok(None);
        };
        if x < 0.0 {
            return Err(self.invalid(slot, format!("{x} is negative")));
        }
        if x > max {
            return Err(self.invalid(slot, format!("{x} exceeds the limit {max}")));
        }
        Ok(Some(x))
    }

    /// A whole number in `[0, max]`; integral floats such as `12.0` are accepted.
    fn opt_u64(&self, slot: Slot, max: u64) -> Result<Option<u64>, Reject> {
        let Some((v, _, _)) = self.get(slot) else {
            return Ok(None);
        };
        let n = match v {
            Scalar::U64(n) => *n,
            Scalar::I64(n) => return Err(self.invalid(slot, format!("{n} is negative"))),
            Scalar::F64(f) if f.is_finite() && f.fract() == 0.0 => {
                if *f < 0.0 {
                    return Err(self.invalid(slot, format!("{f} is negative")));
                }
                if *f > max as f64 {
                    return Err(self.invalid(slot, format!("{f} exceeds the limit {max}")));
                }
                *f as u64
            }
            other => return Err(self.wrong_type(slot, "a whole number", other)),
        };
        if n > max {
            return Err(self.invalid(slot, format!("{n} exceeds the limit {max}")));
        }
        Ok(Some(n))
    }

    fn feedback(&self, slot: Slot) -> Result<Option<Feedback>, Reject> {
        let Some((v, _, _)) = self.get(slot) else {
            return Ok(None);
        };
        let n = match v {
            Scalar::U64(n) => *n as i64,
            Scalar::I64(n) => *n,
            Scalar::F64(f) if f.fract() == 0.0 && f.abs() <= 1.0 => *f as i64,
            Scalar::Bool(b) => i64::from(*b) * 2 - 1,
            other => return Err(self.wrong_type(slot, "-1, 0 or 1", other)),
        };
        Feedback::from_i64(n)
            .map(Some)
            .ok_or_else(|| self.invalid(slot, format!("{n} is not -1, 0 or 1")))
    }

    fn timestamp(&self, now_ms: i64, l: &LimitsConfig) -> Result<Option<i64>, Reject> {
        let Some((v, _, _)) = self.get(Slot::Timestamp) else {
            return Ok(None);
        };
        let ms = match v {
            Scalar::Str(s) => chrono::DateTime::parse_from_rfc3339(s)
                .map_err(|e| self.invalid(Slot::Timestamp, format!("{s:?} is not RFC 3339 ({e})")))?
                .timestamp_millis(),
            Scalar::U64(n) => i64::try_from(*n).unwrap_or(i64::MAX),
            Scalar::I64(n) => *n,
            Scalar::F64(f) if f.is_finite() => *f as i64,
            other => {
                return Err(self.wrong_type(
                    Slot::Timestamp,
                    "an RFC 3339 string or epoch milliseconds",
                    other,
                ))
            }
        };
        if !(MIN_TS_MS..MAX_TS_MS).contains(&ms) {
            return Err(self.invalid(
                Slot::Timestamp,
                format!("{ms} ms is outside 2000-01-01..2100-01-01 (epoch seconds instead of milliseconds?)"),
            ));
        }
        let skew = l.max_future_skew.as_millis() as i64;
        if ms > now_ms.saturating_add(skew) {
            return Err(self.invalid(
                Slot::Timestamp,
                format!(
                    "{:.0} s in the future, beyond limits.max_future_skew",
                    (ms - now_ms) as f64 / 1000.0
                ),
            ));
        }
        Ok(Some(ms))
    }

    fn judge_scores(&self, l: &LimitsConfig) -> Result<Vec<(String, f64)>, Reject> {
        let Some((v, _, _)) = self.get(Slot::JudgeScores) else {
            return Ok(Vec::new());
        };
        let Scalar::Map(entries) = v else {
            return Err(self.wrong_type(Slot::JudgeScores, "an object of name → number", v));
        };
        if entries.len() > l.max_judge_scores {
            return Err(self.invalid(
                Slot::JudgeScores,
                format!(
                    "{} scores exceeds limits.max_judge_scores = {}",
                    entries.len(),
                    l.max_judge_scores
                ),
            ));
        }
        let mut out: Vec<(String, f64)> = Vec::with_capacity(entries.len());
        for (name, value) in entries {
            let field = format!("judge_scores.{name}");
            let x = match value {
                Scalar::U64(n) => *n as f64,
                Scalar::I64(n) => *n as f64,
                Scalar::F64(f) if f.is_finite() => *f,
                Scalar::Null => continue,
                other => {
                    return Err(Reject::new(
                        RejectReason::WrongType,
                        Some(&field),
                        format!("expected a number, got {}", other.type_name()),
                    ))
                }
            };
            if name.is_empty() || name.len() > l.max_string_bytes {
                return Err(Reject::new(
                    RejectReason::InvalidValue,
                    Some(&field),
                    "bad score name",
                ));
            }
            if out.iter().any(|(n, _)| n == name) {
                return Err(Reject::new(
                    RejectReason::DuplicateField,
                    Some(&field),
                    "score given twice",
                ));
            }
            out.push((name.to_string(), x));
        }
        Ok(out)
    }
}

/// Bounds beyond which an input is refused as absurd and quarantined.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Largest message accepted, in bytes. Default 262144 (256 KiB).
    pub max_message_bytes: usize,
    /// Largest `latency_ms` / `ttft_ms`. Default 3600000 (1 h).
    pub max_latency_ms: f64,
    /// Largest token count in any `*_tokens` field. Default 10000000.
    pub max_tokens: u64,
    /// Largest `cost_usd` of one call. Default 1000.
    pub max_cost_usd: f64,
    /// How far ahead of the wall clock an event time may be. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub max_future_skew: Duration,
    /// Most judge scores in one event. Default 32.
    pub max_judge_scores: usize,
    /// Longest string field, in bytes. Default 1024.
    pub max_string_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_message_bytes: 256 * 1024,
            max_latency_ms: 3_600_000.0,
            max_tokens: 10_000_000,
            max_cost_usd: 1000.0,
            max_future_skew: Duration::from_secs(300),
            max_judge_scores: 32,
            max_string_bytes: 1024,
        }
    }
}

/// USD per million tokens.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelPrice {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// Price of cached input tokens; defaults to `input_per_mtok`.
    #[serde(default)]
    pub cached_input_per_mtok: Option<f64>,
}

impl LimitsConfig {
    /// Checks the section; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), crate::section::ConfigError> {
        let l = self;
        if l.max_message_bytes < 256 {
            return Err(crate::section::invalid(
                "limits.max_message_bytes",
                "must be at least 256",
            ));
        }
        if !(l.max_latency_ms.is_finite() && l.max_latency_ms > 0.0) {
            return Err(crate::section::invalid(
                "limits.max_latency_ms",
                "must be a positive number",
            ));
        }
        if l.max_latency_ms > 86_400_000.0 {
            return Err(crate::section::invalid(
                "limits.max_latency_ms",
                "must be at most 86400000 (one day); histograms are sized from it",
            ));
        }
        if l.max_tokens == 0 || l.max_tokens > 1_000_000_000 {
            return Err(crate::section::invalid(
                "limits.max_tokens",
                "must be between 1 and 1000000000",
            ));
        }
        if !(l.max_cost_usd.is_finite() && l.max_cost_usd > 0.0 && l.max_cost_usd <= 1_000_000.0) {
            return Err(crate::section::invalid(
                "limits.max_cost_usd",
                "must be a positive number at most 1000000",
            ));
        }
        Ok(())
    }
}

impl ModelPrice {
    /// Checks the section; the error names the field and the fix.
    /// `model` is the key in `[prices]`.
    pub fn validate(&self, model: &str) -> Result<(), crate::section::ConfigError> {
        let p = self;
        let ok = |v: f64| v.is_finite() && v >= 0.0;
        if !ok(p.input_per_mtok)
            || !ok(p.output_per_mtok)
            || !p.cached_input_per_mtok.is_none_or(ok)
        {
            return Err(crate::section::invalid(
                &format!("prices.\"{model}\""),
                "prices must be finite and ≥ 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_790_000_000_000; // 2026-09-21

    fn decoder() -> Decoder {
        let mut prices = BTreeMap::new();
        prices.insert(
            "gpt-4o".to_string(),
            ModelPrice {
                input_per_mtok: 2.5,
                output_per_mtok: 10.0,
                cached_input_per_mtok: Some(1.25),
            },
        );
        Decoder::new(LimitsConfig::default(), prices)
    }

    fn req(json: &str) -> Result<RequestEvent, Reject> {
        match decoder().decode(Some(json.as_bytes()), NOW)? {
            Decoded::Request(r) => Ok(*r),
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn reject(json: &[u8]) -> Reject {
        decoder()
            .decode(Some(json), NOW)
            .expect_err("should be rejected")
    }

    const FULL: &str = r#"{
        "event_id":"e1","timestamp":"2026-09-21T10:00:00.250Z","schema_version":"1.0",
        "service":"support-bot","route":"/chat","environment":"prod","provider":"openai",
        "request_model":"gpt-4o","response_model":"gpt-4o-2024-08-06",
        "prompt_id":"answer","prompt_version":"v7","deployment":"canary","variant":"B",
        "latency_ms":812.5,"ttft_ms":120,"input_tokens":1200,"output_tokens":300,
        "cached_input_tokens":200,"cost_usd":0.0061,"status":"error","error_type":"rate_limit",
        "http_status":429,"retries":2,"finish_reason":"stop",
        "judge_scores":{"faithfulness":0.82,"relevance":1},"feedback":-1,
        "query_type":"billing","prompt_chars":5400,"trace_id":"t1","response_id":"r1",
        "some_future_field":{"nested":[1,2,3]}
    }"#;

    fn req_with(d: &Decoder, text: &str) -> RequestEvent {
        match d.decode(Some(text.as_bytes()), NOW) {
            Ok(Decoded::Request(e)) => *e,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_field_decodes() {
        let e = req(FULL).unwrap();
        assert_eq!(e.event_id, "e1");
        assert_eq!(e.timestamp_ms, 1_789_984_800_250);
        assert_eq!(e.schema_version.as_deref(), Some("1.0"));
        assert_eq!(e.service, "support-bot");
        assert_eq!(e.route.as_deref(), Some("/chat"));
        assert_eq!(e.environment.as_deref(), Some("prod"));
        assert_eq!(e.provider.as_deref(), Some("openai"));
        assert_eq!(e.request_model, "gpt-4o");
        assert_eq!(e.response_model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(e.prompt_id.as_deref(), Some("answer"));
        assert_eq!(e.prompt_version.as_deref(), Some("v7"));
        assert_eq!(e.deployment, Some(Deployment::Canary));
        assert_eq!(e.variant.as_deref(), Some("B"));
        assert_eq!(e.latency_ms, 812.5);
        assert_eq!(e.ttft_ms, Some(120.0));
        assert_eq!(e.input_tokens, Some(1200));
        assert_eq!(e.output_tokens, Some(300));
        assert_eq!(e.cached_input_tokens, Some(200));
        assert_eq!(e.cost_usd, Some(0.0061));
        assert!(!e.cost_estimated);
        assert_eq!(e.status, Status::Error);
        assert_eq!(e.error_type.as_deref(), Some("rate_limit"));
        assert_eq!(e.http_status, Some(429));
        assert_eq!(e.retries, Some(2));
        assert_eq!(e.finish_reason.as_deref(), Some("stop"));
        assert_eq!(
            e.judge_scores,
            vec![("faithfulness".into(), 0.82), ("relevance".into(), 1.0)]
        );
        assert_eq!(e.feedback, Some(Feedback::Negative));
        assert_eq!(e.query_type.as_deref(), Some("billing"));
        assert_eq!(e.prompt_chars, Some(5400));
        assert_eq!(e.trace_id.as_deref(), Some("t1"));
        assert_eq!(e.response_id.as_deref(), Some("r1"));
    }

    #[test]
    fn otel_aliases_decode_with_units() {
        let e = req(r#"{"event_id":"e2","timestamp":1789984800250,
            "service.name":"svc","http.route":"/r","deployment.environment.name":"prod",
            "gen_ai.provider.name":"anthropic","gen_ai.request.model":"claude","gen_ai.response.model":"claude-2",
            "gen_ai.client.operation.duration":1.5,"gen_ai.server.time_to_first_token":0.25,
            "gen_ai.usage.input_tokens":10,"gen_ai.usage.output_tokens":20,
            "gen_ai.usage.cache_read.input_tokens":5,"error.type":"timeout",
            "http.response.status_code":504,"gen_ai.response.finish_reasons":["length","stop"],
            "gen_ai.response.id":"resp"}"#)
        .unwrap();
        assert_eq!(e.service, "svc");
        assert_eq!(e.route.as_deref(), Some("/r"));
        assert_eq!(e.environment.as_deref(), Some("prod"));
        assert_eq!(e.provider.as_deref(), Some("anthropic"));
        assert_eq!(e.request_model, "claude");
        assert_eq!(e.response_model.as_deref(), Some("claude-2"));
        assert_eq!(e.latency_ms, 1500.0);
        assert_eq!(e.ttft_ms, Some(250.0));
        assert_eq!(
            (e.input_tokens, e.output_tokens, e.cached_input_tokens),
            (Some(10), Some(20), Some(5))
        );
        assert_eq!(e.error_type.as_deref(), Some("timeout"));
        assert_eq!(
            e.status,
            Status::Error,
            "error.type without status means error"
        );
        assert_eq!(e.http_status, Some(504));
        assert_eq!(e.finish_reason.as_deref(), Some("length"));
        assert_eq!(e.response_id.as_deref(), Some("resp"));
        let e = req(r#"{"event_id":"e","timestamp":1789984800250,"service":"s","gen_ai.system":"openai","request_model":"m","latency_ms":1}"#).unwrap();
        assert_eq!(e.provider.as_deref(), Some("openai"));
        // The OTel GenAI names added with the model registry.
        let e = req(
            r#"{"event_id":"e3","timestamp":1789984800250,"service":"s","request_model":"m",
            "gen_ai.client.operation.duration":2,"gen_ai.response.time_to_first_chunk":0.5,
            "gen_ai.usage.input_tokens":100,"gen_ai.usage.cache_read.input_tokens":40,
            "gen_ai.usage.cache_creation.input_tokens":30,"gen_ai.usage.output_tokens":50,
            "gen_ai.usage.reasoning.output_tokens":20,"gen_ai.prompt.name":"triage",
            "gen_ai.operation.name":"chat","gen_ai.conversation.id":"conv-1",
            "gen_ai.openai.response.system_fingerprint":"fp_44709d6fcb"}"#,
        )
        .unwrap();
        assert_eq!(e.ttft_ms, Some(500.0));
        assert_eq!(
            (
                e.cached_input_tokens,
                e.cache_creation_input_tokens,
                e.reasoning_tokens
            ),
            (Some(40), Some(30), Some(20))
        );
        assert_eq!(e.prompt_id.as_deref(), Some("triage"));
        assert_eq!(e.operation_name.as_deref(), Some("chat"));
        assert_eq!(e.conversation_id.as_deref(), Some("conv-1"));
        assert_eq!(e.system_fingerprint.as_deref(), Some("fp_44709d6fcb"));
        let e = req(r#"{"event_id":"e","timestamp":1789984800250,"service":"s","request_model":"m","latency_ms":1,"system_fingerprint":"fp_1"}"#).unwrap();
        assert_eq!(e.system_fingerprint.as_deref(), Some("fp_1"));
        // Cache reads and writes are part of the input, reasoning of the output.
        for (body, field) in [
            (
                r#""input_tokens":100,"cached_input_tokens":60,"cache_creation_input_tokens":50"#,
                "cache_creation_input_tokens",
            ),
            (
                r#""output_tokens":10,"reasoning_tokens":11"#,
                "reasoning_tokens",
            ),
        ] {
            let text = format!(
                r#"{{"event_id":"e","timestamp":1789984800250,"service":"s","request_model":"m","latency_ms":1,{body}}}"#
            );
            let e = req(&text).unwrap_err();
            assert_eq!(
                (e.reason, e.field.as_deref()),
                (RejectReason::InvalidValue, Some(field)),
                "{e}"
            );
        }
    }

    #[test]
    fn cost_comes_from_the_registry_at_event_time_then_from_prices() {
        let (reg, _) = crate::registry::Registry::parse(
            std::path::Path::new("models.yaml"),
            "models:\n  - id: gpt-4o\n    aliases: [gpt-4o-2024-08-06]\n    prices:\n      - from: 2026-01-01\n        per_million: { input: 2.0, output: 8.0, cached_input: 0.5, cache_write: 2.5, reasoning: 8.0 }\n        above: [ { input_tokens: 200000, per_million: { input: 4.0 } } ]\n      - from: 2026-09-21\n        per_million: { input: 1.0, output: 4.0 }\n",
            NOW,
        )
        .unwrap();
        let d = decoder().with_registry(Some(std::sync::Arc::new(reg)));
        // 2026-09-20 23:00 UTC, the old period; served by a dated alias.
        let e = req_with(
            &d,
            r#"{"event_id":"e","timestamp":"2026-09-20T23:00:00Z","service":"s","request_model":"x","response_model":"gpt-4o-2024-08-06",
            "latency_ms":1,"input_tokens":10000,"cached_input_tokens":4000,"cache_creation_input_tokens":1000,"output_tokens":2000,"reasoning_tokens":500}"#,
        );
        let hand =
            (5_000.0 * 2.0 + 4_000.0 * 0.5 + 1_000.0 * 2.5 + 1_500.0 * 8.0 + 500.0 * 8.0) / 1e6;
        assert!(
            (e.cost_usd.unwrap() - hand).abs() < 1e-12,
            "{:?} vs {hand}",
            e.cost_usd
        );
        assert!(e.cost_estimated);
        assert!((e.cache_savings_usd.unwrap() - 4_000.0 * 1.5 / 1e6).abs() < 1e-12);
        // The next day, the new period (cache rates default to the input rate: no savings).
        let e = req_with(
            &d,
            r#"{"event_id":"e","timestamp":"2026-09-21T00:00:01Z","service":"s","request_model":"gpt-4o",
            "latency_ms":1,"input_tokens":10000,"cached_input_tokens":4000,"output_tokens":2000}"#,
        );
        assert!((e.cost_usd.unwrap() - (10_000.0 * 1.0 + 2_000.0 * 4.0) / 1e6).abs() < 1e-12);
        assert_eq!(e.cache_savings_usd, Some(0.0));
        // A given cost stays; the savings are still computed.
        let e = req_with(
            &d,
            r#"{"event_id":"e","timestamp":"2026-09-20T12:00:00Z","service":"s","request_model":"gpt-4o",
            "latency_ms":1,"input_tokens":300000,"cached_input_tokens":100000,"cost_usd":0.9}"#,
        );
        assert_eq!((e.cost_usd, e.cost_estimated), (Some(0.9), false));
        // Tier: cache reads keep the period's explicit 0.5; the tier's input is 4.0.
        assert!((e.cache_savings_usd.unwrap() - 100_000.0 * 3.5 / 1e6).abs() < 1e-12);
        // Not in the registry: [prices] as before.
        let e = req_with(
            &d,
            r#"{"event_id":"e","timestamp":1789984800250,"service":"s","request_model":"gpt-4o-mini",
            "latency_ms":1,"input_tokens":1000000,"output_tokens":0}"#,
        );
        assert_eq!(e.cost_usd, None, "gpt-4o-mini is in neither");
    }

    #[test]
    fn cost_is_estimated_from_prices_when_absent() {
        let e = req(r#"{"event_id":"e","timestamp":1789984800250,"service":"s","request_model":"gpt-4o",
            "latency_ms":1,"input_tokens":1000000,"cached_input_tokens":200000,"output_tokens":100000}"#)
        .unwrap();
        // 800k × 2.5 + 200k × 1.25 + 100k × 10, per million
        assert!((e.cost_usd.unwrap() - 3.25).abs() < 1e-12);
        assert!(e.cost_estimated);
        let e = req(r#"{"event_id":"e","timestamp":1789984800250,"service":"s","request_model":"unpriced","latency_ms":1,"input_tokens":5}"#).unwrap();
        assert_eq!(e.cost_usd, None);
    }

    #[test]
    fn score_and_feedback_events() {
        let d = decoder();
        let s = d
            .decode(
                Some(br#"{"kind":"score","response_id":"r1","name":"faithfulness","value":0.4}"#),
                NOW,
            )
            .unwrap();
        assert_eq!(
            s,
            Decoded::Score(ScoreEvent {
                event_id: None,
                response_id: "r1".into(),
                timestamp_ms: None,
                value: ScoreValue::Judge {
                    name: "faithfulness".into(),
                    value: Some(0.4),
                    label: None,
                }
            })
        );
        // OTel's gen_ai.evaluation.result event: a score, a label, or both; the explanation
        // is accepted (and not kept).
        let s = d
            .decode(Some(br#"{"event.name":"gen_ai.evaluation.result","gen_ai.response.id":"r3","gen_ai.evaluation.name":"groundedness","gen_ai.evaluation.score.value":0.2,"gen_ai.evaluation.score.label":"ungrounded","gen_ai.evaluation.explanation":"cites no source"}"#), NOW)
            .unwrap();
        assert_eq!(
            s,
            Decoded::Score(ScoreEvent {
                event_id: None,
                response_id: "r3".into(),
                timestamp_ms: None,
                value: ScoreValue::Judge {
                    name: "groundedness".into(),
                    value: Some(0.2),
                    label: Some("ungrounded".into()),
                }
            })
        );
        let s = d
            .decode(Some(br#"{"event.name":"gen_ai.evaluation.result","gen_ai.response.id":"r3","gen_ai.evaluation.name":"tone","gen_ai.evaluation.score.label":"rude"}"#), NOW)
            .unwrap();
        assert!(
            matches!(s, Decoded::Score(ScoreEvent { value: ScoreValue::Judge { value: None, label: Some(ref l), .. }, .. }) if l == "rude")
        );
        let e = d
            .decode(Some(br#"{"event.name":"gen_ai.evaluation.result","gen_ai.response.id":"r3","gen_ai.evaluation.name":"tone"}"#), NOW)
            .unwrap_err();
        assert_eq!(
            (e.reason, e.field.as_deref()),
            (RejectReason::MissingField, Some("value"))
        );
        let s = d
            .decode(Some(br#"{"kind":"score","gen_ai.response.id":"r2","gen_ai.evaluation.name":"rel","gen_ai.evaluation.score.value":3}"#), NOW)
            .unwrap();
        assert!(
            matches!(s, Decoded::Score(ScoreEvent { ref response_id, value: ScoreValue::Judge { .. }, .. }) if response_id == "r2")
        );
        let f = d
            .decode(
                Some(br#"{"kind":"feedback","trace_id":"t9","value":1}"#),
                NOW,
            )
            .unwrap();
        assert!(matches!(
            f,
            Decoded::Score(ScoreEvent {
                value: ScoreValue::Feedback(Feedback::Positive),
                ..
            })
        ));
        let r = d
            .decode(
                Some(br#"{"kind":"score","response_id":"r1","value":0.4}"#),
                NOW,
            )
            .unwrap_err();
        assert_eq!(
            (r.reason, r.field.as_deref()),
            (RejectReason::MissingField, Some("name"))
        );
        let r = d
            .decode(
                Some(br#"{"kind":"feedback","response_id":"r1","value":5}"#),
                NOW,
            )
            .unwrap_err();
        assert_eq!(r.reason, RejectReason::InvalidValue);
        let r = d.decode(Some(br#"{"kind":"vote"}"#), NOW).unwrap_err();
        assert_eq!(
            (r.reason, r.field.as_deref()),
            (RejectReason::InvalidValue, Some("kind"))
        );
    }

    #[test]
    fn envelope_rejections() {
        let d = decoder();
        assert_eq!(
            d.decode(None, NOW).unwrap_err().reason,
            RejectReason::EmptyMessage
        );
        assert_eq!(
            d.decode(Some(b"  \n"), NOW).unwrap_err().reason,
            RejectReason::EmptyMessage
        );
        assert_eq!(
            reject(b"{\"a\":\"\xff\xfe\"}").reason,
            RejectReason::InvalidUtf8
        );
        assert_eq!(reject(b"{\"event_id\":").reason, RejectReason::InvalidJson);
        assert_eq!(
            reject(b"{\"latency_ms\": NaN}").reason,
            RejectReason::InvalidJson
        );
        assert_eq!(
            reject(b"{\"latency_ms\": 1e999}").reason,
            RejectReason::InvalidJson
        );
        assert_eq!(reject(b"{} {}").reason, RejectReason::InvalidJson);
        assert_eq!(reject(b"[1,2]").reason, RejectReason::NotAnObject);
        assert_eq!(reject(b"\"hello\"").reason, RejectReason::NotAnObject);
        assert_eq!(reject(b"null").reason, RejectReason::NotAnObject);
        let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(300 * 1024));
        assert_eq!(reject(big.as_bytes()).reason, RejectReason::Oversize);
    }

    fn with(field: &str, value: &str) -> String {
        let mut base: Vec<(String, String)> = [
            ("event_id", "\"e\""),
            ("timestamp", "1789984800250"),
            ("service", "\"s\""),
            ("request_model", "\"m\""),
            ("latency_ms", "10"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        base.retain(|(k, _)| k != field);
        if !value.is_empty() {
            base.push((field.to_string(), value.to_string()));
        }
        let body: Vec<String> = base.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    }

    #[test]
    fn field_rejections_name_the_field() {
        use RejectReason::*;
        let cases: &[(&str, &str, RejectReason)] = &[
            ("event_id", "", MissingField),
            ("event_id", "null", MissingField),
            ("event_id", "\"\"", InvalidValue),
            ("event_id", "7", WrongType),
            ("timestamp", "", MissingField),
            ("timestamp", "\"yesterday\"", InvalidValue),
            ("timestamp", "1789984800", InvalidValue), // seconds, not ms
            ("timestamp", "1790000900000", InvalidValue), // 15 min in the future
            ("timestamp", "true", WrongType),
            ("service", "", MissingField),
            ("request_model", "[\"a\"]", WrongType),
            ("latency_ms", "", MissingField),
            ("latency_ms", "\"12\"", WrongType),
            ("latency_ms", "-1", InvalidValue),
            ("latency_ms", "99999999", InvalidValue),
            ("ttft_ms", "20", InvalidValue), // > latency
            ("input_tokens", "-3", InvalidValue),
            ("input_tokens", "1.5", WrongType),
            ("input_tokens", "20000000", InvalidValue),
            ("output_tokens", "{}", WrongType),
            ("cost_usd", "-0.01", InvalidValue),
            ("cost_usd", "5000", InvalidValue),
            ("status", "\"maybe\"", InvalidValue),
            ("deployment", "\"blue\"", InvalidValue),
            ("http_status", "42", InvalidValue),
            ("http_status", "700", InvalidValue),
            ("retries", "-1", InvalidValue),
            ("feedback", "2", InvalidValue),
            ("feedback", "\"up\"", WrongType),
            ("judge_scores", "[1]", WrongType),
            ("judge_scores", "{\"f\":\"high\"}", WrongType),
            ("schema_version", "\"2.0\"", UnsupportedVersion),
            ("schema_version", "\"x\"", InvalidValue),
            ("service.name", "\"dup\"", DuplicateField),
        ];
        for (field, value, reason) in cases {
            let json = with(field, value);
            let r = reject(json.as_bytes());
            assert_eq!(r.reason, *reason, "{field}={value}: {r}");
            if *reason != DuplicateField {
                let f = r.field.clone().unwrap_or_default();
                assert!(f.starts_with(field), "{field}={value}: named {f:?}");
            }
        }
        let long = format!("\"{}\"", "x".repeat(2000));
        assert_eq!(reject(with("route", &long).as_bytes()).reason, InvalidValue);
        let many: Vec<String> = (0..40).map(|i| format!("\"s{i}\":1")).collect();
        let r = reject(with("judge_scores", &format!("{{{}}}", many.join(","))).as_bytes());
        assert_eq!(r.reason, InvalidValue);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        use rand::{Rng, SeedableRng};
        let d = decoder();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let full = FULL.as_bytes();
        for _ in 0..20_000 {
            let mut msg = full.to_vec();
            for _ in 0..rng.random_range(1..6) {
                let i = rng.random_range(0..msg.len());
                match rng.random_range(0..3) {
                    0 => msg[i] = rng.random(),
                    1 => {
                        msg.remove(i);
                    }
                    _ => msg.truncate(i),
                }
                if msg.is_empty() {
                    break;
                }
            }
            let _ = d.decode(Some(&msg), NOW);
        }
    }
}
