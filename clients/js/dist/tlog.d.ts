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
/** The most signature lines a note may carry (Go's `note.Open` limit). */
export declare const MAX_SIGNATURES = 100;
/** The largest note read, in bytes. */
export declare const MAX_NOTE_BYTES = 1000000;
/** The most hashes an inclusion proof has. */
export declare const MAX_PROOF_HASHES = 64;
/** The largest tlog-proof read, in bytes. */
export declare const MAX_TLOG_PROOF_BYTES: number;
/** The most logs, witnesses or groups a policy may define, of each. */
export declare const MAX_POLICY_ENTRIES = 256;
/** The largest policy file read, in bytes. */
export declare const MAX_POLICY_BYTES: number;
export declare const TYPE_ED25519 = 1;
export declare const TYPE_ECDSA = 2;
export declare const TYPE_COSIGNATURE_V1 = 4;
export declare const TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1";
/** A signed note, a verifier key or a signature was refused. */
export declare class NoteError extends Error {
    name: string;
}
/** A policy file was refused, or a checkpoint did not pass a policy. */
export declare class PolicyError extends Error {
    name: string;
}
/** A tlog-proof was refused: malformed, or it does not verify. */
export declare class TlogProofError extends Error {
    name: string;
}
/** Non-empty, without Unicode spaces, `+` or control characters. */
export declare function isValidKeyName(name: string): boolean;
/** Standard padded base64 in its canonical form only (zero trailing bits), else `undefined`. */
export declare function canonicalBase64(value: string): Uint8Array | undefined;
/** `SHA-256(name || 0x0A || type || public key)[:4]`, big-endian (types 0x01, 0x04). */
export declare function keyIdOf(name: string, type: number, publicKey: Uint8Array): Promise<number>;
/** tlog-cosignature's signed message: `cosignature/v1\ntime <t>\n` then the note text. */
export declare function cosignatureMessage(timestamp: bigint, noteText: string): Uint8Array;
/** One signature line: the key's name and id, and the signature bytes after the id. */
export interface NoteSignature {
    name: string;
    keyId: number;
    signature: Uint8Array;
}
/** A signed note: its text (final newline included) and its signature lines. */
export interface Note {
    text: string;
    signatures: NoteSignature[];
}
/** A signature that verified: the index of its key, and a cosignature's timestamp. */
export interface VerifiedSignature {
    verifier: number;
    timestamp?: bigint;
}
/** Reads a signed note strictly; its signatures are read, not verified. */
export declare function parseNote(data: Uint8Array | string): Note;
/** The note's text: the text, a blank line, one line per signature. */
export declare function noteText(note: Note): string;
/**
 * Signed-note "Signatures": signatures of unknown keys are ignored, each of a
 * known key must verify, at least one must. The ones that verified, in order.
 */
export declare function verifyNote(note: Note, keys: readonly VerifierKey[]): Promise<VerifiedSignature[]>;
/** A vkey, `<name>+<key id>+<base64(type || public key)>`, of type 0x01, 0x02 or 0x04. */
export declare class VerifierKey {
    readonly name: string;
    readonly keyId: number;
    readonly type: number;
    /** The key material after the type byte: 32 bytes of Ed25519, or a DER SPKI. */
    readonly publicKey: Uint8Array;
    private readonly key;
    private constructor();
    /** The key of `type` named `name`, its key id computed (an ECDSA key's is its SPKI's). */
    static of(name: string, type: number, publicKey: Uint8Array): Promise<VerifierKey>;
    /** Reads a vkey whose key id (8 lowercase hex digits) must be its key's. */
    static parse(vkey: string): Promise<VerifierKey>;
    /** Whether `signature` (the bytes after the key id) signs `noteText`; a cosignature gives its timestamp. */
    check(noteText: string, signature: Uint8Array): Promise<{
        ok: boolean;
        timestamp?: bigint;
    }>;
    toString(): string;
}
/** A tree head: which log, how many leaves, the root over them. */
export interface Checkpoint {
    origin: string;
    treeSize: number;
    root: Uint8Array;
}
/** A body of exactly three newline-terminated lines (no extension lines). */
export declare function parseCheckpoint(body: string): Checkpoint;
/** A checkpoint read from a note a log key named after its origin signed. */
export interface VerifiedCheckpoint {
    checkpoint: Checkpoint;
    note: Note;
    /** Indexes of the log keys whose signature verified. */
    logs: number[];
    /** (index of the witness key, timestamp) of each cosignature that verified. */
    cosignatures: [number, bigint][];
}
/**
 * Opens a checkpoint note: signed by one of `logs` (type 0x01 or 0x02) whose name
 * is the origin, every signature of a key of `logs` or `witnesses` (type 0x04)
 * valid, a three-line body (read only after a signature verified).
 */
export declare function verifyCheckpointNote(note: Note, logs: readonly VerifierKey[], witnesses?: readonly VerifierKey[]): Promise<VerifiedCheckpoint>;
/** A C2SP tlog-policy: the logs, the witnesses, their groups and the quorum. */
export declare class Policy {
    readonly logs: {
        key: VerifierKey;
        url?: string;
    }[];
    readonly witnesses: {
        name: string;
        key: VerifierKey;
        url?: string;
    }[];
    private readonly groups;
    private quorum?;
    /** `log <vkey>` / `quorum none`: what a verifier holding the log's key alone checks. */
    static singleLog(vkey: string | VerifierKey): Promise<Policy>;
    /**
     * Reads a policy file as tlog-policy's "Policy file syntax and structure" says,
     * with PROTOCOL.md's choices (UTF-8 names, keys and URLs; key types by role;
     * numeric thresholds without leading zeros; at most 256 of each; 1 MiB).
     */
    static parse(data: Uint8Array | string): Promise<Policy>;
    private lookup;
    private line;
    /** Whether the witnesses marked in `cosigned` (by index) make the quorum. */
    quorumMet(cosigned: readonly boolean[]): boolean;
    /**
     * A checkpoint note passes when one of the logs, named after its origin, signed
     * it, every known signature verifies, and the cosignatures make the quorum.
     */
    verifyCheckpoint(note: Note | Uint8Array | string): Promise<VerifiedCheckpoint>;
}
/** A `c2sp.org/tlog-proof@v1`: optional extra data (the v1 leaf), the index, the proof, the checkpoint note. */
export interface TlogProof {
    extra?: Uint8Array;
    index: number;
    inclusionProof: Uint8Array[];
    checkpoint: Note;
}
/** What a verified proof proves: the 57-byte leaf at `index` under the checkpoint that passed. */
export interface VerifiedTlogProof {
    leaf: Uint8Array;
    index: number;
    checkpoint: VerifiedCheckpoint;
}
/** Reads a tlog-proof strictly (PROTOCOL.md); nothing is verified yet. */
export declare function parseTlogProof(data: Uint8Array | string): TlogProof;
/** The proof's text. */
export declare function tlogProofText(proof: TlogProof): string;
/**
 * tlog-proof "Verifying a tlog proof", in its order: the leaf hash from `extra`
 * (a v1 leaf), the checkpoint under `policy`, the index within its tree, the
 * inclusion proof to its root. A caller compares the leaf with what it expects.
 */
export declare function verifyTlogProof(proof: TlogProof, policy: Policy): Promise<VerifiedTlogProof>;
