"""Checkpoints: parity with transformers in both layouts, exact round trips, and one clear error per failure."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch.testing import assert_close

from pocketguard import checkpoint
from pocketguard import testing as T
from pocketguard.checkpoint import (
    CheckpointError, args_from_hf_config, args_from_meta_params, hf_config, is_standard, load, load_hf, load_meta,
    meta_default_rope_scaling, meta_ffn_dim, meta_params, policy_dict, save_guard_meta, save_hf, save_meta,
    to_standard_shapes,
)
from pocketguard.model import rope_frequencies, rotate_half
from pocketguard.policy import Policy
from pocketguard.tokenizer import train_bpe

PARITY_TOL = 1e-4


def tokens(vocab, T_=64, seed=0):
    return torch.randint(0, vocab, (2, T_), generator=torch.Generator().manual_seed(seed))


def transformers_model(directory):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


@torch.no_grad()
def max_diff(ours, hf, vocab):
    x = tokens(vocab)
    return (ours(x) - hf(x).logits).abs().max().item()


def same_tensors(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ------------------------------------------------------------------------------------------ parity
HF_VARIANTS = {"gqa, llama3 rope": {}, "tied": {"tie_embeddings": True}, "mha, plain rope": {"n_kv_heads": 4, "rope_scaling": None}}


@pytest.mark.parametrize("variant", HF_VARIANTS, ids=list(HF_VARIANTS))
def test_hf_layout_matches_transformers(tmp_path, tiny_tok, variant):
    args = T.tiny_args(**HF_VARIANTS[variant])
    model = T.tiny_model(args, std=0.1)
    save_hf(model, tiny_tok, tmp_path)
    ours, hf = load_hf(tmp_path).model, transformers_model(tmp_path)
    rope = hf.config.rope_parameters
    assert hf.config.num_key_value_heads == args.n_kv_heads and rope["rope_theta"] == 500000.0
    assert (rope["rope_type"], rope.get("factor")) == (("llama3", 32.0) if args.rope_scaling else ("default", None))
    assert ("lm_head.weight" in load_file(str(tmp_path / "model.safetensors"))) == (not args.tie_embeddings)
    assert max_diff(ours, hf, 600) <= PARITY_TOL
    assert max_diff(model, hf, 600) <= PARITY_TOL


@pytest.mark.parametrize("tied", [False, True])
def test_meta_layout_matches_transformers(tmp_path, tiny_tiktoken, tied):
    vocab = tiny_tiktoken.vocab_size
    model = T.tiny_model(T.tiny_args(vocab_size=vocab, tie_embeddings=tied), std=0.1)
    save_meta(model, tiny_tiktoken, tmp_path / "meta")
    save_hf(model, tiny_tiktoken, tmp_path / "hf")  # transformers' model built from the same weights
    ours = load_meta(tmp_path / "meta").model
    assert ours.args.tie_embeddings == tied
    assert max_diff(ours, transformers_model(tmp_path / "hf"), vocab) <= PARITY_TOL


def test_reads_checkpoints_transformers_writes(tmp_path, tiny_tok):
    """A bf16, tied checkpoint written by transformers itself (not by save_hf) loads with parity in fp32."""
    from transformers import LlamaConfig, LlamaForCausalLM

    rope = {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 32.0, "low_freq_factor": 1.0,
            "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
    cfg = LlamaConfig(vocab_size=600, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=512, rms_norm_eps=1e-5, tie_word_embeddings=True,
                      rope_parameters=rope)
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(tmp_path)
    shutil.copy(tiny_tok.path, tmp_path / "tokenizer.json")
    ours = load_hf(tmp_path).model
    assert ours.args.tie_embeddings and ours.args.rope_scaling["factor"] == 32.0 and ours.tok_embeddings.weight.dtype == torch.float32
    assert max_diff(ours, transformers_model(tmp_path), 600) <= PARITY_TOL


def test_parity_check_detects_a_wrong_rope_scaling(tmp_path, tiny_tok):
    """The tiny inputs reach the scaled RoPE bands: a wrong factor is far outside the parity tolerance."""
    save_hf(T.tiny_model(std=0.1), tiny_tok, tmp_path)
    ours = load_hf(tmp_path).model
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["rope_parameters"]["factor"] = cfg["rope_scaling"]["factor"] = 8.0
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert max_diff(ours, transformers_model(tmp_path), 600) > 100 * PARITY_TOL


def test_meta_file_holds_meta_interleaved_rope(tmp_path, tiny_tiktoken):
    """Attention scores from the file's wq/wk with Meta's complex-pair RoPE equal ours with rotate-half."""
    model = T.tiny_model(T.tiny_args(vocab_size=tiny_tiktoken.vocab_size), std=0.1)
    save_meta(model, tiny_tiktoken, tmp_path)
    meta_sd = torch.load(tmp_path / "consolidated.00.pth", weights_only=True)
    a, n = model.args, 12
    x = torch.randn(n, a.dim, generator=torch.Generator().manual_seed(0))
    freqs_cis = torch.polar(torch.ones(n, a.head_dim // 2), torch.outer(torch.arange(n).float(), rope_frequencies(a)))

    def meta_rope(w, heads):  # llama-models' apply_rotary_emb: consecutive pairs are complex numbers
        y = (x @ w.T).view(n, heads, -1, 2)
        return torch.view_as_real(torch.view_as_complex(y) * freqs_cis[:, None]).flatten(2)

    def our_rope(w, heads):
        y = (x @ w.T).view(n, heads, -1)
        return y * model.rope_cos[:n, None] + rotate_half(y) * model.rope_sin[:n, None]

    scores = []
    for rope, sd in ((meta_rope, meta_sd), (our_rope, model.state_dict())):
        q = rope(sd["layers.0.attention.wq.weight"], a.n_heads)
        k = rope(sd["layers.0.attention.wk.weight"], a.n_kv_heads).repeat_interleave(a.n_heads // a.n_kv_heads, 1)
        scores.append(torch.einsum("thd,shd->hts", q, k))
    assert not torch.equal(meta_sd["layers.0.attention.wq.weight"], model.state_dict()["layers.0.attention.wq.weight"])
    torch.testing.assert_close(scores[0], scores[1], atol=1e-5, rtol=1e-5)


# -------------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("shard_bytes", [None, 20_000])
def test_hf_roundtrip_is_exact(tmp_path, tiny_tok, tiny_model, shard_bytes):
    save_hf(tiny_model, tiny_tok, tmp_path, shard_bytes=shard_bytes)
    shards = sorted(p.name for p in tmp_path.glob("model*.safetensors"))
    if shard_bytes:
        assert len(shards) > 2 and (tmp_path / "model.safetensors.index.json").exists()
        for shard in tmp_path.glob("model-*.safetensors"):  # within budget, or one tensor larger than it
            sd = load_file(str(shard))
            assert len(sd) == 1 or sum(t.nbytes for t in sd.values()) <= shard_bytes
    loaded = load_hf(tmp_path)
    assert loaded.model.args == tiny_model.args and same_tensors(loaded.model, tiny_model)
    assert loaded.tokenizer.encode("unsafe\nS1,S10") == tiny_tok.encode("unsafe\nS1,S10")
    save_hf(tiny_model, tiny_tok, tmp_path)  # re-saving unsharded leaves no stale shards behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]


@pytest.mark.parametrize("tied", [False, True])
def test_loading_float_checkpoints_initialises_no_parameter(tmp_path, tiny_tok, tiny_tiktoken, tied, refusing_init):
    model = T.tiny_model(T.tiny_args(vocab_size=tiny_tok.vocab_size, tie_embeddings=tied), seed=1)
    save_hf(model, tiny_tok, tmp_path / "hf")
    meta = T.tiny_model(T.tiny_args(vocab_size=tiny_tiktoken.vocab_size, tie_embeddings=tied), seed=2)
    save_meta(meta, tiny_tiktoken, tmp_path / "meta")
    with refusing_init():
        hf, m = checkpoint.load(tmp_path / "hf").model, checkpoint.load(tmp_path / "meta").model
    assert same_tensors(hf, model) and same_tensors(m, meta)
    x = torch.randint(0, tiny_tok.vocab_size, (1, 12))
    with torch.no_grad():
        assert torch.equal(hf(x), model(x))  # the buffers (rotary tables) as the constructor computes them


def test_the_skeleton_of_an_8b_guard_allocates_no_weight(monkeypatch):
    """Loaders assign every weight from the file into `weights.skeleton`: building it must not allocate (a 2 GB
    embedding on a machine loading a 4-bit GGUF to save memory) nor initialise anything; its buffers are real."""
    from pocketguard.model import ModelArgs
    from pocketguard.weights import float32_bytes, skeleton

    real, allocated = torch.empty, []

    def empty(*size, **kwargs):
        t = real(*size, **kwargs)
        if t.device.type != "meta" and t.numel() > 10**7:
            allocated.append(tuple(t.shape))
        return t

    monkeypatch.setattr(torch, "empty", empty)
    args = ModelArgs(dim=4096, n_layers=32, n_heads=32, n_kv_heads=8, vocab_size=128256, ffn_dims=[14336] * 32,
                     max_seq_len=8192, head_dim=128, rope_theta=500000.0)
    model = skeleton(args, "cpu")
    assert not allocated
    assert model.num_params() == 8_030_261_248  # Llama 3 8B's count
    assert float32_bytes(args) == 4 * 8_030_261_248 and float32_bytes(args, 10**9) == 4 * 7_030_261_248 + 10**9
    assert {p.device.type for p in model.parameters()} == {"meta"} and {b.device.type for b in model.buffers()} == {"cpu"}


@pytest.mark.parametrize("tied", [False, True])
def test_meta_roundtrip_is_exact(tmp_path, tiny_tiktoken, tied):
    model = T.tiny_model(T.tiny_args(vocab_size=tiny_tiktoken.vocab_size, tie_embeddings=tied))
    save_meta(model, tiny_tiktoken, tmp_path)
    loaded = load_meta(tmp_path)
    assert loaded.model.args == model.args and same_tensors(loaded.model, model)
    assert (loaded.model.output.weight is loaded.model.tok_embeddings.weight) == tied
    assert loaded.tokenizer.kind == "tiktoken" and loaded.tokenizer.vocab_size == tiny_tiktoken.vocab_size


@pytest.mark.parametrize("embedding_split", [0, 1])  # Llama 3 splits the vocabulary, Llama 2 the width
def test_meta_model_parallel_shards_are_merged(tmp_path, tiny_meta_dir, embedding_split):
    shutil.copytree(tiny_meta_dir, tmp_path / "mp")
    full = torch.load(tmp_path / "mp" / "consolidated.00.pth", weights_only=True)
    column = ("wq.weight", "wk.weight", "wv.weight", "w1.weight", "w3.weight", "output.weight")
    ranks = [{}, {}]
    for k, v in full.items():  # fairscale: column-parallel splits rows, row-parallel (wo, w2) splits columns
        dim = 0 if k.endswith(column) else 1 if k.endswith(("wo.weight", "w2.weight")) else None
        dim = embedding_split if k == "tok_embeddings.weight" else dim
        for rank, part in zip(ranks, v.chunk(2, dim) if dim is not None else (v, v)):
            rank[k] = part.clone()
    (tmp_path / "mp" / "consolidated.00.pth").unlink()
    for i, sd in enumerate(ranks):
        torch.save(sd, tmp_path / "mp" / f"consolidated.{i:02d}.pth")
    assert same_tensors(load_meta(tmp_path / "mp").model, load_meta(tiny_meta_dir).model)


def pruned_args(**over):
    keep_out = [3, 9, 40, 41, 100, 270, 273, 599]
    keep_in = sorted(set(range(0, 600, 3)) | {270, 273})
    return T.tiny_args(ffn_dims=[96, 160], output_token_ids=keep_out, input_token_ids=keep_in, embed_fallback_id=0, **over)


def test_compressed_shapes_roundtrip_through_hf(tmp_path, tiny_tok):
    model = T.tiny_model(pruned_args(extra={"pruned_from": "tiny"}))
    save_hf(model, tiny_tok, tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    assert cfg["pocketguard"]["ffn_dims"] == [96, 160] and cfg["intermediate_size"] == 160
    loaded = load_hf(tmp_path).model
    assert loaded.args == model.args and same_tensors(loaded, model)
    assert torch.equal(loaded.output_token_ids, model.output_token_ids)
    x = tokens(600)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


def test_to_standard_shapes_is_exact_on_kept_tokens_and_exportable(tmp_path, tiny_tok):
    pruned = T.tiny_model(pruned_args(), std=0.1)
    full = to_standard_shapes(pruned)
    assert is_standard(full.args) and full.output.weight.shape == (600, 64) and full.tok_embeddings.weight.shape == (600, 64)
    assert to_standard_shapes(full) is full
    keep = pruned.args.output_token_ids
    x = tokens(600)  # mostly ids the pruned embedding dropped: both read the fallback row
    with torch.no_grad():
        lp, lf = pruned(x), full(x)
    assert (lf[..., keep] - lp).abs().max() <= 1e-5
    assert torch.equal(lf.argmax(-1), torch.tensor(keep)[lp.argmax(-1)])  # greedy decoding unchanged
    dropped = [i for i in range(600) if i not in keep]
    assert (lf[..., dropped].max(-1).values <= lp.max(-1).values + 1e-5).all()
    save_hf(full, tiny_tok, tmp_path)
    assert "pocketguard" not in json.loads((tmp_path / "config.json").read_text())
    assert max_diff(full, transformers_model(tmp_path), 600) <= PARITY_TOL
    tied = T.tiny_model(T.tiny_args(tie_embeddings=True, ffn_dims=[96, 160]), std=0.1)
    padded = to_standard_shapes(tied)
    assert padded.output.weight is padded.tok_embeddings.weight and padded.args.ffn_dims == [160, 160]
    with torch.no_grad():
        assert_close(padded(x), tied(x), atol=1e-5, rtol=1e-5)


def test_load_detects_layout_and_carries_guard_settings(tmp_path, tiny_tok, tiny_model, tiny_meta_dir):
    policy = Policy.default().subset(["S1", "S9"])
    save_hf(tiny_model, tiny_tok, tmp_path, guard_meta={"policy": policy, "max_context": 256})
    loaded = load(tmp_path / "config.json")  # a file inside the folder works too
    assert loaded.meta == {"policy": policy_dict(policy), "max_context": 256, "layout": "hf"}
    assert Policy.from_dict(loaded.meta["policy"]) == policy
    from pocketguard.guard import Guard

    assert Guard.load(tmp_path).policy.codes == ["S1", "S9"]
    save_hf(tiny_model, tiny_tok, tmp_path)  # saving without settings must not leave the old policy behind
    assert load(tmp_path).meta == {"layout": "hf"}
    assert load(tiny_meta_dir).meta == {"layout": "meta"}


def test_load_hands_compressed_artifacts_to_their_loader(tmp_path, monkeypatch):
    import pocketguard.artifact as artifact

    (tmp_path / "manifest.json").write_text("{}")
    monkeypatch.setattr(artifact, "load_artifact", lambda path, device: ("artifact", path, device))
    assert load(tmp_path, device="cpu") == ("artifact", tmp_path, "cpu")


# -------------------------------------------------------------------------------------------- configs
LLAMA_32_1B = {  # Llama-3.2-1B config.json as transformers 4 wrote it
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 2048, "intermediate_size": 8192,
    "num_hidden_layers": 16, "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
    "max_position_embeddings": 131072, "rms_norm_eps": 1e-05, "rope_theta": 500000.0, "tie_word_embeddings": True,
    "rope_scaling": {"factor": 32.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "vocab_size": 128256, "hidden_act": "silu", "attention_bias": False, "mlp_bias": False,
}


def test_hf_config_reads_both_rope_spellings_and_writes_what_it_reads():
    v5 = {k: v for k, v in LLAMA_32_1B.items() if k not in ("rope_scaling", "rope_theta")}
    v5["rope_parameters"] = {**LLAMA_32_1B["rope_scaling"], "rope_theta": 500000.0}
    args = args_from_hf_config(LLAMA_32_1B)
    assert args == args_from_hf_config(v5)
    assert (args.tie_embeddings, args.head_dim, args.n_kv_heads, args.ffn_dims[0], args.max_seq_len) == (True, 64, 8, 8192, 131072)
    assert args.rope_scaling == {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    assert args_from_hf_config(hf_config(args)) == args


def test_meta_ffn_width_matches_released_llamas():
    assert meta_ffn_dim(2048, 256, 1.5) == 8192  # Llama 3.2 1B
    assert meta_ffn_dim(3072, 256, 1.0) == 8192  # Llama 3.2 3B
    assert meta_ffn_dim(4096, 1024, 1.3) == 14336  # Llama 3 / 3.1 8B
    assert meta_ffn_dim(8192, 4096, 1.3) == 28672  # Llama 3 / 3.1 70B
    assert meta_ffn_dim(4096, 256, None) == 11008  # Llama 2 7B


@pytest.mark.parametrize("dim, hidden", [(64, 128), (64, 96), (64, 100), (2048, 8192), (2048, 6400), (4096, 14336), (96, 7)])
def test_meta_params_express_any_uniform_width(dim, hidden):
    args = T.tiny_args(dim=dim, n_heads=4, ffn_dims=hidden)
    back = args_from_meta_params(meta_params(args))
    assert back == args


def test_meta_use_scaled_rope_defaults():
    base = {"dim": 2048, "n_layers": 16, "n_heads": 32, "n_kv_heads": 8, "vocab_size": 128256, "multiple_of": 256,
            "ffn_dim_multiplier": 1.5, "norm_eps": 1e-5, "rope_theta": 500000.0, "use_scaled_rope": True}
    assert args_from_meta_params(base).rope_scaling["factor"] == 32.0  # Llama 3.2 1B
    assert args_from_meta_params({**base, "dim": 4096, "multiple_of": 1024, "ffn_dim_multiplier": 1.3}).rope_scaling["factor"] == 8.0
    assert meta_default_rope_scaling(4096)["original_max_position_embeddings"] == 8192
    custom = {"factor": 16.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 8192}
    assert args_from_meta_params({**base, "rope_scaling": custom}).rope_scaling == custom
    # llama-models' llama4 params name the factor and high frequency factor; they were ignored (factor 32 by dim here)
    named = args_from_meta_params({**base, "rope_scaling_factor": 16.0, "rope_high_freq_factor": 2.0}).rope_scaling
    assert named == {"factor": 16.0, "low_freq_factor": 1.0, "high_freq_factor": 2.0, "original_max_position_embeddings": 8192}
    plain = args_from_meta_params({**base, "use_scaled_rope": False})
    assert plain.rope_scaling is None and plain.max_seq_len == 8192 and args_from_meta_params(base).max_seq_len == 131072


# --------------------------------------------------------------------------------------------- errors
def edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def edit_tensors(path, fn):
    if path.suffix == ".safetensors":
        sd = load_file(str(path))
        fn(sd)
        save_file(sd, str(path), metadata={"format": "pt"})
    else:
        sd = torch.load(path, weights_only=True)
        fn(sd)
        torch.save(sd, path)


def truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def bigger_tokenizer(d):
    (d / "tokenizer.json").unlink()
    train_bpe(T.tiny_corpus(), 700, d / "tokenizer.json")


def renumber(content, new_id, **added):
    """Give token `content` the id `new_id` in tokenizer.json (its added-token entry, if any, also updated with
    `added`): the token count stays that of the model's vocabulary, the highest id does not."""
    def move(tok):
        tok["model"]["vocab"][content] = new_id
        for a in tok["added_tokens"]:
            if a["content"] == content:
                a.update(id=new_id, **added)
    return lambda d: edit_json(d / "tokenizer.json", move)


