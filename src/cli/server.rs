//! The boot server's commands: `rustlive bundle` (build, build-all, seal), `rustlive initramfs`
//! and `rustlive publish`.

use super::error::Error;
use clap::{Args, Subcommand};

#[derive(Debug, Args)]
pub struct BundleSealArgs {
    /// The node's EK: what `rustlive tpm ek` printed on the node, saved unedited (text or
    /// --json; of its keys, the persistent one, else ECC before RSA, is sealed to), or a PEM
    /// public key (`tpm2_createek -f pem`), or the EK certificate (PEM or DER).
    #[arg(long, value_name = "EK")]
    pub ek: std::path::PathBuf,
    /// The boot server's minisign secret key (`minisign -G -W -s FILE -p FILE.pub` for
    /// unattended runs; an encrypted key asks for its password on the terminal). The sealed
    /// bundle carries its signature; nodes trust it when FILE.pub is in their initramfs's
    /// /etc/rustlive/keys/sealed/ (and rd.rustlive.secrets.sealed=required accepts nothing else).
    #[arg(long, value_name = "FILE")]
    pub sign_key: std::path::PathBuf,
    /// The plain bundle (JSON, format 1).
    #[arg(value_name = "IN")]
    pub input: std::path::PathBuf,
    /// Where the sealed bundle is written.
    #[arg(short, long, value_name = "OUT")]
    pub output: std::path::PathBuf,
    /// Also require these SHA-256 PCR values on the node (`N=HEX[,N=HEX…]`, as
    /// `rustlive tpm ek` prints them; e.g. PCR 7, the Secure Boot state).
    #[arg(long, value_name = "N=HEX,…")]
    pub pcr: Option<String>,
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The root image file.
    #[arg(value_name = "IMAGE")]
    pub image: std::path::PathBuf,
    /// Where to push it: oci://HOST[:PORT]/REPO:TAG (or oci+http:// for a plain-http registry).
    #[arg(value_name = "REFERENCE", value_parser = publish_reference)]
    pub reference: crate::oci::Reference,
    /// A minisign signature of IMAGE, pushed as a second layer.
    #[arg(long, value_name = "FILE")]
    pub signature: Option<std::path::PathBuf>,
    /// Upload in chunks of this size (e.g. 64M) instead of one request.
    #[arg(long, value_name = "SIZE", value_parser = chunk_size)]
    pub chunk_size: Option<u64>,
    /// Registry credentials (docker config.json format).
    #[arg(long, value_name = "FILE")]
    pub registry_auth: Option<std::path::PathBuf>,
    /// Overall deadline of the whole publish, every request included, e.g. 600, 10m.
    #[arg(long, value_name = "SECS", default_value = "30m", value_parser = crate::support::values::parse_duration)]
    pub timeout: std::time::Duration,
    /// Give up on a request that moves no blob (a HEAD, the manifest, a token) after this long
    /// without an answer or data.
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = crate::support::values::parse_duration)]
    pub stall: std::time::Duration,
    /// The CA bundle (PEM) to verify the registry's https certificate with (default: the
    /// system's).
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Do not verify the registry's certificate.
    #[arg(long)]
    pub insecure_tls: bool,
    /// Log every request.
    #[arg(long)]
    pub debug: bool,
    /// DANGEROUS: publish even if IMAGE holds SSH host private keys (etc/ssh/ssh_host_*_key)
    /// or a munge key (etc/munge/munge.key), which are checked for otherwise (as `rustlive
    /// image check` does; an image the check cannot read is published with a warning). Whoever can pull the image gets those keys: every node booted from
    /// it shares host keys anyone can impersonate, and the munge key lets anyone act as any
    /// user of the cluster. Only for a registry no one else can read.
    #[arg(long)]
    pub allow_secrets_in_image: bool,
}

