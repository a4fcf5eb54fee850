"""End-to-end: the whole HTTP flow of CONTRACT section 2 against a real tallyd
on its embedded PostgreSQL, bad input per section 4, then kill -9 and a
restart on the same data directory, and a clean SIGTERM.

usage: test_flow.py PATH/TO/tallyd
"""
import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid

from tally_harness import Checks, Tally, ws_frame

check = Checks()


def err_code(r):
    try:
        return r.json()["error"]["code"]
    except Exception:
        return None


def raw_exchange(t, payload, read_timeout=5.0, wait_close=False):
    s = socket.create_connection(("127.0.0.1", t.port))
    s.settimeout(read_timeout)
    s.sendall(payload)
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if not wait_close and data.count(b"HTTP/1.1") >= 1 and b"\r\n\r\n" in data:
                # enough for a single-answer check unless the caller waits for close
                head, _, rest = data.partition(b"\r\n\r\n")
                clen = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        clen = int(line.split(b":")[1])
                if len(rest) >= clen:
                    break
    except socket.timeout:
        pass
    s.close()
    return data


def flow(t):
    # Health and readiness.
    check(t.request("GET", "/healthz").status == 200, "healthz 200")
    r = t.request("GET", "/readyz")
    check(r.status == 200 and r.json()["status"] == "ready", "readyz ready")
    r = t.request("GET", "/metrics")
    check(r.status == 200 and b"tally_connections" in r.body, "metrics exposes tally_connections")

    # Session.
    r = t.request("POST", "/api/v1/sessions", {"title": "Keynote"})
    check(r.status == 201, "create session 201 (got %d %s)" % (r.status, r.body[:200]))
    s = r.json()
    code, ptok = s["session"]["code"], s["presenter_token"]
    check(len(code) == 6 and not set(code) & set("0O1IL"), "join code alphabet")
    check(s["session"]["state"] == "open" and s["session"]["title"] == "Keynote", "session fields")
    check(len(ptok) >= 22, "presenter token long enough")

    # Participants.
    parts = []
    for i in range(3):
        r = t.request("POST", "/api/v1/sessions/%s/participants" % code.lower(), {"name": "p%d" % i})
        check(r.status == 201, "join 201 (lower-case code)")
        parts.append(r.json())
    ptoks = [p["participant_token"] for p in parts]

    # Polls of each kind.
    def mkpoll(body):
        r = t.request("POST", "/api/v1/sessions/%s/polls" % code, body, token=ptok)
        check(r.status == 201, "create poll 201 (%s)" % r.body[:200])
        return r.json()["poll"]

    single = mkpoll({"question": "Lunch?", "kind": "single", "options": ["Pizza", "Salad", "Soup"]})
    multi = mkpoll({"question": "Langs?", "kind": "multi", "options": ["C", "Go", "Rust", "Zig"],
                    "max_choices": 2})
    rating = mkpoll({"question": "Talk?", "kind": "rating", "options": ["1", "2", "3", "4", "5"]})
    check(single["state"] == "draft" and single["counts"] == [0, 0, 0], "new poll is draft, zero counts")

    # Voting before open.
    r = t.request("POST", "/api/v1/polls/%d/votes" % single["id"], {"choice": [0]}, token=ptoks[0],
                  headers={"Idempotency-Key": str(uuid.uuid4())})
    check(r.status == 409 and err_code(r) == "poll_not_open", "vote on draft: 409 poll_not_open")

    for p in (single, multi, rating):
        r = t.request("POST", "/api/v1/polls/%d/open" % p["id"], token=ptok)
        check(r.status == 200 and r.json()["poll"]["state"] == "open", "open poll")

    keys = {}
    def vote(poll, who, choice, key=None):
        key = key or str(uuid.uuid4())
        r = t.request("POST", "/api/v1/polls/%d/votes" % poll["id"], {"choice": choice},
                      token=ptoks[who], headers={"Idempotency-Key": key})
        return r, key

    r, k = vote(single, 0, [1])
    check(r.status == 201, "single vote 201 (%d %s)" % (r.status, r.body[:200]))
    first_vote = r.json()["vote"]
    keys["single0"] = (k, first_vote)
    r, _ = vote(single, 1, [1])
    check(r.status == 201, "second participant vote 201")
    r, _ = vote(single, 2, [2])
    check(r.status == 201, "third participant vote 201")
    r, _ = vote(single, 0, [0, 1])
    check(r.status == 400 and err_code(r) == "invalid_request", "single with two choices: 400")
    r, _ = vote(single, 0, [3])
    check(r.status == 400 and b"choice" in r.body, "choice out of range: 400 naming choice")
    r, _ = vote(single, 0, [2], key=k)
    check(r.status == 200 and r.json()["vote"] == first_vote, "same key: 200 with the original vote")
    r, _ = vote(single, 0, [2])
    check(r.status == 409 and err_code(r) == "already_voted", "new key same poll: 409 already_voted")

    r, km = vote(multi, 0, [0, 2])
    check(r.status == 201, "multi vote 201")
    keys["multi0"] = (km, r.json()["vote"])
    r, _ = vote(multi, 1, [0, 1, 2])
    check(r.status == 400, "multi over max_choices: 400")
    r, _ = vote(multi, 1, [1, 1])
    check(r.status == 400, "multi duplicate choices: 400")
    r, _ = vote(multi, 1, [3])
    check(r.status == 201, "multi single choice 201")
    r, _ = vote(rating, 2, [4])
    check(r.status == 201, "rating vote 201")

    # Results.
    r = t.request("GET", "/api/v1/polls/%d/results" % single["id"], token=ptoks[2])
    res = r.json()
    check(r.status == 200 and res["counts"] == [0, 2, 1] and res["total"] == 3, "single results")
    check(res["version"] >= 3, "version grows with counts")
    r = t.request("GET", "/api/v1/polls/%d/results" % multi["id"], token=ptok)
    check(r.json()["counts"] == [1, 0, 1, 1] and r.json()["total"] == 2, "multi results")

    # Auth errors.
    r = t.request("POST", "/api/v1/sessions/%s/polls" % code,
                  {"question": "x", "kind": "single", "options": ["a", "b"]}, token=ptoks[0])
    check(r.status == 403, "participant on presenter route: 403")
    r = t.request("GET", "/api/v1/polls/%d/results" % single["id"])
    check(r.status == 401, "no token: 401")
    r = t.request("GET", "/api/v1/polls/%d/results" % single["id"], token="nope" * 10)
    check(r.status == 401, "unknown token: 401")
    other = t.request("POST", "/api/v1/sessions", {"title": "Other"}).json()
    r = t.request("GET", "/api/v1/sessions/%s" % code, token=other["presenter_token"])
    check(r.status == 403, "token of another session: 403")
    r = t.request("GET", "/api/v1/sessions/%s" % code, token="?token")
    check(r.status == 401, "garbage token 401")
    r = t.request("GET", "/api/v1/sessions/%s?token=%s" % (code, ptoks[0]))
    check(r.status == 200, "token as query parameter")

    # Bad input.
    r = t.request("POST", "/api/v1/sessions", raw=b"{not json")
    check(r.status == 400 and err_code(r) == "invalid_request", "malformed JSON: 400")
    r = t.request("POST", "/api/v1/sessions", {"title": 5})
    check(r.status == 400 and b"title" in r.body, "wrong type names the field")
    r = t.request("POST", "/api/v1/sessions/%s/polls" % code,
                  {"question": "q", "kind": "ranked", "options": ["a", "b"]}, token=ptok)
    check(r.status == 400 and b"kind" in r.body, "unknown poll kind: 400 naming kind")
    r = t.request("POST", "/api/v1/sessions", raw=b'{"title":"' + b"x" * 70000 + b'"}')
    check(r.status == 413, "body over 64 KiB: 413")
    check(t.request("GET", "/api/v1/sessions/ZZZZZZ", token=ptok).status in (403, 404),
          "unknown session code")
    check(t.request("GET", "/nope").status == 404, "unknown path 404")
    check(t.request("GET", "/api/v1/polls/999999/results", token=ptok).status == 404, "unknown poll 404")
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n"
    check(raw_exchange(t, big).startswith(b"HTTP/1.1 431"), "head over 8 KiB: 431")
    pipelined = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * 2 + \
        b"GET /api/v1/polls/%d/results HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n" \
        b"Connection: close\r\n\r\n" % (single["id"], ptok.encode())
    data = raw_exchange(t, pipelined, wait_close=True)
    check(data.count(b"HTTP/1.1 200") == 3 and data.rfind(b'"counts"') > data.rfind(b"ok"),
          "three pipelined requests answered in order: %r" % data[-400:])

    # Session state.
    r = t.request("GET", "/api/v1/sessions/%s" % code, token=ptok)
    g = r.json()
    check(r.status == 200 and g["participants"] == 3 and len(g["polls"]) == 3, "GET session")
    check(g["seq"] == 6, "seq counts poll.created x3 + poll.opened x3 (got %s)" % g.get("seq"))

    # Close the single poll.
    r = t.request("POST", "/api/v1/polls/%d/close" % single["id"], token=ptok)
    check(r.status == 200 and r.json()["poll"]["state"] == "closed" and
          r.json()["poll"]["counts"] == [0, 2, 1], "close poll with final counts")
    r, _ = vote(single, 0, [1], key=keys["single0"][0])
    check(r.status == 200 and r.json()["vote"] == keys["single0"][1], "same key after close: 200 original")
    r, _ = vote(single, 1, [1])
    check(r.status == 409 and err_code(r) in ("poll_not_open", "already_voted"), "vote on closed poll: 409")

    r = t.request("GET", "/api/v1/sessions/%s/export.csv" % code, token=ptok)
    check(r.status == 200 and r.headers["Content-Type"].startswith("text/csv") and
          b"Pizza" in r.body, "CSV export")
    r = t.request("GET", "/api/v1/sessions/%s/qr.svg" % code)
    check(r.status == 200 and b"<svg" in r.body, "QR code SVG")
    return code, ptok, ptoks, single, multi, rating, keys


