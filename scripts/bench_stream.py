"""Streaming moderation vs re-moderating from scratch at every chunk, on the same model, machine and run.

    python scripts/bench_stream.py                       # shipped default guard
    python scripts/bench_stream.py --model PATH --reply-tokens 500 --chunk-tokens 20

Prints a table of model tokens run, wall time and the ratio; also checks every chunk's verdict matches.
"""

from __future__ import annotations

import argparse
import time

import torch
from rich.console import Console
from rich.table import Table

from pocketguard.bench_workers import _busy_jiffies, contention_note, others_share, own_cpu_s
from pocketguard.guard import Guard


def reply_chunks(guard: Guard, n_tokens: int, chunk_tokens: int) -> list[str]:
    """A benign, realistic-looking reply cut into chunks of about `chunk_tokens` tokens."""
    text = ("To bake a simple loaf, mix 500 g of flour, 10 g of salt, 7 g of yeast and 350 ml of warm water. "
            "Knead for ten minutes, let it rise for an hour, shape it, and bake at 220 degrees for 30 minutes. ") * 40
    ids = guard.tokenizer.encode(text)[:n_tokens]
    return [guard.tokenizer.decode(ids[i : i + chunk_tokens]) for i in range(0, len(ids), chunk_tokens)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="checkpoint (default: the shipped default guard)")
    ap.add_argument("--reply-tokens", type=int, default=500)
    ap.add_argument("--chunk-tokens", type=int, default=20)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    guard = Guard.load(args.model)
    user = [{"role": "user", "content": "How do I bake bread at home?"}]
    chunks = reply_chunks(guard, args.reply_tokens, args.chunk_tokens)
    guard.moderate(user)  # warm the policy-prefix cache and allocator for both methods

    jiffies0, cpu0 = _busy_jiffies(), own_cpu_s()
    t0 = time.perf_counter()
    stream = guard.stream(user)
    streamed = [stream.feed(c) for c in chunks]
    t_stream = time.perf_counter() - t0

    t0 = time.perf_counter()
    so_far, fresh, fresh_tokens = "", [], 0
    for c in chunks:
        so_far += c
        v = guard.moderate(user + [{"role": "assistant", "content": so_far}])
        fresh.append(v)
        fresh_tokens += v.prompt_tokens - v.cached_tokens
    t_fresh = time.perf_counter() - t0
    others = others_share(jiffies0, _busy_jiffies(), own_cpu_s() - cpu0)
    agree = sum(a.status == b.status and a.categories == b.categories for a, b in zip(streamed, fresh))

    table = Table(title=f"{len(chunks)} chunks of ~{args.chunk_tokens} tokens, reply of {args.reply_tokens} tokens ({torch.get_num_threads()} threads)")
    for col in ("method", "model tokens run", "wall s", "ms / chunk", "ratio"):
        table.add_column(col)
    table.add_row("stream (incremental KV)", str(stream.fed_tokens), f"{t_stream:.2f}", f"{1000 * t_stream / len(chunks):.1f}", "1.00")
    table.add_row("re-moderate each chunk (prefix cache on)", str(fresh_tokens), f"{t_fresh:.2f}",
                  f"{1000 * t_fresh / len(chunks):.1f}", ratio_label(t_fresh, t_stream))
    Console().print(table)
    print(f"verdict agreement: {agree}/{len(chunks)} chunks")
    if others is not None:
        print(f"other processes used {others:.0%} of the CPU during the timed runs"
              + contention_note([others], torch.get_num_threads()))


def ratio_label(t_fresh: float, t_stream: float) -> str:
    """Re-moderation's time against streaming's, said the right way round (it used to print "0.48x slower")."""
    r = t_fresh / t_stream
    return f"{r:.2f}x slower" if r >= 1 else f"{1 / r:.2f}x faster"


if __name__ == "__main__":
    main()
