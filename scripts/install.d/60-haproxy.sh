#!/usr/bin/env bash
# HAProxy (Debian package): the real load balancer the cluster tests start in front of
# three collectors (tests/services/haproxy.py). Installed once; idempotent.
set -euo pipefail

if command -v haproxy >/dev/null; then
  echo "haproxy already installed: $(haproxy -v | sed -n 1p)"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y --no-install-recommends haproxy || {
  $SUDO apt-get update
  $SUDO apt-get install -y --no-install-recommends haproxy
}
haproxy -v | sed -n 1p
