//! `new_error_code` over hand-built history: what is new, what is not, and when it may fire
//! again.

use super::*;
use crate::detect::rules::RuleSet;
use crate::window::sketch::Counts;

const NAMES: [&str; 2] = ["service", "request_model"];
/// 2026-11-10T00:00:00Z.
const T: i64 = 1_794_268_800_000;
const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

fn rule(yaml_body: &str) -> Rule {
    let text = format!(
        "rules:\n  - name: new_code\n    signal: {{ metric: new_error_code }}\n    over: 10m\n{yaml_body}    severity: warning\n    annotations: {{ summary: 'new {{{{ labels.code_field }}}} {{{{ labels.code }}}}: {{{{ details.count }}}} since {{{{ details.first_seen }}}}', runbook_url: https://x }}\n"
    );
    let ctx = crate::detect::rules::RuleContext::for_tests(vec![
        crate::event::SeriesLabel::Service,
        crate::event::SeriesLabel::RequestModel,
    ]);
    crate::detect::rules::parse_file(std::path::Path::new("r.yaml"), &text, &ctx)
        .unwrap()
        .remove(0)
}

fn history(rule: &Rule) -> History {
    let set = RuleSet {
        rules: vec![rule.clone()],
        files: Vec::new(),
    };
    History::new(MIN, 2 * HOUR, set.lookback_ms() + MIN, MIN)
        .with_codes(set.code_gap_ms(), set.code_lookback_ms() + MIN)
}

fn chat() -> Vec<String> {
    vec!["chat".into(), "gpt-4o".into()]
}

/// One minute of `labels`: 20 requests, `codes` as (error_type, http_status, count).
fn minute(h: &mut History, labels: &[String], start: i64, codes: &[(&str, &str, u64)]) {
    let mut s = Summary::counts(20, codes.iter().map(|c| c.2).sum());
    let mut types = Counts::default();
    let mut statuses = Counts::default();
    statuses.add("200", 20 - s.errors);
    for (t, st, n) in codes {
        if !t.is_empty() {
            types.add(t, *n);
        }
        statuses.add(st, *n);
    }
    s.error_types = types;
    s.http_statuses = statuses;
    h.add_window(labels, start, s);
    h.maintain(start + MIN);
}

fn firing(evals: &[Evaluation]) -> Vec<(String, String)> {
    evals
        .iter()
        .filter(|e| e.fires())
        .map(|e| {
            let n = e.labels.len();
            (e.labels[n - 2].1.clone(), e.labels[n - 1].1.clone())
        })
        .collect()
}

/// Minutes `from..to` of chat with `codes` in the minutes `hit` says.
fn fill(
    h: &mut History,
    r: &Rule,
    from: i64,
    to: i64,
    hit: impl Fn(i64) -> Vec<(&'static str, &'static str, u64)>,
) -> Vec<(i64, Vec<Evaluation>)> {
    let mut out = Vec::new();
    for m in from..to {
        minute(h, &chat(), T + m * MIN, &hit(m));
        let t = T + (m + 1) * MIN;
        out.push((t, evaluate(r, &NAMES, h, t, EvalContext::default())));
    }
    out
}

