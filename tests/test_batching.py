"""Batched judging (packed passes, answer loop): verdicts bit-identical to one-by-one, on mixed lengths, on
every kernel, for shapes like the next default guard's (non-power-of-two widths, 3:1 grouped-query heads)."""

from __future__ import annotations

import asyncio
import copy
import random
import threading
import time

import pytest
import torch

from pocketguard import packed
from pocketguard import runtime_cpu as R
from pocketguard import testing as T
from pocketguard.answer import AnswerGrammar, Verdict, decode
from pocketguard.compress.quantize import QuantConfig, quantize_
from pocketguard.conversation import Conversation
from pocketguard.guard import Guard
from pocketguard.policy import Policy

FAST = R.available()[0]  # runtime_cpu's AMX, AVX-512 VNNI or AVX2 kernel


def _mix(tok, n=9, seed=0):
    """Conversations of very different lengths: prompts, exchanges, multi-turn, one over-long judged turn."""
    rng = random.Random(seed)
    words = T._WORDS

    def text(k):
        return " ".join(rng.choice(words) for _ in range(k))

    convs = []
    for i in range(n):
        k = rng.choice([2, 5, 20, 60, 150])
        if i % 3 == 0:
            convs.append(text(k))
        elif i % 3 == 1:
            convs.append([{"role": "user", "content": text(4)}, {"role": "assistant", "content": text(k)}])
        else:
            convs.append([{"role": "user", "content": text(k)}, {"role": "assistant", "content": text(3)},
                          {"role": "user", "content": text(7)}])
    convs.append(text(700))  # windowed at max_context=600 (the default policy prompt is ~420 tiny tokens)
    return convs


def _key(v):
    return (v.status, v.categories, v.p_unsafe, v.category_scores, v.answer, v.error, v.prompt_tokens, v.cached_tokens,
            v.answer_tokens, v.truncation)


def _check_identical(guard, convs):
    one = [guard.moderate(c, category_scores=True) for c in convs]
    assert any(v.truncation and v.truncation.get("windows") for v in one), "the mix must exercise windows"
    assert all(v.error is None for v in one), [v.error for v in one]
    for batch_size in (64, 3):
        many = guard.moderate_batch(convs, category_scores=True, batch_size=batch_size)
        assert [_key(v) for v in many] == [_key(v) for v in one]
    rev = guard.moderate_batch(convs[::-1], category_scores=True)[::-1]  # other neighbours, other positions
    assert [_key(v) for v in rev] == [_key(v) for v in one]
    return one


def _model(tok, quantized: bool, **over):
    args = T.tiny_args(vocab_size=tok.vocab_size, **over)
    m = T.tiny_model(args, seed=2, std=0.1)
    return quantize_(m, QuantConfig(mode="rtn")).eval() if quantized else m


@pytest.mark.parametrize("shape", [dict(), dict(dim=192, n_heads=3, n_kv_heads=1, ffn_dims=320)], ids=["64d-4h2kv", "192d-3h1kv"])
def test_batched_equals_one_by_one_float(tiny_tok, shape):
    _check_identical(Guard(_model(tiny_tok, False, **shape), tiny_tok, max_context=600), _mix(tiny_tok))


def test_batched_equals_one_by_one_portable_int4(tiny_tok, monkeypatch):
    """The 8da4w model on the portable kernels (what POCKETGUARD_CPU_KERNEL=portable runs: fp32 SDPA attention, so
    fp32 is pinned here; the float test above runs this CPU's default attention, int8 on VNNI CPUs)."""
    monkeypatch.setenv("POCKETGUARD_ATTENTION", "fp32")
    m = _model(tiny_tok, True, dim=192, n_heads=3, n_kv_heads=1, ffn_dims=320)
    _check_identical(Guard(m, tiny_tok, max_context=600), _mix(tiny_tok, seed=1))


