"""model.py: the KV cache and padding change nothing, pruned shapes are exact, context limits are enforced."""

from dataclasses import replace

import pytest
import torch
from torch.testing import assert_close

from pocketguard import testing as T
from pocketguard.model import ContextLengthError, KVCache, Transformer, apply_rope, rotate_half

TOL = dict(atol=1e-5, rtol=1e-5)


@pytest.fixture(scope="module")
def model():
    return T.tiny_model(std=0.1)  # larger weights than the default: logits of order 1 make comparisons sharp


def tokens(*shape, seed=0, high=600):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


def with_weights(args, full: Transformer, **replaced) -> Transformer:
    m = Transformer(args)
    m.load_state_dict({**full.state_dict(), **replaced})
    return m.eval()


@torch.no_grad()
def test_kv_cache_decoding_equals_a_full_pass(model):
    x = tokens(2, 24)
    full = model(x)
    cache = KVCache(model.args, batch=2, max_len=32)
    steps = [model(x[:, :8], cache), model(x[:, 8:13], cache)] + [model(x[:, t : t + 1], cache) for t in range(13, 24)]
    assert_close(torch.cat(steps, 1), full, **TOL)
    cache = KVCache(model.args, batch=2, max_len=32)
    assert_close(model(x[:, :8], cache, last_only=True), full[:, 7:8], **TOL)


@torch.no_grad()
@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_rows_equal_unpadded_rows(model, side):
    seqs = [tokens(n, seed=n) for n in (5, 12, 9)]
    nxt = tokens(3, seed=99)
    width = max(len(s) for s in seqs)
    batch = torch.zeros(3, width, dtype=torch.long)
    valid = torch.zeros(3, width, dtype=torch.bool)
    for i, s in enumerate(seqs):
        cols = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        batch[i, cols], valid[i, cols] = s, True
    logits, last = model(batch, valid=valid), model(batch, valid=valid, last_only=True)
    cache = KVCache(model.args, batch=3, max_len=width + 1)
    model(batch, cache, valid)
    step = model(nxt[:, None], cache)  # one decoding step on top of the padded prefill
    for i, s in enumerate(seqs):
        alone = model(torch.cat([s, nxt[i : i + 1]])[None])
        assert_close(logits[i][valid[i]], alone[0, :-1], **TOL)
        assert_close(last[i, 0], alone[0, -2], **TOL)
        assert_close(step[i, 0], alone[0, -1], **TOL)


@torch.no_grad()
def test_pruned_embedding_reads_the_fallback_row_for_unknown_ids(model):
    keep = list(range(0, 600, 2))  # even ids; 0 is the fallback
    pruned = with_weights(replace(model.args, input_token_ids=keep, embed_fallback_id=0), model,
                          **{"tok_embeddings.weight": model.tok_embeddings.weight[keep]})
    x = tokens(2, 16)
    x[0, 3], x[1, 5], x[1, 9] = -1, 600, 10**9  # outside the vocabulary: fallback too, never a crash
    known = (x >= 0) & (x < 600) & (x % 2 == 0)
    assert_close(pruned(x), model(torch.where(known, x, 0)), **TOL)
    with pytest.raises(ValueError, match="out of range"):
        model(x)  # a full embedding refuses out-of-vocabulary ids instead of indexing out of bounds


@torch.no_grad()
def test_pruned_head_equals_the_gathered_rows_of_the_full_head(model):
    ids = [5, 77, 270, 273, 599, 1]
    pruned = with_weights(replace(model.args, output_token_ids=ids), model, **{"output.weight": model.output.weight[ids]})
    x = tokens(2, 16)
    assert_close(pruned(x), model(x)[..., ids], **TOL)
    assert_close(pruned(x, last_only=True), model(x, last_only=True)[..., ids], **TOL)
    assert pruned.head_rows([270, 2, 1]) == [2, None, 5] and model.head_rows([270, 600]) == [270, None]


@torch.no_grad()
def test_context_overflow_raises_context_length_error():
    m = T.tiny_model(T.tiny_args(max_seq_len=16))
    m(tokens(1, 16))
    with pytest.raises(ContextLengthError, match="exceed the model's context of 16"):
        m(tokens(1, 17))
    cache = KVCache(m.args, batch=1, max_len=24)
    m(tokens(1, 16), cache)
    with pytest.raises(ContextLengthError, match="position 16 exceeds the model's context"):
        m(tokens(1, 1), cache)
    with pytest.raises(ContextLengthError, match="exceed the cache of 8"):
        m(tokens(1, 9), KVCache(m.args, batch=1, max_len=8))
    padded = torch.zeros(1, 20, dtype=torch.bool)
    padded[0, :10] = True
    m(tokens(1, 20), valid=padded)  # padding takes no positions: 10 real tokens fit


def test_apply_rope_gives_the_bits_of_the_rotate_half_formula():
    """The in-place RoPE must not change a bit: exported runtimes (ExecuTorch) keep the rotate_half form."""
    g = torch.Generator().manual_seed(0)
    for shape, cs in [((7, 9, 64), (7, 1, 64)), ((2, 3, 5, 192), (1, 1, 5, 192))]:
        x = torch.randn(shape, generator=g) * 5
        cos, sin = torch.randn(cs, generator=g), torch.randn(cs, generator=g)
        assert torch.equal(apply_rope(x, cos, sin), x * cos + rotate_half(x) * sin)
