"""Prune a model with one metric tree (a JSON file, a name in trees/, or a prefix expression
such as 'mul(W, sqrt(X))'), then print its TEST-split perplexity, the achieved sparsity and the
configuration. Sparsity is the fraction of weights set to zero."""

from __future__ import annotations

import argparse
import time

from .. import __version__
from ..masks import check_sparsity, parse_pattern
from ..tree import load_tree, to_prefix
from ..save import check_save_dir
from .common import (add_calib_args, add_model_args, add_placement_args, calib_from, eval_from,
                     write_record)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tree", required=True,
                   help="metric: trees/NAME.json, a bare name such as wanda, or a prefix expression")
    p.add_argument("--sparsity", type=float, default=0.5, help="fraction of weights set to zero")
    p.add_argument("--pattern", default="unstructured", help="unstructured, 2:4, 4:8 (N:M)")
    p.add_argument("--scope", default="row", choices=("row", "matrix"),
                   help="unstructured comparison group: each output row (Wanda) or whole matrix")
    p.add_argument("--features", default="dense", choices=("dense", "sequential"),
                   help="dense: statistics from the dense model once (fast); sequential: block by "
                        "block through the already pruned blocks (Wanda/Pruner-Zero faithful)")
    add_model_args(p)
    add_placement_args(p)
    add_calib_args(p)
    p.add_argument("--dense-ppl", action="store_true", help="also measure the dense perplexity")
    p.add_argument("--per-layer", action="store_true", help="print each linear's sparsity")
    p.add_argument("--json", default=None, help="write the full result record to this file")
    p.add_argument("--save", default=None, help="save the pruned model (HF directory) here")


def run(args) -> int:
    from ..evaluator import Evaluator  # heavy imports only once the input is known to be valid

    sparsity = check_sparsity(args.sparsity)
    pattern = parse_pattern(args.pattern, sparsity, args.scope)
    tree = load_tree(args.tree)
    calib, ev = calib_from(args), eval_from(args, "test")
    check_save_dir(args.save)
    print(f"tree: {to_prefix(tree)}")
    print(f"model: {args.model}  sparsity: {sparsity:g} (fraction zeroed)  pattern: {pattern}  "
          f"scope: {pattern.scope}  features: {args.features}")
    print(f"calibration: {calib.to_dict()}")
    t0 = time.perf_counter()
    evaluator = Evaluator(args.model, calib, args.dtype, args.device, args.cache_dir, progress=True,
                          device_map=args.device_map, offload=args.offload)
    dense = evaluator.perplexity(ev) if args.dense_ppl else None
    rec = evaluator.evaluate(tree, sparsity, pattern, ev, args.features,
                             per_layer=args.per_layer, keep=bool(args.save))
    rec.update(gpsearch_version=__version__, command="prune", wall_s=time.perf_counter() - t0,
               created=time.strftime("%Y-%m-%dT%H:%M:%S"))
    if dense:
        rec["dense_ppl"] = dense["ppl"]
    e = rec["evaluation"]
    print(f"evaluation: {e['data']} {e['split']} split, seqlen {e['seqlen']}, "
          f"{e['windows']} windows, {e['tokens']} tokens")
    if dense:
        print(f"dense perplexity: {dense['ppl']:.3f}")
    print(f"pruned perplexity: {rec['ppl']:.3f}")
    print(f"achieved sparsity: {rec['achieved_sparsity']:.4f} over {rec['n_pruned_linears']} "
          f"linears ({', '.join(rec['pruned_modules'])} in every block)")
    if args.per_layer:
        for name, s in rec["per_layer"].items():
            print(f"  {name:32s} {100 * s:6.2f}% zeros")
    write_record(args.json, rec)
    if args.save:
        from ..save import save_pruned

        out = save_pruned(evaluator.lm, args.save, rec)
        print(f"pruned model saved to {out}")
    return 0
