//! Registry, budget, cost, context-window and prompt-cache scenarios through the daemon's
//! own pipeline: request-log lines of the event contract → the decoder (costs priced from
//! the model registry at event time, context use from its context windows) → per-partition
//! windows → the detector with every shipped rule of `rules/` and `[budgets]` → alert
//! transitions, exactly as `driftwatch run` wires them (`Pipeline`, `detection::resume`).
//! Only the broker is left out — `registry.rs` runs registry pricing through tansu — so
//! event time is simulated and days run in seconds. Fixed seeds; each test prints its
//! detection delay and bounds it.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal};

use driftwatch::config::Config;
use driftwatch::daemon::pipeline::Pipeline;
use driftwatch::detect::alerts::{AlertState, Transition};
use driftwatch::event::{Deployment, RequestEvent, Status};
use driftwatch::source::RawMessage;
use driftwatch::traffic::scenario::{to_json_line, Generator, Traffic, T0};

const MIN: i64 = 60_000;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;

/// The registry of these scenarios. T0 is 2026-11-10, so gpt-4o's deprecation is 20 days
/// ahead; gpt-4o-mini and claude-sonnet-4 have no date.
const REGISTRY: &str = r#"schema_version: 1
models:
  - id: gpt-4o
    provider: openai
    aliases: [gpt-4o-2024-08-06]
    context: { max_input_tokens: 128000, max_output_tokens: 16384 }
    deprecation: { date: 2026-11-30, successor: gpt-4.1 }
    fallback: gpt-4.1
    prices:
      - from: 2024-08-06
        per_million: { input: 2.50, output: 10.00, cached_input: 1.25 }
  - id: gpt-4.1
    provider: openai
    context: { max_input_tokens: 1000000, max_output_tokens: 32768 }
    prices:
      - from: 2025-04-14
        per_million: { input: 2.00, output: 8.00, cached_input: 0.50 }
  - id: gpt-4o-mini
    provider: openai
    context: { max_input_tokens: 128000, max_output_tokens: 16384 }
    prices:
      - from: 2024-07-18
        per_million: { input: 0.15, output: 0.60, cached_input: 0.075 }
  - id: claude-sonnet-4
    provider: anthropic
    context: { max_input_tokens: 200000, max_output_tokens: 64000 }
    prices:
      - from: 2025-05-22
        per_million: { input: 3.00, output: 15.00, cached_input: 0.30, cache_write: 3.75 }
  - id: llama-3.1-70b
    provider: self-hosted
    context: { max_input_tokens: 128000, max_output_tokens: 8192 }
    deprecation: { date: 2027-06-30, successor: gpt-4.1 }
    prices:
      - from: 2024-07-23
        per_million: { input: 0.88, output: 0.88 }
"#;

/// How one request looks beyond what [`Generator`] draws (latency, errors, judge scores):
/// its tokens, cache use and finish reason at event time `t`.
pub(crate) type Shape<'a> = &'a dyn Fn(&mut RequestEvent, i64, &mut ChaCha8Rng);

pub(crate) struct PipeSim {
    pipeline: Pipeline,
    generator: Generator,
    rng: ChaCha8Rng,
    topic: Arc<str>,
    offset: i64,
    now: i64,
    pub(crate) transitions: Vec<Transition>,
    /// Decoded cost of every request per service: (event time, USD).
    costs: BTreeMap<String, Vec<(i64, f64)>>,
    /// Requests the decoder could not price.
    unpriced: BTreeMap<String, u64>,
    slice_lateness_ms: i64,
    /// Writes every commit job into the data directory, as `driftwatch run` does.
    committer: Option<driftwatch::storage::commit::Committer>,
    /// Rollback commands of failed analysis runs, as the alert commits carried them.
    pub(crate) rollbacks: Vec<driftwatch::detect::analysis::RollbackEvent>,
    /// A second request made from each generated one (a shadow mirroring the primary).
    pub(crate) mirror: Option<Box<Mirror>>,
    /// Messages of their own made from each generated request (late judge scores and
    /// feedback): (delay in ms of event time, JSON line). It may change the request.
    pub(crate) late: Option<Box<Late>>,
    /// Late messages by the event time they are due.
    queue: BTreeMap<i64, Vec<String>>,
    _dir: tempfile::TempDir,
}

