"""tally-stress rawpg, the storage baseline the vote benchmarks are read
against: every row it counts is in the votes table, once, and --order says
which participants a batch holds (a contiguous run of a poll's participants,
or participants spread over the whole poll, as votes from many clients are).

usage: test_rawpg.py PATH/TO/tallyd   (tally-stress is taken from the same directory)
"""
import os
import re
import subprocess

from tally_harness import Checks, Tally, pg_bindir

check = Checks()
BATCH = 100
PARTICIPANTS = 20000  # rawpg's RAWPG_PARTICIPANTS


def sql(t, query):
    p = subprocess.run([os.path.join(pg_bindir(), "psql"), "-h", os.path.join(t.data_dir, "run"),
                        "-U", "tally", "-d", "postgres", "-tAF", ",", "-c", query],
                       capture_output=True, text=True, timeout=60)
    if p.returncode != 0:
        raise RuntimeError("psql: " + p.stderr)
    return [line.split(",") for line in p.stdout.split()]


def rawpg(t, stress, order, form="plain"):
    conninfo = "host=%s user=tally dbname=postgres" % os.path.join(t.data_dir, "run")
    p = subprocess.run([stress, "rawpg", "--conninfo", conninfo, "--form", form, "--connections", "1",
                        "--batch", str(BATCH), "--seconds", "1", "--order", order],
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, "rawpg --order %s: exit 0 (%d %s)" % (order, p.returncode, p.stderr))
    session = int(re.search(r"^setup: session (\d+)", p.stdout, re.M).group(1))
    m = re.search(r"^rawpg: %s \(%s\), 1 connections x batch %d, [\d.]+ s: (\d+) rows in (\d+) commits"
                  r".*, (\d+) conflicts$" % (form, order, BATCH), p.stdout, re.M)
    check(m is not None, "rawpg --order %s: its summary line (%s)" % (order, p.stdout.strip()))
    return session, int(m.group(1)), int(m.group(2)), int(m.group(3))


def run(tallyd):
    stress = os.path.join(os.path.dirname(tallyd), "tally-stress")
    t = Tally(tallyd)
    try:
        t.start()
        for order in ("blocks", "spread"):
            session, rows, commits, conflicts = rawpg(t, stress, order)
            check(rows > 0 and rows == commits * BATCH and conflicts == 0,
                  "%s: %d rows in %d whole batches, no conflict (%d)" % (order, rows, commits, conflicts))
            stored = sql(t, "SELECT count(*), count(DISTINCT (poll_id, participant_id)) FROM votes "
                            "WHERE session_id = %d" % session)[0]
            check(int(stored[0]) == rows and int(stored[1]) == rows,
                  "%s: the %d rows counted are stored, each pair once (%s)" % (order, rows, stored))
            # One connection: the first BATCH rows by id are the first batch.
            n, lo, hi = (int(x) for x in sql(
                t, "SELECT count(*), min(p.rn), max(p.rn) FROM (SELECT participant_id FROM votes "
                   "WHERE session_id = %d ORDER BY id LIMIT %d) v JOIN (SELECT id, row_number() "
                   "OVER (ORDER BY id) AS rn FROM participants WHERE session_id = %d) p "
                   "ON p.id = v.participant_id" % (session, BATCH, session))[0])
            span = BATCH - 1 if order == "blocks" else (BATCH - 1) * (PARTICIPANTS // BATCH)
            check(n == BATCH and hi - lo == span,
                  "%s: the first batch's participants span %d places (%d rows, %d..%d)"
                  % (order, span, n, lo, hi))
        p = subprocess.run([stress, "rawpg", "--conninfo", "host=/nonexistent", "--order", "sideways"],
                           capture_output=True, text=True, timeout=60)
        check(p.returncode == 2 and "--order blocks|spread" in p.stderr,
              "an unknown --order: exit 2 with the usage (%d %s)" % (p.returncode, p.stderr.strip()))
    finally:
        t.cleanup()


if __name__ == "__main__":
    check.main(run)
