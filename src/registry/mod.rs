//! The model registry (`models.yaml`, `[registry] file`): what the product knows about each
//! model it calls — names and aliases, provider and version, deployment and deprecation
//! dates with the successor, context window, eval scores, fallback, owner, lineage of a
//! fine-tune, and prices with effective dates, cache and reasoning rates and long-input
//! tiers.
//!
//! A core module: decode prices events from it, detection reads deprecations and context
//! windows, the breaker its fallbacks. Parsing reports every problem as
//! `FILE:LINE:COL: field: the fix` ([`RegistryError`]); [`Registry`] is the validated,
//! immutable result (the daemon swaps in a new one on SIGHUP and keeps the old one when the
//! new file is bad).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_saphyr::Location;

use crate::event::RequestEvent;

pub mod changes;
pub mod litellm;
pub mod spec;

use spec::{ModelSpec, PriceSpec, RatesSpec, RegistryFileSpec};

/// The example registry shipped at the repository root (`models.example.yaml`): it covers
/// the models of `driftwatch demo` and `produce`, and the demo uses it.
pub const EXAMPLE: &str = include_str!("../../models.example.yaml");

/// Major version of the registry format this build reads.
pub const SCHEMA_MAJOR: u32 = 1;

const DAY_MS: i64 = 86_400_000;

/// `[registry]`: where the model registry is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// The registry file (`models.yaml`), reloaded on SIGHUP. Default none: costs come from
    /// `[prices]` only and the registry's signals stay quiet.
    pub file: Option<PathBuf>,
    /// A request whose input is above this share of its model's `max_input_tokens` counts
    /// as near the context limit (`near_context_rate`). Default 0.9.
    pub near_context: f64,
}

/// Default `registry.near_context`.
pub const DEFAULT_NEAR_CONTEXT: f64 = 0.9;

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            file: None,
            near_context: DEFAULT_NEAR_CONTEXT,
        }
    }
}

/// A problem that makes the registry unusable; the daemon keeps its last good one.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{}: {source}", file.display())]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{}", .0)]
    Invalid(Finding),
}

/// One error or warning about an entry: where, which field, and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
    /// `models[gpt-4o].prices[1].per_million.input`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.field,
            self.message
        )
    }
}

/// A calendar day (UTC), written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Days since 1970-01-01.
    pub days: i64,
}

impl Date {
    pub fn parse(s: &str) -> Option<Date> {
        let d = chrono::NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d").ok()?;
        let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
        Some(Date {
            days: (d - epoch).num_days(),
        })
    }

    /// Midnight UTC, in ms since the epoch.
    pub fn start_ms(self) -> i64 {
        self.days * DAY_MS
    }

    /// The UTC day holding `ms`.
    pub fn of_ms(ms: i64) -> Date {
        Date {
            days: ms.div_euclid(DAY_MS),
        }
    }
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = chrono::DateTime::from_timestamp_millis(self.start_ms())
            .map(|t| t.format("%Y-%m-%d").to_string())
            .unwrap_or_else(|| format!("day {}", self.days));
        f.write_str(&d)
    }
}

impl Serialize for Date {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Date {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Date::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("{s:?} is not a YYYY-MM-DD date")))
    }
}

/// Resolved rates, USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rates {
    pub input: f64,
    pub output: f64,
    pub cached_input: f64,
    pub cache_write: f64,
    pub reasoning: f64,
}

/// Rates for requests with more than `above_input_tokens` input tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tier {
    pub above_input_tokens: u64,
    pub rates: Rates,
}

/// One price period: from `from` (inclusive) to `to` (exclusive) or open-ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PricePeriod {
    pub from: Date,
    pub to: Option<Date>,
    pub rates: Rates,
    /// Ascending by threshold.
    pub tiers: Vec<Tier>,
}

impl PricePeriod {
    pub fn covers(&self, ts_ms: i64) -> bool {
        ts_ms >= self.from.start_ms() && self.to.is_none_or(|t| ts_ms < t.start_ms())
    }

