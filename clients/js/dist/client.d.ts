/**
 * The client: fetches and pins the server's key, opens sessions (signed batches
 * in a pool with protocol v1.1, one at a time with v1) and checks their
 * signatures, seals a request, opens the result and checks the commitment, sends
 * modules by reference once the server holds them, submits long jobs with
 * `Prefer: respond-async`, and proves executions from receipts.
 * @module
 */
import { Policy, VerifierKey } from "./tlog.js";
import type { Check, Receipt, VerifyResponse, CheckpointResponse } from "./receipt.js";
/**
 * Anything that went wrong talking to a server or checking what it said; the
 * subclasses say which: `ConnectionFailedError`, `ProtocolError`, `ResponseError`
 * (`RequestError` for 4xx, `ServerError` for 5xx),
 * `KeyMismatchError`, `SessionSignatureError`, `VerificationError`.
 */
export declare class WasmHypervisorError extends Error {
    constructor(message: string);
}
/**
 * The base error's name in release 0.1, kept as an alias for a release:
 * `error instanceof ClientError` still holds for every error of the package.
 * @deprecated Use `WasmHypervisorError`.
 */
export declare const ClientError: typeof WasmHypervisorError;
/** @deprecated Use `WasmHypervisorError`. */
export type ClientError = WasmHypervisorError;
/** The server could not be reached, or the connection broke. */
export declare class ConnectionFailedError extends WasmHypervisorError {
    constructor(message: string);
}
/**
 * The server answered with an error status, in the protocol's error shape when it
 * could be read (else code `unknown`). Catch this to handle a refusal whichever
 * side it blames; the subclasses say which: `RequestError` (4xx) and
 * `ServerError` (5xx).
 */
export declare class ResponseError extends WasmHypervisorError {
    readonly status: number;
    readonly code: string;
    /** Seconds from `Retry-After`, when sent. */
    readonly retryAfter?: number | undefined;
    constructor(status: number, code: string, message: string, 
    /** Seconds from `Retry-After`, when sent. */
    retryAfter?: number | undefined);
}
/**
 * A 4xx answer: the server refused this request (`unauthorized`, `rate_limited`,
 * `too_many_client_sessions`, `invalid_parameter`, ...).
 */
export declare class RequestError extends ResponseError {
    constructor(status: number, code: string, message: string, retryAfter?: number);
}
/**
 * A 5xx answer (or any other non-success status): the server could not serve the
 * request (`overloaded`, `too_many_sessions`, `log_unavailable`, ...). Release
 * 0.1 threw it for 4xx answers too: catch `ResponseError` for both.
 */
