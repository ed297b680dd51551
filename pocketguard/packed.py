"""Packed forward: many sequences through the model in one pass, paying only for their real tokens.

Why not `Transformer.forward` on a padded batch: padding every row to the longest item wastes most of a
mixed-length batch (one 2,000-token message pads 127 short ones), and a padded batch computes each row
with other shapes than the same row alone, so its verdict could differ from one-by-one in the last bits.

Here the tokens of all sequences are concatenated into one matrix of rows: every linear (the bulk of the
work) runs once over all of them; attention runs per sequence, on its own keys only, with exactly the
shapes it has when judged alone. Each sequence owns its KV (`Sequence`), which starts as a copy of a shared
prefix (the policy prefix is computed once per policy and role). A row's result never depends on the
other rows of the pass, so batched verdicts are bit-identical to one-by-one:

* the AMX kernel (`runtime_cpu`) quantizes and accumulates each row on its own (16-row tiles, per-row
  accumulators, threads split the output columns);
* BLAS (`F.linear`, the portable kernels) picks its summation order by the number of rows, and a single
  row takes a different (gemv) path: the row count is padded to a multiple of 16 (`_ROWS`), where MKL's
  per-row results are the same for every row count (`tests/test_batching.py` checks both kernels);
* norms, RoPE and the int8 head's integer matmul are per row.

On a GPU the per-sequence attention calls would be thousands of tiny kernel launches per pass, so there
(`padded(device)`) the sequences of a pass share one KV buffer per layer (`_Group`) and attention is one
SDPA call per layer over them, queries and keys padded to the pass's longest under a mask that gives each
row exactly the keys it sees alone. The GPU's results are not bit-identical to one-by-one anyway (cuBLAS
picks its algorithm by shape); this path only changes the launch count.

`forward(model, seqs, tokens)` appends `tokens[i]` to `seqs[i]` and returns the logits at each sequence's
last new token (or at all of them); `Sequence.length` is the rollback point (set it back to forget steps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import runtime_cpu
from .kernels import linears
from .model import ContextLengthError, apply_rope

_ROWS = 16  # row counts are padded to a multiple of this (see the module docstring)
ATTN_BLOCK = 128  # query rows per attention call: block [r0, r1) only reads the keys it can see
GQA_SCORES = 1 << 28  # padded attention: the most scores (1 GiB in fp32) a pass may hold with enable_gqa


def padded(device) -> bool:
    """Whether passes on `device` take the padded one-call attention (GPUs: launches, not FLOPs, bound them)."""
    return torch.device(device).type == "cuda"


class Sequence:
    """One sequence's keys and values, [1, n_kv_heads, capacity, head_dim] per layer, filled up to `length`."""

    __slots__ = ("k", "v", "length", "capacity", "group", "row", "__dict__")

    def __init__(self, model: nn.Module, capacity: int, device=None, dtype=torch.float32):
        a = model.args
        shape = (1, a.n_kv_heads, capacity, a.head_dim)
        self.k = [torch.empty(shape, device=device, dtype=dtype) for _ in range(a.n_layers)]
        self.v = [torch.empty(shape, device=device, dtype=dtype) for _ in range(a.n_layers)]
        self.length, self.capacity = 0, capacity
        self.group: _Group | None = None  # the shared KV buffer it lives in (padded path), at batch row `row`
        self.row = 0

    @classmethod
    def after(cls, prefix: "Sequence", model: nn.Module, extra: int) -> "Sequence":
        """A sequence that starts with `prefix`'s keys and values (a copy) and has room for `extra` more."""
        n = prefix.length
        s = cls(model, n + extra, prefix.k[0].device, prefix.k[0].dtype)
        for dst, src in ((s.k, prefix.k), (s.v, prefix.v)):
            for d, x in zip(dst, src):
                d[:, :, :n] = x[:, :, :n]
        s.length = n
        return s

    @classmethod
    def batch_after(cls, prefixes: list["Sequence"], extras: list[int]) -> list["Sequence"]:
        """`after(prefixes[i], model, extras[i])` for every i, born in one shared buffer per layer (`_Group`, the
        padded path's): each distinct prefix is copied into all of its rows with one indexed copy per layer, where
        `after` and then grouping cost four small copies per sequence and layer (~15,000 launches for a pass of
        128 sequences on a 30-block model)."""
        first = prefixes[0].k[0]
        caps = [p.length + e for p, e in zip(prefixes, extras)]
        g = _Group(len(prefixes), len(prefixes[0].k), first.shape[1], max(caps), first.shape[3], first.dtype,
                   first.device)
        for p in {id(p): p for p in prefixes}.values():
            rows = torch.tensor([b for b, q in enumerate(prefixes) if q is p], device=first.device)
            for dst, src in ((g.k, p.k), (g.v, p.v)):
                for d, x in zip(dst, src):
                    d[rows, :, : p.length] = x[:, :, : p.length]
        seqs = []
        for b, (p, cap) in enumerate(zip(prefixes, caps)):
            s = cls.__new__(cls)
            s.k, s.v = [d[b : b + 1] for d in g.k], [d[b : b + 1] for d in g.v]
            s.length, s.capacity, s.group, s.row = p.length, cap, g, b
            seqs.append(s)
        return seqs


