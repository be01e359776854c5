//! The TPM commands rustlive sends, marshalled by hand (TPM 2.0 Part 3), and the node side of
//! sealing: find the EK, then TPM2_ActivateCredential over a salted policy session with
//! response parameter encryption, so the recovered key is AES-CFB encrypted on the bus.

use super::credential::{cfb_decrypt, secret_for_ek, Credential};
use super::ek::{self, EkPublic};
use super::kdf::kdfa;
use super::pcr::PcrPolicy;
use super::transport::Transport;
use super::wire::{Reader, Short, Writer};
use crate::sys::random::OsRandom;
use hmac::{Hmac, Mac};
use rand_core::RngCore;
use sha2::{Digest, Sha256};
use std::io;
use zeroize::Zeroizing;

const ST_NO_SESSIONS: u16 = 0x8001;
const ST_SESSIONS: u16 = 0x8002;
const RH_ENDORSEMENT: u32 = 0x4000_000B;
const RH_NULL: u32 = 0x4000_0007;
const RS_PW: u32 = 0x4000_0009;
const SE_POLICY: u8 = 0x01;
/// Session attributes: continueSession, and encrypt (the TPM encrypts the first response
/// parameter).
const ATTR_CONTINUE: u8 = 0x01;
const ATTR_ENCRYPT: u8 = 0x40;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
enum Cc {
    Startup = 0x144,
    CreatePrimary = 0x131,
    NvRead = 0x14E,
    ActivateCredential = 0x147,
    PolicySecret = 0x151,
    FlushContext = 0x165,
    LoadExternal = 0x167,
    NvReadPublic = 0x169,
    PolicyCommandCode = 0x16C,
    PcrRead = 0x17E,
    PolicyPcr = 0x17F,
    ReadPublic = 0x173,
    StartAuthSession = 0x176,
}

#[derive(Debug, thiserror::Error)]
pub enum TpmError {
    #[error("cannot talk to the TPM ({what})")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the TPM answered {command:?} with {}", describe_rc(*.rc))]
    Rc { command: &'static str, rc: u32 },
    #[error("the TPM's answer to {0} is malformed")]
    Malformed(&'static str),
    #[error("the TPM has no TCG default-template endorsement key ({0})")]
    NoEk(String),
    #[error("the TPM refused the credential: the bundle was sealed to another TPM, or tampered with ({})", describe_rc(*.0))]
    Refused(u32),
    #[error("the TPM's encrypted answer failed its integrity check")]
    ResponseHmac,
    #[error("cannot encrypt the session salt to the EK")]
    Salt,
    #[error(
        "the node's PCRs do not have the values the bundle was sealed to (PCR policy mismatch)"
    )]
    PcrMismatch,
}

/// What a response code means, in words an operator can act on.
pub fn describe_rc(rc: u32) -> String {
    let base = if rc & 0x80 != 0 {
        0x80 | (rc & 0x3F)
    } else {
        rc & 0xFFF
    };
    let what = match base {
        0x921 => "dictionary-attack lockout: the TPM refuses authorizations until its lockout time passes or it is reset",
        0x922 | 0x908 | 0x90A | 0x920 => "the TPM is busy (retry, yielded or self-testing)",
        0x100 => "the TPM is not started (TPM2_Startup was not run)",
        0x101 => "the TPM failed its self test",
        0x8B => "no such handle",
        0x9F => "integrity check failed",
        0x84 => "value out of range",
        0x95 => "wrong size",
        0x9D => "a policy check failed",
        0x98E => "authorization failed",
        0x902 => "out of object memory",
        0x903 => "out of session memory",
        _ => "an error",
    };
    format!("{what} (TPM_RC 0x{rc:03x})")
}

/// Response codes for "come back later", worth one retry after a short pause.
fn is_busy(rc: u32) -> bool {
    matches!(rc & 0xFFF, 0x922 | 0x908 | 0x90A)
}

/// A parsed successful response.
struct Response {
    handles: Vec<u32>,
    params: Vec<u8>,
    /// The response session area (ST_SESSIONS only).
    sessions: Vec<u8>,
}

