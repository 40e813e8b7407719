#!/usr/bin/env python3
"""Measures the attacks of issue 25 ("Hardening, round two") against a server binary,
the way the adversarial review measured them: a release build with its default
configuration, a fresh server per row, and an honest client running a tiny module
every 0.1-0.3 s meanwhile.

    tools/attacks/round2.py ROW --bin target/release/wasm-hypervisor [--keep]
    tools/attacks/round2.py all --bin target/release/wasm-hypervisor [--keep]
    tools/attacks/round2.py 9 --bin target/release/wasm-hypervisor --diagnose --keep

ROW is one of idle, 1, 2, 3 (both of 3j, 3c), 3j, 3c, 4, 5, 6, 7, 8, 9, 10, write. Each row
prints one summary line: what the attacker got, the server's memory growth (peak
VmRSS, or VmHWM when it rose, minus the RSS just before the attack, sampled every
20 ms from /proc/PID/status), the honest client's worst and median latency and its
failures during the attack, and the attack's own timing. `all` runs every row in
turn and prints a Markdown table at the end. `--keep` keeps each row's temporary
directory (server logs, data directories) and prints where it is. `--diagnose`
(row 9) says where the honest client's time went: PostgreSQL logs every statement
with its duration (`pg/postgres.log`), and `pg_stat_activity` is sampled every
5 ms during the burst (what each connection waits on, summed up in the note, every
sample kept in `pg/activity.tsv`). It costs the database some CPU: a measuring run
goes without it. Row 9's note always lists the honest client's slowest runs, with
the time each spent opening a session batch (the rest is its execution).

What each row does (sizes as the issue gives them; where it is not exact, the
closest honest reproduction, said here):

  idle  no attack: the honest client alone for 20 s, the control that says what
      this machine's own load does to its latency.
  1   three requests at once, each mounting its own tar of 600 empty regular files
      each 2,040 path components deep (`N/a/a/.../a`, GNU `L` long names: 2.9 MiB).
  2   one request (CBOR plaintext, binary body; about 700 bytes) whose guest
      (guests/many_files.wat, `files_bytes` 0) makes 100,000 empty files with
      4,095-byte paths in a writable mount (15 directories of 255-byte names, then
      255-byte file names; `max_mount_entries` stops it at 99,985 files).
  3j  a guest (guests/writer.wat) writes 256 MiB (`files_bytes` exactly) to a file
      of a writable mount in 512 KiB calls; wire v1: JSON body and JSON plaintext.
  3c  the same with wire v1.1: binary body and CBOR plaintext.
  4   one client submits 8 async jobs at once (8 threads, `Prefer: respond-async`,
      wire v1, so JSON answers) each writing 64 MiB to a writable mount: 64 MiB of output under the
      default `max_output_bytes` of 1 MiB is only possible through `mounts_out`.
      Each kept answer is then ~89.5 MB (base64 in JSON), 716 MB in all, as the
      issue measured. Once they finished, another client (another address) submits
      one async tiny job: its status says whether async is refused to everyone else.
  5   one async job (wire v1.1: CBOR, so a kept answer of ~64 MiB), then 24
      connections that send `GET /executions/{id}` (no Accept: JSON, the answer
      base64-encoded again) with a 4 KiB receive buffer, read the status line and
      never read more, held 12 s (past `http.response_write_timeout_ms`, 10 s).
      The cluster-mode variant of this row is not reproduced.
  6   312,000 distinct 10-byte blobs: requests carrying a 10-byte module and 16
      read-only mounts of 10-byte archives (17 blobs each; the blobs are kept
      before the request is refused), from 6 processes on 6 loopback addresses
      paced under the per-client request rate. The note gives the memory retained
      per blob (RSS after the flood minus before, over 312,000).
  7   the blob store (`blobs.store_bytes` 512 MiB) filled with 1 KiB blobs the same
      way (523,948 of them: full but for 340 KiB, so that the filling evicts
      nothing), then one 100 MiB module: examples/tiny.wasm
      with a 100 MiB custom section, a valid module that runs and says "hello".
      The honest client's numbers are those of the 100 MiB request alone; the
      filling's are in the note.
  8   a module that takes a few seconds to compile (400 functions of 2,000
      operations, generated here), sent once; its compile worker (the server's
      child whose command line says `compile-worker`) is killed with SIGKILL
      0.1 s after it appears; then the same module is sent again.
  9   cluster mode: a PostgreSQL of its own (Debian's, /usr/lib/postgresql/*/bin,
      initdb into the temporary directory, a unix socket only), two replicas with
      `clients.trusted_proxies: [127.0.0.1/32]`; 160 addresses (X-Forwarded-For
      127.77.0.1 to .160, alternating replicas) each ask for one batch of 64
      sessions at the same moment; then the sessions pending (rows in the
      `sessions` table) and a fresh client (another forwarded address) asking for
      one session 35 times over 60 s. The honest client talks to the first replica
      directly; memory is the two replicas' growth added up.
  10  a mount whose tar has a pax `x` header with the record `size=abc` before a
      6-byte regular file whose ustar header says 6.
  write  one fd_write of 4 MiB (guests/writer.wat): to stdout (the default
      `max_output_bytes` is 1 MiB), then in another execution to a file of a
      writable mount; the guest retries short writes as libc does. The status is
      each execution's exit code (0, or the WASI errno the write got) and how many
      bytes came back.

The honest client is the Python package of clients/python (wire v1.1, sessions in
batches) from 127.0.0.200, running examples/tiny.wasm (compiled once before the
attack) at random intervals of 0.1-0.3 s with a 120 s timeout, in a process of its
own so that the attacker's work in this process never delays it; attackers use
127.0.0.1 and other loopback addresses, so the two are different clients. The
only setting that differs from the defaults is `auth.metrics_tokens_sha256` (a
scraper token, so that this script can read the blob store's and the async
answers' byte gauges); clients need no token.

Every row is bounded in time (a watchdog kills its servers past its bound), talks
only to loopback, and stops its processes and removes its temporary directory.
The first run makes a virtualenv in target/attacks-venv with clients/python and
the PyPI `wasmtime` package (its `wat2wasm` compiles guests/*.wat).
"""

import argparse
import collections
import hashlib
import http.client
import json
import multiprocessing
import os
import queue
import random
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
VENV = REPO / "target" / "attacks-venv"
WASMTIME_PYPI = "wasmtime==51.0.0"

