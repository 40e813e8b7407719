// A real wasm-hypervisor server process for the tests: a free port on loopback,
// a temporary data directory, a YAML config of the test's own. The binary is
// $WASM_HYPERVISOR_BIN, else <repo>/target/debug/wasm-hypervisor.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../../..");
export const BIN = process.env.WASM_HYPERVISOR_BIN ?? join(REPO, "target/debug/wasm-hypervisor");
export const example = (name) => join(REPO, "examples", name);

function freePort() {
  return new Promise((resolvePort, reject) => {
    const server = createServer();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolvePort(port));
    });
  });
}

/**
 * Starts a server with `config` (YAML lines) and no per-client share of pending
 * sessions unless `maxPendingPerClient` is given; resolves once /health answers 200.
 */
export async function startServer(config = "", { dir, port, maxPendingPerClient = 0 } = {}) {
  dir ??= mkdtempSync(join(tmpdir(), "wasm-hypervisor-js-"));
  port ??= await freePort();
  const url = `http://127.0.0.1:${port}`;
  const configPath = join(dir, "config.yaml");
  writeFileSync(
    configPath,
    `listen: 127.0.0.1:${port}\ndata_dir: ${join(dir, "data")}\nshutdown_grace_secs: 0\n` +
      `sessions:\n  max_pending_per_client: ${maxPendingPerClient}\n${config}`,
  );
  // The server reads WASM_HYPERVISOR_* as configuration (WASM_HYPERVISOR_BIN too):
  // it gets none of them.
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([name]) => !name.startsWith("WASM_HYPERVISOR_")),
  );
  const child = spawn(BIN, ["serve", "--config", configPath], { env, stdio: ["ignore", "ignore", "pipe"] });
  let log = "";
  child.stderr.on("data", (chunk) => (log += chunk));
  const exited = new Promise((resolveExit) => child.on("exit", resolveExit));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`the server exited: ${log}`);
    try {
      const response = await fetch(`${url}/health`);
      if (response.status === 200) break;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`the server did not start: ${log}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url,
    dir,
    port,
    log: () => log,
    /** Stops the process (SIGTERM) and waits for it. */
    async stop() {
      if (child.exitCode === null) child.kill("SIGTERM");
      await exited;
    },
    /** Stops it and removes its directory. */
    async close() {
      await this.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A `fetch` that records `METHOD path status` for each request. */
export function recordingFetch() {
  const calls = [];
  const recorder = async (input, init = {}) => {
    const response = await fetch(input, init);
    calls.push(`${init.method ?? "GET"} ${new URL(String(input)).pathname} ${response.status}`);
    return response;
  };
  return { calls, fetch: recorder };
}

export async function treeSize(url) {
  return (await (await fetch(`${url}/log/checkpoint`)).json()).tree_size;
}
