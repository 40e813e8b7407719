//! Captured stdout and stderr: in-memory pipes that keep the first
//! `max_output_bytes` and flag the rest, without ever failing the guest's write.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamResult};

/// An in-memory stdout/stderr that keeps the first `capacity` bytes and quietly
/// drops the rest, remembering that it did. The guest always sees its writes
/// succeed: output past the cap is the host's truncation, not the guest's error.
#[derive(Clone)]
pub(crate) struct CappedOutput {
    inner: Arc<Mutex<CappedBuffer>>,
}

struct CappedBuffer {
    bytes: Vec<u8>,
    capacity: usize,
    truncated: bool,
}

impl Drop for CappedBuffer {
    fn drop(&mut self) {
        // The guest's output is the client's secret.
        zeroize::Zeroize::zeroize(&mut self.bytes);
    }
}

/// Largest write a guest is offered at once; it only bounds one host-side copy.
const WRITE_BUDGET: usize = 64 << 10;

impl CappedOutput {
    pub(crate) fn new(capacity: usize) -> CappedOutput {
        CappedOutput {
            inner: Arc::new(Mutex::new(CappedBuffer {
                bytes: Vec::new(),
                capacity,
                truncated: false,
            })),
        }
    }

    fn push(&self, data: &[u8]) {
        let mut buffer = self.lock();
        let room = buffer.capacity - buffer.bytes.len();
        if data.len() > room {
            buffer.truncated = true;
        }
        let kept = data.len().min(room);
        buffer.bytes.extend_from_slice(&data[..kept]);
    }

    /// What was kept, moved out (the pipe is empty after), in a buffer that is
    /// zeroized when dropped.
    pub(crate) fn take_contents(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(std::mem::take(&mut self.lock().bytes))
    }

    pub(crate) fn truncated(&self) -> bool {
        self.lock().truncated
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CappedBuffer> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl IsTerminal for CappedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CappedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for CappedOutput {
    async fn ready(&mut self) {}
}

#[wasmtime_wasi::async_trait]
impl OutputStream for CappedOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.push(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(WRITE_BUDGET)
    }
}

impl tokio::io::AsyncWrite for CappedOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.push(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_output_keeps_the_first_bytes_and_flags_the_rest() {
        let out = CappedOutput::new(5);
        out.push(b"abc");
        assert!(!out.truncated());
        out.push(b"defg");
        out.push(b"h");
        assert!(out.truncated());
        assert_eq!(&out.take_contents()[..], b"abcde");
    }
}
