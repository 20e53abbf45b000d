#!/usr/bin/env bash
# The real rtcstats clients (npm @jitsi/rtcstats 9.7.1, rtcstats 5.2.0) bundled with esbuild
# into tests/services/browser/dist/ for the headless-chromium tests. `npm ci` runs only when
# package-lock.json changed since the last install; build.mjs skips up-to-date bundles.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../lib/npm-packages.sh
. "$here/../lib/npm-packages.sh"
cd "$here/../../tests/services/browser"

ensure_npm
# esbuild's postinstall only checks its platform binary; npm may skip it (install-script
# gating) and the binary still resolves from @esbuild/<platform>.
npm_ci_when_changed node_modules/esbuild
node build.mjs
