//! Turns what the router and the breakers decided into outbox entries, one per message a
//! receiver gets: one webhook or mail per group notification, one PagerDuty event per alert
//! that changed, one `fallback` / `restore` webhook per breaker transition.
//!
//! Ids are deterministic in what they carry (group and when it opened, sequence, alert,
//! transition), so a
//! notification rendered again after a crash is recognisably the same, and the next
//! incident's are new: the outbox keeps each once and receivers can deduplicate on `webhook-id`, `dedup_key` or `Message-ID`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::config::{ChannelConfig, WebhookFormat};
use super::outbox::Notification;
use super::route::Dispatch;
use crate::detect::alerts::{AlertState, Transition};
use crate::detect::breaker::BreakerTransition;

/// Where notifications point back to.
#[derive(Debug, Clone)]
pub struct Context {
    pub external_url: String,
    /// `payload.source` of PagerDuty events when the channel sets none.
    pub source: String,
}

use super::rfc3339;

/// Instance labels as a JSON object.
fn labels_map(labels: &[(String, String)]) -> BTreeMap<&str, &str> {
    labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

fn entry(id: String, channel: &str, order_key: String, body: String, now_ms: i64) -> Notification {
    Notification {
        id,
        channel: channel.to_string(),
        created_ms: now_ms,
        attempts: 0,
        next_attempt_ms: now_ms,
        body,
        last_error: None,
        order_key: Some(order_key),
        seq: 0,
        alerts: Vec::new(),
    }
}

fn notified(t: &Transition) -> super::outbox::NotifiedAlert {
    super::outbox::NotifiedAlert {
        fingerprint: t.fingerprint.clone(),
        state: if t.to == AlertState::Resolved {
            "resolved"
        } else {
            "firing"
        }
        .into(),
    }
}

/// One alert in driftwatch's own webhook JSON.
pub fn alert_json(t: &Transition) -> Value {
    let labels = labels_map(&t.labels);
    json!({
        "status": if t.to == AlertState::Resolved { "resolved" } else { "firing" },
        "rule": t.rule,
        "fingerprint": t.fingerprint,
        "severity": t.severity.as_str(),
        "labels": labels,
        "rule_labels": t.rule_labels,
        "signal": t.signal,
        "summary": t.summary,
        "description": t.description,
        "runbook_url": t.runbook_url,
        "value": t.numbers.value,
        "baseline": t.numbers.baseline,
        "effect": t.numbers.effect,
        "threshold": t.threshold,
        "p_value": t.numbers.p_value,
        "n_current": t.numbers.n_current,
        "n_baseline": t.numbers.n_baseline,
        "window_start": rfc3339(t.range_start_ms),
        "window_end": rfc3339(t.range_end_ms),
        "baseline_source": t.baseline_desc,
        "reason": t.reason,
        "fired_at": t.fired_at_ms.map(rfc3339),
        "onset": t.onset_ms.map(rfc3339),
        "detection_delay_seconds": t.detection_delay_ms.map(|d| d as f64 / 1000.0),
        "details": t.details,
        "resolved_at": (t.to == AlertState::Resolved).then(|| rfc3339(t.at_ms)),
    })
}

/// The mail of one group notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mail {
    pub subject: String,
    pub text: String,
    pub html: String,
}

fn fmt_num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x.is_infinite() => "∞".into(),
        Some(x) if x != 0.0 && x.abs() < 0.001 => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string(),
    }
}

