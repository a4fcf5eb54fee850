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
. stress/bench_lib.sh
bench_build
bench_data
count() {
    psql -h "$DATA/run" -U tally -d postgres -At -c "SELECT count(*) FROM votes"
}

bench_machine
bench_start
while [ "$(count)" -lt "$VOTES" ]; do
    "$BUILD"/bin/tally-stress rawpg --conninfo "host=$DATA/run user=tally dbname=postgres" \
        --connections 4 --batch 1000 --seconds 10 >/dev/null
done
echo "stored: $(count) votes"
kill -KILL "$PID"
wait "$PID" 2>/dev/null || true
T0=$(date +%s%N)
bench_start
T1=$(date +%s%N)
echo "restart after SIGKILL to /readyz 200: $(( (T1 - T0) / 1000000 )) ms"
grep -o "loaded [0-9]* sessions.*" "$DATA/tallyd.log" | tail -1
grep -o "state loaded from the database in [0-9]* ms" "$DATA/tallyd.log" | tail -1
