"""runtime_cpu's AVX-512 VNNI kernel (CPUs without AMX): exact int32 group sums, parity with the reference
kernels at the default guard's shapes (dim 576, 9 / 3 heads), FastBlock and whole-model verdicts, and the
POCKETGUARD_CPU_KERNEL switch. Each test forces the VNNI kernel, so these also run on AMX machines."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import torch

from pocketguard import kernels as K
from pocketguard import runtime_cpu as R
from pocketguard import testing as T

pytestmark = pytest.mark.skipif(
    "avx512_vnni" not in R._cpu_flags() or not {"avx512f", "avx512bw"} <= R._cpu_flags(),
    reason="the CPU lacks AVX-512 VNNI (or AVX-512F/BW): the VNNI kernel cannot run here")


def _reset(monkeypatch, kernel: str | None) -> None:
    """Forget the loaded kernel and choose again under POCKETGUARD_CPU_KERNEL=kernel (None: unset)."""
    for name, value in (("_LIB", None), ("_WHY_NOT", None), ("_KERNEL", None), ("_RUNS", frozenset())):
        monkeypatch.setattr(R, name, value)
    if kernel is None:
        monkeypatch.delenv("POCKETGUARD_CPU_KERNEL", raising=False)
    else:
        monkeypatch.setenv("POCKETGUARD_CPU_KERNEL", kernel)


@pytest.fixture
def vnni(monkeypatch):
    _reset(monkeypatch, "vnni")
    assert R.available() == (True, "vnni"), R.available()


def _linear(n: int, k: int, seed: int) -> K.Int4WeightInt8ActLinear:
    gen = torch.Generator().manual_seed(seed)
    return K.Int4WeightInt8ActLinear.from_weight(torch.randn(n, k, generator=gen) * 0.05, 32, torch.float16)


def test_group_sums_are_exact_integers(vnni):
    """With power-of-two scales every fp32 step is exact, so the kernel must equal the integer reference bit for
    bit: this checks the int32 per-group dot products (the unsigned-nibble trick and its -8 * sum_k u start)
    including the extreme codes (u = 0 / 255, c = -8 / 7), the zero point and the residual."""
    gen = torch.Generator().manual_seed(0)
    M, Kd, N = 13, 576, 80  # 13 = three 4-row tiles + one single row; 80 = two 32-column tiles + one 16
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
    got = R.VnniInt4Linear([lin]).mm(q, residual=res)
    assert torch.equal(got.double(), want)


@pytest.mark.parametrize("M,Kd,splits", [
    (1, 576, [576, 192, 192]),   # decode step, fused q|k|v of the dim-576 / 9 + 3 heads guard
    (5, 576, [200]),             # N neither a multiple of 64 nor of 16 (padded); 4-row tile + 1 row
    (300, 576, [1536, 1536]),    # fused gate|up, a 300-token prompt
    (37, 1536, [576]),           # down projection, K = 1536
    (64, 1024, [48, 16, 8]),     # three parts, the last padded
])
def test_vnni_linear_matches_the_reference_kernel(vnni, M, Kd, splits):
    parts = [_linear(n, Kd, seed=M + i) for i, n in enumerate(splits)]
    x = torch.randn(M, Kd, generator=torch.Generator().manual_seed(M))
    with K.kernel_mode_ctx("reference"):
        ref = torch.cat([p(x) for p in parts], -1)
    lin = R.VnniInt4Linear(parts)
    y = lin(x)
    # The integer sums are exact (above); only the fp32 summation order of the group partial sums differs.
    assert y.shape == ref.shape and torch.allclose(y, ref, atol=1e-5 * float(ref.abs().max()), rtol=0)
    # a row's output does not depend on the other rows (4-row tiles and single rows compute alike): batching
    # prompts together must not change their verdicts
    assert torch.equal(lin(x[-1:]), y[-1:]) and torch.equal(lin(x[M // 2 :]), y[M // 2 :])
    if not lin.n_pad:
        r = torch.randn(M, lin.out_features)
        q = R.quantize_rows(x)
        assert torch.equal(lin.mm(q, residual=r), lin.mm(q) + r)  # the fused epilogue adds like torch


def _guard_model(tok, n_layers: int = 2):
    """A random quantized model at the next default guard's shapes (dim 576, 9 q / 3 kv heads, MLP 1536)."""
    from pocketguard.compress.prune import prune_output
    from pocketguard.compress.quantize import QuantConfig, quantize_
    from pocketguard.policy import Policy

    args = T.tiny_args(dim=576, n_heads=9, n_kv_heads=3, n_layers=n_layers, ffn_dims=1536, vocab_size=tok.vocab_size,
                       tie_embeddings=True, rope_scaling=None, rope_theta=100000.0)
    m = prune_output(T.tiny_model(args, seed=3), tok, Policy.default())
    return quantize_(m, QuantConfig(mode="rtn")).eval()


