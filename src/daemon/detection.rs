//! Stored windows through a [`Detector`]: the history a restarted daemon resumes from, and
//! `driftwatch backtest`, which replays the `windows` table through rules with the same code
//! as the live daemon.

use std::path::Path;

use crate::config::Config;
use crate::detect::alerts::Transition;
use crate::detect::detector::{Detector, DetectorSnapshot};
use crate::detect::rules::{RuleContext, RuleError, RuleSet};
use crate::storage::read::{read_windows, ReadError, StoredWindow};

/// Why detection could not start.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("rules in {dir}:\n{}", .errors.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Rules {
        dir: std::path::PathBuf,
        errors: Vec<RuleError>,
    },
    #[error("reading stored windows: {0}")]
    Read(#[from] ReadError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("rule {rule} ({file}:{line}): {message}")]
    Breaker {
        rule: String,
        file: std::path::PathBuf,
        line: u64,
        message: String,
    },
    #[error(transparent)]
    Registry(#[from] crate::daemon::registry::RegistrySetupError),
}

/// What rule validation needs from `config`.
pub fn rule_context(config: &Config) -> Result<RuleContext, crate::config::ConfigError> {
    Ok(RuleContext {
        labels: config.series.parsed_labels()?,
        window: config.windows.width,
        slice: config.windows.slice,
        lateness: config.windows.allowed_lateness,
    })
}

/// Loads and validates the rules of `dir`.
pub fn load_rules(config: &Config, dir: &Path) -> Result<RuleSet, SetupError> {
    let set = load_rule_files(config, dir)?;
    check_breakers(config, &set)?;
    Ok(set)
}

/// A model-scoped breaker needs the model: a breaker rule must keep `request_model` among
/// its instance labels (`by`), or the gateway would be told to fall back from nothing.
fn check_breakers(config: &Config, set: &RuleSet) -> Result<(), SetupError> {
    if !config.breaker.enabled || config.breaker.scope != crate::detect::breaker::Scope::Model {
        return Ok(());
    }
    let labels = config.series.parsed_labels()?;
    for r in &set.rules {
        if r.action != Some(crate::detect::rules::Action::CircuitBreaker) {
            continue;
        }
        let keeps_model = r.by.iter().any(|&i| {
            labels
                .get(i)
                .is_some_and(|l| l.as_str() == crate::detect::breaker::MODEL_LABEL)
        });
        if !keeps_model {
            return Err(SetupError::Breaker {
                rule: r.name.clone(),
                file: r.file.clone(),
                line: r.line,
                message: format!(
                    "action: circuit_breaker with breaker.scope = \"model\" needs `{}` among the rule's labels (add it to `by`, and to series.labels), or set breaker.scope = \"series\"",
                    crate::detect::breaker::MODEL_LABEL
                ),
            });
        }
    }
    Ok(())
}

fn load_rule_files(config: &Config, dir: &Path) -> Result<RuleSet, SetupError> {
    let ctx = rule_context(config)?;
    if dir == Path::new(crate::config::DEFAULT_RULES_DIR) && !dir.exists() {
        tracing::info!(
            "no ./{} directory: using the default rules built into this binary",
            crate::config::DEFAULT_RULES_DIR
        );
        let texts: Vec<_> = crate::detect::rules::BUILTIN_RULES
            .iter()
            .map(|(n, t)| {
                (
                    std::path::PathBuf::from(format!("(built in) {n}")),
                    t.to_string(),
                )
            })
            .collect();
        return crate::detect::rules::load_texts(&texts, &ctx).map_err(|errors| {
            SetupError::Rules {
                dir: dir.to_path_buf(),
                errors,
            }
        });
    }
    crate::detect::rules::load_dir(dir, &ctx).map_err(|errors| SetupError::Rules {
        dir: dir.to_path_buf(),
        errors,
    })
}

fn label_names(config: &Config) -> Result<Vec<&'static str>, crate::config::ConfigError> {
    Ok(config
        .series
        .parsed_labels()?
        .iter()
        .map(|l| l.as_str())
        .collect())
}

