"""Fast CPU inference for pocketguard's 8da4w artifacts: int8 kernels (AMX, AVX-512 VNNI, AVX2) for int4 weights.

Why a kernel of our own: the compressed artifact's linears are int4 symmetric weights in groups of 32 with
fp16 scales, times int8 asymmetric per-token activations (`pocketguard.kernels`). On this x86 class of CPU
(Sapphire Rapids and later: AMX-INT8) none of the stock PyTorch / torchao paths computes that scheme fast:
the torchao wheel here has no CPU kernels, `_weight_int4pack_mm_for_cpu` is weight-only (float
activations), `_dyn_quant_matmul_4bit` is KleidiAI (Arm) with a slow reference fallback on x86, and
oneDNN's int8 matmul (`torch._int_mm`) has no group scales. The measurements are in docs/benchmarks.md.

The kernel (C, compiled once with the system gcc into ~/.cache/pocketguard, loaded with ctypes; OpenMP
threads come from the libgomp torch already loaded):

* activations are quantized per token exactly as `kernels.quantize_act` (same fp32 formulas, round half to
  even) and stored as uint8 `u = q + 128`; a row holding a NaN or an infinity gets a NaN scale, so its outputs
  are NaN (the guard fails closed), not the finite garbage that min / max, which drop NaNs, would make of it;
* weights are repacked once at load time into 16-column x 32-deep AMX B tiles (VNNI order), still 4 bits:
  256 bytes per tile, low nibbles = tile rows 0-3, high nibbles = rows 4-7, so unpacking is and/shift/sub;
* per group, one `tdpbusd` gives the exact int32 dot products `sum_k u[m,k] c[n,k]`; they are scaled by
  the group scale in fp32 and accumulated; the zero point is one rank-1 correction per output
  (`y = s_x (acc - z_u * sum_g s_g sum_k c)`). Only the fp32 summation order differs from the reference
  (dequantize + F.linear): `tests/test_bench.py` checks parity and identical verdicts.

x86 CPUs without AMX but with AVX-512 VNNI (AMD Zen 4, Intel Ice Lake / Cascade Lake) run a second kernel on
the same packed weights, `pg_gemm_vnni`: an AMX B-tile row (16 columns x 4 consecutive k) is exactly a
`vpdpbusd` operand, so each group is 8 `vpdpbusd` per row and 16 columns on the unsigned nibbles c + 8, started
from -8 * sum_k u: the same exact int32 group sums, the same fp32 steps after them (`tests/test_runtime_kernels.py`);
a prompt's column panel is unpacked to bytes once per matmul rather than once per row tile (6 rows x 32 columns:
12 int32 and 12 fp32 accumulators, 30 of the 32 zmm registers).
Their activation, RMSNorm and SiLU helpers need only AVX-512F/BW.

x86 CPUs without AVX-512 (AMD Zen 2 / Zen 3, Intel Haswell to Alder Lake) run a third kernel on the same packed
weights, `pg_gemm_avx2`: a packed k-quad row is two 8-column ymm halves, `vpmaddubsw` multiplies the broadcast
u by the nibbles c + 8 into int16 pair sums (at most 2 * 255 * 15, no saturation), a group's sums are added in
16 bits (at most 61200, exact as uint16) and widened once: again the exact int32 group sums, then the same fp32
steps in the same order, so by construction the floats are the VNNI kernel's (not compared on one machine yet:
the AVX2 one here has no AVX-512). AVX2 twins of the helpers follow the AVX-512 ones step for step (the RMSNorm
sum in the same 16 lanes and reduction order, the same exp polynomial); the RoPE is plain C shared by all. The
AVX-512 / AMX code is compiled under target pragmas and the AVX2 code for the CPU itself (-march=native), so one
library builds on any x86-64 CPU and an AVX2 CPU never meets an AVX-512 instruction (`tests/test_runtime_kernels.py`
checks the disassembly). The kernel is chosen once per process: AMX, else VNNI, else AVX2, else portable, or
`POCKETGUARD_CPU_KERNEL=amx|vnni|avx2|portable`.

Attention runs in int8 by default where the CPU has AVX-512 VNNI: every packed pass of an fp32 model on CPU (an
accelerated artifact or a float checkpoint; causal, or the category scores' tree pass under its mask) computes its
attention in `pg_attn_vnni`. 12-bit queries and keys per row (`vpdpwssd`) give exact int32 scores, the softmax is
fp32, and the probabilities (uint8 per row, value scales folded in) times int8 values are again exact int32 sums —
3-3.6x SDPA on the default guard's 300-token shape (4.7x with int8 queries and keys), at ~0.9 % relative error in
the attention output (1.8 % when queries and keys were int8 too, until 2026-12-04: that cost the shipped guard 0.8
held-out F1 points against exact attention, which 12-bit ones give back; docs/training-history.md, *The
arithmetic's own noise*). Everywhere else (no VNNI, the portable or a forced AVX2 kernel, GPUs, bf16) attention is
torch's SDPA in the model's dtype, and `POCKETGUARD_ATTENTION=fp32` asks for exact fp32 SDPA on CPU too
(`int8_attention()`). The int8 attention fails closed as well: a query, key or value row holding a NaN or an infinity
makes NaN every output that reads it.

`accelerate(model)` swaps each transformer block for a `FastBlock` (RMSNorm fused with the activation
quantization, q|k|v in one matmul and gate|up in one matmul so each activation is quantized once, SiLU·up
fused with the next quantization, residual adds in the matmul epilogue, RoPE in place, attention by query
blocks); the block's interface is unchanged, so the KV cache, the prefix cache and constrained decoding in
`Guard` work as before; `FastBlock.standard_block()` gives the block back, the same codes and scales, for the
exporters. `load_fast(path)` loads an artifact the same way but packs each layer from a private
read of its tensors and leaves the embedding table memory-mapped, so peak RSS stays near the packed weights.
Both leave the model on the portable `kernels` path when the CPU has none of AMX-INT8, AVX-512 VNNI and AVX2
(`available()` says why) or when `POCKETGUARD_CPU_KERNEL=portable`. Measurements: docs/benchmarks.md.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import warnings
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .model import KVCache

# ------------------------------------------------------------------------------------------ C source

_C_SOURCE = r"""
#include <immintrin.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <float.h>
#include <math.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <omp.h>

/* The scalar steps of kernels.quantize_act that every SIMD flavour of quant_row shares, so that all of them
   give the same codes: scale and zero point from the row's min / max (min <= 0 <= max), and the elements past
   the last full vector. `bad` is the sum of x * 0 over the row: 0, or NaN when the row holds a NaN or an
   infinity. min / max (and fminf / fmaxf) drop NaNs, so such a row would quantize to finite codes and give finite
   garbage; it gets a NaN scale instead, which makes every output of the row NaN (the guard must fail closed). */
static inline void quant_scale(float lo, float hi, float bad, float *inv, float *z, float *sx, float *zu) {
    float s = (hi - lo) / 255.0f;
    if (!(s >= FLT_MIN)) s = FLT_MIN;
    *z = fminf(fmaxf(-128.0f - nearbyintf(lo / s), -128.0f), 127.0f);
    *inv = 1.0f / s;
    *sx = isnan(bad) ? NAN : s;
    *zu = *z + 128.0f;
}

static inline void quant_tail(const float *r, int k, int K, float inv, float z, uint8_t *o) {
    for (; k < K; k++) {
        float q = nearbyintf(r[k] * inv) + z + 128.0f;
        o[k] = (uint8_t)fminf(fmaxf(q, 0.0f), 255.0f);
    }
}

#pragma GCC push_options
#pragma GCC target("avx512f")
/* exp for the SiLU and the int8 attention's softmax (Cephes expf polynomial, ~1 ulp; inputs clamped to the finite
   range, x as the second operand of the clamp: min / max return it when it is NaN, so NaN stays NaN); AVX-512F
   only, so the AMX and the VNNI code can both inline it. */
static inline __m512 exp512(__m512 x) {
    x = _mm512_min_ps(_mm512_set1_ps(88.7f), _mm512_max_ps(_mm512_set1_ps(-87.3f), x));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), x);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 q = _mm512_set1_ps(1.9875691500E-4f);
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.3981999507E-3f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(8.3334519073E-3f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(4.1665795894E-2f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.6666665459E-1f));
    q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(5.0000001201E-1f));
    q = _mm512_fmadd_ps(q, _mm512_mul_ps(r, r), r);
    return _mm512_scalef_ps(_mm512_add_ps(q, _mm512_set1_ps(1.0f)), n);
}

#pragma GCC pop_options

/* The AMX kernel and the AVX-512 helpers: only here (and in the VNNI kernel) may the compiler use AVX-512,
   whatever CPU builds the library; the AVX2 kernel's code below is compiled for the CPU itself (-march=native). */
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,amx-tile,amx-int8")

#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

int pg_amx_init(void) {
    return syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0;
}

typedef struct {
    uint8_t palette_id, start_row, reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed)) tilecfg_t;

static void pg_tiles(void) {
    tilecfg_t c;
    memset(&c, 0, sizeof c);
    c.palette_id = 1;
    for (int t = 0; t < 4; t++) { c.rows[t] = 16; c.colsb[t] = 64; }   /* C tiles: 16 x 16 int32 */
    for (int t = 4; t < 6; t++) { c.rows[t] = 16; c.colsb[t] = 32; }   /* A tiles: 16 rows x 32 u8 (one group) */
    for (int t = 6; t < 8; t++) { c.rows[t] = 8;  c.colsb[t] = 64; }   /* B tiles: 8 rows (K/4) x 16 cols x 4 */
    _tile_loadconfig(&c);
}

/* Per-token asymmetric int8 quantization of one row, exactly kernels.quantize_act; u = q + 128. */
static inline void quant_row(const float *r, int K, uint8_t *o, float *sx, float *zu) {
    const __m512 zero = _mm512_setzero_ps();
    __m512 vmin = zero, vmax = zero, vbad = zero;
    int k = 0;
    for (; k + 16 <= K; k += 16) {
        __m512 v = _mm512_loadu_ps(r + k);
        vmin = _mm512_min_ps(vmin, v);
        vmax = _mm512_max_ps(vmax, v);
        vbad = _mm512_fmadd_ps(v, zero, vbad);  /* x * 0: stays 0 unless x is a NaN or an infinity (quant_scale) */
    }
    float lo = _mm512_reduce_min_ps(vmin), hi = _mm512_reduce_max_ps(vmax), bad = _mm512_reduce_add_ps(vbad);
    for (; k < K; k++) { lo = fminf(lo, r[k]); hi = fmaxf(hi, r[k]); bad += r[k] * 0.0f; }
    float inv, z;
    quant_scale(lo, hi, bad, &inv, &z, sx, zu);
    __m512 vinv = _mm512_set1_ps(inv), vz = _mm512_set1_ps(z + 128.0f);
    __m512 v0 = _mm512_setzero_ps(), v255 = _mm512_set1_ps(255.0f);
    for (k = 0; k + 16 <= K; k += 16) {
        __m512 v = _mm512_mul_ps(_mm512_loadu_ps(r + k), vinv);
        v = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm512_min_ps(_mm512_max_ps(_mm512_add_ps(v, vz), v0), v255);
        _mm_storeu_si128((__m128i *)(o + k), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(v)));
    }
    quant_tail(r, k, K, inv, z, o);
}

/* Quantize rows of x [M, K] (row stride ldx) into xu [Mp, K]; rows M..Mp-1 are zeroed. */
void pg_quant_act(int M, int Mp, int K, const float *x, long ldx, uint8_t *xu, float *sx, float *zu, int nthreads) {
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int m = 0; m < Mp; m++) {
        if (m >= M) { memset(xu + (long)m * K, 0, K); continue; }
        quant_row(x + (long)m * ldx, K, xu + (long)m * K, sx + m, zu + m);
    }
}

