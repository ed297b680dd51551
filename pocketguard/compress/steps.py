"""Recipe steps: the registry `STEPS` (kind → StepKind) and the step functions, each adapting one library
call (prune, distill, train, quantize, LoRA, export) to a recipe's `StepContext`. The recipe runner
(recipe.py) reads the file and runs these in order; the libraries below know nothing of recipes.
Libraries are imported inside the step functions, so a recipe without quantization never imports torchao."""

from __future__ import annotations

import importlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from .. import kernels as K
from ..model import Transformer
from ..policy import Policy
from ..tokenizer import Tokenizer

StepFn = Callable[..., nn.Module]  # (model, ctx, **params) -> model


class RecipeError(ValueError):
    """The recipe file is invalid, or the output folder is in a state the run cannot continue from."""


# ============================================================================================ registry
@dataclass
class StepKind:
    """One recipe step kind. `fn` is a callable or a lazy "package.module:function" reference.

    `defaults` are parameters the step gets unless the recipe sets them; `trains` marks steps that run
    `pocketguard.train.train`: they also get the recipe's `[train]` table and an `out_dir` in the step's
    work folder (so a killed run resumes mid-training) — their function must pass such unknown keyword
    parameters on to `TrainConfig`.
    """

    fn: StepFn | str
    defaults: dict = field(default_factory=dict)
    trains: bool = False
    doc: str = ""

    def resolve(self) -> StepFn:
        if callable(self.fn):
            return self.fn
        module, _, name = self.fn.partition(":")
        try:
            return getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError) as e:
            raise RecipeError(f"step function {self.fn} is not available: {e}") from None


@dataclass
class StepContext:
    """What a step function may use besides the model (the quantization steps read these names via `_ctx_get`, so a dict serves too)."""

    tokenizer: Tokenizer
    policy: Policy
    teacher: Transformer
    examples: list[dict]  # training examples
    dev_examples: list[dict]
    calibration: list[dict]  # pruning's calibration examples: the first [data] calib of `calibration_pool`
    device: torch.device
    work_dir: Path  # the step writes any files of its own here
    recipe: dict  # the parsed recipe, for provenance
    data: dict  # the recipe's [data] table
    index: int = 0
    kind: str = ""
    # the training examples in a seeded order: gptq / imatrix take their first `calibration_samples`, which may be
    # more than pruning's `calibration` (whose rows they then include)
    calibration_pool: list[dict] = field(default_factory=list)
    info: dict = field(default_factory=dict)  # step-specific facts for the report line (JSON-serialisable)
    saved: bool = False  # set by a step that wrote its own output (e.g. export_artifact)
    _calib_batches: list | None = None

    @property
    def train_examples(self) -> list[dict]:
        return self.examples

    def calib_batches(self) -> list:
        """Guard-formatted calibration batches (prompt + answer; targets on the answer tokens)."""
        if self._calib_batches is None:
            from ..examples import calibration_batches

            self._calib_batches = calibration_batches(
                self.calibration, self.tokenizer, self.policy, n=len(self.calibration),
                batch_size=int(self.data.get("calib_batch_size", 8)), max_len=int(self.data.get("max_len", 4096)))
        return self._calib_batches


def _prune_blocks(model, ctx: StepContext, keep: int, method: str = "cosine", iterative: bool = False):
    from .prune import prune_blocks

    new, report = prune_blocks(model, int(keep), ctx.calib_batches(), method=method, iterative=bool(iterative))
    ctx.info.update(kept=report.kept, removed=report.removed, scores=[round(s, 6) for s in report.scores])
    return new


def _prune_mlp(model, ctx: StepContext, width, budget: str = "uniform", min_width: int = 1, multiple_of: int = 1):
    from .prune import prune_mlp

    new, report = prune_mlp(model, width, ctx.calib_batches(), budget=budget, min_width=int(min_width),
                            multiple_of=int(multiple_of))
    ctx.info.update(widths=report.kept)
    return new