def last_merge_past_the_embedding(d):
    """A gap in the ids: the tokenizer's highest-numbered BPE token moved from 599 to 650."""
    vocab = json.loads((d / "tokenizer.json").read_text())["model"]["vocab"]
    renumber(max(vocab, key=vocab.get), 650)(d)


def shard_then_drop_one(d):
    loaded = load_hf(d)
    save_hf(loaded.model, loaded.tokenizer, d, shard_bytes=20_000)
    next(d.glob("model-00002-of-*.safetensors")).unlink()


def config(**values):
    return lambda d: edit_json(d / "config.json", lambda c: c.update(values))


def params(**values):
    return lambda d: edit_json(d / "params.json", lambda p: p.update(values))


def rename_tensor(old, new):
    return lambda d: edit_tensors(d / "model.safetensors", lambda sd: sd.update({new: sd.pop(old)}))


HF_BREAKS = {
    "missing config": (lambda d: (d / "config.json").unlink(), r"config\.json is missing"),
    "corrupt config": (lambda d: (d / "config.json").write_text("{nope"), r"config\.json .* corrupt"),
    "config lacks a size": (lambda d: edit_json(d / "config.json", lambda c: c.pop("hidden_size")), r"lacks \['hidden_size'\]"),
    "mistral": (lambda d: edit_json(d / "config.json", lambda c: c.update(model_type="mistral", architectures=["MistralForCausalLM"])),
                r"unsupported architecture .*mistral"),
    "yarn rope": (lambda d: edit_json(d / "config.json", lambda c: c.update(rope_scaling={"rope_type": "yarn", "factor": 4.0})),
                  r"unsupported rope_type 'yarn'"),
    "biased attention": (lambda d: edit_json(d / "config.json", lambda c: c.update(attention_bias=True)), r"attention_bias=True"),
    "truncated weights": (lambda d: truncate(d / "model.safetensors"), r"model\.safetensors .* corrupt"),
    "missing weights": (lambda d: (d / "model.safetensors").unlink(), r"no model\.safetensors"),
    "bin weights only": (lambda d: ((d / "model.safetensors").rename(d / "pytorch_model.bin")), r"safetensors only"),
    "missing shard": (shard_then_drop_one, r"model-00002-of-\d{5}\.safetensors, listed in model\.safetensors\.index\.json, is missing"),
    "wrong shape": (lambda d: edit_tensors(d / "model.safetensors", lambda sd: sd.update({"model.layers.0.self_attn.k_proj.weight": torch.zeros(64, 32)})),
                    r"model\.layers\.0\.self_attn\.k_proj\.weight in model\.safetensors has shape \[64, 32\], but config\.json implies \[32, 64\]"),
    "missing tensor": (lambda d: edit_tensors(d / "model.safetensors", lambda sd: sd.pop("model.layers.1.mlp.up_proj.weight")),
                       r"missing tensors \['model\.layers\.1\.mlp\.up_proj\.weight'\]"),
    "unexpected tensor": (lambda d: edit_tensors(d / "model.safetensors", lambda sd: sd.update({"model.layers.0.self_attn.q_proj.bias": torch.zeros(64)})),
                          r"unexpected tensors \['model\.layers\.0\.self_attn\.q_proj\.bias'\]"),
    "integer weights": (lambda d: edit_tensors(d / "model.safetensors", lambda sd: sd.update({"model.norm.weight": torch.ones(64, dtype=torch.int8)})),
                        r"model\.norm\.weight .* dtype torch\.int8"),
    "missing tokenizer": (lambda d: (d / "tokenizer.json").unlink(), r"no tokenizer\.json or tokenizer\.model"),
    "tokenizer larger than the model": (bigger_tokenizer, r"tokenizer's token '.+' has id 6\d\d, outside the model's vocabulary of 600"),
    # as many tokens as the model has rows, but one numbered past them: loaded, then failed on every prompt (a
    # control token) or on text holding it (a plain or added one: only control tokens' ids used to be checked)
    "control token outside the embedding": (renumber("<|eot_id|>", 700),
                                            r"token '<\|eot_id\|>' has id 700, outside the model's vocabulary of 600 \(ids 0\.\.599\)"),
    "gap in the ids": (last_merge_past_the_embedding, r"token '.+' has id 650, outside the model's vocabulary of 600"),
    "plain added token outside the embedding": (renumber("<|python_tag|>", 650, special=False),
                                                r"token '<\|python_tag\|>' has id 650, outside the model's vocabulary of 600"),
    "corrupt guard.json": (lambda d: (d / "guard.json").write_text("[1,"), r"guard\.json .* corrupt"),
    "invalid policy": (lambda d: (d / "guard.json").write_text(json.dumps({"policy": {"keep": ["S1"]}})), r"guard\.json: invalid policy"),
    "bad max_context": (lambda d: (d / "guard.json").write_text(json.dumps({"max_context": -5})), r"max_context must be a positive integer"),
    # a misspelt setting used to be ignored in silence: the guard ran greedy instead of at its own threshold
    "misspelt setting": (lambda d: (d / "guard.json").write_text(json.dumps({"treshold": 0.3})), r"guard\.json: unknown settings \['treshold'\]"),
    # config values of the wrong type, or zero sizes, name the file and key: they were ValueError, TypeError or
    # ZeroDivisionError crashes, a shape error about some tensor, or (a string for a flag) a silently tied head
    "rope_scaling a string": (config(rope_scaling="llama3"), r"config\.json: rope_scaling must be an object, got 'llama3'"),
    "rope_parameters a list": (config(rope_scaling=None, rope_parameters=[1, 2]), r"config\.json: rope_parameters must be an object, got \[1, 2\]"),
    "zero rope factor": (lambda d: edit_json(d / "config.json", lambda c: c["rope_scaling"].update(factor=0)),
                         r"config\.json: rope_scaling\.factor must be a positive number, got 0"),
    "head_dim a string": (config(head_dim="big"), r"config\.json: head_dim must be a positive integer, got 'big'"),
    "no attention heads": (config(num_attention_heads=0), r"config\.json: num_attention_heads must be a positive integer, got 0"),
    "no kv heads": (config(num_key_value_heads=0), r"config\.json: num_key_value_heads must be a positive integer, got 0"),
    "fractional width": (config(intermediate_size=127.5), r"config\.json: intermediate_size must be a positive integer, got 127\.5"),
    "tied as a string": (config(tie_word_embeddings="false"), r"config\.json: tie_word_embeddings must be true or false, got 'false'"),
    "nan epsilon": (config(rms_norm_eps=float("nan")), r"config\.json: rms_norm_eps must be a finite number, got nan"),
    "pocketguard a list": (config(pocketguard=["x"]), r"config\.json: pocketguard must be an object, got \['x'\]"),
    "pruned width of 0": (config(pocketguard={"ffn_dims": [96, 0]}), r"config\.json: pocketguard\.ffn_dims\[1\] must be a positive integer, got 0"),
    "token map a string": (config(pocketguard={"output_token_ids": "abc"}), r"config\.json: pocketguard\.output_token_ids must be a list of token ids"),
    # `$` matched before a final line break: this name was read as q_proj's
    "tensor name with a line break": (rename_tensor("model.layers.0.self_attn.q_proj.weight", "model.layers.0.self_attn.q_proj.weight\n"),
                                      r"unexpected tensors \['model\.layers\.0\.self_attn\.q_proj\.weight\\n'\]"),
}


