"""Search efficiency: does the GP loop beat random search at the same number of evaluations?

Arms (same space, generator, depth limits, dedup and fitness; only the loop differs):
  gp            the search as configured (seed trees, crossover + mutation, 2 immigrants)
  random        random search: no seeds, every child a new random tree (immigrants = offspring)
  mutation      seeds + mutation only (no crossover)
  gp_noseeds    the GP loop without the seed trees
  gp_noseeds_diverse  the same with 48 random trees in generation 0 (the best 16 survive) and 4
                survivor slots for the best tree of an input set the elite does not read
  random_seeded random search that starts from the same seed trees as gp (every child a new
                random tree): the control for "does the loop improve on its seeds better than
                random sampling would, with the same prior knowledge and budget?"
Each arm runs generations until it has fully evaluated ``--budget`` candidates (key and
fingerprint hits and invalid trees are not evaluations: they cost no forward pass), recording the
best-so-far first-stage validation fitness after every evaluation. The final best tree of each
arm is then scored on the TEST split.

The fitness is the first stage alone (KL to the dense model on ``--stage`` tokens of the
validation split) under one calibration condition, for every arm: the benchmark counts
first-stage evaluations, and a second stage or condition would only multiply the cost of every
arm alike. Results are appended to bench/search_efficiency.json after every arm (with the
commit), so an interrupted run keeps what it finished and a rerun skips finished arms.

    .venv/bin/python scripts/bench_search_efficiency.py                 # 3 seeds gp/random + 1 each
    .venv/bin/python scripts/bench_search_efficiency.py --arms gp,random --seeds 0 --budget 60
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.io import ROOT, code_version, write_json  # noqa: E402

# the arms measured before the hurdle existed run without it (as measured); the *_hurdle arms
# add it: at the same number of first-stage evaluations they consider more candidates
ARMS = {
    "gp": {"hurdle": 0},
    "random": {"seed_trees": [], "immigrants": 16, "hurdle": 0},  # = offspring: all random
    "mutation": {"p_crossover": 0.0, "p_mutation": 1.0, "hurdle": 0},
    "gp_noseeds": {"seed_trees": [], "hurdle": 0},
    "gp_noseeds_diverse": {"seed_trees": [], "init_population": 48, "niches": 4, "hurdle": 0},
    "gp_hurdle": {"hurdle": 1.25},
    "random_hurdle": {"seed_trees": [], "immigrants": 16, "hurdle": 1.25},
    "random_seeded": {"immigrants": 16, "hurdle": 0},  # the seeds, then only random children
}


def settings_for(arm: str, seed: int, args) -> dict:
    from gpsearch.jobs.search.plan import resolve_settings

    given = {"seed": seed, "stages": f"{args.stage}:1", "fitness_nsamples": "",
             "cache_dir": args.cache_dir, **ARMS[arm]}
    return resolve_settings(given)


def run_arm(arm: str, seed: int, args, backend_cache: dict) -> dict:
    from gpsearch.engine.result import PENALTY
    from gpsearch.jobs.search.plan import build_searcher, plan
    from gpsearch.jobs.search.run import build_backend

    p = plan(settings_for(arm, seed, args))
    if "backend" not in backend_cache:
        backend_cache["backend"] = build_backend(p)
    searcher = build_searcher(p, backend_cache["backend"])
    curve: list[float] = []  # best-so-far fitness after evaluation k (k = index + 1)
    records: list[dict] = []

    def on_eval(rec: dict) -> None:
        records.append({k: rec[k] for k in ("gen", "expr", "fitness", "hit", "op", "error")})
        if rec["hit"] is None:  # a full evaluation (hits and invalid trees cost no forward pass)
            f = rec["fitness"] if rec["fitness"] < PENALTY else math.inf
            curve.append(min(f, curve[-1]) if curve else f)

    searcher.on_evaluation.append(on_eval)
    t0 = time.perf_counter()
    while searcher.counters["evaluated"] < args.budget:
        stats = searcher.step()
        print(f"  {arm} seed {seed} gen {stats['gen']}: evaluated "
              f"{searcher.counters['evaluated']}, best {stats['best']:.5f} "
              f"{stats['best_expr'][:70]}", flush=True)
    best = min((r for r in records if r["hit"] is None and r["fitness"] < PENALTY),
               key=lambda r: (r["fitness"], len(r["expr"]), r["expr"]))
    seconds = time.perf_counter() - t0
    test = test_ppl(backend_cache["backend"], best["expr"], args)
    return {"arm": arm, "seed": seed, "budget": args.budget, "curve": curve[:args.budget],
            "final_best": curve[args.budget - 1], "best_expr": best["expr"],
            "best_test_ppl": test, "counters": dict(searcher.counters),
            "generations": searcher.generation + 1, "search_seconds": round(seconds, 1),
            "commit": code_version()["commit"],
            "settings": {k: p.settings[k] for k in ("seed", "stages", "fitness", "population",
                                                     "offspring", "immigrants", "p_crossover",
                                                     "p_mutation", "seed_trees", "space",
                                                     "init_population", "niches", "hurdle")}}


def test_ppl(backend, expr: str, args) -> float:
    """TEST-split perplexity of ``expr`` at the search's sparsity (first ``--test-windows``)."""
    from gpsearch.config import EvalConfig
    from gpsearch.jobs.prune import PruneConfig, run_prune

    evaluator = backend.evaluator
    ev = EvalConfig(data="wiki", split="test", seqlen=256, max_windows=args.test_windows)
    rec = run_prune(PruneConfig(tree=expr, evaluation=ev), evaluator=evaluator,
                    log=lambda s: None)
    return rec["ppl"]


