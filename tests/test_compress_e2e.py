"""Toy end-to-end compression on CPU: a tiny teacher trained on synthetic guard data → pruned blocks → pruned
MLP → pruned head → distilled → int4 QAT student whose verdicts agree with the teacher's far above chance;
then the same as a recipe through `pocketguard compress`, resumable step by step."""

import argparse
import json
import time
import warnings

import pytest
import torch

from pocketguard import checkpoint
from pocketguard.compress.distill import distill
from pocketguard.compress.prune import prune_blocks, prune_mlp, prune_output
from pocketguard.guard import Guard
from pocketguard.model import ModelArgs, Transformer
from pocketguard.policy import Policy
from pocketguard.examples import calibration_batches
from pocketguard.toy import toy_examples, toy_tokenizer
from pocketguard.train import TrainConfig, train

POLICY = Policy.default().subset(["S1", "S9", "S10"])

try:  # the quantization engineer's module; the QAT part of the e2e waits for it
    from pocketguard.compress import quantize as Q
except ImportError:  # pragma: no cover
    Q = None
needs_quantize = pytest.mark.skipif(Q is None, reason="pocketguard.compress.quantize is not available yet")


pytestmark = pytest.mark.usefixtures("one_thread")


def verdicts(model, tok, dev):
    vs = Guard(model, tok, POLICY).moderate_batch([e["messages"] for e in dev], roles=[e["role"] for e in dev],
                                                  batch_size=32)
    return [(v.status, tuple(v.categories)) for v in vs]


def agreement(a, b, categories=False):
    return sum((x if categories else x[0]) == (y if categories else y[0]) for x, y in zip(a, b)) / len(a)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """Tokenizer, data and a 4-block teacher trained to ≥95% on its toy task (~5 s)."""
    tok = toy_tokenizer(tmp_path_factory.mktemp("tok"), POLICY)
    train_ex, dev = toy_examples(600, seed=0), toy_examples(60, seed=1)
    args = ModelArgs(dim=64, n_layers=4, n_heads=4, n_kv_heads=2, vocab_size=tok.vocab_size, ffn_dims=128, max_seq_len=256)
    teacher = Transformer(args).init_weights(std=0.1, seed=3)
    train(teacher, train_ex, tok, POLICY, TrainConfig(lr=5e-3, steps=300, batch_size=16, warmup=10, progress=False, device="cpu"))
    teacher.eval()
    t_verdicts = verdicts(teacher, tok, dev)
    labels = [(e["label"], tuple(e["categories"])) for e in dev]
    assert agreement(t_verdicts, labels, categories=True) >= 0.95, "the toy teacher did not learn its task"
    return tok, train_ex, dev, teacher, t_verdicts


def test_python_api_prune_distill_qat_agrees_with_teacher(toy):
    t_start = time.perf_counter()
    tok, train_ex, dev, teacher, t_verdicts = toy
    calib = calibration_batches(train_ex, tok, POLICY, n=64)
    student, rep = prune_blocks(teacher, 3, calib, method="cosine")
    student, _ = prune_mlp(student, 96, calib)
    student = prune_output(student, tok, POLICY)
    assert student.args.n_layers == 3 and student.args.ffn_dims == [96] * 3
    assert student.output.weight.shape[0] < 20 and student.num_params() < 0.75 * teacher.num_params()

    distill(student, teacher, train_ex, tok, POLICY,
            TrainConfig(lr=2e-3, steps=100, batch_size=16, warmup=5, kl_weight=1.0, ce_weight=1.0, progress=False, device="cpu"))
    s_verdicts = verdicts(student, tok, dev)
    assert agreement(s_verdicts, t_verdicts) >= 0.9

    if Q is None:
        pytest.skip("distillation checked; int4 QAT waits for pocketguard.compress.quantize")
    Q.prepare_qat(student, Q.QuantConfig(weight_bits=4, group_size=32, act_bits=8))
    train(student, train_ex, tok, POLICY,
          TrainConfig(lr=5e-4, steps=40, batch_size=16, warmup=4, kl_weight=1.0, ce_weight=1.0, progress=False, device="cpu"),
          teacher=teacher)
    Q.convert(student)
    from pocketguard import kernels as K

    assert K.is_quantized(student.layers[0].attention.wq) and K.is_quantized(student.layers[0].feed_forward.w2)
    q_verdicts = verdicts(student, tok, dev)
    # chance is ~50% (half the toy data is unsafe); the int4 student should match the teacher almost always
    assert agreement(q_verdicts, t_verdicts) >= 0.9
    assert agreement(q_verdicts, t_verdicts, categories=True) >= 0.85
    assert time.perf_counter() - t_start < 60


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_recipe_reports_a_cuda_peak_per_step(toy, tmp_path, capsys):
    """A GPU step's line carries the most memory the process held reserved during the step (the peak is reset
    per step), so a plan can read whether two such jobs fit one card side by side."""
    tok, train_ex, dev, teacher, _ = toy
    checkpoint.save_hf(teacher, tok, tmp_path / "teacher", guard_meta={"policy": checkpoint.policy_dict(POLICY)})
    _write_jsonl(tmp_path / "train.jsonl", train_ex)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text('teacher = "teacher"\noutput = "out"\n[data]\ntrain = "train.jsonl"\nmax_len = 256\n'
                      '[train]\nbatch_size = 16\n[[step]]\nkind = "distill"\nsteps = 5\n'
                      '[[step]]\nkind = "prune_output"\n')
    torch.cuda.empty_cache()
    assert _compress(recipe, "--device", "cuda") == 0
    lines = [json.loads(l) for l in (tmp_path / "out" / "report.jsonl").read_text().splitlines()]
    distilled, pruned = (l["peak_cuda_mib"] for l in lines)
    assert distilled > 0 and 0 < pruned <= distilled
    assert f"{distilled:,} MiB peak" in capsys.readouterr().err


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def _compress(recipe, *flags):
    from pocketguard.compress import recipe as R

    p = argparse.ArgumentParser()
    R.add_arguments(p)
    return R.run(p.parse_args(["--recipe", str(recipe), "--no-progress", "--device", "cpu", *flags]))


