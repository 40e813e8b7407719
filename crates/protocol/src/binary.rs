//! The binary bodies of `POST /execute` (protocol v1.1 §B): the request body and
//! the `200` answer, for `Content-Type: application/octet-stream`.
//!
//! ```text
//! body   = session_id (16 bytes, binary UUID) || enc (65 bytes) || ciphertext (the rest)
//! answer = execution_id (16 bytes) || log_index (u64 BE) || commitment (32 bytes)
//!          || leaf_signature_length (u16 BE) || leaf_signature (DER) || ciphertext (the rest)
//! ```
//! Only the framing is binary: HPKE `info`, the result's AAD and every label keep
//! the 36-character text form of the ids. Parsing borrows the ciphertext from the
//! body (no copy, no base64).

use uuid::Uuid;

use crate::envelope::POINT_LEN;

/// The shortest binary body: a session id and `enc`, with an empty ciphertext. A
/// shorter body is `malformed_body`.
pub const MIN_EXECUTE_BODY: usize = 16 + POINT_LEN;

/// The fixed part of a binary answer before the signature.
const ANSWER_HEAD: usize = 16 + 8 + 32 + 2;

/// Why binary bytes are not a body or answer of protocol v1.1 §B.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BinaryError {
    /// A body shorter than [`MIN_EXECUTE_BODY`] bytes.
    #[error(
        "a binary body is at least {MIN_EXECUTE_BODY} bytes (session id and enc); this one is {0}"
    )]
    BodyTooShort(usize),
    /// An answer shorter than its fixed fields.
    #[error("a binary answer is at least {ANSWER_HEAD} bytes; this one is {0}")]
    AnswerTooShort(usize),
    /// A signature length that runs past the end of the answer.
    #[error("the leaf signature length {0} runs past the end of the answer")]
    SignatureLength(usize),
    /// A signature longer than a u16 can say (never a DER ECDSA P-256 signature).
    #[error("a leaf signature of {0} bytes does not fit its u16 length")]
    SignatureTooLong(usize),
}

/// A binary `/execute` body, borrowing its ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecuteBody<'a> {
    pub session_id: Uuid,
    /// The HPKE encapsulated key, as sent (checked to be a point by whoever opens).
    pub enc: [u8; POINT_LEN],
    pub ciphertext: &'a [u8],
}

impl<'a> ExecuteBody<'a> {
    /// Splits a body; anything of at least [`MIN_EXECUTE_BODY`] bytes has the shape.
    pub fn parse(body: &'a [u8]) -> Result<ExecuteBody<'a>, BinaryError> {
        let (Some(id), Some(enc)) = (body.get(..16), body.get(16..MIN_EXECUTE_BODY)) else {
            return Err(BinaryError::BodyTooShort(body.len()));
        };
        let mut session_id = [0; 16];
        session_id.copy_from_slice(id);
        let mut point = [0; POINT_LEN];
        point.copy_from_slice(enc);
        Ok(ExecuteBody {
            session_id: Uuid::from_bytes(session_id),
            enc: point,
            ciphertext: &body[MIN_EXECUTE_BODY..],
        })
    }

    /// The body's bytes.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(MIN_EXECUTE_BODY + self.ciphertext.len());
        body.extend_from_slice(self.session_id.as_bytes());
        body.extend_from_slice(&self.enc);
        body.extend_from_slice(self.ciphertext);
        body
    }
}

/// A binary `200` answer to `/execute`, borrowing its signature and ciphertext.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecuteAnswer<'a> {
    pub execution_id: Uuid,
    pub log_index: u64,
    pub commitment: [u8; 32],
    /// DER ECDSA P-256 SHA-256 over the 57-byte leaf.
    pub leaf_signature: &'a [u8],
    pub ciphertext: &'a [u8],
}

impl<'a> ExecuteAnswer<'a> {
    /// The answer's bytes.
    pub fn to_vec(&self) -> Result<Vec<u8>, BinaryError> {
        let signature_length = u16::try_from(self.leaf_signature.len())
            .map_err(|_| BinaryError::SignatureTooLong(self.leaf_signature.len()))?;
        let mut answer =
            Vec::with_capacity(ANSWER_HEAD + self.leaf_signature.len() + self.ciphertext.len());
        answer.extend_from_slice(self.execution_id.as_bytes());
        answer.extend_from_slice(&self.log_index.to_be_bytes());
        answer.extend_from_slice(&self.commitment);
        answer.extend_from_slice(&signature_length.to_be_bytes());
        answer.extend_from_slice(self.leaf_signature);
        answer.extend_from_slice(self.ciphertext);
        Ok(answer)
    }

