//! The Kafka source: a consumer-group member that stores offsets only when its owner hands
//! them back as committed.
//!
//! `enable.auto.offset.store=false`: librdkafka auto-commits only offsets this source
//! stored, and it stores one only after the owner committed what the offset carries. Before
//! a rebalance takes partitions away, [`Partitions::revoking`] drains and commits them inside
//! the rebalance callback and the returned offsets are committed synchronously, so the next
//! member starts exactly where this one stopped.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};

use super::{Offsets, PartitionId, Partitions, RawMessage};
use crate::metrics::Metrics;
use crate::section::{client_options, invalid, ConfigError};

/// Kafka client settings shared by `run` (consumer) and `produce` (producer).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list. Default `127.0.0.1:9092`.
    pub bootstrap_servers: String,
    /// Topics to consume. Default `["llm-logs"]`.
    pub topics: Vec<String>,
    /// Consumer group id. Default `driftwatch`.
    pub group_id: String,
    /// Where a group with no committed offset starts: `earliest` or `latest`. Default `earliest`.
    pub auto_offset_reset: String,
    /// How often librdkafka emits statistics (consumer lag). Default `5s`.
    #[serde(with = "humantime_serde")]
    pub statistics_interval: Duration,
    /// Raw librdkafka client options, applied last (SASL, SSL, timeouts, ...), e.g.
    /// `"security.protocol" = "SASL_SSL"`. See librdkafka's CONFIGURATION.md. Numbers and
    /// booleans are accepted and passed as their text.
    #[serde(deserialize_with = "client_options")]
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            bootstrap_servers: "127.0.0.1:9092".into(),
            topics: vec!["llm-logs".into()],
            group_id: "driftwatch".into(),
            auto_offset_reset: "earliest".into(),
            statistics_interval: Duration::from_secs(5),
            librdkafka: BTreeMap::new(),
        }
    }
}

/// librdkafka options driftwatch sets itself; a `librdkafka` map must not override them.
pub const MANAGED_OPTIONS: [&str; 3] =
    ["enable.auto.offset.store", "group.id", "bootstrap.servers"];

impl KafkaConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.bootstrap_servers.trim().is_empty() {
            return Err(invalid(
                "kafka.bootstrap_servers",
                "must not be empty; set it to host:port[,host:port]",
            ));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(invalid(
                "kafka.topics",
                "list at least one non-empty topic name",
            ));
        }
        if self.group_id.trim().is_empty() {
            return Err(invalid("kafka.group_id", "must not be empty"));
        }
        if !matches!(self.auto_offset_reset.as_str(), "earliest" | "latest") {
            return Err(invalid(
                "kafka.auto_offset_reset",
                format!("{:?} is not `earliest` or `latest`", self.auto_offset_reset),
            ));
        }
        check_managed(self.librdkafka.keys())
    }
}

/// Refuses librdkafka options that driftwatch manages (consumer and producer maps alike).
pub fn check_managed<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<(), ConfigError> {
    for key in keys {
        if MANAGED_OPTIONS.contains(&key.as_str()) {
            return Err(invalid(
                &format!("kafka.librdkafka.\"{key}\""),
                "is managed by driftwatch; use the dedicated field (kafka.group_id, kafka.bootstrap_servers) or remove it",
            ));
        }
    }
    Ok(())
}

/// The consumer's client config: our settings first, the user's `librdkafka` map last.
pub fn consumer_config(k: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &k.bootstrap_servers)
        .set("group.id", &k.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", &k.auto_offset_reset)
        .set(
            "statistics.interval.ms",
            k.statistics_interval.as_millis().to_string(),
        )
        .set("client.id", "driftwatch");
    for (key, v) in &k.librdkafka {
        c.set(key, v);
    }
    c
}

/// A Kafka consumer-group member feeding an owner.
pub struct KafkaSource {
    consumer: StreamConsumer<SourceContext>,
    metrics: Metrics,
    /// Interned topic names.
    topics: BTreeMap<String, Arc<str>>,
    /// Next offset to read per partition, for [`Self::caught_up`].
    consumed: Offsets,
}

