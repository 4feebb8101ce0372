//! Compaction of closed hours: the many small Parquet files a Hive partition
//! (`<table>/date=…/hour=…`) collects — one per Kafka partition per commit — rewritten as one.
//!
//! Readers pay per file (listing, footers, opening), so a month of 10 s commits costs a SQL
//! query more in file overhead than in data. Compaction keeps the tables the same rows in
//! fewer files; it never changes a row.
//!
//! An hour is *due* once it ended at least `after` ago and no file arrived in it for
//! `after`, and it holds at least `min_files` committed files. For each due hour:
//!
//! 1. under the exclusive data lock, list the hour's files and leave out every file an
//!    open commit intent names (a commit that has not reached its checkpoint, or a crashed
//!    one that recovery will delete): these stay separate files;
//! 2. without the lock, stream the inputs into one file in a staging directory under
//!    `state/compact/` (in-progress name, fsync, rename, directory fsync);
//! 3. under the exclusive lock again: write a manifest, give every file of the hour that is
//!    not an input (committed meanwhile, or an intent's) a second link in the staging
//!    directory, then swap the staging directory and the hour's directory in one
//!    `renameat2(RENAME_EXCHANGE)`. The hour's directory is untouched until then, so a reader
//!    lists either all the old files or the new set, never both or neither. (Where the
//!    exchange is not supported, the compacted file is linked in and the inputs removed: a
//!    reader may then briefly see both, never neither);
//! 4. delete the old directory (now at the staging path) and the manifest.
//!
//! Commits hold the lock shared, so step 3 never sees a half-written commit. Recovery
//! ([`recover`], run before any commit recovery) finishes a swap that happened (the
//! compacted file is in the hour: remove the manifest's inputs still there) and otherwise
//! just deletes the staging directory (the hour was not touched); a crash at any step leaves
//! every row exactly once.
//! The locks are `flock`s on files in `state/`, so several daemons sharing a data directory
//! (one per consumer group member) coordinate too; only one compacts at a time.
//!
//! The `alerts` table is not compacted: a re-evaluated tick after a crash rewrites its file
//! by name, which a compacted hour would turn into a duplicate.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use serde::{Deserialize, Serialize};

pub use crate::storage::error::CompactError;
use crate::storage::layout::{pending_files, DataLock, EVENTS, QUARANTINE, STATE_DIR, WINDOWS};

/// Tables whose closed hours are compacted.
pub const TABLES: [&str; 3] = [EVENTS, WINDOWS, QUARANTINE];
/// Under `state/`: manifests, staging directories and the compaction lock.
const COMPACT_DIR: &str = "compact";
const STAGE_DIR: &str = "stage";
const COMPACT_LOCK: &str = "compact.lock";
use crate::time::HOUR_MS;

pub(crate) use crate::durable::io;

/// When and what to compact (`[storage.compaction]`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct CompactionConfig {
    /// Compact closed hours in the background. Default `true`.
    pub enabled: bool,
    /// An hour is compacted once it ended at least this long ago and no file arrived in it
    /// for as long. Default `1h`.
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    /// Time between compaction passes. Default `5m`.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Fewest files an hour must hold to be rewritten. Default 2.
    pub min_files: usize,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            after: Duration::from_secs(3600),
            interval: Duration::from_secs(300),
            min_files: 2,
        }
    }
}

/// Whether an hour starting at `hour_start_ms`, whose newest file was modified at
/// `newest_ms`, holding `files` committed files, is due at `now_ms`.
pub fn due(
    cfg: &CompactionConfig,
    hour_start_ms: i64,
    newest_ms: i64,
    files: usize,
    now_ms: i64,
) -> bool {
    let after = i64::try_from(cfg.after.as_millis()).unwrap_or(i64::MAX);
    files >= cfg.min_files.max(2)
        && hour_start_ms.saturating_add(HOUR_MS).saturating_add(after) <= now_ms
        && newest_ms.saturating_add(after) <= now_ms
}

/// What one hour's compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourCompacted {
    pub table: &'static str,
    /// `date=…/hour=…`.
    pub partition: String,
    pub files_in: usize,
    pub rows: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// A compaction in progress, written before any file moves (step 3).
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    /// The hour's directory, relative to the data directory.
    dir: PathBuf,
    /// The staging directory, relative to the data directory.
    stage: PathBuf,
    /// Name of the compacted file in `stage` (then in `dir`).
    output: String,
    /// Names of the files it replaces.
    inputs: Vec<String>,
}