/* RMSNorm (model.RMSNorm: w * (x * rsqrt(mean(x^2) + eps))) fused with the row quantization above. */
int pg_rmsnorm_quant(int M, int Mp, int K, const float *x, long ldx, const float *w, float eps,
                     uint8_t *xu, float *sx, float *zu, int nthreads) {
    int failed = 0;
    #pragma omp parallel num_threads(nthreads)
    {
        float *h = (float *)aligned_alloc(64, ((size_t)K * 4 + 63) / 64 * 64);
        if (!h) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int m = 0; m < Mp; m++) {
            if (!h) continue;  /* (the loop still runs: it ends at a barrier every thread must reach) */
            if (m >= M) { memset(xu + (long)m * K, 0, K); continue; }
            const float *r = x + (long)m * ldx;
            __m512 acc = _mm512_setzero_ps();
            int k = 0;
            for (; k + 16 <= K; k += 16) { __m512 v = _mm512_loadu_ps(r + k); acc = _mm512_fmadd_ps(v, v, acc); }
            float ss = _mm512_reduce_add_ps(acc);
            for (; k < K; k++) ss += r[k] * r[k];
            float inv = 1.0f / sqrtf(ss / (float)K + eps);
            __m512 vi = _mm512_set1_ps(inv);
            for (k = 0; k + 16 <= K; k += 16)
                _mm512_storeu_ps(h + k, _mm512_mul_ps(_mm512_loadu_ps(w + k), _mm512_mul_ps(_mm512_loadu_ps(r + k), vi)));
            for (; k < K; k++) h[k] = w[k] * (r[k] * inv);
            quant_row(h, K, xu + (long)m * K, sx + m, zu + m);
        }
        free(h);
    }
    return failed;  /* 1: out of memory, the rows are not valid */
}

/* h = silu(g) * u for rows of gu = [g | u] (F columns each, row stride ld), quantized per row like
   quant_row (the input of the MLP's down projection). */
int pg_silu_mul_quant(int M, int Mp, int F, const float *gu, long ld, uint8_t *xu, float *sx, float *zu, int nthreads) {
    int failed = 0;
    #pragma omp parallel num_threads(nthreads)
    {
        float *h = (float *)aligned_alloc(64, ((size_t)F * 4 + 63) / 64 * 64);
        if (!h) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int m = 0; m < Mp; m++) {
            if (!h) continue;  /* (the loop still runs: it ends at a barrier every thread must reach) */
            if (m >= M) { memset(xu + (long)m * F, 0, F); continue; }
            const float *g = gu + (long)m * ld, *u = g + F;
            int k = 0;
            const __m512 one = _mm512_set1_ps(1.0f);
            for (; k + 16 <= F; k += 16) {
                __m512 vg = _mm512_loadu_ps(g + k);
                __m512 s = _mm512_div_ps(vg, _mm512_add_ps(one, exp512(_mm512_sub_ps(_mm512_setzero_ps(), vg))));
                _mm512_storeu_ps(h + k, _mm512_mul_ps(s, _mm512_loadu_ps(u + k)));
            }
            for (; k < F; k++) h[k] = (g[k] / (1.0f + expf(-g[k]))) * u[k];
            quant_row(h, F, xu + (long)m * F, sx + m, zu + m);
        }
        free(h);
    }
    return failed;  /* 1: out of memory, the rows are not valid */
}

/* y[M, N] (row stride ldy) = dequant(x) @ dequant(W)^T for int4 group-32 W packed by pack_int4_amx.
   wpk: [N/16][K/32][256] bytes; sw: [N/16][K/32][16] fp16 group scales; wsum[N] = sum_g s_g sum_k c. */
int pg_gemm_amx(int M, int N, int K, const uint8_t *xu, const float *sx, const float *zu,
                const uint8_t *wpk, const uint16_t *sw, const float *wsum, float *y, long ldy,
                const float *res, long ldr, int nthreads) {
    const int NB = N / 16, G = K / 32, Mp = (M + 15) / 16 * 16;
    const int NB2 = (NB + 1) / 2;
    int failed = 0;
    #pragma omp parallel num_threads(nthreads)
    {
        pg_tiles();
        int8_t *panel = (int8_t *)aligned_alloc(64, (size_t)G * 1024);
        if (!panel) {
            #pragma omp atomic write
            failed = 1;
        }
        int32_t cbuf[2][256] __attribute__((aligned(64)));
        const __m512i m4 = _mm512_set1_epi8(0x0F), e8 = _mm512_set1_epi8(8);
        #pragma omp for schedule(static)
        for (int nb2 = 0; nb2 < NB2; nb2++) {
            if (!panel) continue;
            const int nb = nb2 * 2, two = (nb + 1 < NB);
            /* unpack the weight panel of these (up to) two 16-column blocks: int4 -> int8 VNNI tiles */
            for (int b = 0; b <= two; b++) {
                const uint8_t *p = wpk + (size_t)(nb + b) * G * 256;
                int8_t *d = panel + (size_t)b * G * 512;
                for (int g = 0; g < G; g++) {
                    for (int i = 0; i < 4; i++) {
                        __m512i v = _mm512_loadu_si512((const void *)(p + g * 256 + i * 64));
                        __m512i lo = _mm512_sub_epi8(_mm512_and_si512(v, m4), e8);
                        __m512i hi = _mm512_sub_epi8(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), e8);
                        _mm512_store_si512((void *)(d + g * 512 + i * 64), lo);
                        _mm512_store_si512((void *)(d + g * 512 + 256 + i * 64), hi);
                    }
                }
            }
            const uint16_t *s0 = sw + (size_t)nb * G * 16;
            const uint16_t *s1 = two ? sw + (size_t)(nb + 1) * G * 16 : s0;
            const int8_t *b0 = panel, *b1 = panel + (size_t)G * 512;
            for (int mb = 0; mb < Mp; mb += 16) {
                const int rows = (M - mb) < 16 ? (M - mb) : 16;
                __m512 acc0[16], acc1[16];
                for (int r = 0; r < 16; r++) { acc0[r] = _mm512_setzero_ps(); acc1[r] = _mm512_setzero_ps(); }
                const uint8_t *a = xu + (size_t)mb * K;
                for (int g = 0; g < G; g++) {
                    _tile_zero(0);
                    _tile_loadd(4, a + g * 32, K);
                    _tile_loadd(6, b0 + g * 512, 64);
                    _tile_dpbusd(0, 4, 6);
                    if (two) {
                        _tile_zero(1);
                        _tile_loadd(7, b1 + g * 512, 64);
                        _tile_dpbusd(1, 4, 7);
                    }
                    _tile_stored(0, cbuf[0], 64);
                    __m512 sc0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s0 + g * 16)));
                    for (int r = 0; r < rows; r++)
                        acc0[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cbuf[0] + r * 16)), sc0, acc0[r]);
                    if (two) {
                        _tile_stored(1, cbuf[1], 64);
                        __m512 sc1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(s1 + g * 16)));
                        for (int r = 0; r < rows; r++)
                            acc1[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_load_si512(cbuf[1] + r * 16)), sc1, acc1[r]);
                    }
                }
                __m512 w0 = _mm512_loadu_ps(wsum + nb * 16);
                __m512 w1 = two ? _mm512_loadu_ps(wsum + (nb + 1) * 16) : w0;
                for (int r = 0; r < rows; r++) {
                    const int m = mb + r;
                    __m512 vs = _mm512_set1_ps(sx[m]), vz = _mm512_set1_ps(zu[m]);
                    __m512 o0 = _mm512_mul_ps(_mm512_fnmadd_ps(vz, w0, acc0[r]), vs);
                    if (res) o0 = _mm512_add_ps(_mm512_loadu_ps(res + (long)m * ldr + nb * 16), o0);
                    _mm512_storeu_ps(y + (long)m * ldy + nb * 16, o0);
                    if (two) {
                        __m512 o1 = _mm512_mul_ps(_mm512_fnmadd_ps(vz, w1, acc1[r]), vs);
                        if (res) o1 = _mm512_add_ps(_mm512_loadu_ps(res + (long)m * ldr + (nb + 1) * 16), o1);
                        _mm512_storeu_ps(y + (long)m * ldy + (nb + 1) * 16, o1);
                    }
                }
            }
        }
        free(panel);
        _tile_release();
    }
    return failed;  /* 1: out of memory, y is not valid */
}

#pragma GCC pop_options
"""

# The AVX2 + FMA kernel for x86 CPUs without AVX-512 (AMD Zen 2/3, Intel Haswell to Alder Lake), with AVX2
# versions of the helpers. Its pragma adds AVX2 to the CPU's own flags (-march=native) and no AVX-512: the
# compiler auto-vectorizes this code too, and on an AVX2 CPU it must not reach for EVEX instructions.
_C_AVX2 = r"""
#pragma GCC push_options
#pragma GCC target("avx2,fma,f16c")

/* Rotary embedding in place (model.Attention: x*cos + rotate_half(x)*sin) on the first n_heads heads of
   each row of x [M, ldx]; cos/sin [M, hd] with equal halves. Plain C, elementwise: every kernel shares it. */
void pg_rope(int M, int n_heads, int hd, float *x, long ldx, const float *cs, const float *sn, int nthreads) {
    const int h2 = hd / 2;
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int m = 0; m < M; m++) {
        const float *c = cs + (long)m * hd, *s = sn + (long)m * hd;
        for (int h = 0; h < n_heads; h++) {
            float *a = x + (long)m * ldx + (long)h * hd, *b = a + h2;
            for (int i = 0; i < h2; i++) {
                float x1 = a[i], x2 = b[i];
                float o1 = x1 * c[i] + (-x2) * s[i];
                float o2 = x2 * c[h2 + i] + x1 * s[h2 + i];
                a[i] = o1;
                b[i] = o2;
            }
        }
    }
}

/* uc[m, g] = -8 * (sum of the group's 32 activation codes), the start of the nibble kernels' int32 sums;
   an orphaned omp for: called inside the gemms' parallel regions. */
static void group_usums(int M, int G, int K, const uint8_t *xu, int32_t *uc) {
    #pragma omp for schedule(static)
    for (int m = 0; m < M; m++)
        for (int g = 0; g < G; g++) {
            const __m256i s = _mm256_sad_epu8(_mm256_loadu_si256((const __m256i *)(xu + (long)m * K + g * 32)),
                                              _mm256_setzero_si256());
            uc[(long)m * G + g] = -8 * (int32_t)(_mm256_extract_epi64(s, 0) + _mm256_extract_epi64(s, 1)
                                                 + _mm256_extract_epi64(s, 2) + _mm256_extract_epi64(s, 3));
        }
}

/* _mm512_reduce_add_ps's order (256-bit halves, 128-bit halves, pairs) on 16 lanes held as lanes 0-7 and
   8-15: the AVX2 RMSNorm then sums like the AVX-512 one, bit for bit. */
static inline float reduce_add16(__m256 a, __m256 b) {
    float x[8], y[8], t[8];
    _mm256_storeu_ps(x, a);
    _mm256_storeu_ps(y, b);
    for (int i = 0; i < 8; i++) t[i] = y[i] + x[i];
    for (int i = 0; i < 4; i++) t[i] = t[4 + i] + t[i];
    return (t[0] + t[2]) + (t[1] + t[3]);
}

/* quant_row on AVX2: the same formulas, so the same codes. */
static inline void quant_row_avx2(const float *r, int K, uint8_t *o, float *sx, float *zu) {
    const __m256 zero = _mm256_setzero_ps();
    __m256 vmin = zero, vmax = zero, vbad = zero;
    int k = 0;
    for (; k + 8 <= K; k += 8) {
        __m256 v = _mm256_loadu_ps(r + k);
        vmin = _mm256_min_ps(vmin, v);
        vmax = _mm256_max_ps(vmax, v);
        vbad = _mm256_fmadd_ps(v, zero, vbad);
    }
    float mn[8], mx[8], bd[8], lo = 0.0f, hi = 0.0f, bad = 0.0f;
    _mm256_storeu_ps(mn, vmin);
    _mm256_storeu_ps(mx, vmax);
    _mm256_storeu_ps(bd, vbad);
    for (int i = 0; i < 8; i++) { lo = fminf(lo, mn[i]); hi = fmaxf(hi, mx[i]); bad += bd[i]; }
    for (; k < K; k++) { lo = fminf(lo, r[k]); hi = fmaxf(hi, r[k]); bad += r[k] * 0.0f; }
    float inv, z;
    quant_scale(lo, hi, bad, &inv, &z, sx, zu);
    const __m256 vinv = _mm256_set1_ps(inv), vz = _mm256_set1_ps(z + 128.0f);
    const __m256 v0 = _mm256_setzero_ps(), v255 = _mm256_set1_ps(255.0f);
    for (k = 0; k + 8 <= K; k += 8) {
        __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(r + k), vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
        v = _mm256_min_ps(_mm256_max_ps(_mm256_add_ps(v, vz), v0), v255);
        const __m256i q = _mm256_cvtps_epi32(v);                    /* 0..255: the packs cannot saturate */
        const __m256i b = _mm256_packus_epi16(_mm256_packs_epi32(q, q), _mm256_setzero_si256());
        _mm_storel_epi64((__m128i *)(o + k), _mm_unpacklo_epi32(_mm256_castsi256_si128(b), _mm256_extracti128_si256(b, 1)));
    }
    quant_tail(r, k, K, inv, z, o);
}

