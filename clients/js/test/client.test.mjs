// The package against a real server process: both protocol versions, what a
// guest gets (args, env, stdin, limits, mounts, invoke), blobs by reference and
// their fallback, long jobs, the session pool's retry, key pinning.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { after, afterEach, before, beforeEach, describe, test } from "node:test";

import {
  Client,
  ClientError,
  ConnectionFailedError,
  KeyMismatchError,
  ProtocolError,
  RequestError,
  ResponseError,
  ServerError,
  SessionSignatureError,
  VerificationError,
  WasmHypervisorError,
  tar,
} from "../dist/index.js";
import { example, recordingFetch, startServer, treeSize } from "./server.mjs";

const decode = (bytes) => new TextDecoder().decode(bytes);

describe("against a server", () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.close();
  });

  for (const wire of ["v1.1", "v1"]) {
    test(`${wire}: args, env and stdin reach the guest and its output comes back`, async () => {
      const client = new Client(server.url, { wire });
      const result = await client.run(example("hello.wasm"), {
        args: ["a", "b c"],
        env: { NAME: "world", EXIT_CODE: "3" },
        stdin: new TextEncoder().encode("input bytes"),
      });
      assert.equal(result.status, "completed");
      assert.equal(result.exitCode, 3);
      assert.equal(
        decode(result.stdout),
        "hello from wasm\narg[1]=a\narg[2]=b c\nNAME=world\nstdin: 11 bytes\ninput bytes",
      );
      assert.equal(decode(result.stderr), "hello: done\n");
      assert.ok(result.fuelConsumed > 0);
      assert.ok(result.wallTimeUs > 0);
      assert.deepEqual(result.returns, []);
      assert.match(result.engine, /^wasmtime /);
      assert.equal(result.receipt.status, "completed");
      const checks = await client.verify(result.receipt);
      assert.deepEqual(
        checks.map((check) => check.name),
        ["receipt key", "leaf signature", "leaf contents", "commitment opening", "checkpoint signature", "inclusion proof"],
      );
    });
  }

  test("v1 sends JSON bodies and v1.1 binary bodies from a signed batch", async () => {
    for (const [wire, sessions] of [
      ["v1", "POST /sessions 201"],
      ["v1.1", "POST /sessions 201"],
    ]) {
      const recorder = recordingFetch();
      const client = new Client(server.url, { wire, fetch: recorder.fetch, batch: 4 });
      await client.run(example("tiny.wasm"));
      // Then the receipt's tlog-proof (protocol v1.2 §T4).
      const calls = recorder.calls.map((call) => call.replace(/\/tlog\/proof\/[0-9a-f-]{36} /, "/tlog/proof/{id} "));
      assert.deepEqual(calls, ["GET /keys 200", sessions, "POST /execute 200", "GET /tlog/proof/{id} 200"]);
      assert.equal(client.pooledSessions, wire === "v1.1" ? 3 : 0);
    }
  });

  test("a fuel limit ends the guest with fuel_exhausted", async () => {
    const client = new Client(server.url);
    const result = await client.run(example("sha256sum.wasm"), {
      stdin: new Uint8Array(100_000),
      limits: { fuel: 10_000 },
    });
    assert.equal(result.status, "fuel_exhausted");
    assert.equal(result.limits.fuel, 10_000);
  });

  test("mounts: a read-only archive in, a writable mount's archive out (files.wasm)", async () => {
    const client = new Client(server.url);
    const input = tar.pack([{ name: "input.txt", data: new TextEncoder().encode("from the host") }]);
    const result = await client.run(example("files.wasm"), {
      args: ["selftest", "/in", "/out"],
      mounts: [
        { path: "/in", tar: input },
        { path: "/out", writable: true },
      ],
    });
    assert.equal(result.status, "completed", decode(result.stdout));
    assert.match(decode(result.stdout), /input\.txt: from the host\n/);
    assert.match(decode(result.stdout), /selftest: ok\n$/);
    assert.equal(result.mountsOut.length, 1);
    assert.equal(result.mountsOut[0].path, "/out");
    const files = Object.fromEntries(
      tar.unpack(result.mountsOut[0].tar).filter((e) => e.data).map((e) => [e.name, decode(e.data)]),
    );
    assert.equal(files["log.txt"], "Hello World");
    assert.equal(files["trunc.txt"], "abc");
  });

  test("invoke calls a component's export with WAVE arguments (calc.component.wasm)", async () => {
    const client = new Client(server.url);
    const module = readFileSync(example("calc.component.wasm"));
    const added = await client.run(new Uint8Array(module), { invoke: "add(1, 2)" });
    assert.equal(added.status, "completed");
    assert.deepEqual(added.returns, ["3"]);
    const greeted = await client.run(new Uint8Array(module), { invoke: 'greet("js")' });
    assert.deepEqual(greeted.returns, ['"Hello, js!"']);
  });

  test("a module the server holds goes by reference: one execution, no bytes", async () => {
    const client = new Client(server.url);
    const first = await client.run(example("hello.wasm"), { args: ["1"] });
    assert.equal(first.byReference, false);
    const size = await treeSize(server.url);
    const second = await client.run(example("hello.wasm"), { args: ["2"] });
    assert.equal(second.byReference, true);
    assert.equal(second.status, "completed");
    assert.match(decode(second.stdout), /arg\[1\]=2/);
    assert.equal(await treeSize(server.url), size + 1);
  });

  test("a long job is accepted (202) and polled until it finishes", async () => {
    const recorder = recordingFetch();
    const client = new Client(server.url, { fetch: recorder.fetch });
    const pending = [];
    const result = await client.run(example("sleep.wasm"), {
      args: ["1500"],
      async: true,
      onPending: (where) => pending.push(where),
    });
    assert.equal(result.status, "completed");
    assert.equal(decode(result.stdout), "slept\n");
    // Polled at once after the 202, a guest that sleeps 1.5 s is unfinished.
    assert.ok(pending.length > 0);
    for (const where of pending) {
      assert.equal(where.executionId, result.executionId);
      assert.ok(["queued", "running"].includes(where.state), JSON.stringify(where));
      assert.ok(["queued", "compiling", "running"].includes(where.phase), JSON.stringify(where));
    }
    assert.ok(recorder.calls.includes("POST /execute 202"), recorder.calls.join(", "));
    assert.ok(recorder.calls.some((call) => /^GET \/executions\/[0-9a-f-]{36} 202$/.test(call)), recorder.calls.join(", "));
    assert.ok(recorder.calls.some((call) => /^GET \/executions\/[0-9a-f-]{36} 200$/.test(call)), recorder.calls.join(", "));
    await client.verify(result.receipt);
  });

  test("a pinned key id that is not the server's refuses before any session is opened", async () => {
    const recorder = recordingFetch();
    const client = new Client(server.url, { keyId: "00".repeat(32), fetch: recorder.fetch });
    await assert.rejects(client.run(example("tiny.wasm")), (error) => {
      assert.ok(error instanceof KeyMismatchError);
      assert.equal(error.expected, "00".repeat(32));
      return true;
    });
    assert.deepEqual(recorder.calls, ["GET /keys 200"]);
    const { key_id } = await (await fetch(`${server.url}/keys`)).json();
    const pinned = new Client(server.url, { keyId: key_id.toUpperCase() });
    assert.equal((await pinned.run(example("tiny.wasm"))).status, "completed");
  });
});

