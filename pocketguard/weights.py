"""Building our `Transformer` from a layout's named tensors — shared by every reader (HF, Meta, GGUF): the
model skeleton on the meta device, shape and dtype checks whose errors name the tensors as the file does,
tied heads kept tied, the RoPE row permutes between Meta's interleaved and HF's rotate-half layout, and the
checks of the config values (config.json, params.json, GGUF metadata) the shapes come from."""

from __future__ import annotations

import contextlib
import math
import os
import re
import warnings
from dataclasses import replace
from pathlib import Path

import torch
from torch import Tensor, nn

from .loaded import CheckpointError
from .model import ModelArgs, Transformer


def permute_to_hf(w: Tensor, n_heads: int) -> Tensor:
    """wq/wk rows from Meta's interleaved RoPE pairs (2i, 2i+1) to the rotate-half pairs (i, i + head_dim/2),
    per head: the permute of transformers' convert_llama_weights_to_hf.py."""
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(1, 2).reshape(rows, cols)


def permute_to_meta(w: Tensor, n_heads: int) -> Tensor:
    """Inverse of `permute_to_hf`."""
    rows, cols = w.shape
    return w.reshape(n_heads, 2, rows // n_heads // 2, cols).transpose(1, 2).reshape(rows, cols)


@contextlib.contextmanager
def _params_on_meta():
    """Modules built with their parameters on the meta device, never allocated nor initialised; buffers stay
    real. (Not `with torch.device("meta")`: that computes the rotary tables on meta too, and the first op on a meta
    tensor (`normal_` initialising a weight, a division) runs torch's Python reference, whose first call imports
    torch._dynamo: 1.0-1.3 of the 1.6 s `Guard.load()` took for the shipped guard on a 2-core CPU, torch 2.13.)
    nn.Linear and nn.Embedding are built on meta and skip their initialisation; any other parameter (the norms')
    moves to meta as it is registered. Class attributes are patched, as torch has no switch for this: modules built
    by other threads meanwhile are affected too."""
    register = nn.Module.register_parameter
    patched = {cls: (cls.__init__, cls.reset_parameters) for cls in (nn.Linear, nn.Embedding)}

    def on_meta(self, name, param):
        register(self, name, param)
        if param is not None and param.device.type != "meta":
            self._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    def build_on_meta(init):
        return lambda self, *args, **kwargs: init(self, *args, **{**kwargs, "device": "meta"})

    nn.Module.register_parameter = on_meta  # type: ignore[method-assign]
    for cls, (init, _) in patched.items():
        cls.__init__ = build_on_meta(init)  # type: ignore[method-assign]
        cls.reset_parameters = lambda self: None  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register  # type: ignore[method-assign]
        for cls, (init, reset) in patched.items():
            cls.__init__ = init  # type: ignore[method-assign]
            cls.reset_parameters = reset  # type: ignore[method-assign]


def skeleton(args: ModelArgs, device: str | torch.device) -> Transformer:
    """The model with its parameters on the meta device, to be assigned from a checkpoint: building it for
    real would initialise every weight first (over 30 s for a 1B model on CPU). Its buffers (rotary tables,
    token maps) depend on `args` alone: computed by the constructor, then moved to `device`."""
    with _params_on_meta():
        model = Transformer(args)
    for module in model.modules():
        for name, buf in module._buffers.items():
            if buf is not None:
                module._buffers[name] = buf.to(device)
    return model


def assemble(args: ModelArgs, tensors: dict[str, Tensor], origin: dict[str, str], device, dtype: torch.dtype,
              file_key, config: str, permute: dict[str, int] | None = None,
              quantized: dict[str, nn.Module] | None = None) -> Transformer:
    """Check `tensors` (our names) against the model `args` describes, and build it from them. Errors name
    tensors as the file does (`file_key`) and say which file (`origin`) held them. `quantized` maps weight names
    to ready quantized linears (`kernels.QuantLinear`) that replace those linears as they are."""
    model = skeleton(args, device)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if args.tie_embeddings:
        expected.pop("output.weight")
    quantized = quantized or {}
    missing = sorted(set(expected) - set(tensors) - set(quantized), key=layer_order)
    unexpected = sorted((set(tensors) | set(quantized)) - set(expected), key=layer_order)
    if missing or unexpected:
        what = [f"missing tensors {[file_key(k) for k in missing[:6]]}" if missing else "",
                f"unexpected tensors {[file_key(k) if k in expected else k for k in unexpected[:6]]}" if unexpected else ""]
        raise CheckpointError(f"weights do not match {config}: " + "; ".join(w for w in what if w))
    state = {}
    for k, lin in quantized.items():
        if (lin.out_features, lin.in_features) != expected[k]:
            raise CheckpointError(f"tensor {file_key(k)} in {origin[k]} has shape {[lin.out_features, lin.in_features]}, "
                                  f"but {config} implies {list(expected[k])}")
        name = k.removesuffix(".weight")
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent), child, lin.to(device))
        state.update({f"{name}.{b}": v for b, v in lin.state_dict().items()})
    for k, t in tensors.items():
        if tuple(t.shape) != expected[k]:
            raise CheckpointError(f"tensor {file_key(k)} in {origin[k]} has shape {list(t.shape)}, "
                                  f"but {config} implies {list(expected[k])}")
        if not t.is_floating_point():
            raise CheckpointError(f"tensor {file_key(k)} in {origin[k]} has dtype {t.dtype}; pocketguard loads float weights")
        t = t.to(device=device, dtype=dtype)
        state[k] = permute_to_hf(t, permute[k]) if permute and k in permute else t
    if args.tie_embeddings:
        state["output.weight"] = state["tok_embeddings.weight"]
    assign(model, state)
    return model.eval()


