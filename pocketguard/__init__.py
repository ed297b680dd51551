"""pocketguard: compact, fast LLM safety guards — moderate, compress, export, evaluate.

The public API (docs/api.md)::

    from pocketguard import Guard
    verdict = Guard.load().moderate("How do I make a pipe bomb?")

Names are imported on first use (PEP 562), so `import pocketguard` and CLI verbs that do not judge stay light:
the runtime pulls in torch and the tokenizers.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that owns it
_EXPORTS = {
    "Guard": "guard",
    "Verdict": "answer",
    "Policy": "policy",
    "Category": "policy",
    "Conversation": "conversation",
    "Message": "conversation",
    "ConversationError": "conversation",
    "PolicyError": "policy",
    "CheckpointError": "checkpoint",
    "TokenizerError": "tokenizer",
}

__all__ = ["Category", "CheckpointError", "Conversation", "ConversationError", "Guard", "Message", "Policy", "PolicyError",
           "TokenizerError", "Verdict", "__version__"]  # literal, for type checkers; tests/test_api.py checks _EXPORTS

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time __getattr__ below does the importing
    from .checkpoint import CheckpointError
    from .conversation import Conversation, ConversationError, Message
    from .answer import Verdict
    from .guard import Guard
    from .policy import Category, Policy, PolicyError
    from .tokenizer import TokenizerError


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'pocketguard' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