/// Compacts the tables of one data directory.
#[derive(Debug)]
pub struct Compactor {
    root: PathBuf,
    state_dir: PathBuf,
    lock: DataLock,
    props: WriterProperties,
    cfg: CompactionConfig,
    /// Series labels of the `windows` table, for the `windows_1h` rollup.
    labels: Vec<String>,
    #[cfg(test)]
    crash_at: Option<&'static str>,
    /// Use the two-step swap even where the exchange works.
    #[cfg(test)]
    force_fallback: bool,
}

/// What a pass did.
#[derive(Debug, Clone, Default)]
pub struct PassReport {
    pub compacted: Vec<HourCompacted>,
    /// Hours of `windows_1h` (re)built from `windows`.
    pub rolled_up: usize,
}

impl Compactor {
    pub fn new(
        root: &Path,
        zstd_level: i32,
        cfg: CompactionConfig,
        labels: Vec<String>,
    ) -> Result<Self, CompactError> {
        let state_dir = root.join(STATE_DIR);
        fs::create_dir_all(state_dir.join(COMPACT_DIR)).map_err(io("creating", &state_dir))?;
        let props = crate::storage::sink::writer_properties(zstd_level).map_err(|source| {
            CompactError::Parquet {
                path: root.to_path_buf(),
                source,
            }
        })?;
        Ok(Self {
            root: root.to_path_buf(),
            lock: DataLock::new(&state_dir),
            state_dir,
            props,
            cfg,
            labels,
            #[cfg(test)]
            crash_at: None,
            #[cfg(test)]
            force_fallback: false,
        })
    }

    fn crash_point(&self, _at: &'static str) -> Result<(), CompactError> {
        #[cfg(test)]
        if self.crash_at == Some(_at) {
            return Err(CompactError::Crash(_at));
        }
        Ok(())
    }

