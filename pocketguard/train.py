"""One training loop for teacher training (CE), distillation (CE + KL to a teacher) and QAT.

Data are labelled examples, encoded as the guard reads them with the loss on the answer tokens only
(examples.py):

* **CE** on the answer tokens (the student's head rows of those vocabulary ids),
* **KL** (with `kl_weight > 0` and a teacher) at the same positions between the teacher's and the
  student's distributions over the *student's kept head tokens*: the teacher's logits are gathered at the
  vocabulary ids of `student.output_token_ids` (a full head keeps the whole vocabulary), both are softened
  by `temperature`, and `KL(p_teacher ‖ p_student) · T²` is averaged over answer positions.
* **hidden** (with `hidden_weight > 0` and a teacher of the same width) at *every* real token: the cosine
  distance between the teacher's and the student's final (normed) hidden states. The answer-position KL sees
  about two tokens per conversation; this dense term passes on how the teacher reads the whole conversation,
  which a block- and width-pruned student has to relearn (the intermediate-state loss of Minitron and the
  cosine loss of DistilBERT, here on the last layer only since pruning keeps the width but not the depth; student
  and teacher must carry the same rotation, compress.rotate's: recipe steps turn a copy of the teacher to match).
* with `distill_where_teacher_right`, both teacher terms are left out for an example whose verdict (its first
  answer token) the teacher predicts wrongly: such an example trains on CE alone.

Batches are length-bucketed. Under `torchrun` (WORLD_SIZE > 1) the process group is initialised from the
environment (distributed.py), every rank trains on its own slice of each global batch (DDP, or FSDP2 with
`parallel="fsdp"`), and only rank 0 logs, shows progress and writes checkpoints. With `out_dir` set the loop
writes `out_dir/train_state.pt` (model, optimizer, step, the log so far) every `save_every` steps and at the end, and a later
call with the same `out_dir` continues from the saved step: the batch order is a pure function of
(seed, step), and the random draws of a step (dropout) of (seed, step, rank), so a resumed run sees exactly the
batches and masks the killed one would have seen.

The model is trained in place (moved to the training device) and returned.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import hashlib
import json
import math
import os
import platform
import time
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .artifact import written_atomically
from .distributed import barrier, default_device, init_distributed
from .examples import IGNORE, Batch, GuardData, collate, epoch_batches, load_examples
from .model import Transformer
from .policy import Policy
from .tokenizer import Tokenizer

STATE_FILE = "train_state.pt"
# Options that decide which examples a step trains on (with the global batch), checked when a run resumes
_ORDER_OPTIONS = ("seed", "grad_accum", "bucket", "augment", "augment_keep")


# ============================================================================================ config
@dataclass
class TrainConfig:
    lr: float = 1e-4
    steps: int = 0  # optimizer steps; 0 → from `epochs`
    epochs: float = 1.0
    batch_size: int = 8  # examples per micro-batch per process
    grad_accum: int = 1
    warmup: float = 0.03  # < 1: fraction of the steps; ≥ 1: a number of steps
    min_lr_ratio: float = 0.1  # cosine decays to lr · min_lr_ratio
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # 0 disables clipping
    bf16: bool = True  # bf16 autocast on CUDA; False: every device trains in the model's dtype
    cpu_bf16: bool = False  # also bf16 autocast on the CPU (opt-in; needs avx512_bf16 or AMX; needs bf16)
    seed: int = 0
    ce_weight: float = 1.0
    kl_weight: float = 0.0
    temperature: float = 1.0
    hidden_weight: float = 0.0  # cosine distance to the teacher's final hidden states at every real token
    # Distil only where the teacher is right: an example whose verdict (the first answer token) the teacher gets wrong
    # trains on CE alone, without KL or the hidden-state term, so rows added to teach what the teacher misses are
    # not pulled back toward its answer (a kept teacher scored 41 of data-x7's 150 new rows wrong, most at p ≤ 0.15)
    distill_where_teacher_right: bool = False
    max_len: int = 4096
    # Recompute each block's activations in backward instead of keeping them: memory for ~1/3 more compute (CPU
    # training of a ~100M student; larger batches on a GPU); the model must be a Transformer (or have the switch)
    activation_checkpointing: bool = False
    overlong: str = "skip"  # judged turn alone longer than max_len: "skip" the example or "truncate" it (safe ones)
    eval_every: int = 0  # steps; 0: only at the end (when dev data are given)
    save_every: int = 0  # steps; 0: only at the end (when out_dir is set)
    log_every: int = 10
    augment: bool = False  # Llama Guard's policy shuffle/drop augmentation (pocketguard.augment)
    # How often a shortened list keeps a category the example violates: a probability whatever the list's size,
    # or "uniform" (a uniform random subset, Llama Guard's; short lists then mostly mean safe)
    augment_keep: float | str = 0.5
    bucket: bool = True  # length-bucketed batches
    parallel: str = "ddp"  # under torchrun: "ddp" or "fsdp"
    out_dir: str | None = None  # train_state.pt + train_log.jsonl; enables resume
    resume: bool = True  # continue from out_dir/train_state.pt when it exists
    progress: bool = True  # tqdm bar on rank 0
    device: str | None = None  # default: cuda:LOCAL_RANK when CUDA is available, else cpu
    name: str = ""  # progress-bar label (default: "train", or "distill" with a KL teacher)
    # Processes that encode and collate the next steps' batches while this one trains (torch DataLoader
    # workers); None: 2 on CUDA (where the CPU work would otherwise idle the GPU), 0 (in-process) on the CPU.
    loader_workers: int | None = None

    def __post_init__(self):
        self.betas = tuple(self.betas)
        if self.overlong not in ("skip", "truncate"):
            raise ValueError(f"overlong must be 'skip' or 'truncate', got {self.overlong!r}")
        keep = self.augment_keep
        if keep != "uniform" and (isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0.0 <= keep <= 1.0):
            raise ValueError(f"augment_keep must be a probability or 'uniform', got {self.augment_keep!r}")
        if self.parallel not in ("ddp", "fsdp"):
            raise ValueError(f"parallel must be 'ddp' or 'fsdp', got {self.parallel!r}")
        if self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("batch_size and grad_accum must be at least 1")
        # Out of range these did not fail but trained otherwise than asked: a negative grad_clip scaled every gradient
        # by a negative factor (clip_grad_norm_), i.e. gradient *ascent*; steps < 0 trained nothing and reported
        # success; epochs ≤ 0 still took a step; a negative *_every saved / evaluated on the positive period
        if self.grad_clip < 0:
            raise ValueError(f"grad_clip must be ≥ 0 (0 disables clipping), got {self.grad_clip!r}")
        if self.steps < 0:
            raise ValueError(f"steps must be ≥ 0 (0: from epochs), got {self.steps!r}")
        if not self.steps and not self.epochs > 0:
            raise ValueError(f"epochs must be > 0 (or set steps), got {self.epochs!r}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be ≥ 0 (a fraction of the steps below 1, else a step count), got {self.warmup!r}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ValueError(f"min_lr_ratio must be within [0, 1], got {self.min_lr_ratio!r}")
        for name in ("eval_every", "save_every", "log_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be a number of steps ≥ 0, got {getattr(self, name)!r}")
        weights = (self.ce_weight, self.kl_weight, self.hidden_weight)
        if min(weights) < 0 or max(weights) == 0:
            raise ValueError("ce_weight, kl_weight and hidden_weight must be ≥ 0 and not all 0")
        if self.temperature <= 0:
            raise ValueError("temperature must be > 0")
        if self.distill_where_teacher_right and not self.kl_weight:
            raise ValueError("distill_where_teacher_right reads the teacher's verdict from its answer logits: it needs "
                             "kl_weight > 0")
        if self.cpu_bf16 and not self.bf16:
            raise ValueError("cpu_bf16 extends bf16 autocast to the CPU: it needs bf16 = true")
        if self.loader_workers is not None and (isinstance(self.loader_workers, bool) or self.loader_workers < 0):
            raise ValueError(f"loader_workers must be a count ≥ 0, got {self.loader_workers!r}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown training options {sorted(unknown)}; known: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def uses_teacher(self) -> bool:
        return bool(self.kl_weight or self.hidden_weight)


# ============================================================================================ batches
class StepBatches(torch.utils.data.Dataset):
    """Optimizer step → this rank's micro-batches for it, a pure function of the step (the batch order comes from
    (seed, epoch) alone), so DataLoader workers can build steps ahead, in any process, and a resumed run starts
    at its step. With policy augmentation each example is re-encoded under its drawn policy: ~0.5 ms a row,
    ~35 ms a batch of 64 that would otherwise stand between two GPU steps."""

    def __init__(self, data: GuardData, batch_size: int, world: int, rank: int, grad_accum: int, seed: int,
                 bucket: bool):
        self.data, self.batch_size, self.rank, self.grad_accum = data, batch_size, rank, grad_accum
        self.global_batch, self.seed, self.bucket = batch_size * world, seed, bucket
        self.per_epoch = math.ceil(len(data) / self.global_batch)
        self._epoch: tuple[int, list[list[int]]] | None = None  # the last epoch's batches (per process)

    def micro(self, k: int) -> Batch:
        epoch, j = divmod(k, self.per_epoch)
        if self._epoch is None or self._epoch[0] != epoch:
            self._epoch = epoch, epoch_batches(self.data.lengths, self.global_batch, self.seed, epoch, self.bucket)
        idx = self._epoch[1][j][self.rank * self.batch_size : (self.rank + 1) * self.batch_size]
        return collate([self.data.get(i, epoch) for i in idx])

    def __getitem__(self, step: int) -> list[Batch]:
        return [self.micro(step * self.grad_accum + a) for a in range(self.grad_accum)]


# ============================================================================================ model glue
class _AtPositions(nn.Module):
    """Logits only where a loss is taken: the head runs on the gathered answer positions, not on every
    token (a 128k-row head over a whole prompt would dominate the step). Wrapped by DDP / FSDP."""

    def __init__(self, model: nn.Module, recompute: bool = False):
        super().__init__()
        self.model, self.recompute = model, recompute

    def forward(self, tokens: Tensor, valid: Tensor, rows: Tensor, cols: Tensor, hidden: bool = False,
                logits: bool = True) -> Tensor | tuple[Tensor | None, Tensor]:
        """Logits at (rows, cols); with `hidden`, also the final hidden states of every real token. Without
        `logits` (a hidden-only loss) the head is not run: DDP would wait for its gradient (see _wrap)."""
        h = self._hidden(tokens, valid)
        out = self.model.output(h[rows, cols]) if logits else None
        return (out, h[valid]) if hidden else out

    def _hidden(self, tokens: Tensor, valid: Tensor) -> Tensor:
        if not self.recompute:
            return self.model(tokens, valid=valid, return_hidden=True)
        # The model's switch (TrainConfig.activation_checkpointing) is on for this forward only: backward replays
        # the blocks themselves, not this call, and whatever stops training leaves the model as it was.
        before, self.model.activation_checkpointing = self.model.activation_checkpointing, True
        try:
            return self.model(tokens, valid=valid, return_hidden=True)
        finally:
            self.model.activation_checkpointing = before


def head_lookup(model: Transformer) -> Tensor:
    """vocab id → head row (IGNORE for ids a pruned head lacks)."""
    V = model.args.vocab_size
    if model.output_token_ids is None:
        return torch.arange(V)
    lut = torch.full((V,), IGNORE, dtype=torch.long)
    lut[model.output_token_ids.cpu()] = torch.arange(len(model.output_token_ids))
    return lut


def teacher_rows(student: Transformer, teacher: Transformer) -> Tensor | None:
    """Teacher head rows of the student's head vocabulary (None when both heads are the same full vocabulary)."""
    if student.output_token_ids is None and teacher.output_token_ids is None and student.args.vocab_size == teacher.args.vocab_size:
        return None
    ids = student.output_token_ids.tolist() if student.output_token_ids is not None else list(range(student.args.vocab_size))
    rows = teacher.head_rows(ids)
    missing = [t for t, r in zip(ids, rows) if r is None]
    if missing:
        raise ValueError(f"the teacher's head cannot score {len(missing)} token(s) the student's head keeps "
                         f"(e.g. {missing[:8]}); prune the student's head first or use a teacher with a larger head")
    return torch.tensor(rows, dtype=torch.long)


