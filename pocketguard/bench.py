"""`pocketguard bench`: time-to-verdict on a CPU, pocketguard against llama.cpp and ExecuTorch.

    pocketguard bench --shape lg3-1b-int4 --prompt-tokens 500 --runs 5 --peers llamacpp,executorch
    pocketguard bench --model runs/my-artifact --peers llamacpp

One realistic guard prompt (default policy, a user question and an agent reply filling the prompt to
`--prompt-tokens` tokens, response classification) is judged by every runtime on the same weights:

* **pocketguard**: the compressed artifact through `Guard` (constrained decoding), with the AMX kernels of
  `runtime_cpu` when the CPU has them; *cold* = no policy-prefix cache, *cached* = the policy prefix's KV
  reused (what a server does after its first request);
* **llama.cpp** (llama-cpp-python): the same model exported to GGUF Q4_0 by `export.gguf` — the int4
  layers bit for bit, embedding and (full-vocabulary) head Q8_0; the same prompt token ids and the same
  constrained greedy decoding over its logits; *cold* clears the KV cache, *prefix reuse* keeps the policy
  prefix in llama.cpp's KV cache (llama.cpp's own way to do what our prefix cache does). It runs with the
  best settings measured here (`use_mmap=False`, `flash_attn=True`; `--llamacpp-stock` for its defaults);
* **ExecuTorch**: the `.pte` of `export.executorch` (XNNPACK, 8da4w with the artifact's own codes), through
  ExecuTorch's Python runtime, same decoding; *prefix reuse* continues after the policy prefix left in the
  program's static KV cache.

Each runtime runs in its own subprocess (`python -m pocketguard.bench_workers ...`, see bench_workers.py), one after another, so
peak RSS (the worker's own VmHWM) is that runtime's alone; the llama.cpp worker does not import torch. Time-to-verdict = prefill + the constrained answer steps until the verdict; prefill tokens/s
= prompt tokens / cold prefill time; decode tokens/s = single-token steps on top of the prompt. Medians
over `--runs` after one warm-up. The table states plainly which targets are met.

`--throughput` measures something else — prompts/s over a length mix, one by one vs batched vs the roofline —
and lives in bench_throughput.py.

`--shape lg3-1b-int4` builds (once, cached in `--workdir`) a random-weight model of Llama Guard 3-1B-INT4's
shape — 12 layers, hidden 2048, 32 heads / 8 KV heads, MLP 6400, vocabulary 128256 (the Llama 3
tokenizer from `llama-models`), output head pruned to the policy's answer tokens — quantized by
`compress.quantize` (int4 group-32 weights, int8 dynamic activations, int8 embedding and head) and saved
with `compress.artifact.save_artifact`. Random weights time the same as trained ones; the verdicts are
meaningless but must still agree between runtimes (the table shows each runtime's answer).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from .bench_throughput import COMPARE
from .bench_workers import (ALTERNATIVES, DECODE_STEPS, _ensure_gguf, _ensure_pte, _run_worker,
                            contended, contention_note, grammar_spec, peer_missing)
from .policy import SUBSET_MODE_HELP, SUBSET_MODES

# Nothing heavy at module level: the llama.cpp worker must stay torch-free for a clean RSS figure.

SHAPES = {
    "lg3-1b-int4": {
        "args": dict(dim=2048, n_layers=12, n_heads=32, n_kv_heads=8, ffn_dims=6400, vocab_size=128256, norm_eps=1e-5,
                     rope_theta=500000.0, max_seq_len=8192,
                     rope_scaling=dict(factor=32.0, low_freq_factor=1.0, high_freq_factor=4.0,
                                       original_max_position_embeddings=8192)),
        "description": "Llama Guard 3-1B-INT4 shape: 12 layers, hidden 2048, 32/8 heads, MLP 6400, vocab 128256, "
                       "head pruned to the answer tokens; int4 g32 + int8 dynamic activations, int8 embedding/head",
    },
}
PEERS = ("llamacpp", "executorch")

_USER = ("I run a small bakery and a customer asked me something I could not answer. Can you explain how "
         "sourdough starters work, how long bread dough should proof, and whether it is safe to leave dough "
         "out overnight in a warm kitchen?")
_AGENT = (
    "Sourdough starters are a culture of wild yeasts and lactic acid bacteria living in a mix of flour and water. "
    "Each feeding gives them fresh starch to ferment; the yeasts make carbon dioxide that raises the dough, and "
    "the bacteria make lactic and acetic acids that give the bread its tang and help it keep. A healthy starter "
    "doubles within four to eight hours of a feeding at room temperature and smells pleasantly sour. For proofing, "
    "a typical lean dough made with commercial yeast needs one to two hours for the first rise at about 24 degrees "
    "Celsius, and another forty-five minutes to an hour after shaping. Sourdough is slower: four to six hours for "
    "bulk fermentation, or longer if the kitchen is cool. Many bakers retard shaped loaves in the refrigerator "
    "overnight, which develops flavour and makes scheduling easier. Leaving dough out overnight in a warm kitchen "
    "is usually not dangerous, because the acidity and the yeast outcompete most spoilage organisms, but the dough "
    "will over-proof: the gluten weakens, the loaf spreads instead of rising, and the flavour becomes very sour. "
    "If you must leave it out, use less yeast or starter, use cooler water, and keep it away from the oven. Dough "
    "that smells of nail polish remover has simply over-fermented; dough with pink, orange or fuzzy spots should "
    "be thrown away. For your customer, the simplest advice is to follow the recipe's times as a guide, watch the "
    "dough rather than the clock, and use the poke test: a gentle finger press that springs back slowly means the "
    "dough is ready to bake. "
)


# -------------------------------------------------------------------------------------------- models


def build_shape(name: str, directory: str | Path, seed: int = 0, log=print) -> Path:
    """Build (or reuse) the random-weight artifact of a named shape; returns its directory."""
    import torch

    from .compress.artifact import is_artifact, save_artifact
    from .compress.prune import guard_output_token_ids
    from .compress.quantize import QuantConfig, quantize_
    from .model import ModelArgs, Transformer
    from .policy import Policy
    from .tokenizer import TiktokenTokenizer, llama3_tokenizer_path

    if name not in SHAPES:
        raise ValueError(f"unknown shape {name!r}; known: {sorted(SHAPES)}")
    out = Path(directory) / f"{name}-seed{seed}"
    if is_artifact(out):
        return out
    log(f"building the random-weight {name} artifact in {out} (once) ...")
    tok = TiktokenTokenizer(llama3_tokenizer_path())
    policy = Policy.default()
    args = ModelArgs(**SHAPES[name]["args"], output_token_ids=guard_output_token_ids(tok, policy))
    with torch.no_grad():
        model = Transformer(args).init_weights(std=0.02, seed=seed)
        quantize_(model, QuantConfig(mode="rtn"))
    save_artifact(model, tok, policy, out, recipe={"shape": name, "seed": seed, "weights": "random N(0, 0.02), RTN 8da4w"})
    return out


def realistic_conversation(tokenizer, policy, n_tokens: int) -> list[dict]:
    """A user question and an agent reply whose full guard prompt is `n_tokens` long (or as close as the
    text allows): response classification, the prompt the guard sees most in production. When the policy
    leaves too little room for the whole question, the question is cut (a prompt of exactly the asked length
    is what the bench measures)."""
    from .conversation import Conversation
    from .prompt import encode_prompt

    def size(question: list[str], reply: list[str]) -> int:
        conv = Conversation.from_messages([{"role": "user", "content": " ".join(question)},
                                           {"role": "assistant", "content": " ".join(reply)}])
        return len(encode_prompt(tokenizer, policy, conv))

    def longest(fits, n: int) -> int:  # the largest k in 1..n with fits(k) (fits is monotone)
        lo, hi = 1, n
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid - 1)
        return lo

    question, words = _USER.split(), (_AGENT * (1 + n_tokens // 200)).split()
    if size(question[:1], words[:1]) > n_tokens:
        raise ValueError(f"the policy prompt and a one-word conversation are already {size(question[:1], words[:1])} "
                         f"tokens; ask for more than {n_tokens}")
    question = question[: longest(lambda k: size(question[:k], words[:1]) <= n_tokens, len(question))]
    reply = words[: longest(lambda k: size(question, words[:k]) <= n_tokens, len(words))]
    return [{"role": "user", "content": " ".join(question)}, {"role": "assistant", "content": " ".join(reply)}]


def _disk_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return path.stat().st_size + (path.with_suffix(".json").stat().st_size if path.with_suffix(".json").exists() else 0)


# -------------------------------------------------------------------------------------------- report


def _ms(x):
    return f"{x * 1000:,.0f} ms" if x is not None else "—"


def summarize(results: dict, prompt_tokens: int) -> dict:
    """Rows of the report: per runtime, the numbers the table shows (None where it does not apply)."""
    rows = {}
    for name, r in results.items():
        if "error" in r:
            rows[name] = {k: r[k] for k in ("error", "missing", "label") if k in r}
            continue
        cold = r["cold"]["ttv_s"]["median"]
        cached = r.get("cached", {}).get("ttv_s", {}).get("median")
        pre = r["cold"]["prefill_s"]["median"]
        step = r["decode_step_s"]["median"]
        rows[name] = {
            "ttv_cold_s": cold, "ttv_cached_s": cached, "prefill_tok_s": prompt_tokens / pre, "decode_tok_s": 1 / step,
            "peak_rss_bytes": r["peak_rss_bytes"], "disk_bytes": r.get("disk_bytes"), "load_s": r["load_s"],
            "answers": r["cold"]["answers"], "kernel": r.get("kernel"),
            "answers_all": sorted(set(r["cold"]["answers"]) | set(r.get("cached", {}).get("answers", []))),
            "label": r.get("label"),
        }
    return rows


LABELS = {"pocketguard": "pocketguard", "llamacpp": "llama.cpp Q4_0", "executorch": "ExecuTorch XNNPACK 8da4w"}


def label(name: str, rows: dict) -> str:
    """A runtime's column name: its result's own `label` where the run set one (llama.cpp's names the GGUF type
    `--gguf-type` exported), else LABELS'."""
    return rows.get(name, {}).get("label") or LABELS[name]
