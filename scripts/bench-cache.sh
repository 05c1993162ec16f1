#!/usr/bin/env bash
# Benchmark `zeo cache-stats` / `zeo cache-simul` against ZEO's cache_stats.py /
# cache_simul.py on one generated trace (plain and .gz), side by side: wall time and
# peak RSS from /usr/bin/time -v, and a check that both print the same thing (the
# run-time figure of cache_stats masked). Results go to docs/benchmarks.md by hand.
#
# Usage: scripts/bench-cache.sh [VENV]
#   RECORDS=5000000  records in the generated trace
#   BENCH_DIR=DIR    where to put the traces and outputs (default: a temporary dir)
#   ZEO=PATH         the zeo binary (default: target/release/zeo, built if missing)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$here/.venv}
py=$venv/bin/python
records=${RECORDS:-5000000}
work=${BENCH_DIR:-$(mktemp -d)}
zeo=${ZEO:-$here/target/release/zeo}
[ -x "$zeo" ] || (cd "$here" && cargo build --release)
[ -x "$py" ] || { echo "no Python at $py (run scripts/setup-venv.sh)" >&2; exit 1; }
export TZ=${TZ:-UTC}
mkdir -p "$work"

gen_args=(--records "$records" --objects 200000 --restarts 4 --garbage 10
          --cache-size 100 --rate 200 --seed 42)
echo "machine: $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
echo "trace:   $zeo trace --generate $work/bench.trace ${gen_args[*]}"
/usr/bin/time -f "generate: %e s, %M KiB" "$zeo" trace --generate "$work/bench.trace" "${gen_args[@]}"
/usr/bin/time -f "generate .gz: %e s, %M KiB" "$zeo" trace --generate "$work/bench.trace.gz" "${gen_args[@]}"
ls -l "$work/bench.trace" "$work/bench.trace.gz"

# measure LABEL OUTFILE CMD... -> prints "seconds KiB"
measure() {
  local label=$1 out=$2; shift 2
  /usr/bin/time -v "$@" > "$out" 2> "$out.time" || true
  local wall rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$out.time" |
         awk -F: '{ if (NF == 3) print $1*3600 + $2*60 + $3; else print $1*60 + $2 }')
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$out.time")
  echo "$wall $rss"
}

mask() { sed -E 's/^(Read .* in )[0-9.]+( seconds)$/\10.0\2/' "$1"; }

printf '\n| run | tool | wall s | peak RSS MiB | speed-up | same output |\n|---|---|---|---|---|---|\n'
run_pair() {
  local name=$1 pymod=$2 sub=$3; shift 3
  local args=("$@")
  read -r zw zr < <(measure "zeo $name" "$work/$name.zeo.out" "$zeo" "$sub" "${args[@]}")
  read -r pw pr < <(measure "python $name" "$work/$name.py.out" "$py" -m "ZEO.scripts.$pymod" "${args[@]}")
  local same=no
  if cmp -s <(mask "$work/$name.zeo.out") <(mask "$work/$name.py.out"); then same=yes; fi
  local speed
  speed=$(awk -v p="$pw" -v z="$zw" 'BEGIN { if (z > 0) printf "%.0fx", p / z; else print "n/a" }')
  awk -v n="$name" -v z="$zw" -v r="$zr" 'BEGIN { printf "| %s | zeo | %.2f | %.1f | | |\n", n, z, r/1024 }'
  awk -v n="$name" -v p="$pw" -v r="$pr" -v s="$speed" -v same="$same" \
    'BEGIN { printf "| %s | python | %.2f | %.1f | %s | %s |\n", n, p, r/1024, s, same }'
}

t=$work/bench.trace
run_pair "cache-stats" cache_stats cache-stats "$t"
run_pair "cache-stats -h -s" cache_stats cache-stats -h -s "$t"
run_pair "cache-stats .gz" cache_stats cache-stats "$t.gz"
run_pair "cache-simul -s 100" cache_simul cache-simul -s 100 "$t"
run_pair "cache-simul -s 20 .gz" cache_simul cache-simul -s 20 "$t.gz"
echo
echo "outputs in $work"
