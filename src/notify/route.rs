//! Routing and grouping, with Alertmanager's semantics: each firing or resolved alert is
//! routed to channels (by the first matching route, by the rule's own `channels`, or the
//! defaults), lands in an aggregation group per (channel, route, `group_by` label values),
//! and a group notifies `group_wait` after its first alert, then at most every
//! `group_interval` when something changed, and every `repeat_interval` while it keeps
//! firing unchanged. Silenced alerts are left out. A resolved alert is sent when its firing
//! was, and also when it fired and resolved between two flushes (a short incident, or a
//! backlog caught up in seconds): it is news either way.
//!
//! Pure: time is an argument, the state serializes, and [`Router::flush`] says what to send.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::config::NotifyConfig;
use super::silence::{all_match, Matcher, Silences};
use crate::detect::alerts::{AlertState, Transition};

/// One route, resolved from the configuration.
#[derive(Debug, Clone)]
pub struct Route {
    pub matchers: Vec<Matcher>,
    pub channels: Vec<String>,
    pub continue_matching: bool,
    pub group_by: Vec<String>,
    pub group_wait_ms: i64,
    pub group_interval_ms: i64,
    pub repeat_interval_ms: i64,
}

/// The routing table: routes in order, then the default route.
#[derive(Debug, Clone)]
pub struct Routing {
    pub routes: Vec<Route>,
    pub default: Route,
    /// Channel name → sends resolved notifications.
    pub channels: BTreeMap<String, bool>,
}

impl Routing {
    /// From a validated configuration.
    pub fn new(c: &NotifyConfig) -> Routing {
        let ms = |d: std::time::Duration| d.as_millis() as i64;
        let default = Route {
            matchers: Vec::new(),
            channels: c.default_channels.clone(),
            continue_matching: false,
            group_by: c.group_by.clone(),
            group_wait_ms: ms(c.group_wait),
            group_interval_ms: ms(c.group_interval),
            repeat_interval_ms: ms(c.repeat_interval),
        };
        let routes = c
            .routes
            .iter()
            .map(|r| Route {
                matchers: r
                    .matchers
                    .iter()
                    .filter_map(|m| Matcher::parse(m).ok())
                    .collect(),
                channels: r.channels.clone(),
                continue_matching: r.continue_matching,
                group_by: r
                    .group_by
                    .clone()
                    .unwrap_or_else(|| default.group_by.clone()),
                group_wait_ms: r.group_wait.map(ms).unwrap_or(default.group_wait_ms),
                group_interval_ms: r
                    .group_interval
                    .map(ms)
                    .unwrap_or(default.group_interval_ms),
                repeat_interval_ms: r
                    .repeat_interval
                    .map(ms)
                    .unwrap_or(default.repeat_interval_ms),
            })
            .collect();
        Routing {
            routes,
            default,
            channels: c
                .channels
                .iter()
                .map(|(k, v)| (k.clone(), v.send_resolved()))
                .collect(),
        }
    }

    /// Route index `routes.len()` is the default route.
    pub fn route(&self, i: usize) -> &Route {
        self.routes.get(i).unwrap_or(&self.default)
    }

    /// (channel, route index) for an alert: matching routes' channels, then the rule's own
    /// configured channels (grouped like the first matching route), each channel once.
    pub fn targets(
        &self,
        labels: &BTreeMap<String, String>,
        rule_channels: &[String],
    ) -> Vec<(String, usize)> {
        let mut out: Vec<(String, usize)> = Vec::new();
        let push = |c: &String, i: usize, out: &mut Vec<(String, usize)>| {
            if self.channels.contains_key(c) && !out.iter().any(|(x, _)| x == c) {
                out.push((c.clone(), i));
            }
        };
        let mut first = None;
        for (i, r) in self.routes.iter().enumerate() {
            if all_match(&r.matchers, labels) {
                first.get_or_insert(i);
                for c in &r.channels {
                    push(c, i, &mut out);
                }
                if !r.continue_matching {
                    break;
                }
            }
        }
        let fallback = first.unwrap_or(self.routes.len());
        if first.is_none() {
            for c in &self.default.channels {
                push(c, fallback, &mut out);
            }
        }
        for c in rule_channels {
            push(c, fallback, &mut out);
        }
        out
    }
}