#[test]
fn a_code_absent_from_the_baseline_fires_once_per_code_with_count_and_first_seen() {
    let r = rule("    by: [service, request_model]\n    baseline: { trailing: 2h }\n");
    assert_eq!(r.min_events, 5);
    assert_eq!(r.min_baseline, 1000);
    let mut h = history(&r);
    // Two hours with an occasional rate limit (429) and a 500 now and then.
    let steps = fill(&mut h, &r, 0, 120, |m| match m % 15 {
        0 => vec![("rate_limit", "429", 2)],
        7 => vec![("server_error", "500", 1)],
        _ => vec![],
    });
    assert!(steps.iter().all(|(_, e)| firing(e).is_empty()));
    // A content filter (new error_type, familiar 400? no: 400 is new too) and more 429s.
    let steps = fill(&mut h, &r, 120, 130, |m| match m {
        121 | 122 => vec![("content_filter", "400", 3), ("rate_limit", "429", 4)],
        _ => vec![],
    });
    let (t, evals) = &steps[1];
    // 3 occurrences by 122: not yet.
    assert_eq!(*t, T + 122 * MIN);
    assert!(firing(evals).is_empty(), "{evals:#?}");
    let (t, evals) = &steps[2];
    assert_eq!(
        firing(evals),
        vec![
            ("error_type".to_string(), "content_filter".to_string()),
            ("http_status".to_string(), "400".to_string()),
        ]
    );
    let e = evals.iter().find(|e| e.fires()).unwrap();
    assert_eq!(e.details["count"], "6");
    assert_eq!(e.details["first_seen"], crate::time::rfc3339(T + 121 * MIN));
    assert_eq!(e.onset_ms, Some(T + 121 * MIN));
    assert_eq!(e.details["absent_for"], "2h");
    assert_eq!(e.n_current, 200);
    assert!(matches!(e.outcome, Outcome::Measured(m) if m.value == 6.0));
    assert_eq!(*t, T + 123 * MIN);
    // rate_limit and 429 are evaluated and within the threshold (seen in the baseline).
    let known = evals
        .iter()
        .find(|e| e.labels[3].1 == "rate_limit")
        .unwrap();
    assert!(matches!(known.outcome, Outcome::Measured(m) if !m.breached && m.value == 8.0));
    // 200 is not an error code.
    assert!(evals.iter().all(|e| e.labels[3].1 != "200"));
}

#[test]
fn a_known_code_needs_a_whole_baseline_span_of_absence_to_be_new_again() {
    let r = rule("    by: [service, request_model]\n    baseline: { trailing: 2h }\n    min_samples: { events: 5, baseline: 100 }\n");
    let mut h = history(&r);
    let burst = |m: i64| vec![("tool_error", "502", if m % 2 == 0 { 3 } else { 0 })];
    // An hour and 20 minutes of traffic first: the baseline counts whole hours.
    fill(&mut h, &r, 0, 80, |_| vec![]);
    // First burst at minute 80: new, fires.
    let steps = fill(&mut h, &r, 80, 84, burst);
    assert!(steps.iter().any(|(_, e)| !firing(e).is_empty()));
    // Stays new while it is within `over` of its first occurrence, then is part of the
    // baseline: no longer breached.
    let steps = fill(&mut h, &r, 84, 100, |_| vec![]);
    let last = &steps.last().unwrap().1;
    assert!(last
        .iter()
        .all(|e| !matches!(e.outcome, Outcome::Measured(m) if m.still_breached)));
    // Back after 1 h 31 m of absence (< 2 h): not new.
    fill(&mut h, &r, 100, 174, |_| vec![]);
    let steps = fill(&mut h, &r, 174, 180, burst);
    assert!(
        steps.iter().all(|(_, e)| firing(e).is_empty()),
        "{steps:#?}"
    );
    // Back after 2 h 15 m of absence (≥ the span): new again.
    fill(&mut h, &r, 180, 314, |_| vec![]);
    let steps = fill(&mut h, &r, 314, 320, burst);
    let fired: Vec<_> = steps
        .iter()
        .filter(|(_, e)| !firing(e).is_empty())
        .collect();
    assert!(!fired.is_empty());
    assert_eq!(
        fired[0].0,
        T + 317 * MIN,
        "bursts of 3 at 314 and 316: 6 by 317"
    );
}

#[test]
fn no_alert_without_a_baseline_with_traffic_nor_for_a_code_spread_over_other_series() {
    let r = rule("    by: [service]\n    baseline: { trailing: 2h }\n    min_samples: { events: 5, baseline: 1000 }\n");
    let mut h = history(&r);
    // 40 minutes = 800 requests of baseline: too few to call anything new.
    let steps = fill(&mut h, &r, 0, 45, |m| {
        if m >= 40 {
            vec![("overloaded", "529", 2)]
        } else {
            vec![]
        }
    });
    let (_, evals) = steps.last().unwrap();
    assert!(firing(evals).is_empty());
    assert!(evals
        .iter()
        .any(|e| e.outcome == Outcome::NoData("too few requests in the baseline span")));
    // by service: a code the other model of the service returned in the baseline is not new.
    let r = rule("    by: [service]\n    baseline: { trailing: 2h }\n    min_samples: { events: 5, baseline: 100 }\n");
    let mut h = history(&r);
    let claude = vec!["chat".to_string(), "claude".to_string()];
    minute(&mut h, &claude, T, &[("overloaded", "529", 1)]);
    let steps = fill(&mut h, &r, 1, 20, |m| {
        if m >= 15 {
            vec![("overloaded", "529", 3)]
        } else {
            vec![]
        }
    });
    assert!(steps.iter().all(|(_, e)| firing(e).is_empty()));
}

