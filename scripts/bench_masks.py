"""Benchmark: whole-model masks (score + selection) with the selection of ``masks._lowest`` beside
the top-k selection it replaced, on the real features of a search's model.

For the first ``--trees`` distinct valid trees of a search's log.jsonl, in one process (one model
load, the same features): ``Evaluator.compute_masks`` at unstructured (the run's sparsity when
it is unstructured, else 0.5) and at 2:4, ``--reps`` times each, alternating

    selection  the current ``_lowest``: numpy's introselect for the k-th value on the CPU, and the
               pairwise ranking for N:M groups
    topk       the previous selection: ``torch.topk`` for the k-th value everywhere

and checks that both give the same masks, bit for bit. Prints and writes the median seconds per
whole-model mask and their ratio.

    .venv/bin/python scripts/bench_masks.py RUN_DIR [--trees 8] [--reps 3]
        [--out bench/bench_masks.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run_files import read_run, run_evaluator  # noqa: E402

from gpsearch.io import code_version, relative_path  # noqa: E402
from gpsearch.pruning import masks as masks_module  # noqa: E402
from gpsearch.pruning.masks import parse_pattern  # noqa: E402
from gpsearch.tree import EXTENDED, parse_prefix, terminals_used  # noqa: E402


def _topk_kth(score: torch.Tensor, k: int) -> torch.Tensor:
    return torch.topk(score, k, dim=-1, largest=False, sorted=False).values.amax(dim=-1,
                                                                                 keepdim=True)


class previous_selection:
    """Inside the block, ``masks._lowest`` selects with a top-k for every shape (as before)."""

    def __enter__(self):
        self.saved = (masks_module._kth_smallest, masks_module.SMALL_GROUP)
        masks_module._kth_smallest, masks_module.SMALL_GROUP = _topk_kth, 0

    def __exit__(self, *exc):
        masks_module._kth_smallest, masks_module.SMALL_GROUP = self.saved


def timed_masks(evaluator, tree, sparsity, pattern):
    t0 = time.perf_counter()
    m = evaluator.compute_masks(tree, sparsity, pattern)
    return m, time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--trees", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--out", default="bench/bench_masks.json")
    args = ap.parse_args()
    version = code_version()
    config, records = read_run(Path(args.run_dir))
    s = config["settings"]
    evaluator, run_pattern, _ = run_evaluator(config)
    trees, seen = [], set()
    for r in records:
        if r["hit"] is None and not r.get("error") and r["key"] not in seen:
            seen.add(r["key"])
            trees.append(r["simplified"])
    trees = trees[:args.trees]
    unstructured = s["sparsity"] if run_pattern.kind == "unstructured" else 0.5
    patterns = {"unstructured": (unstructured, parse_pattern("unstructured", scope=s["scope"])),
                "2:4": (0.5, parse_pattern("2:4", 0.5))}
    for e in trees:
        evaluator.prepare(parse_prefix(e, EXTENDED))
    rows = []
    for name, (sparsity, pattern) in patterns.items():
        new_s, old_s, equal = [], [], True
        for e in trees:
            tree = parse_prefix(e, EXTENDED)
            for _ in range(args.reps):
                a, t_new = timed_masks(evaluator, tree, sparsity, pattern)
                with previous_selection():
                    b, t_old = timed_masks(evaluator, tree, sparsity, pattern)
                new_s.append(t_new)
                old_s.append(t_old)
                equal &= all(torch.equal(a[n], b[n]) for n in a)
        row = {"pattern": name, "sparsity": sparsity, "trees": len(trees), "reps": args.reps,
               "selection_median_s": round(statistics.median(new_s), 3),
               "topk_median_s": round(statistics.median(old_s), 3),
               "speedup": round(statistics.median(old_s) / statistics.median(new_s), 2),
               "masks_identical": bool(equal)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    out = {"bench": "masks", **version, "run_dir": relative_path(args.run_dir),
           "model": s["model"], "linears": len(evaluator.linears),
           "threads": torch.get_num_threads(),
           "terminals": sorted({t for e in trees
                                for t in terminals_used(parse_prefix(e, EXTENDED))}),
           "tree_list": trees, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
