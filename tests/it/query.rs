//! SQL over the history: the queries of `tests/queries.json` (filters, group-bys by model,
//! prompt version and hour, window functions, a join of alerts with windows, the histogram
//! functions) give the same results in driftwatch (DataFusion) and in DuckDB on the same
//! files; a query for one hour reads only that hour's files; every kind of statement that
//! could change something or read outside the data directory is refused over HTTP, which
//! also asks for the bearer token.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use serde_json::Value;

use driftwatch::query::{Format, Limits, QueryEngine};

use crate::mock_pipeline::runtime;
use crate::support::*;

const LABELS: [&str; 6] = [
    "service",
    "request_model",
    "prompt_id",
    "prompt_version",
    "deployment",
    "variant",
];

/// An hour of demo traffic (mock cluster, real pipeline and rules), written once per run.
fn data() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let cluster = driftwatch::daemon::demo::mock_cluster("llm-logs", 3).unwrap();
        let mut config =
            crate::mock_pipeline::mock_config(cluster.bootstrap_servers(), dir.path(), 30_000, 23);
        config.storage.flush_interval = std::time::Duration::from_secs(10);
        runtime()
            .block_on(driftwatch::daemon::demo::produce_and_consume(&config))
            .unwrap();
        dir
    })
    .path()
}

/// Rows of a result as JSON values, in column order.
pub(crate) fn rows(engine: &QueryEngine, sql: &str) -> (Vec<String>, Vec<Vec<Value>>) {
    let out = runtime()
        .block_on(engine.run(sql, &Limits::default()))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let columns: Vec<String> = out
        .schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let text =
        String::from_utf8(driftwatch::query::encode_output(&out, Format::Json).unwrap()).unwrap();
    let rows = text
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            columns.iter().map(|c| v[c].clone()).collect()
        })
        .collect();
    (columns, rows)
}

fn close(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    (a - b).abs() <= abs + rel * a.abs().max(b.abs())
}

#[test]
fn driftwatch_and_duckdb_agree_on_the_same_queries() {
    agree(data());
}

/// `driftwatch compact` rewrites each closed hour's files as one; every query still agrees
/// with DuckDB on the compacted copy, and the original's files are untouched.
#[test]
fn compacted_hours_answer_every_query_the_same() {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            let (f, t) = (e.path(), to.join(e.file_name()));
            if f.is_dir() {
                copy(&f, &t);
            } else {
                std::fs::copy(&f, &t).unwrap();
            }
        }
    }
    let tmp = tempfile::tempdir().unwrap();
    let copied = tmp.path().join("data");
    copy(data(), &copied);
    let before: Vec<PathBuf> = parquet_files(&copied);
    // An engine that listed (and cached) the files before the swap still answers after it.
    let early = QueryEngine::open(&copied, &LABELS).unwrap();
    let count = "SELECT COUNT(*) AS n, SUM(kafka_offset) AS s FROM events";
    let (_, counted) = rows(&early, count);
    let stdout = compact_now(&copied);
    let after = parquet_files(&copied);
    eprintln!("{stdout}");
    for table in ["events", "windows"] {
        let n = |files: &[PathBuf]| {
            files
                .iter()
                .filter(|f| f.starts_with(copied.join(table)))
                .count()
        };
        let compacted = after
            .iter()
            .filter(|f| f.starts_with(copied.join(table)))
            .filter(|f| {
                f.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("compact-")
            })
            .count();
        assert!(compacted >= 1, "{table}: no hour compacted\n{stdout}");
        assert!(
            n(&after) < n(&before),
            "{table}: {} -> {} files",
            n(&before),
            n(&after)
        );
    }
    assert_eq!(rows(&early, count).1, counted);
    // Nothing is left behind in the staging area.
    assert!(parquet_files(&copied.join("state")).is_empty());
    agree(&copied);

    // windows_1h holds the closed hours' windows merged exactly: the same sums, extremes and
    // histogram quantiles per series and hour as merging `windows` in SQL.
    let engine = QueryEngine::open(&copied, &LABELS).unwrap();
    assert!(engine.tables().contains(&"windows_1h"), "{stdout}");
    let per_hour = |table: &str| {
        rows(
            &engine,
            &format!(
                "SELECT service, request_model, prompt_id, prompt_version, deployment, variant, \
                 kafka_partition, \
                 date_trunc('hour', window_start) AS h, SUM(event_count) AS n, \
                 SUM(error_count) AS e, SUM(latency_ms_count) AS c, MIN(latency_ms_min) AS lo, \
                 MAX(latency_ms_max) AS hi, SUM(feedback_negative) AS neg, \
                 SUM(late_scores) AS late, \
                 hist_quantile(hist_merge(latency_ms_hist), 0.99) AS p99, \
                 hist_quantile(hist_merge(output_tokens_hist), 0.5) AS p50_tokens \
                 FROM {table} \
                 WHERE date_trunc('hour', window_start) IN (SELECT window_start FROM windows_1h) \
                 GROUP BY 1, 2, 3, 4, 5, 6, 7, 8 ORDER BY 1, 2, 3, 4, 5, 6, 7, 8"
            ),
        )
        .1
    };
    let (fine, hourly) = (per_hour("windows"), per_hour("windows_1h"));
    assert!(!hourly.is_empty());
    assert_eq!(fine, hourly);
    // windows_1h is derived: a damaged day file is rebuilt by the next pass.
    let day = parquet_files(&copied.join("windows_1h"))[0].clone();
    std::fs::write(&day, b"not parquet").unwrap();
    compact_now(&copied);
    assert_eq!(per_hour("windows_1h"), fine);
    let (_, n) = rows(
        &engine,
        "SELECT COUNT(*) AS n FROM windows_1h WHERE window_end - window_start <> INTERVAL '1 hour'",
    );
    assert_eq!(n[0][0], Value::from(0));
}

