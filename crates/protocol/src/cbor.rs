//! A strict reader and a deterministic writer of the CBOR subset protocol v1.1 §C
//! uses (RFC 8949): unsigned and negative integers, byte and text strings, arrays,
//! maps, `false`, `true` and `null`.
//!
//! Hand-written rather than a crate's: the plaintext's exact bytes are committed
//! to, so the reader must refuse everything two readers could see differently, and
//! the writer must produce one encoding per value. What the reader refuses, each
//! with a [`CborError`]:
//! - indefinite lengths (RFC 8949 §3.2.2) and the reserved additional information
//!   values 28–30 (§3);
//! - heads that are not the shortest for their argument (§4.2.1's first rule:
//!   "preferred serialization" is required, so every value has one encoding);
//! - tags (major type 6), floating-point numbers, `undefined` and every other
//!   simple value (major type 7 other than 20, 21, 22);
//! - text strings that are not UTF-8 (§3.1, "invalid" CBOR);
//! - lengths that run past the end of the input (an array or map may not claim
//!   more items than there are bytes left);
//! - anything after the top-level item ([`Reader::finish`]).
//!
//! The writer emits RFC 8949 §4.2.1 core deterministic encoding: shortest heads,
//! definite lengths, and map keys sorted by the bytewise order of their encodings
//! ([`Item::Map`] sorts; for text keys that is shorter keys first, then bytewise).

use std::fmt;

/// Why bytes are not the CBOR this module reads. Offsets count from the start of
/// the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// The input ends inside an item.
    #[error("CBOR ends early at byte {0}")]
    Truncated(usize),
    /// An indefinite-length string, array or map (refused: definite lengths only).
    #[error("indefinite length at byte {0} (definite lengths only)")]
    Indefinite(usize),
    /// Additional information 28, 29 or 30: not well-formed.
    #[error("reserved additional information at byte {0}")]
    Reserved(usize),
    /// A head whose argument fits a shorter head.
    #[error("a head at byte {0} is not the shortest for its value")]
    NotShortest(usize),
    /// A tag, float, `undefined` or other simple value.
    #[error(
        "unsupported CBOR item at byte {0} (tags, floats and simple values other than false, true and null are refused)"
    )]
    Unsupported(usize),
    /// An item of another type than the document has there.
    #[error("expected {expected} at byte {at}")]
    Unexpected { at: usize, expected: &'static str },
    /// A text string that is not UTF-8.
    #[error("text string at byte {0} is not UTF-8")]
    Utf8(usize),
    /// An integer out of the range of its field.
    #[error("integer at byte {0} is out of range")]
    OutOfRange(usize),
    /// Bytes after the top-level item.
    #[error("{0} trailing bytes after the top-level item")]
    Trailing(usize),
    /// Nesting deeper than the reader follows when it skips an item.
    #[error("nesting deeper than {MAX_SKIP_DEPTH} levels at byte {0}")]
    TooDeep(usize),
    /// A map key the document does not have.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// A map key given twice.
    #[error("duplicate field `{0}`")]
    DuplicateField(String),
    /// A required field is absent.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A value that is well-formed CBOR but not what its field holds.
    #[error("{0}")]
    Invalid(String),
}

/// How deep [`Reader::skip`] follows nested arrays and maps.
pub const MAX_SKIP_DEPTH: usize = 16;

/// The CBOR major types (RFC 8949 §3.1).
pub(crate) mod major {
    pub(crate) const UNSIGNED: u8 = 0;
    pub(crate) const NEGATIVE: u8 = 1;
    pub(crate) const BYTES: u8 = 2;
    pub(crate) const TEXT: u8 = 3;
    pub(crate) const ARRAY: u8 = 4;
    pub(crate) const MAP: u8 = 5;
    pub(crate) const TAG: u8 = 6;
    pub(crate) const SIMPLE: u8 = 7;
}

const FALSE: u8 = 0xF4;
const TRUE: u8 = 0xF5;
const NULL: u8 = 0xF6;

