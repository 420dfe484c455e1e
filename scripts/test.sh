#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (the Debian
# packages of the real peers when missing, the npm packages as locked, and the official Node 22
# and 24 binaries locked in test/runtimes), builds, checks, runs every test with node's test
# runner on the machine's node, then the start-up and core end-to-end tests on Node 22 and 24.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-debs.sh chromium apache2 libapache2-mod-auth-openidc nix-bin curl openssl ca-certificates glewlwyd sqlite3 zsh fish groff-base systemd util-linux
bash scripts/ensure-node18.sh >/dev/null
bash scripts/ensure-deps.sh
runtimes=test/runtimes
if [ ! -f "$runtimes/node_modules/.package-lock.json" ] ||
  [ "$runtimes/package-lock.json" -nt "$runtimes/node_modules/.package-lock.json" ]; then
  npm ci --prefix "$runtimes" --no-audit --no-fund
fi
npm run build
npm run check
bash nix/ci-check.sh
node --import tsx --test test/unit/*.test.ts test/e2e/*.test.ts
for version in 22 24; do
  runtime="$runtimes/node_modules/node$version/bin/node"
  echo "== the start-up and core end-to-end tests on $("$runtime" --version)"
  "$runtime" --import tsx --test test/e2e/startup.test.ts test/e2e/core.test.ts
done
