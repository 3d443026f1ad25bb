"""Benchmark: the compressed-tensors export of the embedded model pruned with Wanda's tree (dense
features) at 50% unstructured and 2:4. For each: save both formats, load the compressed-tensors
directory back with that package, check every tensor is identical and the test perplexity equal,
and record the weight file sizes. Writes bench/export_embedded.json (with the git commit).

    .venv/bin/python scripts/bench_export.py [--max-windows 64]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.config import CalibConfig, EvalConfig  # noqa: E402
from gpsearch.evaluator import Evaluator  # noqa: E402
from gpsearch.export import load_compressed, save_compressed, weights_bytes  # noqa: E402
from gpsearch.masks import parse_pattern  # noqa: E402
from gpsearch.perplexity import perplexity  # noqa: E402
from gpsearch.save import save_pruned  # noqa: E402
from gpsearch.tree import parse_prefix  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--max-windows", type=int, default=64)
    ap.add_argument("--out", default="bench/export_embedded.json")
    args = ap.parse_args()
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True,
                            text=True).stdout.strip()
    calib = CalibConfig()
    ev = EvalConfig(split="test", max_windows=args.max_windows)
    evaluator = Evaluator(args.model, calib, progress=True)
    tree = parse_prefix("mul(W, sqrt(X))")
    runs = []
    for pattern in ("unstructured", "2:4"):
        rec = evaluator.evaluate(tree, 0.5, parse_pattern(pattern, 0.5), ev, keep=True)
        with tempfile.TemporaryDirectory() as tmp:
            hf = save_pruned(evaluator.lm, Path(tmp) / "hf", rec)
            t0 = time.perf_counter()
            info = save_compressed(evaluator.lm, Path(tmp) / "ct", rec)
            save_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            back = load_compressed(Path(tmp) / "ct")
            load_s = time.perf_counter() - t0
            want, got = evaluator.model.state_dict(), back.state_dict()
            same = set(want) == set(got) and all(torch.equal(want[k], got[k]) for k in want)
            ppl_back = perplexity(back, evaluator.windows(ev))["ppl"]
            run = {"pattern": pattern, "ppl": rec["ppl"], "ppl_reloaded": ppl_back,
                   "identical_tensors": same, "n_tensors": len(want),
                   "hf_bytes": weights_bytes(hf), "ct_bytes": info["weights_bytes"],
                   "compression_format": info["compression_format"],
                   "achieved_sparsity": rec["achieved_sparsity"], "save_s": save_s,
                   "load_s": load_s}
        evaluator.restore()
        print(json.dumps(run))
        runs.append(run)
    out = {"commit": commit, "model": args.model, "tree": "mul(W, sqrt(X))", "features": "dense",
           "calibration": calib.to_dict(), "evaluation": ev.to_dict(), "dtype": "float32",
           "runs": runs, "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
