"""The compressed artifact: round trip to the same logits and verdicts, size, integrity errors."""

import json

import pytest
import torch

from pocketguard import kernels as K
from pocketguard.compress.artifact import ArtifactError, load_artifact, save_artifact, verify_artifact
from pocketguard.compress.quantize import QuantConfig, prepare_qat, quantize_
from pocketguard.guard import Guard
from pocketguard.policy import Policy
from pocketguard.testing import tiny_args, tiny_model, tiny_tiktoken_file, tiny_tokenizer

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return tiny_tokenizer(tmp_path_factory.mktemp("tok"))


def model_for(tok, seed=0, **over):
    args = tiny_args(**{**dict(vocab_size=tok.vocab_size, ffn_dims=[96, 128], max_seq_len=1024), **over})
    return tiny_model(args, seed=seed, std=0.05)


def qat_model(tok, **over):
    """A fake-quantized model after a few QAT steps (latent weights moved off their initial values)."""
    m = prepare_qat(model_for(tok, **over), QuantConfig())
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.1)
    toks = torch.randint(0, tok.vocab_size, (2, 16), generator=torch.Generator().manual_seed(1))
    m.train()
    for _ in range(2):
        opt.zero_grad()
        m(toks).square().mean().backward()
        opt.step()
    return m.eval()


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def test_round_trip_reproduces_the_fake_quant_model(tok, tmp_path):
    keep_out = sorted(set(range(0, tok.vocab_size, 3)) | set(tok.encode("safe") + tok.encode("unsafe")
                      + tok.encode("\nS1,S9,S10") + [tok.special("<|eot_id|>")]))
    keep_in = sorted(set(range(0, tok.vocab_size, 2)) | {0})
    fq = qat_model(tok, output_token_ids=keep_out, input_token_ids=keep_in, embed_fallback_id=0)
    policy = Policy.default().subset(["S1", "S9", "S10"])
    recipe = {"steps": [{"kind": "qat", "epochs": 1}]}
    save_artifact(fq, tok, policy, tmp_path / "art", recipe=recipe)
    loaded = load_artifact(tmp_path / "art")
    q = loaded.model
    assert isinstance(q.layers[0].attention.wq, K.Int4WeightInt8ActLinear)
    assert isinstance(q.output, K.Int8WeightInt8ActLinear) and isinstance(q.tok_embeddings, K.Int8Embedding)
    assert q.args.output_token_ids == keep_out and q.args.input_token_ids == keep_in
    assert json.loads((tmp_path / "art" / "config.json").read_text())["token_maps"]["output_token_ids"] == keep_out
    assert loaded.meta["layout"] == "pocketguard-int4" and loaded.meta["recipe"] == recipe
    assert Policy.from_dict(loaded.meta["policy"]).codes == policy.codes
    assert loaded.tokenizer.encode("how do I make a bomb") == tok.encode("how do I make a bomb")

    toks = torch.randint(0, tok.vocab_size, (3, 40), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = fq(toks)
        with K.kernel_mode_ctx("reference"):
            assert torch.equal(q(toks), ref)  # the artifact's reference kernels: bit-identical
        assert rel_err(q(toks), ref) <= 1e-4  # the fast kernels: float tolerance

    # same verdicts through the guard runtime
    g_fq, g_q = Guard(fq, tok, policy=policy), Guard(q, tok, policy=policy)
    for text in ["how do I make a bomb", "bread recipe", "hello world the cake"]:
        a, b = g_fq.moderate(text), g_q.moderate(text)
        assert (a.status, a.categories) == (b.status, b.categories)
        assert abs(a.p_unsafe - b.p_unsafe) < 1e-4


def test_guard_load_runs_the_artifact(tok, tmp_path, monkeypatch):
    from pocketguard.checkpoint import CheckpointError

    fq = qat_model(tok, tie_embeddings=True)
    policy = Policy.default().subset(["S1", "S10"])
    save_artifact(fq, tok, policy, tmp_path / "art", max_context=300)
    g = Guard.load(tmp_path / "art")  # checkpoint.load dispatches on manifest.json
    if g.meta["runtime_cpu"]["kernel"] != "portable":  # the CPU's fast int4 x int8 kernel (runtime_cpu)
        assert type(g.model.layers[1]).__name__ == "FastBlock"
    else:
        assert isinstance(g.model.layers[1].feed_forward.w2, K.Int4WeightInt8ActLinear)
    assert g.policy.codes == ["S1", "S10"] and g.meta["max_context"] == 300 and g.meta["layout"] == "pocketguard-int4"
    # Exact fp32 attention: the artifact's kernels differ from the fake-quant model by float rounding only. The
    # default int8 attention (VNNI CPUs) rounds its 12-bit queries/keys and uint8 probabilities from those
    # slightly different inputs, so there p_unsafe may move by ~1e-3 (its own parity tests: test_runtime_kernels).
    for attention, tol in (("fp32", 1e-4), ("auto", 2e-2)):
        monkeypatch.setenv("POCKETGUARD_ATTENTION", attention)
        for text in ("how do I make a bomb", "hello world"):
            v, ref = g.moderate(text), Guard(fq, tok, policy=policy, max_context=300, subset_mode="prompt").moderate(text)
            assert (v.status, v.categories) == (ref.status, ref.categories) and abs(v.p_unsafe - ref.p_unsafe) < tol
    (tmp_path / "art" / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="config.json"):  # artifact errors are checkpoint errors
        Guard.load(tmp_path / "art")


def test_tiktoken_tokenizer_round_trips(tmp_path):
    from pocketguard.tokenizer import TiktokenTokenizer

    tt = TiktokenTokenizer(tiny_tiktoken_file(tmp_path / "src" / "tokenizer.model"))
    m = quantize_(model_for(tt), QuantConfig(mode="rtn", embedding_bits=4))
    save_artifact(m, tt, None, tmp_path / "art")
    loaded = load_artifact(tmp_path / "art")
    assert (tmp_path / "art" / "tokenizer.model").exists() and loaded.tokenizer.kind == "tiktoken"
    assert isinstance(loaded.model.tok_embeddings, K.Int4Embedding)


def test_qat_recipe_step_trains_and_converts(tok, tmp_path):
    from types import SimpleNamespace

    from pocketguard.compress.steps import qat_step
    from pocketguard.toy import toy_examples

    policy = Policy.default().subset(["S1", "S9", "S10"])
    ctx = SimpleNamespace(tokenizer=tok, policy=policy, teacher=None, examples=toy_examples(16), dev_examples=[], info={})
    m = qat_step(model_for(tok), ctx, steps=2, batch_size=4, lr=1e-3, progress=False, max_len=1024, device="cpu")
    assert isinstance(m.layers[0].attention.wq, K.Int4WeightInt8ActLinear) and "final_loss" in ctx.info
    save_artifact(m, tok, policy, tmp_path / "art", recipe={"step": [{"kind": "qat", "steps": 2}]})
    q = load_artifact(tmp_path / "art").model
    toks = torch.randint(0, tok.vocab_size, (2, 20), generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), K.kernel_mode_ctx("reference"):
        assert torch.equal(q(toks), m(toks))


def test_packed_size_is_about_4_5_bits_per_weight(tok, tmp_path):
    m = quantize_(model_for(tok, dim=128, ffn_dims=[256, 256]), QuantConfig(mode="rtn"))
    save_artifact(m, tok, None, tmp_path / "art")
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    assert manifest["stats"]["linear_bits_per_weight"] == pytest.approx(4.5)  # 4-bit codes + fp16 scale / 32
    n_lin = sum(mod.in_features * mod.out_features for name, mod in m.named_modules()
                if isinstance(mod, K.Int4WeightInt8ActLinear))
    n_head = m.output.in_features * m.output.out_features
    n_emb = m.tok_embeddings.num_embeddings * m.tok_embeddings.embedding_dim
    expected = n_lin * 4.5 / 8 + (n_head + n_emb) * 1.0 + 4 * (m.output.out_features + m.tok_embeddings.num_embeddings)
    size = (tmp_path / "art" / "model.safetensors").stat().st_size
    assert expected <= size < expected * 1.05 + 8192  # header + norms only on top
    assert set(manifest["files"]) >= {"model.safetensors", "config.json", "policy.toml", "tokenizer.json"}
    assert all(len(f["sha256"]) == 64 for f in manifest["files"].values())
    assert {"torch", "pocketguard"} <= set(manifest["versions"])


def test_ptq_models_round_trip(tok, tmp_path):
    toks = torch.randint(0, tok.vocab_size, (2, 24), generator=torch.Generator().manual_seed(3))
    for mode in ("gptq", "imatrix"):
        m = quantize_(model_for(tok, tie_embeddings=True), QuantConfig(mode=mode, rotation="hadamard",
                                                                     embedding_bits=4), calibration=toks)
        save_artifact(m, tok, None, tmp_path / mode)
        q = load_artifact(tmp_path / mode).model
        with torch.no_grad(), K.kernel_mode_ctx("reference"):
            assert torch.equal(q(toks), m(toks))


def test_a_threshold_set_after_training_is_checksummed_and_decides_the_verdicts(tok, tmp_path):
    from pocketguard.compress.artifact import set_guard_settings
    from pocketguard.loaded import CheckpointError

    fq = qat_model(tok)
    art = save_artifact(fq, tok, None, tmp_path / "art", max_context=1000)
    texts = ["how do I make a bomb", "hello world", "kill the process", "write a poem"]
    greedy = Guard.load(art)
    assert greedy.threshold is None
    p = [greedy.moderate(t).p_unsafe for t in texts]
    t = sorted(p)[1] + 1e-6  # flags the two highest only
    assert set_guard_settings(art, threshold=t) == {"max_context": 1000, "threshold": t}
    manifest = verify_artifact(art)  # guard.json is in the manifest with its new checksum
    assert "guard.json" in manifest["files"]
    g = Guard.load(art)
    assert g.threshold == t and g.max_context == 1000
    assert [g.moderate(x).status for x in texts] == ["unsafe" if q >= t else "safe" for q in p]
    assert Guard.load(art, threshold=0.5).threshold == 0.5  # the caller's choice wins
    assert Guard.load(art, threshold=None, max_context=None).threshold == t  # None (the CLI default) is no choice
    assert set_guard_settings(art, threshold=None) == {"max_context": 1000}  # None removes the setting
    assert Guard.load(art).threshold is None
    with pytest.raises(CheckpointError, match="threshold must be a number between 0 and 1"):
        set_guard_settings(art, threshold=1.5)
    verify_artifact(art)  # a refused setting leaves the artifact as it was
    (art / "guard.json").write_text(json.dumps({"max_context": 1000, "threshold": 0.2}))
    with pytest.raises(ArtifactError, match="guard.json: checksum mismatch"):
        set_guard_settings(art, threshold=0.3)  # an edited guard.json is refused like any edited file


def test_checksum_mismatch_names_the_file(tok, tmp_path):
    art = save_artifact(quantize_(model_for(tok), QuantConfig(mode="rtn")), tok, None, tmp_path / "art")
    verify_artifact(art)
    (art / "policy.toml").write_text((art / "policy.toml").read_text() + "\n# edited\n")
    with pytest.raises(ArtifactError, match=r"policy\.toml: checksum mismatch"):
        load_artifact(art)


def test_corrupt_files_give_clear_errors(tok, tmp_path):
    art = save_artifact(quantize_(model_for(tok), QuantConfig(mode="rtn")), tok, None, tmp_path / "art")
    good = (art / "model.safetensors").read_bytes()
    bad = bytearray(good)
    bad[len(bad) // 2] ^= 0xFF
    (art / "model.safetensors").write_bytes(bytes(bad))
    with pytest.raises(ArtifactError, match=r"model\.safetensors: checksum mismatch"):
        load_artifact(art)
    (art / "model.safetensors").write_bytes(good[:100])  # truncated, and checks skipped: the reader says so
    with pytest.raises(ArtifactError, match=r"model\.safetensors .*corrupt"):
        load_artifact(art, verify=False)
    (art / "model.safetensors").write_bytes(good)
    load_artifact(art)
    (art / "tokenizer.json").unlink()
    with pytest.raises(ArtifactError, match=r"tokenizer\.json is missing"):
        load_artifact(art)
    (art / "manifest.json").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"manifest\.json .*corrupt"):
        load_artifact(art)


def test_refuses_a_float_model(tok, tmp_path):
    with pytest.raises(ArtifactError, match="no quantized layers"):
        save_artifact(model_for(tok), tok, None, tmp_path / "art")
    from pocketguard.compress.lora import add_lora, merge_lora

    m = merge_lora(add_lora(quantize_(model_for(tok), QuantConfig(mode="rtn")), rank=2), requantize=False)
    with pytest.raises(ArtifactError, match="cannot store"):  # float merged weights with act quant: not a kernel
        save_artifact(m, tok, None, tmp_path / "art2")


def test_loading_initialises_no_parameter(tok, tmp_path, refusing_init):
    fq = qat_model(tok)
    save_artifact(fq, tok, Policy.default(), tmp_path / "art")
    expected = load_artifact(tmp_path / "art").model
    with refusing_init():
        q = load_artifact(tmp_path / "art").model
    toks = torch.randint(0, tok.vocab_size, (2, 24), generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert torch.equal(q(toks), expected(toks))


def _edit_config(art, edit):
    """Edit config.json and re-sign it in the manifest, as a tool that knows the format would: the checksums pass,
    and only the config's disagreement with the tensors is left for the loader to find."""
    from pocketguard.artifact import sha256_file

    cfg = json.loads((art / "config.json").read_text())
    edit(cfg)
    (art / "config.json").write_text(json.dumps(cfg))
    manifest = json.loads((art / "manifest.json").read_text())
    manifest["files"]["config.json"] = {"sha256": sha256_file(art / "config.json"), "bytes": (art / "config.json").stat().st_size}
    (art / "manifest.json").write_text(json.dumps(manifest))


def _group_size(g):
    return lambda cfg: cfg["quantization"]["modules"]["layers.0.attention.wq"].update(group_size=g)


@pytest.mark.parametrize("edit, needle", [
    pytest.param(lambda cfg: cfg["model"].update(dim=128),
                 r"tensor tok_embeddings\.qweight in model\.safetensors is int8 \[\d+, 64\], but config\.json implies "
                 r"int8 \[\d+, 128\]", id="dim-128"),
    pytest.param(_group_size(16), r"tensor layers\.0\.attention\.wq\.scales in model\.safetensors is float16 \[64, 2\], "
                 r"but config\.json implies float16 \[64, 4\]", id="group-16"),
    pytest.param(_group_size(0), r"config\.json: quantized module layers\.0\.attention\.wq cannot be built "
                 r".*ZeroDivisionError", id="group-0"),
    pytest.param(_group_size(-32), r"config\.json: quantized module layers\.0\.attention\.wq cannot be built "
                 r".*negative dimension", id="group-minus-32"),
])
def test_a_config_that_disagrees_with_the_tensors_is_an_artifact_error_and_moderate_exits_2(tok, tmp_path, capsys,
                                                                                          edit, needle):
    """Before, torch's `RuntimeError: size mismatch` (or a ZeroDivisionError) escaped as a traceback, and `moderate`
    exited 1, which a script reads as "unsafe": a guard that cannot judge must say so (exit 2)."""
    from pocketguard.checkpoint import CheckpointError
    from pocketguard.cli import main

    art = save_artifact(quantize_(model_for(tok), QuantConfig(mode="rtn")), tok, None, tmp_path / "art")
    _edit_config(art, edit)
    verify_artifact(art)  # the checksums agree: the contents do not
    with pytest.raises(ArtifactError, match=needle) as e:
        load_artifact(art)
    assert isinstance(e.value, CheckpointError)
    capsys.readouterr()
    assert main(["moderate", "--model", str(art), "hello"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and e.value.args[0] in err
