"""End-to-end: tallyctl create, export and replay against a real tallyd on its
embedded PostgreSQL.

create goes through the running tallyd's HTTP API; export and replay read the
cluster that tallyd started (through --data-dir, TALLY_DATA_DIR and
--database-url). export is compared with GET .../results, replay with what an
SSE subscriber received from seq 0. Then bad input: unknown code (exit 1),
bad flags and values (exit 2 naming the option), an unreachable URL (exit 1).

usage: test_tallyctl.py PATH/TO/tallyd   (tallyctl is taken from the same directory)
"""
import csv
import io
import json
import os
import socket
import subprocess
import sys
import time
import traceback
import uuid

from tally_harness import Checks, Tally, free_port

check = Checks()


def ctl(tallyctl, *args, env=None):
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TALLY_")}
    full_env.update(env or {})
    return subprocess.run([tallyctl] + list(args), capture_output=True, text=True, timeout=60,
                          env=full_env)


def create(t, tallyctl):
    title = 'Board "Q4", <ops> & ü'
    p = ctl(tallyctl, "create", "--title", title, "--url", t.base)
    check(p.returncode == 0, "create: exit 0 (%d %s)" % (p.returncode, p.stderr))
    fields = dict(line.split(": ", 1) for line in p.stdout.splitlines())
    fields = {k: v.strip() for k, v in fields.items()}
    code, token = fields.get("code", ""), fields.get("presenter token", "")
    check(len(code) == 6 and len(token) >= 22, "create: prints a code and a presenter token")
    check(fields.get("join URL") == "%s/j/%s" % (t.base, code), "create: join URL")
    check(fields.get("presenter URL") == "%s/present/%s#token=%s" % (t.base, code, token),
          "create: presenter URL carries the token")
    r = t.request("GET", "/api/v1/sessions/%s" % code, token=token)
    check(r.status == 200 and r.json()["session"]["title"] == title,
          "create: the session exists with its title, and the token is its presenter's")
    r = t.request("GET", "/j/%s" % code)
    check(r.status == 200, "create: the join URL serves the participant page")
    return code, token


def populate(t, code, ptok):
    """Three polls: one closed with votes, one open with votes, one draft."""
    parts = []
    for i in range(5):
        r = t.request("POST", "/api/v1/sessions/%s/participants" % code, {"name": "p%d" % i})
        check(r.status == 201, "join 201")
        parts.append(r.json()["participant_token"])

    def mkpoll(body):
        r = t.request("POST", "/api/v1/sessions/%s/polls" % code, body, token=ptok)
        check(r.status == 201, "create poll 201 (%s)" % r.body[:200])
        return r.json()["poll"]["id"]

    single = mkpoll({"question": "Lunch, \"today\"?", "kind": "single",
                     "options": ["Pizza", "Salad, green", "Soup"]})
    multi = mkpoll({"question": "Langs?", "kind": "multi", "options": ["C", "Go", "Rust", "Zig"],
                    "max_choices": 2})
    draft = mkpoll({"question": "Later?", "kind": "rating", "options": ["1", "2", "3"]})
    for pid in (single, multi):
        r = t.request("POST", "/api/v1/polls/%d/open" % pid, token=ptok)
        check(r.status == 200, "open poll 200")

    def vote(pid, who, choice):
        r = t.request("POST", "/api/v1/polls/%d/votes" % pid, {"choice": choice}, token=parts[who],
                      headers={"Idempotency-Key": str(uuid.uuid4())})
        check(r.status == 201, "vote 201 (%d %s)" % (r.status, r.body[:100]))

    for who, c in enumerate([0, 1, 1, 2, 1]):
        vote(single, who, [c])
    for who, c in enumerate([[0, 2], [2], [1, 2], [3]]):
        vote(multi, who, c)
    r = t.request("POST", "/api/v1/polls/%d/close" % single, token=ptok)
    check(r.status == 200, "close poll 200")
    return [single, multi, draft]


def results(t, ptok, polls):
    out = {}
    for pid in polls:
        r = t.request("GET", "/api/v1/polls/%d/results" % pid, token=ptok)
        check(r.status == 200, "results 200")
        out[pid] = r.json()
    return out