@functools.cache  # CPU flags do not change: `_autocast` asks before every forward pass
def cpu_bf16_supported() -> bool:
    """Whether this CPU has bf16 matmul instructions: avx512_bf16 or AMX-BF16 on x86 (torch's own
    `_is_mkldnn_bf16_supported` says yes to any AVX-512 CPU, where oneDNN only emulates bf16), elsewhere
    what oneDNN reports (Arm's BF16 extension)."""
    if not torch.backends.mkldnn.is_available():
        return False
    if platform.machine().lower() in ("x86_64", "amd64"):  # (every AMX CPU has AMX-BF16)
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def require_cpu_bf16() -> None:
    """Refuse `cpu_bf16` on a CPU without bf16 instructions rather than warn and fall back to fp32: the option
    is there for the speed of those instructions (emulated bf16 computes in fp32, plus conversions), and a
    silent fallback would train other numerics than the config (and a recipe's step hash) says, depending on
    the host the same recipe runs on."""
    if not cpu_bf16_supported():
        raise RuntimeError("cpu_bf16 = true needs a CPU with native bf16 matmuls (avx512_bf16 or AMX) and "
                           "this one has none; set cpu_bf16 = false to train in fp32")


def rotation_of(model: nn.Module) -> dict | None:
    """The rotation folded into `model` (compress.rotate records it in args.extra), None when there is none."""
    return (getattr(model.args, "extra", None) or {}).get("rotation")