fn agree(data: &Path) {
    let engine = QueryEngine::open(data, &LABELS).unwrap();
    assert_eq!(
        engine.tables()[..4],
        ["events", "windows", "alerts", "quarantine"]
    );
    let queries: Vec<Value> = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/queries.json")).unwrap(),
    )
    .unwrap();
    assert!(queries.len() >= 8);
    let duck: Vec<Value> = python("tests/duckdb_queries.py", &[data.to_str().unwrap()])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(duck.len(), queries.len());
    for (q, d) in queries.iter().zip(&duck) {
        let name = q["name"].as_str().unwrap();
        let histogram = q["histogram"].as_bool().unwrap_or(false);
        let (columns, ours) = rows(&engine, q["sql"].as_str().unwrap());
        let theirs: Vec<Vec<Value>> = serde_json::from_value(d["rows"].clone()).unwrap();
        assert!(!ours.is_empty(), "{name}: no rows");
        assert_eq!(ours.len(), theirs.len(), "{name}: row counts differ");
        assert_eq!(
            columns.len(),
            d["columns"].as_array().unwrap().len(),
            "{name}"
        );
        for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
            for (c, (x, y)) in a.iter().zip(b).enumerate() {
                let same = match (x, y) {
                    (Value::Number(x), Value::Number(y)) => {
                        let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                        if histogram {
                            // The histogram's stated precision: within 1/128 of the exact
                            // value, at or above it, plus one unit (1 µs).
                            x >= y - 1e-9
                                && close(
                                    x,
                                    y,
                                    driftwatch::window::sketch::HIST_RELATIVE_ERROR,
                                    0.001,
                                )
                        } else {
                            close(x, y, 1e-9, 1e-9)
                        }
                    }
                    (x, y) => x == y,
                };
                assert!(
                    same,
                    "{name}: row {i} column {}: driftwatch {x} vs DuckDB {y}\n{a:?}\n{b:?}",
                    columns[c]
                );
            }
        }
        eprintln!("{name}: {} rows agree", ours.len());
    }
}

