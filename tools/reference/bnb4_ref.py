#!/usr/bin/python3
"""Writes the cases the 4-bit weight tests (tests/test-bnb4.cpp) compare against: bitsandbytes'
quantize_4bit / dequantize_4bit (blocksize 64, quant_type nf4 or fp4, compress_statistics off or
on), computed with torch tensor operations from bitsandbytes' published code tables, thresholds
and block rules. bitsandbytes itself is not needed.

    /usr/bin/python3 tools/reference/bnb4_ref.py --out DIR [--force]

DIR/ holds
  cases.json          [{name, input, type ("nf4" | "fp4"), double_quant, rows, cols}], written
                      last: when it is newer than this script and st.py the run does nothing
  cases.safetensors   tables.nf4 [16] F32, tables.fp4 [16] F32 (the code values by code),
                      tables.dynamic_map [256] F32 (create_dynamic_map(signed=True));
                      <input>.input [rows, cols] F32, shared by the four variants of an input;
                      per case <name>.codes [(rows*cols + 1) / 2] U8 (value 2i in the high
                      nibble of byte i), and either <name>.absmax [blocks] F32 or
                      <name>.absmax_q [blocks] U8, <name>.absmax_scale [ceil(blocks / 256)] F32,
                      <name>.absmax_offset [1] F32; <name>.dequant [rows, cols] F32 (dequantize_4bit)

The rules, as bitsandbytes' CUDA kernels and functional.py apply them:
  * blocks of 64 over the flattened tensor (the last may be short, padded with zeros that are
    quantized too); absmax = max |x| of the block
  * the normalized value is x * (1 / absmax) in float32 (a reciprocal, then a product), and the
    code is found by a fixed decision tree of strict "x > pivot" tests: NF4 over 15 pivots, FP4
    over 7 pivots of |x| with the sign bit from x < 0; a zero absmax gives 0 * inf = NaN, which
    fails every test: code 0
  * dequantized value = table[code] * absmax, one float32 product
  * double quantization: offset = mean of the absmax values (here the mean in float64 of the
    correctly rounded sum, rounded to float32; bitsandbytes' torch.mean in float32 on the GPU sums
    in an order that cannot be reproduced and can differ from it by an ulp or so), then the
    centered absmax values are quantized by blocks of 256 into the signed dynamic map with the
    8-bit kernel's binary search (ties to the even index, as its midpoint tests fall), and decoded
    as (map[q] * scale) + offset, two float32 roundings
  * the dynamic map is create_dynamic_map's float32 arithmetic with torch.linspace as current
    torch computes it (see linspace_f32), and the tables' constants are the kernels' C float
    literals (see c_float)
"""

import argparse
import json
import math
import os
import sys
from fractions import Fraction

import torch

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import cases_cli  # noqa: E402
import st  # noqa: E402

F32 = torch.float32
BLOCK = 64  # values per absmax
GROUP = 256  # absmax values per scale when double-quantized


def c_float(text):
    """The value of the C literal `<text>f`: the decimal rounded once to the nearest float32 (ties
    to even). Going through a Python float (double) first rounds twice, which moves four of the
    NF4 pivots by an ulp."""
    exact = Fraction(text)
    near = torch.tensor(float(exact), dtype=F32)
    candidates = [torch.nextafter(near, torch.tensor(-math.inf)), near, torch.nextafter(near, torch.tensor(math.inf))]
    key = lambda c: (abs(Fraction(c.item()) - exact), int(c.view(torch.int32).item()) & 1)  # noqa: E731
    return min(candidates, key=key).item()


def c_floats(texts):
    return torch.tensor([c_float(t) for t in texts.split()], dtype=F32)


# bitsandbytes' NF4 code values (csrc/kernels.cu dDequantizeNF4, functional.py get_4bit_type).
NF4 = c_floats("-1.0 -0.6961928009986877 -0.5250730514526367 -0.39491748809814453 -0.28444138169288635 "
               "-0.18477343022823334 -0.09105003625154495 0.0 0.07958029955625534 0.16093020141124725 "
               "0.24611230194568634 0.33791524171829224 0.44070982933044434 0.5626170039176941 "
               "0.7229568362236023 1.0")
