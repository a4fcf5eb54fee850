#!/usr/bin/env python3
"""What idle sessions with an audience cost: N sessions, one WebSocket
subscriber each, no votes, and tallyd's CPU over 10 s.

    stress/bench_idle_sessions.py TALLYD [SESSIONS=2000] [TALLYD_BASE]

Starts TALLYD on a fresh embedded PostgreSQL, creates SESSIONS sessions
and subscribes its presenter to each over a WebSocket (raw sockets held
open, nothing read: an idle session sends nothing but presence), waits 3 s
for the subscriptions to settle, then samples tallyd's CPU, in all and by
thread, over 10 s. With TALLYD_BASE, the same run follows with that binary,
for a side by side comparison in one command.
"""
import base64
import os
import socket
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import bench_vote_budget as budget  # noqa: E402
from tally_harness import Tally  # noqa: E402

SETTLE_S = 3
SAMPLE_S = 10


def subscribe(port, code, token):
    s = socket.create_connection(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /api/v1/sessions/%s/ws?token=%s HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (code, token, key)).encode())
    return s


def run(binary, n):
    t = Tally(binary, ["--join-rate", "1000000"])
    socks = []
    t.start()
    try:
        for i in range(n):
            r = t.request("POST", "/api/v1/sessions", {"title": "idle %d" % i})
            if r.status != 201:
                raise RuntimeError("create session: %d" % r.status)
            j = r.json()
            socks.append(subscribe(t.port, j["session"]["code"], j["presenter_token"]))
        time.sleep(SETTLE_S)
        c0, th0 = budget.cpu_of(t.proc.pid), budget.threads_cpu(t.proc.pid)
        time.sleep(SAMPLE_S)
        c1, th1 = budget.cpu_of(t.proc.pid), budget.threads_cpu(t.proc.pid)
    finally:
        for s in socks:
            s.close()
        t.cleanup()
    pct = 100.0 / SAMPLE_S
    print("%s: %d idle sessions with a subscriber: tallyd %.1f%% of a core (%s)" % (
        binary, n, (c1 - c0) * pct,
        ", ".join("%s %.1f%%" % (k, (th1[k] - th0.get(k, 0.0)) * pct) for k in sorted(th1))), flush=True)
    return c1 - c0


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        sys.exit(2)
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 2000
    print("machine: %d cores, %s; %s" % (os.cpu_count(), os.uname().release,
                                        time.strftime("%Y-%m-%d", time.gmtime())))
    a = run(sys.argv[1], n)
    if len(sys.argv) > 3:
        b = run(sys.argv[3], n)
        print("CPU ratio, first / second: %.2f" % (a / b if b else float("nan")))


if __name__ == "__main__":
    main()
