"""Minimal safetensors reader/writer (no dependency on the `safetensors` package).

File layout:
  8 bytes   little-endian u64 N = header length
  N bytes   JSON {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [b, e]}, ...}
            padded with spaces so that N is a multiple of 8
  data      raw little-endian tensor bytes; data_offsets are relative to the start of this section

Sharded checkpoints (Hugging Face style): <prefix>-0000i-of-0000n.safetensors plus
<prefix>.safetensors.index.json = {"metadata": {"total_size": bytes}, "weight_map": {name: file}}.
"""

import json
import os
import struct

import numpy as np
import torch

# safetensors dtype name -> (torch dtype, numpy dtype used for the raw bytes)
# bf16 has no numpy type: its bytes travel as little-endian int16 and are re-viewed in torch.
_DTYPES = {
    "F64": (torch.float64, np.dtype("<f8")),
    "F32": (torch.float32, np.dtype("<f4")),
    "F16": (torch.float16, np.dtype("<f2")),
    "BF16": (torch.bfloat16, np.dtype("<i2")),
    "I64": (torch.int64, np.dtype("<i8")),
    "I32": (torch.int32, np.dtype("<i4")),
    "I16": (torch.int16, np.dtype("<i2")),
    "I8": (torch.int8, np.dtype("i1")),
    "U8": (torch.uint8, np.dtype("u1")),
    "BOOL": (torch.bool, np.dtype("?")),
}
_BY_TORCH = {tdt: name for name, (tdt, _) in _DTYPES.items()}


def dtype_name(t):
    """safetensors dtype string of a torch tensor or torch dtype."""
    dt = t.dtype if isinstance(t, torch.Tensor) else t
    if dt not in _BY_TORCH:
        raise ValueError(f"unsupported dtype {dt}")
    return _BY_TORCH[dt]


def _to_bytes(t):
    t = t.detach().cpu().contiguous()
    if t.dtype == torch.bfloat16:
        arr = t.view(torch.int16).numpy()
    else:
        arr = t.numpy()
    return arr.astype(arr.dtype.newbyteorder("<"), copy=False).tobytes()


def _as_stored(tensors, dtype):
    """Casts every floating tensor to `dtype` (if given); integer tensors stay as they are."""
    out = {}
    for name, t in tensors.items():
        if dtype is not None and t.is_floating_point():
            t = t.to(dtype)
        out[name] = t
    return out


def save_file(tensors, path, metadata=None, dtype=None):
    """Writes {name: tensor} to `path` in the order given. `dtype` optionally casts float tensors."""
    tensors = _as_stored(tensors, dtype)
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        b = _to_bytes(t)
        header[name] = {"dtype": dtype_name(t), "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)  # pad so the data section starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def read_header(path):
    """Returns (header dict without __metadata__, metadata dict, data section start)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n).decode("utf-8"))
    meta = header.pop("__metadata__", {}) or {}
    return header, meta, 8 + n


def load_file(path):
    """Reads every tensor of one file into a dict of torch tensors (in their stored dtype)."""
    header, _, start = read_header(path)
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read()
    out = {}
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        tdt, ndt = _DTYPES[info["dtype"]]
        b, e = info["data_offsets"]
        shape = tuple(info["shape"])
        arr = np.frombuffer(data[b:e], dtype=ndt).astype(ndt.newbyteorder("="), copy=True)
        n = int(np.prod(shape)) if shape else 1
        if arr.size != n:
            raise ValueError(f"{path}: tensor {name}: {arr.size} elements for shape {list(shape)}")
        t = torch.from_numpy(arr)
        if tdt == torch.bfloat16:
            t = t.view(torch.bfloat16)
        out[name] = t.reshape(shape)
    return out


def save_sharded(tensors, dirpath, prefix="model", n_shards=2, metadata=None, dtype=None):
    """Writes `tensors` as n_shards files of roughly equal size plus the HF index json.

    Tensors keep their order; a shard boundary is placed once the running size passes
    k/n of the total. Returns the list of shard file names.
    """
    tensors = _as_stored(tensors, dtype)
    sizes = {name: t.numel() * t.element_size() for name, t in tensors.items()}
    total = sum(sizes.values())
    names = list(tensors)
    groups = [[] for _ in range(n_shards)]
    running = 0
    for name in names:
        k = min(n_shards - 1, (running * n_shards) // max(total, 1))
        groups[k].append(name)
        running += sizes[name]
    groups = [g for g in groups if g]
    n = len(groups)
    files = [f"{prefix}-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    weight_map = {}
    for fname, group in zip(files, groups):
        save_file({k: tensors[k] for k in group}, os.path.join(dirpath, fname), metadata=metadata)
        for k in group:
            weight_map[k] = fname
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(dirpath, f"{prefix}.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")
    return files


def load_dir(dirpath, prefix="model"):
    """Reads <prefix>.safetensors or the shards listed by <prefix>.safetensors.index.json."""
    single = os.path.join(dirpath, f"{prefix}.safetensors")
    if os.path.exists(single):
        return load_file(single)
    with open(os.path.join(dirpath, f"{prefix}.safetensors.index.json")) as f:
        index = json.load(f)
    out = {}
    for fname in sorted(set(index["weight_map"].values())):
        for name, t in load_file(os.path.join(dirpath, fname)).items():
            if name in out:
                raise ValueError(f"tensor {name} appears in two shards")
            out[name] = t
    missing = set(index["weight_map"]) - set(out)
    if missing:
        raise ValueError(f"index lists tensors missing from the shards: {sorted(missing)[:5]}")
    return out
