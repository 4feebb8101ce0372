//! The measuring parts of `benches/compare.sh` (not a criterion bench):
//!
//! - `decode FILE`: the floor — every line of a JSON-lines file decoded by serde_json, once
//!   into `serde_json::Value` and once through driftwatch's decoder (serde_json into the
//!   typed event plus its field checks), nothing else;
//! - `consume BOOTSTRAP TOPIC COUNT`: a bare rdkafka consumer that counts the topic's
//!   messages until it has COUNT (`fetch.wait.max.ms=10`, like the daemon in the harness);
//! - `detector SERIES`: the detector's memory and evaluation cost with SERIES active series
//!   at 10 requests/s each, 1-minute windows, the shipped rules and their full lookback,
//!   fed as synthetic closed windows and slices (shapes built from `driftwatch produce`
//!   events), then `EVAL_MINUTES` (default 10) of event time evaluated minute by minute.
//!
//! - `alert-latency BOOTSTRAP TOPIC PORT SERIES LATENESS_MS`: produces real-time traffic of
//!   SERIES services to TOPIC (event time = the send time), each turning to errors in turn,
//!   1 s apart, while a webhook receiver on PORT notes when each alert's POST arrives; the
//!   latency is that arrival minus the moment the watermark passed the end of the first
//!   slice that crosses the threshold (known from the injected onset: that end plus the
//!   slice lateness, in event time = wall time here).
//!
//! Each prints `key=value` lines. Run through `cargo bench --profile release --bench compare
//! -- MODE ARGS`.

use std::io::BufRead;
use std::path::Path;
use std::time::{Duration, Instant};

use driftwatch::config::{Config, ProduceConfig};
use driftwatch::decode::{Decoded, Decoder};
use driftwatch::detect::detector::Detector;
use driftwatch::detect::history::Summary;
use driftwatch::traffic::synth::{Synth, SynthKind};
use driftwatch::window::sketch::{SliceSketch, WindowSketch};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MIN: i64 = 60_000;

fn main() {
    // `cargo bench` adds `--bench`.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("decode") if args.len() == 2 => decode(Path::new(&args[1])),
        Some("consume") if args.len() == 4 => consume(&args[1], &args[2], args[3].parse().unwrap()),
        Some("detector") if args.len() == 2 => detector(args[1].parse().unwrap()),
        Some("alert-latency") if args.len() == 6 => alert_latency(
            &args[1],
            &args[2],
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
            args[5].parse().unwrap(),
        ),
        _ => {
            eprintln!(
                "usage: compare decode FILE | consume BOOTSTRAP TOPIC COUNT | detector SERIES \
                 | alert-latency BOOTSTRAP TOPIC PORT SERIES LATENESS_MS"
            );
            std::process::exit(2);
        }
    }
}

fn decode(path: &Path) {
    let lines: Vec<Vec<u8>> = std::io::BufReader::new(std::fs::File::open(path).unwrap())
        .split(b'\n')
        .map(Result::unwrap)
        .collect();
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    println!("lines={} bytes={bytes}", lines.len());

    let t = Instant::now();
    let mut ok = 0u64;
    for l in &lines {
        ok += u64::from(serde_json::from_slice::<serde_json::Value>(l).is_ok());
    }
    let secs = t.elapsed().as_secs_f64();
    println!("value_secs={secs:.3} value_ok={ok}");

    let config = Config::default();
    let decoder = Decoder::new(config.limits.clone(), config.prices.clone());
    let t = Instant::now();
    let (mut requests, mut scores) = (0u64, 0u64);
    // Decoding at the events' own time: no "too far in the future" rejections.
    let now = i64::MAX / 4;
    for l in &lines {
        match decoder.decode(Some(l), now) {
            Ok(Decoded::Request(_)) => requests += 1,
            Ok(Decoded::Score(_)) => scores += 1,
            Err(_) => {}
        }
    }
    let secs = t.elapsed().as_secs_f64();
    println!("typed_secs={secs:.3} requests={requests} scores={scores}");
}

