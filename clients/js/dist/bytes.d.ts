/**
 * Byte helpers: base64 (RFC 4648 §4, padded), lowercase hex, UUIDs as 16 bytes,
 * concatenation, constant-time comparison and SHA-256 through WebCrypto.
 * @module
 */
/** The UTF-8 bytes of `text`. */
export declare function text(value: string): Uint8Array;
/** `a || b || ...`. */
export declare function concat(...parts: Uint8Array[]): Uint8Array;
/** Whether two byte strings are equal, in time that depends on their length only. */
export declare function equal(a: Uint8Array, b: Uint8Array): boolean;
/** Standard base64 with padding. */
export declare function toBase64(bytes: Uint8Array): string;
/** Decodes standard padded base64; throws on anything else. */
export declare function fromBase64(value: string): Uint8Array;
/** Lowercase hex. */
export declare function toHex(bytes: Uint8Array): string;
/** Decodes hex (either case); throws on anything else. */
export declare function fromHex(value: string): Uint8Array;
/** Whether `value` is a UUID in the 36-character lowercase form. */
export declare function isUuid(value: string): boolean;
/** The 16 bytes of a UUID's text form. */
export declare function uuidBytes(value: string): Uint8Array;
/** The 36-character lowercase text form of 16 UUID bytes. */
export declare function uuidText(bytes: Uint8Array): string;
/** A view WebCrypto accepts as a BufferSource. */
export declare function buf(bytes: Uint8Array): ArrayBuffer;
/** SHA-256 of the concatenation of `parts`. */
export declare function sha256(...parts: Uint8Array[]): Promise<Uint8Array>;
