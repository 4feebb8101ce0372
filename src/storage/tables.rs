//! Arrow schemas and record batches of the `events`, `windows` and `quarantine` tables.
//! Every column is documented in `schemas/tables.md`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Float64Builder, Int32Builder, Int64Array,
    Int64Builder, Int8Builder, ListArray, ListBuilder, MapBuilder, RecordBatch, StringBuilder,
    StructArray, TimestampMillisecondArray,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;

use crate::decode::Reject;
use crate::event::{Feedback, RequestEvent};
use crate::window::series::SeriesKey;
use crate::window::sketch::{Counts, Metric, WindowSketch};
use crate::window::state::ClosedWindow;

/// Quarantined payloads are kept up to this many bytes (`payload_truncated` says when cut).
pub const QUARANTINE_PAYLOAD_MAX: usize = 64 * 1024;

/// Quantiles written per histogram, as (column suffix, quantile).
pub const QUANTILES: [(&str, f64); 4] =
    [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)];

fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
}

fn map_type(value: DataType) -> DataType {
    let entries = Field::new(
        "entries",
        DataType::Struct(Fields::from(vec![
            Field::new("keys", DataType::Utf8, false),
            Field::new("values", value, true),
        ])),
        false,
    );
    DataType::Map(Arc::new(entries), false)
}

fn offsets_type() -> DataType {
    DataType::List(Arc::new(Field::new("item", offsets_struct_type(), true)))
}

fn offsets_struct_type() -> DataType {
    DataType::Struct(offsets_fields())
}

fn offsets_fields() -> Fields {
    Fields::from(vec![
        Field::new("partition", DataType::Int32, false),
        Field::new("first", DataType::Int64, false),
        Field::new("last", DataType::Int64, false),
    ])
}

/// A request event waiting to be written, with where it came from.
#[derive(Debug, Clone)]
pub struct EventRow {
    pub event: RequestEvent,
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Its window had already closed when it arrived.
    pub late: bool,
}

/// A refused message waiting to be written.
#[derive(Debug, Clone)]
pub struct QuarantineRow {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Broker timestamp of the message (ms), when it has one.
    pub kafka_timestamp_ms: Option<i64>,
    pub reject: Reject,
    pub payload: Option<Vec<u8>>,
}

pub fn events_schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    let i = |n: &str| Field::new(n, DataType::Int64, true);
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("timestamp", ts_type(), false),
        s("schema_version"),
        Field::new("service", DataType::Utf8, false),
        s("route"),
        s("environment"),
        s("provider"),
        Field::new("request_model", DataType::Utf8, false),
        s("response_model"),
        s("prompt_id"),
        s("prompt_version"),
        s("deployment"),
        s("variant"),
        Field::new("latency_ms", DataType::Float64, false),
        f("ttft_ms"),
        i("input_tokens"),
        i("output_tokens"),
        i("cached_input_tokens"),
        i("cache_creation_input_tokens"),
        i("reasoning_tokens"),
        f("cost_usd"),
        Field::new("cost_estimated", DataType::Boolean, false),
        f("cache_savings_usd"),
        f("context_utilization"),
        Field::new("status", DataType::Utf8, false),
        s("error_type"),
        Field::new("http_status", DataType::Int32, true),
        Field::new("retries", DataType::Int32, true),
        s("finish_reason"),
        Field::new("judge_scores", map_type(DataType::Float64), true),
        Field::new("feedback", DataType::Int8, true),
        s("query_type"),
        i("prompt_chars"),
        s("trace_id"),
        s("response_id"),
        s("operation_name"),
        s("conversation_id"),
        s("system_fingerprint"),
        Field::new("late", DataType::Boolean, false),
        Field::new("kafka_topic", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
    ]))
}

