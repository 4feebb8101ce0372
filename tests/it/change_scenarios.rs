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
        // The new snapshot comes with its own backend fingerprint: one change, one alert.
        if ev.request_model == "gpt-4o" {
            ev.system_fingerprint = Some(if swapped { "fp_b1" } else { "fp_a1" }.into());
        }
    };
    sim.run(2 * HOUR / 1000 + 25 * 60, &t, &shape);
    let fired = sim.fired("silent_model_update");
    assert_eq!(fired.len(), 1, "{:#?}", sim.firing());
    assert!(
        sim.fired("silent_fingerprint_change").is_empty(),
        "a new fingerprint with a new model is the model's update: {:#?}",
        sim.firing()
    );
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
    assert_verdicts(
        &a.details["comparison"],
        &[
            ("latency_p50", "regression"),
            ("output_tokens", "regression"),
            ("judge:faithfulness", "regression"),
            ("error_rate", "pass"),
        ],
    );
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

/// Each metric's line of a before/after comparison ends with its verdict and has a p-value.
fn assert_verdicts(comparison: &str, want: &[(&str, &str)]) {
    for (metric, verdict) in want {
        let line = comparison
            .lines()
            .find(|l| l.starts_with(&format!("{metric}:")))
            .unwrap_or_else(|| panic!("no {metric} in {comparison}"));
        assert!(line.ends_with(&format!("{verdict})")), "{line}");
        assert!(line.contains("p="), "{line}");
    }
}

/// Two hours of `gpt-4o-mini` answered as `gpt-4o-mini-2024-07-18` by two backends at once
/// (`fp_0ba0d124f1` 70 %, `fp_f85bea6784` 30 %, as OpenAI serves), then the provider moves it
/// to a new backend, `fp_72ed7ab54c` — same response model, answers 15 % longer and judge
/// mean 0.80 → 0.74 — for 25 minutes. One `silent_fingerprint_change` alert names both
/// fingerprints, the unchanged response model, when the new one took over and what changed;
/// `silent_model_update` stays quiet (the model name did not change), and so does the
/// two-backend mix before the change.
#[test]
fn a_new_backend_fingerprint_under_the_same_model_raises_one_alert_with_before_and_after() {
    let mut sim = PipeSim::new(57, &[]);
    let change = T0 + 2 * HOUR;
    let t = move |t: i64| -> Vec<Traffic> {
        let mut a = traffic("chat", "gpt-4o-mini", 4.0);
        if t >= change {
            a.judge_mean = 0.74;
        }
        vec![a]
    };
    let shape = move |ev: &mut RequestEvent, t: i64, rng: &mut ChaCha8Rng| {
        ev.response_model = Some("gpt-4o-mini-2024-07-18".into());
        let moved = t >= change;
        let fp = match (moved, rng.random_bool(0.7)) {
            (true, _) => "fp_72ed7ab54c",
            (false, true) => "fp_0ba0d124f1",
            (false, false) => "fp_f85bea6784",
        };
        ev.system_fingerprint = Some(fp.into());
        let base = if moved { 230.0 } else { 200.0 };
        ev.output_tokens = Some((base * (0.7 + 0.6 * rng.random::<f64>())) as u64);
    };
    sim.run(2 * HOUR / 1000 + 25 * 60, &t, &shape);
    let fired = sim.fired("silent_fingerprint_change");
    assert_eq!(fired.len(), 1, "{:#?}", sim.firing());
    let a = fired[0];
    assert_eq!(a.details["before"], "fp_0ba0d124f1");
    assert_eq!(a.details["after"], "fp_72ed7ab54c");
    assert_eq!(a.details["response_model"], "gpt-4o-mini-2024-07-18");
    assert!(
        a.summary.contains("fp_72ed7ab54c")
            && a.summary.contains("fp_0ba0d124f1")
            && a.summary.contains("gpt-4o-mini-2024-07-18"),
        "{}",
        a.summary
    );
    assert_eq!(a.onset_ms, Some(change), "{:?}", a.details);
    let delay = sim.delay_s(a, change);
    println!(
        "silent backend update: fired {delay} s after the move; shares {}\n{}",
        a.details["shares"], a.details["comparison"]
    );
    assert!(delay <= 180.0, "{delay} s");
    assert_verdicts(
        &a.details["comparison"],
        &[
            ("output_tokens", "regression"),
            ("judge:faithfulness", "regression"),
            ("error_rate", "pass"),
        ],
    );
    assert!(
        sim.fired("silent_model_update").is_empty(),
        "{:#?}",
        sim.firing()
    );
    // Nothing before the change: the two-backend mix is the baseline, not news.
    assert!(
        sim.transitions.iter().all(|t| t.at_ms >= change),
        "{:#?}",
        sim.transitions
    );
}

