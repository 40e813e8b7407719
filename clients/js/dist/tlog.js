/**
 * The C2SP transparency formats of protocol v1.2, read and verified strictly as
 * PROTOCOL.md "Protocol v1.2: transparency formats" says (the Rust protocol
 * crate's `note`, `checkpoint`, `policy` and `tlog_proof`, rule for rule, and
 * Python's `wasm_hypervisor.tlog`):
 *
 * - signed notes (c2sp.org/signed-note) under verifier keys of type `0x01`
 *   (Ed25519), `0x02` (ECDSA P-256 over an SPKI) and `0x04` (cosignature/v1);
 * - checkpoints (c2sp.org/tlog-checkpoint), read only once a log key named after
 *   their origin signed them;
 * - policies (c2sp.org/tlog-policy): `log`, `witness`, `group`, `quorum`;
 * - proofs of logging (c2sp.org/tlog-proof@v1) whose `extra` is the v1 leaf.
 *
 * Offline and pure: no network, no clock. Ed25519 and ECDSA are WebCrypto's
 * (Node 20+, Chromium 137+): only the text formats are written here.
 * @module
 */
import { concat, equal, fromBase64, sha256, text, toBase64 } from "./bytes.js";
import { importSpki, verifySignature } from "./crypto.js";
import { leafHash, verifyInclusion } from "./merkle.js";
/** The most signature lines a note may carry (Go's `note.Open` limit). */
export const MAX_SIGNATURES = 100;
/** The largest note read, in bytes. */
export const MAX_NOTE_BYTES = 1_000_000;
/** The most hashes an inclusion proof has. */
export const MAX_PROOF_HASHES = 64;
/** The largest tlog-proof read, in bytes. */
export const MAX_TLOG_PROOF_BYTES = MAX_NOTE_BYTES + 64 * 1024;
/** The most logs, witnesses or groups a policy may define, of each. */
export const MAX_POLICY_ENTRIES = 256;
/** The largest policy file read, in bytes. */
export const MAX_POLICY_BYTES = 1 << 20;
export const TYPE_ED25519 = 0x01;
export const TYPE_ECDSA = 0x02;
export const TYPE_COSIGNATURE_V1 = 0x04;
export const TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1";
const SIGNATURE_PREFIX = "\u2014 ";
const COSIGNATURE_LEN = 8 + 64;
// Unicode White_Space (signed-note's "Unicode spaces"; JavaScript's \s differs
// from it), `+`, and the control characters (category Cc).
const NOT_IN_KEY_NAME = /[\u0000-\u0020\u007f-\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000+]/u;
/** A signed note, a verifier key or a signature was refused. */
export class NoteError extends Error {
    name = "NoteError";
}
/** A policy file was refused, or a checkpoint did not pass a policy. */
export class PolicyError extends Error {
    name = "PolicyError";
}
/** A tlog-proof was refused: malformed, or it does not verify. */
export class TlogProofError extends Error {
    name = "TlogProofError";
}
/** Non-empty, without Unicode spaces, `+` or control characters. */
export function isValidKeyName(name) {
    return name.length > 0 && !NOT_IN_KEY_NAME.test(name);
}
/** Standard padded base64 in its canonical form only (zero trailing bits), else `undefined`. */
export function canonicalBase64(value) {
    try {
        const bytes = fromBase64(value);
        return toBase64(bytes) === value ? bytes : undefined;
    }
    catch {
        return undefined;
    }
}
/** A decimal without leading zeros (`0` itself allowed) that is a safe integer. */
function canonicalDecimal(value) {
    if (!/^(0|[1-9][0-9]*)$/.test(value))
        return undefined;
    const number = Number(value);
    // Indexes and sizes past 2^53 cannot be JavaScript numbers; no log is that big.
    return Number.isSafeInteger(number) ? number : undefined;
}
const strictUtf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
function utf8(bytes, error) {
    if (typeof bytes === "string")
        return bytes;
    try {
        return strictUtf8.decode(bytes);
    }
    catch {
        throw error();
    }
}
function byteLength(value) {
    return typeof value === "string" ? text(value).length : value.length;
}
/** `SHA-256(name || 0x0A || type || public key)[:4]`, big-endian (types 0x01, 0x04). */
export async function keyIdOf(name, type, publicKey) {
    const digest = await sha256(text(`${name}\n`), Uint8Array.of(type), publicKey);
    return new DataView(digest.buffer, digest.byteOffset).getUint32(0);
}
/** tlog-cosignature's signed message: `cosignature/v1\ntime <t>\n` then the note text. */
export function cosignatureMessage(timestamp, noteText) {
    return text(`cosignature/v1\ntime ${timestamp}\n${noteText}`);
}
function parseSignatureLine(line) {
    const rest = line.startsWith(SIGNATURE_PREFIX) ? line.slice(SIGNATURE_PREFIX.length) : undefined;
    const space = rest?.indexOf(" ") ?? -1;
    if (rest === undefined || space < 0) {
        throw new NoteError("a signature line is an em dash, a space, a key name, a space and base64");
    }
    const name = rest.slice(0, space);
    if (!isValidKeyName(name))
        throw new NoteError("a key name is not empty and holds no space, plus or control character");
    const bytes = canonicalBase64(rest.slice(space + 1));
    if (!bytes || bytes.length < 5) {
        throw new NoteError("a signature is the canonical base64 of a key id and at least one byte");
    }
    return { name, keyId: new DataView(bytes.buffer).getUint32(0), signature: bytes.slice(4) };
}
function addSignature(note, signature) {
    if (note.signatures.length === MAX_SIGNATURES) {
        throw new NoteError(`a note carries at most ${MAX_SIGNATURES} signatures`);
    }
    if (note.signatures.some((s) => s.name === signature.name && s.keyId === signature.keyId)) {
        throw new NoteError(`two signatures of the key ${signature.name}+${hex8(signature.keyId)}`);
    }
    note.signatures.push(signature);
}
function hex8(id) {
    return id.toString(16).padStart(8, "0");
}
/** Reads a signed note strictly; its signatures are read, not verified. */
export function parseNote(data) {
    if (byteLength(data) > MAX_NOTE_BYTES)
        throw new NoteError(`a note is at most ${MAX_NOTE_BYTES} bytes`);
    const note = utf8(data, () => new NoteError("a note is UTF-8"));
    if (/[\u0000-\u0009\u000b-\u001f]/.test(note))
        throw new NoteError("a note holds no control character but newline");
    // The text ends at the last blank line and keeps its final newline.
    const split = note.lastIndexOf("\n\n");
    const block = note.slice(split + 2);
    if (split < 0 || !block.endsWith("\n")) {
        throw new NoteError("a note is a text ending in a newline, a blank line, then signature lines");
    }
    const parsed = { text: note.slice(0, split + 1), signatures: [] };
    for (const line of block.slice(0, -1).split("\n"))
        addSignature(parsed, parseSignatureLine(line));
    return parsed;
}
/** The note's text: the text, a blank line, one line per signature. */
export function noteText(note) {
    const lines = note.signatures.map((s) => `${SIGNATURE_PREFIX}${s.name} ${toBase64(concat(u32(s.keyId), s.signature))}\n`);
    return `${note.text}\n${lines.join("")}`;
}
function u32(value) {
    const out = new Uint8Array(4);
    new DataView(out.buffer).setUint32(0, value);
    return out;
}
/**
 * Signed-note "Signatures": signatures of unknown keys are ignored, each of a
 * known key must verify, at least one must. The ones that verified, in order.
 */
