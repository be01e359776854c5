//! The documentation pages that `qemu/docs.sh` runs in QEMU keep their marked blocks: each
//! walkthrough label still finds its blocks (a page edited so that the suite would run
//! nothing fails here first, without root), and the extractor's rules hold.

#[path = "../examples/doc_blocks.rs"]
mod doc_blocks;

use doc_blocks::{blocks, render, Block};

fn page(path: &str) -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_string() + path).unwrap()
}

#[test]
fn the_tested_walkthroughs_have_their_blocks() {
    for (path, label, lang, at_least) in [
        ("docs/admins/site-workflow.md", "site-workflow", "sh", 4),
        (
            "docs/admins/site-workflow.md",
            "site-workflow nginx",
            "nginx",
            1,
        ),
        (
            "docs/admins/site-workflow.md",
            "site-workflow ipxe",
            "ipxe",
            1,
        ),
        ("docs/admins/standalone-initramfs.md", "standalone", "sh", 1),
        ("docs/admins/sealing.md", "sealing key", "sh", 1),
        ("docs/admins/sealing.md", "sealing", "sh", 2),
        ("docs/admins/sealing.md", "sealing ipxe", "ipxe", 1),
        ("docs/operators/booted-node.md", "booted-node", "sh", 1),
    ] {
        let found = blocks(&page(path), label).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(
            found.len() >= at_least,
            "{path}: {label}: {} blocks",
            found.len()
        );
        for b in &found {
            assert_eq!(b.lang, lang, "{path}:{}: {label}", b.line);
            assert!(
                !b.text.trim().is_empty(),
                "{path}:{}: an empty block",
                b.line
            );
        }
    }
}

#[test]
fn the_ipxe_scripts_are_scripts() {
    for (path, label) in [
        ("docs/admins/site-workflow.md", "site-workflow ipxe"),
        ("docs/admins/sealing.md", "sealing ipxe"),
    ] {
        let found = blocks(&page(path), label).unwrap();
        let text = render(path, &found, &[]).unwrap();
        assert!(text.starts_with("#!ipxe\n"), "{path}: {label}");
        assert!(
            text.contains("${mac}"),
            "{path}: {label}: the per-node initrd by MAC"
        );
    }
}

const PAGE: &str = "intro\n<!-- test: w -->\n```sh\necho one\n```\n\n```sh\nnot marked\n```\n\
- item\n  <!-- test: w -->\n  ```sh\n  echo two\n  ```\n<!-- test: other -->\n```nginx\nx\n```\n";

#[test]
fn marked_blocks_only_in_order_list_indentation_removed() {
    assert_eq!(
        blocks(PAGE, "w").unwrap(),
        vec![
            Block {
                lang: "sh".into(),
                line: 4,
                text: "echo one\n".into()
            },
            Block {
                lang: "sh".into(),
                line: 13,
                text: "echo two\n".into()
            },
        ]
    );
    assert_eq!(blocks(PAGE, "other").unwrap()[0].lang, "nginx");
}

#[test]
fn sh_blocks_name_their_line_and_substitutions_must_match() {
    let b = blocks(PAGE, "w").unwrap();
    let subst = [("one".to_string(), "1".to_string())];
    assert_eq!(
        render("p.md", &b, &subst).unwrap(),
        "# p.md:4\necho 1\n# p.md:13\necho two\n"
    );
    let none = [("three".to_string(), "3".to_string())];
    assert!(render("p.md", &b, &none)
        .unwrap_err()
        .contains("matches nothing"));
}

#[test]
fn broken_markers_are_errors() {
    assert!(blocks(PAGE, "missing").unwrap_err().contains("no block"));
    assert!(blocks("<!-- test: w -->\ntext\n", "w")
        .unwrap_err()
        .contains("not followed"));
    assert!(blocks("<!-- test: w -->\n```sh\necho\n", "w")
        .unwrap_err()
        .contains("never closed"));
}