class _Group:
    """The KV of several sequences in one buffer per layer, [B, n_kv_heads, capacity, head_dim]: each member's
    `k`/`v` become views of its row, so the padded attention reads and writes them all with one op per layer."""

    def __init__(self, B: int, n_layers: int, KV: int, cap: int, hd: int, dtype: torch.dtype, device):
        self.k = [torch.zeros(B, KV, cap, hd, dtype=dtype, device=device) for _ in range(n_layers)]
        self.v = [torch.zeros(B, KV, cap, hd, dtype=dtype, device=device) for _ in range(n_layers)]

    @classmethod
    def of(cls, seqs: list[Sequence]) -> "_Group":
        """A group holding `seqs`, their keys and values moved in (each becomes a view of its row)."""
        like = seqs[0].k[0]
        g = cls(len(seqs), len(seqs[0].k), like.shape[1], max(s.capacity for s in seqs), like.shape[3], like.dtype,
                like.device)
        for b, s in enumerate(seqs):
            for dst, src in ((g.k, s.k), (g.v, s.v)):
                for layer, (d, x) in enumerate(zip(dst, src)):
                    d[b, :, : s.length] = x[0, :, : s.length]
                    src[layer] = d[b : b + 1]
            s.group, s.row = g, b
        return g


def _grouped(seqs: list[Sequence]) -> _Group:
    """The one group holding all of `seqs` (made, moving their KV into it, unless they already share one)."""
    g = seqs[0].group
    if g is None or any(s.group is not g for s in seqs):
        g = _Group.of(seqs)
    return g


Block = tuple[int, int, Tensor | None, bool]  # query rows [r0, r1), additive mask, causal


def _blocks(T: int, start: int, tree: Tensor | None, dtype: torch.dtype, device) -> list[Block]:
    """The attention calls of T queries at slots start..start+T-1 over keys [0, start+T): block [r0, r1) reads
    keys [0, start + r1) under its mask. The same in every layer, so built once per pass.
    `tree` [T, T] (bool), when given, says which new tokens each new token sees instead of causal order."""
    if tree is not None:
        bias = torch.zeros(T, start + T, dtype=dtype, device=device)
        bias[:, start:].masked_fill_(~tree, float("-inf"))
        return [(0, T, bias, False)]
    if T == 1:
        return [(0, 1, None, False)]
    if start == 0 and T <= ATTN_BLOCK:
        return [(0, T, None, True)]
    out: list[Block] = []
    for r0 in range(0, T, ATTN_BLOCK):
        r1 = min(T, r0 + ATTN_BLOCK)
        e = start + r1
        rows = torch.arange(start + r0, e, device=device)[:, None]
        bias = torch.zeros(r1 - r0, e, dtype=dtype, device=device)
        out.append((r0, r1, bias.masked_fill_(torch.arange(e, device=device)[None, :] > rows, float("-inf")), False))
    return out


