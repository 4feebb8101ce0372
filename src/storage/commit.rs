//! The durable commit of one partition: Parquet files, then the checkpoint, then offsets.
//!
//! Protocol for a [`CommitJob`] covering offsets `[first, next)` of partition P:
//! 1. write `state/<topic>-<P>.intent.json` listing the files about to be written;
//! 2. write the files (each under an in-progress name, fsynced, renamed; directories fsynced);
//! 3. write `state/<topic>-<P>.checkpoint.json` atomically: `next`, the open windows, the
//!    watermark and the late-score index — this is the commit point;
//! 4. remove the intent; the caller then stores/commits offset `next` in Kafka.
//!
//! Recovery when P is assigned ([`Committer::load`]): commits are numbered, and an intent
//! whose number is above the checkpoint's belongs to a commit that never reached step 3, so
//! its files are deleted; the pipeline resumes from the checkpoint and skips messages below `next`
//! (Kafka's committed offset may lag the checkpoint by one commit). Replaying the same
//! offsets rewrites files of the same names. A crash at any point therefore neither loses
//! nor double-counts an event.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

pub use crate::storage::sink::CommitJob;
use crate::storage::sink::{ParquetSink, SinkError, Written};
use crate::window::state::WindowSnapshot;

pub use crate::storage::layout::STATE_DIR;
use crate::storage::layout::{DataLock, Intent};

/// Where a partition resumes: from its checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct Resume<'a> {
    pub next_offset: i64,
    /// Sequence number of the checkpoint's commit.
    pub seq: u64,
    pub windows: &'a WindowSnapshot,
    /// The late-score index log up to the checkpoint's length (`None`: missing or short).
    pub responses: Option<&'a [u8]>,
}

const CHECKPOINT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error(transparent)]
    Sink(#[from] SinkError),
    #[error(transparent)]
    Compact(#[from] crate::storage::compact::CompactError),
    #[error(transparent)]
    Io(#[from] crate::durable::IoError),
    #[error("checkpoint {path} is unreadable ({source}); move it away to start this partition from Kafka's committed offset")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("detector state {path} is unreadable ({source}); move it away to start alert states fresh (firing alerts would fire again)")]
    CorruptDetector {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("encoding the detector state: {source}")]
    EncodeDetector {
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "checkpoint {path} has version {found}; this build reads version {CHECKPOINT_VERSION}"
    )]
    Version { path: PathBuf, found: u32 },
}

use crate::durable::io;

/// What a partition resumes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Checkpoint {
    pub version: u32,
    pub topic: String,
    pub partition: i32,
    /// Every message below this offset is in committed files or in `windows`.
    pub next_offset: i64,
    /// Number of the commit that wrote this checkpoint.
    #[serde(default)]
    pub seq: u64,
    pub windows: WindowSnapshot,
}

/// Where a test makes the process die (`DRIFTWATCH_FAILPOINT=<point>:<nth commit>`), to
/// prove recovery from a crash at that exact step. Points: `after_intent`, `after_files`,
/// `after_checkpoint`.
#[derive(Debug, Default)]
struct Failpoint {
    point: Option<(String, u64)>,
}

impl Failpoint {
    fn from_env() -> Self {
        let point = std::env::var("DRIFTWATCH_FAILPOINT").ok().and_then(|v| {
            let (p, n) = v.split_once(':')?;
            Some((p.to_string(), n.parse().ok()?))
        });
        Self { point }
    }

    fn hit(&self, at: &str, commit_no: u64) {
        if let Some((p, n)) = &self.point {
            if p == at && *n == commit_no {
                eprintln!("driftwatch: failpoint {at} at commit {commit_no}: aborting");
                std::process::abort();
            }
        }
    }
}

/// Writes commits for one data directory.
#[derive(Debug)]
pub struct Committer {
    sink: ParquetSink,
    state_dir: PathBuf,
    failpoint: Failpoint,
    commits: AtomicU64,
    /// Where committed alert transitions go next (delivery's inbox, wired by the daemon).
    alerts_hook: Option<Box<dyn AlertsHook>>,
    /// Shared while a commit writes, exclusive while files are rolled back or compacted.
    lock: DataLock,
}

/// What a commit wrote.
#[derive(Debug, Clone)]
pub struct Committed {
    pub written: Vec<Written>,
    pub next_offset: i64,
}