def export(t, tallyctl, code, ptok, polls):
    want = results(t, ptok, polls)
    p = ctl(tallyctl, "export", code, "--data-dir", t.data_dir)
    check(p.returncode == 0, "export csv: exit 0 (%s)" % p.stderr)
    rows = list(csv.DictReader(io.StringIO(p.stdout, newline="")))
    # (text mode reads the CRLF line ends of RFC 4180 as \n)
    check(p.stdout.startswith("session_code,poll_id,question,kind,state,option_index,option,count\n"),
          "export csv: header")
    got, totals = {}, {}
    for row in rows:
        check(row["session_code"] == code, "export csv: session code on every row")
        pid = int(row["poll_id"])
        if row["option_index"] == "":
            check(row["option"] == "total", "export csv: the poll's total row")
            totals[pid] = int(row["count"])
        else:
            got.setdefault(pid, []).append(int(row["count"]))
    check(sorted(got) == sorted(polls), "export csv: every poll (%s)" % sorted(got))
    for pid in polls:
        check(got.get(pid) == want[pid]["counts"],
              "export csv: poll %d counts %s = results %s" % (pid, got.get(pid), want[pid]["counts"]))
        check(totals.get(pid) == want[pid]["total"], "export csv: poll %d total" % pid)
    quoted = [r for r in rows if r["question"] == 'Lunch, "today"?' and r["option"] == "Salad, green"]
    check(len(quoted) == 1, "export csv: commas and quotes survive CSV quoting")

    # JSON, the lower-case code, the data dir from the environment.
    p = ctl(tallyctl, "export", code.lower(), "--format", "json", env={"TALLY_DATA_DIR": t.data_dir})
    check(p.returncode == 0, "export json: exit 0 (%s)" % p.stderr)
    doc = json.loads(p.stdout)
    check(doc["session"]["code"] == code, "export json: the session")
    by_id = {pl["id"]: pl for pl in doc["polls"]}
    for pid in polls:
        pl = by_id.get(pid, {})
        check(pl.get("counts") == want[pid]["counts"] and pl.get("total") == want[pid]["total"],
              "export json: poll %d counts and total equal results" % pid)
        check(len(pl.get("options", [])) == len(want[pid]["counts"]), "export json: options")
    check(by_id[polls[2]]["state"] == "draft" and by_id[polls[0]]["state"] == "closed",
          "export json: poll states")

    # The same database through --database-url.
    url = "host=%s user=tally dbname=postgres" % os.path.join(t.data_dir, "run")
    q = ctl(tallyctl, "export", code, "--database-url", url)
    check(q.returncode == 0 and q.stdout == ctl(tallyctl, "export", code, "--data-dir",
                                                   t.data_dir).stdout,
          "export --database-url: the same rows as --data-dir (%s)" % q.stderr)


def sse_events(t, code, token, n, timeout=10):
    """The first n sequenced events an SSE subscriber from seq 0 receives: [(type, seq, data)]."""
    s = socket.create_connection(("127.0.0.1", t.port))
    s.settimeout(1)
    s.sendall(("GET /api/v1/sessions/%s/events?since=0 HTTP/1.1\r\nHost: x\r\n"
               "Authorization: Bearer %s\r\nAccept: text/event-stream\r\n\r\n"
               % (code, token)).encode())
    data, deadline = b"", time.time() + timeout
    while data.count(b"\nid: ") < n and time.time() < deadline:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            continue
        if not chunk:
            break
        data += chunk
    s.close()
    out = []
    for block in data.partition(b"\r\n\r\n")[2].decode(errors="replace").split("\n\n"):
        lines = dict(l.split(": ", 1) for l in block.split("\n") if ": " in l)
        if "id" in lines and "data" in lines:
            msg = json.loads(lines["data"])
            out.append((msg["type"], msg["seq"], msg["data"]))
    return out


def replay(t, tallyctl, code, ptok, polls):
    single, multi, draft = polls
    r = t.request("POST", "/api/v1/sessions/%s/close" % code, token=ptok)
    check(r.status == 200, "close session 200")
    seq = t.request("GET", "/api/v1/sessions/%s" % code, token=ptok).json()["seq"]
    p = ctl(tallyctl, "replay", code, "--data-dir", t.data_dir)
    check(p.returncode == 0, "replay: exit 0 (%s)" % p.stderr)
    lines = [json.loads(l) for l in p.stdout.splitlines()]
    check([l["seq"] for l in lines] == list(range(1, seq + 1)),
          "replay: seq 1..%d gap-free (%s)" % (seq, [l["seq"] for l in lines]))
    types = [(l["type"], l["data"].get("id")) for l in lines]
    want = [("poll.created", single), ("poll.created", multi), ("poll.created", draft),
            ("poll.opened", single), ("poll.opened", multi), ("poll.closed", single),
            ("poll.closed", multi), ("session.closed", None)]
    if types:
        types[-1] = (types[-1][0], None)  # session.closed's id is the session's
    check(types == want, "replay: the events that happened, in order (%s)" % types)
    check(all(l["created_at"].endswith("Z") and "T" in l["created_at"] for l in lines),
          "replay: created_at in RFC 3339 UTC")
    closed = [l for l in lines if l["type"] == "poll.closed" and l["data"]["id"] == single]
    final = results(t, ptok, [single])[single]["counts"]
    check(closed and closed[0]["data"]["counts"] == final, "replay: poll.closed carries the final counts")

    # Exactly what a subscriber received, seq by seq.
    got = sse_events(t, code, ptok, seq)
    check([(l["type"], l["seq"], l["data"]) for l in lines] == got,
          "replay: the same events an SSE subscriber received (%d vs %d)" % (len(lines), len(got)))

    p = ctl(tallyctl, "replay", code, "--since", "5", "--data-dir", t.data_dir)
    check(p.returncode == 0 and [json.loads(l)["seq"] for l in p.stdout.splitlines()]
          == list(range(6, seq + 1)), "replay --since 5: only what came after")
    p = ctl(tallyctl, "replay", code, "--since=%d" % seq, "--data-dir", t.data_dir)
    check(p.returncode == 0 and p.stdout == "" and "no events after seq" in p.stderr,
          "replay --since last: nothing, and says so")