test("blobs: a reference the server no longer holds falls back to the bytes", async () => {
  const server = await startServer("blobs:\n  store_bytes: 0\n");
  try {
    const client = new Client(server.url);
    await client.run(example("hello.wasm"));
    const size = await treeSize(server.url);
    const result = await client.run(example("hello.wasm"), { args: ["again"] });
    assert.equal(result.status, "completed");
    assert.equal(result.byReference, false);
    assert.match(decode(result.stdout), /arg\[1\]=again/);
    // The missing_blob execution is logged too, then the one with the bytes.
    assert.equal(await treeSize(server.url), size + 2);
  } finally {
    await server.close();
  }
});

test("pool: runs sharing an empty pool open one batch between them", async () => {
  const server = await startServer();
  try {
    const recorder = recordingFetch();
    const client = new Client(server.url, { fetch: recorder.fetch, batch: 8, references: false });
    const module = readFileSync(example("tiny.wasm"));
    const results = await Promise.all(Array.from({ length: 16 }, () => client.run(module)));
    assert.deepEqual(
      results.map((result) => result.status),
      Array(16).fill("completed"),
    );
    // A batch is only opened for an empty pool: sixteen runs, batches of 4, 8 and 8
    // (each used up, so the next doubled, up to the ceiling of 8).
    assert.equal(recorder.calls.filter((call) => call.startsWith("POST /sessions")).length, 3);
    assert.equal(client.pooledSessions, 4);
  } finally {
    await server.close();
  }
});

