//! The TPM 2.0 key derivation functions (Part 1 §11.4.10), SHA-256 only: every object rustlive
//! deals with (the TCG default EKs, its sessions) uses SHA-256 as its name algorithm.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

type HmacSha256 = Hmac<Sha256>;

/// The counter loop both KDFs share: blocks `block(1)`, `block(2)`, … concatenated and cut to
/// `bits` (rounded up to bytes).
fn counter_mode(bits: u32, mut block: impl FnMut(u32) -> Option<Vec<u8>>) -> Zeroizing<Vec<u8>> {
    let bytes = bits.div_ceil(8) as usize;
    let mut out = Zeroizing::new(Vec::with_capacity(bytes.saturating_add(32)));
    let mut counter: u32 = 0;
    while out.len() < bytes {
        counter = counter.wrapping_add(1);
        let Some(b) = block(counter) else {
            break;
        };
        out.extend_from_slice(&Zeroizing::new(b));
    }
    out.truncate(bytes);
    out
}

/// KDFa(SHA-256, key, label, contextU, contextV, bits): counter-mode HMAC (SP 800-108). `label`
/// is given without its terminating NUL, which the TPM includes.
pub fn kdfa(
    key: &[u8],
    label: &str,
    context_u: &[u8],
    context_v: &[u8],
    bits: u32,
) -> Zeroizing<Vec<u8>> {
    counter_mode(bits, |counter| {
        // HMAC takes a key of any length; new_from_slice cannot fail for HMAC.
        let mut mac = HmacSha256::new_from_slice(key).ok()?;
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        Some(mac.finalize().into_bytes().to_vec())
    })
}

/// KDFe(SHA-256, Z, label, partyUInfo, partyVInfo, bits): the one-step KDF of SP 800-56A that
/// the TPM uses after ECDH.
pub fn kdfe(
    z: &[u8],
    label: &str,
    party_u: &[u8],
    party_v: &[u8],
    bits: u32,
) -> Zeroizing<Vec<u8>> {
    counter_mode(bits, |counter| {
        let mut h = Sha256::new();
        h.update(counter.to_be_bytes());
        h.update(z);
        h.update(label.as_bytes());
        h.update([0]);
        h.update(party_u);
        h.update(party_v);
        Some(h.finalize().to_vec())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// KDFa is HMAC(key, counter || label || 0 || U || V || bits): checked against an HMAC
    /// computed independently of the loop, and for a length spanning two blocks.
    #[test]
    fn kdfa_matches_its_definition() {
        let key = b"k";
        let got = kdfa(key, "STORAGE", b"u", b"v", 384);
        assert_eq!(got.len(), 48);
        let block = |i: u32| {
            let mut m = HmacSha256::new_from_slice(key).unwrap();
            let mut msg = i.to_be_bytes().to_vec();
            msg.extend_from_slice(b"STORAGE\0uv");
            msg.extend_from_slice(&384u32.to_be_bytes());
            m.update(&msg);
            m.finalize().into_bytes().to_vec()
        };
        let mut want = block(1);
        want.extend_from_slice(&block(2)[..16]);
        assert_eq!(hex(&got), hex(&want));
        // A 128-bit request is not the prefix of a 256-bit one: the length is in the input.
        assert_ne!(
            kdfa(key, "CFB", b"", b"", 128)[..],
            kdfa(key, "CFB", b"", b"", 256)[..16]
        );
    }

    #[test]
    fn kdfe_matches_its_definition() {
        let got = kdfe(b"zz", "SECRET", b"U", b"V", 256);
        let mut h = Sha256::new();
        h.update(b"\x00\x00\x00\x01zzSECRET\0UV");
        assert_eq!(hex(&got), hex(&h.finalize()));
    }
}
