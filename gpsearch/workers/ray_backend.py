"""The Ray backend of ``evaluate_many``: resident-model actors and a fault-tolerant scheduler.

The only module of gpsearch that imports Ray. Each actor (``EvalWorker``) builds one Evaluator
ONCE from plain specs: the model is loaded by spec on the worker's node (never shipped through
the object store), features come from the on-disk cache (computed by the first actor alone).
Candidates (expression strings) go to a ``SerialBackend`` inside the actor: same results.

Scheduling is our own loop on ``ray.wait`` (``ActorPool`` stops at the first exception): one
candidate in flight per actor, results in input order, duplicates in one call evaluated once.
A candidate that raises in the actor is penalised, not retried; a worker that dies (crash, OOM
kill, lost node) is replaced and its candidate retried ``max_retries`` times, then penalised; a
candidate past ``eval_timeout`` s gets its actor killed and replaced and is penalised. No result
is lost and ``evaluate_many`` never raises because of a worker. Actor side: ``actor``.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
from collections import deque

import ray

from gpsearch.engine.result import EvalResult
from gpsearch.errors import UserError
from gpsearch.workers.actor import EvalWorker, worker_spec

START_ATTEMPTS = 2  # a worker slot whose replacement fails to start this many times is dropped
RESOURCES = ("auto", "gpu", "cpu")
log = logging.getLogger(__name__)


@dataclasses.dataclass
class _Slot:
    """A worker position: its current actor and how many starts in a row failed."""
    index: int
    actor: object = None
    start_failures: int = 0


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
        self.startup_timeout = startup_timeout
        self.stats = {"evaluated": 0, "failed": 0, "retries": 0, "restarts": 0, "timeouts": 0}
        self._owns_ray, self._slots = False, []
        self._idle: list[_Slot] = []
        self._starting: dict = {}  # ready ref -> (slot, start time)
        self._connect(address)
        # placement_workers: the actors of every backend sharing the cluster (multi-condition
        # fitness runs one backend per condition), so each actor gets its share, not all of it
        opts, threads, device = placement(ray.cluster_resources(), placement_workers or workers,
                                          resources, device, gpus_per_worker)
        if opts.get("num_gpus", 0) > 1 and device_map is None:
            device_map = "auto"  # one model over the actor's k GPUs (Ray sets CUDA_VISIBLE_DEVICES)
        self._spec = worker_spec(model, calib, ev, sparsity, pattern, scope, mode, dtype, device,
                                 cache_dir, fitness=fitness, topk=topk, device_map=device_map,
                                 rescale=rescale, allocation=allocation)
        self._cls, self._opts, self._threads = ray.remote(worker_cls), opts, threads
        self._features = list(features)
        self.placement = {"workers": workers, "threads": threads, "device": device, **opts}
        try:  # all actors load the model at once; the first alone computes missing features
            self._slots = [_Slot(i) for i in range(workers)]
            for slot in self._slots:
                self._new_actor(slot)
            ray.get(self._slots[0].actor.prepare.remote(self._features), timeout=startup_timeout)
            ray.get([s.actor.prepare.remote(self._features) for s in self._slots[1:]],
                    timeout=startup_timeout)
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError) as e:
            self.close()
            why = _message(e).removeprefix("gpsearch.errors.UserError: ")
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

    def _new_actor(self, slot: _Slot):
        slot.actor = self._cls.options(**self._opts).remote(self._spec, self._threads)
        return slot.actor

    def dense_nll(self) -> list[float]:
        """Per-window NLL of the dense model on every validation window (one worker)."""
        if getattr(self, "_dense_nll", None) is None:
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

    def evaluate_many(self, exprs: list[str], windows: tuple[int, int] | None = None,
                      method: str = "evaluate") -> list[EvalResult]:
        """One result per expression, in input order; never raises because of a worker.
        windows: the validation windows [a, b) to score (None: all)."""
        exprs = list(exprs)
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
                for expr, _ in todo:
                    done[expr] = EvalResult.failure(expr, "no live Ray worker left")
                break
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

    def _finished(self, ref, job, todo: deque, done: dict) -> None:
        slot, expr, tries, t0 = job
        try:
            done[expr] = ray.get(ref)
            self._idle.append(slot)
        except ray.exceptions.RayTaskError as e:  # the evaluation raised: the worker is fine
            done[expr] = EvalResult.failure(expr, _message(e), time.monotonic() - t0)
            self._idle.append(slot)
        except ray.exceptions.RayError as e:  # the worker died (crash, OOM kill, lost node)
            log.warning("Ray worker %d died while evaluating %s: %s", slot.index, expr, _message(e))
            self._restart(slot)
            if tries < self.max_retries:
                self.stats["retries"] += 1
                todo.appendleft((expr, tries + 1))
            else:
                done[expr] = EvalResult.failure(
                    expr, f"worker died {tries + 1} times evaluating it: {_message(e)}"[:300],
                    time.monotonic() - t0)

    def _started(self, ref) -> None:
        slot, _ = self._starting.pop(ref)
        try:
            ray.get(ref)
        except ray.exceptions.RayError as e:
            self._start_failed(slot, _message(e))
            return
        slot.start_failures = 0
        self._idle.append(slot)

    def _start_failed(self, slot: _Slot, why: str) -> None:
        slot.start_failures += 1
        if slot.start_failures < START_ATTEMPTS:
            self._restart(slot)
            return
        log.warning("Ray worker %d dropped: it failed to start %d times (%s)", slot.index,
                    slot.start_failures, why)
        _kill(slot.actor)
        self._slots.remove(slot)

    def _restart(self, slot: _Slot) -> None:
        _kill(slot.actor)
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
                self._start_failed(slot, f"not started after {self.startup_timeout:g} s")

    # ---- teardown -----------------------------------------------------------------------------
    def close(self) -> None:
        """Kill our actors; shut Ray down only if this backend started or joined it."""
        for slot in self._slots:
            _kill(slot.actor)
        self._slots, self._idle, self._starting = [], [], {}
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False


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


def _kill(actor) -> None:
    if actor is not None:
        try:
            ray.kill(actor, no_restart=True)
        except Exception:  # already gone  # noqa: BLE001
            pass


def _message(e: BaseException) -> str:
    """A one-line reason: the original exception of a task error, else the last useful line."""
    cause = getattr(e, "cause", None)
    if isinstance(e, ray.exceptions.RayTaskError) and cause is not None:
        return f"{type(cause).__name__}: {cause}"[:300]
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[-1] if lines else type(e).__name__).split(" Some common causes")[0][:300]
