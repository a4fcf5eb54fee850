#!/usr/bin/env bash
# One-command vote burst: builds an optimised tallyd and tally-stress, starts
# tallyd on a fresh embedded PostgreSQL, joins N participants and subscribes
# each over WebSocket, opens a poll, and every participant votes over its
# WebSocket within W seconds of the open (evenly spread). Prints poll.opened
# delivery, vote ack latency, how many were acked within the window and in
# all, errors, seq gaps, and tallyd's CPU and RSS, then stops everything.
#
#   stress/bench_burst.sh [PARTICIPANTS=20000] [WINDOW=2]
#
# BUILD=dir picks another build tree; JSON=file keeps the JSON result.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-20000}
WINDOW=${2:-2}
PORT=${PORT:-18482}
tools/deps.sh
. stress/bench_lib.sh
bench_build
bench_data
# shellcheck disable=SC2046
bench_start $(bench_big_flags "$N")
bench_machine
RC=0
"$BUILD"/bin/tally-stress burst --target "127.0.0.1:$PORT" --participants "$N" --window "$WINDOW" \
    --server-pid "$PID" --json "${JSON:-$DATA/burst.json}" || RC=$?
[ "$RC" -eq 0 ] || bench_failed "$RC"
exit "$RC"
