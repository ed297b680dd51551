"""`pocketguard bench --throughput`: prompts/s judging many conversations — one by one, batched, and the roofline.

    pocketguard bench --throughput                                  # the shipped guard, the bundled mix
    pocketguard bench --throughput --mix my.jsonl --n 256 --markdown
    pocketguard bench --throughput --shape lg3-1b-int4 --device cuda   # random 1B-shaped guard on a GPU
    pocketguard bench --throughput --policy keep.toml --subset-mode compare   # a subset: own policy, filter, prompt

The mix: `--mix FILE` (JSONL, one conversation a line: `{"messages": [...]}`, or `{"text": "..."}` for a user
prompt) or the bundled generated one: `--n` conversations (half user prompts, half agent replies) whose judged
text lengths follow a seeded log-normal with mean ~200 tokens and a tail to ~2,000 (like the public moderation
set of issue 13: mean 198, max 1,961), so some turns exceed a small guard's context and are windowed.

Each repetition times the whole mix one by one (`guard.moderate`) and then batched (`guard.moderate_batch`),
interleaved, so both see the same machine load; the median of the repetitions is reported with the ratio
within each repetition. The verdicts of the two modes are compared (status, categories, p_unsafe: they must
be identical).

The roofline is computed from the kernel's own rate in the same run: every linear layer of the model is
timed on 256 rows (`kernel GMAC/s`), and a prompt costs the multiply-accumulates of its tokens that are
not in the policy-prefix cache plus its answer steps; roofline prompts/s = rate / (MACs per token x tokens a
prompt must run). Attention, norms and the answer grammar are the overhead the batched path must keep small.

`--policy FILE` judges the mix under that policy, in `--subset-mode` filter or prompt (docs/policy.md, *Subsets of
the default*). `--subset-mode compare` takes a policy that leaves out some of the guard's own categories and measures
three runs on the same conversations, one after the other: the guard's own policy (the reference), the subset
filtered, and the subset prompted; each gets its table, then one table gives each run's prompts/s as a ratio to the
reference.
"""

from __future__ import annotations

import json
import math
import random
import statistics
import sys
import time
from pathlib import Path

TARGET_SPEEDUP, TARGET_ROOFLINE = 2.5, 0.5
COMPARE = "compare"  # --subset-mode: the guard's own policy, then the subset under each of policy.SUBSET_MODES
_WORDS = ("the a of to and in is it you that he was for on are with as his they be at one have this from or had by "
          "word but what some we can out other were all there when up use your how said an each she which do their "
          "time if will way about many then them write would like so these her long make thing see him two has look "
          "more day could go come did number sound no most people my over know water than call first who may down "
          "side been now find bread cake knife gun hack bank kill help please recipe weather doctor vote").split()


