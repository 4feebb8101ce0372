//! The late-score join index: recent `response_id`s → (request time, series), so a score or
//! feedback that arrives on its own message finds the window of the request it scores.
//!
//! Bounded by `scores.join_capacity` (first in, first out) and, at lookup, by
//! `scores.late_ttl` after the request's window closed. Entries stay after their window
//! closes, so a late score for a written window becomes a correction row.
//!
//! Durable through a change log, `state/<topic>-<P>.responses.<generation>.log`: every insert
//! appends a record, each commit hands the new bytes to the committer, and the checkpoint
//! records the log's generation and length. A restarted partition replays the log up to that
//! length and holds exactly the index the uninterrupted run held at the checkpoint. When a
//! generation has grown past twice the capacity, the next commit writes the live entries as a
//! new generation instead.
//!
//! Records: `S` u32 id, u32 label count, per label u32 length + UTF-8 bytes (a series, the
//! first time this generation names it); `E` u64 id hash, i64 request time (ms), u32 series id.
//! Little-endian.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::window::series::SeriesKey;

/// Where a partition's index log stands: what its checkpoint records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRef {
    pub generation: u64,
    /// Bytes of the generation's file that belong to the checkpoint.
    pub len: u64,
}

/// Index log bytes one commit writes before its checkpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogAppend {
    pub generation: u64,
    /// Length of the generation's file before these bytes (0 for a rewrite).
    pub base_len: u64,
    pub bytes: Vec<u8>,
    /// A new generation: the file is written whole and older generations are removed once
    /// the checkpoint names it.
    pub rewrite: bool,
}

impl LogAppend {
    pub fn log_ref(&self) -> LogRef {
        LogRef {
            generation: self.generation,
            len: self.base_len + self.bytes.len() as u64,
        }
    }
}

/// A log that cannot be read back.
#[derive(Debug, thiserror::Error)]
#[error("response index log is malformed at byte {at}: {what}")]
pub struct LogError {
    pub at: usize,
    pub what: &'static str,
}

#[derive(Debug, Default)]
struct Log {
    generation: u64,
    committed_len: u64,
    pending: Vec<u8>,
    series_ids: HashMap<SeriesKey, u32>,
    entries: u64,
    /// A rewrite is due at the next take.
    rewrite: bool,
}

/// Recent `response_id`s → (request event time, series), bounded FIFO. Ids are kept as 64-bit
/// hashes (a false match needs a collision among `capacity` recent ids).
#[derive(Debug)]
pub struct ResponseIndex {
    capacity: usize,
    /// Fixed seed: the ids are saved and must mean the same after a restart.
    hasher: foldhash::fast::FixedState,
    map: HashMap<u64, (i64, SeriesKey), foldhash::fast::RandomState>,
    order: VecDeque<u64>,
    log: Log,
}

