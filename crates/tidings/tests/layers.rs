//! The library's layers, checked from its source: imports run one way (serve → service → routes
//! → transport → protocol → engine), no module imports one above it, and no modules import each
//! other in a loop.
//!
//! Every `crate::…`, `super::…` and child-module path in code (not in comments) is an import of
//! the module file it names. A path must name a module: the crate root's re-exports
//! (`crate::Config`) are for users, not for the library's own modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first. A file's layer is that of its first path segment under `src/`.
const LAYERS: &[&str] = &[
    "engine",
    "protocol",
    "transport",
    "routes",
    "service",
    "serve",
];

/// `src/` of this crate: file path relative to it → source.
fn sources() -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let relative = path.strip_prefix(&root).expect("under src");
                let source = std::fs::read_to_string(&path).expect("read a source file");
                files.insert(relative.to_string_lossy().replace('\\', "/"), source);
            }
        }
    }
    files
}

/// The module path of a file: `engine/mod.rs` → `engine`, `routes/sockjs/info.rs` →
/// `routes::sockjs::info`, `lib.rs` → `` (the root).
fn module_of(file: &str) -> String {
    let path = file.strip_suffix(".rs").unwrap_or(file);
    let path = path.strip_suffix("/mod").unwrap_or(path);
    if path == "lib" {
        return String::new();
    }
    path.replace('/', "::")
}

/// The layer of a module, as an index into [`LAYERS`]; the root is above every layer.
fn layer_of(module: &str) -> Result<usize, String> {
    if module.is_empty() {
        return Ok(LAYERS.len());
    }
    let first = module.split("::").next().unwrap_or_default();
    LAYERS
        .iter()
        .position(|l| *l == first)
        .ok_or_else(|| format!("module `{module}` is in no layer: add `{first}` to LAYERS"))
}

