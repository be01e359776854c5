//! An optional PCR policy on a sealed bundle (`bundle seal --pcr 7=HEX,…`): the activation
//! object's authPolicy becomes PolicyPCR(SHA-256 bank, the expected values) then
//! PolicyCommandCode(ActivateCredential), computed here in software. A node whose PCRs differ
//! (booted into something else) cannot satisfy it, so its TPM refuses to open the bundle.

use super::wire::Writer;
use sha2::{Digest, Sha256};

const CC_POLICY_PCR: u32 = 0x17F;
const CC_POLICY_COMMAND_CODE: u32 = 0x16C;
pub const CC_ACTIVATE_CREDENTIAL: u32 = 0x147;
/// PCRs 0-23, the SHA-256 bank every TPM 2.0 PC client has.
pub const PCR_COUNT: u8 = 24;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrPolicy {
    /// Index and expected SHA-256 value, ascending by index, no duplicates.
    pub pcrs: Vec<(u8, [u8; 32])>,
}

impl PcrPolicy {
    /// `N=HEX[,N=HEX…]`, N in 0..=23, HEX 64 hex digits.
    pub fn parse(spec: &str) -> Result<PcrPolicy, String> {
        let mut pcrs = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (n, v) = item
                .split_once('=')
                .ok_or_else(|| format!("{item:?}: expected N=HEX (the PCR's SHA-256 value)"))?;
            let n: u8 = n
                .trim()
                .parse()
                .ok()
                .filter(|n| *n < PCR_COUNT)
                .ok_or_else(|| format!("{n:?}: a PCR index is 0 to 23"))?;
            let v = v.trim();
            let bytes = (v.len() == 64)
                .then(|| crate::support::values::decode_hex(v))
                .flatten();
            let value: [u8; 32] = bytes
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| format!("PCR {n}: the value must be 64 hex digits"))?;
            if pcrs.iter().any(|(m, _)| *m == n) {
                return Err(format!("PCR {n} is given twice"));
            }
            pcrs.push((n, value));
        }
        if pcrs.is_empty() {
            return Err("no PCR given".into());
        }
        pcrs.sort_by_key(|(n, _)| *n);
        Ok(PcrPolicy { pcrs })
    }

    /// The canonical `N=HEX,…` form stored in the envelope.
    pub fn to_spec(&self) -> String {
        self.pcrs
            .iter()
            .map(|(n, v)| format!("{n}={}", super::ek::hex(v)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// TPML_PCR_SELECTION: one SHA-256 bank, a 3-byte bitmap.
    pub fn selection(&self) -> Vec<u8> {
        selection(self.pcrs.iter().map(|(n, _)| *n))
    }

    /// SHA-256 of the expected values, in index order (PolicyPCR's pcrDigest).
    pub fn pcr_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (_, v) in &self.pcrs {
            h.update(v);
        }
        h.finalize().into()
    }

    /// The policy digest: PolicyPCR, then PolicyCommandCode(ActivateCredential).
    pub fn policy_digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update([0u8; 32]);
        h.update(CC_POLICY_PCR.to_be_bytes());
        h.update(self.selection());
        h.update(self.pcr_digest());
        let after_pcr: [u8; 32] = h.finalize().into();
        let mut h = Sha256::new();
        h.update(after_pcr);
        h.update(CC_POLICY_COMMAND_CODE.to_be_bytes());
        h.update(CC_ACTIVATE_CREDENTIAL.to_be_bytes());
        h.finalize().into()
    }
}

pub fn selection(indices: impl Iterator<Item = u8>) -> Vec<u8> {
    let mut map = [0u8; 3];
    for n in indices {
        if let Some(b) = map.get_mut(usize::from(n / 8)) {
            *b |= 1 << (n % 8);
        }
    }
    let mut w = Writer::new();
    w.u32(1).u16(super::ek::ALG_SHA256).u8(3).bytes(&map);
    w.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Known answer from tpm2-tools 5.4 on swtpm: a trial session with
    /// `tpm2_policypcr -l sha256:0,7 -f pcrs.bin` (PCR 0 = bytes 0..32, PCR 7 = bytes 100..132)
    /// then `tpm2_policycommandcode TPM2_CC_ActivateCredential`.
    #[test]
    fn policy_digest_matches_tpm2_tools() {
        let v0: String = (0u8..32).map(|b| format!("{b:02x}")).collect();
        let v7: String = (100u8..132).map(|b| format!("{b:02x}")).collect();
        let p = PcrPolicy::parse(&format!("7={v7}, 0={v0}")).unwrap();
        assert_eq!(p.pcrs[0].0, 0, "sorted by index");
        assert_eq!(
            super::super::ek::hex(&p.policy_digest()),
            "510d358ae2557254d4031c9fad90c46db82d6e53fa4f35998dd28bce2c32dfb5"
        );
        assert_eq!(PcrPolicy::parse(&p.to_spec()).unwrap(), p);
    }

    #[test]
    fn bad_specs_are_refused() {
        let v = "00".repeat(32);
        for bad in [
            String::new(),
            "7".into(),
            format!("24={v}"),
            format!("7={}", &v[2..]),
            format!("7={v},7={v}"),
            format!("x={v}"),
            "7=zz".into(),
        ] {
            assert!(PcrPolicy::parse(&bad).is_err(), "{bad}");
        }
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC{0,200}") {
            let _ = PcrPolicy::parse(&s);
        }
    }
}