# The pivots of dQuantizeNF4's tree, ascending (the code is the number of pivots below x).
NF4_PIVOTS = c_floats("-0.8480964004993439 -0.6106329262256622 -0.4599952697753906 -0.33967943489551544 "
                      "-0.23460740596055984 -0.13791173323988914 -0.045525018125772476 0.03979014977812767 "
                      "0.1202552504837513 0.2035212516784668 0.2920137718319893 0.3893125355243683 "
                      "0.5016634166240692 0.6427869200706482 0.8614784181118011")
# FP4 by code (dDequantizeFP4Tree's constants; bit 3 is the sign, so code 8 is -0).
FP4_MAGNITUDES = c_floats("0.0 5.208333333e-03 0.66666667 1.0 0.33333333 0.5 0.16666667 0.25")
FP4 = torch.cat([FP4_MAGNITUDES, -FP4_MAGNITUDES])
# dQuantizeFP4's pivots on |x| ascending, and the code of each interval between them.
FP4_PIVOTS = c_floats("0.00260417 0.0859375 0.20833333 0.29166667 0.4166667 0.583333 0.8333333")
FP4_CODE_BY_RANK = torch.tensor([0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011])


def linspace_f32(start, end, steps):
    """torch.linspace(start, end, steps) in float32 as current torch's CPU kernel computes it:
    step = (end - start) / (steps - 1) in float32, point i = start + step*i for i < steps/2 and
    end - step*(steps-1-i) after, each fused into one rounding (x86-64 builds contract them into
    fused multiply-adds). The installed torch (1.13) vectorised linspace and rounds some points
    differently, so its torch.linspace is not used. The products and sums are exact in float64
    here (checked), so one rounding to float32 is the fused result."""
    s, e = torch.tensor(start, dtype=F32), torch.tensor(end, dtype=F32)
    step = (e - s) / (steps - 1)
    idx = torch.arange(steps, dtype=torch.float64)
    low = s.double() + step.double() * idx
    high = e.double() - step.double() * (steps - 1 - idx)
    exact = torch.where(idx < steps // 2, low, high)
    for i, v in enumerate(exact.tolist()):
        want = (Fraction(s.item()) + Fraction(step.item()) * i if i < steps // 2
                else Fraction(e.item()) - Fraction(step.item()) * (steps - 1 - i))
        assert Fraction(v) == want, "linspace point not exact in float64"
    return exact.to(F32)


def dynamic_map(linspace=linspace_f32):
    """create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for e in 0..6 the means
    of adjacent points of linspace(0.1, 1, 2^e + 1), times 10^(e-6), both signs; then 0 and 1;
    sorted; float32 throughout, as bitsandbytes builds it with torch."""
    data = []
    for e in range(7):
        boundaries = linspace(0.1, 1, 2 ** e + 1)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (e - 6)) * means).tolist()
        data += (-(10 ** (e - 6)) * means).tolist()
    data += [0, 1.0]
    assert len(data) == 256
    data.sort()
    return torch.tensor(data, dtype=F32)


DYNAMIC = dynamic_map()


