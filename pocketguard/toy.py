"""Toy guard data for tests and smoke runs: trigger-word examples and a tokenizer that makes them cheap."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Iterable

from .policy import Policy
from .tokenizer import Tokenizer


TOY_TRIGGERS = {"bomb": "S9", "explosive": "S9", "kill": "S1", "stab": "S1", "hate": "S10", "slur": "S10"}
TOY_WORDS = ("bread cake recipe the of and to a how do I make world hello garden music river walk cook soup "
             "paint learn book train city green small happy water dog cat").split()


def toy_examples(n: int, seed: int = 0, agent_fraction: float = 0.2) -> list[dict]:
    """Synthetic guard data for tests and smoke runs: an example is unsafe exactly when its judged message
    contains a trigger word (bomb/explosive → S9, kill/stab → S1, hate/slur → S10). Use with
    `Policy.default().subset(["S1", "S9", "S10"])`."""
    rng = random.Random(seed)
    order = ["S1", "S9", "S10"]
    out = []
    triggers = list(TOY_TRIGGERS)
    for _ in range(n):
        words = [rng.choice(TOY_WORDS) for _ in range(rng.randint(4, 10))]
        cats: set[str] = set()
        if rng.random() < 0.5:
            for _ in range(1 if rng.random() < 0.85 else 2):
                t = rng.choice(triggers)
                words.insert(rng.randint(0, len(words)), t)
                cats.add(TOY_TRIGGERS[t])
        text = " ".join(words)
        if rng.random() < agent_fraction:
            prompt = " ".join(rng.choice(TOY_WORDS) for _ in range(rng.randint(3, 6)))
            messages = [{"role": "user", "content": prompt}, {"role": "assistant", "content": text}]
            role = "agent"
        else:
            messages, role = [{"role": "user", "content": text}], "user"
        codes = [c for c in order if c in cats]
        out.append({"messages": messages, "role": role, "label": "unsafe" if codes else "safe",
                    "categories": codes, "language": "en", "source": "toy"})
    return out


def toy_tokenizer(directory: str | Path, policy: Policy | None = None, words: Iterable[str] = ()) -> Tokenizer:
    """A byte-level BPE for toy runs whose Llama Guard template lines are single tokens.

    With the real (or the tiny test) tokenizer a guard prompt is 130–400 tokens of fixed template around a
    ten-word conversation; here it is ~40, which makes toy training ~4× cheaper per step and the
    trigger-word task learnable in ~100 steps. Content words (`TOY_WORDS`, triggers, `words`) are single
    tokens; answers tokenize as `unsafe` `\n` `S9` `,` `S10`. Written to `directory/tokenizer.json`.
    """
    import re

    from tokenizers import Regex, decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as _Tok

    from .prompt import prefix_text, suffix_text
    from .tokenizer import LLAMA3_SPECIAL_TOKENS, HFTokenizer

    policy = policy or Policy.default().subset(["S1", "S9", "S10"])
    phrases = {"User: ", "Agent: "}
    for role in ("user", "agent"):
        for text in (prefix_text(policy, role), suffix_text(role)):
            phrases.update(line for line in text.split("\n") if line)
    alternatives = "|".join(re.escape(x) for x in sorted(phrases, key=len, reverse=True))
    tok = _Tok(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(alternatives + r"|\n+|,|[A-Z][0-9]+| ?[A-Za-z]+|\s|\S"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    vocab = list(TOY_WORDS) + list(TOY_TRIGGERS) + list(words)
    corpus = sorted(phrases) + [" " + w for w in vocab] + vocab + ["safe", "unsafe", ",", "user", "assistant", "\n\n", "\n"]
    corpus += policy.codes
    trainer = trainers.BpeTrainer(vocab_size=8000, min_frequency=1, special_tokens=LLAMA3_SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(corpus, trainer)
    path = Path(directory) / "tokenizer.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    return HFTokenizer(path)