    /// Compacts every due hour of every table, unless another process is compacting this
    /// data directory (then returns `None`). `stop` is asked between hours.
    pub fn run_pass(
        &self,
        now_ms: i64,
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<PassReport>, CompactError> {
        let lock_path = self.state_dir.join(COMPACT_DIR).join(COMPACT_LOCK);
        let guard = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("opening", &lock_path))?;
        match guard.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => return Ok(None),
            Err(fs::TryLockError::Error(e)) => return Err(io("locking", &lock_path)(e).into()),
        }
        {
            let _data = self
                .lock
                .exclusive()
                .map_err(io("locking", self.lock.path()))?;
            recover_locked(&self.root)?;
        }
        // Staging left by a compactor that died before its manifest; no other compactor
        // runs (we hold the compaction lock), so all of it is garbage.
        self.clear_staging()?;
        let mut report = PassReport::default();
        let done = &mut report.compacted;
        'tables: for table in TABLES {
            for (partition, hour_start) in hours(&self.root.join(table))? {
                if stop() {
                    break 'tables;
                }
                let dir = self.root.join(table).join(&partition);
                let (files, newest) = committed_files(&dir)?;
                if !due(&self.cfg, hour_start, newest, files.len(), now_ms) {
                    continue;
                }
                if let Some(h) = self.compact_hour(table, &partition)? {
                    done.push(h);
                }
            }
        }
        self.clear_staging()?;
        if !stop() {
            report.rolled_up = self.roll_up(now_ms)?;
        }
        Ok(Some(report))
    }

    /// Brings `windows_1h` up to date with every closed hour of `windows`; returns the hours
    /// rebuilt.
    fn roll_up(&self, now_ms: i64) -> Result<usize, CompactError> {
        let after = i64::try_from(self.cfg.after.as_millis()).unwrap_or(i64::MAX);
        // date → (midnight, hour → committed files)
        let mut days: BTreeMap<String, (i64, BTreeMap<String, Vec<PathBuf>>)> = BTreeMap::new();
        {
            let _data = self
                .lock
                .exclusive()
                .map_err(io("locking", self.lock.path()))?;
            let pending = pending_files(&self.state_dir)
                .map_err(io("reading commit intents in", &self.state_dir))?;
            let table = self.root.join(WINDOWS);
            for (partition, hour_start) in hours(&table)? {
                if hour_start.saturating_add(HOUR_MS).saturating_add(after) > now_ms {
                    continue;
                }
                let Some((day, hour)) = partition.split_once('/') else {
                    continue;
                };
                let (Some(date), Some(hh)) =
                    (day.strip_prefix("date="), hour.strip_prefix("hour="))
                else {
                    continue;
                };
                let rel = Path::new(WINDOWS).join(&partition);
                let (files, _) = committed_files(&self.root.join(&rel))?;
                let files: Vec<PathBuf> = files
                    .into_iter()
                    .filter(|n| !pending.contains(&rel.join(n)))
                    .map(|n| self.root.join(&rel).join(n))
                    .collect();
                let day_start = hour_start - hour_start.rem_euclid(24 * HOUR_MS);
                days.entry(date.to_string())
                    .or_insert((day_start, BTreeMap::new()))
                    .1
                    .insert(hh.to_string(), files);
            }
        }
        let labels: Vec<&str> = self.labels.iter().map(String::as_str).collect();
        let mut rebuilt = 0;
        // A day that fails (e.g. written with other series labels) does not hold up the rest;
        // the first failure is reported once every day was tried.
        let mut failed: Option<CompactError> = None;
        for (date, (day_start, current)) in days {
            let err = |source| CompactError::Rollup {
                date: date.clone(),
                source: Box::new(source),
            };
            let day_file = crate::storage::rollup::day_file(&self.root, &date);
            let recorded = match crate::storage::rollup::recorded_sources(&day_file) {
                Ok(r) => r,
                Err(e) => {
                    // Derived data: an unreadable day file is rebuilt from `windows`.
                    tracing::warn!(file = %day_file.display(), error = %e, "unreadable windows_1h day file; rebuilding it");
                    if let Err(e) = fs::remove_file(&day_file) {
                        failed.get_or_insert(io("removing", &day_file)(e).into());
                        continue;
                    }
                    crate::storage::rollup::Sources::new()
                }
            };
            let stale: BTreeMap<String, Vec<PathBuf>> = current
                .into_iter()
                .filter(|(hour, files)| {
                    recorded.get(hour) != Some(&crate::storage::rollup::source_names(files))
                })
                .collect();
            if stale.is_empty() {
                continue;
            }
            match crate::storage::rollup::update_day(
                &self.root,
                &date,
                day_start,
                &labels,
                &stale,
                &self.props,
            ) {
                Ok(()) => rebuilt += stale.len(),
                Err(e) => {
                    failed.get_or_insert(err(e));
                }
            }
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(rebuilt),
        }
    }

    /// Removes the staging tree; only with the compaction lock held and no manifest left.
    fn clear_staging(&self) -> Result<(), CompactError> {
        remove_tree(&self.state_dir.join(COMPACT_DIR).join(STAGE_DIR))
    }

    /// Rewrites one hour's committed files as one; `None` when fewer than two are left
    /// after leaving out those of open commits, or their schemas differ.
    fn compact_hour(
        &self,
        table: &'static str,
        partition: &str,
    ) -> Result<Option<HourCompacted>, CompactError> {
        let rel_dir = Path::new(table).join(partition);
        let dir = self.root.join(&rel_dir);
        // Step 1: what is committed now.
        let inputs: Vec<String> = {
            let _data = self
                .lock
                .exclusive()
                .map_err(io("locking", self.lock.path()))?;
            let (listed, _) = committed_files(&dir)?;
            let pending = pending_files(&self.state_dir)
                .map_err(io("reading commit intents in", &self.state_dir))?;
            listed
                .into_iter()
                .filter(|name| !pending.contains(&rel_dir.join(name)))
                .collect()
        };
        if inputs.len() < 2 {
            return Ok(None);
        }
        // Step 2: the compacted file, in a staging directory of its own.
        let rel_stage = Path::new(STATE_DIR)
            .join(COMPACT_DIR)
            .join(STAGE_DIR)
            .join(&rel_dir);
        let stage = self.root.join(&rel_stage);
        remove_tree(&stage)?;
        fs::create_dir_all(&stage).map_err(io("creating", &stage))?;
        let output = format!(
            "compact-{}.parquet",
            crate::time::fnv_hex(inputs.iter().map(|s| s.as_bytes()))
        );
        let Some((rows, bytes_in, bytes_out)) =
            self.write_compacted(&dir, &inputs, &stage, &output)?
        else {
            remove_tree(&stage)?;
            tracing::warn!(dir = %dir.display(), "not compacted: its files have different schemas");
            return Ok(None);
        };
        self.crash_point("after_stage")?;
        // Step 3: swap, under the exclusive lock.
        {
            let _data = self
                .lock
                .exclusive()
                .map_err(io("locking", self.lock.path()))?;
            let now: BTreeSet<String> = list_names(&dir)?;
            if inputs.iter().any(|i| !now.contains(i)) {
                // Only recovery removes committed files, and it holds this lock; be safe anyway.
                remove_tree(&stage)?;
                tracing::warn!(dir = %dir.display(), "not compacted: its files changed meanwhile");
                return Ok(None);
            }
            let manifest = Manifest {
                dir: rel_dir.clone(),
                stage: rel_stage.clone(),
                output: output.clone(),
                inputs: inputs.clone(),
            };
            let manifest_path = self.manifest_path(table, partition);
            crate::durable::write_atomic(
                &manifest_path,
                &serde_json::to_vec(&manifest).unwrap_or_default(),
            )
            .map_err(CompactError::from)?;
            // The hour's other files (committed since step 1, or an open intent's) get a second
            // link in the staging directory: the hour's directory itself stays untouched
            // until the swap, so a reader listing it meanwhile sees every row once.
            let keep: BTreeSet<&String> = inputs.iter().collect();
            for name in now
                .iter()
                .filter(|n| !keep.contains(n) && !n.starts_with('.'))
            {
                let (from, to) = (dir.join(name), stage.join(name));
                fs::hard_link(&from, &to).map_err(io("linking", &from))?;
            }
            sync_dir(&stage)?;
            self.crash_point("after_links")?;
            #[cfg(test)]
            let fallback = self.force_fallback;
            #[cfg(not(test))]
            let fallback = false;
            swap(&dir, &stage, &output, &inputs, fallback)?;
            self.crash_point("after_swap")?;
            // Step 4, still under the lock (recovery elsewhere must not see a half-removed
            // staging directory): the old directory (or, after the fallback, what is left of
            // the staging one) goes, then the manifest.
            remove_tree(&stage)?;
            fs::remove_file(&manifest_path).map_err(io("removing", &manifest_path))?;
        }
        Ok(Some(HourCompacted {
            table,
            partition: partition.to_string(),
            files_in: inputs.len(),
            rows,
            bytes_in,
            bytes_out,
        }))
    }

    fn manifest_path(&self, table: &str, partition: &str) -> PathBuf {
        let flat = partition.replace('/', "-");
        self.state_dir
            .join(COMPACT_DIR)
            .join(format!("{table}-{flat}.json"))
    }

    /// Streams `inputs` of `dir` into `stage/output`; `None` if their schemas differ.
    /// Returns (rows, bytes in, bytes out).
    fn write_compacted(
        &self,
        dir: &Path,
        inputs: &[String],
        stage: &Path,
        output: &str,
    ) -> Result<Option<(u64, u64, u64)>, CompactError> {
        let tmp = stage.join(format!(".{output}.inprogress"));
        let file = File::create(&tmp).map_err(io("creating", &tmp))?;
        let mut writer: Option<(ArrowWriter<File>, arrow::datatypes::SchemaRef)> = None;
        let (mut rows, mut bytes_in) = (0u64, 0u64);
        for name in inputs {
            let path = dir.join(name);
            let f = File::open(&path).map_err(io("opening", &path))?;
            bytes_in += f.metadata().map_err(io("inspecting", &path))?.len();
            let perr = |source| CompactError::Parquet {
                path: path.clone(),
                source,
            };
            let reader = ParquetRecordBatchReaderBuilder::try_new(f)
                .map_err(perr)?
                .with_batch_size(64 * 1024)
                .build()
                .map_err(perr)?;
            let schema = arrow::record_batch::RecordBatchReader::schema(&reader);
            let w = match &mut writer {
                Some((w, first)) => {
                    if first.fields() != schema.fields() {
                        return Ok(None);
                    }
                    w
                }
                None => {
                    let w = ArrowWriter::try_new(
                        file.try_clone().map_err(io("opening", &tmp))?,
                        schema.clone(),
                        Some(self.props.clone()),
                    )
                    .map_err(|source| CompactError::Parquet {
                        path: tmp.clone(),
                        source,
                    })?;
                    &mut writer.insert((w, schema)).0
                }
            };
            for batch in reader {
                let batch = batch.map_err(|e| perr(e.into()))?;
                rows += batch.num_rows() as u64;
                w.write(&batch).map_err(|source| CompactError::Parquet {
                    path: tmp.clone(),
                    source,
                })?;
            }
        }
        let Some((w, _)) = writer else {
            return Ok(None);
        };
        w.close().map_err(|source| CompactError::Parquet {
            path: tmp.clone(),
            source,
        })?;
        file.sync_all().map_err(io("syncing", &tmp))?;
        let bytes_out = file.metadata().map_err(io("inspecting", &tmp))?.len();
        drop(file);
        let out = stage.join(output);
        fs::rename(&tmp, &out).map_err(io("renaming", &tmp))?;
        sync_dir(stage)?;
        Ok(Some((rows, bytes_in, bytes_out)))
    }
}

