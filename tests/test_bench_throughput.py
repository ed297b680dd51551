"""`pocketguard bench --throughput`: the bundled length mix, the JSONL reader, and the measurement's report
(rates, ratio, roofline, verdict identity) on a tiny guard. Timings themselves are never asserted."""

from __future__ import annotations

import importlib.util
import json
import statistics

import pytest

from pocketguard import bench, bench_throughput as BT
from pocketguard import testing as T
from pocketguard.guard import Guard


def test_bundled_mix_has_the_length_profile(tiny_tok):
    convs = BT.bundled_mix(tiny_tok, n=64, seed=0)
    assert convs == BT.bundled_mix(tiny_tok, n=64, seed=0)  # deterministic
    text = [c if isinstance(c, str) else c[-1]["content"] for c in convs]
    n = [len(tiny_tok.encode(t)) for t in text]
    assert max(n) >= 1961 and min(n) >= 4 and 120 <= statistics.mean(n) <= 320
    assert sum(isinstance(c, str) for c in convs) == 32  # half prompts, half agent replies


def test_mix_file(tmp_path, capsys):
    """The mix takes the lines `moderate --jsonl` takes (object with messages or text, message list, prompt string);
    a line that is not a conversation stops it with its line number, on the command line as a clean error."""
    p = tmp_path / "mix.jsonl"
    p.write_text("\n".join([json.dumps({"messages": [{"role": "user", "content": "hi"}]}), "", json.dumps({"text": "yo"}),
                            json.dumps([{"role": "user", "content": "a"}]), json.dumps("b")]) + "\n")
    assert BT.read_mix(p) == [[{"role": "user", "content": "hi"}], "yo", [{"role": "user", "content": "a"}], "b"]
    for bad in (json.dumps({"label": "safe"}), "not json", json.dumps([{"role": "wizard", "content": "x"}])):
        p.write_text(json.dumps("ok") + "\n" + bad + "\n")
        with pytest.raises(ValueError, match=":2: not a conversation"):
            BT.read_mix(p)
    from pocketguard.cli import main

    assert main(["bench", "--throughput", "--shape", "lg3-1b-int4", "--mix", str(p)]) == 2  # before the model is built
    assert ":2: not a conversation" in capsys.readouterr().err
    for flag in ("--n", "--batch-size", "--runs"):
        assert main(["bench", "--throughput", "--shape", "lg3-1b-int4", flag, "0"]) == 2
        assert f"{flag} 0: must be at least 1" in capsys.readouterr().err


def test_measure_reports_rates_roofline_and_identity(tiny_tok):
    g = Guard(T.tiny_model(T.tiny_args(vocab_size=tiny_tok.vocab_size), seed=3, std=0.1), tiny_tok, max_context=700)
    convs = BT.bundled_mix(tiny_tok, n=6, seed=1, mean_tokens=40, max_tokens=400)
    res = BT.measure(g, convs, repeats=2, batch_size=4, log=lambda m: None)
    assert res["identical_verdicts"] and res["errors"] == 0 and res["windowed"] >= 1
    assert len(res["speedups"]) == 2 and res["speedup"] > 0
    lin = sum(m.in_features * m.out_features for m in BT._linears(g.model))
    assert res["macs_per_token"] == lin and res["kernel_gmac_s"] > 0
    assert res["roofline"]["prompts_s"] == pytest.approx(res["kernel_gmac_s"] * 1e9 / (lin * res["run_tokens"] / 6))
    table = BT.render(res, "t", markdown=True)
    assert "| batched (`moderate_batch`) |" in table and "of the roofline" in table and "identical" in table
    bound = res["roofline"]["prompts_s"] / res["one_by_one"]["prompts_s"]  # the most batching could gain
    assert f"batched at 100 % of it would be {bound:.2f}x one by one" in table


def test_random_guard_of_a_shape():
    shape = dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, ffn_dims=96, max_seq_len=2048)
    g = BT.random_guard(shape, "cpu", "float32")
    assert g.model.args.dim == 64 and g.model.output_token_ids is not None
    assert g.moderate("hello").status in ("safe", "unsafe")


def test_cli_flag_reaches_the_throughput_bench():
    import argparse

    p = argparse.ArgumentParser()
    bench.add_arguments(p)
    a = p.parse_args(["--throughput", "--n", "8", "--device", "cuda", "--shape", "lg3-1b-int4"])
    assert a.throughput and a.n == 8 and a.device == "cuda" and a.runs is None


def test_llamacpp_peer_packs_like_pocketguard():
    from pocketguard.prompt import PromptTokens

    user, agent = [1, 2, 3], [1, 2, 4, 5]
    prompts = [PromptTokens(user if i % 2 == 0 else agent, [[7] * n], [9]) for i, n in enumerate([5, 50, 5, 5, 30, 5, 5])]
    passes = BT.llamacpp_passes(prompts, batch_size=2, batch_tokens=40)
    assert sorted(i for p in passes for i in p["idx"]) == list(range(7))  # every prompt once
    for p in passes:
        assert len({tuple(prompts[i].prefix) for i in p["idx"]}) == 1  # one policy prefix per pass
        assert p["prefix"] == len(prompts[p["idx"][0]].prefix) and len(p["idx"]) <= 2
        assert len(p["idx"]) == 1 or sum(len(prompts[i]) - p["prefix"] for i in p["idx"]) <= 40
    assert [p["idx"] for p in passes] == [[0, 2], [4, 6], [1], [3, 5]]  # the 51-token prompt alone: over the budget


def test_llamacpp_peer_row_says_why_it_is_missing(tiny_tok):
    import argparse
    import importlib.util

    a = argparse.Namespace(shape="lg3-1b-int4", model=None)
    note = BT.llamacpp_batched(a, None, [], {}, 1, lambda m: None)
    if importlib.util.find_spec("llama_cpp") is None:
        assert note.startswith("llama.cpp batched: not installed")
    else:
        assert "needs --model" in note


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed")
def test_llamacpp_batched_peer_answers_as_one_at_a_time_and_as_pocketguard(tiny_tok, tmp_path):
    from pocketguard.bench_workers import _run_worker, grammar_spec
    from pocketguard.compress.prune import guard_output_token_ids
    from pocketguard.conversation import as_conversation
    from pocketguard.export.gguf import export_gguf
    from pocketguard.policy import Policy
    from pocketguard.prompt import encode_prompt

    keep = sorted(set(guard_output_token_ids(tiny_tok, Policy.default())) | set(range(12, 60)))
    model = T.tiny_model(T.tiny_args(vocab_size=tiny_tok.vocab_size, output_token_ids=keep), seed=3, std=0.1).eval()
    g = Guard(model, tiny_tok)
    convs = BT.bundled_mix(tiny_tok, n=6, seed=1, mean_tokens=40, max_tokens=200)
    prompts = [encode_prompt(tiny_tok, g.policy, as_conversation(c)) for c in convs]
    base = {"gguf": str(export_gguf(model, tiny_tok, tmp_path / "f32.gguf", "f32")), "threads": 1, "runs": 1,
            "prompts": [p.ids for p in prompts], "grammar": grammar_spec(g._grammar(g.policy)), "n_ctx": 4096}
    together = _run_worker("llamacpp_batched", {**base, "passes": BT.llamacpp_passes(prompts, 4, 4096)}, tmp_path)
    alone = _run_worker("llamacpp_batched", {**base, "passes": BT.llamacpp_passes(prompts, 1, 4096)}, tmp_path)
    assert "error" not in together and together["answers"] == alone["answers"]
    assert together["answers"] == [v.answer for v in g.moderate_batch(convs)]
