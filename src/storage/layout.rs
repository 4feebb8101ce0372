//! The data directory's layout: table names, the `state/` directory, the data lock that
//! orders commits and compaction, and the commit intents compaction must stay away from.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const EVENTS: &str = "events";
pub const WINDOWS: &str = "windows";
pub const QUARANTINE: &str = "quarantine";
pub const ALERTS: &str = "alerts";

/// Checkpoints, intents, detector and delivery state, compaction manifests.
pub const STATE_DIR: &str = "state";

/// Under `state/`: the lock file of [`DataLock`].
const DATA_LOCK: &str = "data.lock";

/// The `flock` that orders commits and compaction over a data directory's tables. A guard
/// holds it until dropped.
#[derive(Debug, Clone)]
pub struct DataLock {
    path: PathBuf,
}

impl DataLock {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(DATA_LOCK),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn open(&self) -> std::io::Result<File> {
        File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.path)
    }

    /// Held by commits: they may run together, never during a compaction's swap.
    pub fn shared(&self) -> std::io::Result<File> {
        let f = self.open()?;
        f.lock_shared()?;
        Ok(f)
    }

    /// Held while files move between directories (compaction, recovery).
    pub fn exclusive(&self) -> std::io::Result<File> {
        let f = self.open()?;
        f.lock()?;
        Ok(f)
    }
}

/// Topic names may hold characters that are awkward in file names.
pub(crate) fn file_safe(topic: &str) -> String {
    topic
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A commit's intent (`state/<topic>-<P>.intent.json`): the files it is about to write.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Intent {
    /// Number of the commit; it completed iff the checkpoint carries this number or a later one.
    #[serde(default)]
    pub seq: u64,
    pub first_offset: i64,
    pub next_offset: i64,
    pub files: Vec<PathBuf>,
}

/// Files named by commit intents still in `state/` (commits in flight, or interrupted ones
/// that recovery will remove), as `<table>/date=…/hour=…/<name>` relative to the data
/// directory. Such files must not be compacted. An intent that cannot be read is an error
/// (compaction then waits), never "nothing pending".
pub fn pending_files(state_dir: &Path) -> std::io::Result<std::collections::BTreeSet<PathBuf>> {
    let mut out = std::collections::BTreeSet::new();
    for e in fs::read_dir(state_dir)? {
        let e = e?;
        if !e.file_name().to_string_lossy().ends_with(".intent.json") {
            continue;
        }
        let bytes = match fs::read(e.path()) {
            Ok(b) => b,
            // Removed meanwhile: that commit completed or was rolled back.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        let intent: Intent = serde_json::from_slice(&bytes).map_err(|err| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {err}", e.path().display()),
            )
        })?;
        for f in intent.files {
            let tail: Vec<_> = f.components().rev().take(4).collect();
            out.insert(tail.into_iter().rev().collect());
        }
    }
    Ok(out)
}
