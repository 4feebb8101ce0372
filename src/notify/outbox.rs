//! The durable outbox: a notification is written to disk before it is sent and removed only
//! after the receiver acknowledged it, so a crash or a receiver that is down for minutes
//! loses nothing. Retries back off exponentially with full jitter, honour `429` and
//! `Retry-After`, and stop on a `4xx` that retrying cannot fix (the body is kept for the
//! log and the dead-letter file).
//!
//! The store is a directory: `<id>.json` per pending notification (written under a temporary
//! name, fsynced, renamed), `dead/<id>.json` for the ones given up on. The id is the
//! idempotency key receivers see (`webhook-id`, PagerDuty `dedup_key` + transition), so a
//! notification sent again after a crash between "delivered" and "removed" is recognisably
//! the same.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// A problem with the outbox directory.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    #[error(transparent)]
    Io(#[from] crate::durable::IoError),
    #[error("outbox entry {path} is unreadable ({source}); move it away")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("outbox id {0:?} is not usable as a file name (letters, digits, `-`, `_`, `.` only)")]
    BadId(String),
}

use crate::durable::io;

/// One message to deliver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Idempotency key, unique per (alert transition, channel).
    pub id: String,
    /// Channel name from the configuration.
    pub channel: String,
    pub created_ms: i64,
    /// Deliveries tried so far.
    pub attempts: u32,
    /// Not before this wall time (ms).
    pub next_attempt_ms: i64,
    /// The request body (JSON text).
    pub body: String,
    /// The last failure, for the log and `dead/`.
    #[serde(default)]
    pub last_error: Option<String>,
    /// Entries with the same order key are delivered one at a time, oldest first (a
    /// `resolve` never overtakes its `trigger`, a `restore` never its `fallback`).
    #[serde(default)]
    pub order_key: Option<String>,
    /// Enqueue order, set by [`Outbox::enqueue`]: delivery order within an order key.
    #[serde(default)]
    pub seq: u64,
    /// The alerts it tells about (fingerprint and state), for the delivery log the
    /// incident report reads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<NotifiedAlert>,
}

/// One alert a notification carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotifiedAlert {
    pub fingerprint: String,
    /// `firing` or `resolved`.
    pub state: String,
}

/// What `sent/<id>` records of a delivered notification (older markers are empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivered {
    pub id: String,
    pub channel: String,
    pub created_ms: i64,
    pub delivered_ms: i64,
    pub attempts: u32,
    #[serde(default)]
    pub alerts: Vec<NotifiedAlert>,
}

/// The delivered and dead notifications under `dir` (an outbox directory) that carried
/// the alert `fingerprint`: (delivered, dead letters with their last error).
pub fn deliveries_of(dir: &Path, fingerprint: &str) -> (Vec<Delivered>, Vec<Notification>) {
    let carries = |a: &[NotifiedAlert]| a.iter().any(|x| x.fingerprint == fingerprint);
    let read = |sub: &str| -> Vec<Vec<u8>> {
        fs::read_dir(dir.join(sub))
            .map(|d| {
                d.flatten()
                    .filter_map(|e| fs::read(e.path()).ok())
                    .filter(|b| !b.is_empty())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut sent: Vec<Delivered> = read("sent")
        .iter()
        .filter_map(|b| serde_json::from_slice::<Delivered>(b).ok())
        .filter(|d| carries(&d.alerts))
        .collect();
    sent.sort_by_key(|d| (d.delivered_ms, d.id.clone()));
    let mut dead: Vec<Notification> = read("dead")
        .iter()
        .filter_map(|b| serde_json::from_slice::<Notification>(b).ok())
        .filter(|n| carries(&n.alerts))
        .collect();
    dead.sort_by_key(|n| (n.created_ms, n.id.clone()));
    (sent, dead)
}

/// What a delivery attempt came back with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx: done.
    Delivered,
    /// Worth trying again (5xx, 408, 429, timeouts, refused connections); `after` is the
    /// receiver's `Retry-After` when it sent one.
    Retry {
        reason: String,
        after: Option<Duration>,
    },
    /// Retrying cannot help (other 4xx): given up, kept in `dead/`.
    Permanent { reason: String },
}

/// Maps an HTTP response to an [`Outcome`]. `retry_after` is the header's value, either
/// delta-seconds or an HTTP date (`now_ms` turns a date into a delay).
pub fn classify(status: u16, retry_after: Option<&str>, body: &str, now_ms: i64) -> Outcome {
    let snippet: String = body.chars().take(512).collect();
    match status {
        200..=299 => Outcome::Delivered,
        408 | 429 | 500..=599 => Outcome::Retry {
            reason: format!("HTTP {status}: {snippet}"),
            after: retry_after.and_then(|v| parse_retry_after(v, now_ms)),
        },
        _ => Outcome::Permanent {
            reason: format!("HTTP {status}: {snippet}"),
        },
    }
}

/// `Retry-After: 120` or `Retry-After: Wed, 21 Oct 2015 07:28:00 GMT`.
pub fn parse_retry_after(v: &str, now_ms: i64) -> Option<Duration> {
    let v = v.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let t = chrono::DateTime::parse_from_rfc2822(v).ok()?;
    let ms = t.timestamp_millis() - now_ms;
    Some(Duration::from_millis(ms.max(0) as u64))
}

/// Retry timing.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub cap: Duration,
    /// A `Retry-After` longer than this is cut to it (a receiver cannot park us for a day).
    pub max_retry_after: Duration,
    /// Retrying stops (the entry goes to `dead/`) this long after it was created.
    pub give_up_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(500),
            cap: Duration::from_secs(60),
            max_retry_after: Duration::from_secs(600),
            give_up_after: Duration::from_secs(86_400),
        }
    }
}

