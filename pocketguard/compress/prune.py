"""Structured pruning: decoder blocks, MLP width, the unembedding and the input embedding.

Every function returns a *new* `Transformer` (the input model is left untouched) whose `ModelArgs` records
the new shapes; `args.extra["compression"]` gets one provenance entry per pruning step and
`args.extra["kept_blocks"]` the indices of the surviving blocks in the original model.

Calibration batches (`calib_batches`) are any iterable of `pocketguard.examples.Batch` (tokens, valid,
targets), of `(tokens, valid)` pairs, or of plain token tensors. Build guard-formatted ones with
`pocketguard.examples.calibration_batches(examples, tokenizer, policy)`.

Scores
------
* **Blocks, `method="cosine"`** (ShortGPT's *block influence*): `1 − cos(h_in, h_out)` of each block's
  input and output hidden states, averaged over real (non-padding) tokens. A block that barely rotates the
  residual stream is cheap to drop. One forward pass scores all blocks.
* **Blocks, `method="loss"`**: increase of the cross-entropy on the batch targets (the guard's answer
  tokens; next-token loss over real tokens when a batch has no targets) when the block is skipped.
* **Blocks, `method="kl"`**: KL divergence of the block-skipped model's predictions from the unpruned
  model's, at the target positions (all real positions without targets). Always ≥ 0, 0 for a block that
  does nothing; needs no labels.
  With `iterative=True` blocks are removed one at a time and the rest re-scored after each removal
  (n_remove × n_layers passes for `loss`/`kl`); otherwise all are scored once on the full model.
* **MLP neurons**: `score_j = mean_tokens |silu(gate_j(x)) · up_j(x)| · ‖W_down[:, j]‖₂` — the average
  magnitude of neuron j's contribution to the residual stream (a Wanda-style activation × weight score).
  A neuron that is never active or whose down-projection column is zero scores exactly 0.
  `budget="uniform"` keeps the top `width` per layer, rounded down to a multiple of `multiple_of` (unless it is
  the layer's full width) and at least `min_width`; `budget="global"` keeps the top `width·n_layers`
  across all layers (scores are in residual-stream units, so they compare across layers), at most that many in
  total, at least `min_width` per layer, and each width a multiple of `multiple_of` or the layer's full width
  (allocated in such steps, best average score first). Kept neurons stay in their original order and
  gate / up rows and down columns are sliced with the same indices.
"""

from __future__ import annotations

import heapq
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..model import ModelArgs, Transformer
from ..policy import Policy
from ..tokenizer import Tokenizer
from ..weights import skeleton

IGNORE = -100


# ---------------------------------------------------------------------------------------------- helpers
@dataclass
class PruneReport:
    kind: str
    method: str = ""
    scores: list = field(default_factory=list)  # per block, or per layer a summary for MLP pruning
    kept: list = field(default_factory=list)
    removed: list = field(default_factory=list)
    params_before: int = 0
    params_after: int = 0
    detail: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def _unpack(batch: Any, device) -> tuple[Tensor, Tensor, Tensor | None]:
    """(tokens, valid, targets-or-None) from a Batch, a (tokens, valid[, targets]) tuple or a tensor."""
    if isinstance(batch, Tensor):
        tokens, valid, targets = batch, None, None
    elif hasattr(batch, "tokens"):
        tokens, valid, targets = batch.tokens, getattr(batch, "valid", None), getattr(batch, "targets", None)
    elif isinstance(batch, (tuple, list)):
        tokens, valid, targets = (list(batch) + [None, None])[:3]
    else:
        raise TypeError(f"calibration batch must be a Batch, a (tokens, valid) tuple or a tensor, got {type(batch).__name__}")
    tokens = tokens.to(device)
    valid = torch.ones_like(tokens, dtype=torch.bool) if valid is None else valid.to(device)
    return tokens, valid, None if targets is None else targets.to(device)


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def rebuild(model: Transformer, args: ModelArgs, state: dict[str, Tensor]) -> Transformer:
    """A new Transformer of `args` on the model's device and dtype holding `state` (exact shapes required)."""
    new = skeleton(args, _device(model))  # every parameter comes from `state`: none is initialised first
    missing, unexpected = new.load_state_dict(state, strict=False, assign=True)
    # A tied head shares the embedding's tensor and appears under both names.
    missing = [m for m in missing if not (args.tie_embeddings and m == "output.weight")]
    if missing or unexpected:
        raise RuntimeError(f"rebuilding the pruned model: missing {missing}, unexpected {unexpected}")
    if args.tie_embeddings:
        new.output.weight = new.tok_embeddings.weight
    # Rope tables follow the source model's dtype (a bf16 model keeps bf16 tables), as `.to(dtype)` would.
    old_bufs = dict(model.named_buffers())
    for name, buf in list(new.named_buffers()):
        if name in old_bufs and buf.is_floating_point() and old_bufs[name].dtype != buf.dtype:
            mod_name, _, attr = name.rpartition(".")
            setattr(new.get_submodule(mod_name) if mod_name else new, attr, buf.to(old_bufs[name].dtype))
    return new.train(model.training)


