"""Reports: strict JSON that round-trips, Markdown rendered from it, valid PNG plots."""

import math
import re

import numpy as np
import pytest
from matplotlib.image import imread

from pocketguard.evaluate.metrics import evaluate
from pocketguard.evaluate.report import comparison, markdown, plot_pareto, plot_pr_curves, read_json, write_json

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def fake_model(name, size, seed, reference=False):
    rng = np.random.default_rng(seed)
    labels = ["unsafe"] * 10 + ["safe"] * 10
    preds = []
    for i, lab in enumerate(labels):
        p = float(np.clip(rng.normal(0.7 if lab == "unsafe" else 0.3, 0.2), 0, 1))
        preds.append({"status": "unsafe" if p >= 0.5 else "safe", "p_unsafe": p,
                      "categories": ["S1"] if p >= 0.5 else [], "timings": {"total_ms": 5.0 + i}})
    metrics = evaluate(labels, preds, categories=[["S1"]] * 10 + [[]] * 10, languages=["en", "de"] * 10,
                       roles=["user", "agent"] * 10, codes=["S1", "S2"])
    return {"name": name, "path": f"/ckpt/{name}", "reference": reference, "size_bytes": size, "metrics": metrics}, (
        [lab == "unsafe" for lab in labels], [p["p_unsafe"] for p in preds])


def build_report():
    models, curves = [], {}
    for name, size, seed in [("bf16", 2_400_000_000, 0), ("int8", 1_300_000_000, 1), ("int4", 800_000_000, 2)]:
        m, curve = fake_model(name, size, seed, reference=name == "bf16")
        models.append(m)
        curves[name] = curve
    models[1]["agreement"] = {"flagged": 0.9, "exact": 0.85, "kappa": 0.8, "mean_abs_dp_unsafe": 0.02}
    models[1]["fidelity"] = {"model": {"perplexity": 9.1}, "perplexity_ratio": 1.01, "kl_mean": 0.003,
                             "kl_p99": 0.04, "kl_max": 0.2, "top1_agreement": 0.97}
    models[2]["fidelity"] = {"error": "tokenizers differ"}
    report = {"target_fpr": 0.05, "models": models, "comparison": comparison(models),
              "reference": {"name": "bf16", "path": "/ckpt/bf16"},
              "data": {"path": "dev.jsonl", "format": "generic", "examples": 20, "unsafe": 10, "safe": 10,
                       "policy": ["S1", "S2"], "skipped": [{"line": 7, "message": "unknown categories ['S99']"}]},
              "plots": {"precision-recall": "pr_curves.png"}}
    return report, curves


def test_json_round_trip_and_strictness(tmp_path):
    report, _ = build_report()
    write_json(report, tmp_path / "r.json")
    assert read_json(tmp_path / "r.json") == report
    with pytest.raises(ValueError):
        write_json({"x": math.nan}, tmp_path / "bad.json")


def test_markdown_shows_the_tables(tmp_path):
    report, _ = build_report()
    write_json(report, tmp_path / "r.json")
    md = markdown(read_json(tmp_path / "r.json"))
    assert md == markdown(report)  # rendered from the JSON alone
    assert "| bf16 (reference) | 2.2 GiB |" in md and "| int4 | 762.9 MiB |" in md
    assert "- line 7: unknown categories ['S99']" in md
    assert "## Fidelity against `bf16`" in md and "| int8 | 9.100 | 1.0100 | 0.00300 |" in md
    assert "| int4 | tokenizers differ |" in md
    assert "### By language" in md and "### By category" in md and "| S1 | 10 |" in md
    assert "![precision-recall](pr_curves.png)" in md and "Threshold sweep" in md


def test_comparison_marks_the_pareto_front():
    report, _ = build_report()
    rows = {r["name"]: r for r in report["comparison"]}
    f1 = {n: r["f1"] for n, r in rows.items()}
    size = {n: r["size_bytes"] for n, r in rows.items()}
    for n, r in rows.items():
        beaten = any(size[m] <= size[n] and f1[m] >= f1[n] and (size[m] < size[n] or f1[m] > f1[n]) for m in rows if m != n)
        assert r["pareto"] == (not beaten)
    assert rows["int4"]["pareto"]  # the smallest is always on the front


def test_plots_are_valid_pngs(tmp_path):
    report, curves = build_report()
    plot_pr_curves(curves, tmp_path / "pr.png", points={"int8": (0.8, 0.7)})
    plot_pareto(report["comparison"], tmp_path / "pareto.png")
    for name in ("pr.png", "pareto.png"):
        data = (tmp_path / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
        img = imread(tmp_path / name)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.std() > 0  # not a blank canvas


def _report(labels, preds, **kw):
    model = {"name": "m", "path": "/ckpt/m", "metrics": evaluate(labels, preds, **kw)}
    return {"target_fpr": kw.get("target_fpr", 0.05), "models": [model], "comparison": comparison([model])}


def test_the_printed_threshold_for_the_target_fpr_makes_its_decisions():
    """The threshold was printed rounded to the nearest (0.1234 and 0.123 for 0.12344): used as --threshold it also
    flagged the safe 0.12341, an FPR of 0.5 for a target of 0."""
    ps = [0.1, 0.12341, 0.12344, 0.9]
    md = markdown(_report(["safe", "safe", "unsafe", "unsafe"],
                          [{"status": "safe", "p_unsafe": p, "categories": []} for p in ps], target_fpr=0.0))
    detail = re.search(r"flag when p_unsafe ≥ \*\*([^*]+)\*\*", md).group(1)
    header, row = (line.split(" | ") for line in md.splitlines() if line.startswith(("| model |", "| m |")))
    printed = [detail, row[header.index("thr@FPR")]]
    for text in printed:
        assert (np.array(ps) >= float(text)).tolist() == [False, False, True, True], text


def test_a_slice_without_unsafe_examples_shows_no_f1():
    """Source b has a false positive and no unsafe example: its F1 is undefined (—), not 0.000."""
    preds = [{"status": s, "p_unsafe": p, "categories": []} for s, p in [("unsafe", 0.9), ("unsafe", 0.8), ("safe", 0.1), ("safe", 0.2)]]
    md = markdown(_report(["unsafe", "safe", "safe", "safe"], preds, sources=["a", "b", "b", "b"]))
    assert "| b | 3 | 0 | — | 0.000 | — | 0.333 | — |" in md
