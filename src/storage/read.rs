//! Reads the `windows` table back into detector [`Summary`]s: the history a restarted daemon
//! resumes from and the input of `driftwatch backtest`.
//!
//! Directories are pruned by their Hive `date=`/`hour=` names, rows by `window_start`; only
//! the histograms some rule reads are decoded. Rows of one series and window written by
//! several partitions come back as separate rows and merge in the [`crate::detect::history::History`].

use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{
    Array, AsArray, BinaryArray, Float64Array, Int64Array, ListArray, MapArray, StringArray,
    TimestampMillisecondArray,
};
use arrow::datatypes::{Float64Type, Int64Type};
use arrow::record_batch::RecordBatch;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::detect::history::{SparseHist, Summary};
use crate::durable::io;
use crate::time::DAY_MS;
use crate::window::sketch::{deserialize_hist, Counts, Metric, Moments, SliceSketch};

/// A problem reading the `windows` table.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Io(#[from] crate::durable::IoError),
    #[error("{path}: not a readable Parquet file: {source}")]
    Parquet {
        path: PathBuf,
        source: parquet::errors::ParquetError,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        source: arrow::error::ArrowError,
    },
    #[error("{path}: column {column:?} is missing or has an unexpected type; was it written with other series.labels?")]
    Column { path: PathBuf, column: String },
    #[error("{path}: row {row}: histogram {column}: {message}")]
    Hist {
        path: PathBuf,
        row: usize,
        column: String,
        message: String,
    },
}

/// One stored row: a series' share of one window.
#[derive(Debug, Clone)]
pub struct StoredWindow {
    pub labels: Vec<String>,
    pub start_ms: i64,
    pub end_ms: i64,
    pub summary: Summary,
    /// The Kafka partition the row came from (-1 when unknown).
    pub partition: i32,
    /// The window's slices, as the live detector saw them.
    pub slices: Vec<SliceSketch>,
    /// A correction row (late scores of a window already written) counts for detector ticks
    /// after this time; `None` for a window's own rows and roll-ups.
    pub correction_after: Option<i64>,
    /// For correction rows: the slice tick after which their slices count.
    pub correction_after_slice: Option<i64>,
}

