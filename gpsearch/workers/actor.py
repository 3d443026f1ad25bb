"""The evaluation worker that runs inside a Ray actor, as a plain class (no Ray import here:
``ray_backend`` wraps it with ``ray.remote``), plus its plain-data spec. No test hook lives
here: tests inject faults with a subclass passed to ``RayBackend(worker_cls=...)``
(tests/faulty_worker.py).

``EvalWorker`` builds one Evaluator ONCE from plain specs and evaluates candidates (expression
strings) by delegating to a ``SerialBackend``, so its results equal the serial backend's.
"""

from __future__ import annotations

import os

from gpsearch.engine.result import EvalResult


def worker_spec(model: str, calib, ev, sparsity: float, pattern: str = "unstructured",
                scope: str = "row", mode: str = "dense", dtype: str = "float32",
                device: str = "cpu", cache_dir=None, fitness: str = "ppl", topk: int = 512,
                device_map: str | None = None, rescale: dict | None = None,
                allocation: dict | None = None) -> dict:
    """The plain data every worker builds its Evaluator from (configs as dicts, paths as str)."""
    as_dict = lambda c: c if isinstance(c, dict) else c.to_dict()  # noqa: E731
    return {"model": str(model), "calib": as_dict(calib), "ev": as_dict(ev),
            "sparsity": float(sparsity), "pattern": str(pattern), "scope": scope, "mode": mode,
            "dtype": dtype, "device": device, "cache_dir": str(cache_dir) if cache_dir else None,
            "fitness": fitness, "topk": int(topk), "device_map": device_map,
            "rescale": {str(k): float(v) for k, v in (rescale or {}).items()},
            "allocation": dict(allocation) if allocation else None}


class EvalWorker:
    """One resident Evaluator inside a Ray actor (wrapped by ``ray.remote`` in RayBackend)."""

    def __init__(self, spec: dict, threads: int | None = None):
        import torch

        if threads:  # the cores are split between actors: Evaluator's set_threads respects this
            os.environ["OMP_NUM_THREADS"] = str(threads)
            torch.set_num_threads(threads)
        from gpsearch.config import CalibConfig, EvalConfig
        from gpsearch.pruning.evaluator import Evaluator
        from gpsearch.pruning.masks import parse_pattern
        from gpsearch.workers.serial import SerialBackend

        ev = EvalConfig.from_dict(spec["ev"])
        self.evaluator = Evaluator(spec["model"], CalibConfig.from_dict(spec["calib"]),
                                   spec["dtype"], spec["device"], spec["cache_dir"],
                                   device_map=spec.get("device_map"))
        pattern = parse_pattern(spec["pattern"], spec["sparsity"], spec["scope"])
        self.backend = SerialBackend(self.evaluator, spec["sparsity"], pattern, ev, spec["mode"],
                                     fitness=spec.get("fitness", "ppl"),
                                     topk=spec.get("topk", 512),
                                     rescale=spec.get("rescale"),
                                     allocation=spec.get("allocation"))
        self.evaluator.windows(ev)  # tokenise the validation windows once, up front

    def ping(self) -> int:
        """This worker's pid: a cheap call that fails once the actor is gone."""
        return os.getpid()

    def prepare(self, kinds: list[str]) -> dict:
        """Load (or compute and cache) the features; says which kinds were computed here."""
        import torch

        self.evaluator.features.get_all(kinds)
        return {"pid": os.getpid(), "threads": torch.get_num_threads(),
                "computed": list(self.evaluator.features.computed)}

    def dense_nll(self) -> list[float]:
        return self.backend.dense_nll()

    def fingerprint(self, expr: str) -> str | None:
        return self.backend.fingerprint_one(expr)

    def proxy(self, expr: str) -> float | None:
        return self.backend.proxy_one(expr)

    def evaluate(self, expr: str, windows: tuple[int, int] | None = None) -> EvalResult:
        try:
            return self.backend.evaluate_one(expr, windows)
        except BaseException:
            self.evaluator.restore()  # never leave a pruned model behind for the next candidate
            raise

