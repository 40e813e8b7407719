//! RFC 9180 HPKE, mode_base, for exactly one suite: DHKEM(P-256, HKDF-SHA256)
//! `0x0010`, HKDF-SHA256 `0x0001`, AES-256-GCM `0x0002`.
//!
//! The primitives (P-256 ECDH, HMAC-SHA256, AES-256-GCM) come from AWS-LC through
//! `aws-lc-rs`, whose P-256 is assembly and several times faster than a portable
//! implementation; the key schedule above them is the RFC's own text, transcribed
//! function by function (§4 `LabeledExtract`/`LabeledExpand`, §4.1 DHKEM, §5.1 key
//! schedule, §5.2 encryption, §5.3 export, §7.1.3 `DeriveKeyPair`). The RFC's test
//! vector for this suite pins it (see the known-answer tests in `envelope`).
//!
//! Only mode_base is here: no PSK, no sender authentication.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::agreement::{self, ECDH_P256, ParsedPublicKey, ParsedPublicKeyFormat};
use aws_lc_rs::hmac;
use zeroize::Zeroizing;

/// `Npk`: a SEC1 uncompressed P-256 point.
pub const NPK: usize = 65;
/// `Nsk`: a P-256 scalar.
const NSK: usize = 32;
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

/// A P-256 private key with its encoded public key.
pub struct PrivateKey {
    key: agreement::PrivateKey,
    public: [u8; NPK],
}

impl PrivateKey {
    /// A fresh random key pair (`GenerateKeyPair`).
    pub fn generate() -> Result<PrivateKey, Error> {
        let key = agreement::PrivateKey::generate(&ECDH_P256).map_err(|_| Error)?;
        PrivateKey::with_public(key)
    }

    /// RFC 9180 §7.1.3 `DeriveKeyPair(ikm)` for P-256: rejection sampling of
    /// `LabeledExpand(dkp_prk, "candidate", counter, 32)` until a scalar in `[1, n)`.
    pub fn derive(ikm: &[u8]) -> Result<PrivateKey, Error> {
        let dkp_prk = labeled_extract(KEM_SUITE_ID, b"", b"dkp_prk", ikm);
        for counter in 0u8..=255 {
            let candidate: Zeroizing<Vec<u8>> = Zeroizing::new(labeled_expand(
                KEM_SUITE_ID,
                &dkp_prk[..],
                b"candidate",
                &[counter],
                NSK,
            ));
            // The bitmask for P-256 is 0xff: every byte is kept. AWS-LC refuses zero
            // and scalars not below the group order, which is the RFC's test.
            if let Ok(key) = agreement::PrivateKey::from_private_key(&ECDH_P256, &candidate) {
                return PrivateKey::with_public(key);
            }
        }
        Err(Error)
    }

    fn with_public(key: agreement::PrivateKey) -> Result<PrivateKey, Error> {
        let public = key.compute_public_key().map_err(|_| Error)?;
        let public: [u8; NPK] = public.as_ref().try_into().map_err(|_| Error)?;
        Ok(PrivateKey { key, public })
    }

    /// `SerializePublicKey(pk)`: the 65-byte uncompressed point.
    pub fn public_key(&self) -> &[u8; NPK] {
        &self.public
    }

    /// `DH(sk, pk)`: the x-coordinate of the shared point.
    fn dh(&self, peer: &[u8; NPK]) -> Result<Zeroizing<[u8; 32]>, Error> {
        let peer = parse_point(peer)?;
        agreement::agree(&self.key, peer, Error, |x| {
            let x: [u8; 32] = x.try_into().map_err(|_| Error)?;
            Ok(Zeroizing::new(x))
        })
    }

    #[cfg(test)]
    pub fn scalar(&self) -> Vec<u8> {
        use aws_lc_rs::encoding::{AsBigEndian, EcPrivateKeyBin};
        let bin: EcPrivateKeyBin = self.key.as_be_bytes().unwrap();
        bin.as_ref().to_vec()
    }
}

/// `DeserializePublicKey`: a 65-byte uncompressed point, on the curve.
pub fn parse_point(bytes: &[u8; NPK]) -> Result<ParsedPublicKey, Error> {
    if bytes[0] != 0x04 {
        return Err(Error);
    }
    let parsed = ParsedPublicKey::try_from(agreement::UnparsedPublicKey::new(&ECDH_P256, bytes))
        .map_err(|_| Error)?;
    if parsed.format() != ParsedPublicKeyFormat::Uncompressed {
        return Err(Error);
    }
    Ok(parsed)
}

