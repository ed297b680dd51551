"""The training loop: guard-formatted batches, loss on answer tokens only, learning a separable toy task,
distillation over kept tokens, resume after a kill, DDP on CPU (gloo), and the CPU bf16 autocast opt-in."""

import math
import os
import socket
import warnings
from dataclasses import replace

import pytest
import torch

from pocketguard.compress.distill import TokenizerMismatch, check_same_tokenizer, distill
from pocketguard.compress.prune import prune_output
from pocketguard.guard import Guard
from pocketguard.model import ModelArgs, Transformer
from pocketguard.policy import Policy
from pocketguard.examples import IGNORE, GuardData, collate, encode_example, epoch_batches
from pocketguard.toy import toy_examples, toy_tokenizer
from pocketguard.train import TrainConfig, _AtPositions, cpu_bf16_supported, train

POLICY = Policy.default().subset(["S1", "S9", "S10"])


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tok(tmp_path_factory):
    return toy_tokenizer(tmp_path_factory.mktemp("toytok"), POLICY)


def small(tok, seed=0, **over):
    args = ModelArgs(**{**dict(dim=64, n_layers=2, n_heads=4, n_kv_heads=2, vocab_size=tok.vocab_size, ffn_dims=128,
                               max_seq_len=256), **over})
    return Transformer(args).init_weights(std=0.1, seed=seed)


def test_batches_put_targets_on_the_answer_only(tok):
    exs = toy_examples(6, seed=0)
    data = GuardData(exs, tok, POLICY, 256)
    b = collate(data.encoded[:4])
    for r, e in enumerate(data.encoded[:4]):
        n = len(e)
        assert b.valid[r].sum() == n and not b.valid[r, n:].any()
        answer = e.ids[e.n_prompt:]
        assert b.targets[r, e.n_prompt - 1 : n - 1].tolist() == answer and answer[-1] == tok.special("<|eot_id|>")
        assert (b.targets[r, : e.n_prompt - 1] == IGNORE).all() and (b.targets[r, n - 1 :] == IGNORE).all()
        assert tok.decode(answer[:-1]) == ("safe" if not exs[r]["categories"] else "unsafe\n" + ",".join(exs[r]["categories"]))
    # right padding does not change the logits at the answer positions
    model = small(tok).eval()
    net = _AtPositions(model)
    rows, cols = (b.targets != IGNORE).nonzero(as_tuple=True)
    with torch.no_grad():
        batched = net(b.tokens, b.valid, rows, cols)
        k = 0
        for r, e in enumerate(data.encoded[:4]):
            one = collate([e])
            rr, cc = (one.targets != IGNORE).nonzero(as_tuple=True)
            alone = net(one.tokens, one.valid, rr, cc)
            torch.testing.assert_close(batched[k : k + len(rr)], alone, rtol=1e-4, atol=1e-5)
            k += len(rr)


def test_overlong_prompts_drop_earliest_turns_and_keep_the_judged_one(tok):
    msgs = [{"role": "user", "content": "bread " * 60}, {"role": "assistant", "content": "cake " * 60},
            {"role": "user", "content": "how do I make a bomb"}]
    ex = {"messages": msgs, "label": "unsafe", "categories": ["S9"]}
    full = encode_example(tok, POLICY, ex, 10_000)
    e = encode_example(tok, POLICY, ex, len(full) - 80)
    assert e.dropped_turns == 2 and len(e) <= len(full) - 80 and e.ids[e.n_prompt :] == full.ids[full.n_prompt :]
    assert tok.encode(" bomb")[0] in e.ids and tok.encode(" bread")[0] not in e.ids
    long_turn = {"messages": [{"role": "user", "content": "bread " * 200 + "bomb"}], "label": "unsafe", "categories": ["S9"]}
    assert encode_example(tok, POLICY, long_turn, 100) is None  # skipped by default
    # cut, the unsafe turn would lose its "bomb" and still be labelled S9: skipped even with "truncate"
    assert encode_example(tok, POLICY, long_turn, 100, overlong="truncate") is None
    cut = encode_example(tok, POLICY, {**long_turn, "label": "safe", "categories": []}, 100, overlong="truncate")
    assert cut.truncated and len(cut) <= 100


def test_epoch_batches_are_deterministic_full_and_cover_everything():
    lengths = [5, 50, 7, 30, 12, 9, 40, 3, 22, 18, 11]
    a = epoch_batches(lengths, 4, seed=1, epoch=0)
    assert a == epoch_batches(lengths, 4, seed=1, epoch=0) and a != epoch_batches(lengths, 4, seed=1, epoch=1)
    assert all(len(b) == 4 for b in a) and set(i for b in a for i in b) == set(range(len(lengths)))


def test_training_reduces_loss_and_learns_the_toy_task(tok):
    model = small(tok, seed=3)
    dev = toy_examples(80, seed=1)
    cfg = TrainConfig(lr=5e-3, steps=300, batch_size=16, warmup=10, log_every=10, progress=False, device="cpu")
    r = train(model, toy_examples(600, seed=0), tok, POLICY, cfg, dev_examples=dev)
    losses = [h["loss"] for h in r.history if "loss" in h]
    assert losses[-1] < 0.3 * losses[0]
    assert r.eval["acc"] >= 0.95 and r.eval["loss"] < 0.2
    vs = Guard(model, tok, POLICY).moderate_batch([e["messages"] for e in dev], batch_size=40)
    right = sum((v.status, v.categories) == (e["label"], e["categories"]) for v, e in zip(vs, dev))
    assert right / len(dev) >= 0.9


class _Killed(Exception):
    pass


def test_resume_continues_from_the_saved_step(tok, tmp_path):
    exs = toy_examples(64, seed=2)
    cfg = dict(lr=3e-3, steps=12, batch_size=4, grad_accum=2, warmup=2, log_every=1, save_every=5, progress=False, device="cpu")
    straight = small(tok, seed=3)
    train(straight, exs, tok, POLICY, TrainConfig(**cfg, out_dir=str(tmp_path / "a")))

    def kill_after_7(rec):
        if rec.get("step") == 7:
            raise _Killed

    with pytest.raises(_Killed):
        train(small(tok, seed=3), exs, tok, POLICY, TrainConfig(**cfg, out_dir=str(tmp_path / "b")), log=kill_after_7)
    resumed = small(tok, seed=3)  # a fresh process would start from the untrained weights again
    r = train(resumed, exs, tok, POLICY, TrainConfig(**cfg, out_dir=str(tmp_path / "b")))
    assert r.resumed_from == 5 and r.step == 12
    for (n, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=n)
    # a finished run resumes to "nothing left to do"
    again = train(small(tok, seed=3), exs, tok, POLICY, TrainConfig(**cfg, out_dir=str(tmp_path / "b")))
    assert again.resumed_from == 12
    torch.testing.assert_close(again.model.output.weight, straight.output.weight)


