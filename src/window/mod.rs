//! Window stage: event-time windows of sketches per series.
//!
//! Owns the per-partition [`state::WindowState`] (tumbling windows in a `BTreeMap` keyed by
//! start, 10 s slices for the fast path, the watermark and allowed lateness), the mergeable
//! [`sketch::WindowSketch`] (HDR histograms, counters, exact moments) and the [`series`]
//! registry that bounds how many series exist. Hands on [`state::ClosedWindow`]s and
//! [`state::ClosedSlice`]s, owned values, to detection and storage. No I/O.

pub mod pairs;
pub mod responses;
pub mod series;
pub mod sketch;
pub mod state;