/// A session's authorization as sent in a command.
struct Auth {
    handle: u32,
    nonce: Vec<u8>,
    attrs: u8,
    hmac: Vec<u8>,
}

impl Auth {
    fn password() -> Auth {
        Auth {
            handle: RS_PW,
            nonce: Vec::new(),
            attrs: ATTR_CONTINUE,
            hmac: Vec::new(),
        }
    }
}

/// A loaded EK: its handle, its public key, and whether rustlive created it (and must flush it).
#[derive(Debug, Clone)]
pub struct LoadedEk {
    pub handle: u32,
    pub public: EkPublic,
    pub transient: bool,
}

pub struct Tpm {
    t: Box<dyn Transport>,
}

/// The object credentials are bound to: a fixed sealed-data object, the same on every node,
/// loaded into the NULL hierarchy with TPM2_LoadExternal. Its name is what the boot server puts
/// into TPM2_MakeCredential. (The EK itself cannot be the activation object: its ADMIN role
/// needs a policy with TPM2_PolicyCommandCode, which the default EK policy does not have.)
pub struct ActivationObject;

impl ActivationObject {
    const SEED: [u8; 32] = *b"rustlive activation object seed!";
    const DATA: &'static [u8] = b"rustlive credential activation v1";

    /// TPMT_PUBLIC: KEYEDHASH, SHA-256, userWithAuth | noDA, no policy, NULL scheme,
    /// unique = SHA-256(seed || data). With a PCR policy: adminWithPolicy, and the policy as
    /// authPolicy, so ActivateCredential (ADMIN role) needs it satisfied.
    pub fn public_area_with(pcr: Option<&PcrPolicy>) -> Vec<u8> {
        let mut h = Sha256::new();
        h.update(Self::SEED);
        h.update(Self::DATA);
        let mut w = Writer::new();
        let (attrs, policy) = match pcr {
            Some(p) => (0x0000_04C0, p.policy_digest().to_vec()),
            None => (0x0000_0440, Vec::new()),
        };
        w.u16(ek::ALG_KEYEDHASH)
            .u16(ek::ALG_SHA256)
            .u32(attrs)
            .tpm2b(&policy)
            .u16(ek::ALG_NULL)
            .tpm2b(&h.finalize());
        w.0
    }

    /// TPMT_SENSITIVE: no authValue.
    fn sensitive() -> Vec<u8> {
        let mut w = Writer::new();
        w.u16(ek::ALG_KEYEDHASH)
            .tpm2b(&[])
            .tpm2b(&Self::SEED)
            .tpm2b(Self::DATA);
        w.0
    }

    pub fn public_area() -> Vec<u8> {
        Self::public_area_with(None)
    }

    pub fn name() -> Vec<u8> {
        ek::object_name(&Self::public_area())
    }

    pub fn name_with(pcr: Option<&PcrPolicy>) -> Vec<u8> {
        ek::object_name(&Self::public_area_with(pcr))
    }
}

impl Tpm {
    pub fn new(t: Box<dyn Transport>) -> Tpm {
        Tpm { t }
    }

    pub fn describe(&self) -> String {
        self.t.describe()
    }

    fn run(
        &mut self,
        cc: Cc,
        handles: &[u32],
        auths: &[Auth],
        params: &[u8],
        resp_handles: usize,
    ) -> Result<Response, TpmError> {
        let mut body = Writer::new();
        for h in handles {
            body.u32(*h);
        }
        if !auths.is_empty() {
            let mut area = Writer::new();
            for a in auths {
                area.u32(a.handle)
                    .tpm2b(&a.nonce)
                    .u8(a.attrs)
                    .tpm2b(&a.hmac);
            }
            body.u32(area.0.len() as u32).bytes(&area.0);
        }
        body.bytes(params);
        let tag = if auths.is_empty() {
            ST_NO_SESSIONS
        } else {
            ST_SESSIONS
        };
        let mut cmd = Writer::new();
        cmd.u16(tag)
            .u32(u32::try_from(body.0.len().saturating_add(10)).unwrap_or(u32::MAX))
            .u32(cc as u32)
            .bytes(&body.0);
        let name = command_name(cc);
        let mut tries: u32 = 0;
        let resp = loop {
            let resp = self.t.transact(&cmd.0).map_err(|source| TpmError::Io {
                what: self.t.describe(),
                source,
            })?;
            let rc = response_code(&resp).ok_or(TpmError::Malformed(name))?;
            tries = tries.saturating_add(1);
            if is_busy(rc) && tries < 3 {
                std::thread::sleep(std::time::Duration::from_millis(200));
                continue;
            }
            if rc != 0 {
                return Err(TpmError::Rc { command: name, rc });
            }
            break resp;
        };
        parse_response(&resp, resp_handles).map_err(|_| TpmError::Malformed(name))
    }

