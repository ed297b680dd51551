"""Labelled conversations for evaluation: the generic schema and adapters for public sets.

Every reader yields `Example`s in the generic schema (docs/design.md). A row that cannot be read is a
`Problem` with its line number; by default any problem stops the read (`DataError` lists them all), so a
typo in a dev set never silently shrinks it. `skip_malformed=True` keeps the good rows and returns the
problems for the report.

Adapters map each set's own labels to S1–S14 with the tables below (docs/evaluation.md shows them). A set
label with no S1–S14 equivalent maps to `None`: the example stays unsafe, but its categories are unknown
and it is left out of per-category metrics rather than counted as a miss for some arbitrary code.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ..conversation import Conversation, ConversationError
from ..policy import Policy

FORMATS = ("generic", "openai-moderation", "xstest", "donotanswer", "harmbench")


class DataError(ValueError):
    """The data file cannot be used as given; `problems` holds every bad row."""

    def __init__(self, message: str, problems: list["Problem"] | None = None):
        self.problems = problems or []
        shown = "\n".join(f"  {p}" for p in self.problems[:20])
        more = f"\n  … and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
        super().__init__(message + (f"\n{shown}{more}" if shown else ""))


@dataclass(frozen=True)
class Problem:
    path: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass
class Example:
    """One labelled conversation. `categories` is None when the label is unsafe but the codes are unknown."""

    messages: list[dict]
    role: str  # "user" (prompt classification) or "agent" (response classification)
    label: str  # "safe" | "unsafe"
    categories: list[str] | None = field(default_factory=list)
    language: str | None = None
    source: str | None = None
    lookalike: bool = False  # a benign example that looks risky (docs/data.md): FPR on these is reported apart
    line: int = 0
    meta: dict = field(default_factory=dict)

    @property
    def unsafe(self) -> bool:
        return self.label == "unsafe"

    def to_dict(self) -> dict:
        """The generic JSONL schema (what `read_examples(format="generic")` reads back)."""
        d: dict[str, Any] = {"messages": self.messages, "role": self.role, "label": self.label}
        if self.categories is not None:
            d["categories"] = self.categories
        for key in ("language", "source"):
            if getattr(self, key) is not None:
                d[key] = getattr(self, key)
        if self.lookalike:
            d["lookalike"] = True
        return d


class RowError(ValueError):
    """Raised by a row parser; becomes a Problem with the row's line number."""


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


# ---------------------------------------------------------------- raw rows with line numbers
def _open_text(path: Path) -> io.TextIOBase:
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _json_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, parsed object) per non-blank line; a line that is not JSON yields a RowError in its place."""
    with _open_text(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except json.JSONDecodeError as e:
                yield n, RowError(f"not valid JSON: {e.msg} (column {e.colno})")


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(first line of the record, {column: value}); records may span lines inside quotes."""
    with _open_text(path) as f:
        reader = csv.reader(f)
        try:
            header = [h.strip().lstrip("\ufeff") for h in next(reader)]
        except StopIteration:
            return
        end = reader.line_num
        for row in reader:
            start, end = end + 1, reader.line_num
            if not any(cell.strip() for cell in row):
                continue
            if len(row) != len(header):
                yield start, RowError(f"has {len(row)} fields but the header has {len(header)}")
                continue
            yield start, dict(zip(header, row))


def _rows(path: Path) -> Iterator[tuple[int, Any]]:
    name = path.name.lower().removesuffix(".gz")
    if name.endswith((".jsonl", ".json", ".ndjson")):
        return _json_rows(path)
    if name.endswith(".csv"):
        return _csv_rows(path)
    raise DataError(f"{path}: unknown file type; use .jsonl or .csv (optionally .gz)")


# ---------------------------------------------------------------- row parsers
def _str(row: dict, key: str, required: bool = True) -> str | None:
    value = row.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise RowError(f"missing {key!r}")
        return None
    if not isinstance(value, str):
        raise RowError(f"{key!r} must be a string, got {type(value).__name__}")
    return value


