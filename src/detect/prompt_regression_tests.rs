//! `prompt_version_regression` over hand-built history: a replacement and a rollout that
//! regress, a new version that does not, and a prompt's first version.

use super::*;
use crate::window::sketch::WindowSketch;

const NAMES: [&str; 3] = ["service", "prompt_id", "prompt_version"];
/// 2026-11-10T00:00:00Z.
const T: i64 = 1_794_268_800_000;
const MIN: i64 = 60_000;

fn rule() -> Rule {
    let text = "rules:\n  - name: pv\n    signal: { metric: prompt_version_regression }\n    by: [service, prompt_id]\n    over: 2h\n    baseline: { trailing: 2h }\n    condition: { effect: relative_change, above: 0.05, recover: 0.03 }\n    test: { kind: compare, alpha: 0.001 }\n    severity: alert\n    annotations: { summary: '{{ labels.prompt_version }} vs {{ labels.baseline_version }}: {{ details.regressed }}', runbook_url: https://x }\n";
    let ctx = crate::detect::rules::RuleContext::for_tests(vec![
        crate::event::SeriesLabel::Service,
        crate::event::SeriesLabel::PromptId,
        crate::event::SeriesLabel::PromptVersion,
    ]);
    crate::detect::rules::parse_file(std::path::Path::new("r.yaml"), text, &ctx)
        .unwrap()
        .remove(0)
}

fn history(rule: &Rule) -> History {
    History::new(MIN, 2 * 3_600_000, rule.lookback_ms() + MIN, MIN)
}

/// One minute of a version: `n` requests with latencies around `latency` and judge scores
/// around `judge` (deterministic spread).
fn minute(h: &mut History, version: &str, start: i64, n: u64, latency: f64, judge: f64) {
    let mut w = WindowSketch::default();
    for i in 0..n {
        let u = ((i * 37 + (start / MIN) as u64 * 11) % 100) as f64 / 100.0;
        let ev = crate::event::RequestEvent {
            latency_ms: latency * (0.5 + u),
            output_tokens: Some(200),
            cost_usd: Some(0.002),
            judge_scores: vec![(
                "faithfulness".into(),
                (judge - 0.1 + 0.2 * u).clamp(0.0, 1.0),
            )],
            ..Default::default()
        };
        w.observe(&ev, 0, i as i64);
    }
    let keep = [
        Metric::LatencyMs as usize,
        Metric::OutputTokens as usize,
        Metric::CostUsd as usize,
    ]
    .into();
    let labels = vec![
        "chat".to_string(),
        "answer".to_string(),
        version.to_string(),
    ];
    h.add_window(&labels, start, Summary::from_sketch(&w, &keep));
}

fn at(h: &History, r: &Rule, minute: i64) -> Vec<Evaluation> {
    evaluate(r, &NAMES, h, T + minute * MIN, EvalContext::default())
}

fn label<'a>(e: &'a Evaluation, name: &str) -> &'a str {
    &e.labels.iter().find(|(k, _)| k == name).unwrap().1
}

#[test]
fn a_replacement_that_scores_worse_fires_naming_both_versions_and_the_metric() {
    let r = rule();
    let mut h = history(&r);
    for m in 0..60 {
        minute(&mut h, "v12", T + m * MIN, 20, 800.0, 0.80);
    }
    // v13 replaces v12 at minute 60, judge 10 % lower.
    for m in 60..70 {
        minute(&mut h, "v13", T + m * MIN, 20, 800.0, 0.72);
    }
    let evals = at(&h, &r, 70);
    assert_eq!(evals.len(), 1, "{evals:#?}");
    let e = &evals[0];
    assert!(e.fires(), "{e:#?}");
    assert_eq!(label(e, "prompt_version"), "v13");
    assert_eq!(label(e, "baseline_version"), "v12");
    assert_eq!(e.details["mode"], "replacement");
    assert_eq!(e.details["since"], crate::time::rfc3339(T + 60 * MIN));
    assert!(
        e.details["regressed"].starts_with("judge:faithfulness -9."),
        "{:?}",
        e.details
    );
    assert!(
        !e.details["regressed"].contains("latency"),
        "{:?}",
        e.details
    );
    assert_eq!(e.onset_ms, Some(T + 60 * MIN));
    assert_eq!((e.n_current, e.n_baseline), (200, 1200));
    // The prompt's first version, v12, had no predecessor: never evaluated.
    assert!(evals.iter().all(|e| label(e, "prompt_version") != "v12"));
    // Past the watch period (2 h after v13's first request) v13 is not new any more.
    for m in 70..181 {
        minute(&mut h, "v13", T + m * MIN, 20, 800.0, 0.72);
    }
    // Just past it: one evaluation that is not breached (a firing alert resolves), then none.
    let e = &at(&h, &r, 181)[0];
    assert!(matches!(e.outcome, Outcome::Measured(m) if !m.breached && !m.still_breached));
    assert_eq!(e.details["mode"], "watch period over");
    for m in 181..200 {
        minute(&mut h, "v13", T + m * MIN, 20, 800.0, 0.72);
    }
    assert!(at(&h, &r, 200).is_empty());
}

