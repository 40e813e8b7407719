/**
 * The audit log's Merkle tree (RFC 9162 §2.1, the RFC 6962 tree): leaf hashes and
 * the inclusion proof check (§2.1.3.2).
 * @module
 */
import { equal, sha256 } from "./bytes.js";
/** `SHA-256(0x00 || leaf)`. */
export function leafHash(leaf) {
    return sha256(Uint8Array.of(0), leaf);
}
/**
 * Whether `proof` leads from the leaf hash at `index` to `root` in a tree of
 * `size` leaves; throws a message saying why not.
 */
export async function verifyInclusion(leaf, index, size, proof, root) {
    if (index >= size)
        throw new Error(`leaf index ${index} is not below the tree size ${size}`);
    let fn = BigInt(index);
    let sn = BigInt(size - 1);
    let r = leaf;
    for (const p of proof) {
        if (sn === 0n)
            throw new Error("the inclusion proof is longer than the tree is deep");
        if ((fn & 1n) === 1n || fn === sn) {
            r = await sha256(Uint8Array.of(1), p, r);
            if ((fn & 1n) === 0n) {
                while ((fn & 1n) === 0n && fn !== 0n) {
                    fn >>= 1n;
                    sn >>= 1n;
                }
            }
        }
        else {
            r = await sha256(Uint8Array.of(1), r, p);
        }
        fn >>= 1n;
        sn >>= 1n;
    }
    if (sn !== 0n)
        throw new Error("the inclusion proof is shorter than the tree is deep");
    if (!equal(r, root))
        throw new Error("the inclusion proof does not lead to the checkpoint's root");
}