@pytest.mark.skipif(not FAST, reason=f"no runtime_cpu kernel here: {R.available()[1]}")
def test_batched_equals_one_by_one_runtime_cpu(tiny_tok, monkeypatch):
    """The AMX, VNNI or AVX2 kernel (whichever this CPU runs), on the 3:1-grouped, 192-wide shape; then with
    the block's second half in row chunks of 37 (as a 4,096-token pass runs in chunks of 1,024): the same bits."""
    m = _model(tiny_tok, True, dim=192, n_heads=3, n_kv_heads=1, ffn_dims=320)
    fast = copy.deepcopy(m)
    assert R.accelerate(fast)["blocks"] == 2
    one = _check_identical(Guard(fast, tiny_tok, max_context=600), _mix(tiny_tok, seed=2))
    monkeypatch.setattr(R.FastBlock, "REST_ROWS", 37)
    chunked = _check_identical(Guard(fast, tiny_tok, max_context=600), _mix(tiny_tok, seed=2))
    assert [_key(v) for v in chunked] == [_key(v) for v in one]
    ref = [Guard(m, tiny_tok, max_context=600).moderate(c) for c in _mix(tiny_tok, seed=2)]
    assert [v.status for v in one] == [v.status for v in ref]  # fast vs portable: same verdicts (to float rounding)


@pytest.mark.skipif(not (FAST and "vnni" in R._RUNS), reason="int8 attention needs AVX-512 VNNI")
def test_int8_attention_keeps_batched_equal_to_one_by_one(tiny_tok, monkeypatch):
    """int8 attention (the default here, POCKETGUARD_ATTENTION=auto): every pass runs `pg_attn_vnni` (causal, and
    the category scores' tree pass under its mask), and a conversation's verdict is still the same bits batched or
    alone; scores stay close to fp32 attention's. `int8` is the same as the default; `fp32` and its older name `sdpa` never call the kernel."""
    m = _model(tiny_tok, True, dim=192, n_heads=3, n_kv_heads=1, ffn_dims=320)
    R.accelerate(m)
    convs = _mix(tiny_tok, seed=3)
    monkeypatch.setenv("POCKETGUARD_ATTENTION", "fp32")  # the reference scores: exact fp32 SDPA
    sdpa = [Guard(m, tiny_tok, max_context=600).moderate(c) for c in convs]
    calls = []
    real = R.attention_int8
    monkeypatch.setattr(R, "attention_int8", lambda *a, **kw: calls.append((a[0].shape[0], a[5] is not None)) or real(*a, **kw))
    monkeypatch.delenv("POCKETGUARD_ATTENTION")
    one = _check_identical(Guard(m, tiny_tok, max_context=600), convs)
    rows = [n for n, tree in calls if not tree]
    assert 1 in rows and max(rows) > 100 and any(tree for _, tree in calls)  # prompt passes, answer steps, trees
    diffs = [abs(a.p_unsafe - b.p_unsafe) for a, b in zip(one, sdpa)]
    assert 0 < max(diffs) < 0.1 and sum(diffs) / len(diffs) < 0.03
    monkeypatch.setenv("POCKETGUARD_ATTENTION", "int8")
    assert [_key(Guard(m, tiny_tok, max_context=600).moderate(c, category_scores=True)) for c in convs[:2]] == \
        [_key(v) for v in one[:2]]
    for fp32 in ("fp32", "sdpa"):
        monkeypatch.setenv("POCKETGUARD_ATTENTION", fp32)
        calls.clear()
        assert Guard(m, tiny_tok, max_context=600).moderate(convs[0]).p_unsafe == sdpa[0].p_unsafe and not calls
    for bad in ("fp8", "INT8", ""):
        monkeypatch.setenv("POCKETGUARD_ATTENTION", bad)
        with pytest.raises(ValueError, match=r"POCKETGUARD_ATTENTION must be auto, int8 or fp32 \(sdpa: the same as fp32\)"):
            Guard(m, tiny_tok, max_context=600).moderate("hello")


