"""`pocketguard calibrate`: the operating-point rule on known scores, and the command end to end on a tiny checkpoint
(the sweep from a live run equals the one from saved predictions; --write sets guard.json, which Guard.load obeys)."""

import json
import shutil

import pytest

from pocketguard import testing as T
from pocketguard.answer import Verdict
from pocketguard.cli import main
from pocketguard.evaluate.calibrate import THRESHOLDS, sweep, write_threshold
from pocketguard.evaluate.data import read_examples
from pocketguard.guard import Guard
from pocketguard.loaded import CheckpointError

pytestmark = pytest.mark.usefixtures("one_thread")


def _data(tmp_path, rows):
    path = tmp_path / "dev.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path, read_examples(path)[0]


def test_the_lowest_threshold_that_keeps_the_rate_is_chosen(tmp_path):
    """Four harmful (p 0.9, 0.8, 0.7, 0.52), four benign of which two are look-alikes (p 0.72, 0.56) and two plain
    (0.62, 0.1): all-safe FPR ≤ 0.25 first holds at 0.65 (one of four flagged), look-alike FPR ≤ 0 at 0.75."""
    scored = [("unsafe", False, 0.9), ("unsafe", False, 0.8), ("unsafe", False, 0.7), ("unsafe", False, 0.52),
              ("safe", True, 0.72), ("safe", True, 0.56), ("safe", False, 0.62), ("safe", False, 0.1)]
    _, examples = _data(tmp_path, [{"text": f"t{i}", "label": lab, "lookalike": look, **({"categories": ["S1"]} if lab == "unsafe" else {})}
                                   for i, (lab, look, _) in enumerate(scored)])
    greedy = [Verdict("unsafe" if p > 0.5 else "safe", "user", ["S1"] if p > 0.5 else [], p_unsafe=p) for *_, p in scored]
    chosen, rows = sweep(examples, greedy, 0.25)
    assert chosen == 0.65 and [r["threshold"] for r in rows] == list(THRESHOLDS)
    at = {r["threshold"]: r for r in rows}
    assert at[0.6]["fpr"] == 0.5 and at[0.65]["fpr"] == 0.25 and at[0.65]["recall"] == 0.75
    assert at[0.5]["recall"] == 1.0 and at[0.55]["recall"] == 0.75  # 0.52 passes from 0.55 on
    assert sweep(examples, greedy, 0.0, lookalikes=True)[0] == 0.75
    assert at[0.7]["lookalike_fpr"] == 0.5 and at[0.75]["lookalike_fpr"] == 0.0
    assert sweep(examples, [Verdict("unsafe", "user", ["S1"], p_unsafe=0.99)] * 8, 0.1)[0] is None  # never met


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    T.build_tiny_checkpoint(root / "ckpt", seed=0, std=0.2)  # wide enough weights that p_unsafe spreads around 0.5 (0.44-0.59)
    rows = [{"text": t, "label": lab, "lookalike": lab == "safe" and i % 2 == 0, **({"categories": ["S2"]} if lab == "unsafe" else {})}
            for i, (t, lab) in enumerate([("steal a password", "unsafe"), ("bread recipe", "safe"), ("make a bomb", "unsafe"),
                                          ("write a poem", "safe"), ("kill the process", "safe"), ("rob the bank", "unsafe"),
                                          ("vote tomorrow", "safe"), ("hurt someone", "unsafe")])]
    (root / "dev.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return root


def test_command_writes_the_choice_that_saved_predictions_give_too(setup, tmp_path, capsys):
    model, data = tmp_path / "ckpt", setup / "dev.jsonl"
    shutil.copytree(setup / "ckpt", model)
    assert main(["eval", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "ev"), "--bootstrap", "0"]) == 0
    preds = tmp_path / "ev" / "predictions" / "00-ckpt.jsonl"
    capsys.readouterr()
    live = main(["calibrate", "--model", str(model), "--data", str(data), "--max-fpr", "1", "--json"])
    a = json.loads(capsys.readouterr().out)
    saved = main(["calibrate", "--model", str(model), "--data", str(data), "--max-fpr", "1", "--json", "--predictions", str(preds)])
    b = json.loads(capsys.readouterr().out)
    assert live == saved == 0 and a["sweep"] == b["sweep"] and a["threshold"] == b["threshold"] == 0.5  # FPR ≤ 1 always holds
    assert a["written"] is None and not (model / "guard.json").exists()  # no --write: only a report
    # the strictest rate the sweep reaches above 0.5 while still flagging something (the random model's p_unsafe
    # spread around 0.5): the lowest threshold reaching it is the choice, and --write keeps it
    greedy_fpr = next(r["fpr"] for r in a["sweep"] if r["threshold"] == 0.5)
    best = min(r["fpr"] for r in a["sweep"] if r["threshold"] > 0.5 and r["fpr"] < greedy_fpr and (r["recall"] or r["fpr"]))
    want = next(r["threshold"] for r in a["sweep"] if r["fpr"] <= best)
    assert main(["calibrate", "--model", str(model), "--data", str(data), "--max-fpr", str(best), "--write", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["threshold"] == want and out["written"]["threshold"] == want
    g = Guard.load(model)
    assert g.threshold == want
    examples = read_examples(data)[0]
    verdicts = g.moderate_batch([e.messages for e in examples])
    assert [v.status for v in verdicts] == ["unsafe" if v.p_unsafe >= want else "safe" for v in verdicts]
    greedy = [v["verdict"]["status"] for v in map(json.loads, preds.read_text().splitlines())]
    assert want > 0.5 and [v.status for v in verdicts] != greedy and "unsafe" in [v.status for v in verdicts]


def test_unmet_targets_and_bad_inputs_write_nothing(setup, tmp_path, capsys):
    model, data = tmp_path / "ckpt", setup / "dev.jsonl"
    shutil.copytree(setup / "ckpt", model)
    (model / "guard.json").write_text(json.dumps({"max_context": 512}))
    before = (model / "guard.json").read_text()
    always = tmp_path / "always.jsonl"  # a guard that flags everything at p 0.99: no threshold in the grid helps
    examples = read_examples(data)[0]
    always.write_text("".join(json.dumps({"line": e.line, "label": e.label, "categories": [], "verdict":
                                          {"status": "unsafe", "role": "user", "categories": ["S2"], "p_unsafe": 0.99}}) + "\n"
                              for e in examples))
    assert main(["calibrate", "--model", str(model), "--data", str(data), "--predictions", str(always), "--max-fpr", "0.1",
                 "--write"]) == 1
    assert "nothing written" in capsys.readouterr().out and (model / "guard.json").read_text() == before
    plain = tmp_path / "plain.jsonl"
    plain.write_text("".join(json.dumps({k: v for k, v in json.loads(line).items() if k != "lookalike"}) + "\n"
                             for line in data.read_text().splitlines()))
    assert main(["calibrate", "--model", str(model), "--data", str(plain), "--lookalikes"]) == 2
    assert "marks no look-alike rows" in capsys.readouterr().err
    only_safe = tmp_path / "safe.jsonl"
    only_safe.write_text(json.dumps({"text": "hello", "label": "safe"}) + "\n")
    assert main(["calibrate", "--model", str(model), "--data", str(only_safe)]) == 2
    assert "needs safe and unsafe examples" in capsys.readouterr().err
    errors = tmp_path / "errors.jsonl"  # verdicts it could not make: no sweep over them (fail closed)
    errors.write_text(always.read_text().replace('"status": "unsafe"', '"status": "error"', 1))
    assert main(["calibrate", "--model", str(model), "--data", str(data), "--predictions", str(errors)]) == 2
    assert "could not be judged" in capsys.readouterr().err
    assert main(["calibrate", "--model", str(tmp_path / "missing"), "--data", str(data)]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    # without --model the guard is the installed package's own: --write must not edit it by surprise
    from pocketguard.guard import DEFAULT_MODEL_DIR

    shipped = {f.name: f.read_bytes() for f in DEFAULT_MODEL_DIR.iterdir() if f.suffix in (".json", ".toml")}
    assert main(["calibrate", "--data", str(data), "--predictions", str(always), "--max-fpr", "1", "--write"]) == 2
    assert "--write changes the guard's files: name them with --model" in capsys.readouterr().err
    assert {f.name: f.read_bytes() for f in DEFAULT_MODEL_DIR.iterdir() if f.suffix in (".json", ".toml")} == shipped
    assert (model / "guard.json").read_text() == before
    # a threshold written into a folder keeps its other settings; a single file cannot hold one
    assert write_threshold(model, 0.7) == {"max_context": 512, "threshold": 0.7}
    assert Guard.load(model).threshold == 0.7 and Guard.load(model).max_context == 512
    gguf = tmp_path / "guard.gguf"
    gguf.write_bytes(b"GGUF")
    with pytest.raises(CheckpointError, match="single file"):
        write_threshold(gguf, 0.7)


def test_a_custom_policy_reads_data_with_its_codes(setup, tmp_path, capsys):
    """Data labelled with a custom policy's own code is refused without --policy and calibrated with it."""
    rows = [json.loads(line) for line in (setup / "dev.jsonl").read_text().splitlines()]
    for r in rows:
        if r["label"] == "unsafe":
            r["categories"] = ["X1"]
    data = tmp_path / "dev.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    policy = tmp_path / "policy.toml"
    policy.write_text('base = "default"\n[[category]]\ncode = "X1"\nname = "Medical misinformation"\n'
                      'description = "False claims about treatments presented as fact."\n')
    assert main(["calibrate", "--model", str(setup / "ckpt"), "--data", str(data)]) == 2
    assert "unknown categories ['X1']" in capsys.readouterr().err
    assert main(["calibrate", "--model", str(setup / "ckpt"), "--data", str(data), "--policy", str(policy), "--max-fpr", "1",
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["threshold"] == 0.5


def test_predictions_without_a_usable_p_unsafe_are_refused(setup, tmp_path, capsys):
    """Saved answers without p_unsafe crashed the sweep (TypeError); a NaN p_unsafe was swept as a safe verdict."""
    model, data = tmp_path / "ckpt", setup / "dev.jsonl"
    shutil.copytree(setup / "ckpt", model)
    examples = read_examples(data)[0]

    def saved(name, p):
        path = tmp_path / f"{name}.jsonl"
        path.write_text("".join(json.dumps({"line": e.line, "label": e.label, "categories": [], "verdict": {
            "status": "unsafe", "role": "user", "categories": ["S2"], "p_unsafe": p if i == 2 else 0.9}}) + "\n"
            for i, e in enumerate(examples)))
        return path

    assert main(["calibrate", "--model", str(model), "--data", str(data), "--predictions", str(saved("none", None)),
                 "--max-fpr", "1", "--write"]) == 2
    assert "none.jsonl: prediction 3 (unsafe) has no p_unsafe" in capsys.readouterr().err
    assert main(["calibrate", "--model", str(model), "--data", str(data), "--predictions", str(saved("nan", float("nan"))),
                 "--max-fpr", "1", "--write"]) == 2
    assert "1 examples could not be judged" in capsys.readouterr().err
    assert not (model / "guard.json").exists()


def test_write_from_saved_predictions_needs_them_to_come_from_the_models_weights(setup, tmp_path, capsys):
    """A threshold chosen on another guard's scores is that guard's: `--write` with `--predictions` checks the weights
    that made them (their .run.json), not the settings — so a second calibration after a first --write still works."""
    model, other, data = tmp_path / "ckpt", tmp_path / "other", setup / "dev.jsonl"
    shutil.copytree(setup / "ckpt", model)
    T.build_tiny_checkpoint(other, seed=1, std=0.2)
    assert main(["eval", "--model", str(model), "--data", str(data), "--out", str(tmp_path / "ev"), "--bootstrap", "0"]) == 0
    preds = tmp_path / "ev" / "predictions" / "00-ckpt.jsonl"
    write = ["calibrate", "--data", str(data), "--max-fpr", "1", "--write", "--predictions", str(preds), "--model"]
    capsys.readouterr()
    assert main(write + [str(other)]) == 2
    assert f"were made by {model.resolve()}, not by the weights in {other}" in capsys.readouterr().err
    assert not (other / "guard.json").exists()
    assert main(write + [str(model)]) == 0 and Guard.load(model).threshold == 0.5
    assert main(write + [str(model)]) == 0  # guard.json changed, the weights did not
    no_key = tmp_path / "no-key.jsonl"  # the same predictions without the file that names their model
    shutil.copyfile(preds, no_key)
    capsys.readouterr()
    assert main(["calibrate", "--data", str(data), "--max-fpr", "1", "--write", "--predictions", str(no_key),
                 "--model", str(model)]) == 2
    assert "no readable no-key.run.json" in capsys.readouterr().err