@needs_quantize
def test_recipe_runs_end_to_end_and_resumes(toy, tmp_path, capsys):
    tok, train_ex, dev, teacher, t_verdicts = toy
    checkpoint.save_hf(teacher, tok, tmp_path / "teacher", guard_meta={"policy": checkpoint.policy_dict(POLICY)})
    _write_jsonl(tmp_path / "train.jsonl", train_ex)
    _write_jsonl(tmp_path / "dev.jsonl", dev)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        'teacher = "teacher"\noutput = "out"\n'
        '[data]\ntrain = "train.jsonl"\ndev = "dev.jsonl"\ncalib = 48\nmax_len = 256\n'
        '[train]\nbatch_size = 16\nwarmup = 4\n'
        '[[step]]\nkind = "prune_blocks"\nkeep = 3\n'
        '[[step]]\nkind = "prune_mlp"\nwidth = 96\n'
        '[[step]]\nkind = "prune_output"\n'
        '[[step]]\nkind = "distill"\nsteps = 80\nlr = 2e-3\n'
        '[[step]]\nkind = "qat"\nweight_bits = 4\ngroup_size = 32\nact_bits = 8\nsteps = 30\nlr = 5e-4\nkl_weight = 1.0\n'
        '[[step]]\nkind = "export_artifact"\n'
    )
    assert _compress(recipe) == 0
    out = tmp_path / "out"
    lines = [json.loads(l) for l in (out / "report.jsonl").read_text().splitlines()]
    assert [l["kind"] for l in lines] == ["prune_blocks", "prune_mlp", "prune_output", "distill", "qat", "export_artifact"]
    assert [l["format"] for l in lines] == ["hf", "hf", "hf", "hf", "artifact", "artifact"]
    assert lines[0]["n_params"] < teacher.num_params() and lines[-1]["bytes"] < lines[3]["bytes"] / 2
    assert all(l["dev"]["n"] == len(dev) and l["wall_s"] >= 0 for l in lines)
    assert not any("peak_cuda_mib" in l for l in lines)  # a GPU's peak memory only where a GPU ran the step
    assert lines[-1]["dev"]["agreement"] >= 0.9 and lines[3]["dev"]["agreement"] >= 0.9
    assert sorted(p.name for p in (out / "steps").iterdir()) == [f"{i:02d}-{l['kind']}" for i, l in enumerate(lines, 1)]
    # training steps keep their loss curve (one record per logged step) beside their checkpoint
    log = [json.loads(l) for l in (out / "steps" / "04-distill" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if "loss" in r][-1] == 80 and not (out / "steps" / "04-distill" / "train").exists()
    assert not (out / "model" / "train_log.jsonl").exists() and not (out / "steps" / "03-prune_output" / "train_log.jsonl").exists()

    guard = Guard.load(out / "model")
    assert guard.policy.codes == POLICY.codes and guard.meta.get("layout") == "pocketguard-int4"
    assert agreement(verdicts(guard.model, tok, dev), t_verdicts) >= 0.9

    # without --resume an existing run is refused; with it, completed unchanged steps are skipped
    assert _compress(recipe) == 2 and "--resume" in capsys.readouterr().err
    stamps = {p.name: (p / "step.json").stat().st_mtime_ns for p in (out / "steps").iterdir()}
    assert _compress(recipe, "--resume") == 0
    assert {p.name: (p / "step.json").stat().st_mtime_ns for p in (out / "steps").iterdir()} == stamps
    # changing a step reruns it and everything after it, nothing before
    recipe.write_text(recipe.read_text().replace("steps = 30", "steps = 20"))
    assert _compress(recipe, "--resume") == 0
    after = {p.name: (p / "step.json").stat().st_mtime_ns for p in (out / "steps").iterdir()}
    assert [n for n in sorted(after) if after[n] != stamps[n]] == ["05-qat", "06-export_artifact"]
    lines = [json.loads(l) for l in (out / "report.jsonl").read_text().splitlines()]
    assert [l["step"] for l in lines] == [1, 2, 3, 4, 5, 6] and lines[4]["params"]["steps"] == 20


def test_the_recipe_seed_decides_a_training_step(toy, tmp_path):
    """A recipe's top-level `seed` reaches its training steps (data order, augmentation): one seed twice trains the
    same weights, another seed other weights. The default guard's seed shapes (t2-s1 to t2-s3) measure training noise
    with it."""
    from safetensors.torch import load_file

    tok, train_ex, _, teacher, _ = toy
    checkpoint.save_hf(teacher, tok, tmp_path / "teacher", guard_meta={"policy": checkpoint.policy_dict(POLICY)})
    _write_jsonl(tmp_path / "train.jsonl", train_ex)
    weights = []
    for run, seed in (("a", 0), ("b", 0), ("c", 1)):
        recipe = tmp_path / f"{run}.toml"
        recipe.write_text(f'teacher = "teacher"\noutput = "{run}"\nseed = {seed}\n[data]\ntrain = "train.jsonl"\n'
                          'max_len = 256\n[train]\nbatch_size = 16\naugment = true\n'
                          '[[step]]\nkind = "distill"\nsteps = 6\nlr = 2e-3\n')
        assert _compress(recipe) == 0
        weights.append(load_file(tmp_path / run / "model" / "model.safetensors"))
    same, other = weights[1], weights[2]
    assert all(torch.equal(weights[0][k], same[k]) for k in weights[0])
    assert any(not torch.equal(weights[0][k], other[k]) for k in weights[0])


@needs_quantize
def test_before_step_hears_of_each_step_that_runs_before_it_runs(toy, tmp_path):
    """`run_recipe(before_step=…)`: training/default_guard.py waits there for its turn at QAT (QAT_LOCK). It is
    called with each step's kind before the step starts, and not for the steps a resume skips."""
    from pocketguard.compress.recipe import run_recipe

    tok, train_ex, dev, teacher, _ = toy
    checkpoint.save_hf(teacher, tok, tmp_path / "teacher", guard_meta={"policy": checkpoint.policy_dict(POLICY)})
    _write_jsonl(tmp_path / "train.jsonl", train_ex)
    _write_jsonl(tmp_path / "dev.jsonl", dev[:16])
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        'teacher = "teacher"\noutput = "out"\n'
        '[data]\ntrain = "train.jsonl"\ndev = "dev.jsonl"\ncalib = 16\nmax_len = 256\n'
        '[train]\nbatch_size = 8\nwarmup = 1\n'
        '[[step]]\nkind = "prune_blocks"\nkeep = 3\n'
        '[[step]]\nkind = "distill"\nsteps = 4\nlr = 1e-3\n'
        '[[step]]\nkind = "qat"\nweight_bits = 4\ngroup_size = 32\nact_bits = 8\nsteps = 4\nlr = 5e-4\n'
        '[[step]]\nkind = "export_artifact"\n'
    )
    out = tmp_path / "out"
    heard = []
    # each call sees the steps before it finished and its own not yet
    before = lambda kind: heard.append((kind, sorted(p.name for p in (out / "steps").iterdir() if not p.name.endswith(".partial"))))  # noqa: E731
    run_recipe(recipe, device="cpu", progress=False, before_step=before)
    assert heard == [("prune_blocks", []), ("distill", ["01-prune_blocks"]), ("qat", ["01-prune_blocks", "02-distill"]),
                     ("export_artifact", ["01-prune_blocks", "02-distill", "03-qat"])]
    (out / "steps" / "04-export_artifact").rename(out / "steps" / "gone")
    heard.clear()
    run_recipe(recipe, resume=True, device="cpu", progress=False, before_step=before)
    assert [k for k, _ in heard] == ["export_artifact"]


