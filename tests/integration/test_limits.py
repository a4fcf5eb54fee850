"""Connection limits as CONTRACT section 4 states them, on a real tallyd:
beyond --max-connections a new connection gets 503 with Retry-After and is
closed; a request head not complete within 10 s gets 408 and is closed; the
connections already open keep being served. Joins beyond --join-rate (burst
5 s worth) and more than 10 votes a second from one participant get 429
with Retry-After. A WebSocket peer that never answers the pings (every
20 s) is closed after 60 s of silence.

usage: test_limits.py PATH/TO/tallyd
"""
import json
import socket
import time

from tally_harness import Checks, Tally, WsClient

check = Checks()
MAX_CONNECTIONS = 3
HEAD_TIMEOUT_S = 10
JOIN_RATE = 2  # a burst of 10 joins, then 2 a second
VOTES_PER_S = 10
PING_S = 20
SILENCE_S = 60


def answer(sock, timeout):
    """Everything the server sends until it closes, within timeout seconds:
    (status, headers dict, parsed JSON body, seconds it took)."""
    sock.settimeout(timeout)
    t0 = time.monotonic()
    data = b""
    while True:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:] if ": " in line)
    return int(lines[0].split()[1]), headers, json.loads(body), time.monotonic() - t0


def is_429(r, code):
    """A 429 with Retry-After and the error code."""
    try:
        got = r.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        got = None
    return r.status == 429 and int(r.headers.get("Retry-After") or 0) >= 1 and got == code


def rates(t):
    s = t.request("POST", "/api/v1/sessions", {"title": "limits"}).json()
    code, ptok = s["session"]["code"], s["presenter_token"]
    burst = 5 * JOIN_RATE
    joins = [t.request("POST", "/api/v1/sessions/%s/participants" % code, {}) for _ in range(burst + 2)]
    check(all(r.status == 201 for r in joins[:burst]), "a burst of %d joins from one address: 201 each (%s)"
          % (burst, [r.status for r in joins[:burst]]))
    check(any(is_429(r, "rate_limited") for r in joins[burst:]),
          "beyond it: 429 rate_limited with Retry-After (%s)" % [(r.status, r.body[:80]) for r in joins[burst:]])
    token = joins[0].json()["participant_token"]
    polls = []
    for i in range(VOTES_PER_S + 2):
        p = t.request("POST", "/api/v1/sessions/%s/polls" % code,
                      {"question": "q%d" % i, "kind": "single", "options": ["a", "b"]}, ptok).json()["poll"]
        t.request("POST", "/api/v1/polls/%d/open" % p["id"], None, ptok)
        polls.append(p["id"])
    t0 = time.monotonic()
    votes = [t.request("POST", "/api/v1/polls/%d/votes" % pid, {"choice": [0]}, token,
                       {"Idempotency-Key": "k%d" % pid}) for pid in polls]
    took = time.monotonic() - t0
    check(all(r.status == 201 for r in votes[:VOTES_PER_S]), "%d votes at once on %d polls: 201 each (%s)"
          % (VOTES_PER_S, VOTES_PER_S, [r.status for r in votes[:VOTES_PER_S]]))
    check(took >= 1 or any(is_429(r, "rate_limited") for r in votes[VOTES_PER_S:]),
          "more than %d a second: 429 rate_limited with Retry-After (%s in %.2f s)"
          % (VOTES_PER_S, [(r.status, r.body[:80]) for r in votes[VOTES_PER_S:]], took))


def silent_peer(t):
    """A WebSocket that reads but never answers: the times of the pings it
    gets and of the end of the connection."""
    s = t.request("POST", "/api/v1/sessions", {"title": "silent"}).json()
    ws = WsClient(t.port, s["session"]["code"], s["presenter_token"], timeout=SILENCE_S + 30)
    t0 = time.monotonic()
    pings, closed = [], None
    try:
        while closed is None:
            op, _ = ws.frame()
            if op == 9:
                pings.append(time.monotonic() - t0)
            elif op == 8:
                closed = time.monotonic() - t0
    except OSError:  # the connection ended without a close frame
        closed = time.monotonic() - t0
    finally:
        ws.close()
    return pings, closed


def run(tallyd):
    t = Tally(tallyd, ["--max-connections", str(MAX_CONNECTIONS), "--join-rate", str(JOIN_RATE)])
    try:
        t.start()
        time.sleep(0.5)  # the start's health checks have closed their connections
        held = [socket.create_connection(("127.0.0.1", t.port)) for _ in range(MAX_CONNECTIONS)]
        # A new connection is counted once accepted: give the server a moment.
        time.sleep(0.3)
        extra = socket.create_connection(("127.0.0.1", t.port))
        extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, body, _ = answer(extra, 5)
        extra.close()
        check(status == 503, "a connection beyond --max-connections %d: 503 (got %d)" % (MAX_CONNECTIONS, status))
        check(int(headers.get("Retry-After", "0")) >= 1, "503 carries Retry-After (%s)" % headers)
        check((body.get("error") or {}).get("code") == "too_many_connections",
              "503 says why in the error shape (%s)" % body)

        # One held connection is served; another sends half a head and stops.
        held[0].sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        held[0].settimeout(5)
        first = held[0].recv(64)
        check(first.startswith(b"HTTP/1.1 200"), "a connection under the limit is served (%r)" % first[:20])
        held[0].close()
        time.sleep(0.3)  # its slot is free once the server has seen the close
        t0 = time.monotonic()
        slow = socket.create_connection(("127.0.0.1", t.port))
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHo")
        status, headers, body, _ = answer(slow, HEAD_TIMEOUT_S + 5)
        took = time.monotonic() - t0
        slow.close()
        check(status == 408, "a head not complete within 10 s: 408 (got %d)" % status)
        check(HEAD_TIMEOUT_S - 0.5 <= took <= HEAD_TIMEOUT_S + 3,
              "408 about 10 s after the connection opened (%.1f s), then closed" % took)
        check((body.get("error") or {}).get("code") is not None, "408 in the error shape (%s)" % body)
        for s in held:
            s.close()
        time.sleep(0.3)
        rates(t)
        pings, closed = silent_peer(t)
        check(len(pings) >= 2 and PING_S - 2 <= pings[0] <= PING_S + 3,
              "pings every %d s to a silent peer (at %s s)" % (PING_S, ["%.1f" % p for p in pings]))
        check(closed is not None and SILENCE_S - 2 <= closed <= SILENCE_S + 10,
              "a peer silent for %d s is closed (after %s s)" % (SILENCE_S, closed and "%.1f" % closed))
    finally:
        t.cleanup()


if __name__ == "__main__":
    check.main(run)