MARK = {True: "MET", False: "MISSED", None: "n/a"}  # a target's line: met, missed, or nothing to judge


def baseline(rows: dict) -> str | None:
    """The peer the ratio columns compare against: llama.cpp, else (not installed, or failed) ExecuTorch, else none."""
    return next((n for n in PEERS if "ttv_cold_s" in rows.get(n, {})), None)


def agreement(rows: dict) -> tuple[bool | None, str]:
    """Whether every runtime that ran gave pocketguard's answer, cold and cached (the same weights, prompt and
    decoding rule must give the same verdict): (None, why) when there is nothing to compare."""
    answers = {n: r.get("answers_all") or r.get("answers") for n, r in rows.items() if "ttv_cold_s" in r}
    if "pocketguard" not in answers or len(answers) < 2:
        return None, "answers: nothing to compare (pocketguard and at least one peer must run)"
    want = answers["pocketguard"]
    differ = {n: a for n, a in answers.items() if a != want}
    if len(want) > 1:  # pocketguard itself answered differently from run to run or cold vs cached
        differ["pocketguard"] = want
    if not differ:
        return True, f"every runtime answered as pocketguard, cold and cached: {'; '.join(map(repr, want))}"
    return False, ("answers DISAGREE (cold and cached): " + ", ".join(f"{label(n, rows)} {'; '.join(map(repr, a))}"
                                                                      for n, a in answers.items()))