fn html_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Subject, text and HTML of a group notification.
pub fn mail(d: &Dispatch, ctx: &Context) -> Mail {
    let status = if d.firing.is_empty() {
        "RESOLVED".to_string()
    } else {
        format!("FIRING:{}", d.firing.len())
    };
    let group: Vec<String> = d
        .group_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let subject = format!(
        "[{status}] {}{}",
        group.join(" "),
        if d.resolved.is_empty() || d.firing.is_empty() {
            String::new()
        } else {
            format!(" ({} resolved)", d.resolved.len())
        }
    );
    let rows = |t: &Transition| -> Vec<(&'static str, String)> {
        let labels: Vec<String> = t.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        vec![
            ("Rule", t.rule.clone()),
            ("Severity", t.severity.as_str().to_string()),
            ("Labels", labels.join(", ")),
            ("Value", fmt_num(t.numbers.value)),
            ("Baseline", fmt_num(t.numbers.baseline)),
            ("Effect", fmt_num(t.numbers.effect)),
            ("Threshold", fmt_num(Some(t.threshold))),
            ("p-value", fmt_num(t.numbers.p_value)),
            (
                "Samples",
                format!(
                    "{} current, {} baseline",
                    t.numbers.n_current, t.numbers.n_baseline
                ),
            ),
            (
                "Window",
                format!(
                    "{} .. {}",
                    rfc3339(t.range_start_ms),
                    rfc3339(t.range_end_ms)
                ),
            ),
            ("Baseline source", t.baseline_desc.clone()),
            ("Fired at", t.fired_at_ms.map(rfc3339).unwrap_or_default()),
            (
                "Onset (estimated)",
                match (t.onset_ms, t.detection_delay_ms) {
                    (Some(o), Some(d)) => format!("{} (detected {} s after)", rfc3339(o), d / 1000),
                    _ => String::new(),
                },
            ),
            (
                "What changed",
                t.details.get("what_changed").cloned().unwrap_or_default(),
            ),
            ("Runbook", t.runbook_url.clone()),
        ]
    };
    let mut text = String::new();
    let mut html = String::from("<!DOCTYPE html><html><body style=\"font-family:sans-serif\">");
    html.push_str(&format!("<h2>{}</h2>", html_escape(&subject)));
    for (title, list) in [("Firing", &d.firing), ("Resolved", &d.resolved)] {
        if list.is_empty() {
            continue;
        }
        text.push_str(&format!("{title} ({}):\n\n", list.len()));
        html.push_str(&format!("<h3>{title} ({})</h3>", list.len()));
        for t in list.iter() {
            let summary = if t.summary.is_empty() {
                &t.rule
            } else {
                &t.summary
            };
            text.push_str(&format!("* {summary}\n"));
            html.push_str(&format!(
                "<p><b>{}</b></p><table border=\"1\" cellpadding=\"4\" style=\"border-collapse:collapse\">",
                html_escape(summary)
            ));
            for (k, v) in rows(t) {
                if v.is_empty() {
                    continue;
                }
                text.push_str(&format!("    {k}: {}\n", v.replace('\n', "\n      ")));
                let cell = if k == "Runbook" {
                    format!("<a href=\"{0}\">{0}</a>", html_escape(&v))
                } else {
                    html_escape(&v).replace('\n', "<br>")
                };
                html.push_str(&format!(
                    "<tr><th align=\"left\">{k}</th><td>{cell}</td></tr>"
                ));
            }
            text.push('\n');
            html.push_str("</table>");
        }
    }
    let alerts_url = format!("{}/api/v1/alerts", ctx.external_url.trim_end_matches('/'));
    text.push_str(&format!("Alerts: {alerts_url}\n"));
    html.push_str(&format!(
        "<p><a href=\"{0}\">{0}</a></p></body></html>",
        html_escape(&alerts_url)
    ));
    Mail {
        subject,
        text,
        html,
    }
}

