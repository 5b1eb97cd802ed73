//! Reading a crate's sources: its modules, their `use` bindings and the paths in their
//! code, test code left out.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use super::tokens::{tokenize, Token};

/// A module's path from the crate root: `["sched", "wait"]`; the root is empty.
pub(super) type ModulePath = Vec<String>;

/// A `use` binding: `name` in module `module` stands for `target`.
#[derive(Debug, Clone)]
pub(super) struct Binding {
    pub(super) target: Vec<String>,
    /// A re-export (`pub use`, any visibility), as opposed to a private import.
    pub(super) public: bool,
    pub(super) line: usize,
    pub(super) file: String,
}

/// Everything read from one crate.
#[derive(Debug, Default)]
pub(super) struct Crate {
    /// Every module, each with whether it has a file of its own (inline modules do not).
    pub(super) modules: BTreeMap<ModulePath, bool>,
    /// `use` bindings by module, then by name.
    pub(super) bindings: BTreeMap<ModulePath, BTreeMap<String, Binding>>,
    /// Paths met in code (not in `use`), absolute, with the module they are in.
    pub(super) paths: Vec<(ModulePath, Vec<String>, String)>,
}

/// Reads the module in `file` (path `module`) and, recursively, its children.
pub(super) fn read_module(
    krate: &mut Crate,
    file: &Path,
    module: ModulePath,
    owns_directory: bool,
) -> Result<(), String> {
    let text = fs::read_to_string(file).map_err(|error| format!("{}: {error}", file.display()))?;
    let tokens = tokenize(&text);
    let directory = if owns_directory {
        file.parent().map(Path::to_path_buf).unwrap_or_default()
    } else {
        let stem = file.file_stem().unwrap_or_default();
        file.parent().unwrap_or(Path::new("")).join(stem)
    };
    krate.modules.insert(module.clone(), true);
    let name = file.display().to_string();
    let mut children = Vec::new();
    scan(krate, &tokens, &name, &module, &mut children);
    for child in children {
        let mut path = module.clone();
        path.push(child.clone());
        let flat = directory.join(format!("{child}.rs"));
        let nested = directory.join(&child).join("mod.rs");
        if flat.is_file() {
            read_module(krate, &flat, path, false)?;
        } else if nested.is_file() {
            read_module(krate, &nested, path, true)?;
        } else {
            return Err(format!("{name}: no file for module {child}"));
        }
    }
    Ok(())
}

/// Reads the items of one file (module `module`): its child module declarations, `use`
/// bindings and paths, skipping test code. Inline modules are read in place.
fn scan(
    krate: &mut Crate,
    tokens: &[(Token, usize)],
    file: &str,
    module: &ModulePath,
    children: &mut Vec<String>,
) {
    // The inline modules open at each brace depth: (depth their body opened at, path).
    let mut scopes: Vec<(usize, ModulePath)> = vec![(0, module.clone())];
    let mut depth = 0;
    let mut i = 0;
    while i < tokens.len() {
        let current = scopes
            .last()
            .map(|(_, path)| path.clone())
            .unwrap_or_default();
        match &tokens[i].0 {
            Token::Punct('#') => {
                let (end, is_test) = attribute(tokens, i);
                if is_test {
                    i = skip_item(tokens, end);
                } else {
                    i = end;
                }
                continue;
            }
            Token::Punct('{') => depth += 1,
            Token::Punct('}') => {
                if scopes.len() > 1 && scopes.last().is_some_and(|(open, _)| *open == depth) {
                    scopes.pop();
                }
                depth = depth.saturating_sub(1);
            }
            Token::Ident(word) if word == "mod" => {
                if let (Some((Token::Ident(name), _)), Some((next, _))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    match next {
                        Token::Punct(';') if current == *module => children.push(name.clone()),
                        Token::Punct('{') => {
                            let mut path = current.clone();
                            path.push(name.clone());
                            krate.modules.insert(path.clone(), false);
                            depth += 1;
                            scopes.push((depth, path));
                            i += 3;
                            continue;
                        }
                        _ => {}
                    }
                }
            }
            Token::Ident(word) if word == "use" && is_item_start(tokens, i) => {
                let public = is_public(tokens, i);
                let (end, trees) = use_tree(tokens, i + 1, &[]);
                for (path, name) in trees {
                    let Some(target) = absolute(krate, &current, &path) else {
                        continue;
                    };
                    if name == "*" {
                        continue;
                    }
                    krate.bindings.entry(current.clone()).or_default().insert(
                        name,
                        Binding {
                            target,
                            public,
                            line: tokens[i].1,
                            file: file.to_string(),
                        },
                    );
                }
                i = end;
                continue;
            }
            Token::Ident(word)
                if tokens.get(i + 1).map(|t| &t.0) == Some(&Token::PathSeparator) =>
            {
                let starts_path = matches!(word.as_str(), "crate" | "$crate" | "super" | "self")
                    || krate.modules.contains_key(&child_of(&current, word))
                    || (current == *module && children.contains(word));
                let after_separator = i > 0 && tokens[i - 1].0 == Token::PathSeparator;
                if starts_path && !after_separator {
                    let mut path = vec![word.clone()];
                    let mut j = i + 1;
                    while let (Some((Token::PathSeparator, _)), Some((Token::Ident(next), _))) =
                        (tokens.get(j), tokens.get(j + 1))
                    {
                        path.push(next.clone());
                        j += 2;
                    }
                    if let Some(target) = absolute(krate, &current, &path) {
                        let at = format!("{file}:{}", tokens[i].1);
                        krate.paths.push((current.clone(), target, at));
                    }
                    i = j;
                    continue;
                }
            }
            _ => {}
        }
        i += 1;
    }
}

