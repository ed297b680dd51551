"""GGUF checkpoints in: a llama.cpp `.gguf` file (arch `llama`) loaded into our `Transformer` and a tokenizer.

    load_gguf(path)          -> checkpoint.Loaded (weights dequantized to float, tokenizer from the metadata;
                                with keep_quantized, Q4_0 / Q8_0 block linears kept as int4 / int8 kernels)
    add_guard_tokens(loaded) -> the same model with the guard prompt's Llama 3 control tokens added

* Weights: every type `gguf.quants.dequantize` knows (F32/F16/BF16, Q4_0/Q4_1/Q5_x/Q8_0, the K-quants, the
  IQ types), dequantized one tensor at a time from the memory-mapped file, so peak memory is the float model
  plus one tensor. The file's header is parsed by `read_gguf` (see there why not `gguf.GGUFReader`). q/k rows are un-permuted from llama.cpp's interleaved RoPE pairs to our rotate-half layout
  (the inverse of convert_hf_to_gguf's `LlamaModel.permute`, i.e. `weights.permute_to_hf`).
* Tokenizer: `tokenizer.ggml.model = "gpt2"` (byte-level BPE) rebuilt as a `tokenizers.Tokenizer`, with
  the pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre` (llama-vocab.cpp), CONTROL tokens as special
  added tokens and USER_DEFINED ones as plain added tokens (as transformers' GGUF converter does).
  SentencePiece vocabularies (`"llama"`) are refused: pocketguard's prompt is byte-level BPE only.
* A guard needs the Llama 3 template tokens (`tokenizer.REQUIRED_SPECIALS`). A base model without them
  (SmolLM2, ...) loads with `require_guard_tokens=False` and gets them from `add_guard_tokens`, which is
  what `pocketguard convert X.gguf OUT --add-guard-tokens` does before training a guard on it.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple, get_args

import numpy as np
import torch

from .kernels import linear_class
from .loaded import CheckpointError, Loaded, check_guard_meta
from .model import ModelArgs, rope_frequencies
from .tokenizer import REQUIRED_SPECIALS, HFTokenizer, TokenizerError, bytes_to_unicode, llama3_pre_tokenizer
from .weights import assemble, config_float, config_int, fits_float32, layer_order, permute_to_hf, resolve_dtype

# GGUF tensor name -> our (Meta) name; blocks are `blk.N.<name>`.
_TOP = {"token_embd.weight": "tok_embeddings.weight", "output_norm.weight": "norm.weight", "output.weight": "output.weight"}
_BLOCK = {
    "attn_q": "attention.wq", "attn_k": "attention.wk", "attn_v": "attention.wv", "attn_output": "attention.wo",
    "ffn_gate": "feed_forward.w1", "ffn_down": "feed_forward.w2", "ffn_up": "feed_forward.w3",
    "attn_norm": "attention_norm", "ffn_norm": "ffn_norm",
}
_GGUF_TOP = {v: k for k, v in _TOP.items()}
_GGUF_BLOCK = {v: k for k, v in _BLOCK.items()}

# tokenizer.ggml.pre -> how llama.cpp splits text before BPE (llama-vocab.cpp); values are builders below.
_LLAMA3_PRES = ("llama3", "llama-v3", "llama-bpe")
_GPT2_PRES = ("gpt2", "mpt", "olmo")
_DIGIT_PRES = ("smollm", "starcoder", "refact")  # each digit on its own, then GPT-2's split
_TOKEN_CONTROL, _TOKEN_USER_DEFINED = 3, 4
GUARD_TOKENS = (*REQUIRED_SPECIALS, "<|end_of_text|>")


def gguf_key(name: str) -> str:
    """Our parameter name -> its GGUF tensor name (for error messages)."""
    if name in _GGUF_TOP:
        return _GGUF_TOP[name]
    parts = name.split(".")
    if parts[0] == "layers" and name.endswith(".weight"):
        return f"blk.{parts[1]}.{_GGUF_BLOCK.get('.'.join(parts[2:-1]), '.'.join(parts[2:-1]))}.weight"
    return name


def _our_key(name: str) -> str | None:
    if name in _TOP:
        return _TOP[name]
    parts = name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[3] == "weight" and parts[2] in _BLOCK:
        return f"layers.{parts[1]}.{_BLOCK[parts[2]]}.weight"
    return None


# ------------------------------------------------------------------------------------------- reading
class GGUFTensor(NamedTuple):
    name: str
    type: object  # gguf.GGMLQuantizationType
    shape: tuple[int, ...]  # as GGUF lists it: innermost (contiguous) dimension first
    data: np.ndarray  # the raw bytes, [rows, bytes per row], a view of the memory-mapped file


class GGUFFile(NamedTuple):
    fields: dict  # metadata; arrays as lists
    tensors: list[GGUFTensor]


_INT64_MAX = 2**63 - 1  # what numpy and torch index with, and llama.cpp's bound on a tensor's element count


def _check_shape(path: Path, name: str, shape: tuple[int, ...]) -> None:
    """Refuse a header shape too large to index. Sizes are exact Python ints here: np.prod wraps silently past
    int64, so a corrupt header's huge dimensions could multiply to a small (even 0) size and pass the file-size
    check. A zero dimension counts as 1: it empties the tensor but still has to fit beside the others."""
    if math.prod(int(n) or 1 for n in shape) > _INT64_MAX:
        raise CheckpointError(f"{path} is corrupt: tensor {name} has shape {list(shape)}, over 2**63 - 1 values")


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def read_gguf(path: str | Path) -> GGUFFile:
    """Metadata and tensor index of a little-endian GGUF (v2/v3), with tensor bytes memory-mapped.

    Hand-written rather than `gguf.GGUFReader` (the format is a short header of length-prefixed fields):
    GGUFReader builds numpy views for every element of every array, ~25 s for a Llama 3 vocabulary (400k
    token and merge strings), where this takes well under a second. Dequantization stays gguf's."""
    import struct

    import gguf

    path = Path(path)
    data = np.memmap(path, dtype=np.uint8, mode="r") if path.stat().st_size else np.zeros(0, np.uint8)
    buf, pos = memoryview(data), 0

    def take(fmt: str):
        nonlocal pos
        try:
            (v,) = struct.unpack_from(fmt, buf, pos)
        except struct.error:
            raise CheckpointError(f"{path} is truncated or corrupt: its header ends at byte {len(buf)}") from None
        pos += struct.calcsize(fmt)
        return v

    def string() -> str:
        nonlocal pos
        n = take("<Q")
        if pos + n > len(buf):
            raise CheckpointError(f"{path} is truncated or corrupt: a {n}-byte string at byte {pos} runs past its end")
        pos += n
        return bytes(buf[pos - n:pos]).decode("utf-8", errors="replace")

    def value(vtype: int):
        nonlocal pos
        if vtype == _STRING:
            return string()
        if vtype == _ARRAY:
            etype, n = take("<I"), take("<Q")
            if etype in _SCALARS:  # numeric arrays in one go
                dt = np.dtype(_SCALARS[etype].replace("?", "b1"))
                if pos + n * dt.itemsize > len(buf):
                    raise CheckpointError(f"{path} is truncated or corrupt: an array at byte {pos} runs past its end")
                out = np.frombuffer(buf, dt, n, pos).tolist()
                pos += n * dt.itemsize
                return out
            return [value(etype) for _ in range(n)]
        if vtype not in _SCALARS:
            raise CheckpointError(f"{path} is corrupt: unknown metadata value type {vtype} at byte {pos}")
        return take(_SCALARS[vtype])

    if take("<I") != gguf.GGUF_MAGIC:
        raise CheckpointError(f"{path} is not a GGUF file (no GGUF magic)")
    version = take("<I")
    if version not in (2, 3):
        raise CheckpointError(f"{path}: GGUF version {version} is not supported (2 and 3 are; big-endian files are not)")
    n_tensors, n_fields = take("<Q"), take("<Q")
    fields = {}
    for _ in range(n_fields):
        key = string()
        fields[key] = value(take("<I"))
    infos = []
    for _ in range(n_tensors):
        name, n_dims = string(), take("<I")
        shape = tuple(take("<Q") for _ in range(n_dims))
        infos.append((name, shape, take("<I"), take("<Q")))
    align = fields.get("general.alignment", gguf.GGUF_DEFAULT_ALIGNMENT)
    # GGUF requires a power of two (llama.cpp refuses others); a corrupt 0 divided by zero below
    if isinstance(align, bool) or not isinstance(align, int) or align <= 0 or align & (align - 1):
        raise CheckpointError(f"{path}: general.alignment must be a power of two, got {align!r}")
    start = -(-pos // align) * align
    tensors = []
    for name, shape, type_id, offset in infos:
        try:
            qtype = gguf.GGMLQuantizationType(type_id)
            block, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        except (ValueError, KeyError):
            raise CheckpointError(f"{path}: tensor {name} has unknown GGML type id {type_id}") from None
        _check_shape(path, name, shape)
        cols, rows = (shape[0], math.prod(shape[1:])) if shape else (1, 1)
        if cols % block:
            raise CheckpointError(f"{path}: tensor {name} rows of {cols} values are not whole {qtype.name} blocks")
        row_bytes = cols // block * block_bytes
        begin, end = start + offset, start + offset + rows * row_bytes
        if end > len(buf):
            raise CheckpointError(f"{path} is truncated: tensor {name} ends at byte {end}, the file has {len(buf)}")
        tensors.append(GGUFTensor(name, qtype, shape, data[begin:end].reshape(rows, row_bytes)))
    return GGUFFile(fields, tensors)


def _field(f: GGUFFile, source: str, key: str, kind: object = object, default=None, required: bool = False):
    """Metadata `key` (`default` where absent), which must be a `kind`: str, or an array as list[str] / list[int].
    A corrupt or hand-made file's value of another type is a CheckpointError naming the file and key, not a
    TypeError where the value is used."""
    if key not in f.fields:
        if required:
            raise CheckpointError(f"{source}: GGUF metadata lacks {key}")
        return default
    value = f.fields[key]
    items = get_args(kind)  # list[str] -> (str,)
    ok = (isinstance(value, list) and all(_is(v, items[0]) for v in value)) if items else _is(value, kind)
    if not ok:
        want = f"an array of {_NAMES[items[0]]}s" if items else f"a {_NAMES[kind]}"
        shown = repr(value)
        raise CheckpointError(f"{source}: GGUF metadata {key} must be {want}, got {shown[:57] + '...' if len(shown) > 60 else shown}")
    return value


_NAMES = {str: "string", int: "integer"}


def _is(value: object, kind) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))  # a GGUF bool is no integer