#[test]
fn a_query_for_one_hour_reads_only_that_hours_files() {
    let data = data();
    let engine = QueryEngine::open(data, &LABELS).unwrap();
    let (_, hours) = rows(
        &engine,
        "SELECT DISTINCT date, hour FROM events ORDER BY date, hour",
    );
    assert!(
        hours.len() >= 2,
        "the demo spans at least two hours: {hours:?}"
    );
    let (date, hour) = (
        hours[1][0].as_str().unwrap().to_string(),
        hours[1][1].as_str().unwrap().to_string(),
    );
    let (_, plan) = rows(
        &engine,
        &format!(
            "EXPLAIN SELECT SUM(latency_ms) FROM events WHERE date = '{date}' AND hour = '{hour}'"
        ),
    );
    let text: String = plan
        .iter()
        .map(|r| r[1].as_str().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    // Files appear as `path:start..end` byte ranges.
    let listed: BTreeSet<&str> = text
        .split(|c: char| c == '[' || c == ']' || c == ',' || c.is_whitespace())
        .map(|p| p.split(':').next().unwrap_or(""))
        .filter(|p| p.ends_with(".parquet"))
        .collect();
    assert!(!listed.is_empty(), "{text}");
    let wanted = format!("date={date}/hour={hour}/");
    for f in &listed {
        assert!(f.contains(&wanted), "{f} is outside {wanted}:\n{text}");
    }
    let in_hour = parquet_files(
        &data
            .join("events")
            .join(format!("date={date}"))
            .join(format!("hour={hour}")),
    );
    let all = parquet_files(&data.join("events"));
    assert!(all.len() > in_hour.len());
    // And at run time: the scan opens only those files (a file may be split into two byte
    // ranges for parallelism, so allow one extra open per range split).
    let (_, analyzed) = rows(
        &engine,
        &format!(
            "EXPLAIN ANALYZE SELECT SUM(latency_ms) FROM events WHERE date = '{date}' AND hour = '{hour}'"
        ),
    );
    let text: String = analyzed
        .iter()
        .map(|r| r[1].as_str().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let opened: usize = text
        .split("files_opened=")
        .nth(1)
        .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no files_opened metric:\n{text}"));
    assert!(
        opened >= in_hour.len() && opened <= in_hour.len() + 2 && opened < all.len(),
        "opened {opened} files; the hour has {}, the table {}",
        in_hour.len(),
        all.len()
    );
    eprintln!(
        "EXPLAIN for {date} {hour}: {} of {} events files listed, all in that hour",
        listed.len(),
        all.len()
    );
}

/// Every file under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> BTreeSet<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.insert((e.path(), m.len(), m.modified().unwrap()));
            }
        }
    }
    out
}

