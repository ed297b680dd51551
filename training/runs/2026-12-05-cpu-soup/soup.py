"""A soup of two int4 students of one shape (the shipped run r's and run u's): both dequantized, their weights
averaged (input-embedding rows over the union of their token lists: a token only one kept takes that one's row),
then quantized again to the shipped scheme (int4 g32 weights, int8 dynamic activations, int4 embedding, int8
head) by round-to-nearest or GPTQ. A CPU-only experiment (no GPU this session): does averaging two students that
differ in what they get wrong keep the better of each?

    python training/runs/2026-12-05-cpu-soup/soup.py A B OUT [--mode rtn|gptq] [--weight W] [--calib train.jsonl]
"""
import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, ".")
from pocketguard import checkpoint  # noqa: E402
from pocketguard.compress.artifact import save_artifact  # noqa: E402
from pocketguard.compress.quantize import QuantConfig, quantize_  # noqa: E402
from pocketguard.export.hf import dequantized_model  # noqa: E402
from pocketguard.model import ModelArgs, Transformer  # noqa: E402
from pocketguard.policy import Policy  # noqa: E402

ap = argparse.ArgumentParser()
for name in ("a", "b", "out"):
    ap.add_argument(name)
ap.add_argument("--mode", default="rtn")
ap.add_argument("--weight", type=float, default=0.5, help="weight of A (B gets 1 - weight)")
ap.add_argument("--calib", default=None, help="JSONL examples for GPTQ's calibration")
a = ap.parse_args()

la, lb = checkpoint.load(a.a), checkpoint.load(a.b)
ma, mb = dequantized_model(la.model), dequantized_model(lb.model)
args_a, args_b = ma.args, mb.args
same = {k for k in vars(args_a) if k not in ("input_token_ids", "extra") and getattr(args_a, k) != getattr(args_b, k)}
assert not same and args_a.extra["kept_blocks"] == args_b.extra["kept_blocks"], f"the students differ in {same or 'kept_blocks'}"
ids = sorted(set(args_a.input_token_ids) | set(args_b.input_token_ids))
args = ModelArgs(**{**vars(args_a), "input_token_ids": ids,
                    "extra": {**args_a.extra, "soup": {"of": [a.a, a.b], "weight_a": a.weight, "mode": a.mode}}})
soup = Transformer(args)
w = a.weight
sa, sb = ma.state_dict(), mb.state_dict()
with torch.no_grad():
    for name, p in soup.state_dict().items():
        if name == "tok_embeddings.weight":
            ra = {t: i for i, t in enumerate(args_a.input_token_ids)}
            rb = {t: i for i, t in enumerate(args_b.input_token_ids)}
            for i, t in enumerate(ids):
                if t in ra and t in rb:
                    p[i] = w * sa[name][ra[t]] + (1 - w) * sb[name][rb[t]]
                else:
                    p[i] = sa[name][ra[t]] if t in ra else sb[name][rb[t]]
        else:
            p.copy_(w * sa[name] + (1 - w) * sb[name])
soup.eval()
cal = None
if a.mode == "gptq":
    from pocketguard.compress.calibration import calibration_from_examples
    from pocketguard.examples import load_examples

    cal = calibration_from_examples(load_examples(a.calib), la.tokenizer, Policy.default(), 128, 1024)
cfg = QuantConfig(mode=a.mode, weight_bits=4, group_size=32, act_bits=8, embedding_bits=4, head_bits=8)
quantize_(soup, cfg, calibration=cal)
save_artifact(soup, la.tokenizer, Policy.default(), Path(a.out))
print(json.dumps({"out": a.out, "mode": a.mode, "weight_a": w, "input_rows": len(ids),
                  "rows_a": len(args_a.input_token_ids), "rows_b": len(args_b.input_token_ids)}))
