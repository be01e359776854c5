//! `rustlive bundle build-all NODES_DIR -o WWW_DIR`: one bundle per node.
//!
//! Convention: every directory `NODES_DIR/HOSTNAME/` is one node's bundle tree (its name is the
//! node's host name); its manifest's `"macs"` lists the node's MAC addresses. Names starting
//! with `.` or `_` are not nodes (`NODES_DIR/_common/` can hold the shared tree). Outputs, each
//! in both forms (`.json` for an https source, `.cpio` for an initrd):
//!
//! - `WWW_DIR/by-mac/MAC.{json,cpio}`, MAC in lower-case colon form as iPXE prints `${mac}`;
//! - `WWW_DIR/by-host/HOSTNAME.{json,cpio}`.
//!
//! Outputs are deterministic, so "inputs changed" is decided on the bytes themselves: a node's
//! output is rewritten only when what would be written differs from what is there (no state
//! file to drift, and unchanged files keep their mtime for caches and rsync). Files in `by-mac/`
//! and `by-host/` that no node produces any more (a node removed, a NIC replaced) are removed,
//! so a retired node's secrets stop being served.
//!
//! With [`Sealing`] every node's outputs are sealed to its own TPM's EK, enrolled as
//! `EK_DIR/HOSTNAME.ek` (what `rustlive tpm ek` printed on the node, saved as is; or `.pem`,
//! `.crt`, `.der`), and signed with the boot server's key; a node without an EK is refused, so
//! a directory served over plain http never holds an unsealed bundle. Sealing is randomized (a fresh key each time), so the bytes cannot tell whether the
//! inputs changed: `NODES_DIR/.sealed/HOSTNAME` (beside the plain trees, never in the served
//! directory) records a digest of what the outputs were sealed from (the plain bundle, the EK,
//! the PCR policy, the signing key) and the SHA-256 of the bytes written. A node is sealed again
//! unless both still hold: an output a plain run (or anyone) rewrote, a missing one, another
//! EK, policy or signing key, all seal every output of that node again.
//!
//!
//! Files go through [`crate::server::safe_file`]: `WWW_DIR` (named by the operator) may be a
//! link, but `by-mac/`, `by-host/`, `.sealed/`, a node's directory and everything in them are
//! never followed through one (a symlinked `by-mac` is refused before anything is built); an
//! output is renamed into place with its mode set whatever the umask, and an existing one is
//! kept only when it is a regular file with the same bytes and mode; a stale output is
//! unlinked, never truncated or zeroed (that would reach every other name of the file).

use super::build::{build_tree, Options};
use super::error::BuildError;
use super::hostkeys::{self, Keygen};
use super::output::{render, Kind};
use crate::fetch::verify::sha256;
use crate::secrets::NodeFacts;
use crate::server::safe_file::{Dir, FileError, Limit};
use crate::server::sign::SigningKey;
use crate::support::values::{parse_sha256, Sha256Hex};
use crate::sys::fs::FileType;
use crate::tpm::ek::EkPublic;
use crate::tpm::pcr::PcrPolicy;
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// What [`build_all`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// Host names, sorted.
    pub nodes: Vec<String>,
    /// Host names whose outputs were (re)written.
    pub written: Vec<String>,
    /// Stale outputs removed.
    pub removed: Vec<PathBuf>,
}

/// One node directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub hostname: String,
    pub dir: PathBuf,
    /// Normalized (lower case).
    pub macs: Vec<String>,
}

