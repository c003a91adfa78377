//! The architecture rules, checked on the source: dependencies between modules point one way
//! (app → run → store → input → chat → leaf helpers, the simulator on chat alone), no module
//! uses another in a circle, only the app layer knows clap or exit statuses, and the simulator
//! uses none of the client's UserSig code but the key type.
//!
//! Every path a module's code names is read: `crate::…`, `super::…`, `self::…` and its child
//! modules' paths (`batch::BatchPath` in `run::send`), over the whole file up to its
//! `#[cfg(test)] mod tests {` block. `cargo test layers -- --nocapture` prints the graph between
//! the top-level parts, and the modules' own.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level part and the parts it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("app", &["run", "store", "input", "chat", "sim", "leaf"]),
    ("run", &["store", "input", "chat", "leaf"]),
    ("store", &["input", "leaf"]),
    ("input", &["leaf"]),
    ("chat", &["leaf"]),
    ("sim", &["chat"]),
    ("leaf", &[]),
];

/// Top-level modules that are leaf helpers, usable from every layer.
const LEAF_MODULES: &[&str] = &["outcome", "fsutil"];

struct Source {
    /// `run::send`, `chat::client`, `app` (for `app/mod.rs`) …
    module: String,
    /// The code before the file's `#[cfg(test)]` block.
    code: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files
        .into_iter()
        .filter_map(|path| {
            let rel = path.strip_prefix(&root).ok()?.with_extension("");
            let mut parts: Vec<String> = rel
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                return None;
            }
            let text = std::fs::read_to_string(&path).ok()?;
            // Only the inline test module is cut off: a `mod tests;` declaration (its tests in
            // another file) may have code after it.
            let code = match text.find("#[cfg(test)]\nmod tests {") {
                Some(at) => &text[..at],
                None => &text[..],
            };
            // Comments name paths without using them.
            let code = code
                .lines()
                .map(|line| line.split("//").next().unwrap_or(""))
                .collect::<Vec<_>>()
                .join("\n");
            Some(Source {
                module: parts.join("::"),
                code,
            })
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every path written after `crate::`, with `{a, b::{c, d}}` groups expanded.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue; // `$crate::` or `other_crate::`
        }
        let mut chars = rest.char_indices().peekable();
        parse_tree(rest, &mut chars, Vec::new(), &mut paths);
    }
    paths
}

type Chars<'a> = std::iter::Peekable<std::str::CharIndices<'a>>;

fn parse_tree(text: &str, chars: &mut Chars, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    loop {
        skip_space(chars);
        match chars.peek() {
            Some(&(_, '{')) => {
                chars.next();
                loop {
                    parse_tree(text, chars, path.clone(), out);
                    skip_space(chars);
                    match chars.next() {
                        Some((_, ',')) => continue,
                        _ => return, // '}' or the end
                    }
                }
            }
            Some(&(start, c)) if c.is_alphabetic() || c == '_' => {
                let mut end = start;
                while let Some(&(i, c)) = chars.peek() {
                    if c.is_alphanumeric() || c == '_' {
                        end = i + c.len_utf8();
                        chars.next();
                    } else {
                        break;
                    }
                }
                path.push(text[start..end].to_string());
                if text[end..].starts_with("::") {
                    chars.next();
                    chars.next();
                    continue;
                }
                // `self` in a group names the prefix itself.
                if path.last().is_some_and(|p| p == "self") {
                    path.pop();
                }
                out.push(path);
                return;
            }
            _ => {
                out.push(path);
                return;
            }
        }
    }
}

fn skip_space(chars: &mut Chars) {
    while chars.peek().is_some_and(|&(_, c)| c.is_whitespace()) {
        chars.next();
    }
}

/// The longest known module a path names.
fn module_of<'a>(path: &[String], modules: &'a BTreeSet<String>) -> Option<&'a String> {
    (1..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n].join("::")))
}

fn part_of(module: &str) -> &str {
    let top = module.split("::").next().unwrap_or(module);
    if LEAF_MODULES.contains(&top) {
        "leaf"
    } else {
        top
    }
}

/// Every module path `code` (of `module`) names, as paths from the crate root: `crate::…`,
/// `super::…` and `self::…` resolved, and paths into its child modules (`children`).
fn module_paths(code: &str, module: &str, children: &[&str]) -> Vec<Vec<String>> {
    let own: Vec<String> = module.split("::").map(String::from).collect();
    let mut paths = crate_paths(code);
    for (word, base_len) in [
        ("super::", own.len().saturating_sub(1)),
        ("self::", own.len()),
    ] {
        for path in relative_paths(code, word) {
            // `super::super::x`: one level up per `super`.
            let ups = path.iter().take_while(|p| *p == "super").count();
            let base = &own[..base_len.saturating_sub(ups)];
            let rest = &path[ups..];
            paths.push(base.iter().cloned().chain(rest.iter().cloned()).collect());
        }
    }
    for child in children {
        for path in relative_paths(code, &format!("{child}::")) {
            let mut full = own.clone();
            full.push(child.to_string());
            full.extend(path);
            paths.push(full);
        }
    }
    paths
}

