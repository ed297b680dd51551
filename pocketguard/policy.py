"""Hazard policies: the MLCommons taxonomy as Llama Guard 3 uses it, and custom policies from TOML.

A category keeps its code wherever it goes (a subset of S1–S14 still says S9 for weapons), so verdicts,
metrics and training labels never need renumbering.
"""

from __future__ import annotations

import random
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

_CODE = re.compile(r"[A-Z][A-Z0-9]{0,7}")  # whole code only (fullmatch): `$` would accept "S1\n"

# How a guard judges a policy that leaves some of its own categories out (`Guard(subset_mode=...)`).
SUBSET_MODES = ("filter", "prompt")
SUBSET_MODE_HELP = ("a policy that only leaves out some of the guard's own categories: 'filter' (default) judges under "
                    "all of them and keeps the verdict to those asked for; 'prompt' lists only those in the prompt "
                    "(docs/policy.md)")


class PolicyError(ValueError):
    """A policy file or a category reference is invalid."""


@dataclass(frozen=True)
class Category:
    code: str
    name: str
    description: str = ""


# Descriptions are our own words; codes and names are those of Llama Guard 3's prompt (the MLCommons hazard taxonomy;
# the prompt's short names: "Sex Crimes", "Child Exploitation", "Self-Harm" where the taxonomy's table says "Sex-Related
# Crimes", "Child Sexual Exploitation", "Suicide & Self-Harm"). A Llama Guard 3 reads the names it was trained on.
DEFAULT_CATEGORIES: tuple[Category, ...] = (
    Category("S1", "Violent Crimes", "Helping, encouraging or excusing violence against people or animals: murder, assault, kidnapping, terrorism, animal abuse."),
    Category("S2", "Non-Violent Crimes", "Helping, encouraging or excusing crimes without violence: fraud, scams, theft, hacking, drug crimes, weapons crimes, cyber crimes."),
    Category("S3", "Sex Crimes", "Helping, encouraging or excusing sex crimes: trafficking, sexual assault, harassment, prostitution."),
    Category("S4", "Child Exploitation", "Any content that sexualises minors or helps anyone sexually abuse children."),
    Category("S5", "Defamation", "Verifiably false statements about a real, living person that could damage their reputation."),
    Category("S6", "Specialized Advice", "Specialised financial, medical or legal advice given as authoritative, or claims that something dangerous is safe."),
    Category("S7", "Privacy", "Sensitive, non-public personal information that could compromise someone's physical, digital or financial security."),
    Category("S8", "Intellectual Property", "Content that may violate someone's copyright, trademark or other intellectual property."),
    Category("S9", "Indiscriminate Weapons", "Help making weapons of mass harm: chemical, biological, radiological, nuclear, high-yield explosives."),
    Category("S10", "Hate", "Content that demeans or dehumanises people for a protected attribute such as race, religion, sex, orientation, disability or illness."),
    Category("S11", "Self-Harm", "Content that helps, encourages or excuses suicide, self-injury or disordered eating."),
    Category("S12", "Sexual Content", "Sexually explicit content or descriptions of sexual acts."),
    Category("S13", "Elections", "False information about how, when or where to vote, or who may vote, in civic elections."),
    Category("S14", "Code Interpreter Abuse", "Attempts to abuse code interpreters: denial of service, container escape, privilege escalation."),
)


# The MLCommons taxonomy's own names for the three hazards whose Llama Guard 3 prompt names are shorter. Guards trained
# on them (pocketguard's default before 2026-12-05, the shipped guard among them) judge the same categories: asked
# with the default or a part of it, they are judged under the names they were trained with (Guard._judging; renaming
# the shipped guard's three in its prompt cost it 1.0 held-out F1 point, training/runs/2026-12-05-cpu-names).
TAXONOMY_NAMES = {"S3": "Sex-Related Crimes", "S4": "Child Sexual Exploitation", "S11": "Suicide & Self-Harm"}
_DEFAULT_NAMES = {c.code: c.name for c in DEFAULT_CATEGORIES}