def _require_float(model: nn.Module, what: str) -> None:
    """Pruning slices float weights: a quantized (or fake-quantized, or LoRA-wrapped) model is refused with the fix,
    rather than failing deep inside with a KeyError or a state-dict mismatch."""
    odd = sorted({type(m).__name__ for m in model.modules()
                  if (hasattr(m, "in_features") or hasattr(m, "num_embeddings")) and type(m) not in (nn.Linear, nn.Embedding)})
    if odd:
        raise ValueError(f"{what} prunes float models: this one holds {', '.join(odd)} layers (quantized?); "
                         "prune before quantizing")


def _state(model: Transformer) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _provenance(args: ModelArgs, entry: dict) -> dict:
    extra = dict(args.extra or {})
    extra["compression"] = list(extra.get("compression", [])) + [entry]
    return extra


def untie(model: Transformer) -> Transformer:
    """A copy whose output head owns its weights (a clone of the embedding) — needed before token pruning."""
    if not model.args.tie_embeddings:
        return model
    args = ModelArgs.from_dict({**model.args.to_dict(), "tie_embeddings": False})
    state = _state(model)
    state["output.weight"] = state["tok_embeddings.weight"].clone()
    return rebuild(model, args, state)


class _Skip(nn.Module):
    """Stands in for a removed block while scoring: passes the residual stream through."""

    def forward(self, x, *args, **kwargs):
        return x


def _vocab_targets(tokens: Tensor, valid: Tensor, targets: Tensor | None) -> Tensor:
    """`targets` as given, or next-token targets over real tokens when a batch has none."""
    if targets is not None:
        return targets
    out = torch.full_like(tokens, IGNORE)
    nxt = valid[:, 1:] & valid[:, :-1]
    out[:, :-1] = torch.where(nxt, tokens[:, 1:], IGNORE)
    return out


def _head_targets(model: Transformer, targets: Tensor | None) -> Tensor | None:
    """Vocabulary-id targets → head rows (pruned heads); ids the head lacks become IGNORE."""
    if targets is None or model.output_token_ids is None:
        return targets
    lut = torch.full((model.args.vocab_size,), IGNORE, dtype=torch.long, device=targets.device)
    lut[model.output_token_ids.to(targets.device)] = torch.arange(len(model.output_token_ids), device=targets.device)
    return torch.where(targets >= 0, lut[targets.clamp(min=0)], IGNORE)


# ---------------------------------------------------------------------------------------------- blocks
@torch.no_grad()
def score_blocks(
    model: Transformer, calib_batches: Iterable, method: str = "cosine", skip: Sequence[int] = ()
) -> list[float]:
    """Importance of every block (higher = more important); blocks in `skip` are bypassed and score inf."""
    if method not in ("cosine", "loss", "kl"):
        raise ValueError(f"block scoring method must be 'cosine', 'loss' or 'kl', got {method!r}")
    batches = list(calib_batches)
    if not batches:
        raise ValueError("block pruning needs at least one calibration batch")
    n = len(model.layers)
    originals = list(model.layers)
    was_training = model.training
    model.eval()
    dev = _device(model)
    try:
        for i in skip:
            model.layers[i] = _Skip()
        if method == "cosine":
            sums, count = torch.zeros(n, dtype=torch.float64), 0
            current: dict[str, Tensor] = {}

            def hook(i):
                def fn(module, inputs, output):
                    a, b = inputs[0].float(), output.float()
                    d = 1 - F.cosine_similarity(a, b, dim=-1, eps=1e-8)  # [B, T]
                    sums[i] += float((d * current["valid"]).sum())

                return fn

            handles = [model.layers[i].register_forward_hook(hook(i)) for i in range(n) if i not in skip]
            try:
                for batch in batches:
                    tokens, valid, _ = _unpack(batch, dev)
                    current["valid"] = valid.float()
                    model(tokens, valid=valid, return_hidden=True)
                    count += int(valid.sum())
            finally:
                for h in handles:
                    h.remove()
            scores = (sums / max(count, 1)).tolist()
        else:
            # Logits only where they are scored (answer positions, or every real position without
            # targets): a full-vocabulary head over whole prompts would not fit for large models.
            data = []
            for b in batches:
                t, v, given = _unpack(b, dev)
                y = _vocab_targets(t, v, given)
                m = (y != IGNORE) if (method == "loss" or given is not None) else v
                data.append((t, v, m, _head_targets(model, y)[m]))

            def run_all() -> list[Tensor]:
                return [model.output(model(t, valid=v, return_hidden=True)[m]).float() for t, v, m, _ in data]

            base = run_all()
            if method == "loss":
                base_loss = _mean_ce(base, data)
            scores = []
            for i in range(n):
                if i in skip:
                    scores.append(float("inf"))
                    continue
                model.layers[i] = _Skip()
                out = run_all()
                model.layers[i] = originals[i]
                scores.append(_mean_ce(out, data) - base_loss if method == "loss" else _mean_kl(base, out))
        for i in skip:
            scores[i] = float("inf")
        return scores
    finally:
        for i in range(n):
            model.layers[i] = originals[i]
        model.train(was_training)