def after_restart(t, code, ptok, ptoks, single, multi, rating, keys):
    r = t.request("GET", "/api/v1/sessions/%s" % code, token=ptok)
    check(r.status == 200, "session survives kill -9 (%d)" % r.status)
    g = r.json()
    polls = {p["id"]: p for p in g["polls"]}
    check(polls[single["id"]]["state"] == "closed" and polls[single["id"]]["counts"] == [0, 2, 1],
          "closed poll and counts survive")
    check(polls[multi["id"]]["state"] == "open" and polls[multi["id"]]["counts"] == [1, 0, 1, 1],
          "open poll and counts survive")
    check(g["participants"] == 3 and g["seq"] == 7, "participants and seq survive")
    r = t.request("POST", "/api/v1/polls/%d/votes" % multi["id"], {"choice": [3]}, token=ptoks[0],
                  headers={"Idempotency-Key": keys["multi0"][0]})
    check(r.status == 200 and r.json()["vote"] == keys["multi0"][1], "retried key after restart: 200 original")
    r = t.request("POST", "/api/v1/polls/%d/votes" % multi["id"], {"choice": [3]}, token=ptoks[0],
                  headers={"Idempotency-Key": str(uuid.uuid4())})
    check(r.status == 409 and err_code(r) == "already_voted", "new key after restart: 409")
    r = t.request("POST", "/api/v1/polls/%d/votes" % rating["id"], {"choice": [0]}, token=ptoks[1],
                  headers={"Idempotency-Key": str(uuid.uuid4())})
    check(r.status == 201, "new votes still work after restart")
    r = t.request("POST", "/api/v1/sessions/%s/close" % code, token=ptok)
    check(r.status == 200, "close session")
    r = t.request("GET", "/api/v1/sessions/%s" % code, token=ptok)
    g = r.json()
    check(g["session"]["state"] == "closed" and all(p["state"] == "closed" for p in g["polls"]),
          "closing a session closes its polls")
    check(g["seq"] == 10, "poll.closed x2 + session.closed advance seq (got %s)" % g["seq"])
    r = t.request("POST", "/api/v1/sessions/%s/participants" % code, {})
    check(r.status == 409, "join closed session: 409")


