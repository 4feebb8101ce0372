//! The `windows_1h` table: the `windows` table rolled up to one row per series × hour ×
//! Kafka partition, with the same columns, written by the compaction pass.
//!
//! A month of 1-minute windows is ~720 hour directories of `windows` rows; a query over it
//! pays per file and per decoded histogram. `windows_1h` holds the same sketches merged
//! exactly per hour ([`WindowSketch::merge`]: counts and sums add, histograms merge, moments
//! merge with Chan's formula), in one file per day, so "P99 by model per day over a month"
//! reads 30 small files. The slice columns are empty (slices are 10-second parts of one
//! window and do not merge across windows).
//!
//! `windows_1h/date=YYYY-MM-DD/windows_1h-YYYY-MM-DD.parquet` records, in its key-value
//! metadata, the `windows` file names each hour was built from. A pass rebuilds the hours
//! whose closed `windows` directory now holds other files (compacted, or a late file
//! arrived) and keeps the other hours' rows; the day file is replaced atomically (written
//! aside, fsynced, renamed). It is derived data: deleting it makes the next pass rebuild it.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, AsArray, BinaryArray, BooleanArray, Float64Array, Int32Array, Int64Array, ListArray,
    MapArray, TimestampMillisecondArray,
};
use arrow::datatypes::{Int32Type, Int64Type};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::durable::io;
use crate::storage::error::CompactError;
use crate::storage::read::{
    col, counts, each_batch, hist_at, judge_moments, label_columns, label_values, ReadError,
};
use crate::window::series::SeriesKey;
use crate::window::sketch::{Metric, WindowSketch};
use crate::window::state::ClosedWindow;

/// Name of the table (and of its directory under the data directory).
pub const TABLE: &str = crate::storage::read::ROLLUP_TABLE;
const SOURCES_KEY: &str = "driftwatch.rollup.sources";
use crate::time::HOUR_MS;

/// One `windows` row: label values, Kafka partition, the sketch.
pub type StoredSketch = (Vec<String>, Option<i32>, WindowSketch);

/// Hour (`"07"`) → the `windows` file names it was built from, sorted.
pub type Sources = BTreeMap<String, Vec<String>>;

/// The day file of `date` (`YYYY-MM-DD`).
pub fn day_file(root: &Path, date: &str) -> PathBuf {
    root.join(TABLE)
        .join(format!("date={date}"))
        .join(format!("{TABLE}-{date}.parquet"))
}

/// How an hour's `windows` files are recorded as its sources: their names, sorted.
pub fn source_names(files: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    names.sort();
    names
}

/// The sources recorded in a day file (empty when it does not exist or records none).
pub fn recorded_sources(path: &Path) -> Result<Sources, CompactError> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Sources::new()),
        Err(e) => return Err(io("opening", path)(e).into()),
    };
    let b =
        ParquetRecordBatchReaderBuilder::try_new(f).map_err(|source| CompactError::Parquet {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(b.metadata()
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|k| k.key == SOURCES_KEY))
        .and_then(|k| k.value.as_deref())
        .and_then(|v| serde_json::from_str(v).ok())
        .unwrap_or_default())
}