pub(crate) type Late = dyn Fn(&mut RequestEvent, &mut ChaCha8Rng) -> Vec<(i64, String)>;

pub(crate) type Mirror = dyn Fn(&RequestEvent, &mut ChaCha8Rng) -> Option<RequestEvent>;

impl PipeSim {
    pub(crate) fn new(seed: u64, budgets: &[(&str, f64)]) -> Self {
        Self::with_data(seed, budgets, None, T0, "llm-logs", &|_| {})
    }

    /// A pipeline (not writing) on the default config changed by `edit`.
    pub(crate) fn configured(seed: u64, edit: &dyn Fn(&mut Config)) -> Self {
        Self::with_data(seed, &[], None, T0, "llm-logs", edit)
    }

    pub(crate) fn detector(&self) -> &driftwatch::detect::detector::Detector {
        self.pipeline.detector().expect("the detector runs")
    }

    /// A pipeline whose commits are written to `data` (Parquet, as `driftwatch run` writes
    /// them) and whose detector resumes from what `data` already holds; event time starts
    /// at `start`; messages come from `topic` (one per run, so runs never share offsets).
    pub(crate) fn writing(seed: u64, data: &Path, start: i64, topic: &str) -> Self {
        Self::with_data(seed, &[], Some(data), start, topic, &|_| {})
    }

    /// [`Self::writing`] on the default config changed by `edit`.
    pub(crate) fn writing_with(
        seed: u64,
        data: &Path,
        start: i64,
        topic: &str,
        edit: &dyn Fn(&mut Config),
    ) -> Self {
        Self::with_data(seed, &[], Some(data), start, topic, edit)
    }

