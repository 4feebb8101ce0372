//! The registry, budget, context and cache signals, evaluated over hand-built history.

use super::*;
use crate::detect::history::Totals;

const NAMES: [&str; 3] = ["service", "request_model", "prompt_version"];
/// 2026-11-10T00:00:00Z.
const T: i64 = 1_794_268_800_000;
const MIN: i64 = 60_000;

fn rule(yaml_body: &str) -> Rule {
    let text = format!(
        "rules:\n  - name: r\n{yaml_body}    severity: info\n    annotations: {{ summary: s, runbook_url: https://x }}\n"
    );
    let ctx = crate::detect::rules::RuleContext::for_tests(vec![
        crate::event::SeriesLabel::Service,
        crate::event::SeriesLabel::RequestModel,
        crate::event::SeriesLabel::PromptVersion,
    ]);
    crate::detect::rules::parse_file(std::path::Path::new("r.yaml"), &text, &ctx)
        .unwrap()
        .remove(0)
}

fn series(v: [&str; 3]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

fn summary(requests: u64, totals: Totals) -> Summary {
    Summary {
        totals,
        ..Summary::counts(requests, 0)
    }
}

fn registry() -> crate::registry::Registry {
    let text = "models:\n  - id: gpt-4-turbo\n    aliases: [gpt-4-turbo-2024-04-09]\n    deprecation: { date: 2026-11-30, successor: gpt-4o }\n    context: { max_input_tokens: 128000 }\n  - id: gpt-4o\n";
    crate::registry::Registry::parse(std::path::Path::new("models.yaml"), text, T)
        .unwrap()
        .0
}

fn fired(e: &Evaluation) -> bool {
    matches!(e.outcome, Outcome::Measured(m) if m.breached && m.significant)
}

#[test]
fn deprecation_alerts_with_date_successor_and_share_and_not_for_models_without_a_date() {
    let r = rule("    signal: { metric: days_to_deprecation }\n    by: [service, request_model]\n    over: 10m\n    baseline: { value: 30 }\n    condition: { effect: value, below: 30 }\n    min_samples: { current: 1 }\n");
    let mut h = History::new(MIN, 7_200_000, 7_200_000, MIN);
    for m in 0..10 {
        // 25 % of chat's traffic on the alias of the deprecated model.
        h.add_window(
            &series(["chat", "gpt-4-turbo-2024-04-09", "v1"]),
            T + m * MIN,
            summary(10, Totals::default()),
        );
        h.add_window(
            &series(["chat", "gpt-4o", "v1"]),
            T + m * MIN,
            summary(30, Totals::default()),
        );
    }
    let reg = registry();
    let ctx = EvalContext {
        registry: Some(&reg),
        budgets: None,
    };
    let evals = evaluate(&r, &NAMES, &h, T + 10 * MIN, ctx);
    // gpt-4o has no deprecation date: no instance at all.
    assert_eq!(evals.len(), 1, "{evals:?}");
    let e = &evals[0];
    assert!(fired(e));
    let Outcome::Measured(m) = e.outcome else {
        unreachable!()
    };
    // 2026-11-30 is 20 days after 2026-11-10, less the 10 minutes evaluated.
    assert!(
        (m.value - (20.0 - 10.0 / 1440.0)).abs() < 1e-9,
        "{}",
        m.value
    );
    assert_eq!(e.details["model"], "gpt-4-turbo");
    assert_eq!(e.details["deprecation_date"], "2026-11-30");
    assert_eq!(e.details["successor"], "gpt-4o");
    assert_eq!(e.details["share"].parse::<f64>().unwrap(), 0.25);
    // Without a registry the signal has no instances.
    assert!(evaluate(&r, &NAMES, &h, T + 10 * MIN, EvalContext::default()).is_empty());
    // 40 days ahead: measured, not breached.
    let later = rule("    signal: { metric: days_to_deprecation }\n    by: [service, request_model]\n    over: 10m\n    baseline: { value: 7 }\n    condition: { effect: value, below: 7 }\n    min_samples: { current: 1 }\n");
    let e = &evaluate(&later, &NAMES, &h, T + 10 * MIN, ctx)[0];
    assert!(!fired(e));
}

#[test]
fn unknown_model_is_one_instance_per_model_across_services() {
    let r = rule("    signal: { metric: unknown_model }\n    by: [request_model]\n    over: 10m\n    baseline: { value: 0.5 }\n    condition: { effect: value, above: 0.5 }\n    min_samples: { current: 10 }\n");
    let mut h = History::new(MIN, 7_200_000, 7_200_000, MIN);
    for m in 0..10 {
        h.add_window(
            &series(["chat", "mystery-7b", "v1"]),
            T + m * MIN,
            summary(2, Totals::default()),
        );
        h.add_window(
            &series(["search", "mystery-7b", "v1"]),
            T + m * MIN,
            summary(2, Totals::default()),
        );
        h.add_window(
            &series(["chat", "gpt-4o", "v1"]),
            T + m * MIN,
            summary(16, Totals::default()),
        );
    }
    let reg = registry();
    let ctx = EvalContext {
        registry: Some(&reg),
        budgets: None,
    };
    let evals = evaluate(&r, &NAMES, &h, T + 10 * MIN, ctx);
    assert_eq!(evals.len(), 1);
    assert_eq!(
        evals[0].labels,
        vec![("request_model".to_string(), "mystery-7b".to_string())]
    );
    assert!(fired(&evals[0]));
    assert_eq!(evals[0].n_current, 40);
    assert_eq!(evals[0].details["share"].parse::<f64>().unwrap(), 0.2);
}

#[test]
fn budget_counts_the_utc_day_so_far_and_starts_again_at_midnight() {
    let r = rule("    signal: { metric: budget_spend }\n    by: [service]\n    over: 24h\n    baseline: { value: 0.8 }\n    condition: { effect: value, above: 0.8 }\n    min_samples: { current: 1 }\n");
    let p = rule("    signal: { metric: budget_projection }\n    by: [service]\n    over: 24h\n    baseline: { value: 1.0 }\n    condition: { effect: value, above: 1.0 }\n    min_samples: { current: 1 }\n");
    let mut h = History::new(MIN, 2 * 3_600_000, 26 * 3_600_000, MIN);
    // $0.50 a minute from 22:00 the day before to 02:00: $60 before midnight, $60 after.
    let from = T - 2 * 60 * MIN;
    for m in 0..(4 * 60) {
        let t = from + m * MIN;
        let cost = Totals {
            cost_usd: 0.5,
            ..Totals::default()
        };
        h.add_window(&series(["chat", "gpt-4o", "v1"]), t, summary(5, cost));
        h.add_window(&series(["free", "gpt-4o", "v1"]), t, summary(5, cost));
        h.maintain(t + MIN);
    }
    let budgets: BTreeMap<String, f64> = [("chat".to_string(), 70.0)].into();
    let ctx = EvalContext {
        registry: None,
        budgets: Some(&budgets),
    };
    // At 02:00: $60 of $70 today (yesterday's $60 does not count); "free" has no budget.
    let evals = evaluate(&r, &NAMES, &h, T + 120 * MIN, ctx);
    assert_eq!(evals.len(), 1);
    let e = &evals[0];
    assert_eq!(e.horizon_ms, 120 * MIN);
    let Outcome::Measured(m) = e.outcome else {
        unreachable!()
    };
    assert!((m.value - 60.0 / 70.0).abs() < 1e-9, "{}", m.value);
    assert!(fired(e));
    assert_eq!(e.details["day"], "2026-11-10");
    // The running sum passed 80 % ($56: 112 windows reach it, the 113th passes it) in the
    // window starting 01:52.
    assert_eq!(e.onset_ms, Some(T + 112 * MIN));
    // At 00:30: $15 today, within the budget; the projection is too early to make.
    let e = &evaluate(&r, &NAMES, &h, T + 30 * MIN, ctx)[0];
    assert!(!fired(e));
    let e = &evaluate(&p, &NAMES, &h, T + 30 * MIN, ctx)[0];
    assert!(matches!(e.outcome, Outcome::NoData(_)));
    // At 02:00 the projection is $30 an hour × 24 = $720 ≫ $70.
    let e = &evaluate(&p, &NAMES, &h, T + 120 * MIN, ctx)[0];
    let Outcome::Measured(m) = e.outcome else {
        panic!("{e:?}")
    };
    assert!((m.value - 720.0 / 70.0).abs() < 1e-9);
}

#[test]
fn cache_read_drop_fires_with_the_money_lost_per_day() {
    let r = rule("    signal: { metric: cache_read_ratio }\n    over: 10m\n    baseline: { trailing: 1h, offset: 5m }\n    condition: { effect: relative_change, below: -0.3 }\n    test: { kind: welch_t, alpha: 1.0e-6 }\n    min_samples: { current: 200, baseline: 1000 }\n");
    let mut h = History::new(MIN, 7_200_000, 7_200_000, MIN);
    // 100 requests a minute of 10,000 input tokens; 60 % cached (share 0.5–0.7 per request),
    // then 30 % (0.2–0.4). Each cached token saved $1.5 / M.
    let window = |share: f64| {
        let mut m = crate::window::sketch::Moments::default();
        for i in 0..100 {
            m.push(share - 0.1 + 0.2 * (i as f64) / 99.0);
        }
        let cached = (share * 1_000_000.0) as u64;
        Totals {
            input_tokens: 1_000_000,
            cached_input_tokens: cached,
            cache_savings_usd: cached as f64 * 1.5e-6,
            cache_read_share: m,
            ..Totals::default()
        }
    };
    let s = series(["chat", "gpt-4o", "v1"]);
    for m in 0..75 {
        h.add_window(&s, T + m * MIN, summary(100, window(0.6)));
    }
    for m in 75..85 {
        h.add_window(&s, T + m * MIN, summary(100, window(0.3)));
    }
    let e = &evaluate(&r, &NAMES, &h, T + 85 * MIN, EvalContext::default())[0];
    assert!(fired(e), "{e:?}");
    let Outcome::Measured(m) = e.outcome else {
        unreachable!()
    };
    assert!((m.value - 0.3).abs() < 1e-9 && (m.baseline - 0.6).abs() < 1e-9);
    // 0.3 of 1M tokens a minute no longer cached × 1,440 minutes × $1.5 / M = $648 a day.
    let lost: f64 = e.details["usd_lost_per_day"].parse().unwrap();
    assert!((lost - 648.0).abs() < 1e-6, "{lost}");
    // Unchanged traffic: no alert.
    let e = &evaluate(&r, &NAMES, &h, T + 75 * MIN, EvalContext::default())[0];
    assert!(!fired(e));
}

#[test]
fn a_prompt_version_younger_than_the_range_is_not_diluted_over_it() {
    let r = rule(
        "    signal: { metric: cache_read_ratio }
    over: 10m
    baseline: { trailing: 1h, offset: 5m, across: [prompt_version] }
    condition: { effect: relative_change, below: -0.3 }
    test: { kind: welch_t, alpha: 1.0e-6 }
    min_samples: { current: 200, baseline: 1000 }
",
    );
    let u = rule(
        "    signal: { metric: unknown_model }
    by: [request_model]
    over: 10m
    baseline: { value: 0.5 }
    condition: { effect: value, above: 0.5 }
    min_samples: { current: 10 }
",
    );
    let mut h = History::new(MIN, 7_200_000, 7_200_000, MIN);
    let window = |share: f64| {
        let mut m = crate::window::sketch::Moments::default();
        for i in 0..100 {
            m.push(share - 0.1 + 0.2 * (i as f64) / 99.0);
        }
        let cached = (share * 1_000_000.0) as u64;
        Totals {
            input_tokens: 1_000_000,
            cached_input_tokens: cached,
            cache_savings_usd: cached as f64 * 1.5e-6,
            cache_read_share: m,
            ..Totals::default()
        }
    };
    // Prompt v1 until minute 83, then v2 with half the cache reads: two minutes of v2 in
    // a ten-minute range. Alongside, a model the registry does not list for those two
    // minutes, at 20 requests a minute next to v1/v2's 100.
    for m in 0..83 {
        h.add_window(
            &series(["chat", "gpt-4o", "v1"]),
            T + m * MIN,
            summary(100, window(0.6)),
        );
    }
    for m in 83..85 {
        h.add_window(
            &series(["chat", "gpt-4o", "v2"]),
            T + m * MIN,
            summary(100, window(0.3)),
        );
        h.add_window(
            &series(["chat", "mystery-7b", "v1"]),
            T + m * MIN,
            summary(20, Totals::default()),
        );
    }
    let e = &evaluate(&r, &NAMES, &h, T + 85 * MIN, EvalContext::default());
    let v2 = e
        .iter()
        .find(|e| e.labels.iter().any(|(_, v)| v == "v2"))
        .unwrap();
    assert!(fired(v2), "{v2:?}");
    // Per day of the two minutes v2 has run, not of the ten: $648 a day as above.
    let lost: f64 = v2.details["usd_lost_per_day"].parse().unwrap();
    assert!((lost - 648.0).abs() < 1e-6, "{lost}");
    assert_eq!(v2.details["input_tokens_per_day"], "1440000000");
    // The unknown model's 40 requests against the others' 100 a minute over the same two
    // minutes (of their 1,000 in the range): 40 / (40 + 200).
    let reg = registry();
    let ctx = EvalContext {
        registry: Some(&reg),
        budgets: None,
    };
    let evals = evaluate(&u, &NAMES, &h, T + 85 * MIN, ctx);
    assert_eq!(evals.len(), 1);
    let share: f64 = evals[0].details["share"].parse().unwrap();
    assert!((share - 40.0 / 240.0).abs() < 1e-9, "{share}");
}

#[test]
fn near_context_and_finish_reason_rates_count_their_requests() {
    let r = rule("    signal: { metric: near_context_rate }\n    over: 10m\n    baseline: { value: 0.05 }\n    condition: { effect: value, above: 0.05 }\n    test: { kind: binomial, alpha: 0.001 }\n    min_samples: { current: 50, events: 10 }\n");
    let mut h = History::new(MIN, 7_200_000, 7_200_000, MIN);
    let s = series(["chat", "gpt-4o", "v1"]);
    for m in 0..10 {
        let mut w = summary(
            100,
            Totals {
                near_context: 20,
                ..Totals::default()
            },
        );
        w.finish_reasons.add("length", 9);
        w.finish_reasons.add("stop", 91);
        h.add_window(&s, T + m * MIN, w);
    }
    let e = &evaluate(&r, &NAMES, &h, T + 10 * MIN, EvalContext::default())[0];
    let Outcome::Measured(m) = e.outcome else {
        unreachable!()
    };
    assert!((m.value - 0.2).abs() < 1e-12);
    assert!(fired(e));
    let f = rule("    signal: { metric: finish_reason_rate, finish_reason: length }\n    over: 10m\n    baseline: { value: 0.05 }\n    condition: { effect: value, above: 0.05 }\n    test: { kind: binomial, alpha: 0.001 }\n");
    let e = &evaluate(&f, &NAMES, &h, T + 10 * MIN, EvalContext::default())[0];
    let Outcome::Measured(m) = e.outcome else {
        unreachable!()
    };
    assert!((m.value - 0.09).abs() < 1e-12);
    assert!(fired(e));
}

#[test]
fn registry_signals_refuse_what_cannot_work() {
    let errs = |body: &str| {
        let text = format!("rules:\n  - name: r\n{body}    severity: info\n    annotations: {{ summary: \"{{{{ details.nope }}}}\", runbook_url: https://x }}\n");
        let ctx = crate::detect::rules::RuleContext::for_tests(vec![
            crate::event::SeriesLabel::Service,
            crate::event::SeriesLabel::RequestModel,
        ]);
        match crate::detect::rules::parse_file(std::path::Path::new("r.yaml"), &text, &ctx) {
            Ok(_) => String::new(),
            Err(e) => e
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    };
    let e = errs("    signal: { metric: budget_spend }\n    by: [request_model]\n    over: 1h\n    every: 10s\n    baseline: { trailing: 1h }\n    condition: { effect: ratio, above: 0.8 }\n");
    assert!(e.contains("add service to by"), "{e}");
    assert!(e.contains("write over: 24h"), "{e}");
    assert!(e.contains("evaluated on closed windows"), "{e}");
    assert!(e.contains("use effect: value"), "{e}");
    assert!(e.contains("baseline: { value:"), "{e}");
    assert!(e.contains("unknown detail \"nope\""), "{e}");
}