/// Rewrites the day file of `date` so that each hour in `rebuild` (hour → its current
/// `windows` files, full paths) is rolled up from those files; rows of other hours are kept.
pub fn update_day(
    root: &Path,
    date: &str,
    day_start_ms: i64,
    labels: &[&str],
    rebuild: &BTreeMap<String, Vec<PathBuf>>,
    props: &WriterProperties,
) -> Result<(), CompactError> {
    let path = day_file(root, date);
    let mut sources = recorded_sources(&path)?;
    let schema = crate::storage::tables::windows_schema(labels);
    let mut batches: Vec<RecordBatch> = Vec::new();
    // Rows of the hours that stay.
    let replaced: BTreeSet<i64> = rebuild
        .keys()
        .filter_map(|h| h.parse::<i64>().ok())
        .map(|h| day_start_ms + h * HOUR_MS)
        .collect();
    if path.exists() {
        let f = File::open(&path).map_err(io("opening", &path))?;
        let perr = |source| CompactError::Parquet {
            path: path.clone(),
            source,
        };
        let reader = ParquetRecordBatchReaderBuilder::try_new(f)
            .map_err(perr)?
            .build()
            .map_err(perr)?;
        for b in reader {
            let b = b.map_err(|source| CompactError::Arrow {
                path: path.clone(),
                source,
            })?;
            let start = col::<TimestampMillisecondArray>(&path, &b, "window_start")?;
            let keep: BooleanArray = start
                .iter()
                .map(|s| Some(!s.is_some_and(|s| replaced.contains(&s))))
                .collect();
            let kept = arrow::compute::filter_record_batch(&b, &keep).map_err(|source| {
                CompactError::Arrow {
                    path: path.clone(),
                    source,
                }
            })?;
            if kept.num_rows() > 0 {
                // A day file written before a column was added: the new column reads null.
                let kept = conform(&kept, &schema).map_err(|source| CompactError::Arrow {
                    path: path.clone(),
                    source,
                })?;
                batches.push(kept);
            }
        }
    }
    for (hour, files) in rebuild {
        let Ok(h) = hour.parse::<i64>() else {
            continue;
        };
        let start = day_start_ms + h * HOUR_MS;
        let window = roll_up(files, labels, start)?;
        if !window.series.is_empty() {
            let b =
                crate::storage::tables::windows_batch(labels, &[&window]).map_err(|source| {
                    CompactError::Arrow {
                        path: path.clone(),
                        source,
                    }
                })?;
            batches.push(b);
        }
        sources.insert(hour.clone(), source_names(files));
    }
    // Hours not rebuilt keep their rows (and recorded sources) as they were.
    let dir = path.parent().unwrap_or(root);
    fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let tmp = dir.join(format!(
        ".{}.inprogress",
        path.file_name()
            .map_or_else(|| TABLE.into(), |n| n.to_string_lossy().into_owned())
    ));
    let file = File::create(&tmp).map_err(io("creating", &tmp))?;
    let perr = |source| CompactError::Parquet {
        path: tmp.clone(),
        source,
    };
    let props = props
        .clone()
        .into_builder()
        .set_key_value_metadata(Some(vec![KeyValue::new(
            SOURCES_KEY.to_string(),
            serde_json::to_string(&sources).unwrap_or_default(),
        )]))
        .build();
    let mut w = ArrowWriter::try_new(
        file.try_clone().map_err(io("opening", &tmp))?,
        schema,
        Some(props),
    )
    .map_err(perr)?;
    for b in &batches {
        w.write(b).map_err(perr)?;
    }
    w.close().map_err(perr)?;
    file.sync_all().map_err(io("syncing", &tmp))?;
    drop(file);
    fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))?;
    Ok(())
}

/// Merges every `windows` row of `files` per series and partition into one hour window.
pub fn roll_up(
    files: &[PathBuf],
    labels: &[&str],
    hour_start_ms: i64,
) -> Result<ClosedWindow, CompactError> {
    let mut merged: BTreeMap<(Vec<String>, Option<i32>), WindowSketch> = BTreeMap::new();
    for f in files {
        for (key, partition, sketch) in read_sketches(f, labels)? {
            let slot = merged.entry((key, partition)).or_default();
            slot.merge(&sketch);
        }
    }
    let mut series: Vec<(SeriesKey, WindowSketch)> = merged
        .into_iter()
        .map(|((values, _), mut s)| {
            s.slices.clear();
            (SeriesKey::new(values), s)
        })
        .collect();
    series.sort_by(|a, b| a.0.values().cmp(b.0.values()));
    Ok(ClosedWindow {
        start_ms: hour_start_ms,
        end_ms: hour_start_ms + HOUR_MS,
        series,
        // The hour's correction rows are merged in: the roll-up is the corrected history.
        correction_after: None,
        correction_after_slice: None,
    })
}

