#!/usr/bin/env bash
# Install (idempotently) curl, the real HTTP client tests/server_monitor.rs reads the
# monitor and metrics endpoints of `zeo serve` with. Needs root (or sudo) only when
# curl is missing.
set -euo pipefail
if command -v curl >/dev/null 2>&1; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends curl ca-certificates >/dev/null
echo "curl installed"
