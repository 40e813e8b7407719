//! What both log backends (the file, [`super::file`], and cluster mode's
//! PostgreSQL log) keep in memory and how they sign: the RFC 9162 tree of the
//! leaves this process knows with an execution id → index map ([`LeafIndex`]),
//! and checkpoint signing that re-signs only when the tree has grown
//! ([`Signer`]). Pure but for the signer's mutex.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use uuid::Uuid;

use crate::keys::ServerKey;
use wasm_hypervisor_protocol::checkpoint::{Checkpoint, SignedCheckpoint};
use wasm_hypervisor_protocol::leaf::Leaf;
use wasm_hypervisor_protocol::merkle::{Hash, MerkleTree};

/// The tree of the leaves known here, in log order, and where each execution is.
#[derive(Default)]
pub(crate) struct LeafIndex {
    pub tree: MerkleTree,
    pub by_execution: HashMap<Uuid, u64>,
}

impl LeafIndex {
    /// Adds `leaf` at the end; returns its index.
    pub(crate) fn push(&mut self, leaf: &Leaf) -> u64 {
        let position = self.tree.size();
        self.tree.push(leaf.hash());
        self.by_execution.insert(leaf.execution_id, position);
        position
    }

    pub(crate) fn size(&self) -> u64 {
        self.tree.size()
    }

    /// The size and root of the whole tree.
    pub(crate) fn head(&self) -> (u64, Hash) {
        let size = self.tree.size();
        (
            size,
            self.tree.root(size).expect("the current size is in range"),
        )
    }

    /// Approximate heap bytes: the tree and the id map (16-byte key, 8-byte
    /// value, 1 control byte a slot).
    pub(crate) fn memory_bytes(&self) -> usize {
        self.tree.memory_bytes() + self.by_execution.capacity() * (16 + 8 + 1)
    }
}

/// Signs checkpoints of one log (its origin, the server's key), reusing the last
/// signature while the tree has not grown (signing is most of the cost of
/// serving a proof).
pub(crate) struct Signer {
    origin: String,
    key: Arc<ServerKey>,
    latest: Mutex<Option<SignedCheckpoint>>,
}

impl Signer {
    pub(crate) fn new(origin: &str, key: Arc<ServerKey>) -> Signer {
        Signer {
            origin: origin.to_owned(),
            key,
            latest: Mutex::new(None),
        }
    }

    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    pub(crate) fn key(&self) -> &Arc<ServerKey> {
        &self.key
    }

    /// A signed checkpoint for `size` and `root`.
    pub(crate) fn sign(&self, size: u64, root: Hash) -> SignedCheckpoint {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(signed) = latest.as_ref()
            && signed.checkpoint.tree_size == size
        {
            return signed.clone();
        }
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            tree_size: size,
            root_hash: root,
        };
        let signature = self.key.sign(checkpoint.body().as_bytes());
        let signed = SignedCheckpoint {
            checkpoint,
            signature,
        };
        if latest
            .as_ref()
            .is_none_or(|current| current.checkpoint.tree_size < size)
        {
            *latest = Some(signed.clone());
        }
        signed
    }
}
