"""Fidelity: perplexity, KL divergence and verdict agreement on stand-in models with known logits, and on a
tiny random Transformer."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pocketguard.evaluate.fidelity import kl_divergence, perplexity, verdict_agreement, windows
from pocketguard.model import ModelArgs, Transformer


pytestmark = pytest.mark.usefixtures("one_thread")


class Bigram(nn.Module):
    """logits[b, t] = table[tokens[b, t]]: the next-token distribution depends only on the current token."""

    def __init__(self, table, output_token_ids=None):
        super().__init__()
        self.table = nn.Parameter(torch.as_tensor(table, dtype=torch.float32))
        self.output_token_ids = None if output_token_ids is None else torch.tensor(output_token_ids)

    def forward(self, tokens):
        return self.table[tokens]


class Chars:
    """Digits as token ids; `bos` optional."""

    def __init__(self, bos=None):
        self.specials = {} if bos is None else {"<|begin_of_text|>": bos}

    def encode(self, text):
        return [int(c) for c in text]


def test_windows_score_every_target_once_with_context():
    for n, window, stride in [(2, 4, 2), (10, 4, 2), (11, 4, 3), (100, 16, 8), (7, 100, 50)]:
        ws = windows(n, window, stride)
        targets = [t for s, e, first in ws for t in range(first, e)]
        assert targets == list(range(1, n))
        for s, e, first in ws[1:]:
            assert e - s <= window and first - s >= window - stride
    with pytest.raises(ValueError):
        windows(10, 4, 4)


def test_uniform_model_has_perplexity_vocab_size():
    res = perplexity(Bigram(torch.zeros(5, 5)), Chars(), "0123401234", window=4)
    assert res.perplexity == pytest.approx(5.0) and res.tokens == 9 and res.skipped_tokens == 0


def test_perplexity_by_hand_and_independent_of_windowing():
    p = torch.tensor([[0.5, 0.25, 0.25], [0.1, 0.2, 0.7], [1 / 3, 1 / 3, 1 / 3]])
    model = Bigram(p.log())
    text = "0120210"
    pairs = list(zip(text[:-1], text[1:]))
    hand = math.exp(-sum(math.log(p[int(a), int(b)]) for a, b in pairs) / len(pairs))
    for window, stride in [(3, 1), (4, 2), (64, 32)]:
        assert perplexity(model, Chars(), text, window=window, stride=stride).perplexity == pytest.approx(hand, rel=1e-5)
    # with a BOS token the stream gains one scored target: BOS -> first token
    with_bos = perplexity(model, Chars(bos=2), text)
    assert with_bos.tokens == len(pairs) + 1
    assert with_bos.nll == pytest.approx((-sum(math.log(p[int(a), int(b)]) for a, b in pairs) - math.log(p[2, 0])) / 7)


def test_kl_zero_for_identical_models_and_known_for_uniform():
    p = torch.tensor([0.7, 0.1, 0.1, 0.05, 0.05])
    ref = Bigram(p.log().repeat(5, 1))
    same = kl_divergence(ref, Bigram(p.log().repeat(5, 1)), Chars(), "01234012340")
    assert same.kl_mean == pytest.approx(0, abs=1e-6) and same.kl_max == pytest.approx(0, abs=1e-6)
    assert same.top1_agreement == 1.0 and same.perplexity_ratio == pytest.approx(1.0) and same.compared_vocab == 5
    d = kl_divergence(Bigram(torch.zeros(5, 5)), ref, Chars(), "01234012340")
    expected = float((p * (p.log() - math.log(1 / 5))).sum())  # KL(ref ‖ uniform) = log V − H(p)
    assert d.kl_mean == pytest.approx(expected, rel=1e-5) and d.kl_p99 == pytest.approx(expected, rel=1e-5)
    assert d.model.perplexity == pytest.approx(5.0) and d.tokens == 10
    other = torch.tensor([0.1, 0.6, 0.1, 0.1, 0.1]).log().repeat(5, 1)
    assert kl_divergence(Bigram(other), ref, Chars(), "01234012340").top1_agreement == 0.0


def test_pruned_heads_compare_over_common_kept_tokens_renormalised():
    torch.manual_seed(0)
    full = torch.randn(6, 6)
    ref = Bigram(full)
    keep = [0, 2, 3, 5]
    pruned = Bigram(full[:, keep], output_token_ids=keep)  # the same logits on the kept rows
    d = kl_divergence(pruned, ref, Chars(), "0235023502350")
    assert d.compared_vocab == 4 and d.kl_mean == pytest.approx(0, abs=1e-6) and d.top1_agreement == 1.0
    # the pruned model's perplexity: targets it kept, softmax over its kept rows
    text = "0123450"
    res = perplexity(pruned, Chars(), text)
    pairs = [(int(a), int(b)) for a, b in zip(text[:-1], text[1:]) if int(b) in keep]
    hand = -sum(float(torch.log_softmax(full[a, keep], -1)[keep.index(b)]) for a, b in pairs) / len(pairs)
    assert (res.tokens, res.skipped_tokens) == (4, 2) and res.nll == pytest.approx(hand, rel=1e-5)
    # both pruned, differently: the intersection, each side renormalised over it
    other = Bigram(full[:, [0, 1, 2, 3]], output_token_ids=[0, 1, 2, 3])
    d = kl_divergence(other, pruned, Chars(), "0230230")
    assert d.compared_vocab == 3 and d.kl_mean == pytest.approx(0, abs=1e-6)
    with pytest.raises(ValueError, match="share no vocabulary"):
        kl_divergence(Bigram(full[:, [1]], output_token_ids=[1]), pruned, Chars(), "0230")


def test_perplexity_ratio_of_a_pruned_head_compares_the_common_targets():
    """A head-pruned copy with the very same logits on its kept rows is the reference there: ratio 1. Before, the
    ratio divided its own perplexity (kept targets, softmax over the kept rows) by the reference's (every target,
    full softmax), which said nothing (1.90 for an HF export of a pruned toy artifact against that artifact)."""
    torch.manual_seed(0)
    full = torch.randn(6, 6)
    keep = [0, 2, 3, 5]
    ref, pruned = Bigram(full), Bigram(full[:, keep], output_token_ids=keep)
    text = "0123450235013"
    d = kl_divergence(pruned, ref, Chars(), text)
    assert d.model.perplexity != pytest.approx(d.reference.perplexity)  # their own perplexities differ…
    assert d.perplexity_ratio == pytest.approx(1.0)  # …but on common ground they are the same model
    assert d.common_tokens == sum(int(c) in keep for c in text[1:])
    assert kl_divergence(ref, pruned, Chars(), text).perplexity_ratio == pytest.approx(1.0)
    # a real difference shows, by hand: exp(mean over common targets of NLL_model − NLL_ref), softmax over common
    other = Bigram(full + torch.randn(6, 6))
    d = kl_divergence(other, pruned, Chars(), text)
    pairs = [(int(a), int(b)) for a, b in zip(text[:-1], text[1:]) if int(b) in keep]
    nll = lambda t: -sum(float(torch.log_softmax(t[a, keep], -1)[keep.index(b)]) for a, b in pairs) / len(pairs)  # noqa: E731
    assert d.perplexity_ratio == pytest.approx(math.exp(nll(other.table.detach()) - nll(full)), rel=1e-5)


def tiny(seed, **over):
    args = ModelArgs(dim=32, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=10, ffn_dims=48, max_seq_len=128, **over)
    return Transformer(args).init_weights(std=0.5, seed=seed).eval()


def test_real_transformer_single_window_matches_direct_cross_entropy():
    model = tiny(0)
    text = "0123456789" * 10
    ids = [int(c) for c in text]
    with torch.no_grad():
        logits = model(torch.tensor([ids]))[0]
    direct = F.cross_entropy(logits[:-1], torch.tensor(ids[1:])).item()
    # one window of 100 tokens, scored in blocks of 64 + 35 positions
    assert perplexity(model, Chars(), text, window=128).nll == pytest.approx(direct, rel=1e-5)
    windowed = perplexity(model, Chars(), text, window=8, stride=4)
    assert windowed.tokens == len(ids) - 1 and windowed.perplexity > 1


def test_real_transformer_kl_and_pruned_head():
    ref = tiny(0)
    assert kl_divergence(ref, ref, Chars(), "0123456789" * 4, window=16).kl_max == pytest.approx(0, abs=1e-6)
    noisy = tiny(0)
    with torch.no_grad():
        for p in noisy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    d = kl_divergence(noisy, ref, Chars(), "0123456789" * 4, window=16)
    assert d.kl_mean > 0 and d.kl_p99 <= d.kl_max and 0 <= d.top1_agreement <= 1
    keep = [0, 1, 2, 5, 9]
    pruned = tiny(0, output_token_ids=keep)
    state = ref.state_dict() | {"output.weight": ref.state_dict()["output.weight"][keep]}
    pruned.load_state_dict(state)
    d = kl_divergence(pruned, ref, Chars(), "0125901259", window=16)
    assert d.compared_vocab == 5 and d.kl_max == pytest.approx(0, abs=1e-5)


def test_verdict_agreement_by_hand():
    ref = [{"status": "safe", "p_unsafe": 0.1, "categories": []}, {"status": "unsafe", "p_unsafe": 0.9, "categories": ["S1"]},
           {"status": "unsafe", "p_unsafe": 0.8, "categories": ["S1"]}, {"status": "safe", "p_unsafe": 0.3, "categories": []}]
    got = [{"status": "safe", "p_unsafe": 0.2, "categories": []}, {"status": "unsafe", "p_unsafe": 0.7, "categories": ["S10"]},
           {"status": "safe", "p_unsafe": 0.4, "categories": []}, {"status": "error", "p_unsafe": None, "categories": []}]
    a = verdict_agreement(got, ref)
    assert a["flagged"] == 0.5 and a["exact"] == 0.25 and (a["flips_to_flagged"], a["flips_to_safe"]) == (1, 1)
    assert a["mean_abs_dp_unsafe"] == pytest.approx((0.1 + 0.2 + 0.4) / 3)
    assert a["kappa"] == pytest.approx(0.0)  # 50% observed agreement, 50% expected by chance
    assert verdict_agreement(ref, ref)["kappa"] == 1.0


def test_verdict_agreement_exact_counts_a_non_finite_p_unsafe_as_a_failure():
    # a "safe" verdict with p_unsafe NaN is a failure to judge (flagged): it is not the reference's safe verdict
    ref = [{"status": "safe", "p_unsafe": 0.1, "categories": []}, {"status": "unsafe", "p_unsafe": 0.9, "categories": ["S1"]}]
    got = [{"status": "safe", "p_unsafe": float("nan"), "categories": []},
           {"status": "unsafe", "p_unsafe": float("inf"), "categories": ["S1"]}]
    a = verdict_agreement(got, ref)
    assert a["flagged"] == 0.5 and a["flips_to_flagged"] == 1
    assert a["exact"] == 0.0  # neither is the reference's verdict: both are failures to judge
    both_failed = [{"status": "error", "p_unsafe": None, "categories": []}, {"status": "error", "p_unsafe": None, "categories": []}]
    assert verdict_agreement(got, both_failed)["exact"] == 1.0  # failures alike on both sides
