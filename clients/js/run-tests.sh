#!/usr/bin/env bash
# The JavaScript package's checks, for CI (`.ci/run`) and for anyone:
#   1. npm ci (exactly package-lock.json);
#   2. tsc builds src/ into dist/, which must equal the committed dist/ (the
#      playground serves the committed files);
#   3. the vendored @hpke/core bundle equals what node_modules gives (SHA-256);
#   4. the Node tests against a real server process;
#   5. the playground in headless Chromium (Debian's; installed with apt-get when
#      /usr/bin/chromium is missing; never a browser a tool downloads).
# The server binary is $WASM_HYPERVISOR_BIN, else <repo>/target/debug/wasm-hypervisor
# (build it first: `cargo build`).
set -euo pipefail
cd "$(dirname "$0")"
start=$(date +%s)

npm ci --no-audit --no-fund --loglevel=error

npx tsc -p tsconfig.json
if ! git diff --exit-code --stat -- dist; then
  echo "clients/js/dist differs from a build of src/: run 'npx tsc -p tsconfig.json' in clients/js and commit dist/" >&2
  exit 1
fi
if [ -n "$(git ls-files --others --exclude-standard -- dist)" ]; then
  echo "clients/js/dist has files that are not committed:" >&2
  git ls-files --others --exclude-standard -- dist >&2
  exit 1
fi

./vendor.sh --check

if [ ! -x /usr/bin/chromium ]; then
  echo "installing Debian's chromium for the playground test"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq chromium > /dev/null
fi

node --test test/*.test.mjs test/playground.browser.mjs

echo "clients/js: every check passed in $(( $(date +%s) - start )) s"
