//! The docs cannot drift from the program: `--help` of every command is a snapshot
//! (`tests/cmd/*.toml`, run by trycmd; refresh with `TRYCMD=overwrite`), and every
//! ```` ```console ```` block in README.md and `docs/*.md` is run and its output compared
//! with what the page shows, with times, clocks, dates, ports and measured values redacted
//! on both sides. `DRIFTWATCH_DOCS=overwrite cargo test --release --test it snapshots`
//! writes the program's output into the pages instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use regex::Regex;

use crate::support::repo_root;

#[test]
fn help_of_every_command_matches_its_snapshot() {
    trycmd::TestCases::new()
        .register_bin(
            "driftwatch",
            PathBuf::from(env!("CARGO_BIN_EXE_driftwatch")),
        )
        .env("COLUMNS", "100")
        .case(repo_root().join("tests/cmd/*.toml"));
}

/// One ```` ```console ```` block: the command after `$ ` and the output shown under it.
#[derive(Debug)]
struct Shown {
    page: String,
    line: usize,
    args: Vec<String>,
    expected: Vec<String>,
}

fn console_blocks(page: &Path) -> Vec<Shown> {
    let text = std::fs::read_to_string(page).expect("reading a docs page");
    let name = page
        .strip_prefix(repo_root())
        .unwrap_or(page)
        .display()
        .to_string();
    let mut out: Vec<Shown> = Vec::new();
    let mut in_block = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_block = !in_block && line.trim() == "```console";
            continue;
        }
        if !in_block {
            continue;
        }
        if let Some(cmd) = line.strip_prefix("$ ") {
            let words: Vec<String> = shell_words(cmd);
            assert_eq!(
                words.first().map(String::as_str),
                Some("driftwatch"),
                "{name}:{}: console blocks run driftwatch commands only",
                i + 1
            );
            out.push(Shown {
                page: name.clone(),
                line: i + 1,
                args: words[1..].to_vec(),
                expected: Vec::new(),
            });
        } else if let Some(s) = out.last_mut() {
            s.expected.push(line.to_string());
        }
    }
    out
}

/// Splits a command line the way a shell would for the simple quoting the docs use.
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                any = true;
            }
            (None, c) if c.is_whitespace() => {
                if any || !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (None, c) => cur.push(c),
        }
    }
    if any || !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// What varies between runs, replaced the same way in the page and in the output.
fn redact(line: &str) -> String {
    let rules: [(&str, &str); 8] = [
        (r"\d{4}-\d\d-\d\d[T ][\d:.]+Z?", "[DATE]"),
        (r"\b\d\d:\d\d:\d\d\b", "[CLOCK]"),
        (r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]"),
        // Measured values: decimals (times, rates, scores, p-values) and sample sizes.
        (r"-?\d+\.\d+(e[-+]?\d+)?", "[X]"),
        (r"\bn=\d+( vs \d+)?", "n=[N]"),
        // How many files a table has depends on when commits were cut.
        (r"\b\d+ files\b", "[N] files"),
        // Which late scores find their window already written depends on how the consumer
        // interleaved the partitions (the watermark follows the slowest).
        (
            r"\(\d+ to windows already written\)",
            "([N] to windows already written)",
        ),
        (r"\s+", " "),
    ];
    let mut s = line.trim_end().to_string();
    for (re, with) in rules {
        s = Regex::new(re)
            .expect("valid")
            .replace_all(&s, with)
            .into_owned();
    }
    s
}

/// Compares output with the page; a line `...` in the page stands for any lines.
fn matches(expected: &[String], actual: &[String]) -> bool {
    match expected.split_first() {
        None => actual.iter().all(|l| l.trim().is_empty()),
        Some((e, rest)) if e.trim() == "..." => {
            (0..=actual.len()).any(|skip| matches(rest, &actual[skip..]))
        }
        Some((e, rest)) => actual
            .split_first()
            .is_some_and(|(a, arest)| redact(e) == redact(a) && matches(rest, arest)),
    }
}

#[test]
fn readme_and_docs_command_outputs_match_the_program() {
    let root = repo_root();
    let mut pages = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "md"))
        .collect();
    docs.sort();
    pages.extend(docs);
    let blocks: Vec<Shown> = pages.iter().flat_map(|p| console_blocks(p)).collect();
    assert!(
        blocks
            .iter()
            .any(|b| b.args.first().map(String::as_str) == Some("demo")),
        "README.md shows the demo's output"
    );
    // One working directory for all of them, in page order: the demo's data directory is
    // what later blocks (backtest, query) read. The shipped rules are where the docs say.
    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(root.join("rules"), dir.path().join("rules")).expect("symlink");
    let overwrite = std::env::var("DRIFTWATCH_DOCS").is_ok_and(|v| v == "overwrite");
    let mut rewrites: Vec<(&Shown, Vec<String>)> = Vec::new();
    let mut failures = Vec::new();
    for b in &blocks {
        let out = Command::new(env!("CARGO_BIN_EXE_driftwatch"))
            .args(&b.args)
            .current_dir(dir.path())
            .env("COLUMNS", "100")
            .env_remove("DRIFTWATCH_CONFIG")
            .env_remove("DRIFTWATCH_DATA_DIR")
            .output()
            .expect("running driftwatch");
        let actual: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect();
        if !out.status.success() {
            failures.push(format!(
                "{}:{}: `driftwatch {}` failed: {}",
                b.page,
                b.line,
                b.args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        } else if overwrite {
            rewrites.push((b, actual));
        } else if !matches(&b.expected, &actual) {
            failures.push(format!(
                "{}:{}: `driftwatch {}` prints something else now; update the page.\n--- page\n{}\n--- program\n{}",
                b.page,
                b.line,
                b.args.join(" "),
                b.expected.join("\n"),
                actual.join("\n")
            ));
        }
    }
    for page in &pages {
        let name = page
            .strip_prefix(&root)
            .unwrap_or(page)
            .display()
            .to_string();
        let mut lines: Vec<String> = std::fs::read_to_string(page)
            .expect("reading a page")
            .lines()
            .map(String::from)
            .collect();
        // Bottom up, so earlier line numbers stay valid.
        for (b, actual) in rewrites.iter().rev().filter(|(b, _)| b.page == name) {
            lines.splice(b.line..b.line + b.expected.len(), actual.iter().cloned());
        }
        if rewrites.iter().any(|(b, _)| b.page == name) {
            std::fs::write(page, lines.join("\n") + "\n").expect("writing a page");
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn the_output_matcher_redacts_only_what_varies() {
    let page: Vec<String> = ["done in 6.1 s: 60000 requests", "...", "end 00:14:00"]
        .map(String::from)
        .to_vec();
    let run = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert!(matches(
        &page,
        &run(&["done in 7.3 s: 60000 requests", "a", "b", "end 01:02:03"])
    ));
    assert!(matches(
        &page,
        &run(&["done in 7.3 s: 60000 requests", "end 01:02:03"])
    ));
    // A count that is deterministic is compared as it is.
    assert!(!matches(
        &page,
        &run(&["done in 7.3 s: 59999 requests", "end 01:02:03"])
    ));
    assert!(!matches(&page, &run(&["done in 7.3 s: 60000 requests"])));
    assert_eq!(
        shell_words(r#"query --format csv "SELECT 'a b' FROM t""#),
        ["query", "--format", "csv", "SELECT 'a b' FROM t"]
    );
}
