#!/usr/bin/env bash
# Writes the vendored @hpke/core ESM bundle the playground imports (no build step
# to serve it) and its licenses, from node_modules (after `npm ci`). With
# --check, writes them to a temporary directory and fails unless they equal the
# committed files byte for byte (SHA-256).
set -euo pipefail
cd "$(dirname "$0")"
out=vendor
if [ "${1:-}" = "--check" ]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
npx esbuild node_modules/@hpke/core/esm/mod.js --bundle --format=esm --platform=browser \
  --legal-comments=inline --log-level=warning --outfile="$out/hpke-core.js"
{
  echo "vendor/hpke-core.js bundles @hpke/core $(node -p 'require("./node_modules/@hpke/core/package.json").version') and @hpke/common $(node -p 'require("./node_modules/@hpke/common/package.json").version') (https://github.com/dajiaji/hpke-js), under these licenses."
  echo
  echo "== @hpke/core =="
  cat node_modules/@hpke/core/LICENSE
  echo
  echo "== @hpke/common =="
  cat node_modules/@hpke/common/LICENSE
} > "$out/hpke-core.LICENSE"
if [ "${1:-}" = "--check" ]; then
  for file in hpke-core.js hpke-core.LICENSE; do
    want=$(sha256sum < "$out/$file" | cut -d' ' -f1)
    have=$(sha256sum < "vendor/$file" | cut -d' ' -f1)
    if [ "$want" != "$have" ]; then
      echo "vendor/$file is out of date (sha256 $have, node_modules gives $want): run clients/js/vendor.sh" >&2
      exit 1
    fi
    echo "vendor/$file in sync with node_modules (sha256 $have)"
  done
fi