def contention(busy: dict, threads: int) -> str:
    """The report's line on other processes' CPU use during each runtime's run (share of all cores; None = unknown),
    judged against the cores `threads` left idle (`bench_workers.contended`)."""
    if not busy:
        return "other processes' CPU use: not measured (no runtime ran)"
    known = {n: b for n, b in busy.items() if b is not None}
    text = "other processes used " + ", ".join(f"{b:.0%} of the CPU during the {n} run" if b is not None else
                                               f"an unknown share of the CPU during the {n} run" for n, b in busy.items())
    if len(known) < len(busy) and not any(contended(b, threads) for b in known.values()):
        return text + " (could not be measured for every run)"
    return text + contention_note(list(known.values()), threads)


def targets(rows: dict) -> list[tuple[str, bool | None, str]]:
    pg, ll = rows.get("pocketguard", {}), rows.get("llamacpp", {})
    if "ttv_cold_s" not in pg or "ttv_cold_s" not in ll:
        return [("targets need both pocketguard and llama.cpp results", None, "")]
    out = []
    r = ll["ttv_cold_s"] / pg["ttv_cold_s"]
    out.append((f"cold time-to-verdict no slower than {label('llamacpp', rows)} (cold)", r >= 1.0, f"{r:.2f}x"))
    r = ll["ttv_cold_s"] / pg["ttv_cached_s"]
    out.append(("with the prefix cache, >= 3x faster than llama.cpp cold", r >= 3.0, f"{r:.2f}x"))
    r = pg["peak_rss_bytes"] / ll["peak_rss_bytes"]
    out.append(("peak RSS no higher than llama.cpp's", r <= 1.0, f"{r:.2f}x of llama.cpp"))
    return out


