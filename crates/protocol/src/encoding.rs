//! The text encodings of bytes on the wire: standard base64 with padding
//! (RFC 4648 §4) and lowercase hex, as typed fields.
//!
//! A wire type says `Base64<[u8; 65]>` or `Hex<[u8; 32]>` rather than `String`, so a
//! document that parses holds bytes of the right length, checked once where it is
//! read, and a document that is written cannot hold anything else. Serialization
//! writes the canonical text; deserialization accepts only it (no URL-safe
//! alphabet, no missing padding, no uppercase hex), so every reader of the same
//! document sees the same bytes.

use std::fmt;
use std::marker::PhantomData;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Standard base64 with padding.
pub fn encode_base64(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// Standard base64 with padding, strictly.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, base64::DecodeError> {
    B64.decode(text)
}

/// Bytes a typed field can hold: a vector of any length or an array of exactly N.
pub trait Bytes: AsRef<[u8]> + Sized {
    /// What the field expects, for error messages: "32 bytes", "bytes".
    fn expected() -> String;
    /// The bytes, if their length fits.
    fn from_vec(bytes: Vec<u8>) -> Option<Self>;
}

impl Bytes for Vec<u8> {
    fn expected() -> String {
        "bytes".to_owned()
    }
    fn from_vec(bytes: Vec<u8>) -> Option<Self> {
        Some(bytes)
    }
}

impl<const N: usize> Bytes for [u8; N] {
    fn expected() -> String {
        format!("{N} bytes")
    }
    fn from_vec(bytes: Vec<u8>) -> Option<Self> {
        bytes.try_into().ok()
    }
}

/// Bytes written as standard base64 with padding.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Base64<T = Vec<u8>>(pub T);

/// Bytes written as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hex<T = [u8; 32]>(pub T);

impl<T: Bytes> Base64<T> {
    /// Reads `text`, which must be canonical base64 of bytes of the right length.
    pub fn parse(text: &str) -> Option<Base64<T>> {
        T::from_vec(decode_base64(text).ok()?).map(Base64)
    }
}

impl<T: Bytes> Hex<T> {
    /// Reads `text`, which must be lowercase hex of bytes of the right length.
    pub fn parse(text: &str) -> Option<Hex<T>> {
        if text.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        T::from_vec(hex::decode(text).ok()?).map(Hex)
    }
}

impl<T: Bytes> fmt::Display for Base64<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_base64(self.0.as_ref()))
    }
}

impl<T: Bytes> fmt::Display for Hex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0.as_ref()))
    }
}

impl<T: Bytes> fmt::Debug for Base64<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Base64({self})")
    }
}

impl<T: Bytes> fmt::Debug for Hex<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hex({self})")
    }
}

impl<T: Bytes> Serialize for Base64<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<T: Bytes> Serialize for Hex<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Reads a string and hands it to `parse`; `what` names the encoding in errors.
struct TextVisitor<V> {
    what: &'static str,
    parse: fn(&str) -> Option<V>,
    expected: String,
    marker: PhantomData<V>,
}

impl<V> serde::de::Visitor<'_> for TextVisitor<V> {
    type Value = V;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}", self.what, self.expected)
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<V, E> {
        // The text is not echoed: it may be megabytes long, and it is the client's.
        (self.parse)(text)
            .ok_or_else(|| E::custom(format_args!("expected {} of {}", self.what, self.expected)))
    }
}

impl<'de, T: Bytes> Deserialize<'de> for Base64<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor {
            what: "base64",
            parse: Base64::<T>::parse,
            expected: T::expected(),
            marker: PhantomData,
        })
    }
}

impl<'de, T: Bytes> Deserialize<'de> for Hex<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(TextVisitor {
            what: "lowercase hex",
            parse: Hex::<T>::parse,
            expected: T::expected(),
            marker: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_fields_read_and_write_the_canonical_text() {
        let field: Base64<[u8; 3]> = serde_json::from_str("\"AQID\"").unwrap();
        assert_eq!(field.0, [1, 2, 3]);
        assert_eq!(serde_json::to_string(&field).unwrap(), "\"AQID\"");
        let any: Base64 = serde_json::from_str("\"AAE=\"").unwrap();
        assert_eq!(any.0, vec![0, 1]);
    }

    #[test]
    fn base64_of_the_wrong_length_or_alphabet_is_refused() {
        assert!(serde_json::from_str::<Base64<[u8; 4]>>("\"AQID\"").is_err());
        // URL-safe alphabet, missing padding, whitespace.
        assert!(serde_json::from_str::<Base64>("\"-_8=\"").is_err());
        assert!(serde_json::from_str::<Base64>("\"AAE\"").is_err());
        assert!(serde_json::from_str::<Base64>("\"AA E=\"").is_err());
        let error = serde_json::from_str::<Base64<[u8; 4]>>("\"AQID\"").unwrap_err();
        assert!(error.to_string().contains("base64 of 4 bytes"), "{error}");
    }

    #[test]
    fn hex_fields_are_lowercase_and_exact() {
        let text = format!("\"{}\"", "ab".repeat(32));
        let field: Hex = serde_json::from_str(&text).unwrap();
        assert_eq!(field.0, [0xab; 32]);
        assert_eq!(serde_json::to_string(&field).unwrap(), text);
        assert!(serde_json::from_str::<Hex>(&text.to_uppercase()).is_err());
        assert!(serde_json::from_str::<Hex>("\"abab\"").is_err());
        assert!(serde_json::from_str::<Hex>("\"zz\"").is_err());
    }
}
