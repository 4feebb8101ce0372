//! driftwatch: drift detection for LLM products.
//!
//! One folder per stage, in the order data flows; each depends only on the stages and core
//! types below it (`tests/it/layering.rs` holds the allowed directions):
//!
//! ```text
//! source ──► decode ──► window ──► detect ──► storage ──► notify
//! (Kafka)    (validate,  (event-time (rules,     (Parquet     (inbox, routes,
//!             aliases,    windows of  statistics, events,      outbox, PagerDuty,
//!             cost)       sketches    baselines,  windows,     e-mail, webhooks,
//!               │         per series, alerts,     alerts,      breaker webhooks)
//!               ▼         watermark)  breaker)    checkpoint)
//!          quarantine                               │
//!                                                   └──► query (DataFusion SQL, CLI + HTTP)
//! ```
//!
//! - [`source`] reads messages (Kafka consumer groups today) and tells its owner which
//!   partitions it holds; it knows nothing of what happens to them.
//! - [`decode`] turns a payload into a [`event::RequestEvent`] or score, or a
//!   [`decode::Reject`] with a reason.
//! - [`window`] keeps per-partition event-time windows of [`window::sketch::WindowSketch`]es
//!   per series and closes them as the watermark passes.
//! - [`detect`] is pure: closed windows and slices in, alert and breaker transitions out
//!   (rules, sketch-based [`detect::stats`], baselines, lifecycle, circuit breaker).
//! - [`storage`] writes the Parquet tables and the checkpoint atomically (commit protocol),
//!   compacts closed hours, rolls windows up per hour and reads them back.
//! - [`notify`] delivers what storage committed: inbox → routes and groups → durable outbox
//!   → PagerDuty, e-mail, webhooks.
//! - [`query`] answers read-only SQL over the stored tables.
//! - [`traffic`] makes synthetic LLM traffic with injected incidents.
//!
//! On top, [`daemon`] is the composition root — the only code that knows every stage: the
//! ingest loop (source → pipeline → commit → delivery), HTTP, `generate`, backtest and the
//! demo — and [`cli`] holds one function per subcommand. At the bottom are the core types
//! every stage shares: [`event`], [`registry`] (the model registry: prices, deprecations,
//! context windows, fallbacks), [`durable`] writes and the shared I/O error, [`metrics`],
//! [`section`] (what every config section shares) and [`time`]; [`config`] assembles the
//! sections each stage owns into the one config file.
//!
//! Offsets advance only after what they carry is in committed Parquet and a checkpoint.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod decode;
pub mod detect;
pub mod durable;
pub mod event;
pub mod metrics;
pub mod notify;
pub mod query;
pub mod registry;
pub mod section;
pub mod source;
pub mod storage;
pub mod time;
pub mod traffic;
pub mod window;