/// One aggregation group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub channel: String,
    pub route: usize,
    pub labels: BTreeMap<String, String>,
    /// Latest firing or resolved transition per fingerprint.
    pub alerts: BTreeMap<String, Transition>,
    pub next_flush_ms: i64,
    pub last_sent_ms: Option<i64>,
    /// Notifications sent so far (part of their idempotency keys).
    pub seq: u64,
    /// When this group opened (wall ms, unique per group id): a group that closes and
    /// opens again for the next incident starts `seq` over, and its notifications must not
    /// reuse the ids the last incident's were delivered under.
    #[serde(default)]
    pub opened_ms: i64,
    /// Fingerprints whose firing the last notification carried.
    pub notified_firing: BTreeSet<String>,
    /// Fingerprints held back by a silence at some flush (their resolution is not news).
    #[serde(default)]
    pub silenced: BTreeSet<String>,
}

/// What one group flush sends.
#[derive(Debug, Clone, PartialEq)]
pub struct Dispatch {
    pub channel: String,
    /// Stable id of the group (hex), for idempotency keys and ordering.
    pub group_id: String,
    /// `{alertname="…", …}`, as Alertmanager's `groupKey`.
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
    /// [`Group::opened_ms`]: with `seq`, unique per notification of this group id.
    pub opened_ms: i64,
    pub seq: u64,
    pub firing: Vec<Transition>,
    pub resolved: Vec<Transition>,
    /// Fingerprints firing now that the previous notification did not carry.
    pub new_firing: BTreeSet<String>,
    /// Resolved alerts whose firing was never notified (fired and resolved in between).
    pub unnotified_resolved: BTreeSet<String>,
    /// Nothing changed: a repeat after `repeat_interval`.
    pub repeat: bool,
}

/// Counts of one flush, for metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FlushStats {
    pub silenced: usize,
}

/// How long the router remembers the last transition of an alert (in event time), to
/// ignore one it has already taken in (an inbox batch replayed after a crash).
const SEEN_RETENTION_MS: i64 = 7 * 24 * 3600 * 1000;

/// Every aggregation group.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Router {
    groups: BTreeMap<String, Group>,
    /// Last (evaluation time, state) taken in per alert fingerprint.
    #[serde(default)]
    seen: BTreeMap<String, (i64, AlertState)>,
    /// The latest [`Group::opened_ms`] handed out; the next is later even when the clock is
    /// not.
    #[serde(default)]
    last_opened_ms: i64,
}

fn group_id(channel: &str, route: usize, labels: &BTreeMap<String, String>) -> String {
    let route = route.to_le_bytes();
    crate::time::fnv_hex(
        [channel.as_bytes(), &route[..]].into_iter().chain(
            labels
                .iter()
                .flat_map(|(k, v)| [k.as_bytes(), v.as_bytes()]),
        ),
    )
}

fn group_key(labels: &BTreeMap<String, String>) -> String {
    let inner: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(","))
}

impl Router {
    pub fn groups(&self) -> impl Iterator<Item = &Group> {
        self.groups.values()
    }

    /// Earliest flush time of any group.
    pub fn next_flush_ms(&self) -> Option<i64> {
        self.groups.values().map(|g| g.next_flush_ms).min()
    }

