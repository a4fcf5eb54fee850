#!/usr/bin/env bash
# Builds and runs every test: the normal build, then AddressSanitizer with
# UndefinedBehaviorSanitizer, then ThreadSanitizer for the concurrency code,
# then cppcheck with the checked-in configuration.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
JOBS=$(nproc)

build() { # dir sanitizer
    cmake -S . -B "$1" -DSANITIZER="$2" >/dev/null
    cmake --build "$1" -j"$JOBS" >/dev/null
}

echo "== build (normal)"
build build ""
echo "== tests (normal)"
ctest --test-dir build --output-on-failure -j2

echo "== build (address,undefined)"
build build-asan "address,undefined"
echo "== tests (address,undefined)"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan --output-on-failure -j2

echo "== build (thread)"
build build-tsan "thread"
echo "== tests (thread: concurrency code)"
TSAN_OPTIONS="halt_on_error=1 suppressions=$PWD/tests/tsan.supp" ctest --test-dir build-tsan --output-on-failure -L concurrency

echo "== cppcheck"
tools/lint.sh
echo "== all tests passed"