export async function verifyNote(note, keys) {
    const seen = new Set();
    for (const key of keys) {
        const id = `${key.name}+${hex8(key.keyId)}`;
        if (seen.has(id))
            throw new NoteError(`two verifier keys are named ${id}`);
        seen.add(id);
    }
    const verified = [];
    for (const signature of note.signatures) {
        const index = keys.findIndex((key) => key.name === signature.name && key.keyId === signature.keyId);
        if (index < 0)
            continue;
        const checked = await keys[index].check(note.text, signature.signature);
        if (!checked.ok) {
            throw new NoteError(`the signature of the key ${signature.name}+${hex8(signature.keyId)} does not verify`);
        }
        verified.push({ verifier: index, timestamp: checked.timestamp });
    }
    if (verified.length === 0)
        throw new NoteError("the note carries no signature of a known key");
    return verified;
}
/** A vkey, `<name>+<key id>+<base64(type || public key)>`, of type 0x01, 0x02 or 0x04. */
export class VerifierKey {
    name;
    keyId;
    type;
    publicKey;
    key;
    constructor(name, keyId, type, 
    /** The key material after the type byte: 32 bytes of Ed25519, or a DER SPKI. */
    publicKey, key) {
        this.name = name;
        this.keyId = keyId;
        this.type = type;
        this.publicKey = publicKey;
        this.key = key;
    }
    /** The key of `type` named `name`, its key id computed (an ECDSA key's is its SPKI's). */
    static async of(name, type, publicKey) {
        if (!isValidKeyName(name))
            throw new NoteError("a key name is not empty and holds no space, plus or control character");
        const bad = () => new NoteError("the key material is not a public key of its type");
        let key;
        let keyId;
        if (type === TYPE_ED25519 || type === TYPE_COSIGNATURE_V1) {
            if (publicKey.length !== 32)
                throw bad();
            try {
                key = await crypto.subtle.importKey("raw", publicKey.slice().buffer, { name: "Ed25519" }, false, ["verify"]);
            }
            catch {
                throw bad();
            }
            keyId = await keyIdOf(name, type, publicKey);
        }
        else if (type === TYPE_ECDSA) {
            try {
                key = await importSpki(publicKey);
                // Canonical DER with an uncompressed point only: what the key exports again.
                const exported = await crypto.subtle.exportKey("spki", await crypto.subtle.importKey("spki", publicKey.slice().buffer, { name: "ECDSA", namedCurve: "P-256" }, true, [
                    "verify",
                ]));
                if (!equal(new Uint8Array(exported), publicKey))
                    throw bad();
            }
            catch {
                throw bad();
            }
            const digest = await sha256(publicKey);
            keyId = new DataView(digest.buffer, digest.byteOffset).getUint32(0);
        }
        else {
            throw new NoteError(`signature type 0x${type.toString(16).padStart(2, "0")} is not supported`);
        }
        return new VerifierKey(name, keyId, type, publicKey.slice(), key);
    }
    /** Reads a vkey whose key id (8 lowercase hex digits) must be its key's. */
    static async parse(vkey) {
        const shape = () => new NoteError("a verifier key is <name>+<8 lowercase hex digits>+<base64 of type and key>");
        if (typeof vkey !== "string")
            throw shape();
        // The name and the id hold no `+`; base64 may.
        const first = vkey.indexOf("+");
        const second = first < 0 ? -1 : vkey.indexOf("+", first + 1);
        if (second < 0)
            throw shape();
        const name = vkey.slice(0, first);
        if (!isValidKeyName(name))
            throw new NoteError("a key name is not empty and holds no space, plus or control character");
        const idHex = vkey.slice(first + 1, second);
        const bytes = canonicalBase64(vkey.slice(second + 1));
        if (!/^[0-9a-f]{8}$/.test(idHex) || !bytes || bytes.length === 0)
            throw shape();
        const key = await VerifierKey.of(name, bytes[0], bytes.subarray(1));
        if (key.keyId !== parseInt(idHex, 16))
            throw new NoteError("the key id does not match the key");
        return key;
    }
    /** Whether `signature` (the bytes after the key id) signs `noteText`; a cosignature gives its timestamp. */
    async check(noteText, signature) {
        if (this.type === TYPE_ECDSA)
            return { ok: await verifySignature(this.key, text(noteText), signature) };
        let message = text(noteText);
        let timestamp;
        if (this.type === TYPE_COSIGNATURE_V1) {
            if (signature.length !== COSIGNATURE_LEN)
                return { ok: false };
            timestamp = new DataView(signature.buffer, signature.byteOffset).getBigUint64(0);
            if (timestamp >= 1n << 63n)
                return { ok: false };
            message = cosignatureMessage(timestamp, noteText);
            signature = signature.subarray(8);
        }
        const ok = await crypto.subtle.verify({ name: "Ed25519" }, this.key, signature.slice().buffer, message.slice().buffer);
        return ok ? { ok, timestamp } : { ok: false };
    }
    toString() {
        return `${this.name}+${hex8(this.keyId)}+${toBase64(concat(Uint8Array.of(this.type), this.publicKey))}`;
    }
}
/** A body of exactly three newline-terminated lines (no extension lines). */
export function parseCheckpoint(body) {
    const lines = body.split("\n");
    if (lines.length !== 4 || lines[3] !== "") {
        throw new NoteError("a checkpoint body is exactly three lines, each ending in a newline");
    }
    const [origin, size, rootLine] = lines;
    if (!origin || /[\u0000-\u001f\u007f-\u009f]/.test(origin))
        throw new NoteError("the origin line is empty or not printable");
    const treeSize = canonicalDecimal(size);
    if (treeSize === undefined)
        throw new NoteError("the tree size is not a canonical decimal number");
    const root = canonicalBase64(rootLine);
    if (!root || root.length !== 32)
        throw new NoteError("the root hash is not the base64 of 32 bytes");
    return { origin, treeSize, root };
}
/**
 * Opens a checkpoint note: signed by one of `logs` (type 0x01 or 0x02) whose name
 * is the origin, every signature of a key of `logs` or `witnesses` (type 0x04)
 * valid, a three-line body (read only after a signature verified).
 */
