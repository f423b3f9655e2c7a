//! No module imports one that imports it back: the module import graph of
//! every crate of the workspace (the root package's `src/` and each
//! `crates/*/src/`) must be acyclic.
//!
//! The rule, at every level of the module tree: the children of one module
//! (each standing for itself and everything inside it) must not depend on
//! each other in a cycle. A reference from a file of module `a::b::c` to
//! module `a::x::y` is an edge `b -> x` among the children of `a`: where
//! their paths part. A module using its own children (a facade re-exporting
//! them) or its parent's items (`super::Item`) is containment, not an
//! import, and counts for nothing; so at the crate root, `analyze -> rules`
//! counts whatever submodule of `analyze` the reference comes from.
//!
//! References are what the source names: `use` trees and paths in code that
//! start with `crate::`, `super::`, `self::` or the name of a child module,
//! resolved to the longest path that is a module (from the files and the
//! inline `mod name { ... }` blocks). Comments and string literals are
//! skipped; macros are not expanded.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut crates = vec![("plan".to_owned(), root.join("src"))];
    let mut members: Vec<PathBuf> = std::fs::read_dir(root.join("crates"))
        .expect("crates/ is readable")
        .map(|entry| entry.expect("crates/ entry").path())
        .filter(|path| path.join("src").is_dir())
        .collect();
    members.sort();
    for member in members {
        let name = member
            .file_name()
            .and_then(|name| name.to_str())
            .expect("crate directory name")
            .to_owned();
        crates.push((name, member.join("src")));
    }

    let mut failures = Vec::new();
    for (name, src) in &crates {
        let cycles = cycles_in(&read_sources(src));
        for cycle in cycles {
            failures.push(format!("{name}: {}", cycle.join(" -> ")));
        }
    }
    assert!(
        failures.is_empty(),
        "modules that import each other back:\n{}",
        failures.join("\n")
    );
}

/// Every `.rs` file under `src`, as (module path, text). `lib.rs`,
/// `main.rs` and `mod.rs` stand for their directory's module.
fn read_sources(src: &Path) -> Vec<(Vec<String>, String)> {
    let mut files = Vec::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("source directory is readable") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|extension| extension != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).expect("under src");
            let mut module: Vec<String> = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            let file = module.pop().expect("a file name");
            let stem = file.trim_end_matches(".rs");
            if !matches!(stem, "lib" | "main" | "mod") {
                module.push(stem.to_owned());
            }
            let text = std::fs::read_to_string(&path).expect("source file is UTF-8");
            files.push((module, text));
        }
    }
    files.sort();
    files
}

/// The cycles among the modules of one crate, each as the children of one
/// module, named by their full paths and closed (first name repeated).
fn cycles_in(files: &[(Vec<String>, String)]) -> Vec<Vec<String>> {
    let tokenized: Vec<(Vec<String>, Vec<Token>)> = files
        .iter()
        .map(|(module, text)| (module.clone(), tokenize(text)))
        .collect();
    let mut modules: BTreeSet<Vec<String>> = BTreeSet::new();
    for (module, tokens) in &tokenized {
        for prefix in 0..=module.len() {
            modules.insert(module[..prefix].to_vec());
        }
        for (inline, _) in references(module, tokens, &BTreeSet::new()) {
            modules.insert(inline);
        }
    }
    // Edges grouped by the module whose children they join.
    let mut edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for (module, tokens) in &tokenized {
        for (from, to) in references(module, tokens, &modules) {
            let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
            if common < from.len() && common < to.len() {
                edges
                    .entry(from[..common].to_vec())
                    .or_default()
                    .insert((from[common].clone(), to[common].clone()));
            }
        }
    }
    let mut cycles = Vec::new();
    for (parent, level) in &edges {
        for cycle in find_cycles(level) {
            let name = |child: &String| {
                let mut path = parent.clone();
                path.push(child.clone());
                path.join("::")
            };
            cycles.push(cycle.iter().map(name).collect());
        }
    }
    cycles
}

/// One cycle through each strongly connected set of more than one node (or
/// a node with an edge to itself), found by depth-first search.
fn find_cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let mut successors: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges {
        successors.entry(from).or_default().push(to);
    }
    let mut cycles = Vec::new();
    let mut in_a_reported_cycle: BTreeSet<&str> = BTreeSet::new();
    for &start in successors.keys() {
        if in_a_reported_cycle.contains(start) {
            continue;
        }
        // Depth-first search for a path from `start` back to itself.
        let mut path = vec![start];
        let mut next_child = vec![0usize];
        let mut visited: BTreeSet<&str> = BTreeSet::from([start]);
        while let Some(&node) = path.last() {
            let children = successors.get(node).map(Vec::as_slice).unwrap_or_default();
            let position = next_child.last_mut().expect("parallel to path");
            let Some(&child) = children.get(*position) else {
                path.pop();
                next_child.pop();
                continue;
            };
            *position += 1;
            if child == start {
                let mut cycle: Vec<String> = path.iter().map(|name| (*name).to_owned()).collect();
                cycle.push(start.to_owned());
                in_a_reported_cycle.extend(path.iter().copied());
                cycles.push(cycle);
                break;
            }
            if visited.insert(child) {
                path.push(child);
                next_child.push(0);
            }
        }
    }
    cycles
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    PathSeparator,
    Punct(char),
}