def evals_to_reach(curve: list[float], target: float) -> int | None:
    for k, f in enumerate(curve, 1):
        if f <= target:
            return k
    return None


def summarize(runs: list[dict]) -> dict:
    out: dict = {}
    by_arm: dict[str, list[dict]] = {}
    for r in runs:
        by_arm.setdefault(r["arm"], []).append(r)
    for arm, rs in by_arm.items():
        finals = [r["final_best"] for r in rs]
        out[arm] = {"seeds": [r["seed"] for r in rs], "final_best_mean": sum(finals) / len(finals),
                    "final_best": finals, "best_test_ppl": [r["best_test_ppl"] for r in rs]}
    if "random" in by_arm:  # every arm against random search's mean final best
        target = out["random"]["final_best_mean"]
        out["random_final_best_mean"] = target
        out["evals_ratio_vs_random_mean"] = {}
        for arm, rs in by_arm.items():
            ks = [evals_to_reach(r["curve"], target) for r in rs]
            out["evals_ratio_vs_random_mean"][arm] = [
                (k if k is not None else math.inf) / len(r["curve"]) for k, r in zip(ks, rs)]
    if "gp" in by_arm and "random" in by_arm:
        ratios = []
        for g in by_arm["gp"]:
            r = next((x for x in by_arm["random"] if x["seed"] == g["seed"]), None)
            if r is None:
                continue
            k = evals_to_reach(g["curve"], r["final_best"])
            ratios.append((k if k is not None else math.inf) / len(r["curve"]))
        if ratios:
            out["evals_ratio_gp_vs_random"] = sum(ratios) / len(ratios)
            out["evals_ratio_per_seed"] = ratios
    if "gp" in by_arm and "random_seeded" in by_arm:  # the same seeds: what the loop adds
        pairs = [(g, next((x for x in by_arm["random_seeded"] if x["seed"] == g["seed"]), None))
                 for g in by_arm["gp"]]
        pairs = [(g, r) for g, r in pairs if r is not None]
        if pairs:
            ks = [evals_to_reach(g["curve"], r["final_best"]) for g, r in pairs]
            ratios = [(k if k is not None else math.inf) / len(r["curve"])
                      for k, (g, r) in zip(ks, pairs)]
            out["gp_vs_random_seeded"] = {
                "seeds": [g["seed"] for g, _ in pairs],
                "evals_to_reach_random_seeded_final": ks,
                "evals_ratio": ratios,
                "evals_ratio_mean": sum(ratios) / len(ratios),
                "final_best_gp": [g["final_best"] for g, _ in pairs],
                "final_best_random_seeded": [r["final_best"] for _, r in pairs],
                "gp_below_random_seeded": [1 - g["final_best"] / r["final_best"]
                                           for g, r in pairs],
                "how": "evals_ratio = first-stage evaluations the GP needs to reach the final "
                       "best of random search started from the same seeds, over the budget; "
                       "gp_below_random_seeded = 1 - GP final / random_seeded final"}
    return out


