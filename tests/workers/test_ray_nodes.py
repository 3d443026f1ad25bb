"""Ray node helpers (gpsearch/workers/ray_nodes.py): actor placement from the cluster's
resources, a node's room for actors, where an actor says it runs, one-line error reasons."""

import pytest

pytest.importorskip("ray")

from gpsearch.errors import UserError  # noqa: E402
from gpsearch.workers.ray_nodes import (  # noqa: E402
    actor_location,
    error_line,
    placement,
    room_for,
)


def test_placement_gives_each_actor_k_gpus():
    opts, threads, device = placement({"GPU": 8, "CPU": 64}, 4, "auto", "cpu", gpus_per_worker=2)
    assert opts == {"num_gpus": 2, "num_cpus": 1} and device == "cuda" and threads == 16
    assert placement({"GPU": 8, "CPU": 64}, 8, "auto", "cpu")[0]["num_gpus"] == 1
    with pytest.raises(UserError, match="need 2 each"):
        placement({"GPU": 8, "CPU": 64}, 5, "auto", "cpu", gpus_per_worker=2)
    with pytest.raises(UserError, match="no GPUs"):
        placement({"CPU": 8}, 2, "auto", "cpu", gpus_per_worker=2)
    assert placement({"CPU": 8}, 2, "auto", "cpu") == ({"num_cpus": 4.0}, 4, "cpu")


def test_placement_splits_the_cpus_of_a_cpu_cluster():
    assert placement({"CPU": 2}, 4, "cpu", "cpu") == ({"num_cpus": 0.5}, 1, "cpu")
    assert placement({"CPU": 2, "GPU": 1}, 2, "cpu", "cpu")[2] == "cpu"  # forced CPU


def test_room_for_counts_the_actors_a_node_fits():
    assert room_for({"CPU": 4.0}, {"num_cpus": 1.0}) == 4
    assert room_for({"CPU": 4.0, "GPU": 1.0}, {"num_gpus": 1, "num_cpus": 1}) == 1
    assert room_for({"CPU": 1.0}, {"num_cpus": 2.0}) == 0
    assert room_for({"CPU": 8.0}, {"num_gpus": 1, "num_cpus": 1}) == 0  # no GPU on the node


def test_actor_location_keeps_node_and_pid_only():
    assert actor_location({"node": "n1", "pid": 7, "features": ["X"]}) == {"node": "n1", "pid": 7}
    assert actor_location(None) == {} and actor_location("ready") == {}


def test_error_line_is_the_last_useful_line():
    e = RuntimeError("Traceback (most recent call last):\n  ...\n\nOSError: disk full\n")
    assert error_line(e) == "OSError: disk full"
    assert error_line(RuntimeError("")) == "RuntimeError"
    assert len(error_line(RuntimeError("x" * 1000))) == 300
