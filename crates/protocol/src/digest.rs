//! SHA-256 where the protocol fixes it, whatever the crypto provider: the RFC 9162
//! hashes of the log ([`crate::merkle`]) and the digests that name things (a
//! module's `module_sha256`, a bearer token's digest, a key id).
//!
//! It is `sha2` on every provider: hundreds of thousands of these hashes are taken
//! when a server starts, and they must be the same bytes everywhere. The providers'
//! own SHA-256 (HPKE's key schedule, the commitment) is checked against it below.

use sha2::{Digest, Sha256};

/// `SHA-256(bytes)`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// `SHA-256(parts[0] || parts[1] || ...)`, without joining them first.
pub fn sha256_parts(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hasher.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::provider::Provider;

    fn sha256_is_every_providers_sha256(provider: Provider) {
        for input in [&b""[..], b"abc", &[0x5a; 1000]] {
            assert_eq!(sha256(input), provider.sha256(&[input]));
            assert_eq!(
                sha256_parts(&[input, b"x"]),
                provider.sha256(&[input, b"x"])
            );
        }
        // FIPS 180-2, appendix B.1.
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    crate::tests_for_every_provider!(sha256_is_every_providers_sha256);
}
