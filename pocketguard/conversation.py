"""Conversations as a guard sees them: alternating user / agent turns, the last one judged.

Applications send OpenAI-style chat messages; Llama Guard 3's prompt has only `User:` and `Agent:` turns. The
mapping below is the one place that decides how one becomes the other (docs/api.md says why):

- `user` is a user turn; `assistant` (or `agent`, `model`, `bot`) is the agent's.
- `tool` (legacy `function`, Llama's `ipython`) is tool output the agent received: it belongs to the agent's turn,
  and a run of assistant and tool messages between two user messages is one agent turn, judged as a whole.
  An assistant message's tool calls are text the agent wrote, judged as `name(arguments)` lines; a tool-call-only
  message (content null) is fine.
- `system` / `developer` messages are not judged and are dropped: the template has no system turn, and folding
  the operator's instructions into a `User:` turn would judge them as the user's words. A conversation that
  *ends* with one has nothing defined to judge and is refused.
- content given as parts: text parts are joined by newlines; other parts (images, audio, files) are not judged.

Whatever is dropped or reinterpreted is counted in `Conversation.notes`, which the verdict carries.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Literal, Sequence

Role = Literal["user", "agent"]
_SIDE = {"user": "user", "human": "user", "assistant": "agent", "agent": "agent", "model": "agent", "bot": "agent",
         "tool": "tool", "function": "tool", "ipython": "tool", "system": "system", "developer": "system"}
_TEXT_PARTS = {"text": "text", "input_text": "text", "output_text": "text", "refusal": "refusal"}


def side_of(role: Any) -> str | None:
    """The side (user, agent, tool or system) a role name stands for, in any case ("Human", "assistant"); None for
    anything else."""
    return _SIDE.get(role.lower()) if isinstance(role, str) else None


class ConversationError(ValueError):
    """The conversation cannot be judged as given (bad roles, order, types)."""


@dataclass(frozen=True)
class Message:
    role: Role
    content: str


@dataclass(frozen=True)
class Conversation:
    """Alternating turns starting with the user. `judged` is whose last message the guard judges.

    `notes` says, in words, what of the input was not judged or was judged as something else (system messages
    dropped, tool output judged as the agent's, non-text parts not judged); empty for plain user/agent text.
    """

    messages: tuple[Message, ...]
    notes: tuple[str, ...] = ()

    @property
    def judged(self) -> Role:
        return self.messages[-1].role

    def __len__(self) -> int:
        return len(self.messages)

    @classmethod
    def from_messages(cls, messages: Iterable[Any], role: str | None = None) -> Conversation:
        """Parse OpenAI-style chat messages (dicts with role/content, or Message) as the module docstring says.

        `role`, when given ('user' or 'agent'/'assistant'), must be the judged side, i.e. the last turn's.
        """
        if isinstance(messages, (str, bytes, dict)):
            raise ConversationError("messages must be a list of {role, content} objects")
        if not isinstance(messages, Iterable):  # a JSON number, null or bool: malformed input, not a TypeError
            raise ConversationError(f"messages must be a list of {{role, content}} objects, got {_json_type(messages)}")
        # turns as (role, text pieces, number of its last message, count of its parts not judged)
        turns: list[tuple[Role, list[str], int, int]] = []
        counts: Counter[str] = Counter()
        last_side = None
        for i, m in enumerate(messages, 1):
            side: str  # user, agent, tool or system
            if isinstance(m, Message):  # its role read as a dict's is (an unknown one is refused, not taken as the agent)
                side = _side(i, m.role)
                if not isinstance(m.content, str):
                    raise ConversationError(f"message #{i}: content must be a string, got {_json_type(m.content)}")
                texts, skipped = [m.content], 0
            elif isinstance(m, dict):
                side, texts, skipped = _read(i, m, counts)
            else:
                raise ConversationError(f"message #{i} must be an object with role and content, got {type(m).__name__}")
            last_side = side
            if side == "system":
                counts["system"] += 1
                continue
            turn_role: Role = "user" if side == "user" else "agent"
            if turns and turns[-1][0] == turn_role == "agent":
                turns[-1] = (turn_role, turns[-1][1] + texts, i, turns[-1][3] + skipped)
                continue
            if turns and turns[-1][0] == turn_role:
                raise ConversationError(f"message #{i} is from the user again, but turns must alternate user, agent, "
                                        "user, … (merge the two user messages)")
            if not turns and turn_role == "agent":
                raise ConversationError(f"message #{i} is from the {'tool' if side == 'tool' else 'agent'} but the "
                                        "conversation must start with the user (system messages aside)")
            turns.append((turn_role, texts, i, skipped))
        if last_side == "system":
            raise ConversationError("the last message is a system message, which a guard does not judge: end the "
                                    "conversation with the user, assistant or tool message whose role is to be judged")
        if not turns:
            raise ConversationError("conversation is empty")
        parsed = []
        for r, texts, last, skipped in turns:
            text = "\n".join(t for t in texts if t.strip())
            if not text:
                raise ConversationError(f"message #{last} has no text to judge: its {skipped} non-text content "
                                        "part(s) cannot be judged" if skipped else f"message #{last} is empty")
            check_unicode(text, f"message #{last}")
            parsed.append(Message(r, text))
        return cls.create(parsed, role, _notes(counts))

    @classmethod
    def create(cls, messages: Sequence[Message], role: str | None = None, notes: Sequence[str] = ()) -> Conversation:
        """Validate already-normalised turns (alternating, non-empty) and the judged `role`."""
        if not messages:
            raise ConversationError("conversation is empty")
        for i, m in enumerate(messages):
            expected = "user" if i % 2 == 0 else "agent"
            if m.role != expected:
                raise ConversationError(f"message #{i + 1} is from {m.role!r} but turns must alternate user, agent, "
                                        "user, … starting with the user")
            if not isinstance(m.content, str):
                raise ConversationError(f"message #{i + 1}: content must be a string, got {_json_type(m.content)}")
            if not m.content.strip():
                raise ConversationError(f"message #{i + 1} is empty")
            check_unicode(m.content, f"message #{i + 1}")
        conv = cls(tuple(messages), tuple(notes))
        if role is not None:
            r = side_of(role)
            if r not in ("user", "agent"):
                raise ConversationError(f"judged role must be 'user' or 'agent', got {role!r}")
            if r != conv.judged:
                raise ConversationError(f"asked to judge the {r}'s message but the last message is the {conv.judged}'s")
        return conv

    @classmethod
    def prompt(cls, text: str) -> Conversation:
        return cls.create([Message("user", text)])

    @classmethod
    def exchange(cls, prompt: str, response: str) -> Conversation:
        return cls.create([Message("user", prompt), Message("agent", response)])

    def to_messages(self) -> list[dict]:
        return [{"role": "user" if m.role == "user" else "assistant", "content": m.content} for m in self.messages]


ConversationLike = Conversation | str | Sequence[dict] | Sequence[Message]


def as_conversation(item: ConversationLike, role: str | None = None) -> Conversation:
    """Everything a caller may pass to a guard, as a Conversation: a plain string is a user prompt, a list is
    OpenAI-style messages, a Conversation is checked against `role` (its notes kept)."""
    if isinstance(item, Conversation):
        return replace(Conversation.create(item.messages, role), notes=item.notes)
    if isinstance(item, str):
        return Conversation.create([Message("user", item)], role)
    return Conversation.from_messages(item, role)


_JSON_KEYS = ("messages", "text", "role", "id")  # 'id' is the caller's, echoed by `moderate --jsonl`'s verdicts


def from_json(data: Any) -> Any:
    """A conversation as a JSON file or line carries it: a prompt string, a message list, or an object holding one
    under 'messages' (or a prompt under 'text'). Anything else is passed on for `as_conversation` to refuse.

    An object holds one of 'messages' and 'text', and besides it only 'role' and 'id': with both, one of them
    would go unjudged, and an unknown key (a misspelt 'role', a /v1/guard 'policy') would be ignored in silence."""
    if not isinstance(data, dict):
        return data
    unknown = [k for k in data if k not in _JSON_KEYS]
    if unknown:
        raise ConversationError(f"unknown key(s) {unknown} in the conversation object; it holds 'messages' or 'text', "
                                "and optionally 'role' and 'id' (labelled rows: `pocketguard eval`)")
    given = [k for k in ("messages", "text") if k in data]
    if len(given) != 1:
        raise ConversationError("the conversation object has both 'messages' and 'text': give one, the one to judge"
                                if given else "the conversation object needs 'messages' (a list of {role, content} "
                                "objects) or 'text' (a user prompt)")
    return data[given[0]]


def conversation_from_json(data: Any) -> Conversation:
    """`from_json`'s conversation, parsed, with the object's 'role' (whose turn is judged), when it has one, checked
    as /v1/guard checks it: the same JSON judges the same turn, or is refused, through every door."""
    return as_conversation(from_json(data), data.get("role") if isinstance(data, dict) else None)


def read_jsonl(path: Path) -> list[Conversation]:
    """The conversations of a JSONL file, one per line as `conversation_from_json` reads it (an object's 'role' too);
    a line that is not one is a ConversationError naming it. Lines are split at "\n" only: `str.splitlines` would
    also split at U+2028 and its kin, which JSON strings may hold unescaped."""
    convs = []
    for i, line in enumerate(path.read_text(encoding="utf-8").split("\n"), 1):
        if not line.strip():
            continue
        try:
            convs.append(conversation_from_json(json.loads(line)))
        except (ValueError, RecursionError, ConversationError) as e:  # not JSON, a 5000-digit number, absurd nesting
            raise ConversationError(f"{path}:{i}: not a conversation ({e or type(e).__name__})") from None
    return convs


def content_text(content: Any, where: str = "content") -> tuple[str, Counter[str]]:
    """The judgeable text of an OpenAI `content` (a string or a list of parts) and the non-text part types it
    held, by count; text parts are joined by newlines. Malformed content raises ConversationError."""
    if isinstance(content, str):
        return content, Counter()
    if not isinstance(content, list):
        raise ConversationError(f"{where} must be a string or a list of content parts, got {_json_type(content)}")
    texts: list[str] = []
    skipped: Counter[str] = Counter()
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if not isinstance(kind, str):
            raise ConversationError(f"{where}[{j}] must be a content part object with a 'type'")
        key = _TEXT_PARTS.get(kind)
        if key is None:
            skipped[kind] += 1
        elif not isinstance(part.get(key), str):
            raise ConversationError(f"{where}[{j}]: a {kind!r} part needs a string {key!r}")
        else:
            texts.append(part[key])
    return "\n".join(texts), skipped


def _side(i: int, role: Any) -> str:
    """Message #i's side (user, agent, tool or system) from an OpenAI role; anything else is refused."""
    side = side_of(role)
    if side is None:
        raise ConversationError(f"message #{i}: role must be 'user', 'assistant', 'tool' or 'system', got {role!r}")
    return side


def _read(i: int, m: dict, counts: Counter[str]) -> tuple[str, list[str], int]:
    """One message dict -> (side, text pieces, parts not judged); counts what was reinterpreted or not judged."""
    side = _side(i, m.get("role"))
    content = m.get("content")
    if side != "agent" and (m.get("tool_calls") or m.get("function_call") is not None):  # they would go unjudged
        raise ConversationError(f"message #{i}: only assistant messages make tool calls, but this {m['role']!r} message "
                                "has tool_calls / function_call: move them to the assistant message that made them")
    calls = _tool_calls(i, m) if side == "agent" else []
    skipped: Counter[str] = Counter()
    if content is None and calls:
        text = ""
    elif content is None:
        raise ConversationError(f"message #{i}: content must be a string or a list of content parts, got null")
    else:
        text, skipped = content_text(content, f"message #{i}: content")
    if side != "system":  # a system message's parts are dropped with it, not counted twice
        counts["nontext"] += sum(skipped.values())
        counts.update({f"part:{k}": n for k, n in skipped.items()})
    if side == "tool":
        counts["tool"] += 1
    counts["call"] += len(calls)
    return side, [text, *calls], sum(skipped.values())


def message_text(m: dict) -> str | None:
    """The text one OpenAI message dict adds to its turn, as `from_messages` judges it (its text parts and tool calls,
    joined), or None for a system message, which is dropped: what a per-message limit (the server's --max-chars)
    should count. Malformed messages raise ConversationError."""
    side, texts, _ = _read(0, m, Counter())
    return None if side == "system" else "\n".join(t for t in texts if t.strip())


def _tool_calls(i: int, m: dict) -> list[str]:
    """An assistant message's tool calls (`tool_calls`, or legacy `function_call`) as `name(arguments)` lines."""
    calls = m.get("tool_calls") or []
    if m.get("function_call") is not None:
        calls = [*calls, {"function": m["function_call"]}]
    if not isinstance(calls, list):
        raise ConversationError(f"message #{i}: tool_calls must be a list")
    out = []
    for j, call in enumerate(calls):
        fn = call.get("function") if isinstance(call, dict) else None
        name, args = (fn.get("name"), fn.get("arguments", "")) if isinstance(fn, dict) else (None, None)
        if isinstance(args, (dict, list)):
            args = json.dumps(args, ensure_ascii=False)
        if not isinstance(name, str) or not isinstance(args, str):
            raise ConversationError(f"message #{i}: tool call #{j + 1} needs function.name and function.arguments")
        out.append(f"{name}({args})")
    return out


def _notes(counts: Counter[str]) -> tuple[str, ...]:
    def n(k: int, what: str) -> str:
        return f"{k} {what}{'' if k == 1 else 's'}"

    notes = []
    if counts["system"]:
        notes.append(f"{n(counts['system'], 'system message')} not judged (dropped)")
    if counts["tool"]:
        notes.append(f"{n(counts['tool'], 'tool message')} judged as part of the agent's turn")
    if counts["call"]:
        notes.append(f"{n(counts['call'], 'tool call')} judged as the agent's text")
    if counts["nontext"]:
        kinds = ", ".join(sorted(k.removeprefix("part:") for k in counts if k.startswith("part:")))
        notes.append(f"{n(counts['nontext'], 'non-text content part')} not judged ({kinds})")
    return tuple(notes)


def check_unicode(text: str, where: str) -> None:
    """Refuse text no tokenizer can encode: an unpaired surrogate, e.g. a `\\ud800` JSON escape, or bytes that were
    not UTF-8 read with `surrogateescape` (a command-line argument, stdin)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ConversationError(f"{where} is not valid Unicode: it holds an unpaired surrogate ({text[e.start]!r}), "
                                "e.g. from input bytes that are not UTF-8") from None


def _json_type(x: Any) -> str:
    return {type(None): "null", bool: "a boolean", int: "a number", float: "a number", dict: "an object"}.get(
        type(x), type(x).__name__)
