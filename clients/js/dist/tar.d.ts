/**
 * Mount archives (protocol v1.1 §E): a small ustar writer for files given in
 * memory, and a reader for the `mounts_out` archives the server returns (ustar
 * members, with pax `path` records for long names).
 * @module
 */
/** A member of an archive: a regular file (`data`) or a directory (no `data`). */
export interface TarEntry {
    name: string;
    data?: Uint8Array;
}
/** A ustar archive of `entries`, in the order given (names relative, at most 100 bytes). */
export declare function pack(entries: TarEntry[]): Uint8Array;
/** The regular files and directories of a ustar or pax archive. */
export declare function unpack(archive: Uint8Array): TarEntry[];
