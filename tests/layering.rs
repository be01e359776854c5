//! The folder rules of `docs/developers/layout.md`, checked on the source:
//! - the top of `src/` holds `main.rs`, `lib.rs` and folders only, and `lib.rs` declares
//!   modules and nothing else (a crate-root re-export would hide an upward use);
//! - a folder uses only folders of its own layer or a lower one, never a higher one, and no two
//!   folders (or two files of one folder) use each other;
//! - nothing the node runs uses `server/` (the boot server's tools), and `sys/` (the syscall
//!   seam, the lowest layer) uses nothing else of the crate.
//!
//! A new folder must be added to [`LAYERS`] (and to the layout page) before this test passes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The folders of `src/`, lowest layer first. Within a layer a folder may use another, as long
/// as no cycle forms.
const LAYERS: &[(&str, &[&str])] = &[
    ("syscall seam", &["sys"]),
    ("support", &["support"]),
    ("configuration", &["config"]),
    (
        "node stages",
        &[
            "drivers", "net", "root", "fetch", "swarm", "oci", "tpm", "secrets",
        ],
    ),
    ("the boot and the boot server", &["boot", "server"]),
    ("command line", &["cli"]),
];

/// What runs on a booting node: none of it may use [`SERVER`].
const NODE: &[&str] = &[
    "support", "sys", "config", "drivers", "net", "root", "fetch", "swarm", "oci", "tpm",
    "secrets", "boot",
];
const SERVER: &str = "server";

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without `#[cfg(test)]` modules (tests may reach anywhere) and comments.
fn non_test_code(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("#[cfg(test)]") {
            // Everything after the test module's attribute is test code in this codebase.
            break;
        }
        let code = line.split("//").next().unwrap_or_default();
        out.push_str(code);
        out.push('\n');
    }
    out
}

/// `(top-level module, path of the file below src/)` for a source file.
fn module_of(src: &Path, file: &Path) -> (String, Vec<String>) {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    (parts.first().cloned().unwrap_or_default(), parts)
}

/// Every `crate::a::b…` path used in `code`, as its segments.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let before = rest.get(..i).and_then(|b| b.chars().last());
        rest = rest.get(i + "crate::".len()..).unwrap_or_default();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `$crate::`, `somecrate::`
        }
        let segs: Vec<String> = rest
            .split("::")
            .map(|s| {
                s.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|s| !s.is_empty())
            .collect();
        if !segs.is_empty() {
            out.push(segs);
        }
    }
    out
}

fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|s| s == n) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(n.to_string());
            return Some(cycle);
        }
        if done.contains(n) {
            return None;
        }
        stack.push(n.to_string());
        for m in edges.get(n).into_iter().flatten() {
            if let Some(c) = visit(m, edges, stack, done) {
                return Some(c);
            }
        }
        stack.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    for n in edges.keys() {
        if let Some(c) = visit(n, edges, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn folders_only_use_lower_layers_and_form_no_cycles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut top_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut file_edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let all_files: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f).1).collect();

    for f in &files {
        let (top, path) = module_of(&src, f);
        if top == "main" || top == "lib" {
            continue;
        }
        let Some(layer) = layer_of(&top) else {
            problems.push(format!(
                "src/{top}: not in the layer table (tests/layering.rs and docs/developers/layout.md)"
            ));
            continue;
        };
        let code = non_test_code(&std::fs::read_to_string(f).unwrap());
        for used in crate_paths(&code) {
            let target = &used[0];
            let file = f.strip_prefix(&src).unwrap().display();
            let Some(tlayer) = layer_of(target) else {
                problems.push(format!(
                    "{file}: uses crate::{target}, which is not a folder of the layer table"
                ));
                continue;
            };
            if tlayer > layer {
                problems.push(format!(
                    "{file}: uses crate::{target} ({}) from the lower layer {}",
                    LAYERS[tlayer].0, LAYERS[layer].0
                ));
            }
            if NODE.contains(&top.as_str()) && target == SERVER {
                problems.push(format!(
                    "{file}: node code uses crate::{SERVER} (the boot server's tools)"
                ));
            }
            if top == "sys" && target != "sys" {
                problems.push(format!(
                    "{file}: the syscall seam uses crate::{target}; it uses nothing above it"
                ));
            }
            if *target != top {
                top_edges
                    .entry(top.clone())
                    .or_default()
                    .insert(target.clone());
            } else {
                // Within one module tree: the longest file path the use names.
                let mut best = vec![target.clone()];
                for n in 2..=used.len() {
                    let cand = used[..n].to_vec();
                    if all_files.contains(&cand) {
                        best = cand;
                    }
                }
                if best != path {
                    file_edges
                        .entry(path.join("::"))
                        .or_default()
                        .insert(best.join("::"));
                }
            }
        }
        // `super::x` from a file of a directory module points at the directory's mod.rs, or
        // at its sibling file x.
        let mut rest = code.as_str();
        while let Some(i) = rest.find("super::") {
            rest = rest.get(i + "super::".len()..).unwrap_or_default();
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let parent = path[..path.len().saturating_sub(1)].to_vec();
            let mut sibling = parent.clone();
            sibling.push(name);
            let target = if all_files.contains(&sibling) {
                sibling
            } else {
                parent
            };
            if target != path && !target.is_empty() {
                file_edges
                    .entry(path.join("::"))
                    .or_default()
                    .insert(target.join("::"));
            }
        }
    }
    // A directory's mod.rs naming its own submodules (`use transfer::…`, `transfer::run`).
    for f in &files {
        let (_, path) = module_of(&src, f);
        let code = non_test_code(&std::fs::read_to_string(f).unwrap());
        for child in all_files
            .iter()
            .filter(|c| c.len() == path.len() + 1 && c.starts_with(&path))
        {
            let name = format!("{}::", child.last().unwrap());
            let used = code.match_indices(&name).any(|(i, _)| {
                let before = code.get(..i).and_then(|b| b.chars().last());
                !before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':')
            });
            if used {
                file_edges
                    .entry(path.join("::"))
                    .or_default()
                    .insert(child.join("::"));
            }
        }
    }
    if let Some(c) = find_cycle(&top_edges) {
        problems.push(format!("modules use each other: {}", c.join(" -> ")));
    }
    if let Some(c) = find_cycle(&file_edges) {
        problems.push(format!("files use each other: {}", c.join(" -> ")));
    }
    assert!(
        problems.is_empty(),
        "layering:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn the_top_of_src_holds_main_lib_and_folders_only() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut loose: Vec<String> = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().unwrap().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    loose.sort();
    assert_eq!(loose, ["lib.rs", "main.rs"]);
    for dir in std::fs::read_dir(&src).unwrap().map(|e| e.unwrap()) {
        if dir.file_type().unwrap().is_dir() {
            let name = dir.file_name().to_string_lossy().into_owned();
            assert!(
                layer_of(&name).is_some(),
                "src/{name}/ is not in the layer table"
            );
        }
    }
}

/// `lib.rs` declares the folders and nothing else: a `pub use` at the crate root would let a
/// module reach one above it as `crate::Item`, which the folder check cannot see.
#[test]
fn lib_rs_declares_modules_only() {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs");
    let code = non_test_code(&std::fs::read_to_string(lib).unwrap());
    let mut in_attr = 0usize;
    for line in code.lines().map(str::trim).filter(|l| !l.is_empty()) {
        // Crate attributes (the lint wall) may span lines: track their brackets.
        if in_attr > 0 || line.starts_with("#") {
            in_attr += line.matches(['(', '[']).count();
            in_attr = in_attr.saturating_sub(line.matches([')', ']']).count());
            continue;
        }
        let module = line
            .strip_prefix("pub mod ")
            .and_then(|m| m.strip_suffix(';'));
        assert!(
            module.is_some_and(|m| layer_of(m).is_some()),
            "src/lib.rs: `{line}` — lib.rs only declares the folders of the layer table"
        );
    }
}