    /// Splits an answer; a signature length past its end is refused.
    pub fn parse(answer: &'a [u8]) -> Result<ExecuteAnswer<'a>, BinaryError> {
        let Some(head) = answer.get(..ANSWER_HEAD) else {
            return Err(BinaryError::AnswerTooShort(answer.len()));
        };
        let mut execution_id = [0; 16];
        execution_id.copy_from_slice(&head[..16]);
        let mut log_index = [0; 8];
        log_index.copy_from_slice(&head[16..24]);
        let mut commitment = [0; 32];
        commitment.copy_from_slice(&head[24..56]);
        let signature_length = usize::from(u16::from_be_bytes([head[56], head[57]]));
        let rest = &answer[ANSWER_HEAD..];
        if signature_length > rest.len() {
            return Err(BinaryError::SignatureLength(signature_length));
        }
        let (leaf_signature, ciphertext) = rest.split_at(signature_length);
        Ok(ExecuteAnswer {
            execution_id: Uuid::from_bytes(execution_id),
            log_index: u64::from_be_bytes(log_index),
            commitment,
            leaf_signature,
            ciphertext,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "1b4e28ba-2fa1-41d2-883f-0016d3cca427";

    #[test]
    fn a_body_is_id_then_enc_then_ciphertext() {
        let body = ExecuteBody {
            session_id: Uuid::parse_str(ID).unwrap(),
            enc: [4; POINT_LEN],
            ciphertext: b"sealed",
        };
        let bytes = body.to_vec();
        assert_eq!(&bytes[..16], hex::decode(ID.replace('-', "")).unwrap());
        assert_eq!(bytes[16..81], [4; POINT_LEN]);
        assert_eq!(&bytes[81..], b"sealed");
        assert_eq!(ExecuteBody::parse(&bytes), Ok(body));
    }

    #[test]
    fn a_body_of_81_bytes_has_an_empty_ciphertext_and_80_is_too_short() {
        let parsed = ExecuteBody::parse(&[0; 81]).unwrap();
        assert!(parsed.ciphertext.is_empty());
        assert_eq!(
            ExecuteBody::parse(&[0; 80]),
            Err(BinaryError::BodyTooShort(80))
        );
        assert_eq!(ExecuteBody::parse(&[]), Err(BinaryError::BodyTooShort(0)));
    }

    #[test]
    fn an_answer_round_trips_in_its_byte_layout() {
        let answer = ExecuteAnswer {
            execution_id: Uuid::parse_str(ID).unwrap(),
            log_index: 0x0102_0304_0506_0708,
            commitment: [9; 32],
            leaf_signature: &[0x30, 0x44, 1, 2],
            ciphertext: b"ct",
        };
        let bytes = answer.to_vec().unwrap();
        assert_eq!(&bytes[16..24], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&bytes[24..56], &[9; 32]);
        assert_eq!(&bytes[56..58], &[0, 4]);
        assert_eq!(&bytes[58..62], &[0x30, 0x44, 1, 2]);
        assert_eq!(&bytes[62..], b"ct");
        assert_eq!(ExecuteAnswer::parse(&bytes), Ok(answer));
    }

    #[test]
    fn a_signature_length_past_the_end_is_refused() {
        let mut bytes = ExecuteAnswer {
            execution_id: Uuid::nil(),
            log_index: 0,
            commitment: [0; 32],
            leaf_signature: &[1, 2],
            ciphertext: &[],
        }
        .to_vec()
        .unwrap();
        assert!(ExecuteAnswer::parse(&bytes).is_ok());
        bytes[57] = 3;
        assert_eq!(
            ExecuteAnswer::parse(&bytes),
            Err(BinaryError::SignatureLength(3))
        );
        assert_eq!(
            ExecuteAnswer::parse(&bytes[..57]),
            Err(BinaryError::AnswerTooShort(57))
        );
    }
}
