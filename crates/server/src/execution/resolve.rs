//! Resolving a request's blobs in its client's store (protocol v1.1 §D): every
//! module and archive the request sent is kept there, even when the request is
//! then refused (PROTOCOL.md, "Blobs and compiled code"), and every one it names
//! is looked up (a use, for eviction). The blob store's side effects happen here
//! and only here.

use std::sync::Arc;

use wasm_hypervisor_protocol::request::{Input, Request, SentBytes, Source};

use crate::blobs::{Blob, BlobStore};
use crate::envelope::Plaintext;
use crate::metrics::Metrics;
use crate::sandbox::{Entry, GuestInput};

/// A request with its blobs in hand: what `prepare` makes ready to run.
pub(super) struct Resolved {
    pub module: Arc<Blob>,
    /// In request order.
    pub mounts: Vec<ResolvedMount>,
    pub entry: Entry,
    pub input: GuestInput,
}

/// One mount with its archive, if it has one.
pub(super) struct ResolvedMount {
    pub path: String,
    pub writable: bool,
    pub archive: Option<Arc<Blob>>,
}

/// Every named blob the store does not hold: the module first, then the
/// mounts' archives in request order, each once.
pub(super) struct Missing(pub Vec<[u8; 32]>);

/// `request`'s module and archives from `store` (those it sent kept there
/// first), its argv, env and stdin as the guest's input (a CBOR request's stdin
/// a view of `plaintext`, not a copy), or every blob it names that is missing.
pub(super) fn resolve(
    store: &BlobStore,
    metrics: &Metrics,
    request: Request<'_>,
    plaintext: &Plaintext,
) -> Result<Resolved, Missing> {
    let Request {
        module,
        mounts,
        invoke,
        input,
        deterministic,
        ..
    } = request;
    let mut receiver = Receiver::new(store);
    let module = receiver.receive(module);
    let mounts: Vec<ResolvedMount> = mounts
        .into_iter()
        .map(|mount| ResolvedMount {
            path: mount.path,
            writable: mount.writable,
            archive: mount.archive.and_then(|archive| receiver.receive(archive)),
        })
        .collect();
    let missing = receiver.finish(metrics);
    // A module that is not here was named and not found: it is in `missing`.
    match module {
        Some(module) if missing.is_empty() => Ok(Resolved {
            module,
            mounts,
            entry: invoke.map_or(Entry::Command, Entry::Invoke),
            input: guest_input(input, deterministic.map(|seed| seed.0), plaintext),
        }),
        _ => Err(Missing(missing)),
    }
}

/// The blobs a refused request read before its refusal, received all the same:
/// those it sent are kept.
pub(super) fn receive_refused(store: &BlobStore, metrics: &Metrics, read: Vec<Source<'_>>) {
    let mut receiver = Receiver::new(store);
    for source in read {
        receiver.receive(source);
    }
    receiver.finish(metrics);
}

/// Takes a request's sources into a store, counting the named ones found and
/// missing.
struct Receiver<'s> {
    store: &'s BlobStore,
    found: u64,
    missing: Vec<[u8; 32]>,
}

impl<'s> Receiver<'s> {
    fn new(store: &'s BlobStore) -> Self {
        Receiver {
            store,
            found: 0,
            missing: Vec::new(),
        }
    }

    /// A sent blob kept (a CBOR request's bytes copied once, into the store; a
    /// JSON request's decoded bytes moved there), a named one looked up.
    fn receive(&mut self, source: Source<'_>) -> Option<Arc<Blob>> {
        match source {
            Source::Sent { sha256, bytes } => Some(self.store.insert(sha256, bytes.into_vec())),
            Source::Named(sha256) => {
                let blob = self.store.get(&sha256);
                match &blob {
                    Some(_) => self.found += 1,
                    None if !self.missing.contains(&sha256) => self.missing.push(sha256),
                    None => {}
                }
                blob
            }
        }
    }

    /// The missing hashes, once the lookups are counted in `metrics`.
    fn finish(self, metrics: &Metrics) -> Vec<[u8; 32]> {
        metrics.record_blob_lookups(self.found, self.missing.len() as u64);
        self.missing
    }
}

/// The request's input as the sandbox takes it, moved out of `input` (which
/// zeroizes what is left when it drops).
fn guest_input(
    mut input: Input<'_>,
    deterministic: Option<[u8; 32]>,
    plaintext: &Plaintext,
) -> GuestInput {
    let stdin = match std::mem::take(&mut input.stdin) {
        SentBytes::Borrowed(part) => plaintext.view(part),
        // Handed to the guest's stdin pipe, which frees it without clearing
        // (PROTOCOL.md, "What is zeroized").
        decoded => decoded.into_vec().into(),
    };
    GuestInput {
        args: std::mem::take(&mut input.args),
        env: std::mem::take(&mut input.env),
        stdin,
        deterministic,
    }
}
