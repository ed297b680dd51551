"""Would judging the judged message without its last sentence (`last`), or every proper prefix of it by sentence
(`all`), close the recency hole at less false-positive cost than judging sentences alone? Shipped guard, CPU;
run from the repository root: `python prefixes.py last`, `python prefixes.py all`."""
import json
import re
import sys
import time

from pocketguard.guard import Guard

g = Guard.load()
SENT = re.compile(r"(?<=[.?!])\s+|\n+")
MODE = sys.argv[1]

def parts(text):
    spans = [m.end() for m in SENT.finditer(text) if m.end() < len(text.rstrip())]
    cuts = [text[:e].strip() for e in spans if text[:e].strip()]
    if not cuts or len(cuts) > 8:
        return []
    return cuts[-1:] if MODE == "last" else cuts

def run(rows, name):
    t0 = time.time()
    whole = g.moderate_batch([r["messages"] for r in rows])
    extra_idx, extra = [], []
    for i, r in enumerate(rows):
        for p in parts(r["messages"][-1]["content"]):
            extra_idx.append(i)
            extra.append(r["messages"][:-1] + [{"role": r["messages"][-1]["role"], "content": p}])
    ev = g.moderate_batch(extra) if extra else []
    flag = [w.status != "safe" for w in whole]
    for i, v in zip(extra_idx, ev):
        flag[i] = flag[i] or v.status != "safe"
    by = {}
    for r, w, s in zip(rows, whole, flag):
        k = (r.get("source", "").split("/")[-1] if name == "positions" else name, r["label"])
        a = by.setdefault(k, [0, 0, 0])
        a[0], a[1], a[2] = a[0] + 1, a[1] + (w.status != "safe"), a[2] + s
    for k, (n, fw, fs) in sorted(by.items()):
        print(f"{MODE:5} {name:10} {k[0]:14} {k[1]:6} n={n:4} whole {fw:4} ({fw/n:.3f})  +prefixes {fs:4} ({fs/n:.3f})", flush=True)
    print(f"  {len(extra)} extra prompts, {time.time()-t0:.0f}s", flush=True)

def load(p):
    return [json.loads(line) for line in open(p)]


run(load("training/probes-blind6.jsonl"), "blind6")
run([r for r in load("runs/data-x4/dev_heldout.jsonl") if r.get("source") == "alpaca-seed-tasks"], "alpaca")
run([r for r in load("runs/data-x4/dev.jsonl") if r.get("lookalike") and r.get("role", "user") == "user" and len(r["messages"]) == 1], "lookalike")
run(load("runs/data-x4/positions.jsonl"), "positions")
