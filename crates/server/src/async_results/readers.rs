//! The answers being sent at once, in all and per client
//! ([`MAX_READERS`], [`MAX_READERS_PER_CLIENT`]): a count taken by
//! [`AsyncExecutions::begin_read`](super::AsyncExecutions::begin_read) and given
//! back when its [`ReadSlot`] drops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{MAX_READERS, MAX_READERS_PER_CLIENT, ReadersFull};
use crate::access::ClientKey;

/// The answers being sent, in all and per client.
#[derive(Default)]
pub(super) struct Readers {
    /// Held for a count update, never across an `.await`.
    counts: Mutex<ReaderCounts>,
}

#[derive(Default)]
struct ReaderCounts {
    total: usize,
    /// Only clients being sent at least one answer.
    per_client: HashMap<ClientKey, usize>,
}

impl Readers {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReaderCounts> {
        // Each update is whole before the lock is let go: a poisoned lock holds
        // consistent counts.
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Answers being sent now.
    pub(super) fn total(&self) -> usize {
        self.lock().total
    }

    /// One more answer being sent to `client`, until the slot is dropped.
    pub(super) fn begin(self: &Arc<Self>, client: ClientKey) -> Result<ReadSlot, ReadersFull> {
        let mut counts = self.lock();
        let of_client = counts.per_client.get(&client).copied().unwrap_or(0);
        if of_client >= MAX_READERS_PER_CLIENT {
            return Err(ReadersFull::Client);
        }
        if counts.total >= MAX_READERS {
            return Err(ReadersFull::Server);
        }
        counts.total += 1;
        counts.per_client.insert(client, of_client + 1);
        Ok(ReadSlot {
            readers: self.clone(),
            client,
        })
    }

    fn end(&self, client: ClientKey) {
        let mut counts = self.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(of_client) = counts.per_client.get_mut(&client) {
            *of_client -= 1;
            if *of_client == 0 {
                counts.per_client.remove(&client);
            }
        }
    }
}

/// One answer being sent; the place is given back when dropped.
pub struct ReadSlot {
    readers: Arc<Readers>,
    client: ClientKey,
}

impl Drop for ReadSlot {
    fn drop(&mut self) {
        self.readers.end(self.client);
    }
}
