"""Run ae's soup teacher (CPU, its bf16 weights as kept) over the pool rows of one source that both kept teachers
judged, and how many it flags at each p_unsafe threshold against run ad's teacher's greedy count (README.md):

    mkdir -p /tmp/tae && cat runs/teachers/ae/teacher.tgz.* | tar xz -C /tmp/tae default/teacher/model
    (and /tmp/pools/ad, /tmp/pools/ae as pools.py says)
    .venv/bin/python training/runs/2026-12-06-h100-af/pool_threshold.py davidson    # ~8 minutes on 2 cores"""
import json
import sys

from pocketguard.guard import Guard


def pool(teacher: str) -> dict[str, dict]:
    rows = (json.loads(line) for line in open(f"/tmp/pools/{teacher}/default/labelled/pool.jsonl", encoding="utf-8"))
    return {json.dumps(r["messages"]): r for r in rows}


ad, ae = pool("ad"), pool("ae")
keys = [k for k in ae if k in ad and ae[k]["source"].startswith(sys.argv[1])]
guard = Guard.load("/tmp/tae/default/teacher/model", device="cpu")
p = [v.p_unsafe for v in guard.moderate_batch([ae[k]["messages"] for k in keys], batch_size=64)]
by_ad = [ad[k]["label"] != "safe" for k in keys]
by_ae = [ae[k]["label"] != "safe" for k in keys]
print(f"{len(keys)} rows; unsafe by run ad's teacher {sum(by_ad)}, by run ae's soup (GPU, greedy) {sum(by_ae)}; "
      f"the CPU agrees with the GPU's greedy verdicts on {sum((x >= 0.5) == a for x, a in zip(p, by_ae)) / len(p):.3f}")
print("| threshold | flagged by run ae's soup | agreement with run ad's teacher |")
print("|---|---|---|")
for t in (0.5, 0.4, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05):
    flags = [x >= t for x in p]
    print(f"| {t} | {sum(flags)} | {sum(f == a for f, a in zip(flags, by_ad)) / len(p):.3f} |")