/// The node directories of `nodes_dir`, sorted by host name; MACs checked and unique.
pub fn nodes(nodes_dir: &Path) -> Result<Vec<Node>, BuildError> {
    let root = Dir::open(nodes_dir)?;
    let mut out = Vec::new();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    let mut names = root.names()?;
    // In name order, so that which of two nodes is blamed for a shared MAC is stable.
    names.sort();
    for entry in names {
        let dir = root.path().join(&entry);
        let Some(name) = entry.to_str().map(str::to_string) else {
            return Err(BuildError::NotUtf8(dir));
        };
        if name.starts_with(['.', '_']) {
            continue;
        }
        match root.kind(&entry)? {
            Some(FileType::Symlink) => return Err(BuildError::Symlink(dir)),
            Some(FileType::Directory) => {}
            _ => continue,
        }
        let node = |what: String| BuildError::Node {
            dir: dir.clone(),
            what,
        };
        let facts = NodeFacts {
            hostname: Some(name.clone()),
            ..NodeFacts::default()
        };
        let Some(hostname) = facts.hostname() else {
            return Err(node(
                "the directory name must be the node's host name (letters, digits, '-' and '.')"
                    .into(),
            ));
        };
        let tree = root
            .sub(&entry, None)?
            .ok_or_else(|| node("removed while it was read".into()))?;
        let manifest = super::tree::load_manifest(&tree)?;
        let mut macs = Vec::new();
        for m in &manifest.macs {
            let facts = NodeFacts {
                mac: Some(m.clone()),
                ..NodeFacts::default()
            };
            let Some(mac) = facts.mac() else {
                return Err(node(format!(
                    "\"macs\": {m:?} is not a MAC address like 52:54:00:12:34:56"
                )));
            };
            if let Some(other) = seen.insert(mac.clone(), hostname.clone()) {
                return Err(node(format!("MAC {mac} is also the MAC of {other}")));
            }
            macs.push(mac);
        }
        if macs.is_empty() {
            log::warn!(
                "bundle: {} lists no \"macs\" in its manifest: only by-host/{hostname}.* is written",
                dir.display()
            );
        }
        out.push(Node {
            hostname,
            dir,
            macs,
        });
    }
    out.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    Ok(out)
}

/// `build-all --seal-to EK_DIR [--pcr SPEC]`.
#[derive(Debug, Clone)]
pub struct Sealing<'a> {
    pub ek_dir: PathBuf,
    pub pcr: Option<PcrPolicy>,
    /// Signs every sealed output (envelope version 2).
    pub signer: &'a SigningKey,
}

/// The names `EK_DIR/HOST.EXT` an EK is looked up under, in this order.
pub const EK_EXTENSIONS: [&str; 4] = ["ek", "pem", "crt", "der"];

/// Where a sealed node's input digest is kept (see the module doc).
pub const SEALED_STATE: &str = ".sealed";

/// What the write step does with one output path.
#[derive(Clone)]
enum Plan {
    /// Write these bytes (when they differ from what is there) with this mode.
    Bytes(Zeroizing<Vec<u8>>, u32),
    /// A sealed output whose inputs are unchanged: leave it.
    Keep,
}

/// The EK enrolled as `EK_DIR/HOST.ek` (what `rustlive tpm ek` printed on the node, saved as
/// is), else `HOST.pem`, `.crt` or `.der`: read from `EK_DIR`'s fd without following a link, a
/// regular file of at most [`Limit::EK`].
fn enrolled_ek(s: &Sealing<'_>, host: &str) -> Result<EkPublic, BuildError> {
    let no_ek = || BuildError::NoEk {
        host: host.into(),
        ek_dir: s.ek_dir.clone(),
    };
    let dir = Dir::try_open(&s.ek_dir)?.ok_or_else(no_ek)?;
    for ext in EK_EXTENSIONS {
        let name = format!("{host}.{ext}");
        if let Some(c) = dir.read(Path::new(&name), Limit::EK)? {
            return crate::server::seal::parse_ek(&dir.path().join(&name), &c.bytes).map_err(
                |source| BuildError::Seal {
                    host: host.into(),
                    source,
                },
            );
        }
    }
    Err(no_ek())
}

/// Digest of what a sealed output depends on: the plain bundle, the EK, the PCR policy and the
/// signing key.
fn sealed_inputs(
    json: &[u8],
    ek: &EkPublic,
    pcr: Option<&PcrPolicy>,
    signer: &SigningKey,
) -> Sha256Hex {
    let mut all = b"rustlive-sealed-inputs-v2\0".to_vec();
    all.extend_from_slice(&sha256(json).0);
    all.extend_from_slice(&ek.name());
    let public = signer.public_bytes();
    all.extend_from_slice(&sha256(&public).0);
    if let Some(p) = pcr {
        all.extend_from_slice(p.to_spec().as_bytes());
    }
    sha256(&all)
}

