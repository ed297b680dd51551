"""Evaluation reports: one JSON document (the source of truth), a Markdown rendering of it, and PNG plots.

Plots use matplotlib's object API (`Figure`, rendered by Agg) rather than pyplot, so nothing global changes
and it works without a display.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import average_precision_score, precision_recall_curve

from .metrics import pareto_front


# ---------------------------------------------------------------- JSON
def write_json(report: dict, path: str | Path) -> None:
    """Strict JSON (no NaN/Infinity): undefined metrics are already None."""
    Path(path).write_text(json.dumps(report, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8")


def read_json(path: str | Path) -> dict:
    return json.loads(Path(path).read_text(encoding="utf-8"))


# ---------------------------------------------------------------- comparison
def comparison(models: Sequence[dict]) -> list[dict]:
    """One row per model: size, latency and the headline metrics, with its place on the size-vs-F1 front."""
    rows = []
    for m in models:
        met = m.get("metrics") or {}
        o, lat = met.get("overall") or {}, met.get("latency") or {}
        rows.append({
            "name": m["name"], "reference": bool(m.get("reference")), "size_bytes": m.get("size_bytes"),
            "mean_ms": lat.get("mean_ms"), "p95_ms": lat.get("p95_ms"),
            **{k: o.get(k) for k in ("f1", "precision", "recall", "fpr", "auprc")},
            "ece": (met.get("calibration") or {}).get("ece"), "errors": met.get("errors"),
            "threshold_at_target_fpr": (met.get("threshold_for_target_fpr") or {}).get("threshold"),
            "f1_interval": (met.get("interval") or {}).get("f1"),
            "f1_vs_reference": (m.get("vs_reference") or {}).get("f1"),
            "f1_vs_reference_interval": (m.get("vs_reference") or {}).get("f1_interval"),
        })
    front = pareto_front([float("inf") if r["size_bytes"] is None else r["size_bytes"] for r in rows],
                         [r["f1"] for r in rows])
    for r, on in zip(rows, front):
        r["pareto"] = on
    return rows


# ---------------------------------------------------------------- Markdown
def _f(x: Any, digits: int = 3) -> str:
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else ""
    if isinstance(x, int):
        return str(x)
    return f"{x:.{digits}f}"


def _size(n: int | None) -> str:
    if n is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):  # binary units, named as such (bench prints MiB too)
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def _binary_rows(slices: dict) -> list[list[str]]:
    return [[k, _f(m["n"]), _f(m["unsafe"]), _f(m["f1"]), _f(m["precision"]), _f(m["recall"]), _f(m["fpr"]),
             _f(m["auprc"])] for k, m in slices.items()]


BINARY_HEADER = ["n", "unsafe", "F1", "precision", "recall", "FPR", "AUPRC"]


def _span(iv: Sequence[float] | None) -> str:
    return "—" if not iv else f"[{iv[0]:.3f}, {iv[1]:.3f}]"


def _delta(x: float | None, iv: Sequence[float] | None) -> str:
    """A difference from the reference, signed, with its interval where there is one (none with --bootstrap 0)."""
    return "—" if x is None else f"{x:+.3f}" + (f" {_span(iv)}" if iv else "")


def _threshold(t: float | None) -> str:
    """A p_unsafe threshold in full (the shortest text that reads back as the same float): rounded, it flags other
    scores than those it was chosen on when passed as --threshold, and can exceed the FPR it was chosen for."""
    return "—" if t is None else repr(float(t))


def comparison_markdown(rows: list[dict]) -> str:
    ci = any(r.get("f1_interval") for r in rows)
    vs = any(r.get("f1_vs_reference") is not None for r in rows)
    vs_ci = " (95% CI)" if any(r.get("f1_vs_reference_interval") for r in rows) else ""
    header = ["model", "size", "ms/ex (mean)", "ms/ex (p95)", "F1", *(["F1 95% CI"] if ci else []),
              *([f"ΔF1 vs reference{vs_ci}"] if vs else []), "precision", "recall", "FPR", "AUPRC", "ECE",
              "errors", "thr@FPR", "Pareto"]
    body = [[r["name"] + (" (reference)" if r["reference"] else ""), _size(r["size_bytes"]), _f(r["mean_ms"], 1),
             _f(r["p95_ms"], 1), _f(r["f1"]), *([_span(r.get("f1_interval"))] if ci else []),
             *([_delta(r.get("f1_vs_reference"), r.get("f1_vs_reference_interval"))] if vs else []),
             _f(r["precision"]), _f(r["recall"]), _f(r["fpr"]), _f(r["auprc"]),
             _f(r["ece"]), _f(r["errors"]), _threshold(r["threshold_at_target_fpr"]), "★" if r["pareto"] else ""]
            for r in rows]
    return _table(header, body)


def _model_markdown(m: dict, target_fpr: float) -> list[str]:
    met = m["metrics"]
    out = [f"## {m['name']}", "", f"`{m.get('path', '')}`", ""]
    slices = {"all": met["overall"]} | met.get("by_role", {})
    out += ["### Overall and by judged turn", "", _table(["slice", *BINARY_HEADER], _binary_rows(slices)), ""]
    if iv := met.get("interval"):
        out += [f"95 % bootstrap intervals ({iv['n_boot']} resamples of the examples): F1 {_span(iv['f1'])}, "
                f"AUPRC {_span(iv['auprc'])}.", ""]
    if vs := m.get("vs_reference"):
        paired = f", paired over the same {vs['n_boot']} resamples" if vs["n_boot"] else ""
        out += [f"Against the reference{paired}: ΔF1 {_delta(vs['f1'], vs['f1_interval'])}, "
                f"ΔAUPRC {_delta(vs['auprc'], vs['auprc_interval'])}.", ""]
    if len(met.get("by_language", {})) > 1:
        out += ["### By language", "", _table(["language", *BINARY_HEADER], _binary_rows(met["by_language"])), ""]
    if len(met.get("by_source", {})) > 1:
        out += ["### By source", "", _table(["source", *BINARY_HEADER], _binary_rows(met["by_source"])), ""]
    cats = met.get("by_category") or {}
    if cats.get("codes"):
        rows = [[c, _f(v["support"]), _f(v["predicted"]), _f(v["f1"]), _f(v["precision"]), _f(v["recall"]),
                 _f(v["fpr"]), _f(v["auprc"])] for c, v in cats["codes"].items()]
        out += [f"### By category (one-vs-rest over {cats['n']} examples with known categories; "
                f"macro F1 {_f(cats['macro_f1'])})", "",
                _table(["code", "support", "predicted", "F1", "precision", "recall", "FPR", "AUPRC"], rows), ""]
    if met.get("lookalike"):
        la = met["lookalike"]
        out += [f"Benign look-alike examples flagged: **{la['flagged']} of {la['n']}** (FPR {_f(la['fpr'])}).", ""]
    t = met["threshold_for_target_fpr"]
    if t["threshold"] is None:
        out += [f"No p_unsafe threshold catches an unsafe example at FPR ≤ {target_fpr}.", ""]
    else:
        out += [f"Threshold for FPR ≤ {target_fpr}: flag when p_unsafe ≥ **{_threshold(t['threshold'])}** "
                f"(FPR {_f(t['fpr'])}, recall {_f(t['recall'])}, precision {_f(t['precision'])}).", ""]
    sweep = [[_f(r["threshold"], 2), _f(r["f1"]), _f(r["precision"]), _f(r["recall"]), _f(r["fpr"])]
             for r in met["threshold_sweep"]]
    out += ["<details><summary>Threshold sweep</summary>", "",
            _table(["threshold", "F1", "precision", "recall", "FPR"], sweep), "", "</details>", ""]
    cal = met["calibration"]
    out += [f"Calibration of p_unsafe: ECE {_f(cal['ece'])}, MCE {_f(cal['mce'])}, Brier {_f(cal['brier'])} "
            f"over {cal['n']} judged examples; {met['errors']} failure(s) to judge (errors, a non-finite p_unsafe), "
            "counted as flagged.", ""]
    return out


def fidelity_markdown(models: Sequence[dict]) -> str:
    rows = []
    for m in models:
        fid, agr = m.get("fidelity"), m.get("agreement")
        if fid is None and agr is None:
            continue
        fid, agr = fid or {}, agr or {}
        if "error" in fid:
            kl = [fid["error"]] + ["—"] * 5
        else:
            kl = [_f((fid.get("model") or {}).get("perplexity")), _f(fid.get("perplexity_ratio"), 4),
                  _f(fid.get("kl_mean"), 5), _f(fid.get("kl_p99"), 5), _f(fid.get("kl_max"), 4),
                  _f(fid.get("top1_agreement"))]
        rows.append([m["name"], *kl, _f(agr.get("flagged")), _f(agr.get("exact")), _f(agr.get("kappa")),
                     _f(agr.get("mean_abs_dp_unsafe"), 4)])
    header = ["model", "PPL", "PPL ratio", "KL mean", "KL p99", "KL max", "same top token", "same flag",
              "same verdict", "kappa", "mean abs Δp_unsafe"]
    return _table(header, rows) if rows else ""


def markdown(report: dict) -> str:
    """The whole report as Markdown (rendered from the JSON document, nothing else)."""
    d = report.get("data")
    out = ["# pocketguard evaluation", ""]
    if d:
        out += [f"Data: `{d['path']}` ({d['format']}): {d['examples']} examples, {d['unsafe']} unsafe, "
                f"{d['safe']} safe; policy {', '.join(d['policy'])}.", ""]
        if d["skipped"]:
            out += [f"Skipped {len(d['skipped'])} malformed row(s):", ""]
            out += [f"- line {p['line']}: {p['message']}" for p in d["skipped"][:50]]
            out += [f"- … and {len(d['skipped']) - 50} more (see report.json)"] if len(d["skipped"]) > 50 else []
            out += [""]
    if report.get("threshold") is not None:
        out += [f"Every model flags at p_unsafe ≥ {report['threshold']} (`--threshold`; saved predictions re-decided at it).", ""]
    if report.get("comparison"):
        out += ["## Models", "", comparison_markdown(report["comparison"]), "",
                "Latency is the guard's `timings.total_ms`: a batch's wall time divided by its size. "
                "Intervals are 95 % percentile bootstraps over the examples; ΔF1 is paired (the same resamples "
                "for the model and the reference). "
                f"`thr@FPR` is the p_unsafe threshold for FPR ≤ {report['target_fpr']}. "
                "★ marks the size-vs-F1 Pareto front.", ""]
    plots = report.get("plots") or {}
    out += [f"![{name}]({file})" for name, file in plots.items()] + ([""] if plots else [])
    fid = fidelity_markdown(report.get("models", []))
    if fid:
        ref = report.get("reference") or {}
        out += [f"## Fidelity against `{ref.get('name', 'reference')}`", "", fid, "",
                "KL is KL(reference ‖ model) per token, in nats, over the vocabulary both heads keep.", ""]
    for m in report.get("models", []):
        if m.get("metrics"):
            out += _model_markdown(m, report["target_fpr"])
    return "\n".join(out).rstrip() + "\n"


# ---------------------------------------------------------------- plots
def plot_pr_curves(curves: dict[str, tuple[Sequence[bool], Sequence[float]]], path: str | Path,
                   points: dict[str, tuple[float, float]] | None = None) -> None:
    """Precision-recall curve of p_unsafe per model; `points` marks each model's (recall, precision) as decoded."""
    fig = Figure(figsize=(6, 5), dpi=120)
    ax = fig.add_subplot()
    for i, (name, (y, scores)) in enumerate(curves.items()):
        color = f"C{i % 10}"
        p, r, _ = precision_recall_curve(np.asarray(y, dtype=int), scores)
        ap = average_precision_score(np.asarray(y, dtype=int), scores)
        ax.step(r, p, where="post", color=color, label=f"{name} (AP {ap:.3f})")
        if points and name in points and None not in points[name]:
            ax.plot(*points[name], "o", color=color)
    ax.set(xlabel="recall (unsafe)", ylabel="precision (unsafe)", xlim=(0, 1.01), ylim=(0, 1.02),
           title="Precision-recall of p_unsafe (dots: decoded verdicts)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize="small")
    fig.tight_layout()
    fig.savefig(path)


def plot_pareto(rows: Sequence[dict], path: str | Path) -> None:
    """Size (MiB) against F1 per model, the Pareto front joined by a line."""
    pts = [(r["size_bytes"] / 2**20, r["f1"], r["name"], r["pareto"]) for r in rows
           if r["size_bytes"] is not None and r["f1"] is not None]
    fig = Figure(figsize=(6, 4.5), dpi=120)
    ax = fig.add_subplot()
    for size, f1, name, on in pts:
        ax.plot(size, f1, "o", color="C0" if on else "C7")
        ax.annotate(name, (size, f1), textcoords="offset points", xytext=(4, 4), fontsize="small")
    front = sorted((s, f) for s, f, _, on in pts if on)
    if len(front) > 1:
        ax.step([s for s, _ in front], [f for _, f in front], where="post", color="C0", alpha=0.6)
    sizes = [s for s, *_ in pts]
    if sizes and min(sizes) > 0 and max(sizes) / min(sizes) > 10:
        ax.set_xscale("log")
    ax.set(xlabel="size on disk (MiB)", ylabel="F1 (unsafe)", title="Size vs F1 (blue: Pareto front)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
