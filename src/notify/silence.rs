//! Label matchers (Alertmanager syntax) and silences: a silence mutes the notifications of
//! every alert whose labels match all its matchers between `starts_at` and `ends_at`. The
//! alerts themselves still fire and are recorded; only delivery is muted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum MatchOp {
    #[serde(rename = "=")]
    Eq,
    #[serde(rename = "!=")]
    NotEq,
    #[serde(rename = "=~")]
    Re,
    #[serde(rename = "!~")]
    NotRe,
}

/// `name="value"`, `name!="value"`, `name=~"regex"`, `name!~"regex"` (the regex is anchored,
/// as in Prometheus). A missing label is the empty string.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "MatcherJson", into = "MatcherJson")]
pub struct Matcher {
    pub name: String,
    pub op: MatchOp,
    pub value: String,
    re: Option<regex::Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

/// The API form, as Alertmanager's: `{"name", "value", "isRegex", "isEqual"}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MatcherJson {
    pub name: String,
    pub value: String,
    #[serde(default)]
    pub is_regex: bool,
    #[serde(default = "yes")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

impl TryFrom<MatcherJson> for Matcher {
    type Error = String;
    fn try_from(m: MatcherJson) -> Result<Self, String> {
        let op = match (m.is_regex, m.is_equal) {
            (false, true) => MatchOp::Eq,
            (false, false) => MatchOp::NotEq,
            (true, true) => MatchOp::Re,
            (true, false) => MatchOp::NotRe,
        };
        Matcher::new(&m.name, op, &m.value)
    }
}

impl From<Matcher> for MatcherJson {
    fn from(m: Matcher) -> Self {
        MatcherJson {
            name: m.name,
            value: m.value,
            is_regex: matches!(m.op, MatchOp::Re | MatchOp::NotRe),
            is_equal: matches!(m.op, MatchOp::Eq | MatchOp::Re),
        }
    }
}

impl Matcher {
    pub fn new(name: &str, op: MatchOp, value: &str) -> Result<Matcher, String> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        {
            return Err(format!(
                "{name:?} is not a label name (letters, digits, `_`, `.`)"
            ));
        }
        let re = match op {
            MatchOp::Re | MatchOp::NotRe => Some(
                regex::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("{name}: bad regex {value:?}: {e}"))?,
            ),
            _ => None,
        };
        Ok(Matcher {
            name: name.to_string(),
            op,
            value: value.to_string(),
            re,
        })
    }

    /// Parses `name="value"` (quotes optional) with `=`, `!=`, `=~` or `!~`.
    pub fn parse(s: &str) -> Result<Matcher, String> {
        let s = s.trim();
        let i = s
            .find(['=', '!'])
            .ok_or_else(|| format!("{s:?} is not a matcher like name=\"value\""))?;
        let name = s[..i].trim();
        let rest = &s[i..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (MatchOp::Re, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (MatchOp::NotRe, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (MatchOp::NotEq, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (MatchOp::Eq, v)
        } else {
            return Err(format!("{s:?} is not a matcher like name=\"value\""));
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        Matcher::new(name, op, value)
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.name).map(String::as_str).unwrap_or("");
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::NotEq => v != self.value,
            MatchOp::Re => self.re.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::NotRe => !self.re.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match self.op {
            MatchOp::Eq => "=",
            MatchOp::NotEq => "!=",
            MatchOp::Re => "=~",
            MatchOp::NotRe => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

/// All matchers match.
pub fn all_match(ms: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    ms.iter().all(|m| m.matches(labels))
}

/// One silence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Silence {
    pub id: String,
    pub matchers: Vec<Matcher>,
    pub starts_at_ms: i64,
    pub ends_at_ms: i64,
    #[serde(default)]
    pub created_by: String,
    #[serde(default)]
    pub comment: String,
    /// From the configuration (cannot be expired through the API).
    #[serde(default)]
    pub from_config: bool,
}

impl Silence {
    pub fn active(&self, now_ms: i64) -> bool {
        self.starts_at_ms <= now_ms && now_ms < self.ends_at_ms
    }

    pub fn state(&self, now_ms: i64) -> &'static str {
        if now_ms < self.starts_at_ms {
            "pending"
        } else if now_ms < self.ends_at_ms {
            "active"
        } else {
            "expired"
        }
    }
}

/// Why a silence was refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SilenceError {
    #[error("a silence needs at least one matcher")]
    NoMatchers,
    #[error("endsAt must be after startsAt and in the future")]
    BadTimes,
    #[error("no silence {0:?}")]
    NotFound(String),
    #[error("silence {0:?} comes from the configuration; remove it there")]
    FromConfig(String),
}

/// Every silence, config and API ones alike.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Silences {
    silences: BTreeMap<String, Silence>,
}

impl Silences {
    /// Adds (or replaces, same id) a silence.
    pub fn add(&mut self, s: Silence, now_ms: i64) -> Result<String, SilenceError> {
        if s.matchers.is_empty() {
            return Err(SilenceError::NoMatchers);
        }
        if s.ends_at_ms <= s.starts_at_ms || s.ends_at_ms <= now_ms {
            return Err(SilenceError::BadTimes);
        }
        let id = s.id.clone();
        self.silences.insert(id.clone(), s);
        Ok(id)
    }

    /// Ends a silence now.
    pub fn expire(&mut self, id: &str, now_ms: i64) -> Result<(), SilenceError> {
        let s = self
            .silences
            .get_mut(id)
            .ok_or_else(|| SilenceError::NotFound(id.to_string()))?;
        if s.from_config {
            return Err(SilenceError::FromConfig(id.to_string()));
        }
        s.ends_at_ms = s.ends_at_ms.min(now_ms);
        Ok(())
    }

    /// The id of an active silence muting `labels`, if any.
    pub fn muted_by(&self, labels: &BTreeMap<String, String>, now_ms: i64) -> Option<&str> {
        self.silences
            .values()
            .find(|s| s.active(now_ms) && all_match(&s.matchers, labels))
            .map(|s| s.id.as_str())
    }

    pub fn list(&self) -> impl Iterator<Item = &Silence> {
        self.silences.values()
    }

    /// Drops silences that expired more than `keep_ms` ago, and config silences no longer in
    /// the configuration (replaced by `config`).
    pub fn refresh(&mut self, config: Vec<Silence>, now_ms: i64, keep_ms: i64) {
        self.silences
            .retain(|_, s| !s.from_config && s.ends_at_ms + keep_ms > now_ms);
        for s in config {
            self.silences.insert(s.id.clone(), s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn matchers_parse_and_match_like_alertmanager() {
        let l = labels(&[("alertname", "error_rate_high"), ("service", "chat")]);
        for (m, want) in [
            ("alertname=\"error_rate_high\"", true),
            ("alertname=error_rate_high", true),
            ("service!=\"chat\"", false),
            ("service=~\"ch.*\"", true),
            ("service=~\"ch\"", false), // anchored
            ("service!~\"search|rag\"", true),
            ("team=\"\"", true), // missing label is ""
        ] {
            assert_eq!(Matcher::parse(m).unwrap().matches(&l), want, "{m}");
        }
        assert!(Matcher::parse("service=~\"(\"")
            .unwrap_err()
            .contains("bad regex"));
        assert!(Matcher::parse("no operator").is_err());
        let json: Matcher =
            serde_json::from_str(r#"{"name":"service","value":"ch.*","isRegex":true}"#).unwrap();
        assert!(json.matches(&l));
        assert_eq!(json.to_string(), "service=~\"ch.*\"");
    }

    #[test]
    fn silences_mute_in_their_time_range_and_expire() {
        let mut s = Silences::default();
        let m = vec![Matcher::parse("service=\"chat\"").unwrap()];
        let sil = |id: &str, a, b| Silence {
            id: id.into(),
            matchers: m.clone(),
            starts_at_ms: a,
            ends_at_ms: b,
            created_by: "me".into(),
            comment: "deploy".into(),
            from_config: false,
        };
        assert_eq!(s.add(sil("x", 100, 50), 0), Err(SilenceError::BadTimes));
        s.add(sil("a", 100, 200), 0).unwrap();
        let l = labels(&[("service", "chat")]);
        assert_eq!(s.muted_by(&l, 99), None);
        assert_eq!(s.muted_by(&l, 150), Some("a"));
        assert_eq!(s.muted_by(&labels(&[("service", "rag")]), 150), None);
        s.expire("a", 160).unwrap();
        assert_eq!(s.muted_by(&l, 161), None);
        assert_eq!(s.list().next().unwrap().state(161), "expired");
        assert!(matches!(s.expire("zz", 0), Err(SilenceError::NotFound(_))));
    }
}