def bad_config(binary):
    for args, option in ((["--threads", "abc"], "--threads"),
                         (["--listen", "nowhere"], "--listen"),
                         (["--no-such-flag"], "--no-such-flag")):
        p = subprocess.run([binary] + args, capture_output=True, text=True, timeout=30)
        lines = [l for l in p.stderr.splitlines() if l.strip()]
        check(p.returncode == 2, "bad %s: exit 2 (got %d)" % (option, p.returncode))
        check(len(lines) == 1 and option in lines[0], "bad %s: one line naming it (%r)" % (option, p.stderr))
    p = subprocess.run([binary, "--help"], capture_output=True, text=True, timeout=30)
    flags = ["--listen", "--database-url", "--data-dir", "--threads", "--capacity",
             "--max-connections", "--join-rate", "--instance-id", "--db-pool", "--drain-seconds"]
    check(p.returncode == 0 and all(f in p.stdout and "TALLY_" + f[2:].upper().replace("-", "_")
                                    in p.stdout for f in flags), "--help lists every flag and env")
    env = dict(os.environ, TALLY_DRAIN_SECONDS="-1")
    p = subprocess.run([binary], capture_output=True, text=True, timeout=30, env=env)
    check(p.returncode == 2 and "TALLY_DRAIN_SECONDS" in p.stderr, "bad env value: exit 2 naming it")


