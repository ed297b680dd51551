"""Guard metrics from plain lists: gold labels (and categories, languages, roles) against Verdict-like records.

A prediction is anything with `status`, `categories`, `p_unsafe`, optional `category_scores` and `timings`
(a `Verdict`, its `to_dict()`, or a dict read back from a predictions file).

Conventions (docs/evaluation.md):
- *Fail closed*: a prediction with status `error`, or whose p_unsafe is not a number (NaN, inf: no threshold can
  be compared with it), is a failure to judge (`failed`): it counts as flagged, and its score is 1.0 for the
  threshold-free metrics (AUPRC, sweep), exactly as a deployed guard would block the request.
- A prediction without `p_unsafe` (a runtime that only gives the answer) scores 1.0 when flagged, 0.0 otherwise.
- Per-category metrics measure *naming*: they use only examples whose gold categories are known, and a
  failure to judge names no category.
- Undefined numbers (precision with nothing flagged, recall and F1 with no unsafe examples, FPR with no safe
  examples, AUPRC with one class) are None, never 0, so a table does not show a perfect-looking zero where there
  was nothing to measure.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, Sequence

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    precision_recall_fscore_support,
    roc_curve,
)
from sklearn.preprocessing import MultiLabelBinarizer

DEFAULT_THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def get(record: Any, name: str, default: Any = None) -> Any:
    """Read a field from a Verdict or from its dict form."""
    if isinstance(record, dict):
        return record.get(name, default)
    return getattr(record, name, default)


def _num(x: Any) -> float | None:
    """A JSON-safe number: NaN (undefined) becomes None."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def gold_flags(labels: Iterable[Any]) -> np.ndarray:
    """'unsafe'/'safe' (or bools) to a bool array; anything else is an error, not a guess."""
    out = []
    for i, lab in enumerate(labels):
        if isinstance(lab, (bool, np.bool_)):
            out.append(bool(lab))
        elif lab in ("unsafe", "safe"):
            out.append(lab == "unsafe")
        else:
            raise ValueError(f"label #{i + 1} must be 'safe' or 'unsafe', got {lab!r}")
    return np.array(out, dtype=bool)


def failed(prediction: Any) -> bool:
    """Whether the guard failed to judge: an `error` verdict, or a p_unsafe that is not a finite number."""
    pu = get(prediction, "p_unsafe")
    return get(prediction, "status") == "error" or (pu is not None and not math.isfinite(pu))