def plot(runs: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, (ax, zoom) = plt.subplots(1, 2, figsize=(12, 4.4))
    arms = sorted({r["arm"] for r in runs}, key=list(ARMS).index)
    finite = [f for r in runs for f in r["curve"] if math.isfinite(f)]
    for arm in arms:
        curves = np.array([r["curve"] for r in runs if r["arm"] == arm], dtype=float)
        x = np.arange(1, curves.shape[1] + 1)
        curves = np.where(np.isfinite(curves), curves, np.nan)
        mean = np.nanmean(curves, axis=0)
        for a in (ax, zoom):
            line, = a.plot(x, mean, label=f"{arm} (n={curves.shape[0]})")
            if curves.shape[0] > 1:
                a.fill_between(x, np.nanmin(curves, axis=0), np.nanmax(curves, axis=0),
                               color=line.get_color(), alpha=0.2)
    for a in (ax, zoom):
        a.set_xlabel("first-stage evaluations")
        a.grid(alpha=0.3)
    ax.set_ylabel("best-so-far validation KL to dense (lower is better)")
    if finite:  # log scale: the first random trees are far worse than the seeds
        lo = min(finite)
        ax.set_yscale("log")
        from matplotlib.ticker import FormatStrFormatter

        ax.yaxis.set_major_formatter(FormatStrFormatter("%.2f"))
        ax.yaxis.set_minor_formatter(FormatStrFormatter("%.2f"))
        ax.set_ylim(lo * 0.97, min(max(finite), lo * 4) * 1.03)
        zoom.set_ylim(lo * 0.99, lo * 1.08)  # where the arms end: within 8% of the best
    ax.set_title("search efficiency: mean over seeds\nband = min..max over seeds", fontsize=10)
    zoom.set_title("the same near the end, linear scale\n(the seeded arms' plateau at 0.988 "
                   "from evaluation 5: their best seed)", fontsize=10)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save(runs: list[dict], out: Path, args) -> None:
    """The results file (runs carry their own commits; the top-level one is the writer's) and
    the picture, rewritten after every run."""
    runs = sorted(runs, key=lambda r: (list(ARMS).index(r["arm"]), r["seed"]))
    png = Path(args.plot) if args.plot else out.with_suffix(".png")
    plot(runs, png)
    write_json(out, {"what": "best-so-far first-stage validation fitness vs evaluations",
                     "fitness": f"kl, first stage {args.stage} tokens, one condition",
                     "test": f"wiki test split, first {args.test_windows} windows x 256",
                     "model": "smollm2-135m", "sparsity": 0.5, "pattern": "unstructured",
                     **code_version(), "summary": summarize(runs), "plot": png.name,
                     "runs": runs})
    print(json.dumps(summarize(runs), indent=1), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arms", default="gp,random,mutation,gp_noseeds")
    ap.add_argument("--seeds", default="0,1,2", help="seeds for gp and random")
    ap.add_argument("--other-seeds", default="0", help="seeds for mutation and gp_noseeds")
    ap.add_argument("--budget", type=int, default=150, help="full evaluations per run")
    ap.add_argument("--stage", type=int, default=512, help="first-stage tokens (fitness)")
    ap.add_argument("--test-windows", type=int, default=64)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--out", default=str(ROOT / "bench" / "search_efficiency.json"))
    ap.add_argument("--plot", default=None, help="the picture (default: --out with .png)")
    ap.add_argument("--merge", default=None,
                    help="add the runs of another results file (e.g. one written by a second "
                         "checkout in parallel), rewrite the summary and plot, run nothing")
    args = ap.parse_args()
    out = Path(args.out)
    prior = json.loads(out.read_text()) if out.exists() else {}
    runs = [r for r in prior.get("runs", []) if r.get("budget") == args.budget]
    for r in runs:  # records written before runs carried their own commit
        r.setdefault("commit", prior.get("commit"))
    done = {(r["arm"], r["seed"]) for r in runs}
    seeds = [int(s) for s in args.seeds.split(",") if s]
    other = [int(s) for s in args.other_seeds.split(",") if s]
    arms = args.arms.split(",")
    # interleaved, so that an interrupted run still compares the arms: the first seed of every
    # arm, then the other seeds of gp and random
    order = [(a, s) for a in ("gp", "random") for s in seeds[:1]]
    order += [(a, s) for a in ARMS if a not in ("gp", "random") for s in other]
    order += [(a, s) for s in seeds[1:] for a in ("random", "gp")]
    order = [(a, s) for a, s in order if a in arms]
    if args.merge:
        extra = json.loads(Path(args.merge).read_text()).get("runs", [])
        runs += [r for r in extra if r.get("budget") == args.budget
                 and (r["arm"], r["seed"]) not in done]
        save(runs, out, args)
        return 0
    backend_cache: dict = {}
    for arm, seed in order:
        if (arm, seed) in done:
            continue
        print(f"arm {arm} seed {seed}", flush=True)
        runs.append(run_arm(arm, seed, args, backend_cache))
        save(runs, out, args)
    if "backend" in backend_cache:
        backend_cache["backend"].close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
