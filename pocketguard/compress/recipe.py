"""`pocketguard compress --recipe recipe.toml`: a guard checkpoint in, a compact guard out, step by step.

```toml
teacher = "path/to/teacher"      # input checkpoint (any layout checkpoint.load reads); also the KL teacher
# student = "path/to/student"    # optional: start from this checkpoint instead of a copy of the teacher
output = "out/student"
# policy = "policy.toml"         # optional; default: the teacher's guard.json policy, else S1–S14
# device = "cuda"                # optional; default cuda:LOCAL_RANK when available, else cpu

[data]
train = "train.jsonl"            # labelled examples (docs/design.md schema)
dev = "dev.jsonl"                # optional: per-step F1 and agreement with the teacher
calib = 64                       # calibration examples (drawn from train) for pruning; gptq / imatrix
                                 # steps draw their own calibration_samples from the same seeded order
max_len = 2048                   # token cap for training and calibration prompts
# dev_max = 500                  # evaluate at most this many dev examples per step

[train]                          # defaults for every training step (distill, train, qat, lora)
batch_size = 8

[[step]]
kind = "prune_blocks"            # then any of STEPS below, in order
keep = 12
```

Relative paths are relative to the recipe file. Each step runs as `STEPS[kind](model, ctx, **params)` and
writes `output/steps/NN-kind/` (a Hugging Face checkpoint for float models, the compressed artifact for
quantized ones) plus `step.json`, and appends one JSON line to `output/report.jsonl` (parameters, bytes,
dev F1 and agreement with the teacher's verdicts and p_unsafe, wall time). Every step's hash chains the
hashes before it (and the contents of the teacher, student and data files, the data and policy settings), so
`--resume` skips exactly the completed steps whose recipe and inputs did not change, and a training step killed
midway continues from its `train_state.pt`.
The last step's output is copied to `output/model/` (load it with `Guard.load`).

Under `torchrun` every rank runs the recipe: pruning is deterministic, training steps split batches across
ranks (DDP, or FSDP with `parallel = "fsdp"` in `[train]`), and only rank 0 writes files and evaluates.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import sys
import time
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..examples import load_examples
from ..model import Transformer
from ..policy import Policy
from ..tokenizer import Tokenizer
from .lora import has_lora
from .steps import STEPS, RecipeError, StepContext
from .steps import register_step as register_step  # re-exported

# ============================================================================================ recipe file
@dataclass
class Recipe:
    path: Path
    raw: dict
    teacher: Path
    student: Path | None
    output: Path
    policy: Path | None
    device: str | None
    data: dict
    train: dict
    steps: list[dict]


_TOP_KEYS = {"teacher", "student", "output", "policy", "device", "seed", "data", "train", "step"}
_DATA_KEYS = {"train", "dev", "calib", "calib_batch_size", "max_len", "dev_max", "eval_batch_size"}


def load_recipe(path: str | Path) -> Recipe:
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RecipeError(f"recipe not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise RecipeError(f"recipe {path} is not valid TOML: {e}") from None
    unknown = set(raw) - _TOP_KEYS
    if unknown:
        raise RecipeError(f"{path}: unknown keys {sorted(unknown)}; allowed: {sorted(_TOP_KEYS)}")
    for key in ("teacher", "output"):
        if not isinstance(raw.get(key), str):
            raise RecipeError(f"{path}: '{key}' (a path) is required")
    data = dict(raw.get("data") or {})
    bad = set(data) - _DATA_KEYS
    if bad:
        raise RecipeError(f"{path}: unknown [data] keys {sorted(bad)}; allowed: {sorted(_DATA_KEYS)}")
    train = raw.get("train") or {}
    if not isinstance(train, dict):
        raise RecipeError(f"{path}: [train] must be a table")
    bad = set(train) - _train_fields()
    if bad:
        raise RecipeError(f"{path}: unknown [train] keys {sorted(bad)}; allowed: {sorted(_train_fields())}")
    steps = raw.get("step") or []
    if not isinstance(steps, list) or not steps:
        raise RecipeError(f"{path}: a recipe needs at least one [[step]]")
    rotated_at = None
    for i, s in enumerate(steps, 1):
        kind = s.get("kind") if isinstance(s, dict) else None
        if kind not in STEPS:
            raise RecipeError(f"{path}: step {i} has kind {kind!r}; known kinds: {', '.join(STEPS)}")
        options = {**STEPS[kind].defaults, **{k: v for k, v in s.items() if k != "kind"}}
        needs_data = STEPS[kind].trains or kind in ("prune_blocks", "prune_mlp", "prune_input") or _calibrates(kind, options)
        if needs_data and not data.get("train"):
            raise RecipeError(f"{path}: step {i} ({kind}) needs training/calibration examples: set [data] train")
        _check_step_options(path, i, kind, options)
        if _rotates(kind, options):
            if rotated_at:
                raise RecipeError(f"{path}: step {i} ({kind}) rotates the model step {rotated_at} already rotated; "
                                  "rotate once (a `rotate` step or a quantization step's `rotation`, not both)")
            rotated_at = i
    base = path.parent

    def rel(p: str | None) -> Path | None:
        if p is None:
            return None
        q = Path(p).expanduser()
        return q if q.is_absolute() else (base / q)

    for key in ("train", "dev"):
        if data.get(key):
            data[key] = str(rel(data[key]))
    return Recipe(path, raw, rel(raw["teacher"]), rel(raw.get("student")), rel(raw["output"]), rel(raw.get("policy")),
                  raw.get("device"), data, dict(raw.get("train") or {}), [dict(s) for s in steps])


def _check_step_options(path: Path, i: int, kind: str, options: dict) -> None:
    """A step whose function takes named options only: a misspelt or missing one is a RecipeError when the recipe
    is read, not a TypeError after the teacher was loaded and the step's folder made. The built-in steps taking
    **params are checked against the TrainConfig / QuantConfig keys they pass on; a registered step of your own
    taking **params checks its options itself when it runs."""
    import inspect

    fn = STEPS[kind].resolve()
    params = list(inspect.signature(fn).parameters.values())[2:]  # after (model, ctx)
    names = [p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD]
    if len(names) < len(params):  # **params: the built-in steps' TrainConfig / QuantConfig keys, checked here too,
        passed_on = _passed_on(fn)  # so that a misspelt `qat` key fails now, not after the distillation before it
        if passed_on is None:
            return
        names += sorted(passed_on - set(names))
    unknown = sorted(set(options) - set(names))
    if unknown:
        raise RecipeError(f"{path}: step {i} ({kind}): unknown options {unknown}; {kind} takes "
                          f"{', '.join(names) if names else 'none'}")
    missing = [p.name for p in params if p.default is inspect.Parameter.empty and p.name not in options
               and p.kind is not inspect.Parameter.VAR_KEYWORD]
    if missing:
        raise RecipeError(f"{path}: step {i} ({kind}) needs {', '.join(missing)}")


def _calibrates(kind: str, options: dict) -> bool:
    """A built-in PTQ step whose mode (gptq, imatrix) draws calibration prompts from [data] train."""
    from . import steps as S

    return (STEPS[kind].resolve() is S.ptq_step and options.get("mode") in ("gptq", "imatrix")
            and options.get("calibration") is None)


def _rotates(kind: str, options: dict) -> bool:
    """A `rotate` step, or a built-in quantization step with a `rotation`."""
    from . import steps as S
    from .rotate import rotate_step

    fn = STEPS[kind].resolve()
    return fn is rotate_step or (fn in (S.qat_step, S.ptq_step) and bool(options.get("rotation")))


def _train_fields() -> set[str]:
    from dataclasses import fields

    from ..train import TrainConfig

    return {f.name for f in fields(TrainConfig)}


def _passed_on(fn) -> set[str] | None:
    """The keys a built-in step taking **params passes on (to TrainConfig, QuantConfig); None for other steps."""
    from dataclasses import fields

    from . import steps as S

    if fn in (S._distill, S._train, S.lora_step):
        return _train_fields()
    if fn in (S.qat_step, S.ptq_step):
        from .quantize import QuantConfig

        quant = {f.name for f in fields(QuantConfig)}
        if fn is S.ptq_step:
            return quant | {"calibration"}
        return quant | _train_fields() | set(S.QAT_LORA_KEYS)
    return None


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))


def input_ids(recipe: Recipe) -> dict[str, Any]:
    """The teacher, student and data files by path and content (`artifact.sha256_tree`: an edit in place that keeps
    a file's size is a change too), read once per run."""
    from ..artifact import checkpoint_sha256, sha256_tree

    def ident(p: str | Path | None, digest) -> Any:
        return None if p is None else [str(Path(p).resolve()), digest(p)]

    return {"teacher": ident(recipe.teacher, checkpoint_sha256), "student": ident(recipe.student, checkpoint_sha256),
            "train": ident(recipe.data.get("train"), sha256_tree), "dev": ident(recipe.data.get("dev"), sha256_tree)}


def step_hashes(recipe: Recipe, policy: Policy, ids: dict[str, Any] | None = None) -> list[str]:
    """One hash per step, chaining everything the step's output depends on (`ids`: `input_ids(recipe)`)."""
    ids = ids or input_ids(recipe)
    base = _canonical({
        "teacher": ids["teacher"], "student": ids["student"],
        "data": {**recipe.data, "train": ids["train"], "dev": ids["dev"]},
        "policy": [[c.code, c.name, c.description] for c in policy.categories],
        "seed": recipe.raw.get("seed", 0),
    })
    out, h = [], hashlib.sha256(base.encode()).hexdigest()
    for i, s in enumerate(recipe.steps):
        trains = STEPS[s["kind"]].trains
        h = hashlib.sha256((h + _canonical([i, s, recipe.train if trains else None])).encode()).hexdigest()
        out.append(h)
    return out


# ============================================================================================ helpers
def is_plain(model: nn.Module) -> bool:
    """True for a float Transformer built only from model.py's modules (saved as a HF checkpoint)."""
    from .. import model as M

    types = (M.Transformer, M.TransformerBlock, M.Attention, M.FeedForward, M.RMSNorm, nn.Linear, nn.Embedding, nn.ModuleList)
    return isinstance(model, M.Transformer) and all(type(m) in types for m in model.modules())


def logical_params(model: nn.Module) -> int:
    """Weights as the float model would count them (a packed int4 linear counts in × out)."""
    n = 0
    for m in model.modules():
        if hasattr(m, "in_features") and hasattr(m, "out_features") and not isinstance(m, nn.Linear):
            n += int(m.in_features) * int(m.out_features)
        elif hasattr(m, "num_embeddings") and hasattr(m, "embedding_dim") and not isinstance(m, nn.Embedding):
            n += int(m.num_embeddings) * int(m.embedding_dim)
        else:
            n += sum(p.numel() for p in m.parameters(recurse=False))
    # a tied head is one tensor
    return n - (model.output.weight.numel() if getattr(getattr(model, "args", None), "tie_embeddings", False) else 0)


def weight_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.iterdir() if f.suffix in (".safetensors", ".pth", ".bin"))