def predicted(predictions: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """(flagged, score) per prediction, failing closed on failures to judge (flagged, score 1.0)."""
    flagged = np.array([failed(p) or get(p, "status") != "safe" for p in predictions], dtype=bool)
    scores = np.empty(len(predictions))
    for i, p in enumerate(predictions):
        pu = get(p, "p_unsafe")
        scores[i] = float(flagged[i]) if failed(p) or pu is None else float(pu)
    return flagged, scores


def binary_metrics(y_true: np.ndarray, flagged: np.ndarray, scores: np.ndarray | None = None) -> dict:
    """Counts, precision, recall, F1, FPR, accuracy and (with scores) AUPRC for unsafe as the positive class."""
    y, f = np.asarray(y_true, dtype=int), np.asarray(flagged, dtype=int)
    tn, fp, fn, tp = (int(v) for v in confusion_matrix(y, f, labels=[0, 1]).ravel())
    p, r, f1, _ = precision_recall_fscore_support(y, f, labels=[1], average=None, zero_division=np.nan)
    both = 0 < y.sum() < len(y)
    return {
        "n": len(y), "unsafe": tp + fn, "safe": tn + fp, "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        # F1 without unsafe examples is undefined (None, as in `weighted_f1_auprc`), not sklearn's 0 for a false positive
        "precision": _num(p[0]), "recall": _num(r[0]), "f1": _num(f1[0]) if tp + fn else None,
        "fpr": _num(fp / (fp + tn)) if fp + tn else None,
        "accuracy": _num((tp + tn) / len(y)) if len(y) else None,
        "auprc": _num(average_precision_score(y, scores)) if scores is not None and both else None,
    }


def category_metrics(gold: Sequence[list[str] | None], predictions: Sequence[Any], codes: Sequence[str]) -> dict:
    """One-vs-rest per code over examples with known gold categories (None = unknown, skipped).

    Codes are reported when they occur in the gold or predicted lists; `macro` averages F1 over codes with
    support. AUPRC per code needs `category_scores` on every used prediction (failures score 0: they name nothing).
    Each code is scored by `binary_metrics` on its own column: sklearn reads a single-column indicator matrix (one
    code in use) as a binary target and would report the code's absence as its class.
    """
    keep = [i for i, g in enumerate(gold) if g is not None]
    if not keep:
        return {"n": 0, "codes": {}, "macro_f1": None}
    gold_sets = [set(gold[i]) for i in keep]
    pred_sets = [set() if failed(predictions[i]) else set(get(predictions[i], "categories") or []) for i in keep]
    used = [c for c in codes if any(c in s for s in gold_sets) or any(c in s for s in pred_sets)]
    if not used:
        return {"n": len(keep), "codes": {}, "macro_f1": None}
    mlb = MultiLabelBinarizer(classes=used)
    Y, P = mlb.fit_transform(gold_sets), mlb.transform(pred_sets)
    score_dicts = [None if failed(predictions[i]) else get(predictions[i], "category_scores") for i in keep]
    have_scores = all(s is not None or failed(predictions[i]) for s, i in zip(score_dicts, keep))
    out = {}
    for j, code in enumerate(used):
        s = np.array([float((d or {}).get(code, 0.0)) for d in score_dicts]) if have_scores else None
        m = binary_metrics(Y[:, j], P[:, j], s)
        out[code] = {"support": m["unsafe"], "predicted": m["tp"] + m["fp"],
                     **{k: m[k] for k in ("tp", "fp", "fn", "precision", "recall", "f1", "fpr", "auprc")}}
    with_support = [m["f1"] if m["f1"] is not None else 0.0 for m in out.values() if m["support"]]
    return {"n": len(keep), "codes": out, "macro_f1": _num(np.mean(with_support)) if with_support else None}


def sliced(keys: Sequence[Any], y: np.ndarray, flagged: np.ndarray, scores: np.ndarray) -> dict:
    """Binary metrics per distinct key (language, judged role, source), keys sorted."""
    keys = np.array(["unknown" if k is None else str(k) for k in keys])
    return {k: binary_metrics(y[keys == k], flagged[keys == k], scores[keys == k]) for k in sorted(set(keys))}


def threshold_sweep(y: np.ndarray, scores: np.ndarray, thresholds: Sequence[float] = DEFAULT_THRESHOLDS) -> list[dict]:
    """Metrics when flagging `score >= t` for each t (the guard's `--threshold` mode)."""
    rows = []
    for t in thresholds:
        m = binary_metrics(y, scores >= t)
        rows.append({"threshold": float(t), **{k: m[k] for k in ("precision", "recall", "f1", "fpr", "tp", "fp")}})
    return rows


def threshold_for_fpr(y: np.ndarray, scores: np.ndarray, target_fpr: float) -> dict:
    """The threshold with the highest recall whose FPR stays <= target; of equal-recall ones, the highest
    (fewest false positives). `threshold` is None when no threshold catches an unsafe example within the
    target (or there are no safe examples to measure FPR on)."""
    y = np.asarray(y, dtype=int)
    out: dict[str, Any] = {"target_fpr": target_fpr, "threshold": None, "fpr": None, "recall": None, "precision": None}
    if not (0 < y.sum() < len(y)):
        return out
    fpr, tpr, thr = roc_curve(y, scores, drop_intermediate=False)  # thresholds decreasing, tpr non-decreasing
    ok = np.nonzero(fpr <= target_fpr + 1e-12)[0]
    best = tpr[ok].max()
    if best == 0:
        return out
    t = float(thr[ok[np.argmax(tpr[ok] >= best)]])
    m = binary_metrics(y, scores >= t)
    return out | {"threshold": t, "fpr": m["fpr"], "recall": m["recall"], "precision": m["precision"]}


def calibration(y: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> dict:
    """Expected calibration error of p_unsafe over equal-width bins (sklearn's `calibration_curve` binning).

    ECE = Σ_b (n_b / N) · |frac_unsafe_b − mean_p_b|; MCE is the largest bin gap; Brier is the mean squared error.
    """
    y, probs = np.asarray(y, dtype=float), np.asarray(probs, dtype=float)
    if len(y) == 0:
        return {"n": 0, "ece": None, "mce": None, "brier": None, "bins": []}
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    ids = np.searchsorted(edges[1:-1], probs)
    bins, ece, mce = [], 0.0, 0.0
    for b in range(n_bins):
        sel = ids == b
        if not sel.any():
            continue
        gap = abs(y[sel].mean() - probs[sel].mean())
        ece += sel.sum() / len(y) * gap
        mce = max(mce, gap)
        bins.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "count": int(sel.sum()),
                     "mean_p": float(probs[sel].mean()), "frac_unsafe": float(y[sel].mean())})
    return {"n": len(y), "ece": float(ece), "mce": float(mce), "brier": float(brier_score_loss(y, probs)), "bins": bins}


def latency(predictions: Sequence[Any], key: str = "total_ms") -> dict:
    """Mean / p50 / p95 of each prediction's `timings[key]` (ms)."""
    ms = np.array([float(t[key]) for p in predictions if (t := get(p, "timings") or {}).get(key) is not None])
    if not len(ms):
        return {"n": 0, "mean_ms": None, "p50_ms": None, "p95_ms": None}
    return {"n": len(ms), "mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
            "p95_ms": float(np.percentile(ms, 95))}


