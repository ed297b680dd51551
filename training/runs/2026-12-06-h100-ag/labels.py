"""Held-out F1 (greedy, p_unsafe > 1/2, and at each student's calibrated threshold), AUPRC and ConvAbuse recall of
the t2 students that run ae's soup teacher made from its pool labelled greedily (runs ae and af, seeds 0 and 1)
and at p_unsafe >= 0.2 (run ag, seeds 0 and 1), with paired differences between the students of one seed:

    .venv/bin/python training/runs/2026-12-06-h100-ag/labels.py

It reads the CPU eval predictions and guard.json thresholds that `default_guard.py judge` left under runs/."""
import glob
import json

import numpy as np

from pocketguard.evaluate.metrics import binary_metrics, paired_difference

RUNS = {"greedy s0": ("runs/ae/default", "b22-f1536-e4-hxv-t2"),
        "greedy s1": ("runs/af/default", "b22-f1536-e4-hxv-t2-s1"),
        "p>=0.2 s0": ("runs/ag/default", "b22-f1536-e4-hxv-t2"),
        "p>=0.2 s1": ("runs/ag/default", "b22-f1536-e4-hxv-t2-s1"),
        "ad-t2": ("runs/ad/default", "b22-f1536-e4-hxv-t2")}


def load(run: str, shape: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    folder = f"{run}/eval/dev_heldout-cpu-{shape}"
    rows = [json.loads(line) for line in open(glob.glob(folder + "/predictions/00-*.jsonl")[0])]
    threshold = json.load(open(f"{run}/students/{shape}/model/guard.json")).get("threshold", 0.5)
    return (np.array([r["label"] != "safe" for r in rows]), np.array([r["verdict"]["p_unsafe"] for r in rows]),
            np.array([SOURCES[r["line"] - 1] == "convabuse" for r in rows]), threshold)


SOURCES = [json.loads(line).get("source", "").split("/")[0] for line in open("runs/data-x3/dev_heldout.jsonl")]
data = {k: load(*v) for k, v in RUNS.items()}
print("| student | held-out F1 greedy | at its threshold | AUPRC | ConvAbuse recall greedy / at threshold | held-out FPR greedy |")
print("|---|---|---|---|---|---|")
for k, (y, p, abuse, t) in data.items():
    g, c = binary_metrics(y, p > 0.5, p), binary_metrics(y, p >= t, p)
    ra, rt = binary_metrics(y[abuse], p[abuse] > 0.5)["recall"], binary_metrics(y[abuse], p[abuse] >= t)["recall"]
    print(f"| {k} | {g['f1']:.3f} | {c['f1']:.3f} ({t}) | {g['auprc']:.3f} | {ra:.3f} / {rt:.3f} | {g['fpr']:.3f} |")
for a, b in [("p>=0.2 s0", "greedy s0"), ("p>=0.2 s1", "greedy s1"), ("p>=0.2 s0", "ad-t2"), ("p>=0.2 s1", "ad-t2")]:
    (ya, pa, _, ta), (yb, pb, _, tb) = data[a], data[b]
    assert (ya == yb).all()
    for name, (va, vb) in {"greedy": (pa > 0.5, pb > 0.5), "thresholds": (pa >= ta, pb >= tb)}.items():
        d = paired_difference(ya, (va, pa), (vb, pb))
        print(f"{a} - {b} ({name}): ΔF1 {d['f1']:+.3f} [{d['f1_interval'][0]:+.3f}, {d['f1_interval'][1]:+.3f}], "
              f"ΔAUPRC {d['auprc']:+.3f} [{d['auprc_interval'][0]:+.3f}, {d['auprc_interval'][1]:+.3f}]")