/// Every row of `<data_dir>/windows` with `from <= window_start < to`, sorted by start then
/// labels. `metrics` are the histogram indices to decode.
pub fn read_windows(
    data_dir: &Path,
    labels: &[&str],
    metrics: &std::collections::BTreeSet<usize>,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Vec<StoredWindow>, ReadError> {
    read_table(data_dir, "windows", labels, metrics, from, to)
}

/// The hourly roll-up of `windows` (written by [`crate::storage::rollup`]).
pub const ROLLUP_TABLE: &str = "windows_1h";

/// Long-range history at the coarsest resolution stored: the `windows_1h` rows (one per
/// series × hour × partition) with `from <= window_start < to`, and the `windows` rows of
/// every hour `windows_1h` does not hold yet (the open day, hours not rolled up). An hour is
/// read from one table only, so nothing counts twice. Sorted by start, then labels.
pub fn read_history(
    data_dir: &Path,
    labels: &[&str],
    metrics: &std::collections::BTreeSet<usize>,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Vec<StoredWindow>, ReadError> {
    let hour = crate::time::HOUR_MS;
    // Whole hours of the range from the roll-up: from the hour holding `from`.
    let coarse_from = from.map(|f| f.div_euclid(hour) * hour);
    let mut out = read_table(data_dir, ROLLUP_TABLE, labels, metrics, coarse_from, to)?;
    out.retain(|w| from.is_none_or(|f| w.start_ms >= f));
    let covered: std::collections::BTreeSet<i64> = out.iter().map(|w| w.start_ms).collect();
    let mut fine = read_table(data_dir, "windows", labels, metrics, from, to)?;
    fine.retain(|w| !covered.contains(&(w.start_ms.div_euclid(hour) * hour)));
    out.extend(fine);
    out.sort_by(|a, b| (a.start_ms, &a.labels).cmp(&(b.start_ms, &b.labels)));
    Ok(out)
}

/// Every row of a table with the `windows` schema (`windows`, `windows_1h`) with
/// `from <= window_start < to`, sorted by start then labels.
pub fn read_table(
    data_dir: &Path,
    table: &str,
    labels: &[&str],
    metrics: &std::collections::BTreeSet<usize>,
    from: Option<i64>,
    to: Option<i64>,
) -> Result<Vec<StoredWindow>, ReadError> {
    let root = data_dir.join(table);
    // Compaction may swap an hour's files between listing and opening; the listing is then
    // taken again (a file that vanished was replaced by one holding its rows).
    let mut attempt = 0;
    let mut out = loop {
        let mut files = Vec::new();
        collect_files(&root, from, to, &mut files)?;
        files.sort();
        let mut out = Vec::new();
        let read = files
            .iter()
            .try_for_each(|f| read_file(f, labels, metrics, from, to, &mut out));
        match read {
            Ok(()) => break out,
            Err(ReadError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound && attempt < 3 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    out.sort_by(|a, b| (a.start_ms, &a.labels).cmp(&(b.start_ms, &b.labels)));
    Ok(out)
}

/// Start (ms) of the newest `date=…/hour=…` directory of the `windows` table, if any.
pub fn newest_hour(data_dir: &Path) -> Option<i64> {
    let mut best: Option<i64> = None;
    for day in std::fs::read_dir(data_dir.join("windows")).ok()?.flatten() {
        let Some(midnight) = day_start(&day.path()) else {
            continue;
        };
        for hour in std::fs::read_dir(day.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = hour.file_name().to_string_lossy().to_string();
            if let Some(h) = name
                .strip_prefix("hour=")
                .and_then(|h| h.parse::<i64>().ok())
            {
                let t = midnight + h * crate::time::HOUR_MS;
                best = Some(best.map_or(t, |b| b.max(t)));
            }
        }
    }
    best
}

/// Start (ms) of the day a Hive `date=YYYY-MM-DD` directory covers.
fn day_start(path: &Path) -> Option<i64> {
    let d = path.file_name()?.to_str()?.strip_prefix("date=")?;
    let day = chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d").ok()?;
    Some(day.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
}

fn collect_files(
    dir: &Path,
    from: Option<i64>,
    to: Option<i64>,
    out: &mut Vec<PathBuf>,
) -> Result<(), ReadError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("listing", dir)(e).into()),
    };
    for e in entries {
        let e = e.map_err(io("listing", dir))?;
        let p = e.path();
        if p.is_dir() {
            // Prune whole days outside the range (a day's windows may reach one window
            // past midnight, hence the slack).
            if let Some(lo) = day_start(&p) {
                let hi = lo + DAY_MS;
                let slack = DAY_MS;
                if from.is_some_and(|f| hi + slack <= f) || to.is_some_and(|t| lo > t) {
                    continue;
                }
            }
            collect_files(&p, from, to, out)?;
        } else if p.extension().and_then(|x| x.to_str()) == Some("parquet") {
            out.push(p);
        }
    }
    Ok(())
}

/// Calls `f` with each record batch of a Parquet file; errors name the file.
pub(crate) fn each_batch(
    path: &Path,
    mut f: impl FnMut(&RecordBatch) -> Result<(), ReadError>,
) -> Result<(), ReadError> {
    let file = File::open(path).map_err(io("opening", path))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.with_batch_size(4096).build())
        .map_err(|source| ReadError::Parquet {
            path: path.to_path_buf(),
            source,
        })?;
    for batch in reader {
        let batch = batch.map_err(|source| ReadError::Arrow {
            path: path.to_path_buf(),
            source,
        })?;
        f(&batch)?;
    }
    Ok(())
}

fn read_file(
    path: &Path,
    labels: &[&str],
    metrics: &std::collections::BTreeSet<usize>,
    from: Option<i64>,
    to: Option<i64>,
    out: &mut Vec<StoredWindow>,
) -> Result<(), ReadError> {
    each_batch(path, |batch| {
        read_batch(path, batch, labels, metrics, from, to, out)
    })?;
    Ok(())
}

pub(crate) fn col<'a, T: 'static>(
    path: &Path,
    b: &'a RecordBatch,
    name: &str,
) -> Result<&'a T, ReadError> {
    b.column_by_name(name)
        .and_then(|c| c.as_any().downcast_ref::<T>())
        .ok_or_else(|| ReadError::Column {
            path: path.to_path_buf(),
            column: name.to_string(),
        })
}

/// The series label columns of a `windows` batch, in `labels` order. A label column the
/// file does not have (written before the label was added to `series.labels`, e.g.
/// `prompt_id` and `variant` before they were default labels) reads as the empty value: those
/// windows were not split on it. A column of another type is an error.
pub(crate) fn label_columns<'a>(
    path: &Path,
    b: &'a RecordBatch,
    labels: &[&str],
) -> Result<Vec<Option<&'a StringArray>>, ReadError> {
    labels
        .iter()
        .map(|l| match b.column_by_name(l) {
            None => Ok(None),
            Some(_) => col::<StringArray>(path, b, l).map(Some),
        })
        .collect()
}

/// The label values of `row` (see [`label_columns`]).
pub(crate) fn label_values(cols: &[Option<&StringArray>], row: usize) -> Vec<String> {
    cols.iter()
        .map(|c| c.map(|c| c.value(row).to_string()).unwrap_or_default())
        .collect()
}

