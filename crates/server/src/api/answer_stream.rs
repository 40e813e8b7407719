//! The body of a finished long job's answer (`GET /executions/{execution_id}`),
//! streamed from the one copy kept: the JSON document of protocol §3 with the
//! sealed result's base64 encoded piece by piece, or the binary answer of
//! protocol v1.1 §B as its head and then slices of the sealed result. The bytes
//! are exactly those of the answer built whole (`serde_json`, or
//! `binary::ExecuteAnswer::to_vec`), with a `Content-Length`.
//!
//! A reader that does not read holds one piece (48 KiB of the sealed result,
//! 64 KiB of base64; a replica reading another's answer from the database, one
//! [`AnswerPieces::piece_bytes`]), never a copy of the answer, and a place
//! among the readers ([`ReadSlot`]) until its body has been handed to the
//! connection or dropped with it.

use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use uuid::Uuid;

use crate::answer::ExecutionReceipt;
use crate::async_results::{Answer, AnswerPieces, ReadSlot};
use wasm_hypervisor_protocol::binary;
use wasm_hypervisor_protocol::encoding::{Base64, Hex};
use wasm_hypervisor_protocol::payload::encode_base64;
use wasm_hypervisor_protocol::wire::ExecuteResponse;

use super::error::ApiError;
use super::extract::BodyFormat;

/// Bytes of a kept sealed result sent per piece: 48 KiB, a multiple of 3, so
/// that the base64 of each piece but the last has no padding and the pieces'
/// base64 put end to end is the base64 of the whole.
const KEPT_PIECE_BYTES: usize = 48 << 10;

const _: () = assert!(KEPT_PIECE_BYTES.is_multiple_of(3));

/// Where the sealed result comes from.
enum Source {
    /// This process's copy: pieces are slices of it, not copies.
    Kept(Arc<ExecutionReceipt>),
    /// Another replica's answer, read from the shared store piece by piece.
    Shared(Arc<dyn AnswerPieces>),
}

/// One answer being sent.
pub(super) struct AnswerBody {
    /// Everything before the sealed result.
    head: Option<Bytes>,
    source: Source,
    /// Bytes of the sealed result sent so far.
    offset: u64,
    /// Bytes of the sealed result.
    len: u64,
    /// Bytes of the sealed result per piece.
    piece: usize,
    /// Whether the sealed result is sent as base64 (JSON).
    base64: bool,
    /// Everything after the sealed result.
    tail: Option<Bytes>,
    /// Given back once the body is sent, or dropped with it.
    slot: Option<ReadSlot>,
}

/// The text of the JSON answer up to the sealed result's base64.
const CIPHERTEXT_FIELD: &[u8] = br#""ciphertext":""#;

/// What an answer says around its sealed result.
struct Frame {
    execution_id: Uuid,
    log_index: u64,
    commitment: [u8; 32],
    leaf_signature: Vec<u8>,
}

impl Frame {
    /// The frame of `answer`, the sealed result's length in bytes, and where
    /// the sealed result is read from.
    fn of(answer: Answer) -> (Frame, u64, Source) {
        match answer {
            Answer::Kept(receipt) => (
                Frame {
                    execution_id: receipt.execution_id,
                    log_index: receipt.log_index,
                    commitment: receipt.commitment,
                    leaf_signature: receipt.leaf_signature.clone(),
                },
                receipt.ciphertext.len() as u64,
                Source::Kept(receipt),
            ),
            Answer::Shared(shared) => (
                Frame {
                    execution_id: shared.execution_id,
                    log_index: shared.log_index,
                    commitment: shared.commitment,
                    leaf_signature: shared.leaf_signature,
                },
                shared.ciphertext_bytes,
                Source::Shared(shared.pieces),
            ),
        }
    }