/// The identifiers, `::` and punctuation of Rust source, without comments,
/// string, byte-string and char literals, and lifetimes.
fn tokenize(text: &str) -> Vec<Token> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        let character = chars[at];
        let next = chars.get(at + 1).copied();
        if character == '/' && next == Some('/') {
            while at < chars.len() && chars[at] != '\n' {
                at += 1;
            }
        } else if character == '/' && next == Some('*') {
            let mut depth = 0;
            while at < chars.len() {
                if chars[at] == '/' && chars.get(at + 1) == Some(&'*') {
                    depth += 1;
                    at += 2;
                } else if chars[at] == '*' && chars.get(at + 1) == Some(&'/') {
                    depth -= 1;
                    at += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    at += 1;
                }
            }
        } else if character == 'r' && matches!(next, Some('#') | Some('"')) && {
            let hashes = chars[at + 1..].iter().take_while(|&&c| c == '#').count();
            chars.get(at + 1 + hashes) == Some(&'"')
        } {
            // A raw string: r"...", r#"..."#, ...
            let hashes = chars[at + 1..].iter().take_while(|&&c| c == '#').count();
            at += 2 + hashes;
            while at < chars.len() {
                if chars[at] == '"' && chars[at + 1..].iter().take(hashes).all(|&c| c == '#') {
                    at += 1 + hashes;
                    break;
                }
                at += 1;
            }
        } else if character == '"' {
            at += 1;
            while at < chars.len() && chars[at] != '"' {
                at += if chars[at] == '\\' { 2 } else { 1 };
            }
            at += 1;
        } else if character == '\'' {
            // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
            if next == Some('\\') {
                // Past the quote, the backslash and the escaped character.
                at += 3;
                while at < chars.len() && chars[at] != '\'' {
                    at += 1;
                }
                at += 1;
            } else if chars.get(at + 2) == Some(&'\'') {
                at += 3;
            } else {
                at += 1;
                while at < chars.len() && (chars[at].is_alphanumeric() || chars[at] == '_') {
                    at += 1;
                }
            }
        } else if character.is_alphabetic() || character == '_' {
            let start = at;
            while at < chars.len() && (chars[at].is_alphanumeric() || chars[at] == '_') {
                at += 1;
            }
            let word: String = chars[start..at].iter().collect();
            // b"...", br"..." and b'x' are literals, not identifiers.
            if matches!(word.as_str(), "b" | "br")
                && matches!(chars.get(at), Some('"') | Some('\''))
            {
                continue;
            }
            tokens.push(Token::Ident(word));
        } else if character == ':' && next == Some(':') {
            tokens.push(Token::PathSeparator);
            at += 2;
        } else {
            if !character.is_whitespace() {
                tokens.push(Token::Punct(character));
            }
            at += 1;
        }
    }
    tokens
}

/// Every (module, referenced module) pair in one file of module `file`.
/// With an empty `modules`, lists the inline modules instead (paired with
/// themselves), so the caller can learn them before resolving anything.
fn references(
    file: &[String],
    tokens: &[Token],
    modules: &BTreeSet<Vec<String>>,
) -> Vec<(Vec<String>, Vec<String>)> {
    let learning = modules.is_empty();
    let mut found = Vec::new();
    // The inline module each open brace belongs to.
    let mut scopes: Vec<Option<String>> = Vec::new();
    let current = |scopes: &[Option<String>]| {
        let mut module = file.to_vec();
        module.extend(scopes.iter().flatten().cloned());
        module
    };
    let mut at = 0;
    while at < tokens.len() {
        match &tokens[at] {
            Token::Ident(word) if word == "mod" => {
                if let (Some(Token::Ident(name)), Some(Token::Punct('{'))) =
                    (tokens.get(at + 1), tokens.get(at + 2))
                {
                    scopes.push(Some(name.clone()));
                    if learning {
                        let module = current(&scopes);
                        found.push((module.clone(), module));
                    }
                    at += 3;
                    continue;
                }
            }
            Token::Ident(word) if word == "use" && !learning => {
                let module = current(&scopes);
                let end = tokens[at..]
                    .iter()
                    .position(|token| *token == Token::Punct(';'))
                    .map_or(tokens.len(), |offset| at + offset);
                for path in use_paths(&tokens[at + 1..end]) {
                    if let Some(target) = resolve(&module, &path, modules) {
                        found.push((module.clone(), target));
                    }
                }
                at = end;
                continue;
            }
            Token::Ident(first) if !learning => {
                let preceded_by_separator = at > 0 && tokens[at - 1] == Token::PathSeparator;
                if !preceded_by_separator && tokens.get(at + 1) == Some(&Token::PathSeparator) {
                    let mut path = vec![first.clone()];
                    let mut next = at + 1;
                    while tokens.get(next) == Some(&Token::PathSeparator) {
                        let Some(Token::Ident(segment)) = tokens.get(next + 1) else {
                            break;
                        };
                        path.push(segment.clone());
                        next += 2;
                    }
                    let module = current(&scopes);
                    if let Some(target) = resolve(&module, &path, modules) {
                        found.push((module, target));
                    }
                    at = next;
                    continue;
                }
            }
            Token::Punct('{') => scopes.push(None),
            Token::Punct('}') => {
                scopes.pop();
            }
            _ => {}
        }
        at += 1;
    }
    found
}