def ws_open(t, code, token):
    import base64
    s = socket.create_connection(("127.0.0.1", t.port))
    s.settimeout(5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET /api/v1/sessions/%s/ws?token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (code, token, key)).encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(4096)
    head, _, rest = data.partition(b"\r\n\r\n")
    return s, head, rest


def ws_close_code(s, rest):
    # Reads server frames until a close frame; returns its code (None if none).
    data = rest
    deadline = time.time() + 5
    while time.time() < deadline:
        while len(data) >= 2:
            op, n = data[0] & 0x0F, data[1] & 0x7F
            off = 2
            if n == 126:
                n, off = int.from_bytes(data[2:4], "big"), 4
            elif n == 127:
                n, off = int.from_bytes(data[2:10], "big"), 10
            if len(data) < off + n:
                break
            payload, data = data[off:off + n], data[off + n:]
            if op == 8:
                return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return None
        if not chunk:
            return None
        data += chunk
    return None


def websocket_limits(t, code, token):
    cases = [
        ("unmasked client frame", ws_frame(1, b'{"type":"x"}', mask=False), 1002),
        ("invalid UTF-8 in a text frame", ws_frame(1, b'{"a":"\xff"}'), 1007),
        ("message over 4 KiB", ws_frame(1, b"x" * 4097), 1009),
        ("fragments over 4 KiB", ws_frame(1, b"x" * 3000, fin=False) + ws_frame(0, b"x" * 1200), 1009),
        ("reserved opcode", ws_frame(3, b""), 1002),
        ("close with a bad code", ws_frame(8, (999).to_bytes(2, "big")), 1002),
        ("clean close echoed", ws_frame(8, (1000).to_bytes(2, "big")), 1000),
    ]
    for what, frame, want in cases:
        s, head, rest = ws_open(t, code, token)
        check(head.startswith(b"HTTP/1.1 101"), "WebSocket upgrade: 101 (%s)" % head[:40])
        s.sendall(frame)
        got = ws_close_code(s, rest)
        check(got == want, "WebSocket %s: close %s (got %s)" % (what, want, got))
        s.close()
    s, head, rest = ws_open(t, code, token)
    s.sendall(ws_frame(1, b"x" * 4096))  # exactly at the limit: not JSON, so an error, not a close
    s.sendall(ws_frame(8, (1000).to_bytes(2, "big")))
    check(ws_close_code(s, rest) == 1000, "WebSocket message of exactly 4 KiB is accepted")
    s.close()