class _Killed(Exception):
    pass


def test_recipe_killed_mid_distillation_resumes_from_its_train_state(toy, tmp_path, monkeypatch):
    import pocketguard.train as TR

    tok, train_ex, dev, teacher, t_verdicts = toy
    checkpoint.save_hf(teacher, tok, tmp_path / "teacher")
    _write_jsonl(tmp_path / "train.jsonl", train_ex)
    recipe = tmp_path / "recipe.toml"
    recipe.write_text(
        'teacher = "teacher"\noutput = "out"\npolicy = "policy.toml"\n[data]\ntrain = "train.jsonl"\nmax_len = 256\n'
        '[[step]]\nkind = "prune_output"\n'
        '[[step]]\nkind = "distill"\nsteps = 24\nbatch_size = 8\nsave_every = 10\nlr = 1e-3\n'
    )
    (tmp_path / "policy.toml").write_text(POLICY.to_toml())
    real = TR.lr_at

    def dies_at_15(step, total, config):
        if step == 15:
            raise _Killed
        return real(step, total, config)

    monkeypatch.setattr(TR, "lr_at", dies_at_15)
    with pytest.raises(_Killed):
        _compress(recipe)
    out = tmp_path / "out"
    assert (out / "steps" / "01-prune_output" / "step.json").exists()
    assert (out / "steps" / "02-distill.partial" / "train" / "train_state.pt").exists()
    monkeypatch.setattr(TR, "lr_at", real)
    assert _compress(recipe, "--resume") == 0
    lines = [json.loads(l) for l in (out / "report.jsonl").read_text().splitlines()]
    assert [l["kind"] for l in lines] == ["prune_output", "distill"] and lines[1]["info"]["resumed_from"] == 10
    assert not (out / "steps" / "02-distill" / "train").exists()  # optimizer state dropped once done
    assert Guard.load(out / "model").policy.codes == POLICY.codes


