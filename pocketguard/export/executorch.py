"""ExecuTorch export: a `.pte` program lowered to the XNNPACK backend with 8-bit dynamic activations and
4-bit group-wise weights (8da4w) — the format Llama Guard 3-1B-INT4 shipped to phones — and a backend that
runs it through ExecuTorch's Python runtime for verdict parity with pocketguard.

The exported program has one method, `forward(tokens[1, T], input_pos[1]) -> logits[1, n_out]`:
T is dynamic (1..max_len), the tokens go to cache slots `input_pos .. input_pos+T-1` of a static KV cache
(mutable buffers; stale slots beyond the prompt are masked), and the logits are those of the last token
(the head may be pruned: `n_out` rows, `pocketguard.output_token_ids` in the metadata file beside it).
So a prompt is one call at `input_pos = 0` and each answer token one call at the next position.

Weights:
* a pocketguard artifact (int4 group-32 linears with int8 dynamic activations, an int8 per-channel head,
  an int8/int4 per-row embedding) is exported with **its own codes and scales** — torchao
  `IntxUnpackedToInt8Tensor` built from them, not re-quantized — so XNNPACK runs the same 4-bit weights;
* a float model is quantized on the way (torchao `Int8DynamicActivationIntxWeightConfig`, int4, group 32,
  symmetric — the torchao numerics pocketguard's QAT uses), or exported in fp32 with `quantize=None`.
XNNPACK picks up the dynamic-quant linears (`qd8-f32-qb4w` / `qc8w` kernels); the embedding gather and the
attention glue run on ExecuTorch's portable/optimized CPU kernels.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model import Transformer, rotate_half
from . import standard_blocks


class ExportError(ValueError):
    pass


def _require_executorch():
    import importlib.util

    if importlib.util.find_spec("executorch") is None:
        raise ExportError("ExecuTorch export needs `pip install executorch` (see docs/export.md)")


# ------------------------------------------------------------------------------------------ modules


def _intx_weight(codes: Tensor, scales: Tensor, bits: int, group: int, act: bool) -> nn.Parameter:
    from torchao.quantization.quantize_.workflows.intx.intx_unpacked_to_int8_tensor import (
        IntxUnpackedToInt8Tensor,
        IntxUnpackedToInt8TensorActivationQuantization,
    )

    n, k = codes.shape
    scales = scales.float().reshape(n, k // group).contiguous()
    t = IntxUnpackedToInt8Tensor(
        qdata=codes.to(torch.int8).contiguous(),
        scale=scales,
        zero_point=torch.zeros_like(scales, dtype=torch.int8),
        target_dtype=getattr(torch, f"int{bits}"),
        block_size=(1, group),
        dtype=torch.float32,
        activation_quantization=IntxUnpackedToInt8TensorActivationQuantization.INT8_ASYM_PER_TOKEN if act else None,
    )
    return nn.Parameter(t, requires_grad=False)


def _linear(m: nn.Module) -> nn.Linear:
    """An nn.Linear for export: float weights, or a torchao quantized tensor with the module's own codes."""
    from .. import kernels as K

    if K.is_quantized(m):
        lin = nn.Linear(m.in_features, m.out_features, bias=False, device="meta")
        g = m.group_size or m.in_features
        lin.weight = _intx_weight(m.int_weight(), m.scales, m.weight_bits, g, bool(m.act_bits))
        return lin
    lin = nn.Linear(m.in_features, m.out_features, bias=False, device="meta")
    lin.weight = nn.Parameter(m.weight.detach().float().clone(), requires_grad=False)
    return lin


class _Embedding(nn.Module):
    """Row gather with in-graph dequantization (int8 / int4 per-row tables stay small in the .pte)."""

    def __init__(self, m: nn.Module, id_map: Tensor | None):
        super().__init__()
        from .. import kernels as K

        self.bits = getattr(m, "weight_bits", 32) if K.is_quantized(m) else 32
        if self.bits == 32:
            self.register_buffer("table", m.weight.detach().float().clone())
        else:
            self.register_buffer("table", m.qweight.detach().clone())
            self.register_buffer("scales", m.scales.detach().float().reshape(-1, 1).clone())
        self.register_buffer("id_map", id_map.clone() if id_map is not None else None)

    def forward(self, ids: Tensor) -> Tensor:
        if self.id_map is not None:
            ids = self.id_map[ids]
        rows = self.table[ids]
        if self.bits == 32:
            return rows
        if self.bits == 4:
            lo = torch.bitwise_and(rows, 15).to(torch.int16)
            hi = torch.bitwise_right_shift(rows, 4).to(torch.int16)
            rows = torch.stack((lo, hi), dim=-1).reshape(*rows.shape[:-1], rows.shape[-1] * 2) - 8
        return rows.float() * self.scales[ids]


class _RMSNorm(nn.Module):
    def __init__(self, m):
        super().__init__()
        self.eps = m.eps
        self.weight = nn.Parameter(m.weight.detach().float().clone(), requires_grad=False)

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