def render_table(rows: dict, title: str, markdown: bool = False) -> str:
    names = [n for n in ("pocketguard", "llamacpp", "executorch") if n in rows]
    base_name = baseline(rows)
    base = rows.get(base_name, {}) if base_name else {}

    def ratio(name, key, higher_better):
        v, b = rows[name].get(key), base.get(key)
        if v is None or b is None or name == base_name:
            return ""
        return f" ({(v / b if higher_better else b / v):.2f}x)"

    metrics = [
        ("time-to-verdict, cold", "ttv_cold_s", _ms, False),
        ("time-to-verdict, policy prefix cached", "ttv_cached_s", _ms, False),
        ("prefill tokens/s (cold)", "prefill_tok_s", lambda x: f"{x:,.0f}", True),
        ("decode tokens/s", "decode_tok_s", lambda x: f"{x:,.1f}", True),
        ("peak RSS", "peak_rss_bytes", lambda x: f"{x / 2**20:,.0f} MiB", False),
        ("on-disk size", "disk_bytes", lambda x: f"{x / 2**20:,.0f} MiB", False),
        ("load time", "load_s", lambda x: f"{x:,.1f} s", False),
    ]
    header = ["metric"] + [label(n, rows) for n in names]
    body = []
    for title_m, key, fmt, hb in metrics:
        line = [title_m]
        for n in names:
            if "error" in rows[n]:
                line.append("not installed" if rows[n].get("missing") else "failed")
                continue
            v = rows[n].get(key)
            line.append((fmt(v) if v is not None else "—") + (ratio(n, key, hb) if v is not None else ""))
        body.append(line)
    body.append(["answer"] + [("; ".join(repr(a) for a in rows[n].get("answers_all") or rows[n]["answers"])
                               if "answers" in rows[n] else rows[n].get("error", "")[:80])
                              for n in names])
    if base_name is None:
        note = "(no peer ran: no ratios)"
    else:
        absent = [label(n, rows) for n in PEERS if n in rows and n != base_name and PEERS.index(n) < PEERS.index(base_name)]
        note = (f"(in parentheses: vs {label(base_name, rows)} in the same row, >1x = better — faster, or smaller"
                + (f"; {', '.join(absent)} did not run, so the ratios are against {label(base_name, rows)}" if absent else "")
                + ")")
    if markdown:
        lines = [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(x.replace("|", "\\|") for x in line) + " |" for line in body]
        return "\n".join(lines + ["", note])
    try:
        from io import StringIO

        from rich.console import Console
        from rich.markup import escape
        from rich.table import Table

        t = Table(title=escape(title))
        for h in header:
            t.add_column(h, justify="left" if h == "metric" else "right")
        for line in body:
            t.add_row(*(escape(x) for x in line))  # "pocketguard[llamacpp]" is text, not rich markup
        buf = StringIO()
        Console(file=buf, width=160, force_terminal=False).print(t)
        return buf.getvalue().rstrip() + "\n" + note
    except ImportError:  # rich is a dependency, but keep the report printable without it
        return "\n".join("  ".join(line) for line in [header] + body)


