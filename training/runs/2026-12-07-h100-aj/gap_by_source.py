"""Errors per dev source: run ah's teacher (GPU) against the three seeds of the shipped recipe (CPU, int4).

    .venv/bin/python training/runs/2026-12-07-h100-aj/gap_by_source.py

Reads the eval predictions of runs ai and aj (ignored folders of this checkout), joined to dev.jsonl's rows by line."""
import collections
import json

DEV = "runs/data-x5/dev.jsonl"
COLS = {"teacher": "runs/ai/default/eval/dev-cuda", "s0": "runs/ai/default/eval/dev-cpu-b22-f1536-e4-hxv-t2-l2",
        "s1": "runs/aj/default/eval/dev-cpu-b22-f1536-e4-hxv-t2-l2-s1",
        "s2": "runs/aj/default/eval/dev-cpu-b22-f1536-e4-hxv-t2-l2-s2"}


def statuses(folder: str) -> dict[int, str]:
    with open(f"{folder}/predictions/00-model.jsonl", encoding="utf-8") as f:
        return {r["line"]: r["verdict"]["status"] for r in map(json.loads, f)}


def main() -> None:
    pred = {k: statuses(v) for k, v in COLS.items()}
    wrong: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    with open(DEV, encoding="utf-8") as f:
        for line, ex in enumerate(map(json.loads, f), 1):
            w = wrong[ex["source"]]
            w["n"] += 1
            for k in COLS:
                w[k] += pred[k][line] != ex["label"]
    gap = lambda w: sum(w[k] for k in COLS if k != "teacher") - (len(COLS) - 1) * w["teacher"]  # noqa: E731
    print("| dev source | n | " + " | ".join(COLS) + " |\n|---|---|" + "---|" * len(COLS))
    for src, w in sorted(wrong.items(), key=lambda kv: -gap(kv[1]))[:10]:
        print(f"| {src} | {w['n']} | " + " | ".join(str(w[k]) for k in COLS) + " |")


if __name__ == "__main__":
    main()
