#!/usr/bin/env bash
# Debian chromium: the browser the real-client tests drive (tests/ingest/test_real_clients.py)
# through Playwright's executable_path. Playwright's own browser downloads are never used.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
  echo "chromium already installed: $(dpkg-query -W -f '${Version}' chromium 2>/dev/null || echo '?')"
  exit 0
fi

as_root=()
if [ "$(id -u)" -ne 0 ]; then
  as_root=(sudo)
fi
"${as_root[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends chromium
"$CHROMIUM" --version
