#!/usr/bin/env bash
# Azurite 3.37.0 (npm), Microsoft's Azure Blob Storage emulator: the real server the
# azure storage backend tests talk to. Installed into tests/services/azurite-server/;
# `npm ci` runs only when package-lock.json changed since the last install.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=../lib/npm-packages.sh
. "$here/../lib/npm-packages.sh"
cd "$here/../../tests/services/azurite-server"

ensure_npm
npm_ci_when_changed node_modules/.bin/azurite-blob --omit=dev
node_modules/.bin/azurite-blob --version
