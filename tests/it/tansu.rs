//! End to end against a real Kafka-compatible broker (tansu): `driftwatch produce` publishes
//! to a 3-partition topic, `driftwatch run` consumes it as a group member, serves
//! /healthz /readyz /metrics, drains on SIGTERM and exits 0; every event is in `events`
//! once, windows sum to the event count, and the group's committed offsets equal the
//! partitions' end offsets.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use crate::support::*;

/// Events counted in the open windows saved in `state/*.checkpoint.json`.
pub fn checkpointed_open_events(data: &std::path::Path) -> i64 {
    let mut n = 0;
    for e in std::fs::read_dir(data.join("state")).unwrap().flatten() {
        if !e
            .file_name()
            .to_string_lossy()
            .ends_with(".checkpoint.json")
        {
            continue;
        }
        let v: serde_json::Value =
            serde_json::from_slice(&std::fs::read(e.path()).unwrap()).unwrap();
        for window in v["windows"]["open"].as_array().unwrap() {
            for series in window[1].as_array().unwrap() {
                n += series[1]["event_count"].as_i64().unwrap();
            }
        }
    }
    n
}

fn metric(text: &str, name: &str) -> Option<f64> {
    metric_value(text, name)
}

#[test]
fn produce_and_run_against_tansu_exactly_once_with_clean_shutdown() {
    let broker = Tansu::start();
    broker.create_topic("llm-logs", 3);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let http = format!("127.0.0.1:{}", free_port());
    let cfg = dir.path().join("driftwatch.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"
[kafka]
bootstrap_servers = "{}"
topics = ["llm-logs"]
group_id = "it-tansu"
statistics_interval = "1s"
[kafka.librdkafka]
"broker.address.family" = "v4"
[storage]
data_dir = "{}"
flush_interval = "1s"
[http]
listen = "{http}"
"#,
            broker.bootstrap(),
            data.display()
        ),
    )
    .unwrap();

    let produced = produce(&cfg, &["--events", "50000", "--seed", "5", "--span", "1h"]);
    assert!(produced > 50_000, "{produced}");

    let mut daemon = Command::new(bin())
        .args(["run", "--config", cfg.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let metrics = wait_for(
        "every message consumed and every event written",
        Duration::from_secs(120),
        || {
            let (code, body) = http_get(&http, "/metrics").ok()?;
            let consumed = metric(&body, "driftwatch_messages_consumed_total")?;
            let written = metric(
                &body,
                "driftwatch_parquet_rows_written_total{table=\"events\"}",
            )?;
            (code == 200 && consumed as u64 == produced && written as u64 == 50_000).then_some(body)
        },
    );
    assert_eq!(http_get(&http, "/healthz").unwrap().0, 200);
    assert_eq!(http_get(&http, "/readyz").unwrap().0, 200);
    for name in [
        "driftwatch_events_decoded_total{kind=\"request\"}",
        "driftwatch_quarantined_total{reason=\"invalid_json\"}",
        "driftwatch_late_events_total",
        "driftwatch_active_series",
        "driftwatch_windows_closed_total",
    ] {
        assert!(
            metric(&metrics, name).is_some(),
            "{name} missing from /metrics:\n{metrics}"
        );
    }
    assert_eq!(
        metric(
            &metrics,
            "driftwatch_events_decoded_total{kind=\"request\"}"
        ),
        Some(50_000.0)
    );
    wait_for(
        "consumer lag per partition",
        Duration::from_secs(30),
        || {
            let (_, body) = http_get(&http, "/metrics").ok()?;
            (0..3)
                .all(|p| {
                    metric(
                        &body,
                        &format!("driftwatch_consumer_lag{{topic=\"llm-logs\",partition=\"{p}\"}}"),
                    )
                    .is_some()
                })
                .then_some(())
        },
    );

    // SIGTERM: drain and exit 0
    let status = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let code = wait_for("the daemon to exit", Duration::from_secs(60), || {
        daemon.try_wait().unwrap()
    });
    assert!(code.success(), "run exited with {code:?}");

    let events = read_table(&data, "events");
    let ids: Vec<String> = strings(&events, "event_id")
        .into_iter()
        .map(Option::unwrap)
        .collect();
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), 50_000);
    assert_eq!(unique, expected_event_ids(5, 50_000));
    let late = bools(&events, "late").iter().filter(|l| **l).count() as i64;
    assert_eq!(late, 0);
    // closed windows are in `windows`; the windows still open at shutdown are in the
    // partitions' checkpoints, to be continued by the next run
    let windows = read_table(&data, "windows");
    let closed: i64 = i64s(&windows, "event_count").iter().sum();
    let open = checkpointed_open_events(&data);
    assert!(closed > 40_000, "most windows closed ({closed})");
    assert_eq!(closed + open, 50_000);

    // committed group offsets = end offsets
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", "it-tansu")
        .set("broker.address.family", "v4")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..3 {
        tpl.add_partition("llm-logs", p);
    }
    let committed = consumer
        .committed_offsets(tpl, Duration::from_secs(10))
        .unwrap();
    let mut total = 0;
    for e in committed.elements() {
        let Offset::Offset(c) = e.offset() else {
            panic!("partition {} has no committed offset", e.partition())
        };
        // tansu 0.6 answers ListOffsets(latest) with the base offset of the last record
        // batch, which can be below the true end; the committed offset is never below it.
        let (_, high) = consumer
            .fetch_watermarks("llm-logs", e.partition(), Duration::from_secs(10))
            .unwrap();
        assert!(
            c >= high,
            "partition {} committed {c} < reported end {high}",
            e.partition()
        );
        total += c;
    }
    // offsets start at 0, so committed offsets summing to the message count means every
    // partition is committed exactly up to its end
    assert_eq!(total as u64, produced, "committed offsets = end offsets");
}
