#!/usr/bin/env bash
# Create (idempotently) the second interop virtualenv: the newest ZEO 5.x client that
# installs and runs on Python 3.11 (ZEO 5.4.1 with ZODB 5.8.1), every package pinned
# exactly, so tests/interop/zeo5.rs drives a real ZEO 5 ClientStorage against
# `zeo serve`. Called by scripts/setup-venv.sh; a no-op when the stamp matches.
# Usage: scripts/setup-venv-zeo5.sh [VENV_DIR]
#        (default: $ZEO5_TEST_VENV, else .venv-zeo5 in the repo root)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-${ZEO5_TEST_VENV:-$here/.venv-zeo5}}
stamp="$venv/.zeo-requirements"
# ZEO 5.4.1 declares msgpack<1 only for its own test extra; its client passes raw=False
# and use_bin_type=True explicitly, so msgpack 1.x (which builds on 3.11) behaves the same.
# mock, zope.testing and ZopeUndo are what ZEO 5's own test classes need
# (tests/conformance/run_conformance.py run with this venv's python).
want="ZEO==5.4.1 ZODB==5.8.1 BTrees==6.5 persistent==6.9 zodbpickle==4.5 transaction==5.1 zc.lockfile==4.0 ZConfig==4.3 zdaemon==5.2.1 six==1.17.0 zope.interface==8.7 zope.proxy==7.3 zope.deferredimport==6.1.1 cffi==2.1.1 pycparser==3.12 msgpack==1.2.4 mock==5.2.0 zope.testing==6.2 ZopeUndo==6.1"
if [ -x "$venv/bin/python" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
python3 -m venv "$venv"
# --no-deps: the list above is the complete closure, nothing floats.
# shellcheck disable=SC2086
"$venv/bin/python" -m pip install --quiet --no-deps $want
"$venv/bin/python" -c 'import ZEO.ClientStorage, ZODB, BTrees.OOBTree, msgpack'
echo "$want" > "$stamp"
echo "virtualenv ready: $venv"
