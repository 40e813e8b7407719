/**
 * The CBOR subset of protocol v1.1 §C (RFC 8949): unsigned and negative integers,
 * byte and text strings, arrays, maps with text keys, `false`, `true` and `null`,
 * definite lengths only. The encoder writes core deterministic encoding (§4.2.1:
 * shortest heads, map keys sorted by their encodings); the decoder refuses
 * everything else (indefinite lengths, non-shortest heads, tags, floats, other
 * simple values, non-UTF-8 text, non-text or duplicate keys, trailing bytes).
 * @module
 */
/** A CBOR value of the subset. Maps are plain objects (text keys). */
export type CborValue = number | string | boolean | null | Uint8Array | CborValue[] | {
    [key: string]: CborValue;
};
/** A CBOR item that is not of the subset or not deterministic. */
export declare class CborError extends Error {
    constructor(message: string);
}
/** Encodes `value` in core deterministic encoding. */
export declare function encode(value: CborValue): Uint8Array;
/** Decodes exactly one item filling `bytes`. */
export declare function decode(bytes: Uint8Array): CborValue;
