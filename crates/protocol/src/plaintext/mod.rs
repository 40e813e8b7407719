//! The request and result plaintexts in CBOR (protocol v1.1 §C), and which of the
//! two formats a plaintext is.
//!
//! The documents are [`payload`](crate::payload)'s, with the same keys, meanings
//! and checks as in JSON; only the encoding differs: every field that is base64
//! in JSON is a byte string, hex hashes and other strings are text strings, `env`
//! is a map of text to text, `null` is `0xF6`. A request's byte fields (`module`,
//! `stdin`, each mount's `tar`) are not copied while parsing: [`RequestBytes`]
//! borrows them from the plaintext. Results are written in RFC 8949 §4.2.1 core
//! deterministic encoding ([`cbor::Item`](crate::cbor::Item)).
//!
//! # Layout
//! - This file: [`Format`], which of the two formats a plaintext is.
//! - `request`: the CBOR request read ([`decode_request`], its byte fields
//!   borrowed as [`RequestBytes`]) and written ([`encode_request`]); its field
//!   readers serve the result's reader too.
//! - `write`: [`write_result`], a result of either format written once into a
//!   buffer of its exact length, `mounts_out` archives streamed into it
//!   ([`ArchiveSource`]); `out` is where it writes (the count, then the buffer,
//!   base64 in place), `json` the v1 JSON document and `result` the v1.1 CBOR one.
//! - `result`: the CBOR result, written (for `write`) and read ([`decode_result`],
//!   and [`decode_result_any`] for either format).

mod json;
mod out;
mod request;
mod result;
mod write;

pub use request::{EncodeError, RequestBytes, decode_request, encode_request, encode_request_with};
pub use result::{ResultError, decode_result, decode_result_any};
pub use write::{ArchiveSource, StreamedMount, encode_result, write_result};

/// The two encodings of a plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Format {
    /// UTF-8 JSON, as in protocol v1.
    Json,
    /// A CBOR map (protocol v1.1 §C).
    Cbor,
}

impl Format {
    /// Protocol v1.1 §C: a plaintext whose first byte is a CBOR map head
    /// (0xA0–0xBB) is CBOR; anything else is JSON (and an empty plaintext is JSON,
    /// which then fails to parse).
    pub fn of(plaintext: &[u8]) -> Format {
        match plaintext.first() {
            Some(0xA0..=0xBB) => Format::Cbor,
            _ => Format::Json,
        }
    }

    /// `json` or `cbor`, e.g. for a metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Cbor => "cbor",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbor::Reader;
    use crate::encoding::{Base64, Hex, encode_base64};
    use crate::payload::{
        EffectiveLimits, ExecutionRequest, ExecutionResult, MAX_ARGS_CEILING, MountOut,
        MountRequest, RequestedLimits, Status,
    };

    fn full_request() -> ExecutionRequest {
        ExecutionRequest {
            module: Some(encode_base64(b"\0asm\x01\0\0\0")),
            module_sha256: None,
            invoke: Some("add(1, 2)".into()),
            args: vec!["a".into(), "b c".into()],
            env: [
                ("K".to_owned(), "v".to_owned()),
                ("LONGER".to_owned(), "w".to_owned()),
            ]
            .into_iter()
            .collect(),
            stdin: Some(encode_base64(&[0, 1, 2, 255])),
            limits: Some(RequestedLimits {
                fuel: Some(1000),
                timeout_ms: Some(5),
                ..Default::default()
            }),
            mounts: vec![
                MountRequest {
                    path: "/data".into(),
                    tar: Some(encode_base64(&[7; 1024])),
                    tar_sha256: None,
                    writable: false,
                },
                MountRequest {
                    path: "/out".into(),
                    tar: None,
                    tar_sha256: Some(Hex([0xab; 32])),
                    writable: true,
                },
            ],
            deterministic: true,
            seed: Some(Hex([9; 32])),
        }
    }

