#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (the Debian
# packages of the real peers when missing, the npm packages as locked, and the official Node 22
# and 24 binaries locked in test/runtimes), builds, checks, runs every test with node's test
# runner on the machine's node, then the start-up and core end-to-end tests on Node 22 and 24.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-debs.sh chromium apache2 libapache2-mod-auth-openidc nix-bin curl openssl ca-certificates glewlwyd sqlite3 zsh fish groff-base systemd util-linux dbus-daemon gnome-keyring libsecret-tools python3-secretstorage xvfb xdotool faketime time
bash scripts/ensure-node18.sh >/dev/null
# The real Keycloak (test/e2e/keycloak.test.ts): Java 17+ runs it (any java on PATH or in JAVA_HOME
# will do), Maven fetches the pinned distribution from Maven Central, unzip unpacks it.
if [ -z "${JAVA_HOME:-}" ] && ! command -v java >/dev/null; then
  bash scripts/ensure-debs.sh openjdk-17-jre-headless
fi
bash scripts/ensure-debs.sh maven unzip
bash scripts/ensure-deps.sh
runtimes=test/runtimes
if [ ! -f "$runtimes/node_modules/.package-lock.json" ] ||
  [ "$runtimes/package-lock.json" -nt "$runtimes/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$runtimes" --no-audit --no-fund
fi
# Fetch, verify (sha256) and prepare Keycloak once, into ~/.cache/nix-cache-login-tests.
node --import tsx scripts/keycloak.ts prepare
npm run build
npm run check
bash nix/ci-check.sh
# One file at a time (what node's runner does on 2 cores anyway), so that the slowest files can be
# named at the end; a failure fails the run after every file has run.
failed=()
timings=$(mktemp)
trap 'rm -f "$timings"' EXIT
for file in test/unit/*.test.ts test/harness/*.test.ts test/e2e/*.test.ts; do
  start=$(date +%s%N)
  node --import tsx --test "$file" || failed+=("$file")
  echo "$((($(date +%s%N) - start) / 1000000)) $file" >>"$timings"
done
echo "== the slowest test files (wall ms)"
sort -rn "$timings" | head -8
for version in 22 24; do
  runtime="$runtimes/node_modules/node$version/bin/node"
  echo "== the start-up and core end-to-end tests on $("$runtime" --version)"
  "$runtime" --import tsx --test test/e2e/startup.test.ts test/e2e/core.test.ts || failed+=("Node $version")
done
if ((${#failed[@]} > 0)); then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
