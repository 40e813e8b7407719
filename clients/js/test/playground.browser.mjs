// The playground in real headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; never a downloaded browser), from a real server with
// `playground: true`: runs hello.wasm with arguments and stdin, sealed from the
// page, and checks that the output arrived and that every verification check
// passed in the browser. A screenshot goes to $PLAYGROUND_SCREENSHOT when set
// (docs/playground.png is made so).
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";

import { chromium } from "playwright-core";

import { startServer } from "./server.mjs";

const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";

let server;
let browser;
let profile;
before(async () => {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: apt-get install chromium (.ci/run does), or set CHROMIUM`);
  }
  server = await startServer("playground: true\n");
  profile = mkdtempSync(join(tmpdir(), "wasm-hypervisor-chromium-"));
  // A fresh, empty profile (playwright passes it as --user-data-dir).
  browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    viewport: { width: 1000, height: 1400 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
});
after(async () => {
  await browser?.close();
  await server?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

test("the playground runs hello.wasm sealed and every check passes in the browser", async () => {
  const page = await browser.newPage();
  const problems = [];
  page.on("console", (message) => {
    if (message.type() === "error") problems.push(message.text());
  });
  page.on("pageerror", (error) => problems.push(String(error)));
  const requests = [];
  page.on("response", (response) => {
    if (response.status() >= 400) problems.push(`${response.status()} ${response.url()}`);
    requests.push(`${response.request().method()} ${new URL(response.url()).pathname}`);
  });
  await page.goto(`${server.url}/playground/`);
  await page.selectOption("#example", "hello.wasm");
  await page.fill("#args", "from the browser");
  await page.fill("#stdin", "sealed stdin");
  await page.click("#run");
  await page.waitForSelector("body[data-state=done], body[data-state=error]", { timeout: 60_000 });
  assert.equal(await page.getAttribute("body", "data-state"), "done", await page.textContent("#error"));

  assert.equal(await page.textContent("#status"), "completed");
  assert.equal(await page.textContent("#exit-code"), "0");
  assert.equal(
    await page.textContent("#stdout"),
    "hello from wasm\narg[1]=from\narg[2]=the\narg[3]=browser\nstdin: 12 bytes\nsealed stdin",
  );
  assert.equal(await page.textContent("#stderr"), "hello: done\n");
  assert.match(await page.textContent("#fuel"), /^[\d,]+$/);
  assert.match(await page.textContent("#time"), /^[\d,]+ µs$/);

  const checks = await page.$$eval("#checks li", (items) => items.map((li) => [li.dataset.check, li.className]));
  assert.deepEqual(
    checks.map(([name]) => name),
    [
      "session key signature",
      "result opening",
      "commitment",
      "receipt key",
      "leaf signature",
      "leaf contents",
      "commitment opening",
      "checkpoint signature",
      "inclusion proof",
    ],
  );
  for (const [name, state] of checks) assert.equal(state, "passed", name);
  assert.equal(await page.textContent("#verdict"), "Verified: every check passed in this browser.");

  // The tlog-proof, shown and checked offline against /keys' note key: after
  // GET /tlog/proof/{id} the page asks only /verify (the online checks).
  const { note_verifier_key: noteKey } = await (await fetch(`${server.url}/keys`)).json();
  assert.equal(await page.textContent("#note-key"), noteKey);
  const proof = await page.textContent("#tlog-proof");
  assert.match(proof, /^c2sp\.org\/tlog-proof@v1\nextra [A-Za-z0-9+/]+=*\nindex \d+\n/);
  const executionId = (await page.textContent("#execution-id")).split(" ")[0];
  assert.equal(proof, await (await fetch(`${server.url}/tlog/proof/${executionId}`)).text());
  const offline = await page.$$eval("#tlog-checks li", (items) => items.map((li) => [li.dataset.check, li.className]));
  assert.deepEqual(
    offline.map(([name]) => name),
    ["receipt key", "leaf signature", "leaf contents", "commitment opening", "checkpoint signature", "inclusion proof"],
  );
  for (const [name, state] of offline) assert.equal(state, "passed", `offline ${name}`);
  assert.equal(await page.textContent("#tlog-verdict"), "Verified: every check passed in this browser.");
  const afterProof = requests.slice(requests.indexOf(`GET /tlog/proof/${executionId}`));
  assert.deepEqual(afterProof, [`GET /tlog/proof/${executionId}`, `GET /verify/${executionId}`]);
  assert.deepEqual(problems, []);
  if (process.env.PLAYGROUND_SCREENSHOT) {
    await page.screenshot({ path: process.env.PLAYGROUND_SCREENSHOT, fullPage: true });
  }
});
