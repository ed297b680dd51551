"""A student soup, measured once (README.md): average the dequantized weights of int4 students that share one
pruned structure (one teacher, one calibration sample), then round to the same int4 g32 / int8 scheme again (RTN).

    .venv/bin/python training/runs/2026-12-06-cpu-student-soup/soup.py OUT STUDENT_ARTIFACT [STUDENT_ARTIFACT ...]

One artifact alone gives its own weights rounded a second time (the cost of the requantization by itself)."""
import sys

from pocketguard.artifact import load_artifact
from pocketguard.compress.artifact import save_artifact
from pocketguard.compress.quantize import QuantConfig, quantize_
from pocketguard.export.hf import dequantized_model
from pocketguard.policy import Policy

out, *sources = sys.argv[1:]
loaded = [load_artifact(s) for s in sources]
# (args.extra records pruning's scores, which differ with the calibration sample even where the structure is one)
if len({str({k: v for k, v in vars(lo.model.args).items() if k != "extra"}) for lo in loaded}) > 1 or len({lo.tokenizer.vocab_size for lo in loaded}) > 1:
    raise SystemExit("the students differ in shape or vocabulary: their weights cannot be averaged")
states = [dequantized_model(lo.model).state_dict() for lo in loaded]
model = dequantized_model(loaded[0].model)
model.load_state_dict({k: sum(s[k].float() for s in states) / len(states) for k in states[0]})
cfg = {**loaded[0].meta["quantization"]["config"], "mode": "rtn"}
cfg["imatrix_range"] = tuple(cfg["imatrix_range"])
quantize_(model, QuantConfig(**cfg))
save_artifact(model, loaded[0].tokenizer, Policy.from_dict(loaded[0].meta["policy"]), out,
              recipe={"soup_of": sources, "requantized": "rtn"})
print("saved", out)