/// `rustlive image`.
#[derive(Debug, clap::Subcommand)]
pub enum ImageCommand {
    /// Check that a root image holds no node secret before it is served or published: no SSH
    /// host private key (etc/ssh/ssh_host_*_key) and no munge key (etc/munge/munge.key).
    ///
    /// PATH is a root directory (buildah's mount, an unpacked tree) or a squashfs, erofs or
    /// ext2/3/4 image file. A tree is read without following any symbolic link below PATH; an
    /// image file is listed with unsquashfs, dump.erofs or debugfs (squashfs-tools,
    /// erofs-utils, e2fsprogs), not mounted. A link named like a key is not a key in the
    /// image and passes. Exit status: 0 none found, 6 found (each named), 2 PATH could not be
    /// checked (unreadable, another format, the tool missing, etc/ssh a symbolic link).
    #[command(
        after_long_help = "Examples:\n  rustlive image check \"$mnt\"                 # buildah mount of the image, before mksquashfs\n  rustlive image check /srv/www/images/compute.squashfs"
    )]
    Check(ImageCheckArgs),
}

#[derive(Debug, Args)]
pub struct ImageCheckArgs {
    /// The root tree or image file.
    #[arg(value_name = "PATH")]
    pub path: std::path::PathBuf,
}

/// `rustlive image check PATH`.
pub(super) fn image(c: &ImageCommand) -> Result<(), Error> {
    match c {
        ImageCommand::Check(a) => {
            crate::server::image_check::check(&a.path)?;
            log::info!(
                "{}: no SSH host private key and no munge key (checked {})",
                a.path.display(),
                crate::server::image_check::CHECKED_DIRS.join(", ")
            );
            Ok(())
        }
    }
}

fn oci_reference(s: &str) -> Result<crate::oci::Reference, String> {
    crate::oci::Reference::parse(s)
}

/// A tag, never a digest: the digest is what publishing produces (a usage error, exit 2).
fn publish_reference(s: &str) -> Result<crate::oci::Reference, String> {
    let r = oci_reference(s)?;
    if r.pinned() {
        return Err(
            "publish to a tag (oci://HOST/REPO:TAG); the manifest digest is printed afterwards"
                .into(),
        );
    }
    Ok(r)
}

fn chunk_size(s: &str) -> Result<u64, String> {
    match crate::support::values::parse_size(s)? {
        crate::support::values::Size::Bytes(b) if b > 0 => Ok(b),
        _ => Err("expected a size in bytes (K/M/G suffixes)".into()),
    }
}

#[derive(Debug, Args)]
#[command(
    after_help = "Example: rustlive initramfs -o /srv/tftp/rustlive.img --kver 6.1.0-57-amd64 --add-drivers bonding"
)]
pub struct InitramfsArgs {
    /// Write the initramfs here.
    #[arg(short, long, value_name = "FILE")]
    pub output: std::path::PathBuf,
    /// Kernel version (default: the running kernel's).
    #[arg(long, value_name = "KVER")]
    pub kver: Option<String>,
    /// The kernel's modules directory, lib/modules/KVER (default /lib/modules/KVER). Modules
    /// compressed there (.ko.xz, .ko.zst, .ko.gz) are stored decompressed, as dracut does.
    #[arg(long, value_name = "DIR")]
    pub kmoddir: Option<std::path::PathBuf>,
    /// Extra kernel modules (comma-separated, repeatable), with their dependencies.
    #[arg(long, value_name = "M,…", value_delimiter = ',')]
    pub add_drivers: Vec<String>,
    /// Replace the default NIC driver set (virtio_net e1000 e1000e igb igc ixgbe i40e ice
    /// bnxt_en tg3 mlx4_en mlx5_core) with these.
    #[arg(long, value_name = "M,…", value_delimiter = ',')]
    pub net_drivers: Option<Vec<String>>,
    /// Where the firmware the modules declare is looked up.
    #[arg(long, value_name = "DIR", default_value = "/lib/firmware")]
    pub firmware_dir: std::path::PathBuf,
    /// The CA bundle the node uses to verify the https servers it fetches from (the image,
    /// sha256sums, the secrets bundle): a PEM file of one or more CA certificates, installed as
    /// /etc/rustlive/ca.pem in the initramfs. Default: /etc/rustlive/ca.pem when it exists (the
    /// site's own CA), else the distribution's bundle (/etc/pki/tls/certs/ca-bundle.crt,
    /// /etc/ssl/certs/ca-certificates.crt); with none of them, https URLs fail at boot.
    #[arg(long, value_name = "PEM")]
    pub ca: Option<std::path::PathBuf>,
    /// Directory of trusted minisign keys (*.pub); any key makes signatures mandatory.
    #[arg(long, value_name = "DIR", default_value = crate::server::initramfs::KEYS_DEFAULT)]
    pub keys: std::path::PathBuf,
    /// A static shell installed as /bin/sh, for rd.rustlive.onfail=shell.
    #[arg(long, value_name = "PATH")]
    pub shell: Option<std::path::PathBuf>,
    /// Compression of the archive.
    #[arg(long, value_enum, default_value = "zstd")]
    pub compress: crate::server::initramfs::Compress,
    /// The rustlive binary to install as /init (default: this one).
    #[arg(long, value_name = "FILE")]
    pub init: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    #[command(subcommand)]
    pub command: BundleCommand,
}