    /// The JSON document with an empty sealed result, cut where it goes: the
    /// wire type's own serialization, so that the fields, their order and their
    /// escaping are those of a synchronous answer.
    fn json_around_ciphertext(self) -> Result<(Vec<u8>, Bytes), ApiError> {
        let mut document = serde_json::to_vec(&ExecuteResponse {
            execution_id: self.execution_id.hyphenated().to_string(),
            ciphertext: Base64(Vec::new()),
            commitment: Hex(self.commitment),
            log_index: self.log_index,
            leaf_signature: Base64(self.leaf_signature),
        })
        .map_err(|error| {
            tracing::error!(%error, "JSON answer not encodable");
            ApiError::Internal
        })?;
        let Some(at) = document
            .windows(CIPHERTEXT_FIELD.len())
            .position(|window| window == CIPHERTEXT_FIELD)
        else {
            tracing::error!("the JSON answer has no ciphertext field");
            return Err(ApiError::Internal);
        };
        let tail = document.split_off(at + CIPHERTEXT_FIELD.len());
        Ok((document, Bytes::from(tail)))
    }

    /// The binary answer with an empty sealed result, which comes last.
    fn binary_head(&self) -> Result<Vec<u8>, ApiError> {
        binary::ExecuteAnswer {
            execution_id: self.execution_id,
            log_index: self.log_index,
            commitment: self.commitment,
            leaf_signature: &self.leaf_signature,
            ciphertext: &[],
        }
        .to_vec()
        .map_err(|error| {
            tracing::error!(%error, "binary answer not encodable");
            ApiError::Internal
        })
    }
}

impl AnswerBody {
    /// The body of `answer` in `format`, holding `slot` (a long job's reader's
    /// place; none for a synchronous answer) while it is sent.
    pub(super) fn new(
        answer: Answer,
        format: BodyFormat,
        slot: Option<ReadSlot>,
    ) -> Result<AnswerBody, ApiError> {
        let (frame, len, source) = Frame::of(answer);
        let piece = match &source {
            Source::Kept(_) => KEPT_PIECE_BYTES,
            Source::Shared(pieces) => pieces.piece_bytes(),
        };
        let (head, tail) = match format {
            BodyFormat::Json => {
                let (head, tail) = frame.json_around_ciphertext()?;
                (head, Some(tail))
            }
            BodyFormat::Binary => (frame.binary_head()?, None),
        };
        Ok(AnswerBody {
            head: Some(Bytes::from(head)),
            source,
            offset: 0,
            len,
            piece,
            base64: format == BodyFormat::Json,
            tail,
            slot,
        })
    }

    /// Bytes of the whole body.
    pub(super) fn content_length(&self) -> u64 {
        let ciphertext = if self.base64 {
            self.len.div_ceil(3) * 4
        } else {
            self.len
        };
        let head = self.head.as_ref().map_or(0, Bytes::len) as u64;
        let tail = self.tail.as_ref().map_or(0, Bytes::len) as u64;
        head + ciphertext + tail
    }

    /// The next part of the body; `None` once it is all sent, and then the
    /// reader's slot is given back.
    async fn next_frame(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if let Some(head) = self.head.take() {
            return Some(Ok(head));
        }
        if self.offset < self.len {
            let take = (self.len - self.offset).min(self.piece as u64);
            let piece = match &self.source {
                Source::Kept(receipt) => {
                    // Within the buffer: `len` is its length.
                    let start = self.offset as usize;
                    Ok(receipt.ciphertext.slice(start..start + take as usize))
                }
                Source::Shared(pieces) => pieces.read(self.offset, take as usize).await,
            };
            return Some(match piece {
                Ok(piece) => {
                    self.offset += take;
                    Ok(if self.base64 {
                        Bytes::from(encode_base64(&piece))
                    } else {
                        piece
                    })
                }
                Err(unavailable) => {
                    // The status is sent: all that is left is to cut the body
                    // short, which the client sees as a broken connection.
                    self.offset = self.len;
                    self.tail = None;
                    self.slot = None;
                    Err(std::io::Error::other(unavailable))
                }
            });
        }
        if let Some(tail) = self.tail.take() {
            return Some(Ok(tail));
        }
        self.slot = None;
        None
    }

