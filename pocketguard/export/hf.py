"""Hugging Face export: a stock `LlamaForCausalLM` folder for transformers / vLLM / TGI users.

`export_hf(model, tokenizer, directory, policy)` writes config.json + model.safetensors + the tokenizer +
guard.json (policy, max context) with `checkpoint.save_hf`, after two conversions stock code needs:

* quantized layers (a compressed artifact's int4/int8 kernels, also as `Guard.load` runs them on the CPU:
  runtime_cpu's packed FastBlocks) are dequantized to float — the weights are exactly the ones the quantized
  model multiplies by; the int8 dynamic activations are not reproduced
  (transformers runs float activations), so logits differ from pocketguard's 8da4w runtime by the
  activation rounding only. Users who want 4-bit inference there quantize with their own stack;
* compressed shapes go through `checkpoint.to_standard_shapes` (MLPs zero-padded, full-vocabulary head and
  embedding), so `AutoModelForCausalLM.from_pretrained` builds it without custom code.

The tokenizer is always a `tokenizer.json`: a tiktoken `tokenizer.model` (Meta layout) is converted first
(`hf_tokenizer`), since transformers reads such a file without its special tokens. `tokenizer_config.json` /
`special_tokens_map.json` / `generation_config.json` are added so `AutoTokenizer` and `generate` behave like
Llama Guard 3 (BOS = <|begin_of_text|>, EOS = <|eot_id|>): `AutoTokenizer` cuts the rendered guard prompt
(`pocketguard.prompt.render`) into pocketguard's ids, except where the conversation's own text spells a special
token (`<|eot_id|>`), which transformers parses as that control token and pocketguard keeps as text. A tokenizer
whose pre-tokenizer merges across the pieces pocketguard encodes one by one (`prompt.render_pieces`; GPT-2's) is
exported with a split at those pieces first (`_piece_split`).
"""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from . import standard_blocks


def dequantized_model(model, latent: bool = False) -> nn.Module:
    """A float copy of `model` whose kernel modules (pocketguard.kernels) became nn.Linear / nn.Embedding
    (`quantize.float_model`); a `Guard.load`ed model's FastBlocks are read as the kernel modules they were packed
    from (`standard_blocks`)."""
    from ..compress.quantize import float_model

    return float_model(standard_blocks(model), latent=latent)


def export_hf(model, tokenizer, directory: str | Path, policy=None, max_context: int | None = None,
              shard_bytes: int | None = None, threshold: float | None = None) -> Path:
    """Write a transformers-loadable folder; returns it. `max_context` and `threshold` (the guard's settings,
    from the source's guard.json) go to the folder's guard.json."""
    from ..checkpoint import save_hf, to_standard_shapes
    from ..policy import Policy

    directory = Path(directory)
    tokenizer = hf_tokenizer(tokenizer)
    float_model = dequantized_model(model)
    std = to_standard_shapes(float_model)
    meta = {"policy": policy or Policy.default()}
    if max_context is not None:
        meta["max_context"] = int(max_context)
    if threshold is not None:
        meta["threshold"] = float(threshold)
    save_hf(std, tokenizer, directory, guard_meta=meta, shard_bytes=shard_bytes)
    _tokenizer_extras(tokenizer, directory, std.args.max_seq_len)
    return directory


def hf_tokenizer(tokenizer):
    """`tokenizer` as a tokenizer.json tokenizer with which `AutoTokenizer` cuts the rendered prompt into pocketguard's
    ids. A tiktoken one is converted the way transformers' `TikTokenConverter` does it: its ranks as a byte-level BPE
    that looks a whole pre-token up before merging (`ignore_merges`, as tiktoken does), Llama 3's split pattern, the
    special tokens as added tokens (left a tokenizer.model, transformers read it without them: the tiny guard's prompt
    was 813 ids, not 736). A tokenizer whose pre-tokenizer merges across the template's pieces gets `_piece_split`."""
    if tokenizer.kind == "tiktoken":
        from tokenizers import AddedToken, decoders, models
        from tokenizers import Tokenizer as _Tok

        from ..tokenizer import HFTokenizer, llama3_pre_tokenizer
        from .gguf import tiktoken_vocab

        vocab, merges = tiktoken_vocab(tokenizer._enc._mergeable_ranks)
        tok = _Tok(models.BPE({t: i for i, t in vocab.items()}, [tuple(m.split(" ")) for m in merges],
                              ignore_merges=True))
        tok.pre_tokenizer = llama3_pre_tokenizer()
        tok.decoder = decoders.ByteLevel()
        tok.add_special_tokens([AddedToken(t, normalized=False, special=True)
                                for t in sorted(tokenizer.specials, key=tokenizer.specials.get)])
        return _piece_split(HFTokenizer.from_tokenizer(tok))
    return _piece_split(tokenizer)


def _piece_split(tokenizer):
    """`tokenizer`, or where it cuts the rendered prompt otherwise than `encode_prompt` cuts its pieces, a copy that
    first splits the text at `prompt.PIECE_BOUNDARY`. pocketguard encodes the policy prefix, each turn and the suffix
    one by one (the prefix's KV cache is reused); Llama 3's pre-tokenizer cuts the joined text the same way, GPT-2's
    byte-level one (SmolLM2's, the shipped guard's) cuts "\n\nUser" as "\n", "\n", "User" where the pieces give
    "\n\n", "User": 2-3 ids more per prompt that the guard never saw in training. The split is text-level, so a
    conversation whose own text holds a blank line then "User: " is cut there too, where pocketguard keeps it whole
    (a difference on such text only; `export --verify` names it)."""
    from tokenizers import Regex, pre_tokenizers

    from ..policy import Policy
    from ..prompt import PIECE_BOUNDARY, prefix_text, suffix_text, turn_text
    from ..tokenizer import HFTokenizer

    # the text between the template's control tokens: the prefix, a user and an agent turn, the suffix
    probe = [prefix_text(Policy.default(), "agent"), turn_text("user", "Hi."), turn_text("agent", "Hello."),
             suffix_text("agent")]
    if tokenizer.encode("".join(probe)) == [i for piece in probe for i in tokenizer.encode(piece)]:
        return tokenizer  # (its file is then exported verbatim)
    tok = tokenizer.backend_copy()
    split = pre_tokenizers.Split(Regex(PIECE_BOUNDARY), behavior="merged_with_previous")
    tok.pre_tokenizer = split if tok.pre_tokenizer is None else pre_tokenizers.Sequence([split, tok.pre_tokenizer])
    return HFTokenizer.from_tokenizer(tok)


def _tokenizer_extras(tokenizer, directory: Path, max_len: int) -> None:
    sp = tokenizer.specials
    bos, eot = "<|begin_of_text|>", "<|eot_id|>"
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": bos,
        "eos_token": eot,
        "model_max_length": max_len,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,  # pocketguard.prompt.render writes <|begin_of_text|> itself
    }
    (directory / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2))
    (directory / "special_tokens_map.json").write_text(json.dumps({"bos_token": bos, "eos_token": eot}, indent=2))
    gen = {"bos_token_id": sp.get(bos), "eos_token_id": [sp[s] for s in ("<|end_of_text|>", eot) if s in sp],
           "do_sample": False}
    (directory / "generation_config.json").write_text(json.dumps(gen, indent=2))
