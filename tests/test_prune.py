"""Structured pruning: block scores find a planted do-nothing block, zeroed MLP neurons go first and leave the
logits unchanged, a pruned head/embedding reproduces the full model on the tokens it keeps."""

import warnings

import pytest
import torch

from pocketguard import testing as T
from pocketguard.compress.prune import (
    check_output_policy,
    guard_output_token_ids,
    prune_blocks,
    prune_input,
    prune_mlp,
    prune_output,
    score_blocks,
    score_mlp,
)
from pocketguard.conversation import Conversation
from pocketguard.guard import Guard
from pocketguard.policy import Category, Policy
from pocketguard.prompt import encode_prompt
from pocketguard.examples import calibration_batches
from pocketguard.toy import toy_examples


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def calib(tiny_tok):
    policy = Policy.default().subset(["S1", "S9", "S10"])
    return calibration_batches(toy_examples(12, seed=3), tiny_tok, policy, n=12, batch_size=4)


def _model(tok, seed=0, std=0.02, **over):
    return T.tiny_model(T.tiny_args(vocab_size=tok.vocab_size, **over), seed=seed, std=std)


def _identity(model, i):
    """Make block i do nothing: zero attention output and MLP down projections (h + 0 + 0 = h exactly)."""
    with torch.no_grad():
        model.layers[i].attention.wo.weight.zero_()
        model.layers[i].feed_forward.w2.weight.zero_()


def _logits(model, batches):
    with torch.no_grad():
        return [model(b.tokens, valid=b.valid) for b in batches]


@pytest.mark.parametrize("method", ["cosine", "kl"])
def test_block_scores_pick_the_planted_identity_block(tiny_tok, calib, method):
    model = _model(tiny_tok, n_layers=4)
    _identity(model, 2)
    scores = score_blocks(model, calib, method)
    assert scores[2] == pytest.approx(0.0, abs=1e-7) and min(s for i, s in enumerate(scores) if i != 2) > 1e-5
    pruned, report = prune_blocks(model, 3, calib, method=method)
    assert report.removed == [2] and report.kept == [0, 1, 3]
    assert pruned.args.n_layers == 3 and pruned.args.extra["kept_blocks"] == [0, 1, 3]
    assert report.params_after < report.params_before
    # dropping a block that adds exactly zero changes nothing, bit for bit
    for a, b in zip(_logits(model, calib), _logits(pruned, calib)):
        assert torch.equal(a, b)
    assert model.args.n_layers == 4 and len(model.layers) == 4  # input untouched


def test_loss_scoring_and_iterative_removal(tiny_tok, calib):
    # Strong random blocks and a sharpened head whose own argmax is the target: skipping a real block
    # raises the loss a lot, skipping a planted identity block raises it by exactly 0.
    model = _model(tiny_tok, n_layers=4, std=0.3, seed=1)
    with torch.no_grad():
        model.output.weight.mul_(30)
    _identity(model, 1)
    _identity(model, 3)
    targets = []
    for b, logits in zip(calib, _logits(model, calib)):
        targets.append(type(b)(b.tokens, b.valid, torch.where(b.valid, logits.argmax(-1), -100), b.first, b.labels))
    scores = score_blocks(model, targets, "loss")
    assert scores[1] == pytest.approx(0, abs=1e-6) and scores[3] == pytest.approx(0, abs=1e-6)
    assert min(scores[0], scores[2]) > 1e-2
    pruned, report = prune_blocks(model, 2, targets, method="loss", iterative=True)
    assert report.removed == [1, 3] and pruned.args.extra["kept_blocks"] == [0, 2]
    # provenance composes: pruning the pruned model again reports indices of the original
    again, _ = prune_blocks(pruned, 1, calib, method="cosine")
    assert again.args.extra["kept_blocks"][0] in (0, 2) and len(again.args.extra["compression"]) == 2


def test_mlp_pruning_drops_zeroed_neurons_and_keeps_logits(tiny_tok, calib):
    model = _model(tiny_tok, ffn_dims=128).double()
    gen = torch.Generator().manual_seed(0)
    dead = []
    with torch.no_grad():
        for i, layer in enumerate(model.layers):
            idx = torch.randperm(128, generator=gen)[:32]
            dead.append(set(idx.tolist()))
            # layer 0: zero down-projection columns; layer 1: zero gate rows (silu(0)·up = 0)
            if i == 0:
                layer.feed_forward.w2.weight[:, idx] = 0
            else:
                layer.feed_forward.w1.weight[idx] = 0
    calib64 = [type(b)(b.tokens, b.valid, b.targets, b.first, b.labels) for b in calib]
    pruned, report = prune_mlp(model, 96, calib64)
    assert pruned.args.ffn_dims == [96, 96] and report.kept == [96, 96]
    for i, layer in enumerate(pruned.layers):
        w1 = layer.feed_forward.w1.weight
        # kept neurons are exactly the live ones, in their original order
        live = sorted(set(range(128)) - dead[i])
        assert torch.equal(w1, model.layers[i].feed_forward.w1.weight[live])
    for a, b in zip(_logits(model, calib64), _logits(pruned, calib64)):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


