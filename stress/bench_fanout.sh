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
tools/deps.sh
. stress/bench_lib.sh
bench_build
bench_data
bench_start
bench_machine
RC=0
"$BUILD"/bin/tally-stress fanout --target 127.0.0.1:$PORT --subscribers "$SUBS" --seconds "$SECS" \
    --rate "$RATE" --server-pid "$PID" --json "$DATA/fanout.json" || RC=$?
if [ "$RC" -ne 0 ]; then
    echo "tally-stress exited $RC; last tallyd log lines:"
    tail -n 20 "$DATA/tallyd.log"
fi
exit "$RC"
