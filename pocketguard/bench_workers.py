"""The runtimes `pocketguard bench` times, each in its own subprocess (`python -m pocketguard.bench_workers`):
pocketguard, llama.cpp, ExecuTorch and pocketguard's alternative CPU strategies, plus the exports they run.

Each worker gets a JSON spec (prompt token ids, the policy prefix length, the answer grammar's candidates)
and writes its timings, answers and its own peak RSS. Nothing heavy at module level: the llama.cpp worker
must stay torch-free for a clean RSS figure (hence the torch-free `_Grammar` copy of the answer rule).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

DECODE_STEPS = 16
# The peers' Python modules and how to get them (pyproject extras): a peer that is not installed is reported
# as such, before any export is made for it, not as a failed run.
PEER_MODULES = {"llamacpp": "llama_cpp", "executorch": "executorch"}  # peer (= its pyproject extra) → module


def peer_missing(name: str) -> str | None:
    """Why peer `name` cannot run here ("not installed here (how to install it)"), or None when it can."""
    import importlib.util

    return None if importlib.util.find_spec(PEER_MODULES[name]) else f"not installed here (pip install 'pocketguard[{name}]')"


# -------------------------------------------------------------------------------------------- workers


def _stats(xs: list[float]) -> dict:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


class _Grammar:
    """Torch-free copy of `guard.AnswerGrammar`'s decision rule (the llama.cpp worker must not import torch):
    the parent passes the candidate tokens, codes and end-of-turn id computed by the real grammar."""

    def __init__(self, spec: dict):
        self.codes = spec["codes"]
        self.eot = spec["eot"]
        self.candidates = [(int(t), s) for t, s in spec["candidates"]]
        self.max_steps = spec["max_steps"]

    def _parts(self, text):
        if not text.startswith("unsafe\n"):
            return None
        *done, last = text[len("unsafe\n"):].split(",")
        if len(set(done)) != len(done) or any(c not in self.codes for c in done):
            return None
        return done, last

    def is_prefix(self, text):
        if "safe".startswith(text) or "unsafe\n".startswith(text):
            return True
        p = self._parts(text)
        return p is not None and any(c.startswith(p[1]) and c not in p[0] for c in self.codes)

    def is_complete(self, text):
        if text == "safe":
            return True
        p = self._parts(text)
        return p is not None and p[1] in self.codes and p[1] not in p[0]

    def allowed(self, text):
        out = [(t, s) for t, s in self.candidates if self.is_prefix(text + s)]
        if self.is_complete(text):
            out.append((self.eot, ""))
        return out


def grammar_spec(grammar) -> dict:
    """What `_Grammar` needs from a `guard.AnswerGrammar`: codes, end of turn, step cap, and the candidate
    tokens the model's head can emit."""
    return {"codes": grammar.codes, "eot": grammar.eot, "max_steps": grammar.max_steps,
            "candidates": [(t, s) for t, s, r in zip(grammar.ids[:-1], grammar.texts[:-1], grammar.rows[:-1])
                           if r is not None]}


def _next(grammar: _Grammar, text: str, logits) -> tuple[int, str] | None:
    """The greedy constrained choice after `text` (None: the grammar allows nothing)."""
    opts = grammar.allowed(text)
    return max(opts, key=lambda o: float(logits[o[0]])) if opts else None


def _decode(grammar: _Grammar, logits, step) -> tuple[str, int]:
    """Greedy constrained decoding; returns (answer text, steps run after the prompt)."""
    text, steps = "", 0
    for _ in range(grammar.max_steps):
        choice = _next(grammar, text, logits)
        if choice is None:
            return text + "<error>", steps
        tid, piece = choice
        if tid == grammar.eot:
            return text, steps
        text += piece
        logits = step(tid)
        steps += 1
    return text + "<unfinished>", steps


