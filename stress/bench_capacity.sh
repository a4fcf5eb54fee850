#!/usr/bin/env bash
# One-command capacity run: builds an optimised tallyd and tally-stress,
# starts tallyd on a fresh embedded PostgreSQL and runs `tally-stress
# capacity`: N idle WebSocket subscribers from START up (x1.5 a step), votes
# at RATE/s for SECS s a step, until results delivery p95 exceeds 100 ms or
# errors exceed 0.1%. Prints every step and "this instance holds N
# participants at p95 X ms"; writes capacity.svg, capacity.html and
# capacity.json into OUT (default build/capacity) and the figure tallyd reads
# at start into FIGURE (default var/capacity.json: tallyd's default data dir).
#
#   stress/bench_capacity.sh [MAX=100000] [RATE=200] [SECS=10] [START=2000]
set -euo pipefail
cd "$(dirname "$0")/.."
MAX=${1:-100000}
RATE=${2:-200}
SECS=${3:-10}
START=${4:-2000}
PORT=${PORT:-18483}
OUT=${OUT:-build/capacity}
FIGURE=${FIGURE:-var/capacity.json}
tools/deps.sh
. stress/bench_lib.sh
bench_build
bench_data
# shellcheck disable=SC2046
bench_start $(bench_big_flags "$MAX")
MACHINE="$(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r | cut -d- -f1)"
bench_machine
RC=0
"$BUILD"/bin/tally-stress capacity --target "127.0.0.1:$PORT" --start "$START" --max "$MAX" \
    --rate "$RATE" --seconds "$SECS" --server-pid "$PID" --out "$OUT" --figure "$FIGURE" \
    --machine "$MACHINE" --json "$OUT/run.json" || RC=$?
[ "$RC" -eq 0 ] || bench_failed "$RC"
exit "$RC"
