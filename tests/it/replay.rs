//! `driftwatch replay`: JSON-lines files through the daemon's own path. It writes what `run`
//! writes from a one-partition tansu topic holding the same lines; a rerun changes nothing;
//! gzip and zstd read the same; malformed lines are quarantined with their line numbers;
//! a replay killed mid-file and rerun ends with the clean result.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::support::*;

/// Windows close on event time only, so runs at any speed close the same windows.
const DETERMINISTIC: &str = "[windows]\nallowed_lateness = \"2m\"\nidle_timeout = \"1h\"\n";

/// Columns that say where a message came from, which differ between a file and a topic.
const SOURCE_COLUMNS: [&str; 5] = [
    "kafka_topic",
    "kafka_partition",
    "kafka_offset",
    "kafka_offsets",
    "kafka_timestamp",
];

/// A config for replays into `data`; `storage` goes into its `[storage]` section.
fn config(dir: &Path, data: &Path, storage: &str) -> PathBuf {
    let path = dir.join(format!("replay-{}.toml", free_port()));
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbootstrap_servers = \"127.0.0.1:1\"\ntopics = [\"llm-logs\"]\n\
             [storage]\ndata_dir = \"{}\"\n{storage}[detection]\nrules_dir = \"{}\"\n{DETERMINISTIC}",
            data.display(),
            repo_root().join("rules").display()
        ),
    )
    .unwrap();
    path
}

/// `driftwatch produce --output`: synthetic traffic (incidents, late scores, malformed
/// messages) as JSON lines.
fn produce_file(cfg: &Path, out: &Path, events: u64, seed: u64) {
    let o = Command::new(bin())
        .args(["produce", "--config", cfg.to_str().unwrap(), "--output"])
        .arg(out)
        .args(["--events", &events.to_string(), "--seed", &seed.to_string()])
        .args(["--span", "1h"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn replay(cfg: &Path, data: &Path, files: &[&Path]) -> String {
    let o = Command::new(bin())
        .args(["replay", "--config", cfg.to_str().unwrap(), "--data-dir"])
        .arg(data)
        .args(files)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "replay failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// Every file under `dir` with its contents' hash.
fn tree(dir: &Path) -> BTreeMap<PathBuf, u64> {
    use std::hash::{Hash, Hasher};
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                std::fs::read(&p).unwrap().hash(&mut h);
                out.insert(p.strip_prefix(dir).unwrap().to_path_buf(), h.finish());
            }
        }
    }
    out
}

fn rows(data: &Path, table: &str) -> Vec<String> {
    table_rows(data, table, &SOURCE_COLUMNS)
}

/// The lines of a `produce --output` file go to a one-partition tansu topic; `run` (the
/// daemon's ingest loop, until the topic is read and its windows closed) and `replay` of
/// the file write the same `events`, `windows`, `alerts` and `quarantine`, row for row,
/// but for the columns that name the source — and for how the late scores of a window
/// already written are split over correction rows (one per commit that saw some; commits
/// are cut by time in `run`, by size in `replay`), compared by their sums.
#[test]
fn replay_writes_what_run_writes_from_a_one_partition_topic() {
    let broker = Tansu::start();
    broker.create_topic("llm-logs", 1);
    let dir = tempfile::tempdir().unwrap();
    let (from_topic, from_file) = (dir.path().join("topic"), dir.path().join("file"));
    let http = format!("127.0.0.1:{}", free_port());
    let rules = format!(
        "{DETERMINISTIC}[detection]\nrules_dir = \"{}\"\n",
        repo_root().join("rules").display()
    );
    let cfg = tansu_config(
        dir.path(),
        &broker.bootstrap(),
        "replay-vs-run",
        &from_topic,
        &http,
        &rules,
    );
    let file = dir.path().join("traffic.jsonl");
    produce_file(&cfg, &file, 20_000, 5);
    // Bytes: some malformed lines are not UTF-8.
    let text = std::fs::read(&file).unwrap();
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .collect();
    let p: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("broker.address.family", "v4")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    for line in &lines {
        let mut record = BaseRecord::<(), [u8]>::to("llm-logs").payload(*line);
        loop {
            match p.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    p.poll(Duration::from_millis(10));
                }
            }
        }
    }
    p.flush(Duration::from_secs(60)).unwrap();

    let config = driftwatch::config::Config::load(&cfg).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let report = rt
        .block_on(driftwatch::daemon::ingest::run(
            &config,
            driftwatch::metrics::Metrics::new().0,
            Arc::new(driftwatch::daemon::health::Health::default()),
            std::future::pending(),
            driftwatch::daemon::ingest::RunOptions {
                stop_when_caught_up: Some(Arc::new(AtomicBool::new(true))),
                tick: Some(Duration::from_millis(100)),
                ..Default::default()
            },
        ))
        .unwrap();
    assert_eq!(report.pipeline.messages, lines.len() as u64);

    let summary = replay(&cfg, &from_file, &[&file]);
    assert!(
        summary.contains(&format!("{} lines", lines.len())),
        "{summary}"
    );
    let own = |data: &Path| -> Vec<String> {
        rows(data, "windows")
            .into_iter()
            .filter(|r| r.contains("correction_after= "))
            .collect()
    };
    assert_eq!(
        own(&from_topic),
        own(&from_file),
        "windows as first written"
    );
    assert_eq!(
        windows_content(&from_topic).1,
        windows_content(&from_file).1,
        "late scores per window"
    );
    for table in ["events", "alerts", "quarantine"] {
        let (a, b) = (rows(&from_topic, table), rows(&from_file, table));
        assert!(!a.is_empty(), "{table} is empty");
        if a != b {
            let cut = |r: &&String| r.chars().take(400).collect::<String>();
            let only_a: Vec<_> = a
                .iter()
                .filter(|r| !b.contains(r))
                .take(3)
                .map(|r| cut(&r))
                .collect();
            let only_b: Vec<_> = b
                .iter()
                .filter(|r| !a.contains(r))
                .take(3)
                .map(|r| cut(&r))
                .collect();
            panic!(
                "{table}: {} rows from the topic, {} from the file\nonly from the topic: {only_a:#?}\nonly from the file: {only_b:#?}",
                a.len(),
                b.len()
            );
        }
    }
    let fired = strings(&read_table(&from_file, "alerts"), "to_state")
        .iter()
        .filter(|s| s.as_deref() == Some("firing"))
        .count();
    assert!(fired >= 3, "the injected incidents fire: {fired}");
    // The file's rows name it: topic = file name, partition 0, offset = line number.
    let events = read_table(&from_file, "events");
    assert!(strings(&events, "kafka_topic")
        .iter()
        .all(|t| t.as_deref() == Some("traffic.jsonl")));
    let offsets = i64s(&events, "kafka_offset");
    assert_eq!(offsets.iter().min(), Some(&1));
    assert!(*offsets.iter().max().unwrap() <= lines.len() as i64);
}

