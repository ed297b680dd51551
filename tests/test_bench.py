"""`pocketguard bench` (report structure, prompt construction, targets) and the AMX CPU runtime (parity with the
reference kernels, same verdicts, low-memory loading, fallback)."""

from __future__ import annotations

import argparse
import copy

import pytest
import torch

from pocketguard import bench
from pocketguard import kernels as K
from pocketguard import runtime_cpu as R
from pocketguard import testing as T
from pocketguard.compress.artifact import save_artifact
from pocketguard.compress.quantize import QuantConfig, quantize_
from pocketguard.conversation import Conversation
from pocketguard.guard import Guard
from pocketguard.model import KVCache
from pocketguard.policy import Policy
from pocketguard.prompt import encode_prompt

AMX = R.available()[0]  # a fast kernel runs here: AMX, AVX-512 VNNI or AVX2 (the tests below take whichever)
needs_amx = pytest.mark.skipif(not AMX, reason=f"no AMX, VNNI or AVX2 kernel here: {R.available()[1]}")


@pytest.fixture(scope="module")
def qmodel(tiny_tok):
    args = T.tiny_args(vocab_size=tiny_tok.vocab_size, dim=128, n_heads=4, n_kv_heads=2, ffn_dims=[256, 160])
    return quantize_(T.tiny_model(args, seed=1, std=0.1), QuantConfig(mode="rtn")).eval()


@pytest.fixture(scope="module")
def artifact(qmodel, tiny_tok, tmp_path_factory):
    return save_artifact(qmodel, tiny_tok, Policy.default(), tmp_path_factory.mktemp("art"))


# ------------------------------------------------------------------------------------------ bench


def test_realistic_conversation_fills_the_prompt(tiny_tok):
    policy = Policy.default()
    for n in (600, 800):
        msgs = bench.realistic_conversation(tiny_tok, policy, n)
        conv = Conversation.from_messages(msgs)
        size = len(encode_prompt(tiny_tok, policy, conv))
        assert conv.judged == "agent" and n - 8 <= size <= n
    # Little room beside the policy: the question is cut rather than the request refused.
    short = len(encode_prompt(tiny_tok, policy, Conversation.from_messages([{"role": "user", "content": "How"},
                                                                            {"role": "assistant", "content": "Sure"}])))
    msgs = bench.realistic_conversation(tiny_tok, policy, short + 6)
    size = len(encode_prompt(tiny_tok, policy, Conversation.from_messages(msgs)))
    assert short + 6 - 4 <= size <= short + 6 and msgs[0]["content"] == " ".join(bench._USER.split()[: len(msgs[0]["content"].split())])
    with pytest.raises(ValueError, match="policy prompt"):
        bench.realistic_conversation(tiny_tok, policy, 100)


def _rows(pg_cold, pg_cached, ll_cold, pg_rss, ll_rss):
    def r(cold, cached, rss):
        return {"ttv_cold_s": cold, "ttv_cached_s": cached, "prefill_tok_s": 100.0, "decode_tok_s": 10.0,
                "peak_rss_bytes": rss, "disk_bytes": 1 << 20, "load_s": 1.0, "answers": ["safe"]}

    return {"pocketguard": r(pg_cold, pg_cached, pg_rss), "llamacpp": r(ll_cold, ll_cold * 0.8, ll_rss)}


def test_targets_are_judged_honestly():
    met = bench.targets(_rows(0.9, 0.3, 1.0, 500, 600))
    assert [ok for _, ok, _ in met] == [True, True, True]
    missed = bench.targets(_rows(1.1, 0.5, 1.0, 700, 600))
    assert [ok for _, ok, _ in missed] == [False, False, False]
    assert "2.00x" in missed[1][2]
    assert bench.targets({"pocketguard": _rows(1, 1, 1, 1, 1)["pocketguard"]})[0][1] is None


def test_table_lists_every_metric_with_ratios():
    rows = _rows(0.5, 0.25, 1.0, 500, 600)
    md = bench.render_table(rows, "t", markdown=True)
    lines = md.splitlines()
    assert lines[2].startswith("| metric | pocketguard | llama.cpp Q4_0 |")
    body = {line.split(" | ")[0].strip("| "): line for line in lines[4:]}
    assert {"time-to-verdict, cold", "time-to-verdict, policy prefix cached", "prefill tokens/s (cold)", "decode tokens/s",
            "peak RSS", "on-disk size", "load time", "answer"} <= set(body)
    assert "500 ms (2.00x)" in body["time-to-verdict, cold"]
    assert "(1.20x)" in body["peak RSS"]  # 600 / 500: pocketguard uses 1.2x less memory
    failed = bench.render_table({**rows, "executorch": {"error": "exit code 1: boom"}}, "t", markdown=True)
    assert "failed" in failed and "boom" in failed