def _worker_llamacpp(spec: dict) -> dict:
    import numpy as np
    from llama_cpp import Llama, llama_get_logits_ith

    threads = spec["threads"]
    t0 = time.perf_counter()
    tuned = {} if spec.get("llamacpp_stock") else {"use_mmap": False, "flash_attn": True}
    llm = Llama(model_path=spec["gguf"], n_ctx=spec["n_ctx"], n_threads=threads, n_threads_batch=threads,
                n_batch=spec["n_ctx"], n_ubatch=512, logits_all=False, verbose=False, **tuned)
    load_s = time.perf_counter() - t0
    n_vocab = llm.n_vocab()
    ids, prefix_len = spec["ids"], spec["prefix_len"]
    grammar = _Grammar(spec["grammar"])

    def logits():
        return np.ctypeslib.as_array(llama_get_logits_ith(llm._ctx.ctx, -1), shape=(n_vocab,))

    def step(tid):
        llm.eval([tid])
        return logits()

    def clear():
        llm.reset()
        llm._ctx.kv_cache_clear()

    def run(cached: bool):
        if cached:
            llm.n_tokens = prefix_len  # keep the policy prefix's KV; eval drops the cache past n_tokens
        else:
            clear()
        t = time.perf_counter()
        llm.eval(ids[prefix_len:] if cached else ids)
        t_pre = time.perf_counter()
        answer, steps = _decode(grammar, logits(), step)
        return answer, t_pre - t, time.perf_counter() - t, steps

    res = {"load_s": load_s}
    for mode in ("cold", "cached"):
        if mode == "cached":
            clear()
            llm.eval(ids[:prefix_len])
        run(mode == "cached")  # warm-up
        pre, ttv, answers = [], [], set()
        for _ in range(spec["runs"]):
            a, p, t, _ = run(mode == "cached")
            pre.append(p)
            ttv.append(t)
            answers.add(a)
        res[mode] = {"ttv_s": _stats(ttv), "prefill_s": _stats(pre), "answers": sorted(answers)}
    clear()
    llm.eval(ids)
    step_t = []
    for i in range(DECODE_STEPS):
        t = time.perf_counter()
        llm.eval([spec["decode_token"]])
        step_t.append(time.perf_counter() - t)
    res["decode_step_s"] = _stats(step_t)
    return res


