#!/usr/bin/env bash
# Create (idempotently) the Python virtualenv used by the interop tests.
# Pinned versions are the reference implementation zeo is compatible with.
# Usage: scripts/setup-venv.sh [VENV_DIR]   (default: .venv in the repo root)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-${ZEO_TEST_VENV:-$here/.venv}}
stamp="$venv/.zeo-requirements"
want="ZODB==6.4 ZEO==6.2 BTrees==6.5 persistent==6.9 zodbpickle==4.5 transaction==5.1 pytest==8.3.4 msgpack==1.2.4 ZopeUndo==6.1 kazoo==2.11.0 zope.testing==6.2"
if ! { [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; }; then
  python3 -m venv "$venv"
  # shellcheck disable=SC2086
  "$venv/bin/python" -m pip install --quiet $want
  echo "$want" > "$stamp"
  echo "virtualenv ready: $venv"
fi
# The second, ZEO 5.x client virtualenv (tests/interop/zeo5.rs), beside the first.
"$here/scripts/setup-venv-zeo5.sh"
