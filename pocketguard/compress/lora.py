"""LoRA adapters on a frozen (fake-)quantized backbone — QLoRA as in Meta's quantized Llama 3.2.

`add_lora` wraps the target linears (plain, fake-quantized or already-quantized kernels) in `LoRALinear`:

    y = base(x) + (alpha / rank) · B A x̂

where x̂ is the input *as the base layer sees it* (fake-quantized to int8 per token when the base quantizes
activations), A is Kaiming-initialised and B starts at zero, so adding adapters changes nothing until
training moves B. Every other parameter of the model is frozen; only A and B train.

`merge_lora` folds the adapters back: W' = Ŵ + Δ, Δ = (alpha/rank)·B A, with Ŵ the base's (fake-)quantized
weight. W' is no longer on the quantization grid. With `requantize=True` (what export does) W' is rounded onto
the base's own grid as far as that is the better fit: per group, the base's scale or a fresh RTN scale of W',
whichever rounds W' with less squared error. Fresh scales alone would round every weight again even for
Δ = 0 (Ŵ's group maxima sit at 7s or -8s, RTN divides by 7.5: 0.93x or 1.07x the old scales); the base's
scale alone clamps a group that Δ grew past its range. Δ = 0 therefore gives the base's codes and scales bit for
bit. A fake-quantized (QAT) base is re-quantized through its kernel: `quantize.convert` converts it first
(bit-identical forward) and then merges, so the merge returns kernels there; re-quantizing a fake base's latent W + Δ instead rounds W again
and lands farther from the unmerged model (measured on the tests' tiny model: 2-10x the logit error for small Δ). Rounding Δ
still costs a little accuracy: report the fidelity after merging. With `requantize=False` the result keeps
the activation quantizer but a float weight Ŵ + Δ, and equals the unmerged model up to float rounding.
"""

from __future__ import annotations

import fnmatch
import math
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import kernels as K

DEFAULT_TARGETS = ("layers.*.attention.w*", "layers.*.feed_forward.w*")


def _act_fq(base: nn.Module):
    """The base layer's activation fake quantizer as a function (None when activations stay float)."""
    if isinstance(base, K.QuantLinear):
        return (lambda x: K.fake_quantize_act(x, base.act_bits)) if base.act_bits else None
    afq = getattr(base, "activation_fake_quantizer", None)
    return afq


def _base_weight(base: nn.Module) -> Tensor:
    """Ŵ: the weight the base layer actually multiplies by."""
    if isinstance(base, K.QuantLinear):
        return base.dequantize()
    wfq = getattr(base, "weight_fake_quantizer", None)
    w = base.weight.detach().float()
    return wfq(w).detach() if wfq is not None else w


class LoRALinear(nn.Module):
    def __init__(self, base: nn.Module, rank: int = 8, alpha: float = 16.0, dropout: float = 0.0,
                 generator: torch.Generator | None = None):
        super().__init__()
        if rank < 1:
            raise ValueError(f"LoRA rank must be ≥ 1, got {rank}")
        self.base = base
        self.in_features, self.out_features = base.in_features, base.out_features
        self.rank, self.alpha = int(rank), float(alpha)
        self.scaling = self.alpha / self.rank
        dev = next(iter(list(base.parameters()) + list(base.buffers()))).device
        a = torch.empty(self.rank, self.in_features)  # drawn on the CPU: `generator` is a CPU generator
        nn.init.kaiming_uniform_(a, a=math.sqrt(5), generator=generator)
        self.lora_A = nn.Parameter(a.to(dev))
        self.lora_B = nn.Parameter(torch.zeros(self.out_features, self.rank, device=dev))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        for p in self.base.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)  # kernel bases take their differentiable reference path when x requires grad
        fq = _act_fq(self.base)
        xa = fq(x) if fq is not None else x
        return y + F.linear(F.linear(self.dropout(xa), self.lora_A.to(xa.dtype)), self.lora_B.to(xa.dtype)) * self.scaling

    def delta(self) -> Tensor:
        return (self.lora_B.detach().float() @ self.lora_A.detach().float()) * self.scaling

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha}"


def _matches(name: str, targets) -> bool:
    return any(fnmatch.fnmatch(name, t) for t in targets)