export declare class ServerError extends ResponseError {
    constructor(status: number, code: string, message: string, retryAfter?: number);
}
/** The server's key is not the pinned one. */
export declare class KeyMismatchError extends WasmHypervisorError {
    readonly expected: string;
    readonly actual: string;
    constructor(expected: string, actual: string);
}
/** A session key's signature does not verify under the server's key. */
export declare class SessionSignatureError extends WasmHypervisorError {
    constructor();
}
/** The server answered something the protocol does not allow. */
export declare class ProtocolError extends WasmHypervisorError {
    constructor(message: string);
}
/** A receipt that does not prove its execution: `check` names the first check that failed. */
export declare class VerificationError extends WasmHypervisorError {
    readonly check: string;
    readonly checks: Check[];
    constructor(checks: Check[]);
}
/** Limits a request may lower (camelCase or the protocol's snake_case names). */
export interface Limits {
    fuel?: number;
    memoryBytes?: number;
    timeoutMs?: number;
    maxOutputBytes?: number;
    filesBytes?: number;
    memory_bytes?: number;
    timeout_ms?: number;
    max_output_bytes?: number;
    files_bytes?: number;
}
/** A directory for the guest (protocol v1.1 §E): a tar archive, or empty and writable. */
export interface Mount {
    path: string;
    tar?: Uint8Array;
    writable?: boolean;
}
/** What to run, besides the module. */
export interface RunOptions {
    args?: string[];
    env?: Record<string, string>;
    stdin?: Uint8Array | string;
    limits?: Limits;
    mounts?: Mount[];
    /** A WAVE call expression, `add(1, 2)`: call one export instead of running a command. */
    invoke?: string;
    /** Submit with `Prefer: respond-async` and poll for the answer (protocol v1.1 §F). */
    async?: boolean;
    /** With `async`: called at each poll that finds the job unfinished. */
    onPending?: (pending: Pending) => void;
}
/** Where an unfinished long job is, as `GET /executions/{id}` said. */
export interface Pending {
    executionId: string;
    state: "queued" | "running";
    /** What it is doing; absent from a server that does not say, or a phase this client does not know. */
    phase?: "queued" | "compiling" | "running";
}
/** A finished execution, opened and checked. */
export interface RunResult {
    executionId: string;
    status: string;
    exitCode: number | null;
    stdout: Uint8Array;
    stderr: Uint8Array;
    stdoutTruncated: boolean;
    stderrTruncated: boolean;
    returns: string[];
    error?: string;
    fuelConsumed: number;
    wallTimeUs: number;
    moduleSha256: string | null;
    limits: Record<string, number>;
    engine: string;
    missingBlobs?: string[];
    mountsOut?: {
        path: string;
        tar: Uint8Array;
    }[];
    /** Proves this execution later (`verify`); holds the commitment's salt: keep it private. */
    receipt: Receipt;
    /**
     * Why `receipt` has no `tlog_proof` although the server serves proofs (v1.2):
     * not yet published within the `retries` bound, an error answer, no
     * connection. Absent when the receipt has its proof, or the server predates
     * v1.2 (no `note_verifier_key` in `/keys`). Such a receipt verifies online.
     */
    tlogProofError?: string;
    /** What the client checked while running it: `session key signature`, `result opening`, `commitment`. */
    checks: Check[];
    /** Whether the module (and archives) went by SHA-256 reference. */
    byReference: boolean;
}
/** Options of a [`Client`]. */
export interface ClientOptions {
    /** Bearer token, when the server requires one. */
    token?: string;
    /** The key id (hex SHA-256 of the SPKI) the server must have: pins its key. */
    keyId?: string;
    /** `v1.1` (default: batches, binary bodies, CBOR) or `v1` (JSON throughout). */
    wire?: "v1" | "v1.1";
    /**
     * The most sessions one `POST /sessions {"count": N}` asks for (v1.1); default
     * 16. The pool starts at 4 and doubles while its batches are used up, halves
     * when sessions expired unused or a batch is refused for a pending bound
     * (`client.batch` is the next batch's size).
     */
    batch?: number;
    /** Sessions expiring within this many milliseconds are dropped; default 5000. */
    marginMs?: number;
    /** Name modules and archives the server holds by SHA-256; default true (v1.1 only). */
    references?: boolean;
    /**
     * How an idempotent call (`GET /keys`, `/verify`, `/log/checkpoint`,
     * `/executions/{id}`, and `POST /sessions`) answered 429 or 503 with
     * `Retry-After` is made again: at most `tries` tries in all (default 5) while
     * the waits fit in `withinMs` (default 30000); then its error is thrown.
     * `{ tries: 1 }` never retries. `/execute` is never retried (it uses its session).
     */
    retries?: {
        tries?: number;
        withinMs?: number;
    };
    /** The `fetch` to use (default: the global one). */
    fetch?: typeof fetch;
}
/** The most sessions a batch asks for by default: four programs behind one address
 * whose pools are all at their largest fit the server's default share of 64. */
export declare const DEFAULT_BATCH = 16;
/** The first batch of a pool (or the ceiling, if smaller). */
export declare const INITIAL_BATCH = 4;
/** The server's identity, from `GET /keys`. */
export interface ServerIdentity {
    origin: string;
    spki: Uint8Array;
    key: CryptoKey;
    keyId: string;
    /** The log's note key (`note_verifier_key`, protocol v1.2 §T1); absent from older servers. */
    noteKey?: VerifierKey;
}
/**
 * How to verify a receipt offline (protocol v1.2 §T6): a C2SP tlog-policy (its
 * text, or a parsed `Policy`), or the log's `note_verifier_key` alone (the policy
 * `log <vkey>` / `quorum none`). Not both.
 */
