//! The delivery inbox: how committed alert transitions reach the router.
//!
//! Storage hands each alert commit's transitions to the daemon through
//! `storage::commit::AlertsHook`; the daemon's hook calls [`write_inbox`], which writes
//! the firing and resolved transitions and the breaker transitions durably as one file under
//! `state/notify-inbox/`, after the `alerts` rows and before the detector state. The router
//! ([`super::service`]) takes the files in, in commit order, and deletes them once its
//! decisions are saved.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::detect::alerts::{AlertState, Transition};
use crate::detect::breaker::BreakerTransition;
use crate::time::now_ms;

/// Inbox directory under `state/`.
pub const INBOX_DIR: &str = "notify-inbox";

/// What the committer hands to the notifier.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct InboxBatch {
    pub transitions: Vec<Transition>,
    pub breakers: Vec<BreakerTransition>,
    /// Rollback commands of failed analysis runs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollbacks: Vec<crate::detect::analysis::RollbackEvent>,
}

/// Orders inbox files written within one millisecond.
static INBOX_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Writes the notification-relevant part of a commit to the inbox (durably). Files are
/// named by the wall clock and a counter, so the router takes them in the order they were
/// committed; a commit redone after a crash writes its transitions again, and the router
/// ignores transitions it has already taken in.
pub fn write_inbox(
    state_dir: &Path,
    transitions: &[Transition],
    breakers: &[BreakerTransition],
    rollbacks: &[crate::detect::analysis::RollbackEvent],
) -> Result<(), crate::durable::IoError> {
    let batch = InboxBatch {
        transitions: transitions
            .iter()
            .filter(|t| matches!(t.to, AlertState::Firing | AlertState::Resolved))
            .cloned()
            .collect(),
        breakers: breakers.to_vec(),
        rollbacks: rollbacks.to_vec(),
    };
    if batch.transitions.is_empty() && batch.breakers.is_empty() && batch.rollbacks.is_empty() {
        return Ok(());
    }
    let dir = state_dir.join(INBOX_DIR);
    std::fs::create_dir_all(&dir).map_err(crate::durable::io("creating", &dir))?;
    let bytes = serde_json::to_vec(&batch).expect("plain data serializes");
    let seq = INBOX_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 1_000_000;
    let h = crate::time::fnv_hex([&bytes[..]]);
    crate::durable::write_atomic(
        &dir.join(format!("{:016}-{seq:06}-{}.json", now_ms(), &h[..8])),
        &bytes,
    )
}
