//! Incident reports for post-mortems: one firing of one alert, read back from the data
//! directory with SQL — its timeline (pending, firing, resolved, the breaker of its model),
//! the estimated onset recorded with the alert and the detection delay from it, what changed
//! in the same service and model around it (prompt versions, response models, error codes,
//! deployments and variants first seen, registry changes), the other rules that fired, and
//! the runbook. `driftwatch incident` prints it as Markdown, `GET /api/v1/incidents/{fp}`
//! returns it as JSON.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::query::{encode_output, Format, Limits, QueryEngine, QueryError};
use crate::time::rfc3339;

/// How far before the onset (or the firing) the report looks for changes.
pub const LOOK_BEFORE_MS: i64 = 3_600_000;
/// How far after the resolution (or the firing, while it fires) it looks.
pub const LOOK_AFTER_MS: i64 = 600_000;
/// A value first seen this long after the history read starts counts as a change (older
/// ones were there before).
const HISTORY_BEFORE_MS: i64 = 24 * 3_600_000;
/// Values first seen in the first 15 minutes of the history read are not changes: too
/// little traffic had been seen to tell a new value from a rare one.
const WARM_UP_MS: i64 = 15 * 60_000;

/// Why there is no report.
#[derive(Debug, thiserror::Error)]
pub enum IncidentError {
    #[error("{0:?} is not an alert fingerprint; use the 16 hex digits of the alerts table, the API or a notification")]
    BadFingerprint(String),
    #[error("no alert with fingerprint {0} in {1}")]
    Unknown(String, String),
    #[error("alert {0} ({1}) has no firing{2}")]
    NeverFired(String, String, String),
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl IncidentError {
    /// A request that names no incident (exit 2, HTTP 404), not a failure to read.
    pub fn is_not_found(&self) -> bool {
        !matches!(self, IncidentError::Query(_))
    }
}

/// Which firing to report.
#[derive(Debug, Clone, Default)]
pub struct IncidentQuery {
    pub fingerprint: String,
    /// The firing at this time (its `fired_at`); default the latest.
    pub fired_at_ms: Option<i64>,
    /// Override the span the timeline and the changes are read over.
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
    /// The delivery outbox (its `sent/` and `dead/` records); default
    /// `<data_dir>/state/outbox`.
    pub outbox_dir: Option<std::path::PathBuf>,
}

/// One notification that carried the alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NotificationEntry {
    pub channel: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub queued_at: String,
    /// `None` for a dead letter.
    pub delivered_at: Option<String>,
    pub attempts: u32,
    /// Delivery time minus the firing's (or resolution's) evaluation.
    pub after_ms: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One line of the timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TimelineEntry {
    pub at: String,
    pub what: String,
    pub detail: String,
}

/// Something that first appeared in the span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    pub at: String,
    /// `prompt_version`, `response_model`, `error_type`, `http_status`, `deployment`,
    /// `variant`, `registry`.
    pub field: String,
    pub value: String,
}

/// Another rule that fired on the same service in the span.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Related {
    pub rule: String,
    pub fired_at: String,
    pub summary: String,
}

/// The report.
#[derive(Debug, Clone, Serialize)]
pub struct Incident {
    pub fingerprint: String,
    pub rule: String,
    pub severity: String,
    pub signal: String,
    pub labels: BTreeMap<String, String>,
    pub summary: String,
    pub description: String,
    pub runbook_url: String,
    /// The firing's details (`what_changed`: the changes the detector saw when it fired).
    pub details: BTreeMap<String, String>,
    pub fired_at: String,
    pub resolved_at: Option<String>,
    pub estimated_onset: Option<String>,
    pub detection_delay_ms: Option<i64>,
    /// `[from, to)` the changes were looked for in.
    pub span: [String; 2],
    pub timeline: Vec<TimelineEntry>,
    pub changes: Vec<Change>,
    pub related: Vec<Related>,
    pub channels: Vec<String>,
    /// Notifications delivered (or given up on) that carried this alert, from the outbox's
    /// records (kept a week).
    pub notifications: Vec<NotificationEntry>,
}

type Row = Map<String, Value>;

async fn rows(engine: &QueryEngine, sql: &str) -> Result<Vec<Row>, QueryError> {
    let out = engine.run(sql, &Limits::default()).await?;
    let bytes = encode_output(&out, Format::JsonArray)?;
    serde_json::from_slice::<Vec<Row>>(&bytes)
        .map_err(|e| QueryError::Execution(format!("reading the result: {e}")))
}