@needs_quantize
def test_steps_after_quantized_and_lora_steps_train_the_same_fresh_or_resumed(toy, tmp_path):
    """A run resumed before the lora step or before the train step after it ends with the weights of the run
    that went through: LoRA A is drawn from (recipe seed, step index), not from the global RNG the steps before
    moved; the saved quantized model loads trainable (its float norm gains train), as the in-memory one is; and
    an unmerged lora step hands on what it saved (merged and re-quantized), in memory as on resume."""
    from safetensors.torch import load_file

    from pocketguard.compress.recipe import run_recipe

    tok, train_ex, _, teacher, _ = toy
    checkpoint.save_hf(teacher, tok, tmp_path / "teacher", guard_meta={"policy": checkpoint.policy_dict(POLICY)})
    _write_jsonl(tmp_path / "train.jsonl", train_ex[:64])
    steps = ['[[step]]\nkind = "prune_output"\n',
             '[[step]]\nkind = "qat"\nweight_bits = 4\ngroup_size = 32\nsteps = 2\nlr = 2e-3\n',
             '[[step]]\nkind = "lora"\nrank = 4\nsteps = 3\nlr = 5e-3\nmerge = false\n',
             '[[step]]\nkind = "train"\nsteps = 2\nlr = 5e-3\n']
    weights = {}
    for run, dies_before in (("straight", None), ("before_lora", "lora"), ("before_train", "train")):
        recipe = tmp_path / f"{run}.toml"
        recipe.write_text(f'teacher = "teacher"\noutput = "{run}"\n[data]\ntrain = "train.jsonl"\nmax_len = 256\n'
                          '[train]\nbatch_size = 8\nwarmup = 1\n' + "".join(steps))

        def before(kind, dies_before=dies_before):
            if kind == dies_before:
                raise _Killed

        if dies_before:
            with pytest.raises(_Killed):
                run_recipe(recipe, device="cpu", progress=False, before_step=before)
        run_recipe(recipe, resume=bool(dies_before), device="cpu", progress=False)
        weights[run] = [load_file(tmp_path / run / "steps" / d / "model.safetensors") for d in ("03-lora", "04-train")]
    straight = weights["straight"]
    gains = "layers.0.attention_norm.weight"
    assert not torch.equal(straight[0][gains], straight[1][gains])  # the train step trained the float norm gains
    for run in ("before_lora", "before_train"):
        for a, b in zip(straight, weights[run]):
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), run


def test_example_recipes_parse_and_name_known_steps():
    from pathlib import Path

    from pocketguard.compress.recipe import STEPS, TOY_RECIPE, load_recipe

    files = sorted((Path(__file__).parent.parent / "examples" / "recipes").glob("*.toml"))
    assert len(files) >= 3
    for f in files:
        r = load_recipe(f)
        assert all(s["kind"] in STEPS for s in r.steps) and r.data.get("train")
    assert "qat" in TOY_RECIPE and (Path(__file__).parent.parent / "examples/recipes/toy-cpu.toml").read_text().count("[[step]]") == TOY_RECIPE.count("[[step]]")


@pytest.mark.parametrize("step, needle", [
    ('kind = "prune_blocks"\nkep = 3', r"step 1 \(prune_blocks\): unknown options \['kep'\]; prune_blocks takes keep, method"),
    ('kind = "prune_blocks"', r"step 1 \(prune_blocks\) needs keep"),
    ('kind = "export_artifact"\nbits = 4', r"unknown options \['bits'\]; export_artifact takes none"),
    # steps that pass **params on (TrainConfig, QuantConfig): before, these failed only when the step ran, e.g. a
    # misspelt `qat` key after the whole distillation before it
    ('kind = "distill"\nstepz = 3', r"step 1 \(distill\): unknown options \['stepz'\]"),
    ('kind = "qat"\ngroup_sise = 32', r"step 1 \(qat\): unknown options \['group_sise'\]"),
    ('kind = "gptq"\nweight_bitz = 4', r"step 1 \(gptq\): unknown options \['weight_bitz'\]"),
    ('kind = "lora"\nrank = 4\nlr_ = 1e-3', r"step 1 \(lora\): unknown options \['lr_'\]"),
    # and the [train] table, which a recipe without a training step used to ignore altogether
    ('kind = "prune_output"\n[train]\nbatch_sise = 8', r"unknown \[train\] keys \['batch_sise'\]"),
])
def test_a_misspelt_or_missing_step_option_is_refused_before_anything_runs(tmp_path, step, needle):
    """Checked when the recipe is read: before, `kep = 3` ran the teacher's dev eval, made the step folder (so a
    rerun refused the output as "already holds steps") and then failed with a TypeError naming `_prune_blocks()`."""
    from pocketguard.compress.recipe import RecipeError, load_recipe

    f = tmp_path / "r.toml"
    f.write_text(f'teacher = "t"\noutput = "out"\n[data]\ntrain = "train.jsonl"\n[[step]]\n{step}\n')
    with pytest.raises(RecipeError, match=needle):
        load_recipe(f)
    assert not (tmp_path / "out").exists()


