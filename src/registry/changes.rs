//! What changed between two registries: one [`Change`] per model field that differs (a
//! model added or removed is one change of field `*`). The daemon records them in the
//! `registry_changes` table when a reload (or a start with an edited file) changes entries.

use std::collections::BTreeMap;

use serde_json::Value;

use super::Model;

/// One changed field of one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub model: String,
    /// `prices`, `deprecation`, `fallback`, …; `*` for a model added or removed.
    pub field: String,
    /// The value before and after, as JSON (`None`: absent).
    pub old: Option<String>,
    pub new: Option<String>,
}

fn fields(m: &Model) -> BTreeMap<String, Value> {
    match serde_json::to_value(m) {
        Ok(Value::Object(o)) => o
            .into_iter()
            .filter(|(k, v)| k != "id" && !v.is_null())
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Changes from `old` to `new`, by model id then field.
pub fn diff(old: &[Model], new: &[Model]) -> Vec<Change> {
    let old: BTreeMap<&str, &Model> = old.iter().map(|m| (m.id.as_str(), m)).collect();
    let new: BTreeMap<&str, &Model> = new.iter().map(|m| (m.id.as_str(), m)).collect();
    let json = |m: &Model| serde_json::to_string(m).ok();
    let mut out = Vec::new();
    let ids: std::collections::BTreeSet<&str> = old.keys().chain(new.keys()).copied().collect();
    for id in ids {
        match (old.get(id), new.get(id)) {
            (Some(a), Some(b)) if a != b => {
                let (fa, fb) = (fields(a), fields(b));
                let names: std::collections::BTreeSet<&String> =
                    fa.keys().chain(fb.keys()).collect();
                for f in names {
                    let (va, vb) = (fa.get(f), fb.get(f));
                    if va != vb {
                        out.push(Change {
                            model: id.to_string(),
                            field: f.clone(),
                            old: va.map(Value::to_string),
                            new: vb.map(Value::to_string),
                        });
                    }
                }
            }
            (Some(a), None) => out.push(Change {
                model: id.to_string(),
                field: "*".into(),
                old: json(a),
                new: None,
            }),
            (None, Some(b)) => out.push(Change {
                model: id.to_string(),
                field: "*".into(),
                old: None,
                new: json(b),
            }),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Registry;
    use std::path::Path;

    #[test]
    fn a_price_change_and_a_new_model_are_two_changes() {
        let a = "models:\n  - id: m\n    fallback: x\n    prices:\n      - { from: 2026-01-01, per_million: { input: 1, output: 2 } }\n";
        let b = "models:\n  - id: m\n    fallback: x\n    prices:\n      - { from: 2026-01-01, per_million: { input: 1, output: 2 } }\n      - { from: 2026-06-01, per_million: { input: 0.5, output: 2 } }\n  - id: n\n";
        let (ra, _) = Registry::parse(Path::new("a"), a, 0).unwrap();
        let (rb, _) = Registry::parse(Path::new("b"), b, 0).unwrap();
        let c = diff(ra.models(), rb.models());
        assert_eq!(c.len(), 2, "{c:?}");
        assert_eq!((c[0].model.as_str(), c[0].field.as_str()), ("m", "prices"));
        assert!(c[0].new.as_deref().unwrap().contains("2026-06-01"));
        assert_eq!((c[1].model.as_str(), c[1].field.as_str()), ("n", "*"));
        assert!(c[1].old.is_none());
        assert!(diff(rb.models(), rb.models()).is_empty());
    }
}
