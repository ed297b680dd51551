"""One readable Llama: GQA, RoPE with Llama 3 frequency scaling, RMSNorm, SwiGLU, a slot-addressed KV cache.

It also holds every shape compression produces: a different MLP width per layer, an output head pruned
to a few kept tokens (`output_token_ids` maps head rows to vocabulary ids), and an input embedding pruned
to a token subset (`input_token_ids`; ids outside it read the row of `embed_fallback_id`).

Weights use Meta's module names; rotary embedding uses the rotate-half layout of Hugging Face checkpoints
(Meta's interleaved q/k rows are permuted at load time, see checkpoint.py).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .kernels import linears


class ContextLengthError(ValueError):
    """More tokens than the model's context (or the cache) can hold."""


@dataclass
class ModelArgs:
    dim: int = 2048
    n_layers: int = 16
    n_heads: int = 32
    n_kv_heads: int = 8
    vocab_size: int = 128256
    ffn_dims: list[int] | int = 8192  # one width for all layers, or one per layer after MLP pruning
    norm_eps: float = 1e-5
    rope_theta: float = 500000.0
    rope_scaling: dict | None = None  # Llama 3: factor, low_freq_factor, high_freq_factor, original_max_position_embeddings
    max_seq_len: int = 8192
    head_dim: int | None = None
    tie_embeddings: bool = False
    output_token_ids: list[int] | None = None  # pruned head: row i scores vocabulary id output_token_ids[i]
    input_token_ids: list[int] | None = None  # pruned embedding: row i embeds vocabulary id input_token_ids[i]
    embed_fallback_id: int | None = None  # vocabulary id whose row unknown ids use (must be kept)
    extra: dict = field(default_factory=dict)  # free-form provenance (e.g. which blocks were kept)

    def __post_init__(self):
        if isinstance(self.ffn_dims, int):
            self.ffn_dims = [self.ffn_dims] * self.n_layers
        self.ffn_dims = [int(d) for d in self.ffn_dims]
        if len(self.ffn_dims) != self.n_layers:
            raise ValueError(f"ffn_dims has {len(self.ffn_dims)} entries for {self.n_layers} layers")
        if self.head_dim is None:
            self.head_dim = self.dim // self.n_heads
        if self.n_heads % self.n_kv_heads:
            raise ValueError(f"n_heads={self.n_heads} is not a multiple of n_kv_heads={self.n_kv_heads}")
        if self.input_token_ids is not None:
            if self.embed_fallback_id is None or self.embed_fallback_id not in set(self.input_token_ids):
                raise ValueError("a pruned input embedding needs an embed_fallback_id among its input_token_ids")
        for ids in (self.output_token_ids, self.input_token_ids):
            if ids is not None and (len(set(ids)) != len(ids) or min(ids) < 0 or max(ids) >= self.vocab_size):
                raise ValueError("token maps must hold distinct ids inside the vocabulary")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelArgs":
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown model config keys {sorted(unknown)}")
        return cls(**d)


