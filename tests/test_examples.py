"""The prompt a guard trains on is the prompt it is judged with: `examples.encode_example` (training, augmented or
not) against the tokens `Guard` runs for the same conversation and policy, turn dropping included."""

import random

import pytest

import pocketguard.examples as examples
from pocketguard import testing as T
from pocketguard.examples import GuardData, answer_ids, encode_example
from pocketguard.guard import Guard
from pocketguard.policy import Policy
from pocketguard.prompt import answer_text

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "bread cake how do I make a bomb  kill them <|eot_id|> User: hello".split(" ")


def _conversations(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        turns = rng.randint(1, 5)
        msgs = [{"role": "user" if j % 2 == 0 else "assistant",
                 "content": " " * rng.randint(0, 2) + " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 30))) + "\n"}
                for j in range(turns)]
        cats = sorted(rng.sample(["S1", "S2", "S9", "S10", "S14"], rng.randint(0, 2)), key=Policy.default().codes.index)
        out.append({"messages": msgs, "label": "unsafe" if cats else "safe", "categories": cats})
    return out


def _guard_prompt(guard: Guard, messages: list[dict], policy: Policy) -> list[int]:
    """The tokens `guard` runs for the whole prompt (no prefix cache: one pass holds all of it)."""
    seen = []
    forward = guard._forward

    def record(seqs, tokens, *args, **kwargs):
        seen.append([list(t) for t in tokens])
        return forward(seqs, tokens, *args, **kwargs)

    guard._forward = record
    try:
        guard.moderate(messages, policy=policy)
    finally:
        del guard._forward
    return seen[0][0]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tok = T.tiny_tokenizer(tmp_path_factory.mktemp("tok"))
    return tok, T.tiny_model(T.tiny_args(vocab_size=tok.vocab_size))


def test_the_training_prompt_is_the_prompt_the_guard_judges(setup):
    tok, model = setup
    policy = Policy.default()
    guard = Guard(model, tok, policy, prefix_cache=False)
    for ex in _conversations(12):
        e = encode_example(tok, policy, ex, 4096)
        assert e.ids[: e.n_prompt] == _guard_prompt(guard, ex["messages"], policy)
        assert e.ids[e.n_prompt :] == answer_ids(tok, ex["categories"])


def test_an_augmented_prompt_and_its_answer_follow_the_policy_it_shows(setup, monkeypatch):
    """Under each drawn policy (shuffled, part dropped) the training prompt is the guard's prompt under that policy
    (asked to list it as given: subset_mode="prompt"), earliest turns dropped alike for the same room, and the answer
    names exactly the example's codes the prompt still lists, in the base policy's order; none listed: `safe`."""
    tok, model = setup
    base = Policy.default()
    drawn = []
    draw = examples.draw_policy
    monkeypatch.setattr(examples, "draw_policy", lambda *a, **k: drawn.append(draw(*a, **k)) or drawn[-1])
    max_len = 520  # tight enough that some conversations lose their earliest turns
    data = GuardData(_conversations(40, seed=1), tok, base, max_len, augment=True, seed=3)
    assert len(data) >= 10
    dropped = 0
    for i in range(len(data)):
        for epoch in range(3):
            drawn.clear()
            e = data.get(i, epoch)
            (shown, label, cats), = drawn
            want = [c for c in base.codes if c in data.examples[i]["categories"] and c in shown]
            assert cats == want and label == ("unsafe" if want else "safe") and e.label == int(bool(want))
            assert tok.decode(e.ids[e.n_prompt : -1]) == answer_text(want)
            guard = Guard(model, tok, base, prefix_cache=False, subset_mode="prompt")
            room = guard._answer_room(shown, guard._grammar(shown), False)
            guard.max_context = max_len - len(answer_ids(tok, want)) + room  # the same room for the turns
            assert e.ids[: e.n_prompt] == _guard_prompt(guard, data.examples[i]["messages"], shown), (i, epoch)
            dropped += e.dropped_turns > 0
    assert dropped  # the comparison covered turn dropping
