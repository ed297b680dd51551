"""How faithful a compressed model is to its reference: perplexity, KL divergence, top-token agreement on a
text file (the numbers llama.cpp's quantizers publish), and verdict agreement on labelled data.

Text is scored as one token stream in overlapping windows: each window holds `window` tokens, the next one
starts `stride` tokens later, and every token is scored exactly once, in the first window where it has at
least `window - stride` tokens of context (except at the start of the text). A `<|begin_of_text|>` token
starts the stream when the tokenizer has one.

Pruned output heads: `model.output_token_ids` maps head rows to vocabulary ids. Perplexity then counts only
targets the head kept (the rest are reported as skipped). KL divergence and top-token agreement compare the
two models over the vocabulary ids both heads kept, each distribution renormalised over that common set, and
so does the perplexity ratio (over the targets both heads kept): a pruned head's own perplexity is not comparable
with a full head's.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from sklearn.metrics import cohen_kappa_score
from torch import Tensor, nn

from .metrics import _num, failed, get, predicted


@dataclass
class Perplexity:
    perplexity: float
    nll: float  # mean negative log-likelihood per scored token (nats)
    tokens: int  # scored tokens
    skipped_tokens: int  # targets a pruned head cannot score

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Divergence:
    """KL(reference ‖ model) per token, over the common kept vocabulary; perplexities from the same pass."""

    kl_mean: float
    kl_median: float
    kl_p99: float
    kl_max: float
    top1_agreement: float  # fraction of positions where both models' most likely token is the same
    tokens: int
    compared_vocab: int  # vocabulary ids both heads have
    model: Perplexity
    reference: Perplexity
    # both models on the same footing: the targets both heads kept, each softmax over the common kept ids (the
    # distributions KL compares). With identical heads these are `model` and `reference` themselves.
    common_nll_model: float | None = None
    common_nll_reference: float | None = None
    common_tokens: int = 0

    @property
    def perplexity_ratio(self) -> float | None:
        """exp(mean NLL difference) over the common targets: a pruned head's own perplexity (its kept targets, its
        kept softmax) and a full head's are not comparable, so the ratio never divides one by the other."""
        if not self.common_tokens or self.common_nll_model is None or self.common_nll_reference is None:
            return None  # no target that both heads kept
        return float(np.exp(self.common_nll_model - self.common_nll_reference))

    def to_dict(self) -> dict:
        return asdict(self) | {"perplexity_ratio": self.perplexity_ratio}


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _head_ids(model: nn.Module, n_out: int) -> Tensor:
    ids = getattr(model, "output_token_ids", None)
    return torch.arange(n_out) if ids is None else ids.detach().cpu().long()


def _tokens(tokenizer: Any, text: str, bos: bool) -> list[int]:
    ids = tokenizer.encode(text)
    start = (getattr(tokenizer, "specials", None) or {}).get("<|begin_of_text|>") if bos else None
    ids = ([start] if start is not None else []) + list(ids)
    if len(ids) < 2:
        raise ValueError("the text needs at least two tokens to score")
    return ids


def windows(n: int, window: int, stride: int) -> list[tuple[int, int, int]]:
    """(start, end, first_target) per window: feed tokens[start:end], score targets first_target..end-1."""
    if not 0 < stride < window:
        raise ValueError(f"need 0 < stride < window, got stride={stride}, window={window}")
    out, start, done = [], 0, 1
    while done < n:
        end = min(start + window, n)
        out.append((start, end, done))
        done = end
        start += stride
    return out


def _default_window(models: Sequence[nn.Module], window: int | None) -> int:
    limits = [m.args.max_seq_len for m in models if hasattr(m, "args")]
    return min([window or 512, *limits])


@torch.inference_mode()
def _stream(models: Sequence[nn.Module], ids: list[int], window: int, stride: int,
            rows: int = 64) -> Iterator[tuple[Tensor, list[Tensor]]]:
    """(targets [k], [logits [k, n_out] per model]); row i of logits predicts targets[i].

    Windows are cut into blocks of `rows` positions, so the softmax work over a 128k vocabulary stays small.
    """
    tokens = torch.tensor(ids, dtype=torch.long)
    for start, end, first in windows(len(ids), window, stride):
        chunk = tokens[start:end][None]
        logits = [m(chunk.to(_device(m)))[0, first - 1 - start : end - 1 - start].float().cpu() for m in models]
        for a in range(0, end - first, rows):
            yield tokens[first + a : min(first + a + rows, end)], [lg[a : a + rows] for lg in logits]


class _NLL:
    """Accumulates target log-likelihoods of one model, mapping vocabulary ids to its head rows."""

    def __init__(self, head_ids: Tensor, max_target: int):
        self.lookup = torch.full((max(int(head_ids.max()), max_target) + 1,), -1, dtype=torch.long)
        self.lookup[head_ids] = torch.arange(len(head_ids))
        self.sum, self.tokens, self.skipped = 0.0, 0, 0

    def add(self, logits: Tensor, targets: Tensor) -> None:
        rows = self.lookup[targets]
        ok = rows >= 0
        self.skipped += int((~ok).sum())
        if ok.any():
            logp = torch.log_softmax(logits[ok], -1).gather(1, rows[ok][:, None])
            self.sum -= float(logp.sum())
            self.tokens += int(ok.sum())

    def result(self) -> Perplexity:
        if not self.tokens:
            raise ValueError("no target token is in the model's output head")
        nll = self.sum / self.tokens
        return Perplexity(float(np.exp(nll)), nll, self.tokens, self.skipped)


