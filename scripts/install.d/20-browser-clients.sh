#!/usr/bin/env bash
# The real rtcstats clients (npm @jitsi/rtcstats 9.7.1, rtcstats 5.2.0) bundled with esbuild
# into tests/services/browser/dist/ for the headless-chromium tests. `npm ci` runs only when
# package-lock.json changed since the last install; build.mjs skips up-to-date bundles.
set -euo pipefail
cd "$(dirname "$0")/../../tests/services/browser"

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
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  echo "node packages match package-lock.json"
else
  # esbuild's postinstall only checks its platform binary; npm may skip it (install-script
  # gating) and the binary still resolves from @esbuild/<platform>.
  npm ci --no-audit --no-fund
  echo "$want" >"$stamp"
fi
node build.mjs
