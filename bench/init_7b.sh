#!/usr/bin/env bash
# Writes a randomly initialised Mistral-7B-v0.1-shaped model in bf16 with `paft init-model`, under
# /usr/bin/time -v, and prints its peak resident memory and wall time. 7,241,732,096 parameters:
# 14,483,464,192 bytes of bf16 in 3 shards of at most 5 GiB plus the index. The model is streamed
# tensor by tensor (the one being drawn and the one being written, in f32), so the peak should stay
# around 0.6 GB (the 32000 x 4096 embedding is 524 MB of f32) where the model in f32 takes 29 GB.
#
# Run by hand (not part of ctest): it needs ~14.5 GB free where the model goes and takes minutes
# (the normal draws, ~5 + 25/T ns a value on T cores, then the disk).
#
#   bench/init_7b.sh OUT_DIR [PAFT_BINARY]      # PAFT_BINARY defaults to build/paft
set -euo pipefail

out=${1:?usage: bench/init_7b.sh OUT_DIR [PAFT_BINARY]}
paft=${2:-$(cd "$(dirname "$0")/.." && pwd)/build/paft}
[[ -x $paft ]] || { echo "init_7b.sh: no paft binary at $paft (build first, or pass it)" >&2; exit 2; }
[[ -x /usr/bin/time ]] || { echo "init_7b.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# mistralai/Mistral-7B-v0.1's config.json (the fields paft reads; the rest are ignored).
cat > "$work/config.json" <<'JSON'
{
  "architectures": ["MistralForCausalLM"],
  "model_type": "mistral",
  "hidden_size": 4096,
  "intermediate_size": 14336,
  "num_hidden_layers": 32,
  "num_attention_heads": 32,
  "num_key_value_heads": 8,
  "vocab_size": 32000,
  "max_position_embeddings": 32768,
  "rms_norm_eps": 1e-05,
  "rope_theta": 10000.0,
  "sliding_window": 4096,
  "hidden_act": "silu",
  "tie_word_embeddings": false,
  "bos_token_id": 1,
  "eos_token_id": 2,
  "torch_dtype": "bfloat16"
}
JSON

echo "writing a random Mistral-7B (bf16) to $out with $paft"
# -o: the timing report to a file, so that paft's progress on stderr stays on the terminal.
/usr/bin/time -v -o "$work/time.txt" "$paft" init-model --config "$work/config.json" --dtype bf16 --out "$out"

peak_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
wall=$(awk -F': ' '/Elapsed \(wall clock\) time/ {print $2}' "$work/time.txt")
bytes=$(find "$out" -maxdepth 1 -name 'model*.safetensors' -printf '%s\n' | awk '{s += $1} END {print s}')
echo "files:"
ls -l "$out"
echo "safetensors bytes: $bytes (expected 14483464192 of tensor data plus the headers)"
echo "peak RSS: $(awk -v kb="$peak_kb" 'BEGIN {printf "%.2f GB (%d kB)", kb * 1024 / 1e9, kb}')"
echo "wall time: $wall"
