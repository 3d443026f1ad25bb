"""Benchmark: are fingerprint merges exact? Re-evaluate sampled fingerprint hits of a search.

For a finished (or running) search directory: sample ``--samples`` fingerprint hits from its
log.jsonl (seeded), rebuild the run's evaluator (same model, calibration, sparsity, pattern,
fitness), and score each hit's tree FROM SCRATCH (its own scores and masks, no mask cache) on the
same first-stage windows the search scored its twin on. A false merge is a hit whose fresh
fitness differs from the fitness the search gave it. Also reports the share of the run's
candidates resolved without a forward pass (key hits, fingerprint hits, invalid trees).

    .venv/bin/python scripts/bench_dedup.py RUN_DIR [RUN_DIR ...] [--samples 50]
        [--out bench/bench_dedup.json]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from run_files import read_run, run_evaluator  # noqa: E402

from gpsearch.engine.result import fitness_of  # noqa: E402
from gpsearch.fitness.stages import score_of  # noqa: E402
from gpsearch.io import code_version, relative_path  # noqa: E402
from gpsearch.pruning.fingerprint import MaskCache  # noqa: E402
from gpsearch.workers.serial import SerialBackend  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    ap.add_argument("--samples", type=int, default=50, help="hits sampled per run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="bench/bench_dedup.json")
    args = ap.parse_args()
    t0 = time.perf_counter()
    runs = [check_run(Path(d), args.samples, args.seed) for d in args.run_dirs]
    rows = [row for run in runs for row in run["rows"]]
    out = {
        "bench": "dedup", **code_version(),
        "sampled": len(rows), "false_merges": sum(not r["equal"] for r in rows),
        "fingerprint_hits": sum(run["fingerprint_hits"] for run in runs),
        "candidates": sum(run["candidates"] for run in runs),
        "seconds": round(time.perf_counter() - t0, 1), "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "runs"}, indent=2))
    for run in runs:
        print(json.dumps({k: v for k, v in run.items() if k != "rows"}))


def check_run(run: Path, samples: int, seed: int) -> dict:
    """Re-evaluate ``samples`` fingerprint hits of one run directory from scratch."""
    config, records = read_run(run)
    s = config["settings"]
    hits = [r for r in records if r["hit"] == "fingerprint"]
    sample = random.Random(seed).sample(hits, min(samples, len(hits)))
    evaluator, pattern, ev = run_evaluator(config)
    backend = SerialBackend(evaluator, s["sparsity"], pattern, ev, fitness=s.get("fitness", "ppl"),
                            topk=s.get("topk", 512), allocation=config.get("allocation"))
    stages = config["search"].get("stages") or []
    windows = (0, stages[0][0]) if stages else None
    rows, t0 = [], time.perf_counter()
    for i, r in enumerate(sample):
        backend.masks = MaskCache()  # the tree's own masks, recomputed
        res = backend.evaluate_one(r["simplified"], windows)
        given = r["fitness"]
        if res.ok and stages:  # the stage score exactly as the search computes it
            kind = s.get("fitness", "ppl")
            fresh = fitness_of(score_of(kind, res.extra["nll" if kind == "ppl" else "kl"]))
        else:
            fresh = res.fitness
        same = res.ok and fresh == given
        rows.append({"expr": r["simplified"], "given": given, "fresh": fresh, "equal": same,
                     "twin": r.get("fingerprint"), "error": res.error})
        print(f"[{run.name} {i + 1}/{len(sample)}] {'ok   ' if same else 'FALSE'} given "
              f"{given:.6g} fresh {fresh:.6g}  {r['simplified'][:90]}", flush=True)
    n = len(records) or 1
    skipped = {k: sum(r["hit"] == k for r in records) for k in ("key", "fingerprint", "invalid")}
    return {
        "run_dir": relative_path(run), "run_commit": config.get("commit"),
        "run_settings": {k: s.get(k) for k in ("model", "space", "sparsity", "pattern", "fitness",
                                                "stages", "seed", "population", "offspring")},
        "windows": list(windows) if windows else None,
        "candidates": len(records), "fingerprint_hits": len(hits), "sampled": len(rows),
        "false_merges": sum(not r["equal"] for r in rows),
        "skipped_share": {k: round(v / n, 4) for k, v in skipped.items()},
        "skipped_share_total": round(sum(skipped.values()) / n, 4),
        "seconds": round(time.perf_counter() - t0, 1), "rows": rows,
    }


if __name__ == "__main__":
    main()
