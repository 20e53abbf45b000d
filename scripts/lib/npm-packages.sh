# Sourced by the install.d scripts that install a project-local npm package set.

# npm from Debian's packages when the machine has none.
ensure_npm() {
  command -v npm >/dev/null && return 0
  local as_root=()
  if [ "$(id -u)" -ne 0 ]; then
    as_root=(sudo)
  fi
  "${as_root[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -q --no-install-recommends nodejs npm
}

# `npm ci [ARGS...]` in the current directory, only when package-lock.json changed since
# the last install or REQUIRED (a file the install must leave) is missing.
npm_ci_when_changed() {
  local required=$1
  shift
  local stamp=node_modules/.rtcstats-lock.sha256
  local want
  want="$(sha256sum package-lock.json | cut -d' ' -f1)"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -e "$required" ]; then
    echo "node packages in $(basename "$PWD") match package-lock.json"
    return 0
  fi
  npm ci --no-audit --no-fund "$@"
  echo "$want" >"$stamp"
}
