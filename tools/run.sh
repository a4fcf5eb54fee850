#!/usr/bin/env bash
# Installs what is missing, builds, and runs tallyd on the embedded
# PostgreSQL under ./var, listening on 127.0.0.1:8080 (flags are passed on).
set -euo pipefail
cd "$(dirname "$0")/.."
tools/deps.sh
cmake -S . -B build >/dev/null
cmake --build build -j"$(nproc)" >/dev/null
exec build/bin/tallyd "$@"
