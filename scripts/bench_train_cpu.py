"""CPU training steps in fp32 against the same steps under bf16 autocast (`TrainConfig.cpu_bf16`), same run.

    python scripts/bench_train_cpu.py                        # the table in docs/compress.md (~1-2 minutes)
    python scripts/bench_train_cpu.py --layers 30 --steps 3  # the whole SmolLM2-135M shape (~3 minutes)

Each row trains one model through `pocketguard.train.train` (the real loop: forward, loss, backward, clipping,
AdamW) twice from the same weights and batches, in fp32 and with `cpu_bf16 = true`: `float` is the model as it
is, `QAT int4` the same model after `prepare_qat` with the default recipe's qat step settings (int4 group-32
weights, dynamic int8 activations, int4 embedding, int8 head). Batches are `--batch` examples of exactly
`--tokens` tokens (no padding).

A row's two runs go at once, one step at a time in turn (each in a thread; one works while the other waits), so
that load from other processes on a shared machine falls on both alike: run one after the other on this 2-core
VM, the same step was seen to take anything from 1.2 s to 11 s, in CPU time too. A step's time is the wall and
the process CPU time (all threads) from its start to its end; the first `--warmup` steps of each run are not
timed. Wall times are the median (and best) step; CPU times, the median step, were the steadier of the two from
run to run on the shared VM. The last column: each run's loss after its last step, to see that the bf16 run
trains the same thing.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import threading
import time

import torch

from pocketguard.examples import encode_example
from pocketguard.model import ModelArgs, Transformer
from pocketguard.policy import Policy
from pocketguard.toy import TOY_WORDS, toy_examples, toy_tokenizer
from pocketguard.train import TrainConfig, cpu_bf16_supported, train

POLICY = Policy.default().subset(["S1", "S9", "S10"])


def examples_of_length(tok, n: int, tokens: int) -> list[dict]:
    """`n` toy examples of exactly `tokens` guard-prompt + answer tokens (toy words are one token each)."""
    out = []
    for i, e in enumerate(toy_examples(n, seed=0, agent_fraction=0.0)):
        base = len(encode_example(tok, POLICY, e, 1 << 20).ids)
        filler = " ".join(TOY_WORDS[(i + k) % len(TOY_WORDS)] for k in range(tokens - base))
        e = {**e, "messages": [{"role": "user", "content": e["messages"][0]["content"] + " " + filler}]}
        if len(encode_example(tok, POLICY, e, 1 << 20).ids) != tokens:
            raise SystemExit(f"--tokens {tokens} is shorter than a toy guard prompt ({base} tokens)")
        out.append(e)
    return out


class Run:
    """One `train` call in its own thread that works only while it holds the turn and passes it on after every
    step (autocast is thread-local, so fp32 and bf16 runs can share the process)."""

    def __init__(self, model: Transformer, config: TrainConfig, examples: list[dict], tok):
        self.model, self.config, self.examples, self.tok = model, config, examples, tok
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.loss = float("nan")
        self.error: BaseException | None = None
        self.done = False


def interleave(runs: list[Run]) -> None:
    """Run every `train` to its end, one step of each in turn."""
    turn = threading.Condition()
    state = {"next": 0}

    def pass_turn(i: int) -> None:  # under `turn`
        live = [j for j in range(1, len(runs) + 1) if not runs[(i + j) % len(runs)].done]
        state["next"] = (i + live[0]) % len(runs) if live else -1
        turn.notify_all()

    def work(i: int) -> None:
        run = runs[i]
        with turn:
            turn.wait_for(lambda: state["next"] == i)
        start = (time.perf_counter(), time.process_time())

        def log(rec: dict) -> None:
            nonlocal start
            if "loss" not in rec:
                return
            run.wall.append(time.perf_counter() - start[0])
            run.cpu.append(time.process_time() - start[1])
            run.loss = rec["loss"]
            with turn:
                pass_turn(i)
                turn.wait_for(lambda: state["next"] == i)
            start = (time.perf_counter(), time.process_time())

        try:
            train(run.model, run.examples, run.tok, POLICY, run.config, log=log)
        except BaseException as e:  # re-raised by the caller, after the other runs have finished
            run.error = e
        finally:
            with turn:
                run.done = True
                pass_turn(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(runs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for run in runs:
        if run.error is not None:
            raise run.error


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=4, help="decoder blocks (SmolLM2-135M has 30)")
    ap.add_argument("--dim", type=int, default=576)
    ap.add_argument("--heads", type=int, nargs=2, default=(9, 3), metavar=("Q", "KV"))
    ap.add_argument("--ffn", type=int, default=1536)
    ap.add_argument("--vocab", type=int, default=49152)
    ap.add_argument("--batch", type=int, default=4, help="examples per step")
    ap.add_argument("--tokens", type=int, default=400, help="tokens per example")
    ap.add_argument("--steps", type=int, default=6, help="timed steps per run")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps first (the first step holds the setup)")
    ap.add_argument("--no-qat", action="store_true", help="only the float model")
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()
    if args.warmup < 1:
        ap.error("--warmup must be at least 1: the first step's time holds train's setup")
    if not cpu_bf16_supported():
        raise SystemExit("this CPU has no bf16 matmul instructions (avx512_bf16 or AMX-BF16): cpu_bf16 is refused")
    if args.threads:
        torch.set_num_threads(args.threads)

    tok = toy_tokenizer(tempfile.mkdtemp(prefix="bench_train_"), POLICY)
    margs = ModelArgs(dim=args.dim, n_layers=args.layers, n_heads=args.heads[0], n_kv_heads=args.heads[1],
                      vocab_size=max(args.vocab, tok.vocab_size), ffn_dims=args.ffn, max_seq_len=args.tokens,
                      tie_embeddings=True)
    base = Transformer(margs).init_weights(std=0.02, seed=0)
    n_params = sum(p.numel() for p in base.parameters())
    examples = examples_of_length(tok, args.batch * (args.warmup + args.steps), args.tokens)
    rows = [("float", lambda m: m)]
    if not args.no_qat:
        from pocketguard.compress.quantize import QuantConfig, prepare_qat

        qcfg = QuantConfig(weight_bits=4, group_size=32, act_bits=8, embedding_bits=4, head_bits=8)
        rows.append(("QAT int4", lambda m: prepare_qat(m, qcfg)))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.layers} blocks, dim {args.dim}, "
          f"{n_params / 1e6:.0f}M parameters; steps of {args.batch} x {args.tokens} tokens; "
          f"wall: median (best), CPU: median, of {args.steps} steps after {args.warmup} warm-up, fp32 and bf16 steps interleaved")
    print("| model | fp32 s/step | bf16 autocast s/step | speed-up | fp32 CPU s/step | bf16 CPU s/step | speed-up (CPU) "
          "| loss after the last step fp32 / bf16 |\n|---|---|---|---|---|---|---|---|")
    for name, prepare in rows:  # one pair of models in memory at a time
        f, b = (Run(prepare(copy.deepcopy(base)),
                    TrainConfig(lr=1e-4, steps=args.warmup + args.steps, batch_size=args.batch, warmup=0,
                                log_every=1, max_len=args.tokens, bucket=False, progress=False, device="cpu",
                                cpu_bf16=bf16), examples, tok)
                for bf16 in (False, True))
        interleave([f, b])
        fw, bw = (r.wall[args.warmup:] for r in (f, b))
        fc, bc = (statistics.median(r.cpu[args.warmup:]) for r in (f, b))
        fm, bm = statistics.median(fw), statistics.median(bw)
        print(f"| {name} | {fm:.2f} ({min(fw):.2f}) | {bm:.2f} ({min(bw):.2f}) | {fm / bm:.2f}x ({min(fw) / min(bw):.2f}x) "
              f"| {fc:.2f} | {bc:.2f} | {fc / bc:.2f}x | {f.loss:.4f} / {b.loss:.4f} |")


if __name__ == "__main__":
    main()