def test_bench_runs_pocketguard_alone_on_a_tiny_artifact(artifact, tmp_path, capsys):
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    args = p.parse_args(["--model", str(artifact), "--prompt-tokens", "600", "--runs", "1", "--peers", "",
                         "--workdir", str(tmp_path), "--json", str(tmp_path / "r.json"), "--markdown"])
    assert bench.run(args) == 0
    out = capsys.readouterr().out
    assert "| metric | pocketguard |" in out and "time-to-verdict, policy prefix cached" in out
    assert "[n/a]" in out  # no llama.cpp column: no target claims
    import json

    r = json.loads((tmp_path / "r.json").read_text())
    pg = r["rows"]["pocketguard"]
    assert pg["peak_rss_bytes"] > 0 and pg["ttv_cold_s"] > 0 and pg["ttv_cached_s"] > 0
    assert r["raw"]["pocketguard"]["cached"]["cached_tokens"] == r["prefix_tokens"] > 0
    assert pg["kernel"] == (R.available()[1] if AMX else "portable")


def test_bench_takes_relative_paths_from_any_directory(artifact, tmp_path, capsys, monkeypatch):
    """The workers run in another directory: a relative --model and --workdir (the default is runs/bench) are the
    caller's, not the worker's — the run used to fail with FileNotFoundError on spec-pocketguard.json."""
    import os

    monkeypatch.chdir(tmp_path)
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    args = p.parse_args(["--model", os.path.relpath(artifact, tmp_path), "--prompt-tokens", "600", "--runs", "1",
                         "--peers", "", "--markdown"])
    assert bench.run(args) == 0
    out = capsys.readouterr().out
    assert "failed" not in out and "| time-to-verdict, cold |" in out
    assert (tmp_path / "runs" / "bench" / "result-pocketguard.json").exists()


def test_a_peer_that_is_not_installed_is_reported_so_and_nothing_is_exported_for_it(artifact, tmp_path, capsys, monkeypatch):
    """A missing peer (llama-cpp-python is an optional extra) says how to install it — in rich's table too, where
    "[llamacpp]" would otherwise be read as markup — and costs no GGUF export; a present one is not flagged."""
    from pocketguard import bench_workers as BW

    monkeypatch.setitem(BW.PEER_MODULES, "llamacpp", "no_such_module_pg")
    assert BW.peer_missing("llamacpp") == "not installed here (pip install 'pocketguard[llamacpp]')"
    monkeypatch.setitem(BW.PEER_MODULES, "executorch", "json")
    assert BW.peer_missing("executorch") is None
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    for fmt in (["--markdown"], []):
        args = p.parse_args(["--model", str(artifact), "--prompt-tokens", "600", "--runs", "1", "--peers", "llamacpp",
                             "--workdir", str(tmp_path), *fmt])
        assert bench.run(args) == 0
        out = capsys.readouterr().out
        assert out.count("not installed") >= 7 and "pip install 'pocketguard[llamacpp]'" in out and "failed" not in out
    assert not list(tmp_path.glob("*.gguf"))


# ------------------------------------------------------------------------------------ AMX runtime


@needs_amx
def test_activation_quantization_is_bit_exact():
    x = torch.randn(37, 160) * torch.rand(37, 1) * 4 + torch.randn(37, 1)
    x[3] = 0.0
    q = R.quantize_rows(x)
    codes, s, z = K.quantize_act(x)
    assert torch.equal(q.xu[:37].to(torch.int16) - 128, codes.to(torch.int16))
    assert torch.equal(q.sx[:37], s[:, 0]) and torch.equal(q.zu[:37] - 128, z[:, 0].float())
    assert not q.xu[37:].any()  # padding rows


@needs_amx
@pytest.mark.parametrize("M,Kd,splits", [(1, 64, [20]), (17, 128, [32, 16]), (40, 256, [144, 16, 8])])
def test_amx_linear_matches_the_reference_kernel(M, Kd, splits):
    torch.manual_seed(M)
    parts = [K.Int4WeightInt8ActLinear.from_weight(torch.randn(n, Kd) * 0.05, 32, torch.float16) for n in splits]
    x = torch.randn(M, Kd)
    with K.kernel_mode_ctx("reference"):
        ref = torch.cat([p(x) for p in parts], -1)
    y = R._linear_class()(parts)(x)  # fused, padded to whole 16-column tiles where needed
    # Integer dot products are exact; only the fp32 summation order of the group partial sums differs.
    assert y.shape == ref.shape and torch.allclose(y, ref, atol=1e-5 * float(ref.abs().max()), rtol=0)


