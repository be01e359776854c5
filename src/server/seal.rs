//! `rustlive tpm ek` (enrollment, on the node) and `rustlive bundle seal` (on the boot server,
//! no TPM needed).

use crate::secrets::bundle::MAX_BUNDLE_SIZE;
use crate::support::exit::Exit;
use crate::support::paths::Paths;
use crate::tpm::client::{Tpm, TpmError};
use crate::tpm::ek::{self, hex, EkError, EkPublic};
use crate::tpm::envelope::{self, EnvelopeError};
use crate::tpm::open_tpm;
use base64::Engine as _;
use serde::Serialize;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("{0}")]
    NoTpm(#[source] io::Error),
    #[error("cannot read the TPM's endorsement key")]
    Tpm(#[source] TpmError),
    #[error("cannot read {}", .0.display())]
    Read(PathBuf, #[source] io::Error),
    #[error("cannot write {}", .0.display())]
    Write(PathBuf, #[source] io::Error),
    #[error("{} is not an EK public key or certificate", .0.display())]
    Ek(PathBuf, #[source] EkError),
    #[error("{} is not a plain secrets bundle: {}", .0.display(), .1)]
    Input(PathBuf, String),
    #[error("cannot seal the bundle")]
    Seal(#[source] EnvelopeError),
    #[error("--pcr: {0}")]
    Pcr(String),
}

impl CommandError {
    pub fn exit_code(&self) -> Exit {
        match self {
            CommandError::Ek(..)
            | CommandError::Input(..)
            | CommandError::Read(..)
            | CommandError::Pcr(..) => Exit::Usage,
            _ => Exit::Secrets,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct EkReport {
    pub uuid: Option<String>,
    /// Interface name and MAC of every non-loopback interface.
    pub macs: Vec<(String, String)>,
    pub keys: Vec<EkEntry>,
    /// SHA-256 PCRs 0-7 now, for `bundle seal --pcr` (e.g. 7, the Secure Boot state).
    pub pcrs: Vec<(u8, String)>,
}

#[derive(Debug, Serialize)]
pub struct EkEntry {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The persistent handle, when the EK was provisioned there; else it was created as a
    /// primary (the same key every time: it derives from the endorsement seed).
    pub handle: Option<String>,
    pub name: String,
    pub public_pem: String,
    pub certificate_pem: Option<String>,
}

/// Reads both default EKs (those the TPM supports) and their certificates.
pub fn ek_report(tpm: &mut Tpm, paths: &Paths) -> Result<EkReport, CommandError> {
    let mut keys = Vec::new();
    let mut last_err = None;
    for (rsa, nv) in [(true, ek::EK_CERT_NV_RSA), (false, ek::EK_CERT_NV_ECC)] {
        let loaded = match tpm.ek(rsa) {
            Ok(l) => l,
            Err(e) => {
                // A TPM without ECC (or without RSA) still has the other.
                log::warn!(
                    "tpm: no {} EK: {}",
                    if rsa { "RSA" } else { "ECC" },
                    crate::support::exit::report(&e)
                );
                last_err = Some(e);
                continue;
            }
        };
        tpm.release(&loaded);
        let cert = match tpm.nv_read_all(nv) {
            Ok(c) => c,
            Err(e) => {
                log::warn!("tpm: cannot read the EK certificate at 0x{nv:08x}: {e}");
                None
            }
        };
        keys.push(EkEntry {
            kind: loaded.public.kind(),
            handle: (!loaded.transient).then(|| format!("0x{:08x}", loaded.handle)),
            name: hex(&loaded.public.name()),
            public_pem: loaded.public.to_pem(),
            certificate_pem: cert.map(|der| pem("CERTIFICATE", &der)),
        });
    }
    if keys.is_empty() {
        if let Some(e) = last_err {
            return Err(CommandError::Tpm(e));
        }
    }
    let pcrs = match tpm.pcr_read(&[0, 1, 2, 3, 4, 5, 6, 7]) {
        Ok(v) => v.into_iter().map(|(n, d)| (n, hex(&d))).collect(),
        Err(e) => {
            log::warn!("tpm: cannot read the PCRs: {e}");
            Vec::new()
        }
    };
    let facts = crate::secrets::NodeFacts::gather(paths, None);
    Ok(EkReport {
        uuid: facts.uuid(),
        macs: macs(paths),
        keys,
        pcrs,
    })
}

fn pem(label: &str, der: &[u8]) -> String {
    let b = base64::engine::general_purpose::STANDARD.encode(der);
    let mut s = format!("-----BEGIN {label}-----\n");
    for chunk in b.as_bytes().chunks(64) {
        s.push_str(&String::from_utf8_lossy(chunk));
        s.push('\n');
    }
    s.push_str(&format!("-----END {label}-----\n"));
    s
}

fn macs(paths: &Paths) -> Vec<(String, String)> {
    let Ok(dir) = std::fs::read_dir(paths.join("sys/class/net")) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let mac = std::fs::read_to_string(e.path().join("address")).ok()?;
            let mac = crate::secrets::NodeFacts {
                mac: Some(mac.trim().to_string()),
                ..Default::default()
            }
            .mac()?;
            (mac != "00:00:00:00:00:00").then_some((name, mac))
        })
        .collect();
    out.sort();
    out
}

/// `rustlive tpm ek [--json]`.
pub fn ek_command(json: bool, paths: &Paths) -> Result<(), CommandError> {
    // Creating an RSA EK as a primary takes a slow TPM tens of seconds; a TPM that has not
    // answered in two minutes is not going to.
    let deadline =
        crate::support::deadline::Deadline::after(Some(std::time::Duration::from_secs(120)));
    let mut tpm = open_tpm(paths, deadline).map_err(CommandError::NoTpm)?;
    let report = ek_report(&mut tpm, paths)?;
    let mut out = io::stdout().lock();
    let text = if json {
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    } else {
        let mut s = String::new();
        s.push_str(&format!(
            "uuid: {}\n",
            report.uuid.as_deref().unwrap_or("(unknown)")
        ));
        for (ifname, mac) in &report.macs {
            s.push_str(&format!("mac: {ifname} {mac}\n"));
        }
        for k in &report.keys {
            s.push_str(&format!(
                "ek: {} {} name {}\n{}",
                k.kind,
                k.handle.as_deref().unwrap_or("(primary)"),
                k.name,
                k.public_pem
            ));
            if let Some(c) = &k.certificate_pem {
                s.push_str(c);
            }
        }
        for (n, v) in &report.pcrs {
            s.push_str(&format!("pcr: sha256:{n} {v}\n"));
        }
        s
    };
    out.write_all(text.as_bytes())
        .map_err(|e| CommandError::Write("stdout".into(), e))
}

/// The EK of `--ek`: a PEM public key, or an EK certificate (PEM or DER).
pub fn load_ek(path: &Path) -> Result<EkPublic, CommandError> {
    let bytes = std::fs::read(path).map_err(|e| CommandError::Read(path.into(), e))?;
    let text = String::from_utf8_lossy(&bytes);
    let r = if text.contains("-----BEGIN PUBLIC KEY-----") {
        EkPublic::from_pem(&text)
    } else {
        crate::tpm::ek_from_certificate(&bytes)
    };
    r.map_err(|e| CommandError::Ek(path.into(), e))
}

/// `rustlive bundle seal --ek EK IN -o OUT`: OUT is written whole (a temporary file renamed)
/// and readable by all: it is made to be served to anyone.
pub fn seal_command(
    ek_path: &Path,
    input: &Path,
    output: &Path,
    pcr: Option<&str>,
) -> Result<(), CommandError> {
    let pcr = pcr
        .map(crate::tpm::pcr::PcrPolicy::parse)
        .transpose()
        .map_err(CommandError::Pcr)?;
    let ek = load_ek(ek_path)?;
    let mut f = std::fs::File::open(input).map_err(|e| CommandError::Read(input.into(), e))?;
    let mut plain = Zeroizing::new(Vec::new());
    Read::by_ref(&mut f)
        .take((MAX_BUNDLE_SIZE as u64).saturating_add(1))
        .read_to_end(&mut plain)
        .map_err(|e| CommandError::Read(input.into(), e))?;
    check_plain(&plain).map_err(|why| CommandError::Input(input.into(), why))?;
    let sealed = envelope::seal_with(&plain, &ek, pcr.as_ref()).map_err(CommandError::Seal)?;
    let tmp = output.with_extension("sealing");
    std::fs::write(&tmp, &sealed)
        .and_then(|()| std::fs::rename(&tmp, output))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CommandError::Write(output.into(), e)
        })?;
    log::info!(
        "sealed {} to the {} EK {} into {}",
        input.display(),
        ek.kind(),
        hex(&ek.name()),
        output.display()
    );
    Ok(())
}

/// A plain bundle: at most 1 MiB of JSON with `"version": 1`, not already sealed. The full
/// validation (owners against the node's new root) happens on the node.
fn check_plain(plain: &[u8]) -> Result<(), String> {
    if plain.len() > MAX_BUNDLE_SIZE {
        return Err(format!("over the {} MiB limit", MAX_BUNDLE_SIZE >> 20));
    }
    if envelope::is_sealed(plain) {
        return Err("it is already sealed".into());
    }
    #[derive(serde::Deserialize)]
    struct Head {
        version: Option<u32>,
    }
    match serde_json::from_slice::<Head>(plain) {
        Ok(Head { version: Some(1) }) => Ok(()),
        Ok(_) => Err("\"version\" must be 1".into()),
        Err(e) => Err(format!(
            "not JSON (line {}, column {})",
            e.line(),
            e.column()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_command_reads_pem_or_certificate_and_refuses_bad_input() {
        let t = tempfile::tempdir().unwrap();
        let ek = t.path().join("ek.pem");
        std::fs::write(&ek, include_str!("../tpm/testdata/ek-rsa.pem")).unwrap();
        let input = t.path().join("b.json");
        std::fs::write(&input, br#"{"version": 1, "files": []}"#).unwrap();
        let out = t.path().join("b.sealed");
        seal_command(&ek, &input, &out, None).unwrap();
        let sealed = std::fs::read(&out).unwrap();
        assert!(envelope::is_sealed(&sealed));
        let p = envelope::parse(&sealed).unwrap();
        assert_eq!(
            hex(&p.ek_name),
            include_str!("../tpm/testdata/ek-rsa.name").trim()
        );

        // Sealing a sealed bundle, or something that is not a bundle, is refused.
        let again = seal_command(&ek, &out, &t.path().join("x"), None);
        assert!(matches!(again, Err(CommandError::Input(..))));
        std::fs::write(&input, b"{\"version\": 2}").unwrap();
        assert!(matches!(
            seal_command(&ek, &input, &out, None),
            Err(CommandError::Input(..))
        ));
        std::fs::write(&ek, b"garbage").unwrap();
        let e = seal_command(&ek, &input, &out, None).unwrap_err();
        assert!(matches!(e, CommandError::Ek(..)));
        assert_eq!(e.exit_code(), Exit::Usage);
    }

    #[test]
    fn pem_wraps_at_64() {
        let p = pem("CERTIFICATE", &[0u8; 100]);
        assert!(p.lines().all(|l| l.len() <= 64));
        assert!(p.starts_with("-----BEGIN CERTIFICATE-----\n"));
    }
}
