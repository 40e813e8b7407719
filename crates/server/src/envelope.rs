//! HPKE sealing of requests, AES-256-GCM sealing of results, and the commitment
//! (protocol §2, §3): the server's view of [`wasm_hypervisor_protocol::envelope`].
//!
//! The protocol crate does the work, over the [`Provider`] the caller passes
//! (`crypto.provider` on the server, the client's own in `client`); every key it
//! makes keeps its provider. This module re-exports it under the names the server
//! has always used, and adds what only the server needs: session keys whose
//! generation cannot fail short of a broken OS, and [`sha256`] for the digests that
//! name things (modules, tokens).
//!
//! Architecture invariant: this module never sees Wasmtime, HTTP or JSON, and no
//! error it returns says *why* decryption failed (no oracle).

use wasm_hypervisor_protocol::envelope as protocol;

/// The crypto provider handle, and what configuration needs to name one.
pub use wasm_hypervisor_protocol::provider::{PROVIDER_NAMES, Provider, ProviderNameError};

pub use wasm_hypervisor_protocol::envelope::{
    COMMITMENT_LABEL, COMMITMENT_SALT_LABEL, Enc, EnvelopeError, OpenedRequest, POINT_LEN,
    REQUEST_INFO_LABEL, RESPONSE_KEY_LABEL, RESPONSE_NONCE_LABEL, ResponseKeys,
    SESSION_SIGNATURE_LABEL, SealedRequest, SessionSecret, commitment, digest_eq, open_request,
    random_bytes, request_info, seal_request, seal_request_with_ikm, session_signature_message,
    sessions_signature_message,
};

/// An opened request's bytes: shared without copying (a CBOR request's `stdin`
/// reaches the guest as a view of them, see [`Plaintext::view`]), and wiped when
/// the last holder drops them.
///
/// The wipe is one `memset` followed by [`std::hint::black_box`], which the
/// optimiser must assume reads the bytes, so the stores stay. (`zeroize` writes a
/// byte at a time through volatile pointers: 4 ms for a 16 MiB request, a tenth of
/// the server's work on it.) The bytes are wiped by whoever drops the last view
/// that is a `Plaintext`; a view handed elsewhere ([`Plaintext::view`]) must be
/// gone by then, as the guest's stdin is once its store has been dropped, or the
/// bytes are freed unwiped.
pub struct Plaintext(bytes::Bytes);

impl Plaintext {
    /// Takes the bytes of an opened request, without copying them.
    pub fn new(bytes: Vec<u8>) -> Plaintext {
        Plaintext(bytes::Bytes::from(bytes))
    }

    /// `part`, which must lie inside these bytes, as a shared view of them (no
    /// copy).
    pub fn view(&self, part: &[u8]) -> bytes::Bytes {
        self.0.slice_ref(part)
    }
}

impl std::ops::Deref for Plaintext {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Plaintext {
    fn drop(&mut self) {
        if let Ok(mut bytes) = std::mem::take(&mut self.0).try_into_mut() {
            wipe(&mut bytes);
        }
    }
}

/// Overwrites `bytes` with zeros in a way the optimiser keeps (see [`Plaintext`]).
pub fn wipe(bytes: &mut [u8]) {
    bytes.fill(0);
    std::hint::black_box(&*bytes);
}

/// A fresh key pair for one session, on `provider`.
pub fn generate_session_key(provider: Provider) -> (SessionSecret, [u8; POINT_LEN]) {
    protocol::generate_session_key(provider).expect("the system RNG works")
}

/// The key pair RFC 9180 `DeriveKeyPair(ikm)` gives; for known-answer tests.
pub fn derive_session_key(provider: Provider, ikm: &[u8]) -> (SessionSecret, [u8; POINT_LEN]) {
    protocol::derive_session_key(provider, ikm).expect("some candidate is a valid scalar")
}

/// SHA-256, for the digests that name things: a module (`module_sha256`, the module
/// cache's key), a bearer token. Fixed by the protocol and the same on every
/// provider, so it does not take one.
pub use wasm_hypervisor_protocol::digest::sha256;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_of_the_plaintext_shares_its_bytes_instead_of_copying_them() {
        let plaintext = Plaintext::new(b"header|stdin bytes|trailer".to_vec());
        let part = &plaintext[7..18];
        let view = plaintext.view(part);
        assert_eq!(&view[..], b"stdin bytes");
        assert_eq!(view.as_ptr(), part.as_ptr(), "the same memory, not a copy");
    }

    #[test]
    fn wipe_leaves_only_zeros() {
        let mut secret = b"a request plaintext".to_vec();
        wipe(&mut secret);
        assert_eq!(secret, vec![0; 19]);
    }

    /// The protocol-v1 vector's leaf and leaf hash (protocol §4), from the commitment
    /// the protocol crate computes on this provider; the rest of the vector is
    /// checked byte for byte in `wasm-hypervisor-protocol`'s known-answer tests.
    fn protocol_v1_vector_leaf_is_committed_and_signed(provider: Provider) {
        use serde_json::Value;
        use uuid::Uuid;
        let v: Value =
            serde_json::from_str(include_str!("../../../tests/vectors/protocol_v1.json")).unwrap();
        let hex_field = |value: &Value, name: &str| hex::decode(value[name].as_str().unwrap());
        let hpke_fields = &v["hpke"];
        let session_id = Uuid::parse_str(v["session_id"].as_str().unwrap()).unwrap();
        let request_plaintext = hex_field(&v, "request_plaintext").unwrap();
        let result_plaintext = hex_field(&v, "result_plaintext").unwrap();
        let (secret, public) =
            derive_session_key(provider, &hex_field(hpke_fields, "ikmR").unwrap());
        let enc = Enc::parse(provider, &hex_field(hpke_fields, "enc").unwrap()).unwrap();
        let opened = open_request(
            secret,
            &session_id,
            &enc,
            hex_field(&v, "ciphertext").unwrap(),
        )
        .unwrap();
        assert_eq!(
            session_signature_message(&session_id, &public),
            hex_field(&v, "session_signature_message").unwrap()
        );
        let leaf = wasm_hypervisor_protocol::leaf::Leaf {
            execution_id: Uuid::parse_str(v["execution_id"].as_str().unwrap()).unwrap(),
            timestamp_ms: v["timestamp_ms"].as_u64().unwrap(),
            commitment: opened
                .keys
                .commitment(&request_plaintext, &result_plaintext),
        };
        assert_eq!(leaf.to_bytes().to_vec(), hex_field(&v, "leaf").unwrap());
        assert_eq!(leaf.hash().to_vec(), hex_field(&v, "leaf_hash").unwrap());

        // The server key made from the vector's scalar signs leaves that verify, and
        // verifies the leaf signature Python made.
        let signing = &v["signing_key"];
        let scalar: [u8; 32] = hex_field(signing, "d").unwrap().try_into().unwrap();
        let key = crate::keys::ServerKey::from_scalar(provider, &scalar).unwrap();
        assert_eq!(
            key.public().key_id_hex(),
            signing["key_id"].as_str().unwrap()
        );
        key.public()
            .verify(
                &leaf.to_bytes(),
                &hex_field(&v, "leaf_signature_der").unwrap(),
            )
            .unwrap();
        key.public()
            .verify(&leaf.to_bytes(), &key.sign(&leaf.to_bytes()))
            .unwrap();
    }

    crate::tests_for_every_provider!(protocol_v1_vector_leaf_is_committed_and_signed);
}
