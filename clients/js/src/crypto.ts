/**
 * The protocol's cryptography on WebCrypto (Node 20+ and browsers): HPKE
 * (RFC 9180, DHKEM(P-256, HKDF-SHA256), HKDF-SHA256, AES-256-GCM) through
 * `@hpke/core`, ECDSA P-256 SHA-256 signatures in DER, the result's AES-256-GCM
 * and the commitment (protocol v1 §2-§4).
 * @module
 */

import { Aes256Gcm, CipherSuite, DhkemP256HkdfSha256, HkdfSha256 } from "@hpke/core";

import { buf, concat, sha256, text } from "./bytes.js";

const suite = new CipherSuite({
  kem: new DhkemP256HkdfSha256(),
  kdf: new HkdfSha256(),
  aead: new Aes256Gcm(),
});

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
export async function sealRequest(
  sessionKey: Uint8Array,
  sessionId: string,
  plaintext: Uint8Array,
): Promise<Sealed> {
  const recipientPublicKey = await suite.kem.deserializePublicKey(buf(sessionKey));
  const sender = await suite.createSenderContext({
    recipientPublicKey,
    info: buf(text(`wasm-hypervisor v1 request ${sessionId}`)),
  });
  const ciphertext = new Uint8Array(await sender.seal(buf(plaintext), new ArrayBuffer(0)));
  const exported = async (label: string, length: number) =>
    new Uint8Array(await sender.export(buf(text(label)), length));
  return {
    enc: new Uint8Array(sender.enc),
    ciphertext,
    keys: {
      key: await exported("wasm-hypervisor v1 response key", 32),
      nonce: await exported("wasm-hypervisor v1 response nonce", 12),
      salt: await exported("wasm-hypervisor v1 commitment salt", 32),
    },
  };
}

/** Opens a result ciphertext (AAD: the execution id's text); throws if it does not open. */
export async function openResult(
  keys: ResponseKeys,
  executionId: string,
  ciphertext: Uint8Array,
): Promise<Uint8Array> {
  const key = await crypto.subtle.importKey("raw", buf(keys.key), "AES-GCM", false, ["decrypt"]);
  return new Uint8Array(
    await crypto.subtle.decrypt(
      { name: "AES-GCM", iv: buf(keys.nonce), additionalData: buf(text(executionId)), tagLength: 128 },
      key,
      buf(ciphertext),
    ),
  );
}

/** `SHA-256("wasm-hypervisor v1 commitment" || salt || request_sha256 || result_sha256)`. */
export function commitment(
  salt: Uint8Array,
  requestSha256: Uint8Array,
  resultSha256: Uint8Array,
): Promise<Uint8Array> {
  return sha256(text("wasm-hypervisor v1 commitment"), salt, requestSha256, resultSha256);
}

/** A P-256 public key from its SPKI DER, for ECDSA verification. */
export function importSpki(spki: Uint8Array): Promise<CryptoKey> {
  return crypto.subtle.importKey("spki", buf(spki), { name: "ECDSA", namedCurve: "P-256" }, false, [
    "verify",
  ]);
}

/** The 64-byte `r || s` of a DER ECDSA-Sig-Value, or `undefined` if it is not one. */
export function derToRaw(der: Uint8Array): Uint8Array | undefined {
  let at = 0;
  const byte = () => (at < der.length ? der[at++] : -1);
  if (byte() !== 0x30) return undefined;
  const total = byte();
  if (total < 0 || total > 0x7f || total !== der.length - 2) return undefined;
  const out = new Uint8Array(64);
  for (const offset of [0, 32]) {
    if (byte() !== 0x02) return undefined;
    const length = byte();
    if (length < 1 || length > 33 || at + length > der.length) return undefined;
    let value = der.subarray(at, at + length);
    at += length;
    if (value[0] & 0x80) return undefined;
    if (value.length > 1 && value[0] === 0 && !(value[1] & 0x80)) return undefined;
    if (value[0] === 0 && value.length > 1) value = value.subarray(1);
    if (value.length > 32) return undefined;
    out.set(value, offset + 32 - value.length);
  }
  return at === der.length ? out : undefined;
}

/** Whether `signature` (DER) is `key`'s ECDSA P-256 SHA-256 signature over `message`. */
export async function verifySignature(
  key: CryptoKey,
  message: Uint8Array,
  signature: Uint8Array,
): Promise<boolean> {
  const raw = derToRaw(signature);
  if (!raw) return false;
  return crypto.subtle.verify({ name: "ECDSA", hash: "SHA-256" }, key, buf(raw), buf(message));
}

/** The key id: hex SHA-256 of the SPKI DER. */
export async function keyId(spki: Uint8Array): Promise<Uint8Array> {
  return sha256(spki);
}

export { concat };
