"""`pocketguard convert`: a llama.cpp `.gguf`, or a Hugging Face or Meta checkpoint folder -> a Hugging Face folder
(a compressed artifact is refused: `pocketguard export --format hf` writes that one).

    pocketguard convert SmolLM2-135M-Instruct.Q4_1.gguf runs/smollm2-hf --add-guard-tokens

The GGUF's weights are dequantized to float and its tokenizer metadata becomes tokenizer.json. A base model
whose vocabulary lacks the guard prompt's Llama 3 control tokens needs `--add-guard-tokens`
(`gguf_checkpoint.add_guard_tokens`: new special tokens, mean-initialised embedding rows) before a guard can
be trained from it; the output then loads with `checkpoint.load` like any other checkpoint.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

DTYPES = ("f32", "bf16")


def add_arguments(p) -> None:
    p.add_argument("src", type=Path, help="a .gguf file, or a Hugging Face or Meta checkpoint folder (for a compressed "
                   "artifact use `pocketguard export --format hf`)")
    p.add_argument("dst", type=Path, help="output folder (Hugging Face layout: config.json, model.safetensors, tokenizer.json)")
    p.add_argument("--add-guard-tokens", action="store_true",
                   help="add the guard prompt's Llama 3 control tokens the vocabulary lacks (for training a guard)")
    p.add_argument("--dtype", choices=DTYPES, default="f32", help="weight dtype of the output (default f32)")


def convert(src: str | Path, dst: str | Path, add_tokens: bool = False, dtype: str = "f32") -> Path:
    """Load `src`, optionally add the guard tokens, and write it with `checkpoint.save_hf`."""
    import torch

    from .checkpoint import CheckpointError, load, save_hf
    from .compress.artifact import is_artifact
    from .gguf_checkpoint import add_guard_tokens, load_gguf
    from .loaded import GUARD_SETTINGS
    from .tokenizer import REQUIRED_SPECIALS

    if dtype not in DTYPES:
        raise CheckpointError(f"--dtype must be one of {DTYPES}, got {dtype!r}")
    torch_dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
    src = Path(src)
    if is_artifact(src):
        raise CheckpointError(f"{src} is a compressed artifact: `pocketguard export --model {src} --format hf` "
                              "writes it in the Hugging Face layout")
    if src.suffix.lower() == ".gguf":
        loaded = load_gguf(src, dtype=torch_dtype, require_guard_tokens=False)
    else:
        loaded = load(src, dtype=torch_dtype)
    if add_tokens:
        loaded = add_guard_tokens(loaded)
    missing = [s for s in REQUIRED_SPECIALS if s not in loaded.tokenizer.specials]
    if missing:
        raise CheckpointError(f"{src}: the vocabulary lacks the guard prompt's control tokens {missing}; "
                              "run convert with --add-guard-tokens")
    settings = {k: v for k, v in loaded.meta.items() if k in GUARD_SETTINGS}
    return save_hf(loaded.model, loaded.tokenizer, dst, guard_meta=settings or None)


def run(args) -> int:
    from .checkpoint import CheckpointError

    t0 = time.perf_counter()
    try:
        out = convert(args.src, args.dst, add_tokens=args.add_guard_tokens, dtype=args.dtype)
    except (CheckpointError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out} ({time.perf_counter() - t0:.1f} s)")
    return 0