def _mean_ce(logits_list, data) -> float:
    tot = sum(float(F.cross_entropy(lg, y, ignore_index=IGNORE, reduction="sum")) for lg, (*_, y) in zip(logits_list, data))
    return tot / max(sum(int((y != IGNORE).sum()) for *_, y in data), 1)


def _mean_kl(base_list, out_list) -> float:
    tot, cnt = 0.0, 0
    for p, q in zip(base_list, out_list):
        lp, lq = torch.log_softmax(p, -1), torch.log_softmax(q, -1)
        tot += float((lp.exp() * (lp - lq)).sum())
        cnt += p.shape[0]
    return tot / max(cnt, 1)


def prune_blocks(
    model: Transformer, keep: int, calib_batches: Iterable, method: str = "cosine", iterative: bool = False
) -> tuple[Transformer, PruneReport]:
    """Drop the least important decoder blocks until `keep` remain (see the module docstring for scores)."""
    _require_float(model, "prune_blocks")
    n = model.args.n_layers
    if not 1 <= keep <= n:
        raise ValueError(f"keep must be between 1 and the model's {n} blocks, got {keep}")
    batches = list(calib_batches)
    removed: list[int] = []
    if iterative:
        history = []
        while n - len(removed) > keep:
            scores = score_blocks(model, batches, method, skip=removed)
            history.append(scores)
            removed.append(min(range(n), key=lambda i: scores[i]))
        scores = history[0] if history else score_blocks(model, batches, method)
    else:
        scores = score_blocks(model, batches, method) if keep < n else [0.0] * n
        removed = sorted(range(n), key=lambda i: scores[i])[: n - keep]
    kept = [i for i in range(n) if i not in set(removed)]

    old = model.args
    original = list(old.extra.get("kept_blocks", range(n)))
    entry = {"step": "prune_blocks", "method": method, "iterative": iterative, "kept": kept,
             "scores": [round(float(s), 6) for s in scores]}
    extra = _provenance(old, entry)
    extra["kept_blocks"] = [original[i] for i in kept]
    args = ModelArgs.from_dict({**old.to_dict(), "n_layers": keep, "ffn_dims": [old.ffn_dims[i] for i in kept], "extra": extra})
    state = {}
    for k, v in _state(model).items():
        if k.startswith("layers."):
            _, idx, rest = k.split(".", 2)
            if int(idx) in kept:
                state[f"layers.{kept.index(int(idx))}.{rest}"] = v
        else:
            state[k] = v
    new = rebuild(model, args, state)
    report = PruneReport("prune_blocks", method, [float(s) for s in scores], kept, sorted(removed),
                         model.num_params(), new.num_params(), {"original_indices": extra["kept_blocks"]})
    return new, report


