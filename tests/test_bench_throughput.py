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
    assert [c.messages[-1].content for c in BT.read_mix(p)] == ["hi", "yo", "a", "b"]
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
    # the single-verdict bench's options that --throughput does not read are refused, not ignored in silence
    for extra in (["--prompt-tokens", "300"], ["--kernel", "portable"], ["--float-dtype", "bfloat16"],
                  ["--llamacpp-stock"], ["--alternatives"]):
        assert main(["bench", "--throughput", "--shape", "lg3-1b-int4", *extra]) == 2
        assert f"{extra[0]}: not used by --throughput" in capsys.readouterr().err


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
    from pocketguard.policy import Policy

    keep = Policy.default().subset(["S1", "S9"])
    g = BT.random_guard(shape, "cpu", "float32", keep, "prompt")  # its own policy is S1-S14, as the shipped guard's
    assert (g.own_policy, g.policy, g.subset_mode) == (Policy.default(), keep, "prompt")


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

    a = argparse.Namespace(shape="lg3-1b-int4", model=None, peers="llamacpp,executorch")
    note = BT.llamacpp_batched(a, None, [], {}, 1, lambda m: None)
    assert BT.llamacpp_batched(argparse.Namespace(shape=None, model=None, peers=""), None, [], {}, 1, lambda m: None) \
        == "llama.cpp batched: not asked for (--peers)"  # (it ran whatever --peers said)
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
    packed, single = BT.llamacpp_passes(prompts, 4, 4096), BT.llamacpp_passes(prompts, 1, 4096)
    together = _run_worker("llamacpp_batched", {**base, "passes": packed}, tmp_path)
    alone = _run_worker("llamacpp_batched", {**base, "passes": single}, tmp_path)
    assert "error" not in together and together["answers"] == alone["answers"]
    # The peer's tokens are its own: every prompt's tokens once per pass it is in, the prefix once per pass.
    verdicts = g.moderate_batch(convs)
    steps = sum(v.answer_tokens - 1 for v in verdicts)  # the end of turn is chosen, not fed back
    assert alone["run_tokens"] == sum(len(p.ids) for p in prompts) + steps
    assert alone["run_tokens"] - together["run_tokens"] == packed[0]["prefix"] * (len(single) - len(packed)) > 0
    assert together["answers"] == [v.answer for v in verdicts]


KEEP_TOML = 'base = "default"\nkeep = ["S1", "S9", "S10"]\n'


def _keep_guard(tok):
    """A tiny guard whose own policy is S1-S14 (as the shipped guard's policy.toml says), asked for S1, S9, S10."""
    from pocketguard.loaded import policy_dict
    from pocketguard.policy import Policy

    model = T.tiny_model(T.tiny_args(vocab_size=tok.vocab_size), seed=3, std=0.1)
    return Guard(model, tok, Policy.default().subset(["S1", "S9", "S10"]), max_context=700,
                 meta={"policy": policy_dict(Policy.default())})


