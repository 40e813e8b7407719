#!/usr/bin/env python3
"""A mirror reading a server's log as C2SP tlog-tiles, as fast as it can, for
measuring what serving tiles costs the server (BENCHMARKS.md, "Transparency: a
mirror reading the tiles"):

    tools/bench/tlog-mirror.py http://127.0.0.1:8080 --duration 20 [--interval 1]

Each round it fetches `/tlog/checkpoint`, then every tile of that tree it does not
have yet (full tiles once; the right-most partial tile of each level and the last
entry bundle again whenever the tree grew), as a mirror copying `/tlog/` to static
storage does, then waits `--interval` seconds (0: none, a mirror as greedy as it
can be). It prints the rounds, tiles and bytes it read. Standard library only.
"""

import argparse
import time
import urllib.error
import urllib.request

WIDTH = 256


def index_path(n):
    """`N` in 3-digit groups, all but the last prefixed with `x` (tlog-tiles)."""
    groups = []
    while True:
        groups.append(f"{n % 1000:03d}")
        n //= 1000
        if n == 0:
            break
    groups.reverse()
    return "/".join(["x" + g for g in groups[:-1]] + [groups[-1]])


def tile_paths(size):
    """Every tile of the tree of `size` leaves: hash tiles, then entry bundles."""
    paths = []
    level, items = 0, size
    while items > 0:
        paths += level_paths(str(level), items)
        level, items = level + 1, items >> 8
    return paths + level_paths("entries", size)


def level_paths(level, items):
    full, partial = divmod(items, WIDTH)
    paths = [f"tile/{level}/{index_path(n)}" for n in range(full)]
    if partial:
        paths.append(f"tile/{level}/{index_path(full)}.p/{partial}")
    return paths


def get(url):
    """The body at `url`, after waiting out any 429's `Retry-After` (a server's
    `clients.requests_per_second` applies to mirrors too)."""
    while True:
        try:
            with urllib.request.urlopen(url, timeout=10) as answer:
                return answer.read()
        except urllib.error.HTTPError as error:
            if error.code != 429:
                raise
            time.sleep(float(error.headers.get("Retry-After", "1")))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("server")
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    base = args.server.rstrip("/") + "/tlog/"
    have = set()
    rounds = tiles = read = 0
    end = time.monotonic() + args.duration
    while time.monotonic() < end:
        size = int(get(base + "checkpoint").decode().split("\n")[1])
        for path in tile_paths(size):
            if path in have:
                continue
            read += len(get(base + path))
            tiles += 1
            have.add(path)
        rounds += 1
        time.sleep(args.interval)
    print(f"mirror: {rounds} rounds, {tiles} tiles, {read} bytes in {args.duration:.0f} s")


if __name__ == "__main__":
    main()
