#!/usr/bin/python3
"""PyTorch peer of `paft merge` for the merge benchmark (bench/bench_merge.cpp): mergekit's
generalized task arithmetic (ties, task_arithmetic) in eager PyTorch on the CPU, streamed a
tensor at a time as mergekit's executor does, without mergekit's planner and its overheads.

    /usr/bin/python3 bench/torch_merge.py --base DIR (--adapter DIR ... | --model DIR ...) \
        --method ties|task_arithmetic --weights 1,1 [--density 0.5] --out DIR \
        [--threads 2] [--shard-bytes 5000000000] [--stable-sort]

Inputs: the base model and either PEFT LoRA adapters (model i = base + s * B_i @ A_i, the delta
formed directly as a float32 product, as paft does; mergekit would merge each adapter into a full
bf16 model first and subtract) or full fine-tuned models (delta = model.float() - base.float()).
torch 1.13 has no safetensors package: files are memory-mapped and tensors viewed in place with
torch.frombuffer, then copied to float32.

Per output tensor (the base's tensors, in file order), the math is mergekit's GTATask.execute and
sparsify.magnitude / get_mask, with dtype float32 and out_dtype bfloat16 (mergekit computes in the
configured dtype; float32 is what paft computes in):
  ties             per delta: k = int(density * numel), argsort(|delta|, descending)[:k] kept;
                   weighted = delta * w; elected sign = (sum_i weighted_i >= 0) * 2 - 1;
                   mask = sign(weighted) == elected; mixed = sum(weighted * mask) /
                   sum(w * mask) (a zero divisor becomes 1); out = base + mixed
  task_arithmetic  out = base + sum_i w_i * delta_i (normalize false, lambda 1)
A tensor that no input changes (the embeddings, norms and head of a LoRA merge) is copied from the
base: mergekit would run the arithmetic on zero deltas there; paft copies it too.
argsort is torch's default (unstable) one, as mergekit's: entries of equal magnitude at the k-th
place are kept in an unspecified order. --stable-sort keeps the lowest flat indices first, paft's
rule, to compare outputs exactly where ties are frequent (deltas of bf16 models); it is slower.

Output: like mergekit's TensorWriter, merged tensors accumulate in memory until the next one would
take the shard past --shard-bytes (mergekit's --out-shard-size, 5 GB by default), then the shard is
written; one shard is model.safetensors, several are model-0000i-of-0000n.safetensors with
model.safetensors.index.json. Shards are fsync'ed (paft writes atomically, fsync'ing too).
config.json and tokenizer files are copied from the base.

The last stdout line is one JSON object: {"seconds", "tensors", "merged", "params", "threads",
"torch"}.
"""

import argparse
import json
import math
import mmap
import os
import shutil
import struct
import time
import warnings

import torch

# torch.frombuffer warns that a read-only mapping is not writable; tensors viewed from it are only
# ever read (copied to float32 first).
warnings.filterwarnings("ignore", message="The given buffer is not writable")

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.model",
                   "vocab.json", "merges.txt", "generation_config.json"]


class MappedTensors:
    """The tensors of a model or adapter directory (one file or index + shards), memory-mapped;
    get(name) is a view of the mapped bytes (no copy)."""

    def __init__(self, paths):
        self.entries = {}  # name -> (mapping, dtype, shape, byte offset)
        self.order = []  # names by file, then by data offset
        self.maps = []
        for path in paths:
            with open(path, "rb") as f:
                (n,) = struct.unpack("<Q", f.read(8))
                header = json.loads(f.read(n))
                mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
            self.maps.append(mapping)
            header.pop("__metadata__", None)
            for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
                if info["dtype"] not in DTYPES:
                    raise ValueError(f"{path}: tensor {name}: unsupported dtype {info['dtype']}")
                self.entries[name] = (mapping, DTYPES[info["dtype"]], info["shape"], 8 + n + info["data_offsets"][0])
                self.order.append(name)

    @staticmethod
    def open_dir(path, prefix="model"):
        single = os.path.join(path, f"{prefix}.safetensors")
        if os.path.exists(single):
            return MappedTensors([single])
        with open(os.path.join(path, f"{prefix}.safetensors.index.json")) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
        return MappedTensors([os.path.join(path, name) for name in files])

    def get(self, name):
        mapping, dtype, shape, offset = self.entries[name]
        count = math.prod(shape)
        return torch.frombuffer(mapping, dtype=dtype, count=count, offset=offset).reshape(shape)


class LoraDeltas:
    """A PEFT adapter: delta(name) = s * B @ A (float32) for the modules it targets, else None."""

    def __init__(self, path):
        with open(os.path.join(path, "adapter_config.json")) as f:
            cfg = json.load(f)
        r, alpha = cfg["r"], cfg["lora_alpha"]
        self.scale = alpha / math.sqrt(r) if cfg.get("use_rslora", False) else alpha / r
        self.tensors = MappedTensors([os.path.join(path, "adapter_model.safetensors")])

    def delta(self, name, base):
        stem = "base_model.model." + name[: -len(".weight")]
        if not name.endswith(".weight") or stem + ".lora_A.weight" not in self.tensors.entries:
            return None
        a = self.tensors.get(stem + ".lora_A.weight").float()
        b = self.tensors.get(stem + ".lora_B.weight").float()
        return (b @ a) * self.scale  # PEFT's get_delta_weight order


class ModelDeltas:
    """A full fine-tuned model: delta(name) = model.float() - base."""

    def __init__(self, path):
        self.tensors = MappedTensors.open_dir(path)

    def delta(self, name, base):
        return self.tensors.get(name).float() - base


