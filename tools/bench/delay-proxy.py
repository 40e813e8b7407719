#!/usr/bin/env python3
"""A TCP proxy that delays every byte by a fixed time in each direction: a distant
client on one machine, for measuring round trips (BENCHMARKS.md, issue 15).

    python3 tools/bench/delay-proxy.py --listen 127.0.0.1:18081 --to 127.0.0.1:8080 --delay-ms 20

Each direction is a delay line: what is read at time t is written at t + delay, in
order, so the delay adds latency without limiting throughput (a 20 ms proxy adds
40 ms to every request/response round trip). Standard library only.
"""

import argparse
import asyncio
import time


async def delay_line(reader, writer, delay):
    queue = asyncio.Queue()

    async def pump_in():
        while True:
            data = await reader.read(1 << 16)
            await queue.put((time.monotonic() + delay, data))
            if not data:
                return

    async def pump_out():
        while True:
            due, data = await queue.get()
            wait = due - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            if not data:
                if writer.can_write_eof():
                    writer.write_eof()
                return
            writer.write(data)
            await writer.drain()

    try:
        await asyncio.gather(pump_in(), pump_out())
    except (ConnectionError, asyncio.IncompleteReadError):
        pass


async def handle(client_reader, client_writer, target, delay):
    host, port = target
    try:
        server_reader, server_writer = await asyncio.open_connection(host, port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(
        delay_line(client_reader, server_writer, delay),
        delay_line(server_reader, client_writer, delay),
        return_exceptions=True,
    )
    for w in (client_writer, server_writer):
        w.close()


def address(text):
    host, _, port = text.rpartition(":")
    return host, int(port)


async def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--listen", type=address, required=True)
    parser.add_argument("--to", type=address, required=True)
    parser.add_argument("--delay-ms", type=float, required=True)
    args = parser.parse_args()
    delay = args.delay_ms / 1000
    server = await asyncio.start_server(
        lambda r, w: handle(r, w, args.to, delay), *args.listen
    )
    print(f"delaying {args.delay_ms} ms each way: {args.listen} -> {args.to}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