def rope_frequencies(args: ModelArgs) -> Tensor:
    """Inverse frequencies, with Llama 3's smooth long-context scaling when configured."""
    hd = args.head_dim
    inv = 1.0 / (args.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    s = args.rope_scaling
    if not s:
        return inv
    factor, lo, hi = s["factor"], s.get("low_freq_factor", 1.0), s.get("high_freq_factor", 4.0)
    old = s.get("original_max_position_embeddings", 8192)
    wavelen = 2 * math.pi / inv
    scaled = torch.where(wavelen > old / lo, inv / factor, inv)
    smooth = (old / wavelen - lo) / (hi - lo)
    mid = (1 - smooth) * scaled / factor + smooth * scaled
    is_mid = (wavelen >= old / hi) & (wavelen <= old / lo)
    return torch.where(is_mid, mid, scaled)


def rotate_half(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """`x * cos + rotate_half(x) * sin` without building `rotate_half(x)`: the same products and sums, so
    the same bits (`a + -b` is `a - b`), with two fewer full-size temporaries and no concatenation."""
    h = x.shape[-1] // 2
    out = x * cos
    out[..., :h] -= x[..., h:] * sin[..., :h]
    out[..., h:] += x[..., :h] * sin[..., h:]
    return out


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * xf.to(x.dtype)


class KVCache:
    """Keys/values by slot. Slots are filled in order; per row, `valid` marks real tokens (padding is not)
    and `pos` counts them, so each row gets exact positions even when a batch pads rows to one length.

    `snapshot()`/`restore()` roll the cache back without copying: the guard scores its answer on top of a
    conversation and then forgets those steps (streaming and category scoring rely on it).
    """

    def __init__(self, args: ModelArgs, batch: int, max_len: int, device=None, dtype=torch.float32):
        shape = (batch, args.n_kv_heads, max_len, args.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(args.n_layers)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(args.n_layers)]
        self.valid = torch.zeros(batch, max_len, dtype=torch.bool, device=device)
        self.pos = torch.zeros(batch, dtype=torch.long, device=device)
        self.length = 0

    @property
    def batch(self) -> int:
        return self.valid.shape[0]

    @property
    def max_len(self) -> int:
        return self.valid.shape[1]

    def snapshot(self) -> tuple[int, Tensor]:
        return self.length, self.pos.clone()

    def restore(self, state: tuple[int, Tensor]) -> None:
        self.length, pos = state
        self.pos = pos.clone()

    def load_prefix(self, prefix: "KVCache") -> None:
        """Start every row of this cache with row 0 of `prefix` (the shared policy prefix)."""
        n = prefix.length
        if n > self.max_len:
            raise ContextLengthError(f"prefix of {n} tokens does not fit a cache of {self.max_len}")
        for dst, src in ((self.k, prefix.k), (self.v, prefix.v)):
            for d, s in zip(dst, src):
                d[:, :, :n] = s[:1, :, :n]
        self.valid[:, :n] = prefix.valid[:1, :n]
        self.pos[:] = prefix.pos[0]
        self.length = n

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.k + self.v)


class Attention(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = args.n_heads, args.n_kv_heads, args.head_dim
        self.wq = nn.Linear(args.dim, args.n_heads * args.head_dim, bias=False)
        self.wk = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wv = nn.Linear(args.dim, args.n_kv_heads * args.head_dim, bias=False)
        self.wo = nn.Linear(args.n_heads * args.head_dim, args.dim, bias=False)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None, cache: KVCache | None, layer: int) -> Tensor:
        B, T, _ = x.shape
        q, k, v = linears(x, self.wq, self.wk, self.wv)
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            s0 = cache.length - T  # the model advanced cache.length before running the layers
            cache.k[layer][:, :, s0 : s0 + T] = k.to(cache.k[layer].dtype)
            cache.v[layer][:, :, s0 : s0 + T] = v.to(cache.v[layer].dtype)
            k, v = cache.k[layer][:, :, : s0 + T].to(q.dtype), cache.v[layer][:, :, : s0 + T].to(q.dtype)
        if self.n_kv_heads != self.n_heads:
            rep = self.n_heads // self.n_kv_heads
            k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)
        if mask is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.wo(y.transpose(1, 2).reshape(B, T, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)  # gate
        self.w2 = nn.Linear(hidden, dim, bias=False)  # down
        self.w3 = nn.Linear(dim, hidden, bias=False)  # up

    def forward(self, x: Tensor) -> Tensor:
        gate, up = linears(x, self.w1, self.w3)
        return self.w2(F.silu(gate) * up)


class TransformerBlock(nn.Module):
    def __init__(self, args: ModelArgs, ffn_dim: int):
        super().__init__()
        self.attention = Attention(args)
        self.feed_forward = FeedForward(args.dim, ffn_dim)
        self.attention_norm = RMSNorm(args.dim, args.norm_eps)
        self.ffn_norm = RMSNorm(args.dim, args.norm_eps)

    def forward(self, x, cos, sin, mask, cache, layer):
        h = x + self.attention(self.attention_norm(x), cos, sin, mask, cache, layer)
        return h + self.feed_forward(self.ffn_norm(h))


class Transformer(nn.Module):
    def __init__(self, args: ModelArgs):
        super().__init__()
        self.args = args
        n_in = len(args.input_token_ids) if args.input_token_ids is not None else args.vocab_size
        n_out = len(args.output_token_ids) if args.output_token_ids is not None else args.vocab_size
        self.tok_embeddings = nn.Embedding(n_in, args.dim)
        self.layers = nn.ModuleList(TransformerBlock(args, d) for d in args.ffn_dims)
        self.norm = RMSNorm(args.dim, args.norm_eps)
        self.output = nn.Linear(args.dim, n_out, bias=False)
        if args.tie_embeddings:
            if args.output_token_ids is not None or args.input_token_ids is not None:
                raise ValueError("tied embeddings cannot be combined with pruned token maps; untie first")
            self.output.weight = self.tok_embeddings.weight
        inv = rope_frequencies(args)
        freqs = torch.outer(torch.arange(args.max_seq_len, dtype=torch.float32), inv)
        emb = torch.cat((freqs, freqs), dim=-1)
        self.register_buffer("rope_cos", emb.cos(), persistent=False)
        self.register_buffer("rope_sin", emb.sin(), persistent=False)
        if args.input_token_ids is not None:
            row = {t: i for i, t in enumerate(args.input_token_ids)}
            id_map = torch.full((args.vocab_size,), row[args.embed_fallback_id], dtype=torch.long)
            id_map[torch.tensor(args.input_token_ids)] = torch.arange(n_in)
            self.register_buffer("input_id_map", id_map, persistent=False)
        else:
            self.input_id_map = None
        out_ids = torch.tensor(args.output_token_ids, dtype=torch.long) if args.output_token_ids is not None else None
        self.register_buffer("output_token_ids", out_ids, persistent=False)
        # On during a training forward of TrainConfig.activation_checkpointing: with gradients on, each block's
        # activations are recomputed in backward instead of kept (one more forward's compute, one block's at a time)
        self.activation_checkpointing = False

    def init_weights(self, std: float = 0.02, seed: int | None = None) -> "Transformer":
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            else:
                with torch.no_grad():
                    p.copy_(torch.randn(p.shape, generator=gen) * std)
        return self

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def embed(self, tokens: Tensor) -> Tensor:
        if self.input_id_map is not None:
            # Unknown (or out-of-vocabulary) ids read the fallback row: a pruned embedding never crashes.
            fallback = self.input_id_map[self.args.embed_fallback_id]
            inside = (tokens >= 0) & (tokens < self.args.vocab_size)
            tokens = torch.where(inside, self.input_id_map[tokens.clamp(0, self.args.vocab_size - 1)], fallback)
        elif tokens.numel() and (int(tokens.min()) < 0 or int(tokens.max()) >= self.tok_embeddings.num_embeddings):
            raise ValueError(f"token id out of range for a vocabulary of {self.tok_embeddings.num_embeddings}")
        return self.tok_embeddings(tokens)

    def head_rows(self, vocab_ids: list[int]) -> list[int | None]:
        """Head row of each vocabulary id (None when a pruned head dropped it)."""
        if self.output_token_ids is None:
            return [i if 0 <= i < self.args.vocab_size else None for i in vocab_ids]
        row = {t: i for i, t in enumerate(self.output_token_ids.tolist())}
        return [row.get(i) for i in vocab_ids]

    def forward(
        self,
        tokens: Tensor,
        cache: KVCache | None = None,
        valid: Tensor | None = None,
        last_only: bool = False,
        return_hidden: bool = False,
    ) -> Tensor:
        """Logits for `tokens` [B, T].

        `valid` [B, T] marks real tokens (False = padding). With a cache the tokens go to the next T slots;
        without one the call is a plain causal pass (training). `last_only` returns each row's logits at its
        last valid token, shape [B, 1, n_out], skipping the head everywhere else.
        """
        B, T = tokens.shape
        dev = tokens.device
        if valid is None:
            valid = torch.ones(B, T, dtype=torch.bool, device=dev)
        if cache is None:
            positions = (valid.long().cumsum(1) - 1).clamp(min=0)
            if T > self.args.max_seq_len and bool(valid.all()):
                raise ContextLengthError(f"{T} tokens exceed the model's context of {self.args.max_seq_len}")
            if bool((valid == (torch.arange(T, device=dev) < valid.sum(1, keepdim=True))).all()):
                # No padding, or right padding only (training batches): causal attention alone is exact for
                # every real token, whose keys (itself and earlier) are all real, and it runs the flash
                # kernel instead of materialising a [B, T, T] mask. Padding positions see padding keys, but
                # nothing reads their outputs.
                mask = None
            else:
                causal = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
                mask = causal & valid[:, None, :]
        else:
            s0 = cache.length
            if s0 + T > cache.max_len:
                raise ContextLengthError(f"{s0 + T} tokens exceed the cache of {cache.max_len}")
            positions = cache.pos[:, None] + (valid.long().cumsum(1) - 1).clamp(min=0)
            cache.valid[:, s0 : s0 + T] = valid
            cache.pos = cache.pos + valid.long().sum(1)
            cache.length = s0 + T
            slots = torch.arange(s0 + T, device=dev)
            causal = slots[None, :] <= (s0 + torch.arange(T, device=dev))[:, None]
            mask = causal & cache.valid[:, None, : s0 + T]
        if mask is not None:
            # Every query may see its own slot, so a padding row is never all-masked (NaN would leak via V).
            own = torch.zeros_like(mask)
            own[..., torch.arange(T, device=dev), mask.shape[-1] - T + torch.arange(T, device=dev)] = True
            mask = (mask | own).unsqueeze(1)
        if int(positions.max()) >= self.args.max_seq_len:
            raise ContextLengthError(f"position {int(positions.max())} exceeds the model's context of {self.args.max_seq_len}")
        cos, sin = self.rope_cos[positions], self.rope_sin[positions]
        h = self.embed(tokens)
        cos, sin = cos.to(h.dtype), sin.to(h.dtype)
        recompute = self.activation_checkpointing and cache is None and torch.is_grad_enabled()
        if recompute:
            from torch.utils.checkpoint import checkpoint  # (imported only by training that asks for it)
        for i, layer in enumerate(self.layers):
            if recompute:  # (the RNG state is replayed, so dropout draws the same masks again)
                h = checkpoint(layer, h, cos, sin, mask, None, i, use_reentrant=False)
            else:
                h = layer(h, cos, sin, mask, cache, i)
        if last_only:
            last = T - 1 - valid.flip(1).long().argmax(1)
            h = h[torch.arange(B, device=dev), last].unsqueeze(1)
        h = self.norm(h)
        return h if return_hidden else self.output(h)