/// The outbox entries of one group notification.
pub fn dispatch(
    d: &Dispatch,
    channel: &ChannelConfig,
    ctx: &Context,
    now_ms: i64,
) -> Vec<Notification> {
    let group_entry = |body: String| {
        let mut n = entry(
            format!("{}-{}-{}-{}", d.channel, d.group_id, d.opened_ms, d.seq),
            &d.channel,
            format!("{}/{}", d.channel, d.group_id),
            body,
            now_ms,
        );
        n.alerts = d.firing.iter().chain(&d.resolved).map(notified).collect();
        vec![n]
    };
    match channel {
        ChannelConfig::Webhook { format, .. } => {
            let all: Vec<&Transition> = d.firing.iter().chain(&d.resolved).collect();
            let body = match format {
                WebhookFormat::Alertmanager => super::alertmanager::payload(
                    &d.channel,
                    &d.group_key,
                    &d.group_labels,
                    &ctx.external_url,
                    &all,
                ),
                WebhookFormat::Driftwatch => json!({
                    "version": "1",
                    "type": "alerts",
                    "channel": d.channel,
                    "group_key": d.group_key,
                    "group_labels": d.group_labels,
                    "status": if d.firing.is_empty() { "resolved" } else { "firing" },
                    "repeat": d.repeat,
                    "external_url": ctx.external_url,
                    "alerts": all.iter().map(|t| alert_json(t)).collect::<Vec<_>>(),
                }),
            };
            group_entry(body.to_string())
        }
        ChannelConfig::Email { .. } => {
            group_entry(serde_json::to_string(&mail(d, ctx)).expect("plain data"))
        }
        ChannelConfig::Pagerduty { source, .. } => {
            let source = source.clone().unwrap_or_else(|| ctx.source.clone());
            let mut out = Vec::new();
            let firing = d
                .firing
                .iter()
                .filter(|t| d.repeat || d.new_firing.contains(&t.fingerprint))
                .cloned();
            // An alert that fired and resolved between two flushes: its trigger first, so
            // PagerDuty records the incident it then resolves.
            let short: Vec<Transition> = d
                .resolved
                .iter()
                .filter(|t| d.unnotified_resolved.contains(&t.fingerprint))
                .map(|t| {
                    let mut f = t.clone();
                    f.to = AlertState::Firing;
                    f.at_ms = t.fired_at_ms.unwrap_or(t.at_ms);
                    f
                })
                .collect();
            let all: Vec<Transition> = firing
                .chain(short)
                .chain(d.resolved.iter().cloned())
                .collect();
            for t in &all {
                // The routing key is added when sending: secrets stay out of the outbox.
                let Some(ev) = super::pagerduty::event("", &source, t) else {
                    continue;
                };
                let action = ev["event_action"].as_str().unwrap_or("x").to_string();
                let mut n = entry(
                    format!(
                        "{}-{}-{action}-{}-{}",
                        d.channel,
                        t.fingerprint,
                        t.fired_at_ms.unwrap_or(t.at_ms),
                        d.seq
                    ),
                    &d.channel,
                    format!("{}/{}", d.channel, t.fingerprint),
                    ev.to_string(),
                    now_ms,
                );
                n.alerts = vec![notified(t)];
                out.push(n);
            }
            out
        }
    }
}