class Attention:
    """Per-sequence attention over packed rows; also writes each sequence's new keys/values."""

    def __init__(self, seqs: list[Sequence], lengths: list[int], n_heads: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device, trees: list[Tensor] | None = None):
        self.seqs, self.lengths = seqs, lengths
        self.trees = trees or [None] * len(seqs)
        self.H, self.KV, self.hd = n_heads, n_kv_heads, head_dim
        # int8 attention on VNNI CPUs (runtime_cpu.int8_attention: the default, POCKETGUARD_ATTENTION=fp32 turns it off)
        # for the head sizes its kernel takes, causal or under a tree mask; SDPA's calls and masks (`_blocks`) are only
        # built for the SDPA path
        self.int8 = (torch.device(device).type == "cpu" and dtype == torch.float32
                     and seqs[0].k[0].dtype == torch.float32 and runtime_cpu.int8_attention()
                     and runtime_cpu.attention_int8_fits(head_dim))
        self.group = _grouped(seqs) if padded(device) else None
        if self.group is not None:
            self._pad_plan(device)
        self.blocks = [] if self.int8 or self.group else [_blocks(T, s.length, tree, dtype, device)
                                                          for s, T, tree in zip(seqs, lengths, self.trees)]
        self.out: Tensor | None = None  # one output buffer for every layer of the pass (each layer's is used up
        # by its output projection before the next layer runs): no multi-MB allocation and memset per layer

    def _pad_plan(self, device) -> None:
        """Where each packed row goes in the padded [B, Tmax] query grid and the KV buffer, and the mask
        [B, 1, Tmax, Kmax] that lets row r of sequence b see exactly its keys: those before the pass, then its
        new ones causally (or under the tree). Built once per pass, used by every layer."""
        starts = torch.tensor([s.length for s in self.seqs], device=device)
        T = torch.tensor(self.lengths, device=device)
        self.tmax, self.kmax = max(self.lengths), int((starts + T).max())
        b = torch.repeat_interleave(torch.arange(len(self.seqs), device=device), T)
        self.b, self.r = b, torch.arange(len(b), device=device) - torch.repeat_interleave(T.cumsum(0) - T, T)
        self.rows = torch.tensor([s.row for s in self.seqs], device=device)
        self.slot_row, self.slot = self.rows[b], starts[b] + self.r  # each packed row's place in the group buffer
        rr = torch.arange(self.tmax, device=device)[None, :, None]
        rel = torch.arange(self.kmax, device=device)[None, None, :] - starts[:, None, None]  # key - first new slot
        if self.trees[0] is None:
            new = (rel >= 0) & (rel <= rr)
        else:  # one tree for every sequence (forward checks); rows past it only see the old keys
            tree, n = self.trees[0], self.trees[0].shape[0]
            new = (rel >= 0) & (rel < n) & (rr < n) & tree[rr.clamp(max=n - 1), rel.clamp(0, n - 1)]
        pad_row = rr >= T[:, None, None]  # grid rows past a sequence's tokens: see key 0 only (no NaN rows)
        self.mask = (((rel < 0) | new) & ~pad_row | pad_row & (rel == -starts[:, None, None])).unsqueeze(1)

    def _padded(self, layer: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """All sequences in one SDPA call: write the new keys/values into the group buffer, attend over the
        padded grid, scatter the rows back."""
        g, H, KV, hd, N = self.group, self.H, self.KV, self.hd, len(self.b)
        assert g is not None
        kc, vc = g.k[layer], g.v[layer]
        kc[self.slot_row, :, self.slot] = k[:N].view(N, KV, hd).to(kc.dtype)
        vc[self.slot_row, :, self.slot] = v[:N].view(N, KV, hd).to(vc.dtype)
        B = len(self.seqs)
        qp = q.new_zeros(B, self.tmax, H, hd)
        qp[self.b, self.r] = q[:N].view(N, H, hd)
        kp, vp = (x[self.rows, :, : self.kmax].to(q.dtype) for x in (kc, vc))
        # enable_gqa was the faster on the H200 (docs/benchmarks.md), but with a mask it may take the math kernel,
        # which holds [B, H, Tmax, Kmax] scores; past GQA_SCORES of them the KV heads are repeated instead, so the
        # memory-efficient kernel keeps a long window's pass in bounds on a smaller GPU
        gqa = KV != H and B * H * self.tmax * self.kmax <= GQA_SCORES
        if KV != H and not gqa:
            kp, vp = kp.repeat_interleave(H // KV, dim=1), vp.repeat_interleave(H // KV, dim=1)
        y = F.scaled_dot_product_attention(qp.transpose(1, 2), kp, vp, attn_mask=self.mask, enable_gqa=gqa)
        out = self._out(q)
        out[:N] = y.transpose(1, 2)[self.b, self.r].reshape(N, H * hd)
        return out

    def _out(self, q: Tensor) -> Tensor:
        if self.out is None or self.out.shape[0] != q.shape[0]:
            self.out = torch.zeros(q.shape[0], self.H * self.hd, dtype=q.dtype, device=q.device)  # padding rows stay zero
        return self.out

    def __call__(self, layer: int, q: Tensor, k: Tensor, v: Tensor, last: Tensor | None = None) -> Tensor:
        """q [N, H*hd], k/v [N, KV*hd] (rope applied; N may include padding rows) -> [N, H*hd]. With `last` (each
        sequence's last row, `forward`'s final layer) every key and value is still written, but only those rows
        attend: -> [len(seqs) padded to _ROWS, H*hd]."""
        if self.group is not None:
            out = self._padded(layer, q, k, v)
            return out if last is None else _pad_rows(out[last])
        H, KV, hd = self.H, self.KV, self.hd
        gqa = KV != H
        out = self._out(q) if last is None else q.new_zeros(_row_count(len(last)), H * hd)
        o = 0
        for i, (s, T) in enumerate(zip(self.seqs, self.lengths)):
            s0 = s.length
            kc, vc = s.k[layer], s.v[layer]
            kc[0, :, s0 : s0 + T] = k[o : o + T].view(T, KV, hd).transpose(0, 1).to(kc.dtype)
            vc[0, :, s0 : s0 + T] = v[o : o + T].view(T, KV, hd).transpose(0, 1).to(vc.dtype)
            if last is not None:  # the sequence's last query: alone in int8 (each query row is computed on its
                # own), with the rest of its block in SDPA (whose floats depend on the call's shape)
                if self.int8 and self.trees[i] is None:
                    runtime_cpu.attention_int8(q[o + T - 1 : o + T], kc[0], vc[0], s0 + T - 1, H, None, out=out[i : i + 1])
                elif self.int8:  # a tree's last token sees its own branch only, which a query alone at slot
                    # s0 + T - 1 cannot say (it would see every earlier new key): the tree's rows, the last one kept
                    out[i] = runtime_cpu.attention_int8(q[o : o + T], kc[0], vc[0], s0, H, self.trees[i])[-1]
                else:
                    r0, r1, mask, causal = self.blocks[i][-1]
                    qi = q[o + r0 : o + r1].view(r1 - r0, H, hd).transpose(0, 1).unsqueeze(0)
                    y = F.scaled_dot_product_attention(qi, kc[:, :, : s0 + r1].to(q.dtype), vc[:, :, : s0 + r1].to(q.dtype),
                                                       attn_mask=mask, is_causal=causal, enable_gqa=gqa)
                    out[i] = y[0, :, -1].reshape(H * hd)
                o += T
                continue
            if self.int8:
                runtime_cpu.attention_int8(q[o : o + T], kc[0], vc[0], s0, H, self.trees[i], out=out[o : o + T])
                o += T
                continue
            qi = q[o : o + T].view(T, H, hd).transpose(0, 1).unsqueeze(0)
            for r0, r1, mask, causal in self.blocks[i]:
                e = s0 + r1
                y = F.scaled_dot_product_attention(qi[:, :, r0:r1], kc[:, :, :e].to(q.dtype), vc[:, :, :e].to(q.dtype),
                                                   attn_mask=mask, is_causal=causal, enable_gqa=gqa)
                out[o + r0 : o + r1] = y[0].transpose(0, 1).reshape(r1 - r0, H * hd)
            o += T
        return out


def _block(block: nn.Module, x: Tensor, cos: Tensor, sin: Tensor, attend: Attention, layer: int,
           last: Tensor | None = None) -> Tensor:
    """`model.TransformerBlock`'s computation on packed rows x [N, D] (cos/sin [N, hd]). With `last` it writes
    every row's keys and values but returns only the rows `last` (padded to _ROWS): the final layer of a pass
    whose logits are read at each sequence's last token, where the other rows' attention and MLP feed nothing
    (as llama.cpp skips them). Every step is per row, so those rows come out as in the full computation."""
    packed = getattr(block, "packed", None)
    if packed is not None:  # runtime_cpu.FastBlock
        return packed(x, cos, sin, attend, layer, last)
    a, N = block.attention, x.shape[0]
    q, k, v = linears(block.attention_norm(x), a.wq, a.wk, a.wv)
    c, s = cos.unsqueeze(1), sin.unsqueeze(1)
    q = apply_rope(q.view(N, a.n_heads, a.head_dim), c, s).reshape(N, -1)
    k = apply_rope(k.view(N, a.n_kv_heads, a.head_dim), c, s).reshape(N, -1)
    h = (x if last is None else _pad_rows(x[last])) + a.wo(attend(layer, q, k, v, last))
    return h + block.feed_forward(block.ffn_norm(h))


def _row_count(n: int) -> int:
    """n rows padded to a multiple of _ROWS."""
    return n + (-n) % _ROWS


def _pad_rows(x: Tensor) -> Tensor:
    n = _row_count(x.shape[0]) - x.shape[0]
    return torch.cat([x, x.new_zeros(n, *x.shape[1:])]) if n else x


def _tree(parents: list[int], start: int, device) -> tuple[Tensor, Tensor]:
    """(positions [T], sees [T, T]) of new tokens forming a tree: parents[j] < j is token j's parent among
    the new tokens, -1 the sequence's last token. A token sees its ancestors and itself, at depth positions."""
    T = len(parents)
    sees = torch.zeros(T, T, dtype=torch.bool)
    pos = []
    for j, p in enumerate(parents):
        if not -1 <= p < j:
            raise ValueError(f"token {j}'s parent {p} is not an earlier token")
        if p >= 0:
            sees[j] = sees[p]
        sees[j, j] = True
        pos.append(start if p < 0 else pos[p] + 1)
    return torch.tensor(pos, device=device), sees.to(device)


@torch.inference_mode()
def forward(model: nn.Module, seqs: list[Sequence], tokens: list[list[int]], all_logits: bool = False,
            parents: list[int] | None = None):
    """Append `tokens[i]` to `seqs[i]` for every i in one pass; logits [len(seqs), n_out] at each sequence's
    last new token, or with `all_logits` a list of [len(tokens[i]), n_out]. Every `tokens[i]` is non-empty.

    `parents` (one list for every sequence, see `_tree`) makes the new tokens a tree instead of a chain:
    several short continuations of each sequence scored in one pass (the guard's category scores)."""
    lengths = [len(t) for t in tokens]
    if not seqs or min(lengths) < 1:
        raise ValueError("every sequence needs at least one new token")
    for s, T in zip(seqs, lengths):
        if s.length + T > s.capacity:
            raise ContextLengthError(f"{s.length + T} tokens exceed the sequence's room of {s.capacity}")
        if s.length + T > model.args.max_seq_len:  # (a tree's positions are no further than its slots)
            raise ContextLengthError(f"{s.length + T} tokens exceed the model's context of {model.args.max_seq_len}")
    dev = model.rope_cos.device
    N = sum(lengths)
    ids = _pad_rows(torch.tensor([t for ts in tokens for t in ts], dtype=torch.long, device=dev))
    trees = [_tree(parents, s.length, dev) for s in seqs] if parents is not None else None
    if trees is not None and set(lengths) != {len(parents)}:
        raise ValueError("a tree pass gives every sequence as many tokens as `parents` has")
    pos = _pad_rows(torch.cat([t[0] for t in trees] if trees is not None else
                              [torch.arange(s.length, s.length + T, device=dev) for s, T in zip(seqs, lengths)]))
    h = model.embed(ids.unsqueeze(0))[0]
    cos, sin = model.rope_cos[pos].to(h.dtype), model.rope_sin[pos].to(h.dtype)
    a = model.args
    attend = Attention(seqs, lengths, a.n_heads, a.n_kv_heads, a.head_dim, h.dtype, dev,
                       [t[1] for t in trees] if trees else None)
    last = None if all_logits or N == len(seqs) else torch.tensor(lengths, device=dev).cumsum(0) - 1
    for i, layer in enumerate(model.layers):
        h = _block(layer, h, cos, sin, attend, i, last if i == len(model.layers) - 1 else None)
    for s, T in zip(seqs, lengths):
        s.length += T
    if all_logits:
        logits = model.output(model.norm(h))[:N].float()
        return list(logits.split(lengths))
    return model.output(model.norm(h))[: len(seqs)].float()  # (one row per sequence: its last, or its only one)
