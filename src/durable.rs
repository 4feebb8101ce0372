//! Durable small-file writes, and the one I/O error type every stage that touches files
//! reports through (storage, the delivery outbox and inbox, checkpoints).

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A failed file operation: what was being done to which path.
#[derive(Debug, thiserror::Error)]
#[error("{op} {path}: {source}")]
pub struct IoError {
    pub op: &'static str,
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    /// The underlying error's kind (e.g. `NotFound` when a file went away mid-read).
    pub fn kind(&self) -> std::io::ErrorKind {
        self.source.kind()
    }
}

/// `map_err` adapter: `fs::read(p).map_err(io("reading", p))?`.
pub fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> IoError + 'a {
    move |source| IoError {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` so a reader sees the old or the new content, never a mix, and
/// the new content survives a crash once this returns: a `.tmp` sibling is written and
/// fsynced, renamed over `path`, and the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IoError> {
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).map_err(io("creating", &tmp))?;
    f.write_all(bytes).map_err(io("writing", &tmp))?;
    f.sync_all().map_err(io("syncing", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io("renaming", &tmp))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("syncing", dir))?;
    }
    Ok(())
}