fn consume(bootstrap: &str, topic: &str, count: u64) {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::Message;
    let consumer: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("group.id", format!("bare-{}", std::process::id()).as_str())
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "10")
        .create()
        .unwrap();
    consumer.subscribe(&[topic]).unwrap();
    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let mut n = 0u64;
    let mut bytes = 0u64;
    while n < count {
        assert!(
            start.elapsed() < Duration::from_secs(1800),
            "only {n} of {count} messages in 30 minutes"
        );
        if let Some(m) = consumer.poll(Duration::from_millis(100)) {
            let m = m.unwrap();
            first.get_or_insert_with(Instant::now);
            bytes += m.payload().map_or(0, |p| p.len() as u64);
            n += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let from_first = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    println!("messages={n} bytes={bytes} secs={secs:.3} secs_from_first={from_first:.3}");
}

/// 16 window shapes of 600 `driftwatch produce` requests each, with their six 10-s slices.
fn shapes(metrics: &std::collections::BTreeSet<usize>) -> Vec<(Summary, Vec<SliceSketch>)> {
    let cfg = ProduceConfig {
        events: 16 * 600 * 2,
        malformed_ratio: 0.0,
        late_score_ratio: 0.0,
        ..Default::default()
    };
    let config = Config::default();
    let decoder = Decoder::new(config.limits.clone(), config.prices.clone());
    let now = 1_790_000_000_000;
    let mut synth = Synth::new(&cfg, now);
    let events: Vec<_> = std::iter::from_fn(|| synth.next_message(now))
        .filter(|m| m.kind == SynthKind::Request)
        .filter_map(
            |m| match decoder.decode(m.payload.as_deref(), i64::MAX / 4) {
                Ok(Decoded::Request(e)) => Some(e),
                _ => None,
            },
        )
        .collect();
    events
        .chunks(600)
        .take(16)
        .map(|chunk| {
            let mut w = WindowSketch::default();
            for (k, ev) in chunk.iter().enumerate() {
                w.observe(ev, 0, k as i64);
                w.add_to_slice(k / 100, ev);
            }
            (Summary::from_sketch(&w, metrics), w.slices.clone())
        })
        .collect()
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kb * 1024
}

/// Minutes of event time the detector mode evaluates after feeding the history
/// (`EVAL_MINUTES`, default 10).
fn eval_minutes() -> i64 {
    std::env::var("EVAL_MINUTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10)
}

fn detector(n: usize) {
    let config = Config::default();
    let rules = driftwatch::daemon::detection::load_rules(&config, Path::new("rules")).unwrap();
    let labels: Vec<&'static str> = config
        .series
        .parsed_labels()
        .unwrap()
        .iter()
        .map(|l| l.as_str())
        .collect();
    let settings = config.detection.settings(&config.windows);
    let mut det = Detector::new(rules.clone(), labels.clone(), settings);
    let shapes = shapes(det.metrics());
    let keys: Vec<Vec<String>> = (0..n)
        .map(|s| {
            vec![
                format!("svc-{}", s % 50),
                format!("model-{}", s / 50 % 20),
                format!("prompt-{}", s / 1000 % 10),
                format!("v{}", s / 10_000),
                if s % 7 == 0 { "canary" } else { "stable" }.to_string(),
                String::new(),
            ]
        })
        .collect();
    let rss_start = rss_bytes();
    // The longest lookback of the shipped rules, ending at `now`; the last `EVAL_MINUTES` are
    // evaluated below.
    let lookback = rules.lookback_ms() + MIN;
    let t0 = 1_794_268_800_000i64;
    let now = t0 + lookback.div_euclid(MIN) * MIN;
    let started = Instant::now();
    let add_minute = |det: &mut Detector, start: i64| {
        let w = (start / MIN) as usize;
        for (s, key) in keys.iter().enumerate() {
            let (summary, slices) = &shapes[(s + w) % shapes.len()];
            det.observe_summary(key, start, summary.clone());
            for (k, slice) in slices.iter().enumerate() {
                det.observe_slice(key, start + k as i64 * 10_000, 0, slice);
            }
        }
    };
    // The last EVAL_MINUTES minutes are evaluated (a minute of event time each).
    let eval_minutes = eval_minutes();
    let eval_from = now - eval_minutes * MIN;
    // Hours older than the fine history go in as one merged summary each: the hourly
    // roll-up they would become, without minutes of feeding (exact: summaries merge
    // exactly). `maintain` first, so the history rolls them up on arrival.
    det.maintain(eval_from);
    let fine_from = det.history().rolled_floor();
    let hours: Vec<Summary> = (0..shapes.len())
        .map(|k| {
            let mut h = Summary::default();
            for m in 0..60 {
                h.merge(&shapes[(k + m) % shapes.len()].0);
            }
            h
        })
        .collect();
    let mut t = t0.div_euclid(60 * MIN) * 60 * MIN;
    while t < fine_from {
        let w = (t / MIN) as usize;
        for (s, key) in keys.iter().enumerate() {
            det.observe_summary(key, t, hours[(s + w) % hours.len()].clone());
        }
        t += 60 * MIN;
    }
    while t < eval_from {
        add_minute(&mut det, t);
        t += MIN;
        if (t - t0) % (60 * MIN) == 0 {
            det.maintain(t);
        }
    }
    det.skip_until(eval_from);
    let fed = started.elapsed().as_secs_f64();
    let mut eval = Duration::ZERO;
    let mut transitions = 0usize;
    while t < now {
        add_minute(&mut det, t);
        t += MIN;
        let e = Instant::now();
        transitions += det.evaluate(Some(t), Some(t)).len();
        eval += e.elapsed();
    }
    let rss = rss_bytes() - rss_start;
    let history = det.history().approx_bytes();
    let per_minute = eval.as_secs_f64() / eval_minutes as f64;
    println!(
        "series={n} history_series={} lookback_h={:.2} feed_secs={fed:.1}",
        det.history().series_count(),
        lookback as f64 / 3.6e6
    );
    println!(
        "rss_bytes={rss} bytes_per_series={} history_bytes={history} history_bytes_per_series={}",
        rss / n as u64,
        history / n
    );
    println!(
        "eval_secs_per_event_minute={per_minute:.4} core_fraction={:.4} evaluations={} transitions={transitions}",
        per_minute / 60.0,
        det.evaluations()
    );
}

fn wall_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Reads one HTTP request (headers, then Content-Length bytes) and answers 200.
fn receive(mut conn: std::net::TcpStream) -> Option<Vec<u8>> {
    use std::io::{Read, Write};
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = conn.read(&mut chunk).ok()?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        .ok()?;
    Some(buf[head_end..].to_vec())
}

fn alert_latency(bootstrap: &str, topic: &str, port: u16, series: usize, lateness_ms: i64) {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    use std::collections::BTreeMap;
    use std::sync::{Arc, Mutex};

    // service → (arrival of its first firing, the window end the alert carries)
    let seen: Arc<Mutex<BTreeMap<String, (i64, i64)>>> = Arc::default();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    {
        let seen = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let seen = seen.clone();
                std::thread::spawn(move || {
                    let Some(body) = receive(conn) else { return };
                    let at = wall_ms();
                    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) else {
                        return;
                    };
                    for a in v["alerts"].as_array().into_iter().flatten() {
                        if a["status"] != "firing" {
                            continue;
                        }
                        let end = a["window_end"]
                            .as_str()
                            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                            .map(|t| t.timestamp_millis());
                        if let (Some(svc), Some(end)) = (a["labels"]["service"].as_str(), end) {
                            seen.lock()
                                .unwrap()
                                .entry(svc.to_string())
                                .or_insert((at, end));
                        }
                    }
                });
            }
        });
    }
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("broker.address.family", "v4")
        .set("linger.ms", "0")
        .create()
        .unwrap();
    let start = wall_ms();
    let warm_ms = 40_000;
    let spacing_ms = 1_000;
    let end = start + warm_ms + series as i64 * spacing_ms + 30_000;
    let per_series_rate = 5.0;
    let mut sent = 0u64;
    let mut next = Instant::now();
    let step = Duration::from_secs_f64(1.0 / (per_series_rate * series as f64));
    let mut i = 0usize;
    while wall_ms() < end {
        let now = wall_ms();
        let s = i % series;
        i += 1;
        let erroring = now >= start + warm_ms + s as i64 * spacing_ms;
        let body = format!(
            r#"{{"event_id":"lat-{i}","timestamp":{now},"service":"svc-{s:03}","request_model":"m","latency_ms":{},"status":"{}"}}"#,
            300 + (i % 200),
            if erroring { "error" } else { "ok" }
        );
        let key = format!("svc-{s:03}");
        loop {
            match producer.send(BaseRecord::to(topic).key(&key).payload(&body)) {
                Ok(()) => break,
                Err((_, _)) => {
                    producer.poll(Duration::from_millis(5));
                }
            }
        }
        producer.poll(Duration::ZERO);
        sent += 1;
        next += step;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    producer.flush(Duration::from_secs(30)).unwrap();
    // Stragglers: a last slice and its delivery.
    std::thread::sleep(Duration::from_secs(15));
    let seen = seen.lock().unwrap();
    // Series s fails from `onset`, 5 errors a second: the first 10 s slice whose 30 s range
    // holds the rule's 5 errors ends at or after onset + 1 s. Latency counts from the
    // watermark passing that slice's end (its end + the slice lateness), so a tick that
    // came late (a stalled fetch, a slow commit) counts against driftwatch.
    let slice = 10_000;
    let mut late_ticks = 0;
    let mut lat: Vec<i64> = seen
        .iter()
        .filter_map(|(svc, (at, end))| {
            let s: i64 = svc.strip_prefix("svc-")?.parse().ok()?;
            let onset = start + warm_ms + s * spacing_ms;
            let crossing = (onset + 1_000 + slice - 1).div_euclid(slice) * slice;
            if *end > crossing {
                late_ticks += 1;
            }
            Some(at - (crossing + lateness_ms))
        })
        .collect();
    lat.sort();
    let q = |p: f64| -> f64 {
        if lat.is_empty() {
            return f64::NAN;
        }
        let i = ((p * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1;
        lat[i] as f64 / 1000.0
    };
    println!(
        "events={sent} alerts={} fired_on_a_later_slice={late_ticks} p50_s={:.3} p99_s={:.3} max_s={:.3} min_s={:.3}",
        lat.len(),
        q(0.5),
        q(0.99),
        q(1.0),
        lat.first().map_or(f64::NAN, |v| *v as f64 / 1000.0)
    );
}