/// The histogram of metric `m` in `row` of its `<m>_hist` column.
pub(crate) fn hist_at(
    path: &Path,
    column: &BinaryArray,
    row: usize,
    m: Metric,
) -> Result<hdrhistogram::Histogram<u64>, ReadError> {
    deserialize_hist(column.value(row)).map_err(|e| ReadError::Hist {
        path: path.to_path_buf(),
        row,
        column: format!("{}_hist", m.name()),
        message: format!("{e:?}"),
    })
}

/// The per-judge moments of one row from the `judge_n`, `judge_mean` and `judge_m2` maps.
pub(crate) fn judge_moments(
    path: &Path,
    [jn, jmean, jm2]: [&MapArray; 3],
    row: usize,
) -> Result<std::collections::BTreeMap<String, Moments>, ReadError> {
    let mut out = std::collections::BTreeMap::new();
    if jn.is_null(row) {
        return Ok(out);
    }
    let (n, mean, m2) = (jn.value(row), jmean.value(row), jm2.value(row));
    // Written together, so they line up; anything else is refused, not trusted.
    let cols = (
        n.column(0).as_string_opt::<i32>(),
        n.column(1).as_primitive_opt::<Int64Type>(),
        mean.column(1).as_primitive_opt::<Float64Type>(),
        m2.column(1).as_primitive_opt::<Float64Type>(),
    );
    let (Some(names), Some(nv), Some(meanv), Some(m2v)) = cols else {
        return Err(ReadError::Column {
            path: path.to_path_buf(),
            column: "judge_n/judge_mean/judge_m2".into(),
        });
    };
    let len = names.len();
    if [nv.len(), meanv.len(), m2v.len()].iter().any(|l| *l != len) {
        return Err(ReadError::Column {
            path: path.to_path_buf(),
            column: "judge_n/judge_mean/judge_m2 (entries do not line up)".into(),
        });
    }
    for i in 0..len {
        out.insert(
            names.value(i).to_string(),
            Moments {
                n: nv.value(i).max(0) as u64,
                mean: meanv.value(i),
                m2: m2v.value(i),
            },
        );
    }
    Ok(out)
}

pub(crate) fn counts(m: &MapArray, row: usize) -> Counts {
    let mut c = Counts::default();
    if m.is_null(row) {
        return c;
    }
    let entry = m.value(row);
    let (Some(keys), Some(values)) = (
        entry.column(0).as_string_opt::<i32>(),
        entry.column(1).as_primitive_opt::<Int64Type>(),
    ) else {
        return c;
    };
    for i in 0..entry.len().min(keys.len()).min(values.len()) {
        if values.is_valid(i) {
            c.add(keys.value(i), values.value(i).max(0) as u64);
        }
    }
    c
}