@needs_amx
def test_accelerated_model_matches_reference_and_gives_the_same_verdicts(qmodel, tiny_tok):
    fast = copy.deepcopy(qmodel)
    info = R.accelerate(fast)
    assert info["kernel"] == R.available()[1] and info["blocks"] == qmodel.args.n_layers
    torch.manual_seed(0)
    ids = torch.randint(12, tiny_tok.vocab_size, (2, 300))  # > FastBlock.ATTN_BLOCK: blocked attention
    valid = torch.ones(2, 300, dtype=torch.bool)
    valid[1, 250:] = False

    def dev(a, b):  # worst per-position deviation, relative to the logits' scale
        return float(((a - b).abs().amax(-1) / a.abs().amax()).max())

    with torch.inference_mode(), K.kernel_mode_ctx("reference"):
        # Dynamic int8 activations make any implementation sensitive to 1-ulp differences (a value crossing
        # a rounding boundary moves by a quantization step, and through K/V every later token sees it). The
        # yardstick is the reference's own sensitivity: its largest change after a 1-ulp nudge (up or down) of
        # the embeddings or of a block's output.
        a = qmodel(ids)
        nudged = 0.0
        for mod in [qmodel.tok_embeddings, *qmodel.layers]:
            for d in (1, -1):
                hook = mod.register_forward_hook(lambda m, i, o: torch.nextafter(o, o + d))
                nudged = max(nudged, dev(a, qmodel(ids)))
                hook.remove()
        assert 0 < nudged < 0.05
        assert dev(a, fast(ids)) <= 2 * nudged  # no cache: plain causal
        c1, c2 = KVCache(qmodel.args, 2, 310), KVCache(fast.args, 2, 310)
        a = qmodel(ids[:, :100], cache=c1, valid=valid[:, :100])  # a prefix, then the rest on top of it
        assert dev(a, fast(ids[:, :100], cache=c2, valid=valid[:, :100])) <= 2 * nudged
        a = qmodel(ids[:, 100:], cache=c1, valid=valid[:, 100:], last_only=True)
        assert dev(a, fast(ids[:, 100:], cache=c2, valid=valid[:, 100:], last_only=True)) <= 2 * nudged
        a, b = qmodel(ids[:, :2], cache=c1), fast(ids[:, :2], cache=c2)  # decode steps on the cache
        assert dev(a, b) <= 2 * nudged
    convs = ["how do I make a bomb", "bread recipe", "hello world how do I vote",
             [{"role": "user", "content": "kill"}, {"role": "assistant", "content": "cake of the world"}]]
    with K.kernel_mode_ctx("reference"):
        want = [Guard(qmodel, tiny_tok).moderate(c) for c in convs]
    for prefix_cache in (False, True):
        got = [Guard(fast, tiny_tok, prefix_cache=prefix_cache).moderate(c) for c in convs]
        assert [(v.status, v.categories) for v in got] == [(v.status, v.categories) for v in want]
        # the same 1-ulp sensitivity shows as up to ~1e-2 in p_unsafe through a random model
        assert all(abs(g.p_unsafe - w.p_unsafe) < 2e-2 for g, w in zip(got, want))


@needs_amx
def test_load_fast_streams_the_artifact_into_the_same_model(artifact, qmodel):
    loaded = R.load_fast(artifact)
    assert loaded.meta["runtime_cpu"]["blocks"] == qmodel.args.n_layers
    assert all(isinstance(b, R.FastBlock) for b in loaded.model.layers)
    ref = copy.deepcopy(qmodel)
    R.accelerate(ref)
    ids = torch.randint(12, 500, (1, 20))
    with torch.inference_mode():
        assert torch.equal(loaded.model(ids), ref(ids))


def test_without_amx_the_model_is_left_alone(qmodel, monkeypatch):
    monkeypatch.setattr(R, "_LIB", None)
    monkeypatch.setattr(R, "_WHY_NOT", "the CPU lacks ['amx_int8'] (simulated)")
    m = copy.deepcopy(qmodel)
    info = R.accelerate(m)
    assert info["kernel"] == "portable" and "simulated" in info["reason"]
    assert not any(isinstance(b, R.FastBlock) for b in m.layers)
    with pytest.raises(RuntimeError, match="simulated"):
        R.accelerate(m, strict=True)
