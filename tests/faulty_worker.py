"""Test helper (not a test): an ``EvalWorker`` subclass that injects faults, for
``RayBackend(worker_cls=...)``. Production workers have no fault hook at all.

``faulty_worker(path)`` returns a class bound to one JSON file that the tests rewrite between
calls; the class is defined inside the function, so Ray ships it to the actors by value (its
closure included) and the actors need nothing but gpsearch to import. The file may hold:

- ``"dir": D``: every evaluation takes a ticket (0, 1, ... counted over all workers with marker
  files in D; a retry takes a new one), for the keys below that count evaluations;
- ``"exit_at": K``: the evaluation with ticket K kills its worker with ``os._exit(1)`` (once);
- ``"exit_from": K``: every evaluation from ticket K on kills its worker (no worker survives);
- ``"exit_expr": E``: every evaluation of E kills its worker (its retries are exhausted);
- ``"exit_node": N``: every evaluation on the Ray node with id N kills its worker (a bad node);
- ``"hold_node": N, "hold_from": K``: the first evaluation on node N with a ticket >= K writes
  its ticket to D/held and sleeps ``hold_s`` seconds (default 120), so that the test can remove
  node N while that candidate is in flight;
- ``"sleep_expr": E, "sleep_s": S``: sleep S seconds before evaluating E;
- ``"raise_expr": E``: raise RuntimeError in the actor (outside the SerialBackend) for E.
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
    ticket = _ticket(spec["dir"], "eval") if "dir" in spec else None
    node = _node() if ("exit_node" in spec or "hold_node" in spec) else None
    if _exits(spec, expr, ticket, node):
        os._exit(1)
    if (node is not None and node == spec.get("hold_node") and ticket >= spec["hold_from"]
            and _ticket(spec["dir"], "hold") == 0):
        with open(os.path.join(spec["dir"], "held"), "w") as f:
            f.write(str(ticket))
        time.sleep(float(spec.get("hold_s", 120)))
    if spec.get("sleep_expr") == expr:
        time.sleep(float(spec["sleep_s"]))
    if spec.get("raise_expr") == expr:
        raise RuntimeError(f"test fault raised for {expr}")


def _exits(spec: dict, expr: str, ticket: int | None, node: str | None) -> bool:
    if ticket is not None and (ticket == spec.get("exit_at")
                               or ticket >= spec.get("exit_from", float("inf"))):
        return True
    return expr == spec.get("exit_expr") or (node is not None and node == spec.get("exit_node"))


def _ticket(folder: str, kind: str) -> int:
    """The next free number of ``kind`` in ``folder`` (marker files: atomic across processes)."""
    import os

    ticket = 0
    while True:
        try:
            os.close(os.open(os.path.join(folder, f"{kind}-{ticket}"),
                             os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return ticket
        except FileExistsError:
            ticket += 1


def _node() -> str:
    import ray

    return ray.get_runtime_context().get_node_id()
