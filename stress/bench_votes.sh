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
cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-rel -j"$(nproc)" --target tallyd tally-stress >/dev/null

DATA=$(mktemp -d /var/tmp/tally-bench.XXXXXX)
chmod 755 "$DATA"
cleanup() {
    if [ -n "${PID:-}" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"; wait "$PID" || true
    fi
    rm -rf "$DATA"
}
trap cleanup EXIT

build-rel/bin/tallyd --listen 127.0.0.1:$PORT --data-dir "$DATA" >"$DATA/tallyd.log" 2>&1 &
PID=$!
for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$PID/stat"; }
T0=$(cpu_ticks)
build-rel/bin/tally-stress votes --target 127.0.0.1:$PORT --clients "$CLIENTS" --seconds "$SECS" \
    --json "$DATA/votes.json"
T1=$(cpu_ticks)
HZ=$(getconf CLK_TCK)
echo "tallyd CPU during setup and run: $(( (T1 - T0) * 1000 / HZ )) ms"
