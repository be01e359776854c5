//! Writes the man pages of `rustlive` from its clap definition: `rustlive.8`, and one page per
//! subcommand and nested subcommand (`rustlive-fetch.8`, `rustlive-bundle-seal.8`, …).
//!
//! ```sh
//! cargo run --example mangen -- build/man     # what `make man` runs
//! man -l build/man/rustlive.8
//! ```
//!
//! Section 8 (system administration commands), not 1: rustlive runs as root in a node's
//! initramfs (as dracut's hook or as PID 1), mounts, loads modules and switches root, and on
//! the boot server it is run by the site's administrators; dracut(8) and switch_root(8), the
//! tools it sits beside, are in section 8 too.
//!
//! An example rather than part of the binary: clap_mangen is a dev-dependency only, so the
//! release binary (static, at most 6 MiB) does not carry it.

use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;
use std::io::Write;
use std::path::{Path, PathBuf};

const SECTION: &str = "8";

/// The exit codes of every subcommand (docs/reference/cmdline.md, "Exit codes").
const EXIT_CODES: &[(&str, &str)] = &[
    ("0", "success, or nothing to do"),
    ("2", "usage or configuration error"),
    ("3", "transfer failed (deadline or retries exhausted)"),
    ("4", "verification failed"),
    ("5", "root assembly failed"),
    (
        "6",
        "secrets failed; for image check and publish: the image holds SSH host keys or the munge key",
    ),
    ("7", "switch-root failed"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args_os().skip(1);
    let (Some(out), None) = (args.next(), args.next()) else {
        return Err("usage: cargo run --example mangen -- OUTDIR".into());
    };
    let out = PathBuf::from(out);
    std::fs::create_dir_all(&out)?;

    // `build` names every subcommand as the pages do: `rustlive-bundle-seal` is the display
    // name and `rustlive bundle seal` the synopsis. `help` is clap's, not a page of its own.
    let mut cmd = rustlive::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut written = Vec::new();
    page(&cmd, None, &out, &mut written)?;
    for path in &written {
        println!("{}", path.display());
    }
    Ok(())
}

/// Writes the page of `cmd` and those of its subcommands, depth first.
fn page(
    cmd: &clap::Command,
    parent: Option<&str>,
    out: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), Box<dyn std::error::Error>> {
    let name = cmd.get_display_name().unwrap_or_else(|| cmd.get_name());
    // No date, so that the same source gives the same bytes. roff drops an empty argument
    // (the source would then show where the date goes): a quoted empty string keeps its place.
    let man = Man::new(cmd.clone())
        .section(SECTION)
        .date(r#""""#)
        .source(concat!("rustlive ", env!("CARGO_PKG_VERSION")))
        .manual("rustlive");

    let path = out.join(format!("{name}.{SECTION}"));
    let mut file = std::fs::File::create(&path)?;
    man.render(&mut file)?;
    let mut extra = Roff::new();
    if parent.is_none() {
        extra.control("SH", ["EXIT STATUS"]);
        for (code, meaning) in EXIT_CODES {
            extra
                .control("TP", [])
                .text([bold(*code)])
                .text([roman(*meaning)]);
        }
    }
    extra.control("SH", ["SEE ALSO"]);
    let mut see: Vec<String> = Vec::new();
    if let Some(parent) = parent {
        see.push(format!("{parent}({SECTION})"));
    }
    see.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).map(|s| {
        format!(
            "{}({SECTION})",
            s.get_display_name().unwrap_or(s.get_name())
        )
    }));
    if parent.is_none() {
        see.push("dracut(8)".to_owned());
    }
    extra.text([roman(see.join(", "))]);
    extra.control("PP", []).text([roman(
        "The documentation by audience (operators, boot-server administrators, developers) \
         and the command-line and secrets-bundle references: /usr/share/doc/rustlive/docs/README.md",
    )]);
    extra.to_writer(&mut file)?;
    file.flush()?;
    written.push(path);

    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        page(sub, Some(name), out, written)?;
    }
    Ok(())
}
