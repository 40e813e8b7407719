// The playground: runs a module sealed from the browser with the wasm-hypervisor
// package (served from ./sdk/, the committed build of clients/js) and verifies
// its receipt here, check by check. Plain ESM: no build step.
import { Client } from "./sdk/index.js";

const $ = (id) => document.getElementById(id);
const decoder = new TextDecoder();

/** Every check, in order, with what it shows a person. */
const LABELS = {
  "session key signature": "session key signature: the server's long-term key signed the session key we encrypted to",
  "result opening": "result opening: the sealed result opens with this request's keys",
  commitment: "commitment: SHA-256 over the salt and both plaintexts is the server's commitment",
  "receipt key": "receipt key: the receipt names the server's key",
  "leaf signature": "leaf signature: the server signed the logged leaf",
  "leaf contents": "leaf contents: the leaf is this execution with this commitment at this index",
  "commitment opening": "commitment opening: salt and plaintext hashes open the commitment",
  "checkpoint signature": "checkpoint signature: the server signed the tree head",
  "inclusion proof": "inclusion proof: RFC 9162 proof from the leaf to the checkpoint's root",
};

/** The same checks offline, from the receipt's tlog-proof under the note key alone. */
const OFFLINE_LABELS = {
  "receipt key": "receipt key: the checkpoint note carries a signature of the receipt's key, named after the log",
  "leaf signature": "leaf signature: the receipt's key signed the proof's leaf",
  "leaf contents": "leaf contents: the proof's leaf is this execution with this commitment at this index",
  "commitment opening": LABELS["commitment opening"],
  "checkpoint signature": "checkpoint signature: the log's note key signed the checkpoint (no witness required)",
  "inclusion proof": "inclusion proof: RFC 9162 proof from the proof's leaf to the checkpoint's root",
};

const client = new Client(window.location.origin);

async function moduleBytes() {
  if (document.querySelector("input[name=source]:checked").value === "file") {
    const file = $("file").files[0];
    if (!file) throw new Error("pick a .wasm file first");
    return new Uint8Array(await file.arrayBuffer());
  }
  const response = await fetch(`examples/${$("example").value}`);
  if (!response.ok) throw new Error(`cannot load the example: ${response.status}`);
  return new Uint8Array(await response.arrayBuffer());
}

function showChecks(checks, where = "checks", verdict = "verdict", labels = LABELS) {
  const list = $(where);
  list.replaceChildren();
  for (const check of checks) {
    const item = document.createElement("li");
    item.className = check.ok ? "passed" : "failed";
    item.dataset.check = check.name;
    item.textContent = labels[check.name] ?? check.name;
    if (!check.ok) {
      const why = document.createElement("span");
      why.className = "why";
      why.textContent = check.error;
      item.append(why);
    }
    list.append(item);
  }
  const passed = checks.every((check) => check.ok);
  $(verdict).className = passed ? "passed" : "failed";
  $(verdict).textContent = passed
    ? "Verified: every check passed in this browser."
    : "Not verified: a check failed.";
}

/** The receipt's tlog-proof, checked offline under the note key `/keys` gave (no request). */
async function showTlogProof(receipt, tlogProofError) {
  const { noteKey } = await client.identity();
  if (!noteKey) return; // a server before protocol v1.2 serves no proofs
  $("note-key").textContent = String(noteKey);
  $("tlog-proof").textContent = receipt.tlog_proof ?? `no tlog-proof: ${tlogProofError}`;
  showChecks(await client.checkReceipt(receipt, { noteKey }), "tlog-checks", "tlog-verdict", OFFLINE_LABELS);
  $("tlog").hidden = false;
}

$("run-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("run").disabled = true;
  $("error").hidden = true;
  $("result").hidden = true;
  $("verification").hidden = true;
  $("tlog").hidden = true;
  document.body.dataset.state = "running";
  try {
    const args = $("args").value.split(/\s+/).filter(Boolean);
    const result = await client.run(await moduleBytes(), { args, stdin: $("stdin").value });
    $("status").textContent = result.status + (result.error ? ` (${result.error})` : "");
    $("exit-code").textContent = result.exitCode === null ? "none" : String(result.exitCode);
    $("fuel").textContent = result.fuelConsumed.toLocaleString("en");
    $("time").textContent = `${result.wallTimeUs.toLocaleString("en")} µs`;
    $("execution-id").textContent = `${result.executionId} (log entry ${result.receipt.log_index})`;
    $("stdout").textContent = decoder.decode(result.stdout);
    $("stderr").textContent = decoder.decode(result.stderr);
    $("result").hidden = false;
    await showTlogProof(result.receipt, result.tlogProofError);
    const receiptChecks = await client.checkReceipt(result.receipt);
    showChecks([...result.checks, ...receiptChecks]);
    $("verification").hidden = false;
    document.body.dataset.state = "done";
  } catch (error) {
    $("error").textContent = String(error instanceof Error ? error.message : error);
    $("error").hidden = false;
    document.body.dataset.state = "error";
  } finally {
    $("run").disabled = false;
  }
});