void pg_quant_act_avx2(int M, int Mp, int K, const float *x, long ldx, uint8_t *xu, float *sx, float *zu, int nthreads) {
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int m = 0; m < Mp; m++) {
        if (m >= M) { memset(xu + (long)m * K, 0, K); continue; }
        quant_row_avx2(x + (long)m * ldx, K, xu + (long)m * K, sx + m, zu + m);
    }
}

/* pg_rmsnorm_quant on AVX2: the sum of squares in the same 16 lanes and order. */
int pg_rmsnorm_quant_avx2(int M, int Mp, int K, const float *x, long ldx, const float *w, float eps,
                          uint8_t *xu, float *sx, float *zu, int nthreads) {
    int failed = 0;
    #pragma omp parallel num_threads(nthreads)
    {
        float *h = (float *)aligned_alloc(64, ((size_t)K * 4 + 63) / 64 * 64);
        if (!h) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int m = 0; m < Mp; m++) {
            if (!h) continue;  /* (the loop still runs: it ends at a barrier every thread must reach) */
            if (m >= M) { memset(xu + (long)m * K, 0, K); continue; }
            const float *r = x + (long)m * ldx;
            __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
            int k = 0;
            for (; k + 16 <= K; k += 16) {
                const __m256 v0 = _mm256_loadu_ps(r + k), v1 = _mm256_loadu_ps(r + k + 8);
                a0 = _mm256_fmadd_ps(v0, v0, a0);
                a1 = _mm256_fmadd_ps(v1, v1, a1);
            }
            float ss = reduce_add16(a0, a1);
            for (; k < K; k++) ss += r[k] * r[k];
            const float inv = 1.0f / sqrtf(ss / (float)K + eps);
            const __m256 vi = _mm256_set1_ps(inv);
            for (k = 0; k + 8 <= K; k += 8)
                _mm256_storeu_ps(h + k, _mm256_mul_ps(_mm256_loadu_ps(w + k), _mm256_mul_ps(_mm256_loadu_ps(r + k), vi)));
            for (; k < K; k++) h[k] = w[k] * (r[k] * inv);
            quant_row_avx2(h, K, xu + (long)m * K, sx + m, zu + m);
        }
        free(h);
    }
    return failed;  /* 1: out of memory, the rows are not valid */
}

/* exp512 on AVX2, the same steps; scalef (x * 2^n, one rounding) becomes two exact power-of-two factors
   2^(n>>1) and 2^(n - (n>>1)): n reaches 128, whose 2^n is no float. */
static inline __m256 exp256(__m256 x) {
    x = _mm256_min_ps(_mm256_set1_ps(88.7f), _mm256_max_ps(_mm256_set1_ps(-87.3f), x));
    __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 q = _mm256_set1_ps(1.9875691500E-4f);
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.3981999507E-3f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(8.3334519073E-3f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(4.1665795894E-2f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(1.6666665459E-1f));
    q = _mm256_fmadd_ps(q, r, _mm256_set1_ps(5.0000001201E-1f));
    q = _mm256_fmadd_ps(q, _mm256_mul_ps(r, r), r);
    const __m256i ni = _mm256_cvtps_epi32(n), n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    const __m256i bias = _mm256_set1_epi32(127);
    const __m256 p1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    const __m256 p2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_add_ps(q, _mm256_set1_ps(1.0f)), p1), p2);
}

/* pg_silu_mul_quant on AVX2: the vector exp on the same elements (blocks of 16), expf on the tail. */
int pg_silu_mul_quant_avx2(int M, int Mp, int F, const float *gu, long ld, uint8_t *xu, float *sx, float *zu,
                           int nthreads) {
    int failed = 0;
    #pragma omp parallel num_threads(nthreads)
    {
        float *h = (float *)aligned_alloc(64, ((size_t)F * 4 + 63) / 64 * 64);
        if (!h) {
            #pragma omp atomic write
            failed = 1;
        }
        #pragma omp for schedule(static)
        for (int m = 0; m < Mp; m++) {
            if (!h) continue;  /* (the loop still runs: it ends at a barrier every thread must reach) */
            if (m >= M) { memset(xu + (long)m * F, 0, F); continue; }
            const float *g = gu + (long)m * ld, *u = g + F;
            const __m256 one = _mm256_set1_ps(1.0f);
            int k = 0;
            for (; k < F / 16 * 16; k += 8) {
                const __m256 vg = _mm256_loadu_ps(g + k);
                const __m256 s = _mm256_div_ps(vg, _mm256_add_ps(one, exp256(_mm256_sub_ps(_mm256_setzero_ps(), vg))));
                _mm256_storeu_ps(h + k, _mm256_mul_ps(s, _mm256_loadu_ps(u + k)));
            }
            for (; k < F; k++) h[k] = (g[k] / (1.0f + expf(-g[k]))) * u[k];
            quant_row_avx2(h, F, xu + (long)m * F, sx + m, zu + m);
        }
        free(h);
    }
    return failed;  /* 1: out of memory, the rows are not valid */
}

#define AVX2_MR 3  /* rows per tile: 6 int16 + 6 fp32 accumulators, 4 weight and 2 activation vectors: the 16 ymm */

/* One tile of MR rows x one 16-column block of y over all of K, on the packed weights of pg_gemm_vnni: each
   64-byte k-quad row of a packed tile is two 8-column ymm halves of 4 consecutive k per column. vpmaddubsw
   multiplies the broadcast activations u (unsigned) by the nibbles c + 8 (0..15, valid as the signed operand)
   and adds pairs into int16, at most 2 * 255 * 15 = 7650: no saturation. All terms are non-negative and a
   group's 8 pair sums total at most 61200 < 2^16, so wrapping 16-bit adds hold the group sum exactly as
   uint16; it is widened by a mask and a shift (not vpmaddwd: the multiplier port is the bottleneck) and added
   to uc = -8 * sum_k u, giving the exact int32 group sums of the other kernels. Then the same fp32 steps in the
   same order as pg_gemm_vnni, so the same floats. */
static inline __attribute__((always_inline)) void avx2_tile(
        const int MR, int m0, int nb, int G, int K, const uint8_t *xu, const int32_t *uc, const float *sx,
        const float *zu, const uint8_t *wpk, const uint16_t *sw, const float *wsum, float *y, long ldy,
        const float *res, long ldr) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), lo16 = _mm256_set1_epi32(0xFFFF);
    __m256 facc[AVX2_MR][2];
    for (int r = 0; r < MR; r++) facc[r][0] = facc[r][1] = _mm256_setzero_ps();
    for (int g = 0; g < G; g++) {
        const uint8_t *p = wpk + ((size_t)nb * G + g) * 256;
        __m256i acc[AVX2_MR][2];
        for (int r = 0; r < MR; r++) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            __m256i wl[2], wh[2];
            for (int h = 0; h < 2; h++) {
                const __m256i v = _mm256_loadu_si256((const __m256i *)(p + i * 64 + h * 32));
                wl[h] = _mm256_and_si256(v, m4);                        /* k = 4i .. 4i+3 */
                wh[h] = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);  /* k = 16+4i .. 16+4i+3 */
            }
            for (int r = 0; r < MR; r++) {
                const uint8_t *a = xu + (long)(m0 + r) * K + g * 32 + 4 * i;
                int32_t lo, hi;
                memcpy(&lo, a, 4);
                memcpy(&hi, a + 16, 4);
                const __m256i al = _mm256_set1_epi32(lo), ah = _mm256_set1_epi32(hi);
                for (int h = 0; h < 2; h++)
                    acc[r][h] = _mm256_add_epi16(acc[r][h], _mm256_add_epi16(_mm256_maddubs_epi16(al, wl[h]),
                                                                             _mm256_maddubs_epi16(ah, wh[h])));
            }
        }
        for (int h = 0; h < 2; h++) {
            const __m256 sc = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(sw + ((size_t)nb * G + g) * 16 + h * 8)));
            for (int r = 0; r < MR; r++) {
                const __m256i s = _mm256_add_epi32(_mm256_and_si256(acc[r][h], lo16), _mm256_srli_epi32(acc[r][h], 16));
                const __m256i d = _mm256_add_epi32(s, _mm256_set1_epi32(uc[(long)(m0 + r) * G + g]));
                facc[r][h] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(d), sc, facc[r][h]);
            }
        }
    }
    for (int r = 0; r < MR; r++) {
        const int m = m0 + r;
        const __m256 vs = _mm256_set1_ps(sx[m]), vz = _mm256_set1_ps(zu[m]);
        for (int h = 0; h < 2; h++) {
            const int n = nb * 16 + h * 8;
            __m256 o = _mm256_mul_ps(_mm256_fnmadd_ps(vz, _mm256_loadu_ps(wsum + n), facc[r][h]), vs);
            if (res) o = _mm256_add_ps(_mm256_loadu_ps(res + (long)m * ldr + n), o);
            _mm256_storeu_ps(y + (long)m * ldy + n, o);
        }
    }
}

/* pg_gemm_amx's contract (same packed weights, same arguments) on AVX2. */
int pg_gemm_avx2(int M, int N, int K, const uint8_t *xu, const float *sx, const float *zu,
                 const uint8_t *wpk, const uint16_t *sw, const float *wsum, float *y, long ldy,
                 const float *res, long ldr, int nthreads) {
    const int NB = N / 16, G = K / 32;
    int32_t *uc = (int32_t *)malloc((size_t)(M > 0 ? M : 1) * G * sizeof(int32_t));
    if (!uc) return 1;  /* out of memory */
    #pragma omp parallel num_threads(nthreads)
    {
        group_usums(M, G, K, xu, uc);
        #pragma omp for schedule(static)
        for (int nb = 0; nb < NB; nb++) {
            int m0 = 0;
            for (; m0 + AVX2_MR <= M; m0 += AVX2_MR)
                avx2_tile(AVX2_MR, m0, nb, G, K, xu, uc, sx, zu, wpk, sw, wsum, y, ldy, res, ldr);
            for (; m0 < M; m0++)
                avx2_tile(1, m0, nb, G, K, xu, uc, sx, zu, wpk, sw, wsum, y, ldy, res, ldr);
        }
    }
    free(uc);
    return 0;
}

#pragma GCC pop_options
"""

# The AVX-512 VNNI kernel for CPUs without AMX (e.g. AMD Zen 4, Intel Ice Lake / Cascade Lake). Its own target
# pragma: only these functions may use VNNI instructions, so the library still loads on AVX-512 CPUs without it.
_C_VNNI = r"""
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512vnni")

#define VNNI_MR 6  /* rows per tile: 6 x 2 blocks = 12 independent accumulator chains, 30 of the 32 zmm registers */
#define VNNI_NR 2

/* One 64-byte k-quad row of a packed tile -> its 16 columns x 4 k as bytes: the low nibbles are k = 4i .. 4i+3 of
   the group, the high ones k = 16+4i .. 16+4i+3. */
static inline __attribute__((always_inline)) void vnni_nibbles(const uint8_t *src, __m512i *lo, __m512i *hi) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), v = _mm512_loadu_si512((const void *)src);
    *lo = _mm512_and_si512(v, m4);
    *hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
}

