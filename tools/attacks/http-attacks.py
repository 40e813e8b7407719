#!/usr/bin/env python3
"""Runs one of the HTTP-layer attacks of issue 12 against a server on loopback and
prints what a well-behaved client saw meanwhile. Standard library only.

    tools/attacks/http-attacks.py pipeline  --server 127.0.0.1:8080 [--sockets 16]
    tools/attacks/http-attacks.py idle      --server 127.0.0.1:8080 [--sockets 4096]
    tools/attacks/http-attacks.py one-address --server 127.0.0.1:8080 [--sockets 200]
    tools/attacks/http-attacks.py oversize  --server 127.0.0.1:8080
    tools/attacks/http-attacks.py uppercase --server 127.0.0.1:8080

Every attack is bounded in time (--seconds) and count, and only ever targets the
loopback address it is given. The attackers use 127.0.0.1 (and, for `idle`, many
addresses of 127.0.0.0/8); the well-behaved client uses 127.0.0.200.
"""

import argparse
import json
import selectors
import socket
import threading
import time

HEALTH = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
# Within the per-client rate's burst (200), unlike /health's (20).
KEYS = b"GET /keys HTTP/1.1\r\nHost: x\r\n\r\n"
HONEST_SOURCE = "127.0.0.200"


def connect(server, source="127.0.0.1", recv_buffer=None, blocking=True):
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if recv_buffer:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv_buffer)
    sock.bind((source, 0))
    sock.settimeout(60)
    sock.connect(server)
    sock.setblocking(blocking)
    return sock


