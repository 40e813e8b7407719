//! The audit-log leaf (protocol §4): what the log commits to for one execution,
//! and its RFC 9162 leaf hash.
//!
//! ```text
//! leaf      = 0x01 || execution_id (16 bytes) || timestamp_ms (u64 BE) || commitment (32)
//! leaf_hash = SHA-256(0x00 || leaf)                                  (RFC 9162 §2.1.1)
//! ```
//!
//! Pure. How a server frames leaves on disk is its own business (the server's
//! `audit::record`); this is what every client recomputes.

use uuid::Uuid;

use crate::merkle;

/// Bytes in a leaf.
pub const LEAF_LEN: usize = 57;
/// Version byte that starts every v1 leaf.
pub const LEAF_VERSION: u8 = 0x01;

/// One entry of the log, as the tree sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leaf {
    pub execution_id: Uuid,
    pub timestamp_ms: u64,
    pub commitment: [u8; 32],
}

impl Leaf {
    /// The 57 bytes the leaf signature covers.
    pub fn to_bytes(&self) -> [u8; LEAF_LEN] {
        let mut out = [0u8; LEAF_LEN];
        out[0] = LEAF_VERSION;
        out[1..17].copy_from_slice(self.execution_id.as_bytes());
        out[17..25].copy_from_slice(&self.timestamp_ms.to_be_bytes());
        out[25..57].copy_from_slice(&self.commitment);
        out
    }

    /// Reads a leaf: exactly 57 bytes starting with the v1 version byte.
    pub fn parse(bytes: &[u8]) -> Option<Leaf> {
        if bytes.len() != LEAF_LEN || bytes[0] != LEAF_VERSION {
            return None;
        }
        Some(Leaf {
            execution_id: Uuid::from_slice(&bytes[1..17]).ok()?,
            timestamp_ms: u64::from_be_bytes(bytes[17..25].try_into().ok()?),
            commitment: bytes[25..57].try_into().ok()?,
        })
    }

    /// `SHA-256(0x00 || leaf)`, RFC 9162 §2.1.1.
    pub fn hash(&self) -> merkle::Hash {
        merkle::leaf_hash(&self.to_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Leaf {
        Leaf {
            execution_id: Uuid::from_bytes([0xab; 16]),
            timestamp_ms: 1_795_000_000_000,
            commitment: [0xcd; 32],
        }
    }

    #[test]
    fn leaf_layout_is_the_protocol_one() {
        let bytes = sample().to_bytes();
        assert_eq!(bytes[0], 0x01);
        assert_eq!(&bytes[1..17], &[0xab; 16]);
        assert_eq!(&bytes[17..25], &1_795_000_000_000u64.to_be_bytes());
        assert_eq!(&bytes[25..], &[0xcd; 32]);
        assert_eq!(Leaf::parse(&bytes), Some(sample()));
    }

    #[test]
    fn a_leaf_of_another_version_or_length_is_not_read() {
        let mut bytes = sample().to_bytes();
        assert_eq!(Leaf::parse(&bytes[..56]), None);
        bytes[0] = 0x02;
        assert_eq!(Leaf::parse(&bytes), None);
    }

    #[test]
    fn the_leaf_hash_is_sha256_of_zero_then_the_leaf() {
        let mut prefixed = vec![0x00];
        prefixed.extend_from_slice(&sample().to_bytes());
        assert_eq!(sample().hash(), crate::digest::sha256(&prefixed));
    }
}