def test_known_passed_on_options_are_accepted(tmp_path):
    from pocketguard.compress import recipe as R
    from pocketguard.compress.recipe import load_recipe

    f = tmp_path / "r.toml"
    f.write_text('teacher = "t"\noutput = "out"\n[data]\ntrain = "train.jsonl"\n[train]\nbatch_size = 8\n'
                 '[[step]]\nkind = "distill"\nsteps = 3\nkl_weight = 1.0\n'
                 '[[step]]\nkind = "qat"\ngroup_size = 32\nlora_rank = 4\nlr = 1e-3\n'
                 '[[step]]\nkind = "lora"\nrank = 4\nsteps = 2\n'
                 '[[step]]\nkind = "gptq"\ncalibration_samples = 8\n[[step]]\nkind = "rotate"\nkind_ = 1\n')
    with pytest.raises(R.RecipeError, match=r"step 5 \(rotate\): unknown options \['kind_'\]"):
        load_recipe(f)
    f.write_text(f.read_text().replace("kind_ = 1\n", ""))
    assert [s["kind"] for s in load_recipe(f).steps] == ["distill", "qat", "lora", "gptq", "rotate"]


def test_a_missing_or_bad_data_file_is_reported_before_the_teacher_loads(tmp_path, monkeypatch, capsys):
    """Before, the output folder was made and the teacher loaded (minutes for an 8B guard) before the data was read."""
    from pocketguard.compress import recipe as R

    loads = []
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: loads.append(a) or (_ for _ in ()).throw(AssertionError))
    f = tmp_path / "r.toml"
    f.write_text('teacher = "t"\noutput = "out"\ndevice = "cpu"\n[data]\ntrain = "train.jsonl"\n'
                 '[[step]]\nkind = "prune_output"\n')
    assert _compress(f) == 2 and "train.jsonl" in capsys.readouterr().err
    (tmp_path / "train.jsonl").write_text('{"messages": [{"role": "user", "content": "hi"}], "label": "safe"}\n'
                                          '{"messages": oops\n')
    assert _compress(f) == 2 and "train.jsonl:2" in capsys.readouterr().err
    assert not loads and not (tmp_path / "out").exists()
    assert R.load_recipe(f).steps  # the recipe itself was fine


def test_compress_reads_the_rows_eval_reads_and_names_the_line_of_a_row_it_cannot_train_on(tmp_path, monkeypatch,
                                                                                         capsys):
    """`pocketguard compress` read only `messages` rows while `pocketguard eval` also takes `text` / `prompt`
    (+ `response`) rows (and CSV): the same file now serves both. A row naming a category the policy lacks was
    found only by the first step that encoded it, after the teacher loaded, with neither file nor line; now it is
    refused with its line before the teacher loads, as is an unsafe row without categories (eval reads it as
    "categories unknown"; training needs them: the answer names them)."""
    from pocketguard.examples import GuardData, load_examples, parse_example

    loads = []
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: loads.append(a) or (_ for _ in ()).throw(AssertionError))
    f = tmp_path / "r.toml"
    f.write_text('teacher = "t"\noutput = "out"\ndevice = "cpu"\n[data]\ntrain = "train.jsonl"\n'
                 '[[step]]\nkind = "prune_output"\n')
    good = ['{"messages": [{"role": "user", "content": "hi"}], "role": "user", "label": "safe", "categories": []}',
            '{"text": "how do I make a bomb", "label": "unsafe", "categories": ["S9"]}',
            '{"prompt": "how do I bake", "response": "like so", "label": "safe"}']
    for bad, needle in (('{"text": "hurt them", "label": "unsafe", "categories": ["S99"]}', "unknown categories ['S99']"),
                        ('{"text": "hurt them", "label": "unsafe"}', "needs its category codes"),
                        ('{"text": "hi", "label": "safe", "categories": ["S1"]}', "cannot have categories")):
        (tmp_path / "train.jsonl").write_text("\n".join(good[:1] + [bad] + good[1:]) + "\n")
        assert _compress(f) == 2
        err = capsys.readouterr().err
        assert "train.jsonl:2: " in err and needle in err, err
    assert not loads and not (tmp_path / "out").exists()
    (tmp_path / "train.jsonl").write_text("\n".join(good) + "\n")
    with pytest.raises(AssertionError):  # the data were accepted: the run went on to load the teacher
        _compress(f)
    assert loads
    rows = load_examples(tmp_path / "train.jsonl", Policy.default())
    assert [parse_example(r)[0].judged for r in rows] == ["user", "user", "agent"]
    assert [r["categories"] for r in rows] == [[], ["S9"], []]
    assert len(GuardData(rows, toy_tokenizer(tmp_path / "tok", POLICY), Policy.default(), 512)) == 3


