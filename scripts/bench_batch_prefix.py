"""A pass's KV setup on the GPU path: sequences born in the shared buffer vs copied into it one by one.

    python scripts/bench_batch_prefix.py                      # CUDA when present (the path labelling takes)
    python scripts/bench_batch_prefix.py --rows 2048 --tokens 300

`moderate_batch` over synthetic conversations with a SmolLM2-135M-shaped model (random weights: the speed of a
pass does not depend on them) in two ways in the same run: `packed.Sequence.batch_after` (one indexed copy per
layer and policy prefix) and the per-sequence copies it replaced (`Sequence.after` for each, then the group
gathers them), emulated by swapping `batch_after` for them. Prints rows/s and the ratio, and checks the verdicts agree.
On a CPU the padded path is forced (it is the GPU's), so the numbers there only show the op count's share.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from unittest import mock

import torch
from rich.console import Console
from rich.table import Table

from pocketguard import packed
from pocketguard.guard import DEFAULT_MODEL_DIR, Guard
from pocketguard.model import ModelArgs, Transformer
from pocketguard.tokenizer import Tokenizer


def per_sequence(model):
    """What a pass did before `batch_after`: a private copy of its prefix per sequence (grouped later)."""
    return lambda prefixes, extras: [packed.Sequence.after(p, model, e) for p, e in zip(prefixes, extras)]


def conversations(tok: Tokenizer, n: int, tokens: int, seed: int = 0) -> list:
    words = ("the a to of and in is it you that he was for on are with as I his they be at one have this from or had by "
             "word but what some we can out other were all there when up use your how said an each she which do their "
             "time if will way about many then them write would like so these").split()
    rng = random.Random(seed)
    text = lambda k: " ".join(rng.choice(words) for _ in range(k))  # noqa: E731
    out = []
    for i in range(n):
        k = max(4, int(rng.uniform(0.3, 1.7) * tokens))
        out.append(text(k) if i % 2 else [{"role": "user", "content": text(8)}, {"role": "assistant", "content": text(k)}])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1024)
    ap.add_argument("--tokens", type=int, default=300, help="mean words per judged turn")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    a = ap.parse_args()
    tok = Tokenizer.load(DEFAULT_MODEL_DIR)
    args = ModelArgs(dim=576, n_layers=30, n_heads=9, n_kv_heads=3, vocab_size=tok.vocab_size, ffn_dims=1536,
                     max_seq_len=8192)
    if a.device == "cpu":  # a small width keeps the CPU's run short: the copies, not the matmuls, are compared
        args = ModelArgs(**{**args.to_dict(), "dim": 192, "n_heads": 3, "n_kv_heads": 1, "ffn_dims": 256})
    model = Transformer(args).init_weights(std=0.02, seed=0).to(a.device)
    convs = conversations(tok, a.rows, a.tokens)
    force = mock.patch.object(packed, "padded", lambda d: True) if a.device == "cpu" else contextlib.nullcontext()
    best: dict[str, float] = {}
    verdicts = {}
    with force, torch.inference_mode():
        for _ in range(a.repeats):
            for name, swap in (("batch_after (shared buffer)", None), ("per-sequence copies (before)", per_sequence(model))):
                ctx = mock.patch.object(packed.Sequence, "batch_after", swap) if swap else contextlib.nullcontext()
                with ctx:
                    guard = Guard(model, tok)
                    guard.moderate_batch(convs[:64], batch_size=128)  # warm-up: prefixes cached, kernels loaded
                    if a.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    t = time.perf_counter()
                    vs = guard.moderate_batch(convs, batch_size=128)
                    if a.device.startswith("cuda"):
                        torch.cuda.synchronize()
                    best[name] = min(best.get(name, float("inf")), time.perf_counter() - t)
                    verdicts[name] = [(v.status, v.categories) for v in vs]
    names = list(best)
    table = Table(title=f"{a.rows} conversations, ~{a.tokens} words each, {a.device}"
                        f"{' (padded path forced)' if a.device == 'cpu' else ''}, best of {a.repeats}")
    for col in ("KV setup", "wall s", "rows/s", "vs per-sequence"):
        table.add_column(col, justify="right" if col != "KV setup" else "left")
    for n in names:
        table.add_row(n, f"{best[n]:.2f}", f"{a.rows / best[n]:,.0f}", f"{best[names[1]] / best[n]:.2f}x")
    Console().print(table)
    same = verdicts[names[0]] == verdicts[names[1]]
    print(f"verdicts agree: {same}")
    if not same:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
