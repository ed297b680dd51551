"""Training-time policy augmentation: shuffled and partly dropped categories, labels that follow the policy."""

import random

import pytest

from pocketguard.augment import augment
from pocketguard.policy import Policy

UNSAFE = {"label": "unsafe", "categories": ["S2", "S9"]}
SAFE = {"label": "safe", "categories": []}


def test_deterministic_given_rng():
    runs = [augment(UNSAFE, Policy.default(), random.Random(7)) for _ in range(2)]
    assert runs[0] == runs[1]


def test_no_drop_keeps_every_category_and_label_but_shuffles():
    base = Policy.default()
    orders = set()
    for seed in range(20):
        policy, label, cats = augment(UNSAFE, base, random.Random(seed), p_drop=0.0)
        assert sorted(policy.codes, key=base.codes.index) == base.codes
        assert (label, cats) == ("unsafe", ["S2", "S9"])
        orders.add(tuple(policy.codes))
    assert len(orders) > 1


def test_drop_labels_follow_the_prompt_policy():
    base = Policy.default()
    outcomes = set()
    for seed in range(300):
        policy, label, cats = augment(UNSAFE, base, random.Random(seed), p_drop=1.0)
        assert 1 <= len(policy) < len(base)
        kept = [c for c in ["S2", "S9"] if c in policy]
        assert cats == kept  # policy order of the *given* policy, not the shuffled one
        assert label == ("unsafe" if kept else "safe")
        outcomes.add(len(kept))
    assert outcomes == {0, 1, 2}  # all-dropped → safe happens, and so do partial and no loss


def test_safe_stays_safe():
    for seed in range(50):
        policy, label, cats = augment(SAFE, Policy.default(), random.Random(seed))
        assert (label, cats) == ("safe", []) and len(policy) >= 1


def test_custom_policy_and_unknown_codes():
    small = Policy.default().subset(["S1", "S9"])
    policy, label, cats = augment(UNSAFE, small, random.Random(0), p_drop=0.0)
    assert set(policy.codes) == {"S1", "S9"} and (label, cats) == ("unsafe", ["S9"])
    one = Policy.default().subset(["S1"])
    assert augment(UNSAFE, one, random.Random(0), p_drop=1.0) == (one, "safe", [])  # nothing to drop from one


def test_unsafe_without_categories_is_an_error():
    with pytest.raises(ValueError, match="categories"):
        augment({"label": "unsafe", "categories": []}, Policy.default(), random.Random(0))


def test_a_short_list_is_no_sign_of_safe():
    """Whatever the size of the list a dropped-down prompt keeps, an unsafe example keeps what it violates half the
    time. With a uniform random subset a 1-3 category list kept a single violated category 7-21 % of the time, and
    the guard trained so learned "short list means safe" (recall 0.885 -> 0.298 under keep = [S1, S9, S10])."""
    from collections import defaultdict

    base = Policy.default()
    by_size: dict[int, list[bool]] = defaultdict(list)
    for seed in range(6000):
        policy, label, cats = augment({"label": "unsafe", "categories": ["S9"]}, base, random.Random(seed), p_drop=1.0)
        assert label == ("unsafe" if "S9" in policy else "safe") and cats == (["S9"] if "S9" in policy else [])
        by_size[len(policy)].append(label == "unsafe")
    assert sorted(by_size) == list(range(1, len(base)))  # every size of list occurs
    for size, outcomes in by_size.items():
        assert 0.4 < sum(outcomes) / len(outcomes) < 0.6, (size, sum(outcomes) / len(outcomes))
    # an example that violates every category of the policy keeps one (a list cannot be empty)
    small = base.subset(["S1", "S9"])
    for seed in range(20):
        policy, label, cats = augment({"label": "unsafe", "categories": ["S1", "S9"]}, small, random.Random(seed), p_drop=1.0)
        assert len(policy) == 1 and label == "unsafe" and cats == list(policy.codes)


def test_uniform_subsets_make_short_lists_mostly_safe():
    """p_keep=None is Llama Guard's draw: a uniform subset of the drawn size, which lists a single violated code
    with probability size / len(policy) -- the share of unsafe examples turned safe overall matches the fair coin."""
    from collections import defaultdict

    base = Policy.default()
    by_size: dict[int, list[bool]] = defaultdict(list)
    for seed in range(6000):
        policy, label, cats = augment({"label": "unsafe", "categories": ["S9"]}, base, random.Random(seed),
                                      p_drop=1.0, p_keep=None)
        assert label == ("unsafe" if "S9" in policy else "safe") and cats == (["S9"] if "S9" in policy else [])
        by_size[len(policy)].append(label == "unsafe")
    for size, outcomes in by_size.items():
        assert abs(sum(outcomes) / len(outcomes) - size / len(base)) < 0.12, size
    overall = sum(sum(o) for o in by_size.values()) / 6000
    assert 0.45 < overall < 0.55
