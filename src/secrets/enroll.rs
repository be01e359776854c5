//! `rustlive tpm ek`: enrollment, on the node. It prints what the boot server needs to seal
//! this node's secrets to its TPM (`rustlive bundle seal`): the endorsement keys (and their
//! certificates), the node's identity (DMI uuid, MACs) and PCRs 0-7 for a PCR policy.

use crate::secrets::NodeFacts;
use crate::support::exit::Exit;
use crate::support::paths::Paths;
use crate::tpm::client::{Tpm, TpmError};
use crate::tpm::ek::{self, hex};
use crate::tpm::open_tpm;
use base64::Engine as _;
use serde::Serialize;
use std::io::{self, Write};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{0}")]
    NoTpm(#[source] io::Error),
    #[error("cannot read the TPM's endorsement key")]
    Tpm(#[source] TpmError),
    #[error("cannot write stdout")]
    Write(#[source] io::Error),
}

impl EnrollError {
    pub fn exit_code(&self) -> Exit {
        Exit::Secrets
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
pub fn ek_report(tpm: &mut Tpm, paths: &Paths) -> Result<EkReport, EnrollError> {
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
            return Err(EnrollError::Tpm(e));
        }
    }
    let pcrs = match tpm.pcr_read(&[0, 1, 2, 3, 4, 5, 6, 7]) {
        Ok(v) => v.into_iter().map(|(n, d)| (n, hex(&d))).collect(),
        Err(e) => {
            log::warn!("tpm: cannot read the PCRs: {e}");
            Vec::new()
        }
    };
    let facts = NodeFacts::gather(paths, None);
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
            let mac = NodeFacts {
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

/// The text `tpm ek` prints: the inventory lines, then each EK under its `ek:` line. Saved as is,
/// it is the EK file `bundle seal --ek` and `build-all --seal-to` read
/// ([`crate::tpm::ek_file`], which parses exactly this).
pub fn render_text(report: &EkReport) -> String {
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
}

/// `rustlive tpm ek [--json]`.
pub fn ek_command(json: bool, paths: &Paths) -> Result<(), EnrollError> {
    // Creating an RSA EK as a primary takes a slow TPM tens of seconds; a TPM that has not
    // answered in two minutes is not going to.
    let deadline =
        crate::support::deadline::Deadline::after(Some(std::time::Duration::from_secs(120)));
    let mut tpm = open_tpm(paths, deadline).map_err(EnrollError::NoTpm)?;
    let report = ek_report(&mut tpm, paths)?;
    let mut out = io::stdout().lock();
    let text = if json {
        serde_json::to_string_pretty(&report).unwrap_or_default() + "\n"
    } else {
        render_text(&report)
    };
    out.write_all(text.as_bytes()).map_err(EnrollError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `tpm ek` prints, text or JSON, is what the boot server's EK file reader takes.
    #[test]
    fn printed_report_is_an_ek_file() {
        use crate::tpm::ek::EkPublic;
        let rsa = EkPublic::from_pem(include_str!("../tpm/testdata/ek-rsa.pem")).unwrap();
        let ecc = crate::tpm::ek_file::tests::ecc();
        let entry = |k: &EkPublic, handle: Option<&str>| EkEntry {
            kind: k.kind(),
            handle: handle.map(str::to_string),
            name: hex(&k.name()),
            public_pem: k.to_pem(),
            certificate_pem: None,
        };
        let report = EkReport {
            uuid: None,
            macs: vec![("eth0".into(), "52:54:00:12:34:56".into())],
            keys: vec![entry(&rsa, Some("0x81010001")), entry(&ecc, None)],
            pcrs: vec![(7, "00".repeat(32))],
        };
        let text = render_text(&report);
        let json = serde_json::to_string_pretty(&report).unwrap();
        for file in [text.as_bytes(), json.as_bytes()] {
            let all = crate::tpm::ek_file::candidates(file).unwrap();
            assert_eq!(all.len(), 2);
            // The persistent RSA key: the node loads it without deriving a primary.
            assert_eq!(crate::tpm::ek_file::parse(file).unwrap(), rsa);
        }
    }

    #[test]
    fn pem_wraps_at_64() {
        let p = pem("CERTIFICATE", &[0u8; 100]);
        assert!(p.lines().all(|l| l.len() <= 64));
        assert!(p.starts_with("-----BEGIN CERTIFICATE-----\n"));
    }
}
