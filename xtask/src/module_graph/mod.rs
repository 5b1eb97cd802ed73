//! The module graph of a crate, read from its sources, and the check that no two of its
//! modules import each other, directly or round a longer circle.
//!
//! A crate whose modules form layers (each importing only modules below it) can be read
//! and changed one layer at a time; a circle makes every module on it depend on all the
//! others. The graph is built from paths in the code: `use` trees and paths that start
//! with `crate::`, `$crate::`, `super::`, `self::` or a child module's name, resolved
//! through the `use` bindings of the modules they pass (so `crate::spawn` counts as a use
//! of the module that `lib.rs` re-exports it from). Test code (`#[cfg(test)]` items and
//! modules) is left out: a test may reach up to set the stage. So are a module's
//! re-exports of its own descendants (its interface) and references to the crate root
//! (declarations, re-exports and crate-wide constants only).
//!
//! Circles are looked for at every level: among the top-level modules, and among the
//! children of every module that has some (the parent counting as one node for what it
//! defines itself). A plain scan of tokens, not a parser: it needs no dependency and
//! reads this workspace's code correctly, which the tests below check.

mod scan;
mod tokens;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use scan::{child_of, read_module, Crate, ModulePath};

/// One reference from a module to another: where it is, and what it named.
#[derive(Debug, Clone)]
struct Reference {
    from: ModulePath,
    to: ModulePath,
    /// `file:line`, for the report.
    at: String,
    /// The path as written, for the report.
    text: String,
}

/// A circle of modules, with the reference that makes each step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    /// The modules in order; the last imports the first.
    pub modules: Vec<String>,
    /// For each step, `file:line path`.
    pub evidence: Vec<String>,
}

impl std::fmt::Display for Cycle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names = self.modules.clone();
        names.push(self.modules[0].clone());
        write!(f, "{}", names.join(" -> "))?;
        for step in &self.evidence {
            write!(f, "\n    {step}")?;
        }
        Ok(())
    }
}

/// Returns the circles among the modules of the crate whose `lib.rs` (or `main.rs`) is
/// in `src`.
pub fn cycles(src: &Path) -> Result<Vec<Cycle>, String> {
    let root = ["lib.rs", "main.rs"]
        .iter()
        .map(|name| src.join(name))
        .find(|path| path.is_file())
        .ok_or_else(|| format!("{}: no lib.rs or main.rs", src.display()))?;
    let mut krate = Crate::default();
    read_module(&mut krate, &root, Vec::new(), true)?;
    Ok(find_cycles(&krate))
}

/// Returns the module a path from the root lands in: the deepest module it names, after
/// following `use` bindings on the way.
fn resolve(krate: &Crate, path: &[String]) -> ModulePath {
    let mut path = path.to_vec();
    for _ in 0..16 {
        let mut module = Vec::new();
        let mut rebound = None;
        for (index, segment) in path.iter().enumerate() {
            let child = child_of(&module, segment);
            if krate.modules.contains_key(&child) {
                module = child;
                continue;
            }
            if let Some(binding) = krate.bindings.get(&module).and_then(|b| b.get(segment)) {
                let mut target = binding.target.clone();
                target.extend(path[index + 1..].iter().cloned());
                if target != path {
                    rebound = Some(target);
                }
            }
            break;
        }
        match rebound {
            Some(target) => path = target,
            None => return module,
        }
    }
    Vec::new()
}

/// Returns the modules that have files of their own, `module` truncated to the deepest
/// of them (an inline module belongs to its file's module).
fn file_module(krate: &Crate, module: &ModulePath) -> ModulePath {
    let mut module = module.clone();
    while !module.is_empty() && !krate.modules.get(&module).copied().unwrap_or(false) {
        module.pop();
    }
    module
}

/// Returns every reference between modules, resolved and without the ones that do not
/// count (see the module comment).
fn references(krate: &Crate) -> Vec<Reference> {
    let mut references = Vec::new();
    for (module, names) in &krate.bindings {
        for binding in names.values() {
            let to = resolve(krate, &binding.target);
            // A module's re-export of its own descendant is its interface.
            if binding.public && to.starts_with(module) {
                continue;
            }
            references.push(Reference {
                from: module.clone(),
                to,
                at: format!("{}:{}", binding.file, binding.line),
                text: format!("use crate::{}", binding.target.join("::")),
            });
        }
    }
    for (module, path, at) in &krate.paths {
        references.push(Reference {
            from: module.clone(),
            to: resolve(krate, path),
            at: at.clone(),
            text: format!("crate::{}", path.join("::")),
        });
    }
    references
        .into_iter()
        .map(|mut reference| {
            reference.from = file_module(krate, &reference.from);
            reference.to = file_module(krate, &reference.to);
            reference
        })
        .filter(|reference| !reference.to.is_empty() && !reference.from.is_empty())
        .collect()
}

