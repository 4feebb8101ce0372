//! Parquet writer for the `events`, `windows` and `quarantine` tables.
//!
//! Hive-partitioned (`<table>/date=YYYY-MM-DD/hour=HH/`), zstd-compressed. Every file is
//! written under a hidden in-progress name, fsynced, renamed to its final name and the
//! directory fsynced, so a reader never sees half a file and a crash leaves only in-progress
//! leftovers, which [`ParquetSink::new`] removes. Names are deterministic in the Kafka
//! coordinates they cover.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use chrono::{DateTime, Datelike, Timelike, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::storage::layout::{file_safe, ALERTS, EVENTS, QUARANTINE, WINDOWS};
use crate::storage::tables::{self, EventRow, QuarantineRow};
use crate::window::state::{ClosedWindow, WindowSnapshot};

/// What one partition received since its last commit, plus the state to resume from.
#[derive(Debug)]
pub struct CommitJob {
    pub topic: Arc<str>,
    pub partition: i32,
    /// Commits of a partition are numbered; recovery compares an interrupted commit's
    /// number with the checkpoint's to tell whether it completed.
    pub seq: u64,
    /// Offsets `[first, next)` covered; `first == next` when only windows closed.
    pub first_offset: i64,
    pub next_offset: i64,
    pub events: Vec<EventRow>,
    pub quarantine: Vec<QuarantineRow>,
    /// Closed windows and correction rows (late scores of windows already written).
    pub windows: Vec<ClosedWindow>,
    /// Late-score index log bytes, written before the checkpoint (which names their end).
    pub responses: Option<crate::window::responses::LogAppend>,
    pub snapshot: WindowSnapshot,
    /// Wall clock when the job was cut, for quarantine rows without a broker timestamp.
    pub now_ms: i64,
}

impl CommitJob {
    pub fn is_empty(&self) -> bool {
        self.first_offset == self.next_offset && self.windows.is_empty()
    }
}

const IN_PROGRESS_SUFFIX: &str = ".inprogress";

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error(transparent)]
    Io(#[from] crate::durable::IoError),
    #[error("writing parquet {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("building record batch: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    #[error("storage.zstd_level: {0}")]
    Level(parquet::errors::ParquetError),
}

use crate::durable::io;

use crate::time::HOUR_MS;

/// A file to write: table, final path and content.
#[derive(Debug, Clone)]
pub struct Planned {
    pub table: &'static str,
    pub path: PathBuf,
    pub batch: RecordBatch,
}

/// One file written: table, path and rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub table: &'static str,
    pub path: PathBuf,
    pub rows: usize,
}

/// Writes the tables under one data directory.
#[derive(Debug)]
pub struct ParquetSink {
    root: PathBuf,
    props: WriterProperties,
    labels: Vec<&'static str>,
}