pub fn events_batch(rows: &[&EventRow]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let strs = |get: &dyn Fn(&RequestEvent) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 8);
        rows.iter().for_each(|r| b.append_option(get(&r.event)));
        Arc::new(b.finish())
    };
    let f64s = |get: &dyn Fn(&RequestEvent) -> Option<f64>| -> ArrayRef {
        let mut b = Float64Builder::with_capacity(n);
        rows.iter().for_each(|r| b.append_option(get(&r.event)));
        Arc::new(b.finish())
    };
    let i64s = |get: &dyn Fn(&RequestEvent) -> Option<i64>| -> ArrayRef {
        let mut b = Int64Builder::with_capacity(n);
        rows.iter().for_each(|r| b.append_option(get(&r.event)));
        Arc::new(b.finish())
    };
    let i32s = |get: &dyn Fn(&EventRow) -> Option<i32>| -> ArrayRef {
        let mut b = Int32Builder::with_capacity(n);
        rows.iter().for_each(|r| b.append_option(get(r)));
        Arc::new(b.finish())
    };
    let bools = |get: &dyn Fn(&EventRow) -> bool| -> ArrayRef {
        let mut b = BooleanBuilder::with_capacity(n);
        rows.iter().for_each(|r| b.append_value(get(r)));
        Arc::new(b.finish())
    };
    let u = |v: Option<u64>| v.map(|x| x as i64);

    let mut judge = MapBuilder::new(None, StringBuilder::new(), Float64Builder::new());
    for r in rows {
        for (k, v) in &r.event.judge_scores {
            judge.keys().append_value(k);
            judge.values().append_value(*v);
        }
        judge.append(!r.event.judge_scores.is_empty())?;
    }
    let mut feedback = Int8Builder::with_capacity(n);
    rows.iter()
        .for_each(|r| feedback.append_option(r.event.feedback.map(Feedback::as_i8)));
    let mut topic = StringBuilder::with_capacity(n, n * 8);
    let mut offset = Int64Builder::with_capacity(n);
    for r in rows {
        topic.append_value(&r.topic);
        offset.append_value(r.offset);
    }

    let columns: Vec<ArrayRef> = vec![
        strs(&|e| Some(&e.event_id)),
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(|r| r.event.timestamp_ms))
                .with_timezone("UTC"),
        ),
        strs(&|e| e.schema_version.as_deref()),
        strs(&|e| Some(&e.service)),
        strs(&|e| e.route.as_deref()),
        strs(&|e| e.environment.as_deref()),
        strs(&|e| e.provider.as_deref()),
        strs(&|e| Some(&e.request_model)),
        strs(&|e| e.response_model.as_deref()),
        strs(&|e| e.prompt_id.as_deref()),
        strs(&|e| e.prompt_version.as_deref()),
        strs(&|e| e.deployment.map(|d| d.as_str())),
        strs(&|e| e.variant.as_deref()),
        f64s(&|e| Some(e.latency_ms)),
        f64s(&|e| e.ttft_ms),
        i64s(&|e| u(e.input_tokens)),
        i64s(&|e| u(e.output_tokens)),
        i64s(&|e| u(e.cached_input_tokens)),
        i64s(&|e| u(e.cache_creation_input_tokens)),
        i64s(&|e| u(e.reasoning_tokens)),
        f64s(&|e| e.cost_usd),
        bools(&|r| r.event.cost_estimated),
        f64s(&|e| e.cache_savings_usd),
        f64s(&|e| e.context_utilization),
        strs(&|e| Some(e.status.as_str())),
        strs(&|e| e.error_type.as_deref()),
        i32s(&|r| r.event.http_status.map(i32::from)),
        i32s(&|r| r.event.retries.map(|v| v as i32)),
        strs(&|e| e.finish_reason.as_deref()),
        Arc::new(judge.finish()),
        Arc::new(feedback.finish()),
        strs(&|e| e.query_type.as_deref()),
        i64s(&|e| u(e.prompt_chars)),
        strs(&|e| e.trace_id.as_deref()),
        strs(&|e| e.response_id.as_deref()),
        strs(&|e| e.operation_name.as_deref()),
        strs(&|e| e.conversation_id.as_deref()),
        strs(&|e| e.system_fingerprint.as_deref()),
        bools(&|r| r.late),
        Arc::new(topic.finish()),
        i32s(&|r| Some(r.partition)),
        Arc::new(offset.finish()),
    ];
    RecordBatch::try_new(events_schema(), columns)
}

