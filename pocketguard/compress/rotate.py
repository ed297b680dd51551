"""Rotations fused into the weights (QuaRot / SpinQuant R1 and R2), before quantization.

The residual stream of a Llama can be multiplied by any orthogonal R without changing the function, once
the RMSNorm gains are folded into the linears that read the norms (RMSNorm(h R) = RMSNorm(h) R when the
gain is 1):

* fold: W ← W · diag(g) for wq/wk/wv (attention_norm), w1/w3 (ffn_norm), output (final norm); g ← 1;
* R1 (residual): embedding E ← E R; every linear reading the stream W ← W R (wq, wk, wv, w1, w3, output);
  every linear writing to it W ← Rᵀ W (wo, w2);
* R2 (per head, optional): V heads and the matching input columns of wo: W_v,h ← R2ᵀ W_v,h and
  wo[:, h] ← wo[:, h] R2 (one R2 shared by all heads, so grouped-query attention is fine).

Outlier channels of the stream are spread over all channels, which makes 4-bit weights and 8-bit
per-token activations lose less. The float logits are unchanged up to float rounding (tested ≤ 1e-4).

The matrix: a randomized Hadamard `H · diag(±1)/√n` (QuaRot/SpinQuant's initialisation) built by Sylvester's
construction for powers of two; for n = 2^a·m with m > 1 the Kronecker product H_(2^(a-j)) ⊗ P_(m·2^j) with a Paley
Hadamard matrix P when some m·2^j − 1 is a prime ≡ 3 (mod 4) (m·2^j = 12, 20, 24, 44, 48, 60, 68, 72, …; so
3072 = 256·12 and 80 = 4·20 get true Hadamards), otherwise H_(2^a) ⊗ Q_m with Q_m a random orthogonal matrix
(QR of a Gaussian) — still orthogonal, just not ±1-valued in that factor.
`kind="random"` uses a Haar-random orthogonal matrix of the full size instead.

Not implemented: SpinQuant's *learned* rotations (Cayley SGD on the quantized loss) and the online R3/R4
Hadamards (they need a runtime op in attention / before w2).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def sylvester_hadamard(n: int) -> Tensor:
    if n < 1 or n & (n - 1):
        raise ValueError(f"Sylvester's construction needs a power of two, got {n}")
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.shape[0] < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    return H


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, int(math.isqrt(p)) + 1))


def paley_hadamard(n: int) -> Tensor | None:
    """Paley construction I (order q+1 for a prime q ≡ 3 mod 4), ±1 entries; None when it does not apply."""
    q = n - 1
    if not (_is_prime(q) and q % 4 == 3):
        return None
    squares = {(i * i) % q for i in range(1, q)}
    chi = torch.tensor([0] + [1 if a in squares else -1 for a in range(1, q)], dtype=torch.float64)
    idx = (torch.arange(q)[None, :] - torch.arange(q)[:, None]) % q
    Q = chi[idx]  # Jacobsthal matrix, antisymmetric for q ≡ 3 mod 4
    S = torch.zeros(n, n, dtype=torch.float64)
    S[0, 1:] = 1
    S[1:, 0] = -1
    S[1:, 1:] = Q
    return S + torch.eye(n, dtype=torch.float64)


def random_orthogonal(n: int, gen: torch.Generator) -> Tensor:
    A = torch.randn(n, n, generator=gen, dtype=torch.float64)
    Q, R = torch.linalg.qr(A)
    return (Q * torch.sign(torch.diagonal(R))[None, :]).contiguous()  # sign fix: Haar distributed


def rotation_matrix(n: int, kind: str = "hadamard", seed: int = 0) -> Tensor:
    """An n×n orthogonal matrix (float64)."""
    gen = torch.Generator().manual_seed(seed)
    if kind == "random":
        return random_orthogonal(n, gen)
    if kind != "hadamard":
        raise ValueError(f"rotation kind must be 'hadamard' or 'random', got {kind!r}")
    p = n & -n  # largest power of two dividing n
    m = n // p
    H = sylvester_hadamard(p) / math.sqrt(p)
    if m > 1:
        # a Paley factor m·2^j (a multiple of 4) if there is one, else a random orthogonal odd factor
        for j in range(p.bit_length()):
            M = paley_hadamard(m << j)
            if M is not None:
                H = torch.kron(sylvester_hadamard(p >> j) / math.sqrt(p >> j), M / math.sqrt(m << j))
                break
        else:
            H = torch.kron(H.contiguous(), random_orthogonal(m, gen).contiguous())
    signs = torch.randint(0, 2, (n,), generator=gen).double() * 2 - 1
    return H * signs[None, :]


def _untie(model: nn.Module) -> None:
    if getattr(model.args, "tie_embeddings", False) and model.output.weight is model.tok_embeddings.weight:
        model.output.weight = nn.Parameter(model.tok_embeddings.weight.detach().clone())
        model.args.tie_embeddings = False


def _plain(mod: nn.Module) -> nn.Module:
    if not hasattr(mod, "weight") or not isinstance(mod.weight, nn.Parameter):
        raise ValueError(f"rotate float models before quantizing: {type(mod).__name__} has no float weight")
    return mod


@torch.no_grad()
def fold_norms(model: nn.Module) -> nn.Module:
    """Fold each RMSNorm gain into the linears reading that norm; the gains become 1. Function unchanged."""
    _untie(model)

    def fold(norm, linears):
        g = norm.weight.detach().double()
        for lin in linears:
            w = _plain(lin).weight
            w.copy_((w.double() * g[None, :]).to(w.dtype))
        norm.weight.fill_(1.0)

    for layer in model.layers:
        fold(layer.attention_norm, [layer.attention.wq, layer.attention.wk, layer.attention.wv])
        fold(layer.ffn_norm, [layer.feed_forward.w1, layer.feed_forward.w3])
    fold(model.norm, [model.output])
    return model


@torch.no_grad()
def rotate_model(model: nn.Module, kind: str = "hadamard", seed: int = 0, heads: bool = True) -> nn.Module:
    """Fold norms and apply R1 (and R2 when `heads`), in place. Records what it did in `model.args.extra`."""
    from .lora import require_merged

    args = model.args
    done = (args.extra or {}).get("rotation")
    if done:  # one record holds one rotation: a second would leave the teacher (turned by the record) in another basis
        raise ValueError(f"the model is already rotated ({done}); rotate it once, from the unrotated model")
    require_merged(model, "rotate_model")
    fold_norms(model)
    # built on the CPU (seeded, the same everywhere), then moved once to where the weights live: a recipe's GPU
    device = model.tok_embeddings.weight.device
    R = rotation_matrix(args.dim, kind, seed).to(device)

    def right(lin, M):  # W ← W M (the linear reads a rotated input)
        w = _plain(lin).weight
        w.copy_((w.double() @ M).to(w.dtype))

    def left(lin, M):  # W ← Mᵀ W (the linear's output is rotated)
        w = _plain(lin).weight
        w.copy_((M.T @ w.double()).to(w.dtype))

    right(model.tok_embeddings, R)
    for layer in model.layers:
        a, f = layer.attention, layer.feed_forward
        for lin in (a.wq, a.wk, a.wv, f.w1, f.w3):
            right(lin, R)
        for lin in (a.wo, f.w2):
            left(lin, R)
    right(model.output, R)
    if heads:
        hd = args.head_dim
        R2 = rotation_matrix(hd, kind, seed + 1).to(device)
        for layer in model.layers:
            a = layer.attention
            wv = _plain(a.wv).weight  # [n_kv*hd, dim]: per kv head, rows ← R2ᵀ rows
            v = wv.double().view(args.n_kv_heads, hd, -1)
            wv.copy_(torch.einsum("ji,hjk->hik", R2, v).reshape(wv.shape).to(wv.dtype))
            wo = _plain(a.wo).weight  # [dim, n_heads*hd]: per head, columns ← columns R2
            o = wo.double().view(wo.shape[0], args.n_heads, hd)
            wo.copy_(torch.einsum("dhj,jk->dhk", o, R2).reshape(wo.shape).to(wo.dtype))
    args.extra = {**(args.extra or {}), "rotation": {"kind": kind, "seed": seed, "heads": heads}}
    return model


def rotate_step(model: nn.Module, ctx=None, rotation: str = "hadamard", seed: int = 0, heads: bool = True) -> nn.Module:
    """Recipe step `rotate` (`rotation` = hadamard | random, as QuantConfig names it: a step's `kind` is the step's own)."""
    return rotate_model(model, rotation, seed, heads)
