"""The guard runtime: conversation in, Verdict out.

Three ideas live here:
- *Constrained decoding*: only answers the policy allows can be produced (`safe`, or `unsafe` plus distinct
  codes of the policy). Anything else — a head that cannot spell an answer, a decode that runs out of
  steps — is an `error` verdict. Nothing defaults to `safe`.
- *Policy-prefix cache*: the task line and category list are the same for every request with the same
  policy and judged role, so their KV is computed once and copied into each request's cache.
- *Context policy*: when the prompt does not fit, drop the earliest turns first and keep the judged turn
  whole; if the judged turn alone does not fit, judge it in overlapping windows and report the worst.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Literal, Sequence

import torch

from .conversation import Conversation, ConversationError, ConversationLike, Role, as_conversation
from .model import KVCache, Transformer
from .policy import Policy
from .prompt import encode_prefix, encode_suffix, encode_turn
from .tokenizer import Tokenizer

Status = Literal["safe", "unsafe", "error"]
DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default-guard"


@dataclass
class Verdict:
    status: Status
    role: Role | None = None
    categories: list[str] = field(default_factory=list)
    category_names: list[str] = field(default_factory=list)
    p_unsafe: float | None = None
    category_scores: dict[str, float] | None = None
    answer: str = ""
    error: str | None = None
    prompt_tokens: int = 0
    cached_tokens: int = 0
    answer_tokens: int = 0
    truncation: dict | None = None
    notes: list[str] = field(default_factory=list)  # what of the input was not judged (Conversation.notes)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        """True for `unsafe` and for `error`: a guard that cannot judge fails closed."""
        return self.status != "safe"

    @property
    def safe(self) -> bool:
        return self.status == "safe"

    def to_dict(self) -> dict:
        return asdict(self) | {"flagged": self.flagged}

    @classmethod
    def failure(cls, message: str, role: Role | None = None) -> "Verdict":
        return cls(status="error", role=role, error=message)


class AnswerGrammar:
    """Which answer strings a policy allows, and which head tokens can extend a partial answer."""

    def __init__(self, tokenizer: Tokenizer, model: Transformer, policy: Policy):
        self.codes = policy.codes
        self.eot = tokenizer.special("<|eot_id|>")
        alphabet = set("safeun\n,") | set("".join(self.codes))
        head_ids = (
            model.output_token_ids.tolist() if model.output_token_ids is not None else range(model.args.vocab_size)
        )
        specials = tokenizer.special_ids
        # Candidate tokens: those whose text uses only answer characters (computed once per grammar).
        self.candidates: list[tuple[int, str]] = []
        for tid in head_ids:
            if tid in specials:
                continue
            text = tokenizer.decode([tid])
            if text and set(text) <= alphabet:
                self.candidates.append((tid, text))
        self.eot_row = model.head_rows([self.eot])[0]
        self.rows = dict(zip([t for t, _ in self.candidates], model.head_rows([t for t, _ in self.candidates])))

    def _parts(self, text: str) -> tuple[list[str], str] | None:
        if not text.startswith("unsafe\n"):
            return None
        *done, last = text[len("unsafe\n"):].split(",")
        if len(set(done)) != len(done) or any(c not in self.codes for c in done):
            return None
        return done, last

    def is_prefix(self, text: str) -> bool:
        if "safe".startswith(text) or "unsafe\n".startswith(text):
            return True
        parts = self._parts(text)
        return parts is not None and any(c.startswith(parts[1]) and c not in parts[0] for c in self.codes)

    def is_complete(self, text: str) -> bool:
        if text == "safe":
            return True
        parts = self._parts(text)
        return parts is not None and parts[1] in self.codes and parts[1] not in parts[0]

    def parse(self, text: str) -> tuple[Status, list[str]]:
        """Strict parse of a finished answer (also used for other runtimes' raw outputs)."""
        text = text.strip()
        if text == "safe":
            return "safe", []
        if self.is_complete(text):
            return "unsafe", self._parts(text)[0] + [self._parts(text)[1]]
        return "error", []

    def allowed(self, text: str) -> list[tuple[int, int, str]]:
        """(vocab id, head row, token text) of every token that keeps `text` a valid answer prefix."""
        out = [(t, self.rows[t], s) for t, s in self.candidates if self.rows[t] is not None and self.is_prefix(text + s)]
        if self.is_complete(text) and self.eot_row is not None:
            out.append((self.eot, self.eot_row, ""))
        return out

    @property
    def max_steps(self) -> int:
        return 4 + 4 * len(self.codes)


@dataclass
class _Job:
    """One prompt to run: a (possibly truncated) conversation's turn tokens, plus bookkeeping."""

    index: int
    role: Role
    turns: list[list[int]]
    truncation: dict | None = None


class Guard:
    def __init__(
        self,
        model: Transformer,
        tokenizer: Tokenizer,
        policy: Policy | None = None,
        max_context: int | None = None,
        threshold: float | None = None,
        prefix_cache: bool = True,
        meta: dict | None = None,
    ):
        if tokenizer.vocab_size > model.args.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.args.vocab_size}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.policy = policy or Policy.default()
        self.max_context = min(max_context or model.args.max_seq_len, model.args.max_seq_len)
        self.threshold = threshold
        self.use_prefix_cache = prefix_cache
        self.meta = meta or {}
        self._prefix_cache: OrderedDict[tuple, tuple[list[int], KVCache | None]] = OrderedDict()
        self._grammars: dict[tuple, AnswerGrammar] = {}
        self._lock = threading.Lock()
        self.device = next(model.parameters()).device
        self.cache_dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype
        self._first = {w: tokenizer.encode(w)[0] for w in ("safe", "unsafe")}

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path | None = None, policy: Policy | None = None, device: str = "cpu", **kwargs) -> "Guard":
        """Load any checkpoint `checkpoint.load` understands; no path means the shipped default guard.

        A compressed artifact on the CPU runs on `runtime_cpu`'s AMX int4 x int8 kernel where the CPU has
        one (same verdicts; ~8x faster than the portable kernels on the default guard), else on the portable
        kernels; `POCKETGUARD_CPU_KERNEL=portable` forces the latter. `meta["runtime_cpu"]` says which runs."""
        from .checkpoint import load
        from .artifact import is_artifact

        path = Path(path) if path is not None else DEFAULT_MODEL_DIR
        if torch.device(device).type == "cpu" and is_artifact(path):
            from .runtime_cpu import load_fast

            loaded = load_fast(path)
        else:
            loaded = load(path, device=device)
        meta = loaded.meta or {}
        if policy is None and meta.get("policy"):
            policy = Policy.from_dict(meta["policy"], source=str(path))
        kwargs.setdefault("max_context", meta.get("max_context"))
        return cls(loaded.model, loaded.tokenizer, policy, meta=meta, **kwargs)

    # ---------------------------------------------------------------- public API
    def moderate(
        self, conversation: ConversationLike, role: str | None = None, policy: Policy | None = None, category_scores: bool = False
    ) -> Verdict:
        """Judge one conversation. Malformed input raises ConversationError; model failures give `error`."""
        conv = as_conversation(conversation, role)
        return self._run([conv], policy or self.policy, category_scores)[0]

    def moderate_batch(
        self,
        conversations: Iterable[ConversationLike],
        roles: Sequence[str | None] | None = None,
        policy: Policy | None = None,
        category_scores: bool = False,
        batch_size: int = 8,
    ) -> list[Verdict]:
        """Judge many; an item that cannot be parsed gets an `error` verdict instead of stopping the batch."""
        items = list(conversations)
        roles = list(roles) if roles is not None else [None] * len(items)
        verdicts: list[Verdict | None] = [None] * len(items)
        good: list[tuple[int, Conversation]] = []
        for i, (item, r) in enumerate(zip(items, roles)):
            try:
                good.append((i, as_conversation(item, r)))
            except ConversationError as e:
                verdicts[i] = Verdict.failure(str(e))
        for start in range(0, len(good), batch_size):
            chunk = good[start : start + batch_size]
            for (i, _), v in zip(chunk, self._run([c for _, c in chunk], policy or self.policy, category_scores)):
                verdicts[i] = v
        return verdicts  # type: ignore[return-value]

    def stream(self, conversation: ConversationLike, policy: Policy | None = None, category_scores: bool = False):
        """Judge an agent reply while it streams: `s = guard.stream(msgs); v = s.feed(chunk)` (see stream.py)."""
        from .stream import ResponseStream

        return ResponseStream(self, as_conversation(conversation), policy, category_scores)

    def parse_answer(self, text: str, policy: Policy | None = None) -> Verdict:
        """Turn a raw answer produced elsewhere (llama.cpp, ExecuTorch, vLLM) into a Verdict, strictly."""
        policy = policy or self.policy
        status, cats = self._grammar(policy).parse(text)
        if status == "error":
            return Verdict(status="error", answer=text, error=f"malformed guard answer {text!r}")
        return Verdict(status=status, categories=cats, category_names=policy.names(cats), answer=text)

    # ---------------------------------------------------------------- internals
    def _grammar(self, policy: Policy) -> AnswerGrammar:
        key = tuple(policy.codes)
        if key not in self._grammars:
            self._grammars[key] = AnswerGrammar(self.tokenizer, self.model, policy)
        return self._grammars[key]

    def _prefix(self, policy: Policy, role: Role) -> tuple[list[int], KVCache | None]:
        """Prefix tokens and, with the cache on, their KV (batch 1), kept for the 16 latest (policy, role)."""
        key = (tuple((c.code, c.name) for c in policy.categories), role)
        with self._lock:
            if key in self._prefix_cache:
                self._prefix_cache.move_to_end(key)
                return self._prefix_cache[key]
        ids = encode_prefix(self.tokenizer, policy, role)
        kv = None
        if self.use_prefix_cache:
            kv = KVCache(self.model.args, 1, len(ids), self.device, self.cache_dtype)
            with torch.inference_mode():
                self.model(torch.tensor([ids], device=self.device), cache=kv, last_only=True)
        with self._lock:
            self._prefix_cache[key] = (ids, kv)
            while len(self._prefix_cache) > 16:
                self._prefix_cache.popitem(last=False)
        return ids, kv

    def _plan(self, index: int, conv: Conversation, budget: int) -> list[_Job]:
        """Apply the context policy: drop earliest turns; window the judged turn if it alone is too long."""
        role = conv.judged
        turns = [encode_turn(self.tokenizer, m.role, m.content) for m in conv.messages]
        total = sum(map(len, turns))
        dropped = 0
        while total > budget and dropped < len(turns) - 1:
            total -= len(turns[dropped])
            dropped += 1
        kept = turns[dropped:]
        info = {"dropped_turns": dropped, "dropped_tokens": sum(map(len, turns[:dropped]))} if dropped else None
        if total <= budget:
            return [_Job(index, role, kept, info)]
        # The judged turn alone does not fit: overlapping windows over its content, each judged on its own.
        content_ids = self.tokenizer.encode(conv.messages[-1].content.strip())
        overhead = len(encode_turn(self.tokenizer, role, "x")) + 8  # header, blank line, re-tokenisation slack
        width = budget - overhead
        if width < 16:
            raise ValueError(f"max_context {self.max_context} leaves no room for the conversation (policy prompt too long)")
        stride = max(1, width - width // 4)
        jobs = []
        for start in range(0, max(1, len(content_ids) - width + stride), stride):
            piece = self.tokenizer.decode(content_ids[start : start + width])
            turn = encode_turn(self.tokenizer, role, piece)
            while len(turn) > budget:  # decoding/re-encoding can grow a window slightly
                piece = piece[: int(len(piece) * 0.9)]
                turn = encode_turn(self.tokenizer, role, piece)
            jobs.append(_Job(index, role, [turn]))
        window_info = {
            "dropped_turns": len(turns) - 1,
            "dropped_tokens": sum(map(len, turns[:-1])),
            "windows": len(jobs),
            "window_tokens": width,
            "overlap_tokens": width - stride,
            "judged_turn_tokens": len(content_ids),
        }
        for j in jobs:
            j.truncation = window_info
        return jobs

    def _run(self, convs: list[Conversation], policy: Policy, category_scores: bool) -> list[Verdict]:
        t0 = time.perf_counter()
        grammar = self._grammar(policy)
        jobs: list[_Job] = []
        for i, conv in enumerate(convs):
            prefix_ids, _ = self._prefix(policy, conv.judged)
            suffix_len = len(encode_suffix(self.tokenizer, conv.judged))
            budget = self.max_context - len(prefix_ids) - suffix_len - grammar.max_steps
            jobs.extend(self._plan(i, conv, budget))
        by_role: dict[Role, list[_Job]] = {}
        for j in jobs:
            by_role.setdefault(j.role, []).append(j)
        results: dict[int, list[Verdict]] = {}
        for role, group in by_role.items():
            for job, v in zip(group, self._decode(group, policy, grammar, role, category_scores)):
                v.truncation = job.truncation
                results.setdefault(job.index, []).append(v)
        out = [_worst(results[i], policy) for i in range(len(convs))]
        total = (time.perf_counter() - t0) * 1000
        for v, conv in zip(out, convs):
            v.timings["total_ms"] = total / len(out)
            v.notes = list(conv.notes)
        return out

    def _new_cache(self, batch: int, length: int, policy: Policy, grammar: AnswerGrammar, category_scores: bool) -> KVCache:
        """A cache with room for `length` prompt tokens plus the answer steps (and category scoring)."""
        extra = grammar.max_steps + (max(len(self.tokenizer.encode(c)) for c in policy.codes) + 4 if category_scores else 0)
        return KVCache(self.model.args, batch, length + extra, self.device, self.cache_dtype)

    @torch.inference_mode()
    def _decode(self, jobs: list[_Job], policy: Policy, grammar: AnswerGrammar, role: Role, category_scores: bool) -> list[Verdict]:
        """Prefill a batch of prompts (on top of the cached policy prefix), then answer."""
        t0 = time.perf_counter()
        prefix_ids, prefix_kv = self._prefix(policy, role)
        suffix = encode_suffix(self.tokenizer, role)
        bodies = [[t for turn in j.turns for t in turn] + suffix for j in jobs]
        if prefix_kv is None:
            bodies = [prefix_ids + b for b in bodies]
        B, T = len(jobs), max(map(len, bodies))
        start = len(prefix_ids) if prefix_kv is not None else 0
        cache = self._new_cache(B, start + T, policy, grammar, category_scores)
        if prefix_kv is not None:
            cache.load_prefix(prefix_kv)
        tokens = torch.zeros(B, T, dtype=torch.long, device=self.device)
        valid = torch.zeros(B, T, dtype=torch.bool, device=self.device)
        for b, body in enumerate(bodies):
            tokens[b, : len(body)] = torch.tensor(body)
            valid[b, : len(body)] = True
        logits = self.model(tokens, cache=cache, valid=valid, last_only=True)[:, 0].float()
        t_prefill = time.perf_counter()
        verdicts = [
            Verdict(status="error", role=role, prompt_tokens=len(prefix_ids) + sum(map(len, j.turns)) + len(suffix), cached_tokens=start)
            for j in jobs
        ]
        self._answer(cache, logits, verdicts, policy, grammar, category_scores)
        for v in verdicts:
            v.timings["prefill_ms"] = (t_prefill - t0) * 1000
        return verdicts

    @torch.inference_mode()
    def _answer(self, cache: KVCache, logits: torch.Tensor, verdicts: list[Verdict], policy: Policy, grammar: AnswerGrammar,
                category_scores: bool) -> None:
        """Fill `verdicts` from the logits after the prompt: p_unsafe, the constrained answer, category scores.

        The answer steps go on top of `cache` and are rolled back afterwards, so the caller's cache still ends
        at the prompt (streaming keeps extending it).
        """
        t0 = time.perf_counter()
        B = len(verdicts)
        rows = self.model.head_rows([self._first["safe"], self._first["unsafe"]])
        if None in rows:
            for v in verdicts:
                v.error = "the model's output head cannot emit 'safe'/'unsafe'"
            return
        p_unsafe = torch.softmax(logits[:, rows], dim=-1)[:, 1]
        for b, v in enumerate(verdicts):
            v.p_unsafe = float(p_unsafe[b])
        after_prompt = cache.snapshot()

        texts, done = [""] * B, [False] * B
        first_choice = None
        if self.threshold is not None:  # thresholded mode: the first token follows p_unsafe, not argmax
            first_choice = ["unsafe" if float(p) >= self.threshold else "safe" for p in p_unsafe]
        for step in range(grammar.max_steps):
            nxt = torch.zeros(B, 1, dtype=torch.long, device=self.device)
            live = torch.zeros(B, 1, dtype=torch.bool, device=self.device)
            for b in range(B):
                if done[b]:
                    continue
                options = grammar.allowed(texts[b])
                if step == 0 and first_choice is not None:
                    options = [o for o in options if o[0] == self._first[first_choice[b]]]
                if not options:
                    verdicts[b].error = f"the model cannot continue the answer {texts[b]!r} under this policy"
                    done[b] = True
                    continue
                tid, _, text = max(options, key=lambda o: float(logits[b, o[1]]))
                verdicts[b].answer_tokens += 1
                if tid == grammar.eot:
                    done[b] = True
                    continue
                texts[b] += text
                nxt[b, 0], live[b, 0] = tid, True
            if all(done):
                break
            logits = self.model(nxt, cache=cache, valid=live, last_only=True)[:, 0].float()
        cache.restore(after_prompt)
        t_decode = time.perf_counter()

        for b, v in enumerate(verdicts):
            v.answer = texts[b]
            if not done[b]:
                v.error = f"answer did not finish within {grammar.max_steps} tokens: {texts[b]!r}"
            elif v.error is None:
                status, cats = grammar.parse(texts[b])
                v.status, v.categories, v.category_names = status, cats, policy.names(cats)
                if status == "error":
                    v.error = f"malformed guard answer {texts[b]!r}"
            v.timings["decode_ms"] = (t_decode - t0) * 1000
        if category_scores:
            for b, s in enumerate(self._category_scores(cache, policy, p_unsafe)):
                verdicts[b].category_scores = s

    def _category_scores(self, cache: KVCache, policy: Policy, p_unsafe: torch.Tensor) -> list[dict[str, float]]:
        """score(c) = p_unsafe · P(c is the first listed code | "unsafe\\n"), normalised over the policy's codes.

        Each code's tokens are teacher-forced after `unsafe\\n` and followed by `,` or end of turn, so S1 is
        not credited with the mass of S10. Runs on top of the prompt cache and rolls it back afterwards.
        """
        head = self.model.head_rows
        lead = self.tokenizer.encode("unsafe\n")
        term = [r for r in head([self.tokenizer.encode(",")[0], self.tokenizer.special("<|eot_id|>")]) if r is not None]
        B = cache.batch
        base = cache.snapshot()
        lead_logits = self.model(torch.tensor([lead] * B, device=self.device), cache=cache)[:, -1].float()
        after_lead = cache.snapshot()
        logp = torch.zeros(B, len(policy.codes))
        for ci, code in enumerate(policy.codes):
            ids = self.tokenizer.encode(code)
            rows = head(ids)
            if None in rows or not term:
                logp[:, ci] = float("-inf")
                continue
            lp = torch.log_softmax(lead_logits, -1)[:, rows[0]]
            out = self.model(torch.tensor([ids] * B, device=self.device), cache=cache).float()
            steps = torch.log_softmax(out, -1)
            for k in range(1, len(ids)):
                lp = lp + steps[:, k - 1, rows[k]]
            lp = lp + torch.logsumexp(steps[:, -1, term], -1)
            logp[:, ci] = lp.cpu()
            cache.restore(after_lead)
        cache.restore(base)
        dist = torch.softmax(logp, -1)
        return [{c: float(p_unsafe[b]) * float(dist[b, i]) for i, c in enumerate(policy.codes)} for b in range(B)]


def _worst(verdicts: list[Verdict], policy: Policy) -> Verdict:
    """Combine window verdicts: any unsafe → unsafe (union of codes); else any error → error; else safe."""
    if len(verdicts) == 1:
        return verdicts[0]
    unsafe = [v for v in verdicts if v.status == "unsafe"]
    errors = [v for v in verdicts if v.status == "error"]
    pick = unsafe[0] if unsafe else errors[0] if errors else verdicts[0]
    cats = {c for v in unsafe for c in v.categories}
    codes = [c for c in policy.codes if c in cats]
    scores = None
    if all(v.category_scores for v in verdicts):
        scores = {c: max(v.category_scores[c] for v in verdicts) for c in policy.codes}
    ps = [v.p_unsafe for v in verdicts if v.p_unsafe is not None]
    return Verdict(
        status=pick.status,
        role=pick.role,
        categories=codes,
        category_names=policy.names(codes),
        p_unsafe=max(ps) if ps else None,
        category_scores=scores,
        answer=pick.answer,
        error=pick.error,
        prompt_tokens=sum(v.prompt_tokens for v in verdicts),
        cached_tokens=sum(v.cached_tokens for v in verdicts),
        answer_tokens=sum(v.answer_tokens for v in verdicts),
        truncation=pick.truncation,
        timings={k: sum(v.timings.get(k, 0.0) for v in verdicts) for k in verdicts[0].timings},
    )
