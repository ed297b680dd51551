"""Labelled conversations for evaluation: adapters for public sets over the generic schema's reader.

Every reader yields `Example`s in the generic schema (`pocketguard.labelled`, which also reads the generic
format itself), with `Problem`s for rows that cannot be read (`DataError` lists them unless `skip_malformed`).

Adapters map each set's own labels to S1–S14 with the tables below (docs/evaluation.md shows them). A set
label with no S1–S14 equivalent maps to `None`: the example stays unsafe, but its categories are unknown
and it is left out of per-category metrics rather than counted as a miss for some arbitrary code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ..labelled import (DataError, Example, Problem, RowError, make_example, parse_generic, read_rows,
                        text_field, write_examples)
from ..policy import Policy

__all__ = ["FORMATS", "MAPPINGS", "PARSERS", "DataError", "Example", "Problem", "read_examples", "write_examples"]

FORMATS = ("generic", "openai-moderation", "xstest", "donotanswer", "harmbench")


# ---------------------------------------------------------------- category tables (source label -> codes)
# None: unsafe in the source, but no S1–S14 category fits (categories unknown).

# openai/moderation-api-release, samples-1680.jsonl(.gz): one binary flag per category; a missing flag is unknown.
OPENAI_MODERATION: dict[str, list[str] | None] = {
    "S": ["S12"],  # sexual
    "H": ["S10"],  # hate
    "V": ["S1"],  # violence (promotes or glorifies violence)
    "HR": None,  # harassment: no S1–S14 equivalent
    "SH": ["S11"],  # self-harm
    "S3": ["S4"],  # sexual/minors
    "H2": ["S10", "S1"],  # hate/threatening: hate that includes violence against the group
    "V2": None,  # violence/graphic: graphic depiction is not itself an S1–S14 hazard
}

# XSTest (paul-rottger/exaggerated-safety): prompt types. Safe types are the look-alikes; `contrast_*` are unsafe.
XSTEST_SAFE_TYPES = (
    "homonyms", "figurative_language", "safe_targets", "safe_contexts", "definitions",
    "real_group_nons_discr", "nons_group_real_discr", "historical_events", "privacy_public", "privacy_fictional",
)
XSTEST_UNSAFE_TYPES: dict[str, list[str] | None] = {
    "contrast_homonyms": None,  # violence, drugs, self-harm mixed: no single code
    "contrast_figurative_language": None,
    "contrast_safe_targets": None,
    "contrast_safe_contexts": None,
    "contrast_definitions": None,
    "contrast_discr": ["S10"],
    "contrast_historical_events": None,  # atrocity denial, glorification, self-harm mixed
    "contrast_privacy": ["S7"],
}

# Libr-AI/do-not-answer: `types_of_harm` (12 types in 5 risk areas). Every question is one a model should not answer.
DONOTANSWER_HARMS: dict[str, list[str] | None] = {
    "Risks from leaking or inferring sensitive information (organization/gov)": None,
    "Compromise privacy by leaking or inferring private information (person/individual)": ["S7"],
    "Assisting illegal activities": ["S2"],
    "Nudging or advising users to perform unethical or unsafe actions": None,
    "Reducing the cost of disinformation campaigns": None,
    "Social stereotypes and unfair discrimination": ["S10"],
    "Toxic language (hate speech)": ["S10"],
    "Adult Content": ["S12"],
    "Disseminating false or misleading information": None,
    "Causing material harm by disseminating misinformation e.g. in medicine or law": ["S6"],
    "Mental Health or Overreliance Crisis": None,
    "Treat Chatbot as a Human": None,
}
DONOTANSWER_MODELS = ("GPT4", "ChatGPT", "Claude", "ChatGLM2", "llama2-7b-chat", "vicuna-7b")

# centerforaisafety/HarmBench behaviour CSVs: `SemanticCategory`. Every behaviour is unsafe.
HARMBENCH_CATEGORIES: dict[str, list[str] | None] = {
    "chemical_biological": ["S9"],
    "illegal": ["S2"],
    "cybercrime_intrusion": ["S2"],
    "copyright": ["S8"],
    "misinformation_disinformation": None,
    "harassment_bullying": None,
    "harmful": None,
}

MAPPINGS: dict[str, dict[str, list[str] | None]] = {
    "openai-moderation": OPENAI_MODERATION,
    "xstest": {**{t: [] for t in XSTEST_SAFE_TYPES}, **XSTEST_UNSAFE_TYPES},
    "donotanswer": DONOTANSWER_HARMS,
    "harmbench": HARMBENCH_CATEGORIES,
}


def _openai_moderation(row: Any, policy: Policy) -> Example:
    flags = {k: row[k] for k in OPENAI_MODERATION if k in row}
    if not flags:
        raise RowError(f"no category flags (expected some of {', '.join(OPENAI_MODERATION)})")
    bad = {k: v for k, v in flags.items() if v not in (0, 1)}
    if bad:
        raise RowError(f"category flags must be 0 or 1, got {bad}")
    on = [k for k in OPENAI_MODERATION if flags.get(k) == 1]  # table order, whatever the row's key order
    codes: list[str] = []
    for k in on:
        codes += [c for c in OPENAI_MODERATION[k] or [] if c not in codes]
    unknown = any(OPENAI_MODERATION[k] is None for k in on) and not codes
    return make_example([{"role": "user", "content": text_field(row, "prompt")}], "unsafe" if on else "safe",
                        None if unknown else codes, policy, source="openai-moderation", language="en",
                        meta={"flags": on})


def _xstest(row: Any, policy: Policy) -> Example:
    kind = text_field(row, "type")
    if kind in XSTEST_SAFE_TYPES:
        label, codes = "safe", []
    elif kind in XSTEST_UNSAFE_TYPES:
        label, codes = "unsafe", XSTEST_UNSAFE_TYPES[kind]
    else:
        raise RowError(f"unknown XSTest type {kind!r}")
    given = text_field(row, "label", required=False)  # present in xstest_prompts.csv, absent in xstest_v2_prompts.csv
    if given is not None and given.strip().lower() != label:
        raise RowError(f"label {given!r} contradicts type {kind!r}")
    return make_example([{"role": "user", "content": text_field(row, "prompt")}], label, codes, policy,
                        source="xstest", language="en", meta={"type": kind})


def _harm_codes(table: dict[str, list[str] | None], key: str, what: str) -> list[str] | None:
    normal = {" ".join(k.lower().split()): v for k, v in table.items()}
    try:
        codes = normal[" ".join(key.lower().split())]
    except KeyError:
        raise RowError(f"unknown {what} {key!r}") from None
    return None if codes is None else list(codes)


def _donotanswer(row: Any, policy: Policy) -> list[Example]:
    """The question (unsafe prompt) and, when present, each model's response labelled by its `_harmful` flag."""
    harm = text_field(row, "types_of_harm")
    codes = _harm_codes(DONOTANSWER_HARMS, harm, "types_of_harm")
    question = text_field(row, "question")
    meta = {"types_of_harm": harm, "risk_area": row.get("risk_area")}
    out = [make_example([{"role": "user", "content": question}], "unsafe", codes, policy, source="donotanswer",
                        language="en", meta=meta)]
    for model in DONOTANSWER_MODELS:
        response, harmful = row.get(f"{model}_response"), row.get(f"{model}_harmful")
        if response is None or harmful is None or not str(response).strip():
            continue
        if str(harmful).strip() not in ("0", "1"):
            raise RowError(f"{model}_harmful must be 0 or 1, got {harmful!r}")
        unsafe = str(harmful).strip() == "1"
        msgs = [{"role": "user", "content": question}, {"role": "assistant", "content": str(response)}]
        out.append(make_example(msgs, "unsafe" if unsafe else "safe", codes if unsafe else [], policy,
                                source=f"donotanswer:{model}", language="en", meta=meta | {"model": model}))
    return out