/// Reads items from a buffer, strictly; byte and text strings are borrowed from it.
pub struct Reader<'a> {
    buffer: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buffer: &'a [u8]) -> Reader<'a> {
        Reader {
            buffer,
            position: 0,
        }
    }

    /// Where the next item starts.
    pub fn position(&self) -> usize {
        self.position
    }

    fn remaining(&self) -> usize {
        self.buffer.len() - self.position
    }

    /// The next byte, not consumed.
    pub fn peek(&self) -> Option<u8> {
        self.buffer.get(self.position).copied()
    }

    fn take(&mut self, count: usize) -> Result<&'a [u8], CborError> {
        if count > self.remaining() {
            return Err(CborError::Truncated(self.buffer.len()));
        }
        let bytes = &self.buffer[self.position..self.position + count];
        self.position += count;
        Ok(bytes)
    }

    /// RFC 8949 §3: the initial byte and its argument. Refuses indefinite lengths,
    /// reserved values and non-shortest arguments; major type 7 is returned with
    /// its additional information as the argument (no float is ever decoded).
    fn head(&mut self) -> Result<(u8, u64), CborError> {
        let at = self.position;
        let initial = self.take(1)?[0];
        let (major, info) = (initial >> 5, initial & 0x1F);
        if major == major::SIMPLE {
            return match initial {
                FALSE | TRUE | NULL => Ok((major, u64::from(info))),
                _ => Err(CborError::Unsupported(at)),
            };
        }
        if major == major::TAG {
            return Err(CborError::Unsupported(at));
        }
        let argument = match info {
            0..=23 => u64::from(info),
            24 => {
                let value = u64::from(self.take(1)?[0]);
                if value < 24 {
                    return Err(CborError::NotShortest(at));
                }
                value
            }
            25 => {
                let value = u64::from(u16::from_be_bytes(self.array()?));
                if value <= 0xFF {
                    return Err(CborError::NotShortest(at));
                }
                value
            }
            26 => {
                let value = u64::from(u32::from_be_bytes(self.array()?));
                if value <= 0xFFFF {
                    return Err(CborError::NotShortest(at));
                }
                value
            }
            27 => {
                let value = u64::from_be_bytes(self.array()?);
                if value <= 0xFFFF_FFFF {
                    return Err(CborError::NotShortest(at));
                }
                value
            }
            28..=30 => return Err(CborError::Reserved(at)),
            _ => return Err(CborError::Indefinite(at)),
        };
        Ok((major, argument))
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], CborError> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn expect(&mut self, wanted: u8, expected: &'static str) -> Result<u64, CborError> {
        let at = self.position;
        let (major, argument) = self.head()?;
        if major != wanted {
            return Err(CborError::Unexpected { at, expected });
        }
        Ok(argument)
    }

    /// An unsigned integer (major type 0).
    pub fn unsigned(&mut self) -> Result<u64, CborError> {
        self.expect(major::UNSIGNED, "an unsigned integer")
    }

    /// An integer of either sign that fits an `i64`.
    pub fn integer(&mut self) -> Result<i64, CborError> {
        let at = self.position;
        let (major, argument) = self.head()?;
        let out_of_range = || CborError::OutOfRange(at);
        match major {
            major::UNSIGNED => i64::try_from(argument).map_err(|_| out_of_range()),
            // -1 - argument
            major::NEGATIVE => i64::try_from(argument)
                .map(|value| -1 - value)
                .map_err(|_| out_of_range()),
            _ => Err(CborError::Unexpected {
                at,
                expected: "an integer",
            }),
        }
    }

    /// A byte string (major type 2), borrowed from the input.
    pub fn bytes(&mut self) -> Result<&'a [u8], CborError> {
        let length = self.expect(major::BYTES, "a byte string")?;
        self.take(usize::try_from(length).unwrap_or(usize::MAX))
    }

    /// A text string (major type 3), borrowed from the input.
    pub fn text(&mut self) -> Result<&'a str, CborError> {
        let at = self.position;
        let length = self.expect(major::TEXT, "a text string")?;
        let bytes = self.take(usize::try_from(length).unwrap_or(usize::MAX))?;
        std::str::from_utf8(bytes).map_err(|_| CborError::Utf8(at))
    }

    /// The head of an array: its number of items, each at least a byte.
    pub fn array_len(&mut self) -> Result<usize, CborError> {
        let length = self.expect(major::ARRAY, "an array")?;
        self.count(length, 1)
    }

    /// The head of a map: its number of pairs, each at least two bytes.
    pub fn map_len(&mut self) -> Result<usize, CborError> {
        let length = self.expect(major::MAP, "a map")?;
        self.count(length, 2)
    }

    fn count(&self, length: u64, bytes_each: usize) -> Result<usize, CborError> {
        usize::try_from(length)
            .ok()
            .filter(|length| length.saturating_mul(bytes_each) <= self.remaining())
            .ok_or(CborError::Truncated(self.buffer.len()))
    }

    /// `false` or `true`.
    pub fn boolean(&mut self) -> Result<bool, CborError> {
        match self.peek() {
            Some(FALSE) => {
                self.position += 1;
                Ok(false)
            }
            Some(TRUE) => {
                self.position += 1;
                Ok(true)
            }
            Some(_) => Err(CborError::Unexpected {
                at: self.position,
                expected: "a boolean",
            }),
            None => Err(CborError::Truncated(self.buffer.len())),
        }
    }

    /// Consumes a `null` if one comes next.
    pub fn null(&mut self) -> bool {
        if self.peek() == Some(NULL) {
            self.position += 1;
            true
        } else {
            false
        }
    }

    /// Skips one well-formed item of the accepted subset, nested at most
    /// [`MAX_SKIP_DEPTH`] deep.
    pub fn skip(&mut self) -> Result<(), CborError> {
        self.skip_at(0)
    }

    fn skip_at(&mut self, depth: usize) -> Result<(), CborError> {
        if depth > MAX_SKIP_DEPTH {
            return Err(CborError::TooDeep(self.position));
        }
        let at = self.position;
        let (major, argument) = self.head()?;
        match major {
            major::BYTES => {
                self.take(usize::try_from(argument).unwrap_or(usize::MAX))?;
            }
            major::TEXT => {
                let bytes = self.take(usize::try_from(argument).unwrap_or(usize::MAX))?;
                std::str::from_utf8(bytes).map_err(|_| CborError::Utf8(at))?;
            }
            major::ARRAY => {
                for _ in 0..self.count(argument, 1)? {
                    self.skip_at(depth + 1)?;
                }
            }
            major::MAP => {
                for _ in 0..self.count(argument, 2)? {
                    self.skip_at(depth + 1)?;
                    self.skip_at(depth + 1)?;
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// Ends reading: nothing may follow the top-level item.
    pub fn finish(self) -> Result<(), CborError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(CborError::Trailing(extra)),
        }
    }
}

/// A value to write, borrowing its strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item<'a> {
    Unsigned(u64),
    Integer(i64),
    Bytes(&'a [u8]),
    Text(&'a str),
    Bool(bool),
    Null,
    Array(Vec<Item<'a>>),
    /// Written with its keys sorted (RFC 8949 §4.2.1), whatever their order here.
    Map(Vec<(&'a str, Item<'a>)>),
}

impl Item<'_> {
    /// The item in RFC 8949 §4.2.1 core deterministic encoding.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.write(&mut out);
        out
    }

    /// Appends the item's deterministic encoding to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        match self {
            Item::Unsigned(value) => head(out, major::UNSIGNED, *value),
            Item::Integer(value) if *value >= 0 => head(out, major::UNSIGNED, value.unsigned_abs()),
            // -1 - n encodes n = -1 - value = !value (two's complement), never overflowing.
            Item::Integer(value) => head(out, major::NEGATIVE, !*value as u64),
            Item::Bytes(bytes) => {
                head(out, major::BYTES, bytes.len() as u64);
                out.extend_from_slice(bytes);
            }
            Item::Text(text) => {
                head(out, major::TEXT, text.len() as u64);
                out.extend_from_slice(text.as_bytes());
            }
            Item::Bool(false) => out.push(FALSE),
            Item::Bool(true) => out.push(TRUE),
            Item::Null => out.push(NULL),
            Item::Array(items) => {
                head(out, major::ARRAY, items.len() as u64);
                for item in items {
                    item.write(out);
                }
            }
            Item::Map(entries) => {
                head(out, major::MAP, entries.len() as u64);
                let mut sorted: Vec<&(&str, Item<'_>)> = entries.iter().collect();
                sorted.sort_by(|(a, _), (b, _)| key_order(a, b));
                for (key, value) in sorted {
                    Item::Text(key).write(out);
                    value.write(out);
                }
            }
        }
    }

    /// The length of the encoding, to allocate once.
    pub fn encoded_len(&self) -> usize {
        match self {
            Item::Unsigned(value) => head_len(*value),
            Item::Integer(value) if *value >= 0 => head_len(value.unsigned_abs()),
            Item::Integer(value) => head_len(!*value as u64),
            Item::Bytes(bytes) => head_len(bytes.len() as u64) + bytes.len(),
            Item::Text(text) => head_len(text.len() as u64) + text.len(),
            Item::Bool(_) | Item::Null => 1,
            Item::Array(items) => {
                head_len(items.len() as u64) + items.iter().map(Item::encoded_len).sum::<usize>()
            }
            Item::Map(entries) => {
                head_len(entries.len() as u64)
                    + entries
                        .iter()
                        .map(|(key, value)| {
                            head_len(key.len() as u64) + key.len() + value.encoded_len()
                        })
                        .sum::<usize>()
            }
        }
    }
}