/// The paths a `use` tree names: `a::{b, c::{d, e}}` is `a::b`, `a::c::d`,
/// `a::c::e` (`self` inside braces stands for the prefix).
fn use_paths(tokens: &[Token]) -> Vec<Vec<String>> {
    fn tree(tokens: &[Token], at: &mut usize, prefix: &[String], out: &mut Vec<Vec<String>>) {
        let mut path = prefix.to_vec();
        while *at < tokens.len() {
            match &tokens[*at] {
                Token::Ident(word) if word == "as" => {
                    *at += 2;
                    break;
                }
                Token::Ident(word)
                    if word == "self" && path.len() == prefix.len() && !prefix.is_empty() =>
                {
                    *at += 1;
                }
                Token::Ident(word) => {
                    path.push(word.clone());
                    *at += 1;
                }
                Token::PathSeparator => *at += 1,
                Token::Punct('{') => {
                    *at += 1;
                    while *at < tokens.len() && tokens[*at] != Token::Punct('}') {
                        tree(tokens, at, &path, out);
                        if tokens.get(*at) == Some(&Token::Punct(',')) {
                            *at += 1;
                        }
                    }
                    *at += 1;
                    return;
                }
                _ => break,
            }
        }
        if path.len() > prefix.len() || !prefix.is_empty() {
            out.push(path);
        }
    }
    let mut out = Vec::new();
    let mut at = 0;
    // `pub use`, `pub(crate) use` start after the keyword; a leading `::`
    // names an external crate.
    if tokens.first() == Some(&Token::PathSeparator) {
        return out;
    }
    while at < tokens.len() {
        tree(tokens, &mut at, &[], &mut out);
        // Past the `,` between trees, or whatever stopped the last one.
        at += 1;
    }
    out
}

/// The module a path in `module` refers into: the longest prefix that is a
/// module, or `None` when the path leaves the crate.
fn resolve(
    module: &[String],
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut segments = path.iter().peekable();
    let mut target: Vec<String> = match segments.peek().map(|segment| segment.as_str()) {
        Some("crate") => {
            segments.next();
            Vec::new()
        }
        Some("self") => {
            segments.next();
            module.to_vec()
        }
        Some("super") => {
            let mut target = module.to_vec();
            while segments.peek().map(|segment| segment.as_str()) == Some("super") {
                segments.next();
                target.pop()?;
            }
            target
        }
        Some(first) => {
            let mut child = module.to_vec();
            child.push(first.to_owned());
            if !modules.contains(&child) {
                return None;
            }
            segments.next();
            child
        }
        None => return None,
    };
    for segment in segments {
        target.push(segment.clone());
        if !modules.contains(&target) {
            target.pop();
            break;
        }
    }
    Some(target)
}

mod checker {
    //! The checker itself, on small crates: it must find a cycle, and must
    //! not see one in a parent using its children.
    use super::cycles_in;

    fn crate_of(files: &[(&str, &str)]) -> Vec<(Vec<String>, String)> {
        files
            .iter()
            .map(|(module, text)| {
                let path = module
                    .split("::")
                    .filter(|part| !part.is_empty())
                    .map(str::to_owned)
                    .collect();
                (path, (*text).to_owned())
            })
            .collect()
    }

    #[test]
    fn finds_a_cycle_through_three_modules() {
        let files = crate_of(&[
            ("", "mod a; mod b; mod c;"),
            ("a", "use crate::b::{self, Thing};"),
            ("b", "fn f() { crate::c::g(); }"),
            ("c", "use super::a::X as Y;"),
        ]);
        assert_eq!(cycles_in(&files), vec![vec!["a", "b", "c", "a"]]);
    }

    #[test]
    fn finds_a_cycle_between_siblings_inside_a_module() {
        let files = crate_of(&[
            ("", "mod a;"),
            ("a", "mod b; mod c; use b::X;"),
            ("a::b", "use super::c::Y;"),
            (
                "a::c",
                "// use super::b::X; is a comment\nuse crate::a::b::X;",
            ),
        ]);
        assert_eq!(cycles_in(&files), vec![vec!["a::b", "a::c", "a::b"]]);
    }

    #[test]
    fn parents_children_comments_and_strings_are_no_cycle() {
        let files = crate_of(&[
            ("", "mod a; mod b; pub use a::X;"),
            (
                "a",
                "mod inner { use super::super::b::Z; } pub use inner::X;",
            ),
            (
                "a::inner",
                "use super::Y; const S: &str = \"crate::b::Z\"; const C: char = '\"';",
            ),
            (
                "b",
                "/* crate::a::X */ use std::fmt; fn f<'a>(x: &'a str) {}",
            ),
        ]);
        assert_eq!(cycles_in(&files), Vec::<Vec<String>>::new());
    }
}
