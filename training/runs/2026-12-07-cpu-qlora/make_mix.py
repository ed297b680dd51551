"""The 600 training rows of this record: data-x7's three story-reply sources whole (330 rows: the 150 new
plain_child_harm_replies with their safe twins, story_harm_replies, story_harm_more_replies) and 270 other train rows
drawn at random (seed 0), shuffled (seed 1).  python training/runs/2026-12-07-cpu-qlora/make_mix.py runs/data-x7 runs/cpu-qlora
An optional third argument sets the total (training/runs/2026-12-07-cpu-qat: 1200, the same 330 and 870 others)."""
import json
import random
import sys
from pathlib import Path

FOCUS = {"generated-unsafe/plain_child_harm_replies", "generated-unsafe/story_harm_replies",
         "generated-unsafe/story_harm_more_replies"}
data, out = Path(sys.argv[1]), Path(sys.argv[2])
total = int(sys.argv[3]) if len(sys.argv) > 3 else 600
rows = [json.loads(line) for line in (data / "train.jsonl").open()]
focus = [r for r in rows if r["source"] in FOCUS]
rest = [r for r in rows if r["source"] not in FOCUS]
random.Random(0).shuffle(rest)
mix = focus + rest[:total - len(focus)]
random.Random(1).shuffle(mix)
out.mkdir(parents=True, exist_ok=True)
(out / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in mix))
