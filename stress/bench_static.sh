#!/usr/bin/env bash
# One-command benchmark: does a join storm of page and asset requests slow
# the vote path? Builds an optimised tallyd and tally-stress, starts tallyd
# on a fresh embedded PostgreSQL, then runs the durable vote load
# (tally-stress votes) twice: alone, and while wrk hammers /j/CODE and every
# embedded asset with "Accept-Encoding: br" from STORM keep-alive
# connections, alternated ROUNDS times. Prints votes/s and ack p50/p99 of
# every run, the mean ratio storm/alone, the storm's requests/s, and
# tallyd's CPU time per run.
#
#   stress/bench_static.sh [CLIENTS=64] [SECONDS=10] [STORM=64] [ROUNDS=2]
set -euo pipefail
cd "$(dirname "$0")/.."
CLIENTS=${1:-64}
SECS=${2:-10}
STORM=${3:-64}
ROUNDS=${4:-2}
# A port nobody listens on: tallyd binds with SO_REUSEPORT, so a port in use
# by another tallyd would not fail, it would share the traffic.
PORT=${PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
tools/deps.sh
. stress/bench_lib.sh
bench_build
bench_data
bench_start
bench_machine
BASE="http://127.0.0.1:$PORT"
HZ=$(getconf CLK_TCK)
cpu_ms() { awk -v hz="$HZ" '{print int(($14 + $15) * 1000 / hz)}' "/proc/$PID/stat"; }

CODE=$(curl -sf -X POST "$BASE/api/v1/sessions" -H 'Content-Type: application/json' \
    -d '{"title":"join storm"}' | python3 -c 'import json, sys; print(json.load(sys.stdin)["session"]["code"])')
# What a joining phone loads: the join page, then the assets. Every file of
# net/www is one path; with an empty net/www the storm is 404s of /j/CODE.
PATHS="\"/j/$CODE\""
for f in net/www/*; do
    [ -f "$f" ] && PATHS="$PATHS, \"/assets/$(basename "$f")\""
done
cat >"$DATA/storm.lua" <<EOF
local paths = {$PATHS}
local reqs = {}
for i, p in ipairs(paths) do
    reqs[i] = wrk.format("GET", p, {["Accept-Encoding"] = "br, gzip"})
end
local n = 0
request = function()
    n = n % #reqs + 1
    return reqs[n]
end
EOF
echo "storm paths: $PATHS"
for p in "/j/$CODE" /assets/app.css; do
    curl -s -o /dev/null -H 'Accept-Encoding: br' -w "  $p: %{http_code}, %{size_download} bytes\n" "$BASE$p"
done

votes() { # votes NAME: one vote run, its figures in $DATA/NAME.json
    "$BUILD"/bin/tally-stress votes --target "127.0.0.1:$PORT" --clients "$CLIENTS" \
        --seconds "$SECS" --json "$DATA/$1.json" >"$DATA/$1.out"
}

storm_run() { # storm_run NAME: a vote run while wrk hammers the static paths
    # The storm starts first and runs past the vote run; SIGINT ends it and
    # wrk prints its totals for the time it ran.
    wrk -t1 -c"$STORM" -d$((SECS + 120))s -s "$DATA/storm.lua" "$BASE" >"$DATA/$1.wrk" 2>&1 &
    local wrk_pid=$!
    sleep 1
    votes "$1"
    kill -INT "$wrk_pid"
    wait "$wrk_pid" || true
}

# Alone and with the storm, alternated ROUNDS times: the machine is shared,
# so figures from neighbouring runs are what compare.
for r in $(seq 1 "$ROUNDS"); do
    echo "== round $r: votes alone, $CLIENTS clients, $SECS s"
    C0=$(cpu_ms); votes "alone$r"; C1=$(cpu_ms)
    echo "$((C1 - C0))" >"$DATA/alone$r.cpu"
    cat "$DATA/alone$r.out"
    echo "== round $r: votes during a static storm (wrk, 1 thread, $STORM connections)"
    C0=$(cpu_ms); storm_run "storm$r"; C1=$(cpu_ms)
    echo "$((C1 - C0))" >"$DATA/storm$r.cpu"
    cat "$DATA/storm$r.out"
    grep -E "Requests/sec|requests in|Non-2xx|Socket errors" "$DATA/storm$r.wrk" || cat "$DATA/storm$r.wrk"
done

python3 - "$DATA" "$ROUNDS" <<'PY'
import json, re, sys
d, rounds = sys.argv[1], int(sys.argv[2])
def load(name):
    j = json.load(open("%s/%s.json" % (d, name)))
    cpu = int(open("%s/%s.cpu" % (d, name)).read())
    return j["votes_per_s"], j["ack_ms"]["p50"], j["ack_ms"]["p99"], cpu
print()
print("%-6s %-11s %9s %9s %9s %12s %14s" % ("round", "run", "votes/s", "p50 ms", "p99 ms",
                                           "tallyd CPU", "static req/s"))
ratios = []
for r in range(1, rounds + 1):
    a, s = load("alone%d" % r), load("storm%d" % r)
    m = re.search(r"Requests/sec:\s*([\d.]+)", open("%s/storm%d.wrk" % (d, r)).read())
    print("%-6d %-11s %9.0f %9.2f %9.2f %9d ms %14s" % (r, "alone", a[0], a[1], a[2], a[3], "-"))
    print("%-6d %-11s %9.0f %9.2f %9.2f %9d ms %14s" % (r, "with storm", s[0], s[1], s[2], s[3],
                                                        m.group(1) if m else "?"))
    ratios.append((s[0] / a[0], s[1] / a[1], s[2] / a[2]))
n = len(ratios)
print("mean ratio with storm / alone: votes/s %.2f, p50 %.2f, p99 %.2f" %
      tuple(sum(x[i] for x in ratios) / n for i in range(3)))
PY