class _Block(nn.Module):
    def __init__(self, layer, args, max_len: int):
        super().__init__()
        a = layer.attention
        self.n_heads, self.n_kv, self.hd = a.n_heads, a.n_kv_heads, a.head_dim
        self.wq, self.wk, self.wv, self.wo = (_linear(getattr(a, n)) for n in ("wq", "wk", "wv", "wo"))
        f = layer.feed_forward
        self.w1, self.w2, self.w3 = (_linear(getattr(f, n)) for n in ("w1", "w2", "w3"))
        self.attention_norm, self.ffn_norm = _RMSNorm(layer.attention_norm), _RMSNorm(layer.ffn_norm)
        shape = (1, self.n_kv, max_len, self.hd)
        self.register_buffer("k_cache", torch.zeros(shape), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape), persistent=False)

    def forward(self, x, cos, sin, mask, start: int):
        B, T, _ = x.shape
        KV, rep, hd = self.n_kv, self.n_heads // self.n_kv, self.hd
        h = self.attention_norm(x)
        # queries grouped by KV head, [B, KV, rep, T, hd]: GQA attends against the cache without copying it
        q = self.wq(h).view(B, T, KV, rep, hd).permute(0, 2, 3, 1, 4)
        k = self.wk(h).view(B, T, KV, hd).transpose(1, 2)
        v = self.wv(h).view(B, T, KV, hd).transpose(1, 2)
        q = q * cos[:, :, None] + rotate_half(q) * sin[:, :, None]
        k = k * cos + rotate_half(k) * sin
        idx = torch.arange(T) + start
        self.k_cache.index_copy_(2, idx, k)
        self.v_cache.index_copy_(2, idx, v)
        y = F.scaled_dot_product_attention(q, self.k_cache[:, :, None], self.v_cache[:, :, None], attn_mask=mask)
        x = x + self.wo(y.permute(0, 3, 1, 2, 4).reshape(B, T, -1))
        h = self.ffn_norm(x)
        return x + self.w2(F.silu(self.w1(h)) * self.w3(h))


class ExportableGuardModel(nn.Module):
    """pocketguard's `Transformer` rewritten for torch.export: static KV cache, last-token logits. A `Guard.load`ed
    model's FastBlocks are read as the kernel modules they were packed from (`standard_blocks`)."""

    def __init__(self, model: Transformer, max_len: int):
        super().__init__()
        args = model.args
        if max_len > args.max_seq_len:
            raise ExportError(f"max_len {max_len} exceeds the model's context of {args.max_seq_len}")
        self.max_len = max_len
        self.tok_embeddings = _Embedding(model.tok_embeddings, model.input_id_map)
        self.layers = nn.ModuleList(_Block(layer, args, max_len) for layer in standard_blocks(model).layers)
        self.norm = _RMSNorm(model.norm)
        self.output = _linear(model.output)
        self.register_buffer("rope_cos", model.rope_cos[:max_len].clone(), persistent=False)
        self.register_buffer("rope_sin", model.rope_sin[:max_len].clone(), persistent=False)

    def forward(self, tokens: Tensor, input_pos: Tensor) -> Tensor:
        T = tokens.shape[1]
        start = input_pos[0].item()
        torch._check_is_size(start)
        torch._check(start + T <= self.max_len)
        cos = self.rope_cos.narrow(0, start, T)[None, None]
        sin = self.rope_sin.narrow(0, start, T)[None, None]
        # the causal mask of these T positions over the cache, made here: a [max_len, max_len] buffer would be a
        # constant of the program (16 MB in the .pte at max_len 2048, 256 MB at 8192)
        pos = torch.arange(T) + start
        mask = torch.where(torch.arange(self.max_len)[None, :] <= pos[:, None], 0.0, float("-inf"))
        x = self.tok_embeddings(tokens)
        for layer in self.layers:
            x = layer(x, cos, sin, mask, start)
        x = self.norm(x[:, -1, :])
        return self.output(x)


def _quantize_float_linears(m: nn.Module, group_size: int) -> None:
    """8da4w for linears that are still float (a float source model), with torchao's export-friendly layout."""
    from torchao.quantization import quantize_
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig

    def is_float_linear(mod, fqn):
        return isinstance(mod, nn.Linear) and type(mod.weight) in (nn.Parameter, Tensor) and fqn != "output" \
            and mod.in_features % group_size == 0

    quantize_(m, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(group_size)),
              filter_fn=is_float_linear)


# ------------------------------------------------------------------------------------------- export