/// `Encap(pkR)` with the ephemeral key `ske`: returns `(shared_secret, enc)`.
fn encap(ske: &PrivateKey, pkr: &[u8; NPK]) -> Result<(Zeroizing<[u8; NH]>, [u8; NPK]), Error> {
    let dh = ske.dh(pkr)?;
    let enc = *ske.public_key();
    Ok((extract_and_expand(&dh, &enc, pkr), enc))
}

/// `Decap(enc, skR)`.
fn decap(enc: &[u8; NPK], skr: &PrivateKey) -> Result<Zeroizing<[u8; NH]>, Error> {
    let dh = skr.dh(enc)?;
    Ok(extract_and_expand(&dh, enc, skr.public_key()))
}

/// DHKEM `ExtractAndExpand(dh, kem_context = enc || pkRm)`.
fn extract_and_expand(dh: &[u8; 32], enc: &[u8; NPK], pkr: &[u8; NPK]) -> Zeroizing<[u8; NH]> {
    let eae_prk = labeled_extract(KEM_SUITE_ID, b"", b"eae_prk", dh);
    let mut kem_context = [0u8; 2 * NPK];
    kem_context[..NPK].copy_from_slice(enc);
    kem_context[NPK..].copy_from_slice(pkr);
    let secret = labeled_expand(
        KEM_SUITE_ID,
        &eae_prk[..],
        b"shared_secret",
        &kem_context,
        NH,
    );
    Zeroizing::new(secret.try_into().expect("Nsecret bytes"))
}

/// An HPKE context (§5.2, §5.3): the AEAD key, base nonce, sequence number and
/// exporter secret. Used by one side only.
pub struct Context {
    key: LessSafeKey,
    base_nonce: [u8; NN],
    seq: u64,
    exporter_secret: Zeroizing<[u8; NH]>,
}

/// `SetupBaseS(pkR, info)` with the ephemeral key `ske` (random, or derived from a
/// vector's `ikmE`): returns `(enc, context)`.
pub fn setup_base_s(
    ske: &PrivateKey,
    pkr: &[u8; NPK],
    info: &[u8],
) -> Result<([u8; NPK], Context), Error> {
    let (shared_secret, enc) = encap(ske, pkr)?;
    Ok((enc, key_schedule(&shared_secret, info)))
}

/// `SetupBaseR(enc, skR, info)`.
pub fn setup_base_r(enc: &[u8; NPK], skr: &PrivateKey, info: &[u8]) -> Result<Context, Error> {
    let shared_secret = decap(enc, skr)?;
    Ok(key_schedule(&shared_secret, info))
}

/// §5.1 `KeySchedule` for mode_base (`psk = psk_id = ""`).
fn key_schedule(shared_secret: &[u8; NH], info: &[u8]) -> Context {
    const MODE_BASE: u8 = 0x00;
    let psk_id_hash = labeled_extract(HPKE_SUITE_ID, b"", b"psk_id_hash", b"");
    let info_hash = labeled_extract(HPKE_SUITE_ID, b"", b"info_hash", info);
    let mut key_schedule_context = [0u8; 1 + 2 * NH];
    key_schedule_context[0] = MODE_BASE;
    key_schedule_context[1..1 + NH].copy_from_slice(&psk_id_hash[..]);
    key_schedule_context[1 + NH..].copy_from_slice(&info_hash[..]);

    let secret = labeled_extract(HPKE_SUITE_ID, shared_secret, b"secret", b"");
    let key = Zeroizing::new(labeled_expand(
        HPKE_SUITE_ID,
        &secret[..],
        b"key",
        &key_schedule_context,
        NK,
    ));
    let base_nonce = labeled_expand(
        HPKE_SUITE_ID,
        &secret[..],
        b"base_nonce",
        &key_schedule_context,
        NN,
    );
    let exporter_secret = Zeroizing::new(labeled_expand(
        HPKE_SUITE_ID,
        &secret[..],
        b"exp",
        &key_schedule_context,
        NH,
    ));
    Context {
        key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("Nk-byte key")),
        base_nonce: base_nonce.try_into().expect("Nn bytes"),
        seq: 0,
        exporter_secret: Zeroizing::new(exporter_secret[..].try_into().expect("Nh bytes")),
    }
}

impl Context {
    /// `ComputeNonce(seq)`: the base nonce XOR the sequence number, big-endian. The
    /// sequence number is 96 bits in the RFC; a u64 cannot run out here.
    fn nonce(&self) -> Nonce {
        let mut nonce = self.base_nonce;
        for (byte, seq) in nonce[NN - 8..].iter_mut().zip(self.seq.to_be_bytes()) {
            *byte ^= seq;
        }
        Nonce::assume_unique_for_key(nonce)
    }

    /// `IncrementSeq()`, refusing to wrap.
    fn increment_seq(&mut self) -> Result<(), Error> {
        self.seq = self.seq.checked_add(1).ok_or(Error)?;
        Ok(())
    }