impl ResponseIndex {
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            hasher: foldhash::fast::FixedState::with_seed(0x6472_6966_7477_6174),
            map: HashMap::default(),
            order: VecDeque::new(),
            log: Log::default(),
        }
    }

    pub fn id(&self, response_id: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(response_id)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Remembers the request `response_id` of series `key` at event time `start` (ms).
    pub fn insert(&mut self, response_id: &str, start: i64, key: &SeriesKey) {
        let id = self.id(response_id);
        self.insert_id(id, start, key);
    }

    /// Same, by hash (old checkpoints saved hashes).
    pub fn insert_id(&mut self, id: u64, start: i64, key: &SeriesKey) {
        if self.capacity == 0 {
            return;
        }
        self.apply(id, start, key.clone());
        self.log_entry(id, start, key);
    }

    fn apply(&mut self, id: u64, start: i64, key: SeriesKey) {
        if self.map.insert(id, (start, key)).is_none() {
            self.order.push_back(id);
        }
        while self.order.len() > self.capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }

    fn log_entry(&mut self, id: u64, start: i64, key: &SeriesKey) {
        let log = &mut self.log;
        let sid = match log.series_ids.get(key) {
            Some(s) => *s,
            None => {
                let s = log.series_ids.len() as u32;
                log.series_ids.insert(key.clone(), s);
                write_series(&mut log.pending, s, key);
                s
            }
        };
        log.pending.push(b'E');
        log.pending.extend_from_slice(&id.to_le_bytes());
        log.pending.extend_from_slice(&start.to_le_bytes());
        log.pending.extend_from_slice(&sid.to_le_bytes());
        log.entries += 1;
        if log.entries > 2 * self.capacity as u64 + 10_000 {
            log.rewrite = true;
        }
    }

    pub fn get(&self, response_id: &str) -> Option<&(i64, SeriesKey)> {
        self.map.get(&self.id(response_id))
    }

    /// Entries oldest first: (id hash, window start, series).
    pub fn entries(&self) -> impl Iterator<Item = (u64, i64, &SeriesKey)> {
        self.order
            .iter()
            .filter_map(|id| self.map.get(id).map(|(s, k)| (*id, *s, k)))
    }

    /// The log bytes since the last call, for the next commit; the checkpoint of that commit
    /// records [`LogAppend::log_ref`]. `None` when the index is off.
    pub fn take_log(&mut self) -> Option<LogAppend> {
        if self.capacity == 0 {
            return None;
        }
        if self.log.rewrite {
            let generation = self.log.generation + 1;
            let mut log = Log {
                generation,
                ..Log::default()
            };
            let live: Vec<(u64, i64, SeriesKey)> =
                self.entries().map(|(i, s, k)| (i, s, k.clone())).collect();
            std::mem::swap(&mut self.log, &mut log);
            for (id, start, key) in &live {
                self.log_entry(*id, *start, key);
            }
            self.log.rewrite = false;
            let bytes = std::mem::take(&mut self.log.pending);
            self.log.committed_len = bytes.len() as u64;
            return Some(LogAppend {
                generation,
                base_len: 0,
                bytes,
                rewrite: true,
            });
        }
        let bytes = std::mem::take(&mut self.log.pending);
        let base_len = self.log.committed_len;
        self.log.committed_len += bytes.len() as u64;
        Some(LogAppend {
            generation: self.log.generation,
            base_len,
            bytes,
            rewrite: false,
        })
    }

    /// Forgets the log: the next [`Self::take_log`] writes the live entries as a generation
    /// after `generation`.
    pub fn start_after_generation(&mut self, generation: u64) {
        self.log = Log {
            generation,
            rewrite: true,
            ..Log::default()
        };
    }

    /// Replays a log written by [`Self::take_log`]'s commits (the first `at.len` bytes of
    /// generation `at.generation`), so the index is what it was at that checkpoint. Later
    /// inserts append to the same generation.
    pub fn restore_log(&mut self, at: LogRef, bytes: &[u8]) -> Result<(), LogError> {
        let mut series: Vec<SeriesKey> = Vec::new();
        let mut r = Reader { b: bytes, at: 0 };
        let mut entries = 0u64;
        while r.at < bytes.len() {
            match r.u8()? {
                b'S' => {
                    let sid = r.u32()?;
                    if sid as usize != series.len() {
                        return Err(r.error("series ids out of order"));
                    }
                    let n = r.u32()? as usize;
                    let mut values = Vec::with_capacity(n.min(64));
                    for _ in 0..n {
                        let len = r.u32()? as usize;
                        let s = r.take(len)?;
                        let v = std::str::from_utf8(s).map_err(|_| r.error("label not UTF-8"))?;
                        values.push(v.to_string());
                    }
                    series.push(SeriesKey::new(values));
                }
                b'E' => {
                    let id = r.u64()?;
                    let start = r.u64()? as i64;
                    let sid = r.u32()? as usize;
                    let key = series
                        .get(sid)
                        .cloned()
                        .ok_or_else(|| r.error("entry names an unknown series"))?;
                    self.apply(id, start, key);
                    entries += 1;
                }
                _ => return Err(r.error("unknown record")),
            }
        }
        self.log = Log {
            generation: at.generation,
            committed_len: bytes.len() as u64,
            pending: Vec::new(),
            series_ids: series
                .into_iter()
                .enumerate()
                .map(|(i, k)| (k, i as u32))
                .collect(),
            entries,
            rewrite: entries > 2 * self.capacity as u64 + 10_000,
        };
        Ok(())
    }
}

