"""The polish's training rows (run from runs/polish/): the seven new tables' train rows, 400 other generated-table
rows and 700 others of the new build's train.jsonl, seeded."""
import json
import random

NEW = ("science_history", "everyday_tasks_with_context", "body_and_relationship_talks", "story_harm_replies",
       "person_lookup_replies", "urgent_symptom_replies", "named_worker_replies")
DERIVED = ("in-long-text", "in-dialogue", "compliance", "after-harm")


def family(row: dict) -> str:
    return row["source"].split("/")[1] if "/" in row["source"] else ""


def generated(row: dict) -> bool:
    return row["source"].startswith(("generated-benign/", "generated-unsafe/")) and family(row) not in DERIVED


rows = [json.loads(line) for line in open("../data-t/train.jsonl")]
new = [r for r in rows if family(r) in NEW]
gen = [r for r in rows if family(r) not in NEW and generated(r)]
rest = [r for r in rows if family(r) not in NEW and not generated(r)]
rng = random.Random(0)
mix = new + rng.sample(gen, 400) + rng.sample(rest, 700)
rng.shuffle(mix)
print(len(new), len(gen), len(rest), "mix", len(mix), "unsafe", sum(r["label"] == "unsafe" for r in mix))
with open("train.jsonl", "w") as f:
    for r in mix:
        f.write(json.dumps(r, ensure_ascii=False) + "\n")
