//! Series keys: the label values an event is grouped by, with a cap on active series.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::event::{RequestEvent, SeriesLabel};
use crate::section::{invalid, ConfigError};

/// Label value of every label of the overflow series.
pub const OVERFLOW_LABEL: &str = "__overflow__";

/// Label values in the configured label order, with their hash computed once. Cheap to
/// clone, hash and compare (pointer equality first).
#[derive(Debug, Clone)]
pub struct SeriesKey {
    values: Arc<[String]>,
    hash: u64,
}

impl SeriesKey {
    pub fn new(values: Vec<String>) -> Self {
        let hash = hash_values(values.iter().map(String::as_str));
        Self {
            values: values.into(),
            hash,
        }
    }

    pub fn values(&self) -> &[String] {
        &self.values
    }

    pub fn is_overflow(&self) -> bool {
        self.values.first().is_some_and(|v| v == OVERFLOW_LABEL)
    }
}

/// Hash of a label-value list; stable within a process.
fn hash_values<'a>(values: impl Iterator<Item = &'a str>) -> u64 {
    static SEED: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
    let mut h = SEED
        .get_or_init(foldhash::fast::RandomState::default)
        .build_hasher();
    for v in values {
        v.hash(&mut h);
    }
    h.finish()
}

impl PartialEq for SeriesKey {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.values, &other.values)
            || (self.hash == other.hash && self.values == other.values)
    }
}

impl Eq for SeriesKey {}

impl Hash for SeriesKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

impl PartialOrd for SeriesKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for SeriesKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.values.cmp(&other.values)
    }
}

/// A map keyed by series; the key's hash is precomputed, so hashing it is one u64.
pub type SeriesMap<V> = HashMap<SeriesKey, V, foldhash::fast::RandomState>;

/// Maps events to series keys; at most `max_active` distinct keys are live at once, further
/// events go to the overflow series.
#[derive(Debug)]
pub struct SeriesRegistry {
    labels: Vec<SeriesLabel>,
    max_active: usize,
    /// Hash of the label values → keys with that hash.
    live: HashMap<u64, Vec<SeriesKey>, foldhash::fast::RandomState>,
    active: usize,
    overflow: SeriesKey,
    /// Events routed to the overflow series since start.
    pub overflow_events: u64,
}

impl SeriesRegistry {
    pub fn new(labels: Vec<SeriesLabel>, max_active: usize) -> Self {
        let overflow = SeriesKey::new(labels.iter().map(|_| OVERFLOW_LABEL.to_string()).collect());
        Self {
            labels,
            max_active,
            live: HashMap::default(),
            active: 0,
            overflow,
            overflow_events: 0,
        }
    }

    pub fn labels(&self) -> &[SeriesLabel] {
        &self.labels
    }

    /// Live series, not counting the overflow series.
    pub fn active(&self) -> usize {
        self.active
    }

    fn hash_of(&self, ev: &RequestEvent) -> u64 {
        hash_values(self.labels.iter().map(|l| ev.label(*l)))
    }

    /// The key of `ev`'s series, registering it if there is room.
    pub fn key_for(&mut self, ev: &RequestEvent) -> SeriesKey {
        let hash = self.hash_of(ev);
        if let Some(keys) = self.live.get(&hash) {
            if let Some(k) = keys.iter().find(|k| {
                k.values
                    .iter()
                    .zip(&self.labels)
                    .all(|(v, l)| v.as_str() == ev.label(*l))
            }) {
                return k.clone();
            }
        }
        if self.active >= self.max_active {
            self.overflow_events += 1;
            return self.overflow.clone();
        }
        let key = SeriesKey {
            values: self
                .labels
                .iter()
                .map(|l| ev.label(*l).to_string())
                .collect(),
            hash,
        };
        self.live.entry(hash).or_default().push(key.clone());
        self.active += 1;
        key
    }

    /// Registers a restored key (from a checkpoint), past the cap if need be, and returns
    /// the registry's copy.
    pub fn register(&mut self, key: SeriesKey) -> SeriesKey {
        if key.is_overflow() {
            return self.overflow.clone();
        }
        let keys = self.live.entry(key.hash).or_default();
        if let Some(k) = keys.iter().find(|k| **k == key) {
            return k.clone();
        }
        keys.push(key.clone());
        self.active += 1;
        key
    }

