//! The crate's modules form a one-way pipeline: each module only uses the ones above
//! it in the numbered list of `src/lib.rs`'s doc comment. This test reads the
//! crate's own sources and fails on a module that uses one listed after it (or
//! itself listed nowhere), so an import cycle such as the old `load` <-> `validate`
//! cannot come back.
//!
//! A use is any `crate::NAME` path outside comments and literals, with `crate::{a, b::c}` groups
//! expanded. `NAME` is a module, or an item `lib.rs` re-exports: then it counts as a
//! use of the module it comes from (`pub use module::{...}`, or the `pub use
//! module::*` glob for any other name).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// `lib.rs` and the source of each module (its file, and the files of its
/// submodules), by module name.
struct Crate {
    lib: String,
    modules: BTreeMap<String, String>,
}

fn read_crate() -> Crate {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let mut modules = BTreeMap::new();
    for name in declared_modules(&lib) {
        let mut text = String::new();
        let file = src.join(format!("{name}.rs"));
        if file.exists() {
            text += &fs::read_to_string(&file).expect("a module file");
        }
        let dir = src.join(&name);
        if dir.is_dir() {
            for path in rust_files(&dir) {
                text += &fs::read_to_string(&path).expect("a submodule file");
            }
        }
        assert!(!text.is_empty(), "module {name}: no source found");
        modules.insert(name, text);
    }
    Crate { lib, modules }
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("a module directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(rust_files(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// The module order documented in `lib.rs`: its doc lines "`//! N. `name`: ...`".
fn documented_order(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .filter_map(|line| {
            let (number, rest) = line.trim().split_once(". `")?;
            number.parse::<u32>().ok()?;
            let (name, _) = rest.split_once('`')?;
            Some(name.to_owned())
        })
        .collect()
}

/// The modules `lib.rs` declares (`mod name;`, `pub mod name;`, ...).
fn declared_modules(lib: &str) -> Vec<String> {
    strip_comments(lib)
        .lines()
        .filter_map(|line| {
            let line = line.trim();
            let at = line.find("mod ")?;
            let before = line[..at].trim();
            if !(before.is_empty() || before.starts_with("pub")) {
                return None;
            }
            let name = line[at + 4..].strip_suffix(';')?;
            Some(name.trim().to_owned())
        })
        .collect()
}

/// What `lib.rs` re-exports: item name -> module, and the modules re-exported with a
/// glob.
fn reexports(lib: &str) -> (BTreeMap<String, String>, Vec<String>) {
    let mut names = BTreeMap::new();
    let mut globs = Vec::new();
    let code = strip_comments(lib);
    for statement in code.split(';') {
        let Some(path) = statement.trim().strip_prefix("pub use ") else {
            continue;
        };
        let path = path.trim();
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        let items = items.trim();
        if items == "*" {
            globs.push(module.to_owned());
            continue;
        }
        let items = items.trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let name = item.rsplit(" as ").next().unwrap_or(item);
            let name = name.rsplit("::").next().unwrap_or(name).trim();
            names.insert(name.to_owned(), module.to_owned());
        }
    }
    (names, globs)
}

/// `text` without its comments and without the contents of its string and
/// character literals: a path written there is no use.
fn strip_comments(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let at = |i: usize| chars.get(i).copied();
    let is_ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while let Some(c) = at(i) {
        match (c, at(i + 1)) {
            ('/', Some('/')) => {
                while at(i).is_some_and(|c| c != '\n') {
                    i += 1;
                }
            }
            ('/', Some('*')) => {
                // Block comments nest.
                let mut depth = 0;
                while let Some(c) = at(i) {
                    match (c, at(i + 1)) {
                        ('/', Some('*')) => (depth, i) = (depth + 1, i + 2),
                        ('*', Some('/')) => (depth, i) = (depth - 1, i + 2),
                        _ => i += 1,
                    }
                    if depth == 0 {
                        break;
                    }
                }
            }
            ('"', _) => {
                i += 1;
                while let Some(c) = at(i) {
                    i += if c == '\\' { 2 } else { 1 };
                    if c == '"' {
                        break;
                    }
                }
                out.push_str("\"\"");
            }
            // A raw string (`r"..."`, `r#"..."#`, `br"..."`), not an identifier ending in r.
            ('r', Some('"' | '#'))
                if !is_ident(i.checked_sub(1).and_then(at))
                    || (at(i - 1) == Some('b') && !is_ident(i.checked_sub(2).and_then(at))) =>
            {
                let mut j = i + 1;
                while at(j) == Some('#') {
                    j += 1;
                }
                let hashes = j - i - 1;
                if at(j) != Some('"') {
                    out.push(c);
                    i += 1;
                    continue;
                }
                i = j + 1;
                while at(i).is_some() {
                    if at(i) == Some('"') && (1..=hashes).all(|k| at(i + k) == Some('#')) {
                        i += 1 + hashes;
                        break;
                    }
                    i += 1;
                }
                out.push_str("\"\"");
            }
            // A character literal ('x', '\n', '\''); otherwise a lifetime.
            ('\'', Some('\\')) => {
                i += 3;
                while at(i).is_some_and(|c| c != '\'') {
                    i += 1;
                }
                i += 1;
                out.push_str("' '");
            }
            ('\'', Some(_)) if at(i + 2) == Some('\'') => {
                i += 3;
                out.push_str("' '");
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The first segment of every `crate::` path in `code`, groups expanded:
/// `crate::a::b` and `crate::{a, c::d}` give `a`, `a`, `c`.
fn crate_uses(code: &str) -> Vec<String> {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].chars().next_back().is_some_and(is_ident) {
            continue; // e.g. `my_crate::`
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
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
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let first: String =
                            item.trim().chars().take_while(|&c| is_ident(c)).collect();
                        if !first.is_empty() && first != "self" {
                            out.push(first);
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            let first: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !first.is_empty() {
                out.push(first);
            }
        }
    }
    out
}

/// Every use that goes against `order`: `(user, used)` where `used` is not above
/// `user`. A used name that is neither a module nor a re-export is reported too.
fn back_uses(
    order: &[String],
    modules: &BTreeMap<String, String>,
    lib: &str,
) -> (Vec<(String, String)>, usize) {
    let (reexported, globs) = reexports(lib);
    let position = |name: &str| order.iter().position(|m| m == name);
    let mut wrong = Vec::new();
    let mut uses = 0;
    for (user, text) in modules {
        let user_at = position(user);
        for used in crate_uses(&strip_comments(text)) {
            let module = if modules.contains_key(&used) {
                used.clone()
            } else if let Some(module) = reexported.get(&used) {
                module.clone()
            } else if let Some(glob) = globs.last() {
                glob.clone()
            } else {
                wrong.push((user.clone(), used));
                continue;
            };
            if module == *user {
                continue;
            }
            uses += 1;
            match (user_at, position(&module)) {
                (Some(u), Some(m)) if m < u => {}
                _ => wrong.push((user.clone(), module)),
            }
        }
    }
    (wrong, uses)
}

#[test]
fn lib_rs_lists_every_module_once() {
    let krate = read_crate();
    let mut documented = documented_order(&krate.lib);
    let count = documented.len();
    documented.sort();
    documented.dedup();
    assert_eq!(
        documented.len(),
        count,
        "a module is listed twice in lib.rs"
    );
    let mut declared = declared_modules(&krate.lib);
    declared.sort();
    assert_eq!(
        documented, declared,
        "the numbered module list in lib.rs's doc comment and the `mod` declarations differ"
    );
}

#[test]
fn each_module_only_uses_the_modules_above_it() {
    let krate = read_crate();
    let order = documented_order(&krate.lib);
    let (wrong, uses) = back_uses(&order, &krate.modules, &krate.lib);
    assert!(
        wrong.is_empty(),
        "modules using a module not above them in lib.rs's list (user, used): {wrong:?}"
    );
    // The scan sees the pipeline's own uses (not a vacuous pass).
    assert!(uses > 20, "only {uses} uses found");
    assert!(crate_uses(&krate.modules["load"]).contains(&"read".to_owned()));
}

#[test]
fn a_back_use_is_found_however_it_is_written() {
    let lib = "//! 1. `model`: types.\n//! 2. `load`: loading.\n\
               pub mod model;\nmod load;\npub use load::{load_texts};\npub use model::*;\n";
    let order = documented_order(lib);
    assert_eq!(order, ["model", "load"]);
    let load = "use crate::model::*;\nfn f() { crate::Config::default(); }\n".to_owned();
    for model in [
        "use crate::load::x;",
        "use crate::{self, load};",
        "use crate::{diagnostic::D, load::{a, b}};",
        "fn f() { crate::load::load_texts(&[]); }",
        "fn f() { crate::load_texts(&[]); }",
        "/* a comment */ use crate::load; // another",
        "const Q: char = '\"'; use crate::load;",
        "fn f<'a>(x: &'a str) { crate::load::f(x, \"//\", r#\"\"#); }",
    ] {
        let modules = BTreeMap::from([
            ("model".to_owned(), model.to_owned()),
            ("load".to_owned(), load.clone()),
        ]);
        let (wrong, _) = back_uses(&order, &modules, lib);
        assert!(
            wrong.contains(&("model".to_owned(), "load".to_owned())),
            "{model}: {wrong:?}"
        );
    }
    // Comments, a longer crate name and a downward use are not back uses.
    for model in [
        "// use crate::load;",
        "/// [`crate::load`]",
        "/* crate::load */",
        "use other_crate::load;",
        "const S: &str = \"crate::load\";",
        "const S: &str = r#\"a \"crate::load\" b\"#;",
        "const S: &[u8] = br\"crate::load\";",
        "/* outer /* inner */ crate::load */",
    ] {
        let modules = BTreeMap::from([
            ("model".to_owned(), model.to_owned()),
            ("load".to_owned(), load.clone()),
        ]);
        assert_eq!(back_uses(&order, &modules, lib).0, [], "{model}");
    }
}
