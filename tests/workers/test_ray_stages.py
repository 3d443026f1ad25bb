"""The Ray backend serves the staged search: exact fingerprints and windowed KL/PPL scores equal
the serial backend's (local Ray, 1 worker, tiny saved LLaMA)."""

from __future__ import annotations

import pytest

ray = pytest.importorskip("ray")

from gpsearch.config import CalibConfig, EvalConfig  # noqa: E402
from gpsearch.workers.factory import make_backend  # noqa: E402
from tests.conftest import make_llama, make_tokenizer, write_corpus  # noqa: E402

EXPRS = ["mul(W, sqrt(X))", "mul(sqr(W), X)", "W", "sub(W, W)"]


def test_ray_fingerprints_and_windows_equal_serial(tmp_path, ray_session):
    make_llama().save_pretrained(tmp_path / "model")
    make_tokenizer().save_pretrained(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.txt")
    specs = dict(model=str(tmp_path / "model"), cache_dir=str(tmp_path / "cache"), sparsity=0.5,
                 calib=CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2),
                 ev=EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=4),
                 fitness="kl", topk=16)
    serial = make_backend(0, **specs)
    want_fp = serial.fingerprint_many(EXPRS)
    want = serial.evaluate_many(EXPRS[:3], windows=(1, 3))
    backend = make_backend(1, **specs)
    try:
        got_fp = backend.fingerprint_many(EXPRS)
        got = backend.evaluate_many(EXPRS[:3], windows=(1, 3))
    finally:
        backend.close()
    assert got_fp == want_fp and want_fp[0] == want_fp[1] and want_fp[3].startswith("invalid:")
    for a, b in zip(got, want):
        assert a.fitness == b.fitness and a.extra["kl"] == b.extra["kl"]
        assert a.extra["nll"] == b.extra["nll"] and len(a.extra["nll"]) == 2
