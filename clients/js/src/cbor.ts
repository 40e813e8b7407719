/**
 * The CBOR subset of protocol v1.1 §C (RFC 8949): unsigned and negative integers,
 * byte and text strings, arrays, maps with text keys, `false`, `true` and `null`,
 * definite lengths only. The encoder writes core deterministic encoding (§4.2.1:
 * shortest heads, map keys sorted by their encodings); the decoder refuses
 * everything else (indefinite lengths, non-shortest heads, tags, floats, other
 * simple values, non-UTF-8 text, non-text or duplicate keys, trailing bytes).
 * @module
 */

import { concat, text } from "./bytes.js";

/** A CBOR value of the subset. Maps are plain objects (text keys). */
export type CborValue =
  | number
  | string
  | boolean
  | null
  | Uint8Array
  | CborValue[]
  | { [key: string]: CborValue };

/** A CBOR item that is not of the subset or not deterministic. */
export class CborError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CborError";
  }
}

function head(major: number, value: number): Uint8Array {
  const m = major << 5;
  if (value < 24) return Uint8Array.of(m | value);
  if (value < 0x100) return Uint8Array.of(m | 24, value);
  if (value < 0x10000) return Uint8Array.of(m | 25, value >> 8, value & 255);
  if (value < 0x100000000) {
    return Uint8Array.of(m | 26, value >>> 24, (value >> 16) & 255, (value >> 8) & 255, value & 255);
  }
  const out = new Uint8Array(9);
  out[0] = m | 27;
  new DataView(out.buffer).setBigUint64(1, BigInt(value));
  return out;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return a.length - b.length;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return 0;
}

/** Encodes `value` in core deterministic encoding. */
export function encode(value: CborValue): Uint8Array {
  if (value === null) return Uint8Array.of(0xf6);
  if (value === false) return Uint8Array.of(0xf4);
  if (value === true) return Uint8Array.of(0xf5);
  if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new CborError(`${value} is not an integer CBOR can carry here`);
    return value >= 0 ? head(0, value) : head(1, -1 - value);
  }
  if (typeof value === "string") {
    const bytes = text(value);
    return concat(head(3, bytes.length), bytes);
  }
  if (value instanceof Uint8Array) return concat(head(2, value.length), value);
  if (Array.isArray(value)) return concat(head(4, value.length), ...value.map(encode));
  const entries = Object.entries(value)
    .filter(([, item]) => item !== undefined)
    .map(([key, item]) => [encode(key), encode(item)] as const)
    .sort((a, b) => compareBytes(a[0], b[0]));
  return concat(head(5, entries.length), ...entries.flat());
}

const MAX_DEPTH = 32;

class Reader {
  at = 0;
  constructor(readonly bytes: Uint8Array) {}

  fail(what: string): never {
    throw new CborError(`${what} at byte ${this.at}`);
  }

  byte(): number {
    if (this.at >= this.bytes.length) this.fail("unexpected end");
    return this.bytes[this.at++];
  }

  /** A head's major type and argument, refusing non-shortest forms. */
  head(): [number, number, number] {
    const start = this.at;
    const first = this.byte();
    const major = first >> 5;
    const info = first & 31;
    if (info < 24) return [major, info, info];
    let value: number;
    if (info === 24) {
      value = this.byte();
      if (value < 24) this.fail("non-shortest head");
    } else if (info === 25) {
      value = (this.byte() << 8) | this.byte();
      if (value < 0x100) this.fail("non-shortest head");
    } else if (info === 26) {
      value = ((this.byte() << 24) >>> 0) + (this.byte() << 16) + (this.byte() << 8) + this.byte();
      if (value < 0x10000) this.fail("non-shortest head");
    } else if (info === 27) {
      if (this.at + 8 > this.bytes.length) this.fail("unexpected end");
      const big = new DataView(this.bytes.buffer, this.bytes.byteOffset + this.at, 8).getBigUint64(0);
      this.at += 8;
      if (big < 0x100000000n) this.fail("non-shortest head");
      if (big > BigInt(Number.MAX_SAFE_INTEGER)) this.fail("integer too large");
      value = Number(big);
    } else {
      this.at = start;
      this.fail(info === 31 ? "indefinite length" : "reserved head");
    }
    return [major, info, value];
  }

  take(length: number): Uint8Array {
    if (length > this.bytes.length - this.at) this.fail("length past the end");
    const out = this.bytes.subarray(this.at, this.at + length);
    this.at += length;
    return out;
  }

  item(depth: number): CborValue {
    if (depth > MAX_DEPTH) this.fail("nested too deep");
    const start = this.at;
    const [major, info, value] = this.head();
    switch (major) {
      case 0:
        return value;
      case 1:
        return -1 - value;
      case 2:
        return this.take(value).slice();
      case 3:
        try {
          return new TextDecoder("utf-8", { fatal: true }).decode(this.take(value));
        } catch {
          this.at = start;
          return this.fail("text that is not UTF-8");
        }
      case 4: {
        const out: CborValue[] = [];
        for (let i = 0; i < value; i++) out.push(this.item(depth + 1));
        return out;
      }
      case 5: {
        const out: { [key: string]: CborValue } = Object.create(null);
        for (let i = 0; i < value; i++) {
          const keyAt = this.at;
          const key = this.item(depth + 1);
          if (typeof key !== "string") {
            this.at = keyAt;
            this.fail("map key that is not text");
          }
          if (Object.prototype.hasOwnProperty.call(out, key)) {
            this.at = keyAt;
            this.fail(`duplicate key \`${key}\``);
          }
          out[key] = this.item(depth + 1);
        }
        return out;
      }
      case 6:
        this.at = start;
        return this.fail("tag");
      default:
        if (info === 20) return false;
        if (info === 21) return true;
        if (info === 22) return null;
        this.at = start;
        return this.fail("float or simple value");
    }
  }
}

/** Decodes exactly one item filling `bytes`. */
export function decode(bytes: Uint8Array): CborValue {
  const reader = new Reader(bytes);
  const value = reader.item(0);
  if (reader.at !== bytes.length) reader.fail("bytes after the item");
  return value;
}
