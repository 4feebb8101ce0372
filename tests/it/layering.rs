//! The shape of `src/`: stages depend only on the stages and core types below them, and the
//! files inside one folder never import each other in a circle.
//!
//! Reads every `.rs` file under `src/`, collects the `crate::…` and `super::…` paths it uses
//! (comments and string literals stripped), and checks them against [`ALLOWED`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::support::repo_root;

/// Core modules: every stage may use them; they use only each other.
const CORE: &[&str] = &["event", "registry", "durable", "time", "section", "metrics"];

/// Top-level module → the top-level modules it may use (besides itself and [`CORE`]), in
/// the order data flows. `config` assembles the sections the stages own; `daemon` is the
/// composition root; `cli` sits on top.
const ALLOWED: &[(&str, &[&str])] = &[
    ("source", &[]),
    ("decode", &[]),
    ("window", &[]),
    ("detect", &["window"]),
    ("storage", &["decode", "window", "detect"]),
    ("notify", &["detect"]),
    ("query", &["window", "storage"]),
    ("traffic", &["source", "decode"]),
    (
        "config",
        &[
            "source", "decode", "window", "detect", "storage", "notify", "query", "traffic",
        ],
    ),
    (
        "daemon",
        &[
            "config", "source", "decode", "window", "detect", "storage", "notify", "query",
            "traffic",
        ],
    ),
    (
        "cli",
        &[
            "daemon", "config", "source", "decode", "window", "detect", "storage", "notify",
            "query", "traffic",
        ],
    ),
];

/// One `.rs` file as a module path: `src/storage/commit.rs` → `["storage", "commit"]`,
/// `src/detect/rules/mod.rs` → `["detect", "rules"]`, `src/lib.rs` → `[]`.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("under src/");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_string());
    }
    parts
}

/// The source with comments, string and char literals blanked out (so a doc link or a
/// message that names a module is not an import).
fn strip(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                i += 1;
            }
            i += 2;
        } else if b[i] == b'r' && matches!(b.get(i + 1), Some(b'#') | Some(b'"')) && !ident(b, i) {
            // Raw string r"…" / r#"…"#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&b'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&b'"') {
                out.push(b[i] as char);
                i += 1;
                continue;
            }
            j += 1;
            let close: Vec<u8> = std::iter::once(b'"')
                .chain(std::iter::repeat_n(b'#', hashes))
                .collect();
            while j < b.len() && !b[j..].starts_with(&close) {
                j += 1;
            }
            i = j + close.len();
            out.push_str("\"\"");
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && b.get(i + 2) == Some(&b'\'') {
            i += 3;
        } else if b[i] == b'\'' && b.get(i + 1) == Some(&b'\\') {
            // An escaped char literal such as '\n' or '\u{7f}'.
            i += 2;
            while i < b.len() && b[i] != b'\'' {
                i += 1;
            }
            i += 1;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

fn ident(b: &[u8], i: usize) -> bool {
    i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
}

/// Every module path a file refers to, resolved against the file's own module: `crate::a::b`
/// and `crate::{a::b, c}` give `a::b` and `c`; `super::x` in `storage::commit` gives
/// `storage::x`.
fn references(own: &[String], code: &str) -> BTreeSet<Vec<String>> {
    let mut out = BTreeSet::new();
    let tokens = tokenize(code);
    let mut i = 0;
    while i < tokens.len() {
        let t = tokens[i].as_str();
        let base: Option<Vec<String>> = match t {
            "crate" => Some(Vec::new()),
            "super" if !(i > 0 && tokens[i - 1] == "::") => {
                // `super` of a mod.rs is the folder's parent; of a file, the folder.
                let mut p = own.to_vec();
                let mut up = 1;
                let mut j = i;
                while j + 2 < tokens.len() && tokens[j + 1] == "::" && tokens[j + 2] == "super" {
                    up += 1;
                    j += 2;
                }
                for _ in 0..up {
                    p.pop();
                }
                i = j;
                Some(p)
            }
            _ => None,
        };
        if let Some(base) = base {
            if tokens.get(i + 1).map(String::as_str) == Some("::") {
                collect_paths(&tokens, i + 2, base, &mut out);
            }
        }
        i += 1;
    }
    out
}

fn tokenize(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_alphanumeric() || c == '_' {
            let s = i;
            while i < b.len() && (b[i].is_alphanumeric() || b[i] == '_') {
                i += 1;
            }
            out.push(b[s..i].iter().collect());
        } else if c == ':' && b.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else if "{},;".contains(c) {
            out.push(c.to_string());
            i += 1;
        } else if c.is_whitespace() {
            i += 1;
        } else {
            out.push(c.to_string());
            i += 1;
        }
    }
    out
}

