#!/usr/bin/env python3
"""Two tallyd builds side by side under HTTP votes, alternated in one run.

    stress/bench_votes_ab.py TALLYD_A TALLYD_B [ROUNDS=4] [SECONDS=8]
    env: CLIENTS (512), PPC (participants per client, 64), STRESS (tally-stress
         binary, build-rel's by default)

Each round starts a fresh tallyd of each build on its own embedded
PostgreSQL (A first in even rounds, B first in odd ones) and runs
`tally-stress votes` against it. Per run it prints votes/s, the ack latency
line, and the CPU per vote (from /proc over the voting phase) of tallyd,
its session actor threads, PostgreSQL and the load generator; then the
means per build.

These machines are shared: their speed swings between runs, and every
process's CPU per vote swings with it. The load generator does the same
work per vote whatever the build, so the last columns divide tallyd's and
the actor's CPU per vote by the load generator's in the same run: that
ratio is what to compare between builds.
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
import bench_vote_budget as budget  # noqa: E402
from tally_harness import Tally  # noqa: E402


def one_run(binary, stress, clients, ppc, secs):
    t = Tally(binary, ["--max-connections", str(int(clients) + 20000), "--join-rate", "1000000",
                       "--threads", "2"])
    t.start()
    try:
        with open(os.path.join(t.data_dir, "pg", "postmaster.pid")) as f:
            pm = int(f.readline())
        out, gen, cpu = budget.run_load(
            [stress, "votes", "--clients", clients, "--participants-per-client", ppc, "--seconds", secs,
             "--target", "127.0.0.1:%d" % t.port],
            {"server": lambda: budget.cpu_of(t.proc.pid), "pg": lambda: budget.cluster_cpu(pm),
             "threads": lambda: budget.threads_cpu(t.proc.pid)})
    finally:
        t.cleanup()
    n = budget.field(out, "votes:", " s: ", " acknowledged")
    actor = sum(v for k, v in cpu["threads"].items() if k.startswith("tally-actor"))
    lat = [line for line in out.splitlines() if line.startswith("ack latency")]
    return {"rate": budget.field(out, "votes:", "acknowledged (", " votes/s"),
            "tallyd": cpu["server"] * 1e6 / n, "actor": actor * 1e6 / n,
            "pg": cpu["pg"] * 1e6 / n, "gen": gen * 1e6 / n, "lat": lat[0] if lat else ""}


def show(name, r):
    print("%s votes/s %7.0f  tallyd %5.1f  actor %5.2f  PostgreSQL %5.1f  load gen %5.1f  "
          "tallyd/gen %.2f  actor/gen %.3f" % (name, r["rate"], r["tallyd"], r["actor"], r["pg"], r["gen"],
                                               r["tallyd"] / r["gen"], r["actor"] / r["gen"]), flush=True)


def main():
    if len(sys.argv) < 3:
        print(__doc__)
        sys.exit(2)
    bins = {"A": sys.argv[1], "B": sys.argv[2]}
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    secs = sys.argv[4] if len(sys.argv) > 4 else "8"
    clients = os.environ.get("CLIENTS", "512")
    ppc = os.environ.get("PPC", "64")
    stress = os.environ.get("STRESS", os.path.join(HERE, "..", "build-rel", "bin", "tally-stress"))
    print("A = %s\nB = %s\n%d rounds, %s clients x %s participants, %s s each" %
          (bins["A"], bins["B"], rounds, clients, ppc, secs))
    res = {"A": [], "B": []}
    for r in range(rounds):
        for k in ("A", "B") if r % 2 == 0 else ("B", "A"):
            run = one_run(bins[k], stress, clients, ppc, secs)
            res[k].append(run)
            show(k, run)
            print("  " + run["lat"])
    print()
    for k in ("A", "B"):
        runs = res[k]
        mean = {f: sum(x[f] for x in runs) / len(runs) for f in ("rate", "tallyd", "actor", "pg", "gen")}
        show(k + " mean", mean)
        ratios = [x["tallyd"] / x["gen"] for x in runs]
        print("  tallyd/gen per run: " + " ".join("%.2f" % x for x in ratios))


if __name__ == "__main__":
    main()
