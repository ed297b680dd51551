"""The guard's answer: which answers a policy allows, the one constrained decoding loop, and the Verdict.

`decode` is the only answer loop in pocketguard: `Guard` runs it on its packed batches and streams, and
`export.backend.judge` on another runtime's logits (llama.cpp, ExecuTorch). It is greedy decoding
restricted to the answers the policy allows (`safe`, or `unsafe` plus distinct codes of the policy), for
many prompts at once: each step is one masked argmax over the candidate tokens of all live rows. The mask
of a partial answer is computed once per distinct text and cached (`AnswerGrammar.mask`), so no step loops
in Python over the candidate vocabulary. Anything that cannot finish a valid answer is an `error`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Literal, Sequence

import torch
from torch import Tensor

from .conversation import Role
from .policy import Policy
from .tokenizer import Tokenizer

Status = Literal["safe", "unsafe", "error"]


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
    def from_dict(cls, d: dict) -> "Verdict":
        """The inverse of `to_dict` (a saved prediction's verdict); `flagged` is derived, not stored."""
        return cls(**{k: v for k, v in d.items() if k != "flagged"})

    @classmethod
    def failure(cls, message: str, role: Role | None = None) -> "Verdict":
        return cls(status="error", role=role, error=message)


class AnswerGrammar:
    """Which answer strings a policy allows, over the head's candidate tokens (those spelling only answer
    characters) plus end-of-turn, in a fixed order: `ids[i]` / `texts[i]`, end-of-turn last."""

    MASK_CACHE = 4096  # distinct partial answers kept (a policy of 14 codes visits a few dozen in practice)

    def __init__(self, tokenizer: Tokenizer, head_ids: Sequence[int], policy: Policy):
        self.codes = policy.codes
        self.eot = tokenizer.special("<|eot_id|>")
        alphabet = set("safeun\n,") | set("".join(self.codes))
        specials = tokenizer.special_ids
        ids, texts = [], []
        for tid in head_ids:  # computed once per grammar
            if tid in specials:
                continue
            text = tokenizer.decode([tid])
            if text and set(text) <= alphabet:
                ids.append(int(tid))
                texts.append(text)
        self.ids, self.texts = ids + [self.eot], texts + [""]
        self._ids = torch.tensor(self.ids)
        # the token ids that start `safe` and `unsafe` (the first answer token, whose two logits p_unsafe compares),
        # and their places among the candidates (None when the head cannot emit one)
        self.firsts = [tokenizer.encode(w)[0] for w in ("safe", "unsafe")]
        self.decision = [self.ids.index(t) if t in self.ids else None for t in self.firsts]
        self._masks: dict[str, Tensor] = {}

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
            done, last = self._parts(text)
            return "unsafe", done + [last]
        return "error", []

    def mask(self, text: str) -> Tensor:
        """bool [len(ids)]: the tokens that keep `text` a valid answer prefix (end-of-turn: `text` is complete)."""
        m = self._masks.get(text)
        if m is None:
            m = torch.tensor([self.is_prefix(text + s) for s in self.texts[:-1]] + [self.is_complete(text)])
            if len(self._masks) < self.MASK_CACHE:
                self._masks[text] = m
        return m

    @property
    def max_steps(self) -> int:
        return 4 + 4 * len(self.codes)


@dataclass
class Answer:
    text: str = ""
    finished: bool = False
    tokens: int = 0
    error: str | None = None


Step = Callable[[list[int], list[list[int]]], Tensor]


def p_unsafe(logits: Tensor, rows: Sequence[int]) -> Tensor:
    """Softmax over the first answer token restricted to (safe, unsafe): [B] from logits [B, n]."""
    return torch.softmax(logits[:, list(rows)].float(), dim=-1)[:, 1]


def decode(logits: Tensor, step: Step, grammar: AnswerGrammar, rows: Sequence[int | None],
           threshold: float | None = None, traces: Sequence[list] | None = None) -> list[Answer]:
    """Constrained greedy answers for B prompts at once.

    `logits` [B, n] follow each prompt; `rows[i]` is the logits column of `grammar.ids[i]` (None: the
    runtime cannot emit it). `step(live, ids)` appends the tokens `ids[j]` to prompt `live[j]` and returns
    their next logits [len(live), n]. With a `threshold` (thresholded mode) the first token is `unsafe` exactly
    when `p_unsafe(logits)` >= threshold, else `safe` (the same p_unsafe, from the same logits, as the verdict
    reports). Ties go to the earlier candidate. A token that is the only one allowed (`\\n` after `unsafe`,
    end-of-turn after `safe`) is taken without running the model for it: it rides along with the chosen token,
    and a forced end-of-turn ends the answer. `traces`, when given, is one list per prompt: `traces[b]` receives
    (chosen text, margin) per token of prompt b's answer, from the very logits its answer is decoded from: how
    robust the answer is to numerical differences. The margin is the logit gap to the best other allowed token
    (inf when the grammar forces the token); for a thresholded first token, the distance of logit(p_unsafe) =
    logit(unsafe) - logit(safe) from logit(threshold), the gap that would have to close to flip it."""
    B = logits.shape[0]
    avail = torch.tensor([r is not None for r in rows])
    cols = torch.tensor([r if r is not None else 0 for r in rows], device=logits.device)
    eot = len(grammar.ids) - 1
    out = [Answer() for _ in range(B)]
    live = list(range(B))
    forced_gap: list[float] = []
    if threshold is not None:
        ds, du = grammar.decision
        if ds is None or du is None or rows[ds] is None or rows[du] is None:
            raise ValueError("thresholded decoding needs a head that can emit both 'safe' and 'unsafe'")
        p = p_unsafe(logits, [rows[ds], rows[du]]).tolist()
        gap = (logits[:, rows[du]] - logits[:, rows[ds]]).float().cpu()
        bound = math.log(threshold / (1 - threshold)) if 0 < threshold < 1 else math.copysign(math.inf, threshold - 0.5)
        forced_gap = (gap - bound).abs().tolist()
        pick0 = torch.tensor([du if x >= threshold else ds for x in p])
    for k in range(grammar.max_steps):
        allowed = torch.stack([grammar.mask(out[b].text) for b in live]) & avail
        if k == 0 and threshold is not None:
            allowed &= torch.arange(len(grammar.ids))[None, :] == pick0[:, None]
        raw = logits[:, cols].float().cpu()
        # A guard fails closed: NaN / inf logits (a corrupt checkpoint, an overflow) would make the argmax pick
        # the first allowed candidate, i.e. `safe`, so such a prompt gets an error instead of an answer.
        finite = torch.isfinite(raw).all(1).tolist()
        scores = raw.masked_fill(~allowed, float("-inf"))
        pick, any_ok = scores.argmax(1).tolist(), allowed.any(1).tolist()
        fed, ids = [], []
        for j, b in enumerate(live):
            a = out[b]
            if not finite[j]:
                a.error = f"the model produced non-finite scores (NaN or inf) after {a.text!r}; no verdict"
                continue
            if not any_ok[j]:
                a.error = f"the model cannot continue the answer {a.text!r} under this policy"
                continue
            c = pick[j]
            a.tokens += 1
            if traces is not None:
                if k == 0 and threshold is not None:
                    margin = forced_gap[b]
                else:
                    top = scores[j].topk(2).values if int(allowed[j].sum()) > 1 else None
                    margin = float(top[0] - top[1]) if top is not None else float("inf")
                traces[b].append((grammar.texts[c] if c != eot else "<eot>", margin))
            if c == eot:
                a.finished = True
                continue
            a.text += grammar.texts[c]
            chain = [grammar.ids[c]]
            while True:  # tokens the grammar forces need no logits: append them in the same step
                nxt = grammar.mask(a.text) & avail
                if int(nxt.sum()) != 1:
                    break
                f = int(nxt.nonzero()[0, 0])
                a.tokens += 1
                if traces is not None:
                    traces[b].append((grammar.texts[f] if f != eot else "<eot>", float("inf")))
                if f == eot:
                    a.finished = True
                    break
                a.text += grammar.texts[f]
                chain.append(grammar.ids[f])
            if not a.finished:
                fed.append(b)
                ids.append(chain)
        if not fed or k == grammar.max_steps - 1:
            break
        logits, live = step(fed, ids), fed
    for a in out:
        if not a.finished and a.error is None:
            a.error = f"answer did not finish within {grammar.max_steps} tokens: {a.text!r}"
    return out


def finish(v: Verdict, a: Answer, grammar: AnswerGrammar, policy: Policy) -> Verdict:
    """Fill `v` (status error until proven otherwise) from a decoded answer, parsed strictly."""
    v.answer, v.answer_tokens = a.text, v.answer_tokens + a.tokens
    if a.error is not None:
        v.error = a.error
        return v
    status, cats = grammar.parse(a.text)
    v.status, v.categories, v.category_names = status, cats, policy.names(cats)
    if status == "error":
        v.error = f"malformed guard answer {a.text!r}"
    return v


def scores_needed(category_scores: bool, keep: Policy | None) -> bool:
    """Whether a judgement must score every category: when asked to, or to keep its verdict to `keep` (`keep_to`
    decides from the category scores)."""
    return category_scores or keep is not None


def keep_to(v: Verdict, policy: Policy | None, threshold: float | None, category_scores: bool) -> Verdict:
    """A verdict judged under the guard's own policy, kept to `policy` (a part of it; `guard.Guard._judging`).

    p_unsafe becomes the category scores' mass on the policy's codes (p_unsafe x P(the first code named is one
    of them)), and the verdict follows it: unsafe iff it reaches the threshold (0.5 when decoding greedily), naming
    the codes of the policy the answer named, else the policy's likeliest one. So the decision and the score come
    from one number, as without a subset. `answer` keeps the model's own text (under the whole policy); an error
    stays an error. `v` is left as it was: the kept verdict is a new one. With no `policy` (`Guard._judging` found
    nothing to keep to) `v` itself is the verdict."""
    if policy is None or v.status == "error" or v.category_scores is None:
        return v
    scores = {c: v.category_scores[c] for c in policy.codes}
    p = min(1.0, sum(scores.values()))
    named = [c for c in policy.codes if c in v.categories]
    outside = [c for c in v.categories if c not in policy]
    unsafe = p >= (0.5 if threshold is None else threshold)
    categories = (named or [max(scores, key=scores.__getitem__)]) if unsafe else []
    notes = list(v.notes)
    if outside:
        notes.append(f"judged under all of the guard's categories: it also named {', '.join(outside)}, which this "
                     "policy leaves out")
    return replace(v, status="unsafe" if unsafe else "safe", categories=categories,
                   category_names=policy.names(categories), p_unsafe=p,
                   category_scores=scores if category_scores else None, notes=notes)