/// Reads `a::b::c` or `{a::b, c::{d}}` starting at `tokens[i]`, prefixed with `base`.
fn collect_paths(
    tokens: &[String],
    mut i: usize,
    base: Vec<String>,
    out: &mut BTreeSet<Vec<String>>,
) {
    let mut path = base;
    loop {
        match tokens.get(i).map(String::as_str) {
            Some("{") => {
                // A group: each item is a path relative to `path`.
                i += 1;
                let mut depth = 0;
                let mut start = i;
                while i < tokens.len() {
                    match tokens[i].as_str() {
                        "{" => depth += 1,
                        "}" if depth == 0 => {
                            collect_paths(tokens, start, path.clone(), out);
                            return;
                        }
                        "}" => depth -= 1,
                        "," if depth == 0 => {
                            collect_paths(tokens, start, path.clone(), out);
                            start = i + 1;
                        }
                        _ => {}
                    }
                    i += 1;
                }
                return;
            }
            Some(t) if t.chars().all(|c| c.is_alphanumeric() || c == '_') && t != "self" => {
                path.push(t.to_string());
                if tokens.get(i + 1).map(String::as_str) == Some("::") {
                    i += 2;
                    continue;
                }
                out.insert(path);
                return;
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path);
                }
                return;
            }
        }
    }
}

struct Tree {
    /// Module path → the module paths it refers to.
    refs: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    /// Module paths that are a folder's mod.rs.
    folders: BTreeSet<Vec<String>>,
}

fn read_tree(src: &Path) -> Tree {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).expect("reading src/") {
            let p = e.expect("dir entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let mut tree = Tree {
        refs: BTreeMap::new(),
        folders: BTreeSet::new(),
    };
    for f in files {
        let own = module_path(src, &f);
        let is_mod = f.file_name().is_some_and(|n| n == "mod.rs");
        if is_mod {
            tree.folders.insert(own.clone());
        }
        let text = std::fs::read_to_string(&f).expect("reading a source file");
        let refs = references(&own, &strip(&text));
        tree.refs.entry(own).or_default().extend(refs);
    }
    tree
}

/// Back-edges between top-level modules: `(from file, to module)`.
fn layer_violations(tree: &Tree) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut out = Vec::new();
    for (m, refs) in &tree.refs {
        let Some(top) = m.first() else { continue };
        for r in refs {
            let Some(to) = r.first() else { continue };
            if to == top || CORE.contains(&to.as_str()) {
                continue;
            }
            if !allowed.contains_key(to.as_str()) {
                continue; // an external path such as `crate::…` macro output; not a module
            }
            let ok = if CORE.contains(&top.as_str()) {
                false
            } else {
                allowed
                    .get(top.as_str())
                    .is_some_and(|deps| deps.contains(&to.as_str()))
            };
            if !ok {
                out.push(format!("{} uses {}", m.join("::"), r.join("::")));
            }
        }
    }
    out
}

/// Circles among the files of one folder (a folder's mod.rs re-exporting its own children
/// is its facade, not an import).
fn folder_cycles(tree: &Tree) -> Vec<Vec<String>> {
    let mut graph: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (m, refs) in &tree.refs {
        let Some((_, parent)) = m.split_last() else {
            continue;
        };
        for r in refs {
            // The sibling (or child, for a mod.rs) module `r` points into.
            let target = resolve(tree, r);
            let Some(target) = target else { continue };
            if &target == m {
                continue;
            }
            let same_folder = target.len() == m.len() && target[..parent.len()] == *parent;
            let child_of_mod =
                tree.folders.contains(m) && target.len() == m.len() + 1 && target[..m.len()] == *m;
            let parent_mod = tree.folders.contains(parent) && target == parent;
            if child_of_mod {
                continue; // facade re-export
            }
            if same_folder || parent_mod {
                graph.entry(m.clone()).or_default().insert(target);
            }
        }
    }
    let mut cycles = Vec::new();
    let nodes: Vec<_> = graph.keys().cloned().collect();
    let mut done = BTreeSet::new();
    for n in nodes {
        let mut stack = vec![n.clone()];
        find_cycles(&graph, &mut stack, &mut done, &mut cycles);
        done.insert(n);
    }
    cycles
        .into_iter()
        .map(|c| c.into_iter().map(|m| m.join("::")).collect())
        .collect()
}