/// The backend mix of the fingerprint scenario for `t` (`moved` from `change` on).
fn backends(change: i64) -> impl Fn(&mut RequestEvent, i64, &mut ChaCha8Rng) {
    move |ev, t, rng| {
        ev.response_model = Some("gpt-4o-mini-2024-07-18".into());
        let fp = match (t >= change, rng.random_bool(0.7)) {
            (true, _) => "fp_72ed7ab54c",
            (false, true) => "fp_0ba0d124f1",
            (false, false) => "fp_f85bea6784",
        };
        ev.system_fingerprint = Some(fp.into());
    }
}

/// The fingerprints a series had are read back from `windows` on restart: two hours on the
/// two-backend mix are written to Parquet (DuckDB reads the per-window
/// `system_fingerprint_counts`: every request counted under its fingerprint), then a daemon
/// resumed on that data directory sees the new backend take over and alerts with the
/// fingerprint it replaced — known only from the stored windows.
#[test]
fn fingerprints_written_before_a_restart_are_the_baseline_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let change = T0 + 2 * HOUR;
    let t = |_t: i64| vec![traffic("chat", "gpt-4o-mini", 4.0)];
    let mut before = PipeSim::writing(58, &data, T0, "before");
    before.run(2 * HOUR / 1000, &t, &backends(change));
    before.finish();
    assert!(before.transitions.is_empty(), "{:#?}", before.firing());
    drop(before);
    let script = r#"
import duckdb, sys
w = f"read_parquet('{sys.argv[1]}/windows/**/*.parquet', hive_partitioning = true)"
print(duckdb.sql(f"SELECT sum(event_count) FROM {w} WHERE correction_after IS NULL").fetchall()[0][0])
for k, n in duckdb.sql(f"SELECT e.key, sum(e.value) FROM (SELECT unnest(map_entries(system_fingerprint_counts)) AS e FROM {w}) GROUP BY ALL ORDER BY ALL").fetchall():
    print(k, n)
"#;
    let run = std::process::Command::new("python3")
        .args(["-c", script, data.to_str().unwrap()])
        .output()
        .expect("python3 with duckdb (tests/requirements.txt)");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let out = String::from_utf8(run.stdout).unwrap();
    let mut lines = out.lines();
    let events: u64 = lines.next().unwrap().trim().parse().unwrap();
    let per_fp: Vec<(String, u64)> = lines
        .map(|l| {
            let (k, n) = l.split_once(' ').unwrap();
            (k.to_string(), n.trim().parse().unwrap())
        })
        .collect();
    assert_eq!(
        per_fp.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(),
        ["fp_0ba0d124f1", "fp_f85bea6784"],
        "{out}"
    );
    assert_eq!(per_fp.iter().map(|(_, n)| n).sum::<u64>(), events, "{out}");
    assert!(per_fp[0].1 > 2 * per_fp[1].1, "{out}");

    let mut after = PipeSim::writing(59, &data, change, "after");
    after.run(25 * 60, &t, &backends(change));
    let fired = after.fired("silent_fingerprint_change");
    assert_eq!(fired.len(), 1, "{:#?}", after.firing());
    assert_eq!(fired[0].details["before"], "fp_0ba0d124f1");
    assert_eq!(fired[0].details["after"], "fp_72ed7ab54c");
    println!(
        "silent backend update after a restart: fired {} s after the move",
        after.delay_s(fired[0], change)
    );
}

