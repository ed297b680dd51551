"""Would judging each sentence of the judged user message on its own (worst of whole + sentences) close the
recency hole, and at what false-positive cost? Shipped guard, CPU."""
import json
import re
import time

from pocketguard.guard import Guard

g = Guard.load()
SENT = re.compile(r"(?<=[.?!])\s+|\n+")

def parts(text):
    ps = [p.strip() for p in SENT.split(text) if p.strip()]
    return ps if 1 < len(ps) <= 8 else []

def run(rows, name):
    t0 = time.time()
    whole = g.moderate_batch([r["messages"] for r in rows])
    extra_idx, extra = [], []
    for i, r in enumerate(rows):
        for p in parts(r["messages"][-1]["content"]):
            extra_idx.append(i)
            extra.append(r["messages"][:-1] + [{"role": "user", "content": p}])
    ev = g.moderate_batch(extra) if extra else []
    split_flag = [w.status != "safe" for w in whole]
    for i, v in zip(extra_idx, ev):
        split_flag[i] = split_flag[i] or v.status != "safe"
    by = {}
    for r, w, s in zip(rows, whole, split_flag):
        k = (r.get("source", "").split("/")[-1] if name == "positions" else name, r["label"])
        a = by.setdefault(k, [0, 0, 0])
        a[0], a[1], a[2] = a[0] + 1, a[1] + (w.status != "safe"), a[2] + s
    for k, (n, fw, fs) in sorted(by.items()):
        print(f"{name:10} {k[0]:14} {k[1]:6} n={n:4} flagged whole {fw:4} ({fw/n:.3f})  whole+sentences {fs:4} ({fs/n:.3f})", flush=True)
    print(f"  {len(extra)} extra prompts, {time.time()-t0:.0f}s", flush=True)

def load(p):
    return [json.loads(line) for line in open(p)]



run([r for r in load("training/probes-blind6.jsonl")], "blind6")
run([r for r in load("runs/data-x4/positions.jsonl")], "positions")
dh = [r for r in load("runs/data-x4/dev_heldout.jsonl") if r.get("source") == "alpaca-seed-tasks"]
run(dh, "alpaca")
dev = [r for r in load("runs/data-x4/dev.jsonl") if r.get("lookalike") and r.get("role", "user") == "user" and len(r["messages"]) == 1]
run(dev, "lookalike")