@pytest.mark.parametrize("available", [True, False], ids=["vnni", "no-vnni"])
def test_attention_setting_picks_int8_exactly_where_the_kernel_runs(monkeypatch, available):
    """auto (the default) and int8: int8 exactly where `pg_attn_vnni` is available, else fp32 SDPA (no error);
    fp32 and sdpa: never int8. The availability check is patched, so this runs the same on any CPU."""
    monkeypatch.setattr(R, "int8_attention_available", lambda: available)
    monkeypatch.delenv("POCKETGUARD_ATTENTION", raising=False)
    assert R.int8_attention() is available
    for mode, want in (("auto", available), ("int8", available), ("fp32", False), ("sdpa", False)):
        monkeypatch.setenv("POCKETGUARD_ATTENTION", mode)
        assert R.int8_attention() is want, mode
    monkeypatch.setenv("POCKETGUARD_ATTENTION", "fp16")
    with pytest.raises(ValueError, match="must be auto, int8 or fp32"):
        R.int8_attention()


@pytest.mark.skipif(not (FAST and "vnni" in R._RUNS), reason="needs the AVX-512 VNNI kernels")
def test_a_forced_avx2_kernel_also_means_fp32_attention(monkeypatch):
    """POCKETGUARD_CPU_KERNEL=avx2 reproduces an AVX2 CPU: its matmuls and its (fp32) attention."""
    assert R.int8_attention_available()
    monkeypatch.setattr(R, "_KERNEL", "avx2")
    assert not R.int8_attention_available() and not R.int8_attention()


def test_packed_pass_matches_the_padded_model(tiny_tok, monkeypatch):
    """The packed forward computes what `Transformer.forward` computes, per sequence (to float rounding)."""
    monkeypatch.setenv("POCKETGUARD_ATTENTION", "fp32")  # the padded reference is SDPA: compare like with like
    m = _model(tiny_tok, False, dim=192, n_heads=3, n_kv_heads=1, ffn_dims=320)
    rng = random.Random(0)
    seqs_ids = [[rng.randrange(tiny_tok.vocab_size) for _ in range(n)] for n in (3, 200, 17)]
    seqs = [packed.Sequence(m, 256) for _ in seqs_ids]
    got = packed.forward(m, seqs, seqs_ids)
    for ids, g in zip(seqs_ids, got):
        want = m(torch.tensor([ids]))[0, -1]
        torch.testing.assert_close(g, want, atol=1e-4, rtol=1e-4)
    steps = packed.forward(m, seqs, [[5], [6], [7]])  # then one decode step each, on top of their keys
    for ids, t, g in zip(seqs_ids, (5, 6, 7), steps):
        torch.testing.assert_close(g, m(torch.tensor([ids + [t]]))[0, -1], atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="at least one"):
        packed.forward(m, seqs[:1], [[]])


# The GPU's one-call attention (`packed.padded`), forced on the CPU here and, where a GPU is present, checked
# there against the per-sequence path forced on (training/gpu_run.sh runs these first on the lent GPU).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_padded_gpu_attention_matches_the_per_sequence_path(tiny_tok, monkeypatch, device):
    """Shared prefix copies (two prefixes of different lengths; on the padded path born in the shared buffer,
    `Sequence.batch_after`), prompts of mixed lengths, decode steps on a subset, a tree pass: each logit as the
    per-sequence path's (fp32 SDPA both)."""
    monkeypatch.setenv("POCKETGUARD_ATTENTION", "fp32")
    m = _model(tiny_tok, False, dim=192, n_heads=3, n_kv_heads=1, ffn_dims=320).to(device)
    rng = random.Random(1)
    prefix_ids = [rng.randrange(tiny_tok.vocab_size) for _ in range(40)]
    bodies = [[rng.randrange(tiny_tok.vocab_size) for _ in range(n)] for n in (3, 150, 1, 61)]
    tol = dict(atol=2e-5, rtol=1e-5) if device == "cpu" else dict(atol=2e-4, rtol=1e-4)

    def run(pad):
        monkeypatch.setattr(packed, "padded", lambda device: pad)
        prefixes = [packed.Sequence(m, 40, device), packed.Sequence(m, 40, device)]
        packed.forward(m, prefixes, [prefix_ids, prefix_ids[:25]])
        mine = [prefixes[k % 2] for k in range(len(bodies))]
        seqs = (packed.Sequence.batch_after(mine, [160] * len(bodies)) if pad else
                [packed.Sequence.after(p, m, 160) for p in mine])
        out = [packed.forward(m, seqs, bodies, all_logits=True)]
        out.append(packed.forward(m, [seqs[3], seqs[1]], [[5], [6, 7]]))  # a subset, in another order
        out.append(packed.forward(m, seqs, [[8, 9, 10]] * 4, all_logits=True, parents=[-1, 0, 0]))  # a tree
        return out, seqs

    want, ref_seqs = run(False)
    got, seqs = run(True)
    assert all(s.group is seqs[0].group is not None for s in seqs)  # one shared KV buffer, made once
    for w, g in zip(want, got):
        for a, b in zip(w, g):
            torch.testing.assert_close(b, a, **tol)
    monkeypatch.setattr(packed, "GQA_SCORES", 0)  # a pass too big for enable_gqa: the KV heads are repeated
    for w, g in zip(want, run(True)[0]):
        for a, b in zip(w, g):
            torch.testing.assert_close(b, a, **tol)
    for s, r in zip(seqs, ref_seqs):  # the keys each sequence kept (its own rows of the group) are the same
        assert s.length == r.length
        torch.testing.assert_close(s.k[1][0, :, : s.length], r.k[1][0, :, : r.length], **tol)


