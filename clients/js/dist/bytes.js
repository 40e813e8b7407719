/**
 * Byte helpers: base64 (RFC 4648 §4, padded), lowercase hex, UUIDs as 16 bytes,
 * concatenation, constant-time comparison and SHA-256 through WebCrypto.
 * @module
 */
const utf8 = new TextEncoder();
/** The UTF-8 bytes of `text`. */
export function text(value) {
    return utf8.encode(value);
}
/** `a || b || ...`. */
export function concat(...parts) {
    const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
    let at = 0;
    for (const part of parts) {
        out.set(part, at);
        at += part.length;
    }
    return out;
}
/** Whether two byte strings are equal, in time that depends on their length only. */
export function equal(a, b) {
    if (a.length !== b.length)
        return false;
    let diff = 0;
    for (let i = 0; i < a.length; i++)
        diff |= a[i] ^ b[i];
    return diff === 0;
}
const B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const B64_INDEX = new Map([...B64].map((c, i) => [c, i]));
/** Standard base64 with padding. */
export function toBase64(bytes) {
    let out = "";
    for (let i = 0; i < bytes.length; i += 3) {
        const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8) | (bytes[i + 2] ?? 0);
        out += B64[(n >> 18) & 63] + B64[(n >> 12) & 63];
        out += i + 1 < bytes.length ? B64[(n >> 6) & 63] : "=";
        out += i + 2 < bytes.length ? B64[n & 63] : "=";
    }
    return out;
}
/** Decodes standard padded base64; throws on anything else. */
export function fromBase64(value) {
    if (value.length % 4 !== 0)
        throw new TypeError("base64 length is not a multiple of 4");
    const pad = value.endsWith("==") ? 2 : value.endsWith("=") ? 1 : 0;
    const body = value.slice(0, value.length - pad);
    const out = new Uint8Array((value.length / 4) * 3 - pad);
    let bits = 0;
    let count = 0;
    let at = 0;
    for (const c of body) {
        const v = B64_INDEX.get(c);
        if (v === undefined)
            throw new TypeError("not base64");
        bits = ((bits << 6) | v) & 0xffffff;
        count += 6;
        if (count >= 8) {
            count -= 8;
            out[at++] = (bits >> count) & 255;
        }
    }
    return out;
}
/** Lowercase hex. */
export function toHex(bytes) {
    let out = "";
    for (const b of bytes)
        out += b.toString(16).padStart(2, "0");
    return out;
}
/** Decodes hex (either case); throws on anything else. */
export function fromHex(value) {
    if (value.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(value))
        throw new TypeError("not hex");
    const out = new Uint8Array(value.length / 2);
    for (let i = 0; i < out.length; i++)
        out[i] = parseInt(value.slice(2 * i, 2 * i + 2), 16);
    return out;
}
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
/** Whether `value` is a UUID in the 36-character lowercase form. */
export function isUuid(value) {
    return UUID.test(value);
}
/** The 16 bytes of a UUID's text form. */
export function uuidBytes(value) {
    if (!UUID.test(value.toLowerCase()))
        throw new TypeError("not a UUID");
    return fromHex(value.replace(/-/g, ""));
}
/** The 36-character lowercase text form of 16 UUID bytes. */
export function uuidText(bytes) {
    const hex = toHex(bytes);
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
/** A view WebCrypto accepts as a BufferSource. */
export function buf(bytes) {
    return bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
}
/** SHA-256 of the concatenation of `parts`. */
export async function sha256(...parts) {
    return new Uint8Array(await crypto.subtle.digest("SHA-256", buf(concat(...parts))));
}
