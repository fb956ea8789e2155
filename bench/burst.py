#!/usr/bin/env python3
"""A burst of concurrent clients: opens CLIENTS connections at once, sends one GET on each, and
reads every answer. Prints one JSON line: answers per status, connection errors, and the time
the burst took.

Usage: bench/burst.py PORT PATH CLIENTS [HEADER: VALUE]...

Each client has a connection of its own (`Connection: close`), as 2,000 distinct clients would.
With METHOD=POST in the environment each client posts a small JSON body under an X-Request-ID of
its own. Raise the file limit (`ulimit -n`) above CLIENTS first.
"""
import asyncio
import json
import os
import sys
import time
import uuid

CONNECT_TIMEOUT_S = 30
ANSWER_TIMEOUT_S = 60
ANSWER_BYTES_MAX = 1 << 20


async def one(port, request):
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT_S
        )
    except (OSError, asyncio.TimeoutError) as error:
        return f"connect: {type(error).__name__}"
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(ANSWER_BYTES_MAX), ANSWER_TIMEOUT_S)
        status = answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/") else "none"
        # Read to the end, so the server closes first and the socket is not left half-open.
        while await asyncio.wait_for(reader.read(ANSWER_BYTES_MAX), ANSWER_TIMEOUT_S):
            pass
        return status
    except (OSError, asyncio.TimeoutError, IndexError) as error:
        return f"read: {type(error).__name__}"
    finally:
        writer.close()


def request(method, path, headers):
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close", *headers]
    body = b""
    if method == "POST":
        body = b'{"amount":1}'
        lines += [
            f"X-Request-ID: burst-{uuid.uuid4()}",
            "Content-Type: application/json",
            f"Content-Length: {len(body)}",
        ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def burst(port, path, clients, headers):
    method = os.environ.get("METHOD", "GET")
    requests = [request(method, path, headers) for _ in range(clients)]
    started = time.monotonic()
    results = await asyncio.gather(*(one(port, r) for r in requests))
    elapsed_ms = (time.monotonic() - started) * 1000
    counts = {}
    for result in results:
        counts[result] = counts.get(result, 0) + 1
    return {"answers": counts, "ok": counts.get("200", 0), "elapsed_ms": round(elapsed_ms)}


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    port, path, clients = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    print(json.dumps(asyncio.run(burst(port, path, clients, sys.argv[4:]))))


if __name__ == "__main__":
    main()