/* One tile of MR rows x NR 16-column blocks of y over all of K. An AMX B-tile row of the packed weights (16
   columns x 4 consecutive k, as nibbles c + 8) is exactly a vpdpbusd operand, so the packing is shared: per group
   and k-quad, u[m, 4 k] is broadcast and multiplied with the unsigned nibbles c + 8 (0..15, valid as the signed
   operand). The int32 accumulator starts at uc = -8 * sum_k u, so each group's sum_k u (c + 8) - 8 sum_k u is the
   exact sum_k u c that tdpbusd gives; then the same fp32 steps as pg_gemm_amx (scale FMA per group, zero point
   and row scale in the epilogue), so the two kernels round identically. MR, NR and PRE are compile-time constants
   after inlining: the accumulators live in registers and each weight vector serves MR rows. With PRE the nibbles
   come already unpacked, one byte each, from `wun` (vnni_unpack: the tile's NR blocks); without, they are unpacked
   here from the 4-bit tiles, which a prompt's row tiles would each do again for the same columns. */
static inline __attribute__((always_inline)) void vnni_tile(
        const int MR, const int NR, const int PRE, int m0, int nb, int G, int K, const uint8_t *xu, const int32_t *uc,
        const float *sx, const float *zu, const uint8_t *wpk, const uint8_t *wun, const uint16_t *sw,
        const float *wsum, float *y, long ldy, const float *res, long ldr) {
    __m512 facc[VNNI_MR][VNNI_NR];
    for (int r = 0; r < MR; r++)
        for (int c = 0; c < NR; c++) facc[r][c] = _mm512_setzero_ps();
    for (int g = 0; g < G; g++) {
        __m512i acc[VNNI_MR][VNNI_NR];
        for (int r = 0; r < MR; r++) {
            const __m512i init = _mm512_set1_epi32(uc[(long)(m0 + r) * G + g]);
            for (int c = 0; c < NR; c++) acc[r][c] = init;
        }
        for (int i = 0; i < 4; i++) {
            __m512i wl[VNNI_NR], wh[VNNI_NR];
            for (int c = 0; c < NR; c++) {
                if (PRE) {
                    const uint8_t *w = wun + (((size_t)c * G + g) * 4 + i) * 128;
                    wl[c] = _mm512_load_si512((const void *)w);
                    wh[c] = _mm512_load_si512((const void *)(w + 64));
                } else {
                    vnni_nibbles(wpk + ((size_t)(nb + c) * G + g) * 256 + i * 64, &wl[c], &wh[c]);
                }
            }
            for (int r = 0; r < MR; r++) {
                const uint8_t *a = xu + (long)(m0 + r) * K + g * 32 + 4 * i;
                int32_t lo, hi;
                memcpy(&lo, a, 4);
                memcpy(&hi, a + 16, 4);
                const __m512i al = _mm512_set1_epi32(lo), ah = _mm512_set1_epi32(hi);
                for (int c = 0; c < NR; c++) {
                    acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], al, wl[c]);
                    acc[r][c] = _mm512_dpbusd_epi32(acc[r][c], ah, wh[c]);
                }
            }
        }
        for (int c = 0; c < NR; c++) {
            const __m512 sc = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(sw + ((size_t)(nb + c) * G + g) * 16)));
            for (int r = 0; r < MR; r++) facc[r][c] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[r][c]), sc, facc[r][c]);
        }
    }
    for (int r = 0; r < MR; r++) {
        const int m = m0 + r;
        const __m512 vs = _mm512_set1_ps(sx[m]), vz = _mm512_set1_ps(zu[m]);
        for (int c = 0; c < NR; c++) {
            const int n = (nb + c) * 16;
            __m512 o = _mm512_mul_ps(_mm512_fnmadd_ps(vz, _mm512_loadu_ps(wsum + n), facc[r][c]), vs);
            if (res) o = _mm512_add_ps(_mm512_loadu_ps(res + (long)m * ldr + n), o);
            _mm512_storeu_ps(y + (long)m * ldy + n, o);
        }
    }
}

/* The nibbles of NR column blocks, one byte each, in the order vnni_tile reads them with PRE (block, group,
   k-quad, low / high half: 128 bytes). Unpacked once per column panel instead of once per row tile, which takes
   the and / shift work out of the inner loop (it shared the vector ports with vpdpbusd). */
static inline void vnni_unpack(int NR, int nb, int G, const uint8_t *wpk, uint8_t *wun) {
    for (int c = 0; c < NR; c++)
        for (int g = 0; g < G; g++)
            for (int i = 0; i < 4; i++) {
                __m512i lo, hi;
                vnni_nibbles(wpk + ((size_t)(nb + c) * G + g) * 256 + i * 64, &lo, &hi);
                uint8_t *w = wun + (((size_t)c * G + g) * 4 + i) * 128;
                _mm512_store_si512((void *)w, lo);
                _mm512_store_si512((void *)(w + 64), hi);
            }
}

/* All M rows of NR column blocks starting at nb: VNNI_MR-row tiles, then single rows. A prompt (at least
   VNNI_MR rows) reads the panel unpacked into `wun`; a decode step's single row unpacks as it goes. */
static inline __attribute__((always_inline)) void vnni_cols(
        const int NR, int M, int nb, int G, int K, const uint8_t *xu, const int32_t *uc, const float *sx,
        const float *zu, const uint8_t *wpk, uint8_t *wun, const uint16_t *sw, const float *wsum, float *y, long ldy,
        const float *res, long ldr) {
    int m0 = 0;
    if (M >= VNNI_MR && wun) {  /* (no buffer: its allocation failed, and the rows unpack as they go) */
        vnni_unpack(NR, nb, G, wpk, wun);
        for (; m0 + VNNI_MR <= M; m0 += VNNI_MR)
            vnni_tile(VNNI_MR, NR, 1, m0, nb, G, K, xu, uc, sx, zu, wpk, wun, sw, wsum, y, ldy, res, ldr);
        /* packed passes pad their rows to a multiple of 16, which leaves 4 or 2 over after the 6-row tiles */
        if (m0 + 4 <= M) {
            vnni_tile(4, NR, 1, m0, nb, G, K, xu, uc, sx, zu, wpk, wun, sw, wsum, y, ldy, res, ldr);
            m0 += 4;
        }
        if (m0 + 2 <= M) {
            vnni_tile(2, NR, 1, m0, nb, G, K, xu, uc, sx, zu, wpk, wun, sw, wsum, y, ldy, res, ldr);
            m0 += 2;
        }
        for (; m0 < M; m0++)
            vnni_tile(1, NR, 1, m0, nb, G, K, xu, uc, sx, zu, wpk, wun, sw, wsum, y, ldy, res, ldr);
    }
    for (; m0 < M; m0++)
        vnni_tile(1, NR, 0, m0, nb, G, K, xu, uc, sx, zu, wpk, wun, sw, wsum, y, ldy, res, ldr);
}

/* pg_gemm_amx's contract (same packed weights, same arguments) on AVX-512 VNNI. */
int pg_gemm_vnni(int M, int N, int K, const uint8_t *xu, const float *sx, const float *zu,
                 const uint8_t *wpk, const uint16_t *sw, const float *wsum, float *y, long ldy,
                 const float *res, long ldr, int nthreads) {
    const int NB = N / 16, G = K / 32, NT = (NB + VNNI_NR - 1) / VNNI_NR;
    int32_t *uc = (int32_t *)malloc((size_t)(M > 0 ? M : 1) * G * sizeof(int32_t));
    if (!uc) return 1;  /* out of memory */
    #pragma omp parallel num_threads(nthreads)
    {
        uint8_t *wun = M >= VNNI_MR ? (uint8_t *)aligned_alloc(64, (size_t)VNNI_NR * G * 512) : NULL;
        group_usums(M, G, K, xu, uc);
        #pragma omp for schedule(static)
        for (int t = 0; t < NT; t++) {
            const int nb = t * VNNI_NR;
            if (nb + VNNI_NR <= NB)
                vnni_cols(VNNI_NR, M, nb, G, K, xu, uc, sx, zu, wpk, wun, sw, wsum, y, ldy, res, ldr);
            else
                for (int b = nb; b < NB; b++)
                    vnni_cols(1, M, b, G, K, xu, uc, sx, zu, wpk, wun, sw, wsum, y, ldy, res, ldr);
        }
        free(wun);
    }
    free(uc);
    return 0;
}

/* Causal attention of one sequence in int8 on VNNI (runtime_cpu.attention_int8): T new queries (rows of q, row
   stride ldq, head h at h * hd) over its keys [0, s0 + T) (k, v: [KV][cap][hd] fp32, head stride ldh), query t
   seeing keys <= s0 + t, GQA (head h reads KV head h / (H / KV)); out rows like q. Keys and queries are 12-bit per
   row (symmetric, max |x| / 2047, held as int16), so each score is an exact int32 dot product (vpdpwssd) times the
   two scales; the softmax is fp32; each value row is int8 with its own scale, folded into
   the probabilities, which are then uint8 per query row (max -> 255), so P V is again exact int32 sums. Every
   query row is computed alone, in the same order whatever the threads or the other rows: a sequence gets the
   same bits batched or alone. hd is a multiple of 16, at most 256. `tree` (NULL: causal) is a [T][T] byte mask
   instead of causal order among the new tokens: query t sees every key < s0 and new key u where tree[t * T + u]
   (the category-score pass: each code's tokens see the prompt and their own branch). */
static inline float hmax512(__m512 x) { return _mm512_reduce_max_ps(x); }

/* max |r[c]| over a row of hd floats (hd a multiple of 16), and r[c] * s rounded to the nearest integer (even on
   ties): the symmetric per-row int8 quantization of queries, keys and values. The maximum is taken on the bits of
   |x|, whose integer order is the float order, with NaNs above infinity (_mm512_max_ps would drop a NaN): a row
   holding a NaN or an infinity gets NaN, and so a NaN scale. */
static inline float absmax_row(const float *r, int hd) {
    __m512i m = _mm512_setzero_si512();
    for (int c = 0; c < hd; c += 16) m = _mm512_max_epu32(m, _mm512_castps_si512(_mm512_abs_ps(_mm512_loadu_ps(r + c))));
    const uint32_t b = _mm512_reduce_max_epu32(m);
    float x;
    memcpy(&x, &b, 4);
    return x <= FLT_MAX ? x : NAN;
}