    /// Takes one transition in; pending and inactive ones are not notifications.
    pub fn ingest(&mut self, t: &Transition, routing: &Routing, now_ms: i64) {
        if !matches!(t.to, AlertState::Firing | AlertState::Resolved) {
            return;
        }
        // A transition already taken in (or older than the last one) changes nothing: a
        // replayed batch must not resend a resolve as news.
        if let Some(&(at, to)) = self.seen.get(&t.fingerprint) {
            if t.at_ms < at || (t.at_ms == at && t.to == to) {
                return;
            }
        }
        self.seen.insert(t.fingerprint.clone(), (t.at_ms, t.to));
        if self.seen.len().is_multiple_of(1024) {
            let newest = self.seen.values().map(|v| v.0).max().unwrap_or(0);
            self.seen.retain(|_, v| v.0 + SEEN_RETENTION_MS >= newest);
        }
        // A resolve goes wherever the alert is, even if the routes changed since it fired
        // (a new group_by, a reordered route): no group keeps a resolved alert firing.
        if t.to == AlertState::Resolved {
            for g in self.groups.values_mut() {
                if let Some(a) = g.alerts.get_mut(&t.fingerprint) {
                    *a = t.clone();
                }
            }
            return;
        }
        let labels = super::alertmanager::labels(t);
        for (channel, route) in routing.targets(&labels, &t.channels) {
            let r = routing.route(route);
            let glabels: BTreeMap<String, String> = r
                .group_by
                .iter()
                .map(|k| (k.clone(), labels.get(k).cloned().unwrap_or_default()))
                .collect();
            let id = group_id(&channel, route, &glabels);
            match self.groups.get_mut(&id) {
                Some(g) => {
                    g.alerts.insert(t.fingerprint.clone(), t.clone());
                }
                None => {
                    let opened_ms = now_ms.max(self.last_opened_ms + 1);
                    self.last_opened_ms = opened_ms;
                    let mut alerts = BTreeMap::new();
                    alerts.insert(t.fingerprint.clone(), t.clone());
                    self.groups.insert(
                        id,
                        Group {
                            channel,
                            route,
                            labels: glabels,
                            alerts,
                            next_flush_ms: now_ms + r.group_wait_ms,
                            last_sent_ms: None,
                            seq: 0,
                            opened_ms,
                            notified_firing: BTreeSet::new(),
                            silenced: BTreeSet::new(),
                        },
                    );
                }
            }
        }
    }

