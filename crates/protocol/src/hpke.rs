//! RFC 9180 HPKE, mode_base, for exactly one suite: DHKEM(P-256, HKDF-SHA256)
//! `0x0010`, HKDF-SHA256 `0x0001`, AES-256-GCM `0x0002`.
//!
//! The primitives (P-256 ECDH, HMAC-SHA256, AES-256-GCM) come from a [`Provider`];
//! the key schedule above them is the RFC's own text, transcribed function by
//! function (§4 `LabeledExtract`/`LabeledExpand`, §4.1 DHKEM, §5.1 key schedule,
//! §5.2 encryption, §5.3 export, §7.1.3 `DeriveKeyPair`), written once for every
//! provider. The RFC's test vector for this suite pins it, on each provider (see
//! the known-answer tests).
//!
//! Only mode_base is here: no PSK, no sender authentication.

use zeroize::Zeroizing;

use crate::provider::{EcdhKey, POINT_LEN, Provider, SCALAR_LEN};

/// `Npk`: a SEC1 uncompressed P-256 point.
pub const NPK: usize = POINT_LEN;
/// `Nsk`: a P-256 scalar.
const NSK: usize = SCALAR_LEN;
/// `Nh`: HKDF-SHA256's output length.
const NH: usize = 32;
/// `Nk`, `Nn`, `Nt` of AES-256-GCM.
const NK: usize = 32;
const NN: usize = 12;
pub const NT: usize = 16;

/// `suite_id` of the KEM: `"KEM" || I2OSP(0x0010, 2)`.
const KEM_SUITE_ID: &[u8] = b"KEM\x00\x10";
/// `suite_id` of the context: `"HPKE" || I2OSP(kem, 2) || I2OSP(kdf, 2) || I2OSP(aead, 2)`.
const HPKE_SUITE_ID: &[u8] = b"HPKE\x00\x10\x00\x01\x00\x02";

/// Any failure. Deliberately carries no detail: callers must not be able to tell a
/// bad point from a bad tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Error;

/// A P-256 private key with its encoded public key, on the provider that made it.
pub struct PrivateKey {
    provider: Provider,
    key: Box<dyn EcdhKey>,
}

impl PrivateKey {
    /// A fresh random key pair (`GenerateKeyPair`).
    pub fn generate(provider: Provider) -> Result<PrivateKey, Error> {
        let key = provider.generate_ecdh_key().map_err(|_| Error)?;
        Ok(PrivateKey { provider, key })
    }

    /// §7.1.3 `DeriveKeyPair(ikm)` for P-256:
    ///
    /// ```text
    /// def DeriveKeyPair(ikm):
    ///   dkp_prk = LabeledExtract("", "dkp_prk", ikm)
    ///   sk = 0
    ///   counter = 0
    ///   while sk == 0 or sk >= order:
    ///     if counter > 255:
    ///       raise DeriveKeyPairError
    ///     bytes = LabeledExpand(dkp_prk, "candidate", I2OSP(counter, 1), Nsk)
    ///     bytes[0] = bytes[0] & bitmask
    ///     sk = OS2IP(bytes)
    ///     counter = counter + 1
    ///   return (sk, pk(sk))
    /// ```
    pub fn derive(provider: Provider, ikm: &[u8]) -> Result<PrivateKey, Error> {
        let dkp_prk = labeled_extract(provider, KEM_SUITE_ID, b"", b"dkp_prk", ikm);
        for counter in 0u8..=255 {
            let candidate: Zeroizing<[u8; NSK]> = Zeroizing::new(
                labeled_expand(
                    provider,
                    KEM_SUITE_ID,
                    &dkp_prk[..],
                    b"candidate",
                    &[counter],
                    NSK,
                )[..]
                    .try_into()
                    .expect("Nsk bytes"),
            );
            // The bitmask for P-256 is 0xff: every byte is kept. The provider refuses
            // zero and scalars not below the group order, which is the loop's test.
            if let Ok(key) = provider.ecdh_key_from_scalar(&candidate) {
                return Ok(PrivateKey { provider, key });
            }
        }
        Err(Error)
    }

    /// `SerializePublicKey(pk)`: the 65-byte uncompressed point.
    pub fn public_key(&self) -> &[u8; NPK] {
        self.key.public_key()
    }

    /// `SerializePrivateKey(sk)`: the scalar, big-endian.
    pub fn serialize(&self) -> Result<Zeroizing<[u8; NSK]>, Error> {
        self.key.scalar().map_err(|_| Error)
    }

    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// `DH(sk, pk)`: the x-coordinate of the shared point.
    fn dh(&self, peer: &[u8; NPK]) -> Result<Zeroizing<[u8; 32]>, Error> {
        self.key.diffie_hellman(peer).map_err(|_| Error)
    }
}