def args_from_gguf(reader: GGUFFile, source: str) -> ModelArgs:
    """ModelArgs from `llama.*` metadata; the vocabulary size is the token list's length."""
    arch = _field(reader, source, "general.architecture", required=True)
    if arch != "llama":
        raise CheckpointError(f"{source}: unsupported architecture {arch!r}; pocketguard loads Llama GGUFs only")
    k = lambda name, **kw: _field(reader, source, f"llama.{name}", **kw)  # noqa: E731

    def size(name: str, default: int | None = None, required: bool = False) -> int | None:
        v = k(name, required=required)
        return default if v is None else config_int(v, f"llama.{name}", source)

    def real(name: str, default: float, positive: bool = False) -> float:
        return config_float(k(name, default=default), f"llama.{name}", source, positive)

    n_layers = size("block_count", required=True)

    def per_layer(name: str, uniform: bool, **kw):
        """A count llama.cpp also reads as one value per block (`get_key_or_arr`): an int, or a list of n_layers."""
        v = k(name, **kw)
        if not isinstance(v, list):
            return config_int(v, f"llama.{name}", source)
        if len(v) != n_layers:
            raise CheckpointError(f"{source}: llama.{name} lists {len(v)} values for {n_layers} blocks")
        v = [config_int(x, f"llama.{name}[{i}]", source) for i, x in enumerate(v)]
        if uniform and len(set(v)) > 1:
            raise CheckpointError(f"{source}: per-block llama.{name} {v} is not supported (pocketguard's blocks share one shape)")
        return v[0] if uniform else v

    dim, n_heads = size("embedding_length", required=True), per_layer("attention.head_count", True, required=True)
    rotary = size("rope.dimension_count")
    head_dim = size("attention.key_length", default=rotary or dim // n_heads)
    if rotary is not None and rotary != head_dim:
        raise CheckpointError(f"{source}: partial rotary embeddings are not supported")
    if k("rope.scaling.type", default="none") not in ("none",):
        raise CheckpointError(f"{source}: unsupported rope scaling {k('rope.scaling.type')!r} "
                              "(pocketguard implements Llama 3's, stored as a rope_freqs tensor)")
    # llama.cpp applies a scaling factor written without a type as linear scaling (its default type); only an
    # explicit type "none" switches it off.
    factor = real("rope.scaling.factor", real("rope.scale_linear", 0.0))
    if k("rope.scaling.type") is None and factor not in (0.0, 1.0):
        raise CheckpointError(f"{source}: unsupported rope scaling: factor {factor} without a type, which llama.cpp "
                              "applies as linear scaling (pocketguard implements Llama 3's, stored as a rope_freqs tensor)")
    if k("expert_count", default=0):
        raise CheckpointError(f"{source}: mixture-of-experts Llama GGUFs are not supported")
    tokens = _field(reader, source, "tokenizer.ggml.tokens", list[str])
    values = dict(
        dim=dim, n_layers=n_layers, n_heads=n_heads, n_kv_heads=per_layer("attention.head_count_kv", True, default=n_heads),
        vocab_size=len(tokens) if tokens is not None else size("vocab_size", required=True),
        ffn_dims=per_layer("feed_forward_length", False, required=True),
        norm_eps=real("attention.layer_norm_rms_epsilon", 1e-5), rope_theta=real("rope.freq_base", 10000.0, positive=True),
        max_seq_len=size("context_length", default=2048), head_dim=head_dim,
        tie_embeddings=not any(t.name == "output.weight" for t in reader.tensors),
    )
    try:
        return ModelArgs(**values)
    except ValueError as e:  # heads and kv heads that do not fit together
        raise CheckpointError(f"{source}: inconsistent llama metadata: {e}") from None


def _dequantize(t: GGUFTensor, source: str) -> torch.Tensor:
    """One GGUF tensor as float32 in PyTorch's [rows, cols] order."""
    import gguf

    try:
        a = gguf.quants.dequantize(t.data, t.type)
    except NotImplementedError:
        raise CheckpointError(f"{source}: tensor {t.name} has type {t.type.name}, which pocketguard "
                              "(gguf.quants) cannot dequantize") from None
    if not np.issubdtype(a.dtype, np.floating):
        raise CheckpointError(f"{source}: tensor {t.name} has integer type {t.type.name}; weights must be float")
    shape = tuple(int(n) for n in reversed(t.shape))  # GGUF lists dimensions innermost first
    if a.size != math.prod(shape):
        raise CheckpointError(f"{source}: tensor {t.name} holds {a.size} values for its shape {list(shape)}")
    if not a.flags.writeable:  # F32/F16 come back as views of the read-only mapped file
        a = a.copy()
    return torch.from_numpy(a.astype(np.float32, copy=False).reshape(shape))


# llama.cpp block types that are exactly pocketguard's group-32 symmetric codes with fp16 scales (ggml-common.h):
# Q4_0 is an fp16 d and 16 bytes holding element j in the low nibble of byte j and element j + 16 in its high
# nibble, w = d·(q − 8); Q8_0 is an fp16 d and 32 int8, w = d·q. Such tensors can run in `kernels.Int4WeightLinear`
# / `Int8WeightLinear` as they are: the same weights in ~1/7 (int4) or ~1/3.8 (int8) of float32's memory.
_CODES = {"Q4_0": 4, "Q8_0": 8}
_LINEAR = re.compile(r"^layers\.\d+\.(attention\.w[qkvo]|feed_forward\.w[123])\.weight$")


def _codes(t: GGUFTensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A Q4_0 / Q8_0 tensor's integer codes [rows, cols] (int8, in [-8, 7] or [-128, 127]) and its fp16 scales
    [rows, cols / 32], read from the blocks without dequantizing."""
    bits = _CODES[t.type.name]
    rows, cols = (int(n) for n in reversed(t.shape))
    blocks = np.asarray(t.data).reshape(rows * cols // 32, 2 + 32 * bits // 8)
    d = np.ascontiguousarray(blocks[:, :2]).view(np.float16)
    qs = blocks[:, 2:]
    q = (np.concatenate([qs & 15, qs >> 4], axis=1).astype(np.int8) - 8) if bits == 4 else np.ascontiguousarray(qs).view(np.int8)
    return torch.from_numpy(q.reshape(rows, cols)), torch.from_numpy(d.reshape(rows, cols // 32).copy())


def _llama3_scaling(factors: torch.Tensor, args: ModelArgs, source: str) -> dict | None:
    """Llama 3 RoPE scaling from llama.cpp's `rope_freqs` tensor (one divisor per frequency). The tensor is
    what convert_hf_to_gguf computed from `rope_scaling`; the parameters are recovered by matching it with
    Llama 3's form (factor = the largest divisor, low/high frequency factors 1 and 4, the original context a
    power of two: 8192 for Llama 3.1-3.3), and checked by recomputing every divisor."""
    plain = rope_frequencies(replace(args, rope_scaling=None))
    if factors.shape != plain.shape:
        raise CheckpointError(f"{source}: rope_freqs has shape {list(factors.shape)}, the heads need {list(plain.shape)}")
    if bool((factors == 1).all()):
        return None
    factor = float(factors.max())  # (a tensor of largest divisor 1 but others not 1 matches none below: an error)
    for orig in (2 ** i for i in range(4, 21)):
        scaling = {"factor": factor, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": orig}
        if torch.allclose(plain / rope_frequencies(replace(args, rope_scaling=scaling)), factors, rtol=1e-4):
            return scaling
    raise CheckpointError(f"{source}: rope_freqs matches no Llama 3 RoPE scaling pocketguard implements")


def load_gguf(path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype | str = torch.float32,
              require_guard_tokens: bool = True, keep_quantized: bool | str = False) -> Loaded:
    """Load a Llama GGUF file: float weights, the tokenizer its metadata describes, `meta["layout"] = "gguf"`
    (plus the policy when pocketguard exported the file). With `require_guard_tokens` a vocabulary without the
    guard prompt's control tokens is an error that says how to add them.

    `keep_quantized`: the decoder blocks' Q4_0 / Q8_0 linears become `Int4WeightLinear` / `Int8WeightLinear`
    holding the file's own codes and scales (the same weights as dequantized, the matmul tiled; a Llama Guard
    3-8B Q4_0's blocks then take ~3.9 GB, not 14 in bfloat16); every other tensor is dequantized as before.
    `"auto"` keeps them only where the float32 model would not fit in 3/4 of the free memory: float32 runs
    faster (the tiled int4 path took 1.5x the time of float32 for the shipped guard's shape on this CPU). For
    inference (`Guard.load` asks for "auto"); a model to prune or train wants float weights, the default."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"GGUF file not found: {path}")
    source = path.name
    reader = read_gguf(path)
    args = args_from_gguf(reader, source)
    if keep_quantized == "auto":
        keep_quantized = not fits_float32(args, device)
    kept = {t.name for t in reader.tensors if keep_quantized and t.type.name in _CODES and len(t.shape) == 2
            and _LINEAR.match(_our_key(t.name) or "")}
    dtype = resolve_dtype(dtype, args, device, source,
                          kept_params=sum(math.prod(int(n) for n in t.shape) for t in reader.tensors if t.name in kept))
    tokenizer = gguf_tokenizer(reader, source)
    missing = [s for s in REQUIRED_SPECIALS if s not in tokenizer.specials]
    if require_guard_tokens and missing:
        raise CheckpointError(f"{source}: the vocabulary lacks the guard prompt's control tokens {missing}; "
                              f"add them with `pocketguard convert {path} OUT_DIR --add-guard-tokens` and train a guard "
                              "from OUT_DIR")
    tensors, origin, scaling, quantized = {}, {}, None, {}
    heads = {"wq": args.n_heads, "wk": args.n_kv_heads}
    for t in reader.tensors:
        if t.name == "rope_freqs.weight":
            scaling = _llama3_scaling(_dequantize(t, source), args, source)
            continue
        ours = _our_key(t.name)
        if ours is None:
            raise CheckpointError(f"{source}: unexpected tensor {t.name} (not part of a Llama model)")
        if ours in tensors or ours in quantized:
            raise CheckpointError(f"{source}: tensor {t.name} appears twice")
        if t.name in kept:
            q, scales = _codes(t)
            if (h := heads.get(ours.split(".")[-2])) is not None:  # un-permute q/k rows: codes and scales alike
                q, scales = permute_to_hf(q, h), permute_to_hf(scales, h)
            lin = linear_class(_CODES[t.type.name], None)(q.shape[1], q.shape[0], 32, torch.float16)
            lin.set_codes(q, scales)
            quantized[ours], origin[ours] = lin, source
            continue
        w = _dequantize(t, source).to(dtype)  # one tensor at a time: only the float model stays resident
        tensors[ours], origin[ours] = w, source
    args = replace(args, rope_scaling=scaling)
    model = assemble(args, dict(sorted(tensors.items(), key=lambda kv: layer_order(kv[0]))), origin, device, dtype,
                      gguf_key, source, permute={f"layers.{i}.attention.{w}.weight": h for i in range(args.n_layers)
                                                 for w, h in heads.items()}, quantized=quantized)
    meta = {"layout": "gguf"}
    if quantized:
        meta["kept_quantized"] = len(quantized)
    policy = _field(reader, source, "pocketguard.policy_toml", str)
    if policy:
        meta["policy"] = _policy_dict(policy, source)
    threshold = _field(reader, source, "pocketguard.threshold")
    if threshold is not None:
        meta["threshold"] = round(config_float(threshold, "pocketguard.threshold", source), 6)  # stored as float32
        check_guard_meta(meta, source)
    return Loaded(model, tokenizer, meta)


def _policy_dict(text: str, source: str) -> dict:
    """The policy a pocketguard GGUF export embedded, as guard.json holds it."""
    import tomllib

    from .policy import Policy, PolicyError

    try:
        data = tomllib.loads(text)
        Policy.from_dict(data, source=f"{source}: pocketguard.policy_toml")
    except (tomllib.TOMLDecodeError, PolicyError) as e:
        raise CheckpointError(f"{source}: pocketguard.policy_toml is not a valid policy: {e}") from None
    return data


# ----------------------------------------------------------------------------------------- tokenizer
def _pre_tokenizer(pre: str, source: str):
    from tokenizers import pre_tokenizers

    if pre in _LLAMA3_PRES:
        return llama3_pre_tokenizer()
    if pre in _GPT2_PRES:
        return pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in _DIGIT_PRES:
        return pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
    raise CheckpointError(f"{source}: unsupported tokenizer.ggml.pre {pre!r} (pocketguard knows "
                          f"{sorted(_LLAMA3_PRES + _GPT2_PRES + _DIGIT_PRES)})")


def gguf_tokenizer(reader: GGUFFile, source: str) -> HFTokenizer:
    """The byte-level BPE tokenizer `tokenizer.ggml.*` describes, as an HFTokenizer (guard tokens not required)."""
    from tokenizers import AddedToken, decoders, models
    from tokenizers import Tokenizer as _Tok


    kind = _field(reader, source, "tokenizer.ggml.model", required=True)
    if kind != "gpt2":
        raise CheckpointError(f"{source}: tokenizer.ggml.model is {kind!r}; pocketguard reads byte-level BPE "
                              "(\"gpt2\") vocabularies only, not SentencePiece (\"llama\") or others")
    tokens = _field(reader, source, "tokenizer.ggml.tokens", list[str], required=True)
    types = _field(reader, source, "tokenizer.ggml.token_type", list[int], default=[1] * len(tokens))
    merges = _field(reader, source, "tokenizer.ggml.merges", list[str], required=True)
    pre = _field(reader, source, "tokenizer.ggml.pre", str, default="default")
    pre_tok = _pre_tokenizer(pre, source)
    if len(types) != len(tokens):
        raise CheckpointError(f"{source}: {len(tokens)} tokens but {len(types)} token types")
    # A byte-level vocabulary spells tokens in GPT-2's byte alphabet; one spelled otherwise (e.g. with a
    # plain space) is respelled the way transformers' GGUF converter does, so both tokenizers agree.
    spelling = bytes_to_unicode()
    alphabet = set(spelling.values())
    vocab = {}
    for i, tok in enumerate(tokens):
        vocab.setdefault(tok if set(tok) <= alphabet else "".join(spelling[b] for b in tok.encode("utf-8")), i)
    try:
        # llama.cpp's Llama 3 tokenizer looks a whole pre-token up before merging (as tiktoken, and the
        # `ignore_merges` of Meta's tokenizer.json); the GPT-2-style ones always merge.
        bpe = models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges], ignore_merges=pre in _LLAMA3_PRES)
    except Exception as e:  # tokenizers raises a bare Exception for merges outside the vocabulary
        raise CheckpointError(f"{source}: the BPE vocabulary and merges do not fit together: {e}") from None
    tok = _Tok(bpe)
    tok.pre_tokenizer = pre_tok
    tok.decoder = decoders.ByteLevel()
    control = [AddedToken(t, normalized=False, special=True) for t, ty in zip(tokens, types)
               if ty == _TOKEN_CONTROL and set(t) <= alphabet]
    user = [AddedToken(t, normalized=False, special=False) for t, ty in zip(tokens, types)
            if ty == _TOKEN_USER_DEFINED and set(t) <= alphabet]  # others are respelled vocabulary entries
    tok.add_special_tokens(control)
    tok.add_tokens(user)
    if tok.get_vocab_size(with_added_tokens=True) != len(vocab):
        raise CheckpointError(f"{source}: the token list has repeated tokens or malformed control tokens")
    return HFTokenizer.from_tokenizer(tok, require_specials=False)


