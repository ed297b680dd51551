"""Compression: turn a large guard into a compact one, step by step (Llama Guard 3-1B-INT4 recipe).

| step | module | entry point |
|---|---|---|
| decoder-block pruning | `prune.py` | `prune_blocks(model, keep, calib_batches, method=...)` |
| MLP width pruning | `prune.py` | `prune_mlp(model, width, calib_batches, budget=...)` |
| unembedding / embedding pruning | `prune.py` | `prune_output(model, tokenizer, policy)`, `prune_input(model, ids, fallback_id)` |
| distillation | `distill.py` (loop in `pocketguard/train.py`) | `distill(student, teacher, examples, tokenizer, policy, config)` |
| quantization (QAT, PTQ) | `quantize.py` (+ `calibration.py`, `gptq.py`, `lora.py`, `rotate.py`) | see that module |
| packed artifact | `artifact.py` (writer; the format and reader: `pocketguard/artifact.py`) | `save_artifact(model, tokenizer, policy, dir)` |
| recipe steps | `steps.py` | `STEPS`, `register_step(kind, fn)` |
| the whole recipe | `recipe.py` | `pocketguard compress --recipe recipe.toml`, `run_recipe(path)` |

Submodules are imported on use so that `import pocketguard.compress.quantize` does not pull in the rest.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "prune_blocks": "prune",
    "prune_mlp": "prune",
    "prune_output": "prune",
    "prune_input": "prune",
    "guard_output_token_ids": "prune",
    "distill": "distill",
    "run_recipe": "recipe",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
