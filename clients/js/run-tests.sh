#!/usr/bin/env bash
# The JavaScript package's checks, for CI (`.ci/run`) and for anyone:
#   1. npm ci (exactly package-lock.json);
#   2. tsc builds src/ into dist/, which must equal the committed dist/ (the
#      playground serves the committed files);
#   3. the vendored @hpke/core bundle equals what node_modules gives (SHA-256);
#   4. the Node tests against a real server process;
#   5. the playground in headless Chromium (Debian's /usr/bin/chromium, or
#      $CHROMIUM; never a browser a tool downloads). This script installs nothing:
#      without it, it stops at once and names the package (.ci/run installs it).
# The server binary is $WASM_HYPERVISOR_BIN, else <repo>/target/debug/wasm-hypervisor
# (build it first: `cargo build`).
set -euo pipefail
cd "$(dirname "$0")"
start=$(date +%s)

chromium="${CHROMIUM:-/usr/bin/chromium}"
if [ ! -x "$chromium" ]; then
  echo "clients/js/run-tests.sh: the playground test needs Chromium at $chromium:" \
    "install Debian's package (apt-get install chromium), or set CHROMIUM to another build" >&2
  exit 1
fi

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

node --test test/*.test.mjs test/playground.browser.mjs

echo "clients/js: every check passed in $(( $(date +%s) - start )) s"