test("pool: a batch the client's pending share refuses is halved", async () => {
  const server = await startServer("", { maxPendingPerClient: 6 });
  try {
    const other = new Client(server.url); // another program of the same client
    await other.run(example("tiny.wasm"));
    assert.equal(other.pooledSessions, 3); // three of its six held
    const recorder = recordingFetch();
    const client = new Client(server.url, { fetch: recorder.fetch });
    for (let i = 0; i < 4; i++) assert.equal((await client.run(example("tiny.wasm"))).status, "completed");
    // 4 refused (3 + 4 > 6), 2 granted; used up, so 4 asked again: refused, 2 granted.
    assert.deepEqual(
      recorder.calls.filter((call) => call.startsWith("POST /sessions")),
      ["POST /sessions 429", "POST /sessions 201", "POST /sessions 429", "POST /sessions 201"],
    );
    assert.equal(client.batch, 2);
  } finally {
    await server.close();
  }
});

test("pool: a session a rate-limited run did not use goes back to the pool", async () => {
  const server = await startServer("clients:\n  requests_per_second: 1\n  burst: 4\n");
  try {
    const client = new Client(server.url, { batch: 8, references: false });
    const module = readFileSync(example("tiny.wasm"));
    assert.equal((await client.run(module)).status, "completed");
    let refused;
    for (let attempt = 0; attempt < 5 && refused === undefined; attempt++) {
      // Empty the client's bucket, then run at once (a token refilled in between
      // lets the run through: then again).
      while ((await fetch(`${server.url}/keys`)).status !== 429);
      const before = client.pooledSessions;
      try {
        await client.run(module);
      } catch (error) {
        refused = { error, before };
      }
    }
    assert.ok(refused, "no run was ever rate limited");
    assert.equal(refused.error.code, "rate_limited");
    // Not used by the server, so not lost by the pool.
    assert.equal(client.pooledSessions, refused.before);
  } finally {
    await server.close();
  }
});

test("pool: sessions lost in a server restart cost one quiet retry", async () => {
  let server = await startServer();
  const { dir, port } = server;
  try {
    const recorder = recordingFetch();
    // By bytes: the restart also empties the blob store (that fallback is tested above).
    const client = new Client(server.url, { fetch: recorder.fetch, batch: 8, references: false });
    await client.run(example("tiny.wasm"));
    assert.equal(client.pooledSessions, 3);
    await server.stop();
    server = await startServer("", { dir, port });
    recorder.calls.length = 0;
    const result = await client.run(example("tiny.wasm"));
    assert.equal(result.status, "completed");
    const calls = recorder.calls.map((call) => call.replace(/\/tlog\/proof\/[0-9a-f-]{36} /, "/tlog/proof/{id} "));
    assert.deepEqual(calls, ["POST /execute 404", "POST /sessions 201", "POST /execute 200", "GET /tlog/proof/{id} 200"]);
    assert.equal(client.pooledSessions, 3);
  } finally {
    await server.close();
  }
});

test("pool: batches start at 4 and double while they are used up, to the default ceiling of 16", async () => {
  const server = await startServer();
  try {
    const recorder = recordingFetch();
    const client = new Client(server.url, { fetch: recorder.fetch, references: false });
    const module = readFileSync(example("tiny.wasm"));
    const pooledAfterRefill = [];
    for (let i = 0; i < 4 + 8 + 16 + 1; i++) {
      const before = client.pooledSessions;
      await client.run(module);
      if (before === 0) pooledAfterRefill.push(client.pooledSessions);
    }
    assert.deepEqual(pooledAfterRefill, [3, 7, 15, 15]);
    assert.equal(recorder.calls.filter((call) => call.startsWith("POST /sessions")).length, 4);
    assert.equal(client.batch, 16);
  } finally {
    await server.close();
  }
});

test("pool: three programs on one address share its pending sessions without a refusal", async () => {
  // The server's default share: 64 pending sessions per client (address).
  const server = await startServer("", { maxPendingPerClient: 64 });
  try {
    const recorder = recordingFetch();
    const programs = [0, 1, 2].map(() => new Client(server.url, { fetch: recorder.fetch, references: false }));
    const module = readFileSync(example("tiny.wasm"));
    for (let round = 0; round < 2; round++) {
      for (const program of programs) assert.equal((await program.run(module)).status, "completed");
    }
    assert.deepEqual(
      recorder.calls.filter((call) => call.startsWith("POST /sessions")),
      ["POST /sessions 201", "POST /sessions 201", "POST /sessions 201"],
    );
    assert.deepEqual(
      programs.map((program) => program.batch),
      [4, 4, 4],
    );
  } finally {
    await server.close();
  }
});