/// `DeserializePublicKey`: succeeds for a 65-byte uncompressed point on the curve.
pub fn check_point(provider: Provider, bytes: &[u8; NPK]) -> Result<(), Error> {
    provider.check_point(bytes).map_err(|_| Error)
}

/// §4.1, with the ephemeral key `skE` given (random, or derived from a vector's
/// `ikmE`):
///
/// ```text
/// def Encap(pkR):
///   skE, pkE = GenerateKeyPair()
///   dh = DH(skE, pkR)
///   enc = SerializePublicKey(pkE)
///   pkRm = SerializePublicKey(pkR)
///   kem_context = concat(enc, pkRm)
///   shared_secret = ExtractAndExpand(dh, kem_context)
///   return shared_secret, enc
/// ```
fn encap(ske: &PrivateKey, pkr: &[u8; NPK]) -> Result<(Zeroizing<[u8; NH]>, [u8; NPK]), Error> {
    let dh = ske.dh(pkr)?;
    let enc = *ske.public_key();
    Ok((extract_and_expand(ske.provider, &dh, &enc, pkr), enc))
}

/// ```text
/// def Decap(enc, skR):
///   pkE = DeserializePublicKey(enc)
///   dh = DH(skR, pkE)
///   pkRm = SerializePublicKey(pk(skR))
///   kem_context = concat(enc, pkRm)
///   shared_secret = ExtractAndExpand(dh, kem_context)
///   return shared_secret
/// ```
fn decap(enc: &[u8; NPK], skr: &PrivateKey) -> Result<Zeroizing<[u8; NH]>, Error> {
    let dh = skr.dh(enc)?;
    Ok(extract_and_expand(skr.provider, &dh, enc, skr.public_key()))
}

/// ```text
/// def ExtractAndExpand(dh, kem_context):
///   eae_prk = LabeledExtract("", "eae_prk", dh)
///   shared_secret = LabeledExpand(eae_prk, "shared_secret", kem_context, Nsecret)
///   return shared_secret
/// ```
fn extract_and_expand(
    provider: Provider,
    dh: &[u8; 32],
    enc: &[u8; NPK],
    pkr: &[u8; NPK],
) -> Zeroizing<[u8; NH]> {
    let eae_prk = labeled_extract(provider, KEM_SUITE_ID, b"", b"eae_prk", dh);
    let mut kem_context = [0u8; 2 * NPK];
    kem_context[..NPK].copy_from_slice(enc);
    kem_context[NPK..].copy_from_slice(pkr);
    let secret = labeled_expand(
        provider,
        KEM_SUITE_ID,
        &eae_prk[..],
        b"shared_secret",
        &kem_context,
        NH,
    );
    Zeroizing::new(secret[..].try_into().expect("Nsecret bytes"))
}

/// An HPKE context (§5.2, §5.3): the AEAD key, base nonce, sequence number and
/// exporter secret. Used by one side only.
pub struct Context {
    provider: Provider,
    key: Zeroizing<[u8; NK]>,
    base_nonce: [u8; NN],
    seq: u64,
    exporter_secret: Zeroizing<[u8; NH]>,
}

/// ```text
/// def SetupBaseS(pkR, info):
///   shared_secret, enc = Encap(pkR)
///   return enc, KeyScheduleS(mode_base, shared_secret, info,
///                            default_psk, default_psk_id)
/// ```
pub fn setup_base_s(
    ske: &PrivateKey,
    pkr: &[u8; NPK],
    info: &[u8],
) -> Result<([u8; NPK], Context), Error> {
    let (shared_secret, enc) = encap(ske, pkr)?;
    Ok((enc, key_schedule(ske.provider, &shared_secret, info)))
}

/// ```text
/// def SetupBaseR(enc, skR, info):
///   shared_secret = Decap(enc, skR)
///   return KeyScheduleR(mode_base, shared_secret, info,
///                       default_psk, default_psk_id)
/// ```
pub fn setup_base_r(enc: &[u8; NPK], skr: &PrivateKey, info: &[u8]) -> Result<Context, Error> {
    let shared_secret = decap(enc, skr)?;
    Ok(key_schedule(skr.provider, &shared_secret, info))
}