def _worker_llamacpp_batched(spec: dict) -> dict:
    """llama.cpp's batched mode on the prompts of `pocketguard bench --throughput`, packed into the same passes
    as pocketguard's: per pass the shared policy prefix is decoded once (sequence 0) and copied to every
    sequence, all suffixes go in one `llama_batch` (logits at each sequence's last token only), and each answer
    step is one batch of one token per unfinished sequence, chosen by the same greedy constrained rule."""
    import llama_cpp as L
    import numpy as np

    prompts, passes = spec["prompts"], spec["passes"]  # passes: {"idx": prompt indices, "prefix": shared length}
    n_seq, n_ctx = max(len(p["idx"]) for p in passes), spec["n_ctx"]
    grammar = _Grammar(spec["grammar"])
    t0 = time.perf_counter()
    # Llama() loads the model (its own small context is not used); the Python wrapper has no n_seq_max, so the
    # multi-sequence context comes from the C API: one unified KV cache, where a copied prefix is shared.
    llm = L.Llama(model_path=spec["gguf"], n_ctx=256, use_mmap=False, verbose=False)
    params = L.llama_context_default_params()
    params.n_ctx, params.n_batch, params.n_ubatch, params.n_seq_max = n_ctx, n_ctx, 512, n_seq
    params.n_threads = params.n_threads_batch = spec["threads"]
    params.flash_attn_type, params.kv_unified = L.LLAMA_FLASH_ATTN_TYPE_ENABLED, True
    ctx = L.llama_init_from_model(llm._model.model, params)
    if not ctx:
        raise RuntimeError(f"llama.cpp could not create a context of {n_ctx} tokens for {n_seq} sequences")
    load_s = time.perf_counter() - t0
    n_vocab = llm.n_vocab()
    mem = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(n_ctx, 0, n_seq)
    ran = [0]  # tokens decoded: each pass decodes its policy prefix again, which pocketguard's cache keeps

    def decode(items: list[tuple[int, int, int, bool]]) -> None:  # (token, position, sequence, wants logits)
        ran[0] += len(items)
        batch.n_tokens = len(items)
        for i, (t, pos, seq, want) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = t, pos, 1, want
            batch.seq_id[i][0] = seq
        if L.llama_decode(ctx, batch) != 0:
            raise RuntimeError(f"llama_decode failed on a batch of {len(items)} tokens")

    def logits(i: int):
        return np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,)).copy()

    def judge(idx: list[int], prefix_len: int) -> list[str]:
        L.llama_memory_clear(mem, True)
        decode([(t, pos, 0, False) for pos, t in enumerate(prompts[idx[0]][:prefix_len])])
        for seq in range(1, len(idx)):
            L.llama_memory_seq_cp(mem, 0, seq, -1, -1)
        items, state = [], {}
        for seq, k in enumerate(idx):
            suffix = prompts[k][prefix_len:]
            items += [(t, prefix_len + j, seq, j == len(suffix) - 1) for j, t in enumerate(suffix)]
            state[seq] = ["", len(prompts[k]), len(items) - 1]  # answer so far, next position, logits index
        decode(items)
        current = {seq: logits(i) for seq, (_, _, i) in state.items()}
        answers: dict[int, str] = {}
        for _ in range(grammar.max_steps):
            step = []
            for seq, (text, pos, _) in list(state.items()):
                choice = _next(grammar, text, current[seq])
                if choice is None or choice[0] == grammar.eot:
                    answers[seq] = text if choice else text + "<error>"
                    del state[seq]
                    continue
                state[seq] = [text + choice[1], pos + 1, len(step)]
                step.append((choice[0], pos, seq, True))
            if not step:
                break
            decode(step)
            current = {seq: logits(i) for seq, (_, _, i) in state.items()}
        answers.update({seq: text + "<unfinished>" for seq, (text, _, _) in state.items()})
        return [answers[seq] for seq in range(len(idx))]

    out: list[str] = []
    seconds = []
    for _ in range(spec["runs"] + 1):  # the first repetition warms up
        t = time.perf_counter()
        ran[0] = 0
        out = [""] * len(prompts)
        for p in passes:
            for k, answer in zip(p["idx"], judge(p["idx"], p["prefix"])):
                out[k] = answer
        seconds.append(time.perf_counter() - t)
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    return {"load_s": load_s, "seconds": seconds[1:], "answers": out, "run_tokens": ran[0]}


def vocab_mapper(rows: list[int | None] | None, vocab_size: int):
    """A function from a pruned head's logits to vocabulary-indexed logits (-inf where the head has no row), for
    the torch-free grammar. The index tensors are built here, once, outside the timed steps: a Python walk of a
    128k-entry vocabulary costs ~10 ms a call."""
    import torch

    if rows is None:
        return lambda x: x.float()
    keep = torch.tensor([i for i, r in enumerate(rows) if r is not None], dtype=torch.long)
    head_rows = torch.tensor([r for r in rows if r is not None], dtype=torch.long)

    def vocab_logits(x):
        full = torch.full((vocab_size,), float("-inf"))
        full[keep] = x.float()[head_rows]
        return full

    return vocab_logits


