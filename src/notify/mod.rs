//! Notify stage: alert delivery, what leaves driftwatch for receivers.
//!
//! Committed transitions arrive through the [`inbox`] (written by the daemon's storage hook, so
//! storage never calls delivery).
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
pub mod inbox;
pub mod outbox;
pub mod pagerduty;
pub mod render;
pub mod route;
pub mod service;
pub mod signing;
pub mod silence;

pub use crate::time::rfc3339;