/// The order of two text keys in a deterministic map (RFC 8949 §4.2.1): a text
/// key's encoding is its head (which grows with its length) then its bytes, so
/// the bytewise order of encodings is shorter first, then bytewise.
pub(crate) fn key_order(a: &str, b: &str) -> std::cmp::Ordering {
    (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes()))
}

/// The shortest head of `major` with `argument` (RFC 8949 §3, §4.2.1); also for
/// a writer that appends a container's items or a byte string's bytes itself
/// (`plaintext::write_result`).
pub(crate) fn head(out: &mut Vec<u8>, major: u8, argument: u64) {
    let major = major << 5;
    match argument {
        0..=23 => out.push(major | argument as u8),
        24..=0xFF => out.extend_from_slice(&[major | 24, argument as u8]),
        0x100..=0xFFFF => {
            out.push(major | 25);
            out.extend_from_slice(&(argument as u16).to_be_bytes());
        }
        0x1_0000..=0xFFFF_FFFF => {
            out.push(major | 26);
            out.extend_from_slice(&(argument as u32).to_be_bytes());
        }
        _ => {
            out.push(major | 27);
            out.extend_from_slice(&argument.to_be_bytes());
        }
    }
}

/// The length of [`head`]'s head for `argument`.
pub(crate) fn head_len(argument: u64) -> usize {
    match argument {
        0..=23 => 1,
        24..=0xFF => 2,
        0x100..=0xFFFF => 3,
        0x1_0000..=0xFFFF_FFFF => 5,
        _ => 9,
    }
}