static inline __m512i round_scaled(const float *r, float s) {
    return _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_loadu_ps(r), _mm512_set1_ps(s)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
#define QK_MAX 2047.0f  /* queries and keys are 12-bit (int8 lost 1.4 of int8 attention's 1.8 % output error) */
#define AT_R 4  /* query rows per group */
#define AT_B 4  /* key blocks of 16 per step of the scores: AT_R x AT_B accumulators */
#define AT_C 4  /* 16-channel blocks of the output per pass over the keys: AT_R x AT_C accumulators */

/* Q K of one group of AT_R query rows (12-bit, as int16: qw) over nbk (<= AT_B) blocks of 16 keys (kb: the first
   block's [hd/2][16 keys][2 channels], int16) into int32 acc: vpdpwssd, exact (|q|, |k| <= 2047, so hd <= 256
   products fit int32). Always inlined, with nbk == AT_B a constant in the common case, so that the accumulators
   stay in registers (see attn_pv). */
static inline __attribute__((always_inline)) void attn_qk(int nbk, int C2, const int16_t *kb, int hd,
                                                          int16_t (*qw)[256], __m512i acc[AT_R][AT_B]) {
    for (int r = 0; r < AT_R; r++)
        for (int i = 0; i < AT_B; i++) acc[r][i] = _mm512_setzero_si512();
    for (int c = 0; c < C2; c++) {
        __m512i kv[AT_B];
        for (int i = 0; i < nbk; i++) kv[i] = _mm512_load_si512((const void *)(kb + (size_t)i * hd * 16 + c * 32));
        for (int r = 0; r < AT_R; r++) {
            int32_t q2;
            memcpy(&q2, qw[r] + 2 * c, 4);
            const __m512i bq = _mm512_set1_epi32(q2);
            for (int i = 0; i < nbk; i++) acc[r][i] = _mm512_dpwssd_epi32(acc[r][i], bq, kv[i]);
        }
    }
}

/* P V of one group of AT_R query rows for ncb (<= AT_C) 16-channel blocks of the output from channel block c0: per
   key quad (nq of them), the 4 keys' uint8 weights of each row times the int8 value vectors, loaded once for all
   rows; integer sums, so the order does not matter; then each row times its scale f[r] into out rows (stride ldo).
   Always inlined and called with ncb == AT_C as a constant in the common case: with a run-time trip count the
   AT_R x AT_C accumulators were kept in memory, and this phase took twice the time of the scores. */
static inline __attribute__((always_inline)) void attn_pv(int ncb, int nq, int nr, const int8_t *vg, int hd, int c0,
                                                          const uint8_t *pu, long Lp, const float *f, float *out, long ldo) {
    __m512i o[AT_R][AT_C];
    for (int r = 0; r < AT_R; r++)
        for (int cb = 0; cb < AT_C; cb++) o[r][cb] = _mm512_setzero_si512();
    for (int j4 = 0; j4 < nq; j4++) {
        __m512i vv[AT_C];
        for (int cb = 0; cb < ncb; cb++)
            vv[cb] = _mm512_load_si512((const void *)(vg + (size_t)j4 * hd * 4 + (c0 + cb) * 64));
        for (int r = 0; r < AT_R; r++) {
            int32_t p4;
            memcpy(&p4, pu + (size_t)r * Lp + 4 * j4, 4);
            const __m512i bp = _mm512_set1_epi32(p4);
            for (int cb = 0; cb < ncb; cb++) o[r][cb] = _mm512_dpbusd_epi32(o[r][cb], bp, vv[cb]);
        }
    }
    for (int r = 0; r < nr; r++)
        for (int cb = 0; cb < ncb; cb++)
            _mm512_storeu_ps(out + (size_t)r * ldo + (c0 + cb) * 16, _mm512_mul_ps(_mm512_cvtepi32_ps(o[r][cb]), _mm512_set1_ps(f[r])));
}

int pg_attn_vnni(int T, int s0, int H, int KV, int hd, const float *q, long ldq, const float *k, const float *v,
                 long ldh, float *out, long ldo, float scale, const uint8_t *tree, int nthreads) {
    const int L = s0 + T, Lp = (L + 15) & ~15, C2 = hd / 2, CB = hd / 16, grp = H / KV;
    int16_t *kq = (int16_t *)aligned_alloc(64, (size_t)KV * Lp * hd * sizeof(int16_t));
    int8_t *vq = (int8_t *)aligned_alloc(64, (size_t)KV * Lp * hd);
    float *ks = (float *)aligned_alloc(64, (size_t)KV * Lp * sizeof(float));
    float *vs = (float *)aligned_alloc(64, (size_t)KV * Lp * sizeof(float));
    int failed = !(kq && vq && ks && vs);
    #pragma omp parallel num_threads(nthreads) if (!failed)
    if (!failed) {
        /* keys as [KV][Lp/16][hd/2][16 keys][2 channels] int16 (a vpdpwssd operand per 16 keys and channel pair), values as
           [KV][Lp/4][hd][4 keys] (one per 16 channels and key quad); padding keys are zero with zero scales */
        #pragma omp for schedule(static)
        for (long gj = 0; gj < (long)KV * Lp; gj++) {
            const int g = (int)(gj / Lp), j = (int)(gj % Lp);
            int16_t *kb = kq + (size_t)g * Lp * hd + (size_t)(j / 16) * hd * 16 + (j % 16) * 2;
            int8_t *vb = vq + (size_t)g * Lp * hd + (size_t)(j / 4) * hd * 4 + (j % 4);
            if (j >= L) {
                for (int c = 0; c < hd; c++) { kb[(c / 2) * 32 + (c % 2)] = 0; vb[c * 4] = 0; }
                ks[gj] = 0.0f; vs[gj] = 0.0f;
                continue;
            }
            const float *kr = k + (size_t)g * ldh + (size_t)j * hd, *vr = v + (size_t)g * ldh + (size_t)j * hd;
            const float km = absmax_row(kr, hd), vm = absmax_row(vr, hd);
            const float ki = km > 0.0f ? QK_MAX / km : 0.0f, vi = vm > 0.0f ? 127.0f / vm : 0.0f;
            for (int c = 0; c < hd; c += 16) {
                const __m512i a = round_scaled(kr + c, ki), b = round_scaled(vr + c, vi);
                int16_t a16[16];
                int8_t b8[16];
                _mm256_storeu_si256((__m256i *)a16, _mm512_cvtsepi32_epi16(a));
                _mm_storeu_si128((__m128i *)b8, _mm512_cvtsepi32_epi8(b));
                for (int i = 0; i < 16; i += 2) memcpy(kb + ((c + i) / 2) * 32, a16 + i, 4);
                for (int i = 0; i < 16; i++) vb[(c + i) * 4] = b8[i];
            }
            /* a key or value row that is not finite makes its key's score NaN, so every query that sees the key
               gets a NaN output (below); its value scale is 0, so a query that does not see it adds 0 x 0 */
            const int bad = isnan(km) || isnan(vm);
            ks[gj] = bad ? NAN : km / QK_MAX; vs[gj] = bad ? 0.0f : vm / 127.0f;
        }
        /* query rows go in groups of AT_R consecutive rows of one head: each key (and value) vector loaded serves
           all of them, and their accumulators are independent chains. A row's result does not depend on its group:
           the group runs to its last row's keys, and for the others the extra keys are masked (-inf score, weight
           exactly 0, nothing added to the integer sums). */
        float *sc = (float *)aligned_alloc(64, (size_t)AT_R * Lp * sizeof(float));
        uint8_t *pu = (uint8_t *)aligned_alloc(64, (size_t)AT_R * Lp);
        int16_t qw[AT_R][256] __attribute__((aligned(64)));
        if (!sc || !pu) {
            #pragma omp atomic write
            failed = 1;
        }
        const int TG = (T + AT_R - 1) / AT_R;
        #pragma omp for schedule(dynamic, 2)
        for (long hg = 0; hg < (long)H * TG; hg++) {
            if (!sc || !pu) continue;  /* this thread's scratch is missing: the call fails, nothing is read */
            const int h = (int)(hg / TG), t0 = (int)(hg % TG) * AT_R, nr = T - t0 < AT_R ? T - t0 : AT_R, g = h / grp;
            const int nb = tree ? (L + 15) / 16 : (s0 + t0 + nr + 15) / 16;  /* key blocks of the group's last row */
            const int16_t *kg = kq + (size_t)g * Lp * hd;
            const float *ksg = ks + (size_t)g * Lp, *vsg = vs + (size_t)g * Lp;
            __m512 qs[AT_R], mx[AT_R];
            int n[AT_R];
            for (int r = 0; r < AT_R; r++) {
                n[r] = r < nr ? (tree ? L : s0 + t0 + r + 1) : 0;  /* rows past T see no keys: computed, never stored */
                const float *qr = q + (size_t)(r < nr ? t0 + r : t0) * ldq + (size_t)h * hd;
                const float qm = absmax_row(qr, hd), qi = qm > 0.0f ? QK_MAX / qm : 0.0f;
                for (int c = 0; c < hd; c += 16)
                    _mm256_store_si256((__m256i *)(qw[r] + c), _mm512_cvtsepi32_epi16(round_scaled(qr + c, qi)));
                qs[r] = _mm512_set1_ps(qm / QK_MAX * scale);
                mx[r] = _mm512_set1_ps(-INFINITY);
            }
            for (int b0 = 0; b0 < nb; b0 += AT_B) {
                const int nbk = nb - b0 < AT_B ? nb - b0 : AT_B;
                __m512i acc[AT_R][AT_B];
                if (nbk == AT_B)
                    attn_qk(AT_B, C2, kg + (size_t)b0 * hd * 16, hd, qw, acc);
                else
                    attn_qk(nbk, C2, kg + (size_t)b0 * hd * 16, hd, qw, acc);
                for (int i = 0; i < nbk; i++) {
                    const int b = b0 + i;
                    const __m512 kscale = _mm512_load_ps(ksg + b * 16);
                    for (int r = 0; r < AT_R; r++) {
                        const int left = n[r] - b * 16;
                        __m512 x = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(acc[r][i]), qs[r]), kscale);
                        if (left < 16) x = _mm512_mask_blend_ps(left > 0 ? (__mmask16)((1u << left) - 1) : 0, _mm512_set1_ps(-INFINITY), x);
                        if (tree && r < nr && b * 16 + 16 > s0) {  /* new keys of this block that the row's branch cannot see */
                            __mmask16 hide = 0;
                            const uint8_t *tr = tree + (size_t)(t0 + r) * T;
                            for (int u = 0; u < 16; u++) {
                                const int j = b * 16 + u;
                                if (j >= s0 && j < L && !tr[j - s0]) hide |= (__mmask16)(1u << u);
                            }
                            x = _mm512_mask_blend_ps(hide, x, _mm512_set1_ps(-INFINITY));
                        }
                        _mm512_store_ps(sc + (size_t)r * Lp + b * 16, x);
                        mx[r] = _mm512_max_ps(mx[r], x);
                    }
                }
            }
            float f[AT_R];
            for (int r = 0; r < AT_R; r++) {
                float *sr = sc + (size_t)r * Lp;
                const __m512 m = _mm512_set1_ps(r < nr ? hmax512(mx[r]) : 0.0f);
                __m512 tot = _mm512_setzero_ps(), pmx = _mm512_setzero_ps();
                for (int b = 0; b < nb; b++) {
                    /* every key the row does not see (causal tail, tree, rows past T) scored -inf above: weight exactly 0,
                       whatever exp512 makes of -inf (a NaN score, should one occur, stays live and propagates) */
                    const __mmask16 live = _mm512_cmp_ps_mask(_mm512_load_ps(sr + b * 16), _mm512_set1_ps(-INFINITY), _CMP_NEQ_UQ);
                    const __m512 e = _mm512_maskz_mov_ps(live, exp512(_mm512_sub_ps(_mm512_load_ps(sr + b * 16), m)));
                    tot = _mm512_add_ps(tot, e);
                    const __m512 pv = _mm512_mul_ps(e, _mm512_load_ps(vsg + b * 16));  /* value scales folded in */
                    _mm512_store_ps(sr + b * 16, pv);
                    pmx = _mm512_max_ps(pmx, pv);
                }
                const float pm = hmax512(pmx), sum = _mm512_reduce_add_ps(tot);
                const __m512 pinv = _mm512_set1_ps(pm > 0.0f ? 255.0f / pm : 0.0f);
                for (int b = 0; b < nb; b++) {
                    const __m512i u = _mm512_cvt_roundps_epi32(_mm512_mul_ps(_mm512_load_ps(sr + b * 16), pinv),
                                                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                    _mm_store_si128((__m128i *)(pu + (size_t)r * Lp + b * 16), _mm512_cvtusepi32_epi8(u));
                }
                /* a NaN score (a query, key or value that is not finite: its NaN scale) made its weight and so the
                   sum NaN: the row's output is NaN too, not finite garbage */
                f[r] = sum > 0.0f || isnan(sum) ? pm / 255.0f / sum : 0.0f;
            }
            /* P V: per key quad, the 4 keys' weights of each row times the value vectors loaded once for all rows;
               integer sums, so the order does not matter */
            const int8_t *vg = vq + (size_t)g * Lp * hd;
            float *og = out + (size_t)t0 * ldo + (size_t)h * hd;
            for (int c0 = 0; c0 < CB; c0 += AT_C) {
                if (CB - c0 >= AT_C)
                    attn_pv(AT_C, nb * 4, nr, vg, hd, c0, pu, Lp, f, og, ldo);
                else
                    attn_pv(CB - c0, nb * 4, nr, vg, hd, c0, pu, Lp, f, og, ldo);
            }
        }
        free(sc);
        free(pu);
    }
    free(kq); free(vq); free(ks); free(vs);
    return failed;  /* 1: out of memory, `out` is not valid */
}