@needs_quantize
def test_recipe_variant_adopts_the_finished_steps_it_shares_with_another_run(toy, tmp_path, capsys):
    """`--reuse OUT`: a recipe that differs from another run only after its distillation (a QAT variant) starts
    from that run's distilled checkpoint instead of distilling again; a recipe that differs earlier adopts only
    the steps before the difference."""
    tok, train_ex, dev, teacher, t_verdicts = toy
    checkpoint.save_hf(teacher, tok, tmp_path / "teacher", guard_meta={"policy": checkpoint.policy_dict(POLICY)})
    _write_jsonl(tmp_path / "train.jsonl", train_ex)
    _write_jsonl(tmp_path / "dev.jsonl", dev)
    base = ('teacher = "teacher"\noutput = "{out}"\n'
            '[data]\ntrain = "train.jsonl"\ndev = "dev.jsonl"\nmax_len = 256\n[train]\nbatch_size = 16\nwarmup = 2\n'
            '[[step]]\nkind = "prune_output"\n'
            '[[step]]\nkind = "distill"\nsteps = 30\nlr = {lr}\n'
            '[[step]]\nkind = "qat"\nweight_bits = 4\ngroup_size = 32\nact_bits = 8\nsteps = {qat}\nlr = 5e-4\n')
    for name, out, lr, qat in (("a", "out-a", "2e-3", 12), ("b", "out-b", "2e-3", 6), ("c", "out-c", "1e-3", 12)):
        (tmp_path / f"{name}.toml").write_text(base.format(out=out, lr=lr, qat=qat))
    a, b, c = (tmp_path / f"out-{n}" for n in "abc")
    assert _compress(tmp_path / "a.toml") == 0
    capsys.readouterr()
    assert _compress(tmp_path / "b.toml", "--reuse", str(a), "--reuse", str(tmp_path / "nothing-here")) == 0
    assert "adopted steps 01-prune_output … 02-distill from" in capsys.readouterr().err
    # the distilled checkpoint is a's own file (a hard link), its step record and report line a's too
    for f in ("02-distill/model.safetensors", "02-distill/step.json", "01-prune_output/step.json"):
        assert (b / "steps" / f).stat().st_ino == (a / "steps" / f).stat().st_ino
    la, lb = ([json.loads(l) for l in (d / "report.jsonl").read_text().splitlines()] for d in (a, b))
    assert lb[:2] == la[:2] and [l["step"] for l in lb] == [1, 2, 3]
    assert lb[2]["params"]["steps"] == 6 and la[2]["params"]["steps"] == 12
    assert agreement(verdicts(Guard.load(b / "model").model, tok, dev), t_verdicts) >= 0.9
    # a different distillation: only the pruning before it is adopted, the distillation runs again
    assert _compress(tmp_path / "c.toml", "--reuse", str(a)) == 0
    assert "adopted steps 01-prune_output … 01-prune_output from" in capsys.readouterr().err
    assert (c / "steps/02-distill/model.safetensors").stat().st_ino != (a / "steps/02-distill/model.safetensors").stat().st_ino
    assert json.loads((c / "report.jsonl").read_text().splitlines()[1])["params"]["lr"] == 1e-3
    # a run that already holds those steps keeps its own
    stamps = {p.name: (p / "step.json").stat().st_mtime_ns for p in (c / "steps").iterdir()}
    assert _compress(tmp_path / "c.toml", "--resume", "--reuse", str(a)) == 0
    assert "adopted" not in capsys.readouterr().err
    assert {p.name: (p / "step.json").stat().st_mtime_ns for p in (c / "steps").iterdir()} == stamps


def test_resume_and_reuse_see_an_in_place_edit_of_the_data_or_teacher_that_keeps_its_size(toy, tmp_path, capsys):
    """Inputs were known by path and size (a folder's size never changes): train.jsonl relabelled S1 → S9 in place
    resumed as if done. They are known by their contents now — here even with the old modification times put back."""
    import os
    import shutil

    tok, train_ex, _, teacher, _ = toy
    guard_meta = {"policy": checkpoint.policy_dict(POLICY)}
    checkpoint.save_hf(teacher, tok, tmp_path / "teacher", guard_meta=guard_meta)
    train = tmp_path / "train.jsonl"
    _write_jsonl(train, train_ex)
    body = '[data]\ntrain = "train.jsonl"\n[[step]]\nkind = "prune_output"\n'
    (tmp_path / "a.toml").write_text('teacher = "teacher"\noutput = "out-a"\n' + body)
    (tmp_path / "b.toml").write_text('teacher = "teacher"\noutput = "out-b"\n' + body)
    out = tmp_path / "out-a"
    step = out / "steps" / "01-prune_output" / "step.json"

    def rewrite_in_place(path, data):
        before = path.stat()
        path.write_bytes(data)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        assert path.stat().st_size == before.st_size

    assert _compress(tmp_path / "a.toml") == 0
    stamp = step.stat().st_mtime_ns
    assert _compress(tmp_path / "a.toml", "--resume") == 0  # untouched inputs: resumed, nothing runs
    assert "resuming after step 01-prune_output" in capsys.readouterr().err and step.stat().st_mtime_ns == stamp
    text = train.read_text()
    assert '["S1"]' in text
    rewrite_in_place(train, text.replace('["S1"]', '["S9"]').encode())
    assert _compress(tmp_path / "b.toml", "--reuse", str(out)) == 0  # another run adopts nothing from the old data
    assert "adopted" not in capsys.readouterr().err
    assert _compress(tmp_path / "a.toml", "--resume") == 0
    assert "resuming" not in capsys.readouterr().err and step.stat().st_mtime_ns != stamp
    # another teacher's weights in the teacher folder, byte for byte the same size
    stamp = step.stat().st_mtime_ns
    other = Transformer(teacher.args).init_weights(std=0.1, seed=4)
    checkpoint.save_hf(other, tok, tmp_path / "other", guard_meta=guard_meta)
    rewrite_in_place(tmp_path / "teacher" / "model.safetensors", (tmp_path / "other" / "model.safetensors").read_bytes())
    shutil.rmtree(tmp_path / "other")
    assert _compress(tmp_path / "a.toml", "--resume") == 0
    assert "resuming" not in capsys.readouterr().err and step.stat().st_mtime_ns != stamp


