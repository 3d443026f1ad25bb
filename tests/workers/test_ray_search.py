"""Integration: a search on a local Ray instance (2 CPUs, 2 workers, tiny saved LLaMA) whose
worker is killed in the middle completes with every candidate evaluated and finds the same best
tree as the serial run (population 4, 2 generations)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("ray")

from gpsearch.engine.loop import SearchConfig, Searcher  # noqa: E402
from gpsearch.engine.space import load_space  # noqa: E402
from gpsearch.pruning.fingerprint import ExprServices  # noqa: E402
from gpsearch.pruning.masks import parse_pattern  # noqa: E402
from gpsearch.tree import PRUNERZERO  # noqa: E402
from gpsearch.workers.factory import make_backend  # noqa: E402
from tests.workers.test_ray_backend import env  # noqa: E402,F401  (module fixture: model, corpus, Ray)

SEEDS = ["mul(W, sqrt(X))", "W"]


def search(backend, seed: int = 0) -> Searcher:
    services = ExprServices(PRUNERZERO, 0.5, parse_pattern("unstructured"))
    cfg = SearchConfig(population=4, offspring=4, elite=2, seed=seed)
    searcher = Searcher(load_space("prunerzero"), backend, cfg, services, SEEDS)
    records = []
    searcher.on_evaluation.append(records.append)
    searcher.run(2)
    searcher.records = records
    return searcher


def test_search_survives_a_killed_worker_with_the_serial_result(env):  # noqa: F811
    env["faults"].write_text("{}")
    serial_backend = make_backend(0, **env["specs"])
    serial = search(serial_backend)
    evaluated = serial.counters["evaluated"]
    assert evaluated >= 4 and serial.best() is not None

    tickets = env["root"] / "search_tickets"
    tickets.mkdir()
    kill_at = evaluated // 2  # a worker dies in the middle of the search
    env["faults"].write_text(json.dumps({"dir": str(tickets), "exit_at": kill_at}))
    backend = make_backend(2, **env["specs"], worker_cls=env["worker_cls"])
    try:
        ray_run = search(backend)
        stats = dict(backend.stats)
    finally:
        backend.close()

    assert stats["restarts"] == 1 and stats["retries"] == 1  # the kill did happen
    assert len(list(tickets.iterdir())) == evaluated + 1  # every candidate ran (one twice)
    assert ray_run.counters == serial.counters
    assert ray_run.best() == serial.best()
    assert [ind.key for ind in ray_run.population] == [ind.key for ind in serial.population]
    strip = lambda recs: [{k: v for k, v in r.items() if k != "seconds"} for r in recs]  # noqa
    assert strip(ray_run.records) == strip(serial.records)
    assert all("died" not in (r["error"] or "") for r in ray_run.records)