fn int(r: &Row, k: &str) -> Option<i64> {
    r.get(k).and_then(Value::as_i64)
}

fn text(r: &Row, k: &str) -> String {
    match r.get(k) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(v) => v.to_string(),
    }
}

/// A string literal for SQL.
pub(crate) fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// The report of one firing of the alert `q.fingerprint` in the data directory `engine`
/// reads; `labels` are the series labels (columns of `alerts` and `windows`).
pub async fn build(
    engine: &QueryEngine,
    labels: &[&str],
    data_dir: &std::path::Path,
    q: &IncidentQuery,
) -> Result<Incident, IncidentError> {
    let fp = q.fingerprint.trim().to_ascii_lowercase();
    if fp.len() != 16 || !fp.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(IncidentError::BadFingerprint(q.fingerprint.clone()));
    }
    if !engine.tables().contains(&"alerts") {
        return Err(IncidentError::Unknown(fp, data_dir.display().to_string()));
    }
    let label_cols: String = labels.iter().map(|l| format!(", {l}")).collect();
    let all = rows(
        engine,
        &format!(
            "SELECT CAST(evaluated_at AS BIGINT) AS t, rule, from_state, to_state, severity, signal, \
             value, n_current, reason, summary, description, runbook_url, \
             CAST(fired_at AS BIGINT) AS fired, CAST(onset AS BIGINT) AS onset, detection_delay_ms, \
             channels, details, labels AS instance_labels{label_cols} FROM alerts \
             WHERE fingerprint = {} AND signal <> 'circuit_breaker' ORDER BY evaluated_at",
            lit(&fp)
        ),
    )
    .await?;
    if all.is_empty() {
        return Err(IncidentError::Unknown(fp, data_dir.display().to_string()));
    }
    let firings: Vec<usize> = (0..all.len())
        .filter(|i| text(&all[*i], "to_state") == "firing")
        .collect();
    let rule = text(&all[0], "rule");
    let chosen = match q.fired_at_ms {
        Some(at) => firings
            .iter()
            .copied()
            .find(|i| int(&all[*i], "t") == Some(at)),
        None => firings.last().copied(),
    };
    let Some(fi) = chosen else {
        let when = q
            .fired_at_ms
            .map(|t| format!(" at {}", rfc3339(t)))
            .unwrap_or_default();
        let known: Vec<String> = firings
            .iter()
            .filter_map(|i| int(&all[*i], "t"))
            .map(rfc3339)
            .collect();
        let hint = if known.is_empty() {
            String::new()
        } else {
            format!("; it fired at {}", known.join(", "))
        };
        return Err(IncidentError::NeverFired(fp, rule, format!("{when}{hint}")));
    };
    let f = &all[fi];
    let fired = int(f, "t").unwrap_or(0);
    let onset = int(f, "onset");
    // The episode: the pending rows right before the firing, up to the resolution after it.
    let mut first = fi;
    while first > 0 && text(&all[first - 1], "to_state") == "pending" {
        first -= 1;
    }
    let last = (fi + 1..all.len())
        .find(|i| text(&all[*i], "to_state") == "resolved")
        .unwrap_or(all.len() - 1)
        .max(fi);
    let resolved = (text(&all[last], "to_state") == "resolved")
        .then(|| int(&all[last], "t"))
        .flatten();
    let from = q
        .from_ms
        .unwrap_or(onset.unwrap_or(fired).min(fired) - LOOK_BEFORE_MS);
    let to = q.to_ms.unwrap_or(resolved.unwrap_or(fired) + LOOK_AFTER_MS);
    let mut series: BTreeMap<String, String> = BTreeMap::new();
    for l in labels {
        let v = text(f, l);
        if !v.is_empty() {
            series.insert(l.to_string(), v);
        }
    }
    // The instance labels beyond the series' (`code`, `baseline_version`, `judge`, …).
    if let Some(Value::Object(m)) = f.get("instance_labels") {
        for (k, v) in m {
            if let Some(v) = v.as_str().filter(|v| !v.is_empty()) {
                series.entry(k.clone()).or_insert_with(|| v.to_string());
            }
        }
    }
    let mut timeline: Vec<(i64, TimelineEntry)> = Vec::new();
    let in_span = |t: i64| q.from_ms.is_none_or(|a| t >= a) && q.to_ms.is_none_or(|b| t < b);
    for r in &all[first..=last] {
        let t = int(r, "t").unwrap_or(0);
        if !in_span(t) {
            continue;
        }
        let value = r
            .get("value")
            .and_then(Value::as_f64)
            .map(|v| {
                format!(
                    " (value {}, n {})",
                    num(v),
                    int(r, "n_current").unwrap_or(0)
                )
            })
            .unwrap_or_default();
        timeline.push((
            t,
            TimelineEntry {
                at: rfc3339(t),
                what: format!("alert {} → {}", text(r, "from_state"), text(r, "to_state")),
                detail: format!("{}{value}", text(r, "reason")),
            },
        ));
    }
    let window = |extra: &str| {
        format!(
            "evaluated_at >= to_timestamp_millis({from}) AND evaluated_at < to_timestamp_millis({to}){extra}"
        )
    };
    // The breaker of the alert's model.
    if let (Some(model), true) = (
        series.get("request_model"),
        labels.contains(&"request_model"),
    ) {
        let br = rows(
            engine,
            &format!(
                "SELECT CAST(evaluated_at AS BIGINT) AS t, rule, from_state, to_state, reason FROM alerts \
                 WHERE signal = 'circuit_breaker' AND request_model = {} AND {} ORDER BY evaluated_at",
                lit(model),
                window("")
            ),
        )
        .await?;
        for r in br {
            let t = int(&r, "t").unwrap_or(0);
            timeline.push((
                t,
                TimelineEntry {
                    at: rfc3339(t),
                    what: format!(
                        "breaker {} {} → {}",
                        text(&r, "rule"),
                        text(&r, "from_state"),
                        text(&r, "to_state")
                    ),
                    detail: text(&r, "reason"),
                },
            ));
        }
    }
    // Deliveries, from the outbox's records.
    let outbox = q.outbox_dir.clone().unwrap_or_else(|| {
        data_dir
            .join(crate::storage::layout::STATE_DIR)
            .join("outbox")
    });
    let (sent, dead) = crate::notify::outbox::deliveries_of(&outbox, &fp);
    let mut notifications = Vec::new();
    let reference = |state: &str| {
        if state == "resolved" {
            resolved
        } else {
            Some(fired)
        }
    };
    for d in &sent {
        if d.delivered_ms < from || d.delivered_ms >= to + 3_600_000 {
            continue;
        }
        for a in d.alerts.iter().filter(|a| a.fingerprint == fp) {
            let after = reference(&a.state).map(|r| d.delivered_ms - r);
            timeline.push((
                d.delivered_ms,
                TimelineEntry {
                    at: rfc3339(d.delivered_ms),
                    what: format!("notified {} ({})", d.channel, a.state),
                    detail: format!(
                        "delivered after {} attempt(s){}",
                        d.attempts,
                        after
                            .map(|ms| format!(
                                ", {} after the alert {}",
                                duration(ms),
                                if a.state == "resolved" {
                                    "resolved"
                                } else {
                                    "fired"
                                }
                            ))
                            .unwrap_or_default()
                    ),
                },
            ));
            notifications.push(NotificationEntry {
                channel: d.channel.clone(),
                state: a.state.clone(),
                queued_at: rfc3339(d.created_ms),
                delivered_at: Some(rfc3339(d.delivered_ms)),
                attempts: d.attempts,
                after_ms: after,
                error: None,
            });
        }
    }
    for n in &dead {
        if n.created_ms < from || n.created_ms >= to + 3_600_000 {
            continue;
        }
        for a in n.alerts.iter().filter(|a| a.fingerprint == fp) {
            timeline.push((
                n.created_ms,
                TimelineEntry {
                    at: rfc3339(n.created_ms),
                    what: format!("notification to {} failed ({})", n.channel, a.state),
                    detail: n.last_error.clone().unwrap_or_default(),
                },
            ));
            notifications.push(NotificationEntry {
                channel: n.channel.clone(),
                state: a.state.clone(),
                queued_at: rfc3339(n.created_ms),
                delivered_at: None,
                attempts: n.attempts,
                after_ms: None,
                error: n.last_error.clone(),
            });
        }
    }
    timeline.sort_by_key(|(t, _)| *t);
    // Other rules that fired on the same service.
    let mut related = Vec::new();
    if let (Some(service), true) = (series.get("service"), labels.contains(&"service")) {
        for r in rows(
            engine,
            &format!(
                "SELECT CAST(evaluated_at AS BIGINT) AS t, rule, summary FROM alerts \
                 WHERE to_state = 'firing' AND fingerprint <> {} AND service = {} AND {} ORDER BY evaluated_at",
                lit(&fp),
                lit(service),
                window("")
            ),
        )
        .await?
        {
            related.push(Related {
                rule: text(&r, "rule"),
                fired_at: rfc3339(int(&r, "t").unwrap_or(0)),
                summary: text(&r, "summary"),
            });
        }
    }
    let changes = changes(engine, data_dir, labels, &series, from, to).await?;
    let channels = match f.get("channels") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    };
    Ok(Incident {
        fingerprint: fp,
        rule,
        severity: text(f, "severity"),
        signal: text(f, "signal"),
        labels: series,
        summary: text(f, "summary"),
        description: text(f, "description"),
        runbook_url: text(f, "runbook_url"),
        details: match f.get("details") {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_string),
                    )
                })
                .collect(),
            _ => BTreeMap::new(),
        },
        fired_at: rfc3339(fired),
        resolved_at: resolved.map(rfc3339),
        estimated_onset: onset.map(rfc3339),
        detection_delay_ms: int(f, "detection_delay_ms"),
        span: [rfc3339(from), rfc3339(to)],
        timeline: timeline.into_iter().map(|(_, e)| e).collect(),
        changes,
        related,
        channels,
        notifications,
    })
}

