"""Make pocketguard's default guard, start to finish, with pocketguard's own pipeline.

    python training/build_data.py --data ../shared/data --out runs/data     # labelled train/dev sets (CPU, ~10 s)
    python training/default_guard.py all                                     # tokenizer → teacher → student → eval
    training/gpu_run.sh runs/data results/ 470                               # the same on a GPU machine, results packed
    python training/default_guard.py ship                                    # copy the student into the package

Stages (each also runs alone, and each resumes where a killed run stopped):

  tokenizer  byte-level BPE (8,192 ids incl. the Llama 3 specials) trained on the training split's text and
             the guard template — see docs/model-card.md for why not the Llama 3 tokenizer
  init       the teacher's random initial weights (TEACHER below, seeded) as an HF checkpoint
  teacher    training/recipes/default-teacher.toml: train the teacher from scratch (GPU)
  student    training/recipes/default-student.toml: prune → distill → int4 QAT → artifact (GPU)
  eval       `pocketguard eval` of teacher and student side by side on dev and dev_heldout
  ship       copy the student artifact to pocketguard/assets/default-guard (refused above 25 MB)
  card       teacher vs student tables for docs/model-card.md, from the eval predictions

`--smoke` runs the same stages at toy size on CPU in about two minutes (tiny model, few steps, a data sample):
the check that the whole pipeline works before GPU time is spent on it. The committed recipes hold the real
hyperparameters; this script only points their paths at `--out`/`--data` (and, with --smoke, shrinks them)
and writes the resolved copy it runs to OUT/recipes/.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pocketguard.model import ModelArgs  # noqa: E402

RECIPES = ROOT / "training" / "recipes"
ASSET = ROOT / "pocketguard" / "assets" / "default-guard"
MAX_SHIP_BYTES = 25 * 1000 * 1000
VOCAB = 8192
SEED = 0

# The teacher. The student keeps its width (dim, heads) and loses blocks and MLP neurons (student recipe).
TEACHER = dict(dim=512, n_layers=16, n_heads=8, n_kv_heads=2, ffn_dims=2048, vocab_size=VOCAB, max_seq_len=2048,
               rope_theta=500000.0, tie_embeddings=False)
SMOKE_TEACHER = dict(TEACHER, dim=64, n_layers=4, n_heads=4, n_kv_heads=2, ffn_dims=128)
SMOKE_VOCAB = 1024
SMOKE_EXAMPLES = (600, 80)  # train, dev sample sizes

# Smoke overrides per recipe: [train]/[data] keys and per-step keys by kind.
SMOKE = {
    "default-teacher": {"data": {"dev_max": 40}, "train": {"batch_size": 16, "save_every": 0},
                        "steps": {"train": {"epochs": 3, "lr": 3e-3}}},
    "default-student": {"data": {"dev_max": 40, "calib": 32}, "train": {"batch_size": 16, "save_every": 0},
                        "steps": {"prune_blocks": {"keep": 3}, "prune_mlp": {"width": 96},
                                  "distill": {"epochs": 1, "lr": 2e-3}, "qat": {"epochs": 0.5, "lr": 5e-4}}},
}


def _say(msg: str) -> None:
    print(f"[default_guard {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Paths:
    def __init__(self, out: Path, data: Path, smoke: bool):
        self.out, self.smoke = out.resolve(), smoke
        self.source_data = data.resolve()
        self.data = self.out / "data" if smoke else self.source_data
        self.tokenizer = self.out / "tokenizer"
        self.teacher_init = self.out / "teacher-init"
        self.teacher = self.out / "teacher" / "model"
        self.student = self.out / "student" / "model"
        self.eval = self.out / "eval"


# ---------------------------------------------------------------------------------------------- stages
def stage_data(p: Paths) -> None:
    """Smoke runs use a seeded sample of the data (the full sets are used as they are)."""
    for name in ("train.jsonl", "dev.jsonl", "dev_heldout.jsonl"):
        if not (p.source_data / name).exists():
            raise SystemExit(f"{p.source_data / name} is missing: run training/build_data.py first")
    if not p.smoke:
        return
    p.data.mkdir(parents=True, exist_ok=True)
    for name, n in zip(("train.jsonl", "dev.jsonl", "dev_heldout.jsonl"), SMOKE_EXAMPLES + (SMOKE_EXAMPLES[1],)):
        lines = [l for l in (p.source_data / name).read_text(encoding="utf-8").split("\n") if l.strip()]
        random.Random(SEED).shuffle(lines)
        (p.data / name).write_text("\n".join(lines[:n]) + "\n", encoding="utf-8")


def stage_tokenizer(p: Paths) -> None:
    from pocketguard.policy import Policy
    from pocketguard.prompt import prefix_text, suffix_text
    from pocketguard.tokenizer import train_bpe
    from pocketguard.examples import load_examples

    target = p.tokenizer / "tokenizer.json"
    if target.exists():
        _say(f"tokenizer: {target} exists")
        return
    texts = [m["content"] for ex in load_examples(p.data / "train.jsonl") for m in ex["messages"]]
    # The template is in every prompt: weight it like a common text so its lines become few tokens.
    policy = Policy.default()
    texts += [prefix_text(policy, r) + suffix_text(r) for r in ("user", "agent")] * 200
    vocab = SMOKE_VOCAB if p.smoke else VOCAB
    tok = train_bpe(texts, vocab, target)
    _say(f"tokenizer: {tok.vocab_size} ids from {len(texts):,} texts → {target}")


def stage_init(p: Paths) -> None:
    from pocketguard.checkpoint import policy_dict, save_hf
    from pocketguard.model import Transformer
    from pocketguard.policy import Policy
    from pocketguard.tokenizer import Tokenizer

    if (p.teacher_init / "config.json").exists():
        _say(f"init: {p.teacher_init} exists")
        return
    tok = Tokenizer.load(p.tokenizer)
    args = ModelArgs(**{**(SMOKE_TEACHER if p.smoke else TEACHER), "vocab_size": tok.vocab_size})
    model = Transformer(args).init_weights(std=0.02, seed=SEED)
    save_hf(model, tok, p.teacher_init, guard_meta={"policy": policy_dict(Policy.default()),
                                                    "max_context": args.max_seq_len})
    _say(f"init: {model.num_params():,} params → {p.teacher_init}")


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


def resolved_recipe(p: Paths, name: str) -> Path:
    """The committed recipe with its paths pointed at this run (and shrunk for --smoke), written to OUT/recipes."""
    r = tomllib.loads((RECIPES / f"{name}.toml").read_text(encoding="utf-8"))
    if name == "default-teacher":
        r["teacher"], r["output"] = str(p.teacher_init), str(p.out / "teacher")
    else:
        r["teacher"], r["output"] = str(p.teacher), str(p.out / "student")
    r["data"]["train"], r["data"]["dev"] = str(p.data / "train.jsonl"), str(p.data / "dev.jsonl")
    if p.smoke:
        r["device"] = "cpu"
        o = SMOKE[name]
        r["data"].update(o["data"])
        r["train"].update(o["train"])
        for step in r["step"]:
            step.update(o["steps"].get(step["kind"], {}))
    path = p.out / "recipes" / f"{name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"# resolved from training/recipes/{name}.toml by training/default_guard.py\n" + _dump_recipe(r))
    return path


def _run_recipe(p: Paths, name: str) -> None:
    from pocketguard.compress.recipe import run_recipe

    path = resolved_recipe(p, name)
    _say(f"{name}: {path}")
    run_recipe(path, resume=True, progress=sys.stderr.isatty())


def stage_teacher(p: Paths) -> None:
    _run_recipe(p, "default-teacher")


def stage_student(p: Paths) -> None:
    _run_recipe(p, "default-student")


def stage_eval(p: Paths, device: str, models: list[str]) -> None:
    """`pocketguard eval` on the in-distribution dev set and on the held-out sources, into OUT/eval/<split>-<models>.
    The teacher is evaluated where it was trained (it is too big to bring back from a lent GPU); the student
    also on this machine's CPU, with the kernels it ships with."""
    for split in ("dev", "dev_heldout"):
        out = p.eval / f"{split}-{'-'.join(models)}-{device.split(':')[0]}"
        cmd = [sys.executable, "-m", "pocketguard.cli", "eval", "--data", str(p.data / f"{split}.jsonl"),
               "--out", str(out), "--device", device, "--batch-size", "32"]
        for m in models:
            cmd += ["--model", str(getattr(p, m))]
        _say("eval: " + " ".join(cmd))
        subprocess.run(cmd, check=True, cwd=ROOT)