/// Finishes or undoes compactions a crash interrupted. Takes the data lock; call before
/// rolling back commits (their files may sit in a staging directory until then).
pub fn recover(root: &Path) -> Result<usize, CompactError> {
    let lock = DataLock::new(&root.join(STATE_DIR));
    let _data = lock.exclusive().map_err(io("locking", lock.path()))?;
    recover_locked(root)
}

/// [`recover`] for a caller that holds the exclusive data lock.
pub fn recover_locked(root: &Path) -> Result<usize, CompactError> {
    let dir = root.join(STATE_DIR).join(COMPACT_DIR);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(io("listing", &dir)(e).into()),
    };
    let mut n = 0;
    for e in entries {
        let path = e.map_err(io("listing", &dir))?.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let bytes = fs::read(&path).map_err(io("reading", &path))?;
        let m: Manifest = match serde_json::from_slice(&bytes) {
            Ok(m) => m,
            Err(source) => return Err(CompactError::Manifest { path, source }),
        };
        let (live, stage) = (root.join(&m.dir), root.join(&m.stage));
        let output = live.join(&m.output);
        if output.try_exists().map_err(io("inspecting", &output))? {
            // The compacted file is in the hour: finish. After the exchange the inputs are in
            // the staging directory; after the fallback some may still be in the hour.
            for name in &m.inputs {
                let p = live.join(name);
                match fs::remove_file(&p) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("removing", &p)(e).into()),
                }
            }
            sync_dir(&live)?;
            tracing::info!(dir = %live.display(), "finished an interrupted compaction");
        } else {
            // Nothing in the hour changed: the staging directory holds only the compacted
            // file and second links.
            tracing::warn!(dir = %live.display(), "undid an interrupted compaction");
        }
        remove_tree(&stage)?;
        fs::remove_file(&path).map_err(io("removing", &path))?;
        n += 1;
    }
    Ok(n)
}