/// The paths written after `word` (`super::`, `child::`) where it starts a path.
fn relative_paths(code: &str, word: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find(word) {
        let at = from + found;
        from = at + word.len();
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':' || c == '$') {
            continue;
        }
        let rest = &code[from..];
        let mut chars = rest.char_indices().peekable();
        parse_tree(rest, &mut chars, Vec::new(), &mut paths);
    }
    paths
}

/// Module → the modules it uses (outside itself).
fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let sources = sources();
    let modules: BTreeSet<String> = sources.iter().map(|s| s.module.clone()).collect();
    let mut graph = BTreeMap::new();
    for source in &sources {
        let prefix = format!("{}::", source.module);
        let children: Vec<&str> = modules
            .iter()
            .filter_map(|m| m.strip_prefix(&prefix))
            .filter(|child| !child.contains("::"))
            .collect();
        let uses: BTreeSet<String> = module_paths(&source.code, &source.module, &children)
            .iter()
            .filter_map(|path| module_of(path, &modules))
            .filter(|used| {
                **used != source.module && !source.module.starts_with(&format!("{used}::"))
            })
            .cloned()
            .collect();
        graph.insert(source.module.clone(), uses);
    }
    graph
}

fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(2) => return None,
            Some(1) => {
                let from = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(node.to_string());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(node.to_string(), 1);
        stack.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn the_path_parser_expands_groups() {
    let paths = crate_paths(
        "use crate::run::{self, send::{Job, Report}, summary};\nlet x = crate::chat::codes::classify(1);\nmacro $crate::x",
    );
    let joined: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        joined,
        [
            "run",
            "run::send::Job",
            "run::send::Report",
            "run::summary",
            "chat::codes::classify"
        ]
    );
}

#[test]
fn relative_paths_resolve_from_their_module() {
    let code = "use super::{Job, worker::Shared};\nlet x = super::super::codes::y;\nself::inner::f();\nbatch::BatchPath::start()";
    let joined: Vec<String> = module_paths(code, "run::send::reader", &["batch"])
        .iter()
        .map(|p| p.join("::"))
        .collect();
    assert_eq!(
        joined,
        [
            "run::send::Job",
            "run::send::worker::Shared",
            "run::codes::y",
            "run::send::reader::inner::f",
            "run::send::reader::batch::BatchPath::start",
        ]
    );
}

#[test]
fn no_module_uses_another_in_a_circle() {
    let graph = module_graph();
    assert!(graph.len() > 20, "found only {} modules", graph.len());
    println!("modules and the modules they use:");
    for (module, uses) in &graph {
        let uses: Vec<&str> = uses.iter().map(String::as_str).collect();
        println!("  {module} → {}", uses.join(", "));
    }
    if let Some(cycle) = find_cycle(&graph) {
        panic!("a circle: {}", cycle.join(" → "));
    }
}

#[test]
fn dependencies_between_layers_point_down_only() {
    let graph = module_graph();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut parts: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut forbidden = Vec::new();
    for (module, uses) in &graph {
        let from = part_of(module);
        let Some(may_use) = allowed.get(from) else {
            forbidden.push(format!(
                "{module}: top-level part {from:?} is not in the layer table"
            ));
            continue;
        };
        for used in uses {
            let to = part_of(used);
            if to == from {
                continue;
            }
            parts.entry(from).or_default().insert(to);
            if !may_use.contains(&to) {
                forbidden.push(format!("{module} → {used} ({from} may not use {to})"));
            }
        }
    }
    println!("module graph between the top-level parts:");
    for (from, to) in &parts {
        println!(
            "  {from:<6} → {}",
            to.iter().copied().collect::<Vec<_>>().join(", ")
        );
    }
    assert!(
        forbidden.is_empty(),
        "forbidden edges:\n  {}",
        forbidden.join("\n  ")
    );
    // The table is no looser than the code: every edge it allows is one the code has, so a
    // new edge between parts is a decision made here, not something the table let through.
    let unused: Vec<String> = ALLOWED
        .iter()
        .flat_map(|(from, tos)| tos.iter().map(move |to| (*from, *to)))
        .filter(|(from, to)| !parts.get(from).is_some_and(|used| used.contains(to)))
        .map(|(from, to)| format!("{from} → {to}"))
        .collect();
    assert!(
        unused.is_empty(),
        "the table allows edges the code does not have (tighten it):\n  {}",
        unused.join("\n  ")
    );
}

#[test]
fn only_the_app_layer_knows_clap_and_exit_statuses() {
    let mut offenders = Vec::new();
    for source in sources() {
        if part_of(&source.module) == "app" {
            continue;
        }
        for needle in ["clap::", "ExitStatus", "ExitCode", "process::exit"] {
            if source.code.contains(needle) {
                offenders.push(format!("{} mentions {needle}", source.module));
            }
        }
    }
    assert!(offenders.is_empty(), "{}", offenders.join("\n"));
}

