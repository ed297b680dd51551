"""runtime_cpu's AVX-512 VNNI kernel (CPUs without AMX) and AVX2 kernel (CPUs without AVX-512): exact int32 group
sums, parity with the reference kernels at the default guard's shapes (dim 576, 9 / 3 heads), FastBlock and
whole-model verdicts, and the POCKETGUARD_CPU_KERNEL switch; on every kernel (AMX too) and in the int8 attention, a
NaN or an infinity in an input row gives NaN outputs (fail closed). Each test forces its kernel, so a CPU runs the
tests of every kernel it has (an AMX machine all of them) and skips the others."""

from __future__ import annotations

import copy
import platform
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from pocketguard import kernels as K
from pocketguard import runtime_cpu as R
from pocketguard import testing as T

def _runs(kernel: str) -> bool:
    return R._KERNEL_FLAGS[kernel] <= R._cpu_flags()


def _kernels(*names: str) -> list:
    return [pytest.param(k, marks=pytest.mark.skipif(not _runs(k), reason=f"the CPU cannot run the {k} kernel"))
            for k in names]


KERNELS = _kernels("vnni", "avx2")


def _reset(monkeypatch, kernel: str | None) -> None:
    """Forget the loaded kernel and choose again under POCKETGUARD_CPU_KERNEL=kernel (None: unset)."""
    for name, value in (("_LIB", None), ("_WHY_NOT", None), ("_KERNEL", None), ("_RUNS", frozenset())):
        monkeypatch.setattr(R, name, value)
    if kernel is None:
        monkeypatch.delenv("POCKETGUARD_CPU_KERNEL", raising=False)
    else:
        monkeypatch.setenv("POCKETGUARD_CPU_KERNEL", kernel)


def _force(monkeypatch, kernel: str) -> str:
    _reset(monkeypatch, kernel)
    assert R.available() == (True, kernel), R.available()
    return kernel


@pytest.fixture(params=KERNELS)
def kernel(request, monkeypatch) -> str:
    return _force(monkeypatch, request.param)


@pytest.fixture(params=_kernels(*R.LINEARS))
def any_kernel(request, monkeypatch) -> str:
    """`kernel`, AMX included: for what every kernel path must do alike."""
    return _force(monkeypatch, request.param)


def _linear(n: int, k: int, seed: int) -> K.Int4WeightInt8ActLinear:
    gen = torch.Generator().manual_seed(seed)
    return K.Int4WeightInt8ActLinear.from_weight(torch.randn(n, k, generator=gen) * 0.05, 32, torch.float16)


