//! Checkpoints: the signed tree head of protocol §4, in the C2SP tlog-checkpoint
//! body format (`origin\ntree_size\nbase64(root_hash)\n`), signed with ECDSA P-256
//! over the body bytes. Pure: building, formatting and parsing only.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

/// Why a checkpoint body could not be read.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum CheckpointError {
    /// The body is not three newline-terminated lines.
    #[error("a checkpoint body is exactly three lines, each ending in a newline")]
    Shape,
    /// The origin line is empty or has characters a note may not carry.
    #[error("the origin line is empty or not printable")]
    Origin,
    /// The size line is not a decimal number without leading zeros.
    #[error("the tree size is not a canonical decimal number")]
    Size,
    /// The root line is not the base64 of 32 bytes.
    #[error("the root hash is not the base64 of 32 bytes")]
    Root,
}

/// A tree head: which log, how many leaves, and the root over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root_hash: [u8; 32],
}

impl Checkpoint {
    /// The C2SP tlog-checkpoint body: `origin\ntree_size\nbase64(root_hash)\n`.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.tree_size,
            B64.encode(self.root_hash)
        )
    }

    /// Parses a body (strictly: the exact bytes [`Checkpoint::body`] produces). Extension
    /// lines are not accepted: this log never writes them.
    pub fn parse(body: &str) -> Result<Checkpoint, CheckpointError> {
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root, ""] = lines.as_slice() else {
            return Err(CheckpointError::Shape);
        };
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return Err(CheckpointError::Origin);
        }
        let canonical = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (*size == "0" || !size.starts_with('0'));
        let tree_size = size
            .parse::<u64>()
            .ok()
            .filter(|_| canonical)
            .ok_or(CheckpointError::Size)?;
        let root_hash = B64
            .decode(root)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or(CheckpointError::Root)?;
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            tree_size,
            root_hash,
        })
    }
}

/// A checkpoint and the server's DER signature over its body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    pub checkpoint: Checkpoint,
    pub signature: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_is_the_c2sp_format_and_parses_back() {
        let checkpoint = Checkpoint {
            origin: "wasm-hypervisor.test".to_owned(),
            tree_size: 1,
            root_hash: hex::decode(
                "525375ac6c3c1035426f2a9a383a335fef2f3239b0d293faf3ba7cee3608748f",
            )
            .unwrap()
            .try_into()
            .unwrap(),
        };
        // The body of tests/vectors/protocol_v1.json, computed in Python.
        let body = "wasm-hypervisor.test\n1\nUlN1rGw8EDVCbyqaODozX+8vMjmw0pP687p87jYIdI8=\n";
        assert_eq!(checkpoint.body(), body);
        assert_eq!(Checkpoint::parse(body), Ok(checkpoint));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        let root = B64.encode([0u8; 32]);
        for (body, error) in [
            (format!("o\n1\n{root}"), CheckpointError::Shape),
            (format!("o\n1\n{root}\nextra\n"), CheckpointError::Shape),
            (format!("\n1\n{root}\n"), CheckpointError::Origin),
            (format!("o\n01\n{root}\n"), CheckpointError::Size),
            (format!("o\n-1\n{root}\n"), CheckpointError::Size),
            (
                format!("o\n1\n{}\n", B64.encode([0u8; 31])),
                CheckpointError::Root,
            ),
        ] {
            assert_eq!(Checkpoint::parse(&body), Err(error), "{body:?}");
        }
    }
}
