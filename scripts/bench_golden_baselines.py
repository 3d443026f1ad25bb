"""Golden numbers of the baselines on the embedded model, and how much they move.

Dense, magnitude, Wanda and SparseGPT test perplexity at 50% unstructured and at 2:4, at the cheap
settings of tests/integration/test_golden_baselines.py (which pins them), through the same code
as a ``gpsearch compare`` row (``run_one`` with the registered methods). Each measurement runs in
a fresh process (the CPU kernel variant is chosen at start-up):

- the machine's default kernels, calibration seed 0, two threads (the test's setting; run to run
  it is deterministic: the test itself repeats it);
- the same with one thread (a pure float-rounding change: how a thread count moves them);
- AVX2 kernels for torch and MKL (ATEN_CPU_CAPABILITY, MKL_ENABLE_INSTRUCTIONS; what another
  x86 machine would run);
- calibration seed 1 (the statistical scale of a calibration draw).

Writes bench/golden_baselines.json with the commit.

    .venv/bin/python scripts/bench_golden_baselines.py --out bench/golden_baselines.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.io import ROOT, code_version, write_json  # noqa: E402

# the settings of tests/integration/test_golden_baselines.py (change both together)
SETTINGS = {"nsamples": 8, "calib_seqlen": 256, "windows": 4, "eval_seqlen": 256, "threads": 2}
ROWS = [(m, p) for m in ("magnitude", "wanda", "sparsegpt") for p in ("unstructured", "2:4")]
AVX2 = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}
RUNS = {  # name: (environment, calibration seed, threads)
    "default": ({}, 0, 2),
    "one_thread": ({}, 0, 1),
    "avx2": (AVX2, 0, 2),
    "seed1": ({}, 1, 2),
}


def measure(seed: int, threads: int) -> dict:
    """{"capability", "threads", "ppl": {row: test PPL}, "seconds": {row: s}} in this process."""
    import torch

    from gpsearch.config import CalibConfig, EvalConfig
    from gpsearch.jobs.compare.registry import METHODS
    from gpsearch.jobs.compare.run import run_one
    from gpsearch.pruning.evaluator import Evaluator
    from gpsearch.pruning.masks import parse_pattern

    torch.set_num_threads(threads)
    calib = CalibConfig(nsamples=SETTINGS["nsamples"], seqlen=SETTINGS["calib_seqlen"], seed=seed)
    ev = EvalConfig(split="test", seqlen=SETTINGS["eval_seqlen"], max_windows=SETTINGS["windows"])
    evaluator = Evaluator("smollm2-135m", calib, use_cache=False)
    torch.set_num_threads(threads)  # the Evaluator sets every core unless OMP_NUM_THREADS is set
    t = time.perf_counter()
    ppl = {"dense": evaluator.perplexity(ev)["ppl"]}
    seconds = {"dense": time.perf_counter() - t}
    for method, pattern in ROWS:
        t = time.perf_counter()
        row = run_one(evaluator, METHODS[method], parse_pattern(pattern, 0.5), 0.5, ev, {}, {})
        if row["error"]:
            raise RuntimeError(f"{method} {pattern}: {row['error']}")
        ppl[f"{method} {pattern}"] = row["ppl"]
        seconds[f"{method} {pattern}"] = time.perf_counter() - t
    return {"capability": torch.backends.cpu.get_cpu_capability(), "threads": threads,
            "ppl": ppl, "seconds": {k: round(v, 1) for k, v in seconds.items()}}


def _child(name: str) -> dict:
    env_extra, seed, threads = RUNS[name]
    env = {**os.environ, **env_extra, "OMP_NUM_THREADS": str(threads)}
    r = subprocess.run([sys.executable, __file__, "--child", str(seed), str(threads)], env=env,
                       capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        raise RuntimeError(f"{name} failed:\n{r.stderr[-2000:]}")
    out = json.loads(r.stdout.strip().splitlines()[-1])
    print(name, out["capability"], json.dumps(out["ppl"]), flush=True)
    return {"env": env_extra, "seed": seed, **out}


def _rel(a: dict, b: dict) -> dict:
    return {k: abs(a[k] - b[k]) / b[k] for k in b}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "bench" / "golden_baselines.json"))
    ap.add_argument("--child", nargs=2, type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:  # one measurement in this process: JSON on the last line
        print(json.dumps(measure(*args.child)))
        return 0
    runs = {name: _child(name) for name in RUNS}
    ppl = {name: r["ppl"] for name, r in runs.items()}
    spreads = {  # relative differences per row
        "threads_2_vs_1": _rel(ppl["one_thread"], ppl["default"]),
        "kernels_default_vs_avx2": _rel(ppl["avx2"], ppl["default"]),
        "calibration_seed_0_vs_1": _rel(ppl["seed1"], ppl["default"]),
    }
    golden = {runs[n]["capability"]: ppl[n] for n in ("default", "avx2")}
    write_json(args.out, {
        "what": "test PPL of dense / magnitude / Wanda / SparseGPT on the embedded model, 50% "
                "unstructured and 2:4, through gpsearch compare's run_one, one evaluator per run",
        "settings": SETTINGS, **code_version(),
        "golden": golden, "spreads": spreads, "runs": runs,
        "test": "tests/integration/test_golden_baselines.py pins 'golden' per kernel variant",
    })
    for what, s in spreads.items():
        print(what, {k: f"{v:.2e}" for k, v in s.items()})
    return 0


if __name__ == "__main__":
    sys.exit(main())
