//! The `registry_changes` table: one row per model-registry field a reload (or a start with
//! an edited file) changed, so reports can say "gpt-4o's price changed on …".
//!
//! `registry_changes/date=YYYY-MM-DD/registry_changes-<hash>.parquet`, one file per change
//! set, written aside, fsynced and renamed. The name is a hash of the changes, so a change set
//! recorded again after a crash (before the registry snapshot was saved) replaces its file
//! instead of adding rows twice. The snapshot the next start compares against is
//! `state/registry.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use parquet::arrow::ArrowWriter;

use crate::durable::io;
use crate::registry::changes::Change;
use crate::registry::{Date, Model};

/// Name of the table (and of its directory under the data directory).
pub const TABLE: &str = "registry_changes";
/// The last registry recorded, under `state/`.
pub const SNAPSHOT: &str = "registry.json";

/// Why a change set was not recorded.
#[derive(Debug, thiserror::Error)]
pub enum RegistryLogError {
    #[error(transparent)]
    Io(#[from] crate::durable::IoError),
    #[error("writing {}: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
    #[error("{}: unreadable registry snapshot ({message}); move it away to start over", path.display())]
    Snapshot { path: PathBuf, message: String },
}

pub fn schema() -> SchemaRef {
    let s = |n: &str| Field::new(n, DataType::Utf8, true);
    Arc::new(Schema::new(vec![
        Field::new(
            "changed_at",
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            false,
        ),
        Field::new("model", DataType::Utf8, false),
        Field::new("field", DataType::Utf8, false),
        s("old_value"),
        s("new_value"),
        s("registry_file"),
    ]))
}

/// Writes `changes` (noticed at `at_ms`, from `file`) as one file; returns its path.
pub fn record(
    data_dir: &Path,
    changes: &[Change],
    at_ms: i64,
    file: &Path,
) -> Result<Option<PathBuf>, RegistryLogError> {
    if changes.is_empty() {
        return Ok(None);
    }
    let n = changes.len();
    let mut model = StringBuilder::with_capacity(n, n * 8);
    let mut field = StringBuilder::with_capacity(n, n * 8);
    let mut old = StringBuilder::with_capacity(n, n * 32);
    let mut new = StringBuilder::with_capacity(n, n * 32);
    let mut src = StringBuilder::with_capacity(n, n * 16);
    let mut key = Vec::new();
    for c in changes {
        model.append_value(&c.model);
        field.append_value(&c.field);
        old.append_option(c.old.as_deref());
        new.append_option(c.new.as_deref());
        src.append_value(file.display().to_string());
        for part in [&c.model, &c.field] {
            key.extend_from_slice(part.as_bytes());
            key.push(0);
        }
        for part in [&c.old, &c.new] {
            key.extend_from_slice(part.as_deref().unwrap_or("\u{1}").as_bytes());
            key.push(0);
        }
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(
            TimestampMillisecondArray::from_iter_values(std::iter::repeat_n(at_ms, n))
                .with_timezone("UTC"),
        ),
        Arc::new(model.finish()),
        Arc::new(field.finish()),
        Arc::new(old.finish()),
        Arc::new(new.finish()),
        Arc::new(src.finish()),
    ];
    let dir = data_dir
        .join(TABLE)
        .join(format!("date={}", Date::of_ms(at_ms)));
    std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    let path = dir.join(format!(
        "{TABLE}-{}.parquet",
        crate::time::fnv_hex([&key[..]])
    ));
    let fail = |message: String| RegistryLogError::Parquet {
        path: path.clone(),
        message,
    };
    let batch = RecordBatch::try_new(schema(), columns).map_err(|e| fail(e.to_string()))?;
    let mut bytes = Vec::new();
    let mut w =
        ArrowWriter::try_new(&mut bytes, schema(), None).map_err(|e| fail(e.to_string()))?;
    w.write(&batch).map_err(|e| fail(e.to_string()))?;
    w.close().map_err(|e| fail(e.to_string()))?;
    crate::durable::write_atomic(&path, &bytes)?;
    Ok(Some(path))
}

/// The models of the last registry recorded (none on a first start).
pub fn load_snapshot(state_dir: &Path) -> Result<Option<Vec<Model>>, RegistryLogError> {
    let path = state_dir.join(SNAPSHOT);
    match std::fs::read(&path) {
        Ok(b) => serde_json::from_slice(&b)
            .map(Some)
            .map_err(|e| RegistryLogError::Snapshot {
                path,
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(RegistryLogError::Io(crate::durable::IoError {
            op: "reading",
            path,
            source: e,
        })),
    }
}

/// Saves `models` as the registry recorded last.
pub fn save_snapshot(state_dir: &Path, models: &[Model]) -> Result<(), RegistryLogError> {
    std::fs::create_dir_all(state_dir).map_err(io("creating", state_dir))?;
    let bytes = serde_json::to_vec(models).expect("plain data serializes");
    crate::durable::write_atomic(&state_dir.join(SNAPSHOT), &bytes)?;
    Ok(())
}