HONEST_SOURCE = "127.0.0.200"
OTHER_SOURCE = "127.0.0.201"
ATTACKER_SOURCE = "127.0.0.1"
KiB, MiB = 1024, 1024 * 1024
SAMPLE_SECONDS = 0.02
HONEST_TIMEOUT = 120.0
# Seconds row 7's attacker waits for the answer to its 100 MiB module.
BIG_MODULE_TIMEOUT = 300.0
ROWS = ["idle", "1", "2", "3j", "3c", "4", "5", "6", "7", "8", "9", "10", "write"]
# Seconds each row may take in all (servers' start and stop included); past it the
# watchdog kills the row's servers, which ends every request still waiting on them.
BOUNDS = {"idle": 120, "1": 300, "2": 300, "3j": 300, "3c": 300, "4": 300, "5": 240, "6": 360,
          "7": 720, "8": 300, "9": 360, "10": 120, "write": 120}
TITLES = {
    "idle": "none: the honest client alone for 20 s",
    "1": "3 tars of 600 members x 2,040 components",
    "2": "100,000 empty files with 4,095-byte paths",
    "3j": "256 MiB to a writable mount, JSON",
    "3c": "256 MiB to a writable mount, CBOR",
    "4": "8 async jobs of 64 MiB output",
    "5": "24 GETs that never read a 64 MiB answer",
    "6": "312,000 tiny blobs",
    "7": "store full of 1 KiB blobs, then a 100 MiB module",
    "8": "compile worker SIGKILLed",
    "9": "cluster: 160 addresses x 64 sessions",
    "10": "pax size record not a number",
    "write": "one fd_write of 4 MiB",
}


# ---------------------------------------------------------------------------
# Set-up: the virtualenv, guests, servers


