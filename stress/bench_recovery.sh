#!/usr/bin/env bash
# One-command recovery benchmark: fills a fresh embedded PostgreSQL with at
# least VOTES committed votes (with tallyd's own insert statement, straight
# into the database), kills tallyd with SIGKILL, starts it again on the same
# data directory and prints how long it takes until /readyz answers 200, and
# how long loading the state took by tallyd's own account.
#
#   stress/bench_recovery.sh [VOTES=1000000]
set -euo pipefail
cd "$(dirname "$0")/.."
VOTES=${1:-1000000}
PORT=${PORT:-18482}
cmake -S . -B build-rel -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-rel -j"$(nproc)" --target tallyd tally-stress >/dev/null

DATA=$(mktemp -d /var/tmp/tally-recovery.XXXXXX)
chmod 755 "$DATA"
cleanup() {
    if [ -n "${PID:-}" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"; wait "$PID" || true
    fi
    rm -rf "$DATA"
}
trap cleanup EXIT

start() {
    build-rel/bin/tallyd --listen 127.0.0.1:$PORT --data-dir "$DATA" >>"$DATA/tallyd.log" 2>&1 &
    PID=$!
}
wait_ready() {
    for _ in $(seq 1 6000); do
        curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0
        sleep 0.01
    done
    echo "tallyd did not become ready" >&2
    tail -20 "$DATA/tallyd.log" >&2
    return 1
}
count() {
    psql -h "$DATA/run" -U tally -d postgres -At -c "SELECT count(*) FROM votes"
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
start
wait_ready
while [ "$(count)" -lt "$VOTES" ]; do
    build-rel/bin/tally-stress rawpg --conninfo "host=$DATA/run user=tally dbname=postgres" \
        --connections 4 --batch 1000 --seconds 10 >/dev/null
done
echo "stored: $(count) votes"
kill -KILL "$PID"
wait "$PID" 2>/dev/null || true
T0=$(date +%s%N)
start
wait_ready
T1=$(date +%s%N)
echo "restart after SIGKILL to /readyz 200: $(( (T1 - T0) / 1000000 )) ms"
grep -o "loaded [0-9]* sessions.*" "$DATA/tallyd.log" | tail -1
grep -o "state loaded from the database in [0-9]* ms" "$DATA/tallyd.log" | tail -1