/// The `windows` schema for a given series label list.
pub fn windows_schema(labels: &[&str]) -> SchemaRef {
    let mut fields: Vec<Field> = labels
        .iter()
        .map(|l| Field::new(*l, DataType::Utf8, false))
        .collect();
    let i = |n: &str| Field::new(n, DataType::Int64, false);
    fields.extend([
        Field::new("series_overflow", DataType::Boolean, false),
        Field::new("kafka_partition", DataType::Int32, true),
        Field::new("window_start", ts_type(), false),
        Field::new("window_end", ts_type(), false),
        i("event_count"),
        i("ok_count"),
        i("error_count"),
        Field::new("error_rate", DataType::Float64, false),
    ]);
    for m in Metric::ALL {
        let name = m.name();
        fields.push(i(&format!("{name}_count")));
        for stat in ["sum", "min", "max", "mean"] {
            fields.push(Field::new(
                format!("{name}_{stat}"),
                DataType::Float64,
                true,
            ));
        }
        for (q, _) in QUANTILES {
            fields.push(Field::new(format!("{name}_{q}"), DataType::Float64, true));
        }
        fields.push(Field::new(format!("{name}_hist"), DataType::Binary, false));
    }
    fields.extend([
        i("retries_total"),
        i("cached_input_tokens_total"),
        i("cost_estimated_count"),
        // Added with the model registry: nullable, so files written before read as null.
        Field::new("cache_creation_input_tokens_total", DataType::Int64, true),
        Field::new("reasoning_tokens_total", DataType::Int64, true),
        Field::new("cache_read_ratio", DataType::Float64, true),
        Field::new("cache_savings_usd", DataType::Float64, true),
        Field::new("cost_per_request", DataType::Float64, true),
        Field::new("judge_label_counts", map_type(DataType::Int64), true),
        Field::new("near_context_requests", DataType::Int64, true),
        Field::new("cache_read_share_n", DataType::Int64, true),
        Field::new("cache_read_share_mean", DataType::Float64, true),
        Field::new("cache_read_share_m2", DataType::Float64, true),
        Field::new("error_type_counts", map_type(DataType::Int64), false),
        Field::new("http_status_counts", map_type(DataType::Int64), false),
        Field::new("finish_reason_counts", map_type(DataType::Int64), false),
        Field::new("query_type_counts", map_type(DataType::Int64), false),
        Field::new("response_model_counts", map_type(DataType::Int64), false),
        Field::new("judge_n", map_type(DataType::Int64), false),
        Field::new("judge_mean", map_type(DataType::Float64), false),
        Field::new("judge_m2", map_type(DataType::Float64), false),
        i("judge_names_dropped"),
        i("feedback_negative"),
        i("feedback_neutral"),
        i("feedback_positive"),
        i("late_scores"),
        Field::new("kafka_offsets", offsets_type(), false),
        Field::new("slice_requests", list_i64_type(), false),
        Field::new("slice_errors", list_i64_type(), false),
        Field::new("slice_sketches", DataType::Binary, false),
        // Added with late-score corrections: null for a window's own rows.
        Field::new("correction_after", ts_type(), true),
        Field::new("correction_after_slice", ts_type(), true),
        // Added with fingerprint watching: null in files written before.
        Field::new("system_fingerprint_counts", map_type(DataType::Int64), true),
    ]);
    Arc::new(Schema::new(fields))
}

