//! Group commit: how an append becomes durable, on the appending thread or the
//! log's writer thread.
//!
//! # The segment
//! The file grows by [`SEGMENT_CHUNK`] of zeros actually written (not `fallocate`d:
//! an unwritten extent would make the first write into it a metadata change
//! again), in writes of at most [`SETUP_PIECE`] (so that the page cache holds the
//! segment in small folios), followed by one `fsync`. Records then overwrite zeros, so the
//! `fdatasync` after a batch has no file size or extent to record: on ext4 it is a
//! data-only flush, not a journal commit. Whoever wrote a batch grows the file when
//! the zeros left fall below a quarter of a chunk, just after acknowledging it: once
//! every ~30,000 records (a 4 MiB write and an `fsync`, a few ms), and never for a
//! batch whose records would not fit (a batch is at most 140 KiB).
//!
//! # Group commit, adaptive, on the appending thread
//! Appends queue in memory. An append that finds nobody writing (at light load,
//! almost always) takes the file itself: it writes everything queued with one
//! positional `write`, calls `fdatasync` once, and acknowledges each record with
//! its log index, all on its own thread, with no hand-off to another thread and
//! back. (Executions append from the guest runtime's threads, never from the one
//! that serves HTTP, so `/health` never waits behind a sync.) Appends that arrive
//! while the file is taken do not wait for it: they queue, and whoever holds the
//! file hands them to the log's writer thread when it lets go. The writer thread
//! thus only runs under concurrent load, where one wake-up serves a whole batch:
//! it takes every queued record, and when at least two were queued but fewer than
//! in the previous batch, lets the group fill up to the previous batch's size for
//! at most a quarter of the last commit's duration, capped at [`MAX_GATHER`] (see
//! [`gather_window`]). A lone append never waits for company. An append that
//! returns `Ok` is on disk. [`FileLog::writer_stats`](super::FileLog::writer_stats) counts batches, records,
//! batches that waited, and batches written by the appending task itself.
//!
//! The writer thread also persists the checkpoint (`super::super::checkpoint_file`)
//! once a [`CHECKPOINT_INTERVAL`](checkpoint_file::CHECKPOINT_INTERVAL) while the log grows, and the exact one at a close.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, TryLockError};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::super::AuditError;
use super::super::checkpoint_file;
use super::super::record::{BatchMark, LogRecord, MAX_RECORD_LEN};
use super::{CHECKPOINT_FILE, Shared};

/// Zeros the file grows by. 4 MiB holds about 30,000 records, and writing and
/// syncing it takes a few milliseconds: one batch in 30,000 records waits that long.
/// A larger chunk makes the wait rarer but longer (and costs every new data
/// directory more disk up front); the total time spent growing is the same.
pub const SEGMENT_CHUNK: u64 = 4 << 20;

/// Most bytes one `write` of the file's setup (a new file's zeros, a converted
/// file, the segment's growth) puts in the file. The page cache keeps what one
/// write brings in as folios of that write's size (up to 2 MiB), and each append
/// of a few hundred bytes makes the kernel walk every block of the folio it lands
/// in, when the write begins and again at writeback: a segment written in one
/// 4 MiB write cost every append ~15–20 µs more CPU (ext4, Linux 6.18;
/// BENCHMARKS.md, "Near the floor"). At 64 KiB the walk is 16 blocks.
pub(super) const SETUP_PIECE: usize = 64 * 1024;

/// Most records the writer takes into one write and sync.
const MAX_BATCH: usize = 1024;
/// Most bytes one batch writes: how far past the start of a torn batch its bytes
/// can reach.
pub const MAX_BATCH_BYTES: u64 = (MAX_BATCH * MAX_RECORD_LEN) as u64;
/// Appends queued or being written before more appends wait to queue.
pub(super) const QUEUE_DEPTH: usize = 4096;
/// Longest the writer lets a group form (see [`gather_window`]).
pub const MAX_GATHER: Duration = Duration::from_micros(250);
/// The writer lets a group form for at most this fraction of the last commit.
const GATHER_FRACTION: u32 = 4;

/// The appends waiting for a writer.
#[derive(Default)]
pub(super) struct Queue {
    pub(super) pending: Vec<Pending>,
    /// The writer thread is asked to run: appends queued while the file was
    /// taken, a checkpoint due, or a close.
    pub(super) wake: bool,
    /// The writer thread is letting a group form: appends wake it.
    pub(super) gathering: bool,
    /// Set by a close: appends are refused from then on.
    pub(super) closed: bool,
    /// Told when the close is done.
    pub(super) close_done: Vec<oneshot::Sender<()>>,
}

