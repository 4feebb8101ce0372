//! Durable small-file writes shared by checkpoints, the detector state and the outbox.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A failed step of [`write_atomic`]: what was being done to which path.
#[derive(Debug)]
pub struct WriteError {
    pub op: &'static str,
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Writes `bytes` to `path` so a reader sees the old or the new content, never a mix, and
/// the new content survives a crash once this returns: a `.tmp` sibling is written and
/// fsynced, renamed over `path`, and the directory fsynced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), WriteError> {
    fn err<'a>(op: &'static str, p: &'a Path) -> impl FnOnce(std::io::Error) -> WriteError + 'a {
        move |source| WriteError {
            op,
            path: p.to_path_buf(),
            source,
        }
    }
    let tmp = path.with_extension("json.tmp");
    let mut f = File::create(&tmp).map_err(err("creating", &tmp))?;
    f.write_all(bytes).map_err(err("writing", &tmp))?;
    f.sync_all().map_err(err("syncing", &tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(err("renaming", &tmp))?;
    if let Some(dir) = path.parent() {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(err("syncing", dir))?;
    }
    Ok(())
}
