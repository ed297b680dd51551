"""Average the dequantized weights of int4 students of one recipe (same teacher, same pruned shape and vocabulary),
re-quantize them round-to-nearest with each module's own scheme, and write an artifact.

    python soup.py OUT_DIR STUDENT_DIR STUDENT_DIR [...]"""
import sys

import torch

from pocketguard.artifact import load_artifact
from pocketguard.compress.artifact import save_artifact
from pocketguard.kernels import QuantEmbedding, QuantLinear


def shape_of(model) -> dict:
    """The model's args without `extra` (the prune report, whose scores are sample noise)."""
    return {k: v for k, v in model.args.to_dict().items() if k != "extra"}


def main(out: str, paths: list[str]) -> None:
    loaded = [load_artifact(p) for p in paths]
    models = [x.model for x in loaded]
    if any(shape_of(m) != shape_of(models[0]) for m in models):
        raise SystemExit("the students differ in shape or token maps")
    named = [dict(m.named_modules()) for m in models]
    base = models[0]
    with torch.no_grad():
        for name, mod in list(named[0].items()):
            if isinstance(mod, (QuantLinear, QuantEmbedding)):
                w = torch.stack([n[name].dequantize() for n in named]).mean(0)
                new = (type(mod).from_weight(w, group_size=mod.group_size, scale_dtype=mod.scales.dtype)
                       if isinstance(mod, QuantLinear) else type(mod).from_weight(w, scale_dtype=mod.scales.dtype))
                parent, _, leaf = name.rpartition(".")
                setattr(base.get_submodule(parent) if parent else base, leaf, new)
        params = [dict(m.named_parameters()) for m in models]
        for name, p in params[0].items():
            p.copy_(torch.stack([ps[name] for ps in params]).mean(0))
    save_artifact(base, loaded[0].tokenizer, loaded[0].meta.get("policy"), out, recipe={"soup_of": paths})
    print("wrote", out)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
