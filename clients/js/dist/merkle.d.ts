/**
 * The audit log's Merkle tree (RFC 9162 §2.1, the RFC 6962 tree): leaf hashes and
 * the inclusion proof check (§2.1.3.2).
 * @module
 */
/** `SHA-256(0x00 || leaf)`. */
export declare function leafHash(leaf: Uint8Array): Promise<Uint8Array>;
/**
 * Whether `proof` leads from the leaf hash at `index` to `root` in a tree of
 * `size` leaves; throws a message saying why not.
 */
export declare function verifyInclusion(leaf: Uint8Array, index: number, size: number, proof: Uint8Array[], root: Uint8Array): Promise<void>;