def perplexity(model: nn.Module, tokenizer: Any, text: str, window: int | None = None, stride: int | None = None,
               bos: bool = True) -> Perplexity:
    """exp(mean NLL) of the text's tokens under `model` (logits from `model(tokens[1, T])` -> [1, T, n_out])."""
    ids = _tokens(tokenizer, text, bos)
    window = _default_window([model], window)
    acc: _NLL | None = None
    for targets, (logits,) in _stream([model], ids, window, stride or window // 2):
        acc = acc or _NLL(_head_ids(model, logits.shape[-1]), max(ids))
        acc.add(logits, targets)
    return acc.result()


def kl_divergence(model: nn.Module, reference: nn.Module, tokenizer: Any, text: str, window: int | None = None,
                  stride: int | None = None, bos: bool = True) -> Divergence:
    """KL(reference ‖ model) at every scored position, plus both perplexities and top-token agreement."""
    ids = _tokens(tokenizer, text, bos)
    window = _default_window([model, reference], window)
    kls: list[Tensor] = []
    agree = 0
    acc_m = acc_r = None
    cols_m = cols_r = None
    common_m = common_r = 0.0  # NLL sums over targets both heads kept, softmax over the common ids
    for targets, (lm, lr) in _stream([model, reference], ids, window, stride or window // 2):
        if cols_m is None:
            ids_m, ids_r = _head_ids(model, lm.shape[-1]), _head_ids(reference, lr.shape[-1])
            common, im, ir = np.intersect1d(ids_m.numpy(), ids_r.numpy(), return_indices=True)
            if not len(common):
                raise ValueError("the two output heads share no vocabulary id")
            cols_m, cols_r, n_common = torch.from_numpy(im), torch.from_numpy(ir), len(common)
            acc_m, acc_r = _NLL(ids_m, max(ids)), _NLL(ids_r, max(ids))
            acc_c = _NLL(torch.from_numpy(common).long(), max(ids))  # maps a target to its common column
        acc_m.add(lm, targets)
        acc_r.add(lr, targets)
        pm, pr = torch.log_softmax(lm[:, cols_m], -1), torch.log_softmax(lr[:, cols_r], -1)
        kls.append((pr.exp() * (pr - pm)).sum(-1).clamp(min=0))
        agree += int((pm.argmax(-1) == pr.argmax(-1)).sum())
        col = acc_c.lookup[targets]
        ok = col >= 0
        common_m -= float(pm[ok].gather(1, col[ok][:, None]).sum())
        common_r -= float(pr[ok].gather(1, col[ok][:, None]).sum())
        acc_c.tokens += int(ok.sum())
    kl = torch.cat(kls).double().numpy()
    n_c = acc_c.tokens
    return Divergence(
        kl_mean=float(kl.mean()), kl_median=float(np.median(kl)), kl_p99=float(np.percentile(kl, 99)),
        kl_max=float(kl.max()), top1_agreement=agree / len(kl), tokens=len(kl), compared_vocab=n_common,
        model=acc_m.result(), reference=acc_r.result(),
        common_nll_model=common_m / n_c if n_c else None, common_nll_reference=common_r / n_c if n_c else None,
        common_tokens=n_c,
    )


def verdict_agreement(predictions: Sequence[Any], reference: Sequence[Any]) -> dict:
    """How often a model's verdicts match the reference's on the same inputs.

    `flagged` compares flagged/not (failures to judge are flagged, as in `metrics.predicted`); `exact` also needs the
    same status and category set (a failure to judge, a non-finite p_unsafe included, counts as an `error` naming no
    category, whatever its status says); `kappa` is Cohen's kappa on flagged; flips count reference→model changes of the
    flagged decision; |Δp_unsafe| is over the examples both judged with a p_unsafe.
    """
    if len(predictions) != len(reference):
        raise ValueError(f"{len(predictions)} predictions but {len(reference)} reference verdicts")
    a, b = predicted(predictions)[0], predicted(reference)[0]

    def judged(v: Any) -> tuple[Any, set]:  # a failure to judge (a non-finite p_unsafe too) is an error naming nothing
        return ("error", set()) if failed(v) else (get(v, "status"), set(get(v, "categories") or []))

    exact = [judged(p) == judged(q) for p, q in zip(predictions, reference)]
    dp = [abs(get(p, "p_unsafe") - get(q, "p_unsafe")) for p, q in zip(predictions, reference)
          if not (failed(p) or failed(q)) and get(p, "p_unsafe") is not None and get(q, "p_unsafe") is not None]
    kappa = None
    if len(a) and len(set(a) | set(b)) > 1:
        kappa = _num(cohen_kappa_score(b, a))
    return {
        "n": len(a),
        "flagged": float((a == b).mean()) if len(a) else None,
        "exact": float(np.mean(exact)) if exact else None,
        "kappa": kappa,
        "mean_abs_dp_unsafe": float(np.mean(dp)) if dp else None,
        "flips_to_flagged": int((a & ~b).sum()),
        "flips_to_safe": int((~a & b).sum()),
    }
