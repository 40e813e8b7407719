//! The wasm-hypervisor protocol in code, shared by the server and every client:
//! the wire types, HPKE sealing of requests, sealing of results, the commitment,
//! ECDSA signatures, receipts and their checks, the RFC 9162 proofs and signed
//! checkpoints of the audit log, and the log in the C2SP transparency formats of
//! protocol v1.2 (signed notes, tiles, tlog-proofs, policies), over a choice of
//! crypto providers.
//!
//! Pure: no I/O, no clock, no async runtime, so it builds for
//! `wasm32-unknown-unknown` (with the `rustcrypto` provider) and a browser client
//! can use it as is. The wire contract is `shared/spec/protocol-v1.md` and the
//! repository's PROTOCOL.md; the vectors in `tests/vectors/` pin every byte, on
//! every provider.
//!
//! # Layout
//! - [`provider`]: the crypto provider interface and the providers compiled in
//!   (`aws-lc`, `rustcrypto`).
//! - [`hpke`]: RFC 9180 base mode for the protocol's one suite, over a provider.
//! - [`envelope`]: sealing and opening requests, result keys and sealing, the
//!   commitment, the session-signature message.
//! - [`signing`]: ECDSA P-256 signing keys (PKCS#8) and public keys (SPKI, key id).
//! - [`digest`]: SHA-256 where the protocol fixes it, the same on every provider.
//! - [`encoding`]: base64 and hex fields of wire documents, typed.
//! - [`wire`]: the HTTP bodies (sessions and session batches, executions, keys,
//!   health, the log), and the check of a batch's signature.
//! - [`binary`]: the binary `/execute` body and answer (protocol v1.1 §B).
//! - [`payload`]: the sealed documents: the request and result plaintexts.
//! - [`plaintext`]: those documents in CBOR (protocol v1.1 §C), and which format a
//!   plaintext is.
//! - [`request`]: the request plaintext read once, in either format, into a checked
//!   [`Request`](request::Request) or a refusal naming the rule it breaks.
//! - [`cbor`]: the strict CBOR reader and deterministic writer under `plaintext`.
//! - [`leaf`]: the 57-byte audit-log leaf and its hash.
//! - [`merkle`]: the RFC 9162 tree, its proofs and their verifiers.
//! - [`note`]: C2SP signed notes, verifier keys, Ed25519 note keys, the P-256
//!   (type `0x02`) line and cosignature/v1 (type `0x04`) (protocol v1.2 §T1, §T2, §T5).
//! - [`checkpoint`]: the C2SP checkpoint body of a signed tree head, and the
//!   checkpoint as a signed note (protocol v1.2 §T2).
//! - [`tiles`]: C2SP tlog-tiles: tile paths, hash tiles, entry bundles, and proofs
//!   computed from tiles alone (protocol v1.2 §T3).
//! - [`tlog_proof`]: C2SP tlog-proofs: format, strict parse, and verification
//!   under a policy (protocol v1.2 §T4).
//! - [`policy`]: C2SP tlog-policy files and the quorum check of a checkpoint note
//!   (protocol v1.2 §T6).
//! - [`receipt`]: what a client keeps to prove an execution, and the checks.
//! - [`reproducible`]: deterministic executions' seed stream and the replay
//!   bundle (protocol v1.2 §R).

pub mod binary;
pub mod cbor;
pub mod checkpoint;
pub mod digest;
pub mod encoding;
pub mod envelope;
pub mod hpke;
pub mod leaf;
pub mod merkle;
pub mod note;
pub mod payload;
pub mod plaintext;
pub mod policy;
pub mod provider;
pub mod receipt;
pub mod reproducible;
pub mod request;
pub mod signing;
pub mod tiles;
pub mod tlog_proof;
pub mod wire;

#[cfg(test)]
mod known_answer_tests;

/// Turns functions `fn name(provider: Provider)` into one `#[test]` per compiled
/// provider: `aws_lc::name` and `rustcrypto::name`, so a failure names the provider.
#[cfg(test)]
#[macro_export]
macro_rules! tests_for_every_provider {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "aws-lc")]
        mod aws_lc {
            $(
                #[test]
                fn $test() {
                    super::$test($crate::provider::Provider::aws_lc())
                }
            )*
        }
        #[cfg(feature = "rustcrypto")]
        mod rustcrypto {
            $(
                #[test]
                fn $test() {
                    super::$test($crate::provider::Provider::rustcrypto())
                }
            )*
        }
    };
}
