#!/usr/bin/env bash
# Install (idempotently) the ZooKeeper server used by the service-registry tests
# (tests/zookeeper*.rs, tests/interop/zookeeper.rs). The tests never use the system
# service: they start a private server on a free loopback port with their own data dir.
# Needs root (or sudo) only when the package is missing.
set -euo pipefail
if [ -f /usr/share/zookeeper/zookeeper.jar ] || compgen -G "/usr/share/java/zookeeper*.jar" >/dev/null; then
  exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends zookeeper >/dev/null
# The package enables a system service on some setups; the tests do not need it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet zookeeper 2>/dev/null; then
  $sudo systemctl stop zookeeper || true
fi
echo "zookeeper installed"
