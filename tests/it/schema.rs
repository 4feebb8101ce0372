//! The example events of docs/events.md validate against the JSON Schemas in `schemas/` and decode
//! with driftwatch; events the decoder refuses are refused by the schema too.

use driftwatch::config::LimitsConfig;
use driftwatch::decode::{Decoded, Decoder};
use serde_json::Value;

use crate::support::repo_root;

fn schema(name: &str) -> jsonschema::Validator {
    let text = std::fs::read_to_string(repo_root().join("schemas").join(name)).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    jsonschema::validator_for(&v).unwrap()
}

/// Every ```json block of docs/events.md (the event contract page the README links).
fn readme_examples() -> Vec<Value> {
    let readme = std::fs::read_to_string(repo_root().join("docs/events.md")).unwrap();
    let mut out = Vec::new();
    let mut block: Option<String> = None;
    for line in readme.lines() {
        match (&mut block, line.trim_start()) {
            (None, "```json") => block = Some(String::new()),
            (Some(b), "```") => {
                out.push(
                    serde_json::from_str(b)
                        .unwrap_or_else(|e| panic!("README json block: {e}\n{b}")),
                );
                block = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            _ => {}
        }
    }
    out
}

#[test]
fn readme_examples_match_the_schemas_and_decode() {
    let request = schema("llm-request.v1.schema.json");
    let score = schema("llm-score.v1.schema.json");
    let decoder = Decoder::new(LimitsConfig::default(), Default::default());
    let examples = readme_examples();
    assert!(
        examples.len() >= 6,
        "docs/events.md shows request, OTel, score, feedback, OTel evaluation and cached/reasoning examples"
    );
    let (mut requests, mut scores) = (0, 0);
    for ex in &examples {
        let is_score = ex
            .get("kind")
            .is_some_and(|k| k == "score" || k == "feedback")
            || ex.get("event.name").is_some();
        let validator = if is_score { &score } else { &request };
        let errors: Vec<String> = validator.iter_errors(ex).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{ex}\n{errors:?}");
        let decoded = decoder
            .decode(Some(ex.to_string().as_bytes()), i64::MAX / 2)
            .unwrap();
        match decoded {
            Decoded::Request(_) => requests += 1,
            Decoded::Score(_) => scores += 1,
        }
    }
    assert!(
        requests >= 3 && scores >= 3,
        "{requests} requests, {scores} scores"
    );
}

#[test]
fn schemas_refuse_what_the_decoder_refuses() {
    let request = schema("llm-request.v1.schema.json");
    let score = schema("llm-score.v1.schema.json");
    let good = serde_json::json!({"event_id": "e", "timestamp": 1795892652250i64, "service": "s", "request_model": "m", "latency_ms": 5});
    assert!(request.is_valid(&good));
    let bad: Vec<(&str, Value)> = vec![
        ("latency_ms", serde_json::json!(-1)),
        ("latency_ms", serde_json::json!("fast")),
        ("deployment", serde_json::json!("blue")),
        ("status", serde_json::json!("maybe")),
        ("feedback", serde_json::json!(2)),
        ("http_status", serde_json::json!(42)),
        ("judge_scores", serde_json::json!({"f": "high"})),
        ("timestamp", serde_json::json!(1795892652i64)),
    ];
    for (field, value) in bad {
        let mut ev = good.clone();
        ev[field] = value;
        assert!(
            !request.is_valid(&ev),
            "schema accepted {field} = {}",
            ev[field]
        );
    }
    for missing in [
        "event_id",
        "timestamp",
        "service",
        "request_model",
        "latency_ms",
    ] {
        let mut ev = good.clone();
        ev.as_object_mut().unwrap().remove(missing);
        assert!(
            !request.is_valid(&ev),
            "schema accepted an event without {missing}"
        );
    }
    assert!(
        !score.is_valid(&serde_json::json!({"kind": "score", "response_id": "r", "value": 1})),
        "score without name"
    );
    assert!(
        !score.is_valid(&serde_json::json!({"kind": "feedback", "response_id": "r", "value": 3}))
    );
    assert!(score.is_valid(&serde_json::json!({"kind": "feedback", "trace_id": "t", "value": -1})));
}

/// The shipped example registry validates against its JSON Schema and loads; entries the
/// registry refuses are refused by the schema too (where a schema can say it).
#[test]
fn the_example_registry_matches_its_schema_and_bad_entries_fail_both() {
    let v = schema("models.v1.schema.json");
    let text = std::fs::read_to_string(repo_root().join("models.example.yaml")).unwrap();
    let json: Value = serde_saphyr::from_str(&text).unwrap();
    let errors: Vec<String> = v.iter_errors(&json).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let (r, warnings) = driftwatch::registry::Registry::parse(
        std::path::Path::new("models.example.yaml"),
        &text,
        0,
    )
    .unwrap();
    assert!(warnings.is_empty(), "{warnings:?}");
    for m in [
        "gpt-4o-2024-11-20",
        "gpt-4o-mini-2024-07-18",
        "claude-sonnet-4-20250514",
        "llama-3.1-70b-instruct",
    ] {
        assert!(r.lookup(m).is_some(), "the example covers the demo's {m}");
    }
    for bad in [
        "models:\n  - id: a\n    prices:\n      - { from: 2026-01-01, per_million: { input: -1, output: 2 } }\n",
        "models:\n  - id: a\n    pricez: []\n",
        "models:\n  - id: a\n    prices:\n      - from: 2026-01-01\n        per_million: { input: 1, output: 2 }\n        above: [ { per_million: { input: 2 } } ]\n",
        "models:\n  - id: a\n    prices:\n      - { from: 2026-01-01, per_million: { input: 1 } }\n",
        "models:\n  - id: a\n    deprecation: { date: 31/12/2026 }\n",
        "schema_version: 2\nmodels: []\n",
    ] {
        let json: Value = serde_saphyr::from_str(bad).unwrap();
        assert!(!v.is_valid(&json), "schema accepts:\n{bad}");
        assert!(
            driftwatch::registry::Registry::parse(std::path::Path::new("bad.yaml"), bad, 0).is_err(),
            "registry accepts:\n{bad}"
        );
    }
}
