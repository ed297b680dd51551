"""A guard whose answers follow a script, for tests that need a known verdict from a random model."""

from pocketguard.guard import Guard
from pocketguard.prompt import encode_suffix


class ScriptedGuard(Guard):
    """During answer decoding the model strongly prefers the scripted answer (`model.script`, token ids):
    a sequence's k-th answer step gets +50 on the script's k-th token. Subclasses change `boost`."""

    def advance(self, seq, new_tokens: list[int], had: int) -> bool:
        """Track `seq.step`, the answer tokens given so far (0 after a prompt); True when this pass ended a
        prompt (its tokens end with the prompt suffix, which no answer contains)."""
        end = had + len(new_tokens)
        if any(new_tokens[-len(s):] == s for s in (encode_suffix(self.tokenizer, r) for r in ("user", "agent"))):
            seq.prompt_end, seq.step = end, 0
            return True
        seq.step = end - getattr(seq, "prompt_end", end)
        return False

    def boost(self, seq, new_tokens: list[int], had: int) -> dict[int, float]:
        """Vocabulary id -> logit added, for a sequence that held `had` tokens and was given `new_tokens`."""
        self.advance(seq, new_tokens, had)
        script = getattr(self.model, "script", [])
        return {script[seq.step]: 50.0} if seq.step < len(script) else {}

    def _forward(self, seqs, tokens, all_logits=False, parents=None):
        had = [s.length for s in seqs]
        out = super()._forward(seqs, tokens, all_logits, parents)
        out = [o.clone() for o in out] if all_logits else out.clone()
        for b, (s, t, h) in enumerate(zip(seqs, tokens, had)):
            for tid, add in self.boost(s, t, h).items():
                row = self.model.head_rows([tid])[0]
                if all_logits:
                    out[b][..., row] += add
                else:
                    out[b, row] += add
        return out
