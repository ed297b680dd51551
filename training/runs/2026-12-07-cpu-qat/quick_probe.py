"""Quick look before judging: each model's verdicts on the probe tables and on data-x7's plain_child_harm_replies
(train rows, so a fit check, not a score).  python training/runs/2026-12-07-cpu-qat/quick_probe.py DATA MODEL..."""
import json
import sys
from pathlib import Path

from pocketguard.guard import Guard

data, models = Path(sys.argv[1]), sys.argv[2:]
here = Path(__file__).resolve().parents[2]
sets = {p.stem: [json.loads(l) for l in p.open()] for p in sorted(here.glob("probes*.jsonl"))}
sets["plain_child_harm_replies"] = [r for r in map(json.loads, (data / "train.jsonl").open())
                                    if r["source"] == "generated-unsafe/plain_child_harm_replies"]
guards = {m: Guard.load(m) for m in models}
for name, rows in sets.items():
    verdicts = {m: g.moderate_batch([r["messages"] for r in rows], roles=[r["role"] for r in rows], batch_size=16)
                for m, g in guards.items()}
    right = {m: sum(v.status == r["label"] for v, r in zip(vs, rows)) for m, vs in verdicts.items()}
    print(f"{name}: " + ", ".join(f"{m} {right[m]}/{len(rows)}" for m in models))
    for i, r in enumerate(rows):
        ok = [verdicts[m][i].status == r["label"] for m in models]
        if len(set(ok)) > 1 or (name == "probes" and i + 1 in (25, 40)):
            ps = " ".join(f"{verdicts[m][i].p_unsafe:.2f}{'' if k else '✗'}" for m, k in zip(models, ok))
            print(f"  {i + 1:3d} {r['label']:6s} {ps}  {r['messages'][-1]['content'][:90]!r}")
