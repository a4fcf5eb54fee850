#!/usr/bin/env python3
"""Where a durable vote's CPU goes on this machine, and the best ratio to the
raw insert rate that any server could reach here with clients on loopback.

    stress/bench_vote_budget.py [BUILD [CLIENTS [SECONDS]]]   (build-rel 512 10)

One command, three runs on one fresh embedded PostgreSQL:

1. `tally-stress votes` (keep-alive HTTP voters) through tallyd: votes/s and
   the CPU each part spends per vote (tallyd, PostgreSQL, load generator);
2. the same voters against `tally-floor` (stress/peers/floor.c), which
   answers every vote at once and stores nothing: the CPU an HTTP vote costs
   a server and its client on loopback with no work behind it;
3. `tally-stress rawpg --form plain` (4 connections x 1,000-row batches)
   with tallyd idle: the raw rate and PostgreSQL's CPU per raw row;
4. the same with `--order spread`: each batch holds participants spread over
   the whole table, as a batch of votes from many clients does, instead of
   one contiguous run: PostgreSQL's CPU per row for votes in the order
   they arrive.

CPU is read from /proc (utime + stime) over the voting phase only: the
load generator's from the moment it prints "setup:" to its exit (wait4),
PostgreSQL's summed over the cluster's processes. The bound printed last
assumes the CPU is the limit and every cycle of both cores is used:
    best rate = cores / (PostgreSQL per raw row + floor server per vote
                         + load generator per vote)
and divides it by the raw rate. PostgreSQL's per-row cost at 1,000-row
batches of contiguous rows is the least it can spend on a vote, and the
floor server the least a server can, so a ratio below 0.5 there means no
server reaches 0.5 of the raw rate on this machine with its clients on
loopback. A second bound takes PostgreSQL's cost for the same batches in
arrival order (run 4), which is what votes from many clients cost it.
"""
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
from tally_harness import Tally, free_port  # noqa: E402

TCK = os.sysconf("SC_CLK_TCK")


def cpu_of(pid, reaped=False):
    """utime + stime of one process in seconds, 0 when it is gone; with
    reaped, also that of its children that exited and were waited for."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
    except OSError:
        return 0.0
    fields = st[st.rindex(")") + 2:].split()
    ticks = int(fields[11]) + int(fields[12])
    if reaped:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TCK


def threads_cpu(pid):
    """CPU seconds of each kind of thread of a process so far, by name with
    the trailing digits dropped (tally-net0 and tally-net1 are tally-net)."""
    kinds = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return kinds
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                st = f.read()
        except OSError:
            continue
        name = st[st.index("(") + 1:st.rindex(")")].rstrip("0123456789")
        fields = st[st.rindex(")") + 2:].split()
        kinds[name] = kinds.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TCK
    return kinds


def cluster_cpu(postmaster):
    """CPU seconds of the postmaster and its children (the backends, the
    WAL writer, the checkpointer...) so far, those that exited included
    (a backend ends with its connection, and the postmaster reaps it)."""
    total = cpu_of(postmaster, reaped=True)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                st = f.read()
        except OSError:
            continue
        if int(st[st.rindex(")") + 2:].split()[1]) == postmaster:
            total += cpu_of(int(name))
    return total


def run_load(cmd, watch):
    """Runs a tally-stress command; returns (output, its own CPU, the CPU of
    every watched process) over the phase after its "setup:" line."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    lines, start, mine = [], None, 0.0
    for line in proc.stdout:
        lines.append(line)
        if line.startswith("setup:"):
            mine = cpu_of(proc.pid)
            start = {k: f() for k, f in watch.items()}
            break
    if start is None:
        raise RuntimeError("no setup line from %s:\n%s" % (cmd, "".join(lines)))
    lines += proc.stdout.readlines()
    _, status, ru = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    # The backends of its connections end with it: give the postmaster a
    # moment to reap them, or their CPU is counted neither live nor reaped.
    time.sleep(0.3)
    end = {k: f() for k, f in watch.items()}
    gen = ru.ru_utime + ru.ru_stime - mine
    return "".join(lines), gen, {k: diff(end[k], start[k]) for k in watch}


def diff(a, b):
    """a - b, for numbers or for dicts of numbers."""
    if isinstance(a, dict):
        return {k: a[k] - b.get(k, 0.0) for k in a}
    return a - b