def blocks_of(x, size):
    """The flat float32 tensor x as rows of `size`, the last padded with zeros."""
    n = x.numel()
    padded = torch.zeros((n + size - 1) // size * size, dtype=F32)
    padded[:n] = x.reshape(-1)
    return padded.view(-1, size)


def normalized(blocks):
    """x * (1/absmax) per row, and absmax; rows whose absmax is 0 come back as NaN (0 * inf)."""
    absmax = blocks.abs().amax(dim=1)
    zero = absmax == 0
    recip = torch.where(zero, torch.zeros_like(absmax), 1.0 / torch.where(zero, torch.ones_like(absmax), absmax))
    xn = blocks * recip[:, None]
    xn[zero] = float("nan")
    return xn, absmax


def code_4bit(xn, kind):
    """The decision trees as counts of pivots below the value; NaN takes code 0."""
    nan = torch.isnan(xn)
    safe = torch.where(nan, torch.zeros_like(xn), xn).contiguous()
    if kind == "nf4":
        code = torch.searchsorted(NF4_PIVOTS, safe)  # number of pivots strictly below
    else:
        rank = torch.searchsorted(FP4_PIVOTS, safe.abs().contiguous())
        code = FP4_CODE_BY_RANK[rank] + (safe < 0).long() * 8
    return torch.where(nan, torch.zeros_like(code), code)


def code_dynamic(xn):
    """bitsandbytes' dQuantize (non-stochastic) on the dynamic map: its 7-step binary search
    compares x with the odd entries 1, 3, .., 253 (a complete search tree) and ends on the even
    index p = 2 * (odd entries below x); then x > map[p] picks p+1 if x is above the float32
    midpoint (map[p+1] + map[p]) * 0.5, else x picks p-1 if below (map[p-1] + map[p]) * 0.5
    (map[0] itself at p = 0). NaN takes 0."""
    nan = torch.isnan(xn)
    x = torch.where(nan, torch.zeros_like(xn), xn).contiguous()
    odd = DYNAMIC[1:254:2].contiguous()
    p = 2 * torch.searchsorted(odd, x)
    val = DYNAMIC[p]
    up = torch.clamp(p + 1, max=255)
    down = torch.clamp(p - 1, min=0)
    mid_up = (DYNAMIC[up] + val) * 0.5
    mid_down = (DYNAMIC[down] + val) * 0.5
    code = torch.where(x > val, torch.where(x > mid_up, up, p), torch.where(x < mid_down, down, p))
    return torch.where(nan, torch.zeros_like(code), code)


def check_nearest(x, code, table, what, slack):
    """Every code is a nearest table entry to its value, up to `slack` (the kernels' pivots are
    the midpoints rounded, FP4's to about 1e-6): the rules above are round-to-nearest."""
    ok = ~torch.isnan(x)
    xd, table_d = x[ok].double(), table.double()
    dist = (xd[:, None] - table_d[None, :]).abs()
    chosen = dist.gather(1, code[ok].view(-1, 1)).squeeze(1)
    assert bool((chosen <= dist.min(dim=1).values + slack(xd)).all()), f"{what}: a code is not a nearest value"


def quantize(x, kind, double_quant):
    """quantize_4bit then dequantize_4bit of the float32 tensor x: a dict of the stored tensors."""
    n = x.numel()
    table = NF4 if kind == "nf4" else FP4
    xn, absmax = normalized(blocks_of(x, BLOCK))
    codes = code_4bit(xn, kind).reshape(-1)
    check_nearest(xn.reshape(-1)[:n], codes[:n], table, kind, lambda v: 1e-6)
    pairs = codes[: (n + 1) // 2 * 2].view(-1, 2)  # an odd n keeps the padded zero's code
    out = {"codes": (pairs[:, 0] * 16 + pairs[:, 1]).to(torch.uint8)}
    if double_quant:
        offset = torch.tensor(math.fsum(absmax.double().tolist()) / max(absmax.numel(), 1), dtype=torch.float64)
        offset = offset.to(F32)  # the mean in float64 (fsum: the correctly rounded sum), then float32
        centered = absmax - offset
        cn, scale = normalized(blocks_of(centered, GROUP))
        q = code_dynamic(cn).reshape(-1)[: absmax.numel()]
        check_nearest(cn.reshape(-1)[: absmax.numel()], q, DYNAMIC, "dynamic map", lambda v: 1e-6 * v.abs() + 1e-12)
        groups = torch.arange(absmax.numel()) // GROUP
        decoded = DYNAMIC[q] * scale[groups]  # dequantize_blockwise
        decoded = decoded + offset  # then `absmax += offset`, its own rounding
        out.update(absmax_q=q.to(torch.uint8), absmax_scale=scale, absmax_offset=offset.reshape(1))
    else:
        decoded = absmax
        out["absmax"] = absmax
    per_value = decoded[torch.arange(n) // BLOCK]
    out["dequant"] = (table[codes[:n]] * per_value).reshape(x.shape)
    return out


# ---- inputs ----

def gaussian(gen, rows, cols, scale=0.02):
    """Model-like weights: N(0, scale^2) rounded to bfloat16 (the checkpoints' type), as float32."""
    return (torch.randn(rows, cols, generator=gen) * scale).to(torch.bfloat16).to(F32)


def probe_values():
    """Normalized values on and next to every pivot, every code value and the midpoints between
    adjacent code values, of both tables; zeros of both signs and tiny values of both signs (the
    FP4 sign bit)."""
    vals = []
    for t in NF4_PIVOTS.tolist() + FP4_PIVOTS.tolist() + [-v for v in FP4_PIVOTS.tolist()]:
        t = torch.tensor(t, dtype=F32)
        vals += [t, torch.nextafter(t, torch.tensor(2.0)), torch.nextafter(t, torch.tensor(-2.0))]
    for table in (NF4, FP4):
        s = torch.sort(table).values
        vals += list(s) + list((s[1:] + s[:-1]) * 0.5)
    vals += [torch.tensor(v, dtype=F32) for v in (0.0, -0.0, 1e-9, -1e-9, 1e-30, -1e-30)]
    v = torch.stack([torch.as_tensor(a, dtype=F32).reshape(()) for a in vals])
    return v[v.abs() <= 1]


def probe_blocks(gen, scales):
    """Blocks of 64 whose absmax is exactly the scale s (one value +-s) and whose other values are
    probe values times s: for a power-of-two s the normalized values are the probes exactly, for
    other s they land within an ulp of them (where reciprocal-and-multiply and division differ)."""
    probes = probe_values()
    rows = []
    for s in scales:
        for begin in range(0, probes.numel(), BLOCK - 1):
            chunk = probes[begin: begin + BLOCK - 1]
            if chunk.numel() < BLOCK - 1:
                fill = torch.rand(BLOCK - 1 - chunk.numel(), generator=gen) * 1.6 - 0.8
                chunk = torch.cat([chunk, fill.to(F32)])
            sign = 1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0
            rows.append(torch.cat([torch.tensor([sign], dtype=F32), chunk]) * torch.tensor(s, dtype=F32))
    return torch.stack(rows)


def magnitude_blocks(gen):
    """Blocks of very different scales (normal floats throughout: no subnormal normalized values,
    reciprocals or products, which the CUDA build would flush to zero)."""
    g = lambda s: torch.randn(BLOCK, generator=gen) * s  # noqa: E731
    mixed = torch.cat([g(1e3)[: BLOCK // 2], g(1e-3)[: BLOCK // 2]])
    spike = g(1e-20)
    spike[17] = 1e10
    return torch.stack([g(1e30), g(1e-30), mixed, spike, g(1e37 / 4), g(7.0)]).to(F32)


def midpoint_absmax_blocks(gen, count=300):
    """`count` blocks whose absmax values, once centered by their mean (about 1) and scaled by
    their largest deviation (about 1/2), sit on or next to midpoints and code values of the
    dynamic map: the double quantization's 8-bit rounding decisions."""
    mids = ((DYNAMIC[1:] + DYNAMIC[:-1]) * 0.5).tolist() + DYNAMIC.tolist()
    picks = torch.randperm(len(mids), generator=gen)[: count // 2 - 1].tolist()
    targets = [1.5, 0.5]  # deviations +-1/2: the scale
    for i in picks:
        d = torch.tensor(mids[i] * 0.5, dtype=F32)
        targets += [(torch.tensor(1.0, dtype=F32) + d).item(), (torch.tensor(1.0, dtype=F32) - d).item()]
    rows = []
    for a in targets[:count]:
        a = torch.tensor(a, dtype=F32)
        rest = (torch.rand(BLOCK - 1, generator=gen) * 1.8 - 0.9).to(F32) * a
        sign = 1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0
        rows.append(torch.cat([(sign * a).reshape(1), rest]))
    return torch.stack(rows)


def make_inputs():
    gen = torch.Generator().manual_seed(20240607)
    inputs = {}
    inputs["small"] = gaussian(gen, 8, 64)
    inputs["partial"] = gaussian(gen, 3, 100)  # 300 values: 4 blocks of 64 and one of 44
    inputs["odd"] = gaussian(gen, 5, 13)  # 65 values: the last byte holds one value and the pad
    # 50440 values: 789 blocks (the last of 8 values), 4 scales (the last over 21 blocks).
    inputs["large"] = gaussian(gen, 97, 520)
    z = gaussian(gen, 4, 96).reshape(-1)
    z[64:128] = 0.0
    z[256:320] = -0.0
    inputs["zero_blocks"] = z.reshape(4, 96)
    inputs["all_zero"] = torch.zeros(3, 64, dtype=F32)
    inputs["probes_pow2"] = probe_blocks(gen, [1.0, 0.25, 2.0 ** -10, 8.0])
    inputs["probes_scaled"] = probe_blocks(gen, [0.7, 3.3, 0.013, 0.02 * 3.7])
    w = gaussian(gen, 64, 192)
    w[5, 7] = 0.5  # an outlier, as real weight rows have
    inputs["gaussian_bf16"] = w
    inputs["magnitudes"] = magnitude_blocks(gen)
    inputs["dq_midpoints"] = midpoint_absmax_blocks(gen)
    # One absmax of 1 and 299 of 3 * 2^-30: a float32 running sum drops the small ones, the mean
    # taken here does not.
    tiny = torch.rand(300, BLOCK, generator=gen).to(F32) * 2.0 ** -30
    tiny[:, 0] = 3 * 2.0 ** -30
    tiny[0] = torch.rand(BLOCK, generator=gen).to(F32) * 0.5
    tiny[0, 3] = -1.0
    inputs["offset_precision"] = tiny
    for name, x in inputs.items():
        assert torch.isfinite(x).all(), name
    return inputs


def division_disagreements(x, kind):
    """How many codes x / absmax would give differently from x * (1/absmax): how much the probes
    tell the two apart (printed, not stored)."""
    blocks = blocks_of(x, BLOCK)
    xn, absmax = normalized(blocks)
    divided = blocks / torch.where(absmax == 0, torch.ones_like(absmax), absmax)[:, None]
    divided[absmax == 0] = float("nan")
    return int((code_4bit(xn, kind) != code_4bit(divided, kind)).sum())


def main():
    started = cases_cli.start(__doc__, "bnb4 cases", "cases.json", ["bnb4_ref.py"])
    if started is None:
        return
    args, stamp = started

    # The tables' own consistency: the NF4 pivots separate adjacent code values.
    assert bool((NF4_PIVOTS > NF4[:-1]).all() and (NF4_PIVOTS < NF4[1:]).all())
    assert bool((DYNAMIC[1:] > DYNAMIC[:-1]).all()), "the dynamic map is strictly increasing"
    installed = dynamic_map(lambda a, b, n: torch.linspace(a, b, n))
    print(f"dynamic map: the installed torch {torch.__version__}'s linspace would change "
          f"{int((installed != DYNAMIC).sum())} of its 256 entries")

    tensors = {"tables.nf4": NF4, "tables.fp4": FP4, "tables.dynamic_map": DYNAMIC}
    cases = []
    for name, x in make_inputs().items():
        tensors[f"{name}.input"] = x
        for kind in ("nf4", "fp4"):
            for dq in (False, True):
                case = f"{name}.{kind}" + (".dq" if dq else "")
                for key, t in quantize(x, kind, dq).items():
                    tensors[f"{case}.{key}"] = t
                cases.append(dict(name=case, input=name, type=kind, double_quant=dq,
                                  rows=x.shape[0], cols=x.shape[1]))
        if name.startswith("probes"):
            print(f"{name}: x / absmax would change {division_disagreements(x, 'nf4')} NF4 and "
                  f"{division_disagreements(x, 'fp4')} FP4 codes")
    st.save_file(tensors, os.path.join(args.out, "cases.safetensors"))
    tmp = stamp + ".tmp"
    with open(tmp, "w") as f:
        json.dump(cases, f, indent=1)
        f.write("\n")
    os.replace(tmp, stamp)
    print(f"bnb4 cases: {len(cases)} in {args.out}")


if __name__ == "__main__":
    main()
