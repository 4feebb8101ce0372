//! `driftwatch produce`: publishes synthetic traffic to a Kafka topic.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use std::sync::atomic::{AtomicU64, Ordering};

use rdkafka::message::DeliveryResult;
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::ClientContext;

use crate::source::kafka::KafkaConfig;
use crate::traffic::synth::ProduceConfig;
use crate::traffic::synth::{Synth, SynthTally};

#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("kafka producer: {0}")]
    Kafka(#[from] KafkaError),
    #[error(
        "{failed} of {sent} messages were not acknowledged by the broker within the flush timeout"
    )]
    Undelivered { sent: u64, failed: u64 },
    #[error("writing {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// Counts deliveries the broker refused.
#[derive(Default)]
struct DeliveryCounter {
    failed: AtomicU64,
}

impl ClientContext for DeliveryCounter {}

impl ProducerContext for DeliveryCounter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            if self.failed.fetch_add(1, Ordering::Relaxed) == 0 {
                tracing::warn!(error = %e, "delivery failed");
            }
        }
    }
}

/// What was published.
#[derive(Debug, Clone, Default)]
pub struct ProduceReport {
    pub tally: SynthTally,
    pub elapsed: Duration,
}

/// The producer's client config: ours first, `kafka.librdkafka`, then `produce.librdkafka`.
pub fn producer_config(kafka: &KafkaConfig, produce: &ProduceConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("client.id", "driftwatch-produce")
        .set("message.max.bytes", "2000000")
        .set("queue.buffering.max.messages", "200000");
    for (k, v) in kafka.librdkafka.iter().chain(&produce.librdkafka) {
        c.set(k, v);
    }
    c
}

/// Publishes `config.produce.events` requests (plus late scores and malformed messages) to
/// the produce topic, paced at `produce.rate` when it is non-zero. Blocking; run it on a
/// blocking thread.
pub fn produce(kafka: &KafkaConfig, config: &ProduceConfig) -> Result<ProduceReport, ProduceError> {
    produce_paced(kafka, config, None, chrono::Utc::now().timestamp_millis())
}

/// How far a producer may run ahead of a consumer in the same process: `consumed()`
/// returns the messages consumed so far, and at most `max_ahead` more are in flight.
pub struct Backpressure<'a> {
    pub consumed: &'a (dyn Fn() -> u64 + Sync),
    pub max_ahead: u64,
}

/// [`produce`], optionally held back so it never runs more than `max_ahead` messages ahead
/// of an in-process consumer (the mock broker keeps only 5 MB per partition). In backfill
/// mode the simulated span ends at `end_ms`.
pub fn produce_paced(
    kafka: &KafkaConfig,
    config: &ProduceConfig,
    backpressure: Option<Backpressure<'_>>,
    end_ms: i64,
) -> Result<ProduceReport, ProduceError> {
    let producer: ThreadedProducer<DeliveryCounter> =
        producer_config(kafka, config).create_with_context(DeliveryCounter::default())?;
    let topic = config.topic_or(kafka).to_string();
    let started = Instant::now();
    let mut produce = config.clone();
    produce.events = config.events_to_send();
    let mut synth = Synth::new(&produce, end_ms);
    let mut tally = SynthTally::default();
    let rate = config.rate;
    let mut sent_requests = 0u64;
    while let Some(msg) = synth.next_message(chrono::Utc::now().timestamp_millis()) {
        if rate > 0.0 && msg.kind == crate::traffic::synth::SynthKind::Request {
            let due = started + Duration::from_secs_f64(sent_requests as f64 / rate);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            sent_requests += 1;
        }
        let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(&topic);
        if let Some(k) = msg.key.as_deref() {
            record = record.key(k);
        }
        if let Some(p) = msg.payload.as_deref() {
            record = record.payload(p);
        }
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    producer.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        tally.add(msg.kind);
        if let Some(bp) = &backpressure {
            while tally.messages().saturating_sub((bp.consumed)()) > bp.max_ahead {
                producer.poll(Duration::from_millis(1));
            }
        }
    }
    producer.flush(Duration::from_secs(60))?;
    let failed =
        producer.in_flight_count() as u64 + producer.context().failed.load(Ordering::Relaxed);
    if failed > 0 {
        return Err(ProduceError::Undelivered {
            sent: tally.messages(),
            failed,
        });
    }
    Ok(ProduceReport {
        tally,
        elapsed: started.elapsed(),
    })
}

/// The messages [`produce`] would publish, as JSON lines on `out` instead (for `replay`, and
/// for comparing with batch tools on the same data): one message per line. Messages that
/// cannot be one line — no payload, or a payload with a line break — are left out, so the
/// tally counts only what was written. In backfill mode the span ends at `end_ms`.
pub fn write_lines(
    config: &ProduceConfig,
    out: &mut dyn std::io::Write,
    path: &str,
    end_ms: i64,
) -> Result<ProduceReport, ProduceError> {
    let started = Instant::now();
    let mut produce = config.clone();
    produce.events = config.events_to_send();
    let mut synth = Synth::new(&produce, end_ms);
    let mut tally = SynthTally::default();
    let err = |source| ProduceError::Write {
        path: path.to_string(),
        source,
    };
    while let Some(msg) = synth.next_message(chrono::Utc::now().timestamp_millis()) {
        let Some(p) = msg.payload.as_deref() else {
            continue;
        };
        if p.is_empty() || p.contains(&b'\n') {
            continue;
        }
        out.write_all(p).map_err(err)?;
        out.write_all(b"\n").map_err(err)?;
        tally.add(msg.kind);
    }
    out.flush().map_err(err)?;
    Ok(ProduceReport {
        tally,
        elapsed: started.elapsed(),
    })
}
