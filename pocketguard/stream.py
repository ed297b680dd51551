"""Streaming response moderation: judge an agent reply chunk by chunk and stop at the first unsafe point.

The stream keeps one sequence (`packed.Sequence`) holding the policy prefix, the earlier turns and the reply
so far. For each chunk it re-tokenizes the reply (so tokens equal a fresh tokenization of the whole text — a
chunk boundary may fall inside a word), rolls the sequence back to the longest common token prefix, appends
only what changed, then runs the fixed prompt suffix and the answer steps on top and rolls those back. A
chunk therefore costs its new tokens, the few tokens the boundary re-tokenized, the suffix, and the answer
steps — not the whole conversation again.

The earlier turns follow the guard's context policy as `moderate` applies it to the conversation with the reply so
far (`Guard._budget`, `Guard._drop`): the earliest turns that leave the reply no room are not in the sequence, and
when the growing reply needs the room of another, the history is run again without it (and the verdict's
`truncation` says what was dropped). A reply that alone does not fit is judged by `moderate`, in windows, and so is
one that holds text reading as the prompt's turn markup ("…\n\nUser: …": `prompt.markup_parts`).

`guard` is a `pocketguard.guard.Guard` (not imported here: the guard imports this module).
"""

from __future__ import annotations

import time

from .answer import Verdict, keep_to, scores_needed
from .conversation import Conversation, ConversationError, Message, check_unicode
from .policy import Policy
from .prompt import encode_suffix, encode_turn, markup_parts


class ResponseStream:
    def __init__(self, guard, conversation: Conversation, policy: Policy | None = None, category_scores: bool = False):
        if conversation.judged != "user":
            raise ValueError("stream() takes the conversation up to the user's last message; the reply is what you feed")
        self.guard, self.conversation = guard, conversation
        self.policy = policy or guard.policy
        # what the prompt lists, and the policy verdicts are kept to when that is not the same (Guard._judging)
        self.judging, self.keep = guard._judging(self.policy)
        self.category_scores = category_scores
        self._scored = scores_needed(category_scores, self.keep)
        self.grammar = guard._grammar(self.judging)
        self.text = ""
        self.chunks = 0
        self.first_unsafe: int | None = None  # index of the chunk at which the reply first became unsafe
        self.verdict: Verdict | None = None
        self.fed_tokens = 0  # tokens actually run through the model, for cost accounting
        self._turns = [encode_turn(guard.tokenizer, m.role, m.content) for m in conversation.messages]
        self._budget = guard._budget(self.judging, self.keep, "agent", self._scored)  # what the turns may take, as in moderate
        self._suffix = encode_suffix(guard.tokenizer, "agent")
        room = guard._answer_room(self.judging, self.grammar, self._scored)
        self._seq, todo, self._prefix_len = guard._sequence(self.judging, "agent", guard.max_context, room)
        self._prefix_len += len(todo)
        if todo:
            self._run(todo)
        # the history as moderate keeps it beside the shortest reply; `feed` drops more if a longer one needs it
        self._keep(guard._drop(self._turns + [encode_turn(guard.tokenizer, "agent", "")], self._budget)[0])

    def _keep(self, dropped: int) -> None:
        """Hold the policy prefix and the history less its `dropped` earliest turns in the sequence, no reply yet."""
        self._dropped = dropped
        self._history = [t for turn in self._turns[dropped:] for t in turn]
        self._seq.length = self._prefix_len
        if self._history:  # (every turn dropped: the reply is judged alone)
            self._run(self._history)
        self._base = self._seq.length
        self._reply: list[int] = []  # reply-turn tokens currently in the sequence after the history

    @property
    def stopped(self) -> bool:
        """True once a verdict was unsafe or error: a caller should stop streaming the reply to the user."""
        return self.verdict is not None and self.verdict.status != "safe"

    def _run(self, ids: list[int]):
        self.fed_tokens += len(ids)
        return self.guard._forward([self._seq], [ids])

    def feed(self, chunk: str) -> Verdict:
        """Append `chunk` to the reply and judge the reply so far. After an unsafe/error verdict the stream
        is stopped: further chunks are recorded but the stopping verdict is returned unchanged. A chunk that is not
        text is refused (ConversationError) and not recorded."""
        if not isinstance(chunk, str):
            raise ConversationError(f"a reply chunk must be a string, got {type(chunk).__name__}")
        check_unicode(chunk, "the reply chunk")
        self.text += chunk
        self.chunks += 1
        if self.stopped:
            return self.verdict
        t0 = time.perf_counter()
        if not self.text.strip():
            return Verdict.failure("nothing to judge yet: the reply so far is empty", role="agent")
        turn = encode_turn(self.guard.tokenizer, "agent", self.text)
        if len(turn) > self._budget or markup_parts(self.text):
            # The reply alone is past the context (moderate judges it in windows), or it holds text that reads as the
            # prompt's turn markup (moderate judges its parts on their own too): one sequence can do neither.
            msgs = list(self.conversation.messages) + [Message("agent", self.text)]
            v = self.guard.moderate(Conversation.create(msgs, notes=self.conversation.notes), policy=self.policy,
                                    category_scores=self.category_scores)
            return self._record(v)
        dropped, truncation = self.guard._drop(self._turns + [turn], self._budget)
        if dropped != self._dropped:  # the reply has grown into the room of a kept turn: hold what moderate keeps
            self._keep(dropped)
        common = 0
        for a, b in zip(self._reply, turn):
            if a != b:
                break
            common += 1
        self._seq.length = self._base + common
        logits = self._run(turn[common:] + self._suffix)
        self._reply = turn
        v = Verdict(status="error", role="agent", prompt_tokens=self._prefix_len + len(self._history) + len(turn) + len(self._suffix),
                    cached_tokens=self._prefix_len + len(self._history) + common, truncation=truncation)
        self.guard._answer([self._seq], logits, [v], self.judging, self.grammar, self._scored)
        v = keep_to(v, self.keep, self.guard.threshold, self.category_scores)
        # Keep the reply in the sequence, drop the suffix (it must come after whatever the next chunk adds).
        self._seq.length = self._base + len(turn)
        v.timings["total_ms"] = (time.perf_counter() - t0) * 1000
        v.notes = list(self.conversation.notes) + v.notes  # what of the conversation was not judged, as moderate says
        return self._record(v)

    def _record(self, v: Verdict) -> Verdict:
        self.verdict = v
        if v.status == "unsafe" and self.first_unsafe is None:
            self.first_unsafe = self.chunks - 1
        return v