def _check_codes(codes: list[str] | None, policy: Policy) -> list[str] | None:
    if codes is None:
        return None
    unknown = [c for c in codes if c not in policy]
    if unknown:
        raise RowError(f"unknown categories {unknown}; the policy has {', '.join(policy.codes)}")
    if len(set(codes)) != len(codes):
        raise RowError(f"duplicate categories in {codes}")
    return codes


def _example(messages: list[dict], label: str, categories: list[str] | None, policy: Policy, role: str | None = None,
             **kw) -> Example:
    """Validate a conversation (alternating turns, judged role matches the last turn) and its label."""
    try:
        conv = Conversation.from_messages(messages, role)
    except ConversationError as e:
        raise RowError(str(e)) from None
    if label not in ("safe", "unsafe"):
        raise RowError(f"label must be 'safe' or 'unsafe', got {label!r}")
    if label == "safe":
        if categories:
            raise RowError(f"a safe example cannot have categories {categories}")
        return Example(conv.to_messages(), conv.judged, label, [], **kw)
    codes = _check_codes(list(categories), policy) if categories else None  # unsafe without codes: unknown
    return Example(conv.to_messages(), conv.judged, label, codes, **kw)


def _generic(row: Any, policy: Policy) -> Example:
    if not isinstance(row, dict):
        raise RowError(f"each row must be an object, got {type(row).__name__}")
    messages = row.get("messages")
    if isinstance(messages, str) and not messages.strip():
        messages = None
    if isinstance(messages, str):  # a CSV cell holding a JSON list
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError as e:
            raise RowError(f"'messages' is not a JSON list: {e.msg}") from None
    if messages is None:
        text = _str(row, "text", required=False) or _str(row, "prompt", required=False)
        if text is None:
            raise RowError("needs 'messages', 'text' or 'prompt'")
        messages = [{"role": "user", "content": text}]
        response = _str(row, "response", required=False)
        if response is not None:
            messages.append({"role": "assistant", "content": response})
    label = row.get("label")
    if not isinstance(label, str):
        raise RowError(f"label must be 'safe' or 'unsafe', got {label!r}")
    label = label.strip().lower()
    cats = row.get("categories", [])
    if isinstance(cats, str):  # CSV: "S1,S10" or "S1;S10"
        cats = [c.strip() for c in cats.replace(";", ",").split(",") if c.strip()]
    if cats is not None and not (isinstance(cats, list) and all(isinstance(c, str) for c in cats)):
        raise RowError(f"categories must be a list of codes, got {cats!r}")
    role = _str(row, "role", required=False)
    lookalike = row.get("lookalike", False)
    if isinstance(lookalike, str) and lookalike.strip().lower() in ("", "true", "false", "0", "1"):  # a CSV cell
        lookalike = lookalike.strip().lower() in ("true", "1")
    if not isinstance(lookalike, bool):
        raise RowError(f"lookalike must be true or false, got {lookalike!r}")
    if lookalike and label != "safe":
        raise RowError("lookalike marks a benign example that looks risky: its label must be 'safe'")
    return _example(messages, label, cats, policy, role, lookalike=lookalike,
                    language=_str(row, "language", required=False), source=_str(row, "source", required=False))


def _openai_moderation(row: Any, policy: Policy) -> Example:
    if not isinstance(row, dict):
        raise RowError(f"each row must be an object, got {type(row).__name__}")
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
    return _example([{"role": "user", "content": _str(row, "prompt")}], "unsafe" if on else "safe",
                    None if unknown else codes, policy, source="openai-moderation", language="en",
                    meta={"flags": on})


