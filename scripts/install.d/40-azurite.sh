#!/usr/bin/env bash
# Azurite 3.37.0 (npm), Microsoft's Azure Blob Storage emulator: the real server the
# azure storage backend tests talk to. Installed into tests/services/azurite-server/;
# `npm ci` runs only when package-lock.json changed since the last install.
set -euo pipefail
cd "$(dirname "$0")/../../tests/services/azurite-server"

if ! command -v npm >/dev/null; then
  as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    as_root=(sudo)
  fi
  "${as_root[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends nodejs npm
fi

stamp=node_modules/.rtcstats-lock.sha256
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x node_modules/.bin/azurite-blob ]; then
  echo "azurite matches package-lock.json"
  exit 0
fi
npm ci --no-audit --no-fund --omit=dev
echo "$want" >"$stamp"
node_modules/.bin/azurite-blob --version