    /// The rates a request with `input_tokens` pays: the highest tier it is above (the
    /// whole request at that tier's rates, as providers bill long-context requests).
    pub fn rates_for(&self, input_tokens: u64) -> &Rates {
        self.tiers
            .iter()
            .rev()
            .find(|t| input_tokens > t.above_input_tokens)
            .map(|t| &t.rates)
            .unwrap_or(&self.rates)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deprecation {
    pub date: Date,
    pub retirement: Option<Date>,
    pub successor: Option<String>,
}

impl Deprecation {
    /// The warning for a fallback `name` with this deprecation, as of `today_ms`.
    pub fn as_fallback(&self, name: &str, today_ms: i64) -> String {
        let when = if self.date.start_ms() <= today_ms {
            "was deprecated on"
        } else {
            "is deprecated from"
        };
        format!(
            "the fallback {name} {when} {}; fall back to {} instead",
            self.date,
            self.successor.as_deref().unwrap_or("a supported model")
        )
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Eval {
    pub value: f64,
    pub golden_set: Option<String>,
    pub date: Option<Date>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Lineage {
    pub base_model: String,
    pub training_data_version: Option<String>,
    pub validation: BTreeMap<String, f64>,
}

/// One validated model entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub id: String,
    pub provider: Option<String>,
    pub aliases: Vec<String>,
    pub version: Option<String>,
    pub deployed: Option<Date>,
    pub deprecation: Option<Deprecation>,
    pub max_input_tokens: Option<u64>,
    pub max_output_tokens: Option<u64>,
    pub fallback: Option<String>,
    pub owner: Option<String>,
    pub team: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub evals: BTreeMap<String, Eval>,
    pub lineage: Option<Lineage>,
    /// Ascending by `from`, not overlapping.
    pub prices: Vec<PricePeriod>,
}

/// Token counts of one request, as the event contract defines them: `input` counts every
/// input token (cache reads and writes included, as OTel's `gen_ai.usage.input_tokens`),
/// `output` every output token (reasoning included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub output: u64,
    pub reasoning: u64,
}

impl Usage {
    pub fn of(ev: &RequestEvent) -> Option<Usage> {
        Some(Usage {
            input: ev.input_tokens?,
            cached_input: ev.cached_input_tokens.unwrap_or(0),
            cache_write: ev.cache_creation_input_tokens.unwrap_or(0),
            output: ev.output_tokens.unwrap_or(0),
            reasoning: ev.reasoning_tokens.unwrap_or(0),
        })
    }
}

/// What one request cost, and what its cache reads saved.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cost {
    pub usd: f64,
    /// What the cached tokens would have cost at the input rate, less what they cost.
    pub cache_savings_usd: f64,
}

impl Rates {
    pub fn cost(&self, u: &Usage) -> Cost {
        let plain_input = u.input.saturating_sub(u.cached_input + u.cache_write) as f64;
        let plain_output = u.output.saturating_sub(u.reasoning) as f64;
        let usd = (plain_input * self.input
            + u.cached_input as f64 * self.cached_input
            + u.cache_write as f64 * self.cache_write
            + plain_output * self.output
            + u.reasoning as f64 * self.reasoning)
            / 1e6;
        Cost {
            usd,
            cache_savings_usd: u.cached_input as f64 * (self.input - self.cached_input) / 1e6,
        }
    }
}

impl Model {
    /// The price period covering `ts_ms`: the latest that started by then, unless it
    /// ended (`to`) before.
    pub fn price_at(&self, ts_ms: i64) -> Option<&PricePeriod> {
        self.prices
            .iter()
            .rev()
            .find(|p| ts_ms >= p.from.start_ms())
            .filter(|p| p.covers(ts_ms))
    }

    /// Cost of `usage` at event time `ts_ms`; `None` when no period covers it.
    pub fn cost(&self, ts_ms: i64, usage: &Usage) -> Option<Cost> {
        let p = self.price_at(ts_ms)?;
        Some(p.rates_for(usage.input).cost(usage))
    }

    /// Whole days from `ts_ms`'s day to the deprecation date (negative once past).
    pub fn days_to_deprecation(&self, ts_ms: i64) -> Option<i64> {
        self.deprecation
            .as_ref()
            .map(|d| d.date.days - Date::of_ms(ts_ms).days)
    }
}

/// The validated registry.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    models: Vec<Model>,
    /// id and every alias → index.
    by_name: HashMap<String, usize>,
    file: PathBuf,
}

impl PartialEq for Registry {
    fn eq(&self, o: &Registry) -> bool {
        self.models == o.models
    }
}

impl Registry {
    /// Reads and validates `path`: the registry and its warnings, or every error found.
    pub fn load(path: &Path) -> Result<(Registry, Vec<Finding>), Vec<RegistryError>> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            vec![RegistryError::Io {
                file: path.to_path_buf(),
                source,
            }]
        })?;
        Self::parse(path, &text, crate::time::now_ms())
    }

    /// Parses `text` (named `file` in messages). `today_ms` decides which deprecations are
    /// already past (for the warnings only).
    pub fn parse(
        file: &Path,
        text: &str,
        today_ms: i64,
    ) -> Result<(Registry, Vec<Finding>), Vec<RegistryError>> {
        let spec: RegistryFileSpec = serde_saphyr::from_str(text).map_err(|e| {
            let (line, column) = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            vec![RegistryError::Syntax {
                file: file.to_path_buf(),
                line,
                column,
                message: strip_location(&first_line(&e.to_string())),
            }]
        })?;
        validate(file, spec, today_ms)
    }

    /// Builds a registry from models already validated (tests, snapshots).
    pub fn from_models(models: Vec<Model>) -> Registry {
        let mut by_name = HashMap::new();
        for (i, m) in models.iter().enumerate() {
            for n in std::iter::once(&m.id).chain(&m.aliases) {
                by_name.entry(n.clone()).or_insert(i);
            }
        }
        Registry {
            models,
            by_name,
            file: PathBuf::new(),
        }
    }

    pub fn file(&self) -> &Path {
        &self.file
    }

    pub fn models(&self) -> &[Model] {
        &self.models
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The entry whose id or alias is `name`.
    pub fn lookup(&self, name: &str) -> Option<&Model> {
        self.by_name.get(name).map(|&i| &self.models[i])
    }

    /// The entry an event was served by: its response model, else its request model.
    pub fn model_for(&self, ev: &RequestEvent) -> Option<&Model> {
        ev.response_model
            .as_deref()
            .and_then(|m| self.lookup(m))
            .or_else(|| self.lookup(&ev.request_model))
    }

    /// The fallback the registry names for `model` (by id or alias).
    pub fn fallback(&self, model: &str) -> Option<&str> {
        self.lookup(model)?.fallback.as_deref()
    }
}