export async function verifyCheckpointNote(note, logs, witnesses = []) {
    if (logs.some((key) => key.type !== TYPE_ED25519 && key.type !== TYPE_ECDSA) ||
        witnesses.some((key) => key.type !== TYPE_COSIGNATURE_V1)) {
        throw new NoteError("a log key is of type 0x01 or 0x02 and a witness key of type 0x04");
    }
    const verified = await verifyNote(note, [...logs, ...witnesses]);
    const checkpoint = parseCheckpoint(note.text);
    const signedBy = verified.filter((v) => v.verifier < logs.length).map((v) => v.verifier);
    const cosignatures = verified
        .filter((v) => v.verifier >= logs.length && v.timestamp !== undefined)
        .map((v) => [v.verifier - logs.length, v.timestamp]);
    if (signedBy.length === 0)
        throw new NoteError("the checkpoint carries no signature of the log's key");
    if (!signedBy.some((i) => logs[i].name === checkpoint.origin)) {
        throw new NoteError("the checkpoint's origin is not the name of the log's key");
    }
    return { checkpoint, note, logs: signedBy, cosignatures };
}
/** A C2SP tlog-policy: the logs, the witnesses, their groups and the quorum. */
export class Policy {
    logs = [];
    witnesses = [];
    groups = [];
    quorum;
    /** `log <vkey>` / `quorum none`: what a verifier holding the log's key alone checks. */
    static async singleLog(vkey) {
        const key = typeof vkey === "string" ? await VerifierKey.parse(vkey) : vkey;
        if (key.type !== TYPE_ED25519 && key.type !== TYPE_ECDSA) {
            throw new PolicyError("line 1: a log key is of type 0x01 or 0x02, a witness key of type 0x04");
        }
        const policy = new Policy();
        policy.logs.push({ key });
        policy.quorum = { kind: "none" };
        return policy;
    }
    /**
     * Reads a policy file as tlog-policy's "Policy file syntax and structure" says,
     * with PROTOCOL.md's choices (UTF-8 names, keys and URLs; key types by role;
     * numeric thresholds without leading zeros; at most 256 of each; 1 MiB).
     */
    static async parse(data) {
        const raw = typeof data === "string" ? text(data) : data;
        if (raw.length > MAX_POLICY_BYTES)
            throw new PolicyError(`a policy file is at most ${MAX_POLICY_BYTES} bytes`);
        const policy = new Policy();
        let start = 0;
        for (let number = 1; start <= raw.length; number++) {
            let end = raw.indexOf(0x0a, start);
            if (end < 0)
                end = raw.length;
            const line = raw.subarray(start, end);
            start = end + 1;
            if (line.some((b) => (b < 0x20 && b !== 0x09) || b === 0x7f)) {
                throw new PolicyError(`line ${number}: a control character other than tab`);
            }
            const items = [];
            let at = 0;
            while (at < line.length) {
                while (at < line.length && (line[at] === 0x20 || line[at] === 0x09))
                    at++;
                const from = at;
                while (at < line.length && line[at] !== 0x20 && line[at] !== 0x09)
                    at++;
                if (at > from)
                    items.push(line.subarray(from, at));
            }
            if (items.length === 0 || items[0][0] === 0x23)
                continue;
            const words = items.map((item) => utf8(item, () => new PolicyError(`line ${number}: names, keys and URLs are UTF-8`)));
            await policy.line(number, words);
        }
        if (!policy.quorum)
            throw new PolicyError("a policy has exactly one quorum line, and this one has none");
        return policy;
    }
    lookup(name) {
        const witness = this.witnesses.findIndex((w) => w.name === name);
        if (witness >= 0)
            return { kind: "witness", index: witness };
        const group = this.groups.findIndex((g) => g.name === name);
        return group >= 0 ? { kind: "group", index: group } : undefined;
    }
    async line(number, words) {
        const fail = (why) => new PolicyError(`line ${number}: ${why}`);
        const parseKey = async (value) => {
            try {
                return await VerifierKey.parse(value);
            }
            catch (error) {
                throw fail(error instanceof Error ? error.message : String(error));
            }
        };
        const newName = (name) => {
            if (name === "none" || this.lookup(name))
                throw fail("the name is `none` or already defined");
        };
        const tooMany = () => fail(`a policy defines at most ${MAX_POLICY_ENTRIES} of each`);
        const [keyword, ...rest] = words;
        if (keyword === "log" && rest.length >= 1 && rest.length <= 2) {
            const key = await parseKey(rest[0]);
            if (key.type !== TYPE_ED25519 && key.type !== TYPE_ECDSA) {
                throw fail("a log key is of type 0x01 or 0x02, a witness key of type 0x04");
            }
            if (this.logs.some((log) => equal(log.key.publicKey, key.publicKey)))
                throw fail("this public key is already in the policy");
            if (this.logs.length === MAX_POLICY_ENTRIES)
                throw tooMany();
            this.logs.push({ key, url: rest[1] });
        }
        else if (keyword === "witness" && rest.length >= 2 && rest.length <= 3) {
            newName(rest[0]);
            const key = await parseKey(rest[1]);
            if (key.type !== TYPE_COSIGNATURE_V1)
                throw fail("a log key is of type 0x01 or 0x02, a witness key of type 0x04");
            if (this.witnesses.some((w) => equal(w.key.publicKey, key.publicKey)))
                throw fail("this public key is already in the policy");
            if (this.witnesses.length === MAX_POLICY_ENTRIES)
                throw tooMany();
            this.witnesses.push({ name: rest[0], key, url: rest[2] });
        }
        else if (keyword === "group" && rest.length >= 3) {
            const [name, thresholdText, ...names] = rest;
            newName(name);
            const members = [];
            for (const memberName of names) {
                if (memberName === "none")
                    throw fail("a member is listed twice, or is `none`");
                const member = this.lookup(memberName);
                if (!member)
                    throw fail("the name is not defined on an earlier line");
                if (members.some((m) => JSON.stringify(m) === JSON.stringify(member))) {
                    throw fail("a member is listed twice, or is `none`");
                }
                members.push(member);
            }
            const threshold = thresholdText === "all" ? members.length : thresholdText === "any" ? 1 : canonicalDecimal(thresholdText);
            if (threshold === undefined || threshold < 1 || threshold > members.length) {
                throw fail("the threshold is all, any or a number from 1 to the group's size");
            }
            if (this.groups.length === MAX_POLICY_ENTRIES)
                throw tooMany();
            this.groups.push({ name, threshold, members });
        }
        else if (keyword === "quorum" && rest.length === 1) {
            if (this.quorum)
                throw fail("a policy has exactly one quorum line");
            const quorum = rest[0] === "none" ? { kind: "none" } : this.lookup(rest[0]);
            if (!quorum)
                throw fail("the name is not defined on an earlier line");
            this.quorum = quorum;
        }
        else if (["log", "witness", "group", "quorum"].includes(keyword)) {
            throw fail("wrong number of items");
        }
        else {
            throw fail("a line is log, witness, group or quorum");
        }
    }
    /** Whether the witnesses marked in `cosigned` (by index) make the quorum. */
    quorumMet(cosigned) {
        const groupsMet = [];
        const met = (member) => member.kind === "none" ? true : member.kind === "witness" ? !!cosigned[member.index] : !!groupsMet[member.index];
        // Groups name only earlier groups: one pass in order settles them all.
        for (const group of this.groups)
            groupsMet.push(group.members.filter(met).length >= group.threshold);
        return this.quorum !== undefined && met(this.quorum);
    }
    /**
     * A checkpoint note passes when one of the logs, named after its origin, signed
     * it, every known signature verifies, and the cosignatures make the quorum.
     */
    async verifyCheckpoint(note) {
        const parsed = typeof note === "string" || note instanceof Uint8Array ? parseNote(note) : note;
        const verified = await verifyCheckpointNote(parsed, this.logs.map((log) => log.key), this.witnesses.map((w) => w.key));
        const cosigned = this.witnesses.map(() => false);
        for (const [witness] of verified.cosignatures)
            cosigned[witness] = true;
        if (!this.quorumMet(cosigned))
            throw new PolicyError("the checkpoint's cosignatures do not make the policy's quorum");
        return verified;
    }
}
/** Reads a tlog-proof strictly (PROTOCOL.md); nothing is verified yet. */
export function parseTlogProof(data) {
    if (byteLength(data) > MAX_TLOG_PROOF_BYTES)
        throw new TlogProofError(`a tlog-proof is at most ${MAX_TLOG_PROOF_BYTES} bytes`);
    const all = utf8(data, () => new TlogProofError("a tlog-proof is UTF-8"));
    if (!all.startsWith(`${TLOG_PROOF_HEADER}\n`))
        throw new TlogProofError(`a tlog-proof starts with the line ${TLOG_PROOF_HEADER}`);
    let rest = all.slice(TLOG_PROOF_HEADER.length + 1);
    const takeLine = () => {
        const end = rest.indexOf("\n");
        if (end < 0)
            return undefined;
        const line = rest.slice(0, end);
        rest = rest.slice(end + 1);
        return line;
    };
    let extra;
    if (rest.startsWith("extra ")) {
        const line = takeLine();
        extra = line === undefined ? undefined : canonicalBase64(line.slice("extra ".length));
        if (!extra || extra.length === 0) {
            throw new TlogProofError("the extra line is `extra` and the canonical base64 of at least one byte");
        }
    }
    const indexLine = rest.startsWith("index ") ? takeLine() : undefined;
    const index = indexLine === undefined ? undefined : canonicalDecimal(indexLine.slice("index ".length));
    if (index === undefined)
        throw new TlogProofError("the index line is `index` and a decimal number without leading zeros");
    const inclusionProof = [];
    for (;;) {
        const line = takeLine();
        if (line === undefined) {
            throw new TlogProofError("each proof line is the base64 of a 32-byte hash, and an empty line ends them");
        }
        if (line === "")
            break;
        if (inclusionProof.length === MAX_PROOF_HASHES) {
            throw new TlogProofError(`an inclusion proof has at most ${MAX_PROOF_HASHES} hashes`);
        }
        const hash = canonicalBase64(line);
        if (!hash || hash.length !== 32) {
            throw new TlogProofError("each proof line is the base64 of a 32-byte hash, and an empty line ends them");
        }
        inclusionProof.push(hash);
    }
    let checkpoint;
    try {
        checkpoint = parseNote(rest);
    }
    catch (error) {
        throw new TlogProofError(`the checkpoint is not a signed note: ${error instanceof Error ? error.message : error}`);
    }
    return { extra, index, inclusionProof, checkpoint };
}
/** The proof's text. */
export function tlogProofText(proof) {
    const extra = proof.extra ? `extra ${toBase64(proof.extra)}\n` : "";
    const hashes = proof.inclusionProof.map((hash) => `${toBase64(hash)}\n`).join("");
    return `${TLOG_PROOF_HEADER}\n${extra}index ${proof.index}\n${hashes}\n${noteText(proof.checkpoint)}`;
}
/**
 * tlog-proof "Verifying a tlog proof", in its order: the leaf hash from `extra`
 * (a v1 leaf), the checkpoint under `policy`, the index within its tree, the
 * inclusion proof to its root. A caller compares the leaf with what it expects.
 */
export async function verifyTlogProof(proof, policy) {
    const leaf = proof.extra;
    if (!leaf)
        throw new TlogProofError("the proof has no extra line: its leaf is unknown");
    if (leaf.length !== 57 || leaf[0] !== 1)
        throw new TlogProofError("the extra data is not a 57-byte v1 log leaf");
    const checkpoint = await policy.verifyCheckpoint(proof.checkpoint);
    const size = checkpoint.checkpoint.treeSize;
    if (proof.index >= size)
        throw new TlogProofError(`index ${proof.index} is not in the checkpoint's tree of ${size} leaves`);
    try {
        await verifyInclusion(await leafHash(leaf), proof.index, size, proof.inclusionProof, checkpoint.checkpoint.root);
    }
    catch (error) {
        throw new TlogProofError(`the inclusion proof does not verify: ${error instanceof Error ? error.message : error}`);
    }
    return { leaf, index: proof.index, checkpoint };
}
