//! The condition-reason scanner of `tests/runbook.rs`: just enough of a Rust lexer (comments,
//! strings, char literals, brackets) to find the reasons set in `src/` (see that file's doc).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One source file: its text with comments blanked and string literals' contents blanked
/// (`code`, for matching brackets), and the literals by the offset of their opening quote.
struct Source {
    path: PathBuf,
    code: Vec<char>,
    literals: BTreeMap<usize, String>,
}

/// Lexes just enough Rust: comments, strings (plain, raw, byte), char literals vs lifetimes.
fn lex(text: &str) -> (Vec<char>, BTreeMap<usize, String>) {
    let src: Vec<char> = text.chars().collect();
    let mut code = src.clone();
    let mut literals = BTreeMap::new();
    let mut i = 0;
    while i < src.len() {
        let c = src[i];
        let next = src.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < src.len() && src[i] != '\n' {
                code[i] = ' ';
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < src.len() {
                if src[i] == '/' && src.get(i + 1) == Some(&'*') {
                    depth += 1;
                } else if src[i] == '*' && src.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    code[i] = ' ';
                    code[i + 1] = ' ';
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                    continue;
                }
                if src[i] != '\n' {
                    code[i] = ' ';
                }
                i += 1;
            }
        } else if c == 'r'
            && (next == Some('"') || next == Some('#'))
            && !ident_char_before(&src, i)
        {
            i = raw_string(&src, &mut code, &mut literals, i);
        } else if c == '"' {
            i = plain_string(&src, &mut code, &mut literals, i);
        } else if c == '\'' {
            // A char literal ('x', '\n', '\'') is blanked; a lifetime ('static) is code.
            let end = if next == Some('\\') {
                (i + 2..src.len()).find(|&j| src[j] == '\'' && j > i + 2)
            } else if src.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(end) = end {
                for ch in &mut code[i + 1..end] {
                    *ch = ' ';
                }
                i = end + 1;
            } else {
                i += 1;
            }
        } else {
            i += 1;
        }
    }
    (code, literals)
}

fn ident_char_before(src: &[char], i: usize) -> bool {
    i > 0 && (src[i - 1].is_alphanumeric() || src[i - 1] == '_')
}

/// `"…"` from `start` (the quote): records its value, blanks its contents, returns the end.
fn plain_string(
    src: &[char],
    code: &mut [char],
    literals: &mut BTreeMap<usize, String>,
    start: usize,
) -> usize {
    let mut value = String::new();
    let mut j = start + 1;
    while j < src.len() && src[j] != '"' {
        if src[j] == '\\' {
            code[j] = ' ';
            j += 1;
        }
        if j < src.len() {
            value.push(src[j]);
            if src[j] != '\n' {
                code[j] = ' ';
            }
        }
        j += 1;
    }
    literals.insert(start, value);
    j + 1
}

/// `r#"…"#` from `start` (the `r`).
fn raw_string(
    src: &[char],
    code: &mut [char],
    literals: &mut BTreeMap<usize, String>,
    start: usize,
) -> usize {
    let hashes = src[start + 1..].iter().take_while(|&&c| c == '#').count();
    let open = start + 1 + hashes;
    if src.get(open) != Some(&'"') {
        return start + 1;
    }
    let closing: String = std::iter::once('"')
        .chain(std::iter::repeat_n('#', hashes))
        .collect();
    let rest: String = src[open + 1..].iter().collect();
    let len = rest
        .find(&closing)
        .map_or(rest.len(), |n| rest[..n].chars().count());
    let value: String = src[open + 1..open + 1 + len].iter().collect();
    for ch in &mut code[open + 1..open + 1 + len] {
        if *ch != '\n' {
            *ch = ' ';
        }
    }
    code[start] = ' ';
    literals.insert(open, value);
    open + 1 + len + closing.chars().count()
}

