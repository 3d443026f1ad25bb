"""How much does the fitness of a tree move between CPU kernel variants?

The same search on a machine with AVX-512 and on one with AVX2 scores the same tree with other
vectorised kernels (torch's ATen kernels and MKL's BLAS), so the fitness differs in its last
digits, and a ranking of near-equal trees can flip. On one machine the two variants are chosen by
environment variables (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS): this script scores the
initial generation of the default search (the seed trees and random trees of seed 0; first-stage
KL on ``--stage`` tokens, one condition) once per variant, each in a fresh process, and writes
the relative differences per tree to bench/kernel_variants.json with the commit. The search's
fitness resolution (``gpsearch.engine.variation.FITNESS_RESOLUTION``) must lie above them.

    .venv/bin/python scripts/bench_kernel_variants.py
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.io import ROOT, code_version, write_json  # noqa: E402

VARIANTS = {  # what the process runs with: the machine's best, and AVX2 for torch and MKL
    "default": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"},
}


def score_generation0(stage: int) -> dict:
    """{expr: first-stage fitness} of the default search's initial generation (seed 0)."""
    import torch

    from gpsearch.jobs.search.plan import build_searcher, plan, resolve_settings
    from gpsearch.jobs.search.run import build_backend

    p = plan(resolve_settings({"stages": f"{stage}:1", "fitness_nsamples": ""}))
    backend = build_backend(p)
    searcher = build_searcher(p, backend)
    out: dict = {}
    searcher.on_evaluation.append(
        lambda r: out.setdefault(r["simplified"], r["fitness"]) if r["hit"] is None else None)
    searcher.step()
    backend.close()
    return {"capability": torch.backends.cpu.get_cpu_capability(), "fitness": out}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", type=int, default=512, help="first-stage tokens")
    ap.add_argument("--out", default=str(ROOT / "bench" / "kernel_variants.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one variant, in this process: print the scores as JSON on the last line
        print(json.dumps(score_generation0(args.stage)))
        return 0
    runs = {}
    for name, env in VARIANTS.items():
        print(f"variant {name} {env}", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--child", "--stage", str(args.stage)],
                              env={**os.environ, **env}, capture_output=True, text=True,
                              check=True)
        runs[name] = json.loads(proc.stdout.strip().splitlines()[-1])
    a, b = (runs[n]["fitness"] for n in VARIANTS)
    common = sorted(set(a) & set(b))
    rel = {e: abs(a[e] - b[e]) / abs(a[e]) for e in common if a[e] and a[e] < 1e4}
    ordered = sorted(rel.values())
    result = {"what": "relative difference of a tree's first-stage fitness between two CPU "
                      "kernel variants on one machine",
              "fitness": f"kl, first stage {args.stage} tokens, one condition, default search "
                         "seed 0, generation 0",
              "variants": {n: {"env": VARIANTS[n], "capability": runs[n]["capability"]}
                           for n in VARIANTS},
              "trees": len(rel), "identical": sum(v == 0 for v in ordered),
              "max_rel_diff": ordered[-1] if ordered else None,
              "median_rel_diff": ordered[len(ordered) // 2] if ordered else None,
              "per_tree": {e: {n: runs[n]["fitness"][e] for n in VARIANTS} for e in common},
              **code_version()}
    write_json(Path(args.out), result)
    print(json.dumps({k: v for k, v in result.items() if k != "per_tree"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