def bad_input(t, tallyctl):
    d = ["--data-dir", t.data_dir]
    cases = [
        (["export", "ABCDEF"] + d, 1, "no session with code ABCDEF"),
        (["replay", "abcdef"] + d, 1, "no session with code ABCDEF"),
        (["export", "ABC"] + d, 2, "invalid session code 'ABC'"),
        (["export"] + d, 2, "missing the session CODE"),
        (["export", "ABCDEF", "--frmat", "csv"] + d, 2, "unknown option '--frmat'"),
        (["export", "ABCDEF", "--format", "xml"] + d, 2, "invalid --format 'xml'"),
        (["export", "ABCDEF", "--format"] + d, 2, "missing value for --format"),
        (["replay", "ABCDEF", "--since", "-3"] + d, 2, "invalid --since '-3'"),
        (["replay", "ABCDEF", "--since", "x"] + d, 2, "invalid --since 'x'"),
        (["replay", "ABCDEF", "extra"] + d, 2, "unexpected argument 'extra'"),
        (["create", "--url", t.base], 2, "missing --title"),
        (["create", "--title", "x", "--url", "ftp://h"], 2, "invalid --url 'ftp://h'"),
        (["create", "--title", "x", "--url", "http://127.0.0.1:99999"], 2, "invalid --url"),
        (["create", "--title", "x", "--data-dir", "/tmp"], 2, "unknown option '--data-dir'"),
        (["bogus"], 2, "unknown command 'bogus'"),
        (["export", "ABCDEF", "--data-dir", "/nonexistent/tally"], 1, "no data directory"),
    ]
    for args, rc, msg in cases:
        p = ctl(tallyctl, *args)
        check(p.returncode == rc and msg in p.stderr,
              "tallyctl %s: exit %d with '%s' (got %d: %s)" % (" ".join(args[:3]), rc, msg,
                                                                p.returncode, p.stderr.strip()))
    # Nobody listens on this port: a clear message, exit 1, well within the timeout.
    port = free_port()
    t0 = time.time()
    p = ctl(tallyctl, "create", "--title", "x", "--url", "http://127.0.0.1:%d" % port)
    check(p.returncode == 1 and "cannot reach tallyd at http://127.0.0.1:%d" % port in p.stderr,
          "create to an unreachable URL: exit 1 and why (%d %s)" % (p.returncode, p.stderr))
    check(time.time() - t0 < 5, "create to a closed port fails at once")
    # A database that is not running: a clear message, exit 1.
    empty = os.path.join(t.data_dir, "empty")
    os.mkdir(empty)
    p = ctl(tallyctl, "replay", "ABCDEF", "--data-dir", empty)
    check(p.returncode == 1 and "is tallyd running?" in p.stderr,
          "replay without a running database: exit 1 and why (%s)" % p.stderr.strip())


def main():
    binary = sys.argv[1]
    tallyctl = os.path.join(os.path.dirname(binary), "tallyctl")
    t = Tally(binary)
    try:
        t.start()
        code, ptok = create(t, tallyctl)
        polls = populate(t, code, ptok)
        export(t, tallyctl, code, ptok, polls)
        replay(t, tallyctl, code, ptok, polls)
        bad_input(t, tallyctl)
        p = ctl(tallyctl, "verify", "--data-dir", t.data_dir)
        check(p.returncode == 0, "verify: every invariant holds (%s)" % p.stdout)
    except Exception:
        traceback.print_exc()
        print(t.log())
        check(False, "no exception")
    finally:
        if t.proc and t.proc.poll() is None:
            t.terminate()
        t.cleanup()
    if check.failed:
        print(t.log())
    return check.summary()


if __name__ == "__main__":
    sys.exit(main())
