"""How many of data-x7's train rows the kept teacher's verdict gets wrong (the rows `distill_where_teacher_right`
trains on CE alone), estimated on a random sample (seed 0; the teacher runs ~3 rows/s on this CPU).
python training/runs/2026-12-07-cpu-qlora/teacher_on_train_sample.py runs/data-x7 TEACHER N"""
import json
import random
import sys
from collections import Counter
from pathlib import Path

from pocketguard import Guard

data, teacher, n = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
rows = [json.loads(line) for line in (data / "train.jsonl").open()]
sample = random.Random(0).sample(rows, n)
vs = Guard.load(teacher).moderate_batch([r["messages"] for r in sample])
wrong = [r for r, v in zip(sample, vs) if v.status != r["label"]]
print(f"{len(wrong)} of {n} wrong ({len(wrong) / n:.1%}; of {len(rows):,} train rows ≈ {len(wrong) / n * len(rows):,.0f})")
print("by label:", dict(Counter(r["label"] for r in wrong)), "by source:", dict(Counter(r["source"] for r in wrong).most_common(8)))
