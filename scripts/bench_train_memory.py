"""Peak memory of one CPU training pass, with and without activation checkpointing and glibc's fixed mmap threshold.

Each configuration runs in a fresh process (peak RSS is per process): forward and backward of MODEL (default: the
shipped guard, int4 codes dequantized on the fly) with rank-16 LoRA adapters on BATCH x TOKENS random tokens, fp32.

    python scripts/bench_train_memory.py --batch 4 --tokens 512

`activation_checkpointing` is `TrainConfig.activation_checkpointing` (recompute each block in backward);
`MALLOC_MMAP_THRESHOLD_=65536` keeps glibc from raising its mmap threshold, so freed activations leave the process
instead of staying resident (docs/compress.md, *Activation checkpointing*).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from rich.console import Console
from rich.table import Table

ENV = "MALLOC_MMAP_THRESHOLD_"


def one_pass(model_dir: str, batch: int, tokens: int, recompute: bool) -> dict:
    """In this process: the pass, its peak RSS and its time."""
    import resource
    import time

    import torch

    from pocketguard import checkpoint
    from pocketguard.compress.lora import add_lora

    model = add_lora(checkpoint.load(model_dir, device="cpu").model, rank=16, alpha=32.0).train()
    model.activation_checkpointing = recompute
    torch.manual_seed(0)
    x = torch.randint(0, 1000, (batch, tokens))
    t = time.perf_counter()
    model(x, return_hidden=True)[:, -1].sum().backward()
    return {"s": time.perf_counter() - t, "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6}


def main(argv: list[str] | None = None) -> list[dict]:
    from pocketguard.guard import DEFAULT_MODEL_DIR

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL_DIR))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--one", choices=("0", "1"), help=argparse.SUPPRESS)  # a child's own pass
    a = ap.parse_args(argv)
    if a.one is not None:
        print(json.dumps(one_pass(a.model, a.batch, a.tokens, a.one == "1")))
        return []
    rows = []
    for mmap in (False, True):
        for recompute in (False, True):
            env = {k: v for k, v in os.environ.items() if k != ENV} | ({ENV: "65536"} if mmap else {})
            cmd = [sys.executable, __file__, "--model", a.model, "--batch", str(a.batch), "--tokens", str(a.tokens),
                   "--one", "1" if recompute else "0"]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
            rows.append({"mmap_threshold": mmap, "activation_checkpointing": recompute, **json.loads(out.splitlines()[-1])})
    table = Table(title=f"one forward + backward, {a.batch} x {a.tokens} tokens, rank-16 LoRA, fp32 CPU")
    for col in (f"{ENV}=65536", "activation_checkpointing", "peak RSS", "time"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["mmap_threshold"]), str(r["activation_checkpointing"]), f"{r['peak_gb']:.2f} GB", f"{r['s']:.1f} s")
    Console().print(table)
    return rows


if __name__ == "__main__":
    main()