@pytest.mark.parametrize("case", HF_BREAKS, ids=list(HF_BREAKS))
def test_hf_errors_say_what_is_wrong(tmp_path, tiny_hf_dir, case):
    d = shutil.copytree(tiny_hf_dir, tmp_path / "ckpt")
    brk, message = HF_BREAKS[case]
    brk(d)
    with pytest.raises(CheckpointError, match=message):
        load_hf(d)


META_BREAKS = {
    "missing params": (lambda d: (d / "params.json").unlink(), r"params\.json is missing"),
    "vision model": (lambda d: edit_json(d / "params.json", lambda p: p.update(vision_chunk_size=560)), r"unsupported architecture"),
    "no weights": (lambda d: (d / "consolidated.00.pth").unlink(), r"no consolidated\.\*\.pth"),
    "truncated weights": (lambda d: truncate(d / "consolidated.00.pth"), r"consolidated\.00\.pth .* corrupt"),
    "wrong shape": (lambda d: edit_tensors(d / "consolidated.00.pth", lambda sd: sd.update({"layers.1.feed_forward.w2.weight": torch.zeros(64, 64)})),
                    r"layers\.1\.feed_forward\.w2\.weight in consolidated\.00\.pth has shape \[64, 64\], but params\.json implies \[64, 128\]"),
    "missing tensor": (lambda d: edit_tensors(d / "consolidated.00.pth", lambda sd: sd.pop("output.weight")), r"missing tensors \['output\.weight'\]"),
    "shards disagree": (lambda d: torch.save({"norm.weight": torch.ones(64)}, d / "consolidated.01.pth"), r"consolidated\.01\.pth holds other tensors"),
    # a second rank whose tensors are another shape (a stale file of another model): torch.cat's RuntimeError surfaced
    "shards of two models": (lambda d: torch.save({k: v[:, :-1].clone() if v.ndim == 2 else v for k, v in torch.load(
        d / "consolidated.00.pth", weights_only=True).items()}, d / "consolidated.01.pth"),
        r"tok_embeddings\.weight: the shards' parts \[\[536, 64\], \[536, 63\]\] \(consolidated\.00\.pth, consolidated\.01\.pth\) do not fit together"),
    "missing tokenizer": (lambda d: (d / "tokenizer.model").unlink(), r"no tokenizer\.model"),
    # a tokenizer.model numbers its 256 control tokens after its base vocabulary: one rank short (a file cut at a line
    # end) loaded, and <|eot_id|> & co. read the embedding rows of the tokens before them
    "tokenizer cut short": (lambda d: (d / "tokenizer.model").write_text("".join((d / "tokenizer.model").read_text().splitlines(True)[:-1])),
                            r"tiktoken tokenizer has 535 tokens .* the model's vocabulary has 536"),
    # one rank corrupt (the last, 279, reads 280): as many tokens as the model's, and "|>" in user text encoded to the id
    # of <|begin_of_text|>, the first control token numbered after the ranks
    "tokenizer rank corrupt": (lambda d: (d / "tokenizer.model").write_text((d / "tokenizer.model").read_text().replace(" 279\n", " 280\n")),
                               r"checkpoint tokenizer: tiktoken file .* is corrupt: its 280 ranks are not 0\.\.279"),
    # Llama 4's options change the computation without adding a tensor: they loaded as a plain Llama
    "llama 4 qk norm": (lambda d: edit_json(d / "params.json", lambda p: p.update(use_qk_norm=True)),
                        r"unsupported Llama 4 features \['use_qk_norm'\]"),
    "llama 4 attention": (lambda d: edit_json(d / "params.json", lambda p: p.update(nope_layer_interval=4, attention_chunk_size=8192)),
                          r"unsupported Llama 4 features \['attention_chunk_size', 'nope_layer_interval'\]"),
    "qlora adapters": (lambda d: edit_json(d / "params.json", lambda p: p.update(lora_args={"rank": 16, "scale": 2.0})),
                       r"unsupported architecture \(has \['lora_args'\]\)"),
    # wrong types and zero sizes name the file and key (they were ZeroDivisionError / AttributeError crashes)
    "no heads": (params(n_heads=0), r"params\.json: n_heads must be a positive integer, got 0"),
    "multiple_of 0": (params(multiple_of=0), r"params\.json: multiple_of must be a positive integer, got 0"),
    "pocketguard a string": (params(pocketguard="x"), r"params\.json: pocketguard must be an object, got 'x'"),
    "scaled rope as a string": (params(use_scaled_rope="no"), r"params\.json: use_scaled_rope must be true or false, got 'no'"),
    "multiplier a string": (params(ffn_dim_multiplier="1.3"), r"params\.json: ffn_dim_multiplier must be a positive number, got '1\.3'"),
    "llama 2 vocabulary": (params(vocab_size=-1), r"params\.json: vocab_size -1 \(a Llama 2 checkpoint\?\) is not supported"),
}