def test_a_rotate_step_can_select_a_random_rotation(toy, tmp_path):
    """The step's option was called `kind`, which the step's own `kind` key shadows: every recipe got a Hadamard
    rotation, and a misspelt option was told "rotate takes kind, seed, heads"."""
    from pocketguard.compress.recipe import RecipeError, load_recipe

    tok, _, dev, teacher, _ = toy
    checkpoint.save_hf(teacher, tok, tmp_path / "teacher", guard_meta={"policy": checkpoint.policy_dict(POLICY)})
    step = '[[step]]\nkind = "rotate"\n{}\nseed = 1\n'
    bad = tmp_path / "bad.toml"
    bad.write_text('teacher = "teacher"\noutput = "bad"\n' + step.format('rotatoin = "random"'))
    with pytest.raises(RecipeError, match=r"unknown options \['rotatoin'\]; rotate takes rotation, seed, heads"):
        load_recipe(bad)
    rotated = {}
    for rotation in ("hadamard", "random"):
        recipe = tmp_path / f"{rotation}.toml"
        recipe.write_text(f'teacher = "teacher"\noutput = "{rotation}"\n' + step.format(f'rotation = "{rotation}"'))
        assert _compress(recipe) == 0
        rotated[rotation] = checkpoint.load(tmp_path / rotation / "model").model
    h, r = rotated["hadamard"], rotated["random"]
    assert h.args.extra["rotation"] == {"kind": "hadamard", "seed": 1, "heads": True}
    assert r.args.extra["rotation"] == {"kind": "random", "seed": 1, "heads": True}
    assert not torch.allclose(h.tok_embeddings.weight, r.tok_embeddings.weight, atol=1e-3)
    # either way the same function as the teacher
    toks = torch.tensor([tok.encode(dev[0]["messages"][0]["content"])])
    with torch.no_grad():
        ref = teacher(toks)
        for m in (h, r):
            assert (m(toks) - ref).abs().max() <= 1e-4 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("device", ["bogus", "cuda:99"])
def test_a_device_this_machine_cannot_use_is_an_error_before_anything_is_written(tmp_path, monkeypatch, capsys, device):
    """Before, `--device bogus` was torch's raw RuntimeError and `--device cuda` on a CPU-only torch an AssertionError,
    both after the output folder was made (cuda:99 is out of reach with or without CUDA)."""
    loads = []
    monkeypatch.setattr(checkpoint, "load", lambda *a, **k: loads.append(a) or (_ for _ in ()).throw(AssertionError))
    f = tmp_path / "r.toml"
    f.write_text('teacher = "t"\noutput = "out"\n[[step]]\nkind = "prune_output"\n')
    assert _compress(f, "--device", device) == 2
    assert f"error: device '{device}' cannot be used here: " in capsys.readouterr().err
    assert not loads and not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind, params", [("train", {}), ("qat", {"weight_bits": 4, "group_size": 32}), ("lora", {})])
def test_training_steps_without_training_examples_say_so(toy, kind, params):
    """train, qat and lora share one training path: without the recipe's [data] train each fails with the same clear
    error before any training step runs."""
    from pocketguard.compress.steps import STEPS

    tok = toy[0]
    args = ModelArgs(dim=64, n_layers=1, n_heads=4, n_kv_heads=2, vocab_size=tok.vocab_size, ffn_dims=128, max_seq_len=64)
    model = Transformer(args).init_weights(std=0.1, seed=0)
    ctx = {"examples": [], "tokenizer": tok, "policy": POLICY, "info": {}}
    with pytest.raises(ValueError, match=r"needs training examples \(recipe \[data\] train\)"):
        STEPS[kind].fn(model, ctx, steps=1, batch_size=2, progress=False, device="cpu", **params)


@pytest.mark.parametrize("mode", ["gptq", "imatrix"])
def test_a_calibrating_quantize_step_without_training_examples_is_refused_at_load(tmp_path, mode):
    """Before, `quantize` with mode gptq / imatrix passed validation (only the kinds gptq / imatrix were checked) and
    failed at run time, after the steps before it had run."""
    from pocketguard.compress.recipe import RecipeError, load_recipe

    f = tmp_path / "r.toml"
    f.write_text(f'teacher = "t"\noutput = "out"\n[[step]]\nkind = "prune_output"\n[[step]]\nkind = "quantize"\n'
                 f'mode = "{mode}"\n')
    with pytest.raises(RecipeError, match=r"step 2 \(quantize\) needs training/calibration examples"):
        load_recipe(f)
    f.write_text(f.read_text().replace(mode, "rtn"))
    assert [s["kind"] for s in load_recipe(f).steps] == ["prune_output", "quantize"]  # rtn needs no data


@pytest.mark.parametrize("second", ['kind = "qat"\nrotation = "hadamard"', 'kind = "quantize"\nrotation = "random"',
                                    'kind = "rotate"'])