def _autocast(device: torch.device, bf16: bool, cpu_bf16: bool = False):
    """bf16 autocast on CUDA with `bf16`; on the CPU only with `cpu_bf16` too (an opt-in: CPU runs, the
    tests' among them, keep the model's dtype by default)."""
    if bf16 and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    if bf16 and cpu_bf16 and device.type == "cpu":
        require_cpu_bf16()
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def derived_seed(*parts: int) -> int:
    """A torch RNG seed from integers, e.g. (seed, step, rank): other parts, an unrelated stream."""
    return int.from_bytes(hashlib.sha256(":".join(map(str, parts)).encode()).digest()[:8], "little") >> 1


def lr_at(step: int, total: int, config: TrainConfig) -> float:
    warm = int(config.warmup if config.warmup >= 1 else round(config.warmup * total))
    if warm and step < warm:
        return config.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    cos = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * (config.min_lr_ratio + (1 - config.min_lr_ratio) * cos)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class TrainResult:
    model: nn.Module
    step: int
    history: list[dict] = field(default_factory=list)
    eval: dict | None = None
    resumed_from: int = 0
    skipped_examples: int = 0  # judged turn alone over max_len: not trained on
    truncated_examples: int = 0  # judged turn cut to max_len (overlong="truncate")


def _loss(out: Tensor | None, y: Tensor, t_logits: Tensor | None, config: TrainConfig, h: Tensor | None = None,
          t_h: Tensor | None = None, n_answer: Tensor | None = None,
          n_real: Tensor | None = None, kl_keep: Tensor | None = None,
          hidden_keep: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """(weighted loss, its detached parts [ce, kl, hidden]).

    CE and KL are means over the answer positions given, the hidden term over the real tokens given; with
    `n_answer` / `n_real` they are sums divided by those counts instead (the counts of the whole global batch, so
    that micro-batches and ranks add up to the mean over the global batch, as one process with it computes).
    `kl_keep` / `hidden_keep` (0/1 per answer position / real token) leave positions out of those two terms
    (`teacher_right`), still counted in the means. `out` is None when neither CE nor KL is on (the head was not run)."""
    out = out.float() if out is not None else None
    zero = h.new_zeros((), dtype=torch.float32) if out is None else out.new_zeros(())

    def mean(x: Tensor, n: Tensor | None) -> Tensor:
        return x.mean() if n is None else x.sum() / n

    ce = mean(F.cross_entropy(out, y, reduction="none"), n_answer) if config.ce_weight else zero
    kl = zero
    if t_logits is not None and config.kl_weight:
        T = config.temperature
        lt = torch.log_softmax(t_logits.float() / T, -1)
        ls = torch.log_softmax(out / T, -1)
        per = (lt.exp() * (lt - ls)).sum(-1)
        kl = mean(per if kl_keep is None else per * kl_keep, n_answer) * T * T
    hid = zero
    if h is not None and t_h is not None:
        per = 1 - F.cosine_similarity(h.float(), t_h.float(), dim=-1)
        hid = mean(per if hidden_keep is None else per * hidden_keep, n_real)
    loss = config.ce_weight * ce + config.kl_weight * kl + config.hidden_weight * hid
    return loss, torch.stack([ce.detach(), kl.detach(), hid.detach()])


def first_answers(rows: Tensor) -> Tensor:
    """Indices into `rows` — the answer positions' batch rows in row-major order (`nonzero`) — of each row's first
    answer position, the one that predicts its verdict; a row without answer positions (padding) has none."""
    first = torch.ones_like(rows, dtype=torch.bool)
    first[1:] = rows[1:] != rows[:-1]
    return first.nonzero(as_tuple=True)[0]


def teacher_right(rows: Tensor, t_logits: Tensor, y: Tensor, valid: Tensor) -> tuple[Tensor, Tensor]:
    """For `distill_where_teacher_right`: (per answer position, per real token) 1.0 where the example's verdict —
    its first answer position (`first_answers`) — is the teacher's top token, else 0.0."""
    f = first_answers(rows)
    right = torch.ones(valid.shape[0], dtype=torch.bool, device=rows.device)
    right[rows[f]] = t_logits[f].argmax(-1) == y[f]
    return right[rows].float(), right[valid.nonzero(as_tuple=True)[0]].float()


# ============================================================================================ evaluation
@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[Batch], tokenizer: Tokenizer, device=None, bf16: bool = True,
             net: nn.Module | None = None, pad_to: int = 0, cpu_bf16: bool = False) -> dict:
    """Answer-token CE, and safe/unsafe accuracy, F1 and p_unsafe from the first answer token.

    `bf16` / `cpu_bf16`: the autocast of TrainConfig's fields of those names (train passes its own).

    Under torch.distributed every rank passes its own share of batches; sums are all-reduced. `pad_to`:
    run dummy passes until this many (FSDP ranks must make the same number of forward calls).
    `net` is the (possibly DDP/FSDP-wrapped) `_AtPositions` to run; default: one around `model`.
    """
    base = model
    net = net if net is not None else _AtPositions(model)
    device = device or next(base.parameters()).device
    lut = head_lookup(base).to(device)
    first_rows = lut[torch.tensor([tokenizer.encode("safe")[0], tokenizer.encode("unsafe")[0]], device=device)]
    was = net.training
    net.eval()
    s = torch.zeros(6, dtype=torch.float64, device=device)  # ce_sum, n_tok, correct, tp, fp, fn
    p_all = []
    batches = list(batches)
    for _ in range(len(batches), pad_to):  # results ignored
        zero = torch.zeros(1, dtype=torch.long, device=device)
        with _autocast(device, bf16, cpu_bf16):
            net(torch.zeros(1, 1, dtype=torch.long, device=device), torch.ones(1, 1, dtype=torch.bool, device=device), zero, zero)
    for batch in batches:
        batch = batch.to(device)
        m = batch.targets != IGNORE
        rows, cols = m.nonzero(as_tuple=True)
        with _autocast(device, bf16, cpu_bf16):
            out = net(batch.tokens, batch.valid, rows, cols).float()
        y = lut[batch.targets[rows, cols]]
        s[0] += F.cross_entropy(out, y, ignore_index=IGNORE, reduction="sum").double()
        s[1] += int((y != IGNORE).sum())
        first_idx = first_answers(rows)  # each row's verdict position (a row without one is not scored)
        if (first_rows == IGNORE).any():
            continue
        p = torch.softmax(out[first_idx][:, first_rows], -1)[:, 1]
        pred = (p > 0.5).long()
        lab = batch.labels[rows[first_idx]]
        s[2] += int((pred == lab).sum())
        s[3] += int(((pred == 1) & (lab == 1)).sum())
        s[4] += int(((pred == 1) & (lab == 0)).sum())
        s[5] += int(((pred == 0) & (lab == 1)).sum())
        p_all.append(p.cpu())
    if dist.is_initialized():
        dist.all_reduce(s)
    net.train(was)
    ce_sum, ntok, correct, tp, fp, fn = s.tolist()
    n = tp + fp + fn + (correct - tp)  # tp + fp + fn + tn
    return {
        "loss": ce_sum / max(ntok, 1),
        "acc": correct / max(n, 1),
        "f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "n": int(n),
        "p_unsafe": torch.cat(p_all).tolist() if p_all else [],
    }