#[derive(Debug, Subcommand)]
pub enum BundleCommand {
    /// Seal a plain bundle (JSON) to a node's EK: only that node's TPM can open the result,
    /// which may then be served over plain http.
    Seal(BundleSealArgs),
    /// Build one node's bundle from DIR, a directory that mirrors the node's root
    /// (DIR/etc/munge/munge.key is /etc/munge/munge.key).
    ///
    /// Modes come from the files; owners and groups by name from DIR/rustlive-bundle.json
    /// ({"owners": {"/etc/munge/munge.key": "munge:munge"}}; a file it does not name is
    /// root:root). The result is validated by the node's own validator: anything the node would
    /// refuse (links in DIR, setuid modes, paths under /proc, /sys, /dev or /run, bad owner
    /// names) is refused here with the node's message. FILE.json is for an https source;
    /// FILE.cpio is a gzip'ed newc initrd holding /rustlive/secrets.json, which works as an
    /// iPXE initrd and appended with a plain `cat` after any initramfs. Written 0600.
    #[command(
        after_long_help = "Example:\n  rustlive bundle build /srv/nodes/n001 --common /srv/nodes/_common --ssh-host-keys -o /srv/www/nodes/n001.cpio"
    )]
    Build(BundleBuildArgs),
    /// Build every node's bundle: each directory NODES_DIR/HOSTNAME is one node's DIR (its
    /// manifest lists its "macs"); writes WWW_DIR/by-mac/MAC.{json,cpio} (MAC as iPXE prints
    /// ${mac}) and WWW_DIR/by-host/HOSTNAME.{json,cpio}, rewriting only what changed and
    /// removing outputs no node produces any more. Names starting with '.' or '_' are skipped.
    ///
    /// Each node's manifest is NODES_DIR/HOSTNAME/rustlive-bundle.json (read, never put in the
    /// bundle): {"macs": ["52:54:00:12:34:56"], "owners": {"/etc/munge/munge.key":
    /// "munge:munge"}}. "macs" names the by-mac/ outputs (a node without one gets only
    /// by-host/); "owners" gives a file's owner and group by name (others are root:root), as in
    /// `bundle build`. The user running build-all writes NODES_DIR (generated host keys, the
    /// .sealed/ state) and WWW_DIR, and reads --image-root's etc/passwd and etc/group.
    #[command(
        name = "build-all",
        after_long_help = "Example:\n  rustlive bundle build-all /srv/nodes --common /srv/nodes/_common --ssh-host-keys \\\n    --seal-to /srv/eks --sign-key /etc/rustlive/sealing.key -o /srv/www/nodes\nLayout: /srv/nodes/n001/rustlive-bundle.json, /srv/nodes/n001/etc/..., /srv/eks/n001.ek (rustlive tpm ek output)."
    )]
    BuildAll(BundleBuildAllArgs),
}

#[derive(Debug, Args)]
pub struct BundleCommonArgs {
    /// A tree shared by all nodes (the munge key), merged before the node's own; repeatable.
    /// The node's files win over a common tree's, a later common tree over an earlier one.
    #[arg(long, value_name = "DIR")]
    pub common: Vec<std::path::PathBuf>,
    /// The node image's root: check owner and group names against its /etc/passwd and
    /// /etc/group, as the node will at boot (default: any well-formed name).
    #[arg(long, value_name = "DIR")]
    pub image_root: Option<std::path::PathBuf>,
    /// Generate the missing SSH host keys (ed25519, ecdsa, rsa) into DIR/etc/ssh first; keys
    /// already there are kept, so a node keeps its host key across rebuilds.
    #[arg(long)]
    pub ssh_host_keys: bool,
}