def assign(model: Transformer, state: dict[str, Tensor]) -> None:
    """Load `state` into a skeleton's meta parameters, keeping a tied head tied (assign=True would give the
    head and the embedding two Parameters)."""
    model.load_state_dict(state, strict=True, assign=True)
    if model.args.tie_embeddings:
        model.output.weight = model.tok_embeddings.weight


def layer_order(name: str) -> tuple:
    m = re.search(r"layers\.(\d+)\.", name)
    return (int(m[1]) if m else -1, name)


# ---------------------------------------------------------------------------------------- config values
# A config is read from a file that may be hand-edited or corrupt: a value of the wrong type or a zero size must be a
# CheckpointError naming the file and the key, not a TypeError / ZeroDivisionError from deep in the model's build.
def config_int(value: object, key: str, source: str, minimum: int = 1) -> int:
    """An integer of at least `minimum` (a size: 1; a token id: 0). A bool, float or string is refused, not
    converted (`int()` reads 2.5 as 2 and true as 1)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer of at least {minimum}"
        raise CheckpointError(f"{source}: {key} must be {what}, got {value!r}")
    return value


def config_float(value: object, key: str, source: str, positive: bool = False) -> float:
    """A finite number (an int will do), greater than 0 when `positive` (a RoPE base or factor: 0 gives NaN logits)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or (positive and value <= 0):
        raise CheckpointError(f"{source}: {key} must be a {'positive' if positive else 'finite'} number, got {value!r}")
    return float(value)


def config_bool(value: object, key: str, source: str) -> bool:
    """true or false: `bool("false")` is True, which would tie a head or scale RoPE in silence."""
    if not isinstance(value, bool):
        raise CheckpointError(f"{source}: {key} must be true or false, got {value!r}")
    return value


# The dtypes a model runs in (float8 and the other float types torch has cannot run its matmuls), by torch's names.
_FLOAT_DTYPES = {name: getattr(torch, name) for name in ("float32", "bfloat16", "float16", "float64")}
Dtype = torch.dtype | str  # one of _FLOAT_DTYPES (or its name), or "auto" (resolve_dtype)


def resolve_dtype(dtype: Dtype, args: ModelArgs, device: str | torch.device, source: str, kept_params: int = 0) -> torch.dtype:
    """`dtype`, or for "auto" float32 when the float32 model takes at most 3/4 of the memory free on `device`, else
    bfloat16 (with a warning): Llama Guard 3-8B is 32 GB in float32, more than many machines have, and bf16's
    rounding is far below the error of the 4-bit GGUFs such a model often comes as. `kept_params` are weights that
    stay quantized (counted at one byte each, int8's size: an upper bound). Any other dtype is a CheckpointError."""
    if dtype != "auto":
        if isinstance(dtype, str) and dtype in _FLOAT_DTYPES:
            return _FLOAT_DTYPES[dtype]
        if isinstance(dtype, torch.dtype) and dtype in _FLOAT_DTYPES.values():
            return dtype
        raise CheckpointError(f"dtype must be \"auto\" or one of {', '.join(_FLOAT_DTYPES)} (a name or a torch dtype), "
                              f"got {dtype!r}")
    if fits_float32(args, device, kept_params):
        return torch.float32
    need, free = float32_bytes(args, kept_params), free_memory(torch.device(device))
    warnings.warn(f"{source}: float32 weights would take {need / 2**30:.1f} GiB of the {free / 2**30:.1f} GiB free: "
                  "loading in bfloat16", stacklevel=3)
    return torch.bfloat16


def float32_bytes(args: ModelArgs, kept_params: int = 0) -> int:
    """The model's weights in float32, `kept_params` of them at one byte (kept quantized)."""
    # The count does not depend on the context: a one-token skeleton skips the rotary tables (128 MB and 0.2 s for an
    # 8B guard's 131,072 positions), which a load would otherwise compute once more per call.
    return 4 * (skeleton(replace(args, max_seq_len=1), "cpu").num_params() - kept_params) + kept_params


def fits_float32(args: ModelArgs, device: str | torch.device, kept_params: int = 0) -> bool:
    """Whether the model in float32 (`kept_params` of it at one byte) takes at most 3/4 of the memory free on `device`:
    the one rule behind `resolve_dtype` and a GGUF's `keep_quantized="auto"`."""
    return float32_bytes(args, kept_params) <= 0.75 * free_memory(torch.device(device))


def free_memory(device: torch.device) -> int:
    """Bytes that can still be allocated on `device` (GPU: free memory; CPU: the kernel's MemAvailable)."""
    if device.type == "cuda":  # (without CUDA, loading onto it fails where it always did, not here)
        return torch.cuda.mem_get_info(device)[0] if torch.cuda.is_available() else 2**62
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
