//! The one-way rule inside each crate: the graph of a crate's top-level
//! modules (module `a` uses module `b` when a file of `a` names `crate::b`)
//! must have no cycle. State types sit below the objects that hold them and
//! operations above; a cycle means a type or function lives in the wrong
//! module. Checked by a host test over every crate of the workspace.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module name → the other top-level modules it uses.
pub type ModuleGraph = BTreeMap<String, BTreeSet<String>>;

/// Reads the module graph of the crate whose sources are under `src`.
pub fn read(src: &Path) -> std::io::Result<ModuleGraph> {
    let mut graph = ModuleGraph::new();
    // Items the crate root re-exports (`pub use a::{X, y}`) belong to the
    // module they come from: `crate::X` is an edge to `a`.
    let mut reexports = BTreeMap::new();
    for root in ["lib.rs", "main.rs"] {
        if let Ok(text) = std::fs::read_to_string(src.join(root)) {
            reexports.extend(root_reexports(&strip_comments(&text)));
        }
    }
    for file in rust_files(src)? {
        let rel = file.strip_prefix(src).unwrap_or(&file);
        let parts: Vec<&str> = rel.iter().filter_map(|c| c.to_str()).collect();
        if parts.len() == 1 && (parts[0] == "lib.rs" || parts[0] == "main.rs") {
            continue;
        }
        let name = parts[0].trim_end_matches(".rs").to_string();
        // `super::` means the crate root in `a.rs` and in `a/mod.rs`.
        let at_top = parts.len() == 1 || (parts.len() == 2 && parts[1] == "mod.rs");
        let text = strip_comments(&std::fs::read_to_string(&file)?);
        let mut uses = crate_paths(&text, "crate::");
        if at_top {
            uses.extend(crate_paths(&text, "super::"));
        }
        let uses: BTreeSet<String> = uses
            .into_iter()
            .filter_map(|u| {
                if u.starts_with(|c: char| c.is_ascii_lowercase()) && !reexports.contains_key(&u) {
                    Some(u)
                } else {
                    reexports.get(&u).cloned()
                }
            })
            .filter(|u| *u != name)
            .collect();
        graph.entry(name).or_default().extend(uses);
    }
    Ok(graph)
}

/// `pub use module::{A, b}` / `pub use module::A` lines of a crate root:
/// re-exported name → its module.
fn root_reexports(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in text.split(';') {
        let Some(rest) = line.trim().strip_prefix("pub use ") else { continue };
        let rest = rest.trim_start_matches("crate::").trim_start_matches("self::");
        let Some((module, items)) = rest.split_once("::") else { continue };
        if !module.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
            continue;
        }
        for item in top_level_items(items.trim().trim_start_matches('{').trim_end_matches('}')) {
            let last = item.rsplit("::").next().unwrap_or(&item);
            let alias = last.split(" as ").last().unwrap_or(last).trim();
            if !alias.is_empty() && alias != "*" {
                out.insert(alias.to_string(), module.to_string());
            }
        }
    }
    out
}

/// The comma-separated items of a `{...}` group, nested groups kept whole.
fn top_level_items(group: &str) -> Vec<String> {
    let (mut items, mut cur, mut depth) = (Vec::new(), String::new(), 0);
    for c in group.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(core::mem::take(&mut cur).trim().to_string());
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    items.push(cur.trim().to_string());
    items.retain(|i| !i.is_empty());
    items
}

/// Every cycle in `graph`, each as the modules along it (first = last).
pub fn cycles(graph: &ModuleGraph) -> Vec<Vec<String>> {
    fn visit(
        node: &str,
        graph: &ModuleGraph,
        state: &mut BTreeMap<String, bool>,
        stack: &mut Vec<String>,
        found: &mut Vec<Vec<String>>,
    ) {
        state.insert(node.to_string(), true);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten().filter(|n| graph.contains_key(*n)) {
            match state.get(next) {
                Some(true) => {
                    let start = stack.iter().position(|s| s == next).unwrap_or(0);
                    let mut cycle = stack[start..].to_vec();
                    cycle.push(next.clone());
                    found.push(cycle);
                }
                Some(false) => {}
                None => visit(next, graph, state, stack, found),
            }
        }
        stack.pop();
        state.insert(node.to_string(), false);
    }
    let mut state = BTreeMap::new();
    let mut found = Vec::new();
    for node in graph.keys() {
        if !state.contains_key(node) {
            visit(node, graph, &mut state, &mut Vec::new(), &mut found);
        }
    }
    found
}

fn rust_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

/// Drops `//` comments (doc comments name modules in prose).
fn strip_comments(text: &str) -> String {
    text.lines().map(|l| l.split("//").next().unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// The first path segment after each `prefix` (`crate::a::b` → `a`, and
/// each top-level name of `crate::{a, b::{C, d}}`), capitalised names too
/// (items re-exported by the crate root).
fn crate_paths(text: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // The group up to its matching brace.
            let mut depth = 1;
            let end = group
                .char_indices()
                .find(|&(_, c)| {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(group.len(), |(i, _)| i);
            out.extend(
                top_level_items(&group[..end]).iter().map(|p| ident(p)).filter(|p| !p.is_empty() && p != "self"),
            );
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> ModuleGraph {
        edges.iter().map(|(a, bs)| (a.to_string(), bs.iter().map(|b| b.to_string()).collect())).collect()
    }

    #[test]
    fn finds_cycles_and_only_cycles() {
        let acyclic = graph(&[("a", &["b", "c"]), ("b", &["c"]), ("c", &[])]);
        assert!(cycles(&acyclic).is_empty());
        let cyclic = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"])]);
        assert_eq!(cycles(&cyclic), vec![vec!["a", "b", "c", "a"]]);
    }

    #[test]
    fn reads_crate_paths() {
        let p = crate_paths(
            "use crate::{a::{X, y}, b::C, self};\nlet x = crate::d::e(); my_crate::f; crate::Z;",
            "crate::",
        );
        assert_eq!(p, ["Z", "a", "b", "d"].iter().map(|s| s.to_string()).collect());
        let r =
            root_reexports("pub use upcall::{on_upcall, Upcall as U};\npub use layout::Layout;\npub use xen_abi::nr;");
        assert_eq!(r.get("on_upcall").map(String::as_str), Some("upcall"));
        assert_eq!(r.get("U").map(String::as_str), Some("upcall"));
        assert_eq!(r.get("Layout").map(String::as_str), Some("layout"));
    }

    /// Every crate of the workspace, its modules in one direction.
    #[test]
    fn no_crate_has_an_import_cycle() {
        let root = crate::paths::root();
        let mut srcs = Vec::new();
        for group in ["crates", "platform", "tests", "tests/guests"] {
            for entry in std::fs::read_dir(root.join(group)).into_iter().flatten().flatten() {
                let src = entry.path().join("src");
                if src.is_dir() {
                    srcs.push(src);
                }
            }
        }
        srcs.push(root.join("xtask/src"));
        assert!(srcs.len() >= 8, "found only {srcs:?}");
        let mut bad = Vec::new();
        for src in &srcs {
            let g = read(src).unwrap();
            for c in cycles(&g) {
                bad.push(format!("{}: {}", src.display(), c.join(" -> ")));
            }
        }
        assert!(bad.is_empty(), "import cycles:\n{}", bad.join("\n"));
    }
}
