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

import { Client, VerificationError, WasmHypervisorError, receiptJson, saveReceipt } from "../dist/index.js";
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
        "commitment", "salt", "request_sha256", "result_sha256", "module_sha256", "leaf_signature",
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
});
