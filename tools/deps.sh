#!/usr/bin/env bash
# Installs the Debian packages Tally needs to build, test and run, only those
# that are missing. Needs root (or sudo) when something is missing.
set -euo pipefail

PKGS=(build-essential cmake pkg-config git ca-certificates curl python3 procps
      liburing-dev libck-dev libpq-dev libmsgpack-dev libcmocka-dev node-llhttp
      libssl-dev libqrencode-dev libjansson-dev
      postgresql postgresql-contrib
      cppcheck nodejs brotli chromium wrk zlib1g-dev libbrotli-dev)

install_node_modules() {
    # The live tests' independent clients (ws, @msgpack/msgpack) and the
    # browser tests' driver (playwright-core, which uses Debian's chromium),
    # each pinned by its package-lock.json.
    local root dir
    root="$(dirname "$0")/.."
    for dir in "$root/tests/live" "$root/tests/e2e"; do
        [ -f "$dir/package-lock.json" ] || continue
        if [ ! -d "$dir/node_modules" ] || [ "$dir/package-lock.json" -nt "$dir/node_modules" ]; then
            (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null && touch node_modules)
        fi
    done
}
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then
    install_node_modules
    exit 0
fi
echo "installing: ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
install_node_modules
