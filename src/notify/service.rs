//! The delivery stage as it runs in the daemon.
//!
//! ```text
//! commit (ingest thread) ──► state/notify-inbox/*.json ──► router task ──► outbox ──► one sender per channel
//!   alerts rows, then the       durable hand-off           groups, silences,  durable   HTTP / PagerDuty / SMTP,
//!   inbox, then detector state                             breaker webhooks             retries, rate limits
//! ```
//!
//! The ingest thread only writes a small file per alert commit; everything that can wait on
//! a receiver runs on other tasks, so a slow or dead receiver never slows consumption. The
//! inbox, the router state, the outbox and the silences are files under `state/`, written
//! before they are acted on, so a crash at any point re-sends at most a notification with the
//! same idempotency key and loses none.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use super::config::{expand_env, parse_time, ChannelConfig, NotifyConfig, RateLimit};
use super::email::{EmailSender, EmailSettings};
use super::http::Sender;
use super::outbox::{Backoff, Notification, Outbox, OutboxError, Outcome};
use super::render::{self, Context, Mail};
use super::route::{Router, Routing};
use super::signing::{self, Secret};
use super::silence::{Matcher, MatcherJson, Silence, SilenceError, Silences};
use crate::metrics::Metrics;

const ROUTER_STATE: &str = "notify-router.json";
const SILENCES_STATE: &str = "silences.json";
/// Expired silences stay listed this long.
const KEEP_EXPIRED_MS: i64 = 24 * 3600 * 1000;

/// Why delivery cannot start.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("notify.channels.{channel}: {message}")]
    Channel { channel: String, message: String },
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    #[error("{path}: {message}")]
    State { path: PathBuf, message: String },
    #[error(transparent)]
    Email(#[from] super::email::EmailError),
}

use crate::time::now_ms;

use super::inbox::{InboxBatch, INBOX_DIR};

/// A token bucket: `burst` tokens, refilled at `per_minute`.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    last_ms: i64,
    limit: RateLimit,
}

impl Bucket {
    fn new(limit: RateLimit, now: i64) -> Self {
        Bucket {
            tokens: f64::from(limit.burst),
            last_ms: now,
            limit,
        }
    }

