"""The Ray backend serves the staged search: exact fingerprints and windowed KL/PPL scores equal
the serial backend's (local Ray, 1 worker, tiny saved LLaMA), also when the worker is killed in
the middle of a stage (its replacement rebuilds the dense KL reference from the cache)."""

from __future__ import annotations

import json

import pytest

ray = pytest.importorskip("ray")

from gpsearch.workers.factory import make_backend  # noqa: E402
from gpsearch.workers.ray_backend import RayBackend  # noqa: E402
from tests.workers.test_ray_backend import tiny_env  # noqa: E402

EXPRS = ["mul(W, sqrt(X))", "mul(sqr(W), X)", "W", "sub(W, W)"]


@pytest.fixture(scope="module")
def kl(tmp_path_factory, ray_session):
    """KL fitness specs, the serial backend and one fault-injecting Ray worker."""
    env = tiny_env(tmp_path_factory.mktemp("ray_stages"))
    env["specs"].update(fitness="kl", topk=16)
    env["serial"] = make_backend(0, **env["specs"])
    backend = RayBackend(**env["specs"], workers=1, worker_cls=env["worker_cls"])
    yield {**env, "ray": backend}
    backend.close()


def same_windows(got, want) -> None:
    assert [r.expr for r in got] == [r.expr for r in want] and all(r.ok for r in got)
    for a, b in zip(got, want):
        assert a.fitness == b.fitness and a.extra["kl"] == b.extra["kl"]
        assert a.extra["nll"] == b.extra["nll"] and len(a.extra["nll"]) == 2


def test_ray_fingerprints_and_windows_equal_serial(kl):
    want_fp = kl["serial"].fingerprint_many(EXPRS)
    got_fp = kl["ray"].fingerprint_many(EXPRS)
    assert got_fp == want_fp and want_fp[0] == want_fp[1] and want_fp[3].startswith("invalid:")
    same_windows(kl["ray"].evaluate_many(EXPRS[:3], windows=(1, 3)),
                 kl["serial"].evaluate_many(EXPRS[:3], windows=(1, 3)))


def test_a_worker_killed_on_a_kl_stage_is_replaced_with_the_same_scores(kl, tmp_path):
    kl["faults"].write_text(json.dumps({"dir": str(tmp_path), "exit_at": 1}))
    try:
        got = kl["ray"].evaluate_many(EXPRS[:3], windows=(1, 3))
    finally:
        kl["faults"].write_text("{}")
    assert kl["ray"].stats["restarts"] == 1 and kl["ray"].stats["retries"] == 1
    same_windows(got, kl["serial"].evaluate_many(EXPRS[:3], windows=(1, 3)))