/// What the simulator's code (its test modules aside) uses of the client's `chat::usersig`
/// other than the key type: the simulator checks UserSigs with its own code (`sim::auth`,
/// written from the spec), so a mistake in the client's generation or check cannot pass there
/// too. Every way to reach it counts: a path through `crate::` or `super::`, the module itself
/// imported, renamed or glob-imported, and `usersig::…` after `use crate::chat;` or such.
fn sim_usersig_uses(source: &Source) -> Vec<String> {
    let key_type = ["chat", "usersig", "SecretKey"];
    let module: Vec<&str> = source.module.split("::").collect();
    if module.first() != Some(&"sim") || module.contains(&"tests") {
        return Vec::new();
    }
    let mut uses: Vec<String> = module_paths(&source.code, &source.module, &[])
        .into_iter()
        .filter(|path| path.len() >= 2 && path[..2] == key_type[..2] && *path != key_type)
        .map(|path| path.join("::"))
        .collect();
    // `usersig::x` wherever `usersig` is the whole name, after `::` or not.
    let mut from = 0;
    while let Some(found) = source.code[from..].find("usersig::") {
        let at = from + found;
        from = at + "usersig::".len();
        let before = source.code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &source.code[from..];
        let mut paths = Vec::new();
        parse_tree(
            rest,
            &mut rest.char_indices().peekable(),
            Vec::new(),
            &mut paths,
        );
        uses.extend(
            paths
                .into_iter()
                .filter(|path| *path != ["SecretKey"])
                .map(|path| format!("usersig::{}", path.join("::"))),
        );
    }
    uses
}

#[test]
fn the_simulator_uses_none_of_the_clients_usersig_code_but_the_key_type() {
    let offenders: Vec<String> = sources()
        .iter()
        .flat_map(|source| {
            sim_usersig_uses(source)
                .into_iter()
                .map(move |used| format!("{} uses {used}", source.module))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "the simulator must check UserSigs with its own code (sim::auth), not the client's:\n  {}",
        offenders.join("\n  ")
    );
    // The rule sees every way simulator code could reach the client's generation or check.
    let sim = |code: &str| Source {
        module: "sim::auth".into(),
        code: code.into(),
    };
    for reach in [
        "let sig = crate::chat::usersig::generate(&key, app, admin, now, ttl);",
        "use crate::chat::usersig::{verify, SecretKey};",
        "use crate::chat::usersig::{self, SecretKey};\nlet doc = usersig::decode(sig);",
        "use crate::chat::usersig;",
        "use crate::chat::usersig as sig;",
        "use crate::chat::usersig::*;",
        "use crate::chat;\nlet sig = chat::usersig::signature(&key, admin, app, now, ttl);",
        "use crate::chat::{client::SENT_AT_HEADER, usersig::{decode, SecretKey}};",
    ] {
        assert!(
            !sim_usersig_uses(&sim(reach)).is_empty(),
            "not seen: {reach}"
        );
    }
    // The key type is allowed, and so are the simulator's own names that contain the word.
    let own = "use crate::chat::usersig::SecretKey;\nuse crate::chat::{usersig::SecretKey};\n\
               let n = state.usersigs.len(); check_usersig(usersig, &key, app, id, now);";
    assert_eq!(sim_usersig_uses(&sim(own)), Vec::<String>::new());
    // Its test modules build signed requests as a client would: they may use the generation.
    let tests = Source {
        module: "sim::tests::auth".into(),
        code: "let sig = usersig::generate(&key, app, admin, now, ttl);".into(),
    };
    assert!(sim_usersig_uses(&tests).is_empty());
}

/// Functions over this many lines (outside tests) are split.
const MAX_FUNCTION_LINES: usize = 100;
/// Files over this many lines of non-test code are split.
const MAX_FILE_LINES: usize = 800;

#[test]
fn no_function_over_100_lines_and_no_file_over_800() {
    let mut too_long = Vec::new();
    for source in sources() {
        if source.module.split("::").any(|part| part == "tests") {
            continue;
        }
        let lines: Vec<&str> = source.code.lines().collect();
        if lines.len() > MAX_FILE_LINES {
            too_long.push(format!("{}: {} lines", source.module, lines.len()));
        }
        for (start, line) in lines.iter().enumerate() {
            let Some(indent) = function_start(line) else {
                continue;
            };
            if line.trim_end().ends_with(';') {
                continue; // a declaration in a trait
            }
            let closing = format!("{indent}}}");
            let end = (start..lines.len())
                .find(|&i| lines[i].trim_end() == closing)
                .unwrap_or(lines.len() - 1);
            let length = end - start + 1;
            if length > MAX_FUNCTION_LINES {
                too_long.push(format!(
                    "{} line {}: a function of {length} lines",
                    source.module,
                    start + 1
                ));
            }
        }
    }
    assert!(too_long.is_empty(), "{}", too_long.join("\n"));
}

/// The indentation of a line that starts a function.
fn function_start(line: &str) -> Option<&str> {
    let trimmed = line.trim_start();
    let indent = &line[..line.len() - trimmed.len()];
    let mut words = trimmed.split_whitespace().peekable();
    while let Some(word) = words.peek() {
        if word.starts_with("pub") || ["async", "const", "unsafe"].contains(word) {
            words.next();
        } else {
            break;
        }
    }
    (words.next() == Some("fn")).then_some(indent)
}
