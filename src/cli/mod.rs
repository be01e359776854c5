//! The `rustlive` command line: one subcommand per stage, so an operator can run any stage by
//! hand on a node (or a benchmark can run it alone), plus `boot`, which runs them all.

mod cmdline_help;
mod error;
mod node;
mod server;
mod torrent;

pub use error::Error;
use node::*;
use server::*;
use torrent::TorrentCommand;

use crate::support::exit::{report, Exit};
use crate::support::paths::Paths;
use clap::{Args, Parser, Subcommand};
use std::process::ExitCode;

#[derive(Debug, Parser)]
#[command(
    name = "rustlive",
    version,
    about = "Netboot a diskless node: fetch, verify and assemble a live root image from the initramfs",
    long_about = None,
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Initramfs entry point: read the kernel command line and, when an image source is
    /// configured, fetch, verify and assemble the root and install the node's secrets.
    #[command(
        after_help = "The kernel command-line options it reads: rustlive boot --help.",
        after_long_help = cmdline_help::OPTIONS
    )]
    Boot(BootArgs),
    /// Print the effective configuration parsed from the kernel command line as JSON.
    #[command(
        after_help = "The kernel command-line options it reads: rustlive config --help.",
        after_long_help = cmdline_help::OPTIONS
    )]
    Config(ConfigArgs),
    /// Install the node's secrets bundle into an assembled root (`boot` runs this step after
    /// assembling the root, before switch-root).
    ///
    /// The bundle (format: docs/reference/secrets-bundle.md, installed as
    /// /usr/share/doc/rustlive/docs/reference/secrets-bundle.md) comes from --source, else
    /// rd.rustlive.secrets, else
    /// /rustlive/secrets.json when it exists. It is validated as a whole before anything is
    /// written; files are created with their final mode and owner, never through a symlink.
    /// A file:// source and /rustlive/secrets.json are overwritten and removed afterwards.
    /// Exit code 6 when the bundle cannot be fetched or applied (unless
    /// rd.rustlive.secrets.required=0).
    #[command(
        name = "inject-secrets",
        after_long_help = "Example, by hand on a node:\n  rustlive inject-secrets --root /sysroot \\\n    --source 'https://boot.example/secrets/{uuid}.json' \\\n    --cmdline 'rd.rustlive.ca=/etc/rustlive/ca.pem rd.rustlive.secrets.cert=/etc/rustlive/node.crt rd.rustlive.secrets.key=/etc/rustlive/node.key'"
    )]
    InjectSecrets(InjectSecretsArgs),
    /// Mount a root image read-only under a tmpfs overlay on NEWROOT and check it can boot.
    Assemble(AssembleArgs),
    /// Move /dev, /proc, /sys and /run into NEWROOT, make it the root, free the initramfs and
    /// execute INIT (for an initramfs without systemd).
    SwitchRoot(SwitchRootArgs),
    /// Download a file the way `boot` downloads the image: retries with backoff, resume,
    /// mirrors, SHA-256 and minisign verification. The file appears only once verified.
    Fetch(Box<FetchArgs>),
    /// On the boot server: build node secrets bundles (JSON or a per-node initrd) from
    /// directories that mirror each node's root.
    Bundle(BundleArgs),
    /// Push a squashfs, erofs or ext4 root image to an OCI registry as a bootable artifact
    /// (boot server side); prints the manifest digest and the kernel command line.
    #[command(
        after_help = "Example: rustlive publish compute.squashfs oci://registry.site:5000/images/compute:2026-12 --signature compute.squashfs.minisig\n\
Credentials (docker config.json format): --registry-auth, else $REGISTRY_AUTH_FILE, $DOCKER_CONFIG/config.json, ~/.docker/config.json."
    )]
    Publish(PublishArgs),
    /// Build a standalone netboot initramfs (no dracut): rustlive as /init, the kernel
    /// modules for the image filesystems, the usual server NICs, VLANs, bonds and IPoIB with
    /// their dependencies and firmware, the CA bundle and minisign keys. Deterministic: same
    /// inputs, same bytes.
    Initramfs(Box<InitramfsArgs>),
    /// The node's TPM: `tpm ek` prints its endorsement key for enrollment.
    #[command(subcommand)]
    Tpm(TpmCommand),
    /// Root images on the boot server: `image check` refuses one that holds SSH host keys or
    /// a munge key.
    #[command(subcommand)]
    Image(ImageCommand),
    /// On the boot server: `torrent create` writes a .torrent for an image (nodes and any
    /// BitTorrent client share it: `rustlive fetch torrent://…`); `torrent show` reads one.
    #[command(subcommand)]
    Torrent(TorrentCommand),
    /// The seeder after switch-root (`@rustlive-seed`), started by `boot`; not for hand use.
    #[command(name = "seed-image", hide = true)]
    SeedImage(torrent::SeedImageArgs),
}