def test_mlp_global_budget_moves_width_to_the_layer_that_needs_it(tiny_tok, calib):
    model = _model(tiny_tok, ffn_dims=128)
    with torch.no_grad():
        model.layers[0].feed_forward.w2.weight[:, 96:] = 0  # layer 0 has 96 live neurons
        model.layers[1].feed_forward.w2.weight[:, 64:] = 0  # layer 1 has 64
    pruned, report = prune_mlp(model, 80, calib, budget="global")  # 160 in total = all live neurons
    assert pruned.args.ffn_dims == [96, 64]
    for a, b in zip(_logits(model, calib), _logits(pruned, calib)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    rounded, _ = prune_mlp(model, 80, calib, budget="global", multiple_of=32)
    assert all(w % 32 == 0 for w in rounded.args.ffn_dims)
    with pytest.raises(ValueError, match="entries"):
        prune_mlp(model, [64], calib)


def _answer_ids(tok, text):
    return tok.encode(text) + [tok.special("<|eot_id|>")]


def test_output_pruning_keeps_every_answer_token_and_their_logits(tiny_tok):
    policy = Policy.default()
    model = _model(tiny_tok)
    keep = guard_output_token_ids(tiny_tok, policy)
    for text in ["safe", "unsafe\nS1", "unsafe\nS1,S10", "unsafe\nS14,S2,S9", "\n", ","]:
        assert set(_answer_ids(tiny_tok, text)) <= set(keep), text
    assert tiny_tok.special("<|end_of_text|>") in keep
    pruned = prune_output(model, tiny_tok, policy)
    assert pruned.args.output_token_ids == keep and pruned.output.weight.shape[0] == len(keep) < 120
    tokens = torch.tensor([encode_prompt(tiny_tok, policy, Conversation.prompt("how do I make a bomb")).ids])
    with torch.no_grad():
        full, small = model(tokens), pruned(tokens)
    torch.testing.assert_close(small, full[..., keep], rtol=0, atol=1e-6)
    # the guard works on the pruned head and scores p_unsafe exactly as on the full one
    a, b = Guard(model, tiny_tok).moderate("how do I make a bomb"), Guard(pruned, tiny_tok).moderate("how do I make a bomb")
    assert b.status in ("safe", "unsafe") and b.p_unsafe == pytest.approx(a.p_unsafe, abs=1e-6)


def test_output_pruning_covers_custom_codes_and_warns_on_policy_change(tiny_tok):
    custom = Policy((Category("X1", "Medical misinformation"), Category("QZ7", "Spoilers"), Category("S9", "Weapons")))
    pruned = prune_output(_model(tiny_tok), tiny_tok, custom)
    for text in ["unsafe\nX1", "unsafe\nQZ7,X1", "unsafe\nS9,QZ7", "QZ7"]:
        assert set(_answer_ids(tiny_tok, text)) <= set(pruned.args.output_token_ids), text
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_output_policy(pruned, tiny_tok, custom)
    with pytest.warns(UserWarning, match="pruned for policy codes"):
        assert not check_output_policy(pruned, tiny_tok, Policy.default())
    with pytest.raises(ValueError, match="already lacks"):
        prune_output(pruned, tiny_tok, Policy.default())


def test_tied_embeddings_are_untied_before_pruning(tiny_tok):
    model = _model(tiny_tok, tie_embeddings=True)
    pruned = prune_output(model, tiny_tok, Policy.default())
    assert not pruned.args.tie_embeddings and pruned.output.weight.data_ptr() != pruned.tok_embeddings.weight.data_ptr()
    keep = pruned.args.output_token_ids
    assert torch.equal(pruned.output.weight, model.tok_embeddings.weight[keep])
    assert torch.equal(pruned.tok_embeddings.weight, model.tok_embeddings.weight)


def test_input_pruning_reads_the_fallback_row_for_unseen_ids(tiny_tok):
    policy = Policy.default()
    model = _model(tiny_tok)
    ids = encode_prompt(tiny_tok, policy, Conversation.prompt("hello world")).ids
    fallback = tiny_tok.special("<|reserved_special_token_0|>")
    pruned = prune_input(model, set(ids), fallback)
    assert pruned.tok_embeddings.weight.shape[0] == len(set(ids) | {fallback})
    with torch.no_grad():
        torch.testing.assert_close(pruned(torch.tensor([ids])), model(torch.tensor([ids])), rtol=0, atol=0)
        unseen = next(i for i in range(tiny_tok.vocab_size) if i not in set(ids) | {fallback})
        a = pruned(torch.tensor([ids[:5] + [unseen]]))
        b = model(torch.tensor([ids[:5] + [fallback]]))
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_pruned_shapes_round_trip_through_a_checkpoint(tiny_tok, calib, tmp_path):
    from pocketguard import checkpoint

    model = _model(tiny_tok, n_layers=3)
    model, _ = prune_blocks(model, 2, calib)
    model, _ = prune_mlp(model, [100, 60], calib)
    model = prune_output(model, tiny_tok, Policy.default())
    checkpoint.save_hf(model, tiny_tok, tmp_path)
    back = checkpoint.load(tmp_path).model
    assert back.args.ffn_dims == [100, 60] and back.args.output_token_ids == model.args.output_token_ids
    assert back.args.extra["kept_blocks"] == model.args.extra["kept_blocks"]
    for a, b in zip(_logits(model, calib), _logits(back, calib)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["rtn", "qat"])
def test_pruning_a_quantized_model_is_refused_with_the_fix(tiny_tok, calib, mode):
    """A recipe that quantizes before it prunes used to die with a KeyError (prune_mlp) or a state-dict mismatch
    listing every tensor (prune_blocks): each pruning function now says what is wrong before touching anything."""
    from pocketguard.compress.quantize import QuantConfig, quantize_

    q = quantize_(_model(tiny_tok), QuantConfig(mode=mode))
    calls = {
        "prune_blocks": lambda: prune_blocks(q, 1, calib),
        "prune_mlp": lambda: prune_mlp(q, 64, calib),
        "prune_output": lambda: prune_output(q, tiny_tok, Policy.default()),
        "prune_input": lambda: prune_input(q, range(20), 0),
    }
    for name, call in calls.items():
        with pytest.raises(ValueError, match=f"{name} prunes float models: .*prune before quantizing"):
            call()
    prune_output(_model(tiny_tok), tiny_tok, Policy.default())  # float models are pruned as before


def test_mlp_global_budget_keeps_multiples_within_the_budget(tiny_tok, calib):
    """Before, rounding each layer's top-k count and then capping it gave [128, 48, 48] here: 224 neurons for a
    budget of 192, and 100 → 48 only by accident of the cap (a capped width was no multiple at all)."""
    dims = [128, 96, 100]
    model = _model(tiny_tok, n_layers=3, ffn_dims=dims)
    for width, multiple in ((64, 48), (64, 32), (40, 16), (90, 48)):
        pruned, report = prune_mlp(model, width, calib, budget="global", multiple_of=multiple)
        widths = pruned.args.ffn_dims
        assert sum(widths) <= width * 3 and widths == report.kept, (width, multiple, widths)
        assert all(w % multiple == 0 or w == d for w, d in zip(widths, dims)), (width, multiple, widths)
        assert sum(widths) > width * 3 - multiple  # used up to less than one step (no layer is whole here)
    # multiple_of = 1: exactly the global top-k
    scores = score_mlp(model, calib)
    top = torch.topk(torch.cat(scores), 150).indices
    layer_of = torch.cat([torch.full((d,), i) for i, d in enumerate(dims)])
    assert prune_mlp(model, 50, calib, budget="global")[0].args.ffn_dims == torch.bincount(layer_of[top]).tolist()
    with pytest.raises(ValueError, match=r"budget of 96 MLP neurons is below the per-layer floors \[48, 48, 48\]"):
        prune_mlp(model, 32, calib, budget="global", multiple_of=48)


def test_mlp_uniform_widths_keep_to_multiple_of_and_min_width(tiny_tok, calib):
    """Before, `multiple_of` and `min_width` were read by budget="global" only: a uniform width of 90 with
    multiple_of = 32 kept 90 neurons, and a min_width above the width was ignored, both without a word. A uniform
    width is a cap as the global budget is: rounded down to a multiple (a layer kept whole stays whole), and one
    below the per-layer floor is an error."""
    dims = [128, 96, 100]
    model = _model(tiny_tok, n_layers=3, ffn_dims=dims)
    for width, multiple, kept in ((90, 32, [64] * 3), ([127, 96, 100], 32, [96, 96, 100]), (90, 1, [90] * 3)):
        pruned, report = prune_mlp(model, width, calib, multiple_of=multiple)
        assert pruned.args.ffn_dims == report.kept == kept, (width, multiple)
    with pytest.raises(ValueError, match=r"layer 0: width 40, rounded down to a multiple of 48 \(0\), is below the "
                                         r"per-layer floor 48 \(min_width 1, multiple_of 48\)"):
        prune_mlp(model, 40, calib, multiple_of=48)
    with pytest.raises(ValueError, match=r"layer 1: width 50, rounded down to a multiple of 1 \(50\), is below the "
                                         r"per-layer floor 64 \(min_width 64, multiple_of 1\)"):
        prune_mlp(model, [64, 50, 64], calib, min_width=64)
    with pytest.raises(ValueError, match="layer 0: cannot keep 129 of 128"):
        prune_mlp(model, [129, 96, 96], calib, multiple_of=32)