def _worker_executorch(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from .export.executorch import ExecuTorchBackend

    t0 = time.perf_counter()
    b = ExecuTorchBackend(spec["pte"], n_threads=spec["threads"])
    load_s = time.perf_counter() - t0
    ids = spec["ids"]
    grammar = _Grammar(spec["grammar"])
    vocab_logits = vocab_mapper(b.rows(range(spec["vocab_size"])) if b._row is not None else None, spec["vocab_size"])

    prefix_len = spec["prefix_len"]

    def run(cached: bool):
        t = time.perf_counter()
        if cached:  # the static KV cache still holds the policy prefix: continue after it
            b.pos = prefix_len
            lg = vocab_logits(b._run(ids[prefix_len:]))
        else:
            lg = vocab_logits(b.prefill(ids))
        t_pre = time.perf_counter()
        answer, steps = _decode(grammar, lg, lambda tid: vocab_logits(b.step(tid)))
        return answer, t_pre - t, time.perf_counter() - t

    res = {"load_s": load_s}
    for mode in ("cold", "cached"):
        if mode == "cached":
            b.prefill(ids[:prefix_len])
        run(mode == "cached")  # warm-up
        pre, ttv, answers = [], [], set()
        for _ in range(spec["runs"]):
            a, p, t = run(mode == "cached")
            pre.append(p)
            ttv.append(t)
            answers.add(a)
        res[mode] = {"ttv_s": _stats(ttv), "prefill_s": _stats(pre), "answers": sorted(answers)}
    b.prefill(ids)
    step_t = []
    for _ in range(DECODE_STEPS):
        t = time.perf_counter()
        b.step(spec["decode_token"])
        step_t.append(time.perf_counter() - t)
    res["decode_step_s"] = _stats(step_t)
    return res


def _worker_pocketguard(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    from .guard import Guard
    from .model import KVCache
    from .policy import Policy

    t0 = time.perf_counter()
    kernel = spec.get("kernel", "auto")
    if kernel in ("auto", "amx") and spec.get("is_artifact"):
        from .runtime_cpu import available, load_fast

        if kernel == "amx" and not available()[0]:
            raise RuntimeError(f"AMX kernel unavailable: {available()[1]}")
        loaded = load_fast(spec["model"], accelerate_model=True)
    else:
        from .checkpoint import load

        loaded = load(spec["model"])
        if spec.get("float_dtype") == "bfloat16" and not spec.get("is_artifact"):
            loaded.model.to(torch.bfloat16)  # AMX-BF16 / AVX512-BF16 through oneDNN
    load_s = time.perf_counter() - t0
    model, tok = loaded.model, loaded.tokenizer
    info = getattr(model, "runtime_cpu", {"kernel": "portable"})
    policy = Policy.default()
    messages = spec["messages"]
    res = {"load_s": load_s, "kernel": info.get("kernel", "portable")}
    for mode in ("cold", "cached"):
        g = Guard(model, tok, policy, prefix_cache=(mode == "cached"))
        g.moderate(messages)  # warm-up (and, cached, fills the policy prefix)
        pre, ttv, answers = [], [], set()
        for _ in range(spec["runs"]):
            t = time.perf_counter()
            v = g.moderate(messages)
            ttv.append(time.perf_counter() - t)
            pre.append(v.timings["prefill_ms"] / 1000)
            answers.add(v.answer if v.error is None else f"<error: {v.error}>")
        res[mode] = {"ttv_s": _stats(ttv), "prefill_s": _stats(pre), "answers": sorted(answers),
                     "prompt_tokens": v.prompt_tokens, "cached_tokens": v.cached_tokens}
    ids = spec["ids"]
    with torch.inference_mode():
        cache = KVCache(model.args, 1, len(ids) + DECODE_STEPS + 1)
        model(torch.tensor([ids]), cache=cache, last_only=True)
        step_t = []
        for _ in range(DECODE_STEPS):
            t = time.perf_counter()
            model(torch.tensor([[spec["decode_token"]]]), cache=cache, last_only=True)
            step_t.append(time.perf_counter() - t)
    res["decode_step_s"] = _stats(step_t)
    return res


ALTERNATIVES = {
    "amx": "runtime_cpu int4xint8 (load_fast; AMX, VNNI or AVX2)",
    "portable": "pocketguard.kernels fast path (tiled dequantize + fp32 F.linear, int8 activations)",
    "float32": "dequantized float model, fp32 F.linear (MKL)",
    "bfloat16": "dequantized float model in bf16 (oneDNN AMX-BF16)",
}


def _worker_alternative(spec: dict) -> dict:
    """Whole-model prefill/decode of one CPU execution strategy (same weights), for the alternatives table."""
    import torch

    torch.set_num_threads(spec["threads"])
    from .model import KVCache

    kind = spec["alternative"]
    t0 = time.perf_counter()
    if kind == "amx":
        from .runtime_cpu import load_fast

        model = load_fast(spec["model"]).model
        info = getattr(model, "runtime_cpu", {})
        if info.get("kernel", "portable") == "portable":  # AMX, AVX-512 VNNI or AVX2: whichever runtime_cpu runs here
            raise RuntimeError(f"runtime_cpu kernel unavailable: {info.get('reason', 'not accelerated')}")
    else:
        from .compress.artifact import load_artifact

        model = load_artifact(spec["model"]).model
        if kind in ("float32", "bfloat16"):
            from .export.hf import dequantized_model

            model = dequantized_model(model)
            if kind == "bfloat16":
                model = model.to(torch.bfloat16)
    load_s = time.perf_counter() - t0
    ids = torch.tensor([spec["ids"]])
    dt = next(p for p in model.parameters() if p.is_floating_point()).dtype
    pre, steps = [], []
    with torch.inference_mode():
        for r in range(spec["runs"] + 1):
            cache = KVCache(model.args, 1, ids.shape[1] + DECODE_STEPS + 1, dtype=dt)
            t = time.perf_counter()
            model(ids, cache=cache, last_only=True)
            if r:
                pre.append(time.perf_counter() - t)
            for _ in range(4 if r else 1):
                t = time.perf_counter()
                model(torch.tensor([[spec["decode_token"]]]), cache=cache, last_only=True)
                if r:
                    steps.append(time.perf_counter() - t)
    return {"load_s": load_s, "prefill_s": _stats(pre), "decode_step_s": _stats(steps),
            "kernel": getattr(model, "runtime_cpu", {}).get("kernel")}


WORKERS = {"pocketguard": _worker_pocketguard, "llamacpp": _worker_llamacpp, "llamacpp_batched": _worker_llamacpp_batched,
           "executorch": _worker_executorch, "alternative": _worker_alternative}


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine, from /proc/stat."""
    try:
        f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    f = f[:8]  # user nice system idle iowait irq softirq steal; guest time is already counted in user
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    return sum(f) - idle, sum(f)


def others_share(before: tuple[int, int], after: tuple[int, int], own_cpu_s: float) -> float | None:
    """The share of all cores' time that other processes took between two `_busy_jiffies()` readings, given the
    CPU seconds the measured process used itself meanwhile (None: /proc/stat could not be read)."""
    (busy0, total0), (busy1, total1) = before, after
    if total1 <= total0:
        return None
    hz = os.sysconf("SC_CLK_TCK")
    return max(0.0, ((busy1 - busy0) / hz - own_cpu_s) / ((total1 - total0) / hz))


def contended(share: float, threads: int) -> bool:
    """Whether other processes took CPU time the measured run needed: more than the cores its `threads` left idle,
    with 5 % of the machine as slack. (Share of all cores: a 1-thread run on 2 cores beside one busy process sees
    50 % but keeps its own core; with every core in use, anything above 5 % contends.)"""
    cores = os.cpu_count() or 1
    return share * cores > max(0, cores - threads) + 0.05 * cores


def contention_note(shares: list[float], threads: int) -> str:
    """What a report says after other processes' CPU shares: contended or not, for `threads`."""
    if any(contended(s, threads) for s in shares):
        return " — CONTENDED: timings are not trustworthy, rerun on an idle machine"
    return f" (no contention for {threads} threads)"


def own_cpu_s(ru=None) -> float:
    """CPU seconds (user + system) this process has used so far (or as of `ru`, a getrusage result)."""
    import resource

    ru = ru or resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _run_worker(name: str, spec: dict, workdir: Path, timeout: float | None = None) -> dict:
    """Run one runtime in a fresh interpreter; returns its results plus its own peak RSS, and how much CPU
    other processes took meanwhile (a benchmark on a shared machine must say when it was not alone)."""
    spec_path = workdir / f"spec-{name}.json"
    out_path = workdir / f"result-{name}.json"
    spec_path.write_text(json.dumps(spec))
    out_path.unlink(missing_ok=True)
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(spec["threads"]))
    cmd = [sys.executable, "-m", "pocketguard.bench_workers", name, str(spec_path), str(out_path)]
    t0 = time.perf_counter()
    jiffies0 = _busy_jiffies()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=str(Path(__file__).resolve().parent.parent))
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        return {"error": f"timed out after {timeout:.0f} s"}
    # (peak RSS comes from the worker itself: RUSAGE_CHILDREN is a max over all children, see _peak_rss_bytes)
    if proc.returncode != 0 or not out_path.exists():
        tail = (stderr or stdout or "").strip().splitlines()[-8:]
        return {"error": f"exit code {proc.returncode}: " + " | ".join(tail)}
    res = json.loads(out_path.read_text())
    res["wall_s"] = time.perf_counter() - t0
    share = others_share(jiffies0, _busy_jiffies(), res.get("cpu_s", 0.0))
    if share is not None:
        res["others_cpu_share"] = share  # of all cores' time
    return res