impl Committer {
    /// Prepares the data directory: tables (in-progress leftovers removed) and `state/`.
    pub fn new(sink: ParquetSink) -> Result<Self, CommitError> {
        let state_dir = sink.root().join(STATE_DIR);
        fs::create_dir_all(&state_dir).map_err(io("creating", &state_dir))?;
        for e in fs::read_dir(&state_dir)
            .map_err(io("listing", &state_dir))?
            .flatten()
        {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(Self {
            sink,
            lock: DataLock::new(&state_dir),
            state_dir,
            failpoint: Failpoint::from_env(),
            commits: AtomicU64::new(0),
            alerts_hook: None,
        })
    }

    fn path(&self, topic: &str, partition: i32, kind: &str) -> PathBuf {
        let safe = crate::storage::layout::file_safe(topic);
        self.state_dir
            .join(format!("{safe}-{partition}.{kind}.json"))
    }

    /// The checkpoint of a partition, after rolling back a commit that a crash interrupted.
    pub fn load(&self, topic: &str, partition: i32) -> Result<Option<Checkpoint>, CommitError> {
        let _lock = self.exclusive()?;
        let ckpt_path = self.path(topic, partition, "checkpoint");
        let checkpoint = match fs::read(&ckpt_path) {
            Ok(bytes) => {
                let c: Checkpoint =
                    serde_json::from_slice(&bytes).map_err(|source| CommitError::Corrupt {
                        path: ckpt_path.clone(),
                        source,
                    })?;
                if c.version != CHECKPOINT_VERSION {
                    return Err(CommitError::Version {
                        path: ckpt_path,
                        found: c.version,
                    });
                }
                Some(c)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io("reading", &ckpt_path)(e).into()),
        };
        let intent_path = self.path(topic, partition, "intent");
        self.roll_back(&intent_path, checkpoint.as_ref().map_or(0, |c| c.seq))?;
        Ok(checkpoint)
    }

    fn responses_path(&self, topic: &str, partition: i32, generation: u64) -> PathBuf {
        let safe = crate::storage::layout::file_safe(topic);
        self.state_dir
            .join(format!("{safe}-{partition}.responses.{generation}.log"))
    }

    /// The part of a partition's late-score index log that its checkpoint covers; `None`
    /// when the file is missing or shorter (the index then starts empty).
    pub fn load_responses(
        &self,
        topic: &str,
        partition: i32,
        at: crate::window::responses::LogRef,
    ) -> Result<Option<Vec<u8>>, CommitError> {
        let path = self.responses_path(topic, partition, at.generation);
        match fs::read(&path) {
            Ok(mut bytes) if bytes.len() as u64 >= at.len => {
                // Bytes past the checkpoint are a commit that did not complete.
                bytes.truncate(at.len as usize);
                Ok(Some(bytes))
            }
            Ok(_) => Ok(None),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path)(e).into()),
        }
    }

    /// Appends (or, for a new generation, writes whole) a commit's index log bytes, synced.
    fn write_responses(
        &self,
        job: &CommitJob,
        a: &crate::window::responses::LogAppend,
    ) -> Result<(), CommitError> {
        use std::io::{Seek, SeekFrom, Write};
        let path = self.responses_path(&job.topic, job.partition, a.generation);
        if a.rewrite {
            return write_atomic(&path, &a.bytes);
        }
        if a.bytes.is_empty() && a.base_len == 0 && !path.exists() {
            return Ok(());
        }
        let mut f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io("opening", &path))?;
        let len = f.metadata().map_err(io("reading", &path))?.len();
        if len < a.base_len {
            return Err(crate::durable::IoError {
                op: "appending to",
                path: path.clone(),
                source: std::io::Error::other(format!(
                    "the late-score index log has {len} bytes, its checkpoint says {}; move the partition's checkpoint away to start its index afresh",
                    a.base_len
                )),
            }
            .into());
        }
        // Drops the bytes of an append whose commit did not complete.
        f.set_len(a.base_len).map_err(io("truncating", &path))?;
        f.seek(SeekFrom::Start(a.base_len))
            .map_err(io("seeking", &path))?;
        f.write_all(&a.bytes).map_err(io("writing", &path))?;
        f.sync_data().map_err(io("syncing", &path))?;
        Ok(())
    }

    /// Removes the index logs of a partition older than `generation` (replaced by it).
    fn remove_old_responses(&self, topic: &str, partition: i32, generation: u64) {
        for g in generation.saturating_sub(3)..generation {
            let p = self.responses_path(topic, partition, g);
            if let Err(e) = fs::remove_file(&p) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(file = %p.display(), error = %e, "cannot remove an old late-score index log");
                }
            }
        }
    }

    /// Rolls back every interrupted commit of every partition in the data directory (their
    /// files would otherwise be read as committed, e.g. by the detector's history rebuild).
    pub fn recover_all(&self) -> Result<(), CommitError> {
        let _lock = self.exclusive()?;
        let entries = fs::read_dir(&self.state_dir).map_err(io("listing", &self.state_dir))?;
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(base) = name.strip_suffix(".intent.json") else {
                continue;
            };
            let ckpt_path = self.state_dir.join(format!("{base}.checkpoint.json"));
            let seq = match fs::read(&ckpt_path) {
                Ok(bytes) => match serde_json::from_slice::<Checkpoint>(&bytes) {
                    Ok(c) => c.seq,
                    // An unreadable checkpoint: leave it to `load` to report.
                    Err(_) => continue,
                },
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => 0,
                Err(err) => return Err(io("reading", &ckpt_path)(err).into()),
            };
            self.roll_back(&e.path(), seq)?;
        }
        Ok(())
    }

    /// Takes the data lock exclusively and finishes interrupted compactions (a commit's
    /// files may sit in a compaction's staging directory until then).
    fn exclusive(&self) -> Result<std::fs::File, CommitError> {
        let path = self.state_dir.join("data.lock");
        let guard = self.lock.exclusive().map_err(io("locking", &path))?;
        crate::storage::compact::recover_locked(self.sink.root())?;
        Ok(guard)
    }

    /// Removes the files of the commit `intent_path` describes unless the checkpoint
    /// (`committed_seq`) shows it completed, then the intent.
    fn roll_back(&self, intent_path: &Path, committed_seq: u64) -> Result<(), CommitError> {
        if let Ok(bytes) = fs::read(intent_path) {
            match serde_json::from_slice::<Intent>(&bytes) {
                // Compared by commit number, not offsets: a commit that only closes windows
                // covers no new offset.
                Ok(intent) if intent.seq > committed_seq => {
                    for f in &intent.files {
                        match fs::remove_file(f) {
                            Ok(()) => {
                                tracing::warn!(file = %f.display(), "removed a file of an interrupted commit")
                            }
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(e) => return Err(io("removing", f)(e).into()),
                        }
                    }
                }
                Ok(_) => {}
                // A torn intent: its files were never started (the intent is written first).
                Err(_) => {}
            }
            fs::remove_file(intent_path).map_err(io("removing", intent_path))?;
        }
        Ok(())
    }

    /// Writes one partition's commit; when it returns, `next_offset` may go to Kafka.
    pub fn commit(&self, job: &CommitJob) -> Result<Committed, CommitError> {
        let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
        let planned = self.sink.plan_commit(job)?;
        let lock_path = self.state_dir.join("data.lock");
        let _lock = self.lock.shared().map_err(io("locking", &lock_path))?;
        let intent_path = self.path(&job.topic, job.partition, "intent");
        let intent = Intent {
            seq: job.seq,
            first_offset: job.first_offset,
            next_offset: job.next_offset,
            files: planned.iter().map(|p| p.path.clone()).collect(),
        };
        write_atomic(
            &intent_path,
            &serde_json::to_vec(&intent).unwrap_or_default(),
        )?;
        self.failpoint.hit("after_intent", n);
        let written = self.sink.write(&planned)?;
        self.failpoint.hit("after_files", n);
        if let Some(a) = &job.responses {
            self.write_responses(job, a)?;
        }
        let checkpoint = Checkpoint {
            version: CHECKPOINT_VERSION,
            topic: job.topic.to_string(),
            partition: job.partition,
            next_offset: job.next_offset,
            seq: job.seq,
            windows: job.snapshot.clone(),
        };
        let ckpt_path = self.path(&job.topic, job.partition, "checkpoint");
        // Serializing plain data cannot fail.
        write_atomic(
            &ckpt_path,
            &serde_json::to_vec(&checkpoint).unwrap_or_default(),
        )?;
        self.failpoint.hit("after_checkpoint", n);
        if let Some(a) = job.responses.as_ref().filter(|a| a.rewrite) {
            self.remove_old_responses(&job.topic, job.partition, a.generation);
        }
        fs::remove_file(&intent_path).map_err(io("removing", &intent_path))?;
        Ok(Committed {
            written,
            next_offset: job.next_offset,
        })
    }
}

