/**
 * Receipts (PROTOCOL.md, "Receipts (`run --receipt`)") and the checks that prove
 * an execution from one against the log's `/verify` answer, with the names the
 * CLI's `verify` prints (`crates/protocol/src/receipt.rs`): `receipt key`,
 * `leaf signature`, `leaf contents`, `commitment opening`, `checkpoint signature`,
 * `inclusion proof`. Pure: fetching is the client's business.
 * @module
 */
/** What `run --receipt` writes, field for field (JSON). */
export interface Receipt {
    version: 1;
    server: string;
    origin: string;
    /** Hex SHA-256 of the server's SPKI. */
    key_id: string;
    /** Base64 SPKI DER of the server's key. */
    public_key: string;
    execution_id: string;
    log_index: number;
    status: string;
    commitment: string;
    /** Keep private: with it anyone can test guesses of the plaintexts. */
    salt: string;
    request_sha256: string;
    result_sha256: string;
    module_sha256: string | null;
    /** Base64 DER ECDSA over the 57-byte leaf. */
    leaf_signature: string;
}
/** A signed checkpoint (`GET /log/checkpoint`). */
export interface CheckpointResponse {
    origin: string;
    tree_size: number;
    root_hash: string;
    body: string;
    signature: string;
}
/** `GET /verify/{execution_id}`. */
export interface VerifyResponse {
    execution_id: string;
    log_index: number;
    timestamp_ms: number;
    commitment: string;
    leaf: string;
    leaf_signature: string;
    inclusion_proof: string[];
    checkpoint: CheckpointResponse;
}
/** One named check and how it went: `error` says why it failed. */
export interface Check {
    name: string;
    ok: boolean;
    error?: string;
}
/** The receipt's JSON text as the CLI writes it: its fields in order, two-space indent, a final newline. */
export declare function receiptJson(receipt: Receipt): string;
/**
 * Writes `receiptJson(receipt)` to `path` (Node only), readable by its owner only
 * (mode 0600, also when the file was there with a wider mode): it holds the
 * commitment's salt. What Python's `Receipt.save` does; `wasm-hypervisor verify`
 * reads the file.
 */
export declare function saveReceipt(receipt: Receipt, path: string): Promise<void>;
interface Checkpoint {
    origin: string;
    treeSize: number;
    root: Uint8Array;
}
/** Checks a checkpoint's signature over its body and that its fields say what the body says. */
export declare function checkCheckpoint(response: CheckpointResponse, key: CryptoKey): Promise<Checkpoint>;
/**
 * Every check of `receipt` against a `/verify` answer under the server's key
 * (SPKI DER), in the CLI's order. All must hold for the receipt to prove its
 * execution.
 */
export declare function checkReceipt(receipt: Receipt, answer: VerifyResponse, spki: Uint8Array): Promise<Check[]>;
export {};
