//! Alert delivery: what leaves driftwatch for receivers.
//!
//! [`route`] groups alert transitions per channel (routes, `group_wait` / `group_interval` /
//! `repeat_interval`, [`silence`]s); [`render`] turns a group notification or a breaker
//! transition into outbox entries — driftwatch JSON or [`alertmanager`] v4 webhooks signed per
//! [`signing`] (Standard Webhooks), [`pagerduty`] Events v2, [`email`] over SMTP; the durable
//! [`outbox`] holds them until a receiver acknowledges, retried by [`http`] and [`email`]
//! senders; [`service`] runs it all beside the ingest loop, configured by [`config`].

pub mod alertmanager;
pub mod config;
pub mod email;
pub mod http;
pub mod outbox;
pub mod pagerduty;
pub mod render;
pub mod route;
pub mod service;
pub mod signing;
pub mod silence;

/// An epoch-ms time as RFC 3339 UTC with milliseconds (empty when out of range).
pub fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_default()
}