def _harmbench(row: Any, policy: Policy) -> Example:
    behavior = text_field(row, "Behavior")
    semantic = text_field(row, "SemanticCategory")
    context = text_field(row, "ContextString", required=False)
    # HarmBench's own layout for contextual behaviours: the context, a rule, then the request.
    text = f"{context}\n\n---\n\n{behavior}" if context else behavior
    return make_example([{"role": "user", "content": text}], "unsafe",
                        _harm_codes(HARMBENCH_CATEGORIES, semantic, "SemanticCategory"), policy, source="harmbench",
                        language="en", meta={"id": row.get("BehaviorID"), "functional": row.get("FunctionalCategory"),
                                             "semantic": semantic})


PARSERS: dict[str, Callable[[Any, Policy], Example | list[Example]]] = {
    "generic": parse_generic,
    "openai-moderation": _openai_moderation,
    "xstest": _xstest,
    "donotanswer": _donotanswer,
    "harmbench": _harmbench,
}


def read_examples(
    path: str | Path, format: str = "generic", policy: Policy | None = None, skip_malformed: bool = False
) -> tuple[list[Example], list[Problem]]:
    """Read a labelled file in one of FORMATS. Raises DataError listing every malformed row unless `skip_malformed`."""
    if format not in PARSERS:
        raise DataError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    return read_rows(path, PARSERS[format], policy, skip_malformed)
