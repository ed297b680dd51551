"""The polish's starting point: the shipped int4 student dequantized to a float checkpoint of the same (pruned)
shapes, which the recipe's `qat` step fake-quantizes again (its weights sit on the int4 grid already)."""
import sys
from pathlib import Path

sys.path.insert(0, ".")
from pocketguard import checkpoint  # noqa: E402
from pocketguard.compress.recipe import _save_model  # noqa: E402
from pocketguard.export.hf import dequantized_model  # noqa: E402
from pocketguard.policy import Policy  # noqa: E402

loaded = checkpoint.load("pocketguard/assets/default-guard")
_save_model(dequantized_model(loaded.model), loaded.tokenizer, Policy.default(), Path("runs/polish/start"), {})