    /// The `200` that sends it.
    pub(super) fn into_response(self, content_type: &'static str) -> Response {
        let length = self.content_length();
        let stream = futures_util::stream::unfold(self, |mut body| async move {
            let frame = body.next_frame().await?;
            Some((frame, body))
        });
        (
            StatusCode::OK,
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
                (header::CONTENT_LENGTH, HeaderValue::from(length)),
            ],
            Body::from_stream(stream),
        )
            .into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Mutex;
    use std::time::Duration;

    use http_body_util::BodyExt;
    use uuid::Uuid;

    use crate::access::ClientKey;
    use crate::async_results::{AsyncExecutions, AsyncSettings, SharedAnswer, Unavailable};
    use wasm_hypervisor_protocol::payload::Status;

    fn readers() -> AsyncExecutions {
        AsyncExecutions::in_memory(AsyncSettings {
            retention: Duration::from_secs(600),
            max_pending: 1,
            max_bytes: 1 << 20,
            max_bytes_per_client: 1 << 20,
        })
    }

    fn client() -> ClientKey {
        ClientKey::address(IpAddr::V4(Ipv4Addr::LOCALHOST))
    }

    fn receipt(ciphertext_bytes: usize) -> Arc<ExecutionReceipt> {
        Arc::new(ExecutionReceipt {
            execution_id: Uuid::new_v4(),
            ciphertext: (0..ciphertext_bytes)
                .map(|n| (n % 251) as u8)
                .collect::<Vec<u8>>()
                .into(),
            commitment: [0xc7; 32],
            log_index: 1 << 40,
            leaf_signature: vec![0x30; 71],
            status: Status::Completed,
        })
    }

    /// The answer built whole, as a synchronous `/execute` builds it.
    fn whole(receipt: &ExecutionReceipt, format: BodyFormat) -> Vec<u8> {
        match format {
            BodyFormat::Json => serde_json::to_vec(&ExecuteResponse {
                execution_id: receipt.execution_id.hyphenated().to_string(),
                ciphertext: Base64(receipt.ciphertext.to_vec()),
                commitment: Hex(receipt.commitment),
                log_index: receipt.log_index,
                leaf_signature: Base64(receipt.leaf_signature.clone()),
            })
            .unwrap(),
            BodyFormat::Binary => binary::ExecuteAnswer {
                execution_id: receipt.execution_id,
                log_index: receipt.log_index,
                commitment: receipt.commitment,
                leaf_signature: &receipt.leaf_signature,
                ciphertext: &receipt.ciphertext,
            }
            .to_vec()
            .unwrap(),
        }
    }

    async fn streamed(answer: Answer, format: BodyFormat) -> (Vec<u8>, u64) {
        let store = readers();
        let body =
            AnswerBody::new(answer, format, Some(store.begin_read(client()).unwrap())).unwrap();
        let response = body.into_response("application/json");
        let length = response.headers()[header::CONTENT_LENGTH]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(store.readers(), 0, "a body sent gives its slot back");
        (bytes.to_vec(), length)
    }

    /// Sizes around the piece boundaries and the base64 groups.
    const SIZES: [usize; 9] = [
        0,
        1,
        2,
        3,
        KEPT_PIECE_BYTES - 1,
        KEPT_PIECE_BYTES,
        KEPT_PIECE_BYTES + 1,
        3 * KEPT_PIECE_BYTES + 2,
        PIECES_PIECE * 5 + 1,
    ];

    #[tokio::test]
    async fn the_streamed_answer_is_byte_for_byte_the_answer_built_whole() {
        for size in SIZES {
            let kept = receipt(size);
            for format in [BodyFormat::Json, BodyFormat::Binary] {
                let expected = whole(&kept, format);
                let (bytes, length) = streamed(Answer::Kept(kept.clone()), format).await;
                assert!(bytes == expected, "{size} bytes in {format:?}");
                assert_eq!(length, expected.len() as u64);
            }
        }
    }

    /// A sealed result in memory, read as a replica reads another's, counting
    /// the bytes of each read.
    struct Pieces {
        ciphertext: Bytes,
        reads: Mutex<Vec<usize>>,
        fail_at: Option<u64>,
    }