/// The code of a source file without its comments (line comments, doc comments included).
fn code(source: &str) -> String {
    source
        .lines()
        .map(|line| match line.find("//") {
            // `//` inside a string (a URL) is kept; a comment starts a line or follows code.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every path the code names after `prefix` (`crate::`, `super::`, `self::` or `child::`),
/// with `{…}` groups expanded: `crate::a::{b, c::D}` gives `a::b` and `a::c::D`. Each comes
/// with how many inline modules (`mod tests { … }`) it is inside.
fn paths_after(code: &str, prefix: &str) -> Vec<(String, usize)> {
    let inline = inline_modules(code);
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find(prefix) {
        let at = from + found;
        from = at + prefix.len();
        // Only where a path starts: not in the middle of an identifier or of a longer path.
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let depth = inline
            .iter()
            .filter(|(open, close)| *open < at && at < *close)
            .count();
        let (tree, _) = path_tree(&code[from..]);
        out.extend(tree.into_iter().map(|p| (p, depth)));
    }
    out
}

/// Where each inline module's body (`mod name { … }`) starts and ends in `code`.
fn inline_modules(code: &str) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(at) = code[from..].find("mod ") {
        let start = from + at;
        from = start + 4;
        if code[..start]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            continue;
        }
        let rest = &code[from..];
        let name_len = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(rest.len());
        let after = rest[name_len..].trim_start();
        if name_len == 0 || !after.starts_with('{') {
            continue;
        }
        let open = from + name_len + (rest[name_len..].len() - after.len());
        if let Some(close) = matching_brace(code, open) {
            found.push((open, close));
        }
    }
    found
}

/// Where the brace opened at `open` closes, skipping string and character literals.
fn matching_brace(code: &str, open: usize) -> Option<usize> {
    let bytes = code.as_bytes();
    let mut depth = 0usize;
    let mut i = open;
    while i < bytes.len() {
        match bytes[i] {
            b'{' => depth += 1,
            b'}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            b'"' => i = string_end(bytes, i + 1, 0)?,
            // A raw string: `r"…"`, `r#"…"#`.
            b'r' if !bytes[..i]
                .last()
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_') =>
            {
                let hashes = bytes[i + 1..].iter().take_while(|b| **b == b'#').count();
                if bytes.get(i + 1 + hashes) == Some(&b'"') {
                    i = string_end(bytes, i + 2 + hashes, hashes)?;
                }
            }
            // A character literal (`'{'`, `'\''`); a lifetime (`'a`) has no closing quote.
            b'\'' if bytes.get(i + 1) == Some(&b'\\') => {
                i += 2 + bytes[i + 2..].iter().position(|b| *b == b'\'')?;
            }
            b'\'' if bytes.get(i + 2) == Some(&b'\'') => i += 2,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The index of the quote that ends a string whose text starts at `from`: a plain one
/// (`hashes` = 0) ends at a quote no backslash escapes, a raw one at a quote and its hashes.
fn string_end(bytes: &[u8], from: usize, hashes: usize) -> Option<usize> {
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if hashes == 0 => i += 1,
            b'"' if bytes[i + 1..]
                .iter()
                .take(hashes)
                .filter(|b| **b == b'#')
                .count()
                == hashes =>
            {
                return Some(i + hashes);
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// Reads a path tree at the start of `text`: `a::b`, `a::{b, c::d}`. Returns its paths and the
/// bytes read.
fn path_tree(text: &str) -> (Vec<String>, usize) {
    let mut head = String::new();
    let mut i = 0;
    let chars: Vec<char> = text.chars().collect();
    loop {
        while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
            head.push(chars[i]);
            i += 1;
        }
        if text[char_offset(&chars, i)..].starts_with("::{") {
            i += 3;
            let mut paths = Vec::new();
            loop {
                while i < chars.len() && (chars[i].is_whitespace() || chars[i] == ',') {
                    i += 1;
                }
                if i >= chars.len() || chars[i] == '}' {
                    i += 1;
                    break;
                }
                let (inner, used) = path_tree(&text[char_offset(&chars, i)..]);
                i += text[char_offset(&chars, i)..][..used].chars().count();
                for p in inner {
                    paths.push(if head.is_empty() {
                        p
                    } else {
                        format!("{head}::{p}")
                    });
                }
                // Skip an `as name`.
                while i < chars.len() && chars[i] != ',' && chars[i] != '}' {
                    i += 1;
                }
            }
            return (paths, char_offset(&chars, i));
        }
        if text[char_offset(&chars, i)..].starts_with("::")
            && chars
                .get(i + 2)
                .is_some_and(|c| c.is_alphanumeric() || *c == '_' || *c == '{')
        {
            head.push_str("::");
            i += 2;
            continue;
        }
        return (vec![head], char_offset(&chars, i));
    }
}

fn char_offset(chars: &[char], i: usize) -> usize {
    chars[..i.min(chars.len())]
        .iter()
        .map(|c| c.len_utf8())
        .sum()
}

/// The longest prefix of `path` (module segments) that is a module of `modules`.
fn resolve(path: &str, modules: &BTreeSet<String>) -> Option<String> {
    let segments: Vec<&str> = path.split("::").collect();
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// The modules each file imports, as module paths; and the paths that name no module.
fn imports(files: &BTreeMap<String, String>) -> (BTreeMap<String, BTreeSet<String>>, Vec<String>) {
    let modules: BTreeSet<String> = files.keys().map(|f| module_of(f)).collect();
    let mut edges = BTreeMap::new();
    let mut unresolved = Vec::new();
    for (file, source) in files {
        let module = module_of(file);
        let code = code(source);
        let mut targets = BTreeSet::new();
        let mut name = |path: String, what: &str| match resolve(&path, &modules) {
            Some(target) if target != module => {
                targets.insert(target);
            }
            Some(_) => {}
            None => unresolved.push(format!("{file}: `{what}{path}` names no module")),
        };
        for (path, _) in paths_after(&code, "crate::") {
            // `crate::engine::x` is a path from the root; the root itself is no import.
            if !path.is_empty() {
                name(path, "crate::");
            }
        }
        let parent: Vec<&str> = if module.is_empty() {
            Vec::new()
        } else {
            module.split("::").collect()
        };
        // `super::` is the parent of the file's module, or, inside an inline module (`mod
        // tests`), the file's module itself; `mod.rs` files are their module.
        for (path, depth) in paths_after(&code, "super::") {
            let keep = (parent.len() + depth).saturating_sub(1).min(parent.len());
            let full = parent[..keep]
                .iter()
                .copied()
                .chain(path.split("::").filter(|s| !s.is_empty()))
                .collect::<Vec<_>>()
                .join("::");
            if full == module {
                continue;
            }
            name(full, "super::");
        }
        // Child modules, by their own name (`cookie::set_jsessionid`) or through `self::`.
        let children: Vec<String> = modules
            .iter()
            .filter(|m| {
                m.strip_prefix(&module)
                    .and_then(|rest| {
                        if module.is_empty() {
                            Some(rest)
                        } else {
                            rest.strip_prefix("::")
                        }
                    })
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains("::"))
            })
            .cloned()
            .collect();
        for child in &children {
            let local = child.rsplit("::").next().unwrap_or_default();
            for prefix in [format!("{local}::"), format!("self::{local}::")] {
                for (path, _) in paths_after(&code, &prefix) {
                    let full = if path.is_empty() {
                        child.clone()
                    } else {
                        format!("{child}::{path}")
                    };
                    name(full, "");
                }
            }
        }
        edges.insert(module, targets);
    }
    (edges, unresolved)
}

/// Every import of a module above the importer's layer.
fn upward(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for (from, targets) in edges {
        let Ok(from_layer) = layer_of(from) else {
            found.push(format!("module `{from}` is in no layer"));
            continue;
        };
        for to in targets {
            match layer_of(to) {
                Ok(to_layer) if to_layer > from_layer => found.push(format!(
                    "`{from}` ({}) imports `{to}` ({}), a layer above it",
                    LAYERS[from_layer],
                    LAYERS.get(to_layer).unwrap_or(&"root")
                )),
                Ok(_) => {}
                Err(error) => found.push(error),
            }
        }
    }
    found
}

/// The loops among imports, each as the modules on it.
fn cycles(edges: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    // Tarjan's strongly connected components: every component of more than one module is a
    // loop.
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let targets = s.edges.get(v).into_iter().flatten();
        for w in targets {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                component.sort();
                s.found.push(component);
            }
        }
    }
    let mut state = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for v in edges.keys() {
        if !state.index.contains_key(v.as_str()) {
            visit(&mut state, v);
        }
    }
    state.found
}

/// What is wrong with the layering of `files`, one line each.
fn check(files: &BTreeMap<String, String>) -> Vec<String> {
    let (edges, mut problems) = imports(files);
    problems.extend(upward(&edges));
    for cycle in cycles(&edges) {
        problems.push(format!(
            "these modules import each other in a loop: {cycle:?}"
        ));
    }
    problems
}

#[test]
fn imports_run_one_way_and_never_in_a_loop() {
    let files = sources();
    assert!(files.len() > 20, "found the sources: {:?}", files.keys());
    let problems = check(&files);
    assert!(
        problems.is_empty(),
        "the layers (lowest first: {LAYERS:?}) are broken:\n{}",
        problems.join("\n")
    );
}

/// The check itself finds what it is for.
#[test]
fn the_check_finds_an_upward_import_a_loop_and_a_root_path() {
    let tree = |files: &[(&str, &str)]| -> BTreeMap<String, String> {
        files
            .iter()
            .map(|(f, s)| ((*f).to_owned(), (*s).to_owned()))
            .collect()
    };
    let good = tree(&[
        ("lib.rs", "mod engine; mod routes;"),
        (
            "engine/mod.rs",
            "pub(crate) mod hub;\npub(crate) mod session;",
        ),
        (
            "engine/hub.rs",
            "use tidings_store::X; // crate::routes::y in a comment",
        ),
        (
            "engine/session.rs",
            "use crate::engine::{hub::Hub, other};\nuse super::hub;",
        ),
        (
            "routes/mod.rs",
            "use crate::engine::session::Session;\nmod state;\nfn f() { state::x(); }",
        ),
        ("routes/state.rs", "use crate::engine::hub::Hub;"),
    ]);
    assert_eq!(check(&good), Vec::<String>::new());

    let upward_import = tree(&[
        ("lib.rs", ""),
        ("engine/hub.rs", "fn f() { crate::routes::admit(); }"),
        ("routes/mod.rs", ""),
    ]);
    let problems = check(&upward_import);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`engine::hub` (engine) imports `routes`")),
        "{problems:?}"
    );

    let a_loop = tree(&[
        ("lib.rs", ""),
        ("engine/hub.rs", "use crate::engine::session::S;"),
        ("engine/session.rs", "use super::hub::Hub;"),
    ]);
    let problems = check(&a_loop);
    assert!(
        problems.iter().any(|p| p.contains("loop")
            && p.contains("engine::hub")
            && p.contains("engine::session")),
        "{problems:?}"
    );

    let root_path = tree(&[
        ("lib.rs", "pub use engine::hub::Hub;"),
        ("engine/hub.rs", "fn f() -> crate::Hub {}"),
    ]);
    let problems = check(&root_path);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`crate::Hub` names no module")),
        "{problems:?}"
    );
}
