#!/usr/bin/env bash
# Server benchmark: Python runzeo (ZEO 6.2) and `zeo serve`, in turn, on the same
# Data.fs, driven by our load generator benches/server_load.rs (see docs/benchmarks.md,
# section "Server"). Usage: scripts/bench-server.sh [VENV] [DIR]
#
# DIR/Data.fs (50k objects, ~300-byte records) is generated once by our engine
# (benches/storage.rs gen) and reused. Phases, each SECS seconds after a short
# warm-up: loadBefore of random oids at 1, 8 and 32 connections with one request in
# flight and 8 connections x 16 in flight; commits (tpc_begin, storea, vote,
# tpc_finish of one small record) from 1 and 8 committers; loads on one connection
# while 8 committers run. Server CPU per operation comes from /proc/PID/stat.
# Environment: SECS (default 3), PORT (default 18765), OBJECTS (default 50000),
# PHASES=loads (only the load phases), ZEO=path (another zeo binary, e.g. an older
# build to compare with; by default target/ci/zeo is built and used).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${1:-$here/.venv}
dir=${2:-${TMPDIR:-/tmp}/zeo-bench-server}
secs=${SECS:-3}
port=${PORT:-18765}
objects=${OBJECTS:-50000}
addr=127.0.0.1:$port
py=$venv/bin/python
mkdir -p "$dir"
cd "$here"

# One profile for everything: `ci` is what `make test` builds (release without LTO).
exe() { # the executable cargo reports for a bench target
  cargo bench --profile ci --no-run --bench "$1" 2>&1 |
    sed -n "s|.*Executable benches/$1.rs (\(.*\))|\1|p" | tail -1
}
if [ -z "${ZEO:-}" ]; then
  cargo build --profile ci --bin zeo >/dev/null 2>&1
fi
zeo=${ZEO:-$here/target/ci/zeo}
gen=$(exe server_load)
storage=$(exe storage)
[ -x "$gen" ] && [ -x "$storage" ] || { echo "could not build the benchmark drivers" >&2; exit 1; }

containers=$(( (objects + 999) / 1000 ))
max_oid=$(( containers + objects ))   # oids 0 (root), containers, then leaves
first_commit_oid=$(( containers + 1 ))  # committers rewrite leaves first.. first+7
if [ ! -f "$dir/Data.fs" ]; then
  "$storage" gen "$dir/Data.fs" "$objects" 200
fi
cat "$dir/Data.fs" >/dev/null # page cache

echo "machine: $(nproc) cores, $(grep 'model name' /proc/cpuinfo | head -1 | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GB RAM"
echo "python: $("$py" -c 'import sys, ZEO, ZODB, importlib.metadata as m; print(sys.version.split()[0], "ZEO", m.version("ZEO"), "ZODB", m.version("ZODB"))')"
echo "Data.fs: $(stat -c %s "$dir/Data.fs") bytes, $((max_oid + 1)) objects; phases of $secs s"
echo "load before: $(uptime)"

results=$dir/results.txt
: >"$results"
"$gen" fsync "$dir" 1000 | tee -a "$results"

run_server() { # NAME COMMAND...
  local name=$1; shift
  "$@" >"$dir/$name.log" 2>&1 &
  local pid=$!
  if ! "$gen" wait "$addr" 120; then
    kill "$pid" 2>/dev/null || true
    echo "$name did not start; see $dir/$name.log" >&2
    exit 1
  fi
  {
    for c in 1 8 32; do "$gen" loads "$addr" "$secs" "$c" 1 "$max_oid" "$pid"; done
    "$gen" loads "$addr" "$secs" 8 16 "$max_oid" "$pid"
    [ "${PHASES:-all}" = loads ] && exit 0 # leaves this { } subshell only
    "$gen" fsync "$dir" 500 # the disk's limit right now: it varies with other I/O
    for n in 1 8; do "$gen" commits "$addr" "$secs" "$n" "$first_commit_oid" "$pid"; done
    "$gen" fsync "$dir" 500
    "$gen" mixed "$addr" "$secs" 8 "$first_commit_oid" "$max_oid" "$pid"
  } | sed "s/^RESULT /RESULT $name /" | tee -a "$results"
  kill -TERM "$pid"
  wait "$pid" || true
}

echo "-- Python runzeo ($(date -u +%T))"
run_server runzeo "$py" -m ZEO.runzeo -a "$addr" -f "$dir/Data.fs"
echo "-- zeo serve ($(date -u +%T))"
run_server zeo "$zeo" serve -a "$addr" -f "$dir/Data.fs"
echo "load after ($(date -u +%T)): $(uptime)"

# Side-by-side table: zeo / runzeo ratios (rate: higher is better; latency and CPU:
# lower is better).
awk '
  $1 != "RESULT" || $2 == "fsync" { next }
  $3 == "fsync" { split($5, kv, "="); if (kv[2] + 0 > fs_rate[$2] + 0) fs_rate[$2] = kv[2]; next }
  {
    srv = $2; key = $3
    for (i = 4; i <= NF; i++) {
      split($i, kv, "=")
      if (kv[1] == "conns" || kv[1] == "inflight" || kv[1] == "committers") key = key " " $i
      else v[srv, key, kv[1]] = kv[2]
    }
    if (!(key in seen)) { seen[key] = 1; order[++n] = key }
  }
  function r(a, b) { return (a > 0 && b > 0) ? sprintf("%.2f", a / b) : "-" }
  END {
    if (fs_rate["zeo"] != "")
      printf "fsync limit (best of the probes before and after the commit phases): runzeo run %s/s, zeo run %s/s\n", fs_rate["runzeo"], fs_rate["zeo"]
    printf "%-36s %-9s %10s %10s %7s\n", "phase", "figure", "runzeo", "zeo", "zeo/py"
    for (j = 1; j <= n; j++) {
      k = order[j]
      split("rate p50_us p99_us srv_cpu_us", fs, " ")
      for (f = 1; f <= 4; f++) {
        a = v["runzeo", k, fs[f]]; b = v["zeo", k, fs[f]]
        if (a == "" && b == "") continue
        printf "%-36s %-9s %10s %10s %7s\n", k, fs[f], a, b, r(b, a)
      }
      if (k ~ /^commits/) {
        printf "%-36s %-9s %10s %10s\n", k, "of_fsync", r(v["runzeo", k, "rate"], fs_rate["runzeo"]), r(v["zeo", k, "rate"], fs_rate["zeo"])
      }
    }
  }' "$results"