#[derive(Debug, Args)]
pub struct BootArgs {
    #[command(flatten)]
    pub cmdline: CmdlineArg,
    /// Where the new root is assembled.
    #[arg(long, value_name = "DIR", default_value = "/sysroot")]
    pub sysroot: std::path::PathBuf,
    /// Switch into the new root and exec its init once it is ready (implied when rustlive is
    /// PID 1; under dracut, the initramfs's own switch-root does this).
    #[arg(long)]
    pub switch_root: bool,
}

/// Reports a command line clap refused. Its message quotes the offending word, which may be
/// a URL with a password or a token: each line is redacted and escaped like a log line.
/// `--help` and `--version` are printed by clap as they are.
fn usage_error(e: &clap::Error) -> ExitCode {
    if !e.use_stderr() {
        e.exit()
    }
    let text = e.render().to_string();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        out.push_str(&crate::support::log::redact_url_str(line));
        out.push('\n');
    }
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), out.as_bytes());
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(Exit::Usage as u8))
}

/// Parses the process arguments, runs the subcommand and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    // As the initramfs's /init, nothing has mounted /proc or /dev or loaded drivers yet.
    let pid1 = crate::boot::pid1::is_pid1();
    let early_warnings = if pid1 {
        crate::boot::pid1::prepare()
    } else {
        Vec::new()
    };
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // As /init, argv holds whatever words of the kernel command line the kernel did not
        // recognise (`single`, `3`): they are not ours, and exiting would panic the kernel.
        Err(_) if pid1 => Cli::parse_from(["rustlive", "boot"]),
        Err(e) => return usage_error(&e),
    };
    // Booting a node logs to the kernel log (console and journal); a command run by hand
    // answers on stderr.
    let target = match &cli.command {
        Command::Boot(_) => crate::support::log::Target::Kmsg,
        _ if pid1 => crate::support::log::Target::Kmsg,
        _ => crate::support::log::Target::Stderr,
    };
    let debug = matches!(&cli.command, Command::Fetch(a) if a.debug)
        || matches!(&cli.command, Command::Publish(a) if a.debug);
    crate::support::log::init(target, debug);
    if pid1 || matches!(cli.command, Command::Boot(_)) {
        crate::boot::panic_hook::install(pid1);
    }
    if pid1 {
        for w in early_warnings {
            log::warn!("{w}");
        }
        // `rustlive boot` loads them itself, after the NIC's driver (crate::boot::run).
        if !matches!(cli.command, Command::Boot(_)) {
            crate::boot::pid1::load_modules();
        }
    }
    let result = match cli.command {
        // boot reports its own errors: it must do so before its failure policy reboots.
        Command::Boot(a) => {
            return crate::boot::main(&crate::boot::Request {
                cmdline: a.cmdline.cmdline,
                sysroot: a.sysroot,
                switch_root: a.switch_root,
                pid1,
                paths: Paths::system(),
            })
        }
        Command::InjectSecrets(a) => inject_secrets(&a),
        Command::Fetch(a) => fetch(&a),
        Command::Config(a) => config(&a),
        Command::Publish(a) => publish(&a),
        Command::Assemble(a) => assemble(&a),
        Command::SwitchRoot(a) => switch_root(a),
        Command::Bundle(a) => bundle(&a),
        Command::Initramfs(a) => initramfs(&a),
        Command::Image(c) => image(&c),
        Command::Torrent(c) => torrent::torrent(&c),
        Command::SeedImage(a) => torrent::seed_image(&a),
        Command::Tpm(TpmCommand::Ek(a)) => {
            crate::secrets::enroll::ek_command(a.json, &Paths::system()).map_err(Error::from)
        }
    };
    match result {
        Ok(()) => Exit::Success.into(),
        Err(e) => {
            log::error!("{}", report(&e));
            if pid1 {
                crate::boot::pid1::halt(std::time::Duration::from_secs(5));
            }
            e.exit_code().into()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every subcommand's `--help`, nested ones included, with its name.
    fn all_help() -> Vec<(String, String)> {
        fn walk(cmd: &mut clap::Command, name: String, out: &mut Vec<(String, String)>) {
            out.push((name.clone(), cmd.render_long_help().to_string()));
            for sub in cmd.get_subcommands_mut() {
                let n = format!("{name} {}", sub.get_name());
                walk(sub, n, out);
            }
        }
        let mut out = Vec::new();
        walk(&mut Cli::command(), "rustlive".into(), &mut out);
        out
    }

    /// The seeder's command line, as the boot writes it, reads back as the same arguments:
    /// the one contract between the boot and `@rustlive-seed`.
    #[test]
    fn the_seeder_reads_back_what_the_boot_wrote() {
        use crate::swarm::seeder::{Args, Settings};
        use clap::Parser;
        let full = Settings {
            port: 6881,
            duration: std::time::Duration::from_secs(900),
            rate: std::num::NonZeroU64::new(32 << 20),
            ca: Some("/etc/rustlive/ca.pem".into()),
        };
        let bare = Settings {
            port: 0,
            rate: None,
            ca: None,
            ..full.clone()
        };
        let (image, root) = ("/run/rustlive/image/i.sqfs", "/run/rustlive/seed-root");
        for settings in [full, bare] {
            let argv = crate::boot::seed::arguments(
                &settings,
                std::path::Path::new(image),
                std::path::Path::new(root),
            );
            let cli =
                Cli::try_parse_from(std::iter::once("rustlive".to_string()).chain(argv)).unwrap();
            let Command::SeedImage(a) = cli.command else {
                panic!("not seed-image: {:?}", cli.command);
            };
            let want = Args {
                image: image.into(),
                root: root.into(),
                settings,
            };
            assert_eq!(a.to_args(), want);
        }
    }

    /// Issue 21, item 13: a page a `--help` sends the reader to is in the repository (and so in
    /// /usr/share/doc/rustlive/ once installed).
    #[test]
    fn documents_named_in_help_exist() {
        let top = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut named = 0;
        for (cmd, help) in all_help() {
            for (i, _) in help.match_indices("docs/") {
                let rest = help.get(i..).unwrap_or_default();
                let end = rest.find(".md").map(|e| e + 3).unwrap_or(0);
                let path = &rest[..end];
                assert!(!path.is_empty(), "{cmd}: a docs/ reference without .md");
                assert!(
                    top.join(path).is_file(),
                    "{cmd} --help names {path}, which is missing"
                );
                named += 1;
            }
        }
        assert!(named >= 3, "the helps name {named} documents");
    }

    #[test]
    fn boot_config_and_build_all_help_say_what_the_issue_asked() {
        let help: std::collections::BTreeMap<String, String> = all_help().into_iter().collect();
        for cmd in ["rustlive boot", "rustlive config"] {
            let h = &help[cmd];
            assert!(
                h.contains("rd.rustlive.secrets.sealed=") && h.contains("ip=dhcp"),
                "{cmd}: {h}"
            );
        }
        let h = &help["rustlive bundle build-all"];
        assert!(
            h.contains("rustlive-bundle.json") && h.contains("\"macs\""),
            "{h}"
        );
        assert!(help["rustlive inject-secrets"].contains("docs/reference/secrets-bundle.md"));
    }
}