# -------------------------------------------------------------------------------------- guard tokens
def add_guard_tokens(loaded: Loaded) -> Loaded:
    """Add the guard prompt's Llama 3 control tokens (`REQUIRED_SPECIALS` and `<|end_of_text|>`) that the
    vocabulary lacks: special added tokens in the tokenizer, new embedding (and untied head) rows. The model
    scores every old token exactly as before. `loaded` is left as it was; the new model shares its unchanged
    weights (no second copy of a large model), so discard `loaded` rather than train both."""
    old = loaded.tokenizer
    if not isinstance(old, HFTokenizer):
        raise CheckpointError(f"add_guard_tokens needs a tokenizer.json-style tokenizer, not {old.kind}")
    missing = [t for t in GUARD_TOKENS if t not in old.specials]
    if not missing:
        return loaded
    from tokenizers import AddedToken

    tok = old.backend_copy()
    tok.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in missing])
    try:
        tokenizer = HFTokenizer.from_tokenizer(tok)
    except TokenizerError as e:  # should tokenizers decline to make one of them special
        raise CheckpointError(f"cannot add the guard tokens: {e}") from None
    model, a = loaded.model, loaded.model.args
    if a.output_token_ids is not None or a.input_token_ids is not None:
        raise CheckpointError("add_guard_tokens needs a model with its full vocabulary (not a pruned one)")
    # Ids past the old tokenizer are new (or untrained padding rows of the model); a name the vocabulary
    # already had as a plain token keeps its id and its trained row.
    new_ids = [i for i in (tokenizer.specials[t] for t in missing) if i >= old.vocab_size]
    vocab = max([a.vocab_size, *(i + 1 for i in new_ids)])
    state = {k: v.detach() for k, v in model.state_dict().items()}
    for name in ("tok_embeddings.weight",) + (() if a.tie_embeddings else ("output.weight",)):
        w = state[name]
        # New rows start at the mean of the existing ones, the usual initialisation for added tokens: an
        # in-distribution vector (as opposed to zeros or random noise) whose head logit is the average
        # logit, so the model's outputs barely move before training teaches the new tokens.
        grown = torch.cat([w, w.new_zeros(vocab - w.shape[0], w.shape[1])])
        grown[new_ids] = w.float().mean(0).to(w.dtype)
        state[name] = grown
    if a.tie_embeddings:
        state.pop("output.weight", None)
    args = replace(a, vocab_size=vocab)
    dev, dt = state["tok_embeddings.weight"].device, state["tok_embeddings.weight"].dtype
    grown_model = assemble(args, state, dict.fromkeys(state, "add_guard_tokens"), dev, dt, gguf_key, "add_guard_tokens")
    return Loaded(grown_model, tokenizer, dict(loaded.meta))