/// One row per series of every window in `windows`.
pub fn windows_batch(
    labels: &[&str],
    windows: &[&ClosedWindow],
) -> Result<RecordBatch, ArrowError> {
    let rows: Vec<&(SeriesKey, WindowSketch)> = windows.iter().flat_map(|w| &w.series).collect();
    let bounds: Vec<(i64, i64)> = windows
        .iter()
        .flat_map(|w| std::iter::repeat_n((w.start_ms, w.end_ms), w.series.len()))
        .collect();
    let rows = &rows[..];
    let n = rows.len();
    let mut cols: Vec<ArrayRef> = Vec::new();
    for (li, _) in labels.iter().enumerate() {
        let mut b = StringBuilder::with_capacity(n, n * 8);
        rows.iter()
            .for_each(|(k, _)| b.append_value(&k.values()[li]));
        cols.push(Arc::new(b.finish()));
    }
    let i64s = |get: &dyn Fn(&WindowSketch) -> u64| -> ArrayRef {
        let mut b = Int64Builder::with_capacity(n);
        rows.iter().for_each(|(_, s)| b.append_value(get(s) as i64));
        Arc::new(b.finish())
    };
    let f64s = |get: &dyn Fn(&WindowSketch) -> Option<f64>| -> ArrayRef {
        let mut b = Float64Builder::with_capacity(n);
        rows.iter().for_each(|(_, s)| b.append_option(get(s)));
        Arc::new(b.finish())
    };
    let ts = |end: bool| -> ArrayRef {
        let values = bounds.iter().map(|(s, e)| if end { *e } else { *s });
        Arc::new(TimestampMillisecondArray::from_iter_values(values).with_timezone("UTC"))
    };
    let mut overflow = BooleanBuilder::with_capacity(n);
    rows.iter()
        .for_each(|(k, _)| overflow.append_value(k.is_overflow()));
    cols.push(Arc::new(overflow.finish()));
    // Windows are kept per partition: a row is that partition's share of the series.
    let mut partition = Int32Builder::with_capacity(n);
    rows.iter()
        .for_each(|(_, s)| partition.append_option(s.offsets.keys().next().copied()));
    cols.push(Arc::new(partition.finish()));
    cols.push(ts(false));
    cols.push(ts(true));
    cols.push(i64s(&|s| s.event_count));
    cols.push(i64s(&|s| s.ok_count()));
    cols.push(i64s(&|s| s.error_count));
    cols.push(f64s(&|s| Some(s.error_rate())));
    for m in Metric::ALL {
        cols.push(i64s(&|s| s.metric(m).count()));
        cols.push(f64s(&|s| {
            (s.metric(m).count() > 0).then(|| s.metric(m).sum)
        }));
        cols.push(f64s(&|s| {
            (s.metric(m).count() > 0).then(|| s.metric(m).min)
        }));
        cols.push(f64s(&|s| {
            (s.metric(m).count() > 0).then(|| s.metric(m).max)
        }));
        cols.push(f64s(&|s| s.metric(m).mean()));
        for (_, q) in QUANTILES {
            cols.push(f64s(&|s| s.metric(m).quantile(m, q)));
        }
        let mut b = BinaryBuilder::new();
        rows.iter()
            .for_each(|(_, s)| b.append_value(s.metric(m).serialize_hist()));
        cols.push(Arc::new(b.finish()));
    }
    cols.push(i64s(&|s| s.retries_total));
    cols.push(i64s(&|s| s.cached_input_tokens_total));
    cols.push(i64s(&|s| s.cost_estimated_count));
    cols.push(i64s(&|s| s.cache_creation_tokens_total));
    cols.push(i64s(&|s| s.reasoning_tokens_total));
    cols.push(f64s(&|s| s.cache_read_ratio()));
    cols.push(f64s(&|s| Some(s.cache_savings_usd)));
    cols.push(f64s(&|s| s.cost_per_request()));
    let counts = |get: &dyn Fn(&WindowSketch) -> &Counts| -> Result<ArrayRef, ArrowError> {
        let mut b = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
        for (_, s) in rows {
            for (k, v) in &get(s).0 {
                b.keys().append_value(k);
                b.values().append_value(*v as i64);
            }
            b.append(true)?;
        }
        Ok(Arc::new(b.finish()))
    };
    cols.push(counts(&|s| &s.judge_labels)?);
    cols.push(i64s(&|s| s.near_context_count));
    cols.push(i64s(&|s| s.cache_read_share.n));
    cols.push(f64s(&|s| Some(s.cache_read_share.mean)));
    cols.push(f64s(&|s| Some(s.cache_read_share.m2)));
    cols.push(counts(&|s| &s.error_types)?);
    cols.push(counts(&|s| &s.http_statuses)?);
    cols.push(counts(&|s| &s.finish_reasons)?);
    cols.push(counts(&|s| &s.query_types)?);
    cols.push(counts(&|s| &s.response_models)?);
    let mut jn = MapBuilder::new(None, StringBuilder::new(), Int64Builder::new());
    let mut jmean = MapBuilder::new(None, StringBuilder::new(), Float64Builder::new());
    let mut jm2 = MapBuilder::new(None, StringBuilder::new(), Float64Builder::new());
    for (_, s) in rows {
        for (k, m) in &s.judge {
            jn.keys().append_value(k);
            jn.values().append_value(m.n as i64);
            jmean.keys().append_value(k);
            jmean.values().append_value(m.mean);
            jm2.keys().append_value(k);
            jm2.values().append_value(m.m2);
        }
        jn.append(true)?;
        jmean.append(true)?;
        jm2.append(true)?;
    }
    cols.push(Arc::new(jn.finish()));
    cols.push(Arc::new(jmean.finish()));
    cols.push(Arc::new(jm2.finish()));
    cols.push(i64s(&|s| s.judge_names_dropped));
    cols.push(i64s(&|s| s.feedback_count(Feedback::Negative)));
    cols.push(i64s(&|s| s.feedback_count(Feedback::Neutral)));
    cols.push(i64s(&|s| s.feedback_count(Feedback::Positive)));
    cols.push(i64s(&|s| s.late_scores));
    cols.push(offsets_list(rows)?);
    for errors in [false, true] {
        let mut b = ListBuilder::new(Int64Builder::new()).with_field(list_i64_item());
        for (_, s) in rows {
            for sl in &s.slices {
                let v = if errors { sl.errors } else { sl.requests };
                b.values().append_value(v as i64);
            }
            b.append(true);
        }
        cols.push(Arc::new(b.finish()));
    }
    // The fast path's sketches (histograms, judge moments, feedback, categories per slice)
    // as JSON, so a backtest evaluates exactly what the live detector did.
    let mut b = BinaryBuilder::new();
    for (_, s) in rows {
        if s.slices.is_empty() {
            b.append_value(b"");
        } else {
            let json = serde_json::to_vec(&s.slices)
                .map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
            b.append_value(json);
        }
    }
    cols.push(Arc::new(b.finish()));
    let corrections = windows
        .iter()
        .flat_map(|w| std::iter::repeat_n(w.correction_after, w.series.len()));
    cols.push(Arc::new(
        TimestampMillisecondArray::from_iter(corrections).with_timezone("UTC"),
    ));
    let slices = windows
        .iter()
        .flat_map(|w| std::iter::repeat_n(w.correction_after_slice, w.series.len()));
    cols.push(Arc::new(
        TimestampMillisecondArray::from_iter(slices).with_timezone("UTC"),
    ));
    cols.push(counts(&|s| &s.system_fingerprints)?);
    RecordBatch::try_new(windows_schema(labels), cols)
}

