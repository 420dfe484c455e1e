#!/usr/bin/env bash
# The whole test suite, from a fresh Debian machine: installs what the tests need (the Debian
# packages of the real peers when missing, and the npm packages as locked), builds, checks, and
# runs every test with node's test runner.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/ensure-debs.sh chromium apache2 libapache2-mod-auth-openidc nix-bin curl openssl ca-certificates glewlwyd sqlite3 zsh fish groff-base systemd util-linux
bash scripts/ensure-node18.sh >/dev/null
# The real Keycloak (test/e2e/keycloak.test.ts): Java 17+ runs it (any java on PATH or in JAVA_HOME
# will do), Maven fetches the pinned distribution from Maven Central, unzip unpacks it.
if [ -z "${JAVA_HOME:-}" ] && ! command -v java >/dev/null; then
  bash scripts/ensure-debs.sh openjdk-17-jre-headless
fi
bash scripts/ensure-debs.sh maven unzip
bash scripts/ensure-deps.sh
# Fetch, verify (sha256) and prepare Keycloak once, into ~/.cache/nix-cache-login-tests.
node --import tsx scripts/keycloak.ts prepare
npm run build
npm run check
if [ -f nix/ci-check.sh ]; then bash nix/ci-check.sh; fi
node --import tsx --test test/unit/*.test.ts test/e2e/*.test.ts