def export_executorch(model: Transformer, path: str | Path, max_len: int = 1024, quantize: str | None = "8da4w",
                      group_size: int = 32, backend: str = "xnnpack", tokenizer=None, policy=None,
                      threshold: float | None = None) -> Path:
    """Export to a `.pte`; `quantize="8da4w"` quantizes float linears (kernel modules keep their codes). The policy
    and the guard's `threshold` (when it has one) go into the metadata file beside it."""
    _require_executorch()
    from executorch.exir import EdgeCompileConfig, ExecutorchBackendConfig, to_edge_transform_and_lower
    from executorch.exir.passes import MemoryPlanningPass

    from ..artifact import written_atomically

    if quantize not in (None, "8da4w"):
        raise ExportError(f"quantize must be '8da4w' or None, got {quantize!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok_file = _tokenizer_file(tokenizer, path.parent) if tokenizer is not None else None  # before the slow part
    with torch.no_grad():
        m = ExportableGuardModel(model.eval(), max_len).eval()
        if quantize == "8da4w":
            _quantize_float_linears(m, group_size)
        T = torch.export.Dim("T", min=1, max=max_len)
        example = (torch.zeros(1, 4, dtype=torch.long), torch.tensor([0], dtype=torch.long))
        ep = torch.export.export(m, example, dynamic_shapes=({1: T}, None), strict=False)
    partitioners = []
    if backend == "xnnpack":
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner

        partitioners.append(XnnpackPartitioner())
    elif backend != "portable":
        raise ExportError(f"backend must be 'xnnpack' or 'portable', got {backend!r}")
    edge = to_edge_transform_and_lower(ep, partitioner=partitioners,
                                       compile_config=EdgeCompileConfig(_check_ir_validity=False))
    prog = edge.to_executorch(ExecutorchBackendConfig(memory_planning_pass=MemoryPlanningPass(alloc_graph_input=False)))
    with written_atomically(path) as tmp, open(tmp, "wb") as f:
        prog.write_to_file(f)
    meta = {"format": "pocketguard-executorch", "max_len": max_len, "backend": backend, "quantize": quantize,
            "group_size": group_size, "vocab_size": model.args.vocab_size,
            "output_token_ids": model.args.output_token_ids, "n_out": model.output.out_features}
    if policy is not None:
        meta["policy_toml"] = policy.to_toml()
    if threshold is not None:
        meta["threshold"] = float(threshold)
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
    if tok_file is not None:
        target, data = tok_file
        if not target.exists():
            target.write_bytes(data)
    return path


def _tokenizer_file(tokenizer, directory: Path) -> tuple[Path, bytes]:
    """The tokenizer file written beside the `.pte` (`tokenizer.json`, or `tokenizer.model` for tiktoken) and its
    bytes. That folder may already hold it (an export into the model's own folder, or a re-export): then it is left
    as it is; a *different* tokenizer there (another model's) is an ExportError, never silently replaced."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        tokenizer.save(tmp)
        (written,) = Path(tmp).iterdir()
        name, data = written.name, written.read_bytes()
    target = directory / name
    if target.exists() and target.read_bytes() != data:
        raise ExportError(f"{target} holds another tokenizer: export the .pte into another folder (its tokenizer "
                          f"is written beside it as {name})")
    return target, data


# ------------------------------------------------------------------------------------------ backend


def set_threads(n: int) -> None:
    try:
        from executorch.extension.pybindings import portable_lib

        portable_lib._unsafe_reset_threadpool(int(n))
    except Exception:  # older wheels: the pool keeps its default size
        pass


class ExecuTorchBackend:
    """A `.pte` from `export_executorch` run by ExecuTorch's Python runtime, as a `LogitsBackend`."""

    def __init__(self, path: str | Path, n_threads: int | None = None):
        _require_executorch()
        from executorch.runtime import Runtime

        path = Path(path)
        meta_path = path.with_suffix(".json")
        self.meta = json.loads(meta_path.read_text(encoding="utf-8")) if meta_path.exists() else {}
        set_threads(n_threads or len(os.sched_getaffinity(0)))
        self.program = Runtime.get().load_program(path)
        self.method = self.program.load_method("forward")
        self.name, self.max_len = "executorch", int(self.meta.get("max_len", 1024))
        out_ids = self.meta.get("output_token_ids")
        self._row = {t: i for i, t in enumerate(out_ids)} if out_ids is not None else None
        self._vocab = int(self.meta.get("vocab_size", 0)) or None
        self.pos = 0

    def rows(self, vocab_ids: Sequence[int]):
        if self._row is not None:
            return [self._row.get(int(t)) for t in vocab_ids]
        return [int(t) if self._vocab is None or 0 <= t < self._vocab else None for t in vocab_ids]

    def _run(self, ids: Sequence[int]) -> Tensor:
        if self.pos + len(ids) > self.max_len:
            raise ExportError(f"{self.pos + len(ids)} tokens exceed the program's max_len {self.max_len}")
        out = self.method.execute([torch.tensor([list(ids)], dtype=torch.long), torch.tensor([self.pos], dtype=torch.long)])
        self.pos += len(ids)
        return out[0][0]

    def prefill(self, ids):
        self.pos = 0
        return self._run(ids)

    def step(self, token_id):
        return self._run([int(token_id)])
