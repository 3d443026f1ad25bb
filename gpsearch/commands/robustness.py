"""How robust a metric tree is: its TEST-split perplexity (and its advantage over a reference tree,
Wanda's by default) when each terminal is rescaled (W, X, G by 0.25 and 4: multiplied before the
tree is evaluated), with the features of another calibration size or seed, and at other patterns
and sparsities; all on one resident model. Masks equal to ones already scored reuse their
perplexity, and the table says where a tree's masks are exactly its baseline's. Prints a markdown
table; --out writes robustness.md and robustness.json (config and commit recorded).
(The Python function: ``gpsearch.robustness``.)"""

from __future__ import annotations

import argparse
import dataclasses

from gpsearch.api import RobustnessConfig
from gpsearch.commands.common import add_calib_args, add_model_args, calib_from
from gpsearch.config import EvalConfig

D = RobustnessConfig()  # the defaults of the Python API are the CLI's


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("tree", help="metric: trees/NAME.json, a bare name such as ria, a run's "
                                "best_tree.json, or a prefix expression")
    p.add_argument("--reference", default=D.reference,
                   help=f"tree the advantage is measured against (default {D.reference}); none: "
                        "no reference")
    p.add_argument("--conditions", default=None,
                   help="comma-separated conditions, each +-joined parts: W=|X=|G=|H=FACTOR "
                        "(rescale), nsamples=N, seed=S (calibration), pattern=2:4, sparsity=0.6; "
                        "'baseline' is always included (default: every used terminal x 0.25 and "
                        "4, nsamples=32, seed=1, pattern=2:4, sparsity=0.6)")
    p.add_argument("--sparsity", type=float, default=D.sparsity, help="fraction of weights zeroed")
    p.add_argument("--pattern", default=D.pattern, help="unstructured, 2:4, 4:8 (N:M)")
    p.add_argument("--scope", default=D.scope, choices=("row", "matrix"),
                   help="unstructured comparison group: each output row (Wanda) or whole matrix")
    p.add_argument("--out", default=None, help="write robustness.md and robustness.json here")
    add_model_args(p)
    add_calib_args(p)
    p.set_defaults(max_windows=D.evaluation.max_windows)


def config_from(args) -> RobustnessConfig:
    ref = None if str(args.reference).strip().lower() in ("", "none") else args.reference
    ev = EvalConfig(data=args.data, split="test", seqlen=args.seqlen,
                    max_windows=args.max_windows, batch_size=args.batch_size)
    return dataclasses.replace(D, tree=args.tree, reference=ref, conditions=args.conditions,
                               sparsity=args.sparsity, pattern=args.pattern, scope=args.scope,
                               model=args.model, calib=calib_from(args), evaluation=ev,
                               dtype=args.dtype, device=args.device, cache_dir=args.cache_dir,
                               out=args.out)


def run(args) -> int:
    from gpsearch import api

    cfg = config_from(args)
    rec = api.robustness(cfg)
    print(rec["markdown"])
    if cfg.out:
        print(f"written to {cfg.out}/robustness.md and robustness.json")
    return 0
