/**
 * Mount archives (protocol v1.1 §E): a small ustar writer for files given in
 * memory, and a reader for the `mounts_out` archives the server returns (ustar
 * members, with pax `path` records for long names).
 * @module
 */
import { concat, text } from "./bytes.js";
function octal(value, width) {
    return text(value.toString(8).padStart(width - 1, "0") + "\0");
}
function header(name, size, type, mode) {
    const block = new Uint8Array(512);
    const nameBytes = text(name);
    if (nameBytes.length > 100)
        throw new RangeError(`tar name longer than 100 bytes: ${name}`);
    block.set(nameBytes, 0);
    block.set(octal(mode, 8), 100);
    block.set(octal(0, 8), 108);
    block.set(octal(0, 8), 116);
    block.set(octal(size, 12), 124);
    block.set(octal(0, 12), 136);
    block.fill(0x20, 148, 156);
    block[156] = type.charCodeAt(0);
    block.set(text("ustar\0"), 257);
    block.set(text("00"), 263);
    let sum = 0;
    for (const b of block)
        sum += b;
    block.set(text(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    return block;
}
/** A ustar archive of `entries`, in the order given (names relative, at most 100 bytes). */
export function pack(entries) {
    const parts = [];
    for (const entry of entries) {
        if (entry.data === undefined) {
            const name = entry.name.endsWith("/") ? entry.name : `${entry.name}/`;
            parts.push(header(name, 0, "5", 0o755));
        }
        else {
            parts.push(header(entry.name, entry.data.length, "0", 0o644), entry.data);
            const rest = entry.data.length % 512;
            if (rest)
                parts.push(new Uint8Array(512 - rest));
        }
    }
    parts.push(new Uint8Array(1024));
    return concat(...parts);
}
function field(block, start, length) {
    const bytes = block.subarray(start, start + length);
    const end = bytes.indexOf(0);
    return new TextDecoder().decode(end < 0 ? bytes : bytes.subarray(0, end));
}
/** The regular files and directories of a ustar or pax archive. */
export function unpack(archive) {
    const entries = [];
    let at = 0;
    let paxPath;
    while (at + 512 <= archive.length) {
        const block = archive.subarray(at, at + 512);
        if (block.every((b) => b === 0))
            break;
        const size = parseInt(field(block, 124, 12).trim() || "0", 8);
        const type = String.fromCharCode(block[156] || 0x30);
        const prefix = field(block, 345, 155);
        const name = paxPath ?? (prefix ? `${prefix}/${field(block, 0, 100)}` : field(block, 0, 100));
        const data = archive.subarray(at + 512, at + 512 + size);
        if (data.length !== size)
            throw new RangeError("tar member runs past the archive");
        at += 512 + Math.ceil(size / 512) * 512;
        if (type === "x") {
            for (const record of new TextDecoder().decode(data).split("\n")) {
                const match = /^\d+ path=(.*)$/.exec(record);
                if (match)
                    paxPath = match[1];
            }
            continue;
        }
        paxPath = undefined;
        if (type === "5")
            entries.push({ name });
        else if (type === "0")
            entries.push({ name, data: data.slice() });
    }
    return entries;
}
