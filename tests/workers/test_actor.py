"""The Ray actor's worker class, used in-process (no Ray): it evaluates like the serial backend,
and no environment variable or file can inject a fault into it (faults are a test subclass)."""

from __future__ import annotations

import json

from gpsearch.config import CalibConfig, EvalConfig
from gpsearch.pruning.evaluator import Evaluator
from gpsearch.pruning.masks import parse_pattern
from gpsearch.workers.actor import EvalWorker, worker_spec
from gpsearch.workers.serial import SerialBackend
from tests.conftest import make_llama, make_tokenizer, write_corpus
from tests.faulty_worker import faulty_worker


def test_worker_has_no_fault_hook_and_the_test_subclass_does(tmp_path, monkeypatch):
    make_llama().save_pretrained(tmp_path / "model")
    make_tokenizer().save_pretrained(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.txt")
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    ev = EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=2)
    spec = worker_spec(str(tmp_path / "model"), calib, ev, 0.5, cache_dir=str(tmp_path / "c"))
    faults = tmp_path / "faults.json"
    faults.write_text(json.dumps({"raise_expr": "mul(W, sqrt(X))"}))
    monkeypatch.setenv("GPSEARCH_TEST_FAULTS", str(faults))  # the removed hook's variable

    worker = EvalWorker(spec)
    worker.prepare(["X"])
    got = worker.evaluate("mul(W, sqrt(X))")
    serial = SerialBackend(Evaluator(str(tmp_path / "model"), calib, cache_dir=tmp_path / "c"),
                           0.5, parse_pattern("unstructured"), ev)
    ref = serial.evaluate_one("mul(W, sqrt(X))")
    assert got.ok and (got.fitness, got.ppl) == (ref.fitness, ref.ppl)

    faulty = faulty_worker(str(faults))(spec)
    try:
        faulty.evaluate("mul(W, sqrt(X))")
        raised = None
    except RuntimeError as e:
        raised = str(e)
    assert raised == "test fault raised for mul(W, sqrt(X))"
    assert faulty.evaluate("W").ok  # other trees are untouched


def test_worker_follows_the_allocation_like_the_serial_backend(tmp_path):
    from gpsearch.allocation.apply import AllocationSpec

    make_llama().save_pretrained(tmp_path / "model")
    make_tokenizer().save_pretrained(tmp_path / "model")
    corpus = write_corpus(tmp_path / "corpus.txt")
    calib = CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2)
    ev = EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=2)
    owl = AllocationSpec("owl", None, owl_m=1.5, owl_lambda=0.2).to_dict()
    spec = worker_spec(str(tmp_path / "model"), calib, ev, 0.5, cache_dir=str(tmp_path / "c"),
                       allocation=owl)
    assert json.loads(json.dumps(spec)) == spec  # plain data for Ray
    worker = EvalWorker(spec)
    worker.prepare(["X"])
    got = worker.evaluate("mul(W, sqrt(X))")
    evaluator = Evaluator(str(tmp_path / "model"), calib, cache_dir=tmp_path / "c")
    pattern = parse_pattern("unstructured")
    ref = SerialBackend(evaluator, 0.5, pattern, ev, allocation=owl).evaluate_one("mul(W, sqrt(X))")
    plain = SerialBackend(evaluator, 0.5, pattern, ev).evaluate_one("mul(W, sqrt(X))")
    assert got.ok and (got.fitness, got.ppl) == (ref.fitness, ref.ppl)
    assert got.fitness != plain.fitness  # the OWL allocation changed the masks
