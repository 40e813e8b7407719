//! Known-answer tests from vectors computed outside this project, run on every
//! compiled provider: the official RFC 9180 vector for this exact suite, and a
//! protocol-v1 vector made with Python's pyhpke and cryptography
//! (`tools/protocol_vector.py`).

use serde_json::Value;
use uuid::Uuid;

use crate::envelope::*;
use crate::hpke;
use crate::provider::Provider;
use crate::signing::{PublicKey, SigningKey};

const RFC9180: &str =
    include_str!("../../../tests/vectors/rfc9180_base_p256_sha256_aes256gcm.json");
const PROTOCOL_V1: &str = include_str!("../../../tests/vectors/protocol_v1.json");

fn hex_field(value: &Value, name: &str) -> Vec<u8> {
    hex::decode(
        value[name]
            .as_str()
            .unwrap_or_else(|| panic!("field {name}")),
    )
    .unwrap()
}

/// Every value of the vector, both sides: `DeriveKeyPair` (skRm, pkRm, skEm, pkEm),
/// `enc`, all 257 encryptions with their nonces, sealed by the sender and opened in
/// sequence by the receiver, and every export from both contexts.
fn rfc9180_vector_for_this_suite_receiver_and_sender(provider: Provider) {
    let file: Value = serde_json::from_str(RFC9180).unwrap();
    let vector = &file["vectors"][0];
    assert_eq!(
        (
            vector["mode"].as_u64(),
            vector["kem_id"].as_u64(),
            vector["kdf_id"].as_u64(),
            vector["aead_id"].as_u64()
        ),
        (Some(0), Some(16), Some(1), Some(2))
    );
    let info = hex_field(vector, "info");
    let recipient = hpke::PrivateKey::derive(provider, &hex_field(vector, "ikmR")).unwrap();
    assert_eq!(recipient.public_key().to_vec(), hex_field(vector, "pkRm"));
    assert_eq!(
        recipient.serialize().unwrap().to_vec(),
        hex_field(vector, "skRm")
    );
    let ephemeral = hpke::PrivateKey::derive(provider, &hex_field(vector, "ikmE")).unwrap();
    assert_eq!(ephemeral.public_key().to_vec(), hex_field(vector, "pkEm"));
    assert_eq!(
        ephemeral.serialize().unwrap().to_vec(),
        hex_field(vector, "skEm")
    );
    let enc = Enc::parse(provider, &hex_field(vector, "enc")).unwrap();

    // Receiver: every ciphertext opens, in sequence, to its plaintext.
    let mut receiver = hpke::setup_base_r(&enc.to_bytes(), &recipient, &info).unwrap();
    // Sender: the ephemeral key from ikmE gives the vector's enc and ciphertexts.
    let (sender_enc, mut sender) =
        hpke::setup_base_s(&ephemeral, recipient.public_key(), &info).unwrap();
    assert_eq!(sender_enc.to_vec(), hex_field(vector, "enc"));

    let encryptions = vector["encryptions"].as_array().unwrap();
    assert_eq!(encryptions.len(), 257);
    for (n, encryption) in encryptions.iter().enumerate() {
        let (aad, ct, nonce, pt) = (
            hex_field(encryption, "aad"),
            hex_field(encryption, "ct"),
            hex_field(encryption, "nonce"),
            hex_field(encryption, "pt"),
        );
        // ComputeNonce(seq), the same on both sides.
        assert_eq!(sender.compute_nonce().to_vec(), nonce, "sender nonce {n}");
        assert_eq!(
            receiver.compute_nonce().to_vec(),
            nonce,
            "receiver nonce {n}"
        );
        assert_eq!(sender.seal(&aad, &pt).unwrap(), ct, "seal {n}");
        let mut in_out = ct.clone();
        receiver.open_in_place(&aad, &mut in_out).unwrap();
        assert_eq!(in_out, pt, "open {n}");
    }
    let exports = vector["exports"].as_array().unwrap();
    assert!(!exports.is_empty());
    for export in exports {
        let context = hex_field(export, "exporter_context");
        let mut out = vec![0u8; export["L"].as_u64().unwrap() as usize];
        receiver.export(&context, &mut out).unwrap();
        assert_eq!(out, hex_field(export, "exported_value"));
        sender.export(&context, &mut out).unwrap();
        assert_eq!(out, hex_field(export, "exported_value"));
    }
}

