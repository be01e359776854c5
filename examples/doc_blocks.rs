//! Prints the command blocks of a documentation page that the QEMU suite runs (`qemu/docs.sh`):
//! the fenced blocks that follow an HTML comment `<!-- test: LABEL -->`, which a reader of the
//! rendered page does not see.
//!
//! ```sh
//! cargo run --example doc_blocks -- docs/admins/site-workflow.md site-workflow \
//!     http://boot.site=http://10.0.2.2:8080
//! ```
//!
//! Every block with that label, in page order, each `sh` block preceded by a comment naming
//! its line (so a failing `set -x` trace points at the page), with the site's names replaced:
//! each `FROM=TO` argument is one declared substitution, replaced literally. A substitution that
//! matches nothing is an error, as are a label with no block, a marker not followed by a fence
//! and a fence never closed: a page edited so that the test would silently run less fails
//! instead.

use std::process::ExitCode;

/// One marked block: the language of its fence, the line of its first content line (1-based)
/// and its content (every line ending in a newline).
#[derive(Debug, PartialEq, Eq)]
pub struct Block {
    pub lang: String,
    pub line: usize,
    pub text: String,
}

/// The blocks of `page` marked `<!-- test: LABEL -->`, in order.
pub fn blocks(page: &str, label: &str) -> Result<Vec<Block>, String> {
    let marker = format!("<!-- test: {label} -->");
    let lines: Vec<&str> = page.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(l) = lines.get(i) {
        i += 1;
        if l.trim() != marker {
            continue;
        }
        let fence = lines.get(i).map(|f| f.trim_start()).unwrap_or("");
        let Some(lang) = fence.strip_prefix("```") else {
            return Err(format!("line {i}: {marker} is not followed by a ``` fence"));
        };
        let indent = lines.get(i).map_or(0, |f| f.len() - fence.len());
        let first = i + 2;
        i += 1;
        let mut text = String::new();
        loop {
            let Some(b) = lines.get(i) else {
                return Err(format!(
                    "line {first}: the block after {marker} is never closed"
                ));
            };
            i += 1;
            if b.trim() == "```" {
                break;
            }
            // A block indented in a list item: the fence's indentation is not part of it.
            let b = match (b.get(..indent), b.get(indent..)) {
                (Some(pad), Some(rest)) if pad.trim().is_empty() => rest,
                _ => b,
            };
            text.push_str(b);
            text.push('\n');
        }
        out.push(Block {
            lang: lang.trim().to_string(),
            line: first,
            text,
        });
    }
    if out.is_empty() {
        return Err(format!("no block is marked {marker}"));
    }
    Ok(out)
}

/// The blocks as one text with the substitutions applied; sh blocks get a `# FILE:LINE` line.
pub fn render(file: &str, blocks: &[Block], subst: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    for b in blocks {
        if b.lang == "sh" {
            out.push_str(&format!("# {file}:{}\n", b.line));
        }
        out.push_str(&b.text);
    }
    for (from, to) in subst {
        if !out.contains(from.as_str()) {
            return Err(format!(
                "the substitution {from:?} matches nothing in those blocks"
            ));
        }
        out = out.replace(from.as_str(), to);
    }
    Ok(out)
}

#[allow(dead_code)] // tests/doc_blocks.rs uses the parser only
fn run(args: &[String]) -> Result<String, String> {
    let [file, label, subst @ ..] = args else {
        return Err("usage: doc_blocks FILE LABEL [FROM=TO]...".to_string());
    };
    let subst = subst
        .iter()
        .map(|s| {
            s.split_once('=')
                .filter(|(from, _)| !from.is_empty())
                .map(|(f, t)| (f.to_string(), t.to_string()))
                .ok_or_else(|| format!("{s:?} is not FROM=TO"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let page = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
    let found = blocks(&page, label).map_err(|e| format!("{file}: {e}"))?;
    render(file, &found, &subst).map_err(|e| format!("{file}: {e}"))
}

#[allow(dead_code)] // tests/doc_blocks.rs includes this file as a module
fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("doc_blocks: {e}");
            ExitCode::from(1)
        }
    }
}
