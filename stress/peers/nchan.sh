#!/usr/bin/env bash
# Fan-out peer comparison: tallyd against nginx + nchan and against the
# kernel's floor (stress/peers/floor.c: a broadcaster that does nothing but
# send one prebuilt frame per subscriber, with send() and with io_uring), one
# after the other in one invocation, at the same N subscribers, S seconds,
# message size (~100 bytes) and per-subscriber rate (10 messages/s), then all
# side by side. nchan is read by `tally-stress fanout-nchan`'s epoll
# client; tallyd (`tally-stress fanout`) and the floor (`fanout-nchan
# --client uring`) by the same io_uring client engine, since on loopback the
# client's wake-ups are charged to the sender.
#
#   stress/peers/nchan.sh [SUBSCRIBERS=10000] [SECONDS=10]
#
# tallyd: as stress/bench_fanout.sh (fresh embedded PostgreSQL, 200 votes/s,
# results coalesced to at most one per 100 ms per subscriber).
# nchan: a private nginx (2 workers, like tallyd's default 2 threads) from
# stress/peers/nchan.conf.in; a publisher POSTs a 100-byte message every
# 100 ms to one channel with N WebSocket subscribers.
# nginx and the nchan module are Debian packages, installed here when missing
# (a benchmark, not a build dependency). Loopback only; everything started is
# stopped and every temp dir removed on exit, failures included.
# Env: BUILD=dir (default build-rel), PORT_TALLY, PORT_NCHAN.
set -euo pipefail
cd "$(dirname "$0")/../.."
SUBS=${1:-10000}
SECS=${2:-10}
RATE=200 # votes/s: enough that every 100 ms window has a vote
PORT_TALLY=${PORT_TALLY:-18481}
PORT_NCHAN=${PORT_NCHAN:-18482}
BUILD=${BUILD:-build-rel}
WORKERS=2
NCHAN_MODULE=/usr/lib/nginx/modules/ngx_nchan_module.so
RUN_LIMIT_S=$((SECS + SUBS / 100 + 180)) # outer bound on each load run

# Each nginx worker keeps its subscribers as fds under the 20000 hard limit;
# with reuseport they split about evenly, so allow for an uneven split.
if [ "$SUBS" -gt 19000 ]; then
    echo "SUBSCRIBERS must be at most 19000 (fd limit 20000 per process)" >&2
    exit 2
fi

install_nchan() {
    if [ -x /usr/sbin/nginx ] && [ -f "$NCHAN_MODULE" ]; then
        return 0
    fi
    echo "installing nginx and libnginx-mod-nchan"
    local policy=/usr/sbin/policy-rc.d made_policy=0
    # The package must not start the system nginx on port 80.
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    local rc=0
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends nginx libnginx-mod-nchan \
        >/dev/null; } || rc=$?
    [ "$made_policy" -eq 1 ] && rm -f "$policy"
    return "$rc"
}

install_nchan
tools/deps.sh
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build "$BUILD" -j"$(nproc)" --target tallyd tally-stress tally-floor >/dev/null

ROOT=$(mktemp -d /var/tmp/tally-peer-nchan.XXXXXX)
chmod 755 "$ROOT" # nginx workers run as www-data, the cluster as postgres
TDATA="$ROOT/tallyd"
NDIR="$ROOT/nginx"
mkdir -p "$TDATA" "$NDIR"
chmod 755 "$TDATA" "$NDIR"
TPID=""
NPID=""
FPID=""

stop_pid() { # pid seconds: TERM, then KILL after the grace
    local pid=$1 grace=$2
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 $((grace * 10))); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    stop_pid "$FPID" 10
    stop_pid "$NPID" 10
    stop_pid "$TPID" 30
    # A tallyd that had to be killed leaves its cluster running.
    if [ -f "$TDATA/pg/postmaster.pid" ]; then
        local pgbin
        pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
        runuser -u postgres -- "$pgbin/pg_ctl" -D "$TDATA/pg" stop -m immediate >/dev/null 2>&1 || true
    fi
    rm -rf "$ROOT"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_http() { # url: up to 60 s for any HTTP answer
    for _ in $(seq 1 600); do
        curl -s -o /dev/null "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    echo "no answer from $1" >&2
    return 1
}

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
echo "== tallyd: $SUBS subscribers, $SECS s, $RATE votes/s =="
"$BUILD"/bin/tallyd --listen 127.0.0.1:$PORT_TALLY --data-dir "$TDATA" >"$ROOT/tallyd.log" 2>&1 &
TPID=$!
wait_http "http://127.0.0.1:$PORT_TALLY/healthz"
TRC=0
timeout "$RUN_LIMIT_S" "$BUILD"/bin/tally-stress fanout --target 127.0.0.1:$PORT_TALLY \
    --subscribers "$SUBS" --seconds "$SECS" --rate "$RATE" --server-pid "$TPID" \
    --json "$ROOT/tallyd.json" || TRC=$?
if [ "$TRC" -ne 0 ]; then
    echo "tally-stress fanout exited $TRC; last tallyd log lines:"
    tail -n 20 "$ROOT/tallyd.log"
fi
stop_pid "$TPID" 30
TPID=""