/// Puts the staging directory's files in place of the hour's: one atomic
/// `renameat2(RENAME_EXCHANGE)` of the two directories on Linux (the old files end up in the
/// staging directory). Where the file system cannot, the compacted file is linked into the
/// hour and the inputs removed one by one: never a row lost, but a reader may briefly see an
/// input beside the compacted file; [`recover`] finishes it after a crash in between.
fn swap(
    live: &Path,
    stage: &Path,
    output: &str,
    inputs: &[String],
    fallback: bool,
) -> Result<(), CompactError> {
    let exchanged = if fallback {
        Err(std::io::Error::from_raw_os_error(FALLBACK_ERRNO))
    } else {
        exchange(stage, live)
    };
    match exchanged {
        Ok(()) => {
            sync_parent(live)?;
            sync_parent(stage)?;
        }
        Err(e)
            if e.raw_os_error()
                .is_some_and(|c| FALLBACK_ERRNOS.contains(&c)) =>
        {
            let (from, to) = (stage.join(output), live.join(output));
            fs::hard_link(&from, &to).map_err(io("linking", &from))?;
            sync_dir(live)?;
            for name in inputs {
                let p = live.join(name);
                fs::remove_file(&p).map_err(io("removing", &p))?;
            }
            sync_dir(live)?;
        }
        Err(e) => return Err(io("swapping with", live)(e).into()),
    }
    Ok(())
}

#[cfg(target_os = "linux")]
const FALLBACK_ERRNOS: [i32; 3] = [libc::EINVAL, libc::ENOSYS, libc::EOPNOTSUPP];
#[cfg(not(target_os = "linux"))]
const FALLBACK_ERRNOS: [i32; 1] = [libc::ENOSYS];
const FALLBACK_ERRNO: i32 = FALLBACK_ERRNOS[0];

#[cfg(target_os = "linux")]
fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let a = CString::new(a.as_os_str().as_bytes())?;
    let b = CString::new(b.as_os_str().as_bytes())?;
    // SAFETY: both pointers are valid NUL-terminated strings for the duration of the call;
    // the syscall reads them and touches no other memory of ours.
    let r = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            a.as_ptr(),
            libc::AT_FDCWD,
            b.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[cfg(not(target_os = "linux"))]
fn exchange(_a: &Path, _b: &Path) -> std::io::Result<()> {
    Err(std::io::Error::from_raw_os_error(FALLBACK_ERRNO))
}

/// `date=…/hour=…` directories of a table, with their start (ms), oldest first.
fn hours(table_dir: &Path) -> Result<Vec<(String, i64)>, CompactError> {
    let mut out = Vec::new();
    for day in list_names(table_dir)? {
        let Some(date) = day.strip_prefix("date=") else {
            continue;
        };
        let Ok(d) = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d") else {
            continue;
        };
        let Some(midnight) = d
            .and_hms_opt(0, 0, 0)
            .map(|t| t.and_utc().timestamp_millis())
        else {
            continue;
        };
        for hour in list_names(&table_dir.join(&day))? {
            if let Some(h) = hour
                .strip_prefix("hour=")
                .and_then(|h| h.parse::<i64>().ok())
                .filter(|h| (0..24).contains(h))
            {
                out.push((format!("{day}/{hour}"), midnight + h * HOUR_MS));
            }
        }
    }
    out.sort_by_key(|(_, t)| *t);
    Ok(out)
}

