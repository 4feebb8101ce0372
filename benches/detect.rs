//! Cost of detection: one minute of event time of each default rule (its steps in that
//! minute — six for a rule stepping every 10 s — with the trailing baseline reused between
//! steps as the detector does) over N series with a day of history (2 h at window
//! resolution, the rest rolled up into hours, 10 minutes of fast slices), and the history's
//! size.
//!
//! `cargo bench --profile release --bench detect`. Windows carry 600 requests each (10 requests/s per series)
//! with realistic latency spreads; 16 distinct window shapes are reused across series and
//! minutes, so building the history is quick while bucket counts stay realistic.

use std::hint::black_box;
use std::path::Path;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use driftwatch::config::Config;
use driftwatch::detect::evaluate::{evaluate_cached, BaselineCache, EvalContext};
use driftwatch::detect::history::{History, Summary};
use driftwatch::event::{Deployment, RequestEvent, Status};
use driftwatch::window::sketch::WindowSketch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const MIN: i64 = 60_000;
const T0: i64 = 1_794_268_800_000;

fn shapes(metrics: &std::collections::BTreeSet<usize>) -> Vec<Summary> {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    (0..16)
        .map(|i| {
            let mut w = WindowSketch::default();
            let median = 600.0 + 50.0 * i as f64;
            for k in 0..600 {
                let lat = LogNormal::new(f64::ln(median), 0.45)
                    .unwrap()
                    .sample(&mut rng);
                let error = rng.random_bool(0.004);
                let ev = RequestEvent {
                    latency_ms: lat,
                    status: if error { Status::Error } else { Status::Ok },
                    judge_scores: vec![(
                        "faithfulness".into(),
                        Normal::new(0.8, 0.12).unwrap().sample(&mut rng),
                    )],
                    deployment: Some(Deployment::Stable),
                    ..Default::default()
                };
                w.observe(&ev, 0, k);
                if k % 10 == 0 {
                    w.add_to_slice((k / 100) as usize, &ev);
                }
            }
            Summary::from_sketch(&w, metrics)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let config = Config::default();
    let rules = driftwatch::daemon::detection::load_rules(&config, Path::new("rules")).unwrap();
    let labels: Vec<&'static str> = config
        .series
        .parsed_labels()
        .unwrap()
        .iter()
        .map(|l| l.as_str())
        .collect();
    let shapes = shapes(&rules.metrics());
    let now = T0 + 24 * 60 * MIN;
    let mut group = c.benchmark_group("detect_minute");
    group.sample_size(10);
    for n in [100usize, 1000, 4000] {
        let mut h = History::new(MIN, 2 * 60 * MIN, rules.lookback_ms() + MIN, 10 * MIN);
        for w in 0..(24 * 60) {
            let start = T0 + w * MIN;
            for s in 0..n {
                let key = vec![
                    format!("svc-{}", s % 10),
                    format!("model-{}", s / 10 % 10),
                    format!("v{}", s / 100),
                    if s % 7 == 0 { "canary" } else { "stable" }.to_string(),
                ];
                h.add_window(&key, start, shapes[(s + w as usize) % shapes.len()].clone());
                // Fast slices for the last 10 minutes (a window's shape stands in for each
                // slice: six times the traffic, the same buckets).
                if w >= 24 * 60 - 10 {
                    for k in 0..6 {
                        let shape = shapes[(s + w as usize + k as usize) % shapes.len()].clone();
                        h.add_slice(&key, start + k * 10_000, 0, shape);
                    }
                }
            }
            h.maintain(start + MIN);
        }
        eprintln!(
            "{n} series: history ≈ {:.1} MB",
            h.approx_bytes() as f64 / 1e6
        );
        for rule in &rules.rules {
            let steps = (MIN / rule.every_ms).max(1);
            group.bench_with_input(BenchmarkId::new(rule.name.clone(), n), &n, |b, _| {
                b.iter(|| {
                    let mut cache = BaselineCache::default();
                    for k in 0..steps {
                        let t = now - MIN + (k + 1) * rule.every_ms;
                        black_box(evaluate_cached(
                            rule,
                            &labels,
                            &h,
                            t,
                            &mut cache,
                            EvalContext::default(),
                        ));
                    }
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
