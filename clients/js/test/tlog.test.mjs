// Known-answer and tampering tests of the C2SP formats (src/tlog.ts), with the
// vectors of the C2SP texts (signed-note.md, tlog-cosignature.md, tlog-proof.md,
// tlog-policy.md's example) and of Go's golang.org/x/mod/sumdb/note (note.go's doc
// and note_test.go), the ones crates/protocol/src/note.rs and the Python tests
// quote. No server.
import assert from "node:assert/strict";
import { createHash, createPrivateKey, generateKeyPairSync, sign as nodeSign } from "node:crypto";
import { describe, test } from "node:test";

import {
  NoteError,
  parseNote,
  parseTlogProof,
  Policy,
  PolicyError,
  TlogProofError,
  VerifierKey,
  verifyNote,
  verifyTlogProof,
} from "../dist/index.js";
import { cosignatureMessage, keyIdOf, noteText, tlogProofText } from "../dist/tlog.js";

const SPEC_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k";
const SPEC_NOTE =
  "This is an example message.\n\n\u2014 example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
const GO_SEED = Buffer.from("AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz", "base64").subarray(1);
const GO_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW";
const GO_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n";
const GO_NOTE = `${GO_TEXT}\n\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n`;
const GO_NOTE_TWO = `${GO_NOTE}\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n`;
const SPEC_COSIGNED =
  "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n\u2014 example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n\u2014 witness.example.com/w1 jWbPPwAAAABkGFDLEZMHwSRaJNiIDoe9DYn/zXcrtPHeolMI5OWXEhZCB9dlrDJsX3b2oyin1nPZqhf5nNo0xUe+mbIUBkBIfZ+qnA==\n";
const SPEC_PROOF =
  "c2sp.org/tlog-proof@v1\nextra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ\nindex 73894\ngSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\nB95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\nEKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\nRoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\nAHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n\nexample.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n\u2014 example.com/fancylog hI2DJw[...]1roloI=\n\u2014 witness1.example mJirIklj[...]qY9v2B/5bg==\n\u2014 witness2.example TnKKVHLX[...]xwYwrSjgow==\n\u2014 witness3.example S4X82uH5[...]3oEcROGLFQ==\n";

const b64 = (bytes) => Buffer.from(bytes).toString("base64");

/** An Ed25519 note key (type 1) or cosigner key (type 4), for the tests. */
async function signer(name, type = 1, seed) {
  const privateKey = seed
    ? createPrivateKey({ key: Buffer.concat([Buffer.from("302e020100300506032b657004220420", "hex"), seed]), format: "der", type: "pkcs8" })
    : generateKeyPairSync("ed25519").privateKey;
  const publicKey = createPrivateKey(privateKey.export({ format: "pem", type: "pkcs8" }))
    .export({ format: "jwk" }).x;
  const raw = Buffer.from(publicKey, "base64url");
  const keyId = await keyIdOf(name, type, raw);
  return {
    name,
    keyId,
    vkey: `${name}+${keyId.toString(16).padStart(8, "0")}+${b64(Buffer.concat([Buffer.of(type), raw]))}`,
    line(note, timestamp = 1_700_000_000n) {
      const signature =
        type === 4
          ? Buffer.concat([u64(timestamp), nodeSign(null, cosignatureMessage(timestamp, note.text), privateKey)])
          : nodeSign(null, Buffer.from(note.text), privateKey);
      return { name, keyId, signature: new Uint8Array(signature) };
    },
  };
}

function u64(value) {
  const out = Buffer.alloc(8);
  out.writeBigUInt64BE(value);
  return out;
}

const open = async (text, vkey = GO_VKEY) => verifyNote(parseNote(text), [await VerifierKey.parse(vkey)]);

