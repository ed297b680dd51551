"""Checkpoints in the two layouts Llama ships in, loaded into and saved from our one `Transformer`.

    Hugging Face   config.json + model.safetensors (or model-0000i-of-0000n.safetensors + model.safetensors.index.json)
                   + tokenizer.json (or tokenizer.model)
    Meta           params.json + consolidated.NN.pth (NN = model-parallel rank) + tokenizer.model
    both           guard.json (optional): pocketguard's guard settings, {"policy": ..., "max_context": ..., "threshold": ...}

`load` tells the layouts apart (a compressed artifact's manifest.json goes to `artifact`). Every
problem is a `CheckpointError` naming the file and the tensor or config key at fault (a config value of the wrong
type or a zero size too): a guard that silently loads the wrong weights is worse than one that refuses to load.

Compressed shapes (per-layer MLP widths, pruned head or embedding) round-trip through our HF layout under a
"pocketguard" key of config.json; stock tools cannot build those models, so exports go through
`to_standard_shapes` first. The Meta layout holds standard shapes only.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from math import gcd
from pathlib import Path

import torch
from torch import Tensor

from .loaded import GUARD_META as GUARD_META  # re-exported: callers keep finding them in `checkpoint`
from .loaded import CheckpointError, Loaded, read_guard_meta, read_json, write_guard_meta
from .loaded import policy_dict as policy_dict
from .loaded import save_guard_meta as save_guard_meta
from .model import ModelArgs, Transformer
from .weights import Dtype, assemble, assign, config_bool, config_float, config_int, permute_to_meta, resolve_dtype, skeleton
from .weights import permute_to_hf as permute_to_hf  # re-exported: part of checkpoint's public naming
from .tokenizer import Tokenizer, TokenizerError

HF_CONFIG, HF_WEIGHTS, HF_INDEX = "config.json", "model.safetensors", "model.safetensors.index.json"
META_PARAMS, META_TOKENIZER = "params.json", "tokenizer.model"
_HF_SHARD = re.compile(r"model(-\d{5}-of-\d{5})?\.safetensors")  # fullmatch: `$` matches before a final "\n"
_EXTRAS = ("ffn_dims", "output_token_ids", "input_token_ids", "embed_fallback_id", "extra")  # config.json "pocketguard"


def load(path: str | Path, device: str | torch.device = "cpu", dtype: Dtype = torch.float32,
         keep_quantized: bool | str = False) -> Loaded:
    """Load a checkpoint folder (or a file in it) of any layout pocketguard knows, or a llama.cpp `.gguf` file.
    `dtype="auto"`: float32 where it fits in memory, else bfloat16 (`resolve_dtype`). `keep_quantized` (True, or
    "auto": where float32 would not fit): a GGUF's Q4_0 / Q8_0 block linears run as they are stored
    (`gguf_checkpoint.load_gguf`); for inference."""
    if Path(path).suffix.lower() == ".gguf":
        from .gguf_checkpoint import load_gguf

        return load_gguf(path, device, dtype, keep_quantized=keep_quantized)
    d = _folder(path)
    if (d / "manifest.json").exists():
        from .artifact import load_artifact

        return load_artifact(d, device=device)
    if (d / HF_CONFIG).exists():
        return load_hf(d, device, dtype)
    if (d / META_PARAMS).exists():
        return load_meta(d, device, dtype)
    raise CheckpointError(f"{d} holds no checkpoint: expected manifest.json (compressed artifact), "
                          f"{HF_CONFIG} (Hugging Face) or {META_PARAMS} (Meta)")


# ----------------------------------------------------------------------------------------------- names
_HF_TOP = {"tok_embeddings.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
_HF_LAYER = {
    "attention.wq": "self_attn.q_proj", "attention.wk": "self_attn.k_proj", "attention.wv": "self_attn.v_proj",
    "attention.wo": "self_attn.o_proj", "feed_forward.w1": "mlp.gate_proj", "feed_forward.w2": "mlp.down_proj",
    "feed_forward.w3": "mlp.up_proj", "attention_norm": "input_layernorm", "ffn_norm": "post_attention_layernorm",
}
_OUR_TOP = {v: k for k, v in _HF_TOP.items()}
_OUR_LAYER = {v: k for k, v in _HF_LAYER.items()}
_OUR_LAYER_KEY = re.compile(r"^layers\.(\d+)\.(.+)\.weight$")
_HF_LAYER_KEY = re.compile(r"model\.layers\.(\d+)\.(.+)\.weight")  # a file's tensor name: fullmatch, as _HF_SHARD


def hf_key(name: str) -> str:
    """Our (Meta) parameter name → its Hugging Face name."""
    if name in _HF_TOP:
        return _HF_TOP[name]
    m = _OUR_LAYER_KEY.match(name)
    if m and m[2] in _HF_LAYER:
        return f"model.layers.{m[1]}.{_HF_LAYER[m[2]]}.weight"
    raise CheckpointError(f"parameter {name!r} has no Hugging Face name (a quantized or modified model?)")


def our_key(name: str) -> str | None:
    """Hugging Face tensor name → ours; None when our model has no place for it."""
    if name in _OUR_TOP:
        return _OUR_TOP[name]
    m = _HF_LAYER_KEY.fullmatch(name)
    if m and m[2] in _OUR_LAYER:
        return f"layers.{m[1]}.{_OUR_LAYER[m[2]]}.weight"
    return None


def hf_state_dict(model: Transformer) -> dict[str, Tensor]:
    """Weights under Hugging Face names; a tied head is stored once, as the embedding (as transformers does)."""
    return {hf_key(k): v for k, v in model.state_dict().items() if not (k == "output.weight" and model.args.tie_embeddings)}


def meta_state_dict(model: Transformer) -> dict[str, Tensor]:
    """Weights under Meta names with Meta's interleaved q/k rows; `output.weight` always present (Meta's
    model has no tying), sharing the embedding's storage when tied."""
    a = model.args
    out = dict(model.state_dict())
    for i in range(a.n_layers):
        for w, heads in (("wq", a.n_heads), ("wk", a.n_kv_heads)):
            out[f"layers.{i}.attention.{w}.weight"] = permute_to_meta(out[f"layers.{i}.attention.{w}.weight"], heads)
    return out


