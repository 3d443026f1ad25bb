"""Compare pruning methods under ONE calibration configuration, scored on the TEST split:
magnitude (per matrix), magnitude-row, wanda, wanda-variant, sparsegpt, the seed systems, any
metric tree (trees/NAME.json, a bare name such as pruner_zero, a run's best_tree.json, a prefix
expression), or baseline recipes (baselines/NAME.yaml, or the folder baselines/ for all).
Writes results.md / results.csv / results.json (+ ppl_vs_sparsity.png for several sparsities) to
--out. Sparsity is the fraction of weights set to zero; N:M patterns run only at sparsity N/M.
(The Python function: ``gpsearch.compare``.)"""

from __future__ import annotations

import argparse
import time

from gpsearch.commands.common import (
    add_calib_args,
    add_model_args,
    add_placement_args,
    add_zero_shot_args,
    calib_from,
    eval_from,
)
from gpsearch.errors import UserError
from gpsearch.jobs.compare.method import parse_sparsities, split_list
from gpsearch.jobs.compare.registry import METHODS
from gpsearch.jobs.compare.run import CompareConfig

D = CompareConfig()  # the defaults of the Python API are the CLI's


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--methods", default=",".join(D.methods),
                   help=f"comma-separated: {', '.join(METHODS)}, metric tree specs, recipes "
                        "(baselines/NAME.yaml, or a folder of them such as baselines/); "
                        "METHOD+recon (mask, then least-squares weights), sparsegpt:TREE "
                        "(the tree ranks SparseGPT's mask selection), METHOD+lora")
    p.add_argument("--pattern", default="unstructured",
                   help="comma-separated patterns: unstructured, 2:4, 4:8, ...")
    p.add_argument("--sparsity", default="0.5",
                   help="comma-separated fractions of zeros, e.g. 0.5,0.6,0.7,0.8,0.9")
    p.add_argument("--out", default=None, help="output folder (default runs/compare_<time>)")
    p.add_argument("--tree-features", default="sequential", choices=("sequential", "dense"),
                   help="statistics for tree methods: block by block through the pruned blocks "
                        "(default, as Wanda/Pruner-Zero) or once from the dense model")
    p.add_argument("--blocksize", type=int, default=None,
                   help="SparseGPT lazy batch of columns (default 128)")
    p.add_argument("--mask-blocksize", type=int, default=None,
                   help="SparseGPT adaptive mask block Bs in columns (default 128)")
    p.add_argument("--percdamp", type=float, default=None,
                   help="SparseGPT damping, a fraction of the mean Hessian diagonal (default 0.01)")
    p.add_argument("--option", action="append", default=[], metavar="METHOD.KEY=VALUE",
                   help="a knob of one method, repeatable: e.g. tiers.max_steps=20, "
                        "shortgpt.n_remove_layers=6, wanda+lora.lora_max_steps=50 (see "
                        "gpsearch/jobs/compare/methods.py for each method's knobs)")
    p.add_argument("--include", nargs="+", default=[], metavar="RESULTS",
                   help="rows of earlier compare runs (results.json or its folder) to put in "
                        "this table; refused when their model, calibration or evaluation differ")
    p.add_argument("--allow-mixed-calibration", action="store_true",
                   help="include such rows anyway, marked [mixed] (seed 002: not comparable)")
    p.add_argument("--allocation", default=None,
                   help="comma-separated layer-wise allocations, each a row per method: uniform, "
                        "owl (from the method's own scores; Wanda's for wanda/sparsegpt), "
                        "FILE.json (gpsearch allocate); default: every linear at --sparsity")
    p.add_argument("--owl-m", type=float, default=D.owl_m,
                   help="OWL outlier threshold M (scores above M x the block mean; "
                        "default %(default)g)")
    p.add_argument("--owl-lambda", type=float, default=D.owl_lambda,
                   help="OWL: block sparsities within sparsity +- lambda (default %(default)g)")
    add_model_args(p)
    add_placement_args(p)
    add_calib_args(p)
    add_zero_shot_args(p)


def _value(text: str):
    """A knob value: int, float, true/false/none, else the text itself (never evaluated)."""
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_options(items: list[str]) -> dict:
    """``["tiers.max_steps=20", ...]`` -> ``{"tiers": {"max_steps": 20}}`` (one-line errors)."""
    out: dict = {}
    for item in items:
        head, eq, value = item.partition("=")
        method, dot, key = head.rpartition(".")
        if not eq or not dot or not method or not key.isidentifier():
            raise UserError(f"--option {item!r}: expected METHOD.KEY=VALUE, e.g. "
                            "tiers.max_steps=20")
        out.setdefault(method, {})[key] = _value(value)
    return out


def config_from(args) -> CompareConfig:
    methods = split_list(args.methods, "method")
    options = parse_options(args.option)
    given = {k: v for k, v in (("blocksize", args.blocksize), ("mask_blocksize",
             args.mask_blocksize), ("percdamp", args.percdamp)) if v is not None}
    for m in methods:  # explicit flags reach plain sparsegpt and every sparsegpt:TREE
        if given and (m == "sparsegpt" or m.startswith("sparsegpt:")):
            options[m] = {**given, **options.get(m, {})}
    metric = options.get("sparsegpt", {}).get("metric")
    if metric is not None:  # a bad tree is a one-line error now, not a failed row later
        from gpsearch.tree import load_tree

        load_tree(str(metric))
    return CompareConfig(
        methods=methods, patterns=split_list(args.pattern, "pattern"),
        sparsities=parse_sparsities(args.sparsity),
        out=args.out or f"runs/compare_{time.strftime('%Y%m%d-%H%M%S')}",
        model=args.model, calib=calib_from(args), evaluation=eval_from(args, "test"),
        dtype=args.dtype, device=args.device, cache_dir=args.cache_dir,
        device_map=args.device_map, offload=args.offload,
        tree_features=args.tree_features, options=options, include=list(args.include),
        allow_mixed=args.allow_mixed_calibration, zero_shot=args.eval_zero_shot or [],
        zero_shot_limit=args.zero_shot_limit,
        allocations=split_list(args.allocation, "allocation") if args.allocation else [],
        owl_m=args.owl_m, owl_lambda=args.owl_lambda)


def run(args) -> int:
    from gpsearch.api import compare

    result = compare(config_from(args))  # input errors surface before the model is loaded
    failed = [r for r in result["rows"] if r["error"]]
    print(open(result["files"]["md"], encoding="utf-8").read())
    print("files: " + ", ".join(result["files"].values()))
    if failed:
        print(f"{len(failed)} run(s) failed; see the error column")
    return 0
