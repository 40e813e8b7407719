//! A result plaintext of either format written once, into one buffer of its exact
//! length plus room for the AES-GCM tag: the document counted first, then
//! written ([`out`](super::out)), `mounts_out` archives passed in pieces by an
//! [`ArchiveSource`] straight into it.

use zeroize::Zeroizing;

use super::Format;
use super::json::json_document;
use super::out::{Buffer, Counter, Out};
use super::result::cbor_document;
use crate::payload::ExecutionResult;

/// Writes a result as a CBOR plaintext, in RFC 8949 §4.2.1 core deterministic
/// encoding, with the fields JSON has (those JSON leaves out when empty are left
/// out here too): [`write_result`] in CBOR.
pub fn encode_result(result: &ExecutionResult) -> Vec<u8> {
    std::mem::take(&mut *write_result(result, Format::Cbor, &mut []))
}

/// A `mounts_out` archive that [`write_result`] writes straight into the result
/// plaintext, so that no whole copy of it exists outside that buffer: its exact
/// length first (the buffer is allocated once, and CBOR's byte string head says
/// it), then its bytes.
pub trait ArchiveSource {
    /// The archive's exact length in bytes.
    fn archive_len(&self) -> u64;
    /// Passes the archive to `sink` in order, in pieces of any size: exactly
    /// [`ArchiveSource::archive_len`] bytes. Called at most once.
    fn write_archive(&mut self, sink: &mut dyn FnMut(&[u8]));
}

/// An archive already in memory (a `MountOut`'s `tar`).
impl ArchiveSource for &[u8] {
    fn archive_len(&self) -> u64 {
        self.len() as u64
    }

    fn write_archive(&mut self, sink: &mut dyn FnMut(&[u8])) {
        sink(self);
    }
}

/// One `mounts_out` entry for [`write_result`]: its path, and its archive's source.
pub struct StreamedMount<'a> {
    pub path: &'a str,
    pub tar: &'a mut dyn ArchiveSource,
}

/// Writes `result` as a result plaintext in `format`, into one buffer allocated
/// once, at the plaintext's exact length plus [`hpke::NT`](crate::hpke::NT)
/// bytes of room for the AES-GCM tag, so that it can be sealed in place
/// ([`ResponseKeys::seal_result_in_place`](crate::envelope::ResponseKeys::seal_result_in_place))
/// without another copy. The bytes are those of `serde_json::to_vec` (JSON) or
/// the deterministic CBOR of protocol v1.1 §C of the same result, whose
/// `mounts_out` is `mounts` if that is not empty (`result.mounts_out` is then
/// ignored), else `result.mounts_out`. Each of `mounts`' archives is written
/// straight into the buffer (in JSON as base64, a piece at a time).
pub fn write_result(
    result: &ExecutionResult,
    format: Format,
    mounts: &mut [StreamedMount<'_>],
) -> Zeroizing<Vec<u8>> {
    if !mounts.is_empty() {
        return write_document(result, format, Some(mounts));
    }
    let Some(listed) = &result.mounts_out else {
        return write_document(result, format, None);
    };
    let mut tars: Vec<&[u8]> = listed.iter().map(|mount| &mount.tar.0[..]).collect();
    let mut mounts: Vec<StreamedMount<'_>> = listed
        .iter()
        .zip(tars.iter_mut())
        .map(|(mount, tar)| StreamedMount {
            path: &mount.path,
            tar,
        })
        .collect();
    write_document(result, format, Some(&mut mounts))
}

/// [`write_result`] with its `mounts_out` settled: counted first, then written.
fn write_document(
    result: &ExecutionResult,
    format: Format,
    mut mounts: Option<&mut [StreamedMount<'_>]>,
) -> Zeroizing<Vec<u8>> {
    let mut counter = Counter(0);
    document(&mut counter, result, format, mounts.as_deref_mut());
    let len = usize::try_from(counter.0).unwrap_or(usize::MAX);
    let mut buffer = Zeroizing::new(Vec::with_capacity(len.saturating_add(crate::hpke::NT)));
    document(&mut Buffer(&mut buffer), result, format, mounts);
    debug_assert_eq!(buffer.len(), len, "the count and the writing agree");
    buffer
}

fn document(
    out: &mut impl Out,
    result: &ExecutionResult,
    format: Format,
    mounts: Option<&mut [StreamedMount<'_>]>,
) {
    match format {
        Format::Json => json_document(out, result, mounts),
        Format::Cbor => cbor_document(out, result, mounts),
    }
}