fn find_cycles(
    graph: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
    stack: &mut Vec<Vec<String>>,
    done: &mut BTreeSet<Vec<String>>,
    cycles: &mut Vec<Vec<Vec<String>>>,
) {
    let here = stack.last().expect("non-empty").clone();
    for next in graph.get(&here).into_iter().flatten() {
        if done.contains(next) {
            continue;
        }
        if let Some(pos) = stack.iter().position(|s| s == next) {
            let mut c = stack[pos..].to_vec();
            c.push(next.clone());
            if !cycles.iter().any(|k: &Vec<Vec<String>>| same_cycle(k, &c)) {
                cycles.push(c);
            }
            continue;
        }
        stack.push(next.clone());
        find_cycles(graph, stack, done, cycles);
        stack.pop();
    }
}

fn same_cycle(a: &[Vec<String>], b: &[Vec<String>]) -> bool {
    let sa: BTreeSet<_> = a.iter().collect();
    let sb: BTreeSet<_> = b.iter().collect();
    sa == sb
}

/// The longest prefix of `path` that is a module of the tree.
fn resolve(tree: &Tree, path: &[String]) -> Option<Vec<String>> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| tree.refs.contains_key(p))
}

#[test]
fn stages_depend_only_on_what_is_below_them() {
    let tree = read_tree(&repo_root().join("src"));
    assert!(
        tree.refs.len() > 50,
        "read only {} modules from src/",
        tree.refs.len()
    );
    let v = layer_violations(&tree);
    assert!(
        v.is_empty(),
        "imports against the layering (allowed directions in tests/it/layering.rs):\n  {}",
        v.join("\n  ")
    );
}

#[test]
fn files_of_a_folder_do_not_import_each_other_in_a_circle() {
    let tree = read_tree(&repo_root().join("src"));
    let c = folder_cycles(&tree);
    assert!(
        c.is_empty(),
        "module cycles inside a folder:\n  {}",
        c.iter()
            .map(|c| c.join(" -> "))
            .collect::<Vec<_>>()
            .join("\n  ")
    );
}

/// The checker itself: a back-edge and a circle written into a scratch tree are found.
#[test]
fn the_checker_finds_a_back_edge_and_a_circle() {
    let dir = tempfile::tempdir().expect("temp dir");
    let src = dir.path().join("src");
    let write = |rel: &str, text: &str| {
        let p = src.join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write("lib.rs", "pub mod storage; pub mod notify; pub mod event;");
    write("event.rs", "pub struct E;");
    write(
        "storage/mod.rs",
        "pub mod commit; pub mod sink; pub use commit::Committer;",
    );
    // The back-edge: storage calling delivery.
    write(
        "storage/commit.rs",
        "use crate::notify::inbox::write; use super::sink::Sink; // crate::daemon in a comment\npub struct Committer;",
    );
    write(
        "storage/sink.rs",
        "use crate::{event::E, storage::commit::Committer}; const S: &str = \"crate::daemon\";",
    );
    write("notify/mod.rs", "pub mod inbox;");
    write("notify/inbox.rs", "use crate::event::E; pub fn write() {}");
    let tree = read_tree(&src);
    let v = layer_violations(&tree);
    assert_eq!(
        v,
        vec!["storage::commit uses notify::inbox::write".to_string()]
    );
    let c = folder_cycles(&tree);
    assert_eq!(c.len(), 1, "{c:?}");
    let members: BTreeSet<&str> = c[0].iter().map(String::as_str).collect();
    assert_eq!(
        members,
        BTreeSet::from(["storage::commit", "storage::sink"]),
        "{c:?}"
    );
}
