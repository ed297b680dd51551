"""Writing the compressed artifact (the format, and reading it back: `pocketguard/artifact.py`): quantized
kernels modules packed into safetensors, with config, policy, tokenizer and a checksummed manifest."""

from __future__ import annotations

import copy
import datetime as _dt
import json
import platform
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import kernels as K
from ..artifact import CONFIG, FORMAT_VERSION, GUARD, LAYOUT, MANIFEST, POLICY, WEIGHTS, ArtifactError, sha256_file
from ..artifact import is_artifact as is_artifact  # the reading side, re-exported for callers of this module
from ..artifact import load_artifact as load_artifact
from ..artifact import read_manifest as read_manifest
from ..artifact import verify_artifact as verify_artifact
from ..loaded import read_guard_meta, save_guard_meta


def _versions() -> dict:
    from importlib import metadata

    import pocketguard

    out = {"pocketguard": pocketguard.__version__, "torch": torch.__version__, "python": platform.python_version()}
    for pkg in ("torchao", "safetensors", "tokenizers"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _prepare(model: nn.Module) -> nn.Module:
    """A copy of `model` whose quantized layers are kernels modules (merging LoRA, converting fake quant)."""
    from .lora import has_lora
    from .quantize import convert, is_fake_quantized

    if has_lora(model) or is_fake_quantized(model):
        model = convert(copy.deepcopy(model))  # (convert merges the adapters first)
    if not any(K.is_quantized(m) for m in model.modules()):
        raise ArtifactError("the model has no quantized layers: run quantize_ (or the qat step) before saving an artifact")
    return model


def _check_modules(model: nn.Module) -> None:
    """Only modules `load_artifact` rebuilds may be saved: anything else would load as something different."""
    from .. import model as M

    known = (M.Transformer, M.TransformerBlock, M.Attention, M.FeedForward, M.RMSNorm, nn.Linear, nn.Embedding,
             nn.ModuleList, K.QuantLinear, K.QuantEmbedding)
    for name, mod in model.named_modules():
        if type(mod) not in known and not K.is_quantized(mod):
            raise ArtifactError(f"{name or 'model'} is a {type(mod).__name__}, which the artifact format cannot "
                                f"store (merge LoRA with requantize=True and convert fake quantization first)")


def _tensors_and_specs(model: nn.Module) -> tuple[dict[str, Tensor], dict[str, dict]]:
    _check_modules(model)
    tensors: dict[str, Tensor] = {}
    specs: dict[str, dict] = {}
    quant_names = set()
    for name, mod in model.named_modules():
        if K.is_quantized(mod):
            specs[name] = mod.quant_spec()
            quant_names.add(name)
            tensors[f"{name}.qweight"] = mod.qweight.detach().cpu().contiguous()
            tensors[f"{name}.scales"] = mod.scales.detach().cpu().contiguous()
    for name, p in model.named_parameters(remove_duplicate=False):
        owner = name.rpartition(".")[0]
        if owner in quant_names:
            continue
        if any(owner.startswith(q + ".") for q in quant_names):
            raise ArtifactError(f"unexpected parameter {name} inside a quantized module")
        tensors[name] = p.detach().float().cpu().clone().contiguous()  # clone: safetensors refuses shared storage
    return tensors, specs


def linear_bits_per_weight(specs: dict[str, dict], tensors: dict[str, Tensor], head: bool = False) -> float:
    """Stored bits (codes + scales) per weight over the transformer-block linears (and the head if asked)."""
    bits = n = 0
    for name, spec in specs.items():
        if not spec["kind"].endswith("Linear") or (name == "output" and not head):
            continue
        q, s = tensors[f"{name}.qweight"], tensors[f"{name}.scales"]
        per_byte = 2 if spec["weight_bits"] == 4 else 1
        n += q.numel() * per_byte
        bits += 8 * (q.numel() * q.element_size() + s.numel() * s.element_size())
    return bits / n if n else 0.0


def save_artifact(model: nn.Module, tokenizer, policy, directory: str | Path, recipe: dict | None = None,
                  max_context: int | None = None) -> Path:
    """Write the compressed artifact of `model` (quantized kernels, fake-quantized, or with LoRA adapters —
    the latter two are converted on a copy first) to `directory`; returns the directory. `max_context`,
    when given, goes to guard.json (the guard runtime's setting, as for float checkpoints)."""
    from safetensors.torch import save_file

    from ..policy import Policy

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    stale = directory / MANIFEST
    if stale.exists():
        stale.unlink()  # written last: a directory without a manifest is never mistaken for a complete artifact
    model = _prepare(model)
    tensors, specs = _tensors_and_specs(model)
    args = model.args
    save_file(tensors, str(directory / WEIGHTS), metadata={"format": LAYOUT, "format_version": str(FORMAT_VERSION)})
    qcfg = getattr(model, "quant_config", None)
    config = {
        "model": args.to_dict(),
        "quantization": {
            "layout": LAYOUT,
            "scheme": _scheme_name(specs),
            "numerics": "see pocketguard/kernels.py: symmetric weights s=max|w|/((qmax-qmin)/2), "
                        "q=clamp(round(w*(1/s))); per-token asymmetric int8 activations",
            "config": qcfg.to_dict() if qcfg is not None else None,
            "modules": specs,
        },
        "token_maps": {"output_token_ids": args.output_token_ids, "input_token_ids": args.input_token_ids,
                       "embed_fallback_id": args.embed_fallback_id},
    }
    (directory / CONFIG).write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
    if policy is None:
        policy = Policy.default()
    elif isinstance(policy, dict):
        policy = Policy.from_dict(policy)
    (directory / POLICY).write_text(policy.to_toml(), encoding="utf-8")
    for name in ("tokenizer.json", "tokenizer.model"):
        (directory / name).unlink(missing_ok=True)
    tokenizer.save(directory)
    tok_files = [n for n in ("tokenizer.json", "tokenizer.model") if (directory / n).exists()]
    if not tok_files:
        raise ArtifactError(f"{type(tokenizer).__name__}.save wrote no tokenizer.json or tokenizer.model")
    (directory / GUARD).unlink(missing_ok=True)
    if max_context is not None:
        save_guard_meta(directory, {"max_context": int(max_context)})
    files = [WEIGHTS, CONFIG, POLICY] + tok_files + ([GUARD] if max_context is not None else [])
    manifest = {
        "format": LAYOUT,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "files": {n: _file_entry(directory / n) for n in files},
        "recipe": recipe,
        "versions": _versions(),
        "stats": {
            "linear_bits_per_weight": round(linear_bits_per_weight(specs, tensors), 4),
            "quantized_modules": len(specs),
            "bytes": sum((directory / n).stat().st_size for n in files),
        },
    }
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return directory


def _file_entry(path: Path) -> dict:
    """A manifest's record of one file."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def set_guard_settings(directory: str | Path, **settings) -> dict:
    """Merge `settings` into an artifact's guard.json (a None value removes that key) and record the file in the
    manifest (sha256, bytes): how a guard's operating point, e.g. a `threshold` chosen on dev data, is set after
    the artifact was trained. The artifact is verified first. Returns the guard settings now in force."""
    directory = Path(directory)
    manifest = verify_artifact(directory)
    files = manifest["files"]
    meta = read_guard_meta(directory) if GUARD in files else {}
    meta = {k: v for k, v in {**meta, **settings}.items() if v is not None}
    if meta:
        save_guard_meta(directory, meta)
        files[GUARD] = _file_entry(directory / GUARD)
    else:
        (directory / GUARD).unlink(missing_ok=True)
        files.pop(GUARD, None)
    manifest["stats"]["bytes"] = sum(f["bytes"] for f in files.values())
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return meta


def _scheme_name(specs: dict[str, dict]) -> str:
    kinds = {s["kind"] for n, s in specs.items() if n.startswith("layers.")}
    if kinds == {"Int4WeightInt8ActLinear"}:
        return "8da4w"
    if kinds == {"Int4WeightLinear"}:
        return "4w"
    return "+".join(sorted(kinds)) or "none"