    fn with_data(
        seed: u64,
        budgets: &[(&str, f64)],
        data: Option<&Path>,
        start: i64,
        topic: &str,
        edit: &dyn Fn(&mut Config),
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let models = dir.path().join("models.yaml");
        std::fs::write(&models, REGISTRY).unwrap();
        let mut config = Config::default();
        config.registry.file = Some(models);
        config.storage.data_dir = data.map_or_else(|| dir.path().join("data"), Path::to_path_buf);
        std::fs::create_dir_all(&config.storage.data_dir).unwrap();
        let committer = data.map(crate::support::parquet_committer);
        config.budgets = budgets.iter().map(|(s, u)| (s.to_string(), *u)).collect();
        edit(&mut config);
        config.validate().expect("the edited config is valid");
        let (metrics, _) = driftwatch::metrics::Metrics::new();
        let mut pipeline = Pipeline::new(&config, metrics).unwrap();
        let (registry, warnings) = driftwatch::daemon::registry::read(&config)
            .unwrap()
            .expect("a registry is configured");
        assert!(warnings.is_empty(), "{warnings:?}");
        pipeline.set_registry(Some(Arc::new(registry)));
        let rules = driftwatch::daemon::detection::load_rules(&config, Path::new("rules")).unwrap();
        let detector = driftwatch::daemon::detection::resume(&config, rules, None).unwrap();
        pipeline.set_detector(detector);
        let topic: Arc<str> = Arc::from(topic);
        pipeline.assign((topic.clone(), 0), None, start);
        Self {
            pipeline,
            generator: Generator::new(seed),
            rng: ChaCha8Rng::seed_from_u64(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            topic,
            offset: 0,
            now: start,
            transitions: Vec::new(),
            costs: BTreeMap::new(),
            unpriced: BTreeMap::new(),
            slice_lateness_ms: config.windows.slice_lateness.as_millis() as i64,
            committer,
            rollbacks: Vec::new(),
            mirror: None,
            late: None,
            queue: BTreeMap::new(),
            _dir: dir,
        }
    }

    /// Runs `seconds` of simulated time: every second's events as JSON lines into the
    /// pipeline, then the watermark advanced; buffers are cut every simulated minute.
    pub(crate) fn run(
        &mut self,
        seconds: i64,
        traffic: &dyn Fn(i64) -> Vec<Traffic>,
        shape: Shape<'_>,
    ) {
        for _ in 0..seconds {
            let second = self.now;
            let mut events = self.generator.second(second, &traffic(second));
            for ev in &mut events {
                shape(ev, second, &mut self.rng);
                if let Some(late) = &self.late {
                    for (delay, line) in late(ev, &mut self.rng) {
                        self.queue
                            .entry(ev.timestamp_ms + delay)
                            .or_default()
                            .push(line);
                    }
                }
                let mirrored = self.mirror.as_ref().and_then(|m| m(ev, &mut self.rng));
                for ev in std::iter::once(&*ev).chain(mirrored.as_ref()) {
                    let line = to_json_line(ev);
                    self.send(line.as_bytes(), Some(ev.timestamp_ms), second + 1000);
                }
            }
            let later = self.queue.split_off(&(second + 1000));
            for (due, lines) in std::mem::replace(&mut self.queue, later) {
                for line in lines {
                    self.send(line.as_bytes(), Some(due), second + 1000);
                }
            }
            self.now += 1000;
            self.pipeline.advance(self.now);
            if self.now % MIN == 0 {
                self.drain();
            }
        }
        self.drain();
    }

    fn send(&mut self, payload: &[u8], timestamp_ms: Option<i64>, now: i64) {
        self.pipeline.ingest(
            RawMessage {
                topic: &self.topic,
                partition: 0,
                offset: self.offset,
                timestamp_ms,
                payload: Some(payload),
            },
            now,
        );
        self.offset += 1;
    }

    pub(crate) fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Closes every open window and writes what is left (the end of a run).
    pub(crate) fn finish(&mut self) {
        self.pipeline.close_all_windows();
        self.drain();
    }

    fn drain(&mut self) {
        for job in self.pipeline.cut_commits(self.now) {
            if let Some(c) = &self.committer {
                if !job.is_empty() {
                    c.commit(&job).unwrap();
                }
            }
            assert!(
                job.quarantine.is_empty(),
                "refused: {:?}",
                job.quarantine[0].reject
            );
            for row in job.events {
                let ev = row.event;
                match ev.cost_usd {
                    Some(c) => self
                        .costs
                        .entry(ev.service)
                        .or_default()
                        .push((ev.timestamp_ms, c)),
                    None => *self.unpriced.entry(ev.request_model).or_default() += 1,
                }
            }
        }
        if let Some(job) = self.pipeline.take_alerts_job() {
            self.transitions.extend(job.transitions);
            self.rollbacks.extend(job.rollbacks);
        }
    }

    pub(crate) fn fired(&self, rule: &str) -> Vec<&Transition> {
        self.transitions
            .iter()
            .filter(|t| t.rule == rule && t.to == AlertState::Firing)
            .collect()
    }

    /// Every firing: rule, labels and minutes since T0.
    pub(crate) fn firing(&self) -> Vec<String> {
        self.transitions
            .iter()
            .filter(|t| t.to == AlertState::Firing)
            .map(|t| format!("{} {:?} at +{} min", t.rule, t.labels, (t.at_ms - T0) / MIN))
            .collect()
    }

    /// Seconds from `from_ms` to when the firing transition `t` could be evaluated (its
    /// tick plus the slice lateness, as the live daemon waits for it).
    pub(crate) fn delay_s(&self, t: &Transition, from_ms: i64) -> f64 {
        (t.at_ms + self.slice_lateness_ms - from_ms) as f64 / 1000.0
    }
}

pub(crate) fn label<'a>(t: &'a Transition, name: &str) -> &'a str {
    t.labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or("")
}

fn detail(t: &Transition, name: &str) -> f64 {
    t.details
        .get(name)
        .unwrap_or_else(|| panic!("no details.{name} in {:?}", t.details))
        .parse()
        .unwrap()
}

pub(crate) fn traffic(service: &'static str, model: &'static str, rate: f64) -> Traffic {
    let mut t = Traffic::new(service, model);
    t.rate = rate;
    t
}

/// Input tokens log-normal around `median` (σ `sigma`), at most `cap`.
fn input_tokens(rng: &mut ChaCha8Rng, median: f64, sigma: f64, cap: f64) -> u64 {
    let x = LogNormal::new(median.ln(), sigma)
        .map(|d| d.sample(rng))
        .unwrap_or(median);
    x.clamp(1.0, cap).round() as u64
}

/// A share around `mean` (sd `sd`), clamped to [0, 1].
fn share(rng: &mut ChaCha8Rng, mean: f64, sd: f64) -> f64 {
    Normal::new(mean, sd)
        .map(|d| d.sample(rng))
        .unwrap_or(mean)
        .clamp(0.0, 1.0)
}

