"""What every checkpoint layout shares: the `Loaded` triple, `CheckpointError`, and guard.json (the guard's own
settings beside its weights). It sits below `checkpoint` and `artifact` so that both layouts' readers use it
without importing each other."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from .policy import Policy, PolicyError

if TYPE_CHECKING:
    from .model import Transformer
    from .tokenizer import Tokenizer

GUARD_META = "guard.json"
GUARD_SETTINGS = ("policy", "max_context", "threshold")  # what guard.json holds


class CheckpointError(ValueError):
    """A checkpoint is missing files, is corrupt, or does not match its own config."""


@dataclass
class Loaded:
    model: Transformer
    tokenizer: Tokenizer
    meta: dict  # guard.json's settings plus "layout"


def policy_dict(policy: Policy) -> dict:
    """A policy as the dict `Policy.from_dict` reads back."""
    return {"category": [{"code": c.code, "name": c.name, "description": c.description} for c in policy.categories]}


def save_guard_meta(directory: str | Path, meta: dict) -> Path:
    """Write guard.json: the guard's own settings ("policy": a Policy or its dict, "max_context": int,
    "threshold": the p_unsafe at which it flags, when not greedy)."""
    meta = {k: v for k, v in meta.items() if k != "layout"}  # the layout is a fact of the folder, not a setting
    if isinstance(meta.get("policy"), Policy):
        meta["policy"] = policy_dict(meta["policy"])
    path = Path(directory) / GUARD_META
    _check_settings(meta, str(path))
    check_guard_meta(meta, str(path))
    try:
        text = json.dumps(meta, indent=2)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"guard settings are not JSON-serialisable: {e}") from None
    path.write_text(text)
    return path


def read_guard_meta(directory: str | Path) -> dict:
    """guard.json's settings, validated; {} when the folder has none."""
    path = Path(directory) / GUARD_META
    if not path.exists():
        return {}
    meta = read_json(path)
    _check_settings(meta, str(path))
    check_guard_meta(meta, str(path))
    return meta


def _check_settings(meta: dict, source: str) -> None:
    """guard.json holds `GUARD_SETTINGS` only: a misspelt one ("treshold") would be ignored in silence and the guard run
    at another operating point than its own."""
    unknown = sorted(set(meta) - set(GUARD_SETTINGS))
    if unknown:
        raise CheckpointError(f"{source}: unknown settings {unknown}; guard.json holds {list(GUARD_SETTINGS)} "
                              "(a misspelling, or written by a newer pocketguard?)")


def check_guard_meta(meta: dict, source: str) -> None:
    if meta.get("policy") is not None:
        if not isinstance(meta["policy"], dict):
            raise CheckpointError(f"{source}: policy must be a dict for Policy.from_dict")
        try:
            Policy.from_dict(meta["policy"], source=source)
        except PolicyError as e:
            raise CheckpointError(f"{source}: invalid policy: {e}") from None
    mc = meta.get("max_context")
    if mc is not None and (not isinstance(mc, int) or isinstance(mc, bool) or mc <= 0):
        raise CheckpointError(f"{source}: max_context must be a positive integer, got {mc!r}")
    t = meta.get("threshold")
    if t is not None and (not isinstance(t, (int, float)) or isinstance(t, bool) or not 0 < t < 1):
        raise CheckpointError(f"{source}: threshold must be a number between 0 and 1, got {t!r}")


def write_guard_meta(d: Path, meta: dict | None) -> None:
    """guard.json for `meta`; with none, a stale guard.json is removed (an old policy must not come back)."""
    if meta is None:
        (d / GUARD_META).unlink(missing_ok=True)
    else:
        save_guard_meta(d, meta)


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path.name} is missing from {path.parent}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path.name} in {path.parent} is corrupt (not valid JSON: {e})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path.name} in {path.parent} is not a JSON object")
    return data
