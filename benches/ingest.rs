//! Decode + window update of realistic request events (what one core does per message).
//!
//! `cargo bench --bench ingest`. The events are `driftwatch produce` traffic: full contract
//! events (~750 bytes, judge scores on 30 %, feedback, OTel-style ids) over 7 series.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use driftwatch::config::{Config, ProduceConfig};
use driftwatch::decode::{Decoded, Decoder};
use driftwatch::traffic::synth::{Synth, SynthKind};
use driftwatch::window::series::SeriesRegistry;
use driftwatch::window::state::WindowState;

/// The daemon allocates a few small strings per event; mimalloc keeps that cheap.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const N: usize = 20_000;
const NOW: i64 = 1_790_000_000_000;

fn payloads() -> Vec<Vec<u8>> {
    let cfg = ProduceConfig {
        events: N as u64,
        malformed_ratio: 0.0,
        late_score_ratio: 0.0,
        ..Default::default()
    };
    let mut synth = Synth::new(&cfg, NOW);
    std::iter::from_fn(|| synth.next_message(NOW))
        .filter(|m| m.kind == SynthKind::Request)
        .filter_map(|m| m.payload)
        .collect()
}

fn state(config: &Config) -> WindowState {
    let labels = config.series.parsed_labels().unwrap();
    WindowState::new(
        &config.windows,
        SeriesRegistry::new(labels, config.series.max_active),
        &config.scores,
    )
}

fn bench(c: &mut Criterion) {
    let config = Config::default();
    let decoder = Decoder::new(config.limits.clone(), config.prices.clone());
    let payloads = payloads();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    eprintln!(
        "{} events, {} bytes on average",
        payloads.len(),
        bytes / payloads.len()
    );

    let mut g = c.benchmark_group("ingest");
    g.throughput(Throughput::Elements(payloads.len() as u64));
    g.sample_size(20);
    g.bench_function("decode", |b| {
        b.iter(|| {
            for p in &payloads {
                black_box(decoder.decode(Some(p), NOW).unwrap());
            }
        })
    });
    g.bench_function("decode_and_window_update", |b| {
        b.iter_batched(
            || state(&config),
            |mut w| {
                for (i, p) in payloads.iter().enumerate() {
                    if let Ok(Decoded::Request(ev)) = decoder.decode(Some(p), NOW) {
                        w.observe(&ev, 0, i as i64, NOW);
                    }
                    if i % 4096 == 0 {
                        black_box(w.advance(NOW));
                    }
                }
                w
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
