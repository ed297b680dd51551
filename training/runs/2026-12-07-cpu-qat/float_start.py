"""Write the shipped int4 guard as a float checkpoint (its dequantized weights) for a QAT repair on this CPU, and
check that fake-quantizing it again with the shipped recipe's qat settings and converting gives back the shipped
codes and scales (so the repair starts from the shipped model, not a re-rounded one); the re-gridded model is
written beside it (OUT/../regrid) to tell what re-gridding alone changes from what training changed.
python training/runs/2026-12-07-cpu-qat/float_start.py pocketguard/assets/default-guard runs/cpu-qat/float
(the first run); with a third argument --latent, weights that re-grid to the shipped codes (`kernels.latent_weight`):
python training/runs/2026-12-07-cpu-qat/float_start.py pocketguard/assets/default-guard runs/cpu-qat/latent --latent"""
import copy
import sys
from pathlib import Path

import torch

from pocketguard import checkpoint
from pocketguard.compress.artifact import save_artifact
from pocketguard.compress.quantize import QuantConfig, convert, prepare_qat
from pocketguard.compress.recipe import _save_model
from pocketguard.export.hf import dequantized_model
from pocketguard.policy import Policy

src, out = Path(sys.argv[1]), Path(sys.argv[2])
loaded = checkpoint.load(src)
shipped = loaded.model
flt = dequantized_model(shipped, latent=len(sys.argv) > 3 and sys.argv[3] == "--latent")
policy = loaded.meta.get("policy")
policy = Policy.from_dict(policy) if isinstance(policy, dict) else (policy or Policy.default())
_save_model(flt, loaded.tokenizer, policy, out, {})
print("float checkpoint:", out)

again = convert(prepare_qat(copy.deepcopy(flt), QuantConfig(weight_bits=4, group_size=32, act_bits=8,
                                                            embedding_bits=4, head_bits=8)))
a = {k: v for k, v in shipped.state_dict().items()}
b = {k: v for k, v in again.state_dict().items()}
print("keys only in shipped:", sorted(set(a) - set(b))[:5], "only in re-gridded:", sorted(set(b) - set(a))[:5])
diff = [k for k in a if k in b and (a[k].shape != b[k].shape or not torch.equal(a[k], b[k]))]
print(f"{len(a)} tensors, {len(diff)} differ:", diff[:10])
for k in diff[:10]:
    x, y = a[k], b[k]
    if x.shape == y.shape:
        print(k, x.dtype, "fraction unequal", (x != y).float().mean().item())
save_artifact(again, loaded.tokenizer, policy, out.parent / ("regrid-latent" if flt is not None and len(sys.argv) > 3 else "regrid"))