/// What the writer thread last persisted of the checkpoint, and when.
pub(super) struct Persisted {
    pub(super) size: Option<u64>,
    pub(super) at: Instant,
}

/// An append waiting for (or taken into) a batch.
pub(super) type Pending = (LogRecord, oneshot::Sender<Result<u64, AuditError>>);

impl Shared {
    /// Asks the writer thread to run (see [`Queue::wake`]).
    fn wake_writer(&self, queue: &mut Queue) {
        queue.wake = true;
        self.wake.notify_one();
    }

    /// Refuses appends from now on and asks the writer thread to write what is
    /// queued and stop; `done` is told when it has.
    pub(super) fn request_close(&self, done: Option<oneshot::Sender<()>>) {
        let mut queue = self.lock_queue();
        queue.closed = true;
        queue.close_done.extend(done);
        self.wake_writer(&mut queue);
    }

    /// Called by an appending task once its record is queued. If nobody holds the
    /// file, writes one batch of what is queued on this thread; then, if appends
    /// queued meanwhile (they found the file taken and left them to whoever held
    /// it) or a checkpoint is due, wakes the writer thread.
    ///
    /// Nothing is left behind: an append either finds the file free, or is queued
    /// before the holder lets go, and the holder looks at the queue after letting go.
    pub(super) fn write_queued(&self) {
        let mut guard = match self.writer.try_lock() {
            Ok(guard) => guard,
            Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(TryLockError::WouldBlock) => return,
        };
        let Some(writer) = guard.as_mut() else {
            return;
        };
        let mut batch = self.take_batch();
        if !batch.is_empty() {
            self.inline.fetch_add(1, Ordering::Relaxed);
            writer.commit(self, &mut batch);
            writer.keep_ahead(self);
        }
        drop(guard);
        let checkpoint_due = self.checkpoint_due();
        let mut queue = self.lock_queue();
        if (!queue.pending.is_empty() || checkpoint_due) && !queue.wake {
            self.wake_writer(&mut queue);
        }
    }

    /// Takes at most [`MAX_BATCH`] queued appends, oldest first.
    fn take_batch(&self) -> Vec<Pending> {
        let mut queue = self.lock_queue();
        let count = queue.pending.len().min(MAX_BATCH);
        queue.pending.drain(..count).collect()
    }
}

/// How long the writer lets a group form once the queue is empty, having taken
/// `taken` appends: not at all for a lone append or for a group at least as large
/// as the previous batch (`previous`), otherwise a [`GATHER_FRACTION`] of the last
/// commit's duration, at most [`MAX_GATHER`].
pub fn gather_window(taken: usize, previous: usize, last_commit: Duration) -> Option<Duration> {
    if taken < 2 || taken >= previous || taken >= MAX_BATCH {
        return None;
    }
    let window = (last_commit / GATHER_FRACTION).min(MAX_GATHER);
    (!window.is_zero()).then_some(window)
}

/// The file and where it stands; whoever holds it (behind [`Shared::writer`])
/// writes the next batch.
pub(super) struct Writer {
    pub(super) file: File,
    /// Where the log ends: the next batch is written here.
    end: u64,
    /// The file's length: from `end` to here are durable zeros.
    allocated: u64,
    /// Bytes of zeros the file grows by.
    chunk: u64,
    /// The number of the next batch.
    batch: u16,
    /// How long the last successful write and sync took.
    last_commit: Duration,
    /// Records in the last batch.
    previous_batch: usize,
    /// The encoded batch, reused.
    buffer: Vec<u8>,
}

/// Marks the log stopped however the writer thread ends, so that health checks
/// and waiting appends learn of it: appends still queued are answered with an
/// error (their answer channels are dropped), never left waiting.
struct StopGuard(Arc<Shared>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.stopped.store(true, Ordering::Release);
        self.0.queue_slots.close();
        let mut queue = self.0.lock_queue();
        queue.closed = true;
        queue.pending.clear();
        queue.close_done.clear();
    }
}