/// The index just past the bracket closing the one at `open`.
fn close(code: &[char], open: usize) -> usize {
    let mut depth = 0usize;
    for (j, &c) in code.iter().enumerate().skip(open) {
        match c {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
    }
    code.len()
}

/// Top-level arguments of the call whose `(` is at `open`, as trimmed (start, end) spans.
fn args(code: &[char], open: usize) -> Vec<(usize, usize)> {
    let end = close(code, open) - 1;
    let mut out = Vec::new();
    let (mut depth, mut from) = (0usize, open + 1);
    for j in open + 1..end {
        match code[j] {
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(trim(code, from, j));
                from = j + 1;
            }
            _ => {}
        }
    }
    let last = trim(code, from, end);
    if last.0 < last.1 {
        out.push(last);
    }
    out
}

fn trim(code: &[char], mut a: usize, mut b: usize) -> (usize, usize) {
    while a < b && code[a].is_whitespace() {
        a += 1;
    }
    while b > a && code[b - 1].is_whitespace() {
        b -= 1;
    }
    (a, b)
}

/// Blanks every item under `#[cfg(test)]` (an inline module, a function, a `use`), and returns
/// the names of test modules declared as files (`#[cfg(test)] mod tests;`).
fn strip_test_items(code: &mut [char]) -> Vec<String> {
    let text: String = code.iter().collect();
    let starts: Vec<usize> = text
        .match_indices("#[cfg(test)]")
        .map(|(b, _)| text[..b].chars().count())
        .collect();
    let mut file_modules = Vec::new();
    for at in starts {
        let Some(stop) = (at..code.len()).find(|&j| code[j] == '{' || code[j] == ';') else {
            continue;
        };
        let item: String = code[at + 12..stop].iter().collect();
        let end = if code[stop] == '{' {
            close(code, stop)
        } else {
            if let Some(name) = item.trim().strip_prefix("mod ") {
                file_modules.push(name.trim().to_string());
            }
            stop + 1
        };
        for ch in &mut code[at..end] {
            if *ch != '\n' {
                *ch = ' ';
            }
        }
    }
    file_modules
}

/// Every `.rs` file under `src/` that is not test code.
fn sources(root: &Path) -> Vec<Source> {
    let mut out = Vec::new();
    let mut skip: BTreeSet<PathBuf> = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    let mut files = Vec::new();
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "tests") {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    for path in files {
        let text = std::fs::read_to_string(&path).expect("read source");
        let (mut code, literals) = lex(&text);
        // `foo.rs` declares `foo/x.rs`; `mod.rs`, `lib.rs`, `main.rs` declare siblings.
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        let dir = path.parent().unwrap_or(root);
        let module_dir = if matches!(stem, "mod" | "lib" | "main") {
            dir.to_path_buf()
        } else {
            dir.join(stem)
        };
        for name in strip_test_items(&mut code) {
            skip.insert(module_dir.join(format!("{name}.rs")));
            skip.insert(module_dir.join(&name).join("mod.rs"));
        }
        // Literals inside the blanked test items lost their opening quote.
        let literals = literals
            .into_iter()
            .filter(|(at, _)| code[*at] == '"')
            .collect();
        out.push(Source {
            path,
            code,
            literals,
        });
    }
    out.retain(|s| !skip.contains(&s.path) && s.path.file_name().is_some_and(|n| n != "tests.rs"));
    out
}

/// The identifier ending just before `end` (skipping whitespace), with its start.
fn ident_before(code: &[char], end: usize) -> Option<(usize, String)> {
    let mut b = end;
    while b > 0 && code[b - 1].is_whitespace() {
        b -= 1;
    }
    let mut a = b;
    while a > 0 && (code[a - 1].is_alphanumeric() || code[a - 1] == '_') {
        a -= 1;
    }
    (a < b).then(|| (a, code[a..b].iter().collect()))
}

/// A function that takes a reason: its impl type (if any), name, whether it takes `self`, and
/// the indices (not counting `self`) of its reason parameters.
#[derive(Debug)]
struct ReasonFn {
    owner: Option<String>,
    name: String,
    method: bool,
    params: Vec<usize>,
}