/// The protocol's own bytes: info, DeriveKeyPair, enc, request ciphertext, the
/// three exports, result ciphertext, commitment, session-signature message, the
/// signing key's SPKI and key id, and signatures made by Python's cryptography
/// (session key, leaf, checkpoint) verifying here, and ours verifying under the
/// key Python derived.
fn protocol_v1_vector_matches_byte_for_byte(provider: Provider) {
    let v: Value = serde_json::from_str(PROTOCOL_V1).unwrap();
    let hpke_fields = &v["hpke"];
    let session_id = Uuid::parse_str(v["session_id"].as_str().unwrap()).unwrap();
    let request_plaintext = hex_field(&v, "request_plaintext");
    let result_plaintext = hex_field(&v, "result_plaintext");
    assert_eq!(request_info(&session_id), hex_field(hpke_fields, "info"));

    let (secret, public) = derive_session_key(provider, &hex_field(hpke_fields, "ikmR")).unwrap();
    assert_eq!(public.to_vec(), hex_field(hpke_fields, "pkR"));
    assert_eq!(
        secret.0.serialize().unwrap().to_vec(),
        hex_field(hpke_fields, "skR")
    );
    assert_eq!(
        session_signature_message(&session_id, &public),
        hex_field(&v, "session_signature_message")
    );

    // Client side, with the vector's ephemeral key.
    let ephemeral = hpke::PrivateKey::derive(provider, &hex_field(hpke_fields, "ikmE")).unwrap();
    assert_eq!(
        ephemeral.serialize().unwrap().to_vec(),
        hex_field(hpke_fields, "skE")
    );
    let sealed = seal_request_with_ikm(
        provider,
        &hex_field(hpke_fields, "ikmE"),
        &public,
        &session_id,
        &request_plaintext,
    )
    .unwrap();
    assert_eq!(sealed.enc.to_vec(), hex_field(hpke_fields, "enc"));
    assert_eq!(sealed.ciphertext, hex_field(&v, "ciphertext"));

    // Server side.
    let enc = Enc::parse(provider, &sealed.enc).unwrap();
    let opened = open_request(secret, &session_id, &enc, sealed.ciphertext.clone()).unwrap();
    assert_eq!(&opened.plaintext[..], &request_plaintext[..]);
    let exports = &v["exports"];
    for keys in [&opened.keys, &sealed.keys] {
        let (key, nonce) = keys.key_and_nonce();
        assert_eq!(key.to_vec(), hex_field(exports, "response_key"));
        assert_eq!(nonce.to_vec(), hex_field(exports, "response_nonce"));
        assert_eq!(keys.salt().to_vec(), hex_field(exports, "commitment_salt"));
    }

    let execution_id = Uuid::parse_str(v["execution_id"].as_str().unwrap()).unwrap();
    let result_ciphertext = opened.keys.seal_result(&execution_id, &result_plaintext);
    assert_eq!(result_ciphertext, hex_field(&v, "result_ciphertext"));
    // In place, as the server seals: the same bytes, in the plaintext's own
    // buffer (its room for the tag is used, nothing reallocated).
    let mut in_place = Vec::with_capacity(result_plaintext.len() + crate::hpke::NT);
    in_place.extend_from_slice(&result_plaintext);
    let buffer = in_place.as_ptr();
    opened
        .keys
        .seal_result_in_place(&execution_id, &mut in_place);
    assert_eq!(in_place, hex_field(&v, "result_ciphertext"));
    assert_eq!(
        in_place.as_ptr(),
        buffer,
        "sealed in the plaintext's buffer"
    );
    assert_eq!(
        sealed
            .keys
            .open_result(&execution_id, &result_ciphertext)
            .unwrap(),
        result_plaintext
    );
    let commitment = opened
        .keys
        .commitment(&request_plaintext, &result_plaintext);
    assert_eq!(commitment.to_vec(), hex_field(&v, "commitment"));
    assert_eq!(
        sealed
            .keys
            .commitment(&request_plaintext, &result_plaintext),
        commitment
    );

    // The signing key: SPKI, key id, and signatures made by another library.
    let signing = &v["signing_key"];
    let scalar: [u8; 32] = hex_field(signing, "d").try_into().unwrap();
    let key = SigningKey::from_scalar(provider, &scalar).unwrap();
    assert_eq!(key.public().spki_der(), hex_field(signing, "spki_der"));
    assert_eq!(
        key.public().key_id_hex(),
        signing["key_id"].as_str().unwrap()
    );
    let public_key = key.public();
    public_key
        .verify(
            &hex_field(&v, "session_signature_message"),
            &hex_field(&v, "session_signature_der"),
        )
        .unwrap();
    public_key
        .verify(&hex_field(&v, "leaf"), &hex_field(&v, "leaf_signature_der"))
        .unwrap();
    let checkpoint = &v["checkpoint"];
    public_key
        .verify(
            checkpoint["body"].as_str().unwrap().as_bytes(),
            &hex_field(checkpoint, "signature_der"),
        )
        .unwrap();
    // And ours verify under the key the other library derived.
    let python_key = PublicKey::from_spki_der(provider, &hex_field(signing, "spki_der")).unwrap();
    python_key
        .verify(b"message", &key.sign(b"message").unwrap())
        .unwrap();
}

crate::tests_for_every_provider!(
    rfc9180_vector_for_this_suite_receiver_and_sender,
    protocol_v1_vector_matches_byte_for_byte,
);
