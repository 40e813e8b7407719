//! Known-answer tests from vectors computed outside this project, run on every
//! compiled provider: the official RFC 9180 vector for this exact suite, a
//! protocol-v1 vector made with Python's pyhpke and cryptography
//! (`tools/vectors/protocol_vector.py`), and RFC 8032's Ed25519 vectors.

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

/// RFC 8032 §7.1, TEST 1 to 3: secret key (the seed), public key, message,
/// signature.
const RFC8032_ED25519: [[&str; 4]; 3] = [
    [
        "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        "",
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
    ],
    [
        "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
        "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
        "72",
        "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
    ],
    [
        "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
        "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
        "af82",
        "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
    ],
];

/// Each seed gives the RFC's public key and signature, which verifies; a signature
/// of another message, a flipped bit and `S + L` (the same signature with a
/// non-canonical scalar) do not.
fn rfc8032_ed25519_vectors_sign_and_verify(provider: Provider) {
    for [seed, public, message, signature] in RFC8032_ED25519 {
        let seed: [u8; 32] = hex::decode(seed).unwrap().try_into().unwrap();
        let message = hex::decode(message).unwrap();
        let key = provider.ed25519_key_from_seed(&seed).unwrap();
        assert_eq!(hex::encode(key.public_key()), public);
        let signed = key.sign(&message).unwrap();
        assert_eq!(hex::encode(signed), signature);
        assert_eq!(*key.seed().unwrap(), seed);
        provider
            .verify_ed25519(key.public_key(), &message, &signed)
            .unwrap();
        let mut longer = message.clone();
        longer.push(0);
        assert!(
            provider
                .verify_ed25519(key.public_key(), &longer, &signed)
                .is_err()
        );
        let mut flipped = signed;
        flipped[10] ^= 0x04;
        assert!(
            provider
                .verify_ed25519(key.public_key(), &message, &flipped)
                .is_err()
        );
        assert!(
            provider
                .verify_ed25519(key.public_key(), &message, &add_group_order(&signed))
                .is_err()
        );
    }
    let fresh = provider.generate_ed25519_key().unwrap();
    let again = provider
        .ed25519_key_from_seed(&fresh.seed().unwrap())
        .unwrap();
    assert_eq!(again.public_key(), fresh.public_key());
}

/// The signature with `S + L` in place of `S` (L the group order, RFC 8032 §5.1):
/// the same equation, a non-canonical encoding every verifier must refuse.
fn add_group_order(signature: &[u8; 64]) -> [u8; 64] {
    const L: [u8; 32] = [
        0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde,
        0x14, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
    ];
    let mut out = *signature;
    let mut carry = 0u16;
    for i in 0..32 {
        let sum = u16::from(out[32 + i]) + u16::from(L[i]) + carry;
        out[32 + i] = sum as u8;
        carry = sum >> 8;
    }
    out
}

crate::tests_for_every_provider!(
    rfc9180_vector_for_this_suite_receiver_and_sender,
    protocol_v1_vector_matches_byte_for_byte,
    rfc8032_ed25519_vectors_sign_and_verify,
);
