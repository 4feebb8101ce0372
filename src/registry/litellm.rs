//! `driftwatch registry import litellm`: LiteLLM's `model_prices_and_context_window.json`
//! into registry entries. Per-token prices become USD per million tokens, starting at the
//! effective date; `*_above_<N>k_tokens` prices become tiers above N×1000 input tokens;
//! context limits, provider and deprecation dates come along. Merging into an existing
//! registry keeps every hand-written field (fallbacks, evals, owners, lineage, aliases,
//! successors) and adds a price period only where the prices changed.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::spec::{
    unspanned, ContextSpec, DeprecationSpec, ModelSpec, PriceSpec, RatesSpec, RegistryFileSpec,
    TierSpec,
};
use super::{Date, Registry, RegistryError};

/// Why an import was refused.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{file}:{line}:{column}: not LiteLLM's JSON: {message}")]
    Json {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: entry {entry:?}: {field}: {message}")]
    Entry {
        file: String,
        entry: String,
        field: String,
        message: String,
    },
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"))]
    Registry(Vec<RegistryError>),
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportReport {
    pub added: usize,
    /// Entries that got new prices, context limits or a deprecation date.
    pub updated: usize,
    pub unchanged: usize,
    /// LiteLLM entries without per-token prices (images, audio by the second, …).
    pub skipped: usize,
}

/// LiteLLM field → registry rate.
const RATES: [(&str, &str); 5] = [
    ("input_cost_per_token", "input"),
    ("output_cost_per_token", "output"),
    ("cache_read_input_token_cost", "cached_input"),
    ("cache_creation_input_token_cost", "cache_write"),
    ("output_cost_per_reasoning_token", "reasoning"),
];

fn set_rate(r: &mut RatesSpec, name: &str, v: f64) {
    let slot = match name {
        "input" => &mut r.input,
        "output" => &mut r.output,
        "cached_input" => &mut r.cached_input,
        "cache_write" => &mut r.cache_write,
        _ => &mut r.reasoning,
    };
    *slot = Some(v);
}

/// USD per token → USD per million tokens, without the binary noise (2.5e-6 → 2.5).
fn per_million(per_token: f64) -> f64 {
    (per_token * 1e6 * 1e6).round() / 1e6
}

/// One LiteLLM entry, converted.
struct Imported {
    provider: Option<String>,
    context: ContextSpec,
    deprecation: Option<String>,
    price: Option<PriceSpec>,
}

fn convert(file: &str, name: &str, v: &Value, effective: Date) -> Result<Imported, ImportError> {
    let err = |field: &str, message: String| ImportError::Entry {
        file: file.to_string(),
        entry: name.to_string(),
        field: field.to_string(),
        message,
    };
    let Some(o) = v.as_object() else {
        return Err(err("*", "is not an object".into()));
    };
    let num = |field: &str| -> Result<Option<f64>, ImportError> {
        match o.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
                _ => Err(err(
                    field,
                    format!("{n} is not a price or size (a number ≥ 0)"),
                )),
            },
            Some(other) => Err(err(field, format!("{other} is not a number"))),
        }
    };
    let tokens = |field: &str| -> Result<Option<u64>, ImportError> {
        Ok(num(field)?.map(|x| x.round() as u64).filter(|&n| n > 0))
    };
    let mut base = RatesSpec::default();
    let mut tiers: BTreeMap<u64, RatesSpec> = BTreeMap::new();
    for key in o.keys() {
        for (lite, ours) in RATES {
            if key == lite {
                if let Some(x) = num(key)? {
                    set_rate(&mut base, ours, per_million(x));
                }
            } else if let Some(rest) = key
                .strip_prefix(lite)
                .and_then(|r| r.strip_prefix("_above_"))
            {
                let Some(k) = rest
                    .strip_suffix("k_tokens")
                    .and_then(|n| n.parse::<u64>().ok())
                else {
                    continue;
                };
                if let Some(x) = num(key)? {
                    set_rate(tiers.entry(k * 1000).or_default(), ours, per_million(x));
                }
            }
        }
    }
    let price = match (base.input, base.output) {
        (Some(_), Some(_)) => Some(PriceSpec {
            from: effective.to_string(),
            to: None,
            per_million: base,
            above: tiers
                .into_iter()
                .map(|(t, r)| TierSpec {
                    input_tokens: Some(t),
                    per_million: r,
                })
                .collect(),
        }),
        (Some(_), None) | (None, Some(_)) => {
            return Err(err(
                if base.input.is_none() {
                    "input_cost_per_token"
                } else {
                    "output_cost_per_token"
                },
                "missing: an entry with per-token prices needs both input and output".into(),
            ))
        }
        (None, None) => None,
    };
    let deprecation = match o.get("deprecation_date") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Date::parse(s).ok_or_else(|| {
                err(
                    "deprecation_date",
                    format!("{s:?} is not a YYYY-MM-DD date"),
                )
            })?;
            Some(s.trim().to_string())
        }
        Some(other) => {
            return Err(err(
                "deprecation_date",
                format!("{other} is not a date string"),
            ))
        }
    };
    let provider = match o.get("litellm_provider") {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    Ok(Imported {
        provider,
        context: ContextSpec {
            max_input_tokens: tokens("max_input_tokens")?,
            max_output_tokens: tokens("max_output_tokens")?,
        },
        deprecation,
        price,
    })
}

