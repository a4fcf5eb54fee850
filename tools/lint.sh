#!/usr/bin/env bash
# Static analysis with cppcheck; the checked-in configuration is
# .cppcheck-suppressions. Fails on any finding.
set -euo pipefail
cd "$(dirname "$0")/.."
cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,performance,portability \
    --inline-suppr --suppressions-list=.cppcheck-suppressions \
    -I . -D_GNU_SOURCE core net actors store stress tools main.c
