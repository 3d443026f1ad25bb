"""The serial backend on a tiny real model: exact mask fingerprints, windowed scoring, KL."""

import math

import pytest
import torch

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.engine.loop import SearchConfig, Searcher
from gpsearch.engine.space import load_space
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.fingerprint import ExprServices
from gpsearch.pruning.masks import parse_pattern
from gpsearch.tree import PRUNERZERO
from gpsearch.workers.serial import SerialBackend

pytestmark = pytest.mark.usefixtures("one_thread")
PATTERN = parse_pattern("unstructured", 0.5)


def backend(tiny_lm, corpus, tmp_path, fitness="ppl"):
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    ev = EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=6, batch_size=2)
    evaluator = Evaluator(calib=calib, cache_dir=tmp_path, lm=tiny_lm)
    return SerialBackend(evaluator, 0.5, PATTERN, ev, fitness=fitness)


def test_equal_masks_equal_fingerprints_and_different_masks_differ(tiny_lm, corpus, tmp_path):
    be = backend(tiny_lm, corpus, tmp_path)
    same = ["mul(W, sqrt(X))", "mul(sqr(W), X)", "sqrt(mul(W, sqrt(X)))"]  # one ranking
    fps = be.fingerprint_many(same + ["W", "mul(W, X)", "X"])
    assert len(set(fps[:3])) == 1 and len(set(fps[3:])) == 3 and fps[0] not in fps[3:]
    # a constant tree is invalid on the real features
    assert be.fingerprint_one("sub(W, W)").startswith("invalid:")
    # the cached masks are the masks evaluate would compute (same fitness either way)
    cached = be.evaluate_one("mul(W, X)")
    assert cached.extra["timings"]["masks_cached"]
    be.masks = type(be.masks)()
    fresh = be.evaluate_one("mul(W, X)")
    assert not fresh.extra["timings"]["masks_cached"] and fresh.fitness == cached.fitness


def test_windows_add_up_and_kl_fitness(tiny_lm, corpus, tmp_path):
    be = backend(tiny_lm, corpus, tmp_path, fitness="kl")
    whole = be.evaluate_one("mul(W, sqrt(X))")
    a = be.evaluate_one("mul(W, sqrt(X))", (0, 2))
    b = be.evaluate_one("mul(W, sqrt(X))", (2, 6))
    assert a.extra["nll"] + b.extra["nll"] == pytest.approx(whole.extra["nll"], rel=1e-12)
    assert a.extra["kl"] + b.extra["kl"] == pytest.approx(whole.extra["kl"], rel=1e-12)
    assert whole.fitness == pytest.approx(sum(whole.extra["kl"]) / 6) and whole.fitness > 0
    assert whole.ppl == pytest.approx(math.exp(sum(whole.extra["nll"]) / 6))
    # the model is dense again after every call: KL of the identity tree's 0% would be 0,
    # and the weights equal the dense copy
    ev = be.evaluator
    assert all(torch.equal(lin.weight, ev.dense[n]) for n, lin in ev.linears.items())


def test_no_false_merges_in_a_real_search(tiny_lm, corpus, tmp_path):
    """Every fingerprint hit of a small real search, re-evaluated from scratch, has exactly the
    fitness the search gave it."""
    be = backend(tiny_lm, corpus, tmp_path)
    space = load_space("prunerzero")
    cfg = SearchConfig(population=8, offspring=8, elite=3, seed=0, stages=((2, 1.0), (6, 0.5)))
    seeds = ["mul(W, sqrt(X))", "mul(sqr(W), X)", "mul(W, G)", "mul(G, W)", "W"]
    s = Searcher(space, be, cfg, ExprServices(PRUNERZERO, 0.5, PATTERN), seeds)
    records = []
    s.on_evaluation.append(records.append)
    s.run(3)
    hits = [r for r in records if r["hit"] == "fingerprint"]
    assert hits  # mul(sqr(W), X) is Wanda's mask under another key
    be.masks = type(be.masks)()
    for r in hits:
        fresh = be.evaluate_one(r["simplified"], (0, 2))
        assert fresh.fitness == r["fitness"], r["simplified"]


def test_serial_backend_with_device_map_cpu_equals_the_plain_one(tmp_path, one_thread):
    """--device-map reaches the serial backend's Evaluator (here "cpu": identical results)."""
    from gpsearch.config import CalibConfig, EvalConfig
    from gpsearch.workers.factory import make_backend
    from tests.conftest import make_llama, make_tokenizer, write_corpus

    make_llama().save_pretrained(tmp_path / "m")
    make_tokenizer().save_pretrained(tmp_path / "m")
    corpus = write_corpus(tmp_path / "c.txt")
    kw = dict(model=str(tmp_path / "m"), calib=CalibConfig(data=corpus, nsamples=4, seqlen=16),
              ev=EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=2),
              cache_dir=tmp_path / "cache")
    exprs = ["mul(W, sqrt(X))", "mul(abs(mul(W, W)), mms(G))"]
    plain = make_backend(0, **kw).evaluate_many(exprs)
    mapped = make_backend(0, device_map="cpu", **kw).evaluate_many(exprs)
    assert [r.fitness for r in plain] == [r.fitness for r in mapped]
    assert all(r.ok for r in plain)