#[test]
fn http_queries_are_read_only_and_need_the_token() {
    let data = data();
    let rt = runtime();
    let (_, registry) = driftwatch::metrics::Metrics::new();
    let health = Arc::new(driftwatch::daemon::health::Health::default());
    let app = driftwatch::daemon::http::router(
        registry,
        health,
        Some("s3cret".into()),
        Some(driftwatch::daemon::http::QueryApi {
            data_dir: data.to_path_buf(),
            labels: LABELS.to_vec(),
            limits: Limits {
                max_rows: 1000,
                ..Limits::default()
            },
        }),
    );
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    let auth = [("Authorization", "Bearer s3cret")];
    let post = |headers: &[(&str, &str)], sql: &str| {
        http_send(&addr, "POST", "/api/v1/query", headers, sql).unwrap()
    };

    // Auth.
    assert_eq!(post(&[], "SELECT 1").0, 401);
    assert_eq!(post(&[("Authorization", "Bearer nope")], "SELECT 1").0, 401);

    // JSON (SQL as the body, or in a JSON object), CSV and Arrow IPC by Accept.
    let (code, body) = post(
        &auth,
        "SELECT service, COUNT(*) AS n FROM events GROUP BY service ORDER BY service",
    );
    assert_eq!(code, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v.as_array().unwrap().len() >= 3, "{v}");
    assert!(v[0]["n"].as_i64().unwrap() > 0);
    let (code, body) = post(
        &[auth[0], ("Content-Type", "application/json")],
        r#"{"sql": "SELECT hist_quantile(hist_merge(latency_ms_hist), 0.99) / 1000 AS p99 FROM windows"}"#,
    );
    assert_eq!(code, 200, "{body}");
    let p99 = serde_json::from_str::<Value>(&body).unwrap()[0]["p99"]
        .as_f64()
        .unwrap();
    assert!(p99 > 100.0, "{p99}");
    let (code, body) = http_send_bytes(
        &addr,
        "POST",
        "/api/v1/query",
        &[auth[0], ("Accept", "application/vnd.apache.arrow.stream")],
        "SELECT service FROM events GROUP BY service",
    )
    .unwrap();
    assert_eq!(code, 200);
    let reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(body), None).unwrap();
    assert_eq!(reader.schema().field(0).name(), "service");
    let n: usize = reader.map(|b| b.unwrap().num_rows()).sum();
    assert!(n >= 3, "{n} services");
    let (code, body) = post(
        &[auth[0], ("Accept", "text/csv")],
        "SELECT service FROM events GROUP BY service ORDER BY service",
    );
    assert_eq!(code, 200);
    assert!(body.starts_with("service\n"), "{body}");
    // Limits: more rows than allowed.
    let (code, body) = post(&auth, "SELECT * FROM events");
    assert_eq!(code, 413, "{body}");
    assert!(body.contains("more than 1000 rows"), "{body}");

    // Every statement kind that could write, or read outside the data directory.
    let outside = std::env::temp_dir().join(format!("dw-query-escape-{}", std::process::id()));
    let before = snapshot(data);
    let refused = [
        format!("COPY (SELECT * FROM events) TO '{}.csv'", outside.display()),
        format!(
            "COPY events TO '{}.parquet' STORED AS PARQUET",
            outside.display()
        ),
        "CREATE EXTERNAL TABLE passwd (line VARCHAR) STORED AS CSV LOCATION '/etc/passwd'"
            .to_string(),
        "CREATE TABLE t AS SELECT * FROM events".to_string(),
        "CREATE VIEW v AS SELECT 1".to_string(),
        "DROP TABLE events".to_string(),
        "INSERT INTO events SELECT * FROM events".to_string(),
        "DELETE FROM events".to_string(),
        "UPDATE events SET status = 'ok'".to_string(),
        "SET datafusion.execution.batch_size = 1".to_string(),
        "SELECT * FROM '/etc/passwd'".to_string(),
        format!("SELECT * FROM '{}/events'", data.display()),
        "SELECT 1; DROP TABLE events".to_string(),
    ];
    for sql in &refused {
        let (code, body) = post(&auth, sql);
        assert!((400..500).contains(&code), "{sql}: {code} {body}");
        let msg = serde_json::from_str::<Value>(&body).unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(!msg.is_empty(), "{sql}");
        eprintln!("{code} {sql}\n    {msg}");
    }
    assert_eq!(snapshot(data), before, "the data directory changed");
    for ext in ["csv", "parquet"] {
        assert!(
            !outside.with_extension(ext).exists(),
            "a file was written outside"
        );
    }
    // The refusals name the reason.
    let (code, body) = post(&auth, &refused[0]);
    assert_eq!(code, 403);
    assert!(body.contains("read-only"), "{body}");
}

#[test]
fn the_query_command_writes_every_format_and_refuses_with_exit_2() {
    let data = data();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin())
            .arg("query")
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .env_remove("DRIFTWATCH_CONFIG")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let sql = "SELECT service, COUNT(*) AS n FROM events GROUP BY service ORDER BY service";
    let (code, table, err) = run(&[sql]);
    assert_eq!(code, 0, "{err}");
    assert!(
        table.contains("| service") && table.contains("| code-assist"),
        "{table}"
    );
    let (_, csv, _) = run(&["--format", "csv", sql]);
    assert!(csv.starts_with("service,n\n"), "{csv}");
    let (_, json, _) = run(&["--format", "json", sql]);
    let first: Value = serde_json::from_str(json.lines().next().unwrap()).unwrap();
    assert!(first["n"].as_i64().unwrap() > 0, "{json}");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("by_service.parquet");
    let (code, _, err) = run(&[
        "--format",
        "parquet",
        "--output",
        out.to_str().unwrap(),
        sql,
    ]);
    assert_eq!(code, 0, "{err}");
    let rows: usize = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        std::fs::File::open(&out).unwrap(),
    )
    .unwrap()
    .build()
    .unwrap()
    .map(|b| b.unwrap().num_rows())
    .sum();
    assert_eq!(rows, csv.lines().count() - 1);
    // Refused and invalid statements exit 2 with the reason; so does a missing --output.
    let (code, _, err) = run(&["DROP TABLE events"]);
    assert_eq!(code, 2);
    assert!(err.contains("read-only"), "{err}");
    let (code, _, err) = run(&["SELECT nope FROM events"]);
    assert_eq!(code, 2);
    assert!(err.contains("nope"), "{err}");
    let (code, _, err) = run(&["--format", "parquet", sql]);
    assert_eq!(code, 2);
    assert!(err.contains("--output"), "{err}");
}
