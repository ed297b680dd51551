"""Llama Guard's training-time policy augmentation: make the guard read the policy instead of memorising it.

Every example is shown with the policy's categories in a random order and, part of the time, with a random
subset of them left out. A category that is not in the prompt cannot be violated, so an example whose violated
categories were all left out becomes `safe`; the categories it keeps are the ones the prompt still lists.
This is what lets one guard serve custom policies (subsets of S1–S14, extra categories) at inference.
"""

from __future__ import annotations

import random
from collections.abc import Mapping

from pocketguard.policy import Policy


def augment(example: Mapping, policy: Policy, rng: random.Random, p_drop: float = 0.5,
            p_keep: float | None = 0.5) -> tuple[Policy, str, list[str]]:
    """Return (policy for the prompt, label, violated categories) for one labelled example.

    With probability `p_drop` the prompt lists a smaller policy: its size is drawn first (1 to len(policy) - 1),
    then, for an unsafe example, whether the list keeps any of its violated categories: with probability `p_keep`
    whatever the size (a fair coin by default), or, with `p_keep=None`, as a uniform random subset of that size
    happens to (Llama Guard's own augmentation). Both relabel the same share of unsafe examples safe overall (a
    quarter at p_drop 0.5, for one violated code); they differ in how that share depends on the list's size.
    The uniform subset keeps a violated category with probability size / len(policy):
    a list of 3 of the 14 kept it 21 % of the time, so "a short list means safe" was right 79 % of the time, and the
    guard shipped on 2026-12-04, trained so, learned it (harmful asks in S1/S9/S10 under `keep = ["S1", "S9",
    "S10"]`: recall 0.298, against 0.885 under S1-S14; docs/policy.md, *Subsets of the default*). Trained with
    the fair coin (run t, training/runs/2026-12-05-h200-t), the teacher still hedged there (0.308) and the student
    reached 0.553 by flagging short-list harm of any category (half of the left-out ones'), so the runtime judges
    subsets of its own policy by filtering (`Guard._judging`). Categories come back
    in `policy`'s order, not the shuffled one, so targets do not depend on the shuffle. Example categories the
    policy does not have count as dropped.
    """
    categories = list(example.get("categories") or [])
    if example["label"] == "unsafe" and not categories:
        raise ValueError("an unsafe example needs its violated categories to be augmented")
    codes = policy.codes
    if len(codes) > 1 and rng.random() < p_drop:
        size = rng.randint(1, len(codes) - 1)
        if p_keep is None:
            keep = set(rng.sample(codes, size))
        else:
            hit = [c for c in codes if c in categories]
            rest = [c for c in codes if c not in categories]
            if hit and (rng.random() < p_keep or not rest):  # keep some of what it violates (always, if nothing else is left)
                n_hit = rng.randint(max(1, size - len(rest)), min(len(hit), size))
                keep = set(rng.sample(hit, n_hit)) | set(rng.sample(rest, size - n_hit))
            else:  # keep none of it: a list of the other categories only
                keep = set(rng.sample(rest, min(size, len(rest))))
        codes = [c for c in codes if c in keep]
    violated = [c for c in codes if c in categories]
    return policy.subset(codes).shuffled(rng), "unsafe" if violated else "safe", violated