def weighted_f1_auprc(y: np.ndarray, flagged: np.ndarray, scores: np.ndarray | None, w: np.ndarray) -> np.ndarray:
    """F1 and AUPRC of one run under each row of example weights `w` [B, n] (a bootstrap resample is the count of
    each example in it): [B, 2], NaN where undefined. The same numbers as sklearn's `f1_score` and
    `average_precision_score` with `sample_weight`, for all rows at once: the scores are sorted once and every
    row only re-weights the cumulative counts (sklearn per row took 2 s per 1,000 resamples of 3,800 examples)."""
    y, f, w = np.asarray(y, dtype=bool), np.asarray(flagged, dtype=bool), np.asarray(w, dtype=float)
    out = np.full((len(w), 2), np.nan)
    pos = w @ y
    tp, fp, fn = w @ (y & f), w @ (~y & f), w @ (y & ~f)
    with np.errstate(invalid="ignore", divide="ignore"):
        out[:, 0] = np.where(pos > 0, 2 * tp / (2 * tp + fp + fn), np.nan)
        if scores is not None:
            order = np.argsort(-np.asarray(scores, dtype=float), kind="mergesort")
            s_sorted = np.asarray(scores, dtype=float)[order]
            last = np.r_[np.flatnonzero(np.diff(s_sorted)), len(order) - 1]  # one threshold per distinct score
            ws, ys = w[:, order], y[order]
            ctp, cfp = np.cumsum(ws * ys, axis=1)[:, last], np.cumsum(ws * ~ys, axis=1)[:, last]
            precision = np.where(ctp + cfp > 0, ctp / (ctp + cfp), 0.0)
            recall_step = np.diff(ctp, axis=1, prepend=0.0) / pos[:, None]
            defined = (pos > 0) & (pos < w.sum(1))
            out[:, 1] = np.where(defined, (recall_step * precision).sum(1), np.nan)
    return out