    /// Forgets every series for which `keep` is false (called when windows close).
    pub fn retain(&mut self, mut keep: impl FnMut(&SeriesKey) -> bool) {
        let mut active = 0;
        self.live.retain(|_, keys| {
            keys.retain(&mut keep);
            active += keys.len();
            !keys.is_empty()
        });
        self.active = active;
    }
}

/// How events are grouped into series.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeriesConfig {
    /// Event fields whose values form the series key.
    /// Default `["service", "request_model", "prompt_id", "prompt_version", "deployment",
    /// "variant"]`: prompt versions are compared per prompt (`prompt_id`), A/B arms per
    /// `variant`, and judge scores (late ones included) land in those series' windows.
    pub labels: Vec<String>,
    /// Cap on series with an open window; events of further series go to one overflow series
    /// (every label `__overflow__`) and are counted. Default 10000.
    pub max_active: usize,
}

impl Default for SeriesConfig {
    fn default() -> Self {
        Self {
            labels: [
                "service",
                "request_model",
                "prompt_id",
                "prompt_version",
                "deployment",
                "variant",
            ]
            .map(String::from)
            .to_vec(),
            max_active: 10_000,
        }
    }
}

impl SeriesConfig {
    /// The validated label list.
    pub fn parsed_labels(&self) -> Result<Vec<SeriesLabel>, ConfigError> {
        let mut out = Vec::with_capacity(self.labels.len());
        for l in &self.labels {
            let label = SeriesLabel::parse(l).ok_or_else(|| {
                let known: Vec<_> = SeriesLabel::ALL.iter().map(|l| l.as_str()).collect();
                invalid(
                    "series.labels",
                    format!("unknown label {l:?}; use one of {}", known.join(", ")),
                )
            })?;
            if out.contains(&label) {
                return Err(invalid(
                    "series.labels",
                    format!("label {l:?} is listed twice"),
                ));
            }
            out.push(label);
        }
        Ok(out)
    }
}

impl SeriesConfig {
    /// Checks the section; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.parsed_labels()?;
        if self.labels.is_empty() {
            return Err(invalid(
                "series.labels",
                "list at least one label, e.g. [\"service\"]",
            ));
        }
        if self.max_active == 0 {
            return Err(invalid("series.max_active", "must be at least 1"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(service: &str, model: &str) -> RequestEvent {
        RequestEvent {
            service: service.into(),
            request_model: model.into(),
            ..Default::default()
        }
    }

    #[test]
    fn same_labels_same_key_and_missing_labels_are_empty() {
        let mut r = SeriesRegistry::new(
            vec![
                SeriesLabel::Service,
                SeriesLabel::RequestModel,
                SeriesLabel::Deployment,
            ],
            10,
        );
        let a = r.key_for(&ev("s", "m"));
        let b = r.key_for(&ev("s", "m"));
        assert_eq!(a, b);
        assert_eq!(a.values(), ["s", "m", ""]);
        assert_eq!(r.active(), 1);
        assert_ne!(r.key_for(&ev("s", "m2")), a);
        assert_eq!(r.active(), 2);
    }

    #[test]
    fn cap_sends_new_series_to_overflow_until_room_frees() {
        let mut r = SeriesRegistry::new(vec![SeriesLabel::Service], 2);
        r.key_for(&ev("a", "m"));
        r.key_for(&ev("b", "m"));
        let c = r.key_for(&ev("c", "m"));
        assert!(c.is_overflow());
        assert_eq!(c.values(), [OVERFLOW_LABEL]);
        assert_eq!(r.overflow_events, 1);
        assert!(
            !r.key_for(&ev("a", "m")).is_overflow(),
            "known series still map to themselves"
        );
        r.retain(|k| k.values()[0] != "a");
        assert_eq!(r.active(), 1);
        assert!(!r.key_for(&ev("c", "m")).is_overflow());
    }
}
