use super::*;

/// 2026-12-03 00:00 UTC.
const TODAY: i64 = 1_796_256_000_000;

pub(crate) const EXAMPLE: &str = r#"
schema_version: 1
models:
  - id: gpt-4o
    provider: openai
    aliases: [gpt-4o-2024-08-06, gpt-4o-2024-11-20]
    version: "2024-11-20"
    deployed: 2024-08-06
    context: { max_input_tokens: 128000, max_output_tokens: 16384 }
    deprecation: { date: 2026-12-31, successor: gpt-4.1 }
    fallback: gpt-4o-mini
    owner: platform
    team: llm-platform
    evals:
      helpfulness: { value: 0.86, golden_set: support-v3 }
    prices:
      - from: 2024-08-06
        per_million: { input: 2.50, output: 10.00, cached_input: 1.25, cache_write: 3.125, reasoning: 10.00 }
        above:
          - input_tokens: 200000
            per_million: { input: 5.00, output: 15.00 }
      - from: 2026-12-01
        per_million: { input: 2.00, output: 8.00, cached_input: 0.50 }
  - id: gpt-4o-mini
    provider: openai
    prices:
      - from: 2024-07-18
        per_million: { input: 0.15, output: 0.60, cached_input: 0.075 }
  - id: gpt-4.1
    provider: openai
  - id: support-ft-7
    provider: openai
    lineage:
      base_model: gpt-4o-mini
      training_data_version: tickets-2026-10
      validation: { loss: 0.41, accuracy: 0.93 }
    prices:
      - from: 2026-10-01
        per_million: { input: 0.30, output: 1.20 }
"#;

fn parse(text: &str) -> Result<(Registry, Vec<Finding>), Vec<RegistryError>> {
    Registry::parse(Path::new("models.yaml"), text, TODAY)
}

fn errors(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.iter().map(|e| e.to_string()).collect(),
    }
}

fn ms(date: &str, hour: i64) -> i64 {
    Date::parse(date).unwrap().start_ms() + hour * 3_600_000
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-12
}

