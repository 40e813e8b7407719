/**
 * `wasm-hypervisor`: run WebAssembly on a wasm-hypervisor server sealed end to
 * end (HPKE), check each result's commitment, and prove executions from their
 * receipts against the server's signed Merkle log. ESM, for Node 20+ and
 * browsers (WebCrypto).
 * @module
 */

export {
  Client,
  ClientError,
  ConnectionFailedError,
  DEFAULT_BATCH,
  INITIAL_BATCH,
  KeyMismatchError,
  ProtocolError,
  RequestError,
  ResponseError,
  ServerError,
  SessionSignatureError,
  VerificationError,
  WasmHypervisorError,
  verifyReceipt,
} from "./client.js";
export type { ClientOptions, Limits, Mount, OfflineTrust, Pending, RunOptions, RunResult, ServerIdentity } from "./client.js";
export { checkReceipt, checkReceiptOffline, checkCheckpoint, NO_TLOG_PROOF, receiptJson, saveReceipt } from "./receipt.js";
export {
  NoteError,
  parseNote,
  parseTlogProof,
  Policy,
  PolicyError,
  TlogProofError,
  VerifierKey,
  verifyCheckpointNote,
  verifyNote,
  verifyTlogProof,
} from "./tlog.js";
export type { Checkpoint, Note, NoteSignature, TlogProof, VerifiedCheckpoint, VerifiedTlogProof } from "./tlog.js";
export type { Check, CheckpointResponse, Receipt, VerifyResponse } from "./receipt.js";
export * as cbor from "./cbor.js";
export * as tar from "./tar.js";
export { fromBase64, fromHex, sha256, toBase64, toHex } from "./bytes.js";
