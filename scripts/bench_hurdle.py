"""Is a cheap proxy faithful enough to stop poor candidates before their first-stage evaluation?

The proxy of a tree: its masks (50% unstructured, per row) on the linears of a few decoder
layers, and the output error they cause as estimated from the cached input statistics, the
diagonal approximation sum_ij W_ij^2 X_j M_ij / sum_ij W_ij^2 X_j (X_j: the mean squared norm of
input channel j, so W_ij^2 X_j is the expected squared output change of zeroing w_ij with
uncorrelated inputs), averaged over the layers. No forward pass.

The trees are the fully evaluated candidates of committed search runs (their log.jsonl holds
the first-stage fitness of every one: each rejected tree's full score is known, so no rerun is
needed to count what a hurdle would lose). For hurdles "reject when the proxy exceeds r times
the Wanda tree's proxy", the script counts the evaluations saved and how many of the run's 50
best trees (by first-stage fitness) would have been rejected, plus the rank agreement
(Spearman) and the proxy's cost next to a first-stage evaluation's, measured here. Writes
bench/hurdle.json with the commit.

    .venv/bin/python scripts/bench_hurdle.py
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.engine.agreement import spearman  # noqa: E402
from gpsearch.io import ROOT, code_version, relative_path, write_json  # noqa: E402

RUNS = ("bench/default_search_single", "bench/ablation_no_immigrants")
RATIOS = (1.1, 1.25, 1.5, 2.0, 3.0, 5.0)


def proxy_fn(evaluator, layers: tuple[int, ...], sparsity: float):
    """expr -> proxy (lower is better) on the linears of ``layers``."""
    import torch

    from gpsearch.pruning.masks import make_mask, parse_pattern
    from gpsearch.tree import EXTENDED, parse_prefix

    pattern = parse_pattern("unstructured", sparsity, "row")
    names = [n for n in evaluator.linears if int(n.split(".")[0]) in layers]  # "3.mlp.up_proj"
    x = evaluator.features.get("X")
    energy = {n: evaluator.abs_weight(n) ** 2 * x[n] for n in names}
    evaluator.features.get_all(["X", "G", "H"])

    @torch.no_grad()
    def proxy(expr: str) -> float:
        tree = parse_prefix(expr, EXTENDED)
        errs = []
        for n in names:
            mask = make_mask(evaluator.score(tree, n), sparsity, pattern)
            errs.append(float((energy[n] * mask).sum() / energy[n].sum()))
        return sum(errs) / len(errs)

    return proxy, names


def first_stage_records(run: Path) -> list[dict]:
    """The fully evaluated, successful candidates of a run: expr and first-stage fitness."""
    from gpsearch.engine.result import PENALTY

    out, seen = [], set()
    for line in (run / "log.jsonl").read_text().splitlines():
        r = json.loads(line)
        if r["hit"] is None and r["fitness"] < PENALTY and r["simplified"] not in seen:
            seen.add(r["simplified"])
            out.append({"expr": r["simplified"], "fitness": r["fitness"]})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--layers", default="0,10,20", help="decoder layers the proxy prunes")
    ap.add_argument("--top", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "bench" / "hurdle.json"))
    args = ap.parse_args()
    from gpsearch.config import WANDA, EvalConfig
    from gpsearch.pruning.evaluator import Evaluator
    from gpsearch.pruning.masks import parse_pattern
    from gpsearch.tree import EXTENDED, parse_prefix

    evaluator = Evaluator()
    layers = tuple(int(i) for i in args.layers.split(","))
    proxy, names = proxy_fn(evaluator, layers, 0.5)
    ref = proxy(WANDA)
    # the cost of a first-stage evaluation, here: prune all linears + 2 windows x 256 tokens
    ev = EvalConfig(data="wiki", split="validation", seqlen=256, max_windows=2)
    evaluator.windows(ev)
    wanda, pattern = parse_prefix(WANDA, EXTENDED), parse_pattern("unstructured", 0.5)
    first, whole = [], []
    for _ in range(4):  # the first call warms up (features, windows): the median of the rest
        t0 = time.perf_counter()
        evaluator.evaluate(wanda, 0.5, pattern, ev)
        evaluator.restore()
        first.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        evaluator.compute_masks(wanda, 0.5, pattern)  # a fingerprint's work, one condition
        whole.append(time.perf_counter() - t0)
    first_stage_s, masks_s = sorted(first[1:])[1], sorted(whole[1:])[1]
    result = {"what": __doc__.split("\n\n")[0], "proxy_layers": list(layers),
              "proxy_linears": len(names), "wanda_proxy": ref, "runs": {}, **code_version(),
              "whole_masks_seconds": masks_s}
    costs = []
    for run in RUNS:
        recs = first_stage_records(ROOT / run)
        for r in recs:
            t0 = time.perf_counter()
            r["proxy"] = proxy(r["expr"])
            costs.append(time.perf_counter() - t0)
        fit = [r["fitness"] for r in recs]
        top = {r["expr"] for r in sorted(recs, key=lambda r: r["fitness"])[:args.top]}
        rules = []
        for ratio in RATIOS:
            rejected = [r for r in recs if r["proxy"] > ratio * ref]
            rules.append({"ratio": ratio, "rejected": len(rejected),
                          "rejected_share": round(len(rejected) / len(recs), 4),
                          f"top{args.top}_lost": sum(r["expr"] in top for r in rejected),
                          "best_rejected_fitness": min((r["fitness"] for r in rejected),
                                                       default=None)})
        result["runs"][relative_path(ROOT / run)] = {
            "trees": len(recs), "spearman_proxy_vs_first_stage": spearman(
                [r["proxy"] for r in recs], fit),
            "rules": rules, "trees_detail": recs}
        print(run, len(recs), "trees; spearman",
              round(result["runs"][relative_path(ROOT / run)]["spearman_proxy_vs_first_stage"],
                    3), flush=True)
        for rule in rules:
            print("  ", rule, flush=True)
    costs.sort()
    result["proxy_seconds_median"] = costs[len(costs) // 2]
    result["first_stage_seconds"] = first_stage_s
    result["proxy_cost_share"] = result["proxy_seconds_median"] / first_stage_s
    print(f"proxy {result['proxy_seconds_median']:.3f} s vs first stage {first_stage_s:.2f} s "
          f"({100 * result['proxy_cost_share']:.1f}%) and every linear's masks {masks_s:.2f} s "
          "(one condition; times depend on the machine and its load)")
    write_json(Path(args.out), result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
