"""How often run ad's and run ae's kept teachers call the unlabelled pool unsafe, per source, on the pool rows both
judged (README.md): the "-x" students distil on these verdicts.

    mkdir -p /tmp/pools/ad /tmp/pools/ae
    for t in ad ae; do cat runs/teachers/$t/teacher.tgz.* | tar xz -C /tmp/pools/$t default/labelled/pool.jsonl; done
    .venv/bin/python training/runs/2026-12-06-h100-af/pools.py /tmp/pools/ad /tmp/pools/ae"""
import collections
import json
import sys


def pool(folder: str) -> dict[str, dict]:
    rows = (json.loads(line) for line in open(f"{folder}/default/labelled/pool.jsonl", encoding="utf-8"))
    return {json.dumps(r["messages"]): r for r in rows}


ad, ae = pool(sys.argv[1]), pool(sys.argv[2])
shared = ad.keys() & ae.keys()
counts: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0, 0, 0])
for k in shared:
    c = counts[ad[k]["source"].split("/")[0]]
    a, e = ad[k]["label"] != "safe", ae[k]["label"] != "safe"
    c[0] += 1
    c[1] += a
    c[2] += e
    c[3] += a != e
print(f"{len(shared)} rows judged by both (run ad's pool {len(ad)}, run ae's {len(ae)})")
print("| source | rows | unsafe by run ad's teacher | unsafe by run ae's soup | verdicts that differ |")
print("|---|---|---|---|---|")
for src, (n, a, e, d) in sorted(counts.items(), key=lambda kv: -kv[1][0]):
    print(f"| {src} | {n} | {a} | {e} | {d} |")
