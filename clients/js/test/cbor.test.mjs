// The CBOR subset of protocol v1.1 §C: deterministic encoding, strict decoding.
import assert from "node:assert/strict";
import { test } from "node:test";

import { cbor } from "../dist/index.js";

const hex = (bytes) => Buffer.from(bytes).toString("hex");
const unhex = (text) => new Uint8Array(Buffer.from(text, "hex"));

test("cbor encodes shortest heads and sorts map keys by their encodings", () => {
  const encoded = cbor.encode({ stdin: new Uint8Array([1]), args: ["a"], env: { b: "1", a: "2" }, module: null });
  assert.equal(
    hex(encoded),
    "a4" + "63656e76a2616161326162613" + "1" + "6461726773816161" + "65737464696e4101" + "666d6f64756c65f6",
  );
  assert.equal(hex(cbor.encode(23)), "17");
  assert.equal(hex(cbor.encode(24)), "1818");
  assert.equal(hex(cbor.encode(65536)), "1a00010000");
  assert.equal(hex(cbor.encode(2 ** 32)), "1b0000000100000000");
  assert.equal(hex(cbor.encode(-1)), "20");
});

test("cbor decodes what it encodes", () => {
  const value = { a: [1, -2, "x", new Uint8Array([9]), true, false, null], b: { c: 10_000_000_000 } };
  assert.deepEqual(JSON.stringify(cbor.decode(cbor.encode(value))), JSON.stringify(value));
});

test("cbor decoding refuses what the subset does not allow", () => {
  for (const [bytes, why] of [
    ["1817", /non-shortest head/],
    ["bf", /indefinite length/],
    ["5f", /indefinite length/],
    ["c11a00000000", /tag/],
    ["f93c00", /float or simple value/],
    ["f7", /float or simple value/],
    ["a201010202", /map key that is not text/],
    ["a2616101616102", /duplicate key `a`/],
    ["62ff00", /not UTF-8/],
    ["4301", /length past the end/],
    ["0101", /bytes after the item/],
  ]) {
    assert.throws(() => cbor.decode(unhex(bytes)), why, bytes);
  }
});