test("pool: a batch whose sessions expired unused halves the next", async () => {
  // Appended to the server's `sessions:` block: sessions live 2 s.
  const server = await startServer("  ttl_secs: 2\n");
  try {
    // Every pooled session expires within the 5 s margin: dropped unused.
    const client = new Client(server.url, { references: false, marginMs: 5000 });
    for (let i = 0; i < 3; i++) assert.equal((await client.run(example("tiny.wasm"))).status, "completed");
    // Batches of 4, 2 and 1.
    assert.equal(client.batch, 1);
    assert.equal(client.pooledSessions, 0);
  } finally {
    await server.close();
  }
});

test("errors: one base class; ClientError is its deprecated alias", async () => {
  for (const kind of [ConnectionFailedError, ProtocolError, ResponseError, KeyMismatchError, SessionSignatureError, VerificationError]) {
    assert.ok(kind.prototype instanceof WasmHypervisorError, kind.name);
  }
  assert.ok(RequestError.prototype instanceof ResponseError);
  assert.ok(ServerError.prototype instanceof ResponseError);
  assert.ok(!(RequestError.prototype instanceof ServerError));
  assert.equal(ClientError, WasmHypervisorError);
  assert.ok(!(ServerError.prototype instanceof ProtocolError));
  const client = new Client("http://127.0.0.1:9", {
    fetch: async () => {
      throw new TypeError("fetch failed");
    },
  });
  await assert.rejects(client.identity(), (error) => error instanceof ConnectionFailedError && error instanceof ClientError);
});

test("errors: a 4xx answer is a RequestError, a 5xx a ServerError, both ResponseErrors", async () => {
  for (const [status, code, kind, other] of [
    [401, "unauthorized", RequestError, ServerError],
    [503, "overloaded", ServerError, RequestError],
  ]) {
    const client = new Client("http://127.0.0.1:9", {
      fetch: async () =>
        new Response(JSON.stringify({ error: { code, message: "no" } }), {
          status,
          headers: { "content-type": "application/json" },
        }),
    });
    await assert.rejects(client.identity(), (error) => {
      assert.ok(error instanceof kind, `${status} is a ${kind.name}`);
      assert.ok(error instanceof ResponseError);
      assert.ok(!(error instanceof other));
      assert.equal(error.status, status);
      assert.equal(error.code, code);
      return true;
    });
  }
});

describe("retries", () => {
  // One request a second per client, in bursts of four: a run fits, then 429s.
  // A server per test: each empties its bucket.
  let server;
  beforeEach(async () => {
    server = await startServer("clients:\n  requests_per_second: 1\n  burst: 4\n");
  });
  afterEach(async () => {
    await server.close();
  });
  const emptyTheBucket = async () => {
    while ((await fetch(`${server.url}/keys`)).status !== 429);
  };

  test("a verify answered 429 is made again after its Retry-After and succeeds", async () => {
    const recorder = recordingFetch();
    const client = new Client(server.url, { fetch: recorder.fetch, references: false });
    const result = await client.run(example("tiny.wasm"));
    await emptyTheBucket();
    recorder.calls.length = 0;
    const checks = await client.verify(result.receipt);
    assert.ok(checks.every((check) => check.ok));
    const verifies = recorder.calls.filter((call) => call.startsWith("GET /verify/"));
    assert.ok(verifies.length >= 2, verifies.join(", "));
    assert.match(verifies[0], / 429$/);
    assert.match(verifies.at(-1), / 200$/);
  });

  test("retries stop at their bound and throw the server's error", async () => {
    const recorder = recordingFetch();
    const client = new Client(server.url, { fetch: recorder.fetch, references: false, retries: { tries: 1 } });
    const result = await client.run(example("tiny.wasm"));
    await emptyTheBucket();
    recorder.calls.length = 0;
    await assert.rejects(client.verify(result.receipt), (error) => {
      assert.ok(error instanceof RequestError, "a 429 blames the request");
      assert.ok(!(error instanceof ServerError));
      assert.equal(error.status, 429);
      assert.equal(error.code, "rate_limited");
      assert.ok(error.retryAfter >= 1);
      return true;
    });
    assert.equal(recorder.calls.length, 1, recorder.calls.join(", "));
  });
});