def magnitude(delta, density, stable):
    """mergekit's sparsify.magnitude: keep the k largest |delta| of the whole tensor."""
    if density >= 1:
        return delta
    k = int(density * delta.numel())
    assert k > 0, "density keeps no entry"
    mask = torch.zeros_like(delta)
    w = delta.abs().view(-1)
    order = torch.argsort(w, descending=True, stable=True) if stable else torch.argsort(w, descending=True)
    mask.view(-1)[order[:k]] = 1
    return delta * mask


def merge_tensor(base, deltas, method, weights, density, stable):
    """base float32; deltas one per input (a zero tensor where an input leaves it unchanged)."""
    if method == "ties":
        deltas = [magnitude(d, density, stable) for d in deltas]
    stacked = torch.stack(deltas, dim=0)
    w = torch.tensor(weights, dtype=stacked.dtype).view([-1] + [1] * base.dim())
    weighted = stacked * w
    if method == "ties":
        sign = weighted.sign()
        elected = (weighted.sum(dim=0) >= 0).to(stacked.dtype) * 2 - 1
        mask = sign == elected
        mixed = (weighted * mask).sum(dim=0)
        divisor = (w * mask).sum(dim=0)
        divisor[divisor == 0] = 1
        mixed /= divisor
    else:
        mixed = weighted.sum(dim=0)
    return base + mixed


class ShardWriter:
    """mergekit's TensorWriter: shards accumulated in memory up to max_bytes, then written."""

    def __init__(self, out, max_bytes):
        self.out, self.max_bytes = out, max_bytes
        self.shard, self.shard_bytes, self.files, self.weight_map, self.total = [], 0, [], {}, 0

    def add(self, name, tensor):
        size = tensor.numel() * tensor.element_size()
        if self.shard and self.shard_bytes + size > self.max_bytes:
            self.flush()
        self.shard.append((name, tensor.contiguous()))
        self.shard_bytes += size
        self.total += size

    def flush(self):
        path = os.path.join(self.out, f"shard-{len(self.files) + 1}.tmp")
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, t in self.shard:
            size = t.numel() * t.element_size()
            dtype = {v: k for k, v in DTYPES.items()}[t.dtype]
            header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [offset, offset + size]}
            offset += size
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(text)))
            f.write(text)
            for _, t in self.shard:
                raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
                f.write(memoryview(raw.numpy()).cast("B"))
            f.flush()
            os.fsync(f.fileno())
        self.files.append((path, [name for name, _ in self.shard]))
        self.shard, self.shard_bytes = [], 0

    def finish(self):
        if self.shard:
            self.flush()
        n = len(self.files)
        for i, (path, names) in enumerate(self.files):
            final = "model.safetensors" if n == 1 else f"model-{i + 1:05d}-of-{n:05d}.safetensors"
            os.replace(path, os.path.join(self.out, final))
            for name in names:
                self.weight_map[name] = final
        if n > 1:
            index = {"metadata": {"total_size": self.total}, "weight_map": self.weight_map}
            with open(os.path.join(self.out, "model.safetensors.index.json"), "w") as f:
                json.dump(index, f, indent=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", required=True)
    ap.add_argument("--adapter", action="append", default=[])
    ap.add_argument("--model", action="append", default=[])
    ap.add_argument("--method", choices=["ties", "task_arithmetic"], required=True)
    ap.add_argument("--weights", default=None, help="comma-separated, one per input; default 1 each")
    ap.add_argument("--density", type=float, default=1.0)
    ap.add_argument("--out", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--shard-bytes", type=float, default=5e9)
    ap.add_argument("--stable-sort", action="store_true")
    args = ap.parse_args()
    if bool(args.adapter) == bool(args.model):
        ap.error("give either --adapter or --model inputs")
    torch.set_num_threads(args.threads)  # mergekit's --num-threads sets both
    torch.set_num_interop_threads(args.threads)

    t0 = time.perf_counter()
    inputs = [LoraDeltas(p) for p in args.adapter] + [ModelDeltas(p) for p in args.model]
    weights = [float(w) for w in args.weights.split(",")] if args.weights else [1.0] * len(inputs)
    if len(weights) != len(inputs):
        ap.error(f"{len(weights)} weights for {len(inputs)} inputs")
    base = MappedTensors.open_dir(args.base)
    os.makedirs(args.out)
    writer = ShardWriter(args.out, args.shard_bytes)
    merged, params = 0, 0
    for name in base.order:
        stored = base.get(name)
        params += stored.numel()
        b = stored.float()
        deltas = [x.delta(name, b) for x in inputs]
        if all(d is None for d in deltas):
            writer.add(name, stored.to(torch.bfloat16).clone())  # no input changes it: the base's bits
            continue
        deltas = [torch.zeros_like(b) if d is None else d for d in deltas]
        out = merge_tensor(b, deltas, args.method, weights, args.density, args.stable_sort)
        writer.add(name, out.to(torch.bfloat16))
        merged += 1
    writer.finish()
    for name in ["config.json"] + TOKENIZER_FILES:
        if os.path.exists(os.path.join(args.base, name)):
            shutil.copyfile(os.path.join(args.base, name), os.path.join(args.out, name))
    seconds = time.perf_counter() - t0
    print(json.dumps({"seconds": seconds, "tensors": len(base.order), "merged": merged, "params": params,
                      "threads": args.threads, "torch": torch.__version__}))


if __name__ == "__main__":
    main()
