# Shared by the one-command benchmarks (sourced, not run): an optimised
# build, a fresh data directory with its embedded PostgreSQL, one tallyd, and
# a cleanup that stops tallyd (and so its cluster) and removes the directory
# whatever happens. Set PORT before sourcing; BUILD picks the build tree.
BUILD=${BUILD:-build-rel}
PID=""
DATA=""

bench_build() {
    # NO_BUILD=1 runs the binaries already in $BUILD (a tree being edited may not build).
    if [ -n "${NO_BUILD:-}" ]; then return 0; fi
    cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$BUILD" -j"$(nproc)" --target tallyd tally-stress >/dev/null
}

bench_machine() {
    echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%F)"
}

bench_cleanup() {
    if [ -n "$PID" ] && kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID"
        wait "$PID" || true
    fi
    if [ -n "$DATA" ]; then rm -rf "$DATA"; fi
}

# A fresh data directory, cleaned up at exit.
bench_data() {
    DATA=$(mktemp -d /var/tmp/tally-bench.XXXXXX)
    chmod 755 "$DATA"
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# Starts tallyd on DATA and PORT (extra flags are passed on) and waits until
# /readyz answers 200; on failure prints the end of its log and returns 1.
bench_start() {
    "$BUILD"/bin/tallyd --listen "127.0.0.1:$PORT" --data-dir "$DATA" "$@" >>"$DATA/tallyd.log" 2>&1 &
    PID=$!
    for _ in $(seq 1 6000); do
        curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$PID" 2>/dev/null || break
        sleep 0.01
    done
    echo "tallyd did not become ready; its log:" >&2
    tail -n 30 "$DATA/tallyd.log" >&2
    return 1
}

# The tallyd flags of a load run with N clients: room for all of them, and
# a join rate no single source address reaches (the load generator joins
# thousands per address; tallyd limits per address), on 2 network threads.
bench_big_flags() {
    echo "--max-connections $(($1 + 20000)) --join-rate 1000000 --threads 2"
}

# Prints tallyd's last log lines when a run failed.
bench_failed() {
    echo "tally-stress exited $1; last tallyd log lines:"
    tail -n 20 "$DATA/tallyd.log"
}