#[test]
fn rules_for_new_codes_are_validated() {
    let ctx =
        crate::detect::rules::RuleContext::for_tests(vec![crate::event::SeriesLabel::Service]);
    let errors = |body: &str| -> String {
        let text = format!("rules:\n  - name: n\n    signal: {{ metric: new_error_code }}\n    over: 10m\n{body}    severity: info\n    annotations: {{ summary: s, runbook_url: https://x }}\n");
        match crate::detect::rules::parse_file(std::path::Path::new("r.yaml"), &text, &ctx) {
            Ok(_) => String::new(),
            Err(e) => e
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join("\n"),
        }
    };
    assert_eq!(errors("    baseline: { trailing: 7d }\n"), "");
    let e = errors("    baseline: { value: 0 }\n");
    assert!(e.contains("baseline") && e.contains("trailing: 7d"), "{e}");
    let e = errors("    baseline: { trailing: 7d }\n    condition: { effect: value, above: 4 }\n");
    assert!(e.contains("remove condition"), "{e}");
    let e = errors("    baseline: { trailing: 7d }\n    test: { kind: binomial }\n");
    assert!(e.contains("remove test"), "{e}");
    let e = errors("    baseline: { trailing: 7d }\n    min_samples: { events: 0 }\n");
    assert!(e.contains("min_samples.events"), "{e}");
    // Other signals still need their condition.
    let text = "rules:\n  - name: n\n    signal: { metric: error_rate }\n    over: 10m\n    baseline: { value: 0.01 }\n    severity: info\n    annotations: { summary: s, runbook_url: https://x }\n";
    let e =
        crate::detect::rules::parse_file(std::path::Path::new("r.yaml"), text, &ctx).unwrap_err();
    assert!(e[0].to_string().contains("condition"), "{}", e[0]);
}

/// A code returned by a series that has gone quiet since (a retired prompt version) is
/// still in the baseline: the code memory outlives the window history.
#[test]
fn a_code_of_a_series_gone_quiet_is_still_known() {
    let r = rule("    by: [service]\n    baseline: { trailing: 2h }\n    min_samples: { events: 5, baseline: 100 }\n");
    let set = RuleSet {
        rules: vec![r.clone()],
        files: Vec::new(),
    };
    // Windows kept 10 minutes at full resolution and 21 minutes in all; codes 2 h 10 min.
    let mut h = History::new(MIN, 10 * MIN, set.lookback_ms() + MIN, MIN)
        .with_codes(set.code_gap_ms(), set.code_lookback_ms() + MIN);
    let old = vec!["chat".to_string(), "gpt-4o-old".to_string()];
    for m in 0..40 {
        minute(&mut h, &old, T + m * MIN, &[("tool_error", "502", 1)]);
    }
    // The old series stops at minute 40; at minute 104 another model of the service (with
    // traffic all along) returns the code.
    let steps = fill(&mut h, &r, 0, 110, |m| {
        if m >= 104 {
            vec![("tool_error", "502", 3)]
        } else {
            vec![]
        }
    });
    assert!(
        h.series().all(|l| *l != old),
        "the old series' windows are gone"
    );
    assert!(
        steps.iter().all(|(_, e)| firing(e).is_empty()),
        "{steps:#?}"
    );
    // The labels of the old model's days do not leak into the instance: `by` is service.
    assert!(steps
        .last()
        .unwrap()
        .1
        .iter()
        .all(|e| e.labels[0].1 == "chat"));
}