/// (code_field, code) of every `new_error_code` alert that fired, sorted.
fn fired_codes(sim: &PipeSim) -> Vec<(&str, &str)> {
    let mut codes: Vec<(&str, &str)> = sim
        .fired("new_error_code")
        .iter()
        .map(|a| (label(a, "code_field"), label(a, "code")))
        .collect();
    codes.sort();
    codes
}

/// What `chat/gpt-4o` returns: its usual errors (`server_error`/500 from the generator, a
/// `rate_limit`/429 on 0.2 % of requests), and in `bursts` a new refusal,
/// `content_filter`/400, on 2 % of requests.
fn error_codes(bursts: Vec<(i64, i64)>) -> impl Fn(&mut RequestEvent, i64, &mut ChaCha8Rng) {
    move |ev, t, rng| {
        ev.response_model = Some(format!("{}-dated", ev.request_model));
        if ev.status == driftwatch::event::Status::Error {
            ev.http_status = Some(500);
            return;
        }
        ev.http_status = Some(200);
        if rng.random_bool(0.002) {
            ev.status = driftwatch::event::Status::Error;
            ev.error_type = Some("rate_limit".into());
            ev.http_status = Some(429);
        } else if bursts.iter().any(|(a, b)| t >= *a && t < *b) && rng.random_bool(0.02) {
            ev.status = driftwatch::event::Status::Error;
            ev.error_type = Some("content_filter".into());
            ev.http_status = Some(400);
            ev.judge_scores.clear();
        }
    }
}

/// Two and a half hours of `chat/gpt-4o` with its usual errors, then the provider refuses
/// 2 % of requests with a new `content_filter` (HTTP 400) for 5 minutes, and again 40
/// minutes later. The first burst raises one `new_error_code` alert per code — error_type
/// `content_filter` and http_status `400` — with the count and the first-seen time; the
/// known codes (server_error/500, rate_limit/429) raise none, nor does the second burst (the
/// codes were seen less than 7 days before).
#[test]
fn a_new_error_code_raises_one_alert_per_code_with_its_count_and_first_seen_time() {
    let mut sim = PipeSim::new(61, &[]);
    let first = T0 + 150 * MIN;
    let second = first + 45 * MIN;
    let t = |_t: i64| vec![traffic("chat", "gpt-4o", 4.0)];
    let shape = error_codes(vec![(first, first + 5 * MIN), (second, second + 5 * MIN)]);
    sim.run((second + 20 * MIN - T0) / 1000, &t, &shape);
    let fired = sim.fired("new_error_code");
    assert_eq!(
        fired_codes(&sim),
        vec![("error_type", "content_filter"), ("http_status", "400")],
        "{:#?}",
        sim.firing()
    );
    for a in &fired {
        assert!(a.at_ms < second, "the second burst fired again: {a:#?}");
        let count: u64 = a.details["count"].parse().unwrap();
        assert!(count >= 5, "{:?}", a.details);
        let first_seen = a.onset_ms.expect("an onset");
        assert_eq!(
            a.details["first_seen"],
            driftwatch::time::rfc3339(first_seen)
        );
        assert!(
            (first..first + 2 * MIN).contains(&first_seen),
            "{:?}",
            a.details
        );
        assert!(
            a.summary.contains(label(a, "code"))
                && a.summary.contains("not seen in the previous 7d"),
            "{}",
            a.summary
        );
        let delay = sim.delay_s(a, first);
        println!(
            "new error code {}={}: fired {delay} s after the burst began, count {} at {}",
            label(a, "code_field"),
            label(a, "code"),
            a.details["count"],
            a.details["share"]
        );
        assert!(delay <= 180.0, "{delay} s");
    }
    // Resolved once part of the baseline, before the second burst.
    let resolved = sim
        .transitions
        .iter()
        .filter(|t| {
            t.rule == "new_error_code" && t.to == driftwatch::detect::alerts::AlertState::Resolved
        })
        .count();
    assert_eq!(resolved, 2, "{:#?}", sim.transitions);
}

