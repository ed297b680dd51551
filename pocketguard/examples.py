"""Labelled examples (the JSONL schema of docs/design.md) as the guard is trained on them: each becomes the
Llama Guard 3 prompt (`encode_prompt`) followed by the target answer (`answer_text(categories)`) and
`<|eot_id|>`, with targets on the answer tokens only. Prompts longer than `max_len` lose their earliest turns
first (the judged last turn is kept, as the guard does at inference); if the judged turn alone is too long the
example is skipped (`overlong="skip"`) or its judged turn is cut to fit (`overlong="truncate"`). Batches are
right-padded with a `valid` mask; `epoch_batches` orders them as a pure function of (seed, epoch)."""

from __future__ import annotations

import random
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor

from .augment import augment as draw_policy
from .conversation import Conversation
from .labelled import DataError, Problem, read_rows
from .policy import Policy
from .prompt import answer_text, earliest_to_drop, encode_prompt, encode_turn
from .tokenizer import Tokenizer

IGNORE = -100


class ExampleError(ValueError):
    """A labelled example does not follow the JSONL schema (or names categories the policy lacks)."""


def load_examples(path: str | Path, policy: Policy | None = None) -> list[dict]:
    """A labelled file as training reads it, as example dicts of the generic schema. It is `pocketguard eval`'s
    reader (`labelled.read_rows`: rows with `messages`, or `text` / `prompt` (+ `response`); JSONL or CSV,
    optionally gzipped), so one file serves training, `compress` and `eval`. Every malformed row is an
    ExampleError naming the file and line — categories the policy lacks included — and so is an unsafe row
    without categories, which `eval` reads as "categories unknown" but which cannot be trained on (the guard's
    answer names them)."""
    try:
        rows, _ = read_rows(path, policy=policy)
    except DataError as e:  # (restated without eval's hint, --skip-malformed, which training does not take)
        raise ExampleError(str(DataError(f"{path}: {len(e.problems)} malformed row(s):", e.problems))
                           if e.problems else str(e)) from None
    unknown = [Problem(str(path), r.line, "an unsafe example needs its category codes (the guard's answer names them)")
               for r in rows if r.unsafe and not r.categories]
    if unknown:
        raise ExampleError(str(DataError(f"{path}: {len(unknown)} unsafe row(s) without categories:", unknown)))
    return [r.to_dict() for r in rows]


def parse_example(ex: dict, policy: Policy | None = None) -> tuple[Conversation, list[str]]:
    """(conversation, violated codes) of one labelled example; raises ExampleError when malformed."""
    if not isinstance(ex, dict) or "messages" not in ex:
        raise ExampleError("an example is an object with 'messages', 'label' and 'categories'")
    conv = Conversation.from_messages(ex["messages"], ex.get("role"))
    label = ex.get("label")
    cats = list(ex.get("categories") or [])
    if label not in ("safe", "unsafe"):
        raise ExampleError(f"label must be 'safe' or 'unsafe', got {label!r}")
    if label == "safe" and cats:
        raise ExampleError(f"a safe example lists categories {cats}")
    if label == "unsafe" and not cats:
        raise ExampleError("an unsafe example needs at least one category code (the guard's answer names them)")
    if len(set(cats)) != len(cats):
        raise ExampleError(f"duplicate category codes {cats}")
    if policy is not None:
        unknown = [c for c in cats if c not in policy]
        if unknown:
            raise ExampleError(f"categories {unknown} are not in the policy ({', '.join(policy.codes)})")
    return conv, cats


@dataclass
class Encoded:
    ids: list[int]
    n_prompt: int  # the answer starts at ids[n_prompt]
    label: int  # 1 unsafe, 0 safe
    dropped_turns: int = 0
    truncated: bool = False

    def __len__(self) -> int:
        return len(self.ids)


def answer_ids(tokenizer: Tokenizer, categories: list[str]) -> list[int]:
    return tokenizer.encode(answer_text(categories)) + [tokenizer.special("<|eot_id|>")]


def encode_example(tokenizer: Tokenizer, policy: Policy, example: dict, max_len: int, overlong: str = "skip") -> Encoded | None:
    """Prompt + answer ids; earliest turns dropped to fit `max_len`. None when skipped as over-long."""
    conv, cats = parse_example(example, policy)
    p = encode_prompt(tokenizer, policy, conv)
    ans = answer_ids(tokenizer, cats)
    budget = max_len - len(p.prefix) - len(p.suffix) - len(ans)
    dropped = earliest_to_drop(p.turns, budget)
    turns = p.turns[dropped:]
    truncated = False
    if sum(map(len, turns)) > budget:
        # An unsafe turn cut to its start may have lost the harm its label names (a long benign text, then the
        # ask): it would teach the guard to flag benign text, so only a safe one is cut (a cut cannot add harm)
        if overlong == "skip" or budget < 8 or cats:
            return None
        content = tokenizer.encode(conv.messages[-1].content.strip())[: budget]
        while True:  # decode/re-encode can grow a cut slightly
            turn = encode_turn(tokenizer, conv.judged, tokenizer.decode(content))
            if len(turn) <= budget or not content:
                break
            content = content[: max(0, len(content) - max(1, (len(turn) - budget)))]
        turns, truncated = [turn], True
    prompt = p.prefix + [t for turn in turns for t in turn] + p.suffix
    return Encoded(prompt + ans, len(prompt), int(bool(cats)), dropped, truncated)


