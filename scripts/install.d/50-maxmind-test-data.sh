#!/usr/bin/env bash
# MaxMind's test databases (GeoIP2-City-Test.mmdb, GeoLite2-ASN-Test.mmdb) for the
# geolocation tests, into tests/data/test-data/ (not tracked). They ship inside the
# maxminddb source distribution on PyPI, fetched with pip (the sdist is cached); the
# version is pinned because the tests name addresses these files hold. Skipped when
# the files of this version are there already.
set -euo pipefail
version=3.2.0
files=(GeoIP2-City-Test.mmdb GeoLite2-ASN-Test.mmdb)
here="$(cd "$(dirname "$0")" && pwd)"
dest="$here/../../tests/data/test-data"
stamp="$dest/.maxminddb-$version"

present=1
for file in "${files[@]}"; do
  [ -f "$dest/$file" ] || present=0
done
if [ "$present" = 1 ] && [ -f "$stamp" ]; then
  echo "MaxMind test databases of maxminddb $version are in tests/data/test-data"
  exit 0
fi

cache="${XDG_CACHE_HOME:-$HOME/.cache}/rtcstats-collector/sdists"
sdist="$cache/maxminddb-$version.tar.gz"
mkdir -p "$cache" "$dest"
if [ ! -f "$sdist" ]; then
  python3 -m pip download --quiet --disable-pip-version-check \
    --no-binary :all: --no-deps "maxminddb==$version" -d "$cache"
fi
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
members=()
for file in "${files[@]}"; do
  members+=("maxminddb-$version/tests/data/test-data/$file")
done
tar -xzf "$sdist" -C "$scratch" "${members[@]}"
for file in "${files[@]}"; do
  cp "$scratch/maxminddb-$version/tests/data/test-data/$file" "$dest/$file"
done
rm -f "$dest"/.maxminddb-*
touch "$stamp"
echo "MaxMind test databases of maxminddb $version copied to tests/data/test-data"
