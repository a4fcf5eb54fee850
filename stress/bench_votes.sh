#!/usr/bin/env bash
# One-command vote benchmark: builds an optimised tallyd and tally-stress,
# starts tallyd on a fresh embedded PostgreSQL, drives durable HTTP votes
# from N keep-alive clients for S seconds, prints the figures and tallyd's
# CPU time, then stops everything.
#
#   stress/bench_votes.sh [CLIENTS=64] [SECONDS=10]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-64}
SECS=${2:-10}
PORT=${PORT:-18480}
tools/deps.sh
. stress/bench_lib.sh
bench_build
bench_data
bench_start
bench_machine
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
T0=$(cpu_ticks)
"$BUILD"/bin/tally-stress votes --target 127.0.0.1:$PORT --clients "$CLIENTS" --seconds "$SECS" \
    --json "$DATA/votes.json"
T1=$(cpu_ticks)
HZ=$(getconf CLK_TCK)
echo "tallyd CPU during setup and run: $(( (T1 - T0) * 1000 / HZ )) ms"