    #[test]
    fn the_format_is_told_by_the_first_byte() {
        assert_eq!(Format::of(b"{}"), Format::Json);
        assert_eq!(Format::of(b""), Format::Json);
        assert_eq!(Format::of(&[0xA0]), Format::Cbor);
        assert_eq!(Format::of(&[0xBB]), Format::Cbor);
        assert_eq!(Format::of(&[0xBF]), Format::Json); // indefinite map: not CBOR here
        assert_eq!(Format::of(&[0x9F]), Format::Json);
    }

    #[test]
    fn a_cbor_request_parses_to_the_same_request_as_its_json() {
        let request = full_request();
        let cbor = encode_request(&request).unwrap();
        assert_eq!(Format::of(&cbor), Format::Cbor);
        let (parsed, bytes) = decode_request(&cbor).unwrap();
        let json: ExecutionRequest =
            serde_json::from_slice(&serde_json::to_vec(&request).unwrap()).unwrap();
        assert_eq!(bytes.module.map(encode_base64), json.module);
        assert_eq!(bytes.stdin.map(encode_base64), json.stdin);
        assert_eq!(bytes.tar(0).map(encode_base64), json.mounts[0].tar);
        assert_eq!(bytes.tar(1), None);
        assert_eq!(parsed.module_sha256, json.module_sha256);
        assert_eq!(parsed.invoke, json.invoke);
        assert_eq!(parsed.args, json.args);
        assert_eq!(parsed.env, json.env);
        assert_eq!(parsed.limits, json.limits);
        assert_eq!(parsed.mounts.len(), 2);
        assert_eq!(parsed.mounts[1], json.mounts[1]);
        assert_eq!(parsed.mounts[0].path, "/data");
        assert_eq!(parsed.module, None);
    }

    #[test]
    fn byte_fields_are_borrowed_from_the_plaintext() {
        let cbor = encode_request(&full_request()).unwrap();
        let (_, bytes) = decode_request(&cbor).unwrap();
        let range = cbor.as_ptr_range();
        for field in [bytes.module, bytes.stdin, bytes.tar(0)] {
            let field = field.unwrap();
            assert!(range.contains(&field.as_ptr()), "copied, not borrowed");
        }
    }

    #[test]
    fn a_request_is_written_deterministically() {
        // {"args": ["x"], "module": h'00'} with the shorter key first.
        let request = ExecutionRequest {
            module: Some(encode_base64(&[0])),
            args: vec!["x".into()],
            ..Default::default()
        };
        assert_eq!(
            hex::encode(encode_request(&request).unwrap()),
            "a2646172677381617866 6d6f64756c654100".replace(' ', "")
        );
    }

    fn refused(cbor: &[u8]) -> String {
        decode_request(cbor).unwrap_err().to_string()
    }

    #[test]
    fn unknown_and_duplicate_keys_are_refused() {
        // {"argv": []}
        assert_eq!(
            refused(&hex::decode("a1646172677680").unwrap()),
            "unknown field `argv`"
        );
        // {"args": [], "args": []}
        assert_eq!(
            refused(&hex::decode("a2646172677380646172677380").unwrap()),
            "duplicate field `args`"
        );
        // {"env": {"A": "1", "A": "2"}}
        assert_eq!(
            refused(&hex::decode("a163656e76a26141613161416132").unwrap()),
            "duplicate env name `A`"
        );
        // {"limits": {"cpu": 1}}
        assert_eq!(
            refused(&hex::decode("a1666c696d697473a163637075 01".replace(' ', "")).unwrap()),
            "unknown field `cpu`"
        );
        // {"mounts": [{"writable": true}]}
        assert_eq!(
            refused(
                &hex::decode("a1666d6f756e747381a16877726974616 26c65f5".replace(' ', "")).unwrap()
            ),
            "missing field `path`"
        );
    }

