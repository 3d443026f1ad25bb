"""OWL's lambda at 70% on the embedded model: Wanda's tree under a uniform allocation and under
OWL with lambda 0.08 (the paper's), 0.05 and 0.02, on 16 windows x 256 of the validation split
(where the default is chosen) and of the test split. Writes bench/owl_lambda_validation.json.

    .venv/bin/python scripts/bench_owl_lambda.py --out bench/owl_lambda_validation.json
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpsearch.io import code_version, write_json  # noqa: E402

LAMBDAS = (0.08, 0.05, 0.02)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--out", default="bench/owl_lambda_validation.json")
    args = ap.parse_args()
    import gpsearch
    from gpsearch.config import CalibConfig, EvalConfig
    from gpsearch.pruning.evaluator import Evaluator

    evaluator = Evaluator("smollm2-135m", CalibConfig(), progress=False)
    ppl = {}
    for split in ("validation", "test"):
        ev = EvalConfig(data="wiki", split=split, seqlen=256, max_windows=args.windows)
        for alloc, lam in (("uniform", None), *(("owl", x) for x in LAMBDAS)):
            kw = {"allocation": alloc, **({"owl_lambda": lam} if lam is not None else {})}
            cfg = gpsearch.PruneConfig(tree="wanda", sparsity=0.7, evaluation=ev, **kw)
            rec = gpsearch.prune(cfg, evaluator=evaluator, log=lambda s: None)
            ppl[f"{split} {alloc} {lam}"] = round(rec["ppl"], 4)
            print(split, alloc, lam, f"{rec['ppl']:.3f}", flush=True)
    write_json(args.out, {"what": "OWL's lambda at 70%, Wanda's tree, dense features, 128 x 256 "
                          f"calibration, {args.windows} windows x 256 per split",
                          **code_version(), "ppl": ppl})
    return 0


if __name__ == "__main__":
    sys.exit(main())