fn read_batch(
    path: &Path,
    b: &RecordBatch,
    labels: &[&str],
    metrics: &std::collections::BTreeSet<usize>,
    from: Option<i64>,
    to: Option<i64>,
    out: &mut Vec<StoredWindow>,
) -> Result<(), ReadError> {
    let label_cols = label_columns(path, b, labels)?;
    let start = col::<TimestampMillisecondArray>(path, b, "window_start")?;
    let partition = b
        .column_by_name("kafka_partition")
        .and_then(|c| c.as_any().downcast_ref::<arrow::array::Int32Array>());
    let end = col::<TimestampMillisecondArray>(path, b, "window_end")?;
    let events = col::<Int64Array>(path, b, "event_count")?;
    let errors = col::<Int64Array>(path, b, "error_count")?;
    let mut hists = Vec::new();
    for m in Metric::ALL {
        if metrics.contains(&(m as usize)) {
            let h = col::<BinaryArray>(path, b, &format!("{}_hist", m.name()))?;
            let s = col::<Float64Array>(path, b, &format!("{}_sum", m.name()))?;
            hists.push((m, h, s));
        }
    }
    let cat = |name: &str| col::<MapArray>(path, b, name);
    let (et, hs, fr, qt, rm) = (
        cat("error_type_counts")?,
        cat("http_status_counts")?,
        cat("finish_reason_counts")?,
        cat("query_type_counts")?,
        cat("response_model_counts")?,
    );
    let (jn, jmean, jm2) = (cat("judge_n")?, cat("judge_mean")?, cat("judge_m2")?);
    let fb: Vec<&Int64Array> = ["feedback_negative", "feedback_neutral", "feedback_positive"]
        .iter()
        .map(|n| col::<Int64Array>(path, b, n))
        .collect::<Result<_, _>>()?;
    // Sums of the cost and cache signals; files written before the registry lack some.
    let f64_opt = |name: &str| {
        b.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<Float64Array>())
    };
    let i64_opt = |name: &str| {
        b.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
    };
    let (cost_sum, input_sum) = (f64_opt("cost_usd_sum"), f64_opt("input_tokens_sum"));
    let cached = i64_opt("cached_input_tokens_total");
    let savings = f64_opt("cache_savings_usd");
    let near = i64_opt("near_context_requests");
    let (share_n, share_mean, share_m2) = (
        i64_opt("cache_read_share_n"),
        f64_opt("cache_read_share_mean"),
        f64_opt("cache_read_share_m2"),
    );
    // Files written before slices existed have no slice columns.
    let slice_req = b
        .column_by_name("slice_requests")
        .and_then(|c| c.as_any().downcast_ref::<ListArray>());
    let slice_err = b
        .column_by_name("slice_errors")
        .and_then(|c| c.as_any().downcast_ref::<ListArray>());
    // Files written before slice sketches existed have the counts only.
    let slice_sketches = b
        .column_by_name("slice_sketches")
        .and_then(|c| c.as_any().downcast_ref::<BinaryArray>());
    // Files written before late-score corrections have no correction rows.
    let ts_opt = |name: &str| {
        b.column_by_name(name)
            .and_then(|c| c.as_any().downcast_ref::<TimestampMillisecondArray>())
    };
    let (correction, correction_slice) =
        (ts_opt("correction_after"), ts_opt("correction_after_slice"));
    // Files written before fingerprint counts have none.
    let fingerprints = b
        .column_by_name("system_fingerprint_counts")
        .and_then(|c| c.as_any().downcast_ref::<MapArray>());

    for row in 0..b.num_rows() {
        let s = start.value(row);
        if from.is_some_and(|f| s < f) || to.is_some_and(|t| s >= t) {
            continue;
        }
        let mut summary = Summary {
            requests: events.value(row).max(0) as u64,
            errors: errors.value(row).max(0) as u64,
            error_types: counts(et, row),
            http_statuses: counts(hs, row),
            finish_reasons: counts(fr, row),
            query_types: counts(qt, row),
            response_models: counts(rm, row),
            system_fingerprints: fingerprints.map(|c| counts(c, row)).unwrap_or_default(),
            feedback: [
                fb[0].value(row).max(0) as u64,
                fb[1].value(row).max(0) as u64,
                fb[2].value(row).max(0) as u64,
            ],
            ..Summary::default()
        };
        for (m, h, sum) in &hists {
            let hist = hist_at(path, h, row, *m)?;
            let buckets = hist
                .iter_recorded()
                .map(|v| (v.value_iterated_to(), v.count_at_value()))
                .collect();
            summary.hists[*m as usize] = Some(SparseHist {
                buckets,
                sum: if sum.is_valid(row) {
                    sum.value(row)
                } else {
                    0.0
                },
            });
        }
        summary.judge = judge_moments(path, [jn, jmean, jm2], row)?;
        let fv =
            |c: Option<&Float64Array>| c.filter(|c| c.is_valid(row)).map_or(0.0, |c| c.value(row));
        let iv = |c: Option<&Int64Array>| {
            c.filter(|c| c.is_valid(row))
                .map_or(0, |c| c.value(row).max(0) as u64)
        };
        summary.totals = crate::detect::history::Totals {
            cost_usd: fv(cost_sum),
            input_tokens: fv(input_sum).max(0.0) as u64,
            cached_input_tokens: iv(cached),
            cache_savings_usd: fv(savings),
            near_context: iv(near),
            cache_read_share: crate::window::sketch::Moments {
                n: iv(share_n),
                mean: fv(share_mean),
                m2: fv(share_m2),
            },
        };
        let mut slices = Vec::new();
        let sketches = slice_sketches
            .filter(|c| c.is_valid(row) && !c.value(row).is_empty())
            .map(|c| c.value(row));
        if let Some(json) = sketches {
            slices = serde_json::from_slice(json).map_err(|e| ReadError::Hist {
                path: path.to_path_buf(),
                row,
                column: "slice_sketches".into(),
                message: e.to_string(),
            })?;
        } else if let (Some(r), Some(e)) = (slice_req, slice_err) {
            let (r, e) = (r.value(row), e.value(row));
            if let (Some(r), Some(e)) = (
                r.as_primitive_opt::<Int64Type>(),
                e.as_primitive_opt::<Int64Type>(),
            ) {
                for i in 0..r.len().min(e.len()) {
                    slices.push(SliceSketch::counts(
                        r.value(i).max(0) as u64,
                        e.value(i).max(0) as u64,
                    ));
                }
            }
        }
        out.push(StoredWindow {
            labels: label_values(&label_cols, row),
            start_ms: s,
            end_ms: end.value(row),
            summary,
            partition: partition
                .filter(|p| p.is_valid(row))
                .map_or(-1, |p| p.value(row)),
            slices,
            correction_after: correction.filter(|c| c.is_valid(row)).map(|c| c.value(row)),
            correction_after_slice: correction_slice
                .filter(|c| c.is_valid(row))
                .map(|c| c.value(row)),
        });
    }
    Ok(())
}
