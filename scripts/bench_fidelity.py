"""Benchmark: how well does each fitness (PPL or KL) at each token budget rank trees by their
TEST-split perplexity? Picks the search's fitness defaults.

Trees: sampled from a search's log.jsonl (the best ``--best`` by their logged fitness plus a seeded
random sample of the rest, good and bad), or given with --trees. For each tree: prune once
(dense features, the run's sparsity and pattern), score the first ``--val-windows`` VALIDATION
windows (per-window NLL and KL to the dense model, top-K reference), then the first
``--test-windows`` TEST windows (PPL); the best 10 by that test PPL get ``--final-test-windows``
test windows (the whole split with 0). A budget of B tokens = the first B / seqlen validation
windows. Spearman rank correlation of each (fitness, budget) with the test PPL, over all trees
and among the best 10 (ranked by the longer test PPL).

    .venv/bin/python scripts/bench_fidelity.py --run RUN_DIR [--n 30] [--val-windows 32]
        [--test-windows 64] [--final-test-windows 128] [--out bench/bench_fidelity.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.config import CalibConfig, EvalConfig  # noqa: E402
from gpsearch.engine import agreement  # noqa: E402
from gpsearch.fitness.stages import score_of  # noqa: E402
from gpsearch.fitness.windows import dense_reference, window_scores  # noqa: E402
from gpsearch.io import code_version, relative_path  # noqa: E402
from gpsearch.pruning.evaluator import Evaluator  # noqa: E402
from gpsearch.pruning.masks import parse_pattern  # noqa: E402
from gpsearch.tree import EXTENDED, parse_prefix  # noqa: E402


def spearman(a: list[float], b: list[float]) -> float | None:
    rho = agreement.spearman(a, b)
    return None if rho is None else round(rho, 4)


def sample_trees(run: Path, n: int, best: int, seed: int) -> list[str]:
    recs = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines() if x]
    good = {}
    for r in recs:
        if r["hit"] is None and r["error"] is None and r["fitness"] < 1e5:
            good.setdefault(r["simplified"], r["fitness"])
    ordered = sorted(good, key=lambda e: (good[e], e))
    top, rest = ordered[:best], ordered[best:]
    return top + random.Random(seed).sample(rest, min(n - len(top), len(rest)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="a search directory to sample trees from")
    ap.add_argument("--trees", nargs="*", default=None, help="prefix expressions instead")
    ap.add_argument("--trees-file", default=None, help="a JSON list of prefix expressions")
    ap.add_argument("--n", type=int, default=30)
    ap.add_argument("--best", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--sparsity", type=float, default=0.5)
    ap.add_argument("--pattern", default="unstructured")
    ap.add_argument("--val-windows", type=int, default=32)
    ap.add_argument("--test-windows", type=int, default=64)
    ap.add_argument("--final-test-windows", type=int, default=128)
    ap.add_argument("--topk", type=int, default=512)
    ap.add_argument("--budgets", default="512,1024,2048,4096,8192")
    ap.add_argument("--out", default="bench/bench_fidelity.json")
    args = ap.parse_args()
    if args.trees_file:
        data = json.loads(Path(args.trees_file).read_text())
        args.trees = data["trees"] if isinstance(data, dict) else data  # {"commit", "trees"}
    trees = args.trees or sample_trees(Path(args.run), args.n, args.best, args.seed)
    calib = CalibConfig()
    ev_val = EvalConfig(split="validation", max_windows=args.val_windows)
    final = args.final_test_windows or None
    ev_test = EvalConfig(split="test", max_windows=max(args.test_windows, final or 10 ** 6))
    evaluator = Evaluator(args.model, calib)
    for kind in ("X", "G", "H"):
        evaluator.features.get(kind)
    pattern = parse_pattern(args.pattern, args.sparsity)
    val, test = evaluator.windows(ev_val), evaluator.windows(ev_test)
    ref = dense_reference(evaluator.model, val, args.topk)
    rows, t0 = [], time.perf_counter()
    for i, expr in enumerate(trees):
        tree = parse_prefix(expr, EXTENDED)
        try:
            evaluator.prune(tree, args.sparsity, pattern)
            v = window_scores(evaluator.model, val, 4, ref)
            t = window_scores(evaluator.model, test[:args.test_windows], 4)
        finally:
            evaluator.restore()
        rows.append({"expr": expr, "val_nll": v["nll"], "val_kl": v["kl"],
                     "test_ppl": score_of("ppl", t["nll"]), "test_nll": t["nll"]})
        print(f"[{i + 1}/{len(trees)}] test {rows[-1]['test_ppl']:.3f}  {expr[:90]} "
              f"({time.perf_counter() - t0:.0f} s)", flush=True)
    top = sorted(range(len(rows)), key=lambda i: rows[i]["test_ppl"])[:10]
    for i in top:  # the best 10 get the longer test measurement
        tree = parse_prefix(rows[i]["expr"], EXTENDED)
        try:
            evaluator.prune(tree, args.sparsity, pattern)
            more = window_scores(evaluator.model, test[args.test_windows:final], 4)
        finally:
            evaluator.restore()
        rows[i]["test_nll_long"] = rows[i]["test_nll"] + more["nll"]
        rows[i]["test_ppl_long"] = score_of("ppl", rows[i]["test_nll_long"])
        print(f"best-10 long test {rows[i]['test_ppl_long']:.3f} ({len(rows[i]['test_nll_long'])}"
              f" windows)  {rows[i]['expr'][:80]}", flush=True)
    seqlen = calib.seqlen
    table = []
    for budget in (int(b) for b in args.budgets.split(",")):
        w = budget // seqlen
        if w > args.val_windows:
            continue
        for kind, field in (("ppl", "val_nll"), ("kl", "val_kl")):
            fit = [score_of(kind, r[field][:w]) for r in rows]
            all_rho = spearman(fit, [r["test_ppl"] for r in rows])
            best_rho = spearman([fit[i] for i in top], [rows[i]["test_ppl_long"] for i in top])
            table.append({"fitness": kind, "tokens": budget, "spearman_all": all_rho,
                          "spearman_best10": best_rho})
            print(f"{kind} {budget:6d} tokens: Spearman all {all_rho}  best-10 {best_rho}")
    source = args.run or args.trees_file
    out = {"bench": "fidelity", **code_version(), "model": args.model,
           "sparsity": args.sparsity, "pattern": args.pattern, "calibration": calib.to_dict(),
           "trees": len(rows), "val_windows": args.val_windows, "test_windows": args.test_windows,
           "best10_test_windows": len(rows[top[0]]["test_nll_long"]) if top else None,
           "topk": args.topk, "source": relative_path(source) if source else "given",
           "table": table,
           "seconds": round(time.perf_counter() - t0, 1),
           "rows": [{k: v for k, v in r.items() if k not in ("test_nll", "test_nll_long")}
                    | {"val_ppl_full": score_of("ppl", r["val_nll"]),
                       "val_kl_full": score_of("kl", r["val_kl"])} for r in rows]}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