def test_a_recipe_that_rotates_twice_is_refused_at_load(tmp_path, second):
    """Before, the second rotation overwrote the first one's record: the student carried two rotations, a teacher
    turned by the record one, and hidden-state distillation compared them in different bases."""
    from pocketguard.compress.recipe import RecipeError, load_recipe

    f = tmp_path / "r.toml"
    f.write_text(f'teacher = "t"\noutput = "out"\n[data]\ntrain = "train.jsonl"\n[[step]]\nkind = "rotate"\n'
                 f'[[step]]\n{second}\n')
    with pytest.raises(RecipeError, match=r"step 2 \((qat|quantize|rotate)\) rotates the model step 1 already rotated"):
        load_recipe(f)
    f.write_text(f.read_text().replace('[[step]]\nkind = "rotate"\n', '', 1))
    assert len(load_recipe(f).steps) == 1  # rotating once is fine


def test_distill_keeps_an_explicit_zero_kl_weight_when_hidden_states_use_the_teacher(toy, monkeypatch):
    """Before, kl_weight = 0 became 1 even with hidden_weight > 0 (a hidden-states-only distillation got a KL term).
    Only a config that would not use the teacher at all gets kl_weight = 1."""
    from pocketguard.compress import distill as D

    tok, train_ex, _, teacher, _ = toy
    seen = []
    monkeypatch.setattr(D, "train", lambda model, *a, **k: seen.append(a[3]) or argparse.Namespace(model=model))
    for kl, hidden in ((0.0, 0.5), (0.0, 0.0), (0.3, 0.0)):
        distill(teacher, teacher, train_ex[:4], tok, POLICY, TrainConfig(kl_weight=kl, hidden_weight=hidden, steps=1))
    assert [(c.kl_weight, c.hidden_weight) for c in seen] == [(0.0, 0.5), (1.0, 0.0), (0.3, 0.0)]


@needs_quantize
def test_a_calibrating_step_draws_its_calibration_samples_past_the_pruning_sample(toy, tmp_path):
    """Before, gptq / imatrix drew only from the `[data] calib` sample (pruning's, 64 rows by default): a step asking
    for 24 samples of a recipe with calib = 8 calibrated on 8, without a word. Now it draws the first 24 of the same
    seeded order of the training rows; where the rows run out, it warns and the report says how many it used."""
    from pocketguard.compress.recipe import run_recipe

    tok, train_ex, _, teacher, _ = toy
    checkpoint.save_hf(teacher, tok, tmp_path / "teacher", guard_meta={"policy": checkpoint.policy_dict(POLICY)})
    _write_jsonl(tmp_path / "train.jsonl", train_ex[:40])
    infos = {}
    for asked in (24, 100):
        recipe = tmp_path / f"r{asked}.toml"
        recipe.write_text(f'teacher = "teacher"\noutput = "out{asked}"\n[data]\ntrain = "train.jsonl"\ncalib = 8\n'
                          f'max_len = 256\n[[step]]\nkind = "imatrix"\ncalibration_samples = {asked}\n')
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            run_recipe(recipe, device="cpu", progress=False)
        infos[asked] = json.loads((tmp_path / f"out{asked}" / "report.jsonl").read_text())["info"]
        short = [str(w.message) for w in caught if "calibration_samples" in str(w.message)]
        assert short == ([] if asked <= 40 else [f"imatrix: calibration_samples = {asked}, but [data] train has "
                                                 "40 rows: calibrating on 40"])
    assert infos == {24: {"calibration_samples": 24}, 100: {"calibration_samples": 40}}


@needs_quantize
def test_a_recipe_continues_qat_from_the_artifact_it_is_given_as_student(toy, tmp_path):
    """`student` = a compressed artifact and a qat step of its scheme (repairing a shipped guard on new data): the
    run trains from the artifact's own codes, so at learning rate 0 it writes them back bit for bit, and its report
    says every code and scale came back."""
    import copy

    from safetensors.torch import load_file

    from pocketguard.compress.artifact import save_artifact
    from pocketguard.compress.recipe import run_recipe

    tok, train_ex, _, teacher, _ = toy
    checkpoint.save_hf(teacher, tok, tmp_path / "teacher", guard_meta={"policy": checkpoint.policy_dict(POLICY)})
    save_artifact(Q.quantize_(copy.deepcopy(teacher), Q.QuantConfig(mode="rtn")), tok, POLICY, tmp_path / "art")
    _write_jsonl(tmp_path / "train.jsonl", train_ex[:32])
    recipe = tmp_path / "repair.toml"
    recipe.write_text('teacher = "teacher"\nstudent = "art"\noutput = "out"\n[data]\ntrain = "train.jsonl"\n'
                      'max_len = 256\n[train]\nbatch_size = 8\n[[step]]\nkind = "qat"\nsteps = 2\nlr = 0.0\nwarmup = 0\n'
                      '[[step]]\nkind = "export_artifact"\n')
    run_recipe(recipe, device="cpu", progress=False)
    want, got = load_file(tmp_path / "art" / "model.safetensors"), load_file(tmp_path / "out" / "model" / "model.safetensors")
    assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
    qat = json.loads((tmp_path / "out" / "report.jsonl").read_text().splitlines()[0])
    assert qat["kind"] == "qat" and qat["info"]["qat_start"]["codes_off"] == qat["info"]["qat_start"]["scales_off"] == 0
    assert qat["info"]["qat_start"]["codes"] > 0