describe("signed notes", () => {
  test("the spec's example note verifies under the spec's vkey", async () => {
    const key = await VerifierKey.parse(SPEC_VKEY);
    assert.equal(String(key), SPEC_VKEY);
    assert.deepEqual([key.name, key.keyId, key.type], ["example.com/foo", 0x530d903a, 1]);
    const note = parseNote(SPEC_NOTE);
    assert.equal(note.text, "This is an example message.\n");
    assert.equal(noteText(note), SPEC_NOTE);
    assert.deepEqual(await verifyNote(note, [key]), [{ verifier: 0, timestamp: undefined }]);
  });

  test("Go's signer key signs Go's note byte for byte; an unknown key's signature is ignored", async () => {
    const peter = await signer("PeterNeumann", 1, GO_SEED);
    assert.equal(peter.vkey, GO_VKEY);
    const note = { text: GO_TEXT, signatures: [] };
    note.signatures.push(peter.line(note));
    assert.equal(noteText(note), GO_NOTE);
    await open(GO_NOTE);
    assert.equal((await open(GO_NOTE_TWO)).length, 1);
    assert.equal(noteText(parseNote(GO_NOTE_TWO)), GO_NOTE_TWO);
    await assert.rejects(open(GO_NOTE, (await signer("PeterNeumann")).vkey), /no signature of a known key/);
    await assert.rejects(VerifierKey.parse(GO_VKEY.replace("PeterNeumann", "PeterNeuman")), /key id does not match/);
  });

  test("tampered notes are refused", async () => {
    const cases = [
      [GO_NOTE.replace("problem,", "problem;"), /does not verify/],
      [GO_NOTE.replace("ZJkuBS9UG", "ZJkuBS9UH"), /does not verify/],
      [GO_NOTE.replace(".\n\n", ".\n"), /a note is a text/],
      [GO_TEXT, /a note is a text/],
      [GO_NOTE.trimEnd(), /a note is a text/],
      [`${GO_TEXT}\n`, /a note is a text/],
      [GO_NOTE.replace("x08go/", "AAAAAA"), /no signature of a known key/],
      [GO_NOTE.replace("\u2014 PeterNeumann", "\u2014 PeterNewman"), /no signature of a known key/],
      [GO_NOTE + GO_NOTE.split("\n\n")[1], /two signatures of the key PeterNeumann\+c74f20a3/],
      [GO_NOTE.replace("If", "I\tf"), /control character/],
      [GO_NOTE.replace("If", "I\rf"), /control character/],
      [Uint8Array.from([0xc9, ...Buffer.from(GO_NOTE).subarray(1)]), /UTF-8/],
      ...[
        "- PeterNeumann x08go/ZJ\n",
        "\u2014PeterNeumann x08go/ZJ\n",
        "\u2014 PeterNeumann\n",
        "\u2014  x08go/ZJ\n",
        "\u2014 Peter+Neumann x08go/ZJ\n",
        "\u2014 Peter\u00a0Neumann x08go/ZJ\n",
        "\u2014 PeterNeumann x08go/ZJ=\n",
        "\u2014 PeterNeumann x08go/ZJ \n",
        "\u2014 PeterNeumann x08go/Y=\n",
        "\u2014 PeterNeumann x08go/ZK\n",
        "\n",
      ].map((line) => [`${GO_TEXT}\n${line}`, /signature|key name/]),
    ];
    for (const [text, why] of cases) {
      await assert.rejects(open(text), (error) => error instanceof NoteError && why.test(error.message), String(text));
    }
    await open(`${GO_NOTE}\u2014 witness.example ${b64(Buffer.alloc(40, 7))}\n`);
    const many = `${GO_NOTE}${Array.from({ length: 99 }, (_, i) => `\u2014 w${i}.example ${b64(Buffer.alloc(68, 1))}\n`).join("")}`;
    await open(many);
    await assert.rejects(open(`${many}\u2014 one.more ${b64(Buffer.alloc(68, 1))}\n`), /at most 100 signatures/);
    const key = await VerifierKey.parse(GO_VKEY);
    await assert.rejects(verifyNote(parseNote(GO_NOTE), [key, key]), /two verifier keys/);
  });

  test("every mangling of Go's vkey is refused, and its crafted keys", async () => {
    for (let i = 0; i <= GO_VKEY.length; i++) {
      for (let j = i + 1; j <= GO_VKEY.length; j++) {
        if (i === 0 && j === GO_VKEY.length) continue;
        await assert.rejects(VerifierKey.parse(GO_VKEY.slice(i, j)), NoteError, GO_VKEY.slice(i, j));
      }
    }
    for (let i = 0; i < GO_VKEY.length; i++) {
      const changed = GO_VKEY.slice(0, i) + String.fromCharCode(GO_VKEY.charCodeAt(i) + 1) + GO_VKEY.slice(i + 1);
      await assert.rejects(VerifierKey.parse(changed), NoteError, changed);
    }
    await assert.rejects(
      VerifierKey.parse("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="),
      /verifier key is/,
    );
    const longer = Buffer.concat([Buffer.from("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "base64"), Buffer.of(0)]);
    const id = (await keyIdOf("PeterNeumann", 1, longer.subarray(1))).toString(16).padStart(8, "0");
    await assert.rejects(VerifierKey.parse(`PeterNeumann+${id}+${b64(longer)}`), /not a public key of its type/);
    await assert.rejects(
      VerifierKey.parse("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"),
      /type 0x65 is not supported/,
    );
    await assert.rejects(VerifierKey.parse(GO_VKEY.replace("c74f20a3", "C74F20A3")), /verifier key is/);
  });

  test("the spec's cosignature reads as key id, timestamp, signature; cosignatures verify and tampering is refused", async () => {
    const note = parseNote(SPEC_COSIGNED);
    assert.equal(noteText(note), SPEC_COSIGNED);
    const witness = note.signatures[1];
    assert.deepEqual([witness.name, witness.keyId, witness.signature.length], ["witness.example.com/w1", 0x8d66cf3f, 72]);
    assert.deepEqual(Buffer.from(witness.signature.subarray(0, 8)), u64(1_679_315_147n));
    assert.equal(
      Buffer.from(cosignatureMessage(1_679_315_147n, note.text)).toString(),
      "cosignature/v1\ntime 1679315147\nexample.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n",
    );
    const log = await signer("log.example");
    const w = await signer("witness.example", 4);
    const signed = { text: "log.example\n3\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", signatures: [] };
    signed.signatures.push(log.line(signed), w.line(signed, 1_700_000_000n));
    const keys = [await VerifierKey.parse(log.vkey), await VerifierKey.parse(w.vkey)];
    assert.deepEqual(await verifyNote(parseNote(noteText(signed)), keys), [
      { verifier: 0, timestamp: undefined },
      { verifier: 1, timestamp: 1_700_000_000n },
    ]);
    const later = Uint8Array.from(signed.signatures[1].signature);
    later[7] ^= 1;
    for (const signature of [later, signed.signatures[1].signature.subarray(0, 71)]) {
      const tampered = { text: signed.text, signatures: [{ ...signed.signatures[1], signature }] };
      await assert.rejects(verifyNote(tampered, keys), /does not verify/);
    }
  });

  test("an ECDSA P-256 line verifies under its SPKI vkey", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const spki = publicKey.export({ format: "der", type: "spki" });
    const vkey = await VerifierKey.of("log.example", 2, spki);
    assert.equal(vkey.keyId, createHash("sha256").update(spki).digest().readUInt32BE(0));
    assert.equal(String(await VerifierKey.parse(String(vkey))), String(vkey));
    const note = { text: "log.example\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n", signatures: [] };
    note.signatures.push({ name: "log.example", keyId: vkey.keyId, signature: nodeSign("sha256", Buffer.from(note.text), privateKey) });
    await verifyNote(parseNote(noteText(note)), [vkey]);
    await assert.rejects(verifyNote(parseNote(noteText(note).replace("\n0\n", "\n1\n")), [vkey]), /does not verify/);
    await assert.rejects(VerifierKey.of("log.example", 2, spki.subarray(0, -1)), /not a public key/);
  });
});

describe("policies", () => {
  async function world() {
    const log = await signer("log.example/v1");
    const witnesses = [];
    for (const name of ["x1", "x2", "x3", "y1", "y2", "y3"]) witnesses.push(await signer(`${name}.example`, 4));
    const v = witnesses.map((w) => w.vkey);
    const example =
      `log ${log.vkey}\n\nwitness X1 ${v[0]}\nwitness X2 ${v[1]}\nwitness X3 ${v[2]}\ngroup X-witnesses 2 X1 X2 X3\n\n` +
      `witness Y1 ${v[3]}\nwitness Y2 ${v[4]}\nwitness Y3 ${v[5]}\ngroup Y-witnesses any Y1 Y2 Y3\n\n` +
      "group X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n";
    const note = (cosigners) => {
      const n = { text: "log.example/v1\n5\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n", signatures: [] };
      n.signatures.push(log.line(n));
      for (const i of cosigners) n.signatures.push(witnesses[i].line(n));
      return noteText(n);
    };
    return { log, witnesses, example, note };
  }

  test("the spec's example policy needs two Xs and one Y", async () => {
    const { example, note } = await world();
    const policy = await Policy.parse(example);
    for (const [cosigners, passes] of [
      [[0, 1, 3], true],
      [[0, 2, 5], true],
      [[0, 3], false],
      [[3, 4, 5], false],
      [[], false],
    ]) {
      if (passes) assert.equal((await policy.verifyCheckpoint(note(cosigners))).checkpoint.treeSize, 5);
      else await assert.rejects(policy.verifyCheckpoint(note(cosigners)), PolicyError);
    }
    for (const p of [await Policy.singleLog((await world()).log.vkey), await Policy.parse(`\tlog ${(await world()).log.vkey}  https://x\n# c\nquorum none`)]) {
      await assert.rejects(p.verifyCheckpoint(note([])), /no signature of a known key/);
    }
  });

  test("malformed policies are refused naming the line", async () => {
    const { log, witnesses } = await world();
    const [w0, w1] = [witnesses[0].vkey, witnesses[1].vkey];
    for (const [text, why] of [
      [`log ${log.vkey}\n`, /this one has none/],
      [`log ${log.vkey}\nquorum none\nquorum none\n`, /line 3: a policy has exactly one quorum/],
      [`log ${log.vkey}\nquorum W\n`, /line 2: the name is not defined/],
      [`witness none ${w0}\nquorum none\n`, /line 1: the name is `none`/],
      [`witness W ${w0}\nwitness W ${w1}\nquorum none\n`, /line 2: the name is `none` or already defined/],
      [`witness W ${w0}\nwitness V ${w0}\nquorum none\n`, /line 2: this public key is already/],
      [`log ${w0}\nquorum none\n`, /line 1: a log key is of type/],
      [`witness W ${w0}\ngroup G 2 W\nquorum G\n`, /line 2: the threshold/],
      [`witness W ${w0}\ngroup G 01 W\nquorum G\n`, /line 2: the threshold/],
      [`witness W ${w0}\ngroup G +1 W\nquorum G\n`, /line 2: the threshold/],
      [`witness W ${w0}\ngroup G any W W\nquorum G\n`, /line 2: a member is listed twice/],
      [`witness W ${w0}\ngroup G any none\nquorum G\n`, /line 2: a member is listed twice, or is `none`/],
      [`witness W ${w0}\ngroup G any\nquorum none\n`, /line 2: wrong number of items/],
      [`logs ${log.vkey}\nquorum none\n`, /line 1: a line is log/],
      [`log ${log.vkey}\r\nquorum none\n`, /line 1: a control character/],
      [Uint8Array.from([...Buffer.from("log "), 0xff, ...Buffer.from("\nquorum none\n")]), /line 1: names, keys and URLs are UTF-8/],
    ]) {
      await assert.rejects(Policy.parse(text), (error) => error instanceof PolicyError && why.test(error.message), String(text));
    }
    await Policy.parse(Uint8Array.from([...Buffer.from("# "), 0xff, 0xfe, ...Buffer.from(" comment\nquorum none")]));
  });
});

describe("tlog-proofs", () => {
  test("the spec's example reads up to its elided signatures", async () => {
    await assert.rejects(async () => parseTlogProof(SPEC_PROOF), /not a signed note/);
    const [proofPart, notePart] = [SPEC_PROOF.slice(0, SPEC_PROOF.indexOf("\n\n")), SPEC_PROOF.slice(SPEC_PROOF.indexOf("\n\n") + 2)];
    const body = notePart.slice(0, notePart.indexOf("\n\n"));
    const whole = `${proofPart}\n\n${body}\n\n\u2014 example.com/fancylog ${b64(Buffer.alloc(68, 7))}\n`;
    const proof = parseTlogProof(whole);
    assert.equal(proof.index, 73894);
    assert.ok(Buffer.from(proof.extra).toString("latin1").startsWith("age-v1.2.1-darwin-arm64.tar.gz"));
    assert.equal(proof.inclusionProof.length, 5);
    assert.equal(b64(proof.inclusionProof[4]), "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=");
    assert.equal(tlogProofText(proof), whole);
    await assert.rejects(verifyTlogProof(proof, await Policy.singleLog((await signer("example.com/fancylog")).vkey)), TlogProofError);
  });

  test("a proof verifies and its tampered variants are refused", async () => {
    const sha = (...parts) => createHash("sha256").update(Buffer.concat(parts)).digest();
    const leaves = Array.from({ length: 7 }, (_, i) =>
      Buffer.concat([Buffer.of(1), Buffer.alloc(15), Buffer.of(i + 1), u64(1_795_000_000_000n + BigInt(i)), Buffer.alloc(32, i)]),
    );
    const hashes = leaves.map((leaf) => sha(Buffer.of(0), leaf));
    const mth = (h) => (h.length === 1 ? h[0] : sha(Buffer.of(1), mth(h.slice(0, split(h.length))), mth(h.slice(split(h.length)))));
    const split = (n) => 2 ** Math.floor(Math.log2(n - 1));
    const path = (m, h) => {
      if (h.length === 1) return [];
      const k = split(h.length);
      return m < k ? [...path(m, h.slice(0, k)), mth(h.slice(k))] : [...path(m - k, h.slice(k)), mth(h.slice(0, k))];
    };
    const log = await signer("log.example/v1");
    const note = { text: `log.example/v1\n7\n${b64(mth(hashes))}\n`, signatures: [] };
    note.signatures.push(log.line(note));
    const text = tlogProofText({ extra: leaves[3], index: 3, inclusionProof: path(3, hashes), checkpoint: note });
    const policy = await Policy.singleLog(log.vkey);
    const verified = await verifyTlogProof(parseTlogProof(text), policy);
    assert.equal(verified.index, 3);
    const lines = text.split("\n");
    const flipped = b64(Buffer.from(lines[3], "base64").map((b, i) => (i === 0 ? b ^ 1 : b)));
    for (const [tampered, why] of [
      [text.replace("index 3\n", "index 4\n"), /inclusion proof does not verify/],
      [text.replace("index 3\n", "index 03\n"), /index line/],
      [text.replace("index 3\n", "index 7\n"), /index 7 is not in the checkpoint's tree of 7/],
      [text.replace(lines[1], `extra ${b64(leaves[4])}`), /inclusion proof does not verify/],
      [text.replace(`${lines[1]}\n`, ""), /no extra line/],
      [text.replace(lines[1], "extra "), /extra line/],
      [text.replace(lines[3], flipped), /inclusion proof does not verify/],
      [text.replace(`${lines[3]}\n`, ""), /inclusion proof does not verify/],
      [text.replace(lines[3], lines[3].slice(0, -1)), /proof line/],
      [text.replace("\n7\n", "\n8\n"), /does not verify/],
      [text.replace("tlog-proof@v1", "tlog-proof@v2"), /starts with the line/],
      [text.slice(0, text.lastIndexOf("\u2014")), /not a signed note/],
    ]) {
      await assert.rejects(async () => verifyTlogProof(parseTlogProof(tampered), policy), why, tampered);
    }
    await assert.rejects(verifyTlogProof(parseTlogProof(text), await Policy.singleLog((await signer("log.example/v1")).vkey)), NoteError);
    const witness = await signer("w.example", 4);
    await assert.rejects(
      verifyTlogProof(parseTlogProof(text), await Policy.parse(`log ${log.vkey}\nwitness W ${witness.vkey}\nquorum W\n`)),
      /quorum/,
    );
  });
});