def _xstest(row: Any, policy: Policy) -> Example:
    kind = _str(row, "type")
    if kind in XSTEST_SAFE_TYPES:
        label, codes = "safe", []
    elif kind in XSTEST_UNSAFE_TYPES:
        label, codes = "unsafe", XSTEST_UNSAFE_TYPES[kind]
    else:
        raise RowError(f"unknown XSTest type {kind!r}")
    given = _str(row, "label", required=False)  # present in xstest_prompts.csv, absent in xstest_v2_prompts.csv
    if given is not None and given.strip().lower() != label:
        raise RowError(f"label {given!r} contradicts type {kind!r}")
    return _example([{"role": "user", "content": _str(row, "prompt")}], label, codes, policy,
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
    harm = _str(row, "types_of_harm")
    codes = _harm_codes(DONOTANSWER_HARMS, harm, "types_of_harm")
    question = _str(row, "question")
    meta = {"types_of_harm": harm, "risk_area": row.get("risk_area")}
    out = [_example([{"role": "user", "content": question}], "unsafe", codes, policy, source="donotanswer",
                    language="en", meta=meta)]
    for model in DONOTANSWER_MODELS:
        response, harmful = row.get(f"{model}_response"), row.get(f"{model}_harmful")
        if response is None or harmful is None or not str(response).strip():
            continue
        if str(harmful).strip() not in ("0", "1"):
            raise RowError(f"{model}_harmful must be 0 or 1, got {harmful!r}")
        unsafe = str(harmful).strip() == "1"
        msgs = [{"role": "user", "content": question}, {"role": "assistant", "content": str(response)}]
        out.append(_example(msgs, "unsafe" if unsafe else "safe", codes if unsafe else [], policy,
                            source=f"donotanswer:{model}", language="en", meta=meta | {"model": model}))
    return out


def _harmbench(row: Any, policy: Policy) -> Example:
    behavior = _str(row, "Behavior")
    semantic = _str(row, "SemanticCategory")
    context = _str(row, "ContextString", required=False)
    # HarmBench's own layout for contextual behaviours: the context, a rule, then the request.
    text = f"{context}\n\n---\n\n{behavior}" if context else behavior
    return _example([{"role": "user", "content": text}], "unsafe",
                    _harm_codes(HARMBENCH_CATEGORIES, semantic, "SemanticCategory"), policy, source="harmbench",
                    language="en", meta={"id": row.get("BehaviorID"), "functional": row.get("FunctionalCategory"),
                                         "semantic": semantic})


PARSERS: dict[str, Callable[[Any, Policy], Example | list[Example]]] = {
    "generic": _generic,
    "openai-moderation": _openai_moderation,
    "xstest": _xstest,
    "donotanswer": _donotanswer,
    "harmbench": _harmbench,
}


def read_examples(
    path: str | Path, format: str = "generic", policy: Policy | None = None, skip_malformed: bool = False
) -> tuple[list[Example], list[Problem]]:
    """Read a labelled file. Raises DataError listing every malformed row unless `skip_malformed`."""
    path = Path(path)
    if format not in PARSERS:
        raise DataError(f"unknown format {format!r}; choose one of {', '.join(FORMATS)}")
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    policy = policy or Policy.default()
    parse = PARSERS[format]
    examples: list[Example] = []
    problems: list[Problem] = []
    try:
        for line, row in _rows(path):
            try:
                if isinstance(row, RowError):
                    raise row
                if format != "generic" and not isinstance(row, dict):
                    raise RowError(f"each row must be an object, got {type(row).__name__}")
                got = parse(row, policy)
            except RowError as e:
                problems.append(Problem(str(path), line, str(e)))
                continue
            for ex in got if isinstance(got, list) else [got]:
                ex.line = line
                examples.append(ex)
    except (UnicodeDecodeError, csv.Error, OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read: {e}") from None
    if problems and not skip_malformed:
        raise DataError(f"{path}: {len(problems)} malformed row(s) (use --skip-malformed to skip them):", problems)
    if not examples:
        raise DataError(f"{path}: no usable examples", problems)
    return examples, problems


def write_examples(examples: list[Example], path: str | Path) -> None:
    """Write the generic JSONL schema (e.g. to convert a public set once and version it)."""
    with open(path, "w", encoding="utf-8") as f:
        for ex in examples:
            f.write(json.dumps(ex.to_dict(), ensure_ascii=False) + "\n")
