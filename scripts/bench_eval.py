"""Benchmark: the cost of evaluating one metric tree on the embedded model at the search's fitness
setting (validation windows), split into features (computed, then loaded from cache),
metric + mask + apply, restore, and the forward passes; next to the forward-only floor (the dense
model's perplexity on the same windows). Writes bench/bench_eval.json.

    .venv/bin/python scripts/bench_eval.py [--tree wanda] [--windows 8] [--seqlen 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.config import CalibConfig, EvalConfig  # noqa: E402
from gpsearch.io import code_version  # noqa: E402
from gpsearch.pruning.evaluator import Evaluator  # noqa: E402
from gpsearch.pruning.features import FeatureStore  # noqa: E402
from gpsearch.pruning.masks import parse_pattern  # noqa: E402
from gpsearch.tree import load_tree, to_prefix  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--tree", default="wanda")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--pattern", default="unstructured")
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="bench/bench_eval.json")
    a = ap.parse_args()

    tree = load_tree(a.tree)
    pattern = parse_pattern(a.pattern, a.sparsity)
    calib = CalibConfig(data="wiki", nsamples=a.nsamples, seqlen=a.seqlen)
    ev = EvalConfig(data="wiki", split="validation", seqlen=a.seqlen, max_windows=a.windows)
    cache = Path(tempfile.mkdtemp(prefix="gpsearch-bench-"))

    t = time.perf_counter()
    evaluator = Evaluator(a.model, calib, device=a.device, cache_dir=cache)
    load_s = time.perf_counter() - t
    evaluator.windows(ev)
    t = time.perf_counter()
    evaluator.prepare(tree)
    features_compute_s = time.perf_counter() - t
    t = time.perf_counter()
    FeatureStore(evaluator.lm, calib, cache).get("X")
    features_cached_s = time.perf_counter() - t

    evaluator.perplexity(ev)  # warm-up
    floor, prune, fwd, restore, ppls = [], [], [], [], []
    for _ in range(a.repeats):
        t = time.perf_counter()
        dense = evaluator.perplexity(ev)["ppl"]
        floor.append(time.perf_counter() - t)
        t = time.perf_counter()
        evaluator.prune(tree, a.sparsity, pattern)
        prune.append(time.perf_counter() - t)
        t = time.perf_counter()
        ppls.append(evaluator.perplexity(ev)["ppl"])
        fwd.append(time.perf_counter() - t)
        t = time.perf_counter()
        evaluator.restore()
        restore.append(time.perf_counter() - t)
    med = statistics.median
    overhead = med(prune) + med(restore)
    out = {
        "tree": to_prefix(tree), "model": a.model, "sparsity": a.sparsity, "pattern": a.pattern,
        "device": a.device, "threads": torch.get_num_threads(), "machine": platform.machine(),
        "calibration": calib.to_dict(), "evaluation": ev.to_dict(),
        "tokens_per_eval": a.windows * a.seqlen, "repeats": a.repeats,
        "load_s": load_s, "features_compute_s": features_compute_s,
        "features_cached_load_s": features_cached_s,
        "metric_mask_apply_s": med(prune), "restore_s": med(restore),
        "forward_pruned_s": med(fwd), "forward_only_floor_s": med(floor),
        "overhead_fraction_of_forward": overhead / med(floor),
        "eval_total_s": overhead + med(fwd), "dense_ppl": dense, "pruned_ppl": ppls[-1],
        "target": "metric+mask+apply+restore under 30% of the forward time",
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    out.update(code_version())  # the commit measured, and whether the tree was dirty
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    for k, v in out.items():
        print(f"{k:32s} {v:.4f}" if isinstance(v, float) else f"{k:32s} {v}")


if __name__ == "__main__":
    main()