/// A node's record in `NODES_DIR/.sealed/`: what its outputs were sealed from, and the SHA-256
/// of the bytes each form was given (every output of one form holds the same bytes).
#[derive(Debug, Clone, PartialEq, Eq)]
struct SealedState {
    inputs: Sha256Hex,
    json: Sha256Hex,
    cpio: Sha256Hex,
}

impl SealedState {
    const HEADER: &'static str = "rustlive-sealed-state 2";

    fn to_text(&self) -> String {
        format!(
            "{}\ninputs {}\njson {}\ncpio {}\n",
            Self::HEADER,
            self.inputs,
            self.json,
            self.cpio
        )
    }

    /// The record, or `None` for anything else (an older record, a damaged one): the node is
    /// then sealed again.
    fn parse(text: &str) -> Option<SealedState> {
        let mut lines = text.lines();
        if lines.next()? != Self::HEADER {
            return None;
        }
        let mut field = |name: &str| {
            let line = lines.next()?;
            parse_sha256(line.strip_prefix(name)?.strip_prefix(' ')?).ok()
        };
        let state = SealedState {
            inputs: field("inputs")?,
            json: field("json")?,
            cpio: field("cpio")?,
        };
        lines.next().is_none().then_some(state)
    }

    /// Whether a node's sealed outputs can stay as they are: this record is for `inputs`, and
    /// every output (`current`: its form and the SHA-256 of what it holds now, `None` when it
    /// is missing or not a regular file) still holds the bytes sealed then. An output that a
    /// run without `--seal-to` rewrote in plain, or that anyone changed, fails this, and the
    /// node is sealed again.
    fn keeps(
        recorded: Option<&SealedState>,
        inputs: &Sha256Hex,
        current: &[(Kind, Option<Sha256Hex>)],
    ) -> bool {
        let Some(r) = recorded else {
            return false;
        };
        r.inputs == *inputs
            && current.iter().all(|(kind, digest)| match kind {
                Kind::Json => *digest == Some(r.json),
                Kind::Cpio => *digest == Some(r.cpio),
            })
    }
}