def test_a_state_saved_before_optimizer_states_had_names_still_resumes(tok, tmp_path):
    """train_state.pt files of old keyed the optimizer state by integer (the order of the groups' parameters)."""
    exs = toy_examples(48, seed=2)
    cfg = TrainConfig(lr=3e-3, steps=8, batch_size=4, warmup=2, save_every=4, progress=False, device="cpu")
    straight = small(tok, seed=3)
    train(straight, exs, tok, POLICY, replace(cfg, out_dir=str(tmp_path / "a")))

    def kill_after_5(rec):
        if rec.get("step") == 5:
            raise _Killed

    with pytest.raises(_Killed):
        train(small(tok, seed=3), exs, tok, POLICY, replace(cfg, out_dir=str(tmp_path / "b"), log_every=1), log=kill_after_5)
    path = tmp_path / "b" / "train_state.pt"
    st = torch.load(path, weights_only=False)
    names = [n for g in st["optimizer"]["param_groups"] for n in g["params"]]
    assert all(isinstance(n, str) for n in names)  # saved by name now
    index = {n: i for i, n in enumerate(names)}
    st["optimizer"] = {"state": {index[n]: v for n, v in st["optimizer"]["state"].items()},
                       "param_groups": [{**g, "params": [index[n] for n in g["params"]]}
                                        for g in st["optimizer"]["param_groups"]]}
    torch.save(st, path)
    resumed = small(tok, seed=3)
    assert train(resumed, exs, tok, POLICY, replace(cfg, out_dir=str(tmp_path / "b"))).resumed_from == 4
    for (n, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), n


def test_resume_with_lora_dropout_draws_the_masks_the_killed_run_would_have(tok, tmp_path):
    from pocketguard.compress.lora import add_lora

    exs = toy_examples(48, seed=2)
    cfg = TrainConfig(lr=5e-3, steps=10, batch_size=4, warmup=2, save_every=4, log_every=1, progress=False,
                      device="cpu")

    def adapted():
        torch.manual_seed(0)  # the same adapters in both runs
        return add_lora(small(tok, seed=3), rank=4, alpha=8.0, dropout=0.3)

    straight = adapted()
    train(straight, exs, tok, POLICY, replace(cfg, out_dir=str(tmp_path / "a")))

    def kill_after_6(rec):
        if rec.get("step") == 6:
            raise _Killed

    with pytest.raises(_Killed):
        train(adapted(), exs, tok, POLICY, replace(cfg, out_dir=str(tmp_path / "b")), log=kill_after_6)
    resumed = adapted()
    assert train(resumed, exs, tok, POLICY, replace(cfg, out_dir=str(tmp_path / "b"))).resumed_from == 4
    for (n, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), n


def test_activation_checkpointing_trains_the_same_weights_recomputing_each_block(tok):
    """Recomputing each block in backward (dropout replayed: LoRA adapters at p = 0.3; with a hidden-state teacher)
    gives the weights of keeping the activations; every block runs twice a micro-batch (forward, then again in
    backward); the switch is back off after training, also when training stops on an error, and a model without it
    is refused."""
    from pocketguard.compress.lora import add_lora

    exs = toy_examples(16, seed=4)
    cfg = TrainConfig(lr=5e-3, steps=3, batch_size=4, progress=False, device="cpu", hidden_weight=0.5, kl_weight=0.5)
    teacher = small(tok, seed=7)
    runs = {}
    for on in (False, True):
        torch.manual_seed(0)
        model = add_lora(small(tok, seed=3), rank=4, alpha=8.0, dropout=0.3)
        calls = []
        # (pre-hooks: a recomputation stops once it has what backward needs, before a block's forward hooks)
        hooks = [b.register_forward_pre_hook(lambda m, i, n=n: calls.append(n)) for n, b in enumerate(model.layers)]
        train(model, exs, tok, POLICY, replace(cfg, activation_checkpointing=on), teacher=teacher)
        for h in hooks:
            h.remove()
        runs[on] = model.state_dict(), calls
        assert model.activation_checkpointing is False
    for (n, a), b in zip(runs[False][0].items(), runs[True][0].values()):
        assert torch.equal(a, b), n
    assert len(runs[True][1]) == 2 * len(runs[False][1]) == 2 * 3 * 2  # 3 steps x 2 blocks, each twice
    assert runs[True][1][:2] == [0, 1] and runs[True][1][2:4] == [1, 0]  # forward, then backward's order
    def stop(module, args):
        raise RuntimeError("stopped")

    model = small(tok, seed=3)
    model.layers[1].register_forward_pre_hook(stop)
    with pytest.raises(RuntimeError, match="stopped"):
        train(model, exs, tok, POLICY, replace(cfg, activation_checkpointing=True), teacher=teacher)
    assert model.activation_checkpointing is False
    with pytest.raises(ValueError, match="activation_checkpointing needs"):
        train(torch.nn.Linear(2, 2), exs, tok, POLICY, replace(cfg, activation_checkpointing=True, hidden_weight=0.0,
                                                              kl_weight=0.0))


def test_hidden_only_distillation_does_not_run_the_head(tok):
    """With neither CE nor KL the head's output is unused: running it would leave DDP waiting for its gradient."""
    teacher, student = small(tok, seed=5), prune_output(small(tok, seed=6), tok, POLICY)
    calls = []
    student.output.register_forward_hook(lambda *a: calls.append(1))
    cfg = TrainConfig(lr=3e-3, steps=2, batch_size=8, ce_weight=0.0, kl_weight=0.0, hidden_weight=1.0,
                      progress=False, device="cpu")
    train(student, toy_examples(16, seed=4), tok, POLICY, cfg, teacher=teacher)
    assert not calls
    train(student, toy_examples(16, seed=4), tok, POLICY, replace(cfg, kl_weight=1.0), teacher=teacher)
    assert calls


def test_progress_bar_shows_on_a_terminal_only(tok, monkeypatch):
    """A log file (stderr not a terminal: nohup, CI, a pipe) gets the step reports, not tqdm's carriage returns."""
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    cfg = TrainConfig(lr=3e-3, steps=2, batch_size=4, progress=True, name="bar-probe", device="cpu")
    for stream, shown in ((io.StringIO(), False), (Terminal(), True)):
        monkeypatch.setattr(sys, "stderr", stream)
        train(small(tok, seed=1), toy_examples(8, seed=4), tok, POLICY, cfg)
        assert ("bar-probe" in stream.getvalue()) is shown


def test_distillation_uses_the_teachers_logits_on_the_students_kept_tokens(tok):
    teacher = small(tok, seed=5, n_layers=3, ffn_dims=160)  # another depth and width
    student = prune_output(small(tok, seed=6), tok, POLICY)
    exs = toy_examples(48, seed=4)
    data = GuardData(exs, tok, POLICY, 256)
    b = collate(data.encoded[:8])
    rows, cols = (b.targets != IGNORE).nonzero(as_tuple=True)

    def kl():
        with torch.no_grad():
            t = teacher.output(teacher(b.tokens, valid=b.valid, return_hidden=True)[rows, cols])
            t = t[:, student.output_token_ids]  # same vocabulary ids as the student's head rows
            s = _AtPositions(student)(b.tokens, b.valid, rows, cols)
            lt, ls = torch.log_softmax(t, -1), torch.log_softmax(s, -1)
            return float((lt.exp() * (lt - ls)).sum(-1).mean())

    before = kl()
    cfg = TrainConfig(lr=3e-3, steps=30, batch_size=8, ce_weight=0.0, kl_weight=1.0, progress=False, log_every=5, device="cpu")
    distill(student, teacher, exs, tok, POLICY, cfg)
    assert kl() < 0.5 * before
    # a head the teacher cannot score, or another tokenizer, is refused
    narrow = prune_output(small(tok, seed=7), tok, POLICY)
    with pytest.raises(ValueError, match="teacher's head cannot score"):
        distill(small(tok, seed=8), narrow, exs, tok, POLICY, TrainConfig(steps=1, progress=False, device="cpu"))
    with pytest.raises(TokenizerMismatch):
        check_same_tokenizer(student, small(tok, vocab_size=tok.vocab_size + 1), tok)