/// File of the detector's state (alert instances, last evaluated ticks) in `state/`.
pub const DETECTOR_STATE: &str = "detector.json";

/// What happens to an alert commit's transitions once the `alerts` rows are written and
/// before the detector state is: the daemon hands them to delivery's inbox. An error fails
/// the commit, which is retried; the hook must therefore be idempotent per batch (the
/// router ignores transitions it has already taken in).
pub trait AlertsHook: Send + Sync + std::fmt::Debug {
    fn committed(
        &self,
        transitions: &[crate::detect::alerts::Transition],
        breakers: &[crate::detect::breaker::BreakerTransition],
        rollbacks: &[crate::detect::analysis::RollbackEvent],
    ) -> Result<(), crate::durable::IoError>;
}

/// The detector's output of one commit cycle.
#[derive(Debug, Clone)]
pub struct AlertsJob {
    pub transitions: Vec<crate::detect::alerts::Transition>,
    pub breakers: Vec<crate::detect::breaker::BreakerTransition>,
    /// Rollback commands of failed analysis runs (delivered, not written to a table).
    pub rollbacks: Vec<crate::detect::analysis::RollbackEvent>,
    pub snapshot: crate::detect::detector::DetectorSnapshot,
}

impl Committer {
    /// Hands each alert commit's transitions to `hook` (the daemon wires delivery's inbox).
    pub fn set_alerts_hook(&mut self, hook: Box<dyn AlertsHook>) {
        self.alerts_hook = Some(hook);
    }

