//! `driftwatch check --rules DIR`: the shipped rules pass; broken rule files are refused
//! with exit code 2 and messages naming file, line, rule and field (snapshots: the exact
//! text a user sees).

use std::process::Command;

use crate::support::*;

/// Runs `check --rules` on a directory holding `files`; returns (exit code, output with the
/// directory replaced by `RULES`).
fn check_rules(files: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let out = Command::new(bin())
        .args(["check", "--rules", dir.path().to_str().unwrap()])
        .env_remove("DRIFTWATCH_CONFIG")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = text.replace(dir.path().to_str().unwrap(), "RULES");
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn shipped_rules_pass_check() {
    let out = Command::new(bin())
        .args(["check", "--rules"])
        .arg(repo_root().join("rules"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for rule in [
        "judge_score_drop",
        "p99_latency_regression",
        "error_rate_high",
        "error_rate_breaker",
        "canary_error_rate",
    ] {
        assert!(text.contains(rule), "{rule} missing from:\n{text}");
    }
    // Every runbook a shipped rule links to exists in the repository.
    for f in std::fs::read_dir(repo_root().join("rules")).unwrap() {
        let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
        for line in text.lines().filter(|l| l.contains("runbook_url:")) {
            let path = line
                .split("/blob/main/")
                .nth(1)
                .expect("runbook URL into the repo");
            assert!(
                repo_root().join(path.trim()).is_file(),
                "missing runbook {path}"
            );
        }
    }
}

const HEAD: &str = "rules:\n  - name: r1\n";

#[test]
fn semantic_errors_name_file_line_rule_and_field() {
    let (code, out) = check_rules(&[(
        "latency.yaml",
        &format!(
            "{HEAD}    signal: {{ metric: latency_ms, stat: p99 }}
    over: 5m
    baseline: {{ trailing: 1h }}
    condition: {{ effect: ratio, above: 2.0, recover: 2.5 }}
    test: {{ kind: welch_t }}
    min_samples: {{ current: 50 }}
    severity: alert
    annotations:
      summary: \"{{{{ value | percent }}}} on {{{{ labels.model }}}}\"
"
        ),
    )]);
    assert_eq!(code, 2, "{out}");
    let expected = "error: rules in RULES:
  RULES/latency.yaml:2: rule \"r1\": condition.recover: must be on the healthy side of the threshold (≤ 2) so the alert cannot flap
  RULES/latency.yaml:2: rule \"r1\": test.kind: welch_t does not apply to this signal; use exceedance, quantile_ci, mann_whitney, ks or anderson_darling
  RULES/latency.yaml:2: rule \"r1\": min_samples.current: 50 is too few for p99: fewer than 10 samples would lie beyond it; use at least 1000
  RULES/latency.yaml:2: rule \"r1\": annotations.summary: unknown format \"percent\" in {{ value | percent }}; use pct, ms, round, usd
  RULES/latency.yaml:2: rule \"r1\": annotations.runbook_url: every rule needs a runbook link: what the first responder checks and does
";
    assert_eq!(out, expected);
}

#[test]
fn yaml_and_schema_errors_point_at_line_and_column() {
    // A misspelt key.
    let (code, out) = check_rules(&[(
        "errors.yaml",
        &format!(
            "{HEAD}    signal: {{ metric: error_rate }}
    over: 5m
    baseline: {{ value: 0.01 }}
    condition: {{ effect: value, above: 0.01 }}
    severty: alert
"
        ),
    )]);
    assert_eq!(code, 2);
    assert_eq!(
        out,
        "error: rules in RULES:
  RULES/errors.yaml: line 7 column 5: unknown field `severty`, expected one of name, description, match, by, signal, over, horizons, every, baseline, condition, test, min_samples, for, keep_firing_for, severity, labels, annotations, channels, action
"
    );
    // A duration that is not one.
    let (code, out) = check_rules(&[("d.yaml", &format!("{HEAD}    over: soon\n"))]);
    assert_eq!(code, 2);
    assert!(out.contains("RULES/d.yaml: line 3 column"), "{out}");
    // Bad YAML.
    let (code, out) = check_rules(&[("y.yaml", "rules:\n  - name: [unclosed\n")]);
    assert_eq!(code, 2);
    assert!(out.contains("RULES/y.yaml: line "), "{out}");
}

#[test]
fn rule_combinations_that_cannot_work_are_refused() {
    let rule = |name: &str, body: &str| {
        format!(
            "  - name: {name}
{body}
    severity: warning
    annotations: {{ summary: s, runbook_url: https://x }}
"
        )
    };
    let text = format!(
        "rules:\n{}{}{}{}{}",
        rule(
            "slow_p99",
            "    signal: { metric: latency_ms, stat: p99 }\n    over: 30s\n    horizons: [1m, 25s, soon]\n    every: 10s\n    baseline: { trailing: 1h }\n    condition: { effect: ratio, above: 2 }\n    test: { kind: exceedance, against: threshold }"
        ),
        rule(
            "two_baselines",
            "    signal: { metric: error_rate }\n    over: 90s\n    baseline: { value: 0.01, peer: { deployment: stable } }\n    condition: { effect: value, above: 0.01 }"
        ),
        rule(
            "wrong_label",
            "    match: { model: gpt }\n    signal: { metric: judge_score }\n    over: 5m\n    baseline: { trailing: 1h, across: [prompt] }\n    condition: { effect: relative_change, below: -0.05 }"
        ),
        rule(
            "distance",
            "    signal: { metric: distribution, of: query_type }\n    over: 5m\n    baseline: { trailing: 1h }\n    condition: { effect: ratio, above: 2 }\n    test: { kind: wilson }"
        ),
        rule(
            "no_error_type",
            "    signal: { metric: error_type_rate }\n    over: 5m\n    baseline: { value: 0.01 }\n    condition: { effect: value, above: 0.01 }\n    test: { kind: two_proportion_z }"
        ),
    );
    let (code, out) = check_rules(&[("combo.yaml", &text)]);
    assert_eq!(code, 2, "{out}");
    let expected = "error: rules in RULES:
  RULES/combo.yaml:2: rule \"slow_p99\": horizons[0]: 1m is longer than over (30s); over is the longest horizon
  RULES/combo.yaml:2: rule \"slow_p99\": horizons[1]: 25s is not a multiple of windows.slice (10s); rules read whole closed windows
  RULES/combo.yaml:2: rule \"slow_p99\": horizons[2]: \"soon\" is not a duration (expected number at 0); write e.g. 1m or 30s
  RULES/combo.yaml:2: rule \"slow_p99\": test.against: threshold applies to welch_t with effect relative_change or difference against a trailing or peer baseline (binomial, wilson and exceedance test the threshold already)
  RULES/combo.yaml:2: rule \"slow_p99\": baseline.offset: over + offset must be at least windows.width + windows.allowed_lateness (1m 30s) for a rule stepping every 10s: the baseline would read windows that are still open
  RULES/combo.yaml:12: rule \"two_baselines\": over: 1m 30s is not a multiple of windows.width (1m); rules read whole closed windows
  RULES/combo.yaml:12: rule \"two_baselines\": baseline: give exactly one of trailing (a range before the current one), peer (label values of a peer series) or value (a constant)
  RULES/combo.yaml:19: rule \"wrong_label\": match.model: \"model\" is not a series label; series.labels is [service, request_model, prompt_id, prompt_version, deployment, variant]
  RULES/combo.yaml:19: rule \"wrong_label\": baseline.across: \"prompt\" is not a series label; series.labels is [service, request_model, prompt_id, prompt_version, deployment, variant]
  RULES/combo.yaml:27: rule \"distance\": condition.effect: ratio compares single values; a distribution signal needs effect psi or jensen_shannon
  RULES/combo.yaml:27: rule \"distance\": test.kind: wilson does not apply to this signal; use chi_square
  RULES/combo.yaml:35: rule \"no_error_type\": signal.error_type: metric error_type_rate needs the error_type to watch, e.g. error_type: rate_limit
";
    assert_eq!(out, expected);
}

#[test]
fn duplicate_rule_names_across_files_are_refused() {
    let rule = "rules:\n  - name: same\n    signal: { metric: error_rate }\n    over: 5m\n    baseline: { value: 0.01 }\n    condition: { effect: value, above: 0.01 }\n    severity: info\n    annotations: { summary: s, runbook_url: https://x }\n";
    let (code, out) = check_rules(&[("a.yaml", rule), ("b.yaml", rule)]);
    assert_eq!(code, 2);
    assert_eq!(
        out,
        "error: rules in RULES:\n  RULES/b.yaml:2: rule \"same\": name: duplicate rule name; also defined at RULES/a.yaml:2\n"
    );
}

#[test]
fn rules_that_could_never_work_are_refused() {
    let head = |name: &str| format!("  - name: {name}\n    severity: info\n");
    let text = format!(
        "rules:\n{}{}{}",
        head("percent_not_rate")
            + "    signal: { metric: error_rate }\n    over: 5m\n    baseline: { value: 5 }\n    condition: { effect: value, above: 5 }\n    annotations: { summary: s, runbook_url: https://x }\n",
        head("peer_without_match")
            + "    signal: { metric: error_rate }\n    over: 5m\n    baseline: { peer: { deployment: stable } }\n    condition: { effect: ratio, above: 2 }\n    annotations: { summary: s, runbook_url: https://x }\n",
        head("empty_labels")
            + "    by: [service]\n    signal: { metric: error_rate }\n    over: 5m\n    baseline: { value: 0.01 }\n    condition: { effect: value, above: 0.01 }\n    annotations: { summary: \"{{ labels.request_model }} {{ labels.judge }}\", runbook_url: https://x }\n",
    );
    let (code, out) = check_rules(&[("never.yaml", &text)]);
    assert_eq!(code, 2, "{out}");
    assert_eq!(
        out,
        "error: rules in RULES:
  RULES/never.yaml:2: rule \"percent_not_rate\": baseline.value: 5 is not a rate; rates are proportions between 0 and 1 (1 % = 0.01)
  RULES/never.yaml:9: rule \"peer_without_match\": baseline.peer.deployment: add match: { deployment: <the other value> } so the peer series (deployment=stable) is not compared with itself
  RULES/never.yaml:16: rule \"empty_labels\": annotations.summary: {{ labels.request_model }} would be empty: alerts of this rule carry the labels [service] (see `by`; `judge` only when signal.judge is not set)
"
    );
}

#[test]
fn a_model_breaker_rule_that_drops_the_model_is_refused() {
    let rule = r#"rules:
  - name: brk
    signal: { metric: error_rate }
    over: 30s
    every: 10s
    by: [service]
    baseline: { value: 0.05 }
    condition: { effect: value, above: 0.05, recover: 0.03 }
    severity: page
    annotations: { summary: "rate {{ value }}", runbook_url: https://x }
    action: circuit_breaker
"#;
    let (code, out) = check_rules(&[("brk.yaml", rule)]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("rule brk (RULES/brk.yaml:2)") && out.contains("`request_model`"),
        "{out}"
    );
    // Keeping the model (or scoping breakers per series) is fine.
    let (code, out) = check_rules(&[(
        "brk.yaml",
        &rule.replace("by: [service]", "by: [service, request_model]"),
    )]);
    assert_eq!(code, 0, "{out}");
}
