"""Distillation: train a (pruned) student on guard-formatted conversations against a teacher's logits.

`distill` is a thin wrapper over `pocketguard.train.train` with `kl_weight > 0`: loss =
`ce_weight · CE(answer tokens) + kl_weight · T² · KL(teacher ‖ student)` at the answer positions, over the
student's kept head tokens (the teacher's logits are gathered at the same vocabulary ids). The teacher may
have any depth, width or head size as long as its head scores every token the student's head keeps — and
it must share the student's tokenizer, which is checked here.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Sequence

from ..model import Transformer
from ..policy import Policy
from ..tokenizer import Tokenizer
from ..train import TrainConfig, TrainResult, train

_PROBE = "Hello, world! How do I bake 12 loaves? <|eot_id|> unsafe\nS1,S10 safe"


class TokenizerMismatch(ValueError):
    """Teacher and student do not share a tokenizer, so their logits are not over the same ids."""


def check_same_tokenizer(student: Transformer, teacher: Transformer, tokenizer: Tokenizer,
                         teacher_tokenizer: Tokenizer | None = None) -> None:
    """Raise TokenizerMismatch unless both models index the same vocabulary with the same special tokens."""
    if student.args.vocab_size != teacher.args.vocab_size:
        raise TokenizerMismatch(f"student vocabulary {student.args.vocab_size} ≠ teacher vocabulary {teacher.args.vocab_size}")
    if tokenizer.vocab_size > student.args.vocab_size:
        raise TokenizerMismatch(f"tokenizer has {tokenizer.vocab_size} tokens but the models only {student.args.vocab_size}")
    if teacher_tokenizer is None:
        return
    if teacher_tokenizer.vocab_size != tokenizer.vocab_size:
        raise TokenizerMismatch(f"teacher tokenizer has {teacher_tokenizer.vocab_size} tokens, student's {tokenizer.vocab_size}")
    if teacher_tokenizer.specials != tokenizer.specials:
        diff = sorted(set(teacher_tokenizer.specials.items()) ^ set(tokenizer.specials.items()))[:6]
        raise TokenizerMismatch(f"teacher and student special tokens differ: {diff}")
    if teacher_tokenizer.encode(_PROBE) != tokenizer.encode(_PROBE):
        raise TokenizerMismatch("teacher and student tokenizers encode the same text differently")


def distill(
    student: Transformer,
    teacher: Transformer,
    train_examples: Sequence[dict] | str | Path,
    tokenizer: Tokenizer,
    policy: Policy | None = None,
    config: TrainConfig | None = None,
    dev_examples: Sequence[dict] | str | Path | None = None,
    teacher_tokenizer: Tokenizer | None = None,
    log=None,
    return_result: bool = False,
) -> Transformer | TrainResult:
    """Train `student` (in place) towards `teacher`; returns the student (or the TrainResult).

    Without a config: CE and KL weighted 1:1 at temperature 1. A config that would not use the teacher at all
    (`kl_weight == hidden_weight == 0`) gets `kl_weight = 1` (distilling without the teacher would just be
    training); `kl_weight = 0` with `hidden_weight > 0` (hidden states only) is kept.
    """
    check_same_tokenizer(student, teacher, tokenizer, teacher_tokenizer)
    config = config or TrainConfig(kl_weight=1.0)
    if not config.uses_teacher:
        config = replace(config, kl_weight=1.0)
    result = train(student, train_examples, tokenizer, policy, config, teacher=teacher, dev_examples=dev_examples, log=log)
    return result if return_result else result.model