impl fmt::Display for Item<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", hex::encode(self.to_vec()))
    }
}

/// Reads a map's keys one by one and refuses one given twice; `fields` are the
/// keys the map may have, and the index of a key in it is what the caller matches.
pub struct Fields {
    names: &'static [&'static str],
    seen: u64,
}

impl Fields {
    /// At most 64 names.
    pub const fn new(names: &'static [&'static str]) -> Fields {
        Fields { names, seen: 0 }
    }

    /// The index of `key` in the names, the first time it is seen; an unknown or
    /// repeated key is an error.
    pub fn index(&mut self, key: &str) -> Result<usize, CborError> {
        let index = self
            .names
            .iter()
            .position(|name| *name == key)
            .ok_or_else(|| CborError::UnknownField(key.to_owned()))?;
        let bit = 1u64 << index;
        if self.seen & bit != 0 {
            return Err(CborError::DuplicateField(key.to_owned()));
        }
        self.seen |= bit;
        Ok(index)
    }

    /// Whether the field `name` was seen.
    pub fn has(&self, name: &str) -> bool {
        self.names
            .iter()
            .position(|known| *known == name)
            .is_some_and(|index| self.seen & (1 << index) != 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_hex(text: &str) -> Vec<u8> {
        hex::decode(text).unwrap()
    }

    /// RFC 8949 Appendix A: the examples of the subset this module reads and
    /// writes, each written from the value and read back.
    #[test]
    fn rfc_8949_appendix_a_integers_round_trip() {
        let unsigned: [(u64, &str); 13] = [
            (0, "00"),
            (1, "01"),
            (10, "0a"),
            (23, "17"),
            (24, "1818"),
            (25, "1819"),
            (100, "1864"),
            (1000, "1903e8"),
            (1_000_000, "1a000f4240"),
            (1_000_000_000_000, "1b000000e8d4a51000"),
            (18_446_744_073_709_551_615, "1bffffffffffffffff"),
            (255, "18ff"),
            (256, "190100"),
        ];
        for (value, encoded) in unsigned {
            assert_eq!(hex::encode(Item::Unsigned(value).to_vec()), encoded);
            assert_eq!(Reader::new(&decode_hex(encoded)).unsigned(), Ok(value));
        }
        for (value, encoded) in [
            (-1i64, "20"),
            (-10, "29"),
            (-100, "3863"),
            (-1000, "3903e7"),
        ] {
            assert_eq!(hex::encode(Item::Integer(value).to_vec()), encoded);
            assert_eq!(Reader::new(&decode_hex(encoded)).integer(), Ok(value));
        }
        assert_eq!(
            hex::encode(Item::Integer(i64::MIN).to_vec()),
            "3b7fffffffffffffff"
        );
        // -18446744073709551616 (3bffffffffffffffff) does not fit an i64.
        assert_eq!(
            Reader::new(&decode_hex("3bffffffffffffffff")).integer(),
            Err(CborError::OutOfRange(0))
        );
    }

    #[test]
    fn rfc_8949_appendix_a_strings_and_simple_values_round_trip() {
        for (bytes, encoded) in [(&b""[..], "40"), (&[1, 2, 3, 4][..], "4401020304")] {
            assert_eq!(hex::encode(Item::Bytes(bytes).to_vec()), encoded);
            assert_eq!(Reader::new(&decode_hex(encoded)).bytes(), Ok(bytes));
        }
        for (text, encoded) in [
            ("", "60"),
            ("a", "6161"),
            ("IETF", "6449455446"),
            ("\"\\", "62225c"),
            ("\u{00fc}", "62c3bc"),
            ("\u{6c34}", "63e6b0b4"),
            ("\u{10151}", "64f0908591"),
        ] {
            assert_eq!(hex::encode(Item::Text(text).to_vec()), encoded);
            assert_eq!(Reader::new(&decode_hex(encoded)).text(), Ok(text));
        }
        assert_eq!(Item::Bool(false).to_vec(), [0xF4]);
        assert_eq!(Item::Bool(true).to_vec(), [0xF5]);
        assert_eq!(Item::Null.to_vec(), [0xF6]);
        assert_eq!(Reader::new(&[0xF4]).boolean(), Ok(false));
        assert_eq!(Reader::new(&[0xF5]).boolean(), Ok(true));
        assert!(Reader::new(&[0xF6]).null());
    }

    #[test]
    fn rfc_8949_appendix_a_arrays_and_maps_round_trip() {
        let nested = Item::Array(vec![
            Item::Unsigned(1),
            Item::Array(vec![Item::Unsigned(2), Item::Unsigned(3)]),
            Item::Array(vec![Item::Unsigned(4), Item::Unsigned(5)]),
        ]);
        assert_eq!(hex::encode(nested.to_vec()), "8301820203820405");
        let twenty_five = Item::Array((1..=25).map(Item::Unsigned).collect());
        assert_eq!(
            hex::encode(twenty_five.to_vec()),
            "98190102030405060708090a0b0c0d0e0f101112131415161718181819"
        );
        assert_eq!(hex::encode(Item::Map(vec![]).to_vec()), "a0");
        // {"a": 1, "b": [2, 3]}
        let map = Item::Map(vec![
            ("b", Item::Array(vec![Item::Unsigned(2), Item::Unsigned(3)])),
            ("a", Item::Unsigned(1)),
        ]);
        assert_eq!(hex::encode(map.to_vec()), "a26161016162820203");
        // {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"}
        let letters = Item::Map(
            ["e", "d", "c", "b", "a"]
                .iter()
                .zip(["E", "D", "C", "B", "A"])
                .map(|(key, value)| (*key, Item::Text(value)))
                .collect(),
        );
        assert_eq!(
            hex::encode(letters.to_vec()),
            "a56161614161626142616361436164614461656145"
        );
        let bytes = decode_hex("a26161016162820203");
        let mut reader = Reader::new(&bytes);
        assert_eq!(reader.map_len(), Ok(2));
        assert_eq!(reader.text(), Ok("a"));
        assert_eq!(reader.unsigned(), Ok(1));
        assert_eq!(reader.text(), Ok("b"));
        assert_eq!(reader.array_len(), Ok(2));
        assert_eq!(reader.unsigned(), Ok(2));
        assert_eq!(reader.unsigned(), Ok(3));
        assert_eq!(reader.finish(), Ok(()));
        for item in [nested, twenty_five, map, letters] {
            let bytes = item.to_vec();
            assert_eq!(bytes.len(), item.encoded_len());
            let mut reader = Reader::new(&bytes);
            reader.skip().unwrap();
            reader.finish().unwrap();
        }
    }

    #[test]
    fn keys_are_sorted_shorter_first_then_bytewise() {
        let map = Item::Map(vec![
            ("args", Item::Null),
            ("env", Item::Null),
            ("b", Item::Null),
            ("aa", Item::Null),
        ]);
        assert_eq!(
            hex::encode(map.to_vec()),
            "a46162f6626161f663656e76f66461726773f6"
        );
    }

    /// RFC 8949 Appendix A's indefinite-length examples, a tag, floats and
    /// `undefined` are all refused, as are non-shortest heads (Appendix F's
    /// "not preferred" forms).
    #[test]
    fn what_the_reader_refuses() {
        let refused = |encoded: &str| {
            let bytes = decode_hex(encoded);
            let mut reader = Reader::new(&bytes);
            reader.skip().and_then(|()| reader.finish()).unwrap_err()
        };
        assert_eq!(refused("5f42010243030405ff"), CborError::Indefinite(0));
        assert_eq!(
            refused("7f657374726561646d696e67ff"),
            CborError::Indefinite(0)
        );
        assert_eq!(refused("9fff"), CborError::Indefinite(0));
        assert_eq!(refused("bf61610161629f0203ffff"), CborError::Indefinite(0));
        assert_eq!(refused("a16161bf"), CborError::Indefinite(3)); // nested
        assert_eq!(
            refused("c074323031332d30332d32315432303a30343a30305a"),
            CborError::Unsupported(0)
        );
        assert_eq!(refused("f90000"), CborError::Unsupported(0)); // 0.0 as a half
        assert_eq!(refused("fb3ff199999999999a"), CborError::Unsupported(0)); // 1.1
        assert_eq!(refused("f7"), CborError::Unsupported(0)); // undefined
        assert_eq!(refused("f0"), CborError::Unsupported(0)); // simple(16)
        assert_eq!(refused("1817"), CborError::NotShortest(0));
        assert_eq!(refused("190017"), CborError::NotShortest(0));
        assert_eq!(refused("1a0000ffff"), CborError::NotShortest(0));
        assert_eq!(refused("1b00000000ffffffff"), CborError::NotShortest(0));
        assert_eq!(refused("1c"), CborError::Reserved(0));
        assert_eq!(refused("62c3"), CborError::Truncated(2));
        assert_eq!(refused("62ff00"), CborError::Utf8(0));
        assert_eq!(refused("9a00010000"), CborError::Truncated(5)); // claims 65536 items
        assert_eq!(refused("0000"), CborError::Trailing(1));
        let deep = format!("{}00", "81".repeat(MAX_SKIP_DEPTH + 2));
        assert!(matches!(refused(&deep), CborError::TooDeep(_)));
    }

    #[test]
    fn fields_refuse_unknown_and_repeated_keys() {
        let mut fields = Fields::new(&["a", "b"]);
        assert_eq!(fields.index("b"), Ok(1));
        assert_eq!(fields.index("a"), Ok(0));
        assert_eq!(
            fields.index("a"),
            Err(CborError::DuplicateField("a".into()))
        );
        assert_eq!(fields.index("c"), Err(CborError::UnknownField("c".into())));
        assert!(fields.has("b"));
    }
}