fn list_i64_item() -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Int64, false))
}

/// `List<Int64>` with non-null items: the per-slice counts of a window.
fn list_i64_type() -> DataType {
    DataType::List(list_i64_item())
}

fn offsets_list(rows: &[&(SeriesKey, WindowSketch)]) -> Result<ArrayRef, ArrowError> {
    let mut part = Int32Builder::new();
    let mut first = Int64Builder::new();
    let mut last = Int64Builder::new();
    let mut lens = Vec::with_capacity(rows.len());
    for (_, s) in rows {
        lens.push(s.offsets.len());
        for (p, (lo, hi)) in &s.offsets {
            part.append_value(*p);
            first.append_value(*lo);
            last.append_value(*hi);
        }
    }
    let structs = StructArray::try_new(
        offsets_fields(),
        vec![
            Arc::new(part.finish()),
            Arc::new(first.finish()),
            Arc::new(last.finish()),
        ],
        None,
    )?;
    let field = Arc::new(Field::new("item", offsets_struct_type(), true));
    Ok(Arc::new(ListArray::try_new(
        field,
        OffsetBuffer::from_lengths(lens),
        Arc::new(structs),
        None,
    )?))
}

pub fn quarantine_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("kafka_topic", DataType::Utf8, false),
        Field::new("kafka_partition", DataType::Int32, false),
        Field::new("kafka_offset", DataType::Int64, false),
        Field::new("kafka_timestamp", ts_type(), true),
        Field::new("reason", DataType::Utf8, false),
        Field::new("field", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, false),
        Field::new("payload", DataType::Binary, true),
        Field::new("payload_bytes", DataType::Int64, false),
        Field::new("payload_truncated", DataType::Boolean, false),
    ]))
}

