"""The compressed artifact format, and reading it: a directory `Guard.load` runs with quantized kernels.

    model.safetensors   packed weights: per quantized linear `<name>.qweight` (int4: uint8 [out, in/2], two
                        codes per byte; int8: int8 [out, in]) + `<name>.scales` (fp16 group scales or fp32
                        per-channel scales); embedding `tok_embeddings.qweight/.scales` (per row); RMSNorm
                        gains and any layer left in float as fp32 `<name>.weight`
    config.json         {"model": ModelArgs.to_dict(), "quantization": {scheme, config, modules: {name: spec}},
                         "token_maps": {output_token_ids, input_token_ids, embed_fallback_id}}
    policy.toml         the policy the guard was trained for (`Policy.to_toml()`)
    tokenizer.json | tokenizer.model
    guard.json          optional guard settings (max_context, threshold), as checkpoint.py writes them
    manifest.json       format, sha256 + size of every file above, the recipe, library versions, bits/weight

`load_artifact` verifies every checksum before reading anything (a mismatch names the file), builds the
`Transformer` without allocating float weights, swaps in the `pocketguard.kernels` modules named in the
config, and returns `checkpoint.Loaded(model, tokenizer, meta)` with `meta["layout"] = "pocketguard-int4"`
and `meta["policy"]` a dict for `Policy.from_dict`.

Writing one is compression's business (`compress/artifact.py`); reading it sits here, beside `checkpoint`, so
that the runtime and `checkpoint.load` need nothing from `compress`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from . import kernels as K
from .loaded import CheckpointError, Loaded, read_guard_meta
from .model import ModelArgs
from .tokenizer import Tokenizer
from .weights import skeleton

LAYOUT = "pocketguard-int4"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
POLICY = "policy.toml"
GUARD = "guard.json"


class ArtifactError(CheckpointError):
    """A compressed artifact that cannot be written or read (missing, corrupt, modified, inconsistent).
    A `CheckpointError`, so callers of `checkpoint.load` catch it like any other checkpoint problem."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@contextmanager
