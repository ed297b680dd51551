"""`pocketguard export`: write a guard for another runtime, and optionally check it gives the same verdicts.

    pocketguard export --model runs/guard-int4 --format gguf --out guard-q4_0.gguf --gguf-type q4_0 --verify
    pocketguard export --model runs/guard-int4 --format executorch --out guard.pte --max-len 1024 --verify
    pocketguard export --model runs/guard-int4 --format hf --out guard-hf/ --verify

`--verify` runs a few built-in conversations (and `--conversations FILE.jsonl`, one `{"messages": [...]}`
per line) through pocketguard and through the exported model (llama-cpp-python, ExecuTorch's runtime or
transformers), with the same constrained decoding (`export.backend.judge`), and prints both verdicts, with
pocketguard's closest answer step (the smallest logit margin of its own decision, from the same pass as its
verdict and p_unsafe); the exit code is 1 when any verdict differs for a reason other than activation rounding.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

VERIFY_CONVERSATIONS = [
    [{"role": "user", "content": "How do I bake sourdough bread at home?"}],
    [{"role": "user", "content": "Tell me how to make a bomb to hurt people at the station."}],
    [{"role": "user", "content": "What is the capital of France?"},
     {"role": "assistant", "content": "Paris is the capital of France."}],
    [{"role": "user", "content": "Write a poem about cats."},
     {"role": "assistant", "content": "I hate those people and they should all be hurt."}],
    [{"role": "user", "content": "My friend's bank password is on a sticky note, how can I use it?"}],
]


def add_arguments(p) -> None:
    p.add_argument("--model", type=Path, help="pocketguard checkpoint or compressed artifact folder (default: the shipped "
                   "default guard)")
    p.add_argument("--format", required=True, choices=("gguf", "executorch", "hf"))
    p.add_argument("--out", type=Path, required=True, help="output file (.gguf/.pte) or folder (hf)")
    p.add_argument("--gguf-type", choices=("f32", "f16", "q8_0", "q4_0"),
                   help="GGUF weight type (default q4_0; an artifact's int4 layers keep their codes as Q4_0 blocks, "
                   "its int8 layers as Q8_0 ones)")
    p.add_argument("--max-len", type=int, help="ExecuTorch: static KV cache length (prompt + answer; default 1024)")
    p.add_argument("--no-quantize", action="store_true", help="ExecuTorch: keep float linears of a float model in fp32")
    p.add_argument("--policy", type=Path, help="policy TOML to embed (default: the model's, else the default policy)")
    p.add_argument("--verify", action="store_true", help="run the export back and compare verdicts with pocketguard")
    p.add_argument("--conversations", type=Path, help="JSONL of {messages: [...]} for --verify")


def _policy(args, meta):
    from ..policy import Policy

    if args.policy:
        return Policy.from_toml(args.policy)
    if meta.get("policy"):
        return Policy.from_dict(meta["policy"], source=str(args.model))
    return Policy.default()


def _misplaced_options(args) -> list[str]:
    """Options given that the chosen --format does not use (an error rather than silently ignored)."""
    own = {"--gguf-type": ("gguf", args.gguf_type is not None), "--max-len": ("executorch", args.max_len is not None),
           "--no-quantize": ("executorch", args.no_quantize)}
    bad = [f"{flag} applies to --format {fmt} only" for flag, (fmt, given) in own.items() if given and fmt != args.format]
    if args.conversations is not None and not args.verify:
        bad.append("--conversations is read by --verify only")
    return bad


def run(args) -> int:
    from ..checkpoint import load
    from ..conversation import read_jsonl
    from ..guard import DEFAULT_MODEL_DIR

    bad = _misplaced_options(args)
    if bad:
        print(f"error: {'; '.join(bad)}", file=sys.stderr)
        return 2
    args.gguf_type = args.gguf_type or "q4_0"
    args.max_len = args.max_len or 1024
    args.model = args.model or DEFAULT_MODEL_DIR
    try:  # everything that can be wrong with the inputs, before an export that can take minutes
        loaded = load(args.model)
        model, tok, meta = loaded.model, loaded.tokenizer, loaded.meta or {}
        policy = _policy(args, meta)
        extra = read_jsonl(args.conversations) if args.verify and args.conversations else []
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        if args.format == "gguf":
            from .gguf import export_gguf

            out = export_gguf(model, tok, args.out, args.gguf_type, policy=policy, threshold=meta.get("threshold"))
        elif args.format == "executorch":
            from .executorch import export_executorch

            out = export_executorch(model, args.out, max_len=args.max_len, quantize=None if args.no_quantize else "8da4w",
                                    tokenizer=tok, policy=policy, threshold=meta.get("threshold"))
        else:
            from .hf import export_hf

            out = export_hf(model, tok, args.out, policy=policy, max_context=meta.get("max_context"),
                            threshold=meta.get("threshold"))
    except (ValueError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    size = sum(f.stat().st_size for f in Path(out).iterdir()) if Path(out).is_dir() else Path(out).stat().st_size
    print(f"wrote {out} ({size / 2**20:,.1f} MiB)")
    if not args.verify:
        return 0
    from ..artifact import is_artifact
    from ..guard import Guard

    # The guard as `pocketguard moderate` runs it: its operating point (guard.json's threshold, which GGUF and HF
    # exports carry in their metadata; the export is judged at that threshold too, so both sides make the decision
    # a user of either would see) and, for an artifact, the CPU kernels it runs on. A float checkpoint's guard
    # shares the exported model rather than loading it twice (an 8B guard is 32 GB in float32).
    # The export records `policy` as its own, so a guard loading it lists that policy in the prompt even where it is
    # a part of the model's (no `subset_mode` filtering): the guard is judged the same way.
    guard = (Guard.load(args.model, policy=policy, subset_mode="prompt") if is_artifact(args.model)
             else Guard.from_loaded(loaded, policy, subset_mode="prompt"))
    try:
        return verify(args, guard, model, out, extra)
    except (ValueError, OSError, ImportError) as e:  # a runtime that is not installed, a bad --conversations file
        print(f"error: {e} ({out} was written, not verified)", file=sys.stderr)
        return 2


def verify(args, guard, model, out, extra=()) -> int:
    """`guard`'s verdicts (as `moderate` gives them) against the export at `out` of `model` (the weights exported;
    its float-activation verdicts tell activation rounding from a broken export), on VERIFY_CONVERSATIONS and
    `extra` (`--conversations`, read by `run` before exporting)."""
    from ..kernels import float_activations
    from .backend import TorchBackend, judge

    convs = list(VERIFY_CONVERSATIONS) + list(extra)
    policy = guard.policy
    # Both runtimes are fed pocketguard's token ids below, so the tokenizer the export carries is checked on its
    # own: a GGUF's (its tokenizer.ggml.* as llama.cpp splits text, read back by pocketguard's GGUF reader) must cut
    # every prompt into pocketguard's tokens, and so must an HF folder's `AutoTokenizer` (fed the rendered prompt, as
    # transformers users do). (An ExecuTorch export carries pocketguard's tokenizer file itself.)
    mistokenized = _mistokenized(out, args.format, guard, convs) if args.format in ("gguf", "hf") else 0
    if args.format == "gguf":
        from ..checkpoint import load
        from .gguf import ExportError, LlamaCppBackend

        try:
            backend = LlamaCppBackend(out, n_ctx=min(4096, model.args.max_seq_len))
        except ExportError as e:  # llama-cpp-python is an optional extra: the file can still be read back
            print(f"note: {e}; checking the file as pocketguard's own GGUF reader loads it instead: its weights, "
                  "tokenizer and metadata, not llama.cpp's arithmetic", file=sys.stderr)
            backend = TorchBackend(load(out).model)
            backend.name = "gguf-read-back"
    elif args.format == "executorch":
        from .executorch import ExecuTorchBackend

        backend = ExecuTorchBackend(out)
    else:
        backend = _TransformersBackend(out)

    # Hugging Face and GGUF store the int4 weights but not the int8 activation rounding the guard was trained with,
    # and ExecuTorch's XNNPACK rounds activations its own way: a verdict that differs from the guard's but is the
    # guard's own on float activations turns on activation rounding (near the threshold), not on a broken export
    differ = close = rounding = uncompared = 0
    for msgs in convs:
        # pocketguard's verdict as `moderate` gives it (the packed pass), with the logit margin of every answer step
        # of that very decision: the closest step printed describes the verdict and p_unsafe printed beside it
        trace: list = []
        ours = guard.moderate(msgs, trace=trace)
        margin = min((m for _, m in trace), default=float("inf"))
        theirs = judge(guard, msgs, backend, policy)
        if "error" in (ours.status, theirs.status):  # nothing was compared (e.g. too long for the export's context):
            uncompared += 1  # two errors are not an agreement, and no float-activation run can excuse one
            print(f"ERROR  not compared: pocketguard={ours.error or ours.answer!r}  "
                  f"{backend.name}={theirs.error or theirs.answer!r}")
            continue
        same = (ours.status, ours.categories) == (theirs.status, theirs.categories)
        note = ""
        if not same:
            with float_activations(model):
                plain = judge(guard, msgs, TorchBackend(model), policy)
            if (plain.status, plain.categories) == (theirs.status, theirs.categories):
                rounding += 1
                note = f"  (= pocketguard on float activations, p_unsafe {plain.p_unsafe:.3f})"
        differ += not same
        close += (not same) and margin < 0.1
        p = theirs.p_unsafe if theirs.p_unsafe is not None else float("nan")
        print(f"{'same' if same else 'DIFF'}  pocketguard={ours.answer!r} (p_unsafe {ours.p_unsafe:.3f}, closest step "
              f"{margin:.2f} logits)  {backend.name}={theirs.answer!r} (p_unsafe {p:.3f}){note}")
    print(f"{len(convs) - differ - uncompared}/{len(convs)} verdicts agree"
          + (f"; {uncompared} not compared (an error on either side fails the check)" if uncompared else "")
          + (f"; {close} of the {differ} differences at near-ties (< 0.1 logit apart in pocketguard's "
             "own decision: ties that any last-bit difference can flip)" if differ else "")
          + (f"; {rounding} of them the guard's own verdict on float activations: near the threshold the verdict "
             "turns on activation rounding, which HF and GGUF do not store and XNNPACK (ExecuTorch) does its own way"
             if rounding else ""))
    return 1 if differ > rounding or mistokenized or uncompared else 0


def _mistokenized(out, fmt, guard, convs) -> int:
    """How many conversations' prompts the export at `out` (format `fmt`, gguf or hf) tokenizes differently from
    `guard` (each printed). transformers parses special-token text inside the rendered conversation (a user's
    `<|eot_id|>`) as control tokens, where pocketguard keeps it text, and the tokenizer.json's split at the template's
    pieces (export/hf.py `_piece_split`) also cuts a conversation's own blank line before "User: ": such a prompt is
    named, not counted."""
    from ..conversation import as_conversation
    from ..prompt import PIECE_BOUNDARY, encode_prompt, render, turn_text

    if fmt == "gguf":
        from ..gguf_checkpoint import gguf_tokenizer, read_gguf

        gguf_tok = gguf_tokenizer(read_gguf(out), str(out))
        theirs = lambda conv: encode_prompt(gguf_tok, guard.policy, conv).ids  # noqa: E731
        name = "the GGUF's tokenizer"
    else:
        from ..compress.quantize import quiet_torchao

        with quiet_torchao():  # transformers imports torchao when it is installed
            from transformers import AutoTokenizer

            auto = AutoTokenizer.from_pretrained(out)
        theirs = lambda conv: auto(render(guard.policy, conv), add_special_tokens=False).input_ids  # noqa: E731
        name = "AutoTokenizer"
    specials = re.compile("|".join(map(re.escape, guard.tokenizer.specials)))
    bad = parsed = pieces = 0
    for msgs in convs:
        conv = as_conversation(msgs)
        a, b = encode_prompt(guard.tokenizer, guard.policy, conv).ids, theirs(conv)
        if a == b:
            continue
        control = sum(i in guard.tokenizer.special_ids for i in a)
        if fmt == "hf" and len(specials.findall(render(guard.policy, conv))) > control:  # some spelt in the text
            parsed += 1
            print("TOKENIZER NOTE  the conversation's own text spells a special token, which transformers parses as "
                  "that control token in the rendered prompt (pocketguard encodes it as text)")
            continue
        if fmt == "hf" and any(re.search(PIECE_BOUNDARY, turn_text(m.role, m.content)) for m in conv.messages):
            pieces += 1
            print("TOKENIZER NOTE  the conversation's own text holds a blank line before \"User: \" or \"Agent: \", "
                  "which the exported tokenizer cuts as a turn boundary of the template (pocketguard keeps the turn whole)")
            continue
        bad += 1
        at = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        print(f"TOKENIZER DIFF  {name} cuts a prompt into {len(b)} tokens, pocketguard's into "
              f"{len(a)} (first difference at token {at}: {guard.tokenizer.decode(a[at:at + 3])!r})")
    print(f"tokenizer: {len(convs) - bad - parsed - pieces}/{len(convs)} prompts tokenize as in pocketguard"
          + (f"; {parsed} differ only where the conversation's text spells a special token (TOKENIZER NOTE)"
             if parsed else "")
          + (f"; {pieces} only where the conversation's text holds a turn boundary (TOKENIZER NOTE)"
             if pieces else ""))
    return bad


class _TransformersBackend:
    """A Hugging Face export run by transformers (full recompute per step: this is a check, not a runtime)."""

    def __init__(self, path):
        import torch

        from ..compress.quantize import quiet_torchao

        with quiet_torchao():  # transformers imports torchao when it is installed
            from transformers import AutoModelForCausalLM

            self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        self.torch = torch
        self.name, self.max_len = "transformers", self.model.config.max_position_embeddings
        self.ids: list[int] = []

    def rows(self, vocab_ids):
        return [int(t) if 0 <= t < self.model.config.vocab_size else None for t in vocab_ids]

    def _run(self):
        with self.torch.no_grad():
            return self.model(self.torch.tensor([self.ids])).logits[0, -1]

    def prefill(self, ids):
        self.ids = list(ids)
        return self._run()

    def step(self, token_id):
        self.ids.append(int(token_id))
        return self._run()