/// §5.1 for mode_base (`psk = psk_id = ""`, so `VerifyPSKInputs` has nothing to
/// refuse):
///
/// ```text
/// def KeySchedule<ROLE>(mode, shared_secret, info, psk, psk_id):
///   VerifyPSKInputs(mode, psk, psk_id)
///   psk_id_hash = LabeledExtract("", "psk_id_hash", psk_id)
///   info_hash = LabeledExtract("", "info_hash", info)
///   key_schedule_context = concat(mode, psk_id_hash, info_hash)
///   secret = LabeledExtract(shared_secret, "secret", psk)
///   key = LabeledExpand(secret, "key", key_schedule_context, Nk)
///   base_nonce = LabeledExpand(secret, "base_nonce", key_schedule_context, Nn)
///   exporter_secret = LabeledExpand(secret, "exp", key_schedule_context, Nh)
///   return Context<ROLE>(key, base_nonce, 0, exporter_secret)
/// ```
fn key_schedule(provider: Provider, shared_secret: &[u8; NH], info: &[u8]) -> Context {
    const MODE_BASE: u8 = 0x00;
    let psk_id_hash = labeled_extract(provider, HPKE_SUITE_ID, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(provider, HPKE_SUITE_ID, b"", b"info_hash", info);
    let mut key_schedule_context = [0u8; 1 + 2 * NH];
    key_schedule_context[0] = MODE_BASE;
    key_schedule_context[1..1 + NH].copy_from_slice(&psk_id_hash[..]);
    key_schedule_context[1 + NH..].copy_from_slice(&info_hash[..]);

    let secret = labeled_extract(provider, HPKE_SUITE_ID, shared_secret, b"secret", b"");
    let expand = |label: &[u8], len| {
        labeled_expand(
            provider,
            HPKE_SUITE_ID,
            &secret[..],
            label,
            &key_schedule_context,
            len,
        )
    };
    let key = expand(b"key", NK);
    let base_nonce = expand(b"base_nonce", NN);
    let exporter_secret = expand(b"exp", NH);
    Context {
        provider,
        key: Zeroizing::new(key[..].try_into().expect("Nk bytes")),
        base_nonce: base_nonce[..].try_into().expect("Nn bytes"),
        seq: 0,
        exporter_secret: Zeroizing::new(exporter_secret[..].try_into().expect("Nh bytes")),
    }
}

impl Context {
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// §5.2, the one nonce computation both [`Context::seal`] and
    /// [`Context::open_in_place`] use. The RFC's sequence number is `Nn` bytes; a u64
    /// cannot run out here.
    ///
    /// ```text
    /// def ComputeNonce(seq):
    ///   seq_bytes = I2OSP(seq, Nn)
    ///   return xor(self.base_nonce, seq_bytes)
    /// ```
    pub(crate) fn compute_nonce(&self) -> [u8; NN] {
        let mut nonce = self.base_nonce;
        for (byte, seq) in nonce[NN - 8..].iter_mut().zip(self.seq.to_be_bytes()) {
            *byte ^= seq;
        }
        nonce
    }

    /// ```text
    /// def IncrementSeq():
    ///   if self.seq >= (1 << (8*Nn)) - 1:
    ///     raise MessageLimitReachedError
    ///   self.seq += 1
    /// ```
    fn increment_seq(&mut self) -> Result<(), Error> {
        self.seq = self.seq.checked_add(1).ok_or(Error)?;
        Ok(())
    }

    /// ```text
    /// def ContextS.Seal(aad, pt):
    ///   ct = Seal(self.key, self.ComputeNonce(self.seq), aad, pt)
    ///   self.IncrementSeq()
    ///   return ct
    /// ```
    pub fn seal(&mut self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut in_out = Vec::with_capacity(plaintext.len() + NT);
        in_out.extend_from_slice(plaintext);
        self.provider
            .aes_256_gcm_seal(&self.key, &self.compute_nonce(), aad, &mut in_out)
            .map_err(|_| Error)?;
        self.increment_seq()?;
        Ok(in_out)
    }

    /// `ContextR.Open(aad, ct)`, in place: on success `in_out` holds the plaintext.
    /// The sequence number advances only when the ciphertext opens, as the RFC says.
    ///
    /// ```text
    /// def ContextR.Open(aad, ct):
    ///   pt = Open(self.key, self.ComputeNonce(self.seq), aad, ct)
    ///   if pt == OpenError:
    ///     raise OpenError
    ///   self.IncrementSeq()
    ///   return pt
    /// ```
    pub fn open_in_place(&mut self, aad: &[u8], in_out: &mut Vec<u8>) -> Result<(), Error> {
        self.provider
            .aes_256_gcm_open(&self.key, &self.compute_nonce(), aad, in_out)
            .map_err(|_| Error)?;
        self.increment_seq()
    }

    /// §5.3, written into `out` (`L = out.len()`):
    ///
    /// ```text
    /// def Context.Export(exporter_context, L):
    ///   return LabeledExpand(self.exporter_secret, "sec",
    ///                        exporter_context, L)
    /// ```
    pub fn export(&self, exporter_context: &[u8], out: &mut [u8]) -> Result<(), Error> {
        if out.len() > 255 * NH {
            return Err(Error);
        }
        let value = labeled_expand(
            self.provider,
            HPKE_SUITE_ID,
            &self.exporter_secret[..],
            b"sec",
            exporter_context,
            out.len(),
        );
        out.copy_from_slice(&value);
        Ok(())
    }
}

/// §4, with RFC 5869 `Extract(salt, ikm) = HMAC-Hash(salt, ikm)` (an empty salt and
/// `Nh` zero bytes are the same HMAC key):
///
/// ```text
/// def LabeledExtract(salt, label, ikm):
///   labeled_ikm = concat("HPKE-v1", suite_id, label, ikm)
///   return Extract(salt, labeled_ikm)
/// ```
fn labeled_extract(
    provider: Provider,
    suite_id: &[u8],
    salt: &[u8],
    label: &[u8],
    ikm: &[u8],
) -> Zeroizing<[u8; NH]> {
    Zeroizing::new(provider.hmac_sha256(salt, &[b"HPKE-v1", suite_id, label, ikm]))
}

/// §4, with RFC 5869 `Expand`: `T(i) = HMAC(prk, T(i-1) || info || i)`, the output
/// the first `L` bytes of `T(1) || T(2) || ...`:
///
/// ```text
/// def LabeledExpand(prk, label, info, L):
///   labeled_info = concat(I2OSP(L, 2), "HPKE-v1", suite_id,
///                         label, info)
///   return Expand(prk, labeled_info, L)
/// ```
fn labeled_expand(
    provider: Provider,
    suite_id: &[u8],
    prk: &[u8],
    label: &[u8],
    info: &[u8],
    len: usize,
) -> Zeroizing<Vec<u8>> {
    assert!(
        len <= 255 * NH,
        "HKDF-Expand output is at most 255 * Nh bytes"
    );
    let length = u16::try_from(len).expect("checked above").to_be_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(len.next_multiple_of(NH)));
    let mut previous = Zeroizing::new([0u8; NH]);
    for counter in 1..=u8::MAX {
        if out.len() >= len {
            break;
        }
        let chain: &[u8] = if counter > 1 { &previous[..] } else { b"" };
        *previous = provider.hmac_sha256(
            prk,
            &[
                chain,
                &length,
                b"HPKE-v1",
                suite_id,
                label,
                info,
                &[counter],
            ],
        );
        out.extend_from_slice(&previous[..]);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(provider: Provider) -> (Context, Context) {
        let recipient = PrivateKey::generate(provider).unwrap();
        let ephemeral = PrivateKey::generate(provider).unwrap();
        let (enc, sender) = setup_base_s(&ephemeral, recipient.public_key(), b"info").unwrap();
        let receiver = setup_base_r(&enc, &recipient, b"info").unwrap();
        (sender, receiver)
    }

    fn messages_open_only_in_sequence_and_a_failed_open_does_not_advance_it(provider: Provider) {
        let (mut sender, mut receiver) = pair(provider);
        let first = sender.seal(b"", b"first").unwrap();
        let second = sender.seal(b"", b"second").unwrap();
        // Out of order: the second ciphertext does not open under sequence 0.
        let mut out_of_order = second.clone();
        assert_eq!(receiver.open_in_place(b"", &mut out_of_order), Err(Error));
        let mut tampered = first.clone();
        tampered[0] ^= 1;
        assert_eq!(receiver.open_in_place(b"", &mut tampered), Err(Error));
        // Neither failure moved the sequence: first, then second, still open.
        let mut in_out = first;
        receiver.open_in_place(b"", &mut in_out).unwrap();
        assert_eq!(in_out, b"first");
        let mut in_out = second;
        receiver.open_in_place(b"", &mut in_out).unwrap();
        assert_eq!(in_out, b"second");
    }

    fn a_point_must_be_uncompressed_and_on_the_curve(provider: Provider) {
        let key = PrivateKey::generate(provider).unwrap();
        assert!(check_point(provider, key.public_key()).is_ok());
        let mut compressed_tag = *key.public_key();
        compressed_tag[0] = 0x02;
        assert!(check_point(provider, &compressed_tag).is_err());
        let mut off_curve = *key.public_key();
        off_curve[64] ^= 1;
        assert!(check_point(provider, &off_curve).is_err());
        assert!(key.dh(&off_curve).is_err());
        assert!(key.dh(&compressed_tag).is_err());
        assert!(check_point(provider, &[0; NPK]).is_err());
    }

    crate::tests_for_every_provider!(
        messages_open_only_in_sequence_and_a_failed_open_does_not_advance_it,
        a_point_must_be_uncompressed_and_on_the_curve,
    );
}
