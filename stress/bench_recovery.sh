#!/usr/bin/env bash
# One-command recovery benchmark: fills a fresh embedded PostgreSQL with at
# least VOTES committed votes (with tallyd's own insert statement, straight
# into the database), kills tallyd with SIGKILL, starts it again on the same
# data directory and prints how long it takes until /readyz answers 200, how
# long loading the state took by tallyd's own account, and the CPU time
# tallyd had used by then (utime + stime: less sensitive than wall time to
# whatever else runs on the machine).
#
#   stress/bench_recovery.sh [VOTES=1000000] [ROUNDS=3]
#
# With BASE_TALLYD=/path/to/another/tallyd, each round restarts that binary
# too, on the same data, alternating with this one, and prints both side by
# side: the comparison of two loaders in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
VOTES=${1:-1000000}
ROUNDS=${2:-3}
PORT=${PORT:-18482}
BASE_TALLYD=${BASE_TALLYD:-}
. stress/bench_lib.sh
bench_build
bench_data
count() {
    psql -h "$DATA/run" -U tally -d postgres -At -c "SELECT count(*) FROM votes"
}
# cpu_ms PID: utime + stime of a process, in ms.
cpu_ms() {
    awk -v hz="$(getconf CLK_TCK)" '{ print int(($14 + $15) * 1000 / hz) }' "/proc/$1/stat"
}
# restart BIN LABEL: SIGKILL the running tallyd, start BIN on the same data,
# print one line.
restart() {
    local bin=$1 label=$2 t0 t1 cpu load
    kill -KILL "$PID"
    wait "$PID" 2>/dev/null || true
    : >"$DATA/tallyd.log.round"
    t0=$(date +%s%N)
    "$bin" --listen "127.0.0.1:$PORT" --data-dir "$DATA" >>"$DATA/tallyd.log.round" 2>&1 &
    PID=$!
    for _ in $(seq 1 6000); do
        curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && break
        kill -0 "$PID" 2>/dev/null || { tail -n 20 "$DATA/tallyd.log.round" >&2; exit 1; }
        sleep 0.01
    done
    t1=$(date +%s%N)
    cpu=$(cpu_ms "$PID")
    load=$(grep -o "votes in [0-9]* ms" "$DATA/tallyd.log.round" | tail -1 | grep -o "[0-9]*" || echo "?")
    cat "$DATA/tallyd.log.round" >>"$DATA/tallyd.log"
    printf "%-10s restart to ready %5d ms, state load %5s ms, tallyd CPU %5d ms\n" \
        "$label" $(( (t1 - t0) / 1000000 )) "$load" "$cpu"
}

bench_machine
bench_start
while [ "$(count)" -lt "$VOTES" ]; do
    "$BUILD"/bin/tally-stress rawpg --conninfo "host=$DATA/run user=tally dbname=postgres" \
        --connections 4 --batch 1000 --seconds 10 >/dev/null
done
echo "stored: $(count) votes"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$ROUNDS"); do
    if [ -n "$BASE_TALLYD" ]; then restart "$BASE_TALLYD" "base"; fi
    restart "$BUILD/bin/tallyd" "this"
done
grep -o "loaded [0-9]* sessions.*" "$DATA/tallyd.log" | tail -1
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