def test_kl_term_is_teacher_to_student_kl_scaled_by_t_squared():
    """The distillation term against an independent computation: mean over positions of
    T² · Σ p_t (log p_t − log p_s) at temperature T (Hinton et al.), whose gradient in the student's logits is
    T · (p_s − p_t) / positions; the reverse direction KL(student ‖ teacher) gives another value."""
    import numpy as np

    from pocketguard.train import _loss

    g = torch.Generator().manual_seed(0)
    s = (torch.randn(6, 11, generator=g) * 3).requires_grad_()
    t = torch.randn(6, 11, generator=g) * 3
    y = torch.randint(0, 11, (6,), generator=g)
    T = 2.5
    loss, parts = _loss(s, y, t, TrainConfig(ce_weight=0.0, kl_weight=1.0, temperature=T))
    loss.backward()

    def log_softmax(a):
        a = a - a.max(-1, keepdims=True)
        return a - np.log(np.exp(a).sum(-1, keepdims=True))

    lt, ls = log_softmax(t.double().numpy() / T), log_softmax(s.detach().double().numpy() / T)
    want = (np.exp(lt) * (lt - ls)).sum(-1).mean() * T * T
    reverse = (np.exp(ls) * (ls - lt)).sum(-1).mean() * T * T
    assert abs(loss.item() - want) < 1e-5 * want and abs(parts[1].item() - want) < 1e-5 * want
    assert abs(reverse - want) > 1e-2 * want
    np.testing.assert_allclose(s.grad.numpy(), T * (np.exp(ls) - np.exp(lt)) / 6, rtol=1e-4, atol=1e-6)
    # CE and KL weighted as configured
    both, parts = _loss(s.detach(), y, t, TrainConfig(ce_weight=0.5, kl_weight=2.0, temperature=T))
    ce = torch.nn.functional.cross_entropy(s.detach(), y).item()
    assert abs(both.item() - (0.5 * ce + 2.0 * want)) < 1e-5 * both.item() and abs(parts[0].item() - ce) < 1e-6


def test_hidden_distillation_pulls_every_tokens_hidden_state_to_the_teachers(tok):
    teacher = small(tok, seed=5, n_layers=3, ffn_dims=160)  # deeper and wider MLP, same model width
    student = prune_output(small(tok, seed=6), tok, POLICY)
    exs = toy_examples(48, seed=4)
    b = collate(GuardData(exs, tok, POLICY, 256).encoded[:8])

    def distance():
        with torch.no_grad():
            t = teacher(b.tokens, valid=b.valid, return_hidden=True)[b.valid]
            s = student(b.tokens, valid=b.valid, return_hidden=True)[b.valid]
            return float((1 - torch.nn.functional.cosine_similarity(s, t, dim=-1)).mean())

    before = distance()
    seen = []
    cfg = TrainConfig(lr=3e-3, steps=30, batch_size=8, ce_weight=0.0, kl_weight=0.0, hidden_weight=1.0,
                      progress=False, log_every=5, device="cpu")
    train(student, exs, tok, POLICY, cfg, teacher=teacher, log=seen.append)
    assert distance() < 0.5 * before
    logged = [r["hidden"] for r in seen if "hidden" in r]
    assert len(logged) == 6 and logged[-1] < logged[0]
    # the dense term needs a teacher, of the student's width
    with pytest.raises(ValueError, match="needs a teacher"):
        train(small(tok), exs, tok, POLICY, replace(cfg, steps=1))
    with pytest.raises(ValueError, match="width"):
        train(small(tok), exs, tok, POLICY, replace(cfg, steps=1), teacher=small(tok, dim=32, n_heads=2, n_kv_heads=1))
    with pytest.raises(ValueError, match="not all 0"):
        TrainConfig(ce_weight=0.0)


def test_hidden_distillation_needs_student_and_teacher_in_one_rotation(tok):
    """A rotation keeps the logits and turns the hidden states (QAT with rotation = "hadamard" rotates the student
    only): the hidden term across two bases is an error, not a wrong loss; a recipe step hands the student a copy of
    the teacher turned the same way (compress.steps.teacher_for), and a student that is its teacher rotated then
    starts at distance 0. The step context's teacher is not touched."""
    from pocketguard.compress.rotate import rotate_model
    from pocketguard.compress.steps import teacher_for

    exs = toy_examples(16, seed=0)
    teacher = small(tok, seed=1)
    student = rotate_model(small(tok, seed=1), "hadamard", seed=3)  # the teacher's function, in another basis
    b = collate(GuardData(exs, tok, POLICY, 256).encoded[:8])
    with torch.no_grad():
        t = teacher(b.tokens, valid=b.valid, return_hidden=True)
        s = student(b.tokens, valid=b.valid, return_hidden=True)
        assert torch.allclose(student.output(s), teacher.output(t), atol=1e-4)
        assert float((1 - torch.nn.functional.cosine_similarity(s[b.valid], t[b.valid], dim=-1)).mean()) > 0.5
    cfg = TrainConfig(lr=1e-9, steps=1, batch_size=16, ce_weight=0.0, kl_weight=1.0, hidden_weight=1.0, bf16=False,
                      progress=False, log_every=1, device="cpu")
    with pytest.raises(ValueError, match="is not the teacher's"):
        train(student, exs, tok, POLICY, cfg, teacher=teacher)
    turned = teacher_for(student, {"teacher": teacher}, cfg)
    assert turned is not teacher and "rotation" not in (teacher.args.extra or {})
    assert teacher_for(student, {"teacher": teacher}, replace(cfg, hidden_weight=0.0)) is teacher  # KL alone: as is
    seen = []
    train(student, exs, tok, POLICY, cfg, teacher=turned, log=seen.append)
    first = next(r for r in seen if "hidden" in r)
    assert first["hidden"] < 1e-5 and first["kl"] < 1e-5


def test_ce_needs_every_answer_token_in_the_head(tok):
    model = small(tok)
    keep = [i for i in range(tok.vocab_size) if i != tok.encode("S9")[0]]
    args = ModelArgs.from_dict({**model.args.to_dict(), "output_token_ids": keep})
    with pytest.raises(ValueError, match="cannot emit answer tokens"):
        train(Transformer(args), toy_examples(32, seed=0), tok, POLICY, TrainConfig(steps=1, progress=False, device="cpu"))


def test_augmentation_changes_the_policy_between_epochs(tok):
    exs = [e for e in toy_examples(40, seed=9) if e["label"] == "unsafe"][:5]
    data = GuardData(exs, tok, POLICY, 256, augment=True, seed=0)
    seen = {tuple(data.get(i, epoch).ids) for i in range(len(exs)) for epoch in range(6)}
    assert len(seen) > len(exs)  # shuffled / dropped categories give new prompts (and answers)
    assert data.get(0, 3).ids == data.get(0, 3).ids  # reproducible