/// Returns `parent::name`.
pub(super) fn child_of(parent: &ModulePath, name: &str) -> ModulePath {
    let mut path = parent.clone();
    path.push(name.to_string());
    path
}

/// Returns true when the token at `i` starts an item (not `use` inside an expression,
/// which Rust does not have, but a `use` after `pub(crate)` and the like).
fn is_item_start(tokens: &[(Token, usize)], i: usize) -> bool {
    i == 0
        || matches!(
            tokens[i - 1].0,
            Token::Punct(';' | '{' | '}' | ']' | ')') | Token::Ident(_)
        )
}

/// Returns true when the `use` at `i` is a re-export (`pub`, `pub(crate)`, ...).
fn is_public(tokens: &[(Token, usize)], i: usize) -> bool {
    match tokens.get(i.wrapping_sub(1)).map(|t| &t.0) {
        Some(Token::Ident(word)) => word == "pub",
        Some(Token::Punct(')')) => (0..i)
            .rev()
            .find(|&j| tokens[j].0 == Token::Punct('('))
            .is_some_and(|open| {
                matches!(tokens.get(open.wrapping_sub(1)).map(|t| &t.0), Some(Token::Ident(w)) if w == "pub")
            }),
        _ => false,
    }
}

/// Reads the attribute at `i` (`#[...]` or `#![...]`); returns where it ends and whether
/// it marks test code (`cfg(test)`, `cfg(all(test, ...))`, `test`).
fn attribute(tokens: &[(Token, usize)], i: usize) -> (usize, bool) {
    let mut j = i + 1;
    let inner = tokens.get(j).map(|t| &t.0) == Some(&Token::Punct('!'));
    if inner {
        j += 1;
    }
    if tokens.get(j).map(|t| &t.0) != Some(&Token::Punct('[')) {
        return (i + 1, false);
    }
    let start = j;
    let mut depth = 0;
    while j < tokens.len() {
        match tokens[j].0 {
            Token::Punct('[') => depth += 1,
            Token::Punct(']') => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            _ => {}
        }
        j += 1;
    }
    let body = &tokens[start + 1..j.min(tokens.len())];
    let word = |k: usize| match body.get(k).map(|t| &t.0) {
        Some(Token::Ident(word)) => word.as_str(),
        _ => "",
    };
    let is_test = !inner
        && (body.len() == 1 && word(0) == "test"
            || word(0) == "cfg"
                && (0..body.len()).any(|k| word(k) == "test" && !(k >= 2 && word(k - 2) == "not")));
    (j + 1, is_test)
}

