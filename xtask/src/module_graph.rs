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
    for file in rust_files(src)? {
        let rel = file.strip_prefix(src).unwrap_or(&file);
        let top_level_file = rel.components().count() == 1;
        let name = rel.iter().next().and_then(|c| c.to_str()).unwrap_or("").trim_end_matches(".rs").to_string();
        if top_level_file && (name == "lib" || name == "main") {
            continue;
        }
        let text = strip_comments(&std::fs::read_to_string(&file)?);
        let mut uses = crate_paths(&text, "crate::");
        // In a top-level file `super::` is the crate root too.
        if top_level_file {
            uses.extend(crate_paths(&text, "super::"));
        }
        uses.remove(&name);
        graph.entry(name).or_default().extend(uses);
    }
    Ok(graph)
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
/// each name of `crate::{a, b::c}`).
fn crate_paths(text: &str, prefix: &str) -> BTreeSet<String> {
    let ident = |s: &str| s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect::<String>();
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices(prefix) {
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &text[at + prefix.len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(|p| ident(p.trim())).filter(|p| !p.is_empty() && p != "self"));
        } else {
            let name = ident(rest);
            if !name.is_empty() && name.chars().next().is_some_and(|c| c.is_ascii_lowercase()) {
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
        let p = crate_paths("use crate::{a, b::C, self};\nlet x = crate::d::e(); my_crate::f;", "crate::");
        assert_eq!(p, ["a", "b", "d"].iter().map(|s| s.to_string()).collect());
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