/// A detector for `rules`, resumed from `snapshot` with its history rebuilt from the
/// `windows` table: the lookback of the rules before the last evaluated tick (or before the
/// newest stored window when there is no snapshot). Windows after the last evaluated tick are
/// loaded too, so the ticks a crash left unevaluated are evaluated on the same data.
pub fn resume(
    config: &Config,
    rules: RuleSet,
    snapshot: Option<DetectorSnapshot>,
) -> Result<Detector, SetupError> {
    let settings = config.detection.settings(&config.windows);
    let mut d = Detector::new(rules, label_names(config)?, settings);
    d.set_breaker_settings(breaker_settings(config));
    d.set_budgets(config.budgets.clone());
    d.set_analyses(config.analyses.clone());
    // The lookback before the last evaluated tick (or, on a first start, before the newest
    // stored hour), from an hour boundary so hourly roll-ups are whole.
    let reference = match snapshot.as_ref().and_then(|s| s.evaluated_window_ms) {
        Some(t) => Some(t),
        None => crate::storage::read::newest_hour(&config.storage.data_dir)
            .map(|h| h + crate::detect::history::COARSE_MS),
    };
    let from = reference.map(|t| {
        let f = t - d.rules().lookback_ms() - settings.window_ms;
        f.div_euclid(crate::detect::history::COARSE_MS) * crate::detect::history::COARSE_MS
    });
    let labels = label_names(config)?;
    let codes = match (reference, from) {
        (Some(t), Some(f)) => feed_codes(&mut d, &config.storage.data_dir, &labels, t, f)?,
        _ => 0,
    };
    let stored = read_windows(&config.storage.data_dir, &labels, d.metrics(), from, None)?;
    let newest = stored.iter().map(|w| w.end_ms).max();
    let mut loaded = 0usize;
    for w in stored {
        feed(&mut d, w, settings.slice_ms);
        loaded += 1;
    }
    match snapshot {
        Some(s) => {
            // Roll up what the uninterrupted run would have rolled up by now.
            if let Some(t) = s.evaluated_window_ms {
                d.maintain(t);
            }
            d.restore(s)
        }
        // First start on existing data: it is baseline, not news.
        None => {
            if let Some(n) = newest {
                d.skip_until(n);
            }
        }
    }
    tracing::info!(
        rules = d.rules().rules.len(),
        windows = loaded,
        code_rows = codes,
        series = d.history().series_count(),
        "detector history rebuilt from the windows table"
    );
    Ok(d)
}

/// Feeds the error-code memory the stored rows (hourly roll-ups where compacted) from the
/// new-code rules' lookback before `reference` up to `until`, where the windows the rules
/// read start. Returns the rows read.
fn feed_codes(
    d: &mut Detector,
    data_dir: &Path,
    labels: &[&str],
    reference: i64,
    until: i64,
) -> Result<usize, SetupError> {
    let lookback = d.rules().code_lookback_ms();
    if lookback == 0 {
        return Ok(0);
    }
    let hour = crate::detect::history::COARSE_MS;
    let from = (reference - lookback - hour).div_euclid(hour) * hour;
    if from >= until {
        return Ok(0);
    }
    let rows = crate::storage::read::read_history(
        data_dir,
        labels,
        &Default::default(),
        Some(from),
        Some(until),
    )?;
    for w in &rows {
        d.observe_codes(&w.labels, w.start_ms, w.end_ms, &w.summary);
    }
    Ok(rows.len())
}

fn feed(d: &mut Detector, w: StoredWindow, slice_ms: i64) {
    if w.correction_after.is_some() {
        d.observe_correction_slices(&w.labels, w.start_ms, w.partition, &w.slices);
        d.observe_correction_window(&w.labels, w.start_ms, w.summary);
        return;
    }
    for (i, slice) in w.slices.iter().enumerate() {
        d.observe_slice(
            &w.labels,
            w.start_ms + i as i64 * slice_ms,
            w.partition,
            slice,
        );
    }
    d.observe_summary(&w.labels, w.start_ms, w.summary);
}

