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
import { equal, fromBase64, fromHex, isUuid, toHex, uuidBytes } from "./bytes.js";
import { commitment, importSpki, keyId, verifySignature } from "./crypto.js";
import { leafHash, verifyInclusion } from "./merkle.js";
import { parseTlogProof, VerifierKey, verifyNote } from "./tlog.js";
/** The receipt's fields in the order the CLI writes them. */
const RECEIPT_FIELDS = [
    "version",
    "server",
    "origin",
    "key_id",
    "public_key",
    "execution_id",
    "log_index",
    "status",
    "commitment",
    "salt",
    "request_sha256",
    "result_sha256",
    "module_sha256",
    "leaf_signature",
    "tlog_proof",
];
/**
 * The receipt's JSON text as the CLI writes it: its fields in order (`tlog_proof`
 * last, when there is one), two-space indent, a final newline.
 */
export function receiptJson(receipt) {
    const ordered = Object.fromEntries(RECEIPT_FIELDS.filter((name) => name !== "tlog_proof" || typeof receipt.tlog_proof === "string").map((name) => [
        name,
        receipt[name],
    ]));
    return `${JSON.stringify(ordered, null, 2)}\n`;
}
/**
 * Writes `receiptJson(receipt)` to `path` (Node only), readable by its owner only
 * (mode 0600, also when the file was there with a wider mode): it holds the
 * commitment's salt. What Python's `Receipt.save` does; `wasm-hypervisor verify`
 * reads the file.
 */
export async function saveReceipt(receipt, path) {
    const fs = "node:fs/promises";
    const { open } = (await import(/* @vite-ignore */ fs));
    const file = await open(path, "w", 0o600);
    try {
        // The mode of open applies only to a file it creates.
        await file.chmod(0o600);
        await file.writeFile(receiptJson(receipt));
    }
    finally {
        await file.close();
    }
}
/** Checks a checkpoint's signature over its body and that its fields say what the body says. */
export async function checkCheckpoint(response, key) {
    if (!(await verifySignature(key, new TextEncoder().encode(response.body), fromBase64(response.signature)))) {
        throw new Error("the checkpoint signature does not verify under the server's key");
    }
    const lines = response.body.split("\n");
    if (lines.length !== 4 || lines[3] !== "") {
        throw new Error("a checkpoint body is exactly three lines, each ending in a newline");
    }
    const [origin, size, rootLine] = lines;
    if (!origin || /[\u0000-\u001f\u007f]/.test(origin))
        throw new Error("the origin line is empty or not printable");
    if (!/^(0|[1-9][0-9]*)$/.test(size) || !Number.isSafeInteger(Number(size))) {
        throw new Error("the tree size is not a canonical decimal number");
    }
    let root;
    try {
        root = fromBase64(rootLine);
    }
    catch {
        root = new Uint8Array();
    }
    if (root.length !== 32)
        throw new Error("the root hash is not the base64 of 32 bytes");
    const treeSize = Number(size);
    let fieldRoot;
    try {
        fieldRoot = fromBase64(response.root_hash);
    }
    catch {
        fieldRoot = undefined;
    }
    if (response.origin !== origin || response.tree_size !== treeSize || !fieldRoot || !equal(fieldRoot, root)) {
        throw new Error("the checkpoint's fields differ from its signed body");
    }
    return { origin, treeSize, root };
}
async function run(name, body) {
    try {
        await body();
        return { name, ok: true };
    }
    catch (error) {
        return { name, ok: false, error: error instanceof Error ? error.message : String(error) };
    }
}
function bytesOf(decode, value, what) {
    try {
        if (typeof value !== "string")
            throw new TypeError();
        return decode(value);
    }
    catch {
        throw new Error(`${what} is not readable`);
    }
}
async function openCommitment(receipt) {
    const opened = await commitment(bytesOf(fromHex, receipt.salt, "the salt"), bytesOf(fromHex, receipt.request_sha256, "request_sha256"), bytesOf(fromHex, receipt.result_sha256, "result_sha256"));
    if (!equal(opened, bytesOf(fromHex, receipt.commitment, "the receipt's commitment"))) {
        throw new Error("salt and plaintext hashes do not open the commitment");
    }
}
/**
 * Every check of `receipt` against a `/verify` answer under the server's key
 * (SPKI DER), in the CLI's order. All must hold for the receipt to prove its
 * execution.
 */
