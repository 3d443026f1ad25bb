"""Benchmark: evaluations per hour of the Ray backend with 1 and 2 workers on this machine, next
to the serial in-process backend, for the embedded model at the search's fitness setting
(validation split, seqlen 256, 8 windows) on a fixed list of 8 distinct expressions.
Writes bench/bench_ray.json.

    .venv/bin/python scripts/bench_ray.py [--workers 1,2] [--windows 8] [--out bench/bench_ray.json]

Features (X, G) are computed once by the serial evaluator into the feature cache (default
~/.cache/gpsearch or $GPSEARCH_CACHE); the Ray workers then load them from there. Each backend
first evaluates one warm-up expression per worker (not timed), then the 8 expressions (timed).
The load average is recorded: on a shared machine other processes compete for the cores.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.config import CalibConfig, EvalConfig  # noqa: E402
from gpsearch.io import code_version  # noqa: E402
from gpsearch.workers.factory import make_backend  # noqa: E402

EXPRS = ["mul(W, sqrt(X))", "W", "mul(abs(mul(W, W)), mms(G))", "add(mul(W, sqrt(X)), mul(W, G))",
         "mul(add(coln(W), rown(W)), qrt(X))", "mul(W, X)", "mul(G, W)", "mul(sqr(W), sqrt(X))"]
WARMUP = ["abs(W)", "sqr(W)", "neg(neg(W))", "skp(W)"]  # one per worker, not timed


def mem_used_gib() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.virtual_memory().used / 2 ** 30


def run(name: str, backend, workers: int, startup_s: float, mem0) -> dict:
    backend.evaluate_many(WARMUP[:max(workers, 1)])
    mem1 = mem_used_gib()
    load = os.getloadavg()[0]
    t = time.perf_counter()
    results = backend.evaluate_many(EXPRS)
    wall = time.perf_counter() - t
    backend.close()
    row = {"backend": name, "workers": workers, "startup_s": round(startup_s, 2),
           "evals": len(EXPRS), "wall_s": round(wall, 2),
           "evals_per_hour": round(3600 * len(EXPRS) / wall, 1),
           "mean_eval_s_in_worker": round(sum(r.seconds for r in results) / len(results), 2),
           "load_avg_1min_before": round(load, 2),
           "load_avg_1min_after": round(os.getloadavg()[0], 2),
           "mem_used_delta_gib": None if mem0 is None or mem1 is None else round(mem1 - mem0, 2),
           "fitness": {r.expr: r.fitness for r in results},
           "failures": {r.expr: r.error for r in results if not r.ok}}
    print(f"{name:8s} workers={workers} startup {startup_s:6.1f} s  {wall:6.1f} s for "
          f"{len(EXPRS)} evals  -> {row['evals_per_hour']:7.1f} evals/hour  "
          f"(load {load:.1f}, mem +{row['mem_used_delta_gib']} GiB)", flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--workers", default="1,2", help="comma-separated Ray worker counts")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--no-serial", action="store_true", help="skip the serial reference")
    ap.add_argument("--out", default="bench/bench_ray.json")
    a = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local instance
    calib = CalibConfig(data="wiki", nsamples=a.nsamples, seqlen=a.seqlen)
    ev = EvalConfig(data="wiki", split="validation", seqlen=a.seqlen, max_windows=a.windows)
    specs = dict(model=a.model, calib=calib, ev=ev, sparsity=0.5, pattern="unstructured",
                 cache_dir=a.cache_dir, features=("X", "G"))
    rows = []
    t = time.perf_counter()
    serial = make_backend(0, **specs)  # computes (or loads) the features into the cache
    features_s = time.perf_counter() - t
    print(f"serial backend ready (model + features) in {features_s:.1f} s", flush=True)
    if a.no_serial:
        serial.close()
    else:
        rows.append(run("serial", serial, 0, features_s, None))
    del serial
    gc.collect()
    for n in [int(x) for x in a.workers.split(",") if x.strip()]:
        mem0 = mem_used_gib()
        t = time.perf_counter()
        backend = make_backend(n, **{**specs, "address": None})
        rows.append(run("ray", backend, n, time.perf_counter() - t, mem0))
    fits = [r["fitness"] for r in rows]
    out = {"model": a.model, "device": "cpu", "cpus": os.cpu_count(), "machine": platform.machine(),
           "calibration": calib.to_dict(), "evaluation": ev.to_dict(), "expressions": EXPRS,
           "identical_fitness_across_backends": all(f == fits[0] for f in fits),
           "runs": rows,
           "note": "startup_s: Ray start + actors loading the model and cached features (serial: "
                   "model load + feature computation or cache load); evals_per_hour excludes it"}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    out.update(code_version())  # the commit measured, and whether the tree was dirty
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"identical fitness across backends: {out['identical_fitness_across_backends']}")
    print(f"written to {a.out}")


if __name__ == "__main__":
    main()
