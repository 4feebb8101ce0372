//! `driftwatch replay`: JSON-lines files through the daemon's own path — decode → windows →
//! Parquet → detector → alerts — with the file source in place of Kafka.
//!
//! Results depend on the input only: the pipeline's wall clock is frozen at the start (so
//! no partition ever looks idle and commits are cut by size, not time), every window is
//! closed at the end of each file, and notifications go out only when asked for (a
//! backfill must not page anyone about last month).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::config::Config;
use crate::daemon::health::Health;
use crate::daemon::ingest::{run_source, RunError, RunOptions, RunReport};
use crate::metrics::Metrics;
use crate::source::file::{inputs, FileInput, FileSource, FileSourceError, Progress};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Input(#[from] FileSourceError),
    #[error(transparent)]
    Run(#[from] RunError),
}

#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Files in the order to read them; `-` is standard input.
    pub inputs: Vec<PathBuf>,
    /// Deliver notifications (webhooks, PagerDuty, email) for the alerts the replay raises.
    pub notify: bool,
    /// Draw a progress bar on standard error.
    pub progress: bool,
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub inputs: Vec<FileInput>,
    pub lines: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub run: RunReport,
    pub notified: bool,
}

/// Replays `opts.inputs` with `config` until they are read (or `shutdown` resolves: what
/// was read is committed, and a rerun goes on from there).
pub async fn replay(
    config: &Config,
    opts: &ReplayOptions,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<ReplayReport, ReplayError> {
    let start = crate::time::now_ms();
    let list = inputs(&opts.inputs, start)?;
    let (metrics, _registry) = Metrics::new();
    let health = Arc::new(Health::default());
    let progress = Arc::new(Progress::default());
    let total: Option<u64> = list.iter().map(|i| i.size).sum();
    let bar = opts.progress.then(|| progress_bar(total));
    let started = Instant::now();
    let run_opts = RunOptions {
        stop_when_caught_up: Some(Arc::new(AtomicBool::new(true))),
        tick: Some(Duration::from_millis(100)),
        frozen_clock_ms: Some(start),
        notify: opts.notify,
    };
    // Lines are kept whole up to this, so an oversized one is quarantined with its size.
    let max_line = config
        .limits
        .max_message_bytes
        .max(crate::source::file::MAX_LINE);
    let source_inputs = list.clone();
    let source_progress = progress.clone();
    let running = run_source(
        config,
        metrics.clone(),
        health,
        shutdown,
        run_opts,
        |owner| FileSource::start(source_inputs, owner, max_line, source_progress),
    );
    let done = AtomicBool::new(false);
    let drawing = async {
        let Some(bar) = &bar else { return };
        while !done.load(Ordering::Relaxed) {
            draw(bar, &progress, &metrics, started);
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (result, ()) = tokio::join!(
        async {
            let r = running.await;
            done.store(true, Ordering::Relaxed);
            r
        },
        drawing
    );
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let run = result?;
    Ok(ReplayReport {
        inputs: list,
        lines: progress.lines.load(Ordering::Relaxed),
        bytes: progress.bytes.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        run,
        notified: opts.notify,
    })
}

fn progress_bar(total: Option<u64>) -> indicatif::ProgressBar {
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = match total {
        Some(_) => "{spinner} {elapsed_precise} [{bar:30}] {bytes}/{total_bytes} ({binary_bytes_per_sec}, ETA {eta}) {msg}",
        None => "{spinner} {elapsed_precise} {bytes} ({binary_bytes_per_sec}) {msg}",
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(5));
    bar
}

fn draw(bar: &indicatif::ProgressBar, p: &Progress, metrics: &Metrics, started: Instant) {
    bar.set_position(p.bytes.load(Ordering::Relaxed));
    let lines = p.lines.load(Ordering::Relaxed);
    let events = metrics.events_decoded_request.get();
    let secs = started.elapsed().as_secs_f64().max(1e-3);
    bar.set_message(format!(
        "{lines} lines, {events} events, {:.0} events/s",
        events as f64 / secs
    ));
}

impl ReplayReport {
    /// The summary `driftwatch replay` prints.
    pub fn render(&self, data_dir: &std::path::Path) -> String {
        use std::fmt::Write;
        let r = &self.run;
        let p = &r.pipeline;
        let secs = self.elapsed.as_secs_f64();
        let mut s = String::new();
        let _ = writeln!(s, "driftwatch replay: done");
        for i in &self.inputs {
            let _ = writeln!(s, "  input      {} (topic {})", i.name(), i.topic);
        }
        let _ = writeln!(
            s,
            "  read       {} lines ({} bytes as stored) in {secs:.1} s: {} events ({:.0}/s), {} late scores joined, {} unmatched",
            self.lines,
            self.bytes,
            p.requests,
            p.requests as f64 / secs.max(1e-3),
            p.scores,
            p.scores_unmatched,
        );
        if p.skipped_replayed > 0 {
            let _ = writeln!(
                s,
                "  skipped    {} lines already committed by an earlier replay",
                p.skipped_replayed
            );
        }
        let _ = writeln!(
            s,
            "  windows    {} rows over {} series",
            r.windows.series_windows_closed, r.series
        );
        let q: u64 = p.quarantined.values().sum();
        let _ = writeln!(
            s,
            "  quarantine {q} lines (the quarantine table has each one with its line number as kafka_offset)"
        );
        for (reason, n) in &p.quarantined {
            let _ = writeln!(s, "               {n:>6}  {reason}");
        }
        use crate::detect::alerts::AlertState;
        let fired = r.transitions_to(AlertState::Firing);
        let resolved = r.transitions_to(AlertState::Resolved);
        let _ = writeln!(
            s,
            "  alerts     {fired} fired, {resolved} resolved, in {}/alerts/; {}",
            data_dir.display(),
            if self.notified {
                "notifications sent (--notify)"
            } else {
                "no notifications sent (--notify sends them)"
            }
        );
        s
    }
}