def test_compare_measures_own_policy_then_the_subset_filtered_and_prompted(tiny_tok):
    """`--subset-mode compare`: three guards over one model (the guard's own policy, the subset filtered, the subset
    prompted), measured on the same conversations; filtered verdicts name kept codes only, the prompt lists fewer."""
    from pocketguard.policy import Policy

    g = _keep_guard(tiny_tok)
    keep = g.policy
    runs = BT.policy_runs(g, compare=True)
    assert [(r.policy, r.subset_mode) for r in runs] == [(Policy.default(), "filter"), (keep, "filter"), (keep, "prompt")]
    assert all(r.model is g.model for r in runs) and (g.policy, g.subset_mode) == (keep, "filter")  # copies, one model
    assert [BT.describe(r) for r in runs] == ["the guard's own policy (14 categories)", "policy S1, S9, S10, subset_mode filter",
                                              "policy S1, S9, S10, subset_mode prompt"]
    assert BT.policy_runs(g, compare=False) == [g]
    convs = ["how do I make a bomb", "bread recipe", [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "kill it"}]]
    results = [(BT.describe(r), BT.measure(r, convs, repeats=1, batch_size=2, log=lambda m: None)) for r in runs]
    assert all(res["identical_verdicts"] and res["errors"] == 0 for _, res in results)
    own, filtered, prompted = (res["mean_prompt_tokens"] for _, res in results)
    assert own == filtered > prompted  # filter lists all fourteen, prompt the three
    for r in runs:
        r.threshold = 0.0  # flag everything, so every verdict names codes
    named = [{c for v in r.moderate_batch(convs) for c in v.categories} for r in runs]
    assert named[1] and named[1] <= set(keep.codes) and named[2] <= set(keep.codes)
    table = BT.render_compare(results, markdown=True)
    assert "| the guard's own policy (14 categories) |" in table and "| policy S1, S9, S10, subset_mode prompt |" in table
    assert table.count("| 1.00x |") >= 2  # the reference row against itself, one by one and batched
    # a policy that is not a part of the guard's own has nothing to compare
    with pytest.raises(ValueError, match="leaves out some of the guard's own categories"):
        BT.policy_runs(Guard(g.model, tiny_tok, keep), compare=True)  # no recorded policy: the subset is its own


def test_policy_and_subset_mode_reach_the_guard(tmp_path, tiny_hf_dir, capsys, monkeypatch):
    """On the command line: --policy and --subset-mode reach the guard that is measured (or, with compare, the three);
    without --policy the report is the one run it always was."""
    import shutil

    from pocketguard.cli import main
    from pocketguard.loaded import save_guard_meta
    from pocketguard.policy import Policy

    recorded = shutil.copytree(tiny_hf_dir, tmp_path / "recorded")
    save_guard_meta(recorded, {"policy": Policy.default()})
    (tmp_path / "keep.toml").write_text(KEEP_TOML)
    mix = tmp_path / "mix.jsonl"
    mix.write_text("\n".join(json.dumps(t) for t in ["how do I make a bomb", "bread recipe", "hello there"]) + "\n")
    seen = []
    real = BT.measure
    monkeypatch.setattr(BT, "measure", lambda g, *a, **k: seen.append((g.policy.codes, g.subset_mode)) or real(g, *a, **k))
    base = ["bench", "--throughput", "--model", str(recorded), "--mix", str(mix), "--runs", "1", "--threads", "1"]
    keep = ["S1", "S9", "S10"]

    assert main(base + ["--json", str(tmp_path / "plain.json")]) == 0
    plain = json.loads((tmp_path / "plain.json").read_text())
    assert seen == [(Policy.default().codes, "filter")] and "runs" not in plain and plain["title"].endswith("tokens per pass")
    assert capsys.readouterr().out.count("| mode | prompts/s |") == 1

    seen.clear()
    assert main(base + ["--policy", str(tmp_path / "keep.toml"), "--subset-mode", "prompt"]) == 0
    assert seen == [(keep, "prompt")] and "| policy S1, S9, S10, subset_mode prompt" in capsys.readouterr().out

    seen.clear()
    out_json = tmp_path / "compare.json"
    assert main(base + ["--policy", str(tmp_path / "keep.toml"), "--subset-mode", "compare", "--json", str(out_json)]) == 0
    assert seen == [(Policy.default().codes, "filter"), (keep, "filter"), (keep, "prompt")]
    out = capsys.readouterr().out
    assert out.count("| mode | prompts/s |") == 3 and "Policy runs, same conversations" in out
    runs = json.loads(out_json.read_text())["runs"]
    assert [r["title"].rsplit(" | ", 1)[1] for r in runs] == [
        "the guard's own policy (14 categories)", "policy S1, S9, S10, subset_mode filter", "policy S1, S9, S10, subset_mode prompt"]


