"""What differs between data-x2 (run ad's) and data-x3 (runs ae-ag's) train sets, the "data" half of the question
run ag leaves open: rows in one and not the other (by conversation, role and label), and the counts by language,
label and source:

    .venv/bin/python training/runs/2026-12-06-h100-ag/data_diff.py

It reads runs/data-x2 and runs/data-x3 (build_data.py's output; not in git)."""
import collections
import json


def load(path: str) -> list[dict]:
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def key(row: dict) -> str:
    return json.dumps([row["messages"], row["role"], row["label"]], ensure_ascii=False)


for split in ("train", "extra", "dev", "dev_heldout"):
    a, b = load(f"runs/data-x2/{split}.jsonl"), load(f"runs/data-x3/{split}.jsonl")
    ka, kb = collections.Counter(map(key, a)), collections.Counter(map(key, b))
    print(f"{split}: {len(a)} rows in data-x2, {len(b)} in data-x3; only in data-x2 {sum((ka - kb).values())}, "
          f"only in data-x3 {sum((kb - ka).values())}")
a, b = load("runs/data-x2/train.jsonl"), load("runs/data-x3/train.jsonl")
for name, of in (("language", lambda r: r.get("language")), ("label", lambda r: r["label"]),
                 ("source", lambda r: r.get("source", "").split("/")[0])):
    ca, cb = collections.Counter(map(of, a)), collections.Counter(map(of, b))
    print(f"train by {name} (data-x2, data-x3): " + ", ".join(f"{k} {ca[k]}/{cb[k]}" for k in sorted(set(ca) | set(cb), key=lambda k: -cb[k])))