@pytest.mark.parametrize("device", DEVICES)
def test_padded_gpu_attention_gives_the_same_verdicts(tiny_tok, monkeypatch, device):
    """Through the guard (length-sorted passes, windows, answer steps, category scores, a streamed reply): the padded
    path's verdicts are those of the per-sequence path, in the caller's order."""
    monkeypatch.setenv("POCKETGUARD_ATTENTION", "fp32")
    m = _model(tiny_tok, False, dim=192, n_heads=3, n_kv_heads=1, ffn_dims=320).to(device)
    convs = _mix(tiny_tok, seed=4)
    chunks = ["Sure, ", "here is ", "what I think about it."]

    def judge():
        g = Guard(m, tiny_tok, max_context=600)
        stream = g.stream([{"role": "user", "content": "tell me a story"}], category_scores=True)
        return g.moderate_batch(convs, category_scores=True) + [stream.feed(c) for c in chunks]

    monkeypatch.setattr(packed, "padded", lambda device: False)
    want = judge()
    monkeypatch.setattr(packed, "padded", lambda device: True)
    got = judge()  # the batch, then a streamed reply that extends its own sequence chunk by chunk
    assert [(v.status, v.categories, v.prompt_tokens, v.truncation) for v in got] == \
        [(v.status, v.categories, v.prompt_tokens, v.truncation) for v in want]
    tol = 1e-5 if device == "cpu" else 1e-4
    for a, b in zip(got, want):
        assert a.p_unsafe == pytest.approx(b.p_unsafe, abs=tol)
        assert a.category_scores == pytest.approx(b.category_scores, abs=tol)


def _reference_decode(logits_rows, grammar, rows):
    """The pre-vectorisation loop: Python over the candidate vocabulary at every step (one prompt)."""
    text = ""
    for k in range(grammar.max_steps):
        lg = logits_rows[k]
        opts = [(i, grammar.texts[i]) for i in range(len(grammar.ids) - 1)
                if rows[i] is not None and grammar.is_prefix(text + grammar.texts[i])]
        if grammar.is_complete(text) and rows[-1] is not None:
            opts.append((len(grammar.ids) - 1, ""))
        if not opts:
            return text, "error"
        i, s = max(opts, key=lambda o: float(lg[rows[o[0]]]))
        if i == len(grammar.ids) - 1:
            return text, "done"
        text += s
    return text, "unfinished"


