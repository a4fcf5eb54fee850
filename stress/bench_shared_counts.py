#!/usr/bin/env python3
"""Results across two instances on a poll that already holds many votes.

    stress/bench_shared_counts.py TALLYD [VOTES=100000] [SAMPLES=20] [TALLYD_BASE]

Starts instance A on a fresh embedded PostgreSQL and instance B on the same
database, opens a poll on A and stores VOTES votes in it straight into the
database (as if taken earlier by other instances). A presenter subscribes
to A's event stream; then SAMPLES votes are sent to B, 250 ms apart, and
each is timed from B's 201 to the first `results` on A that counts it.
While shared, A reads the poll's counts from the database every 40 ms or
more, so the figures are those reads' latency and cost: it prints the
latency percentiles and PostgreSQL's CPU per second over the sampling.

With TALLYD_BASE, the same run follows with that binary, for a side by
side comparison in one command.
"""
import os
import statistics
import subprocess
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import bench_vote_budget as budget  # noqa: E402
from tally_harness import Tally  # noqa: E402
from test_multi import Stream, call, js  # noqa: E402


def pg_cpu_s(A):
    """CPU seconds of A's embedded cluster so far (postmaster, backends, those
    that exited included)."""
    with open(os.path.join(A.data_dir, "pg", "postmaster.pid")) as f:
        return budget.cluster_cpu(int(f.readline()))


def psql(A, sql):
    cmd = ["psql", "-h", os.path.join(A.data_dir, "run"), "-U", "tally", "-d", "postgres",
           "-v", "ON_ERROR_STOP=1", "-qAt", "-c", sql]
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--"] + cmd
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()


def run(binary, votes, samples):
    A = Tally(binary, ["--instance-id", "a"])
    B = None
    stream = None
    try:
        A.start()
        url = "host=%s user=tally dbname=postgres" % os.path.join(A.data_dir, "run")
        B = Tally(binary, ["--database-url", url, "--instance-id", "b"])
        B.start()
        s = js(call(A, "POST", "/api/v1/sessions", {"title": "Stadium"}))
        code, ptok, sid = s["session"]["code"], s["presenter_token"], s["session"]["id"]
        poll = js(call(A, "POST", "/api/v1/sessions/%s/polls" % code,
                       {"question": "Who wins?", "kind": "single", "options": ["A", "B", "C", "D"]},
                       token=ptok))["poll"]["id"]
        call(A, "POST", "/api/v1/polls/%d/open" % poll, token=ptok)
        t0 = time.monotonic()
        psql(A, "INSERT INTO participants(session_id, name, token_hash) "
                "SELECT %d, 'bulk', md5(g::text || 'x') || md5(g::text || 'y') "
                "FROM generate_series(1, %d) g" % (sid, votes))
        psql(A, "INSERT INTO votes(session_id, poll_id, participant_id, choices, idem_key) "
                "SELECT session_id, %d, id, ARRAY[id %% 4]::smallint[], 'bulk-' || id "
                "FROM participants WHERE session_id = %d AND name = 'bulk'" % (poll, sid))
        psql(A, "ANALYZE votes")
        print("stored %d votes in %.1f s" % (votes, time.monotonic() - t0))
        toks = [js(call(B, "POST", "/api/v1/sessions/%s/participants" % code, {"name": "v%d" % i}))
                ["participant_token"] for i in range(samples)]
        stream = Stream("presenter on A", A, code, ptok)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(
                m.type == "results" and m.data.get("total", 0) >= votes for m in stream.snapshot()):
            time.sleep(0.05)
        lat = []
        cpu0, w0 = pg_cpu_s(A), time.monotonic()
        for i, tok in enumerate(toks):
            want = votes + i + 1
            r = call(B, "POST", "/api/v1/polls/%d/votes" % poll, {"choice": [i % 4]}, token=tok,
                     headers={"Idempotency-Key": str(uuid.uuid4())})
            t1 = time.monotonic()
            if r.status != 201:
                print("vote on B: %d" % r.status)
                continue
            got = None
            while got is None and time.monotonic() < t1 + 5:
                for m in stream.snapshot():
                    if m.type == "results" and m.data.get("total", 0) >= want and m.at >= t1:
                        got = m.at
                        break
                time.sleep(0.002)
            if got is not None:
                lat.append((got - t1) * 1000)
            time.sleep(max(0.0, t1 + 0.25 - time.monotonic()))
        cpu = (pg_cpu_s(A) - cpu0) / (time.monotonic() - w0)
        lat.sort()
        q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")
        print("%s: %d of %d votes seen on A; B's 201 -> results on A: p50 %.1f ms, p90 %.1f ms, "
              "max %.1f ms (mean %.1f); PostgreSQL CPU %.0f%% of a core"
              % (binary, len(lat), samples, q(0.5), q(0.9), lat[-1] if lat else float("nan"),
                 statistics.mean(lat) if lat else float("nan"), cpu * 100))
        return 0 if len(lat) == samples else 1
    finally:
        if stream:
            stream.close()
        if B is not None:
            B.cleanup()
        A.cleanup()


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    votes = int(sys.argv[2]) if len(sys.argv) > 2 else 100000
    samples = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    rc = run(sys.argv[1], votes, samples)
    if len(sys.argv) > 4:
        rc |= run(sys.argv[4], votes, samples)
    return rc


if __name__ == "__main__":
    sys.exit(main())