    fn take(&mut self, now: i64) -> bool {
        let dt = (now - self.last_ms).max(0) as f64;
        self.last_ms = now;
        self.tokens =
            (self.tokens + dt * self.limit.per_minute / 60_000.0).min(f64::from(self.limit.burst));
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// A channel with its secrets resolved.
enum Runtime {
    Webhook {
        url: String,
        secrets: Vec<Secret>,
        headers: Vec<(String, String)>,
    },
    Pagerduty {
        url: String,
        routing_key: String,
    },
    Email(EmailSender),
}

impl Runtime {
    fn build(
        name: &str,
        c: &ChannelConfig,
        timeout: Duration,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Runtime, NotifyError> {
        let err = |message: String| NotifyError::Channel {
            channel: name.to_string(),
            message,
        };
        let need = |field: &str, var: &str| -> Result<String, NotifyError> {
            env(var).filter(|v| !v.is_empty()).ok_or_else(|| {
                err(format!(
                    "{field}: environment variable {var} is not set; export it or remove the channel"
                ))
            })
        };
        Ok(match c {
            ChannelConfig::Webhook {
                url,
                secret_env,
                headers,
                ..
            } => {
                let secrets = match secret_env {
                    None => Vec::new(),
                    Some(var) => need("secret_env", var)?
                        .split_whitespace()
                        .map(|s| {
                            Secret::parse(s).map_err(|e| err(format!("secret_env {var}: {e}")))
                        })
                        .collect::<Result<_, _>>()?,
                };
                let headers = headers
                    .iter()
                    .map(|(k, v)| {
                        expand_env(v, env)
                            .map(|v| (k.clone(), v))
                            .map_err(|e| err(format!("headers.{k}: {e}")))
                    })
                    .collect::<Result<_, _>>()?;
                Runtime::Webhook {
                    url: url.clone(),
                    secrets,
                    headers,
                }
            }
            ChannelConfig::Pagerduty {
                url,
                routing_key_env,
                ..
            } => Runtime::Pagerduty {
                url: url.clone(),
                routing_key: need("routing_key_env", routing_key_env)?,
            },
            ChannelConfig::Email {
                smtp_host,
                smtp_port,
                tls,
                ca_file,
                username_env,
                password_env,
                from,
                to,
                ..
            } => {
                let ca_pem = ca_file
                    .as_ref()
                    .map(|p| {
                        std::fs::read(p).map_err(|e| err(format!("ca_file {}: {e}", p.display())))
                    })
                    .transpose()?;
                let credentials = match (username_env, password_env) {
                    (Some(u), Some(p)) => {
                        Some((need("username_env", u)?, need("password_env", p)?))
                    }
                    _ => None,
                };
                Runtime::Email(EmailSender::new(EmailSettings {
                    channel: name,
                    host: smtp_host,
                    port: *smtp_port,
                    tls: *tls,
                    ca_pem,
                    credentials,
                    from,
                    to,
                    timeout,
                })?)
            }
        })
    }

    async fn send(&self, n: &Notification, http: &Sender) -> Outcome {
        let now = now_ms();
        match self {
            Runtime::Webhook {
                url,
                secrets,
                headers,
            } => {
                let ts = now / 1000;
                let mut h: Vec<(&str, String)> = if secrets.is_empty() {
                    vec![
                        (signing::HEADER_ID, n.id.clone()),
                        (signing::HEADER_TIMESTAMP, ts.to_string()),
                    ]
                } else {
                    signing::headers(secrets, &n.id, ts, n.body.as_bytes()).to_vec()
                };
                h.extend(headers.iter().map(|(k, v)| (k.as_str(), v.clone())));
                http.post(url, &h, &n.body, now).await
            }
            Runtime::Pagerduty { url, routing_key } => {
                let mut v: serde_json::Value = match serde_json::from_str(&n.body) {
                    Ok(v) => v,
                    Err(e) => {
                        return Outcome::Permanent {
                            reason: format!("outbox entry is not JSON: {e}"),
                        }
                    }
                };
                v["routing_key"] = serde_json::Value::String(routing_key.clone());
                http.post(url, &[], &v.to_string(), now).await
            }
            Runtime::Email(sender) => match serde_json::from_str::<Mail>(&n.body) {
                Ok(mail) => sender.send(&n.id, &mail).await,
                Err(e) => Outcome::Permanent {
                    reason: format!("outbox entry is not a mail: {e}"),
                },
            },
        }
    }
}

/// A silence as `POST /api/v1/silences` takes it (Alertmanager's v2 shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SilenceRequest {
    /// Replaces the silence with this id when given.
    #[serde(default)]
    pub id: Option<String>,
    pub matchers: Vec<MatcherJson>,
    /// RFC 3339; default now.
    #[serde(default)]
    pub starts_at: Option<String>,
    /// RFC 3339.
    pub ends_at: String,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
}

/// A silence as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SilenceView {
    pub id: String,
    pub matchers: Vec<MatcherJson>,
    pub starts_at: String,
    pub ends_at: String,
    pub created_by: String,
    pub comment: String,
    pub status: &'static str,
    pub from_config: bool,
}

/// A refused silence request.
#[derive(Debug, thiserror::Error)]
pub enum SilenceApiError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Silence(#[from] SilenceError),
    #[error("saving silences: {0}")]
    Save(String),
}

/// What the HTTP API and the tasks share.
pub struct Shared {
    silences: Mutex<Silences>,
    outbox: Mutex<Outbox>,
    state_dir: PathBuf,
    wake: tokio::sync::Notify,
    metrics: Metrics,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("state_dir", &self.state_dir)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    fn save_silences(&self, s: &Silences) -> Result<(), SilenceApiError> {
        let bytes = serde_json::to_vec(s).expect("plain data serializes");
        crate::durable::write_atomic(&self.state_dir.join(SILENCES_STATE), &bytes).map_err(|e| {
            SilenceApiError::Save(format!("{} {}: {}", e.op, e.path.display(), e.source))
        })
    }