def _prune_output(model, ctx: StepContext, extra_texts: list[str] = ()):
    from .prune import guard_output_token_ids, prune_output

    extra = [t for text in extra_texts for t in ctx.tokenizer.encode(text)]
    new = prune_output(model, ctx.tokenizer, ctx.policy, extra_token_ids=extra)
    ids = new.args.output_token_ids
    ctx.info.update(n_tokens=len(ids), tokens=[ctx.tokenizer.decode([i]) for i in ids])
    assert set(guard_output_token_ids(ctx.tokenizer, ctx.policy)) <= set(ids)
    return new


def _prune_input(model, ctx: StepContext, fallback: str | int = "<|reserved_special_token_0|>", include_dev: bool = False):
    from .prune import corpus_token_ids, prune_input

    if isinstance(fallback, str):
        fb = ctx.tokenizer.specials.get(fallback)
        if fb is None:
            ids = ctx.tokenizer.encode(fallback)
            if len(ids) != 1:
                raise RecipeError(f"prune_input fallback {fallback!r} is not one token")
            fb = ids[0]
    else:
        fb = int(fallback)
    seen = corpus_token_ids(ctx.examples + (ctx.dev_examples if include_dev else []), ctx.tokenizer, ctx.policy)
    new = prune_input(model, seen, fb)
    ctx.info.update(n_tokens=len(new.args.input_token_ids), fallback_id=fb)
    return new


def _distill(model, ctx: StepContext, **params):
    from ..train import TrainConfig
    from .distill import distill

    config = TrainConfig.from_dict({"kl_weight": 1.0, **params})
    result = distill(model, teacher_for(model, ctx, config), ctx.examples, ctx.tokenizer, ctx.policy, config,
                     dev_examples=ctx.dev_examples or None, return_result=True)
    ctx.info.update(_train_info(result))
    return result.model


def _train(model, ctx: StepContext, **params):
    return train_in_step(model, ctx, params)


def _train_info(result) -> dict:
    """What a training step reports in its line: the dev eval, where it resumed, its last loss, and how many
    examples were skipped or cut as over-long."""
    return {"train_eval": getattr(result, "eval", None), "resumed_from": getattr(result, "resumed_from", None),
            "final_loss": _last_loss(getattr(result, "history", [])),
            "skipped_examples": getattr(result, "skipped_examples", 0),
            "truncated_examples": getattr(result, "truncated_examples", 0)}


def _last_loss(history: list[dict]) -> float | None:
    losses = [h["loss"] for h in history if "loss" in h]
    return losses[-1] if losses else None


def _export_artifact(model, ctx: StepContext):
    from .artifact import save_artifact

    from ..distributed import is_main

    if is_main():
        save_artifact(model, ctx.tokenizer, ctx.policy, ctx.work_dir, recipe=ctx.recipe)
    ctx.saved = True
    return model


def teacher_for(model: nn.Module, ctx, config) -> nn.Module | None:
    """The step context's teacher for a step that trains `model` with `config`. For the hidden term, a student that
    a rotation turned (QAT's `rotation`, a `rotate` step) gets a copy of the teacher turned the same way (rotate.py is
    deterministic in kind and seed): both sides then compare final hidden states in one basis, with their norm gains
    folded away (pocketguard.train refuses two bases). The context's teacher stays as it was."""
    import copy

    from ..train import rotation_of

    teacher = _ctx_get(ctx, "teacher")
    if teacher is not None and config.hidden_weight and rotation_of(model) and not rotation_of(teacher):
        from .rotate import rotate_model

        teacher = rotate_model(copy.deepcopy(teacher), **rotation_of(model))
    return teacher


def _ctx_get(ctx, key, default=None):
    if ctx is None:
        return default
    if isinstance(ctx, dict):
        return ctx.get(key, default)
    return getattr(ctx, key, default)


