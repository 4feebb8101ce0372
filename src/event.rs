//! The event contract (see `schemas/`): one LLM call, or one late score/feedback about a call.
//!
//! These are owned, validated values: everything that reaches the window state or the
//! Parquet sink has passed [`crate::decode`].

use std::fmt;

/// Version of the event contract this build understands (`schema_version` major).
pub const SCHEMA_MAJOR: u32 = 1;

/// One LLM request/response log line, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RequestEvent {
    pub event_id: String,
    /// Event time, milliseconds since the Unix epoch (UTC).
    pub timestamp_ms: i64,
    pub schema_version: Option<String>,
    pub service: String,
    pub route: Option<String>,
    pub environment: Option<String>,
    pub provider: Option<String>,
    pub request_model: String,
    pub response_model: Option<String>,
    pub prompt_id: Option<String>,
    pub prompt_version: Option<String>,
    pub deployment: Option<Deployment>,
    pub variant: Option<String>,
    pub latency_ms: f64,
    pub ttft_ms: Option<f64>,
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    /// Input tokens read from the provider's prompt cache (part of `input_tokens`).
    pub cached_input_tokens: Option<u64>,
    /// Input tokens written to the prompt cache (part of `input_tokens`).
    pub cache_creation_input_tokens: Option<u64>,
    /// Reasoning tokens (part of `output_tokens`).
    pub reasoning_tokens: Option<u64>,
    pub cost_usd: Option<f64>,
    /// True when `cost_usd` was computed from the model registry or `[prices]`.
    pub cost_estimated: bool,
    /// What the cache reads saved against the input rate (from the registry's prices);
    /// computed, never read from the message.
    pub cache_savings_usd: Option<f64>,
    /// `input_tokens` / the registry's `max_input_tokens` of the serving model; computed,
    /// never read from the message.
    pub context_utilization: Option<f64>,
    /// `context_utilization` above `registry.near_context` (default 0.9).
    pub near_context_limit: bool,
    pub status: Status,
    pub error_type: Option<String>,
    pub http_status: Option<u16>,
    pub retries: Option<u32>,
    pub finish_reason: Option<String>,
    /// Inline LLM-judge scores, name → value (finite).
    pub judge_scores: Vec<(String, f64)>,
    pub feedback: Option<Feedback>,
    pub query_type: Option<String>,
    pub prompt_chars: Option<u64>,
    pub trace_id: Option<String>,
    pub response_id: Option<String>,
    /// `gen_ai.operation.name`: chat, text_completion, embeddings, execute_tool, …
    pub operation_name: Option<String>,
    /// `gen_ai.conversation.id`.
    pub conversation_id: Option<String>,
    /// OpenAI's `system_fingerprint`: the backend configuration that served the request.
    pub system_fingerprint: Option<String>,
}

impl RequestEvent {
    /// The value of a label usable in a series key; `None` for an unknown label name.
    pub fn label(&self, name: SeriesLabel) -> &str {
        fn opt(o: &Option<String>) -> &str {
            o.as_deref().unwrap_or("")
        }
        match name {
            SeriesLabel::Service => &self.service,
            SeriesLabel::Route => opt(&self.route),
            SeriesLabel::Environment => opt(&self.environment),
            SeriesLabel::Provider => opt(&self.provider),
            SeriesLabel::RequestModel => &self.request_model,
            SeriesLabel::ResponseModel => opt(&self.response_model),
            SeriesLabel::PromptId => opt(&self.prompt_id),
            SeriesLabel::PromptVersion => opt(&self.prompt_version),
            SeriesLabel::Deployment => self.deployment.map(Deployment::as_str).unwrap_or(""),
            SeriesLabel::Variant => opt(&self.variant),
            SeriesLabel::QueryType => opt(&self.query_type),
        }
    }
}

/// A judge score or user feedback that arrives after the request it scores
/// (`{"kind":"score",…}` / `{"kind":"feedback",…}`, cf. OTel `gen_ai.evaluation.result`).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreEvent {
    pub event_id: Option<String>,
    /// The request this scores, by `response_id` (preferred) or `trace_id`.
    pub response_id: String,
    pub timestamp_ms: Option<i64>,
    pub value: ScoreValue,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ScoreValue {
    /// A judge result: a score, a categorical label (`gen_ai.evaluation.score.label`), or
    /// both; at least one of them.
    Judge {
        name: String,
        value: Option<f64>,
        label: Option<String>,
    },
    Feedback(Feedback),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    #[default]
    Ok,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Error => "error",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deployment {
    Stable,
    Canary,
    Shadow,
}

impl Deployment {
    pub fn as_str(self) -> &'static str {
        match self {
            Deployment::Stable => "stable",
            Deployment::Canary => "canary",
            Deployment::Shadow => "shadow",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "stable" => Some(Deployment::Stable),
            "canary" => Some(Deployment::Canary),
            "shadow" => Some(Deployment::Shadow),
            _ => None,
        }
    }
}

/// User thumbs: -1, 0 or 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Feedback {
    Negative,
    Neutral,
    Positive,
}

impl Feedback {
    pub fn from_i64(v: i64) -> Option<Self> {
        match v {
            -1 => Some(Feedback::Negative),
            0 => Some(Feedback::Neutral),
            1 => Some(Feedback::Positive),
            _ => None,
        }
    }
    pub fn as_i8(self) -> i8 {
        match self {
            Feedback::Negative => -1,
            Feedback::Neutral => 0,
            Feedback::Positive => 1,
        }
    }
}

/// Event fields that may be used to build a series key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SeriesLabel {
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
    QueryType,
}

impl SeriesLabel {
    pub const ALL: [SeriesLabel; 11] = [
        SeriesLabel::Service,
        SeriesLabel::Route,
        SeriesLabel::Environment,
        SeriesLabel::Provider,
        SeriesLabel::RequestModel,
        SeriesLabel::ResponseModel,
        SeriesLabel::PromptId,
        SeriesLabel::PromptVersion,
        SeriesLabel::Deployment,
        SeriesLabel::Variant,
        SeriesLabel::QueryType,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SeriesLabel::Service => "service",
            SeriesLabel::Route => "route",
            SeriesLabel::Environment => "environment",
            SeriesLabel::Provider => "provider",
            SeriesLabel::RequestModel => "request_model",
            SeriesLabel::ResponseModel => "response_model",
            SeriesLabel::PromptId => "prompt_id",
            SeriesLabel::PromptVersion => "prompt_version",
            SeriesLabel::Deployment => "deployment",
            SeriesLabel::Variant => "variant",
            SeriesLabel::QueryType => "query_type",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|l| l.as_str() == s)
    }
}

impl fmt::Display for SeriesLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a message came from: the Kafka coordinates that make files and offsets line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub partition: i32,
    pub offset: i64,
}