impl KafkaSource {
    /// Joins the group and subscribes to `config.topics`; `owner` hears of every rebalance.
    pub fn subscribe(
        config: &KafkaConfig,
        owner: Arc<dyn Partitions>,
        metrics: Metrics,
    ) -> Result<Self, KafkaError> {
        let consumer: StreamConsumer<SourceContext> =
            consumer_config(config).create_with_context(SourceContext {
                owner,
                metrics: metrics.clone(),
            })?;
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics)?;
        tracing::info!(topics = ?topics, group = %config.group_id, "subscribed");
        Ok(Self {
            consumer,
            metrics,
            topics: BTreeMap::new(),
            consumed: Offsets::new(),
        })
    }

    /// Waits for the next message, then hands it and whatever else is already fetched (up to
    /// `max` more, without another trip through the caller's `select!`: one per message
    /// costs more than decoding it) to `accept`. Returns true when any `accept` did (a
    /// partition's buffers are full). Consume errors are counted and logged; the source
    /// carries on. Cancellation safe until the first message arrives; after that it does
    /// not await again.
    pub async fn recv_batch(
        &mut self,
        max: usize,
        mut accept: impl FnMut(RawMessage<'_>) -> bool,
    ) -> bool {
        let first = match self.consumer.recv().await {
            Ok(m) => m,
            Err(e) => {
                self.metrics.kafka_errors.inc();
                tracing::warn!(error = %e, "consume error");
                return false;
            }
        };
        let mut full = deliver(&mut self.topics, &mut self.consumed, &first, &mut accept);
        drop(first);
        for _ in 0..max {
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => {
                    full |= deliver(&mut self.topics, &mut self.consumed, &m, &mut accept)
                }
                Some(Err(e)) => {
                    self.metrics.kafka_errors.inc();
                    tracing::warn!(error = %e, "consume error");
                    break;
                }
                None => break,
            }
        }
        full
    }

    /// Stores offsets the owner committed; librdkafka commits them on its next auto-commit.
    pub fn store(&self, offsets: &Offsets) {
        if offsets.is_empty() {
            return;
        }
        let Ok(tpl) = to_tpl(offsets) else {
            return;
        };
        match self.consumer.store_offsets(&tpl) {
            Ok(()) => {
                self.metrics.offsets_stored.inc();
            }
            // A partition revoked meanwhile: its revoke commit already covered it.
            Err(e) => tracing::debug!(error = %e, "storing offsets"),
        }
    }

    /// Commits offsets to the group synchronously (shutdown).
    pub fn commit_sync(&self, offsets: &Offsets) -> Result<(), KafkaError> {
        if offsets.is_empty() {
            return Ok(());
        }
        self.consumer.commit(&to_tpl(offsets)?, CommitMode::Sync)
    }

    /// True when every assigned partition has been read up to its high watermark. Asks the
    /// broker (blocking, briefly); only used when the loop has gone quiet.
    pub fn caught_up(&self) -> bool {
        let consumer = &self.consumer;
        let Ok(assignment) = consumer.assignment() else {
            return false;
        };
        let parts = assignment.elements();
        if parts.is_empty() {
            return false;
        }
        // Where each partition will read next when nothing was consumed in this run.
        let positions = consumer.position().ok();
        let position = |t: &str, p: i32| -> Option<i64> {
            match positions.as_ref()?.find_partition(t, p)?.offset() {
                Offset::Offset(o) => Some(o),
                _ => None,
            }
        };
        tokio::task::block_in_place(|| {
            parts.iter().all(|e| {
                let Ok((low, high)) =
                    consumer.fetch_watermarks(e.topic(), e.partition(), Duration::from_secs(5))
                else {
                    return false;
                };
                let next = self
                    .consumed
                    .get(&(Arc::from(e.topic()), e.partition()))
                    .copied()
                    .or_else(|| position(e.topic(), e.partition()))
                    .unwrap_or(low);
                next >= high
            })
        })
    }
}