def _calibration_for(ctx, cfg, params: dict):
    """The calibration sequences of a gptq / imatrix step: `calibration_samples` of the context's examples. Fewer
    rows than asked is a warning and the report's `calibration_samples` says how many were used."""
    from .calibration import calibration_from_examples

    if params.get("calibration") is not None:
        return params["calibration"]
    examples = (_ctx_get(ctx, "calibration_pool") or _ctx_get(ctx, "calibration") or _ctx_get(ctx, "examples")
                or _ctx_get(ctx, "train_examples"))
    tok = _ctx_get(ctx, "tokenizer")
    if examples is None or tok is None:
        return None
    max_len = cfg.calibration_max_len
    data_max = (_ctx_get(ctx, "data") or {}).get("max_len") if isinstance(_ctx_get(ctx, "data"), dict) else None
    if data_max:
        max_len = min(max_len, int(data_max))
    seqs = calibration_from_examples(examples, tok, _ctx_get(ctx, "policy"), cfg.calibration_samples, max_len)
    if len(seqs) < cfg.calibration_samples:
        warnings.warn(f"{cfg.mode}: calibration_samples = {cfg.calibration_samples}, but [data] train has "
                      f"{len(seqs)} rows: calibrating on {len(seqs)}")
    info = _ctx_get(ctx, "info")
    if isinstance(info, dict):
        info["calibration_samples"] = len(seqs)
    return seqs


def ptq_step(model: nn.Module, ctx=None, **params) -> nn.Module:
    """Recipe step `quantize` (mode rtn | imatrix | gptq; default rtn)."""
    from .quantize import QuantConfig, quantize_

    params = dict(params)
    calibration = params.pop("calibration", None)
    params.setdefault("mode", "rtn")
    cfg, rest = QuantConfig.split(params)
    if rest:
        raise ValueError(f"unknown quantize step options {sorted(rest)}")
    if cfg.mode == "qat":
        raise ValueError("use the `qat` step for quantization-aware training")
    cal = _calibration_for(ctx, cfg, {"calibration": calibration}) if cfg.mode in ("gptq", "imatrix") else None
    return quantize_(model, cfg, calibration=cal)


QAT_LORA_KEYS = ("lora_rank", "lora_alpha", "lora_targets", "lora_dropout")  # qat options that train LoRA adapters


def qat_step(model: nn.Module, ctx=None, **params) -> nn.Module:
    """Recipe step `qat`: prepare_qat + pocketguard.train.train + convert.

    Keys QuantConfig knows configure the quantization; `lora_rank` (+ `lora_alpha`, `lora_targets`,
    `lora_dropout`) trains LoRA adapters on the frozen fake-quantized backbone instead of all weights (QLoRA;
    merged and re-quantized at convert); every other key goes to `TrainConfig` (the recipe's [train] table,
    `out_dir`, …). With `kl_weight` or `hidden_weight > 0` the recipe's teacher is distilled into the fake-quantized
    student. A student already quantized with the step's scheme trains on from its own codes (`qat_start`)."""
    from .quantize import QuantConfig, convert, prepare_qat, qat_start

    params = dict(params)
    params["mode"] = "qat"
    lora = {k: params.pop(k) for k in QAT_LORA_KEYS if k in params}
    cfg, train_params = QuantConfig.split(params)
    if any(K.is_quantized(m) for m in model.modules()):  # resume from its own codes (a shipped artifact repaired)
        info = _ctx_get(ctx, "info")
        model = qat_start(model, cfg, info if isinstance(info, dict) else None)
    prepare_qat(model, cfg)
    if lora.get("lora_rank"):
        from .lora import add_lora

        add_lora(model, rank=int(lora["lora_rank"]), alpha=float(lora.get("lora_alpha", 2 * lora["lora_rank"])),
                 targets=lora.get("lora_targets"), dropout=float(lora.get("lora_dropout", 0.0)),
                 generator=adapter_generator(ctx))
    model = train_in_step(model, ctx, train_params)
    return convert(model)


def adapter_generator(ctx) -> torch.Generator:
    """The RNG of a step's LoRA init, seeded from the recipe seed and the step's index: the global RNG's state
    depends on which steps ran in this process, so a run resumed before the step would draw other adapters."""
    from ..train import derived_seed

    recipe = _ctx_get(ctx, "recipe") or {}
    return torch.Generator().manual_seed(derived_seed(int(recipe.get("seed", 0)), int(_ctx_get(ctx, "index", 0))))


