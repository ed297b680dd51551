"""Calibration passes: token sequences run through a model in padded batches while hooks collect statistics
of the real (unpadded) tokens — shared by imatrix (quantize.py) and GPTQ's Hessians (gptq.py)."""

from __future__ import annotations

from typing import Any, Iterable

import torch
from torch import Tensor, nn

from ..conversation import Conversation
from ..examples import ExampleError, parse_example
from ..policy import Policy
from ..prompt import answer_text, earliest_to_drop, encode_prompt


def as_sequences(calibration: Any) -> list[Tensor]:
    """Calibration token sequences: a LongTensor [B, T] / [T], or an iterable of those or of id lists."""
    if calibration is None:
        raise ValueError("this quantization mode needs calibration data (token sequences)")
    if isinstance(calibration, Tensor):
        calibration = [calibration] if calibration.dim() == 1 else list(calibration)
    seqs = []
    for s in calibration:
        t = torch.as_tensor(s, dtype=torch.long)
        seqs.extend([t] if t.dim() == 1 else list(t))
    if not seqs:
        raise ValueError("calibration data is empty")
    empty = [i for i, t in enumerate(seqs) if not len(t)]
    if empty:  # a batch of them would reach the model as a [B, 0] tensor and fail deep inside it
        raise ValueError(f"calibration sequences {empty[:10]} have no tokens")
    return seqs


def calibration_from_examples(examples: Iterable[dict], tokenizer, policy=None, max_samples: int = 128,
                              max_len: int = 512) -> list[Tensor]:
    """Prompt (+ expected answer) token ids of labelled JSONL examples, as calibration sequences.

    A labelled row is parsed as a training row is (`parse_example`: a malformed one is an ExampleError naming the
    row) and its codes are answered in the policy's order, as training answers them; a row without `label`
    calibrates on its prompt alone.

    A sequence over `max_len` loses its earliest turns first, as the guard's prompts do (training, inference):
    it keeps `<|begin_of_text|>` and the policy header. If the judged turn alone does not fit, the header is kept
    and the judged turn loses its start (as a window of it would be judged), never the header; a `max_len` below
    the header itself keeps the sequence's first `max_len` tokens."""
    policy = policy or Policy.default()
    seqs = []
    for i, ex in enumerate(examples):
        if len(seqs) >= max_samples:
            break
        try:
            if isinstance(ex, dict) and "messages" in ex and "label" not in ex:
                conv, cats = Conversation.from_messages(ex["messages"], ex.get("role")), None
            else:
                conv, cats = parse_example(ex, policy)
        except ValueError as e:  # ExampleError, ConversationError
            raise ExampleError(f"calibration example {i}: {e}") from None
        p = encode_prompt(tokenizer, policy, conv)
        tail = list(p.suffix)
        if cats is not None:
            tail += tokenizer.encode(answer_text([c for c in policy.codes if c in cats]))
        turns = p.turns[earliest_to_drop(p.turns, max_len - len(p.prefix) - len(tail)):]
        head = p.prefix[:max_len]
        rest = [t for turn in turns for t in turn] + tail
        rest = rest[max(0, len(rest) - (max_len - len(head))):]
        seqs.append(torch.tensor(head + rest, dtype=torch.long))
    return seqs


def _device(model: nn.Module) -> torch.device:
    for t in list(model.parameters()) + list(model.buffers()):
        return t.device
    return torch.device("cpu")


class StopCalibration(Exception):
    """Raised by a hook to end a calibration forward pass early (GPTQ stops after the block it measures)."""


class Calibration:
    """Runs calibration sequences through a model in right-padded batches and tells hooks which rows of a
    [B, T, K] activation are real tokens (`rows(x)` drops the padding), so statistics never see padding."""

    def __init__(self, seqs: list[Tensor], batch_size: int = 8):
        self.seqs = sorted(seqs, key=len)  # similar lengths together: little padding
        self.batch_size = max(1, int(batch_size))
        self.valid: Tensor | None = None

    def rows(self, x: Tensor) -> Tensor:
        x = x.detach()
        if self.valid is not None and x.dim() == 3 and x.shape[:2] == self.valid.shape:
            return x[self.valid.to(x.device)]
        return x.reshape(-1, x.shape[-1])

    @torch.no_grad()
    def run(self, model: nn.Module) -> None:
        dev = _device(model)
        was = model.training
        model.eval()
        try:
            for i in range(0, len(self.seqs), self.batch_size):
                part = self.seqs[i : i + self.batch_size]
                T = max(len(p) for p in part)
                tokens = torch.zeros(len(part), T, dtype=torch.long)
                valid = torch.zeros(len(part), T, dtype=torch.bool)
                for j, p in enumerate(part):
                    tokens[j, : len(p)] = p
                    valid[j, : len(p)] = True
                self.valid = valid
                try:
                    model(tokens.to(dev), valid=valid.to(dev))
                except StopCalibration:
                    pass
        finally:
            self.valid = None
            model.train(was)


def run_calibration(model: nn.Module, seqs: list[Tensor], batch_size: int = 8) -> None:
    Calibration(seqs, batch_size).run(model)
