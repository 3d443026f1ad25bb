"""Ray cluster helpers of the Ray backend: where actors go and how much each gets
(``placement``, pure), which nodes are alive and how many actors a node has room for, the actor
class that reports its node, and killing actors and waiting until they are gone.

With ``ray_backend`` (the scheduler), the only modules of gpsearch that import Ray.
"""

from __future__ import annotations

import math
import time

import ray

from gpsearch.errors import UserError


def placement(total: dict, workers: int, resources: str, device: str,
              gpus_per_worker: int = 1) -> tuple[dict, int, str]:
    """Actor options, torch threads per actor and the actors' device, from the cluster's
    resources ``total`` (``ray.cluster_resources()``). GPU actors get ``gpus_per_worker`` GPUs
    each: N GPUs run N / k resident models."""
    if gpus_per_worker < 1:
        raise UserError(f"--gpus-per-worker must be 1 or more (got {gpus_per_worker})")
    gpus, cpus = int(total.get("GPU", 0)), float(total.get("CPU", 1))
    per_cpu = cpus / workers
    threads = max(1, int(per_cpu))
    if resources == "gpu" or (resources == "auto" and gpus > 0):
        if gpus < workers * gpus_per_worker:
            raise UserError(f"the cluster has {gpus} GPU(s); {workers} GPU workers need "
                            f"{gpus_per_worker} each (use fewer workers, or resources='cpu')")
        return {"num_gpus": gpus_per_worker, "num_cpus": 1}, threads, "cuda"
    if gpus_per_worker > 1:
        raise UserError(f"--gpus-per-worker {gpus_per_worker}: the cluster has no GPUs")
    # CPU split: Ray wants whole numbers above 1 and at most 4 decimals below
    num = float(int(per_cpu)) if per_cpu >= 1 else math.floor(per_cpu * 1e4) / 1e4
    return {"num_cpus": num}, threads, device


def reporting_node(worker_cls: type) -> type:
    """The actor class: ``worker_cls`` whose ``prepare`` also says which Ray node the actor
    runs on (the worker classes themselves import no Ray)."""
    class Located(worker_cls):
        def prepare(self, kinds: list[str]) -> dict:
            return {**super().prepare(kinds), "node": ray.get_runtime_context().get_node_id()}

    Located.__name__ = Located.__qualname__ = worker_cls.__name__
    return Located


def actor_location(info) -> dict:
    """{"node", "pid"} from what ``prepare`` returned (empty for a worker that says nothing)."""
    info = info if isinstance(info, dict) else {}
    return {k: info[k] for k in ("node", "pid") if k in info}


def alive_nodes() -> dict:
    """Node id -> total resources of every live node of the cluster."""
    return {n["NodeID"]: n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")}


def room_for(resources: dict, opts: dict) -> int:
    """How many actors with options ``opts`` (num_cpus, num_gpus) fit in ``resources``."""
    need = {"CPU": opts.get("num_cpus", 1), "GPU": opts.get("num_gpus", 0)}
    return int(min((resources.get(k, 0) // v for k, v in need.items() if v > 0), default=0))


def wait_gone(actors: list, budget_s: float) -> None:
    """Ping each killed actor until Ray says it is dead, within ``budget_s`` seconds in all."""
    deadline = time.monotonic() + budget_s
    for actor in actors:
        while (left := deadline - time.monotonic()) > 0:
            try:
                ray.get(actor.ping.remote(), timeout=left)
            except ray.exceptions.RayActorError:
                break  # gone
            except Exception:  # timed out, or a worker class without ping  # noqa: BLE001
                return
            time.sleep(0.05)


def kill_actor(actor) -> None:
    if actor is not None:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # already gone  # noqa: BLE001
            pass


def error_line(e: BaseException) -> str:
    """A one-line reason: the original exception of a task error, else the last useful line."""
    cause = getattr(e, "cause", None)
    if isinstance(e, ray.exceptions.RayTaskError) and cause is not None:
        return f"{type(cause).__name__}: {cause}"[:300]
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__).split(" Some common causes")[0][:300]
