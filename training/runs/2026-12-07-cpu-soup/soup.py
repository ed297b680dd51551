"""Average the dequantized weights of int4 students of one recipe (same teacher, same pruned shape and vocabulary),
re-quantize RTN with each module's own scheme, write an artifact."""
import sys, json, torch
from pocketguard.artifact import load_artifact
from pocketguard.compress.artifact import save_artifact
from pocketguard.kernels import QuantLinear, QuantEmbedding
from pocketguard.policy import Policy

out, paths = sys.argv[1], sys.argv[2:]
L = [load_artifact(p) for p in paths]
models = [l.model for l in L]
strip = lambda m: {k: v for k, v in m.args.to_dict().items() if k != "extra"}  # extra: the prune report (its scores are sample noise)
a0 = strip(models[0])
assert all(strip(m) == a0 for m in models), "students differ in shape or token maps"
named = [dict(m.named_modules()) for m in models]
base = models[0]
with torch.no_grad():
    for name, mod in list(named[0].items()):
        if isinstance(mod, (QuantLinear, QuantEmbedding)):
            w = torch.stack([n[name].dequantize() for n in named]).mean(0)
            if isinstance(mod, QuantLinear):
                new = type(mod).from_weight(w, group_size=mod.group_size, scale_dtype=mod.scales.dtype)
            else:
                new = type(mod).from_weight(w, scale_dtype=mod.scales.dtype)
            parent, _, leaf = name.rpartition(".")
            setattr(base.get_submodule(parent) if parent else base, leaf, new)
    for name, p in base.named_parameters():
        p.copy_(torch.stack([dict(m.named_parameters())[name] for m in models]).mean(0))
save_artifact(base, L[0].tokenizer, Policy.default(), out, recipe={"soup_of": paths})
print("wrote", out)