impl Backoff {
    /// Delay before attempt `attempts + 1`: "full jitter", uniform in
    /// `[0, min(cap, base · 2^attempts)]`, or the receiver's `Retry-After` (capped) when given.
    pub fn delay(
        &self,
        attempts: u32,
        retry_after: Option<Duration>,
        rng: &mut impl Rng,
    ) -> Duration {
        if let Some(after) = retry_after {
            return after.min(self.max_retry_after);
        }
        let exp = self
            .base
            .saturating_mul(1u32.checked_shl(attempts.min(30)).unwrap_or(u32::MAX))
            .min(self.cap);
        let ms = exp.as_millis() as u64;
        Duration::from_millis(rng.random_range(0..=ms))
    }
}

/// Delivered ids are remembered this long (`sent/<id>`), so a notification rendered again
/// after a crash is not sent twice.
pub const SENT_RETENTION: Duration = Duration::from_secs(7 * 86_400);

/// The pending notifications, mirrored in a directory.
#[derive(Debug)]
pub struct Outbox {
    dir: PathBuf,
    pending: BTreeMap<String, Notification>,
    next_seq: u64,
}

impl Outbox {
    /// Opens (creating) `dir` and loads what a previous run left pending.
    pub fn open(dir: &Path) -> Result<Outbox, OutboxError> {
        fs::create_dir_all(dir.join("dead")).map_err(io("creating", dir))?;
        fs::create_dir_all(dir.join("sent")).map_err(io("creating", dir))?;
        let mut pending = BTreeMap::new();
        for e in fs::read_dir(dir).map_err(io("listing", dir))?.flatten() {
            let path = e.path();
            let name = e.file_name().to_string_lossy().to_string();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(&path);
                continue;
            }
            if !name.ends_with(".json") {
                continue;
            }
            let bytes = fs::read(&path).map_err(io("reading", &path))?;
            let n: Notification =
                serde_json::from_slice(&bytes).map_err(|source| OutboxError::Corrupt {
                    path: path.clone(),
                    source,
                })?;
            pending.insert(n.id.clone(), n);
        }
        let next_seq = pending.values().map(|n| n.seq + 1).max().unwrap_or(1);
        let o = Outbox {
            dir: dir.to_path_buf(),
            pending,
            next_seq,
        };
        o.prune_sent();
        Ok(o)
    }

    /// Forgets delivered ids older than [`SENT_RETENTION`] (at start and hourly).
    pub fn prune_sent(&self) {
        let Ok(entries) = fs::read_dir(self.dir.join("sent")) else {
            return;
        };
        for e in entries.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > SENT_RETENTION);
            if old {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    pub fn len(&self) -> usize {
        self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.pending.is_empty()
    }

    fn path(&self, id: &str) -> Result<PathBuf, OutboxError> {
        if id.is_empty()
            || !id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(OutboxError::BadId(id.to_string()));
        }
        Ok(self.dir.join(format!("{id}.json")))
    }

    fn persist(&self, n: &Notification, path: &Path) -> Result<(), OutboxError> {
        let bytes = serde_json::to_vec(n).expect("plain data serializes");
        crate::durable::write_atomic(path, &bytes).map_err(OutboxError::from)
    }

    /// Stores `n` durably before anyone tries to send it. Enqueuing an id that is already
    /// pending, or was delivered, does nothing (the same notification, rendered again after
    /// a restart).
    pub fn enqueue(&mut self, mut n: Notification) -> Result<bool, OutboxError> {
        if self.pending.contains_key(&n.id) {
            return Ok(false);
        }
        let path = self.path(&n.id)?;
        if self.dir.join("sent").join(&n.id).exists() {
            return Ok(false);
        }
        n.seq = self.next_seq;
        self.next_seq += 1;
        self.persist(&n, &path)?;
        self.pending.insert(n.id.clone(), n);
        Ok(true)
    }

    /// Notifications whose time has come, oldest first; of several with one order key only
    /// the oldest, and only when it is due.
    pub fn due(&self, now_ms: i64) -> Vec<Notification> {
        self.due_where(now_ms, |_| true)
    }

    /// [`Self::due`] of one channel.
    pub fn due_for(&self, channel: &str, now_ms: i64) -> Vec<Notification> {
        self.due_where(now_ms, |n| n.channel == channel)
    }

    fn due_where(&self, now_ms: i64, keep: impl Fn(&Notification) -> bool) -> Vec<Notification> {
        let mut all: Vec<&Notification> = self.pending.values().filter(|n| keep(n)).collect();
        all.sort_by(|a, b| (a.seq, a.created_ms, &a.id).cmp(&(b.seq, b.created_ms, &b.id)));
        let mut heads = std::collections::BTreeSet::new();
        let mut v = Vec::new();
        for n in all {
            if let Some(k) = &n.order_key {
                if !heads.insert(k.clone()) {
                    continue;
                }
            }
            if n.next_attempt_ms <= now_ms {
                v.push(n.clone());
            }
        }
        v
    }

    /// Pending entries per channel.
    pub fn pending_by_channel(&self) -> BTreeMap<String, usize> {
        let mut m = BTreeMap::new();
        for n in self.pending.values() {
            *m.entry(n.channel.clone()).or_insert(0) += 1;
        }
        m
    }

    /// Entries in `dead/`.
    pub fn dead_count(&self) -> usize {
        fs::read_dir(self.dir.join("dead"))
            .map(|d| d.flatten().count())
            .unwrap_or(0)
    }

    /// Earliest next attempt among the pending ones.
    pub fn next_due_ms(&self) -> Option<i64> {
        self.pending.values().map(|n| n.next_attempt_ms).min()
    }

    /// Records an attempt's outcome: delivered ones are removed, retried ones rescheduled,
    /// permanent failures moved to `dead/`.
    pub fn record(
        &mut self,
        id: &str,
        outcome: &Outcome,
        now_ms: i64,
        backoff: &Backoff,
        rng: &mut impl Rng,
    ) -> Result<(), OutboxError> {
        let path = self.path(id)?;
        let Some(mut n) = self.pending.remove(id) else {
            return Ok(());
        };
        match outcome {
            Outcome::Delivered => {
                let marker = self.dir.join("sent").join(id);
                let record = Delivered {
                    id: n.id.clone(),
                    channel: n.channel.clone(),
                    created_ms: n.created_ms,
                    delivered_ms: now_ms,
                    attempts: n.attempts + 1,
                    alerts: std::mem::take(&mut n.alerts),
                };
                let bytes = serde_json::to_vec(&record).expect("plain data serializes");
                fs::write(&marker, bytes).map_err(io("writing", &marker))?;
                match fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("removing", &path)(e).into()),
                }
            }
            Outcome::Retry { reason, .. }
                if now_ms - n.created_ms > backoff.give_up_after.as_millis() as i64 =>
            {
                let reason = format!(
                    "gave up after {} attempts over {}: {reason}",
                    n.attempts + 1,
                    humantime::format_duration(backoff.give_up_after)
                );
                return self.bury(n, &path, reason);
            }
            Outcome::Retry { reason, after } => {
                let delay = backoff.delay(n.attempts, *after, rng);
                n.attempts += 1;
                n.next_attempt_ms = now_ms + delay.as_millis() as i64;
                n.last_error = Some(reason.clone());
                self.persist(&n, &path)?;
                self.pending.insert(n.id.clone(), n);
            }
            Outcome::Permanent { reason } => return self.bury(n, &path, reason.clone()),
        }
        Ok(())
    }

    fn bury(
        &mut self,
        mut n: Notification,
        path: &Path,
        reason: String,
    ) -> Result<(), OutboxError> {
        n.attempts += 1;
        n.last_error = Some(reason);
        let dead = self.dir.join("dead").join(format!("{}.json", n.id));
        self.persist(&n, &dead)?;
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io("removing", path)(e).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn n(id: &str, created: i64) -> Notification {
        Notification {
            id: id.into(),
            channel: "webhook".into(),
            created_ms: created,
            attempts: 0,
            next_attempt_ms: created,
            body: "{\"x\":1}".into(),
            last_error: None,
            order_key: None,
            seq: 0,
            alerts: Vec::new(),
        }
    }

    #[test]
    fn classification_follows_http_semantics() {
        assert_eq!(classify(204, None, "", 0), Outcome::Delivered);
        assert_eq!(
            classify(429, Some("7"), "slow down", 0),
            Outcome::Retry {
                reason: "HTTP 429: slow down".into(),
                after: Some(Duration::from_secs(7))
            }
        );
        assert!(matches!(
            classify(503, None, "", 0),
            Outcome::Retry { after: None, .. }
        ));
        assert!(matches!(classify(408, None, "", 0), Outcome::Retry { .. }));
        assert_eq!(
            classify(400, None, "bad routing key", 0),
            Outcome::Permanent {
                reason: "HTTP 400: bad routing key".into()
            }
        );
        assert!(matches!(
            classify(404, None, "", 0),
            Outcome::Permanent { .. }
        ));
        // An HTTP date 90 s ahead.
        let now = chrono::DateTime::parse_from_rfc2822("Wed, 21 Oct 2015 07:28:00 GMT")
            .unwrap()
            .timestamp_millis();
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:29:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_is_exponential_with_full_jitter_capped_and_honours_retry_after() {
        let b = Backoff::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for attempts in 0..12u32 {
            let bound = (500u64 << attempts).min(60_000);
            let mut max_seen = 0;
            for _ in 0..200 {
                let d = b.delay(attempts, None, &mut rng).as_millis() as u64;
                assert!(d <= bound, "attempt {attempts}: {d} > {bound}");
                max_seen = max_seen.max(d);
            }
            assert!(
                max_seen > bound / 2,
                "jitter spans the range: {max_seen} of {bound}"
            );
        }
        assert_eq!(
            b.delay(3, Some(Duration::from_secs(7)), &mut rng),
            Duration::from_secs(7)
        );
        assert_eq!(
            b.delay(3, Some(Duration::from_secs(86_400)), &mut rng),
            Duration::from_secs(600)
        );
    }

    #[test]
    fn one_order_key_delivers_in_enqueue_order_and_delivered_ids_are_not_requeued() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backoff::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let mut o = Outbox::open(dir.path()).unwrap();
        let keyed = |id: &str| Notification {
            order_key: Some("pd/fp1".into()),
            ..n(id, 5)
        };
        // Same creation time; "z-trigger" must still go before "a-resolve".
        o.enqueue(keyed("z-trigger")).unwrap();
        o.enqueue(keyed("a-resolve")).unwrap();
        o.enqueue(n("other", 5)).unwrap();
        let ids = |v: Vec<Notification>| v.into_iter().map(|n| n.id).collect::<Vec<_>>();
        assert_eq!(ids(o.due(10)), vec!["z-trigger", "other"]);
        // A retry holds the whole key back.
        let retry = Outcome::Retry {
            reason: "503".into(),
            after: Some(Duration::from_secs(60)),
        };
        o.record("z-trigger", &retry, 10, &b, &mut rng).unwrap();
        assert_eq!(ids(o.due(20)), vec!["other"]);
        o.record("z-trigger", &Outcome::Delivered, 70_000, &b, &mut rng)
            .unwrap();
        assert_eq!(
            ids(Outbox::open(dir.path()).unwrap().due(70_000)),
            vec!["a-resolve", "other"]
        );
        // Rendered again after a crash: already delivered, not queued again.
        assert!(!o.enqueue(keyed("z-trigger")).unwrap());
    }

    /// A receiver down for two minutes, in simulated time with the default backoff: every
    /// notification made during the outage arrives after it, once, and within the backoff
    /// cap of the receiver's return.
    #[test]
    fn a_two_minute_outage_delays_but_loses_nothing_and_duplicates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backoff {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(600),
            give_up_after: Duration::from_secs(86_400),
        };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let mut o = Outbox::open(dir.path()).unwrap();
        let up_at = 120_000;
        let mut delivered: BTreeMap<String, (u32, i64)> = BTreeMap::new();
        let mut t = 0;
        while t < 3_600_000 {
            // A notification every 10 s during the outage.
            if t < up_at && t % 10_000 == 0 {
                o.enqueue(n(&format!("n{t}"), t)).unwrap();
            }
            for due in o.due(t) {
                let outcome = if t < up_at {
                    Outcome::Retry {
                        reason: "connection refused".into(),
                        after: None,
                    }
                } else {
                    let e = delivered.entry(due.id.clone()).or_insert((0, t));
                    e.0 += 1;
                    Outcome::Delivered
                };
                o.record(&due.id, &outcome, t, &b, &mut rng).unwrap();
            }
            t += 100;
        }
        assert!(o.is_empty());
        assert_eq!(delivered.len(), 12);
        assert!(delivered.values().all(|(times, _)| *times == 1));
        let last = delivered.values().map(|(_, at)| *at).max().unwrap();
        // Attempt k waits up to 2^k s; an entry made at the start has waited ~2 min, so its
        // next wait is at most 128 s, well inside the 5 min cap.
        assert!(
            last - up_at <= 300_000,
            "last delivery {} s after the return",
            (last - up_at) / 1000
        );
    }

    #[test]
    fn pending_notifications_survive_a_restart_until_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let b = Backoff::default();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2);
        let mut o = Outbox::open(dir.path()).unwrap();
        assert!(o.enqueue(n("a", 1)).unwrap());
        assert!(o.enqueue(n("b", 2)).unwrap());
        assert!(!o.enqueue(n("a", 3)).unwrap(), "same id: kept once");
        let retry = Outcome::Retry {
            reason: "HTTP 503: down".into(),
            after: None,
        };
        o.record("a", &retry, 1_000, &b, &mut rng).unwrap();
        o.record(
            "b",
            &Outcome::Permanent {
                reason: "HTTP 400: no".into(),
            },
            1_000,
            &b,
            &mut rng,
        )
        .unwrap();
        drop(o);

        // "Crash": a new process finds `a` pending with its attempt count, `b` dead.
        let mut o = Outbox::open(dir.path()).unwrap();
        assert_eq!(o.len(), 1);
        let a = &o.due(i64::MAX)[0];
        assert_eq!((a.id.as_str(), a.attempts), ("a", 1));
        assert_eq!(a.last_error.as_deref(), Some("HTTP 503: down"));
        assert!(a.next_attempt_ms >= 1_000 && a.next_attempt_ms <= 1_500);
        assert!(o.due(999).is_empty());
        let dead: Notification =
            serde_json::from_slice(&fs::read(dir.path().join("dead").join("b.json")).unwrap())
                .unwrap();
        assert_eq!(dead.last_error.as_deref(), Some("HTTP 400: no"));

        o.record("a", &Outcome::Delivered, 2_000, &b, &mut rng)
            .unwrap();
        assert!(o.is_empty());
        assert!(Outbox::open(dir.path()).unwrap().is_empty());
        assert!(matches!(
            o.enqueue(n("../x", 0)),
            Err(OutboxError::BadId(_))
        ));
    }

    #[test]
    fn delivered_and_dead_notifications_are_found_by_the_alerts_they_carried() {
        let dir = tempfile::tempdir().unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        let mut o = Outbox::open(dir.path()).unwrap();
        let with = |id: &str, fps: &[&str]| Notification {
            alerts: fps
                .iter()
                .map(|f| NotifiedAlert {
                    fingerprint: f.to_string(),
                    state: "firing".into(),
                })
                .collect(),
            ..n(id, 100)
        };
        o.enqueue(with("hook-g1", &["aaaa", "bbbb"])).unwrap();
        o.enqueue(with("pd-aaaa", &["aaaa"])).unwrap();
        o.enqueue(with("mail-g2", &["cccc"])).unwrap();
        let backoff = Backoff::default();
        o.record("hook-g1", &Outcome::Delivered, 1_500, &backoff, &mut rng)
            .unwrap();
        o.record("mail-g2", &Outcome::Delivered, 1_600, &backoff, &mut rng)
            .unwrap();
        o.record(
            "pd-aaaa",
            &Outcome::Permanent {
                reason: "400 invalid event".into(),
            },
            1_700,
            &backoff,
            &mut rng,
        )
        .unwrap();
        let (sent, dead) = deliveries_of(dir.path(), "aaaa");
        assert_eq!(sent.len(), 1);
        assert_eq!(
            (
                sent[0].id.as_str(),
                sent[0].created_ms,
                sent[0].delivered_ms,
                sent[0].attempts
            ),
            ("hook-g1", 100, 1_500, 1)
        );
        assert_eq!(dead.len(), 1);
        assert!(dead[0].last_error.as_deref().unwrap().contains("400"));
        assert!(deliveries_of(dir.path(), "dddd").0.is_empty());
        // A delivered id is still remembered (and not sent twice).
        assert!(!o.enqueue(with("hook-g1", &["aaaa"])).unwrap());
    }
}
