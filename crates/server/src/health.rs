//! Whether this instance can do its job right now: run executions and make their
//! records durable. Owns the checks behind `GET /health` and the "shutting down"
//! state that the server sets when it starts to drain.
//!
//! Each check is cheap enough to run on every probe: an atomic load or two, one
//! `statvfs` and one `faccessat` on the data directory. None of them writes, so a
//! probe never adds to the disk's troubles.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::{Access, AtFlags, CWD, StatVfsMountFlags};

use crate::audit::AuditLog;

/// Why the instance cannot serve executions. The words are part of `GET /health`'s
/// answer, so they never change meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// A shutdown signal arrived: the server is draining and will exit.
    ShuttingDown,
    /// The audit writer's last write or sync failed, or the writer has stopped;
    /// appends are refused until a batch succeeds again.
    AuditLogWriteFailed,
    /// The data directory is missing, on a read-only mount, or not writable by the
    /// server's user.
    DataDirNotWritable,
    /// The data directory's file system has less free space than
    /// `data_dir_min_free_bytes`.
    DataDirLowSpace,
    /// Cluster mode: the last probe of the database (`cluster.database_url`)
    /// failed; sessions and executions answer 503 `database_unavailable`.
    DatabaseUnreachable,
}

impl Problem {
    pub const ALL: [Problem; 5] = [
        Problem::ShuttingDown,
        Problem::AuditLogWriteFailed,
        Problem::DataDirNotWritable,
        Problem::DataDirLowSpace,
        Problem::DatabaseUnreachable,
    ];

    /// The snake_case word in `GET /health`'s `reasons`.
    pub fn as_str(self) -> &'static str {
        match self {
            Problem::ShuttingDown => "shutting_down",
            Problem::AuditLogWriteFailed => "audit_log_write_failed",
            Problem::DataDirNotWritable => "data_dir_not_writable",
            Problem::DataDirLowSpace => "data_dir_low_space",
            Problem::DatabaseUnreachable => "database_unreachable",
        }
    }
}

/// The instance's health; cheap to clone.
#[derive(Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

struct Inner {
    log: AuditLog,
    data_dir: PathBuf,
    min_free_bytes: u64,
    shutting_down: AtomicBool,
    /// Cluster mode: whether the last probe reached the database.
    database: Option<Arc<AtomicBool>>,
}

impl Health {
    /// Watches `log` and the file system of `data_dir`, which must keep at least
    /// `min_free_bytes` free (0 turns the space check off).
    pub fn new(log: AuditLog, data_dir: &Path, min_free_bytes: u64) -> Health {
        Health {
            inner: Arc::new(Inner {
                log,
                data_dir: data_dir.to_owned(),
                min_free_bytes,
                shutting_down: AtomicBool::new(false),
                database: None,
            }),
        }
    }

    /// Also reports [`Problem::DatabaseUnreachable`] while `reachable` is false
    /// (cluster mode's probe sets it). Called while building, before any clone.
    pub fn with_database(mut self, reachable: Arc<AtomicBool>) -> Health {
        let inner = Arc::get_mut(&mut self.inner);
        debug_assert!(inner.is_some(), "with_database on a cloned Health");
        if let Some(inner) = inner {
            inner.database = Some(reachable);
        }
        self
    }

    /// From now on the instance reports [`Problem::ShuttingDown`]; there is no way
    /// back.
    pub fn begin_shutdown(&self) {
        self.inner.shutting_down.store(true, Ordering::Release);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.inner.shutting_down.load(Ordering::Acquire)
    }

    /// Every problem found now, in the order of [`Problem::ALL`]; empty when healthy.
    pub fn problems(&self) -> Vec<Problem> {
        let inner = &self.inner;
        let mut problems = Vec::new();
        if self.is_shutting_down() {
            problems.push(Problem::ShuttingDown);
        }
        if !inner.log.is_writable() {
            problems.push(Problem::AuditLogWriteFailed);
        }
        problems.extend(data_dir_problems(&inner.data_dir, inner.min_free_bytes));
        if let Some(reachable) = &inner.database
            && !reachable.load(Ordering::Acquire)
        {
            problems.push(Problem::DatabaseUnreachable);
        }
        problems
    }
}

/// Checks that `dir` can take more records: writable by this process (effective
/// ids, as the writes will be), not on a read-only mount, with `min_free_bytes`
/// available to unprivileged users (`f_bavail`, not `f_bfree`: the blocks reserved
/// for root are no help to a server that runs as a normal user).
fn data_dir_problems(dir: &Path, min_free_bytes: u64) -> Vec<Problem> {
    let stat = match rustix::fs::statvfs(dir) {
        Ok(stat) => stat,
        Err(_) => return vec![Problem::DataDirNotWritable],
    };
    let mut problems = Vec::new();
    let writable = !stat.f_flag.contains(StatVfsMountFlags::RDONLY)
        && rustix::fs::accessat(CWD, dir, Access::WRITE_OK, AtFlags::EACCESS).is_ok();
    if !writable {
        problems.push(Problem::DataDirNotWritable);
    }
    if stat.f_bavail.saturating_mul(stat.f_frsize) < min_free_bytes {
        problems.push(Problem::DataDirLowSpace);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writable_directory_with_room_has_no_problems() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(data_dir_problems(dir.path(), 1), vec![]);
    }

    #[test]
    fn a_threshold_above_the_free_space_is_low_space() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            data_dir_problems(dir.path(), u64::MAX),
            vec![Problem::DataDirLowSpace]
        );
    }

    #[test]
    fn a_missing_directory_is_not_writable() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            data_dir_problems(&dir.path().join("gone"), 0),
            vec![Problem::DataDirNotWritable]
        );
    }

    #[test]
    fn every_reason_is_documented_in_protocol_md() {
        let doc = include_str!("../../../PROTOCOL.md");
        for problem in Problem::ALL {
            let row = format!("| `{}` |", problem.as_str());
            assert!(doc.contains(&row), "PROTOCOL.md lacks the row {row}");
        }
    }

    #[test]
    fn reason_words_are_distinct_snake_case() {
        let words: std::collections::HashSet<_> = Problem::ALL.iter().map(|p| p.as_str()).collect();
        assert_eq!(words.len(), Problem::ALL.len());
        assert!(
            words
                .iter()
                .all(|w| w.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }
}
