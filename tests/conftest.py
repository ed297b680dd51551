"""Shared, session-scoped tiny fixtures (see pocketguard/testing.py). They are shared: do not mutate them;
`copy.deepcopy` a model before changing it."""

import contextlib

import pytest
import torch

from pocketguard import testing as T
from pocketguard.tokenizer import TiktokenTokenizer


@pytest.fixture(scope="session")
def tiny_tok(tmp_path_factory):
    """The tiny trained BPE (HFTokenizer, vocab 600)."""
    return T.tiny_tokenizer(tmp_path_factory.mktemp("tiny_tok"))


@pytest.fixture(scope="session")
def tiny_tiktoken(tmp_path_factory):
    """The tiny tiktoken tokenizer.model (TiktokenTokenizer, vocab 536)."""
    return TiktokenTokenizer(T.tiny_tiktoken_file(tmp_path_factory.mktemp("tiny_tiktoken") / "tokenizer.model"))


@pytest.fixture(scope="session")
def tiny_model(tiny_tok):
    """A random tiny Llama (GQA, Llama 3 RoPE scaling) over tiny_tok's vocabulary, in eval mode."""
    return T.tiny_model(T.tiny_args(vocab_size=tiny_tok.vocab_size))


@pytest.fixture(scope="session")
def tiny_hf_dir(tmp_path_factory):
    """A saved tiny Hugging Face checkpoint (config.json, model.safetensors, tokenizer.json)."""
    return T.build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_hf"), layout="hf")


@pytest.fixture(scope="session")
def tiny_meta_dir(tmp_path_factory):
    """A saved tiny Meta checkpoint (params.json, consolidated.00.pth, tokenizer.model)."""
    return T.build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_meta"), layout="meta")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a busy machine they lose a lot to them: modules
    that run them say `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def refusing_init(monkeypatch):
    """A context in which any weight initialisation fails (loaders assign every parameter from the file:
    initialising one first is wasted work, and on the meta device it imports torch._dynamo, seconds of a cold
    start); after the test nn.Linear and nn.Embedding must initialise as ever (a loader's patches undone)."""
    def refuse(*args, **kwargs):
        raise AssertionError("a parameter was initialised while loading a checkpoint")

    @contextlib.contextmanager
    def refusing():
        with monkeypatch.context() as m:
            for name in ("normal_", "uniform_", "kaiming_uniform_", "trunc_normal_"):
                m.setattr(torch.nn.init, name, refuse)
            yield

    yield refusing
    torch.manual_seed(0)
    lin, emb = torch.nn.Linear(64, 64), torch.nn.Embedding(100, 8)
    assert lin.weight.device.type == "cpu" and 0 < lin.weight.std() < 0.2  # kaiming uniform: ~0.07
    assert emb.weight.device.type == "cpu" and 0.8 < emb.weight.std() < 1.2  # N(0, 1)