#[test]
fn a_rollout_is_compared_over_the_same_span_and_an_equal_version_passes() {
    let r = rule();
    let mut h = history(&r);
    for m in 0..60 {
        minute(&mut h, "v12", T + m * MIN, 30, 800.0, 0.80);
    }
    // From minute 60, v13 takes a third of the traffic alongside v12, 40 % slower.
    for m in 60..100 {
        minute(&mut h, "v12", T + m * MIN, 40, 800.0, 0.80);
        minute(&mut h, "v13", T + m * MIN, 20, 1120.0, 0.80);
    }
    let evals = at(&h, &r, 100);
    let e = &evals[0];
    assert!(e.fires(), "{e:#?}");
    assert_eq!(e.details["mode"], "overlap");
    assert_eq!((e.n_current, e.n_baseline), (800, 1600));
    assert!(
        e.details["regressed"].contains("latency_p99 +"),
        "{:?}",
        e.details
    );
    assert!(!e.details["regressed"].contains("judge"), "{:?}", e.details);
    // An equal version: measured, nothing regressed.
    let mut h = history(&r);
    for m in 0..60 {
        minute(&mut h, "v12", T + m * MIN, 30, 800.0, 0.80);
    }
    for m in 60..100 {
        minute(&mut h, "v14", T + m * MIN, 30, 800.0, 0.80);
    }
    let e = &at(&h, &r, 100)[0];
    assert!(!e.fires(), "{e:#?}");
    assert!(matches!(e.outcome, Outcome::Measured(m) if m.value == 0.0 && !m.still_breached));
    assert_eq!(e.details["regressed"], "nothing");
}

#[test]
fn too_few_samples_say_so() {
    let r = rule();
    let mut h = history(&r);
    for m in 0..60 {
        minute(&mut h, "v12", T + m * MIN, 20, 800.0, 0.80);
    }
    minute(&mut h, "v13", T + 60 * MIN, 5, 800.0, 0.40);
    let e = &at(&h, &r, 61)[0];
    assert_eq!(
        e.outcome,
        Outcome::NoData("too few samples on either version")
    );
}

#[test]
fn prompt_version_must_not_be_an_instance_label() {
    let ctx = crate::detect::rules::RuleContext::for_tests(vec![
        crate::event::SeriesLabel::Service,
        crate::event::SeriesLabel::PromptVersion,
    ]);
    let text = "rules:\n  - name: pv\n    signal: { metric: prompt_version_regression }\n    by: [service, prompt_version]\n    over: 2h\n    baseline: { value: 1 }\n    condition: { effect: ratio, above: 2 }\n    severity: alert\n    annotations: { summary: s, runbook_url: https://x }\n";
    let errors: Vec<String> =
        crate::detect::rules::parse_file(std::path::Path::new("r.yaml"), text, &ctx)
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect();
    let all = errors.join("\n");
    assert!(all.contains("remove prompt_version"), "{all}");
    assert!(all.contains("trailing: 2h"), "{all}");
    assert!(all.contains("relative_change"), "{all}");
}
