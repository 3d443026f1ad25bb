"""The Ray backend of ``evaluate_many``: resident-model actors and a fault-tolerant scheduler.

With ``ray_nodes`` (placement, nodes, killing actors), the only modules of gpsearch that
import Ray. Each actor (``EvalWorker``) builds one Evaluator
ONCE from plain specs: the model is loaded by spec on the worker's node (never shipped through
the object store), features come from the on-disk cache (computed by the first actor alone).
Candidates (expression strings) go to a ``SerialBackend`` inside the actor: same results.

Scheduling is our own loop on ``ray.wait`` (``ActorPool`` stops at the first exception): one
candidate in flight per actor, results in input order, duplicates in one call evaluated once.
A candidate that raises in the actor is penalised, not retried; a worker that dies (crash, OOM
kill, lost node) is replaced and its candidate retried ``max_retries`` times, then penalised; a
candidate past ``eval_timeout`` s gets its actor killed and replaced and is penalised. A worker
slot whose actor dies or fails to start ``max_slot_failures`` times in a row (no evaluation
completed in between) is dropped, with a warning; a node that joins the cluster later gets the
dropped slots back (``refresh``, between batches). No result is lost and ``evaluate_many`` raises
only when no worker is left (``NoLiveWorkerError``, one line). Every result a worker computed
names it: ``extra["worker"] = {"node": Ray node id, "pid": ..., "slot": ...}``. Actor side:
``actor``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import deque

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from gpsearch.engine.result import EvalResult
from gpsearch.errors import BackendLost, UserError
from gpsearch.workers.actor import EvalWorker, worker_spec
from gpsearch.workers.ray_nodes import (
    actor_location,
    alive_nodes,
    error_line,
    kill_actor,
    placement,
    reporting_node,
    room_for,
    wait_gone,
)

MAX_SLOT_FAILURES = 3  # deaths or failed starts in a row after which a worker slot is dropped
CLOSE_WAIT_S = 15.0  # how long close() waits for killed actors to be gone
RESOURCES = ("auto", "gpu", "cpu")
log = logging.getLogger(__name__)


class NoLiveWorkerError(BackendLost):
    """Every worker slot was dropped: the search cannot go on (one line at the CLI)."""


@dataclasses.dataclass
class _Slot:
    """A worker position: its current actor, where that actor runs ({"node", "pid"}, once
    started) and its failures in a row (deaths and failed starts since it last completed an
    evaluation)."""
    index: int
    actor: object = None
    failures: int = 0
    where: dict = dataclasses.field(default_factory=dict)


class RayBackend:
    """``evaluate_many(exprs)`` on ``workers`` Ray actors, one resident model each.

    address: None starts a local Ray instance (or uses the one already initialised in this
    process; ``$RAY_ADDRESS``, as set by ``ray job submit``, is honoured), "auto" or "host:port"
    joins an existing cluster. resources: "auto" gives each actor one GPU when the cluster has
    GPUs (device becomes "cuda"), else splits the CPUs evenly; "gpu" / "cpu" force either.
    features: kinds computed once by the first actor before the others start (so they load them
    from the shared cache). eval_timeout: seconds per candidate (None: no limit). worker_cls:
    the actor class (``EvalWorker`` or a subclass with the same constructor; tests pass one
    that injects faults)."""

    def __init__(self, model: str, calib, ev, sparsity: float, pattern: str = "unstructured",
                 scope: str = "row", mode: str = "dense", dtype: str = "float32",
                 device: str = "cpu", cache_dir=None, *, workers: int = 2,
                 address: str | None = None, eval_timeout: float | None = None,
                 max_retries: int = 1, resources: str = "auto",
                 features: tuple[str, ...] = ("X", "G"), startup_timeout: float = 1800.0,
                 fitness: str = "ppl", topk: int = 512, gpus_per_worker: int = 1,
                 device_map: str | None = None, worker_cls: type = EvalWorker,
                 rescale: dict | None = None, placement_workers: int | None = None,
                 allocation: dict | None = None):
        if workers < 1:
            raise UserError(f"the Ray backend needs at least one worker (got {workers})")
        if resources not in RESOURCES:
            raise UserError(f"unknown resources preset {resources!r}; "
                            f"choose {', '.join(RESOURCES)}")
        if eval_timeout is not None and eval_timeout <= 0:
            raise UserError("eval timeout must be positive (seconds)")
        self.eval_timeout, self.max_retries = eval_timeout, max_retries
        self.startup_timeout, self.workers = startup_timeout, workers
        self.max_slot_failures = MAX_SLOT_FAILURES
        self.stats = {"evaluated": 0, "failed": 0, "retries": 0, "restarts": 0, "timeouts": 0,
                      "dropped": 0, "added": 0}
        self._owns_ray, self._slots = False, []
        self._idle: list[_Slot] = []
        self._starting: dict = {}  # ready ref -> (slot, start time)
        self._last_failure = ""
        self._connect(address)
        self._nodes = alive_nodes()  # node id -> resources; new nodes get dropped slots back
        # placement_workers: the actors of every backend sharing the cluster (multi-condition
        # fitness runs one backend per condition), so each actor gets its share, not all of it
        opts, threads, device = placement(ray.cluster_resources(), placement_workers or workers,
                                          resources, device, gpus_per_worker)
        if opts.get("num_gpus", 0) > 1 and device_map is None:
            device_map = "auto"  # one model over the actor's k GPUs (Ray sets CUDA_VISIBLE_DEVICES)
        self._spec = worker_spec(model, calib, ev, sparsity, pattern, scope, mode, dtype, device,
                                 cache_dir, fitness=fitness, topk=topk, device_map=device_map,
                                 rescale=rescale, allocation=allocation)
        self._cls, self._opts, self._threads = ray.remote(reporting_node(worker_cls)), opts, threads
        self._features = list(features)
        self.placement = {"workers": workers, "threads": threads, "device": device, **opts}
        try:  # all actors load the model at once; the first alone computes missing features
            self._slots = [_Slot(i) for i in range(workers)]
            for slot in self._slots:
                self._new_actor(slot)
            first = ray.get(self._slots[0].actor.prepare.remote(self._features),
                            timeout=startup_timeout)
            rest = ray.get([s.actor.prepare.remote(self._features) for s in self._slots[1:]],
                           timeout=startup_timeout)
            for slot, info in zip(self._slots, [first, *rest]):
                slot.where = actor_location(info)
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as e:
            self.close()
            why = error_line(e).removeprefix("gpsearch.errors.UserError: ")
            raise UserError(f"Ray workers failed to start: {why}") from None
        self._idle = list(self._slots)

    # ---- cluster ------------------------------------------------------------------------------
    def _connect(self, address: str | None) -> None:
        if ray.is_initialized():
            return  # an instance this process already runs or joined: not ours to shut down
        address = address or os.environ.get("RAY_ADDRESS") or None
        kwargs = {"address": address} if address else {"include_dashboard": False}
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise UserError(f"cannot start or join Ray ({address or 'local'}): {e}") from None
        self._owns_ray = True

    def _new_actor(self, slot: _Slot, node: str | None = None):
        """A fresh actor for ``slot`` (on ``node`` if it has room: a node that just joined)."""
        opts = dict(self._opts)
        if node is not None:
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        slot.actor = self._cls.options(**opts).remote(self._spec, self._threads)
        slot.where = {}
        return slot.actor

    @property
    def live_workers(self) -> int:
        """Workers started and serving (not counting replacements still starting)."""
        return len(self._slots) - len(self._starting)

    def refresh(self) -> None:
        """Between batches: take up the replacements that have started meanwhile, and when a
        node has joined the cluster while slots are missing (dropped), start them there, up to
        ``workers`` and as many as the node has room for."""
        if self._starting:
            ready, _ = ray.wait(list(self._starting), num_returns=len(self._starting), timeout=0)
            for ref in ready:
                self._started(ref)
        missing = self.workers - len(self._slots)
        if missing <= 0:
            return
        nodes, self._nodes = self._nodes, alive_nodes()
        for node, resources in self._nodes.items():
            room = 0 if node in nodes else room_for(resources, self._opts)
            for _ in range(min(missing, room)):
                self._add_slot(node)
                missing -= 1

    def _add_slot(self, node: str) -> None:
        slot = _Slot(max((s.index for s in self._slots), default=-1) + 1)
        self._slots.append(slot)
        self.stats["added"] += 1
        log.warning("Ray worker %d added on node %s, which joined the cluster", slot.index, node)
        actor = self._new_actor(slot, node)
        self._starting[actor.prepare.remote(self._features)] = (slot, time.monotonic())

    def dense_nll(self) -> list[float]:
        """Per-window NLL of the dense model on every validation window (one worker)."""
        if getattr(self, "_dense_nll", None) is None:
            if not self._slots:
                raise self._no_worker()
            slot = self._idle[0] if self._idle else self._slots[0]
            self._dense_nll = ray.get(slot.actor.dense_nll.remote(), timeout=self.startup_timeout)
        return self._dense_nll

    # ---- scheduling ---------------------------------------------------------------------------
    def evaluate_one(self, expr: str) -> EvalResult:
        return self.evaluate_many([expr])[0]

    def fingerprint_many(self, exprs: list[str]) -> list[str | None]:
        """Exact mask fingerprints computed on the workers (None where a worker failed)."""
        out = self.evaluate_many(exprs, method="fingerprint")
        return [None if isinstance(r, EvalResult) else r for r in out]

    def proxy_many(self, exprs: list[str]) -> list[float | None]:
        """The hurdle's proxies computed on the workers (None where a worker failed)."""
        out = self.evaluate_many(exprs, method="proxy")
        return [None if isinstance(r, EvalResult) else r for r in out]

    def evaluate_many(self, exprs: list[str], windows: tuple[int, int] | None = None,
                      method: str = "evaluate") -> list[EvalResult]:
        """One result per expression, in input order. A worker's failure never raises: it is
        retried or penalised; only the loss of every worker does (``NoLiveWorkerError``).
        windows: the validation windows [a, b) to score (None: all)."""
        exprs = list(exprs)
        self.refresh()
        args = (tuple(windows),) if (method == "evaluate" and windows is not None) else ()
        todo = deque((e, 0) for e in dict.fromkeys(exprs))  # (expr, retries so far)
        done: dict[str, EvalResult] = {}
        busy: dict = {}  # result ref -> (slot, expr, retries, dispatch time)
        while todo or busy:
            while todo and self._idle:
                slot = self._idle.pop(0)
                expr, tries = todo.popleft()
                call = getattr(slot.actor, method)
                busy[call.remote(expr, *args)] = (slot, expr, tries, time.monotonic())
            if not busy and not self._starting:
                raise self._no_worker()
            ready, _ = ray.wait(list(busy) + list(self._starting), num_returns=1,
                                timeout=self._wait_s(busy))
            for ref in ready:
                if ref in self._starting:
                    self._started(ref)
                else:
                    self._finished(ref, busy.pop(ref), todo, done)
            self._expire(busy, done)
        if method != "evaluate":
            return [done[e] for e in exprs]
        out = [dataclasses.replace(done[e], extra=dict(done[e].extra)) for e in exprs]
        self.stats["evaluated"] += len(done)
        self.stats["failed"] += sum(not r.ok for r in done.values())
        return out

    def _no_worker(self) -> NoLiveWorkerError:
        return NoLiveWorkerError(
            f"no live Ray worker left: {self.stats['dropped']} dropped after "
            f"{self.max_slot_failures} failures in a row (last: {self._last_failure}); what was "
            "written before is intact (a search resumes with --resume RUN_DIR)")

    def _finished(self, ref, job, todo: deque, done: dict) -> None:
        slot, expr, tries, t0 = job
        try:
            result = ray.get(ref)
        except ray.exceptions.RayTaskError as e:  # the evaluation raised: the worker is fine
            result = EvalResult.failure(expr, error_line(e), time.monotonic() - t0)
        except ray.exceptions.RayError as e:  # the worker died (crash, OOM kill, lost node)
            log.warning("Ray worker %d died while evaluating %s: %s", slot.index, expr,
                        error_line(e))
            self._failed(slot, f"died: {error_line(e)}")
            if tries < self.max_retries:
                self.stats["retries"] += 1
                todo.appendleft((expr, tries + 1))
            else:
                done[expr] = EvalResult.failure(
                    expr, f"worker died {tries + 1} times evaluating it: {error_line(e)}"[:300],
                    time.monotonic() - t0)
            return
        if isinstance(result, EvalResult):  # (fingerprints are plain strings)
            result.extra["worker"] = {**slot.where, "slot": slot.index}
        done[expr] = result
        slot.failures = 0
        self._idle.append(slot)

    def _started(self, ref) -> None:
        slot, _ = self._starting.pop(ref)
        try:
            slot.where = actor_location(ray.get(ref))
        except ray.exceptions.RayError as e:
            self._failed(slot, f"failed to start: {error_line(e)}")
            return
        self._idle.append(slot)

    def _failed(self, slot: _Slot, why: str) -> None:
        """The slot's actor died or did not start: replace it, or drop the slot when it has
        failed ``max_slot_failures`` times in a row (a bad node, a worker that cannot run)."""
        slot.failures += 1
        self._last_failure = f"worker {slot.index} {why}"[:300]
        if slot.failures < self.max_slot_failures:
            self._restart(slot)
            return
        log.warning("Ray worker %d dropped after %d failures in a row (last: %s); %d left",
                    slot.index, slot.failures, why, len(self._slots) - 1)
        kill_actor(slot.actor)
        self._slots.remove(slot)
        self.stats["dropped"] += 1

    def _restart(self, slot: _Slot) -> None:
        kill_actor(slot.actor)
        self.stats["restarts"] += 1
        actor = self._new_actor(slot)  # ready once it has loaded model and features
        self._starting[actor.prepare.remote(self._features)] = (slot, time.monotonic())

    def _wait_s(self, busy: dict) -> float | None:
        """Seconds until the next deadline (a candidate's timeout or a replacement's start)."""
        now, ends = time.monotonic(), []
        if self.eval_timeout is not None:
            ends += [t0 + self.eval_timeout for *_, t0 in busy.values()]
        ends += [t0 + self.startup_timeout for _, t0 in self._starting.values()]
        return max(0.0, min(ends) - now) if ends else None

    def _expire(self, busy: dict, done: dict) -> None:
        now = time.monotonic()
        if self.eval_timeout is not None:
            for ref, (slot, expr, _, t0) in list(busy.items()):
                if now - t0 >= self.eval_timeout:
                    del busy[ref]
                    self.stats["timeouts"] += 1
                    done[expr] = EvalResult.failure(expr, f"timeout after {self.eval_timeout:g} s",
                                                    now - t0)
                    self._restart(slot)
        for ref, (slot, t0) in list(self._starting.items()):
            if now - t0 >= self.startup_timeout:
                del self._starting[ref]
                self._failed(slot, f"not started after {self.startup_timeout:g} s")

    # ---- teardown -----------------------------------------------------------------------------
    def close(self) -> None:
        """Kill our actors and wait (at most ``CLOSE_WAIT_S``) until they are gone: ``ray.kill``
        is asynchronous, and a call already on its way can still be served by a dying actor.
        Ray is shut down only if this backend started or joined it."""
        actors = [slot.actor for slot in self._slots if slot.actor is not None]
        for actor in actors:
            kill_actor(actor)
        wait_gone(actors, CLOSE_WAIT_S)
        self._slots, self._idle, self._starting = [], [], {}
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False
