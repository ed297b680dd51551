"""`pocketguard <verb>`. Each verb lives in the module that owns the idea and exposes
`add_arguments(parser)` and `run(args) -> int`; this file only wires them up."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from .policy import SUBSET_MODE_HELP, SUBSET_MODES

# verb -> (module, one-line help). Modules are imported only when their verb runs, so `moderate` stays light.
VERBS = {
    "moderate": ("pocketguard.cli", "judge a prompt, a response or a conversation"),
    "compress": ("pocketguard.compress.recipe", "prune, distill and quantize a guard with a recipe"),
    "eval": ("pocketguard.evaluate.command", "evaluate guards on labelled data"),
    "calibrate": ("pocketguard.evaluate.calibrate", "choose a guard's p_unsafe threshold on labelled dev data"),
    "serve": ("pocketguard.server", "run the HTTP moderation server"),
    "export": ("pocketguard.export.command", "export to ExecuTorch, GGUF or Hugging Face"),
    "convert": ("pocketguard.convert", "convert a GGUF (or a Meta or Hugging Face checkpoint) to a Hugging Face folder"),
    "bench": ("pocketguard.bench", "benchmark against llama.cpp and ExecuTorch"),
}

EXIT_SAFE, EXIT_UNSAFE, EXIT_ERROR = 0, 1, 2


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("text", nargs="?", help="the user prompt to judge (prompt classification); - reads it from stdin")
    p.add_argument("--response", help="the agent's reply to TEXT; judges the reply (response classification)")
    p.add_argument("--conversation", type=Path, help="JSON file of OpenAI-style messages (a list, a prompt string, or an object with "
                   "'messages' or 'text' and an optional 'role' and 'id'; any other key is refused: --policy and --category-scores "
                   "are options here); the last user or agent turn is judged, system messages are not (docs/api.md); - = stdin")
    p.add_argument("--jsonl", type=Path, help="judge many: one conversation per line (a prompt string, a message list, or "
                   "an object with 'messages' or 'text' and an optional 'id' and 'role', no other key), batched; one JSON verdict per line on "
                   "stdout, in order, with its 'line' (and 'id'); a line that cannot be read, or is too long for --max-context, gets an "
                   "error verdict; - = stdin. Exit 2 if any line could not be judged (or the input holds none), else 1 if any is unsafe")
    p.add_argument("--batch-size", type=int, default=64, help="--jsonl: prompts per packed pass (default 64)")
    p.add_argument("--model", type=Path, help="checkpoint folder or .gguf file (default: the shipped default guard)")
    p.add_argument("--policy", type=Path, help="custom policy TOML (see docs/policy.md)")
    p.add_argument("--threshold", type=float, help="flag when p_unsafe >= THRESHOLD (default: the guard's guard.json "
                   "threshold, 0.5 for the shipped guard; a guard without one decodes greedily)")
    p.add_argument("--subset-mode", choices=SUBSET_MODES, default="filter", help=SUBSET_MODE_HELP)
    p.add_argument("--max-context", type=int, help="token limit for the whole prompt (default: the guard's guard.json "
                   "max_context, else the model's context)")
    p.add_argument("--category-scores", action="store_true", help="also score every category")
    p.add_argument("--json", action="store_true", help="print the verdict as JSON")


def _conversation(args) -> Any:
    """The messages to judge: TEXT (+ --response), or --conversation's JSON (validated by the guard)."""
    from .conversation import ConversationError, conversation_from_json

    given = sum(x is not None for x in (args.text, args.conversation, args.jsonl))
    if given != 1:
        raise ConversationError("give one of TEXT, --conversation FILE or --jsonl FILE (- reads stdin)")
    if args.response is not None and args.text is None:
        raise ConversationError("--response goes with TEXT, not with --conversation or --jsonl")
    if args.jsonl is not None:
        if args.batch_size < 1:  # (0 would judge nothing and report success)
            raise ConversationError(f"--batch-size must be at least 1, not {args.batch_size}")
        return None  # many conversations: read line by line (_moderate_jsonl)
    if args.conversation is not None:
        try:
            data = json.loads(_read(args.conversation))
        except FileNotFoundError:
            raise ConversationError(f"conversation file not found: {args.conversation}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ConversationError(f"{args.conversation} is not valid JSON: {e}") from None
        return conversation_from_json(data)
    text = sys.stdin.read().rstrip("\n") if args.text == "-" else args.text
    msgs = [{"role": "user", "content": text}]
    if args.response is not None:
        msgs.append({"role": "assistant", "content": args.response})
    return msgs


def _read(path: Path) -> str:
    return sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8-sig")  # (a BOM is not JSON)


def _moderate_jsonl(args, guard) -> int:
    """`--jsonl`: judge every line's conversation in packed batches (`Guard.moderate_batch`), writing each chunk's
    verdicts as soon as it is judged. A line that is not JSON or not a conversation gets an error verdict (it is
    flagged: fail closed) and the others are still judged."""
    import itertools
    import time

    from .answer import Verdict
    from .conversation import ConversationError, conversation_from_json

    stream = sys.stdin.buffer if str(args.jsonl) == "-" else args.jsonl.open("rb")  # bytes: a bad line is that line's error
    counts = {"safe": 0, "unsafe": 0, "error": 0}
    t0 = time.perf_counter()
    with stream:
        lines = ((n, line) for n, line in enumerate(stream, 1) if line.strip())
        while chunk := list(itertools.islice(lines, 8 * args.batch_size)):
            items: list[Any] = []
            for n, line in chunk:
                try:
                    data = json.loads(line.decode("utf-8-sig" if n == 1 else "utf-8"))  # (a file's BOM is not JSON)
                except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, a 5000-digit number, absurd nesting
                    items.append((None, None, f"line is not valid UTF-8 JSON: {e or type(e).__name__}"))
                    continue
                ident = data.get("id") if isinstance(data, dict) else None
                try:
                    items.append((ident, conversation_from_json(data), None))
                except ConversationError as e:
                    items.append((ident, None, str(e)))
            judged = iter(guard.moderate_batch([m for _, m, err in items if err is None], category_scores=args.category_scores,
                                               batch_size=args.batch_size))
            for (n, _), (ident, _, err) in zip(chunk, items):
                v = Verdict.failure(err) if err is not None else next(judged)
                counts[v.status if v.status in counts else "error"] += 1
                print(json.dumps({"line": n, **({"id": ident} if ident is not None else {}), **v.to_dict()},
                                 ensure_ascii=False))
            sys.stdout.flush()
    total = sum(counts.values())
    if not total:  # an empty input is likely an upstream step's failure: not an all-clear (fail closed)
        print(f"error: {args.jsonl} holds no conversation to judge", file=sys.stderr)
        return EXIT_ERROR
    print(f"{total} judged in {time.perf_counter() - t0:.1f} s: {counts['safe']} safe, {counts['unsafe']} unsafe, "
          f"{counts['error']} could not be judged", file=sys.stderr)
    return EXIT_ERROR if counts["error"] else EXIT_UNSAFE if counts["unsafe"] else EXIT_SAFE


def _print_verdict(v, args) -> None:
    if args.json:
        print(json.dumps(v.to_dict(), ensure_ascii=False, indent=2))
        return
    who = {"user": "prompt", "agent": "response"}.get(v.role or "", "input")
    if v.status == "error":
        print(f"ERROR  could not judge the {who}: {v.error}")
    elif v.status == "safe":
        print(f"safe   ({who}, p_unsafe={v.p_unsafe:.3f})")
    else:
        cats = ", ".join(f"{c} {n}" for c, n in zip(v.categories, v.category_names))
        print(f"UNSAFE ({who}, p_unsafe={v.p_unsafe:.3f}): {cats}")
    if v.category_scores:
        top = sorted(v.category_scores.items(), key=lambda kv: -kv[1])[:5]
        print("       top category scores: " + ", ".join(f"{c}={s:.3f}" for c, s in top))
    if v.truncation:
        t = v.truncation
        note = f"dropped {t['dropped_turns']} earliest turn(s) ({t['dropped_tokens']} tokens)"
        if t.get("windows"):
            note += f"; judged turn ({t['judged_turn_tokens']} tokens) checked in {t['windows']} overlapping windows"
        print(f"       note: over the context limit — {note}")
    for note in v.notes:
        print(f"       note: {note}")
    print(f"       {v.prompt_tokens} prompt tokens ({v.cached_tokens} from the policy cache), "
          f"{v.timings.get('total_ms', 0):.0f} ms")


def run(args) -> int:
    from .conversation import ConversationError
    from .guard import Guard
    from .policy import Policy, PolicyError

    try:
        messages = _conversation(args)
        policy = Policy.from_toml(args.policy) if args.policy else None
        guard = Guard.load(args.model, policy=policy, max_context=args.max_context, threshold=args.threshold,
                           subset_mode=args.subset_mode)
        if args.jsonl is not None:
            return _moderate_jsonl(args, guard)
        verdict = guard.moderate(messages, category_scores=args.category_scores)
    except Exception as e:  # noqa: BLE001 - whatever broke, exit 2 "could not judge": Python's own exit code 1 reads as unsafe
        message = str(e)
        if not isinstance(e, (ConversationError, PolicyError, ValueError, OSError)):  # a bug, not bad input: show where
            traceback.print_exc()
            message = f"internal error: {type(e).__name__}: {e}"
        if args.json:
            print(json.dumps({"status": "error", "flagged": True, "error": message}))
        else:
            print(f"error: {message}", file=sys.stderr)
        return EXIT_ERROR
    _print_verdict(verdict, args)
    return {"safe": EXIT_SAFE, "unsafe": EXIT_UNSAFE}.get(verdict.status, EXIT_ERROR)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pocketguard", description="Compact, fast LLM safety guards: judge conversations as safe or unsafe with "
        "MLCommons hazard categories S1-S14, and compress, export, evaluate and benchmark guards.",
        epilog="`pocketguard VERB --help` for a verb's options; exit codes of moderate: 0 safe, 1 unsafe, 2 could not judge.")
    sub = parser.add_subparsers(dest="verb", required=True)
    argv = sys.argv[1:] if argv is None else argv
    # Only the chosen verb's module is imported; the rest get a placeholder parser for --help.
    chosen = argv[0] if argv and argv[0] in VERBS else None
    modules = {}
    for verb, (module, help_) in VERBS.items():
        p = sub.add_parser(verb, help=help_)
        if verb == chosen:
            modules[verb] = importlib.import_module(module)
            modules[verb].add_arguments(p)
    args = parser.parse_args(argv)
    try:
        return modules[args.verb].run(args)
    except BrokenPipeError:  # `pocketguard moderate --json ... | head`: the reader left; say nothing more (Python's
        # documented recipe: point stdout at devnull so the interpreter's final flush cannot raise again)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 2  # what was printed is not all of it: not a verdict a script may read as safe


if __name__ == "__main__":
    sys.exit(main())