export interface OfflineTrust {
    policy?: Policy | string | Uint8Array;
    noteKey?: string | VerifierKey;
}
/** A client of one wasm-hypervisor server. */
export declare class Client {
    readonly url: string;
    readonly wire: "v1" | "v1.1";
    private readonly token?;
    private readonly pinned?;
    private batchSize;
    private readonly batchCeiling;
    /** Whether a batch was opened yet: the first keeps the initial size. */
    private openedBefore;
    /** Whether a session expired unused since the last batch was opened. */
    private expiredUnused;
    private readonly tries;
    private readonly withinMs;
    private readonly marginMs;
    private readonly references;
    private readonly fetcher;
    private identityPromise?;
    private pool;
    /**
     * The turn of whoever opens a batch for an empty pool (v1.1): runs that find the
     * pool empty meanwhile wait for it and take that batch's sessions instead of
     * opening their own.
     */
    private refill;
    /** Hashes of blobs this client sent by bytes: the server is believed to hold them. */
    private readonly sent;
    constructor(url: string, options?: ClientOptions);
    private headers;
    private request;
    /**
     * An idempotent request: made again after a 429 or 503 with `Retry-After` (and
     * `retryIf` the error), as the `retries` option allows. Returns the last answer.
     */
    private idempotent;
    /** The body of a success answer as JSON, or the error the server stated. */
    private json;
    /** `GET /keys`, checked (the key id is the key's SHA-256) and pinned when `keyId` was given. */
    identity(): Promise<ServerIdentity>;
    private fetchIdentity;
    /** Opens sessions now: a signed batch (v1.1) or one session (v1). */
    private openSessions;
    /**
     * `POST /sessions {"count": N}` at the current batch size, halved (down to one)
     * while the server refuses it for its pending bounds; returns the count asked.
     */
    private postBatch;
    /**
     * Sessions the next batch asks for (v1.1). Batches grow on demand (the rule of
     * the Rust and Python clients too): the first asks for 4 (or the `batch`
     * ceiling, if smaller); the next doubles, up to the ceiling, when the pool's
     * sessions were all used, and halves when some expired unused; a batch refused
     * for a pending bound is asked again at half the size, down to one.
     */
    get batch(): number;
    /** The oldest pooled session not about to expire; those about to are dropped. */
    private popLive;
    /** The pool ran dry: the next batch doubles if every session was used, halves if some expired unused. */
    private resizeForRefill;
    /** A session that is not about to expire: the oldest pooled one, or one of a batch opened now. */
    private takeSession;
    private freshSession;
    /** Sessions held now (some may have expired since). */
    get pooledSessions(): number;
    /**
     * Runs `module` (bytes, or a file path on Node) sealed, opens and checks its
     * result, and returns it with its receipt.
     */
    run(module: Uint8Array | string, options?: RunOptions): Promise<RunResult>;
    private plaintext;
    /**
     * Sends one plaintext on a pooled session, once more on a fresh one if the session
     * was gone; a session that a refusal did not use goes back to the pool.
     */
    private runPlaintext;
    private seal;
    private execute;
    private executeAsync;
    /** Opens an answer with the request's keys and checks the commitment. */
    private open;
    /**
     * `GET /tlog/proof/{id}` for a new receipt, retried while not yet published,
     * checked for the receipt under the note key (`quorum none`) before it is
     * kept: a proof that does not verify throws a `ProtocolError`; one that could
     * not be had gives why (the execution is logged; the receipt verifies online).
     */
    private tlogProof;
    /** `GET /verify/{execution_id}`. */
    inclusion(executionId: string): Promise<VerifyResponse>;
    /** `GET /log/checkpoint`. */
    checkpoint(): Promise<CheckpointResponse>;
    /**
     * Every check of `receipt` against this server's log, under the server's key
     * (pinned when `keyId` was given), in the CLI's order; does not throw on a
     * failed check. A `tlog_proof` in the receipt is then not used. Given a
     * `policy` or `noteKey` ({@link OfflineTrust}), the checks are made offline
     * from the receipt's `tlog_proof` instead, with no request at all.
     */
    checkReceipt(receipt: Receipt, trust?: OfflineTrust): Promise<Check[]>;
    /**
     * Proves an execution from its receipt (online, or offline given a `policy` or
     * `noteKey`); throws a [`VerificationError`] naming the first failed check
     * (`error.check`), else returns the checks.
     */
    verify(receipt: Receipt, trust?: OfflineTrust): Promise<Check[]>;
}
/**
 * Proves an execution offline, with no network: from the receipt's own
 * `tlog_proof` under `policy` or `noteKey` (protocol v1.2 §T4, §T6). `keyId`
 * pins the receipt's key. Throws a [`VerificationError`] naming the first failed
 * check, a [`KeyMismatchError`], or a `PolicyError`/`NoteError` for a malformed
 * policy or key; else returns the six checks.
 */
export declare function verifyReceipt(receipt: Receipt, trust: OfflineTrust & {
    keyId?: string;
}): Promise<Check[]>;