def test_augment_keep_reaches_the_draw(tok):
    """`augment_keep` (a recipe's [train] key) decides how often a shortened list still lists a violated code:
    at 1.0 an unsafe example never turns safe, at 0.0 a shortened one always does."""
    exs = [{"messages": [{"role": "user", "content": f"how do I stab person {i}"}], "label": "unsafe",
            "categories": ["S1"]} for i in range(40)]

    def safe_share(keep):
        data = GuardData(exs, tok, POLICY, 256, augment=True, seed=0, augment_keep=keep)
        labels = [data.get(i, e).label for i in range(len(exs)) for e in range(5)]
        return labels.count(0) / len(labels)

    assert safe_share(1.0) == 0.0
    assert 0.3 < safe_share(0.0) < 0.7  # every shortened list (p_drop 0.5) drops S1
    assert TrainConfig(augment_keep="uniform").augment_keep == "uniform"
    for bad in (1.5, -0.1, "fair", True):
        with pytest.raises(ValueError, match="augment_keep"):
            TrainConfig(augment_keep=bad)


@pytest.mark.parametrize("device", ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def test_loader_workers_train_the_same_weights_as_the_loop_itself(tok, tmp_path, device):
    """Batches built ahead in DataLoader worker processes (augmented, two micro-batches a step; pinned on CUDA)
    are the batches the loop builds itself: the trained weights agree (bit for bit on the CPU), and a run resumed
    with workers too. (gpu_run.sh runs this on the GPU before training: LOADER_WORKERS=0 if it fails there.)"""
    exs = toy_examples(48, seed=4)
    cfg = dict(lr=3e-3, steps=9, batch_size=4, grad_accum=2, warmup=2, log_every=1, progress=False, device=device,
               augment=True)
    inline = train(small(tok, seed=5), exs, tok, POLICY, TrainConfig(**cfg, loader_workers=0)).model
    ahead = train(small(tok, seed=5), exs, tok, POLICY, TrainConfig(**cfg, loader_workers=2)).model

    def stop_after_4(rec):
        if rec.get("step") == 4:
            raise _Killed

    out = str(tmp_path / "r")
    with pytest.raises(_Killed):
        train(small(tok, seed=5), exs, tok, POLICY, TrainConfig(**cfg, save_every=3, out_dir=out, loader_workers=1),
              log=stop_after_4)
    resumed = train(small(tok, seed=5), exs, tok, POLICY, TrainConfig(**cfg, save_every=3, out_dir=out, loader_workers=1))
    assert resumed.resumed_from == 3
    for n, a in inline.state_dict().items():
        if device == "cpu":
            assert torch.equal(a, ahead.state_dict()[n]), n
        torch.testing.assert_close(a, ahead.state_dict()[n], rtol=1e-5, atol=1e-6, msg=n)
        torch.testing.assert_close(a, resumed.model.state_dict()[n], rtol=1e-5, atol=1e-6, msg=n)
    for bad in (-1, True):
        with pytest.raises(ValueError, match="loader_workers"):
            TrainConfig(loader_workers=bad)


def test_step_batches_are_a_pure_function_of_the_step(tok):
    from pocketguard.train import StepBatches

    data = GuardData(toy_examples(30, seed=6), tok, POLICY, 256, augment=True, seed=1)
    a, b = StepBatches(data, 4, 2, 0, 2, 1, True), StepBatches(data, 4, 2, 0, 2, 1, True)
    for step in (0, 3, 7, 2):  # steps 0 and 2 in epoch 0, 3 in epoch 1 (4 batches of 8 an epoch), 7 in epoch 3
        a[step]
    for step in (2, 7, 0, 3):
        for x, y in zip(a[step], b[step]):
            assert torch.equal(x.tokens, y.tokens) and torch.equal(x.targets, y.targets)
    rank1 = StepBatches(data, 4, 2, 1, 2, 1, True)
    assert not torch.equal(rank1[0][0].tokens, a[0][0].tokens)  # each rank its own slice of the global batch


# ------------------------------------------------------------------------------------------- DDP (gloo)
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_setup(rank, world, port, tok_dir):
    """A spawned worker's start: join the gloo group's environment (world > 1), one intra-op thread, the toy tokenizer."""
    from pocketguard.tokenizer import HFTokenizer

    if world > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                          LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    return HFTokenizer(os.path.join(tok_dir, "tokenizer.json"))


def _ddp_worker(rank, world, port, tok_dir, out_dir, parallel):
    import torch.distributed as dist

    tok = _rank_setup(rank, world, port, tok_dir)
    model = small(tok, seed=11)
    cfg = TrainConfig(lr=3e-3, steps=4, batch_size=4, warmup=1, progress=False, parallel=parallel, device="cpu",
                      out_dir=os.path.join(out_dir, "run"), save_every=2)
    train(model, toy_examples(40, seed=1), tok, POLICY, cfg, dev_examples=toy_examples(10, seed=2))
    # a longer run with the same out_dir resumes from the saved (sharded, for FSDP) state
    model = small(tok, seed=11)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = train(model, toy_examples(40, seed=1), tok, POLICY, replace(cfg, steps=6), dev_examples=toy_examples(10, seed=2))
    assert r.resumed_from == 4 and r.step == 6
    torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, os.path.join(out_dir, f"rank{rank}.pt"))
    torch.save(r.eval, os.path.join(out_dir, f"eval{rank}.pt"))
    torch.save([h["loss"] for h in r.history if "loss" in h], os.path.join(out_dir, f"losses{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_process_training_ends_with_identical_weights(tok, tmp_path, parallel):
    import torch.multiprocessing as mp

    tok_dir = str(tmp_path / "tok")
    os.makedirs(tok_dir)
    import shutil

    shutil.copyfile(tok.path, os.path.join(tok_dir, "tokenizer.json"))
    mp.spawn(_ddp_worker, args=(2, _free_port(), tok_dir, str(tmp_path), parallel), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "rank0.pt"), torch.load(tmp_path / "rank1.pt")
    init = small(tok, seed=11).state_dict()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert any(not torch.equal(a[k], init[k]) for k in a)
    assert torch.load(tmp_path / "eval0.pt") == torch.load(tmp_path / "eval1.pt")  # all-reduced dev metrics
    assert (tmp_path / "run" / "train_state.pt").exists()
    # Two processes of batch 4 train as one process of batch 8 does (the same global batches): the loss is the mean
    # over the global batch's answer tokens, not the mean of the ranks' means (which weighed a rank holding short,
    # safe answers more: 0.5 % apart after 4 steps), and the logged loss is the global batch's, not rank 0's.
    one = small(tok, seed=11)
    cfg = TrainConfig(lr=3e-3, steps=4, batch_size=8, warmup=1, progress=False, device="cpu",
                      out_dir=str(tmp_path / "one"), save_every=2)
    train(one, toy_examples(40, seed=1), tok, POLICY, cfg)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = train(one, toy_examples(40, seed=1), tok, POLICY, replace(cfg, steps=6))
    for k, v in one.state_dict().items():
        torch.testing.assert_close(a[k], v, rtol=1e-4, atol=5e-5, msg=k)  # float summation order: ~1e-5
    torch.testing.assert_close(torch.load(tmp_path / "losses0.pt"), [h["loss"] for h in r.history if "loss" in h],
                               rtol=1e-5, atol=0)


def _recompute_worker(rank, world, port, tok_dir, out_dir, parallel):
    """Under `parallel`, train small(seed=11) with and without activation checkpointing; each rank saves both."""
    import torch.distributed as dist

    tok = _rank_setup(rank, world, port, tok_dir)
    got = {}
    for on in (False, True):
        model = small(tok, seed=11)
        train(model, toy_examples(40, seed=1), tok, POLICY, TrainConfig(lr=3e-3, steps=3, batch_size=4, warmup=1,
              progress=False, parallel=parallel, device="cpu", activation_checkpointing=on))
        got[on] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(got, os.path.join(out_dir, f"recompute{rank}.pt"))
    dist.destroy_process_group()


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_activation_checkpointing_under_ddp_and_fsdp_trains_the_same_weights(tmp_path, tok_dir, parallel):
    """Recomputed blocks inside DDP's and FSDP's wrappers (FSDP gathers a block's shards again for the recompute):
    each rank ends with the weights of training without recomputation, and both ranks with the same ones."""
    import torch.multiprocessing as mp

    mp.spawn(_recompute_worker, args=(2, _free_port(), tok_dir, str(tmp_path), parallel), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"recompute{r}.pt") for r in (0, 1)]
    for k, v in ranks[0][False].items():
        assert all(torch.equal(r[on][k], v) for r in ranks for on in (False, True)), k


def _mode_worker(rank, world, port, tok_dir, out_dir, parallel, steps, batch_size, hidden_only=False):
    """Train `small(seed=11)` in `out_dir` for `steps` (resuming whatever state is there) under `parallel`;
    rank 0 saves the weights to out_dir/final.pt. world 1: one process, no process group."""
    import torch.distributed as dist

    tok = _rank_setup(rank, world, port, tok_dir)
    model, teacher = small(tok, seed=11), None
    cfg = TrainConfig(lr=3e-3, steps=steps, batch_size=batch_size, warmup=1, progress=False, parallel=parallel,
                      device="cpu", out_dir=out_dir, save_every=2)
    if hidden_only:  # a pruned head, not in any loss (DDP: no gradient for it)
        model, teacher = prune_output(model, tok, POLICY), small(tok, seed=12)
        cfg = replace(cfg, ce_weight=0.0, kl_weight=0.0, hidden_weight=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train(model, toy_examples(40, seed=1), tok, POLICY, cfg, teacher=teacher)
    if rank == 0:
        torch.save({k: v.detach().clone() for k, v in model.state_dict().items()}, os.path.join(out_dir, "final.pt"))
    if dist.is_initialized():
        dist.destroy_process_group()


def _in_mode(mode: str, tok_dir: str, out_dir, steps: int, **kw) -> dict:
    """Run `_mode_worker` as one process ("one", batch 8) or as two (gloo, "ddp" / "fsdp", batch 4 each)."""
    import torch.multiprocessing as mp

    if mode == "one":
        _mode_worker(0, 1, 0, tok_dir, str(out_dir), "ddp", steps, 8, **kw)
    else:
        mp.spawn(_mode_worker, args=(2, _free_port(), tok_dir, str(out_dir), mode, steps, 4, *kw.values()), nprocs=2,
                 join=True)
    return torch.load(out_dir / "final.pt")


@pytest.fixture
def tok_dir(tok, tmp_path):
    import shutil

    d = tmp_path / "tok"
    d.mkdir()
    shutil.copyfile(tok.path, d / "tokenizer.json")
    return str(d)


@pytest.mark.parametrize("first, then", [("one", "fsdp"), ("ddp", "fsdp"), ("fsdp", "ddp")])
def test_a_state_saved_in_one_mode_resumes_in_another(tmp_path, tok_dir, first, then):
    """train_state.pt holds full state, the optimizer's keyed by parameter name in every mode."""
    reference = tmp_path / "ref"
    _in_mode("one", tok_dir, reference, 4)
    ref = _in_mode("one", tok_dir, reference, 6)
    _in_mode(first, tok_dir, tmp_path / "run", 4)
    got = _in_mode(then, tok_dir, tmp_path / "run", 6)
    for k, v in ref.items():
        torch.testing.assert_close(got[k], v, rtol=1e-4, atol=5e-5, msg=k)  # float summation order: ~1e-5


def test_two_process_ddp_distils_on_hidden_states_alone(tmp_path, tok_dir):
    one = _in_mode("one", tok_dir, tmp_path / "one", 3, hidden_only=True)
    two = _in_mode("ddp", tok_dir, tmp_path / "two", 3, hidden_only=True)
    for k, v in one.items():
        torch.testing.assert_close(two[k], v, rtol=1e-4, atol=5e-5, msg=k)


def _dropout_worker(rank, world, port, tok_dir, out_dir):
    """Two DDP ranks train a LoRA-adapted model with dropout for two steps; each saves the start of every mask drawn."""
    from pocketguard.compress.lora import add_lora
    import torch.distributed as dist

    tok = _rank_setup(rank, world, port, tok_dir)
    torch.manual_seed(0)
    model = add_lora(small(tok, seed=3), rank=4, alpha=8.0, dropout=0.5)
    masks = []
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):  # the first 512 elements, in the order the Bernoulli draws fill them
            m.register_forward_hook(lambda mod, inp, out: masks.append((out == 0).flatten()[:512].clone()))
    cfg = TrainConfig(lr=3e-3, steps=2, batch_size=4, warmup=1, progress=False, parallel="ddp", device="cpu")
    train(model, toy_examples(40, seed=1), tok, POLICY, cfg)
    torch.save(masks, os.path.join(out_dir, f"masks{rank}.pt"))
    dist.destroy_process_group()


def test_ddp_ranks_draw_dropout_masks_of_their_own(tmp_path, tok_dir):
    """Each step reseeds torch from (seed, step, rank): with one stream for all ranks, every rank dropped the same
    units of its own batch, so the global batch saw world-size copies of one mask instead of independent ones."""
    import torch.multiprocessing as mp

    mp.spawn(_dropout_worker, args=(2, _free_port(), tok_dir, str(tmp_path)), nprocs=2, join=True)
    a, b = torch.load(tmp_path / "masks0.pt"), torch.load(tmp_path / "masks1.pt")
    assert len(a) == len(b) > 0
    assert all(0.3 < m.float().mean() < 0.7 for m in a + b)  # dropout 0.5 was drawn
    assert sum(torch.equal(x, y) for x, y in zip(a, b)) == 0


def test_load_examples_keeps_unicode_line_separators_inside_strings(tmp_path):
    """JSON leaves U+2028 / U+0085 raw inside strings; a JSONL reader must split on '\\n' alone."""
    import json

    from pocketguard.examples import load_examples

    text = "first\u2028second\x85third"
    rows = [{"messages": [{"role": "user", "content": text}], "role": "user", "label": "safe", "categories": []},
            {"messages": [{"role": "user", "content": "x"}], "role": "user", "label": "safe", "categories": []}]
    path = tmp_path / "ex.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    got = load_examples(path)
    assert [r["messages"][0]["content"] for r in got] == [text, "x"]


def test_load_examples_is_evals_reader(tmp_path):
    """Training reads a labelled file as `pocketguard eval` does (one reader): CSV and `prompt`/`response` rows
    too, and a bad row is an ExampleError naming its file and line, as is an unsafe row without codes."""
    from pocketguard.evaluate.data import read_examples
    from pocketguard.examples import ExampleError, load_examples

    csv = tmp_path / "ex.csv"
    csv.write_text('prompt,response,label,categories\nhow do I bake,"like so, slowly",safe,\n'
                   'how do I make a bomb,,unsafe,S9\n', encoding="utf-8")
    got = load_examples(csv)
    assert got == [e.to_dict() for e in read_examples(csv)[0]]
    assert [(r["role"], r["label"], r["categories"]) for r in got] == [("agent", "safe", []), ("user", "unsafe", ["S9"])]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "hi", "label": "safe"}\n{"text": "hurt them", "label": "unsafe"}\n', encoding="utf-8")
    with pytest.raises(ExampleError, match=r"bad.jsonl:2: an unsafe example needs its category codes"):
        load_examples(bad)
    bad.write_text('{"text": "hi", "label": "safe"}\n{"text": "x", "label": "maybe"}\n', encoding="utf-8")
    with pytest.raises(ExampleError, match=r"bad.jsonl:2: label must be 'safe' or 'unsafe'"):
        load_examples(bad)
    with pytest.raises(ExampleError, match="not found"):
        load_examples(tmp_path / "missing.jsonl")


