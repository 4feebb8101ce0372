//! "What changed" scenarios through the daemon's pipeline (decoder, windows, detector with
//! every shipped rule of `rules/`, alert state), on simulated event time with fixed seeds;
//! each states its detection delay from the injected change. The harness is the registry
//! scenarios' (`registry_scenarios::PipeSim`).

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use driftwatch::event::RequestEvent;
use driftwatch::traffic::scenario::{Traffic, T0};

use crate::registry_scenarios::{label, traffic, PipeSim};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;

/// Two hours of `gpt-4o` answered as `gpt-4o-2024-08-06`, then the provider swaps in
/// `gpt-4o-2024-11-20` — 30 % slower, 20 % longer answers, judge mean 0.80 → 0.72 — for 25
/// minutes. One `silent_model_update` alert names both models, when the new one took over
/// and what changed metric by metric; `claude-sonnet-4` on the same service raises nothing.
#[test]
fn a_provider_swapping_the_model_behind_the_name_raises_one_alert_with_before_and_after() {
    let mut sim = PipeSim::new(51, &[]);
    let change = T0 + 2 * HOUR;
    let t = move |t: i64| -> Vec<Traffic> {
        let mut a = traffic("chat", "gpt-4o", 4.0);
        if t >= change {
            a.latency_median_ms *= 1.3;
            a.judge_mean = 0.72;
        }
        vec![a, traffic("chat", "claude-sonnet-4", 2.0)]
    };
    let shape = move |ev: &mut RequestEvent, t: i64, rng: &mut ChaCha8Rng| {
        let swapped = ev.request_model == "gpt-4o" && t >= change;
        ev.response_model = Some(
            match (ev.request_model.as_str(), swapped) {
                ("gpt-4o", false) => "gpt-4o-2024-08-06",
                ("gpt-4o", true) => "gpt-4o-2024-11-20",
                _ => "claude-sonnet-4-20250514",
            }
            .to_string(),
        );
        let base = if swapped { 240.0 } else { 200.0 };
        ev.output_tokens = Some((base * (0.7 + 0.6 * rng.random::<f64>())) as u64);
    };
    sim.run(2 * HOUR / 1000 + 25 * 60, &t, &shape);
    let fired = sim.fired("silent_model_update");
    assert_eq!(fired.len(), 1, "{:#?}", sim.firing());
    let a = fired[0];
    assert_eq!(label(a, "request_model"), "gpt-4o");
    assert_eq!(a.details["before"], "gpt-4o-2024-08-06");
    assert_eq!(a.details["after"], "gpt-4o-2024-11-20");
    assert!(a.summary.contains("gpt-4o-2024-11-20") && a.summary.contains("gpt-4o-2024-08-06"));
    // The new model took over in the window of the change.
    assert_eq!(a.onset_ms, Some(change), "{:?}", a.details);
    assert_eq!(
        a.details["took_over_at"],
        driftwatch::time::rfc3339(change),
        "{:?}",
        a.details
    );
    let delay = sim.delay_s(a, change);
    println!(
        "silent model update: fired {delay} s after the swap; shares {}\n{}",
        a.details["shares"], a.details["comparison"]
    );
    assert!(delay <= 180.0, "{delay} s");
    // Both sides over the same span, metric by metric, with the tests' verdicts.
    let comparison = &a.details["comparison"];
    for (metric, verdict) in [
        ("latency_p50", "regression"),
        ("output_tokens", "regression"),
        ("judge:faithfulness", "regression"),
        ("error_rate", "pass"),
    ] {
        let line = comparison
            .lines()
            .find(|l| l.starts_with(&format!("{metric}:")))
            .unwrap_or_else(|| panic!("no {metric} in {comparison}"));
        assert!(line.ends_with(&format!("{verdict})")), "{line}");
        assert!(line.contains("p="), "{line}");
    }
    assert!(
        a.description.contains("judge:faithfulness"),
        "{}",
        a.description
    );
    // Only this alert on the changed series; nothing on claude.
    assert!(
        sim.transitions
            .iter()
            .all(|t| label(t, "request_model") != "claude-sonnet-4"),
        "{:#?}",
        sim.firing()
    );
}