/// Plain requests: the generator's 500 input / 200 output tokens, no cache, `stop`.
fn plain(ev: &mut RequestEvent, _t: i64, _rng: &mut ChaCha8Rng) {
    if ev.status == Status::Ok {
        ev.finish_reason = Some("stop".into());
    }
}

/// Traffic to a model deprecated 20 days ahead pages nobody but raises one warning naming
/// the date, the successor and the share of the service's traffic still on it; the same
/// service's other model (no date) and another service raise nothing.
#[test]
fn a_deprecation_twenty_days_ahead_with_traffic_raises_one_alert() {
    let mut sim = PipeSim::new(41, &[]);
    let t = |_t: i64| {
        vec![
            traffic("chat", "gpt-4o-2024-08-06", 1.0),
            traffic("chat", "gpt-4o-mini", 3.0),
            traffic("search", "gpt-4o-mini", 2.0),
        ]
    };
    sim.run(3 * HOUR / 1000, &t, &plain);
    let fired = sim.fired("model_deprecation_30d");
    assert_eq!(fired.len(), 1, "{:#?}", sim.firing());
    let a = fired[0];
    assert_eq!(label(a, "service"), "chat");
    assert_eq!(label(a, "request_model"), "gpt-4o-2024-08-06");
    assert_eq!(a.details["model"], "gpt-4o");
    assert_eq!(a.details["deprecation_date"], "2026-11-30");
    assert_eq!(a.details["successor"], "gpt-4.1");
    let share = detail(a, "share");
    assert!((share - 0.25).abs() < 0.05, "share {share}");
    assert!(
        (a.numbers.value.unwrap() - 20.0).abs() < 0.1,
        "{:?}",
        a.numbers
    );
    assert!(
        a.summary.contains("gpt-4o, deprecated on 2026-11-30") && a.summary.contains("gpt-4.1"),
        "{}",
        a.summary
    );
    // Nothing else: not the 7- and 1-day rules, not gpt-4o-mini (no date), no other rule.
    assert_eq!(sim.firing().len(), 1, "{:#?}", sim.firing());
    // The registry priced every request (the alias resolves to gpt-4o).
    assert!(sim.unpriced.is_empty(), "{:?}", sim.unpriced);
    let delay = sim.delay_s(a, T0);
    eprintln!("deprecation 20 days ahead: model_deprecation_30d {delay} s after the first request");
    assert!(delay <= 120.0, "{delay} s");
}

/// A model the registry does not list, called by two services: one alert for the model,
/// not one per service, with the share of the traffic it takes.
#[test]
fn an_unknown_model_raises_one_alert() {
    let mut sim = PipeSim::new(42, &[]);
    let onset = T0 + HOUR;
    let t = move |t: i64| {
        let mut v = vec![
            traffic("chat", "gpt-4o-mini", 3.0),
            traffic("search", "claude-sonnet-4", 1.0),
        ];
        if t >= onset {
            v.push(traffic("chat", "gpt-5-preview", 0.5));
            v.push(traffic("search", "gpt-5-preview", 0.5));
        }
        v
    };
    sim.run(3 * HOUR / 1000, &t, &plain);
    let fired = sim.fired("unknown_model");
    assert_eq!(fired.len(), 1, "{:#?}", sim.firing());
    let a = fired[0];
    assert_eq!(label(a, "request_model"), "gpt-5-preview");
    let share = detail(a, "share");
    assert!((0.1..0.3).contains(&share), "share {share}");
    assert!(
        a.summary
            .contains("gpt-5-preview is not in the model registry"),
        "{}",
        a.summary
    );
    assert_eq!(sim.firing().len(), 1, "{:#?}", sim.firing());
    // Not priced: neither the registry nor [prices] knows it.
    assert!(sim.unpriced["gpt-5-preview"] > 5000, "{:?}", sim.unpriced);
    assert_eq!(sim.unpriced.len(), 1, "{:?}", sim.unpriced);
    let delay = sim.delay_s(a, onset);
    eprintln!("unknown model: unknown_model {delay} s after its first request");
    assert!(delay <= 120.0, "{delay} s");
}