def ensure_venv():
    """Re-runs this script inside target/attacks-venv, made (once) with the Python
    client and wasmtime, unless it already runs there."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    python = VENV / "bin" / "python"
    if not python.exists():
        VENV.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    # What was installed: the client package's sources and wasmtime's pin. A
    # change to either installs again.
    digest = hashlib.sha256(WASMTIME_PYPI.encode())
    package = REPO / "clients" / "python"
    for path in sorted([package / "pyproject.toml", *(package / "src").rglob("*.py")]):
        digest.update(path.read_bytes())
    marker = VENV / ".round2-installed"
    if not marker.exists() or marker.read_text().strip() != digest.hexdigest():
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        "--force-reinstall", "--no-deps", str(package)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        str(package), WASMTIME_PYPI], check=True)
        marker.write_text(digest.hexdigest() + "\n")
    os.execv(str(python), [str(python), str(Path(__file__).resolve())] + sys.argv[1:])


def wat(name):
    import wasmtime

    return wasmtime.wat2wasm((HERE / "guests" / name).read_text())


def tiny_module():
    return (REPO / "examples" / "tiny.wasm").read_bytes()


def leb128(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def with_custom_section(module, payload_bytes):
    """`module` with a custom section named `pad` of `payload_bytes` zero bytes at
    its end: still a valid module (custom sections may come anywhere)."""
    name = b"pad"
    content = leb128(len(name)) + name
    size = len(content) + payload_bytes
    return module + b"\x00" + leb128(size) + content + bytes(payload_bytes)


def slow_to_compile_module(functions=400, operations=2000):
    """A valid module whose compilation takes a few seconds: many functions of
    straight-line arithmetic (under every bound of the shape check)."""
    import wasmtime

    step = "(i32.add (i32.mul (local.get 1) (i32.const 7)))(local.tee 1)(i32.xor (local.get 2))(local.set 2)(local.get 1)"
    body = "(local.get 0)" + step * operations + "(drop)"
    funcs = "".join(f"(func $f{i} (param i32 i32) (local i32) {body})" for i in range(functions))
    return wasmtime.wat2wasm(f'(module {funcs} (func (export "_start")))')


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_request(port, method, path, body=None, headers=None, source=ATTACKER_SOURCE, timeout=30.0):
    """One request on a fresh connection from `source`: (status, headers, body)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        connection.request(method, path, body=body, headers=headers or {})
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def error_code(body):
    try:
        return json.loads(body)["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return "?"


class Server:
    """One `wasm-hypervisor serve` in a data directory of its own, on a free
    loopback port, in its own process group."""

    def __init__(self, binary, workdir, name, config):
        self.binary, self.name = binary, name
        self.dir = Path(workdir) / name
        self.dir.mkdir(parents=True)
        self.port = free_port()
        self.config_file = self.dir / "config.yaml"
        self.config_file.write_text(json.dumps(config, indent=2) + "\n")  # JSON is YAML
        self.process = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self):
        return self.process.pid

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("WASM_HYPERVISOR_")}
        env.setdefault("RUST_LOG", "info")
        self.log = open(self.dir / "server.log", "wb")
        self.process = subprocess.Popen(
            [self.binary, "serve", "--config", str(self.config_file),
             "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.dir / "data")],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, env=env, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start: see {self.dir / 'server.log'}")
            try:
                if http_request(self.port, "GET", "/health", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become healthy within 60 s")

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def kill(self):
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait()
        self.log.close()

    def stop(self):
        """SIGTERM, then SIGKILL of its process group after 10 s."""
        if self.process is None:
            return
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
        self.kill()


class Postgres:
    """A PostgreSQL server in `workdir/pg`, on a unix socket there only (as
    tests/api/postgres.rs starts it): Debian's binaries, run as the `postgres` user
    when this runs as root (initdb refuses root)."""

    PORT = 5432  # names the socket file only: no TCP listener

    def __init__(self, workdir, diagnose=False):
        self.diagnose = diagnose
        versions = sorted((int(p.name), p / "bin") for p in Path("/usr/lib/postgresql").glob("*")
                          if p.name.isdigit() and (p / "bin" / "initdb").exists())
        if not versions:
            raise RuntimeError("row 9 needs PostgreSQL's server programs: apt-get install -y postgresql")
        self.bin = versions[-1][1]
        self.dir = Path(workdir) / "pg"
        self.dir.mkdir()
        self.root = os.geteuid() == 0
        if self.root:
            os.chmod(workdir, 0o711)
            subprocess.run(["chown", "-R", "postgres:postgres", str(self.dir)], check=True)
        self.started = False

    def command(self, program, *args):
        path = [str(self.bin / program), *args]
        return (["runuser", "-u", "postgres", "--"] + path) if self.root else path

    def start(self):
        subprocess.run(self.command("initdb", "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync",
                                    "-D", str(self.dir / "data")), check=True, capture_output=True)
        options = f"-k {self.dir} -p {self.PORT} -c listen_addresses='' -c fsync=off -c max_connections=200"
        if self.diagnose:
            options += " -c log_min_duration_statement=0 -c log_line_prefix='%m [%p] %a '"
        subprocess.run(self.command("pg_ctl", "-D", str(self.dir / "data"), "-o", options, "-l",
                                    str(self.dir / "postgres.log"), "-w", "-t", "60", "start"),
                       check=True, capture_output=True)
        self.started = True
        self.psql("postgres", "CREATE DATABASE round2")

    def url(self):
        return f"postgresql://postgres@/round2?host={self.dir}&port={self.PORT}"

    def psql(self, database, sql):
        out = subprocess.run(self.command("psql", "-h", str(self.dir), "-p", str(self.PORT), "-U", "postgres",
                                          "-d", database, "-tA", "-c", sql),
                             check=True, capture_output=True, timeout=30)
        return out.stdout.decode().strip()

    def sample_activity(self, samples, interval_s=0.005):
        """Starts sampling `pg_stat_activity` (`samples` times, every `interval_s`)
        into the table `activity_samples`; returns the `psql` process doing it."""
        self.psql("round2", "CREATE UNLOGGED TABLE activity_samples (sample int, at timestamptz, pid int, app text, "
                            "state text, wait_type text, wait_event text, query text)")
        sql = (f"DO $$ BEGIN FOR i IN 1..{samples} LOOP PERFORM pg_stat_clear_snapshot(); "
               "INSERT INTO activity_samples SELECT i, clock_timestamp(), pid, application_name, state, "
               "wait_event_type, wait_event, left(query, 80) FROM pg_stat_activity "
               "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND query NOT LIKE 'LISTEN%'; "
               f"PERFORM pg_sleep({interval_s}); END LOOP; END $$")
        return subprocess.Popen(self.command("psql", "-h", str(self.dir), "-p", str(self.PORT), "-U", "postgres",
                                             "-d", "round2", "-q", "-c", sql),
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def activity_summary(self):
        """What the sampled connections did: the most frequent (state, wait, statement)
        with their share of the samples, and the most connections seen waiting on the
        advisory lock at once. Every sample goes to `activity.tsv`."""
        statement = ("CASE WHEN query LIKE '%pg_advisory_xact_lock%' THEN 'issue lock' "
                     "WHEN query LIKE 'WITH live%' THEN 'insert if it fits' "
                     "WHEN query LIKE 'WITH holders%' THEN 'victims' "
                     "WHEN query LIKE 'WITH evicted%' THEN 'evict and insert' "
                     "WHEN query LIKE 'DELETE FROM sessions WHERE id%' THEN 'take' "
                     "ELSE left(regexp_replace(query, '\\s+', ' ', 'g'), 30) END")
        rows = self.psql("round2", f"SELECT state, coalesce(wait_event, 'cpu'), {statement}, count(*), "
                                   "round(100.0 * count(*) / sum(count(*)) OVER ()) FROM activity_samples "
                                   "WHERE state <> 'idle' GROUP BY 1, 2, 3 ORDER BY 4 DESC LIMIT 8")
        deepest = self.psql("round2", "SELECT coalesce(max(n), 0) FROM (SELECT count(*) AS n FROM activity_samples "
                                      "WHERE wait_event = 'advisory' GROUP BY sample) AS per_sample")
        dump = self.psql("round2", "COPY activity_samples TO STDOUT")
        (self.dir / "activity.tsv").write_text(dump + "\n")
        groups = [line.split("|") for line in rows.splitlines() if line]
        return (f"database connections at work (state, waiting on, statement: share of samples): "
                + "; ".join(f"{state}, {wait}, {what}: {share}%" for state, wait, what, _, share in groups)
                + f"; at most {deepest} waiting on the issue lock at once")

    def stop(self):
        if self.started:
            subprocess.run(self.command("pg_ctl", "-D", str(self.dir / "data"), "-m", "immediate", "-w", "stop"),
                           capture_output=True, timeout=60)
            self.started = False


# ---------------------------------------------------------------------------
# Clients


def make_client(url, source, wire="v1.1", timeout=HONEST_TIMEOUT, batch=32):
    """The Python client, its connections made from the loopback address `source`."""
    import urllib3
    from wasm_hypervisor import Client

    client = Client(url, wire=wire, timeout=timeout, batch=batch)
    client._http.pool = urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10.0, read=timeout),
        retries=urllib3.Retry(total=1, connect=1, read=0, redirect=0, status=0, other=0),
        source_address=(source, 0),
        maxsize=32,
    )
    return client


def describe_error(error):
    """A refusal as `STATUS code`; a failure to get an answer as what happened."""
    code = getattr(error, "code", None)
    status = getattr(error, "status", None)
    if code is not None:
        return f"{status} {code}"
    text = str(error)
    if "timed out" in text:
        return "no answer (client timeout)"
    if "Connection refused" in text:
        return "connection refused"
    if "RemoteDisconnected" in text or "Connection reset" in text or "Connection aborted" in text:
        return "connection closed without an answer"
    return f"{type(error).__name__}: {short(text, 60)}"


def short(text, length=70):
    text = (text or "").replace("\n", " ")
    return text if len(text) <= length else text[: length - 3] + "..."


def quick_result(plaintext):
    """(status, exit_code) of a result plaintext, JSON or CBOR, without decoding its
    large fields (the result's first keys come before them)."""
    if plaintext[:1] and 0xA0 <= plaintext[0] <= 0xBB:
        status = exit_code = None
        at = plaintext.find(b"\x66status")
        if at >= 0:
            head = plaintext[at + 7]
            if 0x60 <= head <= 0x77:
                status = plaintext[at + 8: at + 8 + head - 0x60].decode()
        at = plaintext.find(b"\x69exit_code")
        if at >= 0:
            head = plaintext[at + 10]
            if head <= 0x17:
                exit_code = head
            elif head in (0x18, 0x19, 0x1A):
                width = {0x18: 1, 0x19: 2, 0x1A: 4}[head]
                exit_code = int.from_bytes(plaintext[at + 11: at + 11 + width], "big")
        return status, exit_code
    head = plaintext[:4096]
    status = re.search(rb'"status":"([a-z_]+)"', head)
    exit_code = re.search(rb'"exit_code":(null|\d+)', head)
    return (status.group(1).decode() if status else None,
            None if not exit_code or exit_code.group(1) == b"null" else int(exit_code.group(1)))


def run_big(client, module, **kwargs):
    """Runs like `client.run` but keeps the answer's decoding to what says how it
    ended: (HTTP status, answer bytes, status, exit code). The client package's own
    `run` decodes the whole result (hundreds of MB here) several times over."""
    from wasm_hypervisor._blobs import build_spec
    from wasm_hypervisor._sealing import execute_answer

    spec = build_spec(module, kwargs.get("args", ()), None, b"", kwargs.get("limits"),
                      kwargs.get("mounts"), None)
    plaintext = client._encode(spec, set())
    sent, http_status, headers, data = client._pool.send(plaintext, asynchronous=False)
    size = len(data)
    if http_status != 200:
        return http_status, size, error_code(data), None
    answer = execute_answer(http_status, headers, data)
    del data
    result = sent.keys.open_result(answer["execution_id"], answer["ciphertext"])
    status, exit_code = quick_result(result)
    return http_status, size, status, exit_code


# ---------------------------------------------------------------------------
# The honest client and the memory sampler, in a process of their own


def monitor_main(url, pids, control, results):
    """Samples each pid's VmRSS and VmHWM every 20 ms, and runs the honest client
    (tiny.wasm every 0.1-0.3 s), until `control` is set; then puts its samples on
    `results`."""
    stop = control
    memory = {pid: [] for pid in pids}
    honest = []

    def sample():
        while not stop.is_set():
            now = time.monotonic()
            for pid in pids:
                try:
                    text = Path(f"/proc/{pid}/status").read_text()
                except OSError:
                    continue
                rss = int(re.search(r"VmRSS:\s+(\d+)", text).group(1))
                hwm = int(re.search(r"VmHWM:\s+(\d+)", text).group(1))
                memory[pid].append((now, rss, hwm))
            time.sleep(SAMPLE_SECONDS)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    module = tiny_module()
    client = make_client(url, HONEST_SOURCE)
    # The time each run spends opening a session batch (`POST /sessions`), the rest
    # being its `POST /execute`: which of the two a slow run waited on.
    opening = [0.0]
    open_batch = client._pool._open

    def timed_open():
        started = time.monotonic()
        try:
            return open_batch()
        finally:
            opening[0] += time.monotonic() - started

    client._pool._open = timed_open
    ready = False
    for _ in range(3):  # compiles tiny.wasm, opens the first batch of sessions
        try:
            client.run(module)
            ready = True
        except Exception:  # noqa: BLE001 - reported as not ready
            time.sleep(0.5)
    results.put(("ready", ready))
    while not stop.wait(random.uniform(0.1, 0.3)):
        started = time.monotonic()
        opening[0] = 0.0
        try:
            result = client.run(module)
            ok = result.status == "completed" and result.stdout == b"hello\n"
            error = None if ok else f"status {result.status}"
        except Exception as error_:  # noqa: BLE001 - every failure is counted
            ok, error = False, describe_error(error_).replace("client timeout", f"{HONEST_TIMEOUT:.0f} s")
        honest.append((started, time.monotonic() - started, ok, error, opening[0]))
    sampler.join()
    results.put(("done", {"memory": {str(pid): rows for pid, rows in memory.items()}, "honest": honest}))


class Monitor:
    def __init__(self, url, pids):
        context = multiprocessing.get_context("spawn")
        self.stop_event = context.Event()
        self.results = context.Queue()
        self.process = context.Process(target=monitor_main, args=(url, pids, self.stop_event, self.results),
                                       daemon=True)
        self.process.start()
        kind, ready = self.results.get(timeout=120)
        if not ready:
            raise RuntimeError("the honest client could not run tiny.wasm before the attack")

    def finish(self):
        self.stop_event.set()
        try:
            kind, data = self.results.get(timeout=HONEST_TIMEOUT + 30)
        except Exception:  # noqa: BLE001 - a monitor that does not answer is ended
            self.process.terminate()
            raise RuntimeError("the monitor did not report")
        self.process.join(timeout=10)
        return data


def summarize_memory(rows, attack_start, attack_end):
    """(baseline, peak, last) in KiB: the mean RSS of the second before the attack,
    the peak during it (VmHWM when it rose during it, else the highest RSS sample),
    and the last sample."""
    before = [rss for t, rss, _ in rows if attack_start - 1.0 <= t < attack_start] or \
        [rss for t, rss, _ in rows if t < attack_start][-1:]
    baseline = statistics.mean(before) if before else 0
    during = [(rss, hwm) for t, rss, hwm in rows if attack_start <= t <= attack_end]
    hwm_start = next((hwm for t, _, hwm in reversed(rows) if t < attack_start), 0)
    peak = max((rss for rss, _ in during), default=baseline)
    hwm_end = max((hwm for _, hwm in during), default=0)
    if hwm_end > hwm_start:
        peak = max(peak, hwm_end)
    last = rows[-1][1] if rows else 0
    return baseline, peak, last


def summarize_honest(samples, start, end):
    window = [s for s in samples if start <= s[0] + s[1] and s[0] <= end]
    latencies = [s[1] for s in window]
    failures = [s for s in window if not s[2]]
    reasons = collections.Counter(s[3] for s in failures)
    return {
        "runs": len(window),
        "worst_ms": max(latencies) * 1000 if latencies else None,
        "median_ms": statistics.median(latencies) * 1000 if latencies else None,
        "failures": len(failures),
        "reasons": ", ".join(f"{n}x {r}" for r, n in reasons.most_common(3)),
        # The three slowest: (seconds after `start` it began, latency, of it opening a batch).
        "slowest": [(s[0] - start, s[1], s[4]) for s in sorted(window, key=lambda s: -s[1])[:3]],
    }


# ---------------------------------------------------------------------------
# Forged tar archives


def tar_header(name, size, typeflag):
    """A ustar header block for `name` (at most 100 bytes) with its checksum."""
    header = bytearray(512)
    header[0:len(name)] = name
    header[100:108] = b"0000644\x00"
    header[108:116] = b"0000000\x00"
    header[116:124] = b"0000000\x00"
    header[124:136] = b"%011o\x00" % size
    header[136:148] = b"%011o\x00" % 0
    header[148:156] = b" " * 8
    header[156:157] = typeflag
    header[257:263] = b"ustar\x00"
    header[263:265] = b"00"
    header[148:156] = b"%06o\x00 " % sum(header)
    return bytes(header)


def padded(data):
    return data + bytes(-len(data) % 512)


def deep_archive(variant, members=600, depth=2040):
    """`members` empty regular files, each `depth` components deep under a first
    component of its own, named through GNU `L` long-name entries."""
    parts = []
    for index in range(members):
        name = f"{variant}{index}".encode() + b"/a" * (depth - 1)
        parts.append(tar_header(b"././@LongLink", len(name) + 1, b"L"))
        parts.append(padded(name + b"\x00"))
        parts.append(tar_header(name[:100], 0, b"0"))
    parts.append(bytes(1024))
    return b"".join(parts)


def pax_record(key, value):
    body = f" {key}={value}\n"
    length = len(body)
    while len(str(length)) + len(body) != length:
        length = len(str(length)) + len(body)
    return f"{length}{body}".encode()


def bad_pax_size_archive():
    record = pax_record("size", "abc")
    data = b"hello\n"
    return b"".join([
        tar_header(b"PaxHeaders/hello.txt", len(record), b"x"), padded(record),
        tar_header(b"hello.txt", len(data), b"0"), padded(data),
        bytes(1024),
    ])


# ---------------------------------------------------------------------------
# The rows


class Row:
    """What a row's attack gets: the servers, the binary, the temporary directory,
    and where it records its window (if not the whole attack) and results."""

    def __init__(self, name, binary, workdir, servers, postgres=None, diagnose=False):
        self.name, self.binary, self.workdir, self.diagnose = name, binary, workdir, diagnose
        self.servers, self.postgres = servers, postgres
        # The attack proper, if not the whole of it: (start, end) in time.monotonic().
        self.window = None
        # The window of the memory figure, if not `window`.
        self.memory_window = None
        # Other phases worth a figure in the note: (label, start, end).
        self.extra_windows = []
        self.metrics_token = None

    @property
    def server(self):
        return self.servers[0]

    def metric(self, name, server=None):
        """A gauge of /metrics (with the scraper token), or None if absent."""
        server = server or self.server
        try:
            status, _, body = http_request(server.port, "GET", "/metrics",
                                           headers={"Authorization": f"Bearer {self.metrics_token}"},
                                           source=OTHER_SOURCE, timeout=30)
        except OSError:
            return None
        if status != 200:
            return None
        match = re.search(rf"^wasm_hypervisor_{name}(?:\{{\}})? (\S+)$", body.decode(), re.M)
        return float(match.group(1)) if match else None

    def wait_async_idle(self, seconds):
        """Waits until no async execution is pending; returns the seconds it took."""
        started = time.monotonic()
        time.sleep(0.5)
        while time.monotonic() - started < seconds:
            pending = self.metric("async_executions_pending")
            if pending == 0:
                break
            time.sleep(0.5)
        return time.monotonic() - started


def row_idle(row):
    """No attack: what the honest client sees of this machine's own noise."""
    time.sleep(20)
    return {"attacker": "-", "timing": "20 s", "note": "the control: no attack"}


def row_1(row):
    from wasm_hypervisor import Mount

    archives = [deep_archive(chr(ord("a") + k)) for k in range(4)]
    client = make_client(row.server.url, ATTACKER_SOURCE, timeout=240)
    module = tiny_module()
    outcomes = {}

    def attack(k):
        started = time.monotonic()
        try:
            result = client.run(module, mounts=[Mount("/m", archives[k])])
            outcomes[k] = (f"{result.status}: {short(result.error, 100)}", time.monotonic() - started)
        except Exception as error:  # noqa: BLE001
            outcomes[k] = (describe_error(error), time.monotonic() - started)

    # One archive alone (the memory figure), then three at once (its
    # latency figure); the memory of the three is in the note.
    alone_start = time.monotonic()
    attack(3)
    alone_end = time.monotonic()
    time.sleep(1.0)
    three_start = time.monotonic()
    threads = [threading.Thread(target=attack, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    row.memory_window = (alone_start, alone_end + 0.5)
    row.extra_windows = [("three at once", three_start, time.monotonic())]
    statuses = collections.Counter(o[0] for o in outcomes.values())
    return {
        "attacker": "; ".join(f"{n}x {s}" for s, n in statuses.items()),
        "timing": f"alone: answer after {outcomes[3][1]:.2f} s; three at once: after "
        + ", ".join(f"{outcomes[k][1]:.2f}" for k in range(3)) + " s",
        "note": f"archive {len(archives[0]) / MiB:.2f} MiB (1,224,000 path components); memory is one archive's",
    }


def row_2(row):
    from wasm_hypervisor import Mount

    client = make_client(row.server.url, ATTACKER_SOURCE, timeout=240)
    module = wat("many_files.wat")
    from wasm_hypervisor._blobs import build_spec

    spec_size = len(client._encode(build_spec(module, ["100000"], None, b"", {"files_bytes": 0},
                                                   [Mount("/o", writable=True)], None), set()))
    started = time.monotonic()
    try:
        http_status, size, status, exit_code = run_big(client, module, args=["100000"],
                                                       limits={"files_bytes": 0},
                                                       mounts=[Mount("/o", writable=True)])
        got = f"{http_status} {status} (exit {exit_code}), answer {size / MiB:.0f} MiB"
    except Exception as error:  # noqa: BLE001
        got = describe_error(error)
    return {"attacker": got, "timing": f"answer after {time.monotonic() - started:.1f} s",
            "note": f"request plaintext {spec_size} bytes"}


def row_3(row, wire):
    from wasm_hypervisor import Mount

    client = make_client(row.server.url, ATTACKER_SOURCE, wire=wire, timeout=240)
    started = time.monotonic()
    try:
        http_status, size, status, exit_code = run_big(
            client, wat("writer.wat"), args=["file", str(256 * MiB), str(512 * KiB)],
            mounts=[Mount("/o", writable=True)])
        got = f"{http_status} {status} (exit {exit_code}), answer {size / MiB:.0f} MiB"
    except Exception as error:  # noqa: BLE001
        got = describe_error(error)
    return {"attacker": got, "timing": f"answer after {time.monotonic() - started:.1f} s", "note": ""}


def row_4(row):
    from wasm_hypervisor import Mount

    client = make_client(row.server.url, ATTACKER_SOURCE, wire="v1", timeout=120)
    module = wat("writer.wat")
    client.run(tiny_module())  # the key and a first session, so that the 8 leave together
    barrier = threading.Barrier(8)
    outcomes = [None] * 8

    def submit(k):
        barrier.wait(timeout=60)
        try:
            client.submit(module, args=["file", str(64 * MiB), str(512 * KiB)], mounts=[Mount("/o", writable=True)])
            outcomes[k] = "202"
        except Exception as error:  # noqa: BLE001
            outcomes[k] = describe_error(error)

    threads = [threading.Thread(target=submit, args=(k,)) for k in range(8)]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    submitted = time.monotonic() - started
    row.wait_async_idle(240)
    finished = time.monotonic() - started
    kept = row.metric("async_results_bytes")
    stored = row.metric("async_results_stored")
    other = make_client(row.server.url, OTHER_SOURCE, timeout=60)
    try:
        other.submit(tiny_module())
        other_got = "202"
    except Exception as error:  # noqa: BLE001
        other_got = describe_error(error)
    counts = collections.Counter(outcomes)
    return {
        "attacker": "; ".join(f"{n}x {s}" for s, n in counts.items()) + f"; another client's async job: {other_got}",
        "timing": f"submitted in {submitted:.1f} s, all finished after {finished:.1f} s",
        "note": (f"kept: {stored:.0f} answers, {kept / 1e6:.0f} MB" if kept is not None and stored is not None
                 else "kept bytes: gauge absent"),
    }


def row_5(row):
    from wasm_hypervisor import Mount

    client = make_client(row.server.url, ATTACKER_SOURCE, timeout=120)
    job = client.submit(wat("writer.wat"), args=["file", str(64 * MiB), str(512 * KiB)],
                        mounts=[Mount("/o", writable=True)])
    row.wait_async_idle(120)
    kept = row.metric("async_results_bytes")
    # The window starts with the GETs: the job itself is not what this row measures.
    window_start = time.monotonic()
    sockets, statuses = [], []
    request = f"GET {job.location} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
    for _ in range(24):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.bind((ATTACKER_SOURCE, 0))
        sock.settimeout(30)
        try:
            sock.connect(("127.0.0.1", row.server.port))
            sock.sendall(request)
            sockets.append(sock)
        except OSError as error:
            statuses.append(f"connect: {error.strerror}")
            sock.close()
    for sock in sockets:
        # The status lines may come slowly (each GET encodes the whole answer
        # first): all of them within 60 s of the first GET.
        sock.settimeout(max(0.05, window_start + 60 - time.monotonic()))
        try:
            line = sock.recv(16).split(b"\r\n")[0].decode(errors="replace")
            statuses.append(line.split(" ", 1)[1] if " " in line else line or "closed")
        except OSError as error:
            statuses.append(f"recv: {error.strerror or error}")
    time.sleep(max(0.0, 12 - (time.monotonic() - window_start)))
    for sock in sockets:
        sock.close()
    row.window = (window_start, time.monotonic())
    counts = collections.Counter(statuses)
    return {
        "attacker": "; ".join(f"{n}x {s}" for s, n in counts.items()),
        "timing": f"24 GETs held {time.monotonic() - window_start:.1f} s",
        "note": f"kept answer {kept / MiB:.1f} MiB" if kept is not None else "",
    }


def flood_worker(url, source, worker, requests, blob_size, per_second, deadline_s, results):
    """Sends `requests` requests, each with 17 distinct blobs of `blob_size` bytes (a
    module and 16 archives), at most `per_second` a second (under the per-client
    request rate, whose burst covers the session batches)."""
    from wasm_hypervisor import Mount

    client = make_client(url, source, timeout=60, batch=64)
    statuses = collections.Counter()
    deadline = time.monotonic() + deadline_s
    started = time.monotonic()
    sent = 0
    filler = bytes(max(0, blob_size - 10))
    for index in range(requests):
        if time.monotonic() > deadline:
            statuses["not sent: past the row's bound"] += requests - index
            break
        wait = started + index / per_second - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        blobs = [bytes([worker, slot]) + index.to_bytes(8, "big") + filler for slot in range(17)]
        try:
            result = client.run(blobs[0], mounts=[Mount(f"/m{k}", blobs[k + 1]) for k in range(16)])
            statuses[result.status] += 1
            sent += 1
        except Exception as error:  # noqa: BLE001
            statuses[describe_error(error)] += 1
    results.put((sent, dict(statuses)))


def flood(row, blobs, blob_size, deadline_s, workers=6, per_second=90):
    """`blobs` distinct blobs of `blob_size` bytes from `workers` processes, each on
    its own loopback address; returns (blobs sent, statuses, seconds)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    requests = -(-blobs // 17)
    share = [requests // workers + (1 if w < requests % workers else 0) for w in range(workers)]
    processes = [context.Process(target=flood_worker, args=(row.server.url, f"127.0.1.{w + 1}", w, share[w],
                                                            blob_size, per_second, deadline_s, results))
                 for w in range(workers)]
    started = time.monotonic()
    for process in processes:
        process.start()
    sent, statuses = 0, collections.Counter()
    received, deadline = 0, started + deadline_s + 90
    while received < workers and time.monotonic() < deadline:
        try:
            count, counts = results.get(timeout=1)
        except queue.Empty:
            if not any(process.is_alive() for process in processes):
                statuses["a worker died"] += workers - received
                break
            continue
        received += 1
        sent += count
        statuses.update(counts)
    for process in processes:
        process.join(timeout=10)
        if process.is_alive():
            process.terminate()
    return sent * 17, statuses, time.monotonic() - started


def row_6(row):
    before = row.metric("blob_store_bytes") or 0
    sent, statuses, seconds = flood(row, 312_000, 10, deadline_s=240)
    time.sleep(1)
    stored = row.metric("blob_store_bytes")
    return {
        "attacker": "; ".join(f"{n}x {s}" for s, n in statuses.most_common(3)),
        "timing": f"{sent:,} blobs in {seconds:.0f} s",
        "note": (f"charged {((stored or 0) - before):,.0f} bytes" if stored is not None else ""),
        "per_blob": sent,
    }


def row_7(row):
    from wasm_hypervisor import Mount  # noqa: F401 - the flood's workers use it

    # Up to the budget less 20 requests' worth, so that the filling itself evicts
    # nothing and the 100 MiB module evicts about 100,000 blobs.
    fill = 512 * MiB // KiB - 20 * 17
    sent, statuses, fill_seconds = flood(row, fill, KiB, deadline_s=300)
    fill_end = time.monotonic()
    stored = row.metric("blob_store_bytes")
    module = with_custom_section(tiny_module(), 100 * MiB)
    client = make_client(row.server.url, ATTACKER_SOURCE, timeout=BIG_MODULE_TIMEOUT)
    time.sleep(1)
    big_start = time.monotonic()
    try:
        result = client.run(module)
        got = f"{result.status} {result.stdout!r}"
    except Exception as error:  # noqa: BLE001
        got = describe_error(error).replace("client timeout", f"{BIG_MODULE_TIMEOUT:.0f} s")
    big_end = time.monotonic()
    row.window = (big_start, big_end)
    row.extra_windows = [("while filling", fill_end - fill_seconds, fill_end)]
    return {
        "attacker": f"100 MiB module: {got}; filling: " + "; ".join(f"{n}x {s}" for s, n in statuses.most_common(2)),
        "timing": f"100 MiB answer after {big_end - big_start:.1f} s; {sent:,} blobs filled in {fill_seconds:.0f} s",
        "note": f"store held {stored / MiB:.0f} MiB before the module" if stored is not None else "",
    }


def children_of(pid):
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if parent == pid:
                found.append((int(entry.name), (entry / "cmdline").read_bytes()))
        except (OSError, ValueError, IndexError):
            continue
    return found


def row_8(row):
    module = slow_to_compile_module()
    client = make_client(row.server.url, ATTACKER_SOURCE, timeout=240)
    outcome = {}

    def first():
        started = time.monotonic()
        try:
            result = client.run(module)
            outcome["first"] = f"{result.status}: {short(result.error, 90)}"
        except Exception as error:  # noqa: BLE001
            outcome["first"] = describe_error(error)
        outcome["first_s"] = time.monotonic() - started

    thread = threading.Thread(target=first)
    started = time.monotonic()
    thread.start()
    killed = None
    while thread.is_alive() and time.monotonic() - started < 60 and killed is None:
        workers = [pid for pid, cmdline in children_of(row.server.pid) if b"compile-worker" in cmdline]
        if workers:
            time.sleep(0.1)
            for pid in workers:
                try:
                    os.kill(pid, signal.SIGKILL)
                    killed = time.monotonic() - started
                except ProcessLookupError:
                    pass
        time.sleep(0.005)
    thread.join(timeout=180)
    second_started = time.monotonic()
    try:
        result = client.run(module)
        second = f"{result.status}: {short(result.error, 90)}"
    except Exception as error:  # noqa: BLE001
        second = describe_error(error)
    second_s = time.monotonic() - second_started
    return {
        "attacker": f"killed: {outcome.get('first')}; again: {second}",
        "timing": (f"worker killed at {killed:.2f} s" if killed is not None else "no worker seen")
        + f", first answer after {outcome.get('first_s', 0):.1f} s, second after {second_s:.1f} s",
        "note": f"module {len(module) / MiB:.1f} MiB",
    }


def row_9(row):
    replicas = row.servers
    barrier = threading.Barrier(160)
    statuses = [None] * 160
    finished = [0.0] * 160
    body = json.dumps({"count": 64}).encode()

    def batch(i):
        port = replicas[i % 2].port
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60, source_address=(ATTACKER_SOURCE, 0))
        try:
            connection.connect()
            barrier.wait(timeout=60)
            connection.request("POST", "/sessions", body=body, headers={
                "Content-Type": "application/json", "X-Forwarded-For": f"127.77.0.{i + 1}"})
            response = connection.getresponse()
            data = response.read()
            statuses[i] = str(response.status) if response.status == 201 else f"{response.status} {error_code(data)}"
        except Exception as error:  # noqa: BLE001
            statuses[i] = describe_error(error)
        finally:
            finished[i] = time.monotonic()
            connection.close()

    sampler = row.postgres.sample_activity(600) if row.diagnose else None
    threads = [threading.Thread(target=batch, args=(i,)) for i in range(160)]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    for thread in threads:
        thread.join(timeout=90)
    burst = max(finished) - started
    if sampler is not None:
        sampler.wait(timeout=60)
    pending = row.postgres.psql("round2", "SELECT count(*) FROM sessions")
    refused, reasons = 0, collections.Counter()
    probe_start = time.monotonic()
    for attempt in range(35):
        target = probe_start + attempt * 60 / 35
        time.sleep(max(0.0, target - time.monotonic()))
        try:
            status, _, data = http_request(replicas[attempt % 2].port, "POST", "/sessions",
                                           headers={"X-Forwarded-For": "127.78.0.1"})
            if status != 201:
                refused += 1
                reasons[f"{status} {error_code(data)}"] += 1
        except OSError as error:
            refused += 1
            reasons[f"connection: {error}"] += 1
    counts = collections.Counter(statuses)
    return {
        "attacker": "batches: " + "; ".join(f"{n}x {s}" for s, n in counts.most_common()),
        "timing": f"160 batches answered within {burst:.2f} s; probe {time.monotonic() - probe_start:.0f} s",
        "note": f"{int(pending):,} sessions pending after the burst (the honest client's included); a fresh client refused {refused} of 35"
        + (f" ({', '.join(f'{n}x {r}' for r, n in reasons.items())})" if reasons else "")
        + (f"; {row.postgres.activity_summary()}" if sampler is not None else ""),
    }


def row_10(row):
    from wasm_hypervisor import Mount

    client = make_client(row.server.url, ATTACKER_SOURCE, timeout=60)
    started = time.monotonic()
    try:
        result = client.run(tiny_module(), mounts=[Mount("/m", bad_pax_size_archive())])
        got = f"{result.status}" + (f": {short(result.error, 60)}" if result.error else "")
    except Exception as error:  # noqa: BLE001
        got = describe_error(error)
    return {"attacker": got, "timing": f"answer after {time.monotonic() - started:.2f} s", "note": ""}


def row_write(row):
    from wasm_hypervisor import Mount

    client = make_client(row.server.url, ATTACKER_SOURCE, timeout=60)
    module = wat("writer.wat")
    started = time.monotonic()
    parts = []
    try:
        result = client.run(module, args=["stdout", str(4 * MiB), str(4 * MiB)])
        parts.append(f"stdout: {result.status} exit {result.exit_code}, {len(result.stdout):,} bytes back"
                     + (" (truncated)" if result.stdout_truncated else ""))
    except Exception as error:  # noqa: BLE001
        parts.append(f"stdout: {describe_error(error)}")
    try:
        result = client.run(module, args=["file", str(4 * MiB), str(4 * MiB)], mounts=[Mount("/o", writable=True)])
        files = result.mounts_out[0].files() if result.mounts_out else {}
        parts.append(f"file: {result.status} exit {result.exit_code}, {len(files.get('f', b'')):,} bytes in /o/f")
    except Exception as error:  # noqa: BLE001
        parts.append(f"file: {describe_error(error)}")
    return {"attacker": "; ".join(parts), "timing": f"{time.monotonic() - started:.2f} s", "note": ""}


ATTACKS = {
    "idle": row_idle, "1": row_1, "2": row_2, "3j": lambda row: row_3(row, "v1"), "3c": lambda row: row_3(row, "v1.1"),
    "4": row_4, "5": row_5, "6": row_6, "7": row_7, "8": row_8, "9": row_9, "10": row_10, "write": row_write,
}


# ---------------------------------------------------------------------------
# Running a row


def run_row(name, binary, keep, diagnose=False):
    workdir = Path(tempfile.mkdtemp(prefix=f"round2-{name}-"))
    metrics_token = secrets.token_urlsafe(32)
    config = {"auth": {"metrics_tokens_sha256": [hashlib.sha256(metrics_token.encode()).hexdigest()]}}
    servers, postgres, monitor = [], None, None
    killed_by_watchdog = threading.Event()

    def watchdog():
        killed_by_watchdog.set()
        for server in servers:
            server.kill()

    timer = threading.Timer(BOUNDS[name], watchdog)
    timer.daemon = True
    timer.start()
    summary = {"row": name, "title": TITLES[name]}
    try:
        if name == "9":
            postgres = Postgres(workdir, diagnose)
            postgres.start()
            config = dict(config, cluster={"database_url": postgres.url()},
                          clients={"trusted_proxies": ["127.0.0.1/32"]},
                          signing_key_file=str(workdir / "signing_key.pem"))
            servers = [Server(binary, workdir, f"replica{k}", config) for k in (1, 2)]
        else:
            servers = [Server(binary, workdir, "server", config)]
        for server in servers:
            server.start()
        monitor = Monitor(servers[0].url, [s.pid for s in servers])
        time.sleep(2.0)  # the baseline: the honest client alone
        row = Row(name, binary, workdir, servers, postgres, diagnose)
        row.metrics_token = metrics_token
        attack_start = time.monotonic()
        try:
            summary.update(ATTACKS[name](row))
        except Exception as error:  # noqa: BLE001 - a row that breaks still reports
            summary.update({"attacker": f"attack failed: {describe_error(error)}", "timing": "", "note": ""})
        attack_end = time.monotonic()
        time.sleep(1.0)
        window = row.window or (attack_start, attack_end)
        memory_window = row.memory_window or window
        alive = all(server.alive() for server in servers)
        data = monitor.finish()
        monitor = None

        def memory(start, end):
            """(growth, retained, per-server detail) over the servers, in KiB."""
            growth, retained, details = 0, 0, []
            for server in servers:
                rows = data["memory"][str(server.pid)]
                baseline, peak, last = summarize_memory(rows, start, end)
                growth += peak - baseline
                retained += last - baseline
                details.append(f"{server.name} {baseline / 1024:.0f} -> peak {peak / 1024:.0f} MiB")
            return growth, retained, details

        growth, retained, details = memory(memory_window[0], memory_window[1] + 1.0)
        summary["memory_mib"] = growth / 1024
        summary["memory_detail"] = "; ".join(details)
        summary["honest"] = summarize_honest(data["honest"], window[0], window[1] + 1.0)
        if name == "9":
            summary["note"] = (summary.get("note", "") + "; honest slowest: " + ", ".join(
                f"{latency * 1000:,.0f} ms at +{at:.2f} s ({opening * 1000:,.0f} ms of it opening a session batch)"
                for at, latency, opening in summary["honest"]["slowest"])).lstrip("; ")
        for label, start, end in row.extra_windows:
            extra_growth, _, _ = memory(start, end + 1.0)
            extra = summarize_honest(data["honest"], start, end + 1.0)
            summary["note"] = (summary.get("note", "") + f"; {label}: memory {extra_growth / 1024:+,.0f} MiB, honest "
                               f"worst {fmt_ms(extra['worst_ms'])}, {extra['failures']} failed of {extra['runs']}"
                               ).lstrip("; ")
        if name == "6" and summary.get("per_blob"):
            summary["note"] = (f"{retained * 1024 / summary['per_blob']:.0f} bytes of RSS retained per blob; "
                               + summary.get("note", "")).rstrip("; ")
        if not alive:
            summary["note"] = (summary.get("note", "") + "; a server DIED during the row").lstrip("; ")
        if killed_by_watchdog.is_set():
            summary["note"] = (summary.get("note", "") + f"; stopped by the watchdog at {BOUNDS[name]} s").lstrip("; ")
    except Exception as error:  # noqa: BLE001 - reported in the row's line
        summary.setdefault("attacker", "")
        summary["note"] = (summary.get("note", "") + f"; row failed: {describe_error(error)}").lstrip("; ")
    finally:
        timer.cancel()
        if monitor is not None:
            monitor.process.terminate()
        for server in servers:
            server.stop()
        if postgres is not None:
            postgres.stop()
        if keep:
            summary["kept"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return summary


def fmt_ms(value):
    return "-" if value is None else f"{value:,.0f} ms"


def summary_line(s):
    honest = s.get("honest") or {}
    memory = s.get("memory_mib")
    line = (f"row {s['row']} | attacker got: {s.get('attacker', '')} | memory "
            + ("-" if memory is None else f"{memory:+,.0f} MiB")
            + f" | honest worst {fmt_ms(honest.get('worst_ms'))}, median {fmt_ms(honest.get('median_ms'))}, "
            f"{honest.get('failures', '-')} failed of {honest.get('runs', '-')}"
            + (f" ({honest['reasons']})" if honest.get("reasons") else "")
            + f" | attack: {s.get('timing', '')}")
    if s.get("note"):
        line += f" | {s['note']}"
    if s.get("memory_detail"):
        line += f" | {s['memory_detail']}"
    if s.get("kept"):
        line += f" | kept {s['kept']}"
    return line


def markdown_table(summaries):
    lines = ["| row | attack | attacker got | server memory growth | honest worst / median | honest failed | attack timing | note |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for s in summaries:
        honest = s.get("honest") or {}
        memory = s.get("memory_mib")
        cells = [s["row"], s["title"], s.get("attacker", ""),
                 "-" if memory is None else f"{memory:+,.0f} MiB",
                 f"{fmt_ms(honest.get('worst_ms'))} / {fmt_ms(honest.get('median_ms'))}",
                 f"{honest.get('failures', '-')} of {honest.get('runs', '-')}"
                 + (f" ({honest['reasons']})" if honest.get("reasons") else ""),
                 s.get("timing", ""), s.get("note", "")]
        lines.append("| " + " | ".join(str(c).replace("|", "/") for c in cells) + " |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("row", choices=ROWS + ["3", "all"])
    parser.add_argument("--bin", required=True, help="the wasm-hypervisor binary to attack")
    parser.add_argument("--keep", action="store_true", help="keep each row's temporary directory")
    parser.add_argument("--diagnose", action="store_true",
                        help="row 9: log PostgreSQL's statements and sample pg_stat_activity (module doc)")
    args = parser.parse_args()
    binary = str(Path(args.bin).resolve())
    if not os.access(binary, os.X_OK):
        parser.error(f"{binary} is not an executable")
    rows = ROWS if args.row == "all" else ["3j", "3c"] if args.row == "3" else [args.row]
    summaries = []
    for name in rows:
        summary = run_row(name, binary, args.keep, args.diagnose)
        summaries.append(summary)
        print(summary_line(summary), flush=True)
    if len(summaries) > 1:
        print()
        print(markdown_table(summaries))


if __name__ == "__main__":
    ensure_venv()
    main()