@dataclass
class Batch:
    tokens: Tensor  # [B, T] right-padded
    valid: Tensor  # [B, T] real tokens
    targets: Tensor  # [B, T] vocabulary id to predict at each answer position, IGNORE elsewhere
    first: Tensor  # [B] position that predicts the first answer token (safe / unsafe)
    labels: Tensor  # [B] 1 unsafe, 0 safe

    def to(self, device) -> "Batch":
        return Batch(*(getattr(self, f.name).to(device, non_blocking=True) for f in fields(self)))

    def pin_memory(self) -> "Batch":
        """Page-locked copies (DataLoader's `pin_memory`), so that `to(device)` overlaps with the GPU's work."""
        return Batch(*(getattr(self, f.name).pin_memory() for f in fields(self)))

    def __len__(self) -> int:
        return self.tokens.shape[0]


def collate(items: Sequence[Encoded], pad_id: int = 0) -> Batch:
    B, T = len(items), max(map(len, items))
    tokens = torch.full((B, T), pad_id, dtype=torch.long)
    valid = torch.zeros(B, T, dtype=torch.bool)
    targets = torch.full((B, T), IGNORE, dtype=torch.long)
    first = torch.zeros(B, dtype=torch.long)
    for b, e in enumerate(items):
        n = len(e.ids)
        tokens[b, :n] = torch.tensor(e.ids)
        valid[b, :n] = True
        # logits at position t predict token t+1: answer token ids[k] (k ≥ n_prompt) is learned at k-1
        targets[b, e.n_prompt - 1 : n - 1] = torch.tensor(e.ids[e.n_prompt :])
        first[b] = e.n_prompt - 1
    labels = torch.tensor([e.label for e in items], dtype=torch.long)
    return Batch(tokens, valid, targets, first, labels)


class GuardData:
    """Labelled examples → encoded guard prompts, with optional per-epoch policy augmentation."""

    def __init__(self, examples: Sequence[dict], tokenizer: Tokenizer, policy: Policy, max_len: int,
                 overlong: str = "skip", augment: bool = False, seed: int = 0, augment_keep: float | None = 0.5):
        """`augment`: Llama Guard's policy augmentation, drawn afresh per epoch (`pocketguard.augment`, whose `p_keep`
        is `augment_keep`)."""
        self.tokenizer, self.policy, self.max_len, self.overlong, self.seed = tokenizer, policy, max_len, overlong, seed
        self.augment, self.augment_keep = augment, augment_keep
        self.examples: list[dict] = []
        self.encoded: list[Encoded] = []
        skipped = 0
        order = {c: i for i, c in enumerate(policy.codes)}
        for ex in examples:
            # one answer per row: its codes in the policy's order, as `augment` returns them (a row's own order
            # would make a row's target depend on whether this epoch augments). Sorted, not filtered: a code the
            # policy lacks, or one listed twice, stays for encode_example to refuse (filtered, an unknown code
            # vanished from the answer in silence)
            if isinstance(ex, dict) and ex.get("categories"):
                ex = {**ex, "categories": sorted(ex["categories"], key=lambda c: order.get(c, -1))}
            e = encode_example(tokenizer, policy, ex, max_len, overlong)
            if e is None:
                skipped += 1
                continue
            self.examples.append(ex)
            self.encoded.append(e)
        self.skipped = skipped  # judged turn alone over max_len: left out ("skip", or too little room to cut)
        self.truncated = sum(e.truncated for e in self.encoded)  # judged turn cut to fit ("truncate")
        if not self.encoded:
            raise ExampleError(f"no example fits max_len={max_len} ({skipped} skipped as over-long)")
        self.lengths = [len(e) for e in self.encoded]

    def __len__(self) -> int:
        return len(self.encoded)

    def get(self, i: int, epoch: int) -> Encoded:
        if not self.augment:
            return self.encoded[i]
        rng = random.Random((self.seed * 1_000_003 + epoch) * 1_000_003 + i)
        # (policy shown in the prompt, label, violated codes under that policy)
        pol, label, cats = draw_policy(self.examples[i], self.policy, rng, p_keep=self.augment_keep)
        ex = {**self.examples[i], "label": label, "categories": cats}
        e = encode_example(self.tokenizer, pol, ex, self.max_len, self.overlong)
        return e if e is not None else self.encoded[i]


def epoch_batches(lengths: Sequence[int], global_batch: int, seed: int, epoch: int, bucket: bool = True) -> list[list[int]]:
    """Global batches (lists of example indices) of one epoch; a pure function of its arguments.

    Every batch is full: a dataset that does not divide evenly wraps around to its start. With `bucket`,
    examples of similar length share a batch (sorted within windows of 32 batches, batches then shuffled).
    """
    n = len(lengths)
    rng = random.Random(seed * 100_003 + epoch)
    perm = list(range(n))
    rng.shuffle(perm)
    while len(perm) % global_batch:
        perm.extend(perm[: global_batch - len(perm) % global_batch])
    if bucket:
        window = global_batch * 32
        chunks = [sorted(perm[i : i + window], key=lambda j: lengths[j]) for i in range(0, len(perm), window)]
        perm = [j for c in chunks for j in c]
    batches = [perm[i : i + global_batch] for i in range(0, len(perm), global_batch)]
    rng.shuffle(batches)
    return batches


def calibration_batches(examples: Sequence[dict], tokenizer: Tokenizer, policy: Policy, n: int = 64,
                        batch_size: int = 8, max_len: int = 4096, seed: int = 0) -> list[Batch]:
    """Up to `n` guard-formatted examples (random, reproducible) as length-bucketed batches for pruning."""
    data = GuardData(examples, tokenizer, policy, max_len, overlong="truncate")
    idx = list(range(len(data)))
    random.Random(seed).shuffle(idx)
    idx = sorted(idx[:n], key=lambda i: data.lengths[i])
    return [collate([data.encoded[i] for i in idx[k : k + batch_size]]) for k in range(0, len(idx), batch_size)]
