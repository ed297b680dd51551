"""GPTQ (Frantar et al., 2023) for pocketguard's symmetric group-wise scheme.

For one linear with weight W [out, in] and calibration inputs X, GPTQ quantizes the columns of W one at a
time and spreads each column's rounding error over the not-yet-quantized columns through the inverse
Hessian H⁻¹ of the layer loss ‖X Wᵀ − X Ŵᵀ‖², H = 2 XᵀX / n, so the *layer output* error is what is
minimised, not the weight error. Details follow the reference implementation:

* damping `λ = damp · mean(diag H)` added to the diagonal; inputs never active (diag H = 0) get H_ii = 1
  and their weight column set to 0;
* the upper Cholesky factor of H⁻¹ drives the updates, in blocks of `block_size` columns (lazy batch
  updates);
* group scales (the shared `kernels.weight_scales` formula, fp16-rounded when so stored) are chosen
  when the quantizer reaches the first column of a group, from the error-updated weights;
* `act_order=True` processes columns by decreasing diag H. Groups stay contiguous in the *original*
  column order (the kernels need that), so with act-order all group scales are fixed up front from the
  original weights ("static groups").

`quantize.quantize_gptq` runs it model-wide, one transformer block at a time: the Hessians of a block's linears
come from a pass in which every earlier block is already quantized (embedding first, head last), and the
pass stops right after the block (no wasted compute on later blocks).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .. import kernels as K
from .calibration import Calibration, StopCalibration


@torch.no_grad()
def gptq_quantize_weight(W: Tensor, H: Tensor, bits: int = 4, group_size: int | None = 32,
                         scale_dtype=torch.float16, damp: float = 0.01, block_size: int = 128,
                         act_order: bool = False) -> tuple[Tensor, Tensor]:
    """Codes (int8 [out, in]) and scales ([out, in/group] of `scale_dtype`) for `W` given Hessian `H`."""
    W = W.detach().float().clone()
    n_out, n_in = W.shape
    g = n_in if group_size is None else int(group_size)
    if n_in % g:
        raise ValueError(f"in_features {n_in} is not a multiple of the group size {g}")
    sdt = K.scale_dtype_of(scale_dtype)
    qmin, qmax = K.qrange(bits)
    H = H.detach().to(W.device, torch.float64).clone()
    if H.shape != (n_in, n_in):
        raise ValueError(f"Hessian of shape {tuple(H.shape)} for {n_in} inputs")

    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0

    scales = torch.empty(n_out, n_in // g, dtype=sdt, device=W.device)
    static = act_order or g == n_in  # per-channel scales are fixed from the whole row anyway
    if static:
        scales[:] = K.weight_scales(W, bits, g, sdt)

    perm = torch.arange(n_in, device=W.device)
    if act_order:
        perm = torch.argsort(torch.diag(H), descending=True)
        W = W[:, perm]
        H = H[perm][:, perm]
    inv_perm = torch.argsort(perm)

    lam = damp * torch.mean(torch.diag(H))
    diag = torch.arange(n_in, device=W.device)
    H[diag, diag] += lam
    Hinv = None
    for attempt in range(6):
        try:
            L = torch.linalg.cholesky(H)
            Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
            break
        except RuntimeError:  # not positive definite: more damping
            H[diag, diag] += lam * (10 ** attempt)
    if Hinv is None:
        raise RuntimeError("GPTQ: the Hessian is not positive definite even after extra damping")
    Hinv = Hinv.float()

    Q = torch.zeros_like(W)
    bs = max(g if g < n_in else 1, (block_size // g) * g if g < n_in else block_size)
    for i1 in range(0, n_in, bs):
        i2 = min(i1 + bs, n_in)
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        E1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            col = i1 + i  # position in processing order
            orig = int(perm[col])
            if not static and orig % g == 0:
                # first column of a group: scales from the error-updated weights of the whole group
                grp = torch.cat([W1[:, i:], W[:, i2:]], dim=1)[:, :g]
                scales[:, orig // g] = K.weight_scales(grp, bits, None, sdt).reshape(-1)
            s = scales[:, orig // g].float()
            w = W1[:, i]
            q = torch.clamp(torch.round(w * (1.0 / s)), qmin, qmax)
            Q1[:, i] = q
            err = (w - q * s) / Hinv1[i, i]
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            E1[:, i] = err
        Q[:, i1:i2] = Q1
        W[:, i2:] -= E1 @ Hinv[i1:i2, i2:]
    return Q[:, inv_perm].to(torch.int8), scales


class HessianAccumulator:
    """Running H = 2/n Σ x xᵀ over the rows of a linear's inputs."""

    def __init__(self, n_in: int, device=None):
        self.H = torch.zeros(n_in, n_in, dtype=torch.float64, device=device)
        self.n = 0

    def add(self, x: Tensor) -> None:
        x = x.detach().reshape(-1, x.shape[-1]).to(self.H.device, torch.float64)
        m = x.shape[0]
        self.H *= self.n / (self.n + m)
        self.n += m
        x = x * (2.0 / self.n) ** 0.5
        self.H += x.T @ x


@torch.no_grad()
def collect_hessians(model: nn.Module, seqs: list[Tensor], names: list[str], stop_after: nn.Module | None = None,
                     batch_size: int = 8) -> dict[str, HessianAccumulator]:
    """Hessians of the named linears over the calibration tokens (padding excluded); the passes end right
    after `stop_after` runs."""
    cal = Calibration(seqs, batch_size)
    dev = next(iter(list(model.parameters()) + list(model.buffers()))).device
    acc = {n: HessianAccumulator(model.get_submodule(n).in_features, dev) for n in names}
    hooks = [model.get_submodule(n).register_forward_pre_hook(lambda m, inp, n=n: acc[n].add(cal.rows(inp[0])))
             for n in names]
    if stop_after is not None:
        def stop(m, inp, out):
            raise StopCalibration
        hooks.append(stop_after.register_forward_hook(stop))
    try:
        cal.run(model)
    finally:
        for h in hooks:
            h.remove()
    return acc


def layer_output_mse(W: Tensor, W_hat: Tensor, X: Tensor) -> float:
    """mean ‖X Wᵀ − X Ŵᵀ‖² — the quantity GPTQ minimises (used by tests and reports)."""
    X = X.reshape(-1, X.shape[-1]).float()
    return float(((X @ (W.float() - W_hat.float()).T) ** 2).mean())
