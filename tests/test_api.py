"""The public API at the top of the package: what `from pocketguard import ...` offers, that it is the same
object as in its module, that importing the package stays light, and that it is marked typed."""

import importlib
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import pocketguard

ROOT = Path(__file__).resolve().parents[1]


def test_all_lists_exactly_the_exports_and_each_is_its_modules_object():
    assert set(pocketguard.__all__) == set(pocketguard._EXPORTS) | {"__version__"}
    for name, module in pocketguard._EXPORTS.items():
        assert getattr(pocketguard, name) is getattr(importlib.import_module(f"pocketguard.{module}"), name), name
    assert set(pocketguard.__all__) <= set(dir(pocketguard))


def test_the_error_types_are_value_errors_callers_can_catch():
    from pocketguard import CheckpointError, ConversationError, PolicyError, TokenizerError

    for e in (CheckpointError, ConversationError, PolicyError, TokenizerError):
        assert issubclass(e, ValueError)
    from pocketguard.artifact import ArtifactError

    assert issubclass(ArtifactError, CheckpointError)  # a broken artifact is caught like any bad checkpoint


def test_unknown_names_raise_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'Gaurd'"):
        pocketguard.Gaurd  # noqa: B018
    with pytest.raises(ImportError):
        exec("from pocketguard import Gaurd")


def test_import_is_light_and_names_load_on_use():
    code = ("import sys, pocketguard; assert 'torch' not in sys.modules, 'import pocketguard pulled in torch'; "
            "from pocketguard import Guard, Verdict, Policy; assert 'torch' in sys.modules; "
            "print(Guard.__module__, Verdict.__module__, Policy.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["pocketguard.guard", "pocketguard.answer", "pocketguard.policy"]


def test_package_is_marked_typed_and_ships_the_marker():
    assert (ROOT / "pocketguard" / "py.typed").exists()
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["pocketguard"]
    assert "py.typed" in data


def test_readme_and_api_doc_teach_the_top_level_import():
    for doc in ("README.md", "docs/api.md"):
        text = (ROOT / doc).read_text()
        assert "from pocketguard import Guard" in text, doc
        assert "from pocketguard.guard import" not in text, doc


def test_moderate_with_the_public_names(tiny_model, tiny_tok):
    from pocketguard import Conversation, Guard, Policy, Verdict

    guard = Guard(tiny_model, tiny_tok, Policy.default().subset(["S1", "S9"]))
    v = guard.moderate(Conversation.exchange("hi", "hello"))
    assert isinstance(v, Verdict) and v.role == "agent" and v.status in ("safe", "unsafe")
    assert set(v.categories) <= {"S1", "S9"}
