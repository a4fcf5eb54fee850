#!/usr/bin/env bash
# Storage baseline: how close durable votes through tallyd come to what the
# database alone accepts. Builds an optimised tallyd and tally-stress, starts
# tallyd on a fresh embedded PostgreSQL, drives it with 64 clients (below
# saturation) and 512 clients (saturation), each count over HTTP (`tally-stress
# votes`: keep-alive clients voting back to back) and then over WebSocket
# (`tally-stress wsvotes`: clients voting back to back, the next vote as soon
# as the previous ack arrives), and over HTTP once more at 1,024 clients (the
# peak here); then, with tallyd idle, runs `tally-stress
# rawpg` against the SAME cluster, 4 connections x 1000-row batches, in three
# forms: tallyd's own INSERT ... unnest ... ON CONFLICT ... RETURNING, the
# plain INSERT ... unnest, and COPY; and prints all side by side, each rate
# divided by the best raw one (the larger of plain and COPY). Every path
# commits with synchronous_commit on, so every row counted is durable.
#
#   stress/bench_storage.sh [SECONDS=10]
#
# WebSocket participants per client: WS_PPC_LOW (64 clients, default 24) and
# WS_PPC_HIGH (512 clients, default 4), no more than needed since every
# subscriber also receives its session's `results`. tallyd takes 10 votes/s
# per participant, so 512 x 4 caps a run at 20,480 votes/s, and such a run
# comes close to it (its `paced` count in the notes says how often a client
# waited); a last WebSocket run, 2,048 clients x 2 (cap 40,960), is not held
# back that way, and shows what the CPU allows. WS_POLLS_HIGH (default 11 x
# SECONDS + 1) polls per session at 512 and 2,048 clients: each poll is
# created and opened over HTTP before the run, so that setup dominates the
# run time, and a client at the cap never runs out of polls.
#
# tallyd stops its cluster on SIGTERM; the trap sends it even on failure.
set -euo pipefail
cd "$(dirname "$0")/.."
SECS=${1:-10}
PORT=${PORT:-18481}
# Fallbacks when 256 client threads cannot run here (thread or fd limits):
# the largest that works is reported, and named in the table.
CLIENTS_HIGH=(512 256 128)
WS_PPC_LOW=${WS_PPC_LOW:-24}
WS_PPC_HIGH=${WS_PPC_HIGH:-4}
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
# wsvotes CLIENTS PPC [POLLS]: one WebSocket run; its JSON lands in DATA/wsvotes-CLIENTS.json.
wsvotes() {
    local polls=()
    [ -z "${3:-}" ] || polls=(--polls "$3")
    echo "== tally-stress wsvotes --clients $1 --participants-per-client $2 ${polls[*]} --seconds $SECS"
    "$BUILD"/bin/tally-stress wsvotes --target 127.0.0.1:$PORT --clients "$1" \
        --participants-per-client "$2" "${polls[@]}" --seconds "$SECS" --server-pid "$PID" \
        --json "$DATA/wsvotes-$1.json"
}
# jfield FILE EXPR: one value of a votes JSON report, e.g. "j['votes_per_s']".
jfield() {
    python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}

votes 64 || { echo "bench_storage: votes with 64 clients failed" >&2; exit 1; }
# A WebSocket run that ends with refusals or lost answers still prints its
# figures; the table shows its errors.
wsvotes 64 "$WS_PPC_LOW" || echo "bench_storage: wsvotes with 64 clients reported errors" >&2
# With BASE_TALLYD=/path/to/another/tallyd, that binary runs as a second
# instance on the same cluster (--database-url) and gets the same 256-client
# run, for a comparison of two builds in one run.
BASE_PID=
if [ -n "${BASE_TALLYD:-}" ]; then
    BPORT=$((PORT + 1))
    "$BASE_TALLYD" --listen "127.0.0.1:$BPORT" --database-url "host=$DATA/run user=tally dbname=postgres" \
        --instance-id base --data-dir "$DATA/base" >>"$DATA/base.log" 2>&1 &
    BASE_PID=$!
    for _ in $(seq 1 3000); do curl -sf "http://127.0.0.1:$BPORT/readyz" >/dev/null 2>&1 && break; sleep 0.01; done
    echo "== base: tally-stress votes --clients 256 --seconds $SECS"
    "$BUILD"/bin/tally-stress votes --target 127.0.0.1:$BPORT --clients 256 --seconds "$SECS" \
        --json "$DATA/votes-base.json" || true
    kill -TERM "$BASE_PID"; wait "$BASE_PID" || true
fi
HIGH=
for c in "${CLIENTS_HIGH[@]}"; do
    if votes "$c"; then HIGH=$c; break; fi
    echo "bench_storage: votes with $c clients failed; trying fewer" >&2
done
[ -n "$HIGH" ] || { echo "bench_storage: no high-client votes run succeeded" >&2; exit 1; }
wsvotes "$HIGH" "$WS_PPC_HIGH" "${WS_POLLS_HIGH:-$((11 * SECS + 1))}" ||
    echo "bench_storage: wsvotes with $HIGH clients reported errors" >&2
