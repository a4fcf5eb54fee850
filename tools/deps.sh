#!/usr/bin/env bash
# Installs the Debian packages Tally needs to build, test and run, only those
# that are missing. Needs root (or sudo) when something is missing.
set -euo pipefail

PKGS=(build-essential cmake pkg-config git ca-certificates curl python3 procps
      liburing-dev libck-dev libpq-dev libmsgpack-dev libcmocka-dev node-llhttp
      libssl-dev libqrencode-dev libjansson-dev
      postgresql postgresql-contrib
      cppcheck)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
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