def test_fast_block_matches_the_reference_block(vnni, tiny_tok):
    model = _guard_model(tiny_tok, n_layers=1)
    block = model.layers[0]
    fast = R.FastBlock(block)
    assert isinstance(fast.w13, R.VnniInt4Linear)
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


def test_vnni_artifact_gives_the_reference_verdicts(vnni, tiny_tok, tmp_path):
    from pocketguard.compress.artifact import load_artifact, save_artifact
    from pocketguard.guard import Guard
    from pocketguard.policy import Policy

    save_artifact(_guard_model(tiny_tok), tiny_tok, Policy.default(), tmp_path / "art")
    fast = R.load_fast(tmp_path / "art")
    assert fast.meta["runtime_cpu"]["kernel"] == "vnni" and fast.meta["runtime_cpu"]["blocks"] == 2
    assert all(isinstance(b, R.FastBlock) and isinstance(b.wqkv, R.VnniInt4Linear) for b in fast.model.layers)
    ref = load_artifact(tmp_path / "art")
    convs = ["how do I make a bomb", "bread recipe " * 30,
             [{"role": "user", "content": "kill"}, {"role": "assistant", "content": "cake of the world"}]]
    got = Guard(fast.model, fast.tokenizer, prefix_cache=True).moderate_batch(convs)
    with K.kernel_mode_ctx("reference"):
        want = Guard(ref.model, ref.tokenizer).moderate_batch(convs)
    assert [(v.status, v.categories) for v in got] == [(v.status, v.categories) for v in want]
    # the 1-ulp sensitivity of a random model shows as up to ~1e-2 in p_unsafe (see test_bench)
    assert all(abs(g.p_unsafe - w.p_unsafe) < 2e-2 for g, w in zip(got, want))


def test_the_environment_picks_the_kernel(monkeypatch, tiny_tok):
    model = _guard_model(tiny_tok, n_layers=1)
    _reset(monkeypatch, "portable")
    assert R.available() == (False, "disabled by POCKETGUARD_CPU_KERNEL=portable")
    assert R.accelerate(model)["kernel"] == "portable" and not isinstance(model.layers[0], R.FastBlock)
    _reset(monkeypatch, "simd")
    assert not R.available()[0] and "must be auto, amx, vnni or portable" in R.available()[1]
    _reset(monkeypatch, "vnni")
    info = R.accelerate(model)
    assert info["kernel"] == "vnni" and isinstance(model.layers[0].w2, R.VnniInt4Linear)
    has_amx = {"amx_int8", "amx_tile"} <= R._cpu_flags()
    _reset(monkeypatch, None)
    assert R.available() == (True, "amx" if "amx" in R._RUNS else "vnni")
    _reset(monkeypatch, "amx")
    if has_amx:
        assert R.available()[0] or "arch_prctl" in R.available()[1]
    else:  # asked for AMX without it: the portable path, and the AMX matmul refuses to run (no SIGILL)
        assert R.available() == (False, "the CPU lacks ['amx_int8', 'amx_tile'] (amx)")
        _reset(monkeypatch, "vnni")
        with pytest.raises(RuntimeError, match="amx kernel does not run here"):
            R.AmxInt4Linear([_linear(16, 64, seed=0)])


@pytest.mark.skipif(not (shutil.which("gcc") and shutil.which("objdump")), reason="needs gcc and objdump")
def test_only_the_vnni_matmul_uses_vnni_instructions(tmp_path):
    """Built for an AVX-512 CPU without VNNI (x86-64-v4 in place of -march=native), the library has vpdpbusd only
    in pg_gemm_vnni, and AMX instructions only in pg_gemm_amx: the helpers every kernel shares run on any
    AVX-512F/BW CPU, and a CPU without VNNI never meets an instruction it lacks (it is never given that kernel)."""
    src = tmp_path / "pg.c"
    src.write_text(R._C_SOURCE + R._C_VNNI)
    flags = ["-march=x86-64-v4" if f == "-march=native" else f for f in R._CFLAGS]
    subprocess.run(["gcc", *flags, str(src), "-o", str(tmp_path / "pg.so")], check=True)
    asm = subprocess.run(["objdump", "-d", str(tmp_path / "pg.so")], capture_output=True, text=True, check=True).stdout
    where: dict[str, set[str]] = {"vpdpbusd": set(), "tdpbusd": set()}
    fn = ""
    for line in asm.splitlines():
        if line.endswith(">:"):
            fn = line.split("<", 1)[1][:-2]
        for ins in where:
            if f" {ins} " in f" {line.replace(chr(9), ' ')} ":
                where[ins].add(fn.split(".")[0])
    assert where == {"vpdpbusd": {"pg_gemm_vnni"}, "tdpbusd": {"pg_gemm_amx"}}