pub fn quarantine_batch(rows: &[QuarantineRow]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let mut topic = StringBuilder::with_capacity(n, n * 8);
    let mut part = Int32Builder::with_capacity(n);
    let mut off = Int64Builder::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    let mut reason = StringBuilder::with_capacity(n, n * 12);
    let mut field = StringBuilder::with_capacity(n, n * 8);
    let mut detail = StringBuilder::with_capacity(n, n * 32);
    let mut payload = BinaryBuilder::with_capacity(n, 0);
    let mut size = Int64Builder::with_capacity(n);
    let mut truncated = BooleanBuilder::with_capacity(n);
    for r in rows {
        topic.append_value(&r.topic);
        part.append_value(r.partition);
        off.append_value(r.offset);
        ts.push(r.kafka_timestamp_ms);
        reason.append_value(r.reject.reason.as_str());
        field.append_option(r.reject.field.as_deref());
        detail.append_value(&r.reject.detail);
        let len = r.payload.as_ref().map_or(0, Vec::len);
        payload.append_option(
            r.payload
                .as_ref()
                .map(|p| &p[..p.len().min(QUARANTINE_PAYLOAD_MAX)]),
        );
        size.append_value(len as i64);
        truncated.append_value(len > QUARANTINE_PAYLOAD_MAX);
    }
    let cols: Vec<ArrayRef> = vec![
        Arc::new(topic.finish()),
        Arc::new(part.finish()),
        Arc::new(off.finish()),
        Arc::new(TimestampMillisecondArray::from(ts).with_timezone("UTC")),
        Arc::new(reason.finish()),
        Arc::new(field.finish()),
        Arc::new(detail.finish()),
        Arc::new(payload.finish()),
        Arc::new(size.finish()),
        Arc::new(truncated.finish()),
    ];
    RecordBatch::try_new(quarantine_schema(), cols)
}

/// The `alerts` schema: one row per alert state change. `labels` are the alert instance's
/// labels (series labels, plus `judge` for per-judge rules); the series label columns repeat
/// them for convenient SQL and are null when a rule aggregates that label away.
pub fn alerts_schema(labels: &[&str]) -> SchemaRef {
    let s = |n: &str, null: bool| Field::new(n, DataType::Utf8, null);
    let f = |n: &str| Field::new(n, DataType::Float64, true);
    let mut fields = vec![
        Field::new("evaluated_at", ts_type(), false),
        s("rule", false),
        s("fingerprint", false),
        s("from_state", false),
        s("to_state", false),
        s("severity", false),
    ];
    fields.extend(labels.iter().map(|l| s(l, true)));
    fields.extend([
        Field::new("labels", map_type(DataType::Utf8), false),
        Field::new("rule_labels", map_type(DataType::Utf8), false),
        s("signal", false),
        f("value"),
        f("baseline"),
        f("effect"),
        Field::new("threshold", DataType::Float64, false),
        f("p_value"),
        Field::new("n_current", DataType::Int64, false),
        Field::new("n_baseline", DataType::Int64, false),
        Field::new("range_start", ts_type(), false),
        Field::new("range_end", ts_type(), false),
        Field::new("fired_at", ts_type(), true),
        Field::new("onset", ts_type(), true),
        Field::new("detection_delay_ms", DataType::Int64, true),
        s("baseline_source", false),
        s("reason", false),
        s("summary", false),
        s("description", false),
        s("runbook_url", false),
        Field::new(
            "channels",
            DataType::List(Arc::new(Field::new("item", DataType::Utf8, false))),
            false,
        ),
        s("action", true),
        // Added with the registry signals: nullable, so older files read as null.
        Field::new("details", map_type(DataType::Utf8), true),
    ]);
    Arc::new(Schema::new(fields))
}

