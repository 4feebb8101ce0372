//! Result formats of `driftwatch query` and `POST /api/v1/query`.

use arrow::record_batch::RecordBatch;

use super::engine::{QueryError, QueryOutput};

/// Output formats of `driftwatch query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Table,
    Csv,
    /// JSON lines: one object per row.
    Json,
    /// One JSON array of row objects (the HTTP default).
    JsonArray,
    Parquet,
    Arrow,
}

/// Encodes a result in `format` (Parquet and Arrow IPC are binary).
pub fn encode_output(out: &QueryOutput, format: Format) -> Result<Vec<u8>, QueryError> {
    let err =
        |e: &dyn std::fmt::Display| QueryError::Execution(format!("encoding the result: {e}"));
    let mut buf = Vec::new();
    match format {
        Format::Table => {
            let t =
                arrow::util::pretty::pretty_format_batches(&out.batches).map_err(|e| err(&e))?;
            buf.extend_from_slice(format!("{t}\n").as_bytes());
        }
        Format::Csv => {
            let mut w = arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut buf);
            if out.batches.is_empty() {
                w.write(&RecordBatch::new_empty(out.schema.clone()))
                    .map_err(|e| err(&e))?;
            }
            for b in &out.batches {
                w.write(b).map_err(|e| err(&e))?;
            }
        }
        Format::Json => {
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::LineDelimited>(&mut buf);
            for b in &out.batches {
                w.write(b).map_err(|e| err(&e))?;
            }
            w.finish().map_err(|e| err(&e))?;
        }
        Format::JsonArray => {
            let mut w = arrow::json::WriterBuilder::new()
                .with_explicit_nulls(true)
                .build::<_, arrow::json::writer::JsonArray>(&mut buf);
            for b in &out.batches {
                w.write(b).map_err(|e| err(&e))?;
            }
            w.finish().map_err(|e| err(&e))?;
            if out.batches.iter().all(|b| b.num_rows() == 0) {
                buf = b"[]".to_vec();
            }
        }
        Format::Parquet => {
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, out.schema.clone(), None)
                .map_err(|e| err(&e))?;
            for b in &out.batches {
                w.write(b).map_err(|e| err(&e))?;
            }
            w.close().map_err(|e| err(&e))?;
        }
        Format::Arrow => {
            let mut w = arrow::ipc::writer::StreamWriter::try_new(&mut buf, &out.schema)
                .map_err(|e| err(&e))?;
            for b in &out.batches {
                w.write(b).map_err(|e| err(&e))?;
            }
            w.finish().map_err(|e| err(&e))?;
        }
    }
    Ok(buf)
}
