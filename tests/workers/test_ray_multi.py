"""Multi-condition fitness on Ray: two different tiny models (LLaMA and OPT) as the two fitness
models, one actor each on a local 2-CPU Ray instance (each gets its share of the CPUs), the two
groups running at once; the results equal the serial multi-condition backend's."""

from __future__ import annotations

import pytest

pytest.importorskip("ray")

from gpsearch.engine.conditions import Condition  # noqa: E402
from gpsearch.workers.factory import make_backend  # noqa: E402
from gpsearch.workers.multi import MultiConditionBackend  # noqa: E402
from gpsearch.workers.ray_backend import RayBackend  # noqa: E402
from tests.conftest import make_opt, make_tokenizer  # noqa: E402
from tests.workers.test_ray_backend import env  # noqa: E402,F401  (module fixture: model, corpus, Ray)

EXPRS = ["mul(W, sqrt(X))", "add(W, X)", "nosuchop(W)"]


def test_two_models_on_ray_equal_the_serial_result(env):  # noqa: F811
    opt = env["root"] / "opt"
    make_opt().save_pretrained(opt)
    make_tokenizer().save_pretrained(opt)
    conds = [Condition(), Condition(model=str(opt), rescale=(("X", 4.0),))]
    specs = {**env["specs"], "fitness": "kl"}
    serial = make_backend(0, **specs, conditions=conds)
    want = serial.evaluate_many(EXPRS, (0, 3))
    fps = serial.fingerprint_many(EXPRS)
    ray_b = make_backend(2, **specs, conditions=conds)
    try:
        assert isinstance(ray_b, MultiConditionBackend) and ray_b.parallel
        assert all(isinstance(b, RayBackend) for b in ray_b.backends)
        assert [b.placement["num_cpus"] for b in ray_b.backends] == [1, 1]
        got = ray_b.evaluate_many(EXPRS, (0, 3))
        assert ray_b.fingerprint_many(EXPRS) == fps
    finally:
        ray_b.close()
    for g, w in zip(got, want):
        assert (g.expr, g.ok, g.fitness, g.ppl) == (w.expr, w.ok, w.fitness, w.ppl)
        if w.ok:
            assert g.extra["kl"] == w.extra["kl"] and g.extra["nll"] == w.extra["nll"]
    assert not got[2].ok and got[2].error.startswith("[baseline]")
