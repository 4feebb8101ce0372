//! driftwatch: drift detection for LLM products.
//!
//! Data flows one way: [`source`] (Kafka) → [`decode`] → [`window`] state of [`sketch`]es per
//! [`series`] → [`sink`] (Parquet tables of [`tables`]). [`pipeline`] is the synchronous core
//! between source and sink; [`synth`] and [`produce`] make traffic; [`demo`] runs it all on an
//! embedded broker.

pub mod alerts;
pub mod breaker;
pub mod commit;
pub mod compact;
pub mod config;
pub mod decode;
pub mod demo;
pub mod detect;
pub mod detector;
pub mod durable;
pub mod event;
pub mod generate;
pub mod history;
pub mod http;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod produce;
pub mod query;
pub mod query_store;
pub mod replay;
pub mod rollup;
pub mod rules;
pub mod series;
pub mod sink;
pub mod sketch;
pub mod source;
pub mod stats;
pub mod synth;
pub mod tables;
pub mod window;
pub mod windows_reader;
