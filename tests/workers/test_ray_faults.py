"""The Ray backend's edge paths in a search (local Ray, 2 CPUs, tiny saved LLaMA): a candidate
whose retries are exhausted is recorded as failed, with its reason, and the search goes on; when
no worker is left the backend raises one clear error (a UserError), the run directory keeps the
last completed generation, and a resumed run on healthy workers ends as an undisturbed run.
(A slot that keeps failing is dropped: tests/workers/test_ray_cluster.py, on a bad node.)"""

from __future__ import annotations

import json
import logging

import pytest

pytest.importorskip("ray")

from gpsearch.engine import checkpoint  # noqa: E402
from gpsearch.engine.loop import SearchConfig, Searcher  # noqa: E402
from gpsearch.engine.result import PENALTY  # noqa: E402
from gpsearch.engine.rundir import RunDir  # noqa: E402
from gpsearch.engine.space import load_space  # noqa: E402
from gpsearch.errors import UserError  # noqa: E402
from gpsearch.pruning.fingerprint import ExprServices  # noqa: E402
from gpsearch.pruning.masks import parse_pattern  # noqa: E402
from gpsearch.tree import PRUNERZERO  # noqa: E402
from gpsearch.workers.factory import make_backend  # noqa: E402
from gpsearch.workers.ray_backend import NoLiveWorkerError, RayBackend  # noqa: E402
from tests.workers.test_ray_backend import EXPRS, env  # noqa: E402,F401  (module fixture)

SEEDS = ["mul(W, sqrt(X))", "W"]


def search(backend, run_dir, until, hooks=(), resume: bool = False) -> tuple[Searcher, list]:
    """Population 6, 6 children a generation (3 of them new random trees: new candidates in
    every generation) in a run directory (log.jsonl, checkpoint.json); ``until``: the last
    generation, or a test of the searcher after each generation (at most 12). ``resume``:
    continue the run directory's checkpoint, as ``gpsearch search --resume`` does."""
    services = ExprServices(PRUNERZERO, 0.5, parse_pattern("unstructured"))
    cfg = SearchConfig(population=6, offspring=6, elite=3, seed=0, immigrants=3)
    searcher = Searcher(load_space("prunerzero"), backend, cfg, services, SEEDS)
    rd = RunDir.open(run_dir) if resume else RunDir.create(run_dir, {"test": "ray"})
    if resume:
        checkpoint.restore(searcher, rd.checkpoint())
        rd.truncate_log(searcher.generation)
    rd.attach(searcher, plot=False)
    searcher.on_generation.extend(hooks)
    if isinstance(until, int):
        searcher.run_until(until)
    while not isinstance(until, int) and not until(searcher) and searcher.generation < 12:
        searcher.step()
    return searcher, read_log(run_dir)


def read_log(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]


def strip(log: list[dict]) -> list[dict]:
    """Log records without their timings."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in log]


def test_exhausted_retries_fail_the_candidate_with_its_reason_and_the_search_goes_on(
        env, one_thread, tmp_path):  # noqa: F811
    env["faults"].write_text(json.dumps({"exit_expr": "W"}))  # W kills every worker it runs on
    backend = make_backend(2, **env["specs"], worker_cls=env["worker_cls"])
    try:
        searcher, log = search(backend, tmp_path / "run", 2)
        stats = dict(backend.stats)
    finally:
        backend.close()
        env["faults"].write_text("{}")
    failed = [r for r in log if r["simplified"] == "W" and r["hit"] is None]
    assert len(failed) == 1 and failed[0]["gen"] == 0 and failed[0]["fitness"] == PENALTY
    assert failed[0]["error"].startswith("worker died 2 times evaluating it")
    assert stats["restarts"] == 2 and stats["retries"] == 1 and stats["dropped"] == 0
    assert searcher.generation == 2 and searcher.best()["fitness"] < PENALTY
    assert all(r["error"] is None for r in log if r["gen"] > 0 and r["hit"] is None)


def test_no_live_worker_left_is_one_clear_error(env, caplog, tmp_path):  # noqa: F811
    caplog.set_level(logging.WARNING, logger="gpsearch.workers.ray_backend")
    env["faults"].write_text(json.dumps({"dir": str(tmp_path), "exit_from": 0}))
    backend = RayBackend(**env["specs"], workers=1, worker_cls=env["worker_cls"])
    backend.max_slot_failures = 2  # (3 by default: one restart less to wait for)
    try:
        with pytest.raises(NoLiveWorkerError) as err:  # every evaluation kills its worker:
            backend.evaluate_many(EXPRS)  # the one slot fails twice in a row, is dropped
        with pytest.raises(NoLiveWorkerError):
            backend.evaluate_many(EXPRS[:1])
    finally:
        backend.close()
        env["faults"].write_text("{}")
    assert isinstance(err.value, UserError) and "\n" not in str(err.value)
    assert str(err.value).startswith("no live Ray worker left: 1 dropped after 2 failures")
    assert "--resume" in str(err.value)
    assert backend.stats["restarts"] == 1 and backend.stats["dropped"] == 1
    assert any("Ray worker 0 dropped after 2 failures" in r.getMessage() for r in caplog.records)


def test_no_live_worker_stops_the_search_and_a_resume_ends_as_an_undisturbed_run(
        env, one_thread, tmp_path):  # noqa: F811
    serial, want = search(make_backend(0, **env["specs"]), tmp_path / "serial", 3)
    evaluated = [r["gen"] for r in want if r["hit"] is None]
    dies = evaluated[len(evaluated) // 2]  # the generation in which every worker dies
    before = sum(g < dies for g in evaluated)
    tickets = tmp_path / "tickets"
    tickets.mkdir()
    env["faults"].write_text(json.dumps({"dir": str(tickets), "exit_from": before}))
    backend = make_backend(2, **env["specs"], worker_cls=env["worker_cls"])
    backend.max_slot_failures = 1  # every worker dies in generation ``dies``: none is left
    try:
        try:
            search(backend, tmp_path / "ray", 3)
            stopped = None
        except NoLiveWorkerError as e:
            stopped = e
    finally:
        backend.close()
        env["faults"].write_text("{}")
    assert stopped is not None, "the search went on without workers"
    assert "\n" not in str(stopped) and isinstance(stopped, UserError)
    assert 0 < dies == RunDir(tmp_path / "ray").checkpoint()["generation"] + 1  # all kept

    healthy = make_backend(2, **env["specs"])
    try:
        resumed, got = search(healthy, tmp_path / "ray", 3, resume=True)
    finally:
        healthy.close()
    assert strip(got) == strip(want) and resumed.hof == serial.hof
    assert resumed.counters == serial.counters