/// The impl blocks of a file: (start, end, type name). An `impl` in a type position
/// (`message: impl Into<String>`) is not a block.
fn impls(code: &[char]) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    for at in word_starts(code, "impl") {
        let mut p = at;
        while p > 0 && code[p - 1].is_whitespace() {
            p -= 1;
        }
        let item_start = p == 0
            || matches!(code[p - 1], '}' | ';' | ']')
            || ident_before(code, p).is_some_and(|(_, w)| w == "unsafe");
        let Some(open) = (at..code.len()).find(|&j| code[j] == '{' || code[j] == ';') else {
            continue;
        };
        if !item_start || code[open] == ';' {
            continue;
        }
        let mut head: &[char] = &code[at + 4..open];
        // Skip the impl's own generics: `impl<'a> Foo<'a>`.
        let lead = head.iter().take_while(|c| c.is_whitespace()).count();
        if head.get(lead) == Some(&'<') {
            head = &head[close(head, lead).min(head.len())..];
        }
        let head: String = head.iter().collect();
        let head = head.split(" where ").next().unwrap_or_default();
        let ty = head.rsplit(" for ").next().unwrap_or_default();
        let ty = ty.split('<').next().unwrap_or_default();
        let name = ty
            .rsplit("::")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        out.push((open, close(code, open), name));
    }
    out
}

/// Where `word` starts as a whole word in `code`.
fn word_starts(code: &[char], word: &str) -> Vec<usize> {
    let w: Vec<char> = word.chars().collect();
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    (0..code.len().saturating_sub(w.len()))
        .filter(|&i| code[i..i + w.len()] == w[..])
        .filter(|&i| i == 0 || !is_ident(code[i - 1]))
        .filter(|&i| !code.get(i + w.len()).copied().is_some_and(is_ident))
        .collect()
}

/// The functions of `s` with reason parameters (see the module doc).
fn reason_fns(s: &Source, status_dir: &Path) -> Vec<ReasonFn> {
    let code = &s.code;
    let impls = impls(code);
    let in_status = s.path.starts_with(status_dir);
    let mut out = Vec::new();
    for at in word_starts(code, "fn") {
        if code.get(at + 2) != Some(&' ') {
            continue;
        }
        let Some(open) = (at..code.len()).find(|&j| code[j] == '(') else {
            continue;
        };
        let name: String = code[at + 3..open].iter().collect();
        let name = name
            .split('<')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let mut params = Vec::new();
        let mut method = false;
        let mut index = 0;
        for (a, b) in args(code, open) {
            let p: String = code[a..b].iter().collect();
            let p = p.split_whitespace().collect::<Vec<_>>().join(" ");
            if matches!(p.as_str(), "self" | "&self" | "&mut self" | "mut self") {
                method = true;
                continue;
            }
            let (pname, ptype) = p.split_once(':').unwrap_or((&p, ""));
            let (pname, ptype) = (pname.trim(), ptype.trim());
            if pname.ends_with("reason")
                && (ptype == "&'static str" || (in_status && ptype.starts_with('&')))
            {
                params.push(index);
            }
            index += 1;
        }
        if !params.is_empty() {
            let owner = impls
                .iter()
                .filter(|(a, b, _)| *a < at && at < *b)
                .map(|(_, _, n)| n.clone())
                .next_back();
            out.push(ReasonFn {
                owner,
                name,
                method,
                params,
            });
        }
    }
    out
}

/// `const NAME: &str = "Value";` across the sources.
fn consts(sources: &[Source]) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for s in sources {
        for at in word_starts(&s.code, "const") {
            let Some(eq) = (at..s.code.len()).find(|&j| s.code[j] == '=' || s.code[j] == ';')
            else {
                continue;
            };
            let head: String = s.code[at + 5..eq].iter().collect();
            let Some((name, ty)) = head.split_once(':') else {
                continue;
            };
            if !ty.contains("str") {
                continue;
            }
            let value_at = (eq + 1..s.code.len()).find(|&j| !s.code[j].is_whitespace());
            if let Some(v) = value_at.and_then(|j| s.literals.get(&j)) {
                out.insert(name.trim().to_string(), v.clone());
            }
        }
    }
    out
}

fn camel(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && s.len() > 2
        && s.chars().all(|c| c.is_ascii_alphanumeric())
        && s.chars().any(|c| c.is_ascii_lowercase())
}

fn multi_hump(s: &str) -> bool {
    camel(s) && s.chars().skip(1).any(|c| c.is_ascii_uppercase())
}