/// serde-saphyr's message starts with `line L column C: `; the finding says it already.
fn strip_location(m: &str) -> String {
    if let Some(rest) = m.strip_prefix("line ") {
        if let Some((_, msg)) = rest.split_once(": ") {
            return msg.to_string();
        }
    }
    m.to_string()
}

fn first_line(text: &str) -> String {
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid YAML")
        .trim();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// Collects findings with the location of the spanned value they are about.
struct Findings<'a> {
    file: &'a Path,
    errors: Vec<RegistryError>,
    warnings: Vec<Finding>,
}

impl Findings<'_> {
    fn finding(&self, at: Location, field: &str, message: String) -> Finding {
        Finding {
            file: self.file.to_path_buf(),
            line: at.line(),
            column: at.column(),
            field: field.to_string(),
            message,
        }
    }
    fn error(&mut self, at: Location, field: &str, message: impl Into<String>) {
        let f = self.finding(at, field, message.into());
        self.errors.push(RegistryError::Invalid(f));
    }
    fn warn(&mut self, at: Location, field: &str, message: impl Into<String>) {
        let f = self.finding(at, field, message.into());
        self.warnings.push(f);
    }
}

fn validate(
    file: &Path,
    spec: RegistryFileSpec,
    today_ms: i64,
) -> Result<(Registry, Vec<Finding>), Vec<RegistryError>> {
    let mut fx = Findings {
        file,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    if let Some(v) = spec.schema_version {
        if v != SCHEMA_MAJOR {
            fx.error(
                Location::UNKNOWN,
                "schema_version",
                format!("{v} is not a registry version this build reads ({SCHEMA_MAJOR}); upgrade driftwatch or write version {SCHEMA_MAJOR}"),
            );
        }
    }
    let mut models = Vec::new();
    let mut names: HashMap<String, (String, Location)> = HashMap::new();
    let mut id_at: HashMap<String, Location> = HashMap::new();
    for m in &spec.models {
        let id = m.id.value.trim().to_string();
        let at = m.id.referenced;
        if id.is_empty() {
            fx.error(
                at,
                "models[].id",
                "must not be empty; write the model name events carry",
            );
            continue;
        }
        id_at.insert(id.clone(), at);
        for n in std::iter::once(&m.id).chain(&m.aliases) {
            let name = n.value.trim().to_string();
            if let Some((other, first)) = names.get(&name) {
                fx.error(
                    n.referenced,
                    &format!("models[{id}]"),
                    format!(
                        "{name:?} is already the id or an alias of {other} (line {}); a name may belong to one entry only",
                        first.line()
                    ),
                );
            } else {
                names.insert(name, (id.clone(), n.referenced));
            }
        }
        if let Some(m) = model(&mut fx, &id, m) {
            models.push(m);
        }
    }
    // Cross-entry checks, on the file as written (an entry with another error still takes
    // part): fallbacks and successors, cycles.
    let known = |n: &str| names.get(n.trim()).map(|(id, _)| id.clone());
    let by_id: HashMap<&str, &Model> = models.iter().map(|m| (m.id.as_str(), m)).collect();
    let fallback_of: HashMap<String, String> = spec
        .models
        .iter()
        .filter_map(|s| {
            Some((
                s.id.value.trim().to_string(),
                known(&s.fallback.as_ref()?.value)?,
            ))
        })
        .collect();
    for s in spec.models.iter().filter(|s| !s.id.value.trim().is_empty()) {
        let id = s.id.value.trim().to_string();
        if let Some(sfb) = &s.fallback {
            let fb = sfb.value.trim();
            let field = format!("models[{id}].fallback");
            match known(fb) {
                None => fx.warn(
                    sfb.referenced,
                    &field,
                    format!("{fb:?} is not in the registry: its prices, context and deprecation are unknown; add an entry for it"),
                ),
                Some(target) => {
                    if let Some(d) = by_id.get(target.as_str()).and_then(|t| t.deprecation.as_ref()) {
                        fx.warn(sfb.referenced, &field, d.as_fallback(fb, today_ms));
                    }
                    // Follow the chain: a cycle would send the gateway round in circles.
                    let mut seen = BTreeSet::from([id.clone()]);
                    let mut cur = (target != id).then_some(target);
                    while let Some(c) = cur {
                        if !seen.insert(c.clone()) {
                            if c == id {
                                fx.error(
                                    sfb.referenced,
                                    &field,
                                    format!("fallbacks form a cycle ({id} → … → {c}); end the chain at a model without a fallback"),
                                );
                            }
                            break;
                        }
                        cur = fallback_of.get(&c).cloned();
                    }
                }
            }
        }
        if let Some(sd) = &s.deprecation {
            if let Some(succ) = &sd.value.successor {
                if known(succ).is_none() {
                    fx.warn(
                        sd.referenced,
                        &format!("models[{id}].deprecation.successor"),
                        format!("{succ:?} is not in the registry; add an entry so its prices and context are known"),
                    );
                }
            }
        }
    }
    if fx.errors.is_empty() {
        let mut r = Registry::from_models(models);
        r.file = file.to_path_buf();
        Ok((r, fx.warnings))
    } else {
        Err(fx.errors)
    }
}

fn date(fx: &mut Findings<'_>, at: Location, field: &str, s: &str) -> Option<Date> {
    let d = Date::parse(s);
    if d.is_none() {
        fx.error(
            at,
            field,
            format!("{s:?} is not a date; write YYYY-MM-DD (UTC)"),
        );
    }
    d
}

fn model(fx: &mut Findings<'_>, id: &str, s: &ModelSpec) -> Option<Model> {
    let n0 = fx.errors.len();
    let f = |name: &str| format!("models[{id}].{name}");
    let deployed = s
        .deployed
        .as_ref()
        .and_then(|d| date(fx, d.referenced, &f("deployed"), &d.value));
    let deprecation = s.deprecation.as_ref().and_then(|d| {
        let at = d.referenced;
        let date_ = date(fx, at, &f("deprecation.date"), &d.value.date)?;
        let retirement = d
            .value
            .retirement
            .as_deref()
            .and_then(|r| date(fx, at, &f("deprecation.retirement"), r));
        if let Some(r) = retirement {
            if r < date_ {
                fx.error(
                    at,
                    &f("deprecation.retirement"),
                    format!("{r} is before the deprecation date {date_}; retirement comes on or after it"),
                );
            }
        }
        if d.value.successor.as_deref() == Some(id) {
            fx.error(at, &f("deprecation.successor"), "a model cannot succeed itself; name its replacement");
        }
        Some(Deprecation {
            date: date_,
            retirement,
            successor: d.value.successor.clone(),
        })
    });
    let (max_in, max_out) = match &s.context {
        None => (None, None),
        Some(c) => {
            for (name, v) in [
                ("max_input_tokens", c.value.max_input_tokens),
                ("max_output_tokens", c.value.max_output_tokens),
            ] {
                if v == Some(0) {
                    fx.error(
                        c.referenced,
                        &f(&format!("context.{name}")),
                        "must be at least 1; leave it out when unknown",
                    );
                }
            }
            (c.value.max_input_tokens, c.value.max_output_tokens)
        }
    };
    if let Some(fb) = &s.fallback {
        if fb.value.trim() == id || s.aliases.iter().any(|a| a.value == fb.value) {
            fx.error(
                fb.referenced,
                &f("fallback"),
                "a model cannot fall back to itself; name another model or leave it out",
            );
        }
    }
    let mut evals = BTreeMap::new();
    for (name, e) in &s.evals {
        if !e.value.value.is_finite() {
            fx.error(
                e.referenced,
                &f(&format!("evals.{name}.value")),
                "must be a finite number",
            );
        }
        let d = e
            .value
            .date
            .as_deref()
            .and_then(|d| date(fx, e.referenced, &f(&format!("evals.{name}.date")), d));
        evals.insert(
            name.clone(),
            Eval {
                value: e.value.value,
                golden_set: e.value.golden_set.clone(),
                date: d,
            },
        );
    }
    let lineage = s.lineage.as_ref().map(|l| {
        if l.value.base_model.trim().is_empty() || l.value.base_model == id {
            fx.error(
                l.referenced,
                &f("lineage.base_model"),
                "name the model this one was fine-tuned from",
            );
        }
        for (k, v) in &l.value.validation {
            if !v.is_finite() {
                fx.error(
                    l.referenced,
                    &f(&format!("lineage.validation.{k}")),
                    "must be a finite number",
                );
            }
        }
        Lineage {
            base_model: l.value.base_model.clone(),
            training_data_version: l.value.training_data_version.clone(),
            validation: l.value.validation.clone(),
        }
    });
    let mut prices = Vec::new();
    for (i, p) in s.prices.iter().enumerate() {
        if let Some(p) = period(fx, &f(&format!("prices[{i}]")), p.referenced, &p.value) {
            prices.push((p, s.prices[i].referenced));
        }
    }
    prices.sort_by_key(|(p, _)| p.from);
    for w in prices.windows(2) {
        let (a, _) = &w[0];
        let (b, at) = &w[1];
        // A period without `to` runs until the next one starts.
        if a.from == b.from || a.to.is_some_and(|t| t > b.from) {
            fx.error(
                *at,
                &f("prices"),
                format!(
                    "the period from {} overlaps the one from {}{}; {}",
                    b.from,
                    a.from,
                    a.to.map(|t| format!(" to {t}")).unwrap_or_default(),
                    if a.from == b.from {
                        "two periods cannot start on the same day; drop one".to_string()
                    } else {
                        format!(
                            "end the earlier one by {} (`to: {}`) or drop `to`",
                            b.from, b.from
                        )
                    }
                ),
            );
        }
    }
    if fx.errors.len() > n0 {
        return None;
    }
    Some(Model {
        id: id.to_string(),
        provider: s.provider.clone(),
        aliases: s
            .aliases
            .iter()
            .map(|a| a.value.trim().to_string())
            .collect(),
        version: s.version.clone(),
        deployed,
        deprecation,
        max_input_tokens: max_in,
        max_output_tokens: max_out,
        fallback: s.fallback.as_ref().map(|f| f.value.trim().to_string()),
        owner: s.owner.clone(),
        team: s.team.clone(),
        labels: s.labels.clone(),
        evals,
        lineage,
        prices: prices.into_iter().map(|(p, _)| p).collect(),
    })
}

/// A period spec resolved without reporting (None when invalid).
pub(crate) fn resolve_period(p: &PriceSpec) -> Option<PricePeriod> {
    let mut fx = Findings {
        file: Path::new(""),
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    period(&mut fx, "", Location::UNKNOWN, p)
}

fn rate(fx: &mut Findings<'_>, at: Location, field: &str, v: Option<f64>) -> Option<f64> {
    match v {
        Some(x) if !(x.is_finite() && x >= 0.0) => {
            fx.error(
                at,
                field,
                format!("{x} is not a price; write USD per million tokens, 0 or more"),
            );
            None
        }
        other => other,
    }
}

fn period(fx: &mut Findings<'_>, field: &str, at: Location, p: &PriceSpec) -> Option<PricePeriod> {
    let n0 = fx.errors.len();
    let from = date(fx, at, &format!("{field}.from"), &p.from);
    let to =
        p.to.as_deref()
            .and_then(|t| date(fx, at, &format!("{field}.to"), t));
    if let (Some(a), Some(b)) = (from, to) {
        if b <= a {
            fx.error(
                at,
                &format!("{field}.to"),
                format!("{b} is not after `from` {a}; a period ends after it starts"),
            );
        }
    }
    let base = resolve_rates(fx, at, &format!("{field}.per_million"), &p.per_million);
    let mut tiers: Vec<Tier> = Vec::new();
    for (j, t) in p.above.iter().enumerate() {
        let tf = format!("{field}.above[{j}]");
        let Some(threshold) = t.input_tokens.filter(|&n| n > 0) else {
            fx.error(
                at,
                &format!("{tf}.input_tokens"),
                "a tier needs the input size it starts above, e.g. `input_tokens: 200000`",
            );
            continue;
        };
        if t.per_million == RatesSpec::default() {
            fx.error(
                at,
                &format!("{tf}.per_million"),
                "a tier needs at least one rate that differs from the period's",
            );
            continue;
        }
        if tiers.iter().any(|x| x.above_input_tokens == threshold) {
            fx.error(
                at,
                &format!("{tf}.input_tokens"),
                format!("two tiers start above {threshold} tokens; merge them"),
            );
            continue;
        }
        let merged = tier_spec(&p.per_million, &t.per_million);
        if let Some(rates) = resolve_rates(fx, at, &format!("{tf}.per_million"), &merged) {
            tiers.push(Tier {
                above_input_tokens: threshold,
                rates,
            });
        }
    }
    tiers.sort_by_key(|t| t.above_input_tokens);
    if fx.errors.len() > n0 {
        return None;
    }
    Some(PricePeriod {
        from: from?,
        to,
        rates: base?,
        tiers,
    })
}

/// Rates from a spec: `input` and `output` required, cache reads and writes default to
/// `input`, reasoning to `output`.
fn resolve_rates(fx: &mut Findings<'_>, at: Location, field: &str, r: &RatesSpec) -> Option<Rates> {
    let n0 = fx.errors.len();
    let input = rate(fx, at, &format!("{field}.input"), r.input);
    let output = rate(fx, at, &format!("{field}.output"), r.output);
    let cached = rate(fx, at, &format!("{field}.cached_input"), r.cached_input);
    let write = rate(fx, at, &format!("{field}.cache_write"), r.cache_write);
    let reasoning = rate(fx, at, &format!("{field}.reasoning"), r.reasoning);
    if fx.errors.len() > n0 {
        return None;
    }
    let (Some(input), Some(output)) = (input, output) else {
        fx.error(
            at,
            field,
            "a price period needs `input` and `output` (USD per million tokens)",
        );
        return None;
    };
    Some(Rates {
        input,
        output,
        cached_input: cached.unwrap_or(input),
        cache_write: write.unwrap_or(input),
        reasoning: reasoning.unwrap_or(output),
    })
}

/// A tier's rates: what it sets, else what the period sets, then the usual defaults (so a
/// tier raising `input` raises the cache rates the period left to default too).
fn tier_spec(period: &RatesSpec, tier: &RatesSpec) -> RatesSpec {
    RatesSpec {
        input: tier.input.or(period.input),
        output: tier.output.or(period.output),
        cached_input: tier.cached_input.or(period.cached_input),
        cache_write: tier.cache_write.or(period.cache_write),
        reasoning: tier.reasoning.or(period.reasoning),
    }
}

#[cfg(test)]
mod tests;