    const PIECES_PIECE: usize = 3 * 1000;

    #[async_trait::async_trait]
    impl AnswerPieces for Pieces {
        async fn read(&self, offset: u64, len: usize) -> Result<Bytes, Unavailable> {
            if self.fail_at.is_some_and(|at| offset >= at) {
                return Err(Unavailable);
            }
            self.reads.lock().unwrap().push(len);
            let start = offset as usize;
            Ok(Bytes::copy_from_slice(&self.ciphertext[start..start + len]))
        }

        fn piece_bytes(&self) -> usize {
            PIECES_PIECE
        }
    }

    fn shared(receipt: &ExecutionReceipt, pieces: Arc<Pieces>) -> Answer {
        Answer::Shared(SharedAnswer {
            execution_id: receipt.execution_id,
            commitment: receipt.commitment,
            log_index: receipt.log_index,
            leaf_signature: receipt.leaf_signature.clone(),
            ciphertext_bytes: receipt.ciphertext.len() as u64,
            pieces,
        })
    }

    #[tokio::test]
    async fn an_answer_of_another_replica_is_read_piece_by_piece_into_the_same_bytes() {
        for size in SIZES {
            let kept = receipt(size);
            for format in [BodyFormat::Json, BodyFormat::Binary] {
                let pieces = Arc::new(Pieces {
                    ciphertext: kept.ciphertext.clone(),
                    reads: Mutex::new(Vec::new()),
                    fail_at: None,
                });
                let (bytes, _) = streamed(shared(&kept, pieces.clone()), format).await;
                assert!(bytes == whole(&kept, format), "{size} bytes in {format:?}");
                let reads = pieces.reads.lock().unwrap().clone();
                assert_eq!(reads.len(), size.div_ceil(PIECES_PIECE));
                assert!(reads.iter().all(|&read| read <= PIECES_PIECE));
            }
        }
    }

    #[tokio::test]
    async fn an_answer_that_cannot_be_read_further_ends_the_body_in_an_error() {
        let kept = receipt(10 * PIECES_PIECE);
        let pieces = Arc::new(Pieces {
            ciphertext: kept.ciphertext.clone(),
            reads: Mutex::new(Vec::new()),
            fail_at: Some(2 * PIECES_PIECE as u64),
        });
        let store = readers();
        let body = AnswerBody::new(
            shared(&kept, pieces),
            BodyFormat::Binary,
            Some(store.begin_read(client()).unwrap()),
        )
        .unwrap();
        let collected = body
            .into_response("application/octet-stream")
            .into_body()
            .collect()
            .await;
        assert!(collected.is_err());
        assert_eq!(store.readers(), 0);
    }

    #[tokio::test]
    async fn a_reader_that_does_not_read_holds_a_piece_of_the_kept_answer_not_a_copy() {
        let kept = receipt(4 << 20);
        let buffer = kept.ciphertext.as_ptr_range();
        let store = readers();
        for format in [BodyFormat::Binary, BodyFormat::Json] {
            let mut body = AnswerBody::new(
                Answer::Kept(kept.clone()),
                format,
                Some(store.begin_read(client()).unwrap()),
            )
            .unwrap();
            assert_eq!(
                Arc::strong_count(&kept),
                2,
                "the body shares the kept answer"
            );
            let _head = body.next_frame().await.unwrap().unwrap();
            for _ in 0..2 {
                let frame = body.next_frame().await.unwrap().unwrap();
                match format {
                    // A slice of the kept buffer itself.
                    BodyFormat::Binary => {
                        assert_eq!(frame.len(), KEPT_PIECE_BYTES);
                        assert!(buffer.contains(&frame.as_ptr()));
                    }
                    // One piece's base64, made when asked for.
                    BodyFormat::Json => assert_eq!(frame.len(), KEPT_PIECE_BYTES / 3 * 4),
                }
            }
            assert_eq!(store.readers(), 1);
            drop(body);
            assert_eq!(store.readers(), 0, "a dropped body gives its slot back");
            assert_eq!(Arc::strong_count(&kept), 1);
        }
    }
}
