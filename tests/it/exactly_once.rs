//! Exactly-once against a real broker (tansu): crashes at every step of a commit and
//! `kill -9` mid-stream lose nothing and count nothing twice, and the output equals a clean
//! run's; two instances in one group split the partitions and the survivor of a stop takes
//! over with totals still exact.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::support::*;
use crate::tansu::checkpointed_open_events;

const MIN: Duration = Duration::from_secs(60);

/// Windows close on event time only (no wall-clock idle advance), so two runs over the same
/// input close the same windows whatever their timing. The producer sends one message per
/// record batch: tansu answers a fetch from inside a batch with the next batch, so a daemon
/// resumed from a checkpoint inside a batch would skip the rest of it.
const DETERMINISTIC: &str = "[windows]\nallowed_lateness = \"2m\"\nidle_timeout = \"1h\"\n\
    [produce.librdkafka]\n\"linger.ms\" = \"0\"\n\"batch.num.messages\" = \"1\"\n";

/// Starts a daemon and waits until it owns all three partitions (or has already exited, as
/// a failpoint run may). tansu sometimes answers a member that joins right after another
/// died with an empty assignment and never rebalances it; such a member owns nothing and
/// has written nothing, so it is stopped and a new one started.
fn start_owning_all(cfg: &Path, http: &str, env: &[(&str, &str)]) -> Daemon {
    for attempt in 1..=4 {
        let mut d = Daemon::start(cfg, http, env);
        let deadline = std::time::Instant::now() + MIN;
        while std::time::Instant::now() < deadline {
            if d.exited() || d.metric("driftwatch_assigned_partitions") == Some(3.0) {
                return d;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        eprintln!("attempt {attempt}: the broker assigned no partitions; restarting");
        drop(d); // SIGKILL
        std::thread::sleep(Duration::from_secs(7));
    }
    panic!("the broker never assigned the partitions");
}

fn event_ids(data: &Path) -> Vec<String> {
    strings(&read_table(data, "events"), "event_id")
        .into_iter()
        .map(Option::unwrap)
        .collect()
}

fn assert_exactly_once(data: &Path, expected: &BTreeSet<String>) {
    let ids = event_ids(data);
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "an event was written twice");
    assert_eq!(&unique, expected, "events lost or invented");
    let windows: i64 = i64s(&read_table(data, "windows"), "event_count")
        .iter()
        .sum();
    let late = bools(&read_table(data, "events"), "late")
        .iter()
        .filter(|l| **l)
        .count() as i64;
    assert_eq!(
        windows + checkpointed_open_events(data) + late,
        expected.len() as i64,
        "window counts"
    );
}

#[test]
fn crashes_mid_commit_and_kill_9_mid_stream_change_nothing() {
    let broker = Tansu::start();
    broker.create_topic("llm-logs", 3);
    // DRIFTWATCH_KEEP_TEST_DIRS=1 keeps the data, configs and daemon logs for a post-mortem.
    let tmp = tempfile::Builder::new()
        .disable_cleanup(std::env::var_os("DRIFTWATCH_KEEP_TEST_DIRS").is_some())
        .tempdir()
        .unwrap();
    let dir = tmp.path();
    eprintln!("crash test files in {}", dir.display());
    let crashy = dir.join("crashy");
    let http = format!("127.0.0.1:{}", free_port());
    // Compaction runs every second over every closed hour, so crashes also land beside
    // (and inside) compactions; the output must still equal a clean run's.
    let cfg = tansu_config(
        dir,
        &broker.bootstrap(),
        "crashy",
        &crashy,
        &http,
        &format!("{DETERMINISTIC}[storage.compaction]\nafter = \"0s\"\ninterval = \"1s\"\n"),
    );

    let mut expected = BTreeSet::new();
    let mut produced = 0;
    // Each phase publishes new traffic, then a run dies at a chosen step of its 2nd
    // partition commit (a SIGABRT: no cleanup, like kill -9 at that instant).
    for (seed, events, span, failpoint) in [
        (1u64, 20_000u64, "2h", "after_files:2"), // files written, no checkpoint
        (2, 10_000, "30s", "after_checkpoint:2"), // checkpoint written, offsets not in Kafka
        (3, 10_000, "30s", "after_intent:2"),     // intent written, no file yet
    ] {
        produced += produce(
            &cfg,
            &[
                "--events",
                &events.to_string(),
                "--seed",
                &seed.to_string(),
                "--span",
                span,
            ],
        );
        expected.extend(expected_event_ids(seed, events));
        let mut d = start_owning_all(&cfg, &http, &[("DRIFTWATCH_FAILPOINT", failpoint)]);
        // Generous: under the full suite on 2 cores the second commit can take over a minute.
        let status = d.wait(3 * MIN);
        assert!(!status.success(), "failpoint {failpoint} did not fire");
        // An aborted member does not leave the group: let its session time out (6 s).
        std::thread::sleep(Duration::from_secs(7));
    }

    // 4. kill -9 three times while a producer is still publishing and the daemon consuming
    for seed in [4u64, 5, 6] {
        let d = start_owning_all(&cfg, &http, &[]);
        let before = d.consumed();
        let cfg2 = cfg.clone();
        let producer = std::thread::spawn(move || {
            produce(
                &cfg2,
                &[
                    "--events",
                    "15000",
                    "--seed",
                    &seed.to_string(),
                    "--span",
                    "30s",
                    "--rate",
                    "3000",
                ],
            )
        });
        wait_for("the daemon to consume mid-stream", MIN, || {
            (d.consumed() > before + 3000).then_some(())
        });
        assert!(
            !producer.is_finished(),
            "the kill should land while traffic is still arriving"
        );
        d.signal("-KILL");
        produced += producer.join().unwrap();
        // the broker notices the dead member after session.timeout.ms (6 s); until then a
        // new member would be a standby
        std::thread::sleep(Duration::from_secs(7));
        expected.extend(expected_event_ids(seed, 15_000));
        drop(d);
    }

    // 5. a last run to the end, stopped cleanly
    let mut d = start_owning_all(&cfg, &http, &[]);
    let files_before_end = wait_for("the rest to be consumed", 2 * MIN, || {
        let written = d
            .metric("driftwatch_parquet_rows_written_total{table=\"events\"}")
            .unwrap_or(0.0);
        let restored_lag: f64 = (0..3)
            .map(|p| {
                d.metric(&format!(
                    "driftwatch_consumer_lag{{topic=\"llm-logs\",partition=\"{p}\"}}"
                ))
                .unwrap_or(1.0)
            })
            .sum();
        (written > 0.0 && restored_lag == 0.0).then_some(written)
    });
    assert!(files_before_end > 0.0);
    d.signal("-TERM");
    assert!(d.wait(MIN).success());
    assert_exactly_once(&crashy, &expected);

    // The same input, consumed once without incident by another group.
    let clean = dir.join("clean");
    let http2 = format!("127.0.0.1:{}", free_port());
    let cfg_clean = tansu_config(
        dir,
        &broker.bootstrap(),
        "clean",
        &clean,
        &http2,
        DETERMINISTIC,
    );
    let mut d = Daemon::start(&cfg_clean, &http2, &[]);
    wait_for("the clean run to consume everything", 2 * MIN, || {
        (d.consumed() == produced).then_some(())
    });
    wait_for("the clean run to commit", MIN, || {
        (d.metric("driftwatch_parquet_rows_written_total{table=\"events\"}")
            == Some(expected.len() as f64))
        .then_some(())
    });
    d.signal("-TERM");
    assert!(d.wait(MIN).success());
    assert_exactly_once(&clean, &expected);

    let (crashy_windows, crashy_corrections) = windows_content(&crashy);
    let (clean_windows, clean_corrections) = windows_content(&clean);
    assert!(
        crashy_windows.len() > 100,
        "{} window rows",
        crashy_windows.len()
    );
    assert_eq!(crashy_windows.len(), clean_windows.len());
    assert!(
        crashy_windows == clean_windows,
        "windows differ from a clean run"
    );
    // Late scores, in the windows' rows or in correction rows: every one counted once per
    // window, across the crashes too (`late_scores::` kills a daemon between requests and
    // their scores).
    assert_eq!(crashy_corrections, clean_corrections);
    assert_eq!(
        table_rows(&crashy, "events", &[]),
        table_rows(&clean, "events", &[])
    );
    assert_eq!(
        checkpointed_open_events(&crashy),
        checkpointed_open_events(&clean)
    );
    let compacted = parquet_files(&crashy.join("events"))
        .iter()
        .filter(|f| {
            f.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("compact-")
        })
        .count();
    assert!(compacted >= 1, "no hour of the crashy run was compacted");
}

#[test]
fn two_instances_split_partitions_and_the_survivor_takes_over() {
    let broker = Tansu::start();
    broker.create_topic("llm-logs", 3);
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("shared");
    let (http_a, http_b) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let cfg_a = tansu_config(
        dir.path(),
        &broker.bootstrap(),
        "pair",
        &data,
        &http_a,
        DETERMINISTIC,
    );
    let cfg_b = tansu_config(
        dir.path(),
        &broker.bootstrap(),
        "pair",
        &data,
        &http_b,
        DETERMINISTIC,
    );

    let mut a = Daemon::start(&cfg_a, &http_a, &[]);
    wait_for("a to be ready", MIN, || {
        (http_get(&http_a, "/readyz").ok()?.0 == 200).then_some(())
    });
    let mut b = Daemon::start(&cfg_b, &http_b, &[]);
    wait_for("b to be ready", MIN, || {
        (http_get(&http_b, "/readyz").ok()?.0 == 200).then_some(())
    });

    let mut produced = produce(
        &cfg_a,
        &["--events", "20000", "--seed", "21", "--span", "1h"],
    );
    wait_for("both instances to consume the first half", MIN, || {
        (a.consumed() > 0 && b.consumed() > 0 && a.consumed() + b.consumed() == produced)
            .then_some(())
    });
    // B stops mid-run; A takes its partitions over from B's checkpoints
    b.signal("-TERM");
    assert!(b.wait(MIN).success());
    produced += produce(
        &cfg_a,
        &["--events", "20000", "--seed", "22", "--span", "60s"],
    );
    // the survivor commits every event of both halves, B's partitions included
    let mut last = 0;
    let written = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        wait_for("every event written", 2 * MIN, || {
            last = event_ids(&data).len();
            (last >= 40_000).then_some(())
        })
    }));
    if written.is_err() {
        let ids = event_ids(&data);
        let unique: BTreeSet<String> = ids.iter().cloned().collect();
        panic!(
            "events written: {} rows, {} distinct, of 40000; a consumed {}",
            ids.len(),
            unique.len(),
            a.consumed()
        );
    }
    a.signal("-TERM");
    assert!(a.wait(MIN).success());

    let mut expected = expected_event_ids(21, 20_000);
    expected.extend(expected_event_ids(22, 20_000));
    assert_exactly_once(&data, &expected);
    assert!(produced > 40_000);
}