def read_response(sock):
    """One response with a Content-Length: (status, head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a whole response")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    head = head.decode("latin-1").lower()
    length = 0
    for line in head.split("\r\n"):
        if line.startswith("content-length:"):
            length = int(line.split(":", 1)[1])
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed in the middle of a body")
        body += chunk
    return int(head.split(" ")[1]), head, body[:length]


def honest_probe(server, path=b"/health"):
    """Seconds a fresh client waits for an answer, and its status."""
    started = time.monotonic()
    sock = connect(server, HONEST_SOURCE)
    sock.sendall(b"GET " + path + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    status, _, _ = read_response(sock)
    sock.close()
    return time.monotonic() - started, status


def probe_while(server, attack_running, seconds):
    """Probes once a second while the attack runs; returns (worst wait, statuses)."""
    worst, statuses = 0.0, []
    deadline = time.monotonic() + seconds
    while attack_running() and time.monotonic() < deadline:
        waited, status = honest_probe(server)
        worst = max(worst, waited)
        statuses.append(status)
        print(f"  honest client: {status} after {waited * 1000:.1f} ms", flush=True)
        time.sleep(1)
    return worst, statuses


def pipeline(server, sockets, seconds):
    """Sockets that pipeline GET /health and never read an answer."""
    lifetimes = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def attacker():
        sock = connect(server, recv_buffer=4096)
        opened = time.monotonic()
        burst = HEALTH * 64
        try:
            while time.monotonic() < stop:
                sock.sendall(burst)
            outcome = "still open at the end"
        except OSError as error:
            outcome = f"closed by the server ({error.__class__.__name__})"
        with lock:
            lifetimes.append((time.monotonic() - opened, outcome))
        sock.close()

    threads = [threading.Thread(target=attacker, daemon=True) for _ in range(sockets)]
    for thread in threads:
        thread.start()
    time.sleep(0.5)
    worst, statuses = probe_while(server, lambda: any(t.is_alive() for t in threads), seconds)
    for thread in threads:
        thread.join(seconds + 5)
    closed = [life for life, outcome in lifetimes if outcome.startswith("closed")]
    print(f"attackers: {sockets}; closed by the server: {len(closed)}, "
          f"after {min(closed, default=0):.1f} to {max(closed, default=0):.1f} s; "
          f"still open: {sockets - len(closed)}")
    print(f"honest client: worst wait {worst * 1000:.1f} ms, statuses {sorted(set(statuses))}")


def idle(server, sockets, seconds):
    """Idle keep-alive connections from many addresses, re-opened as they close."""
    selector = selectors.DefaultSelector()
    # 64 connections per address, the default per-address cap.
    sources = [f"127.0.{1 + n // 64 // 250}.{1 + (n // 64) % 250}" for n in range(sockets)]
    running = True
    counts = {"opened": 0, "closed_by_server": 0}

    def open_one(source):
        sock = connect(server, source)
        sock.sendall(HEALTH)
        read_response(sock)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ, source)
        counts["opened"] += 1

    for source in sources:
        open_one(source)
    print(f"opened {sockets} idle connections", flush=True)

    def reopen():
        while running:
            for key, _ in selector.select(timeout=0.2):
                sock, source = key.fileobj, key.data
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if not data:
                    selector.unregister(sock)
                    sock.close()
                    counts["closed_by_server"] += 1
                    try:
                        open_one(source)
                    except OSError:
                        pass

    thread = threading.Thread(target=reopen, daemon=True)
    thread.start()
    worst, statuses = probe_while(server, lambda: True, seconds)
    running = False
    thread.join()
    print(f"idle connections opened {counts['opened']}, closed by the server "
          f"{counts['closed_by_server']} (each re-opened at once)")
    print(f"honest client: worst wait {worst * 1000:.1f} ms, statuses {sorted(set(statuses))}")


def one_address(server, sockets, seconds):
    """Many connections from one address, each kept open after a request."""
    served, refused, held = 0, 0, []
    for _ in range(sockets):
        sock = connect(server)
        sock.sendall(KEYS)
        try:
            status, _, body = read_response(sock)
        except OSError:
            status, body = None, b""
        if status == 200:
            served += 1
            held.append(sock)
            continue
        if status == 429 and b"too_many_connections" in body:
            refused += 1
        else:
            print(f"  unexpected: {status} {body[:100]!r}")
        sock.close()
    print(f"one address, {sockets} connections: {served} served and held open, "
          f"{refused} answered 429 too_many_connections")
    worst, statuses = probe_while(server, lambda: True, min(seconds, 3))
    print(f"honest client: worst wait {worst * 1000:.1f} ms, statuses {sorted(set(statuses))}")
    for sock in held:
        sock.close()


def oversize(server, seconds):
    """A body announced at 100,000,000 bytes, of which a few are sent."""
    sock = connect(server)
    started = time.monotonic()
    sock.sendall(b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: 100000000\r\n\r\n{\"session_id\"")
    sock.settimeout(seconds)
    status, head, body = read_response(sock)
    answered = time.monotonic() - started
    closed = sock.recv(1) == b""
    print(f"announced 100000000 bytes: {status} {json.loads(body)['error']['code']} after "
          f"{answered * 1000:.1f} ms; connection: close sent: {'connection: close' in head}; "
          f"closed by the server: {closed}")
    waited, status = honest_probe(server)
    print(f"honest client: {status} after {waited * 1000:.1f} ms")


def uppercase(server, seconds):
    """Ids in upper case: a session id in /execute, an execution id in /verify."""
    sock = connect(server)
    sock.sendall(b"POST /sessions HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    _, _, body = read_response(sock)
    session_id = json.loads(body)["session_id"]
    execute = json.dumps({"session_id": session_id.upper(), "enc": "", "ciphertext": ""}).encode()
    sock.sendall(b"POST /execute HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: " + str(len(execute)).encode() + b"\r\n\r\n" + execute)
    status, _, body = read_response(sock)
    print(f"/execute with session_id {session_id.upper()}: {status} {json.loads(body)['error']['code']}")
    path = "/verify/" + "1B4E28BA-2FA1-41D2-883F-0016D3CCA427"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    status, _, body = read_response(sock)
    print(f"GET {path}: {status} {json.loads(body)['error']['code']}")
    sock.close()
    waited, status = honest_probe(server)
    print(f"honest client: {status} after {waited * 1000:.1f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("attack", choices=["pipeline", "idle", "one-address", "oversize", "uppercase"])
    parser.add_argument("--server", default="127.0.0.1:8080")
    parser.add_argument("--sockets", type=int)
    parser.add_argument("--seconds", type=float, default=20)
    args = parser.parse_args()
    host, port = args.server.rsplit(":", 1)
    if not host.startswith("127."):
        parser.error("only a server on loopback (127.0.0.0/8) may be attacked")
    server = (host, int(port))
    if args.attack == "pipeline":
        pipeline(server, args.sockets or 16, args.seconds)
    elif args.attack == "idle":
        idle(server, args.sockets or 4096, args.seconds)
    elif args.attack == "one-address":
        one_address(server, args.sockets or 200, args.seconds)
    elif args.attack == "oversize":
        oversize(server, args.seconds)
    else:
        uppercase(server, args.seconds)


if __name__ == "__main__":
    main()