def test_vectorised_answer_loop_equals_the_reference_loop(tiny_tok):
    head = list(range(tiny_tok.vocab_size))
    g = AnswerGrammar(tiny_tok, head, Policy.default())
    rows = list(g.ids)
    gen = torch.Generator().manual_seed(0)
    B = 40
    table = torch.randn(B, g.max_steps, tiny_tok.vocab_size, generator=gen) * 3
    # bias towards answer-ish tokens so that both safe and long unsafe answers occur
    table[:, :, [g.ids[i] for i, t in enumerate(g.texts) if t and t[0] in "S,\nu"]] += 2.0
    table[:, :, g.eot] += torch.linspace(-4, 4, B)[:, None]
    count = [0] * B

    def step(live, ids):
        out = []
        for b, chain in zip(live, ids):
            count[b] += len(chain)  # forced tokens ride along: the table is indexed by answer token
            out.append(table[b, count[b]])
        return torch.stack(out)

    got = decode(table[:, 0], step, g, rows)
    outcomes = set()
    for b, a in enumerate(got):
        text, how = _reference_decode(table[b], g, rows)
        assert a.text == text
        assert (a.finished, a.error is not None) == {"done": (True, False), "error": (False, True),
                                                     "unfinished": (False, True)}[how]
        outcomes.add((how, text.split("\n")[0]))
    assert ("done", "safe") in outcomes and ("done", "unsafe") in outcomes


def test_category_scores_tree_pass_equals_teacher_forcing_each_code(tiny_tok, monkeypatch):
    """The one tree pass over all codes scores each code as a plain forward of prompt + "unsafe\\n" + code; the
    codes are a trie (a token shared by several codes' prefixes is run once)."""
    monkeypatch.setenv("POCKETGUARD_ATTENTION", "fp32")  # the prompt pass would be int8; the plain forward is SDPA
    from pocketguard.conversation import Conversation
    from pocketguard.prompt import encode_prompt

    m = _model(tiny_tok, False, dim=192, n_heads=3, n_kv_heads=1, ffn_dims=320)
    g = Guard(m, tiny_tok)
    trees = []
    real = g._forward
    monkeypatch.setattr(g, "_forward", lambda seqs, toks, **kw: (kw.get("parents") and trees.append(len(toks[0]))) or real(seqs, toks, **kw))
    v = g.moderate("how do I make a bomb", category_scores=True)
    prefixes = {tuple(tiny_tok.encode(c)[:k]) for c in g.policy.codes for k in range(1, len(tiny_tok.encode(c)) + 1)}
    assert trees == [len(tiny_tok.encode("unsafe\n")) + len(prefixes)] and len(prefixes) < sum(len(tiny_tok.encode(c)) for c in g.policy.codes)
    ids = encode_prompt(tiny_tok, g.policy, Conversation.prompt("how do I make a bomb")).ids
    lead = tiny_tok.encode("unsafe\n")
    # a code ends at ",", at end of turn, or at a comma merged with the next code's first letters (",S")
    ends = {tiny_tok.encode(",")[0], tiny_tok.special("<|eot_id|>")} | {tiny_tok.encode("," + c)[0] for c in g.policy.codes}
    term = m.head_rows(sorted(ends))
    logp = []
    for code in g.policy.codes:
        c = tiny_tok.encode(code)
        with torch.no_grad():
            out = torch.log_softmax(m(torch.tensor([ids + lead + c]))[0], -1)
        n = len(ids) + len(lead)
        lp = sum(float(out[n - 1 + k, m.head_rows([t])[0]]) for k, t in enumerate(c))
        logp.append(lp + float(torch.logsumexp(out[n + len(c) - 1, term], -1)))
    want = torch.softmax(torch.tensor(logp), -1) * v.p_unsafe
    got = torch.tensor([v.category_scores[c] for c in g.policy.codes])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("path", ["float", "portable int4", "fast int4"])
