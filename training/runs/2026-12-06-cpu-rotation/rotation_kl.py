"""KL(float ‖ quantized) of the SmolLM2-135M backbone, round-to-nearest with and without a Hadamard rotation, over
the text of data-w's first dev conversations: does QuaRot/SpinQuant's R1 + R2 help this architecture's int4?

    python training/runs/2026-12-06-cpu-rotation/rotation_kl.py [--dither] [--rows 60]

--dither first moves every decoder-block weight off the GGUF's Q4_1 grid (uniform noise of up to one grid step of
its group of 32), standing in for a fine-tune's drift: the backbone's own weights sit on a 16-level grid per group
that round-to-nearest int4 g32 nearly reproduces unrotated, and a rotation does not."""
import argparse
import copy
import json
import time

import torch

from pocketguard.compress.quantize import QuantConfig, quantize_
from pocketguard.evaluate.fidelity import kl_divergence
from pocketguard.gguf_checkpoint import load_gguf

ap = argparse.ArgumentParser()
ap.add_argument("--dither", action="store_true")
ap.add_argument("--rows", type=int, default=60)
a = ap.parse_args()
torch.set_num_threads(2)
loaded = load_gguf("runs/backbone/SmolLM2-135M-Instruct.Q4_1.gguf", require_guard_tokens=False)
ref = loaded.model.eval()
if a.dither:
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in ref.layers.parameters():
            if p.dim() == 2:
                w = p.view(p.shape[0], -1, 32)
                step = (w.amax(-1, keepdim=True) - w.amin(-1, keepdim=True)) / 15
                w += (torch.rand(w.shape, generator=g) - 0.5) * 2 * step
with open("runs/data-w/dev.jsonl", encoding="utf-8") as f:
    rows = [json.loads(line) for _, line in zip(range(a.rows), f)]
text = "\n\n".join(m["content"] for r in rows for m in r["messages"])
plain = dict(mode="rtn", embedding_bits=None, head_bits=None)  # the decoder blocks only
configs = {"int4 g32 weights + int8 activations": dict(plain),
           "int8 weights + int8 activations": dict(plain, weight_bits=8, group_size=None),
           "int4 g32 weights only": dict(plain, act_bits=None)}
print("| scheme | rotation | KL mean | KL median | KL p99 | top-1 agreement | perplexity ratio | tokens | s |")
print("|---|---|---|---|---|---|---|---|---|")
for name, cfg in configs.items():
    for rotation in (None, "hadamard"):
        t = time.time()
        q = quantize_(copy.deepcopy(ref), QuantConfig(**cfg, rotation=rotation)).eval()
        with torch.no_grad():
            d = kl_divergence(q, ref, loaded.tokenizer, text, window=512)
        print(f"| {name} | {rotation or '—'} | {d.kl_mean:.4f} | {d.kl_median:.4f} | {d.kl_p99:.3f} | "
              f"{d.top1_agreement:.3f} | {d.perplexity_ratio:.3f} | {d.tokens} | {time.time() - t:.0f} |", flush=True)
