"""`pocketguard eval`: judge a labelled data set with one or more guards and write the reports.

    pocketguard eval --model runs/guard-1b --model runs/guard-1b-int4 --data dev.jsonl --out eval-report
    pocketguard eval --model runs/int4 --reference runs/bf16 --data xstest_prompts.csv --format xstest \\
        --text wiki.test.raw
    pocketguard eval --data dev.jsonl --reference-predictions gpu-eval/predictions/00-teacher.jsonl --model runs/int4
    pocketguard eval --data dev.jsonl --threshold 0.6 --predictions new/predictions/00-a.jsonl \
        --reference-predictions old/predictions/00-b.jsonl        # two guards compared at one operating point

Predictions are written as they are made (`OUT/predictions/NN-model.jsonl`, flushed after every batch); a
rerun with the same model (path and contents), data and settings continues after the last prediction written
instead of starting over (`--restart` starts over).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .. import __version__
from .data import FORMATS, DataError, Example, read_examples
from .fidelity import kl_divergence, verdict_agreement
from .metrics import at_threshold, evaluate_examples, gold_flags, paired_difference, predicted
from ..policy import SUBSET_MODE_HELP, SUBSET_MODES
from .report import (comparison, comparison_markdown, fidelity_markdown, markdown, plot_pareto, plot_pr_curves,
                     write_json)

EXIT_OK, EXIT_ERROR = 0, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", type=Path, action="append", metavar="PATH",
                   help="guard checkpoint to evaluate; repeat to compare several side by side (default: the shipped "
                        "default guard)")
    p.add_argument("--data", type=Path, metavar="FILE", help="labelled JSONL/CSV file (.gz works too)")
    p.add_argument("--format", choices=FORMATS, default="generic", help="how to read --data (default: generic)")
    p.add_argument("--skip-malformed", action="store_true", help="skip malformed rows (listed in the report) instead of stopping")
    p.add_argument("--policy", type=Path, metavar="TOML", help="custom policy TOML for the guards and for checking the data's categories")
    p.add_argument("--limit", type=int, metavar="N", help="evaluate only the first N examples")
    p.add_argument("--out", type=Path, default=Path("eval-report"), metavar="DIR", help="report folder (default: eval-report)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N",
                   help="conversations per packed guard pass (default: 64)")
    p.add_argument("--restart", action="store_true", help="ignore predictions left by an earlier, stopped run")
    p.add_argument("--target-fpr", type=float, default=0.05, metavar="F", help="report the p_unsafe threshold for this FPR (default: 0.05)")
    p.add_argument("--bootstrap", type=int, default=1000, metavar="N",
                   help="resamples for the 95%% intervals of F1 and AUPRC, and of each model's difference from --reference "
                        "(paired); 0 turns them off (default: 1000)")
    p.add_argument("--reference", type=Path, metavar="PATH", help="uncompressed reference guard: verdict agreement on --data, PPL/KL on --text")
    p.add_argument("--predictions", type=Path, action="append", metavar="FILE",
                   help="score saved predictions (OUT/predictions/NN-name.jsonl of an earlier eval of the same --data, e.g. "
                        "one run on a GPU) beside the models, without loading a model; repeat for several")
    p.add_argument("--reference-predictions", type=Path, metavar="FILE",
                   help="saved predictions as the reference (agreement and paired differences; no PPL/KL)")
    p.add_argument("--threshold", type=float, metavar="T",
                   help="flag when p_unsafe >= T, for every model (as `pocketguard moderate --threshold`) and every saved "
                        "predictions file (re-decided: a verdict newly flagged there names no categories); default: each "
                        "model's own setting (guard.json), saved predictions as they are")
    p.add_argument("--subset-mode", choices=SUBSET_MODES, default="filter", help=SUBSET_MODE_HELP)
    p.add_argument("--text", type=Path, metavar="FILE", help="plain-text file for perplexity and KL divergence against --reference")
    p.add_argument("--window", type=int, default=512, metavar="N", help="tokens per scoring window for --text (default: 512)")
    p.add_argument("--device", default="cpu", help="torch device for the models (default: cpu)")
    p.add_argument("--max-context", type=int, metavar="N",
                   help="token limit for each guard's prompts, as for `pocketguard moderate` (default: each model's)")


def _size_bytes(path: Path) -> int:
    """Bytes on disk: the file, or every file under the folder."""
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _names(paths: list[Path]) -> list[str]:
    """Short display names (folder or file name), the full path where two would collide."""
    short = [p.name or str(p) for p in paths]
    return [s if short.count(s) == 1 else str(p) for s, p in zip(short, paths)]


def judge(guard: Any, chunk: list[Example]) -> list[Any]:
    """Verdicts for a batch. If the batch raises, each example is retried alone; one that still raises gets
    an `error` verdict (fail closed), so a runtime failure never drops an example from the metrics."""
    from ..guard import Verdict

    try:
        return guard.moderate_batch([e.messages for e in chunk], roles=[e.role for e in chunk], category_scores=True,
                                    batch_size=len(chunk))
    except Exception as e:  # noqa: BLE001 - whatever the runtime raised becomes the verdict's error
        if len(chunk) == 1:
            return [Verdict.failure(f"{type(e).__name__}: {e}", role=chunk[0].role)]
    return [v for ex in chunk for v in judge(guard, [ex])]


def _moderate(guard: Any, examples: list[Example], batch_size: int, desc: str, out: Path, run_key: dict,
              restart: bool = False) -> list[Any]:
    """Verdicts for every example, in batches, with a progress bar; each batch's predictions are appended to
    `out` as soon as they are made. Predictions an earlier run left there for the same `run_key` (model,
    data, settings) and the same leading examples are reused, so a stopped run continues where it stopped."""
    key_file = out.with_suffix(".run.json")
    with _only_writer(out):
        verdicts = [] if restart else _resume(out, key_file, run_key, examples)
        if verdicts:
            print(f"{desc}: continuing after {len(verdicts)} predictions already in {out}", file=sys.stderr)
        else:
            out.write_text("", encoding="utf-8")
            key_file.write_text(json.dumps(run_key, indent=1), encoding="utf-8")
        return _append(guard, examples, batch_size, desc, out, verdicts)


def _only_writer(out: Path) -> Any:
    """An exclusive lock on `out`'s .lock file, held while the returned file is open. Two evals into one --out each
    emptied the predictions file and then both appended to it (a held-out file of 7,596 rows for its 3,798
    examples, unreadable afterwards): the second is refused instead. Without `fcntl` (Windows) or file locks, no lock."""
    f = open(out.with_suffix(".lock"), "a", encoding="utf-8")
    try:
        import fcntl
    except ImportError:
        return f
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise DataError(f"{out}: another pocketguard eval is writing these predictions now; wait for it to finish "
                        "or give this one another --out") from None
    except OSError:  # a file system without locks (some network mounts): write unguarded, as before
        pass
    return f


def _append(guard: Any, examples: list[Example], batch_size: int, desc: str, out: Path, verdicts: list[Any]) -> list[Any]:
    """Judge the examples after the first len(verdicts), appending each batch's predictions to `out`."""
    with open(out, "a", encoding="utf-8") as f, \
            tqdm(total=len(examples), initial=len(verdicts), desc=desc, unit="ex", file=sys.stderr, disable=None) as bar:
        for start in range(len(verdicts), len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            new = judge(guard, chunk)
            for ex, v in zip(chunk, new):
                row = {"line": ex.line, "label": ex.label, "text": _digest(ex), "categories": ex.categories,
                       "verdict": v.to_dict()}
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
            f.flush()
            verdicts += new
            bar.update(len(chunk))
    return verdicts


def _digest(ex: Example) -> str:
    """A short digest of what was judged (the messages and the judged role): a data file rebuilt in place with the
    same lines and labels but other texts must not pass for the one a predictions file scored."""
    return hashlib.sha256(json.dumps([ex.role, ex.messages], ensure_ascii=False, sort_keys=True).encode()).hexdigest()[:16]


def _same_example(row: dict, ex: Example) -> bool:
    """Whether a saved prediction row is for `ex`: line, label and, in rows that carry it (since 2026-12-04), the
    digest of its text."""
    return (row["line"], row["label"]) == (ex.line, ex.label) and ("text" not in row or row["text"] == _digest(ex))


def _resume(path: Path, key_file: Path, run_key: dict, examples: list[Example]) -> list[Any]:
    """The verdicts of a predictions file written for `run_key` (kept next to it in `key_file`), as far as
    they match `examples` in order (a torn last line from a killed run is dropped); [] when there is nothing
    to continue."""
    from ..guard import Verdict

    try:
        if json.loads(key_file.read_text(encoding="utf-8")) != run_key:
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, json.JSONDecodeError):
        return []
    out: list[Any] = []
    for ex, line in zip(examples, lines):
        try:
            row = json.loads(line)
            if not _same_example(row, ex):
                break
            out.append(Verdict.from_dict(row["verdict"]))
        except (json.JSONDecodeError, KeyError, TypeError):
            break
    # rewrite what is kept, so appending continues from a clean line
    path.write_text("".join(x + "\n" for x in lines[: len(out)]), encoding="utf-8")
    return out