/// The served directories: `WWW_DIR` (the operator's, a link there is followed) and its
/// `by-host/` and `by-mac/`, each opened without following a link and created only when the
/// outputs are written.
struct Served {
    www: PathBuf,
    top: Option<Dir>,
    subs: [(&'static str, Option<Dir>); 2],
}

impl Served {
    /// Opens what exists; a link (or anything but a directory) at `by-host` or `by-mac` is
    /// refused here, before anything is built.
    fn open(www: &Path) -> Result<Served, BuildError> {
        let top = Dir::try_open(www)?;
        let sub = |name| match &top {
            Some(t) => t.sub(name, None),
            None => Ok(None),
        };
        let subs = [("by-host", sub("by-host")?), ("by-mac", sub("by-mac")?)];
        Ok(Served {
            www: www.to_path_buf(),
            top,
            subs,
        })
    }

    /// Creates the directories still missing (0755).
    fn create(&mut self) -> Result<(), BuildError> {
        let top = match self.top.take() {
            Some(t) => t,
            None => Dir::create(&self.www)?,
        };
        for (name, dir) in &mut self.subs {
            if dir.is_none() {
                *dir = top.sub(*name, Some(0o755))?;
            }
        }
        self.top = Some(top);
        Ok(())
    }

    /// The directory an output path (`WWW_DIR/SUB/NAME`, as planned) is in, and its name.
    fn locate<'a>(&self, path: &'a Path) -> Option<(&Dir, &'a OsStr)> {
        let name = path.file_name()?;
        let parent = path.parent()?;
        self.subs.iter().find_map(|(sub, dir)| {
            dir.as_ref()
                .filter(|_| parent == self.www.join(sub))
                .map(|d| (d, name))
        })
    }

    /// The SHA-256 of a sealed output in place (a regular 0644 file); `None` when it is missing,
    /// not in place, or larger than a sealed output can be (it is then sealed again).
    fn sealed_digest(&self, path: &Path) -> Result<Option<Sha256Hex>, BuildError> {
        let Some((dir, name)) = self.locate(path) else {
            return Ok(None);
        };
        if dir.mode_of_file(name)? != Some(0o644) {
            return Ok(None);
        }
        match dir.read(Path::new(name), Limit::SEALED_OUTPUT) {
            Ok(c) => Ok(c.map(|c| sha256(Zeroizing::new(c.bytes).as_slice()))),
            Err(FileError::TooLarge { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// The record in `.sealed/HOST`, `None` when there is none or it is not one this version
/// wrote. Read from the state directory's fd without following a link, a regular file of at
/// most [`Limit::SEALED_STATE`].
fn recorded_state(state: Option<&Dir>, host: &str) -> Result<Option<SealedState>, BuildError> {
    let Some(state) = state else {
        return Ok(None);
    };
    Ok(state
        .read(Path::new(host), Limit::SEALED_STATE)?
        .and_then(|c| SealedState::parse(&String::from_utf8_lossy(&c.bytes))))
}

/// Builds every node's bundle into `www` (see the module doc). With `keygen`, missing SSH host
/// keys are generated into each node's tree first; with `sealing`, every output is sealed to its
/// node's EK. Every bundle is built, validated (and sealed) before anything is written, so one
/// bad node leaves every output as it was.
pub fn build_all(
    nodes_dir: &Path,
    www: &Path,
    opts: &Options,
    keygen: Option<&Keygen>,
    sealing: Option<&Sealing<'_>>,
) -> Result<Report, BuildError> {
    let nodes = nodes(nodes_dir)?;
    let mut served = Served::open(www)?;
    let nodes_root = Dir::open(nodes_dir)?;
    let trees = nodes
        .iter()
        .map(|n| Dir::open_no_follow(&n.dir))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(k) = keygen {
        for tree in &trees {
            // A tree the walk refuses gets no key written into it.
            super::tree::walk(tree)?;
            for p in hostkeys::ensure(tree, k)? {
                log::info!("bundle: generated {}", p.display());
            }
        }
    }
    let state_dir = nodes_root.sub(SEALED_STATE, None)?;
    let mut planned: BTreeMap<PathBuf, (String, Plan)> = BTreeMap::new();
    // Sealed nodes to record once their outputs are written.
    let mut sealed_state: Vec<(String, SealedState)> = Vec::new();
    for (n, tree) in nodes.iter().zip(&trees) {
        let b = build_tree(tree, opts)?;
        let outputs = |ext: &str| {
            std::iter::once(("by-host", &n.hostname))
                .chain(n.macs.iter().map(|m| ("by-mac", m)))
                .map(|(sub, name)| www.join(sub).join(format!("{name}.{ext}")))
                .collect::<Vec<_>>()
        };
        let (content, mode) = match sealing {
            None => (Some(Zeroizing::new(b.json.to_vec())), 0o600),
            Some(s) => {
                let ek = enrolled_ek(s, &n.hostname)?;
                let inputs = sealed_inputs(&b.json, &ek, s.pcr.as_ref(), s.signer);
                let recorded = recorded_state(state_dir.as_ref(), &n.hostname)?;
                let mut current: Vec<(Kind, Option<Sha256Hex>)> = Vec::new();
                for (kind, ext) in [(Kind::Json, "json"), (Kind::Cpio, "cpio")] {
                    for p in outputs(ext) {
                        current.push((kind, served.sealed_digest(&p)?));
                    }
                }
                if SealedState::keeps(recorded.as_ref(), &inputs, &current) {
                    (None, 0o644)
                } else {
                    let sealed =
                        crate::server::seal::seal_signed(&b.json, &ek, s.pcr.as_ref(), s.signer)
                            .map_err(|source| BuildError::Seal {
                                host: n.hostname.clone(),
                                source,
                            })?;
                    sealed_state.push((
                        n.hostname.clone(),
                        SealedState {
                            inputs,
                            json: sha256(&sealed),
                            cpio: sha256(&render(&sealed, Kind::Cpio)?),
                        },
                    ));
                    (Some(Zeroizing::new(sealed)), 0o644)
                }
            }
        };
        for (kind, ext) in [(Kind::Json, "json"), (Kind::Cpio, "cpio")] {
            let plan = match &content {
                Some(c) => Plan::Bytes(render(c, kind)?, mode),
                None => Plan::Keep,
            };
            for path in outputs(ext) {
                planned.insert(path, (n.hostname.clone(), plan.clone()));
            }
        }
    }

    let mut report = Report {
        nodes: nodes.iter().map(|n| n.hostname.clone()).collect(),
        ..Report::default()
    };
    served.create()?;
    let mut written = BTreeSet::new();
    for (path, (host, plan)) in &planned {
        let Plan::Bytes(bytes, mode) = plan else {
            continue;
        };
        let (dir, name) = served.locate(path).ok_or_else(|| BuildError::Write {
            path: path.clone(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        // Same bytes and mode: left alone (its mtime kept); a mode changed by hand is restored.
        if !dir.holds(name, bytes, *mode)? {
            dir.write(name, bytes, *mode)?;
            written.insert(host.clone());
        }
    }
    report.written = written.into_iter().collect();
    // Written last: a run interrupted before this point seals those nodes again next time.
    if !sealed_state.is_empty() {
        let state = match state_dir {
            Some(d) => d,
            None => {
                nodes_root
                    .sub(SEALED_STATE, Some(0o700))?
                    .ok_or_else(|| BuildError::Write {
                        path: nodes_root.path().join(SEALED_STATE),
                        source: std::io::ErrorKind::NotFound.into(),
                    })?
            }
        };
        for (host, record) in &sealed_state {
            state.write(OsStr::new(host), record.to_text().as_bytes(), 0o600)?;
        }
    }
    for (_, dir) in &served.subs {
        let Some(dir) = dir else {
            continue;
        };
        let mut names = dir.names()?;
        names.sort();
        for name in names {
            let p = dir.path().join(&name);
            let ours = p.extension().is_some_and(|x| x == "json" || x == "cpio");
            if !ours || planned.contains_key(&p) {
                continue;
            }
            // A directory by that name is not an output; anything else is unlinked.
            if dir.kind(&name)? != Some(FileType::Directory) && dir.remove(&name)? {
                report.removed.push(p);
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn node(root: &Path, host: &str, manifest: &str, key: &str) -> PathBuf {
        let d = root.join(host);
        std::fs::create_dir_all(d.join("etc/munge")).unwrap();
        std::fs::write(d.join("etc/munge/munge.key"), key).unwrap();
        std::fs::set_permissions(
            d.join("etc/munge/munge.key"),
            std::fs::Permissions::from_mode(0o400),
        )
        .unwrap();
        std::fs::write(d.join(super::super::tree::MANIFEST), manifest).unwrap();
        d
    }

    #[test]
    fn names_by_mac_and_host_rewrites_only_changes_and_prunes() {
        let t = tempfile::tempdir().unwrap();
        let nodes_dir = t.path().join("nodes");
        let www = t.path().join("www");
        node(&nodes_dir, "n1", r#"{"macs": ["52:54:00:AA:00:01"]}"#, "k1");
        node(
            &nodes_dir,
            "n2",
            r#"{"macs": ["52:54:00:aa:00:02", "52:54:00:aa:01:02"]}"#,
            "k2",
        );
        std::fs::create_dir_all(nodes_dir.join("_common")).unwrap();
        let opts = Options::default();
        let r = build_all(&nodes_dir, &www, &opts, None, None).unwrap();
        assert_eq!(r.nodes, ["n1", "n2"]);
        assert_eq!(r.written, ["n1", "n2"]);
        let mut names: Vec<String> = ["by-host", "by-mac"]
            .iter()
            .flat_map(|s| std::fs::read_dir(www.join(s)).unwrap())
            .map(|e| {
                e.unwrap()
                    .path()
                    .strip_prefix(&www)
                    .unwrap()
                    .display()
                    .to_string()
            })
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "by-host/n1.cpio",
                "by-host/n1.json",
                "by-host/n2.cpio",
                "by-host/n2.json",
                "by-mac/52:54:00:aa:00:01.cpio",
                "by-mac/52:54:00:aa:00:01.json",
                "by-mac/52:54:00:aa:00:02.cpio",
                "by-mac/52:54:00:aa:00:02.json",
                "by-mac/52:54:00:aa:01:02.cpio",
                "by-mac/52:54:00:aa:01:02.json",
            ]
        );
        let mac1 = www.join("by-mac/52:54:00:aa:00:01.json");
        assert_eq!(
            std::fs::read(&mac1).unwrap(),
            std::fs::read(www.join("by-host/n1.json")).unwrap()
        );
        assert_eq!(
            std::fs::metadata(&mac1).unwrap().permissions().mode() & 0o777,
            0o600
        );

        // Nothing changed: nothing written (mtimes kept).
        let mtime = std::fs::metadata(&mac1).unwrap().modified().unwrap();
        let r = build_all(&nodes_dir, &www, &opts, None, None).unwrap();
        assert!(r.written.is_empty() && r.removed.is_empty(), "{r:?}");
        assert_eq!(std::fs::metadata(&mac1).unwrap().modified().unwrap(), mtime);

        // One node's key changes, the other node loses a NIC.
        std::fs::write(nodes_dir.join("n1/etc/munge/munge.key"), "k1 new").unwrap();
        std::fs::write(
            nodes_dir.join("n2").join(super::super::tree::MANIFEST),
            r#"{"macs": ["52:54:00:aa:00:02"]}"#,
        )
        .unwrap();
        let r = build_all(&nodes_dir, &www, &opts, None, None).unwrap();
        assert_eq!(r.written, ["n1"]);
        assert_eq!(r.removed.len(), 2, "{r:?}");
        assert!(!www.join("by-mac/52:54:00:aa:01:02.cpio").exists());
    }

    #[test]
    fn sealed_outputs_need_an_ek_are_public_and_reseal_only_on_change() {
        let t = tempfile::tempdir().unwrap();
        let nodes_dir = t.path().join("nodes");
        let www = t.path().join("www");
        let eks = t.path().join("eks");
        std::fs::create_dir_all(&eks).unwrap();
        // '-' is not in the base64 alphabet: the key cannot show up in a sealed envelope by chance.
        let key = "munge-key-of-n1-0123456789";
        node(&nodes_dir, "n1", r#"{"macs": ["52:54:00:aa:00:01"]}"#, key);
        node(&nodes_dir, "n2", r#"{"macs": ["52:54:00:aa:00:02"]}"#, "k2");
        let opts = Options::default();
        let signer = crate::server::sign::tests::key();
        let sealing = Sealing {
            ek_dir: eks.clone(),
            pcr: None,
            signer: &signer,
        };
        let ek = include_str!("../../tpm/testdata/ek-rsa.pem");
        std::fs::write(eks.join("n1.pem"), ek).unwrap();
        // n2 is not enrolled: refused, and nothing is written for anyone.
        let e = build_all(&nodes_dir, &www, &opts, None, Some(&sealing)).unwrap_err();
        assert!(
            matches!(&e, BuildError::NoEk { host, .. } if host == "n2"),
            "{e}"
        );
        assert!(!www.exists());
        std::fs::write(eks.join("n2.pem"), ek).unwrap();

        let r = build_all(&nodes_dir, &www, &opts, None, Some(&sealing)).unwrap();
        assert_eq!(r.written, ["n1", "n2"]);
        let json = www.join("by-mac/52:54:00:aa:00:01.json");
        let sealed = std::fs::read(&json).unwrap();
        assert!(crate::tpm::envelope::is_sealed(&sealed));
        let text = String::from_utf8_lossy(&sealed);
        let key_b64 = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(key)
        };
        assert!(!text.contains(key) && !text.contains(&key_b64));
        assert_eq!(
            std::fs::metadata(&json).unwrap().permissions().mode() & 0o777,
            0o644
        );
        // The initrd form carries the same sealed envelope.
        let cpio = std::fs::read(www.join("by-host/n1.cpio")).unwrap();
        let mut raw = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&cpio[..]), &mut raw).unwrap();
        assert!(raw.windows(sealed.len()).any(|w| w == sealed.as_slice()));
        assert!(nodes_dir.join(SEALED_STATE).join("n1").is_file());

        // Unchanged inputs: nothing sealed or written again.
        let r = build_all(&nodes_dir, &www, &opts, None, Some(&sealing)).unwrap();
        assert!(r.written.is_empty() && r.removed.is_empty(), "{r:?}");
        assert_eq!(std::fs::read(&json).unwrap(), sealed);

        // A changed key reseals that node only; a PCR policy reseals every node.
        std::fs::write(nodes_dir.join("n1/etc/munge/munge.key"), "k1 new").unwrap();
        let r = build_all(&nodes_dir, &www, &opts, None, Some(&sealing)).unwrap();
        assert_eq!(r.written, ["n1"]);
        assert_ne!(std::fs::read(&json).unwrap(), sealed);
        let with_pcr = Sealing {
            pcr: Some(PcrPolicy::parse(&format!("7={}", "ab".repeat(32))).unwrap()),
            ..sealing.clone()
        };
        let r = build_all(&nodes_dir, &www, &opts, None, Some(&with_pcr)).unwrap();
        assert_eq!(r.written, ["n1", "n2"]);
        // A deleted output is sealed again even though the inputs are unchanged.
        std::fs::remove_file(www.join("by-host/n2.cpio")).unwrap();
        let r = build_all(&nodes_dir, &www, &opts, None, Some(&with_pcr)).unwrap();
        assert_eq!(r.written, ["n2"]);
        // The state directory is not a node.
        assert_eq!(r.nodes, ["n1", "n2"]);
    }

    #[test]
    fn refuses_bad_names_duplicate_macs_and_links() {
        let t = tempfile::tempdir().unwrap();
        let nodes_dir = t.path().join("nodes");
        let www = t.path().join("www");
        let opts = Options::default();
        node(&nodes_dir, "n1", r#"{"macs": ["52:54:00:aa:00:01"]}"#, "k1");
        let n2 = node(&nodes_dir, "n2", r#"{"macs": ["52:54:00:AA:00:01"]}"#, "k2");
        let e = build_all(&nodes_dir, &www, &opts, None, None).unwrap_err();
        assert!(e.to_string().contains("is also the MAC of n1"), "{e}");
        std::fs::write(
            n2.join(super::super::tree::MANIFEST),
            r#"{"macs": ["52-54-00-aa-00-02"]}"#,
        )
        .unwrap();
        let e = build_all(&nodes_dir, &www, &opts, None, None).unwrap_err();
        assert!(e.to_string().contains("is not a MAC address"), "{e}");
        std::fs::remove_dir_all(&n2).unwrap();
        node(&nodes_dir, "bad name", "{}", "k");
        let e = build_all(&nodes_dir, &www, &opts, None, None).unwrap_err();
        assert!(e.to_string().contains("host name"), "{e}");
        std::fs::remove_dir_all(nodes_dir.join("bad name")).unwrap();
        std::os::unix::fs::symlink(nodes_dir.join("n1"), nodes_dir.join("n3")).unwrap();
        assert!(matches!(
            build_all(&nodes_dir, &www, &opts, None, None),
            Err(BuildError::Symlink(_))
        ));
        assert!(!www.exists(), "nothing written when a node is refused");
    }

    /// Issue 18, item 9: `--seal-to` after a plain run (with a record of an earlier sealed run
    /// still in `.sealed/`) left the plain bundles in the served directory, 0600 and unsealed.
    /// Every output is sealed again, and so is every output when the signing key changes.
    #[test]
    fn sealing_after_a_plain_run_seals_every_output() {
        let t = tempfile::tempdir().unwrap();
        let nodes_dir = t.path().join("nodes");
        let www = t.path().join("www");
        let eks = t.path().join("eks");
        std::fs::create_dir_all(&eks).unwrap();
        node(&nodes_dir, "n1", r#"{"macs": ["52:54:00:aa:00:01"]}"#, "k1");
        node(&nodes_dir, "n2", r#"{"macs": ["52:54:00:aa:00:02"]}"#, "k2");
        for h in ["n1", "n2"] {
            std::fs::write(
                eks.join(format!("{h}.pem")),
                include_str!("../../tpm/testdata/ek-rsa.pem"),
            )
            .unwrap();
        }
        let opts = Options::default();
        let signer = crate::server::sign::tests::key();
        let sealing = Sealing {
            ek_dir: eks.clone(),
            pcr: None,
            signer: &signer,
        };
        let outputs = || {
            let mut v: Vec<PathBuf> = ["by-host", "by-mac"]
                .iter()
                .flat_map(|s| std::fs::read_dir(www.join(s)).unwrap())
                .map(|e| e.unwrap().path())
                .collect();
            v.sort();
            assert_eq!(v.len(), 8);
            v
        };
        let all_sealed = || {
            let trusted =
                minisign_verify::PublicKey::decode(crate::server::sign::tests::PUBLIC).unwrap();
            for p in outputs() {
                let mut bytes = std::fs::read(&p).unwrap();
                if p.extension().unwrap() == "cpio" {
                    // The initrd form of the same sealed envelope (rendering is deterministic).
                    let json = std::fs::read(p.with_extension("json")).unwrap();
                    assert_eq!(bytes, render(&json, Kind::Cpio).unwrap().to_vec());
                    bytes = json;
                }
                let env = crate::tpm::envelope::parse(&bytes)
                    .unwrap_or_else(|e| panic!("{} is not sealed: {e}", p.display()));
                assert_eq!(
                    crate::tpm::envelope::check_signature(&env, std::slice::from_ref(&trusted))
                        .unwrap(),
                    crate::tpm::envelope::Signer::Trusted(signer.key_id())
                );
                assert_eq!(
                    std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
                    0o644,
                    "{}",
                    p.display()
                );
            }
        };

        // Sealed, then plain (the operator forgot --seal-to once), then sealed again.
        build_all(&nodes_dir, &www, &opts, None, Some(&sealing)).unwrap();
        all_sealed();
        let r = build_all(&nodes_dir, &www, &opts, None, None).unwrap();
        assert_eq!(r.written, ["n1", "n2"]);
        assert!(!crate::tpm::envelope::is_sealed(
            &std::fs::read(www.join("by-host/n1.json")).unwrap()
        ));
        let r = build_all(&nodes_dir, &www, &opts, None, Some(&sealing)).unwrap();
        assert_eq!(r.written, ["n1", "n2"]);
        all_sealed();

        // One plain output put back by hand (or by a half-finished plain run): that node again.
        let b = crate::server::bundle::build(&nodes_dir.join("n2"), &opts).unwrap();
        std::fs::write(
            www.join("by-mac/52:54:00:aa:00:02.cpio"),
            render(&b.json, Kind::Cpio).unwrap(),
        )
        .unwrap();
        let r = build_all(&nodes_dir, &www, &opts, None, Some(&sealing)).unwrap();
        assert_eq!(r.written, ["n2"]);
        all_sealed();

        // Unchanged: nothing sealed again. Another signing key: every node.
        let r = build_all(&nodes_dir, &www, &opts, None, Some(&sealing)).unwrap();
        assert!(r.written.is_empty(), "{r:?}");
        let other = SigningKey::from_text(
            &minisign::KeyPair::generate_unencrypted_keypair()
                .unwrap()
                .sk
                .to_box(None)
                .unwrap()
                .into_string(),
            Path::new("other.key"),
            || unreachable!(),
        );
        // The crate's unencrypted key carries its checksum; either form loads.
        let other = other.unwrap();
        let resigned = Sealing {
            signer: &other,
            ..sealing.clone()
        };
        let r = build_all(&nodes_dir, &www, &opts, None, Some(&resigned)).unwrap();
        assert_eq!(r.written, ["n1", "n2"]);
        let json = std::fs::read(www.join("by-host/n1.json")).unwrap();
        let env = crate::tpm::envelope::parse(&json).unwrap();
        assert_eq!(env.signature.unwrap().key_id, other.key_id());
    }
}
