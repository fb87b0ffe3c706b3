//! No import circles in `src/`: every file is a node, every path it names (`use` lines and
//! paths in code, `crate::…`, `super::…`, `self::…`, and a child module's name) an edge to the
//! file that defines the longest module prefix of that path. A module declaring its children
//! (`mod x;`) is not an edge; using them is. Comments, string literals and inline test modules
//! (`#[cfg(test)] mod tests { … }`, which may use anything) are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Module path (e.g. `controller::plan::facts`) → file.
fn modules(root: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().and_then(|e| e.to_str()) != Some("rs") {
                continue;
            }
            let rel = path.strip_prefix(root).expect("under src");
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_string())
                .collect();
            // The binaries are crates of their own.
            if parts.first().map(String::as_str) == Some("bin") || parts == ["main"] {
                continue;
            }
            if parts.last().map(String::as_str) == Some("mod") || parts == ["lib"] {
                parts.pop();
            }
            out.insert(parts, path);
        }
    }
    out
}

/// The code of a file without comments and string literals.
fn code(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_str, mut in_line, mut in_block) = (false, false, 0usize);
    while let Some(c) = chars.next() {
        if in_line {
            if c == '\n' {
                in_line = false;
                out.push('\n');
            }
        } else if in_block > 0 {
            if c == '*' && chars.peek() == Some(&'/') {
                chars.next();
                in_block -= 1;
            } else if c == '/' && chars.peek() == Some(&'*') {
                chars.next();
                in_block += 1;
            }
        } else if in_str {
            if c == '\\' {
                chars.next();
            } else if c == '"' {
                in_str = false;
            }
        } else if c == '/' && chars.peek() == Some(&'/') {
            in_line = true;
        } else if c == '/' && chars.peek() == Some(&'*') {
            chars.next();
            in_block = 1;
        } else if c == '"' {
            in_str = true;
            out.push(' ');
        } else if c == '\'' {
            // A char literal ('x', '\n') or a lifetime ('a): skip a literal whole.
            let rest: String = chars.clone().take(3).collect();
            if rest.starts_with('\\') {
                for n in chars.by_ref() {
                    if n == '\'' {
                        break;
                    }
                }
            } else if rest.chars().nth(1) == Some('\'') {
                chars.next();
                chars.next();
            }
            out.push(' ');
        } else {
            out.push(c);
        }
    }
    out
}

/// The code before an inline test module (`#[cfg(test)]` then `mod name {`): by convention the
/// last item of a file.
fn without_inline_tests(code: &str) -> String {
    let mut rest = code;
    let mut out = String::new();
    while let Some(i) = rest.find("#[cfg(test)]") {
        let after = rest[i + "#[cfg(test)]".len()..].trim_start();
        let inline = after.starts_with("mod ")
            && after
                .find(['{', ';'])
                .is_some_and(|j| after.as_bytes().get(j) == Some(&b'{'));
        out.push_str(&rest[..i]);
        if inline {
            return out;
        }
        out.push_str("#[cfg(test)]");
        rest = &rest[i + "#[cfg(test)]".len()..];
    }
    out.push_str(rest);
    out
}

/// Every path the code names, expanded from `use a::{b, c::d}` groups.
fn paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < bytes.len() {
        let starts_word = i == 0
            || !(bytes[i - 1].is_alphanumeric() || bytes[i - 1] == '_' || bytes[i - 1] == ':');
        if starts_word && (bytes[i].is_alphabetic() || bytes[i] == '_') {
            let (path, next) = parse_path(&bytes, i, Vec::new(), &mut out);
            if path.len() > 1 {
                out.push(path);
            }
            i = next.max(i + 1);
        } else {
            i += 1;
        }
    }
    out
}

