"""Test helper (not a test): an ``EvalWorker`` subclass that injects faults, for
``RayBackend(worker_cls=...)``. Production workers have no fault hook at all.

``faulty_worker(path)`` returns a class bound to one JSON file that the tests rewrite between
calls; the class is defined inside the function, so Ray ships it to the actors by value (its
closure included) and the actors need nothing but gpsearch to import. The file may hold
``{"dir": D, "exit_at": K}``: the K-th evaluation (0-based, counted over all workers with marker
files in D) kills its worker with ``os._exit(1)``; a retry takes a new number, so it happens
once; ``{"sleep_expr": E, "sleep_s": S}``: sleep S seconds before evaluating E;
``{"raise_expr": E}``: raise RuntimeError in the actor (outside the SerialBackend) for E.
"""

from __future__ import annotations

from gpsearch.workers.actor import EvalWorker


def faulty_worker(faults_path: str) -> type:
    faults_path = str(faults_path)

    class FaultyEvalWorker(EvalWorker):
        def evaluate(self, expr: str, *args, **kwargs):
            # forwards everything evaluate receives: the staged fitness sends (expr, windows)
            _fault(faults_path, expr)
            return super().evaluate(expr, *args, **kwargs)

    return FaultyEvalWorker


def _fault(path: str, expr: str) -> None:
    import json
    import os
    import time

    if not os.path.isfile(path):
        return
    with open(path) as f:
        spec = json.load(f)
    if "exit_at" in spec:
        ticket = 0
        while True:
            try:
                os.close(os.open(os.path.join(spec["dir"], f"eval-{ticket}"),
                                 os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                break
            except FileExistsError:
                ticket += 1
        if ticket == spec["exit_at"]:
            os._exit(1)
    if spec.get("sleep_expr") == expr:
        time.sleep(float(spec["sleep_s"]))
    if spec.get("raise_expr") == expr:
        raise RuntimeError(f"test fault raised for {expr}")