# ---------------------------------------------------------------------------------------------- MLP
@torch.no_grad()
def score_mlp(model: Transformer, calib_batches: Iterable) -> list[Tensor]:
    """Per layer, a [ffn_dim] tensor of neuron scores (see the module docstring)."""
    dev = _device(model)
    sums = [torch.zeros(d, dtype=torch.float64, device=dev) for d in model.args.ffn_dims]
    count = [0]
    current: dict[str, Tensor] = {}

    def hook(i):
        def fn(module, inputs, output):
            x = inputs[0]
            act = (F.silu(module.w1(x)) * module.w3(x)).float().abs()  # [B, T, H]
            sums[i] += (act * current["valid"][..., None]).sum((0, 1)).double()

        return fn

    was_training = model.training
    model.eval()
    handles = [layer.feed_forward.register_forward_hook(hook(i)) for i, layer in enumerate(model.layers)]
    try:
        n_batches = 0
        for batch in calib_batches:
            tokens, valid, _ = _unpack(batch, dev)
            current["valid"] = valid.float()
            model(tokens, valid=valid, return_hidden=True)
            count[0] += int(valid.sum())
            n_batches += 1
        if not n_batches:
            raise ValueError("MLP pruning needs at least one calibration batch")
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    out = []
    for i, layer in enumerate(model.layers):
        col = layer.feed_forward.w2.weight.float().norm(dim=0).double()  # ‖W_down[:, j]‖
        out.append((sums[i] / max(count[0], 1) * col).float().cpu())
    return out


