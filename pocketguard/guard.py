"""The guard runtime: conversation in, Verdict out.

Five ideas live here:
- *Constrained decoding*: only answers the policy allows can be produced (`safe`, or `unsafe` plus distinct
  codes of the policy). Anything else — a head that cannot spell an answer, a decode that runs out of
  steps — is an `error` verdict. Nothing defaults to `safe`.
- *Policy-prefix cache*: the task line and category list are the same for every request with the same
  policy and judged role, so their KV is computed once and copied into each request's cache.
- *Packed batches*: many prompts (and the windows of over-long turns) run as one pass over their real tokens
  only (`packed.py`); verdicts are bit-identical to judging each alone, and the answer steps of all of them
  are one vectorised loop (`answer.decode`).
- *Context policy*: when the prompt does not fit, drop the earliest turns first and keep the judged turn
  whole; if the judged turn alone does not fit, judge it in overlapping windows and report the worst.
- *Subsets by filtering*: a policy that only leaves categories out of the guard's own is judged under the whole
  of it, and the verdict kept to the categories asked for (`subset_mode`, `answer.keep_to`).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import torch

from . import packed
from .answer import AnswerGrammar, Verdict, decode, finish, keep_to, p_unsafe, scores_needed
from .conversation import Conversation, ConversationError, ConversationLike, Role, as_conversation
from .model import Transformer
from .policy import SUBSET_MODES, Policy, PolicyError
from .prompt import MAX_MARKUP_PARTS, earliest_to_drop, encode_prefix, encode_suffix, encode_turn, markup_parts
from .stream import ResponseStream
from .tokenizer import Tokenizer

DEFAULT_MODEL_DIR = Path(__file__).parent / "assets" / "default-guard"
__all__ = ["AnswerGrammar", "Guard", "Verdict", "as_conversation"]


@dataclass
class _Job:
    """One prompt to run: a (possibly truncated) conversation's turn tokens, plus bookkeeping."""

    index: int
    role: Role
    turns: list[list[int]]
    truncation: dict | None = None
    note: str | None = None


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
        subset_mode: str = "filter",
    ):
        if tokenizer.vocab_size > model.args.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.args.vocab_size}")
        if threshold is not None and not 0.0 <= threshold <= 1.0:  # above 1 nothing is ever flagged: not fail-closed
            raise ValueError(f"threshold must be a p_unsafe within [0, 1], not {threshold}")
        if max_context is not None and max_context < 1:
            raise ValueError(f"max_context must be a positive number of tokens, not {max_context}")
        if subset_mode not in SUBSET_MODES:
            raise ValueError(f"subset_mode must be one of {', '.join(SUBSET_MODES)}, not {subset_mode!r}")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.policy = policy or Policy.default()
        self.max_context = min(max_context or model.args.max_seq_len, model.args.max_seq_len)
        self.threshold = threshold
        self.use_prefix_cache = prefix_cache
        self.meta = meta or {}
        self.subset_mode = subset_mode
        # the policy the model was trained to read: its checkpoint's (an artifact's policy.toml, guard.json's), else the
        # one it is built with (a checkpoint that records none, a model in memory), else S1-S14
        self.own_policy = (Policy.from_dict(self.meta["policy"], source=self.meta.get("path") or "the checkpoint's policy")
                           if self.meta.get("policy") else self.policy)
        self._prefix_cache: OrderedDict[tuple, tuple[list[int], packed.Sequence | None]] = OrderedDict()
        self._grammars: OrderedDict[tuple, AnswerGrammar] = OrderedDict()
        self._lock = threading.Lock()
        self.device = next(model.parameters()).device
        # Prompt tokens per packed pass. On the CPU it bounds activation memory, not speed; on a GPU a pass costs
        # its launches more than its tokens, and 4,096 (~10 conversations) made labelling the unlabelled pool take
        # 182-410 s of a 30-minute lease, so there passes are 8x bigger (packed.GQA_SCORES bounds the attention).
        self.batch_tokens = 32768 if packed.padded(self.device) else 4096
        self.cache_dtype = next(p for p in model.parameters() if p.is_floating_point()).dtype

    # ---------------------------------------------------------------- loading
    @classmethod
    def load(cls, path: str | Path | None = None, policy: Policy | None = None, device: str = "cpu", **kwargs) -> "Guard":
        """Load any checkpoint `checkpoint.load` understands; no path means the shipped default guard.

        A compressed artifact on the CPU runs on `runtime_cpu`'s int4 x int8 kernel (AMX, AVX-512 VNNI or AVX2)
        where the CPU has one (same verdicts; several times faster than the portable kernels), else on the portable
        kernels; `POCKETGUARD_CPU_KERNEL=portable` forces the latter. `meta["runtime_cpu"]` says which runs. On CPUs
        with AVX-512 VNNI, attention runs in int8 by default, which moves scores slightly (`runtime_cpu.int8_attention`;
        `POCKETGUARD_ATTENTION=fp32` keeps fp32)."""
        from .checkpoint import load
        from .artifact import is_artifact

        path = Path(path) if path is not None else DEFAULT_MODEL_DIR
        if torch.device(device).type == "cpu" and is_artifact(path):
            from .runtime_cpu import load_fast

            loaded = load_fast(path)
        else:  # a float checkpoint: float32 where it fits in memory, else a GGUF's Q4_0 / Q8_0 linears run as
            # stored (the same weights in a fraction of the memory) and the rest in bfloat16 if it must (a warning says so)
            loaded = load(path, device=device, dtype="auto", keep_quantized="auto")
        return cls.from_loaded(loaded, policy, **kwargs)

    @classmethod
    def from_loaded(cls, loaded, policy: Policy | None = None, **kwargs) -> "Guard":
        """A guard over a `checkpoint.load` result, with the checkpoint's own policy and settings (guard.json's
        max_context and threshold) unless the caller gives them (the loaders checked them)."""
        meta = loaded.meta or {}
        for key in ("max_context", "threshold"):
            if kwargs.get(key) is None:
                kwargs[key] = meta.get(key)
        guard = cls(loaded.model, loaded.tokenizer, policy, meta=meta, **kwargs)
        if policy is None:  # the checkpoint's own policy (`own_policy`, parsed once by __init__), else S1-S14
            guard.policy = guard.own_policy
        return guard

    # ---------------------------------------------------------------- public API
    def moderate(
        self, conversation: ConversationLike, role: str | None = None, policy: Policy | None = None,
        category_scores: bool = False, trace: list | None = None,
    ) -> Verdict:
        """Judge one conversation. Malformed input raises ConversationError; model failures give `error`, as does a
        judged turn too long for even the narrowest window that max_context leaves (`_plan`).

        `trace`, when given, receives (answer text, margin) for every answer step the verdict came from: how far,
        in logits, each decision was from going the other way (`answer.decode`; all windows' steps, in order,
        for a windowed turn). A margin near 0 is a verdict any last-bit difference can flip."""
        conv = as_conversation(conversation, role)
        return self._run([conv], policy or self.policy, category_scores, traces=None if trace is None else [trace])[0]

    def moderate_batch(
        self,
        conversations: Iterable[ConversationLike],
        roles: Sequence[str | None] | None = None,
        policy: Policy | None = None,
        category_scores: bool = False,
        batch_size: int = 64,
        traces: list[list] | None = None,
    ) -> list[Verdict]:
        """Judge many, as packed passes of up to `batch_size` prompts and `batch_tokens` tokens; the same
        verdicts as `moderate` on each. An item that cannot be parsed, or not judged within max_context, gets an
        `error` verdict instead of stopping the batch. `traces`, when given, is one list per item (see `moderate`'s
        `trace`)."""
        if isinstance(conversations, (str, bytes, dict, Conversation)):  # one conversation, not many: never its characters
            raise ConversationError(f"moderate_batch takes a list of conversations, got one {type(conversations).__name__}: "
                                    "pass [it], or call moderate")
        if not isinstance(conversations, Iterable):  # None, a number: malformed input like any other, not a TypeError
            raise ConversationError(f"moderate_batch takes a list of conversations, got {type(conversations).__name__}")
        items = list(conversations)
        if traces is not None and len(traces) != len(items):
            raise ValueError(f"traces has {len(traces)} lists for {len(items)} conversations")
        roles = list(roles) if roles is not None else [None] * len(items)
        if len(roles) != len(items):  # zip would leave the items past the shorter list without a verdict
            raise ValueError(f"roles has {len(roles)} entries for {len(items)} conversations")
        verdicts: list[Verdict | None] = [None] * len(items)
        good: list[tuple[int, Conversation]] = []
        for i, (item, r) in enumerate(zip(items, roles)):
            try:
                good.append((i, as_conversation(item, r)))
            except ConversationError as e:
                verdicts[i] = Verdict.failure(str(e))
        if good:
            run = self._run([c for _, c in good], policy or self.policy, category_scores, batch_size,
                            None if traces is None else [traces[i] for i, _ in good])
            for (i, _), v in zip(good, run):
                verdicts[i] = v
        return verdicts  # type: ignore[return-value]

    def stream(self, conversation: ConversationLike, policy: Policy | None = None, category_scores: bool = False):
        """Judge an agent reply while it streams: `s = guard.stream(msgs); v = s.feed(chunk)` (see stream.py)."""
        return ResponseStream(self, as_conversation(conversation), policy, category_scores)

    def check_policy(self, policy: Policy, category_scores: bool = False) -> None:
        """Raise ValueError if `policy` leaves no room in max_context for a conversation judged under it, for either
        role (`_budget`, as `moderate` would count it): a setting to change, which a server checks per request before
        queueing it rather than failing the batch it joins. Tokenization only; the model does not run."""
        judging, keep = self._judging(policy)
        for role in ("user", "agent"):
            self._budget(judging, keep, role, scores_needed(category_scores, keep))

    def parse_answer(self, text: str, policy: Policy | None = None) -> Verdict:
        """Turn a raw answer produced elsewhere (llama.cpp, ExecuTorch, vLLM) into a Verdict, strictly."""
        policy = policy or self.policy
        status, cats = self._grammar(policy).parse(text)
        if status == "error":
            return Verdict(status="error", answer=text, error=f"malformed guard answer {text!r}")
        return Verdict(status=status, categories=cats, category_names=policy.names(cats), answer=text)

    # ---------------------------------------------------------------- internals
    def _grammar(self, policy: Policy) -> AnswerGrammar:
        """The answer grammar of the policy's codes, kept for the 64 latest code lists (a server takes a policy per
        request: kept for every one, they grew without bound)."""
        key = tuple(policy.codes)
        with self._lock:
            g = self._grammars.get(key)
            if g is not None:
                self._grammars.move_to_end(key)
                return g
        m = self.model
        head = m.output_token_ids.tolist() if m.output_token_ids is not None else range(m.args.vocab_size)
        g = AnswerGrammar(self.tokenizer, head, policy)
        g.rows = m.head_rows(g.ids)  # logits column of each candidate (None: the head cannot emit it)
        with self._lock:
            self._grammars[key] = g
            while len(self._grammars) > 64:
                self._grammars.popitem(last=False)
        return g

    def _judging(self, policy: Policy) -> tuple[Policy, Policy | None]:
        """(the policy the prompt lists, the policy verdicts are kept to, or None).

        In "filter" mode a policy that is the guard's own with categories left out is judged under the whole of it
        and the verdict kept to the categories asked for: the shipped guard, asked with a prompt that lists S1, S9 and
        S10 alone, scored harmful asks in exactly those categories low (median p_unsafe 0.19; recall 0.30 on the held-out
        sources), where judging under S1-S14 and keeping those codes caught 0.77 of them, flagging fewer harmful
        asks of the left-out categories (7 % against 9 % at the threshold that gives the prompt 0.37;
        docs/policy.md, *Subsets of the default*). "prompt" lists only the asked categories, as Llama Guard does."""
        if not isinstance(policy, Policy):
            raise PolicyError(f"policy must be a Policy (Policy.from_toml, Policy.from_dict, Policy.default().subset), "
                              f"not {type(policy).__name__}")
        if policy.alike(self.own_policy):  # the guard's own, perhaps under the default's other names: its own words
            return self.own_policy, None
        if self.subset_mode == "filter" and policy.within(self.own_policy):
            return self.own_policy, policy
        return policy, None

    def _prefix(self, policy: Policy, role: Role) -> tuple[list[int], packed.Sequence | None]:
        """Prefix tokens and, with the cache on, their KV, kept for the 16 latest (policy, role)."""
        key = (tuple((c.code, c.name) for c in policy.categories), role)
        with self._lock:
            if key in self._prefix_cache:
                self._prefix_cache.move_to_end(key)
                return self._prefix_cache[key]
        ids = encode_prefix(self.tokenizer, policy, role)
        seq = None
        if self.use_prefix_cache:
            seq = packed.Sequence(self.model, len(ids), self.device, self.cache_dtype)
            self._forward([seq], [ids])
        with self._lock:
            self._prefix_cache[key] = (ids, seq)
            while len(self._prefix_cache) > 16:
                self._prefix_cache.popitem(last=False)
        return ids, seq

    def _forward(self, seqs: list[packed.Sequence], tokens: list[list[int]], all_logits: bool = False,
                 parents: list[int] | None = None):
        """The one place the guard runs its model: `packed.forward` (a seam for tests and instrumentation)."""
        return packed.forward(self.model, seqs, tokens, all_logits, parents)

    def _answer_room(self, policy: Policy, grammar: AnswerGrammar, category_scores: bool) -> int:
        """Slots a prompt's sequence needs after the prompt: the answer steps, or category scoring's tree."""
        tree = sum(len(self.tokenizer.encode(c)) for c in policy.codes) + len(self.tokenizer.encode("unsafe\n"))
        return max(grammar.max_steps, tree if category_scores else 0)

    def _sequence(self, policy: Policy, role: Role, length: int, room: int) -> tuple[packed.Sequence, list[int], int]:
        """A fresh sequence for a prompt of `length` tokens after the policy prefix -> (sequence, the prefix
        tokens still to run, cached prefix tokens)."""
        return self._after(self._prefix(policy, role), length, room)

    def _after(self, cached: tuple[list[int], packed.Sequence | None], length: int,
               room: int) -> tuple[packed.Sequence, list[int], int]:
        """`_sequence` from a `_prefix` result."""
        prefix_ids, prefix = cached
        if prefix is not None:
            return packed.Sequence.after(prefix, self.model, length + room), [], prefix.length
        return packed.Sequence(self.model, len(prefix_ids) + length + room, self.device, self.cache_dtype), prefix_ids, 0

    def _budget(self, policy: Policy, keep: Policy | None, role: Role, scored: bool = False) -> int:
        """Tokens the turns of a prompt judging `role` under `policy` may take: max_context less the policy prefix,
        the suffix and the answer steps (or, `scored`, category scoring's tree where that is longer: `_answer_room`;
        a prompt that left it no room ran past the model's context). A context without room for even a one-word turn
        can judge nothing under this policy: a setting to change, so a ValueError, not an error verdict per conversation.
        Tokenization only (the model does not run): the server checks a request's policy with it before queueing it."""
        fixed = (len(encode_prefix(self.tokenizer, policy, role)) + len(encode_suffix(self.tokenizer, role))
                 + self._answer_room(policy, self._grammar(policy), scored))
        budget = self.max_context - fixed
        if budget < len(encode_turn(self.tokenizer, role, "x")):
            raise ValueError(f"max_context {self.max_context} leaves no room for a conversation: the policy prompt and "
                             f"the answer take {fixed} tokens{_subset_hint(policy, keep)}")
        return budget

    @staticmethod
    def _drop(turns: list[list[int]], budget: int) -> tuple[int, dict | None]:
        """The context policy's first rule (`prompt.earliest_to_drop`): how many of the earliest turns to drop for
        `turns` to fit `budget`, and the verdict's `truncation` that says so (None when none is dropped)."""
        dropped = earliest_to_drop(turns, budget)
        return dropped, {"dropped_turns": dropped, "dropped_tokens": sum(map(len, turns[:dropped]))} if dropped else None

    def _plan(self, index: int, conv: Conversation, budget: int) -> list[_Job]:
        """The prompts that judge `conv`: its judged message, and, when that holds template-like markup
        (`prompt.markup_parts`: "…\n\nUser: …" typed into it), each of its parts on its own after the same earlier
        turns, so that no fake turn hides what came before it (`_worst` combines them, as it does windows)."""
        context = [encode_turn(self.tokenizer, m.role, m.content) for m in conv.messages[:-1]]
        content = conv.messages[-1].content
        jobs = self._plan_turn(index, conv.judged, context, content, budget)
        parts = markup_parts(content)
        if parts:
            grouped = (f" (at most {MAX_MARKUP_PARTS}: a message with more is judged in {MAX_MARKUP_PARTS} groups of "
                       "neighbouring parts, without their labels)") if len(parts) == MAX_MARKUP_PARTS else ""
            note = (f"the judged message holds text that reads as the prompt's own turn markup (e.g. 'User:'); the "
                    f"{len(parts)} parts it separates were also judged on their own{grouped}, and the verdict is the worst")
            for part in parts:
                jobs += self._plan_turn(index, conv.judged, context, part, budget)
            for j in jobs:
                j.note = note
        return jobs

    def _plan_turn(self, index: int, role: Role, context: list[list[int]], content: str, budget: int) -> list[_Job]:
        """Apply the context policy to one judged text after the `context` turns: drop earliest turns; window the
        judged text if it alone is too long. A judged text that is too long even for the narrowest window raises
        ValueError (`_run` makes it that item's error)."""
        turns = context + [encode_turn(self.tokenizer, role, content)]
        dropped, info = self._drop(turns, budget)
        kept = turns[dropped:]
        if sum(map(len, kept)) <= budget:
            return [_Job(index, role, kept, info)]
        # The judged turn alone does not fit: overlapping windows over its content, each judged on its own.
        content_ids = self.tokenizer.encode(content.strip())
        overhead = len(encode_turn(self.tokenizer, role, "x")) + 8  # header, blank line, re-tokenisation slack
        width = budget - overhead
        if width < 16:
            raise ValueError(f"the judged {role} turn ({len(turns[-1])} tokens) does not fit max_context "
                             f"{self.max_context}: the policy prompt and the answer leave {budget} tokens, and judging "
                             f"it in windows needs {16 + overhead}")
        stride = max(1, width - width // 4)
        jobs = []
        start = 0
        while True:
            n = width
            turn = encode_turn(self.tokenizer, role, self.tokenizer.decode(content_ids[start : start + n]))
            while len(turn) > budget:  # decoding/re-encoding grew the window: take fewer tokens (the next window
                n = int(n * 0.9)  # starts from where this one ends, so nothing of the judged turn is left out)
                if n < 1:
                    raise ValueError("a window of the judged turn does not fit max_context after re-encoding")
                turn = encode_turn(self.tokenizer, role, self.tokenizer.decode(content_ids[start : start + n]))
            jobs.append(_Job(index, role, [turn]))
            if start + n >= len(content_ids):
                break
            start += max(1, n - n // 4)  # a quarter of the window overlaps the next (`stride` for a full one)
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

    def _run(self, convs: list[Conversation], policy: Policy, category_scores: bool, batch_size: int = 64,
             traces: list[list] | None = None) -> list[Verdict]:
        """What `moderate` / `moderate_batch` do (`traces`: one list per conversation, see `moderate`)."""
        t0 = time.perf_counter()
        asked = policy
        policy, keep = self._judging(asked)
        grammar = self._grammar(policy)
        jobs: list[_Job] = []
        failed: dict[int, Verdict] = {}
        for i, conv in enumerate(convs):
            budget = self._budget(policy, keep, conv.judged, scores_needed(category_scores, keep))
            try:
                jobs.extend(self._plan(i, conv, budget))
            except ValueError as e:  # this turn cannot be judged in the context: its error verdict, the others judged
                failed[i] = Verdict.failure(f"{e}{_subset_hint(policy, keep)}", role=conv.judged)
        sizes = [sum(map(len, j.turns)) for j in jobs]
        order = list(range(len(jobs)))
        if packed.padded(self.device):  # the padded path pays for the longest of a pass: passes of like lengths
            order.sort(key=sizes.__getitem__)
        judged: list[Verdict | None] = [None] * len(jobs)
        steps: list[list] | None = [[] for _ in jobs] if traces is not None else None
        start = 0
        while start < len(order):  # windows of over-long turns share passes with everything else
            end, size = start + 1, sizes[order[start]]
            while end < len(order) and end - start < batch_size and size + sizes[order[end]] <= self.batch_tokens:
                size += sizes[order[end]]
                end += 1
            chunk = order[start:end]
            chunk_steps = [steps[i] for i in chunk] if steps is not None else None
            scored = self._judge([jobs[i] for i in chunk], policy, grammar, scores_needed(category_scores, keep), chunk_steps)
            for i, v in zip(chunk, scored):
                v.truncation = jobs[i].truncation
                v.notes += [jobs[i].note] if jobs[i].note else []
                judged[i] = keep_to(v, keep, self.threshold, category_scores)
            start = end
        results: dict[int, list[Verdict]] = {}
        for j, v in zip(jobs, judged):  # in job order: a conversation's windows in their order
            assert v is not None
            results.setdefault(j.index, []).append(v)
        if traces is not None and steps is not None:
            for j, js in zip(jobs, steps):
                traces[j.index].extend(js)
        out = [failed[i] if i in failed else _worst(results[i], asked) for i in range(len(convs))]
        total = (time.perf_counter() - t0) * 1000
        for v, conv in zip(out, convs):
            v.timings["total_ms"] = total / len(out)
            v.notes = list(conv.notes) + v.notes
        return out

    def _judge(self, jobs: list[_Job], policy: Policy, grammar: AnswerGrammar, category_scores: bool,
               traces: list[list] | None = None) -> list[Verdict]:
        """One packed pass: every job's prompt (after its cached policy prefix), then the answers (`traces`: one
        list per job, see `_run`)."""
        t0 = time.perf_counter()
        room = self._answer_room(policy, grammar, category_scores)
        bodies = [[t for turn in j.turns for t in turn] + encode_suffix(self.tokenizer, j.role) for j in jobs]
        prefixes = [self._prefix(policy, j.role) for j in jobs]
        if packed.padded(self.device) and all(p is not None for _, p in prefixes):  # one shared KV buffer
            made = packed.Sequence.batch_after([p for _, p in prefixes], [len(b) + room for b in bodies])
            starts = [(s, [], s.length) for s in made]
        else:
            starts = [self._after(p, len(b), room) for p, b in zip(prefixes, bodies)]
        seqs, verdicts = [], []
        for k, (j, (seq, todo, cached)) in enumerate(zip(jobs, starts)):
            seqs.append(seq)
            bodies[k] = todo + bodies[k]
            verdicts.append(Verdict(status="error", role=j.role, prompt_tokens=cached + len(bodies[k]),
                                    cached_tokens=cached))
        logits = self._forward(seqs, bodies)
        t_prefill = time.perf_counter()
        self._answer(seqs, logits, verdicts, policy, grammar, category_scores, traces)
        for v in verdicts:
            v.timings["prefill_ms"] = (t_prefill - t0) * 1000
        return verdicts

    def _answer(self, seqs: list[packed.Sequence], logits: torch.Tensor, verdicts: list[Verdict], policy: Policy,
                grammar: AnswerGrammar, category_scores: bool, traces: list[list] | None = None) -> None:
        """Fill `verdicts` from the logits after each prompt: p_unsafe, the constrained answer, category scores
        (`traces`: one list per sequence, for `answer.decode`'s per-step margins).

        The answer steps go on top of each sequence and are rolled back afterwards, so a sequence still ends
        at its prompt (streaming keeps extending it)."""
        t0 = time.perf_counter()
        rows = self.model.head_rows(grammar.firsts)
        if None in rows:
            for v in verdicts:
                v.error = "the model's output head cannot emit 'safe'/'unsafe'"
            return
        p = p_unsafe(logits, rows)
        for b, v in enumerate(verdicts):
            v.p_unsafe = float(p[b])
        marks = [s.length for s in seqs]

        def step(live: list[int], ids: list[list[int]]) -> torch.Tensor:
            return self._forward([seqs[b] for b in live], ids)

        # thresholded mode: the first token follows p_unsafe >= threshold, not argmax
        answers = decode(logits, step, grammar, grammar.rows, self.threshold, traces)
        for s, m in zip(seqs, marks):
            s.length = m
        t_decode = time.perf_counter()
        for v, a in zip(verdicts, answers):
            finish(v, a, grammar, policy)
            v.timings["decode_ms"] = (t_decode - t0) * 1000
        if category_scores:
            for v, sc in zip(verdicts, self._category_scores(seqs, policy, p)):
                v.category_scores = sc
        for v in verdicts:
            _fail_closed(v)

    def _category_scores(self, seqs: list[packed.Sequence], policy: Policy, p_unsafe: torch.Tensor) -> list[dict[str, float]]:
        """score(c) = p_unsafe · P(c is the first listed code | "unsafe\\n"), normalised over the policy's codes.

        Each code's tokens are teacher-forced after `unsafe\\n` and followed by `,` or end of turn, so S1 is
        not credited with the mass of S10. A comma may merge with the next code's first letters (Llama 3's tokenizer
        writes "S1,S10" as S 1 ,S 10): the first token of `,` + each code ends a code too, else a code listed first
        of several lost the mass of the ones after it. All codes are paths of one token trie after `unsafe\\n` (each token sees
        the prompt, `unsafe\\n` and its own prefix; codes share their common prefixes, e.g. S1 and S10-S14 the
        tokens of "S1"), scored in one pass on top of each prompt, then rolled back.
        """
        head = self.model.head_rows
        lead = self.tokenizer.encode("unsafe\n")
        ends = {self.tokenizer.encode(",")[0], self.tokenizer.special("<|eot_id|>")}
        ends |= {self.tokenizer.encode("," + c)[0] for c in policy.codes}
        term = [r for r in head(sorted(ends)) if r is not None]
        B = len(seqs)
        tokens, parents = list(lead), list(range(-1, len(lead) - 1))
        nodes: dict[tuple[int, int], int] = {}  # (parent slot, token) -> slot
        spans: dict[str, tuple[list[int], list[int]]] = {}  # code -> (its tokens' slots, its tokens)
        for code in policy.codes:
            ids = self.tokenizer.encode(code)
            if None in head(ids) or not term:
                continue
            at, slots = len(lead) - 1, []
            for t in ids:
                if (at, t) not in nodes:
                    nodes[(at, t)] = len(tokens)
                    tokens.append(t)
                    parents.append(at)
                at = nodes[(at, t)]
                slots.append(at)
            spans[code] = (slots, ids)
        base = [s.length for s in seqs]
        out = torch.log_softmax(torch.stack(self._forward(seqs, [tokens] * B, all_logits=True, parents=parents)), -1)
        for s, n in zip(seqs, base):
            s.length = n
        logp = torch.full((B, len(policy.codes)), float("-inf"))
        for ci, code in enumerate(policy.codes):
            if code not in spans:
                continue
            slots, ids = spans[code]
            rows = head(ids)
            lp = out[:, len(lead) - 1, rows[0]]  # the first code token, after "unsafe\n"
            for k in range(1, len(ids)):
                lp = lp + out[:, slots[k - 1], rows[k]]
            logp[:, ci] = (lp + torch.logsumexp(out[:, slots[-1], term], -1)).cpu()
        dist = torch.softmax(logp, -1)
        return [{c: float(p_unsafe[b]) * float(dist[b, i]) for i, c in enumerate(policy.codes)} for b in range(B)]


def _subset_hint(policy: Policy, keep: Policy | None) -> str:
    """For a message that the context is too small: a subset filtered from the guard's policy is prompted with all
    of it (`Guard._judging`), and subset_mode 'prompt' would list fewer categories."""
    if keep is None:
        return ""
    return f": subset_mode 'filter' lists all {len(policy)} of the guard's categories, 'prompt' only the {len(keep)} asked for"


def _fail_closed(v: Verdict) -> None:
    """A verdict with a score that is not a number (NaN or inf: a corrupt weight, an overflow) came from a broken
    model: it becomes an error, whatever its answer said, and carries no scores (JSON has no NaN)."""
    scores = [v.p_unsafe, *(v.category_scores or {}).values()]
    if all(x is None or math.isfinite(x) for x in scores):
        return
    if v.error is None:
        v.error = f"the model produced non-finite scores (p_unsafe={v.p_unsafe}); no verdict"
    v.status, v.categories, v.category_names, v.p_unsafe, v.category_scores = "error", [], [], None, None


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
        notes=list(dict.fromkeys(n for v in verdicts for n in v.notes)),
    )