# ------------------------------------------------------------------------------------------ HF layout
def args_from_hf_config(cfg: dict, source: str = HF_CONFIG) -> ModelArgs:
    """ModelArgs from a Hugging Face Llama config (transformers 4 `rope_scaling` or 5 `rope_parameters`)."""
    model_type, archs = cfg.get("model_type"), cfg.get("architectures") or []
    if model_type != "llama" and "LlamaForCausalLM" not in archs:
        raise CheckpointError(f"{source}: unsupported architecture (model_type={model_type!r}, architectures={archs}); "
                              "pocketguard loads Llama checkpoints only")
    for key, ours in (("hidden_act", "silu"), ("attention_bias", False), ("mlp_bias", False)):
        if cfg.get(key, ours) != ours:
            raise CheckpointError(f"{source}: unsupported Llama variant {key}={cfg[key]!r} (pocketguard implements {ours!r})")
    if cfg.get("quantization_config"):
        raise CheckpointError(f"{source}: quantized Hugging Face checkpoints are not supported; load the float model")
    missing = [k for k in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size") if k not in cfg]
    if missing:
        raise CheckpointError(f"{source} lacks {missing}")
    # transformers 5 reads `rope_scaling` first when both are present; so do we.
    rope_key = "rope_scaling" if cfg.get("rope_scaling") else "rope_parameters"
    rope = _table(cfg, rope_key, source)
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope_type not in ("default", "llama3"):
        raise CheckpointError(f"{source}: unsupported rope_type {rope_type!r} (pocketguard implements default and llama3)")
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise CheckpointError(f"{source}: partial rotary embeddings are not supported")
    max_seq_len = config_int(_given(cfg, "max_position_embeddings", 2048), "max_position_embeddings", source)
    scaling = _llama3_scaling(rope, max_seq_len, source, rope_key) if rope_type == "llama3" else None
    extras = _table(cfg, "pocketguard", source)
    unknown = set(extras) - set(_EXTRAS)
    if unknown:
        raise CheckpointError(f"{source}: unknown pocketguard keys {sorted(unknown)} (written by a newer pocketguard?)")
    n_heads = config_int(cfg["num_attention_heads"], "num_attention_heads", source)
    kv_heads, head_dim = cfg.get("num_key_value_heads"), cfg.get("head_dim")
    width = config_int(cfg["intermediate_size"], "intermediate_size", source)
    values = dict(
        dim=config_int(cfg["hidden_size"], "hidden_size", source),
        n_layers=config_int(cfg["num_hidden_layers"], "num_hidden_layers", source), n_heads=n_heads,
        n_kv_heads=n_heads if kv_heads is None else config_int(kv_heads, "num_key_value_heads", source),
        vocab_size=config_int(cfg["vocab_size"], "vocab_size", source),
        ffn_dims=_widths(extras["ffn_dims"], "pocketguard.ffn_dims", source) if "ffn_dims" in extras else width,
        norm_eps=config_float(_given(cfg, "rms_norm_eps", 1e-6), "rms_norm_eps", source),
        rope_theta=config_float(rope.get("rope_theta", _given(cfg, "rope_theta", 10000.0)), "rope_theta", source, positive=True),
        rope_scaling=scaling, max_seq_len=max_seq_len,
        head_dim=None if head_dim is None else config_int(head_dim, "head_dim", source),
        tie_embeddings=config_bool(_given(cfg, "tie_word_embeddings", False), "tie_word_embeddings", source),
        **_token_maps(extras, source), extra=_table(extras, "extra", source, "pocketguard.extra"),
    )
    try:
        return ModelArgs(**values)
    except ValueError as e:  # sizes that do not fit together (heads and kv heads, a width per layer, token maps)
        raise CheckpointError(f"{source}: inconsistent model config: {e}") from None


def _given(cfg: dict, key: str, default: object) -> object:
    """`cfg[key]`, or `default` where it is absent or null (as transformers reads a null)."""
    value = cfg.get(key)
    return default if value is None else value


def _table(cfg: dict, key: str, source: str, name: str | None = None) -> dict:
    """An object-valued key ({} where absent or null); another type is a CheckpointError (a string there crashed
    `dict()` or `.get`)."""
    value = cfg.get(key) or {}
    if not isinstance(value, dict):
        raise CheckpointError(f"{source}: {name or key} must be an object, got {value!r}")
    return value


def _widths(value: object, key: str, source: str) -> int | list[int]:
    """An MLP width: one for every layer, or a list of one per layer."""
    if isinstance(value, list):
        return [config_int(v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    return config_int(value, key, source)


def _token_maps(extras: dict, source: str) -> dict:
    """A pruned model's token maps from config.json's "pocketguard" object: lists of ids and a fallback id (ModelArgs
    checks that they fit the vocabulary)."""
    out: dict = {"embed_fallback_id": None if extras.get("embed_fallback_id") is None
                 else config_int(extras["embed_fallback_id"], "pocketguard.embed_fallback_id", source, minimum=0)}
    for key in ("output_token_ids", "input_token_ids"):
        ids = extras.get(key)
        if ids is not None and not isinstance(ids, list):
            raise CheckpointError(f"{source}: pocketguard.{key} must be a list of token ids, got {ids!r}")
        out[key] = None if ids is None else [config_int(i, f"pocketguard.{key}[{n}]", source, minimum=0) for n, i in enumerate(ids)]
    return out


def _llama3_scaling(rope: dict, original_default: int, source: str, key: str = "rope_scaling") -> dict:
    """The four Llama 3 RoPE scaling numbers of the `key` object, checked (a missing one would surface later as a
    bare KeyError, a zero as NaN logits)."""
    missing = [k for k in ("factor", "low_freq_factor", "high_freq_factor") if k not in rope]
    if missing:
        raise CheckpointError(f"{source}: llama3 rope scaling lacks {missing[0]!r}")
    scaling = {k: config_float(rope[k], f"{key}.{k}", source, positive=True) for k in ("factor", "low_freq_factor", "high_freq_factor")}
    scaling["original_max_position_embeddings"] = config_int(
        rope.get("original_max_position_embeddings", original_default), f"{key}.original_max_position_embeddings", source)
    return scaling


def hf_config(args: ModelArgs) -> dict:
    """config.json for `args`. Uniform, unpruned models load in `transformers.LlamaForCausalLM`; compressed
    shapes go under "pocketguard" (see `to_standard_shapes` for a stock-loadable model)."""
    scaling = {"rope_type": "llama3", **args.rope_scaling} if args.rope_scaling else None
    cfg = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama",
        "vocab_size": args.vocab_size, "hidden_size": args.dim, "intermediate_size": max(args.ffn_dims),
        "num_hidden_layers": args.n_layers, "num_attention_heads": args.n_heads, "num_key_value_heads": args.n_kv_heads,
        "head_dim": args.head_dim, "hidden_act": "silu", "max_position_embeddings": args.max_seq_len,
        "rms_norm_eps": args.norm_eps, "tie_word_embeddings": args.tie_embeddings, "attention_bias": False, "mlp_bias": False,
        "rope_parameters": {**(scaling or {"rope_type": "default"}), "rope_theta": args.rope_theta},  # transformers 5
        "rope_theta": args.rope_theta, "rope_scaling": scaling,  # transformers 4, vLLM, llama.cpp's converter
    }
    extras = {
        "ffn_dims": args.ffn_dims if len(set(args.ffn_dims)) > 1 else None,
        "output_token_ids": args.output_token_ids, "input_token_ids": args.input_token_ids,
        "embed_fallback_id": args.embed_fallback_id, "extra": args.extra or None,
    }
    extras = {k: v for k, v in extras.items() if v is not None}
    if extras:
        cfg["pocketguard"] = extras
    return cfg


def load_hf(path: str | Path, device: str | torch.device = "cpu", dtype: Dtype = torch.float32) -> Loaded:
    """Load config.json + safetensors weights (single or sharded) + tokenizer + guard.json."""
    from safetensors import SafetensorError, safe_open

    d = _folder(path)
    cfg = read_json(d / HF_CONFIG)
    args = args_from_hf_config(cfg, source=str(d / HF_CONFIG))
    dtype = resolve_dtype(dtype, args, device, str(d))
    tensors, origin = {}, {}
    for file, names in _hf_weight_files(d).items():
        try:
            with safe_open(str(file), framework="pt") as f:
                present = set(f.keys())
                for name in names if names is not None else sorted(present):
                    if name not in present:
                        raise CheckpointError(f"{HF_INDEX} places {name} in {file.name}, which does not contain it")
                    ours = our_key(name)
                    if ours is None and name.endswith("rotary_emb.inv_freq"):
                        continue  # buffers older transformers saved; recomputed from the config
                    if ours == "output.weight" and args.tie_embeddings:
                        continue  # transformers ignores a stored head of a tied model too
                    key = ours or name
                    if key in tensors:
                        raise CheckpointError(f"{name} appears twice ({origin[key]} and {file.name})")
                    tensors[key], origin[key] = f.get_tensor(name), file.name
        except SafetensorError as e:
            raise CheckpointError(f"{file.name} in {d} is corrupt: {e}") from None
    model = assemble(args, tensors, origin, device, dtype, hf_key, HF_CONFIG)
    tokenizer = _load_tokenizer(d, model.args)
    return Loaded(model, tokenizer, {**read_guard_meta(d), "layout": "hf"})


def save_hf(model: Transformer, tokenizer: Tokenizer, directory: str | Path, guard_meta: dict | None = None,
            shard_bytes: int | None = None) -> Path:
    """Write config.json, safetensors weights (sharded into files of at most `shard_bytes` when given, bar
    single larger tensors), the tokenizer and guard.json. Weights an earlier save left here are replaced."""
    from safetensors.torch import save_file

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _check_vocab(tokenizer, model.args, str(d))
    for old in d.iterdir():
        if _HF_SHARD.fullmatch(old.name) or old.name == HF_INDEX:
            old.unlink()
    tensors = {k: _owned(v) for k, v in hf_state_dict(model).items()}
    shards: list[dict[str, Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        if shard_bytes is not None and shards[-1] and size + t.nbytes > shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = t
        size += t.nbytes
    if len(shards) == 1:
        save_file(shards[0], str(d / HF_WEIGHTS), metadata={"format": "pt"})
    else:
        weight_map = {}
        for i, shard in enumerate(shards):
            file = f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, str(d / file), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, file))
        index = {"metadata": {"total_size": sum(t.nbytes for t in tensors.values())}, "weight_map": weight_map}
        (d / HF_INDEX).write_text(json.dumps(index, indent=2))
    cfg = hf_config(model.args)
    cfg["dtype"] = str(next(model.parameters()).dtype).removeprefix("torch.")
    cfg["bos_token_id"] = tokenizer.specials.get("<|begin_of_text|>")
    cfg["eos_token_id"] = [tokenizer.specials[s] for s in ("<|end_of_text|>", "<|eot_id|>") if s in tokenizer.specials]
    (d / HF_CONFIG).write_text(json.dumps(cfg, indent=2))
    _save_tokenizer(tokenizer, d)
    write_guard_meta(d, guard_meta)
    return d


def _hf_weight_files(d: Path) -> dict[Path, list[str] | None]:
    """Weight file → tensor names it must hold (None: whatever it holds)."""
    if (d / HF_INDEX).exists():
        index = read_json(d / HF_INDEX)
        weight_map = index.get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise CheckpointError(f"{HF_INDEX} in {d} has no weight_map")
        files: dict[Path, list[str] | None] = {}
        for name, file in weight_map.items():
            if not isinstance(file, str) or Path(file).name != file:
                raise CheckpointError(f"{HF_INDEX} in {d} names an invalid weight file {file!r} for {name}")
            files.setdefault(d / file, []).append(name)  # type: ignore[union-attr]
        for f in files:
            if not f.exists():
                raise CheckpointError(f"{f.name}, listed in {HF_INDEX}, is missing from {d}")
        return files
    if (d / HF_WEIGHTS).exists():
        return {d / HF_WEIGHTS: None}
    if list(d.glob("*.bin")):
        raise CheckpointError(f"{d} has PyTorch .bin weights; pocketguard reads safetensors only (convert with "
                              "transformers: model.save_pretrained(dir, safe_serialization=True))")
    raise CheckpointError(f"{d} has {HF_CONFIG} but no {HF_WEIGHTS} or {HF_INDEX}")


# ---------------------------------------------------------------------------------------- Meta layout
def meta_ffn_dim(dim: int, multiple_of: int = 256, ffn_dim_multiplier: float | None = None) -> int:
    """Llama's SwiGLU width, computed exactly as Meta's model.py does."""
    hidden = int(2 * 4 * dim / 3)
    if ffn_dim_multiplier is not None:
        hidden = int(ffn_dim_multiplier * hidden)
    return multiple_of * ((hidden + multiple_of - 1) // multiple_of)


def meta_default_rope_scaling(dim: int) -> dict:
    """params.json says only `use_scaled_rope`. Llama 3.2 1B/3B (dim 2048/3072, and guards pruned from them)
    were trained with factor 32, Llama 3.1 and larger with factor 8, as their Hugging Face configs state
    (llama-models' reference code hard-codes 8). A `rope_scaling` entry in params.json overrides this."""
    return {"factor": 32.0 if dim <= 3072 else 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192}


def args_from_meta_params(params: dict, source: str = META_PARAMS) -> ModelArgs:
    """ModelArgs from Meta's params.json. Without a stored context length, Llama 3.1+ (scaled RoPE) gets
    131072 positions and Llama 3 gets 8192."""
    unsupported = sorted(k for k in ("vision_chunk_size", "vision_args", "vision_num_cross_attention_layers", "moe_args",
                                     "quantization_args", "lora_args") if params.get(k) not in (None, -1))
    if unsupported:
        raise CheckpointError(f"{source}: unsupported architecture (has {unsupported}); pocketguard loads text-only dense Llama")
    # Llama 4's attention and FFN options (llama-models' llama4/args.py): they change the computation without adding
    # a tensor, so a checkpoint with them would load in silence as the wrong model.
    llama4 = sorted(k for k in ("use_qk_norm", "nope_layer_interval", "attention_chunk_size", "attn_temperature_tuning", "ffn_exp")
                    if params.get(k) not in (None, False))
    if llama4:
        raise CheckpointError(f"{source}: unsupported Llama 4 features {llama4}; pocketguard loads Llama 3-style dense models")
    missing = [k for k in ("dim", "n_layers", "n_heads", "vocab_size") if k not in params]
    if missing:
        raise CheckpointError(f"{source} lacks {missing}")
    if params["vocab_size"] == -1:  # Llama 2's params.json: the size comes from its SentencePiece tokenizer
        raise CheckpointError(f"{source}: vocab_size -1 (a Llama 2 checkpoint?) is not supported")
    extras = _table(params, "pocketguard", source)
    scaled = config_bool(_given(params, "use_scaled_rope", False), "use_scaled_rope", source)
    dim = config_int(params["dim"], "dim", source)
    n_heads, kv_heads = config_int(params["n_heads"], "n_heads", source), params.get("n_kv_heads")
    scaling = _table(params, "rope_scaling", source) or (meta_default_rope_scaling(dim) if scaled else None)
    if scaled and not params.get("rope_scaling") and params.get("rope_scaling_factor") is not None:
        # llama-models' llama4 params name the factor (low frequency factor 1, original context 8192 as ever)
        scaling["factor"] = config_float(params["rope_scaling_factor"], "rope_scaling_factor", source, positive=True)
        if params.get("rope_high_freq_factor") is not None:
            scaling["high_freq_factor"] = config_float(params["rope_high_freq_factor"], "rope_high_freq_factor", source, positive=True)
    multiplier = params.get("ffn_dim_multiplier")
    values = dict(
        dim=dim, n_layers=config_int(params["n_layers"], "n_layers", source), n_heads=n_heads,
        n_kv_heads=n_heads if kv_heads is None else config_int(kv_heads, "n_kv_heads", source),
        vocab_size=config_int(params["vocab_size"], "vocab_size", source),
        ffn_dims=meta_ffn_dim(dim, config_int(_given(params, "multiple_of", 256), "multiple_of", source),
                              None if multiplier is None else config_float(multiplier, "ffn_dim_multiplier", source, positive=True)),
        norm_eps=config_float(_given(params, "norm_eps", 1e-5), "norm_eps", source),
        rope_theta=config_float(_given(params, "rope_theta", 500000.0), "rope_theta", source, positive=True),
        rope_scaling=_llama3_scaling(scaling, 8192, source) if scaling else None,
        max_seq_len=config_int(_given(extras, "max_seq_len", 131072 if scaled else 8192), "pocketguard.max_seq_len", source),
        extra=_table(extras, "extra", source, "pocketguard.extra"),
    )
    try:
        return ModelArgs(**values)
    except ValueError as e:  # heads and kv heads that do not fit together
        raise CheckpointError(f"{source}: inconsistent model config: {e}") from None


def meta_params(args: ModelArgs) -> dict:
    """params.json for a standard-shape model. Meta's loader ignores keys it does not know (`rope_scaling`,
    `pocketguard`) but fails on duplicates of its own build arguments, so max_seq_len goes under "pocketguard"."""
    if not is_standard(args) or args.head_dim * args.n_heads != args.dim:
        raise CheckpointError("the Meta layout holds standard shapes only (uniform MLPs, full vocabulary, "
                              "head_dim = dim / n_heads): call to_standard_shapes(model) first, or use save_hf")
    hidden = args.ffn_dims[0]
    multiple_of = gcd(hidden, 256)
    base = int(2 * 4 * args.dim / 3)
    # Meta has no width field: find a multiplier its formula turns into exactly `hidden` (+0.5 survives int()).
    multiplier = next((m for m in (None, round(hidden / base, 2), hidden / base, (hidden + 0.5) / base)
                       if meta_ffn_dim(args.dim, multiple_of, m) == hidden))
    params = {
        "dim": args.dim, "n_layers": args.n_layers, "n_heads": args.n_heads, "n_kv_heads": args.n_kv_heads,
        "vocab_size": args.vocab_size, "multiple_of": multiple_of, "ffn_dim_multiplier": multiplier,
        "norm_eps": args.norm_eps, "rope_theta": args.rope_theta, "use_scaled_rope": args.rope_scaling is not None,
    }
    if args.rope_scaling is not None:
        params["rope_scaling"] = dict(args.rope_scaling)
    params["pocketguard"] = {"max_seq_len": args.max_seq_len, **({"extra": args.extra} if args.extra else {})}
    return params


_COLUMN_PARALLEL = ("attention.wq.weight", "attention.wk.weight", "attention.wv.weight", "feed_forward.w1.weight",
                    "feed_forward.w3.weight", "output.weight")  # output rows split across ranks
_ROW_PARALLEL = ("attention.wo.weight", "feed_forward.w2.weight")  # input columns split across ranks


def merge_model_parallel(shards: list[dict[str, Tensor]], dim: int, names: list[str] | None = None) -> dict[str, Tensor]:
    """Meta's model-parallel consolidated.NN.pth → one state dict: column-parallel weights concatenate their
    rows, row-parallel ones their columns, the embedding its vocabulary (Llama 3) or width (Llama 2), and
    replicated tensors (norms) come from rank 0."""
    names = names or [f"shard {i}" for i in range(len(shards))]
    keys = set(shards[0])
    for sd, name in zip(shards[1:], names[1:]):
        if set(sd) != keys:
            raise CheckpointError(f"{name} holds other tensors than {names[0]}: {sorted(set(sd) ^ keys)[:5]}")
    out = {}
    for k in shards[0]:
        parts = [sd[k] for sd in shards]
        try:
            if k.endswith(_COLUMN_PARALLEL):
                out[k] = torch.cat(parts, 0)
            elif k.endswith(_ROW_PARALLEL):
                out[k] = torch.cat(parts, 1)
            elif k == "tok_embeddings.weight":
                out[k] = torch.cat(parts, 0 if parts[0].shape[1] == dim else 1)
            else:
                out[k] = parts[0]
        except (RuntimeError, IndexError):  # torch's errors for parts that do not concatenate
            raise CheckpointError(f"{k}: the shards' parts {[list(t.shape) for t in parts]} ({', '.join(names)}) do not "
                                  "fit together: shards of different models?") from None
    return out


def load_meta(path: str | Path, device: str | torch.device = "cpu", dtype: Dtype = torch.float32) -> Loaded:
    """Load params.json + consolidated.*.pth (model-parallel shards are merged) + tokenizer.model + guard.json.
    wq/wk are permuted to our rotate-half layout; the model is tied when output.weight equals the embedding."""
    d = _folder(path)
    args = args_from_meta_params(read_json(d / META_PARAMS), source=str(d / META_PARAMS))
    dtype = resolve_dtype(dtype, args, device, str(d))
    files = sorted(d.glob("consolidated.*.pth"))
    if not files:
        raise CheckpointError(f"{d} has {META_PARAMS} but no consolidated.*.pth weights")
    shards = [_torch_load(f) for f in files]
    state = shards[0] if len(shards) == 1 else merge_model_parallel(shards, args.dim, [f.name for f in files])
    state.pop("rope.freqs", None)  # precomputed by Llama 2 checkpoints; recomputed from params
    source = files[0].name if len(files) == 1 else f"{len(files)} merged consolidated.*.pth shards"
    emb, out = state.get("tok_embeddings.weight"), state.get("output.weight")
    if emb is not None and out is not None and emb.shape == out.shape and torch.equal(emb, out):
        args = replace(args, tie_embeddings=True)
        state.pop("output.weight")
    model = assemble(args, state, dict.fromkeys(state, source), device, dtype, lambda k: k, META_PARAMS,
                      permute={f"layers.{i}.attention.{w}.weight": h for i in range(args.n_layers)
                               for w, h in (("wq", args.n_heads), ("wk", args.n_kv_heads))})
    if not (d / META_TOKENIZER).exists():
        raise CheckpointError(f"Meta checkpoint {d} has no {META_TOKENIZER} (the tiktoken tokenizer belongs beside {META_PARAMS})")
    tokenizer = _load_tokenizer(d / META_TOKENIZER, model.args)
    return Loaded(model, tokenizer, {**read_guard_meta(d), "layout": "meta"})


def save_meta(model: Transformer, tokenizer: Tokenizer, directory: str | Path, guard_meta: dict | None = None) -> Path:
    """Write params.json, consolidated.00.pth (Meta names, interleaved q/k), tokenizer.model and guard.json."""
    params = meta_params(model.args)
    if tokenizer.kind != "tiktoken":
        raise CheckpointError(f"the Meta layout needs a tiktoken {META_TOKENIZER}; this tokenizer is {tokenizer.kind} "
                              "(tokenizer.json): use save_hf")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    _check_vocab(tokenizer, model.args, str(d))
    for old in d.glob("consolidated.*.pth"):
        old.unlink()
    torch.save({k: v.detach().cpu().contiguous() for k, v in meta_state_dict(model).items()}, d / "consolidated.00.pth")
    (d / META_PARAMS).write_text(json.dumps(params, indent=2))
    _save_tokenizer(tokenizer, d)
    write_guard_meta(d, guard_meta)
    return d


def _torch_load(file: Path) -> dict[str, Tensor]:
    try:
        sd = torch.load(file, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:  # torch raises RuntimeError, UnpicklingError, EOFError, ... for damaged files
        raise CheckpointError(f"{file.name} in {file.parent} is corrupt or not a PyTorch zip checkpoint: {e}") from None
    if not isinstance(sd, dict) or not all(isinstance(v, Tensor) for v in sd.values()):
        raise CheckpointError(f"{file.name} is not a state dict of tensors")
    return sd


# ---------------------------------------------------------------------------------- standard shapes
def is_standard(args: ModelArgs) -> bool:
    """Shapes stock Llama code builds: one MLP width, full-vocabulary embedding and head."""
    return len(set(args.ffn_dims)) == 1 and args.output_token_ids is None and args.input_token_ids is None


def to_standard_shapes(model: Transformer) -> Transformer:
    """A full-shape copy of a compressed model, for exports (transformers, GGUF); `model` itself if standard.

    - MLPs are zero-padded to the widest layer: a padded neuron has zero gate, up and down weights and adds
      exactly 0.
    - The embedding gets every vocabulary row; ids the pruned embedding dropped get the fallback row, which
      is what the pruned model reads for them: exact for every id.
    - The head gets every vocabulary row: kept rows go back to their ids, and every dropped row is the *mean
      of the kept rows*. Llama's head has no bias, so no row can pin a logit to -inf (zero rows would score 0,
      above any negative kept logit); a mean row scores the mean of the kept logits, which never exceeds the
      best one. Greedy decoding, and decoding restricted to kept ids (the guard's constrained answers), are
      therefore exactly the pruned model's; full-vocabulary softmax probabilities are not (dropped ids get
      some mass).
    """
    a = model.args
    if is_standard(a):
        return model
    width = max(a.ffn_dims)
    full = replace(a, ffn_dims=width, output_token_ids=None, input_token_ids=None, embed_fallback_id=None)
    sd = {}
    for k, v in model.state_dict().items():
        v = v.detach()
        if k.endswith(("feed_forward.w1.weight", "feed_forward.w3.weight")):
            v = torch.cat([v, v.new_zeros(width - v.shape[0], v.shape[1])], 0)
        elif k.endswith("feed_forward.w2.weight"):
            v = torch.cat([v, v.new_zeros(v.shape[0], width - v.shape[1])], 1)
        elif k == "tok_embeddings.weight" and model.input_id_map is not None:
            v = v[model.input_id_map]  # exactly the row the pruned model reads for each id
        elif k == "output.weight" and model.output_token_ids is not None:
            head = v.float().mean(0).to(v.dtype).expand(a.vocab_size, -1).clone()
            head[model.output_token_ids] = v
            v = head
        sd[k] = v.clone()
    out = skeleton(full, next(model.parameters()).device)
    try:
        assign(out, sd)
    except RuntimeError as e:
        raise CheckpointError(f"to_standard_shapes needs a float Transformer (dequantize first): {e}") from None
    return out.train(model.training)


# ------------------------------------------------------------------------------------------- helpers
def _folder(path: str | Path) -> Path:
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"checkpoint not found: {p}")
    return p if p.is_dir() else p.parent


def _load_tokenizer(path: Path, args: ModelArgs) -> Tokenizer:
    try:
        tok = Tokenizer.load(path)
    except TokenizerError as e:
        raise CheckpointError(f"checkpoint tokenizer: {e}") from None
    _check_vocab(tok, args, str(path))
    return tok


def _check_vocab(tok: Tokenizer, args: ModelArgs, where: str) -> None:
    """Token ids index the model's embedding, so the tokenizer's highest id (added and special tokens included)
    must be below its vocab_size. Not the token count: a vocabulary with gaps in its ids, or with added tokens at
    high ids, has fewer tokens than its highest id + 1."""
    if tok.kind == "tiktoken" and tok.vocab_size != args.vocab_size:
        # A tokenizer.model lists the base vocabulary only; the control tokens are numbered after it. With another
        # count than the model's (a file cut short, another model's), `<|eot_id|>` & co. would be other rows of the
        # embedding than the model was trained with. Meta's reference code asserts the same equality.
        raise CheckpointError(f"{where}: the tiktoken tokenizer has {tok.vocab_size} tokens (its base vocabulary and 256 "
                              f"special tokens) but the model's vocabulary has {args.vocab_size}: they do not belong together")
    name, top = tok.highest_token()
    if top >= args.vocab_size:
        raise CheckpointError(f"{where}: the tokenizer's token {name!r} has id {top}, outside the model's vocabulary of "
                              f"{args.vocab_size} (ids 0..{args.vocab_size - 1}): they do not belong together")


def _save_tokenizer(tok: Tokenizer, d: Path) -> None:
    """Copy the tokenizer file in (unless it is already there) and drop the other kind's stale file, which
    `Tokenizer.load` might otherwise prefer."""
    name, other = ("tokenizer.json", "tokenizer.model") if tok.kind == "hf" else ("tokenizer.model", "tokenizer.json")
    target = d / name
    if not (tok.path is not None and target.exists() and target.samefile(tok.path)):
        tok.save(d)
    (d / other).unlink(missing_ok=True)


def _owned(t: Tensor) -> Tensor:
    """A contiguous CPU tensor with its own storage (safetensors refuses tensors that share memory)."""
    t = t.detach().cpu().contiguous()
    return t if t.untyped_storage().nbytes() == t.nbytes else t.clone()