/// The writer thread: sleeps until woken (see [`Queue::wake`]), then writes every
/// queued append, letting a group form as [`gather_window`] says, persists the
/// checkpoint once a [`CHECKPOINT_INTERVAL`](checkpoint_file::CHECKPOINT_INTERVAL), and on a close writes the rest,
/// persists the exact checkpoint, releases the file and ends.
fn writer_thread(shared: Arc<Shared>) {
    let _stop = StopGuard(shared.clone());
    loop {
        let closing = {
            let mut queue = shared.lock_queue();
            while !queue.wake {
                queue = shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            queue.wake = false;
            queue.closed
        };
        {
            let mut guard = shared.lock_writer();
            let Some(writer) = guard.as_mut() else {
                return;
            };
            loop {
                let mut batch = writer.gather(&shared);
                if batch.is_empty() {
                    break;
                }
                writer.commit(&shared, &mut batch);
                writer.keep_ahead(&shared);
            }
            if closing {
                let _ = writer.file.sync_all();
                // Releases the file (and its lock).
                *guard = None;
            }
        }
        persist_checkpoint(&shared);
        if closing {
            shared.stopped.store(true, Ordering::Release);
            shared.queue_slots.close();
            for done in shared.lock_queue().close_done.drain(..) {
                let _ = done.send(());
            }
            return;
        }
        // Appends that queued while this thread held the file left themselves to
        // it: look again before sleeping.
        let mut queue = shared.lock_queue();
        if !queue.pending.is_empty() {
            queue.wake = true;
        }
    }
}

/// Signs and persists a checkpoint of the durable tree, if it grew.
fn persist_checkpoint(shared: &Shared) {
    let mut persisted = shared
        .persisted
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    persisted.at = Instant::now();
    let (size, root) = shared.lock_index().leaves.head();
    if persisted.size == Some(size) {
        return;
    }
    let signed = shared.signer.sign(size, root);
    match checkpoint_file::write(&shared.dir, CHECKPOINT_FILE, &signed) {
        Ok(()) => persisted.size = Some(size),
        Err(error) => {
            tracing::error!(dir = %shared.dir.display(), %error, "cannot persist the audit checkpoint")
        }
    }
}

/// Starts the writer thread of `shared`, whose writer is in place.
pub(super) fn start_thread(shared: Arc<Shared>) -> Result<(), AuditError> {
    let path = shared.path.clone();
    std::thread::Builder::new()
        .name("audit-writer".into())
        .spawn(move || writer_thread(shared))
        .map(drop)
        .map_err(|source| AuditError::Io { path, source })
}

impl Writer {
    /// The writer of a log whose records end at `end`, in a file of `allocated`
    /// bytes that grows by `chunk`; its next batch is numbered `batch`.
    pub(super) fn new(file: File, end: u64, allocated: u64, chunk: u64, batch: u16) -> Writer {
        Writer {
            file,
            end,
            allocated,
            chunk,
            batch,
            last_commit: Duration::ZERO,
            previous_batch: 0,
            buffer: Vec::new(),
        }
    }

    /// On the writer thread: takes what is queued (at most [`MAX_BATCH`]), waiting
    /// for more as [`gather_window`] says.
    fn gather(&mut self, shared: &Shared) -> Vec<Pending> {
        let mut queue = shared.lock_queue();
        let Some(window) =
            gather_window(queue.pending.len(), self.previous_batch, self.last_commit)
        else {
            let count = queue.pending.len().min(MAX_BATCH);
            return queue.pending.drain(..count).collect();
        };
        shared.gathered.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + window;
        queue.gathering = true;
        // The group stops forming when it is as large as the previous batch.
        while queue.pending.len() < self.previous_batch.min(MAX_BATCH) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            queue = shared
                .wake
                .wait_timeout(queue, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        queue.gathering = false;
        let count = queue.pending.len().min(MAX_BATCH);
        queue.pending.drain(..count).collect()
    }

    /// Writes one batch with a single write and sync, then acknowledges each append.
    pub(super) fn commit(&mut self, shared: &Shared, batch: &mut Vec<Pending>) {
        if batch.is_empty() {
            return;
        }
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.clear();
        let count = batch.len();
        for (position, (record, _)) in batch.iter().enumerate() {
            let mark = BatchMark {
                batch: self.batch,
                last: position + 1 == count,
            };
            record.encode_into(mark, &mut buffer);
        }
        let start = self.end;
        // The health flag changes before any acknowledgement goes out, so that a
        // client that was answered and then asks `/health` sees the same state.
        match self.write_durably(&buffer) {
            Ok(()) => {
                self.batch = BatchMark::next_batch(self.batch);
                self.previous_batch = count;
                shared.batches.fetch_add(1, Ordering::Relaxed);
                shared.records.fetch_add(count as u64, Ordering::Relaxed);
                shared.last_batch_ok.store(true, Ordering::Release);
                let mut index = shared.lock_index();
                let mut offset = start;
                for (record, done) in batch.drain(..) {
                    let position = index.leaves.tree.size();
                    index.push(&record, offset);
                    offset += record.encoded_len() as u64;
                    let _ = done.send(Ok(position));
                }
            }
            Err(error) => {
                shared.last_batch_ok.store(false, Ordering::Release);
                tracing::error!(path = %shared.path.display(), %error, "audit log append failed; the batch was not acknowledged");
                for (_, done) in batch.drain(..) {
                    let _ = done.send(Err(AuditError::Unavailable(error.to_string())));
                }
            }
        }
        self.buffer = buffer;
    }

    /// After a batch: grows the file when the zeros left fall below a quarter of a
    /// chunk.
    fn keep_ahead(&mut self, shared: &Shared) {
        if self.allocated.saturating_sub(self.end) < self.chunk / 4 {
            let target = self.allocated + self.chunk;
            if let Err(error) = self.grow(target) {
                tracing::error!(path = %shared.path.display(), %error, "cannot grow the audit log's preallocated segment");
            }
        }
    }

    /// Writes `bytes` at the end of the log over preallocated zeros (growing the
    /// file first if they would not fit) and syncs them. On failure, puts the zeros
    /// back (best effort) so that the next batch, written at the same offset, is
    /// not followed by this one's remains.
    fn write_durably(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let end = self.end + bytes.len() as u64;
        if end > self.allocated {
            self.grow(end.max(self.allocated + self.chunk))?;
        }
        let started = Instant::now();
        let result = self
            .file
            .write_all_at(bytes, self.end)
            .and_then(|()| self.file.sync_data());
        match result {
            Ok(()) => {
                self.last_commit = started.elapsed();
                self.end = end;
                Ok(())
            }
            Err(error) => {
                let zeros = vec![0; bytes.len()];
                let _ = self
                    .file
                    .write_all_at(&zeros, self.end)
                    .and_then(|()| self.file.sync_data());
                Err(error)
            }
        }
    }

    /// Extends the file to `target` bytes with zeros actually written, then
    /// `fsync`s it (its size changed): the appends that overwrite them later are
    /// data-only.
    fn grow(&mut self, target: u64) -> std::io::Result<()> {
        let zeros = vec![0u8; SETUP_PIECE];
        let mut at = self.allocated;
        while at < target {
            let piece = SETUP_PIECE.min((target - at) as usize);
            self.file.write_all_at(&zeros[..piece], at)?;
            at += piece as u64;
        }
        self.file.sync_all()?;
        self.allocated = target;
        Ok(())
    }
}

/// The pieces, as ranges of `len` bytes, in which [`write_in_pieces`] writes
/// them: in order, each at most [`SETUP_PIECE`] bytes.
fn pieces(len: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..len)
        .step_by(SETUP_PIECE)
        .map(move |start| start..len.min(start + SETUP_PIECE))
}

/// Writes `bytes` at offset `at` in writes of at most [`SETUP_PIECE`] bytes (see
/// there why), without syncing.
pub(super) fn write_in_pieces(file: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    for range in pieces(bytes.len()) {
        file.write_all_at(&bytes[range.clone()], at + range.start as u64)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_writes_are_pieces_of_at_most_64_kib_covering_the_bytes_in_order() {
        for len in [
            0,
            1,
            SETUP_PIECE - 1,
            SETUP_PIECE,
            SETUP_PIECE + 1,
            32 + (4 << 20),
        ] {
            let ranges: Vec<_> = pieces(len).collect();
            assert!(
                ranges
                    .iter()
                    .all(|r| !r.is_empty() && r.len() <= SETUP_PIECE)
            );
            let mut next = 0;
            for range in &ranges {
                assert_eq!(range.start, next, "len {len}: {ranges:?}");
                next = range.end;
            }
            assert_eq!(next, len);
        }
        // A new data directory's first segment: its 4 MiB of zeros, plus the
        // header, in 65 writes, not one.
        assert_eq!(pieces(32 + (4 << 20)).count(), 65);
    }

    #[test]
    fn bytes_written_in_pieces_read_back_whole_at_their_offset() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("f"))
            .unwrap();
        let bytes: Vec<u8> = (0..3 * SETUP_PIECE + 7).map(|i| (i % 251) as u8).collect();
        write_in_pieces(&file, &bytes, 5).unwrap();
        let mut back = vec![0; bytes.len()];
        file.read_exact_at(&mut back, 5).unwrap();
        assert_eq!(back, bytes);
        assert_eq!(file.metadata().unwrap().len(), 5 + bytes.len() as u64);
    }
}
