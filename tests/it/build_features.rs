//! `cargo run --release -- demo` then `cargo test --release` compiles the shared
//! dependencies once: every crate that both builds use is built with the same features.
//!
//! Cargo's resolver keeps the feature set of a build with dev-dependencies apart from one
//! without, so a dev-dependency that turns on a feature of a shared crate (jsonschema turning
//! on `ahash/serde`, for one) makes the test build recompile that crate and everything above
//! it — parquet and DataFusion among them. `Cargo.toml` enables those features in
//! `[dependencies]` too; this test fails when a new dev-dependency or version bump breaks
//! the agreement, and names the crates and features to add.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use crate::support::repo_root;

/// `cargo tree` of the package's target dependencies: crate (name + version) → features.
/// `dev` adds the dev-dependencies. Build-only and proc-macro crates are left out: they are
/// compiled for the host and their features do not reach the target crates.
fn features(dev: bool) -> Option<BTreeMap<String, BTreeSet<String>>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let edges = if dev { "normal,dev" } else { "normal" };
    let out = Command::new(cargo)
        .current_dir(repo_root())
        .args([
            "tree",
            "--offline",
            "--locked",
            "--edges",
            edges,
            "--prefix",
            "depth",
            "--format",
            "{p} {f}",
            "--target",
            "x86_64-unknown-linux-gnu",
        ])
        .output()
        .ok()?;
    if !out.status.success() {
        eprintln!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        return None;
    }
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // Depth of the proc-macro whose subtree we are in (its dependencies run on the host).
    let mut host_below: Option<usize> = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let digits = line.chars().take_while(|c| c.is_ascii_digit()).count();
        let Ok(depth) = line[..digits].parse::<usize>() else {
            continue;
        };
        if host_below.is_some_and(|d| depth <= d) {
            host_below = None;
        }
        if host_below.is_some() {
            continue;
        }
        let line = line[digits..].replace(" (*)", "");
        if line.contains("(proc-macro)") {
            host_below = Some(depth);
            continue;
        }
        if line.contains("(/") {
            continue; // driftwatch itself
        }
        let mut parts = line.split_whitespace();
        let (Some(name), Some(version)) = (parts.next(), parts.next()) else {
            continue;
        };
        let feats = parts.next().unwrap_or("");
        map.entry(format!("{name} {version}"))
            .or_default()
            .extend(feats.split(',').filter(|f| !f.is_empty()).map(String::from));
    }
    Some(map)
}

#[test]
fn the_test_build_shares_every_dependency_of_the_plain_build() {
    let (Some(plain), Some(with_dev)) = (features(false), features(true)) else {
        eprintln!("skipped: `cargo tree --offline` is not available here");
        return;
    };
    assert!(plain.len() > 100, "only {} crates in the tree", plain.len());
    let mut differ = Vec::new();
    for (krate, feats) in &plain {
        if let Some(dev) = with_dev.get(krate) {
            let extra: Vec<_> = dev.difference(feats).cloned().collect();
            if !extra.is_empty() {
                differ.push(format!("{krate}: add features {extra:?}"));
            }
        }
    }
    assert!(
        differ.is_empty(),
        "the dev-dependencies turn on features of shared crates, so `cargo test --release` \
         would recompile them after `cargo run --release`; enable these in [dependencies] \
         (see the feature-unification block in Cargo.toml):\n  {}",
        differ.join("\n  ")
    );
}