fn deliver(
    topics: &mut BTreeMap<String, Arc<str>>,
    consumed: &mut Offsets,
    m: &BorrowedMessage<'_>,
    accept: &mut impl FnMut(RawMessage<'_>) -> bool,
) -> bool {
    let topic = match topics.get(m.topic()) {
        Some(t) => t.clone(),
        None => {
            let t: Arc<str> = Arc::from(m.topic());
            topics.insert(m.topic().to_string(), t.clone());
            t
        }
    };
    consumed.insert((topic.clone(), m.partition()), m.offset() + 1);
    accept(RawMessage {
        topic: &topic,
        partition: m.partition(),
        offset: m.offset(),
        timestamp_ms: m.timestamp().to_millis(),
        payload: m.payload(),
    })
}

fn to_tpl(offsets: &Offsets) -> Result<TopicPartitionList, KafkaError> {
    let mut tpl = TopicPartitionList::new();
    for ((t, p), o) in offsets {
        tpl.add_partition_offset(t, *p, Offset::Offset(*o))?;
    }
    Ok(tpl)
}

fn partitions(tpl: &TopicPartitionList) -> Vec<PartitionId> {
    tpl.elements()
        .iter()
        .map(|e| (Arc::from(e.topic()), e.partition()))
        .collect()
}

struct SourceContext {
    owner: Arc<dyn Partitions>,
    metrics: Metrics,
}

impl ClientContext for SourceContext {
    fn stats(&self, stats: Statistics) {
        for (topic, t) in &stats.topics {
            for (p, part) in &t.partitions {
                if *p < 0 {
                    continue;
                }
                // Lag against the stored (durable) offset when there is one.
                let lag = if part.consumer_lag_stored >= 0 {
                    part.consumer_lag_stored
                } else {
                    part.consumer_lag
                };
                if lag >= 0 {
                    self.metrics.set_lag(topic, *p, lag);
                }
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics.kafka_errors.inc();
        tracing::warn!(%error, reason, "kafka client error");
    }
}

impl ConsumerContext for SourceContext {
    /// Before partitions go away: the owner commits them (files, checkpoint) and the offsets
    /// go to the group synchronously, so the next owner starts exactly where this one stopped.
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        let Rebalance::Revoke(tpl) = rebalance else {
            return;
        };
        let parts = partitions(tpl);
        let lost = consumer.assignment_lost();
        if lost {
            tracing::warn!(partitions = ?partition_numbers(tpl), "assignment lost; discarding uncommitted work");
        }
        let offsets = self.owner.revoking(&parts, lost);
        if !offsets.is_empty() {
            let committed = to_tpl(&offsets).and_then(|o| consumer.commit(&o, CommitMode::Sync));
            if let Err(e) = committed {
                tracing::warn!(error = %e, "offset commit on revoke failed; the checkpoint still guards against double counting");
            }
        }
        tracing::info!(partitions = ?partition_numbers(tpl), "partitions revoked and committed");
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.owner.assigned(&partitions(tpl));
                tracing::info!(partitions = ?partition_numbers(tpl), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

fn partition_numbers(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl super::Source for KafkaSource {
    type Error = KafkaError;

    fn recv_batch(
        &mut self,
        max: usize,
        accept: impl FnMut(RawMessage<'_>) -> bool,
    ) -> impl std::future::Future<Output = bool> {
        KafkaSource::recv_batch(self, max, accept)
    }

    fn store(&self, offsets: &Offsets) {
        KafkaSource::store(self, offsets)
    }

    fn commit_sync(&self, offsets: &Offsets) -> Result<(), KafkaError> {
        KafkaSource::commit_sync(self, offsets)
    }

    fn caught_up(&self) -> bool {
        KafkaSource::caught_up(self)
    }
}
