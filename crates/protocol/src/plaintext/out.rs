//! Where [`write_result`](super::write_result) writes: a [`Counter`] first, for
//! the exact length, then the [`Buffer`] allocated at it; base64 encoded in place,
//! also of bytes that arrive in pieces ([`Base64Stream`]).

use std::io;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;

use super::write::ArchiveSource;
use crate::cbor::{self, Item};

/// Where [`write_result`](super::write_result) writes: a [`Counter`] first, for
/// the exact length, then the [`Buffer`]. Both are infallible.
pub(super) trait Out {
    fn raw(&mut self, bytes: &[u8]);
    /// A value as `serde_json` writes it (strings quoted and escaped).
    fn json(&mut self, value: &impl Serialize);
    /// Bytes as standard base64 with padding, unquoted.
    fn base64(&mut self, bytes: &[u8]);
    /// A CBOR item, deterministically encoded.
    fn item(&mut self, item: &Item<'_>);
    /// A CBOR head ([`cbor::head`]).
    fn head(&mut self, major: u8, argument: u64);
    /// An archive: its bytes (CBOR) or their base64, unquoted (JSON).
    fn archive(&mut self, source: &mut dyn ArchiveSource, base64: bool);
}

/// The length of standard base64 with padding of `len` bytes.
fn base64_len(len: u64) -> u64 {
    len.div_ceil(3) * 4
}

/// Counts what would be written.
pub(super) struct Counter(pub(super) u64);

impl io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len() as u64;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Out for Counter {
    fn raw(&mut self, bytes: &[u8]) {
        self.0 += bytes.len() as u64;
    }

    fn json(&mut self, value: &impl Serialize) {
        // Cannot fail: the writer does not, and no value here has a map with
        // non-string keys (serde_json's only other error).
        let _ = serde_json::to_writer(&mut *self, value);
    }

    fn base64(&mut self, bytes: &[u8]) {
        self.0 += base64_len(bytes.len() as u64);
    }

    fn item(&mut self, item: &Item<'_>) {
        self.0 += item.encoded_len() as u64;
    }

    fn head(&mut self, _major: u8, argument: u64) {
        self.0 += cbor::head_len(argument) as u64;
    }

    fn archive(&mut self, source: &mut dyn ArchiveSource, base64: bool) {
        let len = source.archive_len();
        self.0 += if base64 { base64_len(len) } else { len };
    }
}

/// Appends to a buffer whose capacity the [`Counter`] settled: nothing here
/// reallocates it.
pub(super) struct Buffer<'a>(pub(super) &'a mut Vec<u8>);

impl io::Write for Buffer<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Out for Buffer<'_> {
    fn raw(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }

    fn json(&mut self, value: &impl Serialize) {
        // Cannot fail, as for the count (and a failure would show as a length
        // that differs from it).
        let _ = serde_json::to_writer(&mut *self, value);
    }

    fn base64(&mut self, bytes: &[u8]) {
        base64_into(self.0, bytes);
    }

    fn item(&mut self, item: &Item<'_>) {
        item.write(self.0);
    }

    fn head(&mut self, major: u8, argument: u64) {
        cbor::head(self.0, major, argument);
    }

    fn archive(&mut self, source: &mut dyn ArchiveSource, base64: bool) {
        let mut remaining = source.archive_len();
        let mut stream = Base64Stream {
            out: &mut *self.0,
            held: [0; 3],
            held_len: 0,
        };
        let put = |piece: &[u8], stream: &mut Base64Stream<'_>| {
            if base64 {
                stream.push(piece);
            } else {
                stream.out.extend_from_slice(piece);
            }
        };
        source.write_archive(&mut |piece| {
            // A source that writes more than it said is a bug: what is past its
            // length is dropped, so the document keeps the length it was
            // counted at (the buffer is never reallocated).
            debug_assert!(
                piece.len() as u64 <= remaining,
                "an archive past its length"
            );
            let take = piece
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            remaining -= take as u64;
            put(&piece[..take], &mut stream);
        });
        // And one that writes less: zeros, for the same reason.
        debug_assert_eq!(remaining, 0, "an archive short of its length");
        const ZEROS: [u8; 512] = [0; 512];
        while remaining > 0 {
            let take = ZEROS
                .len()
                .min(usize::try_from(remaining).unwrap_or(usize::MAX));
            remaining -= take as u64;
            put(&ZEROS[..take], &mut stream);
        }
        if base64 {
            stream.finish();
        }
    }
}

/// Appends the base64 of `bytes` to `out`, encoded in place (no temporary
/// string).
fn base64_into(out: &mut Vec<u8>, bytes: &[u8]) {
    let at = out.len();
    let len = usize::try_from(base64_len(bytes.len() as u64)).unwrap_or(usize::MAX);
    out.resize(at + len, 0);
    // Cannot fail: the room is exactly the encoding's length.
    let _ = B64.encode_slice(bytes, &mut out[at..]);
}

/// Base64 of bytes that arrive in pieces of any size, appended to `out`: whole
/// groups of three at once, the one or two left over held for the next piece.
struct Base64Stream<'a> {
    out: &'a mut Vec<u8>,
    held: [u8; 3],
    held_len: usize,
}

impl Base64Stream<'_> {
    fn push(&mut self, mut piece: &[u8]) {
        if self.held_len > 0 {
            let take = (3 - self.held_len).min(piece.len());
            self.held[self.held_len..self.held_len + take].copy_from_slice(&piece[..take]);
            self.held_len += take;
            piece = &piece[take..];
            if self.held_len < 3 {
                return;
            }
            let held = self.held;
            base64_into(self.out, &held);
            self.held_len = 0;
        }
        let whole = piece.len() / 3 * 3;
        base64_into(self.out, &piece[..whole]);
        let rest = &piece[whole..];
        self.held[..rest.len()].copy_from_slice(rest);
        self.held_len = rest.len();
    }

    /// The last one or two bytes, padded.
    fn finish(self) {
        let held = self.held;
        base64_into(self.out, &held[..self.held_len]);
    }
}
