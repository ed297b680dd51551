"""`pocketguard calibrate`: choose a guard's operating point — the p_unsafe at which it flags — on labelled dev data,
and write it into the guard's guard.json, so that `moderate`, `serve` and `Guard.load` use it.

    pocketguard calibrate --model runs/int4 --data dev.jsonl --max-fpr 0.05                     # the sweep and the choice
    pocketguard calibrate --model runs/int4 --data dev.jsonl --max-fpr 0.08 --lookalikes --write
    pocketguard calibrate --model runs/int4 --data dev.jsonl --predictions eval/predictions/00-int4.jsonl --write

The rule: the lowest threshold of THRESHOLDS (0.50 … 0.95) at which the false-positive rate on --data's safe examples
(with --lookalikes, on its look-alike rows only: benign text that sounds risky, `"lookalike": true`) is at most
--max-fpr; the lowest keeps the most recall. When none meets it, nothing is written and the exit status is 1. Choose
on dev data, never on the data you report: a threshold chosen on a set is tuned to it (the shipped guard's was
chosen this way: docs/model-card.md, *Operating point*).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50 (≈ greedy) … 0.95
EXIT_OK, EXIT_UNMET, EXIT_ERROR = 0, 1, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    from .data import FORMATS

    p.add_argument("--model", type=Path, metavar="PATH",
                   help="the guard to calibrate: a checkpoint folder or compressed artifact (default: the shipped guard)")
    p.add_argument("--data", type=Path, required=True, metavar="FILE", help="labelled dev data (as for `pocketguard eval`)")
    p.add_argument("--format", choices=FORMATS, default="generic", help="how to read --data (default: generic)")
    p.add_argument("--skip-malformed", action="store_true", help="skip malformed rows instead of stopping")
    p.add_argument("--policy", type=Path, metavar="TOML", help="custom policy TOML for the guard and the data's categories")
    p.add_argument("--predictions", type=Path, metavar="FILE",
                   help="this guard's saved predictions on --data (`pocketguard eval`'s OUT/predictions/NN-name.jsonl) "
                        "instead of judging it again")
    p.add_argument("--max-fpr", type=float, default=0.05, metavar="F",
                   help="the false-positive rate the threshold must keep to (default: 0.05)")
    p.add_argument("--lookalikes", action="store_true",
                   help="measure that rate on --data's look-alike rows (benign but risky-sounding) instead of all safe rows")
    p.add_argument("--write", action="store_true",
                   help="write the chosen threshold into the guard's guard.json (an artifact's manifest records it)")
    p.add_argument("--json", action="store_true", help="print the sweep and the choice as JSON")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="conversations per packed guard pass (default: 64)")
    p.add_argument("--device", default="cpu", help="torch device for the guard (default: cpu)")


def sweep(examples: list, verdicts: list[Any], max_fpr: float, lookalikes: bool = False) -> tuple[float | None, list[dict]]:
    """(the chosen threshold or None, one row per threshold of THRESHOLDS): each row's F1, recall, FPR on the safe
    examples and on the look-alikes, the verdicts re-decided at that threshold (`at_threshold`: binary metrics exact)."""
    from .metrics import at_threshold, evaluate_examples

    chosen, rows = None, []
    for t in THRESHOLDS:
        m = evaluate_examples(examples, at_threshold(verdicts, t))
        o, look = m["overall"], m.get("lookalike", {}).get("fpr")
        rows.append({"threshold": t, "f1": o["f1"], "recall": o["recall"], "fpr": o["fpr"], "lookalike_fpr": look})
        fpr = look if lookalikes else o["fpr"]
        if chosen is None and fpr is not None and fpr <= max_fpr:
            chosen = t
    return chosen, rows


def sweep_markdown(rows: list[dict]) -> str:
    f = lambda x: "—" if x is None else f"{x:.3f}"  # noqa: E731
    lines = ["| threshold | F1 | recall | FPR | look-alike FPR |", "|---|---|---|---|---|"]
    lines += [f"| {r['threshold']:.2f} | {f(r['f1'])} | {f(r['recall'])} | {f(r['fpr'])} | {f(r['lookalike_fpr'])} |"
              for r in rows]
    return "\n".join(lines)


def write_threshold(model: Path, threshold: float) -> dict:
    """Put `threshold` in the guard's guard.json, keeping its other settings: through the manifest for a compressed
    artifact (its checksums stay whole), as the file alone for a checkpoint folder. Returns the settings now in force."""
    from ..artifact import is_artifact
    from ..loaded import CheckpointError, read_guard_meta, save_guard_meta

    if is_artifact(model):
        from ..compress.artifact import set_guard_settings

        return set_guard_settings(model, threshold=threshold)
    if not model.is_dir():
        raise CheckpointError(f"{model} is a single file (a GGUF has no guard.json): pass --threshold {threshold} to "
                              "`pocketguard moderate` / `serve`, or Guard.load(threshold=...)")
    meta = {**read_guard_meta(model), "threshold": threshold}
    save_guard_meta(model, meta)
    return meta


def _not_from(predictions: Path, model: Path) -> str | None:
    """Why `predictions` cannot be said to come from `model`'s weights (None when they do): their .run.json, which
    `pocketguard eval` writes beside them, names the weights by content (settings apart: a threshold written since
    does not matter)."""
    from ..artifact import checkpoint_sha256

    key_file = Path(predictions).with_suffix(".run.json")
    try:
        made_by = json.loads(key_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return (f"{predictions} has no readable {key_file.name} (written by `pocketguard eval`) to tell which model "
                "made them; calibrate from the model itself (drop --predictions)")
    if made_by.get("weights_sha256") is None:
        return f"{key_file} is from an older pocketguard and names no weights_sha256: run `pocketguard eval` again"
    if made_by["weights_sha256"] != checkpoint_sha256(model, "weights"):
        return f"{predictions} were made by {made_by.get('model')}, not by the weights in {model}"
    return None


def run(args: argparse.Namespace) -> int:
    from ..guard import DEFAULT_MODEL_DIR, Guard
    from ..loaded import CheckpointError
    from ..policy import Policy, PolicyError
    from .command import judge, read_predictions
    from .data import DataError, read_examples
    from .metrics import failed

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR

    if not 0 <= args.max_fpr <= 1 or args.batch_size < 1:
        return fail("--max-fpr must be within [0, 1] and --batch-size >= 1")
    if args.write and args.model is None:  # the default is the installed package's own guard: never edited by surprise
        return fail(f"--write changes the guard's files: name them with --model (to recalibrate the shipped guard, copy "
                    f"{DEFAULT_MODEL_DIR} and pass the copy; or give `moderate`/`serve` --threshold)")
    model = args.model or DEFAULT_MODEL_DIR
    if not model.exists():
        return fail(f"checkpoint not found: {model}")
    try:
        policy = Policy.from_toml(args.policy) if args.policy else None
        examples, problems = read_examples(args.data, args.format, policy, args.skip_malformed)
        verdicts = read_predictions(args.predictions, examples) if args.predictions else None
    except (DataError, PolicyError, OSError) as e:
        return fail(str(e))
    for p in problems:
        print(f"warning: skipped {p}", file=sys.stderr)
    if not any(e.label == "safe" for e in examples) or not any(e.label == "unsafe" for e in examples):
        return fail(f"{args.data} needs safe and unsafe examples to weigh false positives against recall")
    if args.lookalikes and not any(getattr(e, "lookalike", False) for e in examples):
        return fail(f"{args.data} marks no look-alike rows (\"lookalike\": true): drop --lookalikes or mark them")
    if verdicts is None:
        try:
            guard = Guard.load(model, policy=policy, device=args.device)
        except Exception as e:  # noqa: BLE001 - report which checkpoint failed, whatever the cause
            return fail(f"cannot load {model}: {e}")
        verdicts = [v for i in range(0, len(examples), args.batch_size) for v in judge(guard, examples[i : i + args.batch_size])]
    if n_failed := sum(map(failed, verdicts)):  # fail closed: a sweep over verdicts it could not make means nothing
        return fail(f"{n_failed} examples could not be judged; fix them or the guard first")
    try:
        chosen, rows = sweep(examples, verdicts, args.max_fpr, args.lookalikes)
    except ValueError as e:  # answers without p_unsafe: no threshold can re-decide them
        return fail(f"{args.predictions or model}: {e}")
    written = None
    if chosen is not None and args.write:
        if args.predictions and (why := _not_from(args.predictions, model)):  # another guard's scores: its threshold
            return fail(f"--write: {why}; nothing written")
        try:
            written = write_threshold(model, chosen)
        except CheckpointError as e:
            return fail(str(e))
    rate = "look-alike FPR" if args.lookalikes else "FPR"
    if args.json:
        print(json.dumps({"model": str(model), "data": str(args.data), "max_fpr": args.max_fpr, "on": rate,
                          "threshold": chosen, "written": written, "sweep": rows}, indent=2))
    else:
        print(sweep_markdown(rows))
        if chosen is None:
            print(f"\nno threshold up to {THRESHOLDS[-1]} keeps the {rate} at or under {args.max_fpr}: nothing written")
        else:
            print(f"\nthreshold {chosen}: the lowest with {rate} ≤ {args.max_fpr}" +
                  (f"; written to {model}/guard.json" if written is not None else " (add --write to set it)"))
    return EXIT_OK if chosen is not None else EXIT_UNMET
