"""A real `wasm-hypervisor serve` process for the tests, on a free loopback port
with a temporary data directory, configured through WASM_HYPERVISOR_* variables.

The binary is $WASM_HYPERVISOR_BIN, else <repo>/target/debug/wasm-hypervisor
(what `cargo test` builds)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
EXAMPLES = REPO / "examples"
BINARY = Path(os.environ.get("WASM_HYPERVISOR_BIN", REPO / "target" / "debug" / "wasm-hypervisor"))
START_TIMEOUT_S = 60.0

# Loose per-client limits: the whole suite is one client (127.0.0.1).
BASE_CONFIG = {
    "WASM_HYPERVISOR_CLIENTS__REQUESTS_PER_SECOND": "10000",
    "WASM_HYPERVISOR_CLIENTS__BURST": "10000",
    # Every test makes its own Client, each pooling a batch of sessions.
    "WASM_HYPERVISOR_SESSIONS__MAX_PENDING_PER_CLIENT": "0",
    "WASM_HYPERVISOR_DATA_DIR_MIN_FREE_BYTES": "0",
    "WASM_HYPERVISOR_SHUTDOWN_GRACE_SECS": "5",
}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    """One server process; `restart()` keeps its port and data directory (so its key)."""

    def __init__(self, data_dir: Path, config: Optional[Dict[str, str]] = None) -> None:
        if not BINARY.is_file():
            raise RuntimeError(f"no server binary at {BINARY}: build it (cargo build) or set WASM_HYPERVISOR_BIN")
        self.data_dir = data_dir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("WASM_HYPERVISOR_")}
        self.env.update(BASE_CONFIG)
        self.env.update(config or {})
        self.log_path = data_dir.parent / f"server-{self.port}.log"
        self.process: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        log = open(self.log_path, "ab")
        self.process = subprocess.Popen(
            [str(BINARY), "serve", "--listen", f"127.0.0.1:{self.port}", "--data-dir", str(self.data_dir)],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited at start:\n{self.log_path.read_text()}")
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the server did not answer /health in {START_TIMEOUT_S} s")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def key_id(self) -> str:
        with urllib.request.urlopen(self.url + "/keys", timeout=5) as response:
            return str(json.load(response)["key_id"])


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server shared by the tests that do not care about its state."""
    server = Server(tmp_path_factory.mktemp("server") / "data")
    yield server
    server.stop()


@pytest.fixture
def make_server(tmp_path: Path) -> Iterator:
    """A fresh server of the test's own, with extra configuration."""
    started = []

    def make(**config: str) -> Server:
        server = Server(tmp_path / f"data{len(started)}", config)
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def examples() -> Path:
    return EXAMPLES