echo "== nginx + nchan: $SUBS subscribers, $SECS s, 10 messages/s of 100 bytes =="
CONNS=$((SUBS + 1024)) # all subscribers on one worker still fit
NOFILE=19500
sed -e "s|@DIR@|$NDIR|g" -e "s|@PORT@|$PORT_NCHAN|g" -e "s|@WORKERS@|$WORKERS|g" \
    -e "s|@CONNS@|$CONNS|g" -e "s|@NOFILE@|$NOFILE|g" -e "s|@MODULE@|$NCHAN_MODULE|g" \
    stress/peers/nchan.conf.in >"$NDIR/nginx.conf"
/usr/sbin/nginx -p "$NDIR" -c "$NDIR/nginx.conf" -e "$NDIR/error.log" &
NPID=$!
wait_http "http://127.0.0.1:$PORT_NCHAN/pub/warmup"
NRC=0
timeout "$RUN_LIMIT_S" "$BUILD"/bin/tally-stress fanout-nchan --target 127.0.0.1:$PORT_NCHAN \
    --subscribers "$SUBS" --seconds "$SECS" --rate 10 --bytes 100 --server-pid "$NPID" \
    --json "$ROOT/nchan.json" || NRC=$?
if [ "$NRC" -ne 0 ]; then
    echo "tally-stress fanout-nchan exited $NRC; last nginx log lines:"
    tail -n 20 "$NDIR/error.log"
fi
stop_pid "$NPID" 10
NPID=""

FRC=0
for mode in write uring; do
    echo "== floor ($mode): $SUBS subscribers, $SECS s, 10 messages/s of 100 bytes =="
    "$BUILD"/bin/tally-floor --port "$PORT_NCHAN" --mode "$mode" &
    FPID=$!
    wait_http "http://127.0.0.1:$PORT_NCHAN/pub/warmup"
    timeout "$RUN_LIMIT_S" "$BUILD"/bin/tally-stress fanout-nchan --target 127.0.0.1:$PORT_NCHAN \
        --subscribers "$SUBS" --seconds "$SECS" --rate 10 --bytes 100 --server-pid "$FPID" \
        --client uring --json "$ROOT/floor-$mode.json" || FRC=$?
    stop_pid "$FPID" 10
    FPID=""
done

python3 - "$ROOT/tallyd.json" "$ROOT/nchan.json" "$SUBS" "$SECS" "$ROOT/floor-write.json" \
    "$ROOT/floor-uring.json" <<'PY'
import json, sys

def load(path):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None

t, n = load(sys.argv[1]), load(sys.argv[2])
print(f"\n== fan-out, {sys.argv[3]} subscribers, {sys.argv[4]} s, loopback ==")
if t is None or n is None:
    print("a run produced no result: no comparison")
    sys.exit(1)
rows = [
    ("delivered msgs/s", t["delivered_per_s"], n["delivered_per_s"], "{:,.0f}"),
    ("latency p50 ms", t["latency_ms"]["p50"], n["latency_ms"]["p50"], "{:.2f}"),
    ("latency p95 ms", t["latency_ms"]["p95"], n["latency_ms"]["p95"], "{:.2f}"),
    ("latency p99 ms", t["latency_ms"]["p99"], n["latency_ms"]["p99"], "{:.2f}"),
    ("server CPU us/delivery", t["cpu_us_per_msg"], n["cpu_us_per_msg"], "{:.2f}"),
    ("server bytes/idle conn", t["bytes_per_idle_conn"], n["bytes_per_idle_conn"], "{:,.0f}"),
]
print(f"{'':24} {'tallyd':>12} {'nginx+nchan':>12} {'tallyd/nchan':>13}")
for name, a, b, fmt in rows:
    ratio = f"{a / b:.2f}" if b else "-"
    if not name.startswith("server"):
        ratio = ""
    print(f"{name:24} {fmt.format(a):>12} {fmt.format(b):>12} {ratio:>13}")
print(f"tallyd: {t['delivered']} delivered, {t['votes_acked']} votes acked, "
      f"{t['missing_hellos']} missing hellos, {t['dropped']} dropped")
print(f"nchan:  {n['delivered']} delivered of {n['published']} published x {n['subscribers']}, "
      f"{n['missing']} not connected, {n['dropped']} dropped, {n['gaps']} sequence gaps; "
      f"bytes/idle conn by summed VmRSS {n['bytes_per_idle_conn_rss_sum']:,.0f} "
      f"(table: summed PSS over {n['server_procs']} processes)")
fw, fu = load(sys.argv[5]), load(sys.argv[6])
if fw is None or fu is None:
    print("a floor run produced no result")
    sys.exit(1)
print(f"\n{'floor (kernel only)':24} {'send()':>12} {'io_uring':>12} {'tallyd/floor':>13}")
print(f"{'delivered msgs/s':24} {fw['delivered_per_s']:>12,.0f} {fu['delivered_per_s']:>12,.0f}")
best = min(fw["cpu_us_per_msg"], fu["cpu_us_per_msg"])
print(f"{'server CPU us/delivery':24} {fw['cpu_us_per_msg']:>12.2f} {fu['cpu_us_per_msg']:>12.2f} "
      f"{t['cpu_us_per_msg'] / best:>13.2f}")
print(f"floor: {fw['delivered']} / {fu['delivered']} delivered, {fw['gaps']} / {fu['gaps']} sequence gaps")
PY
[ "$TRC" -eq 0 ] && [ "$NRC" -eq 0 ] && [ "$FRC" -eq 0 ]