def _floors(dims: list[int], min_width: int, multiple: int) -> list[int]:
    """Each layer's least width: `min_width` rounded up to a multiple of `multiple` (one multiple at least), or the
    layer's full width where that is less (keeping a whole layer never needs rounding)."""
    floor = -(-max(min_width, multiple) // multiple) * multiple
    return [min(d, floor) for d in dims]


def _uniform_widths(asked: list[int], dims: list[int], min_width: int, multiple: int) -> list[int]:
    """Per-layer widths of `budget="uniform"`: each asked width is a cap, as the global budget is, so it is rounded
    down to a multiple of `multiple` (a layer kept whole stays whole); one that then falls below the layer's floor
    (`_floors`) is an error, as a global budget below the floors is."""
    widths = []
    for i, (w, d, f) in enumerate(zip(asked, dims, _floors(dims, min_width, multiple))):
        if not 1 <= w <= d:
            raise ValueError(f"layer {i}: cannot keep {w} of {d} MLP neurons")
        kept = w if w == d else w // multiple * multiple
        if kept < f:
            raise ValueError(f"layer {i}: width {w}, rounded down to a multiple of {multiple} ({kept}), is below the "
                             f"per-layer floor {f} (min_width {min_width}, multiple_of {multiple})")
        widths.append(kept)
    return widths


def _global_widths(scores: list[Tensor], dims: list[int], total: int, min_width: int, multiple: int) -> list[int]:
    """Per-layer widths for a global budget of `total` neurons. Each width is a multiple of `multiple` or the
    layer's full width, at least its floor (`_floors`), and together at most `total`. From those floors, the step
    (to the next multiple, or to the full width) whose neurons score highest on average is taken while it fits;
    with `multiple = 1` that is the global top-k."""
    ranked = [s.double().sort(descending=True).values for s in scores]
    widths = _floors(dims, min_width, multiple)
    if sum(widths) > total:
        raise ValueError(f"a global budget of {total} MLP neurons is below the per-layer floors {widths} "
                         f"(min_width {min_width}, multiple_of {multiple})")

    def step(i: int) -> tuple[float, int, int]:
        nxt = min(dims[i], (widths[i] // multiple + 1) * multiple)
        return -float(ranked[i][widths[i]:nxt].mean()), i, nxt

    heap = [step(i) for i in range(len(dims)) if widths[i] < dims[i]]
    heapq.heapify(heap)
    left = total - sum(widths)
    while heap:
        _, i, nxt = heapq.heappop(heap)
        if nxt - widths[i] > left:
            continue  # this layer's next step never fits again: the budget only shrinks
        left -= nxt - widths[i]
        widths[i] = nxt
        if nxt < dims[i]:
            heapq.heappush(heap, step(i))
    return widths


def prune_mlp(
    model: Transformer,
    width: int | Sequence[int],
    calib_batches: Iterable,
    budget: str = "uniform",
    min_width: int = 1,
    multiple_of: int = 1,
) -> tuple[Transformer, PruneReport]:
    """Keep the highest-scoring intermediate neurons of every MLP (gate/up rows and down columns together).

    `width`: one width for every layer, or a list with one per layer (`budget="uniform"` only). With
    `budget="global"`, at most `width × n_layers` neurons are kept in total wherever they score highest. Either way
    each layer's width is a multiple of `multiple_of` or its full width, and at least `min_width` (see
    `_uniform_widths`, `_global_widths`).
    """
    _require_float(model, "prune_mlp")
    if multiple_of < 1:
        raise ValueError(f"multiple_of must be ≥ 1, got {multiple_of}")
    dims = model.args.ffn_dims
    L = len(dims)
    if budget not in ("uniform", "global"):
        raise ValueError(f"budget must be 'uniform' or 'global', got {budget!r}")
    scores = score_mlp(model, calib_batches)
    if budget == "uniform":
        asked = [int(width)] * L if isinstance(width, int) else [int(w) for w in width]
        if len(asked) != L:
            raise ValueError(f"width has {len(asked)} entries for {L} layers")
        widths = _uniform_widths(asked, list(dims), int(min_width), int(multiple_of))
    else:
        if not isinstance(width, int):
            raise ValueError("budget='global' takes one width (the average per layer)")
        widths = _global_widths(scores, list(dims), int(width) * L, int(min_width), int(multiple_of))
    keep_idx = [torch.topk(s, w).indices.sort().values for s, w in zip(scores, widths)]

    state = _state(model)
    for i, idx in enumerate(keep_idx):
        p = f"layers.{i}.feed_forward."
        state[p + "w1.weight"] = state[p + "w1.weight"][idx.to(state[p + "w1.weight"].device)].clone()
        state[p + "w3.weight"] = state[p + "w3.weight"][idx.to(state[p + "w3.weight"].device)].clone()
        state[p + "w2.weight"] = state[p + "w2.weight"][:, idx.to(state[p + "w2.weight"].device)].clone()
    old = model.args
    entry = {"step": "prune_mlp", "budget": budget, "widths": widths, "from": list(dims)}
    args = ModelArgs.from_dict({**old.to_dict(), "ffn_dims": widths, "extra": _provenance(old, entry)})
    new = rebuild(model, args, state)
    summary = []
    for s, idx in zip(scores, keep_idx):
        mask = torch.ones_like(s, dtype=torch.bool)
        mask[idx] = False
        summary.append({"kept_mean": float(s[idx].mean()), "dropped_max": float(s[mask].max()) if mask.any() else None})
    report = PruneReport("prune_mlp", budget, summary, widths, [d - w for d, w in zip(dims, widths)],
                         model.num_params(), new.num_params(), {"from": list(dims)})
    return new, report


# ---------------------------------------------------------------------------------------------- tokens
ANSWER_SPECIALS = ("<|eot_id|>", "<|end_of_text|>")


def guard_output_token_ids(tokenizer: Tokenizer, policy: Policy, extra_texts: Sequence[str] = ()) -> list[int]:
    """Every vocabulary id a guard needs to *emit* an answer under `policy`, computed from the tokenizer.

    Covers the tokenization of `safe`, `unsafe`, `\\n`, `,`, each category code alone, every one- and
    two-code answer (`unsafe\\nS1`, `unsafe\\nS1,S10`, …: byte-level BPE may merge a comma with the next
    letter, so codes are tokenized in context too; longer lists repeat the same boundaries), plus
    `<|eot_id|>` and `<|end_of_text|>`. Sorted ascending.
    """
    codes = policy.codes
    texts = ["safe", "unsafe", "unsafe\n", "\n", ",", *codes, *extra_texts]
    for a in codes:
        texts.append("unsafe\n" + a)
        for b in codes:
            if a != b:
                texts.append(f"unsafe\n{a},{b}")
    ids = {t for text in texts for t in tokenizer.encode(text)}
    ids |= {tokenizer.special(s) for s in ANSWER_SPECIALS if s in tokenizer.specials}
    return sorted(ids)


def output_coverage(model: Transformer, tokenizer: Tokenizer, policy: Policy) -> list[int]:
    """Vocabulary ids the policy's answers need that the model's (pruned) head cannot emit; [] when fine."""
    need = guard_output_token_ids(tokenizer, policy)
    return [t for t, r in zip(need, model.head_rows(need)) if r is None]


def check_output_policy(model: Transformer, tokenizer: Tokenizer, policy: Policy) -> bool:
    """Warn (and return False) when a pruned head cannot spell every answer of `policy`.

    A head pruned for one policy and then used with another (new category codes) would otherwise fail
    closed at run time with `error` verdicts for the categories it cannot name.
    """
    missing = output_coverage(model, tokenizer, policy)
    if missing:
        pruned_for = next((e.get("policy_codes") for e in reversed(model.args.extra.get("compression", []))
                           if e.get("step") == "prune_output"), None)
        warnings.warn(
            f"the output head was pruned for policy codes {pruned_for} and cannot emit tokens "
            f"{[tokenizer.decode([t]) for t in missing]} needed by the policy {policy.codes}; re-run prune_output "
            "with this policy (from the unpruned checkpoint) or expect error verdicts",
            stacklevel=2,
        )
        return False
    return True


def prune_output(model: Transformer, tokenizer: Tokenizer, policy: Policy, extra_token_ids: Sequence[int] = ()) -> Transformer:
    """Keep only the head rows of the tokens a guard can emit under `policy` (the paper's 128k → ~20 rows).

    The kept rows are the full head's weights, bit for bit; their logits match the full head's up to float
    rounding (a matmul of another shape: 4.8e-6 at most on the toy teacher) and the guard's verdicts are the same.
    Tied embeddings are untied first
    (the input embedding keeps the whole vocabulary). An already pruned head can be pruned further but
    must still hold every needed token.
    """
    _require_float(model, "prune_output")
    if tokenizer.vocab_size > model.args.vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} tokens but the model only {model.args.vocab_size}")
    keep = sorted(set(guard_output_token_ids(tokenizer, policy)) | {int(t) for t in extra_token_ids})
    rows = model.head_rows(keep)
    if None in rows:
        lacking = [t for t, r in zip(keep, rows) if r is None]
        raise ValueError(f"the model's head already lacks tokens {lacking} this policy needs")
    model = untie(model)
    old = model.args
    entry = {"step": "prune_output", "policy_codes": policy.codes, "n_tokens": len(keep),
             "from": len(old.output_token_ids) if old.output_token_ids is not None else old.vocab_size}
    args = ModelArgs.from_dict({**old.to_dict(), "output_token_ids": keep, "extra": _provenance(old, entry)})
    state = _state(model)
    w = state["output.weight"]
    state["output.weight"] = w[torch.tensor(rows, device=w.device)].clone()
    return rebuild(model, args, state)


def corpus_token_ids(examples: Iterable[dict], tokenizer: Tokenizer, policy: Policy) -> set[int]:
    """Every id of the guard prompts + answers of labelled examples (JSONL schema), for `prune_input`."""
    from ..conversation import Conversation
    from ..prompt import answer_text, encode_prompt

    seen: set[int] = set()
    for ex in examples:
        conv = Conversation.from_messages(ex["messages"], ex.get("role"))
        seen.update(encode_prompt(tokenizer, policy, conv).ids)
        seen.update(tokenizer.encode(answer_text(ex.get("categories") or [])))
    seen.update(guard_output_token_ids(tokenizer, policy))
    seen.update(tokenizer.special_ids)
    return seen


def prune_input(model: Transformer, token_ids_seen: Iterable[int], fallback_id: int) -> Transformer:
    """Keep only the embedding rows of `token_ids_seen` (plus `fallback_id`); unseen ids read the fallback row.

    Tied embeddings are untied first (the head keeps its rows). Ids outside the kept set then all embed as
    `fallback_id` — pick a neutral token (e.g. a space or `<|reserved_special_token_0|>`).
    """
    _require_float(model, "prune_input")
    old = model.args
    keep = sorted({int(t) for t in token_ids_seen} | {int(fallback_id)})
    if keep[0] < 0 or keep[-1] >= old.vocab_size:
        raise ValueError("token ids must lie inside the vocabulary")
    if old.input_token_ids is not None:
        present = set(old.input_token_ids)
        lacking = [t for t in keep if t not in present]
        if lacking:
            raise ValueError(f"the embedding was already pruned and lacks ids {lacking[:10]}…")
        row = {t: i for i, t in enumerate(old.input_token_ids)}
        rows = [row[t] for t in keep]
    else:
        rows = keep
    model = untie(model)
    old = model.args
    entry = {"step": "prune_input", "n_tokens": len(keep), "fallback_id": int(fallback_id)}
    args = ModelArgs.from_dict({**old.to_dict(), "input_token_ids": keep, "embed_fallback_id": int(fallback_id),
                                "extra": _provenance(old, entry)})
    state = _state(model)
    e = state["tok_embeddings.weight"]
    state["tok_embeddings.weight"] = e[torch.tensor(rows, device=e.device)].clone()
    return rebuild(model, args, state)
