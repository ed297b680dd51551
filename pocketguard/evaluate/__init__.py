"""Evaluation: labelled data readers, guard metrics, fidelity against a reference, reports (docs/evaluation.md)."""

from .data import FORMATS, DataError, Example, Problem, read_examples, write_examples
from .fidelity import Divergence, Perplexity, kl_divergence, perplexity, verdict_agreement
from .metrics import evaluate, evaluate_examples, intervals, paired_difference

__all__ = [
    "FORMATS", "DataError", "Example", "Problem", "read_examples", "write_examples",
    "Divergence", "Perplexity", "kl_divergence", "perplexity", "verdict_agreement",
    "evaluate", "evaluate_examples", "intervals", "paired_difference",
]