/// Returns the index after the item that starts at `i` (more attributes, then up to its
/// `;` or the end of its first brace block, whichever comes first).
fn skip_item(tokens: &[(Token, usize)], mut i: usize) -> usize {
    while tokens.get(i).map(|t| &t.0) == Some(&Token::Punct('#')) {
        i = attribute(tokens, i).0;
    }
    let mut depth = 0;
    while i < tokens.len() {
        match tokens[i].0 {
            Token::Punct('(' | '[') => depth += 1,
            Token::Punct(')' | ']') => depth -= 1,
            Token::Punct(';') if depth == 0 => return i + 1,
            Token::Punct('{') if depth == 0 => {
                let mut braces = 0;
                while i < tokens.len() {
                    match tokens[i].0 {
                        Token::Punct('{') => braces += 1,
                        Token::Punct('}') => {
                            braces -= 1;
                            if braces == 0 {
                                return i + 1;
                            }
                        }
                        _ => {}
                    }
                    i += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Reads the use tree at `i` under `prefix`; returns where it ends and every path it
/// binds with the name it binds it to (`*` for a glob).
fn use_tree(
    tokens: &[(Token, usize)],
    mut i: usize,
    prefix: &[String],
) -> (usize, Vec<(Vec<String>, String)>) {
    let mut path = prefix.to_vec();
    let mut bound = Vec::new();
    if tokens.get(i).map(|t| &t.0) == Some(&Token::PathSeparator) {
        i += 1; // A leading `::`: an external crate.
    }
    while i < tokens.len() {
        match &tokens[i].0 {
            Token::Ident(word) if word == "as" => {
                if let Some((Token::Ident(alias), _)) = tokens.get(i + 1) {
                    let path = match path.split_last() {
                        Some((last, module)) if last == "self" => module.to_vec(),
                        _ => path.clone(),
                    };
                    // `as _` binds no name but is still a use (a trait's methods).
                    let name = if alias == "_" {
                        format!("_{}", tokens[i].1)
                    } else {
                        alias.clone()
                    };
                    bound.push((path, name));
                    return (end_of_tree(tokens, i + 2), bound);
                }
                i += 1;
            }
            Token::Ident(word) => {
                path.push(word.clone());
                i += 1;
            }
            Token::PathSeparator => i += 1,
            Token::Punct('*') => {
                bound.push((path, "*".to_string()));
                return (end_of_tree(tokens, i + 1), bound);
            }
            Token::Punct('{') => {
                i += 1;
                loop {
                    match tokens.get(i).map(|t| &t.0) {
                        Some(Token::Punct('}')) => {
                            i += 1;
                            break;
                        }
                        Some(Token::Punct(',')) => i += 1,
                        None => break,
                        _ => {
                            let (end, inner) = use_tree(tokens, i, &path);
                            bound.extend(inner);
                            i = end;
                        }
                    }
                }
                return (end_of_tree(tokens, i), bound);
            }
            _ => break,
        }
    }
    match path.last().map(String::as_str) {
        Some("self") => {
            let module = path[..path.len() - 1].to_vec();
            if let Some(name) = module.last().cloned() {
                bound.push((module, name));
            }
        }
        Some(name) => {
            let name = name.to_string();
            bound.push((path, name));
        }
        None => {}
    }
    (end_of_tree(tokens, i), bound)
}

/// Returns the index after the `;` that ends a `use`, or of the `,`/`}` that ends a
/// nested tree (left for the caller).
fn end_of_tree(tokens: &[(Token, usize)], i: usize) -> usize {
    match tokens.get(i).map(|t| &t.0) {
        Some(Token::Punct(';')) => i + 1,
        _ => i,
    }
}

/// Returns `path`, written in module `current`, as a path from the crate root; `None`
/// for a path into another crate.
fn absolute(krate: &Crate, current: &ModulePath, path: &[String]) -> Option<Vec<String>> {
    let first = path.first()?;
    let (mut base, rest) = match first.as_str() {
        "crate" | "$crate" => (Vec::new(), &path[1..]),
        "self" => (current.clone(), &path[1..]),
        "super" => {
            let mut base = current.clone();
            let mut rest = path;
            while rest.first().map(String::as_str) == Some("super") {
                base.pop();
                rest = &rest[1..];
            }
            (base, rest)
        }
        name if krate.modules.contains_key(&child_of(current, name))
            || krate
                .bindings
                .get(current)
                .is_some_and(|names| names.contains_key(name)) =>
        {
            (current.clone(), path)
        }
        // A child module declared further down the file, or a crate.
        _ => (current.clone(), path),
    };
    base.extend(rest.iter().cloned());
    Some(base)
}