/// Fills `{{name}}` / `{{ name }}` placeholders of a breaker template with JSON-escaped
/// values, in one pass over the template: a substituted value is never scanned again, so a
/// model name containing `{{...}}` is inserted literally. Placeholders naming no variable (and
/// a `{{` never closed) are left as written.
fn fill(template: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let known = after.find("}}").and_then(|close| {
            let name = after[..close].trim_matches(' ');
            vars.get(name).map(|v| (close, v))
        });
        match known {
            Some((close, v)) => {
                let escaped = serde_json::to_string(v).expect("string");
                out.push_str(&escaped[1..escaped.len() - 1]);
                rest = &after[close + 2..];
            }
            None => {
                // Not a placeholder: keep one `{` and look again from the next one, so
                // `{{{x}}}` still fills the inner `{{x}}`.
                out.push('{');
                rest = &rest[open + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The breaker webhook body (driftwatch JSON), for `open` (`fallback`) and `half_open`
/// (`restore`).
pub fn breaker_json(t: &BreakerTransition) -> Value {
    let labels = labels_map(&t.labels);
    json!({
        "version": "1",
        "type": "breaker",
        "command": t.command(),
        "breaker": t.key,
        "rule": t.rule,
        "state": t.to.as_str(),
        "previous_state": t.from.as_str(),
        "primary_model": t.primary_model,
        "fallback_model": t.fallback_model,
        "labels": labels,
        "at": rfc3339(t.at_ms),
        "cooldown_seconds": t.cooldown_ms / 1000,
        "opens": t.opens,
        "signal": t.signal,
        "value": t.value,
        // Kept for gateways written against error-rate breakers.
        "error_rate": if t.signal.is_empty() || t.signal.contains("rate") { t.value } else { None },
        "requests": t.requests,
        "threshold": t.threshold.is_finite().then_some(t.threshold),
        "reason": t.reason,
    })
}

/// The outbox entries of a breaker transition: one per configured webhook channel it names.
pub fn breaker(
    t: &BreakerTransition,
    channels: &BTreeMap<String, ChannelConfig>,
    now_ms: i64,
) -> Vec<Notification> {
    let Some(command) = t.command() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for name in &t.channels {
        let Some(ChannelConfig::Webhook { templates, .. }) = channels.get(name) else {
            continue;
        };
        let body = match templates.get(command) {
            Some(tpl) => {
                let vars: BTreeMap<&str, String> = [
                    ("primary_model", t.primary_model.clone().unwrap_or_default()),
                    (
                        "fallback_model",
                        t.fallback_model.clone().unwrap_or_default(),
                    ),
                    ("breaker", t.key.clone()),
                    ("state", t.to.as_str().to_string()),
                    ("command", command.to_string()),
                    ("at", rfc3339(t.at_ms)),
                ]
                .into_iter()
                .collect();
                fill(tpl, &vars)
            }
            None => breaker_json(t).to_string(),
        };
        out.push(entry(
            format!("{name}-brk-{}-{}-{}", t.key, t.at_ms, t.to.as_str()),
            name,
            format!("{name}/brk-{}", t.key),
            body,
            now_ms,
        ));
    }
    out
}

/// A failed analysis run's `rollback` command in driftwatch's webhook JSON.
pub fn rollback_json(r: &crate::detect::analysis::RollbackEvent, ctx: &Context) -> Value {
    json!({
        "version": "1",
        "type": "rollback",
        "command": "rollback",
        "analysis": r.analysis,
        "kind": r.kind.as_str(),
        "service": r.service,
        "run_id": r.run_id,
        "group": r.group,
        "candidate": r.candidate,
        "baseline": r.baseline,
        "classification": "Fail",
        "score": r.score,
        "failed_metrics": r.failed,
        "reason": r.reason,
        "run_started_at": rfc3339(r.started_ms),
        "at": rfc3339(r.at_ms),
        "report_url": format!("{}/api/v1/analyses/{}", ctx.external_url.trim_end_matches('/'), r.analysis),
    })
}

/// The outbox entries of a rollback: one per configured webhook channel the analysis names
/// (a channel template keyed `rollback` replaces the JSON body).
pub fn rollback(
    r: &crate::detect::analysis::RollbackEvent,
    channels: &BTreeMap<String, ChannelConfig>,
    ctx: &Context,
    now_ms: i64,
) -> Vec<Notification> {
    let mut out = Vec::new();
    for name in &r.channels {
        let Some(ChannelConfig::Webhook { templates, .. }) = channels.get(name) else {
            continue;
        };
        let body = match templates.get("rollback") {
            Some(tpl) => {
                let vars: BTreeMap<&str, String> = [
                    ("analysis", r.analysis.clone()),
                    ("service", r.service.clone()),
                    ("candidate", r.candidate.clone()),
                    ("baseline", r.baseline.clone()),
                    ("run_id", r.run_id.clone()),
                    ("command", "rollback".to_string()),
                    ("at", rfc3339(r.at_ms)),
                ]
                .into_iter()
                .collect();
                fill(tpl, &vars)
            }
            None => rollback_json(r, ctx).to_string(),
        };
        // Outbox ids are file names.
        let run: String = r
            .run_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        out.push(entry(
            format!("{name}-rollback-{run}"),
            name,
            format!("{name}/rollback-{}", r.analysis),
            body,
            now_ms,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::breaker::BreakerState;

    fn vars(pairs: &[(&'static str, &str)]) -> BTreeMap<&'static str, String> {
        pairs.iter().map(|(k, v)| (*k, v.to_string())).collect()
    }

    #[test]
    fn fill_accepts_both_placeholder_forms() {
        let v = vars(&[("primary_model", "gpt-4o"), ("state", "open")]);
        assert_eq!(
            fill(
                r#"{"a":"{{primary_model}}","b":"{{ primary_model }}","s":"{{state}}"}"#,
                &v
            ),
            r#"{"a":"gpt-4o","b":"gpt-4o","s":"open"}"#
        );
        assert_eq!(fill("{{{state}}}", &v), "{open}");
    }

    #[test]
    fn fill_inserts_values_literally() {
        // A value that looks like a placeholder of another (known) variable is not expanded
        // again, whichever order the variables come in.
        let v = vars(&[
            ("breaker", "{{ state }}"),
            ("fallback_model", "x"),
            ("primary_model", "evil-{{fallback_model}}"),
            ("state", "open"),
        ]);
        assert_eq!(
            fill("{{primary_model}} {{ breaker }} {{state}}", &v),
            "evil-{{fallback_model}} {{ state }} open"
        );
    }

    #[test]
    fn fill_leaves_unknown_placeholders() {
        let v = vars(&[("state", "open")]);
        assert_eq!(
            fill("{{nope}} {{ nope }} {{state}} {{ unclosed", &v),
            "{{nope}} {{ nope }} open {{ unclosed"
        );
    }

    #[test]
    fn breaker_templates_fill_json_escaped_values() {
        let t = BreakerTransition {
            at_ms: 1_795_000_000_000,
            rule: "brk".into(),
            key: "00ff".into(),
            labels: vec![("request_model".into(), "gpt-4o".into())],
            from: BreakerState::Closed,
            to: BreakerState::Open,
            severity: crate::detect::rules::Severity::Page,
            primary_model: Some("gpt-4o".into()),
            fallback_model: Some("claude \"haiku\"".into()),
            cooldown_ms: 60_000,
            opens: 1,
            signal: "error rate".into(),
            value: Some(0.1),
            threshold: 0.05,
            requests: 300,
            range_start_ms: 0,
            range_end_ms: 0,
            reason: "r".into(),
            channels: vec!["gw".into(), "missing".into()],
        };
        let channels: BTreeMap<String, ChannelConfig> = toml::from_str(
            r#"
[gw]
type = "webhook"
url = "http://127.0.0.1:1/model/update"
templates = { fallback = '{"model_info":{"id":"{{primary_model}}"},"litellm_params":{"model":"{{ fallback_model }}"}}' }
"#,
        )
        .unwrap();
        let n = breaker(&t, &channels, 5);
        assert_eq!(n.len(), 1, "unknown channels are skipped");
        let v: Value = serde_json::from_str(&n[0].body).unwrap();
        assert_eq!(v["litellm_params"]["model"], "claude \"haiku\"");
        assert_eq!(v["model_info"]["id"], "gpt-4o");
        assert_eq!(n[0].id, "gw-brk-00ff-1795000000000-open");
        // Restore has no template here: the driftwatch JSON.
        let mut r = t.clone();
        r.from = BreakerState::Open;
        r.to = BreakerState::HalfOpen;
        let v: Value = serde_json::from_str(&breaker(&r, &channels, 5)[0].body).unwrap();
        assert_eq!(v["command"], "restore");
        assert_eq!(v["primary_model"], "gpt-4o");
        let mut c = t;
        c.to = BreakerState::Closed;
        assert!(
            breaker(&c, &channels, 5).is_empty(),
            "closing sends nothing"
        );
    }
}