def test_training_from_a_file_reads_it_under_the_training_policy(tmp_path):
    """`train(examples="x.jsonl", policy=custom)` checks the rows' codes against that policy, not the default one
    (a custom policy's own codes were refused as unknown when the file was read under S1-S14)."""
    import json

    from pocketguard.examples import ExampleError, load_examples

    custom = Policy.from_dict({"category": [{"code": "C1", "name": "Spam"}, {"code": "C2", "name": "Scams"}]})
    path = tmp_path / "ex.jsonl"
    rows = [{"messages": [{"role": "user", "content": w}], "label": "unsafe" if i % 2 else "safe",
             "categories": ["C1"] if i % 2 else []} for i, w in enumerate(["hello there", "buy cheap pills now"] * 4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    with pytest.raises(ExampleError, match=r"ex.jsonl:2: unknown categories \['C1'\]"):
        load_examples(path)
    assert [r["categories"] for r in load_examples(path, custom)] == [r["categories"] for r in rows]
    ctok = toy_tokenizer(tmp_path / "tok", custom)
    cfg = TrainConfig(lr=1e-3, steps=2, batch_size=4, warmup=1, log_every=1, progress=False, device="cpu")
    r = train(small(ctok), str(path), ctok, custom, cfg, dev_examples=str(path))
    assert len([h for h in r.history if "loss" in h]) == 2


def test_training_caps_prompts_at_the_models_context(tok):
    """max_len above the model's context must not crash a step: earliest turns go, as at inference."""
    msgs = [{"role": "user", "content": "bread " * 80}, {"role": "assistant", "content": "cake " * 80},
            {"role": "user", "content": "how do I make a bomb"}]
    examples = [{"messages": msgs, "role": "user", "label": "unsafe", "categories": ["S9"]}] * 4
    n_full = len(encode_example(tok, POLICY, examples[0], 10_000))
    model = small(tok, max_seq_len=n_full - 40)
    cfg = TrainConfig(steps=2, batch_size=2, max_len=4096, progress=False, device="cpu")
    r = train(model, examples, tok, POLICY, cfg)
    assert r.step == 2 and r.skipped_examples == 0 and all(h["loss"] == h["loss"] for h in r.history if "loss" in h)


def test_over_long_judged_turns_are_counted_and_reported_never_trained_on_in_silence(tok):
    """A judged turn longer than max_len is skipped (default) or, with overlong="truncate", cut if it is safe: either
    way the result counts it and train warns. An unsafe one is never cut: its harm ("bomb", at the end) would be past
    the cut while its label still said S9, teaching the guard to flag the benign start."""
    long = {"messages": [{"role": "user", "content": "bread " * 120 + "bomb"}], "role": "user", "label": "unsafe",
            "categories": ["S9"]}
    long_safe = {**long, "messages": [{"role": "user", "content": "bread " * 120 + "cake"}], "label": "safe",
                 "categories": []}
    examples = toy_examples(8, seed=3) + [long, long_safe]
    for overlong, skipped, truncated in (("skip", 2, 0), ("truncate", 1, 1)):
        cfg = TrainConfig(steps=1, batch_size=4, max_len=96, overlong=overlong, progress=False, device="cpu")
        with pytest.warns(UserWarning) as caught:
            r = train(small(tok), examples, tok, POLICY, cfg)
        assert (r.skipped_examples, r.truncated_examples) == (skipped, truncated), overlong
        assert len([w for w in caught if "max_len" in str(w.message)]) == 1 + (overlong == "truncate")
    data = GuardData([long, long_safe], tok, POLICY, 96, overlong="truncate")
    assert (data.skipped, data.truncated) == (1, 1) and len(data.encoded[0]) <= 96
    assert data.examples == [long_safe] and data.encoded[0].label == 0


def test_a_rows_answer_names_its_codes_in_the_policys_order_augmented_or_not(tok):
    """`augment` returns a row's codes in the policy's order; the plain target must too, or one row would teach two
    answers ("S10,S9" and "S9,S10") depending on whether the epoch augments."""
    from pocketguard.examples import answer_ids

    row = {"messages": [{"role": "user", "content": "how do I make a bomb and hate them"}], "label": "unsafe",
           "categories": ["S10", "S9"]}
    want = answer_ids(tok, ["S9", "S10"])
    plain = GuardData([row], tok, POLICY, 4096)
    assert plain.encoded[0].ids[plain.encoded[0].n_prompt:] == want
    aug = GuardData([row], tok, POLICY, 4096, augment=True, augment_keep=1.0)
    answers = {tuple(aug.get(0, epoch).ids[aug.get(0, epoch).n_prompt:]) for epoch in range(20)}
    assert tuple(want) in answers and tuple(answer_ids(tok, ["S10", "S9"])) not in answers  # (others: codes dropped)


def test_a_non_finite_gradient_skips_its_step_instead_of_poisoning_the_weights(tok):
    model = small(tok, seed=1)
    calls = {"n": 0}

    def poison_second(g):
        calls["n"] += 1
        return g * float("nan") if calls["n"] == 2 else g

    model.layers[0].attention.wq.weight.register_hook(poison_second)
    cfg = TrainConfig(lr=1e-3, steps=5, batch_size=8, log_every=1, progress=False, device="cpu")
    r = train(model, toy_examples(64, seed=0), tok, POLICY, cfg)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert [h["skipped_steps"] for h in r.history if "loss" in h] == [0, 1, 1, 1, 1]


def test_right_padded_batches_take_the_causal_path_with_the_same_real_logits(tok):
    model = small(tok, seed=2).eval()
    a, b = tok.encode("how do I make a bomb"), tok.encode("hello")
    tokens = torch.tensor([a, b + [0] * (len(a) - len(b))])
    valid = torch.tensor([[True] * len(a), [True] * len(b) + [False] * (len(a) - len(b))])
    with torch.no_grad():
        both = model(tokens, valid=valid)
        alone = model(torch.tensor([b]))
    torch.testing.assert_close(both[1, : len(b)], alone[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(both[0], model(torch.tensor([a]))[0], rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------------------------------- CPU bf16 autocast
needs_cpu_bf16 = pytest.mark.skipif(not cpu_bf16_supported(),
                                    reason="this CPU has no bf16 matmul instructions (avx512_bf16 or AMX-BF16)")


def _wq_calls(model) -> list[tuple[bool, torch.dtype]]:
    """(grad enabled, output dtype) of every call of block 0's query projection: training steps run with
    gradients, the dev evaluation without."""
    seen: list[tuple[bool, torch.dtype]] = []
    model.layers[0].attention.wq.register_forward_hook(lambda m, i, o: seen.append((torch.is_grad_enabled(), o.dtype)))
    return seen


def test_cpu_training_keeps_fp32_by_default(tok):
    """The default bf16 = true autocasts on CUDA only: on the CPU every matmul stays fp32 and the weights are
    bit for bit those of a run with autocast off everywhere (what CPU training always was)."""
    exs, dev = toy_examples(64, seed=0), toy_examples(16, seed=1)
    cfg = TrainConfig(lr=3e-3, steps=4, batch_size=8, progress=False, device="cpu")
    default, off = small(tok, seed=4), small(tok, seed=4)
    seen = _wq_calls(default)
    train(default, exs, tok, POLICY, cfg, dev_examples=dev)
    train(off, exs, tok, POLICY, replace(cfg, bf16=False), dev_examples=dev)
    assert {g for g, _ in seen} == {True, False} and {d for _, d in seen} == {torch.float32}
    for (n, a), b in zip(default.state_dict().items(), off.state_dict().values()):
        assert torch.equal(a, b), n


@needs_cpu_bf16
def test_cpu_bf16_runs_training_and_evaluation_in_bf16_close_to_fp32(tok):
    exs, dev = toy_examples(64, seed=0), toy_examples(16, seed=1)
    cfg = TrainConfig(lr=3e-3, steps=4, batch_size=8, log_every=1, progress=False, device="cpu")
    fp32, bf16 = small(tok, seed=4), small(tok, seed=4)
    seen = _wq_calls(bf16)
    a = train(fp32, exs, tok, POLICY, cfg, dev_examples=dev)
    b = train(bf16, exs, tok, POLICY, replace(cfg, cpu_bf16=True), dev_examples=dev)
    # every training step and the dev evaluation ran the matmul in bf16; the weights themselves stay fp32
    assert {g for g, _ in seen} == {True, False} and {d for _, d in seen} == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in bf16.parameters())
    # the same data from the same start: other rounding, so other losses, but within bf16's precision
    la, lb = ([h["loss"] for h in r.history if "loss" in h] for r in (a, b))
    assert len(lb) == 4 and all(math.isfinite(x) for x in lb) and la != lb
    assert all(abs(x - y) <= 0.02 * x for x, y in zip(la, lb))
    assert math.isfinite(b.eval["loss"]) and abs(a.eval["loss"] - b.eval["loss"]) <= 0.02 * a.eval["loss"]


@needs_cpu_bf16
def test_cpu_bf16_training_learns_the_toy_task(tok):
    model = small(tok, seed=3)
    cfg = TrainConfig(lr=5e-3, steps=100, batch_size=16, warmup=10, log_every=10, progress=False, device="cpu",
                      cpu_bf16=True)
    r = train(model, toy_examples(600, seed=0), tok, POLICY, cfg, dev_examples=toy_examples(80, seed=1))
    losses = [h["loss"] for h in r.history if "loss" in h]
    assert losses[-1] < 0.3 * losses[0]
    assert r.eval["acc"] >= 0.95 and r.eval["loss"] < 0.2


def test_cpu_bf16_is_refused_without_bf16_instructions_and_without_bf16(tok, monkeypatch):
    monkeypatch.setattr("pocketguard.train.cpu_bf16_supported", lambda: False)
    cfg = TrainConfig(steps=1, batch_size=4, progress=False, device="cpu")
    with pytest.raises(RuntimeError, match="cpu_bf16 = false"):
        train(small(tok), toy_examples(8, seed=0), tok, POLICY, replace(cfg, cpu_bf16=True))
    assert train(small(tok), toy_examples(8, seed=0), tok, POLICY, cfg).step == 1  # the default needs no bf16
    with pytest.raises(ValueError, match="needs bf16 = true"):
        TrainConfig(bf16=False, cpu_bf16=True)


@pytest.mark.parametrize("bad, message", [
    (dict(grad_clip=-1.0), "grad_clip must be ≥ 0"),
    (dict(steps=-3), "steps must be ≥ 0"),
    (dict(epochs=0.0), "epochs must be > 0"),
    (dict(epochs=-1.0), "epochs must be > 0"),
    (dict(warmup=-0.1), "warmup must be ≥ 0"),
    (dict(min_lr_ratio=1.5), "min_lr_ratio must be within"),
    (dict(save_every=-2), "save_every must be"),
    (dict(eval_every=-2), "eval_every must be"),
])
def test_out_of_range_options_are_refused_not_trained_otherwise(bad, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(bad)
    assert TrainConfig(steps=5, epochs=0.0).steps == 5  # epochs are not read when steps are set



def test_a_run_restarted_before_its_first_save_logs_each_step_once(tok, tmp_path):
    """train_log.jsonl follows the saved state: a run killed before its first save left steps 1-3 in the log, and the
    restart (from step 0) appended its own 1-4 after them; so did a run with resume = false in a used out_dir."""
    import json

    exs = toy_examples(32, seed=2)
    cfg = TrainConfig(lr=3e-3, steps=4, batch_size=4, warmup=1, log_every=1, save_every=10, progress=False,
                      device="cpu", out_dir=str(tmp_path / "run"))

    def kill_after_3(rec):
        if rec.get("step") == 3:
            raise _Killed

    with pytest.raises(_Killed):
        train(small(tok, seed=3), exs, tok, POLICY, cfg, log=kill_after_3)
    assert not (tmp_path / "run" / "train_state.pt").exists()
    log = tmp_path / "run" / "train_log.jsonl"

    def steps():
        return [json.loads(line)["step"] for line in log.read_text().splitlines()]

    r = train(small(tok, seed=3), exs, tok, POLICY, cfg)
    assert r.resumed_from == 0 and steps() == [1, 2, 3, 4]
    train(small(tok, seed=3), exs, tok, POLICY, replace(cfg, resume=False))
    assert steps() == [1, 2, 3, 4]


def test_a_fresh_run_killed_before_its_first_save_is_not_resumed_from_an_older_runs_state(tok, tmp_path):
    """resume = false starts over: the older run's train_state.pt goes at the start, not at this run's first save,
    so a later resume after a kill before that save starts from step 0 instead of the other run's weights."""
    exs = toy_examples(32, seed=2)
    cfg = TrainConfig(lr=3e-3, steps=4, batch_size=4, warmup=1, log_every=1, save_every=10, progress=False,
                      device="cpu", out_dir=str(tmp_path / "run"))
    train(small(tok, seed=3), exs, tok, POLICY, cfg)
    assert (tmp_path / "run" / "train_state.pt").exists()

    def kill_after_2(rec):
        if rec.get("step") == 2:
            raise _Killed

    with pytest.raises(_Killed):
        train(small(tok, seed=4), exs, tok, POLICY, replace(cfg, resume=False), log=kill_after_2)
    assert not (tmp_path / "run" / "train_state.pt").exists()
    assert train(small(tok, seed=4), exs, tok, POLICY, cfg).resumed_from == 0


def test_a_row_with_a_code_the_policy_lacks_is_refused_not_trained_without_it(tok):
    """Rows given as dicts are checked as a file's are: a code outside the training policy (or one listed twice) is an
    ExampleError. Putting the codes in the policy's order had filtered them first, so ["S2", "S9"] under S1/S9/S10
    trained the answer "unsafe\\nS9" without a word, and a lone "s9" was reported as a row without codes."""
    from pocketguard.examples import ExampleError

    row = {"messages": [{"role": "user", "content": "how do I make a bomb"}], "label": "unsafe"}
    for cats, message in ((["S2", "S9"], r"categories \['S2'\] are not in the policy"),
                          (["s9"], r"categories \['s9'\] are not in the policy"),
                          (["S9", "S9"], "duplicate category codes")):
        with pytest.raises(ExampleError, match=message):
            GuardData(toy_examples(4, seed=0) + [{**row, "categories": cats}], tok, POLICY, 4096)
    cfg = TrainConfig(steps=1, batch_size=4, progress=False, device="cpu")
    with pytest.raises(ExampleError, match="not in the policy"):
        train(small(tok), toy_examples(8, seed=0) + [{**row, "categories": ["S2", "S9"]}], tok, POLICY, cfg)


def test_a_resumed_run_logs_what_the_straight_run_logged(tok, tmp_path):
    """The state holds the log's open window (the loss sums of the steps since the last record) and the count of
    skipped steps: resumed at step 2 with log_every 4, the record of step 4 averaged steps 3-4 alone and counted no
    skipped step, where the straight run's averaged 1-4 and counted the one it skipped."""
    exs = toy_examples(48, seed=2)
    cfg = TrainConfig(lr=3e-3, steps=8, batch_size=4, warmup=1, log_every=4, save_every=2, progress=False, device="cpu")

    def poisoned():  # the first step's gradient is NaN: skipped
        model, calls = small(tok, seed=3), {"n": 0}

        def hook(g):
            calls["n"] += 1
            return g * float("nan") if calls["n"] == 1 else g

        model.layers[0].attention.wq.weight.register_hook(hook)
        return model

    straight = train(poisoned(), exs, tok, POLICY, replace(cfg, out_dir=str(tmp_path / "a")))

    def kill_at_4(rec):
        if rec.get("step") == 4:
            raise _Killed

    with pytest.raises(_Killed):
        train(poisoned(), exs, tok, POLICY, replace(cfg, out_dir=str(tmp_path / "b")), log=kill_at_4)
    resumed = train(small(tok, seed=3), exs, tok, POLICY, replace(cfg, out_dir=str(tmp_path / "b")))
    assert resumed.resumed_from == 2

    def records(r):
        return [(h["step"], h["skipped_steps"], h["loss"], h["ce"]) for h in r.history]

    assert [s[:2] for s in records(straight)] == [(4, 1), (8, 1)]
    for a, b in zip(records(straight), records(resumed), strict=True):
        assert a[:2] == b[:2] and a[2:] == pytest.approx(b[2:], rel=1e-5)


def test_resuming_with_other_batches_than_the_saved_run_warns(tok, tmp_path):
    """A step's batches follow from (seed, global batch, grad_accum, bucket, augmentation): resumed with another of
    these (say on half the GPUs at the same per-process batch_size), the run went on with other data in silence."""
    import shutil

    exs = toy_examples(32, seed=2)
    cfg = TrainConfig(lr=3e-3, steps=2, batch_size=8, warmup=1, progress=False, device="cpu", out_dir=str(tmp_path / "a"))
    train(small(tok, seed=3), exs, tok, POLICY, cfg)
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    with pytest.warns(UserWarning, match=r"seed 0 -> 1, global_batch 8 -> 4 "):
        train(small(tok, seed=3), exs, tok, POLICY, replace(cfg, steps=3, batch_size=4, seed=1))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the same batches, other settings: no word
        train(small(tok, seed=3), exs, tok, POLICY, replace(cfg, lr=1e-3, out_dir=str(tmp_path / "b")))


def test_teacher_right_marks_the_examples_whose_verdict_the_teacher_predicts():
    from pocketguard.train import teacher_right

    rows = torch.tensor([0, 0, 1, 1, 1, 3])  # answer positions, row-major; row 2 has none (all padding: kept)
    y = torch.tensor([1, 4, 0, 2, 4, 1])  # the label's head row at each
    t = torch.zeros(6, 5)
    t[0, 1] = t[1, 3] = 1  # row 0: verdict right, a later position wrong (still right: the verdict decides)
    t[2, 1] = t[3, 2] = t[4, 4] = 1  # row 1: verdict wrong, later positions right
    t[5, 1] = 1  # row 3: right
    valid = torch.tensor([[1, 1, 0], [1, 1, 1], [0, 0, 0], [1, 0, 0]], dtype=torch.bool)
    at_answer, at_token = teacher_right(rows, t, y, valid)
    assert at_answer.tolist() == [1, 1, 0, 0, 0, 1] and at_token.tolist() == [1, 1, 0, 0, 0, 1]


def test_evaluate_scores_each_row_at_its_own_verdict_and_skips_a_row_without_one(tok):
    """`evaluate` reads each example's verdict at its first answer position (`first_answers`, which teacher_right
    shares): a row with no answer position (padding) is not scored, and the rows after it keep their own verdicts
    (a search for row i's first position had read the next row's for a row without one)."""
    from pocketguard.train import evaluate

    model = small(tok, seed=6).eval()
    enc = GuardData(toy_examples(3, seed=9), tok, POLICY, 256).encoded
    b = collate(enc)
    b.targets[1] = IGNORE  # row 1: no answer position
    got = evaluate(model, [b], tok, torch.device("cpu"), bf16=False)
    alone = [evaluate(model, [collate([e])], tok, torch.device("cpu"), bf16=False) for e in (enc[0], enc[2])]
    assert got["n"] == 2
    torch.testing.assert_close(got["p_unsafe"], [a["p_unsafe"][0] for a in alone], rtol=1e-5, atol=1e-6)


def test_where_the_teacher_is_wrong_distillation_trains_on_the_label_alone(tok):
    """A teacher that answers "safe" to everything, on unsafe rows only: with `distill_where_teacher_right` its KL
    and hidden-state terms drop out of every example, and training ends with the weights of CE alone; without it,
    the teacher pulls the student elsewhere. A config that has no teacher logits to read the verdict from is refused."""
    exs = [e for e in toy_examples(64, seed=4) if e["categories"]][:16]
    enc = GuardData(exs[:1], tok, POLICY, 256).encoded[0]
    safe = GuardData([{**exs[0], "label": "safe", "categories": []}], tok, POLICY, 256).encoded[0]
    safe_id = safe.ids[safe.n_prompt]
    assert safe_id != enc.ids[enc.n_prompt]

    class SaysSafe(torch.nn.Module):
        def forward(self, x):
            out = torch.zeros(x.shape[0], tok.vocab_size, dtype=x.dtype)
            out[:, safe_id] = 10.0
            return out

    teacher = small(tok, seed=5)
    teacher.output = SaysSafe()
    base = dict(lr=3e-3, steps=4, batch_size=8, progress=False, device="cpu", seed=0)

    def trained(**over):
        student = prune_output(small(tok, seed=6), tok, POLICY)
        cfg = TrainConfig(**{**base, **over})
        train(student, exs, tok, POLICY, cfg, teacher=teacher if cfg.uses_teacher else None)
        return student.state_dict()

    ce_only = trained(kl_weight=0.0, hidden_weight=0.0)
    vetoed = trained(kl_weight=1.0, hidden_weight=1.0, temperature=2.0, distill_where_teacher_right=True)
    pulled = trained(kl_weight=1.0, hidden_weight=1.0, temperature=2.0)
    assert all(torch.allclose(ce_only[k], vetoed[k], rtol=1e-5, atol=1e-7) for k in ce_only)
    assert not all(torch.allclose(ce_only[k], pulled[k], rtol=1e-3, atol=1e-5) for k in ce_only)
    with pytest.raises(ValueError, match="needs kl_weight > 0"):
        TrainConfig(hidden_weight=1.0, distill_where_teacher_right=True)