/// Committed (visible, `*.parquet`) files of a directory, by name, and the newest one's
/// modification time (ms).
fn committed_files(dir: &Path) -> Result<(Vec<String>, i64), CompactError> {
    let mut names = Vec::new();
    let mut newest = i64::MIN;
    for name in list_names(dir)? {
        if name.starts_with('.') || !name.ends_with(".parquet") {
            continue;
        }
        let path = dir.join(&name);
        let modified = fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(io("inspecting", &path))?;
        let ms = modified
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        newest = newest.max(ms);
        names.push(name);
    }
    Ok((names, newest))
}

/// Names of the entries of `dir` (empty if it does not exist), sorted.
fn list_names(dir: &Path) -> Result<BTreeSet<String>, CompactError> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeSet::new()),
        Err(e) => return Err(io("listing", dir)(e).into()),
    };
    let mut out = BTreeSet::new();
    for e in entries {
        let e = e.map_err(io("listing", dir))?;
        out.insert(e.file_name().to_string_lossy().into_owned());
    }
    Ok(out)
}

fn remove_tree(path: &Path) -> Result<(), CompactError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io("removing", path)(e).into()),
    }
}

fn sync_dir(dir: &Path) -> Result<(), CompactError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))?;
    Ok(())
}

fn sync_parent(path: &Path) -> Result<(), CompactError> {
    match path.parent() {
        Some(p) => sync_dir(p),
        None => Ok(()),
    }
}

/// Compacts in the background every `interval` until stopped.
pub struct Background {
    stop: std::sync::mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Background {
    pub fn start(compactor: Compactor, metrics: crate::metrics::Metrics) -> std::io::Result<Self> {
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let interval = compactor.cfg.interval;
        let thread = std::thread::Builder::new()
            .name("compaction".into())
            .spawn(move || loop {
                match rx.recv_timeout(interval) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    _ => return,
                }
                let stopped = || {
                    !matches!(
                        rx.try_recv(),
                        Err(std::sync::mpsc::TryRecvError::Empty)
                    )
                };
                let now = chrono::Utc::now().timestamp_millis();
                match compactor.run_pass(now, &stopped) {
                    Ok(Some(report)) => {
                        if report.rolled_up > 0 {
                            tracing::info!(hours = report.rolled_up, "windows_1h brought up to date");
                        }
                        for h in report.compacted {
                            metrics.record_compaction(h.table, h.files_in);
                            tracing::info!(
                                table = h.table,
                                partition = %h.partition,
                                files = h.files_in,
                                rows = h.rows,
                                bytes_in = h.bytes_in,
                                bytes_out = h.bytes_out,
                                "compacted an hour"
                            );
                        }
                    }
                    Ok(None) => tracing::debug!("another process is compacting; pass skipped"),
                    Err(e) => {
                        metrics.compaction_errors.inc();
                        tracing::error!(error = %e, "compaction failed; the hour keeps its files and is retried next pass");
                    }
                }
            })?;
        Ok(Self { stop, thread })
    }

    /// Stops after the hour being compacted, if any.
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use arrow::record_batch::RecordBatch;
    use std::sync::Arc;

    const DAY: &str = "date=2026-11-01/hour=03";

    fn cfg() -> CompactionConfig {
        CompactionConfig {
            after: Duration::ZERO,
            ..Default::default()
        }
    }

