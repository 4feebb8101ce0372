//! `driftwatch analyze`: the configured rollout analyses judged over the stored history,
//! tick by tick as the daemon judges them: the `windows` table for canary and A/B arms, the
//! `events` table (paired by `trace_id`) for a shadow.

use std::path::Path;

use serde_json::Value;

use crate::config::Config;
use crate::detect::analysis::{Analyses, AnalysisKind, AnalysisReport};
use crate::event::{Deployment, RequestEvent, SeriesLabel};
use crate::query::{encode_output, Format, Limits, QueryEngine};
use crate::storage::read::read_windows;
use crate::window::pairs::PairIndex;

/// What to judge.
#[derive(Debug, Clone, Default)]
pub struct AnalyzeQuery {
    /// Analysis names; empty: every configured one.
    pub names: Vec<String>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    /// Bad usage: no analyses configured, an unknown name (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("reading the windows: {0}")]
    Read(#[from] crate::storage::read::ReadError),
    #[error("reading the events: {0}")]
    Query(#[from] crate::query::QueryError),
}

/// Judges the analyses over `[from, to)` of the history in `data_dir`.
pub async fn analyze(
    config: &Config,
    data_dir: &Path,
    q: &AnalyzeQuery,
) -> Result<Vec<AnalysisReport>, AnalyzeError> {
    if config.analyses.is_empty() {
        return Err(AnalyzeError::Usage(
            "no analyses configured: add [[analyses]] to the config (see the README, \"Canary, A/B and shadow analyses\")".into(),
        ));
    }
    for n in &q.names {
        if !config.analyses.iter().any(|a| &a.name == n) {
            let known: Vec<&str> = config.analyses.iter().map(|a| a.name.as_str()).collect();
            return Err(AnalyzeError::Usage(format!(
                "no analysis {n:?} in the config; configured: {}",
                known.join(", ")
            )));
        }
    }
    let configs: Vec<_> = config
        .analyses
        .iter()
        .filter(|a| q.names.is_empty() || q.names.contains(&a.name))
        .cloned()
        .collect();
    let labels = config.series.parsed_labels()?;
    let names: Vec<&'static str> = labels.iter().map(|l| l.as_str()).collect();
    let window_ms = config.windows.width.as_millis() as i64;
    let mut analyses = Analyses::new(configs.clone(), names.clone(), window_ms);
    let mut clock: Option<i64> = None;
    if configs.iter().any(|c| c.kind != AnalysisKind::Shadow) {
        let data = data_dir.to_path_buf();
        let metrics = analyses.metrics();
        let (from, to) = (q.from_ms, q.to_ms);
        let names2 = names.clone();
        let windows =
            tokio::task::spawn_blocking(move || read_windows(&data, &names2, &metrics, from, to))
                .await
                .map_err(|e| AnalyzeError::Usage(format!("reading the windows: {e}")))??;
        for w in windows {
            clock = Some(clock.map_or(w.end_ms, |c: i64| c.max(w.end_ms)));
            analyses.observe(&w.labels, w.start_ms, &w.summary);
        }
    }
    let shadows: Vec<String> = configs
        .iter()
        .filter(|c| c.kind == AnalysisKind::Shadow)
        .map(|c| c.service.clone())
        .collect();
    if !shadows.is_empty() {
        let mut index = PairIndex::new(shadows.clone(), labels.clone(), window_ms, usize::MAX / 4);
        for ev in shadow_events(data_dir, &names, &labels, &shadows, q).await? {
            let end = (ev.timestamp_ms.div_euclid(window_ms) + 1) * window_ms;
            clock = Some(clock.map_or(end, |c| c.max(end)));
            index.observe(&ev);
        }
        for (l, start, stats) in index.take_all() {
            analyses.observe_pairs(&l, start, stats);
        }
    }
    if let Some(c) = clock {
        analyses.advance(c);
    }
    Ok(analyses.reports())
}

/// The requests of the shadowed services that carry a `trace_id`, in event time order.
async fn shadow_events(
    data_dir: &Path,
    names: &[&'static str],
    labels: &[SeriesLabel],
    services: &[String],
    q: &AnalyzeQuery,
) -> Result<Vec<RequestEvent>, AnalyzeError> {
    let engine = QueryEngine::open(data_dir, names)?;
    if !engine.tables().contains(&"events") {
        return Ok(Vec::new());
    }
    let services: Vec<String> = services
        .iter()
        .map(|s| crate::daemon::incident::lit(s))
        .collect();
    let mut filter = format!(
        "service IN ({}) AND trace_id IS NOT NULL AND NOT late",
        services.join(", ")
    );
    if let Some(f) = q.from_ms {
        filter += &format!(" AND CAST(timestamp AS BIGINT) >= {f}");
    }
    if let Some(t) = q.to_ms {
        filter += &format!(" AND CAST(timestamp AS BIGINT) < {t}");
    }
    // The series labels, and what pairing reads whether or not they are labels.
    let mut read: Vec<SeriesLabel> = labels.to_vec();
    for l in [SeriesLabel::Deployment, SeriesLabel::PromptId] {
        if !read.contains(&l) {
            read.push(l);
        }
    }
    let cols: String = read
        .iter()
        .filter(|l| **l != SeriesLabel::Service)
        .map(|l| format!(", {}", l.as_str()))
        .collect();
    let sql = format!(
        "SELECT service{cols}, trace_id, CAST(timestamp AS BIGINT) AS t, latency_ms, output_tokens, \
         judge_scores FROM events WHERE {filter} ORDER BY t, kafka_partition, kafka_offset"
    );
    let out = engine
        .run(
            &sql,
            &Limits {
                max_rows: usize::MAX,
                max_bytes: usize::MAX / 2,
                timeout: std::time::Duration::from_secs(3600),
            },
        )
        .await?;
    let bytes = encode_output(&out, Format::JsonArray)?;
    let rows: Vec<serde_json::Map<String, Value>> = serde_json::from_slice(&bytes)
        .map_err(|e| crate::query::QueryError::Execution(format!("reading the result: {e}")))?;
    let text = |r: &serde_json::Map<String, Value>, k: &str| -> Option<String> {
        r.get(k).and_then(Value::as_str).map(str::to_string)
    };
    Ok(rows
        .iter()
        .map(|r| {
            let mut ev = RequestEvent {
                service: text(r, "service").unwrap_or_default(),
                trace_id: text(r, "trace_id"),
                timestamp_ms: r.get("t").and_then(Value::as_i64).unwrap_or(0),
                latency_ms: r.get("latency_ms").and_then(Value::as_f64).unwrap_or(0.0),
                output_tokens: r.get("output_tokens").and_then(Value::as_u64),
                judge_scores: r
                    .get("judge_scores")
                    .and_then(Value::as_object)
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| v.as_f64().map(|v| (k.clone(), v)))
                            .collect()
                    })
                    .unwrap_or_default(),
                ..RequestEvent::default()
            };
            for l in &read {
                if let Some(v) = text(r, l.as_str()) {
                    set_label(&mut ev, *l, v);
                }
            }
            ev
        })
        .collect())
}

fn set_label(ev: &mut RequestEvent, l: SeriesLabel, v: String) {
    match l {
        SeriesLabel::Service => ev.service = v,
        SeriesLabel::Route => ev.route = Some(v),
        SeriesLabel::Environment => ev.environment = Some(v),
        SeriesLabel::Provider => ev.provider = Some(v),
        SeriesLabel::RequestModel => ev.request_model = v,
        SeriesLabel::ResponseModel => ev.response_model = Some(v),
        SeriesLabel::PromptId => ev.prompt_id = Some(v),
        SeriesLabel::PromptVersion => ev.prompt_version = Some(v),
        SeriesLabel::Deployment => {
            ev.deployment = match v.as_str() {
                "stable" => Some(Deployment::Stable),
                "canary" => Some(Deployment::Canary),
                "shadow" => Some(Deployment::Shadow),
                _ => None,
            }
        }
        SeriesLabel::Variant => ev.variant = Some(v),
        SeriesLabel::QueryType => ev.query_type = Some(v),
    }
}
