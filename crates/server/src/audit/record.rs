//! The on-disk framing of a log record: a leaf (the protocol crate's
//! [`Leaf`], protocol §4) and its signature.
//!
//! ```text
//! record    = word (u32 BE) || crc32 (u32 BE) || payload
//! payload   = leaf (57 bytes) || leaf_signature (DER, 8..=72 bytes)
//! crc32     = CRC-32/ISO-HDLC over word || payload
//!
//! word, v2  = last (1 bit) || batch (15 bits) || length (16 bits)
//! word, v1  = length (32 bits)
//! ```
//! `length` is the payload's, 65..=129, so a record header is never eight zero
//! bytes: in a v2 file, whose tail is preallocated zeros, an all-zero header is
//! where the log ends. `batch` numbers the writer's group commits (modulo 2^15) and
//! `last` marks the final record of one; recovery uses them to tell a torn final
//! batch (never acknowledged) from damage to a batch that was synced before a later
//! one was written (`super::file::recovery`). A record's position in the file is its log
//! index; the checksum tells a torn or flipped record from a valid one.

use wasm_hypervisor_protocol::leaf::{LEAF_LEN, Leaf};

/// Bytes before a record's payload.
pub const RECORD_HEADER_LEN: usize = 8;
/// Shortest and longest DER ECDSA P-256 signatures.
pub const MIN_SIGNATURE_LEN: usize = 8;
pub const MAX_SIGNATURE_LEN: usize = 72;
/// Bytes of the longest framed record.
pub const MAX_RECORD_LEN: usize = RECORD_HEADER_LEN + LEAF_LEN + MAX_SIGNATURE_LEN;
/// Batch numbers wrap at this value (15 bits).
pub const BATCH_MODULUS: u16 = 1 << 15;

/// The two versions of the framing (the file header names which one a file uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// The length fills the whole word; no batch marks.
    V1,
    /// The word also carries the batch mark.
    V2,
}

/// Where a record stands in the writer's group commits (v2; all zero in v1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BatchMark {
    /// The batch's number, modulo [`BATCH_MODULUS`].
    pub batch: u16,
    /// Whether this is the batch's final record.
    pub last: bool,
}

impl BatchMark {
    /// The number of the batch after `batch`.
    pub fn next_batch(batch: u16) -> u16 {
        (batch + 1) % BATCH_MODULUS
    }
}

/// A leaf and the server's signature over its 57 bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    pub leaf: Leaf,
    pub signature: Vec<u8>,
}

/// What the bytes at a position are.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded {
    /// A whole, valid record of this many bytes.
    Record(LogRecord, BatchMark, usize),
    /// Eight zero bytes (v2): no record starts here.
    Zeros,
    /// The bytes end before the record does: a torn append.
    Incomplete,
    /// A complete record whose framing or contents are wrong.
    Invalid(String),
}

impl LogRecord {
    /// Bytes the framed record takes on disk (the same in both versions).
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + LEAF_LEN + self.signature.len()
    }

    /// Appends the record, framed as v2 with its batch mark, to `out`.
    pub fn encode_into(&self, mark: BatchMark, out: &mut Vec<u8>) {
        assert!(mark.batch < BATCH_MODULUS, "a batch number has 15 bits");
        let word = (u32::from(mark.last) << 31) | (u32::from(mark.batch) << 16);
        self.encode_word(word, out);
    }

    /// Appends the record, framed as v1, to `out`: for converting and testing
    /// files of earlier releases.
    pub fn encode_v1_into(&self, out: &mut Vec<u8>) {
        self.encode_word(0, out);
    }

    fn encode_word(&self, high: u32, out: &mut Vec<u8>) {
        assert!(
            (MIN_SIGNATURE_LEN..=MAX_SIGNATURE_LEN).contains(&self.signature.len()),
            "a DER P-256 signature is 8..=72 bytes"
        );
        let word = high | (LEAF_LEN + self.signature.len()) as u32;
        let leaf = self.leaf.to_bytes();
        let mut crc = crc32fast::Hasher::new();
        crc.update(&word.to_be_bytes());
        crc.update(&leaf);
        crc.update(&self.signature);
        out.extend_from_slice(&word.to_be_bytes());
        out.extend_from_slice(&crc.finalize().to_be_bytes());
        out.extend_from_slice(&leaf);
        out.extend_from_slice(&self.signature);
    }

    /// Reads the record at the start of `bytes`, framed as `version`.
    pub fn decode(bytes: &[u8], version: Version) -> Decoded {
        if version == Version::V2
            && bytes.len() >= RECORD_HEADER_LEN
            && bytes[..RECORD_HEADER_LEN].iter().all(|&b| b == 0)
        {
            return Decoded::Zeros;
        }
        let (Some(word), Some(stored_crc)) = (bytes.get(0..4), bytes.get(4..8)) else {
            return Decoded::Incomplete;
        };
        let word = u32::from_be_bytes(word.try_into().expect("4 bytes"));
        let stored_crc = u32::from_be_bytes(stored_crc.try_into().expect("4 bytes"));
        let (length, mark) = match version {
            Version::V1 => (word as usize, BatchMark::default()),
            Version::V2 => (
                (word & 0xffff) as usize,
                BatchMark {
                    batch: ((word >> 16) & 0x7fff) as u16,
                    last: word >> 31 == 1,
                },
            ),
        };
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
            mark,
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

    const MARK: BatchMark = BatchMark {
        batch: 0x5a5a,
        last: true,
    };

    #[test]
    fn records_round_trip() {
        let mut out = Vec::new();
        sample().encode_into(MARK, &mut out);
        assert_eq!(
            LogRecord::decode(&out, Version::V2),
            Decoded::Record(sample(), MARK, out.len())
        );
        let mut v1 = Vec::new();
        sample().encode_v1_into(&mut v1);
        assert_eq!(
            LogRecord::decode(&v1, Version::V1),
            Decoded::Record(sample(), BatchMark::default(), v1.len())
        );
    }

    #[test]
    fn a_v2_record_is_not_a_v1_record() {
        let mut out = Vec::new();
        sample().encode_into(MARK, &mut out);
        assert!(matches!(
            LogRecord::decode(&out, Version::V1),
            Decoded::Invalid(_)
        ));
    }

    #[test]
    fn eight_zero_bytes_are_zeros_in_v2_and_invalid_in_v1() {
        assert_eq!(LogRecord::decode(&[0; 200], Version::V2), Decoded::Zeros);
        assert!(matches!(
            LogRecord::decode(&[0; 200], Version::V1),
            Decoded::Invalid(_)
        ));
    }

    #[test]
    fn a_cut_record_is_incomplete() {
        let mut out = Vec::new();
        sample().encode_into(MARK, &mut out);
        for cut in 0..out.len() {
            assert_eq!(
                LogRecord::decode(&out[..cut], Version::V2),
                Decoded::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn any_flipped_byte_makes_the_record_invalid() {
        for version in [Version::V1, Version::V2] {
            let mut out = Vec::new();
            match version {
                Version::V1 => sample().encode_v1_into(&mut out),
                Version::V2 => sample().encode_into(MARK, &mut out),
            }
            for at in 0..out.len() {
                let mut damaged = out.clone();
                damaged[at] ^= 0x01;
                assert!(
                    !matches!(LogRecord::decode(&damaged, version), Decoded::Record(..)),
                    "{version:?}: flip at {at} went unnoticed"
                );
            }
        }
    }
}
