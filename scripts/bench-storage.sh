#!/usr/bin/env bash
# Storage benchmark, ours vs Python ZODB 6.4 on the same generated files (see
# docs/benchmarks.md, section "Storage"). Usage: scripts/bench-storage.sh [VENV] [DIR]
# Generates DIR/big.fs (~1 GB, 1M objects) and DIR/garbage.fs (~200 MB, half old
# revisions) with our engine, then measures, each once and page cache warm:
# open without/with Data.fs.index, resident memory with the file open, pack with
# GC to now, loadBefore latency.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$here/.venv}
dir=${2:-${TMPDIR:-/tmp}/zeo-bench-storage}
py=$venv/bin/python
mkdir -p "$dir"
cd "$here"
cargo bench --bench storage --no-run >/dev/null 2>&1
bench() { cargo bench -q --bench storage -- "$@" 2>/dev/null; }

pyopen='
import sys, time, logging
from ZODB.FileStorage import FileStorage
logging.disable(logging.CRITICAL)
t0 = time.time()
st = FileStorage(sys.argv[1], read_only=True)
dt = time.time() - t0
rss = [l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]
print("python open %.3f s, %d objects, RSS %.1f MB" % (dt, len(st), int(rss) / 1024))
'
pypack='
import sys, time, logging
from ZODB.FileStorage import FileStorage
from ZODB.serialize import referencesf
logging.disable(logging.CRITICAL)
st = FileStorage(sys.argv[1])
t0 = time.time()
st.pack(time.time(), referencesf)
dt = time.time() - t0
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print("python pack %.3f s, peak RSS %.1f MB" % (dt, int(hwm) / 1024))
st.close()
'
pyload='
import sys, time, logging
from ZODB.FileStorage import FileStorage
logging.disable(logging.CRITICAL)
st = FileStorage(sys.argv[1], read_only=True)
n = int(sys.argv[2]); m = len(st); x = 0x9e3779b97f4a7c15; oids = []
for _ in range(n):
    x ^= (x << 13) & 0xffffffffffffffff; x ^= x >> 7; x ^= (x << 17) & 0xffffffffffffffff
    oids.append((x % m).to_bytes(8, "big"))
mx = b"\x7f" + b"\xff" * 7
for o in oids[:1000]: st.loadBefore(o, mx)
t0 = time.time()
for o in oids: st.loadBefore(o, mx)
print("python loadBefore %.2f us per call (%d calls)" % ((time.time() - t0) * 1e6 / n, n))
'

echo "machine: $(nproc) cores, $(grep 'model name' /proc/cpuinfo | head -1 | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GB RAM"
[ -f "$dir/big.fs" ] || bench gen "$dir/big.fs" 1000000 900
cat "$dir/big.fs" > /dev/null   # page cache
rm -f "$dir/big.fs.index"
echo "-- open ~1 GB, 1M objects, no index"
bench open "$dir/big.fs"
"$py" -c "$pyopen" "$dir/big.fs"
echo "-- open with index (written by Python)"
"$py" -c 'import sys; from ZODB.FileStorage import FileStorage; FileStorage(sys.argv[1]).close()' "$dir/big.fs"
bench open "$dir/big.fs"
"$py" -c "$pyopen" "$dir/big.fs"
echo "-- loadBefore from page cache"
bench loadbefore "$dir/big.fs" 200000
"$py" -c "$pyload" "$dir/big.fs" 200000
echo "-- pack ~200 MB, half garbage, GC, to now"
[ -f "$dir/garbage.fs" ] || bench gen-garbage "$dir/garbage.fs" 100000 950
for who in ours python; do
  cp "$dir/garbage.fs" "$dir/pack-$who.fs"; rm -f "$dir/pack-$who.fs.index" "$dir/pack-$who.fs.old"
  cat "$dir/pack-$who.fs" > /dev/null
done
bench pack "$dir/pack-ours.fs"
"$py" -c "$pypack" "$dir/pack-python.fs"
ls -l "$dir"/pack-*.fs
cmp "$dir/pack-ours.fs" "$dir/pack-python.fs" && echo "packed files identical"
