#!/usr/bin/env bash
# Run every benchmark script (scripts/bench-*.sh) side by side with the Python tools.
# Figures and the machine are recorded in docs/benchmarks.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$here/.venv}
shopt -s nullglob
for b in "$here"/scripts/bench-*.sh; do
  [ "$(basename "$b")" = bench-all.sh ] && continue
  echo "== $(basename "$b")"
  "$b" "$venv"
done