/// Replays stored windows through `rules`: windows are fed in time order and every tick is
/// evaluated once all windows ending by it are in, exactly as the live detector does.
pub fn backtest(
    config: &Config,
    rules: RuleSet,
    data_dir: &Path,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<BacktestReport, SetupError> {
    let settings = config.detection.settings(&config.windows);
    let labels = label_names(config)?;
    let mut d = Detector::new(rules, labels.clone(), settings);
    d.set_breaker_settings(breaker_settings(config));
    d.set_budgets(config.budgets.clone());
    d.set_analyses(config.analyses.clone());
    // The registry as it is now (deprecations, unknown models, fallbacks).
    d.set_registry(crate::daemon::registry::read(config)?.map(|(r, _)| std::sync::Arc::new(r)));
    // Read the lookback before `from` too, so the first ticks have their baselines; ticks
    // before `from` are evaluated but their transitions are not reported.
    // From an hour boundary, where the code memory's hourly rows end.
    let hour = crate::detect::history::COARSE_MS;
    let read_from =
        from.map(|f| (f - d.rules().lookback_ms() - settings.window_ms).div_euclid(hour) * hour);
    if let (Some(f), Some(rf)) = (from, read_from) {
        feed_codes(&mut d, data_dir, &labels, f, rf)?;
    }
    let (stored, corrections): (Vec<StoredWindow>, Vec<StoredWindow>) =
        read_windows(data_dir, &labels, d.metrics(), read_from, to)?
            .into_iter()
            .partition(|w| w.correction_after.is_none());
    let windows = stored.len();
    let first = stored.first().map(|w| w.start_ms);
    let last = stored.iter().map(|w| w.end_ms).max();
    let mut transitions = Vec::new();
    let mut breakers = Vec::new();
    // Correction rows count from the ticks after those the live detector had evaluated
    // when they arrived: the window part after its window tick, the slice part after its
    // slice tick, applied between the same ticks here.
    let mut steps: Vec<(i64, bool, usize)> = Vec::new();
    for (i, c) in corrections.iter().enumerate() {
        steps.push((c.correction_after.unwrap_or(i64::MIN), false, i));
        steps.push((c.correction_after_slice.unwrap_or(i64::MIN), true, i));
    }
    steps.sort();
    let mut steps = steps.into_iter().peekable();
    let mut it = stored.into_iter().peekable();
    while let Some(w) = it.next() {
        let start = w.start_ms;
        let end = w.end_ms;
        feed(&mut d, w, settings.slice_ms);
        // All rows of this window start are in: evaluate up to its end.
        if it.peek().is_none_or(|n| n.start_ms != start) {
            while let Some((at, slice_part, i)) = steps.next_if(|s| s.0 < end) {
                let c = &corrections[i];
                if slice_part {
                    transitions.extend(d.evaluate(None, Some(at)));
                    d.observe_correction_slices(&c.labels, c.start_ms, c.partition, &c.slices);
                } else {
                    transitions.extend(d.evaluate(Some(at), None));
                    d.observe_correction_window(&c.labels, c.start_ms, c.summary.clone());
                }
                breakers.extend(d.take_breaker_transitions());
            }
            transitions.extend(d.evaluate(Some(end), Some(end)));
            breakers.extend(d.take_breaker_transitions());
        }
    }
    if let Some(f) = from {
        transitions.retain(|t: &Transition| t.at_ms >= f);
        breakers.retain(|b: &crate::detect::breaker::BreakerTransition| b.at_ms >= f);
    }
    Ok(BacktestReport {
        windows,
        first_ms: first,
        last_ms: last,
        transitions,
        breakers,
        evaluations: d.evaluations(),
    })
}

/// The breaker settings of `config`, `None` when breakers are off.
pub fn breaker_settings(config: &Config) -> Option<crate::detect::breaker::BreakerSettings> {
    config
        .breaker
        .enabled
        .then(|| crate::detect::breaker::BreakerSettings::from(&config.breaker))
}

/// What a backtest found.
#[derive(Debug, Clone)]
pub struct BacktestReport {
    /// Stored window rows read.
    pub windows: usize,
    pub first_ms: Option<i64>,
    pub last_ms: Option<i64>,
    pub transitions: Vec<Transition>,
    /// Circuit-breaker transitions the rules would have caused.
    pub breakers: Vec<crate::detect::breaker::BreakerTransition>,
    /// Instance evaluations done.
    pub evaluations: u64,
}
