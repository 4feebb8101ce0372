//! Traffic: synthetic LLM request logs with injected incidents.
//!
//! [`synth`] makes the messages (requests, late scores, malformed input) deterministically
//! from a seed; [`produce`] publishes them to Kafka at a pace. `generate` and the demo, which
//! also wire the pipeline, live in [`crate::daemon`].

pub mod produce;
pub mod scenario;
pub mod synth;