    /// Adds a silence; returns its id.
    pub fn add_silence(&self, req: SilenceRequest) -> Result<String, SilenceApiError> {
        let now = now_ms();
        let matchers = req
            .matchers
            .into_iter()
            .map(Matcher::try_from)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| SilenceApiError::Invalid(format!("matchers: {e}")))?;
        let starts = match &req.starts_at {
            Some(s) => {
                parse_time("startsAt", s).map_err(|e| SilenceApiError::Invalid(e.to_string()))?
            }
            None => now,
        };
        let ends = parse_time("endsAt", &req.ends_at)
            .map_err(|e| SilenceApiError::Invalid(e.to_string()))?;
        let mut set = lock(&self.silences);
        if let Some(id) = &req.id {
            if set.list().any(|s| &s.id == id && s.from_config) {
                return Err(SilenceError::FromConfig(id.clone()).into());
            }
            if !set.list().any(|s| &s.id == id) {
                return Err(SilenceError::NotFound(id.clone()).into());
            }
        }
        let id = req.id.clone().unwrap_or_else(|| {
            let r: u128 = rand::random();
            format!("{r:032x}")
        });
        let id = set.add(
            Silence {
                id,
                matchers,
                starts_at_ms: starts,
                ends_at_ms: ends,
                created_by: req.created_by,
                comment: req.comment,
                from_config: false,
            },
            now,
        )?;
        self.save_silences(&set)?;
        drop(set);
        self.wake.notify_waiters();
        Ok(id)
    }

    /// Ends a silence now.
    pub fn expire_silence(&self, id: &str) -> Result<(), SilenceApiError> {
        let mut set = lock(&self.silences);
        set.expire(id, now_ms())?;
        self.save_silences(&set)?;
        Ok(())
    }

    pub fn silences(&self) -> Vec<SilenceView> {
        let now = now_ms();
        lock(&self.silences)
            .list()
            .map(|s| SilenceView {
                id: s.id.clone(),
                matchers: s.matchers.iter().cloned().map(MatcherJson::from).collect(),
                starts_at: super::rfc3339(s.starts_at_ms),
                ends_at: super::rfc3339(s.ends_at_ms),
                created_by: s.created_by.clone(),
                comment: s.comment.clone(),
                status: s.state(now),
                from_config: s.from_config,
            })
            .collect()
    }

    /// (pending per channel, dead letters).
    pub fn outbox_status(&self) -> (BTreeMap<String, usize>, usize) {
        let o = lock(&self.outbox);
        (o.pending_by_channel(), o.dead_count())
    }
}