def _peak_rss_bytes(ru) -> int:
    """This process's peak RSS. VmHWM belongs to the address space exec created, so it is this worker's own;
    Linux carries `ru_maxrss` over fork+exec from the parent (a parent that just exported a model would
    otherwise lend its peak to every worker)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return ru.ru_maxrss * 1024


def _worker_entry(name: str, spec_path: str, out_path: str) -> int:
    import resource

    spec = json.loads(Path(spec_path).read_text())
    res = WORKERS[name](spec)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    res["peak_rss_bytes"] = _peak_rss_bytes(ru)
    res["cpu_s"] = own_cpu_s(ru)
    Path(out_path).write_text(json.dumps(res))
    return 0


# -------------------------------------------------------------------------------------------- exports


def _code_tag(module: str) -> str:
    """Short hash of an exporter's source: a changed exporter never reuses a stale cached export."""
    import hashlib

    return hashlib.sha256((Path(__file__).parent / module).read_bytes()).hexdigest()[:8]


def _model_tag(model_dir: Path) -> str:
    """The model folder's name and a short hash of its full path: two models named alike in different folders (both
    `guard`) shared one cached export, and the second was timed on the first's file."""
    import hashlib

    return f"{model_dir.name}-{hashlib.sha256(str(Path(model_dir).resolve()).encode()).hexdigest()[:8]}"


