/**
 * The protocol's cryptography on WebCrypto (Node 20+ and browsers): HPKE
 * (RFC 9180, DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM) through
 * `@hpke/core`, ECDSA P-256 SHA-256 signatures in DER, the result's AES-256-GCM
 * and the commitment (protocol v1 §2-§4).
 * @module
 */
import { concat } from "./bytes.js";
/** What opens a request's answer: the keys both sides export from the HPKE context. */
export interface ResponseKeys {
    key: Uint8Array;
    nonce: Uint8Array;
    salt: Uint8Array;
}
/** A request sealed to a session key. */
export interface Sealed {
    enc: Uint8Array;
    ciphertext: Uint8Array;
    keys: ResponseKeys;
}
/** `SetupBaseS` to the session key with info `"wasm-hypervisor v1 request " || id`, sealing `plaintext` with empty AAD. */
export declare function sealRequest(sessionKey: Uint8Array, sessionId: string, plaintext: Uint8Array): Promise<Sealed>;
/** Opens a result ciphertext (AAD: the execution id's text); throws if it does not open. */
export declare function openResult(keys: ResponseKeys, executionId: string, ciphertext: Uint8Array): Promise<Uint8Array>;
/** `SHA-256("wasm-hypervisor v1 commitment" || salt || request_sha256 || result_sha256)`. */
export declare function commitment(salt: Uint8Array, requestSha256: Uint8Array, resultSha256: Uint8Array): Promise<Uint8Array>;
/** A P-256 public key from its SPKI DER, for ECDSA verification. */
export declare function importSpki(spki: Uint8Array): Promise<CryptoKey>;
/** The 64-byte `r || s` of a DER ECDSA-Sig-Value, or `undefined` if it is not one. */
export declare function derToRaw(der: Uint8Array): Uint8Array | undefined;
/** Whether `signature` (DER) is `key`'s ECDSA P-256 SHA-256 signature over `message`. */
export declare function verifySignature(key: CryptoKey, message: Uint8Array, signature: Uint8Array): Promise<boolean>;
/** The key id: hex SHA-256 of the SPKI DER. */
export declare function keyId(spki: Uint8Array): Promise<Uint8Array>;
export { concat };
