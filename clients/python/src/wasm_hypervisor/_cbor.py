"""The subset of CBOR (RFC 8949) that protocol v1.1 §C plaintexts use.

Encoding is RFC 8949 §4.2.1 core deterministic: shortest heads, definite lengths,
map keys sorted by the bytewise order of their encodings. Decoding is strict, as
the server's is (PROTOCOL.md, "CBOR plaintexts (§C)"): unsigned and negative
integers, byte and text strings, arrays, maps with text keys, ``false``, ``true``
and ``null``, definite lengths and shortest heads only; no tags, floats or other
simple values, no duplicate keys and nothing after the top-level item.

Python values: ``int``, ``bytes``, ``str``, ``list``, ``dict`` (``str`` keys),
``bool`` and ``None``.
"""

from __future__ import annotations

from typing import Any, Dict, List, Tuple

__all__ = ["CborError", "encode", "decode"]

MAX_DEPTH = 32


class CborError(ValueError):
    """Bytes that are not CBOR of the accepted subset, or a value that cannot be written."""


def _head(major: int, value: int) -> bytes:
    if value < 0:
        raise CborError("negative length or value in a head")
    top = major << 5
    if value < 24:
        return bytes([top | value])
    if value < 0x100:
        return bytes([top | 24, value])
    if value < 0x10000:
        return bytes([top | 25]) + value.to_bytes(2, "big")
    if value < 0x100000000:
        return bytes([top | 26]) + value.to_bytes(4, "big")
    if value < 0x10000000000000000:
        return bytes([top | 27]) + value.to_bytes(8, "big")
    raise CborError("integer too large for CBOR without bignums")


def _encode(value: Any, out: List[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise CborError("nesting too deep")
    if value is None:
        out.append(b"\xf6")
    elif value is True:
        out.append(b"\xf5")
    elif value is False:
        out.append(b"\xf4")
    elif isinstance(value, int):
        if value >= 0:
            out.append(_head(0, value))
        else:
            out.append(_head(1, -1 - value))
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        out.append(_head(2, len(data)))
        out.append(data)
    elif isinstance(value, str):
        data = value.encode("utf-8")
        out.append(_head(3, len(data)))
        out.append(data)
    elif isinstance(value, (list, tuple)):
        out.append(_head(4, len(value)))
        for item in value:
            _encode(item, out, depth + 1)
    elif isinstance(value, dict):
        entries: List[Tuple[bytes, Any]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise CborError("map keys must be text")
            entries.append((encode(key), item))
        entries.sort(key=lambda entry: entry[0])
        out.append(_head(5, len(entries)))
        for key_bytes, item in entries:
            out.append(key_bytes)
            _encode(item, out, depth + 1)
    else:
        raise CborError(f"cannot encode a {type(value).__name__}")


def encode(value: Any) -> bytes:
    """``value`` in core deterministic CBOR."""
    out: List[bytes] = []
    _encode(value, out, 0)
    return b"".join(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def fail(self, what: str, at: int) -> CborError:
        return CborError(f"{what} at byte {at}")

    def take(self, count: int, at: int) -> bytes:
        end = self.pos + count
        if count < 0 or end > len(self.data):
            raise self.fail("a length runs past the end", at)
        chunk = self.data[self.pos : end]
        self.pos = end
        return chunk

    def head(self) -> Tuple[int, int, int]:
        at = self.pos
        if at >= len(self.data):
            raise self.fail("unexpected end", at)
        initial = self.data[at]
        self.pos += 1
        major, info = initial >> 5, initial & 0x1F
        if info < 24:
            return major, info, at
        if major == 7:
            return major, info, at
        if info == 31:
            raise self.fail("indefinite length", at)
        if info > 27:
            raise self.fail("reserved additional information", at)
        size = 1 << (info - 24)
        value = int.from_bytes(self.take(size, at), "big")
        shortest = {24: 24, 25: 0x100, 26: 0x10000, 27: 0x100000000}[info]
        if value < shortest:
            raise self.fail("a head that is not the shortest for its value", at)
        return major, value, at

    def item(self, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise self.fail("nesting too deep", self.pos)
        major, value, at = self.head()
        if major == 0:
            return value
        if major == 1:
            return -1 - value
        if major == 2:
            return self.take(value, at)
        if major == 3:
            try:
                return self.take(value, at).decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("a text string that is not UTF-8", at) from None
        if major == 4:
            if value > len(self.data) - self.pos:
                raise self.fail("an array longer than the input", at)
            return [self.item(depth + 1) for _ in range(value)]
        if major == 5:
            if value > len(self.data) - self.pos:
                raise self.fail("a map longer than the input", at)
            result: Dict[str, Any] = {}
            for _ in range(value):
                key_at = self.pos
                key = self.item(depth + 1)
                if not isinstance(key, str):
                    raise self.fail("a map key that is not text", key_at)
                if key in result:
                    raise self.fail(f"duplicate key {key!r}", key_at)
                result[key] = self.item(depth + 1)
            return result
        if major == 6:
            raise self.fail("a tag", at)
        # major 7: simple values and floats
        if value == 20:
            return False
        if value == 21:
            return True
        if value == 22:
            return None
        raise self.fail("a float or an unsupported simple value", at)


def decode(data: bytes) -> Any:
    """The one item ``data`` holds, strictly (see the module's doc)."""
    reader = _Reader(bytes(data))
    value = reader.item(0)
    if reader.pos != len(reader.data):
        raise reader.fail("bytes after the top-level item", reader.pos)
    return value
