#!/usr/bin/env bash
# Installs the llama.cpp oracle (node-llama-cpp 3.21.1 and its prebuilt linux-x64 CPU build, pinned in
# package-lock.json) into DEST/node_modules; tools/llamacpp/oracle.mjs DEST then runs llama.cpp from there.
#   bash tools/llamacpp/install_oracle.sh DEST
# --omit=optional skips the CUDA, Vulkan and other platforms' binaries (~650 MB) that node-llama-cpp lists
# as optional; the CPU build is a direct dependency. package.json's config.nodeLlamaCppPostinstall=skip
# stops node-llama-cpp's postinstall from probing GPUs or trying to build llama.cpp.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
dest="${1:?usage: install_oracle.sh DEST}"
mkdir -p "$dest"
# Reinstall only when the lock file changed: npm ci always starts from scratch.
if [ -f "$dest/package-lock.json" ] && cmp -s "$here/package-lock.json" "$dest/package-lock.json" \
   && cmp -s "$here/package.json" "$dest/package.json" \
   && [ -f "$dest/node_modules/@node-llama-cpp/linux-x64/bins/linux-x64/llama-addon.node" ] \
   && [ -f "$dest/node_modules/node-llama-cpp/dist/index.js" ]; then
  exit 0
fi
cp "$here/package.json" "$here/package-lock.json" "$dest/"
cd "$dest"
npm ci --omit=optional --no-audit --no-fund --loglevel=error
