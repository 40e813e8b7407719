//! `FilesBudget`: one execution's `files_bytes` (the logical length of every
//! regular file in every mount) and `max_mount_entries` (files and directories),
//! charged before anything is allocated so that a guest past either gets ENOSPC
//! and nothing changes.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// A charge would pass the budget (the guest sees ENOSPC).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no space left in the execution's files budget")]
pub struct NoSpace;

/// Bytes and entries of one execution's file system, and their limits. Shared
/// (`Arc`) by every file node, which gives its charge back when it drops.
#[derive(Debug)]
pub struct FilesBudget {
    bytes_limit: u64,
    bytes: AtomicU64,
    entries_limit: u32,
    entries: AtomicU32,
}

impl FilesBudget {
    pub fn new(bytes_limit: u64, entries_limit: u32) -> FilesBudget {
        FilesBudget {
            bytes_limit,
            bytes: AtomicU64::new(0),
            entries_limit,
            entries: AtomicU32::new(0),
        }
    }

    /// Charges `by` bytes, or nothing if that would pass the limit.
    pub fn grow(&self, by: u64) -> Result<(), NoSpace> {
        self.bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(by).filter(|&new| new <= self.bytes_limit)
            })
            .map(|_| ())
            .map_err(|_| NoSpace)
    }

    /// Gives `by` bytes back.
    pub fn shrink(&self, by: u64) {
        let _ = self
            .bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(by))
            });
    }

    /// Charges one file or directory, or nothing if that would pass the limit.
    pub fn add_entry(&self) -> Result<(), NoSpace> {
        self.entries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(1).filter(|&new| new <= self.entries_limit)
            })
            .map(|_| ())
            .map_err(|_| NoSpace)
    }

    /// Charges `count` files or directories at once, or nothing.
    pub fn add_entries(&self, count: u32) -> Result<(), NoSpace> {
        self.entries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(count)
                    .filter(|&new| new <= self.entries_limit)
            })
            .map(|_| ())
            .map_err(|_| NoSpace)
    }

    /// Gives one entry back.
    pub fn remove_entry(&self) {
        let _ = self
            .entries
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                Some(used.saturating_sub(1))
            });
    }

    /// Bytes and entries charged now.
    pub fn used(&self) -> (u64, u32) {
        (
            self.bytes.load(Ordering::Relaxed),
            self.entries.load(Ordering::Relaxed),
        )
    }

    /// The limits: `files_bytes` and `max_mount_entries`.
    pub fn limits(&self) -> (u64, u32) {
        (self.bytes_limit, self.entries_limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_never_pass_the_limits_and_come_back() {
        let budget = FilesBudget::new(10, 1);
        assert_eq!(budget.grow(6), Ok(()));
        assert_eq!(budget.grow(5), Err(NoSpace));
        assert_eq!(budget.used(), (6, 0));
        budget.shrink(6);
        assert_eq!(budget.grow(10), Ok(()));
        assert_eq!(budget.add_entry(), Ok(()));
        assert_eq!(budget.add_entry(), Err(NoSpace));
        budget.remove_entry();
        assert_eq!(budget.used(), (10, 0));
        assert_eq!(budget.grow(u64::MAX), Err(NoSpace));
    }
}
