"""Tokenizers: Hugging Face `tokenizer.json` and Meta's tiktoken `tokenizer.model`, behind one interface.

The one rule that matters for a guard: conversation text is *always* encoded as plain text. A user who
writes `<|eot_id|>` gets the characters `<|eot_id|>`, never the control token, so nobody can close the
conversation block from inside it. Template control tokens come only from `Tokenizer.special`.
"""

from __future__ import annotations

import json
import shutil
from functools import cached_property
from pathlib import Path
from typing import Iterable

# The Llama 3 special tokens in Meta's order; ids follow the base vocabulary in this order.
LLAMA3_SPECIAL_TOKENS = [
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>",
    "<|finetune_right_pad_id|>",
    "<|step_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eom_id|>",
    "<|eot_id|>",
    "<|python_tag|>",
    "<|image|>",
]
LLAMA3_NUM_RESERVED_SPECIAL = 256
# Meta's Llama 3 pre-tokenizer pattern (llama_models/llama3/tokenizer.py).
LLAMA3_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
REQUIRED_SPECIALS = ("<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>")


class TokenizerError(ValueError):
    """A tokenizer file is missing, corrupt, or lacks the special tokens a guard prompt needs."""


class Tokenizer:
    """Common interface. Subclasses implement `_encode_plain`, `decode`, `vocab_size`, `specials`, `save`."""

    kind: str
    specials: dict[str, int]

    def encode(self, text: str) -> list[int]:
        """Encode conversation/template text; special-token strings inside it stay plain text."""
        return self._encode_plain(text)

    def encode_fixed(self, text: str) -> list[int]:
        """`encode`, memoised, for the template's fixed text (the policy block, the closing instructions): every
        prompt under one policy repeats it, and it is most of the cost of encoding a training example."""
        cache = self.__dict__.setdefault("_fixed", {})
        ids = cache.get(text)
        if ids is None:
            if len(cache) >= 256:  # policy augmentation draws a new block per example: keep the memo small
                cache.clear()
            ids = cache[text] = tuple(self.encode(text))
        return list(ids)

    def special(self, name: str) -> int:
        try:
            return self.specials[name]
        except KeyError:
            raise TokenizerError(f"tokenizer has no special token {name}") from None

    def decode(self, ids: Iterable[int]) -> str:
        raise NotImplementedError

    def highest_token(self) -> tuple[str, int]:
        """The token with the highest id, added and special tokens included: ids index a model's embedding, so
        it is this id (not the token count, which gaps in the ids make smaller) that must fit the model. Here the
        special tokens: tiktoken numbers them after its ranks 0..n-1 (checked at load)."""
        return max(self.specials.items(), key=lambda kv: kv[1])

    @cached_property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self.specials.values())

    def _check(self) -> None:
        missing = [s for s in REQUIRED_SPECIALS if s not in self.specials]
        if missing:
            raise TokenizerError(f"{self.kind} tokenizer lacks the Llama 3 special tokens {missing}")

    @staticmethod
    def load(path: str | Path) -> "Tokenizer":
        """Load `tokenizer.json` (HF) or `tokenizer.model` (tiktoken), given the file or its folder."""
        path = Path(path)
        if path.is_dir():
            for name in ("tokenizer.json", "tokenizer.model"):
                if (path / name).exists():
                    return Tokenizer.load(path / name)
            raise TokenizerError(f"no tokenizer.json or tokenizer.model in {path}")
        if not path.exists():
            raise TokenizerError(f"tokenizer file not found: {path}")
        if path.suffix == ".json":
            return HFTokenizer(path)
        return TiktokenTokenizer(path)


class HFTokenizer(Tokenizer):
    kind = "hf"

    def __init__(self, path: str | Path | None, backend=None, require_specials: bool = True):
        """From a tokenizer.json `path`, or (path None) an in-memory `tokenizers.Tokenizer` `backend`.
        `require_specials=False` admits a vocabulary without the guard's control tokens (a base model that
        `gguf_checkpoint.add_guard_tokens` is about to extend); `Guard` never gets such a tokenizer."""
        from tokenizers import Tokenizer as _Tok

        self.path = Path(path) if path is not None else None
        if backend is None:
            try:
                backend = _Tok.from_file(str(self.path))
            except Exception as e:  # tokenizers raises a bare Exception on bad JSON
                raise TokenizerError(f"cannot read tokenizer {self.path}: {e}") from None
        self._tok = backend
        # The crux of template safety: added/special tokens inside text are encoded as ordinary text.
        self._tok.encode_special_tokens = True
        # A tokenizer.json keeps the truncation and padding its last user enabled (transformers saves them there):
        # `encode` would cut every turn to that max_length in silence, or pad it with pad ids (a control token's,
        # often) inside the prompt. The guard encodes whole texts; what does not fit is the guard's to handle.
        self._tok.no_truncation()
        self._tok.no_padding()
        self.specials = {t.content: i for i, t in self._tok.get_added_tokens_decoder().items() if t.special}
        if require_specials:
            self._check()

    @classmethod
    def from_tokenizer(cls, backend, require_specials: bool = True) -> "HFTokenizer":
        """Wrap an in-memory `tokenizers.Tokenizer` (e.g. one built from GGUF metadata); `save` writes it out."""
        return cls(None, backend=backend, require_specials=require_specials)

    def backend_copy(self):
        """An independent copy of the underlying `tokenizers.Tokenizer`, to extend without touching this one."""
        from tokenizers import Tokenizer as _Tok

        return _Tok.from_str(self._tok.to_str())

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size(with_added_tokens=True)

    def _encode_plain(self, text: str) -> list[int]:
        return self._tok.encode(text, add_special_tokens=False).ids

    def highest_token(self) -> tuple[str, int]:
        return max(self._tok.get_vocab(with_added_tokens=True).items(), key=lambda kv: kv[1])

    def decode(self, ids: Iterable[int]) -> str:
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def to_json(self) -> str:
        """The tokenizer.json text (the file's, or the in-memory tokenizer's)."""
        return self.path.read_text(encoding="utf-8") if self.path is not None else self._tok.to_str()

    def save(self, directory: str | Path) -> None:
        """Copy the file this came from verbatim, or write the in-memory tokenizer."""
        target = Path(directory) / "tokenizer.json"
        if self.path is not None:
            shutil.copyfile(self.path, target)
        else:
            self._tok.save(str(target))