def add_lora(model: nn.Module, rank: int = 8, alpha: float = 16.0, targets=None, dropout: float = 0.0,
             generator: torch.Generator | None = None) -> nn.Module:
    """Wrap the linears whose names match `targets` (fnmatch patterns; default: every transformer-block
    linear) and freeze everything except the adapters. In place; returns the model. A is drawn from
    `generator` (a CPU torch.Generator; default: the global RNG)."""
    targets = tuple(targets) if targets else DEFAULT_TARGETS
    for p in model.parameters():
        p.requires_grad_(False)
    wrapped = 0
    for name, mod in list(model.named_modules()):
        if isinstance(mod, LoRALinear) or ".base" in name or not _matches(name, targets):
            continue
        if isinstance(mod, (nn.Linear, K.QuantLinear)):
            model.set_submodule(name, LoRALinear(mod, rank, alpha, dropout, generator))
            wrapped += 1
    if not wrapped:
        raise ValueError(f"no linear matches the LoRA targets {list(targets)}")
    return model


def has_lora(model: nn.Module) -> bool:
    """Whether the model holds LoRA adapters not yet merged."""
    return any(isinstance(m, LoRALinear) for m in model.modules())


def require_merged(model: nn.Module, verb: str) -> None:
    """`verb` works on plain weights; a LoRALinear has none, and the adapters would be lost or mis-rotated."""
    if has_lora(model):
        raise ValueError(f"{verb}: the model has unmerged LoRA adapters; merge them first "
                         "(merge_lora(model, requantize=False) keeps a float model float)")


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for m in model.modules() if isinstance(m, LoRALinear) for p in (m.lora_A, m.lora_B)]


@torch.no_grad()
def merge_lora(model: nn.Module, requantize: bool = True, report: dict | None = None) -> nn.Module:
    """Replace every LoRALinear by one module with the merged weight (see the module docstring).

    Re-quantized, a Δ under half a grid step rounds away: `report` (when given) gets `weights`, how many weights
    were merged onto a grid, and `weights_changed`, how many of them the merge moved; none moved is warned about,
    since the merged model is then the base bit for bit and the adapters' training is lost (seen: 38 steps of rank 16
    on the shipped int4 guard, training/runs/2026-12-07-cpu-qlora)."""
    weights = changed = 0
    for name, mod in list(model.named_modules()):
        if not isinstance(mod, LoRALinear):
            continue
        base = mod.base
        if requantize and getattr(base, "weight_fake_quantizer", None) is not None:
            raise ValueError(f"{name}: a fake-quantized (QAT) base is re-quantized through its kernel: "
                             "quantize.convert(model) converts it and merges the adapters onto it")
        before = _base_weight(base)
        merged = before + mod.delta()
        if isinstance(base, K.QuantLinear):
            if requantize:
                new = type(base).from_weight(merged, base.group_size, scales=_grid_scales(base, merged))
                weights += before.numel()
                changed += int((new.dequantize() != before).sum())
            else:
                new = _float_with_act(base, merged)
        else:
            new = base
            if getattr(base, "weight_fake_quantizer", None) is not None:  # requantize=False: Ŵ + Δ, used as is
                base.weight_fake_quantizer.enabled = False
            new.weight = nn.Parameter(merged.to(base.weight.dtype), requires_grad=True)
        model.set_submodule(name, new)
    if report is not None:
        report.update(weights=weights, weights_changed=changed)
    if weights and not changed:
        warnings.warn(f"LoRA merge: the adapters moved none of the {weights:,} weights merged onto the quantization grid "
                      "(each change stayed under half a grid step): the merged model is the base's, bit for bit; train "
                      "the adapters longer or at a higher learning rate", stacklevel=3)  # the caller, past no_grad
    return model


def _grid_scales(base: K.QuantLinear, merged: Tensor) -> Tensor:
    """Per group, the base's scale or a fresh RTN scale of `merged`, whichever rounds it with less squared error
    (ties keep the base's: a zero Δ keeps the base bit for bit)."""
    bits, g = base.weight_bits, base.group_size

    def sq_err(s):
        what = K.dequantize_weight(K.quantize_weight(merged, s, bits, g), s, g)
        return K._groups((merged - what) ** 2, g)[0].sum(-1)

    fresh = K.weight_scales(merged, bits, g, base.scales.dtype)
    return torch.where(sq_err(fresh) < sq_err(base.scales), fresh, base.scales)


class _FloatWithActQuant(nn.Linear):
    """Float weight, activations still fake-quantized: a merged-but-not-requantized kernel layer."""

    def __init__(self, weight: Tensor, act_bits: int | None):
        super().__init__(weight.shape[1], weight.shape[0], bias=False)
        self.weight = nn.Parameter(weight.float().clone())
        self.act_bits = act_bits

    def forward(self, x: Tensor) -> Tensor:
        if self.act_bits:
            x = K.fake_quantize_act(x, self.act_bits)
        return F.linear(x, self.weight)


def _float_with_act(base: K.QuantLinear, merged: Tensor) -> nn.Module:
    return _FloatWithActQuant(merged, base.act_bits)
