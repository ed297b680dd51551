"""Run pocketguard's constrained decoding on top of another runtime's logits (llama.cpp, ExecuTorch, ...).

A runtime is wrapped as a `LogitsBackend`: `prefill(ids)` runs a prompt from an empty cache and returns the
logits after its last token; `step(token_id)` appends one token and returns the next logits; `rows(ids)`
maps vocabulary ids to positions of that logits vector (None where the runtime's head cannot emit the id).

`judge(guard, conversation, backend)` then does exactly what `Guard` does for one conversation — the same
prompt token ids (`encode_prompt`), `p_unsafe` from the first answer position, and the guard's own answer
loop (`answer.decode`: greedy decoding restricted to the answers the policy allows, over the same candidate
tokens as the pocketguard model's head), parsed strictly. With the same weights the verdicts must agree;
`tests/test_export.py` checks that for GGUF/llama.cpp and ExecuTorch.

It does not apply the guard's context policy (dropping early turns / windows): a prompt that does not fit the
backend's context is an `error` verdict.
"""

from __future__ import annotations

import time
from typing import Protocol, Sequence

import numpy as np
import torch

from ..conversation import Conversation
from ..answer import Verdict, decode, finish, p_unsafe
from ..guard import Guard, as_conversation
from ..policy import Policy
from ..prompt import encode_prompt


class LogitsBackend(Protocol):
    name: str
    max_len: int

    def prefill(self, ids: Sequence[int]) -> np.ndarray: ...

    def step(self, token_id: int) -> np.ndarray: ...

    def rows(self, vocab_ids: Sequence[int]) -> list[int | None]: ...


def _logits(x) -> torch.Tensor:
    """One logits vector (tensor or array) as float32 [1, n] on the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().float().reshape(1, -1).cpu()
    return torch.from_numpy(np.asarray(x, dtype=np.float32).reshape(1, -1))


def judge(guard: Guard, conversation, backend: LogitsBackend, policy: Policy | None = None,
          prompt_ids: Sequence[int] | None = None, trace: list | None = None) -> Verdict:
    """The verdict of `backend` on one conversation, decoded under `guard`'s grammar for `policy` and at
    `guard.threshold` (when it has one) by the same loop as the guard's own (`answer.decode`).

    `trace`, when given, receives one (chosen text, margin) per answer step, as `Guard.moderate`'s does."""
    policy = policy or guard.policy
    conv: Conversation = as_conversation(conversation)
    grammar = guard._grammar(policy)
    ids = list(prompt_ids) if prompt_ids is not None else encode_prompt(guard.tokenizer, policy, conv).ids
    if len(ids) + grammar.max_steps > backend.max_len:
        return Verdict.failure(f"{len(ids)} prompt tokens do not fit {backend.name}'s context of {backend.max_len}",
                               conv.judged)
    t0 = time.perf_counter()
    logits = _logits(backend.prefill(ids))
    t1 = time.perf_counter()
    v = Verdict(status="error", role=conv.judged, prompt_tokens=len(ids))
    rows = backend.rows(grammar.firsts)
    if None in rows:
        v.error = f"{backend.name}'s output head cannot emit 'safe'/'unsafe'"
        return v
    v.p_unsafe = float(p_unsafe(logits, rows)[0])
    def step(live: list[int], ids: list[list[int]]) -> torch.Tensor:
        for t in ids[0]:
            out = backend.step(t)
        return _logits(out)

    (a,) = decode(logits, step, grammar, backend.rows(grammar.ids), guard.threshold,
                  traces=None if trace is None else [trace])
    t2 = time.perf_counter()
    v.timings = {"prefill_ms": (t1 - t0) * 1000, "decode_ms": (t2 - t1) * 1000, "total_ms": (t2 - t0) * 1000}
    return finish(v, a, grammar, policy)


class TorchBackend:
    """pocketguard's own model behind the backend interface (no prefix cache): a reference for the others."""

    def __init__(self, model, max_len: int | None = None):
        from ..model import KVCache

        self.model, self.name = model.eval(), "pocketguard"
        self.max_len = max_len or model.args.max_seq_len
        self._KVCache = KVCache
        self.cache = None

    def rows(self, vocab_ids):
        return self.model.head_rows(list(vocab_ids))

    @torch.inference_mode()
    def prefill(self, ids):
        dtype = next(p for p in self.model.parameters() if p.is_floating_point()).dtype
        self.cache = self._KVCache(self.model.args, 1, min(self.max_len, len(ids) + 64), dtype=dtype)
        return self.model(torch.tensor([list(ids)]), cache=self.cache, last_only=True)[0, -1]

    @torch.inference_mode()
    def step(self, token_id):
        return self.model(torch.tensor([[int(token_id)]]), cache=self.cache, last_only=True)[0, -1]
