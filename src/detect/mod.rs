//! Detect stage: closed windows and slices in, alert and breaker transitions out.
//!
//! Owns the [`rules`] (spec, loading, validation, templates), the sketch-based [`stats`]
//! (scipy is the reference for every statistic), the per-series [`history`] that baselines
//! are drawn from, [`evaluate`] (one rule against one series at one tick), the alert
//! lifecycle of [`alerts`] (pending → firing → resolved), the fallback circuit [`breaker`],
//! and the [`detector`] that ties them together. Synchronous and deterministic, no I/O: the
//! live daemon, backtests and tests run the same code. Hands transitions and a
//! [`detector::DetectorSnapshot`] to storage, which persists them before delivery sees them.

pub mod alerts;
pub mod analysis;
pub mod breaker;
pub mod changes;
pub mod codes;
pub mod compare;
pub mod detector;
pub mod evaluate;
pub mod history;
pub mod packed;
pub mod rules;
pub mod stats;
pub mod summary;