/// One row of the `alerts` table: an alert transition or a circuit-breaker transition
/// (`signal = 'circuit_breaker'`, states `closed` / `open` / `half_open`).
#[derive(Debug, Clone)]
pub struct AlertRecord {
    pub at_ms: i64,
    pub rule: String,
    pub fingerprint: String,
    pub from: String,
    pub to: String,
    pub severity: String,
    pub labels: Vec<(String, String)>,
    pub rule_labels: std::collections::BTreeMap<String, String>,
    pub signal: String,
    pub numbers: crate::detect::alerts::Numbers,
    pub threshold: f64,
    pub range_start_ms: i64,
    pub range_end_ms: i64,
    pub fired_at_ms: Option<i64>,
    /// Estimated change point of the firing and the delay from it to the firing.
    pub onset_ms: Option<i64>,
    pub detection_delay_ms: Option<i64>,
    pub baseline_desc: String,
    pub reason: String,
    pub summary: String,
    pub description: String,
    pub runbook_url: String,
    pub channels: Vec<String>,
    pub action: Option<&'static str>,
    /// The signal's details (a deprecation's date and successor, money lost per day, …).
    pub details: std::collections::BTreeMap<String, String>,
}

impl From<&crate::detect::alerts::Transition> for AlertRecord {
    fn from(t: &crate::detect::alerts::Transition) -> Self {
        AlertRecord {
            at_ms: t.at_ms,
            rule: t.rule.clone(),
            fingerprint: t.fingerprint.clone(),
            from: t.from.as_str().to_string(),
            to: t.to.as_str().to_string(),
            severity: t.severity.as_str().to_string(),
            labels: t.labels.clone(),
            rule_labels: t.rule_labels.clone(),
            signal: t.signal.clone(),
            numbers: t.numbers,
            threshold: t.threshold,
            range_start_ms: t.range_start_ms,
            range_end_ms: t.range_end_ms,
            fired_at_ms: t.fired_at_ms,
            onset_ms: t.onset_ms,
            detection_delay_ms: t.detection_delay_ms,
            baseline_desc: t.baseline_desc.clone(),
            reason: t.reason.clone(),
            summary: t.summary.clone(),
            description: t.description.clone(),
            runbook_url: t.runbook_url.clone(),
            channels: t.channels.clone(),
            action: t.action.map(|a| match a {
                crate::detect::rules::Action::CircuitBreaker => "circuit_breaker",
            }),
            details: t.details.clone(),
        }
    }
}

impl From<&crate::detect::breaker::BreakerTransition> for AlertRecord {
    fn from(b: &crate::detect::breaker::BreakerTransition) -> Self {
        let mut rule_labels = std::collections::BTreeMap::new();
        if let Some(p) = &b.primary_model {
            rule_labels.insert("primary_model".to_string(), p.clone());
        }
        if let Some(f) = &b.fallback_model {
            rule_labels.insert("fallback_model".to_string(), f.clone());
        }
        rule_labels.insert(
            "cooldown_seconds".to_string(),
            (b.cooldown_ms / 1000).to_string(),
        );
        rule_labels.insert("opens".to_string(), b.opens.to_string());
        AlertRecord {
            at_ms: b.at_ms,
            rule: b.rule.clone(),
            fingerprint: b.key.clone(),
            from: b.from.as_str().to_string(),
            to: b.to.as_str().to_string(),
            severity: b.severity.as_str().to_string(),
            labels: b.labels.clone(),
            rule_labels,
            signal: "circuit_breaker".to_string(),
            numbers: crate::detect::alerts::Numbers {
                value: b.value,
                n_current: b.requests,
                ..Default::default()
            },
            threshold: b.threshold,
            range_start_ms: b.range_start_ms,
            range_end_ms: b.range_end_ms,
            fired_at_ms: None,
            onset_ms: None,
            detection_delay_ms: None,
            baseline_desc: String::new(),
            reason: b.reason.clone(),
            summary: format!(
                "circuit breaker of {} {} -> {}{}",
                b.primary_model.as_deref().unwrap_or(&b.key),
                b.from.as_str(),
                b.to.as_str(),
                match b.command() {
                    Some("fallback") => format!(
                        ": traffic to {}",
                        b.fallback_model
                            .as_deref()
                            .unwrap_or("the gateway's fallback")
                    ),
                    Some(_) => ": traffic back to the primary".to_string(),
                    None => String::new(),
                }
            ),
            description: String::new(),
            runbook_url: String::new(),
            channels: b.channels.clone(),
            action: Some("circuit_breaker"),
            details: Default::default(),
        }
    }
}