export async function checkReceipt(receipt, answer, spki) {
    const key = await importSpki(spki);
    const checks = [];
    checks.push(await run("receipt key", async () => {
        const server = toHex(await keyId(spki));
        if (server !== String(receipt.key_id).toLowerCase()) {
            throw new Error(`the receipt was signed by key ${receipt.key_id}, the server's key is ${server}`);
        }
    }));
    const leaf = bytesOf(fromBase64, answer.leaf, "the logged leaf");
    checks.push(await run("leaf signature", async () => {
        const signature = bytesOf(fromBase64, receipt.leaf_signature, "the receipt's leaf signature");
        if (!(await verifySignature(key, leaf, signature))) {
            throw new Error("the receipt's leaf signature does not verify over the logged leaf");
        }
    }));
    checks.push(await run("leaf contents", async () => {
        if (leaf.length !== 57 || leaf[0] !== 1)
            throw new Error("the logged leaf is not a 57-byte v1 leaf");
        if (!isUuid(String(receipt.execution_id).toLowerCase())) {
            throw new Error("the receipt's execution id is not a UUID");
        }
        if (!equal(leaf.subarray(1, 17), uuidBytes(receipt.execution_id))) {
            throw new Error("the logged leaf is for another execution");
        }
        if (!equal(leaf.subarray(25, 57), bytesOf(fromHex, receipt.commitment, "the receipt's commitment"))) {
            throw new Error("the logged leaf carries another commitment");
        }
        if (answer.log_index !== receipt.log_index) {
            throw new Error(`the execution is at index ${answer.log_index}, the receipt says ${receipt.log_index}`);
        }
    }));
    checks.push(await run("commitment opening", () => openCommitment(receipt)));
    let checkpoint;
    checks.push(await run("checkpoint signature", async () => {
        checkpoint = await checkCheckpoint(answer.checkpoint, key);
    }));
    checks.push(await run("inclusion proof", async () => {
        if (!checkpoint)
            throw new Error("no valid checkpoint");
        const proof = answer.inclusion_proof.map((hash) => bytesOf(fromBase64, hash, "a proof hash"));
        await verifyInclusion(await leafHash(leaf), answer.log_index, checkpoint.treeSize, proof, checkpoint.root);
    }));
    return checks;
}
/** What the offline checks say when a receipt has no proof to check offline. */
export const NO_TLOG_PROOF = "the receipt carries no tlog_proof; verify it online";
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
export async function checkReceiptOffline(receipt, policy) {
    let proof;
    let missing = NO_TLOG_PROOF;
    if (typeof receipt.tlog_proof === "string") {
        try {
            proof = parseTlogProof(receipt.tlog_proof);
        }
        catch (error) {
            missing = `the receipt's tlog_proof is malformed: ${error instanceof Error ? error.message : error}`;
        }
    }
    const needsProof = () => {
        if (!proof)
            throw new Error(missing);
        return proof;
    };
    const needsLeaf = () => {
        const extra = needsProof().extra;
        if (!extra)
            throw new Error("the tlog_proof has no extra line: its leaf is unknown");
        return extra;
    };
    const spki = () => bytesOf(fromBase64, receipt.public_key, "the receipt's public key");
    const checks = [];
    checks.push(await run("receipt key", async () => {
        const id = toHex(await keyId(spki()));
        if (id !== receipt.key_id)
            throw new Error(`the receipt's key_id is not the SHA-256 of its public key (${id})`);
        let vkey;
        try {
            vkey = await VerifierKey.of(receipt.origin, 0x02, spki());
        }
        catch (error) {
            throw new Error(`the receipt's origin and public key make no verifier key: ${error instanceof Error ? error.message : error}`);
        }
        try {
            await verifyNote(needsProof().checkpoint, [vkey]);
        }
        catch (error) {
            if (!proof)
                throw error;
            throw new Error(`the checkpoint note carries no valid line of the receipt's key named ${receipt.origin}: ${error instanceof Error ? error.message : error}`);
        }
    }));
    checks.push(await run("leaf signature", async () => {
        const leaf = needsLeaf();
        let key;
        try {
            key = await importSpki(spki());
        }
        catch {
            throw new Error("the receipt's public key is not a P-256 SPKI");
        }
        const signature = bytesOf(fromBase64, receipt.leaf_signature, "the receipt's leaf signature");
        if (!(await verifySignature(key, leaf, signature))) {
            throw new Error("the receipt's leaf signature does not verify over the proof's leaf");
        }
    }));
    checks.push(await run("leaf contents", async () => {
        const leaf = needsLeaf();
        if (leaf.length !== 57 || leaf[0] !== 1)
            throw new Error("the proof's leaf is not a 57-byte v1 leaf");
        if (!isUuid(String(receipt.execution_id).toLowerCase()))
            throw new Error("the receipt's execution id is not a UUID");
        if (!equal(leaf.subarray(1, 17), uuidBytes(receipt.execution_id))) {
            throw new Error("the proof's leaf is for another execution");
        }
        if (!equal(leaf.subarray(25, 57), bytesOf(fromHex, receipt.commitment, "the receipt's commitment"))) {
            throw new Error("the proof's leaf carries another commitment");
        }
        if (needsProof().index !== receipt.log_index) {
            throw new Error(`the proof is for index ${needsProof().index}, the receipt says ${receipt.log_index}`);
        }
    }));
    checks.push(await run("commitment opening", () => openCommitment(receipt)));
    let verified;
    checks.push(await run("checkpoint signature", async () => {
        const checkpoint = await policy.verifyCheckpoint(needsProof().checkpoint);
        if (checkpoint.checkpoint.origin !== receipt.origin) {
            throw new Error(`the checkpoint is of the log ${checkpoint.checkpoint.origin}, the receipt's is ${receipt.origin}`);
        }
        verified = checkpoint;
    }));
    checks.push(await run("inclusion proof", async () => {
        const leaf = needsLeaf();
        const { index, inclusionProof } = needsProof();
        if (!verified)
            throw new Error("no valid checkpoint");
        const { treeSize, root } = verified.checkpoint;
        await verifyInclusion(await leafHash(leaf), index, treeSize, inclusionProof, root);
    }));
    return checks;
}
