"""The strict deterministic CBOR of protocol v1.1 §C (no server needed)."""

from __future__ import annotations

import pytest

from wasm_hypervisor._cbor import CborError, decode, encode


def test_encoding_is_core_deterministic():
    # Keys sorted by their encodings: shorter first ("stdin" before "module").
    assert encode({"stdin": b"", "args": ["a"], "module": b"\x00"}) == bytes.fromhex(
        "a3" "6461726773" "816161" "65737464696e" "40" "666d6f64756c65" "4100"
    )
    assert encode(23) == b"\x17" and encode(24) == b"\x18\x18" and encode(65536) == b"\x1a\x00\x01\x00\x00"
    assert encode(-1) == b"\x20" and encode(None) == b"\xf6" and encode(True) == b"\xf5"


def test_values_round_trip():
    value = {"a": [1, -2, 2**63, b"bytes", "text", None, False, {"k": "v"}]}
    assert decode(encode(value)) == value


@pytest.mark.parametrize(
    "hex_bytes, why",
    [
        ("1817", "not the shortest"),
        ("5f4100ff", "indefinite"),
        ("c11a00000000", "a tag"),
        ("f93c00", "float"),
        ("f7", "simple value"),
        ("a2616101616102", "duplicate key"),
        ("a10101", "not text"),
        ("0000", "after the top-level"),
        ("62ff00", "UTF-8"),
        ("4501", "past the end"),
    ],
)
def test_decoding_refuses_what_the_server_refuses(hex_bytes, why):
    with pytest.raises(CborError, match=why):
        decode(bytes.fromhex(hex_bytes))
