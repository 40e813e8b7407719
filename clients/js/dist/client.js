/**
 * The client: fetches and pins the server's key, opens sessions (signed batches
 * in a pool with protocol v1.1, one at a time with v1) and checks their
 * signatures, seals a request, opens the result and checks the commitment, sends
 * modules by reference once the server holds them, submits long jobs with
 * `Prefer: respond-async`, and proves executions from receipts.
 * @module
 */
import { concat, equal, fromBase64, fromHex, isUuid, sha256, text, toBase64, toHex, uuidBytes, uuidText, } from "./bytes.js";
import * as cbor from "./cbor.js";
import { importSpki, keyId, openResult, sealRequest, verifySignature, commitment } from "./crypto.js";
import { checkReceipt, checkReceiptOffline } from "./receipt.js";
import { Policy, VerifierKey } from "./tlog.js";
/**
 * Anything that went wrong talking to a server or checking what it said; the
 * subclasses say which: `ConnectionFailedError`, `ProtocolError`, `ResponseError`
 * (`RequestError` for 4xx, `ServerError` for 5xx),
 * `KeyMismatchError`, `SessionSignatureError`, `VerificationError`.
 */
export class WasmHypervisorError extends Error {
    constructor(message) {
        super(message);
        this.name = "WasmHypervisorError";
    }
}
/**
 * The base error's name in release 0.1, kept as an alias for a release:
 * `error instanceof ClientError` still holds for every error of the package.
 * @deprecated Use `WasmHypervisorError`.
 */
export const ClientError = WasmHypervisorError;
/** The server could not be reached, or the connection broke. */
export class ConnectionFailedError extends WasmHypervisorError {
    constructor(message) {
        super(message);
        this.name = "ConnectionFailedError";
    }
}
/**
 * The server answered with an error status, in the protocol's error shape when it
 * could be read (else code `unknown`). Catch this to handle a refusal whichever
 * side it blames; the subclasses say which: `RequestError` (4xx) and
 * `ServerError` (5xx).
 */
export class ResponseError extends WasmHypervisorError {
    status;
    code;
    retryAfter;
    constructor(status, code, message, 
    /** Seconds from `Retry-After`, when sent. */
    retryAfter) {
        super(`the server answered ${status} ${code}: ${message}`);
        this.status = status;
        this.code = code;
        this.retryAfter = retryAfter;
        this.name = "ResponseError";
    }
}
/**
 * A 4xx answer: the server refused this request (`unauthorized`, `rate_limited`,
 * `too_many_client_sessions`, `invalid_parameter`, ...).
 */
export class RequestError extends ResponseError {
    constructor(status, code, message, retryAfter) {
        super(status, code, message, retryAfter);
        this.name = "RequestError";
    }
}
/**
 * A 5xx answer (or any other non-success status): the server could not serve the
 * request (`overloaded`, `too_many_sessions`, `log_unavailable`, ...). Release
 * 0.1 threw it for 4xx answers too: catch `ResponseError` for both.
 */
export class ServerError extends ResponseError {
    constructor(status, code, message, retryAfter) {
        super(status, code, message, retryAfter);
        this.name = "ServerError";
    }
}
/** The server's key is not the pinned one. */
export class KeyMismatchError extends WasmHypervisorError {
    expected;
    actual;
    constructor(expected, actual) {
        super(`the server's key id is ${actual}, not the pinned ${expected}`);
        this.expected = expected;
        this.actual = actual;
        this.name = "KeyMismatchError";
    }
}
/** A session key's signature does not verify under the server's key. */
export class SessionSignatureError extends WasmHypervisorError {
    constructor() {
        super("the session key is not signed by the server's key; refusing to encrypt to it");
        this.name = "SessionSignatureError";
    }
}
/** The server answered something the protocol does not allow. */
export class ProtocolError extends WasmHypervisorError {
    constructor(message) {
        super(`protocol violation: ${message}`);
        this.name = "ProtocolError";
    }
}
/** A receipt that does not prove its execution: `check` names the first check that failed. */
export class VerificationError extends WasmHypervisorError {
    check;
    checks;
    constructor(checks) {
        const failed = checks.find((check) => !check.ok);
        super(`check \`${failed?.name}\` failed: ${failed?.error}`);
        this.name = "VerificationError";
        this.check = failed?.name ?? "";
        this.checks = checks;
    }
}
const PHASES = ["queued", "compiling", "running"];
/** The most sessions a batch asks for by default: four programs behind one address
 * whose pools are all at their largest fit the server's default share of 64. */
