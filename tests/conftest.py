"""Shared fixtures: tiny random-weight LLaMA and OPT models, a word-level tokenizer, a corpus."""

from __future__ import annotations

import contextlib
import random

import pytest
import torch

WORDS = [f"w{i}" for i in range(120)]


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<unk>": 0, "<eos>": 1, **{w: i + 2 for i, w in enumerate(WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    out = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<eos>",
                                  pad_token="<eos>")
    out.model_max_length = 1 << 30
    return out


def make_llama(seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                      tie_word_embeddings=True, use_cache=False)
    return LlamaForCausalLM(cfg).eval()


def make_opt(seed: int = 0):
    from transformers import OPTConfig, OPTForCausalLM

    torch.manual_seed(seed)
    cfg = OPTConfig(vocab_size=128, hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=256, word_embed_proj_dim=32,
                    use_cache=False)
    return OPTForCausalLM(cfg).eval()


def write_corpus(path, n_docs: int = 400, seed: int = 0) -> str:
    """A local .txt corpus of paragraphs drawn from a skewed word distribution (learnable)."""
    rng = random.Random(seed)
    weights = [1.0 / (i + 1) for i in range(len(WORDS))]
    paras = [" ".join(rng.choices(WORDS, weights, k=rng.randint(20, 60))) for _ in range(n_docs)]
    path.write_text("\n\n".join(paras))
    return str(path)


@pytest.fixture
def tokenizer():
    return make_tokenizer()


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus.txt")


def loaded(model, tokenizer, name: str = "tiny"):
    from gpsearch.model.load import LoadedModel

    return LoadedModel(model, tokenizer, name, f"{name}-{id(model)}")


@pytest.fixture(params=["llama", "opt"])
def tiny_lm(request, tokenizer):
    model = make_llama() if request.param == "llama" else make_opt()
    return loaded(model, tokenizer, request.param)


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors: one thread is much faster than several on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def embedded_lm():
    """The embedded SmolLM2-135M, loaded once per test run and shared by every integration test
    (each restores the weights it prunes: the Evaluator's restore, or a test's own copy)."""
    from gpsearch.model.load import load_model

    return load_model("smollm2-135m")


_RAY_SESSION: dict = {}  # ray.init arguments of the test run's local Ray instance, while it is up


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance (2 CPUs, token auth off) for the whole test run, shut down at the
    end: starting Ray costs seconds, so every Ray test shares it."""
    import os
    import shutil
    import tempfile

    ray = pytest.importorskip("ray")
    saved = os.environ.get("RAY_AUTH_MODE")
    os.environ["RAY_AUTH_MODE"] = "disabled"
    ray_tmp = tempfile.mkdtemp(prefix="gr", dir="/tmp")  # short: Ray's socket paths are limited
    _RAY_SESSION.update(num_cpus=2, include_dashboard=False, log_to_driver=False,
                        _temp_dir=ray_tmp)
    ray.init(**_RAY_SESSION)
    try:
        yield ray
    finally:
        _RAY_SESSION.clear()
        ray.shutdown()
        os.environ.pop("RAY_AUTH_MODE") if saved is None else os.environ.update(RAY_AUTH_MODE=saved)
        shutil.rmtree(ray_tmp, ignore_errors=True)


@contextlib.contextmanager
def ray_session_suspended():
    """The session's local Ray instance shut down for a while (a process has one Ray
    connection: a test cluster needs it) and started again afterwards, if it was up."""
    import ray

    up = bool(_RAY_SESSION) and ray.is_initialized()
    if up:
        ray.shutdown()
    try:
        yield
    finally:
        if up:
            ray.init(**_RAY_SESSION)