/// Inputs growing over half an hour from 20k tokens to 95 % of gpt-4o-mini's 128k context
/// window (a conversation history that is never trimmed): the near-context alert fires, and
/// the long-input cost spike (input-token P99) too.
#[test]
fn inputs_growing_to_95_percent_of_the_context_window_alert() {
    let mut sim = PipeSim::new(43, &[]);
    let onset = T0 + 2 * HOUR;
    let ramp = 30 * MIN;
    let context = 128_000.0;
    let sigma = 0.05;
    let median = move |t: i64| {
        let f = ((t - onset) as f64 / ramp as f64).clamp(0.0, 1.0);
        20_000.0 + f * (0.95 * context - 20_000.0)
    };
    let t = |_t: i64| vec![traffic("assistant", "gpt-4o-mini", 2.0)];
    let shape = move |ev: &mut RequestEvent, t: i64, rng: &mut ChaCha8Rng| {
        ev.input_tokens = Some(input_tokens(rng, median(t), sigma, context));
        plain(ev, t, rng);
    };
    sim.run((onset - T0) / 1000, &t, &shape);
    assert!(
        sim.firing().is_empty(),
        "before the ramp: {:#?}",
        sim.firing()
    );
    sim.run(ramp / 1000 + 30 * MIN / 1000, &t, &shape);

    // The moment the rule's condition became true in the population: 5 % of the requests
    // above 90 % of the window, i.e. the median at 0.9·128k / e^(1.645σ).
    let m_star = 0.9 * context / (1.645 * sigma).exp();
    let true_onset =
        onset + ((m_star - 20_000.0) / (0.95 * context - 20_000.0) * ramp as f64) as i64;
    let fired = sim.fired("near_context_window");
    assert_eq!(fired.len(), 1, "{:#?}", sim.firing());
    let a = fired[0];
    assert_eq!(label(a, "request_model"), "gpt-4o-mini");
    assert!(a.numbers.value.unwrap() > 0.05, "{:?}", a.numbers);
    let delay = sim.delay_s(a, true_onset);
    eprintln!(
        "inputs growing to 95 % of the context: near_context_window {delay} s after 5 % of requests crossed 90 % ({} min into the ramp)",
        (true_onset - onset) / MIN
    );
    assert!((0.0..=300.0).contains(&delay), "{delay} s");
    let p99 = sim.fired("input_tokens_p99_high");
    assert_eq!(p99.len(), 1, "{:#?}", sim.firing());
    eprintln!(
        "  input_tokens_p99_high {} s into the ramp",
        sim.delay_s(p99[0], onset)
    );
    // Only the long-input alerts: tokens, cost per request and the context window.
    for f in sim.fired_rules() {
        assert!(
            [
                "near_context_window",
                "input_tokens_p99_high",
                "input_tokens_shift",
                "cost_per_request_high"
            ]
            .contains(&f.as_str()),
            "{f} fired: {:#?}",
            sim.firing()
        );
    }
}

