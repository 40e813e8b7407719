//! The on-disk framing of a log record: a leaf (the protocol crate's
//! [`Leaf`], protocol §4) and its signature.
//!
//! ```text
//! record    = length (u32 BE) || crc32 (u32 BE) || payload
//! payload   = leaf (57 bytes) || leaf_signature (DER, 8..=72 bytes)
//! crc32     = CRC-32/ISO-HDLC over length || payload
//! ```
//! A record's position in the file is its log index. The length and checksum let a
//! reader tell a torn tail (a crash mid-append) from damage to history.

use wasm_hypervisor_protocol::leaf::{LEAF_LEN, Leaf};

/// Bytes before a record's payload.
pub const RECORD_HEADER_LEN: usize = 8;
/// Shortest and longest DER ECDSA P-256 signatures.
pub const MIN_SIGNATURE_LEN: usize = 8;
pub const MAX_SIGNATURE_LEN: usize = 72;

/// A leaf and the server's signature over its 57 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub leaf: Leaf,
    pub signature: Vec<u8>,
}

/// Why bytes are not a record.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, valid record of this many bytes.
    Record(LogRecord, usize),
    /// The bytes end before the record does: a torn append.
    Incomplete,
    /// A complete record whose framing or contents are wrong.
    Invalid(String),
}

impl LogRecord {
    /// Bytes the framed record takes on disk.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + LEAF_LEN + self.signature.len()
    }

    /// Appends the framed record to `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        assert!(
            (MIN_SIGNATURE_LEN..=MAX_SIGNATURE_LEN).contains(&self.signature.len()),
            "a DER P-256 signature is 8..=72 bytes"
        );
        let length = (LEAF_LEN + self.signature.len()) as u32;
        let leaf = self.leaf.to_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&length.to_be_bytes());
        crc.update(&leaf);
        crc.update(&self.signature);
        out.extend_from_slice(&length.to_be_bytes());
        out.extend_from_slice(&crc.finalize().to_be_bytes());
        out.extend_from_slice(&leaf);
        out.extend_from_slice(&self.signature);
    }

    /// Reads the record at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Decoded {
        if bytes.len() < RECORD_HEADER_LEN {
            return Decoded::Incomplete;
        }
        let length = u32::from_be_bytes(bytes[0..4].try_into().expect("4 bytes")) as usize;
        let stored_crc = u32::from_be_bytes(bytes[4..8].try_into().expect("4 bytes"));
        let valid_lengths = LEAF_LEN + MIN_SIGNATURE_LEN..=LEAF_LEN + MAX_SIGNATURE_LEN;
        if !valid_lengths.contains(&length) {
            return Decoded::Invalid(format!("record length {length} is out of range"));
        }
        let Some(payload) = bytes.get(RECORD_HEADER_LEN..RECORD_HEADER_LEN + length) else {
            return Decoded::Incomplete;
        };
        let mut crc = crc32fast::Hasher::new();
        crc.update(&bytes[0..4]);
        crc.update(payload);
        if crc.finalize() != stored_crc {
            return Decoded::Invalid("record checksum does not match".to_owned());
        }
        let Some(leaf) = Leaf::parse(&payload[..LEAF_LEN]) else {
            return Decoded::Invalid("leaf has an unknown version byte".to_owned());
        };
        Decoded::Record(
            LogRecord {
                leaf,
                signature: payload[LEAF_LEN..].to_vec(),
            },
            RECORD_HEADER_LEN + length,
        )
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn sample() -> LogRecord {
        LogRecord {
            leaf: Leaf {
                execution_id: Uuid::from_bytes([0xab; 16]),
                timestamp_ms: 1_795_000_000_000,
                commitment: [0xcd; 32],
            },
            signature: vec![0x30; 70],
        }
    }

    #[test]
    fn records_round_trip() {
        let mut out = Vec::new();
        sample().encode_into(&mut out);
        assert_eq!(
            LogRecord::decode(&out),
            Decoded::Record(sample(), out.len())
        );
    }

    #[test]
    fn a_cut_record_is_incomplete() {
        let mut out = Vec::new();
        sample().encode_into(&mut out);
        for cut in 0..out.len() {
            assert_eq!(
                LogRecord::decode(&out[..cut]),
                Decoded::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn any_flipped_byte_makes_the_record_invalid() {
        let mut out = Vec::new();
        sample().encode_into(&mut out);
        for at in 0..out.len() {
            let mut damaged = out.clone();
            damaged[at] ^= 0x01;
            assert!(
                !matches!(LogRecord::decode(&damaged), Decoded::Record(..)),
                "flip at {at} went unnoticed"
            );
        }
    }
}