impl ParquetSink {
    /// Creates the table directories and removes in-progress files left by a crash.
    pub fn new(root: &Path, zstd_level: i32, labels: Vec<&'static str>) -> Result<Self, SinkError> {
        for t in [EVENTS, WINDOWS, QUARANTINE, ALERTS] {
            let dir = root.join(t);
            fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
            remove_in_progress(&dir)?;
        }
        let props = writer_properties(zstd_level).map_err(SinkError::Level)?;
        Ok(Self {
            root: root.to_path_buf(),
            props,
            labels,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Plans the files of one commit of one partition: events and quarantined messages by
    /// the hour they fall in, named `<topic>-<partition>-<first offset>-<next offset>`, and
    /// closed windows by the hour they start in, named the same plus `-w<first window start>`.
    /// Names depend only on the Kafka coordinates, so a replay writes the same names.
    pub fn plan_commit(&self, job: &CommitJob) -> Result<Vec<Planned>, SinkError> {
        let base = format!(
            "{}-{}-{}-{}",
            file_safe(&job.topic),
            job.partition,
            job.first_offset,
            job.next_offset
        );
        let mut out = Vec::new();
        let mut events: BTreeMap<i64, Vec<&EventRow>> = BTreeMap::new();
        for r in &job.events {
            events
                .entry(r.event.timestamp_ms.div_euclid(HOUR_MS))
                .or_default()
                .push(r);
        }
        for (hour, rows) in events {
            out.push(Planned {
                table: EVENTS,
                path: self
                    .partition_dir(EVENTS, hour * HOUR_MS)
                    .join(format!("{base}.parquet")),
                batch: tables::events_batch(&rows)?,
            });
        }
        let mut quarantine: BTreeMap<i64, Vec<QuarantineRow>> = BTreeMap::new();
        for r in &job.quarantine {
            let hour = r
                .kafka_timestamp_ms
                .unwrap_or(job.now_ms)
                .div_euclid(HOUR_MS);
            quarantine.entry(hour).or_default().push(r.clone());
        }
        for (hour, rows) in quarantine {
            out.push(Planned {
                table: QUARANTINE,
                path: self
                    .partition_dir(QUARANTINE, hour * HOUR_MS)
                    .join(format!("{base}.parquet")),
                batch: tables::quarantine_batch(&rows)?,
            });
        }
        let mut windows: BTreeMap<i64, Vec<&ClosedWindow>> = BTreeMap::new();
        for w in job.windows.iter().filter(|w| !w.series.is_empty()) {
            windows
                .entry(w.start_ms.div_euclid(HOUR_MS))
                .or_default()
                .push(w);
        }
        for (hour, group) in windows {
            let name = format!("{base}-w{}.parquet", group[0].start_ms);
            out.push(Planned {
                table: WINDOWS,
                path: self.partition_dir(WINDOWS, hour * HOUR_MS).join(name),
                batch: tables::windows_batch(&self.labels, &group)?,
            });
        }
        Ok(out)
    }

    /// Plans the `alerts` files of a batch of transitions: one file per rule and evaluation
    /// time, `alerts-<at ms>-<rule>-<rows hash>.parquet`, in the hour of the evaluation. A
    /// rule is evaluated once per tick, so re-evaluating a tick after a crash rewrites the
    /// same file; rows made for the same tick outside an evaluation (a reload ending alerts
    /// or closing breakers) get a file of their own instead of replacing the tick's.
    pub fn plan_alerts(
        &self,
        transitions: &[crate::detect::alerts::Transition],
        breakers: &[crate::detect::breaker::BreakerTransition],
    ) -> Result<Vec<Planned>, SinkError> {
        let mut groups: BTreeMap<(i64, &str), Vec<tables::AlertRecord>> = BTreeMap::new();
        for t in transitions {
            groups
                .entry((t.at_ms, t.rule.as_str()))
                .or_default()
                .push(t.into());
        }
        for b in breakers {
            groups
                .entry((b.at_ms, b.rule.as_str()))
                .or_default()
                .push(b.into());
        }
        let mut out = Vec::new();
        for ((at, rule), rows) in groups {
            let ids: Vec<String> = rows
                .iter()
                .map(|r| format!("{} {} {}", r.fingerprint, r.from, r.to))
                .collect();
            let hash = crate::time::fnv_hex(ids.iter().map(|s| s.as_bytes()));
            out.push(Planned {
                table: ALERTS,
                path: self.partition_dir(ALERTS, at).join(format!(
                    "alerts-{at}-{}-{}.parquet",
                    file_safe(rule),
                    &hash[..8]
                )),
                batch: tables::alerts_batch(&self.labels, &rows)?,
            });
        }
        Ok(out)
    }

    /// Writes planned files (each atomically), then makes the renames durable.
    pub fn write(&self, planned: &[Planned]) -> Result<Vec<Written>, SinkError> {
        let mut out = Vec::with_capacity(planned.len());
        for p in planned {
            out.push(self.write_file(p.table, &p.path, &p.batch)?);
        }
        sync_dirs(&out)?;
        Ok(out)
    }

    fn partition_dir(&self, table: &str, ts_ms: i64) -> PathBuf {
        let t: DateTime<Utc> = DateTime::from_timestamp_millis(ts_ms).unwrap_or_default();
        self.root.join(table).join(format!(
            "date={:04}-{:02}-{:02}/hour={:02}",
            t.year(),
            t.month(),
            t.day(),
            t.hour()
        ))
    }

    fn write_file(
        &self,
        table: &'static str,
        final_path: &Path,
        batch: &RecordBatch,
    ) -> Result<Written, SinkError> {
        let dir = final_path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let name = final_path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("part.parquet");
        let tmp_path = dir.join(format!(".{name}{IN_PROGRESS_SUFFIX}"));
        let file = File::create(&tmp_path).map_err(io("creating", &tmp_path))?;
        let parquet_err = |source| SinkError::Parquet {
            path: tmp_path.clone(),
            source,
        };
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(self.props.clone()))
            .map_err(parquet_err)?;
        writer.write(batch).map_err(parquet_err)?;
        let file = writer.into_inner().map_err(parquet_err)?;
        file.sync_all().map_err(io("syncing", &tmp_path))?;
        drop(file);
        fs::rename(&tmp_path, final_path).map_err(io("renaming", &tmp_path))?;
        Ok(Written {
            table,
            path: final_path.to_path_buf(),
            rows: batch.num_rows(),
        })
    }
}

/// How every table's files are written: zstd at `zstd_level`, driftwatch as the creator.
pub(crate) fn writer_properties(
    zstd_level: i32,
) -> Result<WriterProperties, parquet::errors::ParquetError> {
    let level = ZstdLevel::try_new(zstd_level)?;
    Ok(WriterProperties::builder()
        .set_compression(Compression::ZSTD(level))
        .set_created_by(format!("driftwatch {}", env!("CARGO_PKG_VERSION")))
        .build())
}

/// Makes the renames of `written` durable: one fsync per distinct directory.
fn sync_dirs(written: &[Written]) -> Result<(), SinkError> {
    let dirs: std::collections::BTreeSet<&Path> =
        written.iter().filter_map(|w| w.path.parent()).collect();
    for dir in dirs {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing directory", dir))?;
    }
    Ok(())
}

/// Removes `.<name>.inprogress` files anywhere under `dir`.
fn remove_in_progress(dir: &Path) -> Result<(), SinkError> {
    for entry in fs::read_dir(dir).map_err(io("listing", dir))? {
        let entry = entry.map_err(io("listing", dir))?;
        let path = entry.path();
        let ft = entry.file_type().map_err(io("inspecting", &path))?;
        if ft.is_dir() {
            remove_in_progress(&path)?;
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.') && n.ends_with(IN_PROGRESS_SUFFIX))
        {
            fs::remove_file(&path).map_err(io("removing", &path))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::decode::{Reject, RejectReason};
    use crate::event::RequestEvent;
    use crate::window::state::WindowSnapshot;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn row(offset: i64, ts: i64) -> EventRow {
        EventRow {
            event: RequestEvent {
                event_id: format!("e{offset}"),
                timestamp_ms: ts,
                service: "s".into(),
                request_model: "m".into(),
                latency_ms: 10.0,
                judge_scores: vec![("f".into(), 0.5)],
                ..Default::default()
            },
            topic: Arc::from("llm logs"),
            partition: 2,
            offset,
            late: false,
        }
    }

    fn job(
        events: Vec<EventRow>,
        quarantine: Vec<QuarantineRow>,
        first: i64,
        next: i64,
    ) -> CommitJob {
        CommitJob {
            topic: Arc::from("llm logs"),
            partition: 2,
            first_offset: first,
            next_offset: next,
            seq: 1,
            events,
            quarantine,
            windows: Vec::new(),
            responses: None,
            snapshot: WindowSnapshot::default(),
            now_ms: 0,
        }
    }

    #[test]
    fn events_go_to_hive_hours_with_offset_names_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ParquetSink::new(dir.path(), 3, vec!["service"]).unwrap();
        let h = 1_790_000_000_000 / 3_600_000 * 3_600_000;
        let rows = vec![row(10, h - 1), row(11, h), row(12, h + 5)];
        let written = sink
            .write(&sink.plan_commit(&job(rows, vec![], 10, 13)).unwrap())
            .unwrap();
        let names: Vec<String> = written
            .iter()
            .map(|w| {
                w.path
                    .strip_prefix(dir.path())
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        assert_eq!(
            names,
            [
                "events/date=2026-09-21/hour=13/llm_logs-2-10-13.parquet",
                "events/date=2026-09-21/hour=14/llm_logs-2-10-13.parquet"
            ]
        );
        let f = File::open(&written[1].path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .unwrap()
            .build()
            .unwrap();
        let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
        assert_eq!(n, 2);
        let none_left = walk(dir.path())
            .iter()
            .all(|p| !p.to_string_lossy().ends_with(IN_PROGRESS_SUFFIX));
        assert!(none_left);
    }

    #[test]
    fn leftover_in_progress_files_are_removed_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("events/date=2026-01-01/hour=00");
        fs::create_dir_all(&d).unwrap();
        fs::write(d.join(".t-0-0-9.parquet.inprogress"), b"half").unwrap();
        fs::write(d.join("t-0-0-9.parquet"), b"kept").unwrap();
        ParquetSink::new(dir.path(), 3, vec![]).unwrap();
        let files = walk(dir.path());
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(files[0].ends_with("t-0-0-9.parquet"));
    }

    #[test]
    fn quarantine_keeps_reason_field_and_payload() {
        let dir = tempfile::tempdir().unwrap();
        let sink = ParquetSink::new(dir.path(), 3, vec![]).unwrap();
        let rows = vec![QuarantineRow {
            topic: Arc::from("t"),
            partition: 0,
            offset: 5,
            kafka_timestamp_ms: Some(1_790_000_000_000),
            reject: Reject::new(
                RejectReason::WrongType,
                Some("latency_ms"),
                "expected a number, got a string",
            ),
            payload: Some(vec![b'x'; tables::QUARANTINE_PAYLOAD_MAX + 10]),
        }];
        let mut j = job(vec![], rows, 5, 6);
        j.topic = Arc::from("t");
        j.partition = 0;
        let w = sink.write(&sink.plan_commit(&j).unwrap()).unwrap();
        assert!(
            w[0].path
                .ends_with("quarantine/date=2026-09-21/hour=14/t-0-5-6.parquet"),
            "{:?}",
            w[0].path
        );
        let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(&w[0].path).unwrap())
            .unwrap()
            .build()
            .unwrap();
        let batch = reader.into_iter().next().unwrap().unwrap();
        let col = |n: &str| batch.column(batch.schema().index_of(n).unwrap()).clone();
        use arrow::array::{Array, AsArray};
        assert_eq!(col("reason").as_string::<i32>().value(0), "wrong_type");
        assert_eq!(col("field").as_string::<i32>().value(0), "latency_ms");
        assert!(col("payload_truncated").as_boolean().value(0));
        assert_eq!(
            col("payload").as_binary::<i32>().value(0).len(),
            tables::QUARANTINE_PAYLOAD_MAX
        );
        assert_eq!(col("payload").len(), 1);
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }
}