pub fn alerts_batch(labels: &[&str], rows: &[AlertRecord]) -> Result<RecordBatch, ArrowError> {
    let n = rows.len();
    let strs = |get: &dyn Fn(&AlertRecord) -> Option<&str>| -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n, n * 16);
        rows.iter().for_each(|r| b.append_option(get(r)));
        Arc::new(b.finish())
    };
    let f64s = |get: &dyn Fn(&AlertRecord) -> Option<f64>| -> ArrayRef {
        let mut b = Float64Builder::with_capacity(n);
        rows.iter().for_each(|r| b.append_option(get(r)));
        Arc::new(b.finish())
    };
    let ts = |get: &dyn Fn(&AlertRecord) -> i64| -> ArrayRef {
        Arc::new(
            TimestampMillisecondArray::from_iter_values(rows.iter().map(get)).with_timezone("UTC"),
        )
    };
    let mut cols: Vec<ArrayRef> = vec![
        ts(&|r| r.at_ms),
        strs(&|r| Some(&r.rule)),
        strs(&|r| Some(&r.fingerprint)),
        strs(&|r| Some(&r.from)),
        strs(&|r| Some(&r.to)),
        strs(&|r| Some(&r.severity)),
    ];
    for l in labels {
        cols.push(strs(&|r| {
            r.labels
                .iter()
                .find(|(k, _)| k == l)
                .map(|(_, v)| v.as_str())
        }));
    }
    let map = |get: &dyn Fn(&AlertRecord) -> Vec<(&str, &str)>| -> Result<ArrayRef, ArrowError> {
        let mut b = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for r in rows {
            for (k, v) in get(r) {
                b.keys().append_value(k);
                b.values().append_value(v);
            }
            b.append(true)?;
        }
        Ok(Arc::new(b.finish()))
    };
    cols.push(map(&|r| {
        r.labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    })?);
    cols.push(map(&|r| {
        r.rule_labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect()
    })?);
    cols.push(strs(&|r| Some(&r.signal)));
    cols.push(f64s(&|r| r.numbers.value));
    cols.push(f64s(&|r| r.numbers.baseline));
    cols.push(f64s(&|r| r.numbers.effect));
    cols.push(f64s(&|r| Some(r.threshold)));
    cols.push(f64s(&|r| r.numbers.p_value));
    let mut nc = Int64Builder::with_capacity(n);
    let mut nb = Int64Builder::with_capacity(n);
    for r in rows {
        nc.append_value(r.numbers.n_current as i64);
        nb.append_value(r.numbers.n_baseline as i64);
    }
    cols.push(Arc::new(nc.finish()));
    cols.push(Arc::new(nb.finish()));
    cols.push(ts(&|r| r.range_start_ms));
    cols.push(ts(&|r| r.range_end_ms));
    cols.push(Arc::new(
        TimestampMillisecondArray::from(rows.iter().map(|r| r.fired_at_ms).collect::<Vec<_>>())
            .with_timezone("UTC"),
    ));
    cols.push(Arc::new(
        TimestampMillisecondArray::from(rows.iter().map(|r| r.onset_ms).collect::<Vec<_>>())
            .with_timezone("UTC"),
    ));
    cols.push(Arc::new(Int64Array::from(
        rows.iter()
            .map(|r| r.detection_delay_ms)
            .collect::<Vec<_>>(),
    )));
    cols.push(strs(&|r| Some(&r.baseline_desc)));
    cols.push(strs(&|r| Some(&r.reason)));
    cols.push(strs(&|r| Some(&r.summary)));
    cols.push(strs(&|r| Some(&r.description)));
    cols.push(strs(&|r| Some(&r.runbook_url)));
    let mut ch = ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new(
        "item",
        DataType::Utf8,
        false,
    )));
    for r in rows {
        for c in &r.channels {
            ch.values().append_value(c);
        }
        ch.append(true);
    }
    cols.push(Arc::new(ch.finish()));
    cols.push(strs(&|r| r.action));
    let mut d = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
    for r in rows {
        for (k, v) in &r.details {
            d.keys().append_value(k);
            d.values().append_value(v);
        }
        d.append(true)?;
    }
    cols.push(Arc::new(d.finish()));
    RecordBatch::try_new(alerts_schema(labels), cols)
}