    /// Writes alert and breaker transitions to the `alerts` table, then (with delivery on)
    /// to the notification inbox, then the detector state. A crash in between re-evaluates
    /// the same ticks after the restart and rewrites the same files.
    pub fn commit_alerts(&self, job: &AlertsJob) -> Result<Vec<Written>, CommitError> {
        let planned = self.sink.plan_alerts(&job.transitions, &job.breakers)?;
        let written = self.sink.write(&planned)?;
        if let Some(hook) = &self.alerts_hook {
            hook.committed(&job.transitions, &job.breakers, &job.rollbacks)?;
        }
        let path = self.state_dir.join(DETECTOR_STATE);
        let bytes = serde_json::to_vec(&job.snapshot)
            .map_err(|source| CommitError::EncodeDetector { source })?;
        write_atomic(&path, &bytes)?;
        Ok(written)
    }

    /// The detector state saved by [`Self::commit_alerts`], if any.
    pub fn load_detector(
        &self,
    ) -> Result<Option<crate::detect::detector::DetectorSnapshot>, CommitError> {
        let path = self.state_dir.join(DETECTOR_STATE);
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|source| {
                CommitError::CorruptDetector {
                    path: path.clone(),
                    source,
                }
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io("reading", &path)(e).into()),
        }
    }
}

/// tmp + fsync + rename + directory fsync.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CommitError> {
    crate::durable::write_atomic(path, bytes).map_err(CommitError::from)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::storage::sink::ParquetSink;

    fn committer(dir: &Path) -> Committer {
        Committer::new(ParquetSink::new(dir, 3, vec!["service"]).unwrap()).unwrap()
    }

    fn job(seq: u64, first: i64, next: i64) -> CommitJob {
        CommitJob {
            topic: Arc::from("t"),
            partition: 0,
            seq,
            first_offset: first,
            next_offset: next,
            events: Vec::new(),
            quarantine: Vec::new(),
            windows: Vec::new(),
            responses: None,
            snapshot: WindowSnapshot::default(),
            now_ms: 0,
        }
    }

    fn write_intent(c: &Committer, seq: u64, first: i64, next: i64, file: &Path) {
        fs::write(file, b"partial").unwrap();
        let intent = Intent {
            seq,
            first_offset: first,
            next_offset: next,
            files: vec![file.to_path_buf()],
        };
        write_atomic(
            &c.path("t", 0, "intent"),
            &serde_json::to_vec(&intent).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn an_interrupted_commit_is_rolled_back_even_when_it_covers_no_new_offset() {
        let dir = tempfile::tempdir().unwrap();
        let c = committer(dir.path());
        c.commit(&job(1, 0, 150)).unwrap();
        // commit 2 only closed windows (offsets 150..150) and died after its files
        let orphan = dir.path().join("windows").join("orphan.parquet");
        fs::create_dir_all(orphan.parent().unwrap()).unwrap();
        write_intent(&c, 2, 150, 150, &orphan);
        let ckpt = c.load("t", 0).unwrap().unwrap();
        assert_eq!((ckpt.seq, ckpt.next_offset), (1, 150));
        assert!(
            !orphan.exists(),
            "files of the interrupted commit are removed"
        );
        assert!(!c.path("t", 0, "intent").exists());
    }

    #[test]
    fn a_commit_that_reached_its_checkpoint_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let c = committer(dir.path());
        c.commit(&job(1, 0, 150)).unwrap();
        c.commit(&job(2, 150, 150)).unwrap();
        // died after the checkpoint of commit 2, before removing its intent
        let kept = dir.path().join("windows").join("kept.parquet");
        fs::create_dir_all(kept.parent().unwrap()).unwrap();
        write_intent(&c, 2, 150, 150, &kept);
        let ckpt = c.load("t", 0).unwrap().unwrap();
        assert_eq!(ckpt.seq, 2);
        assert!(kept.exists(), "a committed commit's files stay");
        assert!(!c.path("t", 0, "intent").exists());
    }

    #[test]
    fn a_corrupt_checkpoint_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let c = committer(dir.path());
        fs::write(c.path("t", 0, "checkpoint"), b"{not json").unwrap();
        let err = c.load("t", 0).unwrap_err().to_string();
        assert!(err.contains("move it away"), "{err}");
    }
}