/// The running delivery stage.
pub struct Notifier {
    pub shared: Arc<Shared>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Notifier {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn silences_from_config(c: &NotifyConfig) -> Vec<Silence> {
    c.silences
        .iter()
        .enumerate()
        .map(|(i, s)| Silence {
            id: format!("config-{i}"),
            matchers: s
                .matchers
                .iter()
                .filter_map(|m| Matcher::parse(m).ok())
                .collect(),
            starts_at_ms: s
                .starts_at
                .as_deref()
                .and_then(|v| parse_time("", v).ok())
                .unwrap_or(i64::MIN / 2),
            ends_at_ms: s
                .ends_at
                .as_deref()
                .and_then(|v| parse_time("", v).ok())
                .unwrap_or(i64::MAX / 2),
            created_by: s.created_by.clone(),
            comment: s.comment.clone(),
            from_config: true,
        })
        .collect()
}

fn read_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T, NotifyError> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| NotifyError::State {
            path: path.to_path_buf(),
            message: format!("unreadable ({e}); move it away to start over"),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(NotifyError::State {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
    }
}

/// The router's saved state: groups, the inbox files already taken in, and the
/// notifications it decided to send (saved before they go to the outbox: a write-ahead, so
/// a crash in between neither loses them nor makes a later flush skip them).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct RouterState {
    router: Router,
    /// Inbox files consumed by this state (deleted after it is saved).
    consumed: Vec<String>,
    #[serde(default)]
    to_enqueue: Vec<Notification>,
}

/// What delivery reads from the assembled config: its own section, the breaker's channels,
/// and the HTTP address (the default `external_url`). `&Config` converts into it.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    pub notify: &'a NotifyConfig,
    pub breaker: &'a crate::detect::breaker::BreakerConfig,
    pub http_listen: &'a str,
}

impl Notifier {
    /// Starts delivery for `config` with state under `state_dir`, or returns `None` when no
    /// channel is configured (nothing is written to the inbox then either).
    pub fn start<'a>(
        config: impl Into<Settings<'a>>,
        state_dir: &Path,
        metrics: Metrics,
    ) -> Result<Option<Notifier>, NotifyError> {
        Self::start_with_env(config, state_dir, metrics, &|k| std::env::var(k).ok())
    }

