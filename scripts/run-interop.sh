#!/usr/bin/env bash
# Run the interop tests (tests/interop/test_*.py) with the pinned virtualenv's pytest.
# They drive the zeo binary named by $ZEO_BIN against real Python ZODB/ZEO.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$here/.venv}
export ZEO_BIN=${ZEO_BIN:-$here/target/release/zeo}
export ZEO_FIXTURES=$here/tests/fixtures
cd "$here"
if ! compgen -G "tests/interop/test_*.py" >/dev/null; then
  echo "no interop tests yet"
  exit 0
fi
exec "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/interop