export const DEFAULT_BATCH = 16;
/** The first batch of a pool (or the ceiling, if smaller). */
export const INITIAL_BATCH = 4;
/** Refusals of `POST /sessions` for a pending bound, which a smaller batch may fit under. */
const PENDING_BOUNDS = ["too_many_client_sessions", "too_many_sessions"];
/** What `GET /tlog/proof/{id}` is asked again for with `Retry-After`: 404 `not_yet_published`, 429, 503. */
const PROOF_RETRIED_STATUSES = [404, 429, 503];
const SUITE = { kem: "DHKEM(P-256, HKDF-SHA256)", kdf: "HKDF-SHA256", aead: "AES-256-GCM" };
const POINT_LEN = 65;
function checkSuite(suite) {
    const s = suite;
    if (!s || s.kem !== SUITE.kem || s.kdf !== SUITE.kdf || s.aead !== SUITE.aead) {
        throw new ProtocolError(`unexpected cipher suite ${JSON.stringify(suite)}`);
    }
}
function limitsPlaintext(limits) {
    const out = {};
    const pick = (name, value) => {
        if (value !== undefined)
            out[name] = value;
    };
    pick("fuel", limits.fuel);
    pick("memory_bytes", limits.memoryBytes ?? limits.memory_bytes);
    pick("timeout_ms", limits.timeoutMs ?? limits.timeout_ms);
    pick("max_output_bytes", limits.maxOutputBytes ?? limits.max_output_bytes);
    pick("files_bytes", limits.filesBytes ?? limits.files_bytes);
    return out;
}
/** `/execute` refusals that leave the session unused (PROTOCOL.md): the pool keeps it. */
const SESSION_UNUSED = ["rate_limited", "too_many_executions", "overloaded", "database_unavailable"];
/** A client of one wasm-hypervisor server. */
export class Client {
    url;
    wire;
    token;
    pinned;
    batchSize;
    batchCeiling;
    /** Whether a batch was opened yet: the first keeps the initial size. */
    openedBefore = false;
    /** Whether a session expired unused since the last batch was opened. */
    expiredUnused = false;
    tries;
    withinMs;
    marginMs;
    references;
    fetcher;
    identityPromise;
    pool = [];
    /**
     * The turn of whoever opens a batch for an empty pool (v1.1): runs that find the
     * pool empty meanwhile wait for it and take that batch's sessions instead of
     * opening their own.
     */
    refill = Promise.resolve();
    /** Hashes of blobs this client sent by bytes: the server is believed to hold them. */
    sent = new Set();
    constructor(url, options = {}) {
        this.url = url.replace(/\/+$/, "");
        this.token = options.token;
        this.pinned = options.keyId?.toLowerCase();
        this.wire = options.wire ?? "v1.1";
        this.batchCeiling = Math.max(1, options.batch ?? DEFAULT_BATCH);
        this.batchSize = Math.min(INITIAL_BATCH, this.batchCeiling);
        this.tries = Math.max(1, options.retries?.tries ?? 5);
        this.withinMs = Math.max(0, options.retries?.withinMs ?? 30_000);
        this.marginMs = options.marginMs ?? 5000;
        this.references = (options.references ?? true) && this.wire === "v1.1";
        this.fetcher = options.fetch ?? globalThis.fetch.bind(globalThis);
    }
    headers(extra = {}) {
        return this.token ? { authorization: `Bearer ${this.token}`, ...extra } : extra;
    }
    async request(path, init = {}) {
        try {
            return await this.fetcher(`${this.url}${path}`, init);
        }
        catch (error) {
            throw new ConnectionFailedError(`cannot reach the server: ${error instanceof Error ? error.message : error}`);
        }
    }
    /**
     * An idempotent request: made again after a 429 or 503 with `Retry-After` (and
     * `retryIf` the error), as the `retries` option allows. Returns the last answer.
     */
    async idempotent(path, init = {}, retryIf = () => true, statuses = [429, 503]) {
        const started = Date.now();
        for (let tries = 1;; tries++) {
            const response = await this.request(path, init);
            if (!statuses.includes(response.status) || tries >= this.tries)
                return response;
            const wait = retryAfter(response);
            if (wait === undefined || Date.now() - started + wait * 1000 > this.withinMs)
                return response;
            if (!retryIf(serverError(response, await response.clone().text())))
                return response;
            await response.body?.cancel();
            await new Promise((resolve) => setTimeout(resolve, wait * 1000));
        }
    }
    /** The body of a success answer as JSON, or the error the server stated. */
    async json(response) {
        const body = await response.text();
        if (!response.ok)
            throw serverError(response, body);
        try {
            return JSON.parse(body);
        }
        catch {
            throw new ProtocolError(`the answer to ${response.url} is not JSON`);
        }
    }
    /** `GET /keys`, checked (the key id is the key's SHA-256) and pinned when `keyId` was given. */
    identity() {
        this.identityPromise ??= this.fetchIdentity();
        this.identityPromise.catch(() => (this.identityPromise = undefined));
        return this.identityPromise;
    }
    async fetchIdentity() {
        const keys = await this.json(await this.idempotent("/keys"));
        let spki;
        let key;
        try {
            spki = fromBase64(keys.public_key);
            key = await importSpki(spki);
        }
        catch {
            throw new ProtocolError("`public_key` is not a P-256 SPKI");
        }
        const id = toHex(await keyId(spki));
        if (id !== keys.key_id)
            throw new ProtocolError("`key_id` is not the SHA-256 of the public key");
        if (this.pinned !== undefined && this.pinned !== id)
            throw new KeyMismatchError(this.pinned, id);
        // Protocol v1.2 §T1; older servers send none and serve no proofs.
        let noteKey;
        if (keys.note_verifier_key !== undefined && keys.note_verifier_key !== null) {
            try {
                noteKey = await VerifierKey.parse(keys.note_verifier_key);
            }
            catch (error) {
                throw new ProtocolError(`\`note_verifier_key\` is not a verifier key: ${error instanceof Error ? error.message : error}`);
            }
            if (noteKey.name !== keys.origin)
                throw new ProtocolError("`note_verifier_key` is not named after the origin");
        }
        return { origin: keys.origin, spki, key, keyId: id, noteKey };
    }
    /** Opens sessions now: a signed batch (v1.1) or one session (v1). */
    async openSessions() {
        const { key } = await this.identity();
        if (this.wire === "v1") {
            const s = await this.json(await this.idempotent("/sessions", { method: "POST", headers: this.headers() }));
            checkSuite(s.suite);
            const session = readSession(s);
            const message = concat(text(`wasm-hypervisor v1 session ${session.id}`), session.publicKey);
            if (!(await verifySignature(key, message, bytes(s.signature, "signature")))) {
                throw new SessionSignatureError();
            }
            return [session];
        }
        const [asked, batch] = await this.postBatch();
        checkSuite(batch.suite);
        if (!Array.isArray(batch.sessions) || batch.sessions.length !== asked) {
            throw new ProtocolError("the session batch is not what was asked");
        }
        const sessions = batch.sessions.map((s) => readSession(s));
        const message = concat(text("wasm-hypervisor v1 sessions "), ...sessions.flatMap((s) => [text(s.id), s.publicKey]));
        if (!(await verifySignature(key, message, bytes(batch.signature, "signature")))) {
            throw new SessionSignatureError();
        }
        return sessions;
    }
    /**
     * `POST /sessions {"count": N}` at the current batch size, halved (down to one)
     * while the server refuses it for its pending bounds; returns the count asked.
     */
    async postBatch() {
        for (;;) {
            const count = this.batchSize;
            try {
                const batch = await this.json(await this.idempotent("/sessions", {
                    method: "POST",
                    headers: this.headers({ "content-type": "application/json" }),
                    body: JSON.stringify({ count }),
                }, 
                // Over a pending bound, a smaller batch now beats the same one later.
                (error) => count === 1 || !PENDING_BOUNDS.includes(error.code)));
                return [count, batch];
            }
            catch (error) {
                const overBound = error instanceof ResponseError && PENDING_BOUNDS.includes(error.code);
                if (!overBound || count === 1)
                    throw error;
                this.batchSize = Math.max(1, Math.floor(count / 2));
            }
        }
    }
    /**
     * Sessions the next batch asks for (v1.1). Batches grow on demand (the rule of
     * the Rust and Python clients too): the first asks for 4 (or the `batch`
     * ceiling, if smaller); the next doubles, up to the ceiling, when the pool's
     * sessions were all used, and halves when some expired unused; a batch refused
     * for a pending bound is asked again at half the size, down to one.
     */
    get batch() {
        return this.batchSize;
    }
    /** The oldest pooled session not about to expire; those about to are dropped. */
    popLive() {
        const now = Date.now();
        while (this.pool.length > 0) {
            const session = this.pool.shift();
            if (session.expiresAt > now + this.marginMs)
                return session;
            this.expiredUnused = true;
        }
        return undefined;
    }
    /** The pool ran dry: the next batch doubles if every session was used, halves if some expired unused. */
    resizeForRefill() {
        if (this.openedBefore) {
            this.batchSize = this.expiredUnused
                ? Math.max(1, Math.floor(this.batchSize / 2))
                : Math.min(this.batchCeiling, this.batchSize * 2);
        }
        this.expiredUnused = false;
    }
    /** A session that is not about to expire: the oldest pooled one, or one of a batch opened now. */
    async takeSession() {
        const live = this.popLive();
        if (live !== undefined)
            return live;
        if (this.wire === "v1")
            return this.freshSession();
        const turn = this.refill.then(() => {
            const live = this.popLive();
            if (live !== undefined)
                return live;
            this.resizeForRefill();
            return this.freshSession();
        });
        this.refill = turn.catch(() => undefined);
        return turn;
    }
    async freshSession() {
        const [first, ...rest] = await this.openSessions();
        this.openedBefore = true;
        this.pool.push(...rest);
        return first;
    }
    /** Sessions held now (some may have expired since). */
    get pooledSessions() {
        return this.pool.length;
    }
    /**
     * Runs `module` (bytes, or a file path on Node) sealed, opens and checks its
     * result, and returns it with its receipt.
     */
    async run(module, options = {}) {
        const moduleBytes = typeof module === "string" ? await readFile(module) : module;
        const moduleHash = toHex(await sha256(moduleBytes));
        const tarHashes = await Promise.all((options.mounts ?? []).map(async (m) => (m.tar ? toHex(await sha256(m.tar)) : undefined)));
        const byReference = this.references &&
            this.sent.has(moduleHash) &&
            tarHashes.every((hash) => hash === undefined || this.sent.has(hash));
        let result = await this.runPlaintext(this.plaintext(moduleBytes, moduleHash, tarHashes, options, byReference), options);
        if (byReference && result.status === "missing_blob") {
            // The server no longer holds them (a restart, an eviction): send the bytes.
            for (const hash of result.missingBlobs ?? [])
                this.sent.delete(hash);
            this.sent.delete(moduleHash);
            result = await this.runPlaintext(this.plaintext(moduleBytes, moduleHash, tarHashes, options, false), options);
        }
        else if (byReference) {
            result.byReference = true;
        }
        if (this.references && !result.byReference) {
            this.sent.add(moduleHash);
            for (const hash of tarHashes)
                if (hash)
                    this.sent.add(hash);
        }
        return result;
    }
    plaintext(module, moduleHash, tarHashes, options, byReference) {
        const request = {};
        const cborWire = this.wire === "v1.1";
        const blob = (value) => (cborWire ? value : toBase64(value));
        if (byReference)
            request.module_sha256 = moduleHash;
        else
            request.module = blob(module);
        if (options.invoke !== undefined)
            request.invoke = options.invoke;
        if (options.args?.length)
            request.args = options.args;
        if (options.env && Object.keys(options.env).length)
            request.env = { ...options.env };
        if (options.stdin !== undefined) {
            const stdin = typeof options.stdin === "string" ? text(options.stdin) : options.stdin;
            request.stdin = blob(stdin);
        }
        if (options.limits)
            request.limits = limitsPlaintext(options.limits);
        if (options.mounts?.length) {
            request.mounts = options.mounts.map((mount, index) => {
                const out = { path: mount.path };
                const hash = tarHashes[index];
                if (mount.tar && byReference && hash)
                    out.tar_sha256 = hash;
                else if (mount.tar)
                    out.tar = blob(mount.tar);
                if (mount.writable)
                    out.writable = true;
                return out;
            });
        }
        return cborWire ? cbor.encode(request) : text(JSON.stringify(request));
    }
    /**
     * Sends one plaintext on a pooled session, once more on a fresh one if the session
     * was gone; a session that a refusal did not use goes back to the pool.
     */
    async runPlaintext(plaintext, options) {
        const attempt = async (current) => {
            try {
                if (options.async)
                    return await this.executeAsync(current, plaintext, options.onPending);
                return await this.execute(current, plaintext);
            }
            catch (error) {
                // Refused before the session was used (PROTOCOL.md): it serves the next request.
                if (error instanceof ResponseError && SESSION_UNUSED.includes(error.code))
                    this.pool.unshift(current);
                throw error;
            }
        };
        try {
            return await attempt(await this.takeSession());
        }
        catch (error) {
            if (!(error instanceof ResponseError) || !["session_not_found", "session_expired"].includes(error.code)) {
                throw error;
            }
            // Nothing ran: the server lost the session (a restart, an eviction). Once more.
            this.pool = [];
            return attempt(await this.freshSession());
        }
    }
    async seal(session, plaintext) {
        const sealed = await sealRequest(session.publicKey, session.id, plaintext);
        const binary = this.wire === "v1.1";
        const body = binary
            ? concat(uuidBytes(session.id), sealed.enc, sealed.ciphertext)
            : JSON.stringify({
                session_id: session.id,
                enc: toBase64(sealed.enc),
                ciphertext: toBase64(sealed.ciphertext),
            });
        const contentType = binary ? "application/octet-stream" : "application/json";
        return { body, contentType, keys: sealed.keys, binary };
    }
    async execute(session, plaintext) {
        const { body, contentType, keys } = await this.seal(session, plaintext);
        const response = await this.request("/execute", {
            method: "POST",
            headers: this.headers({ "content-type": contentType }),
            body: body,
        });
        return this.open(await readAnswer(response), keys, plaintext);
    }
    async executeAsync(session, plaintext, onPending) {
        const { body, contentType, keys, binary } = await this.seal(session, plaintext);
        const response = await this.request("/execute", {
            method: "POST",
            headers: this.headers({ "content-type": contentType, prefer: "respond-async" }),
            body: body,
        });
        if (response.status === 200)
            return this.open(await readAnswer(response), keys, plaintext);
        const applied = response.headers.get("preference-applied")?.toLowerCase() === "respond-async";
        const accepted = await this.json(response);
        if (response.status !== 202)
            throw new ProtocolError(`unexpected HTTP status ${response.status}`);
        if (!applied || !isUuid(accepted.execution_id) || accepted.location !== `/executions/${accepted.execution_id}`) {
            throw new ProtocolError("the server's 202 is not an accepted async execution");
        }
        for (;;) {
            const poll = await this.idempotent(accepted.location, {
                headers: this.headers(binary ? { accept: "application/octet-stream" } : {}),
            });
            if (poll.status === 202) {
                const state = await this.json(poll);
                if (state.execution_id !== accepted.execution_id)
                    throw new ProtocolError("the poll names another execution");
                if (onPending) {
                    const phase = PHASES.includes(state.phase ?? "") ? state.phase : undefined;
                    onPending({ executionId: state.execution_id, state: state.state, ...(phase ? { phase } : {}) });
                }
                const wait = Math.min(Number(poll.headers.get("retry-after")) || 1, 60);
                await new Promise((resolve) => setTimeout(resolve, wait * 1000));
                continue;
            }
            const answer = await readAnswer(poll);
            if (answer.execution_id !== accepted.execution_id)
                throw new ProtocolError("the answer names another execution");
            return this.open(answer, keys, plaintext);
        }
    }
    /** Opens an answer with the request's keys and checks the commitment. */
    async open(answer, keys, request) {
        const checks = [{ name: "session key signature", ok: true }];
        if (!isUuid(answer.execution_id))
            throw new ProtocolError("`execution_id` is not a UUID");
        let plaintext;
        try {
            plaintext = await openResult(keys, answer.execution_id, answer.ciphertext);
        }
        catch {
            throw new ProtocolError("the result does not decrypt with this request's keys");
        }
        checks.push({ name: "result opening", ok: true });
        const isCbor = request[0] >= 0xa0 && request[0] <= 0xbb;
        let result;
        try {
            result = (isCbor ? cbor.decode(plaintext) : JSON.parse(new TextDecoder().decode(plaintext)));
        }
        catch (error) {
            throw new ProtocolError(`the result is not valid: ${error instanceof Error ? error.message : error}`);
        }
        if (!result || typeof result !== "object" || result.execution_id !== answer.execution_id) {
            throw new ProtocolError("the sealed result names another execution");
        }
        const requestSha = await sha256(request);
        const resultSha = await sha256(plaintext);
        const committed = await commitment(keys.salt, requestSha, resultSha);
        if (!equal(committed, answer.commitment)) {
            throw new ProtocolError("the commitment does not match the request and result");
        }
        checks.push({ name: "commitment", ok: true });
        const identity = await this.identity();
        const blob = (value) => value instanceof Uint8Array ? value : typeof value === "string" ? fromBase64(value) : new Uint8Array();
        const receipt = {
            version: 1,
            server: this.url,
            origin: identity.origin,
            key_id: identity.keyId,
            public_key: toBase64(identity.spki),
            execution_id: answer.execution_id,
            log_index: answer.log_index,
            status: String(result.status),
            commitment: toHex(answer.commitment),
            salt: toHex(keys.salt),
            request_sha256: toHex(requestSha),
            result_sha256: toHex(resultSha),
            module_sha256: result.module_sha256 ?? null,
            leaf_signature: toBase64(answer.leaf_signature),
        };
        let tlogProofError;
        if (identity.noteKey) {
            const fetched = await this.tlogProof(receipt, identity.noteKey);
            if (fetched.proof !== undefined)
                receipt.tlog_proof = fetched.proof;
            tlogProofError = fetched.error;
        }
        const mountsOut = result.mounts_out;
        return {
            executionId: answer.execution_id,
            status: String(result.status),
            exitCode: result.exit_code ?? null,
            stdout: blob(result.stdout),
            stderr: blob(result.stderr),
            stdoutTruncated: result.stdout_truncated === true,
            stderrTruncated: result.stderr_truncated === true,
            returns: result.returns ?? [],
            error: result.error,
            fuelConsumed: Number(result.fuel_consumed ?? 0),
            wallTimeUs: Number(result.wall_time_us ?? 0),
            moduleSha256: receipt.module_sha256,
            limits: result.limits ?? {},
            engine: String(result.engine ?? ""),
            missingBlobs: result.missing_blobs,
            mountsOut: mountsOut?.map((m) => ({ path: m.path, tar: blob(m.tar) })),
            receipt,
            tlogProofError,
            checks,
            byReference: false,
        };
    }
    /**
     * `GET /tlog/proof/{id}` for a new receipt, retried while not yet published,
     * checked for the receipt under the note key (`quorum none`) before it is
     * kept: a proof that does not verify throws a `ProtocolError`; one that could
     * not be had gives why (the execution is logged; the receipt verifies online).
     */
    async tlogProof(receipt, noteKey) {
        const path = `/tlog/proof/${encodeURIComponent(receipt.execution_id)}`;
        let response;
        try {
            response = await this.idempotent(path, {}, (error) => error.status !== 404 || error.code === "not_yet_published", PROOF_RETRIED_STATUSES);
        }
        catch (error) {
            return { error: `GET ${path} failed: ${error instanceof Error ? error.message : error}` };
        }
        const body = await response.text();
        if (response.status !== 200)
            return { error: `GET ${path}: ${serverError(response, body).message}` };
        const checks = await checkReceiptOffline({ ...receipt, tlog_proof: body }, await Policy.singleLog(noteKey));
        const failed = checks.find((check) => !check.ok);
        if (failed)
            throw new ProtocolError(`the server's tlog-proof does not verify: ${failed.name}: ${failed.error}`);
        return { proof: body };
    }
    /** `GET /verify/{execution_id}`. */
    async inclusion(executionId) {
        return this.json(await this.idempotent(`/verify/${encodeURIComponent(executionId)}`));
    }
    /** `GET /log/checkpoint`. */
    async checkpoint() {
        return this.json(await this.idempotent("/log/checkpoint"));
    }
    /**
     * Every check of `receipt` against this server's log, under the server's key
     * (pinned when `keyId` was given), in the CLI's order; does not throw on a
     * failed check. A `tlog_proof` in the receipt is then not used. Given a
     * `policy` or `noteKey` ({@link OfflineTrust}), the checks are made offline
     * from the receipt's `tlog_proof` instead, with no request at all.
     */
    async checkReceipt(receipt, trust = {}) {
        if (trust.policy !== undefined || trust.noteKey !== undefined) {
            if (this.pinned !== undefined && this.pinned !== String(receipt.key_id).toLowerCase()) {
                throw new KeyMismatchError(this.pinned, String(receipt.key_id));
            }
            return checkReceiptOffline(receipt, await offlinePolicy(trust));
        }
        const identity = await this.identity();
        return checkReceipt(receipt, await this.inclusion(receipt.execution_id), identity.spki);
    }
    /**
     * Proves an execution from its receipt (online, or offline given a `policy` or
     * `noteKey`); throws a [`VerificationError`] naming the first failed check
     * (`error.check`), else returns the checks.
     */
    async verify(receipt, trust = {}) {
        const checks = await this.checkReceipt(receipt, trust);
        if (!checks.every((check) => check.ok))
            throw new VerificationError(checks);
        return checks;
    }
}
/** The policy of {@link OfflineTrust}. */
async function offlinePolicy(trust) {
    if (trust.policy !== undefined && trust.noteKey !== undefined)
        throw new TypeError("give a policy or a note key, not both");
    if (trust.noteKey !== undefined)
        return Policy.singleLog(trust.noteKey);
    return trust.policy instanceof Policy ? trust.policy : Policy.parse(trust.policy);
}
/**
 * Proves an execution offline, with no network: from the receipt's own
 * `tlog_proof` under `policy` or `noteKey` (protocol v1.2 §T4, §T6). `keyId`
 * pins the receipt's key. Throws a [`VerificationError`] naming the first failed
 * check, a [`KeyMismatchError`], or a `PolicyError`/`NoteError` for a malformed
 * policy or key; else returns the six checks.
 */