/// Resolved (rates, tiers) of a period spec, for "did the prices change".
fn resolved(p: &PriceSpec) -> Option<(super::Rates, Vec<super::Tier>)> {
    super::resolve_period(p).map(|p| (p.rates, p.tiers))
}

fn blank(id: &str) -> ModelSpec {
    ModelSpec {
        id: unspanned(id.to_string()),
        provider: None,
        aliases: Vec::new(),
        version: None,
        deployed: None,
        deprecation: None,
        context: None,
        fallback: None,
        owner: None,
        team: None,
        labels: BTreeMap::new(),
        evals: BTreeMap::new(),
        lineage: None,
        prices: Vec::new(),
    }
}

/// Merges one imported entry into `m`; true when something changed.
fn merge(m: &mut ModelSpec, imp: Imported, effective: Date) -> bool {
    let mut changed = false;
    if m.provider.is_none() && imp.provider.is_some() {
        m.provider = imp.provider;
        changed = true;
    }
    let ctx = m
        .context
        .get_or_insert_with(|| unspanned(ContextSpec::default()));
    for (ours, theirs) in [
        (
            &mut ctx.value.max_input_tokens,
            imp.context.max_input_tokens,
        ),
        (
            &mut ctx.value.max_output_tokens,
            imp.context.max_output_tokens,
        ),
    ] {
        if theirs.is_some() && *ours != theirs {
            *ours = theirs;
            changed = true;
        }
    }
    if ctx.value.max_input_tokens.is_none() && ctx.value.max_output_tokens.is_none() {
        m.context = None;
    }
    if let Some(date) = imp.deprecation {
        match &mut m.deprecation {
            Some(d) if d.value.date == date => {}
            Some(d) => {
                d.value.date = date;
                changed = true;
            }
            None => {
                m.deprecation = Some(unspanned(DeprecationSpec {
                    date,
                    retirement: None,
                    successor: None,
                }));
                changed = true;
            }
        }
    }
    let Some(price) = imp.price else {
        return changed;
    };
    let new = resolved(&price);
    let e = effective.to_string();
    if let Some(same_day) = m
        .prices
        .iter_mut()
        .find(|p| Date::parse(&p.value.from) == Some(effective))
    {
        if resolved(&same_day.value) != new {
            same_day.value.per_million = price.per_million;
            same_day.value.above = price.above;
            changed = true;
        }
        return changed;
    }
    // The period in force on the effective date, if any.
    let covering = m
        .prices
        .iter_mut()
        .filter(|p| Date::parse(&p.value.from).is_some_and(|f| f <= effective))
        .max_by_key(|p| Date::parse(&p.value.from));
    if let Some(c) = covering {
        let open = c
            .value
            .to
            .as_deref()
            .and_then(Date::parse)
            .is_none_or(|t| t > effective);
        if open && resolved(&c.value) == new {
            return changed;
        }
        if c.value
            .to
            .as_deref()
            .and_then(Date::parse)
            .is_some_and(|t| t > effective)
        {
            c.value.to = Some(e.clone());
        }
    }
    m.prices.push(unspanned(price));
    m.prices.sort_by_key(|p| {
        Date::parse(&p.value.from)
            .map(|d| d.days)
            .unwrap_or(i64::MIN)
    });
    true
}