def read_predictions(path: Path, examples: list[Example]) -> list[Any]:
    """The verdicts of a saved predictions file, checked to be for exactly these examples (line and label, in
    order): scores from another data file, or a run that stopped early, are an error, not a silent mismatch."""
    from ..guard import Verdict

    try:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: cannot read saved predictions: {e}") from None
    if len(rows) != len(examples):
        raise DataError(f"{path}: {len(rows)} predictions for the {len(examples)} examples of --data "
                        "(another data file, a --limit, or a run that stopped early?)")
    out = []
    for i, (ex, row) in enumerate(zip(examples, rows), 1):
        try:
            if not _same_example(row, ex):
                other = "" if (row["line"], row["label"]) != (ex.line, ex.label) else ", with another text"
                raise DataError(f"{path}: prediction {i} is for line {row['line']} ({row['label']}), the data's example "
                                f"{i} is line {ex.line} ({ex.label}){other}: not predictions of this --data")
            out.append(Verdict.from_dict(row["verdict"]))
        except (KeyError, TypeError) as e:
            raise DataError(f"{path}: prediction {i} is not a pocketguard prediction row ({e})") from None
    return out


def _predictions_name(path: Path) -> str:
    """An eval's OUT/predictions/00-model.jsonl reads as "OUT/model"."""
    stem = re.sub(r"^\d{2}-", "", path.stem)
    return f"{path.parent.parent.name}/{stem}" if path.parent.name == "predictions" else stem