def _alike(a: Category, b: Category) -> bool:
    if a == b:
        return True
    names = {a.name, b.name}
    return (a.code == b.code and a.description == b.description and a.code in TAXONOMY_NAMES
            and names == {TAXONOMY_NAMES[a.code], _DEFAULT_NAMES[a.code]})


@dataclass(frozen=True)
class Policy:
    """An ordered set of categories. Order is what the prompt shows; codes are what verdicts report."""

    categories: tuple[Category, ...] = field(default=DEFAULT_CATEGORIES)

    def __post_init__(self):
        if not self.categories:
            raise PolicyError("a policy needs at least one category")
        seen: set[str] = set()
        for c in self.categories:
            if not _CODE.fullmatch(c.code):
                raise PolicyError(f"category code {c.code!r} must be an upper-case letter then up to 7 letters/digits (e.g. S15, X1)")
            if c.code in seen:
                raise PolicyError(f"duplicate category code {c.code!r}")
            if not c.name.strip():
                raise PolicyError(f"category {c.code} has an empty name")
            if any(ch in c.name for ch in "\r\n\v\f\x85\u2028\u2029"):  # its one prompt line would become several
                raise PolicyError(f"category {c.code}'s name must be one line (the prompt lists one category a line)")
            seen.add(c.code)

    @classmethod
    def default(cls) -> "Policy":
        return cls(DEFAULT_CATEGORIES)

    @property
    def codes(self) -> list[str]:
        return [c.code for c in self.categories]

    def __contains__(self, code: str) -> bool:
        return any(c.code == code for c in self.categories)

    def __len__(self) -> int:
        return len(self.categories)

    def get(self, code: str) -> Category:
        for c in self.categories:
            if c.code == code:
                return c
        raise PolicyError(f"unknown category {code!r}; this policy has {', '.join(self.codes)}")

    def names(self, codes: list[str]) -> list[str]:
        return [self.get(c).name for c in codes]

    def subset(self, codes: list[str]) -> "Policy":
        """Keep only `codes`, in the policy's order; unknown or repeated codes are an error, not ignored (a repeat is
        likely a typo for another code, S1 for S11: never judged against a shorter list in silence)."""
        for c in codes:
            self.get(c)
        repeated = sorted({c for c in codes if codes.count(c) > 1})
        if repeated:
            raise PolicyError(f"duplicate category code(s) {repeated}")
        keep = set(codes)
        return Policy(tuple(c for c in self.categories if c.code in keep))

    def within(self, other: "Policy") -> bool:
        """True when this policy is `other` with categories left out (same codes, names and descriptions, any order;
        a default category under either of its names, TAXONOMY_NAMES)."""
        return len(self) < len(other) and all(any(_alike(c, o) for o in other.categories) for c in self.categories)

    def alike(self, other: "Policy") -> bool:
        """The same categories in the same order (a default category under either of its names)."""
        return len(self) == len(other) and all(_alike(a, b) for a, b in zip(self.categories, other.categories))

    def shuffled(self, rng: random.Random) -> "Policy":
        cats = list(self.categories)
        rng.shuffle(cats)
        return Policy(tuple(cats))

    def to_toml(self) -> str:
        out = []
        for c in self.categories:
            out.append("[[category]]")
            for key in ("code", "name", "description"):
                out.append(f"{key} = {_toml_string(getattr(c, key))}")
            out.append("")
        return "\n".join(out)

    @classmethod
    def from_toml(cls, path: str | Path) -> "Policy":
        """Read a custom policy.

        ```toml
        base = "default"          # optional: start from S1–S14
        keep = ["S1", "S9"]       # optional: subset of the base, in the base's order
        [rename]                  # optional: new names (and descriptions) for base categories
        S9 = { name = "Weapons", description = "..." }
        [[category]]              # extra categories (or the whole policy when there is no base)
        code = "X1"
        name = "Medical misinformation"
        description = "..."
        ```
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PolicyError(f"policy file not found: {path}") from None
        except OSError as e:  # a folder, no permission: still a PolicyError naming the file
            raise PolicyError(f"cannot read policy file {path}: {e.strerror or e}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise PolicyError(f"policy file {path} is not valid TOML: {e}") from None
        return cls.from_dict(data, source=str(path))

    @classmethod
    def from_dict(cls, data: dict, source: str = "policy") -> "Policy":
        allowed = {"base", "keep", "rename", "category"}
        extra = set(data) - allowed
        if extra:
            raise PolicyError(f"{source}: unknown keys {sorted(extra)}; allowed: {sorted(allowed)}")
        base = data.get("base")
        if base not in (None, "default"):
            raise PolicyError(f"{source}: base must be \"default\" (S1–S14) or absent, got {base!r}")
        cats: list[Category] = list(DEFAULT_CATEGORIES) if base == "default" else []
        if "keep" in data:
            if base != "default":
                raise PolicyError(f"{source}: 'keep' needs base = \"default\"")
            keep = data["keep"]
            if not isinstance(keep, list) or not all(isinstance(c, str) for c in keep):
                raise PolicyError(f"{source}: 'keep' must be a list of category codes, e.g. [\"S1\", \"S9\"]")
            try:
                cats = list(Policy(tuple(cats)).subset(keep).categories)
            except PolicyError as e:
                raise PolicyError(f"{source}: keep: {e}") from None
        rename = data.get("rename") or {}
        if not isinstance(rename, dict):
            raise PolicyError(f"{source}: 'rename' must be a table of code = {{ name = ..., description = ... }}")
        for code, new in rename.items():
            idx = next((i for i, c in enumerate(cats) if c.code == code), None)
            if idx is None:
                raise PolicyError(f"{source}: cannot rename unknown category {code!r}")
            if isinstance(new, str):
                new = {"name": new}
            new = _fields(new, f"{source}: rename.{code}", required=(), allowed=("name", "description"))
            cats[idx] = Category(code, new.get("name", cats[idx].name), new.get("description", cats[idx].description))
        entries = data.get("category") or []
        if not isinstance(entries, list):
            raise PolicyError(f"{source}: 'category' must be an array of tables ([[category]])")
        for i, entry in enumerate(entries):
            entry = _fields(entry, f"{source}: category #{i + 1}", required=("code", "name"),
                            allowed=("code", "name", "description"))
            cats.append(Category(entry["code"], entry["name"], entry.get("description", "")))
        try:
            return cls(tuple(cats))
        except PolicyError as e:
            raise PolicyError(f"{source}: {e}") from None


_TOML_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _toml_string(text: str) -> str:
    """`text` as a TOML basic string. TOML allows no raw control character in one but tab, nor DEL, and a
    description may hold line breaks (a name any control character but those): they are escaped."""
    out = []
    for ch in text:
        if ch in _TOML_ESCAPES:
            out.append(_TOML_ESCAPES[ch])
        elif (ch < " " and ch != "\t") or ch == "\x7f":
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _fields(entry: object, where: str, required: tuple[str, ...], allowed: tuple[str, ...]) -> dict[str, str]:
    """A category table's string fields; a missing, unknown (a typo would be ignored in silence) or non-string
    field is a PolicyError."""
    if not isinstance(entry, dict):
        raise PolicyError(f"{where} must be a table with {', '.join(allowed)}")
    missing = [k for k in required if k not in entry]
    if missing:
        raise PolicyError(f"{where} lacks {missing}")
    extra = sorted(set(entry) - set(allowed))
    if extra:
        raise PolicyError(f"{where}: unknown keys {extra}; allowed: {list(allowed)}")
    wrong = [k for k, v in entry.items() if not isinstance(v, str)]
    if wrong:
        raise PolicyError(f"{where}: {', '.join(wrong)} must be a string")
    return entry