/// A rerun over the same file writes nothing and changes no file; gzip and zstd copies of
/// it write the same rows (under their own names).
#[test]
fn a_rerun_changes_nothing_and_compressed_inputs_read_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("plain");
    let cfg = config(dir.path(), &data, "");
    let file = dir.path().join("day.jsonl");
    produce_file(&cfg, &file, 8000, 11);
    let text = std::fs::read(&file).unwrap();
    let first = replay(&cfg, &data, &[&file]);
    assert!(first.contains("8000 events"), "{first}");
    let before = tree(&data);
    let again = replay(&cfg, &data, &[&file]);
    assert!(again.contains(" 0 events"), "{again}");
    assert!(again.contains("already committed"), "{again}");
    assert_eq!(tree(&data), before, "a rerun changed the data directory");

    let gz = dir.path().join("day.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&text).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    // A name that does not say it is compressed: told by its first bytes.
    let zst = dir.path().join("day-archive");
    std::fs::write(&zst, zstd::encode_all(&text[..], 3).unwrap()).unwrap();
    for (input, name) in [(&gz, "day.jsonl.gz"), (&zst, "day-archive")] {
        let out = dir.path().join(name).with_extension("data");
        let summary = replay(&cfg, &out, &[input]);
        assert!(summary.contains("8000 events"), "{summary}");
        for table in ["events", "windows", "alerts", "quarantine"] {
            assert_eq!(rows(&data, table), rows(&out, table), "{name}: {table}");
        }
        assert!(strings(&read_table(&out, "events"), "kafka_topic")
            .iter()
            .all(|t| t.as_deref() == Some(name)));
    }
}

