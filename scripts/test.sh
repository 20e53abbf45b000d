#!/usr/bin/env bash
# Installs everything the test suite needs on a fresh Debian machine, then runs it.
# Idempotent: each step is skipped when what it installs is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "Python packages"
python3 -m pip install --quiet --disable-pip-version-check -e '.[test]'

for extra in scripts/install.d/*.sh; do
  [ -e "$extra" ] || continue
  step "$(basename "$extra")"
  bash "$extra"
done

step "tests"
python3 -m pytest -q -p no:cacheprovider "$@"