fn write_series(out: &mut Vec<u8>, sid: u32, key: &SeriesKey) {
    out.push(b'S');
    out.extend_from_slice(&sid.to_le_bytes());
    out.extend_from_slice(&(key.values().len() as u32).to_le_bytes());
    for v in key.values() {
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v.as_bytes());
    }
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, what: &'static str) -> LogError {
        LogError { at: self.at, what }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], LogError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.b.len())
            .ok_or(LogError {
                at: self.at,
                what: "truncated record",
            })?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, LogError> {
        Ok(self.take(1)?[0])
    }

    fn u32(&mut self) -> Result<u32, LogError> {
        let mut a = [0u8; 4];
        a.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(a))
    }

    fn u64(&mut self) -> Result<u64, LogError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(s: &str) -> SeriesKey {
        SeriesKey::new(vec!["svc".into(), s.into()])
    }

    fn lookups(ix: &ResponseIndex, n: usize) -> Vec<Option<(i64, Vec<String>)>> {
        (0..n)
            .map(|i| {
                ix.get(&format!("r{i}"))
                    .map(|(s, k)| (*s, k.values().to_vec()))
            })
            .collect()
    }

    #[test]
    fn a_restored_log_holds_the_same_index_and_appends_where_it_stopped() {
        let mut live = ResponseIndex::new(50);
        let mut file: Vec<u8> = Vec::new();
        for i in 0..80 {
            live.insert(
                &format!("r{i}"),
                (i / 10) * 60_000,
                &key(["a", "b"][i as usize % 2]),
            );
            if i % 7 == 0 {
                let a = live.take_log().unwrap();
                assert!(!a.rewrite);
                assert_eq!(a.base_len, file.len() as u64);
                file.extend_from_slice(&a.bytes);
            }
        }
        // Bytes not committed when it "crashed" are lost; the restore has the checkpoint's.
        let a = live.take_log().unwrap();
        file.extend_from_slice(&a.bytes);
        let at = a.log_ref();
        let mut back = ResponseIndex::new(50);
        back.restore_log(at, &file[..at.len as usize]).unwrap();
        assert_eq!(lookups(&back, 80), lookups(&live, 80));
        assert_eq!(back.len(), 50);
        // Both go on identically, and the restored one appends to the same file.
        for i in 80..100 {
            live.insert(&format!("r{i}"), 0, &key("c"));
            back.insert(&format!("r{i}"), 0, &key("c"));
        }
        let b = back.take_log().unwrap();
        assert_eq!(b.base_len, at.len);
        assert_eq!(lookups(&back, 100), lookups(&live, 100));
    }

    #[test]
    fn a_long_log_is_rewritten_as_a_new_generation_of_live_entries() {
        let mut ix = ResponseIndex::new(10);
        for i in 0..10_100 {
            ix.insert(&format!("r{i}"), i * 1000, &key("a"));
        }
        let a = ix.take_log().unwrap();
        assert!(a.rewrite);
        assert_eq!(a.generation, 1);
        let mut back = ResponseIndex::new(10);
        back.restore_log(a.log_ref(), &a.bytes).unwrap();
        assert_eq!(back.len(), 10);
        assert_eq!(lookups(&back, 10_100), lookups(&ix, 10_100));
        // One series record and ten entries.
        assert_eq!(a.bytes.len(), 1 + 8 + 2 * 4 + 3 + 1 + 10 * 21);
        let next = ix.take_log().unwrap();
        assert!(!next.rewrite && next.bytes.is_empty() && next.base_len == a.bytes.len() as u64);
    }

    #[test]
    fn a_torn_log_is_refused_with_its_position() {
        let mut ix = ResponseIndex::new(10);
        ix.insert("r", 0, &key("a"));
        let a = ix.take_log().unwrap();
        let cut = &a.bytes[..a.bytes.len() - 3];
        let err = ResponseIndex::new(10)
            .restore_log(a.log_ref(), cut)
            .unwrap_err();
        assert!(err.to_string().contains("truncated record"), "{err}");
    }

    #[test]
    fn capacity_zero_keeps_and_logs_nothing() {
        let mut ix = ResponseIndex::new(0);
        ix.insert("r", 0, &key("a"));
        assert!(ix.get("r").is_none());
        assert!(ix.take_log().is_none());
    }
}
