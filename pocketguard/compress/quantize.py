"""Quantization: one verb, `quantize_(model, QuantConfig(...))`, in the style of torchao.

Scheme (Llama Guard 3-1B-INT4): transformer linears get 4-bit symmetric group-wise weights (group 32) and
8-bit asymmetric dynamic per-token activations ("8da4w"); the input embedding 4- or 8-bit per row; the
output head 8-bit per channel (with the same int8 activations). The numerics are defined once in
`pocketguard.kernels` (docstring there) and shared by every path below.

Modes
-----
* `qat`     — `prepare_qat`: swap in fake-quantized modules (torchao's `FakeQuantizedLinear` /
              `FakeQuantizedEmbedding` + `IntxFakeQuantizer`, straight-through gradients); train with
              `pocketguard.train.train`; `convert` to real quantized kernels. The recipe step `qat` (steps.py) does all three.
* `rtn`     — round to nearest, straight to `pocketguard.kernels` modules.
* `imatrix` — RTN whose per-group scale minimises Σ importance·(w − ŵ)², importance = mean x² of each
              input channel on calibration data (llama.cpp's imatrix idea).
* `gptq`    — GPTQ (Frantar et al.) block by block with Hessians from calibration activations (the
              algorithm in gptq.py, the model-wide pass here; calibration passes in calibration.py).

`rotation="hadamard"|"random"` first folds the RMSNorms and rotates the residual stream (rotate.py), which
leaves the float model's outputs unchanged and spreads outlier channels before quantizing.

What torchao 0.18 provides and we use: `quantize_` + `QATConfig(activation_config, weight_config)` for the
module swap, `IntxFakeQuantizer` for per-token int8 activations, per-channel head/embedding weights and
(with `scale_dtype="float32"`) the group-wise int4 weights. What it lacks and is written here: int4 group
scales stored as fp16 but applied with fp32 arithmetic (torchao's fp16 `scale_precision` computes `1/s` in
fp16, which loses precision and overflows below 1.5e-5; fp32 scales cost 5 instead of 4.5 bits/weight),
converting to CPU kernels with the same numerics (torchao's 8da4w CPU kernels are not built in this wheel),
imatrix, GPTQ for this symmetric fp16-scale scheme (torchao's prototype GPTQ targets asymmetric CUDA int4),
rotation and LoRA.
"""

from __future__ import annotations

import contextlib
import fnmatch
import logging
import sys
from dataclasses import asdict, dataclass, field, fields
from typing import Iterable

import torch
from torch import Tensor, nn

from .. import kernels as K
from ..kernels import QuantEmbedding, QuantLinear
from . import gptq as G
from .calibration import Calibration, as_sequences
from .calibration import calibration_from_examples as calibration_from_examples  # re-exported
from .calibration import run_calibration as run_calibration  # re-exported

MODES = ("qat", "rtn", "imatrix", "gptq")
BLOCK_LINEARS = ("attention.wq", "attention.wk", "attention.wv", "attention.wo",
                 "feed_forward.w1", "feed_forward.w2", "feed_forward.w3")