# ============================================================================================ the loop
def _wrap(model: nn.Module, config: TrainConfig, device: torch.device, world: int) -> tuple[nn.Module, nn.Module]:
    """(net to call, module holding the trained parameters)."""
    net = _AtPositions(model, config.activation_checkpointing)
    if world == 1:
        return net, model
    if config.parallel == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [device.index] if device.type == "cuda" else None
        # A hidden-state-only loss leaves the head out of the step (_AtPositions does not run it): DDP must then
        # not wait for the head's gradient
        idle_head = not (config.ce_weight or config.kl_weight)
        return DDP(net, device_ids=ids, broadcast_buffers=False, find_unused_parameters=idle_head), model
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    # FSDP2 shards in place: train a copy, copy the full weights back into `model` at the end. The mesh is named
    # for the training device: fully_shard's default takes CUDA whenever it is there, so CPU ranks (gloo) on a
    # machine with fewer GPUs than ranks died in `cuda.set_device` (torch 2.11 on a one-GPU machine)
    mesh = init_device_mesh(device.type, (world,))
    work = copy.deepcopy(net)
    for layer in work.model.layers:
        fully_shard(layer, mesh=mesh)
    fully_shard(work, mesh=mesh)
    return work, work.model


def _full_state(net: nn.Module, optimizer) -> tuple[dict, dict]:
    """Full (unsharded) model and optimizer state, the optimizer's keyed by parameter name in every mode (one
    process, DDP, FSDP), so that a state saved in one mode loads in any other."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_state_dict

    return get_state_dict(net, optimizer, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def _load_state(net: nn.Module, optimizer, msd: dict, osd: dict) -> None:
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_optimizer_state_dict,
                                                         set_state_dict)

    options = StateDictOptions(full_state_dict=True)
    if any(isinstance(k, int) for k in osd["state"]):  # a file from before names: ids count the groups' parameters
        names = [n for g in get_optimizer_state_dict(net, optimizer, options=options)["param_groups"]
                 for n in g["params"]]
        osd = {"state": {names[i]: v for i, v in osd["state"].items()},
               "param_groups": [{**g, "params": [names[i] for i in g["params"]]} for g in osd["param_groups"]]}
    set_state_dict(net, optimizer, model_state_dict=msd, optim_state_dict=osd, options=options)


def train(
    model: Transformer,
    examples: Sequence[dict] | str | Path,
    tokenizer: Tokenizer,
    policy: Policy | None = None,
    config: TrainConfig | None = None,
    teacher: Transformer | None = None,
    dev_examples: Sequence[dict] | str | Path | None = None,
    log: Callable[[dict], None] | None = None,
) -> TrainResult:
    """Train `model` on labelled examples (CE; + KL / hidden-state distance to `teacher` when `config.kl_weight`
    / `config.hidden_weight > 0`).

    `model` may be any module with Transformer's interface (`forward(..., return_hidden=True)`, `.output`,
    `.args`, `.output_token_ids`) — e.g. a fake-quantized model for QAT. Returns a TrainResult whose
    `.model` is `model` itself, trained, on the training device.
    """
    config = config or TrainConfig()
    if config.activation_checkpointing and not hasattr(model, "activation_checkpointing"):
        raise ValueError(f"activation_checkpointing needs a model with the switch (pocketguard's Transformer), "
                         f"not {type(model).__name__}")
    policy = policy or Policy.default()
    device = default_device(config.device)
    if config.cpu_bf16 and device.type == "cpu":
        require_cpu_bf16()  # before any work, not at the first step
    rank, world, _ = init_distributed(device)
    torch.manual_seed(config.seed)
    if isinstance(examples, (str, Path)):
        examples = load_examples(examples, policy)
    if isinstance(dev_examples, (str, Path)):
        dev_examples = load_examples(dev_examples, policy)
    if config.uses_teacher and teacher is None:
        raise ValueError("kl_weight or hidden_weight > 0 needs a teacher")
    if config.hidden_weight and teacher.args.dim != model.args.dim:
        raise ValueError(f"hidden_weight needs a teacher of the student's width ({model.args.dim}), "
                         f"not {teacher.args.dim}")
    if config.hidden_weight and rotation_of(model) != rotation_of(teacher):
        # A rotation (QuantConfig.rotation, the `rotate` step) keeps the logits but turns the residual stream: the
        # cosine to the other model's hidden states would be taken across two bases, a wrong loss without a word
        raise ValueError(f"hidden_weight compares final hidden states, but the student's rotation "
                         f"{rotation_of(model)} is not the teacher's {rotation_of(teacher)}: rotate a copy of the "
                         "teacher the same way (compress.rotate.rotate_model; recipe steps do) or set hidden_weight = 0 "
                         "(CE and KL do not depend on the rotation)")
    # A prompt longer than the model's context cannot be trained on: the cap is the smaller of the two.
    max_len = min(config.max_len, model.args.max_seq_len)
    data = GuardData(examples, tokenizer, policy, max_len, config.overlong, config.augment, config.seed,
                     augment_keep=None if config.augment_keep == "uniform" else float(config.augment_keep))
    if data.skipped and rank == 0:
        warnings.warn(f"{data.skipped} example(s) skipped: the judged turn alone exceeds max_len={max_len}")
    if data.truncated and rank == 0:
        warnings.warn(f"{data.truncated} example(s) trained with their judged turn cut to max_len={max_len} "
                      "(overlong='truncate', safe examples only: an unsafe one is skipped, its harm may be past the cut)")

    model.to(device)
    lut = head_lookup(model).to(device)
    # Every answer token must have a head row, or CE would silently ignore it.
    answer_vocab = {t for e in data.encoded for t in e.ids[e.n_prompt :]}
    lacking = sorted(t for t in answer_vocab if int(lut[t]) == IGNORE)
    if lacking:
        raise ValueError(f"the model's head cannot emit answer tokens {lacking}; prune_output with this policy")
    t_rows = None
    use_teacher = config.uses_teacher  # (a teacher is there: checked above)
    if use_teacher:
        teacher.to(device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        t_rows = teacher_rows(model, teacher)
        t_rows = t_rows.to(device) if t_rows is not None else None

    net, trained = _wrap(model, config, device, world)
    fused = device.type == "cuda" and not (world > 1 and config.parallel == "fsdp")
    optimizer = torch.optim.AdamW(_param_groups(net, config.weight_decay), lr=config.lr, betas=config.betas,
                                  fused=fused or None)
    steps = StepBatches(data, config.batch_size, world, rank, config.grad_accum, config.seed, config.bucket)
    total = config.steps or max(1, math.ceil(config.epochs * steps.per_epoch / config.grad_accum))

    out_dir = Path(config.out_dir) if config.out_dir else None
    state_path = out_dir / STATE_FILE if out_dir else None
    start = 0
    history: list[dict] = []
    # The log's open window (loss sums and steps since the last record, the global batch's: rank 0 holds them) and
    # the skipped steps so far: saved with the state, so that a resumed run's records are the straight run's
    acc = torch.zeros(4, device=device)  # loss, ce, kl, hidden: sums of the steps' values since the last log
    acc_n = 0  # steps in `acc`
    skipped_steps = 0
    if state_path is not None and config.resume and state_path.exists():
        st = torch.load(state_path, map_location="cpu", weights_only=False)
        _load_state(net, optimizer, st["model"], st["optimizer"])
        start = int(st["step"])
        history = list(st.get("history", []))
        window = st.get("log_window")  # (a file from before has none)
        if window is not None:
            if rank == 0:
                acc.copy_(torch.as_tensor(window["sums"]))
            acc_n, skipped_steps = int(window["steps"]), int(window["skipped_steps"])
        if st.get("total") != total and rank == 0:
            warnings.warn(f"resuming a run planned for {st.get('total')} steps with {total} steps")
        # The batches of a step are a function of these: changed, the resumed run trains on other batches than the
        # saved one would have (e.g. resumed on fewer GPUs with the same per-process batch_size)
        order = {**{k: getattr(config, k) for k in _ORDER_OPTIONS}, "global_batch": steps.global_batch}
        saved = {**{k: v for k, v in st.get("config", {}).items() if k in _ORDER_OPTIONS},
                 **({"global_batch": st["global_batch"]} if "global_batch" in st else {})}
        changed = {k: (v, order[k]) for k, v in saved.items() if v != order[k]}
        if changed and rank == 0:
            warnings.warn("resuming with other batches than the saved run's: "
                          + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items())
                          + " (global_batch = batch_size × processes); the steps from here on see other data")
    resumed_from = start

    dev_batches: list[Batch] = []
    if dev_examples:
        dev = GuardData(dev_examples, tokenizer, policy, max_len, "truncate")
        order = sorted(range(len(dev)), key=lambda i: dev.lengths[i])
        mine = order[rank::world]
        dev_batches = [collate([dev.encoded[i] for i in mine[k : k + config.batch_size]])
                       for k in range(0, len(mine), config.batch_size)]
    # every rank runs the same number of forward passes (FSDP all-gathers in each one)
    dev_calls = math.ceil(math.ceil(len(dev_examples) / world) / config.batch_size) if dev_examples else 0

    log_file = (out_dir / "train_log.jsonl") if (out_dir and rank == 0) else None
    if out_dir and rank == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        # The log restarts from the state's history: a killed run may have logged past its last save, or (killed
        # before its first save, or resume = false) left a log of steps this run trains again
        log_file.write_text("".join(json.dumps(r) + "\n" for r in history))
        if not config.resume:  # an older run's state, left until this run's first save, would be resumed after a kill
            state_path.unlink(missing_ok=True)

    def emit(rec: dict) -> None:
        history.append(rec)
        if rank != 0:
            return
        if log_file is not None:
            with open(log_file, "a", encoding="utf-8") as f:
                f.write(json.dumps(rec) + "\n")
        if log is not None:
            log(rec)

    def save(step: int) -> None:
        if state_path is None:
            return
        msd, osd = _full_state(net, optimizer)
        sums = acc.clone()
        if world > 1:
            dist.all_reduce(sums)
        if rank == 0:
            window = {"sums": sums.tolist(), "steps": acc_n, "skipped_steps": skipped_steps}
            with written_atomically(state_path) as tmp:
                torch.save({"model": msd, "optimizer": osd, "step": step, "total": total, "history": history,
                            "log_window": window, "global_batch": steps.global_batch, "config": config.to_dict()}, tmp)
        barrier()

    def run_eval(step: int) -> dict | None:
        if not dev_examples:  # the same on every rank
            return None
        r = evaluate(trained, dev_batches, tokenizer, device, config.bf16, net=net, pad_to=dev_calls,
                     cpu_bf16=config.cpu_bf16)
        r.pop("p_unsafe")
        emit({"step": step, "eval": r})
        return r

    bar = None
    if rank == 0 and config.progress and start < total:
        from tqdm.auto import tqdm

        label = config.name or ("distill" if use_teacher else "train")
        bar = tqdm(total=total, initial=start, desc=label, unit="step",
                   dynamic_ncols=True, leave=False, disable=None)  # None: no bar when stderr is not a terminal

    workers = config.loader_workers if config.loader_workers is not None else (2 if device.type == "cuda" else 0)
    if workers:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # forked workers: the Rust pool stays off
    loader = torch.utils.data.DataLoader(steps, batch_size=None, sampler=range(start, total), num_workers=workers,
                                         pin_memory=device.type == "cuda", prefetch_factor=4 if workers else None)
    net.train()
    last_eval = None
    t_last, tok_count = time.perf_counter(), 0
    for step, batches in enumerate(loader, start):
        # Dropout draws from a stream that is a function of (seed, step, rank): a resumed run draws what the killed
        # one would have, and DDP ranks draw masks of their own
        torch.manual_seed(derived_seed(config.seed, step, rank))
        lr = lr_at(step, total, config)
        for g in optimizer.param_groups:
            g["lr"] = lr
        # The step's loss is the mean over every answer token of the global batch (all micro-batches, all ranks),
        # as one process with the whole batch computes it: a mean of per-micro-batch or per-rank means would weigh
        # the tokens of a batch of short (safe) answers more. Counted on the CPU copies: no device sync.
        n_real = sum(int(b.valid.sum()) for b in batches)
        tok_count += n_real
        counts = torch.tensor([sum(int((b.targets != IGNORE).sum()) for b in batches), n_real],
                              dtype=torch.float32).to(device)
        if world > 1:
            dist.all_reduce(counts)
        for a, batch in enumerate(batches):
            batch = batch.to(device)
            m = batch.targets != IGNORE
            rows, cols = m.nonzero(as_tuple=True)
            y = lut[batch.targets[rows, cols]]
            t_logits = t_h = h = None
            if use_teacher:
                with torch.no_grad(), _autocast(device, config.bf16, config.cpu_bf16):
                    th = teacher(batch.tokens, valid=batch.valid, return_hidden=True)
                    if config.kl_weight:
                        t_logits = teacher.output(th[rows, cols])
                        t_logits = t_logits[:, t_rows] if t_rows is not None else t_logits
                    t_h = th[batch.valid] if config.hidden_weight else None
            kl_keep = hidden_keep = None
            if t_logits is not None and config.distill_where_teacher_right:
                kl_keep, hidden_keep = teacher_right(rows, t_logits, y, batch.valid)
            sync = a == config.grad_accum - 1
            ctx = net.no_sync() if (not sync and hasattr(net, "no_sync")) else contextlib.nullcontext()
            with ctx:
                with _autocast(device, config.bf16, config.cpu_bf16):
                    out = net(batch.tokens, batch.valid, rows, cols, hidden=t_h is not None,
                              logits=bool(config.ce_weight or config.kl_weight))
                if t_h is not None:
                    out, h = out
                loss, parts = _loss(out, y, t_logits, config, h, t_h, n_answer=counts[0], n_real=counts[1],
                                    kl_keep=kl_keep, hidden_keep=hidden_keep)
                # DDP and FSDP average the ranks' gradients: this rank's share of the global sum, times world
                (loss * world).backward()
            acc += torch.cat([loss.detach()[None], parts])  # this rank's share of the step's global mean
        acc_n += 1
        # One non-finite gradient (a bf16 overflow, a loss spike) would turn every weight into NaN for good:
        # such a step is skipped and counted instead. The norm is the same on every rank (gradients are
        # all-reduced first), so ranks skip together.
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), config.grad_clip or float("inf"))
        if torch.isfinite(norm):
            optimizer.step()
        else:
            skipped_steps += 1
            if skipped_steps > max(10, total // 100):
                raise FloatingPointError(f"{skipped_steps} of {step + 1} steps had non-finite gradients; "
                                         "lower the learning rate (or check the data)")
        optimizer.zero_grad(set_to_none=True)
        done = step + 1
        if done % max(1, config.log_every) == 0 or done == total:  # the same steps on every rank
            if world > 1:
                dist.all_reduce(acc)
            vals = (acc / max(acc_n, 1)).tolist()
            dt = time.perf_counter() - t_last
            rec = {"step": done, "loss": vals[0], "ce": vals[1], "kl": vals[2], **({"hidden": vals[3]} if config.hidden_weight else {}), "lr": lr,
                   "tokens_per_s": tok_count * world / max(dt, 1e-9), "skipped_steps": skipped_steps}
            emit(rec)
            if bar is not None:
                bar.set_postfix(loss=f"{vals[0]:.4f}", lr=f"{lr:.2e}")
            acc.zero_()
            acc_n, tok_count, t_last = 0, 0, time.perf_counter()
        if bar is not None:
            bar.update(1)
        if config.eval_every and done % config.eval_every == 0 and done != total:
            last_eval = run_eval(done)
        if config.save_every and done % config.save_every == 0 and done != total:
            save(done)
    if bar is not None:
        bar.close()
    if start < total or last_eval is None:
        last_eval = run_eval(total)
    if start < total:
        save(total)

    if world > 1 and config.parallel == "fsdp":  # copy the trained full weights back into `model`
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

        full = get_model_state_dict(net, options=StateDictOptions(full_state_dict=True))
        model.load_state_dict({k.removeprefix("model."): v.to(device) for k, v in full.items()})
    model.eval()
    return TrainResult(model, total, history, last_eval, resumed_from, data.skipped, data.truncated)
