"""Quantized inference modules, and the one definition of pocketguard's quantization numerics.

Everything that quantizes — QAT fake quant (`compress/quantize.py`), RTN / GPTQ / imatrix PTQ, the
artifact writer and these kernels — calls the functions in the *numerics* section below, so a model
loaded from a compressed artifact reproduces the fake-quant model it came from. The formulas are those of
torchao's `IntxFakeQuantizer` (the QAT path uses torchao's own modules for activations, embeddings and
the head; tests check the two agree bit for bit):

* **weights**, symmetric, per group of `G` input columns (per output channel when `G` is the row length),
  `b` bits, `qmin = -2^(b-1)`, `qmax = 2^(b-1) - 1`::

      s  = max(|w_g|) / ((qmax - qmin) / 2)          # int4: max|w|/7.5, int8: max|w|/127.5 (torchao SYMMETRIC)
      s  = max(s, eps)                                # fp32 scales: eps = float32 smallest normal
      s  = fp16(clamp(s, 2^-24, 65504))               # fp16 scales (default for group-wise int4): round to nearest
      q  = clamp(round_half_even(w * (1 / s)), qmin, qmax)      # reciprocal computed in fp32
      ŵ  = q * s

  ±max of a group lands on ±7.5 up to the fp32 rounding of `1/s`: +max clamps to 7 (7/7.5 of its value),
  -max rounds to -8 or -7. This is torchao's (and ExecuTorch 8da4w's) convention, kept for compatibility.
* **activations**, asymmetric, dynamic, per token (last dim), 8 bits, `qmin=-128, qmax=127`::

      lo = min(min(x), 0);  hi = max(max(x), 0)
      s  = max((hi - lo) / 255, eps)                   # eps = smallest normal of x's dtype
      z  = clamp(qmin - round(lo / s), qmin, qmax)
      q  = clamp(round(x * (1 / s)) + z, qmin, qmax)
      x̂  = (q - z) * s

* **int4 packing**: `q + 8` (0..15) as nibbles, two per uint8 along the input dimension; column `2j` in the
  low nibble and `2j+1` in the high nibble of byte `j`.

The modules hold packed integer weights and small scales. Each has two implementations:
`reference` (dequantize the weights, fake-quantize the activations, `F.linear`: bit-identical to the
fake-quant model) and `fast` (the default; equal to the reference within float rounding). Pick with
`set_kernel_mode`; inputs that require grad always take the (differentiable) reference path. Timings and the choice of fast path are in docs/quantization.md.
"""

from __future__ import annotations

import contextlib
import math
import weakref
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FP16_SCALE_MIN = 2.0**-24  # smallest positive fp16 (subnormal): a group of zeros keeps a finite 1/s
FP16_SCALE_MAX = 65504.0

# --------------------------------------------------------------------------------------------- numerics


def qrange(bits: int) -> tuple[int, int]:
    """Signed integer range of `bits` bits: int4 -> (-8, 7), int8 -> (-128, 127)."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def scale_dtype_of(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    table = {"float16": torch.float16, "fp16": torch.float16, "float32": torch.float32, "fp32": torch.float32}
    if name not in table:
        raise ValueError(f"scale dtype must be float16 or float32, got {name!r}")
    return table[name]


class _RoundSTE(torch.autograd.Function):
    """round-half-to-even forward, identity backward (straight-through estimator)."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        return torch.round(x)

    @staticmethod
    def backward(ctx, g: Tensor) -> Tensor:
        return g


def _round(x: Tensor) -> Tensor:
    return _RoundSTE.apply(x) if x.requires_grad else torch.round(x)


