//! Alertmanager's webhook payload (version "4"), so receivers written for Alertmanager
//! (<https://prometheus.io/docs/alerting/latest/configuration/#webhook_config>) take
//! driftwatch's notifications unchanged.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::detect::alerts::{AlertState, Transition};

/// `endsAt` of an alert that is still firing, as Alertmanager writes it.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

fn rfc3339(ms: i64) -> String {
    let t = super::rfc3339(ms);
    if t.is_empty() {
        ZERO_TIME.to_string()
    } else {
        t
    }
}

/// An alert's labels as Alertmanager sees them: `alertname` (the rule), `severity`, the
/// instance labels and the rule's labels.
pub fn labels(t: &Transition) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert("alertname".to_string(), t.rule.clone());
    l.insert("severity".to_string(), t.severity.as_str().to_string());
    for (k, v) in &t.labels {
        l.insert(k.clone(), v.clone());
    }
    for (k, v) in &t.rule_labels {
        l.insert(k.clone(), v.clone());
    }
    l
}

fn annotations(t: &Transition) -> BTreeMap<String, String> {
    let mut a = BTreeMap::new();
    for (k, v) in [
        ("summary", &t.summary),
        ("description", &t.description),
        ("runbook_url", &t.runbook_url),
    ] {
        if !v.is_empty() {
            a.insert(k.to_string(), v.clone());
        }
    }
    a
}

fn common(maps: &[BTreeMap<String, String>]) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some((first, rest)) = maps.split_first() {
        for (k, v) in first {
            if rest.iter().all(|m| m.get(k) == Some(v)) {
                out.insert(k.clone(), Value::String(v.clone()));
            }
        }
    }
    out
}

/// The payload for one notification of a group: firing transitions and resolved ones
/// (others are not notifications). `group_labels` are the labels the group is keyed by.
pub fn payload(
    receiver: &str,
    group_key: &str,
    group_labels: &BTreeMap<String, String>,
    external_url: &str,
    transitions: &[&Transition],
) -> Value {
    let alerts: Vec<&&Transition> = transitions
        .iter()
        .filter(|t| matches!(t.to, AlertState::Firing | AlertState::Resolved))
        .collect();
    let label_sets: Vec<_> = alerts.iter().map(|t| labels(t)).collect();
    let annotation_sets: Vec<_> = alerts.iter().map(|t| annotations(t)).collect();
    let firing = alerts.iter().any(|t| t.to == AlertState::Firing);
    let items: Vec<Value> = alerts
        .iter()
        .zip(label_sets.iter().zip(&annotation_sets))
        .map(|(t, (l, a))| {
            let resolved = t.to == AlertState::Resolved;
            json!({
                "status": if resolved { "resolved" } else { "firing" },
                "labels": l,
                "annotations": a,
                "startsAt": rfc3339(t.fired_at_ms.unwrap_or(t.at_ms)),
                "endsAt": if resolved { rfc3339(t.at_ms) } else { ZERO_TIME.to_string() },
                "generatorURL": format!("{}/api/v1/alerts", external_url.trim_end_matches('/')),
                "fingerprint": t.fingerprint,
            })
        })
        .collect();
    json!({
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
        "status": if firing { "firing" } else { "resolved" },
        "receiver": receiver,
        "groupLabels": group_labels,
        "commonLabels": common(&label_sets),
        "commonAnnotations": common(&annotation_sets),
        "externalURL": external_url,
        "alerts": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::alerts::Numbers;
    use crate::detect::rules::Severity;

    fn tr(service: &str, to: AlertState, at_ms: i64) -> Transition {
        Transition {
            at_ms,
            rule: "error_rate_high".into(),
            fingerprint: format!("fp-{service}"),
            from: AlertState::Pending,
            to,
            severity: Severity::Alert,
            labels: vec![
                ("service".into(), service.into()),
                ("deployment".into(), "stable".into()),
            ],
            rule_labels: [("team".to_string(), "llm-platform".to_string())].into(),
            signal: "error rate".into(),
            numbers: Numbers::default(),
            threshold: 0.01,
            range_start_ms: at_ms - 300_000,
            range_end_ms: at_ms,
            baseline_desc: "fixed 0.01".into(),
            reason: "threshold breached and significant".into(),
            summary: format!("Error rate of {service} is 2%"),
            description: "Error rate above 1 %".into(),
            runbook_url: "https://x/rb".into(),
            channels: vec!["webhook".into()],
            action: None,
            fired_at_ms: Some(1_795_000_000_000),
            onset_ms: None,
            detection_delay_ms: None,
            details: Default::default(),
        }
    }

    #[test]
    fn alertmanager_v4_shape() {
        let a = tr("chat", AlertState::Firing, 1_795_000_000_000);
        let b = tr("search", AlertState::Resolved, 1_795_000_600_000);
        let group: BTreeMap<String, String> =
            [("alertname".to_string(), "error_rate_high".to_string())].into();
        let p = payload(
            "ops",
            "{}:{alertname=\"error_rate_high\"}",
            &group,
            "http://dw:9464",
            &[&a, &b],
        );
        assert_eq!(p["version"], "4");
        assert_eq!(p["status"], "firing");
        assert_eq!(p["receiver"], "ops");
        assert_eq!(p["truncatedAlerts"], 0);
        assert_eq!(p["groupLabels"]["alertname"], "error_rate_high");
        // Common: what both alerts share, not the service.
        assert_eq!(p["commonLabels"]["deployment"], "stable");
        assert_eq!(p["commonLabels"]["team"], "llm-platform");
        assert!(p["commonLabels"].get("service").is_none());
        assert_eq!(p["commonAnnotations"]["runbook_url"], "https://x/rb");
        assert!(p["commonAnnotations"].get("summary").is_none());
        let alerts = p["alerts"].as_array().unwrap();
        assert_eq!(alerts.len(), 2);
        assert_eq!(alerts[0]["status"], "firing");
        assert_eq!(alerts[0]["labels"]["alertname"], "error_rate_high");
        assert_eq!(alerts[0]["labels"]["severity"], "alert");
        assert_eq!(alerts[0]["startsAt"], "2026-11-18T11:06:40.000Z");
        assert_eq!(alerts[0]["endsAt"], ZERO_TIME);
        assert_eq!(alerts[0]["generatorURL"], "http://dw:9464/api/v1/alerts");
        assert_eq!(alerts[1]["status"], "resolved");
        assert_eq!(alerts[1]["endsAt"], "2026-11-18T11:16:40.000Z");
        assert_eq!(alerts[1]["fingerprint"], "fp-search");
        // Only resolved alerts: the group is resolved.
        let p = payload("ops", "k", &group, "http://dw:9464", &[&b]);
        assert_eq!(p["status"], "resolved");
    }
}
