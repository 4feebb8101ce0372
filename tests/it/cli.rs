//! The command line: `check` validates config (exit 2 naming the field), `--help` lists
//! the commands.

use std::process::Command;

use crate::support::*;

fn check(config_text: &str, env: &[(&str, &str)]) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("driftwatch.toml");
    std::fs::write(&path, config_text).unwrap();
    let out = Command::new(bin())
        .args(["check", "--config", path.to_str().unwrap()])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_accepts_the_example_config() {
    let example = std::fs::read_to_string(repo_root().join("driftwatch.example.toml")).unwrap();
    let (code, out) = check(&example, &[]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(": ok"), "{out}");
}

#[test]
fn check_refuses_a_bad_analysis_naming_the_field() {
    let base = "[[analyses]]\nname = \"c\"\nkind = \"canary\"\nservice = \"chat\"\n";
    let (code, out) = check(&format!("{base}group_by = [\"route\"]\n"), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("analyses[0].group_by") && out.contains("series label"),
        "{out}"
    );
    let (code, out) = check(
        &format!("{base}[[analyses.metrics]]\nmetric = \"p99\"\n"),
        &[],
    );
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("analyses[0].metrics[0]") && out.contains("latency_p99"),
        "{out}"
    );
    let (code, out) = check(&format!("{base}{base}"), &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("analyses[1].name"), "{out}");
}

#[test]
fn check_names_the_offending_field_and_exits_2() {
    let (code, out) = check("[windows]\nwidth = \"7s\"\n", &[]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("windows.width"), "{out}");

    let (code, out) = check("[kafka]\nbootstrap_server = \"x:1\"\n", &[]);
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("bootstrap_server") && out.contains("line 2"),
        "{out}"
    );

    let (code, out) = check("", &[("DRIFTWATCH_SERIES__MAX_ACTIVE", "many")]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("DRIFTWATCH_SERIES__MAX_ACTIVE"), "{out}");

    let out = Command::new(bin())
        .args(["check", "--config", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}

#[test]
fn env_overrides_apply_to_check() {
    let (code, out) = check(
        "",
        &[("DRIFTWATCH_KAFKA__BOOTSTRAP_SERVERS", "broker.example:9093")],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("broker.example:9093"), "{out}");
}

#[test]
fn help_lists_every_command() {
    let out = Command::new(bin()).arg("--help").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    for cmd in ["run", "produce", "check", "demo"] {
        assert!(text.contains(cmd), "{text}");
    }
}