/// Values first seen in `[from, to)` in the windows of the alert's service and model (the
/// day before the span is read, so what was there already is not a change); registry
/// changes in the span.
async fn changes(
    engine: &QueryEngine,
    data_dir: &std::path::Path,
    labels: &[&str],
    series: &BTreeMap<String, String>,
    from: i64,
    to: i64,
) -> Result<Vec<Change>, QueryError> {
    let mut out: Vec<(i64, Change)> = Vec::new();
    let scope: Vec<(usize, &String)> = ["service", "request_model"]
        .iter()
        .filter_map(|l| Some((labels.iter().position(|x| x == l)?, series.get(*l)?)))
        .collect();
    let stored = {
        let dir = data_dir.to_path_buf();
        let names: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            crate::storage::read::read_history(
                &dir,
                &names,
                &Default::default(),
                Some(from - HISTORY_BEFORE_MS),
                Some(to),
            )
        })
        .await
        .map_err(|e| QueryError::Execution(format!("reading windows: {e}")))?
        .map_err(|e| QueryError::Execution(e.to_string()))?
    };
    let mut first: BTreeMap<(&'static str, String), i64> = BTreeMap::new();
    let mut data_from = i64::MAX;
    let mut seen = |field: &'static str, value: &str, t: i64| {
        let e = first.entry((field, value.to_string())).or_insert(t);
        *e = (*e).min(t);
    };
    for w in &stored {
        if !scope.iter().all(|(i, v)| w.labels.get(*i) == Some(*v)) {
            continue;
        }
        data_from = data_from.min(w.start_ms);
        for field in ["prompt_version", "deployment", "variant"] {
            if let Some(i) = labels.iter().position(|l| *l == field) {
                if let Some(v) = w.labels.get(i) {
                    seen(field, v, w.start_ms);
                }
            }
        }
        let s = &w.summary;
        for (field, counts) in [
            ("response_model", &s.response_models),
            ("system_fingerprint", &s.system_fingerprints),
            ("error_type", &s.error_types),
            ("http_status", &s.http_statuses),
        ] {
            for (k, n) in &counts.0 {
                if *n > 0 {
                    seen(field, k, w.start_ms);
                }
            }
        }
    }
    for ((field, value), t) in first {
        // New: first seen inside the span, after the history read began.
        let code = field != "http_status" || value.parse::<u16>().is_ok_and(|s| s >= 400);
        let after_warm_up = t >= data_from.saturating_add(WARM_UP_MS);
        if t >= from && t < to && after_warm_up && code && !value.is_empty() && value != "__other__"
        {
            out.push((
                t,
                Change {
                    at: rfc3339(t),
                    field: field.to_string(),
                    value,
                },
            ));
        }
    }
    if engine.tables().contains(&"registry_changes") {
        let model = series
            .get("request_model")
            .map(|m| format!(" AND model = {}", lit(m)))
            .unwrap_or_default();
        for r in rows(
            engine,
            &format!(
                "SELECT CAST(changed_at AS BIGINT) AS t, model, field FROM registry_changes \
                 WHERE changed_at >= to_timestamp_millis({from}) AND changed_at < to_timestamp_millis({to}){model} \
                 ORDER BY changed_at"
            ),
        )
        .await?
        {
            let t = int(&r, "t").unwrap_or(0);
            out.push((
                t,
                Change {
                    at: rfc3339(t),
                    field: "registry".into(),
                    value: format!("{} {}", text(&r, "model"), text(&r, "field")),
                },
            ));
        }
    }
    out.sort_by(|a, b| (a.0, &a.1.field, &a.1.value).cmp(&(b.0, &b.1.field, &b.1.value)));
    Ok(out.into_iter().map(|(_, c)| c).collect())
}