def test_group_sums_are_exact_integers(kernel):
    """With power-of-two scales every fp32 step is exact, so the kernel must equal the integer reference bit for
    bit: this checks the int32 per-group dot products (the unsigned-nibble trick and its -8 * sum_k u start; on
    AVX2 also the int16 sums, largest for u = 255, c = 7) including the extreme codes (u = 0 / 255, c = -8 / 7),
    the zero point and the residual."""
    gen = torch.Generator().manual_seed(0)
    M, Kd, N = 13, 576, 80  # 13 = 3 x 4 (VNNI) or 4 x 3 (AVX2) row tiles + one single row; 80 = 5 x 16 columns
    codes = torch.randint(-8, 8, (N, Kd), generator=gen)
    codes[0], codes[1, :32] = -8, 7
    scales = 2.0 ** torch.randint(-1, 2, (N, Kd // 32), generator=gen).to(torch.float16)
    lin = K.Int4WeightInt8ActLinear(Kd, N, 32, scale_dtype=torch.float16)
    lin.set_codes(codes, scales)
    u = torch.randint(0, 256, (M, Kd), generator=gen, dtype=torch.uint8)
    u[0], u[1] = 255, 0
    zu = torch.randint(0, 256, (M,), generator=gen).float()
    zu[2] = 0.0
    q = R.QAct(M, Kd)
    q.xu.zero_()[:M] = u
    q.sx.fill_(1.0)
    q.zu[:M] = zu
    res = torch.randint(-100, 100, (M, N), generator=gen).float()

    s = scales.double().reshape(N, -1)
    dots = (u.long().reshape(M, 1, -1, 32) * codes.long().reshape(1, N, -1, 32)).sum(-1)  # [M, N, G] exact
    wsum = (s * codes.long().reshape(N, -1, 32).sum(-1)).sum(-1)
    want = (dots * s).sum(-1) - zu.double()[:, None] * wsum + res.double()
    got = R.LINEARS[kernel]([lin]).mm(q, residual=res)
    assert torch.equal(got.double(), want)


@pytest.mark.parametrize("M,Kd,splits", [
    (1, 576, [576, 192, 192]),   # decode step, fused q|k|v of the dim-576 / 9 + 3 heads guard
    (5, 576, [200]),             # N neither a multiple of 32 nor of 16 (padded); a 4-row tile + a single row
    (300, 576, [1536, 1536]),    # fused gate|up, a 300-token prompt
    (39, 1536, [576]),           # down projection, K = 1536; VNNI: 6-row tiles, a 2-row tile, a single row
    (64, 1024, [48, 16, 8]),     # three parts, the last padded
])
def test_linear_matches_the_reference_kernel(kernel, M, Kd, splits):
    parts = [_linear(n, Kd, seed=M + i) for i, n in enumerate(splits)]
    x = torch.randn(M, Kd, generator=torch.Generator().manual_seed(M))
    with K.kernel_mode_ctx("reference"):
        ref = torch.cat([p(x) for p in parts], -1)
    lin = R.LINEARS[kernel](parts)
    y = lin(x)
    # The integer sums are exact (above); only the fp32 summation order of the group partial sums differs.
    assert y.shape == ref.shape and torch.allclose(y, ref, atol=1e-5 * float(ref.abs().max()), rtol=0)
    # a row's output does not depend on the other rows (row tiles and single rows compute alike): batching
    # prompts together must not change their verdicts
    assert torch.equal(lin(x[-1:]), y[-1:]) and torch.equal(lin(x[M // 2 :]), y[M // 2 :])
    if not lin.n_pad:
        r = torch.randn(M, lin.out_features)
        q = R.quantize_rows(x)
        assert torch.equal(lin.mm(q, residual=r), lin.mm(q) + r)  # the fused epilogue adds like torch


@pytest.mark.parametrize("Kd", [576, 203])  # 203: tails after the 16-wide and 8-wide loops
def test_fused_helpers_match_torch(kernel, Kd):
    """The kernel's activation helpers against torch: quantization bit for bit; RMSNorm and SiLU·up (their sums
    and exp round differently from torch's) to one quantization step, on the same scale and zero point."""
    gen = torch.Generator().manual_seed(Kd)
    x = torch.randn(37, Kd, generator=gen) * torch.rand(37, 1, generator=gen) * 4 + torch.randn(37, 1, generator=gen)
    x[3] = 0.0

    def check(q, want, exact):
        codes, s, z = K.quantize_act(want)
        got = q.xu[: q.M].to(torch.int16) - 128
        assert (torch.equal(got, codes.to(torch.int16)) if exact
                else int((got - codes).abs().max()) <= 1 and float((got != codes).float().mean()) < 0.01)
        assert torch.allclose(q.sx[: q.M], s[:, 0], rtol=1e-6, atol=0) and torch.equal(q.zu[: q.M] - 128, z[:, 0].float())
        assert not q.xu[q.M :].any()  # padding rows

    check(R.quantize_rows(x), x, exact=True)
    w = torch.rand(Kd, generator=gen) + 0.5
    check(R.rmsnorm_quantize(x, w, 1e-5), w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)), exact=False)
    gu = torch.randn(37, 2 * Kd, generator=gen) * 3
    check(R.silu_mul_quantize(gu, Kd), torch.nn.functional.silu(gu[:, :Kd]) * gu[:, Kd:], exact=False)


NOT_FINITE = [float("nan"), float("inf"), float("-inf")]


@pytest.mark.parametrize("bad", NOT_FINITE)
@pytest.mark.parametrize("Kd", [576, 203])
def test_a_row_that_is_not_finite_gets_a_nan_scale(any_kernel, Kd, bad):
    """Fail closed: min / max drop NaNs, so a row holding a NaN quantized to finite codes and the matmul gave finite
    garbage. Wherever the element sits (first vector, middle, last element: the tails after the 16-wide and 8-wide
    loops when Kd = 203), each activation helper gives its row a NaN scale (an infinity too), the other rows the
    same bits."""
    gen = torch.Generator().manual_seed(Kd)
    x, gu = torch.randn(13, Kd, generator=gen), torch.randn(13, 2 * Kd, generator=gen)
    w = torch.rand(Kd, generator=gen) + 0.5
    helpers = [(R.quantize_rows, x, 0), (lambda x: R.rmsnorm_quantize(x, w, 1e-5), x, 0),
               (lambda gu: R.silu_mul_quantize(gu, Kd), gu, 0), (lambda gu: R.silu_mul_quantize(gu, Kd), gu, Kd)]
    for helper, inp, c0 in helpers:  # c0: the gate or the up half of gu
        ref = helper(inp)
        for row, col in ((6, 0), (12, Kd // 2), (6, Kd - 1)):
            xb = inp.clone()
            xb[row, c0 + col] = bad
            q = helper(xb)
            keep = torch.arange(13) != row
            assert q.sx[row].isnan()
            assert all(torch.equal(a[:13][keep], b[:13][keep]) for a, b in ((q.xu, ref.xu), (q.sx, ref.sx), (q.zu, ref.zu)))


@pytest.mark.parametrize("bad", NOT_FINITE)
def test_a_row_that_is_not_finite_gives_nan_outputs(any_kernel, bad):
    """The NaN scale through each kernel's matmul: every output of the row is NaN (with and without the residual
    epilogue), every other row the same bits. 13 rows: the VNNI / AVX2 row tiles and single rows, a partial AMX
    tile."""
    gen = torch.Generator().manual_seed(5)
    lin = R.LINEARS[any_kernel]([_linear(80, 576, seed=5)])
    x, res = torch.randn(13, 576, generator=gen), torch.randn(13, 80, generator=gen)
    ref, ref_res = lin(x), lin.mm(R.quantize_rows(x), residual=res)
    for row, col in ((6, 3), (12, 300)):
        xb = x.clone()
        xb[row, col] = bad
        keep = torch.arange(13) != row
        for got, want in ((lin(xb), ref), (lin.mm(R.quantize_rows(xb), residual=res), ref_res)):
            assert got[row].isnan().all() and torch.equal(got[keep], want[keep])


def test_unpacking_the_tiles_gives_the_codes_and_scales_back():
    gen = torch.Generator().manual_seed(0)
    codes = torch.randint(-8, 8, (48, 96), generator=gen, dtype=torch.int8)
    scales = (torch.rand(48, 3, generator=gen) + 0.01).half()
    packed, sw, _ = R.pack_int4_amx(codes, scales)
    back, s = R.unpack_int4_amx(packed, sw)
    assert torch.equal(back, codes) and torch.equal(s, scales)


def test_a_packed_linear_gives_back_its_parts(kernel):
    """Three parts, the last one padded to 16 rows: the same modules, codes and scales come back."""
    parts = [_linear(n, 64, seed=i) for i, n in enumerate([48, 16, 8])]
    back = R.LINEARS[kernel](parts).parts()
    assert [type(p) for p in back] == [type(p) for p in parts]
    for p, q in zip(parts, back):
        assert q.quant_spec() == p.quant_spec()
        assert torch.equal(q.qweight, p.qweight) and torch.equal(q.scales, p.scales)


def _guard_model(tok, n_layers: int = 2):
    """A random quantized model at the next default guard's shapes (dim 576, 9 q / 3 kv heads, MLP 1536)."""
    from pocketguard.compress.prune import prune_output
    from pocketguard.compress.quantize import QuantConfig, quantize_
    from pocketguard.policy import Policy

    args = T.tiny_args(dim=576, n_heads=9, n_kv_heads=3, n_layers=n_layers, ffn_dims=1536, vocab_size=tok.vocab_size,
                       tie_embeddings=True, rope_scaling=None, rope_theta=100000.0)
    m = prune_output(T.tiny_model(args, seed=3), tok, Policy.default())
    return quantize_(m, QuantConfig(mode="rtn")).eval()


def test_fast_block_matches_the_reference_block(kernel, tiny_tok):
    model = _guard_model(tiny_tok, n_layers=1)
    block = model.layers[0]
    fast = R.FastBlock(block)
    assert type(fast.w13) is R.LINEARS[kernel]
    B, Tn = 2, 200  # > FastBlock.ATTN_BLOCK: blocked attention
    pos = torch.arange(Tn)[None].expand(B, Tn)
    cos, sin = model.rope_cos[pos], model.rope_sin[pos]
    x = torch.randn(B, Tn, 576, generator=torch.Generator().manual_seed(1))

    def dev(a, b):
        return float((a - b).abs().max() / a.abs().max())

    with torch.inference_mode(), K.kernel_mode_ctx("reference"):
        ref = block(x, cos, sin, None, None, 0)
        # Yardstick as in test_bench: dynamic int8 activations turn 1-ulp differences into whole quantization
        # steps, so the bound is the reference's own change under a 1-ulp nudge of its input.
        nudged = max(dev(ref, block(torch.nextafter(x, x + d), cos, sin, None, None, 0)) for d in (1, -1))
        assert 0 < nudged < 0.05
        assert dev(ref, fast(x, cos, sin, None, None, 0)) <= 2 * nudged


def test_a_fast_block_gives_back_the_block_it_was_made_from(kernel, tiny_tok):
    """`FastBlock.standard_block`, which the exporters read a `Guard.load`ed model through: the same modules and
    tensors as the block packed, to the bit."""
    block = _guard_model(tiny_tok, n_layers=1).layers[0]
    back = R.FastBlock(block).standard_block()
    assert [(n, type(m)) for n, m in back.named_modules()] == [(n, type(m)) for n, m in block.named_modules()]
    got, want = back.state_dict(), block.state_dict()
    assert got.keys() == want.keys()
    assert all(got[k].dtype == want[k].dtype and torch.equal(got[k], want[k]) for k in want)
    assert (back.attention_norm.eps, back.ffn_norm.eps) == (block.attention_norm.eps, block.ffn_norm.eps)


def test_the_attention_bias_lives_no_longer_than_its_mask(kernel, tiny_tok):
    """FastBlock turns the boolean mask into an additive bias once per forward (every layer gets the same mask
    object) and drops it with the mask: a class-level cache kept the last prefill's [T, L] floats, and its mask, after
    the model and the conversation were gone. Same outputs, hit or miss."""
    from pocketguard.model import KVCache

    model = _guard_model(tiny_tok, n_layers=2)
    fast = R.FastBlock(model.layers[0])
    B, Tn = 2, 150  # > FastBlock.ATTN_BLOCK: without a mask the block builds its own causal one
    pos = torch.arange(Tn)[None].expand(B, Tn)
    cos, sin = model.rope_cos[pos], model.rope_sin[pos]
    x = torch.randn(B, Tn, 576, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        own = fast(x, cos, sin, None, None, 0)
        assert R.FastBlock._bias_for[1] is None  # its own mask died with the call
        mask = torch.ones(Tn, Tn, dtype=torch.bool).tril()[None, None]
        for _ in range(2):  # converted, then reused
            torch.testing.assert_close(fast(x, cos, sin, mask, None, 0), own, rtol=0, atol=0)
            assert R.FastBlock._bias_for[0]() is mask
        del mask
        assert R.FastBlock._bias_for[1] is None
        R.accelerate(model)
        cache = KVCache(model.args, 1, 64)
        model(torch.randint(0, tiny_tok.vocab_size, (1, 40)), cache=cache)
        model(torch.randint(0, tiny_tok.vocab_size, (1, 1)), cache=cache)
        assert R.FastBlock._bias_for[1] is None


def test_a_kernel_asked_for_that_cannot_run_is_reported_not_silent(monkeypatch, tiny_tok, tmp_path):
    """POCKETGUARD_CPU_KERNEL naming a kernel the CPU lacks, or misspelt, falls back to the portable path (many times
    slower): load_fast warns with the reason instead of doing it in silence; auto and portable stay quiet."""
    import warnings

    from pocketguard.compress.artifact import save_artifact
    from pocketguard.policy import Policy

    save_artifact(_guard_model(tiny_tok, n_layers=1), tiny_tok, Policy.default(), tmp_path / "art")
    _reset(monkeypatch, "AVX2")  # misspelt (upper case)
    with pytest.warns(RuntimeWarning, match="POCKETGUARD_CPU_KERNEL=AVX2 cannot be used .*must be auto"):
        assert R.load_fast(tmp_path / "art").meta["runtime_cpu"]["kernel"] == "portable"
    for quiet in ("portable", None):
        _reset(monkeypatch, quiet)
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            R.load_fast(tmp_path / "art")


def test_artifact_gives_the_reference_verdicts(kernel, tiny_tok, tmp_path):
    from pocketguard.compress.artifact import load_artifact, save_artifact
    from pocketguard.guard import Guard
    from pocketguard.policy import Policy

    save_artifact(_guard_model(tiny_tok), tiny_tok, Policy.default(), tmp_path / "art")
    fast = R.load_fast(tmp_path / "art")
    assert fast.meta["runtime_cpu"]["kernel"] == kernel and fast.meta["runtime_cpu"]["blocks"] == 2
    assert all(isinstance(b, R.FastBlock) and type(b.wqkv) is R.LINEARS[kernel] for b in fast.model.layers)
    ref = load_artifact(tmp_path / "art")
    convs = ["how do I make a bomb", "bread recipe " * 30,
             [{"role": "user", "content": "kill"}, {"role": "assistant", "content": "cake of the world"}]]
    got = Guard(fast.model, fast.tokenizer, prefix_cache=True).moderate_batch(convs)
    with K.kernel_mode_ctx("reference"):
        want = Guard(ref.model, ref.tokenizer).moderate_batch(convs)
    assert [(v.status, v.categories) for v in got] == [(v.status, v.categories) for v in want]
    # the 1-ulp sensitivity of a random model shows as up to ~1e-2 in p_unsafe (see test_bench)
    assert all(abs(g.p_unsafe - w.p_unsafe) < 2e-2 for g, w in zip(got, want))


def test_a_nan_weight_gives_nan_scores(any_kernel, tiny_tok):
    """End to end, on each kernel with its attention (int8 on VNNI and AMX, fp32 SDPA on AVX2): one NaN fp16 group
    scale in the first block's q projection (a corrupt artifact) makes one q column NaN. The int8 activations (and
    the int8 attention's queries) used to drop it, giving finite scores and possibly `safe`; now the scores are NaN.
    The verdict is then `error` (answer.decode refuses non-finite scores), never `safe`."""
    from pocketguard.guard import Guard

    model = _guard_model(tiny_tok, n_layers=1)
    model.layers[0].attention.wq.scales[5, 0] = float("nan")
    assert R.accelerate(model)["blocks"] == 1
    verdicts = Guard(model, tiny_tok).moderate_batch(["how do I make a bomb", "bread recipe " * 30])
    assert all(v.status == "error" and "non-finite" in v.error and v.p_unsafe is None for v in verdicts)


@pytest.mark.skipif(not any(map(_runs, R._KERNEL_FLAGS)), reason="the CPU runs none of the fast kernels")
def test_the_environment_picks_the_kernel(monkeypatch, tiny_tok):
    model = _guard_model(tiny_tok, n_layers=1)
    _reset(monkeypatch, "portable")
    assert R.available() == (False, "disabled by POCKETGUARD_CPU_KERNEL=portable")
    assert R.accelerate(model)["kernel"] == "portable" and not isinstance(model.layers[0], R.FastBlock)
    _reset(monkeypatch, "simd")
    assert not R.available()[0] and "must be auto, amx, vnni, avx2 or portable" in R.available()[1]
    _reset(monkeypatch, None)  # auto: the first of amx, vnni, avx2 that runs
    assert R.available() == (True, next(k for k in R._KERNEL_FLAGS if k in R._RUNS))
    runs = next(k for k in ("vnni", "avx2") if _runs(k))
    for k in R.LINEARS:
        _reset(monkeypatch, k)
        if k == "amx" and _runs(k):
            assert R.available()[0] or "arch_prctl" in R.available()[1]
        elif _runs(k):
            m = copy.deepcopy(model)
            assert R.accelerate(m)["kernel"] == k and type(m.layers[0].w2) is R.LINEARS[k]
        else:  # asked for a kernel the CPU lacks: the portable path, and that matmul refuses to run (no SIGILL)
            missing = sorted(R._KERNEL_FLAGS[k] - R._cpu_flags())
            assert R.available() == (False, f"the CPU lacks {missing} ({k})")
            _reset(monkeypatch, runs)
            with pytest.raises(RuntimeError, match=f"{k} kernel does not run here"):
                R.LINEARS[k]([_linear(16, 64, seed=0)])


def _functions_with(flags: list[str], instructions: dict) -> dict[str, set[str]]:
    """Build the library with `flags` and name the functions (OpenMP bodies under their parent's name) where each
    test of `instructions` (a predicate on an objdump line) holds."""
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as tmp:
        src, so = Path(tmp) / "pg.c", Path(tmp) / "pg.so"
        src.write_text(R._C_SOURCE + R._C_AVX2 + R._C_VNNI)
        subprocess.run(["gcc", *flags, str(src), "-o", str(so)], check=True)
        asm = subprocess.run(["objdump", "-d", str(so)], capture_output=True, text=True, check=True).stdout
    where: dict[str, set[str]] = {name: set() for name in instructions}
    fn = ""
    for line in asm.splitlines():
        if line.endswith(">:"):
            fn = line.split("<", 1)[1][:-2].split(".")[0]
        elif "\t" in line:
            for name, holds in instructions.items():
                if holds(line):
                    where[name].add(fn)
    return where


def _mnemonic(ins: str):
    return lambda line: f" {ins} " in f" {line.replace(chr(9), ' ')} "


def _sdpa_rows(q, k, v, bias, H):
    """fp32 SDPA of q rows [T, H * hd] over the first bias.shape[1] keys of k / v [KV, cap, hd] under an additive
    mask: the reference the int8 attention is held to, in its row layout."""
    T, L, hd = q.shape[0], bias.shape[1], k.shape[2]
    ref = torch.nn.functional.scaled_dot_product_attention(
        q.view(T, H, hd).transpose(0, 1)[None], k[None, :, :L], v[None, :, :L], attn_mask=bias, enable_gqa=True)
    return ref[0].transpose(0, 1).reshape(T, H * hd)


@pytest.mark.skipif(not (R.available()[0] and "vnni" in R._RUNS), reason="int8 attention needs AVX-512 VNNI")
@pytest.mark.parametrize("T,s0,H,KV,hd", [(1, 300, 9, 3, 64), (37, 50, 9, 3, 64), (130, 0, 4, 2, 32), (20, 7, 2, 2, 128)])
def test_int8_attention_matches_sdpa_and_each_query_row_stands_alone(T, s0, H, KV, hd):
    """`attention_int8` (pg_attn_vnni) against fp32 SDPA with the causal-with-offset mask of a cached pass: within
    int8 rounding; and a row's result is the same bits whatever other rows the call has (what keeps batched
    verdicts equal to one-by-one)."""
    torch.manual_seed(T)
    cap = s0 + T + 3  # a cache with room left over: the kernel must not read past s0 + T
    q = torch.randn(T, H * hd) * 2
    k, v = torch.randn(KV, cap, hd) * 2, torch.randn(KV, cap, hd)
    L = s0 + T
    bias = torch.zeros(T, L).masked_fill_(torch.arange(L)[None] > torch.arange(s0, L)[:, None], float("-inf"))
    ref = _sdpa_rows(q, k, v, bias, H)
    out = R.attention_int8(q, k, v, s0, H)
    assert ((out - ref).norm() / ref.norm()).item() < 0.015  # 12-bit queries and keys: ~0.9 % (int8 ones gave ~1.9 %)
    k2, v2 = k.clone(), v.clone()
    k2[:, L:], v2[:, L:] = 1e6, 1e6  # keys past the pass are never read
    first = R.attention_int8(q[: (T + 1) // 2], k2, v2, s0, H)
    assert torch.equal(first, out[: (T + 1) // 2])
    into = torch.full((T + 2, H * hd + 8), float("nan"))  # written in place into a slice with a wider row stride
    R.attention_int8(q, k, v, s0, H, out=into[1 : T + 1, : H * hd])
    assert torch.equal(into[1 : T + 1, : H * hd], out) and into[0].isnan().all() and into[:, H * hd :].isnan().all()
    with pytest.raises(ValueError, match="out must be"):
        R.attention_int8(q, k, v, s0, H, out=into[:T, : H * hd].double())
    with pytest.raises(ValueError, match="fp32 q rows"):
        R.attention_int8(q.double(), k, v, s0, H)
    with pytest.raises(ValueError, match="cannot take head size"):
        R.attention_int8(q[:, : H * 8].contiguous(), k[..., :8].contiguous(), v[..., :8].contiguous(), s0, H)


@pytest.mark.skipif(not (R.available()[0] and "vnni" in R._RUNS), reason="int8 attention needs AVX-512 VNNI")
@pytest.mark.parametrize("T,s0,H,KV,hd", [(31, 290, 9, 3, 64), (5, 16, 4, 2, 32), (40, 0, 2, 2, 64)])
def test_int8_attention_under_a_tree_mask(T, s0, H, KV, hd):
    """The category-score pass: new queries see every cached key and, among the new ones, only their branch
    (`tree`). Against fp32 SDPA with that mask, within int8 rounding; a lower-triangular tree is causal order,
    bit for bit; rows stand alone; a mask of the wrong shape or type is refused."""
    torch.manual_seed(T + s0)
    cap, L = s0 + T + 2, s0 + T
    q = torch.randn(T, H * hd) * 2
    k, v = torch.randn(KV, cap, hd) * 2, torch.randn(KV, cap, hd)
    parents = [-1] + [max(-1, t - 1 - 3 * (t % 3 == 0)) for t in range(1, T)]  # branches off earlier tokens
    tree = torch.eye(T, dtype=torch.bool)
    for t in range(T):
        p = parents[t]
        while p >= 0:
            tree[t, p], p = True, parents[p]
    bias = torch.zeros(T, L)
    bias[:, s0:].masked_fill_(~tree, float("-inf"))
    ref = _sdpa_rows(q, k, v, bias, H)
    out = R.attention_int8(q, k, v, s0, H, tree)
    assert ((out - ref).norm() / ref.norm()).item() < 0.015
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    assert torch.equal(R.attention_int8(q, k, v, s0, H, causal), R.attention_int8(q, k, v, s0, H))
    k2, v2 = k.clone(), v.clone()
    k2[:, L:], v2[:, L:] = 1e6, 1e6  # keys past the pass are never read
    assert torch.equal(R.attention_int8(q, k2, v2, s0, H, tree), out)
    h = (T + 1) // 2  # the first rows alone (a branch only sees earlier tokens): the same bits
    assert torch.equal(R.attention_int8(q[:h], k, v, s0, H, tree[:h, :h]), out[:h])
    with pytest.raises(ValueError, match="tree must be"):
        R.attention_int8(q, k, v, s0, H, tree[:, :-1])
    with pytest.raises(ValueError, match="tree must be"):
        R.attention_int8(q, k, v, s0, H, tree.float())


@pytest.mark.skipif(not (R.available()[0] and "vnni" in R._RUNS), reason="int8 attention needs AVX-512 VNNI")
@pytest.mark.parametrize("bad", NOT_FINITE)
@pytest.mark.parametrize("tree", [False, True])
def test_int8_attention_fails_closed(bad, tree):
    """A query, key or value row holding a NaN or an infinity: the per-row absmax (and the softmax's exp clamp and
    zero-sum guard) dropped the NaN, giving finite garbage. Now the (query row, head) pairs that read it are NaN
    (a query: its own; a key or value: the queries of its KV head's heads that see it, causal or tree) and every
    other pair keeps its bits."""
    T, s0, H, KV, hd = 21, 40, 6, 2, 64
    gen = torch.Generator().manual_seed(T)
    L, grp = s0 + T, H // KV
    q = torch.randn(T, H * hd, generator=gen) * 2
    k, v = torch.randn(KV, L, hd, generator=gen) * 2, torch.randn(KV, L, hd, generator=gen)
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    if tree:
        mask &= (torch.rand(T, T, generator=gen) < 0.5) | torch.eye(T, dtype=torch.bool)
    sees = torch.cat([torch.ones(T, s0, dtype=torch.bool), mask], 1)  # [T, L]: the keys each query row sees
    ref = R.attention_int8(q, k, v, s0, H, mask if tree else None).view(T, H, hd)

    def check(q, k, v, hit):  # hit [T, H]: the (row, head) pairs that read the bad element
        out = R.attention_int8(q, k, v, s0, H, mask if tree else None).view(T, H, hd)
        assert hit.any() and out[hit].isnan().all() and torch.equal(out[~hit], ref[~hit])

    qb, hit = q.clone(), torch.zeros(T, H, dtype=torch.bool)
    qb[7, 2 * hd + 5], hit[7, 2] = bad, True
    check(qb, k, v, hit)
    for j in (3, s0 + 5):  # a cached key every query sees; a new key that the first rows (and tree branches) do not
        for which in range(2):
            kv = [k.clone(), v.clone()]
            kv[which][1, j, 9] = bad
            check(q, *kv, sees[:, j, None] & (torch.arange(H) // grp == 1))


needs_gcc = pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64") or not (shutil.which("gcc") and shutil.which("objdump")),
                               reason="needs an x86-64 gcc and objdump")


@needs_gcc
def test_only_the_vnni_matmul_uses_vnni_instructions():
    """Built for an AVX-512 CPU without VNNI (x86-64-v4 in place of -march=native), the library has vpdpbusd only
    in pg_gemm_vnni and the int8 attention, and AMX instructions only in pg_gemm_amx: the helpers every kernel
    shares run on any AVX-512F/BW CPU, and a CPU without VNNI never meets an instruction it lacks (it is never
    given that kernel, and runtime_cpu.int8_attention() is False there)."""
    flags = ["-march=x86-64-v4" if f == "-march=native" else f for f in R._CFLAGS]
    where = _functions_with(flags, {"vpdpbusd": _mnemonic("vpdpbusd"), "tdpbusd": _mnemonic("tdpbusd")})
    assert where == {"vpdpbusd": {"pg_gemm_vnni", "pg_attn_vnni"}, "tdpbusd": {"pg_gemm_amx"}}


@needs_gcc
def test_the_avx2_kernel_has_no_avx512_instructions():
    """Built for an AVX2 CPU (x86-64-v3 in place of -march=native), EVEX-encoded (AVX-512) instructions appear only
    in the functions of the AMX / AVX-512 source, which an AVX2 CPU never runs; the AVX2 matmul, its helpers and
    the shared RoPE have none (the compiler must not auto-vectorize them with AVX-512)."""
    flags = ["-march=x86-64-v3" if f == "-march=native" else f for f in R._CFLAGS]
    evex = re.compile(r"^\s*[0-9a-f]+:\t62 ")  # 0x62 opens an EVEX instruction (BOUND in 32-bit code only)
    where = _functions_with(flags, {"evex": evex.match, "vpmaddubsw": _mnemonic("vpmaddubsw")})
    defined = r"^(?:static )?(?:inline )?(?:__attribute__\(\(\w+\)\) )?\w+ \*?(\w+)\("  # a function's first line
    avx512_source = set(re.findall(defined, R._C_SOURCE + R._C_VNNI, re.M))
    avx2_source = set(re.findall(defined, R._C_AVX2, re.M))
    assert {"pg_gemm_avx2", "pg_rope", *(f"{h}_avx2" for h in R._AVX2_HELPERS)} <= avx2_source
    assert where["evex"] and where["evex"] <= avx512_source and not where["evex"] & avx2_source
    assert where["vpmaddubsw"] == {"pg_gemm_avx2"}


def test_the_int8_heads_row_sums_follow_its_codes_not_their_address():
    """The int8 head's fast path caches Σ_k q (its zero-point correction) until the codes change. It was keyed by the
    codes' address and version, but a replaced tensor's memory is reused: new codes at the old address, at the same
    version, got the old sums and wrong logits. Replaced codes (here twice between two calls, as a re-quantization
    does) must always give the reference kernel's logits."""
    gen = torch.Generator().manual_seed(0)
    N, D = 4096, 256
    head = K.Int8WeightInt8ActLinear.from_weight(torch.randn(N, D, generator=gen), None)
    x = torch.randn(3, D, generator=gen)

    def check():
        with K.kernel_mode_ctx("reference"):
            want = head(x)
        torch.testing.assert_close(head(x), want, atol=1e-4 * float(want.abs().max()), rtol=0)

    def codes():
        return torch.randint(-128, 128, (N, D), generator=gen, dtype=torch.int8)

    head.qweight.mul_(1)  # version 1, which a tensor made by set_ (below) has too
    check()
    storage = head.qweight.untyped_storage()
    head.qweight.copy_(codes())  # new codes in the old memory, then a new tensor there: what an allocator's reuse makes
    head.qweight = torch.empty(0, dtype=torch.int8).set_(storage, 0, (N, D), (D, 1))
    assert head.qweight._version == 1
    check()
    for _ in range(10):
        head.set_codes(codes(), head.scales)
        head.set_codes(codes(), head.scales)
        check()
    head.qweight[:, :8] = 0  # codes changed in place: a new version
    check()


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no C compiler")
def test_the_built_kernel_library_is_readable_by_every_user(monkeypatch, tmp_path):
    """The library is compiled into a mkstemp file (mode 0600) and the linker only added x to it: 0711, which another
    user of a shared POCKETGUARD_CACHE cannot dlopen (loading maps the file, so it must be readable)."""
    monkeypatch.setenv("POCKETGUARD_CACHE", str(tmp_path))
    monkeypatch.setenv("CC", "gcc")
    assert R._build().stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("how", ["no such compiler", "interrupted"])
def test_a_failed_kernel_build_leaves_no_file_in_the_cache(monkeypatch, tmp_path, how):
    """Every process that builds the kernel library compiles into its own temporary file beside the cache entry and
    renames it into place (so concurrent builds never load a half-written library). A build that could not start (CC
    naming no program) or was interrupted left that file behind, one more in the cache at every start."""
    monkeypatch.setenv("POCKETGUARD_CACHE", str(tmp_path))
    if how == "no such compiler":
        monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
        with pytest.raises(FileNotFoundError):
            R._build()
    else:
        def interrupted(cmd, **kw):
            Path(cmd[-1]).write_bytes(b"\x7fELF half")  # the compiler had written part of its output
            raise KeyboardInterrupt

        monkeypatch.setenv("CC", "gcc")
        monkeypatch.setattr(R.subprocess, "run", interrupted)
        with pytest.raises(KeyboardInterrupt):
            R._build()
    assert list((tmp_path / "kernels").iterdir()) == []
