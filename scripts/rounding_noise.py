"""How far p_unsafe moves when only the arithmetic changes: the noise floor of an int8-activation guard.

An 8da4w guard rounds every activation to int8 per token, so a last-bit difference anywhere (another kernel's
summation order, another attention) flips some roundings, and the flips add up over the blocks. This measures it on
conversations of your own, two ways, on the CPU:

* the two CPU paths of one artifact: `runtime_cpu`'s packed kernels (`Guard.load`) against the kernel modules
  (`Guard.from_loaded(checkpoint.load(...))`), the same codes and scales;
* the kernel modules again, the input embeddings multiplied by (1 + NOISE · N(0, 1)), TRIALS times: a perturbation
  far below any model's meaning, so what moves is rounding alone.

    python scripts/rounding_noise.py --probes training/probes.jsonl --probes training/probes-blind4.jsonl

Prints, per comparison, the mean and largest |Δ p_unsafe| and the verdicts that flip at the guard's threshold.
A verdict whose p_unsafe sits within the largest Δ of the threshold is decided by rounding as much as by the model.
"""

from __future__ import annotations

import argparse
import json

import torch
from rich.console import Console
from rich.table import Table

from pocketguard import checkpoint
from pocketguard.guard import DEFAULT_MODEL_DIR, Guard


def _p(guard: Guard, convs: list) -> list[float]:
    return [v.p_unsafe for v in guard.moderate_batch(convs)]


def main(argv: list[str] | None = None) -> list[tuple[str, float, float, int]]:
    """Print the table; return its rows (comparison, mean |Δp|, max |Δp|, verdicts flipped)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=str(DEFAULT_MODEL_DIR), help="an int4 artifact (default: the shipped guard)")
    ap.add_argument("--probes", action="append", required=True, help="JSONL with a `messages` list per line (repeatable)")
    ap.add_argument("--noise", type=float, default=1e-6, help="relative size of the embedding perturbation")
    ap.add_argument("--trials", type=int, default=3)
    a = ap.parse_args(argv)
    convs = [json.loads(line)["messages"] for f in a.probes for line in open(f, encoding="utf-8") if line.strip()]
    fast = Guard.load(a.model)
    ref = Guard.from_loaded(checkpoint.load(a.model, device="cpu"))
    kernel = (fast.meta.get("runtime_cpu") or {}).get("kernel", "portable")
    if kernel == "portable":  # (not an artifact, or no int8 kernel on this CPU)
        Console().print("[yellow]runtime_cpu runs the portable path here: the first row compares it with itself")
    base = _p(ref, convs)
    rows = [(f"runtime_cpu ({kernel}) vs kernel modules", _p(fast, convs))]
    torch.manual_seed(0)
    emb = ref.model.tok_embeddings
    hook = emb.register_forward_hook(lambda m, i, o: o * (1 + a.noise * torch.randn_like(o)))
    try:
        rows += [(f"embeddings × (1 + {a.noise:g}·N), #{t + 1}", _p(ref, convs)) for t in range(a.trials)]
    finally:
        hook.remove()
    t = ref.threshold
    table = Table(title=f"p_unsafe against the kernel modules, {len(convs)} conversations, threshold {t}")
    for col in ("comparison", "mean |Δp|", "max |Δp|", "verdicts flipped"):
        table.add_column(col)
    out = []
    for name, ps in rows:
        d = [abs(x - y) for x, y in zip(ps, base)]
        out.append((name, sum(d) / len(d), max(d), sum((x >= t) != (y >= t) for x, y in zip(ps, base))))
        table.add_row(name, f"{out[-1][1]:.4f}", f"{out[-1][2]:.3f}", str(out[-1][3]))
    Console().print(table)
    return out


if __name__ == "__main__":
    main()