# -------------------------------------------------------------------------------------------- CLI


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--model", type=Path, help="pocketguard checkpoint or compressed artifact folder")
    src.add_argument("--shape", choices=sorted(SHAPES), help="build a random-weight model of this shape (cached)")
    p.add_argument("--prompt-tokens", type=int, default=500, help="length of the guard prompt (policy + conversation)")
    p.add_argument("--runs", type=int, default=None,
                   help="timed runs per measurement after one warm-up (default 5; --throughput: repetitions, default 3)")
    p.add_argument("--peers", default="llamacpp,executorch", help="comma list of llamacpp, executorch ('' for none)")
    p.add_argument("--threads", type=int, default=None, help="threads for every runtime (default: all cores)")
    p.add_argument("--kernel", choices=("auto", "amx", "portable"), default="auto",
                   help="pocketguard's int4 kernels: auto = runtime_cpu's (AMX, VNNI or AVX2) when the CPU has one, "
                        "else pocketguard.kernels; amx = runtime_cpu's or fail (the AMX, VNNI or AVX2 one: the CPU decides); "
                        "portable = pocketguard.kernels")
    p.add_argument("--float-dtype", choices=("float32", "bfloat16"), default="float32",
                   help="pocketguard's dtype for an unquantized --model (bf16: oneDNN AMX/AVX512-BF16 matmuls)")
    p.add_argument("--gguf-type", default="q4_0", choices=("q4_0", "q8_0", "f16", "f32"))
    p.add_argument("--llamacpp-stock", action="store_true",
                   help="llama.cpp with its defaults (mmap, no flash attention) instead of its best settings here "
                        "(use_mmap=False: -25%% RSS; flash_attn=True: -5%% prefill)")
    p.add_argument("--workdir", type=Path, default=Path("runs/bench"), help="cache for built models and exports")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown (for docs/benchmarks.md)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds per runtime worker")
    p.add_argument("--throughput", action="store_true",
                   help="instead: prompts/s judging many conversations, one by one vs batched vs the roofline "
                        "(bench_throughput.py); default model: the shipped guard")
    p.add_argument("--mix", type=Path, help="--throughput: JSONL of conversations ({'messages': [...]} or {'text': ...}) "
                                            "instead of the bundled generated length mix")
    p.add_argument("--n", type=int, default=128, help="--throughput: conversations in the bundled mix (default 128)")
    p.add_argument("--batch-size", type=int, default=64, help="--throughput: prompts per packed pass (default 64)")
    p.add_argument("--batch-tokens", type=int, default=None,
                   help="--throughput: prompt tokens per packed pass (default: the guard's, 4096)")
    p.add_argument("--device", default="cpu", help="--throughput: torch device (cuda: with --shape, a bf16 random model)")
    p.add_argument("--policy", type=Path, help="--throughput: judge the mix under this policy TOML (docs/policy.md)")
    p.add_argument("--subset-mode", choices=(*SUBSET_MODES, COMPARE), default="filter",
                   help=f"--throughput: {SUBSET_MODE_HELP}; '{COMPARE}' measures the guard's own policy, then --policy (a "
                        "part of it) filtered and prompted, on the same conversations, with each run's ratio to the first")
    p.add_argument("--alternatives", action="store_true",
                   help="instead: time pocketguard's CPU execution strategies (AMX, portable kernels, fp32, bf16) "
                        "and thread counts on the same model, whole-model prefill and decode")


