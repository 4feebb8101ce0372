//! Errors of the passes that rewrite stored files: compaction and the hourly rollup.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum CompactError {
    #[error(transparent)]
    Io(#[from] crate::durable::IoError),
    #[error("parquet {path}: {source}")]
    Parquet {
        path: PathBuf,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("compaction manifest {path} is unreadable ({source}); compare the hour it names with the staging directory under state/compact/stage by hand, then delete it")]
    Manifest {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path}: {source}")]
    Arrow {
        path: PathBuf,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error(transparent)]
    Read(#[from] crate::storage::read::ReadError),
    #[error("rolling up windows of {date}: {source}")]
    Rollup {
        date: String,
        #[source]
        source: Box<CompactError>,
    },
    #[error("simulated crash at {0}")]
    #[cfg(test)]
    Crash(&'static str),
}