export async function verifyReceipt(receipt, trust) {
    if (trust.keyId !== undefined && trust.keyId.toLowerCase() !== String(receipt.key_id).toLowerCase()) {
        throw new KeyMismatchError(trust.keyId.toLowerCase(), String(receipt.key_id));
    }
    const checks = await checkReceiptOffline(receipt, await offlinePolicy(trust));
    if (!checks.every((check) => check.ok))
        throw new VerificationError(checks);
    return checks;
}
/** Seconds from the answer's `Retry-After`, when it is a number of seconds. */
function retryAfter(response) {
    const retry = response.headers.get("retry-after");
    return retry !== null && /^\d+$/.test(retry.trim()) ? Number(retry) : undefined;
}
function serverError(response, body) {
    const seconds = retryAfter(response);
    const kind = response.status >= 400 && response.status < 500 ? RequestError : ServerError;
    try {
        const error = JSON.parse(body).error;
        if (typeof error.code === "string")
            return new kind(response.status, error.code, error.message, seconds);
    }
    catch {
        // not the error shape
    }
    return new kind(response.status, "unknown", body.slice(0, 200), seconds);
}
function bytes(value, what) {
    try {
        if (typeof value !== "string")
            throw new TypeError();
        return fromBase64(value);
    }
    catch {
        throw new ProtocolError(`\`${what}\` is not base64`);
    }
}
function readSession(s) {
    if (typeof s.session_id !== "string" || !isUuid(s.session_id))
        throw new ProtocolError("`session_id` is not a UUID");
    const publicKey = bytes(s.public_key, "public_key");
    if (publicKey.length !== POINT_LEN)
        throw new ProtocolError("a session key is not 65 bytes");
    const expiresAt = Date.parse(String(s.expires_at));
    if (Number.isNaN(expiresAt))
        throw new ProtocolError("`expires_at` is not an RFC 3339 time");
    return { id: s.session_id, publicKey, expiresAt };
}
/** An `/execute` 200 (or a finished `GET /executions/{id}`) in either body type. */
async function readAnswer(response) {
    const type = response.headers.get("content-type") ?? "";
    if (response.status !== 200) {
        const body = await response.text();
        if (!response.ok)
            throw serverError(response, body);
        throw new ProtocolError(`unexpected HTTP status ${response.status}`);
    }
    if (type.startsWith("application/octet-stream")) {
        const b = new Uint8Array(await response.arrayBuffer());
        if (b.length < 16 + 8 + 32 + 2)
            throw new ProtocolError("the binary answer is too short");
        const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
        const logIndex = view.getBigUint64(16);
        const sigLen = view.getUint16(56);
        if (b.length < 58 + sigLen)
            throw new ProtocolError("the binary answer's signature runs past its end");
        return {
            execution_id: uuidText(b.subarray(0, 16)),
            log_index: Number(logIndex),
            commitment: b.slice(24, 56),
            leaf_signature: b.slice(58, 58 + sigLen),
            ciphertext: b.slice(58 + sigLen),
        };
    }
    let json;
    try {
        json = JSON.parse(await response.text());
    }
    catch {
        throw new ProtocolError("the answer is not JSON");
    }
    if (typeof json.execution_id !== "string" || typeof json.log_index !== "number") {
        throw new ProtocolError("the answer is not an execution");
    }
    let commitmentBytes;
    try {
        commitmentBytes = fromHex(String(json.commitment));
    }
    catch {
        throw new ProtocolError("`commitment` is not hex");
    }
    return {
        execution_id: json.execution_id,
        log_index: json.log_index,
        commitment: commitmentBytes,
        leaf_signature: bytes(json.leaf_signature, "leaf_signature"),
        ciphertext: bytes(json.ciphertext, "ciphertext"),
    };
}
/** A module's bytes from a path (Node only). */
async function readFile(path) {
    const fs = "node:fs/promises";
    const { readFile } = (await import(/* @vite-ignore */ fs));
    return new Uint8Array(await readFile(path));
}