/// Malformed lines — bad JSON, a missing field, an empty line, bytes that are not UTF-8 —
/// are quarantined with their line numbers as `kafka_offset`; the good lines are events,
/// and the exit code is 0.
#[test]
fn malformed_lines_are_quarantined_with_their_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let cfg = config(dir.path(), &data, "");
    let good = |i: u32| {
        format!(
            r#"{{"event_id":"e{i}","timestamp":"2026-12-01T10:00:{:02}Z","service":"chat","request_model":"gpt-4o","latency_ms":{},"status":"ok"}}"#,
            i % 60,
            100 + i
        )
        .into_bytes()
    };
    let mut text: Vec<u8> = Vec::new();
    let mut bad = BTreeMap::new();
    for line in 1..=20u32 {
        let l: Vec<u8> = match line {
            4 => b"{\"event_id\": \"x\", ".to_vec(),
            9 => br#"{"event_id":"e9","timestamp":"2026-12-01T10:00:09Z","request_model":"gpt-4o","latency_ms":5}"#.to_vec(),
            13 => Vec::new(),
            17 => b"{\"event_id\":\"\xff\xfe\"}".to_vec(),
            _ => good(line),
        };
        match line {
            4 => bad.insert(4i64, "invalid_json"),
            9 => bad.insert(9, "missing_field"),
            13 => bad.insert(13, "empty_message"),
            17 => bad.insert(17, "invalid_utf8"),
            _ => None,
        };
        text.extend_from_slice(&l);
        text.extend_from_slice(b"\r\n");
    }
    let file = dir.path().join("mixed.jsonl");
    std::fs::write(&file, &text).unwrap();
    let summary = replay(&cfg, &data, &[&file]);
    assert!(summary.contains("16 events"), "{summary}");
    let q = read_table(&data, "quarantine");
    let got: BTreeMap<i64, String> = i64s(&q, "kafka_offset")
        .into_iter()
        .zip(strings(&q, "reason").into_iter().map(Option::unwrap))
        .collect();
    let want: BTreeMap<i64, String> = bad.into_iter().map(|(k, v)| (k, v.to_string())).collect();
    assert_eq!(got, want);
    let ids = strings(&read_table(&data, "events"), "event_id");
    assert_eq!(ids.len(), 16);
    assert!(!ids.contains(&Some("e9".into())));
}

/// A replay killed (-9) after some commits, then rerun over the same file, ends with what a
/// clean replay writes: every event once, the same windows and alerts.
#[test]
fn a_replay_killed_mid_file_and_rerun_gives_the_clean_result() {
    let dir = tempfile::tempdir().unwrap();
    let (crashy, clean) = (dir.path().join("crashy"), dir.path().join("clean"));
    // Small commits, so there are several before the kill.
    let cfg = config(dir.path(), &crashy, "flush_rows = 5000\n");
    let file = dir.path().join("big.jsonl");
    produce_file(&cfg, &file, 150_000, 21);
    let lines = std::fs::read(&file)
        .unwrap()
        .iter()
        .filter(|b| **b == b'\n')
        .count() as i64;

    let mut child = Command::new(bin())
        .args(["replay", "--config", cfg.to_str().unwrap()])
        .arg(&file)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let checkpoint = crashy.join("state").join("big.jsonl-0.checkpoint.json");
    let at = wait_for("a checkpoint mid-file", Duration::from_secs(120), || {
        let c: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&checkpoint).ok()?).ok()?;
        let next = c["next_offset"].as_i64()?;
        (next > 20_000).then_some(next)
    });
    child.kill().unwrap();
    let _ = child.wait();
    assert!(at < lines, "killed after the end ({at} of {lines})");
    let resumed = replay(&cfg, &crashy, &[&file]);
    assert!(resumed.contains("already committed"), "{resumed}");
    replay(&cfg, &clean, &[&file]);

    let ids = strings(&read_table(&crashy, "events"), "event_id");
    let unique: std::collections::BTreeSet<_> = ids.iter().collect();
    assert_eq!(ids.len(), unique.len(), "an event was written twice");
    for table in ["events", "quarantine", "alerts"] {
        let rows = |d: &Path| -> Vec<String> {
            table_rows(d, table, &[])
                .iter()
                .map(|r| rounded(r))
                .collect()
        };
        let (a, b) = (rows(&crashy), rows(&clean));
        assert_eq!(a.len(), b.len(), "{table}");
        let differ: Vec<_> = a.iter().zip(&b).filter(|(x, y)| x != y).take(3).collect();
        assert!(
            differ.is_empty(),
            "{table} differs from the clean replay's (crashy, clean): {differ:#?}"
        );
    }
    // Late scores of a window written before the kill may come in two correction rows
    // (one per commit) where the clean replay has one: compared by their sums.
    assert_eq!(windows_content(&crashy), windows_content(&clean));
}
