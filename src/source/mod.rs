//! Source stage: where messages come from.
//!
//! A source delivers [`RawMessage`]s and tells its owner, through [`Partitions`], which
//! partitions it holds: before one is taken away the owner drains and commits it, and when
//! one is given the owner resumes it from its checkpoint. The source stores an offset only
//! when the owner hands it back as committed, so what reaches the source's durable position
//! is always in committed Parquet first. Two implement [`Source`]: [`kafka`] (consumer
//! groups, `run`) and [`file`] (JSON-lines files, `replay`); the pipeline sees only
//! [`RawMessage`]s and partition ids, never a Kafka type.

use std::collections::BTreeMap;
use std::sync::Arc;

pub mod file;
pub mod kafka;

/// A topic-partition.
pub type PartitionId = (Arc<str>, i32);

/// Next offset to read, per partition.
pub type Offsets = BTreeMap<PartitionId, i64>;

/// One message as the source delivers it.
#[derive(Debug, Clone, Copy)]
pub struct RawMessage<'a> {
    pub topic: &'a Arc<str>,
    pub partition: i32,
    pub offset: i64,
    /// Broker timestamp, ms.
    pub timestamp_ms: Option<i64>,
    pub payload: Option<&'a [u8]>,
}

/// What a source calls when the partitions it holds change. Called from inside the
/// source's poll (a rebalance), never concurrently with itself.
pub trait Partitions: Send + Sync + 'static {
    /// These partitions are now this instance's: resume each from its checkpoint.
    fn assigned(&self, partitions: &[PartitionId]);

    /// These partitions are about to go to another instance. Drain and commit them and
    /// return the offsets to commit synchronously before they leave. `lost` means the group
    /// already gave them away (session lost): writing now could overwrite the new owner's
    /// checkpoint, so the work must be dropped and nothing returned.
    fn revoking(&self, partitions: &[PartitionId], lost: bool) -> Offsets;

    /// Consumer lag of a partition (messages behind the durable offset), when the source
    /// reports it.
    fn lag(&self, _partition: &PartitionId, _lag: i64) {}

    /// A client-level error the source recovered from itself.
    fn client_error(&self, _error: &str) {}

    /// This partition's input is complete (a file source at the end of a file): close its
    /// windows, commit it and let it go.
    fn finished(&self, _partition: &PartitionId) {}
}

/// Where the ingest loop gets its messages.
pub trait Source {
    type Error: std::error::Error;

    /// Waits for the next messages and hands them (up to about `max`) to `accept`; true when
    /// any `accept` did (a partition's buffers are full). Cancellation safe until the first
    /// message arrives.
    fn recv_batch(
        &mut self,
        max: usize,
        accept: impl FnMut(RawMessage<'_>) -> bool,
    ) -> impl std::future::Future<Output = bool>;

    /// Offsets the owner committed, for the source's own position (Kafka's group offsets).
    fn store(&self, offsets: &Offsets);

    /// Makes `offsets` the source's durable position now (shutdown).
    fn commit_sync(&self, offsets: &Offsets) -> Result<(), Self::Error>;

    /// True when everything there is to read has been delivered.
    fn caught_up(&self) -> bool;

    /// A failure that ended the input (the run stops with it).
    fn take_failure(&mut self) -> Option<Self::Error> {
        None
    }
}