def _ensure_gguf(model_dir: Path, workdir: Path, qtype: str, log) -> Path:
    out = workdir / f"{_model_tag(model_dir)}-{qtype}-{_code_tag('export/gguf.py')}.gguf"
    if out.exists() and out.stat().st_mtime >= _newest(model_dir):
        return out
    log(f"exporting GGUF {qtype} -> {out} ...")
    from .checkpoint import load
    from .export.gguf import export_gguf
    from .policy import Policy

    loaded = load(model_dir)
    export_gguf(loaded.model, loaded.tokenizer, out, qtype, policy=Policy.default())
    return out


def _ensure_pte(model_dir: Path, workdir: Path, max_len: int, log) -> Path:
    out = workdir / f"{_model_tag(model_dir)}-8da4w-{max_len}-{_code_tag('export/executorch.py')}.pte"
    if out.exists() and out.stat().st_mtime >= _newest(model_dir):
        return out
    log(f"exporting ExecuTorch XNNPACK 8da4w (max_len {max_len}) -> {out} (slow: minutes for a 1B model) ...")
    # A subprocess: export peaks at several GB and we want none of it in this process.
    code = ("import sys; from pocketguard.checkpoint import load; from pocketguard.export.executorch import export_executorch; "
            "l = load(sys.argv[1]); export_executorch(l.model, sys.argv[2], max_len=int(sys.argv[3]))")
    r = subprocess.run([sys.executable, "-c", code, str(model_dir), str(out), str(max_len)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError("ExecuTorch export failed: " + " | ".join(r.stderr.strip().splitlines()[-6:]))
    return out


def _newest(path: Path) -> float:
    return max(f.stat().st_mtime for f in Path(path).iterdir()) if Path(path).is_dir() else Path(path).stat().st_mtime


if __name__ == "__main__":
    sys.exit(_worker_entry(*sys.argv[1:4]))
