//! Alert delivery (issue 5, in progress): what leaves driftwatch for receivers.
//!
//! So far: [`signing`], the Standard Webhooks signatures every webhook carries;
//! [`alertmanager`], the payload Alertmanager receivers understand; [`pagerduty`] Events
//! API v2 bodies; and the durable [`outbox`] with its retry policy. The channels (HTTP, PagerDuty, SMTP), routing, silences
//! and the fallback breaker build on them.

pub mod alertmanager;
pub mod outbox;
pub mod pagerduty;
pub mod signing;