def _groups(w: Tensor, group_size: int | None) -> tuple[Tensor, int]:
    if w.dim() != 2:
        raise ValueError(f"weights must be 2-D, got shape {tuple(w.shape)}")
    n, k = w.shape
    g = k if group_size is None else int(group_size)
    if k % g:
        raise ValueError(f"in_features {k} is not a multiple of the group size {g}")
    return w.reshape(n, k // g, g), g


def weight_scales(w: Tensor, bits: int, group_size: int | None = None, scale_dtype=torch.float32) -> Tensor:
    """Symmetric scales [out, in/group] (group None = one per output row)."""
    wg, _ = _groups(w, group_size)
    qmin, qmax = qrange(bits)
    lo = torch.clamp(wg.amin(-1), max=0)
    hi = torch.clamp(wg.amax(-1), min=0)
    s = torch.maximum(-lo, hi) / (float(qmax - qmin) / 2)
    dt = scale_dtype_of(scale_dtype)
    if dt == torch.float16:
        return torch.clamp(s, FP16_SCALE_MIN, FP16_SCALE_MAX).to(torch.float16)
    return torch.clamp(s, min=torch.finfo(w.dtype).smallest_normal).to(dt)


def quantize_weight(w: Tensor, scales: Tensor, bits: int, group_size: int | None = None) -> Tensor:
    """Integer codes (as int8) of `w` under `scales`; `round_half_even(w * (1/s))` clamped to the range."""
    wg, _ = _groups(w.detach(), group_size)
    qmin, qmax = qrange(bits)
    s = scales.to(wg.dtype).unsqueeze(-1)
    return torch.clamp(torch.round(wg * (1.0 / s)), qmin, qmax).reshape(w.shape).to(torch.int8)


def dequantize_weight(q: Tensor, scales: Tensor, group_size: int | None = None, dtype=torch.float32) -> Tensor:
    qg, _ = _groups(q, group_size)
    return (qg.to(dtype) * scales.to(dtype).unsqueeze(-1)).reshape(q.shape)


LATENT_STEPS = 32  # float32 steps searched each side of 7.5 s (latent_weight)


def latent_weight(q: Tensor, scales: Tensor, bits: int, group_size: int | None = None) -> Tensor:
    """A float weight that `weight_scales` + `quantize_weight` map back to the codes `q` and `scales` (QAT resumed
    from a quantized model). Plain `q * s` would not: a group whose largest code is 7 re-scales to 7/7.5 of its
    scale and re-rounds. So each group's absmax goes back to v ≈ (qmax − qmin)/2 · s = 7.5 s: codes 7 and −8 sit at
    ±v (7.5 → 8, clamped to 7; −7.5 → −8), and in a group with neither (its extreme fell just inside −7.5 when the
    scale was rounded) the −7 codes sit at −v. v is searched up to LATENT_STEPS float32 steps either side of 7.5 s for
    the nearest that gives back both the scale and those codes under float32 rounding; where no float32 v / 7.5 is
    the scale itself (a float32 scale made another way: on the GPU, by torchao), the nearest that gives back the
    codes, with a scale a few float32 steps off (a group whose extreme is a −7 then and again finds none, and reads
    it back as −8). A group whose codes stay below 7 in size (searched scales: GPTQ, imatrix) re-scales;
    `requantize_mismatch` counts what does not come back."""
    qg, _ = _groups(q.to(torch.float32), group_size)
    qmin, qmax = qrange(bits)
    half = (qmax - qmin) / 2
    s = scales.to(torch.float32).reshape(qg.shape[:-1])
    low = (qg == qmin).any(-1)  # −v must round to qmin here …
    inner = ~(low | (qg == qmax).any(-1)) & (qg == -qmax).any(-1)  # … and to −qmax (not qmin) here
    base = half * s
    v, found, codes_only = base.clone(), torch.zeros_like(low), torch.zeros_like(low)
    up, down = base, base
    for k in range(2 * LATENT_STEPS + 1):  # 7.5 s, then float32 steps away from it, nearest first
        if k % 2:
            cand = up = torch.nextafter(up, torch.full_like(up, math.inf))
        elif k:
            cand = down = torch.nextafter(down, torch.full_like(down, -math.inf))
        else:
            cand = base
        back = weight_scales(cand, bits, 1, scales.dtype).reshape(s.shape)  # the scale v gives the group
        code = torch.round(-cand * (1.0 / back.to(torch.float32)))  # as quantize_weight rounds a −v code under it
        code_ok = torch.where(low, code == qmin, torch.where(inner, code == -qmax, True))
        ok = code_ok & (back == scales.reshape(s.shape))
        v = torch.where(ok & ~found | code_ok & ~found & ~codes_only, cand, v)
        codes_only |= code_ok
        found |= ok
        if bool(found.all()):
            break
    v = v.unsqueeze(-1)
    w = qg * s.unsqueeze(-1)
    w = torch.where(qg == qmax, v, torch.where(qg == qmin, -v, w))
    w = torch.where(inner.unsqueeze(-1) & (qg == -qmax), -v, w)
    return w.reshape(q.shape)


def requantize_mismatch(w: Tensor, q: Tensor, scales: Tensor, bits: int, group_size: int | None = None) -> tuple[int, int]:
    """(codes, scales) that quantizing float `w` with the shared numerics does not give back as `q` / `scales`."""
    s = weight_scales(w, bits, group_size, scales.dtype)
    codes = quantize_weight(w, s, bits, group_size)
    return int((codes != q).sum()), int((s != scales.reshape(s.shape)).sum())


def fake_quantize_weight(w: Tensor, bits: int, group_size: int | None = None, scale_dtype=torch.float32,
                         scales: Tensor | None = None) -> Tensor:
    """`dequantize(quantize(w))` with a straight-through gradient, torchao's: identity through the rounding
    (`_Round`), zero where the clamp bites, and the scale a constant of the backward pass (torchao computes
    it in `choose_qparams_affine`, which is `@torch.no_grad`), so d ŵ/d w = 1 inside the range, 0 outside."""
    if scales is None:
        scales = weight_scales(w.detach(), bits, group_size, scale_dtype)
    wg, _ = _groups(w, group_size)
    qmin, qmax = qrange(bits)
    s = scales.to(w.dtype).unsqueeze(-1)
    q = torch.clamp(_round(wg * (1.0 / s)), qmin, qmax)
    return (q * s).reshape(w.shape)


def act_qparams(x: Tensor, bits: int = 8) -> tuple[Tensor, Tensor]:
    """Per-token asymmetric (scale, zero point) over the last dim; shapes [..., 1]; zero point as float."""
    qmin, qmax = qrange(bits)
    lo = torch.clamp(x.amin(-1, keepdim=True), max=0)
    hi = torch.clamp(x.amax(-1, keepdim=True), min=0)
    s = torch.clamp((hi - lo) / float(qmax - qmin), min=torch.finfo(x.dtype).smallest_normal)
    z = torch.clamp(qmin - _round(lo / s), qmin, qmax)
    return s, z


def quantize_act(x: Tensor, bits: int = 8) -> tuple[Tensor, Tensor, Tensor]:
    """(codes as int8 [..., K], scale [..., 1], zero point as int32 [..., 1])."""
    s, z = act_qparams(x, bits)
    qmin, qmax = qrange(bits)
    q = torch.clamp(torch.round(x * (1.0 / s)) + z, qmin, qmax)
    return q.to(torch.int8), s, z.to(torch.int32)


def fake_quantize_act(x: Tensor, bits: int = 8) -> Tensor:
    """Per-token fake quantization; straight-through gradient with scale and zero point held constant (torchao's
    per-token fake quantizer computes them under `no_grad` too), so training through a kernel's reference path
    gets the gradients of training through the fake-quantized model."""
    s, z = act_qparams(x.detach(), bits)
    qmin, qmax = qrange(bits)
    if x.requires_grad and torch.is_grad_enabled():
        q = torch.clamp(_round(x * (1.0 / s)) + z, qmin, qmax)
        return ((q - z) * s).to(x.dtype)
    # inference: the same operations in the same order, in place (one buffer instead of six)
    q = (x * (1.0 / s)).round_().add_(z).clamp_(qmin, qmax)
    return q.sub_(z).mul_(s).to(x.dtype)


def pack_int4(q: Tensor) -> Tensor:
    """int4 codes [N, K] (values -8..7, K even) -> uint8 [N, K/2]; low nibble = even column."""
    if q.shape[-1] % 2:
        raise ValueError("int4 packing needs an even number of columns")
    if int(q.min()) < -8 or int(q.max()) > 7:
        raise ValueError("values outside the int4 range -8..7")
    u = (q.to(torch.int16) + 8).to(torch.uint8)
    return (u[..., 0::2] | (u[..., 1::2] << 4)).contiguous()


def unpack_int4(packed: Tensor, dtype=torch.int8) -> Tensor:
    """uint8 [N, K/2] -> codes [N, K] in `dtype` (-8..7)."""
    lo = packed & 15
    hi = packed >> 4
    u = torch.stack((lo, hi), dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)
    return u.to(dtype) - 8


# ------------------------------------------------------------------------------------- kernel selection

_MODE = "fast"
_MODES = ("fast", "reference")


def set_kernel_mode(mode: str) -> None:
    """`fast` (default) or `reference` (dequantize + F.linear, bit-identical to the fake-quant model)."""
    global _MODE
    if mode not in _MODES:
        raise ValueError(f"kernel mode must be one of {_MODES}, got {mode!r}")
    _MODE = mode


def kernel_mode() -> str:
    return _MODE


@contextlib.contextmanager
def kernel_mode_ctx(mode: str) -> Iterator[None]:
    old = _MODE
    set_kernel_mode(mode)
    try:
        yield
    finally:
        set_kernel_mode(old)


# ---------------------------------------------------------------------------------------------- linears

# fp32 bytes of weight dequantized at a time by the fast path: the tile stays in L2 (2 MiB per core on the
# dev machine, split across the threads of F.linear) instead of materializing the whole fp32 matrix. 4 MiB
# also keeps the number of OpenMP parallel regions low, which matters on a loaded machine (measured 1–8 MiB,
# docs/quantization.md).
_TILE_BYTES = 4 << 20


class QuantLinear(nn.Module):
    """Base of the quantized linears: `qweight` + `scales` buffers, optional dynamic int8 activations.

    Subclasses fix the scheme (`weight_bits`, `act_bits`) — one class per scheme, so the artifact names the
    class and a faster kernel can replace one scheme without touching the others.
    """

    weight_bits: int = 0
    act_bits: int | None = None

    def __init__(self, in_features: int, out_features: int, group_size: int | None = None,
                 scale_dtype: torch.dtype = torch.float32, device=None):
        super().__init__()
        g = in_features if group_size is None else int(group_size)
        if in_features % g:
            raise ValueError(f"in_features {in_features} is not a multiple of the group size {g}")
        self.in_features, self.out_features = in_features, out_features
        self.group_size = None if g == in_features else g
        cols = in_features // 2 if self.weight_bits == 4 else in_features
        qdtype = torch.uint8 if self.weight_bits == 4 else torch.int8
        self.register_buffer("qweight", torch.zeros(out_features, cols, dtype=qdtype, device=device))
        self.register_buffer("scales", torch.ones(out_features, in_features // g, dtype=scale_dtype, device=device))

    # -- construction
    @classmethod
    def from_weight(cls, weight: Tensor, group_size: int | None = None, scale_dtype=torch.float32,
                    scales: Tensor | None = None, q: Tensor | None = None) -> "QuantLinear":
        """Quantize a float weight [out, in] (RTN with the shared numerics) or adopt given codes/scales."""
        weight = weight.detach()
        out_f, in_f = weight.shape
        dt = scale_dtype_of(scale_dtype) if scales is None else scales.dtype
        m = cls(in_f, out_f, group_size, dt, device=weight.device)
        if scales is None:
            scales = weight_scales(weight.float(), cls.weight_bits, m.group_size, dt)
        if q is None:
            q = quantize_weight(weight.float(), scales, cls.weight_bits, m.group_size)
        m.set_codes(q, scales)
        return m

    def set_codes(self, q: Tensor, scales: Tensor) -> None:
        qmin, qmax = qrange(self.weight_bits)
        if q.shape != (self.out_features, self.in_features):
            raise ValueError(f"codes of shape {tuple(q.shape)} for a {self.out_features}x{self.in_features} linear")
        if int(q.min()) < qmin or int(q.max()) > qmax:
            raise ValueError(f"codes outside the int{self.weight_bits} range")
        self.qweight = pack_int4(q) if self.weight_bits == 4 else q.to(torch.int8).contiguous()
        self.scales = scales.detach().to(self.scales.dtype).reshape(self.scales.shape).contiguous()

    # -- views of the weight
    def int_weight(self) -> Tensor:
        """Integer codes [out, in] as int8."""
        return unpack_int4(self.qweight) if self.weight_bits == 4 else self.qweight

    def dequantize(self, dtype=torch.float32) -> Tensor:
        return dequantize_weight(self.int_weight(), self.scales, self.group_size, dtype)

    def latent(self) -> Tensor:
        """A float weight that quantizes back to these codes and scales (`latent_weight`)."""
        return latent_weight(self.int_weight(), self.scales, self.weight_bits, self.group_size)

    @property
    def weight(self) -> Tensor:
        """The dequantized weight (float32); a convenience for analysis, not used by the kernels."""
        return self.dequantize()

    # -- forward
    def forward(self, x: Tensor) -> Tensor:
        x2 = x.reshape(-1, self.in_features).float()
        if self._takes_reference(x):
            # training through a quantized layer (LoRA, distillation into later layers): the reference path
            # is differentiable in x (straight-through rounding); the integer fast paths are not
            return self._shaped(self._reference(x2), x)
        return self._shaped(self._fast(x2), x)

    @staticmethod
    def _takes_reference(x: Tensor) -> bool:
        return _MODE == "reference" or (x.requires_grad and torch.is_grad_enabled())

    def _shaped(self, y2: Tensor, x: Tensor) -> Tensor:
        return y2.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def _activations(self, x2: Tensor) -> Tensor:
        return fake_quantize_act(x2, self.act_bits) if self.act_bits else x2

    def _reference(self, x2: Tensor) -> Tensor:
        return F.linear(self._activations(x2), self.dequantize())

    def _fast(self, x2: Tensor) -> Tensor:
        return self._tiled(self._activations(x2))

    def _dequantize_rows(self, r0: int, r1: int) -> Tensor:
        p, n = self.qweight[r0:r1], r1 - r0
        g = self.in_features if self.group_size is None else self.group_size
        if self.weight_bits == 4:
            q = torch.stack((p & 15, p >> 4), dim=-1).view(n, -1, g).to(torch.float32).sub_(8)
        else:
            q = p.view(n, -1, g).to(torch.float32)
        return q.mul_(self.scales[r0:r1].to(torch.float32).unsqueeze(-1)).view(n, -1)

    def _tiled(self, x2: Tensor) -> Tensor:
        """Dequantize ~4 MiB row tiles and `F.linear` each into the output: the tile stays in cache and no
        full fp32 copy of the weight ever exists. Same products as the reference, other summation blocking."""
        rows = max(1, _TILE_BYTES // (4 * self.in_features))
        if rows >= self.out_features:
            return F.linear(x2, self._dequantize_rows(0, self.out_features))
        out = torch.empty(x2.shape[0], self.out_features, dtype=torch.float32, device=x2.device)
        for r0 in range(0, self.out_features, rows):
            r1 = min(r0 + rows, self.out_features)
            out[:, r0:r1] = F.linear(x2, self._dequantize_rows(r0, r1))
        return out

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"group_size={self.group_size}, weight_bits={self.weight_bits}, act_bits={self.act_bits}, "
                f"scales={str(self.scales.dtype).replace('torch.', '')}")

    def quant_spec(self) -> dict:
        return {"kind": type(self).__name__, "weight_bits": self.weight_bits, "act_bits": self.act_bits,
                "group_size": self.group_size, "scale_dtype": str(self.scales.dtype).replace("torch.", "")}


class Int4WeightLinear(QuantLinear):
    """int4 group-wise symmetric weights, float activations (weight-only). Fast path: tiled dequantize +
    `F.linear` (see docs/quantization.md for the measurements against tinygemm / KleidAI ops on x86)."""

    weight_bits = 4


class Int4WeightInt8ActLinear(Int4WeightLinear):
    """int4 group-wise symmetric weights × dynamic per-token asymmetric int8 activations (8da4w)."""

    act_bits = 8


class Int8WeightLinear(QuantLinear):
    """int8 symmetric weights (per channel or group-wise), float activations (weight-only)."""

    weight_bits = 8


class Int8WeightInt8ActLinear(QuantLinear):
    """int8 symmetric weights × dynamic per-token asymmetric int8 activations (the output head).

    Fast path (per-channel weights): one `torch._int_mm` int8×int8→int32 matmul, then
    `y = s_x · s_w · (acc − z_x · Σ_k q_w)` — exact integer accumulation, float only in the epilogue."""

    weight_bits = 8
    act_bits = 8

    def _fast(self, x2: Tensor) -> Tensor:
        if self.group_size is not None or x2.device.type != "cpu":
            return self._reference(x2)
        xq, sx, zx = quantize_act(x2, self.act_bits)
        acc = torch._int_mm(xq, self.qweight.t())
        return (acc - zx * self._rowsum()).float() * (sx * self.scales.float().reshape(1, -1))

    def _rowsum(self) -> Tensor:
        """Σ_k q[n, k] (int32), cached until the codes change (a 128k-row head would pay ~30 ms per call): the same
        tensor (a weak reference, which keeps no replaced codes alive) at the same version. Not its address: the
        memory of codes replaced (`set_codes`, `load_state_dict(assign=True)`) is reused for later tensors."""
        w = self.qweight
        cached = getattr(self, "_rowsum_cache", None)
        if cached is None or cached[0]() is not w or cached[1] != w._version:
            cached = (weakref.ref(w), w._version, w.sum(1, dtype=torch.int32))
            self._rowsum_cache = cached
        return cached[2]


def linears(x: Tensor, *mods: nn.Module) -> list[Tensor]:
    """`[m(x) for m in mods]` for linears that read the same input (q/k/v, gate/up): when they are quantized
    linears of one tiled scheme, x's activations are quantized once instead of once per linear (the same
    operations on the same input, so the same bits)."""
    first = mods[0]
    if (not isinstance(first, QuantLinear) or type(first)._fast is not QuantLinear._fast or first._takes_reference(x)
            or any(type(m) is not type(first) for m in mods)):
        return [m(x) for m in mods]
    xa = first._activations(x.reshape(-1, first.in_features).float())
    return [m._shaped(m._tiled(xa), x) for m in mods]


LINEAR_KINDS: dict[str, type[QuantLinear]] = {
    c.__name__: c for c in (Int4WeightLinear, Int4WeightInt8ActLinear, Int8WeightLinear, Int8WeightInt8ActLinear)
}


@contextlib.contextmanager
def float_activations(model: nn.Module) -> Iterator[None]:
    """Run `model`'s quantized linears on float activations (the weights exactly, dequantized): the numerics of an
    export format that stores the int4 weights but not the int8 activation rounding (Hugging Face, GGUF), so a
    verdict that differs there, or under another runtime's rounding (XNNPACK), can be told apart from a broken
    export (`pocketguard export --verify`)."""
    layers = [m for m in model.modules() if isinstance(m, QuantLinear) and m.act_bits]
    for m in layers:
        m.act_bits = None  # an instance attribute over the class's scheme, removed below
    try:
        with kernel_mode_ctx("reference"):
            yield
    finally:
        for m in layers:
            del m.act_bits


def linear_class(weight_bits: int, act_bits: int | None) -> type[QuantLinear]:
    table = {(4, None): Int4WeightLinear, (4, 8): Int4WeightInt8ActLinear,
             (8, None): Int8WeightLinear, (8, 8): Int8WeightInt8ActLinear}
    key = (int(weight_bits), int(act_bits) if act_bits else None)
    if key not in table:
        raise ValueError(f"no kernel for {weight_bits}-bit weights with activations {act_bits or 'float'}")
    return table[key]


# ------------------------------------------------------------------------------------------- embeddings


class QuantEmbedding(nn.Module):
    """Per-row (per token) symmetric quantized embedding table; only the looked-up rows are dequantized."""

    weight_bits: int = 0

    def __init__(self, num_embeddings: int, embedding_dim: int, scale_dtype=torch.float32, device=None):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        cols = embedding_dim // 2 if self.weight_bits == 4 else embedding_dim
        qdtype = torch.uint8 if self.weight_bits == 4 else torch.int8
        self.register_buffer("qweight", torch.zeros(num_embeddings, cols, dtype=qdtype, device=device))
        self.register_buffer("scales", torch.ones(num_embeddings, 1, dtype=scale_dtype, device=device))

    @classmethod
    def from_weight(cls, weight: Tensor, scale_dtype=torch.float32, scales: Tensor | None = None) -> "QuantEmbedding":
        weight = weight.detach().float()
        n, d = weight.shape
        dt = scale_dtype_of(scale_dtype) if scales is None else scales.dtype
        m = cls(n, d, dt, device=weight.device)
        if scales is None:
            scales = weight_scales(weight, cls.weight_bits, None, dt)
        q = quantize_weight(weight, scales, cls.weight_bits, None)
        m.qweight = pack_int4(q) if cls.weight_bits == 4 else q.contiguous()
        m.scales = scales.reshape(n, 1).contiguous()
        return m

    def int_weight(self) -> Tensor:
        return unpack_int4(self.qweight) if self.weight_bits == 4 else self.qweight

    def dequantize(self, dtype=torch.float32) -> Tensor:
        return dequantize_weight(self.int_weight(), self.scales, None, dtype)

    def latent(self) -> Tensor:
        """A float table that quantizes back to these codes and scales (`latent_weight`)."""
        return latent_weight(self.int_weight(), self.scales, self.weight_bits, None)

    @property
    def weight(self) -> Tensor:
        return self.dequantize()

    def forward(self, ids: Tensor) -> Tensor:
        rows = self.qweight[ids]
        q = unpack_int4(rows, torch.float32) if self.weight_bits == 4 else rows.float()
        return q * self.scales[ids].float()

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}, weight_bits={self.weight_bits}"

    def quant_spec(self) -> dict:
        return {"kind": type(self).__name__, "weight_bits": self.weight_bits, "act_bits": None,
                "group_size": None, "scale_dtype": str(self.scales.dtype).replace("torch.", "")}


class Int4Embedding(QuantEmbedding):
    weight_bits = 4


class Int8Embedding(QuantEmbedding):
    weight_bits = 8


EMBEDDING_KINDS: dict[str, type[QuantEmbedding]] = {c.__name__: c for c in (Int4Embedding, Int8Embedding)}


def embedding_class(bits: int) -> type[QuantEmbedding]:
    if int(bits) not in (4, 8):
        raise ValueError(f"embeddings quantize to 4 or 8 bits, got {bits}")
    return Int4Embedding if int(bits) == 4 else Int8Embedding


def is_quantized(module: nn.Module) -> bool:
    return isinstance(module, (QuantLinear, QuantEmbedding))


# ------------------------------------------------------------------------------------------- benchmark


def _bench(shapes=((1, 2048, 2048), (1, 2048, 8192), (256, 2048, 2048), (256, 2048, 8192), (256, 8192, 2048)),
           repeats: int = 10) -> list[dict]:
    """Time the int4 linear kernels (and the candidates that were not kept) at Llama Guard 3-1B shapes.
    `python -m pocketguard.kernels` prints the table quoted in docs/quantization.md (best of `repeats`)."""
    import time

    def best(f):
        t0 = time.perf_counter()
        f()
        if time.perf_counter() - t0 > 1.0:  # hopeless candidates are timed once
            return (time.perf_counter() - t0) * 1e3
        t = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f()
            t.append(time.perf_counter() - t0)
        return min(t) * 1e3

    rows = []
    gen = torch.Generator().manual_seed(0)
    for m, k, n in shapes:
        w = torch.randn(n, k, generator=gen) * 0.02
        x = torch.randn(m, k, generator=gen)
        lin = Int4WeightInt8ActLinear.from_weight(w, 32, torch.float16)
        xa = fake_quantize_act(x)
        wd = lin.dequantize()
        row = {"M": m, "K": k, "N": n}
        with kernel_mode_ctx("reference"):
            row["reference"] = best(lambda: lin(x))
        row["fast (tiled)"] = best(lambda: lin(x))
        row["fp32 dense (8x memory)"] = best(lambda: F.linear(xa, wd))
        try:  # tinygemm CPU int4 kernel: exact weights (scale, zero=0), fp32 activations
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu((lin.int_weight().int() + 8), 1)
            sz = torch.stack([lin.scales.float().t(), torch.zeros_like(lin.scales.float().t())], -1).contiguous()
            row["tinygemm fp32"] = best(lambda: torch.ops.aten._weight_int4pack_mm_for_cpu(xa, packed, 32, sz))
        except Exception as e:  # noqa: BLE001 - report, don't fail
            row["tinygemm fp32"] = f"n/a ({type(e).__name__})"
        try:  # KleidiAI dynamic-quant int4 op (reference implementation on x86)
            pw = torch.ops.aten._dyn_quant_pack_4bit_weight(lin.qweight, lin.scales.float(), None, 32, k, n)
            row["dyn_quant_matmul_4bit"] = best(lambda: torch.ops.aten._dyn_quant_matmul_4bit(x, pw, 32, k, n))
        except Exception as e:  # noqa: BLE001
            row["dyn_quant_matmul_4bit"] = f"n/a ({type(e).__name__})"
        head = Int8WeightInt8ActLinear.from_weight(w, None, torch.float32)
        with kernel_mode_ctx("reference"):
            row["int8 head reference"] = best(lambda: head(x))
        row["int8 head _int_mm"] = best(lambda: head(x))
        rows.append(row)
    return rows


if __name__ == "__main__":  # pragma: no cover
    import argparse

    ap = argparse.ArgumentParser(description="benchmark pocketguard's quantized linear kernels")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=10)
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, capability {torch.backends.cpu.get_cpu_capability()}")
    results = _bench(repeats=a.repeats)
    cols = list(results[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in results:
        print("| " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in r.values()) + " |")
