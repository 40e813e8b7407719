/**
 * Receipts (PROTOCOL.md, "Receipts (`run --receipt`)") and the checks that prove
 * an execution from one against the log's `/verify` answer, with the names the
 * CLI's `verify` prints (`crates/protocol/src/receipt.rs`): `receipt key`,
 * `leaf signature`, `leaf contents`, `commitment opening`, `checkpoint signature`,
 * `inclusion proof`; and the same checks offline, from the receipt's own
 * `tlog_proof` under a C2SP tlog-policy (protocol v1.2 §T4, §T6). Pure: fetching
 * is the client's business.
 * @module
 */
import { Policy } from "./tlog.js";
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
    /**
     * The `c2sp.org/tlog-proof@v1` text exactly as `GET /tlog/proof/{id}` served
     * it (protocol v1.2 §T4), when the client got one: with the log's note key
     * anyone verifies the receipt offline. Absent from older receipts.
     */
    tlog_proof?: string;
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
/**
 * The receipt's JSON text as the CLI writes it: its fields in order (`tlog_proof`
 * last, when there is one), two-space indent, a final newline.
 */
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
/** What the offline checks say when a receipt has no proof to check offline. */
export declare const NO_TLOG_PROOF = "the receipt carries no tlog_proof; verify it online";
/**
 * Every check of `receipt` from its own `tlog_proof` under `policy` (a C2SP
 * tlog-policy; `Policy.singleLog(noteKey)` for the log's note key alone), in the
 * CLI's order, with no network:
 * 1. `receipt key`: `key_id` is the SHA-256 of `public_key`, and the proof's
 *    checkpoint note carries a valid type-0x02 line of that key named after the
 *    receipt's `origin`;
 * 2. `leaf signature`: the proof's leaf (`extra`) under `public_key`;
 * 3. `leaf contents`: its execution id and commitment, the proof's index;
 * 4. `commitment opening`;
 * 5. `checkpoint signature`: the note passes the policy, its origin is `origin`;
 * 6. `inclusion proof`: from the leaf hash to the note's root.
 * Without a `tlog_proof`, every check but the commitment opening fails with
 * {@link NO_TLOG_PROOF}.
 */
export declare function checkReceiptOffline(receipt: Receipt, policy: Policy): Promise<Check[]>;
export {};
