//! Node secrets (`docs/reference/secrets-bundle.md`): the per-node bundle delivered at boot, validated
//! as a whole, then written into the assembled root without following symlinks.
//!
//! Stages: [`source`] gets the bytes (file in the initramfs or https), [`bundle`] parses and
//! validates every entry (owners resolved by [`owners`] in the new root), [`write`] checks every
//! destination and only then writes. Secret bytes live in `Zeroizing` buffers and never reach a
//! log line, an error or a `Debug` output; the initramfs copy is wiped once used.

pub mod bundle;
pub mod enroll;
pub mod facts;
pub mod kmsg;
pub mod owners;
pub mod source;
pub mod trust;
pub mod write;

use crate::config::url_template::Placeholder;
use crate::config::url_template::UrlTemplate;
use crate::fetch::{ClientIdentity, FetchOptions};
use crate::support::deadline::Deadline;
use crate::support::exit::{report, Exit};
use crate::support::paths::Paths;
use crate::support::values::Sha256Hex;
use bundle::BundleError;
use owners::Accounts;
use source::{Source, SourceError};
use std::path::{Path, PathBuf};
use write::{RootDir, Transaction, WriteError};

pub use facts::NodeFacts;

/// Largest account file read from the new root.
const MAX_ACCOUNTS_FILE: u64 = 16 << 20;

/// Retries of the bundle's download when `rd.rustlive.retries` is not given.
pub const DEFAULT_RETRIES: u32 = 5;

/// What the secrets stage does: where the bundle comes from, the policy it must meet, and how
/// a network source is downloaded.
#[derive(Debug, Clone)]
pub struct SecretsOptions {
    /// `rd.rustlive.secrets`, placeholders not yet filled in; `None`: the default file
    /// (`/rustlive/secrets.json`) when it exists.
    pub source: Option<UrlTemplate>,
    /// `rd.rustlive.secrets.sha256`: the bundle must have this hash, whatever the source.
    pub sha256: Option<Sha256Hex>,
    /// Whether a failure stops the boot when there is a source (`rd.rustlive.secrets.required`);
    /// `false`: the boot goes on without the secrets.
    pub required: bool,
    /// `rd.rustlive.secrets.sealed=required`: only a bundle sealed to the node's TPM is accepted.
    pub sealed_required: bool,
    /// The client certificate for an https source (`rd.rustlive.secrets.cert` and `.key`).
    pub identity: Option<ClientIdentity>,
    /// The image's download options (or the transfer settings alone): the bundle takes only
    /// their transfer part (see [`SecretsOptions::download`]), within the deadline [`apply`] is
    /// given.
    pub transfer: FetchOptions,
}

impl SecretsOptions {
    /// How the bundle is downloaded: the image's transfer settings (CA, proxy, deadline, stall,
    /// retries) plus the client identity; never insecure TLS, and none of the image's hashes or
    /// keys (the bundle's pin is checked here, whatever the source). Without
    /// `rd.rustlive.retries`, [`DEFAULT_RETRIES`]: the network is known to be up by then, and a
    /// node should not hang silently on its secrets server.
    pub fn download(&self) -> FetchOptions {
        let t = &self.transfer;
        FetchOptions {
            retries: Some(t.retries.unwrap_or(DEFAULT_RETRIES)),
            deadline: t.deadline,
            stall: t.stall,
            connect_timeout: t.connect_timeout,
            ca: t.ca.clone(),
            proxy: t.proxy.clone(),
            identity: self.identity.clone(),
            ..FetchOptions::default()
        }
    }
}

/// What [`apply`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// No source configured and no default file: nothing to do.
    NoSource,
    /// The bundle's files are in the new root.
    Installed { files: usize },
    /// Applying failed, and `rd.rustlive.secrets.required=0` lets the boot go on.
    Skipped,
}

/// One entry that cannot be written where it says.
#[derive(Debug, thiserror::Error)]
#[error("files[{index}] ({path})")]
pub struct EntryError {
    pub index: usize,
    pub path: String,
    #[source]
    pub source: WriteError,
}