def sse_resume(t, code, token):
    s = socket.create_connection(("127.0.0.1", t.port))
    s.settimeout(2)
    s.sendall(("GET /api/v1/sessions/%s/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Last-Event-ID: 7\r\nAccept: text/event-stream\r\n\r\n" % (code, token)).encode())
    data = b""
    try:
        while data.count(b"\n\n") < 6:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    s.close()
    head, _, body = data.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head, "SSE: 200 event-stream")
    events = [e for e in body.decode(errors="replace").split("\n\n") if e.startswith("event:")]
    types = [e.split("\n")[0][len("event: "):] for e in events]
    ids = [int(l[4:]) for e in events for l in e.split("\n") if l.startswith("id: ")]
    check(types[:1] == ["hello"], "SSE starts with hello (%s)" % types)
    check(ids == [8, 9, 10], "SSE Last-Event-ID 7 replays exactly 8, 9, 10 (%s)" % ids)
    check("session.closed" in types, "SSE replay ends with session.closed")


def expect_continue(t):
    body = b'{"title":"Continue"}'
    s = socket.create_connection(("127.0.0.1", t.port))
    s.settimeout(2)
    s.sendall(b"POST /api/v1/sessions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Expect: 100-continue\r\nContent-Length: %d\r\n\r\n" % len(body))
    try:
        first = s.recv(4096)
    except socket.timeout:
        first = b""
    check(first.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"), "Expect: 100-continue answered at once (%r)" % first[:40])
    s.sendall(body)
    data = first[25:]
    try:
        while b"\r\n\r\n" not in data:
            data += s.recv(4096)
    except socket.timeout:
        pass
    s.close()
    check(data.startswith(b"HTTP/1.1 201"), "then the body is read and answered 201 (%r)" % data[:40])


def head_framing(t):
    """HEAD answers leave the body out, errors included, so the next answer
    on a kept-alive connection starts where the client expects it."""
    s = socket.create_connection(("127.0.0.1", t.port))
    s.settimeout(3)
    s.sendall(b"HEAD /no/such/path HTTP/1.1\r\nHost: x\r\n\r\n"
              b"HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
              b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    try:
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    except socket.timeout:
        pass
    s.close()
    parts = data.split(b"\r\n\r\n")
    check(parts[0].startswith(b"HTTP/1.1 404") and b"Content-Length: " in parts[0],
          "HEAD on an unknown path: 404 with the length of the body it leaves out")
    check(len(parts) == 4 and parts[1].startswith(b"HTTP/1.1 200")
          and parts[2].startswith(b"HTTP/1.1 200") and parts[3] == b'{"status":"ok"}',
          "then the next answers start right after the bodiless heads (%r)" % data[-120:])


def verify(t, binary):
    tallyctl = os.path.join(os.path.dirname(binary), "tallyctl")
    run = lambda: subprocess.run([tallyctl, "verify", "--data-dir", t.data_dir],
                                 capture_output=True, text=True, timeout=60)
    p = run()
    check(p.returncode == 0 and p.stdout.count(" ok ") == 6,
          "tallyctl verify: every invariant holds (%s%s)" % (p.stdout, p.stderr))
    psql = ["psql", "-h", os.path.join(t.data_dir, "run"), "-U", "tally", "-d", "postgres", "-c"]
    subprocess.run(psql + ["UPDATE sessions SET seq = seq + 5"], capture_output=True, timeout=60)
    p = run()
    check(p.returncode == 1 and "FAIL" in p.stdout, "tallyctl verify: finds a broken seq")
    subprocess.run(psql + ["UPDATE sessions SET seq = seq - 5"], capture_output=True, timeout=60)


def drain_under_votes(t, writers=8):
    """SIGTERM while keep-alive clients vote back to back: every answer
    during the drain ends its connection, tallyd exits 0 within the budget,
    and every vote answered 201 is stored (its retry answers 200)."""
    s = t.request("POST", "/api/v1/sessions", {"title": "Drain"}).json()
    code, ptok = s["session"]["code"], s["presenter_token"]
    r = t.request("POST", "/api/v1/sessions/%s/polls" % code,
                  {"question": "Drain?", "kind": "single", "options": ["A", "B"]}, token=ptok)
    poll = r.json()["poll"]["id"]
    t.request("POST", "/api/v1/polls/%d/open" % poll, token=ptok)
    acked, lock, started = [], threading.Lock(), threading.Event()
    answers_after = {"close": 0, "all": 0}

    def writer():
        conn = http.client.HTTPConnection("127.0.0.1", t.port, timeout=15)
        try:
            while True:
                hdr = {"Content-Type": "application/json"}
                conn.request("POST", "/api/v1/sessions/%s/participants" % code, b"{}", hdr)
                resp = conn.getresponse()
                body = resp.read()
                if resp.status == 429:  # the per-address join limit: wait as a client would
                    time.sleep(0.2)
                    continue
                if resp.status != 201:
                    return
                tok = json.loads(body)["participant_token"]
                key = str(uuid.uuid4())
                hdr.update({"Authorization": "Bearer " + tok, "Idempotency-Key": key})
                conn.request("POST", "/api/v1/polls/%d/votes" % poll, b'{"choice":[1]}', hdr)
                resp = conn.getresponse()
                resp.read()
                with lock:
                    if resp.status == 201:
                        acked.append((tok, key))
                    if t.proc.poll() is None and draining.is_set():
                        answers_after["all"] += 1
                        answers_after["close"] += resp.getheader("Connection", "") == "close"
                started.set()
                if resp.status != 201:
                    return
        except (OSError, http.client.HTTPException):
            return  # the connection ended: drained
        finally:
            conn.close()

    draining = threading.Event()
    threads = [threading.Thread(target=writer) for _ in range(writers)]
    for th in threads:
        th.start()
    started.wait(10)
    time.sleep(0.5)
    t0 = time.time()
    draining.set()
    rc = t.terminate()
    took = time.time() - t0
    for th in threads:
        th.join(20)
    check(rc == 0, "SIGTERM under keep-alive votes: exit 0 (got %s)" % rc)
    check(took < 10, "SIGTERM under keep-alive votes: exit within the 10 s budget (%.1f s)" % took)
    check(not any(th.is_alive() for th in threads), "every keep-alive voter saw its connection end")
    # Only a request already on its way when the signal landed may be
    # answered keep-alive: at most one join and one vote per connection.
    check(answers_after["all"] - answers_after["close"] <= 2 * writers,
          "answers during the drain say Connection: close (%d of %d)"
          % (answers_after["close"], answers_after["all"]))
    t.start()
    missing = 0
    for tok, key in acked:
        r = t.request("POST", "/api/v1/polls/%d/votes" % poll, {"choice": [1]}, token=tok,
                      headers={"Idempotency-Key": key})
        missing += r.status != 200
    check(len(acked) > 0 and missing == 0,
          "every vote acknowledged before the exit is stored (%d acked, %d missing)" % (len(acked), missing))


def main():
    binary = sys.argv[1]
    bad_config(binary)
    t = Tally(binary)
    try:
        t.start()
        state = flow(t)
        expect_continue(t)
        head_framing(t)
        t.kill9()
        t.start()
        after_restart(t, *state)
        websocket_limits(t, state[0], state[1])
        sse_resume(t, state[0], state[1])
        verify(t, binary)
        t0 = time.time()
        rc = t.terminate()
        check(rc == 0, "SIGTERM: exit 0 (got %s)" % rc)
        check(time.time() - t0 < 10, "SIGTERM within drain budget")
        t.start()
        drain_under_votes(t)
        rc = t.terminate()
        check(rc == 0, "SIGTERM after the drain test: exit 0 (got %s)" % rc)
    except Exception:
        traceback.print_exc()
        print(t.log())
        check(False, "no exception")
    finally:
        t.cleanup()
    if check.failed:
        print(t.log())
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