def _verdicts(model: nn.Module, tokenizer: Tokenizer, policy: Policy, dev: list[dict], batch_size: int = 16,
              progress: bool = False) -> list[dict]:
    from ..guard import Guard

    g = Guard(model, tokenizer, policy)
    out = []
    chunks = range(0, len(dev), batch_size)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc="dev verdicts", leave=False, unit="batch", disable=None)
    for k in chunks:
        part = dev[k : k + batch_size]
        vs = g.moderate_batch([e["messages"] for e in part], roles=[e.get("role") for e in part], batch_size=batch_size)
        out += [{"status": v.status, "categories": v.categories, "p_unsafe": v.p_unsafe} for v in vs]
    return out


def verdict_metrics(verdicts: list[dict], dev: list[dict], teacher: list[dict] | None = None) -> dict:
    """F1 of `unsafe` (errors count as flagged: a guard that cannot judge fails closed), accuracy, error
    rate; with the teacher's verdicts: status agreement, category agreement, mean |Δp_unsafe|."""
    from ..evaluate.metrics import binary_metrics, failed, gold_flags, predicted

    m = binary_metrics(gold_flags(e["label"] for e in dev), predicted(verdicts)[0])
    out = {"n": m["n"], "f1": m["f1"], "accuracy": m["accuracy"], "errors": sum(map(failed, verdicts))}
    n = max(len(dev), 1)
    if teacher is not None:
        out["agreement"] = sum(a["status"] == b["status"] for a, b in zip(verdicts, teacher)) / n
        out["category_agreement"] = sum((a["status"], a["categories"]) == (b["status"], b["categories"])
                                        for a, b in zip(verdicts, teacher)) / n
        diffs = [abs(a["p_unsafe"] - b["p_unsafe"]) for a, b in zip(verdicts, teacher)
                 if a["p_unsafe"] is not None and b["p_unsafe"] is not None]
        out["p_unsafe_mae"] = sum(diffs) / len(diffs) if diffs else None
    return out


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _say(msg: str) -> None:
    from ..distributed import is_main

    if is_main():
        print(msg, file=sys.stderr, flush=True)