/// Parses `a::b::{c, d::e}` from `i`; grouped paths go to `out`, the plain one is returned.
fn parse_path(
    s: &[char],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> (Vec<String>, usize) {
    loop {
        let start = i;
        while i < s.len() && (s[i].is_alphanumeric() || s[i] == '_') {
            i += 1;
        }
        if i == start {
            return (prefix, i);
        }
        prefix.push(s[start..i].iter().collect());
        if i + 1 < s.len() && s[i] == ':' && s[i + 1] == ':' {
            i += 2;
            if i < s.len() && s[i] == '{' {
                i += 1;
                loop {
                    while i < s.len() && (s[i].is_whitespace() || s[i] == ',') {
                        i += 1;
                    }
                    if i >= s.len() || s[i] == '}' {
                        break;
                    }
                    let (p, next) = parse_path(s, i, prefix.clone(), out);
                    if p.len() > prefix.len() {
                        out.push(p);
                    }
                    i = next;
                    // Skip `as alias` and anything else up to the next item.
                    while i < s.len() && s[i] != ',' && s[i] != '}' {
                        i += 1;
                    }
                }
                return (Vec::new(), i + 1);
            }
        } else {
            return (prefix, i);
        }
    }
}

#[test]
fn src_has_no_import_circles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let modules = modules(&root);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = without_inline_tests(&code(&std::fs::read_to_string(file).expect("read")));
        let children: BTreeSet<String> = modules
            .keys()
            .filter(|m| m.len() == module.len() + 1 && m.starts_with(module))
            .filter_map(|m| m.last().cloned())
            .collect();
        for path in paths(&text) {
            let absolute: Vec<String> = match path[0].as_str() {
                "crate" => path[1..].to_vec(),
                "self" => module.iter().chain(&path[1..]).cloned().collect(),
                "super" => {
                    let ups = path.iter().take_while(|p| *p == "super").count();
                    let base = &module[..module.len().saturating_sub(ups)];
                    base.iter().chain(&path[ups..]).cloned().collect()
                }
                first if children.contains(first) => module.iter().chain(&path).cloned().collect(),
                _ => continue,
            };
            let target = (0..=absolute.len())
                .rev()
                .map(|n| absolute[..n].to_vec())
                .find(|p| modules.contains_key(p));
            if let Some(t) = target
                && &t != module
            {
                edges.entry(module.clone()).or_default().insert(t);
            }
        }
    }
    // Any cycle, found by depth-first search.
    let mut cycles = Vec::new();
    let mut done: BTreeSet<Vec<String>> = BTreeSet::new();
    for start in modules.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in edges.get(&node).into_iter().flatten() {
                if next == start {
                    let names: Vec<String> = trail.iter().map(|m| m.join("::")).collect();
                    cycles.push(format!("{} -> {}", names.join(" -> "), start.join("::")));
                } else if !done.contains(next) && seen.insert(next.clone()) {
                    let mut t = trail.clone();
                    t.push(next.clone());
                    stack.push((next.clone(), t));
                }
            }
        }
        done.insert(start.clone());
    }
    assert!(
        cycles.is_empty(),
        "import circles in src/ (file -> file it names):\n{}",
        cycles.join("\n")
    );
}

#[test]
fn inline_test_modules_are_left_out() {
    let text = "use crate::a::b;\n#[cfg(test)]\nmod tests;\nfn f() {}\n#[cfg(test)]\nmod tests {\n    use crate::c::d;\n}\n";
    let kept = without_inline_tests(text);
    assert!(
        kept.contains("crate::a::b") && kept.contains("mod tests;"),
        "{kept}"
    );
    assert!(!kept.contains("crate::c::d"), "{kept}");
}

#[test]
fn the_checker_sees_a_circle() {
    let uses = paths(&code(
        "use super::{a, b::c};\n// use crate::not::this;\nfn f() { crate::x::y(); let s = \"crate::z::w\"; }",
    ));
    assert_eq!(
        uses,
        vec![
            vec!["super".to_string(), "a".into()],
            vec!["super".to_string(), "b".into(), "c".into()],
            vec!["crate".to_string(), "x".into(), "y".into()],
        ]
    );
}
