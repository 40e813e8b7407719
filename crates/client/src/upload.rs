//! A large `/execute` body sent in chunks, each reported to the run's observer
//! as the connection asks for the next: the progress of an upload that can take
//! a while (a big module, a mount archive). The `Content-Length` is set as a
//! whole body's would be, so the request on the wire is the same.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;

use crate::run::{Observer, RunProgress};

/// Bytes handed to the connection at a time; a body of at most this goes whole,
/// unreported.
pub(crate) const CHUNK: usize = 64 * 1024;

/// `request` with `bytes` as its body, in chunks reported to `observer` when it
/// is larger than one.
pub(crate) fn body(
    request: reqwest::RequestBuilder,
    bytes: Vec<u8>,
    observer: &Observer,
) -> reqwest::RequestBuilder {
    if bytes.len() <= CHUNK {
        return request.body(bytes);
    }
    let length = bytes.len();
    request
        .header(reqwest::header::CONTENT_LENGTH, length)
        .body(reqwest::Body::wrap_stream(Chunks {
            body: Bytes::from(bytes),
            offset: 0,
            observer: observer.clone(),
        }))
}

/// The body's chunks, each reported as handed to the connection (it asks for
/// the next only once it has written the last; with a `Content-Length` it stops
/// asking after the last byte, so the whole is reported with the last chunk).
struct Chunks {
    body: Bytes,
    offset: usize,
    observer: Observer,
}

impl futures_core::Stream for Chunks {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let total = self.body.len();
        if self.offset == total {
            return Poll::Ready(None);
        }
        let end = (self.offset + CHUNK).min(total);
        let chunk = self.body.slice(self.offset..end);
        self.offset = end;
        (self.observer)(RunProgress::Upload {
            sent: end as u64,
            total: total as u64,
        });
        Poll::Ready(Some(Ok(chunk)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn each_chunk_is_reported_as_handed_over_the_last_as_the_whole() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let observer: Observer = Arc::new(move |progress| record.lock().unwrap().push(progress));
        let total = 2 * CHUNK + 1;
        let mut chunks = Chunks {
            body: Bytes::from(vec![0; total]),
            offset: 0,
            observer,
        };
        let waker = std::task::Waker::noop();
        let mut context = Context::from_waker(waker);
        let mut lengths = Vec::new();
        while let Poll::Ready(Some(chunk)) =
            futures_core::Stream::poll_next(Pin::new(&mut chunks), &mut context)
        {
            lengths.push(chunk.unwrap().len());
        }
        assert_eq!(lengths, [CHUNK, CHUNK, 1]);
        let sent: Vec<u64> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|progress| match progress {
                RunProgress::Upload { sent, total: t } => {
                    assert_eq!(*t, total as u64);
                    *sent
                }
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(sent, [CHUNK as u64, 2 * CHUNK as u64, total as u64]);
    }
}
