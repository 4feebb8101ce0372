//! The registry file as written (`models.yaml`, `schemas/models.v1.schema.json`): every
//! field a user can set, with the source location of the ones validation reports on.
//! Serializes back to the same shape (`registry import` writes it).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_saphyr::{Location, Spanned};

/// `models.yaml`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryFileSpec {
    /// Major version of the registry format; `1` (the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema_version: Option<u32>,
    #[serde(default)]
    pub models: Vec<ModelSpec>,
}

/// One model.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// The canonical name, as `request_model` / `response_model` carry it.
    pub id: Spanned<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Other names this entry covers: dated snapshots (`gpt-4o-2024-08-06`), gateway names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub aliases: Vec<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// When this model went into service here (YYYY-MM-DD).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deployed: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprecation: Option<Spanned<DeprecationSpec>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Spanned<ContextSpec>>,
    /// The model the breaker falls back to (after `[breaker.fallbacks]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Spanned<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<String>,
    /// Free labels (`tier: premium`, `region: eu`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Offline eval results: name → score and the golden set it came from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub evals: BTreeMap<String, Spanned<EvalSpec>>,
    /// A fine-tuned model's lineage.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lineage: Option<Spanned<LineageSpec>>,
    /// Price periods, each from its effective date.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prices: Vec<Spanned<PriceSpec>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeprecationSpec {
    /// The provider's deprecation date (YYYY-MM-DD).
    pub date: String,
    /// When requests stop working, if later than `date`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retirement: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub successor: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContextSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_input_tokens: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output_tokens: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalSpec {
    pub value: f64,
    /// The golden set (and its version) the score came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub golden_set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineageSpec {
    pub base_model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training_data_version: Option<String>,
    /// Validation metrics of the fine-tune, name → value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub validation: BTreeMap<String, f64>,
}

/// One price period: `from` (inclusive) until `to` (exclusive) or the next period.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriceSpec {
    pub from: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    pub per_million: RatesSpec,
    /// Higher rates for requests above an input size (the whole request at that rate).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub above: Vec<TierSpec>,
}

/// USD per million tokens. In a tier, a rate left out is the period's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RatesSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<f64>,
    /// Cache reads (default: `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached_input: Option<f64>,
    /// Cache writes / creation (default: `input`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<f64>,
    /// Reasoning output tokens (default: `output`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    /// The tier applies to requests with more input tokens than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    #[serde(default)]
    pub per_million: RatesSpec,
}

/// A value with no source location (written by `registry import`).
pub fn unspanned<T>(value: T) -> Spanned<T> {
    Spanned::new(value, Location::UNKNOWN, Location::UNKNOWN)
}
