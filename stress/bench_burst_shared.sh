#!/usr/bin/env bash
# One-command vote burst across two instances on one database: starts
# tallyd A on a fresh embedded PostgreSQL and tallyd B on the same database
# (--database-url), joins N participants through A, subscribes the even ones
# to A and the odd ones to B over WebSocket, opens a poll on A, and every
# participant votes over its own WebSocket within W seconds of the open.
# B's participants get `poll.opened` through B's follower, and both
# instances' votes go in while shared (checked inserts, counts read from the
# database). Prints what stress/bench_burst.sh prints (server figures are
# A's) and B's CPU over the run, then stops everything.
#
#   stress/bench_burst_shared.sh [PARTICIPANTS=20000] [WINDOW=2]
#
# BUILD=dir picks another build tree.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
WINDOW=${2:-2}
PORT=${PORT:-18483}
PORT_B=$((PORT + 1))
tools/deps.sh
. stress/bench_lib.sh
bench_build
bench_data
# shellcheck disable=SC2046
bench_start $(bench_big_flags "$N") --instance-id a
PID_B=""
stop_b() {
    if [ -n "$PID_B" ] && kill -0 "$PID_B" 2>/dev/null; then
        kill -TERM "$PID_B"
        wait "$PID_B" || true
    fi
    bench_cleanup
}
trap stop_b EXIT
mkdir -p "$DATA/b"
# shellcheck disable=SC2046
"$BUILD"/bin/tallyd --listen "127.0.0.1:$PORT_B" --data-dir "$DATA/b" \
    --database-url "host=$DATA/run user=tally dbname=postgres" --instance-id b \
    $(bench_big_flags "$N") >>"$DATA/b.log" 2>&1 &
PID_B=$!
for _ in $(seq 1 3000); do curl -sf "http://127.0.0.1:$PORT_B/readyz" >/dev/null 2>&1 && break; sleep 0.01; done
bench_machine
cpu_b() { awk '{print $14 + $15}' "/proc/$PID_B/stat"; }
T0=$(cpu_b)
RC=0
"$BUILD"/bin/tally-stress burst --target "127.0.0.1:$PORT" --second-port "$PORT_B" --participants "$N" \
    --window "$WINDOW" --server-pid "$PID" --json "${JSON:-$DATA/burst.json}" || RC=$?
echo "instance B: $(( ($(cpu_b) - T0) * 1000 / $(getconf CLK_TCK) )) ms CPU over the whole run (setup, subscriptions and burst)"
echo "database: $(psql -h "$DATA/run" -U tally -d postgres -qAt -c "SELECT count(*) FROM votes") votes stored"
[ "$RC" -eq 0 ] || { bench_failed "$RC"; tail -n 20 "$DATA/b.log"; }
exit "$RC"