    fn write(path: &Path, ids: std::ops::Range<i64>, tag: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("tag", DataType::Utf8, false),
        ]));
        let n = ids.end - ids.start;
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from_iter_values(ids)),
                Arc::new(StringArray::from_iter_values((0..n).map(|_| tag))),
            ],
        )
        .unwrap();
        let mut w = ArrowWriter::try_new(File::create(path).unwrap(), schema, None).unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
    }

    fn ids(dir: &Path) -> Vec<i64> {
        let mut out = Vec::new();
        for name in list_names(dir).unwrap() {
            if name.starts_with('.') {
                continue;
            }
            let r = ParquetRecordBatchReaderBuilder::try_new(File::open(dir.join(name)).unwrap())
                .unwrap()
                .build()
                .unwrap();
            for b in r {
                let b = b.unwrap();
                let a = b.column(0).as_any().downcast_ref::<Int64Array>().unwrap();
                out.extend(a.values().iter().copied());
            }
        }
        out.sort();
        out
    }

    /// Three committed files of one hour, plus the compactor.
    fn setup(root: &Path) -> (Compactor, PathBuf) {
        let dir = root.join(EVENTS).join(DAY);
        write(&dir.join("t-0-0-100.parquet"), 0..100, "a");
        write(&dir.join("t-0-100-250.parquet"), 100..250, "a");
        write(&dir.join("t-1-0-50.parquet"), 1000..1050, "b");
        (Compactor::new(root, 3, cfg(), vec![]).unwrap(), dir)
    }

    fn expected() -> Vec<i64> {
        (0..250).chain(1000..1050).collect()
    }

    fn state_compact_is_empty(root: &Path) -> bool {
        let d = root.join("state").join(COMPACT_DIR);
        list_names(&d).unwrap().iter().all(|n| n == COMPACT_LOCK)
    }

    #[test]
    fn an_hours_files_become_one_with_every_row() {
        let tmp = tempfile::tempdir().unwrap();
        let (c, dir) = setup(tmp.path());
        let done = c
            .run_pass(i64::MAX / 2, &|| false)
            .unwrap()
            .unwrap()
            .compacted;
        assert_eq!(done.len(), 1);
        assert_eq!((done[0].files_in, done[0].rows), (3, 300));
        let names = list_names(&dir).unwrap();
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names.iter().next().unwrap().starts_with("compact-"));
        assert_eq!(ids(&dir), expected());
        assert!(state_compact_is_empty(tmp.path()));
        // A straggler arriving later is folded in by the next pass.
        write(&dir.join("t-2-0-10.parquet"), 5000..5010, "c");
        let done = c
            .run_pass(i64::MAX / 2, &|| false)
            .unwrap()
            .unwrap()
            .compacted;
        assert_eq!(done[0].files_in, 2);
        assert_eq!(list_names(&dir).unwrap().len(), 1);
        let mut want = expected();
        want.extend(5000..5010);
        assert_eq!(ids(&dir), want);
    }

    #[test]
    fn files_of_an_open_commit_stay_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let (c, dir) = setup(tmp.path());
        let open = dir.join("t-1-50-80.parquet");
        write(&open, 2000..2030, "b");
        fs::write(
            tmp.path().join("state/t-1.intent.json"),
            serde_json::json!({"seq": 9, "first_offset": 50, "next_offset": 80, "files": [open]})
                .to_string(),
        )
        .unwrap();
        c.run_pass(i64::MAX / 2, &|| false).unwrap().unwrap();
        let names = list_names(&dir).unwrap();
        assert_eq!(names.len(), 2, "{names:?}");
        assert!(names.contains("t-1-50-80.parquet"));
    }

    #[test]
    fn an_unreadable_intent_stops_compaction_instead_of_counting_as_none() {
        let tmp = tempfile::tempdir().unwrap();
        let (c, dir) = setup(tmp.path());
        fs::write(tmp.path().join("state/t-1.intent.json"), b"{not json").unwrap();
        let e = c.run_pass(i64::MAX / 2, &|| false).unwrap_err();
        assert!(e.to_string().contains("t-1.intent.json"), "{e}");
        assert_eq!(list_names(&dir).unwrap().len(), 3);
    }

    #[test]
    fn a_recent_hour_or_a_busy_one_waits() {
        let c = CompactionConfig::default();
        let hour = 10 * HOUR_MS;
        let end = hour + HOUR_MS;
        assert!(!due(&c, hour, hour, 5, end + HOUR_MS - 1));
        assert!(due(&c, hour, hour, 5, end + HOUR_MS));
        // A file arrived late: the hour waits until it has been quiet for `after`.
        assert!(!due(&c, hour, end + HOUR_MS, 5, end + HOUR_MS));
        assert!(!due(&c, hour, hour, 1, end + 10 * HOUR_MS));
    }

    #[test]
    fn different_schemas_are_left_alone() {
        let tmp = tempfile::tempdir().unwrap();
        let (c, dir) = setup(tmp.path());
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from_iter_values(7000..7005))],
        )
        .unwrap();
        let mut w =
            ArrowWriter::try_new(File::create(dir.join("z.parquet")).unwrap(), schema, None)
                .unwrap();
        w.write(&batch).unwrap();
        w.close().unwrap();
        let done = c
            .run_pass(i64::MAX / 2, &|| false)
            .unwrap()
            .unwrap()
            .compacted;
        assert!(done.is_empty());
        assert_eq!(list_names(&dir).unwrap().len(), 4);
    }

    /// A crash at each step, then recovery: every row exactly once, including a file that
    /// was linked aside during the swap.
    #[test]
    fn a_crash_at_any_step_leaves_every_row_once() {
        for at in ["after_stage", "after_links", "after_swap"] {
            let tmp = tempfile::tempdir().unwrap();
            let (mut c, dir) = setup(tmp.path());
            // An open commit's file: linked into the staging directory in step 3, must stay
            // in the hour, once, either way.
            let open = dir.join("t-1-50-80.parquet");
            write(&open, 2000..2030, "b");
            let intent = tmp.path().join("state/t-1.intent.json");
            fs::write(
                &intent,
                serde_json::json!({"seq": 9, "first_offset": 50, "next_offset": 80, "files": [open]})
                    .to_string(),
            )
            .unwrap();
            c.crash_at = Some(at);
            let e = c.run_pass(i64::MAX / 2, &|| false).unwrap_err();
            assert!(matches!(e, CompactError::Crash(p) if p == at), "{e}");
            let mut want = expected();
            want.extend(2000..2030);
            let n = recover(tmp.path()).unwrap();
            assert_eq!(n, usize::from(at != "after_stage"), "{at}");
            assert_eq!(ids(&dir), want, "{at}");
            assert!(open.exists(), "{at}: the open commit's file is in place");
            let compacted = list_names(&dir)
                .unwrap()
                .iter()
                .filter(|n| n.starts_with("compact-"))
                .count();
            assert_eq!(compacted, usize::from(at == "after_swap"), "{at}");
            // The next pass (crash hook off) finishes the job.
            c.crash_at = None;
            c.run_pass(i64::MAX / 2, &|| false).unwrap().unwrap();
            assert_eq!(ids(&dir), want, "{at}");
            assert_eq!(list_names(&dir).unwrap().len(), 2, "{at}");
            assert!(state_compact_is_empty(tmp.path()), "{at}");
        }
    }

    #[test]
    fn the_fallback_swap_keeps_every_row_and_recovers_halfway() {
        // The fallback run end to end.
        let tmp = tempfile::tempdir().unwrap();
        let (mut c, dir) = setup(tmp.path());
        c.force_fallback = true;
        let done = c
            .run_pass(i64::MAX / 2, &|| false)
            .unwrap()
            .unwrap()
            .compacted;
        assert_eq!(done.len(), 1);
        assert_eq!(list_names(&dir).unwrap().len(), 1);
        assert_eq!(ids(&dir), expected());
        assert!(state_compact_is_empty(tmp.path()));

        // Died halfway: the compacted file linked into the hour, one input removed.
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let (c, dir) = setup(root);
        let rel_dir = Path::new(EVENTS).join(DAY);
        let rel_stage = Path::new("state/compact/stage").join(&rel_dir);
        let stage = root.join(&rel_stage);
        fs::create_dir_all(&stage).unwrap();
        let inputs: Vec<String> = list_names(&dir).unwrap().into_iter().collect();
        c.write_compacted(&dir, &inputs, &stage, "compact-x.parquet")
            .unwrap()
            .unwrap();
        let m = Manifest {
            dir: rel_dir.clone(),
            stage: rel_stage.clone(),
            output: "compact-x.parquet".into(),
            inputs: inputs.clone(),
        };
        fs::write(
            root.join("state/compact/events-x.json"),
            serde_json::to_vec(&m).unwrap(),
        )
        .unwrap();
        fs::hard_link(
            stage.join("compact-x.parquet"),
            dir.join("compact-x.parquet"),
        )
        .unwrap();
        fs::remove_file(dir.join(&inputs[0])).unwrap();
        assert_eq!(recover(root).unwrap(), 1);
        assert_eq!(
            list_names(&dir).unwrap().into_iter().collect::<Vec<_>>(),
            ["compact-x.parquet"]
        );
        assert_eq!(ids(&dir), expected());
        assert!(!stage.exists());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn directories_swap_in_one_rename() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
        fs::create_dir_all(a.join("x")).unwrap();
        fs::create_dir_all(b.join("y")).unwrap();
        match exchange(&a, &b) {
            Ok(()) => assert!(a.join("y").exists() && b.join("x").exists()),
            Err(e) => {
                eprintln!("SKIP: RENAME_EXCHANGE unsupported here ({e}); the fallback is used")
            }
        }
    }

    #[test]
    fn a_second_compactor_skips_while_one_runs() {
        let tmp = tempfile::tempdir().unwrap();
        let (c, dir) = setup(tmp.path());
        let held = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(tmp.path().join("state/compact").join(COMPACT_LOCK))
            .unwrap();
        held.lock().unwrap();
        assert!(c.run_pass(i64::MAX / 2, &|| false).unwrap().is_none());
        assert_eq!(list_names(&dir).unwrap().len(), 3);
    }
}