fn num(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// `1m 30s` for a delay in ms.
pub fn duration(ms: i64) -> String {
    let d = std::time::Duration::from_millis(ms.unsigned_abs());
    let s = humantime::format_duration(d).to_string();
    if ms < 0 {
        format!("-{s}")
    } else {
        s
    }
}

/// The report as Markdown, with the literal `Estimated onset:` and `Detection delay:` lines.
pub fn markdown(i: &Incident) -> String {
    use std::fmt::Write as _;
    let mut m = String::new();
    let _ = writeln!(m, "# Incident: {} ({})\n", i.rule, i.severity);
    let _ = writeln!(m, "{}\n", i.summary);
    let labels: Vec<String> = i.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let _ = writeln!(m, "- Alert: `{}` {{{}}}", i.fingerprint, labels.join(", "));
    let _ = writeln!(m, "- Signal: {}", i.signal);
    let _ = writeln!(m, "- Fired: {}", i.fired_at);
    let _ = writeln!(
        m,
        "- Resolved: {}",
        i.resolved_at
            .as_deref()
            .unwrap_or("not by the end of the data")
    );
    if !i.runbook_url.is_empty() {
        let _ = writeln!(m, "- Runbook: {}", i.runbook_url);
    }
    let _ = writeln!(m);
    let _ = writeln!(
        m,
        "Estimated onset: {}",
        i.estimated_onset.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        m,
        "Detection delay: {}",
        i.detection_delay_ms
            .map(duration)
            .unwrap_or_else(|| "unknown".into())
    );
    if !i.description.is_empty() {
        let _ = writeln!(m, "\n{}", i.description);
    }
    let _ = writeln!(m, "\n## Timeline\n");
    let _ = writeln!(m, "| time (UTC) | event | detail |\n|---|---|---|");
    for e in &i.timeline {
        let _ = writeln!(
            m,
            "| {} | {} | {} |",
            e.at,
            e.what,
            e.detail.replace('|', "\\|")
        );
    }
    let _ = writeln!(m, "\n## What changed ({} .. {})\n", i.span[0], i.span[1]);
    if i.changes.is_empty() {
        let _ = writeln!(
            m,
            "Nothing first seen in the span: no new prompt version, response model, error code, deployment, variant or registry change for this service and model."
        );
    }
    for c in &i.changes {
        let _ = writeln!(m, "- {} {} `{}` first seen", c.at, c.field, c.value);
    }
    let _ = writeln!(m, "\n## Other signals that fired\n");
    if i.related.is_empty() {
        let _ = writeln!(m, "None on this service in the span.");
    }
    for r in &i.related {
        let _ = writeln!(m, "- {} {}: {}", r.fired_at, r.rule, r.summary);
    }
    let _ = writeln!(m, "\n## Notifications\n");
    let _ = writeln!(
        m,
        "Routed to {}.",
        if i.channels.is_empty() {
            "no channel".to_string()
        } else {
            i.channels.join(", ")
        }
    );
    if i.notifications.is_empty() {
        let _ = writeln!(
            m,
            "No delivery recorded in the outbox (delivery off, not yet sent, or older than a week)."
        );
    }
    for n in &i.notifications {
        let _ = match &n.delivered_at {
            Some(d) => writeln!(
                m,
                "- {} {}: delivered {d}{} ({} attempt(s))",
                n.channel,
                n.state,
                n.after_ms
                    .map(|a| format!(
                        ", {} after the alert {}",
                        duration(a),
                        if n.state == "resolved" {
                            "resolved"
                        } else {
                            "fired"
                        }
                    ))
                    .unwrap_or_default(),
                n.attempts
            ),
            None => writeln!(
                m,
                "- {} {}: failed after {} attempt(s): {}",
                n.channel,
                n.state,
                n.attempts,
                n.error.as_deref().unwrap_or("")
            ),
        };
    }
    m
}