def _policy_for(recipe: Recipe, meta: dict) -> Policy:
    if recipe.policy is not None:
        return Policy.from_toml(recipe.policy)
    if meta.get("policy"):
        return Policy.from_dict(meta["policy"], source=str(recipe.teacher))
    return Policy.default()


def _policy_before_loading(recipe: Recipe) -> Policy | None:
    """The policy `_policy_for` will give, read without loading the teacher: the recipe's, else the teacher folder's
    guard.json; None for a GGUF teacher (its policy is in the file's metadata)."""
    if recipe.policy is not None:
        return _policy_for(recipe, {})
    if recipe.teacher.suffix.lower() == ".gguf":
        return None
    from ..loaded import read_guard_meta

    folder = recipe.teacher if recipe.teacher.is_dir() else recipe.teacher.parent
    return _policy_for(recipe, read_guard_meta(folder) if folder.is_dir() else {})


def _read_data(recipe: Recipe, policy: Policy) -> tuple[list[dict], list[dict]]:
    """The recipe's [data] train and dev examples ([] where not set)."""
    train, dev = (load_examples(recipe.data[k], policy) if recipe.data.get(k) else [] for k in ("train", "dev"))
    return train, dev


# ============================================================================================ runner
def run_recipe(path: str | Path, resume: bool = False, force: bool = False, device: str | None = None,
               progress: bool = True, reuse: Sequence[str | Path] = (),
               before_step: Callable[[str], None] | None = None) -> Path:
    """Run (or continue, with `resume`) a recipe; returns the output folder. `reuse`: output folders of other
    runs whose finished steps this one may adopt where their hashes match (the same teacher, data, settings and
    steps up to there) — e.g. QAT variants of one distillation train it once (`_adopt`). `before_step(kind)` is
    called before each step that runs (not those a resume skips), e.g. to wait for a turn at the GPU."""
    from .. import checkpoint
    from ..distributed import barrier, default_device, init_distributed

    recipe = load_recipe(path)
    # the data first: a missing file or a bad line is reported before the output is touched and the teacher loaded
    # (checked against the policy where it is known without loading the teacher: all but a GGUF teacher's)
    early = _policy_before_loading(recipe)
    if early is not None:
        examples, dev_examples = _read_data(recipe, early)
    dev_str = device or recipe.device
    try:
        dev = torch.device(dev_str) if dev_str else default_device()
        if dev.type == "cuda" and dev.index is None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
            dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        # eval and calibrate learn this when their model fails to load there; here it must be known before the
        # output folder is made ("bogus", cuda on a CPU-only torch, cuda:7 on a 2-GPU host)
        torch.empty(0, device=dev)
    except (RuntimeError, AssertionError) as e:
        raise RecipeError(f"device {dev_str!r} cannot be used here: {str(e).splitlines()[0]}") from None
    rank, world, _ = init_distributed(dev)
    main = rank == 0
    torch.manual_seed(int(recipe.raw.get("seed", 0)))

    out = recipe.output
    steps_dir = out / "steps"
    started = steps_dir.exists() and any(steps_dir.iterdir())
    if started and not (resume or force):
        raise RecipeError(f"{out} already holds steps of a run: pass --resume to continue it or --force to start over")
    if main:
        if force and out.exists():
            for name in ("steps", "model", "report.jsonl", "teacher_dev.json"):
                p = out / name
                shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
        steps_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(recipe.path, out / "recipe.toml") if recipe.path.resolve() != (out / "recipe.toml").resolve() else None
    barrier()

    t_load = time.perf_counter()
    loaded = checkpoint.load(recipe.teacher, device=dev)
    teacher, tokenizer = loaded.model.eval(), loaded.tokenizer
    policy = _policy_for(recipe, loaded.meta or {})
    if early is None or early.codes != policy.codes:
        examples, dev_examples = _read_data(recipe, policy)
    ids = input_ids(recipe)
    hashes = step_hashes(recipe, policy, ids)
    _say(f"teacher {recipe.teacher}: {logical_params(teacher):,} params, {len(policy)} categories "
         f"({time.perf_counter() - t_load:.1f}s)")

    data = recipe.data
    if data.get("dev_max"):
        dev_examples = dev_examples[: int(data["dev_max"])]
    import random as _random

    calibration_pool = list(examples)
    _random.Random(int(recipe.raw.get("seed", 0))).shuffle(calibration_pool)
    calibration = calibration_pool[: int(data.get("calib", 64))]

    # ---- which steps are done
    names = [f"{i + 1:02d}-{s['kind']}" for i, s in enumerate(recipe.steps)]
    if main and reuse:
        _adopt(out, names, hashes, [Path(r) for r in reuse])
    barrier()
    done = _finished(out, names, hashes)
    if main:  # stale outputs of changed (or later) steps go; a .partial of the next step is kept (resume)
        keep = set(names[:done]) | ({names[done] + ".partial"} if done < len(names) else set())
        for d in steps_dir.iterdir():
            if d.name not in keep:
                shutil.rmtree(d) if d.is_dir() else d.unlink()
        partial = steps_dir / (names[done] + ".partial") if done < len(names) else None
        if partial is not None and partial.exists():
            marker = partial / "hash"
            if not marker.exists() or marker.read_text().strip() != hashes[done]:
                shutil.rmtree(partial)
        _rewrite_report(out / "report.jsonl", done)
    barrier()

    # ---- the model to start from
    if done:
        _say(f"resuming after step {names[done - 1]}")
        model = load_step_output(steps_dir / names[done - 1], dev)
    elif recipe.student is not None:
        from .distill import check_same_tokenizer

        st = checkpoint.load(recipe.student, device=dev)
        check_same_tokenizer(st.model, teacher, tokenizer, st.tokenizer)
        model = st.model
    else:
        model = copy.deepcopy(teacher)

    # ---- the teacher's dev verdicts (once; cached next to the report)
    teacher_verdicts = None
    if dev_examples and main:
        cache = out / "teacher_dev.json"
        key = hashlib.sha256(_canonical([ids["teacher"], ids["dev"], len(dev_examples),
                                         [[c.code, c.name] for c in policy.categories]]).encode()).hexdigest()
        cached = json.loads(cache.read_text()) if cache.exists() else None
        if cached and cached.get("key") == key:
            teacher_verdicts = cached["verdicts"]
        else:
            t0 = time.perf_counter()
            teacher_verdicts = _verdicts(teacher, tokenizer, policy, dev_examples, progress=progress)
            tm = verdict_metrics(teacher_verdicts, dev_examples)
            cache.write_text(json.dumps({"key": key, "verdicts": teacher_verdicts, "metrics": tm}))
            _say(f"teacher on dev: F1 {_fmt(tm['f1'])}, accuracy {_fmt(tm['accuracy'])} ({time.perf_counter() - t0:.1f}s)")

    # ---- run the remaining steps
    for i in range(done, len(recipe.steps)):
        spec = dict(recipe.steps[i])
        kind = spec.pop("kind")
        if before_step is not None:
            before_step(kind)
        sk = STEPS[kind]
        final = steps_dir / names[i]
        work = steps_dir / (names[i] + ".partial")
        if main:
            work.mkdir(parents=True, exist_ok=True)
            (work / "hash").write_text(hashes[i])
        barrier()
        params = {**sk.defaults, **spec}
        if sk.trains:
            params = {**recipe.train, **params}
            if data.get("max_len"):  # [data] max_len caps training prompts too, unless a step sets its own
                params.setdefault("max_len", int(data["max_len"]))
            params.setdefault("out_dir", str(work / "train"))
            params.setdefault("progress", progress)
            params.setdefault("name", kind)
            params.setdefault("seed", int(recipe.raw.get("seed", 0)))
            if dev_str:
                params.setdefault("device", str(dev))
        ctx = StepContext(tokenizer, policy, teacher, examples, dev_examples, calibration, dev, work, recipe.raw, data,
                          index=i + 1, kind=kind, calibration_pool=calibration_pool)
        _say(f"[{i + 1}/{len(names)}] {kind} {_canonical(spec)}")
        if dev.type == "cuda":  # the step's peak of reserved memory (the caching allocator's hold on the card):
            # whether two jobs fit one GPU side by side is read from it
            torch.cuda.reset_peak_memory_stats(dev)
        t0 = time.perf_counter()
        fn = sk.resolve()
        try:
            model = fn(model, ctx, **params)
        except TypeError as e:
            if "unexpected keyword" in str(e) or "missing" in str(e) and "argument" in str(e):
                raise RecipeError(f"step {i + 1} ({kind}): {e}") from None
            raise
        wall = time.perf_counter() - t0
        # Unmerged LoRA adapters (`lora` with merge = false) are saved merged and re-quantized: the next step, and
        # this step's dev metrics, take the saved model, as a run resumed after this step does
        adapters = has_lora(model)
        if not adapters:
            model = handed_on(model)
        if main:
            fmt = "artifact" if ctx.saved else _save_model(model, tokenizer, policy, work, recipe.raw)
            if adapters:
                model = load_step_output(work, dev)
            if (work / "train" / "train_log.jsonl").exists():  # the step's loss curve stays with its checkpoint
                os.replace(work / "train" / "train_log.jsonl", work / "train_log.jsonl")
            shutil.rmtree(work / "train", ignore_errors=True)  # optimizer state is not needed once the step is done
            metrics = None
            if dev_examples:
                t1 = time.perf_counter()
                vs = _verdicts(model, tokenizer, policy, dev_examples, progress=progress)
                metrics = verdict_metrics(vs, dev_examples, teacher_verdicts)
                metrics["eval_s"] = round(time.perf_counter() - t1, 3)
            line = {
                "step": i + 1, "kind": kind, "params": spec, "hash": hashes[i], "format": fmt,
                "n_params": logical_params(model), "bytes": weight_bytes(work), "dev": metrics,
                "wall_s": round(wall, 3), "info": _jsonable(ctx.info), "time": time.strftime("%Y-%m-%dT%H:%M:%S"),
            }
            if dev.type == "cuda":
                line["peak_cuda_mib"] = round(torch.cuda.max_memory_reserved(dev) / 2**20)
            (work / "step.json").write_text(json.dumps(line, indent=1))
            (work / "hash").unlink(missing_ok=True)
            os.replace(work, final)
            with open(out / "report.jsonl", "a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
            _say(_summary(line))
        barrier()
        if adapters and not main:
            model = load_step_output(final, dev)

    if main:
        last = steps_dir / names[-1]
        target = out / "model"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(last, target, ignore=shutil.ignore_patterns("step.json", "train_log.jsonl"))
        _say(f"done: {target}")
    barrier()
    return out


def handed_on(model: nn.Module) -> nn.Module:
    """`model` as the next step gets it, whether the step before ran in this process or was loaded on `--resume`:
    every parameter trains (a quantized model's float ones: norm gains, unquantized embeddings), where
    load_artifact hands them out frozen, for inference, and add_lora froze the backbone of its step."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def load_step_output(directory: Path, device: torch.device) -> nn.Module:
    """A finished step's saved model, as the next step gets it."""
    from .. import checkpoint

    return handed_on(checkpoint.load(directory, device=device).model)


def _finished(out: Path, names: list[str], hashes: list[str]) -> int:
    """How many leading steps of `out` are finished with this recipe's hashes (what `--resume` skips)."""
    k = 0
    while k < len(names) and (_read_step(out / "steps" / names[k]) or {}).get("hash") == hashes[k]:
        k += 1
    return k


def _adopt(out: Path, names: list[str], hashes: list[str], reuse: list[Path]) -> None:
    """Adopt the longest run of leading finished steps among the `reuse` folders whose hashes match this recipe's,
    if it is longer than this run's own: their step folders are hard-linked (copied across file systems) into
    `out/steps`, with their report lines and cached teacher verdicts."""
    k, best = max(((_finished(r, names, hashes), r) for r in reuse if r.resolve() != out.resolve()),
                  key=lambda kr: kr[0], default=(0, out))
    if k <= _finished(out, names, hashes):
        return
    for name in names[:k]:
        dst = out / "steps" / name
        shutil.rmtree(dst, ignore_errors=True)
        shutil.copytree(best / "steps" / name, dst, copy_function=_link_or_copy)
    for name in ("report.jsonl", "teacher_dev.json"):  # the report is cut back to the steps kept (_rewrite_report)
        if (best / name).exists():
            shutil.copyfile(best / name, out / name)
    _say(f"adopted steps {names[0]} … {names[k - 1]} from {best}")


def _link_or_copy(src: str, dst: str) -> None:
    """Step outputs are written once and never changed in place, so a hard link is a safe, free copy."""
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _read_step(d: Path) -> dict | None:
    f = d / "step.json"
    if not f.exists():
        return None
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError:
        return None


def _rewrite_report(report: Path, done: int) -> None:
    """Keep the report lines of the steps that stay done (a changed step is reported again)."""
    if not report.exists():
        return
    lines = [l for l in report.read_text().splitlines() if l.strip()]
    kept = []
    for l in lines:
        try:
            if json.loads(l).get("step", 10**9) <= done:
                kept.append(l)
        except json.JSONDecodeError:
            pass
    report.write_text("".join(l + "\n" for l in kept))


def _save_model(model: nn.Module, tokenizer: Tokenizer, policy: Policy, directory: Path, recipe: dict) -> str:
    from ..checkpoint import policy_dict, save_hf

    if is_plain(model):
        save_hf(model, tokenizer, directory, guard_meta={"policy": policy_dict(policy)})
        return "hf"
    from .artifact import save_artifact

    save_artifact(model, tokenizer, policy, directory, recipe=recipe)
    return "artifact"


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def _summary(line: dict) -> str:
    s = f"  → {line['kind']}: {line['n_params']:,} params, {line['bytes'] / 1e6:.2f} MB, {line['wall_s']:.1f}s"
    if line.get("peak_cuda_mib") is not None:
        s += f", {line['peak_cuda_mib']:,} MiB peak"
    d = line.get("dev")
    if d:
        s += f"; dev F1 {_fmt(d['f1'])}"
        if d.get("agreement") is not None:
            s += f", agreement {d['agreement']:.3f}"
        if d.get("p_unsafe_mae") is not None:
            s += f", |Δp_unsafe| {d['p_unsafe_mae']:.3f}"
    return s


# ============================================================================================ toy run
TOY_RECIPE = """# Toy compression on CPU (written by `pocketguard compress --make-toy`); see docs/compress.md.
teacher = "teacher"
output = "out"
device = "cpu"

[data]
train = "train.jsonl"
dev = "dev.jsonl"
calib = 48
max_len = 256

[train]
batch_size = 16
warmup = 4

[[step]]
kind = "prune_blocks"
keep = 3

[[step]]
kind = "prune_mlp"
width = 96

[[step]]
kind = "prune_output"

[[step]]
kind = "distill"
steps = 100
lr = 2e-3

[[step]]
kind = "qat"
weight_bits = 4
group_size = 32
act_bits = 8
steps = 40
lr = 5e-4
kl_weight = 1.0

[[step]]
kind = "export_artifact"
"""


def make_toy(directory: str | Path, steps: int = 300) -> Path:
    """Write a toy guard to compress: `teacher/` (4 blocks of 64 dims trained on `train.toy_examples`),
    `train.jsonl`, `dev.jsonl` and `recipe.toml` (prune → distill → int4 QAT → artifact). ~10 s on CPU."""
    from ..checkpoint import policy_dict, save_hf
    from ..model import ModelArgs
    from ..toy import toy_examples, toy_tokenizer
    from ..train import TrainConfig, train

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    policy = Policy.default().subset(["S1", "S9", "S10"])
    tok = toy_tokenizer(d / "tokenizer", policy)
    train_ex, dev = toy_examples(600, seed=0), toy_examples(60, seed=1)
    for name, rows in (("train.jsonl", train_ex), ("dev.jsonl", dev)):
        (d / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
    args = ModelArgs(dim=64, n_layers=4, n_heads=4, n_kv_heads=2, vocab_size=tok.vocab_size, ffn_dims=128, max_seq_len=256)
    teacher = Transformer(args).init_weights(std=0.1, seed=3)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model trains faster on one thread
    try:
        train(teacher, train_ex, tok, policy, TrainConfig(lr=5e-3, steps=steps, batch_size=16, warmup=10, device="cpu"))
    finally:
        torch.set_num_threads(threads)
    save_hf(teacher.eval(), tok, d / "teacher", guard_meta={"policy": policy_dict(policy)})
    shutil.rmtree(d / "tokenizer", ignore_errors=True)
    (d / "recipe.toml").write_text(TOY_RECIPE)
    return d


# ============================================================================================ CLI verb
def add_arguments(p) -> None:
    p.add_argument("--recipe", type=Path, help="recipe TOML (see docs/compress.md)")
    p.add_argument("--resume", action="store_true", help="continue a run: skip completed, unchanged steps")
    p.add_argument("--force", action="store_true", help="delete the output's previous steps and start over")
    p.add_argument("--device", help="cpu, cuda, cuda:1 … (default: the recipe's, else CUDA when available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--reuse", type=Path, action="append", default=[], metavar="OUTPUT",
                   help="another run's output folder: adopt its finished steps where they hash the same as this "
                        "recipe's (variants of a recipe that differ only in later steps); repeatable")
    p.add_argument("--list-steps", action="store_true", help="print the step kinds and exit")
    p.add_argument("--make-toy", type=Path, metavar="DIR",
                   help="write a toy teacher, data and DIR/recipe.toml to try compression on CPU, and exit")


def run(args) -> int:
    if getattr(args, "list_steps", False):
        for kind, sk in STEPS.items():
            print(f"{kind:16s} {sk.doc}")
        return 0
    from ..checkpoint import CheckpointError
    from ..examples import ExampleError

    if getattr(args, "make_toy", None) is not None:
        d = make_toy(args.make_toy)
        print(f"toy guard written to {d}; now run: pocketguard compress --recipe {d / 'recipe.toml'}")
        return 0
    if args.recipe is None:
        print("error: --recipe RECIPE.toml is required", file=sys.stderr)
        return 2
    try:
        run_recipe(args.recipe, resume=args.resume, force=args.force, device=args.device,
                   progress=not args.no_progress, reuse=args.reuse)
    except (RecipeError, CheckpointError, ExampleError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