def field(out, prefix, after, upto):
    for line in out.splitlines():
        if line.startswith(prefix) and after in line:
            return float(line.split(after)[1].split(upto)[0].replace(",", ""))
    raise RuntimeError("no %r in:\n%s" % (after, out))


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else "build-rel"
    clients = sys.argv[2] if len(sys.argv) > 2 else "512"
    secs = sys.argv[3] if len(sys.argv) > 3 else "10"
    bindir = os.path.join(ROOT, build, "bin")
    stress = os.path.join(bindir, "tally-stress")
    cores = os.cpu_count()
    print("machine: %d cores, %s; %s" % (cores, os.uname().release, time.strftime("%Y-%m-%d", time.gmtime())))
    t = Tally(os.path.join(bindir, "tallyd"), ["--max-connections", str(int(clients) + 20000),
                                               "--join-rate", "1000000", "--threads", "2"])
    floor = None
    try:
        t.start()
        with open(os.path.join(t.data_dir, "pg", "postmaster.pid")) as f:
            postmaster = int(f.readline())
        pg = lambda: cluster_cpu(postmaster)  # noqa: E731
        rows = []

        votes = [stress, "votes", "--clients", clients, "--seconds", secs]
        out, gen, cpu = run_load(votes + ["--target", "127.0.0.1:%d" % t.port],
                                 {"server": lambda: cpu_of(t.proc.pid), "pg": pg,
                                  "threads": lambda: threads_cpu(t.proc.pid)})
        n = field(out, "votes:", " s: ", " acknowledged")
        by_thread = cpu["threads"]
        rows.append(("tallyd (HTTP votes)", field(out, "votes:", "acknowledged (", " votes/s"),
                     cpu["server"], cpu["pg"], gen, n))
        print(out.strip())

        port = free_port()
        floor = subprocess.Popen([os.path.join(bindir, "tally-floor"), "--port", str(port)],
                                 stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        out, gen, cpu = run_load(votes + ["--target", "127.0.0.1:%d" % port],
                                 {"server": lambda: cpu_of(floor.pid)})
        n = field(out, "votes:", " s: ", " acknowledged")
        rows.append(("floor (answers, stores nothing)", field(out, "votes:", "acknowledged (", " votes/s"),
                     cpu["server"], 0.0, gen, n))
        print(out.strip())
        floor.terminate()
        floor.wait()
        floor = None

        conninfo = "host=%s user=tally dbname=postgres" % os.path.join(t.data_dir, "run")
        for order, name in (("blocks", "raw plain INSERT, 4 x 1,000"), ("spread", "raw, same in arrival order")):
            out, gen, cpu = run_load([stress, "rawpg", "--conninfo", conninfo, "--form", "plain",
                                      "--connections", "4", "--batch", "1000", "--order", order,
                                      "--seconds", secs], {"pg": pg})
            print(out.strip())
            n = field(out, "rawpg:", " s: ", " rows")
            rows.append((name, field(out, "rawpg:", "commits (", " rows/s"), 0.0, cpu["pg"], gen, n))
        raw = rows[2][1]

        print("\n%-34s %10s %11s %11s %11s %11s %9s" % ("per vote (row), us of CPU", "votes/s", "server",
                                                       "PostgreSQL", "load gen", "all", "/ raw"))
        for name, rate, srv, pgc, g, n in rows:
            per = [x * 1e6 / n for x in (srv, pgc, g)]
            print("%-34s %10.0f %11.1f %11.1f %11.1f %11.1f %9.2f" % (name, rate, per[0], per[1], per[2],
                                                                      sum(per), rate / raw))
        n_t = rows[0][5]
        print("tallyd by thread, us per vote: " + ", ".join(
            "%s %.1f" % (k, v * 1e6 / n_t) for k, v in sorted(by_thread.items(), key=lambda kv: -kv[1])))
        fl = rows[1]
        floor_server, floor_gen = fl[2] * 1e6 / fl[5], fl[4] * 1e6 / fl[5]
        print("\nPostgreSQL used %.2f of %d cores during the raw run." % (rows[2][3] / float(secs), cores))
        for r, what in ((rows[2], "contiguous rows"), (rows[3], "rows in arrival order")):
            pg_row = r[3] * 1e6 / r[5]
            best = cores * 1e6 / (pg_row + floor_server + floor_gen)
            print("bound, %s: %d cores / (PostgreSQL %.1f + floor server %.1f + load generator %.1f us)"
                  " = %.0f votes/s = %.2f of the raw rate" % (what, cores, pg_row, floor_server, floor_gen,
                                                              best, best / raw))
    finally:
        if floor is not None:
            floor.terminate()
            floor.wait()
        t.cleanup()


if __name__ == "__main__":
    main()