def _saved_size(path: Path) -> int | None:
    """The size of the model a predictions file came from, when its run.json names one that is here."""
    try:
        model = Path(json.loads(path.with_suffix(".run.json").read_text(encoding="utf-8"))["model"])
        return _size_bytes(model) if model.exists() else None
    except (OSError, json.JSONDecodeError, KeyError, TypeError):
        return None


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"


def _fidelity(guard: Any, ref: Any, text: str, window: int) -> dict:
    """PPL/KL against the reference; an error string instead when the two cannot be compared."""
    if guard.tokenizer.encode(text[:10000]) != ref.tokenizer.encode(text[:10000]):
        return {"error": "tokenizers differ from the reference's; KL over different token streams is meaningless"}
    try:
        return kl_divergence(guard.model, ref.model, guard.tokenizer, text, window=window).to_dict()
    except ValueError as e:
        return {"error": str(e)}


def run(args: argparse.Namespace) -> int:
    from ..artifact import checkpoint_sha256, sha256_tree
    from ..guard import Guard
    from ..policy import Policy, PolicyError

    def fail(message: str) -> int:
        print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR

    if args.data is None and args.text is None:
        return fail("give --data (labelled conversations) and/or --text with --reference (fidelity)")
    if args.text is not None and args.reference is None:
        return fail("--text measures fidelity against a reference model: add --reference PATH")
    if args.batch_size < 1 or not 0 <= args.target_fpr <= 1 or args.bootstrap < 0:
        return fail("--batch-size must be >= 1, --target-fpr within [0, 1] and --bootstrap >= 0")
    if args.window < 2:  # (fidelity's stride is half a window: it needs one token of context and one to score)
        return fail(f"--window is at least 2 tokens, not {args.window}")
    if args.limit is not None and args.limit < 1:  # (0 took every example, -1 all but the last)
        return fail(f"--limit is at least 1 example, not {args.limit}")
    if args.threshold is not None and not 0 <= args.threshold <= 1:  # above 1 nothing is flagged: not fail-closed
        return fail(f"--threshold is a p_unsafe within [0, 1], not {args.threshold}")
    saved = ([args.reference_predictions] if args.reference_predictions else []) + list(args.predictions or [])
    if args.reference and args.reference_predictions:
        return fail("give --reference (a model) or --reference-predictions (saved predictions), not both")
    if saved and args.data is None:
        return fail("saved predictions are scored against labelled data: add --data (the file they were made on)")
    from ..guard import DEFAULT_MODEL_DIR

    paths = ([args.reference] if args.reference else []) + list(args.model or ([] if saved else [DEFAULT_MODEL_DIR]))
    missing = [str(p) for p in paths + saved if not p.exists()]
    if missing:  # before any model runs, not an hour into the second one
        return fail(f"checkpoint not found: {', '.join(missing)}")
    try:
        policy = Policy.from_toml(args.policy) if args.policy else None
        examples, problems = [], []
        if args.data is not None:
            examples, problems = read_examples(args.data, args.format, policy, args.skip_malformed)
            examples = examples[: args.limit]
        text = args.text.read_text(encoding="utf-8") if args.text is not None else None
        read = {}
        for p in saved:  # before any model runs
            saved_verdicts = read_predictions(p, examples)
            try:
                read[p] = at_threshold(saved_verdicts, args.threshold)
            except ValueError as e:  # answers without p_unsafe: --threshold cannot re-decide them
                raise DataError(f"{p}: {e}") from None
    except (DataError, PolicyError, OSError, UnicodeDecodeError) as e:
        return fail(str(e))
    for p in problems:
        print(f"warning: skipped {p}", file=sys.stderr)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predictions").mkdir(exist_ok=True)
    sources = ([(args.reference_predictions, True)] if args.reference_predictions else []) + \
        [(p, args.reference is not None and i == 0) for i, p in enumerate(paths)] + [(p, False) for p in args.predictions or []]
    names = _names([p for p, _ in sources])
    names = [_predictions_name(p) if p in read else n for (p, _), n in zip(sources, names)]
    codes = (policy or Policy.default()).codes
    y = gold_flags([e.label for e in examples])
    models: list[dict] = []
    curves, points = {}, {}
    ref_guard = ref_verdicts = None
    for i, ((path, is_ref), name) in enumerate(zip(sources, names)):
        if path in read:
            guard, verdicts = None, read[path]
            entry: dict[str, Any] = {"name": name, "path": str(path), "reference": is_ref, "size_bytes": _saved_size(path),
                                     "predictions": str(path)}
        else:
            t0 = time.perf_counter()
            try:
                guard = Guard.load(path, policy=policy, device=args.device, threshold=args.threshold, subset_mode=args.subset_mode,
                                   **({"max_context": args.max_context} if args.max_context else {}))
            except Exception as e:  # noqa: BLE001 - report which checkpoint failed, whatever the cause
                return fail(f"cannot load {path}: {e}")
            entry = {"name": name, "path": str(path), "reference": is_ref, "size_bytes": _size_bytes(path),
                     "load_ms": (time.perf_counter() - t0) * 1000}
            verdicts = None
            if examples:
                # model and policy by their contents too: another checkpoint (or policy) written to the same path
                # gives other verdicts (the data's rows carry digests of their own)
                # (weights and settings apart: `calibrate --write` checks the weights that made the predictions)
                run_key = {"model": str(path.resolve()), "weights_sha256": checkpoint_sha256(path, "weights"),
                           "settings_sha256": checkpoint_sha256(path, "settings"),
                           "data": str(args.data.resolve()), "format": args.format,
                           "policy": str(args.policy.resolve()) if args.policy else None,
                           "policy_sha256": sha256_tree(args.policy) if args.policy else None, "max_context": args.max_context,
                           "device": args.device, "skip_malformed": args.skip_malformed, "threshold": args.threshold,
                           "subset_mode": args.subset_mode}
                try:
                    verdicts = _moderate(guard, examples, args.batch_size, name,
                                         args.out / "predictions" / f"{i:02d}-{_slug(name)}.jsonl", run_key, args.restart)
                except DataError as e:
                    return fail(str(e))
        if verdicts is not None:
            entry["metrics"] = evaluate_examples(examples, verdicts, codes, args.target_fpr, args.bootstrap)
            curves[name] = (y, predicted(verdicts)[1])
            o = entry["metrics"]["overall"]
            points[name] = (o["recall"], o["precision"])
            if is_ref:
                ref_verdicts = verdicts
            elif ref_verdicts is not None:
                entry["agreement"] = verdict_agreement(verdicts, ref_verdicts)
                entry["vs_reference"] = paired_difference(y, predicted(verdicts), predicted(ref_verdicts), args.bootstrap)
        if is_ref:
            ref_guard = guard
        elif text is not None and guard is not None:
            entry["fidelity"] = _fidelity(guard, ref_guard, text, args.window)
        models.append(entry)

    report: dict[str, Any] = {
        "pocketguard_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "target_fpr": args.target_fpr,
        "threshold": args.threshold,
        "models": models,
        "plots": {},
    }
    if args.reference is not None or args.reference_predictions is not None:
        report["reference"] = {"name": names[0], "path": str(args.reference or args.reference_predictions)}
    if examples:
        report["data"] = {
            "path": str(args.data), "format": args.format, "examples": len(examples), "unsafe": int(y.sum()),
            "safe": int((~y).sum()), "policy": codes,
            "skipped": [{"line": p.line, "message": p.message} for p in problems],
        }
        report["comparison"] = comparison(models)
        if 0 < y.sum() < len(y):
            plot_pr_curves(curves, args.out / "pr_curves.png", points)
            report["plots"]["precision-recall"] = "pr_curves.png"
        if len(models) > 1:
            plot_pareto(report["comparison"], args.out / "pareto.png")
            report["plots"]["size vs F1"] = "pareto.png"
    if args.text is not None:
        report["text"] = str(args.text)
    write_json(report, args.out / "report.json")
    (args.out / "report.md").write_text(markdown(report), encoding="utf-8")
    if examples:
        print(comparison_markdown(report["comparison"]) + "\n")
    if fidelity_markdown(models):
        print(fidelity_markdown(models) + "\n")
    print(f"report: {args.out / 'report.md'} (JSON: {args.out / 'report.json'})")
    return EXIT_OK
