#!/usr/bin/env bash
# Fuzzes paft's parsers with libFuzzer (clang-14), everything under AddressSanitizer and UBSan.
#   bash scripts/fuzz.sh                 # every harness for 600 s, two at a time
#   bash scripts/fuzz.sh 1800 jinja dataset
# (bash scripts/setup.sh fuzz ... installs the packages first, then runs this.)
# Harnesses are fuzz/fuzz_NAME.cpp. Each starts from its committed corpus fuzz/corpus/NAME (a new
# harness from the hand-made seeds of fuzz/seeds/make_seeds.py) and writes what it discovers to
# fuzz/work/NAME; at the end the corpus is minimized (libFuzzer's -merge=1: the fewest inputs
# that reach all the coverage found) back into fuzz/corpus/NAME. Commit it: every build's tests
# replay every corpus. A crash, leak, sanitizer report, timeout (an input running past 10 s) or
# out-of-memory (past 2 GB) is kept as fuzz/findings/NAME-*; the script then exits 1. Once fixed,
# a finding goes to fuzz/regressions/NAME/, which the tests replay with the corpus.
# Logs: fuzz/work/NAME.log. PAFT_FUZZ_JOBS sets how many harnesses run at once (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-600}"
shift || true
parallel="${PAFT_FUZZ_JOBS:-2}"

if ! command -v clang++-14 >/dev/null; then
  echo "clang++-14 is missing: run bash scripts/setup.sh fuzz (it installs the packages, then fuzzes)" >&2
  exit 2
fi
CC=clang-14 CXX=clang++-14 cmake -S . -B build-fuzz -DCMAKE_BUILD_TYPE=None -DCMAKE_CXX_FLAGS=-O1 \
  -DPAFT_FUZZ=ON -DPAFT_TESTS=OFF -DPAFT_NATIVE=OFF >/dev/null
if [ "$#" -gt 0 ]; then
  harnesses="$*"
else
  harnesses=$(ls fuzz/fuzz_*.cpp | sed 's|fuzz/fuzz_||; s|\.cpp$||')
fi
targets=""
for h in $harnesses; do
  [ -f "fuzz/fuzz_$h.cpp" ] || { echo "no harness fuzz/fuzz_$h.cpp" >&2; exit 2; }
  targets="$targets fuzz-${h//_/-}"
done
cmake --build build-fuzz -j "$(nproc)" --target $targets
/usr/bin/python3 fuzz/seeds/make_seeds.py

mkdir -p fuzz/work fuzz/findings
export ASAN_OPTIONS="detect_leaks=1:allocator_may_return_null=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
fuzz_one() {
  local h="$1" seconds="$2"
  local bin="build-fuzz/fuzz/fuzz-${h//_/-}"
  rm -rf "fuzz/work/$h" "fuzz/work/$h.min"
  mkdir -p "fuzz/work/$h" "fuzz/work/$h.min"
  echo "fuzzing $h for $seconds s"
  "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/findings/$h-" "fuzz/work/$h" "fuzz/corpus/$h" >"fuzz/work/$h.log" 2>&1 || true
  # The smallest set of inputs with all the coverage of the old corpus and the new finds.
  if "$bin" -merge=1 -timeout=10 -rss_limit_mb=2048 "fuzz/work/$h.min" "fuzz/corpus/$h" "fuzz/work/$h" \
       >>"fuzz/work/$h.log" 2>&1 && [ -n "$(ls "fuzz/work/$h.min")" ]; then
    rm -rf "fuzz/corpus/$h"
    mv "fuzz/work/$h.min" "fuzz/corpus/$h"
  fi
}
export -f fuzz_one
printf '%s\n' $harnesses | xargs -P "$parallel" -I{} bash -c 'fuzz_one {} '"$seconds"

status=0
printf '%-18s %12s %8s %8s %s\n' harness execs exec/s corpus findings
for h in $harnesses; do
  log="fuzz/work/$h.log"
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | head -1 | awk '{print $2}')
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | head -1 | awk '{print $2}')
  corpus=$(ls "fuzz/corpus/$h" | wc -l)
  findings=$(ls fuzz/findings 2>/dev/null | grep -c "^$h-" || true)
  printf '%-18s %12s %8s %8s %s\n' "$h" "${execs:-?}" "${rate:-?}" "$corpus" "$findings"
  [ "$findings" -eq 0 ] || status=1
done
[ "$status" -eq 0 ] || echo "findings in fuzz/findings (reproduce: build-fuzz/fuzz/fuzz-NAME FILE)"
exit "$status"
