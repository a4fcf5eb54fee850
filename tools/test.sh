#!/usr/bin/env bash
# Builds and runs every test: the normal build, then AddressSanitizer with
# UndefinedBehaviorSanitizer, then ThreadSanitizer for the concurrency code,
# then cppcheck with the checked-in configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
JOBS=$(nproc)

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
TOTAL=0

# Runs ctest with the given arguments, showing its output and adding its
# test count to TOTAL (set -e stops the script on any failure).
run_ctest() {
    ctest "$@" 2>&1 | tee "$LOG"
    local n
    n=$(sed -n 's/.*tests passed, 0 tests failed out of \([0-9]*\).*/\1/p' "$LOG" | tail -1)
    TOTAL=$((TOTAL + ${n:-0}))
}

build() { # dir sanitizer
    cmake -S . -B "$1" -DSANITIZER="$2" >/dev/null
    cmake --build "$1" -j"$JOBS" >/dev/null
}

echo "== build (normal)"
build build ""
echo "== tests (normal)"
run_ctest --test-dir build --output-on-failure -j2

echo "== build (address,undefined)"
build build-asan "address,undefined"
echo "== tests (address,undefined)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    run_ctest --test-dir build-asan --output-on-failure -j2

echo "== build (thread)"
build build-tsan "thread"
echo "== tests (thread: concurrency code)"
TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/tests/tsan.supp" \
    run_ctest --test-dir build-tsan --output-on-failure -L concurrency

echo "== cppcheck"
tools/lint.sh
echo "== all tests passed"
echo "$TOTAL passed, 0 failed"
