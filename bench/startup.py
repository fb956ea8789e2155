#!/usr/bin/env python3
"""Timing and memory helpers for bench/startup.sh (the shell script says what is measured).

  startup.py ready BIN CONFIG ADMIN_PORT LOG
      starts `BIN serve --config CONFIG`, polls /readyz every millisecond, prints the
      milliseconds until it answers 200, then stops the gateway (SIGTERM) and waits for it.
  startup.py variant IN OUT TAG
      writes a copy of the component IN with a custom section naming TAG: the same plugin in a
      module of its own (another SHA-256, so another compiled artifact).
  startup.py mask BIN CONFIG_JSON CALLS
      starts the external mask process, times spawn to its first masked answer, sends CALLS
      more frames, and prints one JSON line: start-up ms, VmRSS MiB, and µs per call.
  startup.py rss PID
      prints the process's VmRSS in MiB.
"""
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time

READY_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30
# A card number, an e-mail and a phone, as an account answer might carry them.
BODY = json.dumps({
    "account": "alice",
    "card": "4111111111111111",
    "email": "alice@example.com",
    "phone": "+44 20 7946 0958",
    "history": [{"amount": n, "note": "card 4111111111111111"} for n in range(20)],
}).encode()


def readyz(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
            s.sendall(b"GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            return s.recv(64).startswith(b"HTTP/1.1 200")
    except OSError:
        return False


def ready(binary, config, admin_port, log):
    env = dict(os.environ, TXGATE_LOG=os.environ.get("TXGATE_LOG", "info"))
    with open(log, "w") as out:
        started = time.monotonic()
        gateway = subprocess.Popen([binary, "serve", "--config", config], stderr=out,
                                   stdout=subprocess.DEVNULL, env=env)
        try:
            while not readyz(int(admin_port)):
                if gateway.poll() is not None:
                    sys.exit(f"the gateway exited ({gateway.returncode}); see {log}")
                if time.monotonic() - started > READY_TIMEOUT_S:
                    sys.exit(f"not ready after {READY_TIMEOUT_S} s; see {log}")
                time.sleep(0.001)
            print(f"{(time.monotonic() - started) * 1000:.1f}")
        finally:
            gateway.send_signal(signal.SIGTERM)
            gateway.wait(STOP_TIMEOUT_S)


def variant(source, target, tag):
    name = b"txgate-bench-variant"
    payload = bytes([len(name)]) + name + tag.encode()
    assert len(payload) < 128, "one LEB128 byte of size"
    with open(source, "rb") as f:
        module = f.read()
    with open(target, "wb") as f:
        f.write(module + bytes([0, len(payload)]) + payload)


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise SystemExit(f"no VmRSS for {pid}")


def mask(binary, config, calls):
    started = time.monotonic()
    process = subprocess.Popen([binary, config], stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def call():
        process.stdin.write(struct.pack(">I", len(BODY)) + BODY)
        process.stdin.flush()
        (length,) = struct.unpack(">I", process.stdout.read(4))
        answer = process.stdout.read(length)
        assert b"4111111111111111" not in answer, "the process did not mask"

    call()
    startup_ms = (time.monotonic() - started) * 1000
    began = time.monotonic()
    for _ in range(int(calls)):
        call()
    per_call_us = (time.monotonic() - began) / int(calls) * 1e6
    rss = rss_mib(process.pid)
    process.stdin.close()
    process.wait(STOP_TIMEOUT_S)
    print(json.dumps({"startup_ms": round(startup_ms, 2), "rss_mib": round(rss, 1),
                      "per_call_us": round(per_call_us, 1)}))


def main():
    commands = {"ready": (ready, 4), "variant": (variant, 3), "mask": (mask, 3),
                "rss": (lambda pid: print(f"{rss_mib(pid):.1f}"), 1)}
    if len(sys.argv) < 2 or sys.argv[1] not in commands:
        sys.exit(__doc__)
    function, arity = commands[sys.argv[1]]
    if len(sys.argv) != arity + 2:
        sys.exit(__doc__)
    function(*sys.argv[2:])


if __name__ == "__main__":
    main()
