"""Benchmark: metric x weight update on the embedded model (calibration 128 x 256, TEST split,
first 64 windows x 256): METHOD+recon and sparsegpt:TREE beside Wanda and SparseGPT.

Runs the (method, pattern) pairs in priority order, one evaluator for all, and rewrites
bench/weight_update/results.{json,md} after every row (so a run cut short keeps what it
measured). Every row records wall and process-CPU pruning seconds (wall is inflated when other
processes share the cores; the load average is recorded), the git commit and the configuration.
Rows of an earlier compare run under the same configuration can be shown beside them
(--include, e.g. bench/compare_embedded/results.json: SparseGPT 30.00 / 53.98).

    .venv/bin/python scripts/bench_weight_update.py [--runs 'wanda+recon@unstructured' ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.config import CalibConfig, EvalConfig  # noqa: E402
from gpsearch.io import relative_path, write_json  # noqa: E402
from gpsearch.jobs.compare.registry import resolve_method  # noqa: E402
from gpsearch.jobs.compare.run import run_one  # noqa: E402
from gpsearch.pruning.masks import parse_pattern  # noqa: E402

BEST = "add(mul(W, sqrt(X)), zsn(mul(mul(W, sqrt(sqrt(X))), G)))"
DEFAULT_RUNS = [f"{m}@{p}" for p in ("unstructured", "2:4") for m in (
    "wanda+recon", f"{BEST}+recon", f"sparsegpt:{BEST}")] + [
    f"{m}@{p}" for p in ("unstructured", "2:4") for m in ("sparsegpt:wanda", "wanda", "sparsegpt")]


def _commit() -> str:
    root = Path(__file__).resolve().parents[1]
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                          text=True).stdout.strip()


def _md(result: dict) -> str:
    lines = [f"# Metric x weight update (commit {result['commit'][:10]})", "",
             f"calibration {result['calibration']}; evaluation {result['evaluation']}", "",
             "| method | pattern | PPL | prune wall s | prune CPU s | load avg | source |",
             "|---|---|---:|---:|---:|---:|---|"]
    for r in result["rows"]:
        ppl = f"{r['ppl']:.2f}" if r.get("ppl") is not None else f"error: {r.get('error')}"
        wall = f"{r['prune_s']:.0f}" if r.get("prune_s") is not None else ""
        cpu = f"{r['prune_cpu_s']:.0f}" if r.get("prune_cpu_s") is not None else ""
        load = f"{r['load_avg']:.1f}" if r.get("load_avg") is not None else ""
        lines.append(f"| `{r['method']}` | {r['pattern']} | {ppl} | {wall} | {cpu} | {load} | "
                     f"{r.get('source', 'this run')} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--runs", nargs="+", default=DEFAULT_RUNS, help="METHOD@PATTERN, in order")
    ap.add_argument("--max-windows", type=int, default=64)
    ap.add_argument("--out", default="bench/weight_update")
    ap.add_argument("--include", default="bench/compare_embedded/results.json")
    ap.add_argument("--tree-features", default="sequential", choices=("dense", "sequential"),
                    help="statistics of the tree masks: block by block (default, as Wanda) or "
                         "once from the dense model")
    args = ap.parse_args()
    from gpsearch.pruning.evaluator import Evaluator

    calib = CalibConfig(nsamples=128, seqlen=256)
    ev = EvalConfig(split="test", seqlen=256, max_windows=args.max_windows)
    runs = [(m, parse_pattern(p, 0.5)) for m, _, p in (r.rpartition("@") for r in args.runs)]
    # every spec checked before any work
    methods = {m: resolve_method(m, args.tree_features) for m, _ in runs}
    out = Path(args.out)
    result = {"commit": _commit(), "model": args.model, "tree_features": args.tree_features,
              "calibration": calib.to_dict(),
              "evaluation": ev.to_dict(), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
              "rows": []}
    if args.include and Path(args.include).is_file():
        old = json.loads(Path(args.include).read_text())
        if (old["config"]["calib"] == calib.to_dict()
                and old["config"]["evaluation"] == ev.to_dict()):
            for r in old["rows"]:
                if r["method"] in ("dense", "wanda", "sparsegpt") and r.get("error") is None:
                    result["rows"].append({**r, "source": relative_path(args.include)})
    evaluator = Evaluator(args.model, calib, progress=True)
    base = {"model": args.model, "calibration": calib.to_dict(), "evaluation": ev.to_dict()}
    for spec, pattern in runs:
        cpu = {}
        method = methods[spec]

        def timed(*a, _fn=method.fn, **k):
            c0 = time.process_time()
            try:
                return _fn(*a, **k)
            finally:
                cpu["s"] = time.process_time() - c0  # noqa: B023 - called at once

        row = run_one(evaluator, dataclasses.replace(method, fn=timed), pattern, 0.5, ev, {}, base)
        row.update(prune_cpu_s=cpu.get("s"), load_avg=os.getloadavg()[0], commit=result["commit"])
        row.pop("traceback", None) if row["error"] is None else None
        result["rows"].append(row)
        print(f"{spec:>40} {pattern} PPL {row['ppl']} prune {row['prune_s']} s "
              f"(CPU {row['prune_cpu_s']}) error {row['error']}", flush=True)
        write_json(out / "results.json", result)
        (out / "results.md").write_text(_md(result))


if __name__ == "__main__":
    main()
