#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (the Debian
# packages of the real peers when missing, and the npm packages as locked), builds, checks, and
# runs every test with node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-debs.sh chromium apache2 libapache2-mod-auth-openidc nix-bin curl openssl ca-certificates glewlwyd sqlite3 zsh fish groff-base systemd util-linux
bash scripts/ensure-node18.sh >/dev/null
bash scripts/ensure-deps.sh
npm run build
npm run check
if [ -f nix/ci-check.sh ]; then bash nix/ci-check.sh; fi
node --import tsx --test test/unit/*.test.ts test/e2e/*.test.ts