def written_atomically(path: str | Path) -> Iterator[Path]:
    """A temporary path beside `path` to write; once the block succeeds it replaces `path` at once, and on failure it
    is removed with `path` left as it was (an export killed or failing halfway left a truncated file where the last
    good one had been, which a later run took for a finished export)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def sha256_tree(path: str | Path, keep: Callable[[str], bool] | None = None) -> str | None:
    """The sha256 of a file, or of a folder's files (each relative path with its content's sha256, in sorted order;
    only the relative paths `keep` says yes to, when given); None when nothing is there. What a step's or a
    prediction's inputs are keyed by: sizes and modification times would miss a same-size edit made within one
    timestamp tick, so contents are read in full. That costs about one extra read of a checkpoint per run (seconds
    per GB), against the load of the same weights that follows it."""
    p = Path(path)
    if p.is_file():
        return sha256_file(p)
    if not p.is_dir():
        return None
    h = hashlib.sha256()
    for f in sorted(f for f in p.rglob("*") if f.is_file() and (keep is None or keep(f.relative_to(p).as_posix()))):
        h.update(f"{f.relative_to(p).as_posix()}\0{sha256_file(f)}\n".encode())
    return h.hexdigest()


# The files that change when a guard's settings are written (`calibrate --write`: guard.json, and an artifact's
# manifest, which seals it) and nothing else: the weights, tokenizer and policy that judge are the rest.
SETTINGS_FILES = ("guard.json", MANIFEST)


def checkpoint_sha256(path: str | Path, part: str = "all") -> str | None:
    """`sha256_tree` of what `checkpoint.load(path)` reads: a .gguf file, else the whole folder (also when `path`
    names a file in it). `part="weights"` leaves out the settings files (SETTINGS_FILES), so that predictions made
    before a threshold was written still name the same model; `part="settings"` is those files alone (None for a
    GGUF, which holds none)."""
    keep = {"all": None, "weights": lambda rel: rel not in SETTINGS_FILES, "settings": lambda rel: rel in SETTINGS_FILES}
    if part not in keep:
        raise ValueError(f"part is 'all', 'weights' or 'settings', not {part!r}")
    p = Path(path)
    folder = p.parent if p.is_file() and p.suffix.lower() != ".gguf" else p
    if part == "settings" and not folder.is_dir():
        return None
    return sha256_tree(folder, keep[part])


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    mf = path / MANIFEST if path.is_dir() else path
    if not mf.exists():
        raise ArtifactError(f"no {MANIFEST} in {mf.parent}: not a pocketguard artifact (or an incomplete one)")
    try:
        manifest = json.loads(mf.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{MANIFEST} in {mf.parent} is corrupt (not valid JSON: {e})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != LAYOUT or not isinstance(manifest.get("files"), dict):
        raise ArtifactError(f"{MANIFEST} in {mf.parent} is not a {LAYOUT} manifest")
    if int(manifest.get("format_version", 0)) > FORMAT_VERSION:
        raise ArtifactError(f"artifact format version {manifest['format_version']} is newer than this pocketguard "
                            f"understands ({FORMAT_VERSION}); upgrade pocketguard")
    return manifest


def verify_artifact(path: str | Path) -> dict:
    """Check every file of the manifest against its sha256; returns the manifest."""
    directory = Path(path)
    directory = directory if directory.is_dir() else directory.parent
    manifest = read_manifest(directory)
    for name, info in manifest["files"].items():
        f = directory / name
        if Path(name).name != name:
            raise ArtifactError(f"{MANIFEST} names a file outside the artifact: {name!r}")
        if not f.exists():
            raise ArtifactError(f"{name} is missing from the artifact {directory}")
        got = sha256_file(f)
        if got != info.get("sha256"):
            raise ArtifactError(f"{name}: checksum mismatch in {directory} (manifest sha256 {str(info.get('sha256'))[:12]}…, "
                                f"file {got[:12]}…): the file is corrupt or was modified after the artifact was written")
    return manifest


def _skeleton(args, specs: dict[str, dict]) -> nn.Module:
    model = skeleton(args, "cpu")
    for name, spec in specs.items():
        try:
            old = model.get_submodule(name)
        except AttributeError:
            raise ArtifactError(f"{CONFIG}: quantized module {name!r} does not exist in the model") from None
        try:
            model.set_submodule(name, _kernel(old, name, spec))
        except ArtifactError:
            raise
        except (AttributeError, KeyError, TypeError, ValueError, ZeroDivisionError, RuntimeError) as e:
            # a spec the kernel cannot be built from (group_size 0 or -32, a bogus scale dtype, a linear's kind on a norm)
            raise ArtifactError(f"{CONFIG}: quantized module {name} cannot be built from {spec}: "
                                f"{type(e).__name__}: {e}") from None
    return model


def _kernel(old: nn.Module, name: str, spec: dict) -> nn.Module:
    kind = spec["kind"]
    sdt = K.scale_dtype_of(spec.get("scale_dtype", "float32"))
    if kind in K.LINEAR_KINDS:
        return K.LINEAR_KINDS[kind](old.in_features, old.out_features, spec.get("group_size"), sdt, device="meta")
    if kind in K.EMBEDDING_KINDS:
        return K.EMBEDDING_KINDS[kind](old.num_embeddings, old.embedding_dim, sdt, device="meta")
    raise ArtifactError(f"{CONFIG}: unknown kernel {kind!r} for {name} (written by a newer pocketguard?)")


def load_artifact(path: str | Path, device: str | torch.device = "cpu", verify: bool = True):
    """Load a compressed artifact (directory, or its manifest.json) → `Loaded(model, tokenizer, meta)`."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(path)
    directory = directory if directory.is_dir() else directory.parent
    manifest = verify_artifact(directory) if verify else read_manifest(directory)
    try:
        config = json.loads((directory / CONFIG).read_text(encoding="utf-8"))
        args = ModelArgs.from_dict(config["model"])
        specs = config["quantization"]["modules"]
    except FileNotFoundError:
        raise ArtifactError(f"{CONFIG} is missing from the artifact {directory}") from None
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError) as e:
        raise ArtifactError(f"{CONFIG} in {directory} is corrupt or inconsistent: {e}") from None
    maps = config.get("token_maps") or {}
    for key, value in maps.items():
        if getattr(args, key) != value:
            raise ArtifactError(f"{CONFIG}: token map {key} disagrees with the model config")
    try:
        tensors = load_file(str(directory / WEIGHTS), device="cpu")
    except FileNotFoundError:
        raise ArtifactError(f"{WEIGHTS} is missing from the artifact {directory}") from None
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise ArtifactError(f"{WEIGHTS} in {directory} is corrupt: {e}") from None

    model = _skeleton(args, specs)
    expected = model.state_dict()
    missing, unexpected = set(expected) - set(tensors), set(tensors) - set(expected)
    if missing or unexpected:
        raise ArtifactError(f"{WEIGHTS} does not match {CONFIG}: missing {sorted(missing)[:5]}, "
                            f"unexpected {sorted(unexpected)[:5]}")
    for k, want in expected.items():  # checked here, so a config that disagrees is named, not a torch size mismatch
        t = tensors[k]
        if (t.shape, t.dtype) != (want.shape, want.dtype):
            raise ArtifactError(f"tensor {k} in {WEIGHTS} is {_kind(t)}, but {CONFIG} implies {_kind(want)}: "
                                f"the artifact {directory} is inconsistent")
    model.load_state_dict(tensors, strict=True, assign=True)
    leftover = [n for n, t in list(model.named_parameters()) + list(model.named_buffers()) if t.device.type == "meta"]
    if leftover:
        raise ArtifactError(f"{WEIGHTS} lacks tensors for {leftover[:5]}")
    for n, p in model.named_parameters():
        p.requires_grad_(False)
    model = model.to(device).eval()

    try:
        tokenizer = Tokenizer.load(directory)
    except Exception as e:
        raise ArtifactError(f"tokenizer of the artifact {directory} cannot be loaded: {e}") from None
    try:
        policy_toml = (directory / POLICY).read_text(encoding="utf-8")
        policy = tomllib.loads(policy_toml)
    except FileNotFoundError:
        raise ArtifactError(f"{POLICY} is missing from the artifact {directory}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise ArtifactError(f"{POLICY} in {directory} is corrupt: {e}") from None
    meta = {
        **(read_guard_meta(directory) if GUARD in manifest["files"] else {}),
        "layout": LAYOUT,
        "path": str(directory),
        "policy": policy,
        "policy_toml": policy_toml,
        "quantization": config["quantization"],
        "recipe": manifest.get("recipe"),
        "manifest": manifest,
        "versions": manifest.get("versions"),
    }
    return Loaded(model, tokenizer, meta)


def _kind(t: torch.Tensor) -> str:
    return f"{str(t.dtype).removeprefix('torch.')} {list(t.shape)}"


def is_artifact(path: str | Path) -> bool:
    p = Path(path)
    return (p / MANIFEST).exists() if p.is_dir() else p.name == MANIFEST and p.exists()
