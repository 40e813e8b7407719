// Receipts: one format with the CLI (a CLI receipt verifies here, one written
// here verifies with `wasm-hypervisor verify`), and a tampered receipt fails
// with the name of the check it breaks.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { after, before, describe, test } from "node:test";

import {
  Client,
  KeyMismatchError,
  NO_TLOG_PROOF,
  Policy,
  ProtocolError,
  VerificationError,
  WasmHypervisorError,
  parseTlogProof,
  receiptJson,
  saveReceipt,
  verifyReceipt,
} from "../dist/index.js";
import { BIN, example, startServer } from "./server.mjs";

const run = promisify(execFile);
const cliEnv = () =>
  Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith("WASM_HYPERVISOR_")));

describe("receipts", () => {
  let server;
  let dir;
  before(async () => {
    server = await startServer();
    dir = mkdtempSync(join(tmpdir(), "wasm-hypervisor-js-receipts-"));
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  test("a receipt written by the CLI (run --receipt) verifies in JS", async () => {
    const path = join(dir, "cli.json");
    await run(BIN, ["run", "--server", server.url, "--receipt", path, "--stdin", "/dev/null", example("hello.wasm"), "x"], {
      env: cliEnv(),
    });
    const receipt = JSON.parse(readFileSync(path, "utf8"));
    const checks = await new Client(server.url).verify(receipt);
    assert.equal(checks.length, 6);
    assert.ok(checks.every((check) => check.ok));
  });

  for (const wire of ["v1.1", "v1"]) {
    test(`a receipt written in JS (${wire}) verifies with wasm-hypervisor verify`, async () => {
      const result = await new Client(server.url, { wire }).run(example("hello.wasm"), { args: ["y"] });
      const path = join(dir, `js-${wire}.json`);
      writeFileSync(path, JSON.stringify(result.receipt, null, 2));
      const { stdout } = await run(BIN, ["verify", "--server", server.url, path], { env: cliEnv() });
      for (const name of ["receipt key", "leaf signature", "leaf contents", "commitment opening", "checkpoint signature", "inclusion proof"]) {
        assert.match(stdout, new RegExp(`^ok\\s+${name}$`, "m"));
      }
      assert.match(stdout, /^verified: execution /m);
      assert.deepEqual(Object.keys(result.receipt), [
        "version", "server", "origin", "key_id", "public_key", "execution_id", "log_index", "status",
        "commitment", "salt", "request_sha256", "result_sha256", "module_sha256", "leaf_signature", "tlog_proof",
      ]);
    });
  }

  test("saveReceipt writes the CLI's format readable by its owner only, also over a wider file", async () => {
    const client = new Client(server.url);
    const { receipt } = await client.run(example("tiny.wasm"));
    const path = join(dir, "saved.json");
    writeFileSync(path, "{}");
    chmodSync(path, 0o644);
    await saveReceipt(receipt, path);
    assert.equal(statSync(path).mode & 0o777, 0o600);
    // Fields in the CLI's order, two-space indent, a final newline.
    assert.equal(readFileSync(path, "utf8"), receiptJson(receipt));
    assert.equal(receiptJson({ ...receipt }), `${JSON.stringify(receipt, null, 2)}\n`);
    await saveReceipt(receipt, join(dir, "fresh.json"));
    assert.equal(statSync(join(dir, "fresh.json")).mode & 0o777, 0o600);
    const { stdout } = await run(BIN, ["verify", "--server", server.url, path], { env: cliEnv() });
    assert.match(stdout, /^verified: execution /m);
  });

  test("a tampered receipt fails with the name of the check it breaks", async () => {
    const client = new Client(server.url);
    const first = (await client.run(example("tiny.wasm"))).receipt;
    const second = (await client.run(example("tiny.wasm"))).receipt;
    const cases = [
      [{ salt: "00".repeat(32) }, "commitment opening"],
      [{ leaf_signature: second.leaf_signature }, "leaf signature"],
      [{ key_id: "ab".repeat(32) }, "receipt key"],
      [{ log_index: first.log_index + 1 }, "leaf contents"],
    ];
    for (const [change, check] of cases) {
      await assert.rejects(client.verify({ ...first, ...change }), (error) => {
        assert.ok(error instanceof VerificationError, String(error));
        assert.ok(error instanceof WasmHypervisorError);
        assert.equal(error.check, check);
        assert.match(error.message, new RegExp(`\`${check}\``));
        return true;
      });
    }
  });

  test("a receipt carries the server's tlog_proof last and verifies offline with the server stopped", async () => {
    const own = await startServer();
    let stopped = false;
    try {
      const { note_verifier_key: noteKey } = await (await fetch(`${own.url}/keys`)).json();
      const result = await new Client(own.url).run(example("hello.wasm"));
      const { receipt } = result;
      assert.equal(result.tlogProofError, undefined);
      assert.ok(receipt.tlog_proof.startsWith("c2sp.org/tlog-proof@v1\nextra "));
      assert.equal(await (await fetch(`${own.url}/tlog/proof/${receipt.execution_id}`)).text(), receipt.tlog_proof);
      assert.equal(parseTlogProof(receipt.tlog_proof).index, receipt.log_index);
      const path = join(dir, "offline.json");
      await saveReceipt(receipt, path);
      assert.equal(Object.keys(JSON.parse(readFileSync(path, "utf8"))).at(-1), "tlog_proof");
      await own.close();
      stopped = true;
      // No network: every request would fail now.
      const failing = { fetch: () => Promise.reject(new Error("no network in this test")) };
      const saved = JSON.parse(readFileSync(path, "utf8"));
      assert.equal((await new Client(own.url, { ...failing, keyId: receipt.key_id }).verify(saved, { noteKey })).length, 6);
      const policy = `# this log, unwitnessed\nlog ${noteKey} ${own.url}\nquorum none\n`;
      assert.equal((await verifyReceipt(saved, { policy })).length, 6);
      assert.equal((await verifyReceipt(saved, { policy: await Policy.parse(policy), keyId: receipt.key_id })).length, 6);
      await assert.rejects(verifyReceipt(saved, { noteKey, keyId: "00".repeat(32) }), KeyMismatchError);
      await assert.rejects(verifyReceipt(saved, { noteKey, policy }), /not both/);
    } finally {
      if (!stopped) await own.close();
    }
  });

  test("offline, a tampered receipt or proof fails naming the check, and a receipt without proof says so", async () => {
    const client = new Client(server.url);
    const { noteKey } = await client.identity();
    const first = (await client.run(example("tiny.wasm"))).receipt;
    const second = (await client.run(example("tiny.wasm"))).receipt;
    const proof = first.tlog_proof;
    const lines = proof.split("\n");
    assert.ok(lines[3], "the shared server's log holds more than one leaf");
    const flipped = Buffer.from(lines[3], "base64");
    flipped[0] ^= 1;
    const cases = [
      [{ salt: "00".repeat(32) }, ["commitment opening"]],
      [{ leaf_signature: second.leaf_signature }, ["leaf signature"]],
      [{ key_id: "ab".repeat(32) }, ["receipt key"]],
      [{ log_index: first.log_index + 1 }, ["leaf contents"]],
      [{ origin: `${first.origin}x` }, ["receipt key", "checkpoint signature", "inclusion proof"]],
      [{ tlog_proof: second.tlog_proof }, ["leaf signature", "leaf contents"]],
      [{ tlog_proof: proof.replace(lines[3], flipped.toString("base64")) }, ["inclusion proof"]],
      // The P-256 line cut off: the note key's line alone still opens the note.
      [{ tlog_proof: proof.slice(0, proof.lastIndexOf("\u2014")) }, ["receipt key"]],
      [{ tlog_proof: proof.replace("index ", "index 0") }, ["receipt key", "leaf signature", "leaf contents", "checkpoint signature", "inclusion proof"]],
      [{ tlog_proof: undefined }, ["receipt key", "leaf signature", "leaf contents", "checkpoint signature", "inclusion proof"]],
    ];
    for (const [change, failed] of cases) {
      await assert.rejects(client.verify({ ...first, ...change }, { noteKey }), (error) => {
        assert.ok(error instanceof VerificationError, String(error));
        assert.deepEqual(error.checks.filter((c) => !c.ok).map((c) => c.name), failed, JSON.stringify(change));
        return true;
      });
    }
    const bare = { ...first };
    delete bare.tlog_proof;
    const checks = await client.checkReceipt(bare, { noteKey });
    assert.equal(checks.at(-1).error, NO_TLOG_PROOF);
    assert.equal((await client.verify(bare)).length, 6);
  });

  test("a proof not yet published is asked again; still missing, the receipt goes without it; a bad one is an error", async () => {
    const proofs = [];
    const answering = (answers) => async (url, init) => {
      if (String(url).includes("/tlog/proof/") && answers.length) {
        proofs.push(String(url));
        const next = answers.shift();
        if (typeof next === "function") return next(url, init);
        return next;
      }
      return fetch(url, init);
    };
    const notYet = () =>
      new Response(JSON.stringify({ error: { code: "not_yet_published", message: "later" } }), {
        status: 404,
        headers: { "retry-after": "0" },
      });
    // Published on the third try: the receipt has it.
    let client = new Client(server.url, { fetch: answering([notYet(), notYet()]) });
    let result = await client.run(example("tiny.wasm"));
    assert.equal(proofs.length, 2);
    assert.ok(result.receipt.tlog_proof && result.tlogProofError === undefined);
    // Never within the bound: no field, and why.
    client = new Client(server.url, { fetch: answering([notYet(), notYet()]), retries: { tries: 2 } });
    result = await client.run(example("tiny.wasm"));
    assert.equal(result.receipt.tlog_proof, undefined);
    assert.match(result.tlogProofError, /later/);
    assert.ok(!("tlog_proof" in JSON.parse(receiptJson(result.receipt))));
    // A proof that does not verify for this receipt: a protocol error.
    const other = (await new Client(server.url).run(example("tiny.wasm"))).receipt.tlog_proof;
    client = new Client(server.url, { fetch: answering([new Response(other)]) });
    await assert.rejects(client.run(example("tiny.wasm")), (error) => error instanceof ProtocolError && /tlog-proof does not verify/.test(error.message));
  });
});