    /// `ContextS.Seal(aad, pt)`.
    pub fn seal(&mut self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, Error> {
        let mut in_out = Vec::with_capacity(plaintext.len() + NT);
        in_out.extend_from_slice(plaintext);
        self.key
            .seal_in_place_append_tag(self.nonce(), Aad::from(aad), &mut in_out)
            .map_err(|_| Error)?;
        self.increment_seq()?;
        Ok(in_out)
    }

    /// `ContextR.Open(aad, ct)`, in place: on success `in_out` holds the plaintext.
    /// The sequence number advances only when the ciphertext opens, as the RFC says.
    pub fn open_in_place(&mut self, aad: &[u8], in_out: &mut Vec<u8>) -> Result<(), Error> {
        let len = self
            .key
            .open_in_place(self.nonce(), Aad::from(aad), in_out)
            .map_err(|_| Error)?
            .len();
        in_out.truncate(len);
        self.increment_seq()
    }

    /// `Context.Export(exporter_context, L)`, written into `out` (`L = out.len()`).
    pub fn export(&self, exporter_context: &[u8], out: &mut [u8]) -> Result<(), Error> {
        if out.len() > 255 * NH {
            return Err(Error);
        }
        let value = Zeroizing::new(labeled_expand(
            HPKE_SUITE_ID,
            &self.exporter_secret[..],
            b"sec",
            exporter_context,
            out.len(),
        ));
        out.copy_from_slice(&value);
        Ok(())
    }
}

/// `LabeledExtract(salt, label, ikm) = Extract(salt, "HPKE-v1" || suite_id || label || ikm)`.
/// `Extract` is HMAC-SHA256 keyed with the salt (an empty salt and `Nh` zero bytes
/// are the same HMAC key).
fn labeled_extract(suite_id: &[u8], salt: &[u8], label: &[u8], ikm: &[u8]) -> Zeroizing<[u8; NH]> {
    let key = hmac::Key::new(hmac::HMAC_SHA256, salt);
    let mut context = hmac::Context::with_key(&key);
    context.update(b"HPKE-v1");
    context.update(suite_id);
    context.update(label);
    context.update(ikm);
    Zeroizing::new(
        context
            .sign()
            .as_ref()
            .try_into()
            .expect("HMAC-SHA256 is Nh bytes"),
    )
}

/// `LabeledExpand(prk, label, info, L) =
/// Expand(prk, I2OSP(L, 2) || "HPKE-v1" || suite_id || label || info, L)`, with
/// RFC 5869 `Expand`: `T(i) = HMAC(prk, T(i-1) || info || i)`.
fn labeled_expand(suite_id: &[u8], prk: &[u8], label: &[u8], info: &[u8], len: usize) -> Vec<u8> {
    assert!(
        len <= 255 * NH,
        "HKDF-Expand output is at most 255 * Nh bytes"
    );
    let length = u16::try_from(len).expect("checked above").to_be_bytes();
    let key = hmac::Key::new(hmac::HMAC_SHA256, prk);
    let mut out = Vec::with_capacity(len.next_multiple_of(NH));
    let mut previous = Zeroizing::new([0u8; NH]);
    let mut counter = 1u8;
    while out.len() < len {
        let mut context = hmac::Context::with_key(&key);
        if counter > 1 {
            context.update(&previous[..]);
        }
        context.update(&length);
        context.update(b"HPKE-v1");
        context.update(suite_id);
        context.update(label);
        context.update(info);
        context.update(&[counter]);
        let block = context.sign();
        out.extend_from_slice(block.as_ref());
        previous.copy_from_slice(block.as_ref());
        counter = counter.wrapping_add(1);
    }
    out.truncate(len);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Context, Context) {
        let recipient = PrivateKey::generate().unwrap();
        let ephemeral = PrivateKey::generate().unwrap();
        let (enc, sender) = setup_base_s(&ephemeral, recipient.public_key(), b"info").unwrap();
        let receiver = setup_base_r(&enc, &recipient, b"info").unwrap();
        (sender, receiver)
    }

    #[test]
    fn messages_open_only_in_sequence_and_a_failed_open_does_not_advance_it() {
        let (mut sender, mut receiver) = pair();
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

    #[test]
    fn a_point_must_be_uncompressed_and_on_the_curve() {
        let key = PrivateKey::generate().unwrap();
        assert!(parse_point(key.public_key()).is_ok());
        let mut compressed_tag = *key.public_key();
        compressed_tag[0] = 0x02;
        assert!(parse_point(&compressed_tag).is_err());
        let mut off_curve = *key.public_key();
        off_curve[64] ^= 1;
        assert!(parse_point(&off_curve).is_err());
        assert!(key.dh(&off_curve).is_err());
    }
}