    #[test]
    fn indefinite_lengths_trailing_bytes_and_wrong_types_are_refused() {
        // An indefinite-length map starts with 0xBF: not even CBOR to `Format::of`,
        // and refused by the reader too.
        assert!(
            refused(&hex::decode("bf6461726773 80ff".replace(' ', "")).unwrap())
                .contains("indefinite")
        );
        // {"args": [_ "x"]}: an indefinite array inside.
        assert!(
            refused(&hex::decode("a16461726773 9f6178ff".replace(' ', "")).unwrap())
                .contains("indefinite")
        );
        assert!(refused(&hex::decode("a000").unwrap()).contains("trailing"));
        // {"stdin": "text"}: text where bytes go.
        assert!(
            refused(&hex::decode("a165737464696e 6474657874".replace(' ', "")).unwrap())
                .contains("byte string")
        );
        // {"module_sha256": "AB..."}: uppercase hex.
        let mut upper =
            hex::decode("a16d6d6f64756c655f736861323536 7840".replace(' ', "")).unwrap();
        upper.extend_from_slice("AB".repeat(32).as_bytes());
        assert!(refused(&upper).contains("lowercase hex"));
    }

    #[test]
    fn args_past_the_ceiling_are_refused_before_they_are_read() {
        let mut cbor = hex::decode("a16461726773 9a00010001".replace(' ', "")).unwrap();
        cbor.extend(std::iter::repeat_n(0x60, MAX_ARGS_CEILING + 1));
        assert!(refused(&cbor).contains("more than 65536"));
    }

    #[test]
    fn a_result_round_trips_and_is_deterministic() {
        let result = ExecutionResult {
            execution_id: "1b4e28ba-2fa1-41d2-883f-0016d3cca427".into(),
            status: Status::Completed,
            exit_code: Some(-3),
            returns: vec!["3".into()],
            stdout: Base64(b"out".to_vec()),
            stderr: Base64(vec![]),
            stdout_truncated: false,
            stderr_truncated: true,
            error: Some("e".into()),
            fuel_consumed: 10,
            wall_time_us: 20,
            module_sha256: Some(Hex([1; 32])),
            limits: EffectiveLimits {
                fuel: 1,
                memory_bytes: 2,
                timeout_ms: 3,
                max_output_bytes: 4,
                files_bytes: Some(5),
            },
            engine: "wasmtime".into(),
            missing_blobs: Some(vec![Hex([2; 32])]),
            mounts_out: Some(vec![MountOut {
                path: "/out".into(),
                tar: Base64(vec![0; 1024]),
            }]),
            mounts_out_truncated: true,
            deterministic: true,
            engine_sha256: Some(Hex([3; 32])),
        };
        let cbor = encode_result(&result);
        assert_eq!(decode_result(&cbor).unwrap(), result);
        assert_eq!(decode_result_any(&cbor).unwrap(), result);
        // Keys in deterministic order: the first is the shortest, "error" (19 keys).
        assert_eq!(&cbor[..7], &hex::decode("b3656572726f72").unwrap()[..]);
        let mut reader = Reader::new(&cbor);
        reader.skip().unwrap();
        reader.finish().unwrap();
        let v1 = ExecutionResult {
            error: None,
            missing_blobs: None,
            mounts_out: None,
            mounts_out_truncated: false,
            module_sha256: None,
            exit_code: None,
            ..result
        };
        assert_eq!(decode_result(&encode_result(&v1)).unwrap(), v1);
    }