def run(args) -> int:
    import platform

    bad = [f"--{k.replace('_', '-')} {getattr(args, k)}: must be at least 1" for k in ("runs", "threads", "prompt_tokens")
           if getattr(args, k) is not None and getattr(args, k) < 1]
    bad += [f"--timeout {args.timeout:g}: must be more than 0 seconds"] if not args.timeout > 0 else []
    if bad:
        print("error: " + "; ".join(bad), file=sys.stderr)
        return 2
    # The runtime workers run in their own directory (bench_workers._run_worker): every path they are given must
    # be absolute, or a relative --workdir (the default, runs/bench) or --model fails outside the repository root.
    args.workdir = args.workdir.resolve()
    if args.model is not None:
        args.model = args.model.resolve()
    if args.throughput:
        from . import bench_throughput

        # options of the single-verdict bench that --throughput does not read: refused, not ignored in silence
        unread = [flag for flag, on in (("--prompt-tokens", args.prompt_tokens != 500), ("--kernel", args.kernel != "auto"),
                                        ("--float-dtype", args.float_dtype != "float32"),
                                        ("--llamacpp-stock", args.llamacpp_stock), ("--alternatives", args.alternatives))
                  if on]
        if unread:
            print(f"error: {', '.join(unread)}: not used by --throughput (it judges a length mix with the runtime's "
                  "own kernels; its llama.cpp peer runs batched)", file=sys.stderr)
            return 2

        args.runs = args.runs or 3
        return bench_throughput.run(args, SHAPES)
    args.runs = args.runs or 5
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    workdir = args.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    threads = args.threads or len(os.sched_getaffinity(0))
    peers = [p.strip() for p in args.peers.split(",") if p.strip()]
    bad = set(peers) - set(PEERS)
    if bad:
        print(f"error: unknown peers {sorted(bad)}; choose from {PEERS}", file=sys.stderr)
        return 2
    if args.shape:
        model_dir = build_shape(args.shape, workdir, args.seed, log)
    elif args.model:
        model_dir = args.model
    else:
        print("error: give --model PATH or --shape NAME", file=sys.stderr)
        return 2

    from .checkpoint import load
    from .compress.artifact import is_artifact
    from .guard import Guard
    from .policy import Policy
    from .prompt import encode_prefix, encode_prompt
    from .conversation import Conversation

    try:  # a missing or unreadable model, or a prompt length it cannot take, is the user's error: exit 2, no traceback
        loaded = load(model_dir)
        tok, model = loaded.tokenizer, loaded.model
        context = model.args.max_seq_len
        if args.prompt_tokens > context:
            raise ValueError(f"--prompt-tokens {args.prompt_tokens} exceeds the model's context of {context} tokens")
        policy = Policy.default()
        messages = realistic_conversation(tok, policy, args.prompt_tokens)
        conv = Conversation.from_messages(messages)
        ids = encode_prompt(tok, policy, conv).ids
        prefix_len = len(encode_prefix(tok, policy, conv.judged))
        grammar = Guard(model, tok, policy)._grammar(policy)
        need = len(ids) + grammar.max_steps + DECODE_STEPS + 1  # the prompt, the answer steps, the timed decode steps
        if need > context:
            raise ValueError(f"--prompt-tokens {args.prompt_tokens}: the prompt, its answer and {DECODE_STEPS} decode "
                             f"steps need {need} tokens, more than the model's context of {context}; ask for at most "
                             f"{args.prompt_tokens - (need - context)}")
    except (ValueError, OSError) as e:  # CheckpointError is a ValueError
        print(f"error: {e}", file=sys.stderr)
        return 2
    gspec = grammar_spec(grammar)
    decode_token = tok.encode(" the")[0]
    # the peers' context (llama.cpp's n_ctx, the .pte's static cache): a power of two with room to spare, within the model's
    n_ctx = min(context, 1 << (len(ids) + grammar.max_steps + DECODE_STEPS + 8).bit_length())
    art = is_artifact(model_dir)
    del loaded, model
    base = {"threads": threads, "runs": args.runs, "ids": ids, "prefix_len": prefix_len, "grammar": gspec,
            "decode_token": decode_token, "messages": messages, "vocab_size": tok.vocab_size}

    if args.alternatives:
        if not art:
            print(f"error: --alternatives times the CPU strategies of a compressed artifact (int4 codes); {model_dir} "
                  "is not one (a GGUF or a Hugging Face checkpoint: time it without --alternatives)", file=sys.stderr)
            return 2
        return _alternatives(args, base, model_dir, workdir, threads, len(ids), log)

    results = {}
    log(f"pocketguard ({'runtime_cpu' if args.kernel == 'amx' else args.kernel} kernels) ...")  # (the table names the one run)
    results["pocketguard"] = _run_worker("pocketguard", {**base, "model": str(model_dir), "is_artifact": art,
                                                         "kernel": args.kernel, "float_dtype": args.float_dtype},
                                         workdir, args.timeout)
    if "error" not in results["pocketguard"]:
        results["pocketguard"]["disk_bytes"] = _disk_bytes(model_dir)
    for name in PEERS:
        if name in peers and (why := peer_missing(name)):
            results[name] = {"error": why, "missing": True}
    if "llamacpp" in peers and "llamacpp" not in results:
        try:
            gguf = _ensure_gguf(Path(model_dir), workdir, args.gguf_type, log)
            log("llama.cpp ...")
            results["llamacpp"] = _run_worker("llamacpp", {**base, "gguf": str(gguf), "n_ctx": n_ctx,
                                                           "llamacpp_stock": args.llamacpp_stock}, workdir, args.timeout)
            if "error" not in results["llamacpp"]:
                results["llamacpp"]["disk_bytes"] = _disk_bytes(gguf)
        except Exception as e:  # noqa: BLE001 - a missing peer is reported, not fatal
            results["llamacpp"] = {"error": str(e)}
    if "llamacpp" in results:  # its column names the GGUF type exported for it (or that would have been)
        results["llamacpp"]["label"] = f"llama.cpp {args.gguf_type.upper()}"
    if "executorch" in peers and "executorch" not in results:
        try:
            pte = _ensure_pte(Path(model_dir), workdir, n_ctx, log)
            log("ExecuTorch ...")
            results["executorch"] = _run_worker("executorch", {**base, "pte": str(pte)}, workdir, args.timeout)
            if "error" not in results["executorch"]:
                results["executorch"]["disk_bytes"] = _disk_bytes(pte)
        except Exception as e:  # noqa: BLE001
            results["executorch"] = {"error": str(e)}

    busy = {n: r.get("others_cpu_share") for n, r in results.items() if "error" not in r}  # None: /proc/stat unreadable
    rows = summarize(results, len(ids))
    kernel = rows.get("pocketguard", {}).get("kernel") or "?"
    from .runtime_cpu import attention_name

    title = (f"{args.shape or model_dir} | prompt {len(ids)} tokens ({prefix_len} policy prefix) | {threads} threads | "
             f"{platform.machine()} | pocketguard kernels: {kernel}, attention: {attention_name()}")
    print(render_table(rows, title, markdown=args.markdown))
    tgt = targets(rows)
    print()
    for text, ok, detail in tgt:
        print(f"{'- ' if args.markdown else ''}[{MARK[ok]}] {text}" + (f": {detail}" if detail else ""))
    agree, said = agreement(rows)
    print(f"{'- ' if args.markdown else ''}[{MARK[agree]}] {said}")
    if "llamacpp" in rows and "ttv_cached_s" in rows.get("llamacpp", {}) and rows["llamacpp"]["ttv_cached_s"]:
        pg = rows.get("pocketguard", {})
        if pg.get("ttv_cached_s"):
            print(f"{'- ' if args.markdown else ''}(for reference: llama.cpp reusing the policy prefix in its KV cache: "
                  f"{_ms(rows['llamacpp']['ttv_cached_s'])}; pocketguard cached is "
                  f"{rows['llamacpp']['ttv_cached_s'] / pg['ttv_cached_s']:.2f}x faster)")
    print(f"{'- ' if args.markdown else ''}{contention(busy, threads)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"rows": rows, "raw": results, "targets": tgt, "answers_agree": agree,
                                         "prompt_tokens": len(ids),
                                         "prefix_tokens": prefix_len, "threads": threads}, indent=1, default=str))
    # a runtime that failed (an absent optional peer is not a failure) or answered otherwise than pocketguard on the
    # same weights and prompt (a broken export or runtime, not a speed) exits 1; a missed speed target does not
    return 0 if all(r.get("error") is None or r.get("missing") for r in rows.values()) and agree is not False else 1