/// `b` with the columns of `schema`, by name; a column `b` lacks is all null (it must be
/// nullable in `schema`).
fn conform(
    b: &RecordBatch,
    schema: &arrow::datatypes::SchemaRef,
) -> Result<RecordBatch, arrow::error::ArrowError> {
    if b.schema().fields() == schema.fields() {
        return Ok(b.clone());
    }
    let cols = schema
        .fields()
        .iter()
        .map(|f| match b.column_by_name(f.name()) {
            Some(c) => Ok(c.clone()),
            None if f.is_nullable() => {
                Ok(arrow::array::new_null_array(f.data_type(), b.num_rows()))
            }
            None => Err(arrow::error::ArrowError::SchemaError(format!(
                "column {} is missing and not nullable",
                f.name()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(schema.clone(), cols)
}

/// Every row of a `windows` file as (label values, partition, sketch), in full.
pub fn read_sketches(path: &Path, labels: &[&str]) -> Result<Vec<StoredSketch>, ReadError> {
    let mut out = Vec::new();
    each_batch(path, |b| read_batch(path, b, labels, &mut out))?;
    Ok(out)
}

fn read_batch(
    path: &Path,
    b: &RecordBatch,
    labels: &[&str],
    out: &mut Vec<StoredSketch>,
) -> Result<(), ReadError> {
    let label_cols = label_columns(path, b, labels)?;
    let partition = col::<Int32Array>(path, b, "kafka_partition")?;
    let i64col = |n: &str| col::<Int64Array>(path, b, n);
    let (events, errors) = (i64col("event_count")?, i64col("error_count")?);
    let (retries, cached, estimated) = (
        i64col("retries_total")?,
        i64col("cached_input_tokens_total")?,
        i64col("cost_estimated_count")?,
    );
    let (dropped, late) = (i64col("judge_names_dropped")?, i64col("late_scores")?);
    // Columns added with the model registry; files written before lack them.
    let opt_i64 = |n: &str| {
        b.column_by_name(n)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
    };
    let (written, reasoning) = (
        opt_i64("cache_creation_input_tokens_total"),
        opt_i64("reasoning_tokens_total"),
    );
    let savings = b
        .column_by_name("cache_savings_usd")
        .and_then(|c| c.as_any().downcast_ref::<Float64Array>());
    let labels_col = b
        .column_by_name("judge_label_counts")
        .and_then(|c| c.as_any().downcast_ref::<MapArray>());
    // Added with fingerprint watching.
    let fingerprints = b
        .column_by_name("system_fingerprint_counts")
        .and_then(|c| c.as_any().downcast_ref::<MapArray>());
    let fb = [
        i64col("feedback_negative")?,
        i64col("feedback_neutral")?,
        i64col("feedback_positive")?,
    ];
    let mut metrics = Vec::new();
    for m in Metric::ALL {
        let n = m.name();
        metrics.push((
            m,
            col::<BinaryArray>(path, b, &format!("{n}_hist"))?,
            col::<Float64Array>(path, b, &format!("{n}_sum"))?,
            col::<Float64Array>(path, b, &format!("{n}_min"))?,
            col::<Float64Array>(path, b, &format!("{n}_max"))?,
        ));
    }
    let cat = |name: &str| col::<MapArray>(path, b, name);
    let maps = [
        cat("error_type_counts")?,
        cat("http_status_counts")?,
        cat("finish_reason_counts")?,
        cat("query_type_counts")?,
        cat("response_model_counts")?,
    ];
    let (jn, jmean, jm2) = (cat("judge_n")?, cat("judge_mean")?, cat("judge_m2")?);
    let offsets = col::<ListArray>(path, b, "kafka_offsets")?;
    let v = |a: &Int64Array, row: usize| a.value(row).max(0) as u64;
    for row in 0..b.num_rows() {
        let mut s = WindowSketch {
            event_count: v(events, row),
            error_count: v(errors, row),
            retries_total: v(retries, row),
            cached_input_tokens_total: v(cached, row),
            cost_estimated_count: v(estimated, row),
            judge_names_dropped: v(dropped, row),
            late_scores: v(late, row),
            feedback: [v(fb[0], row), v(fb[1], row), v(fb[2], row)],
            error_types: counts(maps[0], row),
            http_statuses: counts(maps[1], row),
            finish_reasons: counts(maps[2], row),
            query_types: counts(maps[3], row),
            response_models: counts(maps[4], row),
            system_fingerprints: fingerprints.map(|c| counts(c, row)).unwrap_or_default(),
            cache_creation_tokens_total: written
                .filter(|c| c.is_valid(row))
                .map_or(0, |c| v(c, row)),
            reasoning_tokens_total: reasoning
                .filter(|c| c.is_valid(row))
                .map_or(0, |c| v(c, row)),
            cache_savings_usd: savings
                .filter(|c| c.is_valid(row))
                .map_or(0.0, |c| c.value(row)),
            judge_labels: labels_col
                .filter(|c| c.is_valid(row))
                .map(|c| counts(c, row))
                .unwrap_or_default(),
            ..WindowSketch::default()
        };
        for (m, h, sum, min, max) in &metrics {
            let hist = hist_at(path, h, row, *m)?;
            let ms = &mut s.metrics[m.index()];
            ms.hist = hist;
            if sum.is_valid(row) {
                ms.sum = sum.value(row);
                ms.min = min.value(row);
                ms.max = max.value(row);
            }
        }
        s.judge = judge_moments(path, [jn, jmean, jm2], row)?;
        if !offsets.is_null(row) {
            let entry = offsets.value(row);
            let st = entry.as_struct();
            let (p, first, last) = (
                st.column(0).as_primitive_opt::<Int32Type>(),
                st.column(1).as_primitive_opt::<Int64Type>(),
                st.column(2).as_primitive_opt::<Int64Type>(),
            );
            if let (Some(p), Some(first), Some(last)) = (p, first, last) {
                for i in 0..st.len() {
                    s.note_offset(p.value(i), first.value(i));
                    s.note_offset(p.value(i), last.value(i));
                }
            }
        }
        let values = label_values(&label_cols, row);
        let p = partition.is_valid(row).then(|| partition.value(row));
        out.push((values, p, s));
    }
    Ok(())
}