def _scored(data: Path, predictions: Path) -> dict:
    """Metrics of one model on one split, recomputed from `pocketguard eval`'s predictions file (the teacher's
    held-out run on the lent GPU ended before its report was written; this scores every split the same way)."""
    from pocketguard.evaluate.data import read_examples
    from pocketguard.evaluate.metrics import evaluate_examples

    examples, _ = read_examples(data)
    rows = [json.loads(l) for l in predictions.read_text(encoding="utf-8").split("\n") if l.strip()]
    if [r["line"] for r in rows] != [e.line for e in examples]:
        raise SystemExit(f"{predictions} does not match the rows of {data}")
    return evaluate_examples(examples, [r["verdict"] for r in rows])


def stage_card(p: Paths) -> None:
    """Teacher vs student tables for docs/model-card.md, from the eval runs' predictions files."""
    found = {}
    for split in ("dev", "dev_heldout"):
        # eval folders are <split>-<model>[-<model>]-<device> (stage_eval); predictions NN-*.jsonl follow the
        # model order. The teacher is taken from any device, the student preferably from the CPU it ships for.
        runs = {}
        for d in sorted(p.eval.glob(f"{split}-*")):
            *models, device = d.name[len(split) + 1 :].split("-")
            for i, m in enumerate(models):
                files = sorted((d / "predictions").glob(f"{i:02d}-*.jsonl"))
                if files:
                    runs.setdefault(m, {})[device] = files[0]
        for who in ("teacher", "student"):
            by_device = runs.get(who, {})
            device = "cpu" if who == "student" and "cpu" in by_device else next(iter(sorted(by_device)), None)
            if device is not None:
                label = f"{who} ({device}{', int4' if who == 'student' else ''})"
                found[(split, label)] = _scored(p.data / f"{split}.jsonl", by_device[device])
    f = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
    out = ["| split | model | n | F1 | precision | recall | FPR | AUPRC | look-alike FPR (n) | prompt F1 | response F1 |",
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
    text = "\n".join(out) + "\n"
    (p.eval / "card.md").write_text(text, encoding="utf-8")
    print(text)


def stage_ship(p: Paths, target: Path) -> None:
    from pocketguard.guard import Guard

    from pocketguard.compress.artifact import is_artifact

    src = p.student
    if not is_artifact(src):
        raise SystemExit(f"{src} is not a finished compressed artifact (no manifest.json)")
    size = sum(f.stat().st_size for f in src.rglob("*") if f.is_file())
    if size > MAX_SHIP_BYTES:
        raise SystemExit(f"{src} is {size / 1e6:.1f} MB, over the {MAX_SHIP_BYTES / 1e6:.0f} MB the package may ship")
    tmp = target.with_name(target.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    Guard.load(tmp)  # a corrupt copy never replaces the shipped guard
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
    _say(f"ship: {size / 1e6:.2f} MB → {target}")


STAGES = ("data", "tokenizer", "init", "teacher", "student", "eval")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("stage", choices=STAGES + ("all", "ship", "card"))
    ap.add_argument("--data", type=Path, default=ROOT / "runs" / "data", help="build_data.py output (default: runs/data)")
    ap.add_argument("--out", type=Path, help="run folder (default: runs/default, or runs/smoke with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="toy sizes on CPU: check the pipeline end to end")
    ap.add_argument("--device", default=None, help="device for eval (default: cuda when available, else cpu)")
    ap.add_argument("--models", default="teacher,student", help="eval: which of teacher,student (default: both)")
    ap.add_argument("--ship-to", type=Path, default=ASSET, help="where `ship` puts the guard (default: the package)")
    a = ap.parse_args(argv)
    out = a.out or ROOT / "runs" / ("smoke" if a.smoke else "default")
    p = Paths(out, a.data, a.smoke)
    import torch

    device = a.device or ("cuda" if torch.cuda.is_available() and not a.smoke else "cpu")
    run = {"data": lambda: stage_data(p), "tokenizer": lambda: stage_tokenizer(p), "init": lambda: stage_init(p),
           "teacher": lambda: stage_teacher(p), "student": lambda: stage_student(p),
           "eval": lambda: stage_eval(p, device, a.models.split(",")), "card": lambda: stage_card(p),
           "ship": lambda: stage_ship(p, a.ship_to)}
    for stage in STAGES if a.stage == "all" else (a.stage,):
        t0 = time.perf_counter()
        run[stage]()
        _say(f"{stage} done in {time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