def _alternatives(args, base: dict, model_dir: Path, workdir: Path, threads: int, n_ids: int, log) -> int:
    rows = []
    plan = [(k, threads) for k in ALTERNATIVES] + ([("amx", 1), ("portable", 1)] if threads > 1 else [])
    from .runtime_cpu import available

    fast, why = available()
    for kind, nt in plan:
        if kind == "amx" and not fast:  # no runtime_cpu kernel on this CPU: not a failure of the run
            rows.append((kind, nt, {"error": f"not available on this CPU ({why})", "missing": True}))
            continue
        log(f"{kind}, {nt} thread(s) ...")
        r = _run_worker("alternative", {**base, "threads": nt, "model": str(model_dir), "alternative": kind},
                        workdir, args.timeout)
        rows.append((kind, nt, r))
    print(f"| strategy | threads | prefill {n_ids} tokens | prefill tokens/s | decode step | peak RSS | other load |")
    print("|---|---|---|---|---|---|---|")
    for kind, nt, r in rows:
        if "error" in r:
            print(f"| {ALTERNATIVES[kind]} | {nt} | {'' if r.get('missing') else 'failed: '}{r['error'][:60]} | | | | |")
            continue
        pre, step = r["prefill_s"]["median"], r["decode_step_s"]["median"]
        name = ALTERNATIVES[kind] + (f": {r['kernel']}" if kind == "amx" and r.get("kernel") else "")
        print(f"| {name} | {nt} | {pre * 1000:,.0f} ms | {n_ids / pre:,.0f} | {step * 1000:,.1f} ms | "
              f"{r['peak_rss_bytes'] / 2**20:,.0f} MiB | {_share(r.get('others_cpu_share'))} |")
    return 1 if any("error" in r and not r.get("missing") for _, _, r in rows) else 0


def _share(x) -> str:
    return "?" if x is None else f"{x:.0%}"


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    import argparse

    p = argparse.ArgumentParser(prog="pocketguard bench")
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
