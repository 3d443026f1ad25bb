"""Benchmark: throughput of the search pipeline against a naive per-tree pipeline.

Ours: one resident model, features computed once (cached on disk), every candidate deduplicated
(canonical key, mask fingerprint) before any forward pass, then pruned in place and restored.
A fixed short search (seeded, Pruner-Zero space) is run and timed.

Naive: what a script without those pieces does for each tree: load the model, collect the
calibration features again, prune, measure the same validation windows (same fitness fidelity:
same calibration config, same windows, so the same perplexity), nothing cached, no dedup.
It is run on the first few distinct trees of the search (it is slow), and its per-tree time gives
its throughput.

    .venv/bin/python scripts/bench_search.py [--population 8] [--offspring 8] [--generations 2]
        [--naive-trees 2] [--out bench/bench_search.json]

Numbers: candidates per hour (every tree the search proposed and scored, cache hits included),
forward evaluations per hour, dedup hit rate; with and without the one-time start-up (model load,
features). Speed-up = our candidates per hour (start-up included) / naive trees per hour.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.config import CalibConfig, EvalConfig  # noqa: E402
from gpsearch.engine.loop import SearchConfig, Searcher  # noqa: E402
from gpsearch.engine.space import load_space  # noqa: E402
from gpsearch.io import code_version  # noqa: E402
from gpsearch.pruning.evaluator import Evaluator  # noqa: E402
from gpsearch.pruning.fingerprint import ExprServices  # noqa: E402
from gpsearch.pruning.masks import parse_pattern  # noqa: E402
from gpsearch.tree import PRUNERZERO, parse_prefix  # noqa: E402
from gpsearch.workers.serial import SerialBackend  # noqa: E402


def naive_one(expr: str, model: str, calib: CalibConfig, ev: EvalConfig, sparsity: float,
              pattern) -> dict:
    """Load, collect features from scratch (an empty cache), prune, score: one tree."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gpsearch-naive-") as cache:
        evaluator = Evaluator(model, calib, cache_dir=Path(cache), use_cache=False)
        tree = parse_prefix(expr, PRUNERZERO)
        rec = evaluator.evaluate(tree, sparsity, pattern, ev)
        del evaluator
    return {"expr": expr, "ppl": rec["ppl"], "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--population", type=int, default=8)
    ap.add_argument("--offspring", type=int, default=8)
    ap.add_argument("--generations", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--nsamples", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=256)
    ap.add_argument("--windows", type=int, default=8)
    ap.add_argument("--naive-trees", type=int, default=2)
    ap.add_argument("--out", default="bench/bench_search.json")
    a = ap.parse_args()

    space = load_space("prunerzero")
    sparsity, pattern = 0.5, parse_pattern("unstructured", 0.5)
    calib = CalibConfig(data="wiki", nsamples=a.nsamples, seqlen=a.seqlen)
    ev = EvalConfig(data="wiki", split="validation", seqlen=a.seqlen, max_windows=a.windows)

    # ---- ours ---------------------------------------------------------------------------------
    with tempfile.TemporaryDirectory(prefix="gpsearch-bench-") as cache:
        t0 = time.perf_counter()
        evaluator = Evaluator(a.model, calib, cache_dir=Path(cache))
        for kind in ("X", "G"):
            evaluator.features.get(kind)
        evaluator.windows(ev)
        startup_s = time.perf_counter() - t0
        backend = SerialBackend(evaluator, sparsity, pattern, ev)
        cfg = SearchConfig(population=a.population, offspring=a.offspring,
                           elite=a.population // 2, seed=a.seed)
        searcher = Searcher(space, backend, cfg, ExprServices(PRUNERZERO, sparsity, pattern))
        evaluated: list[tuple[str, float]] = []
        searcher.on_evaluation.append(
            lambda r: evaluated.append((r["simplified"], r["ppl"])) if r["hit"] is None else None)
        t0 = time.perf_counter()
        searcher.run_until(a.generations)
        search_s = time.perf_counter() - t0
        del evaluator, backend
    c = searcher.counters
    total_s = startup_s + search_s
    ours = {
        "candidates": c["candidates"], "forward_evaluations": c["evaluated"],
        "key_hits": c["key_hits"], "fingerprint_hits": c["fp_hits"], "invalid": c["invalid"],
        "dedup_hit_rate": (c["key_hits"] + c["fp_hits"]) / c["candidates"],
        "startup_s": round(startup_s, 2), "search_s": round(search_s, 2),
        "candidates_per_hour": round(3600 * c["candidates"] / total_s, 1),
        "candidates_per_hour_after_startup": round(3600 * c["candidates"] / search_s, 1),
        "forward_evaluations_per_hour_after_startup": round(3600 * c["evaluated"] / search_s, 1),
        "best": searcher.best(),
    }
    print(json.dumps(ours, indent=1))

    # ---- naive --------------------------------------------------------------------------------
    valid = [(e, p) for e, p in evaluated if p is not None][:a.naive_trees]
    naive = [naive_one(e, a.model, calib, ev, sparsity, pattern) for e, _ in valid]
    for n, (_, p) in zip(naive, valid):
        n["ppl_in_search"] = p  # same fidelity: the same perplexity
    per_tree = sum(n["seconds"] for n in naive) / max(len(naive), 1)
    naive_rate = 3600 / per_tree if naive else None
    out = {
        "model": a.model, "space": space.name, "sparsity": sparsity, "pattern": str(pattern),
        "calibration": calib.to_dict(), "evaluation": ev.to_dict(),
        "search": {"population": a.population, "offspring": a.offspring,
                   "generations": a.generations, "seed": a.seed},
        "ours": ours,
        "naive": {"trees": naive, "seconds_per_tree": round(per_tree, 2),
                  "trees_per_hour": round(naive_rate, 1) if naive_rate else None},
        "speedup_candidates_vs_naive": round(ours["candidates_per_hour"] / naive_rate, 2)
        if naive_rate else None,
        "speedup_forward_evaluations_vs_naive": round(
            3600 * c["evaluated"] / total_s / naive_rate, 2) if naive_rate else None,
        "target": "speedup_candidates_vs_naive >= 10",
        "machine": {"cpu_threads": torch.get_num_threads(), "platform": platform.platform(),
                    "torch": torch.__version__},
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    out.update(code_version())  # the commit measured, and whether the tree was dirty
    Path(a.out).write_text(json.dumps(out, indent=2, default=str))
    print(json.dumps({k: out[k] for k in ("naive", "speedup_candidates_vs_naive",
                                          "speedup_forward_evaluations_vs_naive")}, indent=1))
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
