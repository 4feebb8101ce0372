//! Storage stage: the Parquet tables and the commit protocol.
//!
//! Owns the data directory's [`layout`], the table [`tables`] schemas (events, windows, alerts, quarantine), the [`sink`] that
//! plans and writes Hive-partitioned files under in-progress names, the [`commit`] protocol
//! (intent → files renamed → checkpoint, so a partition's offset advances only with what it
//! carries), [`compact`]ion of closed hours, the hourly [`rollup`] (`windows_1h`), the
//! [`registry_log`] (`registry_changes`) and the [`read`]ers of stored windows. It hands committed alert transitions on through
//! [`commit::AlertsHook`], an interface the daemon wires to delivery: storage never calls
//! delivery itself.

pub mod commit;
pub mod compact;
pub mod error;
pub mod layout;
pub mod read;
pub mod registry_log;
pub mod rollup;
pub mod sink;
pub mod tables;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where and how Parquet is written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Root of the `events/`, `windows/` and `quarantine/` tables. Default `./driftwatch-data`.
    pub data_dir: PathBuf,
    /// Buffered event rows that trigger a flush of the `events` table. Default 100000.
    pub flush_rows: usize,
    /// Longest time an event stays buffered before it is written. Default `10s`.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// zstd level for every table (1-22). Default 3.
    pub zstd_level: i32,
    /// Rewriting each closed hour's many small files as one (`[storage.compaction]`).
    pub compaction: crate::storage::compact::CompactionConfig,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./driftwatch-data"),
            flush_rows: 100_000,
            flush_interval: Duration::from_secs(10),
            zstd_level: 3,
            compaction: Default::default(),
        }
    }
}

impl StorageConfig {
    /// Checks the section; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), crate::section::ConfigError> {
        if self.flush_rows == 0 {
            return Err(crate::section::invalid(
                "storage.flush_rows",
                "must be at least 1",
            ));
        }
        if self.flush_interval.is_zero() {
            return Err(crate::section::invalid(
                "storage.flush_interval",
                "must be greater than 0",
            ));
        }
        if !(1..=22).contains(&self.zstd_level) {
            return Err(crate::section::invalid(
                "storage.zstd_level",
                "must be between 1 and 22",
            ));
        }
        if self.data_dir.as_os_str().is_empty() {
            return Err(crate::section::invalid(
                "storage.data_dir",
                "must not be empty",
            ));
        }
        Ok(())
    }
}
