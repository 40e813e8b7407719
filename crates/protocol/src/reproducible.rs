//! Reproducible executions (protocol v1.2 §R) as far as they are bytes any
//! implementation must agree on: the stream a deterministic guest's random bytes
//! come from ([`SeedStream`]), and the replay bundle ([`Bundle`]) the CLI writes
//! next to a receipt and `wasm-hypervisor replay` reads.
//!
//! The stream is SHA-256 in counter mode over the request's seed, so that a
//! replayer in any language reproduces it with nothing but SHA-256 (PROTOCOL.md,
//! "Reproducible executions"):
//!
//! ```text
//! block(label, i) = SHA-256("wasm-hypervisor seed stream v1" || 0x00 || label || 0x00
//!                           || seed || u64be(i))
//! stream(label)   = block(label, 0) || block(label, 1) || ...
//! ```

use serde::{Deserialize, Serialize};

use crate::digest::sha256_parts;
use crate::encoding::Base64;
use crate::receipt::Receipt;

/// The domain separator of every block of the stream.
const STREAM_DOMAIN: &[u8] = b"wasm-hypervisor seed stream v1";

/// What the stream's label names: which of the guest's random sources it feeds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamLabel {
    /// WASI's `random_get` (preview1) and `wasi:random/random` (preview2).
    Secure,
    /// `wasi:random/insecure`.
    Insecure,
    /// `wasi:random/insecure-seed`: the first 16 bytes, little-endian.
    InsecureSeed,
}

impl StreamLabel {
    fn as_bytes(self) -> &'static [u8] {
        match self {
            StreamLabel::Secure => b"secure",
            StreamLabel::Insecure => b"insecure",
            StreamLabel::InsecureSeed => b"insecure-seed",
        }
    }
}

/// The bytes of one labelled stream of a seed, read in order.
pub struct SeedStream {
    seed: [u8; 32],
    label: StreamLabel,
    counter: u64,
    block: [u8; 32],
    /// Bytes of `block` already handed out.
    used: usize,
}

impl SeedStream {
    pub fn new(seed: [u8; 32], label: StreamLabel) -> SeedStream {
        SeedStream {
            seed,
            label,
            counter: 0,
            block: [0; 32],
            used: 32,
        }
    }

    /// Fills `out` with the stream's next bytes.
    pub fn fill(&mut self, out: &mut [u8]) {
        for byte in out {
            if self.used == self.block.len() {
                self.block = sha256_parts(&[
                    STREAM_DOMAIN,
                    &[0],
                    self.label.as_bytes(),
                    &[0],
                    &self.seed,
                    &self.counter.to_be_bytes(),
                ]);
                self.counter = self.counter.wrapping_add(1);
                self.used = 0;
            }
            *byte = self.block[self.used];
            self.used += 1;
        }
    }
}

/// The `format` of a replay bundle this version writes and reads.
pub const BUNDLE_FORMAT: &str = "wasm-hypervisor replay bundle v1";

/// A replay bundle (protocol v1.2 §R): a receipt and the two plaintexts its
/// commitment binds, exactly as sealed. The plaintexts are the client's secrets:
/// whoever holds a bundle can read the request and the result.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bundle {
    /// Always [`BUNDLE_FORMAT`].
    pub format: String,
    pub receipt: Receipt,
    /// The request plaintext, JSON or CBOR, as it was sealed.
    pub request_plaintext: Base64<Vec<u8>>,
    /// The result plaintext, in the request's format, as it was sealed.
    pub result_plaintext: Base64<Vec<u8>>,
}

/// Plaintexts are never printed.
impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bundle")
            .field("format", &self.format)
            .field("request_bytes", &self.request_plaintext.0.len())
            .field("result_bytes", &self.result_plaintext.0.len())
            .finish()
    }
}

impl Bundle {
    pub fn new(receipt: Receipt, request_plaintext: Vec<u8>, result_plaintext: Vec<u8>) -> Bundle {
        Bundle {
            format: BUNDLE_FORMAT.to_owned(),
            receipt,
            request_plaintext: Base64(request_plaintext),
            result_plaintext: Base64(result_plaintext),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256;

    #[test]
    fn the_stream_is_sha256_in_counter_mode_whatever_the_read_sizes() {
        let seed = [7; 32];
        let mut whole = [0u8; 100];
        SeedStream::new(seed, StreamLabel::Secure).fill(&mut whole);
        let mut pieces = [0u8; 100];
        let mut stream = SeedStream::new(seed, StreamLabel::Secure);
        for chunk in pieces.chunks_mut(7) {
            stream.fill(chunk);
        }
        assert_eq!(whole, pieces);
        let mut first = Vec::new();
        first.extend_from_slice(b"wasm-hypervisor seed stream v1\0secure\0");
        first.extend_from_slice(&seed);
        first.extend_from_slice(&0u64.to_be_bytes());
        assert_eq!(whole[..32], sha256(&first));
        let mut insecure = [0u8; 32];
        SeedStream::new(seed, StreamLabel::Insecure).fill(&mut insecure);
        assert_ne!(whole[..32], insecure);
    }
}
