"""The kept teacher (run ah's) and the shipped guard on data-x7's 150 new train rows (plain_child_harm_replies), and
the rows the teacher gets wrong.  python training/runs/2026-12-07-cpu-qlora/teacher_on_new_rows.py runs/data-x7 TEACHER
(TEACHER: the unpacked kept teacher, e.g. /tmp/teacher/default/teacher/model from runs/teachers/ah/teacher.tgz.*)"""
import json
import statistics
import sys
from pathlib import Path

from pocketguard import Guard

data, teacher = Path(sys.argv[1]), sys.argv[2]
rows = [r for r in map(json.loads, (data / "train.jsonl").open()) if r["source"].endswith("plain_child_harm_replies")]
for name, path in (("teacher", teacher), ("shipped", None)):
    vs = Guard.load(path).moderate_batch([r["messages"] for r in rows])
    for label in ("unsafe", "safe"):
        ps = [v.p_unsafe for r, v in zip(rows, vs) if r["label"] == label]
        wrong = sum((p >= 0.5) != (label == "unsafe") for p in ps)
        print(f"{name}: {label} {len(ps)}, median p_unsafe {statistics.median(ps):.2f}, wrong at 0.5: {wrong}")
    if name == "teacher":
        for r, v in zip(rows, vs):
            if (v.p_unsafe >= 0.5) != (r["label"] == "unsafe"):
                print(f"  {r['label']} {v.p_unsafe:.2f} | {r['messages'][-1]['content'][:100]}")
