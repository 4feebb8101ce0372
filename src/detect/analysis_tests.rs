//! Analyses over hand-built windows: Kayenta's scoring, the run lifecycle, A/B arms, a
//! restart in the middle of a run.

use super::*;
use crate::window::sketch::WindowSketch;

const NAMES: [&str; 4] = ["service", "request_model", "deployment", "variant"];
/// 2026-11-10T00:00:00Z.
const T: i64 = 1_794_268_800_000;
const MIN: i64 = 60_000;

fn canary(extra: &str) -> AnalysisConfig {
    let text = format!(
        "name = \"chat-canary\"\nkind = \"canary\"\nservice = \"chat\"\nduration = \"1h\"\n{extra}"
    );
    toml::from_str(&text).unwrap()
}

/// One minute of one arm: `n` requests, latencies around `latency`, judge around `judge`.
fn minute(n: u64, latency: f64, judge: f64, errors: u64, seed: u64) -> Summary {
    let mut w = WindowSketch::default();
    for i in 0..n {
        let u = ((i * 37 + seed * 11) % 100) as f64 / 100.0;
        let ev = crate::event::RequestEvent {
            latency_ms: latency * (0.5 + u),
            output_tokens: Some(200 + (u * 50.0) as u64),
            cost_usd: Some(0.002),
            status: if i < errors {
                crate::event::Status::Error
            } else {
                crate::event::Status::Ok
            },
            judge_scores: vec![(
                "faithfulness".into(),
                (judge - 0.1 + 0.2 * u).clamp(0.0, 1.0),
            )],
            ..crate::event::RequestEvent::default()
        };
        w.observe(&ev, 0, 0);
    }
    Summary::from_sketch(&w, &(0..5).collect())
}