    /// Flushes every group that is due at `now_ms`.
    pub fn flush(
        &mut self,
        routing: &Routing,
        silences: &Silences,
        now_ms: i64,
    ) -> (Vec<Dispatch>, FlushStats) {
        let mut out = Vec::new();
        let mut stats = FlushStats::default();
        // Groups of channels no longer configured go.
        self.groups
            .retain(|_, g| routing.channels.contains_key(&g.channel));
        for (id, g) in self.groups.iter_mut() {
            if g.next_flush_ms > now_ms {
                continue;
            }
            let r = routing.route(g.route);
            let send_resolved = routing.channels.get(&g.channel).copied().unwrap_or(true);
            let mut firing = Vec::new();
            let mut resolved = Vec::new();
            let mut unnotified_resolved = BTreeSet::new();
            for (fp, t) in &g.alerts {
                let muted = silences
                    .muted_by(&super::alertmanager::labels(t), now_ms)
                    .is_some();
                match t.to {
                    AlertState::Firing if muted => {
                        stats.silenced += 1;
                        g.silenced.insert(fp.clone());
                    }
                    AlertState::Firing => firing.push(t.clone()),
                    AlertState::Resolved if g.notified_firing.contains(fp) => {
                        resolved.push(t.clone())
                    }
                    AlertState::Resolved
                        if !muted
                            && !g.silenced.contains(fp)
                            && !g.notified_firing.contains(fp) =>
                    {
                        unnotified_resolved.insert(fp.clone());
                        resolved.push(t.clone());
                    }
                    _ => {}
                }
            }
            let new_firing: BTreeSet<String> = firing
                .iter()
                .filter(|t| !g.notified_firing.contains(&t.fingerprint))
                .map(|t| t.fingerprint.clone())
                .collect();
            let repeat_due = g
                .last_sent_ms
                .is_none_or(|l| now_ms - l >= r.repeat_interval_ms);
            // Resolved alerts never notified as firing go out regardless of send_resolved:
            // they are the first news of the incident.
            if !send_resolved {
                resolved.retain(|t| unnotified_resolved.contains(&t.fingerprint));
            }
            let resolved_to_send = !resolved.is_empty();
            let repeat =
                new_firing.is_empty() && !resolved_to_send && !firing.is_empty() && repeat_due;
            let send = !new_firing.is_empty() || resolved_to_send || repeat;
            if send {
                g.seq += 1;
                g.last_sent_ms = Some(now_ms);
                out.push(Dispatch {
                    channel: g.channel.clone(),
                    group_id: id.clone(),
                    group_key: group_key(&g.labels),
                    group_labels: g.labels.clone(),
                    opened_ms: g.opened_ms,
                    seq: g.seq,
                    firing: firing.clone(),
                    resolved,
                    new_firing,
                    unnotified_resolved,
                    repeat,
                });
            }
            // Notified alerts stay notified while they fire (a silence does not make their
            // resolution any less news); what this flush sent joins them.
            let still_firing: BTreeSet<&String> = g
                .alerts
                .iter()
                .filter(|(_, t)| t.to == AlertState::Firing)
                .map(|(fp, _)| fp)
                .collect();
            g.notified_firing.retain(|fp| still_firing.contains(fp));
            if send {
                g.notified_firing
                    .extend(firing.iter().map(|t| t.fingerprint.clone()));
            }
            g.alerts.retain(|_, t| t.to == AlertState::Firing);
            let alive: BTreeSet<String> = g.alerts.keys().cloned().collect();
            g.silenced.retain(|fp| alive.contains(fp));
            g.next_flush_ms = now_ms + r.group_interval_ms;
        }
        self.groups.retain(|_, g| !g.alerts.is_empty());
        (out, stats)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::rules::Severity;

    fn t(rule: &str, service: &str, to: AlertState, at: i64) -> Transition {
        let labels = vec![("service".to_string(), service.to_string())];
        Transition {
            at_ms: at,
            rule: rule.into(),
            fingerprint: crate::detect::alerts::fingerprint(rule, &labels),
            from: AlertState::Pending,
            to,
            severity: if rule == "p" {
                Severity::Page
            } else {
                Severity::Alert
            },
            labels,
            rule_labels: BTreeMap::new(),
            signal: "error_rate".into(),
            numbers: Default::default(),
            threshold: 0.01,
            range_start_ms: at - 60_000,
            range_end_ms: at,
            baseline_desc: String::new(),
            reason: String::new(),
            summary: format!("{rule} on {service}"),
            description: String::new(),
            runbook_url: String::new(),
            channels: vec![],
            action: None,
            fired_at_ms: Some(at),
            onset_ms: None,
            detection_delay_ms: None,
            details: Default::default(),
        }
    }

    fn routing(extra: &str) -> Routing {
        let c: NotifyConfig = toml::from_str(&format!(
            r#"
default_channels = ["hook"]
group_wait = "30s"
group_interval = "5m"
repeat_interval = "4h"
[channels.hook]
type = "webhook"
url = "http://127.0.0.1:1/"
[channels.pd]
type = "pagerduty"
routing_key_env = "K"
send_resolved = false
{extra}
"#
        ))
        .unwrap();
        c.validate().unwrap();
        Routing::new(&c)
    }

    const S: i64 = 1000;

    #[test]
    fn fifty_series_of_one_incident_are_one_notification() {
        let r = routing("");
        let mut router = Router::default();
        for i in 0..50 {
            router.ingest(
                &t("err", &format!("svc{i}"), AlertState::Firing, 0),
                &r,
                i * 100,
            );
        }
        let none = Silences::default();
        assert!(router.flush(&r, &none, 29 * S).0.is_empty(), "group_wait");
        let (d, _) = router.flush(&r, &none, 30 * S);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].firing.len(), 50);
        assert_eq!(d[0].new_firing.len(), 50);
        assert_eq!(d[0].group_key, "{alertname=\"err\"}");
        // Unchanged: nothing until the repeat interval.
        assert!(router.flush(&r, &none, 30 * S + 300 * S).0.is_empty());
        let (d, _) = router.flush(&r, &none, 30 * S + 4 * 3600 * S);
        assert!(d[0].repeat && d[0].seq == 2, "{d:?}");
    }

    #[test]
    fn changes_wait_for_the_group_interval_and_resolved_follow_firing() {
        let r = routing("");
        let none = Silences::default();
        let mut router = Router::default();
        router.ingest(&t("err", "a", AlertState::Firing, 0), &r, 0);
        assert_eq!(router.flush(&r, &none, 30 * S).0.len(), 1);
        router.ingest(&t("err", "b", AlertState::Firing, 40), &r, 40 * S);
        router.ingest(&t("err", "a", AlertState::Resolved, 50), &r, 50 * S);
        assert!(
            router.flush(&r, &none, 60 * S).0.is_empty(),
            "group_interval"
        );
        let (d, _) = router.flush(&r, &none, 330 * S);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].firing.len(), 1);
        assert_eq!(d[0].resolved.len(), 1);
        assert_eq!(d[0].resolved[0].labels[0].1, "a");
        // `b` resolves: the last notification, then the group is gone.
        router.ingest(&t("err", "b", AlertState::Resolved, 400), &r, 400 * S);
        let (d, _) = router.flush(&r, &none, 630 * S);
        assert_eq!((d[0].firing.len(), d[0].resolved.len()), (0, 1));
        assert_eq!(router.groups().count(), 0);
        // Fired and resolved inside group_wait: still news, sent once as resolved.
        router.ingest(&t("err", "c", AlertState::Firing, 700), &r, 700 * S);
        router.ingest(&t("err", "c", AlertState::Resolved, 710), &r, 710 * S);
        let (d, _) = router.flush(&r, &none, 800 * S);
        assert_eq!((d[0].firing.len(), d[0].resolved.len()), (0, 1));
        assert!(d[0]
            .unnotified_resolved
            .contains(&d[0].resolved[0].fingerprint));
        assert_eq!(router.groups().count(), 0);
    }

    #[test]
    fn a_group_that_closes_and_opens_again_sends_under_new_ids() {
        // One incident: the canary fires and resolves; the group closes. The next incident
        // (another series of the same rule) opens the same group id again: its
        // notifications must not reuse the ids the first one was delivered under (the
        // outbox would take them as already delivered and drop them).
        let r = routing("");
        let none = Silences::default();
        let mut router = Router::default();
        let mut keys = BTreeSet::new();
        let sent = |keys: &mut BTreeSet<(String, i64, u64)>, d: Vec<Dispatch>| {
            for d in d {
                assert!(
                    keys.insert((d.group_id.clone(), d.opened_ms, d.seq)),
                    "{d:?} reuses a key"
                );
            }
        };
        router.ingest(&t("err", "canary", AlertState::Firing, 0), &r, 0);
        sent(&mut keys, router.flush(&r, &none, 30 * S).0);
        router.ingest(&t("err", "canary", AlertState::Resolved, 40), &r, 40 * S);
        sent(&mut keys, router.flush(&r, &none, 330 * S).0);
        assert_eq!(router.groups().count(), 0);
        // The clock did not move (or went back): the new group still opens later.
        router.ingest(&t("err", "stable", AlertState::Firing, 400), &r, 0);
        let (d, _) = router.flush(&r, &none, 30 * S);
        assert_eq!(d[0].firing[0].labels[0].1, "stable");
        sent(&mut keys, d);
        router.ingest(&t("err", "stable", AlertState::Resolved, 500), &r, 500 * S);
        sent(&mut keys, router.flush(&r, &none, 800 * S).0);
        assert_eq!(keys.len(), 4);
        // A restart restores the state: the next group opens after the saved ones too.
        let mut restored: Router =
            serde_json::from_str(&serde_json::to_string(&router).unwrap()).unwrap();
        restored.ingest(&t("err", "canary", AlertState::Firing, 900), &r, 0);
        sent(&mut keys, restored.flush(&r, &none, 30 * S).0);
        assert_eq!(keys.len(), 5);
    }

    #[test]
    fn routes_by_severity_with_rule_channels_and_continue() {
        let r = routing(
            r#"
[[routes]]
matchers = ['severity="page"']
channels = ["pd"]
group_wait = "0s"
"#,
        );
        let labels = |sev: &str| {
            [("severity".to_string(), sev.to_string())]
                .into_iter()
                .collect::<BTreeMap<_, _>>()
        };
        assert_eq!(r.targets(&labels("page"), &[]), vec![("pd".to_string(), 0)]);
        assert_eq!(
            r.targets(&labels("alert"), &[]),
            vec![("hook".to_string(), 1)]
        );
        // The rule names a channel too; unknown names are skipped.
        assert_eq!(
            r.targets(&labels("page"), &["hook".into(), "sms".into()]),
            vec![("pd".to_string(), 0), ("hook".to_string(), 0)]
        );
        let mut router = Router::default();
        router.ingest(&t("p", "a", AlertState::Firing, 0), &r, 0);
        let (d, _) = router.flush(&r, &Silences::default(), 0);
        assert_eq!(d[0].channel, "pd");
        // pd does not send resolved: the group closes silently.
        router.ingest(&t("p", "a", AlertState::Resolved, 10), &r, 10 * S);
        assert!(router.flush(&r, &Silences::default(), 400 * S).0.is_empty());
        assert_eq!(router.groups().count(), 0);
    }

    #[test]
    fn a_replayed_batch_changes_nothing_and_a_silence_does_not_swallow_a_resolve() {
        let r = routing("");
        let none = Silences::default();
        let mut router = Router::default();
        let fire = t("err", "a", AlertState::Firing, 0);
        let resolve = t("err", "a", AlertState::Resolved, 100);
        router.ingest(&fire, &r, 0);
        router.ingest(&t("err", "b", AlertState::Firing, 0), &r, 0);
        assert_eq!(router.flush(&r, &none, 30 * S).0.len(), 1);
        router.ingest(&resolve, &r, 100 * S);
        let (d, _) = router.flush(&r, &none, 330 * S);
        assert_eq!(d[0].resolved.len(), 1);
        // The same inbox batch again (a crash before its file was deleted): nothing to send.
        router.ingest(&fire, &r, 340 * S);
        router.ingest(&resolve, &r, 340 * S);
        assert!(router.flush(&r, &none, 700 * S).0.is_empty());

        // `b` was notified, then silenced; its resolve still goes out.
        let mut sil = Silences::default();
        sil.add(
            super::super::silence::Silence {
                id: "s".into(),
                matchers: vec![Matcher::parse("service=\"b\"").unwrap()],
                starts_at_ms: 0,
                ends_at_ms: i64::MAX / 2,
                created_by: String::new(),
                comment: String::new(),
                from_config: false,
            },
            0,
        )
        .unwrap();
        assert!(router.flush(&r, &sil, 1_000 * S).0.is_empty());
        router.ingest(&t("err", "b", AlertState::Resolved, 1_100), &r, 1_100 * S);
        let (d, _) = router.flush(&r, &sil, 1_400 * S);
        assert_eq!(d[0].resolved.len(), 1, "{d:?}");
        assert_eq!(d[0].resolved[0].labels[0].1, "b");
    }

    #[test]
    fn a_resolve_finds_its_alert_after_the_routes_changed() {
        let before = routing("");
        let mut after = routing("");
        after.default.group_by = vec!["alertname".into(), "service".into()];
        let none = Silences::default();
        let mut router = Router::default();
        router.ingest(&t("err", "a", AlertState::Firing, 0), &before, 0);
        assert_eq!(router.flush(&before, &none, 30 * S).0.len(), 1);
        // Restarted with a new group_by: the resolve still closes the old group.
        router.ingest(&t("err", "a", AlertState::Resolved, 100), &after, 100 * S);
        let (d, _) = router.flush(&after, &none, 400 * S);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].resolved.len(), 1);
        assert_eq!(router.groups().count(), 0);
    }

    #[test]
    fn silenced_alerts_are_held_back_until_the_silence_ends() {
        let r = routing("");
        let mut sil = Silences::default();
        sil.add(
            super::super::silence::Silence {
                id: "s1".into(),
                matchers: vec![Matcher::parse("service=\"a\"").unwrap()],
                starts_at_ms: 0,
                ends_at_ms: 100 * S,
                created_by: String::new(),
                comment: String::new(),
                from_config: false,
            },
            0,
        )
        .unwrap();
        let mut router = Router::default();
        router.ingest(&t("err", "a", AlertState::Firing, 0), &r, 0);
        router.ingest(&t("err", "b", AlertState::Firing, 0), &r, 0);
        let (d, st) = router.flush(&r, &sil, 30 * S);
        assert_eq!(st.silenced, 1);
        assert_eq!(d[0].firing.len(), 1);
        assert_eq!(d[0].firing[0].labels[0].1, "b");
        // After the silence, `a` is news.
        let (d, _) = router.flush(&r, &sil, 330 * S);
        assert_eq!(d[0].new_firing.len(), 1);
        assert_eq!(d[0].firing.len(), 2);
    }
}