#[test]
fn the_example_parses_with_every_field() {
    let (r, warnings) = parse(EXAMPLE).unwrap();
    assert_eq!(r.models().len(), 4);
    let m = r.lookup("gpt-4o-2024-08-06").expect("alias");
    assert_eq!(m.id, "gpt-4o");
    assert_eq!(m.max_input_tokens, Some(128_000));
    assert_eq!(m.fallback.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(
        m.deprecation.as_ref().unwrap().date.to_string(),
        "2026-12-31"
    );
    assert_eq!(m.days_to_deprecation(TODAY), Some(28));
    assert_eq!(
        m.evals["helpfulness"].golden_set.as_deref(),
        Some("support-v3")
    );
    let ft = r.lookup("support-ft-7").unwrap();
    assert_eq!(ft.lineage.as_ref().unwrap().base_model, "gpt-4o-mini");
    assert_eq!(r.fallback("gpt-4o-2024-11-20"), Some("gpt-4o-mini"));
    // gpt-4.1 has no prices: no warning needed; nothing is wrong in the example.
    assert!(warnings.is_empty(), "{warnings:?}");
}

#[test]
fn cost_by_hand_for_tiers_dates_cache_and_reasoning() {
    let (r, _) = parse(EXAMPLE).unwrap();
    let m = r.lookup("gpt-4o").unwrap();
    let day = "2026-11-30";
    // Plain: 1,000 in, 500 out at 2.50 / 10.00.
    let u = Usage {
        input: 1_000,
        output: 500,
        ..Usage::default()
    };
    let c = m.cost(ms(day, 12), &u).unwrap();
    assert!(close(c.usd, (1_000.0 * 2.5 + 500.0 * 10.0) / 1e6), "{c:?}");
    assert_eq!(c.cache_savings_usd, 0.0);

    // Cache reads and writes are part of the input; reasoning part of the output.
    let u = Usage {
        input: 10_000,
        cached_input: 6_000,
        cache_write: 2_000,
        output: 1_000,
        reasoning: 400,
    };
    let c = m.cost(ms(day, 12), &u).unwrap();
    let hand =
        (2_000.0 * 2.5 + 6_000.0 * 1.25 + 2_000.0 * 3.125 + 600.0 * 10.0 + 400.0 * 10.0) / 1e6;
    assert!(close(c.usd, hand), "{} vs {hand}", c.usd);
    assert!(close(c.cache_savings_usd, 6_000.0 * (2.5 - 1.25) / 1e6));

    // A tier crossed: 250,000 input tokens pay the tier's rates on the whole request; the
    // cache-write rate the period set explicitly stays, the reasoning rate too.
    let u = Usage {
        input: 250_000,
        cached_input: 50_000,
        cache_write: 0,
        output: 2_000,
        reasoning: 0,
    };
    let c = m.cost(ms(day, 12), &u).unwrap();
    let hand = (200_000.0 * 5.0 + 50_000.0 * 1.25 + 2_000.0 * 15.0) / 1e6;
    assert!(close(c.usd, hand), "{} vs {hand}", c.usd);
    // Exactly at the threshold is not above it.
    let at = Usage {
        input: 200_000,
        ..Usage::default()
    };
    assert!(close(
        m.cost(ms(day, 12), &at).unwrap().usd,
        200_000.0 * 2.5 / 1e6
    ));

    // A price change at midnight: the events either side pay their day's price.
    let u = Usage {
        input: 100_000,
        cached_input: 50_000,
        cache_write: 10_000,
        output: 10_000,
        ..Usage::default()
    };
    let before = m.cost(ms("2026-11-30", 23) + 59 * 60_000, &u).unwrap();
    let after = m.cost(ms("2026-12-01", 0), &u).unwrap();
    let hand = (40_000.0 * 2.5 + 50_000.0 * 1.25 + 10_000.0 * 3.125 + 10_000.0 * 10.0) / 1e6;
    assert!(close(before.usd, hand), "{} vs {hand}", before.usd);
    // The new period sets no cache_write: it defaults to the new input rate.
    let hand = (40_000.0 * 2.0 + 50_000.0 * 0.5 + 10_000.0 * 2.0 + 10_000.0 * 8.0) / 1e6;
    assert!(close(after.usd, hand), "{} vs {hand}", after.usd);
    assert!(close(after.cache_savings_usd, 50_000.0 * (2.0 - 0.5) / 1e6));
    // Before the first period: no price.
    assert!(m.cost(ms("2024-01-01", 0), &u).is_none());
}

#[test]
fn bad_entries_are_refused_with_line_column_field_and_fix() {
    let overlap = r#"
models:
  - id: a
    prices:
      - from: 2026-01-01
        to: 2026-03-01
        per_million: { input: 1, output: 2 }
      - from: 2026-02-01
        per_million: { input: 1, output: 3 }
"#;
    let e = errors(overlap);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("models.yaml:8:9: models[a].prices: the period from 2026-02-01 overlaps the one from 2026-01-01 to 2026-03-01; end the earlier one by 2026-02-01"), "{}", e[0]);
    // Periods without `to` follow each other: no overlap.
    let follow = "models:\n  - id: a\n    prices:\n      - { from: 2026-01-01, per_million: { input: 1, output: 2 } }\n      - { from: 2026-02-01, per_million: { input: 2, output: 2 } }\n";
    assert!(parse(follow).is_ok());

    let same_day = "models:\n  - id: a\n    prices:\n      - { from: 2026-01-01, per_million: { input: 1, output: 2 } }\n      - { from: 2026-01-01, per_million: { input: 2, output: 2 } }\n";
    assert!(
        errors(same_day)[0].contains("two periods cannot start on the same day"),
        "{:?}",
        errors(same_day)
    );

    let negative = "models:\n  - id: a\n    prices:\n      - from: 2026-01-01\n        per_million: { input: -1, output: 2 }\n";
    let e = errors(negative);
    assert!(
        e[0].starts_with(
            "models.yaml:4:9: models[a].prices[0].per_million.input: -1 is not a price"
        ),
        "{e:?}"
    );

    let tier = "models:\n  - id: a\n    prices:\n      - from: 2026-01-01\n        per_million: { input: 1, output: 2 }\n        above: [ { per_million: { input: 2 } } ]\n";
    let e = errors(tier);
    assert!(
        e[0].contains("prices[0].above[0].input_tokens: a tier needs the input size"),
        "{e:?}"
    );

    let cycle = "models:\n  - id: a\n    fallback: b\n  - id: b\n    fallback: c\n  - id: c\n    fallback: a\n";
    let e = errors(cycle);
    assert!(
        e[0].starts_with("models.yaml:3:15: models[a].fallback: fallbacks form a cycle"),
        "{e:?}"
    );

    let unknown = "models:\n  - id: a\n    pricez: []\n";
    let e = errors(unknown);
    assert!(
        e[0].starts_with("models.yaml:3:5: unknown field `pricez`"),
        "{e:?}"
    );

    let dup = "models:\n  - id: a\n  - id: b\n    aliases: [a]\n";
    assert!(errors(dup)[0].contains("\"a\" is already the id or an alias of a (line 2)"));

    let date = "models:\n  - id: a\n    deprecation: { date: 31/12/2026 }\n";
    assert!(errors(date)[0]
        .contains("deprecation.date: \"31/12/2026\" is not a date; write YYYY-MM-DD"));

    let version = "schema_version: 2\nmodels: []\n";
    assert!(errors(version)[0].contains("schema_version: 2 is not a registry version"));
}

#[test]
fn warnings_for_unknown_and_deprecated_fallbacks() {
    let text = r#"
models:
  - id: a
    fallback: b
  - id: b
    deprecation: { date: 2026-06-30, successor: c }
  - id: d
    fallback: nowhere
"#;
    let (_, w) = parse(text).unwrap();
    let w: Vec<String> = w.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 3, "{w:?}");
    assert!(w[0].contains("models[a].fallback: the fallback b was deprecated on 2026-06-30; fall back to c instead"), "{w:?}");
    assert!(
        w[1].contains("deprecation.successor: \"c\" is not in the registry"),
        "{w:?}"
    );
    assert!(
        w[2].contains("models[d].fallback: \"nowhere\" is not in the registry"),
        "{w:?}"
    );
}
