//! Reading rule files: a rules directory or texts given as (name, text), YAML parsing with
//! serde-saphyr, and the [`RuleError`]s that name the file, line (and column), rule and field.
//! Each parsed rule is handed to `validate`; loading never stops at the first problem.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::RuleError;
use super::spec::{Rule, RuleContext, RuleFileSpec, RuleSet};
use super::validate;

/// Loads every `*.yaml` / `*.yml` file of `dir` (sorted by name). Returns every problem found.
pub fn load_dir(dir: &Path, ctx: &RuleContext) -> Result<RuleSet, Vec<RuleError>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(source) => {
            return Err(vec![RuleError::Io {
                file: dir.to_path_buf(),
                source,
            }])
        }
    };
    let files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file()
                && matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("yaml") | Some("yml")
                )
        })
        .collect();
    let mut files = files;
    files.sort();
    let mut texts = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match std::fs::read_to_string(&f) {
            Ok(text) => texts.push((f, text)),
            Err(source) => errors.push(RuleError::Io { file: f, source }),
        }
    }
    match load_texts(&texts, ctx) {
        Ok(set) if errors.is_empty() => Ok(set),
        Ok(_) => Err(errors),
        Err(e) => {
            errors.extend(e);
            Err(errors)
        }
    }
}

/// The rules shipped in `rules/` (at the repository root), compiled in: used when the
/// configured rules directory is the default `rules` and does not exist (e.g. `driftwatch
/// demo` run from elsewhere).
pub const BUILTIN_RULES: [(&str, &str); 7] = [
    (
        "rules/errors.yaml",
        include_str!("../../../rules/errors.yaml"),
    ),
    (
        "rules/latency.yaml",
        include_str!("../../../rules/latency.yaml"),
    ),
    (
        "rules/quality.yaml",
        include_str!("../../../rules/quality.yaml"),
    ),
    ("rules/cost.yaml", include_str!("../../../rules/cost.yaml")),
    (
        "rules/registry.yaml",
        include_str!("../../../rules/registry.yaml"),
    ),
    (
        "rules/changes.yaml",
        include_str!("../../../rules/changes.yaml"),
    ),
    (
        "rules/drift.yaml",
        include_str!("../../../rules/drift.yaml"),
    ),
];

/// Parses and validates rule files given as (name, text); every problem is returned.
pub fn load_texts(
    files: &[(PathBuf, String)],
    ctx: &RuleContext,
) -> Result<RuleSet, Vec<RuleError>> {
    let mut set = RuleSet::default();
    let mut errors = Vec::new();
    for (f, text) in files {
        match parse_file(f, text, ctx) {
            Ok(rules) => set.rules.extend(rules),
            Err(e) => errors.extend(e),
        }
    }
    let mut seen: BTreeMap<&str, &Rule> = BTreeMap::new();
    for r in &set.rules {
        if let Some(first) = seen.insert(&r.name, r) {
            errors.push(RuleError::Invalid {
                file: r.file.clone(),
                line: r.line,
                rule: r.name.clone(),
                field: "name".into(),
                message: format!(
                    "duplicate rule name; also defined at {}:{}",
                    first.file.display(),
                    first.line
                ),
            });
        }
    }
    if errors.is_empty() {
        set.files = files.iter().map(|(f, _)| f.clone()).collect();
        Ok(set)
    } else {
        Err(errors)
    }
}

/// Parses and validates one rule file.
pub fn parse_file(file: &Path, text: &str, ctx: &RuleContext) -> Result<Vec<Rule>, Vec<RuleError>> {
    let spec: RuleFileSpec = serde_saphyr::from_str(text).map_err(|e| {
        vec![RuleError::Syntax {
            file: file.to_path_buf(),
            message: syntax_message(&e),
        }]
    })?;
    let mut rules = Vec::new();
    let mut errors = Vec::new();
    for r in spec.rules {
        match validate::rule(file, r, ctx) {
            Ok(rule) => rules.push(rule),
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(rules)
    } else {
        Err(errors)
    }
}

/// serde-saphyr renders a code snippet; the first line with the location is what a log wants.
fn syntax_message(e: &serde_saphyr::Error) -> String {
    let loc = e
        .location()
        .map(|l| format!("line {} column {}: ", l.line(), l.column()))
        .unwrap_or_default();
    let text = e.to_string();
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid YAML")
        .trim();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    if first.starts_with("line ") {
        first.to_string()
    } else {
        format!("{loc}{first}")
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::detect::rules::{Resolution, Signal};
    use crate::event::SeriesLabel;
    use crate::window::sketch::Metric;

    fn ctx() -> RuleContext {
        RuleContext {
            labels: vec![
                SeriesLabel::Service,
                SeriesLabel::RequestModel,
                SeriesLabel::PromptVersion,
                SeriesLabel::Deployment,
            ],
            window: Duration::from_secs(60),
            slice: Duration::from_secs(10),
            lateness: Duration::from_secs(30),
        }
    }

    const GOOD: &str = r#"
rules:
  - name: p99
    signal: { metric: latency_ms, stat: p99 }
    over: 5m
    baseline: { trailing: 1h, offset: 5m }
    condition: { effect: ratio, above: 2.0, recover: 1.5 }
    test: { kind: quantile_ci, confidence: 0.95 }
    for: 2m
    severity: alert
    annotations:
      summary: "P99 {{ value | ms }} is {{ effect | round }}x {{ baseline | ms }} on {{ labels.request_model }}"
      runbook_url: https://example.com/rb
"#;

    #[test]
    fn parses_a_rule() {
        let rules = parse_file(Path::new("r.yaml"), GOOD, &ctx()).unwrap();
        assert_eq!(rules.len(), 1);
        let r = &rules[0];
        assert_eq!(r.line, 3);
        assert_eq!(
            r.signal,
            Signal::Quantile {
                metric: Metric::LatencyMs,
                q: 0.99
            }
        );
        assert_eq!(r.over_ms, 300_000);
        assert_eq!(r.min_current, 1000);
        assert_eq!(r.lookback_ms(), 300_000 + 300_000 + 3_600_000);
        assert_eq!(r.by, vec![0, 1, 2, 3]);
        assert_eq!(r.resolution, Resolution::Window);
    }
}