def train_in_step(model: nn.Module, ctx, train_params: dict) -> nn.Module:
    """Run pocketguard.train.train on the step context's data (shared by the train, qat and lora steps)."""
    from ..train import TrainConfig, train

    config = TrainConfig.from_dict(train_params)
    examples = _ctx_get(ctx, "examples") or _ctx_get(ctx, "train_examples")
    if not examples:
        raise ValueError("this step trains: it needs training examples (recipe [data] train)")
    teacher = teacher_for(model, ctx, config) if config.uses_teacher else None
    result = train(model, examples, _ctx_get(ctx, "tokenizer"), _ctx_get(ctx, "policy"), config, teacher=teacher,
                   dev_examples=_ctx_get(ctx, "dev_examples") or None)
    info = _ctx_get(ctx, "info")
    if isinstance(info, dict) and not isinstance(result, nn.Module):
        info.update(_train_info(result))
    return result if isinstance(result, nn.Module) else result.model


def lora_step(model: nn.Module, ctx=None, rank: int = 8, alpha: float | None = None, targets=None,
              dropout: float = 0.0, merge: bool = True, **train_params) -> nn.Module:
    """Recipe step `lora`: add adapters to the (quantized) model, train them with pocketguard.train (other
    keys go to TrainConfig), then merge and re-quantize when `merge` (the default)."""
    from .lora import add_lora, merge_lora

    add_lora(model, int(rank), float(alpha) if alpha is not None else 2.0 * int(rank), targets, float(dropout),
             adapter_generator(ctx))
    model = train_in_step(model, ctx, train_params)
    if not merge:
        return model
    moved: dict = {}
    model = merge_lora(model, requantize=True, report=moved)
    info = _ctx_get(ctx, "info")
    if isinstance(info, dict):
        info["lora_merge"] = moved
    return model


# Step kind → StepKind. To add a kind, add an entry here, or call
# `register_step(kind, fn, ...)` from your module and make sure it is imported before the recipe runs.
# Contract: fn(model, ctx: StepContext, **params) -> model; read ctx.tokenizer / policy / teacher /
# examples / calibration / work_dir; put report facts in ctx.info; a step that writes its own output
# into ctx.work_dir sets ctx.saved = True (otherwise the runner saves the returned model).
STEPS: dict[str, StepKind] = {
    "prune_blocks": StepKind(_prune_blocks, doc="keep N decoder blocks (method cosine | loss | kl)"),
    "prune_mlp": StepKind(_prune_mlp, doc="keep `width` MLP neurons per layer (budget uniform | global)"),
    "prune_output": StepKind(_prune_output, doc="keep only the head rows of the guard's answer tokens"),
    "prune_input": StepKind(_prune_input, doc="keep only embedding rows of tokens seen in the training data"),
    "distill": StepKind(_distill, trains=True, doc="CE + KL to the teacher (TrainConfig options)"),
    "train": StepKind(_train, trains=True, doc="fine-tune with CE (KL / hidden-state distillation too when kl_weight / hidden_weight > 0)"),
    "qat": StepKind(qat_step, trains=True,
                    doc="int4/int8 quantization-aware training, then convert to quantized kernels"),
    "lora": StepKind(lora_step, trains=True, doc="LoRA adapters on a quantized model"),
    "quantize": StepKind(ptq_step, doc="post-training quantization (mode rtn | imatrix | gptq)"),
    "ptq_rtn": StepKind(ptq_step, {"mode": "rtn"}, doc="round-to-nearest PTQ"),
    "imatrix": StepKind(ptq_step, {"mode": "imatrix"}, doc="importance-weighted PTQ"),
    "gptq": StepKind(ptq_step, {"mode": "gptq"}, doc="GPTQ"),
    "rotate": StepKind("pocketguard.compress.rotate:rotate_step", doc="fold norms + Hadamard/random rotation"),
    "export_artifact": StepKind(_export_artifact, doc="write the packed compressed artifact"),
}


def register_step(kind: str, fn: StepFn | str, defaults: dict | None = None, trains: bool = False, doc: str = "") -> None:
    STEPS[kind] = StepKind(fn, dict(defaults or {}), trains, doc)
