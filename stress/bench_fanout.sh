#!/usr/bin/env bash
# One-command fan-out benchmark: builds an optimised tallyd and tally-stress,
# starts tallyd on a fresh embedded PostgreSQL, connects N idle WebSocket
# subscribers to one session (io_uring engine, direct descriptors: N is not
# bound by the 20,000-fd limit), posts votes at R/s for S seconds, prints
# delivered results messages/s, delivery latency, the server's bytes per
# idle connection and CPU per delivered message, then stops everything.
#
#   stress/bench_fanout.sh [SUBSCRIBERS=10000] [SECONDS=10] [RATE=200]
#
# BUILD=dir picks another build tree; JSON=file keeps the JSON result.
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
# shellcheck disable=SC2046
bench_start $(bench_big_flags "$SUBS")
bench_machine
RC=0
"$BUILD"/bin/tally-stress fanout --target "127.0.0.1:$PORT" --subscribers "$SUBS" --seconds "$SECS" \
    --rate "$RATE" --server-pid "$PID" --json "${JSON:-$DATA/fanout.json}" || RC=$?
[ "$RC" -eq 0 ] || bench_failed "$RC"
exit "$RC"
