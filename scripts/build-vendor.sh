#!/usr/bin/env bash
# Builds web/vendor/vapi-web.js: the @vapi-ai/web SDK pinned in package-lock.json, installed from the npm registry
# and bundled by esbuild into one ES module for the browser (the page loads it in hosted mode). The same `npm ci`
# installs the development pins, among them axe-core (node_modules/axe-core/axe.min.js), which the browser tests
# inject into every screen.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=web/vendor/vapi-web.js
ENTRY=scripts/vapi-entry.js

AXE=node_modules/axe-core/axe.min.js

# Up to date: newer than everything that decides its content (the pins, the entry and this script), and the
# tests' axe-core is installed (a checkout from before it was pinned has the bundle but not axe-core).
if [ -f "$OUT" ] && [ "$OUT" -nt package-lock.json ] && [ "$OUT" -nt package.json ] \
  && [ "$OUT" -nt "$ENTRY" ] && [ "$OUT" -nt "$0" ] && [ -f "$AXE" ]; then
  exit 0
fi

if ! command -v npm >/dev/null 2>&1 || ! command -v node >/dev/null 2>&1; then
  echo "build-vendor: node and npm are needed to build $OUT (the hosted-mode Vapi SDK)." >&2
  echo "build-vendor: install them (Debian: apt-get install -y nodejs npm) and run this script again." >&2
  exit 1
fi

echo "build-vendor: installing the pinned npm packages"
npm ci --no-audit --no-fund --loglevel=error

mkdir -p "$(dirname "$OUT")"
# Write beside the output and rename, so a failed build never leaves a partial file that looks up to date.
tmp="$(mktemp "$OUT.XXXXXX")"
trap 'rm -f "$tmp"' EXIT
# NODE_ENV=production drops the dependencies' development-only code paths.
node_modules/.bin/esbuild "$ENTRY" \
  --bundle --format=esm --platform=browser --target=es2020 --minify \
  --define:process.env.NODE_ENV='"production"' \
  --legal-comments=eof --log-level=warning \
  --outfile="$tmp"
# mktemp makes the file private; the server (maybe another user) must read it.
chmod 644 "$tmp"
mv -f "$tmp" "$OUT"
trap - EXIT
echo "build-vendor: wrote $OUT ($(wc -c <"$OUT") bytes)"