/// The memory of codes survives a restart through the tables: two hours with
/// `content_filter` errors are written to Parquet, then, 36 hours later, two hours without
/// them, and everything is rolled up into `windows_1h` (`driftwatch compact`). On day 3 a
/// daemon resumed on that data directory sees `content_filter` again — not new: seen within
/// 7 days, known only from `windows_1h` rows older than every other rule's lookback (the
/// 24 h of the budget rules) — and a `tool_error`/502 it never saw: new, one alert per code.
#[test]
fn codes_seen_before_a_restart_are_known_from_the_rolled_up_windows() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let t = |_t: i64| vec![traffic("chat", "gpt-4o", 4.0)];
    let mut day0 = PipeSim::writing(62, &data, T0, "day0");
    day0.run(
        2 * HOUR / 1000,
        &t,
        &error_codes(vec![(T0 + 20 * MIN, T0 + 30 * MIN)]),
    );
    day0.finish();
    assert_eq!(
        day0.fired("new_error_code").len(),
        0,
        "no baseline hour yet"
    );
    drop(day0);
    let mut day1 = PipeSim::writing(64, &data, T0 + 36 * HOUR, "day1");
    day1.run(2 * HOUR / 1000, &t, &error_codes(vec![]));
    day1.finish();
    drop(day1);
    crate::support::compact_now(&data);
    assert!(data.join("windows_1h").exists());

    let later = T0 + 3 * 24 * HOUR;
    let mut day3 = PipeSim::writing(63, &data, later, "day3");
    let again = error_codes(vec![(later + 10 * MIN, later + 20 * MIN)]);
    let shape = move |ev: &mut RequestEvent, t: i64, rng: &mut ChaCha8Rng| {
        again(ev, t, rng);
        if ev.status == driftwatch::event::Status::Ok
            && (later + 10 * MIN..later + 20 * MIN).contains(&t)
            && rng.random_bool(0.02)
        {
            ev.status = driftwatch::event::Status::Error;
            ev.error_type = Some("tool_error".into());
            ev.http_status = Some(502);
        }
    };
    day3.run(30 * MIN / 1000, &t, &shape);
    assert_eq!(
        fired_codes(&day3),
        vec![("error_type", "tool_error"), ("http_status", "502")],
        "{:#?}",
        day3.firing()
    );
}

/// Every request of `chat` belongs to prompt `answer`, answered by a dated snapshot.
fn prompt_answer(ev: &mut RequestEvent, _t: i64, _rng: &mut ChaCha8Rng) {
    ev.prompt_id = Some("answer".into());
    ev.response_model = Some(format!("{}-dated", ev.request_model));
}

fn version(v: &'static str, rate: f64) -> Traffic {
    let mut t = traffic("chat", "gpt-4o", rate);
    t.prompt_version = v;
    t
}

/// Prompt `answer` v12 for 90 minutes (judge 0.80), then v13 replaces it, scoring 10 %
/// lower: one `prompt_version_regression` alert names v13, v12 ("replacement") and the judge
/// score, and nothing else regressed.
#[test]
fn a_prompt_version_that_replaces_a_better_one_is_named_with_its_regressed_metrics() {
    let mut sim = PipeSim::new(71, &[]);
    let switch = T0 + 90 * MIN;
    let t = move |t: i64| {
        if t < switch {
            vec![version("v12", 4.0)]
        } else {
            let mut v = version("v13", 4.0);
            v.judge_mean = 0.72;
            vec![v]
        }
    };
    sim.run((switch + 20 * MIN - T0) / 1000, &t, &prompt_answer);
    let fired = sim.fired("prompt_version_regression");
    assert_eq!(fired.len(), 1, "{:#?}", sim.firing());
    let a = fired[0];
    assert_eq!(label(a, "prompt_version"), "v13");
    assert_eq!(label(a, "baseline_version"), "v12");
    assert_eq!(label(a, "prompt_id"), "answer");
    assert_eq!(a.details["mode"], "replacement");
    assert_eq!(a.onset_ms, Some(switch));
    let regressed = &a.details["regressed"];
    assert!(regressed.starts_with("judge:faithfulness -"), "{regressed}");
    assert!(
        !regressed.contains(','),
        "only the judge score: {regressed}"
    );
    assert!(
        a.summary.contains("v13") && a.summary.contains("v12"),
        "{}",
        a.summary
    );
    let delay = sim.delay_s(a, switch);
    println!(
        "prompt regression (replacement): fired {delay} s after v13 took over: {regressed}\n{}",
        a.details["comparison"]
    );
    assert!(delay <= 300.0, "{delay} s");
}