    /// [`Self::start`] with secrets looked up through `env` instead of the process
    /// environment.
    pub fn start_with_env<'a>(
        config: impl Into<Settings<'a>>,
        state_dir: &Path,
        metrics: Metrics,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Notifier>, NotifyError> {
        let config: Settings<'_> = config.into();
        let c = config.notify;
        if !c.enabled || c.channels.is_empty() {
            return Ok(None);
        }
        for b in &config.breaker.channels {
            if config.breaker.enabled && !c.channels.contains_key(b) {
                tracing::warn!(channel = %b, "breaker.channels names no configured channel: breaker transitions are recorded but no gateway is called");
            }
        }
        let mut runtimes = BTreeMap::new();
        for (name, ch) in &c.channels {
            runtimes.insert(
                name.clone(),
                Runtime::build(name, ch, c.retry.timeout, env)?,
            );
        }
        let outbox_dir = c
            .outbox_dir
            .clone()
            .unwrap_or_else(|| state_dir.join("outbox"));
        let outbox = Outbox::open(&outbox_dir)?;
        let mut silences: Silences = read_json(&state_dir.join(SILENCES_STATE))?;
        silences.refresh(silences_from_config(c), now_ms(), KEEP_EXPIRED_MS);
        let shared = Arc::new(Shared {
            silences: Mutex::new(silences),
            outbox: Mutex::new(outbox),
            state_dir: state_dir.to_path_buf(),
            wake: tokio::sync::Notify::new(),
            metrics: metrics.clone(),
        });
        let backoff = Backoff {
            base: c.retry.base,
            cap: c.retry.max,
            max_retry_after: c.retry.max_retry_after,
            give_up_after: c.retry.give_up_after,
        };
        let http = Sender::new(c.retry.timeout).map_err(|e| NotifyError::Channel {
            channel: "*".into(),
            message: format!("HTTP client: {e}"),
        })?;
        let external_url = c
            .external_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.http_listen));
        let host = std::env::var("HOSTNAME")
            .ok()
            .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "driftwatch".into());
        let ctx = Context {
            external_url,
            source: format!("driftwatch@{host}"),
        };
        let mut tasks = Vec::new();
        let mut state: RouterState = read_json(&state_dir.join(ROUTER_STATE))?;
        // Before any commit can write to the inbox: files the saved state already holds (a
        // crash came between saving and deleting), and half-written files of a crashed
        // commit (it is redone after the restart).
        let inbox = state_dir.join(INBOX_DIR);
        for f in std::mem::take(&mut state.consumed) {
            let _ = std::fs::remove_file(inbox.join(f));
        }
        if let Ok(d) = std::fs::read_dir(&inbox) {
            for e in d.flatten() {
                if e.file_name().to_string_lossy().ends_with(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        tasks.push(tokio::spawn(router_task(
            shared.clone(),
            c.clone(),
            ctx,
            state,
        )));
        for (name, rt) in runtimes {
            let limit = c.channels[&name].rate_limit();
            tasks.push(tokio::spawn(sender_task(
                shared.clone(),
                name,
                rt,
                http.clone(),
                backoff,
                limit,
            )));
        }
        Ok(Some(Notifier { shared, tasks }))
    }
}

/// Takes inbox files in, flushes due groups into the outbox, saves the router state.
async fn router_task(shared: Arc<Shared>, c: NotifyConfig, ctx: Context, mut state: RouterState) {
    let routing = Routing::new(&c);
    let inbox = shared.state_dir.join(INBOX_DIR);
    let state_path = shared.state_dir.join(ROUTER_STATE);
    let mut last_maintenance = now_ms();
    loop {
        let round = tokio::task::block_in_place(|| {
            router_round(&shared, &c, &routing, &ctx, &inbox, &state_path, &mut state)
        });
        if let Err(e) = round {
            tracing::error!(error = %e, "notification routing failed; retrying");
        }
        if now_ms() - last_maintenance > 3_600_000 {
            last_maintenance = now_ms();
            tokio::task::block_in_place(|| maintain(&shared, &c));
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shared.wake.notified() => {}
        }
    }
}

/// Hourly: forget old delivered ids and expired silences.
fn maintain(shared: &Shared, c: &NotifyConfig) {
    lock(&shared.outbox).prune_sent();
    let mut s = lock(&shared.silences);
    s.refresh(silences_from_config(c), now_ms(), KEEP_EXPIRED_MS);
    if let Err(e) = shared.save_silences(&s) {
        tracing::warn!(error = %e, "cannot save silences");
    }
}

/// One round: the state changes only when the round's decisions are saved.
fn router_round(
    shared: &Shared,
    c: &NotifyConfig,
    routing: &Routing,
    ctx: &Context,
    inbox: &Path,
    state_path: &Path,
    state: &mut RouterState,
) -> Result<(), NotifyError> {
    let now = now_ms();
    // Decided before a crash or a failed enqueue: queue them first.
    if !state.to_enqueue.is_empty() {
        enqueue(shared, &mut state.to_enqueue)?;
    }
    let mut names: Vec<String> = std::fs::read_dir(inbox)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().to_string())
                .filter(|n| n.ends_with(".json"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut next = state.clone();
    for name in &names {
        let path = inbox.join(name);
        let batch: InboxBatch = match std::fs::read(&path)
            .map_err(|e| e.to_string())
            .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
        {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "unreadable inbox file set aside (.bad)");
                let _ = std::fs::rename(&path, path.with_extension("bad"));
                continue;
            }
        };
        for t in &batch.transitions {
            next.router.ingest(t, routing, now);
        }
        for b in &batch.breakers {
            next.to_enqueue.extend(render::breaker(b, &c.channels, now));
        }
        for r in &batch.rollbacks {
            next.to_enqueue
                .extend(render::rollback(r, &c.channels, ctx, now));
        }
        next.consumed.push(name.clone());
    }
    let (dispatches, stats) = {
        let silences = lock(&shared.silences);
        next.router.flush(routing, &silences, now)
    };
    if names.is_empty() && dispatches.is_empty() {
        return Ok(());
    }
    shared
        .metrics
        .notifications_silenced
        .inc_by(stats.silenced as u64);
    for d in &dispatches {
        if let Some(ch) = c.channels.get(&d.channel) {
            next.to_enqueue.extend(render::dispatch(d, ch, ctx, now));
        }
    }
    // Write-ahead: the decisions are durable before they act.
    let bytes = serde_json::to_vec(&next).expect("plain data serializes");
    crate::durable::write_atomic(state_path, &bytes).map_err(|e| NotifyError::State {
        path: e.path,
        message: format!("{}: {}", e.op, e.source),
    })?;
    *state = next;
    for f in std::mem::take(&mut state.consumed) {
        let _ = std::fs::remove_file(inbox.join(f));
    }
    enqueue(shared, &mut state.to_enqueue)
}

