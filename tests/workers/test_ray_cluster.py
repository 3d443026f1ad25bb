"""A search on a simulated multi-node Ray cluster (``ray.cluster_utils.Cluster``: a head and two
worker nodes as processes on this machine, 1 CPU each, so each node hosts exactly one 1-CPU
worker) with the tiny saved LLaMA:

- every node takes work (each result names the node that computed it: ``extra["worker"]``);
- a worker node removed while one of its candidates is in flight: the search completes, every
  candidate is in log.jsonl once, and log.jsonl and the hall of fame equal the serial run's;
- a node added later takes work (the lost worker's pending replacement starts there);
- a node whose workers die on every evaluation: its slot is dropped, with a warning, and a
  node that joins later gets the slot back (``RayBackend.refresh``).

The cluster replaces the session's local Ray instance while this module runs (one Ray
connection per process) and the instance is started again afterwards (``ray_session_suspended``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import threading
import time

import pytest

ray = pytest.importorskip("ray")

from ray.cluster_utils import Cluster  # noqa: E402

from gpsearch.workers.factory import make_backend  # noqa: E402
from tests.conftest import ray_session_suspended  # noqa: E402
from tests.workers.test_ray_backend import EXPRS, same, tiny_env  # noqa: E402
from tests.workers.test_ray_faults import search, strip  # noqa: E402


@pytest.fixture(scope="module")
def cluster():
    """A head and two worker nodes (1 CPU each), the driver connected; ``nodes`` lists the
    live non-head nodes as the tests remove and add them. Ray's address file goes to the
    cluster's own temp dir ($RAY_TMPDIR), not to /tmp/ray."""
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_TMPDIR")}
    tmp = tempfile.mkdtemp(prefix="gc", dir="/tmp")  # short: Ray's socket paths are limited
    os.makedirs(os.path.join(tmp, "ray"))
    with ray_session_suspended():
        os.environ.update(RAY_AUTH_MODE="disabled", RAY_TMPDIR=tmp)
        c = Cluster(initialize_head=True,
                    head_node_args={"num_cpus": 1, "include_dashboard": False})
        try:
            nodes = [c.add_node(num_cpus=1) for _ in range(2)]
            ray.init(address=c.address, log_to_driver=False)
            yield {"cluster": c, "head": c.head_node.node_id, "nodes": nodes}
        finally:
            ray.shutdown()
            c.shutdown()
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.update({k: v})
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return tiny_env(tmp_path_factory.mktemp("ray_cluster"))


class Recorder:
    """A backend that notes which node computed each result, under the test's current phase."""

    def __init__(self, backend):
        self.backend, self.phase, self.nodes = backend, "start", {}

    def evaluate_many(self, exprs, windows=None):
        out = self.backend.evaluate_many(exprs, windows)
        for r in out:
            if "worker" in r.extra:
                self.nodes.setdefault(self.phase, []).append(r.extra["worker"]["node"])
        return out

    def __getattr__(self, name):
        return getattr(self.backend, name)


def wait_for(what, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while not what():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def serving(backend, n: int) -> None:
    """Wait until ``n`` workers serve (``refresh`` takes up started replacements, new nodes)."""
    def ready():
        backend.refresh()
        return backend.live_workers == n
    wait_for(ready)


def test_search_uses_every_node_survives_a_lost_node_and_takes_up_a_new_one(
        env, cluster, one_thread, tmp_path):
    """The search runs until the new node has taken work: idle workers take candidates in
    turn, so each node gets some within a few generations; then the serial run goes as far."""
    c, lost = cluster["cluster"], cluster["nodes"][1]
    tickets = tmp_path / "tickets"
    tickets.mkdir()
    env["faults"].write_text(json.dumps({"dir": str(tickets), "hold_node": lost.node_id,
                                         "hold_from": 3}))  # tickets 0-2: one on each node
    backend = Recorder(make_backend(3, **env["specs"], worker_cls=env["worker_cls"]))

    def remove_when_held():  # the held candidate is in flight on the node while it goes away
        wait_for(lambda: (tickets / "held").exists(), 300)
        backend.phase = "removed"
        c.remove_node(lost, allow_graceful=False)  # lost, not drained

    def add_after_removal(s, stats, seconds):  # after the generation that lost the node
        if backend.phase == "removed":
            remover.join()
            cluster["nodes"][1] = c.add_node(num_cpus=1)
            serving(backend, 3)
            backend.phase = "added"

    def new_node_took_work(s):
        return cluster["nodes"][1].node_id in backend.nodes.get("added", [])

    remover = threading.Thread(target=remove_when_held, daemon=True)
    remover.start()
    try:
        ray_run, got = search(backend, tmp_path / "ray", new_node_took_work, [add_after_removal])
        stats = dict(backend.stats)
    finally:
        backend.close()
        remover.join(5)
        env["faults"].write_text("{}")
    serial, want = search(make_backend(0, **env["specs"]), tmp_path / "serial", ray_run.generation)

    assert new_node_took_work(ray_run)  # (c) the node added mid-search took work
    assert stats["restarts"] == 1 and stats["retries"] == 1  # the lost node's worker
    took_work = {n for nodes in backend.nodes.values() for n in nodes}
    assert {cluster["head"], cluster["nodes"][0].node_id, lost.node_id} <= took_work  # (a)
    assert strip(got) == strip(want)  # (b) nothing lost, nothing twice, the same numbers
    evaluated = [(r["gen"], r["key"]) for r in got if r["hit"] is None]
    assert len(evaluated) == len(set(evaluated)) == ray_run.counters["evaluated"]
    assert ray_run.hof == serial.hof and ray_run.counters == serial.counters
    assert (tmp_path / "ray/hall_of_fame.csv").read_text() == \
        (tmp_path / "serial/hall_of_fame.csv").read_text()


def test_a_failing_node_is_dropped_and_a_new_node_gets_its_slot(env, cluster, one_thread,
                                                                  caplog):
    caplog.set_level(logging.WARNING, logger="gpsearch.workers.ray_backend")
    serial = make_backend(0, **env["specs"])
    want = {e: serial.evaluate_one(e) for e in EXPRS}
    c, bad = cluster["cluster"], cluster["nodes"][1]
    backend = make_backend(3, **env["specs"], worker_cls=env["worker_cls"], max_retries=2)
    backend.max_slot_failures = 2  # dropped at its second death (a retry can meet it twice)
    env["faults"].write_text(json.dumps({"exit_node": bad.node_id}))
    try:
        deadline = time.monotonic() + 300  # a replacement loads the model: slow on a busy machine
        while backend.stats["dropped"] == 0:  # the bad slot's replacement lands on it again
            assert time.monotonic() < deadline, "the failing slot was never dropped"
            same(backend.evaluate_many(EXPRS), EXPRS, want)
        assert backend.live_workers == 2 and backend.stats["restarts"] == 1
        assert any("dropped after 2 failures in a row" in r.getMessage() for r in caplog.records)

        env["faults"].write_text("{}")
        c.remove_node(bad)  # the bad node is drained, a fresh one joins
        cluster["nodes"][1] = fresh = c.add_node(num_cpus=1)
        serving(backend, 3)
        out = backend.evaluate_many(EXPRS)
    finally:
        backend.close()
        env["faults"].write_text("{}")
    same(out, EXPRS, want)
    assert backend.stats["added"] == 1
    assert fresh.node_id in {r.extra["worker"]["node"] for r in out}