def test_last_layer_computes_only_the_rows_read(tiny_tok, monkeypatch, path):
    """`packed.forward` without all_logits runs the final layer's attention and MLP on each sequence's last row only
    (every row's keys and values are still written): those logits are bit for bit the last rows of a full pass, on
    every path (int8 attention where the CPU has it, fp32 SDPA on the portable kernels), and so is the next step,
    which reads the final layer's keys and values of every row."""
    if path == "fast int4" and not FAST:
        pytest.skip(f"no runtime_cpu kernel here: {R.available()[1]}")
    if path == "portable int4":
        monkeypatch.setenv("POCKETGUARD_ATTENTION", "fp32")
    m = _model(tiny_tok, path != "float", dim=192, n_heads=3, n_kv_heads=1, ffn_dims=320)
    if path == "fast int4":
        assert R.accelerate(m)["blocks"] == 2
    rng = random.Random(4)
    prompts = [[rng.randrange(3, tiny_tok.vocab_size) for _ in range(n)] for n in (300, 7, 1, 140)]
    real = packed._block

    def run(all_logits):
        seqs = [packed.Sequence(m, 320) for _ in prompts]
        out = packed.forward(m, seqs, prompts, all_logits=all_logits)
        last = torch.stack([o[-1] for o in out]) if all_logits else out
        return last, packed.forward(m, seqs, [[5]] * len(seqs))  # the next step reads every row's final-layer KV

    full, full_next = run(True)
    calls = []
    monkeypatch.setattr(packed, "_block", lambda *a: calls.append(a[-1]) or real(*a))
    cut, cut_next = run(False)
    assert torch.equal(cut, full) and torch.equal(cut_next, full_next)
    n_layers = len(m.layers)
    assert [c is not None for c in calls[:n_layers]] == [False] * (n_layers - 1) + [True]  # the final layer only
    assert calls[n_layers - 1].tolist() == [299, 306, 307, 447]
    assert all(c is None for c in calls[n_layers:])  # one token per sequence: nothing to leave out


INT8_ATTENTION = pytest.mark.skipif(not (FAST and "vnni" in R._RUNS), reason="int8 attention needs AVX-512 VNNI")