    /// Results with every optional field on and off, strings that JSON escapes,
    /// and byte fields of every length modulo 3 (base64 padding).
    fn results() -> Vec<ExecutionResult> {
        let base = ExecutionResult::blank(
            "1b4e28ba-2fa1-41d2-883f-0016d3cca427".into(),
            EffectiveLimits {
                fuel: 1 << 40,
                memory_bytes: 1 << 20,
                timeout_ms: 3,
                max_output_bytes: 1024,
                files_bytes: None,
            },
            "wasmtime 48.0.8".into(),
        );
        let mut results = vec![base.clone()];
        for n in 0..7usize {
            let bytes = |seed: u8| (0..n * 37).map(|i| (i as u8).wrapping_mul(seed)).collect();
            results.push(ExecutionResult {
                status: Status::Trap,
                exit_code: (n % 2 == 0).then_some(-(n as i32)),
                returns: (0..n).map(|i| format!("\"q\\{i}\" é")).collect(),
                stdout: Base64(bytes(3)),
                stderr: Base64(bytes(7)[..n].to_vec()),
                stdout_truncated: n % 2 == 1,
                stderr_truncated: n % 3 == 1,
                error: (n % 2 == 1).then(|| "a \"trap\"\n\u{1}\u{7f} ünïcode \u{2028}".into()),
                fuel_consumed: n as u64 * 1000,
                wall_time_us: u64::MAX - n as u64,
                module_sha256: (n % 3 != 0).then_some(Hex([n as u8; 32])),
                limits: EffectiveLimits {
                    files_bytes: (n % 2 == 0).then_some(n as u64),
                    ..base.limits
                },
                missing_blobs: (n == 3).then(|| vec![Hex([1; 32]), Hex([2; 32])]),
                mounts_out: (n >= 2).then(|| {
                    (0..n - 1)
                        .map(|i| MountOut {
                            path: format!("/out{i}/\"x\"\u{1}"),
                            tar: Base64(bytes(i as u8 + 1)[..(n * 31 + i) % (n * 37)].to_vec()),
                        })
                        .collect()
                }),
                mounts_out_truncated: n >= 4,
                ..base.clone()
            });
        }
        results
    }

    #[test]
    fn a_result_written_in_one_buffer_is_its_serde_json_and_its_cbor() {
        for result in results() {
            let json = write_result(&result, Format::Json, &mut []);
            assert_eq!(
                String::from_utf8(json.to_vec()).unwrap(),
                serde_json::to_string(&result).unwrap()
            );
            assert_eq!(
                serde_json::from_slice::<ExecutionResult>(&json).unwrap(),
                result
            );
            let cbor = write_result(&result, Format::Cbor, &mut []);
            assert_eq!(decode_result(&cbor).unwrap(), result);
            assert_eq!(&cbor[..], &encode_result(&result)[..]);
            for written in [&json, &cbor] {
                assert_eq!(
                    written.capacity(),
                    written.len() + crate::hpke::NT,
                    "allocated once, with room for the tag"
                );
            }
        }
    }

    /// An archive handed over in pieces of every size from 1 to 7 bytes, then
    /// the rest.
    struct Pieces(Vec<u8>);

    impl ArchiveSource for Pieces {
        fn archive_len(&self) -> u64 {
            self.0.len() as u64
        }

        fn write_archive(&mut self, sink: &mut dyn FnMut(&[u8])) {
            let mut rest = &self.0[..];
            let mut size = 1;
            while !rest.is_empty() {
                let (piece, after) = rest.split_at(size.min(rest.len()));
                sink(piece);
                rest = after;
                size = size % 7 + 1;
            }
        }
    }

    #[test]
    fn archives_streamed_in_pieces_write_what_archives_in_the_result_write() {
        for result in results() {
            let Some(listed) = result.mounts_out.clone() else {
                continue;
            };
            let bare = ExecutionResult {
                mounts_out: None,
                ..result.clone()
            };
            let mut sources: Vec<Pieces> = listed
                .iter()
                .map(|mount| Pieces(mount.tar.0.clone()))
                .collect();
            for format in [Format::Json, Format::Cbor] {
                let mut mounts: Vec<StreamedMount<'_>> = listed
                    .iter()
                    .zip(sources.iter_mut())
                    .map(|(mount, tar)| StreamedMount {
                        path: &mount.path,
                        tar,
                    })
                    .collect();
                let streamed = write_result(&bare, format, &mut mounts);
                assert_eq!(&streamed[..], &write_result(&result, format, &mut [])[..]);
                assert_eq!(streamed.capacity(), streamed.len() + crate::hpke::NT);
            }
        }
    }
}
