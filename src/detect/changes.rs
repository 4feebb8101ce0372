//! "What changed" lines for a firing alert, from the detector's history: the prompt
//! versions, deployments and variants that first took traffic, and the response models and
//! error codes first seen, in the alert's service and model during the hour before it fired.
//! Every firing notification carries them (`details.what_changed`), so the person paged sees
//! at once whether a prompt shipped or the provider swapped the model.

use std::collections::{BTreeMap, BTreeSet};

use crate::detect::codes::CodeField;
use crate::detect::history::{History, Parts};

/// How far back before the firing a first appearance counts as a change.
pub const LOOK_MS: i64 = 3_600_000;
/// The first minutes of the history cannot tell a new value from a rare one.
pub const WARM_UP_MS: i64 = 15 * 60_000;

const COUNTS: Parts = Parts {
    hists: 0,
    counts: true,
    judge: false,
};

/// The changes in the series of `labels` (an alert instance's; matched on its `service` and
/// `request_model`) first seen in `[t − LOOK_MS, t)`, after the history's warm-up; one line
/// each, oldest first: `2026-12-04T13:00:00.000Z response_model gpt-4o-2024-11-20 first seen`.
pub fn what_changed(
    history: &History,
    label_names: &[&str],
    labels: &[(String, String)],
    t_ms: i64,
) -> Vec<String> {
    let scope: Vec<(usize, &String)> = ["service", "request_model"]
        .iter()
        .filter_map(|name| {
            let i = label_names.iter().position(|n| n == name)?;
            let v = labels.iter().find(|(k, _)| k == name).map(|(_, v)| v)?;
            Some((i, v))
        })
        .collect();
    if scope.is_empty() {
        return Vec::new();
    }
    let members: Vec<&Vec<String>> = history
        .series()
        .filter(|l| scope.iter().all(|(i, v)| l.get(*i) == Some(*v)))
        .collect();
    let Some(earliest) = members.iter().filter_map(|l| history.first_window(l)).min() else {
        return Vec::new();
    };
    let look_from = (t_ms - LOOK_MS).max(earliest + WARM_UP_MS);
    if look_from >= t_ms {
        return Vec::new();
    }
    let mut found: BTreeSet<(i64, &'static str, String)> = BTreeSet::new();
    for field in ["prompt_version", "deployment", "variant"] {
        let Some(i) = label_names.iter().position(|n| *n == field) else {
            continue;
        };
        let mut first: BTreeMap<&String, i64> = BTreeMap::new();
        for l in &members {
            if let Some(f) = history.first_window(l) {
                let e = first.entry(&l[i]).or_insert(f);
                *e = (*e).min(f);
            }
        }
        for (v, f) in first {
            if f >= look_from && f < t_ms && !v.is_empty() {
                found.insert((f, field, v.clone()));
            }
        }
    }
    let mut before = crate::detect::history::Summary::default();
    for l in &members {
        if let Some(s) = history.range_of(l, earliest, look_from, COUNTS) {
            before.merge_parts(&s, COUNTS);
        }
    }
    let mut first: BTreeMap<(&'static str, String), i64> = BTreeMap::new();
    for l in &members {
        for (start, s) in history.steps(l, look_from, t_ms, COUNTS, false) {
            let groups = [
                (
                    "response_model",
                    &s.response_models,
                    &before.response_models,
                    None,
                ),
                (
                    "system_fingerprint",
                    &s.system_fingerprints,
                    &before.system_fingerprints,
                    None,
                ),
                (
                    "error_type",
                    &s.error_types,
                    &before.error_types,
                    Some(CodeField::ErrorType),
                ),
                (
                    "http_status",
                    &s.http_statuses,
                    &before.http_statuses,
                    Some(CodeField::HttpStatus),
                ),
            ];
            for (field, now, was, code) in groups {
                for (k, n) in &now.0 {
                    let is_value = code.is_none_or(|c| c.is_code(k));
                    if *n > 0 && was.get(k) == 0 && is_value && k != "__other__" {
                        let e = first.entry((field, k.clone())).or_insert(start);
                        *e = (*e).min(start);
                    }
                }
            }
        }
    }
    for ((field, v), f) in first {
        found.insert((f, field, v));
    }
    found
        .into_iter()
        .map(|(t, field, v)| format!("{} {field} {v} first seen", crate::time::rfc3339(t)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::history::Summary;

    const MIN: i64 = 60_000;
    const T: i64 = 1_794_268_800_000;
    const NAMES: [&str; 3] = ["service", "request_model", "prompt_version"];

    fn window(h: &mut History, version: &str, start: i64, model: &str, error: Option<&str>) {
        let mut s = Summary::counts(10, error.is_some() as u64);
        s.response_models.add(model, 10);
        if let Some(e) = error {
            s.error_types.add(e, 1);
            s.http_statuses.add("500", 1);
        }
        let labels = vec![
            "chat".to_string(),
            "gpt-4o".to_string(),
            version.to_string(),
        ];
        h.add_window(&labels, start, s);
    }

    #[test]
    fn new_versions_models_and_codes_of_the_last_hour_are_named() {
        let mut h = History::new(MIN, 2 * 3_600_000, 4 * 3_600_000, MIN);
        for m in 0..120 {
            let (version, model) = if m < 100 {
                ("v12", "gpt-4o-2024-08-06")
            } else {
                ("v13", "gpt-4o-2024-11-20")
            };
            let error = if m % 30 == 0 {
                Some("server_error")
            } else if m == 110 {
                Some("content_filter")
            } else {
                None
            };
            window(&mut h, version, T + m * MIN, model, error);
            h.maintain(T + (m + 1) * MIN);
        }
        let labels = vec![
            ("service".to_string(), "chat".to_string()),
            ("request_model".to_string(), "gpt-4o".to_string()),
        ];
        let lines = what_changed(&h, &NAMES, &labels, T + 120 * MIN);
        let at = |m: i64| crate::time::rfc3339(T + m * MIN);
        assert_eq!(
            lines,
            vec![
                format!("{} prompt_version v13 first seen", at(100)),
                format!("{} response_model gpt-4o-2024-11-20 first seen", at(100)),
                format!("{} error_type content_filter first seen", at(110)),
            ],
        );
        // Another service: nothing of chat's.
        let other = vec![("service".to_string(), "search".to_string())];
        assert!(what_changed(&h, &NAMES, &other, T + 120 * MIN).is_empty());
        // Within the warm-up of a fresh history, nothing is a change.
        assert!(what_changed(&h, &NAMES, &labels, T + 10 * MIN).is_empty());
    }
}
