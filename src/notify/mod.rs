//! Alert delivery (issue 5, in progress): what leaves driftwatch for receivers.
//!
//! So far: [`signing`], the Standard Webhooks signatures every webhook carries, and
//! [`alertmanager`], the payload Alertmanager receivers understand. Channels,
//! the outbox and the fallback breaker build on it.

pub mod alertmanager;
pub mod signing;