@pytest.mark.parametrize("attention", [pytest.param("int8", marks=INT8_ATTENTION), "fp32"])
def test_a_tree_pass_read_at_its_last_token_keeps_the_tree(tiny_tok, monkeypatch, attention):
    """A tree pass without all_logits gives each sequence's logits at its last new token, which sees its own branch
    only: bit for bit the last row of the all_logits pass (int8 attention took the last token alone at its slot,
    where it saw every earlier new key, siblings included), and on fp32 SDPA the plain forward of that branch."""
    monkeypatch.setenv("POCKETGUARD_ATTENTION", attention)
    m = _model(tiny_tok, False, dim=192, n_heads=3, n_kv_heads=1, ffn_dims=320)
    rng = random.Random(5)
    prompts = [[rng.randrange(3, tiny_tok.vocab_size) for _ in range(n)] for n in (30, 7)]
    parents, tree = [-1, 0, 0, 2], [8, 9, 10, 11]  # the last token's branch: 8, 10, 11 (not 9, a sibling of 10)

    def run(all_logits):
        seqs = [packed.Sequence(m, 40) for _ in prompts]
        packed.forward(m, seqs, prompts)
        out = packed.forward(m, seqs, [tree] * len(seqs), all_logits=all_logits, parents=parents)
        return torch.stack([o[-1] for o in out]) if all_logits else out

    assert R.int8_attention() == (attention == "int8")
    got = run(False)
    assert torch.equal(got, run(True))
    if attention == "fp32":
        for ids, g in zip(prompts, got):
            torch.testing.assert_close(g, m(torch.tensor([ids + [8, 10, 11]]))[0, -1], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("shape", [dict(dim=96, n_heads=4, n_kv_heads=2), dict(dim=64, n_heads=2, n_kv_heads=1, head_dim=272)],
                         ids=["head-24", "head-272"])
def test_a_head_size_the_int8_kernel_cannot_take_runs_sdpa(tiny_tok, shape):
    """int8 attention is the default where the CPU has VNNI, but `pg_attn_vnni` takes head sizes that are multiples of
    16 up to 256 only: other models run SDPA there (a packed pass raised the kernel's ValueError instead), and give
    the plain forward's logits."""
    m = _model(tiny_tok, False, ffn_dims=128, **shape)
    rng = random.Random(6)
    prompts = [[rng.randrange(3, tiny_tok.vocab_size) for _ in range(n)] for n in (20, 1, 9)]
    seqs = [packed.Sequence(m, 24) for _ in prompts]
    got = packed.forward(m, seqs, prompts)
    for ids, g in zip(prompts, got):
        torch.testing.assert_close(g, m(torch.tensor([ids]))[0, -1], atol=1e-5, rtol=1e-5)
    assert not R.attention_int8_fits(m.args.head_dim)


# ------------------------------------------------------------------------------------ the server's batcher
class _HeldGuard:
    """Stands in for the guard behind the server's `Batcher`: each batch is judged `unsafe` once `release` is set,
    so a test holds a batch in flight (on the worker thread) as long as it needs."""

    def __init__(self):
        self.started, self.release = threading.Event(), threading.Event()

    def moderate_batch(self, convs, **kw):
        self.started.set()
        self.release.wait(10)
        return [Verdict("unsafe", categories=["S1"]) for _ in convs]


@pytest.mark.parametrize("finished", [False, True], ids=["running", "finished"])
def test_stop_answers_the_batch_in_flight_at_once(finished):
    """A request whose batch the worker was judging when the batcher stopped waited for its own deadline (its items
    had left the queue, so stop() never saw them): now stop() answers it at once, with its verdicts where the batch
    had already finished, else with the 503 the queued items get (never a default verdict)."""
    # imported here: the GPU stage runs this file's padded tests on a machine without the server's packages
    pytest.importorskip("fastapi")
    from pocketguard.server_api import ApiError, Metrics, ServerConfig
    from pocketguard.server_batcher import Batcher

    guard = _HeldGuard()
    batcher = Batcher(guard, ServerConfig(max_batch=1, batch_wait_ms=0), Metrics())

    async def go():
        running = asyncio.ensure_future(batcher.submit([Conversation.prompt("first")], None, False, 30))
        while not guard.started.is_set():
            await asyncio.sleep(0.005)
        queued = asyncio.ensure_future(batcher.submit([Conversation.prompt("second")], None, False, 30))
        await asyncio.sleep(0.01)
        assert batcher.depth == 1
        if finished:  # the worker returns; its verdicts reach the loop only once the loop runs again, after stop()
            guard.release.set()
            time.sleep(0.2)
        t0 = time.monotonic()
        await batcher.stop()
        out = await asyncio.wait_for(asyncio.gather(running, queued, return_exceptions=True), 2)
        guard.release.set()
        return out, time.monotonic() - t0

    (first, second), took = asyncio.run(go())
    assert took < 1  # not the 30 s deadline
    assert isinstance(second, ApiError) and second.status == 503
    if finished:
        assert [(v.status, v.categories) for v in first] == [("unsafe", ["S1"])]
    else:
        assert isinstance(first, ApiError) and (first.status, first.type) == (503, "server_shutting_down")


def test_a_batching_task_that_died_is_restarted_with_its_queue():
    """The batching task dying (a bug in taking a batch) left its queued items to the next `ensure_started`, which
    emptied the queue: those requests waited for their own deadline (504) though the restarted task was idle. The
    restart keeps the queue, so they are judged."""
    pytest.importorskip("fastapi")  # imported here: the GPU stage runs this file without the server's packages
    from pocketguard.server_api import Metrics, ServerConfig
    from pocketguard.server_batcher import Batcher

    guard = _HeldGuard()
    guard.release.set()
    batcher = Batcher(guard, ServerConfig(max_batch=4, batch_wait_ms=0), Metrics())
    take, calls = batcher._take, []

    def dies_once():
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug while taking a batch")
        return take()

    batcher._take = dies_once

    async def go():
        first = asyncio.ensure_future(batcher.submit([Conversation.prompt("first")], None, False, 5))
        await asyncio.sleep(0.01)  # submit starts the task and queues the item; the task dies taking it
        while batcher.alive:
            await asyncio.sleep(0.005)
        assert batcher.depth == 1  # the item is still queued; nothing judges it
        batcher.ensure_started()  # what the next request or /health does
        return await asyncio.wait_for(first, 2)

    verdicts = asyncio.run(go())
    assert [(v.status, v.categories) for v in verdicts] == [("unsafe", ["S1"])]
