#!/usr/bin/env bash
# One-command fan-out benchmark: builds an optimised tallyd and tally-stress,
# starts tallyd on a fresh embedded PostgreSQL, connects N idle WebSocket
# subscribers to one session, posts votes at R/s for S seconds, prints
# delivered results messages/s, delivery latency, the server's bytes per
# idle connection and CPU per delivered message, then stops everything.
#
#   stress/bench_fanout.sh [SUBSCRIBERS=10000] [SECONDS=10] [RATE=200]
#
# The process fd limit here is 20000: tally-stress holds one socket per
# subscriber, so N stays at most 19000. BUILD=dir picks another build tree.
set -euo pipefail
cd "$(dirname "$0")/.."
SUBS=${1:-10000}
SECS=${2:-10}
RATE=${3:-200}
PORT=${PORT:-18481}
BUILD=${BUILD:-build-rel}
tools/deps.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target tallyd tally-stress >/dev/null

DATA=$(mktemp -d /var/tmp/tally-bench.XXXXXX)
chmod 755 "$DATA"
cleanup() {
    if [ -n "${PID:-}" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"; wait "$PID" || true
    fi
    rm -rf "$DATA"
}
trap cleanup EXIT

"$BUILD"/bin/tallyd --listen 127.0.0.1:$PORT --data-dir "$DATA" >"$DATA/tallyd.log" 2>&1 &
PID=$!
for _ in $(seq 1 600); do
    curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
RC=0
"$BUILD"/bin/tally-stress fanout --target 127.0.0.1:$PORT --subscribers "$SUBS" --seconds "$SECS" \
    --rate "$RATE" --server-pid "$PID" --json "$DATA/fanout.json" || RC=$?
if [ "$RC" -ne 0 ]; then
    echo "tally-stress exited $RC; last tallyd log lines:"
    tail -n 20 "$DATA/tallyd.log"
fi
exit "$RC"
