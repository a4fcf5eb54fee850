#!/usr/bin/env bash
# Storage baseline: how close durable votes through tallyd come to what the
# database alone accepts. Builds an optimised tallyd and tally-stress, starts
# tallyd on a fresh embedded PostgreSQL, drives `tally-stress votes` with 64
# and 256 keep-alive clients, then, with tallyd idle, runs `tally-stress
# rawpg` (tallyd's own INSERT ... unnest statement, 4 connections, batches
# of 1000 and of 100 rows) against the SAME cluster, and prints both side by
# side. Both paths commit with synchronous_commit on, so every row counted
# is durable.
#
#   stress/bench_storage.sh [SECONDS=10]
#
# tallyd stops its cluster on SIGTERM; the trap sends it even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
PORT=${PORT:-18481}
# Fallbacks when 256 client threads cannot run here (thread or fd limits):
# the largest that works is reported, and named in the table.
CLIENTS_HIGH=(256 192 128)
. stress/bench_lib.sh
bench_build
bench_data
bench_start
bench_machine

# votes CLIENTS: one run; its JSON lands in DATA/votes-CLIENTS.json.
votes() {
    echo "== tally-stress votes --clients $1 --seconds $SECS"
    "$BUILD"/bin/tally-stress votes --target 127.0.0.1:$PORT --clients "$1" --seconds "$SECS" \
        --json "$DATA/votes-$1.json"
}
# jfield FILE EXPR: one value of a votes JSON report, e.g. "j['votes_per_s']".
jfield() {
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}

votes 64 || { echo "bench_storage: votes with 64 clients failed" >&2; exit 1; }
HIGH=
for c in "${CLIENTS_HIGH[@]}"; do
    if votes "$c"; then HIGH=$c; break; fi
    echo "bench_storage: votes with $c clients failed; trying fewer" >&2
done
[ -n "$HIGH" ] || { echo "bench_storage: no high-client votes run succeeded" >&2; exit 1; }

# The votes runs have returned, so tallyd carries no traffic now; it keeps
# running only because it owns the cluster.
CONN="host=$DATA/run user=tally dbname=postgres"
rawpg() {
    echo "== tally-stress rawpg --connections 4 --batch $1 --seconds $SECS"
    "$BUILD"/bin/tally-stress rawpg --conninfo "$CONN" --connections 4 --batch "$1" \
        --seconds "$SECS" | tee "$DATA/rawpg-$1.txt"
}
rawpg 1000
rawpg 100
# rfield BATCH: "rows/s p50 p99" from a rawpg report.
rfield() {
    awk '/^rawpg:/ { if (match($0, /\([0-9]+ rows\/s/)) r = substr($0, RSTART + 1, RLENGTH - 8) }
         /^commit latency/ { p50 = $5; p99 = $7 }
         END { print r, p50, p99 }' "$DATA/rawpg-$1.txt"
}
read -r R1000 R1000_P50 R1000_P99 < <(rfield 1000)
read -r R100 R100_P50 R100_P99 < <(rfield 100)

row() { # label rate p50 p99
    awk -v l="$1" -v r="$2" -v a="$3" -v b="$4" -v r1="$R1000" -v r2="$R100" \
        'BEGIN { printf "| %-40s | %9.0f | %7s | %7s | %6.2f | %6.2f |\n", l, r, a, b, r/r1, r/r2 }'
}
vrow() { # clients
    local f="$DATA/votes-$1.json"
    row "tallyd votes, $1 clients (HTTP ack)" "$(jfield "$f" "j['votes_per_s']")" \
        "$(jfield "$f" "j['ack_ms']['p50']")" "$(jfield "$f" "j['ack_ms']['p99']")"
}
echo
echo "durable rows/s, ${SECS} s each, one embedded PostgreSQL cluster; latency in ms"
echo "(votes: HTTP ack; rawpg: statement + commit); x1000/x100 = rate / raw rate at that batch"
printf "| %-40s | %9s | %7s | %7s | %6s | %6s |\n" "path" "rows/s" "p50" "p99" "x1000" "x100"
echo "|------------------------------------------|-----------|---------|---------|--------|--------|"
vrow 64
vrow "$HIGH"
row "raw unnest INSERT, 4 conns x batch 1000" "$R1000" "$R1000_P50" "$R1000_P99"
row "raw unnest INSERT, 4 conns x batch 100" "$R100" "$R100_P50" "$R100_P99"
[ "$HIGH" = 256 ] || echo "note: 256 clients failed; the high row uses $HIGH clients"
