"""Training on several GPUs: `pocketguard compress` under `torchrun` (NCCL), DDP and FSDP, against one GPU.

Needs two CUDA devices and is skipped elsewhere (the CPU suite runs the same under gloo: tests/test_train.py).
On a lent multi-GPU machine: `pytest -q tests/test_multi_gpu.py`."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

pytestmark = pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                                reason="needs two CUDA devices (NCCL)")

STEPS = {"distill": 30, "qat": 10}  # few steps: the comparison is of summation order, not of training


@pytest.fixture(scope="module")
def toy(tmp_path_factory) -> Path:
    from pocketguard.compress.recipe import make_toy

    return make_toy(tmp_path_factory.mktemp("toy"), steps=100)


def compress(toy: Path, name: str, nproc: int, parallel: str = "ddp", device: str = "cuda") -> Path:
    """Run the toy recipe (fp32, no autocast, fewer steps) as `name` on `nproc` processes, with the global batch of
    one process of 16 (`batch_size` is per process); its output folder."""
    text = (toy / "recipe.toml").read_text()
    text = text.replace('output = "out"', f'output = "{name}"').replace('device = "cpu"', f'device = "{device}"')
    assert "batch_size = 16\n" in text
    text = text.replace("batch_size = 16\n", f'batch_size = {16 // nproc}\nbf16 = false\nparallel = "{parallel}"\n')
    text = text.replace("steps = 100", f"steps = {STEPS['distill']}").replace("steps = 40", f"steps = {STEPS['qat']}")
    recipe = toy / f"{name}.toml"
    recipe.write_text(text)
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 \
        else [sys.executable]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(launch + ["-m", "pocketguard.cli", "compress", "--recipe", str(recipe), "--no-progress"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return toy / name


def relative_difference(a: dict, b: dict) -> dict:
    assert a.keys() == b.keys()
    return {k: float((a[k].float() - b[k].float()).norm() / b[k].float().norm().clamp_min(1e-12)) for k in a}


@pytest.fixture(scope="module")
def one_gpu(toy) -> Path:
    return compress(toy, "one", 1)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_gpus_train_as_one_does(toy, one_gpu, parallel):
    """Each rank takes its half of every global batch and the loss is the global batch's mean, so two GPUs end where
    one GPU ends up to float summation order (the CPU's gloo runs: ~1e-5 relative)."""
    two = compress(toy, f"two-{parallel}", 2, parallel)
    ref = load_file(one_gpu / "steps" / "04-distill" / "model.safetensors")
    got = load_file(two / "steps" / "04-distill" / "model.safetensors")
    worst = max(relative_difference(got, ref).items(), key=lambda kv: kv[1])
    assert worst[1] < 1e-3, worst
    # the teacher trained the student: it moved from the pruned start
    start = load_file(one_gpu / "steps" / "03-prune_output" / "model.safetensors")
    assert max(relative_difference(ref, start).values()) > 1e-2
    # only rank 0 wrote: one report line per step, and the exported artifact loads and judges like one GPU's
    assert len((two / "report.jsonl").read_text().splitlines()) == len((one_gpu / "report.jsonl").read_text().splitlines())
    from pocketguard.guard import Guard
    from pocketguard.toy import toy_examples
    from pocketguard.examples import parse_example

    a, b = Guard.load(one_gpu / "model", device="cpu"), Guard.load(two / "model", device="cpu")
    convs = [parse_example(e, a.policy)[0] for e in toy_examples(24, seed=5)]
    pa, pb = [v.p_unsafe for v in a.moderate_batch(convs)], [v.p_unsafe for v in b.moderate_batch(convs)]
    assert max(abs(x - y) for x, y in zip(pa, pb)) < 0.05, (pa, pb)
