#!/usr/bin/env python3
"""One receipt format for the three clients (issue 17): a receipt written by the
CLI (`run --receipt`), by the Python package and by the JavaScript package each
verifies with all three, against one real server; then (issue 27, protocol v1.2
§T4/§T6) each receipt's `tlog_proof` verifies with all three OFFLINE, the server
stopped, given only the log's note key from `/keys`.

Run by `.ci/run` after both packages' suites (which build what this needs):
  python3 tools/checks/check_receipts_across.py
Needs the server binary ($WASM_HYPERVISOR_BIN, else target/debug/wasm-hypervisor),
the Python package's virtualenv (target/py-venv, from clients/python/run-tests.sh)
and clients/js's node_modules (from clients/js/run-tests.sh).
Prints a writer x verifier table; exits 1 if any cell failed.
"""

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("WASM_HYPERVISOR_BIN", REPO / "target/debug/wasm-hypervisor"))
PYTHON = REPO / "target/py-venv/bin/python"
JS_INDEX = REPO / "clients/js/dist/index.js"
MODULE = REPO / "examples/hello.wasm"
CLIENTS = ("cli", "python", "js")


def clean_env():
    """The environment without WASM_HYPERVISOR_* (the server and CLI read those
    as configuration)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WASM_HYPERVISOR_")}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data_dir):
    port = free_port()
    env = clean_env()
    env["RUST_LOG"] = "warn"
    server = subprocess.Popen(
        [str(BIN), "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"the server exited: {server.stderr.read().decode()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as answer:
                if answer.status == 200:
                    return server, url
        except OSError:
            time.sleep(0.1)
    server.kill()
    sys.exit("the server did not become healthy within 60 s")


def run(command, **kwargs):
    return subprocess.run(command, env=clean_env(), capture_output=True, text=True, **kwargs)


def write(client, url, path):
    """Runs hello.wasm with `client` and writes its receipt to `path`."""
    if client == "cli":
        return run([str(BIN), "run", "--server", url, "--receipt", str(path), str(MODULE), client])
    if client == "python":
        code = (
            "import sys\n"
            "from wasm_hypervisor import Client\n"
            "result = Client(sys.argv[1]).run(sys.argv[2], args=['python'])\n"
            "assert result.status == 'completed', result.status\n"
            "result.receipt.save(sys.argv[3])\n"
        )
        return run([str(PYTHON), "-c", code, url, str(MODULE), str(path)])
    code = (
        f"import {{ Client }} from {json.dumps(JS_INDEX.as_uri())};\n"
        "import { writeFileSync } from 'node:fs';\n"
        "const [url, module, path] = process.argv.slice(1);\n"
        "const result = await new Client(url).run(module, { args: ['js'] });\n"
        "if (result.status !== 'completed') throw new Error(result.status);\n"
        "writeFileSync(path, JSON.stringify(result.receipt, null, 2) + '\\n');\n"
    )
    return run(["node", "--input-type=module", "-e", code, url, str(MODULE), str(path)])


def verify(client, url, path, note_key=None):
    """Verifies the receipt at `path` with `client`; a failure exits nonzero.
    With `note_key` the verification is offline (the server is stopped by then)."""
    if client == "cli":
        if note_key is not None:
            return run([str(BIN), "verify", "--note-key", note_key, str(path)])
        return run([str(BIN), "verify", "--server", url, str(path)])
    if client == "python":
        code = (
            "import sys\n"
            "from wasm_hypervisor import Client, Receipt, verify_receipt\n"
            "receipt = Receipt.load(sys.argv[2])\n"
            "if len(sys.argv) > 3:\n"
            "    checks = verify_receipt(receipt, note_key=sys.argv[3])\n"
            "else:\n"
            "    checks = Client(sys.argv[1]).verify(receipt)\n"
            "assert len(checks) == 6, checks\n"
        )
        return run([str(PYTHON), "-c", code, url, str(path), *([note_key] if note_key else [])])
    code = (
        f"import {{ Client, verifyReceipt }} from {json.dumps(JS_INDEX.as_uri())};\n"
        "import { readFileSync } from 'node:fs';\n"
        "const [url, path, noteKey] = process.argv.slice(1);\n"
        "const receipt = JSON.parse(readFileSync(path, 'utf8'));\n"
        "const checks = noteKey ? await verifyReceipt(receipt, { noteKey }) : await new Client(url).verify(receipt);\n"
        "if (checks.length !== 6 || !checks.every((c) => c.ok)) throw new Error(JSON.stringify(checks));\n"
    )
    return run(["node", "--input-type=module", "-e", code, url, str(path), *([note_key] if note_key else [])])


def table(title, receipts, check):
    """Prints a writer x verifier table of `check(writer, verifier, path)`; returns the
    number of failed cells."""
    failures = 0
    print(title)
    print("written by \\ verified by: " + "  ".join(CLIENTS))
    for writer, path in receipts.items():
        cells = []
        for verifier in CLIENTS:
            done = check(writer, verifier, path)
            if done.returncode == 0:
                cells.append("ok")
            else:
                cells.append("FAILED")
                failures += 1
                print(f"{verifier} refused {writer}'s receipt:\n{done.stdout}{done.stderr}")
        print(f"{writer:>24}: " + "  ".join(f"{cell:<6}" for cell in cells))
    return failures


def offline(receipts, note_key):
    """The offline table, the server stopped: every receipt with every client, given
    only the note key."""

    def check(writer, verifier, path):
        if "tlog_proof" not in json.loads(path.read_text()):
            return subprocess.CompletedProcess([], 1, "", f"{writer}'s receipt has no tlog_proof\n")
        return verify(verifier, "", path, note_key)

    return table(f"offline (the server stopped; note key {note_key}):", receipts, check)


def main():
    for needed in (BIN, PYTHON, JS_INDEX, REPO / "clients/js/node_modules"):
        if not needed.exists():
            sys.exit(f"missing {needed}: run cargo test and both packages' run-tests.sh first")
    failures = 0
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        server, url = start_server(work / "data")
        try:
            receipts = {}
            for writer in CLIENTS:
                path = work / f"{writer}.json"
                done = write(writer, url, path)
                if done.returncode != 0 or not path.exists():
                    print(f"{writer} could not write a receipt:\n{done.stdout}{done.stderr}")
                    failures += 1
                    continue
                receipts[writer] = path
            failures += table("online (GET /verify):", receipts, lambda _w, verifier, path: verify(verifier, url, path))
            with urllib.request.urlopen(url + "/keys", timeout=5) as answer:
                note_key = json.load(answer).get("note_verifier_key")
        finally:
            server.terminate()
            server.wait(timeout=60)
        if not note_key:
            print("the server's /keys has no note_verifier_key: nothing to verify offline")
            failures += 1
        else:
            failures += offline(receipts, note_key)
    if failures:
        sys.exit(f"{failures} receipt checks failed")
    print("every receipt verifies with every client")


if __name__ == "__main__":
    main()