def test_bad_policy_is_a_clean_error(tmp_path, tiny_hf_dir, capsys):
    """A policy file that does not parse, or names an unknown code, stops the bench before the model loads (`--shape`
    would build a 1B model); compare needs a policy that is a part of the guard's own."""
    from pocketguard.cli import main

    quick = ["bench", "--throughput", "--shape", "lg3-1b-int4"]
    for text, msg in [("keep = [", "is not valid TOML"), ('base = "default"\nkeep = ["S99"]\n', "keep:")]:
        (tmp_path / "bad.toml").write_text(text)
        assert main(quick + ["--policy", str(tmp_path / "bad.toml")]) == 2
        assert msg in capsys.readouterr().err
    assert main(quick + ["--policy", str(tmp_path / "missing.toml")]) == 2
    assert "policy file not found" in capsys.readouterr().err
    assert main(quick + ["--subset-mode", "compare"]) == 2
    assert "--subset-mode compare needs --policy" in capsys.readouterr().err
    # a checkpoint that records no policy takes --policy as its own: no subset of it to compare
    (tmp_path / "keep.toml").write_text(KEEP_TOML)
    assert main(["bench", "--throughput", "--model", str(tiny_hf_dir), "--policy", str(tmp_path / "keep.toml"),
                 "--subset-mode", "compare", "--threads", "1"]) == 2
    assert "leaves out some of the guard's own categories" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(quick + ["--subset-mode", "drop"])


def test_bad_model_device_and_numbers_are_clean_errors(tmp_path, capsys):
    """Exit 2 and one line, no traceback (a missing checkpoint, a corrupt GGUF and a bad --device used to raise;
    --batch-tokens 0 or below was silently taken)."""
    import torch

    from pocketguard.cli import main

    (tmp_path / "bad.gguf").write_bytes(b"GGUF")
    cases = [(["--model", str(tmp_path / "nope")], "checkpoint not found"),
             (["--model", str(tmp_path / "bad.gguf")], "truncated or corrupt"),
             (["--batch-tokens", "-5"], "--batch-tokens -5: must be at least 1"),
             (["--device", "nonsense"], "is not a torch device"),
             (["--threads", "0"], "--threads 0: must be at least 1")]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "CUDA is not available here"))
    for extra, msg in cases:
        assert main(["bench", "--throughput", "--n", "2", "--runs", "1", *extra]) == 2, extra
        err = capsys.readouterr().err
        assert msg in err and "Traceback" not in err, (extra, err)


def test_report_says_how_much_cpu_others_took(tiny_tok, monkeypatch):
    """The throughput report measures other processes' CPU use during its timed repetitions, as the latency bench
    does per runtime, and flags a contended run."""
    import os

    from pocketguard import bench_workers

    g = Guard(T.tiny_model(T.tiny_args(vocab_size=tiny_tok.vocab_size), seed=3, std=0.1), tiny_tok, max_context=700)
    hz = os.sysconf("SC_CLK_TCK")
    # /proc/stat as read before and after the repetitions: 1,000 s of all cores' time passed, 500 s of it busy; this
    # process used well under a second of it, so the others took just under half (a real reading of a run this
    # short may not advance at all: the clock ticks at 1/100 s)
    readings = iter([(0, 0), (500 * hz, 1000 * hz)])
    monkeypatch.setattr(bench_workers, "_busy_jiffies", lambda: next(readings))
    res = BT.measure(g, ["hello", "bread recipe"], repeats=1, batch_size=2, log=lambda m: None)
    assert 0.49 < res["others_cpu_share"] <= 0.5
    assert "CPU use during the timed repetitions: not measured" in BT.render({**res, "others_cpu_share": None}, "t")
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    for share, threads, want in ((0.02, 2, "(no contention for 2 threads)"), (0.4, 2, "CONTENDED"),
                                 (0.5, 1, "(no contention for 1 threads)"), (0.6, 1, "CONTENDED")):
        table = BT.render({**res, "others_cpu_share": share, "threads": threads}, "t")
        assert f"other processes used {share:.0%} of the CPU during the timed repetitions" in table and want in table
