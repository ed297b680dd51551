"""Labelled conversations in pocketguard's generic schema (docs/design.md): `messages` rows, or `text` / `prompt`
(+ `response`) rows; JSONL or CSV, optionally gzipped. One reader for everything that takes labelled rows —
`pocketguard eval` (whose adapters for public sets, `evaluate.data`, build on it), `compress`'s `[data]` and
training (`examples.load_examples`).

A row that cannot be read is a `Problem` with its line number; by default any problem stops the read (`DataError`
lists them all), so a typo in a dev set never silently shrinks it. `skip_malformed=True` keeps the good rows and
returns the problems for the report.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .conversation import Conversation, ConversationError
from .policy import Policy


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
        """The generic JSONL schema (what `read_rows` reads back)."""
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


# ---------------------------------------------------------------- raw rows with line numbers
def _open_text(path: Path) -> io.TextIOBase:
    """UTF-8, with a leading byte-order mark dropped (spreadsheet exports write one; as text it would be part of
    the first JSON line or CSV header)."""
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


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
            except RecursionError:  # json's decoder recurses per level: a line nested ~1,000 deep is no row either
                yield n, RowError("not a row: nested too deeply to read")


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    """(first line of the record, {column: value}); records may span lines inside quotes."""
    with _open_text(path) as f:
        reader = csv.reader(f)
        try:
            header = [h.strip() for h in next(reader)]
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
def text_field(row: dict, key: str, required: bool = True) -> str | None:
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


def make_example(messages: list[dict], label: str, categories: list[str] | None, policy: Policy, role: str | None = None,
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


def parse_generic(row: Any, policy: Policy) -> Example:
    messages = row.get("messages")
    if isinstance(messages, str) and not messages.strip():
        messages = None
    if isinstance(messages, str):  # a CSV cell holding a JSON list
        try:
            messages = json.loads(messages)
        except json.JSONDecodeError as e:
            raise RowError(f"'messages' is not a JSON list: {e.msg}") from None
    if messages is None:
        text = text_field(row, "text", required=False) or text_field(row, "prompt", required=False)
        if text is None:
            raise RowError("needs 'messages', 'text' or 'prompt'")
        messages = [{"role": "user", "content": text}]
        response = text_field(row, "response", required=False)
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
    role = text_field(row, "role", required=False)
    lookalike = row.get("lookalike", False)
    if isinstance(lookalike, str) and lookalike.strip().lower() in ("", "true", "false", "0", "1"):  # a CSV cell
        lookalike = lookalike.strip().lower() in ("true", "1")
    if not isinstance(lookalike, bool):
        raise RowError(f"lookalike must be true or false, got {lookalike!r}")
    if lookalike and label != "safe":
        raise RowError("lookalike marks a benign example that looks risky: its label must be 'safe'")
    return make_example(messages, label, cats, policy, role, lookalike=lookalike,
                        language=text_field(row, "language", required=False),
                        source=text_field(row, "source", required=False))


def read_rows(path: str | Path, parse: Callable[[Any, Policy], "Example | list[Example]"] | None = None,
              policy: Policy | None = None, skip_malformed: bool = False) -> tuple[list[Example], list[Problem]]:
    """Read a labelled file row by row with `parse` (default: the generic schema). Raises DataError listing every
    malformed row unless `skip_malformed`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"data file not found: {path}")
    policy = policy or Policy.default()
    parse = parse or parse_generic
    examples: list[Example] = []
    problems: list[Problem] = []
    try:
        for line, row in _rows(path):
            try:
                if isinstance(row, RowError):
                    raise row
                if not isinstance(row, dict):
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
