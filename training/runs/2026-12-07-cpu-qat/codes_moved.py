"""How far a repaired artifact's int4 codes moved from the shipped guard's: the fraction of int4 weights whose code
changed, per tensor kind.  python training/runs/2026-12-07-cpu-qat/codes_moved.py SHIPPED_DIR REPAIRED_DIR"""
import sys
from collections import defaultdict

import torch
from safetensors import safe_open

from pocketguard.kernels import unpack_int4

a = safe_open(f"{sys.argv[1]}/model.safetensors", "pt")
b = safe_open(f"{sys.argv[2]}/model.safetensors", "pt")
moved, total = defaultdict(int), defaultdict(int)
for k in a.keys():
    if not k.endswith(".qweight"):
        continue
    x, y = a.get_tensor(k), b.get_tensor(k)
    if x.dtype != torch.uint8 or x.shape != y.shape:  # packed int4 only (the int8 head is stored as int8)
        continue
    kind = k.split(".")[-2] if k.startswith("layers.") else k.split(".")[0]
    qx, qy = unpack_int4(x), unpack_int4(y)
    moved[kind] += int((qx != qy).sum())
    total[kind] += qx.numel()
for kind in sorted(total):
    print(f"{kind:16s} {moved[kind] / total[kind]:.4f} of {total[kind]:,} codes moved")
print(f"{'all':16s} {sum(moved.values()) / sum(total.values()):.4f}")
