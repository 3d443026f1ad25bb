"""Multi-condition fitness on Ray: two different tiny models (LLaMA and OPT) as the two fitness
models, one actor each on a local 2-CPU Ray instance (each gets its share of the CPUs), the two
groups running at once; the results equal the serial multi-condition backend's, also when one
condition's worker is killed in the middle (it is replaced and its candidate retried)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ray")

from gpsearch.engine.conditions import Condition  # noqa: E402
from gpsearch.workers.factory import make_backend  # noqa: E402
from gpsearch.workers.multi import MultiConditionBackend  # noqa: E402
from gpsearch.workers.ray_backend import RayBackend  # noqa: E402
from tests.conftest import make_opt, make_tokenizer  # noqa: E402
from tests.workers.test_ray_backend import env  # noqa: E402,F401  (module fixture: model, corpus, Ray)

EXPRS = ["mul(W, sqrt(X))", "add(W, X)", "nosuchop(W)"]


@pytest.fixture(scope="module")
def multi(env):  # noqa: F811
    """The serial and the Ray multi-condition backends (the Ray workers inject faults)."""
    opt = env["root"] / "opt"
    make_opt().save_pretrained(opt)
    make_tokenizer().save_pretrained(opt)
    conds = [Condition(), Condition(model=str(opt), rescale=(("X", 4.0),))]
    specs = {**env["specs"], "fitness": "kl"}
    env["faults"].write_text("{}")
    serial = make_backend(0, **specs, conditions=conds)
    ray_b = make_backend(2, **specs, conditions=conds, worker_cls=env["worker_cls"])
    yield {"serial": serial, "ray": ray_b, "env": env}
    ray_b.close()


def same(got, want) -> None:
    for g, w in zip(got, want):
        assert (g.expr, g.ok, g.fitness, g.ppl) == (w.expr, w.ok, w.fitness, w.ppl)
        if w.ok:
            assert g.extra["kl"] == w.extra["kl"] and g.extra["nll"] == w.extra["nll"]
    assert not got[2].ok and got[2].error.startswith("[baseline]")


def test_two_models_on_ray_equal_the_serial_result(multi):
    ray_b = multi["ray"]
    assert isinstance(ray_b, MultiConditionBackend) and ray_b.parallel
    assert all(isinstance(b, RayBackend) for b in ray_b.backends)
    assert [b.placement["num_cpus"] for b in ray_b.backends] == [1, 1]
    same(ray_b.evaluate_many(EXPRS, (0, 3)), multi["serial"].evaluate_many(EXPRS, (0, 3)))
    assert ray_b.fingerprint_many(EXPRS) == multi["serial"].fingerprint_many(EXPRS)


def test_a_killed_worker_of_one_condition_is_replaced_with_the_same_result(multi, tmp_path):
    faults = multi["env"]["faults"]
    faults.write_text(json.dumps({"dir": str(tmp_path), "exit_at": 2}))  # the 3rd evaluation
    try:
        got = multi["ray"].evaluate_many(EXPRS, (0, 3))
    finally:
        faults.write_text("{}")
    stats = [b.stats for b in multi["ray"].backends]
    assert sum(s["restarts"] for s in stats) == 1 and sum(s["retries"] for s in stats) == 1
    assert len(list(tmp_path.iterdir())) == 2 * len(EXPRS) + 1  # every evaluation, one twice
    same(got, multi["serial"].evaluate_many(EXPRS, (0, 3)))