def bundled_mix(tokenizer, n: int = 128, seed: int = 0, mean_tokens: int = 200, max_tokens: int = 1961) -> list:
    """`n` conversations with judged-text lengths ~ log-normal (mean ~`mean_tokens`, one at `max_tokens`)."""
    rng = random.Random(seed)
    sigma = 0.9
    mu = math.log(mean_tokens) - sigma ** 2 / 2
    lengths = [min(max_tokens, max(4, int(rng.lognormvariate(mu, sigma)))) for _ in range(n)]
    lengths[rng.randrange(n)] = max_tokens
    convs = []
    for i, k in enumerate(lengths):
        words: list[str] = []
        while len(tokenizer.encode(" ".join(words))) < k:
            words += [rng.choice(_WORDS) for _ in range(max(1, (k - len(tokenizer.encode(" ".join(words)))) // 2))]
        text = " ".join(words)
        if i % 2:
            convs.append([{"role": "user", "content": "Can you help me with this?"}, {"role": "assistant", "content": text}])
        else:
            convs.append(text)
    return convs


def read_mix(path: Path) -> list:
    """The user's mix: one conversation per line, as `pocketguard moderate --jsonl` reads them
    (`conversation.read_jsonl`); a line that is not one is an error naming it (a benchmark of fewer conversations
    than given would mislead)."""
    from .conversation import read_jsonl

    convs = read_jsonl(path)
    if not convs:
        raise ValueError(f"{path} holds no conversations")
    return convs


def _linears(model):
    from torch import nn

    from .kernels import QuantLinear

    kinds = (nn.Linear, QuantLinear)
    try:
        from .runtime_cpu import AmxInt4Linear

        kinds += (AmxInt4Linear,)
    except ImportError:  # pragma: no cover - runtime_cpu only needs torch
        pass
    return [m for m in model.layers.modules() if isinstance(m, kinds)]


def kernel_rate(model, rows: int = 256, repeats: int = 3) -> tuple[float, int]:
    """(multiply-accumulates per second of the model's block linears on `rows` rows, MACs per token)."""
    import torch

    lins = _linears(model)
    dev = model.rope_cos.device
    dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
    xs = [torch.randn(rows, m.in_features, device=dev, dtype=dtype) for m in lins]
    macs = sum(m.in_features * m.out_features for m in lins)
    best = float("inf")
    with torch.inference_mode():
        for _ in range(repeats + 1):
            _sync(dev)
            t = time.perf_counter()
            for m, x in zip(lins, xs):
                m(x)
            _sync(dev)
            best = min(best, time.perf_counter() - t)
    return macs * rows / best, macs


def _sync(dev) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def random_guard(shape: dict, device: str, dtype: str, policy=None, subset_mode: str = "filter"):
    """A random-weight guard of a shape (`bench.SHAPES[name]["args"]`) on `device`, with the shipped guard's
    tokenizer (so no download: throughput does not depend on the vocabulary, the head is pruned to the
    answer tokens). Its own policy is S1-S14, as the shipped guard's; it judges `policy` (default: that one)
    in `subset_mode`."""
    import torch

    from .compress.prune import guard_output_token_ids
    from .guard import DEFAULT_MODEL_DIR, Guard
    from .loaded import policy_dict
    from .model import ModelArgs, Transformer
    from .policy import Policy
    from .tokenizer import Tokenizer

    tok = Tokenizer.load(DEFAULT_MODEL_DIR)
    own = Policy.default()
    spec = {**shape, "vocab_size": tok.vocab_size}
    args = ModelArgs(**spec, output_token_ids=guard_output_token_ids(tok, own))
    with torch.device(device):
        model = Transformer(args)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.fill_(1.0) if name.endswith("norm.weight") else p.normal_(0.0, 0.02)
    model = model.to(getattr(torch, dtype)).eval()
    return Guard(model, tok, policy or own, max_context=2048, meta={"policy": policy_dict(own)}, subset_mode=subset_mode)


def describe(guard) -> str:
    """The policy a guard judges, for a title: its own, or the codes asked for and, for a part of its own, how."""
    if guard.policy == guard.own_policy:
        return f"the guard's own policy ({len(guard.policy)} categories)"
    how = f", subset_mode {guard.subset_mode}" if guard.policy.within(guard.own_policy) else ""
    return f"policy {', '.join(guard.policy.codes)}{how}"


def policy_runs(guard, compare: bool) -> list:
    """The guards to measure: `guard` as loaded, or with `compare` (`--subset-mode compare`; its policy must leave
    out some of its own categories) the guard judging its own policy (the reference), then its policy filtered and
    prompted. These are shallow copies: one model, one prefix cache and grammar cache (keyed by policy)."""
    import copy

    if not compare:
        return [guard]
    if not guard.policy.within(guard.own_policy):
        raise ValueError(f"--subset-mode {COMPARE} needs a policy that leaves out some of the guard's own categories "
                         f"({', '.join(guard.own_policy.codes)}) and changes none; this one lists "
                         f"{', '.join(guard.policy.codes)}")
    runs = []
    for policy, mode in [(guard.own_policy, "filter"), (guard.policy, "filter"), (guard.policy, "prompt")]:
        g = copy.copy(guard)
        g.policy, g.subset_mode = policy, mode
        runs.append(g)
    return runs


def _same(a, b) -> bool:
    return (a.status, a.categories, a.p_unsafe) == (b.status, b.categories, b.p_unsafe)


def measure(guard, convs: list, repeats: int = 3, batch_size: int = 64, log=print) -> dict:
    """Interleaved one-by-one and batched passes over `convs`; rates, ratios, roofline, verdict identity."""
    guard.moderate_batch(convs[:4], batch_size=batch_size)  # warm-up: prefix cache, kernels, allocator
    guard.moderate(convs[0])
    import torch

    from .bench_workers import _busy_jiffies, others_share, own_cpu_s

    jiffies0, cpu0 = _busy_jiffies(), own_cpu_s()
    one_t, bat_t, speedups = [], [], []
    identical = True
    one = bat = None
    for r in range(repeats):
        t = time.perf_counter()
        one = [guard.moderate(c) for c in convs]
        one_t.append(time.perf_counter() - t)
        t = time.perf_counter()
        bat = guard.moderate_batch(convs, batch_size=batch_size)
        bat_t.append(time.perf_counter() - t)
        speedups.append(one_t[-1] / bat_t[-1])
        identical &= all(_same(a, b) for a, b in zip(one, bat))
        log(f"  repetition {r + 1}: one by one {len(convs) / one_t[-1]:.2f} prompts/s, batched "
            f"{len(convs) / bat_t[-1]:.2f} prompts/s ({speedups[-1]:.2f}x)")
    others = others_share(jiffies0, _busy_jiffies(), own_cpu_s() - cpu0)  # during the timed repetitions
    rate, macs = kernel_rate(guard.model)
    run_tokens = sum(v.prompt_tokens - v.cached_tokens + v.answer_tokens for v in one)
    prompt_tokens = sum(v.prompt_tokens for v in one)
    n = len(convs)
    roofline = rate / (macs * run_tokens / n)
    t1, tb = statistics.median(one_t), statistics.median(bat_t)
    return {
        "prompts": n, "prompt_tokens": prompt_tokens, "run_tokens": run_tokens,
        "mean_prompt_tokens": prompt_tokens / n, "max_prompt_tokens": max(v.prompt_tokens for v in one),
        "windowed": sum(bool(v.truncation and v.truncation.get("windows")) for v in one),
        "one_by_one": {"prompts_s": n / t1, "tokens_s": run_tokens / t1, "seconds": one_t},
        "batched": {"prompts_s": n / tb, "tokens_s": run_tokens / tb, "seconds": bat_t},
        "speedup": statistics.median(speedups), "speedups": speedups,
        "kernel_gmac_s": rate / 1e9, "macs_per_token": macs,
        "roofline": {"prompts_s": roofline, "tokens_s": rate / macs},
        "batched_of_roofline": (n / tb) / roofline,
        "identical_verdicts": identical,
        "errors": sum(v.status == "error" for v in bat),
        "batched_status": [v.status for v in bat],
        "others_cpu_share": others, "threads": torch.get_num_threads(),
    }


def render(res: dict, title: str, markdown: bool = False) -> str:
    from .bench_workers import contention_note

    rows = [("one by one (`moderate`)", res["one_by_one"]["prompts_s"], res["one_by_one"]["tokens_s"], "1.00x"),
            ("batched (`moderate_batch`)", res["batched"]["prompts_s"], res["batched"]["tokens_s"], f"{res['speedup']:.2f}x"),
            (f"roofline ({res['kernel_gmac_s']:.1f} GMAC/s x {res['macs_per_token'] / 1e6:.1f}M MAC/token)",
             res["roofline"]["prompts_s"], res["roofline"]["tokens_s"], "")]
    peer = res.get("peer")
    lines = [f"**{title}**" if markdown else title, ""]
    lines += ["| mode | prompts/s | tokens/s | vs one by one |", "|---|---|---|---|"]
    lines += [f"| {m} | {p:,.2f} | {t:,.0f} | {s} |" for m, p, t, s in rows]
    if isinstance(peer, dict):
        lines.append(f"| llama.cpp batched ({peer['gguf']}, same passes) | {peer['prompts_s']:,.2f} | {peer['tokens_s']:,.0f} | "
                     f"{peer['prompts_s'] / res['one_by_one']['prompts_s']:.2f}x |")
    elif peer:
        lines.append(f"| {peer} | — | — | — |")
    mark = lambda ok: "MET" if ok else "MISSED"  # noqa: E731
    lines += ["", f"{'- ' if markdown else ''}mix: {res['prompts']} prompts, mean {res['mean_prompt_tokens']:.0f} prompt tokens "
              f"(max {res['max_prompt_tokens']}), {res['windowed']} windowed; tokens run (not in the prefix cache, "
              f"plus answer steps): {res['run_tokens']:,}"
              + (f"; llama.cpp ran {peer['run_tokens']:,} (the policy prefix once per pass, no cache across passes)"
                 if isinstance(peer, dict) and "run_tokens" in peer else ""),
              f"{'- ' if markdown else ''}[{mark(res['speedup'] >= TARGET_SPEEDUP)}] batched >= {TARGET_SPEEDUP}x one by one: "
              f"{res['speedup']:.2f}x (median of {', '.join(f'{s:.2f}' for s in res['speedups'])}; one by one already runs at "
              f"{res['one_by_one']['prompts_s'] / res['roofline']['prompts_s']:.0%} of the roofline: batched at 100 % of it would be "
              f"{res['roofline']['prompts_s'] / res['one_by_one']['prompts_s']:.2f}x one by one)",
              f"{'- ' if markdown else ''}[{mark(res['batched_of_roofline'] >= TARGET_ROOFLINE)}] batched >= "
              f"{TARGET_ROOFLINE:.0%} of the roofline: {res['batched_of_roofline']:.0%}",
              f"{'- ' if markdown else ''}[{mark(res['identical_verdicts'])}] batched verdicts identical to one by one "
              f"(status, categories, p_unsafe); errors: {res['errors']}"]
    others = res.get("others_cpu_share")
    if others is None:  # /proc/stat unreadable, or repetitions shorter than its clock tick (1/100 s)
        lines.append(f"{'- ' if markdown else ''}other processes' CPU use during the timed repetitions: not measured")
    else:
        lines.append(f"{'- ' if markdown else ''}other processes used {others:.0%} of the CPU during the timed repetitions"
                     + contention_note([others], res["threads"]))
    if isinstance(peer, dict):
        lines.append(f"{'- ' if markdown else ''}llama.cpp's statuses equal pocketguard's batched ones on {peer['agree']} of "
                     f"{res['prompts']} (errors: {peer['errors']}; it runs the whole prompt, pocketguard windows over-long turns)")
    return "\n".join(lines)


def render_compare(results: list[tuple[str, dict]], markdown: bool = False) -> str:
    """`--subset-mode compare`'s summary: each run's prompts/s, one by one and batched, as a ratio to the first
    run's (the guard's own policy), measured on the same conversations."""
    ref = results[0][1]
    lines = ["**Policy runs, same conversations**" if markdown else "Policy runs, same conversations", "",
             "| policy | one by one prompts/s | vs own policy | batched prompts/s | vs own policy | mean prompt tokens |",
             "|---|---|---|---|---|---|"]
    for label, res in results:
        one, bat = res["one_by_one"]["prompts_s"], res["batched"]["prompts_s"]
        lines.append(f"| {label} | {one:,.2f} | {one / ref['one_by_one']['prompts_s']:.2f}x | {bat:,.2f} | "
                     f"{bat / ref['batched']['prompts_s']:.2f}x | {res['mean_prompt_tokens']:.0f} |")
    return "\n".join(lines)


def run(args, shapes: dict) -> int:
    """`pocketguard bench --throughput`; `shapes` are `bench.SHAPES` (passed in: bench imports this module)."""
    import os
    import platform

    import torch

    from .guard import Guard
    from .policy import Policy

    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    small = [f"--{k.replace('_', '-')} {getattr(args, k)}" for k in ("n", "batch_size", "batch_tokens")
             if getattr(args, k) is not None and getattr(args, k) < 1]
    if small:
        print(f"error: {', '.join(small)}: must be at least 1", file=sys.stderr)
        return 2
    compare = args.subset_mode == COMPARE
    mode = "filter" if compare else args.subset_mode
    try:  # before the model loads: a bad line or policy should not cost the minutes a large guard takes
        mix = read_mix(args.mix) if args.mix else None
        policy = Policy.from_toml(args.policy) if args.policy else None  # PolicyError is a ValueError
        if compare and policy is None:
            raise ValueError(f"--subset-mode {COMPARE} needs --policy (a part of the guard's own categories)")
        try:
            device = torch.device(args.device)
        except RuntimeError:
            raise ValueError(f"--device {args.device!r} is not a torch device (cpu, cuda, cuda:1, ...)") from None
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"--device {args.device}: CUDA is not available here (torch {torch.__version__})")
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    threads = args.threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(threads)
    try:  # a missing or unreadable checkpoint is the user's error: exit 2, no traceback (CheckpointError is a ValueError)
        if args.shape:
            guard = random_guard(shapes[args.shape]["args"], args.device,
                                 "bfloat16" if args.device.startswith("cuda") else "float32", policy, mode)
        else:
            guard = Guard.load(args.model, policy=policy, device=args.device, subset_mode=mode)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.batch_tokens:
        guard.batch_tokens = args.batch_tokens
    try:
        guards = policy_runs(guard, compare)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    convs = mix if mix is not None else bundled_mix(guard.tokenizer, args.n, args.seed)
    kernel = (guard.meta.get("runtime_cpu") or {}).get("kernel", "torch")
    from .runtime_cpu import attention_name

    where = (torch.cuda.get_device_name(args.device) if args.device.startswith("cuda")
             else f"{threads} threads, {platform.machine()}, kernels: {kernel}, attention: {attention_name()}")
    title = (f"{args.shape or args.model or 'shipped default guard'} | {args.mix or 'bundled mix'} | {where} | "
             f"up to {args.batch_size} prompts / {guard.batch_tokens} tokens per pass")
    results: list = []  # (label, {"title": ..., **measurement}) per guard
    for g in guards:
        label = describe(g) if policy is not None else None  # without --policy: the title as it always was
        run_title = f"{title} | {label}" if label else title
        log(f"judging {len(convs)} conversations{f' under {label}' if label else ''}, {args.runs} repetitions, {where} ...")
        res = measure(g, convs, repeats=args.runs, batch_size=args.batch_size, log=log)
        res["peer"] = llamacpp_batched(args, g, convs, res, threads, log)
        print(("\n" if results else "") + render(res, run_title, markdown=args.markdown))
        results.append((label, {"title": run_title, **res}))
    if compare:
        print("\n" + render_compare(results, markdown=args.markdown))
    if args.json:
        records = [r for _, r in results]
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(records[0] if len(records) == 1 else {"title": title, "runs": records}, indent=1))
    return 0 if all(r["identical_verdicts"] and not r["errors"] for _, r in results) else 1


def llamacpp_passes(prompts: list, batch_size: int, batch_tokens: int) -> list[dict]:
    """pocketguard's packing rule for the llama.cpp peer: prompts grouped by policy prefix (one per judged
    role), then passes of at most `batch_size` prompts and `batch_tokens` tokens after the prefix (a longer
    prompt gets a pass of its own). Each pass: {"idx": prompt indices, "prefix": shared prefix length}."""
    groups: dict[tuple, list[int]] = {}
    for i, pt in enumerate(prompts):
        groups.setdefault(tuple(pt.prefix), []).append(i)
    passes = []
    for prefix, idx in groups.items():
        cur: list[int] = []
        tokens = 0
        for i in idx:
            n = len(prompts[i]) - len(prefix)
            if cur and (len(cur) == batch_size or tokens + n > batch_tokens):
                passes.append({"idx": cur, "prefix": len(prefix)})
                cur, tokens = [], 0
            cur.append(i)
            tokens += n
        passes.append({"idx": cur, "prefix": len(prefix)})
    return passes


def llamacpp_batched(args, guard, convs: list, res: dict, threads: int, log) -> dict | str:
    """The peer row: llama.cpp's batched mode on the GGUF export of the same model, same prompts, same passes
    (llama_cpp where installed; a `--shape` model has no folder to export, so it needs `--model`), on the
    threads pocketguard ran with."""
    from .bench_workers import peer_missing

    if "llamacpp" not in [p.strip() for p in args.peers.split(",")]:
        return "llama.cpp batched: not asked for (--peers)"
    if why := peer_missing("llamacpp"):
        return f"llama.cpp batched: {why}"
    if args.shape:
        return "llama.cpp batched: needs --model (a random --shape guard has no checkpoint to export)"
    if guard._judging(guard.policy)[1] is not None:
        return ("llama.cpp batched: not with subset_mode filter (pocketguard scores all of the guard's categories and "
                "keeps the verdict to the policy's; the peer only decodes an answer)")
    from .bench_workers import _ensure_gguf, _run_worker, grammar_spec
    from .conversation import as_conversation
    from .guard import DEFAULT_MODEL_DIR
    from .prompt import encode_prompt

    prompts = [encode_prompt(guard.tokenizer, guard.policy, as_conversation(c)) for c in convs]
    passes = llamacpp_passes(prompts, args.batch_size, guard.batch_tokens)
    grammar = guard._grammar(guard.policy)
    n_ctx = max(sum(len(prompts[i]) - p["prefix"] + grammar.max_steps for i in p["idx"]) + p["prefix"] for p in passes)
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    gguf = _ensure_gguf(Path(args.model or DEFAULT_MODEL_DIR), workdir, args.gguf_type, log)
    log(f"llama.cpp batched ({gguf.name}, {len(passes)} passes) ...")
    spec = {"gguf": str(gguf), "threads": threads, "runs": args.runs, "prompts": [pt.ids for pt in prompts],
            "passes": passes, "n_ctx": -(-(n_ctx + 64) // 256) * 256, "grammar": grammar_spec(grammar)}
    out = _run_worker("llamacpp_batched", spec, workdir, args.timeout)
    if "error" in out:
        return f"llama.cpp batched: failed ({out['error'][:200]})"
    t = statistics.median(out["seconds"])
    status = ["safe" if a == "safe" else "unsafe" if a.startswith("unsafe\n") else "error" for a in out["answers"]]
    return {"prompts_s": len(convs) / t, "tokens_s": out["run_tokens"] / t, "run_tokens": out["run_tokens"],
            "seconds": out["seconds"],
            "agree": sum(a == b for a, b in zip(status, res["batched_status"])), "errors": status.count("error"),
            "gguf": gguf.name, "others_cpu_share": out.get("others_cpu_share")}