#pragma GCC pop_options
"""

# The AVX-512 / AMX code asks for its instructions with target pragmas (not -mavx512f here), so nothing else gets
# them on a CPU without them. No implicit FMA: elementwise ops round like torch.
_CFLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fopenmp", "-shared", "-fPIC"]


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


_LIB = None
_WHY_NOT: str | None = None
_KERNEL: str | None = None  # the int4 x int8 matmul FastBlock uses: "amx", "vnni" or "avx2" (once _load succeeded)
_RUNS: frozenset = frozenset()  # the matmul kernels this CPU can run
# CPU flags each kernel (and the helpers it runs with) needs, in the order `auto` prefers them
_KERNEL_FLAGS = {"amx": {"avx512f", "avx512bw", "amx_int8", "amx_tile"}, "vnni": {"avx512f", "avx512bw", "avx512_vnni"},
                 "avx2": {"avx2", "fma", "f16c"}}
_AVX2_HELPERS = ("pg_quant_act", "pg_rmsnorm_quant", "pg_silu_mul_quant")  # each has a <name>_avx2 twin


def _cache_dir() -> Path:
    d = Path(os.environ.get("POCKETGUARD_CACHE", Path.home() / ".cache" / "pocketguard")) / "kernels"
    d.mkdir(parents=True, exist_ok=True)
    return d


def _build() -> Path:
    cc = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if not cc:
        raise RuntimeError("no C compiler (gcc) on PATH")
    source = _C_SOURCE + _C_AVX2 + _C_VNNI
    # -march=native: the CPU's flags are part of the key, so a shared cache never hands one CPU another's build
    key = hashlib.sha256((source + " ".join(_CFLAGS) + cc + " ".join(sorted(_cpu_flags()))).encode()).hexdigest()[:16]
    out = _cache_dir() / f"pg_amx_{key}.so"
    if out.exists():
        return out
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "pg_amx.c"
        src.write_text(source)
        # build next to the final name, then rename: concurrent processes never load a half-written library
        fd, tmp_out = tempfile.mkstemp(suffix=".so", dir=out.parent)
        os.close(fd)
        try:
            r = subprocess.run([cc, *_CFLAGS, str(src), "-o", tmp_out], capture_output=True, text=True)
            if r.returncode:
                raise RuntimeError(f"compiling the CPU kernels failed: {r.stderr.strip()[:800]}")
            # the linker keeps mkstemp's 0600 (adding x: 0711), which other users of a shared cache cannot load
            os.chmod(tmp_out, 0o755)
            os.replace(tmp_out, out)
        finally:  # a build that failed, could not start (CC names no program) or was interrupted leaves nothing
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_out)
    return out


def _load():
    global _LIB, _WHY_NOT, _KERNEL, _RUNS
    if _LIB is not None or _WHY_NOT is not None:
        return _LIB
    try:
        want = os.environ.get("POCKETGUARD_CPU_KERNEL", "auto")
        if want not in ("auto", *_KERNEL_FLAGS, "portable"):
            raise RuntimeError(f"POCKETGUARD_CPU_KERNEL must be auto, amx, vnni, avx2 or portable, not {want!r}")
        if want == "portable":
            raise RuntimeError("disabled by POCKETGUARD_CPU_KERNEL=portable")
        if platform.machine() not in ("x86_64", "AMD64"):
            raise RuntimeError(f"the int8 kernels are x86-64 only (this is {platform.machine()})")
        flags = _cpu_flags()
        missing = {k: sorted(f - flags) for k, f in _KERNEL_FLAGS.items()}
        runs = {k for k, m in missing.items() if not m}
        if not runs or (want != "auto" and want not in runs):
            asked = [want] if want != "auto" else list(_KERNEL_FLAGS)
            raise RuntimeError("the CPU lacks " + " and ".join(f"{missing[k]} ({k})" for k in asked))
        torch.get_num_threads()  # torch (and its libgomp) are loaded first: the kernel shares that OpenMP runtime
        lib = ctypes.CDLL(str(_build()))
        if "amx" in runs and not lib.pg_amx_init():
            runs.discard("amx")
            if want == "amx" or not runs:
                raise RuntimeError("the kernel refused AMX tile data (arch_prctl ARCH_REQ_XCOMP_PERM failed)")
        kernel = want if want != "auto" else next(k for k in _KERNEL_FLAGS if k in runs)
        if kernel == "avx2":  # the AVX-512 helpers would fault on an AVX2 CPU: bind their AVX2 twins instead
            for name in _AVX2_HELPERS:
                setattr(lib, name, getattr(lib, name + "_avx2"))
        vp, i, l = ctypes.c_void_p, ctypes.c_int, ctypes.c_long
        lib.pg_quant_act.argtypes = [i, i, i, vp, l, vp, vp, vp, i]
        lib.pg_quant_act.restype = None
        for gemm in (lib.pg_gemm_amx, lib.pg_gemm_vnni, lib.pg_gemm_avx2):
            gemm.argtypes = [i, i, i, vp, vp, vp, vp, vp, vp, vp, l, vp, l, i]
            gemm.restype = ctypes.c_int  # these four return 1 when their scratch could not be allocated
        lib.pg_rmsnorm_quant.argtypes = [i, i, i, vp, l, vp, ctypes.c_float, vp, vp, vp, i]
        lib.pg_rmsnorm_quant.restype = ctypes.c_int
        lib.pg_rope.argtypes = [i, i, i, vp, l, vp, vp, i]
        lib.pg_rope.restype = None
        lib.pg_silu_mul_quant.argtypes = [i, i, i, vp, l, vp, vp, vp, i]
        lib.pg_silu_mul_quant.restype = ctypes.c_int
        lib.pg_attn_vnni.argtypes = [i, i, i, i, i, vp, l, vp, vp, l, vp, l, ctypes.c_float, vp, i]
        lib.pg_attn_vnni.restype = ctypes.c_int
        _KERNEL = kernel
        _RUNS = frozenset(runs)
        _LIB = lib
    except Exception as e:  # noqa: BLE001 - any failure means "use the portable path"
        _WHY_NOT = str(e)
    return _LIB


def available() -> tuple[bool, str]:
    """(True, kernel) when a fast kernel runs here: "amx" (AMX-INT8) if the CPU has it, else "vnni" (AVX-512
    VNNI), else "avx2" (AVX2 + FMA), or the one `POCKETGUARD_CPU_KERNEL=amx|vnni|avx2` forces; else (False, why):
    the portable path."""
    return (True, _KERNEL) if _load() is not None else (False, _WHY_NOT or "unavailable")


# ------------------------------------------------------------------------------------------ packing


ATTENTION_MODES = ("auto", "int8", "fp32", "sdpa")  # POCKETGUARD_ATTENTION's values; sdpa is fp32's older name


def int8_attention_available() -> bool:
    """Whether `pg_attn_vnni` runs here: the kernel library loaded on a CPU with AVX-512 VNNI, with a VNNI or AMX
    matmul kernel. POCKETGUARD_CPU_KERNEL=avx2 (or portable) asks for what an older CPU runs, attention included."""
    return _load() is not None and "vnni" in _RUNS and _KERNEL != "avx2"


def int8_attention() -> bool:
    """Whether packed passes on CPU in fp32 run attention in int8 (`pg_attn_vnni`), per POCKETGUARD_ATTENTION:

    * `auto` (default) and `int8`: int8 wherever the kernel is available (`int8_attention_available`), else fp32
      SDPA without a warning; the two are the same, `int8` is kept for the settings written when it was opt-in;
    * `fp32` (or its older name `sdpa`): never int8, torch's SDPA (exact fp32 on CPU).

    int8 (12-bit queries and keys, int8 values and uint8 probabilities) is 3-3.6x faster than fp32 SDPA on the default
    guard's prompt shapes; on the shipped guard its held-out F1 is exact attention's (docs/training-history.md,
    *The arithmetic's own noise*). GPUs and non-fp32 models keep SDPA whatever the setting (`packed.Attention`)."""
    want = os.environ.get("POCKETGUARD_ATTENTION", "auto")
    if want not in ATTENTION_MODES:
        raise ValueError(f"POCKETGUARD_ATTENTION must be auto, int8 or fp32 (sdpa: the same as fp32), not {want!r}")
    return want in ("auto", "int8") and int8_attention_available()


def attention_name() -> str:
    """What packed CPU passes run attention in here, for benchmark headers: "int8" or "fp32"."""
    return "int8" if int8_attention() else "fp32"


def attention_int8_fits(head_dim: int) -> bool:
    """Whether `pg_attn_vnni` takes heads of `head_dim`: a multiple of 16 (its 16-channel blocks), at most 256 (its
    query buffer). Other head sizes run SDPA (`packed.Attention`)."""
    return head_dim % 16 == 0 and head_dim <= 256


def attention_int8(q: Tensor, k: Tensor, v: Tensor, s0: int, n_heads: int, tree: Tensor | None = None,
                   out: Tensor | None = None) -> Tensor:
    """Causal attention of one sequence's T new queries over its keys [0, s0 + T) in int8 (`pg_attn_vnni`):
    q [T, H * hd] fp32 rows (any row stride), k / v [KV, capacity, hd] fp32 with contiguous rows -> [T, H * hd].
    `tree` [T, T] bool, when given, says which new keys each new query sees instead of causal order (all keys
    before s0 are seen). `out`, when given, is written in place ([T, H * hd] fp32 rows, any row stride: a slice
    of a packed pass's output). A query row's result depends on nothing but its own inputs, so batched and
    one-by-one passes agree."""
    T, KV, hd = q.shape[0], k.shape[0], k.shape[2]
    if q.dtype != torch.float32 or q.stride(1) != 1 or k.stride()[1:] != (hd, 1) or v.stride() != k.stride():
        raise ValueError("attention_int8 needs fp32 q rows and contiguous k/v rows of the same layout")
    if not attention_int8_fits(hd) or n_heads % KV or s0 + T > k.shape[1]:
        raise ValueError(f"attention_int8 cannot take head size {hd}, {n_heads} heads over {KV}, {s0 + T} keys")
    if tree is not None and (tree.shape != (T, T) or tree.dtype != torch.bool):
        raise ValueError(f"attention_int8's tree must be a [{T}, {T}] bool mask, got {tuple(tree.shape)} {tree.dtype}")
    mask = None if tree is None else tree.to(torch.uint8).contiguous()
    if out is None:
        out = torch.empty(T, n_heads * hd, dtype=torch.float32)
    elif out.shape != (T, n_heads * hd) or out.dtype != torch.float32 or out.stride(1) != 1:
        raise ValueError(f"attention_int8's out must be [{T}, {n_heads * hd}] fp32 rows, got {tuple(out.shape)} {out.dtype}")
    if _load().pg_attn_vnni(T, s0, n_heads, KV, hd, q.data_ptr(), q.stride(0), k.data_ptr(), v.data_ptr(), k.stride(0),
                            out.data_ptr(), out.stride(0), hd ** -0.5, None if mask is None else mask.data_ptr(), _threads()):
        raise MemoryError(f"int8 attention could not allocate its buffers ({s0 + T} keys)")  # the guard fails closed
    return out


def pack_int4_amx(codes: Tensor, scales: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """int4 codes [N, K] (-8..7) + group-32 fp16 scales [N, K/32] -> (packed uint8 [N/16, K/32, 256],
    fp16 scales [N/16, K/32, 16], fp32 wsum [N]). N must be a multiple of 16, K of 32."""
    N, K = codes.shape
    if N % 16 or K % 32:
        raise ValueError(f"AMX packing needs N % 16 == 0 and K % 32 == 0, got {N}x{K}")
    G = K // 32
    s = scales.reshape(N, G)
    if s.dtype != torch.float16:
        raise ValueError("the AMX kernel takes fp16 group scales")
    wsum = (s.float() * codes.reshape(N, G, 32).sum(-1, dtype=torch.int32).float()).sum(-1)
    # tile[nb, g, r, n, j] = code[nb*16 + n, g*32 + 4r + j] + 8  (VNNI: 4 consecutive k per column)
    t = (codes.to(torch.int16) + 8).to(torch.uint8).reshape(N // 16, 16, G, 8, 4).permute(0, 2, 3, 1, 4)
    t = t.reshape(N // 16, G, 512)
    packed = (t[..., :256] | (t[..., 256:] << 4)).contiguous()
    sw = s.reshape(N // 16, 16, G).permute(0, 2, 1).contiguous()
    return packed, sw, wsum.contiguous()


def unpack_int4_amx(packed: Tensor, sw: Tensor) -> tuple[Tensor, Tensor]:
    """`pack_int4_amx`'s inverse: (packed [N/16, K/32, 256], sw [N/16, K/32, 16]) -> (int4 codes int8 [N, K], fp16
    scales [N, K/32]), exactly. A `Guard.load`ed model keeps its int4 weights only as these tiles; exporters need the
    codes back (`FastBlock.standard_block`)."""
    nb, G, _ = packed.shape
    t = torch.cat([packed & 15, packed >> 4], -1)  # [nb, G, 512]: tile rows 0-3, then 4-7
    codes = t.reshape(nb, G, 8, 16, 4).permute(0, 3, 1, 2, 4).reshape(nb * 16, G * 32).to(torch.int8) - 8
    return codes, sw.permute(0, 2, 1).reshape(nb * 16, G)


_PACK_ROWS = 256  # rows packed at a time: transients stay ~1 MB, so loading does not fragment the heap


def _pack_linears(parts: list[nn.Module], n_pad: int) -> tuple[Tensor, Tensor, Tensor]:
    """Pack the concatenated int4 weights of `parts` (+ n_pad zero rows) a few hundred rows at a time."""
    from .kernels import unpack_int4

    K = parts[0].in_features
    N = sum(p.out_features for p in parts) + n_pad
    packed = torch.empty(N // 16, K // 32, 256, dtype=torch.uint8)
    sw = torch.empty(N // 16, K // 32, 16, dtype=torch.float16)
    wsum = torch.empty(N, dtype=torch.float32)
    row = 0
    for i, p in enumerate(parts):
        last = i == len(parts) - 1
        for r0 in range(0, p.out_features, _PACK_ROWS):
            r1 = min(p.out_features, r0 + _PACK_ROWS)
            codes = unpack_int4(p.qweight[r0:r1])
            sc = p.scales[r0:r1].reshape(r1 - r0, -1)
            if last and r1 == p.out_features and n_pad:
                codes = torch.cat([codes, codes.new_zeros(n_pad, K)])
                sc = torch.cat([sc, sc.new_ones(n_pad, sc.shape[1])])
            a, n = row + r0, codes.shape[0]
            pk, s2, ws = pack_int4_amx(codes, sc)
            packed[a // 16 : (a + n) // 16] = pk
            sw[a // 16 : (a + n) // 16] = s2
            wsum[a : a + n] = ws
        row += p.out_features
    return packed, sw, wsum


def _threads() -> int:
    return torch.get_num_threads()


class QAct:
    """Activations quantized for the fast kernels: uint8 codes [Mp, K] (rows padded to 16), per-row scale and
    zero point (as u = q + 128)."""

    __slots__ = ("xu", "sx", "zu", "M", "K")

    def __init__(self, M: int, K: int):
        Mp = (M + 15) // 16 * 16
        self.M, self.K = M, K
        self.xu = torch.empty(Mp, K, dtype=torch.uint8)
        self.sx = torch.empty(Mp, dtype=torch.float32)
        self.zu = torch.empty(Mp, dtype=torch.float32)


def _rows(x: Tensor, K: int) -> Tensor:
    x2 = x.reshape(-1, K)
    if x2.dtype != torch.float32 or x2.stride(-1) != 1:
        x2 = x2.float().contiguous()
    return x2


def quantize_rows(x: Tensor) -> QAct:
    """`kernels.quantize_act` of every row of x [..., K], in the kernel's layout."""
    K = x.shape[-1]
    x2 = _rows(x, K)
    q = QAct(x2.shape[0], K)
    _load().pg_quant_act(q.M, q.xu.shape[0], K, x2.data_ptr(), x2.stride(0), q.xu.data_ptr(), q.sx.data_ptr(),
                         q.zu.data_ptr(), _threads())
    return q


def rmsnorm_quantize(x: Tensor, weight: Tensor, eps: float) -> QAct:
    """`model.RMSNorm` then `quantize_rows`, fused (one read of x, no float copy of the normed rows)."""
    K = x.shape[-1]
    x2 = _rows(x, K)
    q = QAct(x2.shape[0], K)
    if _load().pg_rmsnorm_quant(q.M, q.xu.shape[0], K, x2.data_ptr(), x2.stride(0), weight.data_ptr(), float(eps),
                                q.xu.data_ptr(), q.sx.data_ptr(), q.zu.data_ptr(), _threads()):
        raise MemoryError(f"the RMSNorm kernel could not allocate its row buffers ({K} columns)")
    return q


def silu_mul_quantize(gu: Tensor, hidden: int) -> QAct:
    """silu(gate) * up for gu = [gate | up] rows (the fused w1|w3 output), then `quantize_rows`, in one pass."""
    q = QAct(gu.shape[0], hidden)
    if _load().pg_silu_mul_quant(q.M, q.xu.shape[0], hidden, gu.data_ptr(), gu.stride(0), q.xu.data_ptr(),
                                 q.sx.data_ptr(), q.zu.data_ptr(), _threads()):
        raise MemoryError(f"the SiLU kernel could not allocate its row buffers ({hidden} columns)")
    return q


class AmxInt4Linear(nn.Module):
    """y = x @ W^T with W int4 group-32 symmetric (fp16 scales) and x quantized to int8 per token (8da4w).

    Built from one or several `kernels.Int4WeightInt8ActLinear` sharing an input (outputs concatenated: fused
    q|k|v or gate|up, so the input is quantized once)."""

    KERNEL = "amx"  # pg_gemm_<KERNEL> multiplies; both kernels read the same packed weights

    def __init__(self, parts: list[nn.Module]):
        super().__init__()
        if _load() is None or self.KERNEL not in _RUNS:
            why = _WHY_NOT or f"the CPU lacks {self.KERNEL}"
            raise RuntimeError(f"the {self.KERNEL} kernel does not run here: {why}")
        K = parts[0].in_features
        for p in parts:
            if p.in_features != K or not _int4_g32(p):
                raise ValueError("AmxInt4Linear takes int4 group-32 linears (fp16 scales) with int8 activations "
                                 "and one input size")
        self.in_features = K
        self.splits = [p.out_features for p in parts]
        n = sum(self.splits)
        self.n_pad = (-n) % 16
        self.out_features = n
        if any(p.out_features % 16 for p in parts[:-1]):
            raise ValueError("fused linears need multiples of 16 output rows (all but the last)")
        packed, sw, wsum = _pack_linears(parts, self.n_pad)
        self.register_buffer("packed", packed)
        self.register_buffer("sw", sw)
        self.register_buffer("wsum", wsum)

    def parts(self) -> list[nn.Module]:
        """The constructor's inverse: the `kernels.Int4WeightInt8ActLinear`s this was packed from, with their own
        codes and fp16 scales (less the zero rows padding to 16)."""
        from .kernels import Int4WeightInt8ActLinear

        codes, scales = (t[: self.out_features].split(self.splits) for t in unpack_int4_amx(self.packed, self.sw))
        out = []
        for c, s in zip(codes, scales):
            lin = Int4WeightInt8ActLinear(self.in_features, c.shape[0], 32, torch.float16)
            lin.set_codes(c, s)
            out.append(lin)
        return out

    def mm(self, q: QAct, residual: Tensor | None = None) -> Tensor:
        """[M, out_features] float32 from activations quantized by `quantize_rows` / `rmsnorm_quantize`;
        `residual` [M, out_features] (fp32, unit column stride) is added in the kernel's epilogue."""
        N = self.out_features + self.n_pad
        y = torch.empty(q.M, N, dtype=torch.float32)
        if residual is not None and (self.n_pad or residual.dtype != torch.float32 or residual.stride(-1) != 1
                                     or tuple(residual.shape) != (q.M, self.out_features)):
            raise ValueError("residual must be fp32 [M, out_features] with contiguous rows (and no padding)")
        rp, rl = (residual.data_ptr(), residual.stride(0)) if residual is not None else (None, 0)
        gemm = getattr(_load(), f"pg_gemm_{self.KERNEL}")
        if gemm(q.M, N, q.K, q.xu.data_ptr(), q.sx.data_ptr(), q.zu.data_ptr(), self.packed.data_ptr(),
                self.sw.data_ptr(), self.wsum.data_ptr(), y.data_ptr(), N, rp, rl, _threads()):
            raise MemoryError(f"the {self.KERNEL} matmul could not allocate its buffers ({q.M} x {q.K} rows)")
        return y[:, : self.out_features] if self.n_pad else y

    def forward(self, x: Tensor) -> Tensor:
        y = self.mm(quantize_rows(x))
        return y.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, splits={self.splits}, int4 g32 x int8 dynamic ({self.KERNEL})"


class VnniInt4Linear(AmxInt4Linear):
    """`AmxInt4Linear` on AVX-512 VNNI (`vpdpbusd`), for x86 CPUs without AMX (AMD Zen 4, Intel Ice Lake): the
    same packed weights and the same exact int32 group sums, so the two give the same floats."""

    KERNEL = "vnni"


class Avx2Int4Linear(AmxInt4Linear):
    """`AmxInt4Linear` on AVX2 (`vpmaddubsw` + `vpmaddwd`), for x86 CPUs without AVX-512: the same packed weights
    and the same exact int32 group sums, so it gives the same floats as the other two."""

    KERNEL = "avx2"


LINEARS: dict[str, type[AmxInt4Linear]] = {"amx": AmxInt4Linear, "vnni": VnniInt4Linear, "avx2": Avx2Int4Linear}


def _linear_class() -> type[AmxInt4Linear]:
    """The linear of the kernel `available()` chose."""
    _load()
    return LINEARS.get(_KERNEL or "amx", AmxInt4Linear)


# ------------------------------------------------------------------------------------------ modules


class FastBlock(nn.Module):
    """`model.TransformerBlock` on the AMX (or VNNI, or AVX2) kernel, same forward signature and semantics: RMSNorm fused with
    the activation quantization, q|k|v and gate|up fused, RoPE in place in C, SDPA for attention."""

    def __init__(self, block: nn.Module):
        super().__init__()
        a, f = block.attention, block.feed_forward
        self.n_heads, self.n_kv_heads, self.head_dim = a.n_heads, a.n_kv_heads, a.head_dim
        self.attention_norm_weight = nn.Parameter(block.attention_norm.weight.detach().float().clone(), requires_grad=False)
        self.ffn_norm_weight = nn.Parameter(block.ffn_norm.weight.detach().float().clone(), requires_grad=False)
        self.attention_eps, self.ffn_eps = block.attention_norm.eps, block.ffn_norm.eps
        Linear = _linear_class()
        self.wqkv = Linear([a.wq, a.wk, a.wv])
        self.wo = Linear([a.wo])
        self.hidden = f.w1.out_features
        self.w13 = Linear([f.w1, f.w3])
        self.w2 = Linear([f.w2])

    def standard_block(self) -> nn.Module:
        """`FastBlock(block)`'s inverse: the `model.TransformerBlock` it was made from, its linears the 8da4w
        `kernels` modules with the same codes and fp16 scales (`AmxInt4Linear.parts`), its norm gains fp32 as held
        here. Every exporter reads the standard per-layer modules, and reaches this by its name
        (`pocketguard.export.standard_blocks`: export sits below runtime_cpu, docs/design.md)."""
        from .model import ModelArgs, TransformerBlock

        args = ModelArgs(dim=self.wo.out_features, n_layers=1, n_heads=self.n_heads, n_kv_heads=self.n_kv_heads,
                         head_dim=self.head_dim, ffn_dims=self.hidden, norm_eps=self.attention_eps)
        with torch.device("meta"):  # every tensor is replaced below
            block = TransformerBlock(args, self.hidden)
        a, f = block.attention, block.feed_forward
        a.wq, a.wk, a.wv = self.wqkv.parts()
        (a.wo,) = self.wo.parts()
        f.w1, f.w3 = self.w13.parts()
        (f.w2,) = self.w2.parts()
        for norm, gain in ((block.attention_norm, self.attention_norm_weight), (block.ffn_norm, self.ffn_norm_weight)):
            norm.weight = nn.Parameter(gain.detach().clone(), requires_grad=False)
        block.ffn_norm.eps = self.ffn_eps
        return block

    _NO_BIAS = (lambda: None, None)
    _bias_for: tuple = _NO_BIAS  # (weak reference to the last mask, its bias)

    @classmethod
    def _bias(cls, mask: Tensor) -> Tensor:
        """Additive float mask (0 / -inf) of the model's boolean mask, converted once per forward (every layer gets
        the same mask object). The mask is held weakly and its bias dropped when it dies (`_drop`), so a long
        prefill's [T, L] bias is not kept past its forward, across models and conversations."""
        last, bias = cls._bias_for  # one read: another thread may replace the pair meanwhile
        if last() is not mask:
            bias = torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, float("-inf"))
            cls._bias_for = (weakref.ref(mask, cls._drop), bias)
        return bias

    @classmethod
    def _drop(cls, ref: weakref.ref) -> None:
        if cls._bias_for[0] is ref:  # (a newer mask's pair stays)
            cls._bias_for = cls._NO_BIAS

    ATTN_BLOCK = 128  # query rows per SDPA call: later blocks skip the keys they cannot see

    def _attention(self, q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, T: int) -> Tensor:
        """SDPA over the cache, by blocks of queries: block [r0, r1) only reads keys [0, s0 + r1) (everything
        after is masked for all its rows), which skips ~40% of a causal prefill's work. Same result."""
        gqa = self.n_kv_heads != self.n_heads
        L = k.shape[2]
        if mask is None:
            if T <= self.ATTN_BLOCK:
                return F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=gqa)
            mask = torch.ones(T, L, dtype=torch.bool).tril(L - T)[None, None]
        bias = self._bias(mask)
        if T <= self.ATTN_BLOCK:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias, enable_gqa=gqa)
        s0 = L - T
        out = []
        for r0 in range(0, T, self.ATTN_BLOCK):
            r1 = min(T, r0 + self.ATTN_BLOCK)
            e = s0 + r1
            out.append(F.scaled_dot_product_attention(q[:, :, r0:r1], k[:, :, :e], v[:, :, :e],
                                                      attn_mask=bias[..., r0:r1, :e], enable_gqa=gqa))
        return torch.cat(out, dim=2)

    def _qkv(self, x2: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
        """Rows [M, D] -> q|k|v rows [M, (H + 2 KV) hd] with RoPE applied to q and k."""
        hd = self.head_dim
        qkv = self.wqkv.mm(rmsnorm_quantize(x2, self.attention_norm_weight, self.attention_eps))
        c2, s2 = _rows(cos, hd), _rows(sin, hd)
        _load().pg_rope(x2.shape[0], self.n_heads + self.n_kv_heads, hd, qkv.data_ptr(), qkv.stride(0), c2.data_ptr(),
                        s2.data_ptr(), _threads())
        return qkv

    REST_ROWS = 1024  # rows per chunk of the block's second half (see _rest)

    def _rest(self, y2: Tensor, x2: Tensor) -> Tensor:
        """Attention output rows y2 [M, H hd] and block input rows x2 -> block output rows [M, D]. A packed pass
        of thousands of rows runs in chunks of REST_ROWS: every step is per row (same results), and the fused
        gate|up output of a 4,096-row pass (over glibc's 32 MiB mmap threshold) was a fresh mapping that every
        layer page-faulted in again, which took the linears from ~340 to ~230 GMAC/s (Zen 4)."""
        M = x2.shape[0]
        if M <= self.REST_ROWS:
            return self._rest_rows(y2, x2)
        out = torch.empty_like(x2)
        for i in range(0, M, self.REST_ROWS):
            out[i : i + self.REST_ROWS] = self._rest_rows(y2[i : i + self.REST_ROWS], x2[i : i + self.REST_ROWS])
        return out

    def _rest_rows(self, y2: Tensor, x2: Tensor) -> Tensor:
        h = self.wo.mm(quantize_rows(y2), residual=x2)
        gu = self.w13.mm(rmsnorm_quantize(h, self.ffn_norm_weight, self.ffn_eps))
        return self.w2.mm(silu_mul_quantize(gu, self.hidden), residual=h)

    def forward(self, x: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | None, cache: KVCache | None, layer: int) -> Tensor:
        B, T, D = x.shape
        H, KV, hd = self.n_heads, self.n_kv_heads, self.head_dim
        x2 = _rows(x, D)
        qkv = self._qkv(x2, cos, sin)
        q = qkv[:, : H * hd].view(B, T, H, hd).transpose(1, 2)
        k = qkv[:, H * hd : (H + KV) * hd].view(B, T, KV, hd).transpose(1, 2)
        v = qkv[:, (H + KV) * hd :].view(B, T, KV, hd).transpose(1, 2)
        if cache is not None:
            s0 = cache.length - T
            cache.k[layer][:, :, s0 : s0 + T] = k.to(cache.k[layer].dtype)
            cache.v[layer][:, :, s0 : s0 + T] = v.to(cache.v[layer].dtype)
            k, v = cache.k[layer][:, :, : s0 + T].to(q.dtype), cache.v[layer][:, :, : s0 + T].to(q.dtype)
        y = self._attention(q, k, v, mask, T)
        return self._rest(y.transpose(1, 2).reshape(B * T, H * hd), x2).view(B, T, D).to(x.dtype)

    def packed(self, x: Tensor, cos: Tensor, sin: Tensor, attend, layer: int, last: Tensor | None = None) -> Tensor:
        """The block on packed rows x [N, D] (`packed.forward`): `attend(layer, q, k, v, last)` is the per-sequence
        attention; with `last`, only those rows go on past it (`packed._block`). Every step here is per row, so a
        row's output does not depend on the other rows."""
        H, KV, hd = self.n_heads, self.n_kv_heads, self.head_dim
        x2 = _rows(x, x.shape[-1])
        qkv = self._qkv(x2, cos, sin)
        y = attend(layer, qkv[:, : H * hd], qkv[:, H * hd : (H + KV) * hd], qkv[:, (H + KV) * hd :], last)
        if last is not None:
            # (as packed._pad_rows, to the rows `attend` returned: packed imports this module, never the reverse)
            x2 = torch.cat([x2[last], x2.new_zeros(y.shape[0] - len(last), x2.shape[1])])
        return self._rest(y, x2).to(x.dtype)


def _int4_g32(m: nn.Module | None) -> bool:
    from . import kernels as K

    return (isinstance(m, K.QuantLinear) and m.weight_bits == 4 and m.act_bits == 8 and m.group_size == 32
            and m.in_features % 32 == 0 and m.scales.dtype == torch.float16)


_ATTN, _MLP = ("wq", "wk", "wv", "wo"), ("w1", "w2", "w3")


def _block_ok(block: nn.Module) -> bool:
    a, f = getattr(block, "attention", None), getattr(block, "feed_forward", None)
    return (a is not None and f is not None and all(_int4_g32(getattr(a, n, None)) for n in _ATTN)
            and all(_int4_g32(getattr(f, n, None)) for n in _MLP)
            and a.wq.out_features % 16 == 0 and a.wk.out_features % 16 == 0 and f.w1.out_features % 16 == 0)


def accelerate(model: nn.Module, strict: bool = False) -> dict:
    """Swap the 8da4w transformer blocks of `model` for `FastBlock`s in place; returns what was done.

    Blocks whose linears are not all int4 group-32 (fp16 scales) with int8 activations are left alone.
    Without a fast kernel (see `available()`) nothing changes, unless `strict`, which raises instead."""
    ok, why = available()
    info = {"kernel": why if ok else "portable", "reason": why, "blocks": 0, "of": len(model.layers)}
    if not ok:
        if strict:
            raise RuntimeError(f"no fast CPU kernel (AMX, VNNI or AVX2): {why}")
        return info
    for i, block in enumerate(model.layers):
        if not isinstance(block, FastBlock) and _block_ok(block):
            model.layers[i] = FastBlock(block)
        info["blocks"] += isinstance(model.layers[i], FastBlock)
    if info["blocks"] == 0:
        info.update(kernel="portable", reason="no int4 group-32 8da4w blocks")
    model.runtime_cpu = info
    return info


# ------------------------------------------------------------------------------------------ loading


def _safetensors_index(path: Path) -> tuple[int, dict]:
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return 8 + n, header


_ST_DTYPES = {"U8": torch.uint8, "I8": torch.int8, "F16": torch.float16, "F32": torch.float32, "BF16": torch.bfloat16,
              "I32": torch.int32, "I64": torch.int64}


def load_fast(path: str | Path, accelerate_model: bool = True, verify: bool = True):
    """Load a compressed artifact for fast CPU inference at low peak memory -> `Loaded(model, tokenizer, meta)`.

    `artifact.load_artifact` builds the model (its tensors are memory-mapped by safetensors, so
    nothing is resident until touched); then each layer's int4 weights are read with `pread` into private
    memory, repacked for the fast kernel and dropped, so the mapped copies are never touched. The embedding
    table stays mapped: only the rows prompts use become resident. `meta["runtime_cpu"]` says which kernel runs."""
    from .artifact import WEIGHTS, load_artifact

    loaded = load_artifact(path, verify=verify)
    model = loaded.model
    asked = os.environ.get("POCKETGUARD_CPU_KERNEL", "auto")
    if accelerate_model and asked not in ("auto", "portable") and not available()[0]:
        # a kernel asked for by name (or a misspelt one) that cannot run: say so, rather than run the portable path,
        # many times slower, in silence
        warnings.warn(f"POCKETGUARD_CPU_KERNEL={asked} cannot be used ({available()[1]}); running the portable "
                      "kernels", RuntimeWarning, stacklevel=2)
    if accelerate_model and available()[0]:
        with _long_lived_allocations():
            _repack_from_file(model, Path(loaded.meta.get("path", path)) / WEIGHTS)
    info = accelerate(model) if accelerate_model else {"kernel": "portable", "reason": "not requested"}
    loaded.meta["runtime_cpu"] = info
    return loaded


@contextlib.contextmanager
def _long_lived_allocations():
    """While packing, give every allocation above 256 KiB its own mapping (glibc `M_MMAP_THRESHOLD`): the
    packed weights then live outside the heap and the packing transients cannot fragment it (which cost
    ~150 MiB of RSS). Afterwards the threshold goes to glibc's dynamic maximum (32 MiB), so inference
    buffers are recycled from the heap rather than faulted in from fresh mappings on every call, and up to
    256 MiB of free heap top is kept (`M_TRIM_THRESHOLD`; a threshold set by hand leaves glibc's trim at its
    128 KiB default, so every large free went back to the OS and the next layer page-faulted it in again: the
    24-block guard's linears on 2,048-row passes ran at 212-327 GMAC/s before, 338-347 after, one Zen 4 core;
    outputs over 32 MiB, such as gate|up of a 4,096-row pass, are still fresh mappings)."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:  # not glibc
        yield
        return
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
    libc.mallopt(M_MMAP_THRESHOLD, 256 << 10)
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, 32 << 20)
        libc.malloc_trim(0)
        libc.mallopt(M_TRIM_THRESHOLD, 256 << 20)


def _repack_from_file(model: nn.Module, weights: Path) -> None:
    """Replace each 8da4w block by a FastBlock packed from private `pread` copies of its int4 tensors."""
    offset, header = _safetensors_index(weights)
    with open(weights, "rb") as f:

        def read(name: str) -> Tensor:
            h = header[name]
            a, b = h["data_offsets"]
            t = torch.empty(h["shape"], dtype=_ST_DTYPES[h["dtype"]])
            f.seek(offset + a)
            f.readinto(memoryview(t.view(torch.uint8).reshape(-1).numpy()))
            return t

        for i, block in enumerate(model.layers):
            if not _block_ok(block):
                continue
            for part, names in (("attention", _ATTN), ("feed_forward", _MLP)):
                for n in names:  # private copies: the mapped pages are never faulted in
                    lin = getattr(getattr(block, part), n)
                    lin.qweight = read(f"layers.{i}.{part}.{n}.qweight")
                    lin.scales = read(f"layers.{i}.{part}.{n}.scales")
            model.layers[i] = FastBlock(block)
            del block, lin