@pytest.mark.parametrize("case", META_BREAKS, ids=list(META_BREAKS))
def test_meta_errors_say_what_is_wrong(tmp_path, tiny_meta_dir, case):
    d = shutil.copytree(tiny_meta_dir, tmp_path / "ckpt")
    brk, message = META_BREAKS[case]
    brk(d)
    with pytest.raises(CheckpointError, match=message):
        load_meta(d)


@pytest.mark.parametrize("layout, brk", [("hf", config(head_dim="big")), ("meta", params(n_heads=0))])
def test_moderate_exits_2_naming_file_and_key_on_a_bad_config(tmp_path, tiny_hf_dir, tiny_meta_dir, capsys, layout, brk):
    """A guard that cannot load cannot judge: exit 2 with what is wrong, not a traceback of a crash."""
    from pocketguard.cli import main

    d = shutil.copytree(tiny_hf_dir if layout == "hf" else tiny_meta_dir, tmp_path / "ckpt")
    brk(d)
    assert main(["moderate", "--model", str(d), "hello"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "internal error" not in err
    assert err.startswith(f"error: {d / ('config.json' if layout == 'hf' else 'params.json')}: "
                          f"{'head_dim' if layout == 'hf' else 'n_heads'} must be a positive integer")


@pytest.mark.parametrize("dtype", ["bf16", "int8", torch.int8, torch.float8_e4m3fn, "__name__"])
def test_load_refuses_a_dtype_a_model_cannot_run_in(tiny_hf_dir, tiny_meta_dir, dtype):
    """`dtype="bf16"` was an AttributeError, `torch.int8` a RuntimeError listing every parameter, float8 loaded a
    model that could not run."""
    for d in (tiny_hf_dir, tiny_meta_dir):
        with pytest.raises(CheckpointError, match=r'dtype must be "auto" or one of float32, bfloat16, float16, float64'):
            load(d, dtype=dtype)
    assert load(tiny_hf_dir, dtype="bfloat16").model.tok_embeddings.weight.dtype == torch.bfloat16


def test_unknown_folders_and_unsaveable_models_are_refused(tmp_path, tiny_tok, tiny_tiktoken, tiny_model):
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load(tmp_path / "nowhere")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load(tmp_path)
    with pytest.raises(CheckpointError, match="needs a tiktoken tokenizer.model"):
        save_meta(tiny_model, tiny_tok, tmp_path / "m1")
    with pytest.raises(CheckpointError, match="standard shapes only"):
        save_meta(T.tiny_model(T.tiny_args(vocab_size=tiny_tiktoken.vocab_size, ffn_dims=[96, 160])), tiny_tiktoken, tmp_path / "m2")
    with pytest.raises(CheckpointError, match=r"tokenizer's token '.+' has id 599, outside the model's vocabulary of 500"):
        save_hf(T.tiny_model(T.tiny_args(vocab_size=500)), tiny_tok, tmp_path / "h")
    with pytest.raises(CheckpointError, match="invalid policy"):
        save_guard_meta(tmp_path, {"policy": {"category": [{"code": "bad code", "name": "x"}]}})
    with pytest.raises(CheckpointError, match="unknown settings"):  # never written, so never unreadable
        save_guard_meta(tmp_path, {"threshold": 0.5, "max_contxt": 256})


def test_auto_dtype_loads_float32_where_it_fits_and_bfloat16_where_it_would_not(tmp_path, monkeypatch):
    """`dtype="auto"` (what Guard.load uses for float checkpoints): an 8B guard is 32 GB in float32, more than many
    machines have, so a model whose float32 weights would take over 3/4 of the free memory loads in bfloat16, with
    a warning, and judges as the float32 one does (on this tiny model: the same statuses, p_unsafe within bf16
    rounding)."""
    import pocketguard.weights as W
    from pocketguard.guard import Guard

    path = T.build_tiny_checkpoint(tmp_path / "m", seed=0)
    n = checkpoint.load(path).model.num_params()
    monkeypatch.setattr(W, "free_memory", lambda device: 4 * n * 2)  # room to spare
    assert checkpoint.load(path, dtype="auto").model.tok_embeddings.weight.dtype == torch.float32
    monkeypatch.setattr(W, "free_memory", lambda device: 4 * n)  # float32 would take all of it
    with pytest.warns(UserWarning, match="loading in bfloat16"):
        small = Guard.load(path)
    assert small.model.tok_embeddings.weight.dtype == torch.bfloat16
    full = Guard(checkpoint.load(path).model, small.tokenizer, small.policy)
    for text in ("how do I make a bomb", "hello there"):
        a, b = full.moderate(text), small.moderate(text)
        assert a.status == b.status and abs(a.p_unsafe - b.p_unsafe) < 0.02
    assert checkpoint.load(path, dtype=torch.float16).model.tok_embeddings.weight.dtype == torch.float16
    from pocketguard.export.gguf import export_gguf  # a GGUF file decides the same way

    gguf_file = export_gguf(full.model, full.tokenizer, tmp_path / "m.gguf", "f32", policy=full.policy)
    with pytest.warns(UserWarning, match="m.gguf: float32 weights would take"):
        assert checkpoint.load(gguf_file, dtype="auto").model.tok_embeddings.weight.dtype == torch.bfloat16
    assert W.free_memory(torch.device("cpu")) > 0