/// Returns the circles at every level of the crate's module tree.
fn find_cycles(krate: &Crate) -> Vec<Cycle> {
    let references = references(krate);
    let mut cycles = Vec::new();
    let parents: BTreeSet<ModulePath> = krate
        .modules
        .iter()
        .filter(|(_, has_file)| **has_file)
        .filter_map(|(path, _)| path.split_last().map(|(_, parent)| parent.to_vec()))
        .collect();
    for parent in parents {
        // Nodes: the parent itself (not for the root) and each child's subtree.
        let node = |module: &ModulePath| -> Option<String> {
            if !module.starts_with(&parent) {
                return None;
            }
            match module.get(parent.len()) {
                Some(child) => Some(child.clone()),
                None if parent.is_empty() => None,
                None => Some("(self)".to_string()),
            }
        };
        let mut edges: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for reference in &references {
            let (Some(from), Some(to)) = (node(&reference.from), node(&reference.to)) else {
                continue;
            };
            if from != to {
                edges
                    .entry(from)
                    .or_default()
                    .entry(to)
                    .or_insert_with(|| format!("{} {}", reference.at, reference.text));
            }
        }
        let prefix = if parent.is_empty() {
            String::new()
        } else {
            format!("{}::", parent.join("::"))
        };
        for mut cycle in graph_cycles(&edges) {
            for name in &mut cycle.modules {
                *name = if name == "(self)" {
                    parent.join("::")
                } else {
                    format!("{prefix}{name}")
                };
            }
            cycles.push(cycle);
        }
    }
    cycles
}

/// Returns circles that together pass through every node of every strongly connected
/// set of more than one node: the shortest through each node not yet on one.
fn graph_cycles(edges: &BTreeMap<String, BTreeMap<String, String>>) -> Vec<Cycle> {
    let nodes: BTreeSet<&String> = edges
        .iter()
        .flat_map(|(from, tos)| std::iter::once(from).chain(tos.keys()))
        .collect();
    let reaches = |start: &String| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![start.clone()];
        while let Some(node) = stack.pop() {
            for next in edges.get(&node).into_iter().flat_map(BTreeMap::keys) {
                if seen.insert(next.clone()) {
                    stack.push(next.clone());
                }
            }
        }
        seen
    };
    let reach: BTreeMap<&String, BTreeSet<String>> =
        nodes.iter().map(|&node| (node, reaches(node))).collect();
    let mut covered = BTreeSet::new();
    let mut cycles = Vec::new();
    for &node in &nodes {
        if covered.contains(node) || !reach[node].contains(node) {
            continue;
        }
        let component: BTreeSet<String> = reach[node]
            .iter()
            .filter(|other| reach[*other].contains(node))
            .cloned()
            .collect();
        if let Some(cycle) = shortest_cycle(node, edges, &component) {
            covered.extend(cycle.modules.iter().cloned());
            cycles.push(cycle);
        }
    }
    cycles
}

/// Returns the shortest circle through `start` within `component` (breadth first).
fn shortest_cycle(
    start: &String,
    edges: &BTreeMap<String, BTreeMap<String, String>>,
    component: &BTreeSet<String>,
) -> Option<Cycle> {
    let mut came_from: BTreeMap<String, String> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start.clone()]);
    while let Some(node) = queue.pop_front() {
        for next in edges.get(&node).into_iter().flat_map(BTreeMap::keys) {
            if !component.contains(next) || came_from.contains_key(next) {
                continue;
            }
            came_from.insert(next.clone(), node.clone());
            if next == start {
                let mut modules = vec![start.clone()];
                let mut at = node.clone();
                while at != *start {
                    modules.push(at.clone());
                    at = came_from[&at].clone();
                }
                modules[1..].reverse();
                let evidence = (0..modules.len())
                    .map(|k| {
                        let (from, to) = (&modules[k], &modules[(k + 1) % modules.len()]);
                        format!("{from} -> {to}: {}", edges[from][to])
                    })
                    .collect();
                return Some(Cycle { modules, evidence });
            }
            queue.push_back(next.clone());
        }
    }
    None
}