fn labels(deployment: &str, variant: &str) -> Vec<String> {
    ["chat", "gpt-4o", deployment, variant]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Feeds `minutes` of stable (200/min) and canary (`canary_n`/min) windows from `from`,
/// ticking after each.
fn feed(
    a: &mut Analyses,
    from: i64,
    minutes: i64,
    canary_n: u64,
    canary_latency: f64,
    canary_judge: f64,
) {
    for m in 0..minutes {
        let start = from + m * MIN;
        a.observe(
            &labels("stable", ""),
            start,
            &minute(200, 800.0, 0.8, 1, m as u64),
        );
        if canary_n > 0 {
            a.observe(
                &labels("canary", ""),
                start,
                &minute(canary_n, canary_latency, canary_judge, 0, m as u64 + 7),
            );
        }
        a.advance(start + MIN);
    }
}

fn analyses(c: AnalysisConfig) -> Analyses {
    Analyses::new(vec![c], NAMES.to_vec(), MIN)
}

#[test]
fn an_unchanged_canary_passes_and_completes_after_its_duration() {
    let mut a = analyses(canary(""));
    feed(&mut a, T, 70, 40, 800.0, 0.8);
    let r = &a.reports()[0];
    assert_eq!(r.classification, RunClass::Pass, "{:?}", r.runs[0].reason);
    assert_eq!(r.score, Some(100.0));
    assert_eq!(r.status, "completed");
    assert_eq!(
        r.runs.len(),
        1,
        "the canary going on after its run starts none"
    );
    let run = &r.runs[0];
    // 60 minutes of 40 canary and 200 stable requests.
    assert_eq!(
        (run.candidate_requests, run.baseline_requests),
        (2400, 12_000)
    );
    assert!((run.traffic_share.unwrap() - 2400.0 / 14_400.0).abs() < 1e-12);
    assert!(a.take_rollbacks().is_empty());
}

#[test]
fn a_worse_canary_fails_once_and_stays_failed() {
    let mut a = analyses(canary(""));
    feed(&mut a, T, 30, 40, 1200.0, 0.7);
    let r = &a.reports()[0];
    assert_eq!(r.classification, RunClass::Fail);
    let run = &r.runs[0];
    let failed: Vec<&str> = run
        .metrics
        .iter()
        .filter(|m| m.outcome == "fail")
        .map(|m| m.metric.as_str())
        .collect();
    assert!(
        failed.contains(&"judge:faithfulness") && failed.contains(&"latency_p99"),
        "{failed:?}"
    );
    let rb = a.take_rollbacks();
    assert_eq!(rb.len(), 1);
    assert_eq!(rb[0].run_id, run.id);
    assert_eq!(rb[0].channels, vec!["rollback".to_string()]);
    // Failed is final: no second rollback, however long it runs.
    feed(&mut a, T + 30 * MIN, 20, 40, 800.0, 0.8);
    assert!(a.take_rollbacks().is_empty());
    assert_eq!(a.reports()[0].classification, RunClass::Fail);
}

#[test]
fn too_little_canary_traffic_is_not_enough_data() {
    let mut a = analyses(canary(""));
    feed(&mut a, T, 30, 2, 1200.0, 0.7);
    let r = &a.reports()[0];
    assert_eq!(r.classification, RunClass::NotEnoughData);
    assert!(
        r.runs[0].reason.contains("not enough data"),
        "{}",
        r.runs[0].reason
    );
    assert!(a.take_rollbacks().is_empty());
}

fn result(metric: &str, class: Classification) -> (MetricConfig, CompareMetric, MetricResult) {
    let m = CompareMetric::parse(metric).unwrap();
    let r = MetricResult {
        metric: metric.into(),
        higher_is_better: m.higher_is_better(),
        n_candidate: 100,
        n_baseline: 100,
        candidate: 1.0,
        baseline: 1.0,
        effect: 0.0,
        ci: None,
        p_value: 0.5,
        p_better: 0.5,
        alpha: 0.01,
        classification: class,
        verdict: crate::detect::compare::Verdict::Pass,
        note: None,
    };
    let cfg = MetricConfig {
        metric: metric.into(),
        weight: 1.0,
        direction: None,
        critical: false,
    };
    (cfg, m, r)
}

#[test]
fn scores_weigh_failing_metrics_by_direction_criticality_and_missing_data() {
    use Classification::*;
    let t = Thresholds::default();
    // A higher judge score is not a failure; a higher latency is.
    let j = judge(
        vec![result("judge:f", High), result("latency_p99", Pass)],
        t,
        false,
    );
    assert_eq!((j.score, j.classification), (Some(100.0), RunClass::Pass));
    let j = judge(
        vec![result("judge:f", Pass), result("latency_p99", High)],
        t,
        false,
    );
    assert_eq!((j.score, j.classification), (Some(50.0), RunClass::Fail));
    // Weights: 4 of 5 pass is 80, marginal.
    let mut heavy = result("judge:f", Pass);
    heavy.0.weight = 4.0;
    let j = judge(vec![heavy.clone(), result("cost", High)], t, false);
    assert_eq!(
        (j.score, j.classification),
        (Some(80.0), RunClass::Marginal)
    );
    // direction: either fails a drop in cost too.
    let mut either = result("cost", Low);
    either.0.direction = Some(Direction::Either);
    let j = judge(vec![heavy.clone(), either], t, false);
    assert_eq!(j.classification, RunClass::Marginal);
    // A critical failure fails whatever the score.
    let mut crit = result("error_rate", High);
    crit.0.critical = true;
    crit.0.weight = 0.01;
    let j = judge(vec![heavy.clone(), crit], t, false);
    assert_eq!(j.classification, RunClass::Fail);
    assert!(j.reason.contains("critical"), "{}", j.reason);
    // Missing data: not enough data, unless the rest already fails.
    let j = judge(vec![heavy.clone(), result("cost", NoData)], t, false);
    assert_eq!(
        (j.score, j.classification),
        (Some(100.0), RunClass::NotEnoughData)
    );
    let j = judge(
        vec![
            result("judge:f", Low),
            result("latency_p99", High),
            result("cost", NoData),
        ],
        t,
        false,
    );
    assert_eq!(j.classification, RunClass::Fail, "at most 33 < 75");
    assert_eq!(
        judge(vec![], t, false).classification,
        RunClass::NotEnoughData
    );
}

#[test]
fn a_run_ends_when_the_canary_stops_and_a_new_rollout_starts_a_new_run() {
    let mut a = analyses(canary(""));
    feed(&mut a, T, 20, 40, 800.0, 0.8);
    // 40 quiet minutes: the run ends after 30 of them.
    feed(&mut a, T + 20 * MIN, 40, 0, 0.0, 0.0);
    let r = &a.reports()[0];
    assert_eq!((r.status.as_str(), r.runs.len()), ("ended", 1));
    assert_eq!(r.runs[0].classification, RunClass::Pass);
    feed(&mut a, T + 60 * MIN, 5, 40, 800.0, 0.8);
    let r = &a.reports()[0];
    assert_eq!((r.status.as_str(), r.runs.len()), ("running", 2));
    assert_eq!(r.runs[0].started_at, crate::time::rfc3339(T + 60 * MIN));
}

#[test]
fn a_restart_mid_run_judges_what_an_uninterrupted_run_judges() {
    let mut whole = analyses(canary(""));
    feed(&mut whole, T, 40, 40, 1000.0, 0.76);
    let mut first = analyses(canary(""));
    feed(&mut first, T, 25, 40, 1000.0, 0.76);
    let snap: AnalysesSnapshot =
        serde_json::from_str(&serde_json::to_string(&first.snapshot()).unwrap()).unwrap();
    let mut second = analyses(canary(""));
    // The rebuild feeds stored windows from before the snapshot again: they are ignored.
    for m in 15..25 {
        second.observe(
            &labels("stable", ""),
            T + m * MIN,
            &minute(200, 800.0, 0.8, 1, m as u64),
        );
    }
    second.restore(snap, None);
    feed(&mut second, T + 25 * MIN, 15, 40, 1000.0, 0.76);
    assert_eq!(whole.reports(), second.reports());
    assert_eq!(
        whole.take_rollbacks().len(),
        first.take_rollbacks().len() + second.take_rollbacks().len()
    );
}

#[test]
fn each_variant_is_judged_against_the_control() {
    let c: AnalysisConfig = toml::from_str(
        "name = \"chat-ab\"\nkind = \"ab\"\nservice = \"chat\"\nduration = \"1h\"\n\
         [[metrics]]\nmetric = \"judge:faithfulness\"\nweight = 3\n\
         [[metrics]]\nmetric = \"error_rate\"\n[[metrics]]\nmetric = \"latency_p99\"\n",
    )
    .unwrap();
    let mut a = analyses(c);
    for m in 0..30 {
        let start = T + m * MIN;
        let s = m as u64;
        a.observe(
            &labels("stable", "control"),
            start,
            &minute(100, 800.0, 0.8, 0, s),
        );
        a.observe(
            &labels("stable", "b"),
            start,
            &minute(100, 800.0, 0.8, 0, s + 3),
        );
        a.observe(
            &labels("stable", "c"),
            start,
            &minute(100, 800.0, 0.66, 0, s + 5),
        );
        a.advance(start + MIN);
    }
    let r = &a.reports()[0];
    assert_eq!(r.classification, RunClass::Fail);
    let by_arm: BTreeMap<&str, RunClass> = r
        .runs
        .iter()
        .map(|run| (run.candidate.as_str(), run.classification))
        .collect();
    assert_eq!(
        by_arm,
        BTreeMap::from([("b", RunClass::Pass), ("c", RunClass::Fail)])
    );
    let rb = a.take_rollbacks();
    assert_eq!(rb.len(), 1);
    assert_eq!(
        (rb[0].candidate.as_str(), rb[0].baseline.as_str()),
        ("c", "control")
    );
}

#[test]
fn configs_are_checked_against_the_series_labels() {
    let e = canary("group_by = [\"route\"]")
        .validate(0, &NAMES)
        .unwrap_err();
    assert_eq!(e.field, "group_by");
    let e = canary("baseline = \"canary\"")
        .validate(0, &NAMES)
        .unwrap_err();
    assert_eq!(e.field, "baseline");
    let e = canary("[[metrics]]\nmetric = \"latency\"\n")
        .validate(0, &NAMES)
        .unwrap_err();
    assert!(e.message.contains("latency_p99"), "{}", e.message);
    let e = canary("thresholds = { pass = 70, marginal = 80 }")
        .validate(0, &NAMES)
        .unwrap_err();
    assert_eq!(e.field, "thresholds");
    let e = canary("")
        .validate(0, &["service", "request_model"])
        .unwrap_err();
    assert!(e.message.contains("\"deployment\""), "{}", e.message);
    assert!(toml::from_str::<AnalysisConfig>(
        "name = \"x\"\nkind = \"canary\"\nservice = \"s\"\nwindow = \"1h\"\n"
    )
    .is_err());
    canary("").validate(0, &NAMES).unwrap();
}

#[test]
fn a_failed_run_ends_and_the_rollout_after_the_rollback_is_judged_afresh() {
    let mut a = analyses(canary(""));
    feed(&mut a, T, 20, 40, 1200.0, 0.7);
    let r = &a.reports()[0];
    assert_eq!(
        (r.classification, r.status.as_str()),
        (RunClass::Fail, "ended")
    );
    let failed = r.runs[0].failed_at.clone().unwrap();
    // Three Fail judgements in a row before it fails: the first two show Marginal.
    assert_eq!(a.take_rollbacks().len(), 1);
    // The bad canary keeps running for a while: still the failed run, no new rollback.
    feed(&mut a, T + 20 * MIN, 5, 40, 1200.0, 0.7);
    assert_eq!(
        (a.reports()[0].runs.len(), a.take_rollbacks().len()),
        (1, 0)
    );
    // Rolled back (two quiet minutes), then a fixed canary: a new run that passes.
    feed(&mut a, T + 25 * MIN, 2, 0, 0.0, 0.0);
    feed(&mut a, T + 27 * MIN, 30, 40, 800.0, 0.8);
    let r = &a.reports()[0];
    assert_eq!(r.runs.len(), 2);
    assert_eq!(r.runs[1].failed_at.as_deref(), Some(failed.as_str()));
    assert_eq!(
        (r.classification, r.status.as_str()),
        (RunClass::Pass, "running")
    );
    assert!(a.take_rollbacks().is_empty());
}

#[test]
fn one_failing_look_is_not_a_fail() {
    let one = canary("fail_after = 1");
    let three = canary("");
    let first_fail = |c: AnalysisConfig| {
        let mut a = analyses(c);
        feed(&mut a, T, 20, 40, 1200.0, 0.7);
        a.reports()[0].runs[0].failed_at.clone().unwrap()
    };
    let (f1, f3) = (first_fail(one), first_fail(three));
    let ms = |s: &str| {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    };
    assert_eq!(ms(&f3) - ms(&f1), 2 * MIN, "{f1} {f3}");
}

#[test]
fn a_state_from_before_analyses_does_not_replay_old_rollouts() {
    let mut a = analyses(canary(""));
    // Restored from a detector state without analyses, evaluated up to T + 30 min.
    a.restore(AnalysesSnapshot::default(), Some(T + 30 * MIN));
    // The rebuild feeds the stored windows of a canary that failed back then.
    feed(&mut a, T, 30, 40, 1200.0, 0.7);
    assert!(a.take_rollbacks().is_empty());
    assert_eq!(a.reports()[0].status, "idle");
}

#[test]
fn a_canary_on_another_model_says_there_is_no_baseline_in_its_group() {
    let mut a = analyses(canary(""));
    for m in 0..10 {
        let start = T + m * MIN;
        a.observe(
            &labels("stable", ""),
            start,
            &minute(200, 800.0, 0.8, 1, m as u64),
        );
        let mut l = labels("canary", "");
        l[1] = "gpt-4.1".into();
        a.observe(&l, start, &minute(40, 800.0, 0.8, 0, m as u64));
        a.advance(start + MIN);
    }
    let r = &a.reports()[0];
    assert_eq!(r.classification, RunClass::NotEnoughData);
    assert!(
        r.reason
            .contains("no stable traffic with request_model=gpt-4.1"),
        "{}",
        r.reason
    );
}