#[derive(Debug, Args)]
pub struct BundleBuildArgs {
    /// The node's tree.
    #[arg(value_name = "DIR")]
    pub dir: std::path::PathBuf,
    #[command(flatten)]
    pub opts: BundleCommonArgs,
    /// FILE.json or FILE.cpio.
    #[arg(short, long, value_name = "FILE")]
    pub output: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub struct BundleBuildAllArgs {
    /// One directory per node, named by host name.
    #[arg(value_name = "NODES_DIR")]
    pub nodes_dir: std::path::PathBuf,
    #[command(flatten)]
    pub opts: BundleCommonArgs,
    /// The web server's directory for the bundles.
    #[arg(short, long, value_name = "WWW_DIR")]
    pub output: std::path::PathBuf,
    /// Seal every node's bundle to its TPM's endorsement key: EK_DIR/HOSTNAME.ek, what
    /// `rustlive tpm ek` printed on the node saved as is (`rustlive tpm ek > n001.ek`), else
    /// HOSTNAME.pem, .crt or .der (as `bundle seal --ek` reads them); a node without one is
    /// refused.
    #[arg(long, value_name = "EK_DIR", requires = "sign_key")]
    pub seal_to: Option<std::path::PathBuf>,
    /// With --seal-to (and required by it): the boot server's minisign secret key, which signs
    /// every sealed bundle (see `rustlive bundle seal --sign-key`). A new key, EK or PCR policy
    /// seals every node again.
    #[arg(long, value_name = "FILE", requires = "seal_to")]
    pub sign_key: Option<std::path::PathBuf>,
    /// With --seal-to: also bind each bundle to these PCR values (N=HEX[,N=HEX…]).
    #[arg(long, value_name = "SPEC", requires = "seal_to", value_parser = pcr_policy)]
    pub pcr: Option<crate::tpm::pcr::PcrPolicy>,
}

fn pcr_policy(s: &str) -> Result<crate::tpm::pcr::PcrPolicy, String> {
    crate::tpm::pcr::PcrPolicy::parse(s)
}

/// `rustlive bundle build` and `rustlive bundle build-all`.
pub(super) fn bundle(args: &BundleArgs) -> Result<(), Error> {
    match &args.command {
        BundleCommand::Seal(a) => crate::server::seal::seal_command(
            &a.ek,
            &a.sign_key,
            &a.input,
            &a.output,
            a.pcr.as_deref(),
        )?,
        BundleCommand::Build(a) => bundle_build(a)?,
        BundleCommand::BuildAll(a) => bundle_build_all(a)?,
    }
    Ok(())
}

fn bundle_options(a: &BundleCommonArgs) -> crate::server::bundle::Options {
    crate::server::bundle::Options {
        commons: a.common.clone(),
        image_root: a.image_root.clone(),
    }
}

fn bundle_build(a: &BundleBuildArgs) -> Result<(), crate::server::bundle::BuildError> {
    let keygen = a
        .opts
        .ssh_host_keys
        .then(crate::server::bundle::hostkeys::Keygen::detect);
    let w = crate::server::bundle::build_to_file(
        &a.dir,
        &bundle_options(&a.opts),
        &a.output,
        keygen.as_ref(),
    )?;
    for p in &w.generated {
        log::info!("bundle: generated {}", p.display());
    }
    log::info!(
        "bundle: wrote {} ({} files, {} bytes)",
        a.output.display(),
        w.files,
        w.bytes
    );
    Ok(())
}

fn bundle_build_all(a: &BundleBuildAllArgs) -> Result<(), crate::server::bundle::BuildError> {
    let keygen = a
        .opts
        .ssh_host_keys
        .then(crate::server::bundle::hostkeys::Keygen::detect);
    // The key is read (and its password asked) before any node is built.
    let signer = match (&a.seal_to, &a.sign_key) {
        (None, None) => None,
        (Some(_), Some(p)) => Some(
            crate::server::sign::SigningKey::load(p)
                .map_err(crate::server::bundle::BuildError::SignKey)?,
        ),
        // clap makes them go together; never build plain bundles when sealing was asked for.
        _ => return Err(crate::server::bundle::BuildError::SealWithoutKey),
    };
    let sealing = match (&a.seal_to, &signer) {
        (Some(ek_dir), Some(signer)) => Some(crate::server::bundle::all::Sealing {
            ek_dir: ek_dir.clone(),
            pcr: a.pcr.clone(),
            signer,
        }),
        _ => None,
    };
    let r = crate::server::bundle::all::build_all(
        &a.nodes_dir,
        &a.output,
        &bundle_options(&a.opts),
        keygen.as_ref(),
        sealing.as_ref(),
    )?;
    log::info!(
        "bundle: {} nodes: {} written, {} unchanged, {} stale files removed, into {}",
        r.nodes.len(),
        r.written.len(),
        r.nodes.len().saturating_sub(r.written.len()),
        r.removed.len(),
        a.output.display()
    );
    Ok(())
}

pub(super) fn publish(a: &PublishArgs) -> Result<(), Error> {
    crate::server::image_check::before_publish(&a.image, a.allow_secrets_in_image)?;
    let p = crate::server::publish::publish(&crate::server::publish::PublishOptions {
        image: a.image.clone(),
        signature: a.signature.clone(),
        reference: a.reference.clone(),
        chunk: a.chunk_size,
        credentials: a.registry_auth.clone(),
        ca: a.ca.clone(),
        insecure_tls: a.insecure_tls,
        deadline: crate::support::deadline::Deadline::after(Some(a.timeout)),
        stall: a.stall,
    })?;
    log::info!(
        "pushed {} as {} (layer {}, {} blob(s) already there)",
        a.image.display(),
        p.media_type,
        crate::oci::digest_str(&p.layer_digest),
        p.skipped
    );
    println!("{}", crate::oci::digest_str(&p.manifest_digest));
    println!("{}", p.cmdline());
    Ok(())
}

pub(super) fn initramfs(a: &InitramfsArgs) -> Result<(), Error> {
    // Checked before the modules are read: a mistyped --ca is the likelier error, and it says
    // what the file is for.
    match &a.ca {
        Some(ca) if matches!(ca.try_exists(), Ok(false)) => {
            return Err(Error::CaMissing(ca.clone()))
        }
        Some(_) => {}
        None => {
            if !crate::server::initramfs::CA_DEFAULTS
                .iter()
                .any(|p| std::path::Path::new(p).is_file())
            {
                log::warn!(
                    "no CA bundle ({} are all absent, and no --ca): the node will not be able to \
                     verify any https server",
                    crate::server::initramfs::CA_DEFAULTS.join(", ")
                );
            }
        }
    }
    let kver = match &a.kver {
        Some(k) => k.clone(),
        None => std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_string())
            .map_err(|source| crate::server::initramfs::BuildError::Read {
                path: "/proc/sys/kernel/osrelease".into(),
                source,
            })?,
    };
    let opts = crate::server::initramfs::Options {
        kmoddir: a
            .kmoddir
            .clone()
            .unwrap_or_else(|| crate::server::initramfs::default_kmoddir(&kver)),
        kver,
        net_drivers: a.net_drivers.clone().unwrap_or_else(|| {
            crate::server::initramfs::NIC_MODULES
                .iter()
                .map(|s| s.to_string())
                .collect()
        }),
        add_drivers: a.add_drivers.clone(),
        firmware_dir: a.firmware_dir.clone(),
        ca: a.ca.clone(),
        keys: a.keys.clone(),
        shell: a.shell.clone(),
        compress: a.compress,
        init: a
            .init
            .clone()
            .unwrap_or_else(|| std::path::PathBuf::from("/proc/self/exe")),
    };
    let report = crate::server::initramfs::build(&opts, &a.output)?;
    log::info!("{}", crate::server::initramfs::summary(&report, &a.output));
    println!("{}", report.bytes);
    Ok(())
}
