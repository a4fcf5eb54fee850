#!/usr/bin/env python3
"""Votes that wait on every socket at once (a burst from the whole audience).

One network ring, 1,500 participants each on its own WebSocket. tallyd is
stopped (SIGSTOP) while every participant sends one vote, then continued:
1,500 sockets have a vote waiting when the ring's thread runs again, more
than the ring's 1,024 receive buffers. Every vote must be read and
acknowledged exactly once, and the poll's total must equal the votes.

Whether the receives actually run out of buffers here depends on how many
completions the kernel runs per turn (it runs deferred work in slices), so
the starved count (tally_net_recv_starved_total) is printed, not asserted;
the 100,000-vote burst (stress/bench_burst.sh, docs/perf.md) is where the
starved path carries the load.

    test_starve.py path/to/tallyd
"""
import json
import os
import selectors
import signal
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tally_harness import Checks, Tally  # noqa: E402
from test_flow import ws_frame, ws_open  # noqa: E402

N = 1500
check = Checks()


def metric(t, name):
    for line in t.request("GET", "/metrics").body.decode().splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return None


def setup(t):
    r = t.request("POST", "/api/v1/sessions", {"title": "Burst"})
    s = r.json()
    code, ptok = s["session"]["code"], s["presenter_token"]
    r = t.request("POST", "/api/v1/sessions/%s/polls" % code,
                  {"question": "Now?", "kind": "single", "options": ["Yes", "No"]}, token=ptok)
    poll = r.json()["poll"]
    r = t.request("POST", "/api/v1/polls/%d/open" % poll["id"], token=ptok)
    check(r.status == 200, "poll opened")
    toks = []
    for i in range(N):
        r = t.request("POST", "/api/v1/sessions/%s/participants" % code, {"name": "p%d" % i})
        if r.status != 201:
            check(False, "join %d: %d %s" % (i, r.status, r.body[:100]))
            break
        toks.append(r.json()["participant_token"])
    return code, ptok, poll["id"], toks


def connect_all(t, code, toks):
    socks = []
    for tok in toks:
        s, head, _ = ws_open(t, code, tok)
        if not head.startswith(b"HTTP/1.1 101"):
            check(False, "upgrade: %s" % head[:60])
            break
        socks.append(s)
    return socks


def read_acks(socks, keys, timeout):
    """Reads every socket until its ack (or the timeout); returns the acks
    seen per socket, by counting the vote's key in the bytes received."""
    sel = selectors.DefaultSelector()
    got = [b""] * len(socks)
    for i, s in enumerate(socks):
        s.setblocking(False)
        sel.register(s, selectors.EVENT_READ, i)
    need = set(range(len(socks)))
    deadline = time.time() + timeout
    while need and time.time() < deadline:
        for key, _ in sel.select(timeout=0.5):
            i = key.data
            try:
                chunk = key.fileobj.recv(65536)
            except BlockingIOError:
                continue
            if not chunk:
                need.discard(i)
                continue
            got[i] += chunk
            if b'"ack"' in got[i] and keys[i].encode() in got[i]:
                need.discard(i)
    sel.close()
    return [g.count(b'"id":"%s"' % k.encode()) for g, k in zip(got, keys)]


def main():
    t = Tally(sys.argv[1], ["--threads", "1", "--max-connections", "4000",
                            "--join-rate", "1000000"])
    try:
        t.start()
        code, ptok, poll_id, toks = setup(t)
        socks = connect_all(t, code, toks)
        check(len(socks) == N, "%d WebSockets open (got %d)" % (N, len(socks)))
        time.sleep(0.5)  # every hello received before the stop
        before = metric(t, "tally_net_recv_starved_total")
        keys = [str(uuid.uuid4()) for _ in socks]
        t.proc.send_signal(signal.SIGSTOP)
        try:
            for s, k in zip(socks, keys):
                msg = {"type": "vote", "id": k, "poll_id": poll_id, "choice": [0]}
                s.sendall(ws_frame(1, json.dumps(msg).encode()))
        finally:
            t.proc.send_signal(signal.SIGCONT)
        acks = read_acks(socks, keys, 60)
        check(all(a == 1 for a in acks),
              "every vote acknowledged once (missing %d, repeated %d)"
              % (sum(1 for a in acks if a == 0), sum(1 for a in acks if a > 1)))
        after = metric(t, "tally_net_recv_starved_total")
        check(before is not None and after is not None, "starved receives are counted")
        print("receives that waited for a buffer: %s" % (after - before if after is not None else "?"))
        r = t.request("GET", "/api/v1/polls/%d/results" % poll_id, token=ptok)
        check(r.status == 200 and r.json()["total"] == N,
              "results total equals the votes (%s)" % r.body[:100])
        for s in socks:
            s.close()
        check(t.terminate() == 0, "tallyd exits 0 on SIGTERM")
    finally:
        t.cleanup()
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