/// Secrets could not be installed; the boot stops with exit code 6.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot get the node secrets bundle")]
    Source(#[source] SourceError),
    #[error("cannot get the node secrets bundle from {from}")]
    Fetch {
        from: String,
        #[source]
        source: SourceError,
    },
    #[error("the node secrets bundle from {from} is refused, nothing was written")]
    Bundle {
        from: String,
        #[source]
        source: BundleError,
    },
    #[error("the node secrets cannot be written safely into {}, nothing was written", root.display())]
    Unsafe {
        root: PathBuf,
        #[source]
        source: EntryError,
    },
    #[error("writing the node secrets into {} failed, nothing was written", root.display())]
    Stage {
        root: PathBuf,
        #[source]
        source: EntryError,
    },
    #[error("writing the node secrets into {} failed after {} of {total} files", root.display(), source.index)]
    Write {
        root: PathBuf,
        total: usize,
        #[source]
        source: EntryError,
    },
    #[error("cannot install the node secrets")]
    Root(#[source] WriteError),
    #[error("the node secrets bundle from {from} is not sealed to this node's TPM and rd.rustlive.secrets.sealed=required, nothing was written")]
    Unsealed { from: String },
    #[error("the node secrets bundle from {from} is sealed, but this node has no usable TPM, nothing was written")]
    NoTpm {
        from: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the sealed node secrets bundle from {from} cannot be opened, nothing was written")]
    Sealed {
        from: String,
        #[source]
        source: crate::tpm::envelope::EnvelopeError,
    },
    #[error("the sealed node secrets bundle from {from} is refused, nothing was written")]
    Unauthenticated {
        from: String,
        #[source]
        source: Box<trust::Refusal>,
    },
}

impl SecretsError {
    pub fn exit_code(&self) -> Exit {
        Exit::Secrets
    }
}

/// Installs the node's secrets into `newroot`, following the policy of
/// `rd.rustlive.secrets.required`: with no source and no `/rustlive/secrets.json`, one info line
/// and `Applied::NoSource`. The initramfs copy is wiped whatever the outcome.
pub fn apply(
    opts: &SecretsOptions,
    newroot: &Path,
    facts: &NodeFacts,
    paths: &Paths,
    deadline: Deadline,
) -> Result<Applied, SecretsError> {
    let default_file = paths.default_secrets();
    let have_default = default_file.symlink_metadata().is_ok();
    let Some(template) = source_template(opts, &default_file, have_default) else {
        log::info!(
            "secrets: no source (rd.rustlive.secrets) and no {}; no secrets installed",
            default_file.display()
        );
        // A per-node cpio the kernel could not unpack looks exactly like "no bundle".
        if let Some(w) =
            kmsg::missing_bundle_warning(&kmsg::read_kernel_log(&paths.join("dev/kmsg")))
        {
            log::warn!("{w}");
        }
        return Ok(Applied::NoSource);
    };
    let required = opts.required;
    let result = source::resolve(&template, facts)
        .map_err(SecretsError::Source)
        .and_then(|src| install(opts, newroot, &src, deadline, paths));
    wipe_sources(opts.source.as_ref(), facts, paths);
    match result {
        Ok(files) => Ok(Applied::Installed { files }),
        Err(e) if required => Err(e),
        Err(e) => {
            log::warn!(
                "secrets: {}; continuing without them (rd.rustlive.secrets.required=0)",
                report(&e)
            );
            Ok(Applied::Skipped)
        }
    }
}

/// The configured source, else the default file as a `file://` URL when it exists.
fn source_template(
    opts: &SecretsOptions,
    default_file: &Path,
    have_default: bool,
) -> Option<UrlTemplate> {
    opts.source.clone().or_else(|| {
        have_default
            .then(|| UrlTemplate::parse(&format!("file://{}", default_file.display())).ok())
            .flatten()
    })
}

/// Gets, validates, checks and writes the bundle; returns the number of files written.
fn install(
    opts: &SecretsOptions,
    newroot: &Path,
    src: &Source,
    deadline: Deadline,
    paths: &Paths,
) -> Result<usize, SecretsError> {
    let from = src.describe();
    log::info!("secrets: reading the bundle from {from}");
    let fetch_err = |source| SecretsError::Fetch {
        from: from.clone(),
        source,
    };
    let text = source::load(src, &opts.download(), deadline).map_err(fetch_err)?;
    if let Some(pin) = &opts.sha256 {
        if crate::fetch::verify::sha256(&text) != *pin {
            return Err(fetch_err(SourceError::PinMismatch));
        }
    }
    let text = unseal(opts, src, text, &from, deadline, paths)?;
    let root = RootDir::open(newroot).map_err(SecretsError::Root)?;
    let accounts = load_accounts(&root);
    let entries = bundle::parse(&text, &accounts).map_err(|source| SecretsError::Bundle {
        from: from.clone(),
        source,
    })?;
    drop(text);

    // Every destination is checked before the first byte is written.
    for (index, e) in entries.iter().enumerate() {
        root.check(&e.path).map_err(|source| SecretsError::Unsafe {
            root: newroot.to_path_buf(),
            source: EntryError {
                index,
                path: e.path.clone(),
                source,
            },
        })?;
    }
    // All files are written under temporary names first: a full overlay fails here, and then
    // nothing lands (the transaction removes what it wrote when dropped).
    let mut tx = Transaction::new(&root);
    for (index, e) in entries.iter().enumerate() {
        tx.stage(e).map_err(|source| SecretsError::Stage {
            root: newroot.to_path_buf(),
            source: EntryError {
                index,
                path: e.path.clone(),
                source,
            },
        })?;
    }
    tx.commit().map_err(|(index, source)| SecretsError::Write {
        root: newroot.to_path_buf(),
        total: entries.len(),
        source: EntryError {
            index,
            path: entries
                .get(index)
                .map(|e| e.path.clone())
                .unwrap_or_default(),
            source,
        },
    })?;
    for e in &entries {
        log::info!(
            "secrets: wrote {} (mode {:04o}, uid {}, gid {}, {} bytes)",
            e.path,
            e.mode,
            e.uid,
            e.gid,
            e.content.len()
        );
    }
    log::info!(
        "secrets: installed {} files into {}",
        entries.len(),
        newroot.display()
    );
    Ok(entries.len())
}

/// The plain bundle: a sealed one opened with the node's TPM (the key never leaves rustlive's
/// memory, and is zeroized), an unsealed one as it came, when the policy accepts it:
/// `rd.rustlive.secrets.sealed=required` refuses it, and so does plain http without a pin. A
/// sealed bundle's signature is checked against the initramfs's trusted keys
/// ([`trust::SEALED_KEYS_DIR`]) before the TPM is opened ([`trust::decide`]).
fn unseal(
    opts: &SecretsOptions,
    src: &Source,
    text: zeroize::Zeroizing<Vec<u8>>,
    from: &str,
    deadline: Deadline,
    paths: &Paths,
) -> Result<zeroize::Zeroizing<Vec<u8>>, SecretsError> {
    use crate::tpm::envelope;
    if !envelope::is_sealed(&text) {
        if opts.sealed_required {
            return Err(SecretsError::Unsealed { from: from.into() });
        }
        if src.is_plain_http() && opts.sha256.is_none() {
            return Err(SecretsError::Fetch {
                from: from.into(),
                source: SourceError::UnpinnedHttp,
            });
        }
        return Ok(text);
    }
    let sealed_err = |source| SecretsError::Sealed {
        from: from.into(),
        source,
    };
    let refused = |source| SecretsError::Unauthenticated {
        from: from.into(),
        source: Box::new(source),
    };
    let parsed = envelope::parse(&text).map_err(sealed_err)?;
    drop(text);
    let dir = paths.join(trust::SEALED_KEYS_DIR);
    let keys = crate::fetch::verify::load_keys_dir(&dir).map_err(|source| {
        refused(trust::Refusal::Keys {
            dir: dir.clone(),
            source,
        })
    })?;
    let signer = envelope::check_signature(&parsed, &keys)
        .map_err(|e| refused(trust::Refusal::Signature(e)))?;
    let policy = trust::Policy {
        sealed_required: opts.sealed_required,
        dir,
        keys: keys.len(),
    };
    match trust::decide(signer, &policy).map_err(refused)? {
        Some(warning) => log::warn!("secrets: {warning}"),
        None => {
            if let envelope::Signer::Trusted(key) = signer {
                log::info!("secrets: the sealed bundle is signed by the trusted key {key}");
            }
        }
    }
    let mut tpm = crate::tpm::open_tpm(paths, deadline).map_err(|source| SecretsError::NoTpm {
        from: from.into(),
        source,
    })?;
    log::info!(
        "secrets: the bundle is sealed; opening it with {}",
        tpm.describe()
    );
    let plain = envelope::open(&parsed, &mut tpm).map_err(sealed_err)?;
    log::info!("secrets: the sealed bundle opened with this node's TPM");
    Ok(plain)
}

/// The new root's accounts. A missing or unsafe (symlinked) file leaves only `root` and numeric
/// ids resolvable; an entry naming anyone else then fails with a clear message.
fn load_accounts(root: &RootDir) -> Accounts {
    let read = |p: &str| match root.read_file(p, MAX_ACCOUNTS_FILE) {
        Ok(Some(b)) => String::from_utf8_lossy(&b).into_owned(),
        Ok(None) => {
            log::warn!("secrets: the new root has no {p}; only root and numeric ids resolve");
            String::new()
        }
        Err(e) => {
            log::warn!("secrets: not using the new root's {p}: {}", report(&e));
            String::new()
        }
    };
    Accounts::parse(&read("/etc/passwd"), &read("/etc/group"))
}

/// Removes the initramfs copies of the bundle (the default file, and `source` when it is a
/// `file://` template: [`SecretsOptions::source`]), after overwriting them with zeros. The
/// failure policy calls it before dropping to a shell or rebooting; in-memory copies are
/// already zeroed when [`apply`] returns.
///
/// It works whenever the boot fails: a `{mac}` that is not known yet (the network never came
/// up) is tried with the MAC of every interface, so the file named for this node is found.
pub fn wipe_sources(source: Option<&UrlTemplate>, facts: &NodeFacts, paths: &Paths) {
    let default_file = paths.default_secrets();
    let mut files = vec![default_file.clone()];
    if let Some(t) = source.filter(|t| !t.is_network()) {
        let macs = match facts.mac() {
            Some(m) => vec![Some(m)],
            None if t.uses(Placeholder::Mac) => {
                interface_macs(paths).into_iter().map(Some).collect()
            }
            None => vec![None],
        };
        for mac in macs {
            let f = NodeFacts {
                mac,
                ..facts.clone()
            };
            // The template names a real path (not one below `paths`), as in `apply`.
            if let Ok(Source::File(p)) = source::resolve(t, &f) {
                if !files.contains(&p) {
                    files.push(p);
                }
            }
        }
    }
    for f in files {
        match source::wipe_file(&f) {
            Ok(true) => log::info!("secrets: removed {}", f.display()),
            Ok(false) => {}
            Err(e) => log::warn!("secrets: cannot remove {}: {e}", f.display()),
        }
    }
}

/// The MAC address of every interface in `/sys/class/net`.
fn interface_macs(paths: &Paths) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(paths.join("sys/class/net")) else {
        return Vec::new();
    };
    let mut macs: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read_to_string(e.path().join("address")).ok())
        .filter_map(|a| {
            NodeFacts {
                mac: Some(a.trim().to_string()),
                ..NodeFacts::default()
            }
            .mac()
        })
        .filter(|m| m != "00:00:00:00:00:00")
        .collect();
    macs.sort();
    macs.dedup();
    macs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a command line without any `rd.rustlive.secrets*` option gives (checked where the
    /// options are built, in `boot::options`).
    fn defaults() -> SecretsOptions {
        SecretsOptions {
            source: None,
            sha256: None,
            required: true,
            sealed_required: false,
            identity: None,
            transfer: FetchOptions::default(),
        }
    }

    #[test]
    fn facts_are_validated_and_normalized() {
        let f = NodeFacts {
            mac: Some("52:54:00:AB:CD:EF".into()),
            uuid: Some("4C4C4544-0042-3510-8050-B4C04F4A4B33".into()),
            hostname: Some("n001.hpc".into()),
        };
        assert_eq!(f.mac().as_deref(), Some("52:54:00:ab:cd:ef"));
        assert_eq!(
            f.uuid().as_deref(),
            Some("4c4c4544-0042-3510-8050-b4c04f4a4b33")
        );
        assert_eq!(f.hostname().as_deref(), Some("n001.hpc"));
        let bad = NodeFacts {
            mac: Some("52-54-00-ab-cd-ef".into()),
            uuid: Some("00000000-0000-0000-0000-000000000000".into()),
            hostname: Some("(none)".into()),
        };
        assert_eq!((bad.mac(), bad.uuid(), bad.hostname()), (None, None, None));
        let unset = NodeFacts {
            uuid: Some("FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF".into()),
            hostname: Some("localhost".into()),
            ..NodeFacts::default()
        };
        assert_eq!((unset.uuid(), unset.hostname()), (None, None));
    }

    #[test]
    fn gathers_facts_under_an_injected_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("sys/class/dmi/id")).unwrap();
        std::fs::create_dir_all(t.path().join("proc/sys/kernel")).unwrap();
        std::fs::write(
            t.path().join("sys/class/dmi/id/product_uuid"),
            "4c4c4544-0042-3510-8050-b4c04f4a4b33\n",
        )
        .unwrap();
        std::fs::write(t.path().join("proc/sys/kernel/hostname"), "n7\n").unwrap();
        let f = NodeFacts::gather(&Paths::under(t.path()), Some("52:54:00:00:00:07".into()));
        assert_eq!(
            f.uuid().as_deref(),
            Some("4c4c4544-0042-3510-8050-b4c04f4a4b33")
        );
        assert_eq!(f.hostname().as_deref(), Some("n7"));
        assert_eq!(f.mac().as_deref(), Some("52:54:00:00:00:07"));
        let empty = NodeFacts::gather(&Paths::under(t.path().join("nothing")), None);
        assert_eq!(empty, NodeFacts::default());
    }

    #[test]
    fn no_source_and_no_default_file_does_nothing() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let got = apply(
            &defaults(),
            &root,
            &NodeFacts::default(),
            &Paths::under(t.path()),
            Deadline::NONE,
        )
        .unwrap();
        assert_eq!(got, Applied::NoSource);
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0);
    }

    #[test]
    fn default_file_is_used_then_wiped() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let paths = Paths::under(t.path());
        let default = paths.default_secrets();
        std::fs::create_dir_all(default.parent().unwrap()).unwrap();
        // An empty bundle: exercises source selection and wiping without needing root for chown.
        std::fs::write(&default, br#"{"version": 1, "files": []}"#).unwrap();
        let got = apply(
            &defaults(),
            &root,
            &NodeFacts::default(),
            &paths,
            Deadline::NONE,
        )
        .unwrap();
        assert_eq!(got, Applied::Installed { files: 0 });
        assert!(!default.exists());
    }

    #[test]
    fn failure_is_fatal_unless_not_required() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let paths = Paths::under(t.path());
        let default = paths.default_secrets();
        std::fs::create_dir_all(default.parent().unwrap()).unwrap();
        let bad = br#"{"version": 2, "files": []}"#;

        std::fs::write(&default, bad).unwrap();
        let err = apply(
            &defaults(),
            &root,
            &NodeFacts::default(),
            &paths,
            Deadline::NONE,
        )
        .unwrap_err();
        assert_eq!(err.exit_code(), Exit::Secrets);
        assert!(matches!(err, SecretsError::Bundle { .. }));
        assert!(
            !default.exists(),
            "the initramfs copy is wiped on failure too"
        );

        std::fs::write(&default, bad).unwrap();
        let opts = SecretsOptions {
            required: false,
            ..defaults()
        };
        let got = apply(&opts, &root, &NodeFacts::default(), &paths, Deadline::NONE).unwrap();
        assert_eq!(got, Applied::Skipped);
    }

    #[test]
    fn pin_mismatch_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let bundle = t.path().join("b.json");
        std::fs::write(&bundle, br#"{"version": 1, "files": []}"#).unwrap();
        let opts = SecretsOptions {
            source: Some(UrlTemplate::parse(&format!("file://{}", bundle.display())).unwrap()),
            sha256: Some(crate::support::values::parse_sha256(&"0".repeat(64)).unwrap()),
            ..defaults()
        };
        let err = apply(
            &opts,
            &root,
            &NodeFacts::default(),
            &Paths::under(t.path().join("none")),
            Deadline::NONE,
        )
        .unwrap_err();
        assert!(
            matches!(
                &err,
                SecretsError::Fetch {
                    source: SourceError::PinMismatch,
                    ..
                }
            ),
            "{err:?}"
        );
    }

    /// Issue 9, item 16: a boot that fails before the node's MAC is known (no network) still
    /// wipes a `file://…{mac}…` bundle: every interface's MAC is tried.
    #[test]
    fn wipe_finds_a_mac_templated_file_without_the_mac() {
        let t = tempfile::tempdir().unwrap();
        let paths = Paths::under(t.path());
        for (ifname, mac) in [("lo", "00:00:00:00:00:00"), ("eth0", "52:54:00:AA:BB:01")] {
            let d = t.path().join("sys/class/net").join(ifname);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("address"), format!("{mac}\n")).unwrap();
        }
        let bundle = t.path().join("b-52:54:00:aa:bb:01.json");
        std::fs::write(&bundle, b"secret").unwrap();
        let other = t.path().join("b-52:54:00:aa:bb:99.json");
        std::fs::write(&other, b"another node's").unwrap();
        let source =
            UrlTemplate::parse(&format!("file://{}/b-{{mac}}.json", t.path().display())).unwrap();
        wipe_sources(Some(&source), &NodeFacts::default(), &paths);
        assert!(!bundle.exists());
        assert!(other.exists());
    }
}
