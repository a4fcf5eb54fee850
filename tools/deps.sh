#!/usr/bin/env bash
# Installs the Debian packages Tally needs to build, test and run, only those
# that are missing. Needs root (or sudo) when something is missing.
set -euo pipefail

PKGS=(build-essential cmake pkg-config git ca-certificates curl python3 procps
      liburing-dev libck-dev libpq-dev libmsgpack-dev libcmocka-dev node-llhttp
      libssl-dev libqrencode-dev libjansson-dev
      postgresql postgresql-contrib
      cppcheck nodejs)

install_node_modules() {
    # The live tests' independent clients (ws, @msgpack/msgpack), pinned by
    # tests/live/package-lock.json.
    local dir
    dir="$(dirname "$0")/../tests/live"
    if [ ! -d "$dir/node_modules/ws" ] || [ ! -d "$dir/node_modules/@msgpack/msgpack" ]; then
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
    fi
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
