"""Benchmark: candidates scored per hour, the staged KL pipeline beside the single-stage PPL one.

Side by side in one process (one model load, the same features, the same trees): the first
``--trees`` distinct trees a search evaluated (its log.jsonl, in order: seeds, good and bad
children), in generations of ``--offspring``:

    single   every tree: masks + PPL on the first 8 validation windows (2,048 tokens; the
             pipeline before staged fitness, 805 candidates per hour in the issue's run)
    staged   every tree: masks + KL on the first stage's windows; the best fraction of each
             generation goes on to the later stages (the run's ``--stages``; no hall-of-fame bar,
             so at least as many promotions as a search makes)
    long     the first ``--long-trees`` trees: masks + PPL on ``--long-windows`` windows (default
             the last stage's: what the single-stage pipeline costs at the last stage's fidelity)

Each candidate's masks are computed from scratch in each pipeline (the staged one keeps them
from its first stage to the later ones, as the search's mask cache does). The KL
reference (once per search) is built before the clock starts and reported apart.

    .venv/bin/python scripts/bench_throughput.py RUN_DIR [--trees 32] [--offspring 16]
        [--long-trees 8] [--long-windows 0] [--out bench/bench_throughput.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run_files import read_run, run_evaluator  # noqa: E402

from gpsearch.engine.result import fitness_of  # noqa: E402
from gpsearch.fitness.stages import promoted, score_of  # noqa: E402
from gpsearch.io import code_version, relative_path  # noqa: E402
from gpsearch.pruning.features import COMPUTED  # noqa: E402
from gpsearch.pruning.fingerprint import MaskCache  # noqa: E402
from gpsearch.workers.serial import SerialBackend  # noqa: E402


def timed(backend: SerialBackend, expr: str, windows: tuple[int, int], masks: bool = True,
          fresh: bool = True):
    """Fingerprint (the masks) then evaluate, as the search does; (result, seconds). ``fresh``:
    forget every mask computed before; a later stage (``masks=False``) reuses the masks its first
    stage computed, as the search does."""
    if fresh:
        backend.masks = MaskCache()
    t0 = time.perf_counter()
    if masks:
        backend.fingerprint_one(expr)
    res = backend.evaluate_one(expr, windows)
    return res, time.perf_counter() - t0


def per_hour(seconds: float, n: int) -> float:
    return round(3600 * n / seconds, 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dir")
    ap.add_argument("--trees", type=int, default=32)
    ap.add_argument("--offspring", type=int, default=16, help="trees per generation")
    ap.add_argument("--long-trees", type=int, default=8)
    ap.add_argument("--long-windows", type=int, default=0,
                    help="windows of the long single-stage pipeline (0: the run's last stage)")
    ap.add_argument("--out", default="bench/bench_throughput.json")
    args = ap.parse_args()
    version = code_version()
    run = Path(args.run_dir)
    config, records = read_run(run)
    s = config["settings"]
    trees, seen = [], set()
    for r in records:
        if r["hit"] is None and r["key"] not in seen and not r.get("error"):
            seen.add(r["key"])
            trees.append(r["simplified"])
    trees = trees[:args.trees]
    stages = config["search"]["stages"]  # [[windows, fraction], ...]
    last = args.long_windows or stages[-1][0]
    evaluator, pattern, ev = run_evaluator(config, min_windows=last)  # the long pipeline's too
    ppl = SerialBackend(evaluator, s["sparsity"], pattern, ev, fitness="ppl")
    kl = SerialBackend(evaluator, s["sparsity"], pattern, ev, fitness="kl", topk=s.get("topk", 512))
    ppl.prepare([t for t in config["space"]["terminals"] if t in COMPUTED])
    t0 = time.perf_counter()
    kl.reference()
    reference_s = time.perf_counter() - t0
    timed(ppl, trees[0], (0, 1))  # warm-up (allocator, first-call costs), not counted

    single = [timed(ppl, e, (0, 8))[1] for e in trees]
    print(f"single: {sum(single):.1f} s for {len(trees)} trees", flush=True)

    staged_s, staged_windows = 0.0, [0] * len(stages)
    for g in range(0, len(trees), args.offspring):
        gen = trees[g:g + args.offspring]
        values = {}
        kl.masks = MaskCache()  # one generation's masks, kept for its later stages
        for e in gen:
            res, sec = timed(kl, e, (0, stages[0][0]), fresh=False)
            staged_s += sec
            staged_windows[0] += 1
            if res.ok:
                values[e] = list(res.extra["kl"])
        alive = list(values)
        for k in range(1, len(stages)):
            n = promoted(len(gen), stages[k][1])
            alive = sorted(alive, key=lambda e: (fitness_of(score_of("kl", values[e])), e))[:n]
            for e in alive:
                res, sec = timed(kl, e, (stages[k - 1][0], stages[k][0]), masks=False, fresh=False)
                staged_s += sec
                staged_windows[k] += 1
                values[e] += list(res.extra["kl"]) if res.ok else [float("inf")]
    print(f"staged: {staged_s:.1f} s for {len(trees)} trees", flush=True)

    long = [timed(ppl, e, (0, last))[1] for e in trees[:args.long_trees]]
    print(f"long: {sum(long):.1f} s for {len(long)} trees", flush=True)

    out = {
        "bench": "throughput", **version, "run_dir": relative_path(run),
        "run_commit": config.get("commit"),
        "model": s["model"], "sparsity": s["sparsity"], "pattern": s["pattern"],
        "seqlen": ev.seqlen, "stages": s.get("stages"), "trees": len(trees),
        "offspring": args.offspring, "reference_build_s": round(reference_s, 1),
        "single_ppl_8_windows": {"seconds": round(sum(single), 1),
                                 "per_candidate_s": round(sum(single) / len(single), 3),
                                 "candidates_per_hour": per_hour(sum(single), len(single))},
        "staged_kl": {"seconds": round(staged_s, 1),
                      "per_candidate_s": round(staged_s / len(trees), 3),
                      "candidates_per_hour": per_hour(staged_s, len(trees)),
                      "scored_per_stage": staged_windows},
        "single_ppl_long": {"windows": last, "trees": len(long), "seconds": round(sum(long), 1),
                                       "per_candidate_s": round(sum(long) / len(long), 3),
                                       "candidates_per_hour": per_hour(sum(long), len(long))},
    }
    out["ratio_staged_vs_single_8"] = round(out["staged_kl"]["candidates_per_hour"]
                                            / out["single_ppl_8_windows"]["candidates_per_hour"], 2)
    out["ratio_staged_vs_single_long"] = round(
        out["staged_kl"]["candidates_per_hour"] / out["single_ppl_long"]["candidates_per_hour"], 2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