/// The reason an argument span names: a literal, or a `const` passed by (path) name.
fn reason_of(
    s: &Source,
    (a, b): (usize, usize),
    consts: &BTreeMap<String, String>,
) -> Option<String> {
    if let Some(lit) = s.literals.get(&a)
        && s.code[b - 1] == '"'
    {
        return camel(lit).then(|| lit.clone());
    }
    let arg: String = s.code[a..b].iter().collect();
    let name = arg.rsplit("::").next().unwrap_or_default();
    consts.get(name).filter(|v| camel(v)).cloned()
}

/// Every condition reason set in `src/`, with a file that sets it.
pub fn scan(src: &Path) -> BTreeMap<String, PathBuf> {
    let sources = sources(src);
    let consts = consts(&sources);
    let status_dir = src.join("controller").join("status");
    let fns: Vec<ReasonFn> = sources
        .iter()
        .flat_map(|s| reason_fns(s, &status_dir))
        .collect();
    let mut found = BTreeMap::new();
    for s in &sources {
        let mut add = |r: Option<String>| {
            if let Some(r) = r {
                found.entry(r).or_insert_with(|| s.path.clone());
            }
        };
        calls(s, &fns, &consts, &mut add);
        fields_and_tuples(s, src, &mut add);
    }
    found
}

/// Arguments passed for reason parameters.
fn calls(
    s: &Source,
    fns: &[ReasonFn],
    consts: &BTreeMap<String, String>,
    add: &mut impl FnMut(Option<String>),
) {
    let code = &s.code;
    for open in (0..code.len()).filter(|&j| code[j] == '(') {
        let Some((start, name)) = ident_before(code, open) else {
            continue;
        };
        let before = ident_before(code, start).map(|(_, w)| w);
        if before.as_deref() == Some("fn") {
            continue;
        }
        let prefix: String = code[start.saturating_sub(2)..start].iter().collect();
        let owner = (prefix == "::")
            .then(|| ident_before(code, start - 2).map(|(_, w)| w))
            .flatten();
        let dotted = start > 0 && code[start - 1] == '.';
        let args = args(code, open);
        for f in fns.iter().filter(|f| f.name == name) {
            let matches = if dotted {
                f.method
            } else {
                match (&owner, &f.owner) {
                    (Some(o), Some(fo)) => o == fo || o == "Self",
                    (Some(_), None) => true, // a module path: `executed::failed(…)`
                    (None, owner) => owner.is_none(),
                }
            };
            if matches {
                for &i in &f.params {
                    add(args.get(i).and_then(|&span| reason_of(s, span, consts)));
                }
            }
        }
    }
}

/// `reason: "X"` field initializers; in plan/ and status/, `("X", …)` tuples and `Some("X")`.
fn fields_and_tuples(s: &Source, src: &Path, add: &mut impl FnMut(Option<String>)) {
    let deciding = ["plan", "status"]
        .iter()
        .any(|d| s.path.starts_with(src.join("controller").join(d)));
    for (&at, lit) in &s.literals {
        let mut b = at;
        while b > 0 && s.code[b - 1].is_whitespace() {
            b -= 1;
        }
        if b == 0 {
            continue;
        }
        // The contents are blanked in `code`, so the next quote closes the literal.
        let end = (at + 1..s.code.len())
            .find(|&j| s.code[j] == '"')
            .map_or(s.code.len(), |j| j + 1);
        let after = (end..s.code.len()).find(|&j| !s.code[j].is_whitespace());
        let after = after.map(|j| s.code[j]);
        match s.code[b - 1] {
            ':' if b >= 2
                && s.code[b - 2] != ':'
                && ident_before(&s.code, b - 1).is_some_and(|(_, w)| w.ends_with("reason")) =>
            {
                add(camel(lit).then(|| lit.clone()));
            }
            '(' if deciding && multi_hump(lit) => {
                // `format!("…", …)` is a message, not a tuple.
                let macro_call = b >= 2 && s.code[b - 2] == '!';
                let callee = ident_before(&s.code, b - 1).map(|(_, w)| w);
                let tuple = !macro_call && callee.is_none() && after == Some(',');
                let some = callee.as_deref() == Some("Some") && after == Some(')');
                if tuple || some {
                    add(Some(lit.clone()));
                }
            }
            _ => {}
        }
    }
}
