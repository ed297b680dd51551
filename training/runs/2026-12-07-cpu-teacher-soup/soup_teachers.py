"""Average two or more teacher fine-tunes of one backbone into one checkpoint (a model soup, as `default_guard.py soup`
does for the seeds of one lease), here across leases and data builds: run ah's (data-x5) and run al's (data-x7).
    python training/runs/2026-12-07-cpu-teacher-soup/soup_teachers.py OUT MODEL... [--weights W...]"""
import argparse

import torch

from pocketguard import checkpoint

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("models", nargs="+")
ap.add_argument("--weights", type=float, nargs="*", help="one per model (default: equal); normalised to sum 1")
a = ap.parse_args()
w = torch.tensor(a.weights or [1.0] * len(a.models), dtype=torch.float64)
if len(w) != len(a.models):
    raise SystemExit("one weight per model")
w = (w / w.sum()).tolist()
parts = [checkpoint.load(m, device="cpu") for m in a.models]
states = [q.model.state_dict() for q in parts]
if any(sd.keys() != states[0].keys() or any(sd[k].shape != states[0][k].shape for k in sd) for sd in states):
    raise SystemExit("the models differ in shape: not one backbone's fine-tunes")
with torch.no_grad():
    parts[0].model.load_state_dict({k: sum(wi * sd[k].float() for wi, sd in zip(w, states)).to(states[0][k].dtype)
                                    for k in states[0]})
checkpoint.save_hf(parts[0].model, parts[0].tokenizer, a.out, guard_meta=parts[0].meta)
print(f"{a.out}: {' + '.join(f'{wi:.2f} × {m}' for wi, m in zip(w, a.models))}")