/// A rollout: from minute 90, v13 takes a quarter of the traffic alongside v12 and answers
/// 40 % slower. The alert compares both over the same span ("overlap") and names the P99
/// latency; the judge scores, equal, do not regress. A v2 of another service's prompt,
/// equal to its v1, raises nothing.
#[test]
fn a_rollout_that_is_slower_is_caught_over_the_same_span_and_an_equal_version_is_not() {
    let mut sim = PipeSim::new(72, &[]);
    let start = T0 + 90 * MIN;
    let t = move |t: i64| {
        let mut out = vec![version("v12", 6.0)];
        let mut other = traffic("search", "gpt-4o", 3.0);
        if t >= start {
            out[0].rate = 4.5;
            let mut v = version("v13", 1.5);
            v.latency_median_ms *= 1.4;
            out.push(v);
            other.prompt_version = "v2";
        }
        out.push(other);
        out
    };
    sim.run((start + 40 * MIN - T0) / 1000, &t, &prompt_answer);
    let fired = sim.fired("prompt_version_regression");
    assert_eq!(fired.len(), 1, "{:#?}", sim.firing());
    let a = fired[0];
    assert_eq!(label(a, "service"), "chat");
    assert_eq!(label(a, "prompt_version"), "v13");
    assert_eq!(a.details["mode"], "overlap");
    let regressed = &a.details["regressed"];
    assert!(regressed.contains("latency_p99 +"), "{regressed}");
    assert!(!regressed.contains("judge"), "{regressed}");
    let delay = sim.delay_s(a, start);
    println!(
        "prompt regression (rollout): fired {delay} s after v13 took 25 %: {regressed}\n{}",
        a.details["comparison"]
    );
    assert!(delay <= 1200.0, "{delay} s");
}

/// What a request of the drift scenarios looks like: input tokens around `input_median`
/// (log-normal, σ 0.5; `pasted` of requests carry a pasted document around 6000 tokens),
/// answers around `output_median`, a query-type mix and the share stopped by the length
/// limit.
#[derive(Clone, Copy)]
struct Mix {
    input_median: f64,
    pasted: f64,
    output_median: f64,
    /// Shares of billing, how-to, troubleshooting, account.
    queries: [f64; 4],
    truncated: f64,
}

const USUAL: Mix = Mix {
    input_median: 600.0,
    pasted: 0.0,
    output_median: 200.0,
    queries: [0.4, 0.3, 0.2, 0.1],
    truncated: 0.01,
};

fn shaped(mix: Mix, ev: &mut RequestEvent, rng: &mut ChaCha8Rng) {
    use rand_distr::{Distribution, LogNormal};
    let draw = |median: f64, rng: &mut ChaCha8Rng| {
        LogNormal::new(median.ln(), 0.5)
            .map(|d| d.sample(rng))
            .unwrap_or(median)
            .max(1.0) as u64
    };
    let median = if rng.random_bool(mix.pasted) {
        6000.0
    } else {
        mix.input_median
    };
    ev.input_tokens = Some(draw(median, rng));
    ev.output_tokens = Some(draw(mix.output_median, rng));
    ev.prompt_chars = ev.input_tokens.map(|t| t * 4);
    let u: f64 = rng.random();
    let names = ["billing", "how-to", "troubleshooting", "account"];
    let mut acc = 0.0;
    let q = names
        .iter()
        .zip(mix.queries)
        .find(|(_, p)| {
            acc += p;
            u < acc
        })
        .map_or("account", |(n, _)| n);
    ev.query_type = Some(q.to_string());
    ev.finish_reason = Some(
        if rng.random_bool(mix.truncated) {
            "length"
        } else {
            "stop"
        }
        .into(),
    );
    ev.response_model = Some(format!("{}-dated", ev.request_model));
}