/// Moves decided notifications into the outbox (idempotent: ids already pending or
/// delivered are skipped).
fn enqueue(shared: &Shared, list: &mut Vec<Notification>) -> Result<(), NotifyError> {
    if list.is_empty() {
        return Ok(());
    }
    let mut o = lock(&shared.outbox);
    // What went in leaves the list; on an error the rest stays for the next round.
    let mut done = 0;
    let result = list.iter().try_for_each(|n| {
        if o.enqueue(n.clone())? {
            shared.metrics.notification(&n.channel, "enqueued");
            tracing::info!(id = %n.id, channel = %n.channel, "notification queued");
        }
        done += 1;
        Ok::<(), OutboxError>(())
    });
    list.drain(..done);
    shared.metrics.outbox_pending.set(o.len() as i64);
    drop(o);
    shared.wake.notify_waiters();
    Ok(result?)
}

/// Delivers one channel's due notifications, oldest first, within its rate limit.
async fn sender_task(
    shared: Arc<Shared>,
    channel: String,
    rt: Runtime,
    http: Sender,
    backoff: Backoff,
    limit: Option<RateLimit>,
) {
    let mut rng = rand_chacha::ChaCha8Rng::from_os_rng();
    let mut bucket = limit.map(|l| Bucket::new(l, now_ms()));
    // Ids already counted as held back by the rate limit.
    let mut held: std::collections::BTreeSet<String> = Default::default();
    loop {
        let due = lock(&shared.outbox).due_for(&channel, now_ms());
        for n in due {
            if let Some(b) = &mut bucket {
                if !b.take(now_ms()) {
                    if held.insert(n.id.clone()) {
                        shared.metrics.notification(&channel, "rate_limited");
                    }
                    break;
                }
            }
            held.remove(&n.id);
            let outcome = rt.send(&n, &http).await;
            let label = match &outcome {
                Outcome::Delivered => {
                    tracing::info!(id = %n.id, %channel, attempt = n.attempts + 1, "notification delivered");
                    "delivered"
                }
                Outcome::Retry { reason, .. } => {
                    tracing::warn!(id = %n.id, %channel, attempt = n.attempts + 1, %reason, "delivery failed; will retry");
                    "retried"
                }
                Outcome::Permanent { reason } => {
                    tracing::error!(id = %n.id, %channel, %reason, "delivery refused; not retried (kept in outbox/dead)");
                    "dead"
                }
            };
            shared.metrics.notification(&channel, label);
            tokio::task::block_in_place(|| {
                let mut o = lock(&shared.outbox);
                if let Err(e) = o.record(&n.id, &outcome, now_ms(), &backoff, &mut rng) {
                    tracing::error!(id = %n.id, error = %e, "cannot record the delivery outcome");
                }
                shared.metrics.outbox_pending.set(o.len() as i64);
                if label == "dead" {
                    shared.metrics.outbox_dead.set(o.dead_count() as i64);
                }
            });
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = shared.wake.notified() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_bucket_allows_a_burst_then_the_rate() {
        let mut b = Bucket::new(
            RateLimit {
                per_minute: 6.0,
                burst: 2,
            },
            0,
        );
        assert!(b.take(0) && b.take(0));
        assert!(!b.take(1_000), "burst spent");
        assert!(b.take(10_000), "one token per 10 s");
        assert!(!b.take(10_001));
    }
}
