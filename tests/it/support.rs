//! Helpers shared by the integration tests: reading tables back, running Python, a real
//! Kafka-compatible broker (tansu), plain HTTP.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_driftwatch")
}

/// `driftwatch compact --after 0s` over `data` (every closed hour rolled up now); its
/// stdout. Panics with its output when it fails.
pub fn compact_now(data: &Path) -> String {
    let out = std::process::Command::new(bin())
        .args(["compact", "--after", "0s", "--data-dir"])
        .arg(data)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The default series labels (`series.labels`), in key order.
pub fn default_labels() -> Vec<&'static str> {
    driftwatch::config::Config::default()
        .series
        .parsed_labels()
        .unwrap()
        .iter()
        .map(|l| l.as_str())
        .collect()
}

/// A committer writing Parquet into `data` as `driftwatch run` does (one partition, the
/// default series labels).
pub fn parquet_committer(data: &Path) -> driftwatch::storage::commit::Committer {
    let sink = driftwatch::storage::sink::ParquetSink::new(data, 1, default_labels()).unwrap();
    driftwatch::storage::commit::Committer::new(sink).unwrap()
}

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every `*.parquet` file under `dir`, recursively, sorted.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(parquet_files(&p));
        } else if p.extension().is_some_and(|x| x == "parquet") {
            out.push(p);
        }
    }
    out.sort();
    out
}

/// All rows of a table (`events`, `windows`, `quarantine`) under a data directory.
pub fn read_table(data_dir: &Path, table: &str) -> Vec<RecordBatch> {
    parquet_files(&data_dir.join(table))
        .iter()
        .flat_map(|f| {
            let file = std::fs::File::open(f).unwrap();
            ParquetRecordBatchReaderBuilder::try_new(file)
                .unwrap()
                .build()
                .unwrap()
                .map(|b| b.unwrap())
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn strings(batches: &[RecordBatch], col: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(b.schema().index_of(col).unwrap()).clone();
            let a = a.as_string::<i32>().clone();
            (0..a.len())
                .map(move |i| a.is_valid(i).then(|| a.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn i64s(batches: &[RecordBatch], col: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(b.schema().index_of(col).unwrap()).clone();
            a.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect()
}

pub fn i32s(batches: &[RecordBatch], col: &str) -> Vec<i32> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(b.schema().index_of(col).unwrap()).clone();
            a.as_primitive::<arrow::datatypes::Int32Type>()
                .values()
                .to_vec()
        })
        .collect()
}

pub fn bools(batches: &[RecordBatch], col: &str) -> Vec<bool> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b.column(b.schema().index_of(col).unwrap()).clone();
            let a = a.as_boolean().clone();
            (0..a.len()).map(move |i| a.value(i)).collect::<Vec<_>>()
        })
        .collect()
}

