"""Exports of a pocketguard guard for other runtimes, and backends that run them back for parity checks.

| format | module | entry point | run back with |
|---|---|---|---|
| ExecuTorch `.pte` (XNNPACK, 8da4w) | `executorch.py` | `export_executorch(model, path, max_len)` | `ExecuTorchBackend(path)` |
| GGUF (llama.cpp: f32/f16/q8_0/q4_0) | `gguf.py` | `export_gguf(model, tokenizer, path, qtype)` | `LlamaCppBackend(path)` |
| Hugging Face safetensors | `hf.py` | `export_hf(model, tokenizer, directory, policy)` | transformers |

`backend.judge(guard, conversation, backend)` runs pocketguard's constrained decoding over any backend's
logits, so "same verdicts" is checked with one decoding rule. CLI: `pocketguard export` (command.py).
Submodules import their heavy dependencies (gguf, executorch, transformers) only when used.

Each exporter reads the model through `standard_blocks`, so `checkpoint.load`'s model and `Guard.load(path).model`
(runtime_cpu's FastBlocks on a CPU with a fast kernel) export the same.
"""

from __future__ import annotations

import copy
import importlib

_LAZY = {
    "export_executorch": "executorch",
    "ExecuTorchBackend": "executorch",
    "export_gguf": "gguf",
    "LlamaCppBackend": "gguf",
    "answer_grammar_gbnf": "gguf",
    "export_hf": "hf",
    "judge": "backend",
    "TorchBackend": "backend",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def standard_blocks(model):
    """`model`, or where it runs on runtime_cpu's FastBlocks (`Guard.load` of an artifact: int4 weights packed into
    tiles for the CPU kernels, no `attention` / `attention_norm` modules), a shallow copy whose layers are the
    `model.TransformerBlock`s they came from, with the same codes and scales (`FastBlock.standard_block`). Asked by
    name: runtime_cpu sits above export (docs/design.md)."""
    if not any(hasattr(b, "standard_block") for b in model.layers):
        return model
    from torch import nn

    out = copy.copy(model)
    out._modules = dict(model._modules)  # (else shared: setting out.layers would replace model's)
    out.layers = nn.ModuleList(b.standard_block() if hasattr(b, "standard_block") else b for b in model.layers)
    return out