/// Imports LiteLLM's JSON `litellm` (named `file` in errors) into the registry text
/// `existing` (`None`: a new file): the new registry text, validated, and what changed.
/// `only`: import just these entries (by LiteLLM key); empty: every entry with per-token
/// prices.
pub fn import(
    file: &str,
    litellm: &str,
    existing: Option<&str>,
    into: &Path,
    effective: Date,
    only: &[String],
) -> Result<(String, ImportReport), ImportError> {
    let table: serde_json::Map<String, Value> =
        serde_json::from_str(litellm).map_err(|e| ImportError::Json {
            file: file.to_string(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })?;
    let mut spec: RegistryFileSpec = match existing {
        Some(text) if !text.trim().is_empty() => {
            Registry::parse(into, text, 0).map_err(ImportError::Registry)?;
            serde_saphyr::from_str(text).map_err(|e| {
                ImportError::Registry(vec![RegistryError::Syntax {
                    file: into.to_path_buf(),
                    line: 0,
                    column: 0,
                    message: e.to_string(),
                }])
            })?
        }
        _ => RegistryFileSpec::default(),
    };
    for name in only {
        if !table.contains_key(name) {
            return Err(ImportError::Entry {
                file: file.to_string(),
                entry: name.clone(),
                field: "*".into(),
                message: "no such entry in the file".into(),
            });
        }
    }
    let mut report = ImportReport::default();
    let mut added: Vec<ModelSpec> = Vec::new();
    for (name, v) in &table {
        if name == "sample_spec" || (!only.is_empty() && !only.contains(name)) {
            continue;
        }
        let imp = convert(file, name, v, effective)?;
        if imp.price.is_none() {
            if only.contains(name) {
                return Err(ImportError::Entry {
                    file: file.to_string(),
                    entry: name.clone(),
                    field: "input_cost_per_token".into(),
                    message: "no per-token prices to import".into(),
                });
            }
            report.skipped += 1;
            continue;
        }
        let existing = spec
            .models
            .iter_mut()
            .find(|m| m.id.value == *name || m.aliases.iter().any(|a| a.value == *name));
        match existing {
            Some(m) => {
                if merge(m, imp, effective) {
                    report.updated += 1;
                } else {
                    report.unchanged += 1;
                }
            }
            None => {
                let mut m = blank(name);
                merge(&mut m, imp, effective);
                added.push(m);
                report.added += 1;
            }
        }
    }
    spec.models.extend(added);
    spec.schema_version = Some(super::SCHEMA_MAJOR);
    let body = serde_saphyr::to_string(&spec).map_err(|e| ImportError::Entry {
        file: into.display().to_string(),
        entry: "*".into(),
        field: "*".into(),
        message: format!("cannot write YAML: {e}"),
    })?;
    let text = format!(
        "# Model registry (schemas/models.v1.schema.json); prices in USD per million tokens.\n# Last imported from LiteLLM's {} with prices effective {effective}.\n{body}",
        Path::new(file).file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default()
    );
    // What we write must load.
    Registry::parse(into, &text, 0).map_err(ImportError::Registry)?;
    Ok((text, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    const FIXTURE: &str = include_str!("../../tests/fixtures/litellm_model_prices.json");

    fn day(s: &str) -> Date {
        Date::parse(s).unwrap()
    }

    fn load(text: &str) -> Registry {
        Registry::parse(Path::new("models.yaml"), text, 0)
            .unwrap()
            .0
    }

    #[test]
    fn the_fixture_imports_to_the_registry_prices_used_by_hand() {
        let into = Path::new("models.yaml");
        let (text, report) =
            import("prices.json", FIXTURE, None, into, day("2024-08-06"), &[]).unwrap();
        assert_eq!(
            report,
            ImportReport {
                added: 4,
                updated: 0,
                unchanged: 0,
                skipped: 1
            }
        );
        let r = load(&text);
        let m = r.lookup("gpt-4o").unwrap();
        assert_eq!(m.provider.as_deref(), Some("openai"));
        assert_eq!(
            (m.max_input_tokens, m.max_output_tokens),
            (Some(128_000), Some(16_384))
        );
        assert_eq!(m.deprecation.as_ref().unwrap().date, day("2026-12-31"));
        let p = &m.prices[0];
        assert_eq!(p.from, day("2024-08-06"));
        assert_eq!(
            p.rates,
            crate::registry::Rates {
                input: 2.5,
                output: 10.0,
                cached_input: 1.25,
                cache_write: 3.125,
                reasoning: 10.0
            }
        );
        assert_eq!(p.tiers.len(), 1);
        assert_eq!(p.tiers[0].above_input_tokens, 200_000);
        assert_eq!(
            (p.tiers[0].rates.input, p.tiers[0].rates.output),
            (5.0, 15.0)
        );
        // The same costs as the hand-written registry (registry::tests).
        let (hand, _) =
            Registry::parse(Path::new("h"), crate::registry::tests::EXAMPLE, 0).unwrap();
        let h = hand.lookup("gpt-4o").unwrap();
        for u in [
            crate::registry::Usage {
                input: 10_000,
                cached_input: 6_000,
                cache_write: 2_000,
                output: 1_000,
                reasoning: 400,
            },
            crate::registry::Usage {
                input: 250_000,
                cached_input: 50_000,
                cache_write: 0,
                output: 2_000,
                reasoning: 0,
            },
        ] {
            let t = day("2025-01-01").start_ms();
            assert_eq!(m.cost(t, &u), h.cost(t, &u), "{u:?}");
        }
        let mini = r.lookup("gpt-4o-mini").unwrap();
        assert_eq!(
            (
                mini.prices[0].rates.input,
                mini.prices[0].rates.cached_input
            ),
            (0.15, 0.075)
        );
        assert!(r.lookup("dall-e-3").is_none(), "no per-token prices");
    }

    #[test]
    fn merging_keeps_hand_written_fields_and_adds_a_period_only_for_new_prices() {
        let into = Path::new("models.yaml");
        let existing = r#"
models:
  - id: gpt-4o
    fallback: gpt-4o-mini
    owner: platform
    evals:
      helpfulness: { value: 0.86, golden_set: support-v3 }
    deprecation: { date: 2026-06-30, successor: gpt-4.1 }
    prices:
      - from: 2024-08-06
        per_million: { input: 2.50, output: 10.00, cached_input: 1.25, cache_write: 3.125, reasoning: 10.00 }
        above:
          - input_tokens: 200000
            per_million: { input: 5.00, output: 15.00 }
  - id: gpt-4o-mini
"#;
        let only = vec!["gpt-4o".to_string(), "gpt-4o-mini".to_string()];
        let (text, report) = import(
            "prices.json",
            FIXTURE,
            Some(existing),
            into,
            day("2026-12-01"),
            &only,
        )
        .unwrap();
        assert_eq!(
            (report.added, report.updated, report.unchanged),
            (0, 2, 0),
            "{text}"
        );
        let r = load(&text);
        let m = r.lookup("gpt-4o").unwrap();
        assert_eq!(m.fallback.as_deref(), Some("gpt-4o-mini"));
        assert_eq!(m.owner.as_deref(), Some("platform"));
        assert_eq!(
            m.evals["helpfulness"].golden_set.as_deref(),
            Some("support-v3")
        );
        let d = m.deprecation.as_ref().unwrap();
        assert_eq!(
            (d.date, d.successor.as_deref()),
            (day("2026-12-31"), Some("gpt-4.1"))
        );
        // Same rates: no new period; gpt-4o changed by its context and deprecation date only.
        assert_eq!(m.prices.len(), 1, "{text}");
        let mini = r.lookup("gpt-4o-mini").unwrap();
        assert_eq!(mini.prices.len(), 1);
        assert_eq!(mini.prices[0].from, day("2026-12-01"));
        // Importing again changes nothing.
        let (again, report) = import(
            "prices.json",
            FIXTURE,
            Some(&text),
            into,
            day("2026-12-02"),
            &only,
        )
        .unwrap();
        assert_eq!((report.updated, report.unchanged), (0, 2));
        assert_eq!(load(&again).models(), r.models());
        // New prices from a later date: a second period, the first ends where it starts.
        let cheaper = FIXTURE.replace(
            "\"input_cost_per_token\": 1.5e-07",
            "\"input_cost_per_token\": 1e-07",
        );
        let (text, _) = import(
            "prices.json",
            &cheaper,
            Some(&again),
            into,
            day("2027-01-01"),
            &only,
        )
        .unwrap();
        let mini = load(&text).lookup("gpt-4o-mini").unwrap().clone();
        assert_eq!(mini.prices.len(), 2);
        assert_eq!(mini.prices[1].from, day("2027-01-01"));
        assert_eq!(mini.prices[1].rates.input, 0.1);
        let t = day("2026-12-15").start_ms();
        assert_eq!(mini.price_at(t).unwrap().rates.input, 0.15);
    }

    #[test]
    fn a_bad_entry_is_named() {
        let bad = r#"{"m1": {"input_cost_per_token": -1e-06, "output_cost_per_token": 1e-06}}"#;
        let e = import(
            "p.json",
            bad,
            None,
            Path::new("x.yaml"),
            day("2026-01-01"),
            &[],
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "p.json: entry \"m1\": input_cost_per_token: -1e-6 is not a price or size (a number ≥ 0)");
        let half = r#"{"m2": {"input_cost_per_token": 1e-06}}"#;
        let e = import(
            "p.json",
            half,
            None,
            Path::new("x.yaml"),
            day("2026-01-01"),
            &[],
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .contains("entry \"m2\": output_cost_per_token: missing"),
            "{e}"
        );
        let e = import(
            "p.json",
            "{\n  \"m\": [1,\n",
            None,
            Path::new("x.yaml"),
            day("2026-01-01"),
            &[],
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("p.json:3:"), "{e}");
        let e = import(
            "p.json",
            FIXTURE,
            None,
            Path::new("x.yaml"),
            day("2026-01-01"),
            &["nope".into()],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("entry \"nope\": *: no such entry"),
            "{e}"
        );
    }
}
