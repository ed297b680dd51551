"""Quantization numerics, QAT, PTQ baselines (RTN / GPTQ / imatrix), rotation, LoRA, kernels."""

import copy
import warnings

import numpy as np
import pytest
import torch

from pocketguard import kernels as K
from pocketguard.compress import gptq as G
from pocketguard.compress.lora import LoRALinear, add_lora, lora_parameters, merge_lora
from pocketguard.compress.quantize import (
    QuantConfig, collect_imatrix, convert, imatrix_scales, prepare_qat, quantize_, weighted_error,
)
from pocketguard.compress.rotate import fold_norms, rotate_model, rotation_matrix
from pocketguard.model import ModelArgs, Transformer


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(seed=0, dim=64, **over):
    args = ModelArgs(**{**dict(dim=dim, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=200, ffn_dims=[96, 128],
                               max_seq_len=128), **over})
    m = Transformer(args).init_weights(std=0.05, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # non-trivial norm gains, so folding them is actually tested
        for name, p in m.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.3 * torch.randn(p.shape, generator=g))
    return m.eval()


def tokens(n=3, T=24, vocab=200, seed=0):
    return torch.randint(0, vocab, (n, T), generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------ numerics


def ref_weight_quant(w: np.ndarray, bits: int, group: int, fp16_scales: bool):
    """Hand-written reference: per group of `group` columns, s = max|w|/((qmax-qmin)/2) (int4: /7.5),
    optionally rounded to fp16; q = clamp(round_half_even(w * (1/s)), qmin, qmax)."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    n, k = w.shape
    q = np.zeros_like(w, dtype=np.int8)
    s_all = np.zeros((n, k // group), dtype=np.float32)
    for r in range(n):
        for gi in range(k // group):
            blk = w[r, gi * group:(gi + 1) * group].astype(np.float32)
            s = np.float32(np.abs(blk).max()) / np.float32((qmax - qmin) / 2)
            s = np.float32(np.float16(max(s, 2.0**-24))) if fp16_scales else np.float32(max(s, np.finfo(np.float32).tiny))
            q[r, gi * group:(gi + 1) * group] = np.clip(np.round(blk * (np.float32(1) / s)), qmin, qmax)
            s_all[r, gi] = s
    return q, s_all


def test_int4_weight_numerics_match_hand_reference_and_torchao():
    from torchao.quantization.qat import IntxFakeQuantizeConfig
    from torchao.quantization.qat.fake_quantizer import IntxFakeQuantizer

    torch.manual_seed(0)
    w = torch.randn(48, 128) * 0.03
    w[3, :32] = 0.0  # an all-zero group must not produce NaN
    w[5, 7] = 0.9  # an outlier
    for fp16 in (True, False):
        sdt = torch.float16 if fp16 else torch.float32
        s = K.weight_scales(w, 4, 32, sdt)
        q = K.quantize_weight(w, s, 4, 32)
        q_ref, s_ref = ref_weight_quant(w.numpy(), 4, 32, fp16)
        assert s.dtype == sdt and np.array_equal(s.float().numpy(), s_ref)
        assert np.array_equal(q.numpy(), q_ref) and q.min() >= -8 and q.max() <= 7
        fq = K.fake_quantize_weight(w, 4, 32, sdt)
        assert torch.equal(fq, K.dequantize_weight(q, s, 32)) and torch.isfinite(fq).all()
    # the fp32-scale formula is torchao's IntxFakeQuantizer, bit for bit (int4 group 32, int8 per channel)
    tq = IntxFakeQuantizer(IntxFakeQuantizeConfig(torch.int4, group_size=32))
    assert torch.equal(tq(w), K.fake_quantize_weight(w, 4, 32, torch.float32))
    tq8 = IntxFakeQuantizer(IntxFakeQuantizeConfig(torch.int8, "per_channel"))
    assert torch.equal(tq8(w), K.fake_quantize_weight(w, 8, None, torch.float32))
    # ±max of a group lands on ±7.5 (up to the reciprocal's rounding): +max clamps to 7, -max gives -8 or -7
    g = torch.linspace(-1, 1, 32)[None]
    qg = K.quantize_weight(g, K.weight_scales(g, 4, 32, torch.float32), 4, 32)
    assert qg[0, 0] in (-8, -7) and qg[0, -1] == 7


def test_8da4w_codes_scales_and_outputs_are_torchaos_ptq():
    """torchao's own PTQ of the same scheme (Int8DynamicActivationIntxWeightConfig: int4 symmetric group 32, int8
    asymmetric per-token activations): the same codes, scales and zero points (0), and the same outputs. With fp16
    scales torchao quantizes in fp16 arithmetic (documented difference); given our fp16 scale as fp32 its
    quantize_affine gives our codes."""
    from torchao.quantization import Int8DynamicActivationIntxWeightConfig
    from torchao.quantization import quantize_ as tq_quantize_
    from torchao.quantization.granularity import PerGroup
    from torchao.quantization.quant_primitives import quantize_affine

    torch.manual_seed(2)
    w = torch.randn(48, 128) * 0.03
    w[5, 7] = 0.9
    lin = torch.nn.Linear(128, 48, bias=False)
    with torch.no_grad():
        lin.weight.copy_(w)
    tq_quantize_(lin, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4, weight_granularity=PerGroup(32)))
    t = lin.weight
    s = K.weight_scales(w, 4, 32, torch.float32)
    assert torch.equal(t.scale.reshape(s.shape), s) and (t.zero_point == 0).all()
    assert torch.equal(t.qdata.to(torch.int8), K.quantize_weight(w, s, 4, 32))
    x = torch.randn(2, 5, 128) * 3
    x[0, 0] = 0.0
    ours = K.Int4WeightInt8ActLinear.from_weight(w, 32, torch.float32)
    with torch.no_grad(), K.kernel_mode_ctx("reference"):
        assert torch.allclose(ours(x), lin(x), rtol=1e-6, atol=1e-6)
    s16 = K.weight_scales(w, 4, 32, torch.float16)
    q16 = quantize_affine(w, (1, 32), s16.float(), torch.zeros(s16.shape, dtype=torch.int32), torch.int8, -8, 7)
    assert torch.equal(q16, K.quantize_weight(w, s16, 4, 32))


def test_int8_per_token_activation_numerics():
    from torchao.quantization.qat import IntxFakeQuantizeConfig
    from torchao.quantization.qat.fake_quantizer import IntxFakeQuantizer

    torch.manual_seed(1)
    x = torch.randn(2, 5, 64) * 3
    x[0, 0] = 0.0  # all-zero token
    x[0, 1] = x[0, 1].abs() + 1  # all-positive token: lo clamps to 0
    xq, s, z = K.quantize_act(x)
    # hand reference, one token at a time
    for t in x.reshape(-1, 64).numpy():
        lo, hi = min(t.min(), 0.0), max(t.max(), 0.0)
        sr = np.float32(max(np.float32(hi - lo) / np.float32(255.0), np.finfo(np.float32).tiny))
        zr = np.clip(-128 - np.round(np.float32(lo) / sr), -128, 127)
        qr = np.clip(np.round(t * (np.float32(1) / sr)) + zr, -128, 127)
        i = [j for j, row in enumerate(x.reshape(-1, 64).numpy()) if np.array_equal(row, t)][0]
        assert np.float32(s.reshape(-1)[i]) == sr and z.reshape(-1)[i] == zr
        assert np.array_equal(xq.reshape(-1, 64)[i].numpy(), qr.astype(np.int8))
    fq = K.fake_quantize_act(x)
    assert torch.equal(fq, ((xq.float() - z) * s)) and torch.isfinite(fq).all()
    tq = IntxFakeQuantizer(IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False))
    assert torch.equal(tq(x), fq)  # torchao's QAT activation quantizer, bit for bit
    assert (fq - x).abs().max() <= s.max() / 2 + 1e-6


def test_int4_packing_layout():
    q = torch.tensor([[-8, 7, 0, -1, 3, -4]], dtype=torch.int8)
    p = K.pack_int4(q)
    assert p.dtype == torch.uint8 and p.shape == (1, 3)
    assert p[0, 0].item() == (0 | (15 << 4))  # column 0 (-8 -> 0) low nibble, column 1 (7 -> 15) high nibble
    assert torch.equal(K.unpack_int4(p), q)
    r = torch.randint(-8, 8, (7, 64), dtype=torch.int8)
    assert torch.equal(K.unpack_int4(K.pack_int4(r)), r)
    with pytest.raises(ValueError):
        K.pack_int4(torch.tensor([[8, 0]]))


# ------------------------------------------------------------------------------------------ QAT


def test_prepare_qat_uses_torchao_modules_and_straight_through_gradients():
    from torchao.quantization.qat import FakeQuantizedEmbedding, FakeQuantizedLinear

    m = prepare_qat(tiny(), QuantConfig())
    with pytest.raises(ValueError, match="float model"):
        prepare_qat(m, QuantConfig())  # never fake-quantize twice
    assert isinstance(m.layers[0].attention.wq, FakeQuantizedLinear) and isinstance(m.output, FakeQuantizedLinear)
    assert isinstance(m.tok_embeddings, FakeQuantizedEmbedding)
    m.train()
    toks = tokens()
    loss = torch.nn.functional.cross_entropy(m(toks[:, :-1]).flatten(0, 1), toks[:, 1:].flatten())
    loss.backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name
    # STE: d fq(w) / dw is the identity on the rounding (scale held fixed)
    w = torch.randn(4, 32, requires_grad=True)
    s = K.weight_scales(w.detach(), 4, 32, torch.float16)
    K.fake_quantize_weight(w, 4, 32, scales=s).sum().backward()
    r = torch.round(w.detach() * (1 / s.float()))
    inside = (r >= -8) & (r <= 7)
    assert torch.allclose(w.grad[inside], torch.ones_like(w.grad[inside])) and (w.grad[~inside] == 0).all()
    # a few steps of SGD lower the loss through the fake quantizers
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(m(toks[:, :-1]).flatten(0, 1), toks[:, 1:].flatten())
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_fake_quant_gradients_are_torchaos_straight_through_gradients():
    """d ŵ/d w = 1 where round(w/s) is in range and 0 where the clamp bites, with the scale a constant of the
    backward pass (torchao's choose_qparams_affine is no_grad), for both scale dtypes; activations likewise.
    Regression: the fp16-scale quantizer (the default QAT path) differentiated through max|w|, so the two
    scale dtypes trained with different gradients, and a group's max weight got a gradient from all 32."""
    from torchao.quantization.qat import IntxFakeQuantizeConfig
    from torchao.quantization.qat.fake_quantizer import IntxFakeQuantizer

    from pocketguard.compress.quantize import GroupwiseWeightFakeQuantizer

    torch.manual_seed(0)
    w0 = torch.randn(16, 64) * 0.03
    up = torch.randn(16, 64)
    for bits, gs, fp16 in ((4, 32, True), (4, 32, False), (8, None, False)):
        q_ref, s_ref = ref_weight_quant(w0.numpy(), bits, gs or 64, fp16)
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        r = np.round(w0.numpy().reshape(16, -1, gs or 64) * (np.float32(1) / s_ref[..., None])).reshape(16, 64)
        want = up.numpy() * ((r >= qmin) & (r <= qmax))  # independent: upstream gradient times the in-range mask
        assert (r > qmax).any()  # the positive max of some groups lands on 7.5 -> 8 and gets no gradient
        w = w0.clone().requires_grad_()
        fq = GroupwiseWeightFakeQuantizer(bits, gs, torch.float16) if fp16 else (
            lambda t: K.fake_quantize_weight(t, bits, gs, torch.float32))
        (fq(w) * up).sum().backward()
        np.testing.assert_allclose(w.grad.numpy(), want, rtol=1e-6, atol=1e-6)
        if not fp16:  # torchao's own quantizer: the same gradient
            cfg = IntxFakeQuantizeConfig(torch.int4, group_size=gs) if gs else IntxFakeQuantizeConfig(torch.int8, "per_channel")
            wt = w0.clone().requires_grad_()
            (IntxFakeQuantizer(cfg)(wt) * up).sum().backward()
            assert torch.allclose(w.grad, wt.grad, rtol=1e-6, atol=1e-6)
    x0 = torch.randn(2, 3, 64) * 3
    x0[0, 0] = 0.0
    gx = torch.randn(2, 3, 64)
    x, xt = x0.clone().requires_grad_(), x0.clone().requires_grad_()
    (K.fake_quantize_act(x) * gx).sum().backward()
    (IntxFakeQuantizer(IntxFakeQuantizeConfig(torch.int8, "per_token", is_symmetric=False))(xt) * gx).sum().backward()
    assert torch.allclose(x.grad, xt.grad, rtol=1e-6, atol=1e-6)
    xq, s, z = K.quantize_act(x0)
    r = torch.round(x0 * (1 / s)) + z
    assert torch.allclose(x.grad, gx * ((r >= -128) & (r <= 127)), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("scale_dtype", ["float16", "float32"])
def test_convert_reproduces_fake_quant_model(scale_dtype):
    toks = tokens()
    fq = prepare_qat(tiny(), QuantConfig(scale_dtype=scale_dtype, embedding_bits=4))
    with torch.no_grad():
        y_fq = fq(toks)
        q = convert(copy.deepcopy(fq))
        assert isinstance(q.layers[1].feed_forward.w2, K.Int4WeightInt8ActLinear)
        assert isinstance(q.output, K.Int8WeightInt8ActLinear) and isinstance(q.tok_embeddings, K.Int4Embedding)
        with K.kernel_mode_ctx("reference"):
            assert torch.equal(q(toks), y_fq)  # bit-identical
        y_fast = q(toks)
    assert torch.allclose(y_fast, y_fq, rtol=1e-4, atol=1e-5 * y_fq.abs().max())


def test_fast_kernels_match_reference(monkeypatch):
    monkeypatch.setattr(K, "_TILE_BYTES", 64 << 10)  # several row tiles even for these small layers
    torch.manual_seed(0)
    for cls, n, k, gs in [(K.Int4WeightInt8ActLinear, 300, 2048, 32), (K.Int4WeightLinear, 40, 64, 32),
                          (K.Int8WeightInt8ActLinear, 77, 96, None), (K.Int8WeightLinear, 50, 64, None),
                          (K.Int8WeightInt8ActLinear, 20, 64, 32)]:
        lin = cls.from_weight(torch.randn(n, k) * 0.05, gs, "float16" if gs else "float32")
        for m in (1, 7):
            x = torch.randn(m, k) * 2
            with K.kernel_mode_ctx("reference"):
                ref = lin(x)
            fast = lin(x)
            assert torch.allclose(fast, ref, rtol=1e-5, atol=1e-5 * ref.abs().max()), cls.__name__
    # 3-D inputs keep their shape
    lin = K.Int4WeightInt8ActLinear.from_weight(torch.randn(16, 64), 32, "float16")
    assert lin(torch.randn(2, 3, 64)).shape == (2, 3, 16)


def test_linears_quantize_a_shared_input_once_with_the_same_bits(monkeypatch):
    """q/k/v (and gate/up) read one input: `K.linears` quantizes it once and gives each forward's exact bits."""
    torch.manual_seed(0)
    qkv = [K.Int4WeightInt8ActLinear.from_weight(torch.randn(n, 64) * 0.05, 32, "float16") for n in (96, 32, 32)]
    x = torch.randn(2, 5, 64) * 2
    want = [m(x) for m in qkv]
    calls = []
    real = K.fake_quantize_act
    monkeypatch.setattr(K, "fake_quantize_act", lambda *a: calls.append(1) or real(*a))
    got = K.linears(x, *qkv)
    assert len(calls) == 1 and all(torch.equal(g, w) for g, w in zip(got, want))
    # other schemes, mixed kinds and the reference mode are each linear's own forward
    calls.clear()
    head = K.Int8WeightInt8ActLinear.from_weight(torch.randn(8, 64) * 0.05, None)
    float_lin = torch.nn.Linear(64, 8, bias=False)
    for mods in ([head, head], [qkv[0], float_lin], [float_lin, float_lin]):
        assert all(torch.equal(g, m(x)) for g, m in zip(K.linears(x, *mods), mods))
    with K.kernel_mode_ctx("reference"):
        calls.clear()
        assert all(torch.equal(g, m(x)) for g, m in zip(K.linears(x, *qkv), qkv))
        assert len(calls) == 2 * len(qkv)  # once per linear in `linears`, once per linear in the check


# ------------------------------------------------------------------------------------------ PTQ


def correlated_inputs(n=2048, k=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    basis = torch.randn(16, k, generator=g)
    x = torch.randn(n, 16, generator=g) @ basis + 0.3 * torch.randn(n, k, generator=g)
    return x * torch.linspace(0.2, 3.0, k)[None, :]  # channels of very different magnitude


def test_gptq_layer_output_error_not_above_rtn():
    g = torch.Generator().manual_seed(3)
    W = torch.randn(64, 128, generator=g) * 0.05
    X = correlated_inputs()
    acc = G.HessianAccumulator(128)
    acc.add(X)
    assert torch.allclose(acc.H, 2 * X.double().T @ X.double() / X.shape[0])
    rtn = K.dequantize_weight(K.quantize_weight(W, K.weight_scales(W, 4, 32, torch.float16), 4, 32),
                              K.weight_scales(W, 4, 32, torch.float16), 32)
    mse_rtn = G.layer_output_mse(W, rtn, X)
    for act_order in (False, True):
        q, s = G.gptq_quantize_weight(W, acc.H, 4, 32, torch.float16, act_order=act_order)
        assert q.dtype == torch.int8 and q.min() >= -8 and q.max() <= 7 and s.dtype == torch.float16
        mse = G.layer_output_mse(W, K.dequantize_weight(q, s, 32), X)
        assert mse <= mse_rtn, (act_order, mse, mse_rtn)
        assert mse < 0.8 * mse_rtn  # and clearly better on correlated inputs
    # per-channel int8 (the head) works too
    q8, s8 = G.gptq_quantize_weight(W, acc.H, 8, None, torch.float32)
    assert G.layer_output_mse(W, K.dequantize_weight(q8, s8, None), X) <= G.layer_output_mse(
        W, K.fake_quantize_weight(W, 8, None), X)


def np_gptq(W, H, bits=4, group=32, damp=0.01, act_order=False):
    """Independent GPTQ (Frantar et al., Algorithm 1 without the lazy batches), numpy float64: one column at a
    time, its error spread over every later column through the upper Cholesky factor of H⁻¹; a group's fp16
    scale (max|w|/7.5) taken from the error-updated weights when the sweep reaches its first column, or with
    act-order (columns by decreasing diag H) from the original weights up front ("static groups")."""
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1

    def scales(w):  # [n, k] -> [n, k/group], fp16-rounded, as float64
        s = np.abs(w.reshape(w.shape[0], -1, group)).max(-1).astype(np.float32) / np.float32((qmax - qmin) / 2)
        return np.float16(np.clip(s, 2.0**-24, 65504)).astype(np.float64)

    W, H = W.astype(np.float64).copy(), H.astype(np.float64).copy()
    n, k = W.shape
    dead = np.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    S = scales(W) if act_order else np.zeros((n, k // group))
    perm = np.argsort(-np.diag(H), kind="stable") if act_order else np.arange(k)
    W, H = W[:, perm], H[np.ix_(perm, perm)]
    H[np.diag_indices(k)] += damp * np.mean(np.diag(H))
    U = np.linalg.cholesky(np.linalg.inv(H)).T
    Q = np.zeros((n, k), np.int64)
    for j in range(k):
        c = perm[j]
        if not act_order and c % group == 0:
            S[:, c // group] = scales(W[:, j:j + group])[:, 0]
        s = S[:, c // group]
        Q[:, c] = np.clip(np.round(W[:, j] * (1.0 / s)), qmin, qmax)
        err = (W[:, j] - Q[:, c] * s) / U[j, j]
        W[:, j:] -= np.outer(err, U[j, j:])
    return Q, S


def test_gptq_matches_an_independent_reference():
    """Lazy batch updates (blocks of 32 and 128 columns), damping, dead inputs, group scales from the updated
    weights and act-order give the codes and scales of the plain column-by-column algorithm."""
    g = torch.Generator().manual_seed(5)
    W = torch.randn(24, 128, generator=g) * 0.05
    X = correlated_inputs(1024, 128, seed=5)
    X[:, 40] = 0  # a dead input
    acc = G.HessianAccumulator(128)
    acc.add(X)
    s0 = K.weight_scales(W, 4, 32, torch.float16)
    mse_rtn = G.layer_output_mse(W, K.dequantize_weight(K.quantize_weight(W, s0, 4, 32), s0, 32), X)
    for act_order in (False, True):
        Q_ref, S_ref = np_gptq(W.numpy(), acc.H.numpy(), act_order=act_order)
        for block in (32, 128):
            q, s = G.gptq_quantize_weight(W, acc.H, 4, 32, torch.float16, block_size=block, act_order=act_order)
            assert np.array_equal(s.float().numpy(), S_ref.astype(np.float32)), (act_order, block)
            assert (q.numpy() != Q_ref).mean() < 1e-3, (act_order, block)  # (a float tie may round the other way)
            assert (q[:, 40] == 0).all()
        mse = G.layer_output_mse(W, K.dequantize_weight(q, s, 32), X)
        assert mse < 0.5 * mse_rtn, (act_order, mse, mse_rtn)


def test_imatrix_weighted_error_not_above_rtn():
    g = torch.Generator().manual_seed(4)
    W = torch.randn(64, 128, generator=g) * 0.05
    imp = (correlated_inputs() ** 2).mean(0)
    for sdt, bits, gs in ((torch.float16, 4, 32), (torch.float32, 8, None)):
        s_rtn = K.weight_scales(W, bits, gs, sdt)
        e_rtn = weighted_error(W, K.quantize_weight(W, s_rtn, bits, gs), s_rtn, imp, gs)
        s_im = imatrix_scales(W, imp, bits, gs, sdt)
        assert s_im.dtype == sdt
        e_im = weighted_error(W, K.quantize_weight(W, s_im, bits, gs), s_im, imp, gs)
        assert (e_im <= e_rtn).all() and e_im.sum() < e_rtn.sum()


def test_ptq_modes_on_a_model():
    m = tiny()
    toks = tokens(4, 32)
    with torch.no_grad():
        ref = m(toks)
        errs = {}
        for mode in ("rtn", "imatrix", "gptq"):
            q = quantize_(copy.deepcopy(m), QuantConfig(mode=mode), calibration=toks)
            assert isinstance(q.layers[0].attention.wq, K.Int4WeightInt8ActLinear)
            errs[mode] = ((q(toks) - ref) ** 2).mean().item()
        stats = collect_imatrix(m, list(toks), ["layers.0.attention.wq"])
        assert stats["layers.0.attention.wq"].shape == (64,)
        # llama.cpp's imatrix: Σ_tokens x² per input column / number of tokens (wq reads attention_norm(embedding))
        x = m.layers[0].attention_norm(m.tok_embeddings(toks)).reshape(-1, 64).double()
        assert torch.allclose(stats["layers.0.attention.wq"].double(), (x * x).sum(0) / x.shape[0], rtol=1e-5)
        # batched calibration with padding sees exactly the real tokens (same statistics as one by one)
        ragged = [toks[0, :9], toks[1], toks[2, :20], toks[3, :3]]
        names = ["layers.1.feed_forward.w2", "output"]
        a, b = collect_imatrix(m, ragged, names, batch_size=4), collect_imatrix(m, ragged, names, batch_size=1)
        assert all(torch.allclose(a[n], b[n], rtol=1e-4) for n in names)
        h4 = G.collect_hessians(m, ragged, ["layers.1.attention.wq"], batch_size=4)["layers.1.attention.wq"]
        h1 = G.collect_hessians(m, ragged, ["layers.1.attention.wq"], batch_size=1)["layers.1.attention.wq"]
        assert h4.n == h1.n == 9 + 32 + 20 + 3 and torch.allclose(h4.H, h1.H, rtol=1e-4, atol=1e-8)
    assert all(e < 0.05 * ref.var().item() for e in errs.values()), errs
    with pytest.raises(ValueError, match="calibration"):
        quantize_(copy.deepcopy(m), QuantConfig(mode="gptq"))


@pytest.mark.parametrize("first", ["rtn", "qat"])
def test_ptq_refuses_an_already_quantized_model_as_prepare_qat_does(first):
    """Before, PTQ of a quantized model dequantized its int4 weights and rounded them again (or quantized a fake-quantized
    model's latent weights, dropping its fake quantizers) without a word."""
    m = quantize_(tiny(), QuantConfig(mode="rtn")) if first == "rtn" else prepare_qat(tiny(), QuantConfig())
    kind = type(m.layers[0].attention.wq)
    for mode in ("rtn", "imatrix", "gptq"):
        with pytest.raises(ValueError, match=r"quantize_ needs a float model; this one is already \(fake-\)quantized"):
            quantize_(m, QuantConfig(mode=mode, weight_bits=8, group_size=None), calibration=tokens())
    assert type(m.layers[0].attention.wq) is kind  # left as it was


@pytest.mark.parametrize("key", ["group_size", "head_group_size"])
@pytest.mark.parametrize("size", [0, -32])
def test_a_group_size_below_one_is_refused_by_the_config(key, size):
    """Before, 0 was a ZeroDivisionError and -32 a "negative dimension" RuntimeError from deep in the kernels."""
    with pytest.raises(ValueError, match=f"{key} must be a positive number of input columns or None"):
        QuantConfig(mode="rtn", **{key: size})
    assert getattr(QuantConfig(**{key: None}), key) is None and getattr(QuantConfig(**{key: 64}), key) == 64


# ------------------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("dim, kind", [(64, "hadamard"), (96, "hadamard"), (96, "random")])
def test_rotation_leaves_float_logits_unchanged(dim, kind):
    m = tiny(dim=dim, n_heads=4, n_kv_heads=2)
    toks = tokens()
    with torch.no_grad():
        ref = m(toks)
        f = fold_norms(copy.deepcopy(m))
        assert torch.allclose(f(toks), ref, atol=1e-4)
        r = rotate_model(copy.deepcopy(m), kind, seed=1)
        out = r(toks)
    assert (out - ref).abs().max() <= 1e-4 * max(1.0, ref.abs().max().item())
    assert not torch.allclose(r.tok_embeddings.weight, m.tok_embeddings.weight)
    assert r.args.extra["rotation"]["kind"] == kind


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_rotation_turns_a_model_where_it_lives():
    """The matrices are built on the CPU; a recipe's models sit on its GPU (QAT with `rotation` rotates the student
    there, and distillation a copy of the teacher): each weight is turned on its own device, as on the CPU."""
    m = tiny(dim=96, n_heads=4, n_kv_heads=2)
    toks = tokens()
    with torch.no_grad():
        on_cpu = rotate_model(copy.deepcopy(m), "hadamard", seed=1)(toks)
        r = rotate_model(copy.deepcopy(m).cuda(), "hadamard", seed=1)
        assert all(p.is_cuda for p in r.parameters())
        assert torch.allclose(r(toks.cuda()).cpu(), on_cpu, atol=1e-4)


def test_rotating_a_quantized_model_is_a_value_error_the_cli_reports():
    """`rotate` after a quantization step: a ValueError (which `pocketguard compress` prints as `error: ...`, exit 2),
    not a TypeError traceback."""
    m = quantize_(tiny(), QuantConfig(mode="rtn"))
    with pytest.raises(ValueError, match="rotate float models before quantizing"):
        rotate_model(m, "hadamard")


def test_rotation_matrices_are_orthogonal():
    for n in (32, 96, 80, 56, 384):
        R = rotation_matrix(n)
        assert torch.allclose(R @ R.T, torch.eye(n, dtype=torch.float64), atol=1e-10)
    H = rotation_matrix(96)  # 96 = 8·12: Sylvester ⊗ Paley, a true (scaled) Hadamard matrix
    assert torch.allclose(H.abs() * 96 ** 0.5, torch.ones(96, 96, dtype=torch.float64))


def test_rotation_helps_quantization_with_outlier_channels():
    m = tiny(seed=0)
    with torch.no_grad():  # a few channels with huge norm gains: outliers in every linear's input
        for layer in m.layers:
            layer.attention_norm.weight[5:8] = 20
            layer.ffn_norm.weight[5:8] = 20
    toks = tokens(4, 32)
    with torch.no_grad():
        ref = m(toks)
        plain = quantize_(copy.deepcopy(m), QuantConfig(mode="rtn"))(toks)
        rot = quantize_(copy.deepcopy(m), QuantConfig(mode="rtn", rotation="hadamard"))(toks)
    assert ((rot - ref) ** 2).mean() < 0.85 * ((plain - ref) ** 2).mean()


# ----------------------------------------------------------------------------------------- LoRA


@pytest.mark.parametrize("base", ["fake", "kernels"])
def test_lora_trains_only_adapters_and_merges(base):
    torch.manual_seed(0)
    m = prepare_qat(tiny(), QuantConfig()) if base == "fake" else quantize_(tiny(), QuantConfig(mode="rtn"))
    toks = tokens()
    with torch.no_grad():
        before = m(toks)
    add_lora(m, rank=4, alpha=8)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert trainable and all(n.endswith(("lora_A", "lora_B")) for n in trainable)
    assert len(lora_parameters(m)) == 2 * 7 * 2
    with torch.no_grad():
        assert torch.equal(m(toks), before)  # B = 0: adapters change nothing yet
    m.train()
    with torch.no_grad():  # make B non-zero so that A gets gradient too
        for mod in m.modules():
            if isinstance(mod, LoRALinear):
                mod.lora_B.normal_(0, 0.01)
    m(toks).square().mean().backward()
    grads = [p.grad.clone() for p in lora_parameters(m)]
    assert all(g.abs().sum() > 0 for g in grads)
    if base == "kernels":  # training through the kernels = training through the fake-quant reference
        m.zero_grad()
        with K.kernel_mode_ctx("reference"):
            m(toks).square().mean().backward()
        assert all(torch.allclose(g, p.grad, rtol=1e-5, atol=1e-9) for g, p in zip(grads, lora_parameters(m)))
    with torch.no_grad():
        for p in lora_parameters(m):
            p.add_(0.05 * torch.randn_like(p))
        m.eval()
        unmerged = m(toks)
        float_merged = merge_lora(copy.deepcopy(m), requantize=False)
        exact = float_merged(toks)
        assert not any(isinstance(x, LoRALinear) for x in _merged(copy.deepcopy(m), base).modules())
        requant = _merged(copy.deepcopy(m), base)(toks)
        # Layer by layer, the float merge equals the adapter it replaces up to float rounding. Through the whole
        # model that rounding may flip an int8 activation code in a later layer (kernels and fake-quant round
        # their float sums differently), so the model-level check is relative.
        x = torch.randn(3, 5, m.args.dim)
        for name, mod in m.named_modules():
            if isinstance(mod, LoRALinear) and mod.in_features == m.args.dim:
                assert torch.allclose(float_merged.get_submodule(name)(x), mod(x), rtol=1e-4, atol=1e-4), name
    assert not torch.allclose(unmerged, before)
    assert (exact - unmerged).norm() < 2e-2 * unmerged.norm()  # merge = unmerged (float merge)
    assert 0 < ((requant - unmerged) ** 2).mean() < 0.1 * unmerged.var()  # re-quantized: close, not equal


def test_lora_on_converted_kernels_trains_like_lora_on_the_fake_quant_model():
    """The converted model's forward is the fake-quant model's bit for bit, so with the same adapters the adapter
    gradients must agree too (the kernels' reference path fake-quantizes activations with torchao's straight-through
    gradient). Regression: the kernels differentiated the per-token scale and zero point, torchao does not."""
    fq = prepare_qat(tiny(), QuantConfig())
    kern = convert(copy.deepcopy(fq))
    toks = tokens()
    grads = []
    for m in (fq, kern):
        torch.manual_seed(0)
        add_lora(m, rank=4, alpha=8)
        with torch.no_grad():
            for mod in m.modules():
                if isinstance(mod, LoRALinear):
                    mod.lora_B.normal_(0, 0.05)
        m.train()
        m(toks).square().mean().backward()
        grads.append([p.grad for p in lora_parameters(m)])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6 * a.abs().max())


def _lora_model(base):
    """(a quantized tiny model with rank-4 adapters, the same model without them); kernel (RTN) or fake-quant (QAT) base."""
    m = quantize_(tiny(), QuantConfig(mode="rtn")) if base == "kernels" else prepare_qat(tiny(), QuantConfig())
    plain = copy.deepcopy(m)
    return add_lora(m, rank=4, alpha=8, generator=torch.Generator().manual_seed(0)), plain


def _shipped(m, base):
    """The model as it ships: kernels (a fake-quant model converted)."""
    return convert(m) if base == "fake" else m


def _merged(m, base):
    """Adapters merged and re-quantized: by `merge_lora` on kernels, through `convert` on a fake-quant base (which
    `merge_lora` refuses to re-quantize itself)."""
    return convert(m) if base == "fake" else merge_lora(m, requantize=True)


@pytest.mark.parametrize("base", ["kernels", "fake"])
def test_merging_a_zero_adapter_and_requantizing_changes_nothing(base):
    """B = 0 adds nothing, so merge + requantize must give the unmerged model's codes and scales bit for bit. Before,
    the merged Ŵ (on the grid: ±max at 7s / -8s, never 7.5s) got fresh scales max|Ŵ|/7.5, 0.93x or 1.07x the old
    ones, and every targeted layer was rounded again (logits moved by 0.32 on this model)."""
    m, plain = _lora_model(base)
    ref = _shipped(plain, base)
    if base == "fake":  # re-quantizing onto a fake base's grid goes through its kernel: convert does both
        with pytest.raises(ValueError, match=r"quantize.convert\(model\) converts it and merges"):
            merge_lora(copy.deepcopy(m), requantize=True)
    with pytest.warns(UserWarning, match=r"adapters moved none of the [\d,]+ weights merged onto the quantization grid"):
        got = _merged(m, base)  # the merge says the adapters' training is lost, whichever path merged them
    for name, mod in ref.named_modules():
        if isinstance(mod, K.QuantLinear):
            new = got.get_submodule(name)
            assert type(new) is type(mod) and torch.equal(new.qweight, mod.qweight), name
            assert new.scales.dtype == mod.scales.dtype and torch.equal(new.scales, mod.scales), name
    toks = tokens()
    with torch.no_grad():
        assert torch.equal(got(toks), ref(toks))


def _fresh_scale_merge(m, base):
    """What merge_lora(requantize=True) did before: Ŵ + Δ re-quantized with fresh RTN scales (a fake-quant base held
    Ŵ + Δ as its latent weight, which convert rounds with fresh scales too)."""
    from pocketguard.compress.lora import _base_weight

    for name, mod in list(m.named_modules()):
        if isinstance(mod, LoRALinear):
            b, w = mod.base, _base_weight(mod.base) + mod.delta()
            if isinstance(b, K.QuantLinear):
                b = type(b).from_weight(w, b.group_size, b.scales.dtype)
            else:
                b.weight = torch.nn.Parameter(w)
            m.set_submodule(name, b)
    return _shipped(m, base)


@pytest.mark.parametrize("base", ["kernels", "fake"])
def test_a_small_adapter_merges_onto_the_base_grid_closer_than_fresh_scales(base):
    """A small Δ keeps almost every group's scale and most codes, and the merged model is nearer the unmerged one
    than the old fresh-scale re-quantization."""
    m, plain = _lora_model(base)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, LoRALinear):
                mod.lora_B.normal_(0, 0.003, generator=g)  # mean |Δ| ≈ 0.04 grid steps
    toks = tokens()
    with torch.no_grad():
        unmerged = m(toks)
        old = _fresh_scale_merge(copy.deepcopy(m), base)(toks)
        with pytest.warns(UserWarning, match="adapters moved none"):  # this small a Δ moves no code
            new = _merged(m, base)
        err_new, err_old = ((new(toks) - unmerged) ** 2).mean(), ((old - unmerged) ** 2).mean()
    assert 0 < err_new < 0.5 * err_old, (err_new, err_old)
    ref = _shipped(plain, base)
    kept_s, kept_q = [], []
    for name, mod in ref.named_modules():
        if isinstance(mod, K.QuantLinear) and name.startswith("layers."):
            kept_s.append((new.get_submodule(name).scales == mod.scales).float().mean())
            kept_q.append((new.get_submodule(name).int_weight() == mod.int_weight()).float().mean())
    assert min(kept_s) > 0.9 and min(kept_q) > 0.7, (min(kept_s), min(kept_q))


def test_the_merge_reports_how_many_weights_the_adapters_moved():
    """Re-quantized, an adapter's Δ under half a grid step rounds away: the report counts the weights whose value the
    merge changed (as comparing the grids finds), and a merge that moved some does not warn."""
    m, plain = _lora_model("kernels")
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, LoRALinear):
                mod.lora_B.normal_(0, 0.05, generator=g)
    moved: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = merge_lora(m, requantize=True, report=moved)
    targeted = [(name, mod) for name, mod in plain.named_modules()  # every block linear carried an adapter
                if isinstance(mod, K.QuantLinear) and name.startswith("layers.")]
    total = sum(mod.dequantize().numel() for _, mod in targeted)
    differ = sum(int((new.get_submodule(name).dequantize() != mod.dequantize()).sum()) for name, mod in targeted)
    assert moved == {"weights": total, "weights_changed": differ} and 0 < differ < total, (moved, total)


def test_ptq_recipe_step_calibrates_on_guard_prompts(tiny_tok):
    from types import SimpleNamespace

    from pocketguard.compress.quantize import calibration_from_examples
    from pocketguard.compress.steps import ptq_step
    from pocketguard.policy import Policy
    from pocketguard.testing import tiny_args, tiny_model
    from pocketguard.toy import toy_examples

    policy = Policy.default().subset(["S1", "S9", "S10"])
    examples = toy_examples(4)
    seqs = calibration_from_examples(examples, tiny_tok, policy, max_len=1024)
    assert len(seqs) == 4 and tiny_tok.decode(seqs[0].tolist()).endswith(("safe", "S1", "S9", "S10"))
    # a cap below the policy header: the sequences keep their start (<|begin_of_text|>, header), not a mid-header cut
    seqs = calibration_from_examples(examples, tiny_tok, policy, max_len=64)
    assert len(seqs) == 4 and all(len(s) <= 64 and s[0] == tiny_tok.special("<|begin_of_text|>") for s in seqs)
    ctx = SimpleNamespace(tokenizer=tiny_tok, policy=policy, calibration=examples, data={"max_len": 48}, info={})
    m = ptq_step(tiny_model(tiny_args(vocab_size=tiny_tok.vocab_size)), ctx, mode="gptq", act_order=True)
    assert isinstance(m.layers[0].feed_forward.w1, K.Int4WeightInt8ActLinear) and m.quant_config.act_order
    with pytest.raises(ValueError, match="qat"):
        ptq_step(tiny_model(tiny_args(vocab_size=tiny_tok.vocab_size)), ctx, mode="qat")


def test_rotating_a_rotated_model_is_refused():
    """Before, a second rotation overwrote args.extra["rotation"]: the record named one rotation while the weights
    carried two, and a teacher turned by that record for hidden-state distillation sat in another basis."""
    m = rotate_model(tiny(), "hadamard", seed=1)
    before = copy.deepcopy(m.state_dict())
    for again in (lambda: rotate_model(m, "random", seed=2),
                  lambda: quantize_(m, QuantConfig(mode="rtn", rotation="hadamard")),
                  lambda: prepare_qat(m, QuantConfig(rotation="hadamard"))):
        with pytest.raises(ValueError, match=r"already rotated \(\{'kind': 'hadamard', 'seed': 1, 'heads': True\}\)"):
            again()
    assert m.args.extra["rotation"] == {"kind": "hadamard", "seed": 1, "heads": True}
    assert all(torch.equal(v, m.state_dict()[k]) for k, v in before.items())  # refused before touching a weight


def test_a_float_model_with_unmerged_adapters_is_told_to_merge_them():
    """Before: AttributeError ('LoRALinear' has no attribute 'weight') from quantize_, torchao's "does not have QAT
    support" from prepare_qat, and "rotate float models before quantizing" (wrong: it is float) from rotate_model."""
    m = add_lora(tiny(), rank=2, generator=torch.Generator().manual_seed(0))
    needle = r"unmerged LoRA adapters; merge them first \(merge_lora\(model, requantize=False\)"
    for verb, call in (("quantize_", lambda: quantize_(m, QuantConfig(mode="rtn"))),
                       ("prepare_qat", lambda: prepare_qat(m, QuantConfig())),
                       ("rotate_model", lambda: rotate_model(m, "hadamard"))):
        with pytest.raises(ValueError, match=f"{verb}: the model has {needle}"):
            call()
    merged = merge_lora(m, requantize=False)
    assert isinstance(quantize_(merged, QuantConfig(mode="rtn")).layers[0].attention.wq, K.Int4WeightInt8ActLinear)


@pytest.mark.parametrize("calibration", [[[]], [list(range(5)), []], torch.zeros(2, 0, dtype=torch.long)])
def test_an_empty_calibration_sequence_is_refused(calibration):
    """Before: torch's "max(): Expected reduction dim to be specified for input.numel() == 0" from inside a batch."""
    for mode in ("gptq", "imatrix"):
        with pytest.raises(ValueError, match=r"calibration sequences \[[\d, ]+\] have no tokens"):
            quantize_(tiny(), QuantConfig(mode=mode), calibration=calibration)


def test_overlong_calibration_prompts_lose_their_earliest_turns_not_their_header(tiny_tok):
    """Before, a sequence over max_len was cut from the left (`ids[-max_len:]`): GPTQ / imatrix calibrated on text
    that starts mid-policy, without <|begin_of_text|>, which the guard never sees. Now the earliest turns go first
    (as in training and at inference); a judged turn too long alone keeps the header and loses its own start."""
    from pocketguard.compress.quantize import calibration_from_examples
    from pocketguard.conversation import Conversation
    from pocketguard.policy import Policy
    from pocketguard.prompt import answer_text, encode_prompt

    policy = Policy.default().subset(["S1", "S9", "S10"])
    msgs = [{"role": "user", "content": "hello world " * 40}, {"role": "assistant", "content": "cat river " * 40},
            {"role": "user", "content": "how to cook cake"}]
    ex = {"messages": msgs, "role": "user", "label": "unsafe", "categories": ["S10"]}
    p = encode_prompt(tiny_tok, policy, Conversation.from_messages(msgs, "user"))
    ans = tiny_tok.encode(answer_text(["S10"]))
    assert calibration_from_examples([ex], tiny_tok, policy, max_len=4096)[0].tolist() == p.ids + ans  # fits
    # one turn too many: the first goes, whole
    fit = len(p.ids) + len(ans) - len(p.turns[0])
    seq = calibration_from_examples([ex], tiny_tok, policy, max_len=fit)[0].tolist()
    assert seq == p.prefix + p.turns[1] + p.turns[2] + p.suffix + ans
    # the judged turn alone does not fit: header kept, the judged turn cut at its start
    m = len(p.prefix) + len(p.suffix) + len(ans) + 3
    seq = calibration_from_examples([ex], tiny_tok, policy, max_len=m)[0].tolist()
    assert len(seq) == m and seq[: len(p.prefix)] == p.prefix and seq[-len(p.suffix) - len(ans):] == p.suffix + ans
    assert seq[0] == tiny_tok.special("<|begin_of_text|>")


def test_calibration_rows_are_read_as_training_reads_them(tiny_tok):
    """Before, `"categories": null` raised a bare TypeError, an unsafe row whose codes the policy lacks calibrated on
    the answer `safe`, and codes kept the row's order. Now a labelled row is parsed as a training row is
    (`parse_example`): a malformed one is an ExampleError naming the row, and the codes are in the policy's order."""
    from pocketguard.compress.quantize import calibration_from_examples
    from pocketguard.conversation import Conversation
    from pocketguard.examples import ExampleError
    from pocketguard.policy import Policy
    from pocketguard.prompt import answer_text, encode_prompt

    policy = Policy.default().subset(["S1", "S9", "S10"])
    msgs = [{"role": "user", "content": "how to cook cake"}]
    prompt = encode_prompt(tiny_tok, policy, Conversation.from_messages(msgs)).ids
    rows = [{"messages": msgs, "label": "unsafe", "categories": ["S10", "S1"]},
            {"messages": msgs, "label": "safe", "categories": None}, {"messages": msgs}]
    answers = [tiny_tok.encode(answer_text(["S1", "S10"])), tiny_tok.encode(answer_text([])), []]
    assert [s.tolist() for s in calibration_from_examples(rows, tiny_tok, policy)] == [prompt + a for a in answers]
    for bad, needle in (({"label": "unsafe", "categories": None}, "an unsafe example needs at least one category code"),
                        ({"label": "unsafe", "categories": ["S5"]}, r"categories \['S5'\] are not in the policy"),
                        ({"label": "unsure"}, "label must be 'safe' or 'unsafe'")):
        with pytest.raises(ExampleError, match=f"calibration example 1: {needle}"):
            calibration_from_examples([rows[0], {"messages": msgs, **bad}], tiny_tok, policy)


@pytest.mark.parametrize("lr", [1e-6, 5e-2])
def test_the_lora_step_records_the_merge_and_warns_when_its_training_rounded_away(tiny_tok, lr):
    """Two steps at a tiny learning rate move no int4 code: the step's report says so (`info["lora_merge"]`) and the
    run warns, rather than saving the base under the lora step's name as if it had learned; at a working rate the
    report counts the weights that moved, and nothing warns."""
    from types import SimpleNamespace

    from pocketguard.compress.steps import lora_step
    from pocketguard.policy import Policy
    from pocketguard.testing import tiny_args, tiny_model
    from pocketguard.toy import toy_examples

    base = quantize_(tiny_model(tiny_args(vocab_size=tiny_tok.vocab_size)), QuantConfig(mode="rtn"))
    plain = copy.deepcopy(base)
    ctx = SimpleNamespace(tokenizer=tiny_tok, policy=Policy.default().subset(["S1", "S9", "S10"]),
                          examples=toy_examples(8), info={}, recipe={"seed": 0}, index=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        got = lora_step(base, ctx, rank=2, steps=2, lr=lr, warmup=0, batch_size=4, max_len=1024)
    targeted = [(n, m) for n, m in plain.named_modules() if isinstance(m, K.QuantLinear) and n.startswith("layers.")]
    moved = sum(int((got.get_submodule(n).dequantize() != m.dequantize()).sum()) for n, m in targeted)
    assert ctx.info["lora_merge"] == {"weights": sum(m.dequantize().numel() for _, m in targeted), "weights_changed": moved}
    rounded_away = [w for w in caught if "adapters moved none" in str(w.message)]
    if lr < 1e-3:
        assert moved == 0 and len(rounded_away) == 1
        assert rounded_away[0].filename.endswith("steps.py")  # points at the merge's caller, not at torch's no_grad
        assert all(torch.equal(a, b) for a, b in zip(got.state_dict().values(), plain.state_dict().values()))
    else:
        assert moved > 0 and not rounded_away


@pytest.mark.parametrize("bits,group,scale_dtype", [(4, 32, "float16"), (4, None, "float32"), (8, None, "float32"),
                                                     (8, 32, "float16")])
def test_latent_weights_quantize_back_to_their_codes_and_scales(bits, group, scale_dtype):
    """`latent_weight` gives a float weight that the shared quantizer maps back to the very codes and scales it came
    from; the dequantized weight (codes × scale) does not: its groups re-scale and re-round."""
    w = torch.randn(48, 128, generator=torch.Generator().manual_seed(bits)) * 0.05
    w[::7, ::5] *= 4  # outliers, so groups' extremes differ in sign and size
    dt = K.scale_dtype_of(scale_dtype)
    s = K.weight_scales(w, bits, group, dt)
    q = K.quantize_weight(w, s, bits, group)
    assert K.requantize_mismatch(K.latent_weight(q, s, bits, group), q, s, bits, group) == (0, 0)
    codes_off, scales_off = K.requantize_mismatch(K.dequantize_weight(q, s, group), q, s, bits, group)
    assert scales_off > 0.3 * s.numel() and codes_off > 0


def test_qat_on_a_quantized_model_starts_from_its_own_codes(tiny_tok):
    """The qat step on a model already quantized with its scheme trains the weights it has: at learning rate 0 the
    converted model is the input, codes and scales bit for bit (dequantizing and re-quantizing would not be), and the
    step's report says every code came back."""
    from types import SimpleNamespace

    from pocketguard.compress.quantize import float_model
    from pocketguard.compress.steps import qat_step
    from pocketguard.policy import Policy
    from pocketguard.testing import tiny_args, tiny_model
    from pocketguard.toy import toy_examples

    cfg = dict(weight_bits=4, group_size=32, act_bits=8, embedding_bits=4, head_bits=8)
    base = quantize_(tiny_model(tiny_args(vocab_size=tiny_tok.vocab_size)), QuantConfig(mode="rtn", **cfg))
    ctx = SimpleNamespace(tokenizer=tiny_tok, policy=Policy.default().subset(["S1", "S9", "S10"]),
                          examples=toy_examples(8), dev_examples=[], info={}, recipe={"seed": 0}, index=0, teacher=None)
    got = qat_step(copy.deepcopy(base), ctx, steps=2, lr=0.0, warmup=0, batch_size=4, max_len=1024, **cfg)
    want = base.state_dict()
    assert got.state_dict().keys() == want.keys()
    assert all(torch.equal(v, want[k]) for k, v in got.state_dict().items())
    assert ctx.info["qat_start"]["codes_off"] == 0 and ctx.info["qat_start"]["scales_off"] == 0
    redone = convert(prepare_qat(float_model(base), QuantConfig(**cfg)))  # the dequantized start re-grids
    assert not all(torch.equal(v, want[k]) for k, v in redone.state_dict().items())


def test_qat_on_a_model_quantized_another_way_is_refused(tiny_tok):
    """Fake-quantizing int4 g32 weights as int4 g64 would round them twice: the step says which modules differ."""
    from types import SimpleNamespace

    from pocketguard.compress.steps import qat_step
    from pocketguard.testing import tiny_args, tiny_model

    base = quantize_(tiny_model(tiny_args(vocab_size=tiny_tok.vocab_size)), QuantConfig(mode="rtn", group_size=32))
    ctx = SimpleNamespace(tokenizer=tiny_tok, examples=[], info={})
    with pytest.raises(ValueError, match=r"needs its own scheme.*layers\.0\.attention\.wq is .*\(4, 32, 8, torch\.float16\), "
                                         r"the step asks \(4, 64, 8, torch\.float16\)"):
        qat_step(base, ctx, group_size=64, steps=1)


def test_latent_weights_keep_the_codes_of_float32_scales_made_another_way():
    """A float32 scale computed otherwise (here absmax × (2/15), as a GPU or torchao may round it) is often no float32
    v / 7.5 at all: the latent weight gives the scale back within a few float32 steps and every code but, in a row
    whose extreme is a −7, now and then that −7 as −8 (no float32 v in reach rounds just under 7.5)."""
    w = torch.randn(256, 64, generator=torch.Generator().manual_seed(5)) * 0.05
    s = w.abs().amax(-1, keepdim=True) * (2.0 / 15.0)
    q = K.quantize_weight(w, s, 4, None)
    assert K.requantize_mismatch(K.dequantize_weight(q, s), q, s, 4)[0] > 100
    latent = K.latent_weight(q, s, 4)
    scales = K.weight_scales(latent, 4)
    torch.testing.assert_close(scales, s, rtol=1e-6, atol=0)
    assert 0 < int((scales != s).sum()) < s.numel()
    back = K.quantize_weight(latent, scales, 4)
    off = (back != q).nonzero().tolist()
    assert len(off) < 5
    for i, j in off:
        assert q[i, j] == -7 and back[i, j] == -8 and q[i].min() == -7 and q[i].max() < 7