    /// TPM2_Startup(CLEAR); a TPM already started (by firmware, always on real hardware)
    /// answers TPM_RC_INITIALIZE, which is fine.
    pub fn startup(&mut self) -> Result<(), TpmError> {
        match self.run(Cc::Startup, &[], &[], &0u16.to_be_bytes(), 0) {
            Ok(_) => Ok(()),
            Err(TpmError::Rc { rc: 0x100, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// TPM2_ReadPublic: the TPMT_PUBLIC, or `None` when nothing is at `handle`.
    pub fn read_public(&mut self, handle: u32) -> Result<Option<Vec<u8>>, TpmError> {
        match self.run(Cc::ReadPublic, &[handle], &[], &[], 0) {
            Ok(r) => {
                let mut rd = Reader::new(&r.params);
                let area = rd.tpm2b().map_err(|_| TpmError::Malformed("ReadPublic"))?;
                Ok(Some(area.to_vec()))
            }
            Err(TpmError::Rc { rc, .. }) if rc & 0xBF == 0x8B => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The TCG default EK (RSA when `rsa`, else ECC P-256): the persistent one when it has the
    /// default template, else created with TPM2_CreatePrimary under the endorsement hierarchy.
    pub fn ek(&mut self, rsa: bool) -> Result<LoadedEk, TpmError> {
        let handle = if rsa {
            ek::EK_HANDLE_RSA
        } else {
            ek::EK_HANDLE_ECC
        };
        if let Some(area) = self.read_public(handle)? {
            if let Ok(public) = EkPublic::from_public_area(&area) {
                return Ok(LoadedEk {
                    handle,
                    public,
                    transient: false,
                });
            }
            log::debug!("tpm: the key at 0x{handle:08x} is not the default EK; creating one");
        }
        let mut params = Writer::new();
        params
            .u16(4)
            .u16(0)
            .u16(0) // inSensitive: no userAuth, no data
            .tpm2b(&EkPublic::template(rsa, None))
            .tpm2b(&[]) // outsideInfo
            .u32(0); // creationPCR: none
        let r = self.run(
            Cc::CreatePrimary,
            &[RH_ENDORSEMENT],
            &[Auth::password()],
            &params.0,
            1,
        )?;
        let h = *r
            .handles
            .first()
            .ok_or(TpmError::Malformed("CreatePrimary"))?;
        let mut rd = Reader::new(&r.params);
        let public = rd
            .tpm2b()
            .map_err(|_| TpmError::Malformed("CreatePrimary"))
            .and_then(|a| EkPublic::from_public_area(a).map_err(|e| TpmError::NoEk(e.to_string())));
        match public {
            Ok(public) => Ok(LoadedEk {
                handle: h,
                public,
                transient: true,
            }),
            Err(e) => {
                self.flush(h);
                Err(e)
            }
        }
    }

    /// Flushes a transient object or session; failures only matter to the TPM's memory.
    pub fn flush(&mut self, handle: u32) {
        if let Err(e) = self.run(Cc::FlushContext, &[], &[], &handle.to_be_bytes(), 0) {
            log::debug!("tpm: flushing 0x{handle:08x}: {e}");
        }
    }

    /// Releases an EK rustlive created.
    pub fn release(&mut self, ek: &LoadedEk) {
        if ek.transient {
            self.flush(ek.handle);
        }
    }

    /// The contents of NV index `index` (an EK certificate), `None` when it is not defined.
    pub fn nv_read_all(&mut self, index: u32) -> Result<Option<Vec<u8>>, TpmError> {
        let r = match self.run(Cc::NvReadPublic, &[index], &[], &[], 0) {
            Ok(r) => r,
            Err(TpmError::Rc { rc, .. }) if rc & 0xBF == 0x8B => return Ok(None),
            Err(e) => return Err(e),
        };
        let bad = |_: Short| TpmError::Malformed("NV_ReadPublic");
        let mut rd = Reader::new(&r.params);
        let public = rd.tpm2b().map_err(bad)?;
        // TPMS_NV_PUBLIC: index, nameAlg, attributes, authPolicy, dataSize.
        let mut p = Reader::new(public);
        p.take(4 + 2 + 4).map_err(bad)?;
        p.tpm2b().map_err(bad)?;
        let size = p.u16().map_err(bad)?;
        let mut data = Vec::with_capacity(usize::from(size));
        let mut offset: u16 = 0;
        while offset < size {
            let chunk = size.saturating_sub(offset).min(512);
            let mut params = Writer::new();
            params.u16(chunk).u16(offset);
            let r = self.run(
                Cc::NvRead,
                &[index, index],
                &[Auth::password()],
                &params.0,
                0,
            )?;
            let got = Reader::new(&r.params)
                .tpm2b()
                .map_err(|_| TpmError::Malformed("NV_Read"))?;
            if got.is_empty() {
                return Err(TpmError::Malformed("NV_Read"));
            }
            data.extend_from_slice(got);
            offset = offset.saturating_add(got.len() as u16);
        }
        Ok(Some(data))
    }

    /// TPM2_ActivateCredential with `ek`, returning the credential (the bundle key). The
    /// activation object is loaded for the call and flushed after it.
    pub fn activate(
        &mut self,
        ek: &LoadedEk,
        cred: &Credential,
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        self.activate_pcr(ek, cred, None)
    }

    /// [`Tpm::activate`] for a bundle sealed with a PCR policy (`pcr`), or without (`None`).
    pub fn activate_pcr(
        &mut self,
        ek: &LoadedEk,
        cred: &Credential,
        pcr: Option<&PcrPolicy>,
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let mut params = Writer::new();
        params
            .tpm2b(&ActivationObject::sensitive())
            .tpm2b(&ActivationObject::public_area_with(pcr))
            .u32(RH_NULL);
        let r = self.run(Cc::LoadExternal, &[], &[], &params.0, 1)?;
        let obj = *r
            .handles
            .first()
            .ok_or(TpmError::Malformed("LoadExternal"))?;
        let result = match pcr {
            None => self.activate_with(ek, obj, cred, None, None),
            Some(p) => match self.pcr_session(p) {
                Ok(s) => {
                    let r = self.activate_with(ek, obj, cred, Some(&s), pcr);
                    if r.is_err() {
                        self.flush(s.handle);
                    }
                    r
                }
                Err(e) => Err(e),
            },
        };
        self.flush(obj);
        result
    }

    fn activate_with(
        &mut self,
        ek: &LoadedEk,
        obj: u32,
        cred: &Credential,
        pcr_session: Option<&Session>,
        pcr: Option<&PcrPolicy>,
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let session = self.policy_session(ek)?;
        let result = self.activate_in(ek, obj, cred, &session, pcr_session, pcr);
        if result.is_err() {
            // A failed command leaves the session loaded.
            self.flush(session.handle);
        }
        result
    }

    /// TPM2_StartAuthSession with `tpm_key` (the salt's decryption key, or TPM_RH_NULL) and no
    /// bind; `params` are the command's parameters. Returns the session handle and the TPM's
    /// nonce from the response.
    fn start_auth_session(
        &mut self,
        tpm_key: u32,
        params: &[u8],
    ) -> Result<(u32, Vec<u8>), TpmError> {
        let r = self.run(Cc::StartAuthSession, &[tpm_key, RH_NULL], &[], params, 1)?;
        let handle = *r
            .handles
            .first()
            .ok_or(TpmError::Malformed("StartAuthSession"))?;
        let nonce_tpm = Reader::new(&r.params)
            .tpm2b()
            .map_err(|_| TpmError::Malformed("StartAuthSession"))?
            .to_vec();
        Ok((handle, nonce_tpm))
    }

    /// An unsalted policy session satisfying the PCR policy: PolicyPCR with the expected
    /// values (the TPM compares them with its own), then PolicyCommandCode.
    fn pcr_session(&mut self, p: &PcrPolicy) -> Result<Session, TpmError> {
        let mut nonce_caller = vec![0u8; 32];
        OsRandom.fill_bytes(&mut nonce_caller);
        let mut params = Writer::new();
        params
            .tpm2b(&nonce_caller)
            .tpm2b(&[])
            .u8(SE_POLICY)
            .u16(ek::ALG_NULL)
            .u16(ek::ALG_SHA256);
        let (handle, nonce_tpm) = self.start_auth_session(RH_NULL, &params.0)?;
        let mut pp = Writer::new();
        pp.tpm2b(&p.pcr_digest()).bytes(&p.selection());
        let step = self
            .run(Cc::PolicyPcr, &[handle], &[], &pp.0, 0)
            .and_then(|_| {
                let code = super::pcr::CC_ACTIVATE_CREDENTIAL.to_be_bytes();
                self.run(Cc::PolicyCommandCode, &[handle], &[], &code, 0)
            });
        match step {
            Ok(_) => Ok(Session {
                handle,
                key: Zeroizing::new(Vec::new()),
                nonce_tpm,
            }),
            Err(e) => {
                self.flush(handle);
                // PolicyPCR answers TPM_RC_VALUE when the PCRs differ from the digest.
                Err(match e {
                    TpmError::Rc { rc, .. } if rc & 0x80 != 0 && (rc & 0x3F) == 0x04 => {
                        TpmError::PcrMismatch
                    }
                    e => e,
                })
            }
        }
    }

    /// The SHA-256 bank's values of PCRs `indices` (at most 8 per call, as TPMs answer).
    pub fn pcr_read(&mut self, indices: &[u8]) -> Result<Vec<(u8, Vec<u8>)>, TpmError> {
        let mut out = Vec::new();
        for chunk in indices.chunks(8) {
            let sel = super::pcr::selection(chunk.iter().copied());
            let r = self.run(Cc::PcrRead, &[], &[], &sel, 0)?;
            let bad = |_: Short| TpmError::Malformed("PCR_Read");
            let mut rd = Reader::new(&r.params);
            rd.u32().map_err(bad)?; // update counter
            let count = rd.u32().map_err(bad)?;
            let mut got = Vec::new();
            for _ in 0..count.min(16) {
                rd.u16().map_err(bad)?;
                let n = rd.u8().map_err(bad)?;
                let map = rd.take(usize::from(n)).map_err(bad)?;
                for (i, b) in map.iter().enumerate() {
                    for bit in 0..8u8 {
                        if b & (1 << bit) != 0 {
                            got.push((i as u8).saturating_mul(8).saturating_add(bit));
                        }
                    }
                }
            }
            let digests = rd.u32().map_err(bad)?;
            for idx in got.into_iter().take(digests as usize) {
                out.push((idx, rd.tpm2b().map_err(bad)?.to_vec()));
            }
        }
        Ok(out)
    }

    /// A policy session salted with the EK (so only this TPM knows the session key), AES-128-CFB
    /// for parameter encryption, satisfied with PolicySecret(TPM_RH_ENDORSEMENT).
    fn policy_session(&mut self, ek: &LoadedEk) -> Result<Session, TpmError> {
        let mut nonce_caller = vec![0u8; 32];
        OsRandom.fill_bytes(&mut nonce_caller);
        let (salt, encrypted_salt) =
            secret_for_ek(&ek.public, "SECRET").map_err(|_| TpmError::Salt)?;
        let mut params = Writer::new();
        params
            .tpm2b(&nonce_caller)
            .tpm2b(&encrypted_salt)
            .u8(SE_POLICY)
            .u16(ek::ALG_AES)
            .u16(128)
            .u16(ek::ALG_CFB)
            .u16(ek::ALG_SHA256);
        let (handle, nonce_tpm) = self.start_auth_session(ek.handle, &params.0)?;
        let key = kdfa(&salt, "ATH", &nonce_tpm, &nonce_caller, 256);
        let session = Session {
            handle,
            key,
            nonce_tpm,
        };
        let mut p = Writer::new();
        p.tpm2b(&[]).tpm2b(&[]).tpm2b(&[]).u32(0);
        if let Err(e) = self.run(
            Cc::PolicySecret,
            &[RH_ENDORSEMENT, handle],
            &[Auth::password()],
            &p.0,
            0,
        ) {
            self.flush(handle);
            return Err(e);
        }
        Ok(session)
    }

    fn activate_in(
        &mut self,
        ek: &LoadedEk,
        obj: u32,
        cred: &Credential,
        s: &Session,
        pcr_session: Option<&Session>,
        pcr: Option<&PcrPolicy>,
    ) -> Result<Zeroizing<Vec<u8>>, TpmError> {
        let mut params = Writer::new();
        params.tpm2b(&cred.id_object).tpm2b(&cred.secret);
        let mut nonce_caller = vec![0u8; 32];
        OsRandom.fill_bytes(&mut nonce_caller);
        let cc = Cc::ActivateCredential as u32;
        let mut cp = Sha256::new();
        cp.update(cc.to_be_bytes());
        cp.update(ActivationObject::name_with(pcr));
        cp.update(ek.public.name());
        cp.update(&params.0);
        let cp_hash = cp.finalize();
        let attrs = ATTR_ENCRYPT;
        let hmac = session_hmac(&s.key, &[&cp_hash, &nonce_caller, &s.nonce_tpm, &[attrs]]);
        let first = match pcr_session {
            None => Auth::password(),
            Some(ps) => {
                let mut n = vec![0u8; 32];
                OsRandom.fill_bytes(&mut n);
                // Unsalted and unbound, no PolicyAuthValue: the HMAC key is empty, and the TPM
                // wants an empty HMAC (a computed one is refused with TPM_RC_BAD_AUTH).
                Auth {
                    handle: ps.handle,
                    nonce: n,
                    attrs: 0,
                    hmac: Vec::new(),
                }
            }
        };
        let auths = [
            first,
            Auth {
                handle: s.handle,
                nonce: nonce_caller.clone(),
                attrs,
                hmac,
            },
        ];
        let r = match self.run(
            Cc::ActivateCredential,
            &[obj, ek.handle],
            &auths,
            &params.0,
            0,
        ) {
            Ok(r) => r,
            // A policy failure on session 1 (the PCR session): the PCRs changed since PolicyPCR.
            Err(TpmError::Rc { rc, .. })
                if pcr.is_some()
                    && rc & 0x80 != 0
                    && rc & 0x3F == 0x1D
                    && (rc >> 8) & 0xF == 0x9 =>
            {
                return Err(TpmError::PcrMismatch)
            }
            Err(TpmError::Rc { rc, .. }) if is_refusal(rc) => return Err(TpmError::Refused(rc)),
            Err(e) => return Err(e),
        };
        // Sessions in the response: the password one, then ours.
        let bad = |_: Short| TpmError::Malformed("ActivateCredential");
        let mut rs = Reader::new(&r.sessions);
        rs.tpm2b().map_err(bad)?;
        rs.u8().map_err(bad)?;
        rs.tpm2b().map_err(bad)?;
        let nonce_tpm = rs.tpm2b().map_err(bad)?.to_vec();
        let rattrs = rs.u8().map_err(bad)?;
        let rhmac = rs.tpm2b().map_err(bad)?;
        let mut rp = Sha256::new();
        rp.update(0u32.to_be_bytes());
        rp.update(cc.to_be_bytes());
        rp.update(&r.params);
        let rp_hash = rp.finalize();
        let want = session_hmac(&s.key, &[&rp_hash, &nonce_tpm, &nonce_caller, &[rattrs]]);
        // The TPM authenticates its answer with the salted session key: a man in the middle on
        // the bus can neither forge nor strip it.
        if rhmac != want.as_slice() {
            return Err(TpmError::ResponseHmac);
        }
        let mut rd = Reader::new(&r.params);
        let enc = rd.tpm2b().map_err(bad)?;
        let mut plain = Zeroizing::new(enc.to_vec());
        let kiv = kdfa(&s.key, "CFB", &nonce_tpm, &nonce_caller, 256);
        cfb_decrypt(
            kiv.get(..16).unwrap_or_default(),
            kiv.get(16..32).unwrap_or_default(),
            &mut plain,
        );
        Ok(plain)
    }
}

/// A started policy session.
struct Session {
    handle: u32,
    key: Zeroizing<Vec<u8>>,
    nonce_tpm: Vec<u8>,
}

fn session_hmac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let Ok(mut m) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    for p in parts {
        m.update(p);
    }
    m.finalize().into_bytes().to_vec()
}

/// Answers to ActivateCredential that mean "not for this TPM / not intact": a seed the EK
/// cannot decrypt (value, size, scheme) or an integrity check that fails.
fn is_refusal(rc: u32) -> bool {
    rc & 0x80 != 0 && matches!(0x80 | (rc & 0x3F), 0x84 | 0x95 | 0x9F | 0x92 | 0x9A)
}

fn command_name(cc: Cc) -> &'static str {
    match cc {
        Cc::Startup => "Startup",
        Cc::CreatePrimary => "CreatePrimary",
        Cc::NvRead => "NV_Read",
        Cc::ActivateCredential => "ActivateCredential",
        Cc::PolicySecret => "PolicySecret",
        Cc::FlushContext => "FlushContext",
        Cc::LoadExternal => "LoadExternal",
        Cc::NvReadPublic => "NV_ReadPublic",
        Cc::ReadPublic => "ReadPublic",
        Cc::PolicyCommandCode => "PolicyCommandCode",
        Cc::PcrRead => "PCR_Read",
        Cc::PolicyPcr => "PolicyPCR",
        Cc::StartAuthSession => "StartAuthSession",
    }
}

fn response_code(resp: &[u8]) -> Option<u32> {
    let mut r = Reader::new(resp);
    r.u16().ok()?;
    let size = r.u32().ok()?;
    if size as usize != resp.len() {
        return None;
    }
    r.u32().ok()
}

fn parse_response(resp: &[u8], handles: usize) -> Result<Response, Short> {
    let mut r = Reader::new(resp);
    let tag = r.u16()?;
    r.u32()?;
    r.u32()?;
    let mut hs = Vec::new();
    for _ in 0..handles {
        hs.push(r.u32()?);
    }
    if tag == ST_SESSIONS {
        let n = r.u32()? as usize;
        let params = r.take(n)?.to_vec();
        Ok(Response {
            handles: hs,
            params,
            sessions: r.rest().to_vec(),
        })
    } else {
        Ok(Response {
            handles: hs,
            params: r.rest().to_vec(),
            sessions: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_parsed_without_trusting_sizes() {
        assert_eq!(
            response_code(&[0x80, 0x01, 0, 0, 0, 10, 0, 0, 0x09, 0x21]),
            Some(0x921)
        );
        assert_eq!(response_code(&[0x80, 0x01, 0, 0, 0, 99, 0, 0, 0, 0]), None);
        assert_eq!(response_code(&[0x80]), None);
        // ST_SESSIONS with a parameter size beyond the end.
        let resp = [0x80, 0x02, 0, 0, 0, 14, 0, 0, 0, 0, 0, 0, 0, 200];
        assert!(parse_response(&resp, 0).is_err());
        assert!(parse_response(&resp[..10], 1).is_err());
    }

    #[test]
    fn response_codes_read_as_sentences() {
        assert!(describe_rc(0x921).contains("lockout"));
        assert!(describe_rc(0x922).contains("busy"));
        // TPM_RC_INTEGRITY on parameter 1 of ActivateCredential.
        assert!(is_refusal(0x19F));
        assert!(!is_refusal(0x921));
        assert!(is_busy(0x922));
    }

    #[test]
    fn activation_object_name_is_stable() {
        // The boot server and every node compute it independently; it must never change
        // within format 1 of the sealed bundle.
        assert_eq!(ActivationObject::name().len(), 34);
        assert_eq!(ActivationObject::name(), ActivationObject::name());
    }
}
