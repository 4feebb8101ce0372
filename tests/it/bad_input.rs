//! Thousands of malformed messages of every kind mixed into valid traffic: the daemon keeps
//! running, every valid event is written, every bad message is in `quarantine` with the
//! right reason and its Kafka coordinates.

use std::collections::{BTreeMap, BTreeSet};

use driftwatch::daemon::demo::{mock_cluster, produce_and_consume};
use driftwatch::decode::RejectReason;

use crate::mock_pipeline::mock_config;
use crate::support::*;

#[test]
fn malformed_messages_are_quarantined_by_reason_and_valid_ones_all_written() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = mock_cluster("llm-logs", 3).unwrap();
    let mut config = mock_config(cluster.bootstrap_servers(), dir.path(), 20_000, 11);
    config.produce.malformed_ratio = 0.15;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let report = rt.block_on(produce_and_consume(&config)).unwrap();

    let malformed: u64 = report.produced.malformed.values().sum();
    assert!(
        malformed >= 3000,
        "a few thousand malformed messages ({malformed})"
    );
    let kinds: BTreeSet<RejectReason> = report.produced.malformed.keys().copied().collect();
    let every: BTreeSet<RejectReason> = RejectReason::ALL.into_iter().collect();
    assert_eq!(kinds, every, "every kind of bad input was sent");
    assert_eq!(
        report.run.pipeline.messages,
        report.produced.messages(),
        "nothing stopped the consumer"
    );

    let events = read_table(dir.path(), "events");
    let ids: BTreeSet<String> = strings(&events, "event_id")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    assert_eq!(
        ids,
        expected_event_ids(11, 20_000),
        "every valid event written once"
    );

    let q = read_table(dir.path(), "quarantine");
    let reasons = strings(&q, "reason");
    let details = strings(&q, "detail");
    let offsets = i64s(&q, "kafka_offset");
    assert_eq!(reasons.len() as u64, malformed);
    let mut counted: BTreeMap<String, u64> = BTreeMap::new();
    for r in &reasons {
        *counted.entry(r.clone().unwrap()).or_default() += 1;
    }
    let expected: BTreeMap<String, u64> = report
        .produced
        .malformed
        .iter()
        .map(|(r, n)| (r.as_str().to_string(), *n))
        .collect();
    assert_eq!(counted, expected, "quarantined by the right reason");
    assert!(details
        .iter()
        .all(|d| d.as_ref().is_some_and(|d| !d.is_empty())));
    // (partition, offset) identifies each quarantined message once
    let parts = i32s(&q, "kafka_partition");
    let coords: BTreeSet<(i32, i64)> = parts.into_iter().zip(offsets).collect();
    assert_eq!(coords.len() as u64, malformed);
    // wrong-type and missing-field rows name the field
    let fields = strings(&q, "field");
    for (r, f) in reasons.iter().zip(&fields) {
        if matches!(
            r.as_deref(),
            Some("wrong_type" | "missing_field" | "duplicate_field")
        ) {
            assert!(f.is_some(), "{r:?} without a field");
        }
    }
    drop(cluster);
}
