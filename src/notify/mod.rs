//! Alert delivery (issue 5, in progress): what leaves driftwatch for receivers.
//!
//! So far: [`signing`], the Standard Webhooks signatures every webhook carries;
//! [`alertmanager`], the payload Alertmanager receivers understand; [`pagerduty`] Events
//! API v2 bodies; the durable [`outbox`] with its retry policy; and [`http`], which sends
//! due outbox entries and records their outcomes. The channels (HTTP, PagerDuty, SMTP), routing, silences
//! and the fallback breaker build on them.

pub mod alertmanager;
pub mod http;
pub mod outbox;
pub mod pagerduty;
pub mod signing;
