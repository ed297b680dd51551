"""Held-out F1 and AUPRC (greedy, p_unsafe > 1/2) of the three seeds of the t2 student from run ae's soup teacher,
their soup, run ad's t2 and the shipped guard, and the paired differences between each two (README.md):

    .venv/bin/python training/runs/2026-12-06-h100-af/seeds.py

It reads the CPU eval predictions that `default_guard.py judge` (and `pocketguard eval` for the soup) left under runs/."""
import glob
import itertools
import json

import numpy as np

from pocketguard.evaluate.metrics import binary_metrics, paired_difference

RUNS = {"s0": "runs/ae/default/eval/dev_heldout-cpu-b22-f1536-e4-hxv-t2",
        "s1": "runs/af/default/eval/dev_heldout-cpu-b22-f1536-e4-hxv-t2-s1",
        "s2": "runs/af/default/eval/dev_heldout-cpu-b22-f1536-e4-hxv-t2-s2",
        "soup3": "runs/af/soup3-heldout",
        "ad-t2": "runs/ad/default/eval/dev_heldout-cpu-b22-f1536-e4-hxv-t2",
        "shipped": "runs/b4/eval/dev_heldout-cpu"}


def load(folder: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [json.loads(line) for line in open(glob.glob(folder + "/predictions/00-*.jsonl")[0])]
    return np.array([r["label"] != "safe" for r in rows]), np.array([r["verdict"]["p_unsafe"] for r in rows])


data = {k: load(v) for k, v in RUNS.items()}
for k, (y, p) in data.items():
    m = binary_metrics(y, p > 0.5, p)
    print(k, {a: round(m[a], 3) for a in ("f1", "auprc", "recall", "fpr")})
for a, b in itertools.combinations(data, 2):
    (ya, pa), (yb, pb) = data[a], data[b]
    assert (ya == yb).all()
    d = paired_difference(ya, (pa > 0.5, pa), (pb > 0.5, pb))
    print(f"{a} - {b}: ΔF1 {d['f1']:+.3f} [{d['f1_interval'][0]:+.3f}, {d['f1_interval'][1]:+.3f}], "
          f"ΔAUPRC {d['auprc']:+.3f} [{d['auprc_interval'][0]:+.3f}, {d['auprc_interval'][1]:+.3f}]")