def bootstrap(y: np.ndarray, runs: Sequence[tuple[np.ndarray, np.ndarray | None]], n_boot: int = 1000, seed: int = 0) -> np.ndarray:
    """F1 and AUPRC of each run on `n_boot` resamples of the examples (drawn with replacement, the same resamples
    for every run, so differences between runs are paired): [n_boot, len(runs), 2], NaN where a resample leaves
    a metric undefined.

    Why: a held-out set with a few hundred unsafe examples moves F1 by a point for three or four verdicts, so a
    single number cannot say whether one guard beats another; the percentile bootstrap (Efron & Tibshirani) can."""
    n = len(y)
    out = np.full((n_boot, len(runs), 2), np.nan)
    rng = np.random.default_rng(seed)
    chunk = max(1, min(200, 5_000_000 // max(n, 1)))  # resamples at once: a few [chunk, n] float arrays, ~40 MB each
    for start in range(0, n_boot, chunk):
        w = rng.multinomial(n, np.full(n, 1 / n), size=min(chunk, n_boot - start))  # counts of each example
        for j, (flagged, scores) in enumerate(runs):
            out[start:start + len(w), j] = weighted_f1_auprc(y, flagged, scores, w)
    return out


def interval(values: np.ndarray, level: float = 0.95) -> list[float] | None:
    """The central `level` percentile interval of finite bootstrap values (None when too few are defined)."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 10:
        return None
    lo, hi = np.percentile(v, [50 * (1 - level), 50 * (1 + level)])
    return [float(lo), float(hi)]


def intervals(y: np.ndarray, flagged: np.ndarray, scores: np.ndarray | None, n_boot: int = 1000, level: float = 0.95,
              seed: int = 0) -> dict:
    """Bootstrap intervals of one run's F1 and AUPRC."""
    b = bootstrap(y, [(flagged, scores)], n_boot, seed)[:, 0]
    return {"level": level, "n_boot": n_boot, "f1": interval(b[:, 0], level),
            "auprc": interval(b[:, 1], level) if scores is not None else None}


def paired_difference(y: np.ndarray, model: tuple[np.ndarray, np.ndarray | None], reference: tuple[np.ndarray, np.ndarray | None],
                      n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> dict:
    """Model minus reference in F1 and AUPRC on the same examples, with paired bootstrap intervals: the
    difference is taken on each resample, so what both get right or wrong cancels out."""
    d = bootstrap(y, [model, reference], n_boot, seed)
    d = d[:, 0] - d[:, 1]
    a, r = binary_metrics(y, *model), binary_metrics(y, *reference)
    diff = {k: None if a[k] is None or r[k] is None else a[k] - r[k] for k in ("f1", "auprc")}
    return {"level": level, "n_boot": n_boot, "f1": diff["f1"], "f1_interval": interval(d[:, 0], level),
            "auprc": diff["auprc"], "auprc_interval": interval(d[:, 1], level) if diff["auprc"] is not None else None}


def evaluate(
    labels: Sequence[Any],
    predictions: Sequence[Any],
    categories: Sequence[list[str] | None] | None = None,
    languages: Sequence[str | None] | None = None,
    roles: Sequence[str] | None = None,
    sources: Sequence[str | None] | None = None,
    codes: Sequence[str] | None = None,
    target_fpr: float = 0.05,
    n_boot: int = 0,
) -> dict:
    """Every metric of one model on one data set, as a JSON-ready dict (with `n_boot` > 0, 95 % bootstrap
    intervals of F1 and AUPRC under `interval`)."""
    if len(labels) != len(predictions):
        raise ValueError(f"{len(labels)} labels but {len(predictions)} predictions")
    y = gold_flags(labels)
    flagged, scores = predicted(predictions)
    has_p = np.array([not failed(p) and get(p, "p_unsafe") is not None for p in predictions], dtype=bool)
    out = {
        "overall": binary_metrics(y, flagged, scores),
        "errors": int(sum(failed(p) for p in predictions)),
        "threshold_sweep": threshold_sweep(y, scores),
        "threshold_for_target_fpr": threshold_for_fpr(y, scores, target_fpr),
        "calibration": calibration(y[has_p], scores[has_p]),
        "latency": latency(predictions),
    }
    if n_boot > 0:
        out["interval"] = intervals(y, flagged, scores, n_boot)
    if roles is not None:
        out["by_role"] = sliced([{"user": "prompt", "agent": "response"}.get(r, r) for r in roles], y, flagged, scores)
    if languages is not None:
        out["by_language"] = sliced(languages, y, flagged, scores)
    if sources is not None:
        out["by_source"] = sliced(sources, y, flagged, scores)
    if categories is not None:
        if codes is None:
            seen = {c for cs in categories if cs for c in cs} | {c for p in predictions for c in get(p, "categories") or []}
            codes = sorted(seen, key=lambda c: (len(c), c))
        out["by_category"] = category_metrics(categories, predictions, codes)
    return out


def at_threshold(verdicts: list[Any], t: float | None) -> list[Any]:
    """Saved `Verdict`s as a guard with `threshold = t` gives them: unsafe exactly when p_unsafe ≥ t. Only the status is
    re-decided — a verdict newly flagged names no categories (the guard would decode them), one newly passed loses
    them — so binary metrics are exact and category ones are those of the run that made them. Failures to judge
    (`failed`: errors, a non-finite p_unsafe) stay as they are, counted as flagged; a verdict without p_unsafe (answers
    only) cannot be re-decided, and passing it as it is would not be at `t`: ValueError."""
    if t is None:
        return verdicts
    out = []
    for i, v in enumerate(verdicts, 1):
        judged = not failed(v)
        if judged and v.p_unsafe is None:
            raise ValueError(f"prediction {i} ({v.status}) has no p_unsafe: a threshold cannot re-decide it")
        if judged and (v.p_unsafe >= t) != (v.status == "unsafe"):
            v = dataclasses.replace(v, status="unsafe" if v.p_unsafe >= t else "safe", categories=[], category_names=[])
        out.append(v)
    return out


def evaluate_examples(examples: Sequence[Any], predictions: Sequence[Any], codes: Sequence[str] | None = None,
                      target_fpr: float = 0.05, n_boot: int = 0) -> dict:
    """`evaluate` on `data.Example`s, plus `lookalike` (the false-positive rate on the benign examples marked
    as looking risky) when the data marks any."""
    out = evaluate(
        [e.label for e in examples], predictions, categories=[e.categories for e in examples],
        languages=[e.language for e in examples], roles=[e.role for e in examples],
        sources=[e.source for e in examples], codes=codes, target_fpr=target_fpr, n_boot=n_boot,
    )
    look = np.array([bool(getattr(e, "lookalike", False)) for e in examples], dtype=bool)
    if look.any():
        flagged, _ = predicted(predictions)
        out["lookalike"] = {"n": int(look.sum()), "flagged": int(flagged[look].sum()), "fpr": float(flagged[look].mean())}
    return out


def pareto_front(sizes: Sequence[float], scores: Sequence[float | None]) -> list[bool]:
    """True for models no other model beats on both axes (smaller or equal size and higher or equal score,
    strictly better on one). Models without a score are never on the front."""
    on = []
    for i, (s, f) in enumerate(zip(sizes, scores)):
        if f is None:
            on.append(False)
            continue
        dominated = any(
            g is not None and t <= s and g >= f and (t < s or g > f) for j, (t, g) in enumerate(zip(sizes, scores)) if j != i
        )
        on.append(not dominated)
    return on
