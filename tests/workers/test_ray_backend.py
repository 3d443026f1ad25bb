"""The Ray backend on a local Ray instance (2 CPUs, token auth off) with a tiny saved LLaMA:
same results as the serial backend, in order; a killed worker is replaced and its candidate
retried; a candidate past the timeout is penalised while the others complete.

One Ray instance for the whole test run (``ray_session`` in conftest) and one 2-worker backend
for the module (starting Ray costs ~5 s, a worker ~3 s). Faults are injected from the tests: the
backends run ``tests.faulty_worker``'s EvalWorker subclass (``worker_cls``), bound to a JSON file
each test rewrites; production workers have no fault hook (tests/workers/test_actor.py)."""

from __future__ import annotations

import json
import time

import pytest

ray = pytest.importorskip("ray")

from gpsearch.config import CalibConfig, EvalConfig  # noqa: E402
from gpsearch.engine.result import PENALTY  # noqa: E402
from gpsearch.errors import UserError  # noqa: E402
from gpsearch.workers.factory import make_backend  # noqa: E402
from gpsearch.workers.ray_backend import RayBackend  # noqa: E402
from gpsearch.workers.serial import SerialBackend  # noqa: E402
from tests.conftest import make_llama, make_tokenizer, write_corpus  # noqa: E402
from tests.faulty_worker import faulty_worker  # noqa: E402

EXPRS = ["mul(W, sqrt(X))", "W", "mul(W, X)", "add(W, G)", "mul(G, W)", "div(W, X)"]
BAD = "nosuchop(W)"


def tiny_env(root) -> dict:
    """Saved tiny model + corpus + backend specs under ``root``, and a fault-injecting worker
    class bound to ``root/faults.json``."""
    make_llama().save_pretrained(root / "model")
    make_tokenizer().save_pretrained(root / "model")
    corpus = write_corpus(root / "corpus.txt")
    specs = dict(model=str(root / "model"), cache_dir=str(root / "cache"), sparsity=0.5,
                 calib=CalibConfig(data=corpus, nsamples=4, seqlen=16, batch_size=2),
                 ev=EvalConfig(data=corpus, split="validation", seqlen=16, max_windows=4))
    faults = root / "faults.json"
    return {"root": root, "specs": specs, "faults": faults,
            "worker_cls": faulty_worker(str(faults))}


@pytest.fixture(scope="module")
def env(tmp_path_factory, ray_session):
    """``tiny_env`` on the test run's one Ray instance."""
    yield tiny_env(tmp_path_factory.mktemp("ray_backend"))


@pytest.fixture(scope="module")
def serial(env):
    """Reference results of the serial backend (it also fills the shared feature cache)."""
    backend = make_backend(0, **env["specs"])
    assert isinstance(backend, SerialBackend)
    return {e: backend.evaluate_one(e) for e in EXPRS + [BAD]}


@pytest.fixture(scope="module")
def backend(env, serial):
    b = make_backend(2, **env["specs"], worker_cls=env["worker_cls"])
    assert (isinstance(b, RayBackend) and b.placement["num_cpus"] == 1
            and b.placement["threads"] == 1)
    yield b
    b.close()


def set_faults(env, **spec):
    env["faults"].write_text(json.dumps(spec))


def same(results, exprs, serial):
    assert [r.expr for r in results] == list(exprs)
    for r in results:
        ref = serial[r.expr]
        assert (r.fitness, r.ppl, r.ok, r.error, r.achieved_sparsity) == \
            (ref.fitness, ref.ppl, ref.ok, ref.error, ref.achieved_sparsity), r.expr


def test_same_results_as_serial_in_order(env, serial, backend):
    set_faults(env)
    exprs = EXPRS + [BAD, EXPRS[0]]  # a bad tree and a duplicate
    out = backend.evaluate_many(exprs)
    same(out, exprs, serial)
    assert not out[-2].ok and out[-2].fitness == PENALTY
    assert all(r.ok for r in out if r.expr != BAD)
    assert backend.evaluate_many([]) == []


def test_a_candidate_raising_in_the_actor_is_penalised_not_retried(env, serial, backend):
    set_faults(env, raise_expr=EXPRS[2])
    restarts = backend.stats["restarts"]
    out = backend.evaluate_many(EXPRS)
    assert not out[2].ok and out[2].fitness == PENALTY and "RuntimeError" in out[2].error
    same(out[:2] + out[3:], EXPRS[:2] + EXPRS[3:], serial)
    assert backend.stats["restarts"] == restarts


def test_killed_worker_is_replaced_and_its_candidate_retried(env, serial, backend):
    tickets = env["root"] / "tickets"
    tickets.mkdir()
    set_faults(env, dir=str(tickets), exit_at=2)  # the 3rd evaluation kills its worker
    restarts, retries = backend.stats["restarts"], backend.stats["retries"]
    out = backend.evaluate_many(EXPRS)
    same(out, EXPRS, serial)
    assert all(r.ok for r in out)
    assert backend.stats["restarts"] == restarts + 1 and backend.stats["retries"] == retries + 1
    assert len(list(tickets.iterdir())) == len(EXPRS) + 1


def test_killed_worker_on_the_staged_path_is_retried_with_its_windows(env, backend):
    """The staged fitness sends (expr, windows): a worker killed there is replaced and the
    candidate retried on the same windows, with the serial backend's numbers."""
    reference = make_backend(0, **env["specs"])
    want = reference.evaluate_many(EXPRS, windows=(1, 3))
    tickets = env["root"] / "tickets_staged"
    tickets.mkdir()
    set_faults(env, dir=str(tickets), exit_at=1)
    restarts, retries = backend.stats["restarts"], backend.stats["retries"]
    got = backend.evaluate_many(EXPRS, windows=(1, 3))
    assert [r.expr for r in got] == EXPRS and all(r.ok for r in got)
    for a, b in zip(got, want):
        assert (a.fitness, a.ppl, a.extra.get("nll")) == (b.fitness, b.ppl, b.extra.get("nll"))
    assert backend.stats["restarts"] == restarts + 1 and backend.stats["retries"] == retries + 1
    set_faults(env)


def test_timeout_penalises_the_slow_candidate_and_the_rest_complete(env, serial, backend):
    set_faults(env, sleep_expr=EXPRS[1], sleep_s=120)
    backend.eval_timeout = 10.0
    try:
        t0 = time.monotonic()
        out = backend.evaluate_many(EXPRS)
        elapsed = time.monotonic() - t0
    finally:
        backend.eval_timeout = None
    assert not out[1].ok and out[1].error == "timeout after 10 s" and out[1].fitness == PENALTY
    same(out[:1] + out[2:], EXPRS[:1] + EXPRS[2:], serial)
    assert elapsed < 60 and backend.stats["timeouts"] == 1
    set_faults(env)
    same(backend.evaluate_many(EXPRS), EXPRS, serial)  # the replacement worker serves again


def test_close_kills_workers_but_not_a_ray_it_did_not_start(env, backend):
    actors = [s.actor for s in backend._slots]
    backend.close()
    assert ray.is_initialized()
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(actors[0].prepare.remote([]), timeout=30)


def test_a_worker_that_cannot_start_is_a_user_error(env):
    specs = {**env["specs"], "model": str(env["root"] / "no-such-model")}
    with pytest.raises(UserError, match="Ray workers failed to start.*no-such-model"):
        RayBackend(**specs, workers=1, features=())
    assert ray.is_initialized()
