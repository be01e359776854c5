//! The module layering of the README ("Layout"), checked on the source: no module uses one in a
//! higher layer, and no two modules (top-level, or files of one directory) use each other.
//!
//! A new module must be added to [`LAYERS`] (and the README's table) before this test passes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules of `src/`, lowest layer first. Within a layer a module may use another,
/// as long as no cycle forms.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "shared pieces",
        &[
            "values",
            "cmdline",
            "log",
            "syslog",
            "error",
            "deadline",
            "paths",
            "cpio",
            "testing",
            "url_template",
            "ipconfig",
            "oci_ref",
            "config",
        ],
    ),
    ("syscall seam", &["sys"]),
    (
        "stages",
        &[
            "net",
            "verify",
            "ram",
            "fetch",
            "oci",
            "image",
            "rootfs",
            "mount",
            "secrets",
            "tpm",
            "switchroot",
            "onfail",
            "kmod",
            "modalias",
            "coldplug",
            "pid1",
            "initramfs",
            "bundle",
            "sealing",
        ],
    ),
    ("boot", &["boot", "panic_hook"]),
    ("command line", &["cli"]),
];

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
fn modules_only_use_lower_layers_and_form_no_cycles() {
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
                "src/{top}: not in the layer table (tests/layering.rs and the README's Layout)"
            ));
            continue;
        };
        let code = non_test_code(&std::fs::read_to_string(f).unwrap());
        for used in crate_paths(&code) {
            let target = &used[0];
            let Some(tlayer) = layer_of(target) else {
                continue; // crate-root items (re-exports)
            };
            if tlayer > layer {
                problems.push(format!(
                    "{}: uses crate::{target} ({}) from the lower layer {}",
                    f.strip_prefix(&src).unwrap().display(),
                    LAYERS[tlayer].0,
                    LAYERS[layer].0
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