const DRIFT_RULES: [&str; 4] = [
    "input_tokens_shift",
    "query_type_mix_shift",
    "output_tokens_shift",
    "finish_reason_mix_shift",
];

/// Six and a half hours of `chat/gpt-4o` at its usual mix, then a prompt-injection wave: a
/// quarter of the requests paste a document of about 6000 tokens. `input_tokens_shift`
/// fires (PSI above 0.2); the other drift rules stay quiet.
#[test]
fn a_wave_of_pasted_documents_shifts_the_input_distribution() {
    let mut sim = PipeSim::new(81, &[]);
    let onset = T0 + 390 * MIN;
    let t = |_t: i64| vec![traffic("chat", "gpt-4o-mini", 4.0)];
    let shape = move |ev: &mut RequestEvent, t: i64, rng: &mut ChaCha8Rng| {
        let mix = if t >= onset {
            Mix {
                pasted: 0.25,
                ..USUAL
            }
        } else {
            USUAL
        };
        shaped(mix, ev, rng);
    };
    sim.run((onset + 30 * MIN - T0) / 1000, &t, &shape);
    let fired = sim.fired("input_tokens_shift");
    assert_eq!(fired.len(), 1, "{:#?}", sim.firing());
    let a = fired[0];
    assert_eq!(label(a, "request_model"), "gpt-4o-mini");
    let psi = a.numbers.value.unwrap();
    assert!(psi > 0.2, "{:?}", a.numbers);
    let delay = sim.delay_s(a, onset);
    println!("input drift: input_tokens_shift {delay} s after the wave began, PSI {psi:.2}");
    assert!(delay <= 900.0, "{delay} s");
    for rule in &DRIFT_RULES[1..] {
        assert!(sim.fired(rule).is_empty(), "{rule}: {:#?}", sim.firing());
    }
}

/// A shifted user base: after six and a half hours the queries are mostly troubleshooting,
/// the answers twice as long and 15 % of them cut by the length limit. The query-type,
/// output-token and finish-reason drift rules fire; the input distribution, unchanged, does
/// not.
#[test]
fn a_shifted_user_base_moves_the_query_mix_and_the_answers() {
    let mut sim = PipeSim::new(82, &[]);
    let onset = T0 + 390 * MIN;
    let t = |_t: i64| vec![traffic("chat", "gpt-4o-mini", 4.0)];
    let shape = move |ev: &mut RequestEvent, t: i64, rng: &mut ChaCha8Rng| {
        let mix = if t >= onset {
            Mix {
                queries: [0.15, 0.15, 0.6, 0.1],
                output_median: 400.0,
                truncated: 0.15,
                ..USUAL
            }
        } else {
            USUAL
        };
        shaped(mix, ev, rng);
    };
    sim.run((onset + 30 * MIN - T0) / 1000, &t, &shape);
    for rule in &DRIFT_RULES[1..] {
        let fired = sim.fired(rule);
        assert_eq!(fired.len(), 1, "{rule}: {:#?}", sim.firing());
        let delay = sim.delay_s(fired[0], onset);
        println!(
            "output drift: {rule} {delay} s after the shift, distance {:.3}",
            fired[0].numbers.value.unwrap()
        );
        assert!(delay <= 1200.0, "{rule}: {delay} s");
    }
    assert!(
        sim.fired("input_tokens_shift").is_empty(),
        "{:#?}",
        sim.firing()
    );
}

/// Eight hours of the usual mix (noisy, log-normal sizes) on two services raise no drift
/// alert, nor any other.
#[test]
fn the_usual_mix_for_eight_hours_raises_no_drift_alert() {
    let mut sim = PipeSim::new(83, &[]);
    let t = |_t: i64| {
        vec![
            traffic("chat", "gpt-4o-mini", 4.0),
            traffic("search", "claude-sonnet-4", 2.0),
        ]
    };
    let shape = |ev: &mut RequestEvent, _t: i64, rng: &mut ChaCha8Rng| shaped(USUAL, ev, rng);
    sim.run(8 * HOUR / 1000, &t, &shape);
    assert!(sim.firing().is_empty(), "{:#?}", sim.firing());
}