/// A new prompt version that breaks the cached prefix: the cache-read ratio halves (60 % →
/// 30 % of input tokens), the alert fires on the new version with the money lost a day at
/// this traffic, which matches the hand computation.
#[test]
fn a_prompt_change_halving_the_cache_read_ratio_alerts_with_the_money_lost() {
    let mut sim = PipeSim::new(44, &[]);
    let onset = T0 + 2 * HOUR;
    let rate = 2.0;
    let (median_in, sigma) = (8000.0, 0.2);
    let t = move |t: i64| {
        let mut a = traffic("support-bot", "claude-sonnet-4", rate);
        if t >= onset {
            a.prompt_version = "v2";
        }
        vec![a]
    };
    let shape = move |ev: &mut RequestEvent, t: i64, rng: &mut ChaCha8Rng| {
        let input = input_tokens(rng, median_in, sigma, 200_000.0);
        let cached = if t >= onset { 0.3 } else { 0.6 };
        ev.input_tokens = Some(input);
        ev.cached_input_tokens = Some((input as f64 * share(rng, cached, 0.05)).round() as u64);
        plain(ev, t, rng);
    };
    sim.run((onset - T0) / 1000, &t, &shape);
    assert!(
        sim.firing().is_empty(),
        "before the change: {:#?}",
        sim.firing()
    );
    sim.run(HOUR / 1000, &t, &shape);

    let fired = sim.fired("cache_read_ratio_drop");
    assert_eq!(fired.len(), 1, "{:#?}", sim.firing());
    let a = fired[0];
    assert_eq!(label(a, "prompt_version"), "v2");
    assert!(
        (a.numbers.value.unwrap() - 0.3).abs() < 0.02,
        "{:?}",
        a.numbers
    );
    assert!(
        (a.numbers.baseline.unwrap() - 0.6).abs() < 0.02,
        "{:?}",
        a.numbers
    );
    // By hand: 0.3 of the input tokens no longer read from the cache, each paying the input
    // rate ($3.00/M) instead of the cached one ($0.30/M), at 2 requests/s of e^(ln 8000 +
    // σ²/2) input tokens.
    let mean_in = median_in * (sigma * sigma / 2.0f64).exp();
    let by_hand = 0.3 * rate * 86_400.0 * mean_in * (3.00 - 0.30) / 1e6;
    let lost = detail(a, "usd_lost_per_day");
    assert!(
        (lost / by_hand - 1.0).abs() < 0.15,
        "lost {lost} $/day, by hand {by_hand}"
    );
    assert!(a.summary.contains("a day lost"), "{}", a.summary);
    let delay = sim.delay_s(a, onset);
    eprintln!(
        "cache-read ratio halved: cache_read_ratio_drop {delay} s after the prompt change, ${lost:.0}/day lost (by hand ${by_hand:.0})"
    );
    assert!(delay <= 15.0 * 60.0, "{delay} s");
    // The prompt change also shows as what it is, a prompt version that costs more than the
    // one it replaced.
    let regression = sim.fired("prompt_version_regression");
    assert_eq!(regression.len(), 1, "{:#?}", sim.firing());
    let r = &regression[0].details["regressed"];
    assert!(r.starts_with("cost +"), "{r}");
    for f in sim.fired_rules() {
        assert!(
            ["cache_read_ratio_drop", "prompt_version_regression"].contains(&f.as_str()),
            "{:#?}",
            sim.firing()
        );
    }
}

/// A service spending about 86 % of its daily budget: the 80 % alert fires once each UTC day,
/// minutes after the day's actual spend crossed 80 %, and resolves at midnight; the 100 % and
/// projection alerts stay quiet, as does a service far under its budget.
#[test]
fn a_service_crossing_80_percent_of_its_budget_alerts_once_a_day() {
    // gpt-4o at 500 input and 200 output tokens: $0.00325 a request; 2 requests/s → $561.6 a day.
    let budget = 650.0;
    let mut sim = PipeSim::new(45, &[("chat", budget), ("search", 100.0)]);
    let t = |_t: i64| {
        vec![
            traffic("chat", "gpt-4o", 2.0),
            traffic("search", "gpt-4o-mini", 1.0),
        ]
    };
    sim.run((2 * DAY + HOUR) / 1000, &t, &plain);

    // Where the decoded costs crossed 80 % of the budget, per UTC day.
    let mut costs = sim.costs["chat"].clone();
    costs.sort_by_key(|c| c.0);
    let mut crossings: BTreeMap<i64, i64> = BTreeMap::new();
    let mut day_spend: BTreeMap<i64, f64> = BTreeMap::new();
    for (ts, c) in costs {
        let day = ts.div_euclid(DAY);
        let s = day_spend.entry(day).or_default();
        *s += c;
        if *s > 0.8 * budget {
            crossings.entry(day).or_insert(ts);
        }
    }
    assert_eq!(crossings.len(), 2, "{day_spend:?}");
    let fired = sim.fired("budget_80");
    assert_eq!(fired.len(), 2, "{:#?}", sim.firing());
    for (a, (day, crossed)) in fired.iter().zip(&crossings) {
        assert_eq!(label(a, "service"), "chat");
        assert_eq!(
            a.details["day"],
            driftwatch::registry::Date::of_ms(day * DAY).to_string()
        );
        assert!(detail(a, "spend_usd") > 0.8 * budget, "{:?}", a.details);
        assert_eq!(detail(a, "budget_usd"), budget);
        let delay = sim.delay_s(a, *crossed);
        eprintln!(
            "budget 80 %: budget_80 for {} {delay} s after the spend crossed ${:.0} (at {:.1} h)",
            a.details["day"],
            0.8 * budget,
            (crossed - day * DAY) as f64 / HOUR as f64
        );
        assert!((0.0..=180.0).contains(&delay), "{delay} s");
    }
    // It resolved when the day ended, before firing again.
    let resolved: Vec<_> = sim
        .transitions
        .iter()
        .filter(|t| t.rule == "budget_80" && t.to == AlertState::Resolved)
        .collect();
    assert!(!resolved.is_empty(), "never resolved");
    assert!(resolved[0].at_ms >= T0 + DAY && resolved[0].at_ms < fired[1].at_ms);
    // About 86 % of the budget a day: nothing else, but that gpt-4o is 20 days from its
    // deprecation (2026-11-30).
    assert_eq!(
        sim.fired_rules(),
        ["budget_80", "model_deprecation_30d"],
        "{:#?}",
        sim.firing()
    );
}

