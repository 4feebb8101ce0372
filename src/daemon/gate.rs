//! The populations `driftwatch gate` compares: a candidate prompt version against a baseline
//! version of the same `prompt_id`, each merged from the stored window history (late judge
//! scores and feedback included, as the windows hold them), or the candidate from an eval
//! suite's results file in the event contract.

use std::collections::{BTreeSet, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::decode::{Decoded, Decoder};
use crate::detect::history::Summary;
use crate::event::{ScoreValue, SeriesLabel};
use crate::storage::read::{read_history, ReadError};
use crate::window::sketch::WindowSketch;

/// What to compare.
#[derive(Debug, Clone)]
pub struct GateQuery {
    pub prompt_id: String,
    pub candidate: String,
    pub baseline: String,
    /// Further series label filters (`service=chat`).
    pub matchers: Vec<(String, String)>,
    pub from_ms: Option<i64>,
    pub to_ms: Option<i64>,
}

/// Why the populations could not be built.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Bad usage: unknown prompt id or version, labels not configured (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("reading the history: {0}")]
    Read(#[from] ReadError),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl GateError {
    /// Usage and config errors are the caller's to fix (exit 2); the rest are run-time.
    pub fn is_usage(&self) -> bool {
        matches!(self, GateError::Usage(_) | GateError::Config(_))
    }
}

/// The two sides and where they came from.
#[derive(Debug, Clone, Default)]
pub struct Populations {
    pub candidate: Summary,
    pub baseline: Summary,
    /// "history", or the results file.
    pub candidate_source: String,
    pub baseline_source: String,
    /// Window rows merged per side.
    pub candidate_rows: usize,
    pub baseline_rows: usize,
    /// Results file only: score lines whose response is not in the file.
    pub unmatched_scores: u64,
    /// Results file only: lines that did not decode, with their reason (1-based line).
    pub rejected: Vec<(u64, String)>,
    /// Results file only: requests of another prompt id or version, left out.
    pub skipped: u64,
}

/// Every histogram metric (the gate reads latency, tokens and cost).
fn all_metrics() -> BTreeSet<usize> {
    (0..crate::window::sketch::Metric::ALL.len()).collect()
}

/// Label positions of `prompt_id` and `prompt_version`, and of the matchers.
struct Positions {
    prompt_id: usize,
    version: usize,
    matchers: Vec<(usize, String)>,
}

fn positions(config: &Config, q: &GateQuery) -> Result<(Vec<&'static str>, Positions), GateError> {
    let labels: Vec<&'static str> = config
        .series
        .parsed_labels()?
        .iter()
        .map(|l| l.as_str())
        .collect();
    let find = |l: SeriesLabel| labels.iter().position(|n| *n == l.as_str());
    let (Some(prompt_id), Some(version)) = (
        find(SeriesLabel::PromptId),
        find(SeriesLabel::PromptVersion),
    ) else {
        return Err(GateError::Usage(format!(
            "series.labels is [{}]: the gate compares prompt versions per prompt_id, so both \
             prompt_id and prompt_version must be series labels (the default labels have them)",
            labels.join(", ")
        )));
    };
    let mut matchers = Vec::new();
    for (k, v) in &q.matchers {
        let i = labels.iter().position(|n| n == k).ok_or_else(|| {
            GateError::Usage(format!(
                "--match {k}={v}: {k:?} is not a series label; series.labels is [{}]",
                labels.join(", ")
            ))
        })?;
        matchers.push((i, v.clone()));
    }
    Ok((
        labels,
        Positions {
            prompt_id,
            version,
            matchers,
        },
    ))
}

/// Both sides from the window history under `data_dir`.
pub fn from_history(
    config: &Config,
    data_dir: &Path,
    q: &GateQuery,
) -> Result<Populations, GateError> {
    let (labels, pos) = positions(config, q)?;
    let rows = read_history(data_dir, &labels, &all_metrics(), q.from_ms, q.to_ms)?;
    let mut out = Populations {
        candidate_source: "history".into(),
        baseline_source: "history".into(),
        ..Populations::default()
    };
    let mut prompts: BTreeSet<String> = BTreeSet::new();
    let mut versions: BTreeSet<String> = BTreeSet::new();
    for w in &rows {
        let l = &w.labels;
        prompts.insert(l[pos.prompt_id].clone());
        if l[pos.prompt_id] != q.prompt_id || !pos.matchers.iter().all(|(i, v)| &l[*i] == v) {
            continue;
        }
        versions.insert(l[pos.version].clone());
        if l[pos.version] == q.candidate {
            out.candidate.merge(&w.summary);
            out.candidate_rows += 1;
        } else if l[pos.version] == q.baseline {
            out.baseline.merge(&w.summary);
            out.baseline_rows += 1;
        }
    }
    let list = |s: &BTreeSet<String>| {
        let v: Vec<String> = s
            .iter()
            .filter(|x| !x.is_empty())
            .map(|x| format!("{x:?}"))
            .collect();
        if v.is_empty() {
            "none".to_string()
        } else {
            v.join(", ")
        }
    };
    let span = match (q.from_ms, q.to_ms) {
        (None, None) => String::new(),
        _ => " in the given --from/--to span".into(),
    };
    if !prompts.contains(&q.prompt_id) {
        return Err(GateError::Usage(format!(
            "prompt id {:?} has no windows under {}{span}; prompt ids there: {}",
            q.prompt_id,
            data_dir.display(),
            list(&prompts)
        )));
    }
    if !versions.contains(&q.baseline) {
        return Err(GateError::Usage(format!(
            "baseline version {:?} of prompt {:?} has no windows{span}; its versions: {}",
            q.baseline,
            q.prompt_id,
            list(&versions)
        )));
    }
    Ok(out)
}

/// The candidate version must be in the history too (without `--candidate-file`).
pub fn require_candidate(p: &Populations, q: &GateQuery, data_dir: &Path) -> Result<(), GateError> {
    if p.candidate_rows == 0 {
        return Err(GateError::Usage(format!(
            "candidate version {:?} of prompt {:?} has no windows under {}; give \
             --candidate-file for eval-suite results",
            q.candidate,
            q.prompt_id,
            data_dir.display()
        )));
    }
    Ok(())
}

/// The candidate from an eval suite's results: JSON lines of the event contract (requests,
/// and score / feedback lines joined to them by `response_id` or `trace_id`). Requests of
/// another `prompt_id` or `prompt_version` than the candidate's are left out (counted);
/// requests without them are the candidate's.
pub fn candidate_from_file(
    config: &Config,
    path: &Path,
    q: &GateQuery,
) -> Result<Populations, GateError> {
    let io = |source| GateError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let registry = crate::daemon::registry::read(config)
        .map_err(|e| GateError::Usage(e.to_string()))?
        .map(|(r, _)| std::sync::Arc::new(r));
    let decoder = Decoder::new(config.limits.clone(), config.prices.clone())
        .with_near_context(config.registry.near_context)
        .with_registry(registry);
    let now_ms = chrono::Utc::now().timestamp_millis();
    let mut sketch = WindowSketch::default();
    let mut keys: HashSet<String> = HashSet::new();
    let mut scores = Vec::new();
    let mut out = Populations {
        candidate_source: path.display().to_string(),
        ..Populations::default()
    };
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_no = i as u64 + 1;
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        match decoder.decode(Some(line.as_bytes()), now_ms) {
            Err(r) => out.rejected.push((line_no, r.to_string())),
            Ok(Decoded::Request(ev)) => {
                let other =
                    |v: &Option<String>, want: &str| v.as_deref().is_some_and(|v| v != want);
                if other(&ev.prompt_id, &q.prompt_id) || other(&ev.prompt_version, &q.candidate) {
                    out.skipped += 1;
                    continue;
                }
                for k in [&ev.response_id, &ev.trace_id].into_iter().flatten() {
                    keys.insert(k.clone());
                }
                sketch.observe(&ev, 0, line_no as i64);
            }
            Ok(Decoded::Score(s)) => scores.push((line_no, s)),
        }
    }
    for (line_no, s) in scores {
        if !keys.contains(&s.response_id) {
            out.unmatched_scores += 1;
            continue;
        }
        match &s.value {
            ScoreValue::Judge { name, value, label } => {
                sketch.add_late_judge(name, *value, label.as_deref(), 0, line_no as i64)
            }
            ScoreValue::Feedback(f) => sketch.add_late_feedback(*f, 0, line_no as i64),
        }
    }
    out.candidate = Summary::from_sketch(&sketch, &all_metrics());
    out.candidate_rows = usize::from(sketch.event_count > 0);
    Ok(out)
}

/// The baseline from history and the candidate from `file`.
pub fn with_candidate_file(
    config: &Config,
    data_dir: &Path,
    file: &Path,
    q: &GateQuery,
) -> Result<Populations, GateError> {
    let history = from_history(config, data_dir, q)?;
    let mut p = candidate_from_file(config, file, q)?;
    p.baseline = history.baseline;
    p.baseline_rows = history.baseline_rows;
    p.baseline_source = history.baseline_source;
    Ok(p)
}
