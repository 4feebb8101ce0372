//! PagerDuty Events API v2 bodies
//! (<https://developer.pagerduty.com/docs/events-api-v2/trigger-events/>): `trigger` when an
//! alert fires and `resolve` when it resolves, with the alert's fingerprint as `dedup_key` so
//! PagerDuty folds repeats into one incident and closes the right one.

use serde_json::{json, Value};

use crate::detect::alerts::{AlertState, Transition};
use crate::detect::rules::Severity;

/// PagerDuty truncates longer summaries; we cut first, on a character boundary.
pub const SUMMARY_MAX: usize = 1024;

/// driftwatch severity → PagerDuty severity.
pub fn severity(s: Severity) -> &'static str {
    match s {
        Severity::Page => "critical",
        Severity::Alert => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn cut(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// The event for a transition, or `None` for transitions PagerDuty does not hear about
/// (pending, inactive). `source` names this driftwatch (e.g. its host).
pub fn event(routing_key: &str, source: &str, t: &Transition) -> Option<Value> {
    let action = match t.to {
        AlertState::Firing => "trigger",
        AlertState::Resolved => "resolve",
        _ => return None,
    };
    if action == "resolve" {
        return Some(json!({
            "routing_key": routing_key,
            "event_action": "resolve",
            "dedup_key": t.fingerprint,
        }));
    }
    let labels: serde_json::Map<String, Value> = t
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let window = format!(
        "{} .. {}",
        chrono::DateTime::from_timestamp_millis(t.range_start_ms)
            .map(|d| d.to_rfc3339())
            .unwrap_or_default(),
        chrono::DateTime::from_timestamp_millis(t.range_end_ms)
            .map(|d| d.to_rfc3339())
            .unwrap_or_default()
    );
    let mut links = Vec::new();
    if !t.runbook_url.is_empty() {
        links.push(json!({"href": t.runbook_url, "text": "Runbook"}));
    }
    let summary = if t.summary.is_empty() {
        format!("{} fired", t.rule)
    } else {
        t.summary.clone()
    };
    Some(json!({
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": t.fingerprint,
        "payload": {
            "summary": cut(&summary, SUMMARY_MAX),
            "source": source,
            "severity": severity(t.severity),
            "timestamp": chrono::DateTime::from_timestamp_millis(t.at_ms).map(|d| d.to_rfc3339()),
            "component": t.labels.iter().find(|(k, _)| k == "request_model").map(|(_, v)| v.clone()),
            "group": t.labels.iter().find(|(k, _)| k == "service").map(|(_, v)| v.clone()),
            "class": t.rule,
            "custom_details": {
                "rule": t.rule,
                "signal": t.signal,
                "labels": labels,
                "value": t.numbers.value,
                "baseline": t.numbers.baseline,
                "effect": t.numbers.effect,
                "threshold": t.threshold,
                "p_value": t.numbers.p_value,
                "n_current": t.numbers.n_current,
                "n_baseline": t.numbers.n_baseline,
                "window": window,
                "baseline_source": t.baseline_desc,
                "reason": t.reason,
                "onset": t.onset_ms.map(crate::time::rfc3339),
                "detection_delay_seconds": t.detection_delay_ms.map(|d| d as f64 / 1000.0),
                "details": t.details,
            },
        },
        "links": links,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::alerts::Numbers;

    fn tr(to: AlertState, summary: &str) -> Transition {
        Transition {
            at_ms: 1_795_000_000_000,
            rule: "p99_latency_regression".into(),
            fingerprint: "a396fe9d6088adcc".into(),
            from: AlertState::Pending,
            to,
            severity: Severity::Page,
            labels: vec![
                ("service".into(), "search".into()),
                ("request_model".into(), "claude-sonnet-4".into()),
            ],
            rule_labels: Default::default(),
            signal: "latency_ms p99".into(),
            numbers: Numbers {
                value: Some(17170.4),
                baseline: Some(6389.7),
                effect: Some(2.69),
                p_value: None,
                n_current: 1424,
                n_baseline: 36148,
            },
            threshold: 2.0,
            range_start_ms: 1_795_000_000_000 - 300_000,
            range_end_ms: 1_795_000_000_000,
            baseline_desc: "trailing 1h ending 5m before the current range".into(),
            reason: "threshold breached and significant".into(),
            summary: summary.into(),
            description: String::new(),
            runbook_url: "https://x/p99.md".into(),
            channels: vec!["pagerduty".into()],
            action: None,
            fired_at_ms: Some(1_795_000_000_000),
            onset_ms: Some(1_795_000_000_000 - 95_000),
            detection_delay_ms: Some(95_000),
            details: Default::default(),
        }
    }

    #[test]
    fn trigger_carries_the_numbers_and_the_runbook() {
        let e = event(
            "R0UT1NG",
            "driftwatch@host",
            &tr(AlertState::Firing, "P99 is 17 s"),
        )
        .unwrap();
        assert_eq!(e["event_action"], "trigger");
        assert_eq!(e["dedup_key"], "a396fe9d6088adcc");
        assert_eq!(e["payload"]["severity"], "critical");
        assert_eq!(e["payload"]["summary"], "P99 is 17 s");
        assert_eq!(e["payload"]["component"], "claude-sonnet-4");
        assert_eq!(e["payload"]["group"], "search");
        let d = &e["payload"]["custom_details"];
        assert_eq!(d["value"], 17170.4);
        assert_eq!(d["baseline"], 6389.7);
        assert_eq!(d["n_current"], 1424);
        assert!(d["p_value"].is_null());
        assert_eq!(d["labels"]["service"], "search");
        // How long detection took, from the estimated onset.
        assert_eq!(d["onset"], crate::time::rfc3339(1_795_000_000_000 - 95_000));
        assert_eq!(d["detection_delay_seconds"], 95.0);
        assert_eq!(e["links"][0]["href"], "https://x/p99.md");
    }

    #[test]
    fn resolve_uses_the_same_dedup_key_and_pending_sends_nothing() {
        let e = event("R", "s", &tr(AlertState::Resolved, "")).unwrap();
        assert_eq!(e["event_action"], "resolve");
        assert_eq!(e["dedup_key"], "a396fe9d6088adcc");
        assert!(event("R", "s", &tr(AlertState::Pending, "")).is_none());
        assert!(event("R", "s", &tr(AlertState::Inactive, "")).is_none());
    }

    #[test]
    fn long_summaries_are_cut_to_1024_characters() {
        let long = "é".repeat(3000);
        let e = event("R", "s", &tr(AlertState::Firing, &long)).unwrap();
        let s = e["payload"]["summary"].as_str().unwrap();
        assert_eq!(s.chars().count(), 1024);
        assert!(s.ends_with('…'));
    }
}