/// A stable day with the registry and budgets: realistic, noisy traffic (a diurnal cycle,
/// log-normal inputs, noisy cache shares, 2 % of answers cut at max tokens) on five series
/// and a canary, every shipped rule active — deprecation, unknown model, budgets, cost,
/// context and cache among them: nothing fires.
#[test]
fn a_stable_day_with_registry_and_budgets_raises_no_alert() {
    let seed = std::env::var("DRIFTWATCH_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(46);
    let mut sim = PipeSim::new(
        seed,
        &[
            // About 60 %, 40 % and 55 % of the day's spend; the running projection peaks
            // in the evening at under 1.2× the day's total.
            ("chat", 9000.0),
            ("search", 200.0),
            ("support-bot", 600.0),
        ],
    );
    let t = |t: i64| {
        let hour = ((t - T0) as f64 / 3_600_000.0) % 24.0;
        let load = 0.1 + 0.9 * (0.5 - 0.5 * ((hour - 3.0) / 24.0 * std::f64::consts::TAU).cos());
        let mut v = Vec::new();
        for (svc, model, base) in [
            ("chat", "gpt-4.1", 5.0),
            ("chat", "claude-sonnet-4", 2.0),
            ("search", "gpt-4o-mini", 4.0),
            ("support-bot", "llama-3.1-70b", 2.0),
        ] {
            v.push(traffic(svc, model, base * load));
        }
        let mut c = traffic("chat", "gpt-4.1", 1.0 * load);
        c.deployment = Deployment::Canary;
        v.push(c);
        v
    };
    let shape = |ev: &mut RequestEvent, _t: i64, rng: &mut ChaCha8Rng| {
        let (median, cached) = match ev.request_model.as_str() {
            "gpt-4.1" => (6000.0, Some(0.5)),
            "claude-sonnet-4" => (12_000.0, Some(0.7)),
            "gpt-4o-mini" => (1500.0, Some(0.3)),
            _ => (3000.0, None),
        };
        let input = input_tokens(rng, median, 0.6, 120_000.0);
        ev.input_tokens = Some(input);
        ev.output_tokens = Some(input_tokens(rng, 300.0, 0.5, 8000.0));
        // One dated snapshot behind each name all day (the silent-update rule has data).
        ev.response_model = Some(format!("{}-2025-06-01", ev.request_model));
        // OpenAI models served by three backends at once, picked per request.
        if ev.request_model.starts_with("gpt") {
            let x = rng.random::<f64>();
            let fp = if x < 0.55 {
                "fp_a1"
            } else if x < 0.9 {
                "fp_b2"
            } else {
                "fp_c3"
            };
            ev.system_fingerprint = Some(fp.into());
        }
        if let Some(c) = cached {
            ev.cached_input_tokens = Some((input as f64 * share(rng, c, 0.15)).round() as u64);
        }
        if ev.status == Status::Ok {
            let cut = rng.random_bool(0.02);
            ev.finish_reason = Some(if cut { "length" } else { "stop" }.into());
        }
    };
    sim.run(DAY / 1000, &t, &shape);
    assert!(
        sim.firing().is_empty(),
        "alerts on stable traffic: {:#?}",
        sim.firing()
    );
    assert!(sim.unpriced.is_empty(), "{:?}", sim.unpriced);
    let evaluations = sim.pipeline.detector().unwrap().evaluations();
    assert!(evaluations > 10_000, "{evaluations}");
}

impl PipeSim {
    /// Names of the rules that fired, deduplicated.
    fn fired_rules(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .transitions
            .iter()
            .filter(|t| t.to == AlertState::Firing)
            .map(|t| t.rule.clone())
            .collect();
        v.sort();
        v.dedup();
        v
    }
}