/// Runs `python3 <script> <args>` from the repository and returns its stdout.
/// The Python packages come from `.ci/run` (`pip install -r tests/requirements.txt`).
pub fn python(script: &str, args: &[&str]) -> String {
    let out = Command::new("python3")
        .arg(repo_root().join(script))
        .args(args)
        .output()
        .expect("python3 is needed by this test (see .ci/run)");
    assert!(
        out.status.success(),
        "{script} failed (did you `pip install -r tests/requirements.txt`?):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A GET over plain HTTP/1.1; returns (status, body).
pub fn http_get(addr: &str, path: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    read_response(s)
}

/// (status, body) of a `Connection: close` response.
fn read_response(mut s: TcpStream) -> std::io::Result<(u16, String)> {
    let mut buf = String::new();
    s.read_to_string(&mut buf)?;
    let status = buf
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((status, body))
}

/// Every value of a timestamp column.
/// A nullable timestamp column.
pub fn nullable_timestamps(batches: &[RecordBatch], col: &str) -> Vec<Option<i64>> {
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column_by_name(col)
                .unwrap()
                .as_any()
                .downcast_ref::<arrow::array::TimestampMillisecondArray>()
                .unwrap()
                .clone();
            (0..a.len())
                .map(move |i| a.is_valid(i).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

pub fn timestamps(batches: &[RecordBatch], col: &str) -> Vec<i64> {
    nullable_timestamps(batches, col)
        .into_iter()
        .map(|t| t.unwrap_or_default())
        .collect()
}

/// A request with a body over plain HTTP/1.1; returns (status, body).
pub fn http_send(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let (status, bytes) = http_send_bytes(addr, method, path, headers, body)?;
    Ok((status, String::from_utf8_lossy(&bytes).to_string()))
}

/// [`http_send`] with a binary response body.
pub fn http_send_bytes(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, Vec<u8>)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(s, "{head}\r\n{body}")?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf)?;
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(buf.len());
    let head = String::from_utf8_lossy(&buf[..split]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((status, buf[(split + 4).min(buf.len())..].to_vec()))
}

/// Polls `f` until it returns `Some`, or panics after `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tansu broker (real Kafka protocol, in-memory storage) on a free loopback port,
/// stopped on drop. Install: `cargo install tansu --version 0.6.0 --locked --features dynostore`.
pub struct Tansu {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Tansu {
    pub fn start() -> Tansu {
        let tansu = std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".into());
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&tansu)
            .args([
                "broker",
                "--storage-engine",
                "memory://tansu/",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{tansu}` ({e}); the Kafka end-to-end tests need it: \
                     cargo install tansu --version 0.6.0 --locked --features dynostore"
                )
            });
        let t = Tansu {
            child,
            port,
            _dir: dir,
        };
        wait_for("tansu to listen", Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).ok()
        });
        t
    }

    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let tansu = std::env::var("TANSU_BIN").unwrap_or_else(|_| "tansu".into());
        let out = Command::new(tansu)
            .args([
                "topic",
                "create",
                name,
                "--partitions",
                &partitions.to_string(),
                "--broker",
                &format!("tcp://127.0.0.1:{}", self.port),
            ])
            .current_dir(self._dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "tansu topic create: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The event ids `driftwatch produce` generates for `n` requests with `seed`.
pub fn expected_event_ids(seed: u64, n: u64) -> std::collections::BTreeSet<String> {
    (0..n).map(|i| format!("evt-{seed:x}-{i:09}")).collect()
}

/// A `driftwatch run` child process with its HTTP address.
pub struct Daemon {
    pub child: Child,
    pub http: String,
}

impl Daemon {
    pub fn start(config: &Path, http: &str, env: &[(&str, &str)]) -> Daemon {
        // The daemon's log goes next to its config, for a failing test to be read.
        let log =
            std::fs::File::create(config.with_extension(format!("{}.log", free_port()))).unwrap();
        let child = Command::new(bin())
            .args(["run", "--config", config.to_str().unwrap()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon {
            child,
            http: http.to_string(),
        }
    }

    pub fn metric(&self, name: &str) -> Option<f64> {
        let (_, body) = http_get(&self.http, "/metrics").ok()?;
        metric_value(&body, name)
    }

    pub fn consumed(&self) -> u64 {
        self.metric("driftwatch_messages_consumed_total")
            .unwrap_or(0.0) as u64
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(ok.success());
    }

    /// Whether the process has ended.
    pub fn exited(&mut self) -> bool {
        self.child.try_wait().unwrap().is_some()
    }

    /// Waits for the process to end and returns its status.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        wait_for("the daemon to exit", timeout, || {
            self.child.try_wait().unwrap()
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A sample's value in Prometheus text.
pub fn metric_value(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Runs `driftwatch produce` and returns the number of messages it published.
pub fn produce(config: &Path, args: &[&str]) -> u64 {
    let out = Command::new(bin())
        .args(["produce", "--config", config.to_str().unwrap()])
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "produce: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A config for `run`/`produce` against a tansu broker.
pub fn tansu_config(
    dir: &Path,
    bootstrap: &str,
    group: &str,
    data: &Path,
    http: &str,
    extra: &str,
) -> PathBuf {
    let path = dir.join(format!("{group}-{}.toml", free_port()));
    std::fs::write(
        &path,
        format!(
            r#"
[kafka]
bootstrap_servers = "{bootstrap}"
topics = ["llm-logs"]
group_id = "{group}"
statistics_interval = "1s"
[kafka.librdkafka]
"broker.address.family" = "v4"
"fetch.wait.max.ms" = 50
# a killed member is noticed in seconds, not the default 45 s
"session.timeout.ms" = 6000
"heartbeat.interval.ms" = 1000
[storage]
data_dir = "{}"
flush_interval = "300ms"
[http]
listen = "{http}"
{extra}
"#,
            data.display()
        ),
    )
    .unwrap();
    path
}

/// The `windows` table of a run, for comparing two runs over the same messages: every
/// window row exactly but for what late scores add (a late score lands in the window's own
/// row while it is open and in a correction row after, and when a window closes depends on
/// how the consumer interleaved the partitions, since the watermark follows the slowest,
/// and on the wall clock once partitions go idle), and those late-score columns summed per
/// series × window × partition over own and correction rows, by DuckDB.
pub fn windows_content(data: &Path) -> (Vec<String>, String) {
    let late_columns = [
        "late_scores",
        "judge_n",
        "judge_mean",
        "judge_m2",
        "judge_label_counts",
        "judge_names_dropped",
        "feedback_negative",
        "feedback_neutral",
        "feedback_positive",
        "kafka_offsets",
        "slice_sketches",
        "correction_after",
        "correction_after_slice",
    ];
    let own: Vec<String> = table_rows(data, "windows", &[])
        .into_iter()
        .filter(|r| r.contains("correction_after= "))
        .collect();
    let own_rows = own.len();
    let own: Vec<String> = table_rows(data, "windows", &late_columns)
        .into_iter()
        .filter(|r| !r.contains(" event_count=0 "))
        .collect();
    assert_eq!(own.len(), own_rows, "only correction rows count no request");
    // Slice-only correction rows (a late score whose window was still open but whose slice
    // the detector already had) carry nothing these sums read, and whether one is written
    // depends on how the partitions interleaved: they are left out.
    let sql = "SELECT service, request_model, prompt_id, prompt_version, deployment, variant, \
        window_start, kafka_partition, sum(late_scores), sum(list_sum(map_values(judge_n))), \
        round(sum(list_sum(list_transform(map_keys(judge_n), lambda k: judge_n[k] * judge_mean[k]))), 6), \
        sum(feedback_negative), sum(feedback_neutral), sum(feedback_positive) \
        FROM read_parquet('DATA/windows/**/*.parquet', hive_partitioning = true) \
        WHERE correction_after IS NULL OR coalesce(late_scores, 0) > 0 \
            OR coalesce(cardinality(judge_n), 0) > 0 \
            OR coalesce(feedback_negative + feedback_neutral + feedback_positive, 0) > 0 \
        GROUP BY ALL ORDER BY ALL";
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import duckdb,sys; [print(r) for r in duckdb.sql(sys.argv[1].replace('DATA', sys.argv[2])).fetchall()]",
            sql,
        ])
        .arg(data)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (own, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `row` with every decimal number rounded to 10 significant digits: p-values and moments
/// merged in another order (a baseline rebuilt from Parquet after a restart) differ in the
/// last bits, and nothing a user reads changes with them.
pub fn rounded(row: &str) -> String {
    let mut out = String::with_capacity(row.len());
    let mut num = String::new();
    let flush = |num: &mut String, out: &mut String| {
        match num.parse::<f64>() {
            Ok(v) if num.contains('.') => out.push_str(&format!("{v:.9e}")),
            _ => out.push_str(num),
        }
        num.clear();
    };
    for c in row.chars() {
        if c.is_ascii_digit() || c == '.' || ((c == 'e' || c == '-') && !num.is_empty()) {
            num.push(c);
        } else {
            flush(&mut num, &mut out);
            out.push(c);
        }
    }
    flush(&mut num, &mut out);
    out
}

/// Every row of a table as text, sorted: for comparing two runs' outputs exactly.
pub fn table_rows(data: &Path, table: &str, skip_columns: &[&str]) -> Vec<String> {
    use arrow::util::display::{ArrayFormatter, FormatOptions};
    let mut rows = Vec::new();
    for b in read_table(data, table) {
        let schema = b.schema();
        let opts = FormatOptions::default();
        let owned: Vec<(String, arrow::array::ArrayRef)> = schema
            .fields()
            .iter()
            .enumerate()
            .filter(|(_, f)| !skip_columns.contains(&f.name().as_str()))
            .map(|(i, f)| {
                // Without chrono-tz arrow cannot print a named zone; print the UTC instant.
                let col = match f.data_type() {
                    arrow::datatypes::DataType::Timestamp(unit, Some(_)) => arrow::compute::cast(
                        b.column(i),
                        &arrow::datatypes::DataType::Timestamp(*unit, None),
                    )
                    .unwrap(),
                    _ => b.column(i).clone(),
                };
                (f.name().clone(), col)
            })
            .collect();
        let cols: Vec<(&String, ArrayFormatter)> = owned
            .iter()
            .map(|(n, col)| (n, ArrayFormatter::try_new(col.as_ref(), &opts).unwrap()))
            .collect();
        for r in 0..b.num_rows() {
            rows.push(
                cols.iter()
                    .map(|(n, f)| format!("{n}={}", f.value(r)))
                    .collect::<Vec<_>>()
                    .join(" "),
            );
        }
    }
    rows.sort();
    rows
}
