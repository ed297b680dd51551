"""A guard whose answers follow a script, for tests that need a known verdict from a random model."""

from pocketguard.guard import Guard


class ScriptedGuard(Guard):
    """During answer decoding the model strongly prefers the scripted answer (`model.script`, token ids):
    a sequence's k-th answer step gets +50 on the script's k-th token. Subclasses change `boost`."""

    def boost(self, seq, new_tokens: list[int], had: int) -> dict[int, float]:
        """Vocabulary id -> logit added, for a sequence that held `had` tokens and was given `new_tokens`."""
        seq.step = 0 if len(new_tokens) > 1 else getattr(seq, "step", -1) + 1
        script = getattr(self.model, "script", [])
        return {script[seq.step]: 50.0} if seq.step < len(script) else {}

    def _forward(self, seqs, tokens, all_logits=False):
        had = [s.length for s in seqs]
        out = super()._forward(seqs, tokens, all_logits)
        out = [o.clone() for o in out] if all_logits else out.clone()
        for b, (s, t, h) in enumerate(zip(seqs, tokens, had)):
            for tid, add in self.boost(s, t, h).items():
                row = self.model.head_rows([tid])[0]
                if all_logits:
                    out[b][..., row] += add
                else:
                    out[b, row] += add
        return out