@dataclass
class QuantConfig:
    weight_bits: int = 4
    group_size: int | None = 32
    act_bits: int | None = 8  # None: weight-only
    embedding_bits: int | None = 8  # None: keep the embedding in float
    head_bits: int | None = 8  # None: keep the head in float
    head_group_size: int | None = None  # None: per output channel
    scale_dtype: str = "float16"  # group-wise scales; per-channel scales are always float32
    mode: str = "qat"
    skip: list[str] = field(default_factory=list)  # fnmatch patterns of module names left in float
    rotation: str | None = None  # None | "hadamard" | "random"
    rotation_seed: int = 0
    rotate_heads: bool = True  # also R2 (per-head rotation of V / wo input)
    # gptq
    gptq_damp: float = 0.01
    gptq_block_size: int = 128
    act_order: bool = False
    # imatrix
    imatrix_grid: int = 25  # candidate scales per group (plus a least-squares refit of each)
    imatrix_range: tuple[float, float] = (0.75, 1.15)  # candidates span this factor of the RTN scale
    # calibration (gptq / imatrix)
    calibration_samples: int = 128
    calibration_max_len: int = 2048  # the recipe's [data] max_len wins when smaller

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"quantization mode must be one of {MODES}, got {self.mode!r}")
        if self.weight_bits not in (4, 8):
            raise ValueError(f"weight_bits must be 4 or 8, got {self.weight_bits}")
        if self.act_bits not in (None, 8):
            raise ValueError(f"act_bits must be 8 or None, got {self.act_bits}")
        if self.embedding_bits not in (None, 4, 8):
            raise ValueError(f"embedding_bits must be 4, 8 or None, got {self.embedding_bits}")
        if self.head_bits not in (None, 4, 8):
            raise ValueError(f"head_bits must be 4, 8 or None, got {self.head_bits}")
        for key in ("group_size", "head_group_size"):  # 0 or a negative size would fail deep in the kernels
            g = getattr(self, key)
            if g is not None and not (isinstance(g, int) and g >= 1):
                raise ValueError(f"{key} must be a positive number of input columns or None (per channel), got {g!r}")
        if self.rotation not in (None, "hadamard", "random"):
            raise ValueError(f"rotation must be None, 'hadamard' or 'random', got {self.rotation!r}")
        K.scale_dtype_of(self.scale_dtype)
        self.imatrix_range = tuple(self.imatrix_range)
        self.skip = list(self.skip)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["imatrix_range"] = list(self.imatrix_range)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "QuantConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown quantization keys {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def split(cls, params: dict) -> tuple["QuantConfig", dict]:
        """A QuantConfig from the keys it knows; the rest (e.g. training options) returned untouched."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in params.items() if k in known}), {k: v for k, v in params.items() if k not in known}


# ------------------------------------------------------------------------------------------- the plan


@dataclass
class Target:
    name: str
    kind: str  # "linear" | "embedding"
    bits: int
    group_size: int | None
    act_bits: int | None
    scale_dtype: torch.dtype


def plan(model: nn.Module, cfg: QuantConfig) -> list[Target]:
    """Which modules get which scheme (transformer linears, head, embedding), minus `cfg.skip`."""
    out: list[Target] = []

    def skipped(name):
        return any(fnmatch.fnmatch(name, p) for p in cfg.skip)

    def group_dtype(g):
        return K.scale_dtype_of(cfg.scale_dtype) if g is not None else torch.float32

    for i, _ in enumerate(model.layers):
        for suffix in BLOCK_LINEARS:
            name = f"layers.{i}.{suffix}"
            if not skipped(name):
                out.append(Target(name, "linear", cfg.weight_bits, cfg.group_size, cfg.act_bits, group_dtype(cfg.group_size)))
    if cfg.head_bits is not None and not skipped("output"):
        out.append(Target("output", "linear", cfg.head_bits, cfg.head_group_size, cfg.act_bits, group_dtype(cfg.head_group_size)))
    if cfg.embedding_bits is not None and not skipped("tok_embeddings"):
        out.append(Target("tok_embeddings", "embedding", cfg.embedding_bits, None, None, torch.float32))
    for t in out:
        mod = model.get_submodule(t.name)
        k = mod.in_features if t.kind == "linear" else mod.embedding_dim
        if t.group_size is not None and k % t.group_size:
            raise ValueError(f"{t.name}: {k} input features are not a multiple of the group size {t.group_size}")
        if t.bits == 4 and k % 2:
            raise ValueError(f"{t.name}: int4 packing needs an even number of input features, got {k}")
    return out


def set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def float_weight(mod: nn.Module) -> Tensor:
    """The float (latent) weight of a linear/embedding, plain or fake-quantized."""
    if isinstance(mod, (QuantLinear, QuantEmbedding)):
        return mod.dequantize()
    return mod.weight.detach().float()


def to_kernel(t: Target, weight: Tensor, scales: Tensor | None = None, q: Tensor | None = None) -> nn.Module:
    """The `pocketguard.kernels` module of target `t` holding `weight` quantized (or the given codes)."""
    if t.kind == "embedding":
        return K.embedding_class(t.bits).from_weight(weight, t.scale_dtype, scales=scales)
    cls = K.linear_class(t.bits, t.act_bits)
    return cls.from_weight(weight, t.group_size, t.scale_dtype, scales=scales, q=q)


def _untie(model: nn.Module) -> None:
    """Give the head its own weight: embedding and head are quantized with different schemes."""
    if getattr(model.args, "tie_embeddings", False) and model.output.weight is model.tok_embeddings.weight:
        model.output.weight = nn.Parameter(model.tok_embeddings.weight.detach().clone())
        model.args.tie_embeddings = False


# ------------------------------------------------------------------------------------------------ QAT


@contextlib.contextmanager
def quiet_torchao():
    """torchao logs warnings about CUDA-only extensions at import (also when transformers imports it); nothing a
    CPU user can act on."""
    loggers = [logging.getLogger(n) for n in ("torchao", "torch.utils._pytree")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _torchao():
    with quiet_torchao():
        import torchao.quantization as tq
        import torchao.quantization.qat as qat
    return tq, qat


class GroupwiseWeightFakeQuantizer(nn.Module):
    """Fake-quantizes a weight with fp16-stored group scales and fp32 arithmetic (see module docstring for
    why torchao's own quantizer is not used for this one case). Same interface as torchao's
    `IntxFakeQuantizer` where it matters: `forward(w)`, `enabled`."""

    def __init__(self, bits: int, group_size: int | None, scale_dtype=torch.float16):
        super().__init__()
        self.bits, self.group_size, self.scale_dtype = bits, group_size, K.scale_dtype_of(scale_dtype)
        self.enabled = True

    def forward(self, w: Tensor) -> Tensor:
        if not self.enabled:
            return w
        return K.fake_quantize_weight(w, self.bits, self.group_size, self.scale_dtype)

    def extra_repr(self) -> str:
        return f"int{self.bits}, group_size={self.group_size}, scales={self.scale_dtype}"


def _intx_config(qat, bits: int, group_size: int | None):
    dtype = {4: torch.int4, 8: torch.int8}[bits]
    if group_size is None:
        return qat.IntxFakeQuantizeConfig(dtype, "per_channel")
    return qat.IntxFakeQuantizeConfig(dtype, group_size=group_size)


def prepare_qat(model: nn.Module, cfg: QuantConfig | None = None) -> nn.Module:
    """Swap the planned modules for fake-quantized ones, in place (returns the model). Training then
    sees the exact inference numerics with straight-through gradients."""
    cfg = cfg or QuantConfig()
    _require_float(model, "prepare_qat")
    if cfg.rotation:
        from .rotate import rotate_model

        rotate_model(model, cfg.rotation, seed=cfg.rotation_seed, heads=cfg.rotate_heads)
    targets = plan(model, cfg)  # tied weights stay tied: embedding and head each fake-quantize it their way
    tq, qat = _torchao()
    for t in targets:
        mod = model.get_submodule(t.name)
        if t.kind == "embedding":
            config = qat.QATConfig(weight_config=_intx_config(qat, t.bits, None), step="prepare")
        else:
            act = qat.IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False) if t.act_bits else None
            weight = _intx_config(qat, t.bits, t.group_size)
            config = qat.QATConfig(activation_config=act, weight_config=weight, step="prepare")
        tq.quantize_(model, config, filter_fn=lambda m, fqn, name=t.name, mod=mod: fqn == name and m is mod)
        new = model.get_submodule(t.name)
        if t.kind == "linear" and t.group_size is not None and t.scale_dtype != torch.float32:
            new.weight_fake_quantizer = GroupwiseWeightFakeQuantizer(t.bits, t.group_size, t.scale_dtype)
    model.quant_config = cfg
    return model


def _require_float(model: nn.Module, verb: str) -> None:
    """Quantizing twice would round already rounded weights again (int4 dequantized, then re-gridded) in silence."""
    from .lora import require_merged

    if is_fake_quantized(model) or any(K.is_quantized(m) for m in model.modules()):
        raise ValueError(f"{verb} needs a float model; this one is already (fake-)quantized")
    require_merged(model, verb)


def _fake_spec(mod: nn.Module) -> tuple[int, int | None, torch.dtype, int | None] | None:
    """(bits, group_size, scale_dtype, act_bits) of a fake-quantized module; None if it is not one."""
    if "torchao.quantization.qat" not in sys.modules:  # nothing can be fake-quantized; skip the slow import
        return None
    _, qat = _torchao()
    if not isinstance(mod, (qat.FakeQuantizedLinear, qat.FakeQuantizedEmbedding)):
        return None
    act_bits = None
    afq = getattr(mod, "activation_fake_quantizer", None)
    if afq is not None:
        act_bits = {torch.int8: 8}[afq.config.dtype]
    wfq = mod.weight_fake_quantizer
    if isinstance(wfq, GroupwiseWeightFakeQuantizer):
        return wfq.bits, wfq.group_size, wfq.scale_dtype, act_bits
    from torchao.quantization.granularity import PerAxis, PerGroup

    c = wfq.config
    bits = {torch.int4: 4, torch.int8: 8}[c.dtype]
    group = c.granularity.group_size if isinstance(c.granularity, PerGroup) else None
    if not (isinstance(c.granularity, (PerGroup, PerAxis)) and c.is_symmetric):
        raise ValueError(f"cannot convert fake quantizer {c}: only symmetric per-group/per-channel weights")
    return bits, group, c.scale_precision, act_bits


def fake_to_kernel(name: str, mod: nn.Module) -> nn.Module | None:
    """The `pocketguard.kernels` module of a fake-quantized one, same numerics; None when `mod` is not fake-quantized."""
    spec = _fake_spec(mod)
    if spec is None:
        return None
    bits, group, sdt, act_bits = spec
    _, qat = _torchao()
    kind = "embedding" if isinstance(mod, qat.FakeQuantizedEmbedding) else "linear"
    if kind == "linear" and mod.weight_fake_quantizer is not None and not mod.weight_fake_quantizer.enabled:
        raise ValueError(f"{name}: weight fake quantization is disabled; nothing to convert to")
    return to_kernel(Target(name, kind, bits, group, act_bits, sdt), mod.weight.detach().float())


def convert(model: nn.Module) -> nn.Module:
    """Fake-quantized (QAT) model → real quantized kernels with the same numerics, in place. LoRA adapters
    are merged first, each onto its base's kernel (a fake-quantized base converted first), and the merged weights
    re-quantized on that grid (see lora.merge_lora)."""
    from .lora import LoRALinear, merge_lora

    adapters = [(name, m) for name, m in model.named_modules() if isinstance(m, LoRALinear)]
    for name, m in adapters:
        m.base = fake_to_kernel(f"{name}.base", m.base) or m.base
    if adapters:
        merge_lora(model, requantize=True)
    for name, mod in list(model.named_modules()):
        new = fake_to_kernel(name, mod)
        if new is not None:
            set_module(model, name, new)
    args = getattr(model, "args", None)
    if getattr(args, "tie_embeddings", False) and (K.is_quantized(model.output) or K.is_quantized(model.tok_embeddings)):
        args.tie_embeddings = False  # each now holds its own quantized copy of the once-shared weight
    return model


# ------------------------------------------------------------------------------------------------ PTQ


@torch.no_grad()
def collect_imatrix(model: nn.Module, seqs: list[Tensor], names: Iterable[str], batch_size: int = 8) -> dict[str, Tensor]:
    """Mean squared activation of each input channel of each named linear over the calibration tokens."""
    cal = Calibration(seqs, batch_size)
    sums: dict[str, Tensor] = {}
    counts: dict[str, int] = {}
    hooks = []
    for name in names:
        def hook(mod, inp, name=name):
            x = cal.rows(inp[0]).double()
            sums[name] = sums.get(name, 0) + (x * x).sum(0)
            counts[name] = counts.get(name, 0) + x.shape[0]
        hooks.append(model.get_submodule(name).register_forward_pre_hook(hook))
    try:
        cal.run(model)
    finally:
        for h in hooks:
            h.remove()
    return {n: (sums[n] / counts[n]).float() for n in sums}


def weighted_error(w: Tensor, q: Tensor, scales: Tensor, importance: Tensor, group_size: int | None) -> Tensor:
    """Σ_k importance_k · (w − ŵ)² per output row."""
    what = K.dequantize_weight(q, scales, group_size)
    return ((w.float() - what) ** 2 * importance.float()[None, :]).sum(1)


@torch.no_grad()
def imatrix_scales(w: Tensor, importance: Tensor, bits: int, group_size: int | None = None,
                   scale_dtype=torch.float16, grid: int = 25, span: tuple[float, float] = (0.75, 1.15)) -> Tensor:
    """Per-group scale minimising Σ importance·(w − s·q(w/s))² over candidates: the RTN scale, `grid`
    multiples of it in `span`, and each candidate's least-squares refit s* = Σ I·w·q / Σ I·q² (as in
    llama.cpp's `make_qx_quants`). All candidates are rounded to the stored scale dtype first, so the error
    compared is the error of what is saved; the RTN scale is a candidate, so the result is never worse."""
    w = w.detach().float()
    sdt = K.scale_dtype_of(scale_dtype)
    wg, g = K._groups(w, group_size)
    imp = importance.detach().float().clamp(min=0)
    imp = imp + 1e-6 * imp.mean().clamp(min=1e-12)  # channels never seen still count a little
    ig = imp.reshape(1, -1, g)
    qmin, qmax = K.qrange(bits)

    def cast(s):
        if sdt == torch.float16:
            return s.clamp(K.FP16_SCALE_MIN, K.FP16_SCALE_MAX).to(torch.float16)
        return s.clamp(min=torch.finfo(torch.float32).smallest_normal).to(sdt)

    def err(s):
        sf = s.float().unsqueeze(-1)
        q = torch.clamp(torch.round(wg * (1.0 / sf)), qmin, qmax)
        return (ig * (wg - q * sf) ** 2).sum(-1), q

    base = K.weight_scales(w, bits, group_size, sdt)
    best = base.clone()
    best_err, _ = err(base)
    def update(s, e):
        nonlocal best, best_err
        better = e < best_err
        best = torch.where(better, s, best)
        best_err = torch.where(better, e, best_err)

    for f in torch.linspace(span[0], span[1], max(grid, 2)).tolist():
        cand = cast(base.float() * f)
        e, q = err(cand)
        update(cand, e)
        refit = cast(((ig * wg * q).sum(-1) / (ig * q * q).sum(-1).clamp(min=1e-30)).abs())
        update(refit, err(refit)[0])
    return best


def _quantize_embedding_rtn(model: nn.Module, targets: list[Target]) -> None:
    for t in targets:
        if t.kind == "embedding":
            set_module(model, t.name, to_kernel(t, float_weight(model.get_submodule(t.name))))


def quantize_rtn(model: nn.Module, cfg: QuantConfig) -> nn.Module:
    for t in plan(model, cfg):
        set_module(model, t.name, to_kernel(t, float_weight(model.get_submodule(t.name))))
    return model


def quantize_imatrix(model: nn.Module, cfg: QuantConfig, calibration) -> nn.Module:
    seqs = as_sequences(calibration)
    targets = plan(model, cfg)
    lin = [t for t in targets if t.kind == "linear"]
    stats = collect_imatrix(model, seqs, [t.name for t in lin])
    for t in lin:
        w = float_weight(model.get_submodule(t.name))
        s = imatrix_scales(w, stats[t.name], t.bits, t.group_size, t.scale_dtype, cfg.imatrix_grid, cfg.imatrix_range)
        set_module(model, t.name, to_kernel(t, w, scales=s))
    _quantize_embedding_rtn(model, targets)
    model.imatrix = {k: v.clone() for k, v in stats.items()}
    return model


def quantize_gptq(model: nn.Module, cfg: QuantConfig, calibration) -> nn.Module:
    """GPTQ model-wide (gptq.py), one transformer block at a time, each measured with the earlier ones quantized."""
    seqs = as_sequences(calibration)
    targets = plan(model, cfg)
    _quantize_embedding_rtn(model, targets)
    lin = {t.name: t for t in targets if t.kind == "linear"}
    stages: list[tuple[list[str], nn.Module | None]] = []
    for i, layer in enumerate(model.layers):
        names = [n for n in lin if n.startswith(f"layers.{i}.")]
        if names:
            stages.append((names, layer))
    if "output" in lin:
        stages.append((["output"], None))
    for names, stop in stages:
        hess = G.collect_hessians(model, seqs, names, stop_after=stop)
        for n in names:
            t = lin[n]
            W = float_weight(model.get_submodule(n))
            q, s = G.gptq_quantize_weight(W, hess[n].H, t.bits, t.group_size, t.scale_dtype, cfg.gptq_damp,
                                        cfg.gptq_block_size, cfg.act_order)
            set_module(model, n, to_kernel(t, W, scales=s, q=q))
    return model


def quantize_(model: nn.Module, cfg: QuantConfig | None = None, calibration=None) -> nn.Module:
    """Quantize `model` in place (and return it).

    `mode="qat"` prepares fake quantization for training (then `convert`); the PTQ modes produce
    `pocketguard.kernels` modules directly. `calibration` (token sequences) is needed by gptq / imatrix."""
    cfg = cfg or QuantConfig()
    if cfg.mode == "qat":
        return prepare_qat(model, cfg)
    _require_float(model, "quantize_")
    _untie(model)
    if cfg.rotation:
        from .rotate import rotate_model

        rotate_model(model, cfg.rotation, seed=cfg.rotation_seed, heads=cfg.rotate_heads)
    if cfg.mode == "rtn":
        quantize_rtn(model, cfg)
    elif cfg.mode == "imatrix":
        quantize_imatrix(model, cfg, calibration)
    elif cfg.mode == "gptq":
        quantize_gptq(model, cfg, calibration)
    model.quant_config = cfg
    return model


def quant_config_of(model: nn.Module) -> QuantConfig | None:
    return getattr(model, "quant_config", None)


def is_fake_quantized(model: nn.Module) -> bool:
    return any(_fake_spec(m) is not None for m in model.modules())


def float_model(model: nn.Module, latent: bool = False) -> nn.Module:
    """A float copy of `model` whose kernel modules became nn.Linear / nn.Embedding with their dequantized weights;
    with `latent`, weights that fake-quantize back to the same codes and scales (`kernels.latent_weight`), the
    start of QAT on a quantized model. A model with no kernel module comes back as it is."""
    if not any(K.is_quantized(m) for m in model.modules()):
        return model
    from ..weights import skeleton

    out = skeleton(model.args, "cpu")  # every parameter comes from `state`: none is initialised first
    state = dequantized_state(model, latent)
    for name, p in model.named_parameters():
        state[name] = p.detach().to(torch.float32, copy=True)  # a copy: `out` must not share storage with `model`
    missing, unexpected = out.load_state_dict(state, strict=False, assign=True)
    if unexpected or [m for m in missing if not m.endswith(("rope_cos", "rope_sin"))]:
        raise ValueError(f"cannot rebuild a float model: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return out.eval()


def qat_start(model: nn.Module, cfg: QuantConfig, info: dict | None = None) -> nn.Module:
    """QAT on a model already quantized with `cfg`'s scheme (a shipped artifact trained further on new data): the
    float model whose fake quantization gives back its codes and scales (`float_model(latent=True)`), so training
    starts from the model itself, not from a re-rounded copy of it (dequantized weights re-grid: every group's
    scale changes). Module by module the scheme must be `cfg`'s; `info["qat_start"]` counts the codes and scales
    that do not come back (a few float32-scaled ones; GPTQ / imatrix scales re-scale)."""
    targets = {t.name: t for t in plan(model, cfg)}
    wrong = []
    for name, mod in model.named_modules():
        if not K.is_quantized(mod):
            continue
        spec, t = mod.quant_spec(), targets.get(name)
        have = (spec["weight_bits"], spec["group_size"], spec["act_bits"], K.scale_dtype_of(spec["scale_dtype"]))
        want = None if t is None else (t.bits, t.group_size, t.act_bits, t.scale_dtype)
        if have != want:
            wrong.append(f"{name} is (bits, group, act bits, scales) {have}, the step asks {want}")
    wrong += [f"{n} is not quantized, the step quantizes it" for n in targets if not K.is_quantized(model.get_submodule(n))]
    if wrong:
        raise ValueError("qat on a quantized model needs its own scheme, or its weights would be rounded twice: "
                         + "; ".join(wrong[:4]) + (f" (and {len(wrong) - 4} more)" if len(wrong) > 4 else ""))
    out = float_model(model, latent=True)
    codes = scales = codes_off = scales_off = 0
    for name in targets:
        mod = model.get_submodule(name)
        q = mod.int_weight()  # unpacked once: packed int4 codes cost a pass to read
        c, s = K.requantize_mismatch(out.get_submodule(name).weight.detach(), q, mod.scales, mod.weight_bits,
                                     getattr(mod, "group_size", None))
        codes_off, scales_off = codes_off + c, scales_off + s
        codes, scales = codes + q.numel(), scales + mod.scales.numel()
    if info is not None:
        info["qat_start"] = {"codes": codes, "codes_off": codes_off, "scales": scales, "scales_off": scales_off}
    return out


def dequantized_state(model: nn.Module, latent: bool = False) -> dict[str, Tensor]:
    """Float weights of every linear/embedding as the quantized model sees them (for analysis/export); with `latent`,
    ones that quantize back to the same codes and scales (`kernels.latent_weight`)."""
    out = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (QuantLinear, QuantEmbedding)):
            out[name + ".weight"] = mod.latent() if latent else mod.dequantize()
    return out