# HTTP votes peak near 1,024 clients here (2,048 gives no more): the
# highest rate tallyd takes, for the ratio to the raw rate.
votes 1024 || echo "bench_storage: votes with 1024 clients failed" >&2
wsvotes 2048 2 "${WS_POLLS_HIGH:-$((11 * SECS + 1))}" ||
    echo "bench_storage: wsvotes with 2048 clients reported errors" >&2

# The votes runs have returned, so tallyd carries no traffic now; it keeps
# running only because it owns the cluster.
CONN="host=$DATA/run user=tally dbname=postgres"
rawpg() { # FORM
    echo "== tally-stress rawpg --form $1 --connections 4 --batch 1000 --seconds $SECS"
    "$BUILD"/bin/tally-stress rawpg --conninfo "$CONN" --form "$1" --connections 4 --batch 1000 \
        --seconds "$SECS" | tee "$DATA/rawpg-$1.txt"
}
rawpg tallyd
rawpg plain
rawpg copy
# rfield FORM: "rows/s p50 p99" from a rawpg report.
rfield() {
    awk '/^rawpg:/ { if (match($0, /\([0-9]+ rows\/s/)) r = substr($0, RSTART + 1, RLENGTH - 8) }
         /^commit latency/ { p50 = $5; p99 = $7 }
         END { print r, p50, p99 }' "$DATA/rawpg-$1.txt"
}
read -r RT RT_P50 RT_P99 < <(rfield tallyd)
read -r RP RP_P50 RP_P99 < <(rfield plain)
read -r RC RC_P50 RC_P99 < <(rfield copy)
BEST=$(awk -v a="$RP" -v b="$RC" 'BEGIN { print (a > b ? a : b) }')

row() { # label rate p50 p99
    awk -v l="$1" -v r="$2" -v a="$3" -v b="$4" -v best="$BEST" \
        'BEGIN { printf "| %-42s | %9.0f | %7.2f | %7.2f | %6.2f |\n", l, r, a, b, r/best }'
}
vrow() { # clients
    local f="$DATA/votes-$1.json"
    row "tallyd votes, $1 clients (HTTP ack)" "$(jfield "$f" "j['votes_per_s']")" \
        "$(jfield "$f" "j['ack_ms']['p50']")" "$(jfield "$f" "j['ack_ms']['p99']")"
}
wrow() { # clients
    local f="$DATA/wsvotes-$1.json"
    [ -f "$f" ] || { echo "| tallyd votes, $1 clients (WebSocket ack): no report |"; return; }
    row "tallyd votes, $1 clients (WebSocket ack)" "$(jfield "$f" "j['votes_per_s']")" \
        "$(jfield "$f" "j['ack_ms']['p50']")" "$(jfield "$f" "j['ack_ms']['p99']")"
}
# wnote CLIENTS: what else the WebSocket run did and cost.
wnote() {
    local f="$DATA/wsvotes-$1.json"
    [ -f "$f" ] || return 0
    jfield "$f" "'ws %d clients x %d participants: p99.9 %.1f ms, %.0f results msgs/s (%.2f per ack), ' \
        '%d refused, %d unanswered, %d paced, tallyd CPU %.0f%% of a core' % (j['clients'], \
        j['participants_per_client'], j['ack_ms']['p999'], j['results_per_s'], \
        j['results_per_s'] / max(j['votes_per_s'], 1), sum(j['vote_errors'].values()), \
        j['unanswered'], j['paced'], 100 * j['server_cpu_s'] / j['seconds'])"
}
echo
echo "durable rows/s, ${SECS} s each, one embedded PostgreSQL cluster; latency in ms"
echo "(votes: HTTP or WebSocket ack; rawpg: statement + commit); / raw = rate / best raw rate (plain or COPY)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
printf "| %-42s | %9s | %7s | %7s | %6s |\n" "path" "rows/s" "p50" "p99" "/ raw"
echo "|--------------------------------------------|-----------|---------|---------|--------|"
vrow 64
wrow 64
vrow "$HIGH"
wrow "$HIGH"
[ ! -f "$DATA/votes-1024.json" ] || vrow 1024
[ ! -f "$DATA/wsvotes-2048.json" ] || wrow 2048
if [ -f "$DATA/votes-base.json" ]; then
    f="$DATA/votes-base.json"
    row "base tallyd votes, 256 clients (HTTP ack)" "$(jfield "$f" "j['votes_per_s']")" \
        "$(jfield "$f" "j['ack_ms']['p50']")" "$(jfield "$f" "j['ack_ms']['p99']")"
fi
row "raw, tallyd's INSERT, 4 conns x 1000" "$RT" "$RT_P50" "$RT_P99"
row "raw, plain INSERT unnest, 4 conns x 1000" "$RP" "$RP_P50" "$RP_P99"
row "raw, COPY, 4 conns x 1000" "$RC" "$RC_P50" "$RC_P99"
wnote 64
wnote "$HIGH"
wnote 2048
[ "$HIGH" = 512 ] || echo "note: 512 clients failed; the high rows use $HIGH clients"