class TiktokenTokenizer(Tokenizer):
    """Meta's Llama 3 `tokenizer.model`: base64 BPE ranks, then 256 special tokens."""

    kind = "tiktoken"

    def __init__(self, path: str | Path):
        import tiktoken
        from tiktoken.load import load_tiktoken_bpe

        self.path = Path(path)
        try:
            ranks = load_tiktoken_bpe(str(self.path))
        except Exception as e:
            raise TokenizerError(f"cannot read tiktoken file {self.path}: {e}") from None
        if not ranks:
            raise TokenizerError(f"tiktoken file {self.path} is empty")
        n = len(ranks)
        # The special tokens are numbered from n on, so the ranks must be exactly 0..n-1: a lost or repeated line
        # leaves a rank >= n that ordinary text encodes to, the id of <|begin_of_text|> & co. And BPE needs every
        # single byte as a token: tiktoken panics (a BaseException) on text with a byte it lacks.
        if set(ranks.values()) != set(range(n)):
            raise TokenizerError(f"tiktoken file {self.path} is corrupt: its {n} ranks are not 0..{n - 1} (a line lost "
                                 "or repeated?), so the special tokens numbered after them would collide with its tokens")
        lacking = [b for b in range(256) if bytes([b]) not in ranks]
        if lacking:
            raise TokenizerError(f"tiktoken file {self.path} is corrupt: it lacks the single-byte token(s) "
                                 f"{[bytes([b]) for b in lacking[:8]]}, so text holding them cannot be encoded")
        names = LLAMA3_SPECIAL_TOKENS + [
            f"<|reserved_special_token_{2 + i}|>" for i in range(LLAMA3_NUM_RESERVED_SPECIAL - len(LLAMA3_SPECIAL_TOKENS))
        ]
        self.specials = {name: n + i for i, name in enumerate(names)}
        self._enc = tiktoken.Encoding(name=self.path.name, pat_str=LLAMA3_PATTERN, mergeable_ranks=ranks, special_tokens=self.specials)
        self._check()

    @property
    def vocab_size(self) -> int:
        return self._enc.n_vocab

    def _encode_plain(self, text: str) -> list[int]:
        # allowed_special=() + disallowed_special=() : special strings are neither parsed nor rejected.
        return self._enc.encode(text, allowed_special=set(), disallowed_special=())

    def decode(self, ids: Iterable[int]) -> str:
        return self._enc.decode(list(ids))

    def save(self, directory: str | Path) -> None:
        shutil.copyfile(self.path, Path(directory) / "tokenizer.model")


def llama3_tokenizer_path() -> Path:
    """The real Llama 3 `tokenizer.model`, shipped in the PyPI package `llama-models`."""
    try:
        import llama_models
    except ImportError:
        raise TokenizerError("the Llama 3 tokenizer needs `pip install llama-models`") from None
    path = Path(llama_models.__file__).parent / "llama3" / "tokenizer.model"
    if not path.exists():
        raise TokenizerError(f"llama-models is installed but {path} is missing")
    return path


def llama3_pre_tokenizer():
    """The `tokenizers` pre-tokenizer that splits text as Llama 3 (and tiktoken) does: its pattern, then bytes."""
    from tokenizers import Regex, pre_tokenizers

    return pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
                                    pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])


def train_bpe(texts: Iterable[str], vocab_size: int, path: str | Path, min_frequency: int = 2,
              pre_tokenizer=None) -> HFTokenizer:
    """Train a byte-level BPE with the Llama 3 pre-tokenizer (or `pre_tokenizer`, a `tokenizers` one) and special
    tokens; writes `tokenizer.json`.

    Used by tests (tiny vocabularies) and by the project's own default guard.
    """
    from tokenizers import decoders, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as _Tok

    tok = _Tok(models.BPE())
    tok.pre_tokenizer = pre_tokenizer or llama3_pre_tokenizer()
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=LLAMA3_SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tok.save(str(path))
    # Sanity: the saved file must round-trip as JSON (a partially written file is a corrupt checkpoint).
    json.loads(path.read_text(encoding="utf-8"))
    return HFTokenizer(path)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map (byte-level BPE vocabulary strings)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))