/// Returns the `src` folder of workspace crate `name`.
fn crate_src(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(name)
        .join("src")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    /// Writes `files` (path, text) into a fresh folder and returns its circles.
    fn cycles_of(files: &[(&str, &str)]) -> Vec<String> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "module-graph-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        for (path, text) in files {
            let path = dir.join(path);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, text).unwrap();
        }
        let found = cycles(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
        found.iter().map(|cycle| cycle.modules.join(" ")).collect()
    }

    #[test]
    fn a_circle_through_use_lines_is_found_and_named() {
        let found = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\nmod c;\n"),
            ("a.rs", "use crate::b::B;\npub struct A;\n"),
            ("b.rs", "use crate::{c::{self, C}};\npub struct B;\n"),
            ("c.rs", "pub struct C;\nfn f() { let _ = crate::a::A; }\n"),
        ]);
        assert_eq!(found, ["a b c"]);
    }

    #[test]
    fn layers_without_a_circle_pass() {
        let found = cycles_of(&[
            (
                "lib.rs",
                "mod a;\nmod b;\npub use b::make as build;\npub const MAX: usize = 4;\n",
            ),
            (
                "a.rs",
                "use crate::build;\nfn f() -> usize { crate::MAX + build() }\n",
            ),
            ("b.rs", "pub fn make() -> usize { crate::MAX }\n"),
        ]);
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn a_root_re_export_counts_as_its_module() {
        let found = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\npub use a::go;\n"),
            ("a.rs", "pub fn go() { crate::b::B::new(); }\n"),
            (
                "b.rs",
                "pub struct B;\nimpl B { pub fn new() { crate::go() } }\n",
            ),
        ]);
        assert_eq!(found, ["a b"]);
    }

    #[test]
    fn test_code_comments_and_strings_do_not_count() {
        let found = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b::B;\n"),
            (
                "b.rs",
                "pub struct B;\n// crate::a::x\nconst S: &str = \"crate::a::x\";\n\
                 const R: &str = r#\"crate::a::\"x\"#;\nfn f<'a>(c: &'a char) -> char { '\\'' }\n\
                 #[cfg(test)]\nmod tests { use crate::a; }\n\
                 #[cfg(all(test, not(loom)))]\nfn g() { crate::a::f() }\n",
            ),
        ]);
        assert!(found.is_empty(), "{found:?}");
        let found = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            ("a.rs", "use crate::b::B;\n"),
            ("b.rs", "#[cfg(not(test))]\nfn g() { crate::a::f() }\n"),
        ]);
        assert_eq!(found, ["a b"], "cfg(not(test)) is real code");
    }

    #[test]
    fn submodules_are_checked_with_their_parent_as_a_node() {
        let found = cycles_of(&[
            ("lib.rs", "mod s;\n"),
            ("s/mod.rs", "mod x;\nmod y;\npub use x::X;\npub struct P;\n"),
            ("s/x.rs", "use super::y::Y;\npub struct X;\n"),
            ("s/y.rs", "pub struct Y;\nfn f() -> super::P { super::P }\n"),
        ]);
        assert!(
            found.is_empty(),
            "re-exports of children are no edges: {found:?}"
        );
        let found = cycles_of(&[
            ("lib.rs", "mod s;\n"),
            (
                "s/mod.rs",
                "mod x;\nmod y;\nfn f() { x::go() }\npub struct P;\n",
            ),
            ("s/x.rs", "pub fn go() { let _ = super::y::Y; }\n"),
            ("s/y.rs", "pub struct Y;\nfn f() -> super::P { super::P }\n"),
        ]);
        assert_eq!(found, ["s s::x s::y"]);
    }

    #[test]
    fn inline_modules_belong_to_their_file() {
        let found = cycles_of(&[
            ("lib.rs", "mod a;\nmod b;\n"),
            (
                "a.rs",
                "mod imp { use super::super::b::B; pub fn f() {} }\n",
            ),
            ("b.rs", "pub struct B;\nfn g() { crate::a::imp::f() }\n"),
        ]);
        assert_eq!(found, ["a b"]);
    }

    /// The crates whose modules must stay free of circles: all of them.
    const LAYERED: &[&str] = &[
        "ipc", "percore", "devices", "fs", "net", "apps", "boot", "xtask",
    ];

    #[test]
    fn layered_crates_have_no_module_circles() {
        for name in LAYERED {
            let found = cycles(&crate_src(name)).unwrap();
            let report: Vec<String> = found.iter().map(ToString::to_string).collect();
            assert!(
                found.is_empty(),
                "modules of {name} import each other in a circle:\n{}",
                report.join("\n")
            );
        }
    }
}
